/* Wire-level pieces: base64 as Go does it, field numbers, tokens, Flatten, capabilities. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"
#include "lpod/pm.h"

static void expect_b64_error(const char *in, const char *want) {
  uint8_t *out = NULL;
  size_t n = 0;
  char err[128] = "";
  assert_int_equal(orch_b64_decode(in, strlen(in), &out, &n, err, sizeof err), LP_EINVAL);
  assert_string_equal(err, want);
  assert_null(out);
}

static void expect_b64(const char *in, const char *want) {
  uint8_t *out = NULL;
  size_t n = 0;
  char err[128] = "";
  assert_int_equal(orch_b64_decode(in, strlen(in), &out, &n, err, sizeof err), 0);
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
  free(out);
}

static void test_b64(void **st) {
  expect_b64("", "");
  expect_b64("YQ==", "a");
  expect_b64("YWI=", "ab");
  expect_b64("YWJj", "abc");
  expect_b64("YWJj\r\nZGVm", "abcdef");
  expect_b64_error("abc", "illegal base64 data at input byte 0");
  expect_b64_error("YWJjZA", "illegal base64 data at input byte 4");
  expect_b64_error("ab!d", "illegal base64 data at input byte 2");
  expect_b64_error("a===", "illegal base64 data at input byte 1");
  expect_b64_error("ab=d", "illegal base64 data at input byte 2");
  expect_b64_error("ab=", "illegal base64 data at input byte 3");
  expect_b64_error("YQ==YQ==", "illegal base64 data at input byte 4");
  expect_b64_error("YWJj-A==", "illegal base64 data at input byte 4");
  for (size_t len = 0; len < 40; len++) {
    uint8_t in[40];
    for (size_t i = 0; i < len; i++) in[i] = (uint8_t)(i * 37 + len);
    char *enc = orch_b64_encode(in, len);
    uint8_t *dec = NULL;
    size_t n = 0;
    char err[64];
    assert_int_equal(orch_b64_decode(enc, strlen(enc), &dec, &n, err, sizeof err), 0);
    assert_int_equal(n, len);
    if (len) assert_memory_equal(dec, in, len);
    free(enc);
    free(dec);
  }
}

static void expect_packed(const ProtobufCMessage *m, const char *hex) {
  uint8_t buf[256], want[256];
  size_t n = protobuf_c_message_pack(m, buf);
  int wn = lp_hex_decode(hex, want, sizeof want);
  assert_int_equal((int)n, wn);
  assert_memory_equal(buf, want, n);
}

/* Field numbers from spec/protocol.md §2.1, checked on the bytes. */
static void test_field_numbers(void **st) {
  Net__VideoProfile vp = NET__VIDEO_PROFILE__INIT;
  vp.name = "a";
  vp.width = 1;
  vp.fps = 2;
  vp.format = NET__VIDEO_PROFILE__FORMAT__MP4;
  vp.quality = 3;
  /* 16 name, 17 width, 20 fps, 21 format, 28 quality */
  expect_packed(&vp.base, "82010161"
                          "880101"
                          "a00102"
                          "a80101"
                          "e00103");

  Net__TranscodeResult tr = NET__TRANSCODE_RESULT__INIT;
  tr.seq = 1;
  tr.result_case = NET__TRANSCODE_RESULT__RESULT_ERROR;
  tr.error = "x";
  expect_packed(&tr.base, "0801120178");

  Net__AuthToken at = NET__AUTH_TOKEN__INIT;
  at.session_id = "s";
  at.expiration = 5;
  Net__OrchestratorInfo oi = NET__ORCHESTRATOR_INFO__INIT;
  oi.transcoder = "t";
  oi.auth_token = &at;
  expect_packed(&oi.base, "0a0174320512017318"
                          "05");

  Net__SegData sd = NET__SEG_DATA__INIT;
  Net__VideoProfile *vps[1] = {&vp};
  sd.seq = 2;
  sd.duration = 4;
  sd.n_fullprofiles3 = 1;
  sd.fullprofiles3 = vps;
  vp.width = 0;
  vp.fps = 0;
  vp.format = 0;
  vp.quality = 0;
  /* 2 seq, 6 duration, 35 fullProfiles3 */
  expect_packed(&sd.base, "10023004"
                          "9a0204820101"
                          "61");

  Net__PingPong pp = NET__PING_PONG__INIT;
  uint8_t v = 9;
  pp.value.data = &v;
  pp.value.len = 1;
  expect_packed(&pp.base, "0a0109");

  Net__TranscodedSegmentData seg = NET__TRANSCODED_SEGMENT_DATA__INIT;
  seg.url = "u";
  seg.pixels = 7;
  expect_packed(&seg.base, "0a01751007");
}

