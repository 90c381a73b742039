/* The real lpod binary as an operator runs it: readiness and status over the systemd notify socket,
 * graceful stop on SIGTERM with exit code 0, the data-dir lock, -version and flag errors, the
 * start-up device probe in a child process (`lpod calibrate`) and a crash of that child. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lpod/core.h"

static char tmpdir[128];
static const char *lpod_bin;

static int setup(void **state) {
  (void)state;
  lpod_bin = getenv("LPOD_BIN");
  assert_non_null(lpod_bin);
  snprintf(tmpdir, sizeof tmpdir, "/tmp/lpod-node-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd);
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  socklen_t len = sizeof sa;
  getsockname(fd, (struct sockaddr *)&sa, &len);
  close(fd);
  return ntohs(sa.sin_port);
}

/* Starts lpod with stdout and stderr into files (the same one when out_path is NULL);
 * NOTIFY_SOCKET set when notify_path is given. */
static pid_t spawn_io(char *const argv[], const char *notify_path, const char *out_path,
                      const char *log_path) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* a test that fails stops where it is: the node it started must not outlive it */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int out = out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600) : fd;
    dup2(out, 1);
    dup2(fd, 2);
    if (notify_path)
      setenv("NOTIFY_SOCKET", notify_path, 1);
    else
      unsetenv("NOTIFY_SOCKET");
    execv(lpod_bin, argv);
    _exit(127);
  }
  return pid;
}

static pid_t spawn(char *const argv[], const char *notify_path, const char *log_path) {
  return spawn_io(argv, notify_path, NULL, log_path);
}

static int wait_exit(pid_t pid, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
}

static int notify_socket(const char *path) {
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  assert_true(strlen(path) < sizeof sa.sun_path);
  memcpy(sa.sun_path, path, strlen(path) + 1);
  unlink(path);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  return fd;
}

/* Waits for a datagram containing want; returns 0 when seen. */
static int wait_notify(int fd, const char *want, int timeout_ms) {
  char buf[1024];
  struct pollfd p = {.fd = fd, .events = POLLIN};
  while (poll(&p, 1, timeout_ms) == 1) {
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return -1;
    buf[n] = '\0';
    if (strstr(buf, want)) return 0;
  }
  return -1;
}

static char *slurp(const char *path) {
  char *t = NULL;
  size_t n;
  assert_int_equal(lp_file_read(path, 1 << 20, &t, &n), 0);
  return t;
}

/* Threads of pid whose scheduling policy is not SCHED_OTHER (field 41 of their stat). */
static int realtime_threads(pid_t pid, char *which, size_t len) {
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0, tasks = 0;
  which[0] = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[384], *stat = NULL;
    size_t sl;
    snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
    if (lp_file_read(path, 4096, &stat, &sl)) continue; /* the thread ended meanwhile */
    tasks++;
    const char *p = strrchr(stat, ')'); /* the name may hold spaces and parentheses */
    int field = 2, policy = -1;
    for (; p && *p; p++)
      if (*p == ' ' && ++field == 41) {
        policy = atoi(p + 1);
        break;
      }
    assert_true(policy >= 0);
    if (policy != SCHED_OTHER) {
      n++;
      size_t used = strlen(which);
      snprintf(which + used, len - used, " %s(policy %d)", e->d_name, policy);
    }
    free(stat);
  }
  closedir(d);
  assert_true(tasks > 0);
  return n;
}

/* Every line the node wrote is its own: the start-up table (+/| lines) or a glog-style line
 * ("I1205 06:07:37.121515 ..."); none comes from FFmpeg or an encoder printing on its own. */
static void assert_lines_formatted(const char *out) {
  for (const char *p = out; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    bool ok = n == 0 || p[0] == '+' || p[0] == '|' ||
              (n > 6 && strchr("IWEF", p[0]) && isdigit((unsigned char)p[1]) &&
               isdigit((unsigned char)p[4]) && p[5] == ' ');
    if (!ok) fail_msg("a log line not written by lpod's log: %.*s", (int)LP_MIN(n, 200), p);
    p += n + (nl ? 1 : 0);
  }
}

