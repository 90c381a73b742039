/* pm internals shared between its source files. */
#ifndef LPOD_PM_INTERNAL_H
#define LPOD_PM_INTERNAL_H

#include "lpod/pm.h"

#include <openssl/bn.h>

BIGNUM *pm_bn_from_u256(const pm_u256_t *v);
int pm_bn_to_u256(const BIGNUM *bn, pm_u256_t *out);
/* Tests: true makes Keccak take the portable code even where the CPU has BMI2. */
void pm_keccak_generic_only(bool on);
/* 2^256 - 1 */
BIGNUM *pm_bn_max_win_prob(void);

/* An exact fraction num/den, den > 0; not necessarily reduced (see rat.c). */
typedef struct pm_rat {
  BIGNUM *num;
  BIGNUM *den;
} pm_rat_t;

int pm_rat_init(pm_rat_t *r);
void pm_rat_deinit(pm_rat_t *r);
/* r = faceValue * winProb / (2^256 - 1) */
int pm_rat_set_ev(pm_rat_t *r, const pm_u256_t *face_value, const pm_u256_t *win_prob);
/* r += a */
int pm_rat_add(pm_rat_t *r, const pm_rat_t *a, BN_CTX *ctx);
/* r -= price * pixels */
int pm_rat_sub_price(pm_rat_t *r, const pm_price_t *price, uint64_t pixels, BN_CTX *ctx);
/* Compares r with the integer v: -1, 0, 1. */
int pm_rat_cmp_u256(const pm_rat_t *r, const pm_u256_t *v, BN_CTX *ctx);
/* "num/den" in decimal. */
int pm_rat_to_string(const pm_rat_t *r, char *out, size_t out_cap);

/* Adds an amount to the balance of (sender, session). */
int pm_balances_credit_rat(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                           const pm_rat_t *amount);

#endif
