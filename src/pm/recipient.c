/* The recipient: issues ticket params and validates incoming tickets in go-livepeer's order
 * (core/orchestrator.go ProcessPayment, pm/recipient.go ReceiveTicket). */
#include "lpod/pm.h"

#include "lpod/core.h"
#include "pm_internal.h"

#include <openssl/rand.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nonces seen for one recipientRand (one params set), go's senderNonces map entry. */
typedef struct nonce_set {
  pm_u256_t rand;
  uint64_t expiration_block;
  uint32_t *nonces;
  size_t n, cap;
} nonce_set_t;

struct pm_recipient {
  uint8_t addr[PM_ADDR_LEN];
  uint8_t secret[32];
  pm_u256_t ev;
  /* Open addressing keyed by recipientRand, an HMAC output and so already uniformly spread. */
  nonce_set_t **sets;
  size_t n_sets, cap_sets;
};

pm_recipient_t *pm_recipient_new(const uint8_t addr[PM_ADDR_LEN], const uint8_t secret[32],
                                 const pm_u256_t *ev) {
  pm_recipient_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  memcpy(r->addr, addr, PM_ADDR_LEN);
  memcpy(r->secret, secret, 32);
  r->ev = *ev;
  r->cap_sets = 64;
  r->sets = calloc(r->cap_sets, sizeof *r->sets);
  if (!r->sets) {
    free(r);
    return NULL;
  }
  return r;
}

static void set_free(nonce_set_t *s) {
  if (!s) return;
  free(s->nonces);
  free(s);
}

void pm_recipient_free(pm_recipient_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->cap_sets; i++) set_free(r->sets[i]);
  free(r->sets);
  OPENSSL_cleanse(r->secret, sizeof r->secret);
  free(r);
}

const uint8_t *pm_recipient_addr(const pm_recipient_t *r) { return r->addr; }

size_t pm_recipient_nonce_sets(const pm_recipient_t *r) { return r->n_sets; }

static size_t slot_of(const pm_u256_t *rand, size_t cap) {
  uint64_t h = 0;
  for (int i = 0; i < 8; i++) h = (h << 8) | rand->b[24 + i];
  return (size_t)(h & (cap - 1));
}

static nonce_set_t *set_find(pm_recipient_t *r, const pm_u256_t *rand) {
  for (size_t i = slot_of(rand, r->cap_sets);; i = (i + 1) & (r->cap_sets - 1)) {
    nonce_set_t *s = r->sets[i];
    if (!s) return NULL;
    if (memcmp(s->rand.b, rand->b, 32) == 0) return s;
  }
}

static void set_place(nonce_set_t **sets, size_t cap, nonce_set_t *s) {
  size_t i = slot_of(&s->rand, cap);
  while (sets[i]) i = (i + 1) & (cap - 1);
  sets[i] = s;
}

static int sets_resize(pm_recipient_t *r, size_t cap) {
  nonce_set_t **ns = calloc(cap, sizeof *ns);
  if (!ns) return LP_ENOMEM;
  for (size_t i = 0; i < r->cap_sets; i++)
    if (r->sets[i]) set_place(ns, cap, r->sets[i]);
  free(r->sets);
  r->sets = ns;
  r->cap_sets = cap;
  return 0;
}

static nonce_set_t *set_get(pm_recipient_t *r, const pm_u256_t *rand, uint64_t exp_block) {
  nonce_set_t *s = set_find(r, rand);
  if (s) return s;
  if ((r->n_sets + 1) * 2 > r->cap_sets && sets_resize(r, r->cap_sets * 2) != 0) return NULL;
  s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->rand = *rand;
  s->expiration_block = exp_block;
  set_place(r->sets, r->cap_sets, s);
  r->n_sets++;
  return s;
}

static bool set_has(const nonce_set_t *s, uint32_t nonce) {
  for (size_t i = 0; i < s->n; i++)
    if (s->nonces[i] == nonce) return true;
  return false;
}

static int set_add(nonce_set_t *s, uint32_t nonce) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    if (cap > PM_MAX_SENDER_NONCES) cap = PM_MAX_SENDER_NONCES;
    uint32_t *n = realloc(s->nonces, cap * sizeof *n);
    if (!n) return LP_ENOMEM;
    s->nonces = n;
    s->cap = cap;
  }
  s->nonces[s->n++] = nonce;
  return 0;
}

