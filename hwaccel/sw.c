/* Software backend: FFmpeg's native decoders, swscale, and libx264 / libx265 / libvpx. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>

#include "lpod/core.h"
#include "lpod/hwaccel.h"

static int sw_probe(hw_device_info_t *out, int max) {
  if (max < 1) return 0;
  memset(out, 0, sizeof(*out));
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  snprintf(out->name, sizeof(out->name), "cpu (%ld cores)", n > 0 ? n : 1);
  return 1;
}

static int sw_device_open(int index, AVBufferRef **out) {
  (void)index;
  *out = NULL;
  return 0;
}

/* x264 and libvpx take almost any even size; these bounds keep renditions inside what H.264
 * level 6.2 and common players handle. x265 needs at least one 64-pixel CTU's worth. */
static int sw_limits(enum AVCodecID codec, hw_limits_t *out) {
  memset(out, 0, sizeof(*out));
  out->align = 2;
  out->bframes = true;
  switch (codec) {
  case AV_CODEC_ID_H264:
    out->min_w = out->min_h = 16;
    out->max_w = out->max_h = 8192;
    return 0;
  case AV_CODEC_ID_HEVC:
    out->min_w = out->min_h = 64;
    out->max_w = out->max_h = 8192;
    return 0;
  case AV_CODEC_ID_VP8:
    out->bframes = false;
    out->min_w = out->min_h = 16;
    out->max_w = out->max_h = 16383;
    return 0;
  case AV_CODEC_ID_VP9:
    out->bframes = false;
    out->min_w = out->min_h = 16;
    out->max_w = out->max_h = 16384;
    return 0;
  case AV_CODEC_ID_AV1:
    /* SVT-AV1 1.4: at least 64x64, at most 16384x8704 */
    if (!avcodec_find_encoder_by_name("libsvtav1")) return LP_EUNSUPP;
    out->min_w = out->min_h = 64;
    out->max_w = 16384;
    out->max_h = 8704;
    return 0;
  default: return LP_EUNSUPP;
  }
}

static int sw_decoder_setup(AVBufferRef *device, const AVCodecParameters *par,
                            const AVCodec **codec, AVCodecContext *ctx) {
  (void)device;
  (void)ctx;
  const AVCodec *c = avcodec_find_decoder(par->codec_id);
  if (!c) return LP_EUNSUPP;
  *codec = c;
  return 0;
}

static int sw_scale_filter(int in_pix_fmt, int w, int h, char *buf, size_t len) {
  (void)in_pix_fmt;
  /* Encoders get 8-bit 4:2:0 whatever the source, as lpms does. */
  int n = snprintf(buf, len, "scale=w=%d:h=%d:flags=bicubic,format=yuv420p", w, h);
  return n < 0 || (size_t)n >= len ? LP_ERANGE : 0;
}

/* x264's preset names on SVT-AV1's scale (0 slowest .. 13 fastest). Its own default (10 in
 * 1.4) is about x264 veryfast's place; "medium" maps to 8, still real time for one 720p stream
 * on a few cores. */
static int svt_preset(const char *x264) {
  static const struct {
    const char *name;
    int svt;
  } map[] = {{"ultrafast", 12}, {"superfast", 11}, {"veryfast", 10}, {"faster", 9},  {"fast", 9},
             {"medium", 8},     {"slow", 7},       {"slower", 6},    {"veryslow", 5}};
  for (size_t i = 0; x264 && i < sizeof(map) / sizeof(map[0]); i++)
    if (strcmp(map[i].name, x264) == 0) return map[i].svt;
  return 8;
}

static const char *sw_encoder_name(enum AVCodecID codec) {
  switch (codec) {
  case AV_CODEC_ID_H264: return "libx264";
  case AV_CODEC_ID_HEVC: return "libx265";
  case AV_CODEC_ID_VP8: return "libvpx";
  case AV_CODEC_ID_VP9: return "libvpx-vp9";
  case AV_CODEC_ID_AV1: return "libsvtav1";
  default: return NULL;
  }
}

