/* Flags, LP_* environment and -config files, with go-livepeer's names, defaults and rules
 * (spec/operators.md §1.2, §1.3, §8.2). Every source is turned into (name, value, origin)
 * assignments, applied file first, then environment, then command line, so later ones win. */
#include "lpod/config.h"
#include "lpod/core.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

extern char **environ;

typedef enum { F_BOOL, F_STR, F_INT, F_DOUBLE, F_DUR, F_MAXSESS, F_WORKERS } ftype_t;

enum { FL_SECRET = 1, FL_LITERAL_OR_FILE = 2 };

typedef struct {
  const char *name;  /* flag name as typed after the dash */
  const char *field; /* Go field name for the start-up table */
  ftype_t type;
  size_t off; /* offset in lp_config_t */
  const char *def;
  unsigned flags;
  const char *help;
} flagdef_t;

#define OFF(f) offsetof(lp_config_t, f)

static const flagdef_t flags[] = {
    {"orchestrator", "Orchestrator", F_BOOL, OFF(orchestrator), "false", 0,
     "Run as an orchestrator (serve gateways)"},
    {"transcoder", "Transcoder", F_BOOL, OFF(transcoder), "false", 0,
     "Transcode locally; with -orchAddr, run as a remote transcoder"},
    {"network", "Network", F_STR, OFF(network), "offchain", 0,
     "offchain, arbitrum-one-mainnet, ... (selects chain settings)"},
    {"serviceAddr", "ServiceAddr", F_STR, OFF(service_addr), "", 0,
     "Public host:port gateways use to reach this node"},
    {"httpAddr", "HttpAddr", F_STR, OFF(http_addr), "", 0,
     "Bind address of the service port; an http:// prefix serves plaintext"},
    {"cliAddr", "CliAddr", F_STR, OFF(cli_addr), "", 0,
     "Bind address of the local admin API (default 127.0.0.1:7935, transcoder 6935)"},
    {"orchAddr", "OrchAddr", F_STR, OFF(orch_addr), "", 0,
     "Transcoder: comma list of orchestrators (host:port) to register with"},
    {"orchSecret", "OrchSecret", F_STR, OFF(orch_secret), "", FL_SECRET | FL_LITERAL_OR_FILE,
     "Shared orchestrator/transcoder secret, or a file holding it"},
    {"maxSessions", "MaxSessions", F_MAXSESS, OFF(max_sessions), "10", 0,
     "Outer cap on concurrent streams, or 'auto'"},
    {"localWorkers", "LocalWorkers", F_WORKERS, OFF(local_workers), "auto", 0,
     "-orchestrator -transcoder: transcode in N supervised child processes, so that a crash "
     "costs only their segments (0: in this process; 'auto': one per device, in this process "
     "when the service port is plain http://)"},
    {"dataDir", "Datadir", F_STR, OFF(datadir), "", 0,
     "Data directory (default ~/.lpData/<network>)"},
    {"datadir", "Datadir", F_STR, OFF(datadir), "", 0, "Deprecated spelling of -dataDir"},
    {"v", "V", F_INT, OFF(verbosity), "3", 0, "Log verbosity (4 short, 5 debug, 6 verbose)"},
    {"nvidia", "Nvidia", F_STR, OFF(nvidia), "", 0, "NVIDIA GPU ids (comma list) or 'all'"},
    {"netint", "Netint", F_STR, OFF(netint), "", 0, "Netint device GUIDs (comma list) or 'all'"},
    {"netintMonitor", "NetintMonitor", F_STR, OFF(netint_monitor), "ni_rsrc_mon", 0,
     "NETINT's resource monitor from its SDK, run for the cards' load (a path, or a name on PATH)"},
    {"qsv", "Qsv", F_STR, OFF(qsv), "", 0,
     "Intel QSV render nodes (comma list, e.g. /dev/dri/renderD128)"},
    {"testTranscoder", "TestTranscoder", F_BOOL, OFF(test_transcoder), "true", 0,
     "Probe every device with a real transcode at start"},
    {"targetRealtimeRatio", "TargetRealtimeRatio", F_DOUBLE, OFF(target_rt_ratio), "0.8", 0,
     "Admit work while devices stay below this transcode-time/duration ratio"},
    {"perGpuMax", "PerGpuMax", F_STR, OFF(per_device_max), "", 0,
     "Per-device session caps, in the order of the device list (e.g. 18,15,22)"},
    {"calibrate", "Calibrate", F_BOOL, OFF(calibrate), "false", 0,
     "Re-run the device calibration benchmark at start"},
    {"costAdmission", "CostAdmission", F_BOOL, OFF(cost_admission), "true", 0,
     "Admit new streams by their cost on the devices; false: -maxSessions alone"},
    {"cpuPreset", "CpuPreset", F_STR, OFF(cpu_preset), "medium", 0,
     "Speed preset of CPU encoders (x264/x265: ultrafast .. veryslow)"},
    {"monitor", "Monitor", F_BOOL, OFF(monitor), "false", 0,
     "Serve Prometheus metrics at <cliAddr>/metrics"},
    {"metricsPerStream", "MetricsPerStream", F_BOOL, OFF(metrics_per_stream), "false", 0,
     "Label metrics per stream (high cardinality)"},
    {"pricePerUnit", "PricePerUnit", F_STR, OFF(price_per_unit), "", 0,
     "Price in wei per pixelsPerUnit pixels"},
    {"pixelsPerUnit", "PixelsPerUnit", F_STR, OFF(pixels_per_unit), "1", 0,
     "Pixels the price applies to"},
    {"pricePerGateway", "PricePerGateway", F_STR, OFF(price_per_gateway), "", FL_LITERAL_OR_FILE,
     "Per-gateway prices as JSON, or a file holding it"},
    {"pricePerBroadcaster", "PricePerGateway", F_STR, OFF(price_per_gateway), "",
     FL_LITERAL_OR_FILE, "Old name of -pricePerGateway"},
    {"autoAdjustPrice", "AutoAdjustPrice", F_BOOL, OFF(auto_adjust_price), "true", 0,
     "Add ticket redemption overhead to the advertised price"},
    {"ticketEV", "TicketEV", F_STR, OFF(ticket_ev), "8000000000", 0,
     "Expected value of a ticket, in wei"},
    {"maxFaceValue", "MaxFaceValue", F_STR, OFF(max_face_value), "0", 0,
     "Cap on ticket face value in wei (0: none)"},
    {"ethUrl", "EthUrl", F_STR, OFF(eth_url), "", 0, "Ethereum JSON-RPC endpoint"},
    {"ethController", "EthController", F_STR, OFF(eth_controller), "", 0,
     "Protocol Controller contract address"},
    {"ethAcctAddr", "EthAcctAddr", F_STR, OFF(eth_acct_addr), "", 0, "Account address"},
    {"ethKeystorePath", "EthKeystorePath", F_STR, OFF(eth_keystore_path), "", 0,
     "Keystore file or directory"},
    {"ethPassword", "EthPassword", F_STR, OFF(eth_password), "", FL_SECRET | FL_LITERAL_OR_FILE,
     "Keystore password, or a file holding it"},
    {"blockPollingInterval", "BlockPollingInterval", F_DUR, OFF(block_polling_interval_ms), "5s", 0,
     "Chain polling interval"},
    {"tlsCert", "TlsCert", F_STR, OFF(tls_cert), "", 0,
     "TLS certificate (PEM) for the service port (default: self-signed in the data dir)"},
    {"tlsKey", "TlsKey", F_STR, OFF(tls_key), "", 0, "TLS private key (PEM) for -tlsCert"},
    {"shutdownGrace", "ShutdownGrace", F_DUR, OFF(shutdown_grace_ms), "10s", 0,
     "How long in-flight work may finish after SIGTERM"},
    {"config", "Config", F_STR, OFF(config_file), "", 0, "Config file of 'key value' lines"},
};

