/* A transcoder with a device table, on real sockets: an orchestrator-side pool manager and an
 * lpod transcoder (pool_worker) in this process, the transcoder's devices being the fake backend
 * (named as such: the CPU pretending to be GPUs whose codecs and failures the test sets).
 *   - it registers the codecs its table passed, in as many capability words as they need
 *     (lpod's AV1 numbers sit in word 15);
 *   - new sessions go to the device with the fewest sessions;
 *   - a device that fails: the segment is transcoded on the CPU instead of failing, the device is
 *     quarantined, its sessions move to a device that works and new sessions avoid it.
 * ffmpeg makes the input segment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libavformat/avformat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "../../unit/hwaccel/fake_backend.h"
#include "lpod/config.h"
#include "lpod/core.h"
#include "lpod/hwaccel.h"
#include "lpod/net.h"
#include "lpod/pool.h"
#include "pool_test.h"
#include "test_log.h"

#define SECRET "pool-devices-secret"

static struct {
  char dir[256];
  uint8_t *seg;
  size_t seg_len;
  uv_loop_t loop;
  uv_timer_t tick;
  net_server_t *srv;
  pool_manager_t *mgr;
  int port;
  int log_fd;
  /* what the manager last heard of the worker's quarantined devices (POOL_DEVICES_DOWN_HEADER) */
  int down_reports, down_local;
  char down[256];
} g;

static void on_devices(pool_manager_t *m, int local, const char *down, void *arg) {
  (void)m;
  (void)arg;
  g.down_reports++;
  g.down_local = local;
  snprintf(g.down, sizeof g.down, "%s", down);
}

static void on_tick(uv_timer_t *h) { (void)h; }

/* Freed by teardown, so that a failed assertion leaks nothing. */
static void *later[8];
static void test_free_later(void *p) {
  for (size_t i = 0; i < LP_ARRAY_LEN(later); i++)
    if (!later[i]) {
      later[i] = p;
      return;
    }
  free(p);
}

static bool run_until(volatile bool *flag, uint64_t timeout_ms) {
  return pt_run_until(&g.loop, flag, timeout_ms);
}

static void run_for(uint64_t ms) {
  bool never = false;
  run_until(&never, ms);
}

static bool wait_transcoders(int n, uint64_t timeout_ms) {
  return pt_wait_transcoders(&g.loop, g.mgr, n, timeout_ms);
}

/* What the log said since the test started. */
static char *log_text(void) {
  char *b = test_log_text(g.log_fd);
  assert_non_null(b);
  return b;
}

static void log_reset(void) { assert_int_equal(test_log_clear(g.log_fd), 0); }

/* Video frames and size of a rendition, read back by libavformat. */
static int64_t count_frames(const uint8_t *data, size_t len, int *w, int *h) {
  return pt_count_frames(g.dir, data, len, w, h);
}

typedef struct outcome {
  bool done;
  int err;
  char error[256];
  size_t n;
  int64_t frames[2];
  int w[2], h[2];
} outcome_t;

static void on_done(pool_result_t *res, void *arg) {
  outcome_t *o = arg;
  o->done = true;
  o->err = res->err;
  snprintf(o->error, sizeof o->error, "%s", res->error);
  o->n = res->n;
  for (size_t i = 0; i < res->n && i < 2; i++)
    o->frames[i] =
        count_frames(res->renditions[i].data, res->renditions[i].len, &o->w[i], &o->h[i]);
}

/* One segment of a session, two H.264 renditions; waits for it and checks the outputs. */
static void transcode(const char *session, int64_t seq) {
  Net__SegData sd = NET__SEG_DATA__INIT;
  Net__AuthToken tok = NET__AUTH_TOKEN__INIT;
  tok.session_id = (char *)session;
  sd.auth_token = &tok;
  sd.manifestid.data = (uint8_t *)"manifest";
  sd.manifestid.len = 8;
  sd.seq = seq;
  sd.duration = 2000;
  Net__VideoProfile p[2], *pp[2];
  static const int dims[2][2] = {{160, 120}, {240, 180}};
  for (int i = 0; i < 2; i++) {
    net__video_profile__init(&p[i]);
    p[i].name = i ? "r180" : "r120";
    p[i].width = dims[i][0];
    p[i].height = dims[i][1];
    p[i].bitrate = 200000;
    pp[i] = &p[i];
  }
  sd.n_fullprofiles = 2;
  sd.fullprofiles = pp;
  outcome_t o;
  memset(&o, 0, sizeof o);
  assert_int_equal(pool_manager_submit(g.mgr, &sd, NULL, g.seg, g.seg_len, on_done, &o), 0);
  assert_true(run_until(&o.done, 60000));
  if (o.err) fail_msg("%s seq %lld: %s", session, (long long)seq, o.error);
  assert_int_equal(o.n, 2);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(o.frames[i], 50);
    assert_int_equal(o.w[i], dims[i][0]);
    assert_int_equal(o.h[i], dims[i][1]);
  }
}

