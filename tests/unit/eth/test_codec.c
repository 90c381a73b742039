/* uint256 helpers, ABI, RLP and transaction signing against vectors made with ethers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lpod/eth.h"
#include "vectors.h"

static cJSON *V;

static void dec(const char *s, pm_u256_t *out) { assert_int_equal(pm_u256_from_dec(out, s), 0); }

static void test_u256(void **state) {
  pm_u256_t a, b, r, max;
  char q[67], d[79];
  assert_int_equal(eth_u256_from_hex("0x0", &a), 0);
  eth_u256_to_quantity(&a, q);
  assert_string_equal(q, "0x0");
  assert_int_equal(eth_u256_from_hex("0x000001a", &a), 0);
  eth_u256_to_quantity(&a, q);
  assert_string_equal(q, "0x1a");
  assert_int_equal(eth_u256_from_hex("1a", &a), LP_EINVAL);
  assert_int_equal(eth_u256_from_hex("0x", &a), LP_EINVAL);
  assert_int_equal(eth_u256_from_hex("0xzz", &a), LP_EINVAL);
  memset(max.b, 0xff, 32);
  char maxhex[67] = "0x";
  memset(maxhex + 2, 'f', 64);
  maxhex[66] = 0;
  assert_int_equal(eth_u256_from_hex(maxhex, &a), 0);
  assert_int_equal(pm_u256_cmp(&a, &max), 0);
  eth_u256_to_quantity(&a, q);
  assert_string_equal(q, maxhex);
  char over[68] = "0x1";
  memset(over + 3, '0', 64);
  over[67] = 0;
  assert_int_equal(eth_u256_from_hex(over, &a), LP_ERANGE);

  pm_u256_from_u64(&b, 1);
  assert_int_equal(eth_u256_add(&r, &max, &b), LP_ERANGE);
  pm_u256_from_u64(&a, 0);
  assert_int_equal(eth_u256_sub(&r, &a, &b), LP_ERANGE);
  dec("340282366920938463463374607431768211456", &a); /* 2^128 */
  assert_int_equal(eth_u256_mul(&r, &a, &a), LP_ERANGE);
  dec("18446744073709551616", &b); /* 2^64 */
  assert_int_equal(eth_u256_mul(&r, &b, &b), 0);
  assert_int_equal(pm_u256_cmp(&r, &a), 0);
  assert_int_equal(eth_u256_sub(&r, &a, &b), 0);
  pm_u256_to_dec(&r, d);
  assert_string_equal(d, "340282366920938463444927863358058659840");
  assert_int_equal(eth_u256_add(&r, &r, &b), 0);
  assert_int_equal(pm_u256_cmp(&r, &a), 0);
  /* Spec §2.6: ceil((2^256-1)/1e8) * 5 */
  dec("100000000", &b);
  assert_int_equal(eth_u256_div(&r, &max, &b), 0);
  pm_u256_from_u64(&a, 1);
  assert_int_equal(eth_u256_add(&r, &r, &a), 0);
  pm_u256_from_u64(&a, 5);
  assert_int_equal(eth_u256_mul(&r, &r, &a), 0);
  pm_u256_to_dec(&r, d);
  assert_string_equal(d, "5789604461865809771178549250434395392663499233282028201972879200395660");
  pm_u256_from_u64(&a, 0);
  assert_int_equal(eth_u256_div(&r, &b, &a), LP_EINVAL);
}

static pm_ticket_t mainnet_ticket(void) {
  pm_ticket_t t;
  memset(&t, 0, sizeof t);
  assert_int_equal(pm_addr_from_hex("0x9C10672CEE058Fd658103d90872fE431bb6C0AFa", t.recipient), 0);
  assert_int_equal(pm_addr_from_hex("0x3eE860A4abA830AF84EbBCE2b381fc11DB8493e2", t.sender), 0);
  dec("24703611594215916", &t.face_value);
  dec("4687253472865791949219216447262131914283161967982656133076290000000000000000", &t.win_prob);
  t.sender_nonce = 1;
  assert_int_equal(lp_hex_decode("d00ef48a6825d9ae93097ad55bc76057fb50afc203aa98fd4e01aa6576d71298",
                                 t.recipient_rand_hash, 32),
                   32);
  t.creation_round = 1673;
  assert_int_equal(lp_hex_decode("a9f81d59be53a90a12cb12f627aa9e87c505320bad20a98fd98d5ed23bfe9a54",
                                 t.creation_round_block_hash, 32),
                   32);
  return t;
}