/* go-livepeer flags lpod accepts but does not implement (gateway, AI, and features served
 * elsewhere), so existing config files still start the node. 'b' marks booleans. */
static const struct {
  const char *name;
  char type;
} ignored[] = {
    {"gateway", 'b'},
    {"broadcaster", 'b'},
    {"rtmpAddr", 's'},
    {"httpIngest", 'b'},
    {"nodes", 's'},
    {"extraNodes", 's'},
    {"verifierUrl", 's'},
    {"verifierPath", 's'},
    {"localVerify", 'b'},
    {"transcodingOptions", 's'},
    {"maxAttempts", 's'},
    {"selectRandFreq", 's'},
    {"selectStakeWeight", 's'},
    {"selectPriceWeight", 's'},
    {"selectPriceExpFactor", 's'},
    {"orchPerfStatsUrl", 's'},
    {"region", 's'},
    {"maxPricePerUnit", 's'},
    {"maxPricePerCapability", 's'},
    {"ignoreMaxPriceIfNeeded", 'b'},
    {"minPerfScore", 's'},
    {"discoveryTimeout", 's'},
    {"gatewayHost", 's'},
    {"orchWebhookUrl", 's'},
    {"orchBlocklist", 's'},
    {"orchMinLivepeerVersion", 's'},
    {"authWebhookUrl", 's'},
    {"detectContent", 'b'},
    {"maxTicketEV", 's'},
    {"maxTotalEV", 's'},
    {"depositMultiplier", 's'},
    {"redeemer", 'b'},
    {"redeemerAddr", 's'},
    {"reward", 'b'},
    {"initializeRound", 'b'},
    {"initializeRoundMaxDelay", 's'},
    {"ethOrchAddr", 's'},
    {"gasLimit", 's'},
    {"minGasPrice", 's'},
    {"maxGasPrice", 's'},
    {"transactionTimeout", 's'},
    {"maxTransactionReplacements", 's'},
    {"priceFeedAddr", 's'},
    {"metricsClientIP", 'b'},
    {"metadataQueueUri", 's'},
    {"metadataAmqpExchange", 's'},
    {"metadataPublishTimeout", 's'},
    {"objectStore", 's'},
    {"recordStore", 's'},
    {"hevcDecoding", 'b'},
    {"startupAvailabilityCheck", 'b'},
    {"j", 'b'},
    {"aiWorker", 'b'},
    {"aiModels", 's'},
    {"aiModelsDir", 's'},
    {"aiRunnerImage", 's'},
    {"aiRunnerImageOverrides", 's'},
    {"aiVerboseLogs", 'b'},
    {"aiProcessingRetryTimeout", 's'},
    {"aiRunnerContainersPerGPU", 's'},
    {"aiMinRunnerVersion", 's'},
    {"aiServiceRegistry", 'b'},
    {"liveAIAuthWebhookUrl", 's'},
    {"livePaymentInterval", 's'},
    {"liveOutSegmentTimeout", 's'},
    {"liveAICapRefreshModels", 's'},
    {"liveAISaveNSegments", 's'},
    {"kafkaBootstrapServers", 's'},
    {"kafkaUser", 's'},
    {"kafkaPassword", 's'},
    {"kafkaGatewayTopic", 's'},
};

