/* Intel Quick Sync Video backend through FFmpeg: the *_qsv decoders, vpp_qsv, and the
 * h264/hevc/vp9/av1 _qsv encoders, on a render node (/dev/dri/renderD128). Whether it works
 * depends on what the linked FFmpeg was built with (Media SDK or oneVPL) and on the runtime
 * installed for the GPU generation: docs/hardware.md has the matrix and the checks. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/hwcontext.h>
#include <libavutil/opt.h>

#include "hw_int.h"

#define RENDER_FIRST 128

static int qsv_check(char *why, size_t len) {
  enum AVHWDeviceType t = AV_HWDEVICE_TYPE_NONE;
  bool qsv = false;
  while ((t = av_hwdevice_iterate_types(t)) != AV_HWDEVICE_TYPE_NONE)
    if (t == AV_HWDEVICE_TYPE_QSV) qsv = true;
  if (!qsv || !avcodec_find_decoder_by_name("h264_qsv")) {
    snprintf(why, len,
             "the linked FFmpeg was built without QSV (--enable-libmfx or --enable-libvpl)");
    return LP_EUNSUPP;
  }
  if (access("/dev/dri", F_OK) != 0) {
    snprintf(why, len, "no /dev/dri: no GPU driver loaded, or the device is not passed in");
    return LP_EUNSUPP;
  }
  return 0;
}

static void sysfs_read(int minor, const char *what, char *out, size_t len) {
  char path[128], *text = NULL;
  size_t n = 0;
  out[0] = 0;
  snprintf(path, sizeof(path), "/sys/class/drm/renderD%d/device/%s", minor, what);
  if (lp_file_read(path, 256, &text, &n) == 0) {
    snprintf(out, len, "%s", lp_strtrim(text));
    free(text);
  }
}

/* Intel render nodes (PCI vendor 0x8086). Index = minor - 128, so renderD128 is 0. */
static int qsv_probe(hw_device_info_t *out, int max) {
  DIR *d = opendir("/dev/dri");
  if (!d) return 0;
  int k = 0;
  struct dirent *e;
  while ((e = readdir(d)) && k < max) {
    int minor;
    if (sscanf(e->d_name, "renderD%d", &minor) != 1 || minor < RENDER_FIRST) continue;
    char vendor[16];
    sysfs_read(minor, "vendor", vendor, sizeof(vendor));
    if (strcmp(vendor, "0x8086") != 0) continue;
    hw_device_info_t *di = &out[k++];
    memset(di, 0, sizeof(*di));
    di->index = minor - RENDER_FIRST;
    snprintf(di->name, sizeof(di->name), "/dev/dri/renderD%d", minor);
    snprintf(di->id, sizeof(di->id), "/dev/dri/renderD%d", minor);
  }
  closedir(d);
  return k;
}

static int qsv_describe(int index, char *model, size_t model_len, char *driver, size_t driver_len) {
  int minor = RENDER_FIRST + (index < 0 ? 0 : index);
  char dev[16], link[256], path[128];
  sysfs_read(minor, "device", dev, sizeof(dev));
  snprintf(model, model_len, "Intel GPU %s", dev[0] ? dev : "(unknown PCI id)");
  snprintf(path, sizeof(path), "/sys/class/drm/renderD%d/device/driver", minor);
  ssize_t n = readlink(path, link, sizeof(link) - 1);
  driver[0] = 0;
  if (n > 0) {
    link[n] = 0;
    const char *base = strrchr(link, '/');
    snprintf(driver, driver_len, "%s", base ? base + 1 : link);
  }
  return 0;
}

static int qsv_device_open(int index, AVBufferRef **out) {
  *out = NULL;
  char node[64];
  snprintf(node, sizeof(node), "/dev/dri/renderD%d", RENDER_FIRST + (index < 0 ? 0 : index));
  AVDictionary *o = NULL;
  /* FFmpeg's QSV device takes the implementation as its name and the render node as the child
   * (VA-API) device. */
  av_dict_set(&o, "child_device", node, 0);
  int ret = av_hwdevice_ctx_create(out, AV_HWDEVICE_TYPE_QSV, "hw", o, 0);
  av_dict_free(&o);
  if (ret < 0) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    LOGW("qsv: cannot open %s: %s", node, hw_averr(ret, e, sizeof(e)));
    return ret == AVERROR(ENOMEM) ? LP_ENOMEM : LP_EDEVICE;
  }
  return 0;
}

