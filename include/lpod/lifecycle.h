/* core/lifecycle: data dir and its lock, systemd notify and watchdog, signals and graceful stop.
 * Kept apart from core.h because only the node's entry points use it. */
#ifndef LPOD_LIFECYCLE_H
#define LPOD_LIFECYCLE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Sends a state string ("READY=1", "STATUS=...", "STOPPING=1", "WATCHDOG=1") to systemd's
 * $NOTIFY_SOCKET. Returns 0 when sent, 1 when no socket is configured, <0 on error. */
int lp_notify(const char *state);

/* Creates the data dir (mode 0700 for what it creates; an existing dir is tightened to 0700)
 * and takes an exclusive lock on <dir>/lpod.lock so two nodes can't share it. On success
 * *lock_fd holds the lock until closed. On failure err names the reason (e.g. the pid that
 * holds the lock). */
int lp_datadir_open(const char *dir, int *lock_fd, char *err, size_t errlen);

typedef struct lp_lifecycle lp_lifecycle_t;

/* Asked once, on the first SIGINT/SIGTERM: stop accepting work and call lp_lifecycle_drained()
 * when in-flight work is done. */
typedef void (*lp_lifecycle_stop_fn)(lp_lifecycle_t *lc, void *arg);
/* Called on the loop when it is time to close everything (drained or grace expired). */
typedef void (*lp_lifecycle_close_fn)(lp_lifecycle_t *lc, void *arg);

lp_lifecycle_t *lp_lifecycle_new(uv_loop_t *loop, int64_t grace_ms, lp_lifecycle_stop_fn stop,
                                 lp_lifecycle_close_fn close, void *arg);
/* Listeners are bound: READY=1 with a status line, and the watchdog starts feeding. */
void lp_lifecycle_ready(lp_lifecycle_t *lc, const char *status);
void lp_lifecycle_status(lp_lifecycle_t *lc, const char *status);
/* The node has no in-flight work left. */
void lp_lifecycle_drained(lp_lifecycle_t *lc);
/* Begins the graceful stop as a signal would (for tests and the admin API). */
void lp_lifecycle_request_stop(lp_lifecycle_t *lc);
int lp_lifecycle_stopping(const lp_lifecycle_t *lc);
/* Closes its handles; free after the loop has run them down. */
void lp_lifecycle_close(lp_lifecycle_t *lc);
void lp_lifecycle_free(lp_lifecycle_t *lc);

#endif
