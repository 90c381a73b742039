#include "lpod/core.h"

const char *lp_strerror(int err) {
  switch (err) {
  case LP_OK: return "ok";
  case LP_ENOMEM: return "out of memory";
  case LP_EINVAL: return "invalid argument";
  case LP_EIO: return "i/o error";
  case LP_ENOENT: return "not found";
  case LP_EEXIST: return "already exists";
  case LP_ERANGE: return "out of range";
  case LP_EAGAIN: return "try again";
  case LP_ETIMEDOUT: return "timed out";
  case LP_EPROTO: return "protocol error";
  case LP_EUNSUPP: return "not supported";
  case LP_ECANCELED: return "cancelled";
  case LP_EMEDIA: return "media error";
  case LP_EDEVICE: return "device error";
  case LP_EPERM: return "not permitted";
  case LP_ECAPACITY: return "no capacity";
  default: return "unknown error";
  }
}
