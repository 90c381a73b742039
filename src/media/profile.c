/* Video profiles: presets, go-livepeer's JSON ladder, validation, output size, cost hints. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "lpod/hwaccel.h"
#include "lpod/media.h"
#include "media_int.h"

typedef struct {
  const char *name;
  int w, h, kbps, fps;
} preset_t;

/* lpms VideoProfileLookup. P144p25fps16x9 is defined there but not selectable by name. */
static const preset_t presets[] = {
    {"P720p60fps16x9", 1280, 720, 6000, 60}, {"P720p30fps16x9", 1280, 720, 4000, 30},
    {"P720p25fps16x9", 1280, 720, 3500, 25}, {"P720p30fps4x3", 960, 720, 3500, 30},
    {"P576p30fps16x9", 1024, 576, 1500, 30}, {"P576p25fps16x9", 1024, 576, 1500, 25},
    {"P360p30fps16x9", 640, 360, 1200, 30},  {"P360p25fps16x9", 640, 360, 1000, 25},
    {"P360p30fps4x3", 480, 360, 1000, 30},   {"P240p30fps16x9", 426, 240, 600, 30},
    {"P240p25fps16x9", 426, 240, 600, 25},   {"P240p30fps4x3", 320, 240, 600, 30},
    {"P144p30fps16x9", 256, 144, 400, 30},
};

static void set_err(char *err, size_t errlen, const char *fmt, const char *arg) {
  if (err && errlen) snprintf(err, errlen, fmt, arg ? arg : "");
}

int media_profile_preset(const char *name, media_profile_t *out) {
  for (size_t i = 0; i < LP_ARRAY_LEN(presets); i++) {
    if (strcmp(presets[i].name, name) != 0) continue;
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", presets[i].name);
    out->width = presets[i].w;
    out->height = presets[i].h;
    out->bitrate = presets[i].kbps * 1000;
    out->fps = (uint32_t)presets[i].fps;
    return 0;
  }
  return LP_ENOENT;
}

static int parse_h264_profile(const char *s, media_h264_profile_t *out) {
  static const struct {
    const char *name;
    media_h264_profile_t v;
  } map[] = {{"", MEDIA_H264_DEFAULT},
             {"none", MEDIA_H264_DEFAULT},
             {"h264baseline", MEDIA_H264_BASELINE},
             {"h264main", MEDIA_H264_MAIN},
             {"h264high", MEDIA_H264_HIGH},
             {"h264constrainedhigh", MEDIA_H264_CONSTRAINED_HIGH}};
  for (size_t i = 0; i < LP_ARRAY_LEN(map); i++)
    if (strcasecmp(map[i].name, s) == 0) {
      *out = map[i].v;
      return 0;
    }
  return LP_EINVAL;
}

static int parse_codec(const char *s, media_codec_t *out) {
  static const struct {
    const char *name;
    media_codec_t v;
  } map[] = {{"", MEDIA_CODEC_H264},     {"h.264", MEDIA_CODEC_H264}, {"h264", MEDIA_CODEC_H264},
             {"hevc", MEDIA_CODEC_HEVC}, {"h.265", MEDIA_CODEC_HEVC}, {"h265", MEDIA_CODEC_HEVC},
             {"vp8", MEDIA_CODEC_VP8},   {"vp9", MEDIA_CODEC_VP9},    {"av1", MEDIA_CODEC_AV1}};
  for (size_t i = 0; i < LP_ARRAY_LEN(map); i++)
    if (strcasecmp(map[i].name, s) == 0) {
      *out = map[i].v;
      return 0;
    }
  return LP_EINVAL;
}

static int json_int(const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *v) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!it || cJSON_IsNull(it)) return 0;
  double d;
  if (cJSON_IsNumber(it)) {
    d = it->valuedouble;
  } else if (cJSON_IsString(it) && it->valuestring[0]) {
    /* go-livepeer's bitrate may be written "600k" elsewhere; accept k/M suffixes here too. */
    char *end;
    d = strtod(it->valuestring, &end);
    if (*end == 'k' || *end == 'K')
      d *= 1000, end++;
    else if (*end == 'm' || *end == 'M')
      d *= 1000000, end++;
    if (*end) return LP_EINVAL;
  } else {
    return LP_EINVAL;
  }
  if (d != floor(d) || d < (double)lo || d > (double)hi) return LP_EINVAL;
  *v = (int64_t)d;
  return 0;
}

