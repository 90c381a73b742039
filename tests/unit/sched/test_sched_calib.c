/* Calibration records: measured with a fake benchmark, cached in the data dir, reused while the
 * device, driver, FFmpeg and CPU count are the same, measured again otherwise or on request. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lpod/sched.h"
#include "tmpdir.h"

typedef struct bench {
  int calls[4];  /* per device kind */
  double fps;    /* what every stage runs at */
  int fail_kind; /* kind whose benchmark fails; -1 none */
  /* dec_pix > 0: decoding costs dec_pix ms/Mpx + dec_mbit ms/Mbit of a source made at
   * made_share of the rate asked for (made_fixed > 0: at that rate whatever was asked) */
  double dec_pix, dec_mbit, made_share, made_fixed;
  double asked[2]; /* the rates decoding was asked for: the first, and the highest */
  /* the reference ladder: runs asked, at ladder_fps[i] source frames/s (0: fps) from a source
   * made at ladder_made[i] bits per pixel (0: the rate asked); ladder_fail: its error */
  int ladders, ladder_fail;
  double ladder_fps[2], ladder_made[2];
  lp_sched_bench_req_t ladder_req[2];
} bench_t;

static int fake_bench(void *ud, const lp_sched_device_desc_t *dev, const lp_sched_bench_req_t *req,
                      double *fps, double *src_bpp) {
  bench_t *b = ud;
  b->calls[dev->kind]++;
  if ((int)dev->kind == b->fail_kind) return LP_EDEVICE;
  if (dev->kind == LP_SCHED_DEV_NVIDIA && req->stage == LP_SCHED_STAGE_ENCODE &&
      req->codec == LP_SCHED_CODEC_VP8)
    return LP_EUNSUPP;
  *fps = b->fps;
  if (req->stage == LP_SCHED_STAGE_LADDER) {
    int i = b->ladders++;
    if (b->ladder_fail) return b->ladder_fail;
    if (i < 2) {
      b->ladder_req[i] = *req;
      if (b->ladder_fps[i] > 0) *fps = b->ladder_fps[i];
      if (b->ladder_made[i] > 0) *src_bpp = b->ladder_made[i];
    }
    return 0;
  }
  if (req->stage == LP_SCHED_STAGE_DECODE) {
    if (!b->asked[0]) b->asked[0] = *src_bpp;
    b->asked[1] = fmax(b->asked[1], *src_bpp);
  }
  if (req->stage == LP_SCHED_STAGE_DECODE && b->dec_pix > 0) {
    double made = b->made_fixed > 0 ? b->made_fixed : *src_bpp * b->made_share;
    double mpx = req->in_width * req->in_height / 1e6;
    *fps = 1000.0 / (mpx * (b->dec_pix + b->dec_mbit * made));
    *src_bpp = made;
  }
  return 0;
}

/* the codecs nvidia:0 encodes on the CPU, and whether it scales there */
static unsigned g_cpu_encode;
static bool g_cpu_scale;

static lp_sched_t *node(const char *driver, double cpus, bool third) {
  lp_sched_t *s = NULL;
  assert_int_equal(lp_sched_new(NULL, &s), 0);
  lp_sched_device_desc_t cpu = {
      LP_SCHED_DEV_CPU, "cpu", "Test CPU @ 3GHz", "", cpus, 0, 0, 0, 0, false};
  lp_sched_device_desc_t gpu = {LP_SCHED_DEV_NVIDIA, "nvidia:0", "GPU-1111", driver, 0, 5, 0, 0,
                                g_cpu_encode,        g_cpu_scale};
  lp_sched_device_desc_t gpu2 = {
      LP_SCHED_DEV_NVIDIA, "nvidia:1", "GPU-2222", driver, 0, 5, 0, 0, 0, false};
  assert_int_equal(lp_sched_add_device(s, &cpu, NULL), 0);
  assert_int_equal(lp_sched_add_device(s, &gpu, NULL), 0);
  if (third) assert_int_equal(lp_sched_add_device(s, &gpu2, NULL), 0);
  return s;
}

