/* Orchestrator side of the remote transcoder protocol (spec/protocol.md §6): registrations,
 * NotifySegment pushes, input hosting, result uploads, selection, timeouts and retries. */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/pool.h"
#include "pool_int.h"

#define POOL_CAP_WORDS 16 /* as the orchestrator's set: lpod's extensions sit in word 15 */
#define POOL_DEFAULT_CAPS 0x4005FFFull /* go's DefaultCapabilities, for Ts that send none */
#define POOL_MAX_ATTEMPTS 4
#define POOL_MIN_RENDITION 25 /* go rejects smaller renditions */
#define POOL_MAX_ERROR_BODY 4096
#define POOL_TOKEN_HEX 32
/* How long a new segment waits for a local worker that is starting or restarting, when no
 * transcoder can take it now. */
#define POOL_LOCAL_WAIT_MS 5000

typedef struct pool_tc pool_tc_t;
typedef struct pool_task pool_task_t;
typedef struct pool_sess pool_sess_t;
typedef struct pool_upload pool_upload_t;

struct pool_tc {
  pool_manager_t *m;
  net_req_t *req; /* the RegisterTranscoder stream; NULL once finished */
  uint64_t serial;
  int64_t capacity;
  int load; /* sessions assigned */
  uint64_t bits[POOL_CAP_WORDS];
  size_t nbits;
  char version[32];
  char peer[64];    /* "ip:port" for logs */
  char peer_ip[64]; /* results must come from the same address */
  bool draining;    /* said it is shutting down: no new work */
  int local;        /* the node's local worker this is (its secret's index), or -1 */
  pool_tc_t *next;
};

struct pool_sess {
  char *id;
  pool_tc_t *tc;
  pool_sess_t *next;
};

struct pool_task {
  pool_manager_t *m;
  int64_t id; /* of the current attempt; 0 while not dispatched */
  char token[POOL_TOKEN_HEX + 1];
  char *session_id;
  Net__SegData *sd; /* what transcoders get (storage, hash and sig replaced) */
  size_t n_profiles;
  uint64_t timeout_ms;
  uint8_t *input;
  size_t input_len;
  pool_tc_t *tc;
  int target;     /* POOL_TARGET_* or a local worker's index: where a new session goes */
  bool receiving; /* an upload for it is being read: later ones are duplicates */
  uint64_t sent_ns, served_ns, upload_ns; /* push, input served, upload headers (hop_ns) */
  bool finished;
  int attempts;
  pool_result_t pending; /* an outcome decided before dispatch, delivered from the timer */
  bool has_pending;
  bool waiting;     /* for a local worker to register; pending holds the outcome if none does */
  bool redispatch;  /* dispatch_waiting's mark */
  int local_losses; /* local workers that went away while they had it */
  uv_timer_t timer;
  pool_done_fn done;
  void *arg;
  pool_task_t *next;
};

/* A result upload whose body is still arriving. */
struct pool_upload {
  pool_manager_t *m; /* NULL once the manager is gone */
  int64_t task_id;
  char boundary[POOL_BOUNDARY_MAX + 1];
  bool is_error;
  int64_t pixels;
  pool_upload_t *next;
};

/* A request from another thread: a job to wait for, or a session to end. */
typedef struct pool_call {
  const pool_job_t *job; /* NULL: end session_id */
  char *session_id;
  pool_result_t *out;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  struct pool_call *next;
} pool_call_t;

struct pool_manager {
  uv_loop_t *loop;
  uv_async_t async;
  pthread_mutex_t calls_mu;
  pool_call_t *calls;
  bool closing; /* under calls_mu */
  net_server_t *srv;
  char *secret;
  char **local_secrets; /* local worker i registers with local_secrets[i] */
  int n_local;
  char *service_uri;
  char *orch_id;
  size_t max_part, max_result;
  uint64_t min_timeout_ms;
  void (*on_change)(pool_manager_t *m, void *arg);
  void (*on_devices)(pool_manager_t *m, int local, const char *down, void *arg);
  void *arg;
  pool_tc_t *tcs;
  pool_sess_t *sessions;
  pool_task_t *tasks;
  pool_upload_t *uploads;
  uint64_t tc_serial;
};

static void task_dispatch(pool_task_t *t);

/* ---- helpers -------------------------------------------------------------------------------- */

static int64_t random_id(void) {
  uint64_t v = 0;
  while (v == 0) {
    if (RAND_bytes((unsigned char *)&v, sizeof v) != 1) return 0;
    v &= (uint64_t)INT64_MAX;
  }
  return (int64_t)v;
}

/* "ip:port", "[v6]:port" -> ip, with IPv4-mapped IPv6 folded to IPv4. */
static void peer_ip(const char *peer, char *out, size_t cap) {
  const char *p = peer ? peer : "";
  size_t n;
  if (*p == '[') {
    p++;
    const char *e = strchr(p, ']');
    n = e ? (size_t)(e - p) : strlen(p);
  } else {
    const char *e = strrchr(p, ':');
    n = e ? (size_t)(e - p) : strlen(p);
  }
  if (n >= 7 && strncasecmp(p, "::ffff:", 7) == 0 && memchr(p + 7, '.', n - 7)) p += 7, n -= 7;
  if (n >= cap) n = cap - 1;
  memcpy(out, p, n);
  out[n] = 0;
}

/* Error texts from transcoders may be longer than a result holds: cut, never overrun. */
static void copy_text(char *dst, size_t cap, const char *src) {
  size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = 0;
}

static void notify_change(pool_manager_t *m) {
  if (m->on_change) m->on_change(m, m->arg);
}

static pool_sess_t *sess_find(pool_manager_t *m, const char *id) {
  for (pool_sess_t *s = m->sessions; s; s = s->next)
    if (strcmp(s->id, id) == 0) return s;
  return NULL;
}

static void sess_unmap(pool_manager_t *m, const char *id) {
  for (pool_sess_t **pp = &m->sessions; *pp; pp = &(*pp)->next) {
    pool_sess_t *s = *pp;
    if (strcmp(s->id, id) != 0) continue;
    if (s->tc && s->tc->load > 0) s->tc->load--;
    *pp = s->next;
    free(s->id);
    free(s);
    return;
  }
}

