/* Device self-test: real tiny transcodes through a backend, per codec, the way go-livepeer's
 * -testTranscoder finds out what a node can do, but per device and per codec, so that one
 * missing codec costs only its capability. Sources are made here with the CPU encoders, so the
 * test needs no media files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>

#include "hw_int.h"

/* 320x176 in, 160x96 out: above every encoder's minimum (NVENC H.264 146x50, x265 64x64,
 * SVT-AV1 64x64) and small enough that a whole test takes milliseconds. */
#define ST_W 320
#define ST_H 176
#define ST_OUT_W 160
#define ST_OUT_H 96
#define ST_FRAMES 8
#define ST_MAX_PKTS 64

typedef struct clip {
  AVCodecParameters *par;
  AVPacket *pkts[ST_MAX_PKTS];
  int n;
  AVRational tb;
} clip_t;

static void clip_free(clip_t *c) {
  for (int i = 0; i < c->n; i++) av_packet_free(&c->pkts[i]);
  c->n = 0;
  avcodec_parameters_free(&c->par);
}

static const char *const clip_encoders[HW_CODECS][2] = {
    {"libx264", NULL},    {"libx265", NULL},           {"libvpx", NULL},
    {"libvpx-vp9", NULL}, {"libsvtav1", "libaom-av1"},
};

/* A moving gradient, so that every frame differs and inter prediction has work to do. */
static void fill_frame(AVFrame *f, int k) {
  const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
  int depth = d->comp[0].depth;
  for (int p = 0; p < 3; p++) {
    int w = p ? AV_CEIL_RSHIFT(f->width, d->log2_chroma_w) : f->width;
    int h = p ? AV_CEIL_RSHIFT(f->height, d->log2_chroma_h) : f->height;
    for (int y = 0; y < h; y++) {
      uint8_t *row = f->data[p] + (ptrdiff_t)y * f->linesize[p];
      for (int x = 0; x < w; x++) {
        int v = p ? 128 + ((x * (p == 1 ? 1 : -1) + y) & 63) - 32 : (x + 2 * y + 6 * k) & 255;
        if (depth > 8)
          ((uint16_t *)row)[x] = (uint16_t)(v << (depth - 8));
        else
          row[x] = (uint8_t)v;
      }
    }
  }
}

static int enc_drain(AVCodecContext *c, clip_t *out) {
  for (;;) {
    AVPacket *p = av_packet_alloc();
    if (!p) return AVERROR(ENOMEM);
    int ret = avcodec_receive_packet(c, p);
    if (ret < 0) {
      av_packet_free(&p);
      return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
    }
    if (out->n == ST_MAX_PKTS) {
      av_packet_free(&p);
      return AVERROR(ERANGE);
    }
    out->pkts[out->n++] = p;
  }
}

/* Ends an encoder: SVT-AV1 (1.4) waits forever in its close unless it was told the stream
 * ended, and forever in that end-of-stream unless it had a frame, so encoders opened only to
 * see whether they open get one frame (enc_feed_one) and every encoder is drained here. */
static void enc_close(AVCodecContext **c) {
  if (!*c) return;
  if (avcodec_send_frame(*c, NULL) >= 0) {
    AVPacket *p = av_packet_alloc();
    while (p && avcodec_receive_packet(*c, p) >= 0) av_packet_unref(p);
    av_packet_free(&p);
  }
  avcodec_free_context(c);
}

static void enc_feed_one(AVCodecContext *c) {
  if (hw_pix_fmt_is_hw(c->pix_fmt)) return;
  AVFrame *f = av_frame_alloc();
  if (!f) return;
  f->format = c->pix_fmt;
  f->width = c->width;
  f->height = c->height;
  if (av_frame_get_buffer(f, 0) >= 0 && av_frame_make_writable(f) >= 0) {
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(c->pix_fmt);
    for (int p = 0; p < 4 && f->data[p]; p++) {
      int h = p && d && p < 3 ? AV_CEIL_RSHIFT(f->height, d->log2_chroma_h) : f->height;
      memset(f->data[p], 0x80, (size_t)f->linesize[p] * (size_t)h);
    }
    f->pts = 0;
    avcodec_send_frame(c, f);
  }
  av_frame_free(&f);
}

