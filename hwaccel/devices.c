/* The device table: which devices the node has, what each really did in its self-test, what
 * the node may advertise from that, where a rendition runs, and which devices are quarantined
 * after a failure. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <libavutil/log.h>

#include "hw_int.h"

#define SESSION_PROBE_MAX 32
#define SESSION_CACHE "hwaccel-sessions.json"
#define QUARANTINE_FIRST_MS 30000
#define QUARANTINE_MAX_MS 900000
#define SESSION_ERRORS_MAX 3

/* ---- building the table ---------------------------------------------------------------------- */

void hw_table_init(hw_table_t *t) {
  memset(t, 0, sizeof(*t));
  hw_device_t *cpu = &t->dev[0];
  hw_device_info_t info;
  cpu->be = &hw_backend_sw;
  cpu->index = -1;
  snprintf(cpu->name, sizeof(cpu->name), "cpu");
  if (hw_backend_sw.probe(&info, 1) == 1) snprintf(cpu->model, sizeof(cpu->model), "%s", info.name);
  t->n = 1;
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  size_t n = strlen(err);
  if (n && n + 3 < errlen) {
    snprintf(err + n, errlen - n, "; ");
    n += 2;
  }
  if (n >= errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err + n, errlen - n, fmt, ap);
  va_end(ap);
}

/* A token names a device by index, name or id. */
static bool token_matches(const char *tok, const hw_device_info_t *d) {
  char idx[16];
  snprintf(idx, sizeof(idx), "%d", d->index);
  return strcmp(tok, idx) == 0 || strcmp(tok, d->name) == 0 ||
         (d->id[0] && strcmp(tok, d->id) == 0);
}

/* ---- the encoder session cap, cached per device and driver ---------------------------------- */

static char *cache_path(const char *datadir) {
  if (!datadir || !*datadir) return NULL;
  size_t n = strlen(datadir) + sizeof(SESSION_CACHE) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", datadir, SESSION_CACHE);
  return p;
}

static cJSON *cache_load(const char *path) {
  char *text = NULL;
  size_t n = 0;
  cJSON *root = NULL;
  if (path && lp_file_read(path, 1 << 20, &text, &n) == 0) {
    root = cJSON_ParseWithLength(text, n);
    free(text);
  }
  if (!cJSON_IsObject(root) || !cJSON_IsArray(cJSON_GetObjectItem(root, "devices"))) {
    cJSON_Delete(root);
    root = cJSON_CreateObject();
    if (root && !cJSON_AddArrayToObject(root, "devices")) {
      cJSON_Delete(root);
      root = NULL;
    }
  }
  return root;
}

static cJSON *cache_find(cJSON *root, const hw_device_t *d) {
  cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "devices")) {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(e, "id"));
    const char *drv = cJSON_GetStringValue(cJSON_GetObjectItem(e, "driver"));
    const char *be = cJSON_GetStringValue(cJSON_GetObjectItem(e, "backend"));
    if (id && drv && be && !strcmp(id, d->id) && !strcmp(drv, d->driver) &&
        !strcmp(be, d->be->name))
      return e;
  }
  return NULL;
}

/* Opening encoders until one is refused takes a second or two on a GPU, and a driver update can
 * change the cap: the count is kept per device id and driver version. */
static void sessions_detect(hw_device_t *d, const char *datadir) {
  char *path = cache_path(datadir);
  cJSON *root = path ? cache_load(path) : NULL;
  cJSON *hit = root ? cache_find(root, d) : NULL;
  cJSON *v = hit ? cJSON_GetObjectItem(hit, "max_encoder_sessions") : NULL;
  if (cJSON_IsNumber(v) && v->valuedouble >= 0) {
    d->max_enc_sessions = (int)v->valuedouble;
    d->sessions_cached = true;
  } else {
    int n = hw_probe_enc_sessions(d, SESSION_PROBE_MAX);
    if (n >= 0) {
      d->max_enc_sessions = n;
      if (n > 0) LOGI("%s: the driver allows %d concurrent encoder sessions", d->name, n);
      cJSON *e = root ? cJSON_CreateObject() : NULL;
      if (e) {
        cJSON_AddStringToObject(e, "backend", d->be->name);
        cJSON_AddStringToObject(e, "id", d->id);
        cJSON_AddStringToObject(e, "driver", d->driver);
        cJSON_AddNumberToObject(e, "max_encoder_sessions", n);
        cJSON_AddItemToArray(cJSON_GetObjectItem(root, "devices"), e);
        char *text = cJSON_Print(root);
        if (text && lp_file_write_atomic(path, text, strlen(text), 0644) < 0)
          LOGW("%s: cannot write %s", d->name, path);
        free(text);
      }
    }
  }
  cJSON_Delete(root);
  free(path);
}

