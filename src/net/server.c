/* The service port: listener, connections (timers, limits, TLS or plaintext detection), routing
 * and the request/response object shared by HTTP/1.1, HTTP/2 and gRPC. */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

static void server_maybe_done(net_server_t *s);
static bool server_maybe_free(net_server_t *s);

/* ---- requests ------------------------------------------------------------------------------ */

net_req_t *net_req_new(net_conn_t *c, int version) {
  net_req_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->srv = c->srv;
  r->conn = c;
  r->version = version;
  r->tls = c->ssl != NULL;
  memcpy(r->peer, c->peer, sizeof r->peer);
  r->content_length = -1;
  r->next = c->reqs;
  c->reqs = r;
  c->nreqs++;
  c->srv->live_reqs++;
  c->srv->stats.reqs_in_flight++;
  c->srv->stats.reqs_total++;
  return r;
}

static void req_unlink(net_req_t *r) {
  net_conn_t *c = r->conn;
  if (!c) return;
  for (net_req_t **pp = &c->reqs; *pp; pp = &(*pp)->next) {
    if (*pp == r) {
      *pp = r->next;
      c->nreqs--;
      break;
    }
  }
  r->next = NULL;
  r->conn = NULL;
}

void net_chunk_free(net_chunk_t *ch) {
  if (ch->release) ch->release(ch->release_arg);
  free(ch->owned);
  free(ch);
}

static void hdrs_free(net_hdr_t *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(h[i].name);
    free(h[i].value);
  }
  free(h);
}

static void req_free(net_req_t *r) {
  net_server_t *s = r->srv;
  for (net_chunk_t *ch = r->out_head, *nx; ch; ch = nx) {
    nx = ch->next;
    net_chunk_free(ch);
  }
  hdrs_free(r->hdrs, r->nhdrs);
  hdrs_free(r->trailers, r->ntrailers);
  free(r->method);
  free(r->path);
  free(r->query);
  lp_buf_free(&r->body);
  net_grpc_reader_free(&r->grpc_rd);
  free(r->grpc_msg);
  free(r);
  s->live_reqs--;
  s->stats.reqs_in_flight--;
  server_maybe_free(s);
}

static void req_maybe_free(net_req_t *r) {
  if (r->proto_done && !r->handler_owns && !r->hold) req_free(r);
}

void net_req_unhold(net_req_t *r) {
  r->hold--;
  req_maybe_free(r);
}

/* The handler is done with r. */
static void req_finish(net_req_t *r) {
  r->finished = true;
  if (r->handler_owns) {
    r->handler_owns = false;
    req_maybe_free(r);
  }
}

void net_req_finished(net_req_t *r) { req_finish(r); }

static void req_abort(net_req_t *r) {
  if (r->aborted) return;
  r->aborted = true;
  if (r->finished) return; /* the handler is gone; its callbacks must not run */
  if (r->body_fn && !r->body_complete) {
    net_body_fn fn = r->body_fn;
    r->body_fn = NULL;
    fn(r, LP_ECANCELED, r->body_arg);
  } else if (r->data_fn && !r->body_complete) {
    net_data_fn fn = r->data_fn;
    r->data_fn = NULL;
    fn(r, NULL, 0, LP_ECANCELED, r->body_arg);
  }
  if (r->abort_fn && r->handler_owns && !r->finished) {
    net_abort_fn fn = r->abort_fn;
    r->abort_fn = NULL;
    fn(r, r->abort_arg);
  }
}

void net_req_release(net_req_t *r) {
  if (r->proto_done) return;
  net_conn_t *c = r->conn;
  req_unlink(r);
  r->proto_done = true;
  r->hold++;
  if (!r->resp_ended) req_abort(r);
  r->hold--;
  req_maybe_free(r);
  if (c) net_conn_update_timer(c);
}

int net_req_add_header(net_req_t *r, const char *name, size_t nlen, const char *value,
                       size_t vlen) {
  r->hdr_bytes += nlen + vlen + 32;
  if (r->hdr_bytes > r->srv->opts.max_header_bytes) {
    r->hdr_too_big = true;
    return 0;
  }
  if (r->nhdrs == r->hdrs_cap) {
    size_t cap = r->hdrs_cap ? r->hdrs_cap * 2 : 16;
    net_hdr_t *h = realloc(r->hdrs, cap * sizeof *h);
    if (!h) return LP_ENOMEM;
    r->hdrs = h;
    r->hdrs_cap = cap;
  }
  char *n = malloc(nlen + 1), *v = malloc(vlen + 1);
  if (!n || !v) {
    free(n);
    free(v);
    return LP_ENOMEM;
  }
  for (size_t i = 0; i < nlen; i++) n[i] = (char)tolower((unsigned char)name[i]);
  n[nlen] = 0;
  memcpy(v, value, vlen);
  v[vlen] = 0;
  r->hdrs[r->nhdrs].name = n;
  r->hdrs[r->nhdrs].value = v;
  r->nhdrs++;
  return 0;
}

