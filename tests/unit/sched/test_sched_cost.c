/* The cost model: pixel rates per stage, coefficients per device, engines per kind. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lpod/sched.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) <= 1e-9 * (1 + fabs(b)))

static lp_sched_job_t ladder(int w, int h, double fps) {
  lp_sched_job_t j;
  memset(&j, 0, sizeof j);
  j.in_width = w;
  j.in_height = h;
  j.in_fps = fps;
  j.in_codec = LP_SCHED_CODEC_H264;
  j.n_renditions = 2;
  j.renditions[0] =
      (lp_sched_rendition_t){1280, 720, 30, LP_SCHED_CODEC_H264, LP_SCHED_PRESET_MEDIUM};
  j.renditions[1] = (lp_sched_rendition_t){640, 360, 0, LP_SCHED_CODEC_HEVC, LP_SCHED_PRESET_FAST};
  return j;
}

static void test_names(void **state) {
  (void)state;
  lp_sched_codec_t c;
  for (int i = 0; i < LP_SCHED_CODECS; i++) {
    assert_int_equal(lp_sched_codec_from_name(lp_sched_codec_name((lp_sched_codec_t)i), &c), 0);
    assert_int_equal(c, i);
  }
  assert_int_equal(lp_sched_codec_from_name("AVC", &c), 0);
  assert_int_equal(c, LP_SCHED_CODEC_H264);
  assert_int_equal(lp_sched_codec_from_name("H265", &c), 0);
  assert_int_equal(c, LP_SCHED_CODEC_HEVC);
  assert_int_equal(lp_sched_codec_from_name("mpeg2", &c), LP_EINVAL);
  assert_int_equal(lp_sched_codec_from_name(NULL, &c), LP_EINVAL);

  assert_int_equal(lp_sched_preset_from_name("ultrafast"), LP_SCHED_PRESET_FAST);
  assert_int_equal(lp_sched_preset_from_name("veryfast"), LP_SCHED_PRESET_FAST);
  assert_int_equal(lp_sched_preset_from_name("p2"), LP_SCHED_PRESET_FAST);
  assert_int_equal(lp_sched_preset_from_name("medium"), LP_SCHED_PRESET_MEDIUM);
  assert_int_equal(lp_sched_preset_from_name("faster"), LP_SCHED_PRESET_MEDIUM);
  assert_int_equal(lp_sched_preset_from_name("P5"), LP_SCHED_PRESET_MEDIUM);
  assert_int_equal(lp_sched_preset_from_name("veryslow"), LP_SCHED_PRESET_SLOW);
  assert_int_equal(lp_sched_preset_from_name("p7"), LP_SCHED_PRESET_SLOW);
  assert_int_equal(lp_sched_preset_from_name(NULL), LP_SCHED_PRESET_MEDIUM);
  assert_int_equal(lp_sched_preset_from_name("nonsense"), LP_SCHED_PRESET_MEDIUM);
}

static void test_engines(void **state) {
  (void)state;
  assert_int_equal(lp_sched_kind_engines(LP_SCHED_DEV_CPU), 1);
  assert_int_equal(lp_sched_kind_engines(LP_SCHED_DEV_NVIDIA), 3);
  assert_int_equal(lp_sched_kind_engines(LP_SCHED_DEV_QSV), 2);
  for (int st = 0; st < LP_SCHED_STAGES; st++)
    assert_int_equal(lp_sched_stage_engine(LP_SCHED_DEV_CPU, (lp_sched_stage_t)st), 0);
  assert_string_equal(
      lp_sched_engine_name(LP_SCHED_DEV_NVIDIA,
                           lp_sched_stage_engine(LP_SCHED_DEV_NVIDIA, LP_SCHED_STAGE_ENCODE)),
      "nvenc");
  assert_string_equal(
      lp_sched_engine_name(LP_SCHED_DEV_NVIDIA,
                           lp_sched_stage_engine(LP_SCHED_DEV_NVIDIA, LP_SCHED_STAGE_DECODE)),
      "nvdec");
  /* QSV decodes and encodes on the same video engine */
  assert_int_equal(lp_sched_stage_engine(LP_SCHED_DEV_QSV, LP_SCHED_STAGE_DECODE),
                   lp_sched_stage_engine(LP_SCHED_DEV_QSV, LP_SCHED_STAGE_ENCODE));
  assert_string_equal(lp_sched_engine_name(LP_SCHED_DEV_CPU, 1), "?");
}

