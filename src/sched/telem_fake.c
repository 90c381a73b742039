/* sched telemetry: a fake source that reports whatever a test sets. Built into lpod_sched_fake
 * only, so no node can run on made-up numbers. */
#include "sched_int.h"

#include <stdlib.h>

typedef struct fake_src {
  lp_sched_source_t base;
  lp_sched_sample_t s;
  int fail;
} fake_src_t;

static int fake_sample(lp_sched_source_t *src, uint64_t now_ms, lp_sched_sample_t *out) {
  fake_src_t *f = (fake_src_t *)src;
  if (f->fail) return f->fail;
  *out = f->s;
  return 0;
}

static void fake_destroy(lp_sched_source_t *src) { free(src); }

static const lp_sched_source_ops_t fake_ops = {"fake", fake_sample, fake_destroy};

int lp_sched_fake_source_new(lp_sched_source_t **out) {
  fake_src_t *f = calloc(1, sizeof *f);
  if (!f) return LP_ENOMEM;
  f->base.ops = &fake_ops;
  *out = &f->base;
  return 0;
}

void lp_sched_fake_source_set(lp_sched_source_t *src, const lp_sched_sample_t *s) {
  if (src && src->ops == &fake_ops) ((fake_src_t *)src)->s = *s;
}

void lp_sched_fake_source_fail(lp_sched_source_t *src, int err) {
  if (src && src->ops == &fake_ops) ((fake_src_t *)src)->fail = err;
}