int net_req_set_target(net_req_t *r, const char *target, size_t len) {
  const char *q = memchr(target, '?', len);
  size_t plen = q ? (size_t)(q - target) : len;
  free(r->path);
  free(r->query);
  r->path = lp_strndup(target, plen);
  r->query = q ? lp_strndup(q + 1, len - plen - 1) : strdup("");
  return r->path && r->query ? 0 : LP_ENOMEM;
}

static const net_route_t *route_find(net_server_t *s, const char *path) {
  const net_route_t *best = NULL;
  for (size_t i = 0; i < s->nroutes; i++) {
    const net_route_t *rt = &s->routes[i];
    if (!rt->prefix) {
      if (strcmp(rt->path, path) == 0) return rt;
    } else if (strncmp(rt->path, path, rt->path_len) == 0 &&
               (!best || rt->path_len > best->path_len)) {
      best = rt;
    }
  }
  return best;
}

static void req_call_handler(net_req_t *r) {
  r->handler_owns = true;
  r->route->fn(r, r->route->arg);
}

void net_req_headers_done(net_req_t *r) {
  net_server_t *s = r->srv;
  if (!r->method || !r->path || r->path[0] != '/') {
    if (r->path && strcmp(r->path, "*") == 0 && r->method && strcmp(r->method, "OPTIONS") == 0) {
      net_resp_send(r, 200, NULL, 0, NULL, 0);
      r->dispatched = true;
      return;
    }
    r->dispatched = true;
    net_resp_error(r, 400, "Bad Request");
    return;
  }
  r->head_only = strcmp(r->method, "HEAD") == 0;
  if (r->hdr_too_big) {
    r->dispatched = true;
    net_resp_error(r, 431, "Request Header Fields Too Large");
    return;
  }
  const char *ct = net_req_header(r, "content-type");
  if (r->version == 2 && ct && strncasecmp(ct, "application/grpc", 16) == 0) {
    r->is_grpc = true;
    net_grpc_dispatch(r);
    return;
  }
  r->route = route_find(s, r->path);
  if (!r->route) {
    r->dispatched = true;
    net_resp_error(r, 404, "404 page not found");
    return;
  }
  r->body_mode = r->route->opts.body;
  r->body_max =
      r->route->opts.max_body_bytes ? r->route->opts.max_body_bytes : s->opts.max_body_bytes;
  const char *cl = net_req_header(r, "content-length");
  if (cl && r->body_mode == NET_BODY_BUFFER) {
    char *end;
    unsigned long long v = strtoull(cl, &end, 10);
    if (*end == 0 && v > r->body_max) {
      r->body_over = true;
      r->dispatched = true;
      net_resp_error(r, 413, "http: request body too large");
      return;
    }
  }
  if (r->body_mode == NET_BODY_STREAM) {
    r->dispatched = true;
    req_call_handler(r);
  } else if (r->body_complete) {
    r->dispatched = true;
    req_call_handler(r);
  }
}

static void body_deliver_end(net_req_t *r) {
  if (r->body_fn) {
    net_body_fn fn = r->body_fn;
    r->body_fn = NULL;
    fn(r, r->body_over ? LP_ERANGE : 0, r->body_arg);
  } else if (r->data_fn) {
    net_data_fn fn = r->data_fn;
    r->data_fn = NULL;
    fn(r, NULL, 0, 0, r->body_arg);
  }
}

void net_req_body_data(net_req_t *r, const uint8_t *data, size_t len) {
  if (len == 0 || r->finished) return;
  if (r->is_grpc) {
    net_grpc_body_data(r, data, len);
    return;
  }
  if (!r->route || r->body_over) return; /* answered already, or discarding */
  if (r->data_fn) {
    r->data_fn(r, data, len, 0, r->body_arg);
    return;
  }
  if (r->body.len + len > r->body_max) {
    r->body_over = true;
    lp_buf_free(&r->body);
    if (r->body_mode == NET_BODY_BUFFER && !r->dispatched) {
      r->dispatched = true;
      net_resp_error(r, 413, "http: request body too large");
    } else if (r->body_fn) {
      net_body_fn fn = r->body_fn;
      r->body_fn = NULL;
      fn(r, LP_ERANGE, r->body_arg);
    }
    return;
  }
  if (lp_buf_append(&r->body, data, len)) {
    r->body_over = true;
    lp_buf_free(&r->body);
  }
}

void net_req_body_end(net_req_t *r) {
  if (r->body_complete) return;
  r->body_complete = true;
  if (r->is_grpc) {
    net_grpc_body_end(r);
    return;
  }
  if (!r->route || r->finished) return;
  if (r->body_mode == NET_BODY_BUFFER) {
    if (!r->dispatched && r->method) {
      r->dispatched = true;
      req_call_handler(r);
    }
    return;
  }
  body_deliver_end(r);
}

/* ---- request accessors --------------------------------------------------------------------- */

