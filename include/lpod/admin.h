/* admin: the local admin API on -cliAddr (go-livepeer's paths and form parameters), health
 * and readiness endpoints, and Prometheus metrics at /metrics when -monitor is on. */
#ifndef LPOD_ADMIN_H
#define LPOD_ADMIN_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <uv.h>

#include "lpod/config.h"

typedef struct admin admin_t;

/* What the node lets the admin API see and change; every hook is optional. All run on the
 * loop thread. */
typedef struct admin_hooks {
  void *arg;
  /* Adds node fields to the /status object (RegisteredTranscoders, sessions, devices...). */
  void (*status)(void *arg, cJSON *status);
  /* /setMaxSessions: n > 0, or is_auto. Returns 0 or a negative LP_ error. */
  int (*set_max_sessions)(void *arg, int n, bool is_auto);
  /* /setTargetRealtimeRatio: ratio in (0, 1]. Returns 0, LP_EINVAL for a ratio out of range or
   * LP_EUNSUPP where streams are admitted by count (no capacity model). */
  int (*set_target_ratio)(void *arg, double ratio);
  /* /readyz: serving and able to take work (devices passed, not stopping). */
  bool (*ready)(void *arg, char *why, size_t whylen);
  /* Just before /metrics renders: sets the gauges read from the node's state. */
  void (*metrics)(void *arg);
} admin_hooks_t;

/* Binds cfg->cli_addr (plaintext HTTP/1.1). node_type is "orch" or "trcr" for metric labels. */
int admin_start(uv_loop_t *loop, const lp_config_t *cfg, const char *node_type,
                const admin_hooks_t *hooks, admin_t **out, char *err, size_t errlen);
/* The bound port (tests bind port 0). */
int admin_port(const admin_t *a);
/* Stops serving; frees once the loop has closed its handles. */
void admin_free(admin_t *a);

/* Form value as go's r.FormValue: from the query string, then a urlencoded or multipart
 * body. Malloc'd, NULL when absent. Exposed for tests. */
char *admin_form_value(const char *query, const char *content_type, const uint8_t *body, size_t len,
                       const char *key);

#endif
