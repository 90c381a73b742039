/* Calibration benchmark: every H.264 stage of the real CPU device gives a finite positive rate
 * at each preset tier, a fake GPU's device and CPU encoder routes do too, codecs a device lacks
 * and nonsense requests are refused, and tiers map to each backend's preset names. Sizes are
 * tiny: rates are not compared here (that is for benchmarks). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libavutil/log.h>

#include "fake_backend.h"
#include "lpod/core.h"
#include "lpod/hwaccel.h"
#include "hw_int.h"

static hw_table_t table;

static int probe_cpu(void **state) {
  (void)state;
  hw_probe_opts_t o = {"", "", "", false, NULL};
  char err[512] = "";
  int ret = hw_table_probe(&o, &table, err, sizeof(err));
  if (ret != 0) fprintf(stderr, "hw_table_probe: %s\n", err);
  return ret;
}

static hw_bench_req_t small(hw_bench_stage_t stage, hw_codec_t codec, const char *preset) {
  return (hw_bench_req_t){stage, codec, preset, 320, 180, 160, 90, 8, false, 0};
}

/* Runs req on d and checks the rate. */
static void bench_ok(const hw_device_t *d, hw_bench_req_t req) {
  double fps = -1;
  char why[256] = "";
  int ret = hw_bench_stage(d, &req, &fps, NULL, why, sizeof(why));
  if (ret != 0)
    fail_msg("%s stage %d codec %s: %s (%s)", d->name, (int)req.stage, hw_codec_name(req.codec),
             lp_strerror(ret), why);
  assert_true(fps > 0 && isfinite(fps));
}

static void bench_fails(const hw_device_t *d, hw_bench_req_t req, int want) {
  double fps = -1;
  char why[256] = "";
  assert_int_equal(hw_bench_stage(d, &req, &fps, NULL, why, sizeof(why)), want);
  assert_true(why[0] != 0);
  assert_true(fps == 0);
}

static void test_cpu_h264_stages(void **state) {
  (void)state;
  const hw_device_t *cpu = &table.dev[HW_TABLE_CPU];
  bench_ok(cpu, small(HW_BENCH_DECODE, HW_CODEC_H264, NULL));
  bench_ok(cpu, small(HW_BENCH_SCALE, HW_CODEC_H264, NULL));
  /* The scaler ignores the codec. */
  bench_ok(cpu, small(HW_BENCH_SCALE, (hw_codec_t)99, NULL));
}

/* Every CPU stage also runs on the CPU-time clock (the capacity model's calibration), and only
 * on it when asked: with a clock that moves 1,000 s between readings a stage timed by it runs
 * at well under one frame per second, the same stage on the wall clock at many. */
static uint64_t slow_clock(void) {
  static uint64_t t;
  return t += 1000000000000ull;
}

static double stage_fps(const hw_device_t *d, hw_bench_req_t req) {
  double fps = -1;
  char why[256] = "";
  int ret = hw_bench_stage(d, &req, &fps, NULL, why, sizeof(why));
  if (ret != 0) fail_msg("stage %d: %s (%s)", (int)req.stage, lp_strerror(ret), why);
  return fps;
}

static void test_cpu_stages_by_cpu_time(void **state) {
  (void)state;
  const hw_device_t *cpu = &table.dev[HW_TABLE_CPU];
  static const hw_bench_stage_t stages[] = {HW_BENCH_DECODE, HW_BENCH_SCALE, HW_BENCH_ENCODE};
  for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
    hw_bench_req_t r = small(stages[i], HW_CODEC_H264, "veryfast");
    r.cpu_time = true;
    bench_ok(cpu, r); /* the process's own CPU time advances over a short run */
    hw_bench_set_cpu_clock(slow_clock);
    double by_cpu = stage_fps(cpu, r);
    r.cpu_time = false;
    double by_wall = stage_fps(cpu, r);
    hw_bench_set_cpu_clock(NULL);
    if (!(by_cpu > 0 && by_cpu < 1) || !(by_wall > 1))
      fail_msg("stage %d: %.3g fps by the CPU clock, %.3g by the wall clock", (int)stages[i],
               by_cpu, by_wall);
  }
}

/* Decoding a source of more bits per pixel costs more CPU time per frame, and the bench says
 * what rate its source came out at: calibration splits decoding's cost into a part per pixel
 * and a part per bit with these two figures. */
