/* The orchestrator on the service port: gRPC GetOrchestrator / Ping / EndTranscodingSession,
 * POST /segment and GET /stream (spec/protocol.md §2-§5). All of it runs on the loop thread;
 * only transcoding leaves it, on the sessions' worker threads. */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "lpod/metrics.h"
#include "lpod/net.h"
#include "lpod/pm.h"
#include "orch_int.h"
#include "pay_onchain.h"

/* go-livepeer's MaxSegSize: 300 s at 1 MB/s. */
#define MAX_SEG_BYTES (300u * 1000 * 1000)
/* Most a request's Content-Length may make us allocate before its bytes arrive. */
#define PREALLOC_MAX_BYTES (16u * 1024 * 1024)
/* How long a segment given by URL may take to download (go: 8 s). */
#define URL_FETCH_TIMEOUT_MS 8000
/* The go-livepeer version whose protocol lpod speaks; gateways compare it with their
 * -orchMinLivepeerVersion, which names go-livepeer releases, not lpod's own. */
#define LIVEPEER_COMPAT_VERSION "0.9.1"
#define DEFAULT_SERVICE_PORT "8935"
/* The session count a local worker registers when the capacity model admits the work. */
#define LOCAL_WORKER_UNCAPPED 256

struct orch_node {
  uv_loop_t *loop;
  orch_core_t core;
  net_server_t *srv;
  net_client_t *cli;
  pool_manager_t *pool;   /* standalone orchestrator or -localWorkers: its transcoders */
  pool_supervisor_t *sup; /* -localWorkers: the child transcoder processes */
  bool sup_stopping;
  orch_pool_engine_t pool_eng; /* the engine seam on it */
  bool max_auto;               /* -maxSessions auto: the transcoders' capacity, or the work */
  hw_table_t *table;           /* local transcoding: the devices */
  hw_table_t *wtable;          /* -localWorkers: the devices, probed once for the workers */
  int workers;                 /* -localWorkers: how many */
  /* -localWorkers: what the workers register with, advertised from the start (before they
   * register, and while one restarts: segments wait a moment for it) */
  uint64_t worker_caps[ORCH_CAP_WORDS];
  char (*worker_secrets)[2 * 32 + 1]; /* -localWorkers: each one's pool secret, until written */
  uint32_t *worker_down;  /* -localWorkers: per worker, the table entries it reports quarantined */
  uint32_t wdown;         /* their union: what the capacity model has down */
  orch_media_ctx_t media; /* the media engine's view of them */
  /* Device health (local transcoding with a device beside the CPU): session threads report
   * failed devices through fail_async; the loop quarantines them and re-tests them later. */
  bool dev_watch;           /* the mutexes and handles below are initialised */
  pthread_mutex_t table_mu; /* the loop writes device health under it; sessions copy under it */
  pthread_mutex_t fail_mu;  /* guards failed */
  uint32_t failed;          /* bit i: table entry i failed since the loop last looked */
  uv_async_t fail_async;
  uv_timer_t recheck_timer;
  uv_work_t recheck_req;
  hw_table_t *recheck_copy;
  bool rechecking;
  int in_flight; /* /segment requests not yet finished */
  uv_timer_t drain_timer;
  void (*drained)(void *);
  void *drained_arg;
  bool freeing;
  int closing_handles;
  orch_onchain_t *onchain; /* on-chain payments; NULL offchain */
};

typedef struct seg_ctx {
  orch_node_t *node;
  net_req_t *req;
  orch_seg_req_t sr;
  orch_job_t job;
  uint64_t t_start;   /* request headers in */
  uint64_t t_body;    /* body in (or downloaded) */
  uint64_t t_200;     /* early 200 sent */
  uint64_t t_flush;   /* the answer is ready; it waits for the payment's store commit */
  lp_buf_t body;      /* the request body as it streams in */
  pm_keccak_t keccak; /* of the body, updated chunk by chunk */
  bool url_body;      /* the body is a URL to fetch the segment from */
  bool too_big;
  uint8_t *input; /* a downloaded URL body; NULL when the request body is the input */
  size_t input_len;
  bool aborted;
  /* the response, held until what the payment credited is stored */
  int fail_status; /* 0: a TranscodeResult body */
  char fail_text[256];
  uint8_t *out;
  size_t out_len;
} seg_ctx_t;

static void check_drained(orch_node_t *n);

/* ---- metrics (go-livepeer's names, spec/operators.md §2.2) ----------------------------------- */
static const double transcode_time_buckets[] = {0,   .25, .5,  .75, 1,   1.25, 1.5, 2,
                                                2.5, 3,   3.5, 4,   4.5, 5,    10};
static const double score_buckets[] = {0, .5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 10, 15, 20, 40};
static const double seg_duration_buckets[] = {.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 15, 20, 30};

/* The session limit as operators read it: with local -maxSessions auto, what the capacity
 * model fits of the probe shape. */
static int max_sessions_shown(orch_node_t *n) {
  if (n->max_auto && n->core.admit) return orch_admit_capacity(n->core.admit);
  return orch_sessions_max(n->core.sessions);
}

/* The session and transcoder gauges, read when /metrics renders (orch_node_metrics): a session
 * that ends, a limit the model moves and a remote transcoder's load all show at the next scrape
 * without each of their paths setting them. */
static void metrics_sessions(orch_node_t *n) {
  lp_metric_set(
      lp_metric_gauge("livepeer_current_sessions_total", "Active transcoding sessions", NULL), NULL,
      orch_sessions_count(n->core.sessions));
  lp_metric_set(lp_metric_gauge("livepeer_max_sessions_total", "Session limit", NULL), NULL,
                max_sessions_shown(n));
  if (!n->pool) return;
  lp_metric_set(lp_metric_gauge("livepeer_transcoders_number", "Registered transcoders", NULL),
                NULL, pool_manager_transcoders(n->pool));
  lp_metric_set(lp_metric_gauge("livepeer_transcoders_capacity",
                                "Summed capacity of registered transcoders", NULL),
                NULL, pool_manager_capacity(n->pool));
  lp_metric_set(
      lp_metric_gauge("livepeer_transcoders_load", "Sessions on remote transcoders", NULL), NULL,
      pool_manager_load(n->pool));
}

static void metrics_segment(orch_node_t *n, const orch_job_t *job, int64_t pixels) {
  char profiles[16];
  snprintf(profiles, sizeof profiles, "%zu", job->n_profiles);
  char labels[64];
  snprintf(labels, sizeof labels, "%s,true,unverified", profiles);
  if (job->error[0]) {
    lp_metric_add(lp_metric_counter("livepeer_segment_transcode_failed_total",
                                    "Segments the node answered with an error", "error_code"),
                  job->error, 1);
    return;
  }
  double secs = job->engine_ns / 1e9;
  lp_metric_add(lp_metric_counter("livepeer_segment_transcoded_total", "Segments transcoded",
                                  "profiles,trusted,verified"),
                labels, 1);
  lp_metric_observe(lp_metric_histogram("livepeer_transcode_time_seconds",
                                        "Transcoding time per segment", "profiles,trusted,verified",
                                        transcode_time_buckets,
                                        LP_ARRAY_LEN(transcode_time_buckets)),
                    labels, secs);
  if (secs > 0)
    lp_metric_observe(lp_metric_histogram(
                          "livepeer_transcode_score", "Source duration over transcoding time",
                          "profiles,trusted,verified", score_buckets, LP_ARRAY_LEN(score_buckets)),
                      labels, job->duration_ms / 1000.0 / secs);
  lp_metric_observe(lp_metric_histogram("livepeer_source_segment_duration_seconds",
                                        "Source segment duration", NULL, seg_duration_buckets,
                                        LP_ARRAY_LEN(seg_duration_buckets)),
                    NULL, job->duration_ms / 1000.0);
  lp_metric_add(lp_metric_counter("livepeer_mil_pixels_processed", "Output megapixels", NULL), NULL,
                pixels / 1e6);
}

