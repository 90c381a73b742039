/* /segment steps 1-5 and 8 of spec §4.2: each failure with go-livepeer's status and text, in
 * its order, because gateways act on the exact text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lpod/pm.h"
#include "orch_int.h"

/* What golang/protobuf says for any wire-format error; protobuf-c does not tell them apart. */
#define PROTO_PARSE_ERR "proto: cannot parse invalid wire-format data"
/* go-livepeer's common.MaxDuration. */
#define MAX_SEG_DURATION_MS (5 * 60 * 1000)

static void set_err(orch_http_err_t *e, int status, const char *fmt, const char *arg) {
  e->status = status;
  snprintf(e->text, sizeof e->text, fmt, arg);
}

void orch_profiles_free(orch_profile_t *p, size_t n) {
  if (!p) return;
  for (size_t i = 0; i < n; i++) free(p[i].name);
  free(p);
}

const char *orch_profile_ext(const orch_profile_t *p) {
  return p->format == ORCH_FMT_MP4 ? ".mp4" : ".ts";
}

int orch_profiles_parse(const Net__SegData *sd, orch_profile_t **out, size_t *n, const char **err) {
  Net__VideoProfile **src = sd->fullprofiles3;
  size_t cnt = sd->n_fullprofiles3;
  if (!cnt) {
    src = sd->fullprofiles2;
    cnt = sd->n_fullprofiles2;
  }
  if (!cnt) {
    src = sd->fullprofiles;
    cnt = sd->n_fullprofiles;
  }
  *out = NULL;
  *n = 0;
  *err = NULL;
  if (!cnt) return 0;
  orch_profile_t *p = calloc(cnt, sizeof *p);
  if (!p) return LP_ENOMEM;
  for (size_t i = 0; i < cnt; i++) {
    const Net__VideoProfile *v = src[i];
    orch_profile_t *o = &p[i];
    if (v->format != NET__VIDEO_PROFILE__FORMAT__MPEGTS &&
        v->format != NET__VIDEO_PROFILE__FORMAT__MP4) {
      *err = "unrecognized profile output format";
    } else if ((int)v->profile < 0 || (int)v->profile > 4) {
      *err = "unrecognized encoder profile";
    } else if ((int)v->encoder < 0 || (int)v->encoder > 4) { /* 4: AV1, lpod's extension */
      *err = "unrecognized video codec";
    }
    if (*err) {
      orch_profiles_free(p, i);
      return LP_EINVAL;
    }
    if (v->name && v->name[0]) {
      o->name = strdup(v->name);
    } else {
      char buf[64];
      snprintf(buf, sizeof buf, "net_%dx%d_%d", v->width, v->height, v->bitrate);
      o->name = strdup(buf);
    }
    if (!o->name) {
      orch_profiles_free(p, i);
      return LP_ENOMEM;
    }
    o->width = v->width;
    o->height = v->height;
    o->bitrate = v->bitrate;
    o->fps = v->fps;
    o->fps_den = v->fpsden;
    o->format = v->format == NET__VIDEO_PROFILE__FORMAT__MP4 ? ORCH_FMT_MP4 : ORCH_FMT_MPEGTS;
    o->profile = (int)v->profile;
    o->gop = v->gop;
    o->encoder = (int)v->encoder;
    o->color_depth = v->colordepth;
    o->chroma_format = (int)v->chromaformat;
    o->quality = v->quality;
  }
  *out = p;
  *n = cnt;
  return 0;
}

int orch_seg_flatten(const Net__SegData *sd, const orch_profile_t *p, size_t n, uint8_t **out,
                     size_t *out_len) {
  lp_buf_t b = LP_BUF_INIT;
  uint8_t seq[32] = {0};
  uint64_t mag = sd->seq < 0 ? (uint64_t)0 - (uint64_t)sd->seq : (uint64_t)sd->seq;
  for (int i = 0; i < 8; i++) seq[31 - i] = (uint8_t)(mag >> (8 * i));
  uint8_t hash[32];
  pm_bytes_to_fixed(sd->hash.data, sd->hash.len, hash, sizeof hash);
  int rc = lp_buf_append(&b, sd->manifestid.data, sd->manifestid.len);
  if (!rc) rc = lp_buf_append(&b, seq, sizeof seq);
  if (!rc) rc = lp_buf_append(&b, hash, sizeof hash);
  for (size_t i = 0; i < n && !rc; i++) {
    uint8_t h[PM_HASH_LEN];
    char hex[9];
    pm_keccak256(p[i].name, strlen(p[i].name), h);
    lp_hex_encode(h, 4, hex);
    rc = lp_buf_append(&b, hex, 8);
  }
  if (rc) {
    lp_buf_free(&b);
    return rc;
  }
  *out = lp_buf_steal(&b, out_len);
  return 0;
}

void orch_seg_req_free(orch_seg_req_t *r) {
  if (r->sd) net__seg_data__free_unpacked(r->sd, NULL);
  if (r->payment) net__payment__free_unpacked(r->payment, NULL);
  orch_profiles_free(r->profiles, r->n_profiles);
  free(r->info);
  memset(r, 0, sizeof *r);
}

