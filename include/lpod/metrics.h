/* core/metrics: a small Prometheus registry any module can record into, from any thread.
 * Names follow go-livepeer's series (spec/operators.md §2.2) so existing dashboards work; the
 * admin module renders it at <cliAddr>/metrics. */
#ifndef LPOD_METRICS_H
#define LPOD_METRICS_H

#include <stddef.h>

typedef struct lp_metric lp_metric_t;

/* label_names: comma-separated label names ("profiles,trusted") or NULL. Registering a name
 * again returns the existing metric (types must agree). NULL only when out of memory. */
lp_metric_t *lp_metric_counter(const char *name, const char *help, const char *label_names);
lp_metric_t *lp_metric_gauge(const char *name, const char *help, const char *label_names);
/* buckets: strictly increasing upper bounds, +Inf implied. */
lp_metric_t *lp_metric_histogram(const char *name, const char *help, const char *label_names,
                                 const double *buckets, size_t nbuckets);

/* label_values: comma-separated values in label order, or NULL for none. Values may not
 * contain commas. */
void lp_metric_add(lp_metric_t *m, const char *label_values, double v);
void lp_metric_set(lp_metric_t *m, const char *label_values, double v);
void lp_metric_observe(lp_metric_t *m, const char *label_values, double v);
/* Current value of a counter or gauge series (0 when absent): for tests and status. */
double lp_metric_value(lp_metric_t *m, const char *label_values);

/* Prometheus text exposition (version 0.0.4). const_labels is added to every series, e.g.
 * "node_id=\"host\",node_type=\"orch\"" (may be NULL). Malloc'd. */
char *lp_metrics_render(const char *const_labels);
/* Drops every metric (tests). */
void lp_metrics_reset(void);

#endif
