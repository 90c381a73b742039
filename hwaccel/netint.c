/* Netint backend: NETINT's codecs as their FFmpeg build registers them (Quadra, Logan/T4xx, and
 * the older names lpms used), found by name at run time. Stock FFmpeg has none of them; then the
 * backend says what is missing. Frames come back to host memory and are scaled on the CPU, as
 * lpms does; the card is chosen with the codecs' "dec"/"enc" options. */
#include <stdio.h>
#include <string.h>

#include <libavutil/opt.h>

#include "hw_int.h"

typedef struct ni_family {
  const char *name;
  const char *dec[HW_CODECS]; /* by hw_codec_t */
  const char *enc[HW_CODECS];
} ni_family_t;

static const ni_family_t families[] = {
    {"Quadra",
     {"h264_ni_quadra_dec", "h265_ni_quadra_dec", NULL, "vp9_ni_quadra_dec", NULL},
     {"h264_ni_quadra_enc", "h265_ni_quadra_enc", NULL, NULL, "av1_ni_quadra_enc"}},
    {"Logan",
     {"h264_ni_logan_dec", "h265_ni_logan_dec", NULL, NULL, NULL},
     {"h264_ni_logan_enc", "h265_ni_logan_enc", NULL, NULL, NULL}},
    {"T408",
     {"h264_ni_dec", "h265_ni_dec", NULL, NULL, NULL},
     {"h264_ni_enc", "h265_ni_enc", NULL, NULL, NULL}},
};

/* The first family with an H.264 decoder in the linked FFmpeg. */
static const ni_family_t *ni_family(void) {
  for (size_t i = 0; i < LP_ARRAY_LEN(families); i++)
    if (avcodec_find_decoder_by_name(families[i].dec[HW_CODEC_H264])) return &families[i];
  return NULL;
}

static int ni_check(char *why, size_t len) {
  if (ni_family()) return 0;
  snprintf(why, len,
           "the linked FFmpeg (%s) has no NETINT codecs (looked for h264_ni_quadra_dec, "
           "h264_ni_logan_dec, h264_ni_dec): build FFmpeg with NETINT's patches and libxcoder "
           "from their SDK release and link lpod against it (docs/hardware.md)",
           av_version_info());
  return LP_EUNSUPP;
}

/* libxcoder owns the card list; without linking it, the cards are addressed by index and the
 * self-test tells whether one answers. "all" is card 0 and lets libxcoder balance (-1). */
static int ni_probe(hw_device_info_t *out, int max) {
  const ni_family_t *f = ni_family();
  if (!f || max < 1) return 0;
  int n = LP_MIN(max, 8);
  for (int i = 0; i < n; i++) {
    memset(&out[i], 0, sizeof(out[i]));
    out[i].index = i;
    snprintf(out[i].name, sizeof(out[i].name), "NETINT %s card %d", f->name, i);
  }
  return n;
}

static int ni_describe(int index, char *model, size_t model_len, char *driver, size_t driver_len) {
  const ni_family_t *f = ni_family();
  snprintf(model, model_len, "NETINT %s", f ? f->name : "(no codecs)");
  snprintf(driver, driver_len, "libxcoder via FFmpeg %s", av_version_info());
  (void)index;
  return 0;
}

/* No FFmpeg device context: the codecs talk to libxcoder themselves. The index travels in the
 * buffer so the codecs can be pointed at the card. */
static int ni_device_open(int index, AVBufferRef **out) {
  *out = av_buffer_allocz(sizeof(int));
  if (!*out) return LP_ENOMEM;
  *(int *)(*out)->data = index;
  return 0;
}

static int card_of(AVBufferRef *device) {
  return device && device->size >= (int)sizeof(int) ? *(const int *)device->data : 0;
}

static int ni_limits(enum AVCodecID codec, hw_limits_t *out) {
  const ni_family_t *f = ni_family();
  hw_codec_t c;
  if (!f || hw_codec_from_avid(codec, &c) < 0 || !f->enc[c] ||
      !avcodec_find_encoder_by_name(f->enc[c]))
    return LP_EUNSUPP;
  *out = (hw_limits_t){144, 128, 8192, 8192, 2, true};
  return 0;
}

