/* Device table with the fake backend: probing and selection, self-test results, capability
 * advertising, the encoder session cap and its cache, quarantine and re-test, routing and
 * fallback logging, and the table's text and JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <libavutil/log.h>

#include "fake_backend.h"
#include "lpod/core.h"
#include "lpod/hwaccel.h"

extern const hw_backend_t hw_backend_sw;

static const fake_config_t gpu = {
    .devices = 2,
    .dec = HW_CODEC_BIT(HW_CODEC_H264) | HW_CODEC_BIT(HW_CODEC_HEVC),
    .enc = HW_CODEC_BIT(HW_CODEC_H264),
    .limits = {146, 50, 1920, 1920, 2, true},
};

/* What the CPU can do here, from the software backend itself. */
static bool cpu_encodes(hw_codec_t c) {
  hw_enc_params_t p = {.codec = hw_codec_avid(c),
                       .width = 160,
                       .height = 96,
                       .time_base = {1, 30},
                       .framerate = {30, 1},
                       .bitrate = 300000,
                       .threads = 1};
  AVCodecContext *ctx = NULL;
  bool ok = hw_backend_sw.encoder_open(NULL, &p, NULL, &ctx) == 0;
  hw_encoder_free(&ctx);
  return ok;
}

static bool has_cap(const hw_table_t *t, int cap) {
  int caps[32];
  size_t n = hw_table_capabilities(t, caps, 32);
  for (size_t i = 0; i < n; i++)
    if (caps[i] == cap) return true;
  return false;
}

static void table_with_fake(hw_table_t *t, const fake_config_t *c, const char *select, bool test) {
  char err[512] = "";
  if (fake_table(t, c, select, test, err, sizeof(err))) fail_msg("fake_table: %s", err);
}

static void test_cpu_always_present(void **state) {
  (void)state;
  hw_probe_opts_t o = {"", "", "", true, NULL};
  hw_table_t t;
  char err[512];
  assert_int_equal(hw_table_probe(&o, &t, err, sizeof(err)), 0);
  assert_int_equal(t.n, 1);
  const hw_device_t *cpu = &t.dev[HW_TABLE_CPU];
  assert_string_equal(cpu->name, "cpu");
  assert_true(cpu->tested);
  /* Every CPU decoder the tests can make a clip for decodes; encoders match what opens. */
  assert_true(cpu->dec & HW_CODEC_BIT(HW_CODEC_H264));
  assert_true(cpu->dec & HW_CODEC_BIT(HW_CODEC_AV1)); /* libdav1d */
  for (int c = 0; c < HW_CODECS; c++)
    assert_int_equal(!!(cpu->enc & HW_CODEC_BIT(c)), cpu_encodes((hw_codec_t)c));
  assert_int_equal(cpu->enc_cpu, 0);
  assert_true(cpu->h264_fmts & HW_H264_420_10);
  assert_true(has_cap(&t, HW_CAP_H264));
  assert_true(has_cap(&t, HW_CAP_AV1_DECODE));
  assert_int_equal(has_cap(&t, HW_CAP_AV1_ENCODE), cpu_encodes(HW_CODEC_AV1));
  assert_int_equal(has_cap(&t, HW_CAP_HEVC_ENCODE), cpu_encodes(HW_CODEC_HEVC));
}

static void test_fake_gpu_tested(void **state) {
  (void)state;
  hw_table_t t;
  table_with_fake(&t, &gpu, "all", true);
  assert_int_equal(t.n, 3);
  const hw_device_t *d = &t.dev[1];
  assert_string_equal(d->name, "fake:0");
  assert_string_equal(d->model, "Fake GPU 0");
  assert_string_equal(d->driver, "1.0-fake");
  assert_string_equal(d->id, "FAKE-0000");
  assert_true(d->tested);
  assert_int_equal(d->dec, gpu.dec);
  assert_int_equal(d->enc, HW_CODEC_BIT(HW_CODEC_H264));
  assert_int_equal(d->limits[HW_CODEC_H264].min_w, 146);
  /* Codecs its encoder lacks are encoded on the CPU from its frames. */
  if (cpu_encodes(HW_CODEC_HEVC)) assert_true(d->enc_cpu & HW_CODEC_BIT(HW_CODEC_HEVC));
  assert_false(d->enc_cpu & HW_CODEC_BIT(HW_CODEC_H264));
  assert_non_null(strstr(d->note, "encode on device (CPU instead) hevc"));
  assert_int_equal(fake_open_encoders(), 0);
}

