#include "lpod/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lp_buf_reserve(lp_buf_t *b, size_t extra) {
  if (extra > SIZE_MAX - b->len) return LP_ERANGE;
  size_t need = b->len + extra;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p) return LP_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int lp_buf_append(lp_buf_t *b, const void *p, size_t n) {
  if (n == 0) return 0;
  int rc = lp_buf_reserve(b, n);
  if (rc) return rc;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int lp_buf_appendf(lp_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return LP_EINVAL;
  int rc = lp_buf_reserve(b, (size_t)n + 1);
  if (rc) return rc;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

uint8_t *lp_buf_steal(lp_buf_t *b, size_t *len) {
  uint8_t *p = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

void lp_buf_reset(lp_buf_t *b) { b->len = 0; }

void lp_buf_free(lp_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
