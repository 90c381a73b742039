#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lpod/core.h"
#include "lpod/lifecycle.h"

static char tmpdir[128];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/lpod-lc-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd);
}

static int bind_notify_socket(const char *path) {
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  unlink(path);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  setenv("NOTIFY_SOCKET", path, 1);
  return fd;
}

static int recv_msg(int fd, char *buf, size_t n, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, timeout_ms) != 1) return -1;
  ssize_t k = recv(fd, buf, n - 1, 0);
  if (k < 0) return -1;
  buf[k] = '\0';
  return (int)k;
}

static void test_notify(void **state) {
  (void)state;
  unsetenv("NOTIFY_SOCKET");
  assert_int_equal(lp_notify("READY=1"), 1); /* not under systemd: nothing to do */
  char path[256];
  snprintf(path, sizeof path, "%s/notify.sock", tmpdir);
  int fd = bind_notify_socket(path);
  assert_int_equal(lp_notify("STATUS=hello"), 0);
  char buf[256];
  assert_true(recv_msg(fd, buf, sizeof buf, 1000) > 0);
  assert_string_equal(buf, "STATUS=hello");
  close(fd);
  unsetenv("NOTIFY_SOCKET");
}

static void test_datadir_mode_and_lock(void **state) {
  (void)state;
  char dir[256], err[512];
  snprintf(dir, sizeof dir, "%s/a/b/data", tmpdir);
  int fd1 = -1, fd2 = -1;
  assert_int_equal(lp_datadir_open(dir, &fd1, err, sizeof err), 0);
  struct stat st;
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  /* A second open description of the lock file cannot take the lock, even in one process. */
  assert_int_equal(lp_datadir_open(dir, &fd2, err, sizeof err), LP_EEXIST);
  assert_int_equal(fd2, -1);
  char pid[32];
  snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
  assert_non_null(strstr(err, "in use"));
  assert_non_null(strstr(err, pid));
  /* Another process is refused too. */
  pid_t child = fork();
  if (child == 0) {
    int f = -1;
    char e[256];
    _exit(lp_datadir_open(dir, &f, e, sizeof e) == LP_EEXIST ? 0 : 1);
  }
  int status;
  waitpid(child, &status, 0);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(fd1);
  assert_int_equal(lp_datadir_open(dir, &fd2, err, sizeof err), 0);
  close(fd2);
  /* An existing, too-open dir is tightened. */
  chmod(dir, 0755);
  assert_int_equal(lp_datadir_open(dir, &fd2, err, sizeof err), 0);
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  close(fd2);
}

typedef struct {
  int stop_calls, close_calls;
  int drain_immediately;
  lp_lifecycle_t *lc;
} probe_t;

static void on_stop(lp_lifecycle_t *lc, void *arg) {
  probe_t *p = arg;
  p->stop_calls++;
  if (p->drain_immediately) lp_lifecycle_drained(lc);
}

static void on_close(lp_lifecycle_t *lc, void *arg) {
  probe_t *p = arg;
  p->close_calls++;
  lp_lifecycle_close(lc);
}

static void raise_term(uv_timer_t *t) {
  raise(SIGTERM);
  uv_close((uv_handle_t *)t, NULL);
}

static void test_signal_drains_then_closes(void **state) {
  (void)state;
  char path[256];
  snprintf(path, sizeof path, "%s/n2.sock", tmpdir);
  int nfd = bind_notify_socket(path);
  uv_loop_t loop;
  uv_loop_init(&loop);
  probe_t p = {.drain_immediately = 1};
  lp_lifecycle_t *lc = lp_lifecycle_new(&loop, 5000, on_stop, on_close, &p);
  lp_lifecycle_ready(lc, "testing");
  char buf[256];
  assert_true(recv_msg(nfd, buf, sizeof buf, 1000) > 0);
  assert_non_null(strstr(buf, "READY=1"));
  assert_non_null(strstr(buf, "STATUS=testing"));
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, raise_term, 10, 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once every handle is closed */
  assert_int_equal(p.stop_calls, 1);
  assert_int_equal(p.close_calls, 1);
  assert_true(lp_lifecycle_stopping(lc));
  assert_true(recv_msg(nfd, buf, sizeof buf, 1000) > 0);
  assert_string_equal(buf, "STOPPING=1");
  lp_lifecycle_free(lc);
  assert_int_equal(uv_loop_close(&loop), 0);
  close(nfd);
  unsetenv("NOTIFY_SOCKET");
}

