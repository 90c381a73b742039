/* On-chain payments behind the orchestrator's payment seam (spec/payments.md, protocol.md §9).
 * Everything runs on the loop thread; the store's fsyncs run through uv_queue_work. The recipient
 * secret and every accepted nonce are stored, so params issued before a restart stay valid after
 * it without opening a replay window. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/eth.h"
#include "lpod/pm.h"
#include "pay_onchain.h"

#define STORE_FILE "lpod_payments.sqlite3"
/* go-livepeer's cleanupInterval for balances. */
#define BALANCE_TTL_MS (10 * 60 * 1000)
/* go's ticketValidityPeriod as the queue applies it. */
#define TICKET_VALIDITY_ROUNDS 2
/* go's PriceToFixed scale. */
#define PRICE_SCALE 1000

typedef struct gw_price {
  uint8_t addr[PM_ADDR_LEN];
  pm_price_t price;
} gw_price_t;

typedef struct waiter {
  struct waiter *next;
  uint8_t sender[PM_ADDR_LEN]; /* prepare */
  uint64_t target;             /* flush: commits that must be done */
  void (*ready)(void *arg);
  void (*done)(void *arg, int status);
  void *arg;
} waiter_t;

struct orch_onchain {
  uv_loop_t *loop;
  eth_account_t acct;
  eth_network_t net;
  eth_client_t *eth;
  pm_store_t *store;
  pm_recipient_t *rcp;
  pm_balances_t *bal;
  uv_timer_t bal_timer;
  /* pricing */
  pm_price_t base;
  gw_price_t *gw;
  size_t n_gw;
  bool auto_adjust;
  pm_u256_t ev, max_fv;
  /* the sender info probe (see probe_sender) */
  bool probing, probe_got;
  int probe_status;
  eth_sender_info_t probe_info;
  pm_u256_t probe_claimed;
  char probe_err[160];
  waiter_t *prepare_waiters;
  /* durability: commits are numbered; a flush waits for the number current at its call */
  uint64_t commits_started, commits_done;
  int commit_error;
  bool commit_inflight;
  pm_winning_ticket_t *b_winners; /* the next commit */
  size_t b_n_winners, b_winners_cap;
  pm_nonce_rec_t *b_nonces;
  size_t b_n_nonces, b_nonces_cap;
  waiter_t *flush_waiters;
  /* redemption */
  bool redeeming, redeem_again;
  pm_winning_ticket_t *pending;
  size_t n_pending, next_pending;
  int64_t redeem_block, redeem_lir;
  /* lifetime */
  int works; /* uv_queue_work requests in flight */
  bool closing, timer_closed;
};

/* ---- store work off the loop ---------------------------------------------------------------- */
typedef enum { W_COMMIT, W_EXPIRE, W_LOAD, W_MARK } work_kind_t;

typedef struct work {
  uv_work_t req;
  orch_onchain_t *oc;
  work_kind_t kind;
  int rc;
  uint64_t seq;
  pm_winning_ticket_t *winners;
  size_t n_winners;
  pm_nonce_rec_t *nonces;
  size_t n_nonces;
  uint64_t block;
  uint8_t sig[PM_SIG_LEN];
  uint8_t txhash[PM_HASH_LEN];
} work_t;

static void oc_maybe_release(orch_onchain_t *oc);
static void redeem_next(orch_onchain_t *oc);
static void commit_kick(orch_onchain_t *oc);

static void work_run(uv_work_t *req) {
  work_t *w = req->data;
  pm_store_t *s = w->oc->store;
  switch (w->kind) {
  case W_COMMIT:
    w->rc = pm_store_commit(s, w->winners, w->n_winners, w->nonces, w->n_nonces);
    break;
  case W_EXPIRE: w->rc = pm_store_expire_nonces(s, w->block); break;
  case W_LOAD: w->rc = pm_store_pending_winners(s, &w->winners, &w->n_winners); break;
  case W_MARK: w->rc = pm_store_mark_redeemed(s, w->sig, w->txhash); break;
  }
}

static void flush_wake(orch_onchain_t *oc) {
  waiter_t **pp = &oc->flush_waiters;
  while (*pp) {
    waiter_t *wt = *pp;
    if (wt->target > oc->commits_done) {
      pp = &wt->next;
      continue;
    }
    *pp = wt->next;
    wt->done(wt->arg, oc->commit_error);
    free(wt);
  }
}

static void work_after(uv_work_t *req, int status) {
  work_t *w = req->data;
  orch_onchain_t *oc = w->oc;
  oc->works--;
  if (status) w->rc = LP_ECANCELED;
  switch (w->kind) {
  case W_COMMIT:
    if (w->rc) {
      LOGE("Could not store payment winners=%zu nonces=%zu: %s", w->n_winners, w->n_nonces,
           lp_strerror(w->rc));
      oc->commit_error = w->rc;
    }
    oc->commit_inflight = false;
    oc->commits_done = w->seq;
    flush_wake(oc);
    free(w->winners);
    free(w->nonces);
    commit_kick(oc);
    break;
  case W_EXPIRE:
  case W_MARK:
    if (w->rc) LOGW("pm store update failed: %s", lp_strerror(w->rc));
    break;
  case W_LOAD:
    if (w->rc || oc->closing) {
      free(w->winners);
      oc->redeeming = false;
    } else {
      oc->pending = w->winners;
      oc->n_pending = w->n_winners;
      oc->next_pending = 0;
      redeem_next(oc);
    }
    break;
  }
  free(w);
  oc_maybe_release(oc);
}