static int json_one(const cJSON *o, media_profile_t *p, char *err, size_t errlen) {
  memset(p, 0, sizeof(*p));
  if (!cJSON_IsObject(o)) {
    set_err(err, errlen, "profile is not an object%s", NULL);
    return LP_EINVAL;
  }
  int64_t v;
  static const struct {
    const char *key;
    int64_t lo, hi;
    size_t off;
    int size;
  } ints[] = {
      {"width", 0, 65535, offsetof(media_profile_t, width), 4},
      {"height", 0, 65535, offsetof(media_profile_t, height), 4},
      {"bitrate", 0, INT32_MAX, offsetof(media_profile_t, bitrate), 4},
      {"fps", 0, 1000000, offsetof(media_profile_t, fps), 4},
      {"fpsDen", 0, 1000000, offsetof(media_profile_t, fps_den), 4},
      {"colorDepth", 0, 16, offsetof(media_profile_t, color_depth), 4},
      {"quality", 0, 63, offsetof(media_profile_t, quality), 4},
  };
  for (size_t i = 0; i < LP_ARRAY_LEN(ints); i++) {
    v = 0;
    if (json_int(o, ints[i].key, ints[i].lo, ints[i].hi, &v) < 0) {
      set_err(err, errlen, "bad value for \"%s\"", ints[i].key);
      return LP_EINVAL;
    }
    int32_t x = (int32_t)v;
    memcpy((char *)p + ints[i].off, &x, sizeof(x));
  }
  v = 0;
  if (json_int(o, "chromaFormat", 0, 2, &v) < 0) {
    set_err(err, errlen, "bad value for \"%s\"", "chromaFormat");
    return LP_EINVAL;
  }
  p->chroma_format = (media_chroma_t)v;

  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, "profile");
  if (it && !cJSON_IsNull(it) &&
      (!cJSON_IsString(it) || parse_h264_profile(it->valuestring, &p->profile) < 0)) {
    set_err(err, errlen, "TranscoderUnrecognizedProfile%s", NULL);
    return LP_EINVAL;
  }
  it = cJSON_GetObjectItemCaseSensitive(o, "encoder");
  if (it && !cJSON_IsNull(it) &&
      (!cJSON_IsString(it) || parse_codec(it->valuestring, &p->encoder) < 0)) {
    set_err(err, errlen, "unrecognized video codec%s", NULL);
    return LP_EINVAL;
  }
  it = cJSON_GetObjectItemCaseSensitive(o, "format");
  if (it && !cJSON_IsNull(it)) {
    if (cJSON_IsString(it) && (!strcasecmp(it->valuestring, "mpegts") ||
                               !strcasecmp(it->valuestring, "ts") || !it->valuestring[0]))
      p->format = MEDIA_FORMAT_MPEGTS;
    else if (cJSON_IsString(it) && !strcasecmp(it->valuestring, "mp4"))
      p->format = MEDIA_FORMAT_MP4;
    else {
      set_err(err, errlen, "TranscoderUnrecognizedFormat%s", NULL);
      return LP_EINVAL;
    }
  }
  it = cJSON_GetObjectItemCaseSensitive(o, "audio");
  if (it && !cJSON_IsNull(it)) {
    const char *a = cJSON_IsString(it) ? it->valuestring : "";
    if (!strcasecmp(a, "copy"))
      p->audio = MEDIA_PROFILE_AUDIO_COPY;
    else if (!strcasecmp(a, "drop") || !strcasecmp(a, "none"))
      p->audio = MEDIA_PROFILE_AUDIO_DROP;
    else if (!strcasecmp(a, "aac"))
      p->audio = MEDIA_PROFILE_AUDIO_AAC;
    else {
      set_err(err, errlen, "unrecognized audio (copy, drop or aac): %s", a);
      return LP_EINVAL;
    }
  }
  /* gop: seconds as a string ("2", "0.5") or "intra"; a bare number is taken as seconds too. */
  it = cJSON_GetObjectItemCaseSensitive(o, "gop");
  if (it && !cJSON_IsNull(it)) {
    double secs;
    if (cJSON_IsString(it) && !strcasecmp(it->valuestring, "intra")) {
      p->gop_ms = MEDIA_GOP_INTRA;
    } else if (cJSON_IsString(it) || cJSON_IsNumber(it)) {
      char *end = NULL;
      secs = cJSON_IsNumber(it) ? it->valuedouble : strtod(it->valuestring, &end);
      if ((end && (*end || end == it->valuestring)) || !(secs >= 0) || secs > 3600) {
        set_err(err, errlen, "TranscoderInvalidGOP%s", NULL);
        return LP_EINVAL;
      }
      p->gop_ms = (int32_t)llround(secs * 1000);
    } else {
      set_err(err, errlen, "TranscoderInvalidGOP%s", NULL);
      return LP_EINVAL;
    }
  }
  it = cJSON_GetObjectItemCaseSensitive(o, "name");
  if (it && cJSON_IsString(it) && it->valuestring[0]) {
    if (strlen(it->valuestring) >= sizeof(p->name)) {
      set_err(err, errlen, "profile name too long: %s", it->valuestring);
      return LP_EINVAL;
    }
    snprintf(p->name, sizeof(p->name), "%s", it->valuestring);
  } else {
    snprintf(p->name, sizeof(p->name), "custom_%dx%d_%d", p->width, p->height, p->bitrate);
  }
  const char *why;
  if (media_profile_validate(p, &why) < 0) {
    set_err(err, errlen, "%s", why);
    return LP_EINVAL;
  }
  return 0;
}

