/* The hardware backends on a machine without their hardware: error classification, the filter
 * chains they hand to libavfilter (parsed with the real filters), encoder settings, and the
 * one-line reasons they give when the driver, device or codecs are missing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <libavfilter/avfilter.h>
#include <libavutil/log.h>

#include "lpod/core.h"
#include "lpod/hwaccel.h"

static void test_classify(void **state) {
  (void)state;
  const hw_backend_t *bes[] = {&hw_backend_nvidia, &hw_backend_qsv, &hw_backend_netint};
  for (size_t i = 0; i < LP_ARRAY_LEN(bes); i++) {
    hw_err_class_t (*cl)(int, hw_stage_t) = bes[i]->classify_error;
    /* A failed CUDA call (CUDA_ERROR_ILLEGAL_ADDRESS and friends) or a lost device. */
    assert_int_equal(cl(AVERROR_EXTERNAL, HW_STAGE_DECODE), HW_ERR_DEVICE);
    assert_int_equal(cl(AVERROR_EXTERNAL, HW_STAGE_FILTER), HW_ERR_DEVICE);
    assert_int_equal(cl(AVERROR(EIO), HW_STAGE_ENCODE), HW_ERR_DEVICE); /* device not exist */
    assert_int_equal(cl(AVERROR(ENODEV), HW_STAGE_DECODE), HW_ERR_DEVICE);
    assert_int_equal(cl(AVERROR(ENOENT), HW_STAGE_ENCODE), HW_ERR_DEVICE); /* no encode device */
    /* Out of sessions or memory, or NVENC's generic error: the session, not the device. */
    assert_int_equal(cl(AVERROR(ENOMEM), HW_STAGE_ENCODE), HW_ERR_SESSION);
    assert_int_equal(cl(AVERROR_UNKNOWN, HW_STAGE_ENCODE), HW_ERR_SESSION);
    assert_int_equal(cl(AVERROR(EBADF), HW_STAGE_ENCODE), HW_ERR_SESSION);
    /* What the input or the profile did. */
    assert_int_equal(cl(AVERROR_INVALIDDATA, HW_STAGE_DECODE), HW_ERR_INPUT);
    assert_int_equal(cl(AVERROR(EINVAL), HW_STAGE_ENCODE), HW_ERR_INPUT);
    assert_int_equal(cl(AVERROR(ENOSYS), HW_STAGE_ENCODE), HW_ERR_INPUT); /* size over the max */
    assert_int_equal(cl(AVERROR(ENOENT), HW_STAGE_DECODE), HW_ERR_INPUT);
    assert_int_equal(cl(AVERROR_EXTERNAL, HW_STAGE_DEMUX), HW_ERR_INPUT);
  }
}

/* Parses a chain with the real filters, which checks every filter and option name against the
 * linked FFmpeg (configuring would need the device). */
static void parses(const char *chain) {
  AVFilterGraph *g = avfilter_graph_alloc();
  AVFilterInOut *in = NULL, *out = NULL;
  int ret = avfilter_graph_parse2(g, chain, &in, &out);
  if (ret < 0) fail_msg("'%s' does not parse: %d", chain, ret);
  avfilter_inout_free(&in);
  avfilter_inout_free(&out);
  avfilter_graph_free(&g);
}

static void test_filter_chains(void **state) {
  (void)state;
  char buf[512];
  assert_int_equal(hw_backend_nvidia.scale_filter(AV_PIX_FMT_CUDA, 640, 360, buf, sizeof(buf)), 0);
  assert_string_equal(buf, "scale_cuda=w=640:h=360:interp_algo=bicubic:format=nv12");
  parses(buf);
  assert_int_equal(hw_backend_nvidia.scale_filter_host(AV_PIX_FMT_CUDA, 640, 360, buf, sizeof(buf)),
                   0);
  assert_non_null(strstr(buf, "hwdownload,format=yuv420p"));
  parses(buf);
  assert_int_equal(hw_backend_nvidia.scale_filter(AV_PIX_FMT_YUV420P, 640, 360, buf, sizeof(buf)),
                   0);
  assert_null(strstr(buf, "cuda"));
  parses(buf);
  assert_int_equal(hw_backend_qsv.scale_filter(AV_PIX_FMT_QSV, 426, 240, buf, sizeof(buf)), 0);
  assert_string_equal(buf, "vpp_qsv=w=426:h=240:format=nv12");
  parses(buf);
  assert_int_equal(hw_backend_qsv.scale_filter_host(AV_PIX_FMT_QSV, 426, 240, buf, sizeof(buf)), 0);
  parses(buf);
  assert_int_equal(hw_backend_netint.scale_filter(AV_PIX_FMT_YUV420P, 426, 240, buf, sizeof(buf)),
                   0);
  parses(buf);
  /* NETINT's chain is swscale in host memory, which the capacity model charges to the CPU; the
   * GPUs' chains run on the GPU */
  assert_true(strncmp(buf, "scale=", 6) == 0 && hw_backend_netint.scale_on_host);
  assert_false(hw_backend_nvidia.scale_on_host || hw_backend_qsv.scale_on_host);
  char tiny[8];
  assert_int_equal(hw_backend_nvidia.scale_filter(AV_PIX_FMT_CUDA, 640, 360, tiny, sizeof(tiny)),
                   LP_ERANGE);
}

