/* pm: Livepeer probabilistic micropayments. Keccak-256, Ethereum signatures and addresses,
 * tickets, recipientRand, validation, balances and the winning-ticket store.
 * See shared/spec/payments.md for the rules this module follows byte for byte.
 * Nothing here touches the network or protobuf: callers map wire messages to these structs. */
#ifndef LPOD_PM_H
#define LPOD_PM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lpod/core.h"

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

/* ---- protocol signatures (protocol.md §3.2, §4.3) ------------------------------------------- */
/* The gateway's GetOrchestrator signature: Sign(ascii(EIP-55 hex of its address)). address is
 * OrchestratorRequest.address as received (its last 20 bytes count). */
bool pm_verify_orch_request(const uint8_t *address, size_t address_len, const uint8_t *sig,
                            size_t sig_len);
/* SegData's signed bytes (go's Flatten): manifestId || uint256(seq) || hash ||
 * lowercase hex of keccak256(name)[0:4] for each profile name in order. Appends to out. */
int pm_seg_flatten(const uint8_t *manifest_id, size_t manifest_id_len, int64_t seq,
                   const uint8_t *hash, size_t hash_len, const char *const *profile_names,
                   size_t n_profiles, lp_buf_t *out);

/* ---- 256-bit unsigned integers ---------------------------------------------------------------
 * Big-endian, 32 bytes. Wire integers (protobuf bytes fields, go's big.Int.Bytes()) are minimal
 * big-endian; pm_u256_from_bytes normalises them and refuses values wider than 256 bits. */
typedef struct pm_u256 {
  uint8_t b[32];
} pm_u256_t;

int pm_u256_from_bytes(pm_u256_t *out, const uint8_t *in, size_t len);
void pm_u256_from_u64(pm_u256_t *out, uint64_t v);
/* Minimal big-endian form: *p points into v, the return value is its length (0 for zero). */
size_t pm_u256_min_bytes(const pm_u256_t *v, const uint8_t **p);
int pm_u256_cmp(const pm_u256_t *a, const pm_u256_t *b);
bool pm_u256_is_zero(const pm_u256_t *v);
/* LP_ERANGE when the value does not fit. */
int pm_u256_to_u64(const pm_u256_t *v, uint64_t *out);
/* Decimal string; out must hold 79 bytes. */
void pm_u256_to_dec(const pm_u256_t *v, char out[79]);
int pm_u256_from_dec(pm_u256_t *out, const char *s);

/* ---- prices ----------------------------------------------------------------------------------
 * PriceInfo: pricePerUnit wei per pixelsPerUnit pixels. go-livepeer treats it as the reduced
 * big.Rat pricePerUnit/pixelsPerUnit (sign in the numerator). */
typedef struct pm_price {
  int64_t price_per_unit;
  int64_t pixels_per_unit;
} pm_price_t;

/* The reduced fraction: |num| and den as go's Rat.Num()/Rat.Denom(), plus the sign.
 * LP_EINVAL when pixels_per_unit is 0. */
int pm_price_reduce(const pm_price_t *p, uint64_t *num_abs, uint64_t *den, bool *negative);
/* Compares two prices as rationals (-1, 0, 1); both pixels_per_unit must be non-zero. */
int pm_price_cmp(const pm_price_t *a, const pm_price_t *b);

/* ---- tickets ----------------------------------------------------------------------------------*/
typedef struct pm_expiration_params {
  int64_t creation_round;
  uint8_t creation_round_block_hash[PM_HASH_LEN];
} pm_expiration_params_t;

/* What the orchestrator issues in OrchestratorInfo.ticket_params and the gateway echoes back. */
typedef struct pm_ticket_params {
  uint8_t recipient[PM_ADDR_LEN];
  pm_u256_t face_value;
  pm_u256_t win_prob;
  uint8_t recipient_rand_hash[PM_HASH_LEN];
  pm_u256_t seed;
  pm_u256_t expiration_block;
  pm_expiration_params_t expiration;
} pm_ticket_params_t;

