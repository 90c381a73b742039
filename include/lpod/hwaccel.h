/* hwaccel: one backend per kind of device (software, NVIDIA, Intel QSV, Netint). The media
 * engine drives every backend through this table and knows nothing of vendors; backends know
 * nothing of sessions or streams. docs/architecture.md maps each vendor onto it. */
#ifndef LPOD_HWACCEL_H
#define LPOD_HWACCEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libavcodec/avcodec.h>
#include <libavutil/buffer.h>
#include <libavutil/hwcontext.h>
#include <libavutil/rational.h>

#include "lpod/core.h"

#define HW_MAX_DEVICES 16

typedef struct hw_device_info {
  int index;
  char name[64]; /* "cpu", "NVIDIA GeForce RTX 3060", "/dev/dri/renderD128", ... */
  char id[48];   /* stable id (GPU UUID, PCI address); empty for the CPU */
  uint64_t mem_total;
  int max_encoders; /* concurrent encoder sessions the device allows; 0 = no known cap */
} hw_device_info_t;

/* What an encoder on a device accepts (per codec). */
typedef struct hw_limits {
  int min_w, min_h, max_w, max_h;
  int align; /* sizes are rounded down to a multiple of this (2 for 4:2:0) */
  bool bframes;
} hw_limits_t;

/* How an encoder ends a segment: every output must end with all its frames and the next
 * segment must start with an IDR frame. */
typedef enum {
  HW_EOS_REOPEN = 0, /* drain with a NULL frame, close, open a fresh encoder next segment */
  HW_EOS_FLUSH = 1,  /* drain, then avcodec_flush_buffers keeps the session (NVENC) */
} hw_eos_policy_t;

/* Where an error lies (see media_err_class_t). */
typedef enum { HW_ERR_INPUT = 1, HW_ERR_SESSION = 2, HW_ERR_DEVICE = 3 } hw_err_class_t;
typedef enum { HW_STAGE_DEMUX, HW_STAGE_DECODE, HW_STAGE_FILTER, HW_STAGE_ENCODE } hw_stage_t;

/* Everything an encoder needs; the backend maps it to its own options. */
typedef struct hw_enc_params {
  enum AVCodecID codec;
  int width, height;
  AVRational time_base; /* of the frames handed in */
  AVRational framerate; /* nominal output rate, {0,1} if passthrough and unknown */
  int64_t bitrate;      /* bits/s; 0 = none */
  int quality;          /* CRF/CQ, 0 = bitrate mode (bitrate is then min = avg = max) */
  int gop_frames;       /* > 0 maximum keyframe interval; 0 encoder default; -1 intra */
  bool gop_forced;      /* keyframes are forced by the caller: no scene-cut keyframes */
  int h264_profile;     /* media_h264_profile_t value */
  const char *preset;   /* speed preset override, NULL = backend default */
  int threads;          /* 0 = codec default */
  bool global_header;   /* muxer wants extradata (mp4) */
} hw_enc_params_t;

/* Cost coefficients: seconds of device time per megapixel at each stage (a startup benchmark
 * refines them; these are the backend's static defaults). */
typedef struct hw_cost_coef {
  double decode_s_per_mpx;
  double scale_s_per_mpx;
  double encode_s_per_mpx[4]; /* by media_codec_t: H.264, HEVC, VP8, VP9 */
} hw_cost_coef_t;

