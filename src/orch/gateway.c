/* `lpod gateway`: an offchain gateway of our own, to check a node from outside and to load it.
 * Each stream discovers the orchestrator over gRPC (its own session), sends segments the way
 * go-livepeer's gateway does (spec §4.1), downloads every rendition over HTTP/1.1 within the
 * gateway's 4 s and ends its session. With -realtime a stream sends one segment per segment
 * duration whether or not the previous one is back, as a live gateway does. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/media.h"
#include "lpod/net.h"
#include "lpod/pm.h"
#include "orch_int.h"

#define GW_DOWNLOAD_TIMEOUT_MS 4000
#define MAX_GATEWAY_SEG_BYTES (300u * 1000 * 1000)
#define GW_MAX_STREAMS 1000

typedef struct gw gw_t;

typedef struct gw_input {
  char *path;
  uint8_t *data;
  size_t len;
  char codec[32];
} gw_input_t;

typedef struct gw_stream {
  gw_t *g;
  int id;
  char manifest_id[96];
  Net__OrchestratorInfo *info;
  size_t sent, in_flight;
  uint64_t t0; /* ms, when the stream began sending */
  uv_timer_t pace;
  bool ended;
} gw_stream_t;

/* One segment on its way: upload, then the renditions' downloads. */
typedef struct gw_seg {
  gw_stream_t *st;
  int64_t seq;
  const gw_input_t *in;
  uint64_t t_start;
  Net__TranscodeResult *res;
  size_t downloads;
  bool failed;
  char why[160];
} gw_seg_t;

struct gw {
  uv_loop_t *loop;
  net_client_t *cli;
  uv_timer_t end_timer;
  /* flags */
  char *base; /* the orchestrator's gRPC base URL */
  gw_input_t *inputs;
  size_t n_inputs;
  char *out_dir;
  const char *manifest_prefix;
  int32_t duration_ms;
  media_profile_t *profiles;
  size_t n_profiles;
  bool end_session, realtime, json, quiet;
  int n_streams;
  size_t segments; /* per stream */
  /* state */
  gw_stream_t *streams;
  int streams_open;
  /* results */
  double *latency_ms; /* per successful segment: POST to last rendition downloaded */
  size_t n_ok;
  size_t n_failed;
  cJSON *errors; /* text -> count */
  int setup_failures;
};

static void stream_send(gw_stream_t *st);

static int usage(bool bench) {
  if (bench)
    fprintf(stderr,
            "usage: lpod bench -orchAddr HOST:PORT -in SEG.ts[,SEG2.ts...] [-streams 4]\n"
            "  [-segments M] [-realtime=false] [-json] and the other flags of lpod gateway:\n"
            "  N streams paced in real time against a running node; latency percentiles,\n"
            "  real-time ratio and errors as text or JSON\n");
  else
    fprintf(stderr,
            "usage: lpod gateway -orchAddr HOST:PORT -in SEG.ts[,SEG2.ts...]\n"
            "  [-transcodingOptions P240p30fps16x9,P360p30fps16x9|ladder.json] [-out DIR]\n"
            "  [-segmentDuration 2s] [-manifestID ID] [-streams N] [-segments M] [-realtime]\n"
            "  [-json] [-quiet] [-endSession=false]\n");
  return 2;
}

static void to_wire_profile(const media_profile_t *m, Net__VideoProfile *v) {
  net__video_profile__init(v);
  v->name = (char *)m->name;
  v->width = m->width;
  v->height = m->height;
  v->bitrate = m->bitrate;
  v->fps = m->fps;
  v->format = (Net__VideoProfile__Format)m->format;
  v->fpsden = m->fps_den;
  v->profile = (Net__VideoProfile__Profile)m->profile;
  v->gop = m->gop_ms;
  v->encoder = (Net__VideoProfile__VideoCodec)m->encoder;
  v->colordepth = m->color_depth;
  v->chromaformat = (Net__VideoProfile__ChromaSubsampling)m->chroma_format;
  v->quality = m->quality;
}