static void test_token_vector(void **st) {
  uint8_t key[32] = {0}, out[32], want[32];
  assert_int_equal(orch_token_compute(key, "1a2b3c4d", 1700000000, out), 0);
  lp_hex_decode("bc86e7dd5131eec0b10909eec5c2e73bfe45981750dbfa76a57310d8279ce29c", want, 32);
  assert_memory_equal(out, want, 32);

  Net__AuthToken t = NET__AUTH_TOKEN__INIT;
  t.session_id = "1a2b3c4d";
  t.expiration = 1700000000;
  t.token.data = out;
  t.token.len = 32;
  assert_true(orch_token_verify(key, &t));
  t.expiration++;
  assert_false(orch_token_verify(key, &t));
  t.expiration--;
  t.token.len = 31;
  assert_false(orch_token_verify(key, &t));

  char a[9], b[9];
  assert_int_equal(orch_session_id_new(a), 0);
  assert_int_equal(orch_session_id_new(b), 0);
  assert_int_equal(strlen(a), 8);
  assert_true(strspn(a, "0123456789abcdef") == 8);
  assert_string_not_equal(a, b);
}

static Net__VideoProfile preset(const char *name, int w, int h, int br) {
  Net__VideoProfile p = NET__VIDEO_PROFILE__INIT;
  p.name = (char *)name;
  p.width = w;
  p.height = h;
  p.bitrate = br;
  p.fps = 30;
  return p;
}

static void test_flatten_vector(void **st) {
  Net__VideoProfile p240 = preset("P240p30fps16x9", 426, 240, 600000);
  Net__VideoProfile p360 = preset("P360p30fps16x9", 640, 360, 1200000);
  Net__VideoProfile *ps[2] = {&p240, &p360};
  uint8_t hash[32], want[32];
  pm_keccak256("hello", 5, hash);
  lp_hex_decode("1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8", want, 32);
  assert_memory_equal(hash, want, 32);

  Net__SegData sd = NET__SEG_DATA__INIT;
  sd.manifestid.data = (uint8_t *)"abcd";
  sd.manifestid.len = 4;
  sd.seq = 3;
  sd.hash.data = hash;
  sd.hash.len = 32;
  sd.n_fullprofiles = 2;
  sd.fullprofiles = ps;
  orch_profile_t *prof;
  size_t n;
  const char *err;
  assert_int_equal(orch_profiles_parse(&sd, &prof, &n, &err), 0);
  assert_int_equal(n, 2);
  uint8_t *flat;
  size_t flat_len;
  assert_int_equal(orch_seg_flatten(&sd, prof, n, &flat, &flat_len), 0);
  assert_int_equal(flat_len, 4 + 32 + 32 + 16);
  assert_memory_equal(flat + flat_len - 16, "c0a6517a93c717e7", 16);
  pm_keccak256(flat, flat_len, hash);
  lp_hex_decode("2b6e13a4ccfb9e5337e35cc2b61a26e44d8ce675bed95f47e371b1970345d566", want, 32);
  assert_memory_equal(hash, want, 32);
  free(flat);
  orch_profiles_free(prof, n);
}

static void test_profiles(void **st) {
  Net__VideoProfile a = preset("", 426, 240, 600000);
  Net__VideoProfile b = preset("x", 1, 1, 1);
  Net__VideoProfile *ps1[1] = {&a}, *ps3[1] = {&b};
  Net__SegData sd = NET__SEG_DATA__INIT;
  sd.n_fullprofiles = 1;
  sd.fullprofiles = ps1;
  sd.n_fullprofiles3 = 1;
  sd.fullprofiles3 = ps3;
  orch_profile_t *p;
  size_t n;
  const char *err;
  /* fullProfiles3 wins over fullProfiles */
  assert_int_equal(orch_profiles_parse(&sd, &p, &n, &err), 0);
  assert_string_equal(p[0].name, "x");
  orch_profiles_free(p, n);
  sd.n_fullprofiles3 = 0;
  assert_int_equal(orch_profiles_parse(&sd, &p, &n, &err), 0);
  assert_string_equal(p[0].name, "net_426x240_600000");
  assert_string_equal(orch_profile_ext(&p[0]), ".ts");
  orch_profiles_free(p, n);

  /* Unknown enum values survive the wire (proto3 enums are open) and are refused by name. */
  struct {
    int field;
    const char *why;
  } cases[] = {{21, "unrecognized profile output format"},
               {23, "unrecognized encoder profile"},
               {25, "unrecognized video codec"}};
  for (size_t i = 0; i < LP_ARRAY_LEN(cases); i++) {
    /* SegData{fullProfiles: [VideoProfile{<field>: 9}]} */
    uint8_t raw[] = {0x8a, 0x02, 0x02, (uint8_t)(cases[i].field << 3), 0x09};
    raw[3] = (uint8_t)((cases[i].field << 3) & 0x7f) | 0x80;
    uint8_t raw2[] = {0x8a, 0x02, 0x03, raw[3], 0x01, 0x09};
    Net__SegData *u = net__seg_data__unpack(NULL, sizeof raw2, raw2);
    assert_non_null(u);
    assert_int_equal(orch_profiles_parse(u, &p, &n, &err), LP_EINVAL);
    assert_string_equal(err, cases[i].why);
    net__seg_data__free_unpacked(u, NULL);
  }
}

