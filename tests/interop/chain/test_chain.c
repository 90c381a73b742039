/* lpod's eth module against a local ganache chain with the Livepeer protocol contracts
 * (chain.js): keystore account, chain id, contract addresses through the Controller, round and
 * block hash, pool and active check, sender info (blocking and cached on the loop), ticket hashes
 * against TicketBroker.getTicketHash, and redeeming a winning ticket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/rand.h>

#include "lpod/config.h"
#include "lpod/eth.h"
#include "lpod/pm.h"

static cJSON *chain;
static eth_account_t orch;
static uint8_t gateway_priv[32], gateway_addr[20], orch_addr[20];

static const char *jstr(const char *path) {
  /* "a.b.c" */
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  const cJSON *v = chain;
  for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save))
    v = cJSON_GetObjectItemCaseSensitive(v, tok);
  const char *s = cJSON_GetStringValue(v);
  if (!s) fail_msg("chain.json has no %s", path);
  return s;
}

static void jaddr(const char *path, uint8_t out[20]) {
  assert_int_equal(pm_addr_from_hex(jstr(path), out), 0);
}

static eth_client_t *client_new(uv_loop_t *loop, const eth_account_t *acct) {
  eth_client_cfg_t cfg = {0};
  cfg.url = jstr("url");
  jaddr("addresses.Controller", cfg.controller);
  cfg.poll_interval_ms = 100;
  cfg.rpc_timeout_ms = 10000;
  cfg.account = acct;
  cfg.recipient = orch_addr;
  eth_client_t *c;
  assert_int_equal(eth_client_new(loop, &cfg, &c), 0);
  return c;
}

static void run_until(uv_loop_t *loop, const bool *done) {
  uint64_t start = lp_now_ms();
  while (!*done && lp_now_ms() - start < 60000) uv_run(loop, UV_RUN_ONCE);
  assert_true(*done);
}

static void close_client(uv_loop_t *loop, eth_client_t *c) {
  eth_client_free(c);
  uv_run(loop, UV_RUN_DEFAULT);
}

static void test_keystore_account(void **state) {
  char err[256];
  eth_account_t a;
  /* Directory and file forms of -ethKeystorePath, with and without -ethAcctAddr. */
  assert_int_equal(
      eth_account_load(jstr("keystore.dir"), NULL, jstr("keystore.password"), &a, err, sizeof err),
      0);
  uint8_t want[20];
  jaddr("accounts.orchestrator.address", want);
  assert_memory_equal(a.addr, want, 20);
  assert_int_equal(eth_account_load(jstr("keystore.file"), jstr("accounts.orchestrator.address"),
                                    jstr("keystore.password"), &orch, err, sizeof err),
                   0);
  assert_memory_equal(orch.addr, want, 20);
  assert_int_equal(
      eth_account_load(jstr("keystore.dir"), NULL, "not the password", &a, err, sizeof err),
      LP_EPERM);
  assert_non_null(strstr(err, "could not decrypt key with given password"));
  eth_account_wipe(&a);
}