static void test_rates(void **state) {
  (void)state;
  lp_sched_job_t j = ladder(1920, 1080, 30);
  lp_sched_rates_t r;
  lp_sched_job_rates(&j, &r);
  double in = 1920.0 * 1080, p720 = 1280.0 * 720, p360 = 640.0 * 360;
  NEAR(r.decode, in * 30 / 1e6);
  NEAR(r.encode[LP_SCHED_CODEC_H264], p720 * 30 / 1e6);
  NEAR(r.encode[LP_SCHED_CODEC_HEVC], p360 * 30 / 1e6); /* fps 0 follows the source */
  NEAR(r.encode[LP_SCHED_CODEC_VP9], 0.0);
  NEAR(r.scale, ((in + p720) * 30 + (in + p360) * 30) / 1e6);

  /* an unknown source rate counts as 30, like go-livepeer's balancer */
  lp_sched_job_t u = ladder(1920, 1080, 0);
  lp_sched_rates_t ru;
  lp_sched_job_rates(&u, &ru);
  NEAR(ru.decode, r.decode);

  /* a 60 fps source doubles the decode and the pass-through rendition */
  lp_sched_job_t f = ladder(1920, 1080, 60);
  lp_sched_rates_t rf;
  lp_sched_job_rates(&f, &rf);
  NEAR(rf.decode, 2 * r.decode);
  NEAR(rf.encode[LP_SCHED_CODEC_HEVC], 2 * r.encode[LP_SCHED_CODEC_HEVC]);
  NEAR(rf.encode[LP_SCHED_CODEC_H264], r.encode[LP_SCHED_CODEC_H264]);
}

/* Coefficients for ladder()'s codecs: H.264 decoded at dec ms/Mpx + mbit ms/Mbit. */
static lp_sched_coefs_t coefs(double dec, double mbit) {
  lp_sched_coefs_t c;
  memset(&c, 0, sizeof c);
  c.decode[LP_SCHED_CODEC_H264] = dec;
  c.decode_mbit[LP_SCHED_CODEC_H264] = mbit;
  c.scale = 0.1;
  c.encode[LP_SCHED_CODEC_H264][LP_SCHED_PRESET_MEDIUM] = 1.0;
  c.encode[LP_SCHED_CODEC_HEVC][LP_SCHED_PRESET_FAST] = 2.0;
  return c;
}

static void test_cost_gpu(void **state) {
  (void)state;
  lp_sched_coefs_t c = coefs(0.5, 0);
  lp_sched_job_t j = ladder(1920, 1080, 30);
  lp_sched_rates_t r;
  lp_sched_job_rates(&j, &r);
  lp_sched_cost_t k;
  lp_sched_job_cost(LP_SCHED_DEV_NVIDIA, &c, &j, &k);
  assert_true(k.supported);
  NEAR(k.engine[0], 0.5 * r.decode);
  NEAR(k.engine[1], 0.1 * r.scale);
  NEAR(k.engine[2], 1.0 * r.encode[LP_SCHED_CODEC_H264] + 2.0 * r.encode[LP_SCHED_CODEC_HEVC]);
  NEAR(k.total, k.engine[0] + k.engine[1] + k.engine[2]);
  assert_int_equal(k.enc_sessions, 2);
  assert_int_equal(k.dec_sessions, 1);
  assert_true(k.mem_bytes > 64ull << 20);

  /* a bigger source needs more memory and decode */
  lp_sched_job_t big = ladder(3840, 2160, 30);
  lp_sched_cost_t kb;
  lp_sched_job_cost(LP_SCHED_DEV_NVIDIA, &c, &big, &kb);
  assert_true(kb.mem_bytes > k.mem_bytes);
  NEAR(kb.engine[0], 4 * k.engine[0]);

  /* a rendition the device can't encode makes the job unsupported there */
  j.renditions[1].preset = LP_SCHED_PRESET_SLOW;
  lp_sched_job_cost(LP_SCHED_DEV_NVIDIA, &c, &j, &k);
  assert_false(k.supported);
}

