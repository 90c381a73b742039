/* Recursive Length Prefix, the serialization of Ethereum transactions. */
#include "lpod/eth.h"

#include <string.h>

static size_t be_len(uint64_t v, uint8_t out[8]) {
  size_t n = 0;
  uint8_t tmp[8];
  while (v) {
    tmp[n++] = (uint8_t)v;
    v >>= 8;
  }
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

static size_t header(uint8_t hdr[9], uint8_t short_base, size_t len) {
  if (len <= 55) {
    hdr[0] = (uint8_t)(short_base + len);
    return 1;
  }
  size_t n = be_len(len, hdr + 1);
  hdr[0] = (uint8_t)(short_base + 55 + n);
  return n + 1;
}

int eth_rlp_put_bytes(lp_buf_t *b, const void *p, size_t n) {
  const uint8_t *s = p;
  if (n == 1 && s[0] < 0x80) return lp_buf_append(b, s, 1);
  uint8_t hdr[9];
  size_t h = header(hdr, 0x80, n);
  int rc = lp_buf_append(b, hdr, h);
  if (!rc && n) rc = lp_buf_append(b, s, n);
  return rc;
}

int eth_rlp_put_uint(lp_buf_t *b, const pm_u256_t *v) {
  const uint8_t *p;
  size_t n = pm_u256_min_bytes(v, &p);
  return eth_rlp_put_bytes(b, p, n);
}

int eth_rlp_put_u64(lp_buf_t *b, uint64_t v) {
  uint8_t tmp[8];
  size_t n = be_len(v, tmp);
  return eth_rlp_put_bytes(b, tmp, n);
}

int eth_rlp_end_list(lp_buf_t *b, size_t start) {
  if (start > b->len) return LP_EINVAL;
  uint8_t hdr[9];
  size_t payload = b->len - start;
  size_t h = header(hdr, 0xc0, payload);
  int rc = lp_buf_reserve(b, h);
  if (rc) return rc;
  memmove(b->data + start + h, b->data + start, payload);
  memcpy(b->data + start, hdr, h);
  b->len += h;
  return 0;
}

static int read_len(const uint8_t *p, size_t avail, size_t nbytes, size_t *out) {
  if (nbytes == 0 || nbytes > 8 || nbytes > avail) return LP_EPROTO;
  if (p[0] == 0) return LP_EPROTO;
  uint64_t v = 0;
  for (size_t i = 0; i < nbytes; i++) v = (v << 8) | p[i];
  if (v <= 55) return LP_EPROTO;
  *out = (size_t)v;
  return 0;
}

int eth_rlp_next(const uint8_t **pp, size_t *plen, eth_rlp_item_t *item) {
  const uint8_t *p = *pp;
  size_t len = *plen;
  if (len == 0) return LP_EPROTO;
  uint8_t t = p[0];
  size_t hdr, n;
  if (t < 0x80) {
    item->is_list = false;
    item->p = p;
    item->len = 1;
    *pp = p + 1;
    *plen = len - 1;
    return 0;
  }
  if (t <= 0xb7) {
    hdr = 1;
    n = t - 0x80u;
    item->is_list = false;
  } else if (t < 0xc0) {
    hdr = 1 + (t - 0xb7u);
    if (read_len(p + 1, len - 1, t - 0xb7u, &n)) return LP_EPROTO;
    item->is_list = false;
  } else if (t <= 0xf7) {
    hdr = 1;
    n = t - 0xc0u;
    item->is_list = true;
  } else {
    hdr = 1 + (t - 0xf7u);
    if (read_len(p + 1, len - 1, t - 0xf7u, &n)) return LP_EPROTO;
    item->is_list = true;
  }
  if (hdr > len || n > len - hdr) return LP_EPROTO;
  /* A single byte below 0x80 has exactly one encoding: itself. */
  if (!item->is_list && n == 1 && hdr == 1 && p[1] < 0x80) return LP_EPROTO;
  item->p = p + hdr;
  item->len = n;
  *pp = p + hdr + n;
  *plen = len - hdr - n;
  return 0;
}
