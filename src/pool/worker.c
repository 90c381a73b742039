/* Transcoder side of the remote transcoder protocol (spec/protocol.md §6.1-6.5): registration
 * with one or more orchestrators, warm per-stream engines on their own threads, input fetch and
 * result upload. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/pool.h"
#include "lpod/sched.h"
#include "pool_int.h"

#define WORKER_VERSION "0.9.1" /* the go-livepeer release whose protocol we speak */
#define WORKER_BACKOFF_MIN_MS 1000
#define WORKER_BACKOFF_MAX_MS 60000
#define WORKER_FETCH_TIMEOUT_MS 4000 /* go's DownloadData */
#define WORKER_UPLOAD_TIMEOUT_MS 60000
#define WORKER_SESSION_IDLE_MS 70000 /* as the orchestrator's own session timeout */
#define WORKER_SWEEP_MS 10000
#define WORKER_INPUT_MAX ((size_t)48 << 20) /* the largest segment fetched */
/* Input buffers kept for the next segments, and the largest kept: a fresh 2 MB buffer costs a
 * page fault per 4 KiB as the body is written into it, which on a virtual machine took longer
 * than the transfer itself (16 ms against 4 ms for 2 MB on loopback). */
#define WORKER_SPARE_INPUTS 2
#define WORKER_SPARE_INPUT_MAX ((size_t)16 << 20)
#define WORKER_CAP_WORDS 16 /* lpod's extensions (AV1: 960, 961) sit in word 15 */

typedef struct worker_orch worker_orch_t;
typedef struct worker_sess worker_sess_t;
typedef struct worker_task worker_task_t;

struct worker_orch {
  pool_worker_t *w;
  int index;
  char addr[256]; /* host:port */
  char base[300]; /* https://host:port */
  net_fetch_t *call;
  uv_timer_t retry;
  uint64_t backoff_ms;
  uint64_t started_ms;
  bool got_msg;
  bool refused; /* invalid secret or zero capacity: never again */
};

/* A NotifySegment waiting to be handled outside the HTTP client's callback (the client can't
 * start transfers from inside its own callbacks). */
typedef struct worker_msg {
  worker_orch_t *orch;
  Net__NotifySegment *ns;
  struct worker_msg *next;
} worker_msg_t;

struct worker_task {
  pool_worker_t *w;
  worker_orch_t *orch;
  int64_t id;
  char *session_key;
  media_profile_t *profiles;
  size_t n;
  lp_buf_t input; /* the segment fetched; from and back to the worker's spares */
  bool input_over, input_nomem;
  net_fetch_t *fetch;
  uint64_t got_ns; /* the push arrived; the input fetch starts */
  media_result_t res;
  int rc;
  int dev;                     /* the device table entry it was given */
  media_err_class_t dev_class; /* how it failed there (MEDIA_ERR_NONE: it did not) */
  lp_logctx_t log;
  char manifest[128];
  char session_id[64];
  worker_task_t *next;
};

struct worker_sess {
  pool_worker_t *w;
  char *key; /* "<orch index>/<session id>" */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  worker_task_t *queue, *queue_tail;
  bool closing;
  bool exited; /* set by the thread under the worker's done lock */
  int busy;    /* tasks queued or running (loop thread view) */
  int dev;     /* the device table entry its media session runs on: written by the loop under mu */
  uint64_t last_used_ms;
  worker_sess_t *next;
};

struct pool_worker {
  uv_loop_t *loop;
  const lp_config_t *cfg;
  net_client_t *client;
  worker_orch_t *orchs;
  size_t norchs;
  int64_t capacity;
  worker_sess_t *sessions;
  worker_sess_t *zombies;              /* closing sessions whose threads have not been joined */
  worker_task_t *tasks;                /* fetching or uploading: owned by the loop */
  lp_buf_t spare[WORKER_SPARE_INPUTS]; /* input buffers for reuse: loop only */
  int nspare;
  int running; /* tasks anywhere in the pipeline */
  pthread_mutex_t done_mu;
  worker_task_t *done; /* transcoded, waiting for the loop */
  uv_async_t async;
  uv_timer_t sweep;
  uv_timer_t drain;
  uv_timer_t kick; /* handles msgs */
  worker_msg_t *msgs, *msgs_tail;
  /* The devices (NULL: the CPU with the fixed software set). The loop writes their health under
   * table_mu; session threads copy the table under it when they open a media session. */
  hw_table_t *table;
  pthread_mutex_t table_mu;
  bool rechecking; /* a quarantined device's self-test runs on the thread pool */
  uv_work_t recheck;
  hw_table_t *recheck_copy;
  uint64_t caps[WORKER_CAP_WORDS];
  size_t ncaps;
  int open_handles;
  bool stopping, freeing, fatal_called;
  void (*on_fatal)(void *);
  void *fatal_arg;
  void (*drained)(void *);
  void *drained_arg;
};

static void orch_connect(worker_orch_t *o);

int pool_worker_activity(const pool_worker_t *w) {
  int n = w->running;
  for (const worker_sess_t *s = w->sessions; s; s = s->next) n++;
  for (const worker_sess_t *s = w->zombies; s; s = s->next) n++;
  return n;
}

uint64_t pool_worker_caps_word0(void) {
  static const int caps[] = {0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 15, 16, 17, 18, 19, 20};
  uint64_t v = 0;
  for (size_t i = 0; i < LP_ARRAY_LEN(caps); i++) v |= (uint64_t)1 << caps[i];
  return v;
}

