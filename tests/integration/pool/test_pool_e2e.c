/* Remote transcoders on real sockets and processes: an orchestrator-side pool manager in this
 * process, an in-process fake transcoder for the protocol's edge cases, and real `lpod
 * -transcoder` processes for end-to-end segments, a kill -9 mid-segment and a wrong secret.
 *
 * Environment: LPOD_BIN (the lpod executable). ffmpeg makes the input segments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <libavformat/avformat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "lpod/core.h"
#include "lpod/net.h"
#include "lpod/pool.h"
#include "pool_test.h"

#define SECRET "pool-test-secret"

static struct {
  char dir[256];
  char small_seg[300], big_seg[300];
  uint8_t *small, *big;
  size_t small_len, big_len;
  uv_loop_t loop;
  uv_timer_t tick;
  net_server_t *srv;
  net_client_t *client;
  pool_manager_t *mgr;
  int port;
  pid_t t1, t2; /* lpod transcoders: capacity 1 and 3 */
} g;

/* ---- loop helpers ---------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *h) { (void)h; }

/* Runs the loop until *flag is set or timeout_ms passes; returns whether the flag got set. */
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

/* ---- segments and profiles ---------------------------------------------------------------------
 */

static int make_segment(const char *path, const char *size, int seconds) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc=size=%s:rate=25 -t %d "
           "-c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p -f mpegts %s",
           size, seconds, path);
  return system(cmd);
}

/* Video frames in a muxed rendition, counted by libavformat. */
static int64_t count_frames(const uint8_t *data, size_t len, int *w, int *h) {
  return pt_count_frames(g.dir, data, len, w, h);
}

typedef struct seg_req {
  Net__SegData sd;
  Net__AuthToken tok;
  Net__VideoProfile p[2];
  Net__VideoProfile *pp[2];
} seg_req_t;

static void seg_req_init(seg_req_t *r, const char *session, int64_t seq, int nprof) {
  net__seg_data__init(&r->sd);
  net__auth_token__init(&r->tok);
  r->tok.session_id = (char *)session;
  r->sd.auth_token = &r->tok;
  r->sd.manifestid.data = (uint8_t *)"manifest";
  r->sd.manifestid.len = 8;
  r->sd.seq = seq;
  r->sd.duration = 2000;
  static const int dims[2][2] = {{160, 120}, {240, 180}};
  for (int i = 0; i < 2; i++) {
    net__video_profile__init(&r->p[i]);
    r->p[i].name = i ? "r180" : "r120";
    r->p[i].width = dims[i][0];
    r->p[i].height = dims[i][1];
    r->p[i].bitrate = 200000;
    r->pp[i] = &r->p[i];
  }
  r->sd.n_fullprofiles = (size_t)nprof;
  r->sd.fullprofiles = r->pp;
}

typedef struct outcome {
  bool done;
  int err;
  char error[256];
  int attempts;
  size_t n;
  int64_t frames[2];
  int w[2], h[2];
  int64_t decoded_pixels;
} outcome_t;

static void on_done(pool_result_t *res, void *arg) {
  outcome_t *o = arg;
  o->done = true;
  o->err = res->err;
  o->attempts = res->attempts;
  snprintf(o->error, sizeof o->error, "%s", res->error);
  o->n = res->n;
  o->decoded_pixels = res->decoded_pixels;
  for (size_t i = 0; i < res->n && i < 2; i++)
    o->frames[i] =
        count_frames(res->renditions[i].data, res->renditions[i].len, &o->w[i], &o->h[i]);
}

static void submit(const char *session, int64_t seq, const uint8_t *in, size_t len, int nprof,
                   outcome_t *o) {
  seg_req_t r;
  seg_req_init(&r, session, seq, nprof);
  memset(o, 0, sizeof *o);
  assert_int_equal(pool_manager_submit(g.mgr, &r.sd, NULL, in, len, on_done, o), 0);
  assert_false(o->done); /* never from inside submit */
}

/* ---- transcoder processes -----------------------------------------------------------------------
 */

static pid_t spawn_transcoder_at(const char *name, const char *addr, const char *secret,
                                 int capacity) {
  const char *bin = getenv("LPOD_BIN");
  if (!bin) return -1;
  char datadir[400], cap[16], log[400];
  snprintf(datadir, sizeof datadir, "%s/%s", g.dir, name);
  snprintf(cap, sizeof cap, "%d", capacity);
  snprintf(log, sizeof log, "%s/%s.log", g.dir, name);
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test's transcoder must not outlive it */
    FILE *f = freopen(log, "w", stderr);
    (void)f;
    dup2(2, 1);
    execl(bin, bin, "-transcoder", "-orchAddr", addr, "-orchSecret", secret, "-maxSessions", cap,
          "-dataDir", datadir, "-cliAddr", "127.0.0.1:0", "-v", "5", (char *)NULL);
    _exit(127);
  }
  return pid;
}

static pid_t spawn_transcoder(const char *name, const char *secret, int capacity) {
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", g.port);
  return spawn_transcoder_at(name, addr, secret, capacity);
}

/* Waits for a child; returns its exit status, or -1 if it is still running after timeout_ms. */
static int wait_exit(pid_t pid, uint64_t timeout_ms) {
  uint64_t end = lp_now_ms() + timeout_ms;
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (lp_now_ms() >= end) return -1;
    run_for(50);
  }
}

