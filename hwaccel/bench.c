/* Calibration benchmark: the sustained frames per second of one stage (decode, scale, encode) on
 * a device of the table, for the capacity scheduler (docs/capacity.md, "Calibration").
 *
 * Stages run the way the media engine runs them: decoders and CPU encoders with automatic
 * threads, filter graphs on one thread. A run feeds BENCH_WARM frames untimed first (decoder
 * threads starting, the scaler and the encoder opening, first frames), then times the rest to
 * the end of the stream, the encoder's drain (a NULL frame) included, and divides that time by
 * the frames that left its last stage within it (decoded frames, scaled frames or packets).
 *
 * Sources are synthetic: a second of "realistic" clip (hw_clip_spec_t) at the source size, in the
 * request's codec for decode and H.264 for the other stages, decoded over and over. Decode is
 * timed alone. A stage on the CPU is timed alone too, on frames made beforehand: the CPU device's
 * scaler on frames at the source size, a CPU encoder (the CPU device's, or a device's CPU route)
 * on frames at the output size. Frames that stay on a device cannot reach a stage without the one
 * before it, so there a stage is the difference of two runs over the same clip, in seconds per
 * frame:
 *   scale  = (decode + scale) - (decode)
 *   encode = (decode + scale + encode) - (decode + scale)
 * A difference under BENCH_MIN_SHARE of its larger run is below what two runs resolve (the
 * device's engines overlap, or noise); it counts as that share, so the figure stays finite.
 * With hw_bench_req_t.cpu_time a stage on the CPU is timed by the process's CPU time instead of
 * the wall clock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hw_int.h"

#define BENCH_WARM 8
/* Frames of the source clip: a second at 30 frames/s, one keyframe. */
#define BENCH_CLIP 30
#define BENCH_MAX_FRAMES 10000
#define BENCH_MIN_SIZE 16
#define BENCH_MAX_SIZE 8192
#define BENCH_MIN_SHARE 0.05
#define BENCH_MAX_BPP 8.0
/* Distinct frames a CPU stage is fed, over and over (with the clip's grain). */
#define BENCH_RING 8

/* Frames timed by default: about a second for a call on a 2-core CPU at 1920x1080 -> 1280x720,
 * the source included, with H.264 (decode ~400 frames/s at 0.1 bit per pixel, ~60 at 1.3;
 * scale ~450, x264 medium ~40). */
static int default_frames(hw_bench_stage_t stage, double bpp) {
  switch (stage) {
  case HW_BENCH_DECODE: return bpp > HW_CLIP_RATE_MAX ? 80 : 240;
  case HW_BENCH_SCALE: return 480;
  default: return 30;
  }
}

static bool size_ok(int w, int h) {
  return w >= BENCH_MIN_SIZE && h >= BENCH_MIN_SIZE && w <= BENCH_MAX_SIZE && h <= BENCH_MAX_SIZE &&
         w % 2 == 0 && h % 2 == 0;
}

static int req_check(const hw_bench_req_t *r, char *why, size_t wlen) {
  if ((unsigned)r->stage > HW_BENCH_ENCODE) {
    snprintf(why, wlen, "unknown stage %d", (int)r->stage);
    return LP_EINVAL;
  }
  if (r->stage != HW_BENCH_SCALE && (unsigned)r->codec >= HW_CODECS) {
    snprintf(why, wlen, "unknown codec %d", (int)r->codec);
    return LP_EINVAL;
  }
  if (!size_ok(r->in_w, r->in_h) || (r->stage != HW_BENCH_DECODE && !size_ok(r->out_w, r->out_h))) {
    snprintf(why, wlen, "sizes %dx%d -> %dx%d: each side must be even, %d to %d", r->in_w, r->in_h,
             r->out_w, r->out_h, BENCH_MIN_SIZE, BENCH_MAX_SIZE);
    return LP_EINVAL;
  }
  if (!(r->bpp >= 0 && r->bpp <= BENCH_MAX_BPP)) {
    snprintf(why, wlen, "bits per pixel %g: must be 0 (default) to %g", r->bpp, BENCH_MAX_BPP);
    return LP_EINVAL;
  }
  if (r->frames < 0 || r->frames > BENCH_MAX_FRAMES) {
    snprintf(why, wlen, "frames %d: must be 0 (default) to %d", r->frames, BENCH_MAX_FRAMES);
    return LP_EINVAL;
  }
  return 0;
}

