/* Synthetic clips and a decode -> scale -> encode pipeline through a backend, shared by the device
 * self-test and the calibration benchmark. Sources are made with the CPU encoders, so neither
 * needs media files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavformat/avformat.h>
#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>

#include "hw_int.h"

void hw_clip_free(hw_clip_t *c) {
  for (int i = 0; i < c->n; i++) av_packet_free(&c->pkts[i]);
  free(c->pkts);
  c->pkts = NULL;
  c->n = c->cap = 0;
  avcodec_parameters_free(&c->par);
}

double hw_clip_bpp(const hw_clip_t *c) {
  if (!c->par || c->n <= 0 || c->par->width <= 0 || c->par->height <= 0) return 0;
  double bits = 0;
  for (int i = 0; i < c->n; i++) bits += 8.0 * c->pkts[i]->size;
  /* one packet a frame: the clips have no B-frames */
  return bits / ((double)c->n * c->par->width * c->par->height);
}

static int clip_add(hw_clip_t *c, AVPacket *p) {
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 64;
    AVPacket **pk = realloc(c->pkts, (size_t)cap * sizeof(*pk));
    if (!pk) return AVERROR(ENOMEM);
    c->pkts = pk;
    c->cap = cap;
  }
  c->pkts[c->n++] = p;
  return 0;
}

static const char *const clip_encoders[HW_CODECS][2] = {
    {"libx264", NULL},    {"libx265", NULL},           {"libvpx", NULL},
    {"libvpx-vp9", NULL}, {"libsvtav1", "libaom-av1"},
};

/* Noise in [-amp, amp] from the pixel's place, plane and frame (a hash: no state, no order). */
static int grain_at(int x, int y, int k, int amp) {
  uint32_t h = (uint32_t)x * 0x9e3779b1u ^ (uint32_t)y * 0x85ebca77u ^ (uint32_t)k * 0xc2b2ae3du;
  h ^= h >> 15;
  h *= 0x2c1b3c6du;
  h ^= h >> 13;
  return (int)(h % (uint32_t)(2 * amp + 1)) - amp;
}

/* A moving gradient, so that every frame differs and inter prediction has work to do. */
void hw_fill_frame(AVFrame *f, int k, int grain) {
  const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
  int depth = d->comp[0].depth;
  for (int p = 0; p < 3; p++) {
    int w = p ? AV_CEIL_RSHIFT(f->width, d->log2_chroma_w) : f->width;
    int h = p ? AV_CEIL_RSHIFT(f->height, d->log2_chroma_h) : f->height;
    for (int y = 0; y < h; y++) {
      uint8_t *row = f->data[p] + (ptrdiff_t)y * f->linesize[p];
      for (int x = 0; x < w; x++) {
        int v = p ? 128 + ((x * (p == 1 ? 1 : -1) + y) & 63) - 32 : (x + 2 * y + 6 * k) & 255;
        if (grain) v = av_clip_uint8(v + grain_at(x, y, 3 * k + p, grain));
        if (depth > 8)
          ((uint16_t *)row)[x] = (uint16_t)(v << (depth - 8));
        else
          row[x] = (uint8_t)v;
      }
    }
  }
}

int hw_enc_drain(AVCodecContext *c, hw_clip_t *keep) {
  int n = 0;
  for (;;) {
    AVPacket *p = av_packet_alloc();
    if (!p) return AVERROR(ENOMEM);
    int ret = avcodec_receive_packet(c, p);
    if (ret < 0) {
      av_packet_free(&p);
      return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? n : ret;
    }
    n++;
    if (!keep) {
      av_packet_free(&p);
    } else if ((ret = clip_add(keep, p)) < 0) {
      av_packet_free(&p);
      return ret;
    }
  }
}

/* SVT-AV1 (1.4) waits forever in its close unless it was told the stream ended, and forever in
 * that end-of-stream unless it had a frame, so every encoder is drained here. */
void hw_enc_close(AVCodecContext **c) {
  if (!*c) return;
  if (avcodec_send_frame(*c, NULL) >= 0) {
    AVPacket *p = av_packet_alloc();
    while (p && avcodec_receive_packet(*c, p) >= 0) av_packet_unref(p);
    av_packet_free(&p);
  }
  avcodec_free_context(c);
}

