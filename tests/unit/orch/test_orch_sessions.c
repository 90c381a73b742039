/* Sessions (spec §5.3): order, the queue of 4 behind the running segment, capacity, the idle
 * timeout and teardown; plus TranscodeResult bodies built from finished jobs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"
#include "lpod/pm.h"

typedef struct fake {
  uv_mutex_t mu;
  uv_cond_t cv;
  bool gate_open;
  int opened, closed;
  int running; /* jobs inside transcode now */
} fake_t;

static int fake_open(void *ctx, const char *sid, void **state) {
  fake_t *f = ctx;
  uv_mutex_lock(&f->mu);
  f->opened++;
  uv_mutex_unlock(&f->mu);
  *state = f;
  return 0;
}

static void fake_fill(orch_job_t *job) {
  if (job->input_len && job->input[0] == 'x') {
    strcpy(job->error, "No keyframes in input");
    return;
  }
  job->out = calloc(job->n_profiles, sizeof *job->out);
  for (size_t i = 0; i < job->n_profiles; i++) {
    job->out[i].len = 100 + i;
    job->out[i].data = malloc(job->out[i].len);
    memset(job->out[i].data, (int)(job->seq + i), job->out[i].len);
    job->out[i].pixels = 1000 * (int64_t)(i + 1);
  }
}

static int fake_transcode(void *ctx, void *state, orch_job_t *job) {
  fake_t *f = ctx;
  uv_mutex_lock(&f->mu);
  f->running++;
  while (!f->gate_open) uv_cond_wait(&f->cv, &f->mu);
  f->running--;
  uv_mutex_unlock(&f->mu);
  fake_fill(job);
  return 0;
}

static void fake_close(void *ctx, void *state) {
  fake_t *f = ctx;
  uv_mutex_lock(&f->mu);
  f->closed++;
  uv_mutex_unlock(&f->mu);
}

static void gate(fake_t *f, bool open) {
  uv_mutex_lock(&f->mu);
  f->gate_open = open;
  uv_cond_broadcast(&f->cv);
  uv_mutex_unlock(&f->mu);
}

typedef struct fixture {
  uv_loop_t loop;
  fake_t fake;
  orch_engine_t engine;
  orch_core_t core;
  orch_profile_t profiles[2];
  orch_job_t jobs[8];
  int done_order[8];
  int ndone;
} fixture_t;

static void job_done(orch_job_t *job, void *arg) {
  fixture_t *f = arg;
  f->done_order[f->ndone++] = (int)(job - f->jobs);
}

static int setup(void **st) {
  fixture_t *f = calloc(1, sizeof *f);
  uv_loop_init(&f->loop);
  uv_mutex_init(&f->fake.mu);
  uv_cond_init(&f->fake.cv);
  f->fake.gate_open = true;
  f->engine = (orch_engine_t){
      .ctx = &f->fake, .open = fake_open, .transcode = fake_transcode, .close = fake_close};
  th_core_init(&f->core, &f->loop, &f->engine, 1, 50);
  f->profiles[0].name = "P240p30fps16x9";
  f->profiles[1].name = "hi";
  f->profiles[1].format = ORCH_FMT_MP4;
  for (int i = 0; i < 8; i++) {
    orch_job_t *j = &f->jobs[i];
    strcpy(j->session_id, "sess1");
    j->seq = i;
    j->profiles = f->profiles;
    j->n_profiles = 2;
    j->input = (const uint8_t *)"ts";
    j->input_len = 2;
    j->done = job_done;
    j->done_arg = f;
  }
  *st = f;
  return 0;
}

static void free_job_out(orch_job_t *j) {
  for (size_t i = 0; j->out && i < j->n_profiles; i++) free(j->out[i].data);
  free(j->out);
  j->out = NULL;
}

static int teardown(void **st) {
  fixture_t *f = *st;
  gate(&f->fake, true);
  th_core_deinit(&f->core);
  for (int i = 0; i < 8; i++) free_job_out(&f->jobs[i]);
  assert_int_equal(f->fake.opened, f->fake.closed);
  uv_loop_close(&f->loop);
  uv_cond_destroy(&f->fake.cv);
  uv_mutex_destroy(&f->fake.mu);
  free(f);
  return 0;
}