static pool_task_t *task_find(pool_manager_t *m, int64_t id) {
  for (pool_task_t *t = m->tasks; t; t = t->next)
    if (t->id == id && !t->finished) return t;
  return NULL;
}

/* ---- transcoders --------------------------------------------------------------------------- */

static void tc_unlink(pool_manager_t *m, pool_tc_t *tc) {
  for (pool_tc_t **pp = &m->tcs; *pp; pp = &(*pp)->next)
    if (*pp == tc) {
      *pp = tc->next;
      break;
    }
  /* Its sessions go elsewhere at their next segment. */
  for (pool_sess_t **pp = &m->sessions; *pp;) {
    pool_sess_t *s = *pp;
    if (s->tc == tc) {
      *pp = s->next;
      free(s->id);
      free(s);
    } else {
      pp = &s->next;
    }
  }
}

static void task_finish(pool_task_t *t, pool_result_t *res);
static void task_fail(pool_task_t *t, int err, const char *text);

/* A transcoder is gone (disconnected, failed a send, missed a deadline): its other tasks in
 * flight are tried elsewhere. */
static void tc_drop(pool_tc_t *tc, const char *why) {
  pool_manager_t *m = tc->m;
  LOGW("Removing remote transcoder peer=%s reason=\"%s\"", tc->peer, why);
  tc_unlink(m, tc);
  if (tc->req) {
    net_req_set_data(tc->req, NULL);
    net_grpc_finish(tc->req, NET_GRPC_UNKNOWN, why);
    tc->req = NULL;
  }
  /* Each step may finish tasks (changing the list), so search again after every one. */
  for (;;) {
    pool_task_t *t = m->tasks;
    while (t && (t->finished || t->tc != tc)) t = t->next;
    if (!t) break;
    t->tc = NULL;
    uv_timer_stop(&t->timer);
    /* A local worker that goes away with segments in flight most likely crashed, and one of
     * them may be why: each gets one more try, and a segment two workers were lost under is
     * not handed to a third. */
    if (tc->local >= 0 && ++t->local_losses >= 2) {
      LOGE("Segment was in flight on two local workers that went away; not retrying it "
           "taskId=%" PRId64 " sessionID=%s",
           t->id, t->session_id);
      task_fail(t, LP_EMEDIA, POOL_ERR_WORKERS_LOST);
    } else if (t->attempts < POOL_MAX_ATTEMPTS) {
      LOGW("Retrying segment on another transcoder taskId=%" PRId64 " sessionID=%s", t->id,
           t->session_id);
      task_dispatch(t);
    } else {
      task_fail(t, LP_ECAPACITY, "no transcoders available");
    }
  }
  free(tc);
  notify_change(m);
}

/* The transcoder finishes what it has and takes nothing new; its streams go elsewhere. */
static void tc_set_draining(pool_tc_t *tc) {
  if (tc->draining) return;
  tc->draining = true;
  pool_manager_t *m = tc->m;
  for (pool_sess_t **pp = &m->sessions; *pp;) {
    pool_sess_t *s = *pp;
    if (s->tc == tc) {
      *pp = s->next;
      free(s->id);
      free(s);
    } else {
      pp = &s->next;
    }
  }
  tc->load = 0;
  LOGI("Remote transcoder is draining peer=%s", tc->peer);
  notify_change(m);
}

static void on_tc_abort(net_req_t *req, void *arg) {
  pool_tc_t *tc = arg;
  if (!tc || tc->req != req) return;
  tc->req = NULL;
  net_req_set_data(req, NULL);
  /* The request must still be finished; this only frees it now that the peer is gone. */
  net_grpc_finish(req, NET_GRPC_CANCELLED, "transcoder disconnected");
  tc_drop(tc, "transcoder disconnected");
}

#define SECRET_NONE (-2)

/* Whose secret this is: -1 the pool's, i local worker i's, SECRET_NONE nobody's. Every
 * comparison runs, in constant time, whatever matched. */
static int secret_owner(const pool_manager_t *m, const char *secret) {
  size_t len = strlen(secret);
  int owner = SECRET_NONE;
  if (lp_consttime_eq(secret, len, m->secret, strlen(m->secret))) owner = -1;
  for (int i = 0; i < m->n_local; i++)
    if (lp_consttime_eq(secret, len, m->local_secrets[i], strlen(m->local_secrets[i])) &&
        owner == SECRET_NONE)
      owner = i;
  return owner;
}

/* A transcoder registered: the segments waiting for one try again, oldest first. */
static void dispatch_waiting(pool_manager_t *m) {
  for (pool_task_t *t = m->tasks; t; t = t->next) t->redispatch = t->waiting && !t->finished;
  for (;;) { /* once each: a task may go back to waiting */
    pool_task_t *oldest = NULL;
    for (pool_task_t *t = m->tasks; t; t = t->next)
      if (t->redispatch) oldest = t; /* the list is newest first */
    if (!oldest) return;
    oldest->redispatch = false;
    oldest->waiting = false;
    oldest->has_pending = false;
    uv_timer_stop(&oldest->timer);
    task_dispatch(oldest);
  }
}

