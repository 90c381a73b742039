/* Durable payment state in SQLite: winning tickets waiting for redemption, the recipient
 * secret and the nonces seen per params set (so params outlive a restart without replays). */
#include "lpod/pm.h"

#include "lpod/core.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pm_store {
  /* uv_queue_work may run two commits at once on the thread pool; a transaction on the shared
   * connection must not interleave with another. */
  pthread_mutex_t lock;
  sqlite3 *db;
  sqlite3_stmt *ins_ticket;
  sqlite3_stmt *ins_nonce;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS kv ("
    "  key TEXT PRIMARY KEY,"
    "  value BLOB NOT NULL);"
    /* go-livepeer's ticketQueue columns, plus an id that keeps arrival order exact. */
    "CREATE TABLE IF NOT EXISTS ticketQueue ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  createdAt INTEGER NOT NULL DEFAULT (strftime('%s','now')),"
    "  sender TEXT NOT NULL,"
    "  recipient TEXT NOT NULL,"
    "  faceValue BLOB NOT NULL,"
    "  winProb BLOB NOT NULL,"
    "  senderNonce INTEGER NOT NULL,"
    "  recipientRand BLOB NOT NULL,"
    "  recipientRandHash TEXT NOT NULL,"
    "  sig BLOB NOT NULL UNIQUE,"
    "  creationRound INTEGER NOT NULL,"
    "  creationRoundBlockHash TEXT NOT NULL,"
    "  paramsExpirationBlock INTEGER NOT NULL,"
    "  redeemedAt INTEGER,"
    "  txHash TEXT);"
    "CREATE INDEX IF NOT EXISTS ticketQueue_sender ON ticketQueue(sender, creationRound);"
    "CREATE TABLE IF NOT EXISTS senderNonces ("
    "  recipientRand BLOB NOT NULL,"
    "  nonce INTEGER NOT NULL,"
    "  expirationBlock INTEGER NOT NULL,"
    "  PRIMARY KEY (recipientRand, nonce)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS senderNonces_exp ON senderNonces(expirationBlock);";

static int db_err(pm_store_t *s, const char *what) {
  LOGE("pm store: %s: %s", what, sqlite3_errmsg(s->db));
  return LP_EIO;
}

void pm_store_close(pm_store_t *s) {
  if (!s) return;
  sqlite3_finalize(s->ins_ticket);
  sqlite3_finalize(s->ins_nonce);
  sqlite3_close(s->db);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

int pm_store_open(const char *path, pm_store_t **out) {
  *out = NULL;
  /* The file holds the recipient secret: create it private before SQLite opens it. */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    LOGE("pm store: cannot open %s: %s", path, strerror(errno));
    return LP_EIO;
  }
  close(fd);
  pm_store_t *s = calloc(1, sizeof *s);
  if (!s) return LP_ENOMEM;
  pthread_mutex_init(&s->lock, NULL);
  if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
      SQLITE_OK) {
    int rc = s->db ? db_err(s, "open") : LP_ENOMEM;
    pm_store_close(s);
    return rc;
  }
  sqlite3_busy_timeout(s->db, 5000);
  /* WAL with synchronous=FULL: every commit is fsynced before it returns. */
  if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, NULL) !=
          SQLITE_OK ||
      sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(s->db,
                         "INSERT OR IGNORE INTO ticketQueue (sender, recipient, faceValue, "
                         "winProb, senderNonce, recipientRand, recipientRandHash, sig, "
                         "creationRound, creationRoundBlockHash, paramsExpirationBlock) "
                         "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         -1, &s->ins_ticket, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(s->db,
                         "INSERT OR IGNORE INTO senderNonces (recipientRand, nonce, "
                         "expirationBlock) VALUES (?,?,?)",
                         -1, &s->ins_nonce, NULL) != SQLITE_OK) {
    int rc = db_err(s, "schema");
    pm_store_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

static int pm_store_secret_locked(pm_store_t *s, uint8_t secret[32]) {
  sqlite3_stmt *st = NULL;
  int rc = LP_EIO;
  if (sqlite3_prepare_v2(s->db, "SELECT value FROM kv WHERE key='recipientSecret'", -1, &st,
                         NULL) != SQLITE_OK)
    return db_err(s, "read secret");
  int step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    if (sqlite3_column_bytes(st, 0) == 32) {
      memcpy(secret, sqlite3_column_blob(st, 0), 32);
      rc = 0;
    } else {
      LOGE("pm store: stored recipient secret has the wrong size");
    }
    sqlite3_finalize(st);
    return rc;
  }
  sqlite3_finalize(st);
  if (step != SQLITE_DONE) return db_err(s, "read secret");
  if (RAND_bytes(secret, 32) != 1) return LP_EIO;
  if (sqlite3_prepare_v2(s->db, "INSERT INTO kv (key, value) VALUES ('recipientSecret', ?)", -1,
                         &st, NULL) != SQLITE_OK)
    return db_err(s, "store secret");
  sqlite3_bind_blob(st, 1, secret, 32, SQLITE_TRANSIENT);
  rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, "store secret");
  sqlite3_finalize(st);
  if (rc) OPENSSL_cleanse(secret, 32);
  return rc;
}

