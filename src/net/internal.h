/* net internals shared by the server's files (server.c, tls.c, h1.c, h2.c, grpc.c). */
#ifndef LPOD_NET_INTERNAL_H
#define LPOD_NET_INTERNAL_H

#include "lpod/net.h"

#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

typedef struct net_conn net_conn_t;

/* uv_write backlog above which HTTP/2 stops producing frames until the socket drains */
#define NET_WRITE_HIGH_WATER (512u * 1024)

typedef struct net_route {
  char *path;
  size_t path_len;
  bool prefix;
  net_route_opts_t opts;
  net_handler_fn fn;
  void *arg;
} net_route_t;

typedef struct net_grpc_method {
  char *path;
  size_t max_msg;
  net_grpc_fn fn;
  void *arg;
} net_grpc_method_t;

struct net_server {
  uv_loop_t *loop;
  net_server_opts_t opts; /* limits with defaults filled in; strings below are owned copies */
  char *host;
  int port_req;
  int port;
  bool tls;
  SSL_CTX *ssl_ctx;
  char *cert_path;

  uv_tcp_t listener;
  bool listening;
  bool listener_open;
  uv_timer_t grace_timer;
  bool grace_open;

  net_route_t *routes;
  size_t nroutes;
  net_grpc_method_t *grpc;
  size_t ngrpc;

  net_conn_t *conns; /* doubly linked list of open connections */
  net_server_stats_t stats;

  bool stopping;
  net_server_done_fn done_fn;
  void *done_arg;
  bool done_called;

  bool free_requested;
  int open_handles; /* listener, grace timer, connections being closed */
  uint64_t live_reqs;
};

/* One queued piece of response body. */
typedef struct net_chunk {
  struct net_chunk *next;
  const uint8_t *data;
  size_t len;
  size_t off;
  void (*release)(void *);
  void *release_arg;
  uint8_t *owned; /* when copied */
} net_chunk_t;

typedef struct net_hdr {
  char *name; /* lowercase */
  char *value;
} net_hdr_t;

struct net_req {
  net_server_t *srv;
  net_conn_t *conn; /* NULL once the protocol side let go (stream closed, connection gone) */
  int version;
  bool tls;
  char peer[64];

  char *method;
  char *path;
  char *query;
  net_hdr_t *hdrs;
  size_t nhdrs, hdrs_cap;
  size_t hdr_bytes;
  bool hdr_too_big;

  /* routing */
  const net_route_t *route;
  const net_grpc_method_t *grpc_method;
  bool is_grpc;
  enum net_body_mode body_mode;
  size_t body_max;

  /* request body */
  lp_buf_t body;
  bool body_complete;
  bool body_over;  /* more than body_max arrived; the rest is dropped */
  bool body_taken; /* a reader (read_body or on_data) is attached */
  net_body_fn body_fn;
  net_data_fn data_fn;
  void *body_arg;
  net_grpc_reader_t grpc_rd;
  size_t grpc_msgs;
  uint8_t *grpc_msg;
  size_t grpc_msg_len;

  net_abort_fn abort_fn;
  void *abort_arg;
  void *user;

  /* state */
  bool dispatched;   /* handler (or automatic response) decided */
  bool handler_owns; /* a handler was called and has not finished */
  bool finished;     /* the response was ended */
  bool aborted;
  bool proto_done; /* protocol side no longer references this request */
  int hold;        /* > 0 while net code still uses r on the stack */

  /* response */
  int status;
  bool resp_started;
  bool resp_ended;
  bool head_only;
  bool chunked; /* HTTP/1.1 chunked response */
  bool expect_continue;
  int64_t content_length;
  net_chunk_t *out_head, *out_tail;
  size_t out_pending;
  net_hdr_t *trailers;
  size_t ntrailers;
  bool grpc_headers_sent;

  /* HTTP/2 */
  int32_t stream_id;
  bool h2_deferred;
  bool h2_data_ended; /* the data provider reported the end */

  struct net_req *next; /* connection's list */
};

struct net_conn {
  net_server_t *srv;
  uv_tcp_t tcp;
  uv_timer_t timer;
  net_conn_t *prev, *next;
  char peer[64];

  SSL *ssl;
  const uint8_t *tls_in; /* ciphertext being processed (the socket read buffer) */
  size_t tls_in_len, tls_in_off;
  lp_buf_t tls_left; /* ciphertext OpenSSL did not take yet */
  lp_buf_t tls_wire; /* ciphertext waiting for uv_write */
  bool handshake_done;

