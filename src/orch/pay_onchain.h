/* The on-chain payment seam: the node's key, prices, ticket params, ProcessPayment against chain
 * state, durable winners and nonces, and redemption of winning tickets (spec/payments.md). */
#ifndef LPOD_ORCH_PAY_ONCHAIN_H
#define LPOD_ORCH_PAY_ONCHAIN_H

#include <uv.h>

#include "lpod/config.h"
#include "lpod/orch.h"

typedef struct orch_onchain orch_onchain_t;

/* True when cfg asks for a chain (-network other than offchain). */
bool orch_onchain_wanted(const lp_config_t *cfg);
/* Checks the pricing flags, loads the account, connects to the chain, opens the store in the
 * data dir, restores the recipient secret and the nonces of params still valid, fills pay and
 * starts block polling and redemption. Logs the reason and returns an error when the node must
 * not start. */
int orch_onchain_open(uv_loop_t *loop, const lp_config_t *cfg, orch_payments_t *pay,
                      orch_onchain_t **out);
/* Stops polling and redemption; the memory goes once store writes in flight have finished. */
void orch_onchain_free(orch_onchain_t *oc);

#endif
