/* sched: devices, admission, placement, real-time feedback and the numbers it exposes. */
#include "sched_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_LATE 1.0    /* a stream slower than real time can't keep up */
#define BEHIND_CLEAR 0.9   /* a device behind recovers below this share of the target */
#define GROW_BELOW 0.75    /* budget grows when the ratio stays below this share of the target */
#define GROW_UTIL 0.9      /* ... and the model says the device is at least this full, */
#define PRESSURE_MS 10000  /* ... or it turned work away for its budget this recently */
#define MODEL_RT_MIN 0.03  /* below this predicted ratio, measured ratios are too noisy to judge */
#define MODEL_SLACK 1.15   /* measured over predicted beyond this: the model underestimates */
#define MODEL_GAIN 0.5     /* step towards the measured cost per round of segments */
#define RESIDUE_WU 1e-6    /* wu/s left after releases below this is float residue */
#define LADDER_ALPHA 0.1   /* weight of a new segment in its ladder's fit */
#define LADDER_MIN_OBS 2   /* segments before a ladder's ratio is predicted */
#define LADDER_FIT_OBS 4   /* segments before a ladder's own slope is fitted */
#define LADDER_SPREAD 0.03 /* spread of u (std) below which a ladder's own slope isn't fitted */
#define SLOPE_PRIOR 3.0    /* growth b/a until a ladder's own segments fit one, on 2 CPUs */
#define TEL_Q_MIN_WU 100.0 /* model load below which telemetry can't judge it (other work) */
#define TEL_Q_ALPHA 0.3    /* weight of a new telemetry window in measured over modelled */

