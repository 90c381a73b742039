/* The node's in-process engine on a device that fails (the fake backend, named as such: the CPU
 * pretending to be a GPU): the segment is transcoded again on the CPU instead of failing, and
 * the session keeps to the CPU for a while rather than fail each segment on the device first;
 * other sessions stay on the device. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../hwaccel/fake_backend.h"
#include "orch_int.h"
#include "test_log.h"

static struct {
  char dir[64];
  uint8_t *seg;
  size_t seg_len;
  int log_fd;
  hw_table_t table;
  orch_media_ctx_t ctx;
  pthread_mutex_t table_mu;
  int failed[4]; /* device_failed calls per table entry */
} g;

/* What the node does with it is tested with the node; here: who is reported, and how often. */
static void on_device_failed(void *arg, int device) {
  assert_ptr_equal(arg, &g);
  if (device >= 0 && device < 4) g.failed[device]++;
}

static char *log_text(void) {
  char *b = test_log_text(g.log_fd);
  assert_non_null(b);
  return b;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* One segment, one 160x120 H.264 rendition, on table entry device; returns the error ("" when
 * it transcoded) and checks the output. */
static orch_profile_t p120(void) {
  orch_profile_t p;
  memset(&p, 0, sizeof p);
  p.name = "p120";
  p.width = 160;
  p.height = 120;
  p.bitrate = 200000;
  return p;
}

static void segment(void *state, const char *sid, int64_t seq, int device, char *err) {
  orch_profile_t p = p120();
  orch_job_t job;
  memset(&job, 0, sizeof job);
  snprintf(job.session_id, sizeof job.session_id, "%s", sid);
  job.seq = seq;
  job.duration_ms = 2000;
  job.profiles = &p;
  job.n_profiles = 1;
  job.input = g.seg;
  job.input_len = g.seg_len;
  job.device = device;
  assert_int_equal(orch_engine_media.transcode(&g.ctx, state, &job), 0);
  snprintf(err, 256, "%s", job.error);
  if (!job.error[0]) {
    assert_non_null(job.out);
    assert_true(job.out[0].len > 1000);
    assert_int_equal(job.out[0].pixels, 160 * 120 * 50);
    free(job.out[0].data);
  }
  free(job.out);
}

static void test_device_fails(void **st) {
  (void)st;
  void *a = NULL, *b = NULL;
  char err[256];
  assert_int_equal(orch_engine_media.open(&g.ctx, "a", &a), 0);
  assert_int_equal(orch_engine_media.open(&g.ctx, "b", &b), 0);
  segment(a, "a", 0, 1, err);
  assert_string_equal(err, "");
  int on_device = fake_encoders_opened();
  assert_true(on_device >= 1);

  /* The device stops opening: b's first segment still comes back, made on the CPU. */
  fake_config()->dead_device = 1;
  segment(b, "b", 0, 1, err);
  assert_string_equal(err, "");
  assert_int_equal(fake_encoders_opened(), on_device);
  char *log = log_text();
  assert_int_equal(count(log, "Device fake:0 failed sessionID=b seqNo=0"), 1);
  assert_int_equal(g.failed[1], 1); /* the node hears of it once */
  assert_non_null(strstr(log, "its segments run on the CPU for 30 s"));
  free(log);
  /* Its next segment goes straight to the CPU: no second failure. */
  segment(b, "b", 1, 1, err);
  assert_string_equal(err, "");
  log = log_text();
  assert_int_equal(count(log, "Device fake:0 failed"), 1);
  assert_int_equal(g.failed[1], 1);
  free(log);

  /* a keeps its open session on the device. */
  fake_config()->dead_device = 0;
  segment(a, "a", 1, 1, err);
  assert_string_equal(err, "");
  /* Once the node has quarantined the device, a's segments run on the CPU, without a failure. */
  pthread_mutex_lock(&g.table_mu);
  g.table.dev[1].state = HW_DEV_QUARANTINED;
  pthread_mutex_unlock(&g.table_mu);
  fake_config()->broken = true; /* had a's segment gone to the device, it would fail there */
  int before = fake_encoders_opened();
  segment(a, "a", 2, 1, err);
  assert_string_equal(err, "");
  assert_int_equal(fake_encoders_opened(), before);
  log = log_text();
  assert_int_equal(count(log, "Device fake:0 failed"), 1);
  free(log);
  assert_int_equal(g.failed[1], 1);
  pthread_mutex_lock(&g.table_mu);
  g.table.dev[1].state = HW_DEV_OK;
  pthread_mutex_unlock(&g.table_mu);
  fake_config()->broken = false;
  orch_engine_media.close(&g.ctx, a);
  orch_engine_media.close(&g.ctx, b);
}

static int setup(void **st) {
  (void)st;
  snprintf(g.dir, sizeof g.dir, "/tmp/lpod-engine-XXXXXX");
  if (!mkdtemp(g.dir)) return -1;
  char cmd[512], path[128];
  snprintf(path, sizeof path, "%s/in.ts", g.dir);
  snprintf(cmd, sizeof cmd,
           "ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc=size=320x240:rate=25 -t 2 "
           "-c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p -f mpegts %s",
           path);
  if (system(cmd)) return -1;
  char *p;
  if (lp_file_read(path, 64 << 20, &p, &g.seg_len)) return -1;
  g.seg = (uint8_t *)p;
  g.log_fd = test_log_capture();
  if (g.log_fd < 0) return -1;
  fake_config_t c = {.devices = 1,
                     .dec = HW_CODEC_BIT(HW_CODEC_H264),
                     .enc = HW_CODEC_BIT(HW_CODEC_H264),
                     .limits = {16, 16, 4096, 4096, 2, true}};
  char err[256];
  if (fake_table(&g.table, &c, "0", false, err, sizeof err)) return -1;
  fake_configure(fake_config());
  g.ctx.table = &g.table;
  g.ctx.cpu_preset = "ultrafast";
  pthread_mutex_init(&g.table_mu, NULL);
  g.ctx.table_mu = &g.table_mu;
  g.ctx.device_failed = on_device_failed;
  g.ctx.arg = &g;
  return 0;
}

static int teardown(void **st) {
  (void)st;
  free(g.seg);
  lp_log_set_fd(2);
  close(g.log_fd);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g.dir);
  return system(cmd) ? 0 : 0;
}

