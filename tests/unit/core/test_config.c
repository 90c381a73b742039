#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lpod/config.h"
#include "lpod/core.h"

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/lpod-cfg-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd);
}

static const char *write_tmp(const char *name, const char *text) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

#define LOAD(cfg, envp, err, ...)                                                                  \
  ({                                                                                               \
    char *argv_[] = {__VA_ARGS__};                                                                 \
    lp_config_load(cfg, (int)LP_ARRAY_LEN(argv_) - 1, argv_, envp, err, sizeof err);               \
  })

static char *empty_env[] = {NULL};

static void test_defaults(void **state) {
  (void)state;
  lp_config_t c;
  char err[512];
  assert_int_equal(LOAD(&c, empty_env, err, NULL), LP_CFG_OK);
  assert_false(c.orchestrator);
  assert_string_equal(c.network, "offchain");
  assert_int_equal(c.max_sessions, 10);
  assert_false(c.max_sessions_auto);
  assert_int_equal(c.verbosity, 3);
  assert_true(c.test_transcoder);
  assert_true(c.auto_adjust_price);
  assert_string_equal(c.ticket_ev, "8000000000");
  assert_string_equal(c.cli_addr, "127.0.0.1:7935");
  assert_int_equal(c.block_polling_interval_ms, 5000);
  assert_int_equal(c.shutdown_grace_ms, 10000);
  assert_non_null(strstr(c.datadir, "/.lpData/offchain"));
  lp_config_free(&c);
}

static void test_precedence(void **state) {
  (void)state;
  const char *file = write_tmp("p.conf", "maxSessions 3\nnetwork arbitrum-one-mainnet\n"
                                         "ethUrl http://file\nv 5\n");
  char *env[] = {"LP_MAXSESSIONS=4", "LP_ETHURL=http://env", "LP_V=", NULL};
  lp_config_t c;
  char err[512];
  assert_int_equal(LOAD(&c, env, err, "-config", (char *)file, "-maxSessions", "5", NULL),
                   LP_CFG_OK);
  assert_int_equal(c.max_sessions, 5);                    /* flag beats env and file */
  assert_string_equal(c.eth_url, "http://env");           /* env beats file */
  assert_string_equal(c.network, "arbitrum-one-mainnet"); /* file beats default */
  assert_int_equal(c.verbosity, 5);                       /* empty env value is ignored */
  assert_non_null(strstr(c.datadir, ".lpData/arbitrum-one-mainnet"));
  lp_config_free(&c);
  lp_log_set_level(3);
}

static void test_config_from_env(void **state) {
  (void)state;
  char var[600];
  snprintf(var, sizeof var, "LP_CONFIG=%s", write_tmp("e.conf", "orchestrator\n"));
  char *env[] = {var, NULL};
  lp_config_t c;
  char err[512];
  assert_int_equal(LOAD(&c, env, err, NULL), LP_CFG_OK);
  assert_true(c.orchestrator); /* bare key means true */
  lp_config_free(&c);
}

static void test_file_edge_cases(void **state) {
  (void)state;
  const char *file = write_tmp("edge.conf", "# a comment\n"
                                            "\n"
                                            "   \n"
                                            "transcoder\n"
                                            "orchAddr 127.0.0.1:8935 # trailing comment\n"
                                            "serviceAddr host#1:8935\n"
                                            "nodes a,b\n" /* go-livepeer key: warned, ignored */
                                            "maxSessions auto\n"
                                            "blockPollingInterval 1m30s\n");
  lp_config_t c;
  char err[512];
  assert_int_equal(LOAD(&c, empty_env, err, "-config", (char *)file, NULL), LP_CFG_OK);
  assert_true(c.transcoder);
  assert_string_equal(c.orch_addr, "127.0.0.1:8935");
  assert_string_equal(c.service_addr, "host#1:8935"); /* '#' inside a value stays */
  assert_true(c.max_sessions_auto);
  assert_int_equal(c.block_polling_interval_ms, 90000);
  assert_string_equal(c.cli_addr, "127.0.0.1:6935"); /* standalone transcoder default */
  lp_config_free(&c);
}

