/* The transcode engine: one warm session per stream, one segment per call.
 *
 * A segment is demuxed whole from memory first (segments are a few MB), so the engine knows
 * before decoding whether it has video frames, keyframes and audio. Video is decoded once and
 * fanned out to every rendition's own scale -> fps graph and encoder; encoded packets are kept
 * and muxed at the end together with the copied audio, which lets a rendition's stream
 * parameters come from its encoder and keeps audio and video interleaved by DTS.
 *
 * Each rendition runs on its own thread of the session (scale, fps, encode, mux), fed frame
 * references by the decoding thread through a short queue: renditions encode in parallel, and
 * at a segment's end all encoders drain at once instead of one after another.
 *
 * A segment is submitted, and completes later: the call returns once its input is decoded, and
 * the last rendition thread to finish it hands the result to the caller's callback. On the CPU
 * backend a session keeps two sets of rendition threads, so that the next segment, when the
 * caller already has it, decodes and starts encoding while this one's encoders drain (the
 * drain of an x264 encoder's look-ahead and frame threads runs on fewer cores than the middle
 * of a segment). Results come back in submission order. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>

#include "media_int.h"

#define TB_90K ((AVRational){1, 90000})
#define RUNAWAY_FACTOR 25
/* Bounds of the packets kept from the last GOP for decoding a GOP continuation. */
#define GOP_CACHE_MAX_PKTS 1200
#define GOP_CACHE_MAX_BYTES (64u << 20)
/* A segment continues the previous one when its first packet starts within this gap. */
#define CONTINUATION_GAP_US 1000000

typedef struct pktlist {
  AVPacket **p;
  size_t n, cap;
  size_t bytes;
} pktlist_t;

static int pl_push(pktlist_t *l, AVPacket *pkt) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    AVPacket **p = realloc(l->p, cap * sizeof(*p));
    if (!p) return LP_ENOMEM;
    l->p = p;
    l->cap = cap;
  }
  l->p[l->n++] = pkt;
  l->bytes += (size_t)pkt->size;
  return 0;
}

static void pl_clear(pktlist_t *l) {
  for (size_t i = 0; i < l->n; i++) av_packet_free(&l->p[i]);
  l->n = 0;
  l->bytes = 0;
}

static void pl_free(pktlist_t *l) {
  pl_clear(l);
  free(l->p);
  l->p = NULL;
  l->cap = 0;
}

struct seg;
struct out;

/* A rendition's thread, kept for the session's life. */
#define RW_QUEUE 4
typedef struct rw_item {
  AVFrame *f; /* NULL: end of segment */
  int64_t dur, decoded;
} rw_item_t;
typedef struct rworker {
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv_in, cv_out;
  rw_item_t q[RW_QUEUE];
  int head, n;
  bool quit, started;
  struct seg *g;
  struct out *o;
} rworker_t;

/* An encoder kept open across segments (backends whose policy is HW_EOS_FLUSH), in sessions that
 * take one segment at a time: with two in flight the next segment's encoder would be warm or
 * fresh depending on whether the last one had drained yet. */
typedef struct warm_enc {
  AVCodecContext *enc;
  const hw_backend_t *be; /* whose encoder it is */
  media_profile_t prof;
  AVCodecParameters *par;
} warm_enc_t;

struct media_session {
  media_session_opts_t opts;
  char preset[32];
  const hw_backend_t *be;
  AVBufferRef *device;
  AVCodecContext *vdec;
  enum AVCodecID vdec_codec;
  /* The decoder is the backend's and is kept across segments with sentinels: the last
   * keyframe packet seen, whose copies push a segment's last frames out. */
  bool vdec_sentinels;
  AVPacket *sentinel;
  uint8_t *vdec_extra;
  size_t vdec_extra_len;
  /* Packets since the last keyframe of the previous segment, in 90 kHz ticks. */
  pktlist_t gop;
  int64_t gop_last_dts, gop_last_dur;
  enum AVCodecID gop_codec;
  warm_enc_t warm[MEDIA_MAX_OUTPUTS];
  /* Two sets of rendition threads: a segment takes the set the segment still in flight (if
   * any) does not use. */
  rworker_t rw[2][MEDIA_MAX_OUTPUTS];
  /* Segments submitted and not yet handed back, oldest first (under mu); at most depth. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct seg *fl[2];
  int nfl, depth;
  /* the two segments' contexts, made with the session: slot k runs on rendition set k */
  struct seg *slot;
  atomic_llong segments;
  atomic_bool broken; /* a segment failed in a way that broke the codec state */
  /* A device backend's routing table: entry 0 the CPU, entry 1 this session's device (copied
   * from the node's table, or made from the backend's limits); NULL on the CPU backend. */
  hw_table_t *route;
  hw_fallback_log_t fb; /* CPU fallbacks already logged */
};

/* Per rendition state for one segment. */
typedef struct out {
  const media_profile_t *prof;
  int idx;
  /* The session's backend, or the CPU's for a rendition the device cannot encode (its codec,
   * or a size outside its limits): that rendition is scaled into host memory and encoded on
   * the CPU from the device's frames. */
  const hw_backend_t *enc_be;
  hw_limits_t lim; /* enc_be's limits for the codec */
  AVFilterGraph *graph;
  AVFilterContext *src, *sink;
  int g_w, g_h, g_fmt;
  int64_t g_last_pts, g_last_dur;
  AVCodecContext *enc;
  bool enc_warm; /* enc belongs to the session's warm slot */
  int enc_w, enc_h;
  AVCodecParameters *par; /* stream parameters for the muxer (first encoder of the segment) */
  pktlist_t pkts;         /* encoded packets, timestamps in 90 kHz */
  int64_t frames, pixels, keyframes;
  bool forced_first;
  int64_t next_kf; /* passthrough GOP: next forced keyframe, encoder ticks */
  int64_t gop_ticks;
  int64_t last_out; /* last frame out of the graph, 90 kHz */
  bool have_out;
  int64_t decoded_seen; /* source frames decoded when the current frame was */
  AVFrame *ff;          /* scratch frame for the graph's output */
  media_rendition_t *res;
} out_t;

/* Per segment context. */
typedef struct seg {
  media_session_t *s;
  media_result_t *res;
  AVFormatContext *ic;
  AVIOContext *pb; /* ours: avformat_open_input frees ic on failure but not this */
  int vi, ai;
  AVStream *vst, *ast;
  AVRational vtb;
  pktlist_t vpk, apk;
  /* the segment's audio encoded once to AAC for the renditions that ask for it */
  pktlist_t aac;
  AVCodecParameters *aac_par;
  AVRational aac_tb;
  out_t *outs;
  size_t nout;
  double in_fps;    /* nominal source rate (codec timing, else container) */
  int64_t def_dur;  /* default frame duration in vtb */
  int64_t last_pts; /* last decoded pts after repair */
  bool have_last;
  int64_t prime_max_pts; /* frames up to this pts come from the primed GOP: discard */
  bool priming;
  int64_t decoded;
  /* packets the decoder took and frames it gave back this segment, sentinels left out */
  int64_t dec_in, dec_out;
  /* frame_ts's history: the last pts and dts seen, and how often each went backwards */
  int64_t ts_last_pts, ts_last_dts;
  int64_t ts_back_pts, ts_back_dts;
  AVFrame *frame;
  pthread_mutex_t err_mu; /* renditions fail from their own threads */
  atomic_int abort;
  /* Submission: the rendition thread set, the caller's copy of the profiles, its callback. */
  int set;
  media_profile_t *profs;
  media_done_fn done;
  void *done_arg;
  uint64_t t0;
  int ret;            /* the decoding side's outcome */
  bool queued;        /* rendition threads hold its frames: the last of them completes it */
  atomic_int pending; /* rendition threads yet to finish it */
  bool finished;      /* completed, waiting for an older segment to be handed back (under mu) */
} seg_t;

/* ---- errors ---------------------------------------------------------------------------------- */

static int seg_fail(seg_t *g, int ret, media_err_class_t cls, const char *text, int rendition) {
  pthread_mutex_lock(&g->err_mu);
  if (!g->res->error[0]) {
    snprintf(g->res->error, sizeof(g->res->error), "%s", text);
    g->res->error_class = cls;
    g->res->error_rendition = rendition;
  }
  pthread_mutex_unlock(&g->err_mu);
  atomic_store(&g->abort, 1);
  return ret;
}

static media_err_class_t classify(seg_t *g, int averr, hw_stage_t stage, int rendition) {
  const hw_backend_t *be = g->s->be;
  if (stage != HW_STAGE_DECODE && rendition >= 0 && (size_t)rendition < g->nout)
    be = g->outs[rendition].enc_be;
  switch (be->classify_error(averr, stage)) {
  case HW_ERR_DEVICE: return MEDIA_ERR_DEVICE;
  case HW_ERR_SESSION: return MEDIA_ERR_SESSION;
  default: return MEDIA_ERR_INPUT;
  }
}

static int seg_fail_av(seg_t *g, int averr, hw_stage_t stage, int rendition) {
  char e[AV_ERROR_MAX_STRING_SIZE] = "Invalid argument";
  if (averr < 0) av_strerror(averr, e, sizeof(e));
  if (averr == AVERROR(ENOMEM))
    return seg_fail(g, LP_ENOMEM, MEDIA_ERR_SESSION, "Cannot allocate memory", rendition);
  media_err_class_t cls = classify(g, averr, stage, rendition);
  int ret = cls == MEDIA_ERR_DEVICE ? LP_EDEVICE : cls == MEDIA_ERR_INPUT ? LP_EMEDIA : LP_EIO;
  return seg_fail(g, ret, cls, e, rendition);
}

/* ---- session --------------------------------------------------------------------------------- */

/* The session's routing table: the CPU and its device, from the node's table when it has one,
 * else from what the backends' limits allow. */