static void test_connect_and_reads(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  eth_client_t *c = client_new(&loop, NULL);
  char err[256];
  assert_int_equal(eth_client_connect(c, err, sizeof err), 0);
  assert_int_equal(eth_client_chain_id(c), 1337);

  const eth_contracts_t *k = eth_client_contracts(c);
  uint8_t a[20];
  jaddr("addresses.TicketBroker", a);
  assert_memory_equal(k->ticket_broker, a, 20);
  jaddr("addresses.RoundsManager", a);
  assert_memory_equal(k->rounds_manager, a, 20);
  jaddr("addresses.BondingManager", a);
  assert_memory_equal(k->bonding_manager, a, 20);
  jaddr("addresses.Minter", a);
  assert_memory_equal(k->minter, a, 20);
  jaddr("addresses.ServiceRegistry", a);
  assert_memory_equal(k->service_registry, a, 20);

  assert_true(eth_client_last_block(c) > 0);
  assert_int_equal(eth_client_last_initialized_round(c), atoll(jstr("lastInitializedRound")));
  assert_int_equal(eth_client_pool_size(c), atoll(jstr("poolSize")));
  assert_int_equal(eth_client_pool_size(c), 2);
  assert_true(eth_client_recipient_active(c));
  /* The pool walk that the first poll starts finds the other orchestrator active; the gateway
   * is in no pool. */
  uint8_t orch2[20];
  jaddr("accounts.orchestrator2.address", orch2);
  assert_false(eth_client_is_active(c, orch2));
  assert_int_equal(eth_client_start(c), 0);
  uint64_t until = lp_now_ms() + 30000;
  while (!eth_client_is_active(c, orch2) && lp_now_ms() < until) uv_run(&loop, UV_RUN_ONCE);
  assert_true(eth_client_is_active(c, orch2));
  assert_true(eth_client_is_active(c, orch_addr));
  assert_false(eth_client_is_active(c, gateway_addr));
  int64_t round;
  uint8_t hash[32], want[32];
  assert_int_equal(eth_client_params_round(c, &round, hash), 0);
  assert_int_equal(round, eth_client_last_initialized_round(c));
  assert_int_equal(lp_hex_decode(jstr("lastInitializedRoundBlockHash"), want, 32), 32);
  assert_memory_equal(hash, want, 32);

  eth_sender_info_t info;
  pm_u256_t claimed, dep, res;
  assert_int_equal(eth_client_sender_info_sync(c, gateway_addr, &info, &claimed, err, sizeof err),
                   0);
  assert_int_equal(pm_u256_from_dec(&dep, jstr("gateway.deposit")), 0);
  assert_int_equal(pm_u256_from_dec(&res, jstr("gateway.reserve")), 0);
  assert_int_equal(pm_u256_cmp(&info.deposit, &dep), 0);
  assert_int_equal(pm_u256_cmp(&info.reserve_funds, &res), 0);
  assert_true(pm_u256_is_zero(&info.reserve_claimed));
  assert_int_equal(info.withdraw_round, 0);
  assert_true(pm_u256_is_zero(&claimed));
  close_client(&loop, c);
  uv_loop_close(&loop);
}

typedef struct {
  bool done;
  int status, calls;
  eth_sender_info_t info;
  int64_t block;
} wait_t;

static void on_sender(void *ud, int status, const eth_sender_info_t *info, const pm_u256_t *claimed,
                      const char *err) {
  wait_t *w = ud;
  w->status = status;
  if (info) w->info = *info;
  w->calls++;
  w->done = true;
}

static void on_block(void *ud, int64_t block, int64_t lir) {
  wait_t *w = ud;
  w->block = block;
  w->done = true;
}

static void test_polling_and_cached_sender(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  eth_client_t *c = client_new(&loop, NULL);
  char err[256];
  assert_int_equal(eth_client_connect(c, err, sizeof err), 0);
  wait_t blk = {0};
  eth_client_on_block(c, on_block, &blk);
  int64_t first = eth_client_last_block(c);
  assert_int_equal(eth_client_start(c), 0);
  /* ganache mines only on demand: one new block for the poller to see. */
  cJSON *res = NULL;
  assert_int_equal(eth_rpc_call(eth_client_rpc(c), "evm_mine", NULL, &res, err, sizeof err), 0);
  cJSON_Delete(res);
  run_until(&loop, &blk.done);
  assert_int_equal(blk.block, first + 1);
  assert_int_equal(eth_client_last_block(c), first + 1);
  /* The gas price is polled with the blocks. */
  pm_u256_t gas;
  uint64_t start = lp_now_ms();
  while (eth_client_gas_price(c, &gas) == LP_EAGAIN && lp_now_ms() - start < 10000)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(eth_client_gas_price(c, &gas), 0);
  assert_false(pm_u256_is_zero(&gas));

  /* A new round on the chain reaches the client through the poller. */
  const char *ctl = getenv("LPOD_CHAIN_CTL");
  if (ctl) {
    int64_t lir = eth_client_last_initialized_round(c);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "node '%s' '%s' next-round >/dev/null", ctl,
             getenv("LPOD_CHAIN_JSON"));
    assert_int_equal(system(cmd), 0);
    uint64_t t0 = lp_now_ms();
    while (eth_client_last_initialized_round(c) != lir + 1 && lp_now_ms() - t0 < 20000)
      uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(eth_client_last_initialized_round(c), lir + 1);
    int64_t round;
    uint8_t hash[32], zero[32] = {0};
    assert_int_equal(eth_client_params_round(c, &round, hash), 0);
    assert_int_equal(round, lir + 1);
    assert_memory_not_equal(hash, zero, 32);
  }

  /* First ask goes to the chain; the second is answered from the cache before returning. */
  wait_t w = {0};
  assert_int_equal(eth_client_sender_info(c, gateway_addr, on_sender, &w), 0);
  assert_false(w.done);
  run_until(&loop, &w.done);
  assert_int_equal(w.status, 0);
  pm_u256_t dep;
  assert_int_equal(pm_u256_from_dec(&dep, jstr("gateway.deposit")), 0);
  assert_int_equal(pm_u256_cmp(&w.info.deposit, &dep), 0);
  wait_t w2 = {0};
  assert_int_equal(eth_client_sender_info(c, gateway_addr, on_sender, &w2), 0);
  assert_true(w2.done);
  assert_int_equal(pm_u256_cmp(&w2.info.deposit, &dep), 0);

  /* A sender that never funded anything reads as zeros, not as an error. */
  uint8_t nobody[20];
  memset(nobody, 0x5a, 20);
  wait_t w3 = {0};
  assert_int_equal(eth_client_sender_info(c, nobody, on_sender, &w3), 0);
  run_until(&loop, &w3.done);
  assert_int_equal(w3.status, 0);
  assert_true(pm_u256_is_zero(&w3.info.deposit));

  /* Pending lookups are cancelled, not leaked, when the client goes away. */
  uint8_t other[20];
  memset(other, 0x6b, 20);
  wait_t w4 = {0};
  assert_int_equal(eth_client_sender_info(c, other, on_sender, &w4), 0);
  close_client(&loop, c);
  assert_true(w4.done);
  assert_int_equal(w4.status, LP_ECANCELED);
  uv_loop_close(&loop);
}

