/* The x-livepeer-segment and x-livepeer-payment headers: base64 protobuf from the gateway. The
 * first byte chooses raw protobuf or base64 text, so the mutator reaches both layers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lp_rpc.pb-c.h"
#include "orch_int.h"

static void segdata(const uint8_t *p, size_t n) {
  Net__SegData *sd = net__seg_data__unpack(NULL, n, p);
  if (!sd) return;
  orch_profile_t *prof = NULL;
  size_t np = 0;
  const char *err = NULL;
  if (orch_profiles_parse(sd, &prof, &np, &err) == 0) {
    uint8_t *flat = NULL;
    size_t flen = 0;
    if (orch_seg_flatten(sd, prof, np, &flat, &flen) == 0) free(flat);
    orch_profiles_free(prof, np);
  }
  net__seg_data__free_unpacked(sd, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  if (data[0] & 1) {
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    char err[128];
    if (orch_b64_decode((const char *)p, n, &raw, &raw_len, err, sizeof err) == 0) {
      segdata(raw, raw_len);
      Net__Payment *pay = net__payment__unpack(NULL, raw_len, raw);
      if (pay) net__payment__free_unpacked(pay, NULL);
      free(raw);
    }
  } else {
    segdata(p, n);
  }
  return 0;
}
