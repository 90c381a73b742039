/* sched telemetry: NETINT cards through the monitor their SDK installs, ni_rsrc_mon (libxcoder's
 * resource monitor). lpod links no NETINT library: the monitor's JSON report (-o json) is the
 * interface, so any SDK release that prints it will do and no libxcoder structure is compiled
 * in. One thread runs the monitor every interval for all cards; each card's source reads the
 * latest report. */
#include "sched_int.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define NI_INTERVAL_MS 2000
#define NI_REPORT_MAX (4u << 20) /* a report is a few KiB per card */
#define NI_STALE_RUNS 3          /* a report older than this many intervals is no reading */

static struct {
  pthread_mutex_t life; /* starting and stopping: users, th, quit, tool, interval_ms */
  pthread_mutex_t mu;   /* what the thread writes: cards, cards_ms, failing */
  int users;
  pthread_t th;
  int quit[2]; /* a byte on quit[1] stops the thread and any run in progress */
  char *tool;
  unsigned interval_ms;
  struct ni_cards *cards; /* the last report the monitor printed, read */
  uint64_t cards_ms;      /* lp_now_ms() when it was read */
  bool failing;           /* the last run failed (and was logged) */
  bool missing_logged;
} mon = {.life = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER, .quit = {-1, -1}};

/* ---- the report ---- */

static int engine_of(const char *type) {
  if (strcmp(type, "decoder") == 0) return 0;
  if (strcmp(type, "scaler") == 0) return 1;
  if (strcmp(type, "encoder") == 0) return 2;
  return -1; /* AI, uploader, nvme, tp, pcie: not stages of a transcode here */
}

static bool number(const cJSON *o, const char *key, double *v) {
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(n)) return false;
  *v = n->valuedouble;
  return true;
}

/* Every card of one report, read in one pass. */
#define NI_MAX_CARDS 64
typedef struct ni_cards {
  lp_sched_sample_t card[NI_MAX_CARDS];
  bool listed[NI_MAX_CARDS];
} ni_cards_t;

/* One object of the report: {"encoder": [{"INDEX": 0, "LOAD": 12, ...}, ...]}. */
static void read_object(const cJSON *obj, ni_cards_t *cards) {
  const cJSON *kind;
  cJSON_ArrayForEach(kind, obj) {
    int e = kind->string ? engine_of(kind->string) : -1;
    if (e < 0 || !cJSON_IsArray(kind)) continue;
    const cJSON *dev;
    cJSON_ArrayForEach(dev, kind) {
      double index, load, fw = 0, inst;
      /* range-checked as a number: a report's figure need not fit an int */
      if (!number(dev, "INDEX", &index) || !(index >= 0 && index < NI_MAX_CARDS) ||
          index != (int)index || !number(dev, "LOAD", &load))
        continue;
      int c = (int)index;
      lp_sched_sample_t *out = &cards->card[c];
      cards->listed[c] = true;
      number(dev, "FW_LOAD", &fw);
      /* LOAD is the video engine's, FW_LOAD the card's firmware: either one full holds the
       * stage up, as the monitor's own text view reports */
      double busy = LP_MAX(load, fw) / 100.0;
      out->util[e] = LP_MIN(1.0, LP_MAX(0.0, busy));
      out->util_mask |= 1u << e;
      out->fields |= LP_SCHED_TEL_UTIL;
      if (number(dev, "INST", &inst) && inst >= 0 && inst <= 1e6) {
        if (e == 0) {
          out->dec_sessions = (int)inst;
          out->fields |= LP_SCHED_TEL_DEC_SESSIONS;
        } else if (e == 2) {
          out->enc_sessions = (int)inst;
          out->fields |= LP_SCHED_TEL_ENC_SESSIONS;
        }
      }
    }
  }
}

/* LP_EINVAL when the report holds no object or one that does not parse. */
static int parse_report(const char *report, ni_cards_t *cards) {
  memset(cards, 0, sizeof *cards);
  const char *p = report;
  bool any = false;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (!*p) break;
    if (*p != '{') {
      /* the monitor's own lines at its default log level (a row of stars, the time it has been
       * up): not part of the report */
      const char *nl = strchr(p, '\n');
      if (!nl) break;
      p = nl + 1;
      continue;
    }
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithOpts(p, &end, false);
    if (!obj || !end || end == p || !cJSON_IsObject(obj)) {
      cJSON_Delete(obj);
      return LP_EINVAL;
    }
    any = true;
    read_object(obj, cards);
    cJSON_Delete(obj);
    p = end;
  }
  return any ? 0 : LP_EINVAL;
}

static int card_sample(const ni_cards_t *cards, int card, lp_sched_sample_t *out) {
  if (card < 0 || card >= NI_MAX_CARDS || !cards->listed[card]) return LP_ENOENT;
  *out = cards->card[card];
  return 0;
}

int lp_sched_netint_parse(const char *report, int card, lp_sched_sample_t *out) {
  if (!report || !out) return LP_EINVAL;
  memset(out, 0, sizeof *out);
  ni_cards_t *cards = malloc(sizeof *cards);
  if (!cards) return LP_ENOMEM;
  int rc = parse_report(report, cards);
  if (!rc) rc = card_sample(cards, card, out);
  free(cards);
  return rc;
}

