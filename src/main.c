/* lpod entry point: `lpod <subcommand> ...`, or flags -> node. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <libavcodec/avcodec.h>
#include <libavfilter/avfilter.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <nghttp2/nghttp2ver.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <protobuf-c/protobuf-c.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "lpod/admin.h"
#include "lpod/config.h"
#include "lpod/core.h"
#include "lpod/hwaccel.h"
#include "lpod/lifecycle.h"
#include "lpod/orch.h"
#include "lpod/media.h"
#include "lpod/pool.h"
#include "lpod_build_info.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} lp_subcommand_t;

/* `lpod bench` measures the engine in this process, or with -orchAddr a running node. */
static int bench_main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    while (*a == '-') a++;
    if (strncmp(a, "orchAddr", 8) == 0 && (a[8] == 0 || a[8] == '='))
      return orch_cli_bench_node(argc, argv);
  }
  return media_cli_bench(argc, argv);
}

/* Subcommands: `lpod <name> ...`. Modules add their entry point here. */
static const lp_subcommand_t subcommands[] = {
    /* SUBCOMMANDS */
    {"transcode", media_cli_transcode, "transcode segments into renditions (one warm session)"},
    {"bench", bench_main,
     "benchmark concurrent transcode sessions over HLS segments; with -orchAddr, streams "
     "against a running node"},
    {"gateway", orch_cli_gateway,
     "send segments to an orchestrator as a gateway and fetch the renditions"},
    {"devices", hw_cli_devices, "probe and test the transcoding devices; print the device table"},
    {"calibrate", orch_cli_calibrate,
     "probe and test the devices, measure their capacity into the data dir's cache, print the "
     "device table as JSON (node flags)"},
    {NULL, NULL, NULL},
};

static void print_version(void) {
  unsigned av = avcodec_version();
  curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
  printf("lpod %s\n", LPOD_VERSION);
  printf("build      %s %s, %s\n", LPOD_GIT_REV, LPOD_BUILD_TYPE, LPOD_COMPILER);
  printf("ffmpeg     %s (libavcodec %u.%u.%u, libavformat %u.%u, libavfilter %u.%u)\n",
         av_version_info(), AV_VERSION_MAJOR(av), AV_VERSION_MINOR(av), AV_VERSION_MICRO(av),
         AV_VERSION_MAJOR(avformat_version()), AV_VERSION_MINOR(avformat_version()),
         AV_VERSION_MAJOR(avfilter_version()), AV_VERSION_MINOR(avfilter_version()));
  printf("openssl    %s\n", OpenSSL_version(OPENSSL_VERSION));
  printf("libuv      %s\n", uv_version_string());
  printf("nghttp2    %s\n", nghttp2_version(0)->version_str);
  printf("libcurl    %s\n", cv->version);
  printf("sqlite     %s\n", sqlite3_libversion());
  printf("protobuf-c %s\n", protobuf_c_version());
  printf("cjson      %s\n", cJSON_Version());
}

typedef struct node {
  lp_config_t cfg;
  uv_loop_t *loop;
  lp_lifecycle_t *lc;
  uv_timer_t status_timer; /* systemd STATUS= lines while the state changes */
  int idle_ticks;          /* status periods in a row with no session nor task (up to 2) */
  uv_work_t trim;          /* the idle node's heap hand-back, off the loop */
  bool trimming;
  uint64_t trim_ns;
  char status_last[160];
  int lock_fd;
  orch_node_t *orch;
  pool_worker_t *worker; /* -transcoder -orchAddr: remote transcoder */
  admin_t *admin;
  int exit_code;
} node_t;

/* ---- remote transcoder (pool) ---- */
static void node_worker_drained(void *arg) {
  node_t *n = arg;
  lp_lifecycle_drained(n->lc);
}

/* Every orchestrator refused us (invalid secret, zero capacity): stop and exit non-zero. */
static void node_worker_fatal(void *arg) {
  node_t *n = arg;
  n->exit_code = 1;
  lp_lifecycle_request_stop(n->lc);
}

static void node_orch_drained(void *arg) {
  node_t *n = arg;
  lp_lifecycle_drained(n->lc);
}

static bool node_ready(void *arg, char *why, size_t whylen) {
  node_t *n = arg;
  if (lp_lifecycle_stopping(n->lc)) {
    snprintf(why, whylen, "stopping");
    return false;
  }
  if (n->worker && pool_worker_failed(n->worker)) {
    snprintf(why, whylen, "no orchestrator accepted this transcoder");
    return false;
  }
  if (n->orch) return orch_node_ready(n->orch, why, whylen);
  return true;
}