/* A GPU with decoders but no encoder (H100, A100): it decodes and scales, the CPU encodes, and
 * the node still advertises H.264 because the CPU route passed. */
static void test_gpu_without_encoder(void **state) {
  (void)state;
  fake_config_t c = gpu;
  c.devices = 1;
  c.enc = 0;
  hw_table_t t;
  table_with_fake(&t, &c, "0", true);
  assert_int_equal(t.n, 2);
  assert_int_equal(t.dev[1].enc, 0);
  assert_true(t.dev[1].enc_cpu & HW_CODEC_BIT(HW_CODEC_H264));
  assert_int_equal(t.dev[1].max_enc_sessions, 0);
  assert_true(has_cap(&t, HW_CAP_H264));
  hw_route_why_t why;
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 640, 360, 0, 0, &why), HW_ROUTE_CPU);
  assert_int_equal(why, HW_WHY_CODEC);
  char *text = hw_table_text(&t);
  assert_non_null(strstr(text, "encode    none on the device; on the CPU from its frames: h264"));
  free(text);
}

/* A decoder limited to 8-bit 4:2:0 (NVDEC with H.264): the other H.264 formats are not the
 * device's, and the node advertises capabilities 21 to 25 only because the CPU decodes them. */
static void test_h264_formats(void **state) {
  (void)state;
  fake_config_t c = gpu;
  c.devices = 1;
  c.only_420_8 = true;
  hw_table_t t;
  table_with_fake(&t, &c, "0", true);
  assert_true(t.dev[1].dec & HW_CODEC_BIT(HW_CODEC_H264));
  assert_int_equal(t.dev[1].h264_fmts, 0);
  assert_true(has_cap(&t, HW_CAP_H264_DECODE_422_8));
  hw_route_why_t why;
  assert_int_equal(hw_route_decode(&t, 1, HW_CODEC_H264, HW_H264_420_10, 0, &why), HW_ROUTE_CPU);
  assert_int_equal(why, HW_WHY_FORMAT);
  t.dev[HW_TABLE_CPU].h264_fmts = 0;
  assert_false(has_cap(&t, HW_CAP_H264_DECODE_422_8));
  assert_false(has_cap(&t, HW_CAP_H264_DECODE_420_10));
}

static void test_untested_opens_codecs(void **state) {
  (void)state;
  hw_table_t t;
  table_with_fake(&t, &gpu, "1", false);
  assert_int_equal(t.n, 2);
  assert_int_equal(t.dev[1].index, 1);
  assert_false(t.dev[1].tested);
  assert_int_equal(t.dev[1].dec, gpu.dec);
  assert_int_equal(t.dev[1].enc, gpu.enc);
}

static void test_selection_errors(void **state) {
  (void)state;
  hw_table_t t;
  char err[512] = "";
  fake_configure(&gpu);
  hw_table_init(&t);
  assert_int_equal(hw_table_add(&t, &fake_backend, "5", false, NULL, err, sizeof(err)), LP_ENOENT);
  assert_non_null(strstr(err, "device '5' not found (2 present)"));
  err[0] = 0;
  assert_int_equal(hw_table_add(&t, &fake_backend, "FAKE-0001", false, NULL, err, sizeof(err)), 0);
  assert_int_equal(t.dev[1].index, 1);
  fake_config_t c = gpu;
  c.missing = "the fake driver is not installed";
  fake_configure(&c);
  err[0] = 0;
  assert_int_equal(hw_table_add(&t, &fake_backend, "all", false, NULL, err, sizeof(err)),
                   LP_EUNSUPP);
  assert_string_equal(err, "-fake all: the fake driver is not installed");
  c = gpu;
  c.devices = 0;
  fake_configure(&c);
  err[0] = 0;
  assert_int_equal(hw_table_add(&t, &fake_backend, "all", false, NULL, err, sizeof(err)),
                   LP_ENOENT);
  assert_string_equal(err, "-fake all: no fake device found");
  /* A device that passes nothing stops the start. */
  c = gpu;
  c.dec = c.enc = 0;
  fake_configure(&c);
  err[0] = 0;
  assert_int_equal(hw_table_add(&t, &fake_backend, "0", false, NULL, err, sizeof(err)), LP_EDEVICE);
  assert_non_null(strstr(err, "fake:0 (Fake GPU 0) failed its self-test"));
  assert_int_equal(t.n, 2);
}