/* The job's capability bits as go-livepeer's JobCapabilities derives them (spec §7.4). */
/* The job's capability words (spec §7.4; AV1 with lpod's numbers in word 15); returns how many
 * words it takes (trailing zero words left off, as go-livepeer's one-word sets are). */
static size_t job_caps(const gw_t *g, const char *in_codec, orch_caps_t *c) {
  memset(c, 0, sizeof *c);
  orch_caps_set(c, ORCH_CAP_AUTH_TOKEN);
  if (strcmp(in_codec, "hevc") == 0)
    orch_caps_set(c, ORCH_CAP_HEVC_DECODE);
  else if (strcmp(in_codec, "vp8") == 0)
    orch_caps_set(c, ORCH_CAP_VP8_DECODE);
  else if (strcmp(in_codec, "vp9") == 0)
    orch_caps_set(c, ORCH_CAP_VP9_DECODE);
  else if (strcmp(in_codec, "av1") == 0)
    orch_caps_set(c, HW_CAP_AV1_DECODE);
  else
    orch_caps_set(c, ORCH_CAP_H264);
  static const int enc_cap[] = {ORCH_CAP_H264, ORCH_CAP_HEVC_ENCODE, ORCH_CAP_VP8_ENCODE,
                                ORCH_CAP_VP9_ENCODE, HW_CAP_AV1_ENCODE};
  for (size_t i = 0; i < g->n_profiles; i++) {
    const media_profile_t *p = &g->profiles[i];
    orch_caps_set(c, p->format == MEDIA_FORMAT_MP4 ? ORCH_CAP_MP4 : ORCH_CAP_MPEGTS);
    if ((unsigned)p->encoder < LP_ARRAY_LEN(enc_cap)) orch_caps_set(c, enc_cap[p->encoder]);
    if (p->fps_den > 0) orch_caps_set(c, ORCH_CAP_FRACTIONAL_FPS);
    if (p->profile >= MEDIA_H264_BASELINE && p->profile <= MEDIA_H264_CONSTRAINED_HIGH)
      orch_caps_set(c, ORCH_CAP_PROFILE_BASELINE + (p->profile - MEDIA_H264_BASELINE));
    if (p->gop_ms != 0) orch_caps_set(c, ORCH_CAP_GOP);
  }
  return orch_caps_words(c);
}

/* ---- the end ------------------------------------------------------------------------------ */
static void end_timer_fired(uv_timer_t *t) {
  gw_t *g = t->data;
  net_client_free(g->cli);
  g->cli = NULL;
  uv_close((uv_handle_t *)t, NULL);
  for (int i = 0; i < g->n_streams; i++) uv_close((uv_handle_t *)&g->streams[i].pace, NULL);
}

static void stream_closed(gw_stream_t *st) {
  st->ended = true;
  gw_t *g = st->g;
  /* The client is freed from the loop, not from inside one of its own callbacks. */
  if (--g->streams_open == 0) uv_timer_start(&g->end_timer, end_timer_fired, 0, 0);
}

static void end_done(int status, const char *message, void *arg) {
  gw_stream_t *st = arg;
  if (status != NET_GRPC_OK) {
    fprintf(stderr, "stream %d: EndTranscodingSession: grpc-status %d %s\n", st->id, status,
            message ? message : "");
    st->g->setup_failures++;
  }
  stream_closed(st);
}

static int ignore_msg(const uint8_t *msg, size_t len, void *arg) { return 0; }