const char *net_req_method(const net_req_t *r) { return r->method ? r->method : ""; }
const char *net_req_path(const net_req_t *r) { return r->path ? r->path : ""; }
const char *net_req_query(const net_req_t *r) { return r->query ? r->query : ""; }
const char *net_req_header(const net_req_t *r, const char *name) {
  for (size_t i = 0; i < r->nhdrs; i++)
    if (strcasecmp(r->hdrs[i].name, name) == 0) return r->hdrs[i].value;
  return NULL;
}
size_t net_req_header_count(const net_req_t *r) { return r->nhdrs; }
void net_req_header_at(const net_req_t *r, size_t i, const char **name, const char **value) {
  *name = i < r->nhdrs ? r->hdrs[i].name : NULL;
  *value = i < r->nhdrs ? r->hdrs[i].value : NULL;
}
const char *net_req_peer(const net_req_t *r) { return r->peer; }
int net_req_http_version(const net_req_t *r) { return r->version; }
bool net_req_is_tls(const net_req_t *r) { return r->tls; }
bool net_req_aborted(const net_req_t *r) { return r->aborted; }
const uint8_t *net_req_body(const net_req_t *r, size_t *len) {
  if (len) *len = r->body.len;
  return r->body.data ? r->body.data : (const uint8_t *)"";
}
void net_req_on_abort(net_req_t *r, net_abort_fn fn, void *arg) {
  r->abort_fn = fn;
  r->abort_arg = arg;
}
void net_req_set_data(net_req_t *r, void *data) { r->user = data; }
void *net_req_data(const net_req_t *r) { return r->user; }

int net_req_read_body(net_req_t *r, size_t max, net_body_fn done, void *arg) {
  if (r->body_taken || r->is_grpc) return LP_EINVAL;
  r->body_taken = true;
  if (max) {
    r->body_max = max;
    if (r->body.len > max) {
      r->body_over = true;
      lp_buf_free(&r->body);
    }
  }
  if (r->aborted) {
    done(r, LP_ECANCELED, arg);
    return 0;
  }
  if (r->body_over) {
    done(r, LP_ERANGE, arg);
    return 0;
  }
  if (r->body_complete) {
    done(r, 0, arg);
    return 0;
  }
  r->body_fn = done;
  r->body_arg = arg;
  return 0;
}

int net_req_on_data(net_req_t *r, net_data_fn fn, void *arg) {
  if (r->body_taken || r->is_grpc) return LP_EINVAL;
  r->body_taken = true;
  if (r->aborted && !r->body_complete) {
    fn(r, NULL, 0, LP_ECANCELED, arg);
    return 0;
  }
  if (r->body.len) {
    fn(r, r->body.data, r->body.len, 0, arg);
    lp_buf_free(&r->body);
  }
  if (r->body_complete) {
    fn(r, NULL, 0, r->body_over ? LP_ERANGE : 0, arg);
    return 0;
  }
  if (r->body_over) {
    fn(r, NULL, 0, LP_ERANGE, arg);
    return 0;
  }
  r->data_fn = fn;
  r->body_arg = arg;
  return 0;
}

/* ---- responses ----------------------------------------------------------------------------- */

int net_status_text(int status, const char **text) {
  static const struct {
    int code;
    const char *text;
  } tab[] = {{100, "Continue"},
             {200, "OK"},
             {201, "Created"},
             {204, "No Content"},
             {206, "Partial Content"},
             {301, "Moved Permanently"},
             {302, "Found"},
             {304, "Not Modified"},
             {400, "Bad Request"},
             {401, "Unauthorized"},
             {402, "Payment Required"},
             {403, "Forbidden"},
             {404, "Not Found"},
             {405, "Method Not Allowed"},
             {408, "Request Timeout"},
             {411, "Length Required"},
             {413, "Request Entity Too Large"},
             {415, "Unsupported Media Type"},
             {429, "Too Many Requests"},
             {431, "Request Header Fields Too Large"},
             {500, "Internal Server Error"},
             {501, "Not Implemented"},
             {502, "Bad Gateway"},
             {503, "Service Unavailable"},
             {504, "Gateway Timeout"}};
  for (size_t i = 0; i < LP_ARRAY_LEN(tab); i++)
    if (tab[i].code == status) {
      *text = tab[i].text;
      return 0;
    }
  *text = "Unknown";
  return LP_ENOENT;
}

static bool header_valid(const net_header_t *h) {
  if (!h->name || !h->value || !h->name[0]) return false;
  for (const char *p = h->name; *p; p++)
    if (*p <= ' ' || *p == ':' || *p >= 127) return false;
  for (const char *p = h->value; *p; p++)
    if (*p == '\r' || *p == '\n') return false;
  return true;
}

