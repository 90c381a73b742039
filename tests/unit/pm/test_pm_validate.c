/* Payment validation in go-livepeer's order with its error texts, replay protection, expiry,
 * winners and exact-rational balances (payments.md §3, §4, §7). */
#include "lpod/pm.h"
#include "test_util.h"

#include <openssl/bn.h>
#include <stdio.h>
#include <stdlib.h>

#define SENDER_HEX "0x96216849c49358B10257cb55b28eA603c874b05E"
#define RECIPIENT_HEX "0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F"
#define SESSION "abcd1234"

typedef struct fixture {
  uint8_t priv[32];
  uint8_t sender[20];
  uint8_t recipient[20];
  uint8_t secret[32];
  pm_u256_t ev;
  pm_recipient_t *r;
  pm_balances_t *bal;
  pm_price_t price;
  pm_expiration_params_t exp;
  pm_ticket_params_t params;
  pm_sender_info_t sender_info;
  pm_validate_ctx_t ctx;
  /* tickets of the payment under construction */
  uint8_t sigs[700][65];
  pm_ticket_sender_params_t tsp[700];
  pm_payment_t pay;
} fixture_t;

static void issue_params(fixture_t *f, uint64_t face_value, uint64_t l1_block) {
  pm_u256_t fv;
  pm_u256_from_u64(&fv, face_value);
  assert_int_equal(
      pm_recipient_ticket_params(f->r, f->sender, &fv, &f->price, &f->exp, l1_block, &f->params),
      0);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  hex_exact("fad9c8855b740a0b7ed4c221dbad0f33a83a49cad6b3fe8d5817ac83d38b6a19", f->priv, 32);
  assert_int_equal(pm_priv_to_addr(f->priv, f->sender), 0);
  assert_int_equal(pm_addr_from_hex(RECIPIENT_HEX, f->recipient), 0);
  f->secret[0] = 3;
  pm_u256_from_u64(&f->ev, 5);
  f->r = pm_recipient_new(f->recipient, f->secret, &f->ev);
  f->bal = pm_balances_new(600000);
  assert_non_null(f->r);
  assert_non_null(f->bal);
  f->price = (pm_price_t){1, 3};
  f->exp.creation_round = 7;
  hex_exact("7624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f",
            f->exp.creation_round_block_hash, 32);
  issue_params(f, 100000000, 100);
  f->ctx.session = SESSION;
  f->ctx.last_seen_l1_block = 100;
  f->ctx.last_initialized_round = 7;
  f->ctx.sender_info = &f->sender_info;
  f->ctx.charging = true;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  pm_recipient_free(f->r);
  pm_balances_free(f->bal);
  free(f);
  return 0;
}

static void ticket_of(const fixture_t *f, uint32_t nonce, pm_ticket_t *t) {
  memset(t, 0, sizeof *t);
  memcpy(t->recipient, f->params.recipient, 20);
  memcpy(t->sender, f->sender, 20);
  t->face_value = f->params.face_value;
  t->win_prob = f->params.win_prob;
  t->sender_nonce = nonce;
  memcpy(t->recipient_rand_hash, f->params.recipient_rand_hash, 32);
  t->creation_round = f->exp.creation_round;
  memcpy(t->creation_round_block_hash, f->exp.creation_round_block_hash, 32);
}

/* Builds a payment of n tickets with the given nonces, signed by the sender key. */
static void build_payment(fixture_t *f, const uint32_t *nonces, size_t n) {
  assert_true(n <= 700);
  for (size_t i = 0; i < n; i++) {
    pm_ticket_t t;
    uint8_t h[32];
    ticket_of(f, nonces[i], &t);
    pm_ticket_hash(&t, h);
    assert_int_equal(pm_sign_hash(f->priv, h, f->sigs[i]), 0);
    f->tsp[i] = (pm_ticket_sender_params_t){nonces[i], f->sigs[i], 65};
  }
  memset(&f->pay, 0, sizeof f->pay);
  f->pay.has_ticket_params = true;
  f->pay.params = f->params;
  f->pay.sender_len = 20;
  memcpy(f->pay.sender, f->sender, 20);
  f->pay.has_expiration_params = true;
  f->pay.expiration = f->exp;
  f->pay.has_expected_price = true;
  f->pay.expected_price = f->price;
  f->pay.n_tickets = n;
  f->pay.tickets = f->tsp;
}

