/* The start-up device probe, out of process. `lpod calibrate` probes and self-tests the devices,
 * calibrates the capacity model into the data dir's cache and prints the device table as JSON.
 * A node that transcodes runs it as a child process and reads the table back, so that:
 *   - a driver that crashes or hangs in a self-test takes down the child, and the node says
 *     which and stops cleanly instead of dying with it (or hanging before READY);
 *   - the self-test's and calibration's encoders, test clips and heap never live in the node,
 *     whose memory stays what serving costs.
 * Operators can run `lpod calibrate` themselves before a start (ExecStartPre, a new GPU). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orch_int.h"

extern char **environ;

/* A probe that measures several GPUs can take minutes; systemd's start limit is 10 min. */
#define PROBE_TIMEOUT_MS (9 * 60 * 1000)
#define PROBE_OUT_MAX (1 << 20)
#define PROBE_EXIT_GRACE_MS 10000

/* Builds the capacity model over the table once, outside any serving loop: with measure, the
 * devices without a valid cached calibration are measured and the cache in the data dir is
 * written; otherwise the cache (or the built-in costs) is read. *capacity is how many streams
 * of the model's reference job fit on the devices. */
static int run_model(const lp_config_t *cfg, const hw_table_t *t, bool measure, int *capacity) {
  *capacity = 0;
  uv_loop_t loop;
  if (uv_loop_init(&loop)) return LP_ENOMEM;
  orch_admit_t *a = NULL;
  int rc = orch_admit_new(&loop, cfg, t, measure, &a);
  if (a) {
    *capacity = orch_admit_capacity(a);
    orch_admit_free(a);
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* closes the model's timer */
  uv_loop_close(&loop);
  return rc;
}

int orch_cli_calibrate(int argc, char **argv) {
  lp_config_t cfg;
  char err[1024];
  lp_cfg_status_t st = lp_config_load(&cfg, argc - 1, argv + 1, NULL, err, sizeof err);
  if (st == LP_CFG_EXIT) return 0;
  if (st != LP_CFG_OK) {
    fprintf(stderr, "lpod calibrate: %s\n", err);
    return 2;
  }
  int ret = 1;
  hw_table_t *t = calloc(1, sizeof *t);
  /* No lock on the data dir: the node that started this child holds it; the only file written
   * here (capacity.json) is replaced atomically. */
  if (!t || lp_mkdir_p(cfg.datadir, 0700)) {
    LOGE("calibrate: cannot use the data dir %s", cfg.datadir);
    goto out;
  }
  hw_probe_opts_t po = {cfg.nvidia, cfg.netint, cfg.qsv, cfg.test_transcoder, cfg.datadir};
  char why[512] = "";
  if (hw_table_probe(&po, t, why, sizeof why)) {
    LOGE("Devices: %s", why[0] ? why : "the probe failed");
    goto out;
  }
  int cap, rc = cfg.cost_admission ? run_model(&cfg, t, true, &cap) : 0;
  if (rc) {
    LOGE("calibrate: %s", lp_strerror(rc));
    goto out;
  }
  char *json = hw_table_json(t);
  /* stdout is closed once the table is out, so that the node reads it at once even when a
   * driver's teardown then takes a while (the node stops a child that does not exit) */
  if (json && fputs(json, stdout) >= 0 && fputc('\n', stdout) != EOF && fclose(stdout) == 0)
    ret = 0;
  free(json);
out:
  free(t);
  lp_config_free(&cfg);
  return ret;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads the child's stdout until it closes or the deadline passes. */
static int read_all(int fd, uint64_t deadline, lp_buf_t *out) {
  char chunk[16384];
  for (;;) {
    uint64_t now = now_ms();
    if (now >= deadline) return LP_ETIMEDOUT;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, (int)(deadline - now));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return LP_EIO;
    if (r == 0) return LP_ETIMEDOUT;
    ssize_t k = read(fd, chunk, sizeof chunk);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return LP_EIO;
    if (k == 0) return 0;
    if (out->len + (size_t)k > PROBE_OUT_MAX) return LP_ERANGE;
    if (lp_buf_append(out, chunk, (size_t)k) < 0) return LP_ENOMEM;
  }
}

int orch_probe_devices(const lp_config_t *cfg, bool model, hw_table_t *t) {
  char exe[PATH_MAX];
  ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (el <= 0) return LP_EUNSUPP;
  exe[el] = 0;
  char nvidia[512], qsv[512], netint[512], test[32], calib[32], cost[32], preset[48], v[16];
  snprintf(nvidia, sizeof nvidia, "-nvidia=%s", cfg->nvidia ? cfg->nvidia : "");
  snprintf(qsv, sizeof qsv, "-qsv=%s", cfg->qsv ? cfg->qsv : "");
  snprintf(netint, sizeof netint, "-netint=%s", cfg->netint ? cfg->netint : "");
  snprintf(test, sizeof test, "-testTranscoder=%s", cfg->test_transcoder ? "true" : "false");
  snprintf(calib, sizeof calib, "-calibrate=%s", cfg->calibrate ? "true" : "false");
  snprintf(cost, sizeof cost, "-costAdmission=%s", model && cfg->cost_admission ? "true" : "false");
  snprintf(preset, sizeof preset, "-cpuPreset=%s", cfg->cpu_preset);
  snprintf(v, sizeof v, "-v=%d", cfg->verbosity);
  char *args[] = {exe,  "calibrate", "-datadir", cfg->datadir, nvidia, qsv, netint,
                  test, calib,       cost,       preset,       v,      NULL};
  int fds[2];
  if (pipe2(fds, O_CLOEXEC)) return LP_EUNSUPP;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  pid_t pid;
  uint64_t t0 = now_ms();
  int se = posix_spawn(&pid, exe, &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (se) {
    close(fds[0]);
    LOGW("Devices: cannot start `%s calibrate` (%s); probing in this process", exe, strerror(se));
    return LP_EUNSUPP;
  }
  LOGI("Devices: probed by a child process (pid %d): `lpod calibrate`", (int)pid);
  lp_buf_t out = LP_BUF_INIT;
  int rc = read_all(fds[0], t0 + PROBE_TIMEOUT_MS, &out);
  close(fds[0]);
  if (rc == LP_ETIMEDOUT)
    LOGE("Devices: the probe did not finish in %d s; stopping it", PROBE_TIMEOUT_MS / 1000);
  if (rc) kill(pid, SIGKILL);
  int status = 0;
  /* A child that printed its table but hangs on its way out (a driver's teardown) is stopped
   * after a grace period; its table stands. */
  bool stopped = false;
  for (uint64_t until = now_ms() + PROBE_EXIT_GRACE_MS;;) {
    pid_t r = waitpid(pid, &status, rc ? 0 : WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) break;
    if (r == 0 && now_ms() >= until) {
      LOGW("Devices: the probe did not exit %d s after its table; stopping it",
           PROBE_EXIT_GRACE_MS / 1000);
      kill(pid, SIGKILL);
      stopped = true;
      rc = waitpid(pid, &status, 0) == pid ? 0 : LP_EIO;
      status = 0;
      break;
    }
    if (r == 0) usleep(10000);
  }
  if (stopped && rc) {
    LOGE("Devices: the probe could not be stopped");
  } else if (rc == 0 && WIFSIGNALED(status)) {
    LOGE(
        "Devices: the probe crashed (signal %d, %s); run `lpod devices` with the same device flags "
        "to see which device fails",
        WTERMSIG(status), strsignal(WTERMSIG(status)));
    rc = LP_EIO;
  } else if (rc == 0 && WEXITSTATUS(status) != 0) {
    LOGE("Devices: the probe failed (exit status %d; its reason is logged above)",
         WEXITSTATUS(status));
    rc = LP_EIO;
  } else if (rc == 0) {
    char why[256] = "";
    if (lp_buf_append(&out, "", 1) < 0)
      rc = LP_ENOMEM;
    else if ((rc = hw_table_from_json((const char *)out.data, NULL, t, why, sizeof why)))
      LOGE("Devices: the probe's table cannot be read: %s", why);
    else
      LOGI("Devices: %d probed in %.1f s", t->n, (double)(now_ms() - t0) / 1000);
  } else if (rc != LP_ETIMEDOUT) {
    LOGE("Devices: reading the probe's output: %s", lp_strerror(rc));
  }
  lp_buf_free(&out);
  return rc;
}

int orch_devices(const lp_config_t *cfg, bool model, hw_table_t *t, bool *in_process) {
  int rc = orch_probe_devices(cfg, model, t);
  *in_process = rc == LP_EUNSUPP;
  if (*in_process) {
    hw_probe_opts_t po = {cfg->nvidia, cfg->netint, cfg->qsv, cfg->test_transcoder, cfg->datadir};
    char err[512] = "";
    rc = hw_table_probe(&po, t, err, sizeof err);
    if (rc) LOGE("Devices: %s", err[0] ? err : lp_strerror(rc));
  }
  if (rc) return rc;
  char *text = hw_table_text(t);
  if (text) {
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
      LOGI("%s", line);
    free(text);
  }
  return 0;
}

int orch_transcoder_devices(const lp_config_t *cfg, hw_table_t *t, int *capacity) {
  *capacity = 0;
  const char *file = getenv(ORCH_DEVICE_TABLE_ENV);
  if (!file || !*file) {
    bool in_process;
    bool model = cfg->max_sessions_auto && cfg->cost_admission;
    int rc = orch_devices(cfg, model, t, &in_process);
    if (!rc && model && (rc = run_model(cfg, t, in_process, capacity))) {
      LOGW("capacity: no model (%s); -maxSessions auto counts the CPUs", lp_strerror(rc));
      rc = 0;
    }
    return rc;
  }
  /* a -localWorkers child: the node probed once for all of them */
  char *json = NULL;
  char why[256] = "";
  int rc = lp_file_read(file, PROBE_OUT_MAX, &json, NULL);
  if (rc == 0) rc = hw_table_from_json(json, NULL, t, why, sizeof why);
  free(json);
  if (rc)
    LOGE("Devices: cannot read the node's device table %s: %s", file,
         why[0] ? why : lp_strerror(rc));
  else
    LOGI("Devices: %d, from the node's table %s", t->n, file);
  return rc;
}