static void stream_finish(gw_stream_t *st) {
  gw_t *g = st->g;
  if (!g->end_session || !st->info) {
    stream_closed(st);
    return;
  }
  Net__EndTranscodingSessionRequest req = NET__END_TRANSCODING_SESSION_REQUEST__INIT;
  req.auth_token = st->info->auth_token;
  uint8_t buf[512];
  if (net__end_transcoding_session_request__get_packed_size(&req) > sizeof buf) {
    stream_closed(st);
    return;
  }
  net_grpc_call_opts_t o = {g->base, "/net.Orchestrator/EndTranscodingSession",
                            buf,     net__end_transcoding_session_request__pack(&req, buf),
                            true,    5000,
                            0};
  if (net_client_grpc(g->cli, &o, ignore_msg, end_done, st, NULL)) stream_closed(st);
}

/* ---- a segment's outcome ------------------------------------------------------------------- */
static void seg_complete(gw_seg_t *s) {
  gw_stream_t *st = s->st;
  gw_t *g = st->g;
  double ms = (double)(lp_now_ms() - s->t_start);
  if (s->failed) {
    g->n_failed++;
    cJSON *c = cJSON_GetObjectItemCaseSensitive(g->errors, s->why);
    if (c)
      cJSON_SetNumberValue(c, c->valuedouble + 1);
    else
      cJSON_AddNumberToObject(g->errors, s->why, 1);
    if (!g->quiet)
      printf("stream %d segment %lld: failed after %.0f ms: %s\n", st->id, (long long)s->seq, ms,
             s->why);
  } else {
    g->latency_ms[g->n_ok++] = ms;
    if (!g->quiet)
      printf("stream %d segment %lld: %zu renditions in %.0f ms\n", st->id, (long long)s->seq,
             g->n_profiles, ms);
  }
  if (s->res) net__transcode_result__free_unpacked(s->res, NULL);
  free(s);
  st->in_flight--;
  if (!g->realtime) {
    stream_send(st);
  } else if (st->sent >= g->segments && st->in_flight == 0) {
    stream_finish(st);
  }
}

static void seg_failed(gw_seg_t *s, const char *why) {
  s->failed = true;
  snprintf(s->why, sizeof s->why, "%s", why);
  seg_complete(s);
}

typedef struct dl {
  gw_seg_t *s;
  size_t idx;
} dl_t;

static void download_done(const net_fetch_result_t *r, void *arg) {
  dl_t *d = arg;
  gw_seg_t *s = d->s;
  gw_t *g = s->st->g;
  const Net__TranscodedSegmentData *seg = s->res->data->segments[d->idx];
  const media_profile_t *p = &g->profiles[d->idx];
  if (r->err || r->status != 200) {
    if (!s->failed) {
      s->failed = true;
      snprintf(s->why, sizeof s->why, "download %s: %s", r->status ? "status" : "failed",
               r->status ? (r->status == 404 ? "404" : "not 200") : (r->error ? r->error : ""));
    }
  } else {
    if (!g->quiet)
      printf("  stream %d %-20s %8zu bytes  pixels %lld  %s\n", s->st->id, p->name, r->body_len,
             (long long)seg->pixels, seg->url);
    if (g->out_dir) {
      char path[1024];
      snprintf(path, sizeof path, "%s/%s%lld_%s%s", g->out_dir,
               g->n_streams > 1 ? s->st->manifest_id : "", (long long)s->seq, p->name,
               p->format == MEDIA_FORMAT_MP4 ? ".mp4" : ".ts");
      if (lp_file_write_atomic(path, r->body, r->body_len, 0644) && !s->failed) {
        s->failed = true;
        snprintf(s->why, sizeof s->why, "cannot write output");
      }
    }
  }
  free(d);
  if (--s->downloads == 0) seg_complete(s);
}

