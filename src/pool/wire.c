/* What the O⇄T protocol puts on the wire besides protobuf: the Content-Type of result uploads,
 * their multipart body, decimal headers, profile selection and the capability rule. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pool_int.h"

/* RFC 2045 token characters. */
static bool is_tchar(int c) { return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c); }

static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\t') p++;
  return p;
}

int pool_mime_parse(const char *ct, char *type, size_t type_len, char *boundary,
                    size_t boundary_len) {
  if (!ct || type_len < 2 || boundary_len < 1) return LP_EINVAL;
  boundary[0] = 0;
  const char *p = skip_ws(ct);
  size_t n = 0;
  bool slash = false;
  for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++) {
    int c = (unsigned char)*p;
    if (c == '/') {
      if (slash || n == 0) return LP_EINVAL;
      slash = true;
    } else if (!is_tchar(c)) {
      return LP_EINVAL;
    }
    if (n + 1 >= type_len) return LP_EINVAL;
    type[n++] = (char)tolower(c);
  }
  type[n] = 0;
  if (!slash || type[n - 1] == '/') return LP_EINVAL;
  p = skip_ws(p);
  while (*p) {
    if (*p != ';') return LP_EINVAL;
    p = skip_ws(p + 1);
    if (!*p) break; /* a trailing ';' is tolerated, as Go does */
    char name[64];
    size_t nl = 0;
    while (is_tchar((unsigned char)*p)) {
      if (nl + 1 >= sizeof name) return LP_EINVAL;
      name[nl++] = (char)tolower((unsigned char)*p++);
    }
    name[nl] = 0;
    if (nl == 0 || *p != '=') return LP_EINVAL;
    p++;
    char val[POOL_BOUNDARY_MAX + 2];
    size_t vl = 0;
    bool too_long = false;
    if (*p == '"') {
      p++;
      for (; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) p++;
        if (vl + 1 < sizeof val)
          val[vl++] = *p;
        else
          too_long = true;
      }
      if (*p != '"') return LP_EINVAL;
      p++;
    } else {
      for (; is_tchar((unsigned char)*p); p++) {
        if (vl + 1 < sizeof val)
          val[vl++] = *p;
        else
          too_long = true;
      }
      if (vl == 0) return LP_EINVAL;
    }
    val[vl] = 0;
    p = skip_ws(p);
    if (strcmp(name, "boundary") == 0) {
      if (too_long || vl == 0 || vl + 1 > boundary_len) return LP_EINVAL;
      memcpy(boundary, val, vl + 1);
    }
  }
  return 0;
}

int pool_parse_i64(const char *s, int64_t *out) {
  if (!s || !*s) return LP_EINVAL;
  const char *p = s;
  if (*p == '+' || *p == '-') p++;
  if (!*p) return LP_EINVAL;
  for (const char *q = p; *q; q++)
    if (!isdigit((unsigned char)*q)) return LP_EINVAL;
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return LP_EINVAL;
  *out = (int64_t)v;
  return 0;
}

/* ---- multipart ---------------------------------------------------------------------------- */

/* Position just past "--boundary" when it starts at p, else NULL. */
static const uint8_t *match_delim(const uint8_t *p, const uint8_t *end, const char *b, size_t bl) {
  if ((size_t)(end - p) < bl + 2 || p[0] != '-' || p[1] != '-' || memcmp(p + 2, b, bl) != 0)
    return NULL;
  const uint8_t *q = p + 2 + bl;
  /* "--bnd" followed by anything else than the end marker or line end belongs to the body. */
  if (q < end && *q != '-' && *q != '\r' && *q != '\n' && *q != ' ' && *q != '\t') return NULL;
  return q;
}

/* The next "\n--boundary" at or after p; *body_end gets where the part body stops (before the
 * CR of a CRLF). */
static const uint8_t *find_delim(const uint8_t *p, const uint8_t *end, const char *b, size_t bl,
                                 const uint8_t **body_end) {
  while (p < end) {
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return NULL;
    const uint8_t *q = match_delim(nl + 1, end, b, bl);
    if (q) {
      *body_end = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
      return q;
    }
    p = nl + 1;
  }
  return NULL;
}

static void set_err(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
}

/* One header line's value into dst (truncated copies are flagged by a leading '!', which no
 * valid value has, so a too long Pixels value fails to parse). */
