/* HTTP client: libcurl's multi interface driven by the uv loop (uv_poll per socket, one
 * uv_timer), plus a gRPC call on top of it. */
#include "lpod/net.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

struct net_client {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  uv_timer_t kick;
  struct poll_ctx *polls;
  uint64_t progress; /* bytes handed to callbacks, to see whether a kick delivered anything */
  net_fetch_t *fetches;
  int open_handles;
  bool freeing;
};

typedef struct poll_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  net_client_t *c;
  struct poll_ctx *prev, *next;
  bool kick;
} poll_ctx_t;

struct net_fetch {
  net_client_t *c;
  net_fetch_t *prev, *next;
  bool linked;
  CURL *easy;
  struct curl_slist *hdrs;
  lp_buf_t resp;
  size_t max;
  net_header_t *rh;
  size_t nrh, rh_cap;
  net_fetch_data_fn on_data;
  net_fetch_done_fn done;
  void *arg;
  bool over;
  bool data_abort;
  char errbuf[CURL_ERROR_SIZE];
  /* gRPC calls */
  net_grpc_reader_t rd;
  net_grpc_call_msg_fn on_msg;
  net_grpc_call_done_fn gdone;
  void *garg;
  int grpc_rd_err;
};

static void client_maybe_free(net_client_t *c) {
  if (c->freeing && c->open_handles == 0) free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  net_client_t *c = h->data;
  if ((void *)h != (void *)&c->timer && (void *)h != (void *)&c->kick) free(h);
  c->open_handles--;
  client_maybe_free(c);
}

static void fetch_unlink(net_fetch_t *f) {
  net_client_t *c = f->c;
  if (!f->linked) return;
  f->linked = false;
  if (f->prev)
    f->prev->next = f->next;
  else
    c->fetches = f->next;
  if (f->next) f->next->prev = f->prev;
  f->prev = f->next = NULL;
}

static void fetch_free(net_fetch_t *f) {
  net_client_t *c = f->c;
  fetch_unlink(f);
  if (f->easy) {
    if (c->multi) curl_multi_remove_handle(c->multi, f->easy);
    curl_easy_cleanup(f->easy);
  }
  curl_slist_free_all(f->hdrs);
  lp_buf_free(&f->resp);
  for (size_t i = 0; i < f->nrh; i++) {
    free((char *)f->rh[i].name);
    free((char *)f->rh[i].value);
  }
  free(f->rh);
  net_grpc_reader_free(&f->rd);
  free(f);
}

static void fetch_complete(net_fetch_t *f, CURLcode code) {
  net_fetch_result_t res = {0};
  long status = 0;
  curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
  res.status = status;
  if (f->data_abort) {
    res.err = LP_ECANCELED;
    res.error = "transfer aborted by the receiver";
  } else if (f->over) {
    res.err = LP_ERANGE;
    res.error = "response body too large";
  } else if (code == CURLE_OPERATION_TIMEDOUT) {
    res.err = LP_ETIMEDOUT;
    res.error = f->errbuf[0] ? f->errbuf : curl_easy_strerror(code);
  } else if (code != CURLE_OK) {
    res.err = LP_EIO;
    res.error = f->errbuf[0] ? f->errbuf : curl_easy_strerror(code);
  }
  res.body = f->resp.data ? f->resp.data : (const uint8_t *)"";
  res.body_len = f->resp.len;
  res.headers = f->rh;
  res.nheaders = f->nrh;
  res.owned = &f->resp;
  net_fetch_done_fn done = f->done;
  void *arg = f->arg;
  f->done = NULL;
  /* unlinked first: done may free the client, which must not see this fetch again */
  fetch_unlink(f);
  if (done) done(&res, arg);
  fetch_free(f);
}

uint8_t *net_fetch_take_body(const net_fetch_result_t *res, size_t *len) {
  *len = 0;
  if (!res->owned || !res->owned->data || res->owned->len == 0) return NULL;
  return lp_buf_steal(res->owned, len);
}

