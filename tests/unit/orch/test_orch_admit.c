/* Admission on the node's own devices (admit.c), with real segments weighed by the real probe,
 * the real scheduler and the real ladder file: the learnt ladders reach the data dir at stop,
 * also when a periodic save is still being written on the thread pool then; the per-device
 * gauges follow the model; room is held for a new stream while its first segment arrives. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "../media/media_check.h"
#include "../sched/tmpdir.h"
#include "lpod/hwaccel.h"
#include "lpod/metrics.h"
#include "orch_int.h"

typedef struct fixture {
  uv_loop_t loop;
  lp_config_t cfg;
  hw_table_t table;
  char *dir;
  uint8_t *seg;
  size_t seg_len;
} fixture_t;

static int setup(void **st) {
  fixture_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->dir = tmpdir_new();
  assert_non_null(f->dir);
  char *argv[] = {"-network",
                  "offchain",
                  "-datadir",
                  f->dir,
                  "-cpuPreset",
                  "ultrafast",
                  "-testTranscoder=false"};
  char *envp[] = {NULL};
  char err[256] = "";
  assert_int_equal(lp_config_load(&f->cfg, 7, argv, envp, err, sizeof err), LP_CFG_OK);
  hw_probe_opts_t po = {.nvidia = "", .netint = "", .qsv = "", .test = false};
  assert_int_equal(hw_table_probe(&po, &f->table, err, sizeof err), 0);
  f->seg = slurp(gen("admit-320x180.ts", "-f lavfi -i testsrc2=size=320x180:rate=30 -t 2 "
                                         "-c:v libx264 -preset ultrafast -g 60 -f mpegts"),
                 &f->seg_len);
  *st = f;
  return 0;
}

static int teardown(void **st) {
  fixture_t *f = *st;
  assert_int_equal(uv_loop_close(&f->loop), 0);
  lp_config_free(&f->cfg);
  tmpdir_free(f->dir);
  free(f->seg);
  free(f);
  return 0;
}

/* A segment of stream id carrying the fixture's 2 s body, declared to last duration_ms. */
static orch_job_t segment(const fixture_t *f, const char *id, uint64_t duration_ms,
                          const orch_profile_t *profiles, size_t n) {
  orch_job_t j;
  memset(&j, 0, sizeof j);
  snprintf(j.session_id, sizeof j.session_id, "%s", id);
  snprintf(j.manifest_id, sizeof j.manifest_id, "%s", id);
  j.duration_ms = duration_ms;
  j.profiles = profiles;
  j.n_profiles = n;
  j.input = f->seg;
  j.input_len = f->seg_len;
  return j;
}

/* Three segments of one stream through admission and back, at a quarter of real time: its
 * ladder is learnt from the second on (the first carries the encoders' start). */
static void stream(fixture_t *f, orch_admit_t *a, const char *id, const orch_profile_t *profiles,
                   size_t n) {
  for (int i = 0; i < 3; i++) {
    orch_job_t j = segment(f, id, 2000, profiles, n);
    j.seq = i;
    char err[256] = "";
    assert_int_equal(orch_admit_session(a, &j, i == 0, false, err, sizeof err), 0);
    j.engine_ns = j.service_ns = 500 * 1000000ull;
    assert_false(orch_admit_segment_done(a, &j));
  }
  orch_admit_release(a, id);
}

/* The ladders in dir/ladders.json by their renditions, each counted into have[renditions]. */
static int saved_ladders(const char *dir, int have[4]) {
  char path[512];
  snprintf(path, sizeof path, "%s/ladders.json", dir);
  size_t len;
  uint8_t *text = slurp(path, &len);
  cJSON *root = cJSON_ParseWithLength((const char *)text, len);
  free(text);
  assert_non_null(root);
  cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "ladders"), *l;
  int n = 0;
  memset(have, 0, 4 * sizeof *have);
  cJSON_ArrayForEach(l, arr) {
    cJSON *r = cJSON_GetObjectItemCaseSensitive(l, "renditions");
    assert_true(cJSON_IsNumber(r) && r->valueint >= 1 && r->valueint <= 3);
    have[r->valueint]++;
    n++;
  }
  cJSON_Delete(root);
  return n;
}

static const orch_profile_t P240 = {.name = "P240p30fps16x9",
                                    .width = 426,
                                    .height = 240,
                                    .bitrate = 600000,
                                    .fps = 30,
                                    .fps_den = 1};
static const orch_profile_t P144 = {.name = "P144p30fps16x9",
                                    .width = 256,
                                    .height = 144,
                                    .bitrate = 400000,
                                    .fps = 30,
                                    .fps_den = 1};

/* Holds the thread pool's one thread (main sets UV_THREADPOOL_SIZE=1) until posted, so a save
 * queued behind it writes when the test says. */
