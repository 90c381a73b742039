/* Credit balances per (sender, session) as exact fractions (go-livepeer core/accounting.go). */
#include "lpod/pm.h"

#include "lpod/core.h"
#include "pm_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct balance_entry {
  struct balance_entry *next;
  uint8_t sender[PM_ADDR_LEN];
  char *session;
  pm_rat_t amount;
  bool has_amount;
  bool has_fixed_price;
  pm_price_t fixed_price;
  uint64_t last_update_ms;
} balance_entry_t;

struct pm_balances {
  balance_entry_t **buckets;
  size_t n_buckets;
  size_t count;
  uint64_t ttl_ms;
  BN_CTX *ctx;
};

static uint64_t entry_hash(const uint8_t sender[PM_ADDR_LEN], const char *session) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < PM_ADDR_LEN; i++) h = (h ^ sender[i]) * 1099511628211ull;
  for (const char *p = session; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
  return h;
}

pm_balances_t *pm_balances_new(uint64_t ttl_ms) {
  pm_balances_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->n_buckets = 256;
  b->buckets = calloc(b->n_buckets, sizeof *b->buckets);
  b->ctx = BN_CTX_new();
  b->ttl_ms = ttl_ms;
  if (!b->buckets || !b->ctx) {
    pm_balances_free(b);
    return NULL;
  }
  return b;
}

static void entry_free(balance_entry_t *e) {
  pm_rat_deinit(&e->amount);
  free(e->session);
  free(e);
}

void pm_balances_free(pm_balances_t *b) {
  if (!b) return;
  for (size_t i = 0; b->buckets && i < b->n_buckets; i++) {
    balance_entry_t *e = b->buckets[i];
    while (e) {
      balance_entry_t *next = e->next;
      entry_free(e);
      e = next;
    }
  }
  free(b->buckets);
  BN_CTX_free(b->ctx);
  free(b);
}

static balance_entry_t *entry_find(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN],
                                   const char *session) {
  if (!session) return NULL;
  balance_entry_t *e = b->buckets[entry_hash(sender, session) % b->n_buckets];
  for (; e; e = e->next)
    if (memcmp(e->sender, sender, PM_ADDR_LEN) == 0 && strcmp(e->session, session) == 0) return e;
  return NULL;
}

static void table_grow(pm_balances_t *b) {
  size_t n = b->n_buckets * 2;
  balance_entry_t **nb = calloc(n, sizeof *nb);
  if (!nb) return; /* keep the smaller table: lookups stay correct, only slower */
  for (size_t i = 0; i < b->n_buckets; i++) {
    balance_entry_t *e = b->buckets[i];
    while (e) {
      balance_entry_t *next = e->next;
      size_t j = entry_hash(e->sender, e->session) % n;
      e->next = nb[j];
      nb[j] = e;
      e = next;
    }
  }
  free(b->buckets);
  b->buckets = nb;
  b->n_buckets = n;
}

static balance_entry_t *entry_get(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN],
                                  const char *session) {
  if (!session) return NULL;
  balance_entry_t *e = entry_find(b, sender, session);
  if (e) return e;
  e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->session = strdup(session);
  if (!e->session || pm_rat_init(&e->amount) != 0) {
    free(e->session);
    free(e);
    return NULL;
  }
  memcpy(e->sender, sender, PM_ADDR_LEN);
  if (b->count + 1 > b->n_buckets) table_grow(b);
  size_t i = entry_hash(sender, session) % b->n_buckets;
  e->next = b->buckets[i];
  b->buckets[i] = e;
  b->count++;
  return e;
}

int pm_balances_credit_ev(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                          const pm_u256_t *face_value, const pm_u256_t *win_prob) {
  pm_rat_t ev;
  int rc = pm_rat_init(&ev);
  if (rc) return rc;
  rc = pm_rat_set_ev(&ev, face_value, win_prob);
  if (!rc) rc = pm_balances_credit_rat(b, sender, session, &ev);
  pm_rat_deinit(&ev);
  return rc;
}

int pm_balances_credit_rat(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                           const pm_rat_t *amount) {
  balance_entry_t *e = entry_get(b, sender, session);
  if (!e) return session ? LP_ENOMEM : LP_EINVAL;
  int rc = pm_rat_add(&e->amount, amount, b->ctx);
  if (rc) return rc;
  e->has_amount = true;
  e->last_update_ms = lp_now_ms();
  return 0;
}

int pm_balances_debit(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                      const pm_price_t *price, uint64_t pixels) {
  if (price->pixels_per_unit == 0) return LP_EINVAL;
  balance_entry_t *e = entry_get(b, sender, session);
  if (!e) return session ? LP_ENOMEM : LP_EINVAL;
  int rc = pm_rat_sub_price(&e->amount, price, pixels, b->ctx);
  if (rc) return rc;
  e->has_amount = true;
  e->last_update_ms = lp_now_ms();
  return 0;
}

bool pm_balances_sufficient(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN],
                            const char *session, const pm_u256_t *ev) {
  balance_entry_t *e = entry_find(b, sender, session);
  if (!e || !e->has_amount) return false;
  return pm_rat_cmp_u256(&e->amount, ev, b->ctx) >= 0;
}

int pm_balances_get(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                    char *out, size_t out_cap) {
  balance_entry_t *e = entry_find(b, sender, session);
  if (!e || !e->has_amount) return LP_ENOENT;
  return pm_rat_to_string(&e->amount, out, out_cap);
}

int pm_balances_fixed_price(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN],
                            const char *session, pm_price_t *out) {
  balance_entry_t *e = entry_find(b, sender, session);
  if (!e || !e->has_fixed_price) return LP_ENOENT;
  *out = e->fixed_price;
  return 0;
}

int pm_balances_set_fixed_price(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN],
                                const char *session, const pm_price_t *price) {
  balance_entry_t *e = entry_get(b, sender, session);
  if (!e) return session ? LP_ENOMEM : LP_EINVAL;
  e->fixed_price = *price;
  e->has_fixed_price = true;
  e->last_update_ms = lp_now_ms();
  return 0;
}

size_t pm_balances_expire(pm_balances_t *b, uint64_t now_ms) {
  size_t removed = 0;
  for (size_t i = 0; i < b->n_buckets; i++) {
    balance_entry_t **pp = &b->buckets[i];
    while (*pp) {
      balance_entry_t *e = *pp;
      if (now_ms > e->last_update_ms && now_ms - e->last_update_ms > b->ttl_ms) {
        *pp = e->next;
        entry_free(e);
        b->count--;
        removed++;
      } else {
        pp = &e->next;
      }
    }
  }
  return removed;
}

int pm_balances_gate(pm_balances_t *b, const uint8_t sender[PM_ADDR_LEN], const char *session,
                     const pm_price_t *expected_price, const pm_u256_t *ev, const char **err) {
  if (err) *err = NULL;
  if (!expected_price || expected_price->price_per_unit <= 0) return 0;
  if (pm_balances_sufficient(b, sender, session, ev)) return 0;
  if (err) *err = "Insufficient balance";
  return LP_EPERM;
}
