/* Profiles: presets, go-livepeer's JSON ladder, validation, output sizes, cost hints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lpod/media.h"

static void test_presets(void **st) {
  (void)st;
  media_profile_t p;
  assert_int_equal(media_profile_preset("P240p30fps16x9", &p), 0);
  assert_string_equal(p.name, "P240p30fps16x9");
  assert_int_equal(p.width, 426);
  assert_int_equal(p.height, 240);
  assert_int_equal(p.bitrate, 600000);
  assert_int_equal(p.fps, 30);
  assert_int_equal(p.fps_den, 0);
  assert_int_equal(p.gop_ms, 0);
  assert_int_equal(p.encoder, MEDIA_CODEC_H264);
  assert_int_equal(media_profile_preset("P720p60fps16x9", &p), 0);
  assert_int_equal(p.bitrate, 6000000);
  assert_int_equal(p.fps, 60);
  /* Defined in lpms but not selectable by name there either. */
  assert_int_equal(media_profile_preset("P144p25fps16x9", &p), LP_ENOENT);
  assert_int_equal(media_profile_preset("nope", &p), LP_ENOENT);

  media_profile_t *ps;
  size_t n;
  char err[128];
  assert_int_equal(media_profiles_parse("P240p30fps16x9, P360p30fps16x9,P720p30fps16x9", &ps, &n,
                                        err, sizeof(err)),
                   0);
  assert_int_equal(n, 3);
  assert_int_equal(ps[1].width, 640);
  assert_int_equal(ps[2].bitrate, 4000000);
  free(ps);
  assert_int_equal(media_profiles_parse("P240p30fps16x9,bogus", &ps, &n, err, sizeof(err)),
                   LP_EINVAL);
  assert_non_null(strstr(err, "bogus"));
}