/* ---- /segment ---------------------------------------------------------------------------------
 */
static void seg_finish(seg_ctx_t *s) {
  orch_node_t *n = s->node;
  if (s->job.out) {
    for (size_t i = 0; i < s->job.n_profiles; i++) free(s->job.out[i].data);
    free(s->job.out);
  }
  /* a first segment that ends unweighed (refused, failed, aborted) gives its held room back */
  if (s->sr.held && n->core.admit) orch_admit_unhold(n->core.admit, s->sr.session_id);
  orch_seg_req_free(&s->sr);
  lp_buf_free(&s->body);
  free(s->input);
  free(s->out);
  free(s);
  n->in_flight--;
  check_drained(n);
}

/* What a segment's log lines carry before its job exists. */
static lp_logctx_t seg_logctx(const seg_ctx_t *s) {
  lp_logctx_t lc = LP_LOGCTX_INIT;
  lc.seq_no = s->sr.sd ? s->sr.sd->seq : -1;
  lc.orch_session_id = s->sr.session_id;
  return lc;
}

static const double payment_buckets[] = {.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1};

/* What taking the payment added to the segment: its checks on the loop, and the wait for its
 * durable commit after the answer was ready (the commit itself overlaps the transcode). */
static void metrics_payment(seg_ctx_t *s) {
  const Net__Payment *p = s->sr.payment;
  if (!p || !p->ticket_params || !p->n_ticket_sender_params) return;
  uint64_t wait = lp_now_ns() - s->t_flush;
  lp_metric_t *h = lp_metric_histogram(
      "lpod_payment_seconds",
      "Time a paid segment spent on its payment: the ticket checks, then the wait for their "
      "durable store",
      "part", payment_buckets, LP_ARRAY_LEN(payment_buckets));
  lp_metric_observe(h, "check", s->sr.pay_ns / 1e9);
  lp_metric_observe(h, "store_wait", wait / 1e9);
  lp_logctx_t lc = seg_logctx(s);
  LOGV_C(LP_V_DEBUG, &lc, "Segment payment tickets=%zu check=%.3fms store_wait=%.3fms",
         p->n_ticket_sender_params, s->sr.pay_ns / 1e6, wait / 1e6);
}

static void seg_flushed(void *arg, int status) {
  seg_ctx_t *s = arg;
  (void)status; /* a failed store write is logged where it failed; the work is done anyway */
  if (s->fail_status) {
    net_resp_error(s->req, s->fail_status, s->fail_text);
  } else {
    metrics_payment(s);
    if (!s->aborted && s->out) net_resp_write(s->req, s->out, s->out_len);
    net_resp_end(s->req, NULL, 0);
  }
  seg_finish(s);
}

/* Winning tickets and nonces the payment brought are stored before the response completes. */
static void seg_respond(seg_ctx_t *s) {
  orch_payments_t *p = &s->node->core.pay;
  s->t_flush = lp_now_ns();
  if (p->flush && p->flush(p->ctx, seg_flushed, s) == LP_EAGAIN) return;
  seg_flushed(s, 0);
}

static void seg_fail(seg_ctx_t *s, int status, const char *text) {
  lp_logctx_t lc = seg_logctx(s);
  LOGE_C(&lc, "Could not process segment status=%d err=%s", status, text);
  s->fail_status = status;
  snprintf(s->fail_text, sizeof s->fail_text, "%s", text);
  seg_respond(s);
}

/* After the early 200: the body is a TranscodeResult, whatever happened. */
static void seg_write_body(seg_ctx_t *s, const uint8_t *body, size_t len) {
  s->out = malloc(len ? len : 1);
  if (s->out) {
    memcpy(s->out, body, len);
    s->out_len = len;
  }
  seg_respond(s);
}

static void seg_write_error(seg_ctx_t *s, const char *error) {
  uint8_t *body = NULL;
  size_t len = 0;
  orch_result_encode_error(s->job.seq, error, s->sr.info, s->sr.info_len, &body, &len);
  seg_write_body(s, body, len);
  free(body);
}

static void seg_transcoded(orch_job_t *job, void *arg) {
  seg_ctx_t *s = arg;
  orch_core_t *c = &s->node->core;
  uint8_t *body = NULL;
  size_t len = 0;
  int64_t pixels = 0;
  lp_logctx_t lc = LP_LOGCTX_INIT;
  lc.seq_no = job->seq;
  lc.orch_session_id = job->session_id;
  lc.manifest_id = job->manifest_id;
  if (orch_result_encode(c, job, s->sr.info, s->sr.info_len, &body, &len, &pixels)) {
    seg_write_error(s, "Internal Server Error");
    return;
  }
  metrics_segment(s->node, job, pixels);
  if (c->admit && orch_admit_segment_done(c->admit, job))
    LOGW_C(&lc, "Stream cannot keep real time; its next segments will be refused");
  if (!job->error[0]) {
    c->pay.debit_fees(c->pay.ctx, s->sr.sender, job->session_id, s->sr.payment->expected_price,
                      pixels);
    /* overhead: everything the orchestrator adds around the engine (body, checks, queueing,
     * storing, encoding the answer), what operators compare across nodes */
    uint64_t total = lp_now_ns() - s->t_start;
    LOGI_C(&lc,
           "Transcoded segment renditions=%zu pixels=%lld took=%.1fms engine=%.1fms "
           "overhead=%.2fms",
           job->n_profiles, (long long)pixels, total / 1e6, job->engine_ns / 1e6,
           (total - LP_MIN(total, job->engine_ns)) / 1e6);
    LOGV_C(LP_V_DEBUG, &lc, "Segment timing body=%.2fms hash=%.2fms queued=%.2fms result=%.2fms",
           (s->t_body - s->t_start) / 1e6, (s->t_200 - s->t_body) / 1e6, job->queued_ns / 1e6,
           (lp_now_ns() - s->t_200 - job->queued_ns - job->engine_ns) / 1e6);
  } else {
    LOGW_C(&lc, "Segment failed err=%s", job->error);
  }
  seg_write_body(s, body, len);
  free(body);
}

/* Without the capacity model (-costAdmission=false) a session still needs a device: the
 * hardware devices share the sessions by a hash of their id (sticky without any state), and the
 * CPU takes them when there is no hardware. */