static void check_done(net_client_t *c) {
  CURLMsg *m;
  int left;
  while (c->multi && (m = curl_multi_info_read(c->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    net_fetch_t *f = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&f);
    if (f) fetch_complete(f, m->data.result);
  }
}

static void on_kick(uv_timer_t *t) {
  net_client_t *c = t->data;
  uint64_t before = c->progress;
  curl_socket_t fds[64];
  size_t n = 0;
  for (poll_ctx_t *q = c->polls; q && n < LP_ARRAY_LEN(fds); q = q->next)
    if (q->kick) fds[n++] = q->fd;
  int running = 0;
  /* by descriptor: a pass can close sockets, so no poll_ctx pointer is kept across it */
  for (size_t i = 0; i < n && c->multi; i++)
    curl_multi_socket_action(c->multi, fds[i], CURL_CSELECT_IN, &running);
  if (!c->multi) return;
  check_done(c);
  if (c->multi && c->progress != before && running > 0) {
    uv_timer_start(&c->kick, on_kick, 0, 0);
    return;
  }
  for (poll_ctx_t *q = c->polls; q; q = q->next) q->kick = false;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  poll_ctx_t *p = h->data;
  net_client_t *c = p->c;
  int flags = 0;
  if (status < 0) flags |= CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(c->multi, p->fd, flags, &running);
  check_done(c);
  /* libcurl 7.88 can keep decoded HTTP/2 data in its own buffers after the socket is drained and
   * then waits for socket activity that never comes; one more pass after a readable event
   * delivers it */
  if ((events & UV_READABLE) && running > 0 && c->multi) {
    for (poll_ctx_t *q = c->polls; q; q = q->next)
      if (q->fd == p->fd) q->kick = true;
    uv_timer_start(&c->kick, on_kick, 1, 0);
  }
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  net_client_t *c = userp;
  poll_ctx_t *p = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (p) {
      if (p->prev)
        p->prev->next = p->next;
      else
        c->polls = p->next;
      if (p->next) p->next->prev = p->prev;
      uv_poll_stop(&p->poll);
      p->poll.data = c;
      uv_close((uv_handle_t *)&p->poll, on_handle_closed);
      curl_multi_assign(c->multi, s, NULL);
    }
    return 0;
  }
  if (!p) {
    p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->fd = s;
    p->c = c;
    if (uv_poll_init_socket(c->loop, &p->poll, s) < 0) {
      free(p);
      return -1;
    }
    c->open_handles++;
    p->poll.data = p;
    p->next = c->polls;
    if (c->polls) c->polls->prev = p;
    c->polls = p;
    curl_multi_assign(c->multi, s, p);
  }
  int ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
  uv_poll_start(&p->poll, ev, on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *t) {
  net_client_t *c = t->data;
  int running;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(c);
}

static int on_timer(CURLM *m, long ms, void *userp) {
  net_client_t *c = userp;
  if (ms < 0)
    uv_timer_stop(&c->timer);
  else
    uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0);
  return 0;
}

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

net_client_t *net_client_new(uv_loop_t *loop) {
  static uv_once_t once = UV_ONCE_INIT;
  uv_once(&once, curl_init_once);
  net_client_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->loop = loop;
  c->multi = curl_multi_init();
  if (!c->multi) {
    free(c);
    return NULL;
  }
  uv_timer_init(loop, &c->timer);
  uv_timer_init(loop, &c->kick);
  c->timer.data = c;
  c->kick.data = c;
  c->open_handles = 2;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  return c;
}

void net_client_free(net_client_t *c) {
  if (!c || c->freeing) return;
  while (c->fetches) {
    net_fetch_t *f = c->fetches;
    net_fetch_done_fn done = f->done;
    f->done = NULL;
    if (done) {
      net_fetch_result_t res = {
          .err = LP_ECANCELED, .error = "client closed", .body = (const uint8_t *)""};
      done(&res, f->arg);
    }
    if (c->fetches == f) fetch_free(f);
  }
  c->freeing = true;
  curl_multi_cleanup(c->multi);
  c->multi = NULL;
  /* sockets libcurl closed during cleanup without telling the socket callback */
  while (c->polls) {
    poll_ctx_t *p = c->polls;
    c->polls = p->next;
    uv_poll_stop(&p->poll);
    p->poll.data = c;
    uv_close((uv_handle_t *)&p->poll, on_handle_closed);
  }
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->kick, on_handle_closed);
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud) {
  net_fetch_t *f = ud;
  size_t len = size * n;
  f->c->progress += len;
  if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
    /* a new status line (after 100 Continue or a redirect): earlier headers don't count */
    for (size_t i = 0; i < f->nrh; i++) {
      free((char *)f->rh[i].name);
      free((char *)f->rh[i].value);
    }
    f->nrh = 0;
    return len;
  }
  const char *colon = memchr(buf, ':', len);
  if (!colon) return len;
  size_t nl = (size_t)(colon - buf);
  const char *v = colon + 1, *end = buf + len;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
  if (f->nrh == f->rh_cap) {
    size_t cap = f->rh_cap ? 2 * f->rh_cap : 16;
    net_header_t *h = realloc(f->rh, cap * sizeof *h);
    if (!h) return 0;
    f->rh = h;
    f->rh_cap = cap;
  }
  char *name = lp_strndup(buf, nl), *val = lp_strndup(v, (size_t)(end - v));
  if (!name || !val) {
    free(name);
    free(val);
    return 0;
  }
  for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
  f->rh[f->nrh].name = name;
  f->rh[f->nrh].value = val;
  f->nrh++;
  return len;
}

