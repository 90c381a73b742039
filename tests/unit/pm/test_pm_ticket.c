/* Ticket hash, auxData, recipientRand, win check, EV, faceValue and winProb: the vectors of
 * payments.md §1.3, §2.4, §2.6, §3.4, §6 and protocol.md §4.3. */
#include "lpod/pm.h"
#include "test_util.h"

#include <openssl/bn.h>
#include <stdio.h>

static void u256_hex(const char *hex, pm_u256_t *v) {
  uint8_t b[32];
  int n = lp_hex_decode(hex, b, sizeof b);
  assert_true(n >= 0);
  assert_int_equal(pm_u256_from_bytes(v, b, (size_t)n), 0);
}

static void u256_dec(const char *dec, pm_u256_t *v) {
  assert_int_equal(pm_u256_from_dec(v, dec), 0);
}

static void u256_basics(void **state) {
  (void)state;
  pm_u256_t v;
  char dec[79];
  const uint8_t *p;
  uint8_t padded[40] = {0};
  padded[39] = 7;
  assert_int_equal(pm_u256_from_bytes(&v, padded, 40), 0); /* leading zeros are allowed */
  assert_int_equal(pm_u256_min_bytes(&v, &p), 1);
  assert_int_equal(p[0], 7);
  padded[0] = 1;
  assert_int_equal(pm_u256_from_bytes(&v, padded, 40), LP_ERANGE);
  pm_u256_from_u64(&v, 0);
  assert_true(pm_u256_is_zero(&v));
  assert_int_equal(pm_u256_min_bytes(&v, &p), 0);
  pm_u256_to_dec(&v, dec);
  assert_string_equal(dec, "0");
  const char *m = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
  u256_dec(m, &v);
  for (int i = 0; i < 32; i++) assert_int_equal(v.b[i], 0xff);
  pm_u256_to_dec(&v, dec);
  assert_string_equal(dec, m);
  assert_int_equal(
      pm_u256_from_dec(
          &v, "115792089237316195423570985008687907853269984665640564039457584007913129639936"),
      LP_ERANGE);
  assert_int_equal(pm_u256_from_dec(&v, "12a"), LP_EINVAL);
  uint64_t x;
  u256_dec("18446744073709551615", &v);
  assert_int_equal(pm_u256_to_u64(&v, &x), 0);
  assert_true(x == UINT64_MAX);
  u256_dec("18446744073709551616", &v);
  assert_int_equal(pm_u256_to_u64(&v, &x), LP_ERANGE);
}

static void price_rules(void **state) {
  (void)state;
  uint64_t n, d;
  bool neg;
  assert_int_equal(pm_price_reduce(&(pm_price_t){10, 4}, &n, &d, &neg), 0);
  assert_true(n == 5 && d == 2 && !neg);
  assert_int_equal(pm_price_reduce(&(pm_price_t){3, -6}, &n, &d, &neg), 0);
  assert_true(n == 1 && d == 2 && neg);
  assert_int_equal(pm_price_reduce(&(pm_price_t){0, 7}, &n, &d, &neg), 0);
  assert_true(n == 0 && d == 1 && !neg);
  assert_int_equal(pm_price_reduce(&(pm_price_t){INT64_MIN, 2}, &n, &d, &neg), 0);
  assert_true(n == 4611686018427387904ull && d == 1 && neg);
  assert_int_equal(pm_price_reduce(&(pm_price_t){1, 0}, &n, &d, &neg), LP_EINVAL);
  assert_int_equal(pm_price_cmp(&(pm_price_t){10, 4}, &(pm_price_t){5, 2}), 0);
  assert_int_equal(pm_price_cmp(&(pm_price_t){1, 3}, &(pm_price_t){1, 2}), -1);
  assert_int_equal(pm_price_cmp(&(pm_price_t){-1, -2}, &(pm_price_t){1, 2}), 0);
  assert_int_equal(pm_price_cmp(&(pm_price_t){INT64_MAX, 1}, &(pm_price_t){INT64_MAX, 2}), 1);
}