static int work_queue(orch_onchain_t *oc, work_t *w) {
  w->oc = oc;
  w->req.data = w;
  int rc = uv_queue_work(oc->loop, &w->req, work_run, work_after);
  if (rc) return LP_EIO;
  oc->works++;
  return 0;
}

/* Group commit: one store transaction in flight at a time, the payments that arrive meanwhile
 * go together into the next one. Commits therefore complete in the order they were numbered. */
static int grow(void **arr, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return 0;
  size_t nc = *cap ? *cap * 2 : 16;
  while (nc < need) nc *= 2;
  void *p = realloc(*arr, nc * size);
  if (!p) return LP_ENOMEM;
  *arr = p;
  *cap = nc;
  return 0;
}

static int batch_add(orch_onchain_t *oc, const pm_payment_result_t *res) {
  if (grow((void **)&oc->b_winners, &oc->b_winners_cap, oc->b_n_winners + res->n_winners,
           sizeof *oc->b_winners) ||
      grow((void **)&oc->b_nonces, &oc->b_nonces_cap, oc->b_n_nonces + res->n_nonces,
           sizeof *oc->b_nonces))
    return LP_ENOMEM;
  if (res->n_winners)
    memcpy(oc->b_winners + oc->b_n_winners, res->winners, res->n_winners * sizeof *res->winners);
  if (res->n_nonces)
    memcpy(oc->b_nonces + oc->b_n_nonces, res->nonces, res->n_nonces * sizeof *res->nonces);
  oc->b_n_winners += res->n_winners;
  oc->b_n_nonces += res->n_nonces;
  oc->commits_started++;
  return 0;
}

static void commit_kick(orch_onchain_t *oc) {
  if (oc->commit_inflight || (!oc->b_n_winners && !oc->b_n_nonces)) return;
  work_t *w = calloc(1, sizeof *w);
  if (!w) return; /* retried with the next payment or the next block */
  w->kind = W_COMMIT;
  w->seq = oc->commits_started;
  w->winners = oc->b_winners;
  w->n_winners = oc->b_n_winners;
  w->nonces = oc->b_nonces;
  w->n_nonces = oc->b_n_nonces;
  if (work_queue(oc, w)) {
    free(w);
    return;
  }
  oc->commit_inflight = true;
  oc->b_winners = NULL;
  oc->b_nonces = NULL;
  oc->b_n_winners = oc->b_n_nonces = oc->b_winners_cap = oc->b_nonces_cap = 0;
}

/* ---- chain state ------------------------------------------------------------------------------
 * eth_client_sender_info answers from its cache before returning, or starts a fetch and answers
 * later. The probe tells the two apart: only an answer during the call is used at once; a late
 * one wakes whoever waits on that sender. */
static void probe_cb(void *ud, int status, const eth_sender_info_t *info, const pm_u256_t *claimed,
                     const char *err) {
  orch_onchain_t *oc = ud;
  if (oc->probing) {
    oc->probe_got = true;
    oc->probe_status = status;
    if (info) oc->probe_info = *info;
    if (claimed) oc->probe_claimed = *claimed;
    snprintf(oc->probe_err, sizeof oc->probe_err, "%s", err ? err : lp_strerror(status));
    return;
  }
  if (oc->closing) return;
  /* a fetch finished: every waiter retries, each finds the cache filled (or the error kept) */
  waiter_t *list = oc->prepare_waiters;
  oc->prepare_waiters = NULL;
  while (list) {
    waiter_t *wt = list;
    list = wt->next;
    wt->ready(wt->arg);
    free(wt);
  }
}

/* True when the sender's info is at hand now (oc->probe_*); starts a fetch otherwise. */
static bool probe_sender(orch_onchain_t *oc, const uint8_t sender[PM_ADDR_LEN]) {
  oc->probing = true;
  oc->probe_got = false;
  int rc = eth_client_sender_info(oc->eth, sender, probe_cb, oc);
  oc->probing = false;
  if (rc && !oc->probe_got) {
    oc->probe_got = true;
    oc->probe_status = rc;
    snprintf(oc->probe_err, sizeof oc->probe_err, "%s", lp_strerror(rc));
  }
  return oc->probe_got;
}

