/* sched telemetry: NVIDIA through NVML, loaded at run time so the node needs no NVIDIA library
 * to build or start. Only the handful of entry points used here are declared, with NVML's C ABI. */
#include "sched_int.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvml_ret_t; /* nvmlReturn_t; 0 = NVML_SUCCESS */
typedef struct nvml_dev *nvml_dev_t;
typedef struct {
  unsigned long long total, free, used;
} nvml_memory_t;
typedef struct {
  unsigned int gpu, memory;
} nvml_util_t;

static struct {
  void *lib;
  int users;
  bool failed_logged;
  nvml_ret_t (*init)(void);
  nvml_ret_t (*shutdown)(void);
  const char *(*error_string)(nvml_ret_t);
  nvml_ret_t (*handle_by_index)(unsigned int, nvml_dev_t *);
  nvml_ret_t (*enc_util)(nvml_dev_t, unsigned int *, unsigned int *);
  nvml_ret_t (*dec_util)(nvml_dev_t, unsigned int *, unsigned int *);
  nvml_ret_t (*util_rates)(nvml_dev_t, nvml_util_t *);
  nvml_ret_t (*enc_stats)(nvml_dev_t, unsigned int *, unsigned int *, unsigned int *);
  nvml_ret_t (*mem_info)(nvml_dev_t, nvml_memory_t *);
  nvml_ret_t (*uuid)(nvml_dev_t, char *, unsigned int);
  nvml_ret_t (*driver_version)(char *, unsigned int);
} nv;

static const char *nv_err(nvml_ret_t r) {
  static char buf[32];
  if (nv.error_string) return nv.error_string(r);
  snprintf(buf, sizeof buf, "NVML error %d", r);
  return buf;
}

static void nv_close(void) {
  if (nv.lib) dlclose(nv.lib);
  bool logged = nv.failed_logged;
  memset(&nv, 0, sizeof nv);
  nv.failed_logged = logged;
}

/* Loads and initialises NVML once per user; logs one line the first time it can't. */
static int nv_open(void) {
  if (nv.users > 0) {
    nv.users++;
    return 0;
  }
  const char *why = NULL;
  char msg[256];
  nv.lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!nv.lib) {
    snprintf(msg, sizeof msg, "%s", dlerror());
    why = msg;
  } else {
#define SYM(field, name) *(void **)(&nv.field) = dlsym(nv.lib, name)
    SYM(init, "nvmlInit_v2");
    SYM(shutdown, "nvmlShutdown");
    SYM(error_string, "nvmlErrorString");
    SYM(handle_by_index, "nvmlDeviceGetHandleByIndex_v2");
    SYM(enc_util, "nvmlDeviceGetEncoderUtilization");
    SYM(dec_util, "nvmlDeviceGetDecoderUtilization");
    SYM(util_rates, "nvmlDeviceGetUtilizationRates");
    SYM(enc_stats, "nvmlDeviceGetEncoderStats");
    SYM(mem_info, "nvmlDeviceGetMemoryInfo");
    SYM(uuid, "nvmlDeviceGetUUID");
    SYM(driver_version, "nvmlSystemGetDriverVersion");
#undef SYM
    nvml_ret_t r;
    if (!nv.init || !nv.shutdown || !nv.handle_by_index) {
      why = "libnvidia-ml.so.1 lacks nvmlInit_v2 or nvmlDeviceGetHandleByIndex_v2";
    } else if ((r = nv.init()) != 0) {
      snprintf(msg, sizeof msg, "nvmlInit: %s", nv_err(r));
      why = msg;
    }
  }
  if (why) {
    if (!nv.failed_logged) LOGI("capacity: NVML not available (%s); NVIDIA telemetry skipped", why);
    nv.failed_logged = true;
    nv_close();
    return LP_EUNSUPP;
  }
  nv.users = 1;
  return 0;
}

static void nv_release(void) {
  if (nv.users <= 0) return;
  if (--nv.users == 0) {
    nv.shutdown();
    nv_close();
  }
}

typedef struct nvml_src {
  lp_sched_source_t base;
  unsigned index;
  nvml_dev_t dev;
} nvml_src_t;

static int nvml_sample(lp_sched_source_t *src, uint64_t now_ms, lp_sched_sample_t *out) {
  nvml_src_t *n = (nvml_src_t *)src;
  unsigned u = 0, period = 0;
  bool any = false;
  if (nv.dec_util && nv.dec_util(n->dev, &u, &period) == 0) {
    out->util[0] = u / 100.0;
    out->util_mask |= 1u << 0;
  }
  nvml_util_t ur;
  if (nv.util_rates && nv.util_rates(n->dev, &ur) == 0) {
    out->util[1] = ur.gpu / 100.0;
    out->util_mask |= 1u << 1;
  }
  if (nv.enc_util && nv.enc_util(n->dev, &u, &period) == 0) {
    out->util[2] = u / 100.0;
    out->util_mask |= 1u << 2;
  }
  if (out->util_mask) {
    out->fields |= LP_SCHED_TEL_UTIL;
    any = true;
  }
  unsigned sessions = 0, fps = 0, latency = 0;
  if (nv.enc_stats && nv.enc_stats(n->dev, &sessions, &fps, &latency) == 0) {
    out->enc_sessions = (int)sessions;
    out->fields |= LP_SCHED_TEL_ENC_SESSIONS;
    any = true;
  }
  nvml_memory_t m;
  if (nv.mem_info && nv.mem_info(n->dev, &m) == 0) {
    out->mem_used = m.used;
    out->mem_total = m.total;
    out->fields |= LP_SCHED_TEL_MEM;
    any = true;
  }
  return any ? 0 : LP_EDEVICE;
}

static void nvml_destroy(lp_sched_source_t *src) {
  free(src);
  nv_release();
}

static const lp_sched_source_ops_t nvml_ops = {"nvml", nvml_sample, nvml_destroy};

int lp_sched_source_nvml_new(unsigned index, lp_sched_source_t **out) {
  *out = NULL;
  int rc = nv_open();
  if (rc) return rc;
  nvml_dev_t dev;
  nvml_ret_t r = nv.handle_by_index(index, &dev);
  if (r != 0) {
    LOGW("capacity: NVML has no device %u (%s); its telemetry skipped", index, nv_err(r));
    nv_release();
    return LP_ENOENT;
  }
  nvml_src_t *n = calloc(1, sizeof *n);
  if (!n) {
    nv_release();
    return LP_ENOMEM;
  }
  n->base.ops = &nvml_ops;
  n->index = index;
  n->dev = dev;
  *out = &n->base;
  return 0;
}

int lp_sched_nvml_identity(unsigned index, char *uuid, size_t uuid_len, char *driver,
                           size_t driver_len) {
  int rc = nv_open();
  if (rc) return rc;
  nvml_dev_t dev;
  char u[96] = "", d[96] = "";
  if (nv.handle_by_index(index, &dev) != 0)
    rc = LP_ENOENT;
  else if (!nv.uuid || nv.uuid(dev, u, sizeof u) != 0)
    rc = LP_EDEVICE;
  else if (!nv.driver_version || nv.driver_version(d, sizeof d) != 0)
    rc = LP_EDEVICE;
  if (!rc) {
    if (uuid && uuid_len) snprintf(uuid, uuid_len, "%s", u);
    if (driver && driver_len) snprintf(driver, driver_len, "%s", d);
  }
  nv_release();
  return rc;
}