static void on_register(net_req_t *req, const uint8_t *msg, size_t len, void *arg) {
  pool_manager_t *m = arg;
  if (!m) {
    net_grpc_finish(req, NET_GRPC_UNAVAILABLE, "orchestrator is shutting down");
    return;
  }
  Net__RegisterRequest *rr = net__register_request__unpack(NULL, len, msg);
  if (!rr) {
    net_grpc_finish(req, NET_GRPC_INTERNAL, "grpc: error unmarshalling request");
    return;
  }
  const char *peer = net_req_peer(req);
  const char *secret = rr->secret ? rr->secret : "";
  int local = secret_owner(m, secret);
  if (local == SECRET_NONE) {
    LOGE("Transcoder registration refused: invalid secret peer=%s", peer ? peer : "?");
    net__register_request__free_unpacked(rr, NULL);
    net_grpc_finish(req, NET_GRPC_UNKNOWN, "invalid secret");
    return;
  }
  if (rr->capacity <= 0) {
    LOGE("Transcoder registration refused: zero capacity peer=%s", peer ? peer : "?");
    net__register_request__free_unpacked(rr, NULL);
    net_grpc_finish(req, NET_GRPC_UNKNOWN, "zero capacity");
    return;
  }
  pool_tc_t *tc = calloc(1, sizeof *tc);
  if (!tc) {
    net__register_request__free_unpacked(rr, NULL);
    net_grpc_finish(req, NET_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  tc->m = m;
  tc->req = req;
  tc->serial = ++m->tc_serial;
  tc->capacity = rr->capacity;
  tc->local = local;
  snprintf(tc->peer, sizeof tc->peer, "%s", peer ? peer : "?");
  peer_ip(peer, tc->peer_ip, sizeof tc->peer_ip);
  if (rr->capabilities) {
    size_t n = LP_MIN(rr->capabilities->n_bitstring, (size_t)POOL_CAP_WORDS);
    memcpy(tc->bits, rr->capabilities->bitstring, n * sizeof(uint64_t));
    tc->nbits = n;
    if (rr->capabilities->version)
      snprintf(tc->version, sizeof tc->version, "%s", rr->capabilities->version);
  } else {
    tc->bits[0] = POOL_DEFAULT_CAPS;
    tc->nbits = 1;
  }
  net__register_request__free_unpacked(rr, NULL);
  tc->next = m->tcs;
  m->tcs = tc;
  net_req_set_data(req, tc);
  net_req_on_abort(req, on_tc_abort, tc);
  dispatch_waiting(m);
  char who[32] = "";
  if (local >= 0) snprintf(who, sizeof who, " localWorker=%d", local);
  LOGI("Got a RegisterTranscoder request from transcoder=%s capacity=%" PRId64 " version=%s%s",
       tc->peer, tc->capacity, tc->version[0] ? tc->version : "?", who);
  notify_change(m);
}

/* How well a transcoder suits a task's target: 0 best, then 1 and 2; -1 never. */
static int target_rank(int target, const pool_tc_t *tc) {
  switch (target) {
  case POOL_TARGET_ANY: return 0;
  case POOL_TARGET_REMOTE: return tc->local < 0 ? 0 : -1;
  case POOL_TARGET_LOCAL: return tc->local >= 0 ? 0 : 1;
  default: /* local worker `target`, another local worker, then anyone */
    return tc->local == target ? 0 : tc->local >= 0 ? 1 : 2;
  }
}

/* Sticky first; then, among the transcoders that suit the target best and have a free slot, the
 * compatible one with the most free slots (capacity minus sessions); ties go to the lower load
 * factor. */
static int select_tc(pool_manager_t *m, pool_task_t *t, pool_tc_t **out) {
  pool_sess_t *s = sess_find(m, t->session_id);
  if (s && s->tc && !s->tc->draining) {
    *out = s->tc;
    return 0;
  }
  const Net__Capabilities *job = t->sd->capabilities;
  pool_tc_t *best = NULL;
  int best_rank = 0;
  bool any_compatible = false;
  for (pool_tc_t *tc = m->tcs; tc; tc = tc->next) {
    int rank = target_rank(t->target, tc);
    if (!tc->req || tc->draining || rank < 0 ||
        !pool_caps_compatible(job, tc->bits, tc->nbits, tc->version))
      continue;
    any_compatible = true;
    int64_t free_slots = tc->capacity - tc->load;
    if (free_slots <= 0) continue;
    if (!best || rank < best_rank) {
      best = tc;
      best_rank = rank;
      continue;
    }
    if (rank > best_rank) continue;
    int64_t best_free = best->capacity - best->load;
    /* load/capacity compared without division */
    if (free_slots > best_free ||
        (free_slots == best_free && tc->load * best->capacity < best->load * tc->capacity))
      best = tc;
  }
  if (!any_compatible) return LP_EUNSUPP;
  if (!best) return LP_ECAPACITY;
  s = calloc(1, sizeof *s);
  if (!s || !(s->id = strdup(t->session_id))) {
    free(s);
    return LP_ENOMEM;
  }
  s->tc = best;
  s->next = m->sessions;
  m->sessions = s;
  best->load++;
  *out = best;
  return 0;
}

/* ---- tasks ------------------------------------------------------------------------------------
 */

static void on_task_closed(uv_handle_t *h) {
  pool_task_t *t = h->data;
  pool_result_free(&t->pending);
  free(t);
}

static void task_release(pool_task_t *t) {
  pool_manager_t *m = t->m;
  for (pool_task_t **pp = &m->tasks; *pp; pp = &(*pp)->next)
    if (*pp == t) {
      *pp = t->next;
      break;
    }
  free(t->session_id);
  free(t->input);
  if (t->sd) net__seg_data__free_unpacked(t->sd, NULL);
  t->session_id = NULL;
  t->input = NULL;
  t->sd = NULL;
  uv_close((uv_handle_t *)&t->timer, on_task_closed);
}

static void task_finish(pool_task_t *t, pool_result_t *res) {
  if (t->finished) return;
  t->finished = true;
  uv_timer_stop(&t->timer);
  res->attempts = t->attempts;
  if (t->served_ns && t->upload_ns)
    res->hop_ns = (t->served_ns - t->sent_ns) + (lp_now_ns() - t->upload_ns);
  t->done(res, t->arg);
  pool_result_free(res);
  task_release(t);
}

static void task_fail(pool_task_t *t, int err, const char *text) {
  pool_result_t r;
  memset(&r, 0, sizeof r);
  r.err = err;
  copy_text(r.error, sizeof r.error, text);
  task_finish(t, &r);
}

static void on_task_timer(uv_timer_t *h) {
  pool_task_t *t = h->data;
  if (t->has_pending) {
    t->has_pending = false;
    pool_result_t r = t->pending;
    memset(&t->pending, 0, sizeof t->pending);
    task_finish(t, &r);
    return;
  }
  /* A transcoder that misses the deadline is treated as broken (go does the same); the gateway
   * has moved on, so the segment is not retried. */
  pool_tc_t *tc = t->tc;
  LOGE("Remote transcoder took too long taskId=%" PRId64 " sessionID=%s", t->id, t->session_id);
  sess_unmap(t->m, t->session_id);
  task_fail(t, LP_ETIMEDOUT, "Remote transcoder took too long");
  if (tc) tc_drop(tc, "Remote transcoder took too long");
}

/* Finishes the task from the loop a moment later (callbacks never run inside submit). */
static void task_defer(pool_task_t *t, int err, const char *text) {
  memset(&t->pending, 0, sizeof t->pending);
  t->pending.err = err;
  copy_text(t->pending.error, sizeof t->pending.error, text);
  t->has_pending = true;
  uv_timer_start(&t->timer, on_task_timer, 0, 0);
}

/* Some local worker is not registered now (starting, or restarting after a crash). */
static bool local_missing(const pool_manager_t *m) {
  uint64_t seen = 0;
  int live = 0;
  for (const pool_tc_t *tc = m->tcs; tc; tc = tc->next)
    if (tc->req && !tc->draining && tc->local >= 0 && tc->local < 64 &&
        !(seen & (1ull << tc->local))) {
      seen |= 1ull << tc->local;
      live++;
    }
  return live < LP_MIN(m->n_local, 64);
}

static void task_dispatch(pool_task_t *t) {
  pool_manager_t *m = t->m;
  for (;;) {
    pool_tc_t *tc = NULL;
    int rc = select_tc(m, t, &tc);
    if (rc) {
      const char *text = rc == LP_EUNSUPP  ? "no transcoders can provide requested capabilities"
                         : rc == LP_ENOMEM ? "out of memory"
                                           : "no transcoders available";
      task_defer(t, rc, text);
      /* A segment nobody has tried yet waits a moment for a local worker that is on its way
       * (the deferred outcome comes later, unless a registration dispatches it first); one
       * whose transcoder died under it does not (it may be what killed the worker). */
      if (rc != LP_ENOMEM && t->attempts == 0 && t->target != POOL_TARGET_REMOTE &&
          local_missing(m)) {
        t->waiting = true;
        uv_timer_start(&t->timer, on_task_timer, POOL_LOCAL_WAIT_MS, 0);
        LOGV(LP_V_DEBUG, "Segment waits for a local worker sessionID=%s", t->session_id);
      }
      return;
    }
    t->attempts++;
    t->id = random_id();
    t->tc = tc;
    t->receiving = false;
    char url[512];
    snprintf(url, sizeof url, "%s%s%" PRId64 "-%s.tempfile", m->service_uri, POOL_INPUT_PREFIX,
             t->id, t->token);
    Net__NotifySegment ns = NET__NOTIFY_SEGMENT__INIT;
    ns.url = url;
    ns.segdata = t->sd;
    ns.taskid = t->id;
    ns.profiles.data = (uint8_t *)"invalid";
    ns.profiles.len = 7;
    ns.orchid = m->orch_id;
    size_t len = net__notify_segment__get_packed_size(&ns);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
      task_defer(t, LP_ENOMEM, "out of memory");
      return;
    }
    net__notify_segment__pack(&ns, buf);
    t->sent_ns = lp_now_ns();
    t->served_ns = t->upload_ns = 0;
    rc = net_grpc_send(tc->req, buf, len);
    free(buf);
    if (rc == 0) {
      LOGV(LP_V_DEBUG,
           "Sent segment to transcoder=%s localWorker=%d taskId=%" PRId64
           " sessionID=%s attempt=%d",
           tc->peer, tc->local, t->id, t->session_id, t->attempts);
      uv_timer_start(&t->timer, on_task_timer, t->timeout_ms, 0);
      return;
    }
    /* A failed send is fatal for that transcoder; the loop picks another one. tc_drop would
     * re-dispatch this task itself, so detach it first. */
    t->tc = NULL;
    tc_drop(tc, "send failed");
    if (t->attempts >= POOL_MAX_ATTEMPTS) {
      task_defer(t, LP_ECAPACITY, "no transcoders available");
      return;
    }
  }
}

/* The SegData a transcoder gets (spec §6.2): the gateway's, without storage and signature, a zero
 * hash, the junk profiles string and the duration defaulted. */
static Net__SegData *segdata_for_transcoder(const Net__SegData *in) {
  Net__SegData c = *in;
  static const uint8_t zero_hash[32];
  c.n_storage = 0;
  c.storage = NULL;
  c.hash.data = (uint8_t *)zero_hash;
  c.hash.len = sizeof zero_hash;
  c.sig.data = NULL;
  c.sig.len = 0;
  c.profiles.data = (uint8_t *)"invalid";
  c.profiles.len = 7;
  if (c.duration <= 0) c.duration = 2000;
  size_t len = net__seg_data__get_packed_size(&c);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) return NULL;
  net__seg_data__pack(&c, buf);
  Net__SegData *out = net__seg_data__unpack(NULL, len, buf);
  free(buf);
  return out;
}