typedef enum { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG } src_t;

typedef struct {
  char *err;
  size_t errlen;
  char where[512]; /* "flag -x", "LP_X", "file f line 3" */
} pctx_t;

static void seterr(pctx_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(pctx_t *p, const char *fmt, ...) {
  if (!p->err || p->errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err, p->errlen, fmt, ap);
  va_end(ap);
}

static const flagdef_t *find_flag(const char *name) {
  for (size_t i = 0; i < LP_ARRAY_LEN(flags); i++)
    if (strcmp(flags[i].name, name) == 0) return &flags[i];
  return NULL;
}

static int find_ignored(const char *name) {
  for (size_t i = 0; i < LP_ARRAY_LEN(ignored); i++)
    if (strcmp(ignored[i].name, name) == 0) return (int)i;
  return -1;
}

/* Case-insensitive edit distance, for "did you mean". */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 99;
  size_t d[65][65];
  for (size_t i = 0; i <= la; i++) d[i][0] = i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      size_t c = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
      size_t best = d[i - 1][j - 1] + c;
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      d[i][j] = best;
    }
  return d[la][lb];
}

static const char *closest_flag(const char *name) {
  const char *best = NULL;
  size_t bestd = 99;
  for (size_t i = 0; i < LP_ARRAY_LEN(flags); i++) {
    size_t dd = edit_distance(name, flags[i].name);
    if (dd < bestd) {
      bestd = dd;
      best = flags[i].name;
    }
  }
  size_t len = strlen(name);
  size_t limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
  return bestd <= limit ? best : NULL;
}

