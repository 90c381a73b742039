/* /segment steps 1-5 and 8 (spec §4.2): every status and text, in go-livepeer's order, and the
 * three unary gRPC methods. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "helpers.h"
#include "lpod/pm.h"

static int fake_open(void *ctx, const char *sid, void **state) {
  *state = NULL;
  return 0;
}
static int fake_transcode(void *ctx, void *state, orch_job_t *job) { return 0; }
static void fake_close(void *ctx, void *state) {}
static const orch_engine_t fake_engine = {
    .open = fake_open, .transcode = fake_transcode, .close = fake_close};

typedef struct fixture {
  uv_loop_t loop;
  orch_core_t core;
  Net__SegData sd;
  Net__AuthToken tok;
  uint8_t tokbuf[ORCH_TOKEN_LEN];
  Net__VideoProfile vp;
  Net__VideoProfile *vps[1];
  uint8_t hash[32];
} fixture_t;

static int setup(void **st) {
  fixture_t *f = calloc(1, sizeof *f);
  uv_loop_init(&f->loop);
  th_core_init(&f->core, &f->loop, &fake_engine, 2, 0);
  net__seg_data__init(&f->sd);
  th_token(&f->core, &f->tok, f->tokbuf, "abcd0123", time(NULL) + 60);
  net__video_profile__init(&f->vp);
  f->vp.name = "P240p30fps16x9";
  f->vp.width = 426;
  f->vp.height = 240;
  f->vp.bitrate = 600000;
  f->vp.fps = 30;
  f->vps[0] = &f->vp;
  f->sd.n_fullprofiles = 1;
  f->sd.fullprofiles = f->vps;
  f->sd.auth_token = &f->tok;
  f->sd.manifestid.data = (uint8_t *)"m";
  f->sd.manifestid.len = 1;
  pm_keccak256("body", 4, f->hash);
  f->sd.hash.data = f->hash;
  f->sd.hash.len = 32;
  *st = f;
  return 0;
}

static int teardown(void **st) {
  fixture_t *f = *st;
  th_core_deinit(&f->core);
  uv_loop_close(&f->loop);
  free(f);
  return 0;
}

/* Runs the checks with the fixture's SegData and the given payment header. */
static int check(fixture_t *f, const char *pay, orch_http_err_t *e) {
  char *seg = th_seg_header(&f->sd);
  orch_seg_req_t r;
  int rc = orch_seg_check(&f->core, seg, strlen(seg), pay, pay ? strlen(pay) : 0, &r, e);
  orch_seg_req_free(&r);
  free(seg);
  return rc;
}

static void expect(fixture_t *f, const char *pay, int status, const char *text) {
  orch_http_err_t e;
  int rc = check(f, pay, &e);
  assert_int_equal(e.status, status);
  assert_string_equal(e.text, text);
  if (status)
    assert_int_not_equal(rc, 0);
  else
    assert_int_equal(rc, 0);
}

static void test_ok(void **st) {
  fixture_t *f = *st;
  expect(f, "", 0, "");
  expect(f, NULL, 0, "");
  orch_http_err_t e;
  char *seg = th_seg_header(&f->sd);
  orch_seg_req_t r;
  assert_int_equal(orch_seg_check(&f->core, seg, strlen(seg), "", 0, &r, &e), 0);
  assert_string_equal(r.session_id, "abcd0123");
  assert_int_equal(r.duration_ms, 2000);
  assert_int_equal(r.n_profiles, 1);
  /* The refreshed info carries the service URI and the token B sent. */
  Net__OrchestratorInfo *info = net__orchestrator_info__unpack(NULL, r.info_len, r.info);
  assert_non_null(info);
  assert_string_equal(info->transcoder, "https://127.0.0.1:8935");
  assert_non_null(info->auth_token);
  assert_string_equal(info->auth_token->session_id, "abcd0123");
  assert_memory_equal(info->auth_token->token.data, f->tokbuf, ORCH_TOKEN_LEN);
  assert_null(info->price_info);
  assert_null(info->ticket_params);
  assert_int_equal(info->address.len, 20);
  net__orchestrator_info__free_unpacked(info, NULL);
  /* Step 8 */
  assert_int_equal(orch_seg_check_hash(&r, (const uint8_t *)"body", 4, &e), 0);
  assert_int_equal(orch_seg_check_hash(&r, (const uint8_t *)"bodY", 4, &e), LP_EPERM);
  assert_int_equal(e.status, 403);
  assert_string_equal(e.text, "Forbidden");
  orch_seg_req_free(&r);
  free(seg);
}

