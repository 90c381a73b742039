/* JSON-RPC 2.0 over HTTP: a blocking form on a libcurl easy handle for start-up and tools, and
 * an asynchronous form on the loop through the net module's HTTP client. */
#include "lpod/eth.h"
#include "lpod/net.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define RPC_MAX_BODY (16u << 20)

struct eth_rpc {
  char *url;
  long timeout_ms;
  uint64_t next_id;
  CURL *sync;          /* reused between blocking calls so keep-alive connections stay open */
  net_client_t *async; /* NULL without a loop */
};

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
static int parse_answer(long http, const uint8_t *body, size_t len, cJSON **doc, const cJSON **out,
                        char *err, size_t errlen) {
  *doc = NULL;
  *out = NULL;
  cJSON *j = len ? cJSON_ParseWithLength((const char *)body, len) : NULL;
  if (!cJSON_IsObject(j)) {
    if (http != 200)
      lp_seterr(err, errlen, "HTTP %ld from the RPC endpoint", http);
    else
      lp_seterr(err, errlen, "the RPC endpoint answered with something that is not JSON-RPC");
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
      lp_seterr(err, errlen, "execution reverted: %s", reason);
    else
      lp_seterr(err, errlen, "%s", msg ? msg : "JSON-RPC error");
    cJSON_Delete(j);
    return LP_EPROTO;
  }
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
  if (!r) {
    lp_seterr(err, errlen, "JSON-RPC answer without a result");
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
  cJSON *doc = NULL;
  const cJSON *r;
  int rc;
  if (cc == CURLE_OPERATION_TIMEDOUT) {
    lp_seterr(err, errlen, "timed out: %s", cerr[0] ? cerr : curl_easy_strerror(cc));
    rc = LP_ETIMEDOUT;
  } else if (cc != CURLE_OK) {
    lp_seterr(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
    rc = LP_EIO;
  } else {
    rc = parse_answer(http, body.data, body.len, &doc, &r, err, errlen);
  }
  if (!rc) {
    *result = cJSON_DetachItemViaPointer(doc, (cJSON *)r);
    cJSON_Delete(doc);
  }
  curl_slist_free_all(hdrs);
  lp_buf_free(&body);
  free(payload);
  return rc;
}

/* ---- asynchronous calls ---------------------------------------------------------------------- */

typedef struct rpc_req {
  eth_rpc_cb cb;
  void *ud;
} rpc_req_t;

static void on_fetch_done(const net_fetch_result_t *res, void *arg) {
  rpc_req_t *q = arg;
  char err[512];
  cJSON *doc = NULL;
  const cJSON *r = NULL;
  int rc;
  if (res->err == LP_ECANCELED || res->err == LP_ETIMEDOUT) {
    rc = res->err;
    lp_seterr(err, sizeof err, "%s%s", rc == LP_ETIMEDOUT ? "timed out: " : "",
              res->error ? res->error : lp_strerror(rc));
  } else if (res->err) {
    rc = LP_EIO;
    lp_seterr(err, sizeof err, "%s", res->error ? res->error : lp_strerror(res->err));
  } else {
    rc = parse_answer(res->status, res->body, res->body_len, &doc, &r, err, sizeof err);
  }
  q->cb(q->ud, rc, r, rc ? err : NULL);
  cJSON_Delete(doc);
  free(q);
}

int eth_rpc_call_async(eth_rpc_t *rpc, const char *method, cJSON *params, eth_rpc_cb cb, void *ud) {
  if (!rpc->async) {
    cJSON_Delete(params);
    return LP_EINVAL;
  }
  char *payload = build_payload(rpc, method, params);
  rpc_req_t *q = malloc(sizeof *q);
  if (!payload || !q) {
    free(payload);
    free(q);
    return LP_ENOMEM;
  }
  q->cb = cb;
  q->ud = ud;
  static const net_header_t hdrs[] = {{"content-type", "application/json"}, {"user-agent", "lpod"}};
  net_fetch_opts_t o = {.method = "POST",
                        .url = rpc->url,
                        .headers = hdrs,
                        .nheaders = LP_ARRAY_LEN(hdrs),
                        .body = payload,
                        .body_len = strlen(payload),
                        .version = NET_HTTP_ANY,
                        .timeout_ms = (uint64_t)rpc->timeout_ms,
                        .connect_timeout_ms = (uint64_t)LP_MIN(rpc->timeout_ms, 10000L),
                        .max_body_bytes = RPC_MAX_BODY};
  int rc = net_client_fetch(rpc->async, &o, on_fetch_done, q, NULL);
  free(payload);
  if (rc) free(q);
  return rc;
}

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int eth_rpc_new(uv_loop_t *loop, const char *url, int timeout_ms, eth_rpc_t **out) {
  static uv_once_t once = UV_ONCE_INIT;
  *out = NULL;
  if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
    return LP_EINVAL;
  uv_once(&once, curl_init_once);
  eth_rpc_t *rpc = calloc(1, sizeof *rpc);
  if (!rpc || !(rpc->url = strdup(url))) {
    free(rpc);
    return LP_ENOMEM;
  }
  rpc->timeout_ms = timeout_ms > 0 ? timeout_ms : 20000;
  if (loop && !(rpc->async = net_client_new(loop))) {
    free(rpc->url);
    free(rpc);
    return LP_ENOMEM;
  }
  *out = rpc;
  return 0;
}

const char *eth_rpc_url(const eth_rpc_t *rpc) { return rpc->url; }

void eth_rpc_free(eth_rpc_t *rpc) {
  if (!rpc) return;
  if (rpc->sync) curl_easy_cleanup(rpc->sync);
  /* Runs the done callbacks of calls in flight with LP_ECANCELED before returning. */
  net_client_free(rpc->async);
  free(rpc->url);
  free(rpc);
}

/* ---- helpers --------------------------------------------------------------------------------- */

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
