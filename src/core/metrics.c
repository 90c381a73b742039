/* One mutex guards the registry: metrics change a few times per segment, far below any
 * contention that would justify per-series atomics. */
#include "lpod/metrics.h"
#include "lpod/core.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } mtype_t;

typedef struct series {
  char *labels; /* rendered 'a="x",b="y"' or "" */
  double value; /* counter/gauge */
  double sum;
  uint64_t count;
  uint64_t *bucket_counts; /* per bucket (not cumulative) */
  struct series *next;
} series_t;

struct lp_metric {
  char *name, *help;
  mtype_t type;
  char **label_names;
  size_t nlabels;
  double *buckets;
  size_t nbuckets;
  series_t *series;
  struct lp_metric *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static lp_metric_t *registry;

static size_t split(const char *s, char ***out) {
  *out = NULL;
  if (!s || !*s) return 0;
  size_t n = 1;
  for (const char *p = s; *p; p++) n += *p == ',';
  char **v = calloc(n, sizeof *v);
  if (!v) return 0;
  const char *start = s;
  for (size_t i = 0; i < n; i++) {
    const char *end = strchr(start, ',');
    size_t len = end ? (size_t)(end - start) : strlen(start);
    v[i] = lp_strndup(start, len);
    start = end ? end + 1 : start + len;
  }
  *out = v;
  return n;
}

static lp_metric_t *get(const char *name, const char *help, const char *labels, mtype_t type,
                        const double *buckets, size_t nb) {
  pthread_mutex_lock(&mu);
  lp_metric_t *m;
  for (m = registry; m; m = m->next)
    if (strcmp(m->name, name) == 0) break;
  if (!m && (m = calloc(1, sizeof *m))) {
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    m->type = type;
    m->nlabels = split(labels, &m->label_names);
    if (nb) {
      m->buckets = malloc(nb * sizeof *buckets);
      if (m->buckets) memcpy(m->buckets, buckets, nb * sizeof *buckets);
      m->nbuckets = m->buckets ? nb : 0;
    }
    m->next = registry;
    registry = m;
  }
  pthread_mutex_unlock(&mu);
  if (m && m->type != type) {
    LOGE("metric %s registered twice with different types", name);
    return NULL;
  }
  return m;
}

lp_metric_t *lp_metric_counter(const char *name, const char *help, const char *label_names) {
  return get(name, help, label_names, M_COUNTER, NULL, 0);
}
lp_metric_t *lp_metric_gauge(const char *name, const char *help, const char *label_names) {
  return get(name, help, label_names, M_GAUGE, NULL, 0);
}
lp_metric_t *lp_metric_histogram(const char *name, const char *help, const char *label_names,
                                 const double *buckets, size_t nbuckets) {
  return get(name, help, label_names, M_HISTOGRAM, buckets, nbuckets);
}

/* Renders label pairs with Prometheus escaping. */
static char *render_labels(const lp_metric_t *m, const char *values) {
  lp_buf_t b = LP_BUF_INIT;
  const char *v = values ? values : "";
  for (size_t i = 0; i < m->nlabels; i++) {
    const char *end = strchr(v, ',');
    size_t len = end ? (size_t)(end - v) : strlen(v);
    lp_buf_appendf(&b, "%s%s=\"", i ? "," : "", m->label_names[i]);
    for (size_t k = 0; k < len; k++) {
      char c = v[k];
      if (c == '\\' || c == '"') lp_buf_append(&b, "\\", 1);
      if (c == '\n') {
        lp_buf_append(&b, "\\n", 2);
        continue;
      }
      lp_buf_append(&b, &c, 1);
    }
    lp_buf_append(&b, "\"", 1);
    v = end ? end + 1 : v + len;
  }
  lp_buf_append(&b, "", 1);
  return (char *)lp_buf_steal(&b, NULL);
}

/* Caller holds mu. */
static series_t *find_series(lp_metric_t *m, const char *values, int create) {
  char *labels = render_labels(m, values);
  if (!labels) return NULL;
  for (series_t *s = m->series; s; s = s->next)
    if (strcmp(s->labels, labels) == 0) {
      free(labels);
      return s;
    }
  if (!create) {
    free(labels);
    return NULL;
  }
  series_t *s = calloc(1, sizeof *s);
  if (!s) {
    free(labels);
    return NULL;
  }
  s->labels = labels;
  if (m->nbuckets) s->bucket_counts = calloc(m->nbuckets, sizeof *s->bucket_counts);
  /* Keep series in first-use order for stable output. */
  series_t **pp = &m->series;
  while (*pp) pp = &(*pp)->next;
  *pp = s;
  return s;
}

void lp_metric_add(lp_metric_t *m, const char *label_values, double v) {
  if (!m) return;
  pthread_mutex_lock(&mu);
  series_t *s = find_series(m, label_values, 1);
  if (s) s->value += v;
  pthread_mutex_unlock(&mu);
}

void lp_metric_set(lp_metric_t *m, const char *label_values, double v) {
  if (!m) return;
  pthread_mutex_lock(&mu);
  series_t *s = find_series(m, label_values, 1);
  if (s) s->value = v;
  pthread_mutex_unlock(&mu);
}

void lp_metric_observe(lp_metric_t *m, const char *label_values, double v) {
  if (!m) return;
  pthread_mutex_lock(&mu);
  series_t *s = find_series(m, label_values, 1);
  if (s) {
    s->sum += v;
    s->count++;
    for (size_t i = 0; i < m->nbuckets && s->bucket_counts; i++)
      if (v <= m->buckets[i]) {
        s->bucket_counts[i]++;
        break;
      }
  }
  pthread_mutex_unlock(&mu);
}

double lp_metric_value(lp_metric_t *m, const char *label_values) {
  if (!m) return 0;
  pthread_mutex_lock(&mu);
  series_t *s = find_series(m, label_values, 0);
  double v = s ? (m->type == M_HISTOGRAM ? (double)s->count : s->value) : 0;
  pthread_mutex_unlock(&mu);
  return v;
}

static void num(lp_buf_t *b, double v) {
  if (isnan(v))
    lp_buf_appendf(b, "NaN"); /* no reading: Prometheus' spelling */
  else if (isinf(v))
    lp_buf_appendf(b, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 1e15)
    lp_buf_appendf(b, "%.0f", v);
  else {
    /* Shortest text that reads back as the same double, as Prometheus' Go client prints. */
    char t[32];
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(t, sizeof t, "%.*g", prec, v);
      if (strtod(t, NULL) == v) break;
    }
    lp_buf_appendf(b, "%s", t);
  }
}

