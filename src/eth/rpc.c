/* JSON-RPC 2.0 over HTTP with libcurl: a blocking form for start-up and tools, and an
 * asynchronous form driven by the libuv loop through curl's multi-socket interface.
 * The net module's HTTP client had no implementation yet when this was written, so the small
 * uv/curl-multi glue lives here. */
#include "lpod/eth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define RPC_MAX_BODY (16u << 20)

typedef struct rpc_req {
  struct rpc_req *next, *prev;
  eth_rpc_t *rpc;
  CURL *easy;
  struct curl_slist *hdrs;
  char *payload;
  lp_buf_t body;
  char errbuf[CURL_ERROR_SIZE];
  eth_rpc_cb cb;
  void *ud;
} rpc_req_t;

typedef struct rpc_sock {
  uv_poll_t poll;
  eth_rpc_t *rpc;
} rpc_sock_t;

struct eth_rpc {
  char *url;
  long timeout_ms;
  uint64_t next_id;
  CURL *sync; /* reused between blocking calls so keep-alive connections stay open */
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  rpc_req_t pending; /* list head */
  int open_handles;  /* timer and polls not yet closed; the struct goes when it reaches 0 */
  bool closing;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  lp_buf_t *b = ud;
  size_t len = size * n;
  if (b->len + len > RPC_MAX_BODY) return 0;
  return lp_buf_append(b, p, len) ? 0 : len;
}

static char *build_payload(eth_rpc_t *rpc, const char *method, cJSON *params) {
  cJSON *req = cJSON_CreateObject();
  if (!params) params = cJSON_CreateArray();
  if (!req || !params) {
    cJSON_Delete(req);
    cJSON_Delete(params);
    return NULL;
  }
  cJSON_AddStringToObject(req, "jsonrpc", "2.0");
  cJSON_AddNumberToObject(req, "id", (double)++rpc->next_id);
  cJSON_AddStringToObject(req, "method", method);
  cJSON_AddItemToObject(req, "params", params);
  char *s = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  return s;
}

static void setup_easy(eth_rpc_t *rpc, CURL *e, const char *payload, struct curl_slist *hdrs,
                       lp_buf_t *body, char *errbuf) {
  curl_easy_setopt(e, CURLOPT_URL, rpc->url);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, payload);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, rpc->timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, LP_MIN(rpc->timeout_ms, 10000L));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_USERAGENT, "lpod");
  errbuf[0] = 0;
}

/* The revert data of a JSON-RPC error: geth puts the hex in "data", ganache in "data.result". */
static const char *error_data(const cJSON *err) {
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(err, "data");
  if (cJSON_IsString(d)) return d->valuestring;
  if (cJSON_IsObject(d)) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(d, "result");
    if (cJSON_IsString(r)) return r->valuestring;
  }
  return NULL;
}

/* Turns a finished transfer into (status, result, message). On success *out is detached from
 * the parsed document, which the caller frees through *doc. */
static int finish(CURLcode cc, long http, const lp_buf_t *body, const char *curl_err, cJSON **doc,
                  const cJSON **out, char *err, size_t errlen) {
  *doc = NULL;
  *out = NULL;
  if (cc == CURLE_OPERATION_TIMEDOUT) {
    seterr(err, errlen, "timed out: %s", curl_err[0] ? curl_err : curl_easy_strerror(cc));
    return LP_ETIMEDOUT;
  }
  if (cc != CURLE_OK) {
    seterr(err, errlen, "%s", curl_err[0] ? curl_err : curl_easy_strerror(cc));
    return LP_EIO;
  }
  cJSON *j = body->len ? cJSON_ParseWithLength((const char *)body->data, body->len) : NULL;
  if (!cJSON_IsObject(j)) {
    if (http != 200)
      seterr(err, errlen, "HTTP %ld from the RPC endpoint", http);
    else
      seterr(err, errlen, "the RPC endpoint answered with something that is not JSON-RPC");
    cJSON_Delete(j);
    return http != 200 ? LP_EIO : LP_EPROTO;
  }
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
  if (e && !cJSON_IsNull(e)) {
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
    const char *data = error_data(e);
    char reason[256];
    uint8_t raw[512];
    int n = data ? lp_hex_decode(data, raw, sizeof raw) : -1;
    if (n > 0 && eth_abi_revert_reason(raw, (size_t)n, reason, sizeof reason) == 0)
      seterr(err, errlen, "execution reverted: %s", reason);
    else
      seterr(err, errlen, "%s", msg ? msg : "JSON-RPC error");
    cJSON_Delete(j);
    return LP_EPROTO;
  }
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
  if (!r) {
    seterr(err, errlen, "JSON-RPC answer without a result");
    cJSON_Delete(j);
    return LP_EPROTO;
  }
  *doc = j;
  *out = r;
  return 0;
}