int pool_manager_submit(pool_manager_t *m, const Net__SegData *sd, const char *session_id,
                        const uint8_t *input, size_t len, pool_done_fn done, void *arg) {
  return pool_manager_submit_to(m, sd, session_id, POOL_TARGET_ANY, input, len, done, arg);
}

int pool_manager_submit_to(pool_manager_t *m, const Net__SegData *sd, const char *session_id,
                           int target, const uint8_t *input, size_t len, pool_done_fn done,
                           void *arg) {
  if (!m || !sd || !done || target < POOL_TARGET_REMOTE) return LP_EINVAL;
  size_t np;
  pool_segdata_profiles(sd, &np);
  if (np == 0) return LP_EINVAL;
  if (!session_id) session_id = sd->auth_token ? sd->auth_token->session_id : NULL;
  if (!session_id || !session_id[0]) return LP_EINVAL;
  pool_task_t *t = calloc(1, sizeof *t);
  if (!t) return LP_ENOMEM;
  t->m = m;
  t->target = target;
  t->done = done;
  t->arg = arg;
  t->n_profiles = np;
  t->session_id = strdup(session_id);
  t->sd = segdata_for_transcoder(sd);
  t->input = malloc(len ? len : 1);
  uint8_t tok[POOL_TOKEN_HEX / 2];
  if (!t->session_id || !t->sd || !t->input || RAND_bytes(tok, sizeof tok) != 1) {
    free(t->session_id);
    free(t->input);
    if (t->sd) net__seg_data__free_unpacked(t->sd, NULL);
    free(t);
    return LP_ENOMEM;
  }
  lp_hex_encode(tok, sizeof tok, t->token);
  if (len) memcpy(t->input, input, len);
  t->input_len = len;
  uint64_t dur = (uint64_t)t->sd->duration;
  t->timeout_ms = LP_MAX(m->min_timeout_ms, 4 * dur);
  uv_timer_init(m->loop, &t->timer);
  t->timer.data = t;
  t->next = m->tasks;
  m->tasks = t;
  task_dispatch(t);
  return 0;
}

