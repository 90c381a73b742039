/* pm: Livepeer probabilistic micropayments. Keccak-256, Ethereum signatures and addresses,
 * tickets, recipientRand, validation, balances and the winning-ticket store.
 * See shared/spec/payments.md for the rules this module follows byte for byte.
 * Nothing here touches the network or protobuf: callers map wire messages to these structs. */
#ifndef LPOD_PM_H
#define LPOD_PM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PM_HASH_LEN 32
#define PM_ADDR_LEN 20
#define PM_SIG_LEN 65
#define PM_PRIV_LEN 32
/* "0x" + 40 hex digits + NUL */
#define PM_ADDR_HEX_LEN 43

/* ---- Keccak-256 (Ethereum's, padding 0x01; not NIST SHA3-256) ---------------------------- */
typedef struct pm_keccak {
  uint64_t st[25];
  size_t pos; /* bytes absorbed into the current block */
} pm_keccak_t;

void pm_keccak_init(pm_keccak_t *k);
void pm_keccak_update(pm_keccak_t *k, const void *data, size_t len);
/* Writes the digest; the state must be re-initialised before reuse. */
void pm_keccak_final(pm_keccak_t *k, uint8_t out[PM_HASH_LEN]);
void pm_keccak256(const void *data, size_t len, uint8_t out[PM_HASH_LEN]);

/* ---- addresses ----------------------------------------------------------------------------- */
/* EIP-55 mixed-case "0x…" string, as go-ethereum's Address.Hex() prints it. */
void pm_addr_to_hex(const uint8_t addr[PM_ADDR_LEN], char out[PM_ADDR_HEX_LEN]);
/* Parses 40 hex digits with optional 0x; any case is accepted, the checksum is not enforced. */
int pm_addr_from_hex(const char *s, uint8_t addr[PM_ADDR_LEN]);
/* go-ethereum BytesToAddress / BytesToHash: keep the last n bytes, left-pad shorter input. */
void pm_bytes_to_fixed(const uint8_t *in, size_t len, uint8_t *out, size_t n);
/* Address of a 64-byte uncompressed public key (X||Y, without the 0x04 prefix). */
void pm_addr_from_pubkey(const uint8_t pub[64], uint8_t addr[PM_ADDR_LEN]);

/* ---- secp256k1 signatures -------------------------------------------------------------------
 * Signatures are r(32) || s(32) || v(1). The personal-sign functions use v in {27, 28} as
 * go-livepeer and the TicketBroker do; the raw digest functions return the 0/1 recovery id for
 * callers (transactions) that encode it themselves. All functions are thread-safe. */

/* EIP-191: keccak256("\x19Ethereum Signed Message:\n32" || hash). */
void pm_personal_digest(const uint8_t hash[PM_HASH_LEN], uint8_t digest[PM_HASH_LEN]);

/* Address of a private key; LP_EINVAL when the key is zero or >= the curve order. */
int pm_priv_to_addr(const uint8_t priv[PM_PRIV_LEN], uint8_t addr[PM_ADDR_LEN]);

/* Signs a 32-byte digest as is (RFC 6979 nonce, low s). sig64 = r||s, *recid = 0 or 1. */
int pm_sign_digest(const uint8_t priv[PM_PRIV_LEN], const uint8_t digest[PM_HASH_LEN],
                   uint8_t sig64[64], int *recid);
/* go-livepeer's Eth.Sign(hash): personal-sign over a 32-byte hash, v = 27 + recid. */
int pm_sign_hash(const uint8_t priv[PM_PRIV_LEN], const uint8_t hash[PM_HASH_LEN],
                 uint8_t sig[PM_SIG_LEN]);
/* go-livepeer's Sign(msg): pm_sign_hash(keccak256(msg)). */
int pm_sign_msg(const uint8_t priv[PM_PRIV_LEN], const void *msg, size_t len,
                uint8_t sig[PM_SIG_LEN]);

/* Recovers the signer of a raw digest from r||s and recid 0/1 (no low-s rule: transactions
 * and other callers apply their own). */
int pm_recover_digest(const uint8_t digest[PM_HASH_LEN], const uint8_t sig64[64], int recid,
                      uint8_t addr[PM_ADDR_LEN]);

/* go-livepeer's crypto.ecrecover over the personal digest of hash. Checks in its order: length
 * 65 ("invalid signature length"), s <= n/2 ("signature s value too high"), v in {27, 28}
 * ("signature v value must be 27 or 28"). Returns 0 with the signer in addr, or LP_EINVAL with
 * *err (if err is not NULL) set to a static message. */
int pm_recover_hash(const uint8_t hash[PM_HASH_LEN], const uint8_t *sig, size_t sig_len,
                    uint8_t addr[PM_ADDR_LEN], const char **err);
/* go-livepeer's crypto.VerifySig(addr, hash, sig). */
bool pm_verify_hash(const uint8_t addr[PM_ADDR_LEN], const uint8_t hash[PM_HASH_LEN],
                    const uint8_t *sig, size_t sig_len);
/* go-livepeer's orchestrator.VerifySig(addr, msg, sig): verifies over keccak256(msg). */
bool pm_verify_msg(const uint8_t addr[PM_ADDR_LEN], const void *msg, size_t len, const uint8_t *sig,
                   size_t sig_len);

#endif
