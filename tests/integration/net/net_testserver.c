/* A small server on the net module for the real-socket tests (curl, nghttp, h2load, Node) and
 * the network benchmarks. Prints "PORT <n>" once listening; SIGTERM stops it gracefully, so a
 * sanitizer build reports leaks at exit.
 *
 *   net_testserver --addr 127.0.0.1:0|http://127.0.0.1:0 --cert-dir DIR
 *                  [--max-conns N] [--idle-ms N] [--header-timeout-ms N] [--handshake-ms N]
 *                  [--max-streams N] [--v LEVEL] [--blob-mb N (largest /size/ body, 64)]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/net.h"

static uv_loop_t *g_loop;
static net_server_t *g_srv;
static uint8_t *g_blob;
static size_t g_blob_len = 64u << 20;

/* requests parked by /held/<id> until /release/<id> */
#define MAX_HELD 64
static struct {
  char id[32];
  net_req_t *r;
} g_held[MAX_HELD];

static void h_echo(net_req_t *r, void *arg) {
  size_t len;
  const uint8_t *b = net_req_body(r, &len);
  char ver[4];
  snprintf(ver, sizeof ver, "%d", net_req_http_version(r));
  net_header_t h[] = {{"content-type", "application/octet-stream"},
                      {"x-method", net_req_method(r)},
                      {"x-version", ver},
                      {"x-query", net_req_query(r)}};
  net_resp_send(r, 200, h, LP_ARRAY_LEN(h), b, len);
}

static void noop_release(void *arg) {}

static void h_size(net_req_t *r, void *arg) {
  const char *p = net_req_path(r) + strlen("/size/");
  char *end;
  unsigned long long n = strtoull(p, &end, 10);
  if (*p == 0 || *end || n > g_blob_len) {
    net_resp_error(r, 400, "bad size");
    return;
  }
  net_header_t h[] = {{"content-type", "video/mp2t"}, {"cache-control", "max-age=5"}};
  net_resp_start(r, 200, h, 2, (int64_t)n);
  net_resp_write_ref(r, g_blob, n, noop_release, NULL);
  net_resp_end(r, NULL, 0);
}

static void held_abort(net_req_t *r, void *arg) {
  for (int i = 0; i < MAX_HELD; i++)
    if (g_held[i].r == r) g_held[i].r = NULL;
  net_resp_end(r, NULL, 0);
}

static void h_held(net_req_t *r, void *arg) {
  const char *id = net_req_path(r) + strlen("/held/");
  for (int i = 0; i < MAX_HELD; i++) {
    if (!g_held[i].r) {
      snprintf(g_held[i].id, sizeof g_held[i].id, "%s", id);
      g_held[i].r = r;
      net_req_on_abort(r, held_abort, NULL);
      net_resp_start(r, 200, NULL, 0, -1);
      return;
    }
  }
  net_resp_error(r, 503, "too many held");
}

static void h_release(net_req_t *r, void *arg) {
  const char *id = net_req_path(r) + strlen("/release/");
  for (int i = 0; i < MAX_HELD; i++) {
    if (g_held[i].r && strcmp(g_held[i].id, id) == 0) {
      net_req_t *h = g_held[i].r;
      g_held[i].r = NULL;
      net_resp_write(h, "released\n", 9);
      net_resp_end(h, NULL, 0);
      net_resp_send(r, 200, NULL, 0, "ok\n", 3);
      return;
    }
  }
  net_resp_error(r, 404, "no such held request");
}

static void h_chunks(net_req_t *r, void *arg) {
  net_resp_start(r, 200, NULL, 0, -1);
  for (int i = 0; i < 5; i++) {
    char s[16];
    int n = snprintf(s, sizeof s, "part%d\n", i);
    net_resp_write(r, s, (size_t)n);
  }
  net_header_t t = {"x-checksum", "done"};
  net_resp_end(r, &t, 1);
}

static void count_data(net_req_t *r, const uint8_t *d, size_t len, int err, void *arg) {
  size_t *n = net_req_data(r);
  if (len) {
    *n += len;
    return;
  }
  char s[32];
  int k = snprintf(s, sizeof s, "%zu\n", *n);
  free(n);
  if (err)
    net_resp_error(r, 413, "too large");
  else
    net_resp_send(r, 200, NULL, 0, s, (size_t)k);
}

static void h_count(net_req_t *r, void *arg) {
  size_t *n = calloc(1, sizeof *n);
  net_req_set_data(r, n);
  net_req_on_data(r, count_data, NULL);
}

static void h_stats(net_req_t *r, void *arg) {
  net_server_stats_t st;
  net_server_get_stats(g_srv, &st);
  char s[256];
  int n = snprintf(s, sizeof s,
                   "{\"conns_open\":%llu,\"conns_accepted\":%llu,\"conns_refused\":%llu,"
                   "\"reqs_in_flight\":%llu,\"protocol_errors\":%llu}\n",
                   (unsigned long long)st.conns_open, (unsigned long long)st.conns_accepted,
                   (unsigned long long)st.conns_refused, (unsigned long long)st.reqs_in_flight,
                   (unsigned long long)st.protocol_errors);
  net_header_t h = {"content-type", "application/json"};
  net_resp_send(r, 200, &h, 1, s, (size_t)n);
}

