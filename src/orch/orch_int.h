/* orch internals shared by its source files and its unit tests. Nothing here touches the
 * network: the pieces take parsed inputs and return statuses and texts, so each rule of
 * spec/protocol.md can be tested on its own. */
#ifndef LPOD_ORCH_INT_H
#define LPOD_ORCH_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lp_rpc.pb-c.h"
#include "lpod/core.h"
#include "lpod/hwaccel.h"
#include "lpod/orch.h"
#include "lpod/pool.h"
#include "lpod/sched.h"

/* ---- base64 (Go's base64.StdEncoding rules, including its error positions) ---------------- */
/* Decodes into a malloc'd buffer. On failure returns LP_EINVAL with Go's text
 * ("illegal base64 data at input byte N") in err. */
int orch_b64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len, char *err,
                    size_t errlen);
/* Standard alphabet with padding; malloc'd NUL-terminated string. */
char *orch_b64_encode(const uint8_t *in, size_t len);

/* ---- capabilities (spec §7) ------------------------------------------------------------- */
enum {
  ORCH_CAP_H264 = 0,
  ORCH_CAP_MPEGTS = 1,
  ORCH_CAP_MP4 = 2,
  ORCH_CAP_FRACTIONAL_FPS = 3,
  ORCH_CAP_STORAGE_DIRECT = 4,
  ORCH_CAP_STORAGE_S3 = 5,
  ORCH_CAP_STORAGE_GCS = 6,
  ORCH_CAP_PROFILE_BASELINE = 7,
  ORCH_CAP_PROFILE_MAIN = 8,
  ORCH_CAP_PROFILE_HIGH = 9,
  ORCH_CAP_PROFILE_CHIGH = 10,
  ORCH_CAP_GOP = 11,
  ORCH_CAP_AUTH_TOKEN = 12,
  ORCH_CAP_MPEG7_SIGNATURE = 14,
  ORCH_CAP_HEVC_DECODE = 15,
  ORCH_CAP_HEVC_ENCODE = 16,
  ORCH_CAP_VP8_DECODE = 17,
  ORCH_CAP_VP9_DECODE = 18,
  ORCH_CAP_VP8_ENCODE = 19,
  ORCH_CAP_VP9_ENCODE = 20,
  ORCH_CAP_SEGMENT_SLICING = 26,
};
/* Bit n is capability n, in 64-bit words (spec §7). go-livepeer's numbers fill word 0; lpod's own
 * extensions (AV1: 960, 961) sit in word 15, so the set spans 16 words. The wire carries the words
 * up to the last non-zero one. */
#define ORCH_CAP_WORDS 16

typedef struct orch_caps {
  uint64_t bits[ORCH_CAP_WORDS];
  char version[32];
} orch_caps_t;

void orch_caps_set(orch_caps_t *c, int cap);
bool orch_caps_has(const orch_caps_t *c, int cap);
/* The words advertised: up to the last non-zero one (go-livepeer's own set is one word), at
 * least one. */
size_t orch_caps_words(const orch_caps_t *c);
/* J.CompatibleWith(O) of spec §7.3 with O = our own set (no mandatories, no constraints).
 * A NULL job set is the empty set. */
bool orch_caps_job_compatible(const Net__Capabilities *job, const orch_caps_t *ours);
/* Compares semver strings the way go-livepeer does (leading v allowed, pre-release and build
 * suffixes ignored). Returns LP_EINVAL when either does not parse, else <0, 0 or >0. */
int orch_semver_cmp(const char *a, const char *b, int *out);
/* Fills a wire Capabilities from ours; storage for the arrays lives in *scratch. */
typedef struct orch_caps_wire {
  uint64_t bits[ORCH_CAP_WORDS];
  Net__Capabilities__CapacitiesEntry entries[64 * ORCH_CAP_WORDS];
  Net__Capabilities__CapacitiesEntry *entry_ptrs[64 * ORCH_CAP_WORDS];
} orch_caps_wire_t;
void orch_caps_to_wire(const orch_caps_t *c, Net__Capabilities *out, orch_caps_wire_t *scratch);