static void test_payment_errors(void **st) {
  fixture_t *f = *st;
  expect(f, "abc", 402, "base64 decode error: illegal base64 data at input byte 0");
  expect(f, "!!!!", 402, "base64 decode error: illegal base64 data at input byte 0");
  /* 0xff 0xff is a truncated varint tag */
  expect(f, "//8=", 402, "protobuf unmarshal error: proto: cannot parse invalid wire-format data");
  /* A payment error wins over a bad segment header: it is checked first. */
  orch_http_err_t e;
  orch_seg_req_t r;
  orch_seg_check(&f->core, "%%%", 3, "abc", 3, &r, &e);
  assert_int_equal(e.status, 402);
  orch_seg_req_free(&r);
}

static void test_segment_errors(void **st) {
  fixture_t *f = *st;
  orch_http_err_t e;
  orch_seg_req_t r;
  orch_seg_check(&f->core, "%%%", 3, "", 0, &r, &e);
  assert_int_equal(e.status, 403);
  assert_string_equal(e.text, "ErrorSegEncoding");
  orch_seg_req_free(&r);
  orch_seg_check(&f->core, "//8=", 4, "", 0, &r, &e);
  assert_int_equal(e.status, 403);
  assert_string_equal(e.text, "proto: cannot parse invalid wire-format data");
  orch_seg_req_free(&r);
  /* An absent header is an empty SegData: it gets as far as the token. */
  orch_seg_check(&f->core, NULL, 0, "", 0, &r, &e);
  assert_int_equal(e.status, 403);
  assert_string_equal(e.text, "missing auth token");
  orch_seg_req_free(&r);

  f->vp.encoder = 7;
  expect(f, "", 403, "unrecognized video codec");
  f->vp.encoder = 0;
  /* AV1 (4), lpod's extension of the enum, passes the profile check: the next check answers */
  int64_t dur = f->sd.duration;
  f->vp.encoder = 4;
  f->sd.duration = -1;
  expect(f, "", 403, "invalid duration");
  f->vp.encoder = 0;
  f->sd.duration = dur;
  /* profiles are parsed before the duration is checked */
  f->vp.format = 3;
  f->sd.duration = -1;
  expect(f, "", 403, "unrecognized profile output format");
  f->vp.format = 0;
  expect(f, "", 403, "invalid duration");
  f->sd.duration = 300001;
  expect(f, "", 403, "invalid duration");
  f->sd.duration = 300000;
  expect(f, "", 0, "");
  f->sd.duration = 0;

  Net__Capabilities caps = NET__CAPABILITIES__INIT;
  uint64_t bits = (1u << 12) | (1u << 14);
  caps.n_bitstring = 1;
  caps.bitstring = &bits;
  f->sd.capabilities = &caps;
  expect(f, "", 403, "incompatible capabilities");
  bits = (1u << 12) | 3;
  expect(f, "", 0, "");
  f->sd.capabilities = NULL;

  /* token checks: missing, wrong HMAC, expired (a valid HMAC over a past expiration) */
  f->sd.auth_token = NULL;
  expect(f, "", 403, "missing auth token");
  f->sd.auth_token = &f->tok;
  f->tokbuf[0] ^= 1;
  expect(f, "", 403, "invalid auth token");
  f->tokbuf[0] ^= 1;
  Net__AuthToken old;
  uint8_t oldbuf[ORCH_TOKEN_LEN];
  th_token(&f->core, &old, oldbuf, "abcd0123", time(NULL) - 5);
  f->sd.auth_token = &old;
  expect(f, "", 403, "expired auth token");
  /* an expired token that also fails the HMAC reports the HMAC first */
  oldbuf[3] ^= 0x10;
  expect(f, "", 403, "invalid auth token");
  f->sd.auth_token = &f->tok;
}

static uint8_t **fake_seen;

/* A signature check that fails, to see where go-livepeer checks it (after the duration). */
static bool reject_sig(void *ctx, const uint8_t addr[20], const void *msg, size_t len,
                       const uint8_t *sig, size_t sig_len) {
  return false;
}

static int refuse_payment(void *ctx, const Net__Payment *p, const uint8_t sender[20],
                          const char *sid, char *err, size_t errlen) {
  snprintf(err, errlen, "invalid ticket sender");
  return LP_EPERM;
}

