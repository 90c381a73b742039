#include "lpod/core.h"

#include <ctype.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t lp_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t lp_now_ms(void) { return lp_now_ns() / 1000000ull; }

int lp_file_read(const char *path, size_t max, char **out, size_t *out_len) {
  *out = NULL;
  if (out_len) *out_len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? LP_ENOENT : LP_EIO;
  lp_buf_t b = LP_BUF_INIT;
  char tmp[65536];
  int rc = 0;
  for (;;) {
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n < 0) {
      if (errno == EINTR) continue;
      rc = LP_EIO;
      break;
    }
    if (n == 0) break;
    if (b.len + (size_t)n > max) {
      rc = LP_ERANGE;
      break;
    }
    if ((rc = lp_buf_append(&b, tmp, (size_t)n))) break;
  }
  close(fd);
  if (!rc) rc = lp_buf_append(&b, "", 1);
  if (rc) {
    lp_buf_free(&b);
    return rc;
  }
  size_t len;
  *out = (char *)lp_buf_steal(&b, &len);
  if (out_len) *out_len = len - 1;
  return 0;
}

int lp_file_write_atomic(const char *path, const void *data, size_t len, int mode) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
    return LP_ERANGE;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return LP_EIO;
  const uint8_t *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      close(fd);
      unlink(tmp);
      return LP_EIO;
    }
    p += n;
    left -= (size_t)n;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    unlink(tmp);
    return LP_EIO;
  }
  if (rename(tmp, path) != 0) {
    unlink(tmp);
    return LP_EIO;
  }
  return 0;
}

int lp_mkdir_p(const char *path, int mode) {
  char buf[PATH_MAX];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) return LP_EINVAL;
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) return LP_EIO;
    *p = '/';
  }
  if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) return LP_EIO;
  struct stat st;
  if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) return LP_EIO;
  return 0;
}

bool lp_consttime_eq(const void *a, size_t alen, const void *b, size_t blen) {
  const volatile uint8_t *x = a, *y = b;
  size_t n = alen > blen ? alen : blen;
  uint8_t d = (uint8_t)(alen != blen);
  for (size_t i = 0; i < n; i++) {
    uint8_t cx = i < alen ? x[i] : 0, cy = i < blen ? y[i] : 0;
    d |= (uint8_t)(cx ^ cy);
  }
  return d == 0;
}

void lp_seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

char *lp_strtrim(char *s) {
  char *p = s;
  while (*p && isspace((unsigned char)*p)) p++;
  size_t n = strlen(p);
  while (n > 0 && isspace((unsigned char)p[n - 1])) n--;
  memmove(s, p, n);
  s[n] = '\0';
  return s;
}

char *lp_strndup(const void *p, size_t n) {
  const char *nul = memchr(p, 0, n);
  size_t len = nul ? (size_t)(nul - (const char *)p) : n;
  char *out = malloc(len + 1);
  if (!out) return NULL;
  memcpy(out, p, len);
  out[len] = 0;
  return out;
}

void lp_hex_encode(const uint8_t *in, size_t n, char *out) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = d[in[i] >> 4];
    out[2 * i + 1] = d[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int lp_hex_decode(const char *in, uint8_t *out, size_t out_cap) {
  if (in[0] == '0' && (in[1] == 'x' || in[1] == 'X')) in += 2;
  size_t n = strlen(in);
  if (n % 2) return LP_EINVAL;
  if (n / 2 > out_cap) return LP_ERANGE;
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
    if (hi < 0 || lo < 0) return LP_EINVAL;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return (int)(n / 2);
}

void lp_policy_save(lp_policy_t *s) {
  struct sched_param sp = {0};
  s->saved = pthread_getschedparam(pthread_self(), &s->policy, &sp) == 0;
  s->priority = sp.sched_priority;
}

bool lp_policy_restore(const lp_policy_t *s) {
  int policy;
  struct sched_param sp;
  if (!s->saved || pthread_getschedparam(pthread_self(), &policy, &sp) != 0) return false;
  if (policy == s->policy && sp.sched_priority == s->priority) return false;
  sp.sched_priority = s->priority;
  pthread_setschedparam(pthread_self(), s->policy, &sp);
  return true;
}

bool lp_policy_normal(void) {
  int policy;
  struct sched_param sp;
  if (pthread_getschedparam(pthread_self(), &policy, &sp) != 0 || policy == SCHED_OTHER)
    return false;
  /* leaving a real-time policy needs no privilege */
  sp.sched_priority = 0;
  pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
  return true;
}

#define TRANSCODE_NICE 5

bool lp_thread_transcode_priority(void) {
  bool was_rt = lp_policy_normal();
  /* per thread on Linux: the thread id, not the process */
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), TRANSCODE_NICE) != 0)
    LOGV(LP_V_DEBUG, "could not lower a transcoding thread's priority: %s", strerror(errno));
  return was_rt;
}

void lp_malloc_release(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}