/* ---- auth tokens (spec §5.2) -------------------------------------------------------------- */
#define ORCH_TOKEN_KEY_LEN 32
#define ORCH_TOKEN_LEN 32
#define ORCH_SESSION_ID_LEN 8
/* How long a token issued by GetOrchestrator stays valid (go's authTokenValidPeriod). */
#define ORCH_TOKEN_VALID_S (30 * 60)

/* HMAC-SHA256(key, session_id || big-endian minimal |expiration|). */
int orch_token_compute(const uint8_t key[ORCH_TOKEN_KEY_LEN], const char *session_id,
                       int64_t expiration, uint8_t out[ORCH_TOKEN_LEN]);
bool orch_token_verify(const uint8_t key[ORCH_TOKEN_KEY_LEN], const Net__AuthToken *t);
/* 8 lowercase hex characters from 4 random bytes, NUL-terminated. */
int orch_session_id_new(char out[ORCH_SESSION_ID_LEN + 1]);

/* ---- profiles ----------------------------------------------------------------------------- */
typedef enum { ORCH_FMT_MPEGTS = 0, ORCH_FMT_MP4 = 1 } orch_format_t;

typedef struct orch_profile {
  char *name; /* never empty: an unnamed profile is named net_<W>x<H>_<bitrate> */
  int32_t width, height, bitrate;
  uint32_t fps, fps_den;
  orch_format_t format;
  int profile; /* wire enum 0..4 */
  int32_t gop; /* ms; -1 intra-only */
  int encoder; /* wire enum 0..3 */
  int32_t color_depth;
  int chroma_format;
  uint32_t quality;
} orch_profile_t;

/* The profile list go-livepeer picks (fullProfiles3, else 2, else 1), checked and named.
 * On an unknown enum returns LP_EINVAL with go's text in *err. */
int orch_profiles_parse(const Net__SegData *sd, orch_profile_t **out, size_t *n, const char **err);
void orch_profiles_free(orch_profile_t *p, size_t n);
const char *orch_profile_ext(const orch_profile_t *p);

/* Flatten(segData) of spec §4.3 over the parsed profile names; malloc'd. */
int orch_seg_flatten(const Net__SegData *sd, const orch_profile_t *p, size_t n, uint8_t **out,
                     size_t *out_len);

/* ---- the /segment checks of spec §4.2 steps 1-5 --------------------------------------------- */
typedef struct orch_http_err {
  int status; /* 0 = no error */
  char text[256];
} orch_http_err_t;

typedef struct orch_seg_req {
  Net__SegData *sd;
  Net__Payment *payment;
  uint8_t sender[20];
  orch_profile_t *profiles;
  size_t n_profiles;
  int32_t duration_ms;    /* 0 on the wire becomes 2000 */
  const char *session_id; /* points into sd */
  bool held;              /* room is held for its new session (orch_admit_room) */
  uint8_t *info;          /* the refreshed OrchestratorInfo of step 3, packed */
  size_t info_len;
  uint64_t pay_ns; /* ProcessPayment and the balance gate, on the loop */
} orch_seg_req_t;

void orch_seg_req_free(orch_seg_req_t *r);

/* ---- the result store behind GET /stream (spec §4.4, §4.7) -------------------------------- */
/* Objects per folder kept (go-tools' memory driver keeps the last 12). */
#define ORCH_STORE_KEEP 12

typedef struct orch_store orch_store_t;
orch_store_t *orch_store_new(void);
void orch_store_free(orch_store_t *s);
/* Takes ownership of data (malloc'd). name is "<folder>/<file>". */
int orch_store_put(orch_store_t *s, const char *session_id, const char *name, uint8_t *data,
                   size_t len);
/* Returns the bytes (owned by the store, valid until the next put or drop) or NULL. */
const uint8_t *orch_store_get(orch_store_t *s, const char *session_id, const char *name,
                              size_t *len);
void orch_store_drop_session(orch_store_t *s, const char *session_id);
/* Maps "<session>/<name>" (the path after /stream/) to a stored object. */
const uint8_t *orch_store_lookup(orch_store_t *s, const char *path, size_t *len);
/* go's mime.TypeByExtension for what the store holds; "" for anything else. */
const char *orch_store_mime(const char *name);