/* One grey frame, so that an encoder that has had none can end its stream. */
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
    f->pts = c->frame_number > 0 ? INT64_MAX / 2 : 0;
    avcodec_send_frame(c, f);
  }
  av_frame_free(&f);
}

void hw_encoder_free(AVCodecContext **c) {
  if (!*c) return;
  /* SVT-AV1 1.4 hangs in its close without an end of stream, and in an end of stream without a
   * frame: one grey frame (refused harmlessly once the stream has ended), then the end. */
  if (avcodec_is_open(*c) && av_codec_is_encoder((*c)->codec) &&
      strcmp((*c)->codec->name, "libsvtav1") == 0) {
    enc_feed_one(*c);
    hw_enc_close(c);
    return;
  }
  avcodec_free_context(c);
}

/* Whether a clip gets its rate from its grain at constant quality (hw_clip_spec_t.bpp): H.264
 * and HEVC above HW_CLIP_RATE_MAX; the other encoders are always asked for the rate. */
static bool by_quality(const hw_clip_spec_t *s) {
  return s->realistic && s->bpp > HW_CLIP_RATE_MAX &&
         (s->codec == HW_CODEC_H264 || s->codec == HW_CODEC_HEVC);
}

int hw_clip_grain(const hw_clip_spec_t *s) {
  if (!s->realistic) return 0;
  if (!by_quality(s)) return HW_REALISTIC_GRAIN;
  /* x264 ultrafast at CRF 23 made 0.55 bit per pixel of 1080p30 from amplitude 8, 1.0 from 10
   * and 1.5 from 12: a step of 2.5 levels per bit per pixel asked above the reference */
  double g = HW_REALISTIC_GRAIN + 2.5 * (s->bpp - 0.1);
  return (int)LP_MIN(HW_CLIP_GRAIN_MAX, lround(g));
}

int hw_clip_make(const hw_clip_spec_t *spec, hw_clip_t *out) {
  memset(out, 0, sizeof(*out));
  const AVCodec *enc = NULL;
  for (int i = 0; i < 2 && !enc; i++)
    if (clip_encoders[spec->codec][i])
      enc = avcodec_find_encoder_by_name(clip_encoders[spec->codec][i]);
  if (!enc) return LP_EUNSUPP;
  AVCodecContext *c = avcodec_alloc_context3(enc);
  AVFrame *f = av_frame_alloc();
  AVDictionary *o = NULL;
  int ret = c && f ? 0 : AVERROR(ENOMEM), grain = hw_clip_grain(spec);
  if (ret == 0) {
    c->width = spec->w;
    c->height = spec->h;
    c->pix_fmt = spec->fmt;
    c->time_base = (AVRational){1, 30};
    c->framerate = (AVRational){30, 1};
    c->gop_size = LP_MIN(spec->frames, 60);
    c->max_b_frames = 0;
    c->thread_count = spec->threads;
    double bpp = spec->bpp > 0 ? spec->bpp : 0.1;
    c->bit_rate = LP_MAX(400000, (int64_t)((double)spec->w * spec->h * 30 * bpp));
    av_dict_set(&o, "preset", spec->codec == HW_CODEC_AV1 ? "12" : "ultrafast", 0);
    if (by_quality(spec)) {
      c->bit_rate = 0;
      av_dict_set(&o, "crf", HW_CLIP_CRF, 0);
    }
    if (spec->realistic) av_dict_set(&o, "x264-params", "cabac=1:deblock=1", 0);
    av_dict_set(&o, "x265-params", "log-level=0", 0);
    av_dict_set(&o, "deadline", "realtime", 0);
    av_dict_set(&o, "cpu-used", "8", 0);
    av_dict_set(&o, "usage", "realtime", 0);
    ret = hw_codec_open(c, enc, &o);
  }
  for (int k = 0; ret >= 0 && k < spec->frames; k++) {
    av_frame_unref(f);
    f->format = spec->fmt;
    f->width = spec->w;
    f->height = spec->h;
    if ((ret = av_frame_get_buffer(f, 0)) < 0) break;
    hw_fill_frame(f, k, grain);
    f->pts = k;
    if ((ret = avcodec_send_frame(c, f)) >= 0) ret = hw_enc_drain(c, out);
  }
  if (ret >= 0 && (ret = avcodec_send_frame(c, NULL)) >= 0) ret = hw_enc_drain(c, out);
  if (ret >= 0) {
    out->par = avcodec_parameters_alloc();
    if (!out->par || avcodec_parameters_from_context(out->par, c) < 0) ret = AVERROR(ENOMEM);
    out->tb = c->time_base;
  }
  av_dict_free(&o);
  av_frame_free(&f);
  avcodec_free_context(&c);
  if (ret < 0) {
    hw_clip_free(out);
    return ret == AVERROR(ENOMEM) ? LP_ENOMEM : LP_EUNSUPP;
  }
  return 0;
}

