/* Engine behaviour on generated inputs: short segments, GOP continuation, resolution and
 * pixel-format changes, audio appearing, skipped segments, GOPs, frame rates, guards, formats
 * and codecs. Every output is checked by decoding it. */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "lpod/media.h"
#include "media_check.h"

#define SRC(w, h, r) "-f lavfi -i testsrc2=size=" #w "x" #h ":rate=" #r
#define X264 "-c:v libx264 -preset veryfast -bf 2"
#define AUDIO "-f lavfi -i sine=frequency=440:sample_rate=44100 -c:a aac -b:a 48k"

static media_session_t *new_session(void) {
  media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
  o.preset = "ultrafast";
  media_session_t *s = media_session_new(&o);
  assert_non_null(s);
  return s;
}

static media_profile_t prof(int w, int h, uint32_t fps, uint32_t den) {
  media_profile_t p;
  memset(&p, 0, sizeof(p));
  snprintf(p.name, sizeof(p.name), "p%dx%d_%u", w, h, fps);
  p.width = w;
  p.height = h;
  p.bitrate = 300000;
  p.fps = fps;
  p.fps_den = den;
  return p;
}

static int run(media_session_t *s, const char *path, const media_profile_t *ps, size_t n,
               media_result_t *r) {
  size_t len;
  uint8_t *d = slurp(path, &len);
  int ret = media_session_transcode(s, d, len, ps, n, r);
  free(d);
  return ret;
}

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
    if (o->frames) assert_true(oi.first_key);
  }
}

static outinfo_t info(const media_rendition_t *o) {
  outinfo_t oi;
  assert_int_equal(check_decode(o->data, o->len, &oi), 0);
  return oi;
}

/* A transcode that must succeed; returns frames of rendition 0. */
static int64_t ok(media_session_t *s, const char *path, const media_profile_t *ps, size_t n,
                  media_result_t *r) {
  int ret = run(s, path, ps, n, r);
  if (ret < 0) fail_msg("%s: %s", path, r->error);
  check_renditions(r);
  return r->renditions[0].frames;
}

static void test_short_segments(void **st) {
  (void)st;
  media_profile_t ps[2] = {prof(160, 90, 0, 0), prof(160, 90, 30, 0)};
  static const int counts[] = {1, 2, 3, 5, 6, 10};
  media_session_t *s = new_session();
  assert_int_equal(media_session_depth(s), 2); /* the CPU's: the next segment beside the last */
  for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
    char name[32], args[256];
    snprintf(name, sizeof(name), "short%d.ts", counts[i]);
    snprintf(args, sizeof(args), SRC(320, 180, 30) " -frames:v %d " X264, counts[i]);
    const char *path = gen(name, args);
    media_result_t r;
    /* The same warm session across all cuts, as a stream of short segments would be. */
    assert_int_equal(ok(s, path, ps, 2, &r), counts[i]);
    assert_int_equal(r.decoded_frames, counts[i]);
    assert_int_equal(r.renditions[1].frames, counts[i]);
    assert_int_equal(r.renditions[0].pixels, 160LL * 90 * counts[i]);
    media_result_free(&r);
  }
  assert_int_equal(media_session_segments(s), 6);
  media_session_free(s);
}

/* Cuts full into 1 s parts <prefix>N.ts in the generated files' folder (how: the segment
 * muxer's extra options), timestamps kept as a stream's consecutive segments have them. */
static void cut(const char *full, const char *how, const char *prefix) {
  char cmd[2048];
  snprintf(cmd, sizeof(cmd),
           "ffmpeg -nostdin -y -v error -i %s -c copy -f segment %s -reset_timestamps 0 "
           "%s/%s%%d.ts",
           full, how, gen_dir(), prefix);
  assert_int_equal(system(cmd), 0);
}

