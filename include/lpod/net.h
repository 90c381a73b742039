/* net: the service port (TLS with ALPN, HTTP/1.1, HTTP/2, gRPC framing) and an HTTP client,
 * all driven by one libuv loop.
 *
 * Threading: every function here must be called on the loop thread that owns the server or
 * client, and every callback runs on that thread. Work finished on another thread comes back
 * with uv_async_send first, then calls into net.
 *
 * One request type serves HTTP/1.1, HTTP/2 and gRPC. Its lifetime rule: the server creates a
 * net_req_t and hands it to a handler; the request stays valid until the handler finishes it
 * exactly once (net_resp_end, net_resp_send, net_resp_error, net_grpc_reply or
 * net_grpc_finish). If the client goes away first, the abort callback runs; the request is
 * still valid after it, further writes return LP_ECANCELED, and the handler must still finish
 * it (which then only frees it). */
#ifndef LPOD_NET_H
#define LPOD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lpod/core.h"

typedef struct net_server net_server_t;
typedef struct net_req net_req_t;
typedef struct net_client net_client_t;
typedef struct net_fetch net_fetch_t;

typedef struct net_header {
  const char *name;
  const char *value;
} net_header_t;

/* ---- server ------------------------------------------------------------------------------ */

typedef struct net_server_opts {
  /* "host:port", ":port", "[v6]:port" (TLS) or the same behind "http://" (plaintext: HTTP/1.1
   * and h2c prior knowledge). Port 0 binds a random port (see net_server_port). */
  const char *addr;
  /* Operator certificate and key (PEM). When both are NULL a self-signed ECDSA P-256 pair is
   * kept in cert_dir as cert.pem / key.pem (key 0600): created on first start, reused after. */
  const char *cert_file;
  const char *key_file;
  const char *cert_dir;
  const char *cert_host; /* DNS name or IP put into a generated certificate; NULL: localhost */

  /* Limits; 0 picks the default shown. */
  size_t max_header_bytes;       /* one request's header block: 256 KiB (never below 64 KiB) */
  size_t max_body_bytes;         /* buffered body cap for routes that set none: 1 MiB */
  uint32_t max_streams;          /* concurrent HTTP/2 streams per connection: 256 */
  uint32_t max_conns;            /* open connections; more are closed on accept: 10000 */
  uint64_t idle_timeout_ms;      /* connection without requests in flight: 10 min (as go) */
  uint64_t handshake_timeout_ms; /* TCP accept to TLS done and first protocol bytes: 10 s */
  uint64_t header_timeout_ms;    /* a started request's headers must arrive within: 10 s */
  uint32_t h2_stream_window;     /* HTTP/2 initial stream receive window: 4 MiB (>= 1 MiB) */
  uint32_t h2_conn_window;       /* HTTP/2 connection receive window: 64 MiB */
} net_server_opts_t;

/* Called once per request with the headers complete (and, for buffered routes, the body). */
typedef void (*net_handler_fn)(net_req_t *req, void *arg);
/* gRPC method handler: msg is the single request message (without the 5-byte prefix). The
 * request owns msg until it is finished. */
typedef void (*net_grpc_fn)(net_req_t *req, const uint8_t *msg, size_t len, void *arg);

enum net_body_mode {
  NET_BODY_BUFFER = 0, /* handler runs when the whole body is in (over the cap: 413, no call) */
  NET_BODY_STREAM = 1, /* handler runs at end of headers; body via net_req_read_body/_on_data */
};

typedef struct net_route_opts {
  enum net_body_mode body;
  size_t max_body_bytes; /* 0: the server's max_body_bytes */
} net_route_opts_t;

/* Creates the server and prepares TLS (loading or generating the certificate). Nothing is bound
 * until net_server_listen. On failure err says why. */
int net_server_new(uv_loop_t *loop, const net_server_opts_t *opts, net_server_t **out, char *err,
                   size_t errlen);
/* Binds and starts accepting. */
int net_server_listen(net_server_t *s, char *err, size_t errlen);
/* The bound port (after listen). */
int net_server_port(const net_server_t *s);
bool net_server_is_tls(const net_server_t *s);
/* PEM certificate in use (for tests and clients that pin it); valid while the server lives. */
const char *net_server_cert_file(const net_server_t *s);