/* CPU seconds a process has used (utime + stime), from /proc. */
static double cpu_seconds(pid_t pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long ut = 0, st = 0;
  /* fields after the command: state(3) ... utime(14) stime(15) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- the in-process fake transcoder
 * -------------------------------------------------------------- */

typedef struct fake_t {
  net_fetch_t *call;
  bool ended;
  int status;
  char message[128];
  int nmsg;
  int64_t task_id;
  char url[512];
  char session[64];
  bool teardown;
} fake_t;

static int fake_on_msg(const uint8_t *msg, size_t len, void *arg) {
  fake_t *f = arg;
  Net__NotifySegment *ns = net__notify_segment__unpack(NULL, len, msg);
  if (!ns) return 0;
  f->nmsg++;
  f->task_id = ns->taskid;
  snprintf(f->url, sizeof f->url, "%s", ns->url ? ns->url : "");
  f->teardown = !ns->url || !ns->url[0];
  if (ns->segdata && ns->segdata->auth_token && ns->segdata->auth_token->session_id)
    snprintf(f->session, sizeof f->session, "%s", ns->segdata->auth_token->session_id);
  net__notify_segment__free_unpacked(ns, NULL);
  return 0;
}

static void fake_on_done(int status, const char *message, void *arg) {
  fake_t *f = arg;
  f->call = NULL;
  f->ended = true;
  f->status = status;
  snprintf(f->message, sizeof f->message, "%s", message ? message : "");
}

/* Registers at the service port `port` (g.port, or a second one's). */
static void fake_register(fake_t *f, net_client_t *client, int port, const char *secret,
                          int64_t capacity) {
  memset(f, 0, sizeof *f);
  Net__RegisterRequest rr = NET__REGISTER_REQUEST__INIT;
  Net__Capabilities caps = NET__CAPABILITIES__INIT;
  uint64_t word = pool_worker_caps_word0();
  caps.n_bitstring = 1;
  caps.bitstring = &word;
  caps.version = "0.9.1";
  rr.secret = (char *)secret;
  rr.capacity = capacity;
  rr.capabilities = &caps;
  uint8_t buf[256];
  size_t len = net__register_request__pack(&rr, buf);
  char base[64];
  snprintf(base, sizeof base, "https://127.0.0.1:%d", port);
  net_grpc_call_opts_t co = {base, POOL_REGISTER_METHOD, buf, len, true, 0, 0};
  assert_int_equal(net_client_grpc(client, &co, fake_on_msg, fake_on_done, f, &f->call), 0);
}

typedef struct http_res {
  bool done;
  int err;
  long status;
  lp_buf_t body;
} http_res_t;

static void on_http(const net_fetch_result_t *res, void *arg) {
  http_res_t *h = arg;
  h->done = true;
  h->err = res->err;
  h->status = res->status;
  lp_buf_append(&h->body, res->body, res->body_len);
}

/* POSTs to /transcodeResults at the service port `port` over HTTP/2; returns the status. */
static long post_results(int port, const net_header_t *hdrs, size_t n, const void *body,
                         size_t len) {
  char url[128];
  snprintf(url, sizeof url, "https://127.0.0.1:%d%s", port, POOL_RESULTS_PATH);
  net_fetch_opts_t fo;
  memset(&fo, 0, sizeof fo);
  fo.method = "POST";
  fo.url = url;
  fo.headers = hdrs;
  fo.nheaders = n;
  fo.body = body;
  fo.body_len = len;
  fo.version = NET_HTTP_2;
  fo.insecure = true;
  fo.timeout_ms = 10000;
  http_res_t h;
  memset(&h, 0, sizeof h);
  assert_int_equal(net_client_fetch(g.client, &fo, on_http, &h, NULL), 0);
  assert_true(run_until(&h.done, 15000));
  lp_buf_free(&h.body);
  return h.err ? -1 : h.status;
}

static long get_url(const char *url, lp_buf_t *body) {
  net_fetch_opts_t fo;
  memset(&fo, 0, sizeof fo);
  fo.url = url;
  fo.version = NET_HTTP_1;
  fo.insecure = true;
  fo.timeout_ms = 10000;
  http_res_t h;
  memset(&h, 0, sizeof h);
  assert_int_equal(net_client_fetch(g.client, &fo, on_http, &h, NULL), 0);
  assert_true(run_until(&h.done, 15000));
  if (body)
    *body = h.body;
  else
    lp_buf_free(&h.body);
  return h.err ? -1 : h.status;
}

/* A second service port with a pool manager of its own (mo), for the options the shared one
 * lacks; returns its port. stop_second frees both. */
static int start_second(const pool_manager_opts_t *mo, net_server_t **srv, pool_manager_t **m) {
  net_server_opts_t so;
  memset(&so, 0, sizeof so);
  so.addr = "127.0.0.1:0";
  so.cert_dir = g.dir;
  char err[256];
  assert_int_equal(net_server_new(&g.loop, &so, srv, err, sizeof err), 0);
  assert_int_equal(net_server_listen(*srv, err, sizeof err), 0);
  assert_int_equal(pool_manager_new(&g.loop, *srv, mo, m), 0);
  return net_server_port(*srv);
}

static void stop_second(net_server_t *srv, pool_manager_t *m) {
  pool_manager_free(m);
  run_for(100);
  net_server_free(srv);
  run_for(100);
}

/* ---- tests
 * ---------------------------------------------------------------------------------------- */

static void test_register_refused(void **state) {
  (void)state;
  fake_t f;
  fake_register(&f, g.client, g.port, "wrong-secret", 2);
  assert_true(run_until(&f.ended, 10000));
  assert_int_equal(f.status, NET_GRPC_UNKNOWN);
  assert_string_equal(f.message, "invalid secret");
  fake_register(&f, g.client, g.port, SECRET, 0);
  assert_true(run_until(&f.ended, 10000));
  assert_string_equal(f.message, "zero capacity");
  assert_int_equal(pool_manager_transcoders(g.mgr), 0);
  /* No transcoder: the segment fails at once with go's text. */
  outcome_t o;
  submit("nobody", 1, g.small, g.small_len, 1, &o);
  assert_true(run_until(&o.done, 5000));
  assert_int_equal(o.err, LP_EUNSUPP);
  assert_string_equal(o.error, "no transcoders can provide requested capabilities");
}

static void test_results_malformed(void **state) {
  (void)state;
  fake_t f;
  /* A client of its own, so that freeing it closes the connection like a dying process. */
  net_client_t *fc = net_client_new(&g.loop);
  assert_non_null(fc);
  fake_register(&f, fc, g.port, SECRET, 1);
  assert_true(wait_transcoders(1, 10000));
  assert_int_equal(pool_manager_capacity(g.mgr), 1);
  uint64_t caps[2] = {0, 0};
  assert_int_equal(pool_manager_caps(g.mgr, caps, 2), 1);
  assert_int_equal(caps[0], pool_worker_caps_word0());

  outcome_t o;
  submit("fake-s1", 1, g.small, g.small_len, 2, &o);
  int nmsg = f.nmsg;
  run_for(300);
  assert_int_equal(f.nmsg, nmsg + 1);
  assert_true(f.task_id > 0);
  assert_string_equal(f.session, "fake-s1");

  /* The input is hosted for the task, and only under its exact URL. */
  lp_buf_t body = LP_BUF_INIT;
  assert_int_equal(get_url(f.url, &body), 200);
  assert_int_equal(body.len, g.small_len);
  assert_memory_equal(body.data, g.small, g.small_len);
  lp_buf_free(&body);
  char bad[600];
  snprintf(bad, sizeof bad, "%s", f.url);
  bad[strlen(bad) - strlen(".tempfile") - 1] ^= 1;
  assert_int_equal(get_url(bad, NULL), 404);

  char tid[32];
  snprintf(tid, sizeof tid, "%" PRId64, f.task_id);
  const char *mp = "multipart/mixed; boundary=XYZ";
  net_header_t h_noauth[] = {
      {"Credentials", SECRET}, {"TaskId", tid}, {"Pixels", "1"}, {"Content-Type", mp}};
  assert_int_equal(post_results(g.port, h_noauth, 4, "x", 1), 401);
  net_header_t h_cred[] = {{"Authorization", POOL_AUTH_HEADER_VALUE},
                           {"Credentials", "nope"},
                           {"TaskId", tid},
                           {"Pixels", "1"},
                           {"Content-Type", mp}};
  assert_int_equal(post_results(g.port, h_cred, 5, "x", 1), 401);
  net_header_t h_ct[] = {{"Authorization", POOL_AUTH_HEADER_VALUE},
                         {"Credentials", SECRET},
                         {"TaskId", tid},
                         {"Pixels", "1"},
                         {"Content-Type", "garbage"}};
  assert_int_equal(post_results(g.port, h_ct, 5, "x", 1), 415);
  net_header_t h_tid[] = {{"Authorization", POOL_AUTH_HEADER_VALUE},
                          {"Credentials", SECRET},
                          {"TaskId", "12x"},
                          {"Pixels", "1"},
                          {"Content-Type", mp}};
  assert_int_equal(post_results(g.port, h_tid, 5, "x", 1), 400);
  net_header_t h_px[] = {{"Authorization", POOL_AUTH_HEADER_VALUE},
                         {"Credentials", SECRET},
                         {"TaskId", tid},
                         {"Pixels", "many"},
                         {"Content-Type", mp}};
  assert_int_equal(post_results(g.port, h_px, 5, "x", 1), 400);
  /* A task nobody knows is dropped quietly. */
  net_header_t h_unknown[] = {{"Authorization", POOL_AUTH_HEADER_VALUE},
                              {"Credentials", SECRET},
                              {"TaskId", "5"},
                              {"Pixels", "1"},
                              {"Content-Type", mp}};
  assert_int_equal(post_results(g.port, h_unknown, 5, "--XYZ--\r\n", 9), 200);
  assert_false(o.done);
  /* A broken multipart body for the real task: 500, and the task fails with the reason. */
  net_header_t h_ok[] = {{"Authorization", POOL_AUTH_HEADER_VALUE},
                         {"Credentials", SECRET},
                         {"TaskId", tid},
                         {"Pixels", "1"},
                         {"Content-Type", mp}};
  const char *broken = "--XYZ\r\nPixels: 10\r\n\r\nrendition bytes without an end";
  assert_int_equal(post_results(g.port, h_ok, 5, broken, strlen(broken)), 500);
  assert_true(run_until(&o.done, 2000));
  assert_int_equal(o.err, LP_EPROTO);
  /* A late duplicate for the finished task is dropped. */
  assert_int_equal(post_results(g.port, h_ok, 5, broken, strlen(broken)), 200);

  /* A transcoding error travels with its text. */
  submit("fake-s2", 1, g.small, g.small_len, 2, &o);
  run_for(300);
  snprintf(tid, sizeof tid, "%" PRId64, f.task_id);
  net_header_t h_err[] = {{"Authorization", POOL_AUTH_HEADER_VALUE},
                          {"Credentials", SECRET},
                          {"TaskId", tid},
                          {"Pixels", "0"},
                          {"Content-Type", POOL_ERROR_CONTENT_TYPE}};
  assert_int_equal(post_results(g.port, h_err, 5, "No keyframes in input", 21), 200);
  assert_true(run_until(&o.done, 2000));
  assert_int_equal(o.err, LP_EMEDIA);
  assert_string_equal(o.error, "No keyframes in input");

  /* Fewer renditions than profiles. */
  submit("fake-s3", 1, g.small, g.small_len, 2, &o);
  run_for(300);
  snprintf(tid, sizeof tid, "%" PRId64, f.task_id);
  net_header_t h_one[] = {{"Authorization", POOL_AUTH_HEADER_VALUE},
                          {"Credentials", SECRET},
                          {"TaskId", tid},
                          {"Pixels", "100"},
                          {"Content-Type", mp}};
  const char *one = "--XYZ\r\nContent-Type: video/mp2t\r\nPixels: 10\r\n\r\n"
                    "0123456789012345678901234567890123456789\r\n--XYZ--\r\n";
  assert_int_equal(post_results(g.port, h_one, 5, one, strlen(one)), 200);
  assert_true(run_until(&o.done, 2000));
  assert_int_equal(o.err, LP_EPROTO);
  assert_string_equal(o.error, "segment / profile mismatch");

  /* A good upload with one profile: renditions and pixels arrive as sent. */
  submit("fake-s4", 1, g.small, g.small_len, 1, &o);
  run_for(300);
  snprintf(tid, sizeof tid, "%" PRId64, f.task_id);
  h_one[2].value = tid;
  assert_int_equal(post_results(g.port, h_one, 5, one, strlen(one)), 200);
  assert_true(run_until(&o.done, 2000));
  assert_int_equal(o.err, 0);
  assert_int_equal(o.n, 1);
  assert_int_equal(o.decoded_pixels, 100);

  /* Session end sends the teardown to the transcoder that had it. */
  assert_int_equal(pool_manager_end_session(g.mgr, "fake-s4"), 0);
  run_for(300);
  assert_true(f.teardown);
  assert_string_equal(f.session, "fake-s4");
  assert_int_equal(pool_manager_end_session(g.mgr, "fake-s4"), LP_ENOENT);

  /* The fake goes away: its capacity with it. */
  net_client_free(fc);
  assert_true(wait_transcoders(0, 10000));
  assert_int_equal(pool_manager_capacity(g.mgr), 0);
}

static void check_output(const outcome_t *o, int nprof) {
  assert_int_equal(o->err, 0);
  assert_int_equal((int)o->n, nprof);
  assert_true(o->decoded_pixels > 0);
  for (int i = 0; i < nprof; i++) {
    /* 2 s of 25 fps in, frame rate passed through. */
    assert_int_equal(o->frames[i], 50);
    assert_int_equal(o->w[i], i ? 240 : 160);
    assert_int_equal(o->h[i], i ? 180 : 120);
  }
}

static void test_two_transcoders(void **state) {
  (void)state;
  g.t1 = spawn_transcoder("t1", SECRET, 1);
  g.t2 = spawn_transcoder("t2", SECRET, 3);
  assert_true(g.t1 > 0 && g.t2 > 0);
  assert_true(wait_transcoders(2, 20000));
  assert_int_equal(pool_manager_capacity(g.mgr), 4);

  /* Free capacity decides: A and B go to t2 (3 slots), C to t1 (1 slot, less loaded). */
  outcome_t a, b, c;
  submit("sess-a", 1, g.small, g.small_len, 2, &a);
  submit("sess-b", 1, g.small, g.small_len, 2, &b);
  submit("sess-c", 1, g.small, g.small_len, 2, &c);
  assert_true(run_until(&a.done, 60000));
  assert_true(run_until(&b.done, 60000));
  assert_true(run_until(&c.done, 60000));
  check_output(&a, 2);
  check_output(&b, 2);
  check_output(&c, 2);
  assert_int_equal(pool_manager_load(g.mgr), 3);
  /* D takes t2's last slot; then the pool is full and E is refused with go's text. */
  outcome_t d, e;
  submit("sess-d", 1, g.small, g.small_len, 1, &d);
  assert_true(run_until(&d.done, 60000));
  check_output(&d, 1);
  submit("sess-e", 1, g.small, g.small_len, 1, &e);
  assert_true(run_until(&e.done, 5000));
  assert_int_equal(e.err, LP_ECAPACITY);
  assert_string_equal(e.error, "no transcoders available");
  /* Sticky: the next segment of a stream goes where its first went and stays warm there. */
  submit("sess-a", 2, g.small, g.small_len, 2, &a);
  assert_true(run_until(&a.done, 60000));
  check_output(&a, 2);
  assert_int_equal(a.attempts, 1);
  assert_int_equal(pool_manager_load(g.mgr), 4);
  assert_int_equal(pool_manager_end_session(g.mgr, "sess-d"), 0);
  assert_int_equal(pool_manager_end_session(g.mgr, "sess-a"), 0);
  assert_int_equal(pool_manager_end_session(g.mgr, "sess-b"), 0);
  assert_int_equal(pool_manager_end_session(g.mgr, "sess-c"), 0);
  assert_int_equal(pool_manager_load(g.mgr), 0);

  /* An input over the transcoder's 48 MiB limit: it stops reading and answers with an error of
   * its own instead of buffering it; the stream's next, ordinary segment is served as before. */
  size_t big_len = ((size_t)48 << 20) + 1;
  uint8_t *big = calloc(1, big_len);
  assert_non_null(big);
  outcome_t f;
  submit("sess-f", 1, big, big_len, 1, &f);
  assert_true(run_until(&f.done, 60000));
  free(big);
  assert_int_not_equal(f.err, 0);
  assert_non_null(strstr(f.error, "segment larger than 50331648 bytes"));
  submit("sess-f", 2, g.small, g.small_len, 1, &f);
  assert_true(run_until(&f.done, 60000));
  check_output(&f, 1);
  assert_int_equal(pool_manager_end_session(g.mgr, "sess-f"), 0);
}

typedef struct thread_job {
  volatile bool done;
  int rc;
  pool_result_t res;
} thread_job_t;

/* What the orchestrator's per-session worker threads do. */
static void *wait_thread(void *arg) {
  thread_job_t *tj = arg;
  media_profile_t p;
  memset(&p, 0, sizeof p);
  snprintf(p.name, sizeof p.name, "r120");
  p.width = 160;
  p.height = 120;
  p.bitrate = 200000;
  pool_job_t job;
  memset(&job, 0, sizeof job);
  job.session_id = "sess-thread";
  job.manifest_id = "manifest";
  job.seq = 7;
  job.duration_ms = 2000;
  job.profiles = &p;
  job.n_profiles = 1;
  job.input = g.small;
  job.input_len = g.small_len;
  tj->rc = pool_manager_transcode_wait(g.mgr, &job, &tj->res);
  pool_manager_end_session_async(g.mgr, "sess-thread");
  tj->done = true;
  return NULL;
}

static void test_wait_from_thread(void **state) {
  (void)state;
  thread_job_t tj;
  memset(&tj, 0, sizeof tj);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, wait_thread, &tj), 0);
  assert_true(run_until((volatile bool *)&tj.done, 60000));
  pthread_join(th, NULL);
  run_for(100);
  assert_int_equal(tj.rc, 0);
  assert_int_equal((int)tj.res.n, 1);
  int w = 0, h = 0;
  assert_int_equal(count_frames(tj.res.renditions[0].data, tj.res.renditions[0].len, &w, &h), 50);
  assert_int_equal(w, 160);
  pool_result_free(&tj.res);
  assert_int_equal(pool_manager_load(g.mgr), 0);
}