static void test_gop_continuation(void **st) {
  (void)st;
  const char *full = gen("cont_full.ts", SRC(320, 180, 30) " -frames:v 60 " X264 " -g 600");
  cut(full, "-segment_times 1 -break_non_keyframes 1", "cont");
  char c0[600], c1[600];
  snprintf(c0, sizeof(c0), "%s/cont0.ts", gen_dir());
  snprintf(c1, sizeof(c1), "%s/cont1.ts", gen_dir());
  media_profile_t ps[1] = {prof(160, 90, 0, 0)};
  media_result_t r;

  media_session_t *s = new_session();
  int64_t a = ok(s, c0, ps, 1, &r);
  media_result_free(&r);
  int64_t b = ok(s, c1, ps, 1, &r);
  assert_int_equal(r.renditions[0].keyframes, 1);
  media_result_free(&r);
  assert_int_equal(a + b, 60);
  assert_true(b > 0);
  media_session_free(s);

  /* The same keyframe-less segment as the first of a session has nothing to continue. */
  s = new_session();
  assert_int_equal(run(s, c1, ps, 1, &r), LP_EMEDIA);
  assert_string_equal(r.error, "No keyframes in input");
  media_result_free(&r);
  media_session_free(s);
}

static void test_resolution_change(void **st) {
  (void)st;
  const char *a = gen("rot_a.ts", SRC(160, 90, 30) " -frames:v 30 " X264);
  const char *b = gen("rot_b.ts", SRC(90, 160, 30) " -frames:v 30 " X264 " -output_ts_offset 1");
  /* Both parts in one segment: the decoder switches size mid-segment. */
  char both[600];
  snprintf(both, sizeof(both), "%s/rot_ab.ts", gen_dir());
  size_t la, lb;
  uint8_t *da = slurp(a, &la), *db = slurp(b, &lb);
  FILE *fp = fopen(both, "wb");
  assert_non_null(fp);
  fwrite(da, 1, la, fp);
  fwrite(db, 1, lb, fp);
  fclose(fp);
  free(da);
  free(db);

  media_profile_t ps[2] = {prof(426, 240, 0, 0), prof(256, 144, 30, 0)};
  media_result_t r;
  media_session_t *s = new_session();
  assert_int_equal(ok(s, both, ps, 2, &r), 60);
  assert_int_equal(r.decoded_frames, 60);
  assert_int_equal(r.decoded_pixels, 60LL * 160 * 90);
  outinfo_t oi = info(&r.renditions[0]);
  assert_int_equal(oi.sizes, 2);
  assert_int_equal(oi.w, 426);
  assert_int_equal(oi.h, 240);
  assert_int_equal(oi.last_w, 240);
  assert_int_equal(oi.last_h, 426);
  assert_int_equal(r.renditions[0].pixels, 30LL * 426 * 240 + 30LL * 240 * 426);
  media_result_free(&r);
  /* Across segments of one session: landscape, portrait, landscape. */
  const char *seq[] = {a, b, a};
  for (int k = 0; k < 3; k++) {
    assert_int_equal(ok(s, seq[k], ps, 2, &r), 30);
    assert_int_equal(r.renditions[1].width, k == 1 ? 144 : 256);
    media_result_free(&r);
  }
  media_session_free(s);
}

static void test_pixfmt_change(void **st) {
  (void)st;
  const char *j = gen("pix_j.ts", SRC(160, 90, 30) " -frames:v 15 " X264 " -pix_fmt yuvj420p");
  const char *p = gen("pix_p.ts", SRC(160, 90, 30) " -frames:v 15 " X264
                                                   " -pix_fmt yuv420p -output_ts_offset 1");
  const char *q = gen("pix_422.ts", SRC(160, 90, 30) " -frames:v 15 " X264
                                                     " -pix_fmt yuv422p -output_ts_offset 2");
  media_profile_t ps[1] = {prof(160, 90, 0, 0)};
  media_result_t r;
  media_session_t *s = new_session();
  const char *seq[] = {j, p, q, j};
  for (int k = 0; k < 4; k++) {
    assert_int_equal(ok(s, seq[k], ps, 1, &r), 15);
    media_result_free(&r);
  }
  media_session_free(s);
}

