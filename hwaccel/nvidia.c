/* NVIDIA backend through FFmpeg: the native decoders with the NVDEC hwaccel (not the cuvid
 * parsers: spec/transcoding.md §2.3), scale_cuda, NVENC. Frames stay on the GPU from decode to
 * encode; only a CPU encoder gets them downloaded. The driver's libraries are loaded at run time
 * (FFmpeg does so for CUDA and NVENC; the device list comes from libcuda here), so the binary
 * runs, and says why it has no NVIDIA device, on machines without the driver. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/hwcontext.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>

#include "hw_int.h"

/* ---- libcuda, for the device list only ---------------------------------------------------- */

typedef int cu_result_t;
typedef int cu_device_t;
static struct {
  void *lib;
  cu_result_t (*init)(unsigned);
  cu_result_t (*count)(int *);
  cu_result_t (*get)(cu_device_t *, int);
  cu_result_t (*name)(char *, int, cu_device_t);
  cu_result_t (*mem)(size_t *, cu_device_t);
  cu_result_t (*uuid)(unsigned char *, cu_device_t);
  cu_result_t (*version)(int *);
  cu_result_t init_ret;
  char err[160];
} cu;
static pthread_once_t cu_once = PTHREAD_ONCE_INIT;

static void cu_load(void) {
  cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!cu.lib) {
    snprintf(cu.err, sizeof(cu.err),
             "no NVIDIA driver: libcuda.so.1 not found (install the NVIDIA driver; "
             "docs/hardware.md)");
    return;
  }
  *(void **)&cu.init = dlsym(cu.lib, "cuInit");
  *(void **)&cu.count = dlsym(cu.lib, "cuDeviceGetCount");
  *(void **)&cu.get = dlsym(cu.lib, "cuDeviceGet");
  *(void **)&cu.name = dlsym(cu.lib, "cuDeviceGetName");
  *(void **)&cu.mem = dlsym(cu.lib, "cuDeviceTotalMem_v2");
  *(void **)&cu.uuid = dlsym(cu.lib, "cuDeviceGetUuid");
  *(void **)&cu.version = dlsym(cu.lib, "cuDriverGetVersion");
  if (!cu.init || !cu.count || !cu.get || !cu.name) {
    snprintf(cu.err, sizeof(cu.err), "libcuda.so.1 lacks the device functions (driver too old)");
    dlclose(cu.lib);
    cu.lib = NULL;
    return;
  }
  cu.init_ret = cu.init(0);
  if (cu.init_ret != 0)
    snprintf(cu.err, sizeof(cu.err),
             "cuInit failed with CUDA error %d (no usable GPU, or the kernel module does not "
             "match the driver library)",
             cu.init_ret);
}

static bool cu_ready(void) {
  pthread_once(&cu_once, cu_load);
  return cu.lib && cu.init_ret == 0;
}

static int nv_check(char *why, size_t len) {
  enum AVHWDeviceType t = AV_HWDEVICE_TYPE_NONE;
  bool cuda = false;
  while ((t = av_hwdevice_iterate_types(t)) != AV_HWDEVICE_TYPE_NONE)
    if (t == AV_HWDEVICE_TYPE_CUDA) cuda = true;
  if (!cuda) {
    snprintf(why, len, "the linked FFmpeg was built without CUDA (--enable-ffnvcodec)");
    return LP_EUNSUPP;
  }
  if (!cu_ready()) {
    snprintf(why, len, "%s", cu.err);
    return LP_EUNSUPP;
  }
  return 0;
}

static int nv_probe(hw_device_info_t *out, int max) {
  if (!cu_ready()) return 0;
  int n = 0;
  if (cu.count(&n) != 0 || n <= 0) return 0;
  int k = 0;
  for (int i = 0; i < n && k < max; i++) {
    cu_device_t dev;
    if (cu.get(&dev, i) != 0) continue;
    hw_device_info_t *d = &out[k++];
    memset(d, 0, sizeof(*d));
    d->index = i;
    if (cu.name(d->name, (int)sizeof(d->name), dev) != 0) snprintf(d->name, sizeof(d->name), "GPU");
    size_t mem = 0;
    if (cu.mem && cu.mem(&mem, dev) == 0) d->mem_total = mem;
    unsigned char u[16];
    if (cu.uuid && cu.uuid(u, dev) == 0)
      snprintf(d->id, sizeof(d->id),
               "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
               u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
               u[14], u[15]);
  }
  return k;
}