int pool_manager_end_session(pool_manager_t *m, const char *session_id) {
  pool_sess_t *s = session_id ? sess_find(m, session_id) : NULL;
  if (!s) return LP_ENOENT;
  pool_tc_t *tc = s->tc;
  if (tc && tc->req) {
    Net__AuthToken tok = NET__AUTH_TOKEN__INIT;
    tok.session_id = (char *)session_id;
    Net__SegData sd = NET__SEG_DATA__INIT;
    sd.auth_token = &tok;
    Net__NotifySegment ns = NET__NOTIFY_SEGMENT__INIT;
    ns.url = "";
    ns.segdata = &sd;
    ns.profiles.data = (uint8_t *)"invalid";
    ns.profiles.len = 7;
    ns.orchid = m->orch_id;
    uint8_t buf[512];
    size_t len = net__notify_segment__get_packed_size(&ns);
    if (len <= sizeof buf) {
      net__notify_segment__pack(&ns, buf);
      if (net_grpc_send(tc->req, buf, len))
        LOGW("Could not send the session teardown to transcoder=%s sessionID=%s", tc->peer,
             session_id);
    }
  }
  sess_unmap(m, session_id);
  return 0;
}

/* ---- input hosting ------------------------------------------------------------------------------
 */

static void on_input(net_req_t *req, void *arg) {
  pool_manager_t *m = arg;
  const char *path = net_req_path(req);
  size_t plen = strlen(POOL_INPUT_PREFIX);
  if (!m || strncmp(path, POOL_INPUT_PREFIX, plen) != 0) {
    net_resp_error(req, 404, "404 page not found");
    return;
  }
  const char *name = path + plen;
  char *endp;
  long long id = strtoll(name, &endp, 10);
  pool_task_t *t = NULL;
  if (*endp == '-' && strlen(endp + 1) == POOL_TOKEN_HEX + strlen(".tempfile") &&
      strcmp(endp + 1 + POOL_TOKEN_HEX, ".tempfile") == 0)
    t = task_find(m, (int64_t)id);
  if (!t || !lp_consttime_eq(endp + 1, POOL_TOKEN_HEX, t->token, POOL_TOKEN_HEX)) {
    net_resp_error(req, 404, "404 page not found");
    return;
  }
  if (!t->served_ns) t->served_ns = lp_now_ns();
  net_header_t h[] = {{"Content-Type", "video/mp2t"}};
  net_resp_send(req, 200, h, 1, t->input, t->input_len);
}

/* ---- result uploads ---------------------------------------------------------------------------
 */

typedef struct collect {
  pool_result_t *r;
  size_t cap;
  char err[128];
} collect_t;

static int on_part(const pool_part_t *p, void *arg) {
  collect_t *c = arg;
  pool_result_t *r = c->r;
  if (p->pixels) {
    int64_t px;
    if (pool_parse_i64(p->pixels, &px)) {
      snprintf(c->err, sizeof c->err, "Invalid Pixels");
      return LP_EINVAL;
    }
    if (r->n == c->cap) {
      size_t nc = c->cap ? 2 * c->cap : 4;
      pool_rendition_t *nr = realloc(r->renditions, nc * sizeof *nr);
      if (!nr) return LP_ENOMEM;
      r->renditions = nr;
      c->cap = nc;
    }
    pool_rendition_t *rd = &r->renditions[r->n];
    memset(rd, 0, sizeof *rd);
    rd->data = malloc(p->len ? p->len : 1);
    if (!rd->data) return LP_ENOMEM;
    memcpy(rd->data, p->body, p->len);
    rd->len = p->len;
    rd->pixels = px;
    r->n++;
    return 0;
  }
  if (strcasecmp(p->content_type, "application/octet-stream") == 0) {
    if (r->n == 0) {
      snprintf(c->err, sizeof c->err, "Unknown perceptual hash");
      return LP_EINVAL;
    }
    pool_rendition_t *rd = &r->renditions[r->n - 1];
    free(rd->phash);
    rd->phash = malloc(p->len ? p->len : 1);
    if (!rd->phash) return LP_ENOMEM;
    memcpy(rd->phash, p->body, p->len);
    rd->phash_len = p->len;
  }
  return 0;
}

static void upload_unlink(pool_upload_t *u) {
  if (!u->m) return;
  for (pool_upload_t **pp = &u->m->uploads; *pp; pp = &(*pp)->next)
    if (*pp == u) {
      *pp = u->next;
      break;
    }
}

/* A transcoder-reported failure: the gateway gets the text; the session's mapping is freed so
 * its next segment may go elsewhere (go frees it on any task error). */
static void task_reported_error(pool_task_t *t, int err, const char *text) {
  sess_unmap(t->m, t->session_id);
  task_fail(t, err, text);
}

