/* Server and client on one loop over real loopback sockets: HTTP/1.1, h2c, TLS with ALPN,
 * limits, early headers, client-gone notification, gRPC and graceful stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lpod/net.h"

static uv_loop_t g_loop;
static char g_dir[256];

/* ---- handlers ----------------------------------------------------------------------------- */

static void h_echo(net_req_t *r, void *arg) {
  size_t len;
  const uint8_t *b = net_req_body(r, &len);
  char ver[8];
  snprintf(ver, sizeof ver, "%d", net_req_http_version(r));
  const char *xt = net_req_header(r, "X-Test");
  net_header_t h[] = {{"content-type", "application/octet-stream"},
                      {"x-method", net_req_method(r)},
                      {"x-query", net_req_query(r)},
                      {"x-version", ver},
                      {"x-tls", net_req_is_tls(r) ? "1" : "0"},
                      {"x-test", xt ? xt : ""}};
  assert_int_equal(net_resp_send(r, 200, h, LP_ARRAY_LEN(h), b, len), 0);
}

static void h_big(net_req_t *r, void *arg) {
  size_t n = (size_t)atol(net_req_query(r));
  uint8_t *b = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(i * 7 + i / 251);
  net_resp_start(r, 200, NULL, 0, (int64_t)n);
  net_resp_write_ref(r, b, n, free, b);
  net_resp_end(r, NULL, 0);
}

static void h_chunks(net_req_t *r, void *arg) {
  net_resp_start(r, 200, NULL, 0, -1);
  for (int i = 0; i < 10; i++) {
    char s[16];
    int n = snprintf(s, sizeof s, "piece%d;", i);
    net_resp_write(r, s, (size_t)n);
  }
  net_header_t t = {"x-trailer", "yes"};
  net_resp_end(r, &t, 1);
}

/* Streamed body: headers first, body counted in pieces, answered once all of it is in. */
typedef struct {
  size_t got;
} count_t;
static void count_data(net_req_t *r, const uint8_t *d, size_t len, int err, void *arg) {
  count_t *c = arg;
  if (len) {
    c->got += len;
    return;
  }
  if (err == 0) {
    char s[32];
    int n = snprintf(s, sizeof s, "%zu", c->got);
    net_resp_send(r, 200, NULL, 0, s, (size_t)n);
  } else {
    net_resp_end(r, NULL, 0);
  }
  free(c);
}
static void h_count(net_req_t *r, void *arg) {
  count_t *c = calloc(1, sizeof *c);
  assert_int_equal(net_req_on_data(r, count_data, c), 0);
}

/* Held: headers go out at once; the body waits for the test to release it (or for the client
 * to go away). */
static net_req_t *g_held;
static int g_held_aborts;
static void held_abort(net_req_t *r, void *arg) {
  g_held_aborts++;
  assert_true(net_req_aborted(r));
  assert_int_equal(net_resp_write(r, "x", 1), LP_ECANCELED);
  g_held = NULL;
  net_resp_end(r, NULL, 0);
}
static void h_held(net_req_t *r, void *arg) {
  net_req_on_abort(r, held_abort, NULL);
  assert_int_equal(net_resp_start(r, 200, NULL, 0, -1), 0);
  g_held = r;
}
static void held_release(void) {
  net_req_t *r = g_held;
  g_held = NULL;
  net_resp_write(r, "released", 8);
  net_resp_end(r, NULL, 0);
}

/* gRPC */
static void g_unary(net_req_t *r, const uint8_t *msg, size_t len, void *arg) {
  uint8_t *out = malloc(len + 1);
  out[0] = 'R';
  memcpy(out + 1, msg, len);
  assert_int_equal(net_grpc_reply(r, out, len + 1), 0);
  free(out);
}
static void g_fail(net_req_t *r, const uint8_t *msg, size_t len, void *arg) {
  net_grpc_finish(r, NET_GRPC_UNKNOWN, "invalid secret: 100% wrong\n");
}
static void g_stream(net_req_t *r, const uint8_t *msg, size_t len, void *arg) {
  int n = len ? msg[0] : 0;
  for (int i = 0; i < n; i++) {
    uint8_t m[2] = {'S', (uint8_t)i};
    assert_int_equal(net_grpc_send(r, m, 2), 0);
  }
  assert_int_equal(net_grpc_finish(r, NET_GRPC_OK, NULL), 0);
}

