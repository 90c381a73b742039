/* sched cost model: pixel rates per stage weighed with per-device coefficients. */
#include "sched_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MPX 1e6
#define MIB (1024ull * 1024ull)
/* Device memory estimate for hardware sessions: a fixed part for the codec contexts plus the
 * surfaces (NV12, 1.5 bytes a pixel) a decoder and each encoder keep in flight. */
#define MEM_BASE (64 * MIB)
#define MEM_DEC_SURFACES 20
#define MEM_ENC_SURFACES 8

const char *lp_sched_kind_name(lp_sched_dev_kind_t k) {
  switch (k) {
  case LP_SCHED_DEV_CPU: return "cpu";
  case LP_SCHED_DEV_NVIDIA: return "nvidia";
  case LP_SCHED_DEV_QSV: return "qsv";
  case LP_SCHED_DEV_NETINT: return "netint";
  }
  return "?";
}

static const char *const codec_names[LP_SCHED_CODECS] = {"h264", "hevc", "vp8", "vp9", "av1"};
static const char *const preset_names[LP_SCHED_PRESETS] = {"fast", "medium", "slow"};

const char *lp_sched_codec_name(lp_sched_codec_t c) {
  return (unsigned)c < LP_SCHED_CODECS ? codec_names[c] : "?";
}

const char *lp_sched_preset_name(lp_sched_preset_t p) {
  return (unsigned)p < LP_SCHED_PRESETS ? preset_names[p] : "?";
}

int lp_sched_codec_from_name(const char *name, lp_sched_codec_t *out) {
  if (!name) return LP_EINVAL;
  for (int i = 0; i < LP_SCHED_CODECS; i++) {
    if (strcasecmp(name, codec_names[i]) == 0) {
      *out = (lp_sched_codec_t)i;
      return 0;
    }
  }
  if (strcasecmp(name, "avc") == 0) {
    *out = LP_SCHED_CODEC_H264;
    return 0;
  }
  if (strcasecmp(name, "h265") == 0) {
    *out = LP_SCHED_CODEC_HEVC;
    return 0;
  }
  return LP_EINVAL;
}

lp_sched_preset_t lp_sched_preset_from_name(const char *name) {
  static const char *const fast[] = {"ultrafast", "superfast", "veryfast", "fast",
                                     "p1",        "p2",        "p3"};
  static const char *const slow[] = {"slow", "slower", "veryslow", "placebo", "p6", "p7"};
  if (!name) return LP_SCHED_PRESET_MEDIUM;
  for (size_t i = 0; i < LP_ARRAY_LEN(fast); i++)
    if (strcasecmp(name, fast[i]) == 0) return LP_SCHED_PRESET_FAST;
  for (size_t i = 0; i < LP_ARRAY_LEN(slow); i++)
    if (strcasecmp(name, slow[i]) == 0) return LP_SCHED_PRESET_SLOW;
  /* faster, medium, p4, p5 and anything unknown */
  return LP_SCHED_PRESET_MEDIUM;
}

int lp_sched_kind_engines(lp_sched_dev_kind_t kind) {
  switch (kind) {
  case LP_SCHED_DEV_CPU: return 1;
  case LP_SCHED_DEV_QSV: return 2;
  default: return 3;
  }
}

int lp_sched_stage_engine(lp_sched_dev_kind_t kind, lp_sched_stage_t stage) {
  switch (kind) {
  case LP_SCHED_DEV_CPU: return 0;
  case LP_SCHED_DEV_QSV: return stage == LP_SCHED_STAGE_SCALE ? 1 : 0;
  default: return (int)stage; /* decoder, scaler, encoder each their own */
  }
}

const char *lp_sched_engine_name(lp_sched_dev_kind_t kind, int engine) {
  static const char *const nv[] = {"nvdec", "cuda", "nvenc"};
  static const char *const qsv[] = {"video", "video-enhance"};
  static const char *const ni[] = {"decoder", "scaler", "encoder"};
  if (engine < 0 || engine >= lp_sched_kind_engines(kind)) return "?";
  switch (kind) {
  case LP_SCHED_DEV_CPU: return "cpu";
  case LP_SCHED_DEV_NVIDIA: return nv[engine];
  case LP_SCHED_DEV_QSV: return qsv[engine];
  case LP_SCHED_DEV_NETINT: return ni[engine];
  }
  return "?";
}