/* A local worker's list of quarantined devices, as entries of the node's table: by exact name,
 * and with one worker per device only that worker's own entry. */
static void test_worker_devices_down(void **st) {
  (void)st;
  hw_table_t *t = calloc(1, sizeof *t);
  assert_non_null(t);
  t->n = 4;
  const char *names[] = {"cpu", "nvidia:0", "nvidia:1", "nvidia:10"};
  for (int i = 0; i < 4; i++) snprintf(t->dev[i].name, sizeof t->dev[i].name, "%s", names[i]);
  assert_int_equal(orch_worker_devices_down(t, true, 0, "none"), 0);
  assert_int_equal(orch_worker_devices_down(t, true, 0, "nvidia:0"), 1u << 1);
  /* worker 1 owns entry 2 only: its report of another entry is not its to make */
  assert_int_equal(orch_worker_devices_down(t, true, 1, "nvidia:0"), 0);
  assert_int_equal(orch_worker_devices_down(t, true, 1, "nvidia:0,nvidia:1"), 1u << 2);
  /* names match whole: nvidia:1 is not nvidia:10 */
  assert_int_equal(orch_worker_devices_down(t, true, 2, "nvidia:1"), 0);
  assert_int_equal(orch_worker_devices_down(t, true, 2, "nvidia:10"), 1u << 3);
  /* -localWorkers N: every worker has every device; the CPU is never down */
  assert_int_equal(orch_worker_devices_down(t, false, 0, "cpu,nvidia:10,nvidia:0"),
                   (1u << 1) | (1u << 3));
  free(t);
}

/* Segments submitted on the CPU: submit returns before the segment is done (the first one's
 * completion is held until its submit has returned: a submit that waited for it would hold it
 * 10 s and the test fails), the engine takes the next while the last is in flight, the results
 * come back in order (a broken segment in the middle fails alone), and close waits for them. A
 * job placed on a device goes through the one-at-a-time path and is done on return. */
