/* sched: admission by the cost of the work, per device (docs/capacity.md).
 *
 * A job costs work units per second on each engine of a device (decoder, scaler, encoder);
 * 1 work unit (wu) = 1 ms of one engine's time, so an engine is full at 1000 wu/s. Costs come
 * from the job's pixel rates weighed with per-device coefficients (ms per megapixel) that a
 * calibration benchmark measures and caches in the data dir. Live correction (EWMA of the
 * measured real-time ratio) and telemetry (CPU, NVML, Intel PMU) adjust what fits.
 *
 * Threading: none of its own. Every call is made on the orchestrator's loop thread; telemetry
 * is sampled by lp_sched_poll() from a timer on that thread. */
#ifndef LPOD_SCHED_H
#define LPOD_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "lpod/config.h"
#include "lpod/core.h"

/* ---- vocabulary ---- */

typedef enum {
  LP_SCHED_DEV_CPU = 0,
  LP_SCHED_DEV_NVIDIA,
  LP_SCHED_DEV_QSV,
  LP_SCHED_DEV_NETINT,
} lp_sched_dev_kind_t;

/* The first four equal media_codec_t (include/lpod/media.h); AV1 is a source codec only there. */
typedef enum {
  LP_SCHED_CODEC_H264 = 0,
  LP_SCHED_CODEC_HEVC = 1,
  LP_SCHED_CODEC_VP8 = 2,
  LP_SCHED_CODEC_VP9 = 3,
  LP_SCHED_CODEC_AV1 = 4,
} lp_sched_codec_t;
#define LP_SCHED_CODECS 5

/* Encoder speed tiers; lp_sched_preset_from_name() maps x264 and NVENC names onto them. */
typedef enum {
  LP_SCHED_PRESET_FAST = 0,
  LP_SCHED_PRESET_MEDIUM = 1,
  LP_SCHED_PRESET_SLOW = 2,
} lp_sched_preset_t;
#define LP_SCHED_PRESETS 3

typedef enum {
  LP_SCHED_STAGE_DECODE = 0,
  LP_SCHED_STAGE_SCALE,
  LP_SCHED_STAGE_ENCODE,
  /* calibration only, not a stage of the cost model: a whole ladder through the media engine
   * (lp_sched_bench_req_t) */
  LP_SCHED_STAGE_LADDER
} lp_sched_stage_t;
#define LP_SCHED_STAGES 3 /* the cost model's: decode, scale, encode */
/* Engines of a device; which stage runs on which engine depends on the kind (CPU: one engine
 * for all; NVIDIA: NVDEC, CUDA, NVENC; QSV: video for decode and encode, video-enhance for
 * scale; Netint: decoder, scaler, encoder). */
#define LP_SCHED_MAX_ENGINES 3

const char *lp_sched_kind_name(lp_sched_dev_kind_t k);
const char *lp_sched_codec_name(lp_sched_codec_t c);
const char *lp_sched_preset_name(lp_sched_preset_t p);
/* "h264"/"avc", "hevc"/"h265", "vp8", "vp9", "av1" (case-insensitive). LP_EINVAL otherwise. */
int lp_sched_codec_from_name(const char *name, lp_sched_codec_t *out);
/* x264 names (ultrafast..veryfast: fast, faster..medium: medium, slow..placebo: slow), NVENC p1..p7
 * (p1-p3 fast, p4-p5 medium, p6-p7 slow) and the tier names themselves; NULL or unknown: medium. */
lp_sched_preset_t lp_sched_preset_from_name(const char *name);

/* ---- jobs and the cost model ---- */

typedef struct lp_sched_rendition {
  int width, height;
  double fps; /* <= 0: the source rate */
  lp_sched_codec_t codec;
  lp_sched_preset_t preset;
} lp_sched_rendition_t;