/* ---- transcode jobs and the engine seam ----------------------------------------------------- */
typedef struct orch_rendition {
  uint8_t *data;
  size_t len;
  int64_t pixels; /* encoded pixels: frames x encoded W x H */
} orch_rendition_t;

typedef struct orch_job orch_job_t;
struct orch_job {
  /* inputs, read-only for the engine */
  const Net__SegData *sd; /* the gateway's segment data (remote transcoders forward it) */
  char session_id[ORCH_SESSION_ID_LEN * 4 + 1];
  char manifest_id[128];
  int64_t seq;
  int32_t duration_ms;
  const orch_profile_t *profiles;
  size_t n_profiles;
  const uint8_t *input;
  size_t input_len;
  uint64_t clip_from_ms, clip_to_ms; /* 0 = unset */
  bool force_reinit;
  int device; /* the device-table entry the session was placed on (0: the CPU) */
  /* outputs, written by the engine on the worker thread */
  orch_rendition_t *out; /* n_profiles entries, zeroed */
  char error[256];       /* non-empty: the transcode failed with this text */
  uint64_t engine_ns;    /* time in the engine: its transcode call, or submit to done */
  /* engine_ns, less the part spent beside the session's previous job (a job taken while that
   * one was still in the engine adds only the time since it finished): the time per segment
   * the capacity model reads. Set when the job comes back, on the loop. */
  uint64_t service_ns;
  uint64_t queued_ns; /* submitted -> picked up by the worker */
  /* owner bookkeeping */
  void (*done)(orch_job_t *job, void *arg); /* on the loop thread */
  void *done_arg;
  orch_job_t *next;
  struct orch_session *session;
  bool started;
  uint64_t t_submit; /* lp_now_ns() at submit */
};

/* How segments get transcoded. open/transcode/close run on the session's worker thread, so a
 * stream's codec state can stay warm between its segments. */
typedef struct orch_engine {
  void *ctx;
  int (*open)(void *ctx, const char *session_id, void **state);
  /* Fills job->out or job->error; returns 0 either way unless something unrecoverable broke. */
  int (*transcode)(void *ctx, void *state, orch_job_t *job);
  void (*close)(void *ctx, void *state);
  /* Engines that live on the loop (remote transcoders) set start instead of the three above:
   * sessions then have no worker thread; start runs on the loop with the session's next job
   * and the engine calls orch_sessions_job_done(job) on the loop when it is transcoded (or
   * failed, with job->error set). A nonzero return fails the job as ErrTranscoderUnavailable. */
  int (*start)(void *ctx, orch_job_t *job);
  /* Optional: the session ended (idle, EndTranscodingSession); runs on the loop. */
  void (*session_ended)(void *ctx, const char *session_id);
  /* Optional, for start engines: whether next may start while running (the session's job the
   * engine has) is still in progress; without it a session's jobs go one at a time. */
  bool (*start_beside)(void *ctx, const orch_job_t *running, const orch_job_t *next);
  /* Optional, used instead of transcode when set: starts the job and returns once the engine
   * can take the session's next one, then calls done(job) once, on any thread, with job->out
   * or job->error filled; jobs complete in submission order, and close waits for them. */
  void (*submit)(void *ctx, void *state, orch_job_t *job, void (*done)(orch_job_t *job));
} orch_engine_t;

/* The media module's transcode engine (engine_media.c). Its ctx, when set, is an
 * orch_media_ctx_t; NULL means the CPU with the default preset. */
extern const orch_engine_t orch_engine_media;
typedef struct orch_media_ctx {
  const hw_table_t *table; /* job->device indexes it */
  const char *cpu_preset;  /* -cpuPreset; NULL = the backend default */
  /* Held while a session thread copies the table (the loop writes device health under it);
   * NULL: the table never changes. */
  pthread_mutex_t *table_mu;
  /* A device failed a segment (called on a session thread); NULL: nobody listens. */
  void (*device_failed)(void *arg, int device);
  void *arg;
} orch_media_ctx_t;

/* Remote transcoders through the pool manager (engine_pool.c). The manager can be set after the
 * sessions exist (it needs the server); until then segments fail as unavailable. */
