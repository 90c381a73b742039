/* Helpers shared by the pool tests: driving a loop until something happens, and reading a
 * rendition back. */
#ifndef LPOD_TEST_POOL_TEST_H
#define LPOD_TEST_POOL_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lpod/pool.h"

/* Runs loop until *flag is set or timeout_ms passes; returns whether the flag got set. */
bool pt_run_until(uv_loop_t *loop, volatile bool *flag, uint64_t timeout_ms);
/* Runs loop until the manager counts n live transcoders, or timeout_ms passes. */
bool pt_wait_transcoders(uv_loop_t *loop, const pool_manager_t *m, int n, uint64_t timeout_ms);
/* Video frames of a rendition, counted by libavformat after writing it to dir/rendition.ts;
 * its size in *w, *h. -1 when it does not read. */
int64_t pt_count_frames(const char *dir, const uint8_t *data, size_t len, int *w, int *h);

#endif
