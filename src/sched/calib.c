/* sched calibration: measured coefficients per device, cached in <datadir>/capacity.json and
 * trusted only while the device, its driver and the FFmpeg build stay the same. Also the JSON
 * file helpers it shares with ladders.c. */
#include "sched_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE_NAME "capacity.json"
/* 2: CPU stages timed by CPU time over the CPU count (1 timed one job's wall clock); 3: decoding
 * split into a part per pixel and one per megabit of source; 4: the high-rate decoding clip made at
 * constant quality from grain; 5: the CPU's reference ladder timed end to end (latency) */
#define CACHE_VERSION 5
#define FILE_MAX (1u << 20) /* the data dir's JSON files are read up to this size */
#define CACHE_KEEP 32 /* records of devices no longer present are kept up to this many in all */
#define REF_IN_W 1920
#define REF_IN_H 1080
#define REF_OUT_W 1280
#define REF_OUT_H 720
/* The second source rate H.264 and HEVC decoding is measured at, bits per pixel (56 Mbit/s at
 * 1080p30, what x264 veryfast chose for a grainy source at its default quality). The clip gets
 * it from grain at constant quality, as such a source does (hw_bench_req_t.bpp). */
#define HI_BPP 0.9
/* The part per megabit may take at most this share of decoding's cost at the reference rate, so
 * the part per pixel keeps the rest whatever noise the two runs carry. */
#define MBIT_SHARE_MAX 0.8
/* The reference ladder's frame rate, and the most its latency may exceed its price's share by
 * (beyond it the measurement, not the pipeline, is what went wrong). */
#define REF_FPS 30.0
#define LATENCY_MAX 4.0

cJSON *sched_latency_to_json(const lp_sched_coefs_t *c) {
  cJSON *o = cJSON_CreateObject(), *bpp = NULL, *fac = NULL;
  if (!o || !(bpp = cJSON_AddArrayToObject(o, "bpp")) ||
      !(fac = cJSON_AddArrayToObject(o, "factor"))) {
    cJSON_Delete(o);
    return NULL;
  }
  for (int i = 0; i < 2; i++) {
    cJSON *b = cJSON_CreateNumber(c->latency_bpp[i]), *f = cJSON_CreateNumber(c->latency[i]);
    if (!b || !f || !cJSON_AddItemToArray(bpp, b) || !cJSON_AddItemToArray(fac, f)) {
      cJSON_Delete(b);
      cJSON_Delete(f);
      cJSON_Delete(o);
      return NULL;
    }
  }
  return o;
}

cJSON *sched_coefs_to_json(const lp_sched_coefs_t *c) {
  cJSON *o = cJSON_CreateObject(), *dec = NULL, *bits = NULL, *enc = NULL;
  if (!o || !(dec = cJSON_AddObjectToObject(o, "decode")) ||
      !(bits = cJSON_AddObjectToObject(o, "decodeMbit")) ||
      !cJSON_AddNumberToObject(o, "scale", c->scale) ||
      !(enc = cJSON_AddObjectToObject(o, "encode")))
    goto fail;
  for (int k = 0; k < LP_SCHED_CODECS; k++) {
    const char *cn = lp_sched_codec_name((lp_sched_codec_t)k);
    if (!cJSON_AddNumberToObject(dec, cn, c->decode[k]) ||
        !cJSON_AddNumberToObject(bits, cn, c->decode_mbit[k]))
      goto fail;
    cJSON *p = cJSON_AddObjectToObject(enc, cn);
    if (!p) goto fail;
    for (int q = 0; q < LP_SCHED_PRESETS; q++)
      if (!cJSON_AddNumberToObject(p, lp_sched_preset_name((lp_sched_preset_t)q), c->encode[k][q]))
        goto fail;
  }
  cJSON *lat = sched_latency_to_json(c);
  if (!lat) goto fail;
  cJSON_AddItemToObject(o, "latency", lat);
  return o;
fail:
  cJSON_Delete(o);
  return NULL;
}