static int add_one(hw_table_t *t, const hw_backend_t *be, const hw_device_info_t *info, bool test,
                   const char *datadir, char *err, size_t errlen) {
  if (t->n >= HW_MAX_DEVICES) {
    errf(err, errlen, "%s: more than %d devices", be->name, HW_MAX_DEVICES);
    return LP_ERANGE;
  }
  hw_device_t *d = &t->dev[t->n];
  memset(d, 0, sizeof(*d));
  d->be = be;
  d->index = info->index;
  if (info->name[0] == '/')
    snprintf(d->name, sizeof(d->name), "%s:%s", be->name, info->name);
  else
    snprintf(d->name, sizeof(d->name), "%s:%d", be->name, info->index);
  snprintf(d->model, sizeof(d->model), "%s", info->name);
  snprintf(d->id, sizeof(d->id), "%s", info->id);
  d->mem_total = info->mem_total;
  d->max_enc_sessions = info->max_encoders;
  if (be->describe) {
    char model[sizeof(d->model)];
    if (be->describe(info->index, model, sizeof(model), d->driver, sizeof(d->driver)) == 0 &&
        model[0])
      snprintf(d->model, sizeof(d->model), "%s", model);
  }
  int ret = hw_selftest(d, test);
  if (ret < 0 || (!d->dec && !d->enc)) {
    errf(err, errlen, "%s (%s) failed its self-test: %s", d->name, d->model,
         d->note[0] ? d->note : lp_strerror(ret));
    return ret < 0 ? ret : LP_EDEVICE;
  }
  if (be->enc_sessions_limited && d->enc) sessions_detect(d, datadir);
  LOGI("%s: %s, decode 0x%x encode 0x%x (CPU 0x%x)%s", d->name, d->model, d->dec, d->enc,
       d->enc_cpu, test ? "" : ", not tested");
  t->n++;
  return 0;
}

int hw_table_add(hw_table_t *t, const hw_backend_t *be, const char *select, bool test,
                 const char *datadir, char *err, size_t errlen) {
  if (!select || !*select) return 0;
  char why[320];
  if (be->check && be->check(why, sizeof(why)) < 0) {
    errf(err, errlen, "-%s %s: %s", be->name, select, why);
    return LP_EUNSUPP;
  }
  hw_device_info_t found[HW_MAX_DEVICES];
  int n = be->probe(found, HW_MAX_DEVICES);
  if (n <= 0) {
    errf(err, errlen, "-%s %s: no %s device found", be->name, select, be->name);
    return LP_ENOENT;
  }
  if (strcmp(select, "all") == 0) {
    /* "all" is every device that works (Netint cards are found by index, so some indexes may
     * have no card); a device named explicitly must work. */
    int added = 0, ret = LP_ENOENT;
    char last[512] = "";
    for (int i = 0; i < n; i++) {
      char one[512] = "";
      int r = add_one(t, be, &found[i], test, datadir, one, sizeof(one));
      if (r == 0) {
        added++;
        continue;
      }
      ret = r;
      snprintf(last, sizeof(last), "%s", one);
      LOGW("-%s all: skipping %s", be->name, one);
    }
    if (added) return 0;
    errf(err, errlen, "-%s all: no device passed its self-test (last: %s)", be->name, last);
    return ret;
  }
  char *copy = strdup(select), *save = NULL;
  if (!copy) return LP_ENOMEM;
  int ret = 0;
  for (char *tok = strtok_r(copy, ",", &save); tok && ret == 0; tok = strtok_r(NULL, ",", &save)) {
    tok = lp_strtrim(tok);
    if (!*tok) continue;
    int k = -1;
    for (int i = 0; i < n && k < 0; i++)
      if (token_matches(tok, &found[i])) k = i;
    if (k < 0) {
      errf(err, errlen, "-%s: device '%s' not found (%d present)", be->name, tok, n);
      ret = LP_ENOENT;
    } else {
      ret = add_one(t, be, &found[k], test, datadir, err, errlen);
    }
  }
  free(copy);
  return ret;
}

int hw_table_probe(const hw_probe_opts_t *o, hw_table_t *t, char *err, size_t errlen) {
  if (err && errlen) err[0] = 0;
  hw_table_init(t);
  int first = hw_selftest(&t->dev[0], o->test);
  if (first < 0) errf(err, errlen, "cpu: %s", t->dev[0].note);
  const struct {
    const hw_backend_t *be;
    const char *select;
    const char *flag;
  } req[] = {
#ifdef LPOD_HAVE_NVIDIA
      {&hw_backend_nvidia, o->nvidia, "nvidia"},
#endif
#ifdef LPOD_HAVE_QSV
      {&hw_backend_qsv, o->qsv, "qsv"},
#endif
#ifdef LPOD_HAVE_NETINT
      {&hw_backend_netint, o->netint, "netint"},
#endif
      {NULL, NULL, NULL},
  };
  for (size_t i = 0; req[i].be; i++) {
    int ret = hw_table_add(t, req[i].be, req[i].select, o->test, o->datadir, err, errlen);
    if (ret < 0 && first == 0) first = ret;
  }
  /* Flags for backends left out of this build. */
  const char *const flags[][2] = {{"nvidia", o->nvidia}, {"qsv", o->qsv}, {"netint", o->netint}};
  for (size_t i = 0; i < LP_ARRAY_LEN(flags); i++) {
    if (!flags[i][1] || !*flags[i][1]) continue;
    bool built = false;
    for (size_t k = 0; req[k].be; k++) built = built || !strcmp(req[k].flag, flags[i][0]);
    if (!built) {
      errf(err, errlen, "-%s: this lpod was built without the %s backend (LPOD_WITH_%s=OFF)",
           flags[i][0], flags[i][0],
           i == 0   ? "NVIDIA"
           : i == 1 ? "QSV"
                    : "NETINT");
      if (first == 0) first = LP_EUNSUPP;
    }
  }
  return first;
}

