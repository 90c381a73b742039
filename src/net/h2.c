/* HTTP/2 server side on nghttp2: large receive windows for segment uploads, header-size and
 * stream limits, responses fed from the request's chunk queue with backpressure. */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static net_req_t *stream_req(nghttp2_session *s, int32_t id) {
  return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud) {
  net_conn_t *c = ud;
  if (c->closing) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (net_conn_write_backlog(c) >= NET_WRITE_HIGH_WATER) return NGHTTP2_ERR_WOULDBLOCK;
  if (lp_buf_append(&c->out, data, len)) return NGHTTP2_ERR_CALLBACK_FAILURE;
  return (ssize_t)len;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  net_conn_t *c = ud;
  if (c->closing) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  net_req_t *r = net_req_new(c, 2);
  if (!r) return NGHTTP2_ERR_CALLBACK_FAILURE;
  r->stream_id = f->hd.stream_id;
  nghttp2_session_set_stream_user_data(s, f->hd.stream_id, r);
  return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud) {
  net_conn_t *c = ud;
  if (c->closing) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  net_req_t *r = stream_req(s, f->hd.stream_id);
  if (!r) return 0;
  /* far past the limit is an attack on the decoder, not a big request: drop the connection */
  if (r->hdr_bytes > 4 * c->srv->opts.max_header_bytes) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (nlen > 0 && name[0] == ':') {
    r->hdr_bytes += nlen + vlen + 32;
    char **dst = NULL;
    if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
      dst = &r->method;
    } else if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
      if (net_req_set_target(r, (const char *)value, vlen)) return NGHTTP2_ERR_CALLBACK_FAILURE;
      return 0;
    } else if (nlen == 10 && memcmp(name, ":authority", 10) == 0) {
      /* handlers look for Host whatever the version */
      return net_req_add_header(r, "host", 4, (const char *)value, vlen)
                 ? NGHTTP2_ERR_CALLBACK_FAILURE
                 : 0;
    }
    if (dst) {
      free(*dst);
      *dst = lp_strndup((const char *)value, vlen);
      if (!*dst) return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
  }
  return net_req_add_header(r, (const char *)name, nlen, (const char *)value, vlen)
             ? NGHTTP2_ERR_CALLBACK_FAILURE
             : 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  net_conn_t *c = ud;
  if (c->closing) return NGHTTP2_ERR_CALLBACK_FAILURE;
  net_req_t *r = stream_req(s, f->hd.stream_id);
  if (!r) return 0;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  r->hold++;
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
    net_req_headers_done(r);
    if (end && !r->proto_done) net_req_body_end(r);
  } else if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && end) {
    net_req_body_end(r);
  }
  net_req_unhold(r);
  return c->closing ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud) {
  net_conn_t *c = ud;
  if (c->closing) return NGHTTP2_ERR_CALLBACK_FAILURE;
  net_req_t *r = stream_req(s, id);
  if (!r) return 0;
  r->hold++;
  net_req_body_data(r, data, len);
  net_req_unhold(r);
  return c->closing ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
  net_req_t *r = stream_req(s, id);
  if (!r) return 0;
  nghttp2_session_set_stream_user_data(s, id, NULL);
  net_req_release(r);
  return 0;
}

static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud) {
  net_conn_t *c = ud;
  c->srv->stats.protocol_errors++;
  return 0;
}

static int on_send_data(nghttp2_session *s, nghttp2_frame *f, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *src, void *ud);

static nghttp2_session_callbacks *g_cbs;
static nghttp2_option *g_opt;

