/* The admin API on a real socket, driven by curl as operators and livepeer_cli do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/admin.h"
#include "lpod/config.h"
#include "lpod/core.h"
#include "lpod/metrics.h"

static uv_loop_t loop;
static uv_async_t stop_async;
static admin_t *admin;
static pthread_t loop_thread;
static int port;
static int max_sessions_seen = -1;
static bool auto_seen;
static bool is_ready;

static void status_hook(void *arg, cJSON *st) {
  (void)arg;
  cJSON_AddNumberToObject(st, "lpodSessions", 2);
}
static int set_max_hook(void *arg, int n, bool is_auto) {
  (void)arg;
  max_sessions_seen = n;
  auto_seen = is_auto;
  return 0;
}
static double target_seen;
static int target_rc; /* what the node answers: 0, or LP_EUNSUPP for a count-admission node */
static int set_target_hook(void *arg, double ratio) {
  (void)arg;
  if (target_rc == 0) target_seen = ratio;
  return target_rc;
}
static bool ready_hook(void *arg, char *why, size_t n) {
  (void)arg;
  if (!is_ready) snprintf(why, n, "device self-test failed");
  return is_ready;
}

static void on_stop(uv_async_t *a) {
  admin_free(admin);
  uv_close((uv_handle_t *)a, NULL);
}

static void *run_loop(void *arg) {
  (void)arg;
  uv_run(&loop, UV_RUN_DEFAULT);
  return NULL;
}

static int setup(void **state) {
  (void)state;
  uv_loop_init(&loop);
  uv_async_init(&loop, &stop_async, on_stop);
  lp_config_t cfg;
  char err[256];
  char *argv[] = {"-orchestrator", "-monitor", "-cliAddr", "127.0.0.1:0", NULL};
  char *env[] = {NULL};
  assert_int_equal(lp_config_load(&cfg, 4, argv, env, err, sizeof err), LP_CFG_OK);
  admin_hooks_t hooks = {.status = status_hook,
                         .set_max_sessions = set_max_hook,
                         .set_target_ratio = set_target_hook,
                         .ready = ready_hook};
  assert_int_equal(admin_start(&loop, &cfg, "orch", &hooks, &admin, err, sizeof err), 0);
  lp_config_free(&cfg);
  port = admin_port(admin);
  assert_true(port > 0);
  lp_metric_set(lp_metric_gauge("livepeer_max_sessions_total", "Max sessions", NULL), NULL, 10);
  pthread_create(&loop_thread, NULL, run_loop, NULL);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  uv_async_send(&stop_async);
  pthread_join(loop_thread, NULL);
  uv_loop_close(&loop);
  lp_metrics_reset();
  return 0;
}

/* Runs curl; returns the HTTP status and puts the body in out. */
static int curl(const char *args, char *out, size_t n) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "curl -s -w '\\n%%{http_code}' %s", args);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t len = fread(out, 1, n - 1, p);
  out[len] = '\0';
  pclose(p);
  char *nl = strrchr(out, '\n');
  assert_non_null(nl);
  int code = atoi(nl + 1);
  *nl = '\0';
  return code;
}

static void test_health_and_ready(void **state) {
  (void)state;
  char body[4096], args[256];
  snprintf(args, sizeof args, "http://127.0.0.1:%d/healthz", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  is_ready = false;
  snprintf(args, sizeof args, "http://127.0.0.1:%d/readyz", port);
  assert_int_equal(curl(args, body, sizeof body), 503);
  assert_non_null(strstr(body, "device self-test failed"));
  is_ready = true;
  assert_int_equal(curl(args, body, sizeof body), 200);
  snprintf(args, sizeof args, "http://127.0.0.1:%d/nope", port);
  assert_int_equal(curl(args, body, sizeof body), 404);
}

static void test_status_json(void **state) {
  (void)state;
  char body[8192], args[256];
  snprintf(args, sizeof args, "http://127.0.0.1:%d/status", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  cJSON *o = cJSON_Parse(body);
  assert_non_null(o);
  assert_true(cJSON_IsString(cJSON_GetObjectItem(o, "Version")));
  assert_true(cJSON_IsArray(cJSON_GetObjectItem(o, "RegisteredTranscoders")));
  assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "RegisteredTranscodersNumber")));
  assert_int_equal(cJSON_GetObjectItem(o, "lpodSessions")->valueint, 2);
  cJSON_Delete(o);
}