/* "all" takes every device that works; a device named explicitly must work. */
static void test_all_skips_dead_devices(void **state) {
  (void)state;
  fake_config_t c = gpu;
  c.dead_device = 2;
  fake_configure(&c);
  hw_table_t t;
  hw_table_init(&t);
  char err[512] = "";
  assert_int_equal(hw_table_add(&t, &fake_backend, "all", false, NULL, err, sizeof(err)), 0);
  assert_int_equal(t.n, 2);
  assert_string_equal(t.dev[1].name, "fake:0");
  assert_string_equal(err, "");
  assert_true(hw_table_add(&t, &fake_backend, "1", false, NULL, err, sizeof(err)) < 0);
  assert_non_null(strstr(err, "fake:1 (Fake GPU 1) failed its self-test: device does not open"));
  c.devices = 1;
  c.dead_device = 1;
  fake_configure(&c);
  hw_table_init(&t);
  err[0] = 0;
  assert_true(hw_table_add(&t, &fake_backend, "all", false, NULL, err, sizeof(err)) < 0);
  assert_non_null(strstr(err, "-fake all: no device passed its self-test (last: fake:0"));
  assert_int_equal(t.n, 1);
}

static void test_session_cap_and_cache(void **state) {
  (void)state;
  char dir[] = "/tmp/lpod-hw-XXXXXX";
  assert_non_null(mkdtemp(dir));
  fake_config_t c = gpu;
  c.devices = 1;
  c.max_sessions = 3;
  fake_configure(&c);
  hw_table_t t;
  hw_table_init(&t);
  char err[512] = "";
  assert_int_equal(hw_table_add(&t, &fake_backend, "all", false, dir, err, sizeof(err)), 0);
  assert_int_equal(t.dev[1].max_enc_sessions, 3);
  assert_false(t.dev[1].sessions_cached);
  assert_int_equal(fake_open_encoders(), 0);
  /* The second start reads the cache: the (changed) fake is not asked again. */
  c.max_sessions = 5;
  fake_configure(&c);
  hw_table_init(&t);
  assert_int_equal(hw_selftest(&t.dev[0], false), 0);
  assert_int_equal(hw_table_add(&t, &fake_backend, "all", false, dir, err, sizeof(err)), 0);
  assert_int_equal(t.dev[1].max_enc_sessions, 3);
  assert_true(t.dev[1].sessions_cached);
  /* Sessions in use beyond the cap send renditions to the CPU. */
  hw_route_why_t why;
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 640, 360, 2, 0, &why), HW_ROUTE_DEVICE);
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 640, 360, 3, 0, &why), HW_ROUTE_CPU);
  assert_int_equal(why, HW_WHY_SESSIONS);
  /* No cap: every probe encoder opened. */
  char path[256];
  snprintf(path, sizeof(path), "%s/hwaccel-sessions.json", dir);
  unlink(path);
  c.max_sessions = 0;
  fake_configure(&c);
  hw_table_init(&t);
  assert_int_equal(hw_table_add(&t, &fake_backend, "all", false, dir, err, sizeof(err)), 0);
  assert_int_equal(t.dev[1].max_enc_sessions, 0);
  unlink(path);
  rmdir(dir);
}

