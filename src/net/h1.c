/* HTTP/1.1 server side on libhttp-parser: one request at a time per connection (pipelined
 * requests wait in h1_pending), keep-alive, Content-Length and chunked bodies both ways. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* bytes a client may send ahead while its request is being answered */
#define PIPELINE_MAX (256u * 1024)

static void h1_check_done(net_conn_t *c);

static void date_header(char *out, size_t n) {
  static time_t last;
  static char cached[64];
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    last = now;
  }
  snprintf(out, n, "%s", cached);
}

static net_conn_t *conn_of(http_parser *p) { return p->data; }

static int commit_header(net_conn_t *c) {
  if (c->h1_field.len == 0) return 0;
  net_req_t *r = c->h1_req;
  int rc =
      net_req_add_header(r, (const char *)c->h1_field.data, c->h1_field.len,
                         c->h1_value.len ? (const char *)c->h1_value.data : "", c->h1_value.len);
  c->h1_field.len = 0;
  c->h1_value.len = 0;
  return rc;
}

static int on_message_begin(http_parser *p) {
  net_conn_t *c = conn_of(p);
  net_req_t *r = net_req_new(c, 1);
  if (!r) return -1;
  c->h1_req = r;
  c->h1_msg_complete = false;
  c->h1_in_headers = true;
  c->h1_last_was_value = false;
  c->h1_url.len = c->h1_field.len = c->h1_value.len = 0;
  c->phase_deadline = uv_now(c->srv->loop) + c->srv->opts.header_timeout_ms;
  net_conn_update_timer(c);
  return 0;
}