/* payments.md §6.1 */
static void ticket_hash_vectors(void **state) {
  (void)state;
  pm_ticket_t t;
  uint8_t h[32];
  const uint8_t hash41[32] = {0x41, 0xb1, 0xa0, 0x64, 0x97, 0x52, 0xaf, 0x1b, 0x28, 0xb3, 0xdc,
                              0x29, 0xa1, 0x55, 0x6e, 0xee, 0x78, 0x1e, 0x4a, 0x4c, 0x3a, 0x1f,
                              0x7f, 0x53, 0xf9, 0x0f, 0xa8, 0x34, 0xde, 0x09, 0x8c, 0x4d};

  memset(&t, 0, sizeof t);
  t.sender_nonce = 4294967295u;
  pm_ticket_hash(&t, h);
  assert_hex_eq(h, 32, "e1393fc7f6de093780674022f96cb8e3872235167d037c04d554e58c0e63d280");

  memset(&t, 0, sizeof t);
  t.sender_nonce = 1;
  pm_ticket_hash(&t, h);
  assert_hex_eq(h, 32, "ce0918ba94518293e9712effbe5fca4f1f431089833a5b8c257cb1e024595f68");

  memset(&t, 0, sizeof t);
  pm_u256_from_u64(&t.face_value, 1);
  pm_u256_from_u64(&t.win_prob, 500);
  pm_ticket_hash(&t, h);
  assert_hex_eq(h, 32, "87ef13f2d37e4d5352a01d3c77b8179d80e0887f1953bfabfd0bfd7b0f689ddd");

  memset(&t, 0, sizeof t);
  pm_u256_from_u64(&t.face_value, 500);
  pm_u256_from_u64(&t.win_prob, 1);
  pm_ticket_hash(&t, h);
  assert_hex_eq(h, 32, "aa4b35071043587992ac8b9dd1b2cf1d8311130e6458cf0b2342484e21af5f5b");

  memset(&t, 0, sizeof t);
  assert_int_equal(pm_addr_from_hex("0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F", t.recipient), 0);
  pm_ticket_hash(&t, h);
  assert_hex_eq(h, 32, "81e353ae39046e2b77b9f996abbaeed527fda559b61ef90f299c4499dd508ccc");

  memset(&t, 0, sizeof t);
  memcpy(t.recipient_rand_hash, hash41, 32);
  pm_ticket_hash(&t, h);
  assert_hex_eq(h, 32, "be5eaf9a49a39540b9bb02f1a21904f61324a29819e2c032824bfaa10c100b17");

  memset(&t, 0, sizeof t);
  t.creation_round = 10;
  memcpy(t.creation_round_block_hash, hash41, 32);
  pm_ticket_hash(&t, h);
  assert_hex_eq(h, 32, "e502907c16036ab3d11b78c5a2e93c20f3d6415c67f91de4ed01348182b3b2e2");
}

/* payments.md §1.3 */
static void aux_data_vectors(void **state) {
  (void)state;
  uint8_t bh[32], aux[64], zero[32] = {0};
  hex_exact("7624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f", bh, 32);
  assert_int_equal(pm_aux_data(5, bh, aux), 64);
  assert_hex_eq(aux, 64,
                "0000000000000000000000000000000000000000000000000000000000000005"
                "7624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f");
  assert_int_equal(pm_aux_data(0, bh, aux), 64);
  assert_hex_eq(aux, 64,
                "0000000000000000000000000000000000000000000000000000000000000000"
                "7624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f");
  assert_int_equal(pm_aux_data(5, zero, aux), 64);
  assert_hex_eq(aux, 64,
                "0000000000000000000000000000000000000000000000000000000000000005"
                "0000000000000000000000000000000000000000000000000000000000000000");
  assert_int_equal(pm_aux_data(0, zero, aux), 0);
  /* go's big.NewInt(round).Bytes() drops the sign. */
  assert_int_equal(pm_aux_data(-5, zero, aux), 64);
  assert_int_equal(aux[31], 5);
}