static void test_capabilities(void **state) {
  (void)state;
  hw_table_t t;
  fake_config_t c = gpu;
  c.devices = 1;
  table_with_fake(&t, &c, "all", false);
  /* Without any CPU codecs, the node advertises exactly what the fake passed. */
  t.dev[0].dec = t.dev[0].enc = t.dev[0].h264_fmts = 0;
  t.dev[1].enc_cpu = t.dev[1].h264_fmts = 0;
  int caps[32];
  size_t n = hw_table_capabilities(&t, caps, 32);
  assert_int_equal(n, 2);
  assert_int_equal(caps[0], HW_CAP_H264);
  assert_int_equal(caps[1], HW_CAP_HEVC_DECODE);
  t.dev[1].enc |= HW_CODEC_BIT(HW_CODEC_AV1);
  t.dev[1].dec |= HW_CODEC_BIT(HW_CODEC_VP9);
  t.dev[1].h264_fmts = HW_H264_422_8;
  n = hw_table_capabilities(&t, caps, 32);
  int want[] = {HW_CAP_H264, HW_CAP_HEVC_DECODE, HW_CAP_VP9_DECODE, HW_CAP_H264_DECODE_422_8,
                HW_CAP_AV1_ENCODE};
  assert_int_equal(n, LP_ARRAY_LEN(want));
  for (size_t i = 0; i < n; i++) assert_int_equal(caps[i], want[i]);
  /* A quarantined device's codecs are not advertised. */
  hw_table_report(&t, 1, HW_ERR_DEVICE, 1000);
  assert_int_equal(hw_table_capabilities(&t, caps, 32), 0);

  uint64_t bits[16] = {0};
  assert_int_equal(hw_caps_to_bits(want, LP_ARRAY_LEN(want), bits, 16), 16);
  assert_int_equal(bits[0], (1u << 0) | (1u << 15) | (1u << 18) | (1u << 22));
  assert_int_equal(bits[15], (uint64_t)1 << (HW_CAP_AV1_ENCODE - 960));
  uint64_t one[1] = {0};
  assert_int_equal(hw_caps_to_bits(want, LP_ARRAY_LEN(want), one, 1), 16);
  assert_int_equal(one[0], bits[0]);
}