/* ---- capabilities ---------------------------------------------------------------------------- */

size_t hw_table_capabilities(const hw_table_t *t, int *caps, size_t max) {
  unsigned dec = 0, enc = 0, fmts = 0;
  for (int i = 0; i < t->n; i++) {
    const hw_device_t *d = &t->dev[i];
    if (d->state != HW_DEV_OK) continue;
    dec |= d->dec;
    enc |= d->enc | d->enc_cpu;
    fmts |= d->h264_fmts;
  }
  int list[16];
  size_t n = 0;
#define ADD(cond, cap)                                                                             \
  do {                                                                                             \
    if (cond) list[n++] = (cap);                                                                   \
  } while (0)
  ADD((dec & enc & HW_CODEC_BIT(HW_CODEC_H264)) != 0, HW_CAP_H264);
  ADD(dec & HW_CODEC_BIT(HW_CODEC_HEVC), HW_CAP_HEVC_DECODE);
  ADD(enc & HW_CODEC_BIT(HW_CODEC_HEVC), HW_CAP_HEVC_ENCODE);
  ADD(dec & HW_CODEC_BIT(HW_CODEC_VP8), HW_CAP_VP8_DECODE);
  ADD(dec & HW_CODEC_BIT(HW_CODEC_VP9), HW_CAP_VP9_DECODE);
  ADD(enc & HW_CODEC_BIT(HW_CODEC_VP8), HW_CAP_VP8_ENCODE);
  ADD(enc & HW_CODEC_BIT(HW_CODEC_VP9), HW_CAP_VP9_ENCODE);
  ADD(fmts & HW_H264_444_8, HW_CAP_H264_DECODE_444_8);
  ADD(fmts & HW_H264_422_8, HW_CAP_H264_DECODE_422_8);
  ADD(fmts & HW_H264_444_10, HW_CAP_H264_DECODE_444_10);
  ADD(fmts & HW_H264_422_10, HW_CAP_H264_DECODE_422_10);
  ADD(fmts & HW_H264_420_10, HW_CAP_H264_DECODE_420_10);
  ADD(dec & HW_CODEC_BIT(HW_CODEC_AV1), HW_CAP_AV1_DECODE);
  ADD(enc & HW_CODEC_BIT(HW_CODEC_AV1), HW_CAP_AV1_ENCODE);
#undef ADD
  size_t k = LP_MIN(n, max);
  memcpy(caps, list, k * sizeof(*caps));
  return k;
}

size_t hw_caps_to_bits(const int *caps, size_t n, uint64_t *bits, size_t words) {
  size_t need = 0;
  for (size_t i = 0; i < n; i++) {
    if (caps[i] < 0) continue;
    size_t w = (size_t)caps[i] / 64;
    need = LP_MAX(need, w + 1);
    if (w < words) bits[w] |= (uint64_t)1 << (caps[i] % 64);
  }
  return need;
}

/* ---- quarantine ------------------------------------------------------------------------------ */

static void quarantine(hw_device_t *d, uint64_t now_ms, const char *why) {
  d->failures++;
  uint64_t ms = (uint64_t)QUARANTINE_FIRST_MS << LP_MIN(d->failures - 1, 10);
  ms = LP_MIN(ms, (uint64_t)QUARANTINE_MAX_MS);
  d->state = HW_DEV_QUARANTINED;
  d->retry_at_ms = now_ms + ms;
  d->session_errors = 0;
  /* The reason may quote an earlier note: keep the head of it. */
  snprintf(d->note, sizeof(d->note),
           "quarantined after %.120s (failure %d), retry in %" PRIu64 " s", why, d->failures,
           ms / 1000);
  LOGW("%s: %s", d->name, d->note);
}

hw_dev_state_t hw_table_report(hw_table_t *t, int i, hw_err_class_t cls, uint64_t now_ms) {
  if (i <= HW_TABLE_CPU || i >= t->n) return HW_DEV_OK;
  hw_device_t *d = &t->dev[i];
  if (d->state == HW_DEV_QUARANTINED) return d->state;
  if (cls == HW_ERR_DEVICE) {
    quarantine(d, now_ms, "a device error");
  } else if (cls == HW_ERR_SESSION && ++d->session_errors >= SESSION_ERRORS_MAX) {
    quarantine(d, now_ms, "repeated session errors");
  }
  return d->state;
}

