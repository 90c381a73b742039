/* The chain client: contract addresses through the Controller, block polling, the round and its
 * block hash, cached sender info, and ticket redemption. Everything runs on the loop thread. */
#include "lpod/eth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define NEG_CACHE_MS 10000 /* an unknown or failing sender is asked again after this */
#define MAX_SENDERS 10000  /* cache entries kept; the least recently used go first */
#define RECEIPT_TIMEOUT_MS (10 * 60 * 1000) /* from the first send, replacements included */
#define MAX_SENDS 8
#define RECEIPT_POLL_MIN_MS 200

typedef struct waiter {
  struct waiter *next;
  eth_sender_cb cb;
  void *ud;
} waiter_t;

typedef struct sender {
  uint8_t addr[ETH_ADDR_LEN];
  bool has_value;
  eth_sender_info_t info;
  pm_u256_t claimed;
  uint64_t fetched_ms; /* 0: stale */
  uint64_t used_ms;
  int err;
  uint64_t err_ms;
  char err_text[256];
  bool fetching;
  waiter_t *waiters;
  pm_u256_t pending; /* face values of this sender's redemptions in flight */
} sender_t;

typedef struct redeem redeem_t;

struct eth_client {
  uv_loop_t *loop;
  eth_rpc_t *rpc;
  uint64_t poll_ms, sender_ttl_ms;
  bool has_account;
  eth_account_t account;
  uint8_t recipient[ETH_ADDR_LEN];

  uint64_t chain_id;
  eth_contracts_t contracts;
  int64_t last_block;
  int64_t lir;
  uint8_t lir_hash[ETH_HASH_LEN];
  uint8_t pre_hash[ETH_HASH_LEN]; /* hash of lir - 1, used while lir's is zero */
  bool round_known;
  uint64_t pool_size;
  bool active;
  /* the pool's members active in active_round (go-livepeer keeps them in its DB); a foreign
   * recipient in a payment is checked against it */
  uint8_t (*active_set)[ETH_ADDR_LEN];
  size_t n_active;
  int64_t active_round; /* -1: never walked */
  pm_u256_t min_gas_price, max_gas_price, gas_price;
  bool has_gas_price, gas_polling;

  uint64_t tx_timeout_ms;
  int tx_replacements;
  uv_timer_t poll_timer;
  bool polling; /* a block poll or round refresh is in flight */
  bool started, closing, poll_closed;
  int ops; /* asynchronous operations and handles that point at this client */

  bool down; /* the endpoint failed its last request */
  uint64_t last_fail_ms;
  char last_err[256];
  char last_warn[320]; /* the last call-level warning, so a revert every block logs once */

  eth_block_cb block_cb;
  void *block_ud;

  sender_t *senders;
  size_t nsenders, capsenders;

  redeem_t *redeem_head, *redeem_tail; /* one transaction at a time keeps nonces in order */
};

/* ---- endpoint health: one line when it fails, one when it is back ---------------------------- */

static void note_ok(eth_client_t *c) {
  if (c->down) LOGI("eth: RPC endpoint %s is answering again", eth_rpc_url(c->rpc));
  c->down = false;
}

/* While the endpoint is down, lookups fail at once instead of queueing behind timeouts. The
 * poller notices the recovery; without it, a lookup is let through every NEG_CACHE_MS. */
static bool fail_fast(const eth_client_t *c) {
  return c->down && (c->started || lp_now_ms() - c->last_fail_ms < NEG_CACHE_MS);
}

static void note_fail(eth_client_t *c, int status, const char *what, const char *err) {
  if (status == LP_ECANCELED) return;
  /* A revert or a bad answer is about that call, not the endpoint. */
  if (status != LP_EIO && status != LP_ETIMEDOUT) {
    char line[320];
    snprintf(line, sizeof line, "%s: %s", what, err ? err : lp_strerror(status));
    if (strcmp(line, c->last_warn) != 0)
      LOGW("eth: %s", line);
    else
      LOGV(LP_V_DEBUG, "eth: %s", line);
    snprintf(c->last_warn, sizeof c->last_warn, "%s", line);
    return;
  }
  if (!c->down)
    LOGW("eth: RPC endpoint %s failing (%s: %s); keeping the last chain values until it recovers",
         eth_rpc_url(c->rpc), what, err ? err : lp_strerror(status));
  else
    LOGV(LP_V_DEBUG, "eth: RPC endpoint still failing: %s: %s", what, err ? err : "");
  c->down = true;
  c->last_fail_ms = lp_now_ms();
  snprintf(c->last_err, sizeof c->last_err, "%s", err ? err : lp_strerror(status));
}

/* ---- small encoders -------------------------------------------------------------------------- */

static int enc0(const char *sig, lp_buf_t *b) { return eth_abi_encode_call(sig, NULL, 0, b); }

static int enc_addr(const char *sig, const uint8_t a[ETH_ADDR_LEN], lp_buf_t *b) {
  eth_abi_arg_t arg = eth_abi_addr(a);
  return eth_abi_encode_call(sig, &arg, 1, b);
}

static int enc_u64(const char *sig, uint64_t v, lp_buf_t *b) {
  eth_abi_arg_t arg = eth_abi_u64(v);
  return eth_abi_encode_call(sig, &arg, 1, b);
}

static int decode_sender_info(const uint8_t *d, size_t n, eth_sender_info_t *info) {
  /* getSenderInfo returns (Sender{deposit, withdrawRound}, ReserveInfo{fundsRemaining,
   * claimedInCurrentRound}): two static tuples, four words. */
  if (eth_abi_get_word(d, n, 0, &info->deposit) ||
      eth_abi_get_u64(d, n, 1, &info->withdraw_round) ||
      eth_abi_get_word(d, n, 2, &info->reserve_funds) ||
      eth_abi_get_word(d, n, 3, &info->reserve_claimed))
    return LP_EPROTO;
  return 0;
}

/* ---- blocking reads -------------------------------------------------------------------------- */

int eth_client_call_sync(eth_client_t *c, const uint8_t to[ETH_ADDR_LEN], const lp_buf_t *data,
                         lp_buf_t *ret, char *err, size_t errlen) {
  cJSON *params = eth_rpc_call_params(to, data->data, data->len), *res = NULL;
  if (!params) return LP_ENOMEM;
  int rc = eth_rpc_call(c->rpc, "eth_call", params, &res, err, errlen);
  if (rc) return rc;
  uint8_t *bytes;
  size_t n;
  rc = eth_rpc_hex_bytes(res, &bytes, &n);
  cJSON_Delete(res);
  if (rc) {
    lp_seterr(err, errlen, "eth_call answered with something that is not hex data");
    return rc;
  }
  lp_buf_reset(ret);
  rc = lp_buf_append(ret, bytes, n);
  free(bytes);
  return rc;
}

/* One eth_call with calldata built by the caller; the result replaces *ret. */
static int call_sync(eth_client_t *c, const uint8_t to[ETH_ADDR_LEN], lp_buf_t *calldata,
                     lp_buf_t *ret, const char *what, char *err, size_t errlen) {
  char inner[256];
  int rc = eth_client_call_sync(c, to, calldata, ret, inner, sizeof inner);
  lp_buf_reset(calldata);
  if (rc) lp_seterr(err, errlen, "%s: %s", what, inner);
  return rc;
}

static int read_block_sync(eth_client_t *c, char *err, size_t errlen);