static const char *mainnet_sig =
    "5ff5265992f1a6563851d085f363b16ad65416baaee090ee368b59082437df7a0237214659511fc188d6a4ef5"
    "7c988bb18faa3e99826c78e9e75eb29366745891b";
static const char *mainnet_rand =
    "21160157592767011607011497540409649304524524744605816319294275445072062630355";

static void expect_abi(const char *name, const lp_buf_t *got) {
  const cJSON *v = vectors_find(cJSON_GetObjectItem(V, "abi"), "name", name);
  assert_non_null(v);
  size_t n;
  uint8_t *want = vectors_hex(cJSON_GetObjectItem(v, "data"), &n);
  assert_int_equal(got->len, n);
  assert_memory_equal(got->data, want, n);
  free(want);
}

static void test_abi_ticket_broker(void **state) {
  pm_ticket_t t = mainnet_ticket();
  uint8_t sig[65];
  pm_u256_t rand;
  assert_int_equal(lp_hex_decode(mainnet_sig, sig, sizeof sig), 65);
  dec(mainnet_rand, &rand);

  lp_buf_t b = LP_BUF_INIT;
  assert_int_equal(eth_tb_encode_redeem(&t, sig, sizeof sig, &rand, &b), 0);
  assert_int_equal(b.len, 548);
  static const uint8_t sel[4] = {0xec, 0x8b, 0x3c, 0xb6};
  assert_memory_equal(b.data, sel, 4);
  expect_abi("redeemWinningTicket", &b);

  lp_buf_reset(&b);
  assert_int_equal(eth_tb_encode_get_ticket_hash(&t, &b), 0);
  expect_abi("getTicketHash", &b);

  /* Round 0 with a zero hash has empty auxData (spec §1.3). */
  pm_ticket_t t2 = t;
  t2.sender_nonce = 7;
  t2.creation_round = 0;
  memset(t2.creation_round_block_hash, 0, 32);
  lp_buf_reset(&b);
  assert_int_equal(eth_tb_encode_get_ticket_hash(&t2, &b), 0);
  expect_abi("getTicketHashEmptyAux", &b);
  lp_buf_free(&b);
}

/* Nested dynamic data: tuple[] with bytes members, bytes[] and uint256[]. */
static void test_abi_nested_arrays(void **state) {
  pm_ticket_t t[2] = {mainnet_ticket(), mainnet_ticket()};
  t[1].sender_nonce = 7;
  t[1].creation_round = 0;
  memset(t[1].creation_round_block_hash, 0, 32);
  uint8_t sig[65], short_sig[2] = {0x12, 0x34}, aux[2][64];
  pm_u256_t rand[2];
  assert_int_equal(lp_hex_decode(mainnet_sig, sig, sizeof sig), 65);
  dec(mainnet_rand, &rand[0]);
  pm_u256_from_u64(&rand[1], 5);
  eth_abi_arg_t fields[2][7], tickets[2], sigs[2], rands[2];
  for (int i = 0; i < 2; i++) {
    size_t an = pm_aux_data(t[i].creation_round, t[i].creation_round_block_hash, aux[i]);
    fields[i][0] = eth_abi_addr(t[i].recipient);
    fields[i][1] = eth_abi_addr(t[i].sender);
    fields[i][2] = eth_abi_uint(&t[i].face_value);
    fields[i][3] = eth_abi_uint(&t[i].win_prob);
    fields[i][4] = eth_abi_u64(t[i].sender_nonce);
    fields[i][5] = eth_abi_b32(t[i].recipient_rand_hash);
    fields[i][6] = eth_abi_bytes(aux[i], an);
    tickets[i] = eth_abi_tuple(fields[i], 7);
    rands[i] = eth_abi_uint(&rand[i]);
  }
  sigs[0] = eth_abi_bytes(sig, sizeof sig);
  sigs[1] = eth_abi_bytes(short_sig, sizeof short_sig);
  eth_abi_arg_t args[3] = {eth_abi_array(tickets, 2), eth_abi_array(sigs, 2),
                           eth_abi_array(rands, 2)};
  lp_buf_t b = LP_BUF_INIT;
  assert_int_equal(
      eth_abi_encode_call("batchRedeemWinningTickets((address,address,uint256,uint256,uint256,"
                          "bytes32,bytes)[],bytes[],uint256[])",
                          args, 3, &b),
      0);
  expect_abi("batchRedeemWinningTickets", &b);

  lp_buf_reset(&b);
  eth_abi_arg_t one[2] = {eth_abi_addr(t[0].sender), eth_abi_addr(t[0].recipient)};
  assert_int_equal(eth_abi_encode_call("claimedReserve(address,address)", one, 2, &b), 0);
  expect_abi("claimedReserve", &b);
  lp_buf_free(&b);
}

