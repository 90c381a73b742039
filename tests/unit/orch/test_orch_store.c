/* The result store: the newest 12 per rendition folder, lookups by URL path, session drops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

static uint8_t *blob(int v, size_t n) {
  uint8_t *b = malloc(n);
  memset(b, v, n);
  return b;
}

static void test_retention(void **st) {
  orch_store_t *s = orch_store_new();
  char name[64];
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof name, "P240p/%d.ts", i);
    assert_int_equal(orch_store_put(s, "a", name, blob(i, 30), 30), 0);
    snprintf(name, sizeof name, "P360p/%d.ts", i);
    assert_int_equal(orch_store_put(s, "a", name, blob(100 + i, 40), 40), 0);
  }
  size_t n;
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof name, "a/P240p/%d.ts", i);
    const uint8_t *d = orch_store_lookup(s, name, &n);
    if (i < 20 - ORCH_STORE_KEEP) {
      assert_null(d);
    } else {
      assert_non_null(d);
      assert_int_equal(n, 30);
      assert_int_equal(d[0], i);
    }
  }
  /* rewriting a name replaces it and does not count twice */
  assert_int_equal(orch_store_put(s, "a", "P240p/19.ts", blob(7, 5), 5), 0);
  assert_non_null(orch_store_lookup(s, "a/P240p/8.ts", &n));
  assert_int_equal(orch_store_get(s, "a", "P240p/19.ts", &n)[0], 7);
  assert_int_equal(n, 5);

  assert_null(orch_store_lookup(s, "a", &n));
  assert_null(orch_store_lookup(s, "a/", &n));
  assert_null(orch_store_lookup(s, "b/P240p/19.ts", &n));
  assert_null(orch_store_lookup(s, "a/P240p/19.mp4", &n));
  assert_null(orch_store_lookup(s, "a/P240/19.ts", &n));
  assert_int_equal(orch_store_put(s, "b", "x.ts", blob(1, 3), 3), 0);
  assert_non_null(orch_store_lookup(s, "b/x.ts", &n));
  orch_store_drop_session(s, "a");
  assert_null(orch_store_lookup(s, "a/P360p/19.ts", &n));
  assert_non_null(orch_store_lookup(s, "b/x.ts", &n));
  orch_store_free(s);

  assert_string_equal(orch_store_mime("a/1.ts"), "video/mp2t");
  assert_string_equal(orch_store_mime("a/1.mp4"), "video/mp4");
  assert_string_equal(orch_store_mime("a/1"), "");
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_retention)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