static int h2_global_init(void) {
  if (g_cbs) return 0;
  if (nghttp2_session_callbacks_new(&g_cbs)) return LP_ENOMEM;
  nghttp2_session_callbacks_set_send_callback(g_cbs, on_send);
  nghttp2_session_callbacks_set_on_begin_headers_callback(g_cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(g_cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(g_cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g_cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(g_cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(g_cbs, on_invalid_frame);
  nghttp2_session_callbacks_set_send_data_callback(g_cbs, on_send_data);
  if (nghttp2_option_new(&g_opt)) return LP_ENOMEM;
  /* grpc-go's BDP pings and window updates are legitimate; nghttp2's own flood checks stay on */
  nghttp2_option_set_max_outbound_ack(g_opt, 1000);
  return 0;
}

int net_h2_init(net_conn_t *c, const uint8_t *data, size_t len) {
  if (h2_global_init()) return LP_ENOMEM;
  const net_server_opts_t *o = &c->srv->opts;
  /* nghttp2 caps CONTINUATION frames (8 by default, about 144 KiB of headers); allow enough
   * for a header block well past our own limit so that an oversized one gets a 431, while
   * on_header still drops the connection far beyond it */
  nghttp2_option_set_max_continuations(g_opt, 4 * o->max_header_bytes / 16384 + 2);
  if (nghttp2_session_server_new2(&c->h2, g_cbs, c, g_opt)) return LP_ENOMEM;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o->max_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, o->h2_stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)o->max_header_bytes},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, LP_ARRAY_LEN(iv)) ||
      nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                            (int32_t)o->h2_conn_window))
    return LP_ENOMEM;
  if (len) net_h2_feed(c, data, len);
  if (!c->closing && !c->in_read) net_h2_send(c);
  return 0;
}

void net_h2_free(net_conn_t *c) {
  if (c->h2) nghttp2_session_del(c->h2);
  c->h2 = NULL;
}

void net_h2_detach_all(net_conn_t *c) {
  for (net_req_t *r = c->reqs; r; r = r->next)
    if (r->stream_id > 0) nghttp2_session_set_stream_user_data(c->h2, r->stream_id, NULL);
}

void net_h2_feed(net_conn_t *c, const uint8_t *data, size_t len) {
  c->h2_in_call++;
  ssize_t n = nghttp2_session_mem_recv(c->h2, data, len);
  c->h2_in_call--;
  if (c->closing) return;
  if (n < 0) {
    /* a GOAWAY with the reason may be queued: send it, then close */
    if (n != NGHTTP2_ERR_CALLBACK_FAILURE) {
      nghttp2_session_send(c->h2);
      c->close_after_write = true;
      net_conn_flush(c);
      c->srv->stats.protocol_errors++;
      if (!c->closing && c->write_queued == 0) net_conn_close(c);
      return;
    }
    net_conn_protocol_error(c, nghttp2_strerror((int)n));
  }
}

void net_h2_send(net_conn_t *c) {
  if (c->closing || !c->h2 || c->h2_in_call) return;
  c->h2_in_call++;
  int rv = nghttp2_session_send(c->h2);
  c->h2_in_call--;
  if (c->closing) return;
  if (rv) {
    net_conn_protocol_error(c, nghttp2_strerror(rv));
    return;
  }
  net_conn_flush(c);
  if (c->closing) return;
  if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
    c->close_after_write = true;
    if (c->write_queued == 0) net_conn_close(c);
  }
}

void net_h2_shutdown(net_conn_t *c) {
  if (c->h2_goaway || !c->h2) return;
  c->h2_goaway = true;
  nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
                        NGHTTP2_NO_ERROR, NULL, 0);
  if (!c->in_read) net_h2_send(c);
}

/* Body bytes are not copied here: NO_COPY makes nghttp2 call on_send_data, which moves them
 * straight from the request's chunks into the connection's output. */