static int read_round_sync(eth_client_t *c, char *err, size_t errlen) {
  lp_buf_t cd = LP_BUF_INIT, r = LP_BUF_INIT;
  uint64_t lir = 0, pool = 0;
  bool active = false;
  uint8_t hash[32], pre[32];
  memset(pre, 0, sizeof pre);
  const uint8_t *rm = c->contracts.rounds_manager, *bm = c->contracts.bonding_manager;
  int rc = enc0("lastInitializedRound()", &cd);
  if (!rc) rc = call_sync(c, rm, &cd, &r, "RoundsManager.lastInitializedRound", err, errlen);
  if (!rc && (rc = eth_abi_get_u64(r.data, r.len, 0, &lir)))
    lp_seterr(err, errlen, "RoundsManager.lastInitializedRound: bad answer");
  if (!rc) rc = enc_u64("blockHashForRound(uint256)", lir, &cd);
  if (!rc) rc = call_sync(c, rm, &cd, &r, "RoundsManager.blockHashForRound", err, errlen);
  if (!rc && r.len < 32) rc = LP_EPROTO, lp_seterr(err, errlen, "blockHashForRound: short answer");
  if (!rc) memcpy(hash, r.data, 32);
  static const uint8_t zero[32];
  if (!rc && memcmp(hash, zero, 32) == 0 && lir > 0) {
    if (!(rc = enc_u64("blockHashForRound(uint256)", lir - 1, &cd)))
      rc = call_sync(c, rm, &cd, &r, "RoundsManager.blockHashForRound", err, errlen);
    if (!rc && r.len >= 32) memcpy(pre, r.data, 32);
  }
  if (!rc) rc = enc0("getTranscoderPoolSize()", &cd);
  if (!rc) rc = call_sync(c, bm, &cd, &r, "BondingManager.getTranscoderPoolSize", err, errlen);
  if (!rc && (rc = eth_abi_get_u64(r.data, r.len, 0, &pool)))
    lp_seterr(err, errlen, "BondingManager.getTranscoderPoolSize: bad answer");
  if (!rc) rc = enc_addr("isActiveTranscoder(address)", c->recipient, &cd);
  if (!rc) rc = call_sync(c, bm, &cd, &r, "BondingManager.isActiveTranscoder", err, errlen);
  if (!rc && (rc = eth_abi_get_bool(r.data, r.len, 0, &active)))
    lp_seterr(err, errlen, "BondingManager.isActiveTranscoder: bad answer");
  if (!rc) {
    c->lir = (int64_t)lir;
    memcpy(c->lir_hash, hash, 32);
    memcpy(c->pre_hash, pre, 32);
    c->pool_size = pool;
    c->active = active;
    c->round_known = true;
  }
  lp_buf_free(&cd);
  lp_buf_free(&r);
  return rc;
}

/* Block number from an eth_getBlockByNumber result: Arbitrum's l1BlockNumber when present. */
static int block_number(const cJSON *blk, int64_t *out) {
  uint64_t n;
  if (!cJSON_IsObject(blk)) return LP_EPROTO;
  const cJSON *l1 = cJSON_GetObjectItemCaseSensitive(blk, "l1BlockNumber");
  const cJSON *num = l1 && !cJSON_IsNull(l1) ? l1 : cJSON_GetObjectItemCaseSensitive(blk, "number");
  if (eth_rpc_hex_u64(num, &n) || n > INT64_MAX) return LP_EPROTO;
  *out = (int64_t)n;
  return 0;
}

static cJSON *latest_block_params(void) {
  cJSON *p = cJSON_CreateArray();
  if (p) {
    cJSON_AddItemToArray(p, cJSON_CreateString("latest"));
    cJSON_AddItemToArray(p, cJSON_CreateFalse());
  }
  return p;
}

static int read_block_sync(eth_client_t *c, char *err, size_t errlen) {
  cJSON *res = NULL;
  char inner[256];
  int rc = eth_rpc_call(c->rpc, "eth_getBlockByNumber", latest_block_params(), &res, inner,
                        sizeof inner);
  if (rc) {
    lp_seterr(err, errlen, "eth_getBlockByNumber: %s", inner);
    return rc;
  }
  int64_t n;
  rc = block_number(res, &n);
  cJSON_Delete(res);
  if (rc) {
    lp_seterr(err, errlen, "eth_getBlockByNumber: no block number in the answer");
    return rc;
  }
  c->last_block = n;
  return 0;
}

static int lookup_contract(eth_client_t *c, const char *name, uint8_t out[ETH_ADDR_LEN], char *err,
                           size_t errlen) {
  uint8_t id[32];
  lp_buf_t cd = LP_BUF_INIT, r = LP_BUF_INIT;
  pm_keccak256(name, strlen(name), id);
  eth_abi_arg_t arg = eth_abi_b32(id);
  char what[64];
  snprintf(what, sizeof what, "Controller.getContract(%s)", name);
  int rc = eth_abi_encode_call("getContract(bytes32)", &arg, 1, &cd);
  if (!rc) rc = call_sync(c, c->contracts.controller, &cd, &r, what, err, errlen);
  if (!rc && eth_abi_get_addr(r.data, r.len, 0, out)) {
    char a[PM_ADDR_HEX_LEN];
    pm_addr_to_hex(c->contracts.controller, a);
    lp_seterr(err, errlen, "%s: no Controller contract at %s (check -ethController)", what, a);
    rc = LP_ENOENT;
  }
  static const uint8_t zero[ETH_ADDR_LEN];
  if (!rc && memcmp(out, zero, ETH_ADDR_LEN) == 0) {
    lp_seterr(err, errlen, "the Controller has no %s registered (check -ethController)", name);
    rc = LP_ENOENT;
  }
  lp_buf_free(&cd);
  lp_buf_free(&r);
  return rc;
}

int eth_client_connect(eth_client_t *c, char *err, size_t errlen) {
  cJSON *res = NULL;
  char inner[256];
  int rc = eth_rpc_call(c->rpc, "eth_chainId", NULL, &res, inner, sizeof inner);
  if (rc) {
    lp_seterr(err, errlen, "cannot reach the Ethereum RPC endpoint %s: %s", eth_rpc_url(c->rpc),
              inner);
    return rc;
  }
  rc = eth_rpc_hex_u64(res, &c->chain_id);
  cJSON_Delete(res);
  if (rc) {
    lp_seterr(err, errlen, "eth_chainId: bad answer from %s", eth_rpc_url(c->rpc));
    return rc;
  }
  struct {
    const char *name;
    uint8_t *out;
  } lookups[] = {
      {"TicketBroker", c->contracts.ticket_broker},
      {"RoundsManager", c->contracts.rounds_manager},
      {"BondingManager", c->contracts.bonding_manager},
      {"Minter", c->contracts.minter},
      {"ServiceRegistry", c->contracts.service_registry},
  };
  for (size_t i = 0; i < LP_ARRAY_LEN(lookups); i++)
    if ((rc = lookup_contract(c, lookups[i].name, lookups[i].out, err, errlen))) return rc;
  if ((rc = read_block_sync(c, err, errlen))) return rc;
  if ((rc = read_round_sync(c, err, errlen))) return rc;
  LOGI("eth: chain id %llu, block %lld, last initialized round %lld, %llu transcoders in the pool",
       (unsigned long long)c->chain_id, (long long)c->last_block, (long long)c->lir,
       (unsigned long long)c->pool_size);
  return 0;
}

int eth_client_sender_info_sync(eth_client_t *c, const uint8_t sender[ETH_ADDR_LEN],
                                eth_sender_info_t *info, pm_u256_t *claimed, char *err,
                                size_t errlen) {
  lp_buf_t cd = LP_BUF_INIT, r = LP_BUF_INIT;
  int rc = enc_addr("getSenderInfo(address)", sender, &cd);
  if (!rc)
    rc = call_sync(c, c->contracts.ticket_broker, &cd, &r, "TicketBroker.getSenderInfo", err,
                   errlen);
  if (!rc && (rc = decode_sender_info(r.data, r.len, info)))
    lp_seterr(err, errlen, "TicketBroker.getSenderInfo: bad answer");
  if (!rc && claimed) {
    eth_abi_arg_t args[2] = {eth_abi_addr(sender), eth_abi_addr(c->recipient)};
    rc = eth_abi_encode_call("claimedReserve(address,address)", args, 2, &cd);
    if (!rc)
      rc = call_sync(c, c->contracts.ticket_broker, &cd, &r, "TicketBroker.claimedReserve", err,
                     errlen);
    if (!rc && (rc = eth_abi_get_word(r.data, r.len, 0, claimed)))
      lp_seterr(err, errlen, "TicketBroker.claimedReserve: bad answer");
  }
  lp_buf_free(&cd);
  lp_buf_free(&r);
  return rc;
}