static uv_sem_t pool_gate;
static void pool_hold(uv_work_t *w) {
  (void)w;
  uv_sem_wait(&pool_gate);
}
static void pool_held(uv_work_t *w, int status) {
  (void)w;
  (void)status;
}

/* Calibration's reference ladder on the CPU runs through the real media engine: a segment of the
 * calibration's source at the rate asked, every rendition, timed; it is not asked of a GPU, nor
 * of renditions other than H.264. Small sizes: the rate itself is for the benchmarks. */
static void test_calibration_ladder(void **st) {
  fixture_t *f = *st;
  orch_admit_t *a = NULL;
  assert_int_equal(orch_admit_new(&f->loop, &f->cfg, &f->table, false, &a), 0);
  lp_sched_rendition_t r[2] = {{160, 90, 30, LP_SCHED_CODEC_H264, LP_SCHED_PRESET_FAST},
                               {96, 54, 30, LP_SCHED_CODEC_H264, LP_SCHED_PRESET_FAST}};
  lp_sched_bench_req_t req = {
      LP_SCHED_STAGE_LADDER, LP_SCHED_CODEC_H264, LP_SCHED_PRESET_FAST, 320, 180, 0, 0, 0.1, r, 2};
  lp_sched_device_desc_t cpu = {LP_SCHED_DEV_CPU, "cpu", "cpu", "", 2, 0, 0, 0, 0, false};
  double fps = 0, bpp = 0.1;
  assert_int_equal(orch_admit_bench(a, &cpu, &req, &fps, &bpp), 0);
  assert_true(fps > 0 && isfinite(fps));
  assert_true(bpp > 0.05 && bpp < 0.4); /* as made, near the rate asked */
  /* grainier at a high rate */
  req.bpp = bpp = 0.9;
  assert_int_equal(orch_admit_bench(a, &cpu, &req, &fps, &bpp), 0);
  assert_true(bpp > 0.4);
  /* renditions the engine refuses fail the run */
  r[1].width = -2;
  fps = 0;
  assert_true(orch_admit_bench(a, &cpu, &req, &fps, &bpp) != 0);
  assert_true(fps == 0);
  r[1].width = 96;
  r[1].codec = LP_SCHED_CODEC_VP8;
  assert_int_equal(orch_admit_bench(a, &cpu, &req, &fps, &bpp), LP_EUNSUPP);
  r[1].codec = LP_SCHED_CODEC_H264;
  lp_sched_device_desc_t gpu = cpu;
  gpu.kind = LP_SCHED_DEV_NVIDIA;
  assert_int_equal(orch_admit_bench(a, &gpu, &req, &fps, &bpp), LP_EUNSUPP);
  orch_admit_free(a);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

/* A save on the thread pool when the node stops: the ladders learnt after its text was taken
 * still reach the file, written after it (an older text landing last would lose them). */
static void test_stop_during_a_save(void **st) {
  fixture_t *f = *st;
  orch_admit_t *a = NULL;
  assert_int_equal(orch_admit_new(&f->loop, &f->cfg, &f->table, false, &a), 0);
  orch_profile_t one[] = {P240}, two[] = {P240, P144};
  stream(f, a, "one", one, 1);
  uv_work_t hold;
  assert_int_equal(uv_sem_init(&pool_gate, 0), 0);
  assert_int_equal(uv_queue_work(&f->loop, &hold, pool_hold, pool_held), 0);
  orch_admit_save(a); /* its write waits for the gate: it is still to come at stop */
  stream(f, a, "two", two, 2);
  orch_admit_free(a);
  uv_sem_post(&pool_gate);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  uv_sem_destroy(&pool_gate);
  int have[4];
  assert_int_equal(saved_ladders(f->dir, have), 2);
  assert_int_equal(have[1], 1);
  assert_int_equal(have[2], 1);
}

/* Nothing being written at stop: the stop writes the ladders itself. The next start reads them
 * back: after one ladder's segments it writes both, and with nothing new it writes nothing. */
static void test_stop_saves_and_start_loads(void **st) {
  fixture_t *f = *st;
  orch_admit_t *a = NULL;
  assert_int_equal(orch_admit_new(&f->loop, &f->cfg, &f->table, false, &a), 0);
  orch_profile_t one[] = {P240}, two[] = {P240, P144};
  stream(f, a, "one", one, 1);
  stream(f, a, "two", two, 2);
  orch_admit_free(a);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  int have[4];
  assert_int_equal(saved_ladders(f->dir, have), 2);

  /* the next start knows both: after one ladder's segments it writes both */
  assert_int_equal(orch_admit_new(&f->loop, &f->cfg, &f->table, false, &a), 0);
  stream(f, a, "one again", one, 1);
  orch_admit_free(a);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(saved_ladders(f->dir, have), 2);
  assert_int_equal(have[1], 1);
  assert_int_equal(have[2], 1);

  /* and with nothing new it writes nothing, by the poll's save or at stop */
  char path[512];
  snprintf(path, sizeof path, "%s/ladders.json", f->dir);
  assert_int_equal(orch_admit_new(&f->loop, &f->cfg, &f->table, false, &a), 0);
  assert_int_equal(unlink(path), 0);
  orch_admit_save(a);
  orch_admit_free(a);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(access(path, F_OK), -1);
}

/* A gauge as /metrics shows it: the model's numbers are read into them first. */
static double gauge(const orch_admit_t *a, const char *name, const char *labels) {
  orch_admit_metrics(a);
  return lp_metric_value(
      lp_metric_gauge(name, NULL, strchr(labels, ',') ? "device,engine" : "device"), labels);
}

/* The lpod_device_* gauges show the model as it is when read, after each admission and release:
 * the streams placed, the work committed against the budget, and the rendered text carries them. */
static void test_device_gauges(void **st) {
  fixture_t *f = *st;
  lp_metrics_reset();
  orch_admit_t *a = NULL;
  assert_int_equal(orch_admit_new(&f->loop, &f->cfg, &f->table, false, &a), 0);
  assert_true(gauge(a, "lpod_device_streams", "cpu") == 0);
  double budget = gauge(a, "lpod_device_work_budget", "cpu,cpu");
  assert_true(budget > 0);
  orch_profile_t one[] = {P240}, two[] = {P240, P144};
  orch_job_t j[2];
  const char *ids[2] = {"g1", "g2"};
  for (int i = 0; i < 2; i++) {
    j[i] = segment(f, ids[i], 2000, i ? two : one, i ? 2 : 1);
    char err[256] = "";
    assert_int_equal(orch_admit_session(a, &j[i], true, false, err, sizeof err), 0);
  }
  assert_true(gauge(a, "lpod_device_streams", "cpu") == 2);
  double both = gauge(a, "lpod_device_work_committed", "cpu,cpu");
  assert_true(both > 0 && both <= budget);
  orch_admit_release(a, "g2");
  assert_true(gauge(a, "lpod_device_streams", "cpu") == 1);
  double first = gauge(a, "lpod_device_work_committed", "cpu,cpu");
  assert_true(first > 0 && first < both); /* the second ladder has two renditions */
  assert_true(gauge(a, "lpod_device_behind", "cpu") == 0);
  orch_admit_metrics(a);
  char *text = lp_metrics_render(NULL);
  assert_non_null(text);
  assert_non_null(strstr(text, "lpod_device_streams{device=\"cpu\"} 1\n"));
  assert_non_null(strstr(text, "lpod_device_work_budget{device=\"cpu\",engine=\"cpu\"}"));
  /* no telemetry sample taken yet, no cost judged: no reading */
  assert_non_null(strstr(text, "lpod_device_busy{device=\"cpu\",engine=\"cpu\"} NaN\n"));
  assert_non_null(strstr(text, "lpod_device_cost_ratio{device=\"cpu\"} NaN\n"));
  /* the CPU's source is attached, and has not sampled yet */
  assert_non_null(strstr(text, "lpod_device_telemetry_up{device=\"cpu\"} 0\n"));
  free(text);
  orch_admit_release(a, "g1");
  assert_true(gauge(a, "lpod_device_streams", "cpu") == 0);
  assert_true(gauge(a, "lpod_device_work_committed", "cpu,cpu") == 0);
  orch_admit_free(a);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

/* Holds in place, as /status shows them. */
static int holds(const orch_admit_t *a) {
  cJSON *o = cJSON_CreateObject();
  orch_admit_status(a, o);
  cJSON *cap = cJSON_GetObjectItemCaseSensitive(o, "Capacity");
  cJSON *h = cJSON_GetObjectItemCaseSensitive(cap, "holds");
  assert_true(cJSON_IsNumber(h));
  int n = h->valueint;
  cJSON_Delete(o);
  return n;
}

/* A new stream's credentials hold its least cost while its body arrives: streams arriving
 * meanwhile that would not fit beside the held room are turned away at their credentials; its
 * weighing, or the end of its request, gives the room back. */
static void test_room_held_while_arriving(void **st) {
  fixture_t *f = *st;
  orch_admit_t *a = NULL;
  assert_int_equal(orch_admit_new(&f->loop, &f->cfg, &f->table, false, &a), 0);
  static const orch_profile_t P720 = {.name = "P720p30fps16x9",
                                      .width = 1280,
                                      .height = 720,
                                      .bitrate = 4000000,
                                      .fps = 30,
                                      .fps_den = 1};
  orch_profile_t ladder[] = {P720, P240}, small[] = {P240};
  char id[32];
  bool held = false;
  int n = 0;
  for (; n < 200; n++) {
    snprintf(id, sizeof id, "a%d", n);
    if (orch_admit_room(a, id, ladder, 2, &held, false) == LP_ECAPACITY) break;
    assert_true(held);
  }
  assert_true(n >= 2 && n < 200); /* some held, then the room was gone */
  assert_false(held);
  assert_int_equal(holds(a), n);
  /* no room, where a remote transcoder can take the stream: not a refusal, so not counted */
  lp_metric_t *refused = lp_metric_counter("lpod_admission_refused_total", NULL, "reason");
  double before = lp_metric_value(refused, "work budget full");
  assert_true(before >= 1);
  assert_int_equal(orch_admit_room(a, "spilled", ladder, 2, &held, true), LP_ECAPACITY);
  assert_false(held);
  assert_true(lp_metric_value(refused, "work budget full") == before);
  assert_int_equal(orch_admit_room(a, "refused", ladder, 2, &held, false), LP_ECAPACITY);
  assert_true(lp_metric_value(refused, "work budget full") == before + 1);
  assert_int_equal(holds(a), n);
  /* the same stream again (its next segment while the first arrives): nothing new held */
  assert_int_equal(orch_admit_room(a, "a0", ladder, 2, &held, false), 0);
  assert_false(held);
  assert_int_equal(holds(a), n);
  /* GetOrchestrator is not a stream: it holds nothing */
  held = true;
  assert_int_equal(orch_admit_room(a, NULL, NULL, 0, &held, false), 0);
  assert_false(held);
  /* a request that ends unweighed gives its room back, and the next stream fits */
  orch_admit_unhold(a, "a0");
  assert_int_equal(holds(a), n - 1);
  assert_int_equal(orch_admit_room(a, "late", ladder, 2, &held, false), 0);
  assert_true(held);
  /* weighing a first segment ends its hold, whether admitted or not */
  orch_job_t j = segment(f, "a1", 2000, small, 1);
  char err[256] = "";
  assert_int_equal(orch_admit_session(a, &j, true, false, err, sizeof err), 0);
  assert_int_equal(holds(a), n - 1);
  orch_admit_unhold(a, "a1"); /* its request ends: nothing left to give back */
  assert_int_equal(holds(a), n - 1);
  assert_int_equal(orch_admit_session(a, &j, false, false, err, sizeof err), 0); /* still placed */
  orch_admit_release(a, "a1");
  for (int i = 2; i < n; i++) {
    snprintf(id, sizeof id, "a%d", i);
    orch_admit_unhold(a, id);
  }
  orch_admit_unhold(a, "late");
  assert_int_equal(holds(a), 0);
  orch_admit_free(a);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

/* The admission log names the rate a stream was weighed at: its first segment's bits over its
 * duration, or "an unknown rate" for a segment too short to tell (weighed at the reference). */
static void test_log_names_the_rate(void **st) {
  fixture_t *f = *st;
  orch_admit_t *a = NULL;
  assert_int_equal(orch_admit_new(&f->loop, &f->cfg, &f->table, false, &a), 0);
  char path[512];
  snprintf(path, sizeof path, "%s/log.txt", f->dir);
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  assert_true(fd >= 0);
  lp_log_set_fd(fd);
  orch_profile_t small[] = {P144};
  static const uint64_t durations[] = {2000, 50};
  for (int i = 0; i < 2; i++) {
    orch_job_t j = segment(f, i ? "short" : "known", durations[i], small, 1);
    char err[256] = "";
    assert_int_equal(orch_admit_session(a, &j, true, false, err, sizeof err), 0);
    orch_admit_release(a, j.session_id);
  }
  lp_log_set_fd(STDERR_FILENO);
  close(fd);
  size_t len;
  char *text = (char *)slurp(path, &len);
  text[len] = '\0'; /* slurp leaves room for it */
  char want[128];
  snprintf(want, sizeof want, "capacity: admitted 320x180@30.00 at %.2f Mbit/s -> 1 renditions",
           (double)f->seg_len * 8 / 2e6);
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  if (!strstr(text, "capacity: admitted 320x180@30.00 at an unknown rate -> 1 renditions"))
    fail_msg("no unknown rate in:\n%s", text);
  free(text);
  orch_admit_free(a);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

int main(void) {
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_stop_during_a_save, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stop_saves_and_start_loads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_device_gauges, setup, teardown),
      cmocka_unit_test_setup_teardown(test_log_names_the_rate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_room_held_while_arriving, setup, teardown),
      cmocka_unit_test_setup_teardown(test_calibration_ladder, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