static void unknown_flag_error(pctx_t *p, const char *name) {
  const char *near = closest_flag(name);
  if (near)
    seterr(p, "%s: unknown flag -%s (did you mean -%s?)", p->where, name, near);
  else
    seterr(p, "%s: unknown flag -%s (see lpod -help)", p->where, name);
}

static int parse_bool(const char *v, bool *out) {
  static const char *t[] = {"1", "t", "T", "true", "TRUE", "True"};
  static const char *f[] = {"0", "f", "F", "false", "FALSE", "False"};
  for (size_t i = 0; i < LP_ARRAY_LEN(t); i++)
    if (strcmp(v, t[i]) == 0) return *out = true, 0;
  for (size_t i = 0; i < LP_ARRAY_LEN(f); i++)
    if (strcmp(v, f[i]) == 0) return *out = false, 0;
  return LP_EINVAL;
}

int lp_parse_duration_ms(const char *s, int64_t *out_ms) {
  if (!s || !*s) return LP_EINVAL;
  char *end;
  errno = 0;
  double bare = strtod(s, &end);
  if (*end == '\0' && errno == 0) { /* a bare number means seconds */
    if (!(bare >= 0) || bare > 1e12) return LP_ERANGE;
    *out_ms = (int64_t)llround(bare * 1000.0);
    return 0;
  }
  double total = 0;
  const char *p = s;
  if (*p == '+') p++;
  if (*p == '\0') return LP_EINVAL;
  while (*p) {
    if (!isdigit((unsigned char)*p) && *p != '.') return LP_EINVAL;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno) return LP_EINVAL;
    p = end;
    double mult;
    if (strncmp(p, "ns", 2) == 0)
      mult = 1e-6, p += 2;
    else if (strncmp(p, "us", 2) == 0 || strncmp(p, "\xc2\xb5s", 3) == 0)
      mult = 1e-3, p += (*p == 'u' ? 2 : 3);
    else if (strncmp(p, "ms", 2) == 0)
      mult = 1, p += 2;
    else if (*p == 's')
      mult = 1000, p += 1;
    else if (*p == 'm')
      mult = 60000, p += 1;
    else if (*p == 'h')
      mult = 3600000, p += 1;
    else
      return LP_EINVAL;
    total += v * mult;
  }
  if (total > 9.2e15) return LP_ERANGE;
  *out_ms = (int64_t)llround(total);
  return 0;
}

/* v is a whole decimal number from lo to hi, and nothing else. */
static bool int_in(const char *v, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (*v == '\0' || *end || errno || n < lo || n > hi) return false;
  *out = (int)n;
  return true;
}

