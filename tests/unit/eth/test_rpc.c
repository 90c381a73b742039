/* JSON-RPC client and chain client against a scripted endpoint on loopback: error decoding
 * (geth and ganache revert styles, HTTP errors, timeouts, refused connections), Arbitrum's
 * l1BlockNumber, the round back-dating rule, and an outage: logged once, last values kept,
 * unknown senders answered at once, recovery logged once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "lpod/eth.h"

/* ---- scripted endpoint ----------------------------------------------------------------------- */

enum { MODE_ANSWER, MODE_SILENT, MODE_HTTP_503, MODE_HANGUP };

static struct {
  int lfd, port;
  pthread_t thread;
  atomic_int mode, stop;
  atomic_llong l1_block, round, zero_hash_round;
  atomic_int requests;
  atomic_int pool_fail; /* getFirstTranscoderInPool reverts */
  /* transactions: raw bytes as sent, and which one the chain "mines" (-1: none) */
  pthread_mutex_t lock;
  char *raw[8];
  uint8_t hash[8][32];
  atomic_int nsent, mined;
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct conn {
  int fd;
  char buf[65536];
  size_t len;
} conn_t;

static void word_u64(char *hex, uint64_t v) { /* 64 hex digits */
  snprintf(hex, 65, "%048llx%016llx", 0ull, (unsigned long long)v);
}

static char *answer(const char *body) {
  cJSON *req = cJSON_Parse(body);
  const char *method = cJSON_GetStringValue(cJSON_GetObjectItem(req, "method"));
  int id = cJSON_GetObjectItem(req, "id") ? cJSON_GetObjectItem(req, "id")->valueint : 0;
  char result[1024] = "", error[1024] = "";
  if (!method) {
    snprintf(error, sizeof error, "{\"code\":-32600,\"message\":\"bad request\"}");
  } else if (!strcmp(method, "eth_chainId")) {
    snprintf(result, sizeof result, "\"0xa4b1\"");
  } else if (!strcmp(method, "eth_gasPrice")) {
    snprintf(result, sizeof result, "\"0x3b9aca00\"");
  } else if (!strcmp(method, "eth_getBlockByNumber")) {
    snprintf(
        result, sizeof result,
        "{\"number\":\"0x%llx\",\"l1BlockNumber\":\"0x%llx\",\"baseFeePerGas\":\"0x3b9aca00\"}",
        (unsigned long long)(atomic_load(&srv.l1_block) * 40),
        (unsigned long long)atomic_load(&srv.l1_block));
  } else if (!strcmp(method, "eth_estimateGas")) {
    snprintf(result, sizeof result, "\"0x30d40\"");
  } else if (!strcmp(method, "eth_getTransactionCount")) {
    snprintf(result, sizeof result, "\"0x7\"");
  } else if (!strcmp(method, "eth_maxPriorityFeePerGas")) {
    snprintf(result, sizeof result, "\"0x77359400\"");
  } else if (!strcmp(method, "eth_sendRawTransaction")) {
    const char *raw =
        cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(req, "params"), 0));
    uint8_t b[2048];
    int n = raw ? lp_hex_decode(raw, b, sizeof b) : -1;
    pthread_mutex_lock(&srv.lock);
    int i = atomic_load(&srv.nsent);
    if (n > 0 && i < 8) {
      srv.raw[i] = strdup(raw);
      pm_keccak256(b, (size_t)n, srv.hash[i]);
      char h[65];
      lp_hex_encode(srv.hash[i], 32, h);
      snprintf(result, sizeof result, "\"0x%s\"", h);
      atomic_store(&srv.nsent, i + 1);
    } else {
      snprintf(error, sizeof error, "{\"code\":-32000,\"message\":\"bad transaction\"}");
    }
    pthread_mutex_unlock(&srv.lock);
  } else if (!strcmp(method, "eth_getTransactionReceipt")) {
    const char *h = cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(req, "params"), 0));
    uint8_t want[32];
    int m = atomic_load(&srv.mined);
    snprintf(result, sizeof result, "null");
    pthread_mutex_lock(&srv.lock);
    if (h && m >= 0 && m < atomic_load(&srv.nsent) && lp_hex_decode(h, want, 32) == 32 &&
        !memcmp(want, srv.hash[m], 32))
      snprintf(result, sizeof result, "{\"status\":\"0x1\",\"transactionHash\":\"%s\"}", h);
    pthread_mutex_unlock(&srv.lock);
  } else if (!strcmp(method, "revert_geth")) {
    /* Error(string) "ticket is expired" */
    snprintf(
        error, sizeof error,
        "{\"code\":3,\"message\":\"execution reverted: ticket is expired\",\"data\":\"0x08c379a0"
        "0000000000000000000000000000000000000000000000000000000000000020"
        "0000000000000000000000000000000000000000000000000000000000000011"
        "7469636b657420697320657870697265640000000000000000000000000000\"}");
  } else if (!strcmp(method, "revert_ganache")) {
    snprintf(error, sizeof error,
             "{\"code\":-32000,\"message\":\"VM Exception while processing transaction: revert\","
             "\"data\":{\"result\":\"0x08c379a0"
             "0000000000000000000000000000000000000000000000000000000000000020"
             "0000000000000000000000000000000000000000000000000000000000000011"
             "7469636b657420697320657870697265640000000000000000000000000000\"}}");
  } else if (!strcmp(method, "eth_call")) {
    const cJSON *call = cJSON_GetArrayItem(cJSON_GetObjectItem(req, "params"), 0);
    const char *data = cJSON_GetStringValue(cJSON_GetObjectItem(call, "data"));
    uint8_t d[512];
    int n = data ? lp_hex_decode(data, d, sizeof d) : -1;
    uint8_t sel[4];
    char w[65], w2[65], w3[65], w4[65];
    eth_abi_selector("getContract(bytes32)", sel);
    if (n >= 4 && !memcmp(d, sel, 4)) {
      word_u64(w, 0x1000 + d[4]); /* a distinct address per contract name */
      snprintf(result, sizeof result, "\"0x%s\"", w);
    }
    eth_abi_selector("lastInitializedRound()", sel);
    if (n >= 4 && !memcmp(d, sel, 4) && atomic_load(&srv.round) < 0) {
      snprintf(error, sizeof error, "{\"code\":3,\"message\":\"execution reverted: paused\"}");
    } else if (n >= 4 && !memcmp(d, sel, 4)) {
      word_u64(w, (uint64_t)atomic_load(&srv.round));
      snprintf(result, sizeof result, "\"0x%s\"", w);
    }
    eth_abi_selector("blockHashForRound(uint256)", sel);
    if (n >= 36 && !memcmp(d, sel, 4)) {
      uint64_t r;
      eth_abi_get_u64(d + 4, (size_t)n - 4, 0, &r);
      /* Hash of round r: 0xrr repeated, or zero while the round has none yet. */
      memset(w, '0', 64);
      w[64] = 0;
      if ((long long)r != atomic_load(&srv.zero_hash_round))
        for (int i = 0; i < 64; i += 2) snprintf(w + i, 3, "%02x", (unsigned)(r & 0xff));
      snprintf(result, sizeof result, "\"0x%s\"", w);
    }
    eth_abi_selector("getTranscoderPoolSize()", sel);
    if (n >= 4 && !memcmp(d, sel, 4)) {
      word_u64(w, 2);
      snprintf(result, sizeof result, "\"0x%s\"", w);
    }
    /* The pool lists 0x..a1 then 0x..a2; every address but 0x..a2 is active. */
    eth_abi_selector("isActiveTranscoder(address)", sel);
    if (n >= 36 && !memcmp(d, sel, 4)) {
      word_u64(w, d[35] == 0xa2 ? 0 : 1);
      snprintf(result, sizeof result, "\"0x%s\"", w);
    }
    eth_abi_selector("getFirstTranscoderInPool()", sel);
    if (n >= 4 && !memcmp(d, sel, 4) && atomic_load(&srv.pool_fail)) {
      snprintf(error, sizeof error, "{\"code\":3,\"message\":\"execution reverted\"}");
    } else if (n >= 4 && !memcmp(d, sel, 4)) {
      word_u64(w, 0xa1);
      snprintf(result, sizeof result, "\"0x%s\"", w);
    }
    eth_abi_selector("getNextTranscoderInPool(address)", sel);
    if (n >= 36 && !memcmp(d, sel, 4)) {
      word_u64(w, d[35] == 0xa1 ? 0xa2 : 0);
      snprintf(result, sizeof result, "\"0x%s\"", w);
    }
    eth_abi_selector("getSenderInfo(address)", sel);
    if (n >= 4 && !memcmp(d, sel, 4)) {
      word_u64(w, 100);
      word_u64(w2, 0);
      word_u64(w3, 50);
      word_u64(w4, 0);
      snprintf(result, sizeof result, "\"0x%s%s%s%s\"", w, w2, w3, w4);
    }
    eth_abi_selector("usedTickets(bytes32)", sel);
    if (n >= 4 && !memcmp(d, sel, 4)) {
      word_u64(w, 0);
      snprintf(result, sizeof result, "\"0x%s\"", w);
    }
    eth_abi_selector("claimedReserve(address,address)", sel);
    if (n >= 4 && !memcmp(d, sel, 4)) {
      word_u64(w, 7);
      snprintf(result, sizeof result, "\"0x%s\"", w);
    }
    if (!result[0] && !error[0])
      snprintf(error, sizeof error, "{\"code\":-32000,\"message\":\"unknown call\"}");
  } else {
    snprintf(error, sizeof error, "{\"code\":-32601,\"message\":\"method %s not found\"}", method);
  }
  cJSON_Delete(req);
  char *out = malloc(4096);
  if (error[0])
    snprintf(out, 4096, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"error\":%s}", id, error);
  else
    snprintf(out, 4096, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":%s}", id, result);
  return out;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* Returns false when the connection should be closed. */
