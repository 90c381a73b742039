/* `lpod gateway`: an offchain gateway of our own, to check a node from outside. It discovers
 * the orchestrator over gRPC, sends segments the way go-livepeer's gateway does (spec §4.1),
 * downloads every rendition over HTTP/1.1 within the gateway's 4 s and ends the session. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/media.h"
#include "lpod/net.h"
#include "lpod/pm.h"
#include "orch_int.h"

#define GW_DOWNLOAD_TIMEOUT_MS 4000
#define MAX_GATEWAY_SEG_BYTES (300u * 1000 * 1000)

typedef struct gw {
  uv_loop_t *loop;
  net_client_t *cli;
  uv_timer_t end_timer;
  /* flags */
  char *orch_addr;
  char **inputs;
  size_t n_inputs;
  char *out_dir;
  char *manifest_id;
  int32_t duration_ms;
  media_profile_t *profiles;
  size_t n_profiles;
  bool end_session;
  /* state */
  char *base; /* the orchestrator's gRPC base URL */
  Net__OrchestratorInfo *info;
  size_t cur;   /* input being sent */
  uint8_t *seg; /* its bytes */
  size_t seg_len;
  uint64_t t_start; /* ms, when its POST began */
  Net__TranscodeResult *res;
  size_t downloads; /* renditions still downloading */
  int failures;
} gw_t;

static void gw_next(gw_t *g);

