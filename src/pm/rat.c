/* Exact rationals on OpenSSL BIGNUMs, the counterpart of go's big.Rat for balances. */
#include "pm_internal.h"

#include "lpod/core.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

int pm_rat_init(pm_rat_t *r) {
  r->num = BN_new();
  r->den = BN_new();
  if (!r->num || !r->den || !BN_one(r->den)) {
    pm_rat_deinit(r);
    return LP_ENOMEM;
  }
  BN_zero(r->num);
  return 0;
}

void pm_rat_deinit(pm_rat_t *r) {
  BN_free(r->num);
  BN_free(r->den);
  r->num = r->den = NULL;
}

/* OpenSSL 3's BN_gcd is constant time and costs tens of microseconds on these sizes, more than
 * the rest of a ticket's validation. Sums are therefore kept unreduced over a common
 * denominator (2^256 - 1 times the price denominators seen) and reduced only for display, or
 * when the denominator has grown past DEN_MAX_BITS. */
#define DEN_MAX_BITS 1024

static int rat_reduce(pm_rat_t *r, BN_CTX *ctx) {
  if (BN_is_zero(r->num)) return BN_one(r->den) ? 0 : LP_ENOMEM;
  BN_CTX_start(ctx);
  BIGNUM *g = BN_CTX_get(ctx);
  int ok = g && BN_gcd(g, r->num, r->den, ctx);
  if (ok && !BN_is_one(g))
    ok = BN_div(r->num, NULL, r->num, g, ctx) && BN_div(r->den, NULL, r->den, g, ctx);
  BN_CTX_end(ctx);
  return ok ? 0 : LP_ENOMEM;
}

static int rat_bound(pm_rat_t *r, BN_CTX *ctx) {
  return BN_num_bits(r->den) > DEN_MAX_BITS ? rat_reduce(r, ctx) : 0;
}

int pm_rat_set_ev(pm_rat_t *r, const pm_u256_t *face_value, const pm_u256_t *win_prob) {
  BN_CTX *ctx = BN_CTX_new();
  BIGNUM *fv = pm_bn_from_u256(face_value), *wp = pm_bn_from_u256(win_prob);
  BIGNUM *m = pm_bn_max_win_prob();
  int ok = ctx && fv && wp && m && BN_mul(r->num, fv, wp, ctx) && BN_copy(r->den, m);
  BN_free(fv);
  BN_free(wp);
  BN_free(m);
  BN_CTX_free(ctx);
  return ok ? 0 : LP_ENOMEM;
}

/* If d divides n, sets q = n / d and returns 1. */
static int divides(BIGNUM *q, const BIGNUM *n, const BIGNUM *d, BN_CTX *ctx) {
  BN_CTX_start(ctx);
  BIGNUM *rem = BN_CTX_get(ctx);
  int ok = rem && BN_div(q, rem, n, d, ctx) && BN_is_zero(rem);
  BN_CTX_end(ctx);
  return ok;
}

int pm_rat_add(pm_rat_t *r, const pm_rat_t *a, BN_CTX *ctx) {
  BN_CTX_start(ctx);
  BIGNUM *t = BN_CTX_get(ctx), *k = BN_CTX_get(ctx);
  int ok;
  if (!k) {
    ok = 0;
  } else if (BN_cmp(r->den, a->den) == 0) {
    ok = BN_add(r->num, r->num, a->num);
  } else if (divides(k, r->den, a->den, ctx)) {
    ok = BN_mul(t, a->num, k, ctx) && BN_add(r->num, r->num, t);
  } else if (divides(k, a->den, r->den, ctx)) {
    ok =
        BN_mul(r->num, r->num, k, ctx) && BN_copy(r->den, a->den) && BN_add(r->num, r->num, a->num);
  } else {
    ok = BN_mul(r->num, r->num, a->den, ctx) && BN_mul(t, a->num, r->den, ctx) &&
         BN_add(r->num, r->num, t) && BN_mul(r->den, r->den, a->den, ctx);
  }
  BN_CTX_end(ctx);
  return ok ? rat_bound(r, ctx) : LP_ENOMEM;
}

int pm_rat_sub_price(pm_rat_t *r, const pm_price_t *price, uint64_t pixels, BN_CTX *ctx) {
  uint64_t pn, pd;
  bool neg;
  if (pm_price_reduce(price, &pn, &pd, &neg) != 0) return LP_EINVAL;
  BN_CTX_start(ctx);
  BIGNUM *fee = BN_CTX_get(ctx), *t = BN_CTX_get(ctx);
  int ok = t && BN_set_word(fee, pn) && BN_set_word(t, pixels) && BN_mul(fee, fee, t, ctx);
  if (ok) {
    /* fee = pn * pixels / pd, brought onto r's denominator, widening it only when needed. */
    BN_ULONG rem = BN_mod_word(r->den, (BN_ULONG)pd);
    if (rem == (BN_ULONG)-1) {
      ok = 0;
    } else if (rem == 0) {
      ok = BN_copy(t, r->den) && BN_div_word(t, (BN_ULONG)pd) != (BN_ULONG)-1 &&
           BN_mul(fee, fee, t, ctx);
    } else {
      ok = BN_mul(fee, fee, r->den, ctx) && BN_mul_word(r->num, (BN_ULONG)pd) &&
           BN_mul_word(r->den, (BN_ULONG)pd);
    }
  }
  if (ok) {
    BN_set_negative(fee, neg);
    ok = BN_sub(r->num, r->num, fee);
  }
  BN_CTX_end(ctx);
  return ok ? rat_bound(r, ctx) : LP_ENOMEM;
}

int pm_rat_cmp_u256(const pm_rat_t *r, const pm_u256_t *v, BN_CTX *ctx) {
  BN_CTX_start(ctx);
  BIGNUM *t = BN_CTX_get(ctx);
  int c = 0;
  if (t && BN_bin2bn(v->b, 32, t) && BN_mul(t, t, r->den, ctx)) c = BN_cmp(r->num, t);
  BN_CTX_end(ctx);
  return (c > 0) - (c < 0);
}

int pm_rat_to_string(const pm_rat_t *r, char *out, size_t out_cap) {
  pm_rat_t c = {BN_dup(r->num), BN_dup(r->den)};
  BN_CTX *ctx = BN_CTX_new();
  char *n = NULL, *d = NULL;
  int rc = LP_ENOMEM;
  if (c.num && c.den && ctx && rat_reduce(&c, ctx) == 0) {
    n = BN_bn2dec(c.num);
    d = BN_bn2dec(c.den);
  }
  if (n && d) {
    int w = snprintf(out, out_cap, "%s/%s", n, d);
    rc = (w < 0 || (size_t)w >= out_cap) ? LP_ERANGE : 0;
  }
  OPENSSL_free(n);
  OPENSSL_free(d);
  BN_CTX_free(ctx);
  pm_rat_deinit(&c);
  return rc;
}