static void bind_min(sqlite3_stmt *st, int col, const pm_u256_t *v) {
  const uint8_t *p;
  size_t n = pm_u256_min_bytes(v, &p);
  sqlite3_bind_blob(st, col, p, (int)n, SQLITE_TRANSIENT);
}

static void bind_hex(sqlite3_stmt *st, int col, const uint8_t *b, size_t n) {
  char hex[2 * 32 + 1];
  lp_hex_encode(b, n, hex);
  sqlite3_bind_text(st, col, hex, (int)(2 * n), SQLITE_TRANSIENT);
}

static int insert_winner(pm_store_t *s, const pm_winning_ticket_t *w) {
  sqlite3_stmt *st = s->ins_ticket;
  const pm_ticket_t *t = &w->ticket;
  sqlite3_reset(st);
  bind_hex(st, 1, t->sender, PM_ADDR_LEN);
  bind_hex(st, 2, t->recipient, PM_ADDR_LEN);
  bind_min(st, 3, &t->face_value);
  bind_min(st, 4, &t->win_prob);
  sqlite3_bind_int64(st, 5, t->sender_nonce);
  bind_min(st, 6, &w->recipient_rand);
  bind_hex(st, 7, t->recipient_rand_hash, PM_HASH_LEN);
  sqlite3_bind_blob(st, 8, w->sig, PM_SIG_LEN, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 9, t->creation_round);
  bind_hex(st, 10, t->creation_round_block_hash, PM_HASH_LEN);
  sqlite3_bind_int64(st, 11,
                     (sqlite3_int64)(w->params_expiration_block > INT64_MAX
                                         ? INT64_MAX
                                         : w->params_expiration_block));
  return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, "store winning ticket");
}

static int insert_nonce(pm_store_t *s, const pm_nonce_rec_t *n) {
  sqlite3_stmt *st = s->ins_nonce;
  sqlite3_reset(st);
  sqlite3_bind_blob(st, 1, n->recipient_rand.b, 32, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, n->nonce);
  sqlite3_bind_int64(
      st, 3, (sqlite3_int64)(n->expiration_block > INT64_MAX ? INT64_MAX : n->expiration_block));
  return sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, "store nonce");
}

static int pm_store_commit_locked(pm_store_t *s, const pm_winning_ticket_t *winners,
                                  size_t n_winners, const pm_nonce_rec_t *nonces, size_t n_nonces) {
  if (n_winners == 0 && n_nonces == 0) return 0;
  if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return db_err(s, "begin");
  int rc = 0;
  for (size_t i = 0; !rc && i < n_winners; i++) rc = insert_winner(s, &winners[i]);
  for (size_t i = 0; !rc && i < n_nonces; i++) rc = insert_nonce(s, &nonces[i]);
  if (!rc && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rc = db_err(s, "commit");
  if (rc) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

static int pm_store_load_nonces_locked(pm_store_t *s, uint64_t l1_block,
                                       void (*fn)(void *ud, const pm_nonce_rec_t *rec), void *ud) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db,
                         "SELECT recipientRand, nonce, expirationBlock FROM senderNonces "
                         "WHERE expirationBlock > ?",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(s, "load nonces");
  sqlite3_bind_int64(st, 1, (sqlite3_int64)(l1_block > INT64_MAX ? INT64_MAX : l1_block));
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    pm_nonce_rec_t rec;
    if (sqlite3_column_bytes(st, 0) != 32) continue;
    memcpy(rec.recipient_rand.b, sqlite3_column_blob(st, 0), 32);
    rec.nonce = (uint32_t)sqlite3_column_int64(st, 1);
    rec.expiration_block = (uint64_t)sqlite3_column_int64(st, 2);
    fn(ud, &rec);
  }
  sqlite3_finalize(st);
  return step == SQLITE_DONE ? 0 : db_err(s, "load nonces");
}

static int pm_store_expire_nonces_locked(pm_store_t *s, uint64_t l1_block) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, "DELETE FROM senderNonces WHERE expirationBlock <= ?", -1, &st,
                         NULL) != SQLITE_OK)
    return db_err(s, "expire nonces");
  sqlite3_bind_int64(st, 1, (sqlite3_int64)(l1_block > INT64_MAX ? INT64_MAX : l1_block));
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, "expire nonces");
  sqlite3_finalize(st);
  return rc;
}

static void column_u256(sqlite3_stmt *st, int col, pm_u256_t *out) {
  const uint8_t *p = sqlite3_column_blob(st, col);
  int n = sqlite3_column_bytes(st, col);
  if (!p || n < 0 || pm_u256_from_bytes(out, p, (size_t)n) != 0) memset(out->b, 0, 32);
}