int net_resp_start(net_req_t *r, int status, const net_header_t *hdrs, size_t n,
                   int64_t content_length) {
  if (r->resp_started || r->finished) return LP_EINVAL;
  if (status < 200 || status > 999) return LP_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!header_valid(&hdrs[i])) return LP_EINVAL;
  r->resp_started = true;
  r->status = status;
  r->content_length = content_length;
  if (!r->conn) return LP_ECANCELED;
  if (r->version == 1)
    net_h1_resp_headers(r, hdrs, n);
  else
    net_h2_resp_headers(r, hdrs, n, false);
  return 0;
}

static int queue_chunk(net_req_t *r, const void *data, size_t len, void (*release)(void *),
                       void *arg, bool copy) {
  net_chunk_t *ch = calloc(1, sizeof *ch);
  if (!ch) return LP_ENOMEM;
  if (copy) {
    ch->owned = malloc(len);
    if (!ch->owned) {
      free(ch);
      return LP_ENOMEM;
    }
    memcpy(ch->owned, data, len);
    ch->data = ch->owned;
  } else {
    ch->data = data;
    ch->release = release;
    ch->release_arg = arg;
  }
  ch->len = len;
  if (r->out_tail)
    r->out_tail->next = ch;
  else
    r->out_head = ch;
  r->out_tail = ch;
  r->out_pending += len;
  return 0;
}

net_chunk_t *net_req_pop_chunk(net_req_t *r) {
  net_chunk_t *ch = r->out_head;
  if (!ch) return NULL;
  r->out_head = ch->next;
  if (!r->out_head) r->out_tail = NULL;
  ch->next = NULL;
  return ch;
}

static void resp_kick(net_req_t *r) {
  if (!r->conn) return;
  if (r->version == 1)
    net_h1_resp_flush_body(r);
  else
    net_h2_resp_kick(r);
}

static int resp_write(net_req_t *r, const void *data, size_t len, void (*release)(void *),
                      void *arg, bool copy) {
  if (!r->resp_started || r->resp_ended || r->finished) {
    if (release) release(arg);
    return LP_EINVAL;
  }
  if (!r->conn || r->aborted) {
    if (release) release(arg);
    return LP_ECANCELED;
  }
  if (len == 0 || r->head_only) {
    if (release) release(arg);
    return 0;
  }
  int rc = queue_chunk(r, data, len, release, arg, copy);
  if (rc) {
    if (release) release(arg);
    return rc;
  }
  resp_kick(r);
  return 0;
}

int net_resp_write(net_req_t *r, const void *data, size_t len) {
  return resp_write(r, data, len, NULL, NULL, true);
}

int net_resp_write_ref(net_req_t *r, const void *data, size_t len, void (*release)(void *),
                       void *arg) {
  return resp_write(r, data, len, release, arg, false);
}

static int set_trailers(net_req_t *r, const net_header_t *t, size_t n) {
  if (!n) return 0;
  r->trailers = calloc(n, sizeof *r->trailers);
  if (!r->trailers) return LP_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    r->trailers[i].name = strdup(t[i].name);
    r->trailers[i].value = strdup(t[i].value);
    r->ntrailers++;
    if (!r->trailers[i].name || !r->trailers[i].value) return LP_ENOMEM;
    for (char *p = r->trailers[i].name; *p; p++) *p = (char)tolower((unsigned char)*p);
  }
  return 0;
}

int net_resp_end(net_req_t *r, const net_header_t *trailers, size_t n) {
  if (r->finished) return LP_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!header_valid(&trailers[i])) return LP_EINVAL;
  if (!r->resp_started) {
    int rc = net_resp_start(r, 200, NULL, 0, n ? -1 : 0);
    if (rc && rc != LP_ECANCELED) return rc;
  }
  int rc = 0;
  if (!r->conn || r->aborted) {
    rc = LP_ECANCELED;
  } else {
    r->resp_ended = true;
    rc = set_trailers(r, trailers, n);
    if (r->version == 1)
      net_h1_resp_end(r);
    else
      net_h2_resp_kick(r);
  }
  req_finish(r);
  return rc;
}

int net_resp_send(net_req_t *r, int status, const net_header_t *hdrs, size_t n, const void *body,
                  size_t len) {
  if (r->finished || r->resp_started) return LP_EINVAL;
  int rc = net_resp_start(r, status, hdrs, n, (int64_t)len);
  if (rc == 0 && len) rc = net_resp_write(r, body, len);
  int rc2 = net_resp_end(r, NULL, 0);
  return rc ? rc : rc2;
}

int net_resp_error(net_req_t *r, int status, const char *msg) {
  static const net_header_t h[] = {{"content-type", "text/plain; charset=utf-8"},
                                   {"x-content-type-options", "nosniff"}};
  size_t len = strlen(msg);
  char *body = malloc(len + 2);
  if (!body) {
    net_resp_end(r, NULL, 0);
    return LP_ENOMEM;
  }
  memcpy(body, msg, len);
  body[len] = '\n';
  int rc = net_resp_send(r, status, h, 2, body, len + 1);
  free(body);
  return rc;
}

size_t net_resp_pending(const net_req_t *r) { return r->out_pending; }