int pm_recipient_restore_nonce(pm_recipient_t *r, const pm_nonce_rec_t *rec) {
  nonce_set_t *s = set_get(r, &rec->recipient_rand, rec->expiration_block);
  if (!s) return LP_ENOMEM;
  if (set_has(s, rec->nonce) || s->n >= PM_MAX_SENDER_NONCES) return 0;
  return set_add(s, rec->nonce);
}

size_t pm_recipient_expire_nonces(pm_recipient_t *r, uint64_t l1_block) {
  size_t dropped = 0;
  bool any = false;
  for (size_t i = 0; i < r->cap_sets; i++) {
    nonce_set_t *s = r->sets[i];
    if (s && s->expiration_block <= l1_block) {
      set_free(s);
      r->sets[i] = NULL;
      r->n_sets--;
      dropped++;
      any = true;
    }
  }
  /* Deleting from open addressing breaks probe chains: rebuild the table once. */
  if (any) sets_resize(r, r->cap_sets);
  return dropped;
}

int pm_recipient_ticket_params(pm_recipient_t *r, const uint8_t sender[PM_ADDR_LEN],
                               const pm_u256_t *face_value, const pm_price_t *price,
                               const pm_expiration_params_t *exp, uint64_t l1_block,
                               pm_ticket_params_t *out) {
  if (price->pixels_per_unit == 0) return LP_EINVAL;
  /* Round 0 with a zero block hash gives empty auxData, which the TicketBroker cannot redeem. */
  uint8_t aux[PM_AUX_DATA_MAX];
  if (pm_aux_data(exp->creation_round, exp->creation_round_block_hash, aux) == 0) return LP_EINVAL;
  memset(out, 0, sizeof *out);
  memcpy(out->recipient, r->addr, PM_ADDR_LEN);
  out->face_value = *face_value;
  int rc = pm_win_prob(face_value, &r->ev, &out->win_prob);
  if (rc) return rc;
  /* The seed is public; a CSPRNG is more than it needs but costs nothing here. */
  if (RAND_bytes(out->seed.b, 32) != 1) return LP_EIO;
  pm_u256_from_u64(&out->expiration_block, l1_block + PM_PARAMS_EXPIRATION_BLOCKS);
  out->expiration = *exp;
  pm_u256_t rand;
  rc = pm_recipient_rand(r->secret, &out->seed, sender, &out->face_value, &out->win_prob,
                         &out->expiration_block, price, exp, &rand);
  if (rc) return rc;
  pm_rand_hash(&rand, out->recipient_rand_hash);
  return 0;
}

/* ---- ProcessPayment ---------------------------------------------------------------------------*/

void pm_payment_result_free(pm_payment_result_t *res) {
  if (!res) return;
  free(res->winners);
  free(res->nonces);
  res->winners = NULL;
  res->nonces = NULL;
  res->n_winners = res->n_nonces = 0;
}

