#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lpod/core.h"

static void test_buf(void **state) {
  (void)state;
  lp_buf_t b = LP_BUF_INIT;
  for (int i = 0; i < 1000; i++) assert_int_equal(lp_buf_appendf(&b, "%d,", i), 0);
  assert_int_equal(lp_buf_append(&b, "x", 1), 0);
  assert_true(b.len > 3000);
  assert_memory_equal(b.data, "0,1,2,", 6);
  assert_int_equal(b.data[b.len - 1], 'x');
  size_t n;
  uint8_t *p = lp_buf_steal(&b, &n);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_true(n > 3000);
  free(p);
  assert_int_equal(lp_buf_append(&b, "ab", 2), 0);
  assert_int_equal(lp_buf_reserve(&b, SIZE_MAX), LP_ERANGE); /* would overflow */
  lp_buf_free(&b);
}

static void test_hex(void **state) {
  (void)state;
  uint8_t in[] = {0x00, 0xab, 0xff, 0x10};
  char out[9];
  lp_hex_encode(in, 4, out);
  assert_string_equal(out, "00abff10");
  uint8_t back[4];
  assert_int_equal(lp_hex_decode("0x00ABff10", back, sizeof back), 4);
  assert_memory_equal(back, in, 4);
  assert_int_equal(lp_hex_decode("abc", back, sizeof back), LP_EINVAL);
  assert_int_equal(lp_hex_decode("zz", back, sizeof back), LP_EINVAL);
  assert_int_equal(lp_hex_decode("0011223344", back, sizeof back), LP_ERANGE);
}

static void test_consttime(void **state) {
  (void)state;
  assert_true(lp_consttime_eq("secret", 6, "secret", 6));
  assert_false(lp_consttime_eq("secret", 6, "secreT", 6));
  assert_false(lp_consttime_eq("secret", 6, "secret2", 7));
  assert_true(lp_consttime_eq("", 0, "", 0));
}

static void test_files(void **state) {
  (void)state;
  char dir[] = "/tmp/lpod-util-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char sub[256], file[300];
  snprintf(sub, sizeof sub, "%s/x/y/z", dir);
  assert_int_equal(lp_mkdir_p(sub, 0700), 0);
  assert_int_equal(lp_mkdir_p(sub, 0700), 0);
  snprintf(file, sizeof file, "%s/f.txt", sub);
  assert_int_equal(lp_file_write_atomic(file, "abc", 3, 0600), 0);
  struct stat st;
  assert_int_equal(stat(file, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  char *text;
  size_t len;
  assert_int_equal(lp_file_read(file, 100, &text, &len), 0);
  assert_int_equal(len, 3);
  assert_string_equal(text, "abc");
  free(text);
  assert_int_equal(lp_file_read(file, 2, &text, &len), LP_ERANGE);
  assert_null(text);
  snprintf(file, sizeof file, "%s/missing", dir);
  assert_int_equal(lp_file_read(file, 100, &text, &len), LP_ENOENT);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_trim(void **state) {
  (void)state;
  char s[] = " \t hello world \n";
  assert_string_equal(lp_strtrim(s), "hello world");
  char e[] = "   ";
  assert_string_equal(lp_strtrim(e), "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_buf),   cmocka_unit_test(test_hex),  cmocka_unit_test(test_consttime),
      cmocka_unit_test(test_files), cmocka_unit_test(test_trim),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