/* ---- connections --------------------------------------------------------------------------- */

static uint8_t g_readbuf[65536];
static bool g_readbuf_busy;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  /* every read is consumed before the callback returns, so one buffer serves all sockets */
  if (g_readbuf_busy) {
    buf->base = malloc(65536);
    buf->len = buf->base ? 65536 : 0;
    return;
  }
  g_readbuf_busy = true;
  buf->base = (char *)g_readbuf;
  buf->len = sizeof g_readbuf;
}

static void conn_free(net_conn_t *c) {
  net_server_t *s = c->srv;
  if (c->ssl) SSL_free(c->ssl);
  net_h2_free(c);
  net_h1_free(c);
  lp_buf_free(&c->detect);
  lp_buf_free(&c->out);
  lp_buf_free(&c->tls_left);
  lp_buf_free(&c->tls_wire);
  free(c);
  s->open_handles--;
  /* the done callback may free the server, so nothing touches s after it */
  if (!server_maybe_free(s)) server_maybe_done(s);
}

static void on_conn_closed(uv_handle_t *h) {
  net_conn_t *c = h->data;
  /* both the socket and the timer point here; the second close frees */
  if (c->tcp.data == NULL) {
    conn_free(c);
    return;
  }
  c->tcp.data = NULL;
}

void net_conn_close(net_conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  net_server_t *s = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->stats.conns_open--;
  if (c->h2) net_h2_detach_all(c);
  while (c->reqs) net_req_release(c->reqs);
  c->h1_req = NULL;
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

void net_conn_protocol_error(net_conn_t *c, const char *what) {
  c->srv->stats.protocol_errors++;
  LOGV(LP_V_DEBUG, "Closing connection from %s: %s", c->peer, what);
  net_conn_close(c);
}

typedef struct write_req {
  uv_write_t w;
  net_conn_t *c;
  size_t len;
  uint8_t *data;
} write_req_t;

static void on_write(uv_write_t *w, int status) {
  write_req_t *wr = (write_req_t *)w;
  net_conn_t *c = wr->c;
  c->write_queued -= wr->len;
  free(wr->data);
  free(wr);
  if (c->closing) return;
  if (status < 0) {
    net_conn_close(c);
    return;
  }
  if (c->proto == NET_PROTO_H2 && c->write_queued < NET_WRITE_HIGH_WATER / 2) net_h2_send(c);
  if (c->closing) return;
  if (c->close_after_write && c->write_queued == 0 && c->out.len == 0) {
    net_conn_close(c);
    return;
  }
  if (c->write_queued == 0) net_conn_update_timer(c);
}

void net_conn_flush(net_conn_t *c) {
  if (c->closing) return;
  lp_buf_t wire = LP_BUF_INIT;
  if (c->ssl) {
    if (net_tls_encrypt(c, &wire)) {
      lp_buf_free(&wire);
      net_conn_close(c);
      return;
    }
  } else {
    wire = c->out;
    c->out = (lp_buf_t)LP_BUF_INIT;
  }
  if (wire.len == 0) {
    lp_buf_free(&wire);
    if (c->close_after_write && c->write_queued == 0) net_conn_close(c);
    return;
  }
  write_req_t *wr = malloc(sizeof *wr);
  if (!wr) {
    lp_buf_free(&wire);
    net_conn_close(c);
    return;
  }
  wr->c = c;
  wr->len = wire.len;
  wr->data = wire.data;
  uv_buf_t b = uv_buf_init((char *)wire.data, (unsigned)wire.len);
  c->write_queued += wire.len;
  if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
    c->write_queued -= wire.len;
    free(wire.data);
    free(wr);
    net_conn_close(c);
  }
}

size_t net_conn_write_backlog(const net_conn_t *c) { return c->write_queued + c->out.len; }

static void on_close_timer(uv_timer_t *t) {
  net_conn_t *c = t->data;
  if (!c->closing) net_conn_close(c);
}