typedef struct pm_ticket {
  uint8_t recipient[PM_ADDR_LEN];
  uint8_t sender[PM_ADDR_LEN];
  pm_u256_t face_value;
  pm_u256_t win_prob;
  uint32_t sender_nonce;
  uint8_t recipient_rand_hash[PM_HASH_LEN];
  int64_t creation_round;
  uint8_t creation_round_block_hash[PM_HASH_LEN];
} pm_ticket_t;

#define PM_AUX_DATA_MAX 64
/* auxData = uint256(|creationRound|) || blockHash, or empty when both are zero. Returns its length.
 */
size_t pm_aux_data(int64_t creation_round, const uint8_t block_hash[PM_HASH_LEN],
                   uint8_t out[PM_AUX_DATA_MAX]);
/* keccak256 of the ticket's abi.encodePacked layout (TicketBroker.getTicketHash). */
void pm_ticket_hash(const pm_ticket_t *t, uint8_t out[PM_HASH_LEN]);
/* keccak256(uint256(recipientRand)) */
void pm_rand_hash(const pm_u256_t *recipient_rand, uint8_t out[PM_HASH_LEN]);
/* uint256(keccak256(sig || uint256(recipientRand))) < winProb */
bool pm_ticket_wins(const uint8_t *sig, size_t sig_len, const pm_u256_t *recipient_rand,
                    const pm_u256_t *win_prob);
/* The ticket's expected value faceValue * winProb / (2^256 - 1) as a decimal fraction
 * "num/den" reduced (den 1 prints "num/1"). out_cap 200 is always enough. */
int pm_ticket_ev_string(const pm_u256_t *face_value, const pm_u256_t *win_prob, char *out,
                        size_t out_cap);

/* recipientRand = HMAC-SHA256(secret, seed || sender || faceValue || winProb || expirationBlock ||
 * |price num| || price den || auxData), every integer in minimal bytes. */
int pm_recipient_rand(const uint8_t secret[32], const pm_u256_t *seed,
                      const uint8_t sender[PM_ADDR_LEN], const pm_u256_t *face_value,
                      const pm_u256_t *win_prob, const pm_u256_t *expiration_block,
                      const pm_price_t *price, const pm_expiration_params_t *exp, pm_u256_t *out);

/* ---- faceValue and winProb (go-livepeer recipient.faceValue / winProb) ------------------------
 */
typedef struct pm_fv_inputs {
  pm_u256_t ev;             /* -ticketEV */
  pm_u256_t gas_price;      /* last accepted eth_gasPrice */
  uint64_t redeem_gas;      /* 1,200,000 on Arbitrum One, else 350,000 */
  pm_u256_t max_float;      /* sender monitor's maxFloat, clamped at 0 by the caller */
  pm_u256_t max_face_value; /* -maxFaceValue; zero when unset */
} pm_fv_inputs_t;

/* LP_ERANGE with "insufficient sender reserve" in *err when the sender cannot back a ticket. */
int pm_face_value(const pm_fv_inputs_t *in, pm_u256_t *out, const char **err);
/* ev * ceil((2^256 - 1) / fv); 0 for fv 0; 2^256-1 when fv == ev. LP_ERANGE if it overflows. */
int pm_win_prob(const pm_u256_t *face_value, const pm_u256_t *ev, pm_u256_t *out);

/* ---- rational balances ----------------------------------------------------------------------
 * Exact fractions per (sender, session), as go-livepeer's AddressBalances of big.Rat. Owned by
 * the loop thread; not thread-safe. */
typedef struct pm_balances pm_balances_t;