static void test_file_errors_name_line(void **state) {
  (void)state;
  lp_config_t c;
  char err[512];
  const char *f1 = write_tmp("bad1.conf", "orchestrator\n\nmaxSessions lots\n");
  assert_int_equal(LOAD(&c, empty_env, err, "-config", (char *)f1, NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "bad1.conf line 3"));
  assert_non_null(strstr(err, "maxSessions"));

  const char *f2 = write_tmp("bad2.conf", "orchestrator\nmaxSesions 4\n");
  assert_int_equal(LOAD(&c, empty_env, err, "-config", (char *)f2, NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "bad2.conf line 2"));
  assert_non_null(strstr(err, "did you mean -maxSessions"));

  const char *f3 = write_tmp("bad3.conf", "-orchestrator\n");
  assert_int_equal(LOAD(&c, empty_env, err, "-config", (char *)f3, NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "line 1"));

  const char *f4 = write_tmp("bad4.conf", "orchestrator maybe\n");
  assert_int_equal(LOAD(&c, empty_env, err, "-config", (char *)f4, NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "invalid boolean"));

  const char *f5 = write_tmp("bad5.conf", "blockPollingInterval 5 seconds\n");
  assert_int_equal(LOAD(&c, empty_env, err, "-config", (char *)f5, NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "invalid duration"));

  assert_int_equal(LOAD(&c, empty_env, err, "-config", "/nonexistent/x.conf", NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "no such file"));
}

static void test_flag_forms(void **state) {
  (void)state;
  lp_config_t c;
  char err[512];
  assert_int_equal(LOAD(&c, empty_env, err, "--orchestrator", "-transcoder=true",
                        "-testTranscoder=false", "-serviceAddr=1.2.3.4:8935", "--v", "6", NULL),
                   LP_CFG_OK);
  assert_true(c.orchestrator);
  assert_true(c.transcoder);
  assert_false(c.test_transcoder);
  assert_string_equal(c.service_addr, "1.2.3.4:8935");
  assert_int_equal(c.verbosity, 6);
  lp_config_free(&c);
  lp_log_set_level(3);

  /* Go silently stops at "-flag false"; lpod refuses it. */
  assert_int_equal(LOAD(&c, empty_env, err, "-testTranscoder", "false", "-orchestrator", NULL),
                   LP_CFG_ERROR);
  assert_non_null(strstr(err, "-testTranscoder=false"));

  assert_int_equal(LOAD(&c, empty_env, err, "-orchestrator", "stray", NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "unexpected argument"));

  assert_int_equal(LOAD(&c, empty_env, err, "-serviceAddr", NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "needs an argument"));

  assert_int_equal(LOAD(&c, empty_env, err, "-nvida", "all", NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "did you mean -nvidia"));

  assert_int_equal(LOAD(&c, empty_env, err, "-completelyunknown", NULL), LP_CFG_ERROR);
  assert_null(strstr(err, "did you mean"));

  assert_int_equal(LOAD(&c, empty_env, err, "-maxSessions", "0", NULL), LP_CFG_ERROR);
  assert_int_equal(LOAD(&c, empty_env, err, "-targetRealtimeRatio", "1.5", NULL), LP_CFG_ERROR);
  assert_int_equal(LOAD(&c, empty_env, err, "-nvidia", "0", "-netint", "all", NULL), LP_CFG_ERROR);
  assert_int_equal(LOAD(&c, empty_env, err, "-cpuPreset", "fastest", NULL), LP_CFG_ERROR);
  assert_non_null(strstr(err, "-cpuPreset must be one of ultrafast"));
  assert_non_null(strstr(err, "got 'fastest'"));
  assert_int_equal(LOAD(&c, empty_env, err, "-cpuPreset", "veryfast", NULL), LP_CFG_OK);
  assert_string_equal(c.cpu_preset, "veryfast");
  lp_config_free(&c);

  /* -localWorkers: a count, or one worker per device */
  assert_int_equal(LOAD(&c, empty_env, err, NULL), LP_CFG_OK);
  assert_int_equal(c.local_workers, LP_LOCAL_WORKERS_AUTO); /* the default */
  char *t = lp_config_table(&c);                            /* non-default values only */
  assert_non_null(t);
  assert_null(strstr(t, "LocalWorkers"));
  free(t);
  lp_config_free(&c);
  assert_int_equal(LOAD(&c, empty_env, err, "-localWorkers", "auto", NULL), LP_CFG_OK);
  assert_int_equal(c.local_workers, LP_LOCAL_WORKERS_AUTO);
  lp_config_free(&c);
  assert_int_equal(LOAD(&c, empty_env, err, "-localWorkers", "0", NULL), LP_CFG_OK);
  assert_int_equal(c.local_workers, 0);
  t = lp_config_table(&c);
  assert_non_null(t);
  char row[64];
  snprintf(row, sizeof row, "| %-21s | %-19s |", "LocalWorkers", "0");
  assert_non_null(strstr(t, row));
  free(t);
  lp_config_free(&c);
  assert_int_equal(LOAD(&c, empty_env, err, "-localWorkers", "3", NULL), LP_CFG_OK);
  assert_int_equal(c.local_workers, 3);
  lp_config_free(&c);
  char *bad[] = {"-1", "65", "two", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(LOAD(&c, empty_env, err, "-localWorkers", bad[i], NULL), LP_CFG_ERROR);
    assert_non_null(strstr(err, "-localWorkers must be a number from 0 to 64 or 'auto'"));
  }

  /* Accepted go-livepeer flags that lpod does not implement: value consumed, no error. */
  assert_int_equal(LOAD(&c, empty_env, err, "-gateway", "-transcodingOptions", "P240p30fps16x9",
                        "-orchestrator", NULL),
                   LP_CFG_OK);
  assert_true(c.orchestrator);
  lp_config_free(&c);
}

