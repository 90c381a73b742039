/* NETINT's monitor report (ni_rsrc_mon -o json), which the node reads from another program: any
 * text parses or is refused, and a parsed card's loads are shares of 0 to 1. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/core.h"
#include "lpod/sched.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = lp_strndup((const char *)data, size);
  if (!text) return 0;
  for (int card = -1; card < 3; card++) {
    lp_sched_sample_t s;
    int rc = lp_sched_netint_parse(text, card, &s);
    if (rc != 0 && rc != LP_EINVAL && rc != LP_ENOENT) abort();
    if (rc != 0) continue;
    if (s.util_mask & ~7u) abort();
    for (int e = 0; e < 3; e++)
      if ((s.util_mask & (1u << e)) && !(s.util[e] >= 0 && s.util[e] <= 1)) abort();
    if (s.enc_sessions < 0 || s.dec_sessions < 0) abort();
  }
  free(text);
  return 0;
}
