/* glog-format logging. One write(2) per line so lines from worker threads never interleave. */
#include "lpod/core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_level = LP_V_DEFAULT;
static atomic_int g_fd = -1;

void lp_log_set_level(int v) { atomic_store(&g_level, v < 0 ? 0 : v); }
int lp_log_get_level(void) { return atomic_load(&g_level); }
void lp_log_set_fd(int fd) { atomic_store(&g_fd, fd); }

static size_t put_ctx(char *p, size_t cap, const lp_logctx_t *c) {
  size_t n = 0;
  int w;
#define PUT(fmt, ...)                                                                              \
  do {                                                                                             \
    w = snprintf(p + n, n < cap ? cap - n : 0, fmt, __VA_ARGS__);                                  \
    if (w > 0) n += (size_t)w;                                                                     \
  } while (0)
  if (c->manifest_id) PUT("manifestID=%s ", c->manifest_id);
  if (c->session_id) PUT("sessionID=%s ", c->session_id);
  if (c->seq_no >= 0) PUT("seqNo=%lld ", (long long)c->seq_no);
  if (c->orch_session_id) PUT("orchSessionID=%s ", c->orch_session_id);
  if (c->sender) PUT("sender=%s ", c->sender);
  if (c->client_ip) PUT("clientIP=%s ", c->client_ip);
#undef PUT
  return n < cap ? n : (cap ? cap - 1 : 0); /* snprintf left a NUL in the last byte */
}

void lp_log_vwrite(enum lp_log_sev sev, const char *file, int line, const lp_logctx_t *ctx,
                   const char *fmt, va_list ap) {
  static const char sevc[] = "IWEF";
  char buf[8192];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  localtime_r(&tv.tv_sec, &tm);
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  size_t cap = sizeof(buf) - 2; /* room for the newline */
  int w = snprintf(buf, cap, "%c%02d%02d %02d:%02d:%02d.%06ld %7ld %s:%d] ", sevc[sev & 3],
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)tv.tv_usec,
                   (long)syscall(SYS_gettid), base, line);
  size_t n = w > 0 ? (size_t)w : 0;
  if (n >= cap) n = cap - 1;
  if (ctx) n += put_ctx(buf + n, cap - n, ctx);
  w = vsnprintf(buf + n, cap - n, fmt, ap);
  if (w > 0) n += (size_t)w;
  if (n >= cap) n = cap - 1; /* truncated: drop the NUL vsnprintf put last */
  while (n > 0 && buf[n - 1] == '\n') n--;
  buf[n++] = '\n';
  int fd = atomic_load(&g_fd);
  if (fd < 0) fd = STDERR_FILENO;
  const char *p = buf;
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k <= 0) break;
    p += k;
    n -= (size_t)k;
  }
}

void lp_log_write(enum lp_log_sev sev, const char *file, int line, const lp_logctx_t *ctx,
                  const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lp_log_vwrite(sev, file, line, ctx, fmt, ap);
  va_end(ap);
}
