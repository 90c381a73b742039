/* Solidity ABI: head/tail encoding of argument tuples, and bounds-checked decoding of return
 * data by head index. */
#include "lpod/eth.h"
#include "lpod/pm.h"

#include <string.h>

eth_abi_arg_t eth_abi_uint(const pm_u256_t *v) {
  eth_abi_arg_t a = {.kind = ETH_ABI_WORD};
  memcpy(a.word, v->b, 32);
  return a;
}

eth_abi_arg_t eth_abi_u64(uint64_t v) {
  pm_u256_t u;
  pm_u256_from_u64(&u, v);
  return eth_abi_uint(&u);
}

eth_abi_arg_t eth_abi_addr(const uint8_t addr[ETH_ADDR_LEN]) {
  eth_abi_arg_t a = {.kind = ETH_ABI_WORD};
  memcpy(a.word + 12, addr, ETH_ADDR_LEN);
  return a;
}

eth_abi_arg_t eth_abi_b32(const uint8_t h[32]) {
  eth_abi_arg_t a = {.kind = ETH_ABI_WORD};
  memcpy(a.word, h, 32);
  return a;
}

eth_abi_arg_t eth_abi_bool(bool v) { return eth_abi_u64(v ? 1 : 0); }

eth_abi_arg_t eth_abi_bytes(const void *p, size_t n) {
  eth_abi_arg_t a = {.kind = ETH_ABI_BYTES, .data = p, .len = n};
  return a;
}

eth_abi_arg_t eth_abi_tuple(const eth_abi_arg_t *items, size_t n) {
  eth_abi_arg_t a = {.kind = ETH_ABI_TUPLE, .items = items, .n = n};
  return a;
}

eth_abi_arg_t eth_abi_array(const eth_abi_arg_t *items, size_t n) {
  eth_abi_arg_t a = {.kind = ETH_ABI_ARRAY, .items = items, .n = n};
  return a;
}

void eth_abi_selector(const char *signature, uint8_t out[4]) {
  uint8_t h[32];
  pm_keccak256(signature, strlen(signature), h);
  memcpy(out, h, 4);
}

static bool is_dynamic(const eth_abi_arg_t *a) {
  switch (a->kind) {
  case ETH_ABI_WORD: return false;
  case ETH_ABI_BYTES:
  case ETH_ABI_ARRAY: return true;
  case ETH_ABI_TUPLE:
    for (size_t i = 0; i < a->n; i++)
      if (is_dynamic(&a->items[i])) return true;
    return false;
  }
  return true;
}

/* Bytes an argument takes in its enclosing head. */
static size_t head_size(const eth_abi_arg_t *a) {
  if (a->kind == ETH_ABI_TUPLE && !is_dynamic(a)) {
    size_t s = 0;
    for (size_t i = 0; i < a->n; i++) s += head_size(&a->items[i]);
    return s;
  }
  return 32;
}

static int put_word(lp_buf_t *out, size_t at, uint64_t v) {
  pm_u256_t u;
  pm_u256_from_u64(&u, v);
  memcpy(out->data + at, u.b, 32);
  return 0;
}

static int encode_tuple(const eth_abi_arg_t *items, size_t n, lp_buf_t *out, int depth);

static int encode_value(const eth_abi_arg_t *a, lp_buf_t *out, int depth) {
  static const uint8_t zeros[32];
  int rc;
  if (depth > 16) return LP_ERANGE;
  switch (a->kind) {
  case ETH_ABI_WORD: return lp_buf_append(out, a->word, 32);
  case ETH_ABI_BYTES: {
    eth_abi_arg_t len = eth_abi_u64(a->len);
    if ((rc = lp_buf_append(out, len.word, 32))) return rc;
    if (a->len && (rc = lp_buf_append(out, a->data, a->len))) return rc;
    size_t pad = (32 - a->len % 32) % 32;
    return pad ? lp_buf_append(out, zeros, pad) : 0;
  }
  case ETH_ABI_TUPLE: return encode_tuple(a->items, a->n, out, depth + 1);
  case ETH_ABI_ARRAY: {
    eth_abi_arg_t len = eth_abi_u64(a->n);
    if ((rc = lp_buf_append(out, len.word, 32))) return rc;
    return encode_tuple(a->items, a->n, out, depth + 1);
  }
  }
  return LP_EINVAL;
}