#define LP_SCHED_MAX_RENDITIONS 16
typedef struct lp_sched_job {
  int in_width, in_height;
  double in_fps; /* <= 0: unknown, 30 is assumed (go-livepeer's balancer does the same) */
  lp_sched_codec_t in_codec;
  /* The source's bit rate in Mbit/s (a segment's bytes over its duration); <= 0: unknown, and
   * LP_SCHED_REF_BPP bits per source pixel are assumed, the rate calibration decodes at. */
  double in_mbps;
  size_t n_renditions;
  lp_sched_rendition_t renditions[LP_SCHED_MAX_RENDITIONS];
} lp_sched_job_t;

/* Bits per source pixel assumed where a job's rate is unknown (6.2 Mbit/s at 1080p30), and the
 * rate of calibration's reference source. */
#define LP_SCHED_REF_BPP 0.1

/* Per-device coefficients in ms of engine time per megapixel. 0 = the device can't do it. */
typedef struct lp_sched_coefs {
  double decode[LP_SCHED_CODECS];
  /* Decoding also costs per bit of the source (entropy decoding): ms per megabit, on top of
   * decode[]. 0 where not measured: decode[] then prices a source at LP_SCHED_REF_BPP. */
  double decode_mbit[LP_SCHED_CODECS];
  double scale; /* per megapixel read plus written */
  double encode[LP_SCHED_CODECS][LP_SCHED_PRESETS];
  /* The CPU's reference ladder run end to end, alone, as the node runs a stream's segments: its
   * wall-clock real-time ratio over its price's share of the device, measured with sources of
   * latency_bpp[i] bits per pixel (0: not measured). The price assumes a stream's work spreads
   * over every core; a real pipeline has serial parts (demuxing, the decoder's entropy decoding,
   * the encoders' flush at a segment's end), so a stream alone runs later than its share says.
   * At least 1. */
  double latency[2], latency_bpp[2];
} lp_sched_coefs_t;

/* Pixel rates of a job, megapixels per second. */
typedef struct lp_sched_rates {
  double decode;      /* source pixels decoded */
  double decode_mbit; /* source megabits decoded per second (LP_SCHED_REF_BPP where unknown) */
  double scale;       /* Σ over renditions of (source + output) pixels per output frame */
  double encode[LP_SCHED_CODECS]; /* output pixels encoded, per codec */
} lp_sched_rates_t;

/* A job's cost on one device. */
typedef struct lp_sched_cost {
  double engine[LP_SCHED_MAX_ENGINES]; /* wu/s */
  double total;                        /* Σ engine[] */
  int enc_sessions, dec_sessions;      /* hardware sessions the job holds (0 on CPU) */
  uint64_t mem_bytes;                  /* device memory estimate (0 on CPU) */
  bool supported;                      /* false: a stage has coefficient 0 on this device */
  /* wu/s on the CPU device for the renditions this device encodes on the host's CPU
   * (lp_sched_device_desc_t.cpu_encode), set by the scheduler when it places a job; counted in
   * total, not in engine[] */
  double host_cpu;
} lp_sched_cost_t;

void lp_sched_job_rates(const lp_sched_job_t *job, lp_sched_rates_t *out);
/* Checks sizes, rates and codec values. LP_EINVAL with a message otherwise. */
int lp_sched_job_validate(const lp_sched_job_t *job, char *err, size_t errlen);
/* Built-in coefficients for a kind before any calibration; cpus scales the CPU ones (<= 0: 1). */
void lp_sched_coefs_default(lp_sched_dev_kind_t kind, double cpus, lp_sched_coefs_t *out);
/* Number of engines of a kind and the engine each stage uses. */
int lp_sched_kind_engines(lp_sched_dev_kind_t kind);
int lp_sched_stage_engine(lp_sched_dev_kind_t kind, lp_sched_stage_t stage);
const char *lp_sched_engine_name(lp_sched_dev_kind_t kind, int engine);
void lp_sched_job_cost(lp_sched_dev_kind_t kind, const lp_sched_coefs_t *c,
                       const lp_sched_job_t *job, lp_sched_cost_t *out);

/* ---- telemetry sources ----
 * Each is optional; one that can't start is skipped with one log line and the scheduler runs on
 * its model and the real-time feedback alone. */