static int set_value(lp_config_t *cfg, const flagdef_t *f, const char *v, pctx_t *p) {
  char *base = (char *)cfg + f->off;
  switch (f->type) {
  case F_BOOL: {
    bool b;
    if (parse_bool(v, &b)) {
      seterr(p, "%s: invalid boolean value \"%s\" for -%s", p->where, v, f->name);
      return LP_EINVAL;
    }
    *(bool *)base = b;
    return 0;
  }
  case F_STR: {
    char *dup = strdup(v);
    if (!dup) return LP_ENOMEM;
    free(*(char **)base);
    *(char **)base = dup;
    return 0;
  }
  case F_INT: {
    int n;
    if (!int_in(v, -1000000000L, 1000000000L, &n)) {
      seterr(p, "%s: invalid integer value \"%s\" for -%s", p->where, v, f->name);
      return LP_EINVAL;
    }
    *(int *)base = n;
    return 0;
  }
  case F_DOUBLE: {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (*v == '\0' || *end || errno || !isfinite(d)) {
      seterr(p, "%s: invalid number \"%s\" for -%s", p->where, v, f->name);
      return LP_EINVAL;
    }
    *(double *)base = d;
    return 0;
  }
  case F_DUR: {
    int64_t ms;
    if (lp_parse_duration_ms(v, &ms)) {
      seterr(p, "%s: invalid duration \"%s\" for -%s (use e.g. 10s, 1m30s, 500ms)", p->where, v,
             f->name);
      return LP_EINVAL;
    }
    *(int64_t *)base = ms;
    return 0;
  }
  case F_MAXSESS: {
    if (strcmp(v, "auto") == 0) {
      cfg->max_sessions_auto = true;
      cfg->max_sessions = 0;
      return 0;
    }
    int n;
    if (!int_in(v, 1, 1000000, &n)) {
      seterr(p, "%s: -maxSessions must be a positive number or 'auto', got \"%s\"", p->where, v);
      return LP_EINVAL;
    }
    cfg->max_sessions_auto = false;
    cfg->max_sessions = n;
    return 0;
  }
  case F_WORKERS: {
    if (strcmp(v, "auto") == 0) {
      *(int *)base = LP_LOCAL_WORKERS_AUTO;
      return 0;
    }
    int n;
    if (!int_in(v, 0, 64, &n)) {
      seterr(p, "%s: -%s must be a number from 0 to 64 or 'auto', got \"%s\"", p->where, f->name,
             v);
      return LP_EINVAL;
    }
    *(int *)base = n;
    return 0;
  }
  }
  return LP_EINVAL;
}

static void warn_ignored(const char *name, const char *origin) {
  LOGW("%s: -%s is a go-livepeer setting lpod does not implement; ignored", origin, name);
}

/* ---- sources -------------------------------------------------------------------- */

static int apply_file(lp_config_t *cfg, const char *path, pctx_t *p) {
  char *text;
  int rc = lp_file_read(path, 1 << 20, &text, NULL);
  if (rc) {
    seterr(p, "config file %s: %s", path,
           rc == LP_ENOENT   ? "no such file"
           : rc == LP_ERANGE ? "too large"
                             : "cannot read");
    return LP_EINVAL;
  }
  int lineno = 0;
  char *cur = text;
  while (cur && *cur) {
    char *nl = strchr(cur, '\n');
    if (nl) *nl = '\0';
    lineno++;
    char *line = lp_strtrim(cur);
    cur = nl ? nl + 1 : NULL;
    snprintf(p->where, sizeof p->where, "config file %s line %d", path, lineno);
    if (*line == '\0' || *line == '#') continue;
    /* A trailing " #..." is a comment. */
    char *hash = strstr(line, " #");
    if (hash) {
      *hash = '\0';
      lp_strtrim(line);
    }
    char *key = line, *val = "true";
    char *sp = strchr(line, ' ');
    if (sp) {
      *sp = '\0';
      val = lp_strtrim(sp + 1);
    }
    if (key[0] == '-') {
      seterr(p, "%s: keys are written without a dash (\"%s\")", p->where, key);
      rc = LP_EINVAL;
      break;
    }
    if (strcmp(key, "config") == 0) continue;
    const flagdef_t *f = find_flag(key);
    if (!f) {
      if (find_ignored(key) >= 0) {
        warn_ignored(key, p->where);
        continue;
      }
      unknown_flag_error(p, key);
      rc = LP_EINVAL;
      break;
    }
    if ((rc = set_value(cfg, f, val, p))) break;
  }
  free(text);
  return rc;
}

static int apply_env(lp_config_t *cfg, char **envp, pctx_t *p) {
  for (size_t i = 0; i < LP_ARRAY_LEN(flags); i++) {
    const flagdef_t *f = &flags[i];
    if (strcmp(f->name, "config") == 0) continue;
    if (strcmp(f->name, "datadir") == 0) continue; /* same variable as dataDir */
    char var[64] = "LP_";
    size_t n = 3;
    for (const char *c = f->name; *c && n < sizeof var - 1; c++)
      var[n++] = (char)toupper((unsigned char)*c);
    var[n] = '\0';
    size_t vl = strlen(var);
    for (char **e = envp; e && *e; e++) {
      if (strncmp(*e, var, vl) != 0 || (*e)[vl] != '=') continue;
      const char *val = *e + vl + 1;
      if (*val == '\0') break; /* empty values are ignored, as in go-livepeer */
      snprintf(p->where, sizeof p->where, "environment %s", var);
      int rc = set_value(cfg, f, val, p);
      if (rc) return rc;
      break;
    }
  }
  return 0;
}

