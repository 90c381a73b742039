/* The real-world segments of shared/media, each with the outcome its README states. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lpod/media.h"
#include "media_check.h"

static media_session_t *new_session(void) {
  media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
  o.preset = "ultrafast";
  media_session_t *s = media_session_new(&o);
  assert_non_null(s);
  return s;
}

static media_profile_t prof(const char *preset, uint32_t fps) {
  media_profile_t p;
  assert_int_equal(media_profile_preset(preset, &p), 0);
  p.fps = fps;
  return p;
}

static int run_file(media_session_t *s, const char *name, const media_profile_t *ps, size_t n,
                    media_result_t *r) {
  size_t len;
  uint8_t *d = slurp(media_file(name), &len);
  int ret = media_session_transcode(s, d, len, ps, n, r);
  free(d);
  return ret;
}

/* Every rendition: decodable, frames and pixels equal a decoder's count, keyframe first, DTS
 * strictly increasing per stream. */
static void check_renditions(const media_result_t *r) {
  for (size_t i = 0; i < r->n; i++) {
    const media_rendition_t *o = &r->renditions[i];
    outinfo_t oi;
    assert_true(o->len >= 25);
    assert_int_equal(check_decode(o->data, o->len, &oi), 0);
    assert_int_equal(oi.vframes, o->frames);
    assert_int_equal(oi.vpackets, o->frames);
    assert_int_equal(oi.vpixels, o->pixels);
    assert_int_equal(oi.keyframes, o->keyframes);
    assert_int_equal(oi.apackets, o->audio_packets);
    assert_true(oi.dts_increasing);
    if (o->frames) {
      assert_true(oi.first_key);
      assert_int_equal(oi.last_w, o->width);
      assert_int_equal(oi.last_h, o->height);
      assert_int_equal(o->width % 2, 0);
      assert_int_equal(o->height % 2, 0);
    }
  }
}

static void test_kryp(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[2] = {prof("P240p30fps16x9", 0), prof("P144p30fps16x9", 30)};
  media_result_t r;
  assert_int_equal(run_file(s, "kryp-1.ts", ps, 2, &r), 0);
  assert_int_equal(r.decoded_frames, 35);
  assert_int_equal(r.decoded_pixels, 35LL * 1280 * 720);
  assert_int_equal(r.renditions[0].frames, 35);
  assert_int_equal(r.renditions[0].width, 426);
  assert_int_equal(r.renditions[0].height, 240);
  check_renditions(&r);
  media_result_free(&r);
  /* kryp-2 does not continue kryp-1 (its timestamps are far away): still no keyframe. */
  assert_int_equal(run_file(s, "kryp-2.ts", ps, 2, &r), LP_EMEDIA);
  assert_string_equal(r.error, "No keyframes in input");
  assert_int_equal(r.error_class, MEDIA_ERR_INPUT);
  assert_null(r.renditions);
  media_result_free(&r);
  media_session_free(s);

  s = new_session();
  assert_int_equal(run_file(s, "kryp-2.ts", ps, 2, &r), LP_EMEDIA);
  assert_string_equal(r.error, "No keyframes in input");
  media_result_free(&r);
  /* The session stays usable after an input error. */
  assert_int_equal(run_file(s, "kryp-1.ts", ps, 2, &r), 0);
  check_renditions(&r);
  media_result_free(&r);
  media_session_free(s);
}

static void test_zero_frame(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[2] = {prof("P240p30fps16x9", 30), prof("P360p30fps16x9", 30)};
  media_result_t r;
  assert_int_equal(run_file(s, "zero-frame.ts", ps, 2, &r), 0);
  assert_int_equal(r.decoded_frames, 0);
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(r.renditions[i].frames, 0);
    assert_int_equal(r.renditions[i].audio_packets, 72);
  }
  check_renditions(&r);
  media_result_free(&r);
  media_session_free(s);
}

static void test_duplicate_audio_dts(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[2] = {prof("P240p30fps16x9", 0), prof("P144p30fps16x9", 30)};
  media_result_t r;
  assert_int_equal(run_file(s, "duplicate-audio-dts.ts", ps, 2, &r), 0);
  assert_int_equal(r.renditions[0].audio_packets, 85);
  assert_int_equal(r.renditions[0].frames, r.decoded_frames);
  check_renditions(&r);
  for (size_t i = 0; i < 2; i++) {
    assert_true(r.renditions[i].duration_us > 1900000 && r.renditions[i].duration_us < 2100000);
  }
  media_result_free(&r);
  media_session_free(s);
}

static void test_missing_pts(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[1] = {prof("P144p30fps16x9", 0)};
  media_result_t r;
  assert_int_equal(run_file(s, "missing-sei-and-pes.ts", ps, 1, &r), 0);
  assert_int_equal(r.decoded_frames, 12);
  assert_int_equal(r.renditions[0].frames, 12);
  check_renditions(&r);
  media_result_free(&r);
  media_session_free(s);
}

