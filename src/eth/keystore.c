/* Keystore v3 files (Web3 Secret Storage), as go-ethereum and ethers write them: a scrypt or
 * PBKDF2-HMAC-SHA256 derived key, AES-128-CTR over the private key and a keccak256 MAC over the
 * second half of the derived key and the ciphertext. */
#include "lpod/eth.h"
#include "lpod/pm.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define SCRYPT_MAX_MEM (1ull << 30)
#define PBKDF2_MAX_ROUNDS 10000000u
#define KEYSTORE_MAX_FILE (1u << 20)

void eth_account_wipe(eth_account_t *acct) { OPENSSL_cleanse(acct, sizeof *acct); }

static const cJSON *member(const cJSON *o, const char *name) {
  return cJSON_GetObjectItemCaseSensitive(o, name);
}

/* A hex string member decoded into out (exactly want bytes, or up to cap when want is 0). */
static int hex_member(const cJSON *o, const char *name, uint8_t *out, size_t cap, size_t want,
                      size_t *got) {
  const cJSON *v = member(o, name);
  if (!cJSON_IsString(v)) return LP_EINVAL;
  size_t sl = strlen(v->valuestring);
  if (sl % 2 || sl / 2 > cap) return LP_EINVAL;
  int n = lp_hex_decode(v->valuestring, out, cap);
  if (n < 0 || (want && (size_t)n != want)) return LP_EINVAL;
  if (got) *got = (size_t)n;
  return 0;
}

static bool get_uint(const cJSON *o, const char *name, uint64_t max, uint64_t *out) {
  const cJSON *v = member(o, name);
  if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > (double)max ||
      v->valuedouble != (double)(uint64_t)v->valuedouble)
    return false;
  *out = (uint64_t)v->valuedouble;
  return true;
}

static int derive_key(const cJSON *crypto, const char *password, uint8_t dk[32], char *err,
                      size_t errlen) {
  const cJSON *kdf = member(crypto, "kdf");
  const cJSON *kp = member(crypto, "kdfparams");
  uint8_t salt[256];
  size_t salt_len;
  uint64_t dklen;
  if (!cJSON_IsString(kdf) || !cJSON_IsObject(kp)) {
    lp_seterr(err, errlen, "keystore: missing kdf or kdfparams");
    return LP_EINVAL;
  }
  if (hex_member(kp, "salt", salt, sizeof salt, 0, &salt_len)) {
    lp_seterr(err, errlen, "keystore: bad kdfparams.salt");
    return LP_EINVAL;
  }
  if (!get_uint(kp, "dklen", 64, &dklen) || dklen != 32) {
    lp_seterr(err, errlen, "keystore: kdfparams.dklen must be 32");
    return LP_EUNSUPP;
  }
  size_t pwlen = strlen(password);
  if (strcmp(kdf->valuestring, "scrypt") == 0) {
    uint64_t n, r, p;
    if (!get_uint(kp, "n", 1ull << 40, &n) || !get_uint(kp, "r", 1u << 16, &r) ||
        !get_uint(kp, "p", 1u << 16, &p) || (n & (n - 1)) != 0 || n < 2) {
      lp_seterr(err, errlen, "keystore: bad scrypt parameters");
      return LP_EINVAL;
    }
    /* scrypt's working set is 128*r*(N+p) bytes; refuse files that would take the host down. */
    if ((double)128 * r * ((double)n + p) > (double)SCRYPT_MAX_MEM) {
      lp_seterr(err, errlen, "keystore: scrypt parameters need more than 1 GiB");
      return LP_ERANGE;
    }
    if (!EVP_PBE_scrypt(password, pwlen, salt, salt_len, n, r, p, SCRYPT_MAX_MEM + (1 << 20), dk,
                        32)) {
      lp_seterr(err, errlen, "keystore: scrypt failed");
      return LP_ENOMEM;
    }
    return 0;
  }
  if (strcmp(kdf->valuestring, "pbkdf2") == 0) {
    uint64_t c;
    const cJSON *prf = member(kp, "prf");
    if (!cJSON_IsString(prf) || strcmp(prf->valuestring, "hmac-sha256") != 0) {
      lp_seterr(err, errlen, "keystore: pbkdf2 prf must be hmac-sha256");
      return LP_EUNSUPP;
    }
    if (!get_uint(kp, "c", PBKDF2_MAX_ROUNDS, &c)) {
      lp_seterr(err, errlen, "keystore: bad pbkdf2 round count");
      return LP_EINVAL;
    }
    if (!PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, (int)salt_len, (int)c, EVP_sha256(), 32,
                           dk)) {
      lp_seterr(err, errlen, "keystore: pbkdf2 failed");
      return LP_ENOMEM;
    }
    return 0;
  }
  lp_seterr(err, errlen, "keystore: unsupported kdf %s", kdf->valuestring);
  return LP_EUNSUPP;
}

