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

int pm_rat_set_ev(pm_rat_t *r, const pm_u256_t *face_value, const pm_u256_t *win_prob) {
  BN_CTX *ctx = BN_CTX_new();
  BIGNUM *fv = pm_bn_from_u256(face_value), *wp = pm_bn_from_u256(win_prob);
  BIGNUM *m = pm_bn_max_win_prob();
  int rc = LP_ENOMEM;
  if (ctx && fv && wp && m && BN_mul(r->num, fv, wp, ctx) && BN_copy(r->den, m))
    rc = rat_reduce(r, ctx);
  BN_free(fv);
  BN_free(wp);
  BN_free(m);
  BN_CTX_free(ctx);
  return rc;
}

int pm_rat_add(pm_rat_t *r, const pm_rat_t *a, BN_CTX *ctx) {
  int ok;
  if (BN_cmp(r->den, a->den) == 0) {
    /* Every ticket EV shares the denominator 2^256 - 1: skip the cross products then. */
    ok = BN_add(r->num, r->num, a->num);
  } else {
    BN_CTX_start(ctx);
    BIGNUM *t = BN_CTX_get(ctx);
    ok = t && BN_mul(r->num, r->num, a->den, ctx) && BN_mul(t, a->num, r->den, ctx) &&
         BN_add(r->num, r->num, t) && BN_mul(r->den, r->den, a->den, ctx);
    BN_CTX_end(ctx);
  }
  return ok ? rat_reduce(r, ctx) : LP_ENOMEM;
}

int pm_rat_sub_price(pm_rat_t *r, const pm_price_t *price, uint64_t pixels, BN_CTX *ctx) {
  uint64_t pn, pd;
  bool neg;
  if (pm_price_reduce(price, &pn, &pd, &neg) != 0) return LP_EINVAL;
  BN_CTX_start(ctx);
  BIGNUM *fee = BN_CTX_get(ctx), *t = BN_CTX_get(ctx), *d = BN_CTX_get(ctx);
  /* r - (pn * pixels)/pd = (num * pd - pn * pixels * den) / (den * pd) */
  int ok = d && BN_set_word(fee, pn) && BN_set_word(t, pixels) && BN_mul(fee, fee, t, ctx) &&
           BN_set_word(d, pd) && BN_mul(fee, fee, r->den, ctx) && BN_mul(r->num, r->num, d, ctx) &&
           BN_mul(r->den, r->den, d, ctx);
  if (ok) {
    BN_set_negative(fee, neg);
    ok = BN_sub(r->num, r->num, fee);
  }
  BN_CTX_end(ctx);
  return ok ? rat_reduce(r, ctx) : LP_ENOMEM;
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
  char *n = BN_bn2dec(r->num), *d = BN_bn2dec(r->den);
  int rc = LP_ENOMEM;
  if (n && d) {
    int w = snprintf(out, out_cap, "%s/%s", n, d);
    rc = (w < 0 || (size_t)w >= out_cap) ? LP_ERANGE : 0;
  }
  OPENSSL_free(n);
  OPENSSL_free(d);
  return rc;
}
