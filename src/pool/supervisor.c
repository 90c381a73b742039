/* Child transcoder processes for combined mode: spawn, watch, restart with back-off, stop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lpod/pool.h"

#define SUP_BACKOFF_MIN_MS 1000
#define SUP_BACKOFF_MAX_MS 30000
#define SUP_STABLE_MS 60000 /* a child that lived this long restarts without delay growth */
#define SUP_MAX_ARGS 64

typedef struct sup_child {
  pool_supervisor_t *s;
  int index;
  uv_process_t proc;
  bool running;     /* proc handle is active (not yet closed) */
  uv_timer_t timer; /* restart delay */
  uint64_t backoff_ms;
  uint64_t started_ms;
  int restarts;
  int pid;
  char datadir[512];
} sup_child_t;

struct pool_supervisor {
  uv_loop_t *loop;
  char *exe, *orch_addr, *secret_file;
  char *env; /* one more NAME=VALUE for the children, or NULL */
  char capacity[16], verbosity[16];
  const char **extra;
  size_t nextra;
  sup_child_t *children;
  int n;
  int open_handles;
  bool stopping, freeing;
  void (*stopped)(void *);
  void *stopped_arg;
};

static void child_spawn(sup_child_t *c);

/* text with its last "%d" replaced by the child's index: the placeholder is in a file name,
 * and a data dir path before it may hold a "%d" of its own */
static const char *per_child(const char *text, int index, char *buf, size_t cap) {
  const char *pct = NULL;
  for (const char *p = strstr(text, "%d"); p; p = strstr(p + 1, "%d")) pct = p;
  if (!pct) return text;
  snprintf(buf, cap, "%.*s%d%s", (int)(pct - text), text, index, pct + 2);
  return buf;
}

static void maybe_stopped(pool_supervisor_t *s) {
  if (!s->stopping || !s->stopped) return;
  for (int i = 0; i < s->n; i++)
    if (s->children[i].running) return;
  void (*fn)(void *) = s->stopped;
  s->stopped = NULL;
  fn(s->stopped_arg);
}

static void on_sup_handle_closed(uv_handle_t *h) {
  sup_child_t *c = h->data;
  pool_supervisor_t *s = c->s;
  if (h == (uv_handle_t *)&c->proc) {
    c->running = false;
    c->pid = 0;
    maybe_stopped(s);
  }
  if (s->freeing && --s->open_handles == 0) {
    free(s->exe);
    free(s->orch_addr);
    free(s->secret_file);
    free(s->env);
    free(s->extra);
    free(s->children);
    free(s);
  }
}

static void on_restart(uv_timer_t *h) { child_spawn(h->data); }

static void on_child_exit(uv_process_t *p, int64_t status, int sig) {
  sup_child_t *c = p->data;
  pool_supervisor_t *s = c->s;
  if (s->stopping)
    LOGI("Transcoder worker %d exited status=%lld signal=%d", c->index, (long long)status, sig);
  else
    LOGE("Transcoder worker %d died status=%lld signal=%d; restarting in %.1fs", c->index,
         (long long)status, sig, (double)c->backoff_ms / 1000);
  /* running stays true until the handle is closed, so stop waits for the close too. */
  uv_close((uv_handle_t *)p, on_sup_handle_closed);
  if (s->stopping) return;
  if (lp_now_ms() - c->started_ms > SUP_STABLE_MS) c->backoff_ms = SUP_BACKOFF_MIN_MS;
  uv_timer_start(&c->timer, on_restart, c->backoff_ms, 0);
  c->backoff_ms = LP_MIN(c->backoff_ms * 2, (uint64_t)SUP_BACKOFF_MAX_MS);
}

static void child_spawn(sup_child_t *c) {
  pool_supervisor_t *s = c->s;
  if (s->stopping) return;
  if (c->running) { /* the old handle has not closed yet */
    uv_timer_start(&c->timer, on_restart, 50, 0);
    return;
  }
  const char *args[SUP_MAX_ARGS];
  char secret_file[1100];
  size_t n = 0;
  args[n++] = s->exe;
  args[n++] = "-transcoder";
  args[n++] = "-orchAddr";
  args[n++] = s->orch_addr;
  args[n++] = "-orchSecret";
  args[n++] = per_child(s->secret_file, c->index, secret_file, sizeof secret_file);
  args[n++] = "-maxSessions";
  args[n++] = s->capacity;
  args[n++] = "-dataDir";
  args[n++] = c->datadir;
  args[n++] = "-v";
  args[n++] = s->verbosity;
  /* The node's own admin API speaks for the node; the children take any free port. */
  args[n++] = "-cliAddr";
  args[n++] = "127.0.0.1:0";
  for (size_t i = 0; i < s->nextra && n + 1 < SUP_MAX_ARGS; i++) args[n++] = s->extra[i];
  args[n] = NULL;
  /* The child ends itself when this process goes away (see pool_worker_start). */
  char parent[48];
  snprintf(parent, sizeof parent, "LPOD_WORKER_PARENT=%d", (int)getpid());
  extern char **environ;
  size_t ne = 0;
  while (environ[ne]) ne++;
  char **env = calloc(ne + 3, sizeof *env);
  if (!env) return;
  size_t k = 0;
  size_t envlen = s->env ? strcspn(s->env, "=") + 1 : 0;
  /* systemd's notify socket and watchdog are the node's: a child would report as the service */
  static const char *const drop[] = {
      "LPOD_WORKER_PARENT=", "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="};
  for (size_t i = 0; i < ne; i++) {
    bool keep = !(s->env && strncmp(environ[i], s->env, envlen) == 0);
    for (size_t d = 0; d < LP_ARRAY_LEN(drop) && keep; d++)
      keep = strncmp(environ[i], drop[d], strlen(drop[d])) != 0;
    if (keep) env[k++] = environ[i];
  }
  env[k++] = parent;
  char mine[1100];
  if (s->env) env[k++] = (char *)per_child(s->env, c->index, mine, sizeof mine);
  env[k] = NULL;
  uv_stdio_container_t stdio[3];
  for (int i = 0; i < 3; i++) {
    stdio[i].flags = i == 0 ? UV_IGNORE : UV_INHERIT_FD;
    stdio[i].data.fd = i;
  }
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = s->exe;
  o.args = (char **)args;
  o.env = env;
  o.exit_cb = on_child_exit;
  o.stdio = stdio;
  o.stdio_count = 3;
  c->proc.data = c;
  int rc = uv_spawn(s->loop, &c->proc, &o);
  free(env);
  if (rc) {
    LOGE("Could not start transcoder worker %d: %s; retrying in %.1fs", c->index, uv_strerror(rc),
         (double)c->backoff_ms / 1000);
    /* uv_spawn initialised the handle even on failure: it must be closed. */
    c->running = true;
    uv_close((uv_handle_t *)&c->proc, on_sup_handle_closed);
    uv_timer_start(&c->timer, on_restart, c->backoff_ms, 0);
    c->backoff_ms = LP_MIN(c->backoff_ms * 2, (uint64_t)SUP_BACKOFF_MAX_MS);
    return;
  }
  c->running = true;
  c->pid = c->proc.pid;
  c->started_ms = lp_now_ms();
  c->restarts++;
  LOGI("Started transcoder worker %d pid=%d", c->index, c->pid);
}