static int aes128ctr(const uint8_t key[16], const uint8_t iv[16], const uint8_t *in, size_t n,
                     uint8_t *out) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int outl = 0, fin = 0, ok;
  if (!ctx) return LP_ENOMEM;
  ok = EVP_EncryptInit_ex(ctx, EVP_aes_128_ctr(), NULL, key, iv) &&
       EVP_EncryptUpdate(ctx, out, &outl, in, (int)n) && EVP_EncryptFinal_ex(ctx, out + outl, &fin);
  EVP_CIPHER_CTX_free(ctx);
  return ok && (size_t)(outl + fin) == n ? 0 : LP_EIO;
}

static void keystore_mac(const uint8_t dk[32], const uint8_t *ct, size_t n, uint8_t mac[32]) {
  pm_keccak_t k;
  pm_keccak_init(&k);
  pm_keccak_update(&k, dk + 16, 16);
  pm_keccak_update(&k, ct, n);
  pm_keccak_final(&k, mac);
}

int eth_keystore_decrypt(const char *json, const char *password, eth_account_t *out, char *err,
                         size_t errlen) {
  uint8_t dk[32], ct[64], iv[16], mac[32], want[32], priv[64];
  size_t ct_len = 0;
  int rc = LP_EINVAL;
  if (!json || !password || !out) return LP_EINVAL;
  cJSON *root = cJSON_Parse(json);
  if (!cJSON_IsObject(root)) {
    lp_seterr(err, errlen, "keystore: not a JSON object");
    goto out;
  }
  const cJSON *ver = member(root, "version");
  if (!cJSON_IsNumber(ver) || ver->valueint != 3) {
    lp_seterr(err, errlen, "keystore: only version 3 files are supported");
    rc = LP_EUNSUPP;
    goto out;
  }
  const cJSON *crypto = member(root, "crypto");
  if (!crypto) crypto = member(root, "Crypto");
  if (!cJSON_IsObject(crypto)) {
    lp_seterr(err, errlen, "keystore: missing crypto section");
    goto out;
  }
  const cJSON *cipher = member(crypto, "cipher");
  if (!cJSON_IsString(cipher) || strcmp(cipher->valuestring, "aes-128-ctr") != 0) {
    lp_seterr(err, errlen, "keystore: unsupported cipher");
    rc = LP_EUNSUPP;
    goto out;
  }
  if (hex_member(crypto, "ciphertext", ct, sizeof ct, 0, &ct_len) || ct_len != 32 ||
      hex_member(member(crypto, "cipherparams"), "iv", iv, sizeof iv, 16, NULL) ||
      hex_member(crypto, "mac", want, sizeof want, 32, NULL)) {
    lp_seterr(err, errlen, "keystore: bad ciphertext, iv or mac");
    goto out;
  }
  if ((rc = derive_key(crypto, password, dk, err, errlen))) goto out;
  keystore_mac(dk, ct, ct_len, mac);
  if (!lp_consttime_eq(mac, 32, want, 32)) {
    lp_seterr(err, errlen, "could not decrypt key with given password");
    rc = LP_EPERM;
    goto out;
  }
  if ((rc = aes128ctr(dk, iv, ct, ct_len, priv))) {
    lp_seterr(err, errlen, "keystore: aes-128-ctr failed");
    goto out;
  }
  memcpy(out->priv, priv, 32);
  if (pm_priv_to_addr(out->priv, out->addr)) {
    lp_seterr(err, errlen, "keystore: the decrypted key is not a valid secp256k1 key");
    eth_account_wipe(out);
    rc = LP_EINVAL;
    goto out;
  }
  const cJSON *addr = member(root, "address");
  if (cJSON_IsString(addr) && addr->valuestring[0]) {
    uint8_t fa[ETH_ADDR_LEN];
    if (pm_addr_from_hex(addr->valuestring, fa) || memcmp(fa, out->addr, ETH_ADDR_LEN) != 0) {
      lp_seterr(err, errlen, "keystore: key does not match the file's address %s",
                addr->valuestring);
      eth_account_wipe(out);
      rc = LP_EINVAL;
      goto out;
    }
  }
  rc = 0;
out:
  OPENSSL_cleanse(dk, sizeof dk);
  OPENSSL_cleanse(priv, sizeof priv);
  cJSON_Delete(root);
  return rc;
}

static void hex_add(cJSON *o, const char *name, const uint8_t *p, size_t n) {
  char buf[2 * 64 + 1];
  lp_hex_encode(p, n, buf);
  cJSON_AddStringToObject(o, name, buf);
}