static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud) {
  net_req_t *r = stream_req(s, id);
  if (!r) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  size_t n = LP_MIN(length, r->out_pending);
  if (n) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (n == r->out_pending && r->resp_ended) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    r->h2_data_ended = true;
    if (r->ntrailers) {
      nghttp2_nv *nv = calloc(r->ntrailers, sizeof *nv);
      if (!nv) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      for (size_t i = 0; i < r->ntrailers; i++) {
        nv[i] = (nghttp2_nv){(uint8_t *)r->trailers[i].name, (uint8_t *)r->trailers[i].value,
                             strlen(r->trailers[i].name), strlen(r->trailers[i].value),
                             NGHTTP2_NV_FLAG_NONE};
      }
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      int rv = nghttp2_submit_trailer(s, id, nv, r->ntrailers);
      free(nv);
      if (rv) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
  }
  if (n == 0) {
    r->h2_deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

static int on_send_data(nghttp2_session *s, nghttp2_frame *f, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *src, void *ud) {
  net_conn_t *c = ud;
  if (c->closing) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (net_conn_write_backlog(c) >= NET_WRITE_HIGH_WATER) return NGHTTP2_ERR_WOULDBLOCK;
  net_req_t *r = stream_req(s, f->hd.stream_id);
  if (!r || r->out_pending < length) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (lp_buf_reserve(&c->out, 9 + length)) return NGHTTP2_ERR_CALLBACK_FAILURE;
  lp_buf_append(&c->out, framehd, 9);
  while (length) {
    net_chunk_t *ch = r->out_head;
    size_t take = LP_MIN(length, ch->len - ch->off);
    lp_buf_append(&c->out, ch->data + ch->off, take);
    ch->off += take;
    length -= take;
    r->out_pending -= take;
    if (ch->off == ch->len) net_chunk_free(net_req_pop_chunk(r));
  }
  return 0;
}

static bool hop_header(const char *n) {
  return strcasecmp(n, "connection") == 0 || strcasecmp(n, "keep-alive") == 0 ||
         strcasecmp(n, "transfer-encoding") == 0 || strcasecmp(n, "upgrade") == 0 ||
         strcasecmp(n, "proxy-connection") == 0 || strcasecmp(n, "content-length") == 0;
}

int net_h2_resp_headers(net_req_t *r, const net_header_t *hdrs, size_t n, bool end_stream) {
  net_conn_t *c = r->conn;
  nghttp2_nv *nv = calloc(n + 2, sizeof *nv);
  char **lower = calloc(n + 1, sizeof *lower);
  char status[8], clen[24];
  int rc = LP_ENOMEM;
  if (!nv || !lower) goto out;
  size_t k = 0;
  snprintf(status, sizeof status, "%d", r->status);
  nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
                         NGHTTP2_NV_FLAG_NONE};
  for (size_t i = 0; i < n; i++) {
    if (hop_header(hdrs[i].name) || strcasecmp(hdrs[i].name, "date") == 0) continue;
    size_t nl = strlen(hdrs[i].name);
    lower[i] = malloc(nl + 1);
    if (!lower[i]) goto out;
    for (size_t j = 0; j <= nl; j++) lower[i][j] = (char)tolower((unsigned char)hdrs[i].name[j]);
    nv[k++] = (nghttp2_nv){(uint8_t *)lower[i], (uint8_t *)hdrs[i].value, nl, strlen(hdrs[i].value),
                           NGHTTP2_NV_FLAG_NONE};
  }
  if (r->content_length >= 0 && !end_stream) {
    snprintf(clen, sizeof clen, "%lld", (long long)r->content_length);
    nv[k++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen),
                           NGHTTP2_NV_FLAG_NONE};
  }
  nghttp2_data_provider prd = {.source = {.ptr = r}, .read_callback = read_body};
  int rv = nghttp2_submit_response(c->h2, r->stream_id, nv, k, end_stream ? NULL : &prd);
  rc = rv ? LP_EIO : 0;
  if (end_stream) r->h2_data_ended = true;
out:
  if (lower)
    for (size_t i = 0; i < n; i++) free(lower[i]);
  free(lower);
  free(nv);
  if (rc == 0 && !c->in_read) net_h2_send(c);
  return rc;
}

void net_h2_resp_kick(net_req_t *r) {
  net_conn_t *c = r->conn;
  if (r->h2_deferred) {
    r->h2_deferred = false;
    nghttp2_session_resume_data(c->h2, r->stream_id);
  }
  if (!c->in_read) net_h2_send(c);
}