const char *sched_json_str(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool sched_json_num(const cJSON *o, const char *key, double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return false;
  *out = v->valuedouble;
  return true;
}

cJSON *sched_json_file(const char *path, int version, const char *array, const char *what,
                       const char *then, int *rc) {
  char *text = NULL;
  size_t len = 0;
  *rc = lp_file_read(path, FILE_MAX, &text, &len);
  if (*rc == LP_ENOENT) {
    *rc = 0;
    return NULL;
  }
  if (*rc) {
    LOGW("capacity: can't read %s: %s; %s", path, lp_strerror(*rc), then);
    return NULL;
  }
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
  if (!root || !cJSON_IsNumber(ver) || ver->valueint != version ||
      !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, array))) {
    LOGW("capacity: %s is not %s of this version; %s", path, what, then);
    cJSON_Delete(root);
    *rc = LP_EPROTO;
    return NULL;
  }
  return root;
}

uint64_t sched_fnv(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

/* A non-negative number member: LP_EINVAL otherwise. */
static int num(const cJSON *o, const char *key, double *out) {
  double v;
  if (!sched_json_num(o, key, &v) || v < 0) return LP_EINVAL;
  *out = v;
  return 0;
}

int sched_coefs_from_json(const cJSON *o, lp_sched_coefs_t *c) {
  lp_sched_coefs_t t;
  memset(&t, 0, sizeof t);
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(o, "decode");
  const cJSON *bits = cJSON_GetObjectItemCaseSensitive(o, "decodeMbit");
  const cJSON *enc = cJSON_GetObjectItemCaseSensitive(o, "encode");
  if (!cJSON_IsObject(dec) || !cJSON_IsObject(bits) || !cJSON_IsObject(enc) ||
      num(o, "scale", &t.scale))
    return LP_EINVAL;
  for (int k = 0; k < LP_SCHED_CODECS; k++) {
    const char *cn = lp_sched_codec_name((lp_sched_codec_t)k);
    if (num(dec, cn, &t.decode[k]) || num(bits, cn, &t.decode_mbit[k])) return LP_EINVAL;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(enc, cn);
    if (!cJSON_IsObject(p)) return LP_EINVAL;
    for (int q = 0; q < LP_SCHED_PRESETS; q++)
      if (num(p, lp_sched_preset_name((lp_sched_preset_t)q), &t.encode[k][q])) return LP_EINVAL;
  }
  /* the reference ladder's latency: optional (a record without it has none measured) */
  const cJSON *lat = cJSON_GetObjectItemCaseSensitive(o, "latency");
  const cJSON *bpp = cJSON_GetObjectItemCaseSensitive(lat, "bpp");
  const cJSON *fac = cJSON_GetObjectItemCaseSensitive(lat, "factor");
  for (int i = 0; i < 2 && cJSON_GetArraySize(bpp) == 2 && cJSON_GetArraySize(fac) == 2; i++) {
    const cJSON *b = cJSON_GetArrayItem(bpp, i), *f = cJSON_GetArrayItem(fac, i);
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(f) || !(b->valuedouble > 0) ||
        !isfinite(b->valuedouble) || !(f->valuedouble >= 1 && f->valuedouble <= LATENCY_MAX))
      continue;
    t.latency_bpp[i] = b->valuedouble;
    t.latency[i] = f->valuedouble;
  }
  *c = t;
  return 0;
}

static bool same_device(const cJSON *rec, const sched_device_t *d) {
  const char *kind = sched_json_str(rec, "kind"), *id = sched_json_str(rec, "id");
  return kind && id && strcmp(kind, lp_sched_kind_name(d->kind)) == 0 && strcmp(id, d->id) == 0;
}

