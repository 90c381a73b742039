#include "lpod/lifecycle.h"
#include "lpod/core.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int lp_notify(const char *state) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return 1;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t plen = strlen(path);
  if (plen >= sizeof sa.sun_path) return LP_EINVAL;
  memcpy(sa.sun_path, path, plen);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0'; /* abstract namespace */
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return LP_EIO;
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
  ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
  close(fd);
  return n < 0 ? LP_EIO : 0;
}

int lp_datadir_open(const char *dir, int *lock_fd, char *err, size_t errlen) {
  *lock_fd = -1;
  if (lp_mkdir_p(dir, 0700)) {
    snprintf(err, errlen, "cannot create data dir %s: %s", dir, strerror(errno));
    return LP_EIO;
  }
  if (chmod(dir, 0700) != 0) {
    snprintf(err, errlen, "cannot set mode 0700 on data dir %s: %s", dir, strerror(errno));
    return LP_EIO;
  }
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/lpod.lock", dir) >= (int)sizeof path) {
    snprintf(err, errlen, "data dir path too long");
    return LP_ERANGE;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return LP_EIO;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = "";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    lp_strtrim(pid);
    snprintf(err, errlen, "data dir %s is in use by another lpod (pid %s)", dir,
             pid[0] ? pid : "unknown");
    close(fd);
    return LP_EEXIST;
  }
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    close(fd);
    return LP_EIO;
  }
  *lock_fd = fd;
  return 0;
}

struct lp_lifecycle {
  uv_loop_t *loop;
  int64_t grace_ms;
  lp_lifecycle_stop_fn stop;
  lp_lifecycle_close_fn close;
  void *arg;
  uv_signal_t sigint, sigterm;
  uv_timer_t grace, watchdog;
  int stopping;
  int closed;
  int handles_open;
};

static void finish(lp_lifecycle_t *lc) {
  if (lc->closed) return;
  lc->closed = 1;
  uv_timer_stop(&lc->grace);
  if (lc->close) lc->close(lc, lc->arg);
}

static void on_grace(uv_timer_t *t) {
  lp_lifecycle_t *lc = t->data;
  LOGW("Shutdown grace period of %lld ms expired with work in flight; exiting",
       (long long)lc->grace_ms);
  finish(lc);
}

void lp_lifecycle_request_stop(lp_lifecycle_t *lc) {
  if (lc->stopping) return;
  lc->stopping = 1;
  lp_notify("STOPPING=1");
  LOGI("Stopping: no new work accepted; waiting up to %lld ms for in-flight work",
       (long long)lc->grace_ms);
  uv_timer_start(&lc->grace, on_grace, (uint64_t)(lc->grace_ms > 0 ? lc->grace_ms : 0), 0);
  if (lc->stop)
    lc->stop(lc, lc->arg);
  else
    lp_lifecycle_drained(lc);
}

static void on_signal(uv_signal_t *s, int signum) {
  lp_lifecycle_t *lc = s->data;
  if (lc->stopping) {
    /* Second signal: the operator wants out now. */
    static const char msg[] = "Second signal received: exiting immediately\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
  }
  LOGI("Received %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
  lp_lifecycle_request_stop(lc);
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  lp_notify("WATCHDOG=1");
}

lp_lifecycle_t *lp_lifecycle_new(uv_loop_t *loop, int64_t grace_ms, lp_lifecycle_stop_fn stop,
                                 lp_lifecycle_close_fn close, void *arg) {
  lp_lifecycle_t *lc = calloc(1, sizeof *lc);
  if (!lc) return NULL;
  lc->loop = loop;
  lc->grace_ms = grace_ms;
  lc->stop = stop;
  lc->close = close;
  lc->arg = arg;
  uv_signal_init(loop, &lc->sigint);
  uv_signal_init(loop, &lc->sigterm);
  uv_timer_init(loop, &lc->grace);
  uv_timer_init(loop, &lc->watchdog);
  lc->sigint.data = lc->sigterm.data = lc->grace.data = lc->watchdog.data = lc;
  uv_signal_start(&lc->sigint, on_signal, SIGINT);
  uv_signal_start(&lc->sigterm, on_signal, SIGTERM);
  signal(SIGPIPE, SIG_IGN);
  return lc;
}

void lp_lifecycle_ready(lp_lifecycle_t *lc, const char *status) {
  char buf[512];
  snprintf(buf, sizeof buf, "READY=1\nSTATUS=%s\nMAINPID=%ld", status ? status : "ready",
           (long)getpid());
  lp_notify(buf);
  /* systemd sets WATCHDOG_USEC (and WATCHDOG_PID, which must be ours) when WatchdogSec= is on;
   * feeding at half the interval from the loop means a wedged loop gets the node restarted. */
  const char *usec = getenv("WATCHDOG_USEC");
  const char *wpid = getenv("WATCHDOG_PID");
  if (usec && (!wpid || atol(wpid) == (long)getpid())) {
    unsigned long long us = strtoull(usec, NULL, 10);
    if (us >= 2000) {
      uint64_t every = us / 2000;
      uv_timer_start(&lc->watchdog, on_watchdog, 0, every);
      uv_unref((uv_handle_t *)&lc->watchdog);
      LOGV(LP_V_DEBUG, "systemd watchdog fed every %llu ms", (unsigned long long)every);
    }
  }
}

void lp_lifecycle_status(lp_lifecycle_t *lc, const char *status) {
  (void)lc;
  char buf[512];
  snprintf(buf, sizeof buf, "STATUS=%s", status);
  lp_notify(buf);
}

void lp_lifecycle_drained(lp_lifecycle_t *lc) {
  if (!lc->stopping) return;
  LOGI("In-flight work drained");
  finish(lc);
}

int lp_lifecycle_stopping(const lp_lifecycle_t *lc) { return lc->stopping; }

static void on_handle_closed(uv_handle_t *h) {
  lp_lifecycle_t *lc = h->data;
  lc->handles_open--;
}

void lp_lifecycle_close(lp_lifecycle_t *lc) {
  uv_handle_t *hs[] = {(uv_handle_t *)&lc->sigint, (uv_handle_t *)&lc->sigterm,
                       (uv_handle_t *)&lc->grace, (uv_handle_t *)&lc->watchdog};
  for (size_t i = 0; i < LP_ARRAY_LEN(hs); i++) {
    if (uv_is_closing(hs[i])) continue;
    lc->handles_open++;
    uv_close(hs[i], on_handle_closed);
  }
}

void lp_lifecycle_free(lp_lifecycle_t *lc) {
  if (!lc) return;
  free(lc);
}