void hw_table_report_ok(hw_table_t *t, int i) {
  if (i < 0 || i >= t->n || t->dev[i].state != HW_DEV_OK) return;
  t->dev[i].failures = 0;
  t->dev[i].session_errors = 0;
}

bool hw_table_usable(const hw_table_t *t, int i, uint64_t now_ms) {
  (void)now_ms;
  return i >= 0 && i < t->n && t->dev[i].state == HW_DEV_OK;
}

int hw_table_recheck(hw_table_t *t, uint64_t now_ms) {
  int back = 0;
  for (int i = 1; i < t->n; i++) {
    hw_device_t *d = &t->dev[i];
    if (d->state != HW_DEV_QUARANTINED || now_ms < d->retry_at_ms) continue;
    /* It must do at least what it was trusted with before, or its sessions would come back to
     * a device that fails them. */
    unsigned dec = d->dec, enc = d->enc, enc_cpu = d->enc_cpu;
    int failures = d->failures;
    int ret = hw_selftest(d, true);
    if (ret == 0 && (d->dec & dec) == dec && (d->enc & enc) == enc &&
        (d->enc_cpu & enc_cpu) == enc_cpu) {
      d->state = HW_DEV_OK;
      d->session_errors = 0;
      d->failures = failures; /* the backoff keeps growing if it fails again soon */
      LOGI("%s: passed its self-test again, back in service", d->name);
      back++;
    } else {
      char why[sizeof(d->note) + 32];
      snprintf(why, sizeof(why), "a failed re-test (%s)", d->note[0] ? d->note : "error");
      d->dec = dec;
      d->enc = enc;
      d->enc_cpu = enc_cpu;
      d->state = HW_DEV_OK; /* quarantine() counts it as a new failure */
      quarantine(d, now_ms, why);
    }
  }
  return back;
}

bool hw_table_recheck_due(const hw_table_t *t, uint64_t now_ms) {
  for (int i = 1; i < t->n; i++)
    if (t->dev[i].state == HW_DEV_QUARANTINED && now_ms >= t->dev[i].retry_at_ms) return true;
  return false;
}

uint32_t hw_table_recheck_apply(hw_table_t *t, const hw_table_t *rechecked) {
  uint32_t back = 0;
  for (int i = 1; i < t->n && i < rechecked->n; i++) {
    if (t->dev[i].state != HW_DEV_QUARANTINED) continue;
    t->dev[i] = rechecked->dev[i];
    if (t->dev[i].state == HW_DEV_OK) back |= 1u << i;
  }
  return back;
}

int hw_table_fallback_device(const hw_table_t *t, int failed, hw_codec_t in, uint64_t now_ms) {
  const hw_backend_t *be = failed > 0 && failed < t->n ? t->dev[failed].be : NULL;
  for (int i = 1; i < t->n; i++)
    if (i != failed && t->dev[i].be == be && hw_table_usable(t, i, now_ms) &&
        (t->dev[i].dec & HW_CODEC_BIT(in)))
      return i;
  return HW_TABLE_CPU;
}

/* ---- routing --------------------------------------------------------------------------------- */

static const char *const why_text[HW_WHY_COUNT] = {
    "",
    "the device has no encoder for this codec",
    "smaller than the encoder's minimum size",
    "larger than the encoder's maximum size",
    "a size the encoder cannot align",
    "all of the device's encoder sessions are in use",
    "the device is quarantined",
    "the device does not decode this pixel format",
};

const char *hw_route_why_text(hw_route_why_t why) {
  return (unsigned)why < HW_WHY_COUNT ? why_text[why] : "?";
}

/* The same orientation rule as the engine's size fit: the long side is checked against the
 * width limits of a landscape frame. */
static hw_route_why_t size_check(const hw_limits_t *l, int w, int h) {
  bool land = w >= h;
  int lo = land ? w : h, sh = land ? h : w;
  int min_l = land ? l->min_w : l->min_h, min_s = land ? l->min_h : l->min_w;
  int max_l = land ? l->max_w : l->max_h, max_s = land ? l->max_h : l->max_w;
  if (lo < min_l || sh < min_s) return HW_WHY_TOO_SMALL;
  if (lo > max_l || sh > max_s) return HW_WHY_TOO_LARGE;
  if (l->align > 1 && (w % l->align || h % l->align)) return HW_WHY_ODD_SIZE;
  return HW_WHY_NONE;
}

static bool cpu_encodes(const hw_table_t *t, hw_codec_t codec, int w, int h) {
  const hw_device_t *cpu = &t->dev[HW_TABLE_CPU];
  return (cpu->enc & HW_CODEC_BIT(codec)) && size_check(&cpu->limits[codec], w, h) == HW_WHY_NONE;
}