static void test_cpu_decode_by_rate(void **state) {
  (void)state;
  const hw_device_t *cpu = &table.dev[HW_TABLE_CPU];
  double fps[2], bpp[2];
  for (int i = 0; i < 2; i++) {
    hw_bench_req_t r = {HW_BENCH_DECODE, HW_CODEC_H264, NULL, 640, 360, 0, 0, 120, true, 0};
    r.bpp = i ? 1.0 : 0; /* 0: the default, 0.1 */
    bpp[i] = -1;
    char why[256] = "";
    int ret = hw_bench_stage(cpu, &r, &fps[i], &bpp[i], why, sizeof why);
    if (ret != 0) fail_msg("decode at %g bits per pixel: %s (%s)", r.bpp, lp_strerror(ret), why);
  }
  if (!(bpp[0] > 0.05 && bpp[0] < 0.2) || !(bpp[1] > 0.5 && bpp[1] < 2))
    fail_msg("sources made at %.3f and %.3f bits per pixel (asked 0.1 and 1.0)", bpp[0], bpp[1]);
  if (!(fps[1] < fps[0]))
    fail_msg("%.1f fps at %.2f bits per pixel, %.1f at %.2f", fps[0], bpp[0], fps[1], bpp[1]);
  /* other stages leave the rate alone */
  double keep = 7, f = 0;
  hw_bench_req_t sc = small(HW_BENCH_SCALE, HW_CODEC_H264, NULL);
  assert_int_equal(hw_bench_stage(cpu, &sc, &f, &keep, NULL, 0), 0);
  assert_true(keep == 7);
}

/* Up to 0.2 bit per pixel a clip's rate is asked of the encoder's rate control; above, an H.264
 * or HEVC clip gets it from more grain at constant quality (its parameters then carry no bit
 * rate), rising with the rate asked. Other codecs are always asked for the rate. */
static void test_clip_rate_from_grain(void **state) {
  (void)state;
  hw_clip_spec_t spec = {HW_CODEC_H264, AV_PIX_FMT_YUV420P, 320, 180, 10, 0, true, 0};
  assert_int_equal(hw_clip_grain(&spec), HW_REALISTIC_GRAIN);
  spec.bpp = HW_CLIP_RATE_MAX;
  assert_int_equal(hw_clip_grain(&spec), HW_REALISTIC_GRAIN);
  spec.bpp = 0.9;
  assert_int_equal(hw_clip_grain(&spec), HW_REALISTIC_GRAIN + 2);
  spec.bpp = 8;
  assert_int_equal(hw_clip_grain(&spec), 28);
  spec.codec = HW_CODEC_VP9;
  assert_int_equal(hw_clip_grain(&spec), HW_REALISTIC_GRAIN);
  spec.realistic = false;
  assert_int_equal(hw_clip_grain(&spec), 0);

  spec = (hw_clip_spec_t){HW_CODEC_H264, AV_PIX_FMT_YUV420P, 320, 180, 10, 0, true, 0.1};
  hw_clip_t clip;
  assert_int_equal(hw_clip_make(&spec, &clip), 0);
  assert_true(clip.par->bit_rate > 0);
  hw_clip_free(&clip);
  double made[2];
  for (int i = 0; i < 2; i++) {
    spec.bpp = i ? 1.5 : 0.5;
    assert_int_equal(hw_clip_make(&spec, &clip), 0);
    assert_int_equal(clip.par->bit_rate, 0);
    made[i] = hw_clip_bpp(&clip);
    hw_clip_free(&clip);
  }
  if (!(made[0] > 0.1 && made[1] > made[0]))
    fail_msg("made %.3f and %.3f bits per pixel when asked for 0.5 and 1.5", made[0], made[1]);
}

/* The segment calibration runs through the media engine is an MPEG-TS that ffprobe reads as
 * the clip asked for: every frame, one keyframe per 60, 30 frames/s, at about the rate asked. */
static void test_clip_segment(void **state) {
  (void)state;
  uint8_t *seg = NULL;
  size_t len = 0;
  double made = 0;
  assert_int_equal(hw_clip_segment(HW_CODEC_H264, 320, 180, 90, 0.1, &seg, &len, &made), 0);
  assert_non_null(seg);
  assert_true(len > 188 && len % 188 == 0);
  assert_int_equal(seg[0], 0x47); /* MPEG-TS sync byte */
  assert_true(made > 0.05 && made < 0.4);
  char path[] = "/tmp/lpod-clip-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, seg, len), (ssize_t)len);
  close(fd);
  free(seg);
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "ffprobe -v error -select_streams v -show_entries stream=codec_name,width,height,"
           "r_frame_rate -show_entries packet=flags -of csv=p=0 %s",
           path);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char line[256], codec[32] = "";
  int w = 0, h = 0, packets = 0, keys = 0;
  while (fgets(line, sizeof line, p)) {
    if (line[0] == '\n') continue;
    if (line[0] == 'K' || line[0] == '_') {
      packets++;
      keys += line[0] == 'K';
    } else if (sscanf(line, "%31[^,],%d,%d", codec, &w, &h) != 3) {
      fail_msg("ffprobe said: %s", line);
    } else {
      assert_non_null(strstr(line, ",30/1"));
    }
  }
  assert_int_equal(pclose(p), 0);
  unlink(path);
  assert_string_equal(codec, "h264");
  assert_int_equal(w, 320);
  assert_int_equal(h, 180);
  assert_int_equal(packets, 90);
  assert_int_equal(keys, 2);

  /* nonsense is refused, and nothing is handed back */
  assert_int_equal(hw_clip_segment(HW_CODEC_H264, 0, 180, 30, 0.1, &seg, &len, NULL), LP_EINVAL);
  assert_null(seg);
  assert_int_equal(len, 0);
}