static void test_audio_appears(void **st) {
  (void)st;
  const char *v = gen("noaudio.ts", SRC(160, 90, 30) " -t 1 " X264);
  const char *av =
      gen("withaudio.ts", SRC(160, 90, 30) " " AUDIO " -t 1 " X264 " -output_ts_offset 1");
  media_profile_t ps[2] = {prof(160, 90, 0, 0), prof(160, 90, 30, 0)};
  ps[1].format = MEDIA_FORMAT_MP4;
  media_result_t r;
  media_session_t *s = new_session();
  ok(s, v, ps, 2, &r);
  assert_int_equal(r.renditions[0].audio_packets, 0);
  assert_false(r.has_audio);
  media_result_free(&r);
  ok(s, av, ps, 2, &r);
  assert_true(r.has_audio);
  assert_true(r.renditions[0].audio_packets > 30);
  assert_int_equal(r.renditions[1].audio_packets, r.renditions[0].audio_packets);
  media_result_free(&r);
  ok(s, v, ps, 2, &r);
  assert_int_equal(r.renditions[0].audio_packets, 0);
  media_result_free(&r);
  media_session_free(s);
}

/* A profile may ask for AAC instead of the copied audio (or for none): the segment's audio is
 * decoded once, encoded once, and muxed into the renditions that asked, in both containers,
 * across the segments of a session. */
static void test_audio_encode(void **st) {
  (void)st;
  const char *in =
      gen("mp2audio.ts",
          SRC(160, 90, 30) " -f lavfi -i sine=frequency=440:sample_rate=48000 -c:a mp2 -b:a 128k"
                           " -t 2 " X264 " -g 60");
  media_profile_t ps[4] = {prof(160, 90, 30, 0), prof(160, 90, 30, 0), prof(160, 90, 30, 0),
                           prof(160, 90, 30, 0)};
  ps[0].audio = MEDIA_PROFILE_AUDIO_AAC;
  ps[1].audio = MEDIA_PROFILE_AUDIO_AAC;
  ps[1].format = MEDIA_FORMAT_MP4;
  ps[2].audio = MEDIA_PROFILE_AUDIO_DROP;
  /* ps[3]: the session's mode, copy */
  media_session_t *s = new_session();
  for (int seg = 0; seg < 2; seg++) {
    media_result_t r;
    ok(s, in, ps, 4, &r);
    for (int i = 0; i < 2; i++) {
      outinfo_t oi = info(&r.renditions[i]);
      assert_string_equal(oi.acodec, "aac");
      assert_int_equal(oi.arate, 48000);
      assert_int_equal(oi.achannels, 2);
      /* 2 s at 48 kHz in 1024-sample frames, give or take the encoder's priming */
      assert_true(r.renditions[i].audio_packets >= 90 && r.renditions[i].audio_packets <= 97);
      int64_t span = oi.a_last_90k - oi.a_first_90k;
      assert_true(span > 170000 && span < 190000);
      /* the audio starts with the video, not somewhere else on the timeline */
      assert_true(llabs(oi.a_first_90k - oi.first_pts_90k) < 9000);
    }
    assert_int_equal(r.renditions[0].audio_packets, r.renditions[1].audio_packets);
    assert_int_equal(r.renditions[2].audio_packets, 0);
    assert_string_equal(info(&r.renditions[2]).acodec, "");
    assert_string_equal(info(&r.renditions[3]).acodec, "mp2");
    assert_true(r.renditions[3].audio_packets > 0);
    media_result_free(&r);
  }
  media_session_free(s);
}