static bool conn_has_input(net_conn_t *c) {
  uv_os_fd_t fd;
  char b;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return false;
  return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

static void on_timer(uv_timer_t *t) {
  net_conn_t *c = t->data;
  if (c->closing) return;
  bool idle = c->proto != NET_PROTO_DETECT && (!c->ssl || c->handshake_done) && !c->phase_deadline;
  /* a loop that was held up runs timers before reading: requests already waiting in the
   * socket mean the connection is not idle */
  if (idle && conn_has_input(c)) {
    uv_timer_start(&c->timer, on_timer, c->srv->opts.idle_timeout_ms, 0);
    return;
  }
  LOGV(LP_V_DEBUG, "Closing connection from %s: timed out", c->peer);
  if (idle && c->proto == NET_PROTO_H2) {
    /* as go does: a GOAWAY first, so the client knows no request was lost */
    net_h2_shutdown(c);
    if (c->closing) return;
    c->close_after_write = true;
    net_conn_flush(c);
    if (!c->closing && c->write_queued == 0) net_conn_close(c);
    /* a peer that does not read its GOAWAY is not waited for long */
    if (!c->closing) uv_timer_start(&c->timer, on_close_timer, 1000, 0);
    return;
  }
  net_conn_close(c);
}

static bool conn_busy(const net_conn_t *c) {
  /* a peer still taking in a response is not idle, even when every request is answered */
  if (c->write_queued || c->out.len) return true;
  for (const net_req_t *r = c->reqs; r; r = r->next)
    if (!r->resp_ended || r->out_head) return true;
  return false;
}

void net_conn_update_timer(net_conn_t *c) {
  if (c->closing) return;
  net_server_t *s = c->srv;
  uint64_t now = uv_now(s->loop);
  uint64_t ms;
  if (c->proto == NET_PROTO_DETECT || (c->ssl && !c->handshake_done)) {
    return; /* the handshake deadline set at accept stays */
  } else if (c->phase_deadline) {
    ms = c->phase_deadline > now ? c->phase_deadline - now : 1;
  } else if (c->nreqs && conn_busy(c)) {
    uv_timer_stop(&c->timer);
    return;
  } else {
    if (s->stopping) {
      if (c->proto == NET_PROTO_H2) {
        net_h2_shutdown(c);
        if (c->closing) return;
        if (c->nreqs) return;
      }
      c->close_after_write = true;
      net_conn_flush(c);
      return;
    }
    ms = s->opts.idle_timeout_ms;
  }
  LOGV(LP_V_VERBOSE, "conn %s: timer %llu ms (proto %d, reqs %zu, header phase %d)", c->peer,
       (unsigned long long)ms, (int)c->proto, c->nreqs, c->phase_deadline != 0);
  uv_timer_start(&c->timer, on_timer, ms, 0);
}

void net_conn_set_proto(net_conn_t *c, int proto) {
  c->proto = proto;
  int rc = proto == NET_PROTO_H2 ? net_h2_init(c, NULL, 0) : net_h1_init(c);
  if (rc) {
    net_conn_close(c);
    return;
  }
  net_conn_update_timer(c);
}

void net_conn_on_plain(net_conn_t *c, const uint8_t *data, size_t len) {
  if (c->proto == NET_PROTO_DETECT) {
    /* plaintext port: HTTP/2 prior knowledge starts with the fixed preface, anything else is
     * HTTP/1.1 */
    if (lp_buf_append(&c->detect, data, len)) {
      net_conn_close(c);
      return;
    }
    size_t n = LP_MIN(c->detect.len, (size_t)H2_PREFACE_LEN);
    bool h2 = memcmp(c->detect.data, H2_PREFACE, n) == 0;
    if (h2 && c->detect.len < H2_PREFACE_LEN) return;
    c->proto = h2 ? NET_PROTO_H2 : NET_PROTO_H1;
    lp_buf_t d = c->detect;
    c->detect = (lp_buf_t)LP_BUF_INIT;
    int rc = h2 ? net_h2_init(c, d.data, d.len) : net_h1_init(c);
    if (rc) {
      lp_buf_free(&d);
      net_conn_close(c);
      return;
    }
    net_conn_update_timer(c);
    if (!h2 && !c->closing) net_h1_feed(c, d.data, d.len);
    lp_buf_free(&d);
    return;
  }
  if (c->proto == NET_PROTO_H1)
    net_h1_feed(c, data, len);
  else
    net_h2_feed(c, data, len);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  net_conn_t *c = st->data;
  bool shared = buf->base == (char *)g_readbuf;
  if (c && !c->closing) {
    if (nread < 0) {
      if (c->proto == NET_PROTO_H1 && nread == UV_EOF) net_h1_on_eof(c);
      if (!c->closing) net_conn_close(c);
    } else if (nread > 0) {
      c->in_read++;
      if (c->ssl) {
        int rc = net_tls_feed(c, (const uint8_t *)buf->base, (size_t)nread);
        if (rc == LP_EPROTO && !c->closing)
          net_conn_protocol_error(c, "TLS error");
        else if (rc && !c->closing)
          net_conn_close(c);
      } else {
        net_conn_on_plain(c, (const uint8_t *)buf->base, (size_t)nread);
      }
      c->in_read--;
      if (!c->closing && c->proto == NET_PROTO_H2) net_h2_send(c);
      /* new streams or body bytes change what the connection waits for */
      if (!c->closing) net_conn_update_timer(c);
    }
  }
  if (shared)
    g_readbuf_busy = false;
  else
    free(buf->base);
}

static void on_connection(uv_stream_t *ls, int status) {
  net_server_t *s = ls->data;
  if (status < 0) return;
  net_conn_t *c = calloc(1, sizeof *c);
  if (!c) return;
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  s->open_handles++;
  /* linked before any early close so net_conn_close can unlink it */
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->stats.conns_open++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
    net_conn_close(c);
    return;
  }
  s->stats.conns_accepted++;
  if (s->stopping || s->stats.conns_open > s->opts.max_conns) {
    s->stats.conns_refused++;
    net_conn_close(c);
    return;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    char ip[INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
      snprintf(c->peer, sizeof c->peer, "[%s]:%d", ip, port);
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
      snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
    }
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (s->tls && net_tls_conn_init(c)) {
    net_conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timer, s->opts.handshake_timeout_ms, 0);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) net_conn_close(c);
}