static void test_quarantine(void **state) {
  (void)state;
  hw_table_t t;
  table_with_fake(&t, &gpu, "all", false);
  /* Input errors say nothing about the device. */
  assert_int_equal(hw_table_report(&t, 1, HW_ERR_INPUT, 0), HW_DEV_OK);
  /* Three session errors in a row do; a good segment in between resets the count. */
  assert_int_equal(hw_table_report(&t, 1, HW_ERR_SESSION, 0), HW_DEV_OK);
  assert_int_equal(hw_table_report(&t, 1, HW_ERR_SESSION, 0), HW_DEV_OK);
  hw_table_report_ok(&t, 1);
  assert_int_equal(hw_table_report(&t, 1, HW_ERR_SESSION, 0), HW_DEV_OK);
  assert_int_equal(hw_table_report(&t, 1, HW_ERR_SESSION, 0), HW_DEV_OK);
  assert_int_equal(hw_table_report(&t, 1, HW_ERR_SESSION, 100), HW_DEV_QUARANTINED);
  assert_false(hw_table_usable(&t, 1, 100));
  assert_int_equal(t.dev[1].retry_at_ms, 100 + 30000);
  /* Its sessions go to the other fake GPU, and from there to the CPU. */
  assert_int_equal(hw_table_fallback_device(&t, 1, HW_CODEC_H264, 100), 2);
  assert_int_equal(hw_table_report(&t, 2, HW_ERR_DEVICE, 100), HW_DEV_QUARANTINED);
  assert_int_equal(hw_table_fallback_device(&t, 1, HW_CODEC_H264, 100), HW_TABLE_CPU);
  /* The CPU is never quarantined. */
  assert_int_equal(hw_table_report(&t, HW_TABLE_CPU, HW_ERR_DEVICE, 100), HW_DEV_OK);
  assert_true(hw_table_usable(&t, HW_TABLE_CPU, 100));
  hw_route_why_t why;
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 640, 360, 0, 100, &why), HW_ROUTE_CPU);
  assert_int_equal(why, HW_WHY_QUARANTINED);
  assert_int_equal(hw_route_decode(&t, 1, HW_CODEC_H264, 0, 100, &why), HW_ROUTE_CPU);
  assert_int_equal(why, HW_WHY_QUARANTINED);

  /* Too early: no re-test. Still broken: quarantined again, for twice as long. */
  assert_int_equal(hw_table_recheck(&t, 1000), 0);
  fake_config()->broken = true;
  assert_int_equal(hw_table_recheck(&t, 100 + 30000), 0);
  assert_int_equal(t.dev[1].state, HW_DEV_QUARANTINED);
  assert_int_equal(t.dev[1].failures, 2);
  assert_int_equal(t.dev[1].retry_at_ms, 30100 + 60000);
  assert_non_null(strstr(t.dev[1].note, "failed re-test"));
  /* Repaired: back in service with what it could do before. Re-tested the way the node and
   * the transcoder do it off their loop: on a copy, then applied. */
  fake_config()->broken = false;
  assert_false(hw_table_recheck_due(&t, 30100 + 59999));
  assert_true(hw_table_recheck_due(&t, 30100 + 60000));
  hw_table_t *copy = malloc(sizeof *copy);
  assert_non_null(copy);
  *copy = t;
  assert_int_equal(hw_table_recheck(copy, 30100 + 60000), 2);
  assert_int_equal(t.dev[1].state, HW_DEV_QUARANTINED); /* until applied */
  assert_int_equal(hw_table_recheck_apply(&t, copy), (1u << 1) | (1u << 2));
  assert_int_equal(hw_table_recheck_apply(&t, copy), 0); /* nothing left quarantined */
  assert_false(hw_table_recheck_due(&t, 90100));
  free(copy);
  assert_true(hw_table_usable(&t, 1, 90100));
  assert_true(hw_table_usable(&t, 2, 90100));
  assert_int_equal(t.dev[1].enc, gpu.enc);
  hw_table_report_ok(&t, 1);
  assert_int_equal(t.dev[1].failures, 0);
  /* Out of range indexes are harmless. */
  assert_int_equal(hw_table_report(&t, 99, HW_ERR_DEVICE, 0), HW_DEV_OK);
  assert_false(hw_table_usable(&t, -1, 0));
}

static void test_route_encode(void **state) {
  (void)state;
  hw_table_t t;
  table_with_fake(&t, &gpu, "0", false);
  hw_route_why_t why;
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 1280, 720, 0, 0, &why), HW_ROUTE_DEVICE);
  assert_int_equal(why, HW_WHY_NONE);
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 720, 1280, 0, 0, &why), HW_ROUTE_DEVICE);
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 144, 80, 0, 0, &why), HW_ROUTE_CPU);
  assert_int_equal(why, HW_WHY_TOO_SMALL);
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 2560, 1440, 0, 0, &why), HW_ROUTE_CPU);
  assert_int_equal(why, HW_WHY_TOO_LARGE);
  /* 4:2:0 encoders need even sizes, the CPU's too. */
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 641, 360, 0, 0, &why), HW_ROUTE_NONE);
  assert_int_equal(why, HW_WHY_ODD_SIZE);
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_VP8, 640, 360, 0, 0, &why),
                   cpu_encodes(HW_CODEC_VP8) ? HW_ROUTE_CPU : HW_ROUTE_NONE);
  assert_int_equal(why, HW_WHY_CODEC);
  /* Beyond what the CPU takes too: nowhere. */
  assert_int_equal(hw_route_encode(&t, 1, HW_CODEC_H264, 10000, 10000, 0, 0, &why), HW_ROUTE_NONE);
  assert_int_equal(hw_route_encode(&t, HW_TABLE_CPU, HW_CODEC_H264, 640, 360, 0, 0, &why),
                   HW_ROUTE_DEVICE);
  assert_int_equal(hw_route_encode(&t, HW_TABLE_CPU, HW_CODEC_H264, 9000, 360, 0, 0, &why),
                   HW_ROUTE_NONE);
  assert_int_equal(why, HW_WHY_TOO_LARGE);
  assert_int_equal(hw_route_encode(&t, 7, HW_CODEC_H264, 640, 360, 0, 0, &why), HW_ROUTE_NONE);
  assert_int_equal(hw_route_encode(&t, 1, (hw_codec_t)9, 640, 360, 0, 0, &why), HW_ROUTE_NONE);
}

