/* TicketBroker call data (the Ticket struct as an ABI tuple, getTicketHash and
 * redeemWinningTicket, spec §5.4) and the sender monitor's maxFloat (spec §4.5). */
#include "lpod/eth.h"

#include <string.h>

#include <openssl/bn.h>

#define TICKET_TUPLE "(address,address,uint256,uint256,uint256,bytes32,bytes)"

/* fields and aux are the caller's storage; the args point into them. */
static eth_abi_arg_t ticket_arg(const pm_ticket_t *t, eth_abi_arg_t fields[7],
                                uint8_t aux[PM_AUX_DATA_MAX]) {
  size_t an = pm_aux_data(t->creation_round, t->creation_round_block_hash, aux);
  fields[0] = eth_abi_addr(t->recipient);
  fields[1] = eth_abi_addr(t->sender);
  fields[2] = eth_abi_uint(&t->face_value);
  fields[3] = eth_abi_uint(&t->win_prob);
  fields[4] = eth_abi_u64(t->sender_nonce);
  fields[5] = eth_abi_b32(t->recipient_rand_hash);
  fields[6] = eth_abi_bytes(aux, an);
  return eth_abi_tuple(fields, 7);
}

int eth_tb_encode_get_ticket_hash(const pm_ticket_t *t, lp_buf_t *out) {
  eth_abi_arg_t fields[7];
  uint8_t aux[PM_AUX_DATA_MAX];
  eth_abi_arg_t arg = ticket_arg(t, fields, aux);
  return eth_abi_encode_call("getTicketHash(" TICKET_TUPLE ")", &arg, 1, out);
}

int eth_tb_encode_redeem(const pm_ticket_t *t, const uint8_t *sig, size_t sig_len,
                         const pm_u256_t *recipient_rand, lp_buf_t *out) {
  eth_abi_arg_t fields[7];
  uint8_t aux[PM_AUX_DATA_MAX];
  if (!sig && sig_len) return LP_EINVAL;
  eth_abi_arg_t args[3] = {ticket_arg(t, fields, aux), eth_abi_bytes(sig, sig_len),
                           eth_abi_uint(recipient_rand)};
  return eth_abi_encode_call("redeemWinningTicket(" TICKET_TUPLE ",bytes,uint256)", args, 3, out);
}

/* Signed arithmetic: claimed can exceed this recipient's share and pending can exceed the
 * rest, and go-livepeer lets maxFloat go negative before anyone clamps it. */
int eth_sender_max_float(const eth_sender_info_t *info, const pm_u256_t *claimed,
                         uint64_t pool_size, const pm_u256_t *pending, pm_u256_t *out,
                         bool *negative) {
  BN_CTX *ctx = BN_CTX_new();
  if (!ctx) return LP_ENOMEM;
  BN_CTX_start(ctx);
  BIGNUM *alloc = BN_CTX_get(ctx), *t = BN_CTX_get(ctx), *pend = BN_CTX_get(ctx),
         *dep = BN_CTX_get(ctx), *pool = BN_CTX_get(ctx);
  int rc = LP_ENOMEM;
  if (!pool) goto out;
  if (!BN_bin2bn(info->deposit.b, 32, dep) || !BN_bin2bn(pending->b, 32, pend)) goto out;
  BN_zero(alloc);
  if (pool_size > 0) {
    if (!BN_bin2bn(info->reserve_funds.b, 32, alloc) ||
        !BN_bin2bn(info->reserve_claimed.b, 32, t) || !BN_add(alloc, alloc, t) ||
        !BN_set_word(pool, pool_size) || !BN_div(alloc, NULL, alloc, pool, ctx) ||
        !BN_bin2bn(claimed->b, 32, t) || !BN_sub(alloc, alloc, t))
      goto out;
  }
  /* deposit >= 3 * pending lets the deposit cover what is in flight. */
  if (!BN_copy(t, pend) || !BN_mul_word(t, 3)) goto out;
  bool covered = !BN_is_zero(pend) && BN_cmp(dep, t) >= 0;
  if (!covered && !BN_sub(alloc, alloc, pend)) goto out;
  bool neg = BN_is_negative(alloc);
  if (negative) *negative = neg;
  memset(out->b, 0, 32);
  rc = 0;
  if (!neg && BN_bn2binpad(alloc, out->b, 32) != 32) rc = LP_ERANGE;
out:
  BN_CTX_end(ctx);
  BN_CTX_free(ctx);
  return rc;
}
