/* Admission by the cost of the work (docs/capacity.md) for a node that transcodes itself: the
 * device table's devices in the scheduler, calibration at start, a check at GetOrchestrator and
 * at a new session's first segment, placement on a device, the real-time feedback of every
 * segment, and a stream that cannot keep up failed on its own. Everything here runs on the loop
 * thread, except orch_admit_new, which runs before the loop does. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/avutil.h>

#include "lpod/media.h"
#include "lpod/metrics.h"
#include "orch_int.h"

/* Telemetry sampling period. */
#define POLL_MS 2000
#define SAVE_POLLS 30 /* the learnt ladders are saved every minute */
#define HOLD_MS 30000 /* room held for a first segment still arriving lapses after this */
/* Sessions remembered as failed for falling behind, so their later segments get the error. */
#define BEHIND_KEEP 64

struct orch_admit {
  lp_sched_t *sched;
  lp_sched_preset_t cpu_preset; /* the tier of -cpuPreset */
  char cpu_preset_name[16];     /* -cpuPreset itself */
  const hw_table_t *table;      /* scheduler device i is table device i */
  uv_timer_t poll;
  char *datadir;              /* where the learnt ladders are kept */
  unsigned polls;             /* since start */
  struct ladder_save *saving; /* the ladders' write in progress on the thread pool, or NULL */
  struct {
    lp_metric_t *committed, *budget, *busy, *rt, *corr, *cost, *streams, *behind, *telemetry;
  } g; /* lpod_device_* gauges */
  char behind[BEHIND_KEEP][ORCH_SESSION_ID_LEN * 4 + 1];
  double behind_ratio[BEHIND_KEEP];
  int behind_next;
};

static lp_sched_dev_kind_t kind_of(const hw_device_t *d) {
  const char *n = d->be ? d->be->name : "sw";
  if (strcmp(n, "nvidia") == 0) return LP_SCHED_DEV_NVIDIA;
  if (strcmp(n, "qsv") == 0) return LP_SCHED_DEV_QSV;
  if (strcmp(n, "netint") == 0) return LP_SCHED_DEV_NETINT;
  return LP_SCHED_DEV_CPU;
}

/* Segments of the reference ladder's run: the first warms the session (its encoders open), the
 * others are timed. Each is 2 s at 30 frames/s, as go-livepeer's gateways cut them. */
#define LADDER_SEGMENTS 3
#define LADDER_FRAMES 60

/* Calibration's reference ladder on the CPU, end to end: a segment of the calibration's source
 * through a media session as the node runs a stream's (-cpuPreset), one after another, timed by
 * the wall clock. */
static int bench_ladder(orch_admit_t *a, const lp_sched_device_desc_t *dev,
                        const lp_sched_bench_req_t *req, double *fps, double *src_bpp) {
  if (dev->kind != LP_SCHED_DEV_CPU || req->codec != LP_SCHED_CODEC_H264 ||
      req->n_renditions == 0 || req->n_renditions > MEDIA_MAX_OUTPUTS)
    return LP_EUNSUPP;
  media_profile_t prof[MEDIA_MAX_OUTPUTS];
  memset(prof, 0, sizeof prof);
  for (size_t i = 0; i < req->n_renditions; i++) {
    const lp_sched_rendition_t *r = &req->renditions[i];
    if (r->codec != LP_SCHED_CODEC_H264) return LP_EUNSUPP;
    snprintf(prof[i].name, sizeof prof[i].name, "ref%zu", i);
    prof[i].width = r->width;
    prof[i].height = r->height;
    double rate = r->fps > 0 ? r->fps : 30; /* the source's */
    prof[i].fps = (uint32_t)lround(rate);
    /* a tenth of a bit per pixel, about go-livepeer's own ladder's rates */
    prof[i].bitrate = (int32_t)((double)r->width * r->height * rate * 0.1);
  }
  uint8_t *seg = NULL;
  size_t len = 0;
  double bpp = req->bpp > 0 ? req->bpp : LP_SCHED_REF_BPP, made = 0;
  int rc = hw_clip_segment(HW_CODEC_H264, req->in_width, req->in_height, LADDER_FRAMES, bpp, &seg,
                           &len, &made);
  if (rc) return rc;
  media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
  o.preset = a->cpu_preset_name;
  o.log.session_id = "calibration";
  media_session_t *ms = media_session_new(&o);
  uint64_t t0 = 0;
  rc = ms ? 0 : LP_EDEVICE;
  for (int k = 0; k < LADDER_SEGMENTS && !rc; k++) {
    if (k == 1) t0 = lp_now_ns();
    media_result_t res;
    rc = media_session_transcode(ms, seg, len, prof, req->n_renditions, &res);
    if (!rc && res.n != req->n_renditions) rc = LP_EMEDIA;
    if (rc)
      LOGW("capacity: the reference ladder failed: %s", res.error[0] ? res.error : lp_strerror(rc));
    media_result_free(&res);
  }
  uint64_t t1 = lp_now_ns();
  media_session_free(ms);
  free(seg);
  if (rc) return rc;
  *fps = (double)(LADDER_SEGMENTS - 1) * LADDER_FRAMES / ((double)(t1 - t0) / 1e9);
  *src_bpp = made;
  return 0;
}

