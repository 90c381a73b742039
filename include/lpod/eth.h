/* eth: the chain side of payments. uint256 helpers, ABI and RLP encoding, signed transactions,
 * keystore v3 accounts, JSON-RPC over libcurl (blocking and on the libuv loop), and the chain
 * client that the orchestrator reads rounds, blocks and sender info from and redeems winning
 * tickets with. shared/spec/payments.md §2.7, §4.5, §5 give the rules followed here. */
#ifndef LPOD_ETH_H
#define LPOD_ETH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "lpod/core.h"
#include "lpod/pm.h"

#define ETH_ADDR_LEN 20
#define ETH_HASH_LEN 32

/* ---- uint256 arithmetic and JSON-RPC quantities (on pm's pm_u256_t) -------------------------- */
/* JSON-RPC quantity or data: "0x" then 1..64 hex digits (leading zeros allowed). */
int eth_u256_from_hex(const char *s, pm_u256_t *out);
/* JSON-RPC quantity: "0x0", "0x1a", ...; out must hold 67 bytes. */
void eth_u256_to_quantity(const pm_u256_t *v, char *out);
/* LP_ERANGE on overflow or underflow, LP_EINVAL on division by zero. */
int eth_u256_add(pm_u256_t *out, const pm_u256_t *a, const pm_u256_t *b);
int eth_u256_sub(pm_u256_t *out, const pm_u256_t *a, const pm_u256_t *b);
int eth_u256_mul(pm_u256_t *out, const pm_u256_t *a, const pm_u256_t *b);
int eth_u256_div(pm_u256_t *quot, const pm_u256_t *a, const pm_u256_t *b);

/* ---- ABI encoding ---------------------------------------------------------------------------- */
typedef enum {
  ETH_ABI_WORD,  /* any static 32-byte value: uintN, address, bool, bytes32 */
  ETH_ABI_BYTES, /* bytes, string */
  ETH_ABI_TUPLE, /* struct; dynamic when any member is */
  ETH_ABI_ARRAY, /* T[] with a length prefix */
} eth_abi_kind_t;

typedef struct eth_abi_arg {
  eth_abi_kind_t kind;
  uint8_t word[32];
  const uint8_t *data; /* BYTES */
  size_t len;
  const struct eth_abi_arg *items; /* TUPLE, ARRAY */
  size_t n;
} eth_abi_arg_t;

eth_abi_arg_t eth_abi_uint(const pm_u256_t *v);
eth_abi_arg_t eth_abi_u64(uint64_t v);
eth_abi_arg_t eth_abi_addr(const uint8_t addr[ETH_ADDR_LEN]);
eth_abi_arg_t eth_abi_b32(const uint8_t h[32]);
eth_abi_arg_t eth_abi_bool(bool v);
eth_abi_arg_t eth_abi_bytes(const void *p, size_t n);
eth_abi_arg_t eth_abi_tuple(const eth_abi_arg_t *items, size_t n);
eth_abi_arg_t eth_abi_array(const eth_abi_arg_t *items, size_t n);

/* First 4 bytes of keccak256 of a canonical signature such as "transfer(address,uint256)". */
void eth_abi_selector(const char *signature, uint8_t out[4]);
/* Appends the head/tail encoding of the argument list (as a tuple) to out. */
int eth_abi_encode(const eth_abi_arg_t *args, size_t n, lp_buf_t *out);
/* Appends selector(signature) followed by the encoded arguments. */
int eth_abi_encode_call(const char *signature, const eth_abi_arg_t *args, size_t n, lp_buf_t *out);

/* Decoding reads head words by index from return data; every offset and length is checked
 * against len, so hostile data gets LP_EPROTO and never a read past the end. */
int eth_abi_get_word(const uint8_t *d, size_t len, size_t idx, pm_u256_t *out);
int eth_abi_get_u64(const uint8_t *d, size_t len, size_t idx, uint64_t *out);
int eth_abi_get_addr(const uint8_t *d, size_t len, size_t idx, uint8_t addr[ETH_ADDR_LEN]);
int eth_abi_get_bool(const uint8_t *d, size_t len, size_t idx, bool *out);
/* A dynamic bytes/string whose offset is in head word idx; *p points into d. */
int eth_abi_get_bytes(const uint8_t *d, size_t len, size_t idx, const uint8_t **p, size_t *n);
/* Decodes Error(string) revert data into out (NUL-terminated, truncated, non-printable bytes
 * replaced); LP_ENOENT when the data is not an Error(string). */