static hw_table_t *route_new(const hw_backend_t *be, const media_session_opts_t *o) {
  hw_table_t *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->n = 2;
  const hw_table_t *nt = o->table;
  if (nt && o->table_dev > 0 && o->table_dev < nt->n && nt->dev[o->table_dev].be == be) {
    t->dev[0] = nt->dev[HW_TABLE_CPU];
    t->dev[1] = nt->dev[o->table_dev];
    /* quarantine is the node's business: it moves the sessions of a failed device */
    t->dev[1].state = HW_DEV_OK;
    return t;
  }
  const hw_backend_t *const bes[2] = {&hw_backend_sw, be};
  for (int i = 0; i < 2; i++) {
    hw_device_t *d = &t->dev[i];
    d->be = bes[i];
    d->index = i ? o->device : -1;
    if (i)
      snprintf(d->name, sizeof(d->name), "%s:%d", be->name, o->device);
    else
      snprintf(d->name, sizeof(d->name), "cpu");
    for (int c = 0; c < HW_CODECS; c++) {
      d->dec |= HW_CODEC_BIT(c); /* the decoder's own setup says what it takes */
      if (bes[i]->limits(hw_codec_avid((hw_codec_t)c), &d->limits[c]) == 0)
        d->enc |= HW_CODEC_BIT(c);
    }
    d->h264_fmts = HW_H264_444_8 | HW_H264_422_8 | HW_H264_444_10 | HW_H264_422_10 | HW_H264_420_10;
  }
  return t;
}

media_session_t *media_session_new(const media_session_opts_t *opts) {
  hw_log_init();
  media_session_opts_t def = MEDIA_SESSION_OPTS_INIT;
  if (!opts) opts = &def;
  const hw_backend_t *be = opts->backend_impl ? opts->backend_impl : hw_backend_find(opts->backend);
  if (!be) {
    LOGE_C(&opts->log, "media: unknown backend '%s'", opts->backend);
    return NULL;
  }
  if (opts->audio != MEDIA_AUDIO_COPY && opts->audio != MEDIA_AUDIO_DROP) {
    LOGE_C(&opts->log, "media: unsupported audio mode %d", (int)opts->audio);
    return NULL;
  }
  media_session_t *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->opts = *opts;
  if (opts->preset) snprintf(s->preset, sizeof(s->preset), "%s", opts->preset);
  s->opts.preset = opts->preset ? s->preset : NULL;
  if (s->opts.max_outputs <= 0 || s->opts.max_outputs > MEDIA_MAX_OUTPUTS)
    s->opts.max_outputs = MEDIA_MAX_OUTPUTS;
  if (s->opts.max_duration_ms <= 0) s->opts.max_duration_ms = 300000;
  s->be = be;
  s->opts.table = NULL;
  if (be != &hw_backend_sw && !(s->route = route_new(be, opts))) {
    free(s);
    return NULL;
  }
  int ret = be->device_open(opts->device, &s->device);
  if (ret < 0) {
    LOGE_C(&opts->log, "media: %s device %d: %s", be->name, opts->device, lp_strerror(ret));
    free(s->route);
    free(s);
    return NULL;
  }
  if (!(s->slot = calloc(2, sizeof(*s->slot)))) {
    av_buffer_unref(&s->device);
    free(s->route);
    free(s);
    return NULL;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  /* A device's frames come from a fixed pool and its encoders may be kept warm: its segments
   * run one at a time. */
  s->depth = be == &hw_backend_sw ? 2 : 1;
  atomic_init(&s->segments, 0);
  atomic_init(&s->broken, false);
  return s;
}

static void warm_clear(warm_enc_t *w) {
  hw_encoder_free(&w->enc);
  avcodec_parameters_free(&w->par);
}

static void rw_stop(rworker_t *w);

/* Waits until no segment is in flight (their done callbacks have returned). */
static void session_drain(media_session_t *s) {
  pthread_mutex_lock(&s->mu);
  while (s->nfl) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
}

void media_session_free(media_session_t *s) {
  if (!s) return;
  session_drain(s);
  avcodec_free_context(&s->vdec);
  av_packet_free(&s->sentinel);
  free(s->vdec_extra);
  pl_free(&s->gop);
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < MEDIA_MAX_OUTPUTS; i++) rw_stop(&s->rw[k][i]);
  for (int i = 0; i < MEDIA_MAX_OUTPUTS; i++) warm_clear(&s->warm[i]);
  av_buffer_unref(&s->device);
  free(s->route);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s->slot);
  free(s);
}

int64_t media_session_segments(const media_session_t *s) { return atomic_load(&s->segments); }

int media_session_depth(const media_session_t *s) { return s->depth; }

bool media_session_broken(const media_session_t *s) { return atomic_load(&s->broken); }

void media_result_free(media_result_t *r) {
  if (!r) return;
  if (r->renditions)
    for (size_t i = 0; i < r->n; i++) free(r->renditions[i].data);
  free(r->renditions);
  r->renditions = NULL;
  r->n = 0;
}

/* ---- demux ------------------------------------------------------------------------------------
 */

static int seg_demux(seg_t *g, const uint8_t *in, size_t len, media_memin_t *mi) {
  g->ic = avformat_alloc_context();
  if (!g->ic) return LP_ENOMEM;
  g->ic->pb = g->pb = media_memin_open(mi, in, len);
  if (!g->pb) return LP_ENOMEM;
  g->ic->flags |= AVFMT_FLAG_CUSTOM_IO;
  int ret = avformat_open_input(&g->ic, NULL, NULL, NULL);
  if (ret < 0) {
    /* avformat_open_input frees the context on failure but leaves our AVIO alone. */
    return seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "TranscoderInvalidVideo", -1);
  }
  if ((ret = avformat_find_stream_info(g->ic, NULL)) < 0)
    return seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "TranscoderInvalidVideo", -1);
  g->vi = av_find_best_stream(g->ic, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
  g->ai = av_find_best_stream(g->ic, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
  if (g->vi < 0) g->vi = -1;
  if (g->ai < 0) g->ai = -1;
  for (unsigned i = 0; i < g->ic->nb_streams; i++)
    if ((int)i != g->vi && (int)i != g->ai) g->ic->streams[i]->discard = AVDISCARD_ALL;
  g->vst = g->vi >= 0 ? g->ic->streams[g->vi] : NULL;
  g->ast = g->ai >= 0 ? g->ic->streams[g->ai] : NULL;
  if (g->vst) g->vtb = g->vst->time_base;

  int64_t t0 = INT64_MAX, t1 = INT64_MIN;
  for (;;) {
    AVPacket *p = av_packet_alloc();
    if (!p) return LP_ENOMEM;
    ret = av_read_frame(g->ic, p);
    if (ret < 0) {
      av_packet_free(&p);
      break;
    }
    bool video = p->stream_index == g->vi;
    if (!video && p->stream_index != g->ai) {
      av_packet_free(&p);
      continue;
    }
    AVRational tb = g->ic->streams[p->stream_index]->time_base;
    int64_t ts = p->dts != AV_NOPTS_VALUE ? p->dts : p->pts;
    if (ts != AV_NOPTS_VALUE) {
      int64_t us = av_rescale_q(ts, tb, AV_TIME_BASE_Q);
      int64_t end = us + (p->duration > 0 ? av_rescale_q(p->duration, tb, AV_TIME_BASE_Q) : 0);
      t0 = LP_MIN(t0, us);
      t1 = LP_MAX(t1, end);
    }
    if ((ret = pl_push(video ? &g->vpk : &g->apk, p)) < 0) {
      av_packet_free(&p);
      return ret;
    }
  }
  g->res->has_video = g->vpk.n > 0;
  g->res->has_audio = g->apk.n > 0;
  g->res->duration_us = t1 > t0 ? t1 - t0 : 0;
  if (g->res->duration_us > g->s->opts.max_duration_ms * 1000)
    return seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "TranscoderInvalidDuration", -1);
  return 0;
}

/* ---- decode -----------------------------------------------------------------------------------
 */

/* The HW_H264_* bit of an H.264 stream's pixel format; 0 for 8-bit 4:2:0 (and other codecs). */
static unsigned h264_fmt(const AVCodecParameters *par) {
  if (par->codec_id != AV_CODEC_ID_H264) return 0;
  switch (par->format) {
  case AV_PIX_FMT_YUV444P:
  case AV_PIX_FMT_YUVJ444P: return HW_H264_444_8;
  case AV_PIX_FMT_YUV422P:
  case AV_PIX_FMT_YUVJ422P: return HW_H264_422_8;
  case AV_PIX_FMT_YUV444P10: return HW_H264_444_10;
  case AV_PIX_FMT_YUV422P10: return HW_H264_422_10;
  case AV_PIX_FMT_YUV420P10: return HW_H264_420_10;
  default: return 0;
  }
}