pm_balances_t *pm_balances_new(uint64_t ttl_ms);
void pm_balances_free(pm_balances_t *b);
/* Adds a ticket's EV (faceValue * winProb / (2^256 - 1)). */
int pm_balances_credit_ev(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                          const pm_u256_t *face_value, const pm_u256_t *win_prob);
/* Subtracts price * pixels; the balance may go negative and carries over. */
int pm_balances_debit(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                      const pm_price_t *price, uint64_t pixels);
/* go's SufficientBalance: an existing balance >= ev. */
bool pm_balances_sufficient(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN],
                            const char *session, const pm_u256_t *ev);
/* The balance as "num/den" (reduced, sign on num); LP_ENOENT when there is none. */
int pm_balances_get(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                    char *out, size_t out_cap);
/* The price fixed for the session by its first payment; LP_ENOENT when none is fixed yet. */
int pm_balances_fixed_price(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN],
                            const char *session, pm_price_t *out);
int pm_balances_set_fixed_price(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN],
                                const char *session, const pm_price_t *price);
/* Forgets sessions not touched for ttl; returns how many were removed. */
size_t pm_balances_expire(pm_balances_t *b, uint64_t now_ms);
/* The balance gate before work: "Insufficient balance" unless price <= 0 or balance >= ev. */
int pm_balances_gate(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                     const pm_price_t *expected_price, const pm_u256_t *ev, const char **err);

/* ---- the recipient: issues params, validates tickets ----------------------------------------- */
typedef struct pm_recipient pm_recipient_t;

#define PM_PARAMS_EXPIRATION_BLOCKS 40
#define PM_MAX_SENDER_NONCES 600
#define PM_ERR_MAX 256

pm_recipient_t *pm_recipient_new(const uint8_t addr[PM_ADDR_LEN], const uint8_t secret[32],
                                 const pm_u256_t *ev);
void pm_recipient_free(pm_recipient_t *r);
const uint8_t *pm_recipient_addr(const pm_recipient_t *r);

/* Fresh params for sender: random seed, expirationBlock = l1_block + 40, winProb from face_value
 * (pass a zero face value for a price <= 0), recipientRandHash bound to price and exp.
 * LP_EINVAL for round 0 with a zero block hash (unredeemable) or pixels_per_unit 0; LP_ERANGE
 * for a face value below the EV. */
int pm_recipient_ticket_params(pm_recipient_t *r, const uint8_t sender[PM_ADDR_LEN],
                               const pm_u256_t *face_value, const pm_price_t *price,
                               const pm_expiration_params_t *exp, uint64_t l1_block,
                               pm_ticket_params_t *out);

/* A seen nonce, to be persisted so that replay protection survives a restart. */
typedef struct pm_nonce_rec {
  pm_u256_t recipient_rand;
  uint32_t nonce;
  uint64_t expiration_block;
} pm_nonce_rec_t;

/* Re-inserts a persisted nonce after a restart. */
int pm_recipient_restore_nonce(pm_recipient_t *r, const pm_nonce_rec_t *rec);
/* Drops nonce sets whose expirationBlock <= l1_block; returns how many sets were dropped. */
size_t pm_recipient_expire_nonces(pm_recipient_t *r, uint64_t l1_block);
size_t pm_recipient_nonce_sets(const pm_recipient_t *r);

typedef struct pm_winning_ticket {
  pm_ticket_t ticket;
  uint8_t sig[PM_SIG_LEN];
  pm_u256_t recipient_rand;
  uint64_t params_expiration_block;
} pm_winning_ticket_t;

typedef struct pm_ticket_sender_params {
  uint32_t sender_nonce;
  const uint8_t *sig;
  size_t sig_len;
} pm_ticket_sender_params_t;

/* A decoded Payment. has_* mirror protobuf field presence; sender_len is the raw length of
 * Payment.sender (0 when absent), its value already through pm_bytes_to_fixed. */
typedef struct pm_payment {
  bool has_ticket_params;
  pm_ticket_params_t params; /* its .expiration is ignored: field 3 is authoritative */
  size_t sender_len;
  uint8_t sender[PM_ADDR_LEN];
  bool has_expiration_params;
  pm_expiration_params_t expiration;
  bool has_expected_price;
  pm_price_t expected_price;
  size_t n_tickets;
  const pm_ticket_sender_params_t *tickets;
} pm_payment_t;

