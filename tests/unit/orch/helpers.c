#include <stdlib.h>
#include <string.h>

#include "helpers.h"

void th_core_init(orch_core_t *c, uv_loop_t *loop, const orch_engine_t *engine, int max_sessions,
                  uint64_t idle_ms) {
  memset(c, 0, sizeof *c);
  c->loop = loop;
  c->service_uri = orch_service_uri("127.0.0.1:8935");
  memset(c->token_key, 7, sizeof c->token_key);
  orch_payments_offchain(&c->pay);
  for (int cap = 0; cap <= 12; cap++) orch_caps_set(&c->caps, cap);
  strcpy(c->caps.version, "0.9.1");
  c->store = orch_store_new();
  c->sessions = orch_sessions_new(loop, engine, c->store, max_sessions, idle_ms);
}

static void closed(void *arg) { *(int *)arg = 1; }

void th_core_deinit(orch_core_t *c) {
  int done = 0;
  orch_sessions_close(c->sessions, closed, &done);
  while (!done) uv_run(c->loop, UV_RUN_ONCE);
  orch_sessions_free(c->sessions);
  orch_store_free(c->store);
  free(c->service_uri);
}

char *th_seg_header(const Net__SegData *sd) {
  size_t n = net__seg_data__get_packed_size(sd);
  uint8_t *buf = malloc(n + 1);
  net__seg_data__pack(sd, buf);
  char *b64 = orch_b64_encode(buf, n);
  free(buf);
  return b64;
}

void th_token(const orch_core_t *c, Net__AuthToken *t, uint8_t buf[ORCH_TOKEN_LEN],
              const char *session_id, int64_t exp) {
  net__auth_token__init(t);
  orch_token_compute(c->token_key, session_id, exp, buf);
  t->token.data = buf;
  t->token.len = ORCH_TOKEN_LEN;
  t->session_id = (char *)session_id;
  t->expiration = exp;
}