static void test_json(void **st) {
  (void)st;
  const char *j = "[{\"name\":\"240p0\",\"fps\":0,\"bitrate\":250000,\"width\":426,\"height\":240,"
                  "\"profile\":\"h264constrainedhigh\",\"gop\":\"1\",\"audio\":\"aac\"},"
                  "{\"width\":1280,\"height\":720,\"bitrate\":3000000,\"fps\":30000,"
                  "\"fpsDen\":1001,\"encoder\":\"HEVC\",\"gop\":\"intra\",\"quality\":23,"
                  "\"colorDepth\":2,\"chromaFormat\":1},"
                  "{\"name\":\"m\",\"width\":640,\"height\":360,\"bitrate\":\"800k\","
                  "\"format\":\"mp4\",\"encoder\":\"VP9\",\"profile\":\"H264High\",\"gop\":2.5,"
                  "\"audio\":\"drop\"}]";
  media_profile_t *ps;
  size_t n;
  char err[128];
  assert_int_equal(media_profiles_parse_json(j, strlen(j), &ps, &n, err, sizeof(err)), 0);
  assert_int_equal(n, 3);
  assert_string_equal(ps[0].name, "240p0");
  assert_int_equal(ps[0].profile, MEDIA_H264_CONSTRAINED_HIGH);
  assert_int_equal(ps[0].gop_ms, 1000);
  assert_int_equal(ps[0].fps, 0);
  assert_string_equal(ps[1].name, "custom_1280x720_3000000");
  assert_int_equal(ps[1].encoder, MEDIA_CODEC_HEVC);
  assert_int_equal(ps[1].gop_ms, MEDIA_GOP_INTRA);
  assert_int_equal(ps[1].fps_den, 1001);
  assert_int_equal(ps[1].quality, 23);
  assert_int_equal(ps[1].color_depth, 2);
  assert_int_equal(ps[1].chroma_format, MEDIA_CHROMA_422);
  assert_int_equal(ps[2].bitrate, 800000);
  assert_int_equal(ps[2].format, MEDIA_FORMAT_MP4);
  assert_int_equal(ps[2].encoder, MEDIA_CODEC_VP9);
  assert_int_equal(ps[2].profile, MEDIA_H264_HIGH);
  assert_int_equal(ps[2].gop_ms, 2500);
  assert_int_equal(ps[0].audio, MEDIA_PROFILE_AUDIO_AAC);
  assert_int_equal(ps[1].audio, MEDIA_PROFILE_AUDIO_SESSION);
  assert_int_equal(ps[2].audio, MEDIA_PROFILE_AUDIO_DROP);
  free(ps);

  /* AV1 is lpod's fifth codec */
  const char *av1 = "[{\"width\":640,\"height\":360,\"encoder\":\"AV1\",\"format\":\"mp4\"},"
                    "{\"width\":320,\"height\":180,\"encoder\":\"av1\"}]";
  assert_int_equal(media_profiles_parse_json(av1, strlen(av1), &ps, &n, err, sizeof(err)), 0);
  assert_int_equal(n, 2);
  assert_int_equal(ps[0].encoder, MEDIA_CODEC_AV1);
  assert_int_equal(ps[1].encoder, MEDIA_CODEC_AV1);
  assert_int_equal(media_profile_validate(&ps[0], NULL), 0);
  free(ps);

  const char *obj = "{\"profiles\":[{\"name\":\"a\",\"width\":320,\"height\":240}]}";
  assert_int_equal(media_profiles_parse(obj, &ps, &n, err, sizeof(err)), 0);
  assert_int_equal(n, 1);
  free(ps);

  static const struct {
    const char *json, *err;
  } bad[] = {
      {"[{\"width\":320,\"height\":240,\"gop\":\"-2\"}]", "TranscoderInvalidGOP"},
      {"[{\"width\":320,\"height\":240,\"gop\":\"soon\"}]", "TranscoderInvalidGOP"},
      {"[{\"width\":320,\"height\":240,\"profile\":\"h264ultra\"}]",
       "TranscoderUnrecognizedProfile"},
      {"[{\"width\":320,\"height\":240,\"encoder\":\"AV2\"}]", "unrecognized video codec"},
      {"[{\"width\":320,\"height\":240,\"format\":\"avi\"}]", "TranscoderUnrecognizedFormat"},
      {"[{\"width\":320,\"height\":0}]", "TranscoderInvalidResolution"},
      {"[{\"width\":-5,\"height\":240}]", "bad value for \"width\""},
      {"[]", "profiles: expected a non-empty array"},
      {"[{\"width\":320,", "profiles: invalid JSON"},
      {"[{\"width\":320,\"height\":240,\"quality\":64}]", "bad value for \"quality\""},
      {"[{\"width\":320,\"height\":240,\"audio\":\"opus\"}]",
       "unrecognized audio (copy, drop or aac): opus"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = 0;
    assert_int_equal(
        media_profiles_parse_json(bad[i].json, strlen(bad[i].json), &ps, &n, err, sizeof(err)),
        LP_EINVAL);
    assert_null(ps);
    assert_string_equal(err, bad[i].err);
  }
}

static void test_validate(void **st) {
  (void)st;
  media_profile_t p;
  const char *why;
  media_profile_preset("P360p30fps16x9", &p);
  assert_int_equal(media_profile_validate(&p, &why), 0);
  p.gop_ms = -2;
  assert_int_equal(media_profile_validate(&p, &why), LP_EINVAL);
  assert_string_equal(why, "TranscoderInvalidGOP");
  p.gop_ms = 0;
  p.format = (media_format_t)7;
  media_profile_validate(&p, &why);
  assert_string_equal(why, "TranscoderUnrecognizedFormat");
  p.format = MEDIA_FORMAT_MP4;
  p.profile = (media_h264_profile_t)9;
  media_profile_validate(&p, &why);
  assert_string_equal(why, "TranscoderUnrecognizedProfile");
}

static void fit(const char *preset, int w, int h, int in_w, int in_h, int ew, int eh) {
  media_profile_t p;
  assert_int_equal(media_profile_preset(preset, &p), 0);
  if (w) p.width = w, p.height = h;
  int ow = 0, oh = 0;
  assert_int_equal(media_profile_fit(&p, in_w, in_h, "sw", &ow, &oh), 0);
  assert_int_equal(ow, ew);
  assert_int_equal(oh, eh);
}

static void test_fit(void **st) {
  (void)st;
  fit("P360p30fps16x9", 0, 0, 1920, 1080, 640, 360);
  fit("P240p30fps16x9", 0, 0, 1920, 1080, 426, 240);
  fit("P240p30fps16x9", 0, 0, 1280, 720, 426, 240);
  /* Portrait sources keep their orientation. */
  fit("P360p30fps16x9", 0, 0, 720, 1280, 360, 640);
  fit("P144p30fps16x9", 0, 0, 720, 1280, 144, 256);
  /* 4:3 source in a 16:9 box: the longer side wins. */
  fit("P720p30fps16x9", 0, 0, 640, 480, 1280, 960);
  /* 0x0 keeps the source size. */
  fit("P720p30fps16x9", 0, 0, 1280, 720, 1280, 720);
  media_profile_t p;
  media_profile_preset("P720p30fps16x9", &p);
  p.width = p.height = 0;
  int ow, oh;
  assert_int_equal(media_profile_fit(&p, 1000, 562, "sw", &ow, &oh), 0);
  assert_int_equal(ow, 1000);
  assert_int_equal(oh, 562);
  /* Short side pinned to the encoder minimum. */
  p.width = 256;
  p.height = 144;
  assert_int_equal(media_profile_fit(&p, 4000, 100, "sw", &ow, &oh), 0);
  assert_int_equal(oh, 16);
  assert_int_equal(ow, 640);
  /* Impossible: the README's 250x62500 on a 16x4000 source. */
  p.width = 250;
  p.height = 62500;
  assert_int_equal(media_profile_fit(&p, 16, 4000, "sw", &ow, &oh), LP_ERANGE);
  /* Pinning the short side would push the long side past the maximum. */
  p.width = 8192;
  p.height = 8192;
  assert_int_equal(media_profile_fit(&p, 2, 4000, "sw", &ow, &oh), LP_ERANGE);
  assert_int_equal(media_profile_fit(&p, 1920, 1080, "nosuch", &ow, &oh), LP_EUNSUPP);
}

static void test_cost(void **st) {
  (void)st;
  media_profile_t ps[2];
  media_profile_preset("P720p30fps16x9", &ps[0]);
  media_profile_preset("P240p30fps16x9", &ps[1]);
  ps[1].fps = 0; /* passthrough: the source rate */
  media_cost_t c;
  media_job_cost(ps, 2, 1920, 1080, 60, &c);
  assert_true(c.decode_pps == 1920.0 * 1080 * 60);
  assert_true(c.encode_pps[MEDIA_CODEC_H264] == 1280.0 * 720 * 30 + 426.0 * 240 * 60);
  assert_true(c.encode_total_pps == c.scale_pps);
  assert_int_equal(c.encoders, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_presets), cmocka_unit_test(test_json), cmocka_unit_test(test_validate),
      cmocka_unit_test(test_fit),     cmocka_unit_test(test_cost),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