int orch_admit_bench(orch_admit_t *a, const lp_sched_device_desc_t *dev,
                     const lp_sched_bench_req_t *req, double *fps, double *src_bpp) {
  const hw_device_t *d = NULL;
  for (int i = 0; i < a->table->n && !d; i++)
    if (strcmp(a->table->dev[i].name, dev->name) == 0) d = &a->table->dev[i];
  if (!d) return LP_ENOENT;
  if (req->stage == LP_SCHED_STAGE_LADDER) return bench_ladder(a, dev, req, fps, src_bpp);
  static const hw_bench_stage_t stages[] = {HW_BENCH_DECODE, HW_BENCH_SCALE, HW_BENCH_ENCODE};
  hw_bench_req_t r;
  memset(&r, 0, sizeof r);
  r.stage = stages[req->stage];
  r.codec = (hw_codec_t)req->codec;
  r.preset = req->stage == LP_SCHED_STAGE_ENCODE
                 ? hw_bench_preset_name(d, (hw_codec_t)req->codec, (int)req->preset)
                 : NULL;
  /* The CPU's x264/x265 run at -cpuPreset: its tier is measured at that very preset, not the
   * tier's representative (ultrafast is several times faster than veryfast, both "fast"). */
  if (req->stage == LP_SCHED_STAGE_ENCODE && kind_of(d) == LP_SCHED_DEV_CPU &&
      req->preset == a->cpu_preset &&
      (req->codec == LP_SCHED_CODEC_H264 || req->codec == LP_SCHED_CODEC_HEVC))
    r.preset = a->cpu_preset_name;
  r.in_w = req->in_width;
  r.in_h = req->in_height;
  r.out_w = req->out_width;
  r.out_h = req->out_height;
  /* A stage on the CPU is charged as a share of all its cores (docs/capacity.md, Calibration):
   * timed by CPU time, then spread over the effective CPU count. (A device's CPU-route encodes
   * are not measured on it: the CPU device's figures price them.) */
  r.cpu_time = kind_of(d) == LP_SCHED_DEV_CPU;
  r.bpp = req->bpp;
  char why[192] = "";
  int rc = hw_bench_stage(d, &r, fps, src_bpp, why, sizeof why);
  if (rc == 0 && r.cpu_time && dev->cpus > 0) *fps *= dev->cpus;
  if (rc == 0 && req->stage == LP_SCHED_STAGE_ENCODE)
    LOGV(LP_V_DEBUG, "capacity: %s encode %s %s (%s): %.1f fps", d->name,
         lp_sched_codec_name(req->codec), lp_sched_preset_name(req->preset),
         r.preset ? r.preset : "default", *fps);
  else if (rc == 0 && req->stage == LP_SCHED_STAGE_DECODE)
    LOGV(LP_V_DEBUG, "capacity: %s decode %s at %.2f bits per pixel: %.1f fps", d->name,
         lp_sched_codec_name(req->codec), src_bpp ? *src_bpp : 0, *fps);
  else if (rc == 0)
    LOGV(LP_V_DEBUG, "capacity: %s scale: %.1f fps", d->name, *fps);
  else if (rc != LP_EUNSUPP)
    LOGW("capacity: calibration of %s failed: %s", d->name, why[0] ? why : lp_strerror(rc));
  return rc;
}