static void test_kill_mid_segment(void **state) {
  (void)state;
  assert_true(g.t1 > 0 && g.t2 > 0);
  /* Empty pool: the new stream goes to t2 (3 free slots against 1). */
  double before = cpu_seconds(g.t2);
  outcome_t o;
  submit("sess-kill", 1, g.big, g.big_len, 2, &o);
  /* Wait until t2 is busy transcoding it, then kill it. */
  uint64_t end = lp_now_ms() + 20000;
  while (!o.done && cpu_seconds(g.t2) - before < 0.3 && lp_now_ms() < end) run_for(20);
  assert_false(o.done);
  kill(g.t2, SIGKILL);
  assert_true(wait_exit(g.t2, 10000) >= 0);
  g.t2 = 0;
  assert_true(run_until(&o.done, 90000));
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  assert_int_equal((int)o.n, 2);
  /* 4 s of 25 fps. */
  assert_int_equal(o.frames[0], 100);
  assert_int_equal(o.frames[1], 100);
  assert_int_equal(pool_manager_transcoders(g.mgr), 1);
  assert_int_equal(pool_manager_capacity(g.mgr), 1);
  assert_int_equal(pool_manager_end_session(g.mgr, "sess-kill"), 0);
}

static void test_wrong_secret_process(void **state) {
  (void)state;
  pid_t p = spawn_transcoder("t3", "not-the-secret", 2);
  assert_true(p > 0);
  int st = wait_exit(p, 20000);
  if (st < 0) kill(p, SIGKILL);
  assert_true(st > 0); /* exited on its own, non-zero */
  assert_int_equal(pool_manager_transcoders(g.mgr), 1);
}