int eth_abi_revert_reason(const uint8_t *d, size_t len, char *out, size_t cap);

/* ---- RLP ------------------------------------------------------------------------------------- */
int eth_rlp_put_bytes(lp_buf_t *b, const void *p, size_t n);
int eth_rlp_put_uint(lp_buf_t *b, const pm_u256_t *v);
int eth_rlp_put_u64(lp_buf_t *b, uint64_t v);
/* A list: remember b->len before its items, then call eth_rlp_end_list with it. */
int eth_rlp_end_list(lp_buf_t *b, size_t start);

typedef struct eth_rlp_item {
  bool is_list;
  const uint8_t *p; /* payload (a list's payload is its encoded items) */
  size_t len;
} eth_rlp_item_t;
/* Reads the next item at the cursor (*p, *len) and advances past it. Non-canonical encodings (a
 * single byte below 0x80 wrapped, long forms for short payloads, leading zeros in lengths) are
 * LP_EPROTO. */
int eth_rlp_next(const uint8_t **p, size_t *len, eth_rlp_item_t *item);

/* ---- transactions ---------------------------------------------------------------------------- */
typedef enum { ETH_TX_LEGACY = 0, ETH_TX_DYNAMIC_FEE = 2 } eth_tx_type_t;

typedef struct eth_tx {
  eth_tx_type_t type; /* legacy transactions are signed with EIP-155 replay protection */
  uint64_t chain_id;
  uint64_t nonce;
  uint64_t gas_limit;
  pm_u256_t gas_price;        /* legacy */
  pm_u256_t max_priority_fee; /* EIP-1559 */
  pm_u256_t max_fee;          /* EIP-1559 */
  bool has_to;                /* false: contract creation */
  uint8_t to[ETH_ADDR_LEN];
  pm_u256_t value;
  const uint8_t *data;
  size_t data_len;
} eth_tx_t;

/* keccak256 of the unsigned payload that is signed. */
int eth_tx_signing_hash(const eth_tx_t *tx, uint8_t hash[ETH_HASH_LEN]);
/* Signs with priv, appends the raw transaction (what eth_sendRawTransaction takes) to raw and
 * writes the transaction hash. */
int eth_tx_sign(const eth_tx_t *tx, const uint8_t priv[32], lp_buf_t *raw,
                uint8_t txhash[ETH_HASH_LEN]);

/* ---- accounts and keystore v3 ---------------------------------------------------------------- */
typedef struct eth_account {
  uint8_t addr[ETH_ADDR_LEN];
  uint8_t priv[32];
} eth_account_t;

/* Decrypts a keystore v3 JSON (scrypt or pbkdf2 with hmac-sha256, aes-128-ctr, keccak MAC).
 * A wrong password is LP_EPERM with "could not decrypt key with given password"; malformed
 * files LP_EINVAL, unknown KDFs or ciphers LP_EUNSUPP, each with the reason in err. The address
 * is derived from the key and must match the file's "address" field when it has one. KDF
 * parameters past 1 GiB of scrypt memory or 10^7 pbkdf2 rounds are refused. */
int eth_keystore_decrypt(const char *json, const char *password, eth_account_t *out, char *err,
                         size_t errlen);

typedef struct eth_keystore_kdf {
  bool pbkdf2;     /* false: scrypt */
  uint64_t n;      /* scrypt N (power of two) */
  uint32_t r, p;   /* scrypt */
  uint32_t rounds; /* pbkdf2 c */
} eth_keystore_kdf_t;
/* go-ethereum's "standard" scrypt parameters: N=2^18, r=8, p=1. */
#define ETH_KEYSTORE_KDF_STANDARD                                                                  \
  { false, 1u << 18, 8, 1, 0 }

/* Encrypts acct into a keystore v3 JSON (malloc'd) with a random salt, IV and UUID. */
int eth_keystore_encrypt(const eth_account_t *acct, const char *password,
                         const eth_keystore_kdf_t *kdf, char **json);

/* The node's account, as -ethAcctAddr / -ethKeystorePath / -ethPassword select it.
 * keystore_path is a keystore file or a directory of them; with a directory and no acct_addr it
 * must hold exactly one key. With acct_addr the key must be that account's. The password is the
 * already resolved -ethPassword (the config loader reads files it names). */