hw_route_t hw_route_encode(const hw_table_t *t, int dev, hw_codec_t codec, int w, int h,
                           int sessions_in_use, uint64_t now_ms, hw_route_why_t *why) {
  if ((unsigned)codec >= HW_CODECS || dev < 0 || dev >= t->n) {
    *why = HW_WHY_CODEC;
    return HW_ROUTE_NONE;
  }
  const hw_device_t *d = &t->dev[dev];
  hw_route_why_t r;
  if (dev != HW_TABLE_CPU && !hw_table_usable(t, dev, now_ms))
    r = HW_WHY_QUARANTINED;
  else if (!(d->enc & HW_CODEC_BIT(codec)))
    r = HW_WHY_CODEC;
  else
    r = size_check(&d->limits[codec], w, h);
  if (r == HW_WHY_NONE && dev != HW_TABLE_CPU && d->max_enc_sessions > 0 &&
      sessions_in_use >= d->max_enc_sessions)
    r = HW_WHY_SESSIONS;
  *why = r;
  if (r == HW_WHY_NONE) return HW_ROUTE_DEVICE;
  if (dev == HW_TABLE_CPU) return HW_ROUTE_NONE;
  return cpu_encodes(t, codec, w, h) ? HW_ROUTE_CPU : HW_ROUTE_NONE;
}

hw_route_t hw_route_decode(const hw_table_t *t, int dev, hw_codec_t codec, unsigned h264_fmt,
                           uint64_t now_ms, hw_route_why_t *why) {
  if ((unsigned)codec >= HW_CODECS || dev < 0 || dev >= t->n) {
    *why = HW_WHY_CODEC;
    return HW_ROUTE_NONE;
  }
  const hw_device_t *cpu = &t->dev[HW_TABLE_CPU], *d = &t->dev[dev];
  bool cpu_ok = (cpu->dec & HW_CODEC_BIT(codec)) &&
                (codec != HW_CODEC_H264 || !h264_fmt || (cpu->h264_fmts & h264_fmt));
  hw_route_why_t r = HW_WHY_NONE;
  if (dev != HW_TABLE_CPU && !hw_table_usable(t, dev, now_ms))
    r = HW_WHY_QUARANTINED;
  else if (!(d->dec & HW_CODEC_BIT(codec)))
    r = HW_WHY_CODEC;
  else if (codec == HW_CODEC_H264 && h264_fmt && !(d->h264_fmts & h264_fmt))
    r = HW_WHY_FORMAT;
  *why = r;
  if (r == HW_WHY_NONE) return HW_ROUTE_DEVICE;
  if (dev == HW_TABLE_CPU) return HW_ROUTE_NONE;
  return cpu_ok ? HW_ROUTE_CPU : HW_ROUTE_NONE;
}

bool hw_fallback_note(hw_fallback_log_t *l, const lp_logctx_t *ctx, const hw_device_t *d,
                      int rendition, hw_codec_t codec, int w, int h, hw_route_why_t why) {
  if (why <= HW_WHY_NONE || why >= HW_WHY_COUNT || rendition < -1 || rendition > 30) return false;
  uint32_t bit = rendition < 0 ? 1u << 31 : 1u << rendition;
  if (l->seen[why] & bit) return false;
  l->seen[why] |= bit;
  if (rendition < 0)
    LOGI_C(ctx, "%s: decoding %s on the CPU: %s", d->name, hw_codec_name(codec),
           hw_route_why_text(why));
  else
    LOGI_C(ctx, "%s: rendition %d (%s %dx%d) encodes on the CPU: %s", d->name, rendition,
           hw_codec_name(codec), w, h, hw_route_why_text(why));
  return true;
}

/* ---- output ---------------------------------------------------------------------------------- */

static void codec_list(lp_buf_t *b, unsigned mask) {
  bool any = false;
  for (int c = 0; c < HW_CODECS; c++)
    if (mask & HW_CODEC_BIT(c)) {
      lp_buf_appendf(b, "%s%s", any ? " " : "", hw_codec_name((hw_codec_t)c));
      any = true;
    }
  if (!any) lp_buf_appendf(b, "none");
}

static const char *const fmt_names[HW_H264_FMTS] = {"4:4:4", "4:2:2", "4:4:4 10-bit",
                                                    "4:2:2 10-bit", "4:2:0 10-bit"};