static bool serve(conn_t *c) {
  for (;;) {
    c->buf[c->len] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return true;
    const char *cl = strcasestr(c->buf, "content-length:");
    size_t body_len = cl && cl < end ? (size_t)atoi(cl + 15) : 0;
    size_t head = (size_t)(end + 4 - c->buf);
    if (c->len < head + body_len) return true;
    atomic_fetch_add(&srv.requests, 1);
    int mode = atomic_load(&srv.mode);
    if (mode == MODE_HANGUP) return false;
    if (mode == MODE_SILENT) {
      c->len = 0;
      return true;
    }
    char *body = lp_strndup(c->buf + head, body_len);
    char msg[8192];
    /* One write per response: split writes meet delayed ACKs and add 40 ms per request. */
    if (mode == MODE_HTTP_503) {
      const char *text = "upstream unavailable";
      snprintf(msg, sizeof msg,
               "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
               "Content-Length: %zu\r\n\r\n%s",
               strlen(text), text);
    } else {
      char *resp = answer(body);
      snprintf(msg, sizeof msg,
               "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
               "%zu\r\n\r\n%s",
               strlen(resp), resp);
      free(resp);
    }
    write_all(c->fd, msg, strlen(msg));
    free(body);
    memmove(c->buf, c->buf + head + body_len, c->len - head - body_len);
    c->len -= head + body_len;
  }
}