static void test_skipped_segments(void **st) {
  (void)st;
  const char *s0 = gen("skip0.ts", SRC(160, 90, 30) " -t 1 " X264);
  const char *s3 = gen("skip3.ts", SRC(160, 90, 30) " -t 1 " X264 " -output_ts_offset 3");
  const char *s1 = gen("skipback.ts", SRC(160, 90, 30) " -t 1 " X264 " -output_ts_offset 1");
  media_profile_t ps[2] = {prof(160, 90, 30, 0), prof(160, 90, 0, 0)};
  media_result_t r;
  media_session_t *s = new_session();
  /* Forward gap, then backwards in time: each segment stands on its own timestamps. */
  const char *seq[] = {s0, s3, s1};
  for (int k = 0; k < 3; k++) {
    assert_int_equal(ok(s, seq[k], ps, 2, &r), 30);
    assert_int_equal(r.renditions[1].frames, 30);
    outinfo_t oi = info(&r.renditions[0]);
    assert_true(oi.last_pts_90k - oi.first_pts_90k < 90000);
    media_result_free(&r);
  }
  media_session_free(s);
}

static void test_gops(void **st) {
  (void)st;
  const char *in = gen("gop60.ts", SRC(160, 90, 60) " -t 2 " X264);
  media_profile_t ps[3] = {prof(160, 90, 30, 0), prof(160, 90, 0, 0), prof(160, 90, 30, 0)};
  ps[0].gop_ms = 300;
  ps[1].gop_ms = 500;
  ps[2].gop_ms = MEDIA_GOP_INTRA;
  media_result_t r;
  media_session_t *s = new_session();
  for (int k = 0; k < 2; k++) { /* twice: a warm session starts every segment with an IDR */
    ok(s, in, ps, 3, &r);
    assert_int_equal(r.renditions[0].frames, 60);
    assert_int_equal(r.renditions[0].keyframes, 7);
    assert_int_equal(r.renditions[1].frames, 120);
    assert_int_equal(r.renditions[1].keyframes, 4);
    assert_int_equal(r.renditions[2].keyframes, 60);
    media_result_free(&r);
  }
  media_session_free(s);
}

static void test_fractional_fps(void **st) {
  (void)st;
  const char *in = gen("gop60.ts", SRC(160, 90, 60) " -t 2 " X264);
  media_profile_t ps[3] = {prof(160, 90, 30000, 1001), prof(160, 90, 24000, 1001),
                           prof(160, 90, 60000, 1001)};
  media_result_t r;
  media_session_t *s = new_session();
  ok(s, in, ps, 3, &r);
  assert_true(r.renditions[0].frames >= 59 && r.renditions[0].frames <= 61);
  assert_true(r.renditions[1].frames >= 47 && r.renditions[1].frames <= 49);
  assert_true(r.renditions[2].frames >= 119 && r.renditions[2].frames <= 120);
  outinfo_t oi = info(&r.renditions[0]);
  assert_true(oi.r_fps > 29.9 && oi.r_fps < 30.0);
  media_result_free(&r);
  media_session_free(s);
}

static void test_guards(void **st) {
  (void)st;
  media_result_t r;
  media_session_t *s = new_session();
  /* Five frames ten seconds apart asked at 5 fps: the fps filter would make ~200 frames. */
  const char *run5 = gen("runaway.ts", SRC(64, 64, 30) " -frames:v 5 -vf setpts=N*10/TB "
                                                       "-fps_mode passthrough " X264);
  media_profile_t p5[1] = {prof(64, 64, 5, 0)};
  assert_int_equal(run(s, run5, p5, 1, &r), LP_EMEDIA);
  assert_string_equal(r.error, "Encoded frames runaway");
  assert_int_equal(r.error_rendition, 0);
  media_result_free(&r);
  /* Real upsampling (1 fps source to 30 fps) is not a runaway. */
  const char *slow = gen("onefps.ts", SRC(64, 64, 1) " -frames:v 5 " X264);
  media_profile_t p30[1] = {prof(64, 64, 30, 0)};
  assert_int_equal(ok(s, slow, p30, 1, &r), 150);
  media_result_free(&r);
  /* Input duration guard. */
  const char *lng = gen("long301.ts", SRC(32, 32, 1) " -t 301 " X264);
  assert_int_equal(run(s, lng, p30, 1, &r), LP_EMEDIA);
  assert_string_equal(r.error, "TranscoderInvalidDuration");
  media_result_free(&r);
  /* Output count and profile checks come before any work. */
  media_profile_t many[11];
  for (int i = 0; i < 11; i++) many[i] = prof(64, 64, 0, 0);
  assert_int_equal(run(s, slow, many, 11, &r), LP_EINVAL);
  assert_string_equal(r.error, "Too many outputs");
  media_result_free(&r);
  assert_int_equal(ok(s, slow, many, 10, &r), 5);
  media_result_free(&r);
  media_profile_t bad[2] = {prof(64, 64, 0, 0), prof(64, 64, 0, 0)};
  bad[1].gop_ms = -2;
  assert_int_equal(run(s, slow, bad, 2, &r), LP_EINVAL);
  assert_string_equal(r.error, "TranscoderInvalidGOP");
  assert_int_equal(r.error_rendition, 1);
  media_result_free(&r);
  media_session_free(s);
}