char *hw_table_text(const hw_table_t *t) {
  lp_buf_t b = LP_BUF_INIT;
  for (int i = 0; i < t->n; i++) {
    const hw_device_t *d = &t->dev[i];
    lp_buf_appendf(&b, "%-26s %s, %s", d->name, d->be->name, d->model);
    if (d->driver[0]) lp_buf_appendf(&b, ", driver %s", d->driver);
    if (d->mem_total) lp_buf_appendf(&b, ", %" PRIu64 " MiB", d->mem_total >> 20);
    if (d->id[0] && d->id[0] != '/') lp_buf_appendf(&b, ", %s", d->id);
    lp_buf_appendf(&b, "\n  decode    ");
    codec_list(&b, d->dec);
    if (d->h264_fmts) {
      lp_buf_appendf(&b, " (H.264 also");
      for (int k = 0; k < HW_H264_FMTS; k++)
        if (d->h264_fmts & (1u << k)) lp_buf_appendf(&b, " %s", fmt_names[k]);
      lp_buf_appendf(&b, ")");
    }
    lp_buf_appendf(&b, "\n  encode    ");
    codec_list(&b, d->enc);
    if (d->enc_cpu) {
      lp_buf_appendf(&b, i ? " on the device; on the CPU from its frames: " : "");
      codec_list(&b, d->enc_cpu);
    }
    for (int c = 0; c < HW_CODECS; c++)
      if ((d->enc | d->enc_cpu) & HW_CODEC_BIT(c)) {
        const hw_limits_t *l = &d->limits[c];
        lp_buf_appendf(&b, "\n  %-9s %dx%d to %dx%d", hw_codec_name((hw_codec_t)c), l->min_w,
                       l->min_h, l->max_w, l->max_h);
      }
    if (i != HW_TABLE_CPU) {
      if (d->max_enc_sessions > 0)
        lp_buf_appendf(&b, "\n  sessions  %d encoders at most%s", d->max_enc_sessions,
                       d->sessions_cached ? " (cached)" : "");
      else if (d->enc)
        lp_buf_appendf(&b, "\n  sessions  no driver cap found");
    }
    lp_buf_appendf(&b, "\n  state     %s, %s", d->state == HW_DEV_OK ? "ok" : "quarantined",
                   d->tested ? "tested with a transcode per codec" : "codecs opened, not tested");
    if (d->note[0]) lp_buf_appendf(&b, "\n  notes     %s", d->note);
    lp_buf_appendf(&b, "\n");
  }
  int caps[32];
  size_t n = hw_table_capabilities(t, caps, LP_ARRAY_LEN(caps));
  lp_buf_appendf(&b, "capabilities");
  for (size_t i = 0; i < n; i++) lp_buf_appendf(&b, " %d", caps[i]);
  lp_buf_appendf(&b, "\n");
  if (lp_buf_append(&b, "", 1) < 0) {
    lp_buf_free(&b);
    return NULL;
  }
  return (char *)lp_buf_steal(&b, NULL);
}

static cJSON *codec_array(unsigned mask) {
  cJSON *a = cJSON_CreateArray();
  for (int c = 0; a && c < HW_CODECS; c++)
    if (mask & HW_CODEC_BIT(c))
      cJSON_AddItemToArray(a, cJSON_CreateString(hw_codec_name((hw_codec_t)c)));
  return a;
}

char *hw_table_json(const hw_table_t *t) {
  cJSON *root = cJSON_CreateObject();
  cJSON *devs = root ? cJSON_AddArrayToObject(root, "devices") : NULL;
  for (int i = 0; devs && i < t->n; i++) {
    const hw_device_t *d = &t->dev[i];
    cJSON *o = cJSON_CreateObject();
    if (!o) break;
    cJSON_AddItemToArray(devs, o);
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "backend", d->be->name);
    cJSON_AddNumberToObject(o, "index", d->index);
    cJSON_AddStringToObject(o, "model", d->model);
    cJSON_AddStringToObject(o, "driver", d->driver);
    cJSON_AddStringToObject(o, "id", d->id);
    cJSON_AddNumberToObject(o, "memory_bytes", (double)d->mem_total);
    cJSON_AddItemToObject(o, "decode", codec_array(d->dec));
    cJSON_AddItemToObject(o, "encode", codec_array(d->enc));
    cJSON_AddItemToObject(o, "encode_cpu", codec_array(d->enc_cpu));
    cJSON *f = cJSON_AddArrayToObject(o, "h264_decode_formats");
    for (int k = 0; f && k < HW_H264_FMTS; k++)
      if (d->h264_fmts & (1u << k)) cJSON_AddItemToArray(f, cJSON_CreateString(fmt_names[k]));
    cJSON *lim = cJSON_AddObjectToObject(o, "limits");
    for (int c = 0; lim && c < HW_CODECS; c++)
      if ((d->enc | d->enc_cpu) & HW_CODEC_BIT(c)) {
        const hw_limits_t *l = &d->limits[c];
        cJSON *e = cJSON_AddObjectToObject(lim, hw_codec_name((hw_codec_t)c));
        if (!e) continue;
        cJSON_AddNumberToObject(e, "min_width", l->min_w);
        cJSON_AddNumberToObject(e, "min_height", l->min_h);
        cJSON_AddNumberToObject(e, "max_width", l->max_w);
        cJSON_AddNumberToObject(e, "max_height", l->max_h);
        cJSON_AddNumberToObject(e, "align", l->align);
        cJSON_AddBoolToObject(e, "bframes", l->bframes);
      }
    cJSON_AddNumberToObject(o, "max_encoder_sessions", d->max_enc_sessions);
    cJSON_AddBoolToObject(o, "sessions_cached", d->sessions_cached);
    cJSON_AddBoolToObject(o, "tested", d->tested);
    cJSON_AddStringToObject(o, "state", d->state == HW_DEV_OK ? "ok" : "quarantined");
    cJSON_AddStringToObject(o, "note", d->note);
  }
  int caps[32];
  size_t n = hw_table_capabilities(t, caps, LP_ARRAY_LEN(caps));
  cJSON *ca = root ? cJSON_AddArrayToObject(root, "capabilities") : NULL;
  for (size_t i = 0; ca && i < n; i++) cJSON_AddItemToArray(ca, cJSON_CreateNumber(caps[i]));
  char *text = root ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  return text;
}