static void *server_main(void *arg) {
  conn_t *conns[64] = {0};
  while (!atomic_load(&srv.stop)) {
    struct pollfd pf[65];
    int n = 0;
    pf[n++] = (struct pollfd){.fd = srv.lfd, .events = POLLIN};
    for (int i = 0; i < 64; i++)
      if (conns[i]) pf[n++] = (struct pollfd){.fd = conns[i]->fd, .events = POLLIN};
    if (poll(pf, (nfds_t)n, 50) <= 0) continue;
    if (pf[0].revents & POLLIN) {
      int fd = accept(srv.lfd, NULL, NULL);
      for (int i = 0; fd >= 0 && i < 64; i++)
        if (!conns[i]) {
          conns[i] = calloc(1, sizeof(conn_t));
          conns[i]->fd = fd;
          fd = -1;
        }
      if (fd >= 0) close(fd);
    }
    for (int i = 0; i < 64; i++) {
      if (!conns[i]) continue;
      struct pollfd p = {.fd = conns[i]->fd, .events = POLLIN};
      if (poll(&p, 1, 0) <= 0) continue;
      ssize_t r = read(conns[i]->fd, conns[i]->buf + conns[i]->len,
                       sizeof conns[i]->buf - 1 - conns[i]->len);
      if (r <= 0 || !((conns[i]->len += (size_t)r), serve(conns[i]))) {
        close(conns[i]->fd);
        free(conns[i]);
        conns[i] = NULL;
      }
    }
  }
  for (int i = 0; i < 64; i++)
    if (conns[i]) {
      close(conns[i]->fd);
      free(conns[i]);
    }
  return NULL;
}

static char url[64];

static int start_server(void **state) {
  srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (bind(srv.lfd, (struct sockaddr *)&a, sizeof a) || listen(srv.lfd, 16) ||
      getsockname(srv.lfd, (struct sockaddr *)&a, &al))
    return -1;
  srv.port = ntohs(a.sin_port);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", srv.port);
  atomic_store(&srv.l1_block, 1000);
  atomic_store(&srv.round, 5);
  atomic_store(&srv.zero_hash_round, -1);
  atomic_store(&srv.mined, -1);
  return pthread_create(&srv.thread, NULL, server_main, NULL);
}