static void test_abi_decode(void **state) {
  uint8_t d[128];
  memset(d, 0, sizeof d);
  uint8_t addr[20];
  bool flag;
  uint64_t u;
  const uint8_t *p;
  size_t n;
  d[31] = 1;      /* word 0: true */
  d[63] = 0x40;   /* word 1: offset of bytes */
  d[64 + 31] = 3; /* length */
  memcpy(d + 96, "abc", 3);
  assert_int_equal(eth_abi_get_bool(d, sizeof d, 0, &flag), 0);
  assert_true(flag);
  assert_int_equal(eth_abi_get_bytes(d, sizeof d, 1, &p, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(p, "abc", 3);
  assert_int_equal(eth_abi_get_addr(d, sizeof d, 0, addr), 0);
  assert_int_equal(eth_abi_get_u64(d, sizeof d, 4, &u), LP_EPROTO); /* past the end */
  assert_int_equal(eth_abi_get_u64(d, 31, 0, &u), LP_EPROTO);
  d[64 + 31] = 200; /* length past the end */
  assert_int_equal(eth_abi_get_bytes(d, sizeof d, 1, &p, &n), LP_EPROTO);
  d[63] = 0x70; /* offset leaves no room for the length word */
  assert_int_equal(eth_abi_get_bytes(d, sizeof d, 1, &p, &n), LP_EPROTO);
  memset(d + 32, 0xff, 32); /* huge offset */
  assert_int_equal(eth_abi_get_bytes(d, sizeof d, 1, &p, &n), LP_EPROTO);
  d[0] = 1; /* dirty high bytes are no address */
  assert_int_equal(eth_abi_get_addr(d, sizeof d, 0, addr), LP_EPROTO);
  d[0] = 0;
  d[31] = 2;
  assert_int_equal(eth_abi_get_bool(d, sizeof d, 0, &flag), LP_EPROTO);

  /* Error(string) revert data: "ticket is expired" */
  lp_buf_t b = LP_BUF_INIT;
  const char *reason = "ticket is expired";
  eth_abi_arg_t s = eth_abi_bytes(reason, strlen(reason));
  assert_int_equal(eth_abi_encode_call("Error(string)", &s, 1, &b), 0);
  char out[64];
  assert_int_equal(eth_abi_revert_reason(b.data, b.len, out, sizeof out), 0);
  assert_string_equal(out, reason);
  assert_int_equal(eth_abi_revert_reason(b.data, b.len, out, 7), 0);
  assert_string_equal(out, "ticket");
  assert_int_equal(eth_abi_revert_reason(b.data, b.len - 40, out, sizeof out), LP_ENOENT);
  b.data[0] ^= 1;
  assert_int_equal(eth_abi_revert_reason(b.data, b.len, out, sizeof out), LP_ENOENT);
  lp_buf_free(&b);
}

static int rlp_encode_json(const cJSON *v, lp_buf_t *b) {
  if (cJSON_IsArray(v)) {
    size_t start = b->len;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
      int rc = rlp_encode_json(e, b);
      if (rc) return rc;
    }
    return eth_rlp_end_list(b, start);
  }
  size_t n;
  uint8_t *p = vectors_hex(v, &n);
  int rc = eth_rlp_put_bytes(b, p, n);
  free(p);
  return rc;
}

/* Walks a decoded item against the JSON value it came from. */
static void rlp_check_decoded(const eth_rlp_item_t *it, const cJSON *v) {
  if (cJSON_IsArray(v)) {
    assert_true(it->is_list);
    const uint8_t *p = it->p;
    size_t len = it->len;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
      eth_rlp_item_t sub;
      assert_int_equal(eth_rlp_next(&p, &len, &sub), 0);
      rlp_check_decoded(&sub, e);
    }
    assert_int_equal(len, 0);
    return;
  }
  assert_false(it->is_list);
  size_t n;
  uint8_t *want = vectors_hex(v, &n);
  assert_int_equal(it->len, n);
  if (n) assert_memory_equal(it->p, want, n);
  free(want);
}