static int append_capped(net_conn_t *c, lp_buf_t *b, const char *at, size_t len) {
  /* http_parser caps the header block itself; this only guards the buffers */
  if (b->len + len > c->srv->opts.max_header_bytes) {
    c->h1_req->hdr_too_big = true;
    return 0;
  }
  return lp_buf_append(b, at, len) ? -1 : 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  net_conn_t *c = conn_of(p);
  return append_capped(c, &c->h1_url, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  net_conn_t *c = conn_of(p);
  if (c->h1_last_was_value) {
    if (commit_header(c)) return -1;
    c->h1_last_was_value = false;
  }
  return append_capped(c, &c->h1_field, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  net_conn_t *c = conn_of(p);
  c->h1_last_was_value = true;
  return append_capped(c, &c->h1_value, at, len);
}

static int on_headers_complete(http_parser *p) {
  net_conn_t *c = conn_of(p);
  net_req_t *r = c->h1_req;
  if (c->closing || !r || commit_header(c)) return -1;
  c->h1_in_headers = false;
  c->phase_deadline = 0;
  r->method = strdup(http_method_str((enum http_method)p->method));
  if (!r->method) return -1;
  if (c->h1_url.len == 0 || net_req_set_target(r, (const char *)c->h1_url.data, c->h1_url.len))
    return -1;
  c->h1_keep_alive = http_should_keep_alive(p) && !c->srv->stopping;
  const char *expect = net_req_header(r, "expect");
  bool cont = expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1;
  net_conn_update_timer(c);
  if (p->method == HTTP_CONNECT) {
    c->h1_keep_alive = false;
    r->dispatched = true;
    net_resp_error(r, 405, "Method Not Allowed");
    return 0;
  }
  r->hold++;
  net_req_headers_done(r);
  if (cont && !r->resp_started && !r->proto_done && !c->closing) {
    lp_buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    net_conn_flush(c);
  }
  net_req_unhold(r);
  return c->closing ? -1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  net_conn_t *c = conn_of(p);
  if (c->closing || !c->h1_req) return -1;
  net_req_body_data(c->h1_req, (const uint8_t *)at, len);
  if (c->closing) return -1;
  net_conn_update_timer(c);
  return 0;
}

static int on_message_complete(http_parser *p) {
  net_conn_t *c = conn_of(p);
  if (c->closing || !c->h1_req) return -1;
  c->h1_msg_complete = true;
  net_req_body_end(c->h1_req);
  if (c->closing) return -1;
  /* stop here; the next pipelined request waits until this one is answered */
  http_parser_pause(p, 1);
  c->h1_paused = true;
  return 0;
}

static http_parser_settings g_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int net_h1_init(net_conn_t *c) {
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->settings = &g_settings;
  c->h1_keep_alive = true;
  return 0;
}

void net_h1_free(net_conn_t *c) {
  lp_buf_free(&c->h1_pending);
  lp_buf_free(&c->h1_url);
  lp_buf_free(&c->h1_field);
  lp_buf_free(&c->h1_value);
}

/* A request that cannot be parsed gets a plain error and the connection ends after it. */
static void h1_fail(net_conn_t *c, int status, const char *text) {
  c->srv->stats.protocol_errors++;
  net_req_t *r = c->h1_req;
  c->h1_keep_alive = false;
  if (r && r->resp_started) {
    net_conn_close(c);
    return;
  }
  if (r) {
    /* the handler never saw it */
    c->h1_req = NULL;
    net_req_release(r);
  }
  char buf[256];
  int n = snprintf(buf, sizeof buf,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Connection: close\r\nContent-Length: %zu\r\n\r\n%s\n",
                   status, text, strlen(text) + 1, text);
  lp_buf_append(&c->out, buf, (size_t)n);
  c->close_after_write = true;
  net_conn_flush(c);
}

static void h1_exec(net_conn_t *c, const uint8_t *data, size_t len) {
  c->h1_in_exec = true;
  size_t n = http_parser_execute(&c->parser, c->settings, (const char *)data, len);
  c->h1_in_exec = false;
  if (c->closing) return;
  enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
  if (c->parser.upgrade && err == HPE_OK) {
    /* an Upgrade (h2c) we don't take: answer over HTTP/1.1 and read on as HTTP/1.1 */
    c->parser.upgrade = 0;
    err = HPE_PAUSED;
  }
  if (err == HPE_PAUSED) {
    if (n < len) {
      lp_buf_t rest = LP_BUF_INIT;
      if (lp_buf_append(&rest, data + n, len - n) ||
          lp_buf_append(&rest, c->h1_pending.data, c->h1_pending.len)) {
        lp_buf_free(&rest);
        net_conn_close(c);
        return;
      }
      lp_buf_free(&c->h1_pending);
      c->h1_pending = rest;
    }
    h1_check_done(c);
    return;
  }
  if (err != HPE_OK) {
    if (err == HPE_HEADER_OVERFLOW)
      h1_fail(c, 431, "Request Header Fields Too Large");
    else
      h1_fail(c, 400, "Bad Request");
  }
}

void net_h1_feed(net_conn_t *c, const uint8_t *data, size_t len) {
  if (c->h1_paused || c->h1_in_exec) {
    if (c->h1_pending.len + len > PIPELINE_MAX) {
      net_conn_protocol_error(c, "too much pipelined data");
      return;
    }
    lp_buf_append(&c->h1_pending, data, len);
    return;
  }
  h1_exec(c, data, len);
}

/* After a request is both read and answered: let it go and move to the next one. */
static void h1_check_done(net_conn_t *c) {
  while (!c->closing && !c->h1_in_exec) {
    net_req_t *r = c->h1_req;
    if (r && !(c->h1_msg_complete && r->resp_ended)) return;
    if (r) {
      c->h1_req = NULL;
      net_req_release(r);
      if (c->closing) return;
    }
    if (!c->h1_keep_alive) {
      c->close_after_write = true;
      net_conn_flush(c);
      return;
    }
    c->h1_paused = false;
    http_parser_pause(&c->parser, 0);
    net_conn_update_timer(c);
    if (c->h1_pending.len == 0) return;
    lp_buf_t p = c->h1_pending;
    c->h1_pending = (lp_buf_t)LP_BUF_INIT;
    h1_exec(c, p.data, p.len);
    lp_buf_free(&p);
    return; /* h1_exec checks again when it pauses */
  }
}

void net_h1_on_eof(net_conn_t *c) {
  /* a message framed by connection close (no length) ends here */
  if (c->h1_req && !c->h1_msg_complete && !c->h1_in_headers)
    http_parser_execute(&c->parser, c->settings, NULL, 0);
}

void net_h1_resp_headers(net_req_t *r, const net_header_t *hdrs, size_t n) {
  net_conn_t *c = r->conn;
  const char *text;
  net_status_text(r->status, &text);
  lp_buf_t *o = &c->out;
  char date[64];
  date_header(date, sizeof date);
  bool no_body = r->status == 204 || r->status == 304 || (r->status >= 100 && r->status < 200);
  /* HTTP/1.0 has no chunked encoding: a body of unknown length ends with the connection */
  bool close_delimited = r->content_length < 0 && !no_body && !r->head_only &&
                         c->parser.http_major == 1 && c->parser.http_minor == 0;
  if (close_delimited) c->h1_keep_alive = false;
  lp_buf_appendf(o, "HTTP/1.1 %d %s\r\nDate: %s\r\n", r->status, text, date);
  for (size_t i = 0; i < n; i++) {
    if (strcasecmp(hdrs[i].name, "content-length") == 0 ||
        strcasecmp(hdrs[i].name, "transfer-encoding") == 0 || strcasecmp(hdrs[i].name, "date") == 0)
      continue;
    if (strcasecmp(hdrs[i].name, "connection") == 0) {
      if (!c->h1_keep_alive) continue;
    }
    lp_buf_appendf(o, "%s: %s\r\n", hdrs[i].name, hdrs[i].value);
  }
  if (!c->h1_keep_alive) lp_buf_appendf(o, "Connection: close\r\n");
  if (r->content_length >= 0) {
    if (!no_body) lp_buf_appendf(o, "Content-Length: %lld\r\n", (long long)r->content_length);
  } else if (!no_body && !r->head_only && !close_delimited) {
    r->chunked = true;
    lp_buf_appendf(o, "Transfer-Encoding: chunked\r\n");
  }
  lp_buf_append(o, "\r\n", 2);
  net_conn_flush(c);
}

/* A large body goes out in slices: each is encrypted into a buffer of this size and written,
 * so the buffers come from the heap's free lists instead of fresh pages for the whole body
 * (a 2 MB response took 15 ms instead of 2 ms on a VM where page faults are dear). */
#define H1_SLICE (64u * 1024)

void net_h1_resp_flush_body(net_req_t *r) {
  net_conn_t *c = r->conn;
  net_chunk_t *ch;
  while ((ch = net_req_pop_chunk(r))) {
    size_t len = ch->len - ch->off;
    r->out_pending -= len;
    if (r->chunked) lp_buf_appendf(&c->out, "%zx\r\n", len);
    for (size_t off = 0; off < len && !c->closing;) {
      size_t n = LP_MIN(len - off, H1_SLICE);
      if (lp_buf_append(&c->out, ch->data + ch->off + off, n)) {
        /* a body cut short under its Content-Length would leave the client waiting */
        net_conn_close(c);
        break;
      }
      off += n;
      if (c->out.len >= H1_SLICE) net_conn_flush(c);
    }
    if (r->chunked) lp_buf_append(&c->out, "\r\n", 2);
    net_chunk_free(ch);
    if (c->closing) return;
  }
  net_conn_flush(c);
}

void net_h1_resp_end(net_req_t *r) {
  net_conn_t *c = r->conn;
  net_h1_resp_flush_body(r);
  if (c->closing) return;
  if (r->chunked) {
    lp_buf_append(&c->out, "0\r\n", 3);
    for (size_t i = 0; i < r->ntrailers; i++)
      lp_buf_appendf(&c->out, "%s: %s\r\n", r->trailers[i].name, r->trailers[i].value);
    lp_buf_append(&c->out, "\r\n", 2);
    net_conn_flush(c);
  }
  if (c->closing) return;
  h1_check_done(c);
}