static void node_metrics(void *arg) {
  node_t *n = arg;
  if (n->orch) orch_node_metrics(n->orch);
}

static int node_set_max_sessions(void *arg, int max, bool is_auto) {
  node_t *n = arg;
  return n->orch ? orch_node_set_max_sessions(n->orch, max, is_auto) : LP_EINVAL;
}

static int node_set_target_ratio(void *arg, double ratio) {
  node_t *n = arg;
  return n->orch ? orch_node_set_target(n->orch, ratio) : LP_EUNSUPP;
}

static void node_status(void *arg, cJSON *st) {
  node_t *n = arg;
  cJSON_ReplaceItemInObject(st, "LocalTranscoding", cJSON_CreateBool(n->cfg.transcoder));
  cJSON_AddStringToObject(st, "Network", n->cfg.network);
  cJSON_AddBoolToObject(st, "Stopping", lp_lifecycle_stopping(n->lc));
  if (n->orch) orch_node_status(n->orch, st);
}

static void node_stop(lp_lifecycle_t *lc, void *arg) {
  node_t *n = arg;
  if (n->worker)
    pool_worker_stop(n->worker, node_worker_drained, n);
  else if (n->orch)
    orch_node_stop(n->orch, node_orch_drained, n);
  else
    lp_lifecycle_drained(lc);
}

/* systemd shows the last STATUS= line in `systemctl status`: sent when it changes. */
/* malloc_trim walks every arena and returns their free pages: milliseconds to tens of them
 * after a busy spell, which the loop need not wait for. */
static void trim_work(uv_work_t *w) {
  node_t *n = w->data;
  uint64_t t0 = lp_now_ns();
  lp_malloc_release();
  n->trim_ns = lp_now_ns() - t0;
}

static void trim_done(uv_work_t *w, int status) {
  node_t *n = w->data;
  n->trimming = false;
  if (status == 0)
    LOGV(LP_V_DEBUG, "Idle: free heap handed back in %.1fms", (double)n->trim_ns / 1e6);
}

#define STATUS_PERIOD_MS 5000
static void status_tick(uv_timer_t *t) {
  node_t *n = t->data;
  /* Once the node has been idle for a whole period, the memory its last streams used goes back
   * to the system instead of staying in the heap until the next busy spell. */
  int activity = (n->orch ? orch_node_activity(n->orch) : 0) +
                 (n->worker ? pool_worker_activity(n->worker) : 0);
  if (activity > 0)
    n->idle_ticks = 0;
  else if (n->idle_ticks < 2 && ++n->idle_ticks == 2 && !n->trimming) {
    n->trim.data = n;
    n->trimming = uv_queue_work(n->loop, &n->trim, trim_work, trim_done) == 0;
  }
  char line[sizeof n->status_last];
  if (n->orch)
    orch_node_summary(n->orch, line, sizeof line);
  else
    snprintf(line, sizeof line, "%s", lp_lifecycle_stopping(n->lc) ? "stopping" : "transcoding");
  if (strcmp(line, n->status_last) == 0) return;
  snprintf(n->status_last, sizeof n->status_last, "%s", line);
  lp_lifecycle_status(n->lc, line);
}

static void node_close(lp_lifecycle_t *lc, void *arg) {
  node_t *n = arg;
  uv_timer_stop(&n->status_timer);
  uv_close((uv_handle_t *)&n->status_timer, NULL);
  orch_node_free(n->orch);
  n->orch = NULL;
  pool_worker_free(n->worker);
  n->worker = NULL;
  admin_free(n->admin);
  n->admin = NULL;
  lp_lifecycle_close(lc);
}