int eth_client_ticket_hash_sync(eth_client_t *c, const pm_ticket_t *t, uint8_t hash[ETH_HASH_LEN],
                                char *err, size_t errlen) {
  lp_buf_t cd = LP_BUF_INIT, r = LP_BUF_INIT;
  int rc = eth_tb_encode_get_ticket_hash(t, &cd);
  if (!rc)
    rc = call_sync(c, c->contracts.ticket_broker, &cd, &r, "TicketBroker.getTicketHash", err,
                   errlen);
  if (!rc && r.len < 32) {
    lp_seterr(err, errlen, "TicketBroker.getTicketHash: short answer");
    rc = LP_EPROTO;
  }
  if (!rc) memcpy(hash, r.data, 32);
  lp_buf_free(&cd);
  lp_buf_free(&r);
  return rc;
}

/* ---- asynchronous eth_call ------------------------------------------------------------------- */

typedef void (*call_fn)(eth_client_t *c, void *ctx, int status, const uint8_t *d, size_t n,
                        const char *err);

typedef struct call_op {
  eth_client_t *c;
  call_fn fn;
  void *ctx;
} call_op_t;

static void on_call_done(void *ud, int status, const cJSON *result, const char *err) {
  call_op_t *op = ud;
  eth_client_t *c = op->c;
  uint8_t *bytes = NULL;
  size_t n = 0;
  if (!status && eth_rpc_hex_bytes(result, &bytes, &n)) {
    status = LP_EPROTO;
    err = "eth_call answered with something that is not hex data";
  }
  c->ops--;
  op->fn(c, op->ctx, status, bytes, n, err);
  free(bytes);
  free(op);
}

/* Issues eth_call(to, calldata) and resets calldata; fn runs later (also on failure to start). */
static int call_async(eth_client_t *c, const uint8_t to[ETH_ADDR_LEN], lp_buf_t *calldata,
                      call_fn fn, void *ctx) {
  call_op_t *op = malloc(sizeof *op);
  cJSON *params = eth_rpc_call_params(to, calldata->data, calldata->len);
  lp_buf_reset(calldata);
  if (!op || !params) {
    free(op);
    cJSON_Delete(params);
    return LP_ENOMEM;
  }
  op->c = c;
  op->fn = fn;
  op->ctx = ctx;
  int rc = eth_rpc_call_async(c->rpc, "eth_call", params, on_call_done, op);
  if (rc) {
    free(op);
    return rc;
  }
  c->ops++;
  return 0;
}

/* ---- block polling and round refresh
 * ------------------------------------------------------------- */

enum { RS_LIR, RS_HASH, RS_PRE_HASH, RS_POOL, RS_ACTIVE, RS_FIRST, RS_MEMBER, RS_NEXT };

/* A walk of the pool list longer than this is a broken contract or endpoint, not a pool. */
#define MAX_POOL_WALK 4096

typedef struct round_op {
  int step;
  uint64_t lir, pool;
  uint8_t hash[32], pre[32];
  bool active;
  /* the pool walk: every member, and which of them are active this round */
  uint8_t cur[ETH_ADDR_LEN];
  size_t walked;
  uint8_t (*set)[ETH_ADDR_LEN];
  size_t n_set, cap_set;
  bool walk; /* the walk is running: its set replaces the client's once complete */
} round_op_t;

static void round_op_free(round_op_t *r) {
  if (!r) return;
  free(r->set);
  free(r);
}

static void round_step(eth_client_t *c, round_op_t *r);

static void poll_done(eth_client_t *c) {
  c->polling = false;
  if (c->block_cb && !c->closing) c->block_cb(c->block_ud, c->last_block, c->lir);
}

/* The round's data, as soon as it is read: the pool walk that may follow never holds it back. */
static void new_round(eth_client_t *c, const round_op_t *r) {
  bool changed = (int64_t)r->lir != c->lir;
  c->lir = (int64_t)r->lir;
  memcpy(c->lir_hash, r->hash, 32);
  memcpy(c->pre_hash, r->pre, 32);
  c->pool_size = r->pool;
  c->active = r->active;
  c->round_known = true;
  if (changed) {
    /* claimedInCurrentRound and claimedReserve restart every round. */
    for (size_t i = 0; i < c->nsenders; i++) c->senders[i].fetched_ms = 0;
    LOGI("eth: round %lld initialized; %llu transcoders in the pool, recipient %s",
         (long long)c->lir, (unsigned long long)c->pool_size, c->active ? "active" : "inactive");
  }
}

/* A complete walk replaces the active set; until one completes the previous set stays. */
static void new_active_set(eth_client_t *c, round_op_t *r) {
  bool first = c->active_round < 0;
  free(c->active_set);
  c->active_set = r->set;
  c->n_active = r->n_set;
  c->active_round = (int64_t)r->lir;
  r->set = NULL;
  if (first)
    LOGI("eth: round %lld has %zu active orchestrators", (long long)c->lir, c->n_active);
  else
    LOGV(LP_V_DEBUG, "eth: round %lld has %zu active orchestrators", (long long)c->lir,
         c->n_active);
}

static void round_fail(eth_client_t *c, round_op_t *r, int status, const char *err) {
  note_fail(c, status, "round refresh", err);
  round_op_free(r);
  poll_done(c);
}

static void round_done(eth_client_t *c, round_op_t *r) {
  note_ok(c);
  c->last_warn[0] = 0;
  if (r->walk) new_active_set(c, r);
  round_op_free(r);
  poll_done(c);
}

static int set_add(round_op_t *r, const uint8_t a[ETH_ADDR_LEN]) {
  if (r->n_set == r->cap_set) {
    size_t cap = r->cap_set ? 2 * r->cap_set : 16;
    void *p = realloc(r->set, cap * sizeof *r->set);
    if (!p) return LP_ENOMEM;
    r->set = p;
    r->cap_set = cap;
  }
  memcpy(r->set[r->n_set++], a, ETH_ADDR_LEN);
  return 0;
}

/* The next pool member from an address answer: the walk ends at the zero address. */
static int walk_to(eth_client_t *c, round_op_t *r, const uint8_t *d, size_t n) {
  static const uint8_t zero[ETH_ADDR_LEN];
  uint8_t a[ETH_ADDR_LEN];
  if (eth_abi_get_addr(d, n, 0, a)) return LP_EPROTO;
  if (memcmp(a, zero, ETH_ADDR_LEN) == 0) {
    round_done(c, r);
    return 1;
  }
  if (++r->walked > MAX_POOL_WALK) return LP_ERANGE;
  memcpy(r->cur, a, ETH_ADDR_LEN);
  r->step = RS_MEMBER;
  return 0;
}