static void upload_done(const net_fetch_result_t *r, void *arg) {
  gw_seg_t *s = arg;
  gw_stream_t *st = s->st;
  gw_t *g = st->g;
  char why[160];
  if (r->err || r->status != 200) {
    if (r->status)
      snprintf(why, sizeof why, "status %ld %.*s", r->status, (int)LP_MIN(r->body_len, 100),
               r->body ? (const char *)r->body : "");
    else
      snprintf(why, sizeof why, "%s", r->error ? r->error : "upload failed");
    seg_failed(s, lp_strtrim(why));
    return;
  }
  s->res = net__transcode_result__unpack(NULL, r->body_len, r->body);
  if (!s->res) {
    seg_failed(s, "unparseable TranscodeResult");
    return;
  }
  if (s->res->result_case == NET__TRANSCODE_RESULT__RESULT_ERROR) {
    seg_failed(s, s->res->error);
    return;
  }
  if (s->res->result_case != NET__TRANSCODE_RESULT__RESULT_DATA ||
      s->res->data->n_segments != g->n_profiles) {
    seg_failed(s, "renditions do not match the profiles");
    return;
  }
  if (s->res->info && s->res->info->auth_token) {
    /* go's gateway takes the refreshed info as its session's new info */
    net__orchestrator_info__free_unpacked(st->info, NULL);
    st->info = s->res->info;
    s->res->info = NULL;
  }
  s->downloads = g->n_profiles;
  for (size_t i = 0; i < g->n_profiles; i++) {
    dl_t *d = calloc(1, sizeof *d);
    if (!d) abort();
    d->s = s;
    d->idx = i;
    net_fetch_opts_t o;
    memset(&o, 0, sizeof o);
    o.url = s->res->data->segments[i]->url;
    o.version = NET_HTTP_1;
    o.insecure = true;
    o.timeout_ms = GW_DOWNLOAD_TIMEOUT_MS;
    if (net_client_fetch(g->cli, &o, download_done, d, NULL)) {
      net_fetch_result_t fail = {.err = LP_EIO, .error = "could not start the download"};
      download_done(&fail, d);
    }
  }
}

/* ---- sending ------------------------------------------------------------------------------- */
static char *seg_header(gw_stream_t *st, const gw_input_t *in, int64_t seq) {
  gw_t *g = st->g;
  uint8_t hash[PM_HASH_LEN];
  pm_keccak256(in->data, in->len, hash);
  Net__VideoProfile *vps = calloc(g->n_profiles, sizeof *vps);
  Net__VideoProfile **vpp = calloc(g->n_profiles, sizeof *vpp);
  if (!vps || !vpp) abort();
  /* go's gateway picks the field by what the profiles need (spec §2.1). */
  bool all_ts = true, plain = true;
  for (size_t i = 0; i < g->n_profiles; i++) {
    to_wire_profile(&g->profiles[i], &vps[i]);
    vpp[i] = &vps[i];
    if (g->profiles[i].format != MEDIA_FORMAT_MPEGTS) all_ts = false;
    if (g->profiles[i].fps_den > 1 || g->profiles[i].profile != MEDIA_H264_DEFAULT ||
        g->profiles[i].gop_ms != 0)
      plain = false;
  }
  orch_caps_t jc;
  Net__Capabilities caps = NET__CAPABILITIES__INIT;
  caps.n_bitstring = job_caps(g, in->codec, &jc);
  caps.bitstring = jc.bits;
  Net__SegData sd = NET__SEG_DATA__INIT;
  sd.manifestid.data = (uint8_t *)st->manifest_id;
  sd.manifestid.len = strlen(st->manifest_id);
  sd.seq = seq;
  sd.hash.data = hash;
  sd.hash.len = sizeof hash;
  sd.profiles.data = (uint8_t *)"invalid";
  sd.profiles.len = 7;
  sd.duration = g->duration_ms;
  sd.capabilities = &caps;
  sd.auth_token = st->info->auth_token;
  if (!plain) {
    sd.n_fullprofiles3 = g->n_profiles;
    sd.fullprofiles3 = vpp;
  } else if (!all_ts) {
    sd.n_fullprofiles2 = g->n_profiles;
    sd.fullprofiles2 = vpp;
  } else {
    sd.n_fullprofiles = g->n_profiles;
    sd.fullprofiles = vpp;
  }
  size_t n = net__seg_data__get_packed_size(&sd);
  uint8_t *packed = malloc(n + 1);
  if (!packed) abort();
  net__seg_data__pack(&sd, packed);
  char *b64 = orch_b64_encode(packed, n);
  free(packed);
  free(vps);
  free(vpp);
  return b64;
}