/* ---- server -------------------------------------------------------------------------------- */

static int parse_addr(net_server_t *s, const char *addr, char *err, size_t errlen) {
  s->tls = true;
  if (strncmp(addr, "http://", 7) == 0) {
    s->tls = false;
    addr += 7;
  } else if (strncmp(addr, "https://", 8) == 0) {
    addr += 8;
  }
  const char *colon = strrchr(addr, ':');
  if (!colon) {
    snprintf(err, errlen, "listen address %s has no port", addr);
    return LP_EINVAL;
  }
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (colon[1] == 0 || *end || port < 0 || port > 65535) {
    snprintf(err, errlen, "bad port in listen address %s", addr);
    return LP_EINVAL;
  }
  const char *h = addr;
  size_t hl = (size_t)(colon - addr);
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  s->host = hl ? lp_strndup(h, hl) : strdup("0.0.0.0");
  s->port_req = (int)port;
  return s->host ? 0 : LP_ENOMEM;
}

int net_server_new(uv_loop_t *loop, const net_server_opts_t *opts, net_server_t **out, char *err,
                   size_t errlen) {
  net_server_t *s = calloc(1, sizeof *s);
  if (!s) return LP_ENOMEM;
  s->loop = loop;
  s->opts = *opts;
  net_server_opts_t *o = &s->opts;
  if (o->max_header_bytes == 0) o->max_header_bytes = 256 * 1024;
  if (o->max_header_bytes < 64 * 1024) o->max_header_bytes = 64 * 1024;
  if (!o->max_body_bytes) o->max_body_bytes = 1 << 20;
  if (!o->max_streams) o->max_streams = 256;
  if (!o->max_conns) o->max_conns = 10000;
  if (!o->idle_timeout_ms) o->idle_timeout_ms = 10 * 60 * 1000;
  if (!o->handshake_timeout_ms) o->handshake_timeout_ms = 10 * 1000;
  if (!o->header_timeout_ms) o->header_timeout_ms = 10 * 1000;
  if (!o->h2_stream_window) o->h2_stream_window = 4u << 20;
  if (o->h2_stream_window < (1u << 20)) o->h2_stream_window = 1u << 20;
  if (o->h2_stream_window > 0x7fffffff) o->h2_stream_window = 0x7fffffff;
  if (!o->h2_conn_window) o->h2_conn_window = 64u << 20;
  if (o->h2_conn_window > 0x7fffffff) o->h2_conn_window = 0x7fffffff;
  o->addr = o->cert_file = o->key_file = o->cert_dir = o->cert_host = NULL;
  int rc = parse_addr(s, opts->addr ? opts->addr : ":8935", err, errlen);
  if (rc == 0 && s->tls) {
    o->cert_file = opts->cert_file;
    o->key_file = opts->key_file;
    o->cert_dir = opts->cert_dir;
    o->cert_host = opts->cert_host;
    rc = net_tls_ctx_new(s, err, errlen);
    o->cert_file = o->key_file = o->cert_dir = o->cert_host = NULL;
  }
  if (rc) {
    free(s->host);
    free(s);
    return rc;
  }
  *out = s;
  return 0;
}

int net_server_listen(net_server_t *s, char *err, size_t errlen) {
  if (s->listening) return LP_EEXIST;
  struct sockaddr_storage ss;
  if (uv_ip4_addr(s->host, s->port_req, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(s->host, s->port_req, (struct sockaddr_in6 *)&ss) != 0) {
    snprintf(err, errlen, "bad listen host %s", s->host);
    return LP_EINVAL;
  }
  uv_tcp_init(s->loop, &s->listener);
  s->listener.data = s;
  s->listener_open = true;
  s->open_handles++;
  int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
  if (rc < 0) {
    snprintf(err, errlen, "listen on %s:%d: %s", s->host, s->port_req, uv_strerror(rc));
    return LP_EIO;
  }
  int sl = sizeof ss;
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sl);
  s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
  s->listening = true;
  LOGI("Listening for %s on %s:%d", s->tls ? "TLS (h2, http/1.1)" : "plaintext HTTP/1.1 and h2c",
       s->host, s->port);
  return 0;
}

int net_server_port(const net_server_t *s) { return s->port; }
bool net_server_is_tls(const net_server_t *s) { return s->tls; }
const char *net_server_cert_file(const net_server_t *s) { return s->cert_path; }