static void on_round_call(eth_client_t *c, void *ctx, int status, const uint8_t *d, size_t n,
                          const char *err) {
  round_op_t *r = ctx;
  static const uint8_t zero[32];
  if (status || c->closing) {
    round_fail(c, r, status, err);
    return;
  }
  int rc = 0;
  switch (r->step) {
  case RS_LIR:
    rc = eth_abi_get_u64(d, n, 0, &r->lir);
    /* Same round with a known non-zero hash and its pool walked: nothing to refresh. */
    if (!rc && c->round_known && (int64_t)r->lir == c->lir && c->active_round == c->lir &&
        memcmp(c->lir_hash, zero, 32) != 0) {
      note_ok(c);
      c->last_warn[0] = 0;
      round_op_free(r);
      poll_done(c);
      return;
    }
    r->step = RS_HASH;
    break;
  case RS_HASH:
    if (n < 32)
      rc = LP_EPROTO;
    else
      memcpy(r->hash, d, 32);
    r->step = memcmp(r->hash, zero, 32) == 0 && r->lir > 0 ? RS_PRE_HASH : RS_POOL;
    break;
  case RS_PRE_HASH:
    if (n < 32)
      rc = LP_EPROTO;
    else
      memcpy(r->pre, d, 32);
    r->step = RS_POOL;
    break;
  case RS_POOL:
    rc = eth_abi_get_u64(d, n, 0, &r->pool);
    r->step = RS_ACTIVE;
    break;
  case RS_ACTIVE:
    rc = eth_abi_get_bool(d, n, 0, &r->active);
    if (rc) break;
    new_round(c, r);
    if ((int64_t)r->lir == c->active_round) { /* the pool was walked in this round */
      round_done(c, r);
      return;
    }
    r->step = RS_FIRST;
    r->walk = true;
    break;
  case RS_FIRST:
  case RS_NEXT:
    rc = walk_to(c, r, d, n);
    if (rc == 1) return; /* the walk is complete */
    if (rc == LP_ERANGE) {
      round_fail(c, r, LP_EPROTO, "the transcoder pool list does not end");
      return;
    }
    break;
  case RS_MEMBER: {
    bool on = false;
    rc = eth_abi_get_bool(d, n, 0, &on);
    if (!rc && on) rc = set_add(r, r->cur);
    r->step = RS_NEXT;
    break;
  }
  }
  if (rc) {
    round_fail(c, r, rc == LP_ENOMEM ? rc : LP_EPROTO,
               rc == LP_ENOMEM ? "out of memory" : "a contract answered with malformed data");
    return;
  }
  round_step(c, r);
}

static void round_step(eth_client_t *c, round_op_t *r) {
  lp_buf_t cd = LP_BUF_INIT;
  const uint8_t *to = c->contracts.bonding_manager;
  int rc;
  switch (r->step) {
  case RS_LIR:
    rc = enc0("lastInitializedRound()", &cd);
    to = c->contracts.rounds_manager;
    break;
  case RS_HASH:
    rc = enc_u64("blockHashForRound(uint256)", r->lir, &cd);
    to = c->contracts.rounds_manager;
    break;
  case RS_PRE_HASH:
    rc = enc_u64("blockHashForRound(uint256)", r->lir - 1, &cd);
    to = c->contracts.rounds_manager;
    break;
  case RS_POOL: rc = enc0("getTranscoderPoolSize()", &cd); break;
  case RS_ACTIVE: rc = enc_addr("isActiveTranscoder(address)", c->recipient, &cd); break;
  case RS_FIRST: rc = enc0("getFirstTranscoderInPool()", &cd); break;
  case RS_MEMBER: rc = enc_addr("isActiveTranscoder(address)", r->cur, &cd); break;
  default: rc = enc_addr("getNextTranscoderInPool(address)", r->cur, &cd); break;
  }
  if (!rc) rc = call_async(c, to, &cd, on_round_call, r);
  lp_buf_free(&cd);
  if (rc) {
    round_op_free(r);
    poll_done(c);
  }
}

static void on_block(void *ud, int status, const cJSON *result, const char *err) {
  eth_client_t *c = ud;
  c->ops--;
  if (status || c->closing) {
    note_fail(c, status, "eth_getBlockByNumber", err);
    c->polling = false;
    return;
  }
  int64_t n;
  if (block_number(result, &n)) {
    note_fail(c, LP_EPROTO, "eth_getBlockByNumber", "no block number in the answer");
    c->polling = false;
    return;
  }
  note_ok(c);
  if (n <= c->last_block && c->round_known && c->active_round == c->lir) {
    c->polling = false;
    return;
  }
  c->last_block = n;
  round_op_t *r = calloc(1, sizeof *r);
  if (!r) {
    c->polling = false;
    return;
  }
  r->step = RS_LIR;
  round_step(c, r);
}

static void on_gas_price(void *ud, int status, const cJSON *result, const char *err) {
  eth_client_t *c = ud;
  c->ops--;
  c->gas_polling = false;
  pm_u256_t v;
  if (status || c->closing) {
    note_fail(c, status, "eth_gasPrice", err);
    return;
  }
  if (!cJSON_IsString(result) || eth_u256_from_hex(result->valuestring, &v)) {
    note_fail(c, LP_EPROTO, "eth_gasPrice", "not a quantity");
    return;
  }
  /* go's GasPriceMonitor keeps the previous value when a poll comes in under the minimum. */
  if (pm_u256_cmp(&v, &c->min_gas_price) < 0) return;
  c->gas_price = v;
  c->has_gas_price = true;
}

static void on_poll_timer(uv_timer_t *t) {
  eth_client_t *c = t->data;
  if (c->closing) return;
  if (!c->gas_polling && eth_rpc_call_async(c->rpc, "eth_gasPrice", NULL, on_gas_price, c) == 0) {
    c->gas_polling = true;
    c->ops++;
  }
  if (c->polling) return;
  cJSON *p = latest_block_params();
  if (!p) return;
  if (eth_rpc_call_async(c->rpc, "eth_getBlockByNumber", p, on_block, c) == 0) {
    c->polling = true;
    c->ops++;
  }
}

/* ---- sender info cache ----------------------------------------------------------------------- */

static sender_t *sender_find(eth_client_t *c, const uint8_t a[ETH_ADDR_LEN]) {
  for (size_t i = 0; i < c->nsenders; i++)
    if (memcmp(c->senders[i].addr, a, ETH_ADDR_LEN) == 0) return &c->senders[i];
  return NULL;
}

static sender_t *sender_add(eth_client_t *c, const uint8_t a[ETH_ADDR_LEN]) {
  if (c->nsenders == MAX_SENDERS) {
    /* Evict the least recently used entry that nobody waits on. */
    size_t victim = SIZE_MAX;
    for (size_t i = 0; i < c->nsenders; i++)
      if (!c->senders[i].fetching && pm_u256_is_zero(&c->senders[i].pending) &&
          (victim == SIZE_MAX || c->senders[i].used_ms < c->senders[victim].used_ms))
        victim = i;
    if (victim == SIZE_MAX) return NULL;
    c->senders[victim] = c->senders[--c->nsenders];
  }
  if (c->nsenders == c->capsenders) {
    size_t cap = c->capsenders ? c->capsenders * 2 : 16;
    sender_t *s = realloc(c->senders, cap * sizeof *s);
    if (!s) return NULL;
    c->senders = s;
    c->capsenders = cap;
  }
  sender_t *s = &c->senders[c->nsenders++];
  memset(s, 0, sizeof *s);
  memcpy(s->addr, a, ETH_ADDR_LEN);
  return s;
}

typedef struct sender_op {
  uint8_t addr[ETH_ADDR_LEN];
  eth_sender_info_t info;
  bool have_info;
} sender_op_t;

