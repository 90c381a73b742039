/* Arithmetic and JSON-RPC quantities on pm_u256_t (32 big-endian bytes, the EVM word layout).
 * Addition and subtraction are done bytewise; multiplication and division go through OpenSSL
 * BIGNUM. */
#include "lpod/eth.h"

#include <string.h>

#include <openssl/bn.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int eth_u256_from_hex(const char *s, pm_u256_t *out) {
  if (!s || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return LP_EINVAL;
  s += 2;
  size_t n = strlen(s);
  if (n == 0) return LP_EINVAL;
  while (n > 1 && *s == '0') s++, n--;
  if (n > 64) return LP_ERANGE;
  pm_u256_t v;
  memset(&v, 0, sizeof v);
  for (size_t i = 0; i < n; i++) {
    int d = hexval(s[n - 1 - i]);
    if (d < 0) return LP_EINVAL;
    v.b[31 - i / 2] |= (uint8_t)(d << (4 * (i & 1)));
  }
  *out = v;
  return 0;
}

void eth_u256_to_quantity(const pm_u256_t *v, char *out) {
  static const char hx[] = "0123456789abcdef";
  const uint8_t *p;
  size_t n = pm_u256_min_bytes(v, &p);
  char *o = out;
  *o++ = '0';
  *o++ = 'x';
  if (n == 0) {
    *o++ = '0';
  } else {
    if (p[0] >= 0x10) *o++ = hx[p[0] >> 4];
    *o++ = hx[p[0] & 15];
    for (size_t i = 1; i < n; i++) {
      *o++ = hx[p[i] >> 4];
      *o++ = hx[p[i] & 15];
    }
  }
  *o = 0;
}

int eth_u256_add(pm_u256_t *out, const pm_u256_t *a, const pm_u256_t *b) {
  pm_u256_t r;
  unsigned carry = 0;
  for (int i = 31; i >= 0; i--) {
    unsigned x = (unsigned)a->b[i] + b->b[i] + carry;
    r.b[i] = (uint8_t)x;
    carry = x >> 8;
  }
  if (carry) return LP_ERANGE;
  *out = r;
  return 0;
}

int eth_u256_sub(pm_u256_t *out, const pm_u256_t *a, const pm_u256_t *b) {
  if (pm_u256_cmp(a, b) < 0) return LP_ERANGE;
  pm_u256_t r;
  int borrow = 0;
  for (int i = 31; i >= 0; i--) {
    int x = (int)a->b[i] - b->b[i] - borrow;
    borrow = x < 0;
    r.b[i] = (uint8_t)(x + (borrow ? 256 : 0));
  }
  *out = r;
  return 0;
}

typedef int (*bn_op)(BIGNUM *r, const BIGNUM *a, const BIGNUM *b, BN_CTX *ctx);

static int bn_div_quot(BIGNUM *r, const BIGNUM *a, const BIGNUM *b, BN_CTX *ctx) {
  return BN_div(r, NULL, a, b, ctx);
}

static int bn_apply(bn_op op, pm_u256_t *out, const pm_u256_t *a, const pm_u256_t *b) {
  BN_CTX *ctx = BN_CTX_new();
  if (!ctx) return LP_ENOMEM;
  BN_CTX_start(ctx);
  BIGNUM *x = BN_CTX_get(ctx), *y = BN_CTX_get(ctx), *r = BN_CTX_get(ctx);
  int rc = LP_ENOMEM;
  if (r && BN_bin2bn(a->b, 32, x) && BN_bin2bn(b->b, 32, y) && op(r, x, y, ctx)) {
    rc = BN_num_bytes(r) > 32 ? LP_ERANGE : 0;
    if (!rc && BN_bn2binpad(r, out->b, 32) != 32) rc = LP_ENOMEM;
  }
  BN_CTX_end(ctx);
  BN_CTX_free(ctx);
  return rc;
}

int eth_u256_mul(pm_u256_t *out, const pm_u256_t *a, const pm_u256_t *b) {
  return bn_apply(BN_mul, out, a, b);
}

int eth_u256_div(pm_u256_t *quot, const pm_u256_t *a, const pm_u256_t *b) {
  if (pm_u256_is_zero(b)) return LP_EINVAL;
  return bn_apply(bn_div_quot, quot, a, b);
}