static int encode_tuple(const eth_abi_arg_t *items, size_t n, lp_buf_t *out, int depth) {
  size_t head = 0;
  for (size_t i = 0; i < n; i++) head += head_size(&items[i]);
  size_t base = out->len;
  int rc = lp_buf_reserve(out, head);
  if (rc) return rc;
  memset(out->data + base, 0, head);
  out->len += head;
  size_t hp = 0;
  for (size_t i = 0; i < n; i++) {
    const eth_abi_arg_t *a = &items[i];
    if (is_dynamic(a)) {
      put_word(out, base + hp, out->len - base);
      if ((rc = encode_value(a, out, depth))) return rc;
    } else {
      /* A static value is written at the end and moved into its head slot. */
      size_t at = out->len;
      if ((rc = encode_value(a, out, depth))) return rc;
      memcpy(out->data + base + hp, out->data + at, out->len - at);
      out->len = at;
    }
    hp += head_size(a);
  }
  return 0;
}

int eth_abi_encode(const eth_abi_arg_t *args, size_t n, lp_buf_t *out) {
  size_t start = out->len;
  int rc = encode_tuple(args, n, out, 0);
  if (rc) out->len = start;
  return rc;
}

int eth_abi_encode_call(const char *signature, const eth_abi_arg_t *args, size_t n, lp_buf_t *out) {
  uint8_t sel[4];
  eth_abi_selector(signature, sel);
  size_t start = out->len;
  int rc = lp_buf_append(out, sel, 4);
  if (!rc) rc = eth_abi_encode(args, n, out);
  if (rc) out->len = start;
  return rc;
}

int eth_abi_get_word(const uint8_t *d, size_t len, size_t idx, pm_u256_t *out) {
  if (idx >= len / 32) return LP_EPROTO;
  memcpy(out->b, d + idx * 32, 32);
  return 0;
}

int eth_abi_get_u64(const uint8_t *d, size_t len, size_t idx, uint64_t *out) {
  pm_u256_t w;
  int rc = eth_abi_get_word(d, len, idx, &w);
  if (rc) return rc;
  return pm_u256_to_u64(&w, out) ? LP_EPROTO : 0;
}

int eth_abi_get_addr(const uint8_t *d, size_t len, size_t idx, uint8_t addr[ETH_ADDR_LEN]) {
  pm_u256_t w;
  int rc = eth_abi_get_word(d, len, idx, &w);
  if (rc) return rc;
  for (int i = 0; i < 12; i++)
    if (w.b[i]) return LP_EPROTO;
  memcpy(addr, w.b + 12, ETH_ADDR_LEN);
  return 0;
}

int eth_abi_get_bool(const uint8_t *d, size_t len, size_t idx, bool *out) {
  uint64_t v;
  int rc = eth_abi_get_u64(d, len, idx, &v);
  if (rc) return rc;
  if (v > 1) return LP_EPROTO;
  *out = v == 1;
  return 0;
}

int eth_abi_get_bytes(const uint8_t *d, size_t len, size_t idx, const uint8_t **p, size_t *n) {
  uint64_t off, blen;
  int rc = eth_abi_get_u64(d, len, idx, &off);
  if (rc) return rc;
  if (off > len || len - off < 32) return LP_EPROTO;
  if ((rc = eth_abi_get_u64(d + off, 32, 0, &blen))) return rc;
  if (blen > len - off - 32) return LP_EPROTO;
  *p = d + off + 32;
  *n = (size_t)blen;
  return 0;
}

int eth_abi_revert_reason(const uint8_t *d, size_t len, char *out, size_t cap) {
  static const uint8_t error_sel[4] = {0x08, 0xc3, 0x79, 0xa0};
  if (cap == 0) return LP_EINVAL;
  if (len < 4 || memcmp(d, error_sel, 4) != 0) return LP_ENOENT;
  const uint8_t *s;
  size_t n;
  if (eth_abi_get_bytes(d + 4, len - 4, 0, &s, &n)) return LP_ENOENT;
  size_t k = LP_MIN(n, cap - 1);
  for (size_t i = 0; i < k; i++) out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
  out[k] = 0;
  return 0;
}