static void test_limits(void **state) {
  (void)state;
  hw_limits_t l;
  /* NVENC's limits as lpms applies them; no VP8/VP9 encoder on NVIDIA. */
  if (avcodec_find_encoder_by_name("h264_nvenc")) {
    assert_int_equal(hw_backend_nvidia.limits(AV_CODEC_ID_H264, &l), 0);
    assert_int_equal(l.min_w, 146);
    assert_int_equal(l.min_h, 50);
    assert_int_equal(l.max_w, 4096);
  }
  if (avcodec_find_encoder_by_name("hevc_nvenc")) {
    assert_int_equal(hw_backend_nvidia.limits(AV_CODEC_ID_HEVC, &l), 0);
    assert_int_equal(l.max_w, 8192);
  }
  assert_int_equal(hw_backend_nvidia.limits(AV_CODEC_ID_VP9, &l), LP_EUNSUPP);
  assert_int_equal(hw_backend_nvidia.limits(AV_CODEC_ID_AV1, &l),
                   avcodec_find_encoder_by_name("av1_nvenc") ? 0 : LP_EUNSUPP);
  assert_int_equal(hw_backend_qsv.limits(AV_CODEC_ID_AV1, &l),
                   avcodec_find_encoder_by_name("av1_qsv") ? 0 : LP_EUNSUPP);
  assert_int_equal(hw_backend_qsv.limits(AV_CODEC_ID_VP8, &l), LP_EUNSUPP);
}

/* The NVDEC path uses FFmpeg's native decoders with the CUDA hwaccel, never the cuvid
 * parsers, and leaves codecs without NVDEC to the CPU decoder. */
static void test_nvidia_decoder_choice(void **state) {
  (void)state;
  AVBufferRef *fake_dev = av_buffer_allocz(16); /* never dereferenced: only referenced */
  assert_non_null(fake_dev);
  struct {
    enum AVCodecID id;
    const char *name;
    bool hw;
  } cases[] = {{AV_CODEC_ID_H264, "h264", true},
               {AV_CODEC_ID_HEVC, "hevc", true},
               {AV_CODEC_ID_PNG, "png", false}};
  for (size_t i = 0; i < LP_ARRAY_LEN(cases); i++) {
    AVCodecParameters *par = avcodec_parameters_alloc();
    par->codec_type = AVMEDIA_TYPE_VIDEO;
    par->codec_id = cases[i].id;
    AVCodecContext *c = avcodec_alloc_context3(NULL);
    const AVCodec *codec = NULL;
    assert_int_equal(hw_backend_nvidia.decoder_setup(fake_dev, par, &codec, c), 0);
    assert_string_equal(codec->name, cases[i].name);
    assert_int_equal(c->hw_device_ctx != NULL, cases[i].hw);
    assert_int_equal(c->get_format != avcodec_default_get_format, cases[i].hw);
    if (cases[i].hw) {
      /* Offered CUDA, it takes it; not offered (NVDEC refused the profile), the CPU format. */
      enum AVPixelFormat with[] = {AV_PIX_FMT_CUDA, AV_PIX_FMT_YUV420P, AV_PIX_FMT_NONE};
      enum AVPixelFormat without[] = {AV_PIX_FMT_YUV422P, AV_PIX_FMT_NONE};
      assert_int_equal(c->get_format(c, with), AV_PIX_FMT_CUDA);
      assert_int_equal(c->get_format(c, without), AV_PIX_FMT_YUV422P);
    }
    avcodec_free_context(&c);
    avcodec_parameters_free(&par);
  }
  av_buffer_unref(&fake_dev);
}

