/* Transcoding sessions (spec §5.3): created by the first segment that names an unknown auth
 * token session id, one worker thread each so a stream's segments run in order with warm codec
 * state, a queue of ORCH_SESSION_QUEUE behind the segment in progress, torn down when idle or
 * on EndTranscodingSession. The loop thread owns the table and the counters; a worker touches
 * only its queue (under the session's mutex), its jobs and its engine state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch_int.h"

struct orch_session {
  orch_sessions_t *owner;
  char id[sizeof(((orch_job_t *)0)->session_id)];
  bool in_table;
  int jobs; /* submitted and not yet handed back, loop side */
  uv_timer_t idle;
  /* the idle timer's handle and the worker thread; once a loop-side engine's session has
   * ended, also each of its jobs not yet handed back (jobs) */
  int refs;
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cv;
  orch_job_t *q_head, *q_tail; /* waiting, worker side */
  bool quit;
  orch_job_t *running[2]; /* loop-side engines: the jobs the engine has now */
  int nrunning;
  int first_device;          /* where its first segment was placed (orch_job_t.device) */
  uint64_t last_done_ns;     /* when the engine last finished one of its jobs (loop side) */
  orch_session_t *next;      /* in the table or the detached list */
  orch_session_t *exit_next; /* on the exited list */
};

struct orch_sessions {
  uv_loop_t *loop;
  orch_engine_t engine;
  orch_store_t *store;
  int max;
  uint64_t idle_ms;
  orch_session_t *table;
  int count;
  orch_session_t *detached; /* torn down, worker or timer not finished yet */
  int jobs;
  uv_async_t async;
  uv_mutex_t done_mu;
  orch_job_t *done_head, *done_tail;
  orch_session_t *exited;
  bool closing;
  void (*ended)(void *arg, const char *session_id);
  void *ended_arg;
  void (*closed)(void *);
  void *closed_arg;
};

static void post_done(orch_sessions_t *ss, orch_job_t *job) {
  uv_mutex_lock(&ss->done_mu);
  job->next = NULL;
  if (ss->done_tail)
    ss->done_tail->next = job;
  else
    ss->done_head = job;
  ss->done_tail = job;
  uv_mutex_unlock(&ss->done_mu);
  uv_async_send(&ss->async);
}

void orch_job_engine_done(orch_job_t *job) {
  job->engine_ns = lp_now_ns() - job->t_submit - job->queued_ns;
}

/* A job the engine completed after its submit call returned (on one of the engine's threads). */
static void worker_job_done(orch_job_t *job) {
  orch_job_engine_done(job);
  post_done(job->session->owner, job);
}

static void worker_main(void *arg) {
  orch_session_t *s = arg;
  orch_sessions_t *ss = s->owner;
  void *state = NULL;
  bool opened = false;
  /* nicer than the loop; nice means nothing to a real-time thread, and a real-time encoder
   * starves the loop */
  if (lp_thread_transcode_priority())
    LOGW("session worker started with a real-time policy; made it normal");
  for (;;) {
    uv_mutex_lock(&s->mu);
    while (!s->q_head && !s->quit) uv_cond_wait(&s->cv, &s->mu);
    orch_job_t *job = s->q_head;
    if (job) {
      s->q_head = job->next;
      if (!s->q_head) s->q_tail = NULL;
      job->started = true;
    }
    uv_mutex_unlock(&s->mu);
    if (!job) break;
    if (!opened) {
      if (ss->engine.open(ss->engine.ctx, s->id, &state) == 0)
        opened = true;
      else
        strcpy(job->error, "ErrTranscoderUnavailable");
    }
    uint64_t t0 = lp_now_ns();
    job->queued_ns = t0 - job->t_submit;
    if (opened && ss->engine.submit) {
      ss->engine.submit(ss->engine.ctx, state, job, worker_job_done);
      continue;
    }
    if (opened && ss->engine.transcode(ss->engine.ctx, state, job) != 0 && !job->error[0])
      strcpy(job->error, "ErrTranscoderUnavailable");
    job->engine_ns = lp_now_ns() - t0;
    post_done(ss, job);
  }
  if (opened) ss->engine.close(ss->engine.ctx, state);
  uv_mutex_lock(&ss->done_mu);
  s->exit_next = ss->exited;
  ss->exited = s;
  uv_mutex_unlock(&ss->done_mu);
  uv_async_send(&ss->async);
}