static void sender_finish(eth_client_t *c, const uint8_t addr[ETH_ADDR_LEN], int status,
                          const eth_sender_info_t *info, const pm_u256_t *claimed,
                          const char *err) {
  sender_t *s = sender_find(c, addr);
  if (!s) return;
  s->fetching = false;
  if (!status) {
    s->info = *info;
    s->claimed = *claimed;
    s->has_value = true;
    s->fetched_ms = lp_now_ms();
    s->err = 0;
  } else if (!s->has_value) {
    s->err = status;
    s->err_ms = lp_now_ms();
    snprintf(s->err_text, sizeof s->err_text, "%s", err ? err : lp_strerror(status));
  }
  /* Waiters get the fresh value, the last good one, or the error. Callbacks may call back into
   * the cache (and move entries), so the list is taken off the entry first. */
  waiter_t *w = s->waiters;
  s->waiters = NULL;
  eth_sender_info_t vi = s->info;
  pm_u256_t vc = s->claimed;
  bool has = s->has_value;
  int serr = s->err;
  char text[256];
  snprintf(text, sizeof text, "%s", s->err_text);
  while (w) {
    waiter_t *next = w->next;
    if (status == LP_ECANCELED)
      w->cb(w->ud, LP_ECANCELED, NULL, NULL, "cancelled");
    else if (has)
      w->cb(w->ud, 0, &vi, &vc, NULL);
    else
      w->cb(w->ud, serr, NULL, NULL, text);
    free(w);
    w = next;
  }
}

static void on_sender_call(eth_client_t *c, void *ctx, int status, const uint8_t *d, size_t n,
                           const char *err) {
  sender_op_t *op = ctx;
  if (!status && !op->have_info) {
    if (decode_sender_info(d, n, &op->info)) {
      status = LP_EPROTO;
      err = "TicketBroker.getSenderInfo: bad answer";
    } else {
      op->have_info = true;
      lp_buf_t cd = LP_BUF_INIT;
      eth_abi_arg_t args[2] = {eth_abi_addr(op->addr), eth_abi_addr(c->recipient)};
      int rc = eth_abi_encode_call("claimedReserve(address,address)", args, 2, &cd);
      if (!rc) rc = call_async(c, c->contracts.ticket_broker, &cd, on_sender_call, op);
      lp_buf_free(&cd);
      if (!rc) return;
      status = rc;
      err = "cannot start TicketBroker.claimedReserve";
    }
  }
  pm_u256_t claimed;
  if (!status && eth_abi_get_word(d, n, 0, &claimed)) {
    status = LP_EPROTO;
    err = "TicketBroker.claimedReserve: bad answer";
  }
  if (status)
    note_fail(c, status, "sender info", err);
  else
    note_ok(c);
  sender_finish(c, op->addr, status, &op->info, &claimed, err);
  free(op);
}

static int sender_fetch(eth_client_t *c, sender_t *s) {
  sender_op_t *op = calloc(1, sizeof *op);
  if (!op) return LP_ENOMEM;
  memcpy(op->addr, s->addr, ETH_ADDR_LEN);
  lp_buf_t cd = LP_BUF_INIT;
  int rc = enc_addr("getSenderInfo(address)", s->addr, &cd);
  if (!rc) rc = call_async(c, c->contracts.ticket_broker, &cd, on_sender_call, op);
  lp_buf_free(&cd);
  if (rc) {
    free(op);
    return rc;
  }
  s->fetching = true;
  return 0;
}

int eth_client_sender_info(eth_client_t *c, const uint8_t sender[ETH_ADDR_LEN], eth_sender_cb cb,
                           void *ud) {
  if (c->closing) return LP_ECANCELED;
  uint64_t now = lp_now_ms();
  sender_t *s = sender_find(c, sender);
  if (!s && !(s = sender_add(c, sender))) return LP_ENOMEM;
  s->used_ms = now;
  if (s->has_value) {
    eth_sender_info_t info = s->info;
    pm_u256_t claimed = s->claimed;
    if ((s->fetched_ms == 0 || now - s->fetched_ms > c->sender_ttl_ms) && !s->fetching &&
        !fail_fast(c))
      sender_fetch(c, s); /* stale: refresh in the background, serve the last value now */
    cb(ud, 0, &info, &claimed, NULL);
    return 0;
  }
  if (!s->fetching) {
    if (s->err && now - s->err_ms < NEG_CACHE_MS) {
      char text[256];
      snprintf(text, sizeof text, "%s", s->err_text);
      cb(ud, s->err, NULL, NULL, text);
      return 0;
    }
    if (fail_fast(c)) {
      char text[300];
      snprintf(text, sizeof text, "Ethereum RPC endpoint unavailable: %s", c->last_err);
      cb(ud, LP_EIO, NULL, NULL, text);
      return 0;
    }
  }
  waiter_t *w = malloc(sizeof *w);
  if (!w) return LP_ENOMEM;
  w->cb = cb;
  w->ud = ud;
  if (!s->fetching) {
    int rc = sender_fetch(c, s);
    if (rc) {
      free(w);
      return rc;
    }
  }
  w->next = s->waiters;
  s->waiters = w;
  return 0;
}

void eth_client_sender_forget(eth_client_t *c, const uint8_t sender[ETH_ADDR_LEN]) {
  sender_t *s = sender_find(c, sender);
  if (s) s->fetched_ms = 0;
}

/* ---- redemption ------------------------------------------------------------------------------ */

enum { RD_USED, RD_ESTIMATE, RD_NONCE, RD_BLOCK, RD_TIP, RD_GASPRICE, RD_SEND, RD_RECEIPT };

struct redeem {
  redeem_t *next;
  eth_client_t *c;
  int step;
  bool started;
  uint8_t sender[ETH_ADDR_LEN];
  pm_u256_t face_value;
  bool counted; /* face_value is in the sender's pending amount */
  uint64_t gas_estimate;
  lp_buf_t calldata;
  uint8_t ticket_hash[ETH_HASH_LEN];
  eth_tx_t tx;
  bool has_base_fee;
  pm_u256_t base_fee;
  uint8_t txhash[ETH_HASH_LEN];          /* the mined one, once known */
  uint8_t sent[MAX_SENDS][ETH_HASH_LEN]; /* the original and its replacements, same nonce */
  int nsent, poll_idx, replacements;
  uint64_t first_sent_ms, last_sent_ms;
  uv_timer_t timer; /* receipt polling */
  bool timer_live;
  eth_redeem_cb cb;
  void *ud;
};

static void redeem_next(eth_client_t *c);
static void redeem_step(redeem_t *r);
static void client_maybe_free(eth_client_t *c);

static void on_redeem_timer_closed(uv_handle_t *h) {
  redeem_t *r = h->data;
  eth_client_t *c = r->c;
  lp_buf_free(&r->calldata);
  free(r);
  c->ops--;
  if (c->closing)
    client_maybe_free(c);
  else
    redeem_next(c);
}

static void redeem_finish(redeem_t *r, int status, const char *err) {
  eth_client_t *c = r->c;
  c->redeem_head = r->next;
  if (!c->redeem_head) c->redeem_tail = NULL;
  sender_t *s = sender_find(c, r->sender);
  if (s && r->counted) {
    if (eth_u256_sub(&s->pending, &s->pending, &r->face_value)) pm_u256_from_u64(&s->pending, 0);
    /* The deposit or reserve moved (or may have): read it again on next use. */
    s->fetched_ms = 0;
  }
  if (status) {
    LOGW("eth: ticket redemption failed: %s", err ? err : lp_strerror(status));
    r->cb(r->ud, status, NULL, err);
  } else {
    char h[2 * ETH_HASH_LEN + 1];
    lp_hex_encode(r->txhash, ETH_HASH_LEN, h);
    LOGI("eth: redeemed winning ticket txHash=0x%s", h);
    r->cb(r->ud, 0, r->txhash, NULL);
  }
  /* The timer handle lives inside r, so r goes when the handle is closed. */
  uv_timer_stop(&r->timer);
  uv_close((uv_handle_t *)&r->timer, on_redeem_timer_closed);
}

/* Reverts that will not change by waiting (spec §5.2, plus "ticket is expired", which go-livepeer
 * keeps retrying until the ticket leaves its window). */