typedef struct hw_backend {
  const char *name;                /* "sw", "nvidia", "qsv", "netint" */
  enum AVHWDeviceType device_type; /* AV_HWDEVICE_TYPE_NONE for software */
  /* Enumerates devices; returns how many were written (0 = backend unusable here). */
  int (*probe)(hw_device_info_t *out, int max);
  /* Opens a device context (*out stays NULL for software). */
  int (*device_open)(int index, AVBufferRef **out);
  /* Encoder limits for an output codec (AVCodecID). */
  int (*limits)(enum AVCodecID codec, hw_limits_t *out);
  /* Chooses and configures the decoder for a stream: sets *codec and prepares ctx (hw device,
   * get_format) before avcodec_open2. LP_EUNSUPP when the stream cannot be decoded here. */
  int (*decoder_setup)(AVBufferRef *device, const AVCodecParameters *par, const AVCodec **codec,
                       AVCodecContext *ctx);
  /* Writes the filter chain that turns a decoded frame of pix_fmt into w x h frames in the
   * encoder's input format (e.g. "scale=w=640:h=360,format=yuv420p", or "scale_cuda=..."). */
  int (*scale_filter)(int in_pix_fmt, int w, int h, char *buf, size_t len);
  /* Opens an encoder. hw_frames is the filter sink's frames context for hardware frames. */
  int (*encoder_open)(AVBufferRef *device, const hw_enc_params_t *p, AVBufferRef *hw_frames,
                      AVCodecContext **out);
  hw_eos_policy_t (*eos_policy)(const AVCodecContext *enc);
  hw_err_class_t (*classify_error)(int averror, hw_stage_t stage);
  hw_cost_coef_t cost;
  /* ---- optional (NULL / false = not provided; the device table and hardware backends use
   * them) ---- */
  /* Whether this build and host can run the backend at all; on LP_EUNSUPP why says what is
   * missing and how to get it, in one line. */
  int (*check)(char *why, size_t len);
  /* Like scale_filter, but the chain ends in host memory (yuv420p) because the frames go to an
   * encoder on the CPU (a GPU without encoders, or a rendition that falls back). NULL: the
   * output of scale_filter is host memory already. */
  int (*scale_filter_host)(int in_pix_fmt, int w, int h, char *buf, size_t len);
  /* Model name and driver version of a device found by probe. */
  int (*describe)(int index, char *model, size_t model_len, char *driver, size_t driver_len);
  /* The driver caps concurrent encoder sessions (consumer NVENC): the device table opens
   * encoders at start until one is refused and caches the number in the data dir. */
  bool enc_sessions_limited;
  /* Its decoder is kept across segments: a segment's last frames are pushed out with copies of
   * the last keyframe (sentinels, whose own frames are dropped) instead of a drain and a
   * flush, after which FFmpeg builds the device decoder and its surface pool again (NVDEC:
   * spec/transcoding.md §2, the sentinel flush). */
  bool decoder_sentinels;
  /* Its scale_filter runs on the CPU: decoded frames come back to host memory and are sized
   * there (NETINT, as lpms runs it), so the capacity model charges that scaling to the CPU. */
  bool scale_on_host;
} hw_backend_t;

/* A one-input, one-output filter graph on one thread, configured: a buffer source with args
 * ("video_size=...:pix_fmt=...:time_base=...:pixel_aspect=...") and, for device frames, their
 * frames context (how a device scaler finds its device), then chain, then a buffer sink.
 * Returns 0 or an AVERROR; on failure *graph is freed and NULL. */
struct AVFilterGraph;
struct AVFilterContext;
int hw_filter_graph(const char *args, AVBufferRef *hw_frames, const char *chain,
                    struct AVFilterGraph **graph, struct AVFilterContext **src,
                    struct AVFilterContext **sink);

/* avcodec_open2 that leaves the calling thread's scheduling policy as it found it (see
 * lp_policy_t: SVT-AV1 raises the opener to SCHED_FIFO 99 under root) and says so once. */
int hw_codec_open(AVCodecContext *c, const AVCodec *codec, AVDictionary **opts);
/* Frees an encoder context, whatever it was fed: SVT-AV1 1.4 hangs in its close unless its
 * stream ended after at least one frame, so it gets a grey frame and an end of stream first
 * (what comes out is dropped). Every encoder is freed through this. */
void hw_encoder_free(AVCodecContext **c);

/* Backends built into this binary, by name ("sw" is always there). NULL if unknown. */
const hw_backend_t *hw_backend_find(const char *name);
/* All built-in backends, NULL-terminated. */
const hw_backend_t *const *hw_backend_list(void);
/* The NVIDIA driver's version from the text of /proc/driver/nvidia/version, "" when it names
 * none (builds with the NVIDIA backend). */
