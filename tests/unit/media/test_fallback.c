/* The engine on a device (the fake backend, named as such: the CPU pretending to be a GPU with
 * the codecs and limits the test sets): what the device did not pass in its self-test is
 * decoded or encoded on the CPU for that rendition only, logged once per session, and every
 * output is still right. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../hwaccel/fake_backend.h"
#include "lpod/hwaccel.h"
#include "lpod/media.h"
#include "media_check.h"
#include "test_log.h"

#define SRC "-f lavfi -i testsrc2=size=640x360:rate=30 -frames:v 30 -c:v libx264 -preset veryfast"

static media_profile_t prof(int w, int h, media_codec_t c) {
  media_profile_t p;
  memset(&p, 0, sizeof(p));
  snprintf(p.name, sizeof(p.name), "p%dx%d_%d", w, h, (int)c);
  p.width = w;
  p.height = h;
  p.bitrate = 300000;
  p.fps = 30;
  p.fps_den = 1;
  p.encoder = c;
  return p;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* The node's log goes to an unlinked temporary file until read_all. */
static int log_to_file(void) {
  int fd = test_log_capture();
  assert_true(fd >= 0);
  return fd;
}

static char *read_all(int fd) {
  char *b = test_log_text(fd);
  assert_non_null(b);
  return b;
}

static void check(const media_result_t *r, size_t i, int w, int h, const char *codec) {
  const media_rendition_t *o = &r->renditions[i];
  outinfo_t oi;
  assert_int_equal(check_decode(o->data, o->len, &oi), 0);
  assert_int_equal(oi.vframes, 30);
  assert_int_equal(oi.vframes, o->frames);
  assert_int_equal(oi.vpixels, o->pixels);
  assert_int_equal(oi.w, w);
  assert_int_equal(oi.h, h);
  assert_true(oi.first_key);
  assert_string_equal(oi.vcodec, codec);
}

/* A fake device in a node's device table, as the self-test would have left it. */
static void table_with(hw_table_t *t, unsigned dec, unsigned enc, hw_limits_t lim) {
  fake_config_t c = {.devices = 1, .dec = dec, .enc = enc, .limits = lim};
  char err[256] = "";
  if (fake_table(t, &c, "0", false, err, sizeof(err))) fail_msg("fake_table: %s", err);
  assert_int_equal(t->n, 2);
  fake_configure(fake_config()); /* the encoders the probe opened are not the session's */
}

static media_session_t *session_on(const hw_table_t *t) {
  media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
  o.preset = "ultrafast";
  o.backend_impl = &fake_backend;
  o.device = 0;
  o.table = t;
  o.table_dev = 1;
  o.log.manifest_id = "fb";
  media_session_t *s = media_session_new(&o);
  assert_non_null(s);
  return s;
}

/* A device that encodes H.264 up to 480 pixels wide, and nothing else: the HEVC rendition and
 * the 640x360 H.264 one go to the CPU, the 320x180 H.264 one stays on the device. Two segments
 * of one session: the fallbacks are logged once, and the device encoder is the only one the
 * fake ever counts. */
