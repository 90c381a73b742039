#include "lpod/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "lpod/core.h"
#include "lpod/metrics.h"
#include "lpod/net.h"
#include "lpod_build_info.h"

struct admin {
  net_server_t *srv;
  admin_hooks_t hooks;
  bool monitor;
  char const_labels[512];
};

static const net_header_t text_hdr[] = {{"content-type", "text/plain; charset=utf-8"}};

static void send_text(net_req_t *r, int status, const char *text) {
  net_resp_send(r, status, text_hdr, 1, text, strlen(text));
}

static char *form(net_req_t *r, const char *key) {
  size_t len = 0;
  const uint8_t *body = net_req_body(r, &len);
  return admin_form_value(net_req_query(r), net_req_header(r, "content-type"), body, len, key);
}

static void on_healthz(net_req_t *r, void *arg) {
  (void)arg;
  send_text(r, 200, "OK\n");
}

static void on_readyz(net_req_t *r, void *arg) {
  admin_t *a = arg;
  char why[256] = "not ready";
  if (a->hooks.ready && !a->hooks.ready(a->hooks.arg, why, sizeof why)) {
    char msg[300];
    snprintf(msg, sizeof msg, "%s\n", why);
    send_text(r, 503, msg);
    return;
  }
  send_text(r, 200, "OK\n");
}

static void on_status(net_req_t *r, void *arg) {
  admin_t *a = arg;
  cJSON *o = cJSON_CreateObject();
  struct utsname u;
  uname(&u);
  cJSON_AddItemToObject(o, "Manifests", cJSON_CreateObject());
  cJSON_AddItemToObject(o, "InternalManifests", cJSON_CreateObject());
  cJSON_AddItemToObject(o, "StreamInfo", cJSON_CreateObject());
  cJSON_AddItemToObject(o, "OrchestratorPool", cJSON_CreateArray());
  cJSON_AddStringToObject(o, "Version", LPOD_VERSION);
  cJSON_AddStringToObject(o, "GolangRuntimeVersion", "");
  cJSON_AddStringToObject(o, "GOArch", strcmp(u.machine, "x86_64") == 0 ? "amd64" : u.machine);
  cJSON_AddStringToObject(o, "GOOS", "linux");
  cJSON_AddNumberToObject(o, "RegisteredTranscodersNumber", 0);
  cJSON_AddItemToObject(o, "RegisteredTranscoders", cJSON_CreateArray());
  cJSON_AddBoolToObject(o, "LocalTranscoding", false);
  cJSON_AddItemToObject(o, "BroadcasterPrices", cJSON_CreateObject());
  if (a->hooks.status) a->hooks.status(a->hooks.arg, o);
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  static const net_header_t h[] = {{"content-type", "application/json"}};
  net_resp_send(r, 200, h, 1, text, strlen(text));
  free(text);
}

static void on_get_log_level(net_req_t *r, void *arg) {
  (void)arg;
  char buf[32];
  snprintf(buf, sizeof buf, "%d", lp_log_get_level());
  send_text(r, 200, buf);
}

static bool parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static void on_set_log_level(net_req_t *r, void *arg) {
  (void)arg;
  char *v = form(r, "loglevel");
  long lvl;
  if (!v) {
    net_resp_error(r, 400, "missing form param: loglevel");
  } else if (!parse_int(v, 0, 100, &lvl)) {
    net_resp_error(r, 400, "loglevel must be a number from 0");
  } else {
    lp_log_set_level((int)lvl);
    LOGI("Log level set to %ld", lvl);
    send_text(r, 200, "");
  }
  free(v);
}

static void on_set_max_sessions(net_req_t *r, void *arg) {
  admin_t *a = arg;
  char *v = form(r, "maxSessions");
  long n = 0;
  bool is_auto = v && strcmp(v, "auto") == 0;
  if (!v) {
    net_resp_error(r, 400, "missing form param: maxSessions");
  } else if (!is_auto && !parse_int(v, 1, 1000000, &n)) {
    net_resp_error(r, 400, "maxSessions must be a positive number or 'auto'");
  } else if (!a->hooks.set_max_sessions) {
    net_resp_error(r, 500, "this node has no sessions to limit");
  } else {
    int rc = a->hooks.set_max_sessions(a->hooks.arg, (int)n, is_auto);
    if (rc) {
      net_resp_error(r, 400, lp_strerror(rc));
    } else {
      char msg[64];
      if (is_auto)
        snprintf(msg, sizeof msg, "Max sessions set to auto");
      else
        snprintf(msg, sizeof msg, "Max sessions set to %ld", n);
      LOGI("%s", msg);
      send_text(r, 200, msg);
    }
  }
  free(v);
}