static int run_node(int argc, char **argv) {
  node_t n;
  memset(&n, 0, sizeof n);
  n.lock_fd = -1;
  char err[1024];
  lp_cfg_status_t st = lp_config_load(&n.cfg, argc, argv, NULL, err, sizeof err);
  if (st == LP_CFG_EXIT) return 0;
  if (st != LP_CFG_OK) {
    fprintf(stderr, "lpod: %s\n", err);
    return 2;
  }
  char *table = lp_config_table(&n.cfg);
  if (table) {
    fputs(table, stdout);
    fflush(stdout);
    free(table);
  }
  LOGI("lpod %s (%s) starting network=%s dataDir=%s", LPOD_VERSION, LPOD_GIT_REV, n.cfg.network,
       n.cfg.datadir);
  if (!n.cfg.orchestrator && !n.cfg.transcoder) {
    LOGE("Nothing to do: start lpod with -orchestrator, -transcoder or both");
    lp_config_free(&n.cfg);
    return 2;
  }
  if (lp_datadir_open(n.cfg.datadir, &n.lock_fd, err, sizeof err)) {
    LOGE("%s", err);
    lp_config_free(&n.cfg);
    return 1;
  }
  n.loop = uv_default_loop();
  /* before anything can stop the node: a failed start closes it */
  uv_timer_init(n.loop, &n.status_timer);
  n.status_timer.data = &n;
  n.lc = lp_lifecycle_new(n.loop, n.cfg.shutdown_grace_ms, node_stop, node_close, &n);
  if (!n.lc) {
    LOGE("out of memory");
    uv_close((uv_handle_t *)&n.status_timer, NULL);
    uv_run(n.loop, UV_RUN_DEFAULT);
    return 1;
  }
  if (n.cfg.orchestrator && orch_node_start(n.loop, &n.cfg, &n.orch)) {
    uv_close((uv_handle_t *)&n.status_timer, NULL);
    lp_lifecycle_close(n.lc);
    uv_run(n.loop, UV_RUN_DEFAULT);
    lp_lifecycle_free(n.lc);
    uv_loop_close(n.loop);
    close(n.lock_fd);
    lp_config_free(&n.cfg);
    return 1;
  }
  if (n.cfg.transcoder && !n.cfg.orchestrator) {
    /* The worker copies the device table; a device flag that selects nothing usable stops it. */
    hw_table_t *devs = calloc(1, sizeof *devs);
    /* as the node: exit 2 for unusable flags, 1 for devices */
    int code = 2, cap = 0, rc = pool_worker_check_flags(&n.cfg);
    if (rc == 0 && (rc = devs ? orch_transcoder_devices(&n.cfg, devs, &cap) : LP_ENOMEM)) code = 1;
    if (rc == 0) rc = pool_worker_start(n.loop, &n.cfg, devs, cap, &n.worker);
    free(devs);
    if (rc) {
      n.exit_code = code;
      lp_lifecycle_request_stop(n.lc);
    } else {
      pool_worker_on_fatal(n.worker, node_worker_fatal, &n);
    }
  }
  admin_hooks_t hooks = {.arg = &n,
                         .status = node_status,
                         .set_max_sessions = node_set_max_sessions,
                         .set_target_ratio = node_set_target_ratio,
                         .ready = node_ready,
                         .metrics = node_metrics};
  /* a start that failed above has closed the node already */
  if (!lp_lifecycle_stopping(n.lc) &&
      admin_start(n.loop, &n.cfg, n.cfg.orchestrator ? "orch" : "trcr", &hooks, &n.admin, err,
                  sizeof err)) {
    LOGE("Admin API on %s: %s", n.cfg.cli_addr, err);
    n.exit_code = 1;
    lp_lifecycle_request_stop(n.lc);
  }
  if (!lp_lifecycle_stopping(n.lc)) {
    /* The start-up self-test and calibration ran encoders over test clips; hand what they freed
     * back to the system instead of keeping it in the heap for the node's whole life. */
    lp_malloc_release();
    lp_lifecycle_ready(n.lc, "serving");
    LOGI("Node ready");
    uv_timer_start(&n.status_timer, status_tick, STATUS_PERIOD_MS, STATUS_PERIOD_MS);
  }
  uv_run(n.loop, UV_RUN_DEFAULT);
  lp_lifecycle_free(n.lc);
  uv_loop_close(n.loop);
  close(n.lock_fd);
  lp_config_free(&n.cfg);
  LOGI("Stopped");
  return n.exit_code;
}

int main(int argc, char **argv) {
  hw_log_init(); /* the device probe, calibration and workers run FFmpeg before any session */
  if (argc > 1 && argv[1][0] != '-') {
    for (const lp_subcommand_t *s = subcommands; s->name; s++)
      if (strcmp(s->name, argv[1]) == 0) return s->run(argc - 1, argv + 1);
    fprintf(stderr, "lpod: unknown subcommand '%s'. Subcommands:", argv[1]);
    for (const lp_subcommand_t *s = subcommands; s->name; s++) fprintf(stderr, " %s", s->name);
    fprintf(stderr, "\n");
    return 2;
  }
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "-version") == 0 || strcmp(argv[i], "--version") == 0) {
      print_version();
      return 0;
    }
  return run_node(argc - 1, argv + 1);
}
