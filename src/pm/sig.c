/* Ethereum signatures and addresses on libsecp256k1 (recovery module). */
#include "lpod/pm.h"

#include "lpod/core.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <string.h>

/* Half the curve order: go-livepeer (and OpenZeppelin's ECDSA) reject s above it. */
static const uint8_t secp256k1_half_n[32] = {
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
};

static const char personal_prefix[] = "\x19"
                                      "Ethereum Signed Message:\n32";

/* Signing needs a context with built generator tables; the static context serves verification
 * and recovery. One signing context is shared: it is randomised once at creation and never
 * after, so concurrent use from worker threads is safe. */
static secp256k1_context *sign_ctx;
static pthread_once_t sign_ctx_once = PTHREAD_ONCE_INIT;

static void sign_ctx_create(void) {
  sign_ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
  /* Blinding against side channels on the node key; a context without it still signs correctly. */
  uint8_t seed[32];
  if (sign_ctx && RAND_bytes(seed, sizeof seed) == 1 &&
      !secp256k1_context_randomize(sign_ctx, seed))
    LOGW("pm: could not randomise the signing context");
  OPENSSL_cleanse(seed, sizeof seed);
}

static const secp256k1_context *ctx_for_signing(void) {
  pthread_once(&sign_ctx_once, sign_ctx_create);
  return sign_ctx;
}

void pm_bytes_to_fixed(const uint8_t *in, size_t len, uint8_t *out, size_t n) {
  if (len >= n) {
    memcpy(out, in + (len - n), n);
  } else {
    memset(out, 0, n - len);
    if (len) memcpy(out + (n - len), in, len);
  }
}

void pm_addr_from_pubkey(const uint8_t pub[64], uint8_t addr[PM_ADDR_LEN]) {
  uint8_t h[PM_HASH_LEN];
  pm_keccak256(pub, 64, h);
  memcpy(addr, h + 12, PM_ADDR_LEN);
}

void pm_addr_to_hex(const uint8_t addr[PM_ADDR_LEN], char out[PM_ADDR_HEX_LEN]) {
  char lower[2 * PM_ADDR_LEN + 1];
  uint8_t h[PM_HASH_LEN];
  lp_hex_encode(addr, PM_ADDR_LEN, lower);
  pm_keccak256(lower, 2 * PM_ADDR_LEN, h);
  out[0] = '0';
  out[1] = 'x';
  for (int i = 0; i < 2 * PM_ADDR_LEN; i++) {
    /* EIP-55: a letter is upper case when its nibble of keccak(lowercase hex) is >= 8. */
    int nibble = (i % 2 == 0) ? h[i / 2] >> 4 : h[i / 2] & 0x0f;
    char c = lower[i];
    if (c >= 'a' && c <= 'f' && nibble >= 8) c = (char)(c - 'a' + 'A');
    out[2 + i] = c;
  }
  out[PM_ADDR_HEX_LEN - 1] = '\0';
}

int pm_addr_from_hex(const char *s, uint8_t addr[PM_ADDR_LEN]) {
  if (!s) return LP_EINVAL;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
  if (strlen(s) != 2 * PM_ADDR_LEN) return LP_EINVAL;
  return lp_hex_decode(s, addr, PM_ADDR_LEN) == PM_ADDR_LEN ? 0 : LP_EINVAL;
}

void pm_personal_digest(const uint8_t hash[PM_HASH_LEN], uint8_t digest[PM_HASH_LEN]) {
  pm_keccak_t k;
  pm_keccak_init(&k);
  pm_keccak_update(&k, personal_prefix, sizeof personal_prefix - 1);
  pm_keccak_update(&k, hash, PM_HASH_LEN);
  pm_keccak_final(&k, digest);
}

static int pubkey_to_addr(const secp256k1_pubkey *pk, uint8_t addr[PM_ADDR_LEN]) {
  uint8_t ser[65];
  size_t n = sizeof ser;
  if (!secp256k1_ec_pubkey_serialize(secp256k1_context_static, ser, &n, pk,
                                     SECP256K1_EC_UNCOMPRESSED))
    return LP_EINVAL;
  pm_addr_from_pubkey(ser + 1, addr);
  return 0;
}

int pm_priv_to_addr(const uint8_t priv[PM_PRIV_LEN], uint8_t addr[PM_ADDR_LEN]) {
  const secp256k1_context *ctx = ctx_for_signing();
  secp256k1_pubkey pk;
  if (!ctx) return LP_ENOMEM;
  if (!secp256k1_ec_pubkey_create(ctx, &pk, priv)) return LP_EINVAL;
  return pubkey_to_addr(&pk, addr);
}

int pm_sign_digest(const uint8_t priv[PM_PRIV_LEN], const uint8_t digest[PM_HASH_LEN],
                   uint8_t sig64[64], int *recid) {
  const secp256k1_context *ctx = ctx_for_signing();
  secp256k1_ecdsa_recoverable_signature rs;
  if (!ctx) return LP_ENOMEM;
  /* The default nonce function is RFC 6979 and the result is low-s normalised, as go-ethereum's. */
  if (!secp256k1_ecdsa_sign_recoverable(ctx, &rs, digest, priv, NULL, NULL)) return LP_EINVAL;
  secp256k1_ecdsa_recoverable_signature_serialize_compact(secp256k1_context_static, sig64, recid,
                                                          &rs);
  return 0;
}

