/* `lpod transcode`: one session over one or more segments, renditions written to a folder. */
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>

#include "media_int.h"

static void transcode_usage(void) {
  fprintf(stderr,
          "usage: lpod transcode -in SEG [-in SEG ...] -profiles P240p30fps16x9,...|ladder.json\n"
          "                      -out DIR [-backend sw] [-preset NAME] [-device N]\n"
          "Segments go through one session in order (warm, as a stream's would).\n"
          "Writes DIR/<n>_<profile>.ts|mp4|mkv and prints one line per rendition.\n");
}

/* Accepts -flag and --flag, with the value as the next argument or after '='. */
static const char *flag_value(int argc, char **argv, int *i, const char *name) {
  const char *a = argv[*i];
  while (*a == '-') a++;
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != 0 || *i + 1 >= argc) return NULL;
  return argv[++*i];
}

int media_cli_device_table(const char *tool, media_session_opts_t *o, hw_table_t **table) {
  *table = NULL;
  const hw_backend_t *be = o->backend ? hw_backend_find(o->backend) : NULL;
  /* an unknown name is the session's to report */
  if (!be || be == &hw_backend_sw) return 0;
  hw_log_init(); /* the self-test's libav lines go through lpod's log */
  char sel[16];
  snprintf(sel, sizeof(sel), "%d", o->device < 0 ? 0 : o->device);
  hw_probe_opts_t po = {.nvidia = "", .netint = "", .qsv = "", .test = true};
  if (strcmp(be->name, "nvidia") == 0)
    po.nvidia = sel;
  else if (strcmp(be->name, "qsv") == 0)
    po.qsv = sel;
  else if (strcmp(be->name, "netint") == 0)
    po.netint = sel;
  else
    return 0;
  hw_table_t *t = malloc(sizeof(*t));
  if (!t) {
    fprintf(stderr, "%s: out of memory\n", tool);
    return -1;
  }
  char err[512] = "";
  if (hw_table_probe(&po, t, err, sizeof(err)) < 0 || t->n < 2) {
    fprintf(stderr, "%s: %s\n", tool, err[0] ? err : "the device did not pass its self-test");
    free(t);
    return -1;
  }
  char *text = hw_table_text(t);
  if (text) fprintf(stderr, "%s", text);
  free(text);
  o->table = t;
  o->table_dev = t->n - 1;
  *table = t;
  return 0;
}

int media_cli_transcode(int argc, char **argv) {
  const char *ins[256];
  int nin = 0;
  const char *profiles = NULL, *outdir = NULL;
  media_session_opts_t opts = MEDIA_SESSION_OPTS_INIT;
  for (int i = 1; i < argc; i++) {
    const char *v;
    if ((v = flag_value(argc, argv, &i, "in"))) {
      if (nin == (int)LP_ARRAY_LEN(ins)) {
        fprintf(stderr, "transcode: too many inputs\n");
        return 2;
      }
      ins[nin++] = v;
    } else if ((v = flag_value(argc, argv, &i, "profiles"))) {
      profiles = v;
    } else if ((v = flag_value(argc, argv, &i, "out"))) {
      outdir = v;
    } else if ((v = flag_value(argc, argv, &i, "backend"))) {
      opts.backend = v;
    } else if ((v = flag_value(argc, argv, &i, "preset"))) {
      opts.preset = v;
    } else if ((v = flag_value(argc, argv, &i, "device"))) {
      opts.device = atoi(v);
    } else {
      transcode_usage();
      return 2;
    }
  }
  if (!nin || !profiles || !outdir) {
    transcode_usage();
    return 2;
  }
  media_profile_t *ps = NULL;
  size_t np = 0;
  char err[256];
  if (media_profiles_parse(profiles, &ps, &np, err, sizeof(err)) < 0) {
    fprintf(stderr, "transcode: %s\n", err);
    return 2;
  }
  if (lp_mkdir_p(outdir, 0755) < 0) {
    fprintf(stderr, "transcode: cannot create %s\n", outdir);
    free(ps);
    return 1;
  }
  hw_table_t *table = NULL;
  if (media_cli_device_table("transcode", &opts, &table) < 0) {
    free(ps);
    return 1;
  }
  media_session_t *s = media_session_new(&opts);
  free(table);
  if (!s) {
    fprintf(stderr, "transcode: cannot start a %s session\n", opts.backend ? opts.backend : "sw");
    free(ps);
    return 1;
  }
  int rc = 0;
  for (int k = 0; k < nin && rc == 0; k++) {
    char *data = NULL;
    size_t len = 0;
    if (lp_file_read(ins[k], (size_t)1 << 30, &data, &len) < 0) {
      fprintf(stderr, "transcode: cannot read %s\n", ins[k]);
      rc = 1;
      break;
    }
    media_result_t r;
    int ret = media_session_transcode(s, (const uint8_t *)data, len, ps, np, &r);
    free(data);
    if (ret < 0) {
      printf("segment %d: error: %s\n", k, r.error);
      rc = 1;
    } else {
      printf("segment %d: %s decoded %" PRId64 " frames %" PRId64
             " pixels %dx%d %.3fs in %.1f ms\n",
             k, ins[k], r.decoded_frames, r.decoded_pixels, r.in_width, r.in_height,
             (double)r.duration_us / 1e6, (double)r.transcode_ns / 1e6);
      for (size_t i = 0; i < r.n; i++) {
        const media_rendition_t *o = &r.renditions[i];
        char path[4096];
        const char *ext;
        media_profile_container(&ps[i], &ext, NULL);
        snprintf(path, sizeof(path), "%s/%d_%s.%s", outdir, k, ps[i].name, ext);
        if (lp_file_write_atomic(path, o->data, o->len, 0644) < 0) {
          fprintf(stderr, "transcode: cannot write %s\n", path);
          rc = 1;
        }
        printf("  %s %dx%d frames %" PRId64 " keyframes %" PRId64 " pixels %" PRId64
               " audio %" PRId64 " bytes %zu -> %s\n",
               ps[i].name, o->width, o->height, o->frames, o->keyframes, o->pixels,
               o->audio_packets, o->len, path);
      }
    }
    media_result_free(&r);
  }
  media_session_free(s);
  free(ps);
  return rc;
}
