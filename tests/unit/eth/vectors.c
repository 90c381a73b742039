#include "vectors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/core.h"

cJSON *vectors_load(void) {
  const char *src = getenv("LPOD_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/unit/eth/vectors.json", src ? src : ".");
  char *buf = NULL;
  if (lp_file_read(path, 1 << 24, &buf, NULL)) {
    fprintf(stderr, "cannot read %s\n", path);
    return NULL;
  }
  cJSON *j = cJSON_Parse(buf);
  free(buf);
  return j;
}

uint8_t *vectors_hex(const cJSON *v, size_t *len) {
  const char *s = cJSON_GetStringValue(v);
  size_t cap = s ? strlen(s) / 2 + 1 : 1;
  uint8_t *out = malloc(cap);
  int n = s ? lp_hex_decode(s, out, cap) : -1;
  *len = n < 0 ? 0 : (size_t)n;
  return out;
}

const cJSON *vectors_find(const cJSON *arr, const char *key, const char *value) {
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, key));
    if (s && strcmp(s, value) == 0) return e;
  }
  return NULL;
}
