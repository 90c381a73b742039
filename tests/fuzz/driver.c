/* Replays seed files and deterministic mutations of them through a libFuzzer target, so the
 * targets run in every test build (gcc included) with the sanitizers watching.
 * usage: fuzz_<name> ITERATIONS SEED_FILE... */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { /* xorshift64*: fixed sequence, so failures reproduce */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ull;
}

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
  if (p && n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n) {
    free(p);
    p = NULL;
  }
  fclose(f);
  *len = n > 0 ? (size_t)n : 0;
  return p;
}

/* One of: flip bits, overwrite a run, insert bytes, delete a run, truncate, duplicate a run. */
static uint8_t *mutate(const uint8_t *in, size_t len, size_t *out_len) {
  size_t cap = len * 2 + 64;
  uint8_t *o = malloc(cap);
  memcpy(o, in, len);
  size_t n = len;
  int rounds = 1 + (int)(next() % 8);
  for (int r = 0; r < rounds; r++) {
    size_t pos = n ? next() % n : 0;
    size_t run = 1 + next() % (n / 16 + 4);
    switch (next() % 6) {
    case 0:
      if (n) o[pos] ^= (uint8_t)(1u << (next() % 8));
      break;
    case 1:
      for (size_t i = pos; i < n && i < pos + run; i++) o[i] = (uint8_t)next();
      break;
    case 2:
      if (n + run <= cap) {
        memmove(o + pos + run, o + pos, n - pos);
        for (size_t i = 0; i < run; i++) o[pos + i] = (uint8_t)next();
        n += run;
      }
      break;
    case 3:
      if (pos + run <= n) {
        memmove(o + pos, o + pos + run, n - pos - run);
        n -= run;
      }
      break;
    case 4: n = pos; break;
    case 5:
      if (n + run <= cap && pos + run <= n) {
        uint8_t *dup = malloc(run);
        memcpy(dup, o + pos, run);
        size_t at = next() % (n + 1);
        memmove(o + at + run, o + at, n - at);
        memcpy(o + at, dup, run);
        free(dup);
        n += run;
      }
      break;
    }
  }
  *out_len = n;
  return o;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s ITERATIONS SEED_FILE...\n", argv[0]);
    return 2;
  }
  long iters = atol(argv[1]);
  int nseeds = argc - 2;
  uint8_t **seeds = calloc((size_t)nseeds, sizeof *seeds);
  size_t *lens = calloc((size_t)nseeds, sizeof *lens);
  for (int i = 0; i < nseeds; i++) {
    seeds[i] = read_file(argv[2 + i], &lens[i]);
    if (!seeds[i]) {
      fprintf(stderr, "cannot read seed %s\n", argv[2 + i]);
      return 2;
    }
    LLVMFuzzerTestOneInput(seeds[i], lens[i]);
  }
  static const uint8_t empty[1];
  LLVMFuzzerTestOneInput(empty, 0);
  for (long k = 0; k < iters; k++) {
    int s = (int)(next() % (uint64_t)nseeds);
    size_t n;
    uint8_t *m = mutate(seeds[s], lens[s], &n);
    LLVMFuzzerTestOneInput(m, n);
    free(m);
  }
  for (int i = 0; i < nseeds; i++) free(seeds[i]);
  free(seeds);
  free(lens);
  printf("fuzz: %d seeds and %ld mutations ran without a crash\n", nseeds, iters);
  return 0;
}