static void run_until_done(fixture_t *f, int n) {
  while (f->ndone < n) uv_run(&f->loop, UV_RUN_ONCE);
}

static void wait_running(fixture_t *f) {
  for (;;) {
    uv_mutex_lock(&f->fake.mu);
    int r = f->fake.running;
    uv_mutex_unlock(&f->fake.mu);
    if (r) return;
    uv_sleep(1);
  }
}

static void test_order_and_busy(void **st) {
  fixture_t *f = *st;
  orch_sessions_t *ss = f->core.sessions;
  gate(&f->fake, false);
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[0]), 0);
  wait_running(f);
  for (int i = 1; i <= 4; i++) assert_int_equal(orch_sessions_submit(ss, &f->jobs[i]), 0);
  /* one running and four waiting: the sixth is refused */
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[5]), LP_EAGAIN);
  assert_int_equal(orch_sessions_jobs(ss), 5);
  assert_int_equal(orch_sessions_count(ss), 1);
  /* max 1: another session is capped, this one is not */
  assert_int_equal(orch_sessions_check_capacity(ss, "other"), LP_ECAPACITY);
  assert_int_equal(orch_sessions_check_capacity(ss, "sess1"), 0);
  strcpy(f->jobs[6].session_id, "other");
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[6]), LP_ECAPACITY);
  gate(&f->fake, true);
  run_until_done(f, 5);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(f->done_order[i], i);
    assert_string_equal(f->jobs[i].error, "");
  }
  assert_int_equal(orch_sessions_jobs(ss), 0);
  /* the queue has room again */
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[5]), 0);
  run_until_done(f, 6);
  assert_int_equal(f->fake.opened, 1);
}

static void test_idle_timeout(void **st) {
  fixture_t *f = *st;
  orch_sessions_t *ss = f->core.sessions;
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[0]), 0);
  run_until_done(f, 1);
  uint8_t *body;
  size_t len;
  int64_t pixels;
  assert_int_equal(orch_result_encode(&f->core, &f->jobs[0], NULL, 0, &body, &len, &pixels), 0);
  free(body);
  size_t n;
  assert_non_null(orch_store_get(f->core.store, "sess1", "P240p30fps16x9/0.ts", &n));
  assert_true(orch_sessions_exists(ss, "sess1"));
  /* 50 ms idle: the loop ends the session by itself and its results go */
  while (orch_sessions_exists(ss, "sess1")) uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(orch_sessions_count(ss), 0);
  assert_null(orch_store_get(f->core.store, "sess1", "P240p30fps16x9/0.ts", &n));
  /* a later segment with the same id makes a fresh session */
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[1]), 0);
  run_until_done(f, 2);
  assert_string_equal(f->jobs[1].error, "");
  assert_int_equal(f->fake.opened, 2);
}

static void test_end_with_queue(void **st) {
  fixture_t *f = *st;
  orch_sessions_t *ss = f->core.sessions;
  gate(&f->fake, false);
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[0]), 0);
  wait_running(f);
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[1]), 0);
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[2]), 0);
  assert_int_equal(orch_sessions_end(ss, "sess1"), 0);
  assert_int_equal(orch_sessions_end(ss, "sess1"), LP_ENOENT);
  assert_int_equal(orch_sessions_count(ss), 0);
  /* the waiting ones are answered without a transcode */
  run_until_done(f, 2);
  assert_string_equal(f->jobs[1].error, "session ended");
  assert_string_equal(f->jobs[2].error, "session ended");
  /* a new session may start while the old worker still finishes */
  strcpy(f->jobs[3].session_id, "sess2");
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[3]), 0);
  gate(&f->fake, true);
  run_until_done(f, 4);
  assert_string_equal(f->jobs[0].error, "session ended");
  assert_null(f->jobs[0].out[0].data);
  assert_string_equal(f->jobs[3].error, "");
}

