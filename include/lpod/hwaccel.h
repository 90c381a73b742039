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
} hw_backend_t;

/* Backends built into this binary, by name ("sw" is always there). NULL if unknown. */
const hw_backend_t *hw_backend_find(const char *name);
/* All built-in backends, NULL-terminated. */
const hw_backend_t *const *hw_backend_list(void);

#endif