/* ---- running the monitor ---- */

/* Runs the monitor once with a deadline; on success *out is its standard output (malloc'd). */
static int run_monitor(const char *tool, unsigned timeout_ms, char **out, char *why, size_t wlen) {
  *out = NULL;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    snprintf(why, wlen, "pipe: %s", strerror(errno));
    return LP_EIO;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  char *argv[] = {(char *)tool, "-o", "json", NULL};
  pid_t pid;
  int err = posix_spawnp(&pid, tool, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (err) {
    close(p[0]);
    snprintf(why, wlen, "%s: %s", tool, strerror(err));
    return err == ENOENT || err == EACCES ? LP_ENOENT : LP_EIO;
  }
  size_t len = 0, cap = 8192;
  char *buf = malloc(cap);
  int rc = buf ? 0 : LP_ENOMEM;
  uint64_t deadline = lp_now_ms() + timeout_ms;
  while (!rc) {
    uint64_t now = lp_now_ms();
    if (now >= deadline) {
      snprintf(why, wlen, "%s did not answer within %u ms", tool, timeout_ms);
      rc = LP_ETIMEDOUT;
      break;
    }
    struct pollfd fds[2] = {{p[0], POLLIN, 0}, {mon.quit[0], POLLIN, 0}};
    int n = poll(fds, mon.quit[0] >= 0 ? 2 : 1, (int)(deadline - now));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      snprintf(why, wlen, "poll: %s", strerror(errno));
      rc = LP_EIO;
      break;
    }
    if (n > 0 && mon.quit[0] >= 0 && fds[1].revents) {
      snprintf(why, wlen, "stopping");
      rc = LP_ECANCELED;
      break;
    }
    if (n == 0 || !fds[0].revents) continue;
    if (len + 4096 + 1 > cap) {
      if (cap >= NI_REPORT_MAX) {
        snprintf(why, wlen, "%s printed more than %u bytes", tool, NI_REPORT_MAX);
        rc = LP_ERANGE;
        break;
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        rc = LP_ENOMEM;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(p[0], buf + len, cap - len - 1);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) {
      snprintf(why, wlen, "reading %s: %s", tool, strerror(errno));
      rc = LP_EIO;
      break;
    }
    if (r == 0) break; /* the monitor closed its output */
    len += (size_t)r;
  }
  close(p[0]);
  /* its exit, within the same deadline: a monitor that closed its output and hangs on is no
   * better than one that never printed */
  int st = 0;
  while (!rc) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) break;
    uint64_t now = lp_now_ms();
    if (now >= deadline) {
      snprintf(why, wlen, "%s did not exit within %u ms", tool, timeout_ms);
      rc = LP_ETIMEDOUT;
      break;
    }
    struct pollfd q = {mon.quit[0], POLLIN, 0};
    int n = poll(&q, mon.quit[0] >= 0 ? 1 : 0, (int)LP_MIN(10, deadline - now));
    if (n > 0) {
      snprintf(why, wlen, "stopping");
      rc = LP_ECANCELED;
    }
  }
  if (rc) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  if (!rc && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
    if (WIFEXITED(st))
      snprintf(why, wlen, "%s exited with status %d", tool, WEXITSTATUS(st));
    else
      snprintf(why, wlen, "%s was ended by signal %d", tool, WTERMSIG(st));
    rc = LP_EDEVICE;
  }
  if (rc) {
    free(buf);
    return rc;
  }
  buf[len] = '\0';
  *out = buf;
  return 0;
}

static unsigned run_timeout(unsigned interval_ms) {
  return LP_MIN(5000u, LP_MAX(1000u, 2 * interval_ms));
}

/* One run of the monitor, read into every card's sample (on the monitor's thread, so the loop
 * only copies one out). */
static int fetch(ni_cards_t **out, char *why, size_t wlen) {
  *out = NULL;
  char *text = NULL;
  int rc = run_monitor(mon.tool, run_timeout(mon.interval_ms), &text, why, wlen);
  if (rc) return rc;
  ni_cards_t *cards = malloc(sizeof *cards);
  if (!cards)
    rc = LP_ENOMEM;
  else if (parse_report(text, cards)) {
    snprintf(why, wlen, "%s printed no JSON report", mon.tool);
    rc = LP_EPROTO;
  }
  free(text);
  if (rc) {
    free(cards);
    return rc;
  }
  *out = cards;
  return 0;
}

/* Runs the monitor and keeps what it reported; logs when it starts or stops failing. */
static int refresh(void) {
  ni_cards_t *cards = NULL;
  char why[256] = "";
  int rc = fetch(&cards, why, sizeof why);
  if (rc == LP_ECANCELED) return rc;
  pthread_mutex_lock(&mon.mu);
  if (!rc) {
    free(mon.cards);
    mon.cards = cards;
    mon.cards_ms = lp_now_ms();
    if (mon.failing) LOGI("capacity: the NETINT monitor answers again");
    mon.failing = false;
  } else if (!mon.failing) {
    LOGW("capacity: the NETINT monitor failed: %s", why);
    mon.failing = true;
  }
  pthread_mutex_unlock(&mon.mu);
  return rc;
}