static int process(fixture_t *f, pm_payment_result_t *res) {
  return pm_recipient_process_payment(f->r, f->bal, &f->pay, &f->ctx, res);
}

/* The payment is rejected with exactly this text. */
static void expect_error(fixture_t *f, const char *text, bool fatal) {
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), LP_EINVAL);
  assert_string_equal(res.err, text);
  assert_int_equal(res.fatal, fatal);
  pm_payment_result_free(&res);
}

/* Exact EV of one ticket times k, minus debits, as "num/den" computed independently here. */
static void expect_balance(fixture_t *f, unsigned tickets, uint64_t debit_num, uint64_t debit_den) {
  BN_CTX *ctx = BN_CTX_new();
  BIGNUM *fv = BN_bin2bn(f->params.face_value.b, 32, NULL);
  BIGNUM *wp = BN_bin2bn(f->params.win_prob.b, 32, NULL);
  BIGNUM *m = BN_new(), *num = BN_new(), *den = BN_new(), *t = BN_new(), *g = BN_new();
  assert_true(BN_set_bit(m, 256) && BN_sub_word(m, 1));
  /* tickets*fv*wp/M - debit_num/debit_den = (tickets*fv*wp*dd - dn*M) / (M*dd) */
  assert_true(BN_mul(num, fv, wp, ctx) && BN_mul_word(num, tickets) && BN_mul_word(num, debit_den));
  assert_true(BN_copy(t, m) && BN_mul_word(t, debit_num) && BN_sub(num, num, t));
  assert_true(BN_copy(den, m) && BN_mul_word(den, debit_den));
  assert_true(BN_gcd(g, num, den, ctx));
  if (!BN_is_zero(num))
    assert_true(BN_div(num, NULL, num, g, ctx) && BN_div(den, NULL, den, g, ctx));
  else
    assert_true(BN_one(den));
  char *ns = BN_bn2dec(num), *ds = BN_bn2dec(den);
  char want[400], got[400];
  snprintf(want, sizeof want, "%s/%s", ns, ds);
  assert_int_equal(pm_balances_get(f->bal, f->sender, SESSION, got, sizeof got), 0);
  assert_string_equal(got, want);
  OPENSSL_free(ns);
  OPENSSL_free(ds);
  BN_free(fv);
  BN_free(wp);
  BN_free(m);
  BN_free(num);
  BN_free(den);
  BN_free(t);
  BN_free(g);
  BN_CTX_free(ctx);
}

static void valid_payment_credits_exact_ev(void **state) {
  fixture_t *f = *state;
  uint32_t nonces[] = {1, 2, 3};
  char s[400];
  assert_int_equal(pm_balances_get(f->bal, f->sender, SESSION, s, sizeof s), LP_ENOENT);
  build_payment(f, nonces, 3);
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), 0);
  assert_string_equal(res.err, "");
  assert_int_equal(res.credited, 3);
  assert_int_equal(res.n_nonces, 3);
  assert_int_equal(res.nonces[2].nonce, 3);
  assert_true(res.nonces[0].expiration_block == 140);
  pm_payment_result_free(&res);
  expect_balance(f, 3, 0, 1);
  /* The first payment fixes the session's price. */
  pm_price_t fixed;
  assert_int_equal(pm_balances_fixed_price(f->bal, f->sender, SESSION, &fixed), 0);
  assert_true(fixed.price_per_unit == 1 && fixed.pixels_per_unit == 3);
}