static void send_one(gw_stream_t *st) {
  gw_t *g = st->g;
  gw_seg_t *s = calloc(1, sizeof *s);
  if (!s) abort();
  s->st = st;
  s->seq = (int64_t)st->sent;
  s->in = &g->inputs[st->sent % g->n_inputs];
  st->sent++;
  st->in_flight++;
  s->t_start = lp_now_ms();
  char *b64 = seg_header(st, s->in, s->seq);
  lp_buf_t ub = LP_BUF_INIT;
  char *url = NULL;
  if (b64 && !lp_buf_appendf(&ub, "%s/segment", st->info->transcoder) && !lp_buf_append(&ub, "", 1))
    url = (char *)ub.data;
  net_header_t hdrs[] = {{"Livepeer-Segment", b64 ? b64 : ""},
                         {"Livepeer-Payment", ""},
                         {"Content-Type", "video/MP2T"}};
  net_fetch_opts_t o;
  memset(&o, 0, sizeof o);
  o.method = "POST";
  o.url = url;
  o.headers = hdrs;
  o.nheaders = LP_ARRAY_LEN(hdrs);
  o.body = s->in->data;
  o.body_len = s->in->len;
  o.insecure = true;
  /* the gateway's whole-exchange deadline: max(8 s, 4 x duration) */
  o.timeout_ms = (uint64_t)LP_MAX(8000, 4 * (int64_t)g->duration_ms);
  int rc = url ? net_client_fetch(g->cli, &o, upload_done, s, NULL) : LP_ENOMEM;
  free(url);
  free(b64);
  if (rc) {
    net_fetch_result_t fail = {.err = rc, .error = "could not start the upload"};
    upload_done(&fail, s);
  }
}

static void pace_fired(uv_timer_t *t) { stream_send(t->data); }

static void stream_send(gw_stream_t *st) {
  gw_t *g = st->g;
  if (st->sent >= g->segments) {
    if (st->in_flight == 0 && !st->ended) stream_finish(st);
    return;
  }
  if (!g->realtime) {
    send_one(st);
    return;
  }
  /* live pacing: segment k leaves at t0 + k x duration */
  uint64_t due = st->t0 + st->sent * (uint64_t)g->duration_ms;
  uint64_t now = lp_now_ms();
  if (now < due) {
    uv_timer_start(&st->pace, pace_fired, due - now, 0);
    return;
  }
  send_one(st);
  stream_send(st);
}

/* ---- discovery ------------------------------------------------------------------------------- */
static int info_msg(const uint8_t *msg, size_t len, void *arg) {
  gw_stream_t *st = arg;
  if (st->info) net__orchestrator_info__free_unpacked(st->info, NULL);
  st->info = net__orchestrator_info__unpack(NULL, len, msg);
  return st->info ? 0 : LP_EPROTO;
}

static void info_done(int status, const char *message, void *arg) {
  gw_stream_t *st = arg;
  gw_t *g = st->g;
  const Net__OrchestratorInfo *i = st->info;
  const char *bad = NULL;
  if (status != NET_GRPC_OK || !i)
    bad = message && message[0] ? message : "no answer";
  else if (!i->transcoder || !i->transcoder[0] || !i->auth_token)
    bad = "no service URI or auth token: not usable"; /* go's gateway drops such an O */
  if (bad) {
    fprintf(stderr, "stream %d: GetOrchestrator %s: grpc-status %d %s\n", st->id, g->base, status,
            bad);
    g->setup_failures++;
    if (st->info) net__orchestrator_info__free_unpacked(st->info, NULL);
    st->info = NULL;
    stream_closed(st);
    return;
  }
  if (!g->quiet)
    printf("stream %d: orchestrator %s session %s version %s caps 0x%llx\n", st->id, i->transcoder,
           i->auth_token->session_id, i->capabilities ? i->capabilities->version : "",
           i->capabilities && i->capabilities->n_bitstring
               ? (unsigned long long)i->capabilities->bitstring[0]
               : 0ull);
  st->t0 = lp_now_ms();
  stream_send(st);
}