static void test_ready_then_graceful_stop(void **state) {
  (void)state;
  char sock[256], log[256], data[256], addr[64];
  snprintf(sock, sizeof sock, "%s/notify.sock", tmpdir);
  snprintf(log, sizeof log, "%s/node.log", tmpdir);
  snprintf(data, sizeof data, "%s/data", tmpdir);
  int port = free_port();
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  int nfd = notify_socket(sock);
  char *argv[] = {(char *)lpod_bin,
                  "-orchestrator",
                  "-transcoder",
                  "-dataDir",
                  data,
                  "-serviceAddr",
                  addr,
                  "-httpAddr",
                  addr,
                  "-cliAddr",
                  "127.0.0.1:0",
                  "-testTranscoder=false",
                  NULL};
  pid_t pid = spawn(argv, sock, log);
  assert_int_equal(wait_notify(nfd, "READY=1", 20000), 0);
  /* Under root SVT-AV1 moves the thread that opens it to SCHED_FIFO 99, after which every
   * thread would inherit it. The start-up self-test that opens every CPU encoder runs in a child
   * process; the node must serve with ordinary time-shared threads only. */
  char rt[512];
  int n_rt = realtime_threads(pid, rt, sizeof rt);
  if (n_rt) fail_msg("threads with a real-time policy:%s", rt);
  /* what `systemctl status` shows while it serves */
  assert_int_equal(
      wait_notify(nfd, "STATUS=serving: 0 sessions (max 10), 0 segments in flight", 10000), 0);
  assert_int_equal(kill(pid, SIGTERM), 0);
  assert_int_equal(wait_notify(nfd, "STOPPING=1", 10000), 0);
  assert_int_equal(wait_exit(pid, 15000), 0);
  char *out = slurp(log);
  assert_non_null(strstr(out, "Received SIGTERM"));
  assert_non_null(strstr(out, "| Orchestrator"));
  /* the device table came from the start-up child */
  assert_non_null(strstr(out, "Devices: probed by a child process"));
  assert_non_null(strstr(out, "Devices: 1 probed in"));
  assert_lines_formatted(out);
  free(out);
  close(nfd);
}

/* The first child process of pid, or 0. */
static pid_t child_of(pid_t pid) {
  DIR *d = opendir("/proc");
  assert_non_null(d);
  pid_t found = 0;
  for (struct dirent *e; !found && (e = readdir(d));) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char path[300], *stat = NULL;
    size_t sl;
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    if (lp_file_read(path, 4096, &stat, &sl)) continue;
    const char *p = strrchr(stat, ')'); /* then " S PPID ..." */
    int ppid = 0;
    if (p && sscanf(p + 1, " %*c %d", &ppid) == 1 && ppid == pid) found = atoi(e->d_name);
    free(stat);
  }
  closedir(d);
  return found;
}

/* A driver that crashes in the start-up self-test takes down the probe's child process, not the
 * node: the node says so and exits 1 with its data dir intact, and starts again afterwards. */
static void test_probe_crash_contained(void **state) {
  (void)state;
  char sock[256], log[256], data[256], addr[64];
  snprintf(sock, sizeof sock, "%s/n4.sock", tmpdir);
  snprintf(log, sizeof log, "%s/crash.log", tmpdir);
  snprintf(data, sizeof data, "%s/crashdata", tmpdir);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
  int nfd = notify_socket(sock);
  /* a fresh data dir: the child self-tests and calibrates, which takes seconds */
  char *argv[] = {
      (char *)lpod_bin, "-orchestrator", "-transcoder", "-dataDir", data, "-serviceAddr", addr,
      "-cliAddr",       "127.0.0.1:0",   NULL};
  pid_t pid = spawn(argv, sock, log);
  pid_t child = 0;
  for (int i = 0; i < 3000 && !(child = child_of(pid)); i++) usleep(10000);
  assert_true(child > 0);
  assert_int_equal(kill(child, SIGKILL), 0);
  assert_int_equal(wait_exit(pid, 20000), 1);
  char *out = slurp(log);
  assert_non_null(strstr(out, "Devices: the probe crashed (signal 9"));
  assert_null(strstr(out, "READY"));
  free(out);
  /* nothing was left behind: the same data dir serves at once */
  snprintf(log, sizeof log, "%s/crash2.log", tmpdir);
  pid = spawn((char *[]){(char *)lpod_bin, "-orchestrator", "-transcoder", "-dataDir", data,
                         "-serviceAddr", addr, "-cliAddr", "127.0.0.1:0", "-testTranscoder=false",
                         NULL},
              sock, log);
  assert_int_equal(wait_notify(nfd, "READY=1", 20000), 0);
  kill(pid, SIGTERM);
  assert_int_equal(wait_exit(pid, 15000), 0);
  close(nfd);
}