static bool final_revert(const char *err) {
  static const char *final[] = {"ticket is used",
                                "ticket is expired",
                                "ticket creationRound does not have a block hash",
                                "ticket creationRoundBlockHash invalid",
                                "ticket did not win",
                                "recipientRand does not match",
                                "invalid signature over ticket hash"};
  for (size_t i = 0; err && i < LP_ARRAY_LEN(final); i++)
    if (strstr(err, final[i])) return true;
  return false;
}

static void addr_hex(const uint8_t a[ETH_ADDR_LEN], char out[2 * ETH_ADDR_LEN + 3]) {
  out[0] = '0';
  out[1] = 'x';
  lp_hex_encode(a, ETH_ADDR_LEN, out + 2);
}

static void on_redeem_rpc(void *ud, int status, const cJSON *res, const char *err);

static void on_redeem_used(eth_client_t *c, void *ctx, int status, const uint8_t *d, size_t n,
                           const char *err) {
  redeem_t *r = ctx;
  bool used = false;
  if (!status && eth_abi_get_bool(d, n, 0, &used)) status = LP_EPROTO, err = "bad answer";
  if (status) {
    char msg[300];
    snprintf(msg, sizeof msg, "TicketBroker.usedTickets: %s", err ? err : lp_strerror(status));
    note_fail(c, status, "usedTickets", err);
    redeem_finish(r, status == LP_ECANCELED ? status : LP_EAGAIN, msg);
    return;
  }
  if (used) {
    redeem_finish(r, LP_EEXIST, "ticket already used");
    return;
  }
  r->step = RD_ESTIMATE;
  redeem_step(r);
}

static int redeem_rpc(redeem_t *r, const char *method, cJSON *params) {
  int rc = eth_rpc_call_async(r->c->rpc, method, params, on_redeem_rpc, r);
  if (!rc) r->c->ops++;
  return rc;
}

static void on_receipt_timer(uv_timer_t *t) {
  redeem_t *r = t->data;
  cJSON *p = cJSON_CreateArray();
  char h[2 * ETH_HASH_LEN + 3] = "0x";
  /* Any of the sent versions can be the one that is mined: ask for each in turn. */
  r->poll_idx = (r->poll_idx + 1) % r->nsent;
  lp_hex_encode(r->sent[r->poll_idx], ETH_HASH_LEN, h + 2);
  cJSON_AddItemToArray(p, cJSON_CreateString(h));
  if (redeem_rpc(r, "eth_getTransactionReceipt", p))
    uv_timer_start(&r->timer, on_receipt_timer, LP_MAX(r->c->poll_ms, RECEIPT_POLL_MIN_MS), 0);
}

static void redeem_step(redeem_t *r) {
  eth_client_t *c = r->c;
  char from[2 * ETH_ADDR_LEN + 3], to[2 * ETH_ADDR_LEN + 3];
  addr_hex(c->account.addr, from);
  addr_hex(c->contracts.ticket_broker, to);
  cJSON *p = cJSON_CreateArray();
  int rc = p ? 0 : LP_ENOMEM;
  const char *method = NULL;
  switch (r->step) {
  case RD_USED: {
    cJSON_Delete(p);
    lp_buf_t cd = LP_BUF_INIT;
    eth_abi_arg_t arg = eth_abi_b32(r->ticket_hash);
    rc = eth_abi_encode_call("usedTickets(bytes32)", &arg, 1, &cd);
    if (!rc) rc = call_async(c, c->contracts.ticket_broker, &cd, on_redeem_used, r);
    lp_buf_free(&cd);
    if (rc) redeem_finish(r, LP_EAGAIN, "cannot start TicketBroker.usedTickets");
    return;
  }
  case RD_ESTIMATE: {
    cJSON *call = cJSON_CreateObject();
    char *hex = malloc(2 * r->calldata.len + 3);
    if (!call || !hex) {
      cJSON_Delete(call);
      free(hex);
      rc = LP_ENOMEM;
      break;
    }
    hex[0] = '0';
    hex[1] = 'x';
    lp_hex_encode(r->calldata.data, r->calldata.len, hex + 2);
    cJSON_AddStringToObject(call, "from", from);
    cJSON_AddStringToObject(call, "to", to);
    cJSON_AddStringToObject(call, "data", hex);
    free(hex);
    cJSON_AddItemToArray(p, call);
    method = "eth_estimateGas";
    break;
  }
  case RD_NONCE:
    cJSON_AddItemToArray(p, cJSON_CreateString(from));
    cJSON_AddItemToArray(p, cJSON_CreateString("pending"));
    method = "eth_getTransactionCount";
    break;
  case RD_BLOCK:
    cJSON_Delete(p);
    p = latest_block_params();
    method = "eth_getBlockByNumber";
    break;
  case RD_TIP: method = "eth_maxPriorityFeePerGas"; break;
  case RD_GASPRICE: method = "eth_gasPrice"; break;
  case RD_SEND: {
    lp_buf_t raw = LP_BUF_INIT;
    r->tx.data = r->calldata.data;
    r->tx.data_len = r->calldata.len;
    rc = eth_tx_sign(&r->tx, c->account.priv, &raw, r->sent[r->nsent]);
    char *hex = rc ? NULL : malloc(2 * raw.len + 3);
    if (hex) {
      hex[0] = '0';
      hex[1] = 'x';
      lp_hex_encode(raw.data, raw.len, hex + 2);
      cJSON_AddItemToArray(p, cJSON_CreateString(hex));
      free(hex);
      method = "eth_sendRawTransaction";
    } else if (!rc) {
      rc = LP_ENOMEM;
    }
    lp_buf_free(&raw);
    break;
  }
  }
  if (!rc)
    rc = redeem_rpc(r, method, p);
  else
    cJSON_Delete(p);
  if (rc) redeem_finish(r, LP_EAGAIN, "cannot start a JSON-RPC call for the redemption");
}

/* Wei as a decimal number of gwei ("1.5", "30"). */
static void gwei(const pm_u256_t *wei, char out[80]) {
  pm_u256_t q, rem, g, t;
  char qs[79], rs[79];
  pm_u256_from_u64(&g, 1000000000);
  eth_u256_div(&q, wei, &g);
  eth_u256_mul(&t, &q, &g);
  eth_u256_sub(&rem, wei, &t);
  pm_u256_to_dec(&q, qs);
  uint64_t r = 0;
  pm_u256_to_u64(&rem, &r);
  if (!r) {
    snprintf(out, 80, "%s", qs);
    return;
  }
  snprintf(rs, sizeof rs, "%09llu", (unsigned long long)r);
  size_t n = strlen(rs);
  while (n > 0 && rs[n - 1] == '0') rs[--n] = 0;
  snprintf(out, 80, "%s.%s", qs, rs);
}

/* Nodes take a replacement only when both the tip and the fee cap (or the gas price) rise by at
 * least 10%; 1/8 more clears that. */
static int bump(pm_u256_t *v) {
  pm_u256_t eighth, eight, one;
  pm_u256_from_u64(&eight, 8);
  pm_u256_from_u64(&one, 1);
  if (eth_u256_div(&eighth, v, &eight) || eth_u256_add(&eighth, &eighth, &one)) return LP_ERANGE;
  return eth_u256_add(v, v, &eighth);
}

/* Raises the fees of a stuck transaction; LP_ERANGE when that would pass -maxGasPrice. */
static int bump_fees(const eth_client_t *c, eth_tx_t *tx) {
  eth_tx_t t = *tx;
  int rc = t.type == ETH_TX_LEGACY ? bump(&t.gas_price)
                                   : (bump(&t.max_priority_fee) || bump(&t.max_fee));
  if (rc) return LP_ERANGE;
  const pm_u256_t *top = t.type == ETH_TX_LEGACY ? &t.gas_price : &t.max_fee;
  if (!pm_u256_is_zero(&c->max_gas_price) && pm_u256_cmp(top, &c->max_gas_price) > 0)
    return LP_ERANGE;
  *tx = t;
  return 0;
}