static void maybe_closed(orch_sessions_t *ss);
static void pump(orch_session_t *s);

static void session_unref(orch_session_t *s) {
  if (--s->refs > 0) return;
  orch_sessions_t *ss = s->owner;
  for (orch_session_t **pp = &ss->detached; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  uv_cond_destroy(&s->cv);
  uv_mutex_destroy(&s->mu);
  free(s);
  maybe_closed(ss);
}

static void idle_closed(uv_handle_t *h) { session_unref(h->data); }

static void idle_fired(uv_timer_t *t) {
  orch_session_t *s = t->data;
  LOGI("Transcoding session ended by idle timeout sessionID=%s", s->id);
  orch_sessions_end(s->owner, s->id);
}

/* ahead: the job came back before an older one of its session that the engine still has (a
 * loop-side engine running two); it neither counts from nor moves the session's last finish. */
static void handle_done(orch_sessions_t *ss, orch_job_t *job, bool ahead) {
  orch_session_t *s = job->session;
  s->jobs--;
  ss->jobs--;
  /* A job the engine took while the session's previous one was still in it shared the engine
   * with it until then: what it added is the time since that one finished. */
  job->service_ns = job->engine_ns;
  if (job->engine_ns && !ahead) {
    uint64_t handoff = job->t_submit + job->queued_ns, done = handoff + job->engine_ns;
    if (s->last_done_ns > handoff && done > s->last_done_ns)
      job->service_ns = done - s->last_done_ns;
    s->last_done_ns = LP_MAX(s->last_done_ns, done);
  }
  if (!s->in_table && !job->error[0]) {
    /* Its results have nowhere to live once the session is gone. */
    for (size_t i = 0; i < job->n_profiles && job->out; i++) {
      free(job->out[i].data);
      job->out[i].data = NULL;
    }
    strcpy(job->error, "session ended");
  }
  /* go-livepeer's idle timer restarts when a transcode finishes. */
  if (s->in_table && s->jobs == 0) uv_timer_start(&s->idle, idle_fired, ss->idle_ms, 0);
  job->session = NULL;
  job->done(job, job->done_arg);
  if (ss->engine.start && s->in_table) pump(s);
  /* a loop-side engine's session ended with this job not yet handed back held a reference */
  if (ss->engine.start && !s->in_table) session_unref(s);
}

static void async_cb(uv_async_t *a) {
  orch_sessions_t *ss = a->data;
  uv_mutex_lock(&ss->done_mu);
  orch_job_t *jobs = ss->done_head;
  ss->done_head = ss->done_tail = NULL;
  orch_session_t *exited = ss->exited;
  ss->exited = NULL;
  uv_mutex_unlock(&ss->done_mu);
  while (jobs) {
    orch_job_t *next = jobs->next;
    handle_done(ss, jobs, false);
    jobs = next;
  }
  while (exited) {
    orch_session_t *next = exited->exit_next;
    uv_thread_join(&exited->thread);
    session_unref(exited);
    exited = next;
  }
}

orch_sessions_t *orch_sessions_new(uv_loop_t *loop, const orch_engine_t *engine,
                                   orch_store_t *store, int max_sessions, uint64_t idle_ms) {
  orch_sessions_t *ss = calloc(1, sizeof *ss);
  if (!ss) return NULL;
  ss->loop = loop;
  ss->engine = *engine;
  ss->store = store;
  ss->max = max_sessions;
  ss->idle_ms = idle_ms ? idle_ms : ORCH_SESSION_IDLE_MS_DEFAULT;
  if (uv_mutex_init(&ss->done_mu)) {
    free(ss);
    return NULL;
  }
  if (uv_async_init(loop, &ss->async, async_cb)) {
    uv_mutex_destroy(&ss->done_mu);
    free(ss);
    return NULL;
  }
  ss->async.data = ss;
  return ss;
}

static void async_closed(uv_handle_t *h) {
  orch_sessions_t *ss = h->data;
  if (ss->closed) ss->closed(ss->closed_arg);
}

static void maybe_closed(orch_sessions_t *ss) {
  if (!ss->closing || ss->table || ss->detached || uv_is_closing((uv_handle_t *)&ss->async)) return;
  uv_close((uv_handle_t *)&ss->async, async_closed);
}

void orch_sessions_close(orch_sessions_t *ss, void (*closed)(void *), void *arg) {
  ss->closing = true;
  ss->closed = closed;
  ss->closed_arg = arg;
  while (ss->table) orch_sessions_end(ss, ss->table->id);
  maybe_closed(ss);
}

void orch_sessions_free(orch_sessions_t *ss) {
  if (!ss) return;
  uv_mutex_destroy(&ss->done_mu);
  free(ss);
}

void orch_sessions_on_end(orch_sessions_t *ss, void (*ended)(void *arg, const char *session_id),
                          void *arg) {
  ss->ended = ended;
  ss->ended_arg = arg;
}

int orch_sessions_count(const orch_sessions_t *ss) { return ss->count; }
int orch_sessions_jobs(const orch_sessions_t *ss) { return ss->jobs; }
void orch_sessions_set_max(orch_sessions_t *ss, int max_sessions) { ss->max = max_sessions; }
int orch_sessions_max(const orch_sessions_t *ss) { return ss->max; }

static orch_session_t *find(const orch_sessions_t *ss, const char *id) {
  for (orch_session_t *s = ss->table; s; s = s->next)
    if (strcmp(s->id, id) == 0) return s;
  return NULL;
}

bool orch_sessions_exists(const orch_sessions_t *ss, const char *id) { return find(ss, id); }

int orch_sessions_first_device(const orch_sessions_t *ss, const char *id) {
  const orch_session_t *s = find(ss, id);
  return s ? s->first_device : 0;
}

int orch_sessions_check_capacity(const orch_sessions_t *ss, const char *id) {
  if (find(ss, id)) return 0;
  return ss->count >= ss->max ? LP_ECAPACITY : 0;
}

static orch_session_t *session_new(orch_sessions_t *ss, const char *id) {
  orch_session_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->owner = ss;
  snprintf(s->id, sizeof s->id, "%s", id);
  if (uv_mutex_init(&s->mu)) goto fail_mu;
  if (uv_cond_init(&s->cv)) goto fail_cv;
  bool threaded = !ss->engine.start;
  if (threaded && uv_thread_create(&s->thread, worker_main, s)) goto fail_thread;
  uv_timer_init(ss->loop, &s->idle);
  s->idle.data = s;
  /* the idle timer's handle, and the worker thread when there is one */
  s->refs = threaded ? 2 : 1;
  s->in_table = true;
  s->next = ss->table;
  ss->table = s;
  ss->count++;
  LOGI("Created transcoding session sessionID=%s sessions=%d", id, ss->count);
  return s;
fail_thread:
  uv_cond_destroy(&s->cv);
fail_cv:
  uv_mutex_destroy(&s->mu);
fail_mu:
  free(s);
  return NULL;
}

/* Loop-side engines: starts the session's next job when the engine has none of it, or when the
 * engine takes it beside the one it has (start_beside): then it runs while the last one
 * finishes. */
static void pump(orch_session_t *s) {
  orch_sessions_t *ss = s->owner;
  while (s->q_head) {
    orch_job_t *job = s->q_head;
    if (s->nrunning >= 2 ||
        (s->nrunning == 1 &&
         !(ss->engine.start_beside && ss->engine.start_beside(ss->engine.ctx, s->running[0], job))))
      return;
    s->q_head = job->next;
    if (!s->q_head) s->q_tail = NULL;
    job->started = true;
    s->running[s->nrunning++] = job;
    uint64_t t0 = lp_now_ns();
    job->queued_ns = t0 - job->t_submit;
    if (ss->engine.start(ss->engine.ctx, job) != 0) {
      /* answered through the loop, never from inside submit */
      s->running[--s->nrunning] = NULL;
      if (!job->error[0]) strcpy(job->error, "ErrTranscoderUnavailable");
      post_done(ss, job);
      return;
    }
  }
}

int orch_sessions_submit(orch_sessions_t *ss, orch_job_t *job) {
  if (ss->closing) return LP_ECAPACITY;
  orch_session_t *s = find(ss, job->session_id);
  if (!s) {
    if (ss->count >= ss->max) return LP_ECAPACITY;
    if (!(s = session_new(ss, job->session_id))) return LP_ENOMEM;
    s->first_device = job->device;
  }
  if (s->jobs >= 1 + ORCH_SESSION_QUEUE) return LP_EAGAIN;
  uv_timer_stop(&s->idle);
  s->jobs++;
  ss->jobs++;
  job->session = s;
  job->started = false;
  job->t_submit = lp_now_ns();
  job->next = NULL;
  uv_mutex_lock(&s->mu);
  if (s->q_tail)
    s->q_tail->next = job;
  else
    s->q_head = job;
  s->q_tail = job;
  uv_cond_signal(&s->cv);
  uv_mutex_unlock(&s->mu);
  if (ss->engine.start) pump(s);
  return 0;
}

void orch_sessions_job_done(orch_job_t *job) {
  orch_session_t *s = job->session;
  orch_sessions_t *ss = s->owner;
  bool ahead = s->nrunning == 2 && s->running[1] == job;
  if (s->nrunning > 0 && s->running[0] == job) s->running[0] = s->running[1];
  if (s->nrunning > 0) s->running[--s->nrunning] = NULL;
  handle_done(ss, job, ahead);
}

int orch_sessions_end(orch_sessions_t *ss, const char *id) {
  orch_session_t *s = NULL;
  for (orch_session_t **pp = &ss->table; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->id, id) == 0) {
      s = *pp;
      *pp = s->next;
      break;
    }
  if (!s) return LP_ENOENT;
  ss->count--;
  s->in_table = false;
  s->next = ss->detached;
  ss->detached = s;
  orch_store_drop_session(ss->store, s->id);
  uv_mutex_lock(&s->mu);
  orch_job_t *waiting = s->q_head;
  s->q_head = s->q_tail = NULL;
  s->quit = true;
  uv_cond_signal(&s->cv);
  uv_mutex_unlock(&s->mu);
  /* Waiting segments are answered through the loop like finished ones, never from here. */
  while (waiting) {
    orch_job_t *next = waiting->next;
    strcpy(waiting->error, "session ended");
    post_done(ss, waiting);
    waiting = next;
  }
  /* A loop-side engine's session is held by every job not handed back yet (running, waiting,
   * answered and not yet through the loop), each releasing it in handle_done. */
  if (ss->engine.start) s->refs += s->jobs;
  if (ss->engine.session_ended) ss->engine.session_ended(ss->engine.ctx, s->id);
  if (ss->ended) ss->ended(ss->ended_arg, s->id);
  uv_timer_stop(&s->idle);
  uv_close((uv_handle_t *)&s->idle, idle_closed);
  LOGI("Ended transcoding session sessionID=%s sessions=%d", id, ss->count);
  return 0;
}
