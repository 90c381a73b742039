/* The fake backend (tests only): the software backend with a GPU's limits and failures. */
#include <stdio.h>
#include <string.h>

#include "fake_backend.h"

extern const hw_backend_t hw_backend_sw;

static fake_config_t cfg;
static int open_encoders, opened_total;

void fake_configure(const fake_config_t *c) {
  cfg = *c;
  open_encoders = 0;
  opened_total = 0;
}

fake_config_t *fake_config(void) { return &cfg; }

int fake_open_encoders(void) { return open_encoders; }

int fake_encoders_opened(void) { return opened_total; }

static int fake_check(char *why, size_t len) {
  if (!cfg.missing) return 0;
  snprintf(why, len, "%s", cfg.missing);
  return LP_EUNSUPP;
}

static int fake_probe(hw_device_info_t *out, int max) {
  int n = cfg.devices < max ? cfg.devices : max;
  for (int i = 0; i < n; i++) {
    memset(&out[i], 0, sizeof(out[i]));
    out[i].index = i;
    snprintf(out[i].name, sizeof(out[i].name), "Fake GPU %d", i);
    snprintf(out[i].id, sizeof(out[i].id), "FAKE-%04d", i);
    out[i].mem_total = (uint64_t)1 << 30;
  }
  return n;
}

static int fake_describe(int index, char *model, size_t ml, char *driver, size_t dl) {
  snprintf(model, ml, "Fake GPU %d", index);
  snprintf(driver, dl, "1.0-fake");
  return 0;
}

static int fake_device_open(int index, AVBufferRef **out) {
  *out = NULL;
  return cfg.broken || index + 1 == cfg.dead_device ? LP_EDEVICE : 0;
}

static int fake_limits(enum AVCodecID codec, hw_limits_t *out) {
  hw_codec_t c;
  if (hw_codec_from_avid(codec, &c) < 0 || !(cfg.enc & HW_CODEC_BIT(c))) return LP_EUNSUPP;
  *out = cfg.limits;
  return 0;
}

static int fake_decoder_setup(AVBufferRef *device, const AVCodecParameters *par,
                              const AVCodec **codec, AVCodecContext *ctx) {
  hw_codec_t c;
  if (cfg.broken || hw_codec_from_avid(par->codec_id, &c) < 0 || !(cfg.dec & HW_CODEC_BIT(c)))
    return LP_EUNSUPP;
  if (cfg.only_420_8 && par->format != AV_PIX_FMT_YUV420P) return LP_EUNSUPP;
  return hw_backend_sw.decoder_setup(device, par, codec, ctx);
}

static void encoder_closed(void *opaque, uint8_t *data) {
  (void)opaque;
  (void)data;
  open_encoders--;
}

/* Counts its encoders through a buffer that the codec context releases when it is freed. */
static int fake_encoder_open(AVBufferRef *device, const hw_enc_params_t *p, AVBufferRef *hw_frames,
                             AVCodecContext **out) {
  hw_codec_t c;
  *out = NULL;
  if (cfg.broken) return LP_EDEVICE;
  if (hw_codec_from_avid(p->codec, &c) < 0 || !(cfg.enc & HW_CODEC_BIT(c))) return LP_EUNSUPP;
  if (cfg.max_sessions > 0 && open_encoders >= cfg.max_sessions) return LP_ENOMEM;
  int ret = hw_backend_sw.encoder_open(device, p, hw_frames, out);
  if (ret < 0) return ret;
  static uint8_t token;
  (*out)->hw_device_ctx = av_buffer_create(&token, 1, encoder_closed, NULL, 0);
  if (!(*out)->hw_device_ctx) {
    avcodec_free_context(out);
    return LP_ENOMEM;
  }
  open_encoders++;
  opened_total++;
  return 0;
}

static int fake_scale_filter(int in_pix_fmt, int w, int h, char *buf, size_t len) {
  return hw_backend_sw.scale_filter(in_pix_fmt, w, h, buf, len);
}

static hw_eos_policy_t fake_eos_policy(const AVCodecContext *enc) {
  return hw_backend_sw.eos_policy(enc);
}

static hw_err_class_t fake_classify(int averror, hw_stage_t stage) {
  return hw_backend_nvidia.classify_error(averror, stage);
}

const hw_backend_t fake_backend = {
    .name = "fake",
    .device_type = AV_HWDEVICE_TYPE_NONE,
    .probe = fake_probe,
    .device_open = fake_device_open,
    .limits = fake_limits,
    .decoder_setup = fake_decoder_setup,
    .scale_filter = fake_scale_filter,
    .encoder_open = fake_encoder_open,
    .eos_policy = fake_eos_policy,
    .classify_error = fake_classify,
    .check = fake_check,
    .describe = fake_describe,
    .enc_sessions_limited = true,
};

int fake_table(hw_table_t *t, const fake_config_t *c, const char *select, bool test, char *err,
               size_t errlen) {
  fake_configure(c);
  hw_table_init(t);
  int ret = hw_selftest(&t->dev[0], false);
  if (ret) {
    snprintf(err, errlen, "the CPU's codecs: %s", lp_strerror(ret));
    return ret;
  }
  return hw_table_add(t, &fake_backend, select, test, NULL, err, errlen);
}