enum {
  LP_SCHED_TEL_UTIL = 1u << 0,         /* util[] valid for the engines in util_mask */
  LP_SCHED_TEL_ENC_SESSIONS = 1u << 1, /* enc_sessions valid */
  LP_SCHED_TEL_DEC_SESSIONS = 1u << 2,
  LP_SCHED_TEL_MEM = 1u << 3, /* mem_used and mem_total valid */
};

typedef struct lp_sched_sample {
  unsigned fields;
  unsigned util_mask;                /* bit e: util[e] valid */
  double util[LP_SCHED_MAX_ENGINES]; /* busy fraction 0..1, everyone's work included */
  int enc_sessions, dec_sessions;    /* device-wide, other processes included */
  uint64_t mem_used, mem_total;
} lp_sched_sample_t;

typedef struct lp_sched_source lp_sched_source_t;
typedef struct lp_sched_source_ops {
  const char *name;
  /* Fills *out (fields it can't give stay 0). now_ms is the scheduler's clock. */
  int (*sample)(lp_sched_source_t *src, uint64_t now_ms, lp_sched_sample_t *out);
  void (*destroy)(lp_sched_source_t *src);
} lp_sched_source_ops_t;
/* Sources embed this as their first member. */
struct lp_sched_source {
  const lp_sched_source_ops_t *ops;
};
void lp_sched_source_free(lp_sched_source_t *src);

/* CPU limits of this process. root prefixes every path ("" or NULL: the real system), so
 * tests can feed sample /proc and /sys/fs/cgroup trees. */
typedef struct lp_sched_cpu_limits {
  int online;        /* CPUs listed in <root>/proc/stat */
  int affinity;      /* CPUs in Cpus_allowed_list of <root>/proc/self/status (0: unknown) */
  int cgroup;        /* 2, 1 or 0 (no cgroup CPU controller found) */
  double quota_cpus; /* cgroup quota / period, the tightest along the path; 0 = none */
  double effective;  /* min(online, affinity, quota): a 2-CPU container on 64 cores gives 2 */
} lp_sched_cpu_limits_t;
int lp_sched_cpu_limits(const char *root, lp_sched_cpu_limits_t *out);
/* Parses a cgroup v2 cpu.max line ("max 100000", "150000 100000"): CPUs or 0 for no limit. */
int lp_sched_parse_cpu_max(const char *text, double *cpus);
/* Parses a Linux CPU list ("0-3,8,10-11"); returns the number of CPUs or LP_EINVAL. */
int lp_sched_parse_cpu_list(const char *text);

/* CPU busy (engine 0) from <root>/proc/stat over the allowed CPUs, and from the cgroup's usage
 * against its quota where there is one; the larger wins. */
int lp_sched_source_cpu_new(const char *root, lp_sched_source_t **out);
/* NVIDIA through NVML, loaded with dlopen(libnvidia-ml.so.1): engine 0 NVDEC and engine 2 NVENC
 * utilisation, GPU (engine 1), encoder sessions, memory. LP_EUNSUPP when NVML is missing (logged
 * once). index is NVML's device index. */
int lp_sched_source_nvml_new(unsigned index, lp_sched_source_t **out);
/* Identity of an NVML device for calibration records. LP_EUNSUPP without NVML. */
int lp_sched_nvml_identity(unsigned index, char *uuid, size_t uuid_len, char *driver,
                           size_t driver_len);
/* Intel engine busy through the i915 perf PMU (events listed under
 * <root>/sys/bus/event_source/devices/<pmu>/): engine 0 video (vcs*), engine 1 video-enhance
 * (vecs*); or, with no i915 PMU, through the xe PMU's engine activity (active over total ticks
 * of each video and video-enhance engine, averaged per class). pmu NULL: the first i915 PMU
 * found, else the first xe one. LP_EUNSUPP when absent or not readable (no perf access): logged
 * once. */
