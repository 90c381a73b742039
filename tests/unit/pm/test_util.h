/* Small helpers shared by the pm unit tests. */
#ifndef LPOD_TEST_PM_UTIL_H
#define LPOD_TEST_PM_UTIL_H

#include "lpod/core.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

/* Decodes a hex string into out, asserting it is exactly n bytes. */
static inline void hex_exact(const char *hex, uint8_t *out, size_t n) {
  assert_int_equal(lp_hex_decode(hex, out, n), (int)n);
}

static inline void assert_hex_eq(const uint8_t *got, size_t n, const char *want) {
  char buf[2 * 256 + 1];
  assert_true(n <= 256);
  lp_hex_encode(got, n, buf);
  const char *w = (want[0] == '0' && want[1] == 'x') ? want + 2 : want;
  assert_string_equal(buf, w);
}

#endif
