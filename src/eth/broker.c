/* TicketBroker call data: the Ticket struct as an ABI tuple, getTicketHash and
 * redeemWinningTicket (spec §5.4). */
#include "lpod/eth.h"

#include <string.h>

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