static void test_garbage(void **st) {
  (void)st;
  media_profile_t ps[1] = {prof(64, 64, 30, 0)};
  media_result_t r;
  media_session_t *s = new_session();
  size_t n = 1 << 20;
  uint8_t *b = calloc(1, n);
  assert_int_equal(media_session_transcode(s, b, n, ps, 1, &r), LP_EMEDIA);
  assert_string_equal(r.error, "TranscoderInvalidVideo");
  assert_int_equal(r.error_class, MEDIA_ERR_INPUT);
  media_result_free(&r);
  srand(7);
  for (size_t i = 0; i < 65536; i++) b[i] = (uint8_t)rand();
  assert_true(media_session_transcode(s, b, 65536, ps, 1, &r) < 0);
  assert_true(r.error[0] != 0);
  media_result_free(&r);
  assert_int_equal(media_session_transcode(s, NULL, 0, ps, 1, &r), LP_EMEDIA);
  media_result_free(&r);
  /* A real segment with corrupted bytes in the middle: a clean result either way. */
  const char *in = gen("src30.ts", SRC(320, 180, 30) " " AUDIO " -t 2 " X264 " -g 60");
  size_t len;
  uint8_t *d = slurp(in, &len);
  for (size_t i = len / 3; i < len / 3 + 2000; i += 7) d[i] ^= 0x5a;
  int ret = media_session_transcode(s, d, len, ps, 1, &r);
  if (ret == 0)
    check_renditions(&r);
  else
    assert_true(r.error[0] != 0);
  media_result_free(&r);
  free(d);
  free(b);
  media_session_free(s);
}

static void test_formats_codecs(void **st) {
  (void)st;
  const char *in = gen("src30.ts", SRC(320, 180, 30) " " AUDIO " -t 2 " X264 " -g 60");
  const char *mp4 = gen("src30.mp4", SRC(320, 180, 30) " " AUDIO " -t 1 " X264);
  media_profile_t ps[5] = {prof(160, 90, 0, 0), prof(160, 90, 30, 0), prof(160, 90, 30, 0),
                           prof(160, 90, 0, 0), prof(160, 90, 15, 0)};
  ps[0].format = MEDIA_FORMAT_MP4;
  ps[1].encoder = MEDIA_CODEC_VP8;
  ps[1].format = MEDIA_FORMAT_MP4;
  ps[2].encoder = MEDIA_CODEC_VP9;
  ps[2].format = MEDIA_FORMAT_MP4;
  ps[3].encoder = MEDIA_CODEC_HEVC;
  ps[3].quality = 30;
  ps[4].profile = MEDIA_H264_BASELINE;
  media_result_t r;
  media_session_t *s = new_session();
  assert_int_equal(ok(s, in, ps, 5, &r), 60);
  assert_string_equal(info(&r.renditions[0]).vcodec, "h264");
  assert_string_equal(info(&r.renditions[1]).vcodec, "vp8");
  assert_string_equal(info(&r.renditions[2]).vcodec, "vp9");
  assert_string_equal(info(&r.renditions[3]).vcodec, "hevc");
  assert_int_equal(r.renditions[4].frames, 30);
  for (int i = 0; i < 5; i++) assert_true(r.renditions[i].audio_packets > 0);
  media_result_free(&r);
  /* MP4 input. */
  assert_int_equal(ok(s, mp4, ps, 1, &r), 30);
  media_result_free(&r);
  media_session_free(s);
}