/* payments.md §2.4, §3.4, §6.6 */
static void rand_hash_and_win_check(void **state) {
  (void)state;
  pm_u256_t rand, wp;
  uint8_t h[32];
  pm_u256_from_u64(&rand, 10);
  pm_rand_hash(&rand, h);
  assert_hex_eq(h, 32, "c65a7bb8d6351c1cf70c95a316cc6a92839c986682d98bc35f958f4883f9d2a8");

  uint8_t buf[35];
  memcpy(buf, "foo", 3);
  memcpy(buf + 3, rand.b, 32);
  pm_keccak256(buf, 35, h);
  assert_hex_eq(h, 32, "212117bf5ec66d480ab4d362ce2f1ae19d6b5df92c5f8633bcecf62bfaea6810");

  pm_u256_from_u64(&wp, 0);
  assert_false(pm_ticket_wins((const uint8_t *)"foo", 3, &rand, &wp));
  memset(wp.b, 0xff, 32);
  assert_true(pm_ticket_wins((const uint8_t *)"foo", 3, &rand, &wp));
  /* Strict <: winProb equal to the hash loses, one more wins. */
  memcpy(wp.b, h, 32);
  assert_false(pm_ticket_wins((const uint8_t *)"foo", 3, &rand, &wp));
  wp.b[31]++;
  assert_true(pm_ticket_wins((const uint8_t *)"foo", 3, &rand, &wp));
}

/* payments.md §2.6 */
static void win_prob_vectors(void **state) {
  (void)state;
  pm_u256_t ev, fv, wp, want;
  char dec[79];
  pm_u256_from_u64(&ev, 5);
  struct {
    uint64_t fv;
    const char *wp;
  } v[] = {
      {100000000, "5789604461865809771178549250434395392663499233282028201972879200395660"},
      {777000000, "745122839364969082519761808292714979750772102095499125093034646125570"},
      {10001, "57890255593098787833002192285115442382396752657554526567072084795477017120"},
  };
  for (size_t i = 0; i < LP_ARRAY_LEN(v); i++) {
    pm_u256_from_u64(&fv, v[i].fv);
    assert_int_equal(pm_win_prob(&fv, &ev, &wp), 0);
    pm_u256_to_dec(&wp, dec);
    assert_string_equal(dec, v[i].wp);
  }
  pm_u256_from_u64(&fv, 0);
  assert_int_equal(pm_win_prob(&fv, &ev, &wp), 0);
  assert_true(pm_u256_is_zero(&wp));
  assert_int_equal(pm_win_prob(&ev, &ev, &wp), 0);
  memset(want.b, 0xff, 32);
  assert_memory_equal(wp.b, want.b, 32);
  /* fv below EV would need a probability above 1. */
  pm_u256_from_u64(&fv, 4);
  assert_int_equal(pm_win_prob(&fv, &ev, &wp), LP_ERANGE);
}

/* payments.md §2.5 with the recipient_test.go setup: RedeemGas 10000, EV 5. */
static void face_value_rules(void **state) {
  (void)state;
  pm_fv_inputs_t in;
  pm_u256_t fv;
  const char *err;
  char dec[79];
  memset(&in, 0, sizeof in);
  pm_u256_from_u64(&in.ev, 5);
  in.redeem_gas = 10000;
  memset(in.max_float.b, 0, 32);
  u256_dec("1000000000000000000000", &in.max_float);

  pm_u256_from_u64(&in.gas_price, 100);
  assert_int_equal(pm_face_value(&in, &fv, &err), 0);
  pm_u256_to_dec(&fv, dec);
  assert_string_equal(dec, "100000000");

  pm_u256_from_u64(&in.gas_price, 777);
  assert_int_equal(pm_face_value(&in, &fv, &err), 0);
  pm_u256_to_dec(&fv, dec);
  assert_string_equal(dec, "777000000");

  pm_u256_from_u64(&in.gas_price, 1);
  pm_u256_from_u64(&in.max_float, 10001);
  assert_int_equal(pm_face_value(&in, &fv, &err), 0);
  pm_u256_to_dec(&fv, dec);
  assert_string_equal(dec, "10001");

  /* -maxFaceValue caps below maxFloat. */
  pm_u256_from_u64(&in.max_face_value, 10000);
  assert_int_equal(pm_face_value(&in, &fv, &err), 0);
  pm_u256_to_dec(&fv, dec);
  assert_string_equal(dec, "10000");

  /* fv below txCost and below RedeemGas x 3 gwei: the sender cannot back a ticket. */
  memset(in.max_face_value.b, 0, 32);
  pm_u256_from_u64(&in.max_float, 9999);
  assert_int_equal(pm_face_value(&in, &fv, &err), LP_ERANGE);
  assert_string_equal(err, "insufficient sender reserve");

  /* Below EV always fails. */
  pm_u256_from_u64(&in.max_float, 4);
  assert_int_equal(pm_face_value(&in, &fv, &err), LP_ERANGE);
  assert_string_equal(err, "insufficient sender reserve");

  /* txCost x 100 below EV: EV x 100 is used. */
  pm_u256_from_u64(&in.ev, 100000000000ull);
  pm_u256_from_u64(&in.gas_price, 1);
  u256_dec("1000000000000000000000", &in.max_float);
  assert_int_equal(pm_face_value(&in, &fv, &err), 0);
  pm_u256_to_dec(&fv, dec);
  assert_string_equal(dec, "10000000000000");
}