void hw_nv_driver_version(const char *text, char *out, size_t len);

/* ==== Additions for the hardware backends and the device table (hwaccel/devices.c) ==========
 * The fields and entries below are optional for a backend: NULL / false / 0 means "not
 * provided", so a backend written against the table above keeps working unchanged. */

/* The software backend: always built in, and where a device's renditions fall back. */
extern const hw_backend_t hw_backend_sw;
/* Built-in backends beside "sw" (each exists when its CMake option LPOD_WITH_* is on). */
extern const hw_backend_t hw_backend_nvidia, hw_backend_qsv, hw_backend_netint;

/* Codecs as the device table counts them. The first four equal media_codec_t and the wire's
 * VideoProfile.encoder; AV1 = 4 is lpod's extension of that enum (go-livepeer has none). */
typedef enum {
  HW_CODEC_H264 = 0,
  HW_CODEC_HEVC = 1,
  HW_CODEC_VP8 = 2,
  HW_CODEC_VP9 = 3,
  HW_CODEC_AV1 = 4,
} hw_codec_t;
#define HW_CODECS 5
#define HW_CODEC_BIT(c) (1u << (unsigned)(c))
#define HW_CODEC_ALL ((1u << HW_CODECS) - 1)
enum AVCodecID hw_codec_avid(hw_codec_t c);
/* Routes FFmpeg's own log lines (libav*, and the libx264 / libvpx wrappers') into lpod's log, so
 * they never reach stderr unformatted: warnings and errors at -v 5 (debug) and above, nothing
 * below.
 * Every entry point calls it before FFmpeg runs; it may be called again. */
void hw_log_init(void);
/* "h264", "hevc", "vp8", "vp9", "av1". */
const char *hw_codec_name(hw_codec_t c);
/* LP_EUNSUPP for a codec the table does not track. */
int hw_codec_from_avid(enum AVCodecID id, hw_codec_t *out);

/* H.264 sources beyond 8-bit 4:2:0 that a device decodes (go-livepeer capabilities 21..25). */
enum {
  HW_H264_444_8 = 1u << 0,
  HW_H264_422_8 = 1u << 1,
  HW_H264_444_10 = 1u << 2,
  HW_H264_422_10 = 1u << 3,
  HW_H264_420_10 = 1u << 4,
};
#define HW_H264_FMTS 5

/* Capability numbers (spec/protocol.md §7.2). AV1 is an lpod extension: its numbers sit in the
 * last 64-bit word of a 1024-bit set (word 15), far above go-livepeer's list, which grows one
 * number at a time from 0 (37 in 2025); docs/hardware.md explains the choice. */
enum {
  HW_CAP_H264 = 0,
  HW_CAP_HEVC_DECODE = 15,
  HW_CAP_HEVC_ENCODE = 16,
  HW_CAP_VP8_DECODE = 17,
  HW_CAP_VP9_DECODE = 18,
  HW_CAP_VP8_ENCODE = 19,
  HW_CAP_VP9_ENCODE = 20,
  HW_CAP_H264_DECODE_444_8 = 21,
  HW_CAP_H264_DECODE_422_8 = 22,
  HW_CAP_H264_DECODE_444_10 = 23,
  HW_CAP_H264_DECODE_422_10 = 24,
  HW_CAP_H264_DECODE_420_10 = 25,
  HW_CAP_LPOD_FIRST = 960,
  HW_CAP_AV1_DECODE = 960,
  HW_CAP_AV1_ENCODE = 961,
};

typedef enum { HW_DEV_OK = 0, HW_DEV_QUARANTINED = 1 } hw_dev_state_t;