static int count_placement(const orch_node_t *n, const char *session_id) {
  if (!n->table || n->table->n <= 1) return 0;
  uint32_t h = 2166136261u;
  for (const char *p = session_id; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  return 1 + (int)(h % (uint32_t)(n->table->n - 1));
}

/* digest: keccak256(data) when already known, else NULL. */
static void seg_start_transcode(seg_ctx_t *s, const uint8_t *data, size_t len,
                                const uint8_t *digest) {
  orch_http_err_t e;
  s->t_body = lp_now_ns();
  if (digest ? orch_seg_check_digest(&s->sr, digest, &e)
             : orch_seg_check_hash(&s->sr, data, len, &e)) {
    seg_fail(s, e.status, e.text);
    return;
  }
  /* Gateways stop their upload timer on these headers, so they go out before any transcoding. */
  if (net_resp_start(s->req, 200, NULL, 0, -1)) {
    net_resp_end(s->req, NULL, 0);
    seg_finish(s);
    return;
  }
  s->t_200 = lp_now_ns();
  orch_job_t *j = &s->job;
  const Net__SegData *sd = s->sr.sd;
  snprintf(j->session_id, sizeof j->session_id, "%s", s->sr.session_id);
  snprintf(j->manifest_id, sizeof j->manifest_id, "%.*s", (int)LP_MIN(sd->manifestid.len, 127),
           (const char *)sd->manifestid.data);
  j->seq = sd->seq;
  j->duration_ms = s->sr.duration_ms;
  j->sd = sd;
  j->profiles = s->sr.profiles;
  j->n_profiles = s->sr.n_profiles;
  j->input = data;
  j->input_len = len;
  if (sd->segment_parameters) {
    j->clip_from_ms = sd->segment_parameters->from;
    j->clip_to_ms = sd->segment_parameters->to;
  }
  j->force_reinit = sd->forcesessionreinit;
  j->done = seg_transcoded;
  j->done_arg = s;
  orch_core_t *c = &s->node->core;
  if (c->stopping) {
    seg_write_error(s, "OrchestratorCapped");
    return;
  }
  bool is_new = !orch_sessions_exists(c->sessions, j->session_id);
  char why[160];
  int rc;
  /* with no room on the node's own devices, a remote transcoder may still take a new stream */
  bool spill = is_new && c->spill && pool_manager_can_take_remote(c->spill, sd->capabilities);
  if (!c->admit) {
    j->device = count_placement(s->node, j->session_id);
  } else if ((rc = orch_admit_session(c->admit, j, is_new, spill, why, sizeof why)) != 0) {
    if (rc != LP_ECAPACITY || !spill) {
      seg_write_error(s, why);
      return;
    }
    j->device = -1;
  } else if (!is_new && c->spill && orch_sessions_first_device(c->sessions, j->session_id) < 0) {
    /* the model holds no room for a stream that went to a remote transcoder: it stays with
     * remote transcoders, and fails if none is left rather than run here uncharged */
    j->device = -1;
  }
  rc = orch_sessions_submit(c->sessions, j);
  if (rc && is_new && c->admit) orch_admit_release(c->admit, j->session_id);
  if (rc == LP_ECAPACITY)
    seg_write_error(s, "OrchestratorCapped");
  else if (rc == LP_EAGAIN)
    seg_write_error(s, "OrchestratorBusy");
  else if (rc)
    seg_write_error(s, "ErrTranscoderUnavailable");
}

static void seg_url_fetched(const net_fetch_result_t *res, void *arg) {
  seg_ctx_t *s = arg;
  if (res->err || res->status != 200) {
    LOGE("Error downloading segment status=%ld err=%s", res->status, res->error ? res->error : "");
    seg_fail(s, 400, "BadRequest");
    return;
  }
  s->input = net_fetch_take_body(res, &s->input_len);
  seg_start_transcode(s, s->input ? s->input : (const uint8_t *)"", s->input_len, NULL);
}

static void seg_fetch_url(seg_ctx_t *s, const uint8_t *body, size_t len) {
  char *url = lp_strndup((const char *)body, len);
  if (!url) {
    seg_fail(s, 500, "Internal Server Error");
    return;
  }
  /* Only web URLs: anything else (file://, ...) would read what the node can reach. */
  char *u = lp_strtrim(url);
  if (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0) {
    free(url);
    seg_fail(s, 400, "BadRequest");
    return;
  }
  net_fetch_opts_t fo;
  memset(&fo, 0, sizeof fo);
  fo.url = u;
  fo.insecure = true;
  fo.timeout_ms = URL_FETCH_TIMEOUT_MS;
  fo.max_body_bytes = MAX_SEG_BYTES;
  int rc = net_client_fetch(s->node->cli, &fo, seg_url_fetched, s, NULL);
  free(url);
  if (rc) seg_fail(s, 400, "BadRequest");
}

/* The body is hashed as it arrives, so the 200 can follow its last byte at once. */
static void seg_on_data(net_req_t *r, const uint8_t *data, size_t len, int err, void *arg) {
  seg_ctx_t *s = arg;
  if (err) {
    s->aborted = true;
    net_resp_end(r, NULL, 0);
    seg_finish(s);
    return;
  }
  if (len > 0) {
    if (s->too_big) return;
    if (s->body.len + len > MAX_SEG_BYTES || lp_buf_append(&s->body, data, len)) {
      s->too_big = true;
      lp_buf_free(&s->body);
      return;
    }
    if (!s->url_body) pm_keccak_update(&s->keccak, data, len);
    return;
  }
  if (s->too_big) {
    seg_fail(s, 500, "input bigger than max buffer size");
  } else if (s->url_body) {
    seg_fetch_url(s, s->body.data, s->body.len);
  } else {
    uint8_t digest[PM_HASH_LEN];
    pm_keccak_final(&s->keccak, digest);
    seg_start_transcode(s, s->body.data, s->body.len, digest);
  }
}

static void seg_aborted(net_req_t *r, void *arg) {
  seg_ctx_t *s = arg;
  s->aborted = true;
}

static void handle_segment(net_req_t *r, void *arg) {
  orch_node_t *n = arg;
  seg_ctx_t *s = calloc(1, sizeof *s);
  if (!s) {
    net_resp_error(r, 500, "Internal Server Error");
    return;
  }
  s->node = n;
  s->req = r;
  s->t_start = lp_now_ns();
  n->in_flight++;
  net_req_on_abort(r, seg_aborted, s);
  const char *seg = net_req_header(r, "livepeer-segment");
  const char *pay = net_req_header(r, "livepeer-payment");
  orch_http_err_t e;
  if (orch_seg_check(&n->core, seg, seg ? strlen(seg) : 0, pay, pay ? strlen(pay) : 0, &s->sr,
                     &e)) {
    seg_fail(s, e.status, e.text);
    return;
  }
  const char *ct = net_req_header(r, "content-type");
  s->url_body = ct && strcmp(ct, "application/vnd+livepeer.uri") == 0;
  pm_keccak_init(&s->keccak);
  const char *cl = net_req_header(r, "content-length");
  long long hint = cl ? atoll(cl) : 0;
  /* Room for a typical segment up front; a claimed length is not trusted beyond that. */
  if (hint > 0) lp_buf_reserve(&s->body, (size_t)LP_MIN(hint, (long long)PREALLOC_MAX_BYTES));
  if (net_req_on_data(r, seg_on_data, s)) seg_fail(s, 500, "Internal Server Error");
}

/* ---- GET /stream ------------------------------------------------------------------------------
 */
static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Go matches routes on the unescaped path. */
static char *path_unescape(const char *p) {
  char *out = malloc(strlen(p) + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; p[i]; i++) {
    int hi, lo;
    if (p[i] == '%' && (hi = hexval(p[i + 1])) >= 0 && (lo = hexval(p[i + 2])) >= 0) {
      out[o++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      out[o++] = p[i];
    }
  }
  out[o] = 0;
  return out;
}

static void handle_stream(net_req_t *r, void *arg) {
  orch_node_t *n = arg;
  const char *path = net_req_path(r);
  const char *prefix = "/stream/";
  char *name =
      strncmp(path, prefix, strlen(prefix)) == 0 ? path_unescape(path + strlen(prefix)) : NULL;
  size_t len = 0;
  const uint8_t *data = name ? orch_store_lookup(n->core.store, name, &len) : NULL;
  if (!data) {
    free(name);
    net_resp_error(r, 404, "ErrNotFound");
    return;
  }
  net_header_t h[5];
  size_t nh = 0;
  const char *mime = orch_store_mime(name);
  if (mime[0]) h[nh++] = (net_header_t){"Content-Type", mime};
  h[nh++] = (net_header_t){"Access-Control-Allow-Origin", "*"};
  h[nh++] = (net_header_t){"Access-Control-Expose-Headers", "Content-Length"};
  h[nh++] = (net_header_t){"Cache-Control", "max-age=5"};
  /* Connection is a hop-by-hop header HTTP/2 forbids. */
  if (net_req_http_version(r) == 1) h[nh++] = (net_header_t){"Connection", "keep-alive"};
  net_resp_send(r, 200, h, nh, data, len);
  free(name);
}

/* ---- gRPC -------------------------------------------------------------------------------------
 */
#define GRPC_UNMARSHAL_ERR                                                                         \
  "grpc: error unmarshalling request: proto: cannot parse invalid wire-format data"

typedef struct getorch_ctx {
  orch_node_t *node;
  net_req_t *req;
  Net__OrchestratorRequest *msg;
} getorch_ctx_t;

static void getorch_answer(void *arg) {
  getorch_ctx_t *g = arg;
  orch_node_t *n = g->node;
  net_req_t *r = g->req;
  Net__OrchestratorRequest *req = g->msg;
  free(g);
  uint8_t *out = NULL;
  size_t out_len = 0;
  char err[256];
  if (orch_get_orchestrator(&n->core, req, &out, &out_len, err, sizeof err)) {
    LOGW("GetOrchestrator refused peer=%s err=%s", net_req_peer(r), err);
    net_grpc_finish(r, NET_GRPC_UNKNOWN, err);
  } else {
    LOGV(LP_V_DEBUG, "GetOrchestrator peer=%s", net_req_peer(r));
    net_grpc_reply(r, out, out_len);
  }
  free(out);
  net__orchestrator_request__free_unpacked(req, NULL);
}

static void grpc_get_orchestrator(net_req_t *r, const uint8_t *msg, size_t len, void *arg) {
  orch_node_t *n = arg;
  Net__OrchestratorRequest *req = net__orchestrator_request__unpack(NULL, len, msg);
  if (!req) {
    net_grpc_finish(r, NET_GRPC_INTERNAL, GRPC_UNMARSHAL_ERR);
    return;
  }
  getorch_ctx_t *g = malloc(sizeof *g);
  if (!g) {
    net__orchestrator_request__free_unpacked(req, NULL);
    net_grpc_finish(r, NET_GRPC_INTERNAL, "out of memory");
    return;
  }
  *g = (getorch_ctx_t){n, r, req};
  /* On chain, a sender seen for the first time is looked up before its ticket params can be
   * made; only a request whose signature checks out may cause that read. */
  orch_payments_t *p = &n->core.pay;
  if (p->prepare) {
    uint8_t addr[20];
    char hex[PM_ADDR_HEX_LEN];
    pm_bytes_to_fixed(req->address.data, req->address.len, addr, sizeof addr);
    pm_addr_to_hex(addr, hex);
    if (p->verify_sig(p->ctx, addr, hex, strlen(hex), req->sig.data, req->sig.len) &&
        p->prepare(p->ctx, addr, getorch_answer, g) == LP_EAGAIN)
      return;
  }
  getorch_answer(g);
}

static void grpc_end_session(net_req_t *r, const uint8_t *msg, size_t len, void *arg) {
  orch_node_t *n = arg;
  Net__EndTranscodingSessionRequest *req =
      net__end_transcoding_session_request__unpack(NULL, len, msg);
  if (!req) {
    net_grpc_finish(r, NET_GRPC_INTERNAL, GRPC_UNMARSHAL_ERR);
    return;
  }
  char err[256];
  if (orch_end_session(&n->core, req, err, sizeof err)) {
    net_grpc_finish(r, NET_GRPC_UNKNOWN, err);
  } else {
    /* EndTranscodingSessionResponse is empty. */
    net_grpc_reply(r, (const uint8_t *)"", 0);
  }
  net__end_transcoding_session_request__free_unpacked(req, NULL);
}

static void grpc_ping(net_req_t *r, const uint8_t *msg, size_t len, void *arg) {
  orch_node_t *n = arg;
  Net__PingPong *req = net__ping_pong__unpack(NULL, len, msg);
  if (!req) {
    net_grpc_finish(r, NET_GRPC_INTERNAL, GRPC_UNMARSHAL_ERR);
    return;
  }
  uint8_t *out = NULL;
  size_t out_len = 0;
  if (orch_ping(&n->core, req, &out, &out_len))
    net_grpc_finish(r, NET_GRPC_UNKNOWN, "could not sign");
  else
    net_grpc_reply(r, out, out_len);
  free(out);
  net__ping_pong__free_unpacked(req, NULL);
}

/* ---- node -------------------------------------------------------------------------------------
 */
/* What lpod honours: H.264/HEVC/VP8/VP9 in and out through FFmpeg, MPEG-TS and MP4 output,
 * fractional frame rates, H.264 profiles and GOPs, auth tokens. The storage bits are honoured
 * by fetching URL bodies and answering with our own result URLs (gateways re-upload them).
 * Not advertised: perceptual hashes (14) and clipping (26), which the engine does not do. */
static void node_caps(orch_caps_t *c) {
  static const int caps[] = {
      ORCH_CAP_H264,           ORCH_CAP_MPEGTS,           ORCH_CAP_MP4,
      ORCH_CAP_FRACTIONAL_FPS, ORCH_CAP_STORAGE_DIRECT,   ORCH_CAP_STORAGE_S3,
      ORCH_CAP_STORAGE_GCS,    ORCH_CAP_PROFILE_BASELINE, ORCH_CAP_PROFILE_MAIN,
      ORCH_CAP_PROFILE_HIGH,   ORCH_CAP_PROFILE_CHIGH,    ORCH_CAP_GOP,
      ORCH_CAP_AUTH_TOKEN,     ORCH_CAP_HEVC_DECODE,      ORCH_CAP_HEVC_ENCODE,
      ORCH_CAP_VP8_DECODE,     ORCH_CAP_VP9_DECODE,       ORCH_CAP_VP8_ENCODE,
      ORCH_CAP_VP9_ENCODE,
  };
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < LP_ARRAY_LEN(caps); i++) orch_caps_set(c, caps[i]);
  snprintf(c->version, sizeof c->version, "%s", LIVEPEER_COMPAT_VERSION);
}

/* The port of a service URI ("https://host:port/..."), or NULL for the scheme's default. */
static char *uri_port(const char *uri) {
  const char *host = strstr(uri, "://");
  host = host ? host + 3 : uri;
  const char *end = host + strcspn(host, "/?#");
  const char *colon = NULL;
  if (*host == '[') {
    const char *rb = memchr(host, ']', (size_t)(end - host));
    if (rb && rb + 1 < end && rb[1] == ':') colon = rb + 1;
  } else {
    colon = memchr(host, ':', (size_t)(end - host));
  }
  return colon ? lp_strndup(colon + 1, (size_t)(end - colon - 1)) : NULL;
}

static char *uri_host(const char *uri) {
  const char *host = strstr(uri, "://");
  host = host ? host + 3 : uri;
  if (*host == '[') {
    const char *rb = strchr(host, ']');
    return rb ? lp_strndup(host + 1, (size_t)(rb - host - 1)) : NULL;
  }
  return lp_strndup(host, strcspn(host, ":/?#"));
}

static void node_handle_gone(orch_node_t *n) {
  if (--n->closing_handles > 0) return;
  if (n->dev_watch) {
    pthread_mutex_destroy(&n->table_mu);
    pthread_mutex_destroy(&n->fail_mu);
  }
  free(n);
}

static void node_timer_closed(uv_handle_t *h) { node_handle_gone(h->data); }

static void sessions_closed(void *arg) {
  orch_node_t *n = arg;
  orch_admit_free(n->core.admit);
  n->core.admit = NULL;
  free(n->table);
  free(n->wtable);
  free(n->worker_down);
  n->table = NULL;
  orch_sessions_free(n->core.sessions);
  orch_store_free(n->core.store);
  free(n->core.service_uri);
  orch_onchain_free(n->onchain);
  if (n->dev_watch) {
    n->closing_handles += 2;
    uv_close((uv_handle_t *)&n->fail_async, node_timer_closed);
    uv_close((uv_handle_t *)&n->recheck_timer, node_timer_closed);
  }
  uv_close((uv_handle_t *)&n->drain_timer, node_timer_closed);
}

/* A pooled orchestrator does what its transcoders do: their bits, plus auth tokens, plus what
 * its local workers will register with. */
static void pool_changed(pool_manager_t *m, void *arg) {
  orch_node_t *n = arg;
  orch_caps_t *c = &n->core.caps;
  memset(c->bits, 0, sizeof c->bits);
  orch_caps_set(c, ORCH_CAP_AUTH_TOKEN);
  uint64_t bits[ORCH_CAP_WORDS] = {0};
  pool_manager_caps(m, bits, ORCH_CAP_WORDS);
  for (int i = 0; i < ORCH_CAP_WORDS; i++) c->bits[i] |= bits[i] | n->worker_caps[i];
  /* with the capacity model (local workers) the model decides, not the registered counts */
  if (n->max_auto && !n->core.admit)
    orch_sessions_set_max(n->core.sessions, pool_manager_capacity(m));
  LOGI("Transcoders changed: transcoders=%d capacity=%d maxSessions=%d caps=0x%llx "
       "lpodCaps=0x%llx",
       pool_manager_transcoders(m), pool_manager_capacity(m), max_sessions_shown(n),
       (unsigned long long)c->bits[0], (unsigned long long)c->bits[ORCH_CAP_WORDS - 1]);
}

/* A local worker's result upload listed its quarantined devices: the capacity model places no
 * new stream on a device while some worker has it quarantined, and again once none has. */
static void workers_devices(pool_manager_t *m, int local, const char *down, void *arg) {
  (void)m;
  orch_node_t *n = arg;
  if (!n->wtable || local < 0 || local >= n->workers || !n->worker_down) return;
  n->worker_down[local] = orch_worker_devices_down(n->wtable, n->pool_eng.per_device, local, down);
  uint32_t all = 0;
  for (int i = 0; i < n->workers; i++) all |= n->worker_down[i];
  for (int j = 1; j < n->wtable->n && j < 32; j++) {
    bool now = all & (1u << j), was = n->wdown & (1u << j);
    if (now == was) continue;
    if (n->core.admit) orch_admit_device_down(n->core.admit, j, now);
    if (now)
      LOGW("Devices: local worker %d quarantined %s; new streams go elsewhere", local,
           n->wtable->dev[j].name);
    else
      LOGI("Devices: %s is back in service at the local workers", n->wtable->dev[j].name);
  }
  n->wdown = all;
}

/* The codec capabilities become what the device table's self-tests passed. */
static void caps_from_table(orch_caps_t *c, const hw_table_t *t) {
  static const int codec_caps[] = {ORCH_CAP_H264,
                                   ORCH_CAP_HEVC_DECODE,
                                   ORCH_CAP_HEVC_ENCODE,
                                   ORCH_CAP_VP8_DECODE,
                                   ORCH_CAP_VP9_DECODE,
                                   ORCH_CAP_VP8_ENCODE,
                                   ORCH_CAP_VP9_ENCODE,
                                   HW_CAP_H264_DECODE_444_8,
                                   HW_CAP_H264_DECODE_422_8,
                                   HW_CAP_H264_DECODE_444_10,
                                   HW_CAP_H264_DECODE_422_10,
                                   HW_CAP_H264_DECODE_420_10};
  for (size_t i = 0; i < LP_ARRAY_LEN(codec_caps); i++)
    c->bits[codec_caps[i] / 64] &= ~(1ull << (codec_caps[i] % 64));
  int caps[32];
  size_t n = hw_table_capabilities(t, caps, LP_ARRAY_LEN(caps));
  for (size_t i = 0; i < n; i++)
    if (caps[i] < 64 * ORCH_CAP_WORDS) orch_caps_set(c, caps[i]);
}

/* Local transcoding: the device table (CPU, then -nvidia/-netint/-qsv devices, self-tested
 * unless -testTranscoder=false) and the capacity model over it. */
static void session_ended(void *arg, const char *session_id) {
  orch_node_t *n = arg;
  if (n->core.admit) orch_admit_release(n->core.admit, session_id);
}

/* ---- device health ---------------------------------------------------------------------------
 * A session whose device fails finishes its segment on the CPU (engine_media.c) and reports the
 * device here: the node quarantines it (hw_table_report), the capacity model places no new
 * session on it, its codecs leave the advertised set unless another device or the CPU has them,
 * and a re-test on the thread pool brings it back (hw_table_recheck) when its time is up. */
#define RECHECK_PERIOD_MS 10000

static void device_failed(void *arg, int device) { /* a session thread */
  orch_node_t *n = arg;
  if (device <= 0 || device >= 32) return;
  pthread_mutex_lock(&n->fail_mu);
  n->failed |= 1u << device;
  pthread_mutex_unlock(&n->fail_mu);
  uv_async_send(&n->fail_async);
}

static void devices_changed(orch_node_t *n) {
  caps_from_table(&n->core.caps, n->table);
  int words = (int)orch_caps_words(&n->core.caps);
  LOGI("Capabilities now caps=0x%llx words=%d", (unsigned long long)n->core.caps.bits[0], words);
}

static void on_device_failed(uv_async_t *h) {
  orch_node_t *n = h->data;
  pthread_mutex_lock(&n->fail_mu);
  uint32_t failed = n->failed;
  n->failed = 0;
  pthread_mutex_unlock(&n->fail_mu);
  if (n->freeing || !n->table) return;
  bool changed = false;
  for (int i = 1; i < n->table->n && i < 32; i++) {
    if (!(failed & (1u << i)) || n->table->dev[i].state == HW_DEV_QUARANTINED) continue;
    pthread_mutex_lock(&n->table_mu);
    hw_table_report(n->table, i, HW_ERR_DEVICE, lp_now_ms());
    pthread_mutex_unlock(&n->table_mu);
    if (n->table->dev[i].state != HW_DEV_QUARANTINED) continue;
    if (n->core.admit) orch_admit_device_down(n->core.admit, i, true);
    LOGE("Device %s is quarantined: new sessions go elsewhere; its sessions run on the CPU until "
         "it passes a re-test",
         n->table->dev[i].name);
    changed = true;
  }
  if (changed) devices_changed(n);
}

static void recheck_work(uv_work_t *w) {
  orch_node_t *n = w->data;
  hw_table_recheck(n->recheck_copy, lp_now_ms());
}

static void recheck_done(uv_work_t *w, int status) {
  orch_node_t *n = w->data;
  (void)status;
  n->rechecking = false;
  if (n->freeing || !n->table) {
    free(n->recheck_copy);
    n->recheck_copy = NULL;
    if (n->freeing) node_handle_gone(n); /* the work counted as a handle */
    return;
  }
  pthread_mutex_lock(&n->table_mu);
  uint32_t back = hw_table_recheck_apply(n->table, n->recheck_copy);
  pthread_mutex_unlock(&n->table_mu);
  free(n->recheck_copy);
  n->recheck_copy = NULL;
  for (int i = 1; i < n->table->n; i++)
    if ((back & (1u << i)) && n->core.admit) orch_admit_device_down(n->core.admit, i, false);
  if (back) devices_changed(n);
}

static void on_recheck_timer(uv_timer_t *t) {
  orch_node_t *n = t->data;
  if (n->freeing || n->rechecking || !n->table || !hw_table_recheck_due(n->table, lp_now_ms()))
    return;
  if (!(n->recheck_copy = malloc(sizeof *n->recheck_copy))) return;
  *n->recheck_copy = *n->table; /* the loop is the only writer */
  n->recheck_req.data = n;
  if (uv_queue_work(n->loop, &n->recheck_req, recheck_work, recheck_done)) {
    free(n->recheck_copy);
    n->recheck_copy = NULL;
    return;
  }
  n->rechecking = true;
}

static void watch_devices(orch_node_t *n) {
  if (n->table->n < 2) return; /* the CPU alone is never quarantined */
  pthread_mutex_init(&n->table_mu, NULL);
  pthread_mutex_init(&n->fail_mu, NULL);
  uv_async_init(n->loop, &n->fail_async, on_device_failed);
  n->fail_async.data = n;
  uv_timer_init(n->loop, &n->recheck_timer);
  n->recheck_timer.data = n;
  uv_timer_start(&n->recheck_timer, on_recheck_timer, RECHECK_PERIOD_MS, RECHECK_PERIOD_MS);
  uv_unref((uv_handle_t *)&n->recheck_timer);
  n->dev_watch = true;
  n->media.table_mu = &n->table_mu;
  n->media.device_failed = device_failed;
  n->media.arg = n;
}

/* The capacity model over the probed table t, unless -costAdmission=false (without: what
 * happens then, for the log). */
static int start_model(orch_node_t *n, const lp_config_t *cfg, const hw_table_t *t, bool in_process,
                       const char *without) {
  if (!cfg->cost_admission) {
    LOGI("Capacity: -costAdmission=false: %s", without);
    return 0;
  }
  int rc = orch_admit_new(n->loop, cfg, t, in_process, &n->core.admit);
  if (rc) LOGE("Capacity: cannot start the capacity model: %s", lp_strerror(rc));
  return rc;
}

static int start_devices(orch_node_t *n, const lp_config_t *cfg, orch_engine_t *engine) {
  n->table = calloc(1, sizeof *n->table);
  if (!n->table) return LP_ENOMEM;
  /* The probe, self-tests and calibration run in a child process (startup.c); in this one
   * only when no child can be started. */
  bool in_process;
  int rc = orch_devices(cfg, true, n->table, &in_process);
  if (rc) return rc;
  caps_from_table(&n->core.caps, n->table);
  n->media.table = n->table;
  n->media.cpu_preset = cfg->cpu_preset;
  engine->ctx = &n->media;
  return start_model(n, cfg, n->table, in_process,
                     "new streams are counted against -maxSessions only");
}

/* -localWorkers: the devices are probed once here (in a child, as a node's are; calibrated too
 * when the capacity model admits the work) for all of the workers. With the model, the node
 * admits each new stream by its cost and places it on a device, and the stream goes to the
 * worker that has that device. One worker per device (-localWorkers auto): worker i gets the
 * CPU and device i + 1, the CPU alone when there is no device. */
static int start_worker_devices(orch_node_t *n, const lp_config_t *cfg) {
  if (!(n->wtable = calloc(1, sizeof *n->wtable))) return LP_ENOMEM;
  bool in_process;
  int rc = orch_devices(cfg, cfg->cost_admission, n->wtable, &in_process);
  if (rc) return rc;
  pool_table_caps(n->wtable, n->worker_caps, ORCH_CAP_WORDS);
  for (int i = 0; i < ORCH_CAP_WORDS; i++) n->core.caps.bits[i] |= n->worker_caps[i];
  bool per_device = cfg->local_workers == LP_LOCAL_WORKERS_AUTO;
  n->workers = !per_device ? cfg->local_workers : n->wtable->n > 1 ? n->wtable->n - 1 : 1;
  if (!(n->worker_secrets = calloc((size_t)n->workers, sizeof *n->worker_secrets)) ||
      !(n->worker_down = calloc((size_t)n->workers, sizeof *n->worker_down)))
    return LP_ENOMEM;
  for (int i = 0; i < n->workers; i++) {
    uint8_t r[32];
    if (RAND_bytes(r, sizeof r) != 1) return LP_EIO;
    lp_hex_encode(r, sizeof r, n->worker_secrets[i]);
    OPENSSL_cleanse(r, sizeof r);
  }
  n->pool_eng.per_device = per_device && n->wtable->n > 1;
  n->pool_eng.cpu_only = n->wtable->n == 1;
  rc = start_model(n, cfg, n->wtable, in_process,
                   "new streams go to the worker with the most free sessions");
  if (rc || !n->core.admit) return rc;
  n->pool_eng.placed = true;
  LOGI("Capacity: new streams are admitted by their cost and placed on a device; %s",
       n->pool_eng.per_device ? "the worker of that device transcodes them"
                              : "a local worker transcodes them");
  return 0;
}

static int write_table(const hw_table_t *t, const char *path) {
  char *json = hw_table_json(t);
  if (!json) return LP_ENOMEM;
  int rc = lp_file_write_atomic(path, json, strlen(json), 0600);
  free(json);
  if (rc) LOGE("Local workers: cannot write %s: %s", path, lp_strerror(rc));
  return rc;
}

/* The workers' device tables in the data dir, where each worker reads its own instead of
 * probing the devices again: devices.json for all, or, one worker per device, devices-<i>.json
 * (the supervisor puts i in for %d). */
static int workers_device_table(const orch_node_t *n, const char *dir, bool per_device, char *env,
                                size_t envlen) {
  const hw_table_t *t = n->wtable;
  char path[900];
  if (!per_device) {
    snprintf(path, sizeof path, "%s/devices.json", dir);
    int rc = write_table(t, path);
    if (!rc) snprintf(env, envlen, "%s=%s", ORCH_DEVICE_TABLE_ENV, path);
    return rc;
  }
  hw_table_t *one = calloc(1, sizeof *one);
  if (!one) return LP_ENOMEM;
  int rc = 0;
  for (int i = 0; i < n->workers && !rc; i++) {
    one->n = t->n > 1 ? 2 : 1;
    one->dev[0] = t->dev[HW_TABLE_CPU];
    if (t->n > 1) one->dev[1] = t->dev[i + 1];
    snprintf(path, sizeof path, "%s/devices-%d.json", dir, i);
    rc = write_table(one, path);
  }
  free(one);
  if (!rc) snprintf(env, envlen, "%s=%s/devices-%%d.json", ORCH_DEVICE_TABLE_ENV, dir);
  return rc;
}

/* -localWorkers: each worker's pool secret (its own, which tells the pool which worker it is)
 * goes to a private file in the data dir, and the supervisor starts the workers against the
 * node's own port over loopback. */
static int start_local_workers(orch_node_t *n, const lp_config_t *cfg, const char *http_addr) {
  char path[1024], env[1024];
  bool per_device = cfg->local_workers == LP_LOCAL_WORKERS_AUTO;
  int rc = workers_device_table(n, cfg->datadir, per_device, env, sizeof env);
  if (rc) return rc;
  for (int i = 0; i < n->workers && !rc; i++) {
    snprintf(path, sizeof path, "%s/pool-secret-%d", cfg->datadir, i);
    rc = lp_file_write_atomic(path, n->worker_secrets[i], strlen(n->worker_secrets[i]), 0600);
    if (rc) LOGE("Local workers: cannot write %s: %s", path, lp_strerror(rc));
  }
  if (rc) return rc;
  snprintf(path, sizeof path, "%s/pool-secret-%%d", cfg->datadir);
  /* the address the port is bound to, or loopback when it listens on every interface */
  char addr[300];
  const char *colon = strrchr(http_addr, ':');
  int hl = colon ? (int)(colon - http_addr) : 0;
  if (hl == 0 || (hl == 7 && strncmp(http_addr, "0.0.0.0", 7) == 0) ||
      (hl == 4 && strncmp(http_addr, "[::]", 4) == 0))
    snprintf(addr, sizeof addr, "127.0.0.1:%d", net_server_port(n->srv));
  else
    snprintf(addr, sizeof addr, "%.*s:%d", hl, http_addr, net_server_port(n->srv));
  const char *extra[16];
  size_t ne = 0;
  const struct {
    const char *flag, *value;
  } pass[] = {{"-nvidia", cfg->nvidia},
              {"-qsv", cfg->qsv},
              {"-netint", cfg->netint},
              {"-cpuPreset", cfg->cpu_preset}};
  for (size_t i = 0; i < LP_ARRAY_LEN(pass); i++)
    if (pass[i].value && pass[i].value[0]) {
      extra[ne++] = pass[i].flag;
      extra[ne++] = pass[i].value;
    }
  if (!cfg->test_transcoder) extra[ne++] = "-testTranscoder=false";
  extra[ne] = NULL;
  pool_supervisor_opts_t so;
  memset(&so, 0, sizeof so);
  so.orch_addr = addr;
  so.secret_file = path;
  so.datadir = cfg->datadir;
  so.workers = n->workers;
  /* With the capacity model the node admits the work: a worker's registered count is only a
   * ceiling (-maxSessions, or LOCAL_WORKER_UNCAPPED). Without it, each registers -maxSessions
   * (10 for auto) and the pool counts sessions. */
  so.capacity = cfg->max_sessions > 0 ? cfg->max_sessions
                : n->core.admit       ? LOCAL_WORKER_UNCAPPED
                                      : 10;
  so.verbosity = cfg->verbosity;
  so.extra_args = extra;
  so.env = env;
  rc = pool_supervisor_start(n->loop, &so, &n->sup);
  if (rc)
    LOGE("Local workers: cannot start them: %s", lp_strerror(rc));
  else
    LOGI("Local workers: %d transcoder process(es)%s register over %s", n->workers,
         per_device ? ", one per device," : "", addr);
  return rc;
}

/* The workers' secrets live in their files and in the pool; the node drops its copy. */
static void forget_worker_secrets(orch_node_t *n) {
  if (!n->worker_secrets) return;
  OPENSSL_cleanse(n->worker_secrets, (size_t)n->workers * sizeof *n->worker_secrets);
  free(n->worker_secrets);
  n->worker_secrets = NULL;
}

int orch_node_start(uv_loop_t *loop, const lp_config_t *cfg, orch_node_t **out) {
  bool standalone = !cfg->transcoder;
  bool workers = cfg->transcoder && cfg->local_workers != 0;
  bool pooled = standalone || workers;
  char secret[2 * 32 + 1] = "";
  if (standalone && (!cfg->orch_secret || !cfg->orch_secret[0])) {
    LOGE("Orchestrator: without -transcoder, remote transcoders do the work and -orchSecret is "
         "required");
    return LP_EINVAL;
  }
  orch_node_t *n = calloc(1, sizeof *n);
  if (!n) return LP_ENOMEM;
  n->loop = loop;
  orch_core_t *c = &n->core;
  c->loop = loop;
  char *http_addr = NULL, *host = NULL, *port = NULL;
  int rc = LP_ENOMEM;
  c->service_uri = orch_service_uri(cfg->service_addr && cfg->service_addr[0]
                                        ? cfg->service_addr
                                        : "127.0.0.1:" DEFAULT_SERVICE_PORT);
  if (!c->service_uri) goto fail;
  if (!cfg->service_addr || !cfg->service_addr[0])
    LOGW("No -serviceAddr given; advertising %s", c->service_uri);
  if (RAND_bytes(c->token_key, sizeof c->token_key) != 1) {
    rc = LP_EIO;
    goto fail;
  }
  if (orch_onchain_wanted(cfg)) {
    if ((rc = orch_onchain_open(loop, cfg, &c->pay, &n->onchain))) goto fail;
    rc = LP_ENOMEM;
  } else {
    orch_payments_offchain(&c->pay);
  }
  node_caps(&c->caps);
  orch_engine_t engine = orch_engine_media;
  if (workers && strncmp(c->service_uri, "http://", 7) == 0) {
    if (cfg->local_workers != LP_LOCAL_WORKERS_AUTO) {
      LOGE("Orchestrator: -localWorkers needs the TLS service port; the workers dial it");
      rc = LP_EINVAL;
      goto fail;
    }
    LOGW("Orchestrator: the service port is plain http://, which the local workers cannot "
         "dial; transcoding in this process (-localWorkers 0)");
    workers = false;
    pooled = standalone;
  }
  if (workers && (!cfg->orch_secret || !cfg->orch_secret[0])) {
    uint8_t r[32];
    if (RAND_bytes(r, sizeof r) != 1) {
      rc = LP_EIO;
      goto fail;
    }
    lp_hex_encode(r, sizeof r, secret);
    OPENSSL_cleanse(r, sizeof r);
  }
  if (pooled) {
    /* nothing is transcodable until a transcoder registers */
    memset(c->caps.bits, 0, sizeof c->caps.bits);
    orch_caps_set(&c->caps, ORCH_CAP_AUTH_TOKEN);
    orch_engine_pool(&n->pool_eng, &engine);
  } else if ((rc = start_devices(n, cfg, &engine))) {
    goto fail;
  }
  if (workers && (rc = start_worker_devices(n, cfg))) goto fail;
  rc = LP_ENOMEM;
  c->store = orch_store_new();
  if (!c->store) goto fail;
  uint64_t idle_ms = ORCH_SESSION_IDLE_MS_DEFAULT;
  const char *idle_env = getenv("LPOD_SESSION_IDLE_MS");
  if (idle_env && atoll(idle_env) > 0) idle_ms = (uint64_t)atoll(idle_env);
  int max_sessions = cfg->max_sessions > 0 ? cfg->max_sessions : 10;
  /* go-livepeer's -maxSessions auto: the sum of the registered transcoders' capacities */
  /* with local transcoding, auto leaves the capacity model alone to decide */
  n->max_auto = cfg->max_sessions_auto && (pooled || c->admit);
  if (n->max_auto) max_sessions = pooled && !c->admit ? 0 : INT_MAX;
  c->sessions = orch_sessions_new(loop, &engine, c->store, max_sessions, idle_ms);
  if (!c->sessions) goto fail;
  orch_sessions_on_end(c->sessions, session_ended, n);

  /* -httpAddr defaults to the service URI's port on every interface. */
  port = uri_port(c->service_uri);
  host = uri_host(c->service_uri);
  bool plain = strncmp(c->service_uri, "http://", 7) == 0;
  if (cfg->http_addr && cfg->http_addr[0]) {
    http_addr = strdup(cfg->http_addr);
  } else {
    lp_buf_t b = LP_BUF_INIT;
    if (!lp_buf_appendf(&b, "%s:%s", plain ? "http://" : "",
                        port ? port : (plain ? "80" : "443")) &&
        !lp_buf_append(&b, "", 1))
      http_addr = (char *)b.data;
    else
      lp_buf_free(&b);
  }
  if (!http_addr || !host) goto fail;
  net_server_opts_t so;
  memset(&so, 0, sizeof so);
  so.addr = http_addr;
  so.cert_file = cfg->tls_cert && cfg->tls_cert[0] ? cfg->tls_cert : NULL;
  so.key_file = cfg->tls_key && cfg->tls_key[0] ? cfg->tls_key : NULL;
  so.cert_dir = cfg->datadir;
  so.cert_host = host;
  char err[256];
  rc = net_server_new(loop, &so, &n->srv, err, sizeof err);
  if (rc) {
    LOGE("Orchestrator: %s", err);
    goto fail;
  }
  net_route_opts_t seg_opts = {NET_BODY_STREAM, MAX_SEG_BYTES};
  n->cli = net_client_new(loop);
  if (!n->cli || net_server_route(n->srv, "/segment", false, &seg_opts, handle_segment, n) ||
      net_server_route(n->srv, "/stream/", true, NULL, handle_stream, n) ||
      net_server_grpc(n->srv, "/net.Orchestrator/GetOrchestrator", 0, grpc_get_orchestrator, n) ||
      net_server_grpc(n->srv, "/net.Orchestrator/EndTranscodingSession", 0, grpc_end_session, n) ||
      net_server_grpc(n->srv, "/net.Orchestrator/Ping", 0, grpc_ping, n)) {
    rc = LP_ENOMEM;
    goto fail;
  }
  if (pooled) {
    pool_manager_opts_t po;
    memset(&po, 0, sizeof po);
    po.secret = secret[0] ? secret : cfg->orch_secret;
    po.service_uri = c->service_uri;
    po.on_change = pool_changed;
    po.on_devices = workers_devices;
    po.arg = n;
    const char *wsecrets[64];
    for (int i = 0; i < n->workers && i < 64; i++) wsecrets[i] = n->worker_secrets[i];
    po.local_secrets = wsecrets;
    po.n_local = LP_MIN(n->workers, 64);
    rc = pool_manager_new(loop, n->srv, &po, &n->pool);
    if (rc) {
      LOGE("Orchestrator: cannot start the transcoder pool: %s", lp_strerror(rc));
      goto fail;
    }
    n->pool_eng.manager = n->pool;
    if (c->admit) c->spill = n->pool;
  }
  rc = net_server_listen(n->srv, err, sizeof err);
  if (rc) {
    LOGE("Orchestrator: %s", err);
    goto fail;
  }
  if (workers && (rc = start_local_workers(n, cfg, http_addr)) != 0) goto fail;
  OPENSSL_cleanse(secret, sizeof secret);
  forget_worker_secrets(n);
  uv_timer_init(loop, &n->drain_timer);
  n->drain_timer.data = n;
  if (n->table) watch_devices(n); /* nothing can fail after this: its handles need a close */
  LOGI("Orchestrator serving on %s (port %d), service URI %s, maxSessions=%d%s", http_addr,
       net_server_port(n->srv), c->service_uri, max_sessions_shown(n),
       n->max_auto ? " (auto)" : "");
  free(http_addr);
  free(host);
  free(port);
  *out = n;
  return 0;
fail:
  OPENSSL_cleanse(secret, sizeof secret);
  forget_worker_secrets(n);
  free(http_addr);
  free(host);
  free(port);
  if (n->sup) pool_supervisor_free(n->sup);
  if (n->pool) pool_manager_free(n->pool);
  if (n->srv) net_server_free(n->srv);
  if (n->cli) net_client_free(n->cli);
  if (c->sessions) {
    /* Nothing was submitted: closing completes on the next loop turn. */
    orch_sessions_close(c->sessions, NULL, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    orch_sessions_free(c->sessions);
  }
  orch_store_free(c->store);
  free(c->service_uri);
  orch_onchain_free(n->onchain);
  if (c->admit) {
    orch_admit_free(c->admit);
    uv_run(loop, UV_RUN_NOWAIT);
  }
  free(n->table);
  free(n->wtable);
  free(n->worker_down);
  free(n);
  return rc ? rc : LP_EIO;
}

static void drain_fire(uv_timer_t *t);

static void workers_stopped(void *arg) {
  orch_node_t *n = arg;
  uv_timer_start(&n->drain_timer, drain_fire, 0, 0);
}

static void drain_fire(uv_timer_t *t) {
  orch_node_t *n = t->data;
  /* the local workers have nothing left to do: they stop (and drain) before the node says so */
  if (n->sup && !n->sup_stopping) {
    n->sup_stopping = true;
    pool_supervisor_stop(n->sup, workers_stopped, n);
    return;
  }
  void (*cb)(void *) = n->drained;
  n->drained = NULL;
  if (cb) cb(n->drained_arg);
}

static void check_drained(orch_node_t *n) {
  if (!n->core.stopping || !n->drained || n->freeing) return;
  if (n->in_flight > 0 || orch_sessions_jobs(n->core.sessions) > 0) return;
  /* Deferred so the callback never runs inside a handler or inside orch_node_stop. */
  uv_timer_start(&n->drain_timer, drain_fire, 0, 0);
}

void orch_node_stop(orch_node_t *n, void (*drained)(void *), void *arg) {
  n->core.stopping = true;
  n->drained = drained;
  n->drained_arg = arg;
  LOGI("Orchestrator stopping: refusing new work, segments in flight=%d", n->in_flight);
  check_drained(n);
}

void orch_node_free(orch_node_t *n) {
  if (!n) return;
  n->freeing = true;
  uv_timer_stop(&n->drain_timer);
  n->closing_handles = 1 + (n->rechecking ? 1 : 0); /* a re-test in flight ends first */
  /* Sessions first, then the pool: freeing it fails its tasks, which releases the sessions
   * that wait on them; the pool must go before the server it is registered on. */
  orch_sessions_close(n->core.sessions, sessions_closed, n);
  if (n->sup) {
    pool_supervisor_free(n->sup);
    n->sup = NULL;
  }
  if (n->pool) {
    n->pool_eng.manager = NULL;
    n->core.spill = NULL;
    pool_manager_free(n->pool);
    n->pool = NULL;
  }
  net_server_free(n->srv);
  net_client_free(n->cli);
}

int orch_node_set_max_sessions(orch_node_t *n, int max_sessions, bool is_auto) {
  if (is_auto) {
    /* remote transcoders set the capacity; with local transcoding the capacity model does */
    if (!n->pool && !n->core.admit) return LP_EINVAL;
    n->max_auto = true;
    orch_sessions_set_max(n->core.sessions,
                          n->pool && !n->core.admit ? pool_manager_capacity(n->pool) : INT_MAX);
  } else {
    if (max_sessions <= 0) return LP_EINVAL;
    n->max_auto = false;
    orch_sessions_set_max(n->core.sessions, max_sessions);
  }
  if (n->core.admit) orch_admit_set_max(n->core.admit, is_auto ? 0 : max_sessions);
  LOGI("MaxSessions set to %d%s", max_sessions_shown(n), is_auto ? " (auto)" : "");
  return 0;
}

int orch_node_set_target(orch_node_t *n, double ratio) {
  return n->core.admit ? orch_admit_set_target(n->core.admit, ratio) : LP_EUNSUPP;
}

/* Sets a field whether or not the caller put one there already. */
static void status_set(cJSON *obj, const char *key, cJSON *v) {
  if (!v) return;
  if (cJSON_GetObjectItemCaseSensitive(obj, key))
    cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
  else
    cJSON_AddItemToObject(obj, key, v);
}

void orch_node_status(orch_node_t *n, cJSON *status) {
  status_set(status, "RegisteredTranscodersNumber",
             cJSON_CreateNumber(n->pool ? pool_manager_transcoders(n->pool) : 0));
  /* local workers transcode on this machine too */
  status_set(status, "LocalTranscoding", cJSON_CreateBool(n->pool == NULL || n->workers > 0));
  status_set(status, "Sessions", cJSON_CreateNumber(orch_sessions_count(n->core.sessions)));
  status_set(status, "MaxSessions", cJSON_CreateNumber(max_sessions_shown(n)));
  status_set(status, "SegmentsInFlight", cJSON_CreateNumber(n->in_flight));
  if (n->core.admit) orch_admit_status(n->core.admit, status);
}

void orch_node_metrics(orch_node_t *n) {
  metrics_sessions(n);
  if (n->core.admit) orch_admit_metrics(n->core.admit);
}

void orch_node_summary(orch_node_t *n, char *out, size_t len) {
  int sessions = orch_sessions_count(n->core.sessions);
  int w = snprintf(out, len, "%s: %d session%s (max %d), %d segment%s in flight",
                   n->core.stopping ? "stopping" : "serving", sessions, sessions == 1 ? "" : "s",
                   max_sessions_shown(n), n->in_flight, n->in_flight == 1 ? "" : "s");
  if (n->pool && w > 0 && (size_t)w < len)
    snprintf(out + w, len - (size_t)w, ", %d transcoders", pool_manager_transcoders(n->pool));
}

int orch_node_activity(orch_node_t *n) {
  return orch_sessions_count(n->core.sessions) + n->in_flight;
}

bool orch_node_ready(orch_node_t *n, char *why, size_t whylen) {
  if (n->core.stopping) {
    snprintf(why, whylen, "stopping");
    return false;
  }
  if (n->pool && pool_manager_transcoders(n->pool) == 0) {
    snprintf(why, whylen, "no transcoders registered");
    return false;
  }
  return true;
}