static int bench(void *ud, const lp_sched_device_desc_t *dev, const lp_sched_bench_req_t *req,
                 double *fps, double *src_bpp) {
  return orch_admit_bench(ud, dev, req, fps, src_bpp);
}

/* What a device cannot do costs nothing in the model but must not be placed there: its
 * coefficient becomes 0, which the scheduler reads as unsupported. */
static void mask_coefs(lp_sched_t *s, int i, const hw_device_t *d) {
  lp_sched_coefs_t c;
  if (lp_sched_get_coefs(s, i, &c)) return;
  for (int k = 0; k < LP_SCHED_CODECS && k < HW_CODECS; k++) {
    if (!(d->dec & HW_CODEC_BIT(k))) c.decode[k] = c.decode_mbit[k] = 0;
    if (!((d->enc | d->enc_cpu) & HW_CODEC_BIT(k)))
      for (int q = 0; q < LP_SCHED_PRESETS; q++) c.encode[k][q] = 0;
  }
  lp_sched_set_coefs(s, i, &c);
}

/* The learnt ladders' file, written on the thread pool: its fsync would hold up the loop. */
typedef struct ladder_save {
  uv_work_t req;
  orch_admit_t *a; /* NULL once the model is freed */
  char *dir, *text;
  char *then; /* written next: the ladders at the model's end, after the write in progress */
  uint64_t gen;
  int rc;
} ladder_save_t;

static void save_work(uv_work_t *r) {
  ladder_save_t *w = r->data;
  w->rc = lp_sched_ladders_write(w->dir, w->text);
}

static void save_after(uv_work_t *r, int status) {
  ladder_save_t *w = r->data;
  if (w->a) {
    w->a->saving = NULL;
    if (status == 0 && w->rc == 0) lp_sched_ladders_written(w->a->sched, w->gen);
  }
  free(w->text);
  w->text = w->then;
  w->then = NULL;
  if (w->text && uv_queue_work(r->loop, &w->req, save_work, save_after) == 0) return;
  free(w->text);
  free(w->dir);
  free(w);
}

void orch_admit_save(orch_admit_t *a) {
  if (!a || !a->datadir || a->saving) return;
  char *text = NULL;
  uint64_t gen = 0;
  if (lp_sched_ladders_text(a->sched, av_version_info(), &text, &gen) || !text) return;
  ladder_save_t *w = calloc(1, sizeof *w);
  char *dir = w ? strdup(a->datadir) : NULL;
  if (!dir) {
    free(w);
    free(text);
    return;
  }
  *w = (ladder_save_t){.a = a, .dir = dir, .text = text, .gen = gen};
  w->req.data = w;
  if (uv_queue_work(a->poll.loop, &w->req, save_work, save_after)) {
    free(text);
    free(dir);
    free(w);
    return;
  }
  a->saving = w;
}

/* A device name as a label value: the registry separates values with commas. */
static void label_name(const char *name, char *out, size_t len) {
  snprintf(out, len, "%s", name);
  for (char *p = out; *p; p++)
    if (*p == ',') *p = ';';
}

/* What the model has room for, in the probe shape operators size nodes by. */
static void log_room(const orch_admit_t *a, double target, const char *why) {
  LOGI("capacity: room for %d streams of 720p30 -> 360p30 H.264 at target real-time ratio %.2f%s",
       lp_sched_capacity_for(a->sched, NULL), target, why);
}

/* The lpod_device_* gauges, registered once; orch_admit_metrics sets them when /metrics is
 * read. */
