/* sched telemetry: Intel engine busy from the i915 perf PMU. The events and their encodings are
 * read from sysfs (<pmu>/events/vcs0-busy holds "config=0x..."), so nothing here hard-codes the
 * kernel's event numbers. Reading needs perf access (perf_event_paranoid or CAP_PERFMON); without
 * it the source is skipped with one log line. */
#include "sched_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_COUNTERS 16

typedef struct intel_src {
  lp_sched_source_t base;
  int n;
  int fd[MAX_COUNTERS];
  int engine[MAX_COUNTERS]; /* 0 video, 1 video-enhance */
  uint64_t prev[MAX_COUNTERS];
  uint64_t prev_ms;
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

static int find_pmu(const char *root, const char *want, char *name, size_t len, bool *saw_xe) {
  char path[4096];
  snprintf(path, sizeof path, "%s/sys/bus/event_source/devices", root ? root : "");
  DIR *d = opendir(path);
  if (!d) return LP_ENOENT;
  struct dirent *de;
  int rc = LP_ENOENT;
  while ((de = readdir(d))) {
    if (strncmp(de->d_name, "xe", 2) == 0) *saw_xe = true;
    if (want ? strcmp(de->d_name, want) != 0 : strncmp(de->d_name, "i915", 4) != 0) continue;
    snprintf(name, len, "%s", de->d_name);
    rc = 0;
    break;
  }
  closedir(d);
  return rc;
}

static int open_counter(int type, uint64_t config, int cpu) {
  struct perf_event_attr a;
  memset(&a, 0, sizeof a);
  a.type = (uint32_t)type;
  a.size = sizeof a;
  a.config = config;
  long fd = syscall(SYS_perf_event_open, &a, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
  return (int)fd;
}

static int read_counter(int fd, uint64_t *v) {
  return read(fd, v, sizeof *v) == (ssize_t)sizeof *v ? 0 : LP_EIO;
}

static int intel_sample(lp_sched_source_t *src, uint64_t now_ms, lp_sched_sample_t *out) {
  intel_src_t *s = (intel_src_t *)src;
  uint64_t v[MAX_COUNTERS];
  for (int i = 0; i < s->n; i++)
    if (read_counter(s->fd[i], &v[i])) return LP_EIO;
  if (s->have_prev && now_ms > s->prev_ms) {
    double wall_ns = (double)(now_ms - s->prev_ms) * 1e6, sum[2] = {0, 0};
    int cnt[2] = {0, 0};
    for (int i = 0; i < s->n; i++) {
      sum[s->engine[i]] += v[i] >= s->prev[i] ? (double)(v[i] - s->prev[i]) / wall_ns : 0;
      cnt[s->engine[i]]++;
    }
    for (int e = 0; e < 2; e++) {
      if (!cnt[e]) continue;
      out->util[e] = LP_MIN(1.0, sum[e] / cnt[e]); /* work spreads over an engine class */
      out->util_mask |= 1u << e;
      out->fields |= LP_SCHED_TEL_UTIL;
    }
  }
  memcpy(s->prev, v, sizeof v);
  s->prev_ms = now_ms;
  s->have_prev = true;
  return 0;
}

static void intel_destroy(lp_sched_source_t *src) {
  intel_src_t *s = (intel_src_t *)src;
  for (int i = 0; i < s->n; i++) close(s->fd[i]);
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
    LOGI("capacity: %s; Intel engine telemetry skipped", msg);
  }
  logged = true;
  return LP_EUNSUPP;
}

int lp_sched_source_intel_new(const char *root, const char *pmu, lp_sched_source_t **out) {
  *out = NULL;
  root = root ? root : "";
  char name[256], path[4096], *text = NULL;
  bool saw_xe = false;
  if (find_pmu(root, pmu, name, sizeof name, &saw_xe))
    return skip("%s", saw_xe ? "only an xe PMU, whose engine counters this build doesn't read"
                             : "no i915 PMU");
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
    int fd = open_counter(type, config, cpu);
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
