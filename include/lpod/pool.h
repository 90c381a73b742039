/* pool: remote transcoders (spec/protocol.md §6), both ends.
 *
 * Orchestrator side (pool_manager_*): transcoders register over the RegisterTranscoder gRPC
 * stream of the node's service port; segments go to them as NotifySegment pushes, they fetch the
 * input from a URL the manager hosts, and post renditions back to /transcodeResults. Sessions
 * are sticky to one transcoder; a new session goes to the live, compatible transcoder with the
 * most free capacity (registered capacity minus sessions assigned).
 *
 * The node's own worker processes register with secrets of their own; pool_manager_submit_to
 * sends a new session to one of them (the capacity model placed it on that worker's device).
 *
 * Transcoder side (pool_worker_*): `lpod -transcoder -orchAddr A[,B...] -orchSecret S` registers
 * with every listed orchestrator, keeps one warm media session per stream and transcodes on one
 * thread per stream.
 *
 * Threading: every function runs on the loop thread that owns the manager or worker, and every
 * callback runs there. */
#ifndef LPOD_POOL_H
#define LPOD_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lp_rpc.pb-c.h"
#include "lpod/config.h"
#include "lpod/core.h"
#include "lpod/hwaccel.h"
#include "lpod/media.h"
#include "lpod/net.h"

/* Wire constants of spec §6.4. */
#define POOL_AUTH_HEADER_VALUE "Livepeer-Transcoder-1.0"
#define POOL_ERROR_CONTENT_TYPE "livepeer/transcoding-error"
#define POOL_RESULTS_PATH "/transcodeResults"
#define POOL_REGISTER_METHOD "/net.Transcoder/RegisterTranscoder"
/* Where the manager hosts task inputs: <prefix><taskId>-<random hex>.tempfile. The random part
 * keeps one transcoder from reading another's inputs by counting task ids. */
#define POOL_INPUT_PREFIX "/transcodeInput/"
/* The error a draining lpod transcoder answers new tasks with. An lpod orchestrator takes it as
 * "send no more work here" and retries the segment elsewhere; a go-livepeer orchestrator passes
 * it to the gateway, which retries on another orchestrator. */
#define POOL_ERR_DRAINING "transcoder is shutting down"
/* What a segment fails with after two local workers went away while they had it (the second
 * time it is not retried): lpms's text for a transcoder process that died, which gateways take
 * as bad input, so they neither retry it elsewhere nor hold it against the orchestrator. */
#define POOL_ERR_WORKERS_LOST "Unrecoverable state, restart process"
/* lpod's own result-upload header: the devices of the transcoder's table quarantined now
 * (comma-separated names, "none" for none), sent by a transcoder with devices beside the CPU.
 * An lpod node reads it from its local workers so that its capacity model places no stream on
 * a device a worker quarantined; go-livepeer ignores it. */
#define POOL_DEVICES_DOWN_HEADER "Lpod-Devices-Down"

/* ---- orchestrator side ------------------------------------------------------------------------
 */

typedef struct pool_manager pool_manager_t;

typedef struct pool_manager_opts {
  const char *secret;      /* -orchSecret (already read from its file); required, non-empty */
  const char *service_uri; /* base of the input URLs handed to transcoders ("https://host:port");
                              NULL: https://127.0.0.1:<server port> */
  const char *orch_id;     /* NotifySegment.orchId: the node's address hex; NULL: "offchain" */
  size_t max_part_bytes;   /* one rendition in a result upload; 0: 48 MiB (go's MaxSegSize) */
  size_t max_result_bytes; /* a whole result upload; 0: 256 MiB */
  uint64_t min_timeout_ms; /* task timeout is max(this, 4 x duration); 0: 8000 (spec §1.5) */
  /* The node's own worker processes (-localWorkers): worker i registers with local_secrets[i]
   * (copied; none empty), which tags its registration as local worker i for
   * pool_manager_submit_to. Others register with secret. */
  const char *const *local_secrets;
  int n_local;
  /* A local worker's result upload said which of its devices are quarantined now
   * (POOL_DEVICES_DOWN_HEADER's value). Optional. */
  void (*on_devices)(pool_manager_t *m, int local, const char *down, void *arg);
  /* Transcoders came or went: capacity and capabilities changed (for -maxSessions auto and the
   * advertised capabilities). Optional. */
  void (*on_change)(pool_manager_t *m, void *arg);
  void *arg;
} pool_manager_opts_t;

/* Registers RegisterTranscoder, POST /transcodeResults and GET POOL_INPUT_PREFIX on srv (before
 * or after net_server_listen). The manager must be freed before the server. */
int pool_manager_new(uv_loop_t *loop, net_server_t *srv, const pool_manager_opts_t *opts,
                     pool_manager_t **out);
/* Ends every registration stream (grpc-status 0) and fails the tasks in flight with
 * LP_ECANCELED (their callbacks, and the waits of pool_manager_transcode_wait, return before
 * this does). The memory goes once the loop has run the handle closes. */
void pool_manager_free(pool_manager_t *m);