/* A node of node()'s devices, calibrated with b against the cache in dir (which must succeed). */
static lp_sched_t *calibrate_node(bench_t *b, const char *dir, const char *driver, double cpus,
                                  bool third, const char *ffmpeg, bool force) {
  lp_sched_t *s = node(driver, cpus, third);
  assert_int_equal(lp_sched_calibrate(s, dir, ffmpeg, force, fake_bench, b), 0);
  return s;
}

static void reset(bench_t *b) {
  memset(b, 0, sizeof *b);
  b->fps = 250;
  b->fail_kind = -1;
}

static void test_measure_and_cache(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  assert_non_null(dir);
  bench_t b;
  reset(&b);
  lp_sched_t *s = calibrate_node(&b, dir, "535.104", 2, false, "5.1.6", false);
  assert_true(b.calls[LP_SCHED_DEV_CPU] > 0);
  assert_true(b.calls[LP_SCHED_DEV_NVIDIA] > 0);
  /* VP8 on NVENC: one medium try, no fast/slow tries; the reference ladder on the CPU alone, at
   * two rates */
  assert_int_equal(b.calls[LP_SCHED_DEV_NVIDIA], b.calls[LP_SCHED_DEV_CPU] - 2 - 2);
  assert_int_equal(b.ladders, 2);
  assert_true(lp_sched_device_calibrated(s, 0));
  assert_true(lp_sched_device_calibrated(s, 1));
  lp_sched_coefs_t c;
  lp_sched_get_coefs(s, 1, &c);
  /* ms per megapixel from frames/s at the reference sizes */
  assert_true(fabs(c.decode[LP_SCHED_CODEC_H264] - 1000.0 / (250 * 1920 * 1080 / 1e6)) < 1e-9);
  assert_true(fabs(c.scale - 1000.0 / (250 * (1920 * 1080 + 1280 * 720) / 1e6)) < 1e-9);
  assert_true(fabs(c.encode[LP_SCHED_CODEC_H264][LP_SCHED_PRESET_SLOW] -
                   1000.0 / (250 * 1280 * 720 / 1e6)) < 1e-9);
  assert_true(c.encode[LP_SCHED_CODEC_VP8][LP_SCHED_PRESET_FAST] == 0);
  lp_sched_coefs_t first_cpu;
  lp_sched_get_coefs(s, 0, &first_cpu);
  lp_sched_free(s);

  char path[4096];
  snprintf(path, sizeof path, "%s/capacity.json", dir);
  char *text = NULL;
  assert_int_equal(lp_file_read(path, 1 << 20, &text, NULL), 0);
  assert_non_null(strstr(text, "GPU-1111"));
  assert_non_null(strstr(text, "535.104"));
  free(text);

  /* same node again: no benchmark, same numbers */
  reset(&b);
  s = calibrate_node(&b, dir, "535.104", 2, false, "5.1.6", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_CPU] + b.calls[LP_SCHED_DEV_NVIDIA], 0);
  assert_true(lp_sched_device_calibrated(s, 0));
  lp_sched_get_coefs(s, 0, &c);
  assert_memory_equal(&c, &first_cpu, sizeof c);
  lp_sched_free(s);

  /* a cache of an earlier version (before the reference ladder was timed end to end) is
   * measured again */
  assert_int_equal(lp_file_read(path, 1 << 20, &text, NULL), 0);
  char *ver = strstr(text, "\"version\":");
  assert_non_null(ver);
  ver += strlen("\"version\":");
  while (*ver == ' ' || *ver == '\t') ver++;
  assert_int_equal(*ver, '5');
  *ver = '4';
  assert_int_equal(tmpdir_write(dir, "capacity.json", text), 0);
  free(text);
  reset(&b);
  s = calibrate_node(&b, dir, "535.104", 2, false, "5.1.6", false);
  assert_true(b.calls[LP_SCHED_DEV_CPU] > 0 && b.calls[LP_SCHED_DEV_NVIDIA] > 0);
  lp_sched_free(s);

  /* a new driver invalidates the GPU's record only */
  reset(&b);
  s = calibrate_node(&b, dir, "550.54", 2, false, "5.1.6", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_CPU], 0);
  assert_true(b.calls[LP_SCHED_DEV_NVIDIA] > 0);
  lp_sched_free(s);

  /* fewer CPUs (a smaller container) invalidates the CPU's record */
  reset(&b);
  s = calibrate_node(&b, dir, "550.54", 1, false, "5.1.6", false);
  assert_true(b.calls[LP_SCHED_DEV_CPU] > 0);
  assert_int_equal(b.calls[LP_SCHED_DEV_NVIDIA], 0);
  lp_sched_free(s);

  /* a new FFmpeg invalidates everything */
  reset(&b);
  s = calibrate_node(&b, dir, "550.54", 1, false, "6.0", false);
  assert_true(b.calls[LP_SCHED_DEV_CPU] > 0 && b.calls[LP_SCHED_DEV_NVIDIA] > 0);
  lp_sched_free(s);

  /* -calibrate measures again although the records are valid */
  reset(&b);
  b.fps = 500;
  s = calibrate_node(&b, dir, "550.54", 1, false, "6.0", true);
  assert_true(b.calls[LP_SCHED_DEV_CPU] > 0 && b.calls[LP_SCHED_DEV_NVIDIA] > 0);
  lp_sched_get_coefs(s, 1, &c);
  assert_true(fabs(c.decode[LP_SCHED_CODEC_H264] - 1000.0 / (500 * 1920 * 1080 / 1e6)) < 1e-9);
  lp_sched_free(s);
  tmpdir_free(dir);
}

