/* gRPC over the HTTP/2 server: method routing, the 5-byte message framing, unary and
 * server-streaming replies, and status trailers. Messages stay opaque bytes here. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int net_grpc_frame(lp_buf_t *out, const uint8_t *msg, size_t len) {
  if (len > UINT32_MAX) return LP_ERANGE;
  uint8_t h[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
  int rc = lp_buf_append(out, h, 5);
  return rc ? rc : lp_buf_append(out, msg, len);
}

int net_grpc_reader_feed(net_grpc_reader_t *rd, const uint8_t *data, size_t len, net_grpc_msg_fn fn,
                         void *arg) {
  size_t max = rd->max_msg ? rd->max_msg : 4u << 20;
  if (lp_buf_append(&rd->buf, data, len)) return LP_ENOMEM;
  size_t off = 0;
  int rc = 0;
  while (rd->buf.len - off >= 5) {
    const uint8_t *p = rd->buf.data + off;
    if (p[0] != 0) {
      rc = LP_EPROTO; /* compressed (or garbage): we advertise no grpc-encoding */
      break;
    }
    uint32_t mlen = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    if (mlen > max) {
      rc = LP_ERANGE;
      break;
    }
    if (rd->buf.len - off - 5 < mlen) break;
    rc = fn(p + 5, mlen, arg);
    off += 5 + (size_t)mlen;
    if (rc) break;
  }
  if (off) {
    memmove(rd->buf.data, rd->buf.data + off, rd->buf.len - off);
    rd->buf.len -= off;
  }
  return rc;
}

void net_grpc_reader_free(net_grpc_reader_t *rd) { lp_buf_free(&rd->buf); }

char *net_grpc_encode_message(const char *msg) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(msg);
  char *out = malloc(3 * n + 1), *o = out;
  if (!out) return NULL;
  for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
    if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
      *o++ = (char)*p;
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  *o = 0;
  return out;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char *net_grpc_decode_message(const char *msg) {
  char *out = malloc(strlen(msg) + 1), *o = out;
  if (!out) return NULL;
  for (const char *p = msg; *p; p++) {
    int h, l;
    if (*p == '%' && (h = hexval(p[1])) >= 0 && (l = hexval(p[2])) >= 0) {
      *o++ = (char)(h << 4 | l);
      p += 2;
    } else {
      *o++ = *p; /* a stray '%' is kept as the spec asks */
    }
  }
  *o = 0;
  return out;
}

/* ---- server side ---------------------------------------------------------------------------- */

static const net_header_t k_grpc_ct = {"content-type", "application/grpc"};

static int finish_trailers_only(net_req_t *r, int status, const char *message) {
  char code[12];
  snprintf(code, sizeof code, "%d", status);
  char *enc = message && message[0] ? net_grpc_encode_message(message) : NULL;
  net_header_t h[3] = {k_grpc_ct, {"grpc-status", code}, {"grpc-message", enc ? enc : ""}};
  r->resp_started = true;
  r->resp_ended = true;
  r->status = 200;
  int rc = LP_ECANCELED;
  if (r->conn && !r->aborted) rc = net_h2_resp_headers(r, h, enc ? 3 : 2, true);
  free(enc);
  net_req_finished(r);
  return rc;
}

void net_grpc_dispatch(net_req_t *r) {
  net_server_t *s = r->srv;
  for (size_t i = 0; i < s->ngrpc; i++) {
    if (strcmp(s->grpc[i].path, r->path) == 0) {
      r->grpc_method = &s->grpc[i];
      r->grpc_rd.max_msg = s->grpc[i].max_msg;
      return; /* the handler runs once the request message is in */
    }
  }
  r->dispatched = true;
  /* grpc-go's wording, so clients' logs read the same */
  const char *svc = r->path + 1, *slash = strrchr(svc, '/');
  char msg[512];
  bool known = false;
  if (slash) {
    size_t sl = (size_t)(slash - svc);
    for (size_t i = 0; i < s->ngrpc && !known; i++)
      known = strncmp(s->grpc[i].path + 1, svc, sl) == 0 && s->grpc[i].path[1 + sl] == '/';
    if (known)
      snprintf(msg, sizeof msg, "unknown method %s for service %.*s", slash + 1, (int)sl, svc);
    else
      snprintf(msg, sizeof msg, "unknown service %.*s", (int)sl, svc);
  } else {
    snprintf(msg, sizeof msg, "malformed method name: %.200s", r->path);
  }
  finish_trailers_only(r, NET_GRPC_UNIMPLEMENTED, msg);
}

