/* go-livepeer JSON ladders (-transcodingOptions file.json) and preset lists. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/core.h"
#include "lpod/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  media_profile_t *p = NULL;
  size_t n = 0;
  char err[256];
  if (media_profiles_parse_json((const char *)data, size, &p, &n, err, sizeof err) == 0) {
    for (size_t i = 0; i < n; i++) {
      const char *why;
      int w, h;
      if (media_profile_validate(&p[i], &why) == 0)
        media_profile_fit(&p[i], 1920, 1080, "sw", &w, &h);
    }
    free(p);
  }
  char *spec = lp_strndup((const char *)data, size);
  p = NULL;
  if (spec && media_profiles_parse(spec, &p, &n, err, sizeof err) == 0) free(p);
  free(spec);
  return 0;
}