static int usage(void) {
  fprintf(stderr,
          "usage: lpod gateway -orchAddr HOST:PORT -in SEG.ts[,SEG2.ts...] [-transcodingOptions "
          "P240p30fps16x9,P360p30fps16x9|ladder.json] [-out DIR] [-segmentDuration 2s] "
          "[-manifestID ID] [-endSession=false]\n");
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
static uint64_t job_caps(const gw_t *g, const char *in_codec) {
  uint64_t b = 1ull << ORCH_CAP_AUTH_TOKEN;
  if (strcmp(in_codec, "hevc") == 0)
    b |= 1ull << ORCH_CAP_HEVC_DECODE;
  else if (strcmp(in_codec, "vp8") == 0)
    b |= 1ull << ORCH_CAP_VP8_DECODE;
  else if (strcmp(in_codec, "vp9") == 0)
    b |= 1ull << ORCH_CAP_VP9_DECODE;
  else
    b |= 1ull << ORCH_CAP_H264;
  static const int enc_cap[] = {ORCH_CAP_H264, ORCH_CAP_HEVC_ENCODE, ORCH_CAP_VP8_ENCODE,
                                ORCH_CAP_VP9_ENCODE};
  for (size_t i = 0; i < g->n_profiles; i++) {
    const media_profile_t *p = &g->profiles[i];
    b |= 1ull << (p->format == MEDIA_FORMAT_MP4 ? ORCH_CAP_MP4 : ORCH_CAP_MPEGTS);
    if ((unsigned)p->encoder < LP_ARRAY_LEN(enc_cap)) b |= 1ull << enc_cap[p->encoder];
    if (p->fps_den > 0) b |= 1ull << ORCH_CAP_FRACTIONAL_FPS;
    if (p->profile >= MEDIA_H264_BASELINE && p->profile <= MEDIA_H264_CONSTRAINED_HIGH)
      b |= 1ull << (ORCH_CAP_PROFILE_BASELINE + (p->profile - MEDIA_H264_BASELINE));
    if (p->gop_ms != 0) b |= 1ull << ORCH_CAP_GOP;
  }
  return b;
}

static void end_timer_fired(uv_timer_t *t) {
  gw_t *g = t->data;
  net_client_free(g->cli);
  g->cli = NULL;
  uv_close((uv_handle_t *)t, NULL);
}

/* The client is freed from the loop, not from inside one of its own callbacks. */
static void gw_end(gw_t *g) { uv_timer_start(&g->end_timer, end_timer_fired, 0, 0); }

/* ---- session end --------------------------------------------------------------------------- */
static void end_done(int status, const char *message, void *arg) {
  gw_t *g = arg;
  if (status != NET_GRPC_OK) {
    fprintf(stderr, "EndTranscodingSession: grpc-status %d %s\n", status, message ? message : "");
    g->failures++;
  }
  gw_end(g);
}

static int ignore_msg(const uint8_t *msg, size_t len, void *arg) { return 0; }

static void gw_finish(gw_t *g) {
  if (!g->end_session || !g->info) {
    gw_end(g);
    return;
  }
  Net__EndTranscodingSessionRequest req = NET__END_TRANSCODING_SESSION_REQUEST__INIT;
  req.auth_token = g->info->auth_token;
  uint8_t buf[512];
  if (net__end_transcoding_session_request__get_packed_size(&req) > sizeof buf) {
    gw_end(g);
    return;
  }
  net_grpc_call_opts_t o = {g->base, "/net.Orchestrator/EndTranscodingSession",
                            buf,     net__end_transcoding_session_request__pack(&req, buf),
                            true,    5000,
                            0};
  if (net_client_grpc(g->cli, &o, ignore_msg, end_done, g, NULL)) gw_end(g);
}

/* ---- renditions ------------------------------------------------------------------------------ */
typedef struct dl {
  gw_t *g;
  size_t idx;
} dl_t;

static void download_done(const net_fetch_result_t *r, void *arg) {
  dl_t *d = arg;
  gw_t *g = d->g;
  const Net__TranscodedSegmentData *s = g->res->data->segments[d->idx];
  const media_profile_t *p = &g->profiles[d->idx];
  if (r->err || r->status != 200) {
    printf("  %-20s download failed: %s (status %ld)\n", p->name, r->error ? r->error : "",
           r->status);
    g->failures++;
  } else {
    printf("  %-20s %8zu bytes  pixels %lld  %s\n", p->name, r->body_len, (long long)s->pixels,
           s->url);
    if (g->out_dir) {
      char path[1024];
      snprintf(path, sizeof path, "%s/%lld_%s%s", g->out_dir, (long long)g->res->seq, p->name,
               p->format == MEDIA_FORMAT_MP4 ? ".mp4" : ".ts");
      if (lp_file_write_atomic(path, r->body, r->body_len, 0644)) {
        fprintf(stderr, "cannot write %s\n", path);
        g->failures++;
      }
    }
  }
  free(d);
  if (--g->downloads == 0) {
    net__transcode_result__free_unpacked(g->res, NULL);
    g->res = NULL;
    g->cur++;
    gw_next(g);
  }
}

/* ---- segments ------------------------------------------------------------------------------ */
static void segment_done(const net_fetch_result_t *r, void *arg) {
  gw_t *g = arg;
  uint64_t took = lp_now_ms() - g->t_start;
  free(g->seg);
  g->seg = NULL;
  printf("segment %zu (%s): ", g->cur, g->inputs[g->cur]);
  if (r->err || r->status != 200) {
    printf("failed: status %ld %.*s%s\n", r->status, (int)LP_MIN(r->body_len, 200),
           r->body ? (const char *)r->body : "", r->error ? r->error : "");
    g->failures++;
    g->cur++;
    gw_next(g);
    return;
  }
  g->res = net__transcode_result__unpack(NULL, r->body_len, r->body);
  if (!g->res) {
    printf("unparseable TranscodeResult (%zu bytes)\n", r->body_len);
  } else if (g->res->result_case == NET__TRANSCODE_RESULT__RESULT_ERROR) {
    printf("error \"%s\" after %llu ms\n", g->res->error, (unsigned long long)took);
  } else if (g->res->result_case != NET__TRANSCODE_RESULT__RESULT_DATA ||
             g->res->data->n_segments != g->n_profiles) {
    printf("%zu renditions for %zu profiles\n",
           g->res->result_case == NET__TRANSCODE_RESULT__RESULT_DATA ? g->res->data->n_segments : 0,
           g->n_profiles);
  } else {
    printf("transcoded in %llu ms\n", (unsigned long long)took);
    if (g->res->info && g->res->info->auth_token) {
      /* go's gateway takes the refreshed info as its session's new info */
      net__orchestrator_info__free_unpacked(g->info, NULL);
      g->info = g->res->info;
      g->res->info = NULL;
    }
    g->downloads = g->n_profiles;
    for (size_t i = 0; i < g->n_profiles; i++) {
      dl_t *d = calloc(1, sizeof *d);
      net_fetch_opts_t o;
      memset(&o, 0, sizeof o);
      o.url = g->res->data->segments[i]->url;
      o.version = NET_HTTP_1;
      o.insecure = true;
      o.timeout_ms = GW_DOWNLOAD_TIMEOUT_MS;
      if (!d) abort();
      d->g = g;
      d->idx = i;
      if (net_client_fetch(g->cli, &o, download_done, d, NULL)) {
        net_fetch_result_t fail = {LP_EIO, "could not start the download", 0, NULL, 0, NULL, 0};
        download_done(&fail, d);
      }
    }
    return;
  }
  g->failures++;
  if (g->res) net__transcode_result__free_unpacked(g->res, NULL);
  g->res = NULL;
  g->cur++;
  gw_next(g);
}

static void gw_next(gw_t *g) {
  if (g->cur >= g->n_inputs) {
    gw_finish(g);
    return;
  }
  char *data = NULL;
  size_t len = 0;
  const char *file = g->inputs[g->cur];
  if (lp_file_read(file, MAX_GATEWAY_SEG_BYTES, &data, &len)) {
    fprintf(stderr, "cannot read %s\n", file);
    g->failures++;
    g->cur++;
    gw_next(g);
    return;
  }
  g->seg = (uint8_t *)data;
  g->seg_len = len;
  media_probe_t probe;
  memset(&probe, 0, sizeof probe);
  media_probe(g->seg, len, &probe);

  uint8_t hash[PM_HASH_LEN];
  pm_keccak256(g->seg, len, hash);
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
  uint64_t bits = job_caps(g, probe.video_codec);
  Net__Capabilities caps = NET__CAPABILITIES__INIT;
  caps.n_bitstring = 1;
  caps.bitstring = &bits;
  Net__SegData sd = NET__SEG_DATA__INIT;
  sd.manifestid.data = (uint8_t *)g->manifest_id;
  sd.manifestid.len = strlen(g->manifest_id);
  sd.seq = (int64_t)g->cur;
  sd.hash.data = hash;
  sd.hash.len = sizeof hash;
  sd.profiles.data = (uint8_t *)"invalid";
  sd.profiles.len = 7;
  sd.duration = g->duration_ms;
  sd.capabilities = &caps;
  sd.auth_token = g->info->auth_token;
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
  char *url = NULL;
  lp_buf_t ub = LP_BUF_INIT;
  if (!lp_buf_appendf(&ub, "%s/segment", g->info->transcoder) && !lp_buf_append(&ub, "", 1))
    url = (char *)ub.data;
  net_header_t hdrs[] = {
      {"Livepeer-Segment", b64}, {"Livepeer-Payment", ""}, {"Content-Type", "video/MP2T"}};
  net_fetch_opts_t o;
  memset(&o, 0, sizeof o);
  o.method = "POST";
  o.url = url;
  o.headers = hdrs;
  o.nheaders = LP_ARRAY_LEN(hdrs);
  o.body = g->seg;
  o.body_len = len;
  o.insecure = true;
  /* the gateway's whole-exchange deadline: max(8 s, 4 x duration) */
  o.timeout_ms = (uint64_t)LP_MAX(8000, 4 * (int64_t)g->duration_ms);
  g->t_start = lp_now_ms();
  int rc = url && b64 ? net_client_fetch(g->cli, &o, segment_done, g, NULL) : LP_ENOMEM;
  free(url);
  free(b64);
  if (rc) {
    net_fetch_result_t fail = {rc, "could not start the upload", 0, NULL, 0, NULL, 0};
    segment_done(&fail, g);
  }
}

/* ---- discovery ------------------------------------------------------------------------------- */
static int info_msg(const uint8_t *msg, size_t len, void *arg) {
  gw_t *g = arg;
  if (g->info) net__orchestrator_info__free_unpacked(g->info, NULL);
  g->info = net__orchestrator_info__unpack(NULL, len, msg);
  return g->info ? 0 : LP_EPROTO;
}

static void info_done(int status, const char *message, void *arg) {
  gw_t *g = arg;
  if (status != NET_GRPC_OK || !g->info) {
    fprintf(stderr, "GetOrchestrator %s: grpc-status %d %s\n", g->base, status,
            message ? message : "");
    g->failures++;
    gw_end(g);
    return;
  }
  const Net__OrchestratorInfo *i = g->info;
  /* go's gateway drops an orchestrator without these */
  if (!i->transcoder || !i->transcoder[0] || !i->auth_token) {
    fprintf(stderr, "GetOrchestrator %s: no service URI or auth token: not usable\n", g->base);
    g->failures++;
    net__orchestrator_info__free_unpacked(g->info, NULL);
    g->info = NULL;
    gw_end(g);
    return;
  }
  printf("orchestrator %s session %s version %s caps 0x%llx\n", i->transcoder,
         i->auth_token->session_id, i->capabilities ? i->capabilities->version : "",
         i->capabilities && i->capabilities->n_bitstring
             ? (unsigned long long)i->capabilities->bitstring[0]
             : 0ull);
  gw_next(g);
}

static void gw_discover(gw_t *g) {
  uint8_t zero[20] = {0};
  uint64_t bits = job_caps(g, "h264");
  Net__Capabilities caps = NET__CAPABILITIES__INIT;
  caps.n_bitstring = 1;
  caps.bitstring = &bits;
  Net__OrchestratorRequest req = NET__ORCHESTRATOR_REQUEST__INIT;
  req.address.data = zero;
  req.address.len = sizeof zero;
  req.capabilities = &caps;
  uint8_t buf[256];
  size_t n = net__orchestrator_request__pack(&req, buf);
  net_grpc_call_opts_t o = {g->base, "/net.Orchestrator/GetOrchestrator", buf, n, true, 5000, 0};
  if (net_client_grpc(g->cli, &o, info_msg, info_done, g, NULL)) {
    fprintf(stderr, "cannot start GetOrchestrator to %s\n", g->base);
    g->failures++;
    gw_end(g);
  }
}

/* ---- flags -------------------------------------------------------------------------------------
 */
static char **split_list(const char *s, size_t *n) {
  char *copy = strdup(s);
  size_t cap = 1;
  for (const char *p = s; *p; p++) cap += *p == ',';
  char **out = calloc(cap + 1, sizeof *out);
  *n = 0;
  if (!copy || !out) abort();
  for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
    if (*lp_strtrim(t)) out[(*n)++] = strdup(lp_strtrim(t));
  free(copy);
  return out;
}

int orch_cli_gateway(int argc, char **argv) {
  gw_t g;
  memset(&g, 0, sizeof g);
  g.duration_ms = 2000;
  g.end_session = true;
  const char *in = NULL, *ladder = "P240p30fps16x9,P360p30fps16x9", *manifest = "lpod-gateway";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    while (*a == '-') a++;
    const char *eq = strchr(a, '=');
    size_t klen = eq ? (size_t)(eq - a) : strlen(a);
    const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
#define FLAG(name) (klen == strlen(name) && strncmp(a, name, klen) == 0)
    if (FLAG("endSession")) {
      g.end_session = !(eq && (strcmp(v, "false") == 0 || strcmp(v, "0") == 0));
      continue;
    }
    if (FLAG("help") || FLAG("h")) return usage();
    if (!v) return usage();
    if (!eq) i++;
    if (FLAG("orchAddr"))
      g.orch_addr = (char *)v;
    else if (FLAG("in"))
      in = v;
    else if (FLAG("transcodingOptions"))
      ladder = v;
    else if (FLAG("out"))
      g.out_dir = (char *)v;
    else if (FLAG("manifestID"))
      manifest = v;
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
      return usage();
    }
#undef FLAG
  }
  if (!g.orch_addr || !in) return usage();
  char err[256];
  if (media_profiles_parse(ladder, &g.profiles, &g.n_profiles, err, sizeof err)) {
    fprintf(stderr, "-transcodingOptions: %s\n", err);
    return 2;
  }
  if (g.out_dir && lp_mkdir_p(g.out_dir, 0755)) {
    fprintf(stderr, "cannot create %s\n", g.out_dir);
    free(g.profiles);
    return 1;
  }
  g.manifest_id = (char *)manifest;
  g.inputs = split_list(in, &g.n_inputs);
  /* go's gateway: https:// and port 8935 unless given */
  lp_buf_t b = LP_BUF_INIT;
  const char *addr = g.orch_addr;
  bool has_scheme = strstr(addr, "://") != NULL;
  const char *host = has_scheme ? strstr(addr, "://") + 3 : addr;
  const char *rb = host[0] == '[' ? strchr(host, ']') : NULL;
  bool has_port = rb ? rb[1] == ':' : strchr(host, ':') != NULL;
  if (lp_buf_appendf(&b, "%s%s%s", has_scheme ? "" : "https://", addr, has_port ? "" : ":8935") ||
      lp_buf_append(&b, "", 1))
    abort();
  g.base = (char *)b.data;
  size_t bl = strlen(g.base);
  while (bl && g.base[bl - 1] == '/') g.base[--bl] = 0;

  uv_loop_t loop;
  uv_loop_init(&loop);
  g.loop = &loop;
  g.cli = net_client_new(&loop);
  if (!g.cli) abort();
  uv_timer_init(&loop, &g.end_timer);
  g.end_timer.data = &g;
  gw_discover(&g);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

  if (g.info) net__orchestrator_info__free_unpacked(g.info, NULL);
  for (size_t i = 0; i < g.n_inputs; i++) free(g.inputs[i]);
  free(g.inputs);
  free(g.profiles);
  free(g.base);
  printf("%zu segment(s), %d failure(s)\n", g.n_inputs, g.failures);
  return g.failures ? 1 : 0;
}