int lp_sched_source_intel_new(const char *root, const char *pmu, lp_sched_source_t **out);
/* The PMU of the Intel GPU behind a render node ("renderD128"), from
 * <root>/sys/class/drm/<node>/device: i915_<PCI address> or xe_<PCI address> for a discrete GPU,
 * "i915" for the integrated one. LP_ENOENT when none is there. */
int lp_sched_intel_pmu_for(const char *root, const char *render_node, char *pmu, size_t len);
/* Intel media engine busy from the DRM client usage stats of this process's and its children's
 * open GPU files (<root>/proc/self/fdinfo and /proc/<child>/fdinfo): engine 0 video, engine 1
 * video-enhance, each client's busy time over the wall clock (i915) or its cycles over the GPU's
 * timestamp (xe), spread over the class's engines. Needs no privilege, and sees only lpod's own
 * work on that GPU, not other processes'. The GPU is render_node's ("renderD128"), matched by
 * PCI address (drm-pdev) where fdinfo gives one. LP_EUNSUPP where /proc has no fdinfo. */
int lp_sched_source_drm_fdinfo_new(const char *root, const char *render_node,
                                   lp_sched_source_t **out);
/* The PCI address ("0000:03:00.0") of a render node, from <root>/sys/class/drm/<node>/device. */
int lp_sched_drm_pdev(const char *root, const char *render_node, char *out, size_t len);
/* One DRM client as its fdinfo text gives it. */
typedef struct lp_sched_drm_client {
  char driver[16], pdev[64];
  uint64_t id;
  uint64_t busy[2];  /* video, video-enhance: ns (i915) or cycles (xe) */
  uint64_t total[2]; /* xe: drm-total-cycles-*; 0 on i915 */
  int capacity[2];   /* engines of the class, 0 where not given (one) */
  unsigned has;      /* bit e: busy[e] given */
} lp_sched_drm_client_t;
/* LP_ENOENT when the text names no client (no drm-client-id). */
int lp_sched_drm_fdinfo_parse(const char *text, lp_sched_drm_client_t *c);
/* The perf configs of an xe engine's activity counters (engine-active-ticks and
 * engine-total-ticks) for gt, engine class and instance, built from the PMU's sysfs events and
 * format fields under <root>/sys/bus/event_source/devices/<pmu>/. LP_ENOENT when the PMU has
 * no such events (a kernel without xe engine activity), LP_ERANGE when a value does not fit its
 * field. */
int lp_sched_xe_engine_configs(const char *root, const char *pmu, int gt, int cls, int inst,
                               uint64_t *active, uint64_t *total);

/* NETINT cards through the monitor of NETINT's SDK (`tool -o json`, ni_rsrc_mon's report, run
 * every interval_ms (0: 2 s) by one thread for all cards; lpod links no NETINT library): engine
 * 0 decoder, 1 scaler, 2 encoder load (the larger of the video engine's and the firmware's),
 * decoder and encoder instances. tool NULL or "": ni_rsrc_mon on PATH. card is the report's
 * INDEX, the card the codecs' dec/enc options select. LP_EUNSUPP when the monitor is missing or
 * its first run fails, LP_ENOENT when its report lists no such card: logged once. A sample fails
 * while the report is older than three intervals. */
int lp_sched_source_netint_new(const char *tool, int card, unsigned interval_ms,
                               lp_sched_source_t **out);
/* One card's sample from a monitor report (JSON objects one after another, as ni_rsrc_mon -o json
 * prints them; lines that do not begin an object, the monitor's banners, are skipped). LP_EINVAL
 * when it holds no object or one that does not parse, LP_ENOENT when the card is not in it. */
int lp_sched_netint_parse(const char *report, int card, lp_sched_sample_t *out);

/* A fake source for tests only: it is built into lpod_sched_fake, never into the node. */
int lp_sched_fake_source_new(lp_sched_source_t **out);
void lp_sched_fake_source_set(lp_sched_source_t *src, const lp_sched_sample_t *s);
/* Makes the next samples fail with err (0 restores). */
void lp_sched_fake_source_fail(lp_sched_source_t *src, int err);