static const char *env_lookup(char **envp, const char *var) {
  size_t vl = strlen(var);
  for (char **e = envp; e && *e; e++)
    if (strncmp(*e, var, vl) == 0 && (*e)[vl] == '=' && (*e)[vl + 1]) return *e + vl + 1;
  return NULL;
}

typedef struct {
  const flagdef_t *f;
  const char *val;
} assign_t;

/* Splits argv into assignments without applying them, so the -config file can be applied
 * first. Returns the number of assignments or a negative error. */
static int scan_argv(int argc, char **argv, assign_t *out, pctx_t *p, bool *help) {
  int n = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    snprintf(p->where, sizeof p->where, "flag %s", a);
    if (a[0] != '-' || a[1] == '\0') {
      seterr(p,
             "unexpected argument \"%s\" (flags start with a dash; booleans take "
             "-flag=false)",
             a);
      return LP_EINVAL;
    }
    const char *name = a + 1;
    if (*name == '-') name++;
    if (*name == '\0') {
      seterr(p, "\"--\" is not supported; remove it");
      return LP_EINVAL;
    }
    char namebuf[128];
    const char *eq = strchr(name, '=');
    const char *val = NULL;
    size_t nl = eq ? (size_t)(eq - name) : strlen(name);
    if (nl >= sizeof namebuf) {
      seterr(p, "flag name too long: %s", a);
      return LP_EINVAL;
    }
    memcpy(namebuf, name, nl);
    namebuf[nl] = '\0';
    snprintf(p->where, sizeof p->where, "command line");
    if (eq) val = eq + 1;
    if (strcmp(namebuf, "help") == 0 || strcmp(namebuf, "h") == 0) {
      *help = true;
      continue;
    }
    const flagdef_t *f = find_flag(namebuf);
    if (!f) {
      int ig = find_ignored(namebuf);
      if (ig < 0) {
        unknown_flag_error(p, namebuf);
        return LP_EINVAL;
      }
      warn_ignored(namebuf, "command line");
      if (!val && ignored[ig].type == 's') {
        if (i + 1 >= argc) {
          seterr(p, "flag needs an argument: -%s", namebuf);
          return LP_EINVAL;
        }
        i++;
      }
      continue;
    }
    if (!val) {
      if (f->type == F_BOOL) {
        bool dummy;
        /* Go stops parsing at "-flag false" and silently drops what follows; be explicit. */
        if (i + 1 < argc && parse_bool(argv[i + 1], &dummy) == 0) {
          seterr(p, "-%s %s: boolean flags take their value with '=' (-%s=%s)", namebuf,
                 argv[i + 1], namebuf, argv[i + 1]);
          return LP_EINVAL;
        }
        val = "true";
      } else {
        if (i + 1 >= argc) {
          seterr(p, "flag needs an argument: -%s", namebuf);
          return LP_EINVAL;
        }
        val = argv[++i];
      }
    }
    out[n].f = f;
    out[n].val = val;
    n++;
  }
  return n;
}

static void set_defaults(lp_config_t *cfg) {
  pctx_t p = {0};
  snprintf(p.where, sizeof p.where, "default");
  for (size_t i = 0; i < LP_ARRAY_LEN(flags); i++) {
    if (strcmp(flags[i].name, "datadir") == 0 || strcmp(flags[i].name, "pricePerBroadcaster") == 0)
      continue; /* aliases share the field */
    set_value(cfg, &flags[i], flags[i].def, &p);
  }
}