static void test_rlp(void **state) {
  const cJSON *vec;
  int count = 0;
  cJSON_ArrayForEach(vec, cJSON_GetObjectItem(V, "rlp")) {
    lp_buf_t b = LP_BUF_INIT;
    const cJSON *value = cJSON_GetObjectItem(vec, "value");
    assert_int_equal(rlp_encode_json(value, &b), 0);
    size_t n;
    uint8_t *want = vectors_hex(cJSON_GetObjectItem(vec, "encoded"), &n);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, want, n);
    const uint8_t *p = b.data;
    size_t len = b.len;
    eth_rlp_item_t it;
    assert_int_equal(eth_rlp_next(&p, &len, &it), 0);
    assert_int_equal(len, 0);
    rlp_check_decoded(&it, value);
    /* Every truncation is refused, never read past. */
    for (size_t cut = 0; cut < b.len; cut++) {
      const uint8_t *q = b.data;
      size_t ql = cut;
      eth_rlp_item_t x;
      assert_int_equal(eth_rlp_next(&q, &ql, &x), LP_EPROTO);
    }
    free(want);
    lp_buf_free(&b);
    count++;
  }
  assert_true(count >= 10);

  /* Non-canonical forms. */
  static const uint8_t wrapped[] = {0x81, 0x05}, longshort[] = {0xb8, 0x01, 0x00},
                       zerolen[] = {0xb9, 0x00, 0x40}, listlong[] = {0xf8, 0x02, 0x01, 0x02};
  const uint8_t *cases[] = {wrapped, longshort, zerolen, listlong};
  size_t lens[] = {sizeof wrapped, sizeof longshort, sizeof zerolen, sizeof listlong};
  for (size_t i = 0; i < 4; i++) {
    const uint8_t *q = cases[i];
    size_t ql = lens[i];
    eth_rlp_item_t x;
    assert_int_equal(eth_rlp_next(&q, &ql, &x), LP_EPROTO);
  }
  lp_buf_t b = LP_BUF_INIT;
  pm_u256_t z;
  pm_u256_from_u64(&z, 0);
  assert_int_equal(eth_rlp_put_uint(&b, &z), 0);
  assert_int_equal(eth_rlp_put_u64(&b, 0x0400), 0);
  static const uint8_t want_uints[] = {0x80, 0x82, 0x04, 0x00};
  assert_int_equal(b.len, sizeof want_uints);
  assert_memory_equal(b.data, want_uints, sizeof want_uints);
  lp_buf_free(&b);
}

static uint64_t num(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  if (cJSON_IsNumber(v)) return (uint64_t)v->valuedouble;
  pm_u256_t u;
  uint64_t x = 0;
  assert_int_equal(pm_u256_from_dec(&u, cJSON_GetStringValue(v)), 0);
  assert_int_equal(pm_u256_to_u64(&u, &x), 0);
  return x;
}

static void big(const cJSON *o, const char *k, pm_u256_t *out) {
  dec(cJSON_GetStringValue(cJSON_GetObjectItem(o, k)), out);
}

static void test_tx_sign(void **state) {
  uint8_t priv[32];
  size_t n;
  uint8_t *k = vectors_hex(cJSON_GetObjectItem(V, "privateKey"), &n);
  assert_int_equal(n, 32);
  memcpy(priv, k, 32);
  free(k);
  const cJSON *vec;
  int count = 0;
  cJSON_ArrayForEach(vec, cJSON_GetObjectItem(V, "tx")) {
    const cJSON *j = cJSON_GetObjectItem(vec, "tx");
    eth_tx_t tx;
    memset(&tx, 0, sizeof tx);
    tx.type = num(j, "type") == 2 ? ETH_TX_DYNAMIC_FEE : ETH_TX_LEGACY;
    tx.chain_id = num(j, "chainId");
    tx.nonce = num(j, "nonce");
    tx.gas_limit = num(j, "gasLimit");
    if (tx.type == ETH_TX_LEGACY) {
      big(j, "gasPrice", &tx.gas_price);
    } else {
      big(j, "maxPriorityFeePerGas", &tx.max_priority_fee);
      big(j, "maxFeePerGas", &tx.max_fee);
    }
    const char *to = cJSON_GetStringValue(cJSON_GetObjectItem(j, "to"));
    tx.has_to = to != NULL;
    if (to) assert_int_equal(pm_addr_from_hex(to, tx.to), 0);
    big(j, "value", &tx.value);
    size_t dl;
    uint8_t *data = vectors_hex(cJSON_GetObjectItem(j, "data"), &dl);
    tx.data = data;
    tx.data_len = dl;

    uint8_t sh[32], th[32];
    size_t wn;
    assert_int_equal(eth_tx_signing_hash(&tx, sh), 0);
    uint8_t *want = vectors_hex(cJSON_GetObjectItem(vec, "unsignedHash"), &wn);
    assert_memory_equal(sh, want, 32);
    free(want);

    lp_buf_t raw = LP_BUF_INIT;
    assert_int_equal(eth_tx_sign(&tx, priv, &raw, th), 0);
    want = vectors_hex(cJSON_GetObjectItem(vec, "raw"), &wn);
    assert_int_equal(raw.len, wn);
    assert_memory_equal(raw.data, want, wn);
    free(want);
    want = vectors_hex(cJSON_GetObjectItem(vec, "hash"), &wn);
    assert_memory_equal(th, want, 32);
    free(want);
    lp_buf_free(&raw);
    free(data);
    count++;
  }
  assert_int_equal(count, 4);

  eth_tx_t bad;
  memset(&bad, 0, sizeof bad);
  uint8_t h[32];
  assert_int_equal(eth_tx_signing_hash(&bad, h), LP_EINVAL); /* chain id 0 */
  bad.chain_id = 1;
  bad.type = (eth_tx_type_t)1;
  assert_int_equal(eth_tx_signing_hash(&bad, h), LP_EINVAL);
}