static int decoder_open(seg_t *g) {
  media_session_t *s = g->s;
  const AVCodecParameters *par = g->vst->codecpar;
  /* Warm while the bitstream format holds. Annex B streams (MPEG-TS) carry their parameter
   * sets in band, so any of them continues; length-prefixed ones (MP4's avcC/hvcC, first byte
   * 1) need the decoder opened with exactly their extradata. */
  bool nal_len = par->extradata_size > 0 && par->extradata[0] == 1;
  bool same = s->vdec && s->vdec_codec == par->codec_id &&
              nal_len == (s->vdec_extra_len > 0 && s->vdec_extra[0] == 1);
  if (same && nal_len)
    same = s->vdec_extra_len == (size_t)par->extradata_size &&
           !memcmp(s->vdec_extra, par->extradata, s->vdec_extra_len);
  if (same) return 0;
  avcodec_free_context(&s->vdec);
  av_packet_free(&s->sentinel);
  free(s->vdec_extra);
  s->vdec_extra = NULL;
  s->vdec_extra_len = 0;
  if (par->extradata_size > 0) {
    if (!(s->vdec_extra = malloc((size_t)par->extradata_size))) return LP_ENOMEM;
    memcpy(s->vdec_extra, par->extradata, (size_t)par->extradata_size);
    s->vdec_extra_len = (size_t)par->extradata_size;
  }
  pl_clear(&s->gop);
  const AVCodec *codec = NULL;
  AVCodecContext *c = avcodec_alloc_context3(NULL);
  if (!c) return LP_ENOMEM;
  int ret = avcodec_parameters_to_context(c, par);
  /* What the device did not pass (a codec, an H.264 format) is decoded on the CPU, and so is
   * an input its decoder refuses; the device still scales and encodes. */
  bool cpu = false;
  hw_route_why_t why = HW_WHY_NONE;
  hw_codec_t hc = HW_CODEC_H264;
  if (s->route && ret >= 0) {
    if (hw_codec_from_avid(par->codec_id, &hc) < 0) {
      cpu = true;
      why = HW_WHY_CODEC;
    } else {
      cpu = hw_route_decode(s->route, 1, hc, h264_fmt(par), 0, &why) != HW_ROUTE_DEVICE;
    }
  }
  if (ret >= 0 && !cpu && s->be->decoder_setup(s->device, par, &codec, c) < 0) {
    ret = AVERROR_DECODER_NOT_FOUND;
    if (s->route) {
      cpu = true;
      why = HW_WHY_CODEC;
      avcodec_free_context(&c);
      if (!(c = avcodec_alloc_context3(NULL))) return LP_ENOMEM;
      ret = avcodec_parameters_to_context(c, par);
    }
  }
  if (ret >= 0 && cpu) {
    if (hw_backend_sw.decoder_setup(NULL, par, &codec, c) < 0)
      ret = AVERROR_DECODER_NOT_FOUND;
    else
      hw_fallback_note(&s->fb, &s->opts.log, &s->route->dev[1], -1, hc, 0, 0, why);
  }
  bool sentinels = !cpu && s->be->decoder_sentinels;
  if (ret >= 0) {
    /* The CPU decodes with a thread per core; a device decoder gets one thread, as frame
     * threads only queue work in front of it, and so does one kept with sentinels (each
     * frame thread would hold back one more frame at a segment's end). */
    c->thread_count = c->hw_device_ctx || sentinels ? 1 : 0;
    ret = hw_codec_open(c, codec, NULL);
  }
  if (ret < 0) {
    avcodec_free_context(&c);
    if (ret == AVERROR_DECODER_NOT_FOUND)
      return seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "Unsupported input codec", -1);
    return seg_fail_av(g, ret, HW_STAGE_DECODE, -1);
  }
  s->vdec = c;
  s->vdec_codec = par->codec_id;
  s->vdec_sentinels = sentinels;
  return 0;
}

/* The source's nominal frame rate: the codec's own timing (SPS) first, since container rates
 * are guessed from timestamps that may be broken, then the container's. */
static double nominal_fps(seg_t *g, bool codec) {
  AVRational r = codec ? g->s->vdec->framerate : (AVRational){0, 1};
  if (r.num <= 0 || r.den <= 0) r = g->vst->avg_frame_rate;
  if (r.num <= 0 || r.den <= 0) r = g->vst->r_frame_rate;
  if (r.num <= 0 || r.den <= 0) return 0;
  double f = av_q2d(r);
  return f > 0 && f <= 1000 ? f : 0;
}

/* The decoder knows the codec's timing only once it has parsed this segment's headers, so the
 * rate is set from the container first and refined at the first frame. */
static void set_rate(seg_t *g, bool codec) {
  g->in_fps = nominal_fps(g, codec);
  g->res->in_fps = g->in_fps;
  g->def_dur =
      LP_MAX(1, av_rescale_q(1, av_d2q(1.0 / (g->in_fps > 0 ? g->in_fps : 30), 1000000), g->vtb));
}

/* ---- per rendition: filter -> encoder -> packets -----------------------------------------------
 */

/* Where rendition o encodes this segment, decided when it starts: on the session's device when
 * the device passed the codec and the fitted size is within its encoder's limits, else on the
 * CPU from the device's frames (logged once per session), else nowhere. w x h is the source
 * size, 0 x 0 when the container does not say (the codec alone decides then). */
static int out_route(seg_t *g, out_t *o, int w, int h) {
  media_session_t *s = g->s;
  enum AVCodecID id = media_codec_avid(o->prof->encoder);
  o->enc_be = s->be;
  if (!s->route) return s->be->limits(id, &o->lim) < 0 ? LP_EUNSUPP : 0;
  hw_codec_t c = (hw_codec_t)o->prof->encoder;
  const hw_device_t *d = &s->route->dev[1];
  hw_limits_t cpu;
  int cw = 0, ch = 0, dw = 0, dh = 0;
  bool cpu_ok = hw_backend_sw.limits(id, &cpu) == 0 &&
                (w <= 0 || media_fit_size(o->prof, &cpu, w, h, &cw, &ch) == 0);
  hw_route_why_t why = HW_WHY_CODEC;
  if (d->enc & HW_CODEC_BIT(c)) {
    if (w <= 0 || media_fit_size(o->prof, &d->limits[c], w, h, &dw, &dh) == 0) {
      if (w <= 0 || hw_route_encode(s->route, 1, c, dw, dh, 0, 0, &why) == HW_ROUTE_DEVICE) {
        o->lim = d->limits[c];
        return 0;
      }
    } else if (cpu_ok) {
      /* the device's limits leave no size: say which one of them */
      hw_route_encode(s->route, 1, c, cw, ch, 0, 0, &why);
      if (why == HW_WHY_NONE) why = HW_WHY_TOO_LARGE;
    }
  }
  if (!cpu_ok) return LP_EINVAL;
  o->enc_be = &hw_backend_sw;
  o->lim = cpu;
  hw_fallback_note(&s->fb, &s->opts.log, d, o->idx, c, cw ? cw : (int)o->prof->width,
                   ch ? ch : (int)o->prof->height, why);
  return 0;
}

static void out_free_graph(out_t *o) {
  avfilter_graph_free(&o->graph);
  o->src = o->sink = NULL;
}

static int out_build_graph(seg_t *g, out_t *o, const AVFrame *f) {
  out_free_graph(o);
  int w, h;
  if (media_fit_size(o->prof, &o->lim, f->width, f->height, &w, &h) < 0)
    return seg_fail(g, LP_EINVAL, MEDIA_ERR_INPUT, "TranscoderInvalidResolution", o->idx);
  char chain[512], args[256];
  const hw_backend_t *be = g->s->be;
  /* a rendition encoded on the CPU takes the device's frames scaled into host memory */
  int ret = o->enc_be != be && be->scale_filter_host
                ? be->scale_filter_host(f->format, w, h, chain, sizeof(chain))
                : be->scale_filter(f->format, w, h, chain, sizeof(chain));
  if (ret < 0) return seg_fail(g, ret, MEDIA_ERR_INPUT, "Error initializing filtergraph", o->idx);
  if (o->prof->fps) {
    size_t n = strlen(chain);
    snprintf(chain + n, sizeof(chain) - n, ",fps=%u/%u", o->prof->fps,
             o->prof->fps_den ? o->prof->fps_den : 1);
  }
  AVRational sar = f->sample_aspect_ratio.num > 0 ? f->sample_aspect_ratio : (AVRational){1, 1};
  snprintf(args, sizeof(args), "video_size=%dx%d:pix_fmt=%d:time_base=%d/%d:pixel_aspect=%d/%d",
           f->width, f->height, f->format, g->vtb.num, g->vtb.den, sar.num, sar.den);
  ret = hw_filter_graph(args, f->hw_frames_ctx, chain, &o->graph, &o->src, &o->sink);
  if (ret < 0) {
    out_free_graph(o);
    return seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "Error initializing filtergraph", o->idx);
  }
  o->g_w = f->width;
  o->g_h = f->height;
  o->g_fmt = f->format;
  o->g_last_pts = AV_NOPTS_VALUE;
  return 0;
}

static int out_receive_packets(seg_t *g, out_t *o) {
  for (;;) {
    AVPacket *p = av_packet_alloc();
    if (!p) return LP_ENOMEM;
    int ret = avcodec_receive_packet(o->enc, p);
    if (ret < 0) {
      av_packet_free(&p);
      if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
      return seg_fail_av(g, ret, HW_STAGE_ENCODE, o->idx);
    }
    av_packet_rescale_ts(p, o->enc->time_base, TB_90K);
    if (p->flags & AV_PKT_FLAG_KEY) o->keyframes++;
    if ((ret = pl_push(&o->pkts, p)) < 0) {
      av_packet_free(&p);
      return ret;
    }
  }
}

/* Ends the current encoder: every frame it holds comes out. */
static int out_close_encoder(seg_t *g, out_t *o, bool end_of_segment) {
  if (!o->enc) return 0;
  int ret = avcodec_send_frame(o->enc, NULL);
  if (ret < 0 && ret != AVERROR_EOF) return seg_fail_av(g, ret, HW_STAGE_ENCODE, o->idx);
  if ((ret = out_receive_packets(g, o)) < 0) return ret;
  if (o->enc_warm && end_of_segment && o->enc_be->eos_policy(o->enc) == HW_EOS_FLUSH) {
    avcodec_flush_buffers(o->enc);
  } else if (o->enc_warm) {
    warm_clear(&g->s->warm[o->idx]);
  } else {
    hw_encoder_free(&o->enc);
  }
  o->enc = NULL;
  o->enc_warm = false;
  return 0;
}