/* Routes for non-gRPC requests. An exact route wins over prefixes; among prefixes the longest
 * wins. Unmatched requests get 404 "404 page not found". opts may be NULL (buffered body with
 * the server's cap). Registering the same path twice replaces the first. */
int net_server_route(net_server_t *s, const char *path, bool prefix, const net_route_opts_t *opts,
                     net_handler_fn fn, void *arg);
/* gRPC methods by full path ("/net.Orchestrator/GetOrchestrator"). Requests with a content-type
 * starting "application/grpc" over HTTP/2 go here; unknown methods get UNIMPLEMENTED (12).
 * max_msg_bytes 0: 4 MiB. */
int net_server_grpc(net_server_t *s, const char *method, size_t max_msg_bytes, net_grpc_fn fn,
                    void *arg);

typedef struct net_server_stats {
  uint64_t conns_open;
  uint64_t conns_accepted;
  uint64_t conns_refused; /* over max_conns */
  uint64_t reqs_in_flight;
  uint64_t reqs_total;
  uint64_t protocol_errors; /* malformed HTTP, HTTP/2 or TLS input */
} net_server_stats_t;
void net_server_get_stats(const net_server_t *s, net_server_stats_t *out);

/* Graceful stop: stops accepting, closes idle connections (HTTP/2 gets GOAWAY), and lets
 * requests in flight finish; connections close as they go idle. done runs once no connection
 * is left, or after grace_ms when the rest are closed by force (their requests see abort). */
typedef void (*net_server_done_fn)(net_server_t *s, void *arg);
void net_server_shutdown(net_server_t *s, uint64_t grace_ms, net_server_done_fn done, void *arg);
/* Closes everything at once (requests in flight see abort) and frees the server once the loop
 * has run the handle closes. Requests not yet finished by their handlers stay valid until they
 * are. */
void net_server_free(net_server_t *s);

/* ---- request ----------------------------------------------------------------------------- */

const char *net_req_method(const net_req_t *r);
const char *net_req_path(const net_req_t *r);  /* without the query; percent-escapes kept */
const char *net_req_query(const net_req_t *r); /* after '?', "" when none */
/* First header with that name (case-insensitive), or NULL. */
const char *net_req_header(const net_req_t *r, const char *name);
size_t net_req_header_count(const net_req_t *r);
/* Names are lowercase; HTTP/2 pseudo-headers are not included. */
void net_req_header_at(const net_req_t *r, size_t i, const char **name, const char **value);
const char *net_req_peer(const net_req_t *r); /* "ip:port" of the client */
int net_req_http_version(const net_req_t *r); /* 1 or 2 */
bool net_req_is_tls(const net_req_t *r);
bool net_req_aborted(const net_req_t *r);
/* Buffered body (NET_BODY_BUFFER routes, or after net_req_read_body completed). */
const uint8_t *net_req_body(const net_req_t *r, size_t *len);

/* The client went away (reset, closed, timed out) before the request was finished. Runs at
 * most once; not after the handler finished the request. */
typedef void (*net_abort_fn)(net_req_t *r, void *arg);
void net_req_on_abort(net_req_t *r, net_abort_fn fn, void *arg);

/* Streamed bodies (NET_BODY_STREAM). Either read it whole: */
typedef void (*net_body_fn)(net_req_t *r, int err, void *arg);
/* Buffers the body up to max bytes (0: the route's cap) and calls done: err 0 (body in
 * net_req_body), LP_ERANGE (over max: the rest is discarded; answer 413 or as you like), or
 * LP_ECANCELED (client went away). done may run before this returns. */
int net_req_read_body(net_req_t *r, size_t max, net_body_fn done, void *arg);
/* ...or take it in pieces: fn gets each chunk (len > 0), then one call with len 0 and err 0 at
 * the end, or err < 0 if the client went away. Bytes that arrived earlier are delivered before
 * this returns. */
typedef void (*net_data_fn)(net_req_t *r, const uint8_t *data, size_t len, int err, void *arg);
int net_req_on_data(net_req_t *r, net_data_fn fn, void *arg);