static void random_ticket(pm_ticket_t *t) {
  uint8_t r[200];
  assert_int_equal(RAND_bytes(r, sizeof r), 1);
  memcpy(t->recipient, r, 20);
  memcpy(t->sender, r + 20, 20);
  /* Vary the widths so short and full-width values both appear. */
  size_t fl = r[40] % 33, wl = r[41] % 33;
  assert_int_equal(pm_u256_from_bytes(&t->face_value, r + 42, fl), 0);
  assert_int_equal(pm_u256_from_bytes(&t->win_prob, r + 80, wl), 0);
  memcpy(&t->sender_nonce, r + 120, 4);
  memcpy(t->recipient_rand_hash, r + 124, 32);
  switch (r[156] % 4) {
  case 0: /* empty auxData */
    t->creation_round = 0;
    memset(t->creation_round_block_hash, 0, 32);
    break;
  case 1:
    t->creation_round = 0;
    memcpy(t->creation_round_block_hash, r + 157, 32);
    break;
  default:
    t->creation_round = (int64_t)(((uint64_t)r[190] << 24 | (uint64_t)r[191] << 16 |
                                   (uint64_t)r[192] << 8 | r[193]) &
                                  0x7fffffff);
    memcpy(t->creation_round_block_hash, r + 157, 32);
  }
}

static void test_ticket_hash_matches_contract(void **state) {
  eth_client_t *c = client_new(NULL, NULL);
  char err[256];
  assert_int_equal(eth_client_connect(c, err, sizeof err), 0);
  int n = getenv("LPOD_TICKETS") ? atoi(getenv("LPOD_TICKETS")) : 1000;
  for (int i = 0; i < n; i++) {
    pm_ticket_t t;
    random_ticket(&t);
    uint8_t mine[32], theirs[32];
    pm_ticket_hash(&t, mine);
    assert_int_equal(eth_client_ticket_hash_sync(c, &t, theirs, err, sizeof err), 0);
    if (memcmp(mine, theirs, 32) != 0) fail_msg("ticket %d: hash differs from getTicketHash", i);
  }
  eth_client_free(c);
}

typedef struct {
  bool done;
  int status;
  char err[256];
  uint8_t txhash[32];
} redeem_wait_t;

static void on_redeem(void *ud, int status, const uint8_t txhash[32], const char *err) {
  redeem_wait_t *w = ud;
  w->status = status;
  if (txhash) memcpy(w->txhash, txhash, 32);
  snprintf(w->err, sizeof w->err, "%s", err ? err : "");
  w->done = true;
}

static void winning_ticket(eth_client_t *c, uint32_t nonce, pm_ticket_t *t, uint8_t sig[65],
                           pm_u256_t *rand) {
  memset(t, 0, sizeof *t);
  memcpy(t->recipient, orch.addr, 20);
  memcpy(t->sender, gateway_addr, 20);
  assert_int_equal(pm_u256_from_dec(&t->face_value, "1000000000000000"), 0);
  memset(t->win_prob.b, 0xff, 32);
  t->sender_nonce = nonce;
  uint8_t r[32];
  assert_int_equal(RAND_bytes(r, 32), 1);
  assert_int_equal(pm_u256_from_bytes(rand, r, 32), 0);
  pm_rand_hash(rand, t->recipient_rand_hash);
  assert_int_equal(eth_client_params_round(c, &t->creation_round, t->creation_round_block_hash), 0);
  uint8_t h[32];
  pm_ticket_hash(t, h);
  assert_int_equal(pm_sign_hash(gateway_priv, h, sig), 0);
}