static int decode_payment(const char *hdr, size_t len, orch_seg_req_t *r, orch_http_err_t *e) {
  char b64err[96];
  uint8_t *raw = NULL;
  size_t raw_len = 0;
  if (orch_b64_decode(hdr ? hdr : "", hdr ? len : 0, &raw, &raw_len, b64err, sizeof b64err)) {
    set_err(e, 402, "base64 decode error: %s", b64err);
    return LP_EINVAL;
  }
  r->payment = net__payment__unpack(NULL, raw_len, raw);
  free(raw);
  if (!r->payment) {
    set_err(e, 402, "protobuf unmarshal error: %s", PROTO_PARSE_ERR);
    return LP_EINVAL;
  }
  pm_bytes_to_fixed(r->payment->sender.data, r->payment->sender.len, r->sender, 20);
  return 0;
}

static int check_seg_creds(orch_core_t *c, const char *hdr, size_t len, orch_seg_req_t *r,
                           orch_http_err_t *e) {
  char b64err[96];
  uint8_t *raw = NULL;
  size_t raw_len = 0;
  if (orch_b64_decode(hdr ? hdr : "", hdr ? len : 0, &raw, &raw_len, b64err, sizeof b64err)) {
    set_err(e, 403, "%s", "ErrorSegEncoding");
    return LP_EINVAL;
  }
  r->sd = net__seg_data__unpack(NULL, raw_len, raw);
  free(raw);
  if (!r->sd) {
    set_err(e, 403, "%s", PROTO_PARSE_ERR);
    return LP_EINVAL;
  }
  const char *perr = NULL;
  int rc = orch_profiles_parse(r->sd, &r->profiles, &r->n_profiles, &perr);
  if (rc) {
    set_err(e, rc == LP_ENOMEM ? 500 : 403, "%s", perr ? perr : "Internal Server Error");
    return rc;
  }
  if (r->sd->duration < 0 || r->sd->duration > MAX_SEG_DURATION_MS) {
    set_err(e, 403, "%s", "invalid duration");
    return LP_EINVAL;
  }
  r->duration_ms = r->sd->duration ? r->sd->duration : 2000;

  uint8_t *flat = NULL;
  size_t flat_len = 0;
  if (orch_seg_flatten(r->sd, r->profiles, r->n_profiles, &flat, &flat_len)) {
    set_err(e, 500, "%s", "Internal Server Error");
    return LP_ENOMEM;
  }
  bool sig_ok =
      c->pay.verify_sig(c->pay.ctx, r->sender, flat, flat_len, r->sd->sig.data, r->sd->sig.len);
  free(flat);
  if (!sig_ok) {
    set_err(e, 403, "%s", "ErrSegSig");
    return LP_EPERM;
  }
  if (!orch_caps_job_compatible(r->sd->capabilities, &c->caps)) {
    set_err(e, 403, "%s", "incompatible capabilities");
    return LP_EPERM;
  }
  const Net__AuthToken *t = r->sd->auth_token;
  if (!t) {
    set_err(e, 403, "%s", "missing auth token");
    return LP_EPERM;
  }
  if (!orch_token_verify(c->token_key, t)) {
    set_err(e, 403, "%s", "invalid auth token");
    return LP_EPERM;
  }
  if ((int64_t)time(NULL) > t->expiration) {
    set_err(e, 403, "%s", "expired auth token");
    return LP_EPERM;
  }
  r->session_id = t->session_id;
  if (c->stopping || orch_sessions_check_capacity(c->sessions, t->session_id) ||
      (!orch_sessions_exists(c->sessions, t->session_id) &&
       orch_core_no_room(c, r->session_id, r->profiles, r->n_profiles, r->sd->capabilities,
                         &r->held))) {
    set_err(e, 403, "%s", "OrchestratorCapped");
    return LP_ECAPACITY;
  }
  return 0;
}

int orch_seg_check(orch_core_t *c, const char *seg_hdr, size_t seg_len, const char *pay_hdr,
                   size_t pay_len, orch_seg_req_t *r, orch_http_err_t *e) {
  memset(r, 0, sizeof *r);
  e->status = 0;
  e->text[0] = 0;
  int rc = decode_payment(pay_hdr, pay_len, r, e);
  if (!rc) rc = check_seg_creds(c, seg_hdr, seg_len, r, e);
  if (!rc && orch_info_pack(c, r->sender, r->sd->auth_token, &r->info, &r->info_len)) {
    set_err(e, 500, "%s", "Internal Server Error");
    rc = LP_EIO;
  }
  uint64_t t_pay = lp_now_ns();
  if (!rc) {
    char perr[256] = "";
    if (c->pay.process_payment(c->pay.ctx, r->payment, r->sender, r->session_id, perr,
                               sizeof perr)) {
      set_err(e, 400, "%s", perr);
      rc = LP_EPERM;
    }
  }
  if (!rc && r->payment->expected_price && r->payment->expected_price->priceperunit > 0 &&
      !c->pay.sufficient_balance(c->pay.ctx, r->payment, r->sender, r->session_id)) {
    set_err(e, 400, "%s", "Insufficient balance");
    rc = LP_EPERM;
  }
  r->pay_ns = lp_now_ns() - t_pay;
  return rc;
}

int orch_seg_check_hash(const orch_seg_req_t *r, const uint8_t *body, size_t len,
                        orch_http_err_t *e) {
  uint8_t got[32];
  pm_keccak256(body, len, got);
  return orch_seg_check_digest(r, got, e);
}

int orch_seg_check_digest(const orch_seg_req_t *r, const uint8_t digest[32], orch_http_err_t *e) {
  uint8_t want[32];
  pm_bytes_to_fixed(r->sd->hash.data, r->sd->hash.len, want, sizeof want);
  if (memcmp(want, digest, sizeof want) != 0) {
    set_err(e, 403, "%s", "Forbidden");
    return LP_EPERM;
  }
  return 0;
}