static int out_open_encoder(seg_t *g, out_t *o, const AVFrame *f) {
  media_session_t *s = g->s;
  const media_profile_t *p = o->prof;
  AVRational tb = av_buffersink_get_time_base(o->sink);
  AVRational fr = p->fps ? (AVRational){(int)p->fps, p->fps_den ? (int)p->fps_den : 1}
                         : av_d2q(g->in_fps > 0 ? g->in_fps : 30, 100000);
  hw_enc_params_t ep = {
      .codec = media_codec_avid(p->encoder),
      .width = f->width,
      .height = f->height,
      .time_base = tb,
      .framerate = fr,
      .bitrate = p->bitrate,
      .quality = (int)p->quality,
      .h264_profile = (int)p->profile,
      .preset = s->opts.preset,
      .threads = s->opts.encoder_threads,
      /* MP4 and Matroska take codec headers out of band (AV1's sequence header included) */
      .global_header = strcmp(media_profile_container(p, NULL, NULL), "mpegts") != 0,
  };
  o->gop_ticks = 0;
  if (p->gop_ms == MEDIA_GOP_INTRA) {
    ep.gop_frames = -1;
  } else if (p->gop_ms > 0 && p->fps) {
    ep.gop_frames = (int)LP_MAX(1, llround(p->gop_ms / 1000.0 * av_q2d(fr)));
    ep.gop_forced = true;
  } else if (p->gop_ms > 0) {
    /* Passthrough rate: keyframes by time, forced here. */
    ep.gop_forced = true;
    o->gop_ticks = LP_MAX(1, av_rescale_q(p->gop_ms, (AVRational){1, 1000}, tb));
  }
  warm_enc_t *w = &s->warm[o->idx];
  if (w->enc &&
      (memcmp(&w->prof, p, sizeof(*p)) != 0 || w->be != o->enc_be || w->enc->width != f->width ||
       w->enc->height != f->height || av_cmp_q(w->enc->time_base, tb) != 0))
    warm_clear(w);
  if (w->enc) {
    o->enc = w->enc;
    o->enc_warm = true;
  } else {
    int ret = o->enc_be->encoder_open(o->enc_be == s->be ? s->device : NULL, &ep, NULL, &o->enc);
    if (ret < 0) {
      if (ret == LP_EUNSUPP)
        return seg_fail(g, LP_EUNSUPP, MEDIA_ERR_INPUT, "Encoder not found", o->idx);
      if (ret == LP_EDEVICE) /* the backend found the device, not the request, at fault */
        return seg_fail(g, ret, MEDIA_ERR_DEVICE, "Encoder failed to open on the device", o->idx);
      return seg_fail(g, ret, ret == LP_ENOMEM ? MEDIA_ERR_SESSION : MEDIA_ERR_INPUT,
                      "Invalid argument", o->idx);
    }
    if (s->depth == 1 && o->enc_be->eos_policy(o->enc) == HW_EOS_FLUSH) {
      w->enc = o->enc;
      w->be = o->enc_be;
      w->prof = *p;
      o->enc_warm = true;
    }
  }
  if (!o->par) {
    o->par = avcodec_parameters_alloc();
    if (!o->par || avcodec_parameters_from_context(o->par, o->enc) < 0) return LP_ENOMEM;
  }
  o->enc_w = f->width;
  o->enc_h = f->height;
  o->forced_first = false;
  return 0;
}

static int out_encode(seg_t *g, out_t *o, AVFrame *f) {
  int ret;
  if (o->enc && (f->width != o->enc_w || f->height != o->enc_h) &&
      (ret = out_close_encoder(g, o, false)) < 0)
    return ret;
  if (!o->enc && (ret = out_open_encoder(g, o, f)) < 0) return ret;
  /* Guard against timestamp anomalies turning the fps filter into a frame factory; upsampling
   * the source's nominal rate is legitimate and raises the limit accordingly. */
  double up = 1;
  if (o->prof->fps && g->in_fps > 0)
    up = LP_MAX(1.0,
                ceil(o->prof->fps / (double)(o->prof->fps_den ? o->prof->fps_den : 1) / g->in_fps));
  if ((double)(o->frames + 1) > RUNAWAY_FACTOR * up * (double)LP_MAX(o->decoded_seen, 1))
    return seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "Encoded frames runaway", o->idx);
  /* The source's frame types mean nothing here: only our keyframe decisions count. */
  f->pict_type = AV_PICTURE_TYPE_NONE;
  f->key_frame = 0;
  if (!o->forced_first) {
    f->pict_type = AV_PICTURE_TYPE_I;
    o->forced_first = true;
    o->next_kf = f->pts + o->gop_ticks;
  } else if (o->gop_ticks > 0 && f->pts >= o->next_kf) {
    f->pict_type = AV_PICTURE_TYPE_I;
    while (o->next_kf <= f->pts) o->next_kf += o->gop_ticks;
  }
  ret = avcodec_send_frame(o->enc, f);
  if (ret < 0) return seg_fail_av(g, ret, HW_STAGE_ENCODE, o->idx);
  o->frames++;
  o->pixels += (int64_t)o->enc_w * o->enc_h;
  return out_receive_packets(g, o);
}

static int out_pull(seg_t *g, out_t *o) {
  for (;;) {
    int ret = av_buffersink_get_frame(o->sink, o->ff);
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
    if (ret < 0) return seg_fail_av(g, ret, HW_STAGE_FILTER, o->idx);
    /* A rebuilt graph (new input size) may emit a frame at the time the old one's EOF
     * already covered; keep output timestamps strictly increasing. */
    int64_t t = av_rescale_q(o->ff->pts, av_buffersink_get_time_base(o->sink), TB_90K);
    if (o->have_out && t <= o->last_out) {
      av_frame_unref(o->ff);
      continue;
    }
    o->have_out = true;
    o->last_out = t;
    ret = out_encode(g, o, o->ff);
    av_frame_unref(o->ff);
    if (ret < 0) return ret;
  }
}

/* Closes the graph at the end of the last frame so the fps filter emits what it holds. */
static int out_flush_graph(seg_t *g, out_t *o) {
  if (!o->graph) return 0;
  int64_t eof = o->g_last_pts == AV_NOPTS_VALUE ? 0 : o->g_last_pts + o->g_last_dur;
  int ret = av_buffersrc_close(o->src, eof, 0);
  if (ret < 0) return seg_fail_av(g, ret, HW_STAGE_FILTER, o->idx);
  ret = out_pull(g, o);
  out_free_graph(o);
  return ret;
}

static int out_push(seg_t *g, out_t *o, AVFrame *f, int64_t dur) {
  int ret;
  if (o->graph && (f->width != o->g_w || f->height != o->g_h || f->format != o->g_fmt) &&
      (ret = out_flush_graph(g, o)) < 0)
    return ret;
  if (!o->graph && (ret = out_build_graph(g, o, f)) < 0) return ret;
  ret = av_buffersrc_add_frame_flags(o->src, f, AV_BUFFERSRC_FLAG_KEEP_REF);
  if (ret < 0) return seg_fail_av(g, ret, HW_STAGE_FILTER, o->idx);
  o->g_last_pts = f->pts;
  o->g_last_dur = dur;
  return out_pull(g, o);
}

/* ---- rendition threads ------------------------------------------------------------------------
 */

static int out_mux(seg_t *g, out_t *o);
static void seg_finish(seg_t *g);

static void rw_process(rworker_t *w, rw_item_t *it) {
  seg_t *g = w->g;
  out_t *o = w->o;
  int ret = 0;
  bool end = !it->f;
  if (it->f) {
    if (!atomic_load(&g->abort)) {
      o->decoded_seen = it->decoded;
      ret = out_push(g, o, it->f, it->dur);
    }
    av_frame_free(&it->f);
  } else if (!atomic_load(&g->abort)) {
    /* End of segment: drain the graph and the encoder, then mux. On abort seg_finish frees
     * what is left. */
    if ((ret = out_flush_graph(g, o)) >= 0 && (ret = out_close_encoder(g, o, true)) >= 0)
      ret = out_mux(g, o);
  }
  /* Failures not already described (allocation) still stop the segment. */
  if (ret < 0) seg_fail(g, ret, MEDIA_ERR_SESSION, lp_strerror(ret), o->idx);
  /* The last rendition done with the segment completes it (and may free it). */
  if (end && atomic_fetch_sub(&g->pending, 1) == 1) seg_finish(g);
}

static void *rw_main(void *arg) {
  rworker_t *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->n && !w->quit) pthread_cond_wait(&w->cv_in, &w->mu);
    if (!w->n && w->quit) break;
    rw_item_t it = w->q[w->head];
    pthread_mutex_unlock(&w->mu);
    rw_process(w, &it);
    pthread_mutex_lock(&w->mu);
    w->head = (w->head + 1) % RW_QUEUE;
    w->n--;
    pthread_cond_broadcast(&w->cv_out);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static int rw_start(rworker_t *w) {
  if (w->started) return 0;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv_in, NULL);
  pthread_cond_init(&w->cv_out, NULL);
  w->head = w->n = 0;
  w->quit = false;
  if (pthread_create(&w->th, NULL, rw_main, w) != 0) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_in);
    pthread_cond_destroy(&w->cv_out);
    return LP_ENOMEM;
  }
  w->started = true;
  return 0;
}

static void rw_stop(rworker_t *w) {
  if (!w->started) return;
  pthread_mutex_lock(&w->mu);
  w->quit = true;
  pthread_cond_broadcast(&w->cv_in);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->th, NULL);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv_in);
  pthread_cond_destroy(&w->cv_out);
  w->started = false;
}

/* Queues an item (blocking while the queue is full); f is a reference the worker frees. */
static void rw_push(rworker_t *w, AVFrame *f, int64_t dur, int64_t decoded) {
  pthread_mutex_lock(&w->mu);
  while (w->n == RW_QUEUE) pthread_cond_wait(&w->cv_out, &w->mu);
  w->q[(w->head + w->n) % RW_QUEUE] = (rw_item_t){f, dur, decoded};
  w->n++;
  pthread_cond_signal(&w->cv_in);
  pthread_mutex_unlock(&w->mu);
}