/* Encodes ST_FRAMES synthetic frames of codec in pix_fmt with a CPU encoder. */
static int clip_make(hw_codec_t codec, enum AVPixelFormat fmt, clip_t *out) {
  memset(out, 0, sizeof(*out));
  const AVCodec *enc = NULL;
  for (int i = 0; i < 2 && !enc; i++)
    if (clip_encoders[codec][i]) enc = avcodec_find_encoder_by_name(clip_encoders[codec][i]);
  if (!enc) return LP_EUNSUPP;
  AVCodecContext *c = avcodec_alloc_context3(enc);
  AVFrame *f = av_frame_alloc();
  AVDictionary *o = NULL;
  int ret = c && f ? 0 : AVERROR(ENOMEM);
  if (ret == 0) {
    c->width = ST_W;
    c->height = ST_H;
    c->pix_fmt = fmt;
    c->time_base = (AVRational){1, 30};
    c->framerate = (AVRational){30, 1};
    c->gop_size = ST_FRAMES;
    c->max_b_frames = 0;
    c->thread_count = 1;
    c->bit_rate = 400000;
    av_dict_set(&o, "preset", codec == HW_CODEC_AV1 ? "12" : "ultrafast", 0);
    av_dict_set(&o, "x265-params", "log-level=0", 0);
    av_dict_set(&o, "deadline", "realtime", 0);
    av_dict_set(&o, "cpu-used", "8", 0);
    av_dict_set(&o, "usage", "realtime", 0);
    ret = avcodec_open2(c, enc, &o);
  }
  for (int k = 0; ret >= 0 && k < ST_FRAMES; k++) {
    av_frame_unref(f);
    f->format = fmt;
    f->width = ST_W;
    f->height = ST_H;
    if ((ret = av_frame_get_buffer(f, 0)) < 0) break;
    fill_frame(f, k);
    f->pts = k;
    if ((ret = avcodec_send_frame(c, f)) >= 0) ret = enc_drain(c, out);
  }
  if (ret >= 0 && (ret = avcodec_send_frame(c, NULL)) >= 0) ret = enc_drain(c, out);
  if (ret >= 0) {
    out->par = avcodec_parameters_alloc();
    if (!out->par || avcodec_parameters_from_context(out->par, c) < 0) ret = AVERROR(ENOMEM);
    out->tb = c->time_base;
  }
  av_dict_free(&o);
  av_frame_free(&f);
  avcodec_free_context(&c);
  if (ret < 0) {
    clip_free(out);
    return ret == AVERROR(ENOMEM) ? LP_ENOMEM : LP_EUNSUPP;
  }
  return 0;
}

/* ---- decode ---------------------------------------------------------------------------------- */

typedef int (*frame_fn)(void *ud, AVFrame *f);