static void test_result_body(void **st) {
  fixture_t *f = *st;
  orch_sessions_t *ss = f->core.sessions;
  f->jobs[0].seq = 17;
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[0]), 0);
  f->jobs[1].input = (const uint8_t *)"x";
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[1]), 0);
  run_until_done(f, 2);

  const uint8_t info[] = {0x0a, 0x01, 't'}; /* OrchestratorInfo{transcoder:"t"} */
  uint8_t *body;
  size_t len;
  int64_t pixels;
  assert_int_equal(
      orch_result_encode(&f->core, &f->jobs[0], info, sizeof info, &body, &len, &pixels), 0);
  assert_int_equal(pixels, 3000);
  Net__TranscodeResult *r = net__transcode_result__unpack(NULL, len, body);
  free(body);
  assert_non_null(r);
  assert_int_equal(r->seq, 17);
  assert_int_equal(r->result_case, NET__TRANSCODE_RESULT__RESULT_DATA);
  assert_int_equal(r->data->n_segments, 2);
  assert_string_equal(r->data->segments[0]->url,
                      "https://127.0.0.1:8935/stream/sess1/P240p30fps16x9/17.ts");
  assert_string_equal(r->data->segments[1]->url, "https://127.0.0.1:8935/stream/sess1/hi/17.mp4");
  assert_int_equal(r->data->segments[0]->pixels, 1000);
  assert_int_equal(r->data->segments[1]->pixels, 2000);
  assert_int_equal(r->data->sig.len, 0);
  assert_non_null(r->info);
  assert_string_equal(r->info->transcoder, "t");
  net__transcode_result__free_unpacked(r, NULL);

  size_t n;
  const uint8_t *obj = orch_store_lookup(f->core.store, "sess1/hi/17.mp4", &n);
  assert_non_null(obj);
  assert_int_equal(n, 101);
  assert_int_equal(obj[0], 18);

  assert_int_equal(orch_result_encode(&f->core, &f->jobs[1], NULL, 0, &body, &len, &pixels), 0);
  r = net__transcode_result__unpack(NULL, len, body);
  free(body);
  assert_int_equal(r->seq, 1);
  assert_int_equal(r->result_case, NET__TRANSCODE_RESULT__RESULT_ERROR);
  assert_string_equal(r->error, "No keyframes in input");
  assert_null(r->info);
  net__transcode_result__free_unpacked(r, NULL);

  /* a rendition under 25 bytes is go's ZeroSegments */
  orch_job_t j = f->jobs[2];
  orch_rendition_t outs[2] = {{malloc(10), 10, 1}, {malloc(30), 30, 1}};
  j.out = outs;
  assert_int_equal(orch_result_encode(&f->core, &j, NULL, 0, &body, &len, &pixels), 0);
  r = net__transcode_result__unpack(NULL, len, body);
  free(body);
  assert_string_equal(r->error, "ZeroSegments");
  net__transcode_result__free_unpacked(r, NULL);
  free(outs[0].data);
  free(outs[1].data);
}

/* The seam's signer gets keccak256(keccak256(r0) || keccak256(r1) ...), as go's Eth.Sign does. */
static int echo_sign_hash(void *ctx, const uint8_t hash[32], uint8_t **sig, size_t *sig_len) {
  *sig = malloc(32);
  memcpy(*sig, hash, 32);
  *sig_len = 32;
  return 0;
}

static void test_result_signature(void **st) {
  fixture_t *f = *st;
  f->core.pay.sign_hash = echo_sign_hash;
  assert_int_equal(orch_sessions_submit(f->core.sessions, &f->jobs[0]), 0);
  run_until_done(f, 1);
  uint8_t want[64], all[32];
  for (size_t i = 0; i < 2; i++)
    pm_keccak256(f->jobs[0].out[i].data, f->jobs[0].out[i].len, want + 32 * i);
  pm_keccak256(want, sizeof want, all);
  uint8_t *body;
  size_t len;
  int64_t pixels;
  assert_int_equal(orch_result_encode(&f->core, &f->jobs[0], NULL, 0, &body, &len, &pixels), 0);
  Net__TranscodeResult *r = net__transcode_result__unpack(NULL, len, body);
  free(body);
  assert_non_null(r);
  assert_int_equal(r->data->sig.len, 32);
  assert_memory_equal(r->data->sig.data, all, 32);
  net__transcode_result__free_unpacked(r, NULL);
}