/* The version in /proc/driver/nvidia/version: the first number after "Kernel Module", which
 * the open modules follow with "for x86_64" ("... Open Kernel Module for x86_64  580.159.04
 * Release Build ...") and the proprietary ones do not ("... Kernel Module  550.54.15 ..."). */
void hw_nv_driver_version(const char *text, char *out, size_t len) {
  out[0] = 0;
  const char *p = strstr(text, "Kernel Module");
  if (!p) return;
  const char *end = strchr(p, '\n');
  p += strlen("Kernel Module");
  while (*p && p != end) {
    while (*p == ' ' || *p == '\t') p++;
    size_t k = strcspn(p, " \t\n");
    if (!k) break;
    if (*p >= '0' && *p <= '9' && memchr(p, '.', k)) {
      snprintf(out, len, "%.*s", (int)LP_MIN(k, len - 1), p);
      return;
    }
    p += k;
  }
}

static int nv_describe(int index, char *model, size_t model_len, char *driver, size_t driver_len) {
  model[0] = driver[0] = 0;
  if (!cu_ready()) return LP_EUNSUPP;
  cu_device_t dev;
  if (cu.get(&dev, index < 0 ? 0 : index) == 0) cu.name(model, (int)model_len, dev);
  /* The kernel module's version is what operators know ("550.54.15"); CUDA's is the fallback. */
  char *text = NULL;
  size_t n = 0;
  if (lp_file_read("/proc/driver/nvidia/version", 4096, &text, &n) == 0) {
    hw_nv_driver_version(text, driver, driver_len);
    free(text);
  }
  int v = 0;
  if (!driver[0] && cu.version && cu.version(&v) == 0)
    snprintf(driver, driver_len, "CUDA %d.%d", v / 1000, (v % 1000) / 10);
  return 0;
}

static int nv_device_open(int index, AVBufferRef **out) {
  *out = NULL;
  char name[16];
  snprintf(name, sizeof(name), "%d", index < 0 ? 0 : index);
  int ret = av_hwdevice_ctx_create(out, AV_HWDEVICE_TYPE_CUDA, name, NULL, 0);
  if (ret < 0) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    LOGW("nvidia: cannot open CUDA device %s: %s", name, hw_averr(ret, e, sizeof(e)));
    return ret == AVERROR(ENOMEM) ? LP_ENOMEM : LP_EDEVICE;
  }
  return 0;
}

/* NVENC's limits as lpms applies them (7th generation NVENC and later). */
static int nv_limits(enum AVCodecID codec, hw_limits_t *out) {
  memset(out, 0, sizeof(*out));
  out->align = 2;
  out->bframes = true;
  switch (codec) {
  case AV_CODEC_ID_H264:
    *out = (hw_limits_t){146, 50, 4096, 4096, 2, true};
    return avcodec_find_encoder_by_name("h264_nvenc") ? 0 : LP_EUNSUPP;
  case AV_CODEC_ID_HEVC:
    *out = (hw_limits_t){132, 40, 8192, 8192, 2, true};
    return avcodec_find_encoder_by_name("hevc_nvenc") ? 0 : LP_EUNSUPP;
  case AV_CODEC_ID_AV1:
    *out = (hw_limits_t){146, 50, 8192, 8192, 2, true};
    return avcodec_find_encoder_by_name("av1_nvenc") ? 0 : LP_EUNSUPP;
  default: return LP_EUNSUPP;
  }
}

static const char *native_decoder(enum AVCodecID id) {
  switch (id) {
  case AV_CODEC_ID_H264: return "h264";
  case AV_CODEC_ID_HEVC: return "hevc";
  case AV_CODEC_ID_VP8: return "vp8";
  case AV_CODEC_ID_VP9: return "vp9";
  case AV_CODEC_ID_AV1: return "av1";
  case AV_CODEC_ID_MPEG2VIDEO: return "mpeg2video";
  default: return NULL;
  }
}