/* One entry of the device table. */
typedef struct hw_device {
  const hw_backend_t *be;
  int index;                     /* the backend's device index */
  char name[80];                 /* "cpu", "nvidia:0", "qsv:/dev/dri/renderD128", "netint:0" */
  char model[96];                /* "NVIDIA H100 80GB HBM3", "cpu (16 cores)" */
  char driver[48];               /* driver version, "" where none */
  char id[48];                   /* stable identity (GPU UUID, render node), "" for the CPU */
  uint64_t mem_total;            /* bytes, 0 = unknown */
  unsigned dec;                  /* HW_CODEC_BIT: decoded on the device */
  unsigned enc;                  /* HW_CODEC_BIT: encoded on the device */
  unsigned enc_cpu;              /* HW_CODEC_BIT: encoded on the CPU from this device's frames */
  unsigned h264_fmts;            /* HW_H264_*: decoded on the device */
  hw_limits_t limits[HW_CODECS]; /* encoder size limits, for codecs in enc */
  int max_enc_sessions;          /* concurrent encoders the driver allows; 0 = no known cap */
  bool sessions_cached;          /* max_enc_sessions came from the data dir's cache */
  bool tested;                   /* a real transcode per codec ran (-testTranscoder) */
  hw_dev_state_t state;
  int failures;         /* device errors since it last worked */
  int session_errors;   /* session errors in a row */
  uint64_t retry_at_ms; /* quarantined until (lp_now_ms clock) */
  char note[192];       /* why a codec failed, or why the device is quarantined */
} hw_device_t;

typedef struct hw_table {
  hw_device_t dev[HW_MAX_DEVICES];
  int n;
} hw_table_t;

/* The CPU entry is always dev[0]. */
#define HW_TABLE_CPU 0

typedef struct hw_probe_opts {
  const char *nvidia;  /* -nvidia: "", "all" or "0,1,..." */
  const char *netint;  /* -netint: "", "all" or device ids */
  const char *qsv;     /* -qsv: "", "all" or render nodes "/dev/dri/renderD128,..." */
  bool test;           /* -testTranscoder: a real tiny transcode per codec and device */
  const char *datadir; /* where the encoder session cap is cached; NULL = no cache */
} hw_probe_opts_t;

/* Builds the table: the CPU, then the devices each flag selects. A flag that selects nothing
 * usable (no driver, no device, an FFmpeg without the codecs) fails with a one-line reason in
 * err, as the node must not start without hardware it was told to use. It blocks for the
 * self-tests (a few seconds per device). The table is plain data: its users serialise access. */
int hw_table_probe(const hw_probe_opts_t *o, hw_table_t *t, char *err, size_t errlen);
/* The pieces hw_table_probe is made of, for tests with other backends. */
void hw_table_init(hw_table_t *t);
int hw_table_add(hw_table_t *t, const hw_backend_t *be, const char *select, bool test,
                 const char *datadir, char *err, size_t errlen);

/* What one device can do, measured with real tiny transcodes (test) or by opening the codecs
 * (no test). Fills dec, enc, enc_cpu, h264_fmts, limits and note of d. */
int hw_selftest(hw_device_t *d, bool full);
/* Opens encoders on the device until one is refused (at most max). Returns the number that
 * opened, 0 when all max opened (no cap found), or a negative error. */
int hw_probe_enc_sessions(const hw_device_t *d, int max);

/* Capability numbers the node may advertise: what some usable device passed (the CPU
 * included, since any rendition can fall back to it). Returns how many were written. */
size_t hw_table_capabilities(const hw_table_t *t, int *caps, size_t max);
/* Sets the numbers in a bit set of words 64-bit words (spec §7.1); numbers past it are
 * skipped. Returns the words needed to hold all of them. */
size_t hw_caps_to_bits(const int *caps, size_t n, uint64_t *bits, size_t words);

/* ---- errors and quarantine ---- */
/* A failure on device i, classified by its backend. A device error quarantines the device at
 * once; three session errors in a row do too. Quarantine lasts 30 s, doubling with each
 * failure up to 15 min. The CPU entry is never quarantined. Returns the new state. */
hw_dev_state_t hw_table_report(hw_table_t *t, int i, hw_err_class_t cls, uint64_t now_ms);
/* A segment went through on device i: it is healthy again. */
void hw_table_report_ok(hw_table_t *t, int i);
bool hw_table_usable(const hw_table_t *t, int i, uint64_t now_ms);
/* Re-tests every device whose quarantine is over: back to OK when its self-test passes, else
 * quarantined for longer. Returns how many came back. Blocks for the self-tests: call it off
 * the event loop (uv_queue_work) on a copy or under the caller's lock. */
