/* Learnt ladders across restarts: saved to the data dir, read back on the same device, FFmpeg
 * build and calibration, ignored otherwise, and a damaged file costs nothing but the lesson. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "lpod/sched.h"
#include "tmpdir.h"

#define FFMPEG "7.1-test"

/* A 1000x1000@10 source, n renditions of the same size, H.264 medium. */
static lp_sched_job_t job(int n) {
  lp_sched_job_t j;
  memset(&j, 0, sizeof j);
  j.in_width = 1000;
  j.in_height = 1000;
  j.in_fps = 10;
  j.in_codec = LP_SCHED_CODEC_H264;
  j.n_renditions = (size_t)n;
  for (int i = 0; i < n; i++)
    j.renditions[i] =
        (lp_sched_rendition_t){1000, 1000, 10, LP_SCHED_CODEC_H264, LP_SCHED_PRESET_MEDIUM};
  return j;
}

/* A node with one CPU device: 2 CPUs, driver "", encode at enc ms/Mpx (a 1000x1000@10 job with n
 * renditions costs 10 + 10·enc·n wu/s). */
static lp_sched_t *node(const char *id, double enc) {
  lp_sched_t *s = NULL;
  assert_int_equal(lp_sched_new(NULL, &s), 0);
  lp_sched_device_desc_t d = {LP_SCHED_DEV_CPU, "cpu", id, "", 2, 0, 0, 0, 0, false};
  int idx = -1;
  assert_int_equal(lp_sched_add_device(s, &d, &idx), 0);
  lp_sched_coefs_t c;
  memset(&c, 0, sizeof c);
  c.decode[LP_SCHED_CODEC_H264] = 1.0;
  c.encode[LP_SCHED_CODEC_H264][LP_SCHED_PRESET_MEDIUM] = enc;
  assert_int_equal(lp_sched_set_coefs(s, idx, &c), 0);
  return s;
}

/* A 410 wu/s ladder that ran at 0.45 of real time alone for six segments. */
static void learn_big(lp_sched_t *s) {
  lp_sched_job_t big = job(4);
  assert_int_equal(lp_sched_admit(s, "big", &big, NULL), 0);
  for (int i = 0; i < 6; i++) lp_sched_report_segment(s, "big", 900, 2000);
  lp_sched_release(s, "big");
}

static bool exists(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/ladders.json", dir);
  struct stat st;
  return stat(path, &st) == 0;
}

static void test_roundtrip(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  assert_non_null(dir);
  lp_sched_t *s = node("cpu-a", 10);
  int n = -1;
  /* nothing saved yet: nothing to read, no error */
  assert_int_equal(lp_sched_ladders_load(s, dir, FFMPEG, &n), 0);
  assert_int_equal(n, 0);
  learn_big(s);
  assert_int_equal(lp_sched_ladders_save(s, dir, FFMPEG), 0);
  assert_true(exists(dir));
  lp_sched_free(s);

  /* the next start knows the ladder before its first segment: a 310 wu/s job next to it would
   * take it past the target, as it did before the restart */
  s = node("cpu-a", 10);
  assert_int_equal(lp_sched_ladders_load(s, dir, FFMPEG, &n), 0);
  assert_int_equal(n, 1);
  lp_sched_job_t big = job(4), mid = job(3);
  assert_int_equal(lp_sched_admit(s, "big", &big, NULL), 0);
  lp_sched_session_info_t si;
  assert_int_equal(lp_sched_session_info(s, "big", &si), 0);
  assert_true(fabs(si.lone_rt - 0.45) < 1e-9);
  assert_true(fabs(si.slope - 3 * 0.45) < 1e-9);
  lp_sched_verdict_t v;
  assert_int_equal(lp_sched_admit(s, "mid", &mid, &v), LP_ECAPACITY);
  assert_int_equal(v.reason, LP_SCHED_R_LATENCY);
  /* nothing new learnt: nothing written */
  char path[4096];
  snprintf(path, sizeof path, "%s/ladders.json", dir);
  assert_int_equal(remove(path), 0);
  assert_int_equal(lp_sched_ladders_save(s, dir, FFMPEG), 0);
  assert_false(exists(dir));
  /* the session's first segment teaches nothing, its second does: written again */
  lp_sched_report_segment(s, "big", 900, 2000);
  assert_int_equal(lp_sched_ladders_save(s, dir, FFMPEG), 0);
  assert_false(exists(dir));
  lp_sched_report_segment(s, "big", 900, 2000);
  assert_int_equal(lp_sched_ladders_save(s, dir, FFMPEG), 0);
  assert_true(exists(dir));
  /* in parts, as the node writes off its loop: the text stays due until its write is known to
   * have landed, and a late report of an older write changes nothing */
  lp_sched_report_segment(s, "big", 900, 2000);
  char *text = NULL, *again = NULL;
  uint64_t gen = 0, gen2 = 0;
  assert_int_equal(lp_sched_ladders_text(s, FFMPEG, &text, &gen), 0);
  assert_non_null(text);
  assert_int_equal(lp_sched_ladders_write(dir, text), 0);
  assert_int_equal(lp_sched_ladders_text(s, FFMPEG, &again, &gen2), 0);
  assert_non_null(again);
  assert_true(gen2 == gen);
  free(again);
  lp_sched_ladders_written(s, gen);
  lp_sched_ladders_written(s, gen - 1);
  assert_int_equal(lp_sched_ladders_text(s, FFMPEG, &again, &gen2), 0);
  assert_null(again);
  free(text);
  lp_sched_free(s);
  tmpdir_free(dir);
}