size_t pool_worker_caps(const pool_worker_t *w, uint64_t *bits, size_t words) {
  for (size_t i = 0; i < words; i++) bits[i] = i < w->ncaps ? w->caps[i] : 0;
  return w->ncaps;
}

size_t pool_table_caps(const hw_table_t *t, uint64_t *bits, size_t words) {
  memset(bits, 0, words * sizeof *bits);
  if (!t) {
    if (words) bits[0] = pool_worker_caps_word0();
    return 1;
  }
  int caps[64];
  static const int always[] = {1, 2, 3, 4, 7, 8, 9, 10, 11, 12};
  size_t n = 0;
  for (size_t i = 0; i < LP_ARRAY_LEN(always); i++) caps[n++] = always[i];
  n += hw_table_capabilities(t, caps + n, LP_ARRAY_LEN(caps) - n);
  return LP_MAX((size_t)1, hw_caps_to_bits(caps, n, bits, words));
}

static void worker_caps(pool_worker_t *w) {
  w->ncaps = pool_table_caps(w->table, w->caps, WORKER_CAP_WORDS);
}

/* Where a new session runs: the usable device (not the CPU) with the fewest sessions, else the
 * CPU. Loop only. */
static int worker_place(const pool_worker_t *w) {
  if (!w->table) return HW_TABLE_CPU;
  uint64_t now = lp_now_ms();
  int best = HW_TABLE_CPU, best_n = 0;
  for (int i = 1; i < w->table->n; i++) {
    if (!hw_table_usable(w->table, i, now)) continue;
    int n = 0;
    for (const worker_sess_t *s = w->sessions; s; s = s->next) n += s->dev == i;
    if (best == HW_TABLE_CPU || n < best_n) {
      best = i;
      best_n = n;
    }
  }
  return best;
}

/* ---- task bookkeeping -------------------------------------------------------------------------
 */

/* Loop only, like every task_free. */
static void spare_put(pool_worker_t *w, lp_buf_t *b) {
  if (b->data && w->nspare < WORKER_SPARE_INPUTS && b->cap <= WORKER_SPARE_INPUT_MAX &&
      !w->freeing) {
    b->len = 0;
    w->spare[w->nspare++] = *b;
  } else {
    lp_buf_free(b);
  }
  *b = (lp_buf_t)LP_BUF_INIT;
}

static void spares_free(pool_worker_t *w) {
  while (w->nspare > 0) lp_buf_free(&w->spare[--w->nspare]);
}

static void task_free(worker_task_t *t) {
  free(t->session_key);
  free(t->profiles);
  spare_put(t->w, &t->input);
  media_result_free(&t->res);
  free(t);
}

static void task_unlink(pool_worker_t *w, worker_task_t *t) {
  for (worker_task_t **pp = &w->tasks; *pp; pp = &(*pp)->next)
    if (*pp == t) {
      *pp = t->next;
      return;
    }
}

static void close_registrations(pool_worker_t *w);

static void on_drain_timer(uv_timer_t *h) {
  pool_worker_t *w = h->data;
  if (w->drained && w->running == 0) {
    /* Only now: an orchestrator that sees us leave retries what it still waits for. */
    close_registrations(w);
    void (*fn)(void *) = w->drained;
    w->drained = NULL;
    LOGI("Transcoder drained");
    fn(w->drained_arg);
  }
}

static void maybe_drained(pool_worker_t *w) {
  if (w->stopping && !w->freeing && w->running == 0 && w->drained)
    uv_timer_start(&w->drain, on_drain_timer, 0, 0);
}

static void close_registrations(pool_worker_t *w) {
  for (size_t i = 0; i < w->norchs; i++) {
    worker_orch_t *o = &w->orchs[i];
    uv_timer_stop(&o->retry);
    if (o->call) {
      net_fetch_cancel(o->call);
      o->call = NULL;
    }
  }
}

static void task_done(worker_task_t *t) {
  pool_worker_t *w = t->w;
  task_unlink(w, t);
  task_free(t);
  w->running--;
  maybe_drained(w);
}

/* ---- result upload ------------------------------------------------------------------------------
 */

static void on_uploaded(const net_fetch_result_t *res, void *arg) {
  worker_task_t *t = arg;
  t->fetch = NULL;
  if (res->err)
    LOGE_C(&t->log, "Error uploading results taskId=%" PRId64 " orch=%s err=\"%s\"", t->id,
           t->orch->addr, res->error ? res->error : lp_strerror(res->err));
  else if (res->status != 200)
    LOGE_C(&t->log, "Orchestrator refused results taskId=%" PRId64 " orch=%s status=%ld", t->id,
           t->orch->addr, res->status);
  else
    LOGV_C(LP_V_DEBUG, &t->log, "Uploaded results taskId=%" PRId64 " orch=%s", t->id,
           t->orch->addr);
  task_done(t);
}

/* POOL_DEVICES_DOWN_HEADER's value: the table's quarantined devices, or NULL when the table has
 * no device beside the CPU. Runs on the loop, the only writer of device health. */
static const char *devices_down(const pool_worker_t *w, char *buf, size_t len) {
  if (!w->table || w->table->n < 2) return NULL;
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < w->table->n; i++) {
    const hw_device_t *d = &w->table->dev[i];
    if (d->state != HW_DEV_QUARANTINED) continue;
    int n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", d->name);
    if (n < 0 || (size_t)n >= len - used) { /* what fits; the names are short */
      buf[used] = 0;
      break;
    }
    used += (size_t)n;
  }
  return used ? buf : "none";
}