static const char *qsv_encoder_name(enum AVCodecID codec) {
  switch (codec) {
  case AV_CODEC_ID_H264: return "h264_qsv";
  case AV_CODEC_ID_HEVC: return "hevc_qsv";
  case AV_CODEC_ID_VP9: return "vp9_qsv";
  case AV_CODEC_ID_AV1: return "av1_qsv";
  default: return NULL;
  }
}

static const char *qsv_decoder_name(enum AVCodecID codec) {
  switch (codec) {
  case AV_CODEC_ID_H264: return "h264_qsv";
  case AV_CODEC_ID_HEVC: return "hevc_qsv";
  case AV_CODEC_ID_VP8: return "vp8_qsv";
  case AV_CODEC_ID_VP9: return "vp9_qsv";
  case AV_CODEC_ID_AV1: return "av1_qsv";
  case AV_CODEC_ID_MPEG2VIDEO: return "mpeg2_qsv";
  default: return NULL;
  }
}

/* Limits of the media engines from Skylake on; older or smaller parts refuse larger sizes when
 * the encoder opens, and the rendition falls back to the CPU. */
static int qsv_limits(enum AVCodecID codec, hw_limits_t *out) {
  const char *name = qsv_encoder_name(codec);
  if (!name || !avcodec_find_encoder_by_name(name)) return LP_EUNSUPP;
  *out = (hw_limits_t){32,
                       32,
                       codec == AV_CODEC_ID_H264 ? 4096 : 8192,
                       codec == AV_CODEC_ID_H264 ? 4096 : 8192,
                       2,
                       codec != AV_CODEC_ID_VP9};
  return 0;
}

static enum AVPixelFormat qsv_get_format(AVCodecContext *c, const enum AVPixelFormat *fmts) {
  (void)c;
  for (const enum AVPixelFormat *p = fmts; *p != AV_PIX_FMT_NONE; p++)
    if (*p == AV_PIX_FMT_QSV) return *p;
  return fmts[0];
}

static int qsv_decoder_setup(AVBufferRef *device, const AVCodecParameters *par,
                             const AVCodec **codec, AVCodecContext *ctx) {
  const char *name = qsv_decoder_name(par->codec_id);
  const AVCodec *c = name ? avcodec_find_decoder_by_name(name) : NULL;
  if (!c || !device) {
    /* No QSV decoder for this codec in this build: the CPU decodes it. */
    c = avcodec_find_decoder(par->codec_id);
    if (!c) return LP_EUNSUPP;
    *codec = c;
    return 0;
  }
  ctx->hw_device_ctx = av_buffer_ref(device);
  if (!ctx->hw_device_ctx) return LP_ENOMEM;
  ctx->get_format = qsv_get_format;
  ctx->extra_hw_frames = 4;
  *codec = c;
  return 0;
}

static int put(char *buf, size_t len, int n) { return n < 0 || (size_t)n >= len ? LP_ERANGE : 0; }

static int qsv_scale_filter(int in_pix_fmt, int w, int h, char *buf, size_t len) {
  if (in_pix_fmt == AV_PIX_FMT_QSV)
    return put(buf, len, snprintf(buf, len, "vpp_qsv=w=%d:h=%d:format=nv12", w, h));
  /* CPU-decoded frames: the QSV encoders take NV12 from host memory. */
  return put(buf, len, snprintf(buf, len, "scale=w=%d:h=%d:flags=bicubic,format=nv12", w, h));
}

static int qsv_scale_filter_host(int in_pix_fmt, int w, int h, char *buf, size_t len) {
  if (in_pix_fmt == AV_PIX_FMT_QSV)
    return put(buf, len,
               snprintf(buf, len,
                        "vpp_qsv=w=%d:h=%d:format=nv12,hwdownload,format=nv12,format=yuv420p", w,
                        h));
  return put(buf, len, snprintf(buf, len, "scale=w=%d:h=%d:flags=bicubic,format=yuv420p", w, h));
}