static void test_sigterm_drains(void **state) {
  (void)state;
  assert_true(g.t1 > 0);
  double before = cpu_seconds(g.t1);
  outcome_t o;
  submit("sess-drain", 1, g.big, g.big_len, 2, &o);
  uint64_t end = lp_now_ms() + 20000;
  while (!o.done && cpu_seconds(g.t1) - before < 0.3 && lp_now_ms() < end) run_for(20);
  kill(g.t1, SIGTERM);
  /* The running task still finishes and uploads; then the process exits cleanly. */
  assert_true(run_until(&o.done, 90000));
  assert_int_equal(o.err, 0);
  assert_int_equal(o.frames[0], 100);
  assert_int_equal(wait_exit(g.t1, 20000), 0);
  g.t1 = 0;
}

/* One transcoder process serves two orchestrators at once; a third address that refuses
 * connections is retried in the background without holding the others up. */
static void test_several_orchestrators(void **state) {
  (void)state;
  pool_manager_opts_t mo;
  memset(&mo, 0, sizeof mo);
  mo.secret = SECRET;
  net_server_t *srv2 = NULL;
  pool_manager_t *m2 = NULL;
  start_second(&mo, &srv2, &m2);
  char addrs[128];
  snprintf(addrs, sizeof addrs, "127.0.0.1:%d,127.0.0.1:1,127.0.0.1:%d", g.port,
           net_server_port(srv2));
  pid_t t = spawn_transcoder_at("t4", addrs, SECRET, 2);
  assert_true(t > 0);
  uint64_t end = lp_now_ms() + 20000;
  while ((pool_manager_transcoders(g.mgr) != 1 || pool_manager_transcoders(m2) != 1) &&
         lp_now_ms() < end)
    run_for(20);
  assert_int_equal(pool_manager_transcoders(g.mgr), 1);
  assert_int_equal(pool_manager_transcoders(m2), 1);
  /* The same session id at both orchestrators stays two separate streams at the transcoder. */
  outcome_t a, b;
  submit("same-id", 1, g.small, g.small_len, 2, &a);
  seg_req_t r;
  seg_req_init(&r, "same-id", 1, 1);
  memset(&b, 0, sizeof b);
  assert_int_equal(pool_manager_submit(m2, &r.sd, NULL, g.small, g.small_len, on_done, &b), 0);
  assert_true(run_until(&a.done, 60000));
  assert_true(run_until(&b.done, 60000));
  check_output(&a, 2);
  check_output(&b, 1);
  kill(t, SIGTERM);
  assert_int_equal(wait_exit(t, 20000), 0);
  stop_second(srv2, m2);
}