static void test_log_level_forms(void **state) {
  (void)state;
  char body[4096], args[256];
  /* multipart, as in go-livepeer's docs: curl -F loglevel=6 */
  snprintf(args, sizeof args, "-F loglevel=6 http://127.0.0.1:%d/setLogLevel", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  assert_int_equal(lp_log_get_level(), 6);
  snprintf(args, sizeof args, "http://127.0.0.1:%d/getLogLevel", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  assert_string_equal(body, "6");
  /* urlencoded */
  snprintf(args, sizeof args, "-d loglevel=4 http://127.0.0.1:%d/setLogLevel", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  assert_int_equal(lp_log_get_level(), 4);
  /* query string */
  snprintf(args, sizeof args, "-X POST 'http://127.0.0.1:%d/setLogLevel?loglevel=3'", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  assert_int_equal(lp_log_get_level(), 3);
  snprintf(args, sizeof args, "-X POST http://127.0.0.1:%d/setLogLevel", port);
  assert_int_equal(curl(args, body, sizeof body), 400);
  assert_string_equal(body, "missing form param: loglevel\n");
  snprintf(args, sizeof args, "-d loglevel=loud http://127.0.0.1:%d/setLogLevel", port);
  assert_int_equal(curl(args, body, sizeof body), 400);
  assert_int_equal(lp_log_get_level(), 3);
}

static void test_set_max_sessions(void **state) {
  (void)state;
  char body[4096], args[256];
  snprintf(args, sizeof args, "-d maxSessions=7 http://127.0.0.1:%d/setMaxSessions", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  assert_string_equal(body, "Max sessions set to 7");
  assert_int_equal(max_sessions_seen, 7);
  snprintf(args, sizeof args, "-d maxSessions=auto http://127.0.0.1:%d/setMaxSessions", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  assert_true(auto_seen);
  snprintf(args, sizeof args, "-d maxSessions=-3 http://127.0.0.1:%d/setMaxSessions", port);
  assert_int_equal(curl(args, body, sizeof body), 400);
  snprintf(args, sizeof args, "-X POST http://127.0.0.1:%d/setMaxSessions", port);
  assert_int_equal(curl(args, body, sizeof body), 400);
  assert_string_equal(body, "missing form param: maxSessions\n");
}

static void test_set_target_ratio(void **state) {
  (void)state;
  char body[4096], args[256];
  snprintf(args, sizeof args,
           "-d targetRealtimeRatio=0.65 http://127.0.0.1:%d/setTargetRealtimeRatio", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  assert_string_equal(body, "Target real-time ratio set to 0.65");
  assert_true(target_seen == 0.65);
  snprintf(args, sizeof args,
           "-X POST 'http://127.0.0.1:%d/setTargetRealtimeRatio?targetRealtimeRatio=1'", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  assert_true(target_seen == 1.0);
  /* out of (0, 1], not a number, empty: refused, and the node is not asked */
  const char *bad[] = {"0", "1.01", "-0.5", "abc", "0.5x", "nan", "inf", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(args, sizeof args,
             "-d targetRealtimeRatio=%s http://127.0.0.1:%d/setTargetRealtimeRatio", bad[i], port);
    assert_int_equal(curl(args, body, sizeof body), 400);
    assert_string_equal(body, "targetRealtimeRatio must be a number in (0, 1]\n");
  }
  assert_true(target_seen == 1.0);
  snprintf(args, sizeof args, "-X POST http://127.0.0.1:%d/setTargetRealtimeRatio", port);
  assert_int_equal(curl(args, body, sizeof body), 400);
  assert_string_equal(body, "missing form param: targetRealtimeRatio\n");
  /* a node that admits by count has no ratio to set */
  target_rc = LP_EUNSUPP;
  snprintf(args, sizeof args,
           "-d targetRealtimeRatio=0.5 http://127.0.0.1:%d/setTargetRealtimeRatio", port);
  assert_int_equal(curl(args, body, sizeof body), 400);
  assert_non_null(strstr(body, "admits streams by count"));
  target_rc = 0;
}

static void test_metrics(void **state) {
  (void)state;
  char body[16384], args[256];
  snprintf(args, sizeof args, "http://127.0.0.1:%d/metrics", port);
  assert_int_equal(curl(args, body, sizeof body), 200);
  assert_non_null(strstr(body, "# TYPE livepeer_max_sessions_total gauge"));
  assert_non_null(strstr(body, "livepeer_max_sessions_total{node_id=\""));
  assert_non_null(strstr(body, "node_type=\"orch\"} 10\n"));
  assert_non_null(strstr(body, "livepeer_versions{"));
}

static void test_form_parser(void **state) {
  (void)state;
  char *v = admin_form_value("a=1&loglevel=5%20x", NULL, NULL, 0, "loglevel");
  assert_string_equal(v, "5 x");
  free(v);
  assert_null(admin_form_value("a=1", "application/x-www-form-urlencoded", (const uint8_t *)"b=2",
                               3, "loglevel"));
  const char *mp = "--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nno\r\n"
                   "--XyZ\r\nContent-Disposition: form-data; name=\"loglevel\"\r\n\r\n6\r\n"
                   "--XyZ--\r\n";
  v = admin_form_value("", "multipart/form-data; boundary=XyZ", (const uint8_t *)mp, strlen(mp),
                       "loglevel");
  assert_string_equal(v, "6");
  free(v);
  /* Truncated or malformed bodies give no value, never a crash. */
  for (size_t cut = 0; cut < strlen(mp); cut++) {
    v = admin_form_value("", "multipart/form-data; boundary=XyZ", (const uint8_t *)mp, cut,
                         "loglevel");
    free(v);
  }
  assert_null(admin_form_value("", "multipart/form-data", (const uint8_t *)mp, strlen(mp), "x"));
  v = admin_form_value("k=%zz%4", NULL, NULL, 0, "k");
  assert_string_equal(v, "%zz%4");
  free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_form_parser),      cmocka_unit_test(test_health_and_ready),
      cmocka_unit_test(test_status_json),      cmocka_unit_test(test_log_level_forms),
      cmocka_unit_test(test_set_max_sessions), cmocka_unit_test(test_set_target_ratio),
      cmocka_unit_test(test_metrics),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