static BIGNUM *bn_dec(const char *s) {
  BIGNUM *b = NULL;
  assert_true(BN_dec2bn(&b, s) > 0);
  return b;
}

/* payments.md §6.3: EV = fv * wp / (2^256 - 1) as an exact fraction. */
static void ev_vectors(void **state) {
  (void)state;
  const char *m = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
  pm_u256_t fv, wp;
  char s[200];
  pm_u256_from_u64(&fv, 1000);
  memset(wp.b, 0xff, 32);
  assert_int_equal(pm_ticket_ev_string(&fv, &wp, s, sizeof s), 0);
  assert_string_equal(s, "1000/1");
  pm_u256_from_u64(&wp, 0);
  assert_int_equal(pm_ticket_ev_string(&fv, &wp, s, sizeof s), 0);
  assert_string_equal(s, "0/1");
  pm_u256_from_u64(&fv, 0);
  memset(wp.b, 0xff, 32);
  assert_int_equal(pm_ticket_ev_string(&fv, &wp, s, sizeof s), 0);
  assert_string_equal(s, "0/1");

  /* winProb floor(M/2): EV = 1000 * (M-1)/2 / M, just under 500, which rounds to "500". */
  pm_u256_from_u64(&fv, 1000);
  memset(wp.b, 0xff, 32);
  wp.b[0] = 0x7f;
  assert_int_equal(pm_ticket_ev_string(&fv, &wp, s, sizeof s), 0);
  char *slash = strchr(s, '/');
  assert_non_null(slash);
  *slash = '\0';
  BIGNUM *num = bn_dec(s), *den = bn_dec(slash + 1), *mm = bn_dec(m);
  BN_CTX *ctx = BN_CTX_new();
  BIGNUM *l = BN_new(), *r = BN_new(), *half = BN_new();
  /* num * M == 500 * (M - 1) * den */
  assert_true(BN_mul(l, num, mm, ctx));
  assert_true(BN_copy(r, mm) && BN_sub_word(r, 1) && BN_mul_word(r, 500) && BN_mul(r, r, den, ctx));
  assert_int_equal(BN_cmp(l, r), 0);
  /* Rounded to the nearest integer: floor((2 num + den) / (2 den)) == 500. */
  assert_true(BN_lshift1(l, num) && BN_add(l, l, den) && BN_lshift1(half, den));
  assert_true(BN_div(r, NULL, l, half, ctx));
  assert_true(BN_is_word(r, 500));
  BN_free(num);
  BN_free(den);
  BN_free(mm);
  BN_free(l);
  BN_free(r);
  BN_free(half);
  BN_CTX_free(ctx);

  /* WinProbRat: with faceValue 1 the EV is winProb / M; floor(M/2) prints "0.5" and floor(M/4)
   * "0.25" at their precision, i.e. round(10^k * EV) is 5 and 25. */
  struct {
    uint8_t top;
    unsigned scale, want;
  } wr[] = {{0x7f, 10, 5}, {0x3f, 100, 25}};
  for (size_t i = 0; i < LP_ARRAY_LEN(wr); i++) {
    pm_u256_from_u64(&fv, 1);
    memset(wp.b, 0xff, 32);
    wp.b[0] = wr[i].top;
    assert_int_equal(pm_ticket_ev_string(&fv, &wp, s, sizeof s), 0);
    slash = strchr(s, '/');
    *slash = '\0';
    BN_CTX *c2 = BN_CTX_new();
    BIGNUM *n2 = bn_dec(s), *d2 = bn_dec(slash + 1), *q = BN_new(), *d2x2 = BN_new();
    /* floor((2 * scale * num + den) / (2 den)) */
    assert_true(BN_mul_word(n2, 2 * wr[i].scale) && BN_add(n2, n2, d2) && BN_lshift1(d2x2, d2));
    assert_true(BN_div(q, NULL, n2, d2x2, c2));
    assert_true(BN_is_word(q, wr[i].want));
    BN_free(n2);
    BN_free(d2);
    BN_free(q);
    BN_free(d2x2);
    BN_CTX_free(c2);
  }
}