/* LP_EUNSUPP where the device table says d cannot run the stage. */
static int dev_check(const hw_device_t *d, const hw_bench_req_t *r, char *why, size_t wlen) {
  unsigned bit = HW_CODEC_BIT(r->stage == HW_BENCH_SCALE ? HW_CODEC_H264 : r->codec);
  const char *name = hw_codec_name(r->stage == HW_BENCH_SCALE ? HW_CODEC_H264 : r->codec);
  if (r->stage != HW_BENCH_ENCODE && !(d->dec & bit)) {
    snprintf(why, wlen, "%s does not decode %s%s", d->name, name,
             r->stage == HW_BENCH_SCALE ? " (the scaler's source)" : "");
    return LP_EUNSUPP;
  }
  if (r->stage != HW_BENCH_ENCODE) return 0;
  if (!((d->enc | d->enc_cpu) & bit)) {
    snprintf(why, wlen, "%s does not encode %s", d->name, name);
    return LP_EUNSUPP;
  }
  const hw_limits_t *l = &d->limits[r->codec];
  int align = l->align > 0 ? l->align : 1;
  if (r->out_w < l->min_w || r->out_h < l->min_h || (l->max_w && r->out_w > l->max_w) ||
      (l->max_h && r->out_h > l->max_h) || r->out_w % align || r->out_h % align) {
    snprintf(why, wlen, "%dx%d is outside the %s encoder's limits on %s", r->out_w, r->out_h, name,
             d->name);
    return LP_EUNSUPP;
  }
  return 0;
}

/* The encoder as a rendition of that size would get it, near lpms's 4 Mb/s at 720p. */
static hw_enc_params_t bench_enc_params(const hw_bench_req_t *r) {
  return (hw_enc_params_t){.codec = hw_codec_avid(r->codec),
                           .width = r->out_w,
                           .height = r->out_h,
                           .time_base = {1, 30},
                           .framerate = {30, 1},
                           .bitrate = (int64_t)r->out_w * r->out_h * 4,
                           .preset = r->preset,
                           .threads = 0};
}

/* ---- timed runs ------------------------------------------------------------------------------ */

typedef struct run {
  hw_pipe_t *pipe; /* NULL: decoding alone */
  bool cpu;        /* timed by the process's CPU time (hw_bench_req_t.cpu_time) */
  int seen;        /* frames into the run */
  int64_t out0;    /* frames out of its last stage when the clock started */
  uint64_t t0;
} run_t;

/* The process's CPU time over all its threads (0 should the clock fail, which then ends the
 * run as "the clock did not advance"). */