static void test_failures(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  bench_t b;
  /* no cache, no benchmark: built-in estimates */
  lp_sched_t *s = node("535", 2, false);
  assert_int_equal(lp_sched_calibrate(s, dir, "5.1", false, NULL, NULL), 0);
  assert_false(lp_sched_device_calibrated(s, 0));
  lp_sched_coefs_t c, d;
  lp_sched_get_coefs(s, 0, &c);
  lp_sched_coefs_default(LP_SCHED_DEV_CPU, 2, &d);
  assert_memory_equal(&c, &d, sizeof c);
  lp_sched_free(s);

  /* the GPU's benchmark fails: it keeps the estimates and gets no record; the CPU is cached */
  reset(&b);
  b.fail_kind = LP_SCHED_DEV_NVIDIA;
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_true(lp_sched_device_calibrated(s, 0));
  assert_false(lp_sched_device_calibrated(s, 1));
  lp_sched_get_coefs(s, 1, &c);
  lp_sched_coefs_default(LP_SCHED_DEV_NVIDIA, 0, &d);
  assert_memory_equal(&c, &d, sizeof c);
  lp_sched_free(s);
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_CPU], 0);
  assert_true(b.calls[LP_SCHED_DEV_NVIDIA] > 0);
  lp_sched_free(s);

  /* nonsense throughput is an error, not a coefficient */
  reset(&b);
  b.fps = 0;
  s = calibrate_node(&b, dir, "536", 2, false, "5.1", false);
  assert_false(lp_sched_device_calibrated(s, 1));
  lp_sched_free(s);

  /* a damaged cache file is replaced */
  assert_int_equal(tmpdir_write(dir, "capacity.json", "{\"version\":5,\"devices\":[{\"kind\":"), 0);
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_true(b.calls[LP_SCHED_DEV_CPU] > 0);
  lp_sched_free(s);
  /* a record with bad coefficients counts as stale */
  assert_int_equal(
      tmpdir_write(dir, "capacity.json",
                   "{\"version\":5,\"devices\":[{\"kind\":\"cpu\",\"id\":\"Test CPU @ 3GHz\","
                   "\"driver\":\"\",\"ffmpeg\":\"5.1\",\"cpus\":2,\"coefs\":{\"scale\":-1}}]}"),
      0);
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_true(b.calls[LP_SCHED_DEV_CPU] > 0);
  lp_sched_free(s);

  assert_int_equal(lp_sched_calibrate(NULL, dir, "5.1", false, NULL, NULL), LP_EINVAL);
  s = node("535", 2, false);
  assert_int_equal(lp_sched_calibrate(s, "", "5.1", false, NULL, NULL), LP_EINVAL);
  lp_sched_free(s);
  tmpdir_free(dir);
}