/* ---- decode loop ------------------------------------------------------------------------------
 */

/* Timestamps of sentinel packets: far below any real one, far from overflowing arithmetic. */
#define SENTINEL_TS (-((int64_t)1 << 50))

/* A frame's timestamp: its pts, unless this segment's pts have gone backwards more often than
 * its dts, then its dts (the best effort FFmpeg makes, with the history of this segment's real
 * frames only: a kept decoder's own history runs on across segments and counts sentinels).
 * A frame that a sentinel pushed out has no dts of its own, as one drained at the end has
 * none. */
static int64_t frame_ts(seg_t *g, const AVFrame *f) {
  int64_t pts = f->pts;
  int64_t dts = f->pkt_dts == SENTINEL_TS ? AV_NOPTS_VALUE : f->pkt_dts;
  if (dts != AV_NOPTS_VALUE) {
    if (dts <= g->ts_last_dts) g->ts_back_dts++;
    g->ts_last_dts = dts;
  } else if (pts != AV_NOPTS_VALUE) {
    g->ts_last_dts = pts;
  }
  if (pts != AV_NOPTS_VALUE) {
    if (pts <= g->ts_last_pts) g->ts_back_pts++;
    g->ts_last_pts = pts;
  } else if (dts != AV_NOPTS_VALUE) {
    g->ts_last_pts = dts;
  }
  if (pts != AV_NOPTS_VALUE && (dts == AV_NOPTS_VALUE || g->ts_back_pts <= g->ts_back_dts))
    return pts;
  return dts;
}

static int handle_frame(seg_t *g, AVFrame *f) {
  int64_t pts = frame_ts(g, f);
  if (g->priming ||
      (g->prime_max_pts != AV_NOPTS_VALUE && pts != AV_NOPTS_VALUE && pts <= g->prime_max_pts))
    return 0; /* a frame of the previous segment, decoded only as a reference */
  if (!g->decoded) set_rate(g, true);
  int64_t dur = f->pkt_duration > 0 ? f->pkt_duration : g->def_dur;
  /* Missing or out of order timestamps: continue from the last frame, strictly increasing. */
  if (pts == AV_NOPTS_VALUE) pts = g->have_last ? g->last_pts + dur : 0;
  if (g->have_last && pts <= g->last_pts) pts = g->last_pts + 1;
  g->last_pts = pts;
  g->have_last = true;
  f->pts = pts;
  g->decoded++;
  g->res->decoded_frames++;
  g->res->decoded_pixels += (int64_t)f->width * f->height;
  if (!g->res->in_width) {
    g->res->in_width = f->width;
    g->res->in_height = f->height;
  }
  for (size_t i = 0; i < g->nout; i++) {
    AVFrame *ref = av_frame_clone(f);
    if (!ref) return seg_fail(g, LP_ENOMEM, MEDIA_ERR_SESSION, "Cannot allocate memory", -1);
    rw_push(&g->s->rw[g->set][i], ref, dur, g->decoded);
  }
  return atomic_load(&g->abort) ? LP_EMEDIA : 0;
}

/* Sentinels a segment's end may take before the decoder is drained and reset instead. */
#define SENTINEL_MAX 8

static int decode_packet(seg_t *g, const AVPacket *p) {
  media_session_t *s = g->s;
  AVCodecContext *d = s->vdec;
  bool sentinel = p && p->pts == SENTINEL_TS;
  int ret = avcodec_send_packet(d, p);
  if (ret < 0 && ret != AVERROR(EAGAIN) && ret != AVERROR_EOF && ret != AVERROR_INVALIDDATA)
    return seg_fail_av(g, ret, HW_STAGE_DECODE, -1);
  if (ret == 0 && p && !sentinel) {
    g->dec_in++;
    /* the newest keyframe, so that a sentinel never carries stale parameter sets (without
     * memory for it there is none, and the segment ends with a drain) */
    if (s->vdec_sentinels && (p->flags & AV_PKT_FLAG_KEY)) {
      if (!s->sentinel) s->sentinel = av_packet_alloc();
      if (s->sentinel) av_packet_unref(s->sentinel);
      if (s->sentinel && av_packet_ref(s->sentinel, p) < 0) av_packet_free(&s->sentinel);
    }
  }
  for (;;) {
    ret = avcodec_receive_frame(d, g->frame);
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
    if (ret == AVERROR_INVALIDDATA) continue;
    if (ret < 0) return seg_fail_av(g, ret, HW_STAGE_DECODE, -1);
    if (g->frame->pts == SENTINEL_TS) {
      av_frame_unref(g->frame); /* a sentinel's own picture, now or from an earlier segment */
      continue;
    }
    g->dec_out++;
    ret = handle_frame(g, g->frame);
    av_frame_unref(g->frame);
    if (ret < 0) return ret;
  }
}

/* Feeds the cached packets of the previous segment's last GOP so that a segment continuing it
 * has its reference frames; their own frames are discarded. */
static int prime_decoder(seg_t *g) {
  media_session_t *s = g->s;
  g->priming = true;
  int64_t maxpts = INT64_MIN;
  for (size_t i = 0; i < s->gop.n; i++) {
    AVPacket *p = av_packet_clone(s->gop.p[i]);
    if (!p) return LP_ENOMEM;
    av_packet_rescale_ts(p, TB_90K, g->vtb);
    if (p->pts != AV_NOPTS_VALUE) maxpts = LP_MAX(maxpts, p->pts);
    int ret = decode_packet(g, p);
    av_packet_free(&p);
    if (ret < 0) return ret;
  }
  g->priming = false;
  if (maxpts != INT64_MIN) g->prime_max_pts = maxpts;
  return 0;
}

static void gop_cache_update(seg_t *g, size_t first_kf, bool has_kf) {
  media_session_t *s = g->s;
  if (has_kf) pl_clear(&s->gop);
  for (size_t i = has_kf ? first_kf : 0; i < g->vpk.n; i++) {
    if (g->vpk.p[i]->flags & AV_PKT_FLAG_KEY) pl_clear(&s->gop);
    AVPacket *c = av_packet_clone(g->vpk.p[i]);
    if (!c || pl_push(&s->gop, c) < 0) {
      av_packet_free(&c);
      pl_clear(&s->gop);
      return;
    }
    av_packet_rescale_ts(c, g->vtb, TB_90K);
    if (s->gop.n > GOP_CACHE_MAX_PKTS || s->gop.bytes > GOP_CACHE_MAX_BYTES) {
      pl_clear(&s->gop); /* too long to replay; a continuation of it will be refused */
      return;
    }
  }
  s->gop_codec = s->vdec_codec;
  const AVPacket *last = g->vpk.n ? g->vpk.p[g->vpk.n - 1] : NULL;
  if (last && last->dts != AV_NOPTS_VALUE) {
    s->gop_last_dts = av_rescale_q(last->dts, g->vtb, TB_90K);
    s->gop_last_dur =
        av_rescale_q(last->duration > 0 ? last->duration : g->def_dur, g->vtb, TB_90K);
  } else {
    pl_clear(&s->gop);
  }
}

static bool is_continuation(seg_t *g) {
  media_session_t *s = g->s;
  if (!s->gop.n || s->gop_codec != g->vst->codecpar->codec_id) return false;
  const AVPacket *p = g->vpk.p[0];
  int64_t ts = p->dts != AV_NOPTS_VALUE ? p->dts : p->pts;
  if (ts == AV_NOPTS_VALUE) return false;
  int64_t t = av_rescale_q(ts, g->vtb, TB_90K);
  int64_t end = s->gop_last_dts + s->gop_last_dur;
  return t > s->gop_last_dts &&
         t - end <= av_rescale_q(CONTINUATION_GAP_US, AV_TIME_BASE_Q, TB_90K);
}

/* Gets the segment's last frames (a 1-frame segment's only one) out of the decoder. A kept
 * decoder is fed sentinels, copies of the last keyframe with SENTINEL_TS, until every packet it
 * took has given its frame; the sentinels' own frames come out later and are dropped. Where
 * that does not settle (a packet that gave no frame, field pairs), and on other backends, it is
 * drained and reset: FFmpeg then sets the decoder up again at the next keyframe (cheap on the
 * CPU, a new device decoder and surface pool on a GPU). */
static int end_decode(seg_t *g) {
  media_session_t *s = g->s;
  AVPacket *p = s->vdec_sentinels && s->sentinel ? av_packet_alloc() : NULL;
  if (p) {
    int n = 0, ret = 0;
    /* a copy that cannot be made (memory) leaves the rest to the drain below */
    while (g->dec_out < g->dec_in && n < SENTINEL_MAX && av_packet_ref(p, s->sentinel) == 0) {
      p->pts = p->dts = SENTINEL_TS;
      ret = decode_packet(g, p);
      av_packet_unref(p);
      n++;
      if (ret < 0) break;
    }
    av_packet_free(&p);
    if (ret < 0) return ret;
    if (g->dec_out >= g->dec_in) {
      g->res->decoder_kept = true;
      return 0;
    }
    LOGV_C(4, &s->opts.log,
           "media: %" PRId64 " of %" PRId64 " packets gave no frame after %d sentinels; "
           "draining the decoder",
           g->dec_in - g->dec_out, g->dec_in, n);
  }
  int ret = decode_packet(g, NULL);
  if (ret < 0) return ret;
  avcodec_flush_buffers(s->vdec);
  return 0;
}