/* ---- reading the JSON back ------------------------------------------------------------------- */

static const hw_backend_t *backend_named(const char *name, const hw_backend_t *const *extra) {
  const hw_backend_t *be = hw_backend_find(name);
  for (size_t i = 0; !be && extra && extra[i]; i++)
    if (strcmp(extra[i]->name, name) == 0) be = extra[i];
  return be;
}

static int codec_named(const char *name, hw_codec_t *out) {
  for (int c = 0; c < HW_CODECS; c++)
    if (strcmp(hw_codec_name((hw_codec_t)c), name) == 0) {
      *out = (hw_codec_t)c;
      return 0;
    }
  return LP_EINVAL;
}

/* A list of codec names as a HW_CODEC_BIT mask; an unknown name is an error. */
static int codec_mask(const cJSON *a, unsigned *out) {
  *out = 0;
  if (!a) return 0;
  if (!cJSON_IsArray(a)) return LP_EINVAL;
  const cJSON *it;
  cJSON_ArrayForEach(it, a) {
    hw_codec_t c;
    if (!cJSON_IsString(it) || codec_named(it->valuestring, &c)) return LP_EINVAL;
    *out |= HW_CODEC_BIT(c);
  }
  return 0;
}

static void copy_str(char *dst, size_t len, const cJSON *o, const char *key) {
  const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
  snprintf(dst, len, "%s", v ? v : "");
}

static int num(const cJSON *o, const char *key, int def) {
  const cJSON *v = cJSON_GetObjectItem(o, key);
  return cJSON_IsNumber(v) ? v->valueint : def;
}

int hw_table_from_json(const char *json, const hw_backend_t *const *extra, hw_table_t *t, char *err,
                       size_t errlen) {
  if (err && errlen) err[0] = 0;
  memset(t, 0, sizeof(*t));
  cJSON *root = json ? cJSON_Parse(json) : NULL;
  const cJSON *devs = root ? cJSON_GetObjectItem(root, "devices") : NULL;
  int rc = 0;
  if (!cJSON_IsArray(devs) || cJSON_GetArraySize(devs) < 1) {
    errf(err, errlen, "not a device table (no \"devices\" list)");
    rc = LP_EINVAL;
    goto done;
  }
  if (cJSON_GetArraySize(devs) > HW_MAX_DEVICES) {
    errf(err, errlen, "more than %d devices", HW_MAX_DEVICES);
    rc = LP_EINVAL;
    goto done;
  }
  const cJSON *o;
  cJSON_ArrayForEach(o, devs) {
    hw_device_t *d = &t->dev[t->n];
    const char *be = cJSON_GetStringValue(cJSON_GetObjectItem(o, "backend"));
    d->be = be ? backend_named(be, extra) : NULL;
    copy_str(d->name, sizeof(d->name), o, "name");
    if (!d->be || !d->name[0]) {
      errf(err, errlen, "device %d: backend '%s' is not built into this lpod", t->n, be ? be : "");
      rc = LP_EINVAL;
      goto done;
    }
    /* the CPU comes first, as hw_table_init puts it */
    if ((t->n == HW_TABLE_CPU) != (d->be == &hw_backend_sw)) {
      errf(err, errlen, "device %d (%s): the CPU must come first, and only once", t->n, d->name);
      rc = LP_EINVAL;
      goto done;
    }
    d->index = num(o, "index", t->n ? 0 : -1);
    copy_str(d->model, sizeof(d->model), o, "model");
    copy_str(d->driver, sizeof(d->driver), o, "driver");
    copy_str(d->id, sizeof(d->id), o, "id");
    copy_str(d->note, sizeof(d->note), o, "note");
    const cJSON *mem = cJSON_GetObjectItem(o, "memory_bytes");
    d->mem_total = cJSON_IsNumber(mem) && mem->valuedouble > 0 ? (uint64_t)mem->valuedouble : 0;
    if (codec_mask(cJSON_GetObjectItem(o, "decode"), &d->dec) ||
        codec_mask(cJSON_GetObjectItem(o, "encode"), &d->enc) ||
        codec_mask(cJSON_GetObjectItem(o, "encode_cpu"), &d->enc_cpu)) {
      errf(err, errlen, "device %s: an unknown codec in its codec lists", d->name);
      rc = LP_EINVAL;
      goto done;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(o, "h264_decode_formats")) {
      for (int k = 0; k < HW_H264_FMTS; k++)
        if (cJSON_IsString(f) && strcmp(f->valuestring, fmt_names[k]) == 0) d->h264_fmts |= 1u << k;
    }
    const cJSON *lim = cJSON_GetObjectItem(o, "limits");
    for (int c = 0; c < HW_CODECS; c++) {
      if (!((d->enc | d->enc_cpu) & HW_CODEC_BIT(c))) continue;
      const cJSON *e = cJSON_GetObjectItem(lim, hw_codec_name((hw_codec_t)c));
      hw_limits_t *l = &d->limits[c];
      l->min_w = num(e, "min_width", 0);
      l->min_h = num(e, "min_height", 0);
      l->max_w = num(e, "max_width", 0);
      l->max_h = num(e, "max_height", 0);
      l->align = num(e, "align", 2);
      l->bframes = cJSON_IsTrue(cJSON_GetObjectItem(e, "bframes"));
      if (!e || l->max_w < l->min_w || l->max_h < l->min_h || l->max_w <= 0 || l->align <= 0) {
        errf(err, errlen, "device %s: no valid %s size limits", d->name,
             hw_codec_name((hw_codec_t)c));
        rc = LP_EINVAL;
        goto done;
      }
    }
    d->max_enc_sessions = num(o, "max_encoder_sessions", 0);
    d->sessions_cached = cJSON_IsTrue(cJSON_GetObjectItem(o, "sessions_cached"));
    d->tested = cJSON_IsTrue(cJSON_GetObjectItem(o, "tested"));
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(o, "state"));
    d->state = st && strcmp(st, "ok") == 0 ? HW_DEV_OK : HW_DEV_QUARANTINED;
    t->n++;
  }