static char *dupstr(const char *s) {
  s = s ? s : "";
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Ends a hold (lp_sched_hold): what it held was never committed. */
static void hold_drop(lp_sched_t *s, sched_hold_t *h) {
  free(h->id);
  *h = s->holds[s->n_holds - 1];
  s->n_holds--;
}

static void opts_normalise(lp_sched_opts_t *o) {
  if (!(o->target_rt_ratio > 0 && o->target_rt_ratio <= 1)) o->target_rt_ratio = 0.8;
  if (o->max_sessions < 0) o->max_sessions = 0;
  if (!(o->ewma_alpha > 0 && o->ewma_alpha <= 1)) o->ewma_alpha = 0.2;
  if (!(o->gain > 0 && o->gain <= 1)) o->gain = 0.1;
  if (!(o->corr_min > 0)) o->corr_min = 0.25;
  if (!(o->corr_max > 0)) o->corr_max = 2.0;
  if (o->corr_max < o->corr_min) o->corr_max = o->corr_min;
  if (o->min_segments <= 0) o->min_segments = 3;
  if (o->telemetry_stale_ms == 0) o->telemetry_stale_ms = 10000;
  if (!(o->mem_reserve > 0 && o->mem_reserve < 1)) o->mem_reserve = 0.1;
  if (!o->clock_ms) o->clock_ms = lp_now_ms;
}

void lp_sched_opts_from_config(const lp_config_t *cfg, lp_sched_opts_t *out) {
  lp_sched_opts_t o = LP_SCHED_OPTS_INIT;
  o.target_rt_ratio = cfg->target_rt_ratio;
  o.max_sessions = cfg->max_sessions_auto ? 0 : cfg->max_sessions;
  o.cpu_preset = lp_sched_preset_from_name(cfg->cpu_preset);
  opts_normalise(&o);
  *out = o;
}

int lp_sched_new(const lp_sched_opts_t *opts, lp_sched_t **out) {
  *out = NULL;
  lp_sched_t *s = calloc(1, sizeof *s);
  if (!s) return LP_ENOMEM;
  if (opts)
    s->o = *opts;
  else
    s->o = (lp_sched_opts_t)LP_SCHED_OPTS_INIT;
  opts_normalise(&s->o);
  s->cpu_dev = -1;
  *out = s;
  return 0;
}

void lp_sched_free(lp_sched_t *s) {
  if (!s) return;
  for (int i = 0; i < s->n_devs; i++) {
    sched_device_t *d = &s->devs[i];
    free(d->name);
    free(d->id);
    free(d->driver);
    lp_sched_source_free(d->src);
  }
  free(s->devs);
  for (size_t i = 0; i < s->n_sess; i++) free(s->sess[i].id);
  free(s->sess);
  for (size_t i = 0; i < s->n_holds; i++) free(s->holds[i].id);
  free(s->holds);
  free(s);
}

double sched_budget(const lp_sched_t *s, const sched_device_t *d) {
  return ENGINE_FULL * s->o.target_rt_ratio * d->corr;
}

/* ---- devices ---- */

int lp_sched_add_device(lp_sched_t *s, const lp_sched_device_desc_t *desc, int *index) {
  if (!s || !desc || (unsigned)desc->kind > LP_SCHED_DEV_NETINT || desc->max_enc_sessions < 0 ||
      desc->max_dec_sessions < 0)
    return LP_EINVAL;
  sched_device_t *nd = realloc(s->devs, (size_t)(s->n_devs + 1) * sizeof *nd);
  if (!nd) return LP_ENOMEM;
  s->devs = nd;
  sched_device_t *d = &s->devs[s->n_devs];
  memset(d, 0, sizeof *d);
  d->kind = desc->kind;
  d->name = dupstr(desc->name && desc->name[0] ? desc->name : lp_sched_kind_name(desc->kind));
  d->id = dupstr(desc->id);
  d->driver = dupstr(desc->driver);
  if (!d->name || !d->id || !d->driver) {
    free(d->name);
    free(d->id);
    free(d->driver);
    return LP_ENOMEM;
  }
  d->cpus = desc->cpus > 0 ? desc->cpus : 1.0;
  d->max_enc = desc->max_enc_sessions;
  d->max_dec = desc->max_dec_sessions;
  d->mem_total = desc->mem_total;
  d->cpu_encode = desc->kind == LP_SCHED_DEV_CPU ? 0 : desc->cpu_encode;
  d->cpu_scale = desc->kind != LP_SCHED_DEV_CPU && desc->cpu_scale;
  d->corr = 1.0;
  lp_sched_coefs_default(d->kind, d->cpus, &d->coefs);
  if (d->kind == LP_SCHED_DEV_CPU && s->cpu_dev < 0) s->cpu_dev = s->n_devs;
  if (index) *index = s->n_devs;
  s->n_devs++;
  return 0;
}

int lp_sched_device_count(const lp_sched_t *s) { return s ? s->n_devs : 0; }

static sched_device_t *dev_at(const lp_sched_t *s, int i) {
  return s && i >= 0 && i < s->n_devs ? &s->devs[i] : NULL;
}

int lp_sched_set_coefs(lp_sched_t *s, int dev, const lp_sched_coefs_t *c) {
  sched_device_t *d = dev_at(s, dev);
  if (!d || !c) return LP_EINVAL;
  _Static_assert(sizeof(lp_sched_coefs_t) % sizeof(double) == 0, "coefficients are doubles");
  const double *v = (const double *)c;
  for (size_t i = 0; i < sizeof *c / sizeof(double); i++)
    if (!isfinite(v[i]) || v[i] < 0) return LP_EINVAL;
  d->coefs = *c;
  return 0;
}

int lp_sched_get_coefs(const lp_sched_t *s, int dev, lp_sched_coefs_t *out) {
  sched_device_t *d = dev_at(s, dev);
  if (!d || !out) return LP_EINVAL;
  *out = d->coefs;
  return 0;
}

bool lp_sched_device_calibrated(const lp_sched_t *s, int dev) {
  sched_device_t *d = dev_at(s, dev);
  return d && d->calibrated;
}

int lp_sched_attach_source(lp_sched_t *s, int dev, lp_sched_source_t *src) {
  sched_device_t *d = dev_at(s, dev);
  if (!d) return LP_EINVAL;
  lp_sched_source_free(d->src);
  d->src = src;
  d->src_failed = false;
  d->have_sample = false;
  return 0;
}

void lp_sched_source_free(lp_sched_source_t *src) {
  if (src && src->ops && src->ops->destroy) src->ops->destroy(src);
}

/* Measured over modelled utilisation of d's engines, from a sample whose window saw the same
 * sessions throughout (none admitted anywhere since the previous sample, none released from d
 * during it, every one of d's sessions transcoding): what the admitted work really costs, which
 * a stream's real-time ratio can't tell apart from its own latency. Engines the model gives
 * under TEL_Q_MIN_WU aren't judged: the node's own work and other processes weigh too much
 * there. */
static void judge_cost(lp_sched_t *s, sched_device_t *d) {
  const lp_sched_sample_t *t = &d->sample;
  if (!(t->fields & LP_SCHED_TEL_UTIL) || d->sessions <= 0) return;
  for (int e = 0; e < LP_SCHED_MAX_ENGINES; e++)
    if (d->rel_window.engine[e] > 0) return;
  int dev = (int)(d - s->devs);
  for (size_t i = 0; i < s->n_sess; i++)
    if (s->sess[i].dev == dev && s->sess[i].segments == 0) return;
  double q = 0;
  for (int e = 0; e < lp_sched_kind_engines(d->kind); e++)
    if ((t->util_mask & (1u << e)) && d->committed[e] >= TEL_Q_MIN_WU)
      q = LP_MAX(q, t->util[e] * ENGINE_FULL / d->committed[e]);
  if (q <= 0) return;
  d->tel_q = d->tel_q > 0 ? TEL_Q_ALPHA * q + (1 - TEL_Q_ALPHA) * d->tel_q : q;
  LOGV(LP_V_DEBUG, "capacity: %s measured %.2f of the modelled work (%.2f over windows)", d->name,
       q, d->tel_q);
}

void lp_sched_poll(lp_sched_t *s) {
  if (!s) return;
  uint64_t now = s->o.clock_ms(), admissions = 0;
  for (size_t i = s->n_holds; i-- > 0;)
    if (now >= s->holds[i].until) {
      LOGV(LP_V_VERBOSE, "capacity: the room held for %s lapsed", s->holds[i].id);
      hold_drop(s, &s->holds[i]);
    }
  for (int i = 0; i < s->n_devs; i++) admissions += s->devs[i].admitted;
  for (int i = 0; i < s->n_devs; i++) {
    sched_device_t *d = &s->devs[i];
    if (!d->src) continue;
    lp_sched_sample_t smp;
    memset(&smp, 0, sizeof smp);
    int rc = d->src->ops->sample(d->src, now, &smp);
    if (rc) {
      if (!d->src_failed)
        LOGW("capacity: %s telemetry (%s) failed: %s; using the cost model alone", d->name,
             d->src->ops->name, lp_strerror(rc));
      d->src_failed = true;
      d->have_sample = false;
      continue;
    }
    if (d->src_failed) LOGI("capacity: %s telemetry (%s) is back", d->name, d->src->ops->name);
    d->src_failed = false;
    d->sample = smp;
    d->sample_ms = now;
    d->have_sample = true;
    /* this sample's window began at the previous one (the first has none) */
    bool first = !d->sampled_once;
    if (d->sampled_once)
      d->rel_window = d->rel_since;
    else
      memset(&d->rel_window, 0, sizeof d->rel_window);
    d->sampled_once = true;
    memset(&d->rel_since, 0, sizeof d->rel_since);
    if (!first && admissions == s->admissions_at_sample) judge_cost(s, d);
  }
  s->admissions_at_sample = admissions;
}

static const lp_sched_sample_t *fresh_sample(const lp_sched_t *s, const sched_device_t *d) {
  if (!d->have_sample) return NULL;
  uint64_t now = s->o.clock_ms();
  if (now > d->sample_ms && now - d->sample_ms > s->o.telemetry_stale_ms) return NULL;
  return &d->sample;
}

/* The load an engine carries: what the model committed, or what telemetry measures when that is
 * higher (work of other processes, or a model that is too optimistic). Telemetry measures real
 * time, the model's units are short of it by the correction (a correction of 0.5 says the work
 * costs twice what the model says), so the measurement is put in the model's units first; and
 * work released since the sample's window began was in the measurement but is gone, so it is
 * taken out (right after streams end their load would otherwise count for another window). */
static double engine_load(const lp_sched_t *s, const sched_device_t *d, int e) {
  double load = d->committed[e];
  const lp_sched_sample_t *t = fresh_sample(s, d);
  if (t && (t->fields & LP_SCHED_TEL_UTIL) && (t->util_mask & (1u << e))) {
    double gone = d->rel_window.engine[e] + d->rel_since.engine[e];
    load = LP_MAX(load, t->util[e] * ENGINE_FULL * d->corr - gone);
  }
  return load;
}

static int enc_used(const lp_sched_t *s, const sched_device_t *d) {
  int used = d->enc;
  const lp_sched_sample_t *t = fresh_sample(s, d);
  if (t && (t->fields & LP_SCHED_TEL_ENC_SESSIONS))
    used = LP_MAX(used, t->enc_sessions - d->rel_since.enc);
  return used;
}

/* NVENC sessions open on every NVIDIA device, ours and others'. */
static int nvenc_used(const lp_sched_t *s) {
  int n = 0;
  for (int i = 0; i < s->n_devs; i++)
    if (s->devs[i].kind == LP_SCHED_DEV_NVIDIA) n += enc_used(s, &s->devs[i]);
  return n;
}

/* ---- per-device caps ---- */

int lp_sched_parse_device_caps(const char *text, int **out, size_t *n, char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  if (!text) return 0;
  char *copy = dupstr(text);
  if (!copy) return LP_ENOMEM;
  if (!*lp_strtrim(copy)) {
    free(copy);
    return 0;
  }
  size_t cap = 1;
  for (const char *p = copy; *p; p++) cap += *p == ',';
  int *v = calloc(cap, sizeof *v);
  if (!v) {
    free(copy);
    return LP_ENOMEM;
  }
  size_t k = 0;
  int rc = 0;
  char *tok = copy;
  /* strtok would skip empty entries; an empty entry is a mistake worth reporting */
  for (char *p = copy;; p++) {
    if (*p != ',' && *p != '\0') continue;
    bool last = *p == '\0';
    *p = '\0';
    char *t = lp_strtrim(tok);
    if (strcmp(t, "auto") == 0) {
      v[k++] = 0;
    } else {
      char *end;
      errno = 0;
      long x = strtol(t, &end, 10);
      if (!*t || *end || errno || x <= 0 || x > 1000000) {
        if (err && errlen)
          snprintf(err, errlen,
                   "-perGpuMax entry %zu is \"%s\": use positive numbers or auto, e.g. 18,15,22",
                   k + 1, t);
        rc = LP_EINVAL;
        break;
      }
      v[k++] = (int)x;
    }
    if (last) break;
    tok = p + 1;
  }
  free(copy);
  if (rc) {
    free(v);
    return rc;
  }
  *out = v;
  *n = k;
  return 0;
}

int lp_sched_apply_device_caps(lp_sched_t *s, const int *caps, size_t n, char *err, size_t errlen) {
  if (!s) return LP_EINVAL;
  if (n == 0) return 0;
  if (n != 1 && n != (size_t)s->n_devs) {
    if (err && errlen)
      snprintf(err, errlen,
               "-perGpuMax has %zu entries for %d devices: give one, or one per device", n,
               s->n_devs);
    return LP_EINVAL;
  }
  for (int i = 0; i < s->n_devs; i++) {
    int c = caps[n == 1 ? 0 : (size_t)i];
    if (c < 0) return LP_EINVAL;
    s->devs[i].cap_sessions = c;
  }
  return 0;
}

void lp_sched_set_max_sessions(lp_sched_t *s, int n) {
  if (s) s->o.max_sessions = n > 0 ? n : 0;
}

int lp_sched_set_target(lp_sched_t *s, double ratio) {
  if (!s || !(ratio > 0 && ratio <= 1)) return LP_EINVAL;
  s->o.target_rt_ratio = ratio;
  return 0;
}

void lp_sched_set_nvenc_system_cap(lp_sched_t *s, int n) {
  if (s) s->nvenc_system_cap = n > 0 ? n : 0;
}

/* ---- admission ---- */

int lp_sched_set_device_down(lp_sched_t *s, int dev, bool down) {
  if (dev < 0 || dev >= s->n_devs) return LP_EINVAL;
  s->devs[dev].down = down;
  return 0;
}

const char *lp_sched_reason_name(lp_sched_reason_t r) {
  switch (r) {
  case LP_SCHED_FIT: return "fits";
  case LP_SCHED_R_NO_DEVICE: return "no device";
  case LP_SCHED_R_INVALID: return "invalid job";
  case LP_SCHED_R_MAX_SESSIONS: return "maxSessions reached";
  case LP_SCHED_R_DEVICE_CAP: return "device stream cap";
  case LP_SCHED_R_UNSUPPORTED: return "codec not supported";
  case LP_SCHED_R_DEVICE_DOWN: return "device quarantined";
  case LP_SCHED_R_TOO_LARGE: return "job larger than the device";
  case LP_SCHED_R_OVERLOADED: return "device behind real time";
  case LP_SCHED_R_ENC_SESSIONS: return "hardware sessions";
  case LP_SCHED_R_MEMORY: return "device memory";
  case LP_SCHED_R_LATENCY: return "stream latency";
  case LP_SCHED_R_BUSY: return "work budget full";
  }
  return "?";
}

static void appendf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void appendf(char *buf, size_t cap, const char *fmt, ...) {
  size_t n = strlen(buf);
  if (n + 1 >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + n, cap - n, fmt, ap);
  va_end(ap);
}

/* The CPU device that carries d's CPU encodes and scaling, or -1 (d is a CPU, runs nothing on
 * the CPU, or the scheduler has no CPU device). */
static int host_of(const lp_sched_t *s, const sched_device_t *d) {
  return d->kind != LP_SCHED_DEV_CPU && (d->cpu_encode || d->cpu_scale) ? s->cpu_dev : -1;
}

/* What of d's work runs on the host's CPU, for refusals. */
static const char *host_work(const sched_device_t *d) {
  return d->cpu_encode && d->cpu_scale ? "CPU encodes and scaling"
         : d->cpu_scale                ? "CPU scaling"
                                       : "CPU encodes";
}

/* A job's cost on d, its CPU encodes and scaling moved to the host's CPU. */
static void cost_on(const lp_sched_t *s, const sched_device_t *d, const lp_sched_job_t *job,
                    lp_sched_cost_t *c) {
  int h = host_of(s, d);
  sched_job_cost(d->kind, &d->coefs, h >= 0 ? &s->devs[h].coefs : NULL, d->cpu_encode, d->cpu_scale,
                 job, c);
}

/* ---- each ladder's latency ---- */

static uint64_t fnv(uint64_t h, uint64_t v) { return sched_fnv(h, &v, sizeof v); }

int sched_rate_band(const lp_sched_job_t *j) {
  /* the rates the cost model prices (an unknown rate is the reference's: band 0) */
  lp_sched_rates_t r;
  lp_sched_job_rates(j, &r);
  double band = round(log2(r.decode_mbit / r.decode / LP_SCHED_REF_BPP));
  if (!isfinite(band)) return 0;
  return (int)LP_MIN(SCHED_RATE_BANDS, LP_MAX(-SCHED_RATE_BANDS, band));
}

/* The shape of a job: source size, frame rate, codec and bits per pixel (a band of them: a
 * grainy source decodes several times slower than a clean one of its size), and every
 * rendition. */
static uint64_t ladder_key(const lp_sched_job_t *j) {
  uint64_t h = SCHED_FNV_INIT;
  h = fnv(h, (uint64_t)(int64_t)sched_rate_band(j));
  h = fnv(h, (uint64_t)j->in_width);
  h = fnv(h, (uint64_t)j->in_height);
  h = fnv(h, j->in_fps > 0 ? (uint64_t)llround(j->in_fps * 1000) : 0);
  h = fnv(h, (uint64_t)j->in_codec);
  h = fnv(h, (uint64_t)j->n_renditions);
  for (size_t i = 0; i < j->n_renditions && i < LP_SCHED_MAX_RENDITIONS; i++) {
    const lp_sched_rendition_t *r = &j->renditions[i];
    h = fnv(h, (uint64_t)r->width);
    h = fnv(h, (uint64_t)r->height);
    h = fnv(h, r->fps > 0 ? (uint64_t)llround(r->fps * 1000) : 0);
    h = fnv(h, (uint64_t)r->codec);
    h = fnv(h, (uint64_t)r->preset);
  }
  return h ? h : 1;
}

static const sched_ladder_t *ladder_find(const lp_sched_t *s, int dev, uint64_t key) {
  for (int i = 0; i < SCHED_LADDERS; i++)
    if (s->ladders[i].key == key && s->ladders[i].dev == dev) return &s->ladders[i];
  return NULL;
}

/* The ladder's slot, made (over the least recently used one when all are taken) if new. */
static sched_ladder_t *ladder_get(lp_sched_t *s, int dev, uint64_t key) {
  sched_ladder_t *l = (sched_ladder_t *)ladder_find(s, dev, key), *old = &s->ladders[0];
  if (l) return l;
  for (int i = 0; i < SCHED_LADDERS; i++) {
    if (!s->ladders[i].key) {
      old = &s->ladders[i];
      break;
    }
    if (s->ladders[i].used_ms < old->used_ms) old = &s->ladders[i];
  }
  memset(old, 0, sizeof *old);
  old->k = -1;
  old->key = key;
  old->dev = dev;
  return old;
}

/* The slope b/a of a ladder's segments where their loads are spread enough to fit one, else
 * < 0. */
static double ladder_slope(const sched_ladder_t *l) {
  double mu = l->su / l->w, mr = l->sr / l->w;
  double vu = l->suu / l->w - mu * mu;
  if (vu < LADDER_SPREAD * LADDER_SPREAD) return -1;
  double slope = (l->sur / l->w - mu * mr) / vu;
  double icpt = mr - slope * mu;
  return slope <= 0 ? 0 : LP_MIN(SCHED_SLOPE_MAX, slope / LP_MAX(icpt, 0.01));
}

/* The slope b/a a ladder is given until its own segments fit one. On the CPU it shrinks with
 * the CPUs beyond two (where it was measured): with many cores a stream has cores to spare beside
 * the others' work until the machine fills, which the work budget bounds. */
static double slope_prior(const sched_device_t *d) {
  return d->kind == LP_SCHED_DEV_CPU ? SLOPE_PRIOR * 2 / LP_MAX(2.0, d->cpus) : SLOPE_PRIOR;
}

/* r = a + b·u for a ladder; false until it has LADDER_MIN_OBS segments. The line goes through
 * the weighted means with the slope its segments last fitted (ladder_observe), or the prior
 * until they have. */
static bool ladder_fit(const lp_sched_t *s, const sched_ladder_t *l, double *a, double *b) {
  if (!l || l->n < LADDER_MIN_OBS || !(l->w > 0)) return false;
  double mu = l->su / l->w, mr = l->sr / l->w;
  double k = l->k >= 0 ? l->k : slope_prior(&s->devs[l->dev]);
  *a = mr / (1 + k * mu);
  *b = k * *a;
  return true;
}

/* How much later than its price's share of d a stream whose source is in rate band `band` runs
 * alone: calibration's reference ladder (lp_sched_coefs_t.latency), interpolated in log2 of the
 * rate between the two rates it was measured at and held beyond them; 1 where not measured. */
static double latency_factor(const sched_device_t *d, int band) {
  const lp_sched_coefs_t *c = &d->coefs;
  double x[2], f[2];
  int n = 0;
  for (int i = 0; i < 2; i++) {
    if (!(c->latency[i] >= 1 && c->latency_bpp[i] > 0)) continue;
    x[n] = log2(c->latency_bpp[i] / LP_SCHED_REF_BPP);
    f[n++] = c->latency[i];
  }
  if (n == 0) return 1;
  if (n == 1 || fabs(x[1] - x[0]) < 1e-9) return f[0];
  int lo = x[0] < x[1] ? 0 : 1, hi = 1 - lo;
  if (band <= x[lo]) return f[lo];
  if (band >= x[hi]) return f[hi];
  return f[lo] + (f[hi] - f[lo]) * (band - x[lo]) / (x[hi] - x[lo]);
}

/* The line of a stream on d of cost c whose source is in rate band `band`: its ladder's
 * (ladder_fit), or, on the CPU, one from its cost while its ladder has taught the node too
 * little. Alone, a stream can't finish sooner than its work spread over every core, and a real
 * pipeline, with its serial parts, finishes later: a is its cost's share of the device, as
 * corrected, times the latency calibration measured for such a source (latency_factor), and the
 * slope is the prior. Beside other work the line can refuse a heavy stream the budget alone
 * would admit, and alone one that would run past the target by itself. It is only as good as
 * the price. A GPU's engine runs one stream's frames over units the model counts as one, so its
 * share says little of that stream's latency: there the budget alone judges an unseen ladder.
 * *learnt: whether the line is the ladder's own. */
static bool stream_line(const lp_sched_t *s, const sched_device_t *d, uint64_t key, int band,
                        const lp_sched_cost_t *c, double *a, double *b, bool *learnt) {
  *learnt = ladder_fit(s, ladder_find(s, (int)(d - s->devs), key), a, b);
  if (*learnt) return true;
  if (d->kind != LP_SCHED_DEV_CPU || !(d->corr > 0)) return false;
  double w = 0;
  for (int e = 0; e < lp_sched_kind_engines(d->kind); e++) w = LP_MAX(w, c->engine[e]);
  *a = latency_factor(d, band) * w / (ENGINE_FULL * d->corr);
  *b = slope_prior(d) * *a;
  return true;
}

/* The work on d besides a stream's own (own), with a job's added (extra): the fullest engine's
 * committed wu/s / 1000, with the host CPU's where the device encodes there. This is u, the
 * load the ladder fits are against. */
static double others_u(const lp_sched_t *s, const sched_device_t *d, const lp_sched_cost_t *own,
                       const lp_sched_cost_t *extra) {
  double u = 0;
  for (int e = 0; e < lp_sched_kind_engines(d->kind); e++)
    u = LP_MAX(u, d->committed[e] - (own ? own->engine[e] : 0) + (extra ? extra->engine[e] : 0));
  double hown = own ? own->host_cpu : 0, hextra = extra ? extra->host_cpu : 0;
  int h = hown > 0 || hextra > 0 ? host_of(s, d) : -1;
  if (h >= 0) u = LP_MAX(u, s->devs[h].committed[0] - hown + hextra);
  return LP_MAX(0.0, u) / ENGINE_FULL;
}

/* One segment of a stream: its ratio r at the load it shared the device with. */
static void ladder_observe(lp_sched_t *s, const sched_session_t *ss, double r) {
  sched_ladder_t *l = ladder_get(s, ss->dev, ss->ladder);
  l->in_width = ss->in_width;
  l->in_height = ss->in_height;
  l->in_fps = ss->in_fps;
  l->n_renditions = ss->n_renditions;
  l->rate_band = ss->rate_band;
  double u = others_u(s, &s->devs[ss->dev], &ss->cost, NULL), k = 1 - LADDER_ALPHA;
  l->w = k * l->w + LADDER_ALPHA;
  l->su = k * l->su + LADDER_ALPHA * u;
  l->sr = k * l->sr + LADDER_ALPHA * r;
  l->suu = k * l->suu + LADDER_ALPHA * u * u;
  l->sur = k * l->sur + LADDER_ALPHA * u * r;
  l->n++;
  s->ladders_gen++;
  /* a slope, once fitted, outlives the spread it came from: streams running long at one load
   * would otherwise bring the prior back */
  double fit = l->n >= LADDER_FIT_OBS ? ladder_slope(l) : -1;
  if (fit >= 0) l->k = fit;
  l->used_ms = s->o.clock_ms();
  if (LP_LOG_ON(LP_V_DEBUG)) {
    double a = 0, b = 0;
    ladder_fit(s, l, &a, &b);
    LOGV(LP_V_DEBUG,
         "capacity: stream %s on %s at %.2f of real time beside %.2f (ladder %.2f + %.2f u)",
         ss->id, s->devs[ss->dev].name, r, u, a, b);
  }
}

/* What a job of cost c placed on d adds to the resources of a stream on device o: d's engines
 * when o is d; where the job runs on the CPU (the CPU device's engine, or a GPU's encodes that
 * run there), that CPU's work, which o shares when o is that CPU device or a device encoding
 * on it. false when the job touches nothing o uses. */
static bool job_beside(const lp_sched_t *s, int d, const lp_sched_cost_t *c, int o,
                       const lp_sched_cost_t *o_cost, lp_sched_cost_t *extra) {
  memset(extra, 0, sizeof *extra);
  if (o == d) {
    *extra = *c;
    return true;
  }
  const sched_device_t *dd = &s->devs[d], *od = &s->devs[o];
  int host = dd->kind == LP_SCHED_DEV_CPU ? d : c->host_cpu > 0 ? host_of(s, dd) : -1;
  double cpu = dd->kind == LP_SCHED_DEV_CPU ? c->engine[0] : c->host_cpu;
  if (host < 0 || !(cpu > 0)) return false;
  if (o == host) {
    extra->engine[0] = cpu;
    return true;
  }
  if (o_cost->host_cpu > 0 && host_of(s, od) == host) {
    extra->host_cpu = cpu;
    return true;
  }
  return false;
}

/* Whether a job of cost c, ladder key and rate band would keep itself, and every stream it
 * shares resources with (on d, or on the CPU its encodes run on), within the target ratio, by
 * each one's line (stream_line: learnt, or from its cost on the CPU). */
static lp_sched_reason_t latency_fit(const lp_sched_t *s, const sched_device_t *d,
                                     const lp_sched_cost_t *c, uint64_t key, int band, char *why,
                                     size_t wlen) {
  int dev = (int)(d - s->devs);
  double a, b, target = s->o.target_rt_ratio;
  bool learnt;
  if (key && stream_line(s, d, key, band, c, &a, &b, &learnt)) {
    /* beside it: what runs on d, and on the CPU its encodes would run on */
    double u = others_u(s, d, NULL, NULL);
    int h = c->host_cpu > 0 ? host_of(s, d) : -1;
    if (h >= 0) u = LP_MAX(u, s->devs[h].committed[0] / ENGINE_FULL);
    double r = a + b * u;
    if (r > target) {
      snprintf(why, wlen, "%s: the job would run at %.2f of real time > %.2f%s", d->name, r, target,
               learnt ? "" : " (a ladder not seen yet, judged by its cost)");
      return LP_SCHED_R_LATENCY;
    }
  }
  for (size_t i = 0; i < s->n_sess; i++) {
    const sched_session_t *o = &s->sess[i];
    lp_sched_cost_t extra;
    const sched_device_t *od = &s->devs[o->dev];
    if (o->flagged || !job_beside(s, dev, c, o->dev, &o->cost, &extra) ||
        !stream_line(s, od, o->ladder, o->rate_band, &o->cost, &a, &b, &learnt))
      continue;
    double r = a + b * others_u(s, od, &o->cost, &extra);
    if (r > target) {
      if (od == d)
        snprintf(why, wlen,
                 "%s: its %dx%d stream (%d renditions) would run at %.2f of real time > %.2f",
                 d->name, o->in_width, o->in_height, o->n_renditions, r, target);
      else
        snprintf(why, wlen,
                 "%s: the %dx%d stream (%d renditions) on %s would run at %.2f of real time > "
                 "%.2f",
                 d->name, o->in_width, o->in_height, o->n_renditions, od->name, r, target);
      return LP_SCHED_R_LATENCY;
    }
  }
  return LP_SCHED_FIT;
}

/* Whether a job of cost c fits on d now; on success *score is the fullest engine's share of its
 * budget after the job (placement picks the lowest). The CPU encodes of a device that has them
 * (c->host_cpu) must fit the CPU device's budget too. */
static lp_sched_reason_t dev_fit(const lp_sched_t *s, const sched_device_t *d,
                                 const lp_sched_cost_t *c, uint64_t key, int band, double *score,
                                 char *why, size_t wlen) {
  int hi = c->host_cpu > 0 ? host_of(s, d) : -1;
  const sched_device_t *h = hi >= 0 ? &s->devs[hi] : NULL;
  if (d->cap_sessions > 0 && d->sessions >= d->cap_sessions) {
    snprintf(why, wlen, "%s streams %d/%d", d->name, d->sessions, d->cap_sessions);
    return LP_SCHED_R_DEVICE_CAP;
  }
  if (!c->supported) {
    snprintf(why, wlen, "%s can't run a codec of the job", d->name);
    return LP_SCHED_R_UNSUPPORTED;
  }
  if (d->down) {
    snprintf(why, wlen, "%s quarantined after a failure", d->name);
    return LP_SCHED_R_DEVICE_DOWN;
  }
  if (d->behind || (h && h->behind)) {
    const sched_device_t *b = d->behind ? d : h;
    snprintf(why, wlen, "%s behind real time (ratio %.2f > %.2f)%s", b->name, b->rt,
             s->o.target_rt_ratio, b == h ? ", where this device's encodes run" : "");
    return LP_SCHED_R_OVERLOADED;
  }
  double budget = sched_budget(s, d);
  int ne = lp_sched_kind_engines(d->kind);
  for (int e = 0; e < ne; e++) {
    if (c->engine[e] > budget) {
      snprintf(why, wlen, "%s %s: job needs %.0f wu/s, budget %.0f", d->name,
               lp_sched_engine_name(d->kind, e), c->engine[e], budget);
      return LP_SCHED_R_TOO_LARGE;
    }
  }
  if (h && c->host_cpu > sched_budget(s, h)) {
    snprintf(why, wlen, "%s: its %s need %.0f wu/s of %s, budget %.0f", d->name, host_work(d),
             c->host_cpu, h->name, sched_budget(s, h));
    return LP_SCHED_R_TOO_LARGE;
  }
  const lp_sched_sample_t *t = fresh_sample(s, d);
  if (d->max_enc > 0 && c->enc_sessions > 0) {
    int used = enc_used(s, d);
    if (used + c->enc_sessions > d->max_enc) {
      snprintf(why, wlen, "%s encoder sessions %d+%d > %d", d->name, used, c->enc_sessions,
               d->max_enc);
      return LP_SCHED_R_ENC_SESSIONS;
    }
  }
  if (d->kind == LP_SCHED_DEV_NVIDIA && s->nvenc_system_cap > 0 && c->enc_sessions > 0) {
    int used = nvenc_used(s);
    if (used + c->enc_sessions > s->nvenc_system_cap) {
      snprintf(why, wlen, "%s NVENC sessions of the system %d+%d > %d", d->name, used,
               c->enc_sessions, s->nvenc_system_cap);
      return LP_SCHED_R_ENC_SESSIONS;
    }
  }
  if (d->max_dec > 0 && c->dec_sessions > 0) {
    int used = d->dec;
    if (t && (t->fields & LP_SCHED_TEL_DEC_SESSIONS))
      used = LP_MAX(used, t->dec_sessions - d->rel_since.dec);
    if (used + c->dec_sessions > d->max_dec) {
      snprintf(why, wlen, "%s decoder sessions %d+%d > %d", d->name, used, c->dec_sessions,
               d->max_dec);
      return LP_SCHED_R_ENC_SESSIONS;
    }
  }
  if (c->mem_bytes > 0) {
    uint64_t total = d->mem_total, used = d->mem;
    if (t && (t->fields & LP_SCHED_TEL_MEM)) {
      if (!total) total = t->mem_total;
      uint64_t gone = d->rel_since.mem;
      used = LP_MAX(used, t->mem_used > gone ? t->mem_used - gone : 0);
    }
    if (total && (double)(used + c->mem_bytes) > (double)total * (1.0 - s->o.mem_reserve)) {
      snprintf(why, wlen, "%s memory %llu+%llu MiB > %.0f%% of %llu MiB", d->name,
               (unsigned long long)(used >> 20), (unsigned long long)(c->mem_bytes >> 20),
               (1.0 - s->o.mem_reserve) * 100, (unsigned long long)(total >> 20));
      return LP_SCHED_R_MEMORY;
    }
  }
  double worst = 0;
  for (int e = 0; e < ne; e++) {
    if (c->engine[e] <= 0) continue;
    double load = engine_load(s, d, e);
    if (load + c->engine[e] > budget) {
      snprintf(why, wlen, "%s %s %.0f+%.0f > %.0f wu/s", d->name, lp_sched_engine_name(d->kind, e),
               load, c->engine[e], budget);
      return LP_SCHED_R_BUSY;
    }
    worst = LP_MAX(worst, (load + c->engine[e]) / budget);
  }
  if (h) {
    double hb = sched_budget(s, h), load = engine_load(s, h, 0);
    if (load + c->host_cpu > hb) {
      snprintf(why, wlen, "%s: its %s on %s %.0f+%.0f > %.0f wu/s", d->name, host_work(d), h->name,
               load, c->host_cpu, hb);
      return LP_SCHED_R_BUSY;
    }
    worst = LP_MAX(worst, (load + c->host_cpu) / hb);
  }
  lp_sched_reason_t lat = latency_fit(s, d, c, key, band, why, wlen);
  if (lat != LP_SCHED_FIT) return lat;
  *score = worst;
  return LP_SCHED_FIT;
}

static void probe_job(lp_sched_job_t *j) {
  memset(j, 0, sizeof *j);
  j->in_width = 1280;
  j->in_height = 720;
  j->in_fps = 30;
  j->in_codec = LP_SCHED_CODEC_H264;
  j->n_renditions = 1;
  j->renditions[0] =
      (lp_sched_rendition_t){640, 360, 30, LP_SCHED_CODEC_H264, LP_SCHED_PRESET_MEDIUM};
}

/* Finds the device for a job; fills v and, on success, the job's cost there. held: holds that
 * count as sessions against -maxSessions (their work is on the devices already, place_held). */
static int place(lp_sched_t *s, const lp_sched_job_t *job, lp_sched_verdict_t *v,
                 lp_sched_cost_t *cost_out, size_t held) {
  v->reason = LP_SCHED_FIT;
  v->device = -1;
  v->detail[0] = '\0';
  lp_sched_job_t probe;
  if (!job) {
    probe_job(&probe);
    job = &probe;
  }
  if (lp_sched_job_validate(job, v->detail, sizeof v->detail)) {
    v->reason = LP_SCHED_R_INVALID;
    return LP_EINVAL;
  }
  if (s->n_devs == 0) {
    v->reason = LP_SCHED_R_NO_DEVICE;
    snprintf(v->detail, sizeof v->detail, "no transcoding device");
    return LP_ECAPACITY;
  }
  if (s->o.max_sessions > 0 && (int)(s->n_sess + held) >= s->o.max_sessions) {
    v->reason = LP_SCHED_R_MAX_SESSIONS;
    snprintf(v->detail, sizeof v->detail, "sessions %zu/%d (-maxSessions)", s->n_sess + held,
             s->o.max_sessions);
    return LP_ECAPACITY;
  }
  uint64_t key = job == &probe ? 0 : ladder_key(job);
  int band = sched_rate_band(job);
  double best = INFINITY;
  lp_sched_reason_t worst_reason = LP_SCHED_FIT;
  int worst_dev = -1;
  for (int i = 0; i < s->n_devs; i++) {
    sched_device_t *d = &s->devs[i];
    lp_sched_cost_t c;
    cost_on(s, d, job, &c);
    double score = 0;
    char why[160];
    why[0] = '\0';
    lp_sched_reason_t r = dev_fit(s, d, &c, key, band, &score, why, sizeof why);
    if (r == LP_SCHED_R_BUSY) d->pressed_ms = s->o.clock_ms();
    if (r == LP_SCHED_FIT) {
      if (score < best) {
        best = score;
        v->device = i;
        if (cost_out) *cost_out = c;
      }
      continue;
    }
    /* the most transient refusal speaks for the node: "full right now" beats "never fits" */
    if (worst_dev < 0 || r > worst_reason) {
      worst_reason = r;
      worst_dev = i;
    }
    appendf(v->detail, sizeof v->detail, "%s%s", v->detail[0] ? "; " : "", why);
  }
  if (v->device >= 0) {
    v->detail[0] = '\0';
    snprintf(v->detail, sizeof v->detail, "%s, fullest engine at %.0f%% of budget after the job",
             s->devs[v->device].name, best * 100);
    return 0;
  }
  v->reason = worst_reason;
  v->device = worst_dev;
  return LP_ECAPACITY;
}

/* Adds what a session of cost c holds to device dev (and to the CPU its encodes run on):
 * admission commits it, a check beside held room adds the holds for its length. */
static void charge(lp_sched_t *s, int dev, const lp_sched_cost_t *c) {
  sched_device_t *d = &s->devs[dev];
  int hi = c->host_cpu > 0 ? host_of(s, d) : -1;
  if (hi >= 0) {
    s->devs[hi].committed[0] += c->host_cpu;
    s->devs[hi].hosted++;
    d->host_cpu += c->host_cpu;
  }
  for (int e = 0; e < LP_SCHED_MAX_ENGINES; e++) d->committed[e] += c->engine[e];
  d->enc += c->enc_sessions;
  d->dec += c->dec_sessions;
  d->mem += c->mem_bytes;
  d->sessions++;
}

/* place() beside the held room as well: the holds are added to their devices for the check and
 * the devices put back exactly as they were after it (work refused for budget still marks the
 * device pressed). */
static int place_held(lp_sched_t *s, const lp_sched_job_t *job, lp_sched_verdict_t *v,
                      lp_sched_cost_t *cost_out) {
  if (!s->n_holds) return place(s, job, v, cost_out, 0);
  sched_device_t *saved = malloc((size_t)s->n_devs * sizeof *saved);
  if (!saved) return LP_ENOMEM;
  memcpy(saved, s->devs, (size_t)s->n_devs * sizeof *saved);
  for (size_t i = 0; i < s->n_holds; i++) charge(s, s->holds[i].dev, &s->holds[i].cost);
  int rc = place(s, job, v, cost_out, s->n_holds);
  for (int i = 0; i < s->n_devs; i++) saved[i].pressed_ms = s->devs[i].pressed_ms;
  memcpy(s->devs, saved, (size_t)s->n_devs * sizeof *saved);
  free(saved);
  return rc;
}

int lp_sched_check(lp_sched_t *s, const lp_sched_job_t *job, lp_sched_verdict_t *v) {
  lp_sched_verdict_t tmp;
  if (!v) v = &tmp;
  if (!s) return LP_EINVAL;
  return place_held(s, job, v, NULL);
}

static sched_hold_t *find_hold(const lp_sched_t *s, const char *id) {
  for (size_t i = 0; id && i < s->n_holds; i++)
    if (strcmp(s->holds[i].id, id) == 0) return &s->holds[i];
  return NULL;
}

static sched_session_t *find_session(const lp_sched_t *s, const char *id);

int lp_sched_hold(lp_sched_t *s, const char *session_id, const lp_sched_job_t *job, uint64_t ttl_ms,
                  bool *made, lp_sched_verdict_t *v) {
  lp_sched_verdict_t tmp;
  if (!v) v = &tmp;
  if (made) *made = false;
  if (!s || !session_id || !*session_id || !job || ttl_ms == 0) return LP_EINVAL;
  const sched_session_t *ss = find_session(s, session_id);
  const sched_hold_t *held = find_hold(s, session_id);
  if (ss || held) {
    v->reason = LP_SCHED_FIT;
    v->device = ss ? ss->dev : held->dev;
    snprintf(v->detail, sizeof v->detail, "%s (already %s)", s->devs[v->device].name,
             ss ? "placed" : "held");
    return 0;
  }
  lp_sched_cost_t c;
  int rc = place_held(s, job, v, &c);
  if (rc) return rc;
  if (s->n_holds == s->cap_holds) {
    size_t ncap = s->cap_holds ? s->cap_holds * 2 : 8;
    sched_hold_t *nh = realloc(s->holds, ncap * sizeof *nh);
    if (!nh) return LP_ENOMEM;
    s->holds = nh;
    s->cap_holds = ncap;
  }
  char *id = dupstr(session_id);
  if (!id) return LP_ENOMEM;
  s->holds[s->n_holds++] = (sched_hold_t){id, v->device, c, s->o.clock_ms() + ttl_ms};
  if (made) *made = true;
  return 0;
}

int lp_sched_unhold(lp_sched_t *s, const char *session_id) {
  sched_hold_t *h = s ? find_hold(s, session_id) : NULL;
  if (!h) return LP_ENOENT;
  hold_drop(s, h);
  return 0;
}

int lp_sched_holds(const lp_sched_t *s) { return s ? (int)s->n_holds : 0; }

static sched_session_t *find_session(const lp_sched_t *s, const char *id) {
  if (!id) return NULL;
  for (size_t i = 0; i < s->n_sess; i++)
    if (strcmp(s->sess[i].id, id) == 0) return &s->sess[i];
  return NULL;
}

int lp_sched_admit(lp_sched_t *s, const char *session_id, const lp_sched_job_t *job,
                   lp_sched_verdict_t *v) {
  lp_sched_verdict_t tmp;
  if (!v) v = &tmp;
  if (!s || !session_id || !*session_id || !job) return LP_EINVAL;
  sched_hold_t *held = find_hold(s, session_id);
  if (held) hold_drop(s, held); /* weighed now: it stands for itself */
  sched_session_t *old = find_session(s, session_id);
  if (old) {
    v->reason = LP_SCHED_FIT;
    v->device = old->dev;
    snprintf(v->detail, sizeof v->detail, "%s (already placed)", s->devs[old->dev].name);
    return 0;
  }
  lp_sched_cost_t c;
  int rc = place(s, job, v, &c, 0);
  if (rc) {
    if (v->device >= 0) s->devs[v->device].refused++;
    return rc;
  }
  if (s->n_sess == s->cap_sess) {
    size_t ncap = s->cap_sess ? s->cap_sess * 2 : 16;
    sched_session_t *ns = realloc(s->sess, ncap * sizeof *ns);
    if (!ns) return LP_ENOMEM;
    s->sess = ns;
    s->cap_sess = ncap;
  }
  sched_session_t *ss = &s->sess[s->n_sess];
  memset(ss, 0, sizeof *ss);
  ss->id = dupstr(session_id);
  if (!ss->id) return LP_ENOMEM;
  ss->dev = v->device;
  ss->ladder = ladder_key(job);
  ss->in_width = job->in_width;
  ss->in_height = job->in_height;
  ss->in_fps = job->in_fps;
  ss->n_renditions = (int)job->n_renditions;
  ss->rate_band = sched_rate_band(job);
  ss->cost = c;
  s->n_sess++;
  charge(s, v->device, &c);
  s->devs[v->device].admitted++;
  return 0;
}

int lp_sched_session_device(const lp_sched_t *s, const char *session_id) {
  const sched_session_t *ss = s ? find_session(s, session_id) : NULL;
  return ss ? ss->dev : -1;
}

int lp_sched_session_info(const lp_sched_t *s, const char *session_id,
                          lp_sched_session_info_t *out) {
  const sched_session_t *ss = s ? find_session(s, session_id) : NULL;
  if (!ss || !out) return LP_ENOENT;
  out->device = ss->dev;
  out->rt_ratio = ss->rt;
  out->segments = ss->segments;
  out->behind = ss->flagged;
  out->cost = ss->cost.total;
  out->lone_rt = out->slope = 0;
  double a, b;
  if (ladder_fit(s, ladder_find(s, ss->dev, ss->ladder), &a, &b)) {
    out->lone_rt = a;
    out->slope = b;
  }
  return 0;
}

int lp_sched_sessions(const lp_sched_t *s) { return s ? (int)s->n_sess : 0; }

int lp_sched_release(lp_sched_t *s, const char *session_id) {
  sched_session_t *ss = s ? find_session(s, session_id) : NULL;
  if (!ss) return LP_ENOENT;
  sched_device_t *d = &s->devs[ss->dev];
  for (int e = 0; e < LP_SCHED_MAX_ENGINES; e++) {
    d->committed[e] = LP_MAX(0.0, d->committed[e] - ss->cost.engine[e]);
    if (d->src) d->rel_since.engine[e] += ss->cost.engine[e];
  }
  if (d->src) {
    d->rel_since.enc += ss->cost.enc_sessions;
    d->rel_since.dec += ss->cost.dec_sessions;
    d->rel_since.mem += ss->cost.mem_bytes;
  }
  d->enc = LP_MAX(0, d->enc - ss->cost.enc_sessions);
  d->dec = LP_MAX(0, d->dec - ss->cost.dec_sessions);
  d->mem = d->mem > ss->cost.mem_bytes ? d->mem - ss->cost.mem_bytes : 0;
  int hi = ss->cost.host_cpu > 0 ? host_of(s, d) : -1;
  if (hi >= 0) {
    sched_device_t *h = &s->devs[hi];
    h->committed[0] = LP_MAX(0.0, h->committed[0] - ss->cost.host_cpu);
    if (h->src) h->rel_since.engine[0] += ss->cost.host_cpu;
    /* float residue must not leave the CPU's load in this device's model_rt */
    d->host_cpu -= ss->cost.host_cpu;
    if (d->host_cpu < RESIDUE_WU) d->host_cpu = 0;
    if (--h->hosted <= 0) {
      h->hosted = 0;
      if (h->sessions <= 0) memset(h->committed, 0, sizeof h->committed); /* float residue */
    }
  }
  d->sessions--;
  if (d->sessions <= 0) {
    /* nothing left to measure: forget the lateness (float residue too), keep the correction */
    d->sessions = 0;
    d->host_cpu = 0;
    if (d->hosted <= 0) memset(d->committed, 0, sizeof d->committed);
    d->enc = d->dec = 0;
    d->mem = 0;
    d->rt = 0;
    d->segments = 0;
    if (d->behind) LOGI("capacity: %s idle, no longer behind", d->name);
    d->behind = false;
  }
  free(ss->id);
  *ss = s->sess[s->n_sess - 1];
  s->n_sess--;
  return 0;
}

/* ---- live correction ---- */

/* The real-time ratio the model predicts for the device: its fullest engine's committed work as
 * a share of that engine's time (the sessions on it run side by side). A device whose sessions
 * encode on the host's CPU is as late as that CPU, which other streams share. */
static double model_rt(const lp_sched_t *s, const sched_device_t *d) {
  double u = 0;
  for (int e = 0; e < lp_sched_kind_engines(d->kind); e++)
    u = LP_MAX(u, d->committed[e] / ENGINE_FULL);
  int h = d->host_cpu > 0 ? host_of(s, d) : -1;
  if (h >= 0) u = LP_MAX(u, s->devs[h].committed[0] / ENGINE_FULL);
  return u;
}

/* How full the model says the device is: its fullest engine against the budget. */
static double model_util(const lp_sched_t *s, const sched_device_t *d) {
  return model_rt(s, d) * ENGINE_FULL / sched_budget(s, d);
}

/* The measured ratio to hold against model_rt: the streams' own ratios weighed by their cost.
 * A plain average over segments is pulled down by light streams, which finish early whatever
 * the load, while the heavy ones show how far the device is stretched. 0 when none reported. */
static double measured_rt(const lp_sched_t *s, int dev) {
  double num = 0, den = 0;
  for (size_t i = 0; i < s->n_sess; i++) {
    const sched_session_t *o = &s->sess[i];
    if (o->dev != dev || o->segments == 0 || o->flagged) continue;
    num += o->cost.total * o->rt;
    den += o->cost.total;
  }
  return den > 0 ? num / den : 0;
}

/* Measured over modelled cost of d's work: above 1 the work costs more than the model says. From
 * telemetry where the device has utilisation (judge_cost), else from the streams' ratios, which
 * carry each stream's own latency as well. 1 while not judged. */
static double cost_q(const lp_sched_t *s, const sched_device_t *d, int dev) {
  const lp_sched_sample_t *t = fresh_sample(s, d);
  if (t && (t->fields & LP_SCHED_TEL_UTIL)) return d->tel_q > 0 ? d->tel_q : 1;
  double pred = model_rt(s, d), meas = measured_rt(s, dev);
  return pred >= MODEL_RT_MIN && meas > 0 ? meas / pred : 1;
}

/* Work was refused for lack of budget lately: there is demand to test a larger budget with. */
static bool pressed(const lp_sched_t *s, const sched_device_t *d) {
  uint64_t now = s->o.clock_ms();
  return d->pressed_ms && now >= d->pressed_ms && now - d->pressed_ms <= PRESSURE_MS;
}

lp_sched_health_t lp_sched_report_segment(lp_sched_t *s, const char *session_id,
                                          uint64_t transcode_ms, uint64_t duration_ms) {
  sched_session_t *ss = s ? find_session(s, session_id) : NULL;
  if (!ss) return LP_SCHED_ON_TIME;
  sched_device_t *d = &s->devs[ss->dev];
  if (duration_ms == 0) return ss->flagged ? LP_SCHED_STREAM_BEHIND : LP_SCHED_ON_TIME;
  const double a = s->o.ewma_alpha, target = s->o.target_rt_ratio;
  double r = (double)transcode_ms / (double)duration_ms;

  ss->rt = ss->segments ? a * r + (1 - a) * ss->rt : r;
  ss->segments++;
  if (ss->flagged) return LP_SCHED_STREAM_BEHIND; /* its lateness is its own, not the device's */
  /* the first segment carries the encoders' start */
  if (ss->segments >= 2) ladder_observe(s, ss, r);

  d->rt = d->segments ? a * r + (1 - a) * d->rt : r;
  d->segments++;
  if (d->segments >= s->o.min_segments) {
    if (!d->behind && d->rt > target) {
      d->behind = true;
      LOGW("capacity: %s behind: real-time ratio %.2f > target %.2f; refusing new sessions there",
           d->name, d->rt, target);
    } else if (d->behind && d->rt < target * BEHIND_CLEAR) {
      d->behind = false;
      LOGI("capacity: %s back within target: real-time ratio %.2f", d->name, d->rt);
    }
    /* One step per round of segments, whatever the number of streams feeding it. */
    double step = s->o.gain / LP_MAX(1, d->sessions);
    double before = d->corr;
    /* measured over predicted: above 1 the work costs more than the model says (pipeline
     * overheads, small renditions, other load), below 1 less */
    double q = cost_q(s, d, ss->dev);
    /* the streams cost more than they were admitted for: the budget moves towards what the
     * measurements say (q is an average already, so the step is larger), whether or not the
     * device is past its target yet */
    bool under = q > MODEL_SLACK && 1 / q < d->corr;
    /* Past the target, the budget shrinks while the device runs later than the corrected model
     * expects of the work committed there (model_rt / corr, which is the target when the budget
     * is full). Work committed past the budget, as after a lower target is set at run time, runs
     * past the target by the model's own account: that is no reason to doubt the model. */
    if (d->rt > target && d->rt > model_rt(s, d) / d->corr)
      d->corr *= 1 - step * (d->rt - target) / d->rt;
    if (under) {
      double want = LP_MAX(s->o.corr_min, 1 / q);
      if (want < d->corr)
        d->corr += LP_MIN(1.0, MODEL_GAIN / LP_MAX(1, d->sessions)) * (want - d->corr);
    } else if (q < 1 && d->rt < target * GROW_BELOW &&
               (model_util(s, d) >= GROW_UTIL || pressed(s, d))) {
      d->corr = LP_MIN(d->corr * (1 + step * (1 - d->rt / target)), LP_MAX(d->corr, 1 / q));
    }
    d->corr = LP_MIN(s->o.corr_max, LP_MAX(s->o.corr_min, d->corr));
    if (fabs(d->corr - before) > 1e-12)
      LOGV(LP_V_DEBUG, "capacity: %s correction %.3f -> %.3f (ratio %.2f)", d->name, before,
           d->corr, d->rt);
  }

  if (ss->segments >= s->o.min_segments && ss->rt > STREAM_LATE) {
    double others = 0;
    int n = 0;
    for (size_t i = 0; i < s->n_sess; i++) {
      sched_session_t *o = &s->sess[i];
      if (o == ss || o->dev != ss->dev || o->segments == 0 || o->flagged) continue;
      others += o->rt;
      n++;
    }
    /* Others well within the target: this stream is the problem. Others late too: the device
     * is, and nobody is dropped; new sessions are refused until it recovers. */
    if (n == 0 || others / n <= target) {
      ss->flagged = true;
      LOGW("capacity: stream %s on %s can't keep real time (ratio %.2f over %d segments)", ss->id,
           d->name, ss->rt, ss->segments);
      return LP_SCHED_STREAM_BEHIND;
    }
  }
  return d->behind ? LP_SCHED_DEVICE_BEHIND : LP_SCHED_ON_TIME;
}

/* ---- numbers ---- */

int lp_sched_device_info(const lp_sched_t *s, int dev, lp_sched_device_info_t *out) {
  const sched_device_t *d = dev_at(s, dev);
  if (!d || !out) return LP_EINVAL;
  memset(out, 0, sizeof *out);
  snprintf(out->name, sizeof out->name, "%s", d->name);
  out->kind = d->kind;
  out->calibrated = d->calibrated;
  out->n_engines = lp_sched_kind_engines(d->kind);
  const lp_sched_sample_t *t = fresh_sample(s, d);
  for (int e = 0; e < LP_SCHED_MAX_ENGINES; e++) {
    out->measured[e] = -1;
    if (e >= out->n_engines) continue;
    out->budget[e] = sched_budget(s, d);
    out->committed[e] = d->committed[e];
    if (t && (t->fields & LP_SCHED_TEL_UTIL) && (t->util_mask & (1u << e)))
      out->measured[e] = t->util[e] * ENGINE_FULL;
  }
  out->correction = d->corr;
  out->cost_ratio = d->tel_q;
  out->rt_ratio = d->rt;
  out->behind = d->behind;
  out->sessions = d->sessions;
  out->max_sessions = d->cap_sessions;
  out->enc_sessions = d->enc;
  out->max_enc_sessions = d->max_enc;
  out->mem_committed = d->mem;
  out->mem_total = d->mem_total;
  if (!out->mem_total && t && (t->fields & LP_SCHED_TEL_MEM)) out->mem_total = t->mem_total;
  out->admitted = d->admitted;
  out->refused = d->refused;
  out->host_cpu = d->host_cpu;
  out->telemetry = !d->src ? -1 : d->have_sample && !d->src_failed ? 1 : 0;
  return 0;
}

int lp_sched_capacity_for(const lp_sched_t *s, const lp_sched_job_t *job) {
  if (!s) return 0;
  lp_sched_job_t probe;
  if (!job) {
    probe_job(&probe);
    job = &probe;
  }
  if (lp_sched_job_validate(job, NULL, 0)) return 0;
  long total = 0;
  /* The CPU's budget is shared: devices that encode on it take their part first (the rest of
   * their job runs on the device), the CPU device counts what is left. So is the driver's NVENC
   * session cap across NVIDIA devices, counting the renditions each encodes itself. */
  int host = s->cpu_dev;
  long nvenc_left = s->nvenc_system_cap > 0 ? s->nvenc_system_cap : -1;
  double host_left = host >= 0 ? sched_budget(s, &s->devs[host]) : 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < s->n_devs; i++) {
      const sched_device_t *d = &s->devs[i];
      if ((d->kind == LP_SCHED_DEV_CPU) != (pass == 1)) continue;
      lp_sched_cost_t c;
      cost_on(s, d, job, &c);
      if (!c.supported) continue;
      double n = INFINITY, budget = sched_budget(s, d);
      for (int e = 0; e < lp_sched_kind_engines(d->kind); e++)
        if (c.engine[e] > 0)
          n = fmin(n, floor((i == host && e == 0 ? host_left : budget) / c.engine[e]));
      if (c.host_cpu > 0) n = fmin(n, floor(host_left / c.host_cpu));
      if (d->max_enc > 0 && c.enc_sessions > 0) n = fmin(n, d->max_enc / c.enc_sessions);
      if (d->max_dec > 0 && c.dec_sessions > 0) n = fmin(n, d->max_dec / c.dec_sessions);
      if (d->mem_total && c.mem_bytes)
        n = fmin(n, floor((double)d->mem_total * (1 - s->o.mem_reserve) / (double)c.mem_bytes));
      if (d->cap_sessions > 0) n = fmin(n, d->cap_sessions);
      bool nvenc = d->kind == LP_SCHED_DEV_NVIDIA && nvenc_left >= 0 && c.enc_sessions > 0;
      if (nvenc) n = fmin(n, (double)(nvenc_left / c.enc_sessions));
      if (!(isfinite(n) && n > 0)) continue;
      if (c.host_cpu > 0) host_left = fmax(0, host_left - n * c.host_cpu);
      if (nvenc) nvenc_left -= (long)n * c.enc_sessions;
      total += (long)n;
    }
  if (s->o.max_sessions > 0 && total > s->o.max_sessions) total = s->o.max_sessions;
  return total > 1000000 ? 1000000 : (int)total;
}