/* ---- the scheduler ---- */

typedef struct lp_sched lp_sched_t;

typedef struct lp_sched_opts {
  double target_rt_ratio;       /* headroom: an engine is full at target × 1000 wu/s; 0 = 0.8 */
  int max_sessions;             /* outer cap on streams; 0 = none (-maxSessions auto) */
  double ewma_alpha;            /* weight of the newest segment; 0 = 0.2 */
  double gain;                  /* budget correction step per round of segments; 0 = 0.1 */
  double corr_min, corr_max;    /* bounds of the budget correction; 0 = 0.25 and 2.0 */
  int min_segments;             /* segments before a stream or device is judged; 0 = 3 */
  uint64_t telemetry_stale_ms;  /* samples older than this are ignored; 0 = 10000 */
  double mem_reserve;           /* fraction of device memory kept free; 0 = 0.1 */
  uint64_t (*clock_ms)(void);   /* NULL = lp_now_ms (tests inject their own) */
  lp_sched_preset_t cpu_preset; /* the CPU's encoder tier (-cpuPreset): its reference ladder's */
} lp_sched_opts_t;
#define LP_SCHED_OPTS_INIT                                                                         \
  { 0.8, 0, 0, 0, 0, 0, 0, 0, 0, NULL, LP_SCHED_PRESET_MEDIUM }
/* Options from the node's flags: -targetRealtimeRatio, -maxSessions, -cpuPreset. */
void lp_sched_opts_from_config(const lp_config_t *cfg, lp_sched_opts_t *out);

int lp_sched_new(const lp_sched_opts_t *opts, lp_sched_t **out);
void lp_sched_free(lp_sched_t *s);

typedef struct lp_sched_device_desc {
  lp_sched_dev_kind_t kind;
  const char *name;   /* for logs and the admin API: "cpu", "nvidia:0", "qsv:/dev/dri/renderD128" */
  const char *id;     /* stable identity for calibration: GPU UUID, PCI address, CPU model */
  const char *driver; /* driver version ("" where none) */
  double cpus;        /* CPU: effective CPUs (lp_sched_cpu_limits); ignored otherwise */
  int max_enc_sessions, max_dec_sessions; /* hardware session caps; 0 = none */
  uint64_t mem_total;                     /* device memory; 0 = unknown (telemetry may tell) */
  /* Codecs (bit 1 << lp_sched_codec_t) this device encodes on the host's CPU from its frames, as
   * a GPU without NVENC does. Their encode cost is charged to the CPU device (the first one of
   * kind cpu) instead of this device's encoder, since both share the same cores. Ignored for a
   * CPU device and when the scheduler has none. */
  unsigned cpu_encode;
  /* The device's frames come back to host memory and are scaled there (NETINT, as lpms runs
   * it): the scale stage is charged to the CPU device, priced with its coefficient, instead of
   * a scaler of this device. Ignored for a CPU device and when the scheduler has none. */
  bool cpu_scale;
} lp_sched_device_desc_t;

/* Adds a device with the built-in coefficients; returns its index in *index. */
int lp_sched_add_device(lp_sched_t *s, const lp_sched_device_desc_t *d, int *index);
int lp_sched_device_count(const lp_sched_t *s);
int lp_sched_set_coefs(lp_sched_t *s, int dev, const lp_sched_coefs_t *c);
int lp_sched_get_coefs(const lp_sched_t *s, int dev, lp_sched_coefs_t *out);
/* Hands a telemetry source to a device (the scheduler frees it); NULL detaches. */
int lp_sched_attach_source(lp_sched_t *s, int dev, lp_sched_source_t *src);
/* Samples every attached source (call from a timer, e.g. every 1 to 2 s). */
void lp_sched_poll(lp_sched_t *s);

/* Per-device stream caps, `-perGpuMax 18,15,22`: entries are positive numbers or "auto" (no
 * cap, stored as 0). *out is malloc'd. Empty text: n = 0. */