static void test_cpu_h264_encode_tiers(void **state) {
  (void)state;
  const hw_device_t *cpu = &table.dev[HW_TABLE_CPU];
  static const char *const names[3] = {"veryfast", "medium", "slow"};
  for (int tier = 0; tier < 3; tier++) {
    const char *preset = hw_bench_preset_name(cpu, HW_CODEC_H264, tier);
    assert_string_equal(preset, names[tier]);
    bench_ok(cpu, small(HW_BENCH_ENCODE, HW_CODEC_H264, preset));
  }
}

/* A fake GPU: decode and scale on the device, H.264 encoded on it, then the same codec on its
 * CPU route once its encoder is gone. */
static void test_fake_gpu_routes(void **state) {
  (void)state;
  fake_config_t c = {.devices = 1,
                     .dec = HW_CODEC_BIT(HW_CODEC_H264),
                     .enc = HW_CODEC_BIT(HW_CODEC_H264),
                     .limits = {146, 50, 1920, 1920, 2, true}};
  for (int route = 0; route < 2; route++) {
    fake_configure(&c);
    hw_table_t t = table;
    char err[512] = "";
    if (hw_table_add(&t, &fake_backend, "0", false, NULL, err, sizeof(err)) != 0)
      fail_msg("hw_table_add: %s", err);
    const hw_device_t *d = &t.dev[1];
    assert_int_equal(!!(d->enc & HW_CODEC_BIT(HW_CODEC_H264)), route == 0);
    assert_int_equal(!!(d->enc_cpu & HW_CODEC_BIT(HW_CODEC_H264)), route == 1);
    bench_ok(d, small(HW_BENCH_DECODE, HW_CODEC_H264, NULL));
    bench_ok(d, small(HW_BENCH_SCALE, HW_CODEC_H264, NULL));
    bench_ok(d, small(HW_BENCH_ENCODE, HW_CODEC_H264, hw_bench_preset_name(d, HW_CODEC_H264, 0)));
    /* decoding on the device says what rate its source came out at too */
    hw_bench_req_t rich = small(HW_BENCH_DECODE, HW_CODEC_H264, NULL);
    rich.bpp = 1.0;
    double fps = 0, bpp = 0;
    char why[256] = "";
    if (hw_bench_stage(d, &rich, &fps, &bpp, why, sizeof why) != 0) fail_msg("%s", why);
    if (!(fps > 0) || !(bpp > 0.5 && bpp < 2))
      fail_msg("%.1f fps at %.3f bits per pixel", fps, bpp);
    assert_int_equal(fake_open_encoders(), 0);
    c.enc = 0;
  }
}

static void test_missing_codec(void **state) {
  (void)state;
  hw_device_t d = table.dev[HW_TABLE_CPU];
  d.dec &= ~HW_CODEC_BIT(HW_CODEC_H264);
  d.enc &= ~HW_CODEC_BIT(HW_CODEC_H264);
  bench_fails(&d, small(HW_BENCH_DECODE, HW_CODEC_H264, NULL), LP_EUNSUPP);
  bench_fails(&d, small(HW_BENCH_SCALE, HW_CODEC_H264, NULL), LP_EUNSUPP);
  bench_fails(&d, small(HW_BENCH_ENCODE, HW_CODEC_H264, NULL), LP_EUNSUPP);
  /* A codec the device did not pass is not measured there (AV1 without its encoder). */
  d = table.dev[HW_TABLE_CPU];
  d.enc &= ~HW_CODEC_BIT(HW_CODEC_AV1);
  bench_fails(&d, small(HW_BENCH_ENCODE, HW_CODEC_AV1, NULL), LP_EUNSUPP);
  /* Below the encoder's minimum size. */
  d = table.dev[HW_TABLE_CPU];
  d.limits[HW_CODEC_H264].min_w = 200;
  bench_fails(&d, small(HW_BENCH_ENCODE, HW_CODEC_H264, NULL), LP_EUNSUPP);
}