static int seg_video(seg_t *g) {
  media_session_t *s = g->s;
  size_t first_kf = 0;
  bool has_kf = false;
  for (size_t i = 0; i < g->vpk.n; i++)
    if (g->vpk.p[i]->flags & AV_PKT_FLAG_KEY) {
      first_kf = i;
      has_kf = true;
      break;
    }
  int ret = decoder_open(g);
  if (ret < 0) return ret;
  set_rate(g, false);
  s->vdec->pkt_timebase = g->vtb;
  size_t start = first_kf;
  if (!has_kf || first_kf > 0) {
    if (is_continuation(g)) {
      if ((ret = prime_decoder(g)) < 0) return ret;
      start = 0;
    } else if (!has_kf) {
      return seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "No keyframes in input", -1);
    }
    /* else: leading packets that reference a GOP we never saw cannot decode; skip them. */
  }
  for (size_t i = start; i < g->vpk.n; i++)
    if ((ret = decode_packet(g, g->vpk.p[i])) < 0) return ret;
  if ((ret = end_decode(g)) < 0) return ret;
  gop_cache_update(g, first_kf, has_kf);
  return 0;
}

/* ---- mux --------------------------------------------------------------------------------------
 */

/* Copied audio gets strictly increasing DTS (duplicate-audio-dts.ts repeats them) and a PTS no
 * earlier than its DTS. */
static void audio_fix_ts(seg_t *g) {
  int64_t last = AV_NOPTS_VALUE;
  for (size_t i = 0; i < g->apk.n; i++) {
    AVPacket *p = g->apk.p[i];
    if (p->dts == AV_NOPTS_VALUE) p->dts = p->pts;
    if (p->dts == AV_NOPTS_VALUE && last != AV_NOPTS_VALUE)
      p->dts = last + (p->duration > 0 ? p->duration : 1);
    if (p->dts == AV_NOPTS_VALUE) p->dts = 0;
    if (last != AV_NOPTS_VALUE && p->dts <= last) p->dts = last + 1;
    if (p->pts == AV_NOPTS_VALUE || p->pts < p->dts) p->pts = p->dts;
    last = p->dts;
  }
}

/* A rendition's audio: its profile's choice, else the session's mode. */
static media_profile_audio_t out_audio(const seg_t *g, const out_t *o) {
  if (o->prof->audio != MEDIA_PROFILE_AUDIO_SESSION) return o->prof->audio;
  return g->s->opts.audio == MEDIA_AUDIO_COPY ? MEDIA_PROFILE_AUDIO_COPY : MEDIA_PROFILE_AUDIO_DROP;
}

static bool any_audio(const seg_t *g) {
  for (size_t i = 0; i < g->nout; i++)
    if (out_audio(g, &g->outs[i]) != MEDIA_PROFILE_AUDIO_DROP) return true;
  return false;
}

/* Pulls what the filter and the encoder have ready into g->aac. */
static int aac_drain(seg_t *g, AVFilterContext *sink, AVCodecContext *enc, AVFrame *f, bool eof) {
  int ret;
  for (;;) {
    ret = av_buffersink_get_frame(sink, f);
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) break;
    if (ret < 0) return ret;
    ret = avcodec_send_frame(enc, f);
    av_frame_unref(f);
    if (ret < 0) return ret;
  }
  if (eof && (ret = avcodec_send_frame(enc, NULL)) < 0) return ret;
  for (;;) {
    AVPacket *p = av_packet_alloc();
    if (!p) return AVERROR(ENOMEM);
    ret = avcodec_receive_packet(enc, p);
    if (ret < 0) {
      av_packet_free(&p);
      return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
    }
    if ((ret = pl_push(&g->aac, p)) < 0) {
      av_packet_free(&p);
      return ret;
    }
  }
}

/* Decodes the segment's audio once and encodes it to AAC-LC, stereo, at the source's rate when
 * AAC has it (else 48 kHz), for every rendition whose profile asks for "aac". Packets keep the
 * source's timeline (in 1/rate), so they interleave with the video as copied audio does. */
static int seg_audio_aac(seg_t *g) {
  const AVCodec *dc = avcodec_find_decoder(g->ast->codecpar->codec_id);
  const AVCodec *ec = avcodec_find_encoder(AV_CODEC_ID_AAC);
  if (!dc || !ec) return AVERROR_DECODER_NOT_FOUND;
  AVCodecContext *dec = avcodec_alloc_context3(dc), *enc = avcodec_alloc_context3(ec);
  AVFilterGraph *graph = avfilter_graph_alloc();
  AVFilterContext *src = NULL, *sink = NULL;
  AVFrame *f = av_frame_alloc();
  int ret = dec && enc && graph && f ? 0 : AVERROR(ENOMEM);
  if (ret == 0) ret = avcodec_parameters_to_context(dec, g->ast->codecpar);
  if (ret == 0) {
    dec->pkt_timebase = g->ast->time_base;
    ret = hw_codec_open(dec, dc, NULL);
  }
  int rate = 48000;
  static const int aac_rates[] = {96000, 88200, 64000, 48000, 44100, 32000,
                                  24000, 22050, 16000, 12000, 11025, 8000};
  for (size_t i = 0; ret == 0 && i < LP_ARRAY_LEN(aac_rates); i++)
    if (dec->sample_rate == aac_rates[i]) rate = aac_rates[i];
  if (ret == 0) {
    enc->sample_fmt = AV_SAMPLE_FMT_FLTP;
    enc->sample_rate = rate;
    av_channel_layout_default(&enc->ch_layout, 2);
    enc->bit_rate = 128000;
    enc->time_base = (AVRational){1, rate};
    enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER; /* MP4 needs the config; MPEG-TS makes ADTS */
    ret = hw_codec_open(enc, ec, NULL);
  }
  char args[256], chain[160];
  if (ret == 0) {
    /* a source that names no layout gets the usual one for its channel count */
    char layout[64] = "";
    AVChannelLayout in_layout = {0};
    if (dec->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
      av_channel_layout_default(&in_layout, dec->ch_layout.nb_channels);
    else
      ret = av_channel_layout_copy(&in_layout, &dec->ch_layout);
    if (ret == 0) av_channel_layout_describe(&in_layout, layout, sizeof layout);
    av_channel_layout_uninit(&in_layout);
    snprintf(args, sizeof args, "time_base=1/%d:sample_rate=%d:sample_fmt=%s:channel_layout=%s",
             dec->sample_rate, dec->sample_rate, av_get_sample_fmt_name(dec->sample_fmt), layout);
    snprintf(chain, sizeof chain, "aresample=%d,aformat=sample_fmts=fltp:channel_layouts=stereo",
             rate);
    const AVFilter *fa = avfilter_get_by_name("abuffer"), *fs = avfilter_get_by_name("abuffersink");
    AVFilterInOut *in = avfilter_inout_alloc(), *out = avfilter_inout_alloc();
    if (ret == 0 && (!in || !out)) ret = AVERROR(ENOMEM);
    if (ret == 0) ret = avfilter_graph_create_filter(&src, fa, "in", args, NULL, graph);
    if (ret == 0) ret = avfilter_graph_create_filter(&sink, fs, "out", NULL, NULL, graph);
    if (ret == 0) {
      out->name = av_strdup("in");
      out->filter_ctx = src;
      in->name = av_strdup("out");
      in->filter_ctx = sink;
      ret = avfilter_graph_parse_ptr(graph, chain, &in, &out, NULL);
    }
    avfilter_inout_free(&in);
    avfilter_inout_free(&out);
    if (ret >= 0) ret = avfilter_graph_config(graph, NULL);
    if (ret >= 0) {
      av_buffersink_set_frame_size(sink, (unsigned)enc->frame_size);
      ret = 0;
    }
  }
  int64_t next_pts = AV_NOPTS_VALUE;
  for (size_t i = 0; ret == 0 && i <= g->apk.n; i++) {
    ret = avcodec_send_packet(dec, i < g->apk.n ? g->apk.p[i] : NULL);
    if (ret == AVERROR_INVALIDDATA) ret = 0; /* a broken packet costs its samples only */
    while (ret == 0) {
      ret = avcodec_receive_frame(dec, f);
      if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) {
        ret = 0;
        break;
      }
      if (ret < 0) break;
      /* one continuous timeline from the first frame's time: the source's own timestamps may
       * repeat or jump (duplicate-audio-dts.ts), which an encoder must not see */
      if (next_pts == AV_NOPTS_VALUE) {
        int64_t ts = f->best_effort_timestamp;
        next_pts = ts == AV_NOPTS_VALUE
                       ? 0
                       : av_rescale_q(ts, g->ast->time_base, (AVRational){1, dec->sample_rate});
      }
      f->pts = next_pts;
      next_pts += f->nb_samples;
      ret = av_buffersrc_add_frame(src, f);
      av_frame_unref(f);
      if (ret == 0) ret = aac_drain(g, sink, enc, f, false);
    }
  }
  if (ret == 0) ret = av_buffersrc_add_frame(src, NULL);
  if (ret == 0) ret = aac_drain(g, sink, enc, f, true);
  if (ret == 0 && !(g->aac_par = avcodec_parameters_alloc())) ret = AVERROR(ENOMEM);
  if (ret == 0) ret = avcodec_parameters_from_context(g->aac_par, enc);
  if (ret == 0) g->aac_tb = enc->time_base;
  av_frame_free(&f);
  avfilter_graph_free(&graph);
  avcodec_free_context(&dec);
  avcodec_free_context(&enc);
  return ret < 0 ? ret : 0;
}

static int write_pkt(AVFormatContext *oc, AVStream *st, const AVPacket *src, AVRational tb) {
  AVPacket *p = av_packet_clone(src);
  if (!p) return AVERROR(ENOMEM);
  p->stream_index = st->index;
  p->pos = -1;
  av_packet_rescale_ts(p, tb, st->time_base);
  int ret = av_interleaved_write_frame(oc, p);
  av_packet_free(&p);
  return ret;
}