static void stream_discover(gw_stream_t *st) {
  gw_t *g = st->g;
  uint8_t zero[20] = {0};
  orch_caps_t jc;
  Net__Capabilities caps = NET__CAPABILITIES__INIT;
  caps.n_bitstring = job_caps(g, g->inputs[0].codec, &jc);
  caps.bitstring = jc.bits;
  Net__OrchestratorRequest req = NET__ORCHESTRATOR_REQUEST__INIT;
  req.address.data = zero;
  req.address.len = sizeof zero;
  req.capabilities = &caps;
  uint8_t buf[256];
  size_t n = net__orchestrator_request__pack(&req, buf);
  net_grpc_call_opts_t o = {g->base, "/net.Orchestrator/GetOrchestrator", buf, n, true, 5000, 0};
  if (net_client_grpc(g->cli, &o, info_msg, info_done, st, NULL))
    info_done(NET_GRPC_UNAVAILABLE, "cannot start the call", st);
}

/* ---- report -----------------------------------------------------------------------------------
 */
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p) {
  if (!n) return 0;
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return sorted[LP_MIN(i, n - 1)];
}

static void report(gw_t *g, double wall_s) {
  qsort(g->latency_ms, g->n_ok, sizeof *g->latency_ms, cmp_double);
  double p50 = pct(g->latency_ms, g->n_ok, .5), p90 = pct(g->latency_ms, g->n_ok, .9);
  double p99 = pct(g->latency_ms, g->n_ok, .99);
  double max = g->n_ok ? g->latency_ms[g->n_ok - 1] : 0;
  /* real-time ratio as go-livepeer's transcode score: segment duration over round trip */
  double rt50 = p50 > 0 ? g->duration_ms / p50 : 0;
  if (g->json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "orchestrator", g->base);
    cJSON_AddNumberToObject(o, "streams", g->n_streams);
    cJSON_AddNumberToObject(o, "segments_per_stream", (double)g->segments);
    cJSON_AddBoolToObject(o, "realtime", g->realtime);
    cJSON_AddNumberToObject(o, "segment_duration_ms", g->duration_ms);
    cJSON_AddNumberToObject(o, "ok", (double)g->n_ok);
    cJSON_AddNumberToObject(o, "failed", (double)g->n_failed);
    cJSON_AddNumberToObject(o, "setup_failures", g->setup_failures);
    cJSON *l = cJSON_AddObjectToObject(o, "latency_ms");
    cJSON_AddNumberToObject(l, "p50", p50);
    cJSON_AddNumberToObject(l, "p90", p90);
    cJSON_AddNumberToObject(l, "p99", p99);
    cJSON_AddNumberToObject(l, "max", max);
    cJSON_AddNumberToObject(o, "realtime_ratio_p50", rt50);
    cJSON_AddNumberToObject(o, "wall_s", wall_s);
    cJSON_AddItemReferenceToObject(o, "errors", g->errors);
    char *text = cJSON_Print(o);
    if (text) puts(text);
    free(text);
    cJSON_Delete(o);
    return;
  }
  printf("%d stream(s), %zu segment(s) ok, %zu failed, %d setup failure(s), %.1f s\n", g->n_streams,
         g->n_ok, g->n_failed, g->setup_failures, wall_s);
  if (g->n_ok)
    printf("latency ms: p50 %.0f  p90 %.0f  p99 %.0f  max %.0f; real-time ratio at p50 %.2f "
           "(segment duration / round trip)\n",
           p50, p90, p99, max, rt50);
  for (cJSON *e = g->errors->child; e; e = e->next)
    printf("  %4.0f x %s\n", e->valuedouble, e->string);
}