static void g_unary(net_req_t *r, const uint8_t *msg, size_t len, void *arg) {
  net_grpc_reply(r, msg, len);
}

/* The request message is a decimal count; that many messages "msg <i>" follow. */
static void g_stream(net_req_t *r, const uint8_t *msg, size_t len, void *arg) {
  char buf[16] = "";
  snprintf(buf, sizeof buf, "%.*s", (int)LP_MIN(len, sizeof buf - 1), (const char *)msg);
  int n = atoi(buf);
  for (int i = 0; i < n; i++) {
    char m[32];
    int k = snprintf(m, sizeof m, "msg %d", i);
    net_grpc_send(r, (const uint8_t *)m, (size_t)k);
  }
  net_grpc_finish(r, NET_GRPC_OK, NULL);
}

static void g_fail(net_req_t *r, const uint8_t *msg, size_t len, void *arg) {
  net_grpc_finish(r, NET_GRPC_UNKNOWN, "invalid secret");
}

static uv_signal_t g_sigterm, g_sigint;

static void on_stopped(net_server_t *s, void *arg) {
  net_server_free(s);
  g_srv = NULL;
  uv_close((uv_handle_t *)&g_sigterm, NULL);
  uv_close((uv_handle_t *)&g_sigint, NULL);
}

static void on_signal(uv_signal_t *h, int sig) {
  if (g_srv) net_server_shutdown(g_srv, 3000, on_stopped, NULL);
}

int main(int argc, char **argv) {
  net_server_opts_t o = {.addr = "127.0.0.1:0"};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--addr"))
      o.addr = v;
    else if (!strcmp(k, "--cert-dir"))
      o.cert_dir = v;
    else if (!strcmp(k, "--cert"))
      o.cert_file = v;
    else if (!strcmp(k, "--key"))
      o.key_file = v;
    else if (!strcmp(k, "--max-conns"))
      o.max_conns = (uint32_t)atoi(v);
    else if (!strcmp(k, "--max-streams"))
      o.max_streams = (uint32_t)atoi(v);
    else if (!strcmp(k, "--idle-ms"))
      o.idle_timeout_ms = (uint64_t)atoll(v);
    else if (!strcmp(k, "--header-timeout-ms"))
      o.header_timeout_ms = (uint64_t)atoll(v);
    else if (!strcmp(k, "--handshake-ms"))
      o.handshake_timeout_ms = (uint64_t)atoll(v);
    else if (!strcmp(k, "--v"))
      lp_log_set_level(atoi(v));
    else if (!strcmp(k, "--blob-mb"))
      g_blob_len = (size_t)atoi(v) << 20;
    else {
      fprintf(stderr, "unknown option %s\n", k);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  g_loop = uv_default_loop();
  g_blob = malloc(g_blob_len);
  for (size_t i = 0; i < g_blob_len; i++) g_blob[i] = (uint8_t)(i % 251);
  char err[256];
  if (net_server_new(g_loop, &o, &g_srv, err, sizeof err)) {
    fprintf(stderr, "server: %s\n", err);
    return 1;
  }
  net_route_opts_t big = {.max_body_bytes = 64u << 20};
  net_route_opts_t stream = {.body = NET_BODY_STREAM, .max_body_bytes = 512u << 20};
  net_server_route(g_srv, "/echo", false, &big, h_echo, NULL);
  net_server_route(g_srv, "/small", false, NULL, h_echo, NULL);
  net_server_route(g_srv, "/size/", true, NULL, h_size, NULL);
  net_server_route(g_srv, "/held/", true, NULL, h_held, NULL);
  net_server_route(g_srv, "/release/", true, NULL, h_release, NULL);
  net_server_route(g_srv, "/chunks", false, NULL, h_chunks, NULL);
  net_server_route(g_srv, "/count", false, &stream, h_count, NULL);
  net_server_route(g_srv, "/stats", false, NULL, h_stats, NULL);
  net_server_grpc(g_srv, "/test.Svc/Unary", 0, g_unary, NULL);
  net_server_grpc(g_srv, "/test.Svc/Stream", 0, g_stream, NULL);
  net_server_grpc(g_srv, "/test.Svc/Fail", 0, g_fail, NULL);
  if (net_server_listen(g_srv, err, sizeof err)) {
    fprintf(stderr, "server: %s\n", err);
    net_server_free(g_srv);
    uv_run(g_loop, UV_RUN_DEFAULT);
    return 1;
  }
  uv_signal_init(g_loop, &g_sigterm);
  uv_signal_init(g_loop, &g_sigint);
  uv_signal_start(&g_sigterm, on_signal, SIGTERM);
  uv_signal_start(&g_sigint, on_signal, SIGINT);
  printf("PORT %d\n", net_server_port(g_srv));
  fflush(stdout);
  uv_run(g_loop, UV_RUN_DEFAULT);
  uv_loop_close(g_loop);
  free(g_blob);
  return 0;
}