int lp_sched_parse_device_caps(const char *text, int **out, size_t *n, char *err, size_t errlen);
/* Applies a parsed list to the devices in the order they were added: one entry applies to all;
 * otherwise there must be one per device. */
int lp_sched_apply_device_caps(lp_sched_t *s, const int *caps, size_t n, char *err, size_t errlen);
/* -maxSessions at run time (/setMaxSessions); 0 = no count cap (auto). */
void lp_sched_set_max_sessions(lp_sched_t *s, int n);
/* -targetRealtimeRatio at run time (/setTargetRealtimeRatio), in (0, 1]; LP_EINVAL otherwise.
 * Budgets follow at once: a lower target refuses new sessions until the admitted ones fit under
 * it (none is dropped), a higher one admits more. */
int lp_sched_set_target(lp_sched_t *s, double ratio);
/* Retail NVIDIA drivers cap NVENC sessions for the whole system, all cards together (3, 5 or 8
 * depending on the driver). n is that cap as the media engine detected it; 0 = none. */
void lp_sched_set_nvenc_system_cap(lp_sched_t *s, int n);
/* A device quarantined after a failure (down) takes no new sessions until it is set up again;
 * the sessions it holds stay placed there (the engine runs them elsewhere meanwhile). */
int lp_sched_set_device_down(lp_sched_t *s, int dev, bool down);

/* ---- admission ---- */

typedef enum {
  LP_SCHED_FIT = 0,
  LP_SCHED_R_NO_DEVICE,    /* no device registered */
  LP_SCHED_R_INVALID,      /* the job description is malformed */
  LP_SCHED_R_MAX_SESSIONS, /* -maxSessions reached */
  LP_SCHED_R_DEVICE_CAP,   /* the device's stream cap (-perGpuMax) */
  LP_SCHED_R_UNSUPPORTED,  /* a codec the device can't decode or encode */
  LP_SCHED_R_DEVICE_DOWN,  /* the device is quarantined after a failure (until re-tested) */
  LP_SCHED_R_TOO_LARGE,    /* the job alone exceeds the device's budget */
  LP_SCHED_R_OVERLOADED,   /* the device is behind real time: new sessions wait */
  LP_SCHED_R_ENC_SESSIONS, /* hardware encoder or decoder sessions */
  LP_SCHED_R_MEMORY,       /* device memory */
  LP_SCHED_R_LATENCY,      /* a stream there, or the job, would run past the target ratio */
  LP_SCHED_R_BUSY,         /* the work budget is used up */
} lp_sched_reason_t;
const char *lp_sched_reason_name(lp_sched_reason_t r);

typedef struct lp_sched_verdict {
  lp_sched_reason_t reason; /* LP_SCHED_FIT when admitted */
  int device;               /* placement, or the device whose refusal is reported; -1 if none */
  char detail[256];         /* one line for the log: what refused and the numbers */
} lp_sched_verdict_t;

/* A job of this shape would fit now (nothing is committed), beside the admitted sessions and the
 * held room (lp_sched_hold). job NULL: the probe job (720p30 H.264 in, one 360p30 H.264
 * rendition). Returns 0 or LP_ECAPACITY (the orchestrator answers OrchestratorCapped) or
 * LP_EINVAL. */
int lp_sched_check(lp_sched_t *s, const lp_sched_job_t *job, lp_sched_verdict_t *v);
/* Holds room for a new session whose first segment is still arriving, so that the streams that
 * arrive meanwhile are checked against it: job is the least the session can cost (its renditions
 * from the smallest source they allow). Held room counts in lp_sched_check and lp_sched_hold,
 * not in lp_sched_admit, which weighs each session by what it is: a hold only turns away, early,
 * streams that would not fit beside the ones already arriving. It ends when its session is
 * admitted or refused (lp_sched_admit), at lp_sched_unhold, or when ttl_ms have passed
 * (lp_sched_poll). Returns 0 with *made true when it made the hold (false: the session is
 * admitted or held already), LP_ECAPACITY or LP_EINVAL. */