static void gauges_register(orch_admit_t *a) {
  a->g.committed = lp_metric_gauge("lpod_device_work_committed",
                                   "Work admitted on a device engine, in work units per second",
                                   "device,engine");
  a->g.budget = lp_metric_gauge(
      "lpod_device_work_budget",
      "Work a device engine admits up to now: target ratio x 1000 x correction", "device,engine");
  a->g.busy =
      lp_metric_gauge("lpod_device_busy",
                      "Share of a device engine's time busy, from its telemetry", "device,engine");
  a->g.rt = lp_metric_gauge("lpod_device_realtime_ratio",
                            "Moving average of transcode time over segment duration on a "
                            "device",
                            "device");
  a->g.corr = lp_metric_gauge("lpod_device_correction",
                              "Budget multiplier the measurements have taught a device", "device");
  a->g.cost =
      lp_metric_gauge("lpod_device_cost_ratio",
                      "Measured over modelled cost of a device's work (telemetry)", "device");
  a->g.streams = lp_metric_gauge("lpod_device_streams", "Streams placed on a device", "device");
  a->g.behind =
      lp_metric_gauge("lpod_device_behind",
                      "1 while a device is behind real time and refuses new streams", "device");
  a->g.telemetry = lp_metric_gauge(
      "lpod_device_telemetry_up",
      "1 while a device's telemetry samples come in, 0 while they fail; NaN without a source",
      "device");
}

void orch_admit_metrics(const orch_admit_t *a) {
  for (int i = 0; i < lp_sched_device_count(a->sched); i++) {
    lp_sched_device_info_t di;
    if (lp_sched_device_info(a->sched, i, &di)) continue;
    char dev[64], lab[160];
    label_name(di.name, dev, sizeof dev);
    for (int e = 0; e < di.n_engines; e++) {
      snprintf(lab, sizeof lab, "%s,%s", dev, lp_sched_engine_name(di.kind, e));
      lp_metric_set(a->g.committed, lab, di.committed[e]);
      lp_metric_set(a->g.budget, lab, di.budget[e]);
      lp_metric_set(a->g.busy, lab, di.measured[e] >= 0 ? di.measured[e] / 1000 : NAN);
    }
    lp_metric_set(a->g.rt, dev, di.rt_ratio);
    lp_metric_set(a->g.corr, dev, di.correction);
    lp_metric_set(a->g.cost, dev, di.cost_ratio > 0 ? di.cost_ratio : NAN);
    lp_metric_set(a->g.streams, dev, di.sessions);
    lp_metric_set(a->g.behind, dev, di.behind ? 1 : 0);
    lp_metric_set(a->g.telemetry, dev, di.telemetry < 0 ? NAN : di.telemetry);
  }
}

static void poll_fire(uv_timer_t *t) {
  orch_admit_t *a = t->data;
  lp_sched_poll(a->sched);
  if (++a->polls % SAVE_POLLS == 0) orch_admit_save(a);
}