typedef struct orch_pool_engine {
  pool_manager_t *manager;
  /* -localWorkers with the capacity model (placed): a new session goes where the model placed
   * it (job->device): device d >= 1 to worker d - 1 when each worker has its own device
   * (per_device, which holds with or without the model), the CPU to any local worker, -1 (no
   * room here) to a remote transcoder */
  bool placed, per_device;
  /* the local workers have the CPU alone: one places a session where the node did (a worker
   * with a device puts every session on it, whatever the node's placement) */
  bool cpu_only;
} orch_pool_engine_t;
void orch_engine_pool(orch_pool_engine_t *pe, orch_engine_t *out);
/* A local worker's POOL_DEVICES_DOWN_HEADER (down: comma-separated device names, or "none") as
 * entries of the node's table t: bit j set when entry j (j >= 1) is listed and is the worker's
 * (with one worker per device, worker i has only entry i + 1). */
uint32_t orch_worker_devices_down(const hw_table_t *t, bool per_device, int worker,
                                  const char *down);

/* ---- sessions (spec §5.3) ------------------------------------------------------------------- */
/* Segments a session may hold: one transcoding plus four waiting (go's buffered channel of 4). */
#define ORCH_SESSION_QUEUE 4
#define ORCH_SESSION_IDLE_MS_DEFAULT 70000

typedef struct orch_sessions orch_sessions_t;
typedef struct orch_session orch_session_t;

orch_sessions_t *orch_sessions_new(uv_loop_t *loop, const orch_engine_t *engine,
                                   orch_store_t *store, int max_sessions, uint64_t idle_ms);
/* Sessions whose workers still run are finished off before the callback. */
void orch_sessions_close(orch_sessions_t *ss, void (*closed)(void *), void *arg);
void orch_sessions_free(orch_sessions_t *ss);
int orch_sessions_count(const orch_sessions_t *ss);
bool orch_sessions_exists(const orch_sessions_t *ss, const char *session_id);
/* The device its first segment was placed on (orch_job_t.device; -1: a remote transcoder), 0
 * for a session not in the table. */
int orch_sessions_first_device(const orch_sessions_t *ss, const char *session_id);
void orch_sessions_set_max(orch_sessions_t *ss, int max_sessions);
int orch_sessions_max(const orch_sessions_t *ss);
/* CheckCapacity: 0 when the session exists or a new one fits, else LP_ECAPACITY. */
int orch_sessions_check_capacity(const orch_sessions_t *ss, const char *session_id);
/* Queues a job on its session (creating the session if needed). LP_ECAPACITY: a new session
 * would pass max; LP_EAGAIN: the queue is full. On success the job's done callback fires on
 * the loop once transcoded (or failed, or cancelled by a teardown). */
int orch_sessions_submit(orch_sessions_t *ss, orch_job_t *job);
/* A loop-side engine finished the job orch_engine_t.start was given. */
void orch_sessions_job_done(orch_job_t *job);
/* Sets job->engine_ns to now less its hand-over (t_submit + queued_ns): for an engine whose job
 * completes after the call that took it (submit, a loop-side start). */
void orch_job_engine_done(orch_job_t *job);
/* Called on the loop whenever a session leaves the table (idle, ended, stopped). */
void orch_sessions_on_end(orch_sessions_t *ss, void (*ended)(void *arg, const char *session_id),
                          void *arg);
/* Tears a session down: the queued jobs end with an error, its results are dropped. */
int orch_sessions_end(orch_sessions_t *ss, const char *session_id);
/* Jobs not yet answered, across all sessions (queued, transcoding or finished but unseen). */
int orch_sessions_jobs(const orch_sessions_t *ss);

/* ---- admission by the cost of the work (admit.c, docs/capacity.md) ------------------------
 * For a node that transcodes itself. Loop thread only. */
typedef struct orch_admit orch_admit_t;
/* The table's devices in the scheduler (device i = table entry i), telemetry, -perGpuMax, and
 * calibration (cached in the data dir). measure: devices without a valid cache record are
 * measured here when -testTranscoder is on (-calibrate: all of them); false when `lpod
 * calibrate` already did that in a child process and only its cache is read. The table must
 * outlive it. */
int orch_admit_new(uv_loop_t *loop, const lp_config_t *cfg, const hw_table_t *table, bool measure,
                   orch_admit_t **out);
