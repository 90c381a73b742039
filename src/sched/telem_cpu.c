/* sched telemetry: CPU busy and CPU limits (affinity, cgroup v1 and v2 quotas). Every path is
 * read under a root prefix so tests can feed sample trees. */
#include "sched_int.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_CPUS 4096
#define SMALL_FILE (1u << 20)

int sched_read_rooted(const char *root, const char *path, char **out) {
  char full[4096];
  if (snprintf(full, sizeof full, "%s%s", root ? root : "", path) >= (int)sizeof full)
    return LP_ERANGE;
  return lp_file_read(full, SMALL_FILE, out, NULL);
}

static bool is_dir(const char *root, const char *path) {
  char full[4096];
  struct stat st;
  if (snprintf(full, sizeof full, "%s%s", root ? root : "", path) >= (int)sizeof full) return false;
  return stat(full, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Marks the CPUs of a list in set (may be NULL); returns their number or LP_EINVAL. */
static int cpu_list(const char *text, unsigned char *set) {
  if (!text) return LP_EINVAL;
  const char *p = text;
  int n = 0;
  while (*p == ' ' || *p == '\t') p++;
  if (!*p || *p == '\n') return LP_EINVAL;
  while (*p && *p != '\n') {
    char *end;
    errno = 0;
    long a = strtol(p, &end, 10), b;
    if (end == p || errno || a < 0 || a >= MAX_CPUS) return LP_EINVAL;
    p = end;
    b = a;
    if (*p == '-') {
      p++;
      b = strtol(p, &end, 10);
      if (end == p || errno || b < a || b >= MAX_CPUS) return LP_EINVAL;
      p = end;
    }
    for (long i = a; i <= b; i++) {
      if (set && !set[i]) set[i] = 1;
      n++;
    }
    if (*p == ',') {
      p++;
      if (!*p || *p == '\n') return LP_EINVAL;
    } else if (*p && *p != '\n' && *p != ' ' && *p != '\r') {
      return LP_EINVAL;
    } else {
      while (*p == ' ' || *p == '\r') p++;
    }
  }
  return n;
}

int lp_sched_parse_cpu_list(const char *text) { return cpu_list(text, NULL); }

int lp_sched_parse_cpu_max(const char *text, double *cpus) {
  if (!text || !cpus) return LP_EINVAL;
  char q[32];
  long long period = 100000;
  int n = sscanf(text, "%31s %lld", q, &period);
  if (n < 1) return LP_EINVAL;
  if (n == 2 && period <= 0) return LP_EINVAL;
  if (strcmp(q, "max") == 0) {
    *cpus = 0;
    return 0;
  }
  char *end;
  errno = 0;
  long long quota = strtoll(q, &end, 10);
  if (*end || errno || quota <= 0) return LP_EINVAL;
  *cpus = (double)quota / (double)period;
  return 0;
}

/* cgroup v1: cpu.cfs_quota_us (-1 = none) over cpu.cfs_period_us, in dir. 0 none, <0 no files. */
static int v1_quota(const char *root, const char *dir, double *cpus) {
  char path[4096], *qt = NULL, *pt = NULL;
  snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
  if (sched_read_rooted(root, path, &qt)) return LP_ENOENT;
  snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
  int rc = sched_read_rooted(root, path, &pt);
  long long quota = 0, period = 0;
  if (!rc && (sscanf(qt, "%lld", &quota) != 1 || sscanf(pt, "%lld", &period) != 1 || period <= 0))
    rc = LP_EINVAL;
  free(qt);
  free(pt);
  if (rc) return rc;
  *cpus = quota > 0 ? (double)quota / (double)period : 0;
  return 0;
}

static int v2_quota(const char *root, const char *dir, double *cpus) {
  char path[4096], *t = NULL;
  snprintf(path, sizeof path, "%s/cpu.max", dir);
  if (sched_read_rooted(root, path, &t)) return LP_ENOENT;
  int rc = lp_sched_parse_cpu_max(t, cpus);
  free(t);
  return rc;
}

/* Quotas nest: the tightest one from our cgroup up to the mount's top applies. When our path is
 * not visible (a container sees its own cgroup as the top), only the top is read. usage_dir gets
 * the deepest directory that exists. */
static double walk_quota(const char *root, const char *base, const char *cgpath, int version,
                         char *usage_dir, size_t ulen) {
  char dir[4096];
  double tight = 0;
  bool first = true;
  if (snprintf(dir, sizeof dir, "%s%s", base, cgpath && *cgpath == '/' ? cgpath : "/") >=
      (int)sizeof dir)
    return 0;
  size_t blen = strlen(base);
  while (strlen(dir) > blen && dir[strlen(dir) - 1] == '/') dir[strlen(dir) - 1] = '\0';
  for (;;) {
    if (is_dir(root, dir)) {
      if (first) {
        snprintf(usage_dir, ulen, "%s", dir);
        first = false;
      }
      double c = 0;
      int rc = version == 2 ? v2_quota(root, dir, &c) : v1_quota(root, dir, &c);
      if (!rc && c > 0 && (tight == 0 || c < tight)) tight = c;
    }
    if (strlen(dir) <= blen) break;
    char *slash = strrchr(dir + blen, '/');
    if (!slash) break;
    *slash = '\0';
  }
  return tight;
}

typedef struct cg_info {
  int version;
  double quota;
  char usage_path[4096]; /* cpu.stat (v2) or cpuacct.usage (v1), relative to root; "" if none */
} cg_info_t;

static void cgroup_probe(const char *root, cg_info_t *out) {
  memset(out, 0, sizeof *out);
  char *self = NULL;
  if (sched_read_rooted(root, "/proc/self/cgroup", &self)) self = NULL;
  char v2path[2048] = "", v1path[2048] = "";
  bool have_v1 = false;
  for (char *line = self; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c1 && c2) {
      *c2 = '\0';
      const char *ctrls = c1 + 1, *path = c2 + 1;
      if (strncmp(line, "0:", 2) == 0 && *ctrls == '\0') {
        snprintf(v2path, sizeof v2path, "%s", path);
      } else {
        char list[256];
        snprintf(list, sizeof list, "%s", ctrls);
        char *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
          if (strcmp(t, "cpu") == 0) {
            snprintf(v1path, sizeof v1path, "%s", path);
            have_v1 = true;
          }
        }
      }
    }
    line = nl ? nl + 1 : NULL;
  }
  free(self);
  char dir[4096] = "";
  char *probe = NULL;
  /* v2 when the unified hierarchy is mounted with controllers there */
  if (sched_read_rooted(root, "/sys/fs/cgroup/cgroup.controllers", &probe) == 0) {
    free(probe);
    out->version = 2;
    out->quota = walk_quota(root, "/sys/fs/cgroup", v2path, 2, dir, sizeof dir);
    if (*dir) snprintf(out->usage_path, sizeof out->usage_path, "%s/cpu.stat", dir);
    return;
  }
  static const char *const v1_bases[] = {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"};
  for (size_t i = 0; i < LP_ARRAY_LEN(v1_bases); i++) {
    if (!is_dir(root, v1_bases[i])) continue;
    out->version = 1;
    out->quota = walk_quota(root, v1_bases[i], have_v1 ? v1path : "/", 1, dir, sizeof dir);
    if (*dir) snprintf(out->usage_path, sizeof out->usage_path, "%s/cpuacct.usage", dir);
    return;
  }
}

/* Online CPUs: the cpuN lines of /proc/stat. */
static int stat_cpus(const char *text) {
  int n = 0;
  for (const char *p = text; p && *p;) {
    if (strncmp(p, "cpu", 3) == 0 && p[3] >= '0' && p[3] <= '9') n++;
    p = strchr(p, '\n');
    if (p) p++;
  }
  return n;
}

static int affinity(const char *root, unsigned char *set) {
  char *st = NULL;
  if (sched_read_rooted(root, "/proc/self/status", &st) == 0) {
    const char *k = strstr(st, "Cpus_allowed_list:");
    int n = k ? cpu_list(k + strlen("Cpus_allowed_list:"), set) : LP_EINVAL;
    free(st);
    if (n > 0) return n;
  }
  if (root && *root) return 0;
  cpu_set_t cs;
  if (sched_getaffinity(0, sizeof cs, &cs) != 0) return 0;
  if (set)
    for (int i = 0; i < CPU_SETSIZE && i < MAX_CPUS; i++)
      if (CPU_ISSET(i, &cs)) set[i] = 1;
  return CPU_COUNT(&cs);
}

int lp_sched_cpu_limits(const char *root, lp_sched_cpu_limits_t *out) {
  if (!out) return LP_EINVAL;
  memset(out, 0, sizeof *out);
  char *st = NULL;
  if (sched_read_rooted(root, "/proc/stat", &st) == 0) {
    out->online = stat_cpus(st);
    free(st);
  }
  out->affinity = affinity(root, NULL);
  cg_info_t cg;
  cgroup_probe(root, &cg);
  out->cgroup = cg.version;
  out->quota_cpus = cg.quota;
  double e = INFINITY;
  if (out->online > 0) e = out->online;
  if (out->affinity > 0) e = fmin(e, out->affinity);
  if (out->quota_cpus > 0) e = fmin(e, out->quota_cpus);
  out->effective = isfinite(e) ? e : 1.0;
  return out->online > 0 || out->affinity > 0 ? 0 : LP_ENOENT;
}

/* ---- the source ---- */

typedef struct cpu_src {
  lp_sched_source_t base;
  char *root;
  unsigned char *allowed; /* NULL: every CPU */
  bool have_prev;
  unsigned long long prev_busy, prev_total;
  cg_info_t cg;
  bool have_cg_prev;
  unsigned long long prev_usage_us;
  uint64_t prev_ms;
} cpu_src_t;

static int stat_sum(const cpu_src_t *c, const char *text, unsigned long long *busy,
                    unsigned long long *total) {
  *busy = *total = 0;
  bool any = false;
  for (const char *p = text; p && *p;) {
    bool agg = strncmp(p, "cpu ", 4) == 0;
    bool one = strncmp(p, "cpu", 3) == 0 && p[3] >= '0' && p[3] <= '9';
    int idx = one ? atoi(p + 3) : -1;
    if ((agg && !c->allowed) ||
        (one && c->allowed && idx >= 0 && idx < MAX_CPUS && c->allowed[idx])) {
      unsigned long long v[8] = {0};
      const char *q = p + 3;
      while (*q >= '0' && *q <= '9') q++;
      int n = sscanf(q, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                     &v[4], &v[5], &v[6], &v[7]);
      if (n >= 4) {
        /* user nice system idle iowait irq softirq steal; guest time is inside user already */
        unsigned long long t = 0;
        for (int i = 0; i < n; i++) t += v[i];
        *total += t;
        *busy += t - v[3] - (n > 4 ? v[4] : 0);
        any = true;
      }
    }
    p = strchr(p, '\n');
    if (p) p++;
  }
  return any ? 0 : LP_EPROTO;
}

static int cg_usage_us(const cpu_src_t *c, unsigned long long *us) {
  char *t = NULL;
  if (sched_read_rooted(c->root, c->cg.usage_path, &t)) return LP_EIO;
  int rc = LP_EPROTO;
  if (c->cg.version == 2) {
    const char *k = strstr(t, "usage_usec ");
    if (k && sscanf(k + strlen("usage_usec "), "%llu", us) == 1) rc = 0;
  } else {
    unsigned long long ns;
    if (sscanf(t, "%llu", &ns) == 1) {
      *us = ns / 1000;
      rc = 0;
    }
  }
  free(t);
  return rc;
}

static int cpu_sample(lp_sched_source_t *src, uint64_t now_ms, lp_sched_sample_t *out) {
  cpu_src_t *c = (cpu_src_t *)src;
  char *text = NULL;
  int rc = sched_read_rooted(c->root, "/proc/stat", &text);
  if (rc) return rc;
  unsigned long long busy, total;
  rc = stat_sum(c, text, &busy, &total);
  free(text);
  if (rc) return rc;
  double util = -1;
  if (c->have_prev && total > c->prev_total && busy >= c->prev_busy)
    util = (double)(busy - c->prev_busy) / (double)(total - c->prev_total);
  c->prev_busy = busy;
  c->prev_total = total;
  c->have_prev = true;

  /* Under a quota the container can be throttled while the host looks idle. */
  unsigned long long us;
  if (c->cg.quota > 0 && c->cg.usage_path[0] && cg_usage_us(c, &us) == 0) {
    if (c->have_cg_prev && now_ms > c->prev_ms && us >= c->prev_usage_us) {
      double u =
          (double)(us - c->prev_usage_us) / ((double)(now_ms - c->prev_ms) * 1000.0) / c->cg.quota;
      util = LP_MAX(util, u);
    }
    c->prev_usage_us = us;
    c->prev_ms = now_ms;
    c->have_cg_prev = true;
  }
  if (util >= 0) {
    out->fields |= LP_SCHED_TEL_UTIL;
    out->util_mask |= 1u;
    out->util[0] = LP_MIN(util, 1.0);
  }
  return 0;
}

static void cpu_destroy(lp_sched_source_t *src) {
  cpu_src_t *c = (cpu_src_t *)src;
  free(c->root);
  free(c->allowed);
  free(c);
}

static const lp_sched_source_ops_t cpu_ops = {"cpu", cpu_sample, cpu_destroy};

int lp_sched_source_cpu_new(const char *root, lp_sched_source_t **out) {
  *out = NULL;
  char *probe = NULL;
  int rc = sched_read_rooted(root, "/proc/stat", &probe);
  if (rc) {
    LOGW("capacity: %s/proc/stat not readable (%s); CPU telemetry skipped", root ? root : "",
         lp_strerror(rc));
    return LP_EUNSUPP;
  }
  int online = stat_cpus(probe);
  free(probe);
  cpu_src_t *c = calloc(1, sizeof *c);
  if (!c) return LP_ENOMEM;
  c->base.ops = &cpu_ops;
  size_t rl = root ? strlen(root) : 0;
  c->root = malloc(rl + 1);
  c->allowed = calloc(MAX_CPUS, 1);
  if (!c->root || !c->allowed) {
    cpu_destroy(&c->base);
    return LP_ENOMEM;
  }
  memcpy(c->root, root ? root : "", rl + 1);
  int n = affinity(c->root, c->allowed);
  if (n <= 0 || n >= online) {
    /* all CPUs (or unknown): the aggregate line says it directly */
    free(c->allowed);
    c->allowed = NULL;
  }
  cgroup_probe(c->root, &c->cg);
  *out = &c->base;
  return 0;
}