/* A record is for the device, FFmpeg build and calibration it was learnt on. */
static void test_stale(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  assert_non_null(dir);
  lp_sched_t *s = node("cpu-a", 10);
  learn_big(s);
  assert_int_equal(lp_sched_ladders_save(s, dir, FFMPEG), 0);
  lp_sched_free(s);
  int n = -1;
  s = node("cpu-b", 10); /* another CPU model */
  assert_int_equal(lp_sched_ladders_load(s, dir, FFMPEG, &n), 0);
  assert_int_equal(n, 0);
  lp_sched_free(s);
  s = node("cpu-a", 12); /* calibrated again: other units */
  assert_int_equal(lp_sched_ladders_load(s, dir, FFMPEG, &n), 0);
  assert_int_equal(n, 0);
  lp_sched_free(s);
  s = node("cpu-a", 10);
  assert_int_equal(lp_sched_ladders_load(s, dir, "7.2", &n), 0);
  assert_int_equal(n, 0);
  lp_sched_job_t big = job(4);
  assert_int_equal(lp_sched_admit(s, "big", &big, NULL), 0);
  lp_sched_session_info_t si;
  assert_int_equal(lp_sched_session_info(s, "big", &si), 0);
  assert_true(si.lone_rt == 0);
  lp_sched_free(s);
  tmpdir_free(dir);
}

/* Sources of one shape but far apart in bits per pixel are ladders of their own (a grainy
 * source decodes several times slower), learnt, shown and saved apart; rates within a band
 * share one. */
static void test_rate_bands(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  assert_non_null(dir);
  lp_sched_t *s = node("cpu-a", 10);
  learn_big(s); /* rate unknown: the reference band */
  lp_sched_job_t near = job(4), rich = job(4);
  near.in_mbps = 1.2; /* 0.12 bits per pixel at 10 Mpx/s: the reference band */
  rich.in_mbps = 8;   /* 0.8 */
  lp_sched_session_info_t si;
  assert_int_equal(lp_sched_admit(s, "near", &near, NULL), 0);
  assert_int_equal(lp_sched_session_info(s, "near", &si), 0);
  assert_true(fabs(si.lone_rt - 0.45) < 1e-9);
  lp_sched_release(s, "near");
  assert_int_equal(lp_sched_admit(s, "rich", &rich, NULL), 0);
  assert_int_equal(lp_sched_session_info(s, "rich", &si), 0);
  assert_true(si.lone_rt == 0); /* nothing learnt of it yet */
  for (int i = 0; i < 6; i++) lp_sched_report_segment(s, "rich", 1500, 2000);
  assert_int_equal(lp_sched_session_info(s, "rich", &si), 0);
  assert_true(fabs(si.lone_rt - 0.75) < 1e-9);
  lp_sched_release(s, "rich");
  /* the admin API shows both, each with its band's bits per pixel */
  cJSON *o = cJSON_CreateObject();
  assert_int_equal(lp_sched_fill_json(s, o), 0);
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "ladders"), *l;
  int seen = 0;
  cJSON_ArrayForEach(l, arr) {
    double bpp = cJSON_GetObjectItemCaseSensitive(l, "bitsPerPixel")->valuedouble;
    double lone = cJSON_GetObjectItemCaseSensitive(l, "loneRatio")->valuedouble;
    if (fabs(bpp - 0.8) < 1e-9 && fabs(lone - 0.75) < 1e-9) seen |= 1;
    if (fabs(bpp - 0.1) < 1e-9 && fabs(lone - 0.45) < 1e-9) seen |= 2;
  }
  assert_int_equal(cJSON_GetArraySize(arr), 2);
  assert_int_equal(seen, 3);
  cJSON_Delete(o);
  /* and a restart keeps them apart */
  assert_int_equal(lp_sched_ladders_save(s, dir, FFMPEG), 0);
  lp_sched_free(s);
  s = node("cpu-a", 10);
  int n = -1;
  assert_int_equal(lp_sched_ladders_load(s, dir, FFMPEG, &n), 0);
  assert_int_equal(n, 2);
  o = cJSON_CreateObject();
  assert_int_equal(lp_sched_fill_json(s, o), 0);
  seen = 0;
  cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(o, "ladders")) {
    seen += fabs(cJSON_GetObjectItemCaseSensitive(l, "bitsPerPixel")->valuedouble - 0.8) < 1e-9;
  }
  assert_int_equal(seen, 1);
  cJSON_Delete(o);
  rich.in_mbps = 7; /* 0.7: the same band */
  assert_int_equal(lp_sched_admit(s, "rich", &rich, NULL), 0);
  assert_int_equal(lp_sched_session_info(s, "rich", &si), 0);
  assert_true(fabs(si.lone_rt - 0.75) < 1e-9);
  lp_sched_free(s);
  tmpdir_free(dir);
}