typedef struct pool_rendition {
  uint8_t *data; /* malloc'd; the callback may take it (set to NULL) */
  size_t len;
  int64_t pixels; /* encoded pixels, from the part's Pixels header */
  uint8_t *phash; /* MPEG-7 signature when the segment asked for one, else NULL */
  size_t phash_len;
} pool_rendition_t;

typedef struct pool_result {
  /* 0; LP_EMEDIA: the transcoder reported a transcoding error (error holds its text, which
   * the gateway gets as TranscodeResult.error); LP_ECAPACITY: "no transcoders available";
   * LP_EUNSUPP: "no transcoders can provide requested capabilities"; LP_ETIMEDOUT: no result
   * in time; LP_EPROTO: the upload did not match the profiles; LP_ECANCELED: shut down. */
  int err;
  char error[256];
  pool_rendition_t *renditions; /* one per profile, in order; NULL on error */
  size_t n;
  int64_t decoded_pixels; /* the upload's Pixels header */
  int attempts;           /* transcoders tried */
  /* Time of the last attempt spent in the protocol rather than at the transcoder: from the push
   * to the input being served, plus from the upload's headers to its last byte (0 when it did
   * not get that far). The transcoder's own fetch, transcode and multipart build are not in it. */
  uint64_t hop_ns;
} pool_result_t;

/* Runs once per submitted segment, on the loop. The result is valid during the call only
 * (renditions' data may be taken). */
typedef void (*pool_done_fn)(pool_result_t *res, void *arg);

/* Sends one segment to a transcoder. sd is the gateway's SegData (profiles, duration,
 * capabilities, auth token; its storage, hash and sig are not forwarded); session_id keys the
 * sticky assignment (NULL: sd->auth_token->session_id). The input is copied. Returns 0 and done
 * runs later (never before this returns), or LP_EINVAL for a SegData without profiles. No
 * transcoder being available is reported through done. */
int pool_manager_submit(pool_manager_t *m, const Net__SegData *sd, const char *session_id,
                        const uint8_t *input, size_t len, pool_done_fn done, void *arg);
/* Where a new session goes (pool_manager_submit_to): any transcoder; a local worker before a
 * remote one; only a transcoder that is not a local worker; or, for an index i >= 0, local
 * worker i, then another local worker, then any. A session already placed stays where it is. */
#define POOL_TARGET_ANY (-1)
#define POOL_TARGET_LOCAL (-2)
#define POOL_TARGET_REMOTE (-3)
int pool_manager_submit_to(pool_manager_t *m, const Net__SegData *sd, const char *session_id,
                           int target, const uint8_t *input, size_t len, pool_done_fn done,
                           void *arg);
/* The same from the engine's view, for callers that hold profiles rather than a SegData. */
typedef struct pool_job {
  const char *session_id; /* required */
  const char *manifest_id;
  int64_t seq;
  int32_t duration_ms; /* 0: 2000 */
  const media_profile_t *profiles;
  size_t n_profiles;
  const Net__Capabilities *caps;     /* the job's capabilities (transcoder choice); NULL: any */
  uint64_t clip_from_ms, clip_to_ms; /* 0: unset */
  bool force_reinit;
  const uint8_t *input;
  size_t input_len;
} pool_job_t;
int pool_manager_submit_job(pool_manager_t *m, const pool_job_t *job, pool_done_fn done, void *arg);

/* For engines that run on their own threads (the orchestrator's per-session workers): from any
 * thread except the loop's, hands the job to the loop and blocks until its result is in *out
 * (free it with pool_result_free). Returns out->err. The manager must outlive the call. */
int pool_manager_transcode_wait(pool_manager_t *m, const pool_job_t *job, pool_result_t *out);
/* pool_manager_end_session from any thread: it runs on the loop soon after. */
void pool_manager_end_session_async(pool_manager_t *m, const char *session_id);

/* The session ended at the orchestrator: tells its transcoder to close the stream's engine (the
 * teardown NotifySegment with an empty url) and frees its slot. LP_ENOENT if not assigned. */
int pool_manager_end_session(pool_manager_t *m, const char *session_id);

/* Live transcoders, and the sum of their registered capacities (-maxSessions auto). */
int pool_manager_transcoders(const pool_manager_t *m);
int pool_manager_capacity(const pool_manager_t *m);
/* Sessions assigned now. */
int pool_manager_load(const pool_manager_t *m);
/* ORs the live transcoders' capability bits into bits[0..nwords). Returns the number of words
 * any transcoder set (may exceed nwords; the rest is dropped). */
size_t pool_manager_caps(const pool_manager_t *m, uint64_t *bits, size_t nwords);
/* Whether some live transcoder could take a new session with these job capabilities now. */
bool pool_manager_can_take(const pool_manager_t *m, const Net__Capabilities *job);
/* The same among the transcoders that are not local workers. */
bool pool_manager_can_take_remote(const pool_manager_t *m, const Net__Capabilities *job);
void pool_result_free(pool_result_t *r);