static bool has_cuda_config(const AVCodec *c) {
  for (int i = 0;; i++) {
    const AVCodecHWConfig *cfg = avcodec_get_hw_config(c, i);
    if (!cfg) return false;
    if (cfg->device_type == AV_HWDEVICE_TYPE_CUDA &&
        (cfg->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX))
      return true;
  }
}

/* FFmpeg offers CUDA only when NVDEC took the stream; when the GPU cannot decode this profile
 * (H.264 4:2:2, 10-bit H.264, ...) the hwaccel setup fails, FFmpeg asks again without it, and
 * the stream is decoded on the CPU instead of failing. */
static enum AVPixelFormat nv_get_format(AVCodecContext *c, const enum AVPixelFormat *fmts) {
  for (const enum AVPixelFormat *p = fmts; *p != AV_PIX_FMT_NONE; p++)
    if (*p == AV_PIX_FMT_CUDA) return *p;
  for (const enum AVPixelFormat *p = fmts; *p != AV_PIX_FMT_NONE; p++)
    if (!hw_pix_fmt_is_hw(*p)) {
      const char *fmt = av_get_pix_fmt_name(c->sw_pix_fmt);
      LOGI("nvidia: NVDEC cannot decode this %s stream (%s), decoding on the CPU",
           avcodec_get_name(c->codec_id), fmt ? fmt : "unknown format");
      return *p;
    }
  return AV_PIX_FMT_NONE;
}

static int nv_decoder_setup(AVBufferRef *device, const AVCodecParameters *par,
                            const AVCodec **codec, AVCodecContext *ctx) {
  const char *name = native_decoder(par->codec_id);
  const AVCodec *c = name ? avcodec_find_decoder_by_name(name) : NULL;
  if (!c || !device || !has_cuda_config(c)) {
    /* No NVDEC path for this codec (PNG, say): the CPU decodes it, as lpms does. */
    c = avcodec_find_decoder(par->codec_id);
    if (!c) return LP_EUNSUPP;
    *codec = c;
    return 0;
  }
  ctx->hw_device_ctx = av_buffer_ref(device);
  if (!ctx->hw_device_ctx) return LP_ENOMEM;
  ctx->get_format = nv_get_format;
  /* Surfaces stay referenced by the scalers of every rendition for a moment. */
  ctx->extra_hw_frames = 4;
  *codec = c;
  return 0;
}

static int put(char *buf, size_t len, int n) { return n < 0 || (size_t)n >= len ? LP_ERANGE : 0; }

static int nv_scale_filter(int in_pix_fmt, int w, int h, char *buf, size_t len) {
  if (in_pix_fmt == AV_PIX_FMT_CUDA)
    return put(buf, len,
               snprintf(buf, len, "scale_cuda=w=%d:h=%d:interp_algo=bicubic:format=nv12", w, h));
  /* Frames the CPU decoded: NVENC takes them from host memory. */
  return put(buf, len, snprintf(buf, len, "scale=w=%d:h=%d:flags=bicubic,format=yuv420p", w, h));
}

static int nv_scale_filter_host(int in_pix_fmt, int w, int h, char *buf, size_t len) {
  if (in_pix_fmt == AV_PIX_FMT_CUDA)
    return put(buf, len,
               snprintf(buf, len,
                        "scale_cuda=w=%d:h=%d:interp_algo=bicubic:format=yuv420p,hwdownload,"
                        "format=yuv420p",
                        w, h));
  return put(buf, len, snprintf(buf, len, "scale=w=%d:h=%d:flags=bicubic,format=yuv420p", w, h));
}

static const char *nv_encoder_name(enum AVCodecID codec) {
  switch (codec) {
  case AV_CODEC_ID_H264: return "h264_nvenc";
  case AV_CODEC_ID_HEVC: return "hevc_nvenc";
  case AV_CODEC_ID_AV1: return "av1_nvenc";
  default: return NULL;
  }
}

