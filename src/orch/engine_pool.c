/* The engine seam on the pool manager: segments go to remote transcoders (spec §6), which
 * keep a stream on one transcoder and answer on the loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch_int.h"

static void pool_done(pool_result_t *res, void *arg) {
  orch_job_t *job = arg;
  /* the transcoder's time, the hop included: what the capacity model's real-time check and
   * the transcode-time metrics read */
  orch_job_engine_done(job);
  if (res->err == 0 && res->n == job->n_profiles) {
    job->out = calloc(job->n_profiles ? job->n_profiles : 1, sizeof *job->out);
    for (size_t i = 0; job->out && i < res->n; i++) {
      job->out[i].data = res->renditions[i].data;
      job->out[i].len = res->renditions[i].len;
      job->out[i].pixels = res->renditions[i].pixels;
      res->renditions[i].data = NULL;
    }
    if (!job->out) snprintf(job->error, sizeof job->error, "ErrTranscoderUnavailable");
  } else if (res->err == 0) {
    snprintf(job->error, sizeof job->error, "MismatchedSegments");
  } else if (res->error[0]) {
    snprintf(job->error, sizeof job->error, "%s", res->error);
  } else {
    /* go-livepeer's texts for what the gateway sees */
    const char *t = "ErrTranscoderUnavailable";
    if (res->err == LP_ECAPACITY) t = "no transcoders available";
    if (res->err == LP_EUNSUPP) t = "no transcoders can provide requested capabilities";
    if (res->err == LP_ETIMEDOUT) t = "Remote transcoder took too long";
    if (res->err == LP_EPROTO) t = "MismatchedSegments";
    snprintf(job->error, sizeof job->error, "%s", t);
  }
  orch_sessions_job_done(job);
}

static int pool_start(void *ctx, orch_job_t *job) {
  orch_pool_engine_t *pe = ctx;
  if (!pe->manager) return LP_EUNSUPP;
  int target = POOL_TARGET_ANY;
  if (pe->placed)
    target = job->device < 0                     ? POOL_TARGET_REMOTE
             : pe->per_device && job->device > 0 ? job->device - 1
                                                 : POOL_TARGET_LOCAL;
  return pool_manager_submit_to(pe->manager, job->sd, job->session_id, target, job->input,
                                job->input_len, pool_done, job);
}

/* A session's next segment may go while the last one is still in a local worker, which is lpod,
 * when the stream was placed on the CPU and the workers have nothing else (cpu_only): the worker
 * starts it while the last one's encoders drain. A worker with a device runs its sessions there,
 * one segment at a time, so a segment sent ahead would only wait in its queue, holding a task
 * slot; and a remote transcoder (go-livepeer's among them) gets a stream's segments one at a
 * time, as go-livepeer's orchestrator sends them. */
static bool pool_start_beside(void *ctx, const orch_job_t *running, const orch_job_t *next) {
  const orch_pool_engine_t *pe = ctx;
  return pe->placed && pe->cpu_only && running->device == 0 && next->device == 0;
}

static void pool_session_ended(void *ctx, const char *session_id) {
  orch_pool_engine_t *pe = ctx;
  if (pe->manager) pool_manager_end_session(pe->manager, session_id);
}

void orch_engine_pool(orch_pool_engine_t *pe, orch_engine_t *out) {
  memset(out, 0, sizeof *out);
  out->ctx = pe;
  out->start = pool_start;
  out->session_ended = pool_session_ended;
  out->start_beside = pool_start_beside;
}

static bool name_listed(const char *list, const char *name) {
  size_t nl = strlen(name);
  for (const char *p = list; *p;) {
    size_t tl = strcspn(p, ",");
    if (tl == nl && strncmp(p, name, nl) == 0) return true;
    p += tl;
    if (*p == ',') p++;
  }
  return false;
}

uint32_t orch_worker_devices_down(const hw_table_t *t, bool per_device, int worker,
                                  const char *down) {
  uint32_t bits = 0;
  for (int j = 1; j < t->n && j < 32; j++)
    if ((!per_device || j == worker + 1) && name_listed(down, t->dev[j].name)) bits |= 1u << j;
  return bits;
}