static int keep_msg(const uint8_t *msg, size_t len, void *arg) {
  net_req_t *r = arg;
  if (++r->grpc_msgs > 1) return LP_EPROTO;
  r->grpc_msg = malloc(len ? len : 1);
  if (!r->grpc_msg) return LP_ENOMEM;
  memcpy(r->grpc_msg, msg, len);
  r->grpc_msg_len = len;
  return 0;
}

void net_grpc_body_data(net_req_t *r, const uint8_t *data, size_t len) {
  if (r->dispatched || !r->grpc_method) return;
  int rc = net_grpc_reader_feed(&r->grpc_rd, data, len, keep_msg, r);
  if (rc == 0) return;
  r->dispatched = true;
  char msg[128];
  if (rc == LP_ERANGE) {
    snprintf(msg, sizeof msg, "grpc: received message larger than max (%zu)", r->grpc_rd.max_msg);
    finish_trailers_only(r, NET_GRPC_RESOURCE_EXHAUSTED, msg);
  } else if (rc == LP_EPROTO && r->grpc_msgs > 1) {
    finish_trailers_only(r, NET_GRPC_UNIMPLEMENTED, "client streaming is not supported");
  } else if (rc == LP_EPROTO) {
    finish_trailers_only(r, NET_GRPC_UNIMPLEMENTED, "grpc: compressed messages are not supported");
  } else {
    finish_trailers_only(r, NET_GRPC_INTERNAL, "out of memory");
  }
  net_grpc_reader_free(&r->grpc_rd);
}

void net_grpc_body_end(net_req_t *r) {
  if (r->dispatched || !r->grpc_method) return;
  r->dispatched = true;
  if (r->grpc_msgs != 1 || r->grpc_rd.buf.len) {
    finish_trailers_only(r, NET_GRPC_INTERNAL,
                         r->grpc_rd.buf.len ? "grpc: truncated request message"
                                            : "grpc: expected exactly one request message");
    return;
  }
  net_grpc_reader_free(&r->grpc_rd);
  r->handler_owns = true;
  r->grpc_method->fn(r, r->grpc_msg, r->grpc_msg_len, r->grpc_method->arg);
}

int net_grpc_send(net_req_t *r, const uint8_t *msg, size_t len) {
  if (!r->is_grpc || r->finished) return LP_EINVAL;
  if (!r->resp_started) {
    int rc = net_resp_start(r, 200, &k_grpc_ct, 1, -1);
    if (rc) return rc;
  }
  lp_buf_t b = LP_BUF_INIT;
  int rc = net_grpc_frame(&b, msg, len);
  if (rc) {
    lp_buf_free(&b);
    return rc;
  }
  return net_resp_write_ref(r, b.data, b.len, free, b.data);
}

int net_grpc_finish(net_req_t *r, int status, const char *message) {
  if (!r->is_grpc || r->finished) return LP_EINVAL;
  if (!r->resp_started) return finish_trailers_only(r, status, message);
  char code[12];
  snprintf(code, sizeof code, "%d", status);
  char *enc = message && message[0] ? net_grpc_encode_message(message) : NULL;
  net_header_t t[2] = {{"grpc-status", code}, {"grpc-message", enc ? enc : ""}};
  int rc = net_resp_end(r, t, enc ? 2 : 1);
  free(enc);
  return rc;
}

int net_grpc_reply(net_req_t *r, const uint8_t *msg, size_t len) {
  if (!r->is_grpc || r->finished) return LP_EINVAL;
  int rc = net_grpc_send(r, msg, len);
  int rc2 = net_grpc_finish(r, rc == 0 ? NET_GRPC_OK : NET_GRPC_INTERNAL,
                            rc == 0 ? NULL : lp_strerror(rc));
  return rc ? rc : rc2;
}