static int sw_encoder_open(AVBufferRef *device, const hw_enc_params_t *p, AVBufferRef *hw_frames,
                           AVCodecContext **out) {
  (void)device;
  (void)hw_frames;
  *out = NULL;
  const char *name = sw_encoder_name(p->codec);
  const AVCodec *codec = name ? avcodec_find_encoder_by_name(name) : NULL;
  if (!codec) return LP_EUNSUPP;
  AVCodecContext *c = avcodec_alloc_context3(codec);
  if (!c) return LP_ENOMEM;
  c->width = p->width;
  c->height = p->height;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  c->time_base = p->time_base;
  c->framerate = p->framerate;
  c->sample_aspect_ratio = (AVRational){1, 1};
  c->thread_count = p->threads;
  if (p->global_header) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;

  AVDictionary *o = NULL;
  bool h26x = p->codec == AV_CODEC_ID_H264 || p->codec == AV_CODEC_ID_HEVC;
  bool av1 = p->codec == AV_CODEC_ID_AV1;
  if (h26x) {
    av_dict_set(&o, "preset", p->preset ? p->preset : "medium", 0);
    av_dict_set(&o, "forced-idr", "1", 0);
  } else if (av1) {
    av_dict_set_int(&o, "preset", svt_preset(p->preset), 0);
  } else {
    av_dict_set(&o, "deadline", p->preset && !strcmp(p->preset, "ultrafast") ? "realtime" : "good",
                0);
    av_dict_set(&o, "cpu-used", "4", 0);
  }
  if (p->quality > 0) {
    av_dict_set_int(&o, "crf", p->quality, 0);
    if (av1) {
      /* SVT-AV1 caps a CRF stream with its maximum rate only */
      if (p->bitrate > 0) c->rc_max_rate = p->bitrate;
    } else if (p->bitrate > 0) {
      c->rc_max_rate = p->bitrate;
      c->rc_buffer_size = (int)p->bitrate;
      if (!h26x) c->bit_rate = p->bitrate;
    }
  } else if (p->bitrate > 0 && av1) {
    c->bit_rate = p->bitrate; /* SVT-AV1's VBR at the target rate */
  } else if (p->bitrate > 0) {
    /* lpms's rate control: min = avg = max with a one-second buffer. */
    c->bit_rate = p->bitrate;
    c->rc_max_rate = p->bitrate;
    c->rc_buffer_size = (int)p->bitrate;
    if (p->codec == AV_CODEC_ID_H264) c->rc_min_rate = p->bitrate;
  }
  if (p->gop_frames < 0) {
    c->gop_size = 1;
    c->max_b_frames = 0;
  } else if (p->gop_frames > 0) {
    c->gop_size = p->gop_frames;
  } else if (p->gop_forced) {
    c->gop_size = 1 << 30; /* the caller forces every keyframe */
  }
  /* x265 prints to stderr itself, past FFmpeg's log: its notes (lookahead slices off for a small
   * source, and the like) only where lpod logs FFmpeg's warnings too, errors always. */
  const char *x265_log = LP_LOG_ON(LP_V_DEBUG) ? "log-level=1" : "log-level=0";
  if (p->gop_forced || p->gop_frames != 0) {
    if (p->codec == AV_CODEC_ID_H264) av_dict_set(&o, "sc_threshold", "0", 0);
    if (p->codec == AV_CODEC_ID_HEVC) {
      char xp[64];
      snprintf(xp, sizeof xp, "scenecut=0:%s", x265_log);
      av_dict_set(&o, "x265-params", xp, 0);
    }
  } else if (p->codec == AV_CODEC_ID_HEVC) {
    av_dict_set(&o, "x265-params", x265_log, 0);
  }
  if (p->codec == AV_CODEC_ID_H264) {
    switch (p->h264_profile) {
    case 1: /* baseline */
      av_dict_set(&o, "profile", "baseline", 0);
      c->max_b_frames = 0;
      break;
    case 2: av_dict_set(&o, "profile", "main", 0); break;
    case 3: av_dict_set(&o, "profile", "high", 0); break;
    case 4: /* constrained high: High without B-frames, as lpms */
      av_dict_set(&o, "profile", "high", 0);
      c->max_b_frames = 0;
      break;
    default: break;
    }
  }
  int ret = hw_codec_open(c, codec, &o);
  av_dict_free(&o);
  if (ret < 0) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(ret, e, sizeof(e));
    LOGW("sw: cannot open %s %dx%d: %s", name, p->width, p->height, e);
    avcodec_free_context(&c);
    return ret == AVERROR(ENOMEM) ? LP_ENOMEM : LP_EINVAL;
  }
  *out = c;
  return 0;
}

static hw_eos_policy_t sw_eos_policy(const AVCodecContext *enc) {
  return enc && (enc->codec->capabilities & AV_CODEC_CAP_ENCODER_FLUSH) ? HW_EOS_FLUSH
                                                                        : HW_EOS_REOPEN;
}

static hw_err_class_t sw_classify_error(int averror, hw_stage_t stage) {
  /* A CPU has no device state to lose: memory pressure or an encoder refusing to open is a
   * session problem, anything the input stages reject is the input's. */
  if (averror == AVERROR(ENOMEM)) return HW_ERR_SESSION;
  if (stage == HW_STAGE_ENCODE) return HW_ERR_SESSION;
  return HW_ERR_INPUT;
}

const hw_backend_t hw_backend_sw = {
    .name = "sw",
    .device_type = AV_HWDEVICE_TYPE_NONE,
    .probe = sw_probe,
    .device_open = sw_device_open,
    .limits = sw_limits,
    .decoder_setup = sw_decoder_setup,
    .scale_filter = sw_scale_filter,
    .encoder_open = sw_encoder_open,
    .eos_policy = sw_eos_policy,
    .classify_error = sw_classify_error,
    /* Rough single-core figures for x264 medium; the startup benchmark replaces them. */
    .cost = {.decode_s_per_mpx = 0.002,
             .scale_s_per_mpx = 0.001,
             .encode_s_per_mpx = {0.025, 0.08, 0.03, 0.06}},
};
