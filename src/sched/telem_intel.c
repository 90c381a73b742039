/* sched telemetry: Intel engine busy from the i915 perf PMU, or from the xe PMU's engine activity
 * counters. The events and their encodings are read from sysfs (i915: <pmu>/events/vcs0-busy
 * holds "config=0x..."; xe: <pmu>/events/engine-active-ticks holds "event=0x..", and
 * <pmu>/format/ says where the event, gt, engine class and instance go in the config), so
 * nothing here hard-codes the kernel's event numbers or bit fields. Reading needs perf access
 * (perf_event_paranoid or CAP_PERFMON); without it the source is skipped with one log line. */
#include "sched_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_COUNTERS 16

typedef struct intel_src {
  lp_sched_source_t base;
  bool xe; /* fd[i] leads a group of an engine's active and total ticks (total_fd[i]) */
  int n;
  int fd[MAX_COUNTERS];
  int total_fd[MAX_COUNTERS];
  int engine[MAX_COUNTERS];          /* 0 video, 1 video-enhance */
  uint64_t prev[MAX_COUNTERS];       /* busy ns (i915) or active ticks (xe) */
  uint64_t prev_total[MAX_COUNTERS]; /* the clock they count against: wall ns, or total ticks */
  bool have_prev;
} intel_src_t;

static bool logged;

/* "config=0x200000" (terms may be comma separated; only config is used by i915). */
static int parse_event(const char *text, uint64_t *config) {
  const char *k = strstr(text, "config=");
  if (!k) return LP_EINVAL;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(k + 7, &end, 0);
  if (end == k + 7 || errno) return LP_EINVAL;
  *config = v;
  return 0;
}

/* want, or the first i915 PMU, else the first xe one. */
static int find_pmu(const char *root, const char *want, char *name, size_t len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/sys/bus/event_source/devices", root ? root : "");
  DIR *d = opendir(path);
  if (!d) return LP_ENOENT;
  struct dirent *de;
  int rc = LP_ENOENT;
  char xe[256] = "";
  while ((de = readdir(d))) {
    if (!want && !xe[0] && strncmp(de->d_name, "xe_", 3) == 0)
      snprintf(xe, sizeof xe, "%s", de->d_name);
    if (want ? strcmp(de->d_name, want) != 0 : strncmp(de->d_name, "i915", 4) != 0) continue;
    snprintf(name, len, "%s", de->d_name);
    rc = 0;
    break;
  }
  closedir(d);
  if (rc && xe[0]) {
    snprintf(name, len, "%s", xe);
    rc = 0;
  }
  return rc;
}

int lp_sched_intel_pmu_for(const char *root, const char *render_node, char *pmu, size_t len) {
  if (!pmu || !len) return LP_EINVAL;
  root = root ? root : "";
  char path[4096], addr[512];
  int rc = lp_sched_drm_pdev(root, render_node, addr, sizeof addr);
  if (rc) return rc;
  for (char *c = addr; *c; c++)
    if (*c == ':') *c = '_'; /* the kernel names PMUs so, perf reserving colons */
  /* a discrete GPU's PMU carries its PCI address (i915_0000_03_00.0, xe_...); the integrated
   * one's i915 PMU is plain "i915" */
  char cand[3][560];
  snprintf(cand[0], sizeof cand[0], "i915_%s", addr);
  snprintf(cand[1], sizeof cand[1], "xe_%s", addr);
  snprintf(cand[2], sizeof cand[2], "i915");
  for (int i = 0; i < 3; i++) {
    struct stat st;
    snprintf(path, sizeof path, "%s/sys/bus/event_source/devices/%s", root, cand[i]);
    if (stat(path, &st) == 0) {
      snprintf(pmu, len, "%s", cand[i]);
      return 0;
    }
  }
  return LP_ENOENT;
}

/* ---- xe: engine activity ---- */

/* A format field, "config:12-19" or "config:7": its lowest bit and width. */
static int parse_format(const char *text, int *lo, int *bits) {
  int a, b, n = 0;
  if (strncmp(text, "config:", 7) != 0) return LP_EINVAL;
  int got = sscanf(text + 7, "%d-%d%n", &a, &b, &n);
  if (got != 2) {
    got = sscanf(text + 7, "%d%n", &a, &n);
    if (got != 1) return LP_EINVAL;
    b = a;
  }
  if (a < 0 || b < a || b > 63) return LP_EINVAL;
  *lo = a;
  *bits = b - a + 1;
  return 0;
}

/* The value of term name in an event's terms ("event=0x02", "event=0x02,umask=1"). */
static int parse_term(const char *text, const char *name, uint64_t *v) {
  size_t nl = strlen(name);
  for (const char *p = text; p && *p;) {
    while (*p == ',' || *p == ' ') p++;
    if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
      char *end;
      errno = 0;
      unsigned long long x = strtoull(p + nl + 1, &end, 0);
      if (end == p + nl + 1 || errno) return LP_EINVAL;
      *v = x;
      return 0;
    }
    p = strchr(p, ',');
  }
  return LP_ENOENT;
}