static void series_name(lp_buf_t *b, const char *name, const char *suffix, const char *cl,
                        const char *labels, const char *extra) {
  lp_buf_appendf(b, "%s%s", name, suffix);
  int any = (cl && *cl) || *labels || extra;
  if (!any) return;
  lp_buf_append(b, "{", 1);
  int first = 1;
  if (cl && *cl) {
    lp_buf_appendf(b, "%s", cl);
    first = 0;
  }
  if (*labels) {
    lp_buf_appendf(b, "%s%s", first ? "" : ",", labels);
    first = 0;
  }
  if (extra) lp_buf_appendf(b, "%s%s", first ? "" : ",", extra);
  lp_buf_append(b, "}", 1);
}

char *lp_metrics_render(const char *cl) {
  lp_buf_t b = LP_BUF_INIT;
  pthread_mutex_lock(&mu);
  /* Registry is newest-first; render oldest-first. */
  size_t n = 0;
  for (lp_metric_t *m = registry; m; m = m->next) n++;
  lp_metric_t **order = calloc(n ? n : 1, sizeof *order);
  size_t i = n;
  for (lp_metric_t *m = registry; m && order; m = m->next) order[--i] = m;
  for (size_t k = 0; order && k < n; k++) {
    lp_metric_t *m = order[k];
    static const char *types[] = {"counter", "gauge", "histogram"};
    lp_buf_appendf(&b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, types[m->type]);
    for (series_t *s = m->series; s; s = s->next) {
      if (m->type != M_HISTOGRAM) {
        series_name(&b, m->name, "", cl, s->labels, NULL);
        lp_buf_append(&b, " ", 1);
        num(&b, s->value);
        lp_buf_append(&b, "\n", 1);
        continue;
      }
      uint64_t cum = 0;
      for (size_t j = 0; j <= m->nbuckets; j++) {
        char le[64];
        if (j < m->nbuckets) {
          cum += s->bucket_counts ? s->bucket_counts[j] : 0;
          snprintf(le, sizeof le, "le=\"%g\"", m->buckets[j]);
        } else {
          cum = s->count;
          snprintf(le, sizeof le, "le=\"+Inf\"");
        }
        series_name(&b, m->name, "_bucket", cl, s->labels, le);
        lp_buf_appendf(&b, " %llu\n", (unsigned long long)cum);
      }
      series_name(&b, m->name, "_sum", cl, s->labels, NULL);
      lp_buf_append(&b, " ", 1);
      num(&b, s->sum);
      lp_buf_append(&b, "\n", 1);
      series_name(&b, m->name, "_count", cl, s->labels, NULL);
      lp_buf_appendf(&b, " %llu\n", (unsigned long long)s->count);
    }
  }
  free(order);
  pthread_mutex_unlock(&mu);
  lp_buf_append(&b, "", 1);
  return (char *)lp_buf_steal(&b, NULL);
}

void lp_metrics_reset(void) {
  pthread_mutex_lock(&mu);
  while (registry) {
    lp_metric_t *m = registry;
    registry = m->next;
    while (m->series) {
      series_t *s = m->series;
      m->series = s->next;
      free(s->labels);
      free(s->bucket_counts);
      free(s);
    }
    for (size_t i = 0; i < m->nlabels; i++) free(m->label_names[i]);
    free(m->label_names);
    free(m->buckets);
    free(m->name);
    free(m->help);
    free(m);
  }
  pthread_mutex_unlock(&mu);
}