int orch_admit_new(uv_loop_t *loop, const lp_config_t *cfg, const hw_table_t *table, bool measure,
                   orch_admit_t **out) {
  *out = NULL;
  orch_admit_t *a = calloc(1, sizeof *a);
  if (!a) return LP_ENOMEM;
  a->table = table;
  snprintf(a->cpu_preset_name, sizeof a->cpu_preset_name, "%s", cfg->cpu_preset);
  lp_sched_opts_t o;
  lp_sched_opts_from_config(cfg, &o);
  a->cpu_preset = o.cpu_preset; /* the scheduler's reference ladder is encoded at it too */
  /* -maxSessions (the session table's count cap) is also the scheduler's, so its refusals and
   * numbers name it; auto is 0 there: no count cap. */
  int rc = lp_sched_new(&o, &a->sched);
  if (rc) goto fail;
  lp_sched_cpu_limits_t lim;
  double cpus = lp_sched_cpu_limits(NULL, &lim) == 0 ? lim.effective : 1;
  for (int i = 0; i < table->n; i++) {
    const hw_device_t *d = &table->dev[i];
    lp_sched_device_desc_t desc;
    memset(&desc, 0, sizeof desc);
    desc.kind = kind_of(d);
    desc.name = d->name;
    /* the CPU's measurements hold for one -cpuPreset: another one calibrates again */
    char cpu_id[160];
    snprintf(cpu_id, sizeof cpu_id, "%s, preset %s", d->model, a->cpu_preset_name);
    desc.id = d->id[0] ? d->id : desc.kind == LP_SCHED_DEV_CPU ? cpu_id : d->model;
    desc.driver = d->driver;
    desc.cpus = cpus;
    desc.max_enc_sessions = d->max_enc_sessions;
    desc.mem_total = d->mem_total;
    /* what a device encodes on the CPU from its frames (a GPU without NVENC) shares the cores
     * of the CPU device, and is charged there */
    if (desc.kind != LP_SCHED_DEV_CPU) desc.cpu_encode = d->enc_cpu & ~d->enc;
    /* and what it scales in host memory (NETINT) */
    desc.cpu_scale = desc.kind != LP_SCHED_DEV_CPU && d->be && d->be->scale_on_host;
    int idx;
    if ((rc = lp_sched_add_device(a->sched, &desc, &idx))) goto fail;
    lp_sched_source_t *src = NULL;
    int src_rc = LP_EUNSUPP;
    if (desc.kind == LP_SCHED_DEV_CPU)
      src_rc = lp_sched_source_cpu_new(NULL, &src);
    else if (desc.kind == LP_SCHED_DEV_NVIDIA)
      src_rc = lp_sched_source_nvml_new((unsigned)d->index, &src);
    else if (desc.kind == LP_SCHED_DEV_QSV) {
      /* the PMU of this device's GPU (a host may have several), else the first one found */
      const char *node = strrchr(d->id, '/');
      char pmu[600];
      bool own = node && lp_sched_intel_pmu_for(NULL, node + 1, pmu, sizeof pmu) == 0;
      src_rc = lp_sched_source_intel_new(NULL, own ? pmu : NULL, &src);
      /* without perf access (the systemd unit's user): the node's and its workers' own clients
       * of that GPU, from fdinfo */
      if (src_rc && node && lp_sched_source_drm_fdinfo_new(NULL, node + 1, &src) == 0) {
        src_rc = 0;
        LOGI("capacity: %s: Intel engine telemetry from lpod's own clients of %s (DRM fdinfo); "
             "other processes' work on that GPU is not seen",
             desc.name, node + 1);
      }
    } else if (desc.kind == LP_SCHED_DEV_NETINT)
      src_rc = lp_sched_source_netint_new(cfg->netint_monitor, d->index, 0, &src);
    if (src_rc == 0) lp_sched_attach_source(a->sched, idx, src);
  }
  char err[256] = "";
  if (cfg->per_device_max && cfg->per_device_max[0]) {
    int *caps = NULL;
    size_t n = 0;
    rc = lp_sched_parse_device_caps(cfg->per_device_max, &caps, &n, err, sizeof err);
    if (!rc) rc = lp_sched_apply_device_caps(a->sched, caps, n, err, sizeof err);
    free(caps);
    if (rc) {
      LOGE("%s", err);
      goto fail;
    }
  }
  /* -testTranscoder=false skips every start-up measurement: a valid cached calibration is
   * still used, other devices run on the built-in coefficients. */
  measure = measure && cfg->test_transcoder;
  if (measure)
    LOGI("capacity: devices without a valid cached calibration in %s are measured now%s",
         cfg->datadir, cfg->calibrate ? " (-calibrate: all of them)" : "");
  lp_sched_calibrate(a->sched, cfg->datadir, av_version_info(), measure && cfg->calibrate,
                     measure ? bench : NULL, a);
  for (int i = 0; i < table->n; i++) mask_coefs(a->sched, i, &table->dev[i]);
  /* the ladders' lines are in the calibration's units: read after it */
  if (cfg->datadir && cfg->datadir[0]) {
    a->datadir = strdup(cfg->datadir);
    if (!a->datadir) goto fail;
    lp_sched_ladders_load(a->sched, a->datadir, av_version_info(), NULL);
  }
  lp_sched_log_summary(a->sched);
  log_room(a, o.target_rt_ratio, "");
  uv_timer_init(loop, &a->poll);
  a->poll.data = a;
  uv_timer_start(&a->poll, poll_fire, POLL_MS, POLL_MS);
  gauges_register(a);
  *out = a;
  return 0;
fail:
  lp_sched_free(a->sched);
  free(a->datadir);
  free(a);
  return rc ? rc : LP_ENOMEM;
}