static void test_encode_falls_back_per_rendition(void **state) {
  (void)state;
  hw_table_t t;
  table_with(&t, HW_CODEC_BIT(HW_CODEC_H264), HW_CODEC_BIT(HW_CODEC_H264),
             (hw_limits_t){64, 64, 480, 480, 2, true});
  assert_int_equal(t.dev[1].enc, HW_CODEC_BIT(HW_CODEC_H264));
  int fd = log_to_file();
  size_t len;
  uint8_t *data = slurp(gen("fb_h264.ts", SRC), &len);
  media_profile_t ps[3] = {prof(320, 180, MEDIA_CODEC_H264), prof(256, 144, MEDIA_CODEC_HEVC),
                           prof(640, 360, MEDIA_CODEC_H264)};
  media_session_t *s = session_on(&t);
  assert_int_equal(media_session_depth(s), 1); /* a device's session: one segment at a time */
  for (int seg = 0; seg < 2; seg++) {
    media_result_t r;
    int ret = media_session_transcode(s, data, len, ps, 3, &r);
    if (ret < 0) fail_msg("segment %d: %s", seg, r.error);
    assert_int_equal(r.n, 3);
    check(&r, 0, 320, 180, "h264");
    check(&r, 1, 256, 144, "hevc");
    check(&r, 2, 640, 360, "h264");
    /* one device encoder per segment, rendition 0's (libx264 in FFmpeg 5.1 cannot be flushed,
     * so it is opened again for the next segment) */
    assert_int_equal(fake_encoders_opened(), seg + 1);
    assert_true(fake_open_encoders() <= 1);
    media_result_free(&r);
  }
  media_session_free(s);
  assert_int_equal(fake_open_encoders(), 0);
  free(data);
  lp_log_set_fd(-1);
  char *log = read_all(fd);
  close(fd);
  assert_int_equal(count(log, "encodes on the CPU"), 2);
  assert_int_equal(count(log, "fake:0: rendition 1 (hevc 256x144) encodes on the CPU: the device "
                              "has no encoder for this codec"),
                   1);
  assert_int_equal(count(log, "fake:0: rendition 2 (h264 640x360) encodes on the CPU"), 1);
  assert_int_equal(count(log, "decoding"), 0);
  free(log);
}

/* A device whose decoder does not take the input's codec (HEVC only, the input is H.264) and
 * that encodes nothing (an H100): the input is decoded on the CPU and every rendition encoded
 * there, and the session still delivers. */
static void test_decode_and_encode_on_cpu(void **state) {
  (void)state;
  hw_table_t t;
  table_with(&t, HW_CODEC_BIT(HW_CODEC_HEVC), 0, (hw_limits_t){64, 64, 4096, 4096, 2, true});
  int fd = log_to_file();
  size_t len;
  uint8_t *data = slurp(gen("fb_h264.ts", SRC), &len);
  media_profile_t ps[2] = {prof(320, 180, MEDIA_CODEC_H264), prof(256, 144, MEDIA_CODEC_VP9)};
  media_session_t *s = session_on(&t);
  media_result_t r;
  int ret = media_session_transcode(s, data, len, ps, 2, &r);
  if (ret < 0) fail_msg("%s", r.error);
  check(&r, 0, 320, 180, "h264");
  check(&r, 1, 256, 144, "vp9");
  assert_int_equal(fake_encoders_opened(), 0);
  media_result_free(&r);
  media_session_free(s);
  free(data);
  lp_log_set_fd(-1);
  char *log = read_all(fd);
  close(fd);
  assert_int_equal(count(log, "fake:0: decoding h264 on the CPU"), 1);
  assert_int_equal(count(log, "encodes on the CPU: the device has no encoder for this codec"), 2);
  free(log);
}

/* Without a table, a device backend's own limits decide: a size its encoder cannot make goes to
 * the CPU instead of failing the segment. */
static void test_backend_limits_without_table(void **state) {
  (void)state;
  fake_config_t c = {.devices = 1,
                     .dec = HW_CODEC_BIT(HW_CODEC_H264),
                     .enc = HW_CODEC_BIT(HW_CODEC_H264),
                     .limits = {64, 64, 480, 480, 2, true}};
  fake_configure(&c);
  media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
  o.preset = "ultrafast";
  o.backend_impl = &fake_backend;
  o.device = 0;
  media_session_t *s = media_session_new(&o);
  assert_non_null(s);
  const char *in = gen("fb_h264.ts", SRC);
  size_t len;
  uint8_t *data = slurp(in, &len);
  media_profile_t ps[2] = {prof(320, 180, MEDIA_CODEC_H264), prof(640, 360, MEDIA_CODEC_H264)};
  media_result_t r;
  int ret = media_session_transcode(s, data, len, ps, 2, &r);
  if (ret < 0) fail_msg("%s", r.error);
  check(&r, 0, 320, 180, "h264");
  check(&r, 1, 640, 360, "h264");
  media_result_free(&r);
  media_session_free(s);
  free(data);
}