/* `lpod calibrate` on its own: the device table as JSON on stdout. */
static void test_calibrate_cli(void **state) {
  (void)state;
  /* the start-up self-test opens every CPU encoder (x264, x265, libvpx, SVT-AV1), which talk on
   * stderr unless lpod's log takes FFmpeg's; whatever reaches the log is lpod's */
  char tlog[256], tout[256], tdata[256];
  snprintf(tlog, sizeof tlog, "%s/selftest.log", tmpdir);
  snprintf(tout, sizeof tout, "%s/selftest.json", tmpdir);
  snprintf(tdata, sizeof tdata, "%s/stdata", tmpdir);
  char *st[] = {(char *)lpod_bin, "calibrate", "-dataDir", tdata, "-costAdmission=false", NULL};
  assert_int_equal(wait_exit(spawn_io(st, NULL, tout, tlog), 60000), 0);
  char *table = slurp(tout);
  assert_non_null(strstr(table, "\"tested\":\ttrue"));
  assert_non_null(strstr(table, "\"hevc\""));
  free(table);
  char *errs = slurp(tlog);
  assert_lines_formatted(errs);
  free(errs);

  char log[256], data[256];
  snprintf(log, sizeof log, "%s/calibrate.log", tmpdir);
  snprintf(data, sizeof data, "%s/caldata", tmpdir);
  char *argv[] = {(char *)lpod_bin, "calibrate", "-dataDir", data, "-testTranscoder=false", NULL};
  assert_int_equal(wait_exit(spawn(argv, NULL, log), 20000), 0);
  char *out = slurp(log);
  assert_non_null(strstr(out, "\"devices\":"));
  assert_non_null(strstr(out, "\"name\":\t\"cpu\""));
  assert_non_null(strstr(out, "\"backend\":\t\"sw\""));
  assert_non_null(strstr(out, "\"tested\":\tfalse"));
  assert_non_null(strstr(out, "\"capabilities\":"));
  free(out);
  /* a device flag it cannot honour fails with the reason */
  char *bad[] = {(char *)lpod_bin,        "calibrate", "-dataDir", data,
                 "-testTranscoder=false", "-nvidia",   "7",        NULL};
  assert_int_equal(wait_exit(spawn(bad, NULL, log), 20000), 1);
  out = slurp(log);
  assert_non_null(strstr(out, "Devices: -nvidia"));
  free(out);
}

static void test_datadir_lock_refuses_second_node(void **state) {
  (void)state;
  char sock[256], log1[256], log2[256], data[256], a1[64], a2[64];
  snprintf(sock, sizeof sock, "%s/n2.sock", tmpdir);
  snprintf(log1, sizeof log1, "%s/one.log", tmpdir);
  snprintf(log2, sizeof log2, "%s/two.log", tmpdir);
  snprintf(data, sizeof data, "%s/shared", tmpdir);
  snprintf(a1, sizeof a1, "127.0.0.1:%d", free_port());
  snprintf(a2, sizeof a2, "127.0.0.1:%d", free_port());
  int nfd = notify_socket(sock);
  char *argv1[] = {(char *)lpod_bin,
                   "-orchestrator",
                   "-transcoder",
                   "-dataDir",
                   data,
                   "-serviceAddr",
                   a1,
                   "-httpAddr",
                   a1,
                   "-cliAddr",
                   "127.0.0.1:0",
                   "-testTranscoder=false",
                   NULL};
  pid_t first = spawn(argv1, sock, log1);
  assert_int_equal(wait_notify(nfd, "READY=1", 20000), 0);
  char *argv2[] = {(char *)lpod_bin,
                   "-orchestrator",
                   "-transcoder",
                   "-dataDir",
                   data,
                   "-serviceAddr",
                   a2,
                   "-httpAddr",
                   a2,
                   "-cliAddr",
                   "127.0.0.1:0",
                   "-testTranscoder=false",
                   NULL};
  pid_t second = spawn(argv2, NULL, log2);
  assert_int_not_equal(wait_exit(second, 15000), 0);
  char *out = slurp(log2);
  assert_non_null(strstr(out, "is in use by another lpod"));
  free(out);
  kill(first, SIGTERM);
  assert_int_equal(wait_exit(first, 15000), 0);
  close(nfd);
}