/* Built-in estimates, ms of engine time per megapixel at the medium tier. The CPU row is per
 * core (x264 medium at 720p measured about 30, veryfast about 16, on one core of a 2-core VM);
 * the others are per device. Calibration replaces them. Decoding on the CPU splits into a part
 * per pixel and one per megabit (one core of the same VM: H.264 2.4 ms/Mpx + 11 ms/Mbit, HEVC
 * 4 + 20, from sources of 6 and 40-55 Mbit/s at 1080p30); elsewhere the per-pixel figure prices
 * a source at LP_SCHED_REF_BPP until calibration measures the split. */
static const struct {
  double decode[LP_SCHED_CODECS];
  double decode_mbit[LP_SCHED_CODECS];
  double scale;
  double encode[LP_SCHED_CODECS];
  double fast, slow; /* multipliers of the medium encode cost */
} defaults[] = {
    [LP_SCHED_DEV_CPU] = {{2.4, 4.0, 4.0, 5.0, 8.0},
                          {11.0, 20.0, 0, 0, 0},
                          1.2,
                          {30.0, 150.0, 45.0, 90.0, 80.0},
                          0.5,
                          2.0},
    [LP_SCHED_DEV_NVIDIA] =
        {{0.5, 0.45, 0.8, 0.5, 0.5}, {0}, 0.05, {0.8, 0.9, 0, 0, 0.9}, 0.7, 1.6},
    [LP_SCHED_DEV_QSV] = {{0.6, 0.6, 0.9, 0.7, 0.7}, {0}, 0.1, {1.2, 1.5, 0, 1.8, 1.5}, 0.7, 1.6},
    [LP_SCHED_DEV_NETINT] = {{0.5, 0.5, 0, 0.6, 0.6}, {0}, 0.1, {0.6, 0.6, 0, 0, 0.6}, 0.8, 1.3},
};

void lp_sched_coefs_default(lp_sched_dev_kind_t kind, double cpus, lp_sched_coefs_t *out) {
  memset(out, 0, sizeof *out);
  if ((unsigned)kind >= LP_ARRAY_LEN(defaults)) return;
  double div = kind == LP_SCHED_DEV_CPU && cpus > 0 ? cpus : 1.0;
  for (int c = 0; c < LP_SCHED_CODECS; c++) {
    out->decode[c] = defaults[kind].decode[c] / div;
    out->decode_mbit[c] = defaults[kind].decode_mbit[c] / div;
    double m = defaults[kind].encode[c] / div;
    out->encode[c][LP_SCHED_PRESET_FAST] = m * defaults[kind].fast;
    out->encode[c][LP_SCHED_PRESET_MEDIUM] = m;
    out->encode[c][LP_SCHED_PRESET_SLOW] = m * defaults[kind].slow;
  }
  out->scale = defaults[kind].scale / div;
}

static double src_fps(const lp_sched_job_t *job) { return job->in_fps > 0 ? job->in_fps : 30.0; }
/* Megabits of source per second: the job's own rate, or LP_SCHED_REF_BPP where unknown. */
static double src_mbps(const lp_sched_job_t *job) {
  if (job->in_mbps > 0 && isfinite(job->in_mbps)) return job->in_mbps;
  return LP_SCHED_REF_BPP * (double)job->in_width * job->in_height * src_fps(job) / MPX;
}
static double out_fps(const lp_sched_job_t *job, const lp_sched_rendition_t *r) {
  return r->fps > 0 ? r->fps : src_fps(job);
}

void lp_sched_job_rates(const lp_sched_job_t *job, lp_sched_rates_t *out) {
  memset(out, 0, sizeof *out);
  double in_px = (double)job->in_width * job->in_height;
  out->decode = in_px * src_fps(job) / MPX;
  out->decode_mbit = src_mbps(job);
  size_t n = LP_MIN(job->n_renditions, (size_t)LP_SCHED_MAX_RENDITIONS);
  for (size_t i = 0; i < n; i++) {
    const lp_sched_rendition_t *r = &job->renditions[i];
    double px = (double)r->width * r->height, fps = out_fps(job, r);
    out->scale += (in_px + px) * fps / MPX;
    if ((unsigned)r->codec < LP_SCHED_CODECS) out->encode[r->codec] += px * fps / MPX;
  }
}

static bool bad_size(int w, int h) { return w <= 0 || h <= 0 || w > 16384 || h > 16384; }
static bool bad_fps(double f) { return !isfinite(f) || f > 1000; }
/* 100 Gbit/s: past any source a segment can carry */
static bool bad_mbps(double m) { return !isfinite(m) || m > 100000; }

