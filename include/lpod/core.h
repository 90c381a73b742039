/* core: errors, logging, byte buffers and small helpers shared by every module. */
#ifndef LPOD_CORE_H
#define LPOD_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* ---- errors ------------------------------------------------------------ */
/* Functions return 0 on success or one of these negative codes. */
enum {
  LP_OK = 0,
  LP_ENOMEM = -1,     /* allocation failed */
  LP_EINVAL = -2,     /* bad argument or malformed input */
  LP_EIO = -3,        /* I/O or system call failed (errno has details) */
  LP_ENOENT = -4,     /* not found */
  LP_EEXIST = -5,     /* already exists / in use */
  LP_ERANGE = -6,     /* value out of range, too large */
  LP_EAGAIN = -7,     /* try again later (busy, would block) */
  LP_ETIMEDOUT = -8,  /* deadline passed */
  LP_EPROTO = -9,     /* peer broke the protocol */
  LP_EUNSUPP = -10,   /* not supported by this build or device */
  LP_ECANCELED = -11, /* operation cancelled (shutdown, teardown) */
  LP_EMEDIA = -12,    /* media input problem (details in the message) */
  LP_EDEVICE = -13,   /* device failure (GPU, driver) */
  LP_EPERM = -14,     /* not allowed (auth, secret) */
  LP_ECAPACITY = -15, /* no capacity left */
};
const char *lp_strerror(int err);

/* ---- logging ------------------------------------------------------------- */
/* glog's line format, as go-livepeer prints it:
 *   I1123 01:33:05.123456   12345 file.c:42] message
 * Severity I/W/E/F. Info lines at verbosity n print when n <= the level (-v, default 3). */
enum lp_log_sev { LP_LOG_INFO = 0, LP_LOG_WARNING, LP_LOG_ERROR, LP_LOG_FATAL };

/* go-livepeer's named levels (common/log.go). */
#define LP_V_DEFAULT 3
#define LP_V_SHORT 4
#define LP_V_DEBUG 5
#define LP_V_VERBOSE 6

void lp_log_set_level(int v);
int lp_log_get_level(void);
/* Redirect output (tests); fd < 0 restores stderr. */
void lp_log_set_fd(int fd);

/* Context rendered as key=value in go-livepeer's fixed order (clog). Unset fields are NULL or
 * negative and are skipped. */
typedef struct lp_logctx {
  const char *manifest_id;
  const char *session_id;
  int64_t seq_no; /* < 0: unset */
  const char *orch_session_id;
  const char *sender;
  const char *client_ip;
} lp_logctx_t;
#define LP_LOGCTX_INIT                                                                             \
  { NULL, NULL, -1, NULL, NULL, NULL }

void lp_log_write(enum lp_log_sev sev, const char *file, int line, const lp_logctx_t *ctx,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void lp_log_vwrite(enum lp_log_sev sev, const char *file, int line, const lp_logctx_t *ctx,
                   const char *fmt, va_list ap);

#define LP_LOG_ON(v) ((v) <= lp_log_get_level())
#define LOGI(...) lp_log_write(LP_LOG_INFO, __FILE__, __LINE__, NULL, __VA_ARGS__)
#define LOGW(...) lp_log_write(LP_LOG_WARNING, __FILE__, __LINE__, NULL, __VA_ARGS__)
#define LOGE(...) lp_log_write(LP_LOG_ERROR, __FILE__, __LINE__, NULL, __VA_ARGS__)
#define LOGV(v, ...)                                                                               \
  do {                                                                                             \
    if (LP_LOG_ON(v)) lp_log_write(LP_LOG_INFO, __FILE__, __LINE__, NULL, __VA_ARGS__);            \
  } while (0)
#define LOGI_C(ctx, ...) lp_log_write(LP_LOG_INFO, __FILE__, __LINE__, (ctx), __VA_ARGS__)
#define LOGW_C(ctx, ...) lp_log_write(LP_LOG_WARNING, __FILE__, __LINE__, (ctx), __VA_ARGS__)
#define LOGE_C(ctx, ...) lp_log_write(LP_LOG_ERROR, __FILE__, __LINE__, (ctx), __VA_ARGS__)
#define LOGV_C(v, ctx, ...)                                                                        \
  do {                                                                                             \
    if (LP_LOG_ON(v)) lp_log_write(LP_LOG_INFO, __FILE__, __LINE__, (ctx), __VA_ARGS__);           \
  } while (0)

/* ---- byte buffers -------------------------------------------------------------- */
typedef struct lp_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
} lp_buf_t;
#define LP_BUF_INIT                                                                                \
  { NULL, 0, 0 }