int media_profiles_parse_json(const char *json, size_t len, media_profile_t **out, size_t *n,
                              char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!root) {
    set_err(err, errlen, "profiles: invalid JSON%s", NULL);
    return LP_EINVAL;
  }
  const cJSON *arr = root;
  if (cJSON_IsObject(root)) arr = cJSON_GetObjectItemCaseSensitive(root, "profiles");
  int ret = 0;
  if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
    set_err(err, errlen, "profiles: expected a non-empty array%s", NULL);
    ret = LP_EINVAL;
    goto done;
  }
  size_t cnt = (size_t)cJSON_GetArraySize(arr);
  media_profile_t *ps = calloc(cnt, sizeof(*ps));
  if (!ps) {
    ret = LP_ENOMEM;
    goto done;
  }
  size_t i = 0;
  const cJSON *o;
  cJSON_ArrayForEach(o, arr) {
    if ((ret = json_one(o, &ps[i++], err, errlen)) < 0) {
      free(ps);
      goto done;
    }
  }
  *out = ps;
  *n = cnt;
done:
  cJSON_Delete(root);
  return ret;
}

int media_profiles_parse(const char *spec, media_profile_t **out, size_t *n, char *err,
                         size_t errlen) {
  *out = NULL;
  *n = 0;
  if (!spec || !*spec) {
    set_err(err, errlen, "profiles: empty%s", NULL);
    return LP_EINVAL;
  }
  while (isspace((unsigned char)*spec)) spec++;
  if (*spec == '[' || *spec == '{')
    return media_profiles_parse_json(spec, strlen(spec), out, n, err, errlen);
  char *text = NULL;
  size_t tlen = 0;
  if (strchr(spec, '/') || strstr(spec, ".json")) {
    if (lp_file_read(spec, 1 << 20, &text, &tlen) < 0) {
      set_err(err, errlen, "profiles: cannot read %s", spec);
      return LP_EIO;
    }
    int ret = media_profiles_parse_json(text, tlen, out, n, err, errlen);
    free(text);
    return ret;
  }
  size_t cnt = 1;
  for (const char *c = spec; *c; c++) cnt += *c == ',';
  media_profile_t *ps = calloc(cnt, sizeof(*ps));
  char *copy = strdup(spec);
  if (!ps || !copy) {
    free(ps);
    free(copy);
    return LP_ENOMEM;
  }
  size_t k = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    lp_strtrim(tok);
    if (!*tok) continue;
    if (media_profile_preset(tok, &ps[k]) < 0) {
      set_err(err, errlen, "unknown profile preset: %s", tok);
      free(ps);
      free(copy);
      return LP_EINVAL;
    }
    k++;
  }
  free(copy);
  if (!k) {
    free(ps);
    set_err(err, errlen, "profiles: empty%s", NULL);
    return LP_EINVAL;
  }
  *out = ps;
  *n = k;
  return 0;
}

int media_profile_validate(const media_profile_t *p, const char **why) {
  const char *w = NULL;
  if (p->format != MEDIA_FORMAT_MPEGTS && p->format != MEDIA_FORMAT_MP4)
    w = "TranscoderUnrecognizedFormat";
  else if ((unsigned)p->profile > MEDIA_H264_CONSTRAINED_HIGH)
    w = "TranscoderUnrecognizedProfile";
  else if ((unsigned)p->encoder > MEDIA_CODEC_AV1)
    w = "unrecognized video codec";
  else if (p->gop_ms < MEDIA_GOP_INTRA)
    w = "TranscoderInvalidGOP";
  else if (p->width < 0 || p->height < 0 || p->width > 65535 || p->height > 65535 ||
           (p->width == 0) != (p->height == 0))
    w = "TranscoderInvalidResolution";
  else if (p->bitrate < 0 || p->quality > 63)
    w = "Invalid argument";
  else if ((unsigned)p->chroma_format > MEDIA_CHROMA_444)
    w = "Invalid argument";
  if (why) *why = w;
  return w ? LP_EINVAL : 0;
}