static void on_upload_body(net_req_t *req, int err, void *arg) {
  pool_upload_t *u = arg;
  pool_manager_t *m = u->m;
  upload_unlink(u);
  pool_task_t *t = m ? task_find(m, u->task_id) : NULL;
  if (err == LP_ECANCELED) {
    net_resp_end(req, NULL, 0);
    if (t) t->receiving = false; /* the T may try again, or the timeout ends the task */
    free(u);
    return;
  }
  if (!m) {
    net_resp_error(req, 503, "orchestrator is shutting down");
    free(u);
    return;
  }
  if (err == LP_ERANGE) {
    net_resp_error(req, 413, "Request Entity Too Large");
    if (t) task_reported_error(t, LP_EPROTO, "transcoded segment too large");
    free(u);
    return;
  }
  size_t len;
  const uint8_t *body = net_req_body(req, &len);
  if (!t) {
    /* Timed out or retried elsewhere meanwhile: dropped, as go drops unknown tasks. */
    net_resp_send(req, 200, NULL, 0, "OK", 2);
    free(u);
    return;
  }
  if (u->is_error) {
    char text[POOL_MAX_ERROR_BODY + 1];
    size_t n = LP_MIN(len, (size_t)POOL_MAX_ERROR_BODY);
    memcpy(text, body, n);
    text[n] = 0;
    lp_strtrim(text);
    net_resp_send(req, 200, NULL, 0, "OK", 2);
    if (strcmp(text, POOL_ERR_DRAINING) == 0 && t->tc) {
      tc_set_draining(t->tc);
      t->tc = NULL;
      uv_timer_stop(&t->timer);
      LOGI("Transcoder is draining; retrying the segment elsewhere sessionID=%s", t->session_id);
      if (t->attempts < POOL_MAX_ATTEMPTS)
        task_dispatch(t);
      else
        task_fail(t, LP_ECAPACITY, "no transcoders available");
      free(u);
      return;
    }
    LOGW("Transcoder reported an error taskId=%" PRId64 " sessionID=%s err=\"%s\"", t->id,
         t->session_id, text);
    task_reported_error(t, LP_EMEDIA, text[0] ? text : "transcoding failed");
    free(u);
    return;
  }
  pool_result_t r;
  memset(&r, 0, sizeof r);
  r.decoded_pixels = u->pixels;
  collect_t c = {&r, 0, ""};
  char perr[128] = "";
  int rc = pool_multipart_parse(body, len, u->boundary, m->max_part, 4 * MEDIA_MAX_OUTPUTS + 4,
                                on_part, &c, perr, sizeof perr);
  free(u);
  if (rc) {
    const char *why = c.err[0] ? c.err : perr[0] ? perr : lp_strerror(rc);
    net_resp_error(req, rc == LP_ERANGE ? 413 : 500, why);
    pool_result_free(&r);
    task_reported_error(t, LP_EPROTO, why);
    return;
  }
  net_resp_send(req, 200, NULL, 0, "OK", 2);
  if (r.n != t->n_profiles) {
    LOGE("Transcoder returned %zu renditions for %zu profiles taskId=%" PRId64, r.n, t->n_profiles,
         t->id);
    pool_result_free(&r);
    task_reported_error(t, LP_EPROTO, "segment / profile mismatch");
    return;
  }
  for (size_t i = 0; i < r.n; i++)
    if (r.renditions[i].len < POOL_MIN_RENDITION) {
      pool_result_free(&r);
      task_reported_error(t, LP_EPROTO, "invalid transcoded segment: too short");
      return;
    }
  task_finish(t, &r);
}

static void on_results(net_req_t *req, void *arg) {
  pool_manager_t *m = arg;
  if (!m) {
    net_resp_error(req, 503, "orchestrator is shutting down");
    return;
  }
  const char *auth = net_req_header(req, "Authorization");
  if (!auth || strcmp(auth, POOL_AUTH_HEADER_VALUE) != 0) {
    net_resp_error(req, 401, "Unauthorized");
    return;
  }
  const char *cred = net_req_header(req, "Credentials");
  int owner = cred ? secret_owner(m, cred) : SECRET_NONE;
  if (owner == SECRET_NONE) {
    LOGW("Result upload with wrong credentials peer=%s", net_req_peer(req));
    net_resp_error(req, 401, "Unauthorized");
    return;
  }
  const char *down = net_req_header(req, POOL_DEVICES_DOWN_HEADER);
  if (down && owner >= 0 && m->on_devices) m->on_devices(m, owner, down, m->arg);
  char type[128], boundary[POOL_BOUNDARY_MAX + 1];
  const char *ct = net_req_header(req, "Content-Type");
  if (!ct || pool_mime_parse(ct, type, sizeof type, boundary, sizeof boundary)) {
    net_resp_error(req, 415, "mime: no media type");
    return;
  }
  int64_t task_id;
  if (pool_parse_i64(net_req_header(req, "TaskId"), &task_id)) {
    net_resp_error(req, 400, "Invalid Task ID");
    return;
  }
  pool_task_t *t = task_find(m, task_id);
  if (t && t->tc) {
    char ip[64];
    peer_ip(net_req_peer(req), ip, sizeof ip);
    /* local workers share the loopback address; their secrets tell them apart */
    if (strcmp(ip, t->tc->peer_ip) != 0 || owner != t->tc->local) {
      LOGW("Result upload for a task of another transcoder taskId=%" PRId64 " peer=%s", task_id,
           net_req_peer(req));
      net_resp_error(req, 403, "Forbidden");
      return;
    }
  }
  bool is_error = strcmp(type, POOL_ERROR_CONTENT_TYPE) == 0;
  int64_t pixels = 0;
  if (!is_error && pool_parse_i64(net_req_header(req, "Pixels"), &pixels)) {
    net_resp_error(req, 400, "Invalid Pixels");
    return;
  }
  if (!is_error && strcmp(type, "multipart/mixed") != 0) {
    /* Accepted and ignored, as go does: the task runs into its timeout. */
    net_resp_send(req, 200, NULL, 0, "OK", 2);
    return;
  }
  if (!is_error && !boundary[0]) {
    net_resp_error(req, 500, "multipart: boundary is empty");
    if (t) task_reported_error(t, LP_EPROTO, "multipart: boundary is empty");
    return;
  }
  if (!t || t->receiving) {
    /* Unknown (timed out, retried elsewhere) or a duplicate: dropped. */
    net_resp_send(req, 200, NULL, 0, "OK", 2);
    return;
  }
  pool_upload_t *u = calloc(1, sizeof *u);
  if (!u) {
    net_resp_error(req, 500, "out of memory");
    return;
  }
  u->m = m;
  u->task_id = task_id;
  u->is_error = is_error;
  u->pixels = pixels;
  snprintf(u->boundary, sizeof u->boundary, "%s", boundary);
  u->next = m->uploads;
  m->uploads = u;
  t->receiving = true;
  t->upload_ns = lp_now_ns();
  size_t max = is_error ? POOL_MAX_ERROR_BODY : m->max_result;
  if (net_req_read_body(req, max, on_upload_body, u)) {
    upload_unlink(u);
    free(u);
    t->receiving = false;
    net_resp_error(req, 500, "could not read the body");
  }
}