static void on_redeem_rpc(void *ud, int status, const cJSON *res, const char *err) {
  redeem_t *r = ud;
  eth_client_t *c = r->c;
  c->ops--;
  char msg[400];
  if (status == LP_ECANCELED || (c->closing && r->step != RD_RECEIPT)) {
    redeem_finish(r, LP_ECANCELED, "cancelled");
    return;
  }
  if (status && r->step == RD_TIP) {
    /* No eth_maxPriorityFeePerGas: tip = gasPrice - baseFee, as go-ethereum does. */
    r->step = RD_GASPRICE;
    redeem_step(r);
    return;
  }
  if (status && r->step == RD_RECEIPT) {
    note_fail(c, status, "eth_getTransactionReceipt", err);
    status = 0;
    res = NULL; /* keep polling until the timeout */
  }
  if (status && r->step == RD_SEND && r->nsent > 0) {
    /* A replacement was refused (often because the original was just mined): keep waiting for
     * the versions already out. */
    LOGW("eth: redemption transaction replacement refused: %s", err ? err : lp_strerror(status));
    r->step = RD_RECEIPT;
    r->last_sent_ms = lp_now_ms();
    uv_timer_start(&r->timer, on_receipt_timer, LP_MAX(c->poll_ms / 4, RECEIPT_POLL_MIN_MS), 0);
    return;
  }
  if (status) {
    if (status == LP_EIO || status == LP_ETIMEDOUT) note_fail(c, status, "redemption", err);
    snprintf(msg, sizeof msg, "%s", err ? err : lp_strerror(status));
    bool final = r->step == RD_ESTIMATE && final_revert(err);
    redeem_finish(r, final ? LP_EPROTO : LP_EAGAIN, msg);
    return;
  }
  note_ok(c);
  uint64_t v;
  pm_u256_t u;
  switch (r->step) {
  case RD_ESTIMATE:
    if (eth_rpc_hex_u64(res, &v)) break;
    r->gas_estimate = v;
    r->tx.gas_limit = v + v / 5; /* headroom: state can move between estimate and inclusion */
    r->step = RD_NONCE;
    redeem_step(r);
    return;
  case RD_NONCE:
    if (eth_rpc_hex_u64(res, &r->tx.nonce)) break;
    r->step = RD_BLOCK;
    redeem_step(r);
    return;
  case RD_BLOCK: {
    const cJSON *bf = cJSON_GetObjectItemCaseSensitive(res, "baseFeePerGas");
    r->has_base_fee = cJSON_IsString(bf) && eth_u256_from_hex(bf->valuestring, &r->base_fee) == 0;
    r->step = r->has_base_fee ? RD_TIP : RD_GASPRICE;
    redeem_step(r);
    return;
  }
  case RD_TIP:
  case RD_GASPRICE: {
    if (!cJSON_IsString(res) || eth_u256_from_hex(res->valuestring, &u)) break;
    if (!r->has_base_fee) {
      r->tx.type = ETH_TX_LEGACY;
      r->tx.gas_price = u;
    } else {
      r->tx.type = ETH_TX_DYNAMIC_FEE;
      if (r->step == RD_GASPRICE) {
        if (eth_u256_sub(&u, &u, &r->base_fee)) pm_u256_from_u64(&u, 0);
      }
      r->tx.max_priority_fee = u;
      pm_u256_t two, fee;
      pm_u256_from_u64(&two, 2);
      /* maxFee = 2*baseFee + tip keeps the transaction valid through several full blocks. */
      if (eth_u256_mul(&fee, &r->base_fee, &two) || eth_u256_add(&fee, &fee, &u)) break;
      r->tx.max_fee = fee;
    }
    /* A ticket worth less than the gas to redeem it loses money (go's pre-flight check); gas
     * prices move, so this is retried later. */
    pm_u256_t price = r->tx.gas_price, cost, gas;
    if (r->has_base_fee && eth_u256_add(&price, &r->base_fee, &r->tx.max_priority_fee)) break;
    if (!pm_u256_is_zero(&c->max_gas_price)) {
      if (pm_u256_cmp(&price, &c->max_gas_price) > 0) {
        char mx[80], cur[80];
        gwei(&c->max_gas_price, mx);
        gwei(&price, cur);
        snprintf(msg, sizeof msg,
                 "current gas price exceeds maximum gas price max=%s GWei current=%s GWei", mx,
                 cur);
        redeem_finish(r, LP_EAGAIN, msg);
        return;
      }
      /* go: GasFeeCap = min(maxGasPrice, 2*baseFee + tip). */
      if (r->has_base_fee && pm_u256_cmp(&r->tx.max_fee, &c->max_gas_price) > 0)
        r->tx.max_fee = c->max_gas_price;
    }
    pm_u256_from_u64(&gas, r->gas_estimate);
    if (eth_u256_mul(&cost, &gas, &price) || pm_u256_cmp(&r->face_value, &cost) <= 0) {
      redeem_finish(r, LP_EAGAIN, "insufficient ticket face value for redeem tx cost");
      return;
    }
    r->step = RD_SEND;
    redeem_step(r);
    return;
  }
  case RD_SEND:
    r->step = RD_RECEIPT;
    r->last_sent_ms = lp_now_ms();
    if (r->nsent++ == 0) r->first_sent_ms = r->last_sent_ms;
    r->poll_idx = r->nsent - 2; /* the newest is asked first */
    uv_timer_start(&r->timer, on_receipt_timer, LP_MAX(c->poll_ms / 4, RECEIPT_POLL_MIN_MS), 0);
    return;
  case RD_RECEIPT:
    if (res && cJSON_IsObject(res)) {
      uint64_t st = 0;
      char h[2 * ETH_HASH_LEN + 1];
      memcpy(r->txhash, r->sent[r->poll_idx], ETH_HASH_LEN);
      lp_hex_encode(r->txhash, ETH_HASH_LEN, h);
      if (eth_rpc_hex_u64(cJSON_GetObjectItemCaseSensitive(res, "status"), &st) || st != 1) {
        snprintf(msg, sizeof msg, "transaction failed txHash=0x%s", h);
        redeem_finish(r, LP_EPROTO, msg);
      } else {
        redeem_finish(r, 0, NULL);
      }
      return;
    }
    if (c->closing) {
      redeem_finish(r, LP_ECANCELED, "cancelled while waiting for the receipt");
      return;
    }
    if (lp_now_ms() - r->first_sent_ms > RECEIPT_TIMEOUT_MS) {
      redeem_finish(r, LP_ETIMEDOUT, "no receipt for the redemption transaction in 10 minutes");
      return;
    }
    if (lp_now_ms() - r->last_sent_ms > c->tx_timeout_ms && r->replacements < c->tx_replacements &&
        r->nsent < MAX_SENDS && bump_fees(c, &r->tx) == 0) {
      /* Stuck: send the same nonce again with higher fees (go's -transactionTimeout and
       * -maxTransactionReplacements). */
      r->replacements++;
      LOGI("eth: redemption transaction pending for %llu ms; replacing it with higher fees",
           (unsigned long long)(lp_now_ms() - r->last_sent_ms));
      r->step = RD_SEND;
      redeem_step(r);
      return;
    }
    uv_timer_start(&r->timer, on_receipt_timer, LP_MAX(c->poll_ms / 4, RECEIPT_POLL_MIN_MS), 0);
    return;
  }
  snprintf(msg, sizeof msg, "malformed answer during redemption (step %d)", r->step);
  redeem_finish(r, LP_EAGAIN, msg);
}