int lp_sched_hold(lp_sched_t *s, const char *session_id, const lp_sched_job_t *job, uint64_t ttl_ms,
                  bool *made, lp_sched_verdict_t *v);
/* Ends a session's hold; LP_ENOENT when it has none. */
int lp_sched_unhold(lp_sched_t *s, const char *session_id);
/* Holds in place now. */
int lp_sched_holds(const lp_sched_t *s);
/* Admits a session at its first segment and places it on the device with the most room after
 * the job; sticky: a session already admitted gets its device back without a new check. Its
 * hold, if any, ends either way. Returns 0 (v->device is the placement), LP_ECAPACITY or
 * LP_EINVAL. */
int lp_sched_admit(lp_sched_t *s, const char *session_id, const lp_sched_job_t *job,
                   lp_sched_verdict_t *v);
/* The device of an admitted session, or -1. */
int lp_sched_session_device(const lp_sched_t *s, const char *session_id);
/* Ends a session and frees what it held. LP_ENOENT if unknown. */
int lp_sched_release(lp_sched_t *s, const char *session_id);

/* ---- live correction ---- */

typedef enum {
  LP_SCHED_ON_TIME = 0,
  LP_SCHED_DEVICE_BEHIND, /* the device is over the target ratio: new sessions are refused there */
  LP_SCHED_STREAM_BEHIND, /* this stream alone can't keep real time: fail it with a clear error */
} lp_sched_health_t;
/* Feeds back one transcoded segment: transcode time / segment duration. */
lp_sched_health_t lp_sched_report_segment(lp_sched_t *s, const char *session_id,
                                          uint64_t transcode_ms, uint64_t duration_ms);

typedef struct lp_sched_session_info {
  int device;
  double rt_ratio; /* EWMA of this stream's transcode time / segment duration */
  int segments;
  bool behind; /* flagged LP_SCHED_STREAM_BEHIND */
  double cost; /* wu/s over all engines */
  /* What its ladder's segments on this device say (docs/capacity.md, "Each ladder's latency"):
   * the ratio predicted alone and its growth per 1000 wu/s of other work; 0 until learnt. */
  double lone_rt, slope;
} lp_sched_session_info_t;
/* The numbers of one admitted session (for its error message and per-stream metrics).
 * LP_ENOENT if unknown. */
int lp_sched_session_info(const lp_sched_t *s, const char *session_id,
                          lp_sched_session_info_t *out);

/* ---- numbers for logs and the admin API ---- */

typedef struct lp_sched_device_info {
  char name[64];
  lp_sched_dev_kind_t kind;
  bool calibrated;
  int n_engines;
  double budget[LP_SCHED_MAX_ENGINES];    /* wu/s usable now: 1000 × target × correction */
  double committed[LP_SCHED_MAX_ENGINES]; /* wu/s of the admitted sessions */
  double measured[LP_SCHED_MAX_ENGINES];  /* telemetry busy × 1000, -1 if none */
  double correction;                      /* budget multiplier from the real-time feedback */
  double cost_ratio; /* telemetry: measured over modelled utilisation; 0 until judged */
  double rt_ratio;   /* EWMA of transcode time / segment duration */
  bool behind;
  int sessions, max_sessions; /* max 0 = no cap */
  int enc_sessions, max_enc_sessions;
  uint64_t mem_committed, mem_total;
  uint64_t admitted, refused;
  double host_cpu; /* wu/s its sessions' CPU encodes and scaling hold on the CPU device */
  /* its telemetry: -1 none attached, 0 attached but its last sample failed or none came yet,
   * 1 working */
  int telemetry;
} lp_sched_device_info_t;
int lp_sched_device_info(const lp_sched_t *s, int dev, lp_sched_device_info_t *out);
int lp_sched_sessions(const lp_sched_t *s);
/* How many jobs like this one would fit on the empty node (for RegisterTranscoder's capacity
 * and -maxSessions auto); job NULL: the probe job. */