/* payments.md §6.8: the recipient HMAC and the tickets signed under it. */
static void recipient_rand_vector(void **state) {
  (void)state;
  uint8_t secret[32] = {3}, sender[20], priv[32];
  pm_u256_t seed, fv, ev, wp, exp_block, rand;
  pm_expiration_params_t exp = {.creation_round = 7};
  hex_exact("7624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f",
            exp.creation_round_block_hash, 32);
  hex_exact("fad9c8855b740a0b7ed4c221dbad0f33a83a49cad6b3fe8d5817ac83d38b6a19", priv, 32);
  assert_int_equal(pm_priv_to_addr(priv, sender), 0);
  u256_hex("1234567890abcdef", &seed);
  pm_u256_from_u64(&fv, 100000000);
  pm_u256_from_u64(&ev, 5);
  assert_int_equal(pm_win_prob(&fv, &ev, &wp), 0);
  pm_u256_from_u64(&exp_block, 140);
  pm_price_t price = {1, 1};
  assert_int_equal(
      pm_recipient_rand(secret, &seed, sender, &fv, &wp, &exp_block, &price, &exp, &rand), 0);
  assert_hex_eq(rand.b, 32, "5e1d855fe4d018f3b508d1424e26729d498989f6c6c1aad784f464ee23f1fe59");
  uint8_t rh[32];
  pm_rand_hash(&rand, rh);
  assert_hex_eq(rh, 32, "c35e818578a4687c6e4a04998c9dbf9368b5bafd0c83239fbee396a51d029eef");

  /* An unreduced price hashes like its reduced form; the sign is lost as in go. */
  pm_u256_t rand2;
  assert_int_equal(pm_recipient_rand(secret, &seed, sender, &fv, &wp, &exp_block,
                                     &(pm_price_t){7, 7}, &exp, &rand2),
                   0);
  assert_memory_equal(rand.b, rand2.b, 32);
  assert_int_equal(pm_recipient_rand(secret, &seed, sender, &fv, &wp, &exp_block,
                                     &(pm_price_t){-1, 1}, &exp, &rand2),
                   0);
  assert_memory_equal(rand.b, rand2.b, 32);
  assert_int_equal(pm_recipient_rand(secret, &seed, sender, &fv, &wp, &exp_block,
                                     &(pm_price_t){2, 1}, &exp, &rand2),
                   0);
  assert_memory_not_equal(rand.b, rand2.b, 32);
  assert_int_equal(pm_recipient_rand(secret, &seed, sender, &fv, &wp, &exp_block,
                                     &(pm_price_t){1, 0}, &exp, &rand2),
                   LP_EINVAL);

  pm_ticket_t t;
  memset(&t, 0, sizeof t);
  assert_int_equal(pm_addr_from_hex("0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F", t.recipient), 0);
  memcpy(t.sender, sender, 20);
  t.face_value = fv;
  t.win_prob = wp;
  memcpy(t.recipient_rand_hash, rh, 32);
  t.creation_round = 7;
  memcpy(t.creation_round_block_hash, exp.creation_round_block_hash, 32);
  const char *hashes[] = {"661da906f07f510ba9b9bda41d30e9e7daaa04f4df199536e7b091e4ebaa26bd",
                          "b15a633c26753a21f023afc706ba72b28ccd11ed1fbde85e772a77daa52370ad"};
  const char *sigs[] = {"98ef710de55f9dd053097bc45b6831292701edaaa9a3248c5b6456d73538f09e675f03888"
                        "f0f899d68130e730556687a33b24b6b8df8fcbf1df1478496c269d01b",
                        "86edba67159c699fcadae37d061fb195f7e4f9be11ce8d3fc63f52c929c22558693791f01"
                        "01245b39cc602451dc4e1d737f6d8202062a54d2e629172b03e291c1b"};
  const char *win_prefix[] = {"a3e8c307", "672120ac"};
  for (uint32_t n = 1; n <= 2; n++) {
    uint8_t h[32], sig[65], buf[97], wh[32];
    t.sender_nonce = n;
    pm_ticket_hash(&t, h);
    assert_hex_eq(h, 32, hashes[n - 1]);
    assert_int_equal(pm_sign_hash(priv, h, sig), 0);
    assert_hex_eq(sig, 65, sigs[n - 1]);
    assert_true(pm_verify_hash(sender, h, sig, 65));
    memcpy(buf, sig, 65);
    memcpy(buf + 65, rand.b, 32);
    pm_keccak256(buf, 97, wh);
    assert_hex_eq(wh, 4, win_prefix[n - 1]);
    assert_false(pm_ticket_wins(sig, 65, &rand, &wp));
  }
}