static void test_skip(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[2] = {prof("P144p30fps16x9", 0), prof("P240p30fps16x9", 30)};
  media_result_t r;
  /* Twice in one session: a repeated (non-consecutive) segment must not blow timestamps up. */
  for (int k = 0; k < 2; k++) {
    assert_int_equal(run_file(s, "skip_1.ts", ps, 2, &r), 0);
    assert_int_equal(r.decoded_frames, 171);
    assert_int_equal(r.renditions[0].frames, 171);
    /* 5.7 s at 29.97 fps into 30 fps: about the same count, never an explosion. */
    assert_true(r.renditions[1].frames >= 169 && r.renditions[1].frames <= 173);
    check_renditions(&r);
    media_result_free(&r);
  }
  media_session_free(s);
}

static void test_portrait(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[3] = {prof("P360p30fps16x9", 30), prof("P240p30fps16x9", 30),
                           prof("P144p30fps16x9", 30)};
  ps[1].encoder = MEDIA_CODEC_HEVC;
  media_result_t r;
  assert_int_equal(run_file(s, "portrait.ts", ps, 3, &r), 0);
  assert_int_equal(r.renditions[0].width, 360);
  assert_int_equal(r.renditions[0].height, 640);
  assert_int_equal(r.renditions[1].width, 240);
  assert_int_equal(r.renditions[1].height, 426);
  assert_int_equal(r.renditions[2].width, 144);
  assert_int_equal(r.renditions[2].height, 256);
  check_renditions(&r);
  media_result_free(&r);
  media_session_free(s);
}

static void test_vertical_impossible(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[2] = {prof("P144p30fps16x9", 30), prof("P144p30fps16x9", 30)};
  ps[1].width = 250;
  ps[1].height = 62500;
  media_result_t r;
  assert_int_equal(run_file(s, "vertical-sample.ts", ps, 2, &r), LP_EINVAL);
  assert_string_equal(r.error, "TranscoderInvalidResolution");
  assert_int_equal(r.error_rendition, 1);
  /* Refused before anything was decoded or encoded. */
  assert_int_equal(r.decoded_frames, 0);
  media_result_free(&r);
  /* The possible profile alone works: 16x4000 scaled into a 256 box keeps its aspect with the
   * short side at the encoder minimum. */
  assert_int_equal(run_file(s, "vertical-sample.ts", ps, 1, &r), 0);
  assert_int_equal(r.renditions[0].width, 16);
  check_renditions(&r);
  media_result_free(&r);
  media_session_free(s);
}

static void test_transmux(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[1] = {prof("P240p30fps16x9", 0)};
  ps[0].gop_ms = 1000;
  media_result_t r;
  assert_int_equal(run_file(s, "transmux.ts", ps, 1, &r), 0);
  assert_int_equal(r.decoded_frames, 53);
  assert_int_equal(r.renditions[0].frames, 53);
  assert_int_equal(r.renditions[0].keyframes, 2);
  check_renditions(&r);
  media_result_free(&r);
  media_session_free(s);
}

static void test_audio_only(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[1] = {prof("P240p30fps16x9", 30)};
  media_result_t r;
  assert_int_equal(run_file(s, "audio.mp3", ps, 1, &r), LP_EMEDIA);
  assert_string_equal(r.error, "TranscoderInvalidVideo");
  media_result_free(&r);
  media_probe_t pr;
  size_t len;
  uint8_t *d = slurp(media_file("audio.mp3"), &len);
  assert_int_equal(media_probe(d, len, &pr), 0);
  free(d);
  assert_false(pr.has_video);
  assert_true(pr.has_audio);
  assert_true(pr.duration_us > 1900000 && pr.duration_us < 2200000);
  media_session_free(s);
}

/* The quick probe (no decoder: what the orchestrator's loop can afford) finds what the full
 * one does on every shared file: the same video size and codec, audio, and the rate within 2%
 * (timestamps skip, repeat and arrive reordered in some of them). */
static void test_quick_probe_agrees(void **st) {
  (void)st;
  static const char *const files[] = {"kryp-1.ts",     "kryp-2.ts",   "duplicate-audio-dts.ts",
                                      "portrait.ts",   "transmux.ts", "missing-sei-and-pes.ts",
                                      "zero-frame.ts", "audio.mp3",   "vertical-sample.ts",
                                      "skip_1.ts"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    size_t len;
    uint8_t *d = slurp(media_file(files[i]), &len);
    media_probe_t full, quick;
    assert_int_equal(media_probe(d, len, &full), 0);
    assert_int_equal(media_probe_stream(d, len, &quick), 0);
    free(d);
    if (full.has_video && full.width > 0) {
      assert_true(quick.has_video);
      assert_int_equal(quick.width, full.width);
      assert_int_equal(quick.height, full.height);
      assert_string_equal(quick.video_codec, full.video_codec);
    } else {
      assert_false(quick.has_video);
    }
    assert_int_equal(quick.has_audio, full.has_audio);
    assert_int_equal(quick.video_frames, 0);
    if (full.has_video && full.width > 0 && full.fps > 0)
      assert_true(fabs(quick.fps - full.fps) / full.fps < 0.02);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quick_probe_agrees), cmocka_unit_test(test_kryp),
      cmocka_unit_test(test_zero_frame),         cmocka_unit_test(test_duplicate_audio_dts),
      cmocka_unit_test(test_missing_pts),        cmocka_unit_test(test_skip),
      cmocka_unit_test(test_portrait),           cmocka_unit_test(test_vertical_impossible),
      cmocka_unit_test(test_transmux),           cmocka_unit_test(test_audio_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