static void test_invalid_requests(void **state) {
  (void)state;
  const hw_device_t *cpu = &table.dev[HW_TABLE_CPU];
  hw_bench_req_t zero = {HW_BENCH_ENCODE, HW_CODEC_H264, NULL, 0, 0, 0, 0, 0, false, 0};
  bench_fails(cpu, zero, LP_EINVAL);
  hw_bench_req_t r = small(HW_BENCH_SCALE, HW_CODEC_H264, NULL);
  r.out_w = 161;
  bench_fails(cpu, r, LP_EINVAL);
  r = small(HW_BENCH_DECODE, (hw_codec_t)HW_CODECS, NULL);
  bench_fails(cpu, r, LP_EINVAL);
  r = small((hw_bench_stage_t)7, HW_CODEC_H264, NULL);
  bench_fails(cpu, r, LP_EINVAL);
  r = small(HW_BENCH_DECODE, HW_CODEC_H264, NULL);
  r.frames = -1;
  bench_fails(cpu, r, LP_EINVAL);
  static const double bad_bpp[] = {-0.1, 8.5, NAN, INFINITY};
  for (size_t i = 0; i < sizeof bad_bpp / sizeof bad_bpp[0]; i++) {
    r = small(HW_BENCH_DECODE, HW_CODEC_H264, NULL);
    r.bpp = bad_bpp[i];
    bench_fails(cpu, r, LP_EINVAL);
  }
  double fps;
  char why[64];
  assert_int_equal(hw_bench_stage(NULL, &r, &fps, NULL, why, sizeof(why)), LP_EINVAL);
  assert_int_equal(hw_bench_stage(cpu, NULL, &fps, NULL, NULL, 0), LP_EINVAL);
}

static void test_preset_names(void **state) {
  (void)state;
  hw_device_t d = table.dev[HW_TABLE_CPU];
  d.enc |= HW_CODEC_BIT(HW_CODEC_VP9); /* whether or not this FFmpeg has libvpx */
  assert_string_equal(hw_bench_preset_name(&d, HW_CODEC_HEVC, 2), "slow");
  assert_string_equal(hw_bench_preset_name(&d, HW_CODEC_VP9, 0), "ultrafast");
  assert_null(hw_bench_preset_name(&d, HW_CODEC_VP9, 1));
  assert_null(hw_bench_preset_name(&d, HW_CODEC_VP9, 2));
  assert_null(hw_bench_preset_name(&d, HW_CODEC_AV1, 1));
  assert_null(hw_bench_preset_name(&d, HW_CODEC_H264, 3));
  assert_null(hw_bench_preset_name(&d, HW_CODEC_H264, -1));
  assert_null(hw_bench_preset_name(NULL, HW_CODEC_H264, 0));
  /* Backends are told apart by name; a codec the device does not encode is the CPU's. */
  hw_backend_t be = *d.be;
  d.be = &be;
  d.enc = HW_CODEC_BIT(HW_CODEC_H264) | HW_CODEC_BIT(HW_CODEC_AV1);
  be.name = "nvidia";
  static const char *const nv[3] = {"p2", "p4", "p6"};
  for (int tier = 0; tier < 3; tier++) {
    assert_string_equal(hw_bench_preset_name(&d, HW_CODEC_H264, tier), nv[tier]);
    assert_string_equal(hw_bench_preset_name(&d, HW_CODEC_AV1, tier), nv[tier]);
  }
  assert_string_equal(hw_bench_preset_name(&d, HW_CODEC_HEVC, 0), "veryfast");
  be.name = "qsv";
  assert_string_equal(hw_bench_preset_name(&d, HW_CODEC_H264, 0), "veryfast");
  assert_string_equal(hw_bench_preset_name(&d, HW_CODEC_AV1, 2), "slow");
  be.name = "netint";
  assert_null(hw_bench_preset_name(&d, HW_CODEC_H264, 1));
}

int main(void) {
  lp_log_set_level(1);
  av_log_set_level(AV_LOG_FATAL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cpu_h264_stages),       cmocka_unit_test(test_cpu_stages_by_cpu_time),
      cmocka_unit_test(test_cpu_h264_encode_tiers), cmocka_unit_test(test_fake_gpu_routes),
      cmocka_unit_test(test_missing_codec),         cmocka_unit_test(test_invalid_requests),
      cmocka_unit_test(test_preset_names),          cmocka_unit_test(test_cpu_decode_by_rate),
      cmocka_unit_test(test_clip_rate_from_grain),  cmocka_unit_test(test_clip_segment),
  };
  return cmocka_run_group_tests(tests, probe_cpu, NULL);
}
