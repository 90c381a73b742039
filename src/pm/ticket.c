/* Ticket hashing, recipientRand, the win check and go-livepeer's faceValue/winProb rules. */
#include "lpod/pm.h"

#include "lpod/core.h"
#include "pm_internal.h"

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

size_t pm_aux_data(int64_t creation_round, const uint8_t block_hash[PM_HASH_LEN],
                   uint8_t out[PM_AUX_DATA_MAX]) {
  static const uint8_t zero[PM_HASH_LEN];
  if (creation_round == 0 && memcmp(block_hash, zero, PM_HASH_LEN) == 0) return 0;
  /* go encodes big.NewInt(round).Bytes(): the absolute value. */
  uint64_t r =
      creation_round < 0 ? (uint64_t)0 - (uint64_t)creation_round : (uint64_t)creation_round;
  pm_u256_t w;
  pm_u256_from_u64(&w, r);
  memcpy(out, w.b, 32);
  memcpy(out + 32, block_hash, PM_HASH_LEN);
  return PM_AUX_DATA_MAX;
}

void pm_ticket_hash(const pm_ticket_t *t, uint8_t out[PM_HASH_LEN]) {
  uint8_t buf[168 + PM_AUX_DATA_MAX];
  memcpy(buf, t->recipient, 20);
  memcpy(buf + 20, t->sender, 20);
  memcpy(buf + 40, t->face_value.b, 32);
  memcpy(buf + 72, t->win_prob.b, 32);
  pm_u256_t nonce;
  pm_u256_from_u64(&nonce, t->sender_nonce);
  memcpy(buf + 104, nonce.b, 32);
  memcpy(buf + 136, t->recipient_rand_hash, 32);
  size_t aux = pm_aux_data(t->creation_round, t->creation_round_block_hash, buf + 168);
  pm_keccak256(buf, 168 + aux, out);
}

void pm_rand_hash(const pm_u256_t *recipient_rand, uint8_t out[PM_HASH_LEN]) {
  pm_keccak256(recipient_rand->b, 32, out);
}

bool pm_ticket_wins(const uint8_t *sig, size_t sig_len, const pm_u256_t *recipient_rand,
                    const pm_u256_t *win_prob) {
  pm_keccak_t k;
  uint8_t h[PM_HASH_LEN];
  pm_keccak_init(&k);
  pm_keccak_update(&k, sig, sig_len);
  pm_keccak_update(&k, recipient_rand->b, 32);
  pm_keccak_final(&k, h);
  return memcmp(h, win_prob->b, 32) < 0;
}

int pm_recipient_rand(const uint8_t secret[32], const pm_u256_t *seed,
                      const uint8_t sender[PM_ADDR_LEN], const pm_u256_t *face_value,
                      const pm_u256_t *win_prob, const pm_u256_t *expiration_block,
                      const pm_price_t *price, const pm_expiration_params_t *exp, pm_u256_t *out) {
  uint64_t num, den;
  bool neg;
  if (pm_price_reduce(price, &num, &den, &neg) != 0) return LP_EINVAL;
  uint8_t msg[5 * 32 + PM_ADDR_LEN + 2 * 8 + PM_AUX_DATA_MAX];
  size_t len = 0;
  const uint8_t *p;
  size_t n;
#define PUT_MIN(v)                                                                                 \
  do {                                                                                             \
    n = pm_u256_min_bytes((v), &p);                                                                \
    memcpy(msg + len, p, n);                                                                       \
    len += n;                                                                                      \
  } while (0)
  PUT_MIN(seed);
  memcpy(msg + len, sender, PM_ADDR_LEN);
  len += PM_ADDR_LEN;
  PUT_MIN(face_value);
  PUT_MIN(win_prob);
  PUT_MIN(expiration_block);
  pm_u256_t w;
  pm_u256_from_u64(&w, num);
  PUT_MIN(&w);
  pm_u256_from_u64(&w, den);
  PUT_MIN(&w);
#undef PUT_MIN
  len += pm_aux_data(exp->creation_round, exp->creation_round_block_hash, msg + len);
  unsigned int outlen = 0;
  if (!HMAC(EVP_sha256(), secret, 32, msg, len, out->b, &outlen) || outlen != 32) return LP_EIO;
  return 0;
}

/* ---- big-number arithmetic ------------------------------------------------------------------- */

BIGNUM *pm_bn_from_u256(const pm_u256_t *v) { return BN_bin2bn(v->b, 32, NULL); }

