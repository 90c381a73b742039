/* Reads one ticket per line as JSON on stdin and answers one JSON line on stdout with what lpod's
 * pm module computes for it: ticket hash, personal digest, recovered signer (EIP-55) or the
 * verifier's error, recipientRandHash and the win check. The interop script compares these with
 * an independent computation in ethers. */
#include "lpod/core.h"
#include "lpod/pm.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int get_hex(const cJSON *o, const char *key, uint8_t *out, size_t cap, size_t *len) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsString(v)) return LP_EINVAL;
  int n = lp_hex_decode(v->valuestring, out, cap);
  if (n < 0) return n;
  *len = (size_t)n;
  return 0;
}

static int get_fixed(const cJSON *o, const char *key, uint8_t *out, size_t n) {
  uint8_t buf[64];
  size_t len;
  int rc = get_hex(o, key, buf, sizeof buf, &len);
  if (rc) return rc;
  if (len != n) return LP_EINVAL;
  memcpy(out, buf, n);
  return 0;
}

static int get_dec(const cJSON *o, const char *key, pm_u256_t *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? pm_u256_from_dec(out, v->valuestring) : LP_EINVAL;
}

static void add_hex(cJSON *o, const char *key, const uint8_t *b, size_t n) {
  char buf[2 + 2 * 64 + 1] = "0x";
  lp_hex_encode(b, n, buf + 2);
  cJSON_AddStringToObject(o, key, buf);
}

static cJSON *answer(const cJSON *in) {
  cJSON *out = cJSON_CreateObject();
  pm_ticket_t t;
  pm_u256_t rand, nonce, round;
  uint8_t sig[128];
  size_t sig_len;
  memset(&t, 0, sizeof t);
  if (get_fixed(in, "recipient", t.recipient, 20) || get_fixed(in, "sender", t.sender, 20) ||
      get_dec(in, "faceValue", &t.face_value) || get_dec(in, "winProb", &t.win_prob) ||
      get_dec(in, "senderNonce", &nonce) ||
      get_fixed(in, "recipientRandHash", t.recipient_rand_hash, 32) ||
      get_dec(in, "creationRound", &round) ||
      get_fixed(in, "creationRoundBlockHash", t.creation_round_block_hash, 32) ||
      get_dec(in, "recipientRand", &rand) || get_hex(in, "sig", sig, sizeof sig, &sig_len)) {
    cJSON_AddStringToObject(out, "inputError", "bad or missing field");
    return out;
  }
  uint64_t n64, r64;
  if (pm_u256_to_u64(&nonce, &n64) || n64 > UINT32_MAX || pm_u256_to_u64(&round, &r64) ||
      r64 > INT64_MAX) {
    cJSON_AddStringToObject(out, "inputError", "nonce or round out of range");
    return out;
  }
  t.sender_nonce = (uint32_t)n64;
  t.creation_round = (int64_t)r64;

  uint8_t h[32], digest[32], signer[20], rh[32];
  pm_ticket_hash(&t, h);
  add_hex(out, "hash", h, 32);
  pm_personal_digest(h, digest);
  add_hex(out, "digest", digest, 32);
  const char *err = NULL;
  if (pm_recover_hash(h, sig, sig_len, signer, &err) == 0) {
    char a[PM_ADDR_HEX_LEN];
    pm_addr_to_hex(signer, a);
    cJSON_AddStringToObject(out, "signer", a);
  } else {
    cJSON_AddStringToObject(out, "sigError", err);
  }
  cJSON_AddBoolToObject(out, "verified", pm_verify_hash(t.sender, h, sig, sig_len));
  char sender_hex[PM_ADDR_HEX_LEN];
  pm_addr_to_hex(t.sender, sender_hex);
  cJSON_AddStringToObject(out, "senderEip55", sender_hex);
  pm_rand_hash(&rand, rh);
  add_hex(out, "recipientRandHashOfRand", rh, 32);
  cJSON_AddBoolToObject(out, "wins", pm_ticket_wins(sig, sig_len, &rand, &t.win_prob));
  return out;
}

int main(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) > 0) {
    cJSON *in = cJSON_Parse(line);
    cJSON *out;
    if (!in) {
      out = cJSON_CreateObject();
      cJSON_AddStringToObject(out, "inputError", "not JSON");
    } else {
      out = answer(in);
    }
    char *s = cJSON_PrintUnformatted(out);
    if (s) {
      fputs(s, stdout);
      fputc('\n', stdout);
      free(s);
    }
    fflush(stdout);
    cJSON_Delete(out);
    cJSON_Delete(in);
  }
  free(line);
  return 0;
}
