/* A remote transcoder's /transcodeResults upload: the Content-Type header (first line of the
 * input) and the multipart body (the rest). Whatever the transcoder sends, the parser either
 * refuses it or hands out parts that lie inside the body, with headers that are strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/core.h"
#include "pool_int.h"

typedef struct {
  const uint8_t *body;
  size_t len;
  size_t parts;
} walk_t;

static int on_part(const pool_part_t *p, void *arg) {
  walk_t *w = arg;
  if (p->body < w->body || p->len > w->len || p->body + p->len > w->body + w->len) abort();
  if (!p->content_type || strlen(p->content_type) >= 128) abort();
  int64_t px;
  if (p->pixels && strlen(p->pixels) >= 32) abort();
  if (p->pixels) (void)pool_parse_i64(p->pixels, &px);
  w->parts++;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nl = memchr(data, '\n', size);
  if (!nl) return 0;
  char *ct = lp_strndup((const char *)data, (size_t)(nl - data));
  if (!ct) return 0;
  char type[128], boundary[POOL_BOUNDARY_MAX + 1];
  if (pool_mime_parse(ct, type, sizeof type, boundary, sizeof boundary) == 0) {
    if (strlen(type) >= sizeof type || strlen(boundary) > POOL_BOUNDARY_MAX) abort();
    walk_t w = {nl + 1, size - (size_t)(nl + 1 - data), 0};
    char err[128] = "";
    /* the body is copied so ASan sees a read past its end */
    uint8_t *body = malloc(w.len ? w.len : 1);
    if (body) {
      memcpy(body, w.body, w.len);
      w.body = body;
      int rc =
          pool_multipart_parse(body, w.len, boundary, 1 << 16, 12, on_part, &w, err, sizeof err);
      if (rc != 0 && rc != LP_EPROTO && rc != LP_ERANGE) abort();
      if (rc != 0 && !err[0]) abort();
      if (w.parts > 12) abort();
      free(body);
    }
  }
  free(ct);
  return 0;
}