static void redeem(uv_loop_t *loop, eth_client_t *c, const pm_ticket_t *t, const uint8_t sig[65],
                   const pm_u256_t *rand, redeem_wait_t *w) {
  memset(w, 0, sizeof *w);
  assert_int_equal(eth_client_redeem(c, t, sig, 65, rand, on_redeem, w), 0);
  run_until(loop, &w->done);
}

static void test_redeem_winning_ticket(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  eth_client_t *c = client_new(&loop, &orch);
  char err[256];
  assert_int_equal(eth_client_connect(c, err, sizeof err), 0);

  eth_sender_info_t before, after;
  assert_int_equal(eth_client_sender_info_sync(c, gateway_addr, &before, NULL, err, sizeof err), 0);
  pm_ticket_t t;
  uint8_t sig[65];
  pm_u256_t rand;
  winning_ticket(c, 1, &t, sig, &rand);
  redeem_wait_t w;
  redeem(&loop, c, &t, sig, &rand, &w);
  if (w.status) fail_msg("redemption failed: %s", w.err);

  /* The face value came out of the deposit. */
  assert_int_equal(eth_client_sender_info_sync(c, gateway_addr, &after, NULL, err, sizeof err), 0);
  pm_u256_t diff;
  assert_int_equal(eth_u256_sub(&diff, &before.deposit, &after.deposit), 0);
  assert_int_equal(pm_u256_cmp(&diff, &t.face_value), 0);

  /* The same ticket again is final: already used. */
  redeem(&loop, c, &t, sig, &rand, &w);
  assert_int_equal(w.status, LP_EEXIST);
  assert_string_equal(w.err, "ticket already used");

  /* A wrong recipientRand reverts in the gas estimate with the contract's reason. */
  pm_ticket_t t2;
  pm_u256_t rand2;
  winning_ticket(c, 2, &t2, sig, &rand2);
  pm_u256_t wrong = rand2;
  wrong.b[31] ^= 1;
  redeem(&loop, c, &t2, sig, &wrong, &w);
  assert_int_equal(w.status, LP_EPROTO);
  assert_non_null(strstr(w.err, "recipientRand does not match recipientRandHash"));

  /* A ticket worth less than its gas is not sent (and may be retried when gas is cheaper). */
  pm_ticket_t t5;
  uint8_t sig5[65];
  pm_u256_t r5;
  winning_ticket(c, 5, &t5, sig5, &r5);
  pm_u256_from_u64(&t5.face_value, 1);
  uint8_t h5[32];
  pm_ticket_hash(&t5, h5);
  assert_int_equal(pm_sign_hash(gateway_priv, h5, sig5), 0);
  redeem(&loop, c, &t5, sig5, &r5, &w);
  assert_int_equal(w.status, LP_EAGAIN);
  assert_string_equal(w.err, "insufficient ticket face value for redeem tx cost");

  /* Two queued redemptions go out one after the other with consecutive nonces. */
  pm_ticket_t t3, t4;
  uint8_t sig3[65], sig4[65];
  pm_u256_t r3, r4;
  winning_ticket(c, 3, &t3, sig3, &r3);
  winning_ticket(c, 4, &t4, sig4, &r4);
  redeem_wait_t w3 = {0}, w4 = {0};
  assert_int_equal(eth_client_redeem(c, &t3, sig3, 65, &r3, on_redeem, &w3), 0);
  assert_int_equal(eth_client_redeem(c, &t4, sig4, 65, &r4, on_redeem, &w4), 0);
  /* Both face values count as pending for the sender until their transactions are mined. */
  pm_u256_t pending, both;
  eth_client_sender_pending(c, gateway_addr, &pending);
  assert_int_equal(eth_u256_add(&both, &t3.face_value, &t4.face_value), 0);
  assert_int_equal(pm_u256_cmp(&pending, &both), 0);
  run_until(&loop, &w3.done);
  run_until(&loop, &w4.done);
  eth_client_sender_pending(c, gateway_addr, &pending);
  assert_true(pm_u256_is_zero(&pending));
  if (w3.status || w4.status) fail_msg("queued redemptions failed: %s / %s", w3.err, w4.err);
  assert_memory_not_equal(w3.txhash, w4.txhash, 32);

  close_client(&loop, c);
  uv_loop_close(&loop);
}

