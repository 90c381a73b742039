/* Legacy (EIP-155) and dynamic-fee (EIP-1559) transactions: RLP payloads, signing with the
 * node's key and the raw bytes eth_sendRawTransaction takes. */
#include "lpod/eth.h"
#include "lpod/pm.h"

#include <string.h>

static int put_fields(const eth_tx_t *tx, lp_buf_t *b) {
  int rc = 0;
  if (tx->type == ETH_TX_DYNAMIC_FEE) {
    rc = eth_rlp_put_u64(b, tx->chain_id);
    if (!rc) rc = eth_rlp_put_u64(b, tx->nonce);
    if (!rc) rc = eth_rlp_put_uint(b, &tx->max_priority_fee);
    if (!rc) rc = eth_rlp_put_uint(b, &tx->max_fee);
  } else {
    rc = eth_rlp_put_u64(b, tx->nonce);
    if (!rc) rc = eth_rlp_put_uint(b, &tx->gas_price);
  }
  if (!rc) rc = eth_rlp_put_u64(b, tx->gas_limit);
  if (!rc) rc = eth_rlp_put_bytes(b, tx->to, tx->has_to ? ETH_ADDR_LEN : 0);
  if (!rc) rc = eth_rlp_put_uint(b, &tx->value);
  if (!rc) rc = eth_rlp_put_bytes(b, tx->data, tx->data_len);
  if (!rc && tx->type == ETH_TX_DYNAMIC_FEE) {
    size_t al = b->len; /* empty access list */
    rc = eth_rlp_end_list(b, al);
  }
  return rc;
}

static int check(const eth_tx_t *tx) {
  if (tx->type != ETH_TX_LEGACY && tx->type != ETH_TX_DYNAMIC_FEE) return LP_EINVAL;
  if (tx->data_len && !tx->data) return LP_EINVAL;
  /* EIP-155's v = chainId*2 + 35 + recid must fit the 64-bit arithmetic below. */
  if (tx->chain_id == 0 || tx->chain_id > (UINT64_MAX - 36) / 2) return LP_EINVAL;
  return 0;
}

static int signing_payload(const eth_tx_t *tx, lp_buf_t *b) {
  int rc;
  if (tx->type == ETH_TX_DYNAMIC_FEE) {
    uint8_t type = 2;
    if ((rc = lp_buf_append(b, &type, 1))) return rc;
  }
  size_t start = b->len;
  if ((rc = put_fields(tx, b))) return rc;
  if (tx->type == ETH_TX_LEGACY) {
    if ((rc = eth_rlp_put_u64(b, tx->chain_id))) return rc;
    if ((rc = eth_rlp_put_u64(b, 0))) return rc;
    if ((rc = eth_rlp_put_u64(b, 0))) return rc;
  }
  return eth_rlp_end_list(b, start);
}

int eth_tx_signing_hash(const eth_tx_t *tx, uint8_t hash[ETH_HASH_LEN]) {
  int rc = check(tx);
  if (rc) return rc;
  lp_buf_t b = LP_BUF_INIT;
  rc = signing_payload(tx, &b);
  if (!rc) pm_keccak256(b.data, b.len, hash);
  lp_buf_free(&b);
  return rc;
}

int eth_tx_sign(const eth_tx_t *tx, const uint8_t priv[32], lp_buf_t *raw,
                uint8_t txhash[ETH_HASH_LEN]) {
  uint8_t h[ETH_HASH_LEN], sig[64];
  int recid = 0;
  int rc = eth_tx_signing_hash(tx, h);
  if (rc) return rc;
  if ((rc = pm_sign_digest(priv, h, sig, &recid))) return rc;
  pm_u256_t r, s;
  memcpy(r.b, sig, 32);
  memcpy(s.b, sig + 32, 32);
  size_t begin = raw->len;
  if (tx->type == ETH_TX_DYNAMIC_FEE) {
    uint8_t type = 2;
    rc = lp_buf_append(raw, &type, 1);
  }
  size_t start = raw->len;
  if (!rc) rc = put_fields(tx, raw);
  if (!rc) {
    uint64_t v =
        tx->type == ETH_TX_DYNAMIC_FEE ? (uint64_t)recid : tx->chain_id * 2 + 35 + (uint64_t)recid;
    rc = eth_rlp_put_u64(raw, v);
  }
  if (!rc) rc = eth_rlp_put_uint(raw, &r);
  if (!rc) rc = eth_rlp_put_uint(raw, &s);
  if (!rc) rc = eth_rlp_end_list(raw, start);
  if (rc) {
    raw->len = begin;
    return rc;
  }
  pm_keccak256(raw->data + begin, raw->len - begin, txhash);
  return 0;
}