int eth_rpc_call(eth_rpc_t *rpc, const char *method, cJSON *params, cJSON **result, char *err,
                 size_t errlen) {
  *result = NULL;
  char *payload = build_payload(rpc, method, params);
  if (!payload) return LP_ENOMEM;
  if (!rpc->sync && !(rpc->sync = curl_easy_init())) {
    free(payload);
    return LP_ENOMEM;
  }
  curl_easy_reset(rpc->sync);
  struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  lp_buf_t body = LP_BUF_INIT;
  char cerr[CURL_ERROR_SIZE];
  setup_easy(rpc, rpc->sync, payload, hdrs, &body, cerr);
  CURLcode cc = curl_easy_perform(rpc->sync);
  long http = 0;
  curl_easy_getinfo(rpc->sync, CURLINFO_RESPONSE_CODE, &http);
  cJSON *doc;
  const cJSON *r;
  int rc = finish(cc, http, &body, cerr, &doc, &r, err, errlen);
  if (!rc) {
    *result = cJSON_DetachItemViaPointer(doc, (cJSON *)r);
    cJSON_Delete(doc);
  }
  curl_slist_free_all(hdrs);
  lp_buf_free(&body);
  free(payload);
  return rc;
}

/* ---- asynchronous calls ------------------------------------------------------------------------
 */

static void req_free(rpc_req_t *q) {
  if (q->easy) curl_easy_cleanup(q->easy);
  curl_slist_free_all(q->hdrs);
  lp_buf_free(&q->body);
  free(q->payload);
  free(q);
}

static void req_unlink(rpc_req_t *q) {
  q->prev->next = q->next;
  q->next->prev = q->prev;
  q->next = q->prev = q;
}

static void check_done(eth_rpc_t *rpc) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(rpc->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    rpc_req_t *q = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
    CURLcode cc = m->data.result;
    long http = 0;
    curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &http);
    curl_multi_remove_handle(rpc->multi, q->easy);
    req_unlink(q);
    char err[512];
    cJSON *doc;
    const cJSON *r;
    int rc = finish(cc, http, &q->body, q->errbuf, &doc, &r, err, sizeof err);
    q->cb(q->ud, rc, r, rc ? err : NULL);
    cJSON_Delete(doc);
    req_free(q);
  }
}

static void rpc_release(eth_rpc_t *rpc) {
  if (--rpc->open_handles > 0) return;
  free(rpc->url);
  free(rpc);
}