static void test_endpoint_down(void **state) {
  /* A port nothing listens on: a clear error at start-up, no crash. */
  eth_client_cfg_t cfg = {0};
  cfg.url = "http://127.0.0.1:9/";
  cfg.rpc_timeout_ms = 2000;
  eth_client_t *c;
  assert_int_equal(eth_client_new(NULL, &cfg, &c), 0);
  char err[256];
  int rc = eth_client_connect(c, err, sizeof err);
  assert_true(rc == LP_EIO || rc == LP_ETIMEDOUT);
  assert_non_null(strstr(err, "cannot reach the Ethereum RPC endpoint"));
  eth_client_free(c);

  /* The right endpoint with a wrong controller address. */
  cfg.url = jstr("url");
  cfg.rpc_timeout_ms = 5000;
  memset(cfg.controller, 0x77, 20);
  assert_int_equal(eth_client_new(NULL, &cfg, &c), 0);
  assert_int_not_equal(eth_client_connect(c, err, sizeof err), 0);
  assert_non_null(strstr(err, "-ethController"));
  eth_client_free(c);
}

static void test_node_open_from_flags(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  lp_config_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.network = "devenv";
  cfg.eth_url = (char *)jstr("url");
  cfg.eth_controller = (char *)jstr("addresses.Controller");
  cfg.eth_keystore_path = (char *)jstr("keystore.dir");
  cfg.eth_password = (char *)jstr("keystore.password");
  cfg.block_polling_interval_ms = 1000;
  eth_account_t acct;
  eth_network_t net;
  eth_client_t *c = NULL;
  char err[512];
  assert_int_equal(eth_node_open(&loop, &cfg, &acct, &net, &c, err, sizeof err), 0);
  assert_memory_equal(acct.addr, orch_addr, 20);
  assert_int_equal(net.redeem_gas, 350000);
  assert_int_equal(eth_client_chain_id(c), 1337);
  close_client(&loop, c);
  eth_account_wipe(&acct);

  /* Each missing or wrong flag is named. */
  cfg.network = "arbitrum-one-mainnet";
  assert_int_equal(eth_node_open(&loop, &cfg, &acct, &net, &c, err, sizeof err), LP_EINVAL);
  assert_non_null(
      strstr(err, "serves chain id 1337, but -network arbitrum-one-mainnet is chain id 42161"));
  cfg.network = "devenv";
  cfg.eth_password = "wrong";
  assert_int_not_equal(eth_node_open(&loop, &cfg, &acct, &net, &c, err, sizeof err), 0);
  assert_non_null(strstr(err, "could not decrypt key with given password"));
  cfg.eth_password = (char *)jstr("keystore.password");
  cfg.eth_controller = NULL;
  assert_int_equal(eth_node_open(&loop, &cfg, &acct, &net, &c, err, sizeof err), LP_EINVAL);
  assert_non_null(strstr(err, "-ethController"));
  cfg.eth_url = NULL;
  assert_int_equal(eth_node_open(&loop, &cfg, &acct, &net, &c, err, sizeof err), LP_EINVAL);
  assert_non_null(strstr(err, "-ethUrl"));
  cfg.network = "offchain";
  assert_int_equal(eth_node_open(&loop, &cfg, &acct, &net, &c, err, sizeof err), LP_EINVAL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}

static int setup(void **state) {
  const char *path = getenv("LPOD_CHAIN_JSON");
  char *buf = NULL;
  if (!path || lp_file_read(path, 1 << 20, &buf, NULL)) {
    fprintf(stderr, "LPOD_CHAIN_JSON not set or unreadable (run through run_with_chain.sh)\n");
    return -1;
  }
  chain = cJSON_Parse(buf);
  free(buf);
  if (!chain) return -1;
  if (lp_hex_decode(jstr("accounts.gateway.privateKey"), gateway_priv, 32) != 32) return -1;
  if (pm_addr_from_hex(jstr("accounts.orchestrator.address"), orch_addr)) return -1;
  return pm_priv_to_addr(gateway_priv, gateway_addr);
}

static int teardown(void **state) {
  cJSON_Delete(chain);
  eth_account_wipe(&orch);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keystore_account),
      cmocka_unit_test(test_connect_and_reads),
      cmocka_unit_test(test_polling_and_cached_sender),
      cmocka_unit_test(test_ticket_hash_matches_contract),
      cmocka_unit_test(test_redeem_winning_ticket),
      cmocka_unit_test(test_endpoint_down),
      cmocka_unit_test(test_node_open_from_flags),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