static size_t on_write(char *buf, size_t size, size_t n, void *ud) {
  net_fetch_t *f = ud;
  size_t len = size * n;
  f->c->progress += len;
  if (f->on_data) {
    if (f->on_data((const uint8_t *)buf, len, f->arg)) {
      f->data_abort = true;
      return 0;
    }
    return len;
  }
  if (f->resp.len + len > f->max) {
    f->over = true;
    return 0;
  }
  return lp_buf_append(&f->resp, buf, len) ? 0 : len;
}

static int fetch_setup(net_client_t *c, const net_fetch_opts_t *o, net_fetch_t **out) {
  if (!o->url || c->freeing) return LP_EINVAL;
  net_fetch_t *f = calloc(1, sizeof *f);
  if (!f) return LP_ENOMEM;
  f->c = c;
  f->next = c->fetches;
  if (c->fetches) c->fetches->prev = f;
  c->fetches = f;
  f->linked = true;
  f->max = o->max_body_bytes ? o->max_body_bytes : 300u * 1000 * 1000;
  f->on_data = o->on_data;
  CURL *e = f->easy = curl_easy_init();
  if (!e) {
    fetch_free(f);
    return LP_ENOMEM;
  }
  curl_easy_setopt(e, CURLOPT_PRIVATE, f);
  curl_easy_setopt(e, CURLOPT_URL, o->url);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
  if (getenv("LPOD_CURL_VERBOSE")) curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(o->connect_timeout_ms ? o->connect_timeout_ms : 10000));
  if (o->timeout_ms) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
  bool https = strncasecmp(o->url, "https:", 6) == 0;
  long ver = CURL_HTTP_VERSION_2TLS;
  if (o->version == NET_HTTP_1) ver = CURL_HTTP_VERSION_1_1;
  if (o->version == NET_HTTP_2)
    ver = https ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, ver);
  /* concurrent requests to one TLS host share an HTTP/2 connection instead of each opening
   * one; over HTTP/1.1 waiting would only queue them behind each other */
  if (https && o->version != NET_HTTP_1) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  /* libcurl reuses a pooled HTTP/1.1 connection for a request that wants HTTP/2 (it only avoids
   * reusing a newer version than the one asked for), and a gRPC call sent over HTTP/1.1 fails.
   * Connections whose TLS settings differ are never shared, so HTTP/1.1-only transfers name the
   * default cipher list explicitly: the same ciphers, a pool of their own. */
  if (https && o->version == NET_HTTP_1) curl_easy_setopt(e, CURLOPT_SSL_CIPHER_LIST, "DEFAULT");
  if (ver == CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE) {
    /* libcurl 7.88 fails a second request on a reused h2c connection ("Error in the HTTP2
     * framing layer", with any server), so each h2c transfer gets its own connection */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
  }
  if (o->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  const char *method = o->method ? o->method : (o->body ? "POST" : "GET");
  if (o->body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body ? (const char *)o->body : "");
  }
  if (strcmp(method, "HEAD") == 0)
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  else if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  /* no 100-continue round trip: the servers we talk to read bodies at once */
  struct curl_slist *l = curl_slist_append(NULL, "Expect:");
  for (size_t i = 0; l && i < o->nheaders; i++) {
    size_t n = strlen(o->headers[i].name) + strlen(o->headers[i].value) + 3;
    char *line = malloc(n);
    if (!line) break;
    snprintf(line, n, "%s: %s", o->headers[i].name, o->headers[i].value);
    struct curl_slist *nl = curl_slist_append(l, line);
    free(line);
    if (!nl) break;
    l = nl;
  }
  f->hdrs = l;
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, l);
  *out = f;
  return 0;
}

int net_client_fetch(net_client_t *c, const net_fetch_opts_t *opts, net_fetch_done_fn done,
                     void *arg, net_fetch_t **out) {
  net_fetch_t *f;
  int rc = fetch_setup(c, opts, &f);
  if (rc) return rc;
  f->done = done;
  f->arg = arg;
  if (curl_multi_add_handle(c->multi, f->easy) != CURLM_OK) {
    fetch_free(f);
    return LP_EIO;
  }
  if (out) *out = f;
  return 0;
}

void net_fetch_cancel(net_fetch_t *f) {
  if (!f) return;
  f->done = NULL;
  fetch_free(f);
}

const char *net_fetch_header(const net_fetch_result_t *res, const char *name) {
  for (size_t i = 0; i < res->nheaders; i++)
    if (strcasecmp(res->headers[i].name, name) == 0) return res->headers[i].value;
  return NULL;
}