/* Why a record of the same device can't be used, or NULL when it can. */
static const char *stale_reason(const cJSON *rec, const sched_device_t *d, const char *ffmpeg,
                                char *buf, size_t len) {
  const char *drv = sched_json_str(rec, "driver"), *ff = sched_json_str(rec, "ffmpeg");
  lp_sched_coefs_t c;
  if (!drv || !ff || sched_coefs_from_json(cJSON_GetObjectItemCaseSensitive(rec, "coefs"), &c))
    return "the record is malformed";
  if (strcmp(drv, d->driver) != 0) {
    snprintf(buf, len, "driver changed (%s -> %s)", drv, d->driver);
    return buf;
  }
  if (strcmp(ff, ffmpeg) != 0) {
    snprintf(buf, len, "FFmpeg changed (%s -> %s)", ff, ffmpeg);
    return buf;
  }
  if (d->kind == LP_SCHED_DEV_CPU) {
    double cpus = 0;
    if (num(rec, "cpus", &cpus) || fabs(cpus - d->cpus) > 0.01) {
      snprintf(buf, len, "CPUs changed (%g -> %g)", cpus, d->cpus);
      return buf;
    }
  }
  /* the codecs a device encodes on the CPU are not measured on it (their figures are 0), so a
   * record is only good for the same set; a record without the field measured every codec */
  double hosted = 0;
  num(rec, "cpuEncode", &hosted);
  if (hosted != (double)d->cpu_encode) {
    snprintf(buf, len, "codecs encoded on the CPU changed (mask %g -> %u)", hosted, d->cpu_encode);
    return buf;
  }
  /* nor is the scaling of a device whose frames are scaled on the CPU */
  double scaled = 0;
  num(rec, "cpuScale", &scaled);
  if (scaled != (d->cpu_scale ? 1 : 0)) {
    snprintf(buf, len, "scaling on the CPU changed (%s -> %s)", scaled ? "yes" : "no",
             d->cpu_scale ? "yes" : "no");
    return buf;
  }
  return NULL;
}

static double ref_pixels(const lp_sched_bench_req_t *r) {
  double in = (double)r->in_width * r->in_height, out = (double)r->out_width * r->out_height;
  switch (r->stage) {
  case LP_SCHED_STAGE_DECODE: return in;
  case LP_SCHED_STAGE_SCALE: return in + out;
  default: return out;
  }
}

/* One measurement turned into ms per megapixel; *coef 0 where the device can't run it. For
 * decode, *bpp is the source's rate: asked for, then as made. */
static int measure(const sched_device_t *d, const lp_sched_device_desc_t *desc,
                   const lp_sched_bench_req_t *req, lp_sched_bench_fn bench, void *ud, double *coef,
                   double *bpp) {
  double fps = 0, made = req->bpp > 0 ? req->bpp : LP_SCHED_REF_BPP;
  int rc = bench(ud, desc, req, &fps, &made);
  if (rc == LP_EUNSUPP) {
    *coef = 0;
    return 0;
  }
  if (rc) return rc;
  if (!isfinite(fps) || fps <= 0) {
    LOGW("capacity: calibration of %s returned %g frames/s for %s %s", d->name, fps,
         req->stage == LP_SCHED_STAGE_DECODE ? "decode" : "encode",
         lp_sched_codec_name(req->codec));
    return LP_EINVAL;
  }
  *coef = 1000.0 / (fps * ref_pixels(req) / 1e6);
  if (bpp) *bpp = isfinite(made) && made > 0 ? made : 0;
  return 0;
}

/* Decoding costs per pixel and per bit of the source: measured at the reference rate and at
 * HI_BPP, the line through the two gives both parts (for H.264 and HEVC; the other codecs are
 * priced per pixel at the reference rate). */
static int measure_decode(const sched_device_t *d, const lp_sched_device_desc_t *desc,
                          lp_sched_bench_req_t r, lp_sched_bench_fn bench, void *ud, double *pix,
                          double *mbit) {
  double lo = 0, hi = 0, c_lo = 0, c_hi = 0;
  *mbit = 0;
  r.bpp = LP_SCHED_REF_BPP;
  int rc = measure(d, desc, &r, bench, ud, &c_lo, &lo);
  *pix = c_lo;
  if (rc || c_lo == 0 || (r.codec != LP_SCHED_CODEC_H264 && r.codec != LP_SCHED_CODEC_HEVC))
    return rc;
  r.bpp = HI_BPP;
  if ((rc = measure(d, desc, &r, bench, ud, &c_hi, &hi)) || c_hi == 0) return rc;
  if (!(lo > 0 && hi > 2 * lo)) {
    LOGW("capacity: %s: sources of %.2f and %.2f bits per pixel are too alike to split %s "
         "decoding into a cost per pixel and per bit; it is priced per pixel",
         d->name, lo, hi, lp_sched_codec_name(r.codec));
    return 0;
  }
  double b = (c_hi - c_lo) / (hi - lo);
  b = LP_MIN(LP_MAX(b, 0.0), MBIT_SHARE_MAX * c_lo / lo);
  *mbit = b;
  *pix = c_lo - b * lo;
  return 0;
}