static void *mon_main(void *arg) {
  (void)arg;
  for (;;) {
    struct pollfd q = {mon.quit[0], POLLIN, 0};
    int n = poll(&q, 1, (int)mon.interval_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n != 0) break;
    if (refresh() == LP_ECANCELED) break;
  }
  return NULL;
}

static void mon_stop(void) {
  if (mon.quit[1] >= 0) {
    char b = 1;
    ssize_t w = write(mon.quit[1], &b, 1);
    (void)w;
    pthread_join(mon.th, NULL);
  }
  for (int i = 0; i < 2; i++) {
    if (mon.quit[i] >= 0) close(mon.quit[i]);
    mon.quit[i] = -1;
  }
  free(mon.tool);
  free(mon.cards);
  mon.tool = NULL;
  mon.cards = NULL;
  mon.cards_ms = 0;
  mon.failing = false;
}

/* Starts the monitor for its first user: one run now, so a card that is not there is known at
 * once, then the thread. Called with mon.life held. */
static int mon_start(const char *tool, unsigned interval_ms) {
  mon.tool = strdup(tool);
  if (!mon.tool) return LP_ENOMEM;
  mon.interval_ms = interval_ms;
  char why[256] = "";
  int rc = fetch(&mon.cards, why, sizeof why);
  if (rc) {
    if (!mon.missing_logged)
      LOGW("capacity: NETINT telemetry skipped: %s (it comes with NETINT's SDK; -netintMonitor "
           "names it); the cards run on the cost model and the real-time feedback",
           why);
    mon.missing_logged = true;
    free(mon.tool);
    mon.tool = NULL;
    return LP_EUNSUPP;
  }
  mon.cards_ms = lp_now_ms();
  if (pipe2(mon.quit, O_CLOEXEC) != 0) {
    mon.quit[0] = mon.quit[1] = -1;
    mon_stop();
    return LP_EIO;
  }
  if (pthread_create(&mon.th, NULL, mon_main, NULL) != 0) {
    for (int i = 0; i < 2; i++) close(mon.quit[i]);
    mon.quit[0] = mon.quit[1] = -1;
    mon_stop();
    return LP_ENOMEM;
  }
  LOGI("capacity: NETINT telemetry from %s every %u ms", tool, interval_ms);
  return 0;
}

/* Called with mon.life held; the thread only ever takes mon.mu, so it can be joined here. */
static void mon_release(void) {
  if (--mon.users == 0) mon_stop();
}

/* ---- the source ---- */

typedef struct netint_src {
  lp_sched_source_t base;
  int card;
} netint_src_t;

static int netint_sample(lp_sched_source_t *src, uint64_t now_ms, lp_sched_sample_t *out) {
  (void)now_ms; /* the report's age is on the real clock, whatever the scheduler's is */
  netint_src_t *n = (netint_src_t *)src;
  int rc;
  pthread_mutex_lock(&mon.mu);
  uint64_t now = lp_now_ms();
  if (!mon.cards || now - mon.cards_ms > (uint64_t)NI_STALE_RUNS * mon.interval_ms)
    rc = LP_EDEVICE;
  else
    rc = card_sample(mon.cards, n->card, out);
  pthread_mutex_unlock(&mon.mu);
  return rc;
}

static void netint_destroy(lp_sched_source_t *src) {
  free(src);
  pthread_mutex_lock(&mon.life);
  mon_release();
  pthread_mutex_unlock(&mon.life);
}

static const lp_sched_source_ops_t netint_ops = {"ni_rsrc_mon", netint_sample, netint_destroy};

int lp_sched_source_netint_new(const char *tool, int card, unsigned interval_ms,
                               lp_sched_source_t **out) {
  if (!out || card < 0) return LP_EINVAL;
  *out = NULL;
  if (!tool || !tool[0]) tool = "ni_rsrc_mon";
  if (!interval_ms) interval_ms = NI_INTERVAL_MS;
  pthread_mutex_lock(&mon.life);
  int rc = mon.users > 0 ? 0 : mon_start(tool, interval_ms);
  if (rc) {
    pthread_mutex_unlock(&mon.life);
    return rc;
  }
  mon.users++;
  pthread_mutex_lock(&mon.mu);
  /* the last report, which may be a failed run's predecessor: a card it lists is there */
  bool listed = mon.cards && card < NI_MAX_CARDS && mon.cards->listed[card];
  pthread_mutex_unlock(&mon.mu);
  netint_src_t *n = listed ? calloc(1, sizeof *n) : NULL;
  if (!n) {
    if (!listed) LOGW("capacity: the NETINT monitor lists no card %d; its telemetry skipped", card);
    mon_release();
    pthread_mutex_unlock(&mon.life);
    return listed ? LP_ENOMEM : LP_ENOENT;
  }
  pthread_mutex_unlock(&mon.life);
  n->base.ops = &netint_ops;
  n->card = card;
  *out = &n->base;
  return 0;
}