static void params_issuing_rules(void **state) {
  fixture_t *f = *state;
  pm_u256_t fv;
  pm_ticket_params_t p1, p2;
  pm_u256_from_u64(&fv, 100000000);
  assert_int_equal(pm_recipient_ticket_params(f->r, f->sender, &fv, &f->price, &f->exp, 100, &p1),
                   0);
  assert_int_equal(pm_recipient_ticket_params(f->r, f->sender, &fv, &f->price, &f->exp, 100, &p2),
                   0);
  assert_memory_equal(p1.recipient, f->recipient, 20);
  /* A fresh seed each time, hence a fresh recipientRandHash. */
  assert_memory_not_equal(p1.seed.b, p2.seed.b, 32);
  assert_memory_not_equal(p1.recipient_rand_hash, p2.recipient_rand_hash, 32);
  uint64_t eb;
  assert_int_equal(pm_u256_to_u64(&p1.expiration_block, &eb), 0);
  assert_true(eb == 140);
  assert_int_equal(p1.expiration.creation_round, 7);
  char dec[79];
  pm_u256_to_dec(&p1.win_prob, dec);
  assert_string_equal(dec,
                      "5789604461865809771178549250434395392663499233282028201972879200395660");
  /* Free work: zero face value and probability. */
  pm_u256_from_u64(&fv, 0);
  assert_int_equal(pm_recipient_ticket_params(f->r, f->sender, &fv, &f->price, &f->exp, 100, &p1),
                   0);
  assert_true(pm_u256_is_zero(&p1.win_prob));
  /* Params the contract could never redeem, or a face value below the EV, are not issued. */
  pm_expiration_params_t none = {0};
  assert_int_equal(pm_recipient_ticket_params(f->r, f->sender, &fv, &f->price, &none, 100, &p1),
                   LP_EINVAL);
  pm_u256_from_u64(&fv, 4);
  assert_int_equal(pm_recipient_ticket_params(f->r, f->sender, &fv, &f->price, &f->exp, 100, &p1),
                   LP_ERANGE);
  pm_u256_from_u64(&fv, 100);
  assert_int_equal(
      pm_recipient_ticket_params(f->r, f->sender, &fv, &(pm_price_t){1, 0}, &f->exp, 100, &p1),
      LP_EINVAL);
}

static void payment_level_checks(void **state) {
  fixture_t *f = *state;
  uint32_t nonces[] = {1};
  pm_payment_result_t res;

  build_payment(f, nonces, 1);
  f->pay.sender_len = 0;
  assert_int_equal(process(f, &res), LP_EINVAL);
  assert_true(strncmp(res.err, "Could not find Sender for payment: ", 35) == 0);
  pm_payment_result_free(&res);

  /* No ticket params: accepted, nothing credited, no price fixed. */
  build_payment(f, nonces, 1);
  f->pay.has_ticket_params = false;
  assert_int_equal(process(f, &res), 0);
  assert_int_equal(res.credited, 0);
  pm_payment_result_free(&res);
  pm_price_t fixed;
  assert_int_equal(pm_balances_fixed_price(f->bal, f->sender, SESSION, &fixed), LP_ENOENT);

  build_payment(f, nonces, 1);
  f->ctx.recipient_inactive = true;
  expect_error(f, "orchestrator " RECIPIENT_HEX " is inactive in round 7, cannot process payments",
               true);
  f->ctx.recipient_inactive = false;

  build_payment(f, nonces, 1);
  f->pay.has_expected_price = false;
  expect_error(f, "invalid expected price sent with payment err=\"expected price is nil\"", true);
  f->pay.has_expected_price = true;
  f->pay.expected_price.pixels_per_unit = 0;
  expect_error(f, "invalid expected price sent with payment err=\"pixels per unit is 0\"", true);

  /* Hardening beyond go (spec §7). */
  f->pay.expected_price = (pm_price_t){1, -3};
  expect_error(f, "invalid expected price sent with payment err=\"pixels per unit is negative\"",
               true);
  f->pay.expected_price = (pm_price_t){-1, 3};
  expect_error(f, "invalid expected price sent with payment err=\"price per unit is not positive\"",
               true);
  f->pay.expected_price = (pm_price_t){0, 3};
  expect_error(f, "invalid expected price sent with payment err=\"price per unit is not positive\"",
               true);
  pm_price_t quoted = {2, 6};
  f->ctx.quoted_price = &quoted;
  f->pay.expected_price = (pm_price_t){1, 6};
  pm_payment_result_t r2;
  assert_int_equal(process(f, &r2), LP_EINVAL);
  assert_true(r2.bad_request);
  assert_string_equal(
      r2.err, "invalid expected price sent with payment err=\"expected price 1/6 is not the quoted "
              "price 2/6\"");
  pm_payment_result_free(&r2);
  /* The same rational in other terms is the quoted price. */
  f->pay.expected_price = (pm_price_t){1, 3};
  f->pay.has_expiration_params = false;
  assert_int_equal(process(f, &r2), LP_EINVAL);
  assert_true(r2.bad_request);
  assert_string_equal(r2.err, "missing expiration params in payment");
  pm_payment_result_free(&r2);
  f->pay.has_expiration_params = true;
  assert_int_equal(process(f, &r2), 0);
  assert_int_equal(r2.credited, 1);
  pm_payment_result_free(&r2);
  f->ctx.quoted_price = NULL;

  /* A node that does not charge takes a zero price. */
  uint32_t n2[] = {2};
  f->ctx.charging = false;
  f->price = (pm_price_t){0, 1};
  issue_params(f, 0, 100);
  build_payment(f, n2, 1);
  assert_int_equal(process(f, &r2), 0);
  assert_int_equal(r2.credited, 1);
  pm_payment_result_free(&r2);
}

