/* TranscodeResult bodies (spec §4.4): one segment per profile in order, or an error text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/pm.h"
#include "orch_int.h"

/* go-livepeer refuses renditions shorter than this as empty. */
#define MIN_RENDITION_BYTES 25

/* Appends field 16 (OrchestratorInfo) to a packed message: protobuf parsers merge fields that
 * follow, so the info packed once at check time need not be unpacked again. */
static int pack_with_info(const ProtobufCMessage *m, const uint8_t *info, size_t info_len,
                          uint8_t **out, size_t *out_len) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n + (info ? info_len + 2 + 10 : 0) + 1);
  if (!buf) return LP_ENOMEM;
  size_t off = protobuf_c_message_pack(m, buf);
  if (info) {
    buf[off++] = ((16 << 3 | 2) & 0x7f) | 0x80;
    buf[off++] = (16 << 3 | 2) >> 7;
    uint64_t v = info_len;
    do {
      buf[off++] = (uint8_t)(v & 0x7f) | (v > 0x7f ? 0x80 : 0);
      v >>= 7;
    } while (v);
    memcpy(buf + off, info, info_len);
    off += info_len;
  }
  *out = buf;
  *out_len = off;
  return 0;
}

int orch_result_encode_error(int64_t seq, const char *error, const uint8_t *info, size_t info_len,
                             uint8_t **out, size_t *out_len) {
  Net__TranscodeResult r = NET__TRANSCODE_RESULT__INIT;
  r.seq = seq;
  r.result_case = NET__TRANSCODE_RESULT__RESULT_ERROR;
  r.error = (char *)error;
  return pack_with_info(&r.base, info, info_len, out, out_len);
}

int orch_result_encode(orch_core_t *c, orch_job_t *job, const uint8_t *info, size_t info_len,
                       uint8_t **out, size_t *out_len, int64_t *pixels) {
  *pixels = 0;
  if (job->error[0])
    return orch_result_encode_error(job->seq, job->error, info, info_len, out, out_len);
  size_t n = job->n_profiles;
  for (size_t i = 0; i < n; i++)
    if (!job->out[i].data || job->out[i].len < MIN_RENDITION_BYTES)
      return orch_result_encode_error(job->seq, "ZeroSegments", info, info_len, out, out_len);

  Net__TranscodedSegmentData *segs = calloc(n ? n : 1, sizeof *segs);
  Net__TranscodedSegmentData **seg_ptrs = calloc(n ? n : 1, sizeof *seg_ptrs);
  char **urls = calloc(n ? n : 1, sizeof *urls);
  uint8_t *hashes = malloc(n * PM_HASH_LEN + 1);
  uint8_t *sig = NULL;
  size_t sig_len = 0;
  int rc = (!segs || !seg_ptrs || !urls || !hashes) ? LP_ENOMEM : 0;
  for (size_t i = 0; i < n && !rc; i++) {
    const orch_profile_t *p = &job->profiles[i];
    orch_rendition_t *r = &job->out[i];
    pm_keccak256(r->data, r->len, hashes + i * PM_HASH_LEN);
    char name[512];
    snprintf(name, sizeof name, "%s/%lld%s", p->name, (long long)job->seq, orch_profile_ext(p));
    lp_buf_t url = LP_BUF_INIT;
    if (lp_buf_appendf(&url, "%s/stream/%s/%s", c->service_uri, job->session_id, name) ||
        lp_buf_append(&url, "", 1)) {
      lp_buf_free(&url);
      rc = LP_ENOMEM;
      break;
    }
    urls[i] = (char *)url.data;
    rc = orch_store_put(c->store, job->session_id, name, r->data, r->len);
    r->data = NULL;
    net__transcoded_segment_data__init(&segs[i]);
    segs[i].url = urls[i];
    segs[i].pixels = r->pixels;
    seg_ptrs[i] = &segs[i];
    *pixels += r->pixels;
  }
  if (!rc) {
    uint8_t all[PM_HASH_LEN];
    pm_keccak256(hashes, n * PM_HASH_LEN, all);
    rc = c->pay.sign_hash(c->pay.ctx, all, &sig, &sig_len);
  }
  if (!rc) {
    Net__TranscodeData data = NET__TRANSCODE_DATA__INIT;
    data.n_segments = n;
    data.segments = seg_ptrs;
    data.sig.data = sig;
    data.sig.len = sig_len;
    Net__TranscodeResult res = NET__TRANSCODE_RESULT__INIT;
    res.seq = job->seq;
    res.result_case = NET__TRANSCODE_RESULT__RESULT_DATA;
    res.data = &data;
    rc = pack_with_info(&res.base, info, info_len, out, out_len);
  }
  for (size_t i = 0; urls && i < n; i++) free(urls[i]);
  free(urls);
  free(segs);
  free(seg_ptrs);
  free(hashes);
  free(sig);
  return rc;
}