/* Handler's own pointer. */
void net_req_set_data(net_req_t *r, void *data);
void *net_req_data(const net_req_t *r);

/* ---- response ---------------------------------------------------------------------------- */

/* Sends the status line and headers now (they go out on the wire immediately: the early 200
 * of /segment). content_length < 0: unknown (HTTP/1.1 uses chunked encoding). Content-Length,
 * Date and Transfer-Encoding are set by net; don't pass them. */
int net_resp_start(net_req_t *r, int status, const net_header_t *hdrs, size_t n,
                   int64_t content_length);
/* Queues body bytes (copied). */
int net_resp_write(net_req_t *r, const void *data, size_t len);
/* Queues body bytes without copying; release(arg) runs once they are sent or dropped. */
int net_resp_write_ref(net_req_t *r, const void *data, size_t len, void (*release)(void *),
                       void *arg);
/* Ends the response (with trailers when n > 0: HTTP/2 trailers, or the chunked trailer part on
 * HTTP/1.1) and finishes the request. */
int net_resp_end(net_req_t *r, const net_header_t *trailers, size_t n);
/* Whole response at once (Content-Length set from len); finishes the request. */
int net_resp_send(net_req_t *r, int status, const net_header_t *hdrs, size_t n, const void *body,
                  size_t len);
/* go's http.Error: text/plain; charset=utf-8, X-Content-Type-Options: nosniff, body msg + "\n";
 * finishes the request. */
int net_resp_error(net_req_t *r, int status, const char *msg);
/* Bytes queued for this response and not yet handed to the socket. */
size_t net_resp_pending(const net_req_t *r);

/* ---- gRPC (server side) -------------------------------------------------------------------- */

enum net_grpc_status {
  NET_GRPC_OK = 0,
  NET_GRPC_CANCELLED = 1,
  NET_GRPC_UNKNOWN = 2,
  NET_GRPC_INVALID_ARGUMENT = 3,
  NET_GRPC_DEADLINE_EXCEEDED = 4,
  NET_GRPC_NOT_FOUND = 5,
  NET_GRPC_PERMISSION_DENIED = 7,
  NET_GRPC_RESOURCE_EXHAUSTED = 8,
  NET_GRPC_UNIMPLEMENTED = 12,
  NET_GRPC_INTERNAL = 13,
  NET_GRPC_UNAVAILABLE = 14,
  NET_GRPC_UNAUTHENTICATED = 16,
};

/* Unary success: one message and grpc-status 0; finishes the request. */
int net_grpc_reply(net_req_t *r, const uint8_t *msg, size_t len);
/* Server streaming: sends one message (headers go out with the first). */
int net_grpc_send(net_req_t *r, const uint8_t *msg, size_t len);
/* Trailers with grpc-status and (percent-encoded) grpc-message; finishes the request. */
int net_grpc_finish(net_req_t *r, int status, const char *message);

/* Framing helpers (also used by the client). */
/* Appends the 5-byte prefix and msg to out. */
int net_grpc_frame(lp_buf_t *out, const uint8_t *msg, size_t len);
/* Feeds stream bytes into a de-framer; calls fn for every complete message. A compressed
 * message or one over max gives LP_EPROTO / LP_ERANGE. */
typedef struct net_grpc_reader {
  lp_buf_t buf;
  size_t max_msg;
} net_grpc_reader_t;
typedef int (*net_grpc_msg_fn)(const uint8_t *msg, size_t len, void *arg);
int net_grpc_reader_feed(net_grpc_reader_t *rd, const uint8_t *data, size_t len, net_grpc_msg_fn fn,
                         void *arg);
void net_grpc_reader_free(net_grpc_reader_t *rd);
/* Percent-encodes a grpc-message value as grpc-go does; returns malloc'd text. */
char *net_grpc_encode_message(const char *msg);
/* Decodes a percent-encoded grpc-message; returns malloc'd text. */
char *net_grpc_decode_message(const char *msg);

/* ---- HTTP client (libcurl multi on the loop) ----------------------------------------------- */

net_client_t *net_client_new(uv_loop_t *loop);
/* Cancels transfers in flight (their done callbacks run with LP_ECANCELED) and frees the client
 * once the loop has run the handle closes. */
void net_client_free(net_client_t *c);