/* payments.md §6.7: a real mainnet redemption, end to end. */
static void mainnet_ticket_vector(void **state) {
  (void)state;
  pm_ticket_t t;
  memset(&t, 0, sizeof t);
  assert_int_equal(pm_addr_from_hex("0x9C10672CEE058Fd658103d90872fE431bb6C0AFa", t.recipient), 0);
  assert_int_equal(pm_addr_from_hex("0x3eE860A4abA830AF84EbBCE2b381fc11DB8493e2", t.sender), 0);
  u256_dec("24703611594215916", &t.face_value);
  u256_hex("0a5ce4361d251fc5d71ba8fa55eef46b5a59a967145c79aa4cdbe1f943ad0000", &t.win_prob);
  char dec[79];
  pm_u256_to_dec(&t.win_prob, dec);
  assert_string_equal(
      dec, "4687253472865791949219216447262131914283161967982656133076290000000000000000");
  t.sender_nonce = 1;
  hex_exact("d00ef48a6825d9ae93097ad55bc76057fb50afc203aa98fd4e01aa6576d71298",
            t.recipient_rand_hash, 32);
  t.creation_round = 1673;
  hex_exact("a9f81d59be53a90a12cb12f627aa9e87c505320bad20a98fd98d5ed23bfe9a54",
            t.creation_round_block_hash, 32);
  uint8_t sig[65], h[32], digest[32], signer[20], rh[32];
  hex_exact("5ff5265992f1a6563851d085f363b16ad65416baaee090ee368b59082437df7a0237214659511fc188d6a"
            "4ef57c988bb18faa3e99826c78e9e75eb29366745891b",
            sig, 65);
  pm_u256_t rand;
  u256_dec("21160157592767011607011497540409649304524524744605816319294275445072062630355", &rand);
  assert_hex_eq(rand.b, 32, "2ec8398aed129f376c296c8b999d2f9ee61494110f9a752494d2ef1b89a4c9d3");

  pm_ticket_hash(&t, h);
  assert_hex_eq(h, 32, "63d432158a2a3a15bdb5a87712e5cf0d1655d018a615d2e8806346536c0154c0");
  pm_personal_digest(h, digest);
  assert_hex_eq(digest, 32, "9fd87ee174ce8a79566b65ca5fac0e0eaf3f223925711bdf0e7f307832e1afb8");
  assert_int_equal(pm_recover_hash(h, sig, 65, signer, NULL), 0);
  assert_memory_equal(signer, t.sender, 20);
  pm_rand_hash(&rand, rh);
  assert_memory_equal(rh, t.recipient_rand_hash, 32);
  uint8_t buf[97], wh[32];
  memcpy(buf, sig, 65);
  memcpy(buf + 65, rand.b, 32);
  pm_keccak256(buf, 97, wh);
  assert_hex_eq(wh, 32, "032acb381b86925047219e35056c8ed0de09d7ca369a7221c1ce9f8221b37732");
  assert_true(pm_ticket_wins(sig, 65, &rand, &t.win_prob));

  /* winProb is the §2.6 formula with ticketEV = 1e15. */
  pm_u256_t ev, wp;
  pm_u256_from_u64(&ev, 1000000000000000ull);
  assert_int_equal(pm_win_prob(&t.face_value, &ev, &wp), 0);
  assert_memory_equal(wp.b, t.win_prob.b, 32);
}