/* AV1, lpod's extension: SVT-AV1 renditions in MP4 and (for the MPEG-TS format, which FFmpeg 5.1
 * cannot carry AV1 in) Matroska, keyframes on the GOP, and an AV1 input transcoded to H.264. */
static void test_av1(void **st) {
  (void)st;
  const char *in = gen("src30.ts", SRC(320, 180, 30) " " AUDIO " -t 2 " X264 " -g 60");
  media_profile_t ps[2] = {prof(256, 144, 30, 0), prof(160, 90, 30, 0)};
  ps[0].encoder = ps[1].encoder = MEDIA_CODEC_AV1;
  ps[0].format = MEDIA_FORMAT_MP4;
  ps[1].gop_ms = 1000;
  media_result_t r;
  media_session_t *s = new_session();
  for (int seg = 0; seg < 2; seg++) {
    assert_int_equal(ok(s, in, ps, 2, &r), 60);
    outinfo_t a = info(&r.renditions[0]), b = info(&r.renditions[1]);
    assert_string_equal(a.vcodec, "av1");
    assert_string_equal(b.vcodec, "av1");
    assert_int_equal(a.w, 256);
    assert_int_equal(a.h, 144);
    assert_int_equal(b.w, 160);
    assert_int_equal(b.h, 90);
    assert_int_equal(r.renditions[1].keyframes, 2); /* 2 s at a 1 s GOP */
    assert_true(r.renditions[0].audio_packets > 0 && r.renditions[1].audio_packets > 0);
    const char *ext = NULL;
    media_profile_container(&ps[0], &ext, NULL);
    assert_string_equal(ext, "mp4");
    media_profile_container(&ps[1], &ext, NULL);
    assert_string_equal(ext, "mkv");
    media_result_free(&r);
  }
  media_session_free(s);
  /* AV1 in (libdav1d), H.264 out */
  const char *av1 = gen("av1in.mp4", SRC(320, 180, 30) " -frames:v 30 -c:v libsvtav1 -preset 12");
  media_profile_t h = prof(160, 90, 30, 0);
  s = new_session();
  assert_int_equal(ok(s, av1, &h, 1, &r), 30);
  assert_string_equal(info(&r.renditions[0]).vcodec, "h264");
  assert_int_equal(r.decoded_frames, 30);
  media_result_free(&r);
  media_session_free(s);
}

static void test_sessions_in_parallel(void **st) {
  (void)st;
  /* Sessions share nothing: interleaving two streams' segments changes neither's output. */
  const char *a = gen("src30.ts", SRC(320, 180, 30) " " AUDIO " -t 2 " X264 " -g 60");
  const char *b = gen("rot_b.ts", SRC(90, 160, 30) " -frames:v 30 " X264 " -output_ts_offset 1");
  media_profile_t ps[1] = {prof(160, 90, 0, 0)};
  media_session_t *s1 = new_session(), *s2 = new_session();
  media_result_t r;
  for (int k = 0; k < 2; k++) {
    assert_int_equal(ok(s1, a, ps, 1, &r), 60);
    media_result_free(&r);
    assert_int_equal(ok(s2, b, ps, 1, &r), 30);
    assert_int_equal(r.renditions[0].width, 90);
    media_result_free(&r);
  }
  media_session_free(s1);
  media_session_free(s2);
}