/* The benchmark calibration runs on a device of the table (lp_sched_bench_fn): a stage through
 * the device's backend, or on the CPU the reference ladder through the media engine. */
int orch_admit_bench(orch_admit_t *a, const lp_sched_device_desc_t *dev,
                     const lp_sched_bench_req_t *req, double *fps, double *src_bpp);

/* ---- start-up device probe (startup.c) ------------------------------------------------------
 * The device table of a node that transcodes: `lpod calibrate` runs as a child process with the
 * node's device, self-test and calibration flags, probes and self-tests the devices, writes the
 * calibration cache and prints the table as JSON, which is read back here. A crash or a hang of
 * a driver during the probe stops that child, not the node, and the encoders, test clips and
 * heap of the self-test never live in the node's address space. LP_EUNSUPP when no child can be
 * started (the caller then probes in process); another error (logged) when the probe failed. */
int orch_probe_devices(const lp_config_t *cfg, bool model, hw_table_t *t);
/* orch_probe_devices (model: the child also calibrates the capacity model when the flags ask
 * for it), or the same probe in this process when no child can be started (*in_process); logs
 * the table. */
int orch_devices(const lp_config_t *cfg, bool model, hw_table_t *t, bool *in_process);
/* Sets the lpod_device_* gauges from the model: before /metrics renders (orch_node_metrics), so
 * the hot paths never touch them. */
void orch_admit_metrics(const orch_admit_t *a);
/* Starts a save of the learnt ladders to the data dir on libuv's thread pool, unless one is in
 * progress or nothing changed since the last; the model's timer does this every minute. */
void orch_admit_save(orch_admit_t *a);
/* Closes its timer: run the loop afterwards. The ladders are saved: at once when no save is in
 * progress, else by that save after its own write, so the newest lands last. */
void orch_admit_free(orch_admit_t *a);
/* Room for one more stream: the smallest there is (144p in, one 144p rendition) when profiles
 * is NULL (GetOrchestrator, which knows nothing of the stream), else these renditions from the
 * smallest source they allow (a new session's credentials, before its body is known). With
 * session_id and held, that least cost is also held for the session while its body arrives
 * (lp_sched_hold; *held true when this call made the hold), so that the streams arriving
 * meanwhile are checked beside it: the weighing of its first segment (orch_admit_session) ends
 * the hold, else orch_admit_unhold when the request ends. 0 or LP_ECAPACITY. may_spill: a
 * remote transcoder can take the stream if there is no room here, so no room is not a refusal
 * (neither logged nor counted as one). */
int orch_admit_room(orch_admit_t *a, const char *session_id, const orch_profile_t *profiles,
                    size_t n, bool *held, bool may_spill);
void orch_admit_unhold(orch_admit_t *a, const char *session_id);
/* Every segment: sets job->device to its session's placement. A new session's first segment
 * is weighed (demuxed, not decoded) with its profiles and placed; LP_ECAPACITY
 * ("OrchestratorCapped" in err) when it does not fit, LP_ERANGE with the reason in err for a
 * session already failed as too slow. An existing session is never refused. may_spill: as for
 * orch_admit_room, LP_ECAPACITY then means the stream goes to a remote transcoder. */
int orch_admit_session(orch_admit_t *a, orch_job_t *job, bool is_new, bool may_spill, char *err,
                       size_t errlen);
/* Feeds a transcoded segment back; true when its stream alone cannot keep real time: its
 * capacity is released and its later segments are refused with the reason. */
bool orch_admit_segment_done(orch_admit_t *a, const orch_job_t *job);
void orch_admit_release(orch_admit_t *a, const char *session_id);
/* -maxSessions changed at run time (0: auto, no count cap). */
void orch_admit_set_max(orch_admit_t *a, int max_sessions);
/* /setTargetRealtimeRatio: LP_EINVAL outside (0, 1]. */
int orch_admit_set_target(orch_admit_t *a, double ratio);
/* Streams of the probe shape that fit on the empty node. */
int orch_admit_capacity(const orch_admit_t *a);
/* A device of the table quarantined (down) or back: new sessions avoid it while it is down. */
void orch_admit_device_down(orch_admit_t *a, int device, bool down);
/* Adds "Capacity": the scheduler's numbers per device and engine. */
void orch_admit_status(const orch_admit_t *a, cJSON *obj);