/* ---- jobs from engine profiles, and from other threads ---- */

int pool_manager_submit_job(pool_manager_t *m, const pool_job_t *job, pool_done_fn done,
                            void *arg) {
  if (!m || !job || !job->session_id || !job->n_profiles || !job->profiles) return LP_EINVAL;
  Net__VideoProfile *vp = calloc(job->n_profiles, sizeof *vp);
  Net__VideoProfile **pp = calloc(job->n_profiles, sizeof *pp);
  if (!vp || !pp) {
    free(vp);
    free(pp);
    return LP_ENOMEM;
  }
  for (size_t i = 0; i < job->n_profiles; i++) {
    pool_profile_to_wire(&job->profiles[i], &vp[i]);
    pp[i] = &vp[i];
  }
  Net__AuthToken tok = NET__AUTH_TOKEN__INIT;
  tok.session_id = (char *)job->session_id;
  Net__SegParameters clip = NET__SEG_PARAMETERS__INIT;
  Net__SegData sd = NET__SEG_DATA__INIT;
  if (job->manifest_id) {
    sd.manifestid.data = (uint8_t *)job->manifest_id;
    sd.manifestid.len = strlen(job->manifest_id);
  }
  sd.seq = job->seq;
  sd.duration = job->duration_ms;
  sd.capabilities = (Net__Capabilities *)job->caps;
  sd.auth_token = &tok;
  /* The list a transcoder reads first, and the one that carries every field. */
  sd.n_fullprofiles3 = job->n_profiles;
  sd.fullprofiles3 = pp;
  if (job->clip_from_ms || job->clip_to_ms) {
    clip.from = job->clip_from_ms;
    clip.to = job->clip_to_ms;
    sd.segment_parameters = &clip;
  }
  sd.forcesessionreinit = job->force_reinit;
  int rc = pool_manager_submit(m, &sd, job->session_id, job->input, job->input_len, done, arg);
  free(vp);
  free(pp);
  return rc;
}

static void call_complete(pool_call_t *c) {
  pthread_mutex_lock(&c->mu);
  c->done = true;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static void on_call_done(pool_result_t *res, void *arg) {
  pool_call_t *c = arg;
  /* The renditions move to the waiting thread. */
  *c->out = *res;
  res->renditions = NULL;
  res->n = 0;
  call_complete(c);
}

static void call_fail(pool_call_t *c, int err, const char *text) {
  memset(c->out, 0, sizeof *c->out);
  c->out->err = err;
  copy_text(c->out->error, sizeof c->out->error, text);
  call_complete(c);
}

static void on_calls(uv_async_t *h) {
  pool_manager_t *m = h->data;
  pthread_mutex_lock(&m->calls_mu);
  pool_call_t *list = m->calls;
  m->calls = NULL;
  pthread_mutex_unlock(&m->calls_mu);
  while (list) {
    pool_call_t *c = list;
    list = c->next;
    if (!c->job) {
      pool_manager_end_session(m, c->session_id);
      free(c->session_id);
      free(c);
      continue;
    }
    int rc = pool_manager_submit_job(m, c->job, on_call_done, c);
    if (rc) call_fail(c, rc, lp_strerror(rc));
  }
}

static bool call_queue(pool_manager_t *m, pool_call_t *c) {
  pthread_mutex_lock(&m->calls_mu);
  bool ok = !m->closing;
  if (ok) {
    c->next = m->calls;
    m->calls = c;
  }
  pthread_mutex_unlock(&m->calls_mu);
  if (ok) uv_async_send(&m->async);
  return ok;
}

int pool_manager_transcode_wait(pool_manager_t *m, const pool_job_t *job, pool_result_t *out) {
  pool_call_t c;
  memset(&c, 0, sizeof c);
  c.job = job;
  c.out = out;
  memset(out, 0, sizeof *out);
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, NULL);
  if (!call_queue(m, &c)) {
    out->err = LP_ECANCELED;
    snprintf(out->error, sizeof out->error, "orchestrator is shutting down");
  } else {
    pthread_mutex_lock(&c.mu);
    while (!c.done) pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
  }
  pthread_mutex_destroy(&c.mu);
  pthread_cond_destroy(&c.cv);
  return out->err;
}

void pool_manager_end_session_async(pool_manager_t *m, const char *session_id) {
  pool_call_t *c = calloc(1, sizeof *c);
  if (!c || !session_id || !(c->session_id = strdup(session_id))) {
    free(c);
    return;
  }
  if (!call_queue(m, c)) {
    free(c->session_id);
    free(c);
  }
}

/* ---- manager ----------------------------------------------------------------------------------
 */