static bool no_balance(void *ctx, const Net__Payment *p, const uint8_t sender[20],
                       const char *sid) {
  return false;
}

static int fail_info(void *ctx, const uint8_t sender[20], const char *sid,
                     Net__OrchestratorInfo *info) {
  return LP_EIO;
}

/* What the seam puts in the info is allocated as protobuf-c's unpack would, and freed by orch. */
static int price_info(void *ctx, const uint8_t sender[20], const char *sid,
                      Net__OrchestratorInfo *info) {
  info->price_info = malloc(sizeof *info->price_info);
  net__price_info__init(info->price_info);
  info->price_info->priceperunit = 1200;
  info->price_info->pixelsperunit = 1;
  return 0;
}

static void test_seam_fills_info(void **st) {
  fixture_t *f = *st;
  f->core.pay.fill_info = price_info;
  char *seg = th_seg_header(&f->sd);
  orch_seg_req_t r;
  orch_http_err_t e;
  assert_int_equal(orch_seg_check(&f->core, seg, strlen(seg), "", 0, &r, &e), 0);
  Net__OrchestratorInfo *info = net__orchestrator_info__unpack(NULL, r.info_len, r.info);
  assert_non_null(info);
  assert_non_null(info->price_info);
  assert_int_equal(info->price_info->priceperunit, 1200);
  assert_int_equal(info->price_info->pixelsperunit, 1);
  net__orchestrator_info__free_unpacked(info, NULL);
  orch_seg_req_free(&r);
  free(seg);
}

static void test_payment_seam_order(void **st) {
  fixture_t *f = *st;
  orch_payments_t saved = f->core.pay;
  f->core.pay.verify_sig = reject_sig;
  expect(f, "", 403, "ErrSegSig");
  f->sd.duration = -5;
  expect(f, "", 403, "invalid duration");
  f->sd.duration = 0;
  f->core.pay = saved;

  f->core.pay.fill_info = fail_info;
  expect(f, "", 500, "Internal Server Error");
  f->core.pay = saved;

  f->core.pay.process_payment = refuse_payment;
  expect(f, "", 400, "invalid ticket sender");
  f->core.pay = saved;

  /* The balance gate applies only when the payment names a price. */
  f->core.pay.sufficient_balance = no_balance;
  expect(f, "", 0, "");
  Net__Payment pay = NET__PAYMENT__INIT;
  Net__PriceInfo price = NET__PRICE_INFO__INIT;
  price.priceperunit = 1;
  price.pixelsperunit = 1;
  pay.expected_price = &price;
  uint8_t sender[20];
  memset(sender, 0xab, sizeof sender);
  pay.sender.data = sender;
  pay.sender.len = 20;
  uint8_t raw[128];
  size_t n = net__payment__pack(&pay, raw);
  char *hdr = orch_b64_encode(raw, n);
  expect(f, hdr, 400, "Insufficient balance");
  char *seg = th_seg_header(&f->sd);
  orch_seg_req_t r;
  orch_http_err_t e;
  orch_seg_check(&f->core, seg, strlen(seg), hdr, strlen(hdr), &r, &e);
  assert_memory_equal(r.sender, sender, 20);
  orch_seg_req_free(&r);
  free(seg);
  free(hdr);
  f->core.pay = saved;
  (void)fake_seen;
}

static int capped_jobs_done;
static void job_done(orch_job_t *job, void *arg) { capped_jobs_done++; }

static void test_capacity(void **st) {
  fixture_t *f = *st;
  orch_profile_t prof = {.name = "p"};
  orch_job_t jobs[2];
  const char *ids[2] = {"s1", "s2"};
  for (int i = 0; i < 2; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    strcpy(jobs[i].session_id, ids[i]);
    jobs[i].profiles = &prof;
    jobs[i].done = job_done;
    assert_int_equal(orch_sessions_submit(f->core.sessions, &jobs[i]), 0);
  }
  /* max 2: a third session is capped, the existing ones still pass */
  expect(f, "", 403, "OrchestratorCapped");
  Net__AuthToken t1;
  uint8_t b1[ORCH_TOKEN_LEN];
  th_token(&f->core, &t1, b1, "s1", time(NULL) + 60);
  f->sd.auth_token = &t1;
  expect(f, "", 0, "");
  f->sd.auth_token = &f->tok;

  Net__OrchestratorRequest req = NET__ORCHESTRATOR_REQUEST__INIT;
  uint8_t *out = NULL;
  size_t out_len;
  char err[256];
  assert_int_equal(orch_get_orchestrator(&f->core, &req, &out, &out_len, err, sizeof err),
                   LP_ECAPACITY);
  assert_string_equal(err, "Invalid orchestrator request: OrchestratorCapped");
  while (capped_jobs_done < 2) uv_run(&f->loop, UV_RUN_ONCE);
  orch_sessions_end(f->core.sessions, "s2");
  assert_int_equal(orch_get_orchestrator(&f->core, &req, &out, &out_len, err, sizeof err), 0);
  free(out);
  expect(f, "", 0, "");
}