/* The clip's packets in an MPEG-TS muxed into memory. */
static int clip_mux(const hw_clip_t *c, uint8_t **out, size_t *len) {
  AVFormatContext *oc = NULL;
  AVPacket *p = av_packet_alloc();
  uint8_t *buf = NULL;
  int ret = p ? avformat_alloc_output_context2(&oc, NULL, "mpegts", NULL) : AVERROR(ENOMEM);
  AVStream *st = ret >= 0 ? avformat_new_stream(oc, NULL) : NULL;
  if (ret >= 0 && !st) ret = AVERROR(ENOMEM);
  if (ret >= 0 && (ret = avcodec_parameters_copy(st->codecpar, c->par)) >= 0) {
    st->time_base = c->tb;
    ret = avio_open_dyn_buf(&oc->pb);
  }
  if (ret >= 0) ret = avformat_write_header(oc, NULL);
  for (int i = 0; ret >= 0 && i < c->n; i++) {
    if ((ret = av_packet_ref(p, c->pkts[i])) < 0) break;
    p->stream_index = 0;
    av_packet_rescale_ts(p, c->tb, st->time_base);
    ret = av_interleaved_write_frame(oc, p); /* takes the reference */
  }
  if (ret >= 0) ret = av_write_trailer(oc);
  if (oc && oc->pb) {
    int n = avio_close_dyn_buf(oc->pb, &buf);
    oc->pb = NULL;
    if (ret >= 0 && (n <= 0 || !(*out = malloc((size_t)n)))) ret = AVERROR(ENOMEM);
    if (ret >= 0) {
      memcpy(*out, buf, (size_t)n);
      *len = (size_t)n;
    }
    av_free(buf);
  }
  avformat_free_context(oc);
  av_packet_free(&p);
  return ret;
}

int hw_clip_segment(hw_codec_t codec, int w, int h, int frames, double bpp, uint8_t **out,
                    size_t *len, double *bpp_made) {
  *out = NULL;
  *len = 0;
  if ((unsigned)codec >= HW_CODECS || w <= 0 || h <= 0 || frames <= 0) return LP_EINVAL;
  hw_clip_spec_t spec = {codec, AV_PIX_FMT_YUV420P, w, h, frames, 0, true, bpp};
  hw_clip_t clip;
  int rc = hw_clip_make(&spec, &clip);
  if (rc) return rc;
  if (bpp_made) *bpp_made = hw_clip_bpp(&clip);
  int ret = clip_mux(&clip, out, len);
  hw_clip_free(&clip);
  if (ret < 0) {
    free(*out);
    *out = NULL;
    *len = 0;
    return ret == AVERROR(ENOMEM) ? LP_ENOMEM : LP_EMEDIA;
  }
  return 0;
}

/* ---- decode ---------------------------------------------------------------------------------- */

