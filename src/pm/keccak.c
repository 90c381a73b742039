/* Keccak-256 as Ethereum uses it: Keccak-f[1600], rate 136 bytes, domain padding 0x01.
 * OpenSSL 3.0 only has NIST SHA3 (padding 0x06), which gives different digests. */
#include "lpod/pm.h"
#include "pm_internal.h"

#include <string.h>

#define KECCAK_RATE 136

static const uint64_t round_consts[24] = {
    0x0000000000000001ull, 0x0000000000008082ull, 0x800000000000808aull, 0x8000000080008000ull,
    0x000000000000808bull, 0x0000000080000001ull, 0x8000000080008081ull, 0x8000000000008009ull,
    0x000000000000008aull, 0x0000000000000088ull, 0x0000000080008009ull, 0x000000008000000aull,
    0x000000008000808bull, 0x800000000000008bull, 0x8000000000008089ull, 0x8000000000008003ull,
    0x8000000000008002ull, 0x8000000000000080ull, 0x000000000000800aull, 0x800000008000000aull,
    0x8000000080008081ull, 0x8000000000008080ull, 0x0000000080000001ull, 0x8000000080008008ull,
};

/* rho rotation of lane x + 5y, and where pi moves it: lane (x, y) goes to (y, 2x + 3y). */
static const unsigned rho[25] = {0,  1,  62, 28, 27, 36, 44, 6,  55, 20, 3,  10, 43,
                                 25, 39, 41, 45, 15, 21, 8,  18, 2,  61, 56, 14};
static const unsigned pi_dest[25] = {0,  10, 20, 5, 15, 16, 1,  11, 21, 6, 7,  17, 2,
                                     12, 22, 23, 8, 18, 3,  13, 14, 24, 9, 19, 4};

static inline uint64_t rotl64(uint64_t x, unsigned n) { return n ? (x << n) | (x >> (64 - n)) : x; }

/* Written as fixed-count loops over constant tables so the compiler unrolls them fully and the
 * state lives in registers; this is the hot path of ticket validation after the signature, and
 * of the segment body's hash. Always inlined, so each caller below gets it compiled for its own
 * instruction set. */
static inline __attribute__((always_inline)) void keccak_rounds(uint64_t a[25]) {
  uint64_t b[25], c[5], d[5];
  for (int round = 0; round < 24; round++) {
#pragma GCC unroll 5
    for (int x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
#pragma GCC unroll 5
    for (int x = 0; x < 5; x++) d[x] = c[(x + 4) % 5] ^ rotl64(c[(x + 1) % 5], 1);
#pragma GCC unroll 25
    for (int i = 0; i < 25; i++) b[pi_dest[i]] = rotl64(a[i] ^ d[i % 5], rho[i]);
#pragma GCC unroll 25
    for (int i = 0; i < 25; i++) {
      int x = i % 5, y = i - x;
      a[i] = b[i] ^ (~b[y + (x + 1) % 5] & b[y + (x + 2) % 5]);
    }
    a[0] ^= round_consts[round];
  }
}

static void keccak_f1600(uint64_t a[25]) { keccak_rounds(a); }

static inline __attribute__((always_inline)) uint64_t load_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Whole blocks straight from the input: 17 lanes in, one permutation. */
static inline __attribute__((always_inline)) void absorb_blocks(uint64_t a[25], const uint8_t *p,
                                                                size_t nblocks) {
  for (size_t n = 0; n < nblocks; n++, p += KECCAK_RATE) {
#pragma GCC unroll 17
    for (int i = 0; i < KECCAK_RATE / 8; i++) a[i] ^= load_le64(p + 8 * i);
    keccak_rounds(a);
  }
}

static void absorb_generic(uint64_t a[25], const uint8_t *p, size_t nblocks) {
  absorb_blocks(a, p, nblocks);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same code for CPUs with BMI1 and BMI2 (andn for chi, rorx for the rotations; Intel since
 * 2013, AMD since 2015): about a fifth faster, chosen at run time so the build stays portable. */
__attribute__((target("bmi,bmi2"))) static void absorb_bmi2(uint64_t a[25], const uint8_t *p,
                                                            size_t nblocks) {
  absorb_blocks(a, p, nblocks);
}

static bool generic_only;

void pm_keccak_generic_only(bool on) { generic_only = on; }

static void absorb(uint64_t a[25], const uint8_t *p, size_t nblocks) {
  if (!generic_only && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2"))
    absorb_bmi2(a, p, nblocks);
  else
    absorb_generic(a, p, nblocks);
}
#else
void pm_keccak_generic_only(bool on) { (void)on; }

static void absorb(uint64_t a[25], const uint8_t *p, size_t nblocks) {
  absorb_generic(a, p, nblocks);
}
#endif

/* Lanes are little-endian; XOR byte by byte so the code does not depend on host order. */
static inline void xor_byte(uint64_t st[25], size_t pos, uint8_t b) {
  st[pos / 8] ^= (uint64_t)b << (8 * (pos % 8));
}

void pm_keccak_init(pm_keccak_t *k) { memset(k, 0, sizeof *k); }

void pm_keccak_update(pm_keccak_t *k, const void *data, size_t len) {
  const uint8_t *p = data;
  /* Whole blocks go straight through absorb; the rest (a block begun by an earlier call, the
   * tail) a lane at a time where lanes are aligned, else a byte at a time. */
  while (len > 0) {
    if (k->pos == 0 && len >= KECCAK_RATE) {
      size_t nblocks = len / KECCAK_RATE;
      absorb(k->st, p, nblocks);
      p += nblocks * KECCAK_RATE;
      len -= nblocks * KECCAK_RATE;
      continue;
    }
    if (k->pos % 8 == 0 && len >= 8) {
      k->st[k->pos / 8] ^= load_le64(p);
      k->pos += 8;
      p += 8;
      len -= 8;
    } else {
      xor_byte(k->st, k->pos++, *p++);
      len--;
    }
    if (k->pos == KECCAK_RATE) {
      keccak_f1600(k->st);
      k->pos = 0;
    }
  }
}

void pm_keccak_final(pm_keccak_t *k, uint8_t out[PM_HASH_LEN]) {
  xor_byte(k->st, k->pos, 0x01);
  xor_byte(k->st, KECCAK_RATE - 1, 0x80);
  keccak_f1600(k->st);
  for (size_t i = 0; i < PM_HASH_LEN; i++) out[i] = (uint8_t)(k->st[i / 8] >> (8 * (i % 8)));
}

void pm_keccak256(const void *data, size_t len, uint8_t out[PM_HASH_LEN]) {
  pm_keccak_t k;
  pm_keccak_init(&k);
  pm_keccak_update(&k, data, len);
  pm_keccak_final(&k, out);
}
