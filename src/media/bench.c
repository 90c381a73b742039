/* `lpod bench`: N concurrent warm sessions over the segments of an HLS playlist or a folder,
 * in the manner of go-livepeer's livepeer_bench, with a CSV line per segment and a summary. */
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "media_int.h"

typedef struct bseg {
  char *path;
  uint8_t *data;
  size_t len;
  double dur; /* seconds */
} bseg_t;

typedef struct bench {
  bseg_t *segs;
  size_t nseg;
  media_profile_t *profiles;
  size_t nprof;
  media_session_opts_t opts;
  int sessions, repeat, stagger_ms;
  int depth;     /* segments a stream keeps in flight, as asked */
  int depth_run; /* as the sessions ran them (a device's run one at a time), under mu */
  bool live;
  FILE *csv;
  pthread_mutex_t mu;
  /* totals, under mu */
  int64_t done, realtime, failed;
  double src_s, xcode_s;
  int64_t frames, pixels;
  char first_error[160];
  size_t rss_after_first_kb;
} bench_t;

typedef struct worker {
  bench_t *b;
  int id;
  pthread_t th;
} worker_t;

static size_t rss_kb(void) {
  FILE *fp = fopen("/proc/self/statm", "r");
  if (!fp) return 0;
  unsigned long size = 0, res = 0;
  int n = fscanf(fp, "%lu %lu", &size, &res);
  fclose(fp);
  return n == 2 ? res * (size_t)sysconf(_SC_PAGESIZE) / 1024 : 0;
}

static double now_s(void) { return (double)lp_now_ns() / 1e9; }

static void sleep_until(double t) {
  double d = t - now_s();
  if (d <= 0) return;
  struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
  nanosleep(&ts, NULL);
}

/* One segment in flight, and where it came from. */
typedef struct pending {
  bench_t *b;
  int worker;
  size_t n; /* its index in the stream */
  const bseg_t *sg;
  media_result_t res;
} pending_t;

/* A segment's result, on whichever thread it completes. */
static void seg_done(void *arg, media_result_t *res, int ret) {
  pending_t *p = arg;
  bench_t *b = p->b;
  const bseg_t *sg = p->sg;
  /* the engine's time on the segment, from its start to its result (a segment submitted while
   * two are in flight waits for the older one first: that wait is not counted) */
  double dt = (double)res->transcode_ns / 1e9;
  pthread_mutex_lock(&b->mu);
  if (ret < 0) {
    b->failed++;
    if (!b->first_error[0])
      snprintf(b->first_error, sizeof(b->first_error), "%s: %s", sg->path, res->error);
  } else {
    b->done++;
    b->realtime += dt <= sg->dur;
    b->src_s += sg->dur;
    b->xcode_s += dt;
    for (size_t k = 0; k < res->n; k++) {
      b->frames += res->renditions[k].frames;
      b->pixels += res->renditions[k].pixels;
    }
  }
  if (b->csv) {
    time_t t = time(NULL);
    struct tm tm;
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    fprintf(b->csv, "%s,%d,%zu,%.3f,%.4f,%" PRId64 "%s%s\n", ts, p->worker, p->n, sg->dur, dt,
            ret < 0 ? 0 : res->renditions[0].frames, ret < 0 ? ",error:" : "",
            ret < 0 ? res->error : "");
  }
  pthread_mutex_unlock(&b->mu);
  media_result_free(res);
  free(p);
}