int eth_keystore_encrypt(const eth_account_t *acct, const char *password,
                         const eth_keystore_kdf_t *kdf, char **json) {
  eth_keystore_kdf_t std = ETH_KEYSTORE_KDF_STANDARD;
  uint8_t salt[32], iv[16], uuid[16], dk[32], ct[32], mac[32];
  int rc = LP_ENOMEM;
  *json = NULL;
  if (!kdf) kdf = &std;
  if (RAND_bytes(salt, sizeof salt) != 1 || RAND_bytes(iv, sizeof iv) != 1 ||
      RAND_bytes(uuid, sizeof uuid) != 1)
    return LP_EIO;
  size_t pwlen = strlen(password);
  if (kdf->pbkdf2) {
    if (kdf->rounds == 0 || kdf->rounds > PBKDF2_MAX_ROUNDS) return LP_EINVAL;
    if (!PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, sizeof salt, (int)kdf->rounds, EVP_sha256(),
                           32, dk))
      return LP_ENOMEM;
  } else {
    if (kdf->n < 2 || (kdf->n & (kdf->n - 1)) || !kdf->r || !kdf->p) return LP_EINVAL;
    if (!EVP_PBE_scrypt(password, pwlen, salt, sizeof salt, kdf->n, kdf->r, kdf->p,
                        SCRYPT_MAX_MEM + (1 << 20), dk, 32))
      return LP_ENOMEM;
  }
  if ((rc = aes128ctr(dk, iv, acct->priv, 32, ct))) goto out;
  keystore_mac(dk, ct, sizeof ct, mac);

  uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);
  uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
  char id[37], h[33];
  lp_hex_encode(uuid, 16, h);
  snprintf(id, sizeof id, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);

  rc = LP_ENOMEM;
  cJSON *root = cJSON_CreateObject(), *crypto = NULL, *cp, *kp;
  if (!root) goto out;
  hex_add(root, "address", acct->addr, ETH_ADDR_LEN);
  crypto = cJSON_AddObjectToObject(root, "crypto");
  if (!crypto) goto out_json;
  cJSON_AddStringToObject(crypto, "cipher", "aes-128-ctr");
  hex_add(crypto, "ciphertext", ct, sizeof ct);
  cp = cJSON_AddObjectToObject(crypto, "cipherparams");
  if (!cp) goto out_json;
  hex_add(cp, "iv", iv, sizeof iv);
  cJSON_AddStringToObject(crypto, "kdf", kdf->pbkdf2 ? "pbkdf2" : "scrypt");
  kp = cJSON_AddObjectToObject(crypto, "kdfparams");
  if (!kp) goto out_json;
  if (kdf->pbkdf2) {
    cJSON_AddNumberToObject(kp, "c", kdf->rounds);
    cJSON_AddNumberToObject(kp, "dklen", 32);
    cJSON_AddStringToObject(kp, "prf", "hmac-sha256");
  } else {
    cJSON_AddNumberToObject(kp, "dklen", 32);
    cJSON_AddNumberToObject(kp, "n", (double)kdf->n);
    cJSON_AddNumberToObject(kp, "p", kdf->p);
    cJSON_AddNumberToObject(kp, "r", kdf->r);
  }
  hex_add(kp, "salt", salt, sizeof salt);
  hex_add(crypto, "mac", mac, sizeof mac);
  cJSON_AddStringToObject(root, "id", id);
  cJSON_AddNumberToObject(root, "version", 3);
  *json = cJSON_PrintUnformatted(root);
  rc = *json ? 0 : LP_ENOMEM;
out_json:
  cJSON_Delete(root);
out:
  OPENSSL_cleanse(dk, sizeof dk);
  return rc;
}

/* The "address" field of a keystore file, without decrypting it. */
static int file_address(const char *path, uint8_t addr[ETH_ADDR_LEN]) {
  char *buf = NULL;
  int rc = lp_file_read(path, KEYSTORE_MAX_FILE, &buf, NULL);
  if (rc) return rc;
  cJSON *root = cJSON_Parse(buf);
  free(buf);
  const cJSON *a = cJSON_IsObject(root) ? member(root, "address") : NULL;
  rc = cJSON_IsString(a) && pm_addr_from_hex(a->valuestring, addr) == 0 ? 0 : LP_EINVAL;
  cJSON_Delete(root);
  return rc;
}

static int decrypt_file(const char *path, const char *password, eth_account_t *out, char *err,
                        size_t errlen) {
  char *buf = NULL;
  int rc = lp_file_read(path, KEYSTORE_MAX_FILE, &buf, NULL);
  if (rc) {
    lp_seterr(err, errlen, "cannot read keystore file %s: %s", path, lp_strerror(rc));
    return rc;
  }
  char inner[256] = "";
  rc = eth_keystore_decrypt(buf, password, out, inner, sizeof inner);
  OPENSSL_cleanse(buf, strlen(buf));
  free(buf);
  if (rc) lp_seterr(err, errlen, "%s (keystore %s)", inner, path);
  return rc;
}

