/* Device self-test: real tiny transcodes through a backend, per codec, the way go-livepeer's
 * -testTranscoder finds out what a node can do, but per device and per codec, so that one
 * missing codec costs only its capability. Sources are made here with the CPU encoders, so the
 * test needs no media files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/pixdesc.h>

#include "hw_int.h"

/* 320x176 in, 160x96 out: above every encoder's minimum (NVENC H.264 146x50, x265 64x64,
 * SVT-AV1 64x64) and small enough that a whole test takes milliseconds. */
#define ST_W 320
#define ST_H 176
#define ST_OUT_W 160
#define ST_OUT_H 96
#define ST_FRAMES 8

/* The test encoder: 160x96 at 300 kb/s on one thread. */
static hw_enc_params_t st_enc_params(hw_codec_t codec) {
  return (hw_enc_params_t){.codec = hw_codec_avid(codec),
                           .width = ST_OUT_W,
                           .height = ST_OUT_H,
                           .time_base = {1, 30},
                           .framerate = {30, 1},
                           .bitrate = 300000,
                           .threads = 1};
}

/* The test clip: ST_FRAMES frames at 320x176, encoded on one thread. */
static int st_clip(hw_codec_t codec, enum AVPixelFormat fmt, hw_clip_t *out) {
  hw_clip_spec_t s = {codec, fmt, ST_W, ST_H, ST_FRAMES, 1, false, 0};
  return hw_clip_make(&s, out);
}

typedef struct count_ud {
  int frames, w, h;
  bool all_hw, size_ok;
} count_ud_t;

static int count_frame(void *ud, AVFrame *f) {
  count_ud_t *u = ud;
  if (u->frames == 0) u->all_hw = u->size_ok = true;
  u->frames++;
  u->all_hw = u->all_hw && hw_pix_fmt_is_hw(f->format);
  u->size_ok = u->size_ok && f->width == u->w && f->height == u->h;
  return 0;
}

/* A decode passes when every frame comes out at the right size, in device memory for backends
 * that have a device (a silent CPU fallback inside the decoder must not count as the device's). */
static bool decode_test(const hw_backend_t *be, AVBufferRef *device, const hw_clip_t *clip,
                        char *why, size_t wlen) {
  count_ud_t u = {0, ST_W, ST_H, false, false};
  if (hw_clip_decode(be, device, clip, 1, 0, count_frame, &u, why, wlen) < 0) return false;
  if (u.frames != ST_FRAMES || !u.size_ok) {
    snprintf(why, wlen, "decoded %d of %d frames", u.frames, ST_FRAMES);
    return false;
  }
  /* A device backend whose decoder handed the stream to the CPU has not decoded it: with a
   * device context the frames must be device frames. (Backends without one, like Netint,
   * refuse codecs they cannot decode in decoder_setup.) */
  bool on_cpu = be->device_type != AV_HWDEVICE_TYPE_NONE && !u.all_hw;
  if (on_cpu) {
    snprintf(why, wlen, "decoded on the CPU, not the device");
    return false;
  }
  return true;
}

/* ---- transcode ------------------------------------------------------------------------------- */

/* Decodes the encoded output on the CPU: it must hold every frame at the requested size. */
static bool verify_output(const hw_clip_t *out, AVCodecParameters *par, char *why, size_t wlen) {
  hw_clip_t c = *out;
  c.par = par;
  c.tb = (AVRational){1, 30};
  count_ud_t u = {0, ST_OUT_W, ST_OUT_H, false, false};
  char w2[96] = "";
  if (hw_clip_decode(&hw_backend_sw, NULL, &c, 1, 0, count_frame, &u, w2, sizeof(w2)) < 0) {
    snprintf(why, wlen, "output does not decode (%s)", w2);
    return false;
  }
  if (u.frames != ST_FRAMES || !u.size_ok) {
    snprintf(why, wlen, "output has %d of %d frames or a wrong size", u.frames, ST_FRAMES);
    return false;
  }
  return true;
}

/* Transcodes the H.264 source (decoded by dec_be) to codec at 160x96 with the encoder of enc_be,
 * on the device, or to the CPU when host is set, and checks the result. */