/* protocol.md §4.3: the segment signature's Flatten. */
static void segment_flatten_vector(void **state) {
  (void)state;
  uint8_t body_hash[32], h[32], digest[32];
  pm_keccak256("hello", 5, body_hash);
  assert_hex_eq(body_hash, 32, "1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8");
  const char *profiles[] = {"P240p30fps16x9", "P360p30fps16x9"};
  lp_buf_t b = LP_BUF_INIT;
  assert_int_equal(pm_seg_flatten((const uint8_t *)"abcd", 4, 3, body_hash, 32, profiles, 2, &b),
                   0);
  assert_int_equal(b.len, 4 + 32 + 32 + 16);
  assert_memory_equal(b.data, "abcd", 4);
  assert_int_equal(b.data[35], 3);
  assert_memory_equal(b.data + 68, "c0a6517a93c717e7", 16);
  pm_keccak256(b.data, b.len, h);
  assert_hex_eq(h, 32, "2b6e13a4ccfb9e5337e35cc2b61a26e44d8ce675bed95f47e371b1970345d566");
  pm_personal_digest(h, digest);
  assert_hex_eq(digest, 32, "8ea65487a3dda3c963ca0fbdd55f1280ed8a693da0ebb71cca0dc1359b79f388");

  /* A gateway signs it; the orchestrator checks it against the payment's sender. */
  uint8_t priv[32], sender[20], sig[65];
  hex_exact("fad9c8855b740a0b7ed4c221dbad0f33a83a49cad6b3fe8d5817ac83d38b6a19", priv, 32);
  assert_int_equal(pm_priv_to_addr(priv, sender), 0);
  assert_int_equal(pm_sign_msg(priv, b.data, b.len, sig), 0);
  assert_true(pm_verify_msg(sender, b.data, b.len, sig, 65));
  lp_buf_free(&b);
  /* Other profiles, another seq: the signature no longer covers it. */
  assert_int_equal(pm_seg_flatten((const uint8_t *)"abcd", 4, 4, body_hash, 32, profiles, 2, &b),
                   0);
  assert_false(pm_verify_msg(sender, b.data, b.len, sig, 65));
  lp_buf_free(&b);
  assert_int_equal(pm_seg_flatten((const uint8_t *)"abcd", 4, 3, body_hash, 32, profiles, 1, &b),
                   0);
  assert_int_equal(b.len, 4 + 32 + 32 + 8);
  assert_false(pm_verify_msg(sender, b.data, b.len, sig, 65));
  lp_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(u256_basics),
      cmocka_unit_test(price_rules),
      cmocka_unit_test(ticket_hash_vectors),
      cmocka_unit_test(aux_data_vectors),
      cmocka_unit_test(rand_hash_and_win_check),
      cmocka_unit_test(win_prob_vectors),
      cmocka_unit_test(face_value_rules),
      cmocka_unit_test(ev_vectors),
      cmocka_unit_test(recipient_rand_vector),
      cmocka_unit_test(mainnet_ticket_vector),
      cmocka_unit_test(segment_flatten_vector),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