  enum { NET_PROTO_DETECT, NET_PROTO_H1, NET_PROTO_H2 } proto;
  lp_buf_t detect;

  lp_buf_t out;        /* plaintext bytes waiting to be encrypted and written */
  size_t write_queued; /* bytes handed to uv_write and not yet completed */
  bool close_after_write;
  bool closing;
  int in_read; /* depth of the read path; h2 sends are held back while > 0 */

  net_req_t *reqs; /* requests that reference this connection */
  size_t nreqs;

  uint64_t phase_deadline; /* header deadline in ms (loop time), 0 when not in a header phase */

  /* HTTP/1.1 */
  http_parser parser;
  http_parser_settings *settings;
  net_req_t *h1_req;   /* the request being read or answered */
  lp_buf_t h1_pending; /* bytes received while a request is being answered */
  lp_buf_t h1_url, h1_field, h1_value;
  bool h1_in_exec;
  bool h1_paused;
  bool h1_last_was_value;
  bool h1_msg_complete;
  bool h1_in_headers;
  bool h1_keep_alive;

  /* HTTP/2 */
  nghttp2_session *h2;
  bool h2_goaway;
  int h2_in_call; /* inside nghttp2_session_mem_recv / _send */
};

/* server.c */
net_req_t *net_req_new(net_conn_t *c, int version);
int net_req_add_header(net_req_t *r, const char *name, size_t nlen, const char *value, size_t vlen);
int net_req_set_target(net_req_t *r, const char *target, size_t len);
void net_req_headers_done(net_req_t *r);
void net_req_body_data(net_req_t *r, const uint8_t *data, size_t len);
void net_req_body_end(net_req_t *r);
/* The protocol side lets go of r (stream closed, connection gone); aborts it when unfinished. */
void net_req_release(net_req_t *r);
/* Drops a hold taken with r->hold++; frees r when nothing else keeps it. */
void net_req_unhold(net_req_t *r);
/* The response is complete from the handler's side (for responses built by net itself). */
void net_req_finished(net_req_t *r);
void net_conn_flush(net_conn_t *c);
size_t net_conn_write_backlog(const net_conn_t *c);
void net_conn_close(net_conn_t *c);
void net_conn_update_timer(net_conn_t *c);
void net_conn_protocol_error(net_conn_t *c, const char *what);
net_chunk_t *net_req_pop_chunk(net_req_t *r);
void net_chunk_free(net_chunk_t *ch);
int net_status_text(int status, const char **text);

/* tls.c */
int net_tls_ctx_new(net_server_t *s, char *err, size_t errlen);
int net_tls_conn_init(net_conn_t *c);
/* Feeds ciphertext; decrypted bytes go to net_conn_on_plain. */
int net_tls_feed(net_conn_t *c, const uint8_t *data, size_t len);
/* Encrypts c->out into ciphertext appended to dst. */
int net_tls_encrypt(net_conn_t *c, lp_buf_t *dst);
int net_cert_ensure(const char *dir, const char *host, char **cert_path, char **key_path, char *err,
                    size_t errlen);
void net_conn_on_plain(net_conn_t *c, const uint8_t *data, size_t len);
void net_conn_set_proto(net_conn_t *c, int proto);

/* h1.c */
int net_h1_init(net_conn_t *c);
void net_h1_feed(net_conn_t *c, const uint8_t *data, size_t len);
void net_h1_resp_headers(net_req_t *r, const net_header_t *hdrs, size_t n);
void net_h1_resp_flush_body(net_req_t *r);
void net_h1_resp_end(net_req_t *r);
void net_h1_free(net_conn_t *c);
void net_h1_on_eof(net_conn_t *c);

/* h2.c */
int net_h2_init(net_conn_t *c, const uint8_t *preface_and_more, size_t len);
void net_h2_feed(net_conn_t *c, const uint8_t *data, size_t len);
int net_h2_resp_headers(net_req_t *r, const net_header_t *hdrs, size_t n, bool end_stream);
void net_h2_resp_kick(net_req_t *r);
void net_h2_send(net_conn_t *c);
void net_h2_shutdown(net_conn_t *c);
void net_h2_free(net_conn_t *c);
/* Unhooks every stream from its request before the connection goes. */
void net_h2_detach_all(net_conn_t *c);

/* grpc.c */
void net_grpc_dispatch(net_req_t *r);
void net_grpc_body_data(net_req_t *r, const uint8_t *data, size_t len);
void net_grpc_body_end(net_req_t *r);

#endif