static void test_route_decode(void **state) {
  (void)state;
  hw_table_t t;
  table_with_fake(&t, &gpu, "0", true);
  hw_route_why_t why;
  assert_int_equal(hw_route_decode(&t, 1, HW_CODEC_H264, 0, 0, &why), HW_ROUTE_DEVICE);
  assert_int_equal(hw_route_decode(&t, 1, HW_CODEC_HEVC, 0, 0, &why), HW_ROUTE_DEVICE);
  assert_int_equal(hw_route_decode(&t, 1, HW_CODEC_AV1, 0, 0, &why), HW_ROUTE_CPU);
  assert_int_equal(why, HW_WHY_CODEC);
  /* The fake's H.264 decoder is the CPU's, so it takes 4:2:2 too; take it away. */
  t.dev[1].h264_fmts = 0;
  assert_int_equal(hw_route_decode(&t, 1, HW_CODEC_H264, HW_H264_422_8, 0, &why), HW_ROUTE_CPU);
  assert_int_equal(why, HW_WHY_FORMAT);
  t.dev[0].h264_fmts = 0;
  assert_int_equal(hw_route_decode(&t, 1, HW_CODEC_H264, HW_H264_422_8, 0, &why), HW_ROUTE_NONE);
  assert_int_equal(hw_route_decode(&t, 0, HW_CODEC_H264, 0, 0, &why), HW_ROUTE_DEVICE);
  assert_int_equal(hw_route_decode(&t, 5, HW_CODEC_H264, 0, 0, &why), HW_ROUTE_NONE);
}