int eth_account_load(const char *keystore_path, const char *acct_addr, const char *password,
                     eth_account_t *out, char *err, size_t errlen) {
  uint8_t want[ETH_ADDR_LEN];
  bool have_want = acct_addr && *acct_addr;
  struct stat st;
  if (!password) password = "";
  if (have_want && pm_addr_from_hex(acct_addr, want)) {
    lp_seterr(err, errlen, "-ethAcctAddr %s is not an Ethereum address", acct_addr);
    return LP_EINVAL;
  }
  if (!keystore_path || !*keystore_path || stat(keystore_path, &st) != 0) {
    lp_seterr(err, errlen, "keystore path %s does not exist", keystore_path ? keystore_path : "");
    return LP_ENOENT;
  }
  if (S_ISREG(st.st_mode)) {
    int rc = decrypt_file(keystore_path, password, out, err, errlen);
    if (rc) return rc;
    if (have_want && memcmp(want, out->addr, ETH_ADDR_LEN) != 0) {
      char a[PM_ADDR_HEX_LEN];
      pm_addr_to_hex(out->addr, a);
      lp_seterr(err, errlen, "keystore %s holds %s, not -ethAcctAddr %s", keystore_path, a,
                acct_addr);
      eth_account_wipe(out);
      return LP_ENOENT;
    }
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) {
    lp_seterr(err, errlen, "keystore path %s is neither a file nor a directory", keystore_path);
    return LP_EINVAL;
  }
  DIR *d = opendir(keystore_path);
  if (!d) {
    lp_seterr(err, errlen, "cannot open keystore directory %s", keystore_path);
    return LP_EIO;
  }
  char chosen[4096] = "";
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    char path[4096];
    uint8_t fa[ETH_ADDR_LEN];
    if (e->d_name[0] == '.') continue;
    if (snprintf(path, sizeof path, "%s/%s", keystore_path, e->d_name) >= (int)sizeof path)
      continue;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (file_address(path, fa)) continue;
    if (have_want && memcmp(fa, want, ETH_ADDR_LEN) != 0) continue;
    /* Sorted choice keeps the pick independent of directory order when files repeat a key. */
    if (!found || strcmp(path, chosen) < 0) snprintf(chosen, sizeof chosen, "%s", path);
    found++;
  }
  closedir(d);
  if (found == 0) {
    if (have_want)
      lp_seterr(err, errlen, "no keystore file for account %s in %s", acct_addr, keystore_path);
    else
      lp_seterr(err, errlen, "no keystore files in %s", keystore_path);
    return LP_ENOENT;
  }
  if (found > 1 && !have_want) {
    lp_seterr(err, errlen, "%d accounts in keystore %s: choose one with -ethAcctAddr", found,
              keystore_path);
    return LP_EEXIST;
  }
  return decrypt_file(chosen, password, out, err, errlen);
}

int eth_account_create(const char *dir, const char *password, const eth_keystore_kdf_t *kdf,
                       eth_account_t *out, char *err, size_t errlen) {
  int rc = lp_mkdir_p(dir, 0700);
  if (rc) {
    lp_seterr(err, errlen, "cannot create keystore directory %s", dir);
    return rc;
  }
  /* A uniformly random 32-byte string is a valid key except with negligible probability;
   * pm_priv_to_addr rejects the rest and we draw again. */
  do {
    if (RAND_bytes(out->priv, 32) != 1) {
      lp_seterr(err, errlen, "no randomness for a new key");
      return LP_EIO;
    }
  } while (pm_priv_to_addr(out->priv, out->addr) != 0);
  char *json = NULL;
  if ((rc = eth_keystore_encrypt(out, password ? password : "", kdf, &json))) {
    lp_seterr(err, errlen, "cannot encrypt the new key: %s", lp_strerror(rc));
    eth_account_wipe(out);
    return rc;
  }
  char addr[2 * ETH_ADDR_LEN + 1], stamp[32], path[4096];
  lp_hex_encode(out->addr, ETH_ADDR_LEN, addr);
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H-%M-%S.000000000Z", &tm);
  snprintf(path, sizeof path, "%s/UTC--%s--%s", dir, stamp, addr);
  rc = lp_file_write_atomic(path, json, strlen(json), 0600);
  free(json);
  if (rc) {
    lp_seterr(err, errlen, "cannot write %s", path);
    eth_account_wipe(out);
  }
  return rc;
}