static bool transcode_test(const hw_backend_t *dec_be, const hw_backend_t *enc_be,
                           AVBufferRef *device, const hw_clip_t *src, hw_codec_t codec, bool host,
                           char *why, size_t wlen) {
  hw_clip_t out = {0};
  hw_pipe_t t = {.be = dec_be,
                 .enc_be = enc_be,
                 .device = device,
                 .host = host,
                 .out_w = ST_OUT_W,
                 .out_h = ST_OUT_H,
                 .ep = st_enc_params(codec),
                 .keep = &out,
                 .why = why,
                 .wlen = wlen};
  why[0] = 0;
  bool ok = false;
  int ret = hw_clip_decode(dec_be, device, src, 1, 0, hw_pipe_frame, &t, why, wlen);
  if (ret >= 0) ret = hw_pipe_finish(&t);
  if (ret >= 0 && t.enc) {
    AVCodecParameters *par = avcodec_parameters_alloc();
    if (par && avcodec_parameters_from_context(par, t.enc) >= 0)
      ok = verify_output(&out, par, why, wlen);
    avcodec_parameters_free(&par);
  } else if (ret >= 0) {
    snprintf(why, wlen, "no frames reached the encoder");
  } else if (!why[0]) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    snprintf(why, wlen, "%s", hw_averr(ret, e, sizeof(e)));
  }
  hw_clip_free(&out);
  hw_pipe_free(&t);
  return ok;
}

/* Without a transcode: only whether the encoder opens at the test size. */
static bool encoder_opens(const hw_backend_t *be, AVBufferRef *device, hw_codec_t codec, char *why,
                          size_t wlen) {
  hw_enc_params_t p = st_enc_params(codec);
  AVCodecContext *c = NULL;
  int ret = be->encoder_open(device, &p, NULL, &c);
  hw_encoder_free(&c);
  if (ret < 0) snprintf(why, wlen, "encoder open: %s", lp_strerror(ret));
  return ret >= 0;
}

static bool decoder_opens(const hw_backend_t *be, AVBufferRef *device, const hw_clip_t *clip,
                          char *why, size_t wlen) {
  const AVCodec *codec = NULL;
  AVCodecContext *c = avcodec_alloc_context3(NULL);
  bool ok = c && avcodec_parameters_to_context(c, clip->par) >= 0 &&
            be->decoder_setup(device, clip->par, &codec, c) >= 0 &&
            hw_codec_open(c, codec, NULL) >= 0;
  avcodec_free_context(&c);
  if (!ok) snprintf(why, wlen, "decoder does not open");
  return ok;
}

static void note_add(hw_device_t *d, const char *what, hw_codec_t c, const char *why) {
  size_t n = strlen(d->note);
  if (n + 8 >= sizeof(d->note)) return;
  snprintf(d->note + n, sizeof(d->note) - n, "%s%s %s: %s", n ? "; " : "", what, hw_codec_name(c),
           why);
}

static const enum AVPixelFormat h264_fmt_pix[HW_H264_FMTS] = {
    AV_PIX_FMT_YUV444P, AV_PIX_FMT_YUV422P, AV_PIX_FMT_YUV444P10, AV_PIX_FMT_YUV422P10,
    AV_PIX_FMT_YUV420P10};