/* Posts the renditions (or error text when error is set) to the task's orchestrator. */
static void task_upload(worker_task_t *t, const char *error) {
  pool_worker_t *w = t->w;
  lp_buf_t body = LP_BUF_INIT;
  char ctype[96], pixels[24], taskid[24], boundary[21];
  int rc = 0;
  if (error) {
    snprintf(ctype, sizeof ctype, "%s", POOL_ERROR_CONTENT_TYPE);
    snprintf(pixels, sizeof pixels, "0");
    rc = lp_buf_append(&body, error, strlen(error));
  } else {
    rc = pool_boundary_new(boundary);
    snprintf(ctype, sizeof ctype, "multipart/mixed; boundary=%s", boundary);
    snprintf(pixels, sizeof pixels, "%" PRId64, t->res.decoded_pixels);
    for (size_t i = 0; !rc && i < t->res.n; i++) {
      const media_rendition_t *r = &t->res.renditions[i];
      const char *mt = t->profiles[i].format == MEDIA_FORMAT_MP4 ? "video/mp4" : "video/mp2t";
      rc = pool_multipart_add(&body, boundary, mt, r->pixels, r->data, r->len);
    }
    if (!rc) rc = pool_multipart_close(&body, boundary);
  }
  snprintf(taskid, sizeof taskid, "%" PRId64, t->id);
  char url[320];
  snprintf(url, sizeof url, "%s%s", t->orch->base, POOL_RESULTS_PATH);
  char down[512];
  net_header_t h[] = {
      {"Authorization", POOL_AUTH_HEADER_VALUE},
      {"Credentials", w->cfg->orch_secret},
      {"TaskId", taskid},
      {"Pixels", pixels},
      {"Content-Type", ctype},
      {POOL_DEVICES_DOWN_HEADER, devices_down(w, down, sizeof down)},
  };
  net_fetch_opts_t fo;
  memset(&fo, 0, sizeof fo);
  fo.method = "POST";
  fo.url = url;
  fo.headers = h;
  /* the devices header only from a transcoder that has devices beside the CPU */
  fo.nheaders = LP_ARRAY_LEN(h) - (h[LP_ARRAY_LEN(h) - 1].value ? 0 : 1);
  fo.body = body.data;
  fo.body_len = body.len;
  fo.version = NET_HTTP_2; /* go's O accepts results over HTTP/2 only */
  fo.insecure = true;
  fo.timeout_ms = WORKER_UPLOAD_TIMEOUT_MS;
  fo.max_body_bytes = 64 * 1024;
  if (!rc) rc = net_client_fetch(w->client, &fo, on_uploaded, t, &t->fetch);
  lp_buf_free(&body);
  if (rc) {
    LOGE_C(&t->log, "Could not upload results taskId=%" PRId64 " err=%s", t->id, lp_strerror(rc));
    task_done(t);
  }
}

/* ---- per-stream engine threads ------------------------------------------------------------------
 */

/* A media session on table entry dev (the CPU without a table). The table is copied under the
 * worker's lock, as the loop may be marking a device's health meanwhile; the session keeps its
 * own routes, so the copy lives only through the open. */
static media_session_t *sess_open(pool_worker_t *w, int dev, const lp_logctx_t *log) {
  media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
  o.log = *log;
  if (w->cfg && w->cfg->cpu_preset && w->cfg->cpu_preset[0]) o.preset = w->cfg->cpu_preset;
  hw_table_t *copy = NULL;
  if (w->table && dev > HW_TABLE_CPU) {
    copy = malloc(sizeof *copy);
    if (!copy) return NULL;
    pthread_mutex_lock(&w->table_mu);
    *copy = *w->table;
    pthread_mutex_unlock(&w->table_mu);
    if (dev < copy->n) {
      copy->dev[dev].state = HW_DEV_OK; /* placement already decided; the session just routes */
      o.backend_impl = copy->dev[dev].be;
      o.backend = copy->dev[dev].be->name;
      o.device = copy->dev[dev].index;
      o.table = copy;
      o.table_dev = dev;
    }
  }
  media_session_t *ms = media_session_new(&o);
  free(copy);
  return ms;
}

/* One segment on ms (NULL: its open failed). Returns the failure's class, MEDIA_ERR_NONE on
 * success; a session the failure broke is replaced before the next segment (sess_thread). */
static media_err_class_t sess_transcode(media_session_t *ms, worker_task_t *t) {
  media_result_free(&t->res);
  memset(&t->res, 0, sizeof t->res);
  if (!ms) {
    t->rc = LP_EDEVICE;
    snprintf(t->res.error, sizeof t->res.error, "could not open a transcoding session");
    return MEDIA_ERR_DEVICE;
  }
  t->rc = media_session_transcode(ms, t->input.data, t->input.len, t->profiles, t->n, &t->res);
  return t->rc ? t->res.error_class : MEDIA_ERR_NONE;
}

/* A transcoded task goes to the loop, which uploads its results. */
static void task_transcoded(pool_worker_t *w, worker_task_t *t) {
  pthread_mutex_lock(&w->done_mu);
  t->next = w->done;
  w->done = t;
  pthread_mutex_unlock(&w->done_mu);
  uv_async_send(&w->async);
}

/* A CPU segment's result, on the media session's thread. */
static void task_submitted(void *arg, media_result_t *res, int rc) {
  worker_task_t *t = arg;
  t->rc = rc;
  t->dev_class = rc ? res->error_class : MEDIA_ERR_NONE;
  task_transcoded(t->w, t);
}