static void poll_closed(uv_handle_t *h) { free(h->data); }

void orch_admit_free(orch_admit_t *a) {
  if (!a) return;
  if (a->saving) {
    /* the write in progress writes what was learnt since, after its own, so the newest lands
     * last and the two never overlap */
    uint64_t gen;
    lp_sched_ladders_text(a->sched, av_version_info(), &a->saving->then, &gen);
    a->saving->a = NULL;
  } else if (a->datadir) {
    lp_sched_ladders_save(a->sched, a->datadir, av_version_info()); /* at stop: may block */
  }
  free(a->datadir);
  a->datadir = NULL;
  lp_sched_free(a->sched);
  a->sched = NULL;
  uv_timer_stop(&a->poll);
  uv_close((uv_handle_t *)&a->poll, poll_closed);
}

static void count_refusal(const lp_sched_verdict_t *v) {
  lp_metric_add(lp_metric_counter("lpod_admission_refused_total",
                                  "Work refused by the capacity model, by reason", "reason"),
                lp_sched_reason_name(v->reason), 1);
}

static const char *behind_find(const orch_admit_t *a, const char *session_id, double *ratio) {
  for (int i = 0; i < BEHIND_KEEP; i++)
    if (a->behind[i][0] && strcmp(a->behind[i], session_id) == 0) {
      *ratio = a->behind_ratio[i];
      return a->behind[i];
    }
  return NULL;
}

/* Renditions of the wire profiles for a source of in_w x in_h (the engine's aspect fit). */
static void renditions_from(const orch_profile_t *profiles, size_t n, int in_w, int in_h,
                            lp_sched_preset_t preset, lp_sched_job_t *sj) {
  for (size_t i = 0; i < n && sj->n_renditions < LP_SCHED_MAX_RENDITIONS; i++) {
    const orch_profile_t *op = &profiles[i];
    media_profile_t mp;
    memset(&mp, 0, sizeof mp);
    mp.width = op->width;
    mp.height = op->height;
    mp.fps = op->fps;
    mp.fps_den = op->fps_den;
    int w = op->width, h = op->height;
    if (media_profile_fit(&mp, in_w, in_h, "sw", &w, &h) != 0) continue;
    lp_sched_rendition_t *r = &sj->renditions[sj->n_renditions++];
    r->width = w;
    r->height = h;
    r->fps = op->fps ? (double)op->fps / (op->fps_den ? op->fps_den : 1) : 0;
    r->codec =
        (lp_sched_codec_t)(op->encoder >= 0 && op->encoder < LP_SCHED_CODECS ? op->encoder : 0);
    r->preset = preset;
  }
}

/* The job a segment describes: its source as the demuxer sees it, its renditions as the
 * engine will size them. */
static int job_from(const orch_admit_t *a, const orch_job_t *job, lp_sched_job_t *sj, char *why,
                    size_t wlen) {
  memset(sj, 0, sizeof *sj);
  media_probe_t p;
  if (media_probe_stream(job->input, job->input_len, &p) != 0 || !p.has_video || p.width <= 0 ||
      p.height <= 0) {
    /* Audio-only or unreadable: the engine answers it; it costs next to nothing here. */
    snprintf(why, wlen, "no video to weigh");
    return LP_EMEDIA;
  }
  sj->in_width = p.width;
  sj->in_height = p.height;
  sj->in_fps = p.fps;
  /* the whole segment's rate, audio and container included: a little above the video's (a
   * duration under 100 ms says little of a rate: left unknown) */
  if (job->duration_ms >= 100)
    sj->in_mbps = (double)job->input_len * 8 / ((double)job->duration_ms * 1000);
  lp_sched_codec_t c;
  sj->in_codec = lp_sched_codec_from_name(p.video_codec, &c) == 0 ? c : LP_SCHED_CODEC_H264;
  renditions_from(job->profiles, job->n_profiles, p.width, p.height, a->cpu_preset, sj);
  return 0;
}