static void column_hex(sqlite3_stmt *st, int col, uint8_t *out, size_t n) {
  const char *h = (const char *)sqlite3_column_text(st, col);
  if (!h || lp_hex_decode(h, out, n) != (int)n) memset(out, 0, n);
}

static int pm_store_pending_winners_locked(pm_store_t *s, pm_winning_ticket_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db,
                         "SELECT sender, recipient, faceValue, winProb, senderNonce, "
                         "recipientRand, recipientRandHash, sig, creationRound, "
                         "creationRoundBlockHash, paramsExpirationBlock FROM ticketQueue "
                         "WHERE redeemedAt IS NULL AND txHash IS NULL ORDER BY id",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(s, "list winning tickets");
  size_t cap = 0;
  int step, rc = 0;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      pm_winning_ticket_t *nw = realloc(*out, cap * sizeof *nw);
      if (!nw) {
        rc = LP_ENOMEM;
        break;
      }
      *out = nw;
    }
    pm_winning_ticket_t *w = &(*out)[(*n)++];
    memset(w, 0, sizeof *w);
    column_hex(st, 0, w->ticket.sender, PM_ADDR_LEN);
    column_hex(st, 1, w->ticket.recipient, PM_ADDR_LEN);
    column_u256(st, 2, &w->ticket.face_value);
    column_u256(st, 3, &w->ticket.win_prob);
    w->ticket.sender_nonce = (uint32_t)sqlite3_column_int64(st, 4);
    column_u256(st, 5, &w->recipient_rand);
    column_hex(st, 6, w->ticket.recipient_rand_hash, PM_HASH_LEN);
    if (sqlite3_column_bytes(st, 7) == PM_SIG_LEN)
      memcpy(w->sig, sqlite3_column_blob(st, 7), PM_SIG_LEN);
    w->ticket.creation_round = sqlite3_column_int64(st, 8);
    column_hex(st, 9, w->ticket.creation_round_block_hash, PM_HASH_LEN);
    w->params_expiration_block = (uint64_t)sqlite3_column_int64(st, 10);
  }
  sqlite3_finalize(st);
  if (!rc && step != SQLITE_DONE) rc = db_err(s, "list winning tickets");
  if (rc) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return rc;
}

static int pm_store_mark_redeemed_locked(pm_store_t *s, const uint8_t sig[PM_SIG_LEN],
                                         const uint8_t tx_hash[PM_HASH_LEN]) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db,
                         "UPDATE ticketQueue SET redeemedAt = strftime('%s','now'), txHash = ? "
                         "WHERE sig = ?",
                         -1, &st, NULL) != SQLITE_OK)
    return db_err(s, "mark redeemed");
  char hex[2 + 2 * PM_HASH_LEN + 1] = "0x";
  lp_hex_encode(tx_hash, PM_HASH_LEN, hex + 2);
  sqlite3_bind_text(st, 1, hex, -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(st, 2, sig, PM_SIG_LEN, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(s, "mark redeemed");
  if (!rc && sqlite3_changes(s->db) == 0) rc = LP_ENOENT;
  sqlite3_finalize(st);
  return rc;
}

int pm_store_secret(pm_store_t *s, uint8_t secret[32]) {
  pthread_mutex_lock(&s->lock);
  int rc = pm_store_secret_locked(s, secret);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pm_store_commit(pm_store_t *s, const pm_winning_ticket_t *winners, size_t n_winners,
                    const pm_nonce_rec_t *nonces, size_t n_nonces) {
  pthread_mutex_lock(&s->lock);
  int rc = pm_store_commit_locked(s, winners, n_winners, nonces, n_nonces);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pm_store_load_nonces(pm_store_t *s, uint64_t l1_block,
                         void (*fn)(void *ud, const pm_nonce_rec_t *rec), void *ud) {
  pthread_mutex_lock(&s->lock);
  int rc = pm_store_load_nonces_locked(s, l1_block, fn, ud);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pm_store_expire_nonces(pm_store_t *s, uint64_t l1_block) {
  pthread_mutex_lock(&s->lock);
  int rc = pm_store_expire_nonces_locked(s, l1_block);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pm_store_pending_winners(pm_store_t *s, pm_winning_ticket_t **out, size_t *n) {
  pthread_mutex_lock(&s->lock);
  int rc = pm_store_pending_winners_locked(s, out, n);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pm_store_mark_redeemed(pm_store_t *s, const uint8_t sig[PM_SIG_LEN],
                           const uint8_t tx_hash[PM_HASH_LEN]) {
  pthread_mutex_lock(&s->lock);
  int rc = pm_store_mark_redeemed_locked(s, sig, tx_hash);
  pthread_mutex_unlock(&s->lock);
  return rc;
}
