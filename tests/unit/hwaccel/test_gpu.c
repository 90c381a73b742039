/* On a machine with an NVIDIA GPU or an Intel render node: the real device passes its self-test
 * and is described truthfully (a GPU without NVENC advertises CPU encoding, not NVENC). Without
 * one, it says so in one line and exits 77, which ctest reports as skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/log.h>

#include "lpod/core.h"
#include "lpod/hwaccel.h"

#define SKIP 77

static int failures;

static void check(bool ok, const char *what, const hw_device_t *d) {
  if (ok) return;
  failures++;
  fprintf(stderr, "FAIL %s: %s (%s)\n", d->name, what, d->note);
}

static char skipped[1024];

static int run(const hw_backend_t *be, const char *select) {
  char why[400], err[1024] = "";
  size_t n = strlen(skipped);
  if (be->check(why, sizeof(why)) < 0) {
    snprintf(skipped + n, sizeof(skipped) - n, "%s%s: %s", n ? "; " : "", be->name, why);
    return SKIP;
  }
  hw_device_info_t info[HW_MAX_DEVICES];
  if (be->probe(info, HW_MAX_DEVICES) <= 0) {
    snprintf(skipped + n, sizeof(skipped) - n, "%s%s: no device present", n ? "; " : "", be->name);
    return SKIP;
  }
  hw_table_t t;
  hw_table_init(&t);
  hw_selftest(&t.dev[0], true);
  int ret = hw_table_add(&t, be, select, true, NULL, err, sizeof(err));
  char *text = hw_table_text(&t);
  fputs(text ? text : "", stdout);
  free(text);
  if (ret < 0) {
    fprintf(stderr, "FAIL %s: %s\n", be->name, err);
    return 1;
  }
  for (int i = 1; i < t.n; i++) {
    const hw_device_t *d = &t.dev[i];
    check(d->dec & HW_CODEC_BIT(HW_CODEC_H264), "decodes H.264 on the device", d);
    check((d->enc | d->enc_cpu) & HW_CODEC_BIT(HW_CODEC_H264), "H.264 reaches an encoder", d);
    check(!(d->enc & d->enc_cpu), "a codec is either on the device or on the CPU", d);
    if (be == &hw_backend_nvidia)
      check(d->driver[0] >= '0' && d->driver[0] <= '9', "the driver's version is known", d);
    /* What the device encodes, it encodes within its limits at the test size. */
    for (int c = 0; c < HW_CODECS; c++)
      if (d->enc & HW_CODEC_BIT(c)) check(d->limits[c].max_w >= 1920, "limits known", d);
  }
  return failures ? 1 : 0;
}

int main(void) {
  lp_log_set_level(1);
  av_log_set_level(AV_LOG_FATAL);
  int nv = run(&hw_backend_nvidia, "all");
  int qsv = run(&hw_backend_qsv, "all");
  if (nv == SKIP && qsv == SKIP) {
    /* GPU runners set LPOD_REQUIRE_GPU: there, a missing device is a failure. */
    const char *req = getenv("LPOD_REQUIRE_GPU");
    bool required = req && *req && strcmp(req, "0") != 0;
    printf("%s: no GPU on this machine (%s)\n", required ? "FAIL" : "SKIP", skipped);
    return required ? 1 : SKIP;
  }
  return (nv == 1 || qsv == 1) ? 1 : 0;
}