/* The device as the benchmark callback sees it. */
static lp_sched_device_desc_t desc_of(const sched_device_t *d) {
  return (lp_sched_device_desc_t){d->kind,       d->name,     d->id,      d->driver,
                                  d->cpus,       d->max_enc,  d->max_dec, d->mem_total,
                                  d->cpu_encode, d->cpu_scale};
}

static int run_bench(const sched_device_t *d, lp_sched_bench_fn bench, void *ud,
                     lp_sched_coefs_t *out) {
  lp_sched_device_desc_t desc = desc_of(d);
  lp_sched_coefs_t c;
  memset(&c, 0, sizeof c);
  lp_sched_bench_req_t r = {LP_SCHED_STAGE_DECODE,
                            LP_SCHED_CODEC_H264,
                            LP_SCHED_PRESET_MEDIUM,
                            REF_IN_W,
                            REF_IN_H,
                            REF_OUT_W,
                            REF_OUT_H,
                            0,
                            NULL,
                            0};
  int rc;
  for (int k = 0; k < LP_SCHED_CODECS; k++) {
    r.codec = (lp_sched_codec_t)k;
    if ((rc = measure_decode(d, &desc, r, bench, ud, &c.decode[k], &c.decode_mbit[k]))) return rc;
  }
  r.stage = LP_SCHED_STAGE_SCALE;
  r.codec = LP_SCHED_CODEC_H264;
  /* scaling on the CPU is priced with the CPU device's figure */
  if (!d->cpu_scale && (rc = measure(d, &desc, &r, bench, ud, &c.scale, NULL))) return rc;
  r.stage = LP_SCHED_STAGE_ENCODE;
  static const lp_sched_preset_t order[] = {LP_SCHED_PRESET_MEDIUM, LP_SCHED_PRESET_FAST,
                                            LP_SCHED_PRESET_SLOW};
  for (int k = 0; k < LP_SCHED_CODECS; k++) {
    /* what a device encodes on the CPU is priced with the CPU device's figures */
    if (d->cpu_encode & (1u << k)) continue;
    r.codec = (lp_sched_codec_t)k;
    for (size_t q = 0; q < LP_ARRAY_LEN(order); q++) {
      r.preset = order[q];
      if ((rc = measure(d, &desc, &r, bench, ud, &c.encode[k][order[q]], NULL))) return rc;
      if (q == 0 && c.encode[k][LP_SCHED_PRESET_MEDIUM] == 0) break; /* codec not there at all */
    }
  }
  *out = c;
  return 0;
}

/* go-livepeer's ladder for a 1080p30 source: calibration's reference ladder. */
static const int ref_ladder[][2] = {{1280, 720}, {854, 480}, {640, 360}, {426, 240}};

/* The reference ladder end to end on the CPU at a source of *bpp bits per pixel (as made, out):
 * its wall-clock real-time ratio over its price's share of the device by the coefficients c. */
static int measure_ladder(const sched_device_t *d, const lp_sched_device_desc_t *desc,
                          lp_sched_preset_t preset, lp_sched_bench_fn bench, void *ud,
                          const lp_sched_coefs_t *c, double *bpp, double *factor) {
  lp_sched_job_t job = {.in_width = REF_IN_W,
                        .in_height = REF_IN_H,
                        .in_fps = REF_FPS,
                        .in_codec = LP_SCHED_CODEC_H264,
                        .n_renditions = LP_ARRAY_LEN(ref_ladder)};
  for (size_t i = 0; i < job.n_renditions; i++)
    job.renditions[i] = (lp_sched_rendition_t){ref_ladder[i][0], ref_ladder[i][1], REF_FPS,
                                               LP_SCHED_CODEC_H264, preset};
  lp_sched_bench_req_t r = {
      LP_SCHED_STAGE_LADDER, LP_SCHED_CODEC_H264, preset, REF_IN_W, REF_IN_H, 0, 0, *bpp,
      job.renditions,        job.n_renditions};
  double fps = 0;
  int rc = bench(ud, desc, &r, &fps, bpp);
  if (rc) return rc;
  if (!isfinite(fps) || fps <= 0 || !isfinite(*bpp) || *bpp <= 0) return LP_EINVAL;
  job.in_mbps = *bpp * REF_IN_W * REF_IN_H * REF_FPS / 1e6;
  lp_sched_cost_t cost;
  sched_job_cost(d->kind, c, NULL, 0, false, &job, &cost);
  double share = 0, ratio = REF_FPS / fps;
  for (int e = 0; e < lp_sched_kind_engines(d->kind); e++)
    share = LP_MAX(share, cost.engine[e] / ENGINE_FULL);
  if (!(share > 0)) return LP_EINVAL;
  *factor = LP_MIN(LATENCY_MAX, LP_MAX(1.0, ratio / share));
  LOGI("capacity: %s: the reference ladder (%dx%d -> %zu renditions) from a source of %.2f bits "
       "per pixel runs at %.2f of real time alone; its price is %.2f of the device: latency "
       "%.2f x its share",
       d->name, REF_IN_W, REF_IN_H, job.n_renditions, *bpp, ratio, share, *factor);
  return 0;
}