static char *read_fd(int fd) {
  static char buf[8192];
  lseek(fd, 0, SEEK_SET);
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  buf[n > 0 ? n : 0] = 0;
  return buf;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

static void test_fallback_logged_once(void **state) {
  (void)state;
  hw_table_t t;
  table_with_fake(&t, &gpu, "0", false);
  char path[] = "/tmp/lpod-hwlog-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  lp_log_set_fd(fd);
  hw_fallback_log_t l = {{0}};
  lp_logctx_t ctx = LP_LOGCTX_INIT;
  ctx.manifest_id = "m1";
  assert_true(hw_fallback_note(&l, &ctx, &t.dev[1], 0, HW_CODEC_VP9, 640, 360, HW_WHY_CODEC));
  assert_false(hw_fallback_note(&l, &ctx, &t.dev[1], 0, HW_CODEC_VP9, 640, 360, HW_WHY_CODEC));
  assert_true(hw_fallback_note(&l, &ctx, &t.dev[1], 1, HW_CODEC_VP9, 640, 360, HW_WHY_CODEC));
  assert_true(hw_fallback_note(&l, &ctx, &t.dev[1], 0, HW_CODEC_VP9, 640, 360, HW_WHY_SESSIONS));
  assert_true(hw_fallback_note(&l, &ctx, &t.dev[1], -1, HW_CODEC_AV1, 0, 0, HW_WHY_CODEC));
  assert_false(hw_fallback_note(&l, &ctx, &t.dev[1], -1, HW_CODEC_AV1, 0, 0, HW_WHY_CODEC));
  assert_false(hw_fallback_note(&l, &ctx, &t.dev[1], 3, HW_CODEC_VP9, 640, 360, HW_WHY_NONE));
  assert_false(hw_fallback_note(&l, &ctx, &t.dev[1], 31, HW_CODEC_VP9, 640, 360, HW_WHY_CODEC));
  lp_log_set_fd(-1);
  const char *log = read_fd(fd);
  close(fd);
  assert_int_equal(count(log, "encodes on the CPU"), 3);
  assert_int_equal(count(log, "fake:0: rendition 0 (vp9 640x360) encodes on the CPU: the device "
                              "has no encoder for this codec"),
                   1);
  assert_int_equal(count(log, "decoding av1 on the CPU"), 1);
  assert_int_equal(count(log, "manifestID=m1"), 4);
}

static void test_text_and_json(void **state) {
  (void)state;
  hw_table_t t;
  fake_config_t c = gpu;
  c.devices = 1;
  table_with_fake(&t, &c, "all", false);
  hw_table_report(&t, 1, HW_ERR_DEVICE, 0);
  char *text = hw_table_text(&t);
  assert_non_null(strstr(text, "cpu "));
  assert_non_null(strstr(text, "fake:0"));
  assert_non_null(strstr(text, "Fake GPU 0, driver 1.0-fake, 1024 MiB, FAKE-0000"));
  assert_non_null(strstr(text, "state     quarantined"));
  assert_non_null(strstr(text, "\ncapabilities 0"));
  free(text);
  char *json = hw_table_json(&t);
  cJSON *root = cJSON_Parse(json);
  free(json);
  assert_non_null(root);
  cJSON *devs = cJSON_GetObjectItem(root, "devices");
  assert_int_equal(cJSON_GetArraySize(devs), 2);
  cJSON *f = cJSON_GetArrayItem(devs, 1);
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(f, "backend")), "fake");
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(f, "state")), "quarantined");
  cJSON *dec = cJSON_GetObjectItem(f, "decode");
  assert_int_equal(cJSON_GetArraySize(dec), 2);
  assert_string_equal(cJSON_GetArrayItem(dec, 1)->valuestring, "hevc");
  cJSON *lim = cJSON_GetObjectItem(cJSON_GetObjectItem(f, "limits"), "h264");
  assert_int_equal(cJSON_GetObjectItem(lim, "max_width")->valueint, 1920);
  assert_true(cJSON_IsArray(cJSON_GetObjectItem(root, "capabilities")));
  cJSON_Delete(root);
}

/* A node whose devices a child process probed reads the table back from its JSON: every field
 * the node uses survives, and a table that does not hold together is refused with a reason. */