int pm_bn_to_u256(const BIGNUM *bn, pm_u256_t *out) {
  if (BN_is_negative(bn) || BN_num_bytes(bn) > 32) return LP_ERANGE;
  return BN_bn2binpad(bn, out->b, 32) == 32 ? 0 : LP_ERANGE;
}

BIGNUM *pm_bn_max_win_prob(void) {
  BIGNUM *m = BN_new();
  if (!m) return NULL;
  if (!BN_set_bit(m, 256) || !BN_sub_word(m, 1)) {
    BN_free(m);
    return NULL;
  }
  return m;
}

int pm_win_prob(const pm_u256_t *face_value, const pm_u256_t *ev, pm_u256_t *out) {
  if (pm_u256_is_zero(face_value)) {
    memset(out->b, 0, 32);
    return 0;
  }
  if (pm_u256_cmp(face_value, ev) == 0) {
    memset(out->b, 0xff, 32);
    return 0;
  }
  int rc = LP_ENOMEM;
  BN_CTX *ctx = BN_CTX_new();
  BIGNUM *m = pm_bn_max_win_prob(), *fv = pm_bn_from_u256(face_value), *e = pm_bn_from_u256(ev);
  BIGNUM *q = BN_new(), *r = BN_new();
  if (!ctx || !m || !fv || !e || !q || !r) goto out;
  if (!BN_div(q, r, m, fv, ctx)) goto out;
  if (!BN_is_zero(r) && !BN_add_word(q, 1)) goto out;
  if (!BN_mul(q, q, e, ctx)) goto out;
  rc = pm_bn_to_u256(q, out);
out:
  BN_free(m);
  BN_free(fv);
  BN_free(e);
  BN_free(q);
  BN_free(r);
  BN_CTX_free(ctx);
  return rc;
}

int pm_face_value(const pm_fv_inputs_t *in, pm_u256_t *out, const char **err) {
  static const char insufficient[] = "insufficient sender reserve";
  int rc = LP_ENOMEM;
  if (err) *err = NULL;
  BN_CTX *ctx = BN_CTX_new();
  BIGNUM *ev = pm_bn_from_u256(&in->ev), *gas = pm_bn_from_u256(&in->gas_price);
  BIGNUM *max_float = pm_bn_from_u256(&in->max_float);
  BIGNUM *max_fv = pm_bn_from_u256(&in->max_face_value);
  BIGNUM *tx_cost = BN_new(), *fv = BN_new(), *avg_cost = BN_new();
  if (!ctx || !ev || !gas || !max_float || !max_fv || !tx_cost || !fv || !avg_cost) goto out;
  /* txCost = redeemGas * gasPrice; fv = 100 * txCost, or 100 * EV when that is below EV. */
  if (!BN_copy(tx_cost, gas) || !BN_mul_word(tx_cost, in->redeem_gas)) goto out;
  if (!BN_copy(fv, tx_cost) || !BN_mul_word(fv, 100)) goto out;
  if (BN_cmp(fv, ev) < 0 && (!BN_copy(fv, ev) || !BN_mul_word(fv, 100))) goto out;
  if (BN_cmp(fv, max_float) > 0 && !BN_copy(fv, max_float)) goto out;
  if (!BN_is_zero(max_fv) && BN_cmp(max_fv, fv) < 0 && !BN_copy(fv, max_fv)) goto out;
  /* The redemption must stay worth it at the average gas price of 3 gwei. */
  if (!BN_set_word(avg_cost, 3000000000ull) || !BN_mul_word(avg_cost, in->redeem_gas)) goto out;
  if (BN_cmp(fv, ev) < 0 || (BN_cmp(fv, tx_cost) < 0 && BN_cmp(fv, avg_cost) < 0)) {
    if (err) *err = insufficient;
    rc = LP_ERANGE;
    goto out;
  }
  rc = pm_bn_to_u256(fv, out);
out:
  BN_free(ev);
  BN_free(gas);
  BN_free(max_float);
  BN_free(max_fv);
  BN_free(tx_cost);
  BN_free(fv);
  BN_free(avg_cost);
  BN_CTX_free(ctx);
  return rc;
}

int pm_ticket_ev_string(const pm_u256_t *face_value, const pm_u256_t *win_prob, char *out,
                        size_t out_cap) {
  pm_rat_t ev;
  int rc = pm_rat_init(&ev);
  if (rc) return rc;
  rc = pm_rat_set_ev(&ev, face_value, win_prob);
  if (!rc) rc = pm_rat_to_string(&ev, out, out_cap);
  pm_rat_deinit(&ev);
  return rc;
}
