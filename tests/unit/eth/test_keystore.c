/* Keystore v3 decryption against files written by ethers, encryption round trips, wrong
 * passwords, damaged files and -ethKeystorePath as a file or a directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lpod/eth.h"
#include "vectors.h"

static cJSON *V;

static void expect_account(const eth_account_t *a, const cJSON *vec) {
  uint8_t addr[20];
  size_t n;
  assert_int_equal(
      pm_addr_from_hex(cJSON_GetStringValue(cJSON_GetObjectItem(vec, "address")), addr), 0);
  assert_memory_equal(a->addr, addr, 20);
  uint8_t *priv = vectors_hex(cJSON_GetObjectItem(vec, "privateKey"), &n);
  assert_int_equal(n, 32);
  assert_memory_equal(a->priv, priv, 32);
  free(priv);
}

static void test_decrypt_ethers_files(void **state) {
  const cJSON *vec;
  int count = 0, pbkdf2 = 0;
  cJSON_ArrayForEach(vec, cJSON_GetObjectItem(V, "keystores")) {
    const char *json = cJSON_GetStringValue(cJSON_GetObjectItem(vec, "json"));
    const char *pw = cJSON_GetStringValue(cJSON_GetObjectItem(vec, "password"));
    eth_account_t a;
    char err[256] = "";
    assert_int_equal(eth_keystore_decrypt(json, pw, &a, err, sizeof err), 0);
    expect_account(&a, vec);
    eth_account_wipe(&a);

    /* A wrong password is told apart from a broken file. */
    assert_int_equal(eth_keystore_decrypt(json, "wrong", &a, err, sizeof err), LP_EPERM);
    assert_string_equal(err, "could not decrypt key with given password");
    pbkdf2 += strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(vec, "kdf")), "pbkdf2") == 0;
    count++;
  }
  assert_int_equal(count, 3);
  assert_int_equal(pbkdf2, 1);
}

/* Replaces the first occurrence of from with to in a copy of s. */
static char *replace(const char *s, const char *from, const char *to) {
  const char *at = strstr(s, from);
  assert_non_null(at);
  size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
  return out;
}

static void test_damaged_files(void **state) {
  const cJSON *vec = cJSON_GetArrayItem(cJSON_GetObjectItem(V, "keystores"), 0);
  const char *json = cJSON_GetStringValue(cJSON_GetObjectItem(vec, "json"));
  eth_account_t a;
  char err[256];
  assert_int_equal(eth_keystore_decrypt("", "x", &a, err, sizeof err), LP_EINVAL);
  assert_int_equal(eth_keystore_decrypt("[1,2]", "x", &a, err, sizeof err), LP_EINVAL);
  assert_int_equal(eth_keystore_decrypt("{\"version\":3}", "x", &a, err, sizeof err), LP_EINVAL);
  assert_int_equal(eth_keystore_decrypt("{\"version\":1}", "x", &a, err, sizeof err), LP_EUNSUPP);

  struct {
    const char *from, *to;
    int rc;
  } cases[] = {
      {"\"kdf\":\"scrypt\"", "\"kdf\":\"argon2\"", LP_EUNSUPP},
      {"aes-128-ctr", "aes-128-cbc", LP_EUNSUPP},
      {"\"n\":1024", "\"n\":1000", LP_EINVAL},
      {"\"n\":1024", "\"n\":1099511627776", LP_ERANGE},
      {"\"n\":1024", "\"n\":-4", LP_EINVAL},
      {"\"dklen\":32", "\"dklen\":16", LP_EUNSUPP},
      {"\"iv\":\"", "\"iv\":\"zz", LP_EINVAL},
      {"\"address\":\"", "\"address\":\"00", LP_EINVAL},
  };
  for (size_t i = 0; i < LP_ARRAY_LEN(cases); i++) {
    char *bad = replace(json, cases[i].from, cases[i].to);
    err[0] = 0;
    assert_int_equal(eth_keystore_decrypt(bad, "lpod-test", &a, err, sizeof err), cases[i].rc);
    assert_true(err[0] != 0);
    free(bad);
  }
  /* A flipped ciphertext byte fails the MAC, which reads as a wrong password (as in geth). */
  const char *ct = strstr(json, "\"ciphertext\":\"");
  assert_non_null(ct);
  char *bad = strdup(json);
  char *c = bad + (ct - json) + strlen("\"ciphertext\":\"");
  *c = *c == '0' ? '1' : '0';
  assert_int_equal(eth_keystore_decrypt(bad, "lpod-test", &a, err, sizeof err), LP_EPERM);
  free(bad);
}