/* Two sessions over the same segments: the fake device as it is (each segment's decode ends
 * with a drain and a flush) and the same device with decoder_sentinels (it ends with sentinel
 * packets and keeps the decoder). Every segment must give the same renditions, byte for byte:
 * the same frames with the same timestamps (x264 on one thread encodes them the same way every
 * time; with VBV on several it need not). Returns the segments that ended with sentinels. */
static int same_with_sentinels(const char *const *paths, int n) {
  hw_backend_t keep = fake_backend;
  keep.decoder_sentinels = true;
  fake_config_t c = {.devices = 1,
                     .dec = HW_CODEC_BIT(HW_CODEC_H264) | HW_CODEC_BIT(HW_CODEC_HEVC),
                     .enc = HW_CODEC_BIT(HW_CODEC_H264),
                     .limits = {16, 16, 4096, 4096, 2, true}};
  fake_configure(&c);
  media_profile_t ps[2] = {prof(320, 180, MEDIA_CODEC_H264), prof(256, 144, MEDIA_CODEC_H264)};
  media_session_t *ss[2];
  for (int k = 0; k < 2; k++) {
    media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
    o.preset = "ultrafast";
    o.encoder_threads = 1;
    o.backend_impl = k ? &keep : &fake_backend;
    o.device = 0;
    ss[k] = media_session_new(&o);
    assert_non_null(ss[k]);
  }
  int kept = 0;
  for (int i = 0; i < n; i++) {
    size_t len;
    uint8_t *data = slurp(paths[i], &len);
    media_result_t r[2];
    int ret[2];
    for (int k = 0; k < 2; k++) ret[k] = media_session_transcode(ss[k], data, len, ps, 2, &r[k]);
    free(data);
    if (ret[0] != ret[1] || strcmp(r[0].error, r[1].error) != 0)
      fail_msg("%s: %d '%s' with a flush, %d '%s' with sentinels", paths[i], ret[0], r[0].error,
               ret[1], r[1].error);
    assert_false(r[0].decoder_kept);
    if (ret[0] == 0) {
      assert_int_equal(r[0].decoded_frames, r[1].decoded_frames);
      assert_int_equal(r[0].n, r[1].n);
      for (size_t j = 0; j < r[0].n; j++) {
        const media_rendition_t *a = &r[0].renditions[j], *b = &r[1].renditions[j];
        if (a->frames != b->frames || a->pixels != b->pixels || a->keyframes != b->keyframes ||
            a->len != b->len || memcmp(a->data, b->data, a->len) != 0) {
          fail_msg("%s rendition %zu: %" PRId64 " frames, %zu bytes with a flush; %" PRId64
                   " frames, %zu bytes with sentinels",
                   paths[i], j, a->frames, a->len, b->frames, b->len);
        }
      }
      if (r[1].decoder_kept) kept++;
    }
    media_result_free(&r[0]);
    media_result_free(&r[1]);
  }
  media_session_free(ss[0]);
  media_session_free(ss[1]);
  return kept;
}

#define BSRC                                                                                       \
  "-f lavfi -i testsrc2=size=640x360:rate=30 -c:v libx264 -preset veryfast -bf 3 -g 15 "           \
  "-b-pyramid normal"

/* H.264 with B-frames (pyramid), consecutive segments, then segments of 1 and 2 frames; HEVC
 * with B-frames. The decoder is kept through all of them, with the frames a drain gives. */