int lp_buf_reserve(lp_buf_t *b, size_t extra);
int lp_buf_append(lp_buf_t *b, const void *p, size_t n);
int lp_buf_appendf(lp_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the bytes to the caller (who frees them) and empties the buffer. */
uint8_t *lp_buf_steal(lp_buf_t *b, size_t *len);
void lp_buf_reset(lp_buf_t *b);
void lp_buf_free(lp_buf_t *b);

/* ---- helpers ----------------------------------------------------------------- */
/* Monotonic clock in nanoseconds / milliseconds. */
uint64_t lp_now_ns(void);
uint64_t lp_now_ms(void);
/* Reads a whole file (up to max bytes) into a NUL-terminated malloc'd buffer. */
int lp_file_read(const char *path, size_t max, char **out, size_t *out_len);
/* Writes a file atomically (temp file + fsync + rename) with the given mode. */
int lp_file_write_atomic(const char *path, const void *data, size_t len, int mode);
/* mkdir -p with the given mode for directories it creates. */
int lp_mkdir_p(const char *path, int mode);
/* Constant-time comparison; returns true when equal (lengths included). */
bool lp_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);
/* Formats a message into a caller's (err, errlen) buffer; does nothing when err is NULL or
 * errlen 0. The usual way functions here explain a failure. */
void lp_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Trims ASCII whitespace in place; returns s. */
char *lp_strtrim(char *s);
/* strndup for buffers that need not be NUL-terminated: reads at most n bytes of p (never past
 * them, unlike the libc interceptors' view of strndup) and stops at a NUL. NULL on ENOMEM. */
char *lp_strndup(const void *p, size_t n);
/* Lowercase hex encode (no 0x); out must hold 2*n+1 bytes. */
void lp_hex_encode(const uint8_t *in, size_t n, char *out);
/* Decodes hex with optional 0x prefix; returns bytes written or a negative error. */
int lp_hex_decode(const char *in, uint8_t *out, size_t out_cap);

/* The calling thread's scheduling policy. Some codec libraries move the thread that opens them
 * to a real-time policy when the process runs as root (SVT-AV1 sets SCHED_FIFO 99): every
 * thread created from it afterwards inherits that, nice values stop meaning anything, and one
 * busy encoder thread can hold a core away from the event loop for as long as it likes. Code
 * that opens a codec saves the policy before and restores it after. */
typedef struct {
  int policy;
  int priority;
  bool saved;
} lp_policy_t;
void lp_policy_save(lp_policy_t *s);
/* Puts back what lp_policy_save saw; true when it had changed (what changed it is worth a log
 * line to the caller). */
bool lp_policy_restore(const lp_policy_t *s);
/* Makes the calling thread an ordinary time-shared one (SCHED_OTHER) if it is not; true when
 * it was not. For threads that must never run real-time, whatever created them. */
bool lp_policy_normal(void);
/* For a thread that transcodes: ordinary time-shared (lp_policy_normal) and a little nicer
 * (5) than the event loops, in this process or in the node a worker process serves. The
 * loops' work is short and latency-bound (the early 200 has a 2 s deadline at the gateway),
 * transcoding is long and throughput-bound; the codec threads it starts inherit the nice
 * value. Returns true when the thread had a real-time policy. */
bool lp_thread_transcode_priority(void);

/* Hands the heap's free memory back to the system (glibc's malloc_trim; nothing elsewhere). For
 * when a node goes idle: what its last streams used is otherwise kept for the process's life. */
void lp_malloc_release(void);

#define LP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LP_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