static int put_field(uint64_t *config, int lo, int bits, uint64_t v) {
  if (bits < 64 && v >> bits) return LP_ERANGE;
  *config |= v << lo;
  return 0;
}

/* Where an xe PMU puts an engine activity event's fields, and the two events' numbers. */
typedef struct xe_layout {
  int lo[4], bits[4]; /* event, gt, engine_class, engine_instance */
  uint64_t event[2];  /* engine-active-ticks, engine-total-ticks */
} xe_layout_t;

static int xe_layout_read(const char *root, const char *pmu, xe_layout_t *l) {
  static const char *const fields[] = {"event", "gt", "engine_class", "engine_instance"};
  static const char *const events[] = {"engine-active-ticks", "engine-total-ticks"};
  char path[4096], *text = NULL;
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "/sys/bus/event_source/devices/%s/format/%s", pmu, fields[i]);
    if (sched_read_rooted(root, path, &text)) return LP_ENOENT;
    int rc = parse_format(text, &l->lo[i], &l->bits[i]);
    free(text);
    if (rc) return rc;
  }
  for (int k = 0; k < 2; k++) {
    snprintf(path, sizeof path, "/sys/bus/event_source/devices/%s/events/%s", pmu, events[k]);
    if (sched_read_rooted(root, path, &text)) return LP_ENOENT;
    int rc = parse_term(text, "event", &l->event[k]);
    free(text);
    if (rc) return LP_EINVAL;
  }
  return 0;
}

/* Event k (0 active, 1 total ticks) of one engine. */
static int xe_config(const xe_layout_t *l, int k, int gt, int cls, int inst, uint64_t *config) {
  const uint64_t v[4] = {l->event[k], (uint64_t)gt, (uint64_t)cls, (uint64_t)inst};
  *config = 0;
  for (int i = 0; i < 4; i++)
    if (put_field(config, l->lo[i], l->bits[i], v[i])) return LP_ERANGE;
  return 0;
}

int lp_sched_xe_engine_configs(const char *root, const char *pmu, int gt, int cls, int inst,
                               uint64_t *active, uint64_t *total) {
  xe_layout_t l;
  int rc = xe_layout_read(root, pmu, &l);
  if (!rc) rc = xe_config(&l, 0, gt, cls, inst, active);
  if (!rc) rc = xe_config(&l, 1, gt, cls, inst, total);
  return rc;
}

/* A counter of the PMU; an xe engine's activity is a group (group_fd -1 opens its leader, the
 * active ticks) read at once (PERF_FORMAT_GROUP). */
static int open_counter(int type, uint64_t config, int cpu, int group_fd, uint64_t read_format) {
  struct perf_event_attr a;
  memset(&a, 0, sizeof a);
  a.type = (uint32_t)type;
  a.size = sizeof a;
  a.config = config;
  a.read_format = read_format;
  long fd = syscall(SYS_perf_event_open, &a, -1, cpu, group_fd, PERF_FLAG_FD_CLOEXEC);
  return (int)fd;
}

static int read_counter(int fd, uint64_t *v) {
  return read(fd, v, sizeof *v) == (ssize_t)sizeof *v ? 0 : LP_EIO;
}

/* xe: an engine's active and total ticks, read together from its group. */
static int read_group(int fd, uint64_t *active, uint64_t *total) {
  uint64_t g[3]; /* PERF_FORMAT_GROUP: the number of counters, then each value */
  if (read(fd, g, sizeof g) != (ssize_t)sizeof g || g[0] != 2) return LP_EIO;
  *active = g[1];
  *total = g[2];
  return 0;
}

/* Each counter's busy share since the last sample, averaged per engine class (work spreads over
 * a class): i915 counts busy ns against the wall clock, xe active ticks against total ticks. */
static int intel_sample(lp_sched_source_t *src, uint64_t now_ms, lp_sched_sample_t *out) {
  intel_src_t *s = (intel_src_t *)src;
  uint64_t v[MAX_COUNTERS], t[MAX_COUNTERS];
  for (int i = 0; i < s->n; i++) {
    if (s->xe ? read_group(s->fd[i], &v[i], &t[i]) : read_counter(s->fd[i], &v[i])) return LP_EIO;
    if (!s->xe) t[i] = now_ms * 1000000;
  }
  if (s->have_prev) {
    double sum[2] = {0, 0};
    int cnt[2] = {0, 0};
    for (int i = 0; i < s->n; i++) {
      if (t[i] <= s->prev_total[i]) continue; /* no time passed (xe: no ticks, the GPU asleep) */
      if (v[i] >= s->prev[i])
        sum[s->engine[i]] += (double)(v[i] - s->prev[i]) / (double)(t[i] - s->prev_total[i]);
      cnt[s->engine[i]]++;
    }
    for (int e = 0; e < 2; e++) {
      if (!cnt[e]) continue;
      out->util[e] = LP_MIN(1.0, sum[e] / cnt[e]);
      out->util_mask |= 1u << e;
      out->fields |= LP_SCHED_TEL_UTIL;
    }
  }
  memcpy(s->prev, v, sizeof v);
  memcpy(s->prev_total, t, sizeof t);
  s->have_prev = true;
  return 0;
}

