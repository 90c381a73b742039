/* Keccak-256, EIP-191 signatures, recovery and EIP-55 addresses against known vectors. */
#include "lpod/pm.h"
#include "pm_internal.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>

static void keccak_known_vectors(void **state) {
  (void)state;
  uint8_t h[32];
  pm_keccak256("", 0, h);
  assert_hex_eq(h, 32, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  pm_keccak256("abc", 3, h);
  assert_hex_eq(h, 32, "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
  const char *fox = "The quick brown fox jumps over the lazy dog";
  pm_keccak256(fox, strlen(fox), h);
  assert_hex_eq(h, 32, "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15");
  /* Function selector of transfer(address,uint256). */
  const char *sel = "transfer(address,uint256)";
  pm_keccak256(sel, strlen(sel), h);
  assert_hex_eq(h, 4, "a9059cbb");
  const char *tb = "TicketBroker";
  pm_keccak256(tb, strlen(tb), h);
  assert_hex_eq(h, 2, "bd1a");
  const char *redeem =
      "redeemWinningTicket((address,address,uint256,uint256,uint256,bytes32,bytes),"
      "bytes,uint256)";
  pm_keccak256(redeem, strlen(redeem), h);
  assert_hex_eq(h, 4, "ec8b3cb6");
}

/* Inputs across the 136-byte block boundary, fed whole and in uneven pieces, must agree. */
static void keccak_incremental_matches_oneshot(void **state) {
  (void)state;
  uint8_t buf[1000];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 7 + 3);
  size_t lens[] = {0, 1, 7, 8, 135, 136, 137, 271, 272, 273, 1000};
  for (size_t li = 0; li < LP_ARRAY_LEN(lens); li++) {
    uint8_t a[32], b[32];
    pm_keccak256(buf, lens[li], a);
    pm_keccak_t k;
    pm_keccak_init(&k);
    size_t off = 0, step = 1;
    while (off < lens[li]) {
      size_t n = LP_MIN(step, lens[li] - off);
      pm_keccak_update(&k, buf + off, n);
      off += n;
      step = step * 3 % 17 + 1;
    }
    pm_keccak_final(&k, b);
    assert_memory_equal(a, b, 32);
  }
  /* 200 'a's: a multi-block message whose digest is independently known. */
  uint8_t h[32];
  memset(buf, 'a', 200);
  pm_keccak256(buf, 200, h);
  uint8_t h2[32];
  pm_keccak_t k;
  pm_keccak_init(&k);
  for (int i = 0; i < 200; i++) pm_keccak_update(&k, "a", 1);
  pm_keccak_final(&k, h2);
  assert_memory_equal(h, h2, 32);
}

/* A long input takes the whole-block path (the BMI2 code where the CPU has it); its digest is
 * js-sha3's, and the portable code, the streamed path and uneven pieces must all agree with it. */
static void keccak_long_input_paths_agree(void **state) {
  (void)state;
  size_t n = 100003;
  uint8_t *buf = malloc(n);
  assert_non_null(buf);
  for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(i * 7 + 3);
  const char *want = "c93fb45ce0ee7bfd20e6ce1f282ec960185615eea633620d033f0add4b20d964";
  uint8_t h[32];
  for (int generic = 0; generic <= 1; generic++) {
    pm_keccak_generic_only(generic);
    pm_keccak256(buf, n, h);
    assert_hex_eq(h, 32, want);
    /* pieces of 16 KiB + 5 bytes: each call after the first begins inside a block */
    pm_keccak_t k;
    pm_keccak_init(&k);
    for (size_t off = 0; off < n; off += 16389)
      pm_keccak_update(&k, buf + off, LP_MIN(16389, n - off));
    pm_keccak_final(&k, h);
    assert_hex_eq(h, 32, want);
  }
  pm_keccak_generic_only(false);
  free(buf);
}

/* payments.md §6.4 */
static void recover_verify_vector(void **state) {
  (void)state;
  uint8_t msg[32], sig[65], addr[20], want[20];
  const char *err = NULL;
  hex_exact("b7da355477356fc4c47fcabcf232dc77a6db9b07b7e48b76261cc55cc8fbabb3", msg, 32);
  hex_exact("206443228e8f784bc3a122de0d85eb3ebff82d6a79cca26c7eeb907099a6404f6dff57bc6828f28bd6cd0"
            "73c89d94cf3364204679ed8365fa45b5ee6af19a9841c",
            sig, 65);
  assert_int_equal(pm_addr_from_hex("0x3BadDb1eeE2105893136A3F96c8a963E9C6309d6", want), 0);
  assert_int_equal(pm_recover_hash(msg, sig, 65, addr, &err), 0);
  assert_null(err);
  assert_memory_equal(addr, want, 20);
  assert_true(pm_verify_hash(want, msg, sig, 65));

  assert_int_equal(pm_recover_hash(msg, sig, 64, addr, &err), LP_EINVAL);
  assert_string_equal(err, "invalid signature length");
  assert_false(pm_verify_hash(want, msg, sig, 64));

  uint8_t high_s[65];
  hex_exact("e742ff452d41413616a5bf43fe15dd88294e983d3d36206c2712f39083d638bde0a0fc89be718fbc1033e"
            "1d30d78be1c68081562ed2e97af876f286f3453231d1b",
            high_s, 65);
  assert_int_equal(pm_recover_hash(msg, high_s, 65, addr, &err), LP_EINVAL);
  assert_string_equal(err, "signature s value too high");

  uint8_t badv[65] = {0};
  badv[64] = 0xe5;
  assert_int_equal(pm_recover_hash(msg, badv, 65, addr, &err), LP_EINVAL);
  assert_string_equal(err, "signature v value must be 27 or 28");

  /* v given as a bare recovery id (0/1) is refused, as go-livepeer and the contract do. */
  uint8_t v01[65];
  memcpy(v01, sig, 65);
  v01[64] = 1;
  assert_int_equal(pm_recover_hash(msg, v01, 65, addr, &err), LP_EINVAL);
  assert_string_equal(err, "signature v value must be 27 or 28");

  /* Flipping v recovers some other key, never the signer. */
  v01[64] = 27;
  if (pm_recover_hash(msg, v01, 65, addr, &err) == 0) assert_memory_not_equal(addr, want, 20);
  assert_false(pm_verify_hash(want, msg, v01, 65));
  assert_false(pm_verify_hash(want, msg, NULL, 0));
}

/* s exactly n/2 passes the low-s rule; n/2 + 1 does not. */
static void low_s_boundary(void **state) {
  (void)state;
  uint8_t msg[32] = {1}, sig[65], addr[20];
  const char *err = NULL;
  memset(sig, 0x11, 32);
  hex_exact("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0", sig + 32, 32);
  sig[64] = 27;
  int rc = pm_recover_hash(msg, sig, 65, addr, &err);
  assert_true(rc == 0 || strcmp(err, "invalid signature") == 0);
  sig[63] = 0xa1;
  assert_int_equal(pm_recover_hash(msg, sig, 65, addr, &err), LP_EINVAL);
  assert_string_equal(err, "signature s value too high");
  /* r = 0 is not a valid signature even with low s. */
  memset(sig, 0, 32);
  sig[63] = 1;
  assert_int_equal(pm_recover_hash(msg, sig, 65, addr, &err), LP_EINVAL);
  assert_string_equal(err, "invalid signature");
}

/* payments.md §6.8: RFC 6979 signatures from go's test key are reproduced bit for bit. */
static void sign_rfc6979_vector(void **state) {
  (void)state;
  uint8_t priv[32], addr[20], want[20], hash[32], sig[65];
  hex_exact("fad9c8855b740a0b7ed4c221dbad0f33a83a49cad6b3fe8d5817ac83d38b6a19", priv, 32);
  assert_int_equal(pm_priv_to_addr(priv, addr), 0);
  assert_int_equal(pm_addr_from_hex("0x96216849c49358B10257cb55b28eA603c874b05E", want), 0);
  assert_memory_equal(addr, want, 20);
  char hex[PM_ADDR_HEX_LEN];
  pm_addr_to_hex(addr, hex);
  assert_string_equal(hex, "0x96216849c49358B10257cb55b28eA603c874b05E");

  hex_exact("661da906f07f510ba9b9bda41d30e9e7daaa04f4df199536e7b091e4ebaa26bd", hash, 32);
  uint8_t digest[32];
  pm_personal_digest(hash, digest);
  assert_hex_eq(digest, 32, "0be21aa60fcbcfde408baafb796c9123d9e622dfb2da7c808a742f8e0a0eb288");
  assert_int_equal(pm_sign_hash(priv, hash, sig), 0);
  assert_hex_eq(sig, 65,
                "98ef710de55f9dd053097bc45b6831292701edaaa9a3248c5b6456d73538f09e675f03888f0f899d6"
                "8130e730556687a33b24b6b8df8fcbf1df1478496c269d01b");
  assert_true(pm_verify_hash(addr, hash, sig, 65));

  hex_exact("b15a633c26753a21f023afc706ba72b28ccd11ed1fbde85e772a77daa52370ad", hash, 32);
  assert_int_equal(pm_sign_hash(priv, hash, sig), 0);
  assert_hex_eq(sig, 65,
                "86edba67159c699fcadae37d061fb195f7e4f9be11ce8d3fc63f52c929c22558693791f0101245b39"
                "cc602451dc4e1d737f6d8202062a54d2e629172b03e291c1b");

  /* Raw digest signing round-trips through recovery with the 0/1 id. */
  uint8_t sig64[64];
  int recid = -1;
  assert_int_equal(pm_sign_digest(priv, digest, sig64, &recid), 0);
  assert_true(recid == 0 || recid == 1);
  assert_int_equal(pm_recover_digest(digest, sig64, recid, addr), 0);
  assert_memory_equal(addr, want, 20);

  uint8_t zero[32] = {0};
  assert_int_equal(pm_priv_to_addr(zero, addr), LP_EINVAL);
  assert_int_equal(pm_sign_hash(zero, hash, sig), LP_EINVAL);
}

/* protocol.md §3.2: the request signature is Sign(ascii(EIP-55 address)). */
static void orchestrator_request_vector(void **state) {
  (void)state;
  uint8_t zero[20] = {0}, h[32], digest[32];
  char hex[PM_ADDR_HEX_LEN];
  pm_addr_to_hex(zero, hex);
  assert_string_equal(hex, "0x0000000000000000000000000000000000000000");
  pm_keccak256(hex, strlen(hex), h);
  assert_hex_eq(h, 32, "918d5359431a7007dec0d4722530b0726c0e1010a959bd8b871a6a5d6337144a");
  pm_personal_digest(h, digest);
  assert_hex_eq(digest, 32, "1aabd43da830630fee8eeb40ffb6569104d0b418c2cefd596c0ef530df4642ff");

  /* A gateway key signs its own address string; the orchestrator verifies it. */
  uint8_t priv[32], addr[20], sig[65];
  hex_exact("fad9c8855b740a0b7ed4c221dbad0f33a83a49cad6b3fe8d5817ac83d38b6a19", priv, 32);
  assert_int_equal(pm_priv_to_addr(priv, addr), 0);
  pm_addr_to_hex(addr, hex);
  assert_int_equal(pm_sign_msg(priv, hex, strlen(hex), sig), 0);
  assert_true(pm_verify_msg(addr, hex, strlen(hex), sig, 65));
  assert_false(pm_verify_msg(zero, hex, strlen(hex), sig, 65));
  /* The request carries the address bytes; the last 20 bytes count, as in BytesToAddress. */
  assert_true(pm_verify_orch_request(addr, 20, sig, 65));
  uint8_t padded[32] = {0xee, 0xee};
  memcpy(padded + 12, addr, 20);
  assert_true(pm_verify_orch_request(padded, 32, sig, 65));
  assert_false(pm_verify_orch_request(zero, 20, sig, 65));
  assert_false(pm_verify_orch_request(addr, 20, sig, 64));
  assert_false(pm_verify_orch_request(NULL, 0, NULL, 0));
  /* A signature over the lowercase string is not the EIP-55 one go signs. */
  char lower[PM_ADDR_HEX_LEN];
  lp_hex_encode(addr, 20, lower + 2);
  lower[0] = '0';
  lower[1] = 'x';
  assert_int_equal(pm_sign_msg(priv, lower, strlen(lower), sig), 0);
  assert_false(pm_verify_orch_request(addr, 20, sig, 65));
  hex[2] = hex[2] == 'a' ? 'b' : 'a';
  assert_false(pm_verify_msg(addr, hex, strlen(hex), sig, 65));
}

static void eip55_vectors(void **state) {
  (void)state;
  /* The EIP-55 reference examples plus the addresses printed in payments.md. */
  const char *addrs[] = {
      "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
      "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
      "0x3eE860A4abA830AF84EbBCE2b381fc11DB8493e2", "0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F",
      "0xA69cdA26600c155cF2c150964Bdb5371ac3f606F", "0x9C10672CEE058Fd658103d90872fE431bb6C0AFa",
  };
  for (size_t i = 0; i < LP_ARRAY_LEN(addrs); i++) {
    uint8_t a[20];
    char lower[PM_ADDR_HEX_LEN], out[PM_ADDR_HEX_LEN];
    for (size_t j = 0; j < PM_ADDR_HEX_LEN; j++)
      lower[j] =
          (char)((addrs[i][j] >= 'A' && addrs[i][j] <= 'F') ? addrs[i][j] + 32 : addrs[i][j]);
    assert_int_equal(pm_addr_from_hex(lower, a), 0);
    pm_addr_to_hex(a, out);
    assert_string_equal(out, addrs[i]);
  }
  uint8_t a[20];
  assert_int_equal(pm_addr_from_hex("0x1234", a), LP_EINVAL);
  assert_int_equal(pm_addr_from_hex("0xzz6916095ca1df60bB79Ce92cE3Ea74c37c5d359", a), LP_EINVAL);
  assert_int_equal(pm_addr_from_hex(NULL, a), LP_EINVAL);
}

static void bytes_to_fixed_rules(void **state) {
  (void)state;
  uint8_t in[25], out[20];
  for (int i = 0; i < 25; i++) in[i] = (uint8_t)i;
  pm_bytes_to_fixed(in, 25, out, 20);
  assert_int_equal(out[0], 5);
  assert_int_equal(out[19], 24);
  pm_bytes_to_fixed(in + 1, 3, out, 20);
  for (int i = 0; i < 17; i++) assert_int_equal(out[i], 0);
  assert_int_equal(out[17], 1);
  assert_int_equal(out[19], 3);
  pm_bytes_to_fixed(NULL, 0, out, 20);
  for (int i = 0; i < 20; i++) assert_int_equal(out[i], 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(keccak_known_vectors),
      cmocka_unit_test(keccak_incremental_matches_oneshot),
      cmocka_unit_test(keccak_long_input_paths_agree),
      cmocka_unit_test(recover_verify_vector),
      cmocka_unit_test(low_s_boundary),
      cmocka_unit_test(sign_rfc6979_vector),
      cmocka_unit_test(orchestrator_request_vector),
      cmocka_unit_test(eip55_vectors),
      cmocka_unit_test(bytes_to_fixed_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
