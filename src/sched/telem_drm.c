/* sched telemetry: Intel media engine busy from the DRM client usage stats the kernel prints in
 * /proc/<pid>/fdinfo/<fd> for every open GPU file (i915: "drm-engine-video: <ns> ns"; xe:
 * "drm-cycles-vcs" over "drm-total-cycles-vcs"). A process may read its own and its children's
 * without any privilege, so this serves where the i915/xe PMU is closed (the systemd unit's
 * unprivileged user, perf_event_paranoid > 0): it sees the node's and its workers' work on the
 * GPU, not other processes'. */
#include "sched_int.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define MAX_PIDS 64

typedef struct drm_src {
  lp_sched_source_t base;
  char root[512];
  char pdev[64]; /* "0000:00:02.0"; "" to match by node only */
  char node[64]; /* "renderD128" */
  lp_sched_drm_client_t prev[MAX_CLIENTS];
  int n_prev;
  uint64_t prev_ms;
  bool have_prev;
} drm_src_t;

int lp_sched_drm_pdev(const char *root, const char *render_node, char *out, size_t len) {
  if (!render_node || !render_node[0] || strchr(render_node, '/') || !out || !len) return LP_EINVAL;
  char path[4096], link[512];
  snprintf(path, sizeof path, "%s/sys/class/drm/%s/device", root ? root : "", render_node);
  ssize_t n = readlink(path, link, sizeof link - 1);
  if (n <= 0) return LP_ENOENT;
  link[n] = '\0';
  const char *slash = strrchr(link, '/');
  snprintf(out, len, "%s", slash ? slash + 1 : link);
  return out[0] ? 0 : LP_ENOENT;
}

static bool parse_u64(const char *v, uint64_t *out) {
  while (*v == ' ' || *v == '\t') v++;
  if (*v < '0' || *v > '9') return false;
  *out = strtoull(v, NULL, 10);
  return true;
}

int lp_sched_drm_fdinfo_parse(const char *text, lp_sched_drm_client_t *c) {
  memset(c, 0, sizeof *c);
  bool have_id = false;
  for (const char *p = text; p && *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    char line[256];
    if (n < sizeof line) {
      memcpy(line, p, n);
      line[n] = '\0';
      char *colon = strchr(line, ':');
      if (colon) {
        *colon = '\0';
        const char *k = line, *v = colon + 1;
        uint64_t x;
        /* i915 names the engine class, xe the engine's short name */
        static const struct {
          const char *key;
          int engine;
          int what; /* 0 busy, 1 total, 2 capacity */
        } keys[] = {
            {"drm-engine-video", 0, 0},
            {"drm-engine-video-enhance", 1, 0},
            {"drm-engine-capacity-video", 0, 2},
            {"drm-engine-capacity-video-enhance", 1, 2},
            {"drm-cycles-vcs", 0, 0},
            {"drm-cycles-vecs", 1, 0},
            {"drm-total-cycles-vcs", 0, 1},
            {"drm-total-cycles-vecs", 1, 1},
            {"drm-engine-capacity-vcs", 0, 2},
            {"drm-engine-capacity-vecs", 1, 2},
        };
        if (strcmp(k, "drm-pdev") == 0) {
          while (*v == ' ' || *v == '\t') v++;
          snprintf(c->pdev, sizeof c->pdev, "%s", v);
        } else if (strcmp(k, "drm-driver") == 0) {
          while (*v == ' ' || *v == '\t') v++;
          snprintf(c->driver, sizeof c->driver, "%s", v);
        } else if (strcmp(k, "drm-client-id") == 0 && parse_u64(v, &x)) {
          c->id = x;
          have_id = true;
        } else {
          for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            if (strcmp(k, keys[i].key) != 0 || !parse_u64(v, &x)) continue;
            int e = keys[i].engine;
            if (keys[i].what == 0) {
              c->busy[e] = x;
              c->has |= 1u << e;
            } else if (keys[i].what == 1) {
              c->total[e] = x;
            } else if (x > 0 && x <= 64) {
              c->capacity[e] = (int)x;
            }
          }
        }
      }
    }
    p = nl ? nl + 1 : NULL;
  }
  return have_id ? 0 : LP_ENOENT;
}

/* The node and its direct children (the local workers), from /proc/self/task/<tid>/children. */
static int our_pids(const char *root, int *pids, int max) {
  char path[4096], self[64];
  snprintf(path, sizeof path, "%s/proc/self", root);
  ssize_t n = readlink(path, self, sizeof self - 1);
  if (n <= 0) return 0;
  self[n] = '\0';
  int np = 0;
  pids[np++] = atoi(self);
  snprintf(path, sizeof path, "%s/proc/%s/task", root, self);
  DIR *d = opendir(path);
  if (!d) return np;
  struct dirent *de;
  while ((de = readdir(d)) && np < max) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    char cpath[4096 + 300], *text = NULL;
    snprintf(cpath, sizeof cpath, "/proc/%s/task/%s/children", self, de->d_name);
    if (sched_read_rooted(root, cpath, &text)) continue;
    for (char *p = text, *end; *p && np < max; p = end) {
      long v = strtol(p, &end, 10);
      if (end == p) break;
      if (v > 0) pids[np++] = (int)v;
    }
    free(text);
  }
  closedir(d);
  return np;
}