static void ticket_checks_in_order(void **state) {
  fixture_t *f = *state;
  uint32_t nonces[] = {1};
  build_payment(f, nonces, 1);

  /* B1 comes first: even a bad signature is not looked at before the sender. */
  f->sender_info.error = "connection refused";
  f->tsp[0].sig_len = 10;
  expect_error(f, "could not get sender info for " SENDER_HEX ": connection refused", true);
  f->sender_info.error = NULL;
  f->sender_info.withdraw_round = 8;
  expect_error(f, "deposit and reserve for sender " SENDER_HEX " is set to unlock soon", true);
  f->sender_info.withdraw_round = 9; /* LIR + 2: not soon */
  expect_error(f, "invalid ticket signature", false);
  f->sender_info.withdraw_round = 0;

  /* C1: params for another recipient. */
  build_payment(f, nonces, 1);
  f->pay.params.recipient[0] ^= 1;
  expect_error(f, "invalid ticket recipient", true);

  /* C2 precedes C3 (a zero sender also breaks the HMAC). */
  build_payment(f, nonces, 1);
  memset(f->pay.sender, 0, 20);
  expect_error(f, "invalid ticket sender", true);

  /* C3: anything bound by the HMAC that was changed. */
  const char *rr = "invalid recipientRand for ticket recipientRandHash";
  build_payment(f, nonces, 1);
  f->pay.params.face_value.b[31] ^= 1;
  expect_error(f, rr, true);
  build_payment(f, nonces, 1);
  f->pay.params.seed.b[0] ^= 1;
  expect_error(f, rr, true);
  build_payment(f, nonces, 1);
  f->pay.params.expiration_block.b[31]++;
  expect_error(f, rr, true);
  build_payment(f, nonces, 1);
  f->pay.expected_price = (pm_price_t){2, 3};
  expect_error(f, rr, true);
  build_payment(f, nonces, 1);
  f->pay.expiration.creation_round = 8;
  expect_error(f, rr, true);
  build_payment(f, nonces, 1);
  f->pay.expiration.creation_round_block_hash[5] ^= 1;
  expect_error(f, rr, true);
  /* Field 7 inside the params is ignored: field 3 counts. */
  build_payment(f, nonces, 1);
  f->pay.params.expiration.creation_round = 99;
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), 0);
  pm_payment_result_free(&res);
  /* The price is compared as a reduced fraction, as go's big.Rat. */
  uint32_t n2[] = {2};
  build_payment(f, n2, 1);
  f->pay.expected_price = (pm_price_t){3, 9};
  assert_int_equal(process(f, &res), 0);
  pm_payment_result_free(&res);

  /* C4: another key's signature, a high-s and a short one. */
  uint32_t n3[] = {3};
  build_payment(f, n3, 1);
  uint8_t other[32] = {1};
  pm_ticket_t t;
  uint8_t h[32];
  ticket_of(f, 3, &t);
  pm_ticket_hash(&t, h);
  assert_int_equal(pm_sign_hash(other, h, f->sigs[0]), 0);
  expect_error(f, "invalid ticket signature", false);
  build_payment(f, n3, 1);
  f->sigs[0][64] = 1;
  expect_error(f, "invalid ticket signature", false);
  build_payment(f, n3, 1);
  f->tsp[0].sig_len = 64;
  expect_error(f, "invalid ticket signature", false);
  /* A signature over another nonce does not cover this ticket. */
  build_payment(f, n3, 1);
  f->tsp[0].sender_nonce = 4;
  expect_error(f, "invalid ticket signature", false);
}

static void non_fatal_error_stops_later_credits(void **state) {
  fixture_t *f = *state;
  uint32_t nonces[] = {1, 2, 3};
  build_payment(f, nonces, 3);
  f->sigs[1][10] ^= 1; /* ticket 2's signature no longer verifies */
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), LP_EINVAL);
  assert_string_equal(res.err, "invalid ticket signature");
  assert_false(res.fatal);
  assert_int_equal(res.credited, 1);
  /* Ticket 3 was valid: its nonce is taken, but its value is not credited. */
  assert_int_equal(res.n_nonces, 2);
  pm_payment_result_free(&res);
  expect_balance(f, 1, 0, 1);

  /* The last non-fatal error is the one returned. */
  uint32_t n2[] = {4, 1, 5};
  build_payment(f, n2, 3);
  f->sigs[2][10] ^= 1;
  assert_int_equal(process(f, &res), LP_EINVAL);
  assert_string_equal(res.err, "invalid ticket signature");
  assert_int_equal(res.credited, 1);
  pm_payment_result_free(&res);
}