/* A transcoder that never answers: the task ends after max(min timeout, 4 x duration) with go's
 * text, the transcoder's stream is closed, and the segment is not retried. */
static void test_task_timeout(void **state) {
  (void)state;
  pool_manager_opts_t mo;
  memset(&mo, 0, sizeof mo);
  mo.secret = SECRET;
  mo.min_timeout_ms = 300;
  net_server_t *srv2 = NULL;
  pool_manager_t *m2 = NULL;
  int port2 = start_second(&mo, &srv2, &m2);
  fake_t f;
  fake_register(&f, g.client, port2, SECRET, 1);
  assert_true(pt_wait_transcoders(&g.loop, m2, 1, 10000));
  seg_req_t r;
  seg_req_init(&r, "slow", 1, 1);
  r.sd.duration = 50;
  outcome_t o;
  memset(&o, 0, sizeof o);
  assert_int_equal(pool_manager_submit(m2, &r.sd, NULL, g.small, g.small_len, on_done, &o), 0);
  assert_true(run_until(&o.done, 10000));
  assert_int_equal(o.err, LP_ETIMEDOUT);
  assert_string_equal(o.error, "Remote transcoder took too long");
  assert_int_equal(o.attempts, 1);
  assert_int_equal(f.nmsg, 1);
  assert_true(run_until(&f.ended, 10000));
  assert_int_equal(pool_manager_transcoders(m2), 0);
  stop_second(srv2, m2);
}

