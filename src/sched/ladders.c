/* sched: what each ladder's segments taught the scheduler, kept in <datadir>/ladders.json across
 * restarts. A record holds for the same device (kind, id, driver, CPUs), FFmpeg build and
 * calibration: its line is in the calibration's work units, so new coefficients make it stale. */
#include "sched_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LADDERS_NAME "ladders.json"
#define LADDERS_VERSION 1

/* The calibration a ladder's line is in units of. */
static uint64_t coefs_print(const lp_sched_coefs_t *c) {
  return sched_fnv(SCHED_FNV_INIT, c, sizeof *c);
}

static int ladders_path(const char *datadir, char *path, size_t len) {
  if (!datadir || !*datadir) return LP_EINVAL;
  return snprintf(path, len, "%s/%s", datadir, LADDERS_NAME) >= (int)len ? LP_ERANGE : 0;
}

static void hex64(uint64_t v, char out[17]) { snprintf(out, 17, "%016" PRIx64, v); }

static cJSON *ladder_record(const lp_sched_t *s, const sched_ladder_t *l, const char *ffmpeg) {
  const sched_device_t *d = &s->devs[l->dev];
  char key[17], coefs[17];
  hex64(l->key, key);
  hex64(coefs_print(&d->coefs), coefs);
  cJSON *o = cJSON_CreateObject();
  if (!o || !cJSON_AddStringToObject(o, "kind", lp_sched_kind_name(d->kind)) ||
      !cJSON_AddStringToObject(o, "id", d->id) ||
      !cJSON_AddStringToObject(o, "driver", d->driver) ||
      !cJSON_AddNumberToObject(o, "cpus", d->kind == LP_SCHED_DEV_CPU ? d->cpus : 0) ||
      !cJSON_AddStringToObject(o, "ffmpeg", ffmpeg) ||
      !cJSON_AddStringToObject(o, "coefs", coefs) || !cJSON_AddStringToObject(o, "key", key) ||
      !cJSON_AddNumberToObject(o, "inWidth", l->in_width) ||
      !cJSON_AddNumberToObject(o, "inHeight", l->in_height) ||
      !cJSON_AddNumberToObject(o, "inFps", l->in_fps) ||
      !cJSON_AddNumberToObject(o, "renditions", l->n_renditions) ||
      !cJSON_AddNumberToObject(o, "rateBand", l->rate_band) ||
      !cJSON_AddNumberToObject(o, "w", l->w) || !cJSON_AddNumberToObject(o, "su", l->su) ||
      !cJSON_AddNumberToObject(o, "sr", l->sr) || !cJSON_AddNumberToObject(o, "suu", l->suu) ||
      !cJSON_AddNumberToObject(o, "sur", l->sur) || !cJSON_AddNumberToObject(o, "k", l->k) ||
      !cJSON_AddNumberToObject(o, "n", (double)l->n)) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

int lp_sched_ladders_text(const lp_sched_t *s, const char *ffmpeg_version, char **text,
                          uint64_t *gen) {
  *text = NULL;
  if (!s) return LP_EINVAL;
  *gen = s->ladders_gen;
  if (s->ladders_saved == s->ladders_gen) return 0;
  const char *ffmpeg = ffmpeg_version ? ffmpeg_version : "";
  cJSON *root = cJSON_CreateObject(), *arr = NULL;
  if (!root || !cJSON_AddNumberToObject(root, "version", LADDERS_VERSION) ||
      !(arr = cJSON_AddArrayToObject(root, "ladders"))) {
    cJSON_Delete(root);
    return LP_ENOMEM;
  }
  for (int i = 0; i < SCHED_LADDERS; i++) {
    if (!s->ladders[i].key) continue;
    cJSON *rec = ladder_record(s, &s->ladders[i], ffmpeg);
    if (!rec) {
      cJSON_Delete(root);
      return LP_ENOMEM;
    }
    cJSON_AddItemToArray(arr, rec);
  }
  *text = cJSON_Print(root);
  cJSON_Delete(root);
  return *text ? 0 : LP_ENOMEM;
}

int lp_sched_ladders_write(const char *datadir, const char *text) {
  char path[4096];
  int rc = ladders_path(datadir, path, sizeof path);
  if (rc || !text) return rc ? rc : LP_EINVAL;
  if ((rc = lp_mkdir_p(datadir, 0700)) == 0)
    rc = lp_file_write_atomic(path, text, strlen(text), 0600);
  if (rc) LOGW("capacity: can't write %s: %s", path, lp_strerror(rc));
  return rc;
}

void lp_sched_ladders_written(lp_sched_t *s, uint64_t gen) {
  if (s && gen > s->ladders_saved) s->ladders_saved = gen;
}

int lp_sched_ladders_save(lp_sched_t *s, const char *datadir, const char *ffmpeg_version) {
  char path[4096];
  int rc = ladders_path(datadir, path, sizeof path);
  if (rc) return rc;
  char *text = NULL;
  uint64_t gen = 0;
  if ((rc = lp_sched_ladders_text(s, ffmpeg_version, &text, &gen)) || !text) return rc;
  if ((rc = lp_sched_ladders_write(datadir, text)) == 0) lp_sched_ladders_written(s, gen);
  free(text);
  return rc;
}

static bool parse_hex64(const char *text, uint64_t *out) {
  if (!text || strlen(text) != 16) return false;
  char *end = NULL;
  unsigned long long v = strtoull(text, &end, 16);
  if (!end || *end) return false;
  *out = (uint64_t)v;
  return true;
}

/* The device a record was learnt on, if it is here with the same driver, CPUs and calibration,
 * and FFmpeg is the same build; -1 otherwise. */
static int record_device(const lp_sched_t *s, const cJSON *rec, const char *ffmpeg) {
  const char *kind = sched_json_str(rec, "kind"), *id = sched_json_str(rec, "id"),
             *drv = sched_json_str(rec, "driver");
  const char *ff = sched_json_str(rec, "ffmpeg");
  uint64_t coefs = 0;
  double cpus = 0;
  if (!kind || !id || !drv || !ff || strcmp(ff, ffmpeg) != 0 ||
      !parse_hex64(sched_json_str(rec, "coefs"), &coefs) || !sched_json_num(rec, "cpus", &cpus))
    return -1;
  for (int i = 0; i < s->n_devs; i++) {
    const sched_device_t *d = &s->devs[i];
    if (strcmp(kind, lp_sched_kind_name(d->kind)) != 0 || strcmp(id, d->id) != 0 ||
        strcmp(drv, d->driver) != 0 || coefs != coefs_print(&d->coefs))
      continue;
    if (d->kind == LP_SCHED_DEV_CPU && fabs(cpus - d->cpus) > 0.01) continue;
    return i;
  }
  return -1;
}

/* A record's numbers, checked: sums of non-negative weights and loads, a fitted slope within
 * what a fit may give (or none). */
static bool record_sums(const cJSON *rec, sched_ladder_t *l) {
  double v[10];
  static const char *const names[] = {"w", "su", "sr",      "suu",      "sur",
                                      "k", "n",  "inWidth", "inHeight", "renditions"};
  for (size_t i = 0; i < LP_ARRAY_LEN(names); i++)
    if (!sched_json_num(rec, names[i], &v[i])) return false;
  double fps = 0, band = 0;
  sched_json_num(rec, "inFps", &fps);
  sched_json_num(rec, "rateBand", &band);
  if (!(fabs(band) <= SCHED_RATE_BANDS) || band != floor(band)) return false;
  if (!(v[0] > 0 && v[0] <= 1) || v[1] < 0 || v[2] < 0 || v[3] < 0 || v[6] < 1 || v[6] > 1e15 ||
      v[5] > SCHED_SLOPE_MAX || v[7] < 0 || v[7] > 1e5 || v[8] < 0 || v[8] > 1e5 || v[9] < 0 ||
      v[9] > LP_SCHED_MAX_RENDITIONS)
    return false;
  l->w = v[0];
  l->su = v[1];
  l->sr = v[2];
  l->suu = v[3];
  l->sur = v[4];
  l->k = v[5] < 0 ? -1 : v[5];
  l->n = (uint64_t)v[6];
  l->in_width = (int)v[7];
  l->in_height = (int)v[8];
  l->n_renditions = (int)v[9];
  l->in_fps = fps;
  l->rate_band = (int)band;
  return true;
}

int lp_sched_ladders_load(lp_sched_t *s, const char *datadir, const char *ffmpeg_version,
                          int *loaded) {
  if (loaded) *loaded = 0;
  if (!s) return LP_EINVAL;
  char path[4096];
  int rc = ladders_path(datadir, path, sizeof path);
  if (rc) return rc;
  const char *ffmpeg = ffmpeg_version ? ffmpeg_version : "";
  cJSON *root = sched_json_file(path, LADDERS_VERSION, "ladders", "a ladder file",
                                "ladders are learnt again", &rc);
  if (!root) return rc;
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "ladders");
  int n = 0, stale = 0, bad = 0;
  const cJSON *rec;
  cJSON_ArrayForEach(rec, arr) {
    sched_ladder_t l;
    memset(&l, 0, sizeof l);
    int dev = record_device(s, rec, ffmpeg);
    if (dev < 0) {
      stale++;
      continue;
    }
    if (!parse_hex64(sched_json_str(rec, "key"), &l.key) || !l.key || !record_sums(rec, &l)) {
      bad++;
      continue;
    }
    l.dev = dev;
    int slot = -1;
    for (int i = 0; i < SCHED_LADDERS && slot < 0; i++)
      if (!s->ladders[i].key || (s->ladders[i].key == l.key && s->ladders[i].dev == dev)) slot = i;
    if (slot < 0) break; /* full */
    s->ladders[slot] = l;
    n++;
  }
  cJSON_Delete(root);
  if (n || stale || bad)
    LOGI("capacity: %d ladders from %s (%d for another device, driver, FFmpeg or calibration, "
         "%d malformed)",
         n, path, stale, bad);
  s->ladders_saved = s->ladders_gen;
  if (loaded) *loaded = n;
  return 0;
}