static void *sess_thread(void *arg) {
  worker_sess_t *s = arg;
  pool_worker_t *w = s->w;
  media_session_t *ms = NULL;
  int ms_dev = HW_TABLE_CPU;
  /* nicer than this process's loop and, for a local worker, than the node's, which answer
   * gateways and move every segment in and out */
  if (lp_thread_transcode_priority())
    LOGW("transcoder session thread started with a real-time policy; made it normal");
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (!s->queue && !s->closing) pthread_cond_wait(&s->cv, &s->mu);
    worker_task_t *t = s->queue;
    if (t) {
      s->queue = t->next;
      if (!s->queue) s->queue_tail = NULL;
      t->next = NULL;
    }
    int dev = s->dev;
    pthread_mutex_unlock(&s->mu);
    if (!t) break;
    bool broke = ms && media_session_broken(ms);
    if (ms && (ms_dev != dev || broke)) {
      /* moved off a quarantined device, or its codec state broke */
      media_session_free(ms);
      ms = NULL;
    }
    if (!ms) {
      ms = sess_open(w, dev, &t->log);
      ms_dev = dev;
    }
    t->dev = dev;
    if (ms && dev == HW_TABLE_CPU) {
      /* The CPU takes the stream's next segment while this one's encoders drain: the result
       * comes back on the media session's thread. */
      media_result_free(&t->res);
      media_session_submit(ms, t->input.data, t->input.len, t->profiles, t->n, &t->res,
                           task_submitted, t);
      continue;
    }
    t->dev_class = sess_transcode(ms, t);
    if (t->rc && t->dev_class == MEDIA_ERR_DEVICE && dev != HW_TABLE_CPU) {
      /* The device failed, not the segment: this one is done on the CPU now, and the loop
       * quarantines the device and moves the session (device_outcome). */
      char name[sizeof w->table->dev[0].name];
      pthread_mutex_lock(&w->table_mu);
      memcpy(name, w->table->dev[dev].name, sizeof name);
      pthread_mutex_unlock(&w->table_mu);
      LOGW_C(&t->log, "Device %s failed (%s); transcoding this segment on the CPU", name,
             t->res.error);
      media_session_free(ms);
      ms = sess_open(w, HW_TABLE_CPU, &t->log);
      ms_dev = HW_TABLE_CPU;
      sess_transcode(ms, t);
    }
    task_transcoded(w, t);
  }
  media_session_free(ms); /* after the segments still in flight */
  pthread_mutex_lock(&w->done_mu);
  s->exited = true;
  pthread_mutex_unlock(&w->done_mu);
  uv_async_send(&w->async);
  return NULL;
}

static worker_sess_t *sess_get(pool_worker_t *w, const char *key) {
  for (worker_sess_t *s = w->sessions; s; s = s->next)
    if (strcmp(s->key, key) == 0) return s;
  worker_sess_t *s = calloc(1, sizeof *s);
  if (!s || !(s->key = strdup(key))) {
    free(s);
    return NULL;
  }
  s->w = w;
  s->dev = worker_place(w);
  if (w->table && s->dev != HW_TABLE_CPU)
    LOGV(LP_V_DEBUG, "Session key=%s runs on %s", key, w->table->dev[s->dev].name);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  if (pthread_create(&s->thread, NULL, sess_thread, s)) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->key);
    free(s);
    return NULL;
  }
  s->next = w->sessions;
  w->sessions = s;
  return s;
}

/* Moves a session to the zombies: its thread finishes what is queued, then exits. */
static void sess_close(pool_worker_t *w, worker_sess_t *s) {
  for (worker_sess_t **pp = &w->sessions; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  pthread_mutex_lock(&s->mu);
  s->closing = true;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  s->next = w->zombies;
  w->zombies = s;
}

static void sess_destroy(worker_sess_t *s) {
  pthread_join(s->thread, NULL);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->key);
  free(s);
}

static worker_sess_t *sess_find(pool_worker_t *w, const char *key) {
  for (worker_sess_t *s = w->sessions; s; s = s->next)
    if (strcmp(s->key, key) == 0) return s;
  return NULL;
}

/* A device's health from a task that ran on it: a device error (or three session errors in a
 * row) quarantines it and its sessions move to another device or the CPU; their next segment
 * opens there. The device is re-tested later (recheck_start). Loop only. */
static void device_outcome(pool_worker_t *w, const worker_task_t *t) {
  if (!w->table || t->dev <= HW_TABLE_CPU || t->dev >= w->table->n) return;
  media_err_class_t c = t->dev_class;
  if (c != MEDIA_ERR_NONE && c != MEDIA_ERR_SESSION && c != MEDIA_ERR_DEVICE) return;
  pthread_mutex_lock(&w->table_mu);
  hw_device_t *d = &w->table->dev[t->dev];
  hw_dev_state_t was = d->state, st = was;
  if (c == MEDIA_ERR_NONE)
    hw_table_report_ok(w->table, t->dev);
  else
    st = hw_table_report(w->table, t->dev, c == MEDIA_ERR_DEVICE ? HW_ERR_DEVICE : HW_ERR_SESSION,
                         lp_now_ms());
  pthread_mutex_unlock(&w->table_mu);
  if (st != HW_DEV_QUARANTINED || was == HW_DEV_QUARANTINED) return;
  int moved = 0;
  for (worker_sess_t *s = w->sessions; s; s = s->next) {
    if (s->dev != t->dev) continue;
    int to = worker_place(w);
    pthread_mutex_lock(&s->mu);
    s->dev = to;
    pthread_mutex_unlock(&s->mu);
    moved++;
  }
  LOGE("Device %s is quarantined (%s): %d session(s) move to other devices or the CPU", d->name,
       d->note, moved);
}

/* Re-tests quarantined devices whose time has come, on the thread pool on a copy of the table;
 * the outcome is applied on the loop. */