/* The node's own workers register with secrets of their own, and a new session goes where its
 * target says: the named worker, a local worker before a remote transcoder, or a remote one
 * only. A named worker that is gone leaves the session to another local worker. Results must
 * come with the credentials of the transcoder that has the task. A segment no transcoder can
 * take waits while a local worker is missing. */
static void test_local_targets(void **state) {
  (void)state;
  static const char *const locals[] = {"worker-0-secret", "worker-1-secret"};
  pool_manager_opts_t mo;
  memset(&mo, 0, sizeof mo);
  mo.secret = SECRET;
  mo.local_secrets = locals;
  mo.n_local = 2;
  mo.min_timeout_ms = 300;
  net_server_t *srv2 = NULL;
  pool_manager_t *m2 = NULL;
  int port2 = start_second(&mo, &srv2, &m2);
  /* a client (connection) each, so that closing one is a disconnect the manager sees */
  static fake_t w0, w1, remote, bad;
  net_client_t *cw0 = net_client_new(&g.loop), *cw1 = net_client_new(&g.loop),
               *cr = net_client_new(&g.loop);
  assert_true(cw0 && cw1 && cr);
  fake_register(&remote, cr, port2, SECRET, 8);
  fake_register(&w0, cw0, port2, locals[0], 8);
  fake_register(&w1, cw1, port2, locals[1], 8);
  fake_register(&bad, g.client, port2, "worker-2-secret", 8);
  assert_true(run_until(&bad.ended, 10000));
  assert_string_equal(bad.message, "invalid secret");
  uint64_t end;
  assert_true(pt_wait_transcoders(&g.loop, m2, 3, 10000));

  static const struct {
    const char *session;
    int target;
  } cases[] = {{"to-w1", 1},
               {"to-w0", 0},
               {"local-a", POOL_TARGET_LOCAL},
               {"local-b", POOL_TARGET_LOCAL},
               {"remote", POOL_TARGET_REMOTE}};
  static outcome_t o[6]; /* outlives a failed assertion: the tasks still report to it */
  seg_req_t r;
  for (size_t i = 0; i < LP_ARRAY_LEN(cases); i++) {
    int n0 = w0.nmsg, n1 = w1.nmsg, nr = remote.nmsg;
    seg_req_init(&r, cases[i].session, 1, 1);
    memset(&o[i], 0, sizeof o[i]);
    assert_int_equal(pool_manager_submit_to(m2, &r.sd, NULL, cases[i].target, g.small, g.small_len,
                                            on_done, &o[i]),
                     0);
    end = lp_now_ms() + 5000;
    while (w0.nmsg + w1.nmsg + remote.nmsg == n0 + n1 + nr && lp_now_ms() < end) run_for(10);
    int got = w0.nmsg > n0 ? 0 : w1.nmsg > n1 ? 1 : remote.nmsg > nr ? -1 : -9;
    print_message("session %s -> %s\n", cases[i].session,
                  got == -1  ? "remote"
                  : got == 0 ? "worker 0"
                  : got == 1 ? "worker 1"
                             : "nobody");
    if (cases[i].target >= 0)
      assert_int_equal(got, cases[i].target);
    else if (cases[i].target == POOL_TARGET_LOCAL)
      assert_true(got == 0 || got == 1);
    else
      assert_int_equal(got, -1);
  }
  /* the two LOCAL sessions went to the worker with more free slots each time: one apiece */
  assert_int_equal(w0.nmsg, 2);
  assert_int_equal(w1.nmsg, 2);
  /* worker 1's result posted with worker 0's credentials is refused */
  char task[32];
  snprintf(task, sizeof task, "%" PRId64, w1.task_id);
  net_header_t h[] = {{"Authorization", POOL_AUTH_HEADER_VALUE},
                      {"Credentials", locals[0]},
                      {"TaskId", task},
                      {"Content-Type", POOL_ERROR_CONTENT_TYPE}};
  assert_int_equal(post_results(port2, h, LP_ARRAY_LEN(h), "x", 1), 403);
  /* worker 1 goes away: its two tasks are retried on worker 0, a local worker, rather than on
   * the remote transcoder; a new session meant for worker 1 goes to worker 0 too */
  net_client_free(cw1);
  assert_true(pt_wait_transcoders(&g.loop, m2, 2, 10000));
  end = lp_now_ms() + 5000;
  while (w0.nmsg < 4 && lp_now_ms() < end) run_for(10);
  assert_int_equal(w0.nmsg, 4);
  assert_int_equal(remote.nmsg, 1);
  int n0 = w0.nmsg;
  seg_req_init(&r, "to-w1-late", 1, 1);
  memset(&o[5], 0, sizeof o[5]);
  assert_int_equal(pool_manager_submit_to(m2, &r.sd, NULL, 1, g.small, g.small_len, on_done, &o[5]),
                   0);
  end = lp_now_ms() + 5000;
  while (w0.nmsg == n0 && lp_now_ms() < end) run_for(10);
  assert_int_equal(w0.nmsg, n0 + 1);
  /* the others go too: with no transcoder left, every task ends */
  net_client_free(cw0);
  net_client_free(cr);
  for (size_t i = 0; i < 6; i++) {
    assert_true(run_until(&o[i].done, 10000));
    assert_int_not_equal(o[i].err, 0);
  }
  /* with no local worker up, a new segment waits for one instead of failing, and goes to the
   * first that registers */
  static outcome_t wait_o;
  seg_req_init(&r, "waits", 1, 1);
  memset(&wait_o, 0, sizeof wait_o);
  assert_int_equal(
      pool_manager_submit_to(m2, &r.sd, NULL, 1, g.small, g.small_len, on_done, &wait_o), 0);
  run_for(500);
  assert_false(wait_o.done);
  net_client_t *again = net_client_new(&g.loop);
  assert_non_null(again);
  fake_register(&w0, again, port2, locals[0], 8);
  end = lp_now_ms() + 5000;
  while (w0.nmsg == 0 && lp_now_ms() < end) run_for(10);
  assert_int_equal(w0.nmsg, 1);
  assert_string_equal(w0.session, "waits");
  assert_false(wait_o.done);
  /* its transcoder gone, a segment that was sent is not held back: it fails at once */
  net_client_free(again);
  assert_true(run_until(&wait_o.done, 3000));
  assert_int_equal(wait_o.attempts, 1);
  stop_second(srv2, m2);
}