static int out_mux(seg_t *g, out_t *o) {
  media_profile_audio_t am = out_audio(g, o);
  /* the audio packets this rendition carries, and their time base */
  const pktlist_t *apk = am == MEDIA_PROFILE_AUDIO_AAC ? &g->aac : &g->apk;
  bool audio = g->ast && apk->n && am != MEDIA_PROFILE_AUDIO_DROP &&
               (am != MEDIA_PROFILE_AUDIO_AAC || g->aac_par);
  bool video = o->pkts.n > 0;
  media_memout_t mo = {LP_BUF_INIT, 0};
  AVFormatContext *oc = NULL;
  AVStream *vs = NULL, *as = NULL;
  const char *fmt = media_profile_container(o->prof, NULL, NULL);
  int ret = avformat_alloc_output_context2(&oc, NULL, fmt, NULL);
  if (ret < 0) return seg_fail(g, LP_EUNSUPP, MEDIA_ERR_SESSION, "Muxer not found", o->idx);
  oc->pb = media_memout_open(&mo);
  if (!oc->pb) {
    ret = AVERROR(ENOMEM);
    goto fail;
  }
  oc->flags |= AVFMT_FLAG_CUSTOM_IO;
  if (video) {
    if (!(vs = avformat_new_stream(oc, NULL))) goto nomem;
    if ((ret = avcodec_parameters_copy(vs->codecpar, o->par)) < 0) goto fail;
    vs->time_base = TB_90K;
    if (o->prof->fps)
      vs->avg_frame_rate =
          (AVRational){(int)o->prof->fps, o->prof->fps_den ? (int)o->prof->fps_den : 1};
  }
  AVRational atb = TB_90K;
  if (audio) {
    atb = am == MEDIA_PROFILE_AUDIO_AAC ? g->aac_tb : g->ast->time_base;
    if (!(as = avformat_new_stream(oc, NULL))) goto nomem;
    if ((ret = avcodec_parameters_copy(
             as->codecpar, am == MEDIA_PROFILE_AUDIO_AAC ? g->aac_par : g->ast->codecpar)) < 0)
      goto fail;
    as->codecpar->codec_tag = 0;
    as->time_base = atb;
  }
  if (!video && !audio) {
    ret = AVERROR(EINVAL);
    goto fail;
  }
  if ((ret = avformat_write_header(oc, NULL)) < 0) goto fail;
  /* Merge the two packet lists by DTS so the interleaver never holds much. */
  size_t vi = 0, ai = 0, vn = video ? o->pkts.n : 0, an = audio ? apk->n : 0;
  while (vi < vn || ai < an) {
    bool take_v = ai >= an ||
                  (vi < vn && av_compare_ts(o->pkts.p[vi]->dts, TB_90K, apk->p[ai]->dts, atb) <= 0);
    if (take_v)
      ret = write_pkt(oc, vs, o->pkts.p[vi++], TB_90K);
    else
      ret = write_pkt(oc, as, apk->p[ai++], atb);
    if (ret < 0) goto fail;
  }
  if ((ret = av_write_trailer(oc)) < 0) goto fail;
  avio_flush(oc->pb);
  media_avio_free(&oc->pb);
  avformat_free_context(oc);

  media_rendition_t *r = o->res;
  r->data = lp_buf_steal(&mo.buf, &r->len);
  r->frames = o->frames;
  r->pixels = o->pixels;
  r->keyframes = o->keyframes;
  r->width = o->enc_w;
  r->height = o->enc_h;
  r->audio_packets = audio ? (int64_t)apk->n : 0;
  if (video) {
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (size_t i = 0; i < o->pkts.n; i++) {
      lo = LP_MIN(lo, o->pkts.p[i]->pts);
      hi = LP_MAX(hi, o->pkts.p[i]->pts);
    }
    int64_t step = o->pkts.n > 1 ? (hi - lo) / (int64_t)(o->pkts.n - 1) : 0;
    r->duration_us = av_rescale_q(hi - lo + step, TB_90K, AV_TIME_BASE_Q);
  } else {
    r->duration_us = g->res->duration_us;
  }
  return 0;
nomem:
  ret = AVERROR(ENOMEM);
fail:
  if (oc) {
    media_avio_free(&oc->pb);
    avformat_free_context(oc);
  }
  lp_buf_free(&mo.buf);
  return seg_fail_av(g, ret, HW_STAGE_ENCODE, o->idx);
}

/* ---- one segment ------------------------------------------------------------------------------
 */

static void seg_free(seg_t *g) {
  for (size_t i = 0; g->outs && i < g->nout; i++) {
    out_t *o = &g->outs[i];
    out_free_graph(o);
    if (o->enc_warm && o->enc)
      warm_clear(&g->s->warm[o->idx]); /* failed mid-segment */
    else
      hw_encoder_free(&o->enc);
    avcodec_parameters_free(&o->par);
    pl_free(&o->pkts);
    av_frame_free(&o->ff);
  }
  free(g->outs);
  pl_free(&g->vpk);
  pl_free(&g->apk);
  pl_free(&g->aac);
  avcodec_parameters_free(&g->aac_par);
  avformat_close_input(&g->ic);
  media_avio_free(&g->pb);
  av_frame_free(&g->frame);
}

static int seg_run(seg_t *g, const uint8_t *in, size_t len) {
  media_session_t *s = g->s;
  media_result_t *out = g->res;
  size_t n = g->nout;
  media_memin_t mi;
  int ret;
  for (size_t i = 0; i < n; i++) {
    const char *why;
    if (media_profile_validate(g->outs[i].prof, &why) < 0)
      return seg_fail(g, LP_EINVAL, MEDIA_ERR_INPUT, why, (int)i);
  }
  if (!in || !len) return seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "TranscoderInvalidVideo", -1);
  out->renditions = calloc(n, sizeof(*out->renditions));
  g->frame = av_frame_alloc();
  if (!out->renditions || !g->frame)
    return seg_fail(g, LP_ENOMEM, MEDIA_ERR_SESSION, "Cannot allocate memory", -1);
  out->n = n;
  for (size_t i = 0; i < n; i++) {
    out_t *o = &g->outs[i];
    o->res = &out->renditions[i];
    if (!(o->ff = av_frame_alloc()))
      return seg_fail(g, LP_ENOMEM, MEDIA_ERR_SESSION, "Cannot allocate memory", -1);
    if (out_route(g, o, 0, 0) < 0)
      return seg_fail(g, LP_EUNSUPP, MEDIA_ERR_INPUT, "Encoder not found", (int)i);
  }
  if ((ret = seg_demux(g, in, len, &mi)) < 0) return ret;
  bool audio = g->apk.n && any_audio(g);
  if (!g->vst || (!g->vpk.n && !audio))
    return seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "TranscoderInvalidVideo", -1);
  /* Impossible sizes fail before any decoder or encoder opens, when the source size is known. */
  int sw = g->vst->codecpar->width, sh = g->vst->codecpar->height;
  for (size_t i = 0; sw > 0 && sh > 0 && i < n; i++) {
    int w, h;
    if (out_route(g, &g->outs[i], sw, sh) < 0 ||
        media_fit_size(g->outs[i].prof, &g->outs[i].lim, sw, sh, &w, &h) < 0)
      return seg_fail(g, LP_EINVAL, MEDIA_ERR_INPUT, "TranscoderInvalidResolution", (int)i);
  }
  audio_fix_ts(g);
  bool want_aac = false;
  for (size_t i = 0; i < n; i++) want_aac |= out_audio(g, &g->outs[i]) == MEDIA_PROFILE_AUDIO_AAC;
  if (want_aac && g->ast && g->apk.n && (ret = seg_audio_aac(g)) < 0) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(ret, e, sizeof e);
    /* the renditions go out without audio rather than not at all */
    LOGW_C(&s->opts.log, "media: cannot encode the segment's audio: %s", e);
    pl_free(&g->aac);
    avcodec_parameters_free(&g->aac_par);
  }
  for (size_t i = 0; i < n; i++) {
    rworker_t *w = &s->rw[g->set][i];
    if (rw_start(w) < 0)
      return seg_fail(g, LP_ENOMEM, MEDIA_ERR_SESSION, "Cannot allocate memory", -1);
    w->g = g;
    w->o = &g->outs[i];
  }
  g->queued = true;
  ret = g->vpk.n ? seg_video(g) : 0;
  if (ret == 0 && g->vpk.n && g->decoded == 0 && !audio)
    ret = seg_fail(g, LP_EMEDIA, MEDIA_ERR_INPUT, "TranscoderInvalidVideo", -1);
  return ret;
}

/* The segment is done (every rendition drained and muxed, or stopped): its result is final. It
 * is handed back now if it is the oldest in flight, else by the older one after its own. */
static void seg_finish(seg_t *g) {
  media_session_t *s = g->s;
  media_result_t *out = g->res;
  int ret = g->ret;
  if (ret == 0 && atomic_load(&g->abort)) ret = LP_EMEDIA;
  /* A failed rendition may have found the error while the code that returned did not. */
  if (ret == 0 && out->error[0]) ret = LP_EMEDIA;
  seg_free(g);
  if (ret < 0) {
    media_result_free(out);
    if (!out->error[0]) seg_fail(g, ret, MEDIA_ERR_SESSION, lp_strerror(ret), -1);
    /* every failure but a bad input or profile leaves the codec state in doubt */
    if (out->error_class != MEDIA_ERR_INPUT) atomic_store(&s->broken, true);
    LOGW_C(&s->opts.log, "media: segment failed: %s", out->error);
  } else {
    atomic_fetch_add(&s->segments, 1);
  }
  out->transcode_ns = lp_now_ns() - g->t0;
  pthread_mutex_destroy(&g->err_mu);
  free(g->profs);
  g->ret = ret;
  pthread_mutex_lock(&s->mu);
  g->finished = true;
  bool oldest = s->fl[0] == g;
  pthread_mutex_unlock(&s->mu);
  while (oldest) {
    g->done(g->done_arg, g->res, g->ret);
    pthread_mutex_lock(&s->mu);
    s->fl[0] = s->fl[1];
    s->fl[1] = NULL;
    s->nfl--;
    seg_t *next = s->nfl && s->fl[0]->finished ? s->fl[0] : NULL;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    oldest = (g = next) != NULL;
  }
}