static uint64_t process_cpu_ns(void) {
  struct timespec ts = {0, 0};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t (*cpu_clock)(void) = process_cpu_ns;

void hw_bench_set_cpu_clock(uint64_t (*clock)(void)) { cpu_clock = clock ? clock : process_cpu_ns; }

/* The run's clock: the CPU time, or the wall clock. */
static uint64_t run_clock(const run_t *p) { return p->cpu ? cpu_clock() : lp_now_ns(); }

static int64_t run_outputs(const run_t *p) { return p->pipe ? p->pipe->outputs : p->seen; }

static void run_count(run_t *p) {
  if (++p->seen != BENCH_WARM) return;
  p->out0 = run_outputs(p);
  p->t0 = run_clock(p);
}

static int run_frame(void *ud, AVFrame *f) {
  run_t *p = ud;
  int ret = p->pipe ? hw_pipe_frame(p->pipe, f) : 0;
  if (ret >= 0) run_count(p);
  return ret;
}

/* Stops the clock: *spf is seconds per frame out of the last stage since it started. */
static int run_stop(const run_t *p, double *spf, char *why, size_t wlen) {
  uint64_t t1 = run_clock(p);
  int64_t n = run_outputs(p) - p->out0;
  if (p->seen < BENCH_WARM || n <= 0) {
    snprintf(why, wlen, "only %d frames went in and %lld came out timed", p->seen, (long long)n);
    return LP_EMEDIA;
  }
  *spf = (double)(t1 - p->t0) / 1e9 / (double)n;
  return 0;
}

/* An LP_E* for a failed run: an encoder's own refusal, else what FFmpeg said. */
static int run_err(int ret, const hw_pipe_t *pipe, const hw_device_t *d) {
  if (pipe && pipe->open_err < 0) return pipe->open_err;
  if (ret == AVERROR(ENOMEM)) return LP_ENOMEM;
  if (ret == AVERROR_DECODER_NOT_FOUND) return LP_EUNSUPP;
  return d->be == &hw_backend_sw ? LP_EMEDIA : LP_EDEVICE;
}

/* Ends a run: drains its pipe, stops the clock (or turns a failure into an LP_E*), frees the
 * pipe. */
static int run_end(run_t *p, int ret, const hw_device_t *d, double *spf, char *why, size_t wlen) {
  if (ret >= 0 && p->pipe) ret = hw_pipe_finish(p->pipe);
  if (ret >= 0) {
    ret = run_stop(p, spf, why, wlen);
  } else {
    ret = run_err(ret, p->pipe, d);
    if (!why[0]) snprintf(why, wlen, "%s", lp_strerror(ret));
  }
  if (p->pipe) hw_pipe_free(p->pipe);
  return ret;
}

/* Decodes frames frames of the clip through be, then pipe's stages (pipe NULL: decoding
 * alone). */
static int run_clip(const hw_device_t *d, const hw_backend_t *be, AVBufferRef *device,
                    const hw_clip_t *clip, int frames, hw_pipe_t *pipe, bool cpu, double *spf,
                    char *why, size_t wlen) {
  run_t p = {.pipe = pipe, .cpu = cpu};
  int ret = hw_clip_decode(be, device, clip, 0, frames, run_frame, &p, why, wlen);
  return run_end(&p, ret, d, spf, why, wlen);
}

/* Decode alone, or a stage of device frames as the difference of two runs. */
static int bench_clip(const hw_device_t *d, AVBufferRef *device, const hw_bench_req_t *r,
                      int frames, double *spf, double *src_bpp, char *why, size_t wlen) {
  hw_codec_t src = r->stage == HW_BENCH_DECODE ? r->codec : HW_CODEC_H264;
  /* An encoder on a device that does not decode H.264 gets frames decoded and scaled on the
   * CPU, as in the self-test. */
  const hw_backend_t *be = d->dec & HW_CODEC_BIT(src) ? d->be : &hw_backend_sw;
  AVBufferRef *dev = be == d->be ? device : NULL;
  hw_clip_spec_t spec = {src, AV_PIX_FMT_YUV420P, r->in_w, r->in_h, BENCH_CLIP, 0, true, r->bpp};
  hw_clip_t clip;
  int ret = hw_clip_make(&spec, &clip);
  if (ret < 0) {
    snprintf(why, wlen, "no CPU encoder to make a %dx%d %s source", r->in_w, r->in_h,
             hw_codec_name(src));
    return ret;
  }
  if (src_bpp && r->stage == HW_BENCH_DECODE) *src_bpp = hw_clip_bpp(&clip);
  hw_pipe_t pipe[2] = {{.be = be,
                        .device = dev,
                        .out_w = r->out_w,
                        .out_h = r->out_h,
                        .ep = bench_enc_params(r),
                        .why = why,
                        .wlen = wlen}};
  pipe[1] = pipe[0];
  if (r->stage == HW_BENCH_ENCODE) pipe[1].enc_be = d->be;
  int n = BENCH_WARM + frames;
  double t[2] = {0, 0};
  if (r->stage == HW_BENCH_DECODE) {
    ret =
        run_clip(d, be, dev, &clip, n, NULL, r->cpu_time && be == &hw_backend_sw, &t[1], why, wlen);
  } else {
    hw_pipe_t *base = r->stage == HW_BENCH_SCALE ? NULL : &pipe[0];
    ret = run_clip(d, be, dev, &clip, n, base, false, &t[0], why, wlen);
    if (ret >= 0) ret = run_clip(d, be, dev, &clip, n, &pipe[1], false, &t[1], why, wlen);
  }
  hw_clip_free(&clip);
  if (ret >= 0) *spf = LP_MAX(t[1] - t[0], BENCH_MIN_SHARE * t[1]);
  return ret;
}

/* A stage on the CPU alone: the scaler on frames at the source size, or the encoder on frames
 * at the output size. */
static int bench_cpu(const hw_device_t *d, const hw_bench_req_t *r, int frames, double *spf,
                     char *why, size_t wlen) {
  bool scale = r->stage == HW_BENCH_SCALE;
  int total = BENCH_WARM + frames, k = LP_MIN(total, BENCH_RING), ret = 0;
  AVFrame *ring[BENCH_RING] = {0};
  for (int i = 0; i < k && ret >= 0; i++) {
    if (!(ring[i] = av_frame_alloc())) {
      ret = AVERROR(ENOMEM);
      break;
    }
    ring[i]->format = AV_PIX_FMT_YUV420P;
    ring[i]->width = scale ? r->in_w : r->out_w;
    ring[i]->height = scale ? r->in_h : r->out_h;
    if ((ret = av_frame_get_buffer(ring[i], 0)) >= 0) hw_fill_frame(ring[i], i, HW_REALISTIC_GRAIN);
  }
  hw_pipe_t pipe = {.be = &hw_backend_sw,
                    .enc_be = scale ? NULL : &hw_backend_sw,
                    .out_w = r->out_w,
                    .out_h = r->out_h,
                    .ep = bench_enc_params(r),
                    .why = why,
                    .wlen = wlen};
  run_t p = {.pipe = &pipe, .cpu = r->cpu_time};
  for (int i = 0; ret >= 0 && i < total; i++) {
    ring[i % k]->pts = i;
    ret = scale ? hw_pipe_frame(&pipe, ring[i % k]) : hw_pipe_encode(&pipe, ring[i % k]);
    if (ret >= 0) run_count(&p);
  }
  ret = run_end(&p, ret, d, spf, why, wlen);
  for (int i = 0; i < k; i++) av_frame_free(&ring[i]);
  return ret;
}

int hw_bench_stage(const hw_device_t *d, const hw_bench_req_t *req, double *fps, double *src_bpp,
                   char *why, size_t wlen) {
  char none[8];
  if (!why || !wlen) {
    why = none;
    wlen = sizeof(none);
  }
  why[0] = 0;
  if (fps) *fps = 0;
  if (!d || !d->be || !req || !fps) {
    snprintf(why, wlen, "no device, request or result");
    return LP_EINVAL;
  }
  int ret = req_check(req, why, wlen);
  if (ret >= 0) ret = dev_check(d, req, why, wlen);
  if (ret < 0) return ret;
  int frames = req->frames ? req->frames : default_frames(req->stage, req->bpp);
  /* SVT-AV1 prints a banner at info level for every encoder it opens. */
  setenv("SVT_LOG", "1", 0);
  double spf = 0;
  /* The CPU device's scaler and CPU encoders are timed alone. */
  bool cpu = d->be == &hw_backend_sw;
  bool alone = (req->stage == HW_BENCH_SCALE && cpu) ||
               (req->stage == HW_BENCH_ENCODE && (cpu || !(d->enc & HW_CODEC_BIT(req->codec))));
  if (alone) {
    ret = bench_cpu(d, req, frames, &spf, why, wlen);
  } else {
    AVBufferRef *device = NULL;
    if ((ret = d->be->device_open(d->index, &device)) < 0) {
      snprintf(why, wlen, "device does not open: %s", lp_strerror(ret));
      return ret;
    }
    ret = bench_clip(d, device, req, frames, &spf, src_bpp, why, wlen);
    av_buffer_unref(&device);
  }
  if (ret < 0) return ret;
  if (!(spf > 0)) {
    snprintf(why, wlen, "the clock did not advance");
    return LP_EIO;
  }
  *fps = 1.0 / spf;
  return 0;
}

/* Tier names for the CPU encoders, as sw's encoder_open reads hw_enc_params_t.preset: x264 and
 * x265 take it as their preset. libvpx has two speeds there: "ultrafast" selects the realtime
 * deadline, any other name or none the "good" one, so medium and slow are both its default
 * (NULL). There is no CPU AV1 encoder (NULL). */
static const char *const x264_names[3] = {"veryfast", "medium", "slow"};

static const char *sw_preset(hw_codec_t codec, int tier) {
  switch (codec) {
  case HW_CODEC_H264:
  case HW_CODEC_HEVC: return x264_names[tier];
  case HW_CODEC_VP8:
  case HW_CODEC_VP9: return tier == 0 ? "ultrafast" : NULL;
  default: return NULL;
  }
}

const char *hw_bench_preset_name(const hw_device_t *d, hw_codec_t codec, int tier) {
  static const char *const nvenc[3] = {"p2", "p4", "p6"};
  if (!d || !d->be || tier < 0 || tier > 2 || (unsigned)codec >= HW_CODECS) return NULL;
  const hw_backend_t *be = d->enc & HW_CODEC_BIT(codec) ? d->be : &hw_backend_sw;
  if (be == &hw_backend_sw) return sw_preset(codec, tier);
  if (strcmp(be->name, "nvidia") == 0) return nvenc[tier];
  /* Netint's encoder_open takes no preset. */
  if (strcmp(be->name, "netint") == 0) return NULL;
  /* QSV's encoder_open maps x264 names (veryfast, medium, slow: its faster, medium, slow). */
  return x264_names[tier];
}