static int qsv_encoder_open(AVBufferRef *device, const hw_enc_params_t *p, AVBufferRef *hw_frames,
                            AVCodecContext **out) {
  *out = NULL;
  const char *name = qsv_encoder_name(p->codec);
  const AVCodec *codec = name ? avcodec_find_encoder_by_name(name) : NULL;
  if (!codec) return LP_EUNSUPP;
  AVCodecContext *c = avcodec_alloc_context3(codec);
  if (!c) return LP_ENOMEM;
  c->width = p->width;
  c->height = p->height;
  c->time_base = p->time_base;
  c->framerate = p->framerate;
  c->sample_aspect_ratio = (AVRational){1, 1};
  if (hw_frames) {
    c->pix_fmt = AV_PIX_FMT_QSV;
    c->hw_frames_ctx = av_buffer_ref(hw_frames);
  } else {
    c->pix_fmt = AV_PIX_FMT_NV12;
    if (device) c->hw_device_ctx = av_buffer_ref(device);
  }
  if ((hw_frames && !c->hw_frames_ctx) || (!hw_frames && device && !c->hw_device_ctx)) {
    avcodec_free_context(&c);
    return LP_ENOMEM;
  }
  AVDictionary *o = NULL;
  hw_enc_common(c, p, "global_quality", 0, 51, &o);
  av_dict_set(&o, "forced_idr", "1", 0);
  av_dict_set(&o, "preset", hw_qsv_preset(p->preset), 0);
  /* Look-ahead delays output by its depth: segments must come out whole and at once. */
  av_dict_set(&o, "look_ahead", "0", 0);
  c->max_b_frames = 0;
  if (p->codec == AV_CODEC_ID_H264) {
    static const char *const prof[] = {NULL, "baseline", "main", "high", "high"};
    if (p->h264_profile > 0 && p->h264_profile <= 4)
      av_dict_set(&o, "profile", prof[p->h264_profile], 0);
    if ((p->h264_profile == 2 || p->h264_profile == 3) && !p->gop_forced && p->gop_frames >= 0)
      c->max_b_frames = 3;
  }
  int ret = hw_codec_open(c, codec, &o);
  av_dict_free(&o);
  if (ret < 0) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    LOGW("qsv: cannot open %s %dx%d: %s", name, p->width, p->height, hw_averr(ret, e, sizeof(e)));
    avcodec_free_context(&c);
    if (ret == AVERROR(ENOMEM)) return LP_ENOMEM;
    return hw_classify_gpu(ret, HW_STAGE_ENCODE) == HW_ERR_DEVICE ? LP_EDEVICE : LP_EINVAL;
  }
  *out = c;
  return 0;
}

/* FFmpeg's QSV encoders cannot be flushed and reused: every segment gets a fresh encoder. */
static hw_eos_policy_t qsv_eos_policy(const AVCodecContext *enc) {
  return enc && (enc->codec->capabilities & AV_CODEC_CAP_ENCODER_FLUSH) ? HW_EOS_FLUSH
                                                                        : HW_EOS_REOPEN;
}

const hw_backend_t hw_backend_qsv = {
    .name = "qsv",
    .device_type = AV_HWDEVICE_TYPE_QSV,
    .probe = qsv_probe,
    .device_open = qsv_device_open,
    .limits = qsv_limits,
    .decoder_setup = qsv_decoder_setup,
    .scale_filter = qsv_scale_filter,
    .encoder_open = qsv_encoder_open,
    .eos_policy = qsv_eos_policy,
    .classify_error = hw_classify_gpu,
    /* Rough figures for a UHD 630-class iGPU; the startup benchmark replaces them. */
    .cost = {.decode_s_per_mpx = 0.001,
             .scale_s_per_mpx = 0.0004,
             .encode_s_per_mpx = {0.002, 0.003, 0, 0.004}},
    .check = qsv_check,
    .scale_filter_host = qsv_scale_filter_host,
    .describe = qsv_describe,
};