/* Every client of our device among the pids' open files, each client once. */
static int collect(drm_src_t *s, lp_sched_drm_client_t *out, int max, int caps[2]) {
  int pids[MAX_PIDS], np = our_pids(s->root, pids, MAX_PIDS), n = 0;
  for (int i = 0; i < np; i++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/proc/%d/fd", s->root, pids[i]);
    DIR *d = opendir(dir);
    if (!d) continue;
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
      char path[4096 + 300], link[256], *text = NULL;
      snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
      ssize_t ln = readlink(path, link, sizeof link - 1);
      if (ln <= 0) continue;
      link[ln] = '\0';
      if (strncmp(link, "/dev/dri/", 9) != 0) continue;
      snprintf(path, sizeof path, "/proc/%d/fdinfo/%s", pids[i], de->d_name);
      if (sched_read_rooted(s->root, path, &text)) continue;
      lp_sched_drm_client_t c;
      int rc = lp_sched_drm_fdinfo_parse(text, &c);
      free(text);
      /* the device: by its PCI address where fdinfo names one, else by the node opened */
      if (rc || !c.has) continue;
      if (c.pdev[0] && s->pdev[0] ? strcmp(c.pdev, s->pdev) != 0 : strcmp(link + 9, s->node) != 0)
        continue;
      bool dup = false;
      for (int k = 0; k < n && !dup; k++) dup = out[k].id == c.id;
      if (dup || n >= max) continue;
      out[n++] = c;
      for (int e = 0; e < 2; e++)
        if (c.capacity[e] > caps[e]) caps[e] = c.capacity[e];
    }
    closedir(d);
  }
  return n;
}

/* Each client's busy share of an engine class since the last sample, summed over the clients
 * and spread over the class's engines. A client seen for the first time counts from its start
 * on i915 (busy ns against the wall clock since the last sample, which it cannot predate); on xe
 * it has no earlier GPU timestamp to count against, and counts from the next sample. */
static int drm_sample(lp_sched_source_t *src, uint64_t now_ms, lp_sched_sample_t *out) {
  drm_src_t *s = (drm_src_t *)src;
  lp_sched_drm_client_t cur[MAX_CLIENTS];
  int caps[2] = {1, 1};
  int n = collect(s, cur, MAX_CLIENTS, caps);
  if (s->have_prev && now_ms > s->prev_ms) {
    double wall_ns = (double)(now_ms - s->prev_ms) * 1e6, sum[2] = {0, 0};
    for (int i = 0; i < n; i++) {
      const lp_sched_drm_client_t *c = &cur[i], *p = NULL;
      for (int k = 0; k < s->n_prev && !p; k++)
        if (s->prev[k].id == c->id) p = &s->prev[k];
      for (int e = 0; e < 2; e++) {
        if (!(c->has & (1u << e))) continue;
        if (strcmp(c->driver, "xe") == 0 || c->total[e]) { /* cycles against the GPU's clock */
          if (p && (p->has & (1u << e)) && c->total[e] > p->total[e] && c->busy[e] >= p->busy[e])
            sum[e] += (double)(c->busy[e] - p->busy[e]) / (double)(c->total[e] - p->total[e]);
        } else {
          uint64_t before = p && (p->has & (1u << e)) ? p->busy[e] : 0;
          if (c->busy[e] >= before) sum[e] += (double)(c->busy[e] - before) / wall_ns;
        }
      }
    }
    for (int e = 0; e < 2; e++) {
      out->util[e] = LP_MIN(1.0, sum[e] / caps[e]);
      out->util_mask |= 1u << e;
    }
    out->fields |= LP_SCHED_TEL_UTIL;
  }
  memcpy(s->prev, cur, sizeof cur[0] * (size_t)n);
  s->n_prev = n;
  s->prev_ms = now_ms;
  s->have_prev = true;
  return 0;
}

static void drm_destroy(lp_sched_source_t *src) { free(src); }

static const lp_sched_source_ops_t drm_ops = {"drm-fdinfo", drm_sample, drm_destroy};

int lp_sched_source_drm_fdinfo_new(const char *root, const char *render_node,
                                   lp_sched_source_t **out) {
  *out = NULL;
  root = root ? root : "";
  if (!render_node || !render_node[0] || strchr(render_node, '/')) return LP_EINVAL;
  char path[4096];
  snprintf(path, sizeof path, "%s/proc/self/fdinfo", root);
  if (access(path, R_OK) != 0) return LP_EUNSUPP;
  drm_src_t *s = calloc(1, sizeof *s);
  if (!s) return LP_ENOMEM;
  s->base.ops = &drm_ops;
  snprintf(s->root, sizeof s->root, "%s", root);
  snprintf(s->node, sizeof s->node, "%s", render_node);
  if (lp_sched_drm_pdev(root, render_node, s->pdev, sizeof s->pdev)) s->pdev[0] = '\0';
  *out = &s->base;
  return 0;
}