/* ---- transcoder side ----------------------------------------------------------------------------
 */

typedef struct pool_worker pool_worker_t;

/* Starts registering with every address in cfg->orch_addr (comma list of host:port; https is
 * implied, as go-livepeer does) with cfg->orch_secret. The capacity it registers is capacity
 * when > 0 (-maxSessions auto: what the capacity model fits on the devices), else
 * cfg->max_sessions, or a stream per CPU for auto. The config must outlive the worker.
 * LP_EINVAL with a log line when the flags are unusable.
 * table (copied; NULL: the CPU only) is the device table: the worker registers the codecs its
 * devices passed, places each new session on the usable device with the fewest sessions (the
 * CPU when there is none), routes each rendition through the table as the node does, and
 * quarantines a device that fails, moving its sessions and re-testing it later. */
int pool_worker_start(uv_loop_t *loop, const lp_config_t *cfg, const hw_table_t *table,
                      int capacity, pool_worker_t **out);
/* The flags pool_worker_start needs (-orchAddr, -orchSecret): LP_EINVAL with a log line when
 * one is missing, so that a transcoder can stop before it probes its devices. */
int pool_worker_check_flags(const lp_config_t *cfg);
/* Every orchestrator refused the worker for good (`invalid secret` or `zero capacity`): fn runs
 * once; the node should stop and exit non-zero. */
void pool_worker_on_fatal(pool_worker_t *w, void (*fn)(void *arg), void *arg);
bool pool_worker_failed(const pool_worker_t *w);
/* Graceful stop (SIGTERM): running tasks finish and upload; tasks that arrive meanwhile are
 * refused with POOL_ERR_DRAINING; then the registrations close and drained(arg) runs on the
 * loop. */
void pool_worker_stop(pool_worker_t *w, void (*drained)(void *arg), void *arg);
/* Stops everything at once (tasks in flight are abandoned) and frees the worker once its
 * threads have joined and the loop has run its handle closes. */
void pool_worker_free(pool_worker_t *w);

/* Sessions open (or still closing) and tasks in the pipeline: zero when the worker is idle. */
int pool_worker_activity(const pool_worker_t *w);

/* Capability bits a software transcoder honours: H.264 in and out, MPEG-TS and MP4, fractional
 * frame rates, H.264 profiles, GOP, auth tokens, HEVC/VP8/VP9 decode and encode. Not MPEG-7
 * signatures nor segment slicing, which the engine does not do. */
uint64_t pool_worker_caps_word0(void);
/* What a transcoder with device table t (NULL: the CPU alone, untested) registers with: the
 * formats, profiles, GOP and auth tokens the engine always honours, and the codecs some device
 * of the table passed (the CPU included, where every rendition can fall back). Fills
 * bits[0..words) and returns the words used. */
size_t pool_table_caps(const hw_table_t *t, uint64_t *bits, size_t words);
/* The capability words the worker registers with (up to words of them; the rest zeroed);
 * returns how many it sends. */
size_t pool_worker_caps(const pool_worker_t *w, uint64_t *bits, size_t words);

/* ---- worker processes (combined mode) --------------------------------------------------------
 * `-orchestrator -transcoder` can run its transcoding in child `lpod -transcoder` processes that
 * register with the node's own pool manager over loopback, so a codec or driver crash costs only
 * that child's segments (the manager retries them on another transcoder); the supervisor
 * restarts a child that died, with back-off. */

typedef struct pool_supervisor pool_supervisor_t;

typedef struct pool_supervisor_opts {
  const char *exe;         /* lpod executable; NULL: /proc/self/exe */
  const char *orch_addr;   /* the node's service port as the children dial it: "127.0.0.1:8935" */
  const char *secret_file; /* file holding the pool secret (kept off the command line); its
                              last "%d" becomes the child's index (0 .. workers - 1) */
  const char *datadir;     /* children get <datadir>/worker-<i> (each locks its own) */
  int workers;             /* processes; 0: 1 */
  int capacity;            /* -maxSessions of each child; 0: 10 */
  int verbosity;           /* -v of the children */
  const char *const *extra_args; /* more flags for every child (devices), NULL-terminated */
  /* one more NAME=VALUE in the children's environment (copied), NULL: none; its last "%d"
   * becomes the child's index (0 .. workers - 1) */
  const char *env;
} pool_supervisor_opts_t;

int pool_supervisor_start(uv_loop_t *loop, const pool_supervisor_opts_t *opts,
                          pool_supervisor_t **out);
/* Child i's pid (0 while it is down) and how often it was restarted. */
int pool_supervisor_pid(const pool_supervisor_t *s, int i);
int pool_supervisor_restarts(const pool_supervisor_t *s, int i);
/* SIGTERM to every child (they drain their tasks), no more restarts; stopped(arg) runs once all
 * have exited. */
void pool_supervisor_stop(pool_supervisor_t *s, void (*stopped)(void *arg), void *arg);
/* Kills what still runs and frees once the loop has run the handle closes. */
void pool_supervisor_free(pool_supervisor_t *s);

#endif