static void recheck_work(uv_work_t *req) {
  pool_worker_t *w = req->data;
  hw_table_recheck(w->recheck_copy, lp_now_ms());
}

static void on_handle_closed(uv_handle_t *h);

static void recheck_done(uv_work_t *req, int status) {
  pool_worker_t *w = req->data;
  (void)status;
  w->rechecking = false;
  if (!w->freeing) {
    pthread_mutex_lock(&w->table_mu); /* hw_table_recheck logged each outcome */
    hw_table_recheck_apply(w->table, w->recheck_copy);
    pthread_mutex_unlock(&w->table_mu);
  }
  free(w->recheck_copy);
  w->recheck_copy = NULL;
  on_handle_closed((uv_handle_t *)&w->async); /* the work held the worker like a handle */
}

static void recheck_start(pool_worker_t *w) {
  if (!w->table || w->rechecking || w->freeing || !hw_table_recheck_due(w->table, lp_now_ms()))
    return;
  if (!(w->recheck_copy = malloc(sizeof *w->recheck_copy))) return;
  pthread_mutex_lock(&w->table_mu);
  *w->recheck_copy = *w->table;
  pthread_mutex_unlock(&w->table_mu);
  w->recheck.data = w;
  if (uv_queue_work(w->loop, &w->recheck, recheck_work, recheck_done)) {
    free(w->recheck_copy);
    w->recheck_copy = NULL;
    return;
  }
  w->rechecking = true;
  w->open_handles++;
}

static void on_async(uv_async_t *h) {
  pool_worker_t *w = h->data;
  pthread_mutex_lock(&w->done_mu);
  worker_task_t *list = w->done;
  w->done = NULL;
  pthread_mutex_unlock(&w->done_mu);
  /* Oldest first. */
  worker_task_t *rev = NULL;
  while (list) {
    worker_task_t *n = list->next;
    list->next = rev;
    rev = list;
    list = n;
  }
  while (rev) {
    worker_task_t *t = rev;
    rev = t->next;
    t->next = w->tasks;
    w->tasks = t;
    worker_sess_t *s = sess_find(w, t->session_key);
    if (s) {
      s->busy--;
      s->last_used_ms = lp_now_ms();
    }
    device_outcome(w, t);
    if (w->freeing) {
      task_done(t);
      continue;
    }
    if (t->rc) {
      LOGE_C(&t->log, "Transcode failed taskId=%" PRId64 " err=\"%s\"", t->id, t->res.error);
      task_upload(t, t->res.error[0] ? t->res.error : lp_strerror(t->rc));
    } else {
      LOGI_C(&t->log, "Transcoded segment taskId=%" PRId64 " renditions=%zu took=%.3fs", t->id,
             t->res.n, (double)t->res.transcode_ns / 1e9);
      task_upload(t, NULL);
    }
  }
  /* Join the threads that have left. */
  for (worker_sess_t **pp = &w->zombies; *pp;) {
    worker_sess_t *s = *pp;
    pthread_mutex_lock(&w->done_mu);
    bool gone = s->exited;
    pthread_mutex_unlock(&w->done_mu);
    if (gone) {
      *pp = s->next;
      sess_destroy(s);
    } else {
      pp = &s->next;
    }
  }
}

static void on_sweep(uv_timer_t *h) {
  pool_worker_t *w = h->data;
  uint64_t now = lp_now_ms();
  for (worker_sess_t *s = w->sessions, *n; s; s = n) {
    n = s->next;
    if (s->busy == 0 && now - s->last_used_ms > WORKER_SESSION_IDLE_MS) {
      LOGV(LP_V_DEBUG, "Closing idle transcoding session key=%s", s->key);
      sess_close(w, s);
    }
  }
  if (!w->sessions && w->running == 0) spares_free(w);
  recheck_start(w);
}

/* ---- tasks: fetch, queue ------------------------------------------------------------------------
 */

/* The body goes straight into the task's input buffer (a spare one when there is). */
static int on_input_data(const uint8_t *data, size_t len, void *arg) {
  worker_task_t *t = arg;
  if (len > WORKER_INPUT_MAX - t->input.len) {
    t->input_over = true;
    return 1;
  }
  if (lp_buf_append(&t->input, data, len)) {
    t->input_nomem = true;
    return 1;
  }
  return 0;
}