int eth_account_load(const char *keystore_path, const char *acct_addr, const char *password,
                     eth_account_t *out, char *err, size_t errlen);
void eth_account_wipe(eth_account_t *acct);
/* A new random key, written to dir (created 0700) as UTC--<time>--<address> with mode 0600, as
 * go-livepeer does for a node without an account. kdf NULL: the standard scrypt parameters. */
int eth_account_create(const char *dir, const char *password, const eth_keystore_kdf_t *kdf,
                       eth_account_t *out, char *err, size_t errlen);

/* ---- JSON-RPC -------------------------------------------------------------------------------- */
typedef struct eth_rpc eth_rpc_t;

/* loop may be NULL for a client that only makes blocking calls. */
int eth_rpc_new(uv_loop_t *loop, const char *url, int timeout_ms, eth_rpc_t **out);
/* Completes outstanding asynchronous calls with LP_ECANCELED before returning. */
void eth_rpc_free(eth_rpc_t *rpc);
const char *eth_rpc_url(const eth_rpc_t *rpc);

/* Blocking call (not on the loop thread once the node serves). params is consumed (NULL: []).
 * On success *result is the "result" member (caller frees with cJSON_Delete). Transport
 * failures give LP_EIO / LP_ETIMEDOUT, JSON-RPC errors LP_EPROTO; err says which. A revert with
 * Error(string) data reads "execution reverted: <reason>". */
int eth_rpc_call(eth_rpc_t *rpc, const char *method, cJSON *params, cJSON **result, char *err,
                 size_t errlen);

/* The result is borrowed for the duration of the callback; err is NULL on success. */
typedef void (*eth_rpc_cb)(void *ud, int status, const cJSON *result, const char *err);
/* Asynchronous call on the loop given to eth_rpc_new, through net's HTTP client (libcurl multi
 * on the loop). params is consumed. cb runs later on the loop thread, never from inside this
 * call; when the call cannot be started an error is returned and cb is not called. */
int eth_rpc_call_async(eth_rpc_t *rpc, const char *method, cJSON *params, eth_rpc_cb cb, void *ud);

/* Builds eth_call params {to, data} at "latest". */
cJSON *eth_rpc_call_params(const uint8_t to[ETH_ADDR_LEN], const uint8_t *data, size_t len);
/* A JSON hex string ("0x...") into bytes (malloc'd); LP_EPROTO when it is not one. */
int eth_rpc_hex_bytes(const cJSON *v, uint8_t **out, size_t *len);
int eth_rpc_hex_u64(const cJSON *v, uint64_t *out);

/* ---- TicketBroker calls ---------------------------------------------------------------------- */
/* Calldata of TicketBroker.getTicketHash(ticket) and of redeemWinningTicket(ticket, sig,
 * recipientRand) (selector 0xec8b3cb6, 548 bytes for a 65-byte sig). */
int eth_tb_encode_get_ticket_hash(const pm_ticket_t *t, lp_buf_t *out);
int eth_tb_encode_redeem(const pm_ticket_t *t, const uint8_t *sig, size_t sig_len,
                         const pm_u256_t *recipient_rand, lp_buf_t *out);

typedef struct eth_sender_info {
  pm_u256_t deposit;
  uint64_t withdraw_round;
  pm_u256_t reserve_funds;   /* reserve.fundsRemaining */
  pm_u256_t reserve_claimed; /* reserve.claimedInCurrentRound */
} eth_sender_info_t;

/* The sender monitor's maxFloat (spec §4.5): reserveAlloc = (fundsRemaining +
 * claimedInCurrentRound) / poolSize - claimed (0 when the pool is empty), then maxFloat =
 * reserveAlloc when pending > 0 and deposit >= 3 * pending, else reserveAlloc - pending.
 * The result is clamped at 0; *negative (may be NULL) says whether it was below. */
int eth_sender_max_float(const eth_sender_info_t *info, const pm_u256_t *claimed,
                         uint64_t pool_size, const pm_u256_t *pending, pm_u256_t *out,
                         bool *negative);

