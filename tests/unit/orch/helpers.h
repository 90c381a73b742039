/* Shared builders for the orch unit tests: SegData headers, tokens, a core with fake parts. */
#ifndef ORCH_TEST_HELPERS_H
#define ORCH_TEST_HELPERS_H

#include "orch_int.h"

/* A core on loop with the offchain payment rules, default caps and a fixed token key. */
void th_core_init(orch_core_t *c, uv_loop_t *loop, const orch_engine_t *engine, int max_sessions,
                  uint64_t idle_ms);
void th_core_deinit(orch_core_t *c);
/* Packs sd and returns it base64 (malloc'd). */
char *th_seg_header(const Net__SegData *sd);
/* A valid token for session_id expiring at exp. */
void th_token(const orch_core_t *c, Net__AuthToken *t, uint8_t buf[ORCH_TOKEN_LEN],
              const char *session_id, int64_t exp);

#endif