static void on_fetched(const net_fetch_result_t *res, void *arg) {
  worker_task_t *t = arg;
  pool_worker_t *w = t->w;
  t->fetch = NULL;
  if (res->err || res->status != 200) {
    char why[256];
    if (t->input_over)
      snprintf(why, sizeof why, "segment larger than %zu bytes", WORKER_INPUT_MAX);
    else if (t->input_nomem)
      snprintf(why, sizeof why, "out of memory");
    else if (res->err)
      snprintf(why, sizeof why, "%s", res->error ? res->error : lp_strerror(res->err));
    else
      snprintf(why, sizeof why, "bad status fetching segment: %ld", res->status);
    LOGE_C(&t->log, "Could not fetch the segment taskId=%" PRId64 " err=\"%s\"", t->id, why);
    task_upload(t, why);
    return;
  }
  LOGV_C(LP_V_DEBUG, &t->log, "Fetched segment taskId=%" PRId64 " bytes=%zu in %.1fms", t->id,
         t->input.len, (lp_now_ns() - t->got_ns) / 1e6);
  worker_sess_t *s = sess_get(w, t->session_key);
  if (!s) {
    task_upload(t, "could not start a transcoding session");
    return;
  }
  task_unlink(w, t);
  s->busy++;
  s->last_used_ms = lp_now_ms();
  pthread_mutex_lock(&s->mu);
  t->next = NULL;
  if (s->queue_tail)
    s->queue_tail->next = t;
  else
    s->queue = t;
  s->queue_tail = t;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void handle_teardown(worker_orch_t *o, const char *sid) {
  char key[160];
  snprintf(key, sizeof key, "%d/%s", o->index, sid);
  worker_sess_t *s = sess_find(o->w, key);
  LOGV(LP_V_DEBUG, "Orchestrator ended session sessionID=%s orch=%s", sid, o->addr);
  if (s) sess_close(o->w, s);
}

static void handle_segment(worker_orch_t *o, Net__NotifySegment *ns) {
  pool_worker_t *w = o->w;
  const Net__SegData *sd = ns->segdata;
  const char *sid =
      sd && sd->auth_token && sd->auth_token->session_id ? sd->auth_token->session_id : "";
  worker_task_t *t = calloc(1, sizeof *t);
  if (!t) return;
  t->w = w;
  t->orch = o;
  t->id = ns->taskid;
  t->log = (lp_logctx_t)LP_LOGCTX_INIT;
  snprintf(t->session_id, sizeof t->session_id, "%s", sid);
  if (sd && sd->manifestid.len) {
    size_t n = LP_MIN(sd->manifestid.len, sizeof t->manifest - 1);
    memcpy(t->manifest, sd->manifestid.data, n);
    t->manifest[n] = 0;
    t->log.manifest_id = t->manifest;
  }
  t->log.orch_session_id = t->session_id;
  t->log.seq_no = sd ? sd->seq : -1;
  char key[160];
  snprintf(key, sizeof key, "%d/%s", o->index, sid);
  t->session_key = strdup(key);
  t->next = w->tasks;
  w->tasks = t;
  w->running++;
  if (!t->session_key) {
    task_upload(t, "out of memory");
    return;
  }
  if (w->stopping) {
    task_upload(t, POOL_ERR_DRAINING);
    return;
  }
  if (!sd || !pool_caps_compatible(sd->capabilities, w->caps, w->ncaps, WORKER_VERSION)) {
    task_upload(t, "incompatible segment capabilities");
    return;
  }
  size_t n;
  Net__VideoProfile **vps = pool_segdata_profiles(sd, &n);
  if (n == 0 || n > MEDIA_MAX_OUTPUTS) {
    task_upload(t, n ? "Too many outputs" : "segment / profile mismatch");
    return;
  }
  t->profiles = calloc(n, sizeof *t->profiles);
  if (!t->profiles) {
    task_upload(t, "out of memory");
    return;
  }
  t->n = n;
  for (size_t i = 0; i < n; i++) {
    const char *why = NULL;
    if (pool_profile_from_wire(vps[i], &t->profiles[i], &why)) {
      task_upload(t, why);
      return;
    }
  }
  LOGV_C(LP_V_DEBUG, &t->log, "Got segment taskId=%" PRId64 " orch=%s url=%s", t->id, o->addr,
         ns->url);
  t->got_ns = lp_now_ns();
  net_fetch_opts_t fo;
  memset(&fo, 0, sizeof fo);
  fo.url = ns->url;
  fo.version = NET_HTTP_1; /* go's DownloadData speaks HTTP/1.1 */
  fo.insecure = true;
  fo.timeout_ms = WORKER_FETCH_TIMEOUT_MS;
  fo.on_data = on_input_data;
  if (w->nspare > 0) t->input = w->spare[--w->nspare];
  int rc = net_client_fetch(w->client, &fo, on_fetched, t, &t->fetch);
  if (rc) task_upload(t, "could not fetch the segment");
}

/* ---- registration
 * --------------------------------------------------------------------------------- */

static void on_kick(uv_timer_t *h) {
  pool_worker_t *w = h->data;
  while (w->msgs) {
    worker_msg_t *m = w->msgs;
    w->msgs = m->next;
    if (!w->msgs) w->msgs_tail = NULL;
    Net__NotifySegment *ns = m->ns;
    if (!ns->url || !ns->url[0]) {
      const Net__SegData *sd = ns->segdata;
      if (sd && sd->auth_token && sd->auth_token->session_id)
        handle_teardown(m->orch, sd->auth_token->session_id);
    } else {
      handle_segment(m->orch, ns);
    }
    net__notify_segment__free_unpacked(ns, NULL);
    free(m);
  }
}

static int on_notify(const uint8_t *msg, size_t len, void *arg) {
  worker_orch_t *o = arg;
  pool_worker_t *w = o->w;
  if (!o->got_msg) {
    o->got_msg = true;
    o->backoff_ms = WORKER_BACKOFF_MIN_MS;
  }
  if (w->freeing) return 0;
  Net__NotifySegment *ns = net__notify_segment__unpack(NULL, len, msg);
  if (!ns) {
    LOGE("Malformed NotifySegment from orch=%s", o->addr);
    return 0;
  }
  worker_msg_t *m = calloc(1, sizeof *m);
  if (!m) {
    net__notify_segment__free_unpacked(ns, NULL);
    return 0;
  }
  m->orch = o;
  m->ns = ns;
  if (w->msgs_tail)
    w->msgs_tail->next = m;
  else
    w->msgs = m;
  w->msgs_tail = m;
  uv_timer_start(&w->kick, on_kick, 0, 0);
  return 0;
}

static void on_retry(uv_timer_t *h) { orch_connect(h->data); }

static void check_all_refused(pool_worker_t *w) {
  for (size_t i = 0; i < w->norchs; i++)
    if (!w->orchs[i].refused) return;
  if (w->fatal_called) return;
  w->fatal_called = true;
  LOGE("Every orchestrator refused this transcoder; stopping");
  if (w->on_fatal) w->on_fatal(w->fatal_arg);
}

static void on_register_done(int status, const char *message, void *arg) {
  worker_orch_t *o = arg;
  pool_worker_t *w = o->w;
  o->call = NULL;
  const char *msg = message ? message : "";
  if (w->stopping) return;
  if (strcmp(msg, "invalid secret") == 0 || strcmp(msg, "zero capacity") == 0) {
    LOGE("Orchestrator refused registration orch=%s err=\"%s\"; not retrying", o->addr, msg);
    o->refused = true;
    check_all_refused(w);
    return;
  }
  /* A registration that held for a while starts the back-off over. */
  if (o->got_msg || lp_now_ms() - o->started_ms > WORKER_BACKOFF_MAX_MS)
    o->backoff_ms = WORKER_BACKOFF_MIN_MS;
  LOGW("Registration with orchestrator ended orch=%s status=%d err=\"%s\"; retrying in %.1fs",
       o->addr, status, msg, (double)o->backoff_ms / 1000);
  uv_timer_start(&o->retry, on_retry, o->backoff_ms, 0);
  o->backoff_ms = LP_MIN(o->backoff_ms * 2, (uint64_t)WORKER_BACKOFF_MAX_MS);
}

static void orch_connect(worker_orch_t *o) {
  pool_worker_t *w = o->w;
  if (w->stopping || o->refused) return;
  Net__Capabilities caps = NET__CAPABILITIES__INIT;
  caps.n_bitstring = w->ncaps;
  caps.bitstring = w->caps;
  caps.version = WORKER_VERSION;
  Net__RegisterRequest rr = NET__REGISTER_REQUEST__INIT;
  rr.secret = w->cfg->orch_secret;
  rr.capacity = w->capacity;
  rr.capabilities = &caps;
  uint8_t buf[512];
  size_t len = net__register_request__get_packed_size(&rr);
  if (len > sizeof buf) {
    LOGE("Registration message too large");
    return;
  }
  net__register_request__pack(&rr, buf);
  net_grpc_call_opts_t co;
  memset(&co, 0, sizeof co);
  co.base = o->base;
  co.method = POOL_REGISTER_METHOD;
  co.msg = buf;
  co.len = len;
  co.insecure = true;
  o->got_msg = false;
  o->started_ms = lp_now_ms();
  LOGI("Registering transcoder with orchestrator orch=%s capacity=%" PRId64, o->addr, w->capacity);
  int rc = net_client_grpc(w->client, &co, on_notify, on_register_done, o, &o->call);
  if (rc) {
    o->call = NULL;
    LOGE("Could not start the registration orch=%s err=%s", o->addr, lp_strerror(rc));
    uv_timer_start(&o->retry, on_retry, o->backoff_ms, 0);
    o->backoff_ms = LP_MIN(o->backoff_ms * 2, (uint64_t)WORKER_BACKOFF_MAX_MS);
  }
}

/* ---- lifecycle
 * ------------------------------------------------------------------------------------- */

/* Parses "host:port", "https://host:port/...", "host" (port 8935) into o. */
static int parse_addr(const char *in, worker_orch_t *o) {
  const char *p = in;
  if (strncmp(p, "https://", 8) == 0)
    p += 8;
  else if (strncmp(p, "http://", 7) == 0)
    p += 7; /* go's T always uses TLS whatever the scheme says */
  size_t n = strcspn(p, "/");
  if (n == 0 || n >= sizeof o->addr - 8) return LP_EINVAL;
  memcpy(o->addr, p, n);
  o->addr[n] = 0;
  const char *colon = strrchr(o->addr, ':');
  const char *rb = strrchr(o->addr, ']');
  if (!colon || (rb && colon < rb)) strcat(o->addr, ":8935");
  snprintf(o->base, sizeof o->base, "https://%s", o->addr);
  return 0;
}

int pool_worker_check_flags(const lp_config_t *cfg) {
  if (!cfg->orch_addr || !cfg->orch_addr[0]) {
    LOGE("-transcoder needs -orchAddr to register with an orchestrator");
    return LP_EINVAL;
  }
  if (!cfg->orch_secret || !cfg->orch_secret[0]) {
    LOGE("-transcoder with -orchAddr needs -orchSecret");
    return LP_EINVAL;
  }
  return 0;
}

int pool_worker_start(uv_loop_t *loop, const lp_config_t *cfg, const hw_table_t *table,
                      int capacity, pool_worker_t **out) {
  *out = NULL;
  int frc = pool_worker_check_flags(cfg);
  if (frc) return frc;
  /* A worker process of a combined node ends with its parent rather than linger as an orphan
   * that keeps dialing a node that is gone. */
  const char *parent = getenv("LPOD_WORKER_PARENT");
  if (parent && *parent) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if ((long)getppid() != strtol(parent, NULL, 10)) {
      LOGE("The node that started this worker is gone");
      return LP_ECANCELED;
    }
  }
  pool_worker_t *w = calloc(1, sizeof *w);
  if (!w) return LP_ENOMEM;
  w->loop = loop;
  w->cfg = cfg;
  if (table) {
    if (!(w->table = malloc(sizeof *w->table))) {
      free(w);
      return LP_ENOMEM;
    }
    *w->table = *table;
  }
  worker_caps(w);
  w->capacity = capacity > 0 ? capacity : cfg->max_sessions;
  if (cfg->max_sessions_auto && capacity <= 0) {
    /* without a capacity model: a stream per CPU */
    lp_sched_cpu_limits_t lim;
    w->capacity = lp_sched_cpu_limits(NULL, &lim) == 0 ? LP_MAX(1, (int)lim.effective) : 1;
  }
  char *list = strdup(cfg->orch_addr);
  size_t count = 1;
  for (const char *c = cfg->orch_addr; *c; c++) count += *c == ',';
  w->orchs = calloc(count, sizeof *w->orchs);
  if (!list || !w->orchs) {
    free(list);
    free(w->orchs);
    free(w->table);
    free(w);
    return LP_ENOMEM;
  }
  char *save = NULL;
  for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    lp_strtrim(tok);
    if (!*tok) continue;
    worker_orch_t *o = &w->orchs[w->norchs];
    if (parse_addr(tok, o)) {
      LOGE("Invalid -orchAddr entry \"%s\"", tok);
      free(list);
      free(w->orchs);
      free(w->table);
      free(w);
      return LP_EINVAL;
    }
    o->w = w;
    o->index = (int)w->norchs++;
    o->backoff_ms = WORKER_BACKOFF_MIN_MS;
  }
  free(list);
  if (w->norchs == 0) {
    LOGE("-orchAddr lists no orchestrator");
    free(w->orchs);
    free(w->table);
    free(w);
    return LP_EINVAL;
  }
  w->client = net_client_new(loop);
  if (!w->client) {
    free(w->orchs);
    free(w->table);
    free(w);
    return LP_ENOMEM;
  }
  pthread_mutex_init(&w->done_mu, NULL);
  pthread_mutex_init(&w->table_mu, NULL);
  uv_async_init(loop, &w->async, on_async);
  w->async.data = w;
  uv_timer_init(loop, &w->sweep);
  w->sweep.data = w;
  uv_timer_start(&w->sweep, on_sweep, WORKER_SWEEP_MS, WORKER_SWEEP_MS);
  uv_timer_init(loop, &w->drain);
  w->drain.data = w;
  uv_timer_init(loop, &w->kick);
  w->kick.data = w;
  w->open_handles = 4;
  for (size_t i = 0; i < w->norchs; i++) {
    uv_timer_init(loop, &w->orchs[i].retry);
    w->orchs[i].retry.data = &w->orchs[i];
    w->open_handles++;
  }
  for (size_t i = 0; i < w->norchs; i++) orch_connect(&w->orchs[i]);
  *out = w;
  return 0;
}