int hw_table_recheck(hw_table_t *t, uint64_t now_ms);
/* Whether some quarantined device's time is up (a hw_table_recheck would test it). */
bool hw_table_recheck_due(const hw_table_t *t, uint64_t now_ms);
/* Takes the outcome of a hw_table_recheck run on a copy (rechecked) into t, for the entries t
 * still holds quarantined; returns a bit mask of the entries back in service. The way to
 * re-test off the loop: copy, hw_table_recheck the copy on a thread, apply on the loop. */
uint32_t hw_table_recheck_apply(hw_table_t *t, const hw_table_t *rechecked);
/* Where the sessions of a failed device go: another usable device of the same backend that
 * decodes in, else the CPU. */
int hw_table_fallback_device(const hw_table_t *t, int failed, hw_codec_t in, uint64_t now_ms);

/* ---- per rendition routing ---- */
typedef enum { HW_ROUTE_DEVICE = 0, HW_ROUTE_CPU = 1, HW_ROUTE_NONE = 2 } hw_route_t;
typedef enum {
  HW_WHY_NONE = 0,
  HW_WHY_CODEC,       /* the device has no encoder for this codec */
  HW_WHY_TOO_SMALL,   /* below the encoder's minimum size */
  HW_WHY_TOO_LARGE,   /* above the encoder's maximum size */
  HW_WHY_ODD_SIZE,    /* not a multiple of the encoder's alignment */
  HW_WHY_SESSIONS,    /* the device's encoder sessions are all in use */
  HW_WHY_QUARANTINED, /* the device is quarantined */
  HW_WHY_FORMAT,      /* the device does not decode this pixel format (H.264 4:2:2, 10-bit) */
} hw_route_why_t;
#define HW_WHY_COUNT 8
const char *hw_route_why_text(hw_route_why_t why);
/* Where a rendition of codec at w x h is encoded when the session runs on dev: on the device,
 * on the CPU (why says what the device lacks), or nowhere (neither can). sessions_in_use
 * counts the encoders already open on the device. */
hw_route_t hw_route_encode(const hw_table_t *t, int dev, hw_codec_t codec, int w, int h,
                           int sessions_in_use, uint64_t now_ms, hw_route_why_t *why);
/* Where a source of codec (h264_fmt: one HW_H264_* bit, 0 for 8-bit 4:2:0) is decoded. */
hw_route_t hw_route_decode(const hw_table_t *t, int dev, hw_codec_t codec, unsigned h264_fmt,
                           uint64_t now_ms, hw_route_why_t *why);

/* Remembers which (rendition, reason) fallbacks a session has logged, so each is logged once. */
typedef struct hw_fallback_log {
  uint32_t seen[HW_WHY_COUNT]; /* bit r: rendition r (0..30); bit 31: the decoder */
} hw_fallback_log_t;
/* Logs a fallback the first time this session sees it (rendition -1: the decoder); returns
 * whether it logged. */
bool hw_fallback_note(hw_fallback_log_t *l, const lp_logctx_t *ctx, const hw_device_t *d,
                      int rendition, hw_codec_t codec, int w, int h, hw_route_why_t why);