done:
  cJSON_Delete(root);
  if (rc) memset(t, 0, sizeof(*t));
  return rc;
}

/* ---- `lpod devices` -------------------------------------------------------------------------- */

static const char *flag_value(int argc, char **argv, int *i, const char *name) {
  const char *a = argv[*i];
  while (*a == '-') a++;
  size_t n = strlen(name);
  if (strncasecmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != 0 || *i + 1 >= argc) return NULL;
  return argv[++*i];
}

static bool flag_is(const char *arg, const char *name) {
  while (*arg == '-') arg++;
  return strcasecmp(arg, name) == 0;
}

int hw_cli_devices(int argc, char **argv) {
  hw_probe_opts_t o = {"", "", "", true, NULL};
  bool json = false;
  int verbosity = -1;
  for (int i = 1; i < argc; i++) {
    const char *v;
    if ((v = flag_value(argc, argv, &i, "nvidia")))
      o.nvidia = v;
    else if ((v = flag_value(argc, argv, &i, "netint")))
      o.netint = v;
    else if ((v = flag_value(argc, argv, &i, "qsv")))
      o.qsv = v;
    else if ((v = flag_value(argc, argv, &i, "datadir")))
      o.datadir = v;
    else if (flag_is(argv[i], "json"))
      json = true;
    else if (flag_is(argv[i], "testTranscoder"))
      o.test = true;
    else if (!strncasecmp(argv[i] + strspn(argv[i], "-"), "testTranscoder=", 15))
      o.test = strcasecmp(argv[i] + strspn(argv[i], "-") + 15, "false") != 0 &&
               strcmp(argv[i] + strspn(argv[i], "-") + 15, "0") != 0;
    else if ((v = flag_value(argc, argv, &i, "v")))
      verbosity = atoi(v);
    else {
      fprintf(stderr,
              "usage: lpod devices [-nvidia all|0,1] [-qsv /dev/dri/renderD128|all] "
              "[-netint all|0,1]\n"
              "                    [-testTranscoder=false] [-datadir DIR] [-json] [-v N]\n"
              "Probes every device, runs a tiny transcode per codec on each (unless\n"
              "-testTranscoder=false) and prints the device table; -datadir caches the NVENC\n"
              "session cap as the node does.\n");
      return 2;
    }
  }
  if (verbosity >= 0) lp_log_set_level(verbosity);
  /* FFmpeg explains each refused codec at length; the table's notes say it in a line. */
  if (lp_log_get_level() < LP_V_DEBUG) av_log_set_level(AV_LOG_FATAL);
  hw_table_t t;
  char err[1024];
  int ret = hw_table_probe(&o, &t, err, sizeof(err));
  char *text = json ? hw_table_json(&t) : hw_table_text(&t);
  if (text) {
    fputs(text, stdout);
    if (json) fputc('\n', stdout);
    free(text);
  }
  if (ret < 0) {
    fprintf(stderr, "lpod devices: %s\n", err);
    return 1;
  }
  return 0;
}
