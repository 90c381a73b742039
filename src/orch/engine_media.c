/* The engine seam on the media module: one media session per orchestrator session, made on the
 * session's worker thread and remade after a failure that broke its codec state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/media.h"
#include "orch_int.h"

typedef struct media_state {
  media_session_t *ms;
  const orch_media_ctx_t *ctx; /* the engine's ctx; NULL = the CPU */
  int device;                  /* the table entry ms runs on */
  int failed_device;           /* a device that failed this session: the CPU stands in until */
  uint64_t failed_until_ms;
  char session_id[sizeof(((orch_job_t *)0)->session_id)];
} media_state_t;

/* How long a session keeps to the CPU after its device failed it. */
#define DEVICE_RETRY_MS 30000

/* The media session on the device the job was placed on, made on first use and again after a
 * failure that broke the previous one. */
static media_session_t *state_session(media_state_t *st, int device) {
  if (st->ms && st->device == device) return st->ms;
  if (st->ms) media_session_free(st->ms);
  st->ms = NULL;
  media_session_opts_t opts = MEDIA_SESSION_OPTS_INIT;
  opts.log.session_id = st->session_id;
  if (st->ctx) opts.preset = st->ctx->cpu_preset;
  const hw_table_t *t = st->ctx ? st->ctx->table : NULL;
  hw_table_t *copy = NULL;
  if (t && st->ctx->table_mu && device > 0 && device < t->n) {
    /* the loop may be marking a device's health: the session opens from a copy */
    if (!(copy = malloc(sizeof *copy))) return NULL;
    pthread_mutex_lock(st->ctx->table_mu);
    *copy = *t;
    pthread_mutex_unlock(st->ctx->table_mu);
    t = copy;
  }
  if (t && device > 0 && device < t->n) {
    const hw_device_t *d = &t->dev[device];
    opts.backend = d->be->name;
    opts.backend_impl = d->be;
    opts.device = d->index;
    opts.table = t;
    opts.table_dev = device;
  } else {
    device = 0;
  }
  st->device = device;
  st->ms = media_session_new(&opts);
  free(copy);
  return st->ms;
}

static int media_open(void *ctx, const char *session_id, void **state) {
  media_state_t *st = calloc(1, sizeof *st);
  if (!st) return LP_ENOMEM;
  st->ctx = ctx;
  snprintf(st->session_id, sizeof st->session_id, "%s", session_id);
  *state = st;
  return 0;
}

static void to_media_profile(const orch_profile_t *p, media_profile_t *m) {
  memset(m, 0, sizeof *m);
  snprintf(m->name, sizeof m->name, "%s", p->name);
  m->width = p->width;
  m->height = p->height;
  m->bitrate = p->bitrate;
  m->fps = p->fps;
  m->fps_den = p->fps_den;
  m->format = p->format == ORCH_FMT_MP4 ? MEDIA_FORMAT_MP4 : MEDIA_FORMAT_MPEGTS;
  m->profile = (media_h264_profile_t)p->profile;
  m->gop_ms = p->gop;
  m->encoder = (media_codec_t)p->encoder;
  m->color_depth = p->color_depth;
  m->chroma_format = (media_chroma_t)p->chroma_format;
  m->quality = p->quality;
}

/* One segment on the session's media session for device (made as needed). A session that
 * could not open is reported as a device failure. */
static int run_on(media_state_t *st, int device, const orch_job_t *job, const media_profile_t *mp,
                  media_result_t *res) {
  memset(res, 0, sizeof *res);
  media_session_t *ms = state_session(st, device);
  if (!ms) {
    snprintf(res->error, sizeof res->error, "ErrTranscoderUnavailable");
    res->error_class = device > 0 ? MEDIA_ERR_DEVICE : MEDIA_ERR_SESSION;
    return LP_EDEVICE;
  }
  return media_session_transcode(ms, job->input, job->input_len, mp, job->n_profiles, res);
}

/* The device a job runs on: where it was placed, unless that device failed this session a
 * short while ago or is quarantined; the CPU then. */
static int job_device(const media_state_t *st, const orch_job_t *job) {
  int device = job->device;
  if (device > 0 && device == st->failed_device && lp_now_ms() < st->failed_until_ms) device = 0;
  const orch_media_ctx_t *c = st->ctx;
  if (device > 0 && c && c->table && c->table_mu && device < c->table->n) {
    /* a quarantined device's sessions run on the CPU until it is back */
    pthread_mutex_lock(c->table_mu);
    if (c->table->dev[device].state == HW_DEV_QUARANTINED) device = 0;
    pthread_mutex_unlock(c->table_mu);
  }
  return device;
}

static media_profile_t *job_profiles(const orch_job_t *job) {
  media_profile_t *mp = calloc(job->n_profiles ? job->n_profiles : 1, sizeof *mp);
  if (mp)
    for (size_t i = 0; i < job->n_profiles; i++) to_media_profile(&job->profiles[i], &mp[i]);
  return mp;
}

/* A failure that broke the codec state: the next segment gets a fresh media session. */
static void drop_broken(media_state_t *st) {
  if (st->ms && media_session_broken(st->ms)) {
    media_session_free(st->ms);
    st->ms = NULL;
  }
}

