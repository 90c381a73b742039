#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/metrics.h"

static void test_counter_gauge_render(void **state) {
  (void)state;
  lp_metrics_reset();
  lp_metric_t *c = lp_metric_counter("livepeer_segment_transcoded_total", "Segments", "profiles");
  assert_ptr_equal(c, lp_metric_counter("livepeer_segment_transcoded_total", "x", "profiles"));
  assert_null(lp_metric_gauge("livepeer_segment_transcoded_total", "x", NULL)); /* type clash */
  lp_metric_add(c, "P240p30fps16x9", 1);
  lp_metric_add(c, "P240p30fps16x9", 2);
  lp_metric_add(c, "with\"quote", 1);
  lp_metric_t *g = lp_metric_gauge("livepeer_current_sessions_total", "Sessions", NULL);
  lp_metric_set(g, NULL, 4);
  lp_metric_set(g, NULL, 3);
  lp_metric_t *nan = lp_metric_gauge("lpod_device_busy", "Busy", "device");
  lp_metric_set(nan, "cpu", NAN);
  assert_true(lp_metric_value(c, "P240p30fps16x9") == 3.0);
  assert_true(lp_metric_value(g, NULL) == 3.0);
  char *t = lp_metrics_render("node_id=\"h\",node_type=\"orch\"");
  assert_non_null(strstr(t, "# TYPE livepeer_segment_transcoded_total counter\n"));
  assert_non_null(strstr(t, "livepeer_segment_transcoded_total{node_id=\"h\",node_type=\"orch\","
                            "profiles=\"P240p30fps16x9\"} 3\n"));
  assert_non_null(strstr(t, "profiles=\"with\\\"quote\"} 1\n"));
  assert_non_null(
      strstr(t, "livepeer_current_sessions_total{node_id=\"h\",node_type=\"orch\"} 3\n"));
  assert_non_null(
      strstr(t, "lpod_device_busy{node_id=\"h\",node_type=\"orch\",device=\"cpu\"} NaN\n"));
  /* Registration order is kept. */
  assert_true(strstr(t, "livepeer_segment_transcoded_total") <
              strstr(t, "livepeer_current_sessions_total"));
  free(t);
}

static void test_histogram(void **state) {
  (void)state;
  lp_metrics_reset();
  static const double b[] = {0.25, 0.5, 1};
  lp_metric_t *h = lp_metric_histogram("livepeer_transcode_time_seconds", "t", NULL, b, 3);
  lp_metric_observe(h, NULL, 0.1);
  lp_metric_observe(h, NULL, 0.5);
  lp_metric_observe(h, NULL, 0.7);
  lp_metric_observe(h, NULL, 9);
  char *t = lp_metrics_render(NULL);
  assert_non_null(strstr(t, "livepeer_transcode_time_seconds_bucket{le=\"0.25\"} 1\n"));
  assert_non_null(strstr(t, "livepeer_transcode_time_seconds_bucket{le=\"0.5\"} 2\n"));
  assert_non_null(strstr(t, "livepeer_transcode_time_seconds_bucket{le=\"1\"} 3\n"));
  assert_non_null(strstr(t, "livepeer_transcode_time_seconds_bucket{le=\"+Inf\"} 4\n"));
  assert_non_null(strstr(t, "livepeer_transcode_time_seconds_sum 10.3\n"));
  assert_non_null(strstr(t, "livepeer_transcode_time_seconds_count 4\n"));
  free(t);
}

static void *hammer(void *arg) {
  lp_metric_t *c = arg;
  for (int i = 0; i < 10000; i++) lp_metric_add(c, "x", 1);
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  lp_metrics_reset();
  lp_metric_t *c = lp_metric_counter("livepeer_x_total", "x", "l");
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, hammer, c);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  assert_true(lp_metric_value(c, "x") == 40000.0);
  lp_metrics_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counter_gauge_render),
      cmocka_unit_test(test_histogram),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
