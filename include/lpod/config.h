/* core/config: go-livepeer compatible flags, LP_* environment variables and -config files.
 * Precedence: command-line flags > environment > config file > defaults. */
#ifndef LPOD_CONFIG_H
#define LPOD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* -localWorkers auto */
#define LP_LOCAL_WORKERS_AUTO (-1)

typedef struct lp_config {
  /* role and addressing */
  bool orchestrator;
  bool transcoder;
  char *network;      /* "offchain" (default), "arbitrum-one-mainnet", ... */
  char *service_addr; /* public host:port advertised to gateways */
  char *http_addr;    /* bind for the service port; "http://" prefix = plaintext */
  char *cli_addr;     /* admin API bind, normalised to host:port */
  char *orch_addr;    /* T: comma list of orchestrators to register with */
  char *orch_secret;  /* literal or contents of the file it names */
  int max_sessions;   /* outer cap on concurrent streams */
  bool max_sessions_auto;
  /* combined mode: transcode in this many child processes (0: in process; LP_LOCAL_WORKERS_AUTO:
   * one per device of the table, the CPU counting as one when there is no other) */
  int local_workers;
  char *datadir;
  int verbosity;
  /* devices */
  char *nvidia;
  char *netint;
  char *netint_monitor; /* -netintMonitor: NETINT's ni_rsrc_mon, for telemetry */
  char *qsv;            /* lpod: comma list of render nodes, e.g. /dev/dri/renderD128 */
  bool test_transcoder;
  /* capacity (lpod) */
  double target_rt_ratio; /* -targetRealtimeRatio, default 0.8 */
  char *per_device_max;   /* -perGpuMax style list */
  bool calibrate;
  char *cpu_preset;    /* x264/x265 speed preset of CPU encoders */
  bool cost_admission; /* admission by cost (sched); false: the session count alone */
  /* metrics */
  bool monitor;
  bool metrics_per_stream;
  /* pricing and payments */
  char *price_per_unit;
  char *pixels_per_unit;
  char *price_per_gateway;
  bool auto_adjust_price;
  char *ticket_ev;
  char *max_face_value;
  /* chain */
  char *eth_url;
  char *eth_controller;
  char *eth_acct_addr;
  char *eth_keystore_path;
  char *eth_password; /* literal or contents of the file it names */
  int64_t block_polling_interval_ms;
  /* TLS (lpod) */
  char *tls_cert;
  char *tls_key;
  /* lifecycle (lpod) */
  int64_t shutdown_grace_ms; /* -shutdownGrace, default 10s */
  char *config_file;         /* -config, for the record */
} lp_config_t;

typedef enum { LP_CFG_OK = 0, LP_CFG_ERROR = 1, LP_CFG_EXIT = 2 } lp_cfg_status_t;

/* Parses argv (after the program name), the environment (envp may be NULL: uses environ) and the
 * -config file. On error writes a message naming the flag, file and line into err and returns
 * LP_CFG_ERROR; for -help/-version returns LP_CFG_EXIT after printing. Warnings (accepted
 * go-livepeer flags lpod does not implement) are logged. */
lp_cfg_status_t lp_config_load(lp_config_t *cfg, int argc, char **argv, char **envp, char *err,
                               size_t errlen);
void lp_config_free(lp_config_t *cfg);
/* Writes go-livepeer's start-up table of settings that differ from their defaults, secrets
 * masked, into a malloc'd string. */
char *lp_config_table(const lp_config_t *cfg);
/* Go-style durations: "10s", "1m30s", "250ms", or a bare number of seconds. */
int lp_parse_duration_ms(const char *s, int64_t *out_ms);
/* The default data dir for a network: $HOME/.lpData/<network>. Malloc'd. */
char *lp_config_default_datadir(const char *network);

#endif