/* The price share of the reference ladder (1080p30 -> 720p, 480p, 360p, 240p) at bpp on a CPU of
 * coefficients c, by the public cost model. */
static double ladder_share(const lp_sched_coefs_t *c, double bpp, lp_sched_preset_t preset) {
  lp_sched_job_t j;
  memset(&j, 0, sizeof j);
  j.in_width = 1920;
  j.in_height = 1080;
  j.in_fps = 30;
  j.in_codec = LP_SCHED_CODEC_H264;
  j.in_mbps = bpp * 1920 * 1080 * 30 / 1e6;
  static const int sz[4][2] = {{1280, 720}, {854, 480}, {640, 360}, {426, 240}};
  j.n_renditions = 4;
  for (int i = 0; i < 4; i++)
    j.renditions[i] = (lp_sched_rendition_t){sz[i][0], sz[i][1], 30, LP_SCHED_CODEC_H264, preset};
  lp_sched_cost_t cost;
  lp_sched_job_cost(LP_SCHED_DEV_CPU, c, &j, &cost);
  return cost.engine[0] / 1000;
}

/* The CPU's reference ladder, run end to end at the reference rate and a high one: its latency
 * over its price's share is kept per rate (at least 1), cached, and gone when it fails. */
static void test_reference_ladder_latency(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  bench_t b;
  reset(&b);
  /* 1080p30 at 40 and 20 frames/s: 0.75 and 1.5 of real time; sources made at 0.1 and 1.0 */
  b.ladder_fps[0] = 40;
  b.ladder_fps[1] = 20;
  b.ladder_made[1] = 1.0;
  lp_sched_opts_t o = LP_SCHED_OPTS_INIT;
  o.cpu_preset = LP_SCHED_PRESET_FAST;
  lp_sched_t *s = NULL;
  assert_int_equal(lp_sched_new(&o, &s), 0);
  lp_sched_device_desc_t cpu = {
      LP_SCHED_DEV_CPU, "cpu", "Test CPU @ 3GHz", "", 2, 0, 0, 0, 0, false};
  lp_sched_device_desc_t gpu = {
      LP_SCHED_DEV_NVIDIA, "nvidia:0", "GPU-1", "535", 0, 5, 0, 0, 0, false};
  assert_int_equal(lp_sched_add_device(s, &cpu, NULL), 0);
  assert_int_equal(lp_sched_add_device(s, &gpu, NULL), 0);
  assert_int_equal(lp_sched_calibrate(s, dir, "5.1", false, fake_bench, &b), 0);
  assert_int_equal(b.ladders, 2);
  for (int i = 0; i < 2; i++) {
    const lp_sched_bench_req_t *r = &b.ladder_req[i];
    assert_int_equal(r->stage, LP_SCHED_STAGE_LADDER);
    assert_int_equal(r->codec, LP_SCHED_CODEC_H264);
    assert_int_equal(r->in_width, 1920);
    assert_int_equal(r->in_height, 1080);
    assert_int_equal(r->n_renditions, 4);
    assert_non_null(r->renditions);
    assert_int_equal(r->preset, LP_SCHED_PRESET_FAST);
  }
  assert_true(fabs(b.ladder_req[0].bpp - LP_SCHED_REF_BPP) < 1e-12);
  assert_true(b.ladder_req[1].bpp > 0.5); /* the high rate decoding is calibrated at */
  lp_sched_coefs_t c, g;
  lp_sched_get_coefs(s, 0, &c);
  lp_sched_get_coefs(s, 1, &g);
  double share[2] = {ladder_share(&c, 0.1, LP_SCHED_PRESET_FAST),
                     ladder_share(&c, 1.0, LP_SCHED_PRESET_FAST)};
  double want[2] = {fmax(1, 0.75 / share[0]), fmax(1, 1.5 / share[1])};
  assert_true(want[1] > 1); /* the fake's high-rate run is slower than its price */
  for (int i = 0; i < 2; i++) {
    if (fabs(c.latency[i] - want[i]) > 1e-9)
      fail_msg("latency[%d] %.6f, want %.6f (share %.4f)", i, c.latency[i], want[i], share[i]);
  }
  assert_true(fabs(c.latency_bpp[0] - 0.1) < 1e-12 && fabs(c.latency_bpp[1] - 1.0) < 1e-12);
  assert_true(g.latency[0] == 0 && g.latency[1] == 0); /* a GPU runs no reference ladder */
  lp_sched_free(s);

  /* the cache keeps it */
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_CPU], 0);
  lp_sched_get_coefs(s, 0, &g);
  assert_memory_equal(g.latency, c.latency, sizeof c.latency);
  assert_memory_equal(g.latency_bpp, c.latency_bpp, sizeof c.latency_bpp);
  lp_sched_free(s);

  /* a damaged latency in the cache is dropped, rate by rate; the record's stages stand */
  char path[4096], *text = NULL;
  snprintf(path, sizeof path, "%s/capacity.json", dir);
  assert_int_equal(lp_file_read(path, 1 << 20, &text, NULL), 0);
  cJSON *root = cJSON_Parse(text);
  free(text);
  cJSON *lat = NULL, *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "devices")) {
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(it, "kind");
    if (cJSON_IsString(kind) && strcmp(kind->valuestring, "cpu") == 0)
      lat = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(it, "coefs"),
                                             "latency");
  }
  assert_non_null(lat);
  cJSON_ReplaceItemInArray(cJSON_GetObjectItemCaseSensitive(lat, "factor"), 1,
                           cJSON_CreateNumber(9)); /* past the most it may be */
  text = cJSON_Print(root);
  cJSON_Delete(root);
  assert_int_equal(tmpdir_write(dir, "capacity.json", text), 0);
  free(text);
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_CPU], 0);
  assert_true(lp_sched_device_calibrated(s, 0));
  lp_sched_get_coefs(s, 0, &g);
  assert_true(g.latency[0] == c.latency[0] && g.latency_bpp[0] == c.latency_bpp[0]);
  assert_true(g.latency[1] == 0 && g.latency_bpp[1] == 0);
  lp_sched_free(s);

  /* a ladder that doesn't run leaves the stages' figures standing, and no latency */
  reset(&b);
  b.ladder_fail = LP_EMEDIA;
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", true);
  assert_true(lp_sched_device_calibrated(s, 0));
  lp_sched_get_coefs(s, 0, &c);
  assert_true(c.latency[0] == 0 && c.latency[1] == 0);
  assert_true(c.latency_bpp[0] == 0 && c.latency_bpp[1] == 0);
  lp_sched_free(s);
  tmpdir_free(dir);
}

