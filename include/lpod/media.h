/* media: the transcode engine. One session per stream stays warm across that stream's segments
 * and transcodes one segment at a time, from bytes in memory to renditions in memory.
 *
 * Threading: a session is used by one thread at a time (the caller serialises a stream's
 * segments); different sessions run on different threads at once without locks. Everything
 * else in this header (profiles, presets, cost hints) is pure and thread-safe. */
#ifndef LPOD_MEDIA_H
#define LPOD_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lpod/core.h"

struct hw_backend; /* lpod/hwaccel.h */
struct hw_table;

/* ---- profiles (the wire VideoProfile, spec/protocol.md §2.1 and §8) ------------------------- */

/* Enum values equal the wire values. */
typedef enum { MEDIA_FORMAT_MPEGTS = 0, MEDIA_FORMAT_MP4 = 1 } media_format_t;
typedef enum {
  MEDIA_H264_DEFAULT = 0,
  MEDIA_H264_BASELINE = 1,
  MEDIA_H264_MAIN = 2,
  MEDIA_H264_HIGH = 3,
  MEDIA_H264_CONSTRAINED_HIGH = 4,
} media_h264_profile_t;
typedef enum {
  MEDIA_CODEC_H264 = 0,
  MEDIA_CODEC_HEVC = 1,
  MEDIA_CODEC_VP8 = 2,
  MEDIA_CODEC_VP9 = 3,
  MEDIA_CODEC_AV1 = 4, /* lpod's extension of the wire's VideoProfile.encoder (docs/hardware.md) */
} media_codec_t;
typedef enum { MEDIA_CHROMA_420 = 0, MEDIA_CHROMA_422 = 1, MEDIA_CHROMA_444 = 2 } media_chroma_t;

typedef enum {
  MEDIA_PROFILE_AUDIO_SESSION = 0, /* the session's mode (media_session_opts_t.audio: copy) */
  MEDIA_PROFILE_AUDIO_COPY = 1,
  MEDIA_PROFILE_AUDIO_DROP = 2,
  MEDIA_PROFILE_AUDIO_AAC = 3, /* decoded and encoded to AAC-LC, stereo, the source's rate */
} media_profile_audio_t;
#define MEDIA_GOP_DEFAULT 0  /* encoder default keyframe interval */
#define MEDIA_GOP_INTRA (-1) /* every frame a keyframe */
#define MEDIA_NAME_MAX 64
#define MEDIA_MAX_OUTPUTS 10 /* LPMS's cap; "Too many outputs" beyond it */

typedef struct media_profile {
  char name[MEDIA_NAME_MAX]; /* rendition name; result paths use it */
  int32_t width, height;     /* requested box; the source aspect is kept (media_profile_fit) */
  int32_t bitrate;           /* bits/s; a maximum when quality is set */
  uint32_t fps, fps_den;     /* fps 0 = pass the source rate through; fps_den 0 = 1 */
  media_format_t format;
  media_h264_profile_t profile;
  int32_t gop_ms; /* MEDIA_GOP_DEFAULT, MEDIA_GOP_INTRA or a keyframe interval in ms */
  media_codec_t encoder;
  int32_t color_depth; /* lpms ColorDepthBits: carried, output is 8-bit */
  media_chroma_t chroma_format;
  uint32_t quality; /* CRF (0 = bitrate mode), <= 63 */
  /* Audio of this rendition. The wire has no field for it (go-livepeer always copies); a ladder
   * file's "audio" ("copy", "drop", "aac") sets it for lpod transcode and lpod bench. */
  media_profile_audio_t audio;
} media_profile_t;

/* Fills *out from a preset name (P720p30fps16x9, P240p30fps16x9, ...). LP_ENOENT if unknown. */
int media_profile_preset(const char *name, media_profile_t *out);
/* The muxer a rendition is written with ("mpegts", "mp4" or "matroska"), its file extension
 * and MIME type. H.264/HEVC follow the profile's format; VP8 (and VP9 asked as MPEG-TS), which
 * those containers cannot carry, go into Matroska. ext and mime may be NULL. */
const char *media_profile_container(const media_profile_t *p, const char **ext, const char **mime);
/* Parses a comma-separated list of preset names, or (when spec names a readable file or
 * starts with '[' / '{') go-livepeer's JSON ladder format. *out is malloc'd; caller frees.
 * On error, err (if not NULL) receives a message. */
int media_profiles_parse(const char *spec, media_profile_t **out, size_t *n, char *err,
                         size_t errlen);