static void copy_value(char *dst, size_t cap, const uint8_t *v, size_t vl) {
  while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
  while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
  if (vl + 1 > cap) {
    snprintf(dst, cap, "!");
    return;
  }
  memcpy(dst, v, vl);
  dst[vl] = 0;
}

int pool_multipart_parse(const uint8_t *body, size_t len, const char *boundary, size_t max_part,
                         size_t max_parts, pool_part_fn fn, void *arg, char *err, size_t errlen) {
  size_t bl = boundary ? strlen(boundary) : 0;
  if (bl == 0 || bl > POOL_BOUNDARY_MAX) {
    set_err(err, errlen, "multipart: boundary is empty or too long");
    return LP_EPROTO;
  }
  const uint8_t *end = body + len, *p = NULL;
  /* The first delimiter may open the body or follow a preamble line. */
  p = match_delim(body, end, boundary, bl);
  if (!p) {
    const uint8_t *unused;
    p = find_delim(body, end, boundary, bl, &unused);
  }
  if (!p) {
    set_err(err, errlen, "multipart: NextPart: EOF");
    return LP_EPROTO;
  }
  size_t parts = 0;
  for (;;) {
    if (end - p >= 2 && p[0] == '-' && p[1] == '-') return 0; /* close delimiter */
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if (p < end && *p == '\r') p++;
    if (p >= end || *p != '\n') {
      set_err(err, errlen, "multipart: NextPart: EOF");
      return LP_EPROTO;
    }
    p++;
    if (++parts > max_parts) {
      set_err(err, errlen, "multipart: too many parts");
      return LP_ERANGE;
    }
    char ctype[128] = "", pixels[32];
    bool has_pixels = false;
    /* Header lines up to the empty line. */
    size_t hdr_bytes = 0;
    for (;;) {
      const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
      if (!nl) {
        set_err(err, errlen, "multipart: malformed MIME header: unexpected EOF");
        return LP_EPROTO;
      }
      const uint8_t *le = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
      hdr_bytes += (size_t)(nl - p) + 1;
      if (hdr_bytes > 16384) {
        set_err(err, errlen, "multipart: part header too large");
        return LP_EPROTO;
      }
      if (le == p) {
        p = nl + 1;
        break;
      }
      const uint8_t *colon = memchr(p, ':', (size_t)(le - p));
      if (!colon || colon == p) {
        set_err(err, errlen, "multipart: malformed MIME header line");
        return LP_EPROTO;
      }
      size_t nlen = (size_t)(colon - p);
      if (nlen == 12 && strncasecmp((const char *)p, "content-type", 12) == 0) {
        copy_value(ctype, sizeof ctype, colon + 1, (size_t)(le - colon - 1));
      } else if (nlen == 6 && strncasecmp((const char *)p, "pixels", 6) == 0 && !has_pixels) {
        copy_value(pixels, sizeof pixels, colon + 1, (size_t)(le - colon - 1));
        has_pixels = true;
      }
      p = nl + 1;
    }
    const uint8_t *body_end = NULL;
    const uint8_t *next = find_delim(p, end, boundary, bl, &body_end);
    if (!next) {
      /* A body that ends right at the delimiter without the newline before it. */
      const uint8_t *q = match_delim(p, end, boundary, bl);
      if (!q) {
        set_err(err, errlen, "multipart: NextPart: unexpected EOF");
        return LP_EPROTO;
      }
      body_end = p;
      next = q;
    }
    size_t plen = (size_t)(body_end - p);
    if (plen > max_part) {
      set_err(err, errlen, "multipart: part over the size limit");
      return LP_ERANGE;
    }
    pool_part_t part = {ctype, has_pixels ? pixels : NULL, p, plen};
    int rc = fn(&part, arg);
    if (rc) return rc;
    p = next;
  }
}

int pool_multipart_add(lp_buf_t *out, const char *boundary, const char *content_type,
                       int64_t pixels, const uint8_t *data, size_t len) {
  int rc = lp_buf_appendf(out, "%s--%s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n",
                          out->len ? "\r\n" : "", boundary, content_type, len);
  if (!rc && pixels >= 0) rc = lp_buf_appendf(out, "Pixels: %" PRId64 "\r\n", pixels);
  if (!rc) rc = lp_buf_append(out, "\r\n", 2);
  if (!rc && len) rc = lp_buf_append(out, data, len);
  return rc;
}