static int resolve_literal_or_file(char **field) {
  if (!*field || !**field) return 0;
  struct stat st;
  if (stat(*field, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return 0;
  char *text;
  int rc = lp_file_read(*field, 1 << 20, &text, NULL);
  if (rc) return rc;
  lp_strtrim(text);
  if (*text == '\0') {
    free(text);
    return 0;
  }
  free(*field);
  *field = text;
  return 0;
}

char *lp_config_default_datadir(const char *network) {
  const char *home = getenv("HOME");
  if (!home || !*home) home = "/var/lib/lpod";
  size_t n = strlen(home) + strlen(network) + 16;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s/.lpData/%s", home, network);
  return s;
}

/* go-livepeer: ":7935" -> "127.0.0.1:7935"; a bare host gets the default port. */
static int normalise_cli_addr(lp_config_t *cfg) {
  const char *port = cfg->orchestrator || !cfg->transcoder ? "7935" : "6935";
  const char *a = cfg->cli_addr;
  char buf[300];
  if (!a || !*a)
    snprintf(buf, sizeof buf, "127.0.0.1:%s", port);
  else if (a[0] == ':')
    snprintf(buf, sizeof buf, "127.0.0.1%s", a);
  else if (!strrchr(a, ':') || (a[0] == '[' && a[strlen(a) - 1] == ']'))
    snprintf(buf, sizeof buf, "%s:%s", a, port);
  else
    return 0;
  char *dup = strdup(buf);
  if (!dup) return LP_ENOMEM;
  free(cfg->cli_addr);
  cfg->cli_addr = dup;
  return 0;
}

static void print_usage(void) {
  printf("Usage: lpod [flags]\n       lpod <subcommand> [args]   (see README)\n\nFlags:\n");
  for (size_t i = 0; i < LP_ARRAY_LEN(flags); i++) {
    const flagdef_t *f = &flags[i];
    printf("  -%s", f->name);
    if (f->type != F_BOOL) printf(" value");
    printf("\n        %s", f->help);
    if (f->def[0]) printf(" (default %s)", f->def);
    printf("\n");
  }
  printf("  -version\n        Print version, build and library versions\n");
}

lp_cfg_status_t lp_config_load(lp_config_t *cfg, int argc, char **argv, char **envp, char *err,
                               size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  if (!envp) envp = environ;
  pctx_t p = {.err = err, .errlen = errlen};
  if (err && errlen) err[0] = '\0';
  set_defaults(cfg);

  assign_t *as = calloc((size_t)argc + 1, sizeof *as);
  if (!as) return LP_CFG_ERROR;
  bool help = false;
  int n = scan_argv(argc, argv, as, &p, &help);
  lp_cfg_status_t st = LP_CFG_ERROR;
  if (n < 0) goto out;
  if (help) {
    print_usage();
    st = LP_CFG_EXIT;
    goto out;
  }

  /* -config from the command line, else LP_CONFIG. */
  const char *cfgfile = env_lookup(envp, "LP_CONFIG");
  for (int i = 0; i < n; i++)
    if (strcmp(as[i].f->name, "config") == 0) cfgfile = as[i].val;
  if (cfgfile && *cfgfile) {
    if (apply_file(cfg, cfgfile, &p)) goto out;
    free(cfg->config_file);
    cfg->config_file = strdup(cfgfile);
  }
  if (apply_env(cfg, envp, &p)) goto out;
  for (int i = 0; i < n; i++) {
    if (strcmp(as[i].f->name, "config") == 0) continue;
    snprintf(p.where, sizeof p.where, "flag -%s", as[i].f->name);
    if (set_value(cfg, as[i].f, as[i].val, &p)) goto out;
  }

  if (resolve_literal_or_file(&cfg->orch_secret) || resolve_literal_or_file(&cfg->eth_password) ||
      resolve_literal_or_file(&cfg->price_per_gateway)) {
    seterr(&p, "cannot read a secret file named by -orchSecret, -ethPassword or -pricePerGateway");
    goto out;
  }
  if (cfg->verbosity < 0) {
    seterr(&p, "-v must be 0 or more");
    goto out;
  }
  if (!(cfg->target_rt_ratio > 0 && cfg->target_rt_ratio <= 1.0)) {
    seterr(&p, "-targetRealtimeRatio must be in (0, 1], got %g", cfg->target_rt_ratio);
    goto out;
  }
  static const char *const presets[] = {"ultrafast", "superfast", "veryfast", "faster",  "fast",
                                        "medium",    "slow",      "slower",   "veryslow"};
  bool preset_ok = false;
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
    preset_ok = preset_ok || strcmp(cfg->cpu_preset, presets[i]) == 0;
  if (!preset_ok) {
    seterr(&p,
           "-cpuPreset must be one of ultrafast, superfast, veryfast, faster, fast, medium, "
           "slow, slower, veryslow; got '%s'",
           cfg->cpu_preset);
    goto out;
  }
  if (cfg->nvidia[0] && cfg->netint[0]) {
    seterr(&p, "-nvidia and -netint cannot be used together");
    goto out;
  }
  if (!cfg->datadir[0]) {
    free(cfg->datadir);
    cfg->datadir = lp_config_default_datadir(cfg->network);
    if (!cfg->datadir) goto out;
  }
  if (normalise_cli_addr(cfg)) goto out;
  lp_log_set_level(cfg->verbosity);
  st = LP_CFG_OK;
out:
  free(as);
  if (st != LP_CFG_OK) lp_config_free(cfg);
  return st;
}

void lp_config_free(lp_config_t *cfg) {
  for (size_t i = 0; i < LP_ARRAY_LEN(flags); i++) {
    if (flags[i].type != F_STR) continue;
    char **field = (char **)((char *)cfg + flags[i].off);
    free(*field);
    *field = NULL;
  }
}

static void value_string(const lp_config_t *cfg, const flagdef_t *f, char *out, size_t n) {
  const char *base = (const char *)cfg + f->off;
  switch (f->type) {
  case F_BOOL: snprintf(out, n, "%s", *(const bool *)base ? "true" : "false"); break;
  case F_STR: snprintf(out, n, "%s", *(char *const *)base ? *(char *const *)base : ""); break;
  case F_INT: snprintf(out, n, "%d", *(const int *)base); break;
  case F_DOUBLE: snprintf(out, n, "%g", *(const double *)base); break;
  case F_DUR: {
    int64_t ms = *(const int64_t *)base;
    if (ms % 1000 == 0)
      snprintf(out, n, "%llds", (long long)(ms / 1000));
    else
      snprintf(out, n, "%lldms", (long long)ms);
    break;
  }
  case F_MAXSESS:
    if (cfg->max_sessions_auto)
      snprintf(out, n, "auto");
    else
      snprintf(out, n, "%d", cfg->max_sessions);
    break;
  case F_WORKERS:
    if (*(const int *)base == LP_LOCAL_WORKERS_AUTO)
      snprintf(out, n, "auto");
    else
      snprintf(out, n, "%d", *(const int *)base);
    break;
  }
}

char *lp_config_table(const lp_config_t *cfg) {
  lp_config_t def;
  memset(&def, 0, sizeof def);
  set_defaults(&def);
  /* Derived defaults count as defaults. */
  def.orchestrator = cfg->orchestrator;
  def.transcoder = cfg->transcoder;
  normalise_cli_addr(&def);
  def.orchestrator = def.transcoder = false;
  free(def.datadir);
  def.datadir = lp_config_default_datadir(cfg->network);
  lp_buf_t b = LP_BUF_INIT;
  lp_buf_appendf(&b, "+---------------------------------------------+\n"
                     "|   Configuration values (non-default only)   |\n"
                     "+---------------------------------------------+\n");
  for (size_t i = 0; i < LP_ARRAY_LEN(flags); i++) {
    const flagdef_t *f = &flags[i];
    if (strcmp(f->name, "datadir") == 0 || strcmp(f->name, "pricePerBroadcaster") == 0) continue;
    char cur[512], dv[512];
    value_string(cfg, f, cur, sizeof cur);
    value_string(&def, f, dv, sizeof dv);
    if (strcmp(cur, dv) == 0) continue;
    if ((f->flags & FL_SECRET) && cur[0]) snprintf(cur, sizeof cur, "********");
    lp_buf_appendf(&b, "| %-21s | %-19s |\n", f->field, cur);
  }
  lp_buf_appendf(&b, "+---------------------------------------------+\n");
  lp_config_free(&def);
  lp_buf_append(&b, "", 1);
  return (char *)lp_buf_steal(&b, NULL);
}