static void test_grpc_methods(void **st) {
  fixture_t *f = *st;
  Net__OrchestratorRequest req = NET__ORCHESTRATOR_REQUEST__INIT;
  uint8_t zero[20] = {0};
  req.address.data = zero;
  req.address.len = 20;
  uint8_t *out = NULL;
  size_t out_len;
  char err[256];
  time_t now = time(NULL);
  assert_int_equal(orch_get_orchestrator(&f->core, &req, &out, &out_len, err, sizeof err), 0);
  Net__OrchestratorInfo *info = net__orchestrator_info__unpack(NULL, out_len, out);
  free(out);
  assert_non_null(info);
  assert_string_equal(info->transcoder, "https://127.0.0.1:8935");
  assert_int_equal(info->address.len, 20);
  assert_memory_equal(info->address.data, zero, 20);
  assert_non_null(info->capabilities);
  assert_string_equal(info->capabilities->version, "0.9.1");
  assert_int_equal(info->capabilities->n_mandatories, 0);
  assert_non_null(info->auth_token);
  assert_int_equal(strlen(info->auth_token->session_id), 8);
  assert_true(info->auth_token->expiration >= now + 1800 &&
              info->auth_token->expiration <= now + 1801 + 5);
  assert_true(orch_token_verify(f->core.token_key, info->auth_token));
  assert_null(info->price_info);
  assert_null(info->ticket_params);

  /* The token works for a segment. */
  f->sd.auth_token = info->auth_token;
  expect(f, "", 0, "");
  f->sd.auth_token = &f->tok;

  /* A bad signature when the seam says so. */
  orch_payments_t saved = f->core.pay;
  f->core.pay.verify_sig = reject_sig;
  assert_int_equal(orch_get_orchestrator(&f->core, &req, &out, &out_len, err, sizeof err),
                   LP_EPERM);
  assert_string_equal(err, "Invalid orchestrator request: orchestrator req sig check failed");
  f->core.pay = saved;

  /* EndTranscodingSession */
  Net__EndTranscodingSessionRequest end = NET__END_TRANSCODING_SESSION_REQUEST__INIT;
  assert_int_equal(orch_end_session(&f->core, &end, err, sizeof err), LP_EINVAL);
  assert_string_equal(err, "missing auth token");
  Net__AuthToken bad = *info->auth_token;
  uint8_t badtok[ORCH_TOKEN_LEN];
  memcpy(badtok, bad.token.data, sizeof badtok);
  badtok[0] ^= 1;
  bad.token.data = badtok;
  end.auth_token = &bad;
  assert_int_equal(orch_end_session(&f->core, &end, err, sizeof err), LP_EPERM);
  assert_string_equal(err, "Invalid auth token");
  end.auth_token = info->auth_token;
  assert_int_equal(orch_end_session(&f->core, &end, err, sizeof err), 0);
  net__orchestrator_info__free_unpacked(info, NULL);

  /* Ping offchain: an empty signature. */
  Net__PingPong ping = NET__PING_PONG__INIT;
  uint8_t v[3] = {1, 2, 3};
  ping.value.data = v;
  ping.value.len = 3;
  assert_int_equal(orch_ping(&f->core, &ping, &out, &out_len), 0);
  Net__PingPong *pong = net__ping_pong__unpack(NULL, out_len, out);
  assert_non_null(pong);
  assert_int_equal(pong->value.len, 0);
  net__ping_pong__free_unpacked(pong, NULL);
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ok, setup, teardown),
      cmocka_unit_test_setup_teardown(test_payment_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_segment_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_payment_seam_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_seam_fills_info, setup, teardown),
      cmocka_unit_test_setup_teardown(test_capacity, setup, teardown),
      cmocka_unit_test_setup_teardown(test_grpc_methods, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