static void *worker_run(void *arg) {
  worker_t *w = arg;
  bench_t *b = w->b;
  media_session_opts_t o = b->opts;
  o.log.seq_no = -1;
  media_session_t *s = media_session_new(&o);
  if (!s) {
    pthread_mutex_lock(&b->mu);
    b->failed++;
    snprintf(b->first_error, sizeof(b->first_error), "cannot create a session");
    pthread_mutex_unlock(&b->mu);
    return NULL;
  }
  int depth = LP_MIN(b->depth, media_session_depth(s));
  pthread_mutex_lock(&b->mu);
  b->depth_run = LP_MAX(b->depth_run, depth);
  pthread_mutex_unlock(&b->mu);
  double start = now_s(), media_t = 0;
  for (int r = 0; r < b->repeat; r++) {
    for (size_t i = 0; i < b->nseg; i++) {
      const bseg_t *sg = &b->segs[i];
      pending_t *p = malloc(sizeof(*p));
      if (p) *p = (pending_t){.b = b, .worker = w->id, .n = (size_t)r * b->nseg + i, .sg = sg};
      if (!p) {
        pthread_mutex_lock(&b->mu);
        b->failed++;
        if (!b->first_error[0]) snprintf(b->first_error, sizeof(b->first_error), "out of memory");
        pthread_mutex_unlock(&b->mu);
      } else if (depth > 1) {
        /* in flight: the next segment decodes while this one's encoders drain */
        media_session_submit(s, sg->data, sg->len, b->profiles, b->nprof, &p->res, seg_done, p);
      } else {
        /* one at a time: each result comes back before the next segment starts */
        int ret = media_session_transcode(s, sg->data, sg->len, b->profiles, b->nprof, &p->res);
        seg_done(p, &p->res, ret);
      }
      media_t += sg->dur;
      /* Live pacing: the next segment "arrives" one segment duration after this one did. */
      if (b->live) sleep_until(start + media_t);
    }
    if (r == 0 && w->id == 0) {
      pthread_mutex_lock(&b->mu);
      b->rss_after_first_kb = rss_kb();
      pthread_mutex_unlock(&b->mu);
    }
  }
  media_session_free(s); /* after the segments still in flight */
  return NULL;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads an HLS media playlist (#EXTINF durations) or a folder of .ts files (durations probed). */
static int load_segments(const char *in, int max, bench_t *b) {
  size_t cap = 0;
  char **paths = NULL;
  double *durs = NULL;
  size_t n = 0;
  size_t inlen = strlen(in);
  if (inlen > 5 && !strcmp(in + inlen - 5, ".m3u8")) {
    char *text;
    size_t len;
    if (lp_file_read(in, 1 << 24, &text, &len) < 0) return LP_EIO;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", in);
    char *slash = strrchr(dir, '/');
    if (slash)
      slash[1] = 0;
    else
      dir[0] = 0;
    double extinf = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
      lp_strtrim(line);
      if (!strncmp(line, "#EXTINF:", 8)) extinf = atof(line + 8);
      if (!*line || line[0] == '#') continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 64;
        paths = realloc(paths, cap * sizeof(*paths));
        durs = realloc(durs, cap * sizeof(*durs));
        if (!paths || !durs) abort();
      }
      char p[8192];
      snprintf(p, sizeof(p), "%s%s", line[0] == '/' ? "" : dir, line);
      paths[n] = strdup(p);
      durs[n++] = extinf;
      extinf = 0;
    }
    free(text);
  } else {
    DIR *d = opendir(in);
    if (!d) return LP_ENOENT;
    struct dirent *e;
    while ((e = readdir(d))) {
      size_t l = strlen(e->d_name);
      if (l < 4 || strcmp(e->d_name + l - 3, ".ts") != 0) continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 64;
        paths = realloc(paths, cap * sizeof(*paths));
        if (!paths) abort();
      }
      char p[8192];
      snprintf(p, sizeof(p), "%s/%s", in, e->d_name);
      paths[n++] = strdup(p);
    }
    closedir(d);
    qsort(paths, n, sizeof(*paths), cmp_str);
    durs = calloc(n ? n : 1, sizeof(*durs));
  }
  if (max > 0 && (size_t)max < n) {
    for (size_t i = (size_t)max; i < n; i++) free(paths[i]);
    n = (size_t)max;
  }
  b->segs = calloc(n ? n : 1, sizeof(*b->segs));
  for (size_t i = 0; i < n; i++) {
    bseg_t *s = &b->segs[i];
    s->path = paths[i];
    char *data;
    if (lp_file_read(s->path, (size_t)1 << 30, &data, &s->len) < 0) {
      fprintf(stderr, "bench: cannot read %s\n", s->path);
      b->nseg = i;
      free(paths);
      free(durs);
      return LP_EIO;
    }
    s->data = (uint8_t *)data;
    s->dur = durs[i];
    media_probe_t pr;
    if (s->dur <= 0 && media_probe(s->data, s->len, &pr) == 0)
      s->dur = (double)pr.duration_us / 1e6;
    if (s->dur <= 0) s->dur = 2.0; /* go-livepeer's default segment duration */
    b->nseg = i + 1;
  }
  free(paths);
  free(durs);
  return n ? 0 : LP_ENOENT;
}

