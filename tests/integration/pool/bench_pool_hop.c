/* What the remote hop costs: p50 of submit-to-result through a pool manager and one `lpod
 * -transcoder` on loopback, against p50 of the same transcode in-process; and, per segment, the
 * remote submit-to-result time minus the transcoder's own engine time (from its log), which is
 * what the hop adds without the run-to-run spread of two separate transcodes.
 *
 *   bench_pool_hop <lpod> <segment.ts> [segments]
 *
 * Prints the figures; a benchmark, not a test (no assertion on time). HOP_VERBOSE=1 prints each
 * segment and the transcoder's log; HOP_V sets its log level (default 3). */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "lpod/core.h"
#include "lpod/media.h"
#include "lpod/net.h"
#include "lpod/pool.h"

static uv_loop_t loop;
static bool done;
static int err;
static double hop_ms;

static void on_done(pool_result_t *res, void *arg) {
  (void)arg;
  err = res->err;
  hop_ms = (double)res->hop_ns / 1e6;
  done = true;
}

static void on_tick(uv_timer_t *h) { (void)h; }

/* The engine time of the newest "Transcoded segment ... took=S" line past *off. */
static double last_took_ms(const char *path, long *off) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  fseek(f, *off, SEEK_SET);
  char line[1024];
  double ms = -1;
  while (fgets(line, sizeof line, f)) {
    const char *p = strstr(line, "Transcoded segment");
    if (p && (p = strstr(p, "took="))) ms = atof(p + 5) * 1000.0;
  }
  *off = ftell(f);
  fclose(f);
  return ms;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s <lpod> <segment.ts> [segments]\n", argv[0]);
    return 2;
  }
  int n = argc > 3 ? atoi(argv[3]) : 10;
  if (n < 1 || n > 1000) n = 10;
  char *in;
  size_t len;
  if (lp_file_read(argv[2], 256 << 20, &in, &len)) return 1;
  lp_log_set_level(1);
  media_profile_t p;
  if (media_profile_preset("P360p30fps16x9", &p)) return 1;
  double *local = calloc((size_t)n, sizeof *local), *remote = calloc((size_t)n, sizeof *remote);
  double *hop = calloc((size_t)n, sizeof *hop), *added = calloc((size_t)n, sizeof *added);
  int nadded = 0;

  char dir[] = "/tmp/lpod-hop-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  uv_loop_init(&loop);
  uv_timer_t tick;
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 10, 10);
  net_server_opts_t so;
  memset(&so, 0, sizeof so);
  so.addr = "127.0.0.1:0";
  so.cert_dir = dir;
  net_server_t *srv;
  char e[256];
  if (net_server_new(&loop, &so, &srv, e, sizeof e) || net_server_listen(srv, e, sizeof e)) {
    fprintf(stderr, "%s\n", e);
    return 1;
  }
  pool_manager_opts_t mo;
  memset(&mo, 0, sizeof mo);
  mo.secret = "bench";
  pool_manager_t *m;
  if (pool_manager_new(&loop, srv, &mo, &m)) return 1;
  char addr[64], ddir[300], tlog[300];
  long tlog_off = 0;
  snprintf(tlog, sizeof tlog, "%s/transcoder.log", dir);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", net_server_port(srv));
  snprintf(ddir, sizeof ddir, "%s/t", dir);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(tlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
    execl(argv[1], argv[1], "-transcoder", "-orchAddr", addr, "-orchSecret", "bench", "-dataDir",
          ddir, "-cliAddr", "127.0.0.1:0", "-v", getenv("HOP_V") ? getenv("HOP_V") : "3",
          (char *)NULL);
    _exit(127);
  }
  while (pool_manager_transcoders(m) < 1) uv_run(&loop, UV_RUN_ONCE);
  Net__AuthToken tok = NET__AUTH_TOKEN__INIT;
  tok.session_id = "bench";
  Net__VideoProfile vp = NET__VIDEO_PROFILE__INIT;
  vp.name = p.name;
  vp.width = p.width;
  vp.height = p.height;
  vp.bitrate = p.bitrate;
  vp.fps = p.fps;
  vp.fpsden = p.fps_den;
  Net__VideoProfile *vpp = &vp;
  Net__SegData sd = NET__SEG_DATA__INIT;
  sd.auth_token = &tok;
  sd.duration = 2000;
  sd.n_fullprofiles = 1;
  sd.fullprofiles = &vpp;
  /* Interleaved, so that both see the same load from whatever else the machine runs. The
   * in-process side is one warm session, as the orchestrator's own engine runs it. */
  media_session_t *ms = media_session_new(NULL);
  for (int i = 0; i < n; i++) {
    media_result_t r;
    uint64_t t1 = lp_now_ns();
    if (media_session_transcode(ms, (uint8_t *)in, len, &p, 1, &r)) return 1;
    local[i] = (double)(lp_now_ns() - t1) / 1e6;
    media_result_free(&r);
    sd.seq = i;
    done = false;
    uint64_t t0 = lp_now_ns();
    if (pool_manager_submit(m, &sd, NULL, (uint8_t *)in, len, on_done, NULL)) return 1;
    while (!done) uv_run(&loop, UV_RUN_ONCE);
    remote[i] = (double)(lp_now_ns() - t0) / 1e6;
    hop[i] = hop_ms;
    double took = last_took_ms(tlog, &tlog_off);
    if (took >= 0) added[nadded++] = remote[i] - took;
    if (getenv("HOP_VERBOSE"))
      fprintf(stderr, "seg %d local %.1f remote %.1f (engine %.0f) protocol %.2f\n", i, local[i],
              remote[i], took, hop_ms);
    if (err) fprintf(stderr, "segment %d failed: %s\n", i, lp_strerror(err));
  }
  media_session_free(ms);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  qsort(local, (size_t)n, sizeof *local, cmp);
  qsort(remote, (size_t)n, sizeof *remote, cmp);
  qsort(hop, (size_t)n, sizeof *hop, cmp);
  qsort(added, (size_t)nadded, sizeof *added, cmp);
  printf("segments=%d input=%zu bytes in-process p50=%.1f ms remote p50=%.1f ms "
         "(difference %.1f ms) protocol time p50=%.2f ms max=%.2f ms\n",
         n, len, local[n / 2], remote[n / 2], remote[n / 2] - local[n / 2], hop[n / 2], hop[n - 1]);
  if (nadded)
    printf("remote minus the transcoder's engine time: p50=%.1f ms p90=%.1f ms max=%.1f ms "
           "(%d segments)\n",
           added[nadded / 2], added[nadded * 9 / 10], added[nadded - 1], nadded);
  else
    printf("remote minus the transcoder's engine time: no engine times in %s\n", tlog);
  if (getenv("HOP_VERBOSE")) {
    char cat[400];
    snprintf(cat, sizeof cat, "cat %s >&2", tlog);
    if (system(cat)) {
    }
  }
  pool_manager_free(m);
  net_server_free(srv);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  free(in);
  free(local);
  free(remote);
  free(hop);
  free(added);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) ? 0 : 0;
}