static void test_bframes_mp4(void **st) {
  (void)st;
  /* With B-frames (x264 veryfast) MP4's edit list and reordering must still leave exactly the
   * frames that were counted (lpms #155: 61 muxed, 60 decodable). */
  media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
  o.preset = "veryfast";
  media_session_t *s = media_session_new(&o);
  assert_non_null(s);
  const char *in = gen("src30.ts", SRC(320, 180, 30) " " AUDIO " -t 2 " X264 " -g 60");
  media_profile_t ps[4] = {prof(160, 90, 0, 0), prof(160, 90, 30, 0), prof(160, 90, 0, 0),
                           prof(160, 90, 24, 0)};
  ps[0].format = MEDIA_FORMAT_MP4;
  ps[1].format = MEDIA_FORMAT_MP4;
  ps[2].profile = MEDIA_H264_HIGH;
  ps[3].profile = MEDIA_H264_MAIN;
  media_result_t r;
  for (int k = 0; k < 2; k++) {
    assert_int_equal(ok(s, in, ps, 4, &r), 60);
    assert_int_equal(r.renditions[1].frames, 60);
    assert_int_equal(r.renditions[2].frames, 60);
    assert_int_equal(r.renditions[3].frames, 48);
    media_result_free(&r);
  }
  media_session_free(s);
}

/* Segments submitted without waiting: the next one decodes while this one's encoders drain
 * (its callback held here until the next submission has returned, which a session running one
 * segment at a time could never allow), results come back in submission order, and each is
 * byte for byte what one segment at a time gives, a broken segment in the middle included. */
#define OV_SEGS 5
typedef struct ov_ctx {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool released, held_ok, wrong_result;
  int order[OV_SEGS], seen, rets[OV_SEGS];
  media_result_t res[OV_SEGS];
} ov_ctx_t;
typedef struct ov_arg {
  ov_ctx_t *c;
  int k;
} ov_arg_t;

static void ov_done(void *arg, media_result_t *r, int ret) {
  ov_arg_t *a = arg;
  ov_ctx_t *c = a->c;
  pthread_mutex_lock(&c->mu); /* no cmocka assertion off the test's thread */
  c->wrong_result |= r != &c->res[a->k];
  if (a->k == 0) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    while (!c->released && pthread_cond_timedwait(&c->cv, &c->mu, &dl) == 0) {
    }
    c->held_ok = c->released;
  }
  c->rets[a->k] = ret;
  c->order[c->seen++] = a->k;
  pthread_mutex_unlock(&c->mu);
}

