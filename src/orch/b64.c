/* Base64 with Go's base64.StdEncoding behaviour: padding required, CR and LF skipped, and the
 * same "illegal base64 data at input byte N" positions, because that text reaches gateways in
 * the 402 body of /segment. */
#include <stdio.h>
#include <stdlib.h>

#include "orch_int.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(uint8_t c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static int corrupt(size_t pos, char *err, size_t errlen) {
  snprintf(err, errlen, "illegal base64 data at input byte %zu", pos);
  return LP_EINVAL;
}

static bool is_nl(uint8_t c) { return c == '\n' || c == '\r'; }

int orch_b64_decode(const char *in_chars, size_t len, uint8_t **out, size_t *out_len, char *err,
                    size_t errlen) {
  const uint8_t *in = (const uint8_t *)in_chars;
  uint8_t *dst = malloc(len / 4 * 3 + 3);
  if (!dst) return LP_ENOMEM;
  size_t n = 0, si = 0;
  int rc = 0;
  while (si < len) {
    uint8_t q[4] = {0, 0, 0, 0};
    int got = 4;
    bool end = false;
    for (int j = 0; j < 4; j++) {
      if (si == len) {
        if (j == 0) goto done;
        rc = corrupt(si - (size_t)j, err, errlen);
        goto done;
      }
      uint8_t c = in[si++];
      int v = b64_value(c);
      if (v >= 0) {
        q[j] = (uint8_t)v;
        continue;
      }
      if (is_nl(c)) {
        j--;
        continue;
      }
      if (c != '=' || j < 2) {
        rc = corrupt(si - 1, err, errlen);
        goto done;
      }
      if (j == 2) {
        /* "==" is required here; the first '=' is already consumed. */
        while (si < len && is_nl(in[si])) si++;
        if (si == len) {
          rc = corrupt(len, err, errlen);
          goto done;
        }
        if (in[si] != '=') {
          rc = corrupt(si - 1, err, errlen);
          goto done;
        }
        si++;
      }
      while (si < len && is_nl(in[si])) si++;
      if (si < len) {
        rc = corrupt(si, err, errlen);
        goto done;
      }
      got = j;
      end = true;
      break;
    }
    uint32_t v = (uint32_t)q[0] << 18 | (uint32_t)q[1] << 12 | (uint32_t)q[2] << 6 | q[3];
    dst[n++] = (uint8_t)(v >> 16);
    if (got >= 3) dst[n++] = (uint8_t)(v >> 8);
    if (got == 4) dst[n++] = (uint8_t)v;
    if (end) break;
  }
done:
  if (rc) {
    free(dst);
    return rc;
  }
  *out = dst;
  *out_len = n;
  return 0;
}

char *orch_b64_encode(const uint8_t *in, size_t len) {
  char *out = malloc((len + 2) / 3 * 4 + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len) v |= in[i + 2];
    out[o++] = b64_alphabet[(v >> 18) & 63];
    out[o++] = b64_alphabet[(v >> 12) & 63];
    out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
  }
  out[o] = 0;
  return out;
}