/* A segment in flight on a local worker that goes away gets one more try on another worker;
 * lost under a second one, it fails with lpms's "dead process" text instead of being handed to
 * a third (a segment that crashes workers must not take them all down), even with transcoders
 * left that could take it. */
static void test_local_losses(void **state) {
  (void)state;
  static const char *const locals[] = {"lw-0-secret", "lw-1-secret", "lw-2-secret"};
  pool_manager_opts_t mo;
  memset(&mo, 0, sizeof mo);
  mo.secret = SECRET;
  mo.local_secrets = locals;
  mo.n_local = 3;
  net_server_t *srv2 = NULL;
  pool_manager_t *m2 = NULL;
  int port2 = start_second(&mo, &srv2, &m2);
  static fake_t w[3], remote;
  net_client_t *cw[3], *cr = net_client_new(&g.loop);
  assert_non_null(cr);
  fake_register(&remote, cr, port2, SECRET, 8);
  for (int i = 0; i < 3; i++) {
    assert_non_null(cw[i] = net_client_new(&g.loop));
    fake_register(&w[i], cw[i], port2, locals[i], 8);
  }
  uint64_t end;
  assert_true(pt_wait_transcoders(&g.loop, m2, 4, 10000));
  static outcome_t o;
  memset(&o, 0, sizeof o);
  seg_req_t r;
  seg_req_init(&r, "poison", 1, 1);
  assert_int_equal(
      pool_manager_submit_to(m2, &r.sd, NULL, POOL_TARGET_LOCAL, g.small, g.small_len, on_done, &o),
      0);
  bool gone[3] = {false, false, false};
  for (int loss = 0; loss < 2; loss++) {
    int holder = -1;
    end = lp_now_ms() + 5000;
    while (holder < 0 && lp_now_ms() < end) {
      run_for(10);
      for (int i = 0; i < 3; i++)
        if (!gone[i] && w[i].nmsg > 0) holder = i;
    }
    assert_true(holder >= 0);
    assert_int_equal(remote.nmsg, 0); /* local workers first */
    assert_false(o.done);
    net_client_free(cw[holder]); /* the worker dies with the segment */
    gone[holder] = true;
  }
  assert_true(run_until(&o.done, 5000));
  assert_int_equal(o.err, LP_EMEDIA);
  assert_string_equal(o.error, POOL_ERR_WORKERS_LOST);
  assert_int_equal(o.attempts, 2);
  int third = !gone[0] ? 0 : !gone[1] ? 1 : 2;
  assert_int_equal(w[third].nmsg, 0);
  assert_int_equal(remote.nmsg, 0);
  net_client_free(cw[third]);
  net_client_free(cr);
  run_for(100);
  stop_second(srv2, m2);
}

/* Combined mode's worker processes: a supervised child registers over loopback and serves; after
 * kill -9 it is restarted, registers again and serves the stream's next segment. */
static bool sup_stopped;
static void on_sup_stopped(void *arg) {
  (void)arg;
  sup_stopped = true;
}

/* Starts n lpod children against the test's pool, with env for them (NULL: none). */
static pool_supervisor_t *start_children(int n, const char *env) {
  static char secret_file[400], addr[64];
  snprintf(secret_file, sizeof secret_file, "%s/pool.secret", g.dir);
  assert_int_equal(lp_file_write_atomic(secret_file, SECRET "\n", strlen(SECRET) + 1, 0600), 0);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", g.port);
  pool_supervisor_opts_t so;
  memset(&so, 0, sizeof so);
  so.exe = getenv("LPOD_BIN");
  so.orch_addr = addr;
  so.secret_file = secret_file;
  so.datadir = g.dir;
  so.workers = n;
  so.capacity = 2;
  so.verbosity = 3;
  so.env = env;
  pool_supervisor_t *sup = NULL;
  assert_int_equal(pool_supervisor_start(&g.loop, &so, &sup), 0);
  return sup;
}

static void stop_children(pool_supervisor_t *sup) {
  sup_stopped = false;
  pool_supervisor_stop(sup, on_sup_stopped, NULL);
  assert_true(run_until(&sup_stopped, 20000));
  assert_true(wait_transcoders(0, 10000));
  pool_supervisor_free(sup);
  run_for(100);
}