static int ni_decoder_setup(AVBufferRef *device, const AVCodecParameters *par,
                            const AVCodec **codec, AVCodecContext *ctx) {
  const ni_family_t *f = ni_family();
  hw_codec_t c;
  const AVCodec *d = NULL;
  if (f && hw_codec_from_avid(par->codec_id, &c) == 0 && f->dec[c])
    d = avcodec_find_decoder_by_name(f->dec[c]);
  /* Codecs the card cannot decode go to the CPU by the caller's choice (hw_route_decode). */
  if (!d) return LP_EUNSUPP;
  /* The engine opens decoders without private options, so libxcoder picks the card that
   * decodes; encoders are pinned to the session's card. */
  (void)device;
  (void)ctx;
  *codec = d;
  return 0;
}

static int ni_scale_filter(int in_pix_fmt, int w, int h, char *buf, size_t len) {
  (void)in_pix_fmt;
  int n = snprintf(buf, len, "scale=w=%d:h=%d:flags=bicubic,format=yuv420p", w, h);
  return n < 0 || (size_t)n >= len ? LP_ERANGE : 0;
}

static int ni_encoder_open(AVBufferRef *device, const hw_enc_params_t *p, AVBufferRef *hw_frames,
                           AVCodecContext **out) {
  (void)hw_frames;
  *out = NULL;
  const ni_family_t *f = ni_family();
  hw_codec_t hc;
  if (!f || hw_codec_from_avid(p->codec, &hc) < 0 || !f->enc[hc]) return LP_EUNSUPP;
  const AVCodec *codec = avcodec_find_encoder_by_name(f->enc[hc]);
  if (!codec) return LP_EUNSUPP;
  AVCodecContext *c = avcodec_alloc_context3(codec);
  if (!c) return LP_ENOMEM;
  c->width = p->width;
  c->height = p->height;
  c->time_base = p->time_base;
  c->framerate = p->framerate;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  c->sample_aspect_ratio = (AVRational){1, 1};
  AVDictionary *o = NULL;
  hw_enc_common(c, p, "crf", 0, 51, &o);
  char card[16];
  snprintf(card, sizeof(card), "%d", card_of(device));
  av_dict_set(&o, "enc", card, 0);
  /* lpms's xcoder-params: High profile, and GOP preset 2 (no B-frames) for Baseline and
   * Constrained High. */
  bool no_b = p->h264_profile == 1 || p->h264_profile == 4 || p->gop_forced;
  av_dict_set(&o, "xcoder-params", no_b ? "profile=high:gopPresetIdx=2" : "profile=high", 0);
  int ret = hw_codec_open(c, codec, &o);
  av_dict_free(&o);
  if (ret < 0) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    LOGW("netint: cannot open %s %dx%d: %s", codec->name, p->width, p->height,
         hw_averr(ret, e, sizeof(e)));
    avcodec_free_context(&c);
    if (ret == AVERROR(ENOMEM)) return LP_ENOMEM;
    return hw_classify_gpu(ret, HW_STAGE_ENCODE) == HW_ERR_DEVICE ? LP_EDEVICE : LP_EINVAL;
  }
  *out = c;
  return 0;
}

/* lpms #308: reopening Netint encoders every segment was its slowness; keep them where the
 * codec supports a flush. */
static hw_eos_policy_t ni_eos_policy(const AVCodecContext *enc) {
  return enc && (enc->codec->capabilities & AV_CODEC_CAP_ENCODER_FLUSH) ? HW_EOS_FLUSH
                                                                        : HW_EOS_REOPEN;
}

const hw_backend_t hw_backend_netint = {
    .name = "netint",
    .device_type = AV_HWDEVICE_TYPE_NONE,
    .probe = ni_probe,
    .device_open = ni_device_open,
    .limits = ni_limits,
    .decoder_setup = ni_decoder_setup,
    .scale_filter = ni_scale_filter,
    .encoder_open = ni_encoder_open,
    .eos_policy = ni_eos_policy,
    .classify_error = hw_classify_gpu,
    .cost = {.decode_s_per_mpx = 0.0005,
             .scale_s_per_mpx = 0.001,
             .encode_s_per_mpx = {0.001, 0.001, 0, 0}},
    .check = ni_check,
    .describe = ni_describe,
    .scale_on_host = true,
};