void pool_worker_on_fatal(pool_worker_t *w, void (*fn)(void *arg), void *arg) {
  w->on_fatal = fn;
  w->fatal_arg = arg;
}

bool pool_worker_failed(const pool_worker_t *w) { return w->fatal_called; }

void pool_worker_stop(pool_worker_t *w, void (*drained)(void *arg), void *arg) {
  w->stopping = true;
  w->drained = drained;
  w->drained_arg = arg;
  for (size_t i = 0; i < w->norchs; i++) uv_timer_stop(&w->orchs[i].retry);
  LOGI("Transcoder stopping: no new tasks, %d running", w->running);
  uv_timer_start(&w->drain, on_drain_timer, 0, 0);
}

static void on_handle_closed(uv_handle_t *h) {
  pool_worker_t *w = h->data;
  if (--w->open_handles > 0) return;
  pthread_mutex_destroy(&w->done_mu);
  pthread_mutex_destroy(&w->table_mu);
  free(w->table);
  free(w->orchs);
  free(w);
}

static void on_orch_timer_closed(uv_handle_t *h) {
  worker_orch_t *o = h->data;
  h->data = o->w;
  on_handle_closed(h);
}

void pool_worker_free(pool_worker_t *w) {
  if (!w) return;
  w->freeing = true;
  w->stopping = true;
  close_registrations(w);
  /* Threads finish their current segment and leave; queued segments are dropped. */
  while (w->sessions) sess_close(w, w->sessions);
  for (worker_sess_t *s = w->zombies; s; s = s->next) {
    pthread_mutex_lock(&s->mu);
    worker_task_t *q = s->queue;
    s->queue = s->queue_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (q) {
      worker_task_t *n = q->next;
      task_free(q);
      q = n;
    }
  }
  while (w->zombies) {
    worker_sess_t *s = w->zombies;
    w->zombies = s->next;
    sess_destroy(s);
  }
  pthread_mutex_lock(&w->done_mu);
  worker_task_t *d = w->done;
  w->done = NULL;
  pthread_mutex_unlock(&w->done_mu);
  while (d) {
    worker_task_t *n = d->next;
    task_free(d);
    d = n;
  }
  while (w->tasks) {
    worker_task_t *t = w->tasks;
    w->tasks = t->next;
    if (t->fetch) net_fetch_cancel(t->fetch);
    task_free(t);
  }
  spares_free(w);
  while (w->msgs) {
    worker_msg_t *m = w->msgs;
    w->msgs = m->next;
    net__notify_segment__free_unpacked(m->ns, NULL);
    free(m);
  }
  w->msgs_tail = NULL;
  net_client_free(w->client);
  w->client = NULL;
  uv_close((uv_handle_t *)&w->async, on_handle_closed);
  uv_close((uv_handle_t *)&w->sweep, on_handle_closed);
  uv_close((uv_handle_t *)&w->drain, on_handle_closed);
  uv_close((uv_handle_t *)&w->kick, on_handle_closed);
  for (size_t i = 0; i < w->norchs; i++)
    uv_close((uv_handle_t *)&w->orchs[i].retry, on_orch_timer_closed);
}
