/* 256-bit unsigned integers in big-endian bytes, and PriceInfo fractions. */
#include "lpod/pm.h"

#include "lpod/core.h"

#include <string.h>

int pm_u256_from_bytes(pm_u256_t *out, const uint8_t *in, size_t len) {
  while (len > 0 && in[0] == 0) {
    in++;
    len--;
  }
  if (len > 32) return LP_ERANGE;
  memset(out->b, 0, 32 - len);
  if (len) memcpy(out->b + 32 - len, in, len);
  return 0;
}

void pm_u256_from_u64(pm_u256_t *out, uint64_t v) {
  memset(out->b, 0, 24);
  for (int i = 0; i < 8; i++) out->b[31 - i] = (uint8_t)(v >> (8 * i));
}

size_t pm_u256_min_bytes(const pm_u256_t *v, const uint8_t **p) {
  size_t i = 0;
  while (i < 32 && v->b[i] == 0) i++;
  *p = v->b + i;
  return 32 - i;
}

int pm_u256_cmp(const pm_u256_t *a, const pm_u256_t *b) {
  int c = memcmp(a->b, b->b, 32);
  return (c > 0) - (c < 0);
}

bool pm_u256_is_zero(const pm_u256_t *v) {
  for (int i = 0; i < 32; i++)
    if (v->b[i]) return false;
  return true;
}

int pm_u256_to_u64(const pm_u256_t *v, uint64_t *out) {
  for (int i = 0; i < 24; i++)
    if (v->b[i]) return LP_ERANGE;
  uint64_t x = 0;
  for (int i = 24; i < 32; i++) x = (x << 8) | v->b[i];
  *out = x;
  return 0;
}

/* Schoolbook division of the big-endian number by 10, in place; returns the remainder. */
static unsigned divmod10(uint8_t n[32]) {
  unsigned rem = 0;
  for (int i = 0; i < 32; i++) {
    unsigned cur = rem * 256 + n[i];
    n[i] = (uint8_t)(cur / 10);
    rem = cur % 10;
  }
  return rem;
}

void pm_u256_to_dec(const pm_u256_t *v, char out[79]) {
  uint8_t n[32];
  char tmp[79];
  size_t len = 0;
  memcpy(n, v->b, 32);
  do {
    tmp[len++] = (char)('0' + divmod10(n));
  } while (!pm_u256_is_zero((const pm_u256_t *)n));
  for (size_t i = 0; i < len; i++) out[i] = tmp[len - 1 - i];
  out[len] = '\0';
}

int pm_u256_from_dec(pm_u256_t *out, const char *s) {
  if (!s || !*s) return LP_EINVAL;
  uint8_t n[32] = {0};
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return LP_EINVAL;
    unsigned carry = (unsigned)(*s - '0');
    for (int i = 31; i >= 0; i--) {
      unsigned cur = n[i] * 10u + carry;
      n[i] = (uint8_t)cur;
      carry = cur >> 8;
    }
    if (carry) return LP_ERANGE;
  }
  memcpy(out->b, n, 32);
  return 0;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b) {
  while (b) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static uint64_t abs_i64(int64_t v) { return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v; }

int pm_price_reduce(const pm_price_t *p, uint64_t *num_abs, uint64_t *den, bool *negative) {
  if (p->pixels_per_unit == 0) return LP_EINVAL;
  uint64_t n = abs_i64(p->price_per_unit), d = abs_i64(p->pixels_per_unit);
  uint64_t g = n ? gcd_u64(n, d) : d;
  *num_abs = n / g;
  *den = d / g;
  *negative = n != 0 && ((p->price_per_unit < 0) != (p->pixels_per_unit < 0));
  return 0;
}

int pm_price_cmp(const pm_price_t *a, const pm_price_t *b) {
  /* a/b vs c/d with positive denominators: compare a*d with c*b in 128 bits. */
  __int128 an = a->price_per_unit, ad = a->pixels_per_unit;
  __int128 bn = b->price_per_unit, bd = b->pixels_per_unit;
  if (ad < 0) an = -an, ad = -ad;
  if (bd < 0) bn = -bn, bd = -bd;
  __int128 l = an * bd, r = bn * ad;
  return (l > r) - (l < r);
}