static int fail(pm_payment_result_t *res, bool fatal, bool bad_request, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(pm_payment_result_t *res, bool fatal, bool bad_request, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(res->err, sizeof res->err, fmt, ap);
  va_end(ap);
  res->fatal = fatal;
  res->bad_request = bad_request;
  return LP_EINVAL;
}

static const char *price_err(const pm_payment_t *p, const pm_validate_ctx_t *ctx, char *buf,
                             size_t cap) {
  if (!p->has_expected_price) return "expected price is nil";
  const pm_price_t *e = &p->expected_price;
  if (e->pixels_per_unit == 0) return "pixels per unit is 0";
  /* go accepts these and then a negative price turns debits into credits (spec §7). */
  if (e->pixels_per_unit < 0) return "pixels per unit is negative";
  if (ctx->charging && e->price_per_unit <= 0) return "price per unit is not positive";
  if (ctx->quoted_price && ctx->quoted_price->pixels_per_unit != 0 &&
      pm_price_cmp(e, ctx->quoted_price) != 0) {
    snprintf(buf, cap,
             "expected price %" PRId64 "/%" PRId64 " is not the quoted price %" PRId64 "/%" PRId64,
             e->price_per_unit, e->pixels_per_unit, ctx->quoted_price->price_per_unit,
             ctx->quoted_price->pixels_per_unit);
    return buf;
  }
  return NULL;
}

static int result_add_winner(pm_payment_result_t *res, size_t max, const pm_ticket_t *t,
                             const uint8_t *sig, const pm_u256_t *rand, uint64_t exp_block) {
  if (!res->winners) {
    res->winners = calloc(max, sizeof *res->winners);
    if (!res->winners) return LP_ENOMEM;
  }
  pm_winning_ticket_t *w = &res->winners[res->n_winners++];
  w->ticket = *t;
  memcpy(w->sig, sig, PM_SIG_LEN);
  w->recipient_rand = *rand;
  w->params_expiration_block = exp_block;
  return 0;
}

int pm_recipient_process_payment(pm_recipient_t *r, pm_balances_t *balances, const pm_payment_t *p,
                                 const pm_validate_ctx_t *ctx, pm_payment_result_t *res) {
  memset(res, 0, sizeof *res);
  char hex[PM_ADDR_HEX_LEN];

  if (p->has_ticket_params && p->sender_len == 0) {
    pm_addr_to_hex(p->params.recipient, hex);
    return fail(res, true, false, "Could not find Sender for payment: ticket_params:{recipient:%s}",
                hex);
  }
  /* No params: nothing to credit. go would fix the session price to 0 here for a sender it
   * already knows; lpod leaves the price alone so that a free first payment cannot pin it. */
  if (!p->has_ticket_params) return 0;

  if (ctx->recipient_inactive) {
    pm_addr_to_hex(p->params.recipient, hex);
    return fail(res, true, false,
                "orchestrator %s is inactive in round %" PRId64 ", cannot process payments", hex,
                ctx->last_initialized_round);
  }
  char pbuf[160];
  const char *perr = price_err(p, ctx, pbuf, sizeof pbuf);
  if (perr)
    return fail(res, true, true, "invalid expected price sent with payment err=\"%s\"", perr);
  /* go dereferences the field without a check and panics; answer 400 instead. */
  if (!p->has_expiration_params)
    return fail(res, true, true, "missing expiration params in payment");

  pm_price_t fixed;
  if (balances && pm_balances_fixed_price(balances, p->sender, ctx->session, &fixed) == LP_ENOENT)
    pm_balances_set_fixed_price(balances, p->sender, ctx->session, &p->expected_price);

  if (p->n_tickets == 0) return 0;

  /* Every ticket of a payment shares the params, so recipientRand, its hash check, the EV and
   * the expiry are worked out once; the per-ticket order of checks is go's. */
  const pm_ticket_params_t *tp = &p->params;
  pm_u256_t rand;
  int rc = pm_recipient_rand(r->secret, &tp->seed, p->sender, &tp->face_value, &tp->win_prob,
                             &tp->expiration_block, &p->expected_price, &p->expiration, &rand);
  if (rc) return fail(res, true, false, "could not compute recipientRand");
  uint8_t rand_hash[PM_HASH_LEN];
  pm_rand_hash(&rand, rand_hash);
  bool rand_ok = memcmp(rand_hash, tp->recipient_rand_hash, PM_HASH_LEN) == 0;
  static const uint8_t zero_addr[PM_ADDR_LEN];
  uint64_t exp_block;
  if (pm_u256_to_u64(&tp->expiration_block, &exp_block) != 0) exp_block = UINT64_MAX;
  bool expired = exp_block <= ctx->last_seen_l1_block;

  pm_ticket_t t;
  memcpy(t.recipient, tp->recipient, PM_ADDR_LEN);
  memcpy(t.sender, p->sender, PM_ADDR_LEN);
  t.face_value = tp->face_value;
  t.win_prob = tp->win_prob;
  memcpy(t.recipient_rand_hash, tp->recipient_rand_hash, PM_HASH_LEN);
  t.creation_round = p->expiration.creation_round;
  memcpy(t.creation_round_block_hash, p->expiration.creation_round_block_hash, PM_HASH_LEN);

  pm_rat_t ev;
  bool have_ev = false;
  const char *receive_err = NULL;
  char receive_buf[PM_ERR_MAX];
  res->nonces = calloc(p->n_tickets, sizeof *res->nonces);
  if (!res->nonces) return fail(res, true, false, "out of memory");

  for (size_t i = 0; i < p->n_tickets; i++) {
    const pm_ticket_sender_params_t *sp = &p->tickets[i];
    t.sender_nonce = sp->sender_nonce;

    /* B: the sender's deposit and reserve must not be about to unlock. */
    if (ctx->sender_info) {
      if (ctx->sender_info->error) {
        pm_addr_to_hex(t.sender, hex);
        rc = fail(res, true, false, "could not get sender info for %s: %s", hex,
                  ctx->sender_info->error);
        goto out;
      }
      int64_t wr = ctx->sender_info->withdraw_round;
      if (wr != 0 && wr <= ctx->last_initialized_round + 1) {
        pm_addr_to_hex(t.sender, hex);
        rc = fail(res, true, false, "deposit and reserve for sender %s is set to unlock soon", hex);
        goto out;
      }
    }
    /* C: the validator. */
    if (memcmp(t.recipient, r->addr, PM_ADDR_LEN) != 0) {
      rc = fail(res, true, false, "invalid ticket recipient");
      goto out;
    }
    if (memcmp(t.sender, zero_addr, PM_ADDR_LEN) == 0) {
      rc = fail(res, true, false, "invalid ticket sender");
      goto out;
    }
    if (!rand_ok) {
      rc = fail(res, true, false, "invalid recipientRand for ticket recipientRandHash");
      goto out;
    }
    uint8_t th[PM_HASH_LEN];
    pm_ticket_hash(&t, th);
    if (!pm_verify_hash(t.sender, th, sp->sig, sp->sig_len)) {
      receive_err = "invalid ticket signature";
      continue;
    }
    /* D: a winner is kept even when the nonce or expiry check below fails, as go does. */
    if (pm_ticket_wins(sp->sig, sp->sig_len, &rand, &t.win_prob)) {
      rc = result_add_winner(res, p->n_tickets, &t, sp->sig, &rand, exp_block);
      if (rc) {
        fail(res, true, false, "out of memory");
        goto out;
      }
    }
    /* E: replay protection per params set. */
    nonce_set_t *set = set_get(r, &rand, exp_block);
    if (!set) {
      rc = fail(res, true, false, "out of memory");
      goto out;
    }
    if (set_has(set, sp->sender_nonce) || set->n >= PM_MAX_SENDER_NONCES) {
      pm_addr_to_hex(t.sender, hex);
      snprintf(receive_buf, sizeof receive_buf,
               "invalid ticket senderNonce: %s sender=%s nonce=%" PRIu32,
               set_has(set, sp->sender_nonce) ? "already seen" : "too many values", hex,
               sp->sender_nonce);
      receive_err = receive_buf;
      continue;
    }
    if (set_add(set, sp->sender_nonce) != 0) {
      rc = fail(res, true, false, "out of memory");
      goto out;
    }
    pm_nonce_rec_t *nr = &res->nonces[res->n_nonces++];
    nr->recipient_rand = rand;
    nr->nonce = sp->sender_nonce;
    nr->expiration_block = exp_block;
    /* F */
    if (expired) {
      receive_err = "TicketParams expired";
      continue;
    }
    /* After any non-fatal error no later ticket of the payment is credited. */
    if (receive_err || !balances) continue;
    if (!have_ev) {
      if (pm_rat_init(&ev) != 0 || pm_rat_set_ev(&ev, &t.face_value, &t.win_prob) != 0) {
        rc = fail(res, true, false, "out of memory");
        goto out;
      }
      have_ev = true;
    }
    if (pm_balances_credit_rat(balances, t.sender, ctx->session, &ev) != 0) {
      rc = fail(res, true, false, "could not credit balance");
      goto out;
    }
    res->credited++;
  }
  rc = 0;
  if (receive_err) {
    snprintf(res->err, sizeof res->err, "%s", receive_err);
    rc = LP_EINVAL;
  }
out:
  if (have_ev) pm_rat_deinit(&ev);
  return rc;
}