int hw_selftest(hw_device_t *d, bool full) {
  const hw_backend_t *be = d->be;
  bool is_cpu = be == &hw_backend_sw;
  /* SVT-AV1 prints a banner at info level for every encoder it opens. */
  setenv("SVT_LOG", "1", 0);
  d->dec = d->enc = d->enc_cpu = d->h264_fmts = 0;
  d->note[0] = 0;
  d->tested = full;
  AVBufferRef *device = NULL;
  int ret = be->device_open(d->index, &device);
  if (ret < 0) {
    snprintf(d->note, sizeof(d->note), "device does not open: %s", lp_strerror(ret));
    return ret;
  }
  char why[128];
  hw_clip_t clips[HW_CODECS];
  for (int c = 0; c < HW_CODECS; c++) {
    if (st_clip((hw_codec_t)c, AV_PIX_FMT_YUV420P, &clips[c]) < 0) {
      note_add(d, "decode", (hw_codec_t)c, "no CPU encoder to make a test clip");
      continue;
    }
    why[0] = 0;
    bool ok = full ? decode_test(be, device, &clips[c], why, sizeof(why))
                   : decoder_opens(be, device, &clips[c], why, sizeof(why));
    if (ok)
      d->dec |= HW_CODEC_BIT(c);
    else
      note_add(d, "decode", (hw_codec_t)c, why);
  }
  if (d->dec & HW_CODEC_BIT(HW_CODEC_H264)) {
    for (int k = 0; k < HW_H264_FMTS; k++) {
      hw_clip_t fc;
      if (st_clip(HW_CODEC_H264, h264_fmt_pix[k], &fc) < 0) continue;
      why[0] = 0;
      if (full ? decode_test(be, device, &fc, why, sizeof(why))
               : decoder_opens(be, device, &fc, why, sizeof(why)))
        d->h264_fmts |= 1u << k;
      hw_clip_free(&fc);
    }
  }
  /* Encoders get the device's own decoded H.264 frames where it decodes H.264, else frames
   * decoded on the CPU. */
  const hw_backend_t *src_be = (d->dec & HW_CODEC_BIT(HW_CODEC_H264)) ? be : &hw_backend_sw;
  AVBufferRef *src_dev = src_be == be ? device : NULL;
  bool have_src = clips[HW_CODEC_H264].par != NULL;
  for (int c = 0; c < HW_CODECS; c++) {
    hw_limits_t lim;
    why[0] = 0;
    bool ok = false;
    if (be->limits(hw_codec_avid((hw_codec_t)c), &lim) < 0) {
      snprintf(why, sizeof(why), "no encoder");
    } else if (full && have_src) {
      ok = transcode_test(src_be, be, src_dev, &clips[HW_CODEC_H264], (hw_codec_t)c, false, why,
                          sizeof(why));
    } else if (full) {
      snprintf(why, sizeof(why), "no H.264 test source");
    } else {
      ok = encoder_opens(be, device, (hw_codec_t)c, why, sizeof(why));
    }
    if (ok) {
      d->enc |= HW_CODEC_BIT(c);
      d->limits[c] = lim;
      continue;
    }
    if (is_cpu) {
      note_add(d, "encode", (hw_codec_t)c, why);
      continue;
    }
    /* The device's frames can still reach a CPU encoder (a GPU without encoders). */
    char why2[128] = "";
    bool cpu_ok = false;
    if (hw_backend_sw.limits(hw_codec_avid((hw_codec_t)c), &lim) >= 0) {
      cpu_ok = full && have_src
                   ? transcode_test(src_be, &hw_backend_sw, src_dev, &clips[HW_CODEC_H264],
                                    (hw_codec_t)c, true, why2, sizeof(why2))
                   : encoder_opens(&hw_backend_sw, NULL, (hw_codec_t)c, why2, sizeof(why2));
    }
    if (cpu_ok) {
      d->enc_cpu |= HW_CODEC_BIT(c);
      d->limits[c] = lim;
    }
    note_add(d, cpu_ok ? "encode on device (CPU instead)" : "encode", (hw_codec_t)c, why);
  }
  for (int c = 0; c < HW_CODECS; c++) hw_clip_free(&clips[c]);
  av_buffer_unref(&device);
  return 0;
}

int hw_probe_enc_sessions(const hw_device_t *d, int max) {
  int codec = -1;
  for (int c = 0; c < HW_CODECS && codec < 0; c++)
    if (d->enc & HW_CODEC_BIT(c)) codec = c;
  if (codec < 0) return LP_EUNSUPP;
  AVBufferRef *device = NULL;
  int ret = d->be->device_open(d->index, &device);
  if (ret < 0) return ret;
  AVCodecContext **encs = calloc((size_t)max, sizeof(*encs));
  if (!encs) {
    av_buffer_unref(&device);
    return LP_ENOMEM;
  }
  hw_enc_params_t p = st_enc_params((hw_codec_t)codec);
  int n = 0;
  while (n < max && d->be->encoder_open(device, &p, NULL, &encs[n]) >= 0) n++;
  for (int i = 0; i < n; i++) hw_encoder_free(&encs[i]);
  free(encs);
  av_buffer_unref(&device);
  if (n == 0) return LP_EDEVICE;
  return n == max ? 0 : n;
}