static void replay_protection(void **state) {
  fixture_t *f = *state;
  uint32_t nonces[] = {5, 1, 9};
  build_payment(f, nonces, 3);
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), 0); /* out of order is fine */
  pm_payment_result_free(&res);
  /* Each replayed ticket fails; the last error is the one returned. */
  expect_error(f, "invalid ticket senderNonce: already seen sender=" SENDER_HEX " nonce=9", false);
  /* Within one payment too. */
  uint32_t dup[] = {2, 2};
  build_payment(f, dup, 2);
  assert_int_equal(process(f, &res), LP_EINVAL);
  assert_string_equal(res.err,
                      "invalid ticket senderNonce: already seen sender=" SENDER_HEX " nonce=2");
  assert_int_equal(res.credited, 1);
  pm_payment_result_free(&res);
  expect_balance(f, 4, 0, 1);
  /* New params start a new set: nonce 1 is fresh there. */
  issue_params(f, 100000000, 100);
  uint32_t one[] = {1};
  build_payment(f, one, 1);
  assert_int_equal(process(f, &res), 0);
  pm_payment_result_free(&res);
  assert_int_equal(pm_recipient_nonce_sets(f->r), 2);
}

static void nonce_cap_600(void **state) {
  fixture_t *f = *state;
  uint32_t nonces[601];
  for (uint32_t i = 0; i < 601; i++) nonces[i] = 1000 - i;
  build_payment(f, nonces, 600);
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), 0);
  assert_int_equal(res.credited, 600);
  pm_payment_result_free(&res);
  build_payment(f, nonces + 600, 1);
  expect_error(f, "invalid ticket senderNonce: too many values sender=" SENDER_HEX " nonce=400",
               false);
  /* A nonce already in the full set is reported as seen, not as one too many. */
  build_payment(f, nonces, 1);
  expect_error(f, "invalid ticket senderNonce: already seen sender=" SENDER_HEX " nonce=1000",
               false);
}

static void params_expiry(void **state) {
  fixture_t *f = *state;
  uint32_t nonces[] = {1};
  build_payment(f, nonces, 1);
  f->ctx.last_seen_l1_block = 140; /* expirationBlock 140 <= last seen */
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), LP_EINVAL);
  assert_string_equal(res.err, "TicketParams expired");
  assert_false(res.fatal);
  assert_int_equal(res.credited, 0);
  assert_int_equal(res.n_nonces, 1); /* the nonce is still taken, as in go */
  pm_payment_result_free(&res);
  /* The replay check comes before the expiry check. */
  expect_error(f, "invalid ticket senderNonce: already seen sender=" SENDER_HEX " nonce=1", false);
  f->ctx.last_seen_l1_block = 139;
  uint32_t n2[] = {2};
  build_payment(f, n2, 1);
  assert_int_equal(process(f, &res), 0);
  assert_int_equal(res.credited, 1);
  pm_payment_result_free(&res);
  /* Expiring the sets at block 140 drops the map entry. */
  assert_int_equal(pm_recipient_nonce_sets(f->r), 1);
  assert_int_equal(pm_recipient_expire_nonces(f->r, 139), 0);
  assert_int_equal(pm_recipient_expire_nonces(f->r, 140), 1);
  assert_int_equal(pm_recipient_nonce_sets(f->r), 0);
}