static void test_version_and_flag_errors(void **state) {
  (void)state;
  char log[256];
  snprintf(log, sizeof log, "%s/v.log", tmpdir);
  char *v[] = {(char *)lpod_bin, "-version", NULL};
  assert_int_equal(wait_exit(spawn(v, NULL, log), 10000), 0);
  char *out = slurp(log);
  assert_non_null(strstr(out, "ffmpeg"));
  assert_non_null(strstr(out, "openssl"));
  assert_non_null(strstr(out, "libuv"));
  free(out);
  char *bad[] = {(char *)lpod_bin, "-orchestrator", "-maxSesions", "3", NULL};
  assert_int_equal(wait_exit(spawn(bad, NULL, log), 10000), 2);
  out = slurp(log);
  assert_non_null(strstr(out, "did you mean -maxSessions"));
  free(out);
}

/* The admin API of a running node answers as an operator's tooling expects. */
static void test_admin_api_on_running_node(void **state) {
  (void)state;
  char sock[256], log[256], data[256], addr[64], cli[64], cmd[512];
  snprintf(sock, sizeof sock, "%s/n3.sock", tmpdir);
  snprintf(log, sizeof log, "%s/admin.log", tmpdir);
  snprintf(data, sizeof data, "%s/admindata", tmpdir);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
  int cport = free_port();
  snprintf(cli, sizeof cli, "127.0.0.1:%d", cport);
  int nfd = notify_socket(sock);
  char *argv[] = {(char *)lpod_bin,
                  "-orchestrator",
                  "-transcoder",
                  "-monitor",
                  "-dataDir",
                  data,
                  "-serviceAddr",
                  addr,
                  "-httpAddr",
                  addr,
                  "-cliAddr",
                  cli,
                  "-testTranscoder=false",
                  NULL};
  pid_t pid = spawn(argv, sock, log);
  assert_int_equal(wait_notify(nfd, "READY=1", 20000), 0);
  snprintf(cmd, sizeof cmd, "curl -sf http://127.0.0.1:%d/healthz >/dev/null", cport);
  assert_int_equal(system(cmd), 0);
  /* ready once its transcoding worker has registered, a moment after the port opens */
  snprintf(cmd, sizeof cmd,
           "for i in $(seq 200); do curl -sf http://127.0.0.1:%d/readyz >/dev/null && exit 0; "
           "sleep 0.1; done; exit 1",
           cport);
  assert_int_equal(system(cmd), 0);
  /* the worker process does not inherit systemd's notify socket: only the node reports */
  snprintf(cmd, sizeof cmd,
           "w=$(pgrep -P %d -f -- '-transcoder -orchAddr') && test -n \"$w\" && "
           "grep -qz '^LPOD_WORKER_PARENT=' /proc/$w/environ && "
           "! grep -qz '^NOTIFY_SOCKET=' /proc/$w/environ",
           (int)pid);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "curl -sf http://127.0.0.1:%d/metrics | grep -q '^livepeer_versions{'",
           cport);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd,
           "curl -sf http://127.0.0.1:%d/status | grep -q '\"LocalTranscoding\":true'", cport);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "curl -sf -F loglevel=5 http://127.0.0.1:%d/setLogLevel", cport);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "test \"$(curl -sf http://127.0.0.1:%d/getLogLevel)\" = 5", cport);
  assert_int_equal(system(cmd), 0);
  kill(pid, SIGTERM);
  assert_int_equal(wait_exit(pid, 15000), 0);
  close(nfd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ready_then_graceful_stop),
      cmocka_unit_test(test_datadir_lock_refuses_second_node),
      cmocka_unit_test(test_version_and_flag_errors),
      cmocka_unit_test(test_admin_api_on_running_node),
      cmocka_unit_test(test_probe_crash_contained),
      cmocka_unit_test(test_calibrate_cli),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
