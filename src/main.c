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

#include "lpod/config.h"
#include "lpod/core.h"
#include "lpod/lifecycle.h"
#include "lpod/media.h"
#include "lpod_build_info.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} lp_subcommand_t;

/* Subcommands: `lpod <name> ...`. Modules add their entry point here. */
static const lp_subcommand_t subcommands[] = {
    /* SUBCOMMANDS */
    {"transcode", media_cli_transcode, "transcode segments into renditions (one warm session)"},
    {"bench", media_cli_bench, "benchmark concurrent transcode sessions over HLS segments"},
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
  int lock_fd;
} node_t;

static void node_stop(lp_lifecycle_t *lc, void *arg) {
  (void)arg;
  lp_lifecycle_drained(lc);
}

static void node_close(lp_lifecycle_t *lc, void *arg) {
  (void)arg;
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
  n.lc = lp_lifecycle_new(n.loop, n.cfg.shutdown_grace_ms, node_stop, node_close, &n);
  if (!n.lc) {
    LOGE("out of memory");
    return 1;
  }
  lp_lifecycle_ready(n.lc, "serving");
  LOGI("Node ready");
  uv_run(n.loop, UV_RUN_DEFAULT);
  lp_lifecycle_free(n.lc);
  uv_loop_close(n.loop);
  close(n.lock_fd);
  lp_config_free(&n.cfg);
  LOGI("Stopped");
  return 0;
}

int main(int argc, char **argv) {
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
