/* Capabilities: the bit set we advertise and go-livepeer's compatibility rule (spec §7). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "orch_int.h"

void orch_caps_set(orch_caps_t *c, int cap) {
  if (cap < 0 || cap >= 64 * ORCH_CAP_WORDS) return;
  c->bits[cap / 64] |= (uint64_t)1 << (cap % 64);
}

size_t orch_caps_words(const orch_caps_t *c) {
  size_t words = ORCH_CAP_WORDS;
  while (words > 1 && !c->bits[words - 1]) words--;
  return words;
}

bool orch_caps_has(const orch_caps_t *c, int cap) {
  if (cap < 0 || cap >= 64 * ORCH_CAP_WORDS) return false;
  return (c->bits[cap / 64] >> (cap % 64)) & 1;
}

/* Masterminds/semver as go-livepeer uses it: optional v, one to three numeric parts, then an
 * optional -pre-release and +build that are ignored here. */
static int semver_parse(const char *s, long long v[3]) {
  v[0] = v[1] = v[2] = 0;
  if (*s == 'v' || *s == 'V') s++;
  for (int i = 0; i < 3; i++) {
    if (!isdigit((unsigned char)*s)) return LP_EINVAL;
    char *end;
    v[i] = strtoll(s, &end, 10);
    s = end;
    if (*s == '.' && i < 2) {
      s++;
      continue;
    }
    break;
  }
  if (*s && *s != '-' && *s != '+') return LP_EINVAL;
  return 0;
}

int orch_semver_cmp(const char *a, const char *b, int *out) {
  long long va[3], vb[3];
  if (!a || !b || semver_parse(a, va) || semver_parse(b, vb)) return LP_EINVAL;
  *out = 0;
  for (int i = 0; i < 3 && *out == 0; i++) *out = va[i] < vb[i] ? -1 : va[i] > vb[i] ? 1 : 0;
  return 0;
}

bool orch_caps_job_compatible(const Net__Capabilities *job, const orch_caps_t *ours) {
  if (!job) return true;
  /* 1. version: the job's minVersion against ours. */
  if (job->constraints && job->constraints->minversion && job->constraints->minversion[0]) {
    if (!ours->version[0] || strcmp(ours->version, "undefined") == 0) return false;
    int cmp;
    if (orch_semver_cmp(ours->version, job->constraints->minversion, &cmp) || cmp < 0) return false;
  }
  /* 2. our mandatories (none) are trivially in the job's set. 3. per-capability model
   * constraints apply only to capabilities we constrain, and we constrain none. */
  /* 4. the job's bits must be a subset of ours, word by word, and a job with more words than we
   * advertise fails as it does against go-livepeer. */
  if (job->n_bitstring > orch_caps_words(ours)) return false;
  for (size_t i = 0; i < job->n_bitstring; i++)
    if ((job->bitstring[i] & ours->bits[i]) != job->bitstring[i]) return false;
  return true;
}

void orch_caps_to_wire(const orch_caps_t *c, Net__Capabilities *out, orch_caps_wire_t *w) {
  net__capabilities__init(out);
  memcpy(w->bits, c->bits, sizeof w->bits);
  out->n_bitstring = orch_caps_words(c);
  out->bitstring = w->bits;
  /* go-livepeer lists a capacity of 1 for each capability it has; gateways read it only as
   * information, so we say the same. */
  size_t n = 0;
  for (int cap = 0; cap < 64 * ORCH_CAP_WORDS; cap++) {
    if (!orch_caps_has(c, cap)) continue;
    net__capabilities__capacities_entry__init(&w->entries[n]);
    w->entries[n].key = (uint32_t)cap;
    w->entries[n].value = 1;
    w->entry_ptrs[n] = &w->entries[n];
    n++;
  }
  out->n_capacities = n;
  out->capacities = w->entry_ptrs;
  out->version = (char *)c->version;
}
