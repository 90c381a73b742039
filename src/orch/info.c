/* OrchestratorInfo and the three unary gRPC methods (spec §3.3, §3.4), plus the offchain
 * rules of the payment seam. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lpod/pm.h"
#include "orch_int.h"

char *orch_service_uri(const char *service_addr) {
  lp_buf_t b = LP_BUF_INIT;
  int rc = 0;
  if (!strstr(service_addr, "://")) rc = lp_buf_append(&b, "https://", 8);
  if (!rc) rc = lp_buf_append(&b, service_addr, strlen(service_addr) + 1);
  if (rc) {
    lp_buf_free(&b);
    return NULL;
  }
  char *s = (char *)b.data;
  /* Gateways append "/segment" by plain concatenation. */
  size_t n = strlen(s);
  while (n > 0 && s[n - 1] == '/') s[--n] = 0;
  return s;
}

int orch_info_pack(orch_core_t *c, const uint8_t sender[20], const Net__AuthToken *token,
                   uint8_t **out, size_t *out_len) {
  Net__OrchestratorInfo info = NET__ORCHESTRATOR_INFO__INIT;
  Net__Capabilities caps;
  orch_caps_wire_t scratch;
  Net__AuthToken tok = *token;
  net__auth_token__init(&tok);
  tok.token = token->token;
  tok.session_id = token->session_id;
  tok.expiration = token->expiration;
  orch_caps_to_wire(&c->caps, &caps, &scratch);
  info.transcoder = c->service_uri;
  info.address.data = c->pay.address;
  info.address.len = sizeof c->pay.address;
  info.capabilities = &caps;
  info.auth_token = &tok;
  int rc = c->pay.fill_info(c->pay.ctx, sender, token->session_id, &info);
  if (!rc) {
    size_t n = net__orchestrator_info__get_packed_size(&info);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
      rc = LP_ENOMEM;
    } else {
      *out_len = net__orchestrator_info__pack(&info, buf);
      *out = buf;
    }
  }
  if (info.price_info) protobuf_c_message_free_unpacked(&info.price_info->base, NULL);
  if (info.ticket_params) protobuf_c_message_free_unpacked(&info.ticket_params->base, NULL);
  return rc;
}

int orch_get_orchestrator(orch_core_t *c, const Net__OrchestratorRequest *req, uint8_t **out,
                          size_t *out_len, char *err, size_t errlen) {
  uint8_t addr[20];
  char hex[PM_ADDR_HEX_LEN];
  pm_bytes_to_fixed(req->address.data, req->address.len, addr, sizeof addr);
  pm_addr_to_hex(addr, hex);
  if (!c->pay.verify_sig(c->pay.ctx, addr, hex, strlen(hex), req->sig.data, req->sig.len)) {
    snprintf(err, errlen, "Invalid orchestrator request: orchestrator req sig check failed");
    return LP_EPERM;
  }
  /* An empty session id is never in the table, so this is the "new session" check, which is
   * what go-livepeer's CheckCapacity("") does: a full node refuses refreshes too. */
  if (c->stopping || orch_sessions_check_capacity(c->sessions, "") ||
      orch_core_no_room(c, NULL, NULL, 0, NULL, NULL)) {
    snprintf(err, errlen, "Invalid orchestrator request: OrchestratorCapped");
    return LP_ECAPACITY;
  }
  char sid[ORCH_SESSION_ID_LEN + 1];
  uint8_t token[ORCH_TOKEN_LEN];
  Net__AuthToken tok = NET__AUTH_TOKEN__INIT;
  tok.session_id = sid;
  tok.expiration = (int64_t)time(NULL) + ORCH_TOKEN_VALID_S;
  tok.token.data = token;
  tok.token.len = sizeof token;
  if (orch_session_id_new(sid) || orch_token_compute(c->token_key, sid, tok.expiration, token) ||
      orch_info_pack(c, addr, &tok, out, out_len)) {
    snprintf(err, errlen, "could not build orchestrator info");
    return LP_EIO;
  }
  return 0;
}

int orch_end_session(orch_core_t *c, const Net__EndTranscodingSessionRequest *req, char *err,
                     size_t errlen) {
  /* go-livepeer dereferences a missing token and panics; we answer instead. */
  if (!req->auth_token) {
    snprintf(err, errlen, "missing auth token");
    return LP_EINVAL;
  }
  if (!orch_token_verify(c->token_key, req->auth_token)) {
    snprintf(err, errlen, "Invalid auth token");
    return LP_EPERM;
  }
  orch_sessions_end(c->sessions, req->auth_token->session_id);
  return 0;
}

int orch_ping(orch_core_t *c, const Net__PingPong *req, uint8_t **out, size_t *out_len) {
  Net__PingPong resp = NET__PING_PONG__INIT;
  uint8_t *sig = NULL;
  size_t sig_len = 0;
  int rc = c->pay.sign_msg(c->pay.ctx, req->value.data, req->value.len, &sig, &sig_len);
  if (rc) return rc;
  resp.value.data = sig;
  resp.value.len = sig_len;
  size_t n = net__ping_pong__get_packed_size(&resp);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    free(sig);
    return LP_ENOMEM;
  }
  *out_len = net__ping_pong__pack(&resp, buf);
  *out = buf;
  free(sig);
  return 0;
}

/* ---- offchain payment rules ------------------------------------------------------------------ */
static bool offchain_verify(void *ctx, const uint8_t addr[20], const void *msg, size_t len,
                            const uint8_t *sig, size_t sig_len) {
  return true;
}

static int offchain_sign_msg(void *ctx, const void *msg, size_t len, uint8_t **sig,
                             size_t *sig_len) {
  *sig = NULL;
  *sig_len = 0;
  return 0;
}

static int offchain_sign_hash(void *ctx, const uint8_t hash[32], uint8_t **sig, size_t *sig_len) {
  *sig = NULL;
  *sig_len = 0;
  return 0;
}

static int offchain_fill_info(void *ctx, const uint8_t sender[20], const char *session_id,
                              Net__OrchestratorInfo *info) {
  return 0;
}

static int offchain_process(void *ctx, const Net__Payment *p, const uint8_t sender[20],
                            const char *session_id, char *err, size_t errlen) {
  return 0;
}

static bool offchain_balance(void *ctx, const Net__Payment *p, const uint8_t sender[20],
                             const char *session_id) {
  return true;
}

static void offchain_debit(void *ctx, const uint8_t sender[20], const char *session_id,
                           const Net__PriceInfo *price, int64_t pixels) {}

void orch_payments_offchain(orch_payments_t *p) {
  memset(p, 0, sizeof *p);
  p->verify_sig = offchain_verify;
  p->sign_msg = offchain_sign_msg;
  p->sign_hash = offchain_sign_hash;
  p->fill_info = offchain_fill_info;
  p->process_payment = offchain_process;
  p->sufficient_balance = offchain_balance;
  p->debit_fees = offchain_debit;
}