void media_session_submit(media_session_t *s, const uint8_t *in, size_t len,
                          const media_profile_t *profiles, size_t n, media_result_t *out,
                          media_done_fn done, void *arg) {
  memset(out, 0, sizeof(*out));
  out->error_rendition = -1;
  pthread_mutex_lock(&s->mu);
  while (s->nfl >= s->depth) pthread_cond_wait(&s->cv, &s->mu);
  int set = s->nfl ? 1 - s->fl[0]->set : 0;
  seg_t *g = &s->slot[set];
  memset(g, 0, sizeof(*g));
  g->set = set;
  s->fl[s->nfl++] = g;
  pthread_mutex_unlock(&s->mu);
  g->t0 = lp_now_ns();
  g->s = s;
  g->res = out;
  g->vi = g->ai = -1;
  g->prime_max_pts = AV_NOPTS_VALUE;
  g->ts_last_pts = g->ts_last_dts = INT64_MIN;
  g->done = done;
  g->done_arg = arg;
  pthread_mutex_init(&g->err_mu, NULL);
  atomic_init(&g->abort, 0);
  atomic_init(&g->pending, 0);
  int ret;
  if (!n) {
    ret = seg_fail(g, LP_EINVAL, MEDIA_ERR_INPUT, "Invalid argument", -1);
  } else if (n > (size_t)s->opts.max_outputs) {
    ret = seg_fail(g, LP_EINVAL, MEDIA_ERR_INPUT, "Too many outputs", -1);
  } else if (!(g->outs = calloc(n, sizeof(*g->outs))) ||
             !(g->profs = malloc(n * sizeof(*g->profs)))) {
    ret = seg_fail(g, LP_ENOMEM, MEDIA_ERR_SESSION, "Cannot allocate memory", -1);
  } else {
    memcpy(g->profs, profiles, n * sizeof(*g->profs));
    g->nout = n;
    for (size_t i = 0; i < n; i++) {
      g->outs[i].prof = &g->profs[i];
      g->outs[i].idx = (int)i;
    }
    ret = seg_run(g, in, len);
  }
  g->ret = ret;
  if (ret < 0) atomic_store(&g->abort, 1);
  if (ret < 0 && s->vdec) {
    /* A segment abandoned half-way leaves frames in the decoder that belong to no one. */
    avcodec_flush_buffers(s->vdec);
    pl_clear(&s->gop);
  }
  if (!g->queued) {
    seg_finish(g);
    return;
  }
  /* End of segment for every rendition (they drain and mux in parallel, or see the abort); the
   * last of them may free g at once, so nothing of it is read after the last push. */
  size_t nout = g->nout;
  int64_t decoded = g->decoded;
  rworker_t *ws = s->rw[g->set];
  atomic_store(&g->pending, (int)nout);
  for (size_t i = 0; i < nout; i++) rw_push(&ws[i], NULL, 0, decoded);
}

static void sync_done(void *arg, media_result_t *res, int ret) {
  (void)res;
  *(int *)arg = ret; /* read after the drain, under the session's lock */
}

/* Submit and wait: the segment (and any older one, which comes back first) is done when none is
 * in flight, since one thread submits. */
int media_session_transcode(media_session_t *s, const uint8_t *in, size_t len,
                            const media_profile_t *profiles, size_t n, media_result_t *out) {
  int ret = 0;
  media_session_submit(s, in, len, profiles, n, out, sync_done, &ret);
  session_drain(s);
  return ret;
}

/* ---- probe ------------------------------------------------------------------------------------
 */

/* Packets the quick probe reads at most: a segment's parameter sets come with its first
 * keyframe, and the timestamps of its first video frames give the rate. */
#define QUICK_PROBE_PACKETS 64
#define QUICK_PROBE_FRAMES 16

/* Stream parameters without decoding (opening a decoder for a 1080p stream costs tens of ms of
 * allocations): the codec parser reads the size from the parameter sets, and the first video
 * timestamps give the rate. */
static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int probe_params(AVFormatContext *ic, media_probe_t *out) {
  int vi = -1;
  for (unsigned i = 0; i < ic->nb_streams; i++) {
    enum AVMediaType t = ic->streams[i]->codecpar->codec_type;
    if (t == AVMEDIA_TYPE_VIDEO && vi < 0) vi = (int)i;
    if (t == AVMEDIA_TYPE_AUDIO) out->has_audio = true;
  }
  if (vi < 0) return 0;
  AVStream *st = ic->streams[vi];
  snprintf(out->video_codec, sizeof(out->video_codec), "%s",
           avcodec_get_name(st->codecpar->codec_id));
  out->width = st->codecpar->width;
  out->height = st->codecpar->height;
  AVCodecParserContext *pc = av_parser_init(st->codecpar->codec_id);
  AVCodecContext *cc = avcodec_alloc_context3(NULL);
  AVPacket *p = av_packet_alloc();
  int ret = pc && cc && p ? 0 : LP_ENOMEM;
  if (pc) pc->flags |= PARSER_FLAG_COMPLETE_FRAMES;
  int64_t ts[QUICK_PROBE_FRAMES];
  int nts = 0;
  for (int n = 0; ret == 0 && n < QUICK_PROBE_PACKETS && av_read_frame(ic, p) >= 0; n++) {
    if (p->stream_index == vi) {
      uint8_t *o = NULL;
      int olen = 0;
      if (out->width <= 0)
        av_parser_parse2(pc, cc, &o, &olen, p->data, p->size, p->pts, p->dts, p->pos);
      if (out->width <= 0 && pc->width > 0) {
        out->width = pc->width;
        out->height = pc->height;
      }
      int64_t t = p->pts != AV_NOPTS_VALUE ? p->pts : p->dts;
      if (t != AV_NOPTS_VALUE && nts < QUICK_PROBE_FRAMES) ts[nts++] = t;
    }
    av_packet_unref(p);
    if (out->width > 0 && nts == QUICK_PROBE_FRAMES) break;
  }
  /* the median step between the frames' times, in presentation order: reordered, repeated or
   * skipped timestamps move it less than they move a mean */
  if (nts >= 3) {
    qsort(ts, (size_t)nts, sizeof ts[0], cmp_i64);
    int64_t steps[QUICK_PROBE_FRAMES];
    int ns = 0;
    for (int i = 1; i < nts; i++)
      if (ts[i] > ts[i - 1]) steps[ns++] = ts[i] - ts[i - 1];
    if (ns > 0) {
      qsort(steps, (size_t)ns, sizeof steps[0], cmp_i64);
      out->fps = 1.0 / (av_q2d(st->time_base) * (double)steps[ns / 2]);
    }
  }
  out->has_video = out->width > 0 && out->height > 0;
  av_packet_free(&p);
  avcodec_free_context(&cc);
  if (pc) av_parser_close(pc);
  return ret;
}

static int probe(const uint8_t *in, size_t len, bool whole, media_probe_t *out) {
  hw_log_init();
  memset(out, 0, sizeof(*out));
  media_memin_t mi;
  AVFormatContext *ic = avformat_alloc_context();
  if (!ic) return LP_ENOMEM;
  AVIOContext *pb = media_memin_open(&mi, in, len);
  if (!pb) {
    avformat_free_context(ic);
    return LP_ENOMEM;
  }
  ic->pb = pb;
  ic->flags |= AVFMT_FLAG_CUSTOM_IO;
  int ret = avformat_open_input(&ic, NULL, NULL, NULL);
  if (ret < 0) {
    media_avio_free(&pb);
    return LP_EMEDIA;
  }
  if (!whole) {
    ret = probe_params(ic, out);
    goto done;
  }
  if (avformat_find_stream_info(ic, NULL) < 0) {
    ret = LP_EMEDIA;
    goto done;
  }
  int vi = av_find_best_stream(ic, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
  int ai = av_find_best_stream(ic, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
  if (vi >= 0) {
    AVStream *st = ic->streams[vi];
    out->width = st->codecpar->width;
    out->height = st->codecpar->height;
    AVRational r = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
    out->fps = r.num > 0 && r.den > 0 ? av_q2d(r) : 0;
    snprintf(out->video_codec, sizeof(out->video_codec), "%s",
             avcodec_get_name(st->codecpar->codec_id));
  }
  if (ai >= 0)
    snprintf(out->audio_codec, sizeof(out->audio_codec), "%s",
             avcodec_get_name(ic->streams[ai]->codecpar->codec_id));

  int64_t t0 = INT64_MAX, t1 = INT64_MIN;
  AVPacket *p = av_packet_alloc();
  if (!p) {
    ret = LP_ENOMEM;
    goto done;
  }
  while (av_read_frame(ic, p) >= 0) {
    if (p->stream_index == vi || p->stream_index == ai) {
      if (p->stream_index == vi)
        out->video_frames++, out->has_video = true;
      else
        out->has_audio = true;
      AVRational tb = ic->streams[p->stream_index]->time_base;
      int64_t ts = p->dts != AV_NOPTS_VALUE ? p->dts : p->pts;
      if (ts != AV_NOPTS_VALUE) {
        int64_t us = av_rescale_q(ts, tb, AV_TIME_BASE_Q);
        t0 = LP_MIN(t0, us);
        t1 = LP_MAX(t1, us + av_rescale_q(p->duration, tb, AV_TIME_BASE_Q));
      }
    }
    av_packet_unref(p);
  }
  av_packet_free(&p);
  out->duration_us = t1 > t0 ? t1 - t0 : 0;
  ret = 0;
done:
  avformat_close_input(&ic);
  media_avio_free(&pb);
  return ret;
}

int media_probe(const uint8_t *in, size_t len, media_probe_t *out) {
  return probe(in, len, true, out);
}

int media_probe_stream(const uint8_t *in, size_t len, media_probe_t *out) {
  return probe(in, len, false, out);
}