/* ---- gRPC client ---------------------------------------------------------------------------- */

static int grpc_msg(const uint8_t *msg, size_t len, void *arg) {
  net_fetch_t *f = arg;
  return f->on_msg && f->on_msg(msg, len, f->garg) ? LP_ECANCELED : 0;
}

static int grpc_on_data(const uint8_t *data, size_t len, void *arg) {
  net_fetch_t *f = arg;
  int rc = net_grpc_reader_feed(&f->rd, data, len, grpc_msg, f);
  if (rc) f->grpc_rd_err = rc;
  return rc;
}

static void grpc_done(const net_fetch_result_t *res, void *arg) {
  net_fetch_t *f = arg;
  net_grpc_call_done_fn done = f->gdone;
  void *garg = f->garg;
  f->gdone = NULL;
  if (!done) return;
  /* trailers come after the headers, so the last grpc-status is the final one */
  const char *st = NULL, *msg = NULL;
  for (size_t i = 0; i < res->nheaders; i++) {
    if (strcmp(res->headers[i].name, "grpc-status") == 0) st = res->headers[i].value;
    if (strcmp(res->headers[i].name, "grpc-message") == 0) msg = res->headers[i].value;
  }
  if (f->grpc_rd_err == LP_ERANGE) {
    done(NET_GRPC_RESOURCE_EXHAUSTED, "grpc: received message larger than max", garg);
  } else if (f->grpc_rd_err == LP_EPROTO) {
    done(NET_GRPC_INTERNAL, "grpc: compressed or malformed message", garg);
  } else if (f->grpc_rd_err) {
    done(NET_GRPC_CANCELLED, "call cancelled by the receiver", garg);
  } else if (res->err == LP_ETIMEDOUT) {
    done(NET_GRPC_DEADLINE_EXCEEDED, res->error, garg);
  } else if (res->err == LP_ECANCELED) {
    done(NET_GRPC_CANCELLED, res->error, garg);
  } else if (st) {
    char *dec = msg ? net_grpc_decode_message(msg) : NULL;
    done(atoi(st), dec ? dec : "", garg);
    free(dec);
  } else if (res->err) {
    done(NET_GRPC_UNAVAILABLE, res->error, garg);
  } else if (res->status != 200) {
    char m[64];
    snprintf(m, sizeof m, "unexpected HTTP status %ld", res->status);
    done(res->status == 404 ? NET_GRPC_UNIMPLEMENTED : NET_GRPC_UNAVAILABLE, m, garg);
  } else if (f->rd.buf.len) {
    done(NET_GRPC_INTERNAL, "grpc: truncated response message", garg);
  } else {
    done(NET_GRPC_INTERNAL, "server closed the stream without sending trailers", garg);
  }
}

int net_client_grpc(net_client_t *c, const net_grpc_call_opts_t *o, net_grpc_call_msg_fn on_msg,
                    net_grpc_call_done_fn done, void *arg, net_fetch_t **out) {
  if (!o->base || !o->method || o->method[0] != '/') return LP_EINVAL;
  size_t ul = strlen(o->base) + strlen(o->method) + 1;
  char *url = malloc(ul);
  lp_buf_t body = LP_BUF_INIT;
  if (!url || net_grpc_frame(&body, o->msg ? o->msg : (const uint8_t *)"", o->len)) {
    free(url);
    lp_buf_free(&body);
    return LP_ENOMEM;
  }
  snprintf(url, ul, "%s%s", o->base, o->method);
  static const net_header_t h[] = {
      {"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", "lpod-grpc"}};
  net_fetch_opts_t fo = {.method = "POST",
                         .url = url,
                         .headers = h,
                         .nheaders = LP_ARRAY_LEN(h),
                         .body = body.data,
                         .body_len = body.len,
                         .version = NET_HTTP_2,
                         .insecure = o->insecure,
                         .timeout_ms = o->timeout_ms,
                         .on_data = grpc_on_data};
  net_fetch_t *f;
  int rc = fetch_setup(c, &fo, &f);
  free(url);
  lp_buf_free(&body);
  if (rc) return rc;
  /* the fetch callbacks get the fetch itself, which carries the caller's callbacks */
  f->arg = f;
  f->done = grpc_done;
  f->on_msg = on_msg;
  f->gdone = done;
  f->garg = arg;
  f->rd.max_msg = o->max_msg_bytes ? o->max_msg_bytes : 4u << 20;
  if (curl_multi_add_handle(c->multi, f->easy) != CURLM_OK) {
    fetch_free(f);
    return LP_EIO;
  }
  if (out) *out = f;
  return 0;
}
