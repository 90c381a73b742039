/* The parts of the O⇄T protocol that need no sockets: Content-Type, multipart bodies, decimal
 * headers, profiles and the capability rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pool_int.h"

static void test_mime(void **state) {
  (void)state;
  char type[64], b[POOL_BOUNDARY_MAX + 1];
  assert_int_equal(
      pool_mime_parse("multipart/mixed; boundary=0123abcd", type, sizeof type, b, sizeof b), 0);
  assert_string_equal(type, "multipart/mixed");
  assert_string_equal(b, "0123abcd");
  assert_int_equal(
      pool_mime_parse("Multipart/Mixed;boundary=\"a b\\\"c\"", type, sizeof type, b, sizeof b), 0);
  assert_string_equal(type, "multipart/mixed");
  assert_string_equal(b, "a b\"c");
  assert_int_equal(pool_mime_parse("livepeer/transcoding-error", type, sizeof type, b, sizeof b),
                   0);
  assert_string_equal(type, "livepeer/transcoding-error");
  assert_string_equal(b, "");
  const char *bad[] = {
      "", "text", "/plain", "text/", "a/b/c", "a/b; boundary", "a/b; boundary=", "a/b; =x",
      "a/b; boundary=\"open", "a/b x",
      /* a 74-character boundary, past RFC 2046's 70 */
      ("a/b; boundary=0123456789012345678901234567890123456789012345678901234567890"
       "1234567890123")};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_not_equal(pool_mime_parse(bad[i], type, sizeof type, b, sizeof b), 0);
}

static void test_i64(void **state) {
  (void)state;
  int64_t v;
  assert_int_equal(pool_parse_i64("123", &v), 0);
  assert_int_equal(v, 123);
  assert_int_equal(pool_parse_i64("-7", &v), 0);
  assert_int_equal(v, -7);
  assert_int_equal(pool_parse_i64("9223372036854775807", &v), 0);
  assert_int_not_equal(pool_parse_i64("9223372036854775808", &v), 0);
  assert_int_not_equal(pool_parse_i64("", &v), 0);
  assert_int_not_equal(pool_parse_i64(NULL, &v), 0);
  assert_int_not_equal(pool_parse_i64("12a", &v), 0);
  assert_int_not_equal(pool_parse_i64(" 1", &v), 0);
  assert_int_not_equal(pool_parse_i64("-", &v), 0);
}

typedef struct seen {
  int n;
  char ctype[4][64];
  int64_t pixels[4];
  size_t len[4];
  uint8_t first[4];
} seen_t;

static int collect(const pool_part_t *p, void *arg) {
  seen_t *s = arg;
  if (s->n >= 4) return -100;
  snprintf(s->ctype[s->n], sizeof s->ctype[0], "%s", p->content_type);
  s->pixels[s->n] = -1;
  if (p->pixels && pool_parse_i64(p->pixels, &s->pixels[s->n])) s->pixels[s->n] = -2;
  s->len[s->n] = p->len;
  s->first[s->n] = p->len ? p->body[0] : 0;
  s->n++;
  return 0;
}

static void build(lp_buf_t *b, const char *bnd) {
  uint8_t r1[100], r2[3000];
  memset(r1, 'a', sizeof r1);
  memset(r2, '\r', sizeof r2); /* bytes that look like line ends must not confuse the parser */
  r2[0] = 'b';
  assert_int_equal(pool_multipart_add(b, bnd, "video/mp2t", 4800, r1, sizeof r1), 0);
  assert_int_equal(pool_multipart_add(b, bnd, "video/mp4", 9600, r2, sizeof r2), 0);
  assert_int_equal(pool_multipart_add(b, bnd, "application/octet-stream", -1, r1, 10), 0);
  assert_int_equal(pool_multipart_close(b, bnd), 0);
}