static void test_max_float(void **state) {
  struct {
    uint64_t funds, claimed_round, pool, claimed, deposit, pending, want;
    bool neg;
  } cases[] = {
      {10, 2, 3, 1, 0, 0, 3, false}, /* (10+2)/3 - 1 */
      {10, 2, 3, 1, 6, 2, 3, false}, /* deposit covers 3x pending: pending not subtracted */
      {10, 2, 3, 1, 5, 2, 1, false}, /* it does not */
      {10, 2, 3, 1, 0, 5, 0, true},  /* below zero, clamped */
      {10, 2, 0, 0, 0, 0, 0, false}, /* empty pool */
      {3, 0, 3, 2, 0, 0, 0, true},   /* claimed more than this recipient's share */
      {11, 0, 2, 0, 0, 0, 5, false}, /* integer division */
  };
  for (size_t i = 0; i < LP_ARRAY_LEN(cases); i++) {
    eth_sender_info_t info;
    memset(&info, 0, sizeof info);
    pm_u256_t claimed, pending, out;
    pm_u256_from_u64(&info.reserve_funds, cases[i].funds);
    pm_u256_from_u64(&info.reserve_claimed, cases[i].claimed_round);
    pm_u256_from_u64(&info.deposit, cases[i].deposit);
    pm_u256_from_u64(&claimed, cases[i].claimed);
    pm_u256_from_u64(&pending, cases[i].pending);
    bool neg = !cases[i].neg;
    assert_int_equal(eth_sender_max_float(&info, &claimed, cases[i].pool, &pending, &out, &neg), 0);
    uint64_t got;
    assert_int_equal(pm_u256_to_u64(&out, &got), 0);
    assert_int_equal(got, cases[i].want);
    assert_int_equal(neg, cases[i].neg);
  }
}

static void test_network_defaults(void **state) {
  eth_network_t n;
  char a[PM_ADDR_HEX_LEN];
  assert_int_equal(eth_network_defaults("arbitrum-one-mainnet", &n), 0);
  assert_true(n.has_controller);
  pm_addr_to_hex(n.controller, a);
  assert_string_equal(a, "0xD8E8328501E9645d16Cf49539efC04f734606ee4");
  assert_int_equal(n.redeem_gas, 1200000);
  assert_int_equal(n.chain_id, 42161);
  assert_int_equal(eth_network_defaults("devenv", &n), 0);
  assert_false(n.has_controller);
  assert_int_equal(n.redeem_gas, 350000);
  assert_int_equal(n.min_gas_price, 0);
  assert_int_equal(n.chain_id, 0);
  assert_int_equal(eth_network_defaults("offchain", &n), LP_EINVAL);
}

static int setup(void **state) {
  V = vectors_load();
  return V ? 0 : -1;
}

static int teardown(void **state) {
  cJSON_Delete(V);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_u256),
      cmocka_unit_test(test_abi_ticket_broker),
      cmocka_unit_test(test_abi_nested_arrays),
      cmocka_unit_test(test_abi_decode),
      cmocka_unit_test(test_rlp),
      cmocka_unit_test(test_tx_sign),
      cmocka_unit_test(test_max_float),
      cmocka_unit_test(test_network_defaults),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