int net_server_route(net_server_t *s, const char *path, bool prefix, const net_route_opts_t *opts,
                     net_handler_fn fn, void *arg) {
  if (!path || path[0] != '/' || !fn) return LP_EINVAL;
  for (size_t i = 0; i < s->nroutes; i++) {
    net_route_t *rt = &s->routes[i];
    if (rt->prefix == prefix && strcmp(rt->path, path) == 0) {
      rt->opts = opts ? *opts : (net_route_opts_t){0};
      rt->fn = fn;
      rt->arg = arg;
      return 0;
    }
  }
  net_route_t *rs = realloc(s->routes, (s->nroutes + 1) * sizeof *rs);
  if (!rs) return LP_ENOMEM;
  s->routes = rs;
  net_route_t *rt = &rs[s->nroutes];
  rt->path = strdup(path);
  if (!rt->path) return LP_ENOMEM;
  rt->path_len = strlen(path);
  rt->prefix = prefix;
  rt->opts = opts ? *opts : (net_route_opts_t){0};
  rt->fn = fn;
  rt->arg = arg;
  s->nroutes++;
  return 0;
}

int net_server_grpc(net_server_t *s, const char *method, size_t max_msg_bytes, net_grpc_fn fn,
                    void *arg) {
  if (!method || method[0] != '/' || !fn) return LP_EINVAL;
  for (size_t i = 0; i < s->ngrpc; i++) {
    if (strcmp(s->grpc[i].path, method) == 0) {
      s->grpc[i].fn = fn;
      s->grpc[i].arg = arg;
      s->grpc[i].max_msg = max_msg_bytes ? max_msg_bytes : 4u << 20;
      return 0;
    }
  }
  net_grpc_method_t *g = realloc(s->grpc, (s->ngrpc + 1) * sizeof *g);
  if (!g) return LP_ENOMEM;
  s->grpc = g;
  g[s->ngrpc].path = strdup(method);
  if (!g[s->ngrpc].path) return LP_ENOMEM;
  g[s->ngrpc].max_msg = max_msg_bytes ? max_msg_bytes : 4u << 20;
  g[s->ngrpc].fn = fn;
  g[s->ngrpc].arg = arg;
  s->ngrpc++;
  return 0;
}

void net_server_get_stats(const net_server_t *s, net_server_stats_t *out) { *out = s->stats; }

static void on_server_handle_closed(uv_handle_t *h) {
  net_server_t *s = h->data;
  s->open_handles--;
  if (!server_maybe_free(s)) server_maybe_done(s);
}

static void close_listener(net_server_t *s) {
  if (s->listener_open) {
    s->listener_open = false;
    s->listening = false;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
  }
}

static void server_maybe_done(net_server_t *s) {
  if (!s->stopping || s->done_called || s->conns) return;
  s->done_called = true;
  if (s->grace_open) {
    s->grace_open = false;
    uv_close((uv_handle_t *)&s->grace_timer, on_server_handle_closed);
  }
  if (s->done_fn) s->done_fn(s, s->done_arg);
}

static void on_grace(uv_timer_t *t) {
  net_server_t *s = t->data;
  while (s->conns) net_conn_close(s->conns);
}

void net_server_shutdown(net_server_t *s, uint64_t grace_ms, net_server_done_fn done, void *arg) {
  if (s->stopping) return;
  s->stopping = true;
  s->done_fn = done;
  s->done_arg = arg;
  close_listener(s);
  uv_timer_init(s->loop, &s->grace_timer);
  s->grace_timer.data = s;
  s->grace_open = true;
  s->open_handles++;
  uv_timer_start(&s->grace_timer, on_grace, grace_ms, 0);
  for (net_conn_t *c = s->conns, *nx; c; c = nx) {
    nx = c->next;
    if (c->proto == NET_PROTO_DETECT || (c->ssl && !c->handshake_done)) {
      net_conn_close(c);
      continue;
    }
    if (c->proto == NET_PROTO_H1) c->h1_keep_alive = false;
    /* GOAWAY now, so clients stop opening streams while the ones in flight finish */
    if (c->proto == NET_PROTO_H2) net_h2_shutdown(c);
    if (!c->closing) net_conn_update_timer(c);
  }
  server_maybe_done(s);
}

/* Returns true when s is gone. */
static bool server_maybe_free(net_server_t *s) {
  if (!s->free_requested || s->open_handles || s->live_reqs) return false;
  for (size_t i = 0; i < s->nroutes; i++) free(s->routes[i].path);
  free(s->routes);
  for (size_t i = 0; i < s->ngrpc; i++) free(s->grpc[i].path);
  free(s->grpc);
  SSL_CTX_free(s->ssl_ctx);
  free(s->cert_path);
  free(s->host);
  free(s);
  return true;
}

void net_server_free(net_server_t *s) {
  if (!s) return;
  s->done_called = true; /* no done callback from here on */
  s->free_requested = true;
  close_listener(s);
  if (s->grace_open) {
    s->grace_open = false;
    uv_close((uv_handle_t *)&s->grace_timer, on_server_handle_closed);
  }
  while (s->conns) net_conn_close(s->conns);
  server_maybe_free(s);
}