/* ---- loop-side engines (remote transcoders) ---- */
typedef struct async_fake {
  orch_job_t *started[16];
  int nstarted;
  int ended;
  bool refuse; /* start fails */
  int beside;  /* start_beside asked */
  bool allow;  /* start_beside's answer (never for seq 9) */
  const orch_job_t *beside_running;
} async_fake_t;

static bool async_beside(void *ctx, const orch_job_t *running, const orch_job_t *next) {
  async_fake_t *a = ctx;
  a->beside++;
  assert_ptr_equal(running->session, next->session);
  a->beside_running = running;
  return a->allow && next->seq != 9;
}

static int async_start(void *ctx, orch_job_t *job) {
  async_fake_t *a = ctx;
  if (a->refuse) return LP_EIO;
  a->started[a->nstarted++] = job;
  return 0;
}

static void set_flag(void *arg) { *(int *)arg = 1; }

static void async_ended(void *ctx, const char *sid) { ((async_fake_t *)ctx)->ended++; }

static void async_finish(orch_job_t *job) {
  uv_sleep(1);
  job->engine_ns = lp_now_ns() - job->t_submit - job->queued_ns; /* as the pool engine does */
  job->out = calloc(job->n_profiles, sizeof *job->out);
  for (size_t i = 0; i < job->n_profiles; i++) {
    job->out[i].len = 40;
    job->out[i].data = calloc(1, 40);
    job->out[i].pixels = 5;
  }
  orch_sessions_job_done(job);
}

static void test_loop_engine(void **st) {
  fixture_t *f = *st;
  async_fake_t a;
  memset(&a, 0, sizeof a);
  orch_engine_t eng = {.ctx = &a, .start = async_start, .session_ended = async_ended};
  orch_sessions_t *ss = orch_sessions_new(&f->loop, &eng, f->core.store, 1, 50);
  for (int i = 0; i < 5; i++) assert_int_equal(orch_sessions_submit(ss, &f->jobs[i]), 0);
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[5]), LP_EAGAIN);
  /* one at a time, in order */
  assert_int_equal(a.nstarted, 1);
  assert_ptr_equal(a.started[0], &f->jobs[0]);
  async_finish(&f->jobs[0]);
  assert_int_equal(f->ndone, 1);
  assert_int_equal(a.nstarted, 2);
  assert_ptr_equal(a.started[1], &f->jobs[1]);
  /* a start that fails answers through the loop and the queue moves on */
  a.refuse = true;
  async_finish(&f->jobs[1]);
  run_until_done(f, 3);
  assert_string_equal(f->jobs[2].error, "ErrTranscoderUnavailable");
  a.refuse = false;
  run_until_done(f, 4);
  assert_string_equal(f->jobs[3].error, "ErrTranscoderUnavailable");
  while (a.nstarted < 3) uv_run(&f->loop, UV_RUN_ONCE);
  assert_ptr_equal(a.started[2], &f->jobs[4]);
  /* teardown while the engine holds a job: the engine hears of it, the job ends as such */
  assert_int_equal(orch_sessions_end(ss, "sess1"), 0);
  assert_int_equal(a.ended, 1);
  async_finish(&f->jobs[4]);
  assert_int_equal(f->ndone, 5);
  assert_string_equal(f->jobs[4].error, "session ended");
  int closed = 0;
  orch_sessions_close(ss, set_flag, &closed);
  while (!closed) uv_run(&f->loop, UV_RUN_ONCE);
  orch_sessions_free(ss);
}

/* An engine with submit: the worker hands it the session's next job without waiting for the
 * last one; the engine's own thread completes them (in order, once the gate opens), and the
 * jobs come back through the loop with their engine time. */
typedef struct submit_fake {
  fake_t *f;
  orch_job_t *pending[8];
  void (*done[8])(orch_job_t *);
  int npending, completing, nsubmitted, ncompleted;
  bool quit;
  uv_thread_t th;
} submit_fake_t;

static submit_fake_t *g_sub; /* the engine's ctx is the fixture's fake_t */

static void sub_submit(void *ctx, void *state, orch_job_t *job, void (*done)(orch_job_t *)) {
  fake_t *f = ctx;
  uv_mutex_lock(&f->mu);
  g_sub->pending[g_sub->npending] = job;
  g_sub->done[g_sub->npending++] = done;
  g_sub->nsubmitted++;
  uv_cond_broadcast(&f->cv);
  uv_mutex_unlock(&f->mu);
}