static void test_submit_overlap(void **st) {
  (void)st;
  const char *full = gen("ov_full.ts", SRC(320, 180, 30) " " AUDIO " -t 4 " X264 " -g 30");
  cut(full, "-segment_time 1", "ov");
  uint8_t *in[OV_SEGS];
  size_t len[OV_SEGS];
  for (int k = 0, part = 0; k < OV_SEGS; k++) {
    if (k == 2) { /* not a segment at all */
      len[k] = 4096;
      in[k] = malloc(len[k]);
      assert_non_null(in[k]);
      for (size_t i = 0; i < len[k]; i++) in[k][i] = (uint8_t)(i * 7 + 3);
      continue;
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/ov%d.ts", gen_dir(), part++);
    in[k] = slurp(path, &len[k]);
  }
  media_profile_t ps[2] = {prof(160, 90, 0, 0), prof(256, 144, 30, 0)};
  media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
  o.preset = "veryfast"; /* a look-ahead to drain */
  o.encoder_threads = 1; /* x264's frame threads under VBV do not repeat byte for byte */

  media_result_t seq[OV_SEGS];
  int seq_ret[OV_SEGS];
  media_session_t *s = media_session_new(&o);
  assert_non_null(s);
  for (int k = 0; k < OV_SEGS; k++)
    seq_ret[k] = media_session_transcode(s, in[k], len[k], ps, 2, &seq[k]);
  media_session_free(s);

  ov_ctx_t c = {.released = false};
  ov_arg_t args[OV_SEGS];
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, NULL);
  s = media_session_new(&o);
  assert_non_null(s);
  for (int k = 0; k < OV_SEGS; k++) {
    args[k] = (ov_arg_t){&c, k};
    /* the input and the profiles are needed during the call only */
    uint8_t *copy = malloc(len[k]);
    media_profile_t *pcopy = malloc(sizeof ps);
    assert_non_null(copy);
    assert_non_null(pcopy);
    memcpy(copy, in[k], len[k]);
    memcpy(pcopy, ps, sizeof ps);
    media_session_submit(s, copy, len[k], pcopy, 2, &c.res[k], ov_done, &args[k]);
    memset(copy, 0, len[k]);
    memset(pcopy, 0, sizeof ps);
    free(copy);
    free(pcopy);
    if (k == 1) {
      pthread_mutex_lock(&c.mu);
      c.released = true;
      pthread_cond_broadcast(&c.cv);
      pthread_mutex_unlock(&c.mu);
    }
  }
  media_session_free(s); /* waits for the last ones */
  assert_true(c.held_ok);
  assert_false(c.wrong_result);
  assert_int_equal(c.seen, OV_SEGS);
  for (int k = 0; k < OV_SEGS; k++) {
    assert_int_equal(c.order[k], k);
    assert_int_equal(c.rets[k], seq_ret[k]);
    media_result_t *a = &seq[k], *b = &c.res[k];
    if (k == 2) {
      assert_true(c.rets[k] < 0);
      assert_string_equal(b->error, a->error);
      continue;
    }
    assert_int_equal(c.rets[k], 0);
    assert_true(b->transcode_ns > 0);
    check_renditions(b);
    assert_int_equal(b->n, 2);
    assert_int_equal(b->decoded_frames, a->decoded_frames);
    for (size_t i = 0; i < 2; i++) {
      assert_true(b->renditions[i].frames > 0);
      assert_int_equal(b->renditions[i].frames, a->renditions[i].frames);
      assert_int_equal(b->renditions[i].pixels, a->renditions[i].pixels);
      assert_int_equal(b->renditions[i].len, a->renditions[i].len);
      assert_memory_equal(b->renditions[i].data, a->renditions[i].data, a->renditions[i].len);
    }
  }
  for (int k = 0; k < OV_SEGS; k++) {
    media_result_free(&seq[k]);
    media_result_free(&c.res[k]);
    free(in[k]);
  }
  pthread_cond_destroy(&c.cv);
  pthread_mutex_destroy(&c.mu);
}

/* A bad segment fails alone and leaves the session whole: the caller keeps it (and its warm
 * decoder) for the next segment, which comes out as it would have anyway. A failure that does
 * break it is test_media_fallback's test_device_failure_breaks_session. */
static void test_bad_input_keeps_session(void **st) {
  (void)st;
  media_session_t *s = new_session();
  media_profile_t ps[1] = {prof(160, 90, 0, 0)};
  media_result_t r;
  static const uint8_t junk[] = "not a transport stream at all";
  int ret = media_session_transcode(s, junk, sizeof junk, ps, 1, &r);
  assert_true(ret < 0);
  assert_int_equal(r.error_class, MEDIA_ERR_INPUT);
  assert_false(media_session_broken(s));
  media_result_free(&r);
  const char *path = gen("keep.ts", SRC(320, 180, 30) " -frames:v 10 " X264);
  assert_int_equal(ok(s, path, ps, 1, &r), 10);
  assert_false(media_session_broken(s));
  media_result_free(&r);
  media_session_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_input_keeps_session),
      cmocka_unit_test(test_short_segments),
      cmocka_unit_test(test_gop_continuation),
      cmocka_unit_test(test_resolution_change),
      cmocka_unit_test(test_pixfmt_change),
      cmocka_unit_test(test_audio_appears),
      cmocka_unit_test(test_audio_encode),
      cmocka_unit_test(test_skipped_segments),
      cmocka_unit_test(test_gops),
      cmocka_unit_test(test_fractional_fps),
      cmocka_unit_test(test_guards),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_formats_codecs),
      cmocka_unit_test(test_av1),
      cmocka_unit_test(test_sessions_in_parallel),
      cmocka_unit_test(test_bframes_mp4),
      cmocka_unit_test(test_submit_overlap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