static void test_multipart_roundtrip(void **state) {
  (void)state;
  char bnd[21];
  assert_int_equal(pool_boundary_new(bnd), 0);
  assert_int_equal(strlen(bnd), 20);
  lp_buf_t b = LP_BUF_INIT;
  build(&b, bnd);
  seen_t s;
  memset(&s, 0, sizeof s);
  char err[128];
  assert_int_equal(
      pool_multipart_parse(b.data, b.len, bnd, 1 << 20, 16, collect, &s, err, sizeof err), 0);
  assert_int_equal(s.n, 3);
  assert_string_equal(s.ctype[0], "video/mp2t");
  assert_int_equal(s.pixels[0], 4800);
  assert_int_equal(s.len[0], 100);
  assert_int_equal(s.first[0], 'a');
  assert_string_equal(s.ctype[1], "video/mp4");
  assert_int_equal(s.pixels[1], 9600);
  assert_int_equal(s.len[1], 3000);
  assert_int_equal(s.first[1], 'b');
  assert_int_equal(s.pixels[2], -1);
  assert_int_equal(s.len[2], 10);

  /* Limits. */
  memset(&s, 0, sizeof s);
  assert_int_equal(pool_multipart_parse(b.data, b.len, bnd, 1000, 16, collect, &s, err, sizeof err),
                   LP_ERANGE);
  memset(&s, 0, sizeof s);
  assert_int_equal(
      pool_multipart_parse(b.data, b.len, bnd, 1 << 20, 2, collect, &s, err, sizeof err),
      LP_ERANGE);
  /* Wrong boundary, truncations. */
  memset(&s, 0, sizeof s);
  assert_int_equal(
      pool_multipart_parse(b.data, b.len, "other", 1 << 20, 16, collect, &s, err, sizeof err),
      LP_EPROTO);
  for (size_t cut = 0; cut + 4 < b.len; cut += 97) {
    memset(&s, 0, sizeof s);
    assert_int_equal(
        pool_multipart_parse(b.data, cut, bnd, 1 << 20, 16, collect, &s, err, sizeof err),
        LP_EPROTO);
  }
  lp_buf_free(&b);
}

static void test_multipart_preamble_and_lf(void **state) {
  (void)state;
  const char *body = "preamble text\r\n--XY\nContent-Type: video/mp2t\nPixels: 5\n\nabc\n--XY--";
  seen_t s;
  memset(&s, 0, sizeof s);
  char err[128];
  assert_int_equal(pool_multipart_parse((const uint8_t *)body, strlen(body), "XY", 100, 4, collect,
                                        &s, err, sizeof err),
                   0);
  assert_int_equal(s.n, 1);
  assert_int_equal(s.pixels[0], 5);
  assert_int_equal(s.len[0], 3);
  /* "--XYZ" inside a body is not a delimiter. */
  const char *b2 = "--XY\r\nPixels: 1\r\n\r\nab\r\n--XYZ\r\ncd\r\n--XY--\r\n";
  memset(&s, 0, sizeof s);
  assert_int_equal(pool_multipart_parse((const uint8_t *)b2, strlen(b2), "XY", 100, 4, collect, &s,
                                        err, sizeof err),
                   0);
  assert_int_equal(s.n, 1);
  assert_int_equal(s.len[0], strlen("ab\r\n--XYZ\r\ncd"));
  /* Header line without a colon, and a Pixels value that is far too long. */
  const char *b3 = "--XY\r\nbogus\r\n\r\nab\r\n--XY--\r\n";
  assert_int_equal(pool_multipart_parse((const uint8_t *)b3, strlen(b3), "XY", 100, 4, collect, &s,
                                        err, sizeof err),
                   LP_EPROTO);
  const char *b4 = "--XY\r\nPixels: 123456789012345678901234567890123456789012\r\n\r\nab\r\n--XY--";
  memset(&s, 0, sizeof s);
  assert_int_equal(pool_multipart_parse((const uint8_t *)b4, strlen(b4), "XY", 100, 4, collect, &s,
                                        err, sizeof err),
                   0);
  assert_int_equal(s.pixels[0], -2);
}

/* Mutated bodies: any answer is fine as long as nothing reads out of bounds (ASan watches). */
static int count_only(const pool_part_t *p, void *arg) {
  size_t *sum = arg;
  for (size_t i = 0; i < p->len; i++) *sum += p->body[i];
  return 0;
}