/* ---- helpers ------------------------------------------------------------------------------- */

static net_server_t *server_start(bool tls) {
  net_server_opts_t o = {.addr = tls ? "127.0.0.1:0" : "http://127.0.0.1:0",
                         .cert_dir = g_dir,
                         .cert_host = "127.0.0.1",
                         .max_body_bytes = 64 * 1024};
  net_server_t *s;
  char err[256];
  assert_int_equal(net_server_new(&g_loop, &o, &s, err, sizeof err), 0);
  net_route_opts_t big = {.max_body_bytes = 8u << 20};
  net_route_opts_t stream = {.body = NET_BODY_STREAM, .max_body_bytes = 64u << 20};
  assert_int_equal(net_server_route(s, "/echo", false, &big, h_echo, NULL), 0);
  assert_int_equal(net_server_route(s, "/small", false, NULL, h_echo, NULL), 0);
  assert_int_equal(net_server_route(s, "/big", false, NULL, h_big, NULL), 0);
  assert_int_equal(net_server_route(s, "/chunks", false, NULL, h_chunks, NULL), 0);
  assert_int_equal(net_server_route(s, "/count", false, &stream, h_count, NULL), 0);
  assert_int_equal(net_server_route(s, "/held", false, NULL, h_held, NULL), 0);
  assert_int_equal(net_server_route(s, "/p/", true, NULL, h_echo, NULL), 0);
  assert_int_equal(net_server_grpc(s, "/test.Svc/Unary", 0, g_unary, NULL), 0);
  assert_int_equal(net_server_grpc(s, "/test.Svc/Fail", 0, g_fail, NULL), 0);
  assert_int_equal(net_server_grpc(s, "/test.Svc/Stream", 0, g_stream, NULL), 0);
  assert_int_equal(net_server_listen(s, err, sizeof err), 0);
  assert_true(net_server_port(s) > 0);
  return s;
}

static void server_stop(net_server_t *s) {
  net_server_free(s);
  for (int i = 0; i < 100 && uv_run(&g_loop, UV_RUN_NOWAIT); i++) {
  }
}

typedef struct {
  bool done;
  int err;
  long status;
  lp_buf_t body;
  char hdr[8][128];
} result_t;

static const char *k_hdrs[8] = {"x-method", "x-query",   "x-version",    "x-tls",
                                "x-test",   "x-trailer", "content-type", "content-length"};

static void on_done(const net_fetch_result_t *res, void *arg) {
  result_t *r = arg;
  r->done = true;
  r->err = res->err;
  r->status = res->status;
  lp_buf_append(&r->body, res->body, res->body_len);
  for (int i = 0; i < 8; i++) {
    const char *v = net_fetch_header(res, k_hdrs[i]);
    snprintf(r->hdr[i], sizeof r->hdr[i], "%s", v ? v : "");
  }
}

static void run_until(bool *flag) {
  uint64_t deadline = uv_now(&g_loop) + 20000;
  while (!*flag && uv_now(&g_loop) < deadline) uv_run(&g_loop, UV_RUN_ONCE);
  assert_true(*flag);
}

static void url_of(net_server_t *s, const char *path, char *out, size_t n) {
  snprintf(out, n, "%s://127.0.0.1:%d%s", net_server_is_tls(s) ? "https" : "http",
           net_server_port(s), path);
}