int orch_admit_room(orch_admit_t *a, const char *session_id, const orch_profile_t *profiles,
                    size_t n, bool *held, bool may_spill) {
  if (held) *held = false;
  lp_sched_job_t sj, *job = NULL;
  if (profiles && n > 0) {
    /* The source is not known before the body: the smallest it can be is the largest
     * rendition, so a refusal here is certain, and the body's weighing decides the rest. */
    memset(&sj, 0, sizeof sj);
    for (size_t i = 0; i < n; i++) {
      sj.in_width = LP_MAX(sj.in_width, profiles[i].width);
      sj.in_height = LP_MAX(sj.in_height, profiles[i].height);
    }
    sj.in_codec = LP_SCHED_CODEC_H264;
    renditions_from(profiles, n, sj.in_width, sj.in_height, a->cpu_preset, &sj);
    if (sj.in_width > 0 && sj.in_height > 0 && sj.n_renditions > 0) job = &sj;
  } else {
    /* GetOrchestrator says nothing of the stream: refuse only when not even the smallest one
     * (144p in, one 144p rendition) fits, and let the first segment's weighing decide. A
     * 720p probe here turned away light streams a nearly full node still had room for. */
    memset(&sj, 0, sizeof sj);
    sj.in_width = 256;
    sj.in_height = 144;
    sj.in_fps = 30;
    sj.in_codec = LP_SCHED_CODEC_H264;
    sj.n_renditions = 1;
    sj.renditions[0] = (lp_sched_rendition_t){256, 144, 30, LP_SCHED_CODEC_H264, a->cpu_preset};
    job = &sj;
  }
  lp_sched_verdict_t v;
  int holds = lp_sched_holds(a->sched), rc;
  /* a new stream's first segment: its least cost is held while its body arrives, so that the
   * streams arriving meanwhile are turned away now rather than after their upload */
  if (profiles && job && session_id && held)
    rc = lp_sched_hold(a->sched, session_id, job, HOLD_MS, held, &v);
  else
    rc = lp_sched_check(a->sched, job, &v);
  if (rc == LP_ECAPACITY) {
    const char *beside = holds ? " (with the room held for streams arriving)" : "";
    if (may_spill) {
      /* not a refusal: a remote transcoder can take it */
      LOGV(LP_V_VERBOSE,
           "capacity: no room here for a new stream (%s: %s%s); a remote "
           "transcoder can take it",
           lp_sched_reason_name(v.reason), v.detail, beside);
      return rc;
    }
    if (job && profiles && session_id) {
      /* a stream's first segment turned away before its body: as telling for the operator as
       * a refusal after weighing, so logged alike */
      lp_logctx_t lc = LP_LOGCTX_INIT;
      lc.orch_session_id = session_id;
      LOGW_C(&lc,
             "capacity: refused at its credentials, a source of at least %dx%d -> %zu "
             "renditions: %s: %s%s",
             sj.in_width, sj.in_height, sj.n_renditions, lp_sched_reason_name(v.reason), v.detail,
             beside);
    } else {
      /* GetOrchestrator, which gateways ask often */
      LOGV(LP_V_VERBOSE, "capacity: no room for a new stream: %s: %s%s",
           lp_sched_reason_name(v.reason), v.detail, beside);
    }
    count_refusal(&v);
  }
  return rc == LP_ECAPACITY ? rc : 0;
}

void orch_admit_unhold(orch_admit_t *a, const char *session_id) {
  lp_sched_unhold(a->sched, session_id);
}

/* A job as the capacity log lines name it: "1920x1080@30.00 at 55.51 Mbit/s -> 4 renditions", or
 * "at an unknown rate" where the segment was too short to tell (priced at LP_SCHED_REF_BPP). */
static void job_text(const lp_sched_job_t *sj, char *buf, size_t len) {
  char rate[48] = "an unknown rate";
  if (sj->in_mbps > 0) snprintf(rate, sizeof rate, "%.2f Mbit/s", sj->in_mbps);
  snprintf(buf, len, "%dx%d@%.2f at %s -> %zu renditions", sj->in_width, sj->in_height, sj->in_fps,
           rate, sj->n_renditions);
}