int hw_clip_decode(const hw_backend_t *be, AVBufferRef *device, const hw_clip_t *clip, int threads,
                   int packets, hw_frame_fn fn, void *ud, char *why, size_t wlen) {
  char e[AV_ERROR_MAX_STRING_SIZE];
  const AVCodec *codec = NULL;
  AVCodecContext *c = avcodec_alloc_context3(NULL);
  AVFrame *f = av_frame_alloc();
  int ret = c && f ? avcodec_parameters_to_context(c, clip->par) : AVERROR(ENOMEM);
  if (ret >= 0) {
    c->pkt_timebase = clip->tb;
    c->thread_count = threads;
    if (be->decoder_setup(device, clip->par, &codec, c) < 0) {
      snprintf(why, wlen, "no decoder");
      ret = AVERROR_DECODER_NOT_FOUND;
    } else if ((ret = hw_codec_open(c, codec, NULL)) < 0) {
      snprintf(why, wlen, "decoder open: %s", hw_averr(ret, e, sizeof(e)));
    }
  }
  if (packets <= 0 || clip->n == 0) packets = clip->n;
  for (int i = 0; ret >= 0 && i <= packets; i++) {
    ret = avcodec_send_packet(c, i < packets ? clip->pkts[i % clip->n] : NULL);
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

/* ---- scale and encode ------------------------------------------------------------------------ */

static int pipe_graph(hw_pipe_t *t, const AVFrame *f) {
  char chain[512], args[256];
  int ret = t->host && t->be->scale_filter_host
                ? t->be->scale_filter_host(f->format, t->out_w, t->out_h, chain, sizeof(chain))
                : t->be->scale_filter(f->format, t->out_w, t->out_h, chain, sizeof(chain));
  if (ret < 0) {
    snprintf(t->why, t->wlen, "no scaler");
    return ret;
  }
  snprintf(args, sizeof(args), "video_size=%dx%d:pix_fmt=%d:time_base=1/30:pixel_aspect=1/1",
           f->width, f->height, f->format);
  /* device frames: the scaler finds the device through the source's frames context */
  ret = hw_filter_graph(args, f->hw_frames_ctx, chain, &t->graph, &t->src, &t->sink);
  if (ret < 0) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    snprintf(t->why, t->wlen, "scaler '%s': %s", chain, hw_averr(ret, e, sizeof(e)));
  }
  return ret;
}

int hw_pipe_encode(hw_pipe_t *t, AVFrame *f) {
  if (!t->enc) {
    hw_enc_params_t p = t->ep;
    p.width = f->width;
    p.height = f->height;
    if (t->sink) p.time_base = av_buffersink_get_time_base(t->sink);
    AVBufferRef *frames = t->sink ? av_buffersink_get_hw_frames_ctx(t->sink) : NULL;
    int ret = t->enc_be->encoder_open(t->device, &p, frames, &t->enc);
    if (ret < 0) {
      snprintf(t->why, t->wlen, "encoder open: %s", lp_strerror(ret));
      t->open_err = ret;
      return ret;
    }
  }
  int ret = avcodec_send_frame(t->enc, f);
  if (ret >= 0) ret = hw_enc_drain(t->enc, t->keep);
  if (ret > 0) t->outputs += ret;
  if (ret < 0 && !t->why[0]) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    snprintf(t->why, t->wlen, "encode: %s", hw_averr(ret, e, sizeof(e)));
  }
  return ret < 0 ? ret : 0;
}

static int pipe_pull(hw_pipe_t *t) {
  if (!t->ff && !(t->ff = av_frame_alloc())) return AVERROR(ENOMEM);
  for (;;) {
    int ret = av_buffersink_get_frame(t->sink, t->ff);
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
    if (ret < 0) return ret;
    if (t->enc_be) {
      ret = hw_pipe_encode(t, t->ff);
    } else {
      t->outputs++;
    }
    av_frame_unref(t->ff);
    if (ret < 0) return ret;
  }
}

int hw_pipe_frame(void *ud, AVFrame *f) {
  hw_pipe_t *t = ud;
  int ret;
  if (!t->graph && (ret = pipe_graph(t, f)) < 0) return ret;
  f->pict_type = AV_PICTURE_TYPE_NONE;
  if ((ret = av_buffersrc_add_frame_flags(t->src, f, AV_BUFFERSRC_FLAG_KEEP_REF)) < 0) return ret;
  return pipe_pull(t);
}

int hw_pipe_finish(hw_pipe_t *t) {
  int ret = 0;
  if (t->graph && (ret = av_buffersrc_add_frame(t->src, NULL)) >= 0) ret = pipe_pull(t);
  if (ret >= 0 && t->enc && (ret = avcodec_send_frame(t->enc, NULL)) >= 0) {
    ret = hw_enc_drain(t->enc, t->keep);
    if (ret > 0) t->outputs += ret;
  }
  return ret < 0 ? ret : 0;
}

void hw_pipe_free(hw_pipe_t *t) {
  hw_enc_close(&t->enc);
  avfilter_graph_free(&t->graph);
  t->src = t->sink = NULL;
  av_frame_free(&t->ff);
}
