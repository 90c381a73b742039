/* go's r.FormValue: query string first, then an application/x-www-form-urlencoded or
 * multipart/form-data body (what `curl -d` and `curl -F` send). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/admin.h"
#include "lpod/core.h"

static int hexv(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static char *url_decode(const char *s, size_t n) {
  char *out = malloc(n + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '+')
      out[o++] = ' ';
    else if (s[i] == '%' && i + 2 < n && hexv((unsigned char)s[i + 1]) >= 0 &&
             hexv((unsigned char)s[i + 2]) >= 0) {
      out[o++] = (char)(hexv((unsigned char)s[i + 1]) << 4 | hexv((unsigned char)s[i + 2]));
      i += 2;
    } else
      out[o++] = s[i];
  }
  out[o] = '\0';
  return out;
}

static char *urlencoded_value(const char *s, size_t n, const char *key) {
  size_t kl = strlen(key);
  size_t i = 0;
  while (i < n) {
    size_t end = i;
    while (end < n && s[end] != '&' && s[end] != ';') end++;
    const char *eq = memchr(s + i, '=', end - i);
    size_t klen = eq ? (size_t)(eq - (s + i)) : end - i;
    char *k = url_decode(s + i, klen);
    int match = k && strlen(k) == kl && memcmp(k, key, kl) == 0;
    free(k);
    if (match) return eq ? url_decode(eq + 1, (size_t)(s + end - (eq + 1))) : strdup("");
    i = end + 1;
  }
  return NULL;
}

static const char *memmem_str(const uint8_t *h, size_t hl, const char *needle) {
  return memmem(h, hl, needle, strlen(needle));
}

static char *multipart_value(const char *ct, const uint8_t *body, size_t len, const char *key) {
  const char *b = strstr(ct, "boundary=");
  if (!b) return NULL;
  b += 9;
  char boundary[200];
  size_t bl = 0;
  if (*b == '"') b++;
  while (*b && *b != '"' && *b != ';' && bl + 3 < sizeof boundary - 1) boundary[bl++] = *b++;
  boundary[bl] = '\0';
  if (bl == 0) return NULL;
  char delim[210];
  snprintf(delim, sizeof delim, "--%s", boundary);
  const uint8_t *p = body, *end = body + len;
  for (;;) {
    const char *d = memmem_str(p, (size_t)(end - p), delim);
    if (!d) return NULL;
    const uint8_t *part = (const uint8_t *)d + strlen(delim);
    if (end - part >= 2 && part[0] == '-' && part[1] == '-') return NULL; /* closing */
    const char *hend = memmem_str(part, (size_t)(end - part), "\r\n\r\n");
    if (!hend) return NULL;
    const uint8_t *val = (const uint8_t *)hend + 4;
    const char *next = memmem_str(val, (size_t)(end - val), delim);
    if (!next) return NULL;
    size_t vlen = (size_t)((const uint8_t *)next - val);
    if (vlen >= 2 && val[vlen - 2] == '\r' && val[vlen - 1] == '\n') vlen -= 2;
    /* Look for name="key" in this part's headers. */
    char want[300];
    snprintf(want, sizeof want, "name=\"%s\"", key);
    const char *nm = memmem_str(part, (size_t)((const uint8_t *)hend - part), want);
    if (nm) return lp_strndup((const char *)val, vlen);
    p = (const uint8_t *)next;
  }
}

char *admin_form_value(const char *query, const char *content_type, const uint8_t *body, size_t len,
                       const char *key) {
  if (query && *query) {
    char *v = urlencoded_value(query, strlen(query), key);
    if (v) return v;
  }
  if (!body || !len || !content_type) return NULL;
  if (strncasecmp(content_type, "application/x-www-form-urlencoded", 33) == 0)
    return urlencoded_value((const char *)body, len, key);
  if (strncasecmp(content_type, "multipart/form-data", 19) == 0)
    return multipart_value(content_type, body, len, key);
  return NULL;
}