/* Decodes a clip through be on device; every frame goes to fn. */
static int clip_decode(const hw_backend_t *be, AVBufferRef *device, const clip_t *clip, frame_fn fn,
                       void *ud, char *why, size_t wlen) {
  char e[AV_ERROR_MAX_STRING_SIZE];
  const AVCodec *codec = NULL;
  AVCodecContext *c = avcodec_alloc_context3(NULL);
  AVFrame *f = av_frame_alloc();
  int ret = c && f ? avcodec_parameters_to_context(c, clip->par) : AVERROR(ENOMEM);
  if (ret >= 0) {
    c->pkt_timebase = clip->tb;
    if (be->decoder_setup(device, clip->par, &codec, c) < 0) {
      snprintf(why, wlen, "no decoder");
      ret = AVERROR_DECODER_NOT_FOUND;
    } else if ((ret = avcodec_open2(c, codec, NULL)) < 0) {
      snprintf(why, wlen, "decoder open: %s", hw_averr(ret, e, sizeof(e)));
    }
  }
  for (int i = 0; ret >= 0 && i <= clip->n; i++) {
    ret = avcodec_send_packet(c, i < clip->n ? clip->pkts[i] : NULL);
    if (ret < 0) {
      snprintf(why, wlen, "decode: %s", hw_averr(ret, e, sizeof(e)));
      break;
    }
    while ((ret = avcodec_receive_frame(c, f)) >= 0) {
      ret = fn(ud, f);
      av_frame_unref(f);
      if (ret < 0) break;
    }
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
      ret = 0;
    else if (ret < 0 && !why[0])
      snprintf(why, wlen, "decode: %s", hw_averr(ret, e, sizeof(e)));
  }
  av_frame_free(&f);
  avcodec_free_context(&c);
  return ret;
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
static bool decode_test(const hw_backend_t *be, AVBufferRef *device, const clip_t *clip, char *why,
                        size_t wlen) {
  count_ud_t u = {0, ST_W, ST_H, false, false};
  if (clip_decode(be, device, clip, count_frame, &u, why, wlen) < 0) return false;
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

typedef struct tc {
  const hw_backend_t *be;     /* the device's backend (scaler) */
  const hw_backend_t *enc_be; /* the encoder's backend: be, or sw on the CPU route */
  AVBufferRef *device;
  bool host; /* frames go to a CPU encoder */
  enum AVCodecID codec;
  AVFilterGraph *graph;
  AVFilterContext *src, *sink;
  AVCodecContext *enc;
  AVFrame *ff;
  clip_t out;
  char *why;
  size_t wlen;
} tc_t;

static int tc_graph(tc_t *t, const AVFrame *f) {
  char chain[512], args[256];
  int ret = t->host && t->be->scale_filter_host
                ? t->be->scale_filter_host(f->format, ST_OUT_W, ST_OUT_H, chain, sizeof(chain))
                : t->be->scale_filter(f->format, ST_OUT_W, ST_OUT_H, chain, sizeof(chain));
  if (ret < 0) {
    snprintf(t->why, t->wlen, "no scaler");
    return ret;
  }
  snprintf(args, sizeof(args), "video_size=%dx%d:pix_fmt=%d:time_base=1/30:pixel_aspect=1/1",
           f->width, f->height, f->format);
  t->graph = avfilter_graph_alloc();
  if (!t->graph) return AVERROR(ENOMEM);
  t->graph->nb_threads = 1;
  ret = avfilter_graph_create_filter(&t->src, avfilter_get_by_name("buffer"), "in", args, NULL,
                                     t->graph);
  if (ret >= 0 && f->hw_frames_ctx) {
    /* Device frames: the scaler finds the device through the source's frames context. */
    AVBufferSrcParameters *bp = av_buffersrc_parameters_alloc();
    if (!bp) return AVERROR(ENOMEM);
    bp->hw_frames_ctx = f->hw_frames_ctx;
    ret = av_buffersrc_parameters_set(t->src, bp);
    av_free(bp);
  }
  if (ret >= 0)
    ret = avfilter_graph_create_filter(&t->sink, avfilter_get_by_name("buffersink"), "out", NULL,
                                       NULL, t->graph);
  AVFilterInOut *in = NULL, *out = NULL;
  if (ret >= 0) {
    in = avfilter_inout_alloc();
    out = avfilter_inout_alloc();
    if (!in || !out) ret = AVERROR(ENOMEM);
  }
  if (ret >= 0) {
    out->name = av_strdup("in");
    out->filter_ctx = t->src;
    in->name = av_strdup("out");
    in->filter_ctx = t->sink;
    ret = avfilter_graph_parse_ptr(t->graph, chain, &in, &out, NULL);
  }
  if (ret >= 0) ret = avfilter_graph_config(t->graph, NULL);
  avfilter_inout_free(&in);
  avfilter_inout_free(&out);
  if (ret < 0) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    snprintf(t->why, t->wlen, "scaler '%s': %s", chain, hw_averr(ret, e, sizeof(e)));
  }
  return ret;
}

static int tc_encode(tc_t *t, AVFrame *f) {
  if (!t->enc) {
    hw_enc_params_t p = {
        .codec = t->codec,
        .width = f->width,
        .height = f->height,
        .time_base = av_buffersink_get_time_base(t->sink),
        .framerate = {30, 1},
        .bitrate = 300000,
        .threads = 1,
    };
    AVBufferRef *frames = av_buffersink_get_hw_frames_ctx(t->sink);
    int ret = t->enc_be->encoder_open(t->device, &p, frames, &t->enc);
    if (ret < 0) {
      snprintf(t->why, t->wlen, "encoder open: %s", lp_strerror(ret));
      return ret;
    }
  }
  int ret = avcodec_send_frame(t->enc, f);
  if (ret >= 0) ret = enc_drain(t->enc, &t->out);
  if (ret < 0 && !t->why[0]) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    snprintf(t->why, t->wlen, "encode: %s", hw_averr(ret, e, sizeof(e)));
  }
  return ret;
}

static int tc_pull(tc_t *t) {
  for (;;) {
    int ret = av_buffersink_get_frame(t->sink, t->ff);
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
    if (ret < 0) return ret;
    ret = tc_encode(t, t->ff);
    av_frame_unref(t->ff);
    if (ret < 0) return ret;
  }
}

static int tc_frame(void *ud, AVFrame *f) {
  tc_t *t = ud;
  int ret;
  if (!t->graph && (ret = tc_graph(t, f)) < 0) return ret;
  f->pict_type = AV_PICTURE_TYPE_NONE;
  if ((ret = av_buffersrc_add_frame_flags(t->src, f, AV_BUFFERSRC_FLAG_KEEP_REF)) < 0) return ret;
  return tc_pull(t);
}