static void redeem_next(eth_client_t *c) {
  if (!c->closing && c->redeem_head && !c->redeem_head->started) {
    c->redeem_head->started = true;
    c->redeem_head->tx.chain_id = c->chain_id;
    redeem_step(c->redeem_head);
  }
}

int eth_client_redeem(eth_client_t *c, const pm_ticket_t *t, const uint8_t *sig, size_t sig_len,
                      const pm_u256_t *recipient_rand, eth_redeem_cb cb, void *ud) {
  if (c->closing) return LP_ECANCELED;
  if (!c->has_account) return LP_EPERM;
  if (!c->loop || !c->chain_id) return LP_EINVAL;
  redeem_t *r = calloc(1, sizeof *r);
  if (!r) return LP_ENOMEM;
  int rc = eth_tb_encode_redeem(t, sig, sig_len, recipient_rand, &r->calldata);
  if (rc) {
    free(r);
    return rc;
  }
  pm_ticket_hash(t, r->ticket_hash);
  r->c = c;
  r->cb = cb;
  r->ud = ud;
  r->step = RD_USED;
  memcpy(r->sender, t->sender, ETH_ADDR_LEN);
  r->face_value = t->face_value;
  sender_t *s = sender_find(c, t->sender);
  if (!s) s = sender_add(c, t->sender);
  if (s && !eth_u256_add(&s->pending, &s->pending, &t->face_value)) r->counted = true;
  r->tx.has_to = true;
  memcpy(r->tx.to, c->contracts.ticket_broker, ETH_ADDR_LEN);
  uv_timer_init(c->loop, &r->timer);
  r->timer.data = r;
  c->ops++; /* the timer handle, released when it is closed */
  if (c->redeem_tail)
    c->redeem_tail->next = r;
  else
    c->redeem_head = r;
  c->redeem_tail = r;
  redeem_next(c);
  return 0;
}

/* ---- lifecycle
 * ----------------------------------------------------------------------------------- */

int eth_client_new(uv_loop_t *loop, const eth_client_cfg_t *cfg, eth_client_t **out) {
  *out = NULL;
  eth_client_t *c = calloc(1, sizeof *c);
  if (!c) return LP_ENOMEM;
  int rc =
      eth_rpc_new(loop, cfg->url, cfg->rpc_timeout_ms > 0 ? cfg->rpc_timeout_ms : 20000, &c->rpc);
  if (rc) {
    free(c);
    return rc;
  }
  c->loop = loop;
  c->min_gas_price = cfg->min_gas_price;
  c->max_gas_price = cfg->max_gas_price;
  c->tx_timeout_ms = cfg->tx_timeout_ms > 0 ? (uint64_t)cfg->tx_timeout_ms : 5 * 60 * 1000;
  c->tx_replacements = cfg->tx_replacements < 0 ? 0
                       : cfg->tx_replacements   ? cfg->tx_replacements
                                                : 1;
  c->poll_ms = cfg->poll_interval_ms > 0 ? (uint64_t)cfg->poll_interval_ms : 5000;
  c->sender_ttl_ms = cfg->sender_ttl_ms > 0 ? (uint64_t)cfg->sender_ttl_ms : 60000;
  memcpy(c->contracts.controller, cfg->controller, ETH_ADDR_LEN);
  if (cfg->account) {
    c->account = *cfg->account;
    c->has_account = true;
  }
  if (cfg->recipient)
    memcpy(c->recipient, cfg->recipient, ETH_ADDR_LEN);
  else if (cfg->account)
    memcpy(c->recipient, cfg->account->addr, ETH_ADDR_LEN);
  c->last_block = -1;
  c->lir = -1;
  c->active_round = -1;
  if (loop) {
    uv_timer_init(loop, &c->poll_timer);
    c->poll_timer.data = c;
  }
  *out = c;
  return 0;
}

int eth_client_start(eth_client_t *c) {
  if (!c->loop || c->started) return LP_EINVAL;
  c->started = true;
  return uv_timer_start(&c->poll_timer, on_poll_timer, 0, c->poll_ms) ? LP_EIO : 0;
}

static void client_maybe_free(eth_client_t *c) {
  if (c->ops > 0 || (c->loop && !c->poll_closed)) return;
  free(c->senders);
  free(c->active_set);
  OPENSSL_cleanse(&c->account, sizeof c->account);
  free(c);
}

static void on_client_closed(uv_handle_t *h) {
  eth_client_t *c = h->data;
  c->poll_closed = true;
  client_maybe_free(c);
}

void eth_client_free(eth_client_t *c) {
  if (!c) return;
  c->closing = true;
  /* Cancels every JSON-RPC call; their callbacks finish sender waits and redemptions. */
  eth_rpc_free(c->rpc);
  c->rpc = NULL;
  /* Redemptions waiting for their turn, or between receipt polls, end here. */
  while (c->redeem_head) redeem_finish(c->redeem_head, LP_ECANCELED, "cancelled");
  for (size_t i = 0; i < c->nsenders; i++)
    if (c->senders[i].waiters) sender_finish(c, c->senders[i].addr, LP_ECANCELED, NULL, NULL, NULL);
  if (c->loop) {
    uv_timer_stop(&c->poll_timer);
    uv_close((uv_handle_t *)&c->poll_timer, on_client_closed);
  } else {
    client_maybe_free(c);
  }
}

/* ---- accessors
 * ----------------------------------------------------------------------------------- */

eth_rpc_t *eth_client_rpc(eth_client_t *c) { return c->rpc; }
uint64_t eth_client_chain_id(const eth_client_t *c) { return c->chain_id; }
const eth_contracts_t *eth_client_contracts(const eth_client_t *c) { return &c->contracts; }
int64_t eth_client_last_block(const eth_client_t *c) { return c->last_block; }
int64_t eth_client_last_initialized_round(const eth_client_t *c) { return c->lir; }
uint64_t eth_client_pool_size(const eth_client_t *c) { return c->pool_size; }
bool eth_client_recipient_active(const eth_client_t *c) { return c->active; }
bool eth_client_is_active(const eth_client_t *c, const uint8_t addr[ETH_ADDR_LEN]) {
  if (memcmp(addr, c->recipient, ETH_ADDR_LEN) == 0) return c->active;
  for (size_t i = 0; i < c->n_active; i++)
    if (memcmp(c->active_set[i], addr, ETH_ADDR_LEN) == 0) return true;
  return false;
}

void eth_client_sender_pending(const eth_client_t *c, const uint8_t sender[ETH_ADDR_LEN],
                               pm_u256_t *out) {
  pm_u256_from_u64(out, 0);
  for (size_t i = 0; i < c->nsenders; i++)
    if (memcmp(c->senders[i].addr, sender, ETH_ADDR_LEN) == 0) *out = c->senders[i].pending;
}

int eth_client_gas_price(const eth_client_t *c, pm_u256_t *out) {
  if (!c->has_gas_price) return LP_EAGAIN;
  *out = c->gas_price;
  return 0;
}

void eth_client_on_block(eth_client_t *c, eth_block_cb cb, void *ud) {
  c->block_cb = cb;
  c->block_ud = ud;
}

int eth_client_params_round(const eth_client_t *c, int64_t *round, uint8_t hash[ETH_HASH_LEN]) {
  static const uint8_t zero[32];
  if (!c->round_known) return LP_EAGAIN;
  if (memcmp(c->lir_hash, zero, 32) != 0) {
    *round = c->lir;
    memcpy(hash, c->lir_hash, 32);
    return 0;
  }
  /* Arbitrum can lag: the newest round has no hash yet, so back-date one round (spec §2.7). */
  if (c->lir <= 0 || memcmp(c->pre_hash, zero, 32) == 0) return LP_EAGAIN;
  *round = c->lir - 1;
  memcpy(hash, c->pre_hash, 32);
  return 0;
}