/* ---- networks -------------------------------------------------------------------------------- */
typedef struct eth_network {
  bool has_controller; /* false for dev networks: -ethController is required */
  uint8_t controller[ETH_ADDR_LEN];
  uint64_t redeem_gas;    /* gas a redemption is budgeted at (faceValue sizing) */
  uint64_t min_gas_price; /* wei; polls below are ignored */
  uint64_t chain_id;      /* the chain -ethUrl must serve; 0 for dev networks (any) */
} eth_network_t;

/* go-livepeer's per-network defaults for -network; any other name (devenv, devnet, ...) is a dev
 * chain: no default controller, L1 redeem gas, no minimum gas price. LP_EINVAL for offchain. */
int eth_network_defaults(const char *network, eth_network_t *out);

/* ---- chain client ------------------------------------------------------------------------------
 * Lives on the loop thread. eth_client_connect makes blocking calls at start-up (chain id,
 * contract addresses, the first block and round); afterwards a timer polls the latest block every
 * poll interval and refreshes the round when the block passes into a new one. Reads come from
 * caches; a failing endpoint keeps the last good values, is logged once when it fails and once
 * when it recovers, and requests fail fast with the last error instead of piling up. */
typedef struct eth_client eth_client_t;

typedef struct eth_contracts {
  uint8_t controller[ETH_ADDR_LEN];
  uint8_t ticket_broker[ETH_ADDR_LEN];
  uint8_t rounds_manager[ETH_ADDR_LEN];
  uint8_t bonding_manager[ETH_ADDR_LEN];
  uint8_t minter[ETH_ADDR_LEN];
  uint8_t service_registry[ETH_ADDR_LEN];
} eth_contracts_t;

typedef struct eth_client_cfg {
  const char *url;
  uint8_t controller[ETH_ADDR_LEN];
  int64_t poll_interval_ms;     /* -blockPollingInterval; <= 0: 5 s */
  int rpc_timeout_ms;           /* <= 0: 20 s, go-livepeer's */
  const eth_account_t *account; /* signs transactions; NULL for a read-only client */
  const uint8_t *recipient;     /* on-chain O address (claimedReserve, active check); NULL:
                                   the account's */
  /* Sender info older than this is refreshed on access (the stale value is still served);
   * <= 0: 60 s. */
  int64_t sender_ttl_ms;
  pm_u256_t min_gas_price; /* eth_gasPrice polls below this are ignored (go's GasPriceMonitor) */
  /* -maxGasPrice (zero: none): redemptions wait while gas costs more, and the fee cap of their
   * transactions never goes above it. */
  pm_u256_t max_gas_price;
  /* A redemption without a receipt after tx_timeout_ms (<= 0: 5 min) is sent again with the
   * same nonce and 1/8 higher fees, up to tx_replacements times (0: once; < 0: never). */
  int64_t tx_timeout_ms;
  int tx_replacements;
} eth_client_cfg_t;

int eth_client_new(uv_loop_t *loop, const eth_client_cfg_t *cfg, eth_client_t **out);
/* Blocking start-up reads; a clear message in err when the endpoint or a contract is missing. */
int eth_client_connect(eth_client_t *c, char *err, size_t errlen);
/* Starts block polling on the loop. */
int eth_client_start(eth_client_t *c);
/* Stops timers, cancels requests (their callbacks get LP_ECANCELED, before this returns) and
 * frees; with a loop the memory goes once the loop has run the handle closes. */
void eth_client_free(eth_client_t *c);

eth_rpc_t *eth_client_rpc(eth_client_t *c);
uint64_t eth_client_chain_id(const eth_client_t *c);
const eth_contracts_t *eth_client_contracts(const eth_client_t *c);
/* The latest L1 block: Arbitrum's l1BlockNumber when the block has one, else its number. */
int64_t eth_client_last_block(const eth_client_t *c);
int64_t eth_client_last_initialized_round(const eth_client_t *c);
/* Creation round and block hash for new ticket params: the last initialized round and its hash,
 * or the round before it when that hash is still zero (spec §2.7). LP_EAGAIN until known. */
int eth_client_params_round(const eth_client_t *c, int64_t *round, uint8_t hash[ETH_HASH_LEN]);
/* BondingManager.getTranscoderPoolSize() as of the last round refresh. */
uint64_t eth_client_pool_size(const eth_client_t *c);
/* BondingManager.isActiveTranscoder(recipient) as of the last round refresh. */
bool eth_client_recipient_active(const eth_client_t *c);
/* Whether addr is an active orchestrator in the last initialized round: the node's own recipient
 * as above, any other address by the pool walk that each new round starts (the members for
 * which isActiveTranscoder held). Until the first walk completes only the own recipient can be
 * active. */