static void winners_are_reported(void **state) {
  fixture_t *f = *state;
  /* faceValue == EV makes winProb 2^256 - 1: every ticket wins. */
  issue_params(f, 5, 100);
  char dec[79];
  pm_u256_to_dec(&f->params.win_prob, dec);
  assert_string_equal(
      dec, "115792089237316195423570985008687907853269984665640564039457584007913129639935");
  uint32_t nonces[] = {1, 2, 3};
  build_payment(f, nonces, 3);
  f->sigs[1][10] ^= 1; /* a bad signature never wins */
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), LP_EINVAL);
  assert_int_equal(res.n_winners, 2);
  assert_int_equal(res.winners[0].ticket.sender_nonce, 1);
  assert_int_equal(res.winners[1].ticket.sender_nonce, 3);
  assert_memory_equal(res.winners[0].sig, f->sigs[0], 65);
  assert_true(res.winners[0].params_expiration_block == 140);
  assert_memory_equal(res.winners[0].ticket.sender, f->sender, 20);
  /* The stored recipientRand opens the recipientRandHash on-chain. */
  uint8_t rh[32];
  pm_rand_hash(&res.winners[0].recipient_rand, rh);
  assert_memory_equal(rh, f->params.recipient_rand_hash, 32);
  pm_payment_result_free(&res);
  /* A replayed winner is still reported (the store keeps it once), but not credited. */
  build_payment(f, nonces, 1);
  assert_int_equal(process(f, &res), LP_EINVAL);
  assert_int_equal(res.n_winners, 1);
  assert_int_equal(res.credited, 0);
  pm_payment_result_free(&res);
}

static void balance_gate_and_debits(void **state) {
  fixture_t *f = *state;
  const char *err;
  /* No balance yet: refused when the price is positive, let through when it is free. */
  assert_int_equal(pm_balances_gate(f->bal, f->sender, SESSION, &f->price, &f->ev, &err), LP_EPERM);
  assert_string_equal(err, "Insufficient balance");
  assert_int_equal(pm_balances_gate(f->bal, f->sender, SESSION, &(pm_price_t){0, 1}, &f->ev, &err),
                   0);
  assert_null(err);

  uint32_t nonces[] = {1, 2};
  build_payment(f, nonces, 2);
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), 0);
  pm_payment_result_free(&res);
  assert_int_equal(pm_balances_gate(f->bal, f->sender, SESSION, &f->price, &f->ev, &err), 0);
  /* Another session of the same sender has its own balance. */
  assert_int_equal(pm_balances_gate(f->bal, f->sender, "other", &f->price, &f->ev, &err), LP_EPERM);

  /* 1/3 wei per pixel for 10 pixels, then for 100 pixels: exact thirds, carried over. */
  assert_int_equal(pm_balances_debit(f->bal, f->sender, SESSION, &f->price, 10), 0);
  expect_balance(f, 2, 10, 3);
  assert_int_equal(pm_balances_debit(f->bal, f->sender, SESSION, &(pm_price_t){2, 6}, 100), 0);
  expect_balance(f, 2, 110, 3);
  /* Debit past zero: the balance goes negative and the gate closes. */
  assert_int_equal(pm_balances_debit(f->bal, f->sender, SESSION, &(pm_price_t){1, 1}, 1000), 0);
  expect_balance(f, 2, 3110, 3);
  char s[400];
  assert_int_equal(pm_balances_get(f->bal, f->sender, SESSION, s, sizeof s), 0);
  assert_int_equal(s[0], '-');
  assert_int_equal(pm_balances_gate(f->bal, f->sender, SESSION, &f->price, &f->ev, &err), LP_EPERM);
  assert_int_equal(pm_balances_debit(f->bal, f->sender, SESSION, &(pm_price_t){1, 0}, 1),
                   LP_EINVAL);

  /* Entries idle past the TTL go away. */
  assert_int_equal(pm_balances_expire(f->bal, lp_now_ms()), 0);
  assert_true(pm_balances_expire(f->bal, lp_now_ms() + 600001) >= 1);
  assert_int_equal(pm_balances_get(f->bal, f->sender, SESSION, s, sizeof s), LP_ENOENT);
}

static void restored_nonces_keep_replay_protection(void **state) {
  fixture_t *f = *state;
  uint32_t nonces[] = {1, 2};
  build_payment(f, nonces, 2);
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), 0);
  /* A restarted recipient with the same secret and the persisted nonces. */
  pm_recipient_t *r2 = pm_recipient_new(f->recipient, f->secret, &f->ev);
  for (size_t i = 0; i < res.n_nonces; i++)
    assert_int_equal(pm_recipient_restore_nonce(r2, &res.nonces[i]), 0);
  pm_payment_result_free(&res);
  pm_recipient_free(f->r);
  f->r = r2;
  expect_error(f, "invalid ticket senderNonce: already seen sender=" SENDER_HEX " nonce=2", false);
  uint32_t n3[] = {3};
  build_payment(f, n3, 1);
  assert_int_equal(process(f, &res), 0);
  assert_int_equal(res.credited, 1);
  pm_payment_result_free(&res);
}