static void on_set_target_ratio(net_req_t *r, void *arg) {
  admin_t *a = arg;
  char *v = form(r, "targetRealtimeRatio");
  char *end = NULL;
  double ratio = v ? strtod(v, &end) : 0;
  if (!v) {
    net_resp_error(r, 400, "missing form param: targetRealtimeRatio");
  } else if (!*v || *end || !(ratio > 0 && ratio <= 1)) {
    net_resp_error(r, 400, "targetRealtimeRatio must be a number in (0, 1]");
  } else {
    int rc =
        a->hooks.set_target_ratio ? a->hooks.set_target_ratio(a->hooks.arg, ratio) : LP_EUNSUPP;
    if (rc == LP_EUNSUPP) {
      net_resp_error(r, 400,
                     "this node admits streams by count (-costAdmission=false, or no local "
                     "transcoding): it has no target real-time ratio");
    } else if (rc) {
      net_resp_error(r, 400, lp_strerror(rc));
    } else {
      char msg[64];
      snprintf(msg, sizeof msg, "Target real-time ratio set to %.2f", ratio);
      send_text(r, 200, msg);
    }
  }
  free(v);
}

static void on_metrics(net_req_t *r, void *arg) {
  admin_t *a = arg;
  if (a->hooks.metrics) a->hooks.metrics(a->hooks.arg);
  char *text = lp_metrics_render(a->const_labels);
  static const net_header_t h[] = {{"content-type", "text/plain; version=0.0.4; charset=utf-8"}};
  net_resp_send(r, 200, h, 1, text, strlen(text));
  free(text);
}

int admin_start(uv_loop_t *loop, const lp_config_t *cfg, const char *node_type,
                const admin_hooks_t *hooks, admin_t **out, char *err, size_t errlen) {
  *out = NULL;
  admin_t *a = calloc(1, sizeof *a);
  if (!a) return LP_ENOMEM;
  if (hooks) a->hooks = *hooks;
  a->monitor = cfg->monitor;
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  if (cfg->eth_acct_addr && cfg->eth_acct_addr[0])
    snprintf(a->const_labels, sizeof a->const_labels, "node_id=\"%s-%s\",node_type=\"%s\"",
             cfg->eth_acct_addr, host, node_type);
  else
    snprintf(a->const_labels, sizeof a->const_labels, "node_id=\"%s\",node_type=\"%s\"", host,
             node_type);
  char addr[320];
  snprintf(addr, sizeof addr, "http://%s", cfg->cli_addr);
  net_server_opts_t so = {.addr = addr, .max_body_bytes = 64 * 1024};
  int rc = net_server_new(loop, &so, &a->srv, err, errlen);
  if (rc) {
    free(a);
    return rc;
  }
  net_server_route(a->srv, "/healthz", false, NULL, on_healthz, a);
  net_server_route(a->srv, "/readyz", false, NULL, on_readyz, a);
  net_server_route(a->srv, "/status", false, NULL, on_status, a);
  net_server_route(a->srv, "/getLogLevel", false, NULL, on_get_log_level, a);
  net_server_route(a->srv, "/setLogLevel", false, NULL, on_set_log_level, a);
  net_server_route(a->srv, "/setMaxSessions", false, NULL, on_set_max_sessions, a);
  net_server_route(a->srv, "/setTargetRealtimeRatio", false, NULL, on_set_target_ratio, a);
  if (a->monitor) {
    net_server_route(a->srv, "/metrics", false, NULL, on_metrics, a);
    char labels[128];
    snprintf(labels, sizeof labels, "%s,%s", LPOD_VERSION, LPOD_COMPILER);
    lp_metric_set(lp_metric_gauge("livepeer_versions", "Versions used by this node",
                                  "livepeerversion,compiler"),
                  labels, 1);
  }
  rc = net_server_listen(a->srv, err, errlen);
  if (rc) {
    net_server_free(a->srv);
    free(a);
    return rc;
  }
  LOGI("Admin API listening on port %d%s", net_server_port(a->srv),
       a->monitor ? " (metrics at /metrics)" : "");
  *out = a;
  return 0;
}

int admin_port(const admin_t *a) { return net_server_port(a->srv); }

void admin_free(admin_t *a) {
  if (!a) return;
  net_server_free(a->srv);
  free(a);
}