/* What the chain says about the sender (TicketBroker.getSenderInfo), fetched by the caller. */
typedef struct pm_sender_info {
  const char *error; /* non-NULL: the lookup failed with this text */
  int64_t withdraw_round;
} pm_sender_info_t;

/* Chain and session state the validation needs, all read by the caller beforehand. */
typedef struct pm_validate_ctx {
  const char *session;                 /* ManifestID: the auth token's session id */
  uint64_t last_seen_l1_block;         /* params with expirationBlock <= this have expired */
  int64_t last_initialized_round;      /* LIR */
  bool recipient_inactive;             /* params.recipient is not active in LIR */
  const pm_sender_info_t *sender_info; /* NULL: no sender monitor (no B checks) */
  /* Hardening beyond go-livepeer: the price this orchestrator quoted for the session (NULL
   * skips the check) and whether it charges at all (then prices <= 0 are refused). */
  const pm_price_t *quoted_price;
  bool charging;
} pm_validate_ctx_t;

/* Outcome of one payment. Its winners and nonces must be persisted (pm_store_commit) before the
 * segment is answered. It may be copied by value to a work request; free it with
 * pm_payment_result_free in every case, accepted or not. */
typedef struct pm_payment_result {
  size_t credited;      /* tickets whose EV went to the balance */
  bool fatal;           /* processing stopped at a fatal error */
  bool bad_request;     /* malformed payment (no expiration params, bad price): answer 400 */
  char err[PM_ERR_MAX]; /* empty on success; else go-livepeer's error text */
  pm_winning_ticket_t *winners;
  size_t n_winners;
  pm_nonce_rec_t *nonces; /* nonces newly accepted */
  size_t n_nonces;
} pm_payment_result_t;

void pm_payment_result_free(pm_payment_result_t *res);

/* go-livepeer's ProcessPayment for one payment: payment-level checks, then every ticket in its
 * order, credits to balances. Returns 0 when the payment was accepted, LP_EINVAL with res->err
 * otherwise. res->winners and res->nonces are filled in both cases. */
int pm_recipient_process_payment(pm_recipient_t *r, pm_balances_t *balances,
                                 const pm_payment_t *payment, const pm_validate_ctx_t *ctx,
                                 pm_payment_result_t *res);

/* ---- durable store (SQLite in the data dir) --------------------------------------------------
 * Calls block on fsync: run them off the loop (uv_queue_work). Calls from several threads are
 * serialised inside. */
typedef struct pm_store pm_store_t;

int pm_store_open(const char *path, pm_store_t **out);
void pm_store_close(pm_store_t *s);
/* The recipient secret: loaded if present, else created from the CSPRNG and stored. */
int pm_store_secret(pm_store_t *s, uint8_t secret[32]);
/* Stores winners and nonces of one payment in a single durable transaction. A winner whose sig
 * is already stored is kept once. */
int pm_store_commit(pm_store_t *s, const pm_winning_ticket_t *winners, size_t n_winners,
                    const pm_nonce_rec_t *nonces, size_t n_nonces);
/* Calls fn for each stored nonce whose set has not expired at l1_block. */
int pm_store_load_nonces(pm_store_t *s, uint64_t l1_block,
                         void (*fn)(void *ud, const pm_nonce_rec_t *rec), void *ud);
/* Deletes nonces with expirationBlock <= l1_block. */
int pm_store_expire_nonces(pm_store_t *s, uint64_t l1_block);
/* Winning tickets not yet redeemed, oldest first; the caller frees *out. */
int pm_store_pending_winners(pm_store_t *s, pm_winning_ticket_t **out, size_t *n);
int pm_store_mark_redeemed(pm_store_t *s, const uint8_t sig[PM_SIG_LEN],
                           const uint8_t tx_hash[PM_HASH_LEN]);

#endif