static void test_supervised_workers(void **state) {
  (void)state;
  pool_supervisor_t *sup = start_children(1, NULL);
  assert_true(wait_transcoders(1, 20000));
  int pid = pool_supervisor_pid(sup, 0);
  assert_true(pid > 0);
  outcome_t o;
  submit("sess-sup", 1, g.small, g.small_len, 2, &o);
  assert_true(run_until(&o.done, 60000));
  check_output(&o, 2);

  kill(pid, SIGKILL);
  assert_true(wait_transcoders(0, 10000));
  assert_true(wait_transcoders(1, 20000));
  assert_int_equal(pool_supervisor_restarts(sup, 0), 1);
  assert_true(pool_supervisor_pid(sup, 0) > 0);
  assert_int_not_equal(pool_supervisor_pid(sup, 0), pid);
  submit("sess-sup", 2, g.small, g.small_len, 2, &o);
  assert_true(run_until(&o.done, 60000));
  check_output(&o, 2);
  stop_children(sup);
}

/* One worker per device (-localWorkers auto): the last "%d" in the supervisor's environment
 * variable gives each child its own device table file. The two children register only if each
 * found its file: a child reading another name would find none and stop. */
static void test_supervised_workers_own_tables(void **state) {
  (void)state;
  char cmd[600], path[400], env[500];
  /* a table as the node writes it: the CPU, from `lpod devices -json` */
  snprintf(cmd, sizeof cmd, "%s devices -testTranscoder=false -json 2>/dev/null",
           getenv("LPOD_BIN"));
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char table[16384];
  size_t n = fread(table, 1, sizeof table - 1, p);
  assert_int_equal(pclose(p), 0);
  assert_true(n > 0 && strstr(table, "\"devices\""));
  /* in a folder whose name holds a "%d" of its own, as a data dir path may: only the file
   * name's is the child's index */
  snprintf(path, sizeof path, "%s/t%%d", g.dir);
  assert_int_equal(mkdir(path, 0700), 0);
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/t%%d/wdev-%d.json", g.dir, i);
    assert_int_equal(lp_file_write_atomic(path, table, n, 0600), 0);
  }
  snprintf(env, sizeof env, "LPOD_DEVICE_TABLE=%s/t%%d/wdev-%%d.json", g.dir);
  pool_supervisor_t *sup = start_children(2, env);
  assert_true(wait_transcoders(2, 30000));
  assert_true(pool_supervisor_pid(sup, 0) > 0 && pool_supervisor_pid(sup, 1) > 0);
  assert_int_equal(pool_supervisor_restarts(sup, 0), 0);
  assert_int_equal(pool_supervisor_restarts(sup, 1), 0);
  stop_children(sup);
}

/* ---- setup
 * --------------------------------------------------------------------------------------- */

static int setup(void **state) {
  (void)state;
  snprintf(g.dir, sizeof g.dir, "/tmp/lpod-pool-XXXXXX");
  if (!mkdtemp(g.dir)) return -1;
  snprintf(g.small_seg, sizeof g.small_seg, "%s/small.ts", g.dir);
  snprintf(g.big_seg, sizeof g.big_seg, "%s/big.ts", g.dir);
  if (make_segment(g.small_seg, "320x240", 2) || make_segment(g.big_seg, "1280x720", 4)) return -1;
  char *p;
  if (lp_file_read(g.small_seg, 64 << 20, &p, &g.small_len)) return -1;
  g.small = (uint8_t *)p;
  if (lp_file_read(g.big_seg, 64 << 20, &p, &g.big_len)) return -1;
  g.big = (uint8_t *)p;
  uv_loop_init(&g.loop);
  uv_timer_init(&g.loop, &g.tick);
  uv_timer_start(&g.tick, on_tick, 20, 20);
  net_server_opts_t so;
  memset(&so, 0, sizeof so);
  so.addr = "127.0.0.1:0";
  so.cert_dir = g.dir;
  char err[256];
  if (net_server_new(&g.loop, &so, &g.srv, err, sizeof err)) return -1;
  pool_manager_opts_t mo;
  memset(&mo, 0, sizeof mo);
  mo.secret = SECRET;
  if (net_server_listen(g.srv, err, sizeof err)) return -1;
  g.port = net_server_port(g.srv);
  if (pool_manager_new(&g.loop, g.srv, &mo, &g.mgr)) return -1;
  g.client = net_client_new(&g.loop);
  return g.client ? 0 : -1;
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int teardown(void **state) {
  (void)state;
  if (g.t1 > 0) kill(g.t1, SIGKILL), waitpid(g.t1, NULL, 0);
  if (g.t2 > 0) kill(g.t2, SIGKILL), waitpid(g.t2, NULL, 0);
  pool_manager_free(g.mgr);
  net_client_free(g.client);
  net_server_free(g.srv);
  uv_close((uv_handle_t *)&g.tick, NULL);
  uv_run(&g.loop, UV_RUN_DEFAULT);
  uv_walk(&g.loop, walk_close, NULL);
  uv_run(&g.loop, UV_RUN_DEFAULT);
  uv_loop_close(&g.loop);
  free(g.small);
  free(g.big);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g.dir);
  if (!getenv("LPOD_KEEP_TMP") && system(cmd)) return 0;
  return 0;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_register_refused),
      cmocka_unit_test(test_results_malformed),
      cmocka_unit_test(test_task_timeout),
      cmocka_unit_test(test_local_targets),
      cmocka_unit_test(test_local_losses),
      cmocka_unit_test(test_two_transcoders),
      cmocka_unit_test(test_wait_from_thread),
      cmocka_unit_test(test_kill_mid_segment),
      cmocka_unit_test(test_wrong_secret_process),
      cmocka_unit_test(test_sigterm_drains),
      cmocka_unit_test(test_several_orchestrators),
      cmocka_unit_test(test_supervised_workers),
      cmocka_unit_test(test_supervised_workers_own_tables),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
