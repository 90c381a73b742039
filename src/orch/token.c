/* Auth tokens and session ids (spec §5.2). The key is random per process, so tokens die with
 * the node as go-livepeer's do. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

#include "orch_int.h"

int orch_token_compute(const uint8_t key[ORCH_TOKEN_KEY_LEN], const char *session_id,
                       int64_t expiration, uint8_t out[ORCH_TOKEN_LEN]) {
  /* big.NewInt(expiration).Bytes(): the magnitude, big-endian, no leading zeros. */
  uint64_t mag = expiration < 0 ? (uint64_t)0 - (uint64_t)expiration : (uint64_t)expiration;
  uint8_t be[8];
  size_t n = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    uint8_t b = (uint8_t)(mag >> shift);
    if (n == 0 && b == 0) continue;
    be[n++] = b;
  }
  size_t sid_len = strlen(session_id);
  uint8_t msg[256 + 8];
  if (sid_len > 256) return LP_ERANGE;
  memcpy(msg, session_id, sid_len);
  memcpy(msg + sid_len, be, n);
  unsigned int md_len = 0;
  if (!HMAC(EVP_sha256(), key, ORCH_TOKEN_KEY_LEN, msg, sid_len + n, out, &md_len) ||
      md_len != ORCH_TOKEN_LEN)
    return LP_EIO;
  return 0;
}

bool orch_token_verify(const uint8_t key[ORCH_TOKEN_KEY_LEN], const Net__AuthToken *t) {
  uint8_t want[ORCH_TOKEN_LEN];
  if (!t || !t->session_id) return false;
  if (orch_token_compute(key, t->session_id, t->expiration, want)) return false;
  return lp_consttime_eq(want, sizeof want, t->token.data, t->token.len);
}

int orch_session_id_new(char out[ORCH_SESSION_ID_LEN + 1]) {
  uint8_t r[ORCH_SESSION_ID_LEN / 2];
  if (RAND_bytes(r, sizeof r) != 1) return LP_EIO;
  lp_hex_encode(r, sizeof r, out);
  return 0;
}