int pool_supervisor_start(uv_loop_t *loop, const pool_supervisor_opts_t *opts,
                          pool_supervisor_t **out) {
  *out = NULL;
  if (!opts->orch_addr || !opts->secret_file || !opts->datadir) return LP_EINVAL;
  pool_supervisor_t *s = calloc(1, sizeof *s);
  if (!s) return LP_ENOMEM;
  s->loop = loop;
  s->n = opts->workers > 0 ? opts->workers : 1;
  s->exe = strdup(opts->exe ? opts->exe : "/proc/self/exe");
  s->orch_addr = strdup(opts->orch_addr);
  s->secret_file = strdup(opts->secret_file);
  snprintf(s->capacity, sizeof s->capacity, "%d", opts->capacity > 0 ? opts->capacity : 10);
  snprintf(s->verbosity, sizeof s->verbosity, "%d", opts->verbosity);
  if (opts->extra_args)
    while (opts->extra_args[s->nextra]) s->nextra++;
  s->extra = calloc(s->nextra + 1, sizeof *s->extra);
  s->children = calloc((size_t)s->n, sizeof *s->children);
  s->env = opts->env ? strdup(opts->env) : NULL;
  if (!s->exe || !s->orch_addr || !s->secret_file || !s->extra || !s->children ||
      (opts->env && !s->env)) {
    free(s->env);
    free(s->exe);
    free(s->orch_addr);
    free(s->secret_file);
    free(s->extra);
    free(s->children);
    free(s);
    return LP_ENOMEM;
  }
  for (size_t i = 0; i < s->nextra; i++) s->extra[i] = opts->extra_args[i];
  for (int i = 0; i < s->n; i++) {
    sup_child_t *c = &s->children[i];
    c->s = s;
    c->index = i;
    c->backoff_ms = SUP_BACKOFF_MIN_MS;
    c->restarts = -1; /* the first start is not a restart */
    snprintf(c->datadir, sizeof c->datadir, "%s/worker-%d", opts->datadir, i);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
  }
  for (int i = 0; i < s->n; i++) child_spawn(&s->children[i]);
  *out = s;
  return 0;
}

int pool_supervisor_pid(const pool_supervisor_t *s, int i) {
  return i >= 0 && i < s->n ? s->children[i].pid : 0;
}

int pool_supervisor_restarts(const pool_supervisor_t *s, int i) {
  return i >= 0 && i < s->n ? LP_MAX(0, s->children[i].restarts) : 0;
}

void pool_supervisor_stop(pool_supervisor_t *s, void (*stopped)(void *arg), void *arg) {
  s->stopping = true;
  s->stopped = stopped;
  s->stopped_arg = arg;
  for (int i = 0; i < s->n; i++) {
    sup_child_t *c = &s->children[i];
    uv_timer_stop(&c->timer);
    if (c->running && c->pid > 0) uv_process_kill(&c->proc, SIGTERM);
  }
  maybe_stopped(s);
}

void pool_supervisor_free(pool_supervisor_t *s) {
  if (!s) return;
  s->stopping = true;
  s->freeing = true;
  s->stopped = NULL;
  for (int i = 0; i < s->n; i++) {
    sup_child_t *c = &s->children[i];
    if (c->running && !uv_is_closing((uv_handle_t *)&c->proc)) {
      if (c->pid > 0) uv_process_kill(&c->proc, SIGKILL);
      s->open_handles++;
      uv_close((uv_handle_t *)&c->proc, on_sup_handle_closed);
    } else if (c->running) {
      s->open_handles++; /* its close is pending and will count down */
    }
    s->open_handles++;
    uv_close((uv_handle_t *)&c->timer, on_sup_handle_closed);
  }
}