static void test_cost_cpu(void **state) {
  (void)state;
  lp_sched_coefs_t one, two;
  lp_sched_coefs_default(LP_SCHED_DEV_CPU, 1, &one);
  lp_sched_coefs_default(LP_SCHED_DEV_CPU, 2, &two);
  lp_sched_job_t j = ladder(1920, 1080, 30);
  lp_sched_cost_t k1, k2;
  lp_sched_job_cost(LP_SCHED_DEV_CPU, &one, &j, &k1);
  lp_sched_job_cost(LP_SCHED_DEV_CPU, &two, &j, &k2);
  /* one engine carries everything; twice the CPUs, half the share */
  NEAR(k1.engine[0], k1.total);
  NEAR(k1.engine[1] + k1.engine[2], 0.0);
  NEAR(k2.total, k1.total / 2);
  assert_int_equal(k1.enc_sessions, 0);
  assert_int_equal(k1.mem_bytes, 0);

  /* more renditions, more cost */
  lp_sched_job_t more = j;
  more.renditions[more.n_renditions++] =
      (lp_sched_rendition_t){426, 240, 30, LP_SCHED_CODEC_H264, LP_SCHED_PRESET_MEDIUM};
  lp_sched_cost_t km;
  lp_sched_job_cost(LP_SCHED_DEV_CPU, &one, &more, &km);
  assert_true(km.total > k1.total);
}

/* Decoding costs per pixel and per megabit of the source: a job's own rate where it is known,
 * LP_SCHED_REF_BPP bits per pixel where not. */
static void test_cost_by_rate(void **state) {
  (void)state;
  lp_sched_coefs_t c = coefs(2.0, 10.0);
  lp_sched_job_t j = ladder(1920, 1080, 30);
  lp_sched_rates_t r;
  lp_sched_job_rates(&j, &r);
  NEAR(r.decode_mbit, LP_SCHED_REF_BPP * r.decode); /* unknown: the reference rate */
  lp_sched_cost_t unknown, clean, grain;
  lp_sched_job_cost(LP_SCHED_DEV_NVIDIA, &c, &j, &unknown);
  NEAR(unknown.engine[0], 2.0 * r.decode + 10.0 * LP_SCHED_REF_BPP * r.decode);
  j.in_mbps = 6;
  lp_sched_job_cost(LP_SCHED_DEV_NVIDIA, &c, &j, &clean);
  NEAR(clean.engine[0], 2.0 * r.decode + 60.0);
  j.in_mbps = 55;
  lp_sched_job_rates(&j, &r);
  NEAR(r.decode_mbit, 55.0);
  lp_sched_job_cost(LP_SCHED_DEV_NVIDIA, &c, &j, &grain);
  NEAR(grain.engine[0] - clean.engine[0], 10.0 * 49);
  /* the rate weighs on decoding alone */
  NEAR(grain.engine[1], clean.engine[1]);
  NEAR(grain.engine[2], clean.engine[2]);
  /* a codec without a figure per bit is priced per pixel whatever its rate */
  j.in_codec = LP_SCHED_CODEC_HEVC;
  c.decode[LP_SCHED_CODEC_HEVC] = 3.0;
  lp_sched_job_cost(LP_SCHED_DEV_NVIDIA, &c, &j, &grain);
  NEAR(grain.engine[0], 3.0 * r.decode);

  /* the CPU's built-in split prices a source at the reference rate as its per-pixel figure
   * did before the split (H.264 3.5, HEVC 6 ms/Mpx on a core), and a 55 Mbit/s 1080p30 source
   * at several times that */
  lp_sched_coefs_t one;
  lp_sched_coefs_default(LP_SCHED_DEV_CPU, 1, &one);
  NEAR(one.decode[LP_SCHED_CODEC_H264] + one.decode_mbit[LP_SCHED_CODEC_H264] * LP_SCHED_REF_BPP,
       3.5);
  NEAR(one.decode[LP_SCHED_CODEC_HEVC] + one.decode_mbit[LP_SCHED_CODEC_HEVC] * LP_SCHED_REF_BPP,
       6.0);
  double px = 1920 * 1080 * 30 / 1e6;
  double at55 = one.decode[LP_SCHED_CODEC_H264] * px + one.decode_mbit[LP_SCHED_CODEC_H264] * 55;
  assert_true(at55 > 3 * 3.5 * px);
}