static void sub_close(void *ctx, void *state) {
  fake_t *f = ctx;
  uv_mutex_lock(&f->mu);
  while (g_sub->npending || g_sub->completing) uv_cond_wait(&f->cv, &f->mu); /* the contract */
  f->closed++;
  uv_mutex_unlock(&f->mu);
}

static void sub_thread(void *arg) {
  submit_fake_t *sf = arg;
  fake_t *f = sf->f;
  uv_mutex_lock(&f->mu);
  for (;;) {
    while (!sf->quit && !(f->gate_open && sf->npending)) uv_cond_wait(&f->cv, &f->mu);
    if (!sf->npending) break;
    orch_job_t *job = sf->pending[0];
    void (*done)(orch_job_t *) = sf->done[0];
    memmove(sf->pending, sf->pending + 1, (size_t)(sf->npending - 1) * sizeof sf->pending[0]);
    memmove(sf->done, sf->done + 1, (size_t)(sf->npending - 1) * sizeof sf->done[0]);
    sf->npending--;
    sf->completing++;
    uv_mutex_unlock(&f->mu);
    fake_fill(job);
    uv_sleep(2);
    done(job);
    uv_mutex_lock(&f->mu);
    sf->completing--;
    sf->ncompleted++;
    uv_cond_broadcast(&f->cv);
  }
  uv_mutex_unlock(&f->mu);
}

static void test_submit_engine(void **st) {
  fixture_t *f = *st;
  submit_fake_t sf = {.f = &f->fake};
  g_sub = &sf;
  orch_engine_t eng = {
      .ctx = &f->fake, .open = fake_open, .submit = sub_submit, .close = sub_close};
  orch_sessions_t *ss = orch_sessions_new(&f->loop, &eng, f->core.store, 1, 5000);
  assert_int_equal(uv_thread_create(&sf.th, sub_thread, &sf), 0);
  gate(&f->fake, false);
  f->jobs[1].input = (const uint8_t *)"x";
  f->jobs[1].input_len = 1;
  for (int i = 0; i < 3; i++) assert_int_equal(orch_sessions_submit(ss, &f->jobs[i]), 0);
  /* none completed, yet the engine has all three: the worker did not wait for a result */
  for (;;) {
    uv_mutex_lock(&f->fake.mu);
    int n = sf.nsubmitted, c = sf.ncompleted;
    uv_mutex_unlock(&f->fake.mu);
    assert_int_equal(c, 0);
    if (n == 3) break;
    uv_sleep(1);
  }
  /* the queue bound still counts jobs the engine holds */
  for (int i = 3; i < 5; i++) assert_int_equal(orch_sessions_submit(ss, &f->jobs[i]), 0);
  assert_int_equal(orch_sessions_submit(ss, &f->jobs[5]), LP_EAGAIN);
  /* the engine has all five before any finishes (the service times below depend on it: on a
   * busy machine the worker can hand the last two over only after the first ones are done) */
  for (;;) {
    uv_mutex_lock(&f->fake.mu);
    int n = sf.nsubmitted;
    uv_mutex_unlock(&f->fake.mu);
    if (n == 5) break;
    uv_sleep(1);
  }
  gate(&f->fake, true);
  run_until_done(f, 5);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(f->done_order[i], i);
    assert_true(f->jobs[i].engine_ns >= 2000000); /* submit to done, the engine's 2 ms in it */
  }
  /* The capacity model reads what each added: the first its whole time (the gate's wait with
   * it), each later one only the time since the one before it finished. */
  assert_int_equal(f->jobs[0].service_ns, f->jobs[0].engine_ns);
  for (int i = 1; i < 5; i++) {
    assert_true(f->jobs[i].service_ns >= 2000000);
    assert_true(f->jobs[i].service_ns < f->jobs[i].engine_ns);
  }
  assert_string_equal(f->jobs[1].error, "No keyframes in input");
  assert_string_equal(f->jobs[2].error, "");
  assert_int_equal(f->jobs[2].out[1].len, 101);
  int closed = 0;
  orch_sessions_close(ss, set_flag, &closed);
  while (!closed) uv_run(&f->loop, UV_RUN_ONCE);
  orch_sessions_free(ss);
  uv_mutex_lock(&f->fake.mu);
  sf.quit = true;
  uv_cond_broadcast(&f->fake.cv);
  uv_mutex_unlock(&f->fake.mu);
  uv_thread_join(&sf.th);
  assert_int_equal(f->fake.closed, 1);
  f->jobs[1].input = (const uint8_t *)"ts";
  f->jobs[1].input_len = 2;
}