/* The CPU and two fake GPUs that decode and encode H.264 only, as their self-test left them. */
static void two_fake_gpus(hw_table_t *t) {
  fake_config_t c = {.devices = 2,
                     .dec = HW_CODEC_BIT(HW_CODEC_H264),
                     .enc = HW_CODEC_BIT(HW_CODEC_H264),
                     .limits = {16, 16, 4096, 4096, 2, true}};
  char err[256] = "";
  if (fake_table(t, &c, "all", false, err, sizeof err)) fail_msg("fake_table: %s", err);
  assert_int_equal(t->n, 3);
  assert_string_equal(t->dev[1].name, "fake:0");
  assert_string_equal(t->dev[2].name, "fake:1");
  fake_configure(fake_config()); /* the probe's encoders are not the sessions' */
}

typedef struct worker {
  lp_config_t cfg;
  pool_worker_t *w;
} worker_t;

static void worker_start(worker_t *wk, const hw_table_t *t) {
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", g.port);
  char *argv[] = {"-transcoder",  "-orchAddr",    addr,  "-orchSecret",
                  (char *)SECRET, "-maxSessions", "8",   "-cpuPreset",
                  "ultrafast",    "-dataDir",     g.dir, NULL};
  char err[256];
  if (lp_config_load(&wk->cfg, (int)LP_ARRAY_LEN(argv) - 1, argv, NULL, err, sizeof err) !=
      LP_CFG_OK)
    fail_msg("config: %s", err);
  lp_log_set_level(LP_V_DEBUG);
  assert_int_equal(pool_worker_start(&g.loop, &wk->cfg, t, 0, &wk->w), 0);
  assert_true(wait_transcoders(1, 10000));
}

static void worker_stop(worker_t *wk) {
  pool_worker_free(wk->w);
  assert_true(wait_transcoders(0, 10000));
  run_for(100);
  lp_config_free(&wk->cfg);
}

static void test_caps_and_placement(void **state) {
  (void)state;
  hw_table_t *t = calloc(1, sizeof *t);
  assert_non_null(t);
  test_free_later(t);
  two_fake_gpus(t);
  worker_t wk;
  worker_start(&wk, t);

  /* What it registered is what the manager now offers: the table's codecs, AV1 (the CPU passed
   * it) in word 15, no MPEG-7 signatures (14), which the engine does not make. */
  uint64_t ours[16], theirs[16] = {0};
  assert_int_equal(pool_worker_caps(wk.w, ours, 16), 16);
  assert_int_equal(pool_manager_caps(g.mgr, theirs, 16), 16);
  assert_memory_equal(ours, theirs, sizeof ours);
  int caps[64];
  size_t n = hw_table_capabilities(t, caps, 64);
  for (size_t i = 0; i < n; i++) assert_true((ours[caps[i] / 64] >> (caps[i] % 64)) & 1);
  assert_true((ours[HW_CAP_AV1_DECODE / 64] >> (HW_CAP_AV1_DECODE % 64)) & 1);
  assert_true((ours[HW_CAP_AV1_ENCODE / 64] >> (HW_CAP_AV1_ENCODE % 64)) & 1);
  assert_true(ours[0] & 1);           /* H.264 */
  assert_true(ours[0] & (1u << 12));  /* auth tokens */
  assert_false(ours[0] & (1u << 14)); /* MPEG-7 */
  for (int i = 1; i < 15; i++) assert_int_equal(ours[i], 0);

  /* A job that needs AV1 encode finds it here. */
  Net__Capabilities job = NET__CAPABILITIES__INIT;
  uint64_t jb[16] = {1ull | 1ull << 1 | 1ull << 12};
  jb[15] = 1ull << (HW_CAP_AV1_ENCODE % 64);
  job.n_bitstring = 16;
  job.bitstring = jb;
  assert_true(pool_manager_can_take(g.mgr, &job));

  /* Two sessions, one per device; both encode there. */
  log_reset();
  transcode("s1", 0);
  transcode("s2", 0);
  transcode("s1", 1);
  assert_true(fake_encoders_opened() >= 4);
  char *log = log_text();
  assert_non_null(strstr(log, "Session key=0/s1 runs on fake:0"));
  assert_non_null(strstr(log, "Session key=0/s2 runs on fake:1"));
  assert_null(strstr(log, "quarantined"));
  free(log);
  worker_stop(&wk);
}

