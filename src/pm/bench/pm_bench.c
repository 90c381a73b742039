/* Ticket validation throughput on one core: payments of 10 signed tickets through
 * pm_recipient_process_payment (every check, nonce bookkeeping and the balance credit), plus the
 * cost of its parts and of the durable store commit.
 * usage: pm_bench [tickets] [store-dir] */
#include "lpod/core.h"
#include "lpod/pm.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PER_PAYMENT 10
#define PER_PARAMS 600

typedef struct signed_payment {
  pm_ticket_params_t params;
  uint8_t sigs[PER_PAYMENT][PM_SIG_LEN];
  pm_ticket_sender_params_t tsp[PER_PAYMENT];
} signed_payment_t;

/* The machine may be shared: CPU time of this thread is what one core spends, wall time is what
 * a caller waits. Both are reported. */
static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  size_t n_tickets = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
  const char *store_dir = argc > 2 ? argv[2] : NULL;
  size_t n_pay = (n_tickets + PER_PAYMENT - 1) / PER_PAYMENT;
  n_tickets = n_pay * PER_PAYMENT;

  /* One core, as the target is stated. */
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(sched_getcpu() >= 0 ? sched_getcpu() : 0, &set);
  sched_setaffinity(0, sizeof set, &set);

  uint8_t priv[32], sender[20], recipient[20], secret[32];
  memset(priv, 0x11, 32);
  memset(recipient, 0x73, 20);
  memset(secret, 0x03, 32);
  if (pm_priv_to_addr(priv, sender)) return 1;
  pm_u256_t ev, fv;
  pm_u256_from_u64(&ev, 8000000000ull);
  pm_u256_from_u64(&fv, 4200000000000000ull); /* ~ 350k gas x 120 gwei x 100 */
  pm_price_t price = {1200, 1};
  pm_expiration_params_t exp = {.creation_round = 3000};
  memset(exp.creation_round_block_hash, 0x5a, 32);
  pm_recipient_t *r = pm_recipient_new(recipient, secret, &ev);
  pm_balances_t *bal = pm_balances_new(600000);
  signed_payment_t *pays = calloc(n_pay, sizeof *pays);
  if (!r || !bal || !pays) return 1;

  fprintf(stderr, "signing %zu tickets...\n", n_tickets);
  uint32_t nonce = 0;
  for (size_t p = 0; p < n_pay; p++) {
    if (p % (PER_PARAMS / PER_PAYMENT) == 0) {
      if (pm_recipient_ticket_params(r, sender, &fv, &price, &exp, 1000, &pays[p].params)) return 1;
      nonce = 0;
    } else {
      pays[p].params = pays[p - 1].params;
    }
    for (int i = 0; i < PER_PAYMENT; i++) {
      pm_ticket_t t = {0};
      memcpy(t.recipient, recipient, 20);
      memcpy(t.sender, sender, 20);
      t.face_value = pays[p].params.face_value;
      t.win_prob = pays[p].params.win_prob;
      t.sender_nonce = ++nonce;
      memcpy(t.recipient_rand_hash, pays[p].params.recipient_rand_hash, 32);
      t.creation_round = exp.creation_round;
      memcpy(t.creation_round_block_hash, exp.creation_round_block_hash, 32);
      uint8_t h[32];
      pm_ticket_hash(&t, h);
      if (pm_sign_hash(priv, h, pays[p].sigs[i])) return 1;
      pays[p].tsp[i] = (pm_ticket_sender_params_t){t.sender_nonce, pays[p].sigs[i], PM_SIG_LEN};
    }
  }

  pm_sender_info_t info = {0};
  pm_validate_ctx_t ctx = {.session = "bench",
                           .last_seen_l1_block = 1001,
                           .last_initialized_round = 3000,
                           .sender_info = &info,
                           .quoted_price = &price,
                           .charging = true};
  uint64_t *lat = calloc(n_pay, sizeof *lat);
  size_t winners = 0;
  uint64_t t0 = lp_now_ns(), c0 = cpu_ns();
  for (size_t p = 0; p < n_pay; p++) {
    pm_payment_t pay = {.has_ticket_params = true,
                        .params = pays[p].params,
                        .sender_len = 20,
                        .has_expiration_params = true,
                        .expiration = exp,
                        .has_expected_price = true,
                        .expected_price = price,
                        .n_tickets = PER_PAYMENT,
                        .tickets = pays[p].tsp};
    memcpy(pay.sender, sender, 20);
    pm_payment_result_t res;
    uint64_t a = cpu_ns();
    int rc = pm_recipient_process_payment(r, bal, &pay, &ctx, &res);
    lat[p] = cpu_ns() - a;
    if (rc || res.credited != PER_PAYMENT) {
      fprintf(stderr, "payment %zu rejected: %s\n", p, res.err);
      return 1;
    }
    winners += res.n_winners;
    pm_payment_result_free(&res);
  }
  double secs = (double)(lp_now_ns() - t0) / 1e9, cpu = (double)(cpu_ns() - c0) / 1e9;
  qsort(lat, n_pay, sizeof *lat, cmp_u64);
  printf("validated %zu tickets in %zu payments of %d\n", n_tickets, n_pay, PER_PAYMENT);
  printf("  CPU time %.3f s: %.0f tickets/s on one core\n", cpu, (double)n_tickets / cpu);
  printf("  wall time %.3f s: %.0f tickets/s\n", secs, (double)n_tickets / secs);
  printf("per payment of %d tickets (CPU time): p50 %.1f us, p99 %.1f us (%zu winners)\n",
         PER_PAYMENT, (double)lat[n_pay / 2] / 1e3, (double)lat[n_pay * 99 / 100] / 1e3, winners);

  /* Parts: signature recovery dominates. */
  uint64_t a = cpu_ns();
  size_t reps = LP_MIN(n_tickets, (size_t)5000);
  uint8_t h[32], addr[20];
  for (size_t i = 0; i < reps; i++) {
    pm_ticket_t t = {0};
    t.sender_nonce = (uint32_t)i;
    pm_ticket_hash(&t, h);
  }
  double hash_us = (double)(cpu_ns() - a) / 1e3 / (double)reps;
  a = cpu_ns();
  for (size_t i = 0; i < reps; i++)
    pm_recover_hash(h, pays[i / PER_PAYMENT].sigs[i % PER_PAYMENT], PM_SIG_LEN, addr, NULL);
  double rec_us = (double)(cpu_ns() - a) / 1e3 / (double)reps;
  printf("parts: ticket hash %.2f us, signature recovery %.2f us\n", hash_us, rec_us);

  if (store_dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/pm_bench.sqlite", store_dir);
    unlink(path);
    pm_store_t *s;
    if (pm_store_open(path, &s)) return 1;
    size_t commits = LP_MIN(n_pay, (size_t)200);
    uint64_t *cl = calloc(commits, sizeof *cl);
    for (size_t p = 0; p < commits; p++) {
      pm_nonce_rec_t recs[PER_PAYMENT];
      for (int i = 0; i < PER_PAYMENT; i++) {
        memset(&recs[i], 0, sizeof recs[i]);
        pm_u256_from_u64(&recs[i].recipient_rand, p);
        recs[i].nonce = (uint32_t)i;
        recs[i].expiration_block = 1040;
      }
      uint64_t b = lp_now_ns();
      if (pm_store_commit(s, NULL, 0, recs, PER_PAYMENT)) return 1;
      cl[p] = lp_now_ns() - b;
    }
    qsort(cl, commits, sizeof *cl, cmp_u64);
    printf("durable commit of %d nonces (off the loop): p50 %.2f ms, p99 %.2f ms\n", PER_PAYMENT,
           (double)cl[commits / 2] / 1e6, (double)cl[commits * 99 / 100] / 1e6);
    free(cl);
    pm_store_close(s);
    unlink(path);
    char aux[1100];
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
  }
  free(lat);
  free(pays);
  pm_balances_free(bal);
  pm_recipient_free(r);
  return 0;
}