static void on_sock_closed(uv_handle_t *h) {
  rpc_sock_t *s = h->data;
  eth_rpc_t *rpc = s->rpc;
  free(s);
  rpc_release(rpc);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  rpc_sock_t *s = h->data;
  eth_rpc_t *rpc = s->rpc;
  int flags = 0, running;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)h, &fd) != 0) return;
  curl_multi_socket_action(rpc->multi, (curl_socket_t)fd, flags, &running);
  check_done(rpc);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp) {
  eth_rpc_t *rpc = userp;
  rpc_sock_t *s = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      if (!rpc->closing) curl_multi_assign(rpc->multi, fd, NULL);
      uv_poll_stop(&s->poll);
      uv_close((uv_handle_t *)&s->poll, on_sock_closed);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return -1;
    if (uv_poll_init_socket(rpc->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->rpc = rpc;
    s->poll.data = s;
    rpc->open_handles++;
    curl_multi_assign(rpc->multi, fd, s);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *t) {
  eth_rpc_t *rpc = t->data;
  int running;
  curl_multi_socket_action(rpc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(rpc);
}

static int on_timer(CURLM *m, long timeout_ms, void *userp) {
  eth_rpc_t *rpc = userp;
  if (timeout_ms < 0)
    uv_timer_stop(&rpc->timer);
  else
    uv_timer_start(&rpc->timer, on_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

int eth_rpc_call_async(eth_rpc_t *rpc, const char *method, cJSON *params, eth_rpc_cb cb, void *ud) {
  if (!rpc->multi || rpc->closing) {
    cJSON_Delete(params);
    return LP_EINVAL;
  }
  rpc_req_t *q = calloc(1, sizeof *q);
  if (!q) {
    cJSON_Delete(params);
    return LP_ENOMEM;
  }
  q->rpc = rpc;
  q->cb = cb;
  q->ud = ud;
  q->payload = build_payload(rpc, method, params);
  q->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  q->easy = curl_easy_init();
  if (!q->payload || !q->hdrs || !q->easy) {
    req_free(q);
    return LP_ENOMEM;
  }
  setup_easy(rpc, q->easy, q->payload, q->hdrs, &q->body, q->errbuf);
  curl_easy_setopt(q->easy, CURLOPT_PRIVATE, q);
  if (curl_multi_add_handle(rpc->multi, q->easy) != CURLM_OK) {
    req_free(q);
    return LP_ENOMEM;
  }
  q->next = rpc->pending.next;
  q->prev = &rpc->pending;
  rpc->pending.next->prev = q;
  rpc->pending.next = q;
  return 0;
}

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static void on_timer_closed(uv_handle_t *h) { rpc_release(h->data); }

int eth_rpc_new(uv_loop_t *loop, const char *url, int timeout_ms, eth_rpc_t **out) {
  static uv_once_t once = UV_ONCE_INIT;
  *out = NULL;
  if (!url || strncmp(url, "http", 4) != 0) return LP_EINVAL;
  uv_once(&once, curl_init_once);
  eth_rpc_t *rpc = calloc(1, sizeof *rpc);
  if (!rpc || !(rpc->url = strdup(url))) {
    free(rpc);
    return LP_ENOMEM;
  }
  rpc->timeout_ms = timeout_ms > 0 ? timeout_ms : 20000;
  rpc->pending.next = rpc->pending.prev = &rpc->pending;
  rpc->loop = loop;
  if (loop) {
    if (!(rpc->multi = curl_multi_init())) {
      free(rpc->url);
      free(rpc);
      return LP_ENOMEM;
    }
    uv_timer_init(loop, &rpc->timer);
    rpc->timer.data = rpc;
    rpc->open_handles = 1;
    curl_multi_setopt(rpc->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(rpc->multi, CURLMOPT_SOCKETDATA, rpc);
    curl_multi_setopt(rpc->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(rpc->multi, CURLMOPT_TIMERDATA, rpc);
  }
  *out = rpc;
  return 0;
}

const char *eth_rpc_url(const eth_rpc_t *rpc) { return rpc->url; }

void eth_rpc_free(eth_rpc_t *rpc) {
  if (!rpc) return;
  rpc->closing = true;
  if (rpc->sync) curl_easy_cleanup(rpc->sync);
  rpc->sync = NULL;
  if (!rpc->multi) {
    free(rpc->url);
    free(rpc);
    return;
  }
  while (rpc->pending.next != &rpc->pending) {
    rpc_req_t *q = rpc->pending.next;
    curl_multi_remove_handle(rpc->multi, q->easy);
    req_unlink(q);
    q->cb(q->ud, LP_ECANCELED, NULL, "cancelled");
    req_free(q);
  }
  curl_multi_cleanup(rpc->multi);
  rpc->multi = NULL;
  uv_timer_stop(&rpc->timer);
  uv_close((uv_handle_t *)&rpc->timer, on_timer_closed);
}

/* ---- helpers ------------------------------------------------------------------------------------
 */

cJSON *eth_rpc_call_params(const uint8_t to[ETH_ADDR_LEN], const uint8_t *data, size_t len) {
  cJSON *params = cJSON_CreateArray(), *call = cJSON_CreateObject();
  char *hex = malloc(2 * len + 3);
  char addr[2 * ETH_ADDR_LEN + 3];
  if (!params || !call || !hex) {
    cJSON_Delete(params);
    cJSON_Delete(call);
    free(hex);
    return NULL;
  }
  addr[0] = hex[0] = '0';
  addr[1] = hex[1] = 'x';
  lp_hex_encode(to, ETH_ADDR_LEN, addr + 2);
  lp_hex_encode(data, len, hex + 2);
  cJSON_AddStringToObject(call, "to", addr);
  cJSON_AddStringToObject(call, "data", hex);
  cJSON_AddItemToArray(params, call);
  cJSON_AddItemToArray(params, cJSON_CreateString("latest"));
  free(hex);
  return params;
}

int eth_rpc_hex_bytes(const cJSON *v, uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  const char *s = cJSON_GetStringValue(v);
  if (!s || s[0] != '0' || s[1] != 'x') return LP_EPROTO;
  size_t n = strlen(s + 2);
  if (n % 2) return LP_EPROTO;
  uint8_t *b = malloc(n / 2 + 1);
  if (!b) return LP_ENOMEM;
  int got = lp_hex_decode(s, b, n / 2 + 1);
  if (got < 0 || (size_t)got != n / 2) {
    free(b);
    return LP_EPROTO;
  }
  *out = b;
  *len = (size_t)got;
  return 0;
}

int eth_rpc_hex_u64(const cJSON *v, uint64_t *out) {
  pm_u256_t u;
  const char *s = cJSON_GetStringValue(v);
  if (!s || eth_u256_from_hex(s, &u)) return LP_EPROTO;
  return pm_u256_to_u64(&u, out) ? LP_EPROTO : 0;
}