int pm_sign_hash(const uint8_t priv[PM_PRIV_LEN], const uint8_t hash[PM_HASH_LEN],
                 uint8_t sig[PM_SIG_LEN]) {
  uint8_t digest[PM_HASH_LEN];
  int recid = 0;
  pm_personal_digest(hash, digest);
  int rc = pm_sign_digest(priv, digest, sig, &recid);
  if (rc) return rc;
  sig[64] = (uint8_t)(27 + recid);
  return 0;
}

int pm_sign_msg(const uint8_t priv[PM_PRIV_LEN], const void *msg, size_t len,
                uint8_t sig[PM_SIG_LEN]) {
  uint8_t h[PM_HASH_LEN];
  pm_keccak256(msg, len, h);
  return pm_sign_hash(priv, h, sig);
}

int pm_recover_digest(const uint8_t digest[PM_HASH_LEN], const uint8_t sig64[64], int recid,
                      uint8_t addr[PM_ADDR_LEN]) {
  secp256k1_ecdsa_recoverable_signature rs;
  secp256k1_pubkey pk;
  if (recid < 0 || recid > 3) return LP_EINVAL;
  /* parse_compact rejects r or s >= n; recover rejects r = 0, s = 0 and points off the curve. */
  if (!secp256k1_ecdsa_recoverable_signature_parse_compact(secp256k1_context_static, &rs, sig64,
                                                           recid))
    return LP_EINVAL;
  if (!secp256k1_ecdsa_recover(secp256k1_context_static, &pk, &rs, digest)) return LP_EINVAL;
  return pubkey_to_addr(&pk, addr);
}

int pm_recover_hash(const uint8_t hash[PM_HASH_LEN], const uint8_t *sig, size_t sig_len,
                    uint8_t addr[PM_ADDR_LEN], const char **err) {
  const char *e = NULL;
  if (!sig || sig_len != PM_SIG_LEN) {
    e = "invalid signature length";
  } else if (memcmp(sig + 32, secp256k1_half_n, 32) > 0) {
    e = "signature s value too high";
  } else if (sig[64] != 27 && sig[64] != 28) {
    e = "signature v value must be 27 or 28";
  } else {
    uint8_t digest[PM_HASH_LEN];
    pm_personal_digest(hash, digest);
    if (pm_recover_digest(digest, sig, sig[64] - 27, addr) != 0) e = "invalid signature";
  }
  if (err) *err = e;
  return e ? LP_EINVAL : 0;
}

bool pm_verify_hash(const uint8_t addr[PM_ADDR_LEN], const uint8_t hash[PM_HASH_LEN],
                    const uint8_t *sig, size_t sig_len) {
  uint8_t got[PM_ADDR_LEN];
  if (pm_recover_hash(hash, sig, sig_len, got, NULL) != 0) return false;
  return memcmp(got, addr, PM_ADDR_LEN) == 0;
}

bool pm_verify_msg(const uint8_t addr[PM_ADDR_LEN], const void *msg, size_t len, const uint8_t *sig,
                   size_t sig_len) {
  uint8_t h[PM_HASH_LEN];
  pm_keccak256(msg, len, h);
  return pm_verify_hash(addr, h, sig, sig_len);
}

bool pm_verify_orch_request(const uint8_t *address, size_t address_len, const uint8_t *sig,
                            size_t sig_len) {
  uint8_t addr[PM_ADDR_LEN];
  char hex[PM_ADDR_HEX_LEN];
  pm_bytes_to_fixed(address, address_len, addr, PM_ADDR_LEN);
  pm_addr_to_hex(addr, hex);
  return pm_verify_msg(addr, hex, PM_ADDR_HEX_LEN - 1, sig, sig_len);
}

int pm_seg_flatten(const uint8_t *manifest_id, size_t manifest_id_len, int64_t seq,
                   const uint8_t *hash, size_t hash_len, const char *const *profile_names,
                   size_t n_profiles, lp_buf_t *out) {
  /* go writes the seq with big.NewInt(seq).Bytes() left-padded: the sign is dropped. */
  uint8_t word[32] = {0};
  uint64_t s = seq < 0 ? (uint64_t)0 - (uint64_t)seq : (uint64_t)seq;
  for (int i = 0; i < 8; i++) word[31 - i] = (uint8_t)(s >> (8 * i));
  int rc = lp_buf_append(out, manifest_id, manifest_id_len);
  if (!rc) rc = lp_buf_append(out, word, sizeof word);
  if (!rc) rc = lp_buf_append(out, hash, hash_len);
  for (size_t i = 0; !rc && i < n_profiles; i++) {
    uint8_t h[PM_HASH_LEN];
    char hex[9];
    pm_keccak256(profile_names[i], strlen(profile_names[i]), h);
    lp_hex_encode(h, 4, hex);
    rc = lp_buf_append(out, hex, 8);
  }
  return rc;
}