/* Hands a segment's result to the job (its renditions, or its error) and frees res. Returns
 * LP_ENOMEM when the job's outputs cannot be allocated, else 0. */
static int job_result(media_state_t *st, orch_job_t *job, media_result_t *res, int rc) {
  if (rc == 0 && res->n == job->n_profiles) {
    job->out = calloc(job->n_profiles ? job->n_profiles : 1, sizeof *job->out);
    if (!job->out) {
      media_result_free(res);
      return LP_ENOMEM;
    }
    for (size_t i = 0; i < res->n; i++) {
      job->out[i].data = res->renditions[i].data;
      job->out[i].len = res->renditions[i].len;
      job->out[i].pixels = res->renditions[i].pixels;
      res->renditions[i].data = NULL;
    }
    LOGV(LP_V_DEBUG, "Transcoded segment sessionID=%s seqNo=%lld renditions=%zu took=%.1fms",
         st->session_id, (long long)job->seq, res->n, res->transcode_ns / 1e6);
  } else {
    snprintf(job->error, sizeof job->error, "%s",
             res->error[0] ? res->error : (rc == 0 ? "MismatchedSegments" : lp_strerror(rc)));
    LOGW("Transcode failed sessionID=%s seqNo=%lld err=%s", st->session_id, (long long)job->seq,
         job->error);
  }
  media_result_free(res);
  return 0;
}

static int media_transcode(void *ctx, void *state, orch_job_t *job) {
  media_state_t *st = state;
  (void)ctx;
  drop_broken(st);
  media_profile_t *mp = job_profiles(job);
  if (!mp) return LP_ENOMEM;
  int device = job_device(st, job);
  const orch_media_ctx_t *c = st->ctx;
  media_result_t res;
  int rc = run_on(st, device, job, mp, &res);
  if (rc && res.error_class == MEDIA_ERR_DEVICE && device > 0) {
    /* The device failed, not the segment: this segment is done again on the CPU at once, and
     * the session stays there for a while rather than fail each segment on the device first. */
    char name[sizeof(((hw_device_t *)0)->name)] = "?";
    if (c && c->table && device < c->table->n) {
      if (c->table_mu) pthread_mutex_lock(c->table_mu);
      memcpy(name, c->table->dev[device].name, sizeof name);
      if (c->table_mu) pthread_mutex_unlock(c->table_mu);
    }
    LOGW("Device %s failed sessionID=%s seqNo=%lld (%s); its segments run on the CPU for %d s",
         name, st->session_id, (long long)job->seq, res.error, DEVICE_RETRY_MS / 1000);
    st->failed_device = device;
    st->failed_until_ms = lp_now_ms() + DEVICE_RETRY_MS;
    if (st->ctx && st->ctx->device_failed) st->ctx->device_failed(st->ctx->arg, device);
    media_result_free(&res);
    media_session_free(st->ms);
    st->ms = NULL;
    rc = run_on(st, 0, job, mp, &res);
  }
  free(mp);
  return job_result(st, job, &res, rc);
}

/* A segment submitted to a CPU media session, completing on one of its threads. */
typedef struct media_pending {
  media_state_t *st;
  orch_job_t *job;
  void (*done)(orch_job_t *job);
  media_result_t res;
} media_pending_t;

static void media_submitted(void *arg, media_result_t *res, int rc) {
  media_pending_t *p = arg;
  if (job_result(p->st, p->job, res, rc) < 0)
    snprintf(p->job->error, sizeof p->job->error, "%s", "ErrTranscoderUnavailable");
  p->done(p->job);
  free(p);
}

/* On the CPU a session's next segment, when it is already queued, starts while this one's
 * encoders drain; a device's segments go one at a time through media_transcode. */
static void media_submit(void *ctx, void *state, orch_job_t *job, void (*done)(orch_job_t *)) {
  media_state_t *st = state;
  if (job_device(st, job) > 0) {
    if (media_transcode(ctx, state, job) != 0 && !job->error[0])
      snprintf(job->error, sizeof job->error, "%s", "ErrTranscoderUnavailable");
    done(job);
    return;
  }
  drop_broken(st);
  media_pending_t *p = calloc(1, sizeof *p);
  media_profile_t *mp = job_profiles(job);
  media_session_t *ms = p && mp ? state_session(st, 0) : NULL;
  if (!ms) {
    snprintf(job->error, sizeof job->error, "%s", "ErrTranscoderUnavailable");
    free(mp);
    free(p);
    /* the segments still in flight complete first: jobs come back in order */
    if (st->ms) media_session_free(st->ms);
    st->ms = NULL;
    done(job);
    return;
  }
  *p = (media_pending_t){.st = st, .job = job, .done = done};
  media_session_submit(ms, job->input, job->input_len, mp, job->n_profiles, &p->res,
                       media_submitted, p);
  free(mp);
}

static void media_close(void *ctx, void *state) {
  media_state_t *st = state;
  if (st->ms) media_session_free(st->ms);
  free(st);
}

const orch_engine_t orch_engine_media = {
    .open = media_open, .transcode = media_transcode, .submit = media_submit, .close = media_close};