/* The JSON ladder text itself: an array of objects, or {"profiles": [...]}. */
int media_profiles_parse_json(const char *json, size_t len, media_profile_t **out, size_t *n,
                              char *err, size_t errlen);
/* Checks one profile's fields. Returns 0, or LP_EINVAL with *why set to the lpms/go-livepeer
 * error text (e.g. "TranscoderInvalidGOP", "TranscoderUnrecognizedFormat"). */
int media_profile_validate(const media_profile_t *p, const char **why);
/* Output size for a source of in_w x in_h: the profile's longer side becomes the source's longer
 * side, the other side follows the source aspect, both even, clamped to the encoder's limits.
 * Returns LP_ERANGE where no size within the limits keeps the aspect (impossible size). */
int media_profile_fit(const media_profile_t *p, int in_w, int in_h, const char *backend, int *out_w,
                      int *out_h);

/* ---- sessions -------------------------------------------------------------------------------- */

typedef struct media_session media_session_t;

typedef enum {
  MEDIA_AUDIO_COPY = 0, /* remux the source audio (what go-livepeer asks for) */
  MEDIA_AUDIO_DROP = 1,
} media_audio_mode_t;

typedef struct media_session_opts {
  const char *backend; /* "sw" (NULL = "sw"); later "nvidia", "qsv", "netint" */
  int device;          /* device index for hardware backends; -1 = backend's choice */
  const char *preset;  /* encoder speed preset override (x264: "ultrafast".."veryslow");
                          NULL = the backend default (x264 "medium", as lpms) */
  int encoder_threads; /* threads per software encoder; 0 = codec default */
  media_audio_mode_t audio;
  int max_outputs;         /* 0 = MEDIA_MAX_OUTPUTS */
  int64_t max_duration_ms; /* input duration guard; 0 = 300000 (5 min) */
  lp_logctx_t log;         /* context printed on this session's log lines (strings borrowed) */
  /* A backend outside the built-in registry, used instead of the one backend names: tests run
   * the engine on a fake device through it. NULL in production. */
  const struct hw_backend *backend_impl;
  /* The node's device table and the entry this session runs on (> 0). The session keeps a copy
   * of that entry and the CPU's, and routes with them (hw_route_decode, hw_route_encode): what
   * the device did not pass in its self-test (a codec, an H.264 format, a size: an H100 has
   * NVDEC but no NVENC, though FFmpeg has h264_nvenc) is decoded or encoded on the CPU, logged
   * once per session. NULL: the backend's own limits decide, and a device backend's rendition
   * that they exclude is still encoded on the CPU. */
  const struct hw_table *table;
  int table_dev;
} media_session_opts_t;
#define MEDIA_SESSION_OPTS_INIT                                                                    \
  { NULL, -1, NULL, 0, MEDIA_AUDIO_COPY, 0, 0, LP_LOGCTX_INIT, NULL, NULL, 0 }

/* Where a failure lies, so the caller knows what to do next. */
typedef enum {
  MEDIA_ERR_NONE = 0,
  MEDIA_ERR_INPUT,   /* bad segment or profile: answer the gateway, keep the session */
  MEDIA_ERR_SESSION, /* this session's codec state is broken: free it, make a new one */
  MEDIA_ERR_DEVICE,  /* the device is unusable: drain it and restart its worker */
} media_err_class_t;

typedef struct media_rendition {
  uint8_t *data; /* muxed output (MPEG-TS or MP4), malloc'd */
  size_t len;
  int width, height; /* encoded size of the segment's last frame (0 when audio only) */
  int64_t frames;    /* video frames encoded (== frames a decoder finds in data) */
  int64_t pixels;    /* Σ width×height of frames handed to the encoder: the billed pixels */
  int64_t keyframes; /* video keyframes in data (the first frame is always one) */
  int64_t audio_packets;
  int64_t duration_us; /* span of the output's video (or audio) timestamps */
} media_rendition_t;

typedef struct media_result {
  media_rendition_t *renditions; /* one per profile, in order; NULL when the segment failed */
  size_t n;
  int64_t decoded_frames; /* source video frames decoded in this segment */
  int64_t decoded_pixels; /* Σ width×height of decoded frames */
  int64_t duration_us;    /* source segment duration (from its timestamps) */
  int in_width, in_height;
  double in_fps; /* source frame rate, 0 if unknown */
  bool has_video, has_audio;
  uint64_t transcode_ns; /* wall time from the segment's start (a free slot, for submit) to its
                          * result */
  /* The segment's decode ended with the decoder kept for the next one (backends with
   * decoder_sentinels: its last frames came out, with sentinel packets where it held some),
   * rather than drained and reset. */
  bool decoder_kept;
  /* On failure: the exact lpms/go-livepeer text where one fits (spec/protocol.md §4.5), e.g.
   * "No keyframes in input", "TranscoderInvalidVideo", "Encoded frames runaway". */
  char error[128];
  int error_rendition; /* profile index the error belongs to, -1 for the whole segment */
  media_err_class_t error_class;
} media_result_t;