/* ---- calibration (hwaccel/bench.c) ---- */
/* Calibration: sustained frames per second of one stage on a device of the table. */
typedef enum { HW_BENCH_DECODE, HW_BENCH_SCALE, HW_BENCH_ENCODE } hw_bench_stage_t;
typedef struct hw_bench_req {
  hw_bench_stage_t stage;
  /* decode: the source codec; encode: the output codec; scale: ignored (H.264 source) */
  hw_codec_t codec;
  const char *preset; /* encoder preset name for the device's backend, NULL = backend default */
  int in_w, in_h, out_w, out_h;
  /* frames to time, 0 = a default that keeps one call around a second on a 2-core CPU at 1080p */
  int frames;
  /* Time a stage that runs on the CPU (the CPU device's decoder, scaler and encoders, a device's
   * CPU encoders) by the process's CPU time, all threads together, instead of the wall clock:
   * fps is then frames per CPU second, what the stage costs on a machine whose every core is
   * busy with streams, where one stream's wall time only says how well it spreads over cores.
   * Ignored for stages on a device. The process must run nothing else meanwhile. */
  bool cpu_time;
  /* decode: bits per pixel of the source clip, 0: 0.1 (6.2 Mbit/s at 1080p30). Above 0.2, an
   * H.264 or HEVC clip gets its rate from grain at constant quality, as a grainy camera source
   * does, and comes out near the rate asked (*src_bpp says where). */
  double bpp;
} hw_bench_req_t;
/* Decodes, scales or encodes synthetic frames the way the media engine does (decoders and CPU
 * encoders with automatic threads) and returns in fps the frames per second of that stage alone
 * once warmed up. LP_EUNSUPP when the device cannot run the stage (a codec it neither decodes
 * nor encodes, a size outside its encoder's limits, an encoder this FFmpeg lacks), LP_EINVAL
 * for a request that makes no sense, another LP_E* when the stage fails; why says what, in one
 * line. Blocks for about a second with H.264 at the reference sizes on a 2-core CPU (longer for
 * the other codecs, whose sources take longer to make). For decode, *src_bpp gets the bits per
 * pixel the source clip came out at (the encoder's rate control can miss req->bpp); NULL: not
 * wanted; left alone for the other stages. */
int hw_bench_stage(const hw_device_t *d, const hw_bench_req_t *req, double *fps, double *src_bpp,
                   char *why, size_t wlen);
/* A segment of synthetic "realistic" frames (the calibration's source: grain, and above 0.2 bits
 * per pixel its rate from grain at constant quality, as hw_bench_req_t.bpp says) at 30 frames/s,
 * one keyframe per 60 frames, muxed as MPEG-TS in memory: calibration runs it through the media
 * engine as a gateway's segment. *out is malloc'd (the caller frees it); *bpp_made (NULL: not
 * wanted) gets the bits per pixel of its video. LP_EUNSUPP without a CPU encoder for codec. */
int hw_clip_segment(hw_codec_t codec, int w, int h, int frames, double bpp, uint8_t **out,
                    size_t *len, double *bpp_made);
/* Tests: the clock of cpu_time runs, in ns (NULL: the process's CPU time). Set it while no
 * benchmark runs. */
void hw_bench_set_cpu_clock(uint64_t (*clock)(void));
/* The preset name (for hw_bench_req_t.preset) of a scheduler tier (0 fast, 1 medium, 2 slow)
 * for the encoder that encodes codec from device d: x264, x265 and QSV "veryfast"/"medium"/
 * "slow", NVENC "p2"/"p4"/"p6", libvpx "ultrafast" (its realtime deadline) for fast. NULL where
 * the backend's default is the tier's setting or there is no preset to set (libvpx medium and
 * slow, Netint, AV1 on the CPU, which has no AV1 encoder). */
const char *hw_bench_preset_name(const hw_device_t *d, hw_codec_t codec, int tier);

/* ---- output ---- */
/* The table as text (one block per device) and as JSON; malloc'd, caller frees. */
char *hw_table_text(const hw_table_t *t);
char *hw_table_json(const hw_table_t *t);
/* Reads hw_table_json's output back into t, for a node whose devices were probed by a child
 * process. Backends are looked up by name among those built in, then in extra (NULL-terminated,
 * may be NULL). A table that does not hold together (no CPU first, an unknown backend or codec,
 * missing size limits for a codec it encodes) fails with LP_EINVAL and a reason in err. */
int hw_table_from_json(const char *json, const hw_backend_t *const *extra, hw_table_t *t, char *err,
                       size_t errlen);
/* `lpod devices [-nvidia ...] [-netint ...] [-qsv ...] [-testTranscoder=false] [-json]`. */
int hw_cli_devices(int argc, char **argv);

#endif