static void test_multipart_mutations(void **state) {
  (void)state;
  lp_buf_t b = LP_BUF_INIT;
  build(&b, "BND");
  srand(7);
  char err[128];
  for (int iter = 0; iter < 3000; iter++) {
    size_t len = (size_t)rand() % (b.len + 1);
    uint8_t *m = malloc(len ? len : 1);
    memcpy(m, b.data, len);
    for (int k = 0; k < 4 && len; k++) m[(size_t)rand() % len] = (uint8_t) "-\r\nB:xP"[rand() % 7];
    size_t sum = 0;
    (void)pool_multipart_parse(m, len, "BND", 1 << 20, 16, count_only, &sum, err, sizeof err);
    free(m);
  }
  lp_buf_free(&b);
}

static void test_caps(void **state) {
  (void)state;
  uint64_t ours = 0x1007;
  uint64_t job_bits[2] = {0x1003, 0};
  Net__Capabilities job = NET__CAPABILITIES__INIT;
  job.n_bitstring = 1;
  job.bitstring = job_bits;
  assert_true(pool_caps_compatible(&job, &ours, 1, "0.9.1"));
  assert_true(pool_caps_compatible(NULL, &ours, 1, NULL));
  job_bits[0] = 0x4001003; /* segment slicing, which ours lacks */
  assert_false(pool_caps_compatible(&job, &ours, 1, "0.9.1"));
  job_bits[0] = 0x1003;
  job.n_bitstring = 2;
  assert_false(pool_caps_compatible(&job, &ours, 1, "0.9.1"));
  job.n_bitstring = 1;
  Net__Capabilities__Constraints c = NET__CAPABILITIES__CONSTRAINTS__INIT;
  c.minversion = "0.9.0";
  job.constraints = &c;
  assert_true(pool_caps_compatible(&job, &ours, 1, "0.9.1"));
  assert_true(pool_caps_compatible(&job, &ours, 1, "v0.9.0-rc1"));
  c.minversion = "0.10.0";
  assert_false(pool_caps_compatible(&job, &ours, 1, "0.9.1"));
  assert_false(pool_caps_compatible(&job, &ours, 1, ""));
  assert_false(pool_caps_compatible(&job, &ours, 1, NULL));
}

static void test_profiles(void **state) {
  (void)state;
  Net__VideoProfile a = NET__VIDEO_PROFILE__INIT, b = NET__VIDEO_PROFILE__INIT;
  a.width = 320;
  a.height = 240;
  a.bitrate = 400000;
  b.name = "P144";
  Net__VideoProfile *l1[] = {&a}, *l3[] = {&b};
  Net__SegData sd = NET__SEG_DATA__INIT;
  sd.n_fullprofiles = 1;
  sd.fullprofiles = l1;
  size_t n;
  assert_ptr_equal(pool_segdata_profiles(&sd, &n)[0], &a);
  sd.n_fullprofiles3 = 1;
  sd.fullprofiles3 = l3;
  assert_ptr_equal(pool_segdata_profiles(&sd, &n)[0], &b);
  media_profile_t p;
  const char *why = NULL;
  assert_int_equal(pool_profile_from_wire(&a, &p, &why), 0);
  assert_string_equal(p.name, "net_320x240_400000");
  a.encoder = 4; /* AV1, lpod's extension of the enum */
  assert_int_equal(pool_profile_from_wire(&a, &p, &why), 0);
  assert_int_equal(p.encoder, MEDIA_CODEC_AV1);
  a.encoder = 9;
  assert_int_equal(pool_profile_from_wire(&a, &p, &why), LP_EINVAL);
  assert_string_equal(why, "unrecognized video codec");
  a.encoder = 0;
  a.format = 5;
  assert_int_equal(pool_profile_from_wire(&a, &p, &why), LP_EINVAL);
  assert_string_equal(why, "unrecognized profile output format");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mime),
      cmocka_unit_test(test_i64),
      cmocka_unit_test(test_multipart_roundtrip),
      cmocka_unit_test(test_multipart_preamble_and_lf),
      cmocka_unit_test(test_multipart_mutations),
      cmocka_unit_test(test_caps),
      cmocka_unit_test(test_profiles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
