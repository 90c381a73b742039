/* The SQLite store: secret, winning tickets and nonces survive closing and reopening, and a
 * restarted recipient keeps accepting outstanding params without allowing replays. */
#include "lpod/pm.h"
#include "test_util.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
  char dir[1024];
  char path[1100];
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  const char *base = getenv("LPOD_BINARY_DIR");
  snprintf(f->dir, sizeof f->dir, "%s/pmstore.XXXXXX", base ? base : "/tmp");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof f->path, "%s/payments.sqlite", f->dir);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  char p[1200];
  const char *sfx[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < LP_ARRAY_LEN(sfx); i++) {
    snprintf(p, sizeof p, "%s%s", f->path, sfx[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

static void secret_is_created_once_and_private(void **state) {
  fixture_t *f = *state;
  pm_store_t *s;
  uint8_t a[32], b[32], zero[32] = {0};
  assert_int_equal(pm_store_open(f->path, &s), 0);
  assert_int_equal(pm_store_secret(s, a), 0);
  assert_memory_not_equal(a, zero, 32);
  assert_int_equal(pm_store_secret(s, b), 0);
  assert_memory_equal(a, b, 32);
  pm_store_close(s);
  struct stat st;
  assert_int_equal(stat(f->path, &st), 0);
  assert_int_equal(st.st_mode & 077, 0);
  assert_int_equal(pm_store_open(f->path, &s), 0);
  assert_int_equal(pm_store_secret(s, b), 0);
  assert_memory_equal(a, b, 32);
  pm_store_close(s);
}

static void open_errors_are_reported(void **state) {
  fixture_t *f = *state;
  pm_store_t *s = (pm_store_t *)1;
  char p[1200];
  snprintf(p, sizeof p, "%s/missing/x.sqlite", f->dir);
  assert_int_equal(pm_store_open(p, &s), LP_EIO);
  assert_null(s);
  /* A file that is not a database. */
  FILE *fp = fopen(f->path, "w");
  fputs("this is not a database, not even close to one........................", fp);
  fclose(fp);
  assert_int_equal(pm_store_open(f->path, &s), LP_EIO);
  assert_null(s);
}

static void winner(pm_winning_ticket_t *w, uint8_t tag) {
  memset(w, 0, sizeof *w);
  memset(w->ticket.recipient, 0x73, 20);
  memset(w->ticket.sender, 0x96, 20);
  pm_u256_from_u64(&w->ticket.face_value, 100000000);
  memset(w->ticket.win_prob.b, 0xff, 32);
  w->ticket.win_prob.b[0] = 0x01;
  w->ticket.sender_nonce = tag;
  memset(w->ticket.recipient_rand_hash, 0xab, 32);
  w->ticket.creation_round = 1673;
  memset(w->ticket.creation_round_block_hash, 0xa9, 32);
  memset(w->sig, tag, 65);
  w->sig[64] = 27;
  pm_u256_from_u64(&w->recipient_rand, 10);
  w->params_expiration_block = 140;
}

static void winners_persist_in_order(void **state) {
  fixture_t *f = *state;
  pm_store_t *s;
  pm_winning_ticket_t w[3];
  for (int i = 0; i < 3; i++) winner(&w[i], (uint8_t)(3 - i));
  assert_int_equal(pm_store_open(f->path, &s), 0);
  assert_int_equal(pm_store_commit(s, w, 2, NULL, 0), 0);
  /* The same sig again (a replayed winner) is kept once. */
  assert_int_equal(pm_store_commit(s, w + 1, 2, NULL, 0), 0);
  pm_store_close(s);

  assert_int_equal(pm_store_open(f->path, &s), 0);
  pm_winning_ticket_t *got;
  size_t n;
  assert_int_equal(pm_store_pending_winners(s, &got, &n), 0);
  assert_int_equal(n, 3);
  for (int i = 0; i < 3; i++) {
    assert_memory_equal(&got[i].ticket, &w[i].ticket, sizeof w[i].ticket);
    assert_memory_equal(got[i].sig, w[i].sig, 65);
    assert_memory_equal(got[i].recipient_rand.b, w[i].recipient_rand.b, 32);
    assert_true(got[i].params_expiration_block == 140);
  }
  free(got);
  uint8_t tx[32];
  memset(tx, 0x55, 32);
  assert_int_equal(pm_store_mark_redeemed(s, w[1].sig, tx), 0);
  uint8_t unknown[65] = {0};
  assert_int_equal(pm_store_mark_redeemed(s, unknown, tx), LP_ENOENT);
  pm_store_close(s);

  assert_int_equal(pm_store_open(f->path, &s), 0);
  assert_int_equal(pm_store_pending_winners(s, &got, &n), 0);
  assert_int_equal(n, 2);
  assert_memory_equal(got[0].sig, w[0].sig, 65);
  assert_memory_equal(got[1].sig, w[2].sig, 65);
  free(got);
  pm_store_close(s);
}

typedef struct loaded {
  pm_nonce_rec_t recs[16];
  size_t n;
} loaded_t;

static void collect(void *ud, const pm_nonce_rec_t *rec) {
  loaded_t *l = ud;
  if (l->n < 16) l->recs[l->n++] = *rec;
}

static void nonces_persist_and_expire(void **state) {
  fixture_t *f = *state;
  pm_store_t *s;
  pm_nonce_rec_t recs[4];
  for (int i = 0; i < 4; i++) {
    memset(&recs[i], 0, sizeof recs[i]);
    pm_u256_from_u64(&recs[i].recipient_rand, i < 2 ? 111 : 222);
    recs[i].nonce = (uint32_t)(i + 1);
    recs[i].expiration_block = i < 2 ? 140 : 200;
  }
  assert_int_equal(pm_store_open(f->path, &s), 0);
  assert_int_equal(pm_store_commit(s, NULL, 0, recs, 4), 0);
  assert_int_equal(pm_store_commit(s, NULL, 0, recs, 1), 0); /* idempotent */
  pm_store_close(s);

  assert_int_equal(pm_store_open(f->path, &s), 0);
  loaded_t l = {.n = 0};
  assert_int_equal(pm_store_load_nonces(s, 100, collect, &l), 0);
  assert_int_equal(l.n, 4);
  l.n = 0;
  assert_int_equal(pm_store_load_nonces(s, 140, collect, &l), 0);
  assert_int_equal(l.n, 2);
  assert_true(l.recs[0].expiration_block == 200);
  assert_int_equal(pm_store_expire_nonces(s, 140), 0);
  pm_store_close(s);
  assert_int_equal(pm_store_open(f->path, &s), 0);
  l.n = 0;
  assert_int_equal(pm_store_load_nonces(s, 0, collect, &l), 0);
  assert_int_equal(l.n, 2);
  pm_store_close(s);
}

static void restore_cb(void *ud, const pm_nonce_rec_t *rec) {
  assert_int_equal(pm_recipient_restore_nonce(ud, rec), 0);
}

static void count_rec(void *ud, const pm_nonce_rec_t *rec) {
  (void)rec;
  (*(size_t *)ud)++;
}

typedef struct committer {
  pm_store_t *s;
  uint32_t base;
  int rc;
} committer_t;

static void *commit_many(void *arg) {
  committer_t *c = arg;
  for (uint32_t i = 0; i < 40 && !c->rc; i++) {
    pm_winning_ticket_t w;
    winner(&w, 0);
    w.sig[0] = (uint8_t)c->base;
    w.sig[1] = (uint8_t)i;
    pm_nonce_rec_t rec = {.nonce = c->base + i, .expiration_block = 500};
    c->rc = pm_store_commit(c->s, &w, 1, &rec, 1);
  }
  return NULL;
}

/* The thread pool may run two commits at once: neither may be lost or fail. */
static void concurrent_commits(void **state) {
  fixture_t *f = *state;
  pm_store_t *s;
  assert_int_equal(pm_store_open(f->path, &s), 0);
  committer_t c[2] = {{s, 1000, 0}, {s, 2000, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, commit_many, &c[i]), 0);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  assert_int_equal(c[0].rc, 0);
  assert_int_equal(c[1].rc, 0);
  pm_winning_ticket_t *got;
  size_t n;
  assert_int_equal(pm_store_pending_winners(s, &got, &n), 0);
  assert_int_equal(n, 80);
  free(got);
  size_t count = 0;
  assert_int_equal(pm_store_load_nonces(s, 0, count_rec, &count), 0);
  assert_int_equal(count, 80);
  pm_store_close(s);
}

/* The whole restart path: params issued before a restart keep working after it, and the
 * nonces used before it stay used. */
static void restart_keeps_params_and_replay_protection(void **state) {
  fixture_t *f = *state;
  uint8_t priv[32], sender[20], recipient[20], secret[32];
  pm_u256_t ev, fv;
  hex_exact("fad9c8855b740a0b7ed4c221dbad0f33a83a49cad6b3fe8d5817ac83d38b6a19", priv, 32);
  assert_int_equal(pm_priv_to_addr(priv, sender), 0);
  memset(recipient, 0x42, 20);
  pm_u256_from_u64(&ev, 5);
  pm_u256_from_u64(&fv, 5); /* every ticket wins */
  pm_price_t price = {1, 1};
  pm_expiration_params_t exp = {.creation_round = 3};
  memset(exp.creation_round_block_hash, 0x77, 32);

  pm_store_t *s;
  assert_int_equal(pm_store_open(f->path, &s), 0);
  assert_int_equal(pm_store_secret(s, secret), 0);
  pm_recipient_t *r = pm_recipient_new(recipient, secret, &ev);
  pm_ticket_params_t params;
  assert_int_equal(pm_recipient_ticket_params(r, sender, &fv, &price, &exp, 1000, &params), 0);

  uint8_t sigs[3][65];
  pm_ticket_sender_params_t tsp[3];
  for (uint32_t i = 0; i < 3; i++) {
    pm_ticket_t t = {0};
    memcpy(t.recipient, recipient, 20);
    memcpy(t.sender, sender, 20);
    t.face_value = params.face_value;
    t.win_prob = params.win_prob;
    t.sender_nonce = i + 1;
    memcpy(t.recipient_rand_hash, params.recipient_rand_hash, 32);
    t.creation_round = exp.creation_round;
    memcpy(t.creation_round_block_hash, exp.creation_round_block_hash, 32);
    uint8_t h[32];
    pm_ticket_hash(&t, h);
    assert_int_equal(pm_sign_hash(priv, h, sigs[i]), 0);
    tsp[i] = (pm_ticket_sender_params_t){i + 1, sigs[i], 65};
  }
  pm_payment_t pay = {.has_ticket_params = true,
                      .params = params,
                      .sender_len = 20,
                      .has_expiration_params = true,
                      .expiration = exp,
                      .has_expected_price = true,
                      .expected_price = price,
                      .n_tickets = 2,
                      .tickets = tsp};
  memcpy(pay.sender, sender, 20);
  pm_validate_ctx_t ctx = {.session = "s1", .last_seen_l1_block = 1001, .charging = true};
  pm_payment_result_t res;
  assert_int_equal(pm_recipient_process_payment(r, NULL, &pay, &ctx, &res), 0);
  assert_int_equal(res.n_winners, 2);
  assert_int_equal(pm_store_commit(s, res.winners, res.n_winners, res.nonces, res.n_nonces), 0);
  pm_payment_result_free(&res);
  /* Gone without a clean shutdown of the recipient state: only the store remains. */
  pm_recipient_free(r);
  pm_store_close(s);

  assert_int_equal(pm_store_open(f->path, &s), 0);
  uint8_t secret2[32];
  assert_int_equal(pm_store_secret(s, secret2), 0);
  assert_memory_equal(secret, secret2, 32);
  r = pm_recipient_new(recipient, secret2, &ev);
  assert_int_equal(pm_store_load_nonces(s, 1002, restore_cb, r), 0);
  assert_int_equal(pm_recipient_nonce_sets(r), 1);

  pay.n_tickets = 1; /* nonce 1 again */
  assert_int_equal(pm_recipient_process_payment(r, NULL, &pay, &ctx, &res), LP_EINVAL);
  assert_string_equal(res.err, "invalid ticket senderNonce: already seen "
                               "sender=0x96216849c49358B10257cb55b28eA603c874b05E nonce=1");
  pm_payment_result_free(&res);
  pay.tickets = tsp + 2; /* nonce 3 with the pre-restart params */
  assert_int_equal(pm_recipient_process_payment(r, NULL, &pay, &ctx, &res), 0);
  assert_int_equal(pm_store_commit(s, res.winners, res.n_winners, res.nonces, res.n_nonces), 0);
  pm_payment_result_free(&res);

  pm_winning_ticket_t *got;
  size_t n;
  assert_int_equal(pm_store_pending_winners(s, &got, &n), 0);
  assert_int_equal(n, 3);
  for (size_t i = 0; i < n; i++) assert_int_equal(got[i].ticket.sender_nonce, i + 1);
  free(got);
  pm_recipient_free(r);
  pm_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(secret_is_created_once_and_private, setup, teardown),
      cmocka_unit_test_setup_teardown(open_errors_are_reported, setup, teardown),
      cmocka_unit_test_setup_teardown(winners_persist_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(nonces_persist_and_expire, setup, teardown),
      cmocka_unit_test_setup_teardown(concurrent_commits, setup, teardown),
      cmocka_unit_test_setup_teardown(restart_keeps_params_and_replay_protection, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