static void test_grace_period_expires(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  probe_t p = {.drain_immediately = 0}; /* never drains: the grace timer must end it */
  lp_lifecycle_t *lc = lp_lifecycle_new(&loop, 50, on_stop, on_close, &p);
  lp_lifecycle_request_stop(lc);
  lp_lifecycle_request_stop(lc); /* idempotent */
  uint64_t t0 = uv_hrtime();
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(uv_hrtime() - t0 >= 40 * 1000000ull);
  assert_int_equal(p.stop_calls, 1);
  assert_int_equal(p.close_calls, 1);
  lp_lifecycle_free(lc);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_watchdog_feeds(void **state) {
  (void)state;
  char path[256];
  snprintf(path, sizeof path, "%s/wd.sock", tmpdir);
  int nfd = bind_notify_socket(path);
  setenv("WATCHDOG_USEC", "40000", 1);
  unsetenv("WATCHDOG_PID");
  uv_loop_t loop;
  uv_loop_init(&loop);
  probe_t p = {.drain_immediately = 1};
  lp_lifecycle_t *lc = lp_lifecycle_new(&loop, 1000, on_stop, on_close, &p);
  lp_lifecycle_ready(lc, "wd");
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, raise_term, 100, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  int watchdogs = 0;
  char buf[256];
  while (recv_msg(nfd, buf, sizeof buf, 50) > 0) watchdogs += strcmp(buf, "WATCHDOG=1") == 0;
  assert_true(watchdogs >= 2);
  lp_lifecycle_free(lc);
  uv_loop_close(&loop);
  close(nfd);
  unsetenv("WATCHDOG_USEC");
  unsetenv("NOTIFY_SOCKET");
}

/* The child of test_second_signal_exits_at_once: a lifecycle whose work never drains, with a
 * long grace period; it writes one byte to ready_fd once it is stopping. */
static void on_stop_report(lp_lifecycle_t *lc, void *arg) {
  (void)lc;
  int fd = *(int *)arg;
  ssize_t w = write(fd, "s", 1);
  (void)w;
}

static void never_close(lp_lifecycle_t *lc, void *arg) {
  (void)arg;
  lp_lifecycle_close(lc);
}

static void test_second_signal_exits_at_once(void **state) {
  (void)state;
  int fds[2], errp[2];
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(pipe(errp), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    close(errp[0]);
    dup2(errp[1], STDERR_FILENO);
    uv_loop_t loop;
    uv_loop_init(&loop);
    lp_lifecycle_t *lc = lp_lifecycle_new(&loop, 60000, on_stop_report, never_close, &fds[1]);
    ssize_t w = write(fds[1], "r", 1);
    (void)w;
    uv_run(&loop, UV_RUN_DEFAULT);
    lp_lifecycle_free(lc);
    _exit(0); /* not reached: the grace period outlasts the test */
  }
  close(fds[1]);
  close(errp[1]);
  char c = 0;
  assert_int_equal(read(fds[0], &c, 1), 1); /* its signal handlers are installed */
  assert_int_equal(c, 'r');
  assert_int_equal(kill(pid, SIGTERM), 0);
  assert_int_equal(read(fds[0], &c, 1), 1); /* the graceful stop began and waits for work */
  assert_int_equal(c, 's');
  assert_int_equal(kill(pid, SIGTERM), 0);
  int status = 0;
  for (int i = 0; i < 500 && waitpid(pid, &status, WNOHANG) == 0; i++) usleep(10000);
  if (!WIFEXITED(status)) kill(pid, SIGKILL);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
  char err[512] = "";
  ssize_t n = read(errp[0], err, sizeof err - 1);
  assert_true(n > 0);
  err[n] = 0;
  assert_non_null(strstr(err, "Second signal received: exiting immediately"));
  close(fds[0]);
  close(errp[0]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_notify),
      cmocka_unit_test(test_datadir_mode_and_lock),
      cmocka_unit_test(test_signal_drains_then_closes),
      cmocka_unit_test(test_grace_period_expires),
      cmocka_unit_test(test_watchdog_feeds),
      cmocka_unit_test(test_second_signal_exits_at_once),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