typedef struct submitted {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int order[4], n;
  bool hold_first, released, held_too_long;
} submitted_t;
static submitted_t g_sub = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void job_done(orch_job_t *job) {
  pthread_mutex_lock(&g_sub.mu);
  if (g_sub.hold_first && job->seq == 0) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (!g_sub.released && !g_sub.held_too_long)
      if (pthread_cond_timedwait(&g_sub.cv, &g_sub.mu, &until) != 0) g_sub.held_too_long = true;
  }
  g_sub.order[g_sub.n++] = (int)job->seq;
  pthread_mutex_unlock(&g_sub.mu);
}

static void test_submit_cpu(void **st) {
  (void)st;
  orch_profile_t p = p120();
  static const uint8_t junk[] = "not a segment at all, not even close";
  orch_job_t jobs[4];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < 4; i++) {
    snprintf(jobs[i].session_id, sizeof jobs[i].session_id, "c");
    jobs[i].seq = i;
    jobs[i].duration_ms = 2000;
    jobs[i].profiles = &p;
    jobs[i].n_profiles = 1;
    jobs[i].input = i == 1 ? junk : g.seg;
    jobs[i].input_len = i == 1 ? sizeof junk : g.seg_len;
    jobs[i].device = i == 3 ? 1 : 0;
  }
  void *c = NULL;
  assert_int_equal(orch_engine_media.open(&g.ctx, "c", &c), 0);
  g_sub.hold_first = true;
  for (int i = 0; i < 3; i++) {
    orch_engine_media.submit(&g.ctx, c, &jobs[i], job_done);
    if (i == 0) {
      pthread_mutex_lock(&g_sub.mu);
      g_sub.released = true;
      pthread_cond_broadcast(&g_sub.cv);
      pthread_mutex_unlock(&g_sub.mu);
    }
  }
  orch_engine_media.close(&g.ctx, c); /* waits for the three */
  assert_false(g_sub.held_too_long);
  g_sub.hold_first = false;
  assert_int_equal(g_sub.n, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(g_sub.order[i], i);
  assert_string_equal(jobs[0].error, "");
  assert_string_not_equal(jobs[1].error, "");
  assert_null(jobs[1].out);
  assert_string_equal(jobs[2].error, "");
  for (int i = 0; i < 3; i += 2) {
    assert_non_null(jobs[i].out);
    assert_int_equal(jobs[i].out[0].pixels, 160 * 120 * 50);
    free(jobs[i].out[0].data);
    free(jobs[i].out);
  }
  assert_int_equal(orch_engine_media.open(&g.ctx, "d", &c), 0);
  int before = fake_encoders_opened();
  orch_engine_media.submit(&g.ctx, c, &jobs[3], job_done);
  assert_int_equal(g_sub.n, 4); /* on the device: done before submit returned */
  assert_true(fake_encoders_opened() > before);
  assert_string_equal(jobs[3].error, "");
  assert_int_equal(jobs[3].out[0].pixels, 160 * 120 * 50);
  free(jobs[3].out[0].data);
  free(jobs[3].out);
  orch_engine_media.close(&g.ctx, c);
}

/* The pool engine sends a session's next segment ahead only to local workers that run it where
 * the node placed it: placed on the CPU, with workers that have no device. */
static void test_pool_beside(void **st) {
  (void)st;
  orch_pool_engine_t pe = {.placed = true, .cpu_only = true};
  orch_engine_t e;
  orch_engine_pool(&pe, &e);
  orch_job_t a = {.device = 0}, b = {.device = 0}, gpu = {.device = 1}, remote = {.device = -1};
  assert_true(e.start_beside(e.ctx, &a, &b));
  assert_false(e.start_beside(e.ctx, &a, &gpu));
  assert_false(e.start_beside(e.ctx, &remote, &a));
  pe.cpu_only = false; /* a worker with a device would run the session there */
  assert_false(e.start_beside(e.ctx, &a, &b));
  pe.cpu_only = true;
  pe.placed = false; /* no model: the job may go to any transcoder */
  assert_false(e.start_beside(e.ctx, &a, &b));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_device_fails), cmocka_unit_test(test_submit_cpu),
      cmocka_unit_test(test_pool_beside), cmocka_unit_test(test_worker_devices_down)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