/* ---- the orchestrator core: state that the wire handlers share ---------------------------- */
typedef struct orch_core {
  uv_loop_t *loop;
  char *service_uri;
  uint8_t token_key[ORCH_TOKEN_KEY_LEN];
  uint8_t address[20];
  orch_caps_t caps;
  orch_payments_t pay;
  orch_store_t *store;
  orch_sessions_t *sessions;
  orch_admit_t *admit; /* NULL: sessions are counted only (remote transcoders, tests) */
  /* -localWorkers with the capacity model: the pool whose remote transcoders (those that are not
   * the node's workers) take new sessions the model has no room for; NULL: none */
  const pool_manager_t *spill;
  bool stopping;
} orch_core_t;

/* No room for a new session: the capacity model refuses it (see orch_admit_room; with held, a
 * new session's least cost is held while its body arrives) and no remote transcoder could take
 * it either. */
static inline bool orch_core_no_room(orch_core_t *c, const char *session_id,
                                     const orch_profile_t *profiles, size_t n,
                                     const Net__Capabilities *job_caps, bool *held) {
  if (!c->admit) return false;
  bool spill = c->spill && pool_manager_can_take_remote(c->spill, job_caps);
  return orch_admit_room(c->admit, session_id, profiles, n, held, spill) && !spill;
}

/* ---- TranscodeResult (spec §4.4) ---------------------------------------------------------- */
/* Builds the response body for a finished job: its renditions stored under
 * <profile>/<seq><ext> with URLs on the service URI, the signature over their hashes, or the
 * job's error. Takes the renditions' bytes. *pixels gets their sum (for DebitFees). */
int orch_result_encode(orch_core_t *c, orch_job_t *job, const uint8_t *info, size_t info_len,
                       uint8_t **out, size_t *out_len, int64_t *pixels);
/* A body carrying only an error text. info (packed, may be NULL) is appended as field 16. */
int orch_result_encode_error(int64_t seq, const char *error, const uint8_t *info, size_t info_len,
                             uint8_t **out, size_t *out_len);

/* service_addr as go-livepeer's getServiceURI reads -serviceAddr: https:// when no scheme. */
char *orch_service_uri(const char *service_addr);

/* GetOrchestrator (spec §3.3). On error returns LP_EPERM/LP_ECAPACITY and the gRPC message. */
int orch_get_orchestrator(orch_core_t *c, const Net__OrchestratorRequest *req, uint8_t **out,
                          size_t *out_len, char *err, size_t errlen);
/* EndTranscodingSession (spec §3.4). */
int orch_end_session(orch_core_t *c, const Net__EndTranscodingSessionRequest *req, char *err,
                     size_t errlen);
/* Ping: the signed value (empty offchain). */
int orch_ping(orch_core_t *c, const Net__PingPong *req, uint8_t **out, size_t *out_len);

/* Steps 1-5 of spec §4.2 on the two headers (either may be NULL for absent). */
int orch_seg_check(orch_core_t *c, const char *seg_hdr, size_t seg_len, const char *pay_hdr,
                   size_t pay_len, orch_seg_req_t *req, orch_http_err_t *e);
/* Step 8: keccak256(body) against SegData.hash (BytesToHash of it). */
int orch_seg_check_hash(const orch_seg_req_t *req, const uint8_t *body, size_t len,
                        orch_http_err_t *e);
/* The same with keccak256(body) already computed (hashed while the body streamed in). */
int orch_seg_check_digest(const orch_seg_req_t *req, const uint8_t digest[32], orch_http_err_t *e);
/* Packs the OrchestratorInfo for a sender (spec §3.3 step 5) carrying the given token. */
int orch_info_pack(orch_core_t *c, const uint8_t sender[20], const Net__AuthToken *token,
                   uint8_t **out, size_t *out_len);

/* The payment seam's offchain rules (spec §3.1, §9.4): every signature verifies, nothing is
 * signed, no price, no ticket params, every payment is accepted. */
void orch_payments_offchain(orch_payments_t *p);

#endif