/* Without the driver, NVENC does not open and says so as an error, not a crash. */
static void test_nvenc_without_driver(void **state) {
  (void)state;
  char why[256];
  if (hw_backend_nvidia.check(why, sizeof(why)) == 0) skip();
  hw_enc_params_t p = {.codec = AV_CODEC_ID_H264,
                       .width = 640,
                       .height = 360,
                       .time_base = {1, 90000},
                       .framerate = {30, 1},
                       .bitrate = 1000000,
                       .h264_profile = 3};
  AVCodecContext *c = NULL;
  int ret = hw_backend_nvidia.encoder_open(NULL, &p, NULL, &c);
  assert_true(ret < 0);
  assert_null(c);
  AVBufferRef *dev = NULL;
  assert_int_equal(hw_backend_nvidia.device_open(0, &dev), LP_EDEVICE);
  assert_null(dev);
  hw_device_info_t info[4];
  assert_int_equal(hw_backend_nvidia.probe(info, 4), 0);
}

/* /proc/driver/nvidia/version from the open kernel modules (an H200 host) and the proprietary
 * ones: the version is the first number after "Kernel Module", wherever it sits. */
static void test_nvidia_driver_version(void **state) {
  (void)state;
  char v[48];
  hw_nv_driver_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  "
                       "Release Build  (dvs-builder@U22-I3-AF03-09-1)  Thu Oct  9 2025\n"
                       "GCC version:  gcc version 12.3.0\n",
                       v, sizeof(v));
  assert_string_equal(v, "580.159.04");
  hw_nv_driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 "
                       "22:23:56 UTC 2024\n",
                       v, sizeof(v));
  assert_string_equal(v, "550.54.15");
  /* no number on the module's line: nothing, not a word or the GCC line's version */
  hw_nv_driver_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64\n"
                       "GCC version:  gcc version 12.3.0\n",
                       v, sizeof(v));
  assert_string_equal(v, "");
  hw_nv_driver_version("garbage", v, sizeof(v));
  assert_string_equal(v, "");
  char tiny[4];
  hw_nv_driver_version("Kernel Module  550.54.15", tiny, sizeof(tiny));
  assert_string_equal(tiny, "550");
}

static void test_missing_hardware_messages(void **state) {
  (void)state;
  char why[512];
  hw_table_t t;
  char err[1024] = "";
  if (hw_backend_nvidia.check(why, sizeof(why)) < 0) {
    /* One line that says what is missing. */
    assert_null(strchr(why, '\n'));
    hw_table_init(&t);
    assert_true(hw_table_add(&t, &hw_backend_nvidia, "all", false, NULL, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "-nvidia all: "));
    assert_int_equal(t.n, 1);
  }
  /* Stock FFmpeg has no NETINT codecs: -netint must stop the node and say how to get them. */
  if (!avcodec_find_decoder_by_name("h264_ni_quadra_dec") &&
      !avcodec_find_decoder_by_name("h264_ni_logan_dec") &&
      !avcodec_find_decoder_by_name("h264_ni_dec")) {
    assert_int_equal(hw_backend_netint.check(why, sizeof(why)), LP_EUNSUPP);
    assert_non_null(strstr(why, "has no NETINT codecs"));
    assert_non_null(strstr(why, "libxcoder"));
    hw_probe_opts_t o = {"", "all", "", false, NULL};
    err[0] = 0;
    assert_int_equal(hw_table_probe(&o, &t, err, sizeof(err)), LP_EUNSUPP);
    assert_non_null(strstr(err, "-netint all: the linked FFmpeg"));
  }
  /* A render node that is not there. */
  if (hw_backend_qsv.check(why, sizeof(why)) == 0) {
    hw_table_init(&t);
    err[0] = 0;
    assert_true(hw_table_add(&t, &hw_backend_qsv, "/dev/dri/renderD199", false, NULL, err,
                             sizeof(err)) < 0);
  } else {
    assert_non_null(strstr(why, "QSV") ? why : strstr(why, "/dev/dri"));
  }
}

int main(void) {
  lp_log_set_level(1);
  av_log_set_level(AV_LOG_FATAL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classify),
      cmocka_unit_test(test_filter_chains),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_nvidia_decoder_choice),
      cmocka_unit_test(test_nvidia_driver_version),
      cmocka_unit_test(test_nvenc_without_driver),
      cmocka_unit_test(test_missing_hardware_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