static void intel_destroy(lp_sched_source_t *src) {
  intel_src_t *s = (intel_src_t *)src;
  for (int i = 0; i < s->n; i++) {
    close(s->fd[i]);
    if (s->xe) close(s->total_fd[i]);
  }
  free(s);
}

static const lp_sched_source_ops_t intel_ops = {"intel-pmu", intel_sample, intel_destroy};

static int skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int skip(const char *fmt, ...) {
  if (!logged) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    LOGI("capacity: %s; the Intel PMU is not read", msg);
  }
  logged = true;
  return LP_EUNSUPP;
}

/* xe: an activity group for every video (class 2: decode and encode) and video-enhance (class
 * 3: scaling) engine the PMU takes, on each GT (newer parts keep the media engines on a GT of
 * their own). The driver refuses an engine that is not there. */
static int xe_open(intel_src_t *s, const char *root, const char *name, int type, int cpu,
                   int *err) {
  xe_layout_t l;
  int rc = xe_layout_read(root, name, &l);
  if (rc) return rc;
  s->xe = true;
  for (int gt = 0; gt < 4; gt++)
    for (int cls = 2; cls <= 3; cls++)
      for (int inst = 0; inst < 8 && s->n < MAX_COUNTERS; inst++) {
        uint64_t act, tot;
        if (xe_config(&l, 0, gt, cls, inst, &act) || xe_config(&l, 1, gt, cls, inst, &tot))
          continue;
        int lead = open_counter(type, act, cpu, -1, PERF_FORMAT_GROUP);
        if (lead < 0) {
          if (errno != ENOENT && errno != ENODEV && errno != EINVAL) *err = errno;
          continue;
        }
        int member = open_counter(type, tot, cpu, lead, PERF_FORMAT_GROUP);
        if (member < 0) {
          *err = errno;
          close(lead);
          continue;
        }
        s->fd[s->n] = lead;
        s->total_fd[s->n] = member;
        s->engine[s->n] = cls == 2 ? 0 : 1;
        s->n++;
      }
  return 0;
}

int lp_sched_source_intel_new(const char *root, const char *pmu, lp_sched_source_t **out) {
  *out = NULL;
  root = root ? root : "";
  char name[256], path[4096], *text = NULL;
  if (find_pmu(root, pmu, name, sizeof name)) return skip("no i915 or xe PMU");
  snprintf(path, sizeof path, "/sys/bus/event_source/devices/%s/type", name);
  int type = -1, cpu = 0;
  if (sched_read_rooted(root, path, &text) == 0) {
    type = atoi(text);
    free(text);
  }
  if (type <= 0) return skip("%s PMU has no type", name);
  snprintf(path, sizeof path, "/sys/bus/event_source/devices/%s/cpumask", name);
  if (sched_read_rooted(root, path, &text) == 0) {
    cpu = atoi(text);
    free(text);
  }
  intel_src_t *s = calloc(1, sizeof *s);
  if (!s) return LP_ENOMEM;
  s->base.ops = &intel_ops;
  if (strncmp(name, "xe_", 3) == 0) {
    int err = 0, rc = xe_open(s, root, name, type, cpu, &err);
    if (s->n == 0) {
      intel_destroy(&s->base);
      if (rc)
        return skip("%s has no engine activity counters (engine-active-ticks: a newer kernel's xe "
                    "driver has them)",
                    name);
      if (err) return skip("perf_event_open on the xe PMU: %s", strerror(err));
      return skip("%s opens no video engine's activity counters", name);
    }
    *out = &s->base;
    return 0;
  }
  snprintf(path, sizeof path, "%s/sys/bus/event_source/devices/%s/events", root, name);
  DIR *d = opendir(path);
  struct dirent *de;
  int err = 0;
  while (d && (de = readdir(d)) && s->n < MAX_COUNTERS) {
    int engine, inst;
    char tail[16];
    /* vcsN-busy: video (decode, encode); vecsN-busy: video-enhance (scale) */
    if (sscanf(de->d_name, "vcs%d-%15s", &inst, tail) == 2 && strcmp(tail, "busy") == 0)
      engine = 0;
    else if (sscanf(de->d_name, "vecs%d-%15s", &inst, tail) == 2 && strcmp(tail, "busy") == 0)
      engine = 1;
    else
      continue;
    char ev[4096];
    uint64_t config;
    snprintf(ev, sizeof ev, "/sys/bus/event_source/devices/%s/events/%s", name, de->d_name);
    if (sched_read_rooted(root, ev, &text)) continue;
    int prc = parse_event(text, &config);
    free(text);
    if (prc) continue;
    int fd = open_counter(type, config, cpu, -1, 0);
    if (fd < 0) {
      err = errno;
      continue;
    }
    s->fd[s->n] = fd;
    s->engine[s->n] = engine;
    s->n++;
  }
  if (d) closedir(d);
  if (s->n == 0) {
    intel_destroy(&s->base);
    if (err) return skip("perf_event_open on the i915 PMU: %s", strerror(err));
    return skip("%s lists no video engine busy events", name);
  }
  *out = &s->base;
  return 0;
}