static void test_caps(void **st) {
  orch_caps_t ours;
  memset(&ours, 0, sizeof ours);
  for (int c = 0; c <= 12; c++) orch_caps_set(&ours, c);
  strcpy(ours.version, "0.9.1");
  assert_true(orch_caps_job_compatible(NULL, &ours));

  Net__Capabilities job = NET__CAPABILITIES__INIT;
  uint64_t bits[2] = {0x1003, 0};
  job.n_bitstring = 1;
  job.bitstring = bits;
  assert_true(orch_caps_job_compatible(&job, &ours));
  bits[0] |= 1u << 14;
  assert_false(orch_caps_job_compatible(&job, &ours));
  bits[0] = 0x1003;
  job.n_bitstring = 2;
  assert_false(orch_caps_job_compatible(&job, &ours));
  job.n_bitstring = 1;

  Net__Capabilities__Constraints cons = NET__CAPABILITIES__CONSTRAINTS__INIT;
  job.constraints = &cons;
  const char *ok[] = {"0.9.0", "0.9.1", "v0.9.1-foo", "0.9", "0"};
  const char *bad[] = {"0.10.0", "1.0.0", "0.9.2", "nonsense"};
  for (size_t i = 0; i < LP_ARRAY_LEN(ok); i++) {
    cons.minversion = (char *)ok[i];
    assert_true(orch_caps_job_compatible(&job, &ours));
  }
  for (size_t i = 0; i < LP_ARRAY_LEN(bad); i++) {
    cons.minversion = (char *)bad[i];
    assert_false(orch_caps_job_compatible(&job, &ours));
  }
  strcpy(ours.version, "undefined");
  cons.minversion = "0.1.0";
  assert_false(orch_caps_job_compatible(&job, &ours));

  Net__Capabilities w;
  orch_caps_wire_t scratch;
  strcpy(ours.version, "0.9.1");
  orch_caps_to_wire(&ours, &w, &scratch);
  assert_int_equal(w.n_bitstring, 1);
  assert_int_equal(w.bitstring[0], 0x1fff);
  assert_int_equal(w.n_mandatories, 0);
  assert_int_equal(w.n_capacities, 13);
  assert_string_equal(w.version, "0.9.1");

  /* lpod's AV1 numbers (word 15): 16 words on the wire, and a job's word 15 is checked. */
  orch_caps_set(&ours, 961);
  assert_true(orch_caps_has(&ours, 961));
  assert_false(orch_caps_has(&ours, 960));
  assert_int_equal(orch_caps_words(&ours), 16);
  orch_caps_to_wire(&ours, &w, &scratch);
  assert_int_equal(w.n_bitstring, 16);
  assert_int_equal(w.bitstring[0], 0x1fff);
  assert_int_equal(w.bitstring[15], 2);
  assert_int_equal(w.n_capacities, 14);
  assert_int_equal(w.capacities[13]->key, 961);
  uint64_t wide[17] = {0x1003};
  job.constraints = NULL;
  job.bitstring = wide;
  job.n_bitstring = 16;
  assert_true(orch_caps_job_compatible(&job, &ours));
  wide[15] = 2; /* AV1 encode: ours */
  assert_true(orch_caps_job_compatible(&job, &ours));
  wide[15] = 3; /* and AV1 decode: not ours */
  assert_false(orch_caps_job_compatible(&job, &ours));
  wide[15] = 2;
  job.n_bitstring = 17; /* more words than we advertise */
  assert_false(orch_caps_job_compatible(&job, &ours));
}

static void test_service_uri(void **st) {
  char *u = orch_service_uri("127.0.0.1:8935");
  assert_string_equal(u, "https://127.0.0.1:8935");
  free(u);
  u = orch_service_uri("http://o.example:1234/");
  assert_string_equal(u, "http://o.example:1234");
  free(u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_b64),          cmocka_unit_test(test_field_numbers),
      cmocka_unit_test(test_token_vector), cmocka_unit_test(test_flatten_vector),
      cmocka_unit_test(test_profiles),     cmocka_unit_test(test_caps),
      cmocka_unit_test(test_service_uri),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