static int stop_server(void **state) {
  atomic_store(&srv.stop, 1);
  pthread_join(srv.thread, NULL);
  close(srv.lfd);
  for (int i = 0; i < 8; i++) free(srv.raw[i]);
  return 0;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static int call(eth_rpc_t *rpc, const char *method, char *err, size_t errlen) {
  cJSON *res = NULL;
  int rc = eth_rpc_call(rpc, method, NULL, &res, err, errlen);
  cJSON_Delete(res);
  return rc;
}

static void test_rpc_errors(void **state) {
  eth_rpc_t *rpc;
  char err[512];
  assert_int_equal(eth_rpc_new(NULL, "ftp://x", 1000, &rpc), LP_EINVAL);
  assert_int_equal(eth_rpc_new(NULL, url, 300, &rpc), 0);
  atomic_store(&srv.mode, MODE_ANSWER);
  cJSON *res = NULL;
  assert_int_equal(eth_rpc_call(rpc, "eth_chainId", NULL, &res, err, sizeof err), 0);
  uint64_t id;
  assert_int_equal(eth_rpc_hex_u64(res, &id), 0);
  assert_int_equal(id, 42161);
  cJSON_Delete(res);

  assert_int_equal(call(rpc, "revert_geth", err, sizeof err), LP_EPROTO);
  assert_string_equal(err, "execution reverted: ticket is expired");
  assert_int_equal(call(rpc, "revert_ganache", err, sizeof err), LP_EPROTO);
  assert_string_equal(err, "execution reverted: ticket is expired");
  assert_int_equal(call(rpc, "no_such_method", err, sizeof err), LP_EPROTO);
  assert_string_equal(err, "method no_such_method not found");

  atomic_store(&srv.mode, MODE_HTTP_503);
  assert_int_equal(call(rpc, "eth_chainId", err, sizeof err), LP_EIO);
  assert_non_null(strstr(err, "HTTP 503"));
  atomic_store(&srv.mode, MODE_HANGUP);
  assert_int_equal(call(rpc, "eth_chainId", err, sizeof err), LP_EIO);
  atomic_store(&srv.mode, MODE_SILENT);
  assert_int_equal(call(rpc, "eth_chainId", err, sizeof err), LP_ETIMEDOUT);
  atomic_store(&srv.mode, MODE_ANSWER);
  assert_int_equal(call(rpc, "eth_chainId", err, sizeof err), 0);
  eth_rpc_free(rpc);

  /* Nothing listening. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  close(fd);
  char dead[64];
  snprintf(dead, sizeof dead, "http://127.0.0.1:%d/", ntohs(a.sin_port));
  assert_int_equal(eth_rpc_new(NULL, dead, 1000, &rpc), 0);
  assert_int_equal(call(rpc, "eth_chainId", err, sizeof err), LP_EIO);
  eth_rpc_free(rpc);
}

typedef struct {
  int done, status;
  char err[256];
} async_t;

static void on_async(void *ud, int status, const cJSON *result, const char *err) {
  async_t *a = ud;
  a->status = status;
  snprintf(a->err, sizeof a->err, "%s", err ? err : "");
  a->done++;
}

static void test_rpc_async(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  eth_rpc_t *rpc;
  assert_int_equal(eth_rpc_new(&loop, url, 300, &rpc), 0);
  atomic_store(&srv.mode, MODE_ANSWER);
  async_t a[8] = {0};
  for (int i = 0; i < 8; i++)
    assert_int_equal(
        eth_rpc_call_async(rpc, i % 2 ? "eth_chainId" : "revert_geth", NULL, on_async, &a[i]), 0);
  for (int i = 0; i < 8; i++) assert_int_equal(a[i].done, 0); /* never from inside the call */
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(a[i].done, 1);
    assert_int_equal(a[i].status, i % 2 ? 0 : LP_EPROTO);
  }
  assert_string_equal(a[0].err, "execution reverted: ticket is expired");

  /* A slow endpoint times out; a call still in flight at free time is cancelled. */
  atomic_store(&srv.mode, MODE_SILENT);
  async_t slow = {0}, cancelled = {0};
  assert_int_equal(eth_rpc_call_async(rpc, "eth_chainId", NULL, on_async, &slow), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(slow.status, LP_ETIMEDOUT);
  assert_int_equal(eth_rpc_call_async(rpc, "eth_chainId", NULL, on_async, &cancelled), 0);
  eth_rpc_free(rpc);
  assert_int_equal(cancelled.done, 1);
  assert_int_equal(cancelled.status, LP_ECANCELED);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  atomic_store(&srv.mode, MODE_ANSWER);
}

static eth_client_t *connected_client(uv_loop_t *loop) {
  eth_client_cfg_t cfg = {0};
  cfg.url = url;
  memset(cfg.controller, 0x11, 20);
  cfg.poll_interval_ms = 30;
  cfg.rpc_timeout_ms = 300;
  uint8_t me[20];
  memset(me, 0x22, 20);
  cfg.recipient = me;
  eth_client_t *c;
  assert_int_equal(eth_client_new(loop, &cfg, &c), 0);
  char err[256];
  assert_int_equal(eth_client_connect(c, err, sizeof err), 0);
  return c;
}

static void run_ms(uv_loop_t *loop, uint64_t ms) {
  uint64_t end = lp_now_ms() + ms;
  while (lp_now_ms() < end) uv_run(loop, UV_RUN_NOWAIT), usleep(2000);
}

/* Runs the loop until cond holds (at most 10 s). */
#define RUN_UNTIL(loop, cond)                                                                      \
  do {                                                                                             \
    uint64_t end_ = lp_now_ms() + 10000;                                                           \
    while (!(cond) && lp_now_ms() < end_) uv_run((loop), UV_RUN_NOWAIT), usleep(2000);             \
    assert_true(cond);                                                                             \
  } while (0)

static void test_l1_block_and_backdating(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  atomic_store(&srv.mode, MODE_ANSWER);
  atomic_store(&srv.round, 5);
  atomic_store(&srv.zero_hash_round, -1);
  eth_client_t *c = connected_client(&loop);
  assert_int_equal(eth_client_chain_id(c), 42161);
  /* Arbitrum: the L1 number, not the L2 height. */
  assert_int_equal(eth_client_last_block(c), atomic_load(&srv.l1_block));
  assert_int_equal(eth_client_contracts(c)->ticket_broker[19] != 0, 1);
  int64_t round;
  uint8_t hash[32], want[32];
  assert_int_equal(eth_client_params_round(c, &round, hash), 0);
  assert_int_equal(round, 5);
  memset(want, 0x05, 32);
  assert_memory_equal(hash, want, 32);
  assert_int_equal(eth_client_pool_size(c), 2);
  assert_true(eth_client_recipient_active(c));

  /* Until the pool is walked only the node's own recipient can be active. */
  uint8_t member[20] = {0}, other[20] = {0};
  member[19] = 0xa1;
  assert_false(eth_client_is_active(c, member));

  /* Round 6 starts but has no block hash yet: params are back-dated to round 5. */
  assert_int_equal(eth_client_start(c), 0);
  /* A pool walk that fails does not hold the new round back; the set stays unknown. */
  atomic_store(&srv.pool_fail, 1);
  atomic_store(&srv.round, 6);
  atomic_fetch_add(&srv.l1_block, 1);
  RUN_UNTIL(&loop, eth_client_last_initialized_round(c) == 6);
  assert_false(eth_client_is_active(c, member));
  atomic_store(&srv.round, 5);
  atomic_fetch_add(&srv.l1_block, 1);
  RUN_UNTIL(&loop, eth_client_last_initialized_round(c) == 5);
  atomic_store(&srv.pool_fail, 0);
  /* Once it works the walk completes: the active member counts, the inactive one and a stranger
   * do not. */
  RUN_UNTIL(&loop, eth_client_is_active(c, member));
  other[19] = 0xa2;
  assert_false(eth_client_is_active(c, other));
  other[19] = 0xa3;
  assert_false(eth_client_is_active(c, other));
  atomic_store(&srv.zero_hash_round, 6);
  atomic_store(&srv.round, 6);
  atomic_fetch_add(&srv.l1_block, 1);
  RUN_UNTIL(&loop, eth_client_last_initialized_round(c) == 6);
  assert_int_equal(eth_client_params_round(c, &round, hash), 0);
  assert_int_equal(round, 5);
  assert_memory_equal(hash, want, 32);

  /* Once the hash is there the next block picks it up. */
  atomic_store(&srv.zero_hash_round, -1);
  atomic_fetch_add(&srv.l1_block, 1);
  RUN_UNTIL(&loop, eth_client_params_round(c, &round, hash) == 0 && round == 6);
  memset(want, 0x06, 32);
  assert_memory_equal(hash, want, 32);
  eth_client_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

typedef struct {
  int calls, status;
  eth_sender_info_t info;
  pm_u256_t claimed;
  char err[256];
} sender_wait_t;

static void on_sender(void *ud, int status, const eth_sender_info_t *info, const pm_u256_t *claimed,
                      const char *err) {
  sender_wait_t *w = ud;
  w->calls++;
  w->status = status;
  if (info) w->info = *info;
  if (claimed) w->claimed = *claimed;
  snprintf(w->err, sizeof w->err, "%s", err ? err : "");
}

static size_t count(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

static char *read_log(FILE *f) {
  fflush(f);
  long len = ftell(f);
  char *s = calloc(1, (size_t)len + 1);
  rewind(f);
  if (fread(s, 1, (size_t)len, f) != (size_t)len) s[0] = 0;
  fseek(f, 0, SEEK_END);
  return s;
}

static void test_outage(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  atomic_store(&srv.mode, MODE_ANSWER);
  atomic_store(&srv.round, 7);
  eth_client_t *c = connected_client(&loop);
  assert_int_equal(eth_client_start(c), 0);
  uint8_t gw[20], stranger[20];
  memset(gw, 0x33, 20);
  memset(stranger, 0x44, 20);
  sender_wait_t w = {0};
  assert_int_equal(eth_client_sender_info(c, gw, on_sender, &w), 0);
  while (!w.calls) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(w.status, 0);
  uint64_t v;
  assert_int_equal(pm_u256_to_u64(&w.info.deposit, &v), 0);
  assert_int_equal(v, 100);
  assert_int_equal(pm_u256_to_u64(&w.claimed, &v), 0);
  assert_int_equal(v, 7);
  RUN_UNTIL(&loop, eth_client_gas_price(c, &(pm_u256_t){{0}}) == 0);
  int64_t block = eth_client_last_block(c);

  FILE *log = tmpfile();
  lp_log_set_fd(fileno(log));
  atomic_store(&srv.mode, MODE_HANGUP);
  eth_client_sender_forget(c, gw); /* force a refresh attempt during the outage */
  run_ms(&loop, 400);              /* many poll intervals */

  /* Last good values are kept and served. */
  assert_int_equal(eth_client_last_block(c), block);
  assert_int_equal(eth_client_last_initialized_round(c), 7);
  int64_t round;
  uint8_t hash[32];
  assert_int_equal(eth_client_params_round(c, &round, hash), 0);
  sender_wait_t w2 = {0};
  assert_int_equal(eth_client_sender_info(c, gw, on_sender, &w2), 0);
  assert_int_equal(w2.calls, 1);
  assert_int_equal(w2.status, 0);
  assert_int_equal(pm_u256_to_u64(&w2.info.deposit, &v), 0);
  assert_int_equal(v, 100);
  /* A sender never seen gets the endpoint's error at once instead of queueing. */
  sender_wait_t w3 = {0};
  int before = atomic_load(&srv.requests);
  assert_int_equal(eth_client_sender_info(c, stranger, on_sender, &w3), 0);
  assert_int_equal(w3.calls, 1);
  assert_int_equal(w3.status, LP_EIO);
  assert_non_null(strstr(w3.err, "Ethereum RPC endpoint unavailable"));
  assert_int_equal(atomic_load(&srv.requests), before);

  atomic_store(&srv.mode, MODE_ANSWER);
  atomic_fetch_add(&srv.l1_block, 1);
  RUN_UNTIL(&loop, eth_client_last_block(c) == block + 1);
  lp_log_set_fd(-1);
  char *text = read_log(log);
  fclose(log);
  /* One line when it failed, one when it came back, however many polls failed between. */
  assert_int_equal(count(text, "failing"), 1);
  assert_int_equal(count(text, "answering again"), 1);
  free(text);

  /* The stranger is looked up normally once the endpoint is back. */
  sender_wait_t w4 = {0};
  assert_int_equal(eth_client_sender_info(c, stranger, on_sender, &w4), 0);
  while (!w4.calls) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(w4.status, 0);
  eth_client_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A call that reverts on every block is one warning, not one per block. */
static void test_revert_logged_once(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  atomic_store(&srv.mode, MODE_ANSWER);
  atomic_store(&srv.round, 8);
  eth_client_t *c = connected_client(&loop);
  FILE *log = tmpfile();
  lp_log_set_fd(fileno(log));
  atomic_store(&srv.round, -1);
  assert_int_equal(eth_client_start(c), 0);
  for (int i = 0; i < 5; i++) {
    int before = atomic_load(&srv.requests);
    atomic_fetch_add(&srv.l1_block, 1);
    RUN_UNTIL(&loop, atomic_load(&srv.requests) >= before + 3);
  }
  run_ms(&loop, 50);
  atomic_store(&srv.round, 8);
  lp_log_set_fd(-1);
  char *text = read_log(log);
  fclose(log);
  assert_int_equal(count(text, "execution reverted: paused"), 1);
  free(text);
  assert_int_equal(eth_client_last_initialized_round(c), 8); /* last good value kept */
  eth_client_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

typedef struct {
  bool done;
  int status;
  uint8_t txhash[32];
  char err[256];
} redeem_wait_t;

static void on_redeem(void *ud, int status, const uint8_t txhash[32], const char *err) {
  redeem_wait_t *w = ud;
  w->done = true;
  w->status = status;
  if (txhash) memcpy(w->txhash, txhash, 32);
  snprintf(w->err, sizeof w->err, "%s", err ? err : "");
}

/* Fields of a signed EIP-1559 transaction: nonce, tip and fee cap. */
static void decode_1559(const char *hex, uint64_t *nonce, pm_u256_t *tip, pm_u256_t *cap) {
  uint8_t b[2048];
  int n = lp_hex_decode(hex, b, sizeof b);
  assert_true(n > 1);
  assert_int_equal(b[0], 2);
  const uint8_t *p = b + 1;
  size_t len = (size_t)n - 1;
  eth_rlp_item_t list, it;
  assert_int_equal(eth_rlp_next(&p, &len, &list), 0);
  assert_true(list.is_list);
  p = list.p;
  len = list.len;
  assert_int_equal(eth_rlp_next(&p, &len, &it), 0); /* chain id */
  assert_int_equal(eth_rlp_next(&p, &len, &it), 0);
  pm_u256_t v;
  assert_int_equal(pm_u256_from_bytes(&v, it.p, it.len), 0);
  assert_int_equal(pm_u256_to_u64(&v, nonce), 0);
  assert_int_equal(eth_rlp_next(&p, &len, &it), 0);
  assert_int_equal(pm_u256_from_bytes(tip, it.p, it.len), 0);
  assert_int_equal(eth_rlp_next(&p, &len, &it), 0);
  assert_int_equal(pm_u256_from_bytes(cap, it.p, it.len), 0);
}

/* A transaction that is not mined in time is sent again with the same nonce and higher fees;
 * whichever version is mined completes the redemption. */
static void test_stuck_transaction_replaced(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  atomic_store(&srv.mode, MODE_ANSWER);
  atomic_store(&srv.round, 9);
  eth_account_t acct;
  memset(acct.priv, 0x22, 32);
  assert_int_equal(pm_priv_to_addr(acct.priv, acct.addr), 0);
  eth_client_cfg_t cfg = {0};
  cfg.url = url;
  memset(cfg.controller, 0x11, 20);
  cfg.poll_interval_ms = 1000;
  cfg.rpc_timeout_ms = 1000;
  cfg.account = &acct;
  cfg.tx_timeout_ms = 150;
  eth_client_t *c;
  assert_int_equal(eth_client_new(&loop, &cfg, &c), 0);
  char err[256];
  assert_int_equal(eth_client_connect(c, err, sizeof err), 0);

  pm_ticket_t t;
  memset(&t, 0, sizeof t);
  memcpy(t.recipient, acct.addr, 20);
  memset(t.sender, 0x33, 20);
  assert_int_equal(pm_u256_from_dec(&t.face_value, "1000000000000000000"), 0);
  memset(t.win_prob.b, 0xff, 32);
  t.creation_round = 9;
  memset(t.creation_round_block_hash, 9, 32);
  uint8_t sig[65];
  memset(sig, 0x5c, sizeof sig);
  pm_u256_t rand;
  pm_u256_from_u64(&rand, 12345);
  redeem_wait_t w = {0};
  assert_int_equal(eth_client_redeem(c, &t, sig, sizeof sig, &rand, on_redeem, &w), 0);
  RUN_UNTIL(&loop, atomic_load(&srv.nsent) >= 2);
  assert_false(w.done);
  /* The original, not the replacement, makes it into a block. */
  atomic_store(&srv.mined, 0);
  RUN_UNTIL(&loop, w.done);
  assert_int_equal(w.status, 0);
  pthread_mutex_lock(&srv.lock);
  assert_memory_equal(w.txhash, srv.hash[0], 32);
  uint64_t n0, n1;
  pm_u256_t tip0, cap0, tip1, cap1, t10, c10, ten;
  decode_1559(srv.raw[0], &n0, &tip0, &cap0);
  decode_1559(srv.raw[1], &n1, &tip1, &cap1);
  pthread_mutex_unlock(&srv.lock);
  assert_int_equal(n0, 7);
  assert_int_equal(n1, 7);
  /* At least 10% more on both, as nodes require for a replacement. */
  pm_u256_from_u64(&ten, 10);
  assert_int_equal(eth_u256_mul(&t10, &tip0, &ten), 0);
  assert_int_equal(eth_u256_mul(&c10, &cap0, &ten), 0);
  assert_int_equal(eth_u256_mul(&tip1, &tip1, &ten), 0);
  assert_int_equal(eth_u256_mul(&cap1, &cap1, &ten), 0);
  assert_int_equal(eth_u256_div(&t10, &t10, &ten), 0);
  assert_int_equal(eth_u256_div(&c10, &c10, &ten), 0);
  assert_int_equal(eth_u256_mul(&t10, &t10, &(pm_u256_t){{[31] = 11}}), 0);
  assert_int_equal(eth_u256_mul(&c10, &c10, &(pm_u256_t){{[31] = 11}}), 0);
  assert_true(pm_u256_cmp(&tip1, &t10) >= 0);
  assert_true(pm_u256_cmp(&cap1, &c10) >= 0);
  /* Only one replacement by default. */
  assert_int_equal(atomic_load(&srv.nsent), 2);
  eth_client_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  eth_account_wipe(&acct);
}

/* -maxGasPrice: redemptions wait while gas is dearer, and the fee cap never passes it. */
static void test_max_gas_price(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  atomic_store(&srv.mode, MODE_ANSWER);
  atomic_store(&srv.mined, -1);
  eth_account_t acct;
  memset(acct.priv, 0x23, 32);
  assert_int_equal(pm_priv_to_addr(acct.priv, acct.addr), 0);
  pm_ticket_t t;
  memset(&t, 0, sizeof t);
  memcpy(t.recipient, acct.addr, 20);
  memset(t.sender, 0x34, 20);
  assert_int_equal(pm_u256_from_dec(&t.face_value, "1000000000000000000"), 0);
  memset(t.win_prob.b, 0xff, 32);
  t.creation_round = 9;
  memset(t.creation_round_block_hash, 9, 32);
  uint8_t sig[65];
  memset(sig, 0x5d, sizeof sig);
  pm_u256_t rand;
  pm_u256_from_u64(&rand, 777);
  /* The endpoint quotes base fee 1 gwei + tip 2 gwei = 3 gwei. */
  const char *maxes[] = {"2000000000", "3500000000"};
  for (int i = 0; i < 2; i++) {
    eth_client_cfg_t cfg = {0};
    cfg.url = url;
    memset(cfg.controller, 0x11, 20);
    cfg.poll_interval_ms = 1000;
    cfg.account = &acct;
    cfg.tx_timeout_ms = 100;
    assert_int_equal(pm_u256_from_dec(&cfg.max_gas_price, maxes[i]), 0);
    eth_client_t *c;
    assert_int_equal(eth_client_new(&loop, &cfg, &c), 0);
    char err[256];
    assert_int_equal(eth_client_connect(c, err, sizeof err), 0);
    int before = atomic_load(&srv.nsent);
    redeem_wait_t w = {0};
    assert_int_equal(eth_client_redeem(c, &t, sig, sizeof sig, &rand, on_redeem, &w), 0);
    if (i == 0) {
      RUN_UNTIL(&loop, w.done);
      assert_int_equal(w.status, LP_EAGAIN);
      assert_string_equal(w.err,
                          "current gas price exceeds maximum gas price max=2 GWei current=3 GWei");
      assert_int_equal(atomic_load(&srv.nsent), before);
    } else {
      RUN_UNTIL(&loop, atomic_load(&srv.nsent) == before + 1);
      run_ms(&loop, 400); /* past tx_timeout: a bumped fee cap would pass the maximum */
      assert_int_equal(atomic_load(&srv.nsent), before + 1);
      atomic_store(&srv.mined, before);
      RUN_UNTIL(&loop, w.done);
      assert_int_equal(w.status, 0);
      uint64_t nonce;
      pm_u256_t tip, cap;
      pthread_mutex_lock(&srv.lock);
      decode_1559(srv.raw[before], &nonce, &tip, &cap);
      pthread_mutex_unlock(&srv.lock);
      char d[79];
      pm_u256_to_dec(&cap, d);
      assert_string_equal(d, "3500000000"); /* min(max, 2*base + tip = 4 gwei) */
    }
    eth_client_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  assert_int_equal(uv_loop_close(&loop), 0);
  eth_account_wipe(&acct);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rpc_errors),
      cmocka_unit_test(test_rpc_async),
      cmocka_unit_test(test_l1_block_and_backdating),
      cmocka_unit_test(test_outage),
      cmocka_unit_test(test_revert_logged_once),
      cmocka_unit_test(test_stuck_transaction_replaced),
      cmocka_unit_test(test_max_gas_price),
  };
  return cmocka_run_group_tests(tests, start_server, stop_server);
}