bool eth_client_is_active(const eth_client_t *c, const uint8_t addr[ETH_ADDR_LEN]);
/* The last eth_gasPrice at or above the minimum; LP_EAGAIN before the first one. */
int eth_client_gas_price(const eth_client_t *c, pm_u256_t *out);
/* Called on the loop thread after each new block and each new round. */
typedef void (*eth_block_cb)(void *ud, int64_t l1_block, int64_t last_initialized_round);
void eth_client_on_block(eth_client_t *c, eth_block_cb cb, void *ud);

/* Sender info and claimedReserve(sender, recipient), cached per sender. When a fresh or stale
 * value is cached, cb runs before this returns (status 0); otherwise a fetch starts and cb runs
 * from the loop. A sender whose fetch failed is remembered for a short while and answered with
 * the same error, so unknown senders cannot make every ticket an RPC. */
typedef void (*eth_sender_cb)(void *ud, int status, const eth_sender_info_t *info,
                              const pm_u256_t *claimed, const char *err);
int eth_client_sender_info(eth_client_t *c, const uint8_t sender[ETH_ADDR_LEN], eth_sender_cb cb,
                           void *ud);
/* Drops a sender's cache entry (after a redemption or a funding event). */
void eth_client_sender_forget(eth_client_t *c, const uint8_t sender[ETH_ADDR_LEN]);

/* Sum of the face values of this sender's redemptions in flight (the monitor's "pending"). */
void eth_client_sender_pending(const eth_client_t *c, const uint8_t sender[ETH_ADDR_LEN],
                               pm_u256_t *out);

/* Blocking reads for start-up, tools and tests. */
int eth_client_call_sync(eth_client_t *c, const uint8_t to[ETH_ADDR_LEN], const lp_buf_t *data,
                         lp_buf_t *ret, char *err, size_t errlen);
int eth_client_sender_info_sync(eth_client_t *c, const uint8_t sender[ETH_ADDR_LEN],
                                eth_sender_info_t *info, pm_u256_t *claimed, char *err,
                                size_t errlen);
int eth_client_ticket_hash_sync(eth_client_t *c, const pm_ticket_t *t, uint8_t hash[ETH_HASH_LEN],
                                char *err, size_t errlen);

/* Redeems a winning ticket: checks usedTickets, estimates gas (a revert comes back as
 * "execution reverted: <reason>"), signs an EIP-1559 transaction with the account (legacy
 * EIP-155 when the chain has no base fee), sends it and waits for the receipt. Redemptions are
 * sent one at a time so nonces stay in order. status 0 with the tx hash on success. Final
 * outcomes: LP_EEXIST "ticket already used"; LP_EPROTO for "transaction failed txHash=0x…" and
 * reverts that waiting cannot fix (used, expired, no block hash, wrong recipientRand, bad
 * signature, not a winner). Anything else (endpoint errors, "insufficient ticket face value for
 * redeem tx cost", other reverts) is LP_EAGAIN or a transport error: retry on a later block. */
typedef void (*eth_redeem_cb)(void *ud, int status, const uint8_t txhash[ETH_HASH_LEN],
                              const char *err);
int eth_client_redeem(eth_client_t *c, const pm_ticket_t *t, const uint8_t *sig, size_t sig_len,
                      const pm_u256_t *recipient_rand, eth_redeem_cb cb, void *ud);

/* Everything an on-chain node needs from the flags: -network defaults, -ethController,
 * -ethUrl, -blockPollingInterval, and the account from -ethKeystorePath (default
 * <datadir>/keystore), -ethAcctAddr and -ethPassword; a keystore directory without any key and
 * no -ethAcctAddr gets a new account, as in go-livepeer. Creates the client and makes the blocking
 * start-up reads; the caller starts polling with eth_client_start. On failure err names the
 * flag or the endpoint at fault. */
struct lp_config;
int eth_node_open(uv_loop_t *loop, const struct lp_config *cfg, eth_account_t *account,
                  eth_network_t *network, eth_client_t **out, char *err, size_t errlen);

#endif