enum AVCodecID media_codec_avid(media_codec_t c) {
  switch (c) {
  case MEDIA_CODEC_HEVC: return AV_CODEC_ID_HEVC;
  case MEDIA_CODEC_VP8: return AV_CODEC_ID_VP8;
  case MEDIA_CODEC_VP9: return AV_CODEC_ID_VP9;
  case MEDIA_CODEC_AV1: return AV_CODEC_ID_AV1;
  default: return AV_CODEC_ID_H264;
  }
}

/* Nearest even integer, as FFmpeg's scale filter rounds a -2 dimension. */
static int even_round(double x) { return 2 * (int)lround(x / 2); }

int media_fit_size(const media_profile_t *p, const hw_limits_t *lim, int in_w, int in_h, int *out_w,
                   int *out_h) {
  if (in_w <= 0 || in_h <= 0) return LP_EINVAL;
  int req_long = LP_MAX(p->width, p->height);
  int max_long = LP_MAX(lim->max_w, lim->max_h);
  /* A size of 0x0 keeps the source size. A box larger than the encoder can make cannot be
   * honoured, and shrinking it silently would deliver (and bill) something not asked for. */
  if (req_long == 0)
    req_long = LP_MAX(in_w, in_h);
  else if (req_long > max_long)
    return LP_ERANGE;
  bool landscape = in_w >= in_h;
  int src_long = landscape ? in_w : in_h, src_short = landscape ? in_h : in_w;
  int min_short = landscape ? lim->min_h : lim->min_w;
  int min_long = landscape ? lim->min_w : lim->min_h;
  int max_l = landscape ? lim->max_w : lim->max_h;
  int max_s = landscape ? lim->max_h : lim->max_w;
  int lo = even_round(req_long);
  int sh = even_round((double)req_long * src_short / src_long);
  if (sh < min_short) {
    /* Pin the short side to the minimum and derive the long side from the source aspect. */
    sh = min_short + (min_short & 1);
    lo = even_round((double)sh * src_long / src_short);
  }
  if (lo < min_long) lo = min_long + (min_long & 1);
  if (lo > max_l || sh > max_s || lo < 2 || sh < 2) return LP_ERANGE;
  *out_w = landscape ? lo : sh;
  *out_h = landscape ? sh : lo;
  return 0;
}

int media_profile_fit(const media_profile_t *p, int in_w, int in_h, const char *backend, int *out_w,
                      int *out_h) {
  const hw_backend_t *be = hw_backend_find(backend);
  hw_limits_t lim;
  if (!be || be->limits(media_codec_avid(p->encoder), &lim) < 0) return LP_EUNSUPP;
  return media_fit_size(p, &lim, in_w, in_h, out_w, out_h);
}

void media_job_cost(const media_profile_t *profiles, size_t n, int src_w, int src_h, double src_fps,
                    media_cost_t *out) {
  memset(out, 0, sizeof(*out));
  if (src_fps <= 0) src_fps = 30;
  out->decode_pps = (double)src_w * src_h * src_fps;
  hw_limits_t lim = {16, 16, 8192, 8192, 2, true};
  for (size_t i = 0; i < n; i++) {
    const media_profile_t *p = &profiles[i];
    int w = p->width, h = p->height;
    if (src_w > 0 && src_h > 0) media_fit_size(p, &lim, src_w, src_h, &w, &h);
    double fps = p->fps ? (double)p->fps / (p->fps_den ? p->fps_den : 1) : src_fps;
    double pps = (double)w * h * fps;
    out->scale_pps += pps;
    out->encode_pps[(unsigned)p->encoder <= MEDIA_CODEC_AV1 ? p->encoder : 0] += pps;
    out->encode_total_pps += pps;
    out->encoders++;
  }
}

const char *media_profile_container(const media_profile_t *p, const char **ext, const char **mime) {
  /* VP8 has no MPEG-TS or MP4 mapping in FFmpeg 5.1, and VP9 and AV1 none in MPEG-TS; Matroska
   * takes them with the copied AAC audio (WebM would refuse AAC). */
  bool mkv = p->encoder == MEDIA_CODEC_VP8 || p->encoder == MEDIA_CODEC_VP9 ||
             p->encoder == MEDIA_CODEC_AV1;
  if (mkv && !(p->encoder != MEDIA_CODEC_VP8 && p->format == MEDIA_FORMAT_MP4)) {
    if (ext) *ext = "mkv";
    if (mime) *mime = "video/x-matroska";
    return "matroska";
  }
  if (p->format == MEDIA_FORMAT_MP4) {
    if (ext) *ext = "mp4";
    if (mime) *mime = "video/mp4";
    return "mp4";
  }
  if (ext) *ext = "ts";
  if (mime) *mime = "video/mp2t";
  return "mpegts";
}