static void test_encrypt_roundtrip(void **state) {
  eth_account_t acct, back;
  memset(acct.priv, 0x22, 32);
  assert_int_equal(pm_priv_to_addr(acct.priv, acct.addr), 0);
  eth_keystore_kdf_t kdfs[2] = {{false, 1024, 8, 1, 0}, {true, 0, 0, 0, 2000}};
  for (int i = 0; i < 2; i++) {
    char *json = NULL, err[256];
    assert_int_equal(eth_keystore_encrypt(&acct, "secret", &kdfs[i], &json), 0);
    assert_int_equal(eth_keystore_decrypt(json, "secret", &back, err, sizeof err), 0);
    assert_memory_equal(back.priv, acct.priv, 32);
    assert_memory_equal(back.addr, acct.addr, 20);
    assert_int_equal(eth_keystore_decrypt(json, "Secret", &back, err, sizeof err), LP_EPERM);
    free(json);
  }
  eth_keystore_kdf_t bad = {false, 1000, 8, 1, 0};
  char *json = NULL;
  assert_int_equal(eth_keystore_encrypt(&acct, "x", &bad, &json), LP_EINVAL);
  assert_null(json);
}

static void write_file(const char *dir, const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  assert_int_equal(lp_file_write_atomic(path, text, strlen(text), 0600), 0);
}

static void test_account_load(void **state) {
  char dir[] = "/tmp/lpod-eth-ks-XXXXXX";
  assert_non_null(mkdtemp(dir));
  const cJSON *ks = cJSON_GetObjectItem(V, "keystores");
  const cJSON *k0 = cJSON_GetArrayItem(ks, 0), *k1 = cJSON_GetArrayItem(ks, 1);
  const char *a0 = cJSON_GetStringValue(cJSON_GetObjectItem(k0, "address"));
  const char *a1 = cJSON_GetStringValue(cJSON_GetObjectItem(k1, "address"));
  eth_account_t a;
  char err[512];

  assert_int_equal(eth_account_load(dir, NULL, "", &a, err, sizeof err), LP_ENOENT);
  assert_non_null(strstr(err, "no keystore files"));

  write_file(dir, "UTC--a", cJSON_GetStringValue(cJSON_GetObjectItem(k0, "json")));
  write_file(dir, "notes.txt", "not a keystore");
  assert_int_equal(eth_account_load(dir, NULL, "lpod-test", &a, err, sizeof err), 0);
  expect_account(&a, k0);
  assert_int_equal(eth_account_load(dir, NULL, "bad", &a, err, sizeof err), LP_EPERM);
  assert_non_null(strstr(err, "could not decrypt key with given password"));

  write_file(dir, "UTC--b", cJSON_GetStringValue(cJSON_GetObjectItem(k1, "json")));
  assert_int_equal(eth_account_load(dir, NULL, "lpod-test", &a, err, sizeof err), LP_EEXIST);
  assert_non_null(strstr(err, "-ethAcctAddr"));
  assert_int_equal(eth_account_load(dir, a1, "", &a, err, sizeof err), 0);
  expect_account(&a, k1);
  assert_int_equal(
      eth_account_load(dir, "0x0000000000000000000000000000000000000001", "", &a, err, sizeof err),
      LP_ENOENT);
  assert_int_equal(eth_account_load(dir, "nonsense", "", &a, err, sizeof err), LP_EINVAL);

  char file[512];
  snprintf(file, sizeof file, "%s/UTC--a", dir);
  assert_int_equal(eth_account_load(file, a0, "lpod-test", &a, err, sizeof err), 0);
  expect_account(&a, k0);
  assert_int_equal(eth_account_load(file, a1, "lpod-test", &a, err, sizeof err), LP_ENOENT);
  assert_int_equal(eth_account_load("/nonexistent/keystore", NULL, "", &a, err, sizeof err),
                   LP_ENOENT);
  eth_account_wipe(&a);

  const char *names[] = {"UTC--a", "UTC--b", "notes.txt"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(file, sizeof file, "%s/%s", dir, names[i]);
    unlink(file);
  }
  rmdir(dir);
}

static void test_account_create(void **state) {
  char dir[] = "/tmp/lpod-eth-new-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char sub[600];
  snprintf(sub, sizeof sub, "%s/keystore", dir);
  eth_account_t made, loaded;
  char err[256];
  eth_keystore_kdf_t fast = {false, 1024, 8, 1, 0};
  assert_int_equal(eth_account_create(sub, "pw", &fast, &made, err, sizeof err), 0);
  assert_int_equal(eth_account_load(sub, NULL, "pw", &loaded, err, sizeof err), 0);
  assert_memory_equal(made.priv, loaded.priv, 32);
  assert_memory_equal(made.addr, loaded.addr, 20);
  char hex[PM_ADDR_HEX_LEN];
  pm_addr_to_hex(made.addr, hex);
  assert_int_equal(eth_account_load(sub, hex, "pw", &loaded, err, sizeof err), 0);
  eth_account_wipe(&made);
  eth_account_wipe(&loaded);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
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
      cmocka_unit_test(test_decrypt_ethers_files), cmocka_unit_test(test_damaged_files),
      cmocka_unit_test(test_encrypt_roundtrip),    cmocka_unit_test(test_account_load),
      cmocka_unit_test(test_account_create),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