static void test_json_round_trip(void **state) {
  (void)state;
  hw_table_t t, back;
  fake_config_t c = gpu;
  c.max_sessions = 3;
  table_with_fake(&t, &c, "all", true);
  t.dev[2].h264_fmts = HW_H264_422_8 | HW_H264_420_10;
  char *json = hw_table_json(&t);
  assert_non_null(json);
  const hw_backend_t *extra[] = {&fake_backend, NULL};
  char err[256];
  assert_int_equal(hw_table_from_json(json, extra, &back, err, sizeof(err)), 0);
  assert_int_equal(back.n, t.n);
  for (int i = 0; i < t.n; i++) {
    const hw_device_t *a = &t.dev[i], *b = &back.dev[i];
    assert_ptr_equal(a->be, b->be);
    assert_int_equal(a->index, b->index);
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->model, b->model);
    assert_string_equal(a->driver, b->driver);
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->note, b->note);
    assert_true(a->mem_total == b->mem_total);
    assert_int_equal(a->dec, b->dec);
    assert_int_equal(a->enc, b->enc);
    assert_int_equal(a->enc_cpu, b->enc_cpu);
    assert_int_equal(a->h264_fmts, b->h264_fmts);
    assert_int_equal(a->max_enc_sessions, b->max_enc_sessions);
    assert_int_equal(a->tested, b->tested);
    assert_int_equal(a->state, b->state);
    for (int k = 0; k < HW_CODECS; k++)
      if ((a->enc | a->enc_cpu) & HW_CODEC_BIT(k))
        assert_memory_equal(&a->limits[k], &b->limits[k], sizeof(hw_limits_t));
  }
  assert_int_equal(back.dev[2].h264_fmts, HW_H264_422_8 | HW_H264_420_10);
  assert_int_equal(back.dev[1].max_enc_sessions, 3);
  /* what the node advertises from it is the same */
  int ca[32], cb[32];
  size_t na = hw_table_capabilities(&t, ca, 32), nb = hw_table_capabilities(&back, cb, 32);
  assert_int_equal(na, nb);
  assert_memory_equal(ca, cb, na * sizeof(int));
  /* without the fake backend registered, its devices cannot be read */
  assert_int_equal(hw_table_from_json(json, NULL, &back, err, sizeof(err)), LP_EINVAL);
  assert_non_null(strstr(err, "backend 'fake' is not built into this lpod"));
  assert_int_equal(back.n, 0);
  free(json);

  static const struct {
    const char *json, *why;
  } bad[] = {
      {"", "not a device table"},
      {"{\"devices\":[]}", "not a device table"},
      {"[1,2]", "not a device table"},
      {"{\"devices\":[{\"name\":\"fake:0\",\"backend\":\"fake\"}]}", "the CPU must come first"},
      {"{\"devices\":[{\"name\":\"cpu\",\"backend\":\"sw\"},{\"name\":\"cpu\",\"backend\":\"sw\"}]"
       "}",
       "the CPU must come first, and only once"},
      {"{\"devices\":[{\"name\":\"cpu\",\"backend\":\"sw\",\"decode\":[\"mpeg2\"]}]}",
       "unknown codec"},
      {"{\"devices\":[{\"name\":\"cpu\",\"backend\":\"sw\",\"encode\":[\"h264\"]}]}",
       "no valid h264 size limits"},
      {"{\"devices\":[{\"name\":\"cpu\",\"backend\":\"sw\",\"encode\":[\"h264\"],\"limits\":{"
       "\"h264\":{\"min_width\":64,\"min_height\":64,\"max_width\":32,\"max_height\":4096}}}]}",
       "no valid h264 size limits"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = 0;
    assert_int_equal(hw_table_from_json(bad[i].json, extra, &back, err, sizeof(err)), LP_EINVAL);
    if (!strstr(err, bad[i].why)) fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].why);
  }
}

/* Sessions open on a device by its backend's name: every backend this build has is found, so a
 * session placed on an NVIDIA, QSV or Netint device does not fail as "unknown backend". */
static void test_backend_registry(void **state) {
  (void)state;
  assert_ptr_equal(hw_backend_find("sw"), &hw_backend_sw);
  assert_ptr_equal(hw_backend_find(NULL), &hw_backend_sw);
#ifdef LPOD_HAVE_NVIDIA
  assert_ptr_equal(hw_backend_find("nvidia"), &hw_backend_nvidia);
#endif
#ifdef LPOD_HAVE_QSV
  assert_ptr_equal(hw_backend_find("qsv"), &hw_backend_qsv);
#endif
#ifdef LPOD_HAVE_NETINT
  assert_ptr_equal(hw_backend_find("netint"), &hw_backend_netint);
#endif
  assert_null(hw_backend_find("fake"));
  size_t n = 0;
  for (const hw_backend_t *const *b = hw_backend_list(); *b; b++, n++)
    assert_ptr_equal(hw_backend_find((*b)->name), *b);
  assert_true(n >= 1);
}

int main(void) {
  lp_log_set_level(1);
  av_log_set_level(AV_LOG_FATAL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cpu_always_present),     cmocka_unit_test(test_fake_gpu_tested),
      cmocka_unit_test(test_gpu_without_encoder),    cmocka_unit_test(test_h264_formats),
      cmocka_unit_test(test_untested_opens_codecs),  cmocka_unit_test(test_selection_errors),
      cmocka_unit_test(test_all_skips_dead_devices), cmocka_unit_test(test_session_cap_and_cache),
      cmocka_unit_test(test_capabilities),           cmocka_unit_test(test_quarantine),
      cmocka_unit_test(test_route_encode),           cmocka_unit_test(test_route_decode),
      cmocka_unit_test(test_fallback_logged_once),   cmocka_unit_test(test_text_and_json),
      cmocka_unit_test(test_json_round_trip),        cmocka_unit_test(test_backend_registry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
