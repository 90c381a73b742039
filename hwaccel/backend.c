/* Registry of the backends built into this binary. */
#include <string.h>

#include "lpod/hwaccel.h"

extern const hw_backend_t hw_backend_sw;

/* Every backend this build has: media sessions find theirs here by the device table's name. */
static const hw_backend_t *const backends[] = {
    &hw_backend_sw,
#ifdef LPOD_HAVE_NVIDIA
    &hw_backend_nvidia,
#endif
#ifdef LPOD_HAVE_QSV
    &hw_backend_qsv,
#endif
#ifdef LPOD_HAVE_NETINT
    &hw_backend_netint,
#endif
    NULL,
};

const hw_backend_t *const *hw_backend_list(void) { return backends; }

const hw_backend_t *hw_backend_find(const char *name) {
  if (!name || !*name) name = "sw";
  for (size_t i = 0; backends[i]; i++)
    if (strcmp(backends[i]->name, name) == 0) return backends[i];
  return NULL;
}