/* Creates a session (opens the backend device, nothing per stream yet). NULL opts = defaults.
 * Returns NULL when the backend or device is unavailable (logged). */
media_session_t *media_session_new(const media_session_opts_t *opts);
/* Transcodes one segment. The input must stay valid during the call only. Profiles may differ
 * from one call to the next (outputs are independent). Returns 0 with out filled, or a
 * negative LP_* code with out->error / out->error_class set (LP_EMEDIA input, LP_EINVAL
 * profile, LP_EDEVICE device, LP_ENOMEM). out is always safe to pass to media_result_free. */
int media_session_transcode(media_session_t *s, const uint8_t *in, size_t len,
                            const media_profile_t *profiles, size_t n, media_result_t *out);
/* The same, without waiting for the result: returns once the input is decoded (the input and
 * the profiles need to stay valid during the call only) and calls done(arg, out, ret) once,
 * with out filled and what media_session_transcode would return, when the segment's
 * renditions are encoded; out must stay valid until then, and is the caller's to free after.
 * done runs on one of the session's threads (or on the caller's, for a segment that failed
 * before any rendition started), must not call into the session, and should be short: it may
 * hand back the next segment's result too, and holds up that thread's next work meanwhile.
 * Results come back in submission order. A session's segments are submitted from one thread
 * at a time. On the CPU backend the next segment may be submitted at once and decodes
 * while this one's encoders drain; a third, and any second on a device backend, waits in the
 * call for the oldest to complete. */
typedef void (*media_done_fn)(void *arg, media_result_t *out, int ret);
void media_session_submit(media_session_t *s, const uint8_t *in, size_t len,
                          const media_profile_t *profiles, size_t n, media_result_t *out,
                          media_done_fn done, void *arg);
void media_result_free(media_result_t *r);
/* Waits for the segments still in flight (their callbacks run), then frees the session. */
void media_session_free(media_session_t *s);
/* Segments transcoded so far and whether the video decoder is warm (tests, metrics). */
int64_t media_session_segments(const media_session_t *s);
/* Segments the session runs at once: 2 on the CPU backend, 1 on a device's. */
int media_session_depth(const media_session_t *s);
/* A segment of the session failed in a way that left its codec state in doubt (every failure
 * but a bad input or profile; set before that segment's done runs): the caller frees the
 * session and makes a new one before its next segment. A segment submitted before the failure
 * was known runs on as it can. */
bool media_session_broken(const media_session_t *s);

/* ---- probing and cost hints for a scheduler ----------------------------------------------------
 */

typedef struct media_probe {
  bool has_video, has_audio;
  int width, height;
  double fps;
  int64_t video_frames; /* packets of the video stream */
  int64_t duration_us;
  char video_codec[32], audio_codec[32];
} media_probe_t;
/* Demuxes a segment in memory and reports what it holds (every packet is read: tens of ms for a
 * 2 s 1080p segment). */
int media_probe(const uint8_t *in, size_t len, media_probe_t *out);
/* The stream parameters alone (size, rate, codecs, has_video/has_audio) from the segment's first
 * 256 KiB and 0.3 s; video_frames and duration_us stay 0. Cheap enough for the loop thread. */
int media_probe_stream(const uint8_t *in, size_t len, media_probe_t *out);

/* Pixel rates of a job, per stage; the scheduler weighs them with per-device coefficients. */
typedef struct media_cost {
  double decode_pps;    /* source pixels/s decoded */
  double scale_pps;     /* Σ output pixels/s produced by the scalers */
  double encode_pps[5]; /* output pixels/s per media_codec_t */
  double encode_total_pps;
  int encoders; /* encoder sessions the job holds open (NVENC/QSV session caps) */
} media_cost_t;
/* src_fps 0 means unknown (30 is assumed, as go-livepeer's balancer does). */
void media_job_cost(const media_profile_t *profiles, size_t n, int src_w, int src_h, double src_fps,
                    media_cost_t *out);

/* ---- subcommands (src/main.c) ---------------------------------------------------------------- */
int media_cli_transcode(int argc, char **argv);
int media_cli_bench(int argc, char **argv);

#endif