/* The ladders learnt so far, most recently seen first. */
static int ladders_json(const lp_sched_t *s, cJSON *obj) {
  cJSON *arr = cJSON_AddArrayToObject(obj, "ladders");
  if (!arr) return LP_ENOMEM;
  int order[SCHED_LADDERS], n = 0;
  for (int i = 0; i < SCHED_LADDERS; i++)
    if (s->ladders[i].key) order[n++] = i;
  for (int i = 1; i < n; i++) /* insertion sort: 64 at most */
    for (int j = i; j > 0 && s->ladders[order[j]].used_ms > s->ladders[order[j - 1]].used_ms; j--) {
      int t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  for (int i = 0; i < n; i++) {
    const sched_ladder_t *l = &s->ladders[order[i]];
    cJSON *o = cJSON_CreateObject();
    if (!o) return LP_ENOMEM;
    cJSON_AddItemToArray(arr, o);
    char in[64];
    snprintf(in, sizeof in, "%dx%d@%.2f", l->in_width, l->in_height, l->in_fps);
    cJSON_AddStringToObject(o, "device", s->devs[l->dev].name);
    cJSON_AddStringToObject(o, "input", in);
    cJSON_AddNumberToObject(o, "renditions", l->n_renditions);
    /* the centre of its sources' band of rates */
    cJSON_AddNumberToObject(o, "bitsPerPixel", LP_SCHED_REF_BPP * pow(2, l->rate_band));
    cJSON_AddNumberToObject(o, "segments", (double)l->n);
    double a, b;
    if (ladder_fit(s, l, &a, &b)) {
      cJSON_AddNumberToObject(o, "loneRatio", a);
      cJSON_AddNumberToObject(o, "slope", b);
    } else {
      cJSON_AddNullToObject(o, "loneRatio");
      cJSON_AddNullToObject(o, "slope");
    }
    cJSON_AddBoolToObject(o, "slopeFitted", l->k >= 0);
  }
  return 0;
}

int lp_sched_fill_json(const lp_sched_t *s, cJSON *obj) {
  if (!s || !obj) return LP_EINVAL;
  if (!cJSON_AddNumberToObject(obj, "targetRealtimeRatio", s->o.target_rt_ratio)) return LP_ENOMEM;
  if (s->o.max_sessions > 0) {
    if (!cJSON_AddNumberToObject(obj, "maxSessions", s->o.max_sessions)) return LP_ENOMEM;
  } else if (!cJSON_AddStringToObject(obj, "maxSessions", "auto")) {
    return LP_ENOMEM;
  }
  if (!cJSON_AddNumberToObject(obj, "sessions", (double)s->n_sess) ||
      !cJSON_AddNumberToObject(obj, "holds", (double)s->n_holds))
    return LP_ENOMEM;
  if (!cJSON_AddNumberToObject(obj, "nvencSystemCap", s->nvenc_system_cap)) return LP_ENOMEM;
  cJSON *arr = cJSON_AddArrayToObject(obj, "devices");
  if (!arr) return LP_ENOMEM;
  for (int i = 0; i < s->n_devs; i++) {
    lp_sched_device_info_t in;
    lp_sched_device_info(s, i, &in);
    cJSON *o = cJSON_CreateObject();
    if (!o) return LP_ENOMEM;
    cJSON_AddItemToArray(arr, o);
    cJSON_AddStringToObject(o, "name", in.name);
    cJSON_AddStringToObject(o, "kind", lp_sched_kind_name(in.kind));
    cJSON_AddBoolToObject(o, "calibrated", in.calibrated);
    cJSON_AddNumberToObject(o, "sessions", in.sessions);
    cJSON_AddNumberToObject(o, "maxSessions", in.max_sessions);
    cJSON_AddNumberToObject(o, "realtimeRatio", in.rt_ratio);
    cJSON_AddNumberToObject(o, "correction", in.correction);
    const sched_device_t *dd = &s->devs[i];
    if (dd->coefs.latency[0] > 0 || dd->coefs.latency[1] > 0) {
      cJSON *lat = sched_latency_to_json(&dd->coefs);
      if (lat) cJSON_AddItemToObject(o, "latency", lat);
    }
    if (in.cost_ratio > 0)
      cJSON_AddNumberToObject(o, "costRatio", in.cost_ratio);
    else
      cJSON_AddNullToObject(o, "costRatio");
    cJSON_AddBoolToObject(o, "behind", in.behind);
    cJSON_AddNumberToObject(o, "encoderSessions", in.enc_sessions);
    cJSON_AddNumberToObject(o, "maxEncoderSessions", in.max_enc_sessions);
    cJSON_AddNumberToObject(o, "memCommitted", (double)in.mem_committed);
    cJSON_AddNumberToObject(o, "memTotal", (double)in.mem_total);
    cJSON_AddNumberToObject(o, "admitted", (double)in.admitted);
    cJSON_AddNumberToObject(o, "refused", (double)in.refused);
    if (s->devs[i].cpu_encode || s->devs[i].cpu_scale)
      cJSON_AddNumberToObject(o, "hostCpu", in.host_cpu);
    /* which telemetry the device has, and whether its last sample came in: null without one
     * (a missing source was skipped at start) */
    const sched_device_t *d = &s->devs[i];
    if (d->src) {
      cJSON *t = cJSON_AddObjectToObject(o, "telemetry");
      if (!t || !cJSON_AddStringToObject(t, "source", d->src->ops->name) ||
          !cJSON_AddBoolToObject(t, "working", in.telemetry == 1))
        return LP_ENOMEM;
    } else if (!cJSON_AddNullToObject(o, "telemetry")) {
      return LP_ENOMEM;
    }
    cJSON *engs = cJSON_AddArrayToObject(o, "engines");
    if (!engs) return LP_ENOMEM;
    for (int e = 0; e < in.n_engines; e++) {
      cJSON *eo = cJSON_CreateObject();
      if (!eo) return LP_ENOMEM;
      cJSON_AddItemToArray(engs, eo);
      cJSON_AddStringToObject(eo, "name", lp_sched_engine_name(in.kind, e));
      cJSON_AddNumberToObject(eo, "budget", in.budget[e]);
      cJSON_AddNumberToObject(eo, "committed", in.committed[e]);
      if (in.measured[e] >= 0)
        cJSON_AddNumberToObject(eo, "measured", in.measured[e]);
      else
        cJSON_AddNullToObject(eo, "measured");
    }
  }
  return ladders_json(s, obj);
}

void lp_sched_log_summary(const lp_sched_t *s) {
  if (!s) return;
  if (s->o.max_sessions > 0)
    LOGI("capacity: target real-time ratio %.2f, maxSessions %d, %d devices, room for %d probe "
         "jobs (720p30 -> 360p30)",
         s->o.target_rt_ratio, s->o.max_sessions, s->n_devs, lp_sched_capacity_for(s, NULL));
  else
    LOGI("capacity: target real-time ratio %.2f, maxSessions auto, %d devices, room for %d probe "
         "jobs (720p30 -> 360p30)",
         s->o.target_rt_ratio, s->n_devs, lp_sched_capacity_for(s, NULL));
  for (int i = 0; i < s->n_devs; i++) {
    lp_sched_device_info_t in;
    lp_sched_device_info(s, i, &in);
    char line[512] = "";
    for (int e = 0; e < in.n_engines; e++)
      appendf(line, sizeof line, "%s%s %.0f/%.0f wu/s", e ? ", " : "",
              lp_sched_engine_name(in.kind, e), in.committed[e], in.budget[e]);
    LOGI("capacity: %s (%s, %s): %s; streams %d (cap %d); encoder sessions %d (cap %d); "
         "correction %.2f",
         in.name, lp_sched_kind_name(in.kind), in.calibrated ? "calibrated" : "not calibrated",
         line, in.sessions, in.max_sessions, in.enc_sessions, in.max_enc_sessions, in.correction);
  }
}