static void bench_usage(void) {
  fprintf(
      stderr,
      "usage: lpod bench -in PLAYLIST.m3u8|DIR [-profiles P240p30fps16x9,...|ladder.json]\n"
      "                  [-sessions N] [-live] [-repeat R] [-segs K] [-stagger MS] [-depth 1|2]\n"
      "                  [-preset NAME] [-threads N] [-backend sw] [-device N]\n"
      "                  [-csv FILE|-] [-json FILE|-]\n"
      "One warm session per concurrent stream; segments are read into memory first.\n"
      "-depth: segments a stream keeps in flight (default 2: the next one decodes while\n"
      "this one's encoders drain, on the CPU backend; 1: each result before the next).\n"
      "A device backend is probed first, as the node does, and routes by what it passed.\n"
      "CSV columns: timestamp,session,segment,seg_dur,transcode_time,frames\n");
}

static const char *fval(int argc, char **argv, int *i, const char *name) {
  const char *a = argv[*i];
  while (*a == '-') a++;
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != 0 || *i + 1 >= argc) return NULL;
  return argv[++*i];
}

int media_cli_bench(int argc, char **argv) {
  bench_t b;
  memset(&b, 0, sizeof(b));
  media_session_opts_t def = MEDIA_SESSION_OPTS_INIT;
  b.opts = def;
  b.sessions = 1;
  b.repeat = 1;
  b.stagger_ms = 300;
  b.depth = 2;
  const char *in = NULL, *profiles = "P240p30fps16x9,P360p30fps16x9,P720p30fps16x9";
  const char *csv = NULL, *json = NULL;
  int segs = 0;
  for (int i = 1; i < argc; i++) {
    const char *v;
    const char *a = argv[i];
    while (*a == '-') a++;
    if (!strcmp(a, "live"))
      b.live = true;
    else if ((v = fval(argc, argv, &i, "in")))
      in = v;
    else if ((v = fval(argc, argv, &i, "profiles")))
      profiles = v;
    else if ((v = fval(argc, argv, &i, "transcodingOptions")))
      profiles = v;
    else if ((v = fval(argc, argv, &i, "sessions")))
      b.sessions = atoi(v);
    else if ((v = fval(argc, argv, &i, "concurrentSessions")))
      b.sessions = atoi(v);
    else if ((v = fval(argc, argv, &i, "repeat")))
      b.repeat = atoi(v);
    else if ((v = fval(argc, argv, &i, "segs")))
      segs = atoi(v);
    else if ((v = fval(argc, argv, &i, "stagger")))
      b.stagger_ms = atoi(v);
    else if ((v = fval(argc, argv, &i, "depth")))
      b.depth = atoi(v);
    else if ((v = fval(argc, argv, &i, "preset")))
      b.opts.preset = v;
    else if ((v = fval(argc, argv, &i, "threads")))
      b.opts.encoder_threads = atoi(v);
    else if ((v = fval(argc, argv, &i, "backend")))
      b.opts.backend = v;
    else if ((v = fval(argc, argv, &i, "device")))
      b.opts.device = atoi(v);
    else if ((v = fval(argc, argv, &i, "csv")))
      csv = v;
    else if ((v = fval(argc, argv, &i, "json")))
      json = v;
    else {
      bench_usage();
      return 2;
    }
  }
  if (!in || b.sessions < 1 || b.sessions > 256 || b.repeat < 1 || b.depth < 1 || b.depth > 2) {
    bench_usage();
    return 2;
  }
  char err[256];
  if (media_profiles_parse(profiles, &b.profiles, &b.nprof, err, sizeof(err)) < 0) {
    fprintf(stderr, "bench: %s\n", err);
    return 2;
  }
  int rc = 0;
  hw_table_t *table = NULL;
  if (media_cli_device_table("bench", &b.opts, &table) < 0) {
    rc = 1;
    goto out;
  }
  if (load_segments(in, segs, &b) < 0) {
    fprintf(stderr, "bench: no segments in %s\n", in);
    rc = 2;
    goto out;
  }
  if (csv) {
    b.csv = strcmp(csv, "-") ? fopen(csv, "w") : stdout;
    if (!b.csv) {
      fprintf(stderr, "bench: cannot write %s\n", csv);
      rc = 2;
      goto out;
    }
    fprintf(b.csv, "timestamp,session,segment,seg_dur,transcode_time,frames\n");
  }
  pthread_mutex_init(&b.mu, NULL);
  size_t rss0 = rss_kb();
  worker_t *ws = calloc((size_t)b.sessions, sizeof(*ws));
  double t0 = now_s();
  for (int i = 0; i < b.sessions; i++) {
    ws[i].b = &b;
    ws[i].id = i;
    if (i && b.stagger_ms > 0 && b.live) usleep((useconds_t)b.stagger_ms * 1000);
    pthread_create(&ws[i].th, NULL, worker_run, &ws[i]);
  }
  for (int i = 0; i < b.sessions; i++) pthread_join(ws[i].th, NULL);
  double wall = now_s() - t0;
  free(ws);
  size_t rss1 = rss_kb();
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  double rt_ratio = b.src_s > 0 ? b.xcode_s / b.src_s : 0;
  double speed = wall > 0 ? b.src_s / wall : 0; /* source seconds per wall second, all streams */
  double share = b.done ? (double)b.realtime / (double)b.done : 0;
  /* Measured while the sessions were alive (after session 0's first pass); the segments'
   * bytes, loaded before, are not counted. */
  size_t warm = b.rss_after_first_kb;
  size_t per_session = warm > rss0 ? (warm - rss0) / (size_t)b.sessions : 0;
  /* what the sessions ran: a device backend's take one segment at a time whatever was asked */
  int depth = b.depth_run ? b.depth_run : b.depth;
  char asked[32] = "";
  if (depth != b.depth) snprintf(asked, sizeof asked, " (asked %d)", b.depth);
  fprintf(stderr,
          "| Concurrent Sessions | %d\n| Segments In Flight per Session | %d%s\n"
          "| Total Segs Transcoded | %" PRId64 "\n| Failed Segs | %" PRId64
          "\n| Real-Time Segs Transcoded | %" PRId64
          "\n| Real-Time Segs Ratio | %.4f\n| Total Source Duration | %.3fs\n"
          "| Total Transcoding Duration | %.3fs\n| Real-Time Duration Ratio | %.4f\n"
          "| Wall Time | %.3fs\n| Throughput (source s / wall s) | %.4f\n| CPU Time | %.3fs\n"
          "| RSS start / after first pass / end | %zu / %zu / %zu KiB (peak %ld KiB)\n"
          "| RSS per warm session | %zu KiB\n",
          b.sessions, depth, asked, b.done, b.failed, b.realtime, share, b.src_s, b.xcode_s,
          rt_ratio, wall, speed, cpu, rss0, b.rss_after_first_kb, rss1, ru.ru_maxrss, per_session);
  if (b.first_error[0]) fprintf(stderr, "first error: %s\n", b.first_error);
  if (json) {
    FILE *fp = strcmp(json, "-") ? fopen(json, "w") : stdout;
    if (!fp) {
      fprintf(stderr, "bench: cannot write %s\n", json);
      rc = 2;
    } else {
      fprintf(fp,
              "{\"sessions\":%d,\"depth\":%d,\"depth_asked\":%d,\"live\":%s,\"segments\":%zu,"
              "\"repeat\":%d,"
              "\"profiles\":%zu,"
              "\"transcoded\":%" PRId64 ",\"failed\":%" PRId64 ",\"realtime_segments\":%" PRId64
              ",\"realtime_share\":%.6f,\"source_s\":%.6f,\"transcode_s\":%.6f,"
              "\"realtime_ratio\":%.6f,\"wall_s\":%.6f,\"throughput\":%.6f,\"cpu_s\":%.3f,"
              "\"frames\":%" PRId64 ",\"pixels\":%" PRId64
              ",\"rss_start_kb\":%zu,\"rss_first_pass_kb\":%zu,\"rss_end_kb\":%zu,"
              "\"rss_peak_kb\":%ld,\"rss_per_session_kb\":%zu}\n",
              b.sessions, depth, b.depth, b.live ? "true" : "false", b.nseg, b.repeat, b.nprof,
              b.done, b.failed, b.realtime, share, b.src_s, b.xcode_s, rt_ratio, wall, speed, cpu,
              b.frames, b.pixels, rss0, b.rss_after_first_kb, rss1, ru.ru_maxrss, per_session);
      if (fp != stdout) fclose(fp);
    }
  }
  if (b.failed) rc = 1;
  pthread_mutex_destroy(&b.mu);
out:
  if (b.csv && b.csv != stdout) fclose(b.csv);
  for (size_t i = 0; i < b.nseg; i++) {
    free(b.segs[i].path);
    free(b.segs[i].data);
  }
  free(b.segs);
  free(b.profiles);
  free(table);
  return rc;
}