int pool_multipart_close(lp_buf_t *out, const char *boundary) {
  return lp_buf_appendf(out, "%s--%s--\r\n", out->len ? "\r\n" : "", boundary);
}

int pool_boundary_new(char out[21]) {
  uint8_t r[10];
  if (RAND_bytes(r, sizeof r) != 1) return LP_EIO;
  lp_hex_encode(r, sizeof r, out);
  return 0;
}

/* ---- profiles and capabilities --------------------------------------------------------------- */

Net__VideoProfile **pool_segdata_profiles(const Net__SegData *sd, size_t *n) {
  if (sd->n_fullprofiles3) {
    *n = sd->n_fullprofiles3;
    return sd->fullprofiles3;
  }
  if (sd->n_fullprofiles2) {
    *n = sd->n_fullprofiles2;
    return sd->fullprofiles2;
  }
  *n = sd->n_fullprofiles;
  return sd->fullprofiles;
}

int pool_profile_from_wire(const Net__VideoProfile *vp, media_profile_t *out, const char **why) {
  memset(out, 0, sizeof *out);
  if ((int)vp->format < 0 || vp->format > 1) {
    *why = "unrecognized profile output format";
    return LP_EINVAL;
  }
  if ((int)vp->profile < 0 || vp->profile > 4) {
    *why = "unrecognized encoder profile";
    return LP_EINVAL;
  }
  if ((int)vp->encoder < 0 || vp->encoder > 4) { /* 4: AV1, lpod's extension */
    *why = "unrecognized video codec";
    return LP_EINVAL;
  }
  if (vp->name && vp->name[0])
    snprintf(out->name, sizeof out->name, "%s", vp->name);
  else
    snprintf(out->name, sizeof out->name, "net_%dx%d_%d", vp->width, vp->height, vp->bitrate);
  out->width = vp->width;
  out->height = vp->height;
  out->bitrate = vp->bitrate;
  out->fps = vp->fps;
  out->fps_den = vp->fpsden;
  out->format = (media_format_t)vp->format;
  out->profile = (media_h264_profile_t)vp->profile;
  out->gop_ms = vp->gop;
  out->encoder = (media_codec_t)vp->encoder;
  out->color_depth = vp->colordepth;
  out->chroma_format = (media_chroma_t)vp->chromaformat;
  out->quality = vp->quality;
  return 0;
}

/* Semver as go-livepeer compares it: optional v, up to three numbers, suffixes ignored. */
static bool semver_parse(const char *s, long long v[3]) {
  v[0] = v[1] = v[2] = 0;
  if (*s == 'v' || *s == 'V') s++;
  for (int i = 0; i < 3; i++) {
    if (!isdigit((unsigned char)*s)) return false;
    char *e;
    v[i] = strtoll(s, &e, 10);
    s = e;
    if (*s == '.' && i < 2) {
      s++;
      continue;
    }
    break;
  }
  return *s == 0 || *s == '-' || *s == '+';
}

bool pool_caps_compatible(const Net__Capabilities *job, const uint64_t *bits, size_t nbits,
                          const char *version) {
  if (!job) return true;
  if (job->constraints && job->constraints->minversion && job->constraints->minversion[0]) {
    long long a[3], b[3];
    if (!version || !semver_parse(version, a) || !semver_parse(job->constraints->minversion, b))
      return false;
    for (int i = 0; i < 3; i++) {
      if (a[i] > b[i]) break;
      if (a[i] < b[i]) return false;
    }
  }
  if (job->n_bitstring > nbits) return false;
  for (size_t i = 0; i < job->n_bitstring; i++)
    if ((job->bitstring[i] & bits[i]) != job->bitstring[i]) return false;
  return true;
}

void pool_profile_to_wire(const media_profile_t *p, Net__VideoProfile *v) {
  net__video_profile__init(v);
  v->name = (char *)p->name;
  v->width = p->width;
  v->height = p->height;
  v->bitrate = p->bitrate;
  v->fps = p->fps;
  v->fpsden = p->fps_den;
  v->format = (Net__VideoProfile__Format)p->format;
  v->profile = (Net__VideoProfile__Profile)p->profile;
  v->gop = p->gop_ms;
  v->encoder = (Net__VideoProfile__VideoCodec)p->encoder;
  v->colordepth = p->color_depth;
  v->chromaformat = (Net__VideoProfile__ChromaSubsampling)p->chroma_format;
  v->quality = p->quality;
}