int lp_sched_job_validate(const lp_sched_job_t *job, char *err, size_t errlen) {
#define FAIL(...)                                                                                  \
  do {                                                                                             \
    if (err && errlen) snprintf(err, errlen, __VA_ARGS__);                                         \
    return LP_EINVAL;                                                                              \
  } while (0)
  if (!job) FAIL("no job");
  if (bad_size(job->in_width, job->in_height))
    FAIL("source size %dx%d out of range", job->in_width, job->in_height);
  if (bad_fps(job->in_fps)) FAIL("source frame rate %g out of range", job->in_fps);
  if (bad_mbps(job->in_mbps)) FAIL("source bit rate %g Mbit/s out of range", job->in_mbps);
  if ((unsigned)job->in_codec >= LP_SCHED_CODECS) FAIL("source codec %d unknown", job->in_codec);
  if (job->n_renditions == 0 || job->n_renditions > LP_SCHED_MAX_RENDITIONS)
    FAIL("%zu renditions (1 to %d allowed)", job->n_renditions, LP_SCHED_MAX_RENDITIONS);
  for (size_t i = 0; i < job->n_renditions; i++) {
    const lp_sched_rendition_t *r = &job->renditions[i];
    if (bad_size(r->width, r->height))
      FAIL("rendition %zu size %dx%d out of range", i, r->width, r->height);
    if (bad_fps(r->fps)) FAIL("rendition %zu frame rate %g out of range", i, r->fps);
    if ((unsigned)r->codec >= LP_SCHED_CODECS) FAIL("rendition %zu codec %d unknown", i, r->codec);
    if ((unsigned)r->preset >= LP_SCHED_PRESETS)
      FAIL("rendition %zu preset %d unknown", i, r->preset);
  }
  return 0;
#undef FAIL
}

void sched_job_cost(lp_sched_dev_kind_t kind, const lp_sched_coefs_t *c,
                    const lp_sched_coefs_t *host, unsigned cpu_encode, bool cpu_scale,
                    const lp_sched_job_t *job, lp_sched_cost_t *out) {
  memset(out, 0, sizeof *out);
  out->supported = true;
  int e_dec = lp_sched_stage_engine(kind, LP_SCHED_STAGE_DECODE);
  int e_scl = lp_sched_stage_engine(kind, LP_SCHED_STAGE_SCALE);
  int e_enc = lp_sched_stage_engine(kind, LP_SCHED_STAGE_ENCODE);
  double in_px = (double)job->in_width * job->in_height;

  double k = c->decode[job->in_codec];
  if (k <= 0) out->supported = false;
  out->engine[e_dec] +=
      k * in_px * src_fps(job) / MPX + c->decode_mbit[job->in_codec] * src_mbps(job);
  double surfaces = in_px * MEM_DEC_SURFACES;
  int on_device = 0;
  size_t n = LP_MIN(job->n_renditions, (size_t)LP_SCHED_MAX_RENDITIONS);
  for (size_t i = 0; i < n; i++) {
    const lp_sched_rendition_t *r = &job->renditions[i];
    double px = (double)r->width * r->height, fps = out_fps(job, r);
    /* frames scaled in host memory cost the CPU what its own scaling does */
    if (host && cpu_scale)
      out->host_cpu += host->scale * (in_px + px) * fps / MPX;
    else
      out->engine[e_scl] += c->scale * (in_px + px) * fps / MPX;
    /* a rendition the device encodes on the CPU is priced with the CPU's coefficients and
     * holds no encoder session or surfaces of the device */
    bool hosted = host && (cpu_encode & (1u << r->codec));
    double ke = (hosted ? host : c)->encode[r->codec][r->preset];
    if (ke <= 0) out->supported = false;
    if (hosted) {
      out->host_cpu += ke * px * fps / MPX;
      continue;
    }
    out->engine[e_enc] += ke * px * fps / MPX;
    surfaces += px * MEM_ENC_SURFACES;
    on_device++;
  }
  for (int e = 0; e < LP_SCHED_MAX_ENGINES; e++) out->total += out->engine[e];
  out->total += out->host_cpu;
  if (kind != LP_SCHED_DEV_CPU) {
    out->enc_sessions = on_device;
    out->dec_sessions = 1;
    out->mem_bytes = MEM_BASE + (uint64_t)(surfaces * 1.5);
  }
}

void lp_sched_job_cost(lp_sched_dev_kind_t kind, const lp_sched_coefs_t *c,
                       const lp_sched_job_t *job, lp_sched_cost_t *out) {
  sched_job_cost(kind, c, NULL, 0, false, job, out);
}
