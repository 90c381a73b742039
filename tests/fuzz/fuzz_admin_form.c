/* Admin API form bodies: the first byte picks the content type, the rest is the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/admin.h"
#include "lpod/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const char *types[] = {"application/x-www-form-urlencoded",
                                "multipart/form-data; boundary=XyZ",
                                "multipart/form-data; boundary=\"q\"", "text/plain"};
  const char *ct = types[data[0] % 4];
  char *q = lp_strndup((const char *)data + 1, size - 1 > 64 ? 64 : size - 1);
  free(admin_form_value(q, ct, data + 1, size - 1, "loglevel"));
  free(admin_form_value("", ct, data + 1, size - 1, "maxSessions"));
  free(q);
  return 0;
}
