#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lpod/core.h"

static int pipefd[2];

static char *drain(void) {
  static char buf[65536];
  lp_log_set_fd(-1);
  close(pipefd[1]);
  ssize_t n, off = 0;
  while ((n = read(pipefd[0], buf + off, sizeof buf - 1 - (size_t)off)) > 0) off += n;
  buf[off] = '\0';
  close(pipefd[0]);
  return buf;
}

static void capture(void) {
  assert_int_equal(pipe(pipefd), 0);
  lp_log_set_fd(pipefd[1]);
}

static void test_glog_format(void **state) {
  (void)state;
  capture();
  LOGI("hello %d", 42);
  LOGW("careful");
  LOGE("broken");
  char *out = drain();
  regex_t re;
  assert_int_equal(regcomp(&re,
                           "^I[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6} +[0-9]+ "
                           "test_log\\.c:[0-9]+\\] hello 42\n"
                           "W[0-9]{4} .* test_log\\.c:[0-9]+\\] careful\n"
                           "E[0-9]{4} .* test_log\\.c:[0-9]+\\] broken\n$",
                           REG_EXTENDED),
                   0);
  assert_int_equal(regexec(&re, out, 0, NULL, 0), 0);
  regfree(&re);
}

static void test_levels(void **state) {
  (void)state;
  lp_log_set_level(3);
  capture();
  LOGV(3, "shown at 3");
  LOGV(LP_V_DEBUG, "hidden at 3");
  lp_log_set_level(LP_V_DEBUG);
  LOGV(LP_V_DEBUG, "shown at 5");
  LOGV(LP_V_VERBOSE, "hidden at 5");
  char *out = drain();
  lp_log_set_level(3);
  assert_non_null(strstr(out, "shown at 3"));
  assert_non_null(strstr(out, "shown at 5"));
  assert_null(strstr(out, "hidden"));
}

static void test_context_order(void **state) {
  (void)state;
  capture();
  lp_logctx_t ctx = LP_LOGCTX_INIT;
  ctx.sender = "0xabc";
  ctx.seq_no = 28159;
  ctx.manifest_id = "m1";
  ctx.session_id = "s1";
  ctx.orch_session_id = "26e483d7";
  LOGI_C(&ctx, "Transcoded segment profile=%s bytes=%d", "720p", 147392);
  lp_logctx_t partial = LP_LOGCTX_INIT;
  partial.manifest_id = "only";
  LOGI_C(&partial, "x");
  char *out = drain();
  assert_non_null(strstr(out, "] manifestID=m1 sessionID=s1 seqNo=28159 orchSessionID=26e483d7 "
                              "sender=0xabc Transcoded segment profile=720p bytes=147392\n"));
  assert_non_null(strstr(out, "] manifestID=only x\n"));
  assert_null(strstr(out, "seqNo=-1"));
}

static void test_one_line_even_if_huge(void **state) {
  (void)state;
  char *big = malloc(20000);
  memset(big, 'a', 19999);
  big[19999] = '\0';
  capture();
  LOGI("%s", big);
  LOGI("trailing newline is not doubled\n");
  char *out = drain();
  free(big);
  int lines = 0;
  for (char *p = out; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 2);
  assert_non_null(strstr(out, "doubled\n"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_glog_format),
      cmocka_unit_test(test_levels),
      cmocka_unit_test(test_context_order),
      cmocka_unit_test(test_one_line_even_if_huge),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