static void fetch(net_client_t *c, net_server_t *s, const char *method, const char *path,
                  const void *body, size_t len, enum net_http_version v, result_t *r) {
  char url[256];
  url_of(s, path, url, sizeof url);
  net_header_t h = {"X-Test", "hello"};
  net_fetch_opts_t o = {.method = method,
                        .url = url,
                        .headers = &h,
                        .nheaders = 1,
                        .body = body,
                        .body_len = len,
                        .version = v,
                        .insecure = true,
                        .timeout_ms = 15000};
  memset(r, 0, sizeof *r);
  assert_int_equal(net_client_fetch(c, &o, on_done, r, NULL), 0);
  run_until(&r->done);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void check_echo(net_server_t *s, enum net_http_version v, const char *want_ver,
                       const char *want_tls) {
  net_client_t *c = net_client_new(&g_loop);
  result_t r;
  size_t n = 3u << 20;
  uint8_t *body = malloc(n);
  for (size_t i = 0; i < n; i++) body[i] = (uint8_t)(i ^ (i >> 9));
  fetch(c, s, "POST", "/echo?a=1&b=2", body, n, v, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body.len, n);
  assert_memory_equal(r.body.data, body, n);
  assert_string_equal(r.hdr[0], "POST");
  assert_string_equal(r.hdr[1], "a=1&b=2");
  assert_string_equal(r.hdr[2], want_ver);
  assert_string_equal(r.hdr[3], want_tls);
  assert_string_equal(r.hdr[4], "hello");
  assert_string_equal(r.hdr[6], "application/octet-stream");
  lp_buf_free(&r.body);

  /* keep-alive / multiplexing: more requests on the same connection */
  for (int i = 0; i < 3; i++) {
    fetch(c, s, "GET", "/p/anything", NULL, 0, v, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.hdr[0], "GET");
    lp_buf_free(&r.body);
  }
  fetch(c, s, "GET", "/nothing-here", NULL, 0, v, &r);
  assert_int_equal(r.status, 404);
  assert_int_equal(r.body.len, strlen("404 page not found\n"));
  assert_memory_equal(r.body.data, "404 page not found\n", r.body.len);
  lp_buf_free(&r.body);

  fetch(c, s, "POST", "/small", body, 100 * 1024, v, &r);
  assert_int_equal(r.status, 413);
  lp_buf_free(&r.body);

  /* streamed body of a size no buffer would take */
  fetch(c, s, "PUT", "/count", body, n, v, &r);
  assert_int_equal(r.status, 200);
  char want[32];
  snprintf(want, sizeof want, "%zu", n);
  assert_int_equal(r.body.len, strlen(want));
  assert_memory_equal(r.body.data, want, r.body.len);
  lp_buf_free(&r.body);

  fetch(c, s, "GET", "/big?5000000", NULL, 0, v, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body.len, 5000000);
  for (size_t i = 0; i < r.body.len; i += 997)
    assert_int_equal(r.body.data[i], (uint8_t)(i * 7 + i / 251));
  lp_buf_free(&r.body);

  fetch(c, s, "GET", "/chunks", NULL, 0, v, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body.len, 70);
  assert_memory_equal(r.body.data, "piece0;piece1;", 14);
  assert_string_equal(r.hdr[5], "yes");
  lp_buf_free(&r.body);

  net_client_free(c);
  free(body);
}

static void test_h1_plain(void **st) {
  net_server_t *s = server_start(false);
  check_echo(s, NET_HTTP_1, "1", "0");
  server_stop(s);
}

static void test_h2c(void **st) {
  net_server_t *s = server_start(false);
  check_echo(s, NET_HTTP_2, "2", "0");
  server_stop(s);
}

static void test_tls_h2(void **st) {
  net_server_t *s = server_start(true);
  check_echo(s, NET_HTTP_ANY, "2", "1");
  server_stop(s);
}

static void test_tls_h1(void **st) {
  net_server_t *s = server_start(true);
  check_echo(s, NET_HTTP_1, "1", "1");
  server_stop(s);
}

static void test_cert_kept(void **st) {
  char cert[300], key[300];
  snprintf(cert, sizeof cert, "%s/cert.pem", g_dir);
  snprintf(key, sizeof key, "%s/key.pem", g_dir);
  net_server_t *s = server_start(true);
  assert_string_equal(net_server_cert_file(s), cert);
  char *a = NULL, *b = NULL;
  size_t al, bl;
  assert_int_equal(lp_file_read(cert, 1 << 20, &a, &al), 0);
  struct stat sb;
  assert_int_equal(stat(key, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  server_stop(s);
  s = server_start(true);
  assert_int_equal(lp_file_read(cert, 1 << 20, &b, &bl), 0);
  assert_int_equal(al, bl);
  assert_memory_equal(a, b, al);
  server_stop(s);
  free(a);
  free(b);
  /* a broken pair is replaced, not trusted */
  assert_int_equal(lp_file_write_atomic(key, "junk", 4, 0600), 0);
  s = server_start(true);
  assert_int_equal(lp_file_read(key, 1 << 20, &b, &bl), 0);
  assert_non_null(strstr(b, "BEGIN EC PRIVATE KEY"));
  server_stop(s);
  free(b);
}

/* Headers reach the client before the body exists; the body follows when the handler says. */
static int early_data(const uint8_t *d, size_t len, void *arg) {
  result_t *r = arg;
  lp_buf_append(&r->body, d, len);
  return 0;
}
static void check_held(bool tls, enum net_http_version v) {
  net_server_t *s = server_start(tls);
  net_client_t *c = net_client_new(&g_loop);
  char url[256];
  url_of(s, "/held", url, sizeof url);
  result_t r = {0};
  net_fetch_opts_t o = {
      .url = url, .version = v, .insecure = true, .timeout_ms = 15000, .on_data = early_data};
  g_held = NULL;
  assert_int_equal(net_client_fetch(c, &o, on_done, &r, NULL), 0);
  while (!g_held) uv_run(&g_loop, UV_RUN_ONCE);
  for (int i = 0; i < 20; i++) uv_run(&g_loop, UV_RUN_NOWAIT);
  assert_false(r.done);
  held_release();
  run_until(&r.done);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body.len, 8);
  assert_memory_equal(r.body.data, "released", 8);
  lp_buf_free(&r.body);

  /* the client gives up: the handler hears about it and can still finish */
  g_held_aborts = 0;
  o.timeout_ms = 300;
  o.on_data = NULL;
  memset(&r, 0, sizeof r);
  assert_int_equal(net_client_fetch(c, &o, on_done, &r, NULL), 0);
  run_until(&r.done);
  assert_int_equal(r.err, LP_ETIMEDOUT);
  net_client_free(c);
  uint64_t deadline = uv_now(&g_loop) + 5000;
  while (g_held_aborts == 0 && uv_now(&g_loop) < deadline) uv_run(&g_loop, UV_RUN_ONCE);
  assert_int_equal(g_held_aborts, 1);
  server_stop(s);
}
static void test_held_h1(void **st) { check_held(false, NET_HTTP_1); }
static void test_held_h2(void **st) { check_held(true, NET_HTTP_2); }

typedef struct {
  bool done;
  int status;
  char msg[256];
  int nmsgs;
  lp_buf_t last;
} grpc_res_t;
static int grpc_on_msg(const uint8_t *m, size_t len, void *arg) {
  grpc_res_t *g = arg;
  g->nmsgs++;
  g->last.len = 0;
  lp_buf_append(&g->last, m, len);
  return 0;
}
static void grpc_on_done(int status, const char *msg, void *arg) {
  grpc_res_t *g = arg;
  g->done = true;
  g->status = status;
  snprintf(g->msg, sizeof g->msg, "%s", msg);
}
static void grpc_call(net_client_t *c, net_server_t *s, const char *method, const uint8_t *m,
                      size_t len, grpc_res_t *g) {
  char base[128];
  snprintf(base, sizeof base, "%s://127.0.0.1:%d", net_server_is_tls(s) ? "https" : "http",
           net_server_port(s));
  net_grpc_call_opts_t o = {
      .base = base, .method = method, .msg = m, .len = len, .insecure = true, .timeout_ms = 10000};
  lp_buf_free(&g->last);
  memset(g, 0, sizeof *g);
  assert_int_equal(net_client_grpc(c, &o, grpc_on_msg, grpc_on_done, g, NULL), 0);
  run_until(&g->done);
}
static void check_grpc(bool tls) {
  net_server_t *s = server_start(tls);
  net_client_t *c = net_client_new(&g_loop);
  grpc_res_t g = {0};
  grpc_call(c, s, "/test.Svc/Unary", (const uint8_t *)"abc", 3, &g);
  assert_int_equal(g.status, 0);
  assert_int_equal(g.nmsgs, 1);
  assert_int_equal(g.last.len, 4);
  assert_memory_equal(g.last.data, "Rabc", 4);
  grpc_call(c, s, "/test.Svc/Unary", NULL, 0, &g);
  assert_int_equal(g.status, 0);
  assert_memory_equal(g.last.data, "R", 1);
  uint8_t n = 50;
  grpc_call(c, s, "/test.Svc/Stream", &n, 1, &g);
  assert_int_equal(g.status, 0);
  assert_int_equal(g.nmsgs, 50);
  assert_int_equal(g.last.data[1], 49);
  grpc_call(c, s, "/test.Svc/Fail", NULL, 0, &g);
  assert_int_equal(g.status, NET_GRPC_UNKNOWN);
  assert_string_equal(g.msg, "invalid secret: 100% wrong\n");
  grpc_call(c, s, "/test.Svc/Nope", NULL, 0, &g);
  assert_int_equal(g.status, NET_GRPC_UNIMPLEMENTED);
  assert_string_equal(g.msg, "unknown method Nope for service test.Svc");
  grpc_call(c, s, "/other.Svc/X", NULL, 0, &g);
  assert_int_equal(g.status, NET_GRPC_UNIMPLEMENTED);
  assert_string_equal(g.msg, "unknown service other.Svc");
  lp_buf_free(&g.last);
  net_client_free(c);
  server_stop(s);
}
static void test_grpc_tls(void **st) { check_grpc(true); }
static void test_grpc_h2c(void **st) { check_grpc(false); }

/* Graceful stop: the request in flight completes, new connections are refused. */
static bool g_stopped;
static void on_stopped(net_server_t *s, void *arg) { g_stopped = true; }
static void test_shutdown(void **st) {
  net_server_t *s = server_start(true);
  net_client_t *c = net_client_new(&g_loop);
  char url[256];
  url_of(s, "/held", url, sizeof url);
  result_t r = {0};
  net_fetch_opts_t o = {.url = url, .insecure = true, .timeout_ms = 15000};
  g_held = NULL;
  g_stopped = false;
  assert_int_equal(net_client_fetch(c, &o, on_done, &r, NULL), 0);
  while (!g_held) uv_run(&g_loop, UV_RUN_ONCE);
  net_server_shutdown(s, 10000, on_stopped, NULL);
  for (int i = 0; i < 20; i++) uv_run(&g_loop, UV_RUN_NOWAIT);
  assert_false(g_stopped);
  held_release();
  run_until(&r.done);
  assert_int_equal(r.status, 200);
  assert_memory_equal(r.body.data, "released", 8);
  lp_buf_free(&r.body);
  run_until(&g_stopped);
  result_t r2;
  fetch(c, s, "GET", "/p/x", NULL, 0, NET_HTTP_ANY, &r2);
  assert_int_not_equal(r2.err, 0);
  lp_buf_free(&r2.body);
  net_client_free(c);
  server_stop(s);
}

/* A done callback may free the client it came from, with other transfers still running. */
static net_client_t *g_cl;
static int g_dones;
static void free_in_done(const net_fetch_result_t *res, void *arg) {
  g_dones++;
  if (g_cl) {
    net_client_t *c = g_cl;
    g_cl = NULL;
    net_client_free(c);
  }
}
static void test_client_free_in_callback(void **st) {
  net_server_t *s = server_start(false);
  g_cl = net_client_new(&g_loop);
  char url[256], slow[256];
  url_of(s, "/p/x", url, sizeof url);
  url_of(s, "/held", slow, sizeof slow);
  net_fetch_opts_t a = {.url = url, .timeout_ms = 5000};
  net_fetch_opts_t b = {.url = slow, .timeout_ms = 5000};
  g_dones = 0;
  g_held = NULL;
  assert_int_equal(net_client_fetch(g_cl, &b, free_in_done, NULL, NULL), 0);
  while (!g_held) uv_run(&g_loop, UV_RUN_ONCE);
  assert_int_equal(net_client_fetch(g_cl, &a, free_in_done, NULL, NULL), 0);
  uint64_t deadline = uv_now(&g_loop) + 5000;
  while (g_dones < 2 && uv_now(&g_loop) < deadline) uv_run(&g_loop, UV_RUN_ONCE);
  /* the quick one finished and freed the client, which cancelled the held one */
  assert_int_equal(g_dones, 2);
  assert_null(g_cl);
  while (g_held && uv_now(&g_loop) < deadline) uv_run(&g_loop, UV_RUN_ONCE);
  assert_null(g_held);
  server_stop(s);
}

/* The operator's own certificate and key are used as given. */
static void test_operator_cert(void **st) {
  char cert[300], key[300], err[256];
  snprintf(cert, sizeof cert, "%s/cert.pem", g_dir);
  snprintf(key, sizeof key, "%s/key.pem", g_dir);
  net_server_t *s = server_start(true); /* makes sure the pair exists */
  server_stop(s);
  net_server_opts_t o = {.addr = "127.0.0.1:0", .cert_file = cert, .key_file = key};
  assert_int_equal(net_server_new(&g_loop, &o, &s, err, sizeof err), 0);
  assert_int_equal(net_server_route(s, "/p/", true, NULL, h_echo, NULL), 0);
  assert_int_equal(net_server_listen(s, err, sizeof err), 0);
  assert_string_equal(net_server_cert_file(s), cert);
  net_client_t *c = net_client_new(&g_loop);
  result_t r;
  fetch(c, s, "GET", "/p/x", NULL, 0, NET_HTTP_ANY, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.hdr[2], "2");
  lp_buf_free(&r.body);
  net_client_free(c);
  server_stop(s);
  /* a key that does not match the certificate is refused */
  o.key_file = cert;
  assert_true(net_server_new(&g_loop, &o, &s, err, sizeof err) < 0);
}

static void test_bad_opts(void **st) {
  net_server_t *s = NULL;
  char err[256];
  net_server_opts_t o = {.addr = "127.0.0.1"};
  assert_int_equal(net_server_new(&g_loop, &o, &s, err, sizeof err), LP_EINVAL);
  o.addr = "http://127.0.0.1:99999";
  assert_int_equal(net_server_new(&g_loop, &o, &s, err, sizeof err), LP_EINVAL);
  o.addr = "127.0.0.1:0"; /* TLS without any certificate source */
  assert_int_equal(net_server_new(&g_loop, &o, &s, err, sizeof err), LP_EINVAL);
  o.cert_file = "/nonexistent/cert.pem";
  o.key_file = "/nonexistent/key.pem";
  assert_true(net_server_new(&g_loop, &o, &s, err, sizeof err) < 0);
  assert_non_null(strstr(err, "certificate"));
}

static int setup(void **st) {
  uv_loop_init(&g_loop);
  snprintf(g_dir, sizeof g_dir, "/tmp/lpod-net-test-XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  lp_log_set_level(1);
  return 0;
}

static int teardown(void **st) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) return 1;
  uv_run(&g_loop, UV_RUN_NOWAIT);
  return uv_loop_close(&g_loop) == 0 ? 0 : 1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_h1_plain),
      cmocka_unit_test(test_h2c),
      cmocka_unit_test(test_tls_h2),
      cmocka_unit_test(test_tls_h1),
      cmocka_unit_test(test_cert_kept),
      cmocka_unit_test(test_held_h1),
      cmocka_unit_test(test_held_h2),
      cmocka_unit_test(test_grpc_tls),
      cmocka_unit_test(test_grpc_h2c),
      cmocka_unit_test(test_shutdown),
      cmocka_unit_test(test_client_free_in_callback),
      cmocka_unit_test(test_operator_cert),
      cmocka_unit_test(test_bad_opts),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