/* Damaged files are reported and cost only what they held; bad records are skipped one by one. */
static void test_damaged(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  assert_non_null(dir);
  int n = -1;
  lp_sched_t *s = node("cpu-a", 10);
  assert_int_equal(tmpdir_write(dir, "ladders.json", "{\"version\": 1, \"ladders\": [tru"), 0);
  assert_int_equal(lp_sched_ladders_load(s, dir, FFMPEG, &n), LP_EPROTO);
  assert_int_equal(n, 0);
  assert_int_equal(tmpdir_write(dir, "ladders.json", "{\"version\": 99, \"ladders\": []}"), 0);
  assert_int_equal(lp_sched_ladders_load(s, dir, FFMPEG, &n), LP_EPROTO);
  /* a good record next to ones with a bad key, bad sums and a missing field */
  learn_big(s);
  assert_int_equal(lp_sched_ladders_save(s, dir, FFMPEG), 0);
  char path[4096];
  snprintf(path, sizeof path, "%s/ladders.json", dir);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char text[8192];
  size_t len = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[len] = 0;
  char *rec = strchr(text, '{');
  rec = strchr(rec + 1, '{'); /* the record inside the array */
  char *end = strrchr(text, ']');
  size_t rlen = (size_t)(end - rec);
  while (rlen && rec[rlen - 1] != '}') rlen--;
  char good[4096];
  assert_true(rlen < sizeof good);
  memcpy(good, rec, rlen);
  good[rlen] = 0;
  char bad_key[4096], bad_w[4096], file[20480];
  snprintf(bad_key, sizeof bad_key, "%s", good);
  char *k = strstr(bad_key, "\"key\"");
  assert_non_null(k);
  k = strchr(k + 5, '"');
  k[1] = 'x'; /* not hex */
  snprintf(bad_w, sizeof bad_w, "%s", good);
  char *w = strstr(bad_w, "\"w\":");
  assert_non_null(w);
  w[4] = '-'; /* a negative weight */
  char bad_band[4096];
  snprintf(bad_band, sizeof bad_band, "%s", good);
  char *band = strstr(bad_band, "\"rateBand\":");
  assert_non_null(band);
  band += strlen("\"rateBand\":");
  while (*band == ' ' || *band == '\t') band++;
  assert_int_equal(*band, '0');
  *band = '9'; /* past the bands there are */
  snprintf(file, sizeof file,
           "{\"version\": 1, \"ladders\": [%s, %s, %s, {\"kind\": \"cpu\"}, 7, %s]}", bad_key,
           bad_w, bad_band, good);
  assert_int_equal(tmpdir_write(dir, "ladders.json", file), 0);
  lp_sched_free(s);
  s = node("cpu-a", 10);
  assert_int_equal(lp_sched_ladders_load(s, dir, FFMPEG, &n), 0);
  assert_int_equal(n, 1);
  lp_sched_free(s);
  /* no data dir: refused, nothing written */
  s = node("cpu-a", 10);
  assert_int_equal(lp_sched_ladders_save(s, "", FFMPEG), LP_EINVAL);
  assert_int_equal(lp_sched_ladders_load(s, NULL, FFMPEG, &n), LP_EINVAL);
  lp_sched_free(s);
  tmpdir_free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_stale),
      cmocka_unit_test(test_damaged),
      cmocka_unit_test(test_rate_bands),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