/* ---- flags -------------------------------------------------------------------------------------
 */
static int load_inputs(gw_t *g, const char *list) {
  char *copy = strdup(list);
  size_t cap = 1;
  for (const char *p = list; *p; p++) cap += *p == ',';
  g->inputs = calloc(cap, sizeof *g->inputs);
  if (!copy || !g->inputs) abort();
  int rc = 0;
  for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && !rc;
       t = strtok_r(NULL, ",", &save)) {
    t = lp_strtrim(t);
    if (!*t) continue;
    gw_input_t *in = &g->inputs[g->n_inputs++];
    in->path = strdup(t);
    char *data = NULL;
    if (lp_file_read(t, MAX_GATEWAY_SEG_BYTES, &data, &in->len)) {
      fprintf(stderr, "cannot read %s\n", t);
      rc = LP_EIO;
      continue;
    }
    in->data = (uint8_t *)data;
    media_probe_t probe;
    memset(&probe, 0, sizeof probe);
    media_probe(in->data, in->len, &probe);
    snprintf(in->codec, sizeof in->codec, "%s", probe.video_codec[0] ? probe.video_codec : "h264");
  }
  free(copy);
  if (!rc && !g->n_inputs) rc = LP_EINVAL;
  return rc;
}

static char *gateway_base(const char *addr) {
  /* go's gateway: https:// and port 8935 unless given */
  bool has_scheme = strstr(addr, "://") != NULL;
  const char *host = has_scheme ? strstr(addr, "://") + 3 : addr;
  const char *rb = host[0] == '[' ? strchr(host, ']') : NULL;
  bool has_port = rb ? rb[1] == ':' : strchr(host, ':') != NULL;
  lp_buf_t b = LP_BUF_INIT;
  if (lp_buf_appendf(&b, "%s%s%s", has_scheme ? "" : "https://", addr, has_port ? "" : ":8935") ||
      lp_buf_append(&b, "", 1)) {
    lp_buf_free(&b);
    return NULL;
  }
  char *s = (char *)b.data;
  size_t n = strlen(s);
  while (n && s[n - 1] == '/') s[--n] = 0;
  return s;
}

/* lpod gateway, and lpod bench against a node: the same client with a load test's defaults
 * (four streams paced in real time, no renditions written, a report only). */
static int gw_main(int argc, char **argv, bool bench) {
  gw_t g;
  memset(&g, 0, sizeof g);
  g.duration_ms = 2000;
  g.end_session = true;
  g.n_streams = bench ? 4 : 1;
  g.realtime = bench;
  g.quiet = bench;
  const char *in = NULL, *orch_addr = NULL, *ladder = "P240p30fps16x9,P360p30fps16x9";
  long long segments = 0;
  g.manifest_prefix = bench ? "lpod-bench" : "lpod-gateway";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    while (*a == '-') a++;
    const char *eq = strchr(a, '=');
    size_t klen = eq ? (size_t)(eq - a) : strlen(a);
#define FLAG(name) (klen == strlen(name) && strncmp(a, name, klen) == 0)
    bool *boolean = FLAG("endSession") ? &g.end_session
                    : FLAG("realtime") ? &g.realtime
                    : FLAG("json")     ? &g.json
                    : FLAG("quiet")    ? &g.quiet
                                       : NULL;
    if (boolean) {
      *boolean = !(eq && (strcmp(eq + 1, "false") == 0 || strcmp(eq + 1, "0") == 0));
      continue;
    }
    if (FLAG("help") || FLAG("h")) return usage(bench);
    const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!v) return usage(bench);
    if (FLAG("orchAddr"))
      orch_addr = v;
    else if (FLAG("in"))
      in = v;
    else if (FLAG("transcodingOptions"))
      ladder = v;
    else if (FLAG("out"))
      g.out_dir = (char *)v;
    else if (FLAG("manifestID"))
      g.manifest_prefix = v;
    else if (FLAG("streams"))
      g.n_streams = atoi(v);
    else if (FLAG("segments"))
      segments = atoll(v);
    else if (FLAG("segmentDuration")) {
      int64_t ms;
      if (lp_parse_duration_ms(v, &ms) || ms < 0 || ms > 300000) {
        fprintf(stderr, "bad -segmentDuration %s\n", v);
        return 2;
      }
      g.duration_ms = (int32_t)ms;
    } else if (FLAG("v"))
      lp_log_set_level(atoi(v));
    else {
      fprintf(stderr, "unknown flag -%.*s\n", (int)klen, a);
      return usage(bench);
    }