/* A loop-side engine that takes a session's next job beside the one it has: two at a time, the
 * third when one of them is done, in order whichever finishes first; teardown with two out
 * holds the session until both come back. Where start_beside says no, one at a time. */
static void test_loop_engine_beside(void **st) {
  fixture_t *f = *st;
  async_fake_t a;
  memset(&a, 0, sizeof a);
  a.allow = true;
  orch_engine_t eng = {
      .ctx = &a, .start = async_start, .session_ended = async_ended, .start_beside = async_beside};
  orch_sessions_t *ss = orch_sessions_new(&f->loop, &eng, f->core.store, 1, 5000);
  for (int i = 0; i < 5; i++) assert_int_equal(orch_sessions_submit(ss, &f->jobs[i]), 0);
  assert_int_equal(a.nstarted, 2);
  assert_ptr_equal(a.started[0], &f->jobs[0]);
  assert_ptr_equal(a.started[1], &f->jobs[1]);
  /* the younger finishes first: the third starts beside the older */
  async_finish(&f->jobs[1]);
  assert_int_equal(a.nstarted, 3);
  assert_ptr_equal(a.started[2], &f->jobs[2]);
  assert_ptr_equal(a.beside_running, &f->jobs[0]);
  async_finish(&f->jobs[0]);
  assert_int_equal(a.nstarted, 4);
  assert_ptr_equal(a.started[3], &f->jobs[3]);
  /* each reports its whole time: the older one was not beside anything that finished before
   * it, and the younger's early finish is not a start for it */
  assert_true(f->jobs[1].engine_ns > 0 && f->jobs[1].service_ns == f->jobs[1].engine_ns);
  assert_true(f->jobs[0].service_ns == f->jobs[0].engine_ns);
  /* the third, taken beside the older, adds only the time since the older's end; the engine
   * says no for the fifth: it waits for both the third and the fourth to finish */
  f->jobs[4].seq = 9;
  async_finish(&f->jobs[2]);
  assert_true(f->jobs[2].service_ns < f->jobs[2].engine_ns);
  assert_int_equal(a.nstarted, 4);
  async_finish(&f->jobs[3]);
  assert_int_equal(a.nstarted, 5);
  assert_ptr_equal(a.started[4], &f->jobs[4]);
  async_finish(&f->jobs[4]);
  assert_int_equal(f->ndone, 5);
  /* teardown with two out and one waiting: all come back as ended, then the session goes */
  for (int i = 5; i < 8; i++) {
    f->jobs[i].seq = i;
    assert_int_equal(orch_sessions_submit(ss, &f->jobs[i]), 0);
  }
  assert_int_equal(a.nstarted, 7);
  assert_int_equal(orch_sessions_end(ss, "sess1"), 0);
  async_finish(&f->jobs[6]);
  async_finish(&f->jobs[5]);
  run_until_done(f, 8);
  for (int i = 5; i < 8; i++) assert_string_equal(f->jobs[i].error, "session ended");
  assert_true(a.beside >= 4);
  int closed = 0;
  orch_sessions_close(ss, set_flag, &closed);
  while (!closed) uv_run(&f->loop, UV_RUN_ONCE);
  orch_sessions_free(ss);
  f->jobs[4].seq = 4;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_order_and_busy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_end_with_queue, setup, teardown),
      cmocka_unit_test_setup_teardown(test_result_body, setup, teardown),
      cmocka_unit_test_setup_teardown(test_loop_engine, setup, teardown),
      cmocka_unit_test_setup_teardown(test_loop_engine_beside, setup, teardown),
      cmocka_unit_test_setup_teardown(test_submit_engine, setup, teardown),
      cmocka_unit_test_setup_teardown(test_result_signature, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