/* A node calibrated again (forced) against the cache in dir, decoding at pix ms/Mpx + mbit
 * ms/Mbit from sources made at share of the rate asked (or at fixed, if > 0); *cpu gets the CPU
 * device's coefficients. */
static lp_sched_t *split_node(bench_t *b, const char *dir, double pix, double mbit, double share,
                              double fixed, lp_sched_coefs_t *cpu) {
  reset(b);
  b->dec_pix = pix;
  b->dec_mbit = mbit;
  b->made_share = share;
  b->made_fixed = fixed;
  lp_sched_t *s = calibrate_node(b, dir, "535", 2, false, "5.1", true);
  lp_sched_get_coefs(s, 0, cpu);
  return s;
}

/* Decoding is measured at two source rates for H.264 and HEVC, and the line through the two gives
 * its cost per pixel and per megabit, with the rates the sources were made at. */
static void test_decode_split(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  bench_t b;
  lp_sched_coefs_t c;
  /* the encoder's rate control falls short of what it was asked */
  lp_sched_t *s = split_node(&b, dir, 2.0, 10.0, 0.8, 0, &c);
  assert_true(fabs(b.asked[0] - LP_SCHED_REF_BPP) < 1e-12);
  for (int k = 0; k < 2; k++) { /* H.264 and HEVC */
    if (fabs(c.decode[k] - 2.0) > 1e-9 || fabs(c.decode_mbit[k] - 10.0) > 1e-9)
      fail_msg("codec %d: %.6f ms/Mpx + %.6f ms/Mbit, not 2 + 10", k, c.decode[k],
               c.decode_mbit[k]);
  }
  /* the others priced per pixel at the reference rate as made (0.08 bits per pixel) */
  assert_true(fabs(c.decode[LP_SCHED_CODEC_VP9] - (2.0 + 10.0 * 0.08)) < 1e-9);
  assert_true(c.decode_mbit[LP_SCHED_CODEC_VP9] == 0);
  /* a job at 0.9 bits per pixel costs its part per bit more than one at 0.08 */
  lp_sched_job_t j = {1920, 1080, 30, LP_SCHED_CODEC_H264, 0, 1, {{1280, 720, 0, 0, 1}}};
  lp_sched_cost_t lo, hi;
  j.in_mbps = 1920 * 1080 * 30 * 0.08 / 1e6;
  lp_sched_job_cost(LP_SCHED_DEV_CPU, &c, &j, &lo);
  j.in_mbps = 1920 * 1080 * 30 * 0.9 / 1e6;
  lp_sched_job_cost(LP_SCHED_DEV_CPU, &c, &j, &hi);
  assert_true(fabs(hi.total - lo.total - 10.0 * j.in_mbps * (1 - 0.08 / 0.9)) < 1e-6);
  lp_sched_free(s);
  /* the cache keeps both parts */
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_CPU], 0);
  lp_sched_coefs_t cached;
  lp_sched_get_coefs(s, 0, &cached);
  assert_memory_equal(&cached, &c, sizeof c);
  lp_sched_free(s);

  /* a part per bit too large for the reference rate's figure is held to 0.8 of it */
  s = split_node(&b, dir, 0.1, 10.0, 0.8, 0, &c);
  double ref = 0.1 + 10.0 * 0.08;
  assert_true(fabs(c.decode_mbit[LP_SCHED_CODEC_H264] - 0.8 * ref / 0.08) < 1e-9);
  assert_true(fabs(c.decode[LP_SCHED_CODEC_H264] - 0.2 * ref) < 1e-9);
  lp_sched_free(s);

  /* sources that came out at one rate tell nothing of a bit's cost: per pixel only */
  s = split_node(&b, dir, 2.0, 10.0, 0, 0.1, &c);
  assert_true(b.asked[1] > 2 * LP_SCHED_REF_BPP); /* the second rate was asked for */
  assert_true(c.decode_mbit[LP_SCHED_CODEC_H264] == 0);
  assert_true(fabs(c.decode[LP_SCHED_CODEC_H264] - 3.0) < 1e-9);
  lp_sched_free(s);

  /* a richer source that decodes faster (noise): no negative part per bit */
  s = split_node(&b, dir, 3.0, -1.0, 1, 0, &c);
  assert_true(c.decode_mbit[LP_SCHED_CODEC_H264] == 0);
  assert_true(fabs(c.decode[LP_SCHED_CODEC_H264] - (3.0 - 0.1)) < 1e-9);
  lp_sched_free(s);

  /* a record without the part per bit is measured again */
  char *text = NULL;
  char path[4096];
  snprintf(path, sizeof path, "%s/capacity.json", dir);
  assert_int_equal(lp_file_read(path, 1 << 20, &text, NULL), 0);
  char *key = strstr(text, "\"decodeMbit\"");
  assert_non_null(key);
  memcpy(key + 1, "decodeXbit", 10);
  assert_int_equal(tmpdir_write(dir, "capacity.json", text), 0);
  free(text);
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_true(b.calls[LP_SCHED_DEV_CPU] > 0);
  lp_sched_free(s);
  tmpdir_free(dir);
}