int orch_admit_session(orch_admit_t *a, orch_job_t *job, bool is_new, bool may_spill, char *err,
                       size_t errlen) {
  double ratio;
  if (behind_find(a, job->session_id, &ratio)) {
    snprintf(err, errlen,
             "stream cannot keep up in real time (transcoding took %.2fx the segment duration)",
             ratio);
    return LP_ERANGE;
  }
  int placed = lp_sched_session_device(a->sched, job->session_id);
  if (placed >= 0 || !is_new) {
    /* admitted already, or a stream that began without video to weigh: never refused now */
    job->device = placed >= 0 ? placed : 0;
    return 0;
  }
  lp_sched_job_t sj;
  char why[64];
  if (job_from(a, job, &sj, why, sizeof why) != 0) {
    job->device = 0; /* the CPU: the engine finds out what the segment holds */
    return 0;
  }
  lp_sched_verdict_t v;
  int rc = lp_sched_admit(a->sched, job->session_id, &sj, &v);
  char what[128];
  job_text(&sj, what, sizeof what);
  lp_logctx_t lc = LP_LOGCTX_INIT;
  lc.orch_session_id = job->session_id;
  lc.manifest_id = job->manifest_id;
  if (rc == 0) {
    job->device = v.device;
    lp_sched_session_info_t si;
    lp_sched_session_info(a->sched, job->session_id, &si);
    LOGI_C(&lc, "capacity: admitted %s on %s cost=%.0fwu/s sessions=%d", what, v.detail, si.cost,
           lp_sched_sessions(a->sched));
    return 0;
  }
  snprintf(err, errlen, "OrchestratorCapped");
  if (may_spill) {
    LOGI_C(&lc, "capacity: no room here for %s (%s: %s); a remote transcoder takes it", what,
           lp_sched_reason_name(v.reason), v.detail);
    return LP_ECAPACITY;
  }
  count_refusal(&v);
  LOGW_C(&lc, "capacity: refused %s: %s: %s", what, lp_sched_reason_name(v.reason), v.detail);
  return LP_ECAPACITY;
}

bool orch_admit_segment_done(orch_admit_t *a, const orch_job_t *job) {
  if (job->error[0] || job->duration_ms <= 0) return false;
  lp_sched_health_t h = lp_sched_report_segment(
      a->sched, job->session_id, job->service_ns / 1000000, (uint64_t)job->duration_ms);
  if (h != LP_SCHED_STREAM_BEHIND) return false;
  lp_sched_session_info_t si;
  double ratio = lp_sched_session_info(a->sched, job->session_id, &si) == 0 ? si.rt_ratio : 0;
  snprintf(a->behind[a->behind_next], sizeof a->behind[0], "%s", job->session_id);
  a->behind_ratio[a->behind_next] = ratio;
  a->behind_next = (a->behind_next + 1) % BEHIND_KEEP;
  /* Its capacity goes back to the others now; its session runs out on the idle timer, so the
   * renditions already answered stay downloadable. */
  lp_sched_release(a->sched, job->session_id);
  lp_metric_add(lp_metric_counter("lpod_streams_behind_total",
                                  "Streams failed for not keeping real time", NULL),
                NULL, 1);
  return true;
}

void orch_admit_release(orch_admit_t *a, const char *session_id) {
  lp_sched_release(a->sched, session_id);
}

void orch_admit_set_max(orch_admit_t *a, int max_sessions) {
  lp_sched_set_max_sessions(a->sched, max_sessions);
}

int orch_admit_set_target(orch_admit_t *a, double ratio) {
  int rc = lp_sched_set_target(a->sched, ratio);
  if (rc == 0) log_room(a, ratio, " (set at run time)");
  return rc;
}

void orch_admit_device_down(orch_admit_t *a, int device, bool down) {
  lp_sched_set_device_down(a->sched, device, down);
}

int orch_admit_capacity(const orch_admit_t *a) { return lp_sched_capacity_for(a->sched, NULL); }

void orch_admit_status(const orch_admit_t *a, cJSON *obj) {
  cJSON *cap = cJSON_CreateObject();
  if (!cap) return;
  lp_sched_fill_json(a->sched, cap);
  cJSON_AddNumberToObject(cap, "probeJobCapacity", lp_sched_capacity_for(a->sched, NULL));
  cJSON_AddItemToObject(obj, "Capacity", cap);
}