/* The CPU's reference ladder at the reference rate and at HI_BPP into c->latency. A failure
 * leaves it unmeasured (logged): its stages' coefficients stand. */
static void measure_latency(const lp_sched_t *s, const sched_device_t *d, lp_sched_bench_fn bench,
                            void *ud, lp_sched_coefs_t *c) {
  lp_sched_device_desc_t desc = desc_of(d);
  static const double rates[2] = {LP_SCHED_REF_BPP, HI_BPP};
  for (int i = 0; i < 2; i++) {
    double bpp = rates[i], f = 0;
    int rc = measure_ladder(d, &desc, s->o.cpu_preset, bench, ud, c, &bpp, &f);
    if (rc) {
      memset(c->latency, 0, sizeof c->latency);
      memset(c->latency_bpp, 0, sizeof c->latency_bpp);
      if (rc != LP_EUNSUPP)
        LOGW("capacity: %s: the reference ladder did not run end to end (%s); ladders not seen "
             "yet are judged by their price alone",
             d->name, lp_strerror(rc));
      return;
    }
    c->latency[i] = f;
    c->latency_bpp[i] = bpp;
  }
}

static cJSON *make_record(const sched_device_t *d, const char *ffmpeg) {
  cJSON *rec = cJSON_CreateObject();
  char when[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  cJSON *coefs = sched_coefs_to_json(&d->coefs);
  if (!rec || !coefs || !cJSON_AddStringToObject(rec, "kind", lp_sched_kind_name(d->kind)) ||
      !cJSON_AddStringToObject(rec, "id", d->id) ||
      !cJSON_AddStringToObject(rec, "driver", d->driver) ||
      !cJSON_AddStringToObject(rec, "ffmpeg", ffmpeg) ||
      !cJSON_AddNumberToObject(rec, "cpus", d->kind == LP_SCHED_DEV_CPU ? d->cpus : 0) ||
      !cJSON_AddNumberToObject(rec, "cpuEncode", d->cpu_encode) ||
      !cJSON_AddNumberToObject(rec, "cpuScale", d->cpu_scale ? 1 : 0) ||
      !cJSON_AddStringToObject(rec, "measured", when)) {
    cJSON_Delete(rec);
    cJSON_Delete(coefs);
    return NULL;
  }
  cJSON_AddItemToObject(rec, "coefs", coefs);
  return rec;
}

int lp_sched_calibrate(lp_sched_t *s, const char *datadir, const char *ffmpeg_version, bool force,
                       lp_sched_bench_fn bench, void *ud) {
  if (!s || !datadir || !*datadir) return LP_EINVAL;
  const char *ffmpeg = ffmpeg_version ? ffmpeg_version : "";
  char path[4096];
  if (snprintf(path, sizeof path, "%s/%s", datadir, CACHE_NAME) >= (int)sizeof path)
    return LP_ERANGE;
  int lrc = 0;
  cJSON *cache = sched_json_file(path, CACHE_VERSION, "devices", "a calibration cache",
                                 "calibrating again", &lrc);
  const cJSON *old = cache ? cJSON_GetObjectItemCaseSensitive(cache, "devices") : NULL;
  bool dirty = false;
  int rc = 0;
  cJSON *keep[64]; /* records to write: one per current device, NULL if none */
  int nkeep = LP_MIN(s->n_devs, (int)LP_ARRAY_LEN(keep));
  memset(keep, 0, sizeof keep);

  for (int i = 0; i < nkeep; i++) {
    sched_device_t *d = &s->devs[i];
    const cJSON *rec = NULL, *it;
    cJSON_ArrayForEach(it, old) {
      if (same_device(it, d)) rec = it;
    }
    char buf[256];
    const char *why = NULL;
    if (rec) why = stale_reason(rec, d, ffmpeg, buf, sizeof buf);
    if (rec && !why && !force) {
      sched_coefs_from_json(cJSON_GetObjectItemCaseSensitive(rec, "coefs"), &d->coefs);
      d->calibrated = true;
      keep[i] = cJSON_Duplicate(rec, true);
      const char *when = sched_json_str(rec, "measured");
      LOGI("capacity: %s uses its calibration from %s", d->name, when ? when : "an earlier run");
      continue;
    }
    if (!why) why = force ? "-calibrate was given" : "no calibration yet";
    if (!bench) {
      LOGI("capacity: %s: %s and no benchmark available; using built-in estimates", d->name, why);
      if (rec) keep[i] = cJSON_Duplicate(rec, true);
      continue;
    }
    LOGI("capacity: calibrating %s (%s)", d->name, why);
    uint64_t t0 = lp_now_ms();
    lp_sched_coefs_t c;
    int brc = run_bench(d, bench, ud, &c);
    if (!brc && d->kind == LP_SCHED_DEV_CPU) measure_latency(s, d, bench, ud, &c);
    if (brc) {
      LOGW("capacity: calibration of %s failed: %s; using built-in estimates", d->name,
           lp_strerror(brc));
      continue;
    }
    d->coefs = c;
    d->calibrated = true;
    keep[i] = make_record(d, ffmpeg);
    if (!keep[i]) {
      rc = LP_ENOMEM;
      break;
    }
    dirty = true;
    LOGI("capacity: %s calibrated in %llu ms: decode h264 %.3f ms/Mpx + %.3f ms/Mbit, scale "
         "%.3f, encode h264 %.3f ms/Mpx",
         d->name, (unsigned long long)(lp_now_ms() - t0), c.decode[LP_SCHED_CODEC_H264],
         c.decode_mbit[LP_SCHED_CODEC_H264], c.scale,
         c.encode[LP_SCHED_CODEC_H264][LP_SCHED_PRESET_MEDIUM]);
  }

  if (!rc && dirty) {
    cJSON *root = cJSON_CreateObject(), *arr = NULL;
    if (!root || !cJSON_AddNumberToObject(root, "version", CACHE_VERSION) ||
        !(arr = cJSON_AddArrayToObject(root, "devices"))) {
      rc = LP_ENOMEM;
    } else {
      int n = 0;
      for (int i = 0; i < nkeep; i++) {
        if (!keep[i]) continue;
        cJSON_AddItemToArray(arr, keep[i]);
        keep[i] = NULL;
        n++;
      }
      /* records of devices not present now (a GPU taken out for a while) stay */
      const cJSON *it;
      cJSON_ArrayForEach(it, old) {
        bool present = false;
        for (int i = 0; i < s->n_devs && !present; i++) present = same_device(it, &s->devs[i]);
        if (present || n >= CACHE_KEEP) continue;
        cJSON *dup = cJSON_Duplicate(it, true);
        if (dup) {
          cJSON_AddItemToArray(arr, dup);
          n++;
        }
      }
      char *text = cJSON_Print(root);
      if (!text)
        rc = LP_ENOMEM;
      else if ((rc = lp_mkdir_p(datadir, 0700)) == 0)
        rc = lp_file_write_atomic(path, text, strlen(text), 0600);
      if (rc) LOGW("capacity: can't write %s: %s", path, lp_strerror(rc));
      free(text);
    }
    cJSON_Delete(root);
  }
  for (int i = 0; i < nkeep; i++) cJSON_Delete(keep[i]);
  cJSON_Delete(cache);
  return rc;
}