static void test_device_fails(void **state) {
  (void)state;
  hw_table_t *t = calloc(1, sizeof *t);
  assert_non_null(t);
  test_free_later(t);
  two_fake_gpus(t);
  worker_t wk;
  worker_start(&wk, t);
  fake_config()->dead_device = 2; /* fake:1 passed at start, now it no longer opens */

  log_reset();
  g.down_reports = 0;
  transcode("a", 0); /* fake:0 */
  int on_device = fake_encoders_opened();
  assert_true(on_device >= 2);
  /* the result says which devices the worker has quarantined: none yet */
  assert_int_equal(g.down_reports, 1);
  assert_int_equal(g.down_local, 0);
  assert_string_equal(g.down, "none");
  /* fake:1 fails to open: the segment is done on the CPU and comes back right anyway. */
  transcode("b", 0);
  assert_int_equal(fake_encoders_opened(), on_device);
  run_for(200);
  char *log = log_text();
  assert_non_null(strstr(log, "Session key=0/b runs on fake:1"));
  assert_non_null(strstr(log, "Device fake:1 failed"));
  assert_non_null(strstr(log, "transcoding this segment on the CPU"));
  assert_non_null(strstr(log, "fake:1: quarantined after a device error"));
  assert_non_null(strstr(log, "Device fake:1 is quarantined"));
  assert_non_null(strstr(log, "1 session(s) move"));
  free(log);

  /* b moved to fake:0 and encodes there; a new session avoids fake:1 although fake:0 holds two. */
  log_reset();
  transcode("b", 1);
  assert_true(fake_encoders_opened() >= on_device + 2);
  /* and the node hears of the quarantine with the next result */
  assert_string_equal(g.down, "fake:1");
  transcode("c", 0);
  log = log_text();
  assert_non_null(strstr(log, "Session key=0/c runs on fake:0"));
  assert_null(strstr(log, "Device fake:1 failed"));
  free(log);
  worker_stop(&wk);
}

static int setup(void **state) {
  (void)state;
  snprintf(g.dir, sizeof g.dir, "/tmp/lpod-pooldev-XXXXXX");
  if (!mkdtemp(g.dir)) return -1;
  char seg[300], cmd[1024];
  snprintf(seg, sizeof seg, "%s/in.ts", g.dir);
  snprintf(cmd, sizeof cmd,
           "ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc=size=320x240:rate=25 -t 2 "
           "-c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p -f mpegts %s",
           seg);
  if (system(cmd)) return -1;
  char *p;
  if (lp_file_read(seg, 64 << 20, &p, &g.seg_len)) return -1;
  g.seg = (uint8_t *)p;
  g.log_fd = test_log_capture();
  if (g.log_fd < 0) return -1;
  uv_loop_init(&g.loop);
  uv_timer_init(&g.loop, &g.tick);
  uv_timer_start(&g.tick, on_tick, 20, 20);
  net_server_opts_t so;
  memset(&so, 0, sizeof so);
  so.addr = "127.0.0.1:0";
  so.cert_dir = g.dir;
  char err[256];
  if (net_server_new(&g.loop, &so, &g.srv, err, sizeof err)) return -1;
  if (net_server_listen(g.srv, err, sizeof err)) return -1;
  g.port = net_server_port(g.srv);
  pool_manager_opts_t mo;
  memset(&mo, 0, sizeof mo);
  /* the worker registers as the node's local worker 0, whose device reports the node reads */
  static const char *const locals[] = {SECRET};
  mo.secret = "remote-transcoders-secret";
  mo.local_secrets = locals;
  mo.n_local = 1;
  mo.on_devices = on_devices;
  return pool_manager_new(&g.loop, g.srv, &mo, &g.mgr) ? -1 : 0;
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int teardown(void **state) {
  (void)state;
  pool_manager_free(g.mgr);
  net_server_free(g.srv);
  uv_close((uv_handle_t *)&g.tick, NULL);
  uv_run(&g.loop, UV_RUN_NOWAIT);
  uv_walk(&g.loop, walk_close, NULL);
  uv_run(&g.loop, UV_RUN_DEFAULT);
  uv_loop_close(&g.loop);
  free(g.seg);
  for (size_t i = 0; i < LP_ARRAY_LEN(later); i++) free(later[i]);
  lp_log_set_fd(2);
  close(g.log_fd);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g.dir);
  if (system(cmd)) return 0;
  return 0;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_caps_and_placement),
      cmocka_unit_test(test_device_fails),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