#undef FLAG
  }
  if (!orch_addr || !in) return usage(bench);
  if (g.json) g.quiet = true; /* stdout is the JSON document alone */
  if (g.n_streams < 1 || g.n_streams > GW_MAX_STREAMS || segments < 0) {
    fprintf(stderr, "-streams must be 1..%d and -segments >= 0\n", GW_MAX_STREAMS);
    return 2;
  }
  char err[256];
  if (media_profiles_parse(ladder, &g.profiles, &g.n_profiles, err, sizeof err)) {
    fprintf(stderr, "-transcodingOptions: %s\n", err);
    return 2;
  }
  int rc = 1;
  if (g.out_dir && lp_mkdir_p(g.out_dir, 0755)) {
    fprintf(stderr, "cannot create %s\n", g.out_dir);
    goto out;
  }
  if (load_inputs(&g, in)) goto out;
  g.segments = segments ? (size_t)segments : g.n_inputs;
  g.base = gateway_base(orch_addr);
  g.latency_ms = calloc(g.segments * (size_t)g.n_streams + 1, sizeof *g.latency_ms);
  g.errors = cJSON_CreateObject();
  g.streams = calloc((size_t)g.n_streams, sizeof *g.streams);
  if (!g.base || !g.latency_ms || !g.errors || !g.streams) abort();

  uv_loop_t loop;
  uv_loop_init(&loop);
  g.loop = &loop;
  g.cli = net_client_new(&loop);
  if (!g.cli) abort();
  uv_timer_init(&loop, &g.end_timer);
  g.end_timer.data = &g;
  uint64_t t0 = lp_now_ms();
  g.streams_open = g.n_streams;
  for (int i = 0; i < g.n_streams; i++) {
    gw_stream_t *st = &g.streams[i];
    st->g = &g;
    st->id = i;
    if (g.n_streams > 1)
      snprintf(st->manifest_id, sizeof st->manifest_id, "%s-%d", g.manifest_prefix, i);
    else
      snprintf(st->manifest_id, sizeof st->manifest_id, "%s", g.manifest_prefix);
    uv_timer_init(&loop, &st->pace);
    st->pace.data = st;
    stream_discover(st);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  report(&g, (lp_now_ms() - t0) / 1000.0);
  rc = g.n_failed || g.setup_failures ? 1 : 0;
  for (int i = 0; i < g.n_streams; i++)
    if (g.streams[i].info) net__orchestrator_info__free_unpacked(g.streams[i].info, NULL);
out:
  for (size_t i = 0; i < g.n_inputs; i++) {
    free(g.inputs[i].path);
    free(g.inputs[i].data);
  }
  free(g.inputs);
  free(g.profiles);
  free(g.base);
  free(g.latency_ms);
  free(g.streams);
  cJSON_Delete(g.errors);
  return rc;
}

int orch_cli_gateway(int argc, char **argv) { return gw_main(argc, argv, false); }
int orch_cli_bench_node(int argc, char **argv) { return gw_main(argc, argv, true); }