int lp_sched_capacity_for(const lp_sched_t *s, const lp_sched_job_t *job);
/* Adds "targetRealtimeRatio", "maxSessions", "sessions", "holds", a "devices" array and the learnt
 * "ladders" to obj. */
int lp_sched_fill_json(const lp_sched_t *s, cJSON *obj);
/* One info line per device. */
void lp_sched_log_summary(const lp_sched_t *s);

/* ---- calibration ---- */

typedef struct lp_sched_bench_req {
  lp_sched_stage_t stage;
  lp_sched_codec_t codec; /* decode and encode */
  lp_sched_preset_t preset;
  int in_width, in_height;   /* reference sizes: 1920x1080 source */
  int out_width, out_height; /* 1280x720 for scale and encode */
  double bpp;                /* decode, ladder: the source's bits per pixel (0: LP_SCHED_REF_BPP) */
  /* LP_SCHED_STAGE_LADDER: the renditions of the reference ladder (a 30 frames/s H.264 source
   * of the request's input size) */
  const lp_sched_rendition_t *renditions;
  size_t n_renditions;
} lp_sched_bench_req_t;
/* Measures one stage's sustained throughput on a device, in frames per second at the request's
 * sizes, with the device loaded as the engine would be in service (all CPUs busy, say). For
 * LP_SCHED_STAGE_LADDER (asked of CPU devices only): the source frames per second of wall-clock
 * time the whole ladder runs at, alone, segment by segment as a stream's. Returns 0,
 * LP_EUNSUPP where the device can't run the stage (its coefficient becomes 0), or another error to
 * abandon that device's calibration (it keeps the built-in coefficients, nothing is cached); a
 * failed ladder only leaves its latency unmeasured. For decode and the ladder, *src_bpp comes in
 * as the rate asked for and goes out as the rate the source was made at, which an encoder's rate
 * control can miss (left alone where that is not known). */
typedef int (*lp_sched_bench_fn)(void *ud, const lp_sched_device_desc_t *dev,
                                 const lp_sched_bench_req_t *req, double *frames_per_s,
                                 double *src_bpp);

/* Loads <datadir>/capacity.json and, for each device whose record is missing or stale (other
 * device id, driver or FFmpeg version) or when force is set (-calibrate), runs bench and writes
 * the file back. bench NULL: stale devices keep the built-in coefficients. */
int lp_sched_calibrate(lp_sched_t *s, const char *datadir, const char *ffmpeg_version, bool force,
                       lp_sched_bench_fn bench, void *ud);
/* Whether the device runs on measured coefficients. */
bool lp_sched_device_calibrated(const lp_sched_t *s, int dev);

/* ---- learnt ladders across restarts ---- */

/* Writes what each ladder's segments taught the scheduler to <datadir>/ladders.json, if anything
 * was learnt since the last save or load. A record is used again only on the same device (kind,
 * id, driver, CPUs), FFmpeg build (ffmpeg_version) and calibration coefficients. */
int lp_sched_ladders_save(lp_sched_t *s, const char *datadir, const char *ffmpeg_version);
/* lp_sched_ladders_save in its parts, for a caller that writes off its thread: the file's text
 * (malloc'd) and the generation of learning it holds, *text NULL when nothing was learnt since
 * the last save or load; the write, from any thread (an atomic replace; writes of one process
 * must not overlap); and, back on the scheduler's thread, that gen is on disk. */
int lp_sched_ladders_text(const lp_sched_t *s, const char *ffmpeg_version, char **text,
                          uint64_t *gen);
int lp_sched_ladders_write(const char *datadir, const char *text);
void lp_sched_ladders_written(lp_sched_t *s, uint64_t gen);
/* Reads <datadir>/ladders.json after the devices are added and calibrated; *loaded (may be NULL)
 * is how many ladders it restored. A missing file is no error; a malformed one is logged and
 * left to be overwritten. */
int lp_sched_ladders_load(lp_sched_t *s, const char *datadir, const char *ffmpeg_version,
                          int *loaded);

#endif