static int nv_open_error(int ret) {
  if (ret == AVERROR(ENOMEM)) return LP_ENOMEM;
  /* what FFmpeg answers when the GPU has no NVENC (H100, H200, A100) */
  if (ret == AVERROR(ENOSYS)) return LP_EUNSUPP;
  if (hw_classify_gpu(ret, HW_STAGE_ENCODE) == HW_ERR_DEVICE) return LP_EDEVICE;
  return LP_EINVAL;
}

static int nv_encoder_open(AVBufferRef *device, const hw_enc_params_t *p, AVBufferRef *hw_frames,
                           AVCodecContext **out) {
  *out = NULL;
  const char *name = nv_encoder_name(p->codec);
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
    c->pix_fmt = AV_PIX_FMT_CUDA;
    c->hw_frames_ctx = av_buffer_ref(hw_frames);
  } else {
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    if (device) c->hw_device_ctx = av_buffer_ref(device);
  }
  if ((hw_frames && !c->hw_frames_ctx) || (!hw_frames && device && !c->hw_device_ctx)) {
    avcodec_free_context(&c);
    return LP_ENOMEM;
  }
  AVDictionary *o = NULL;
  hw_enc_common(c, p, "cq", 7, 51, &o);
  if (p->quality > 0) av_dict_set(&o, "rc", "vbr", 0);
  av_dict_set(&o, "preset", hw_nvenc_preset(p->preset), 0);
  if (p->gop_forced || p->gop_frames != 0) av_dict_set(&o, "no-scenecut", "1", 0);
  /* lpms: B-frames only for H.264 Main/High; none without a profile, and none where the caller
   * forces keyframes by time (a reordered frame would land on the wrong side of them). */
  c->max_b_frames = 0;
  if (p->codec == AV_CODEC_ID_H264) {
    static const char *const prof[] = {NULL, "baseline", "main", "high", "high"};
    if (p->h264_profile > 0 && p->h264_profile <= 4)
      av_dict_set(&o, "profile", prof[p->h264_profile], 0);
    if ((p->h264_profile == 2 || p->h264_profile == 3) && !p->gop_forced && p->gop_frames >= 0)
      c->max_b_frames = 3;
  } else if (p->codec == AV_CODEC_ID_HEVC) {
    av_dict_set(&o, "tier", "high", 0);
  }
  int ret = hw_codec_open(c, codec, &o);
  av_dict_free(&o);
  if (ret < 0) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    LOGW("nvidia: cannot open %s %dx%d: %s", name, p->width, p->height,
         hw_averr(ret, e, sizeof(e)));
    avcodec_free_context(&c);
    return nv_open_error(ret);
  }
  *out = c;
  return 0;
}

/* NVENC keeps its session across segments: after the drain, a flush readies it for the next
 * segment's forced IDR (lpms never closes a warm NVENC). */
static hw_eos_policy_t nv_eos_policy(const AVCodecContext *enc) {
  return enc && (enc->codec->capabilities & AV_CODEC_CAP_ENCODER_FLUSH) ? HW_EOS_FLUSH
                                                                        : HW_EOS_REOPEN;
}

const hw_backend_t hw_backend_nvidia = {
    .name = "nvidia",
    .device_type = AV_HWDEVICE_TYPE_CUDA,
    .probe = nv_probe,
    .device_open = nv_device_open,
    .limits = nv_limits,
    .decoder_setup = nv_decoder_setup,
    .scale_filter = nv_scale_filter,
    .encoder_open = nv_encoder_open,
    .eos_policy = nv_eos_policy,
    .classify_error = hw_classify_gpu,
    /* Rough figures for a T4-class GPU; the startup benchmark replaces them. */
    .cost = {.decode_s_per_mpx = 0.0006,
             .scale_s_per_mpx = 0.0002,
             .encode_s_per_mpx = {0.0012, 0.0015, 0, 0}},
    .check = nv_check,
    .scale_filter_host = nv_scale_filter_host,
    .describe = nv_describe,
    .enc_sessions_limited = true,
    .decoder_sentinels = true,
};