enum net_http_version {
  NET_HTTP_ANY = 0, /* HTTP/2 over TLS when ALPN agrees, else HTTP/1.1 */
  NET_HTTP_1 = 1,   /* HTTP/1.1 only */
  NET_HTTP_2 = 2,   /* HTTP/2: ALPN h2 over TLS, prior knowledge over http:// */
};

typedef struct net_fetch_result {
  int err;           /* 0, LP_ETIMEDOUT, LP_ERANGE (body over max), LP_ECANCELED, LP_EIO */
  const char *error; /* text for err != 0 */
  long status;       /* HTTP status, 0 when none arrived */
  const uint8_t *body;
  size_t body_len;             /* buffered body (empty when on_data took it) */
  const net_header_t *headers; /* response headers then trailers, names lowercase */
  size_t nheaders;
  lp_buf_t *owned; /* the body's buffer: net_fetch_take_body */
} net_fetch_result_t;

typedef void (*net_fetch_done_fn)(const net_fetch_result_t *res, void *arg);
/* Streamed body piece; return nonzero to abort the transfer (done gets LP_ECANCELED). Don't
 * cancel or free from inside it: return nonzero instead. */
typedef int (*net_fetch_data_fn)(const uint8_t *data, size_t len, void *arg);

typedef struct net_fetch_opts {
  const char *method; /* NULL: GET, or POST when a body is given */
  const char *url;
  const net_header_t *headers;
  size_t nheaders;
  const void *body; /* copied */
  size_t body_len;
  enum net_http_version version;
  bool insecure;               /* skip certificate and host checks (self-signed peers) */
  uint64_t timeout_ms;         /* whole transfer; 0: none */
  uint64_t connect_timeout_ms; /* 0: 10 s */
  size_t max_body_bytes;       /* buffered response cap; 0: 300 MB */
  net_fetch_data_fn on_data;   /* optional: stream the response body instead of buffering */
} net_fetch_opts_t;

/* Starts a transfer; done runs exactly once on the loop (never before this returns) unless
 * net_fetch_cancel is called first. On an error return nothing was started and done never
 * runs. *out (may be NULL) is valid until done runs. on_data and done get arg. Plain http://
 * with NET_HTTP_2 (h2c) opens a connection per transfer: libcurl 7.88 cannot reuse them. */
int net_client_fetch(net_client_t *c, const net_fetch_opts_t *opts, net_fetch_done_fn done,
                     void *arg, net_fetch_t **out);
/* Stops a transfer; its done callback will not run. Not from inside its own callbacks. */
void net_fetch_cancel(net_fetch_t *f);
/* Takes the buffered body out of a result, from inside its done callback: the caller frees it
 * (free), and res->body must not be used after. NULL when the body is empty. Saves a copy of a
 * body that outlives the callback (a megabyte segment is otherwise copied into fresh pages). */
uint8_t *net_fetch_take_body(const net_fetch_result_t *res, size_t *len);
/* First header (or trailer) with that name in a result, or NULL. */
const char *net_fetch_header(const net_fetch_result_t *res, const char *name);

/* gRPC client call over the same client: unary or server-streaming. on_msg gets every response
 * message; done gets the final grpc-status (or NET_GRPC_UNAVAILABLE / _DEADLINE_EXCEEDED /
 * _INTERNAL for transport failures) and message. base is "https://host:port" or
 * "http://host:port" (prior knowledge). */
typedef int (*net_grpc_call_msg_fn)(const uint8_t *msg, size_t len, void *arg);
typedef void (*net_grpc_call_done_fn)(int status, const char *message, void *arg);
typedef struct net_grpc_call_opts {
  const char *base;
  const char *method; /* "/net.Orchestrator/GetOrchestrator" */
  const uint8_t *msg;
  size_t len;
  bool insecure;
  uint64_t timeout_ms;  /* 0: none (long-lived streams) */
  size_t max_msg_bytes; /* 0: 4 MiB */
} net_grpc_call_opts_t;
int net_client_grpc(net_client_t *c, const net_grpc_call_opts_t *opts, net_grpc_call_msg_fn on_msg,
                    net_grpc_call_done_fn done, void *arg, net_fetch_t **out);

#endif