static void test_defaults(void **state) {
  (void)state;
  for (int kind = LP_SCHED_DEV_CPU; kind <= LP_SCHED_DEV_NETINT; kind++) {
    lp_sched_coefs_t c;
    lp_sched_coefs_default((lp_sched_dev_kind_t)kind, 4, &c);
    assert_true(c.decode[LP_SCHED_CODEC_H264] > 0);
    assert_true(c.scale > 0);
    for (int k = 0; k < LP_SCHED_CODECS; k++) {
      if (c.encode[k][LP_SCHED_PRESET_MEDIUM] == 0) continue;
      assert_true(c.encode[k][LP_SCHED_PRESET_FAST] < c.encode[k][LP_SCHED_PRESET_MEDIUM]);
      assert_true(c.encode[k][LP_SCHED_PRESET_MEDIUM] < c.encode[k][LP_SCHED_PRESET_SLOW]);
    }
    /* every device kind encodes H.264 */
    assert_true(c.encode[LP_SCHED_CODEC_H264][LP_SCHED_PRESET_MEDIUM] > 0);
  }
  lp_sched_coefs_t nv;
  lp_sched_coefs_default(LP_SCHED_DEV_NVIDIA, 0, &nv);
  assert_true(nv.encode[LP_SCHED_CODEC_VP8][LP_SCHED_PRESET_MEDIUM] == 0); /* NVENC has no VP8 */
  /* the GPU's CPU count is ignored */
  lp_sched_coefs_t nv8;
  lp_sched_coefs_default(LP_SCHED_DEV_NVIDIA, 8, &nv8);
  assert_memory_equal(&nv, &nv8, sizeof nv);
}

static void test_validate(void **state) {
  (void)state;
  char err[128];
  lp_sched_job_t j = ladder(1920, 1080, 30);
  assert_int_equal(lp_sched_job_validate(&j, err, sizeof err), 0);
  lp_sched_job_t b = j;
  b.in_width = 0;
  assert_int_equal(lp_sched_job_validate(&b, err, sizeof err), LP_EINVAL);
  assert_non_null(strstr(err, "source size"));
  static const double bad_rate[] = {NAN, INFINITY, 1e6};
  for (size_t i = 0; i < sizeof bad_rate / sizeof bad_rate[0]; i++) {
    b = j;
    b.in_mbps = bad_rate[i];
    assert_int_equal(lp_sched_job_validate(&b, err, sizeof err), LP_EINVAL);
    assert_non_null(strstr(err, "source bit rate"));
  }
  b = j;
  b.in_mbps = -1; /* unknown */
  assert_int_equal(lp_sched_job_validate(&b, err, sizeof err), 0);
  b = j;
  b.n_renditions = 0;
  assert_int_equal(lp_sched_job_validate(&b, err, sizeof err), LP_EINVAL);
  b.n_renditions = LP_SCHED_MAX_RENDITIONS + 1;
  assert_int_equal(lp_sched_job_validate(&b, err, sizeof err), LP_EINVAL);
  b = j;
  b.renditions[1].fps = NAN;
  assert_int_equal(lp_sched_job_validate(&b, err, sizeof err), LP_EINVAL);
  assert_non_null(strstr(err, "rendition 1"));
  b = j;
  b.renditions[0].codec = (lp_sched_codec_t)42;
  assert_int_equal(lp_sched_job_validate(&b, err, sizeof err), LP_EINVAL);
  b = j;
  b.renditions[0].height = 100000;
  assert_int_equal(lp_sched_job_validate(&b, NULL, 0), LP_EINVAL);
  b = j;
  b.in_fps = INFINITY;
  assert_int_equal(lp_sched_job_validate(&b, err, sizeof err), LP_EINVAL);
  assert_int_equal(lp_sched_job_validate(NULL, err, sizeof err), LP_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),    cmocka_unit_test(test_engines),
      cmocka_unit_test(test_rates),    cmocka_unit_test(test_cost_gpu),
      cmocka_unit_test(test_cost_cpu), cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_validate), cmocka_unit_test(test_cost_by_rate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