static void test_sentinels_keep_the_decoder(void **state) {
  (void)state;
  const char *h264[5] = {
      gen("sent0.ts", BSRC " -frames:v 30 -output_ts_offset 10"),
      gen("sent1.ts", BSRC " -frames:v 30 -output_ts_offset 11"),
      gen("sent2.ts", BSRC " -frames:v 45 -output_ts_offset 12"),
      gen("sent3.ts", BSRC " -frames:v 1 -output_ts_offset 14"),
      gen("sent4.ts", BSRC " -frames:v 2 -output_ts_offset 15"),
  };
  assert_int_equal(same_with_sentinels(h264, 5), 5);
  const char *hevc[2] = {
      gen("sent_h0.ts", "-f lavfi -i testsrc2=size=640x360:rate=30 -frames:v 20 -c:v libx265 "
                        "-preset ultrafast -x265-params bframes=4:log-level=error"),
      gen("sent_h1.ts", "-f lavfi -i testsrc2=size=640x360:rate=30 -frames:v 20 -c:v libx265 "
                        "-preset ultrafast -x265-params bframes=4:log-level=error "
                        "-output_ts_offset 1"),
  };
  assert_int_equal(same_with_sentinels(hevc, 2), 2);
}

/* The segments that broke transcoders (shared/media): a GOP split over two segments (the second
 * has no keyframe), broken timestamps, missing SEI, a portrait source, a stream with no video
 * frames. Same outputs and same errors either way. */
static void test_sentinels_on_broken_media(void **state) {
  (void)state;
  const char *gop[2] = {media_file("kryp-1.ts"), media_file("kryp-2.ts")};
  same_with_sentinels(gop, 2);
  const char *each[] = {media_file("duplicate-audio-dts.ts"),
                        media_file("missing-sei-and-pes.ts"),
                        media_file("portrait.ts"),
                        media_file("skip_1.ts"),
                        media_file("transmux.ts"),
                        media_file("zero-frame.ts"),
                        media_file("vertical-sample.ts")};
  size_t n = sizeof(each) / sizeof(each[0]);
  for (size_t i = 0; i < n; i++) same_with_sentinels(&each[i], 1);
  /* all of them through one session, as a stream whose source changes would */
  assert_true(same_with_sentinels(each, (int)n) > 0);
}

/* The device stops opening encoders between two segments of a session: the segment that needs
 * a new one fails as the device's failure (its caller then does it again on the CPU and has the
 * device quarantined), where before it read as a bad input and went back to the gateway; and
 * the session says it is broken, so that its caller makes a new one (the node's engine and the
 * worker both ask media_session_broken). */
static void test_encoder_open_failure_is_the_device(void **state) {
  (void)state;
  hw_table_t t;
  table_with(&t, HW_CODEC_BIT(HW_CODEC_H264), HW_CODEC_BIT(HW_CODEC_H264),
             (hw_limits_t){64, 64, 1920, 1920, 2, true});
  size_t len;
  uint8_t *data = slurp(gen("fb_break.ts", SRC), &len);
  media_profile_t ps[2] = {prof(320, 180, MEDIA_CODEC_H264), prof(256, 144, MEDIA_CODEC_H264)};
  media_session_t *s = session_on(&t);
  media_result_t r;
  if (media_session_transcode(s, data, len, ps, 1, &r) < 0) fail_msg("%s", r.error);
  assert_false(media_session_broken(s));
  media_result_free(&r);
  fake_config()->broken = true; /* no new encoder opens on the device */
  int ret = media_session_transcode(s, data, len, ps, 2, &r);
  fake_config()->broken = false;
  assert_true(ret < 0);
  assert_int_equal(r.error_class, MEDIA_ERR_DEVICE);
  assert_true(media_session_broken(s));
  media_result_free(&r);
  media_session_free(s);
  free(data);
}

int main(void) {
  lp_log_set_level(3);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_falls_back_per_rendition),
      cmocka_unit_test(test_encoder_open_failure_is_the_device),
      cmocka_unit_test(test_decode_and_encode_on_cpu),
      cmocka_unit_test(test_backend_limits_without_table),
      cmocka_unit_test(test_sentinels_keep_the_decoder),
      cmocka_unit_test(test_sentinels_on_broken_media),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