static void test_literal_or_file(void **state) {
  (void)state;
  const char *secret = write_tmp("secret", "  s3cret-from-file \n");
  lp_config_t c;
  char err[512];
  assert_int_equal(
      LOAD(&c, empty_env, err, "-orchSecret", (char *)secret, "-ethPassword", "literal-pass", NULL),
      LP_CFG_OK);
  assert_string_equal(c.orch_secret, "s3cret-from-file");
  assert_string_equal(c.eth_password, "literal-pass");
  lp_config_free(&c);
  /* An empty file is not a secret: the literal (the path) is kept, as go-livepeer does. */
  const char *empty = write_tmp("empty", "");
  assert_int_equal(LOAD(&c, empty_env, err, "-orchSecret", (char *)empty, NULL), LP_CFG_OK);
  assert_string_equal(c.orch_secret, empty);
  lp_config_free(&c);
}

static void test_table_masks_secrets(void **state) {
  (void)state;
  lp_config_t c;
  char err[512];
  assert_int_equal(LOAD(&c, empty_env, err, "-orchestrator", "-orchSecret", "hunter2",
                        "-ethPassword", "pw", "-maxSessions", "7", "-cliAddr", ":9999", NULL),
                   LP_CFG_OK);
  char *t = lp_config_table(&c);
  assert_non_null(t);
  assert_null(strstr(t, "hunter2"));
  assert_null(strstr(t, "| pw"));
  assert_non_null(strstr(t, "OrchSecret"));
  assert_non_null(strstr(t, "********"));
  assert_non_null(strstr(t, "MaxSessions"));
  assert_non_null(strstr(t, "127.0.0.1:9999"));
  assert_null(strstr(t, "Network")); /* defaults are left out */
  assert_null(strstr(t, "Transcoder "));
  free(t);
  lp_config_free(&c);
}

static void test_cli_addr_normalisation(void **state) {
  (void)state;
  lp_config_t c;
  char err[512];
  assert_int_equal(LOAD(&c, empty_env, err, "-cliAddr", "0.0.0.0", NULL), LP_CFG_OK);
  assert_string_equal(c.cli_addr, "0.0.0.0:7935");
  lp_config_free(&c);
  assert_int_equal(LOAD(&c, empty_env, err, "-cliAddr", "10.0.0.1:1234", NULL), LP_CFG_OK);
  assert_string_equal(c.cli_addr, "10.0.0.1:1234");
  lp_config_free(&c);
}

static void test_durations(void **state) {
  (void)state;
  int64_t ms;
  assert_int_equal(lp_parse_duration_ms("10s", &ms), 0);
  assert_int_equal(ms, 10000);
  assert_int_equal(lp_parse_duration_ms("1h2m3s", &ms), 0);
  assert_int_equal(ms, 3723000);
  assert_int_equal(lp_parse_duration_ms("250ms", &ms), 0);
  assert_int_equal(ms, 250);
  assert_int_equal(lp_parse_duration_ms("1.5s", &ms), 0);
  assert_int_equal(ms, 1500);
  assert_int_equal(lp_parse_duration_ms("7", &ms), 0);
  assert_int_equal(ms, 7000);
  assert_int_not_equal(lp_parse_duration_ms("", &ms), 0);
  assert_int_not_equal(lp_parse_duration_ms("5x", &ms), 0);
  assert_int_not_equal(lp_parse_duration_ms("s", &ms), 0);
  assert_int_not_equal(lp_parse_duration_ms("-5s", &ms), 0);
}

/* The shipped example must load as it is. */
static void test_example_config_loads(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/configs/lpod.conf.example", getenv("LPOD_SOURCE_DIR"));
  lp_config_t c;
  char err[512];
  assert_int_equal(LOAD(&c, empty_env, err, "-config", path, NULL), LP_CFG_OK);
  assert_true(c.orchestrator);
  assert_true(c.transcoder);
  assert_true(c.monitor);
  assert_string_equal(c.http_addr, "127.0.0.1:8935");
  lp_config_free(&c);
  lp_log_set_level(3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_config_from_env),
      cmocka_unit_test(test_file_edge_cases),
      cmocka_unit_test(test_file_errors_name_line),
      cmocka_unit_test(test_flag_forms),
      cmocka_unit_test(test_literal_or_file),
      cmocka_unit_test(test_table_masks_secrets),
      cmocka_unit_test(test_cli_addr_normalisation),
      cmocka_unit_test(test_durations),
      cmocka_unit_test(test_example_config_loads),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
