/* A DRM client's fdinfo text, which the node reads from /proc for every GPU file it and its
 * workers hold open: any text parses or is refused, and a parsed client's engine capacities
 * stay within what the parser believes (0, or 1 to 64). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/core.h"
#include "lpod/sched.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = lp_strndup((const char *)data, size);
  if (!text) return 0;
  lp_sched_drm_client_t c;
  int rc = lp_sched_drm_fdinfo_parse(text, &c);
  if (rc != 0 && rc != LP_ENOENT) abort();
  if (rc == 0) {
    if (c.has & ~3u) abort();
    for (int e = 0; e < 2; e++)
      if (c.capacity[e] < 0 || c.capacity[e] > 64) abort();
    if (strlen(c.pdev) >= sizeof c.pdev || strlen(c.driver) >= sizeof c.driver) abort();
  }
  free(text);
  return 0;
}