/* ---- prices -------------------------------------------------------------------------------- */
static uint64_t gcd_u64(uint64_t a, uint64_t b) {
  while (b) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static const pm_price_t *base_price(const orch_onchain_t *oc, const uint8_t sender[PM_ADDR_LEN]) {
  for (size_t i = 0; i < oc->n_gw; i++)
    if (memcmp(oc->gw[i].addr, sender, PM_ADDR_LEN) == 0) return &oc->gw[i].price;
  return &oc->base;
}

/* go's priceInfo with -autoAdjustPrice: base × (1 + txCost/faceValue), truncated to 1/1000 wei
 * and reduced. Falls back to the base price where the numbers do not fit an int64. */
static pm_price_t adjusted_price(const pm_price_t *base, const pm_u256_t *fv,
                                 const pm_u256_t *tx_cost) {
  pm_u256_t num, den, t, q;
  pm_u256_t sum, scale, ppu, pxu;
  if (pm_u256_is_zero(fv) || pm_u256_is_zero(tx_cost)) return *base;
  pm_u256_from_u64(&scale, PRICE_SCALE);
  pm_u256_from_u64(&ppu, (uint64_t)base->price_per_unit);
  pm_u256_from_u64(&pxu, (uint64_t)base->pixels_per_unit);
  if (eth_u256_add(&sum, fv, tx_cost) || eth_u256_mul(&t, &ppu, &scale) ||
      eth_u256_mul(&num, &t, &sum) || eth_u256_mul(&den, &pxu, fv) || eth_u256_div(&q, &num, &den))
    return *base;
  uint64_t fixed;
  if (pm_u256_to_u64(&q, &fixed) || fixed > INT64_MAX || fixed == 0) return *base;
  uint64_t g = gcd_u64(fixed, PRICE_SCALE);
  pm_price_t p = {(int64_t)(fixed / g), (int64_t)(PRICE_SCALE / g)};
  return p;
}

static int parse_i64(const char *s, int64_t *out) {
  if (!s || !*s) return LP_EINVAL;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return LP_EINVAL;
  *out = v;
  return 0;
}

static int parse_u256(const char *s, pm_u256_t *out) {
  if (!s || !*s) {
    memset(out, 0, sizeof *out);
    return 0;
  }
  return pm_u256_from_dec(out, s);
}

/* -pricePerGateway: {"gateways":[{"ethaddress":"0x…","priceperunit":N,"pixelsperunit":M}]} */
static int parse_gateway_prices(orch_onchain_t *oc, const char *json) {
  if (!json || !*json) return 0;
  cJSON *root = cJSON_Parse(json);
  const cJSON *arr = root ? cJSON_GetObjectItemCaseSensitive(root, "gateways") : NULL;
  if (!root || (arr && !cJSON_IsArray(arr))) {
    cJSON_Delete(root);
    LOGE("-pricePerGateway is not valid JSON with a \"gateways\" list");
    return LP_EINVAL;
  }
  int n = cJSON_GetArraySize(arr);
  oc->gw = calloc(n > 0 ? (size_t)n : 1, sizeof *oc->gw);
  if (!oc->gw) {
    cJSON_Delete(root);
    return LP_ENOMEM;
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    const cJSON *a = cJSON_GetObjectItem(it, "ethaddress");
    const cJSON *p = cJSON_GetObjectItem(it, "priceperunit");
    const cJSON *x = cJSON_GetObjectItem(it, "pixelsperunit");
    gw_price_t *g = &oc->gw[oc->n_gw];
    int64_t px = 1;
    if (!cJSON_IsString(a) || pm_addr_from_hex(a->valuestring, g->addr) || !cJSON_IsNumber(p) ||
        (x && !cJSON_IsNumber(x)) || p->valuedouble < 0) {
      cJSON_Delete(root);
      LOGE("-pricePerGateway: each gateway needs ethaddress, priceperunit >= 0 and pixelsperunit "
           "> 0");
      return LP_EINVAL;
    }
    if (x) px = (int64_t)x->valuedouble;
    if (px <= 0) {
      cJSON_Delete(root);
      LOGE("-pricePerGateway: pixelsperunit must be > 0");
      return LP_EINVAL;
    }
    g->price.price_per_unit = (int64_t)p->valuedouble;
    g->price.pixels_per_unit = px;
    oc->n_gw++;
  }
  cJSON_Delete(root);
  return 0;
}

/* ---- wire conversions ------------------------------------------------------------------------ */
static int bytes_dup(ProtobufCBinaryData *d, const uint8_t *p, size_t n) {
  d->data = malloc(n ? n : 1);
  if (!d->data) return LP_ENOMEM;
  if (n) memcpy(d->data, p, n);
  d->len = n;
  return 0;
}

static int u256_dup(ProtobufCBinaryData *d, const pm_u256_t *v) {
  const uint8_t *p;
  size_t n = pm_u256_min_bytes(v, &p);
  return bytes_dup(d, p, n);
}

static int wire_ticket_params(const pm_ticket_params_t *tp, Net__TicketParams **out) {
  Net__TicketParams *w = malloc(sizeof *w);
  Net__TicketExpirationParams *e = malloc(sizeof *e);
  if (!w || !e) {
    free(w);
    free(e);
    return LP_ENOMEM;
  }
  net__ticket_params__init(w);
  net__ticket_expiration_params__init(e);
  w->expiration_params = e;
  e->creation_round = tp->expiration.creation_round;
  int rc = bytes_dup(&w->recipient, tp->recipient, PM_ADDR_LEN);
  if (!rc) rc = u256_dup(&w->face_value, &tp->face_value);
  if (!rc) rc = u256_dup(&w->win_prob, &tp->win_prob);
  if (!rc) rc = bytes_dup(&w->recipient_rand_hash, tp->recipient_rand_hash, PM_HASH_LEN);
  if (!rc) rc = u256_dup(&w->seed, &tp->seed);
  if (!rc) rc = u256_dup(&w->expiration_block, &tp->expiration_block);
  if (!rc)
    rc = bytes_dup(&e->creation_round_block_hash, tp->expiration.creation_round_block_hash,
                   PM_HASH_LEN);
  if (rc) {
    protobuf_c_message_free_unpacked(&w->base, NULL);
    return rc;
  }
  *out = w;
  return 0;
}

static int payment_from_wire(const Net__Payment *p, pm_payment_t *out,
                             pm_ticket_sender_params_t **tickets) {
  memset(out, 0, sizeof *out);
  *tickets = NULL;
  if (p->ticket_params) {
    const Net__TicketParams *t = p->ticket_params;
    out->has_ticket_params = true;
    pm_bytes_to_fixed(t->recipient.data, t->recipient.len, out->params.recipient, PM_ADDR_LEN);
    pm_bytes_to_fixed(t->recipient_rand_hash.data, t->recipient_rand_hash.len,
                      out->params.recipient_rand_hash, PM_HASH_LEN);
    if (pm_u256_from_bytes(&out->params.face_value, t->face_value.data, t->face_value.len) ||
        pm_u256_from_bytes(&out->params.win_prob, t->win_prob.data, t->win_prob.len) ||
        pm_u256_from_bytes(&out->params.seed, t->seed.data, t->seed.len) ||
        pm_u256_from_bytes(&out->params.expiration_block, t->expiration_block.data,
                           t->expiration_block.len))
      return LP_ERANGE;
  }
  out->sender_len = p->sender.len;
  pm_bytes_to_fixed(p->sender.data, p->sender.len, out->sender, PM_ADDR_LEN);
  if (p->expiration_params) {
    out->has_expiration_params = true;
    out->expiration.creation_round = p->expiration_params->creation_round;
    pm_bytes_to_fixed(p->expiration_params->creation_round_block_hash.data,
                      p->expiration_params->creation_round_block_hash.len,
                      out->expiration.creation_round_block_hash, PM_HASH_LEN);
  }
  if (p->expected_price) {
    out->has_expected_price = true;
    out->expected_price.price_per_unit = p->expected_price->priceperunit;
    out->expected_price.pixels_per_unit = p->expected_price->pixelsperunit;
  }
  if (p->n_ticket_sender_params) {
    pm_ticket_sender_params_t *ts = calloc(p->n_ticket_sender_params, sizeof *ts);
    if (!ts) return LP_ENOMEM;
    for (size_t i = 0; i < p->n_ticket_sender_params; i++) {
      ts[i].sender_nonce = p->ticket_sender_params[i]->sender_nonce;
      ts[i].sig = p->ticket_sender_params[i]->sig.data;
      ts[i].sig_len = p->ticket_sender_params[i]->sig.len;
    }
    *tickets = ts;
    out->tickets = ts;
    out->n_tickets = p->n_ticket_sender_params;
  }
  return 0;
}

/* ---- the seam ---------------------------------------------------------------------------------
 */
static bool oc_verify(void *ctx, const uint8_t addr[20], const void *msg, size_t len,
                      const uint8_t *sig, size_t sig_len) {
  (void)ctx;
  return pm_verify_msg(addr, msg, len, sig, sig_len);
}

static int oc_sign_msg(void *ctx, const void *msg, size_t len, uint8_t **sig, size_t *sig_len) {
  orch_onchain_t *oc = ctx;
  uint8_t *s = malloc(PM_SIG_LEN);
  if (!s) return LP_ENOMEM;
  int rc = pm_sign_msg(oc->acct.priv, msg, len, s);
  if (rc) {
    free(s);
    return rc;
  }
  *sig = s;
  *sig_len = PM_SIG_LEN;
  return 0;
}

static int oc_sign_hash(void *ctx, const uint8_t hash[32], uint8_t **sig, size_t *sig_len) {
  orch_onchain_t *oc = ctx;
  uint8_t *s = malloc(PM_SIG_LEN);
  if (!s) return LP_ENOMEM;
  int rc = pm_sign_hash(oc->acct.priv, hash, s);
  if (rc) {
    free(s);
    return rc;
  }
  *sig = s;
  *sig_len = PM_SIG_LEN;
  return 0;
}

static int oc_prepare(void *ctx, const uint8_t sender[20], void (*ready)(void *arg), void *arg) {
  orch_onchain_t *oc = ctx;
  if (probe_sender(oc, sender)) return 0;
  waiter_t *wt = calloc(1, sizeof *wt);
  if (!wt) return 0; /* the request goes on and fails on the missing info */
  memcpy(wt->sender, sender, PM_ADDR_LEN);
  wt->ready = ready;
  wt->arg = arg;
  wt->next = oc->prepare_waiters;
  oc->prepare_waiters = wt;
  return LP_EAGAIN;
}

/* faceValue for a sender's new params (spec §2.5); err is go's text when it cannot be had. */
static int face_value(orch_onchain_t *oc, const uint8_t sender[20], pm_u256_t *fv,
                      pm_u256_t *tx_cost, const char **err) {
  char hex[PM_ADDR_HEX_LEN];
  pm_addr_to_hex(sender, hex);
  if (!probe_sender(oc, sender) || oc->probe_status) {
    LOGW("No sender info for ticket params sender=%s err=%s", hex,
         oc->probe_got ? oc->probe_err : "not fetched yet");
    *err = "could not get sender info";
    return LP_EAGAIN;
  }
  pm_fv_inputs_t in;
  memset(&in, 0, sizeof in);
  in.ev = oc->ev;
  in.redeem_gas = oc->net.redeem_gas;
  in.max_face_value = oc->max_fv;
  if (eth_client_gas_price(oc->eth, &in.gas_price)) {
    *err = "gas price not known yet";
    return LP_EAGAIN;
  }
  pm_u256_t pending;
  eth_client_sender_pending(oc->eth, sender, &pending);
  eth_sender_max_float(&oc->probe_info, &oc->probe_claimed, eth_client_pool_size(oc->eth), &pending,
                       &in.max_float, NULL);
  pm_u256_t rg;
  pm_u256_from_u64(&rg, in.redeem_gas);
  if (eth_u256_mul(tx_cost, &rg, &in.gas_price)) memset(tx_cost, 0xff, sizeof *tx_cost);
  return pm_face_value(&in, fv, err);
}

static int oc_fill_info(void *ctx, const uint8_t sender[20], const char *session_id,
                        Net__OrchestratorInfo *info) {
  orch_onchain_t *oc = ctx;
  pm_u256_t fv, tx_cost;
  const char *err = NULL;
  char hex[PM_ADDR_HEX_LEN];
  int rc = face_value(oc, sender, &fv, &tx_cost, &err);
  if (rc) {
    pm_addr_to_hex(sender, hex);
    LOGW("Could not issue ticket params sender=%s err=%s", hex, err ? err : lp_strerror(rc));
    return rc;
  }
  /* The price a session pays is fixed by its first quote, so every later info of the session
   * repeats it and a payment at another price can be told apart. */
  pm_price_t price;
  if (pm_balances_fixed_price(oc->bal, sender, session_id, &price) != 0) {
    const pm_price_t *b = base_price(oc, sender);
    price = oc->auto_adjust && b->price_per_unit > 0 ? adjusted_price(b, &fv, &tx_cost) : *b;
    uint64_t num, den;
    bool neg;
    if (pm_price_reduce(&price, &num, &den, &neg) == 0 && num <= INT64_MAX && den <= INT64_MAX) {
      price.price_per_unit = neg ? -(int64_t)num : (int64_t)num;
      price.pixels_per_unit = (int64_t)den;
    }
    if (session_id && session_id[0])
      pm_balances_set_fixed_price(oc->bal, sender, session_id, &price);
  }
  pm_expiration_params_t exp;
  memset(&exp, 0, sizeof exp);
  if (eth_client_params_round(oc->eth, &exp.creation_round, exp.creation_round_block_hash)) {
    LOGW("Could not issue ticket params: the round is not known yet");
    return LP_EAGAIN;
  }
  pm_ticket_params_t tp;
  pm_u256_t zero;
  memset(&zero, 0, sizeof zero);
  rc = pm_recipient_ticket_params(oc->rcp, sender, price.price_per_unit > 0 ? &fv : &zero, &price,
                                  &exp, (uint64_t)eth_client_last_block(oc->eth), &tp);
  if (rc) {
    LOGW("Could not issue ticket params: %s", lp_strerror(rc));
    return rc;
  }
  Net__PriceInfo *pi = malloc(sizeof *pi);
  if (!pi) return LP_ENOMEM;
  net__price_info__init(pi);
  pi->priceperunit = price.price_per_unit;
  pi->pixelsperunit = price.pixels_per_unit;
  Net__TicketParams *w;
  if ((rc = wire_ticket_params(&tp, &w))) {
    free(pi);
    return rc;
  }
  info->price_info = pi;
  info->ticket_params = w;
  return 0;
}

static int oc_process_payment(void *ctx, const Net__Payment *p, const uint8_t sender[20],
                              const char *session_id, char *err, size_t errlen) {
  orch_onchain_t *oc = ctx;
  pm_payment_t pay;
  pm_ticket_sender_params_t *ts = NULL;
  int rc = payment_from_wire(p, &pay, &ts);
  if (rc) {
    free(ts);
    snprintf(err, errlen, "%s",
             rc == LP_ERANGE ? "invalid ticket params: integer wider than 256 bits"
                             : "out of memory");
    return rc;
  }
  pm_sender_info_t si = {NULL, 0};
  char si_err[200];
  if (pay.has_ticket_params && pay.n_tickets) {
    if (!probe_sender(oc, pay.sender)) {
      si.error = "sender info is being fetched";
    } else if (oc->probe_status) {
      snprintf(si_err, sizeof si_err, "%s", oc->probe_err);
      si.error = si_err;
    } else {
      si.withdraw_round = (int64_t)oc->probe_info.withdraw_round;
    }
  }
  pm_price_t quoted;
  bool have_quote = pm_balances_fixed_price(oc->bal, sender, session_id, &quoted) == 0;
  pm_validate_ctx_t vc;
  memset(&vc, 0, sizeof vc);
  vc.session = session_id;
  vc.last_seen_l1_block = (uint64_t)eth_client_last_block(oc->eth);
  vc.last_initialized_round = eth_client_last_initialized_round(oc->eth);
  /* spec §3.1 step 3 asks about the payment's recipient; step C1 then about it being us */
  vc.recipient_inactive = !eth_client_is_active(oc->eth, pay.params.recipient);
  vc.sender_info = &si;
  vc.quoted_price = have_quote ? &quoted : NULL;
  vc.charging = have_quote ? quoted.price_per_unit > 0 : base_price(oc, sender)->price_per_unit > 0;
  pm_payment_result_t res;
  rc = pm_recipient_process_payment(oc->rcp, oc->bal, &pay, &vc, &res);
  free(ts);
  if (rc) snprintf(err, errlen, "%s", res.err);
  if (res.n_winners || res.n_nonces) {
    char hex[PM_ADDR_HEX_LEN];
    pm_addr_to_hex(pay.sender, hex);
    for (size_t i = 0; i < res.n_winners; i++) {
      char sig[2 * PM_SIG_LEN + 1];
      lp_hex_encode(res.winners[i].sig, PM_SIG_LEN, sig);
      LOGI("Received winning ticket sender=%s manifestID=%s nonce=%u sig=0x%s", hex, session_id,
           res.winners[i].ticket.sender_nonce, sig);
    }
    if (batch_add(oc, &res)) {
      /* nothing durable: refuse rather than take money that a crash could lose */
      pm_payment_result_free(&res);
      snprintf(err, errlen, "could not store payment");
      return LP_EIO;
    }
    commit_kick(oc);
  }
  pm_payment_result_free(&res);
  return rc;
}

static int oc_flush(void *ctx, void (*done)(void *arg, int status), void *arg) {
  orch_onchain_t *oc = ctx;
  if (oc->commits_done >= oc->commits_started) return 0;
  waiter_t *wt = calloc(1, sizeof *wt);
  if (!wt) return LP_ENOMEM;
  wt->target = oc->commits_started;
  wt->done = done;
  wt->arg = arg;
  wt->next = oc->flush_waiters;
  oc->flush_waiters = wt;
  return LP_EAGAIN;
}

static bool oc_sufficient(void *ctx, const Net__Payment *p, const uint8_t sender[20],
                          const char *session_id) {
  orch_onchain_t *oc = ctx;
  pm_price_t price = {0, 1};
  if (p->expected_price) {
    price.price_per_unit = p->expected_price->priceperunit;
    price.pixels_per_unit = p->expected_price->pixelsperunit;
  }
  const char *err = NULL;
  return pm_balances_gate(oc->bal, sender, session_id, p->expected_price ? &price : NULL, &oc->ev,
                          &err) == 0;
}

static void oc_debit(void *ctx, const uint8_t sender[20], const char *session_id,
                     const Net__PriceInfo *price, int64_t pixels) {
  orch_onchain_t *oc = ctx;
  if (!price || price->pixelsperunit == 0 || pixels <= 0) return;
  pm_price_t p = {price->priceperunit, price->pixelsperunit};
  if (pm_balances_debit(oc->bal, sender, session_id, &p, (uint64_t)pixels)) return;
  char bal[256] = "";
  char hex[PM_ADDR_HEX_LEN];
  pm_balances_get(oc->bal, sender, session_id, bal, sizeof bal);
  pm_addr_to_hex(sender, hex);
  /* operators and tests read a session's exact balance from this line */
  LOGV(LP_V_DEBUG, "Debited fees sender=%s manifestID=%s pixels=%lld price=%lld/%lld balance=%s",
       hex, session_id, (long long)pixels, (long long)p.price_per_unit,
       (long long)p.pixels_per_unit, bal);
}

/* ---- blocks: nonce expiry and redemption ------------------------------------------------------
 */
static void redeem_done(void *ud, int status, const uint8_t txhash[ETH_HASH_LEN], const char *err) {
  orch_onchain_t *oc = ud;
  pm_winning_ticket_t *w = &oc->pending[oc->next_pending++];
  char hex[PM_ADDR_HEX_LEN];
  pm_addr_to_hex(w->ticket.sender, hex);
  bool final = status == 0 || status == LP_EEXIST || status == LP_EPROTO;
  if (status == 0) {
    char tx[2 * ETH_HASH_LEN + 1];
    lp_hex_encode(txhash, ETH_HASH_LEN, tx);
    LOGI("Redeemed winning ticket sender=%s nonce=%u txHash=0x%s", hex, w->ticket.sender_nonce, tx);
  } else if (status != LP_ECANCELED) {
    LOGW("Winning ticket redemption %s sender=%s nonce=%u err=%s",
         final ? "failed for good" : "will be retried", hex, w->ticket.sender_nonce,
         err ? err : lp_strerror(status));
  }
  if (final && !oc->closing) {
    work_t *m = calloc(1, sizeof *m);
    if (m) {
      m->kind = W_MARK;
      memcpy(m->sig, w->sig, PM_SIG_LEN);
      if (status == 0) memcpy(m->txhash, txhash, ETH_HASH_LEN);
      if (work_queue(oc, m)) free(m);
    }
    eth_client_sender_forget(oc->eth, w->ticket.sender);
  }
  if (oc->closing) return;
  redeem_next(oc);
}

static void redeem_next(orch_onchain_t *oc) {
  while (!oc->closing && oc->next_pending < oc->n_pending) {
    pm_winning_ticket_t *w = &oc->pending[oc->next_pending];
    /* go's queue: redeem once the params expired, while creationRound >= LIR - 2; tickets out
     * of the window stay stored and are never sent. A ticket the contract already calls expired
     * comes back as a final outcome, so it is not retried every block as in go. */
    bool due = (int64_t)w->params_expiration_block <= oc->redeem_block;
    bool in_window = w->ticket.creation_round >= oc->redeem_lir - TICKET_VALIDITY_ROUNDS;
    if (due && in_window &&
        eth_client_redeem(oc->eth, &w->ticket, w->sig, PM_SIG_LEN, &w->recipient_rand, redeem_done,
                          oc) == 0)
      return;
    oc->next_pending++;
  }
  free(oc->pending);
  oc->pending = NULL;
  oc->n_pending = oc->next_pending = 0;
  oc->redeeming = false;
  if (oc->redeem_again && !oc->closing) {
    oc->redeem_again = false;
    work_t *w = calloc(1, sizeof *w);
    if (w) {
      w->kind = W_LOAD;
      oc->redeeming = true;
      if (work_queue(oc, w)) {
        free(w);
        oc->redeeming = false;
      }
    }
  }
}

static void on_block(void *ud, int64_t l1_block, int64_t lir) {
  orch_onchain_t *oc = ud;
  if (oc->closing) return;
  oc->redeem_block = l1_block;
  oc->redeem_lir = lir;
  if (pm_recipient_expire_nonces(oc->rcp, (uint64_t)l1_block) > 0) {
    work_t *w = calloc(1, sizeof *w);
    if (w) {
      w->kind = W_EXPIRE;
      w->block = (uint64_t)l1_block;
      if (work_queue(oc, w)) free(w);
    }
  }
  if (oc->redeeming) {
    oc->redeem_again = true;
    return;
  }
  work_t *w = calloc(1, sizeof *w);
  if (!w) return;
  w->kind = W_LOAD;
  oc->redeeming = true;
  if (work_queue(oc, w)) {
    free(w);
    oc->redeeming = false;
  }
}

static void bal_tick(uv_timer_t *t) {
  orch_onchain_t *oc = t->data;
  pm_balances_expire(oc->bal, lp_now_ms());
}

/* ---- lifetime ---------------------------------------------------------------------------------
 */
bool orch_onchain_wanted(const lp_config_t *cfg) {
  return cfg->network && cfg->network[0] && strcmp(cfg->network, "offchain") != 0;
}

static void restore_nonce(void *ud, const pm_nonce_rec_t *rec) {
  orch_onchain_t *oc = ud;
  pm_recipient_restore_nonce(oc->rcp, rec);
}

static void oc_really_free(orch_onchain_t *oc) {
  while (oc->flush_waiters) {
    waiter_t *wt = oc->flush_waiters;
    oc->flush_waiters = wt->next;
    free(wt);
  }
  while (oc->prepare_waiters) {
    waiter_t *wt = oc->prepare_waiters;
    oc->prepare_waiters = wt->next;
    free(wt);
  }
  free(oc->pending);
  free(oc->b_winners);
  free(oc->b_nonces);
  free(oc->gw);
  pm_recipient_free(oc->rcp);
  pm_balances_free(oc->bal);
  pm_store_close(oc->store);
  eth_account_wipe(&oc->acct);
  free(oc);
}

static void oc_maybe_release(orch_onchain_t *oc) {
  if (oc->closing && oc->works == 0 && oc->timer_closed) oc_really_free(oc);
}

static void timer_closed(uv_handle_t *h) {
  orch_onchain_t *oc = h->data;
  oc->timer_closed = true;
  oc_maybe_release(oc);
}

int orch_onchain_open(uv_loop_t *loop, const lp_config_t *cfg, orch_payments_t *pay,
                      orch_onchain_t **out) {
  /* go-livepeer panics here too: an orchestrator must not work for free by accident */
  if (!cfg->price_per_unit || !cfg->price_per_unit[0]) {
    LOGE("-pricePerUnit must be set");
    return LP_EINVAL;
  }
  orch_onchain_t *oc = calloc(1, sizeof *oc);
  if (!oc) return LP_ENOMEM;
  oc->loop = loop;
  int rc = LP_EINVAL;
  if (parse_i64(cfg->price_per_unit, &oc->base.price_per_unit) || oc->base.price_per_unit < 0) {
    LOGE("-pricePerUnit must be a non-negative integer (wei), provided %s", cfg->price_per_unit);
    goto fail;
  }
  const char *ppu = cfg->pixels_per_unit && cfg->pixels_per_unit[0] ? cfg->pixels_per_unit : "1";
  if (parse_i64(ppu, &oc->base.pixels_per_unit)) {
    LOGE("-pixelsPerUnit must be a valid integer, provided %s", ppu);
    goto fail;
  }
  if (oc->base.pixels_per_unit <= 0) {
    LOGE("-pixelsPerUnit must be > 0, provided %s", ppu);
    goto fail;
  }
  if (parse_u256(cfg->ticket_ev && cfg->ticket_ev[0] ? cfg->ticket_ev : "8000000000", &oc->ev) ||
      pm_u256_is_zero(&oc->ev)) {
    LOGE("-ticketEV must be a positive integer (wei), provided %s", cfg->ticket_ev);
    goto fail;
  }
  if (parse_u256(cfg->max_face_value, &oc->max_fv)) {
    LOGE("-maxFaceValue must be an integer (wei), provided %s", cfg->max_face_value);
    goto fail;
  }
  if ((rc = parse_gateway_prices(oc, cfg->price_per_gateway))) goto fail;
  oc->auto_adjust = cfg->auto_adjust_price;

  char err[512];
  if ((rc = eth_node_open(loop, cfg, &oc->acct, &oc->net, &oc->eth, err, sizeof err))) {
    LOGE("Orchestrator: %s", err);
    goto fail;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", cfg->datadir ? cfg->datadir : ".", STORE_FILE);
  uint8_t secret[32];
  if ((rc = pm_store_open(path, &oc->store)) || (rc = pm_store_secret(oc->store, secret))) {
    LOGE("Orchestrator: cannot open the payment store %s: %s", path, lp_strerror(rc));
    goto fail;
  }
  oc->rcp = pm_recipient_new(oc->acct.addr, secret, &oc->ev);
  memset(secret, 0, sizeof secret);
  oc->bal = pm_balances_new(BALANCE_TTL_MS);
  if (!oc->rcp || !oc->bal) {
    rc = LP_ENOMEM;
    goto fail;
  }
  /* Params issued before a restart carry on; their nonces come back with them. */
  uint64_t block = (uint64_t)eth_client_last_block(oc->eth);
  if ((rc = pm_store_load_nonces(oc->store, block, restore_nonce, oc))) {
    LOGE("Orchestrator: cannot read stored nonces: %s", lp_strerror(rc));
    goto fail;
  }
  pm_winning_ticket_t *pend = NULL;
  size_t n_pend = 0;
  if (pm_store_pending_winners(oc->store, &pend, &n_pend) == 0) free(pend);
  char hex[PM_ADDR_HEX_LEN];
  pm_addr_to_hex(oc->acct.addr, hex);
  LOGI("Payments on chain recipient=%s pricePerUnit=%lld pixelsPerUnit=%lld ticketEV=%s "
       "nonceSets=%zu winningTicketsToRedeem=%zu store=%s",
       hex, (long long)oc->base.price_per_unit, (long long)oc->base.pixels_per_unit,
       cfg->ticket_ev ? cfg->ticket_ev : "", pm_recipient_nonce_sets(oc->rcp), n_pend, path);
  if (!eth_client_recipient_active(oc->eth))
    LOGW("Orchestrator %s is not active in round %lld: payments will be refused", hex,
         (long long)eth_client_last_initialized_round(oc->eth));
  eth_client_on_block(oc->eth, on_block, oc);
  if ((rc = eth_client_start(oc->eth))) {
    LOGE("Orchestrator: cannot start block polling: %s", lp_strerror(rc));
    goto fail;
  }
  uv_timer_init(loop, &oc->bal_timer);
  oc->bal_timer.data = oc;
  uv_timer_start(&oc->bal_timer, bal_tick, 60000, 60000);

  memset(pay, 0, sizeof *pay);
  pay->ctx = oc;
  memcpy(pay->address, oc->acct.addr, sizeof pay->address);
  pay->verify_sig = oc_verify;
  pay->sign_msg = oc_sign_msg;
  pay->sign_hash = oc_sign_hash;
  pay->fill_info = oc_fill_info;
  pay->process_payment = oc_process_payment;
  pay->sufficient_balance = oc_sufficient;
  pay->debit_fees = oc_debit;
  pay->prepare = oc_prepare;
  pay->flush = oc_flush;
  *out = oc;
  return 0;
fail:
  if (oc->eth) eth_client_free(oc->eth);
  oc->eth = NULL;
  oc_really_free(oc);
  return rc ? rc : LP_EINVAL;
}

void orch_onchain_free(orch_onchain_t *oc) {
  if (!oc) return;
  oc->closing = true;
  /* what was accepted last still gets stored; the memory waits for it */
  commit_kick(oc);
  /* cancels a redemption in flight: its callback sees closing */
  eth_client_free(oc->eth);
  oc->eth = NULL;
  uv_timer_stop(&oc->bal_timer);
  uv_close((uv_handle_t *)&oc->bal_timer, timer_closed);
}