int pool_manager_new(uv_loop_t *loop, net_server_t *srv, const pool_manager_opts_t *opts,
                     pool_manager_t **out) {
  *out = NULL;
  if (!loop || !srv || !opts || !opts->secret || !opts->secret[0]) return LP_EINVAL;
  pool_manager_t *m = calloc(1, sizeof *m);
  if (!m) return LP_ENOMEM;
  m->loop = loop;
  m->srv = srv;
  pthread_mutex_init(&m->calls_mu, NULL);
  uv_async_init(loop, &m->async, on_calls);
  m->async.data = m;
  m->secret = strdup(opts->secret);
  bool local_ok = true;
  if (opts->n_local > 0) {
    m->local_secrets = calloc((size_t)opts->n_local, sizeof *m->local_secrets);
    local_ok = m->local_secrets != NULL;
    for (int i = 0; local_ok && i < opts->n_local; i++) {
      if (!opts->local_secrets[i] || !opts->local_secrets[i][0]) {
        pool_manager_free(m);
        return LP_EINVAL;
      }
      local_ok = (m->local_secrets[i] = strdup(opts->local_secrets[i])) != NULL;
      if (local_ok) m->n_local = i + 1;
    }
  }
  if (opts->service_uri) {
    m->service_uri = strdup(opts->service_uri);
  } else {
    char b[64];
    snprintf(b, sizeof b, "%s://127.0.0.1:%d", net_server_is_tls(srv) ? "https" : "http",
             net_server_port(srv));
    m->service_uri = strdup(b);
  }
  m->orch_id = strdup(opts->orch_id ? opts->orch_id : "offchain");
  m->max_part = opts->max_part_bytes ? opts->max_part_bytes : (size_t)48 << 20;
  m->max_result = opts->max_result_bytes ? opts->max_result_bytes : (size_t)256 << 20;
  m->min_timeout_ms = opts->min_timeout_ms ? opts->min_timeout_ms : 8000;
  m->on_change = opts->on_change;
  m->on_devices = opts->on_devices;
  m->arg = opts->arg;
  if (!m->secret || !local_ok || !m->service_uri || !m->orch_id) {
    pool_manager_free(m);
    return LP_ENOMEM;
  }
  /* Trailing slashes would double in the input URLs. */
  for (size_t n = strlen(m->service_uri); n && m->service_uri[n - 1] == '/'; n--)
    m->service_uri[n - 1] = 0;
  net_route_opts_t ro = {NET_BODY_STREAM, m->max_result};
  int rc = net_server_grpc(srv, POOL_REGISTER_METHOD, 0, on_register, m);
  if (!rc) rc = net_server_route(srv, POOL_RESULTS_PATH, false, &ro, on_results, m);
  if (!rc) rc = net_server_route(srv, POOL_INPUT_PREFIX, true, NULL, on_input, m);
  if (rc) {
    pool_manager_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

static void on_mgr_closed(uv_handle_t *h) {
  pool_manager_t *m = h->data;
  pthread_mutex_destroy(&m->calls_mu);
  free(m);
}

void pool_manager_free(pool_manager_t *m) {
  if (!m) return;
  pthread_mutex_lock(&m->calls_mu);
  m->closing = true;
  pool_call_t *calls = m->calls;
  m->calls = NULL;
  pthread_mutex_unlock(&m->calls_mu);
  while (calls) {
    pool_call_t *c = calls;
    calls = c->next;
    if (c->job) {
      call_fail(c, LP_ECANCELED, "orchestrator is shutting down");
    } else {
      free(c->session_id);
      free(c);
    }
  }
  /* The server outlives us: its routes now answer "shutting down". */
  if (m->srv) {
    net_server_grpc(m->srv, POOL_REGISTER_METHOD, 0, on_register, NULL);
    net_route_opts_t ro = {NET_BODY_STREAM, 0};
    net_server_route(m->srv, POOL_RESULTS_PATH, false, &ro, on_results, NULL);
    net_server_route(m->srv, POOL_INPUT_PREFIX, true, NULL, on_input, NULL);
  }
  for (pool_upload_t *u = m->uploads; u; u = u->next) u->m = NULL;
  m->uploads = NULL;
  while (m->tasks) {
    pool_task_t *t = m->tasks;
    if (t->finished) { /* already closing */
      m->tasks = t->next;
      continue;
    }
    task_fail(t, LP_ECANCELED, "orchestrator is shutting down");
  }
  while (m->tcs) {
    pool_tc_t *tc = m->tcs;
    m->tcs = tc->next;
    if (tc->req) {
      net_req_set_data(tc->req, NULL);
      net_grpc_finish(tc->req, NET_GRPC_OK, NULL);
    }
    free(tc);
  }
  while (m->sessions) {
    pool_sess_t *s = m->sessions;
    m->sessions = s->next;
    free(s->id);
    free(s);
  }
  if (m->secret) OPENSSL_cleanse(m->secret, strlen(m->secret));
  free(m->secret);
  for (int i = 0; i < m->n_local; i++) {
    OPENSSL_cleanse(m->local_secrets[i], strlen(m->local_secrets[i]));
    free(m->local_secrets[i]);
  }
  free(m->local_secrets);
  free(m->service_uri);
  free(m->orch_id);
  uv_close((uv_handle_t *)&m->async, on_mgr_closed);
}

int pool_manager_transcoders(const pool_manager_t *m) {
  int n = 0;
  for (const pool_tc_t *tc = m->tcs; tc; tc = tc->next) n += tc->req && !tc->draining;
  return n;
}

int pool_manager_capacity(const pool_manager_t *m) {
  int64_t n = 0;
  for (const pool_tc_t *tc = m->tcs; tc; tc = tc->next)
    if (tc->req && !tc->draining) n += tc->capacity;
  return n > INT32_MAX ? INT32_MAX : (int)n;
}

int pool_manager_load(const pool_manager_t *m) {
  int n = 0;
  for (const pool_sess_t *s = m->sessions; s; s = s->next) n++;
  return n;
}

size_t pool_manager_caps(const pool_manager_t *m, uint64_t *bits, size_t nwords) {
  size_t used = 0;
  for (const pool_tc_t *tc = m->tcs; tc; tc = tc->next) {
    if (!tc->req || tc->draining) continue;
    for (size_t i = 0; i < tc->nbits; i++) {
      if (i < nwords) bits[i] |= tc->bits[i];
      if (tc->bits[i] && i + 1 > used) used = i + 1;
    }
  }
  return used;
}

static bool can_take(const pool_manager_t *m, const Net__Capabilities *job, bool remote_only) {
  for (const pool_tc_t *tc = m->tcs; tc; tc = tc->next)
    if (tc->req && !tc->draining && tc->load < tc->capacity && (!remote_only || tc->local < 0) &&
        pool_caps_compatible(job, tc->bits, tc->nbits, tc->version))
      return true;
  return false;
}

bool pool_manager_can_take(const pool_manager_t *m, const Net__Capabilities *job) {
  return can_take(m, job, false);
}

bool pool_manager_can_take_remote(const pool_manager_t *m, const Net__Capabilities *job) {
  return can_take(m, job, true);
}

void pool_result_free(pool_result_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n; i++) {
    free(r->renditions[i].data);
    free(r->renditions[i].phash);
  }
  free(r->renditions);
  r->renditions = NULL;
  r->n = 0;
}