static void many_param_sets(void **state) {
  fixture_t *f = *state;
  /* Enough sets to grow the map several times, then expire half and look the rest up. */
  pm_ticket_params_t keep[300];
  for (int i = 0; i < 300; i++) {
    issue_params(f, 100000000, (uint64_t)(i % 2 ? 100 : 50));
    uint32_t n[] = {1};
    build_payment(f, n, 1);
    pm_payment_result_t res;
    f->ctx.last_seen_l1_block = 0;
    assert_int_equal(process(f, &res), 0);
    pm_payment_result_free(&res);
    keep[i] = f->params;
  }
  assert_int_equal(pm_recipient_nonce_sets(f->r), 300);
  assert_int_equal(pm_recipient_expire_nonces(f->r, 90), 150);
  for (int i = 1; i < 300; i += 2) {
    f->params = keep[i];
    uint32_t n[] = {1};
    build_payment(f, n, 1);
    expect_error(f, "invalid ticket senderNonce: already seen sender=" SENDER_HEX " nonce=1",
                 false);
  }
}

/* Debits at many prices with distinct denominators widen and then re-reduce the common
 * denominator; the result must stay exactly the independently summed fraction. */
static void balances_stay_exact_across_denominators(void **state) {
  fixture_t *f = *state;
  uint32_t nonces[] = {1};
  build_payment(f, nonces, 1);
  pm_payment_result_t res;
  assert_int_equal(process(f, &res), 0);
  pm_payment_result_free(&res);

  BN_CTX *ctx = BN_CTX_new();
  BIGNUM *num = BN_new(), *den = BN_new(), *t = BN_new(), *g = BN_new();
  BIGNUM *fv = BN_bin2bn(f->params.face_value.b, 32, NULL);
  BIGNUM *wp = BN_bin2bn(f->params.win_prob.b, 32, NULL);
  assert_true(BN_mul(num, fv, wp, ctx));
  assert_true(BN_set_bit(den, 256) && BN_sub_word(den, 1));
  static const int64_t primes[] = {
      1000003, 1000033, 1000037, 1000039, 1000081, 1000099, 1000117, 1000121, 1000133, 1000151,
      1000159, 1000171, 1000183, 1000187, 1000193, 1000199, 1000211, 1000213, 1000231, 1000249,
      1000253, 1000273, 1000289, 1000291, 1000303, 1000313, 1000333, 1000357, 1000367, 1000381,
      1000393, 1000397, 1000403, 1000409, 1000423, 1000427, 1000429, 1000453, 1000457, 1000507,
      1000537, 1000541, 1000547, 1000577, 1000579, 1000589, 1000609, 1000619};
  for (size_t i = 0; i < LP_ARRAY_LEN(primes); i++) {
    pm_price_t p = {(int64_t)(i + 1), primes[i]};
    uint64_t pixels = 1000 + i;
    assert_int_equal(pm_balances_debit(f->bal, f->sender, SESSION, &p, pixels), 0);
    /* num/den -= (i+1)*pixels/prime, reduced each time */
    assert_true(BN_mul_word(num, (BN_ULONG)primes[i]));
    assert_true(BN_copy(t, den) && BN_mul_word(t, (BN_ULONG)((i + 1) * pixels)));
    assert_true(BN_sub(num, num, t) && BN_mul_word(den, (BN_ULONG)primes[i]));
    assert_true(BN_gcd(g, num, den, ctx));
    assert_true(BN_div(num, NULL, num, g, ctx) && BN_div(den, NULL, den, g, ctx));
  }
  /* Another ticket credited onto the widened denominator. */
  uint32_t n2[] = {2};
  build_payment(f, n2, 1);
  assert_int_equal(process(f, &res), 0);
  pm_payment_result_free(&res);
  BIGNUM *m = BN_new(), *ev = BN_new();
  assert_true(BN_set_bit(m, 256) && BN_sub_word(m, 1) && BN_mul(ev, fv, wp, ctx));
  /* num/den + ev/m = (num*m + ev*den) / (den*m) */
  assert_true(BN_mul(num, num, m, ctx) && BN_mul(t, ev, den, ctx) && BN_add(num, num, t) &&
              BN_mul(den, den, m, ctx));
  assert_true(BN_gcd(g, num, den, ctx));
  assert_true(BN_div(num, NULL, num, g, ctx) && BN_div(den, NULL, den, g, ctx));
  BN_free(m);
  BN_free(ev);
  char *ns = BN_bn2dec(num), *ds = BN_bn2dec(den);
  char want[2000], got[2000];
  snprintf(want, sizeof want, "%s/%s", ns, ds);
  assert_int_equal(pm_balances_get(f->bal, f->sender, SESSION, got, sizeof got), 0);
  assert_string_equal(got, want);
  OPENSSL_free(ns);
  OPENSSL_free(ds);
  BN_free(num);
  BN_free(den);
  BN_free(t);
  BN_free(g);
  BN_free(fv);
  BN_free(wp);
  BN_CTX_free(ctx);
  /* A too-small buffer is an error, not a truncated number. */
  assert_int_equal(pm_balances_get(f->bal, f->sender, SESSION, got, 10), LP_ERANGE);
}

