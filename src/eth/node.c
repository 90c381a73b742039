/* From go-livepeer flags to a connected chain client: network defaults, the node's account and
 * the start-up reads. */
#include "lpod/config.h"
#include "lpod/eth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REDEEM_GAS_L1 350000
#define REDEEM_GAS_L2 1200000

int eth_network_defaults(const char *network, eth_network_t *out) {
  memset(out, 0, sizeof *out);
  out->redeem_gas = REDEEM_GAS_L1;
  if (!network || !*network || strcmp(network, "offchain") == 0) return LP_EINVAL;
  const char *controller = NULL;
  if (strcmp(network, "arbitrum-one-mainnet") == 0) {
    controller = "0xD8E8328501E9645d16Cf49539efC04f734606ee4";
    out->redeem_gas = REDEEM_GAS_L2;
    out->chain_id = 42161;
  } else if (strcmp(network, "mainnet") == 0) {
    controller = "0xf96d54e490317c557a967abfa5d6e33006be69b3";
    out->min_gas_price = 1000000000; /* 1 gwei */
    out->chain_id = 1;
  } else if (strncmp(network, "arbitrum-one-", 13) == 0) {
    out->redeem_gas = REDEEM_GAS_L2;
  }
  if (controller) {
    out->has_controller = true;
    pm_addr_from_hex(controller, out->controller);
  }
  return 0;
}

int eth_node_open(uv_loop_t *loop, const struct lp_config *cfg, eth_account_t *account,
                  eth_network_t *network, eth_client_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (eth_network_defaults(cfg->network, network)) {
    lp_seterr(err, errlen, "-network %s has no chain", cfg->network ? cfg->network : "");
    return LP_EINVAL;
  }
  if (!cfg->eth_url || !*cfg->eth_url) {
    lp_seterr(err, errlen, "-ethUrl is required with -network %s", cfg->network);
    return LP_EINVAL;
  }
  uint8_t controller[ETH_ADDR_LEN];
  if (cfg->eth_controller && *cfg->eth_controller) {
    if (pm_addr_from_hex(cfg->eth_controller, controller)) {
      lp_seterr(err, errlen, "-ethController %s is not an Ethereum address", cfg->eth_controller);
      return LP_EINVAL;
    }
  } else if (network->has_controller) {
    memcpy(controller, network->controller, ETH_ADDR_LEN);
  } else {
    lp_seterr(err, errlen, "-ethController is required with -network %s", cfg->network);
    return LP_EINVAL;
  }

  char path[4096];
  const char *ks = cfg->eth_keystore_path;
  if (!ks || !*ks) {
    if (!cfg->datadir || !*cfg->datadir) {
      lp_seterr(err, errlen, "-ethKeystorePath is required when there is no -datadir");
      return LP_EINVAL;
    }
    snprintf(path, sizeof path, "%s/keystore", cfg->datadir);
    ks = path;
  }
  char inner[512];
  const char *password = cfg->eth_password ? cfg->eth_password : "";
  bool want_addr = cfg->eth_acct_addr && *cfg->eth_acct_addr;
  struct stat st;
  bool is_file = stat(ks, &st) == 0 && S_ISREG(st.st_mode);
  int rc = eth_account_load(ks, cfg->eth_acct_addr, password, account, inner, sizeof inner);
  if (rc == LP_ENOENT && !want_addr && !is_file) {
    rc = eth_account_create(ks, password, NULL, account, inner, sizeof inner);
    if (!rc) {
      char a[PM_ADDR_HEX_LEN];
      pm_addr_to_hex(account->addr, a);
      LOGW("eth: no account in %s; created %s (fund it and keep the keystore safe)", ks, a);
    }
  }
  if (rc) {
    lp_seterr(err, errlen, "cannot load the node's Ethereum account: %s", inner);
    return rc;
  }

  eth_client_cfg_t cc;
  memset(&cc, 0, sizeof cc);
  cc.url = cfg->eth_url;
  memcpy(cc.controller, controller, ETH_ADDR_LEN);
  cc.poll_interval_ms = cfg->block_polling_interval_ms;
  cc.account = account;
  pm_u256_from_u64(&cc.min_gas_price, network->min_gas_price);
  eth_client_t *c;
  if ((rc = eth_client_new(loop, &cc, &c))) {
    lp_seterr(err, errlen, "-ethUrl %s: %s", cfg->eth_url, lp_strerror(rc));
    eth_account_wipe(account);
    return rc;
  }
  if ((rc = eth_client_connect(c, err, errlen))) {
    eth_client_free(c);
    eth_account_wipe(account);
    return rc;
  }
  if (network->chain_id && eth_client_chain_id(c) != network->chain_id) {
    lp_seterr(err, errlen, "-ethUrl %s serves chain id %llu, but -network %s is chain id %llu",
              cfg->eth_url, (unsigned long long)eth_client_chain_id(c), cfg->network,
              (unsigned long long)network->chain_id);
    eth_client_free(c);
    eth_account_wipe(account);
    return LP_EINVAL;
  }
  char a[PM_ADDR_HEX_LEN];
  pm_addr_to_hex(account->addr, a);
  LOGI("eth: node account %s", a);
  *out = c;
  return 0;
}