/* Decodes the encoded output on the CPU: it must hold every frame at the requested size. */
static bool verify_output(const clip_t *out, AVCodecParameters *par, char *why, size_t wlen) {
  clip_t c = *out;
  c.par = par;
  c.tb = (AVRational){1, 30};
  count_ud_t u = {0, ST_OUT_W, ST_OUT_H, false, false};
  char w2[96] = "";
  if (clip_decode(&hw_backend_sw, NULL, &c, count_frame, &u, w2, sizeof(w2)) < 0) {
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
                           AVBufferRef *device, const clip_t *src, hw_codec_t codec, bool host,
                           char *why, size_t wlen) {
  tc_t t = {.be = dec_be,
            .enc_be = enc_be,
            .device = device,
            .host = host,
            .codec = hw_codec_avid(codec),
            .why = why,
            .wlen = wlen};
  why[0] = 0;
  t.ff = av_frame_alloc();
  bool ok = false;
  int ret = t.ff ? clip_decode(dec_be, device, src, tc_frame, &t, why, wlen) : AVERROR(ENOMEM);
  if (ret >= 0 && t.graph) {
    if ((ret = av_buffersrc_add_frame(t.src, NULL)) >= 0) ret = tc_pull(&t);
  }
  if (ret >= 0 && t.enc) {
    if ((ret = avcodec_send_frame(t.enc, NULL)) >= 0) ret = enc_drain(t.enc, &t.out);
  }
  if (ret >= 0 && t.enc) {
    AVCodecParameters *par = avcodec_parameters_alloc();
    if (par && avcodec_parameters_from_context(par, t.enc) >= 0)
      ok = verify_output(&t.out, par, why, wlen);
    avcodec_parameters_free(&par);
  } else if (ret >= 0) {
    snprintf(why, wlen, "no frames reached the encoder");
  } else if (!why[0]) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    snprintf(why, wlen, "%s", hw_averr(ret, e, sizeof(e)));
  }
  for (int i = 0; i < t.out.n; i++) av_packet_free(&t.out.pkts[i]);
  enc_close(&t.enc);
  avfilter_graph_free(&t.graph);
  av_frame_free(&t.ff);
  return ok;
}

/* Without a transcode: only whether the encoder opens at the test size. */
static bool encoder_opens(const hw_backend_t *be, AVBufferRef *device, hw_codec_t codec, char *why,
                          size_t wlen) {
  hw_enc_params_t p = {.codec = hw_codec_avid(codec),
                       .width = ST_OUT_W,
                       .height = ST_OUT_H,
                       .time_base = {1, 30},
                       .framerate = {30, 1},
                       .bitrate = 300000,
                       .threads = 1};
  AVCodecContext *c = NULL;
  int ret = be->encoder_open(device, &p, NULL, &c);
  if (c) enc_feed_one(c);
  enc_close(&c);
  if (ret < 0) snprintf(why, wlen, "encoder open: %s", lp_strerror(ret));
  return ret >= 0;
}

static bool decoder_opens(const hw_backend_t *be, AVBufferRef *device, const clip_t *clip,
                          char *why, size_t wlen) {
  const AVCodec *codec = NULL;
  AVCodecContext *c = avcodec_alloc_context3(NULL);
  bool ok = c && avcodec_parameters_to_context(c, clip->par) >= 0 &&
            be->decoder_setup(device, clip->par, &codec, c) >= 0 &&
            avcodec_open2(c, codec, NULL) >= 0;
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
  clip_t clips[HW_CODECS];
  for (int c = 0; c < HW_CODECS; c++) {
    if (clip_make((hw_codec_t)c, AV_PIX_FMT_YUV420P, &clips[c]) < 0) {
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
      clip_t fc;
      if (clip_make(HW_CODEC_H264, h264_fmt_pix[k], &fc) < 0) continue;
      why[0] = 0;
      if (full ? decode_test(be, device, &fc, why, sizeof(why))
               : decoder_opens(be, device, &fc, why, sizeof(why)))
        d->h264_fmts |= 1u << k;
      clip_free(&fc);
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
  for (int c = 0; c < HW_CODECS; c++) clip_free(&clips[c]);
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
  hw_enc_params_t p = {.codec = hw_codec_avid((hw_codec_t)codec),
                       .width = ST_OUT_W,
                       .height = ST_OUT_H,
                       .time_base = {1, 30},
                       .framerate = {30, 1},
                       .bitrate = 300000,
                       .threads = 1};
  int n = 0;
  while (n < max && d->be->encoder_open(device, &p, NULL, &encs[n]) >= 0) enc_feed_one(encs[n++]);
  for (int i = 0; i < n; i++) enc_close(&encs[i]);
  free(encs);
  av_buffer_unref(&device);
  if (n == 0) return LP_EDEVICE;
  return n == max ? 0 : n;
}