static void test_absent_devices_kept(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  bench_t b;
  reset(&b);
  lp_sched_t *s = calibrate_node(&b, dir, "535", 2, true, "5.1", false);
  lp_sched_free(s);
  /* the second GPU is out for a while; a forced run keeps its record */
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", true);
  lp_sched_free(s);
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, true, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_NVIDIA] + b.calls[LP_SCHED_DEV_CPU], 0);
  assert_true(lp_sched_device_calibrated(s, 2));
  lp_sched_free(s);
  tmpdir_free(dir);
}

/* A GPU whose H.264 encodes run on the CPU: they are not measured on it (three presets fewer,
 * figure 0, the CPU's prices them), and its record holds only while that stays so; when the GPU
 * encodes H.264 itself again, its record is measured again (a stale 0 would refuse every H.264
 * job there). The same for a device whose frames are scaled on the CPU. */
static void test_cpu_encodes_not_measured(void **state) {
  (void)state;
  char *dir = tmpdir_new();
  bench_t b;
  reset(&b);
  lp_sched_t *s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  int all = b.calls[LP_SCHED_DEV_NVIDIA];
  lp_sched_free(s);

  g_cpu_encode = 1u << LP_SCHED_CODEC_H264;
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_CPU], 0); /* the CPU's record still holds */
  assert_int_equal(b.calls[LP_SCHED_DEV_NVIDIA], all - LP_SCHED_PRESETS);
  lp_sched_coefs_t c;
  lp_sched_get_coefs(s, 1, &c);
  for (int p = 0; p < LP_SCHED_PRESETS; p++) assert_true(c.encode[LP_SCHED_CODEC_H264][p] == 0);
  assert_true(c.encode[LP_SCHED_CODEC_HEVC][LP_SCHED_PRESET_MEDIUM] > 0);
  lp_sched_free(s);
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_NVIDIA], 0); /* same set: the record holds */
  lp_sched_free(s);

  g_cpu_encode = 0;
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_NVIDIA], all);
  lp_sched_get_coefs(s, 1, &c);
  assert_true(c.encode[LP_SCHED_CODEC_H264][LP_SCHED_PRESET_MEDIUM] > 0);
  lp_sched_free(s);

  /* a device whose frames are scaled on the CPU: its scaling is not measured either, and its
   * record holds only while that stays so */
  g_cpu_scale = true;
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_NVIDIA], all - 1);
  lp_sched_get_coefs(s, 1, &c);
  assert_true(c.scale == 0);
  assert_true(c.encode[LP_SCHED_CODEC_H264][LP_SCHED_PRESET_MEDIUM] > 0);
  lp_sched_free(s);
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_NVIDIA], 0);
  lp_sched_free(s);
  g_cpu_scale = false;
  reset(&b);
  s = calibrate_node(&b, dir, "535", 2, false, "5.1", false);
  assert_int_equal(b.calls[LP_SCHED_DEV_NVIDIA], all);
  lp_sched_get_coefs(s, 1, &c);
  assert_true(c.scale > 0);
  lp_sched_free(s);
  tmpdir_free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_measure_and_cache), cmocka_unit_test(test_cpu_encodes_not_measured),
      cmocka_unit_test(test_failures),          cmocka_unit_test(test_absent_devices_kept),
      cmocka_unit_test(test_decode_split),      cmocka_unit_test(test_reference_ladder_latency),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