static uint64_t xorshift(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* Garbage in any field gets an error text or is accepted, never a crash (run under ASan/UBSan). */
static void random_payments_never_crash(void **state) {
  fixture_t *f = *state;
  uint64_t x = 0x9e3779b97f4a7c15ull;
#define NEXT() xorshift(&x)
  static uint8_t junk[8][100];
  for (int round = 0; round < 400; round++) {
    uint32_t nonces[8];
    size_t n = NEXT() % 8;
    for (size_t i = 0; i < n; i++) nonces[i] = (uint32_t)NEXT();
    build_payment(f, nonces, n);
    uint64_t what = NEXT();
    if (what & 1) f->pay.params.face_value.b[NEXT() % 32] = (uint8_t)NEXT();
    if (what & 2) f->pay.params.win_prob.b[NEXT() % 32] = (uint8_t)NEXT();
    if (what & 4) memset(f->pay.params.expiration_block.b, 0xff, 32);
    if (what & 8)
      f->pay.expected_price =
          (pm_price_t){(int64_t)NEXT(), (int64_t)NEXT() | (int64_t)(NEXT() & 1)};
    if (what & 16) f->pay.expected_price = (pm_price_t){INT64_MIN, INT64_MIN};
    if (what & 32) f->pay.expiration.creation_round = (int64_t)NEXT();
    if (what & 64) f->pay.sender_len = NEXT() % 40;
    if (what & 128) f->pay.has_expected_price = false;
    if (what & 256) f->pay.has_expiration_params = false;
    for (size_t i = 0; i < n; i++) {
      if (!(NEXT() % 3)) {
        size_t len = NEXT() % 100;
        for (size_t k = 0; k < len; k++) junk[i][k] = (uint8_t)NEXT();
        f->tsp[i].sig = (what & 512) ? NULL : junk[i];
        f->tsp[i].sig_len = (what & 512) ? 0 : len;
      }
    }
    f->ctx.last_seen_l1_block = NEXT() % 200;
    f->ctx.quoted_price = (what & 1024) ? &f->price : NULL;
    pm_payment_result_t res;
    int rc = process(f, &res);
    assert_true(rc == 0 || rc == LP_EINVAL);
    if (rc)
      assert_true(res.err[0] != '\0');
    else
      assert_true(res.err[0] == '\0');
    assert_true(res.credited <= n);
    pm_payment_result_free(&res);
    char b[4000];
    int g = pm_balances_get(f->bal, f->sender, SESSION, b, sizeof b);
    assert_true(g == 0 || g == LP_ENOENT);
  }
#undef NEXT
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(valid_payment_credits_exact_ev, setup, teardown),
      cmocka_unit_test_setup_teardown(params_issuing_rules, setup, teardown),
      cmocka_unit_test_setup_teardown(payment_level_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(ticket_checks_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(non_fatal_error_stops_later_credits, setup, teardown),
      cmocka_unit_test_setup_teardown(replay_protection, setup, teardown),
      cmocka_unit_test_setup_teardown(nonce_cap_600, setup, teardown),
      cmocka_unit_test_setup_teardown(params_expiry, setup, teardown),
      cmocka_unit_test_setup_teardown(winners_are_reported, setup, teardown),
      cmocka_unit_test_setup_teardown(balance_gate_and_debits, setup, teardown),
      cmocka_unit_test_setup_teardown(restored_nonces_keep_replay_protection, setup, teardown),
      cmocka_unit_test_setup_teardown(many_param_sets, setup, teardown),
      cmocka_unit_test_setup_teardown(random_payments_never_crash, setup, teardown),
      cmocka_unit_test_setup_teardown(balances_stay_exact_across_denominators, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
