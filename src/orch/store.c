/* In-memory result store behind GET /stream: per session, per folder (rendition), the newest
 * ORCH_STORE_KEEP objects, as go-tools' memory driver keeps them. */
#include <stdlib.h>
#include <string.h>

#include "orch_int.h"

typedef struct store_obj {
  char *file;
  uint8_t *data;
  size_t len;
  struct store_obj *next; /* older */
} store_obj_t;

typedef struct store_dir {
  char *name;
  store_obj_t *objs; /* newest first */
  int count;
  struct store_dir *next;
} store_dir_t;

typedef struct store_sess {
  char *id;
  store_dir_t *dirs;
  struct store_sess *next;
} store_sess_t;

struct orch_store {
  store_sess_t *sessions;
};

orch_store_t *orch_store_new(void) { return calloc(1, sizeof(orch_store_t)); }

static void obj_free(store_obj_t *o) {
  free(o->file);
  free(o->data);
  free(o);
}

static void sess_free(store_sess_t *s) {
  for (store_dir_t *d = s->dirs, *dn; d; d = dn) {
    dn = d->next;
    for (store_obj_t *o = d->objs, *on; o; o = on) {
      on = o->next;
      obj_free(o);
    }
    free(d->name);
    free(d);
  }
  free(s->id);
  free(s);
}

void orch_store_free(orch_store_t *st) {
  if (!st) return;
  for (store_sess_t *s = st->sessions, *sn; s; s = sn) {
    sn = s->next;
    sess_free(s);
  }
  free(st);
}

static store_sess_t *sess_find(orch_store_t *st, const char *id, size_t id_len) {
  for (store_sess_t *s = st->sessions; s; s = s->next)
    if (strlen(s->id) == id_len && memcmp(s->id, id, id_len) == 0) return s;
  return NULL;
}

static store_dir_t *dir_find(store_sess_t *s, const char *name, size_t len) {
  for (store_dir_t *d = s->dirs; d; d = d->next)
    if (strlen(d->name) == len && memcmp(d->name, name, len) == 0) return d;
  return NULL;
}

/* Splits "<folder>/<file>" at the last slash; a name without one lives in the "" folder. */
static void split_name(const char *name, size_t *dir_len, const char **file) {
  const char *slash = strrchr(name, '/');
  *dir_len = slash ? (size_t)(slash - name) : 0;
  *file = slash ? slash + 1 : name;
}

int orch_store_put(orch_store_t *st, const char *session_id, const char *name, uint8_t *data,
                   size_t len) {
  store_sess_t *s = sess_find(st, session_id, strlen(session_id));
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s || !(s->id = strdup(session_id))) {
      free(s);
      free(data);
      return LP_ENOMEM;
    }
    s->next = st->sessions;
    st->sessions = s;
  }
  size_t dir_len;
  const char *file;
  split_name(name, &dir_len, &file);
  store_dir_t *d = dir_find(s, name, dir_len);
  if (!d) {
    d = calloc(1, sizeof *d);
    if (!d || !(d->name = lp_strndup(name, dir_len))) {
      free(d);
      free(data);
      return LP_ENOMEM;
    }
    d->next = s->dirs;
    s->dirs = d;
  }
  store_obj_t *o = calloc(1, sizeof *o);
  if (!o || !(o->file = strdup(file))) {
    free(o);
    free(data);
    return LP_ENOMEM;
  }
  o->data = data;
  o->len = len;
  /* A rewrite of the same name replaces the old object. */
  for (store_obj_t **pp = &d->objs; *pp; pp = &(*pp)->next) {
    if (strcmp((*pp)->file, file) == 0) {
      store_obj_t *old = *pp;
      *pp = old->next;
      obj_free(old);
      d->count--;
      break;
    }
  }
  o->next = d->objs;
  d->objs = o;
  if (++d->count > ORCH_STORE_KEEP) {
    store_obj_t **pp = &d->objs;
    for (int i = 0; i < ORCH_STORE_KEEP; i++) pp = &(*pp)->next;
    for (store_obj_t *x = *pp, *xn; x; x = xn) {
      xn = x->next;
      obj_free(x);
      d->count--;
    }
    *pp = NULL;
  }
  return 0;
}

static const uint8_t *get_in(store_sess_t *s, const char *name, size_t *len) {
  size_t dir_len;
  const char *file;
  split_name(name, &dir_len, &file);
  store_dir_t *d = dir_find(s, name, dir_len);
  if (!d) return NULL;
  for (store_obj_t *o = d->objs; o; o = o->next)
    if (strcmp(o->file, file) == 0) {
      *len = o->len;
      return o->data;
    }
  return NULL;
}

const uint8_t *orch_store_get(orch_store_t *st, const char *session_id, const char *name,
                              size_t *len) {
  store_sess_t *s = sess_find(st, session_id, strlen(session_id));
  return s ? get_in(s, name, len) : NULL;
}

const uint8_t *orch_store_lookup(orch_store_t *st, const char *path, size_t *len) {
  const char *slash = strchr(path, '/');
  if (!slash || !slash[1]) return NULL;
  store_sess_t *s = sess_find(st, path, (size_t)(slash - path));
  return s ? get_in(s, slash + 1, len) : NULL;
}

void orch_store_drop_session(orch_store_t *st, const char *session_id) {
  for (store_sess_t **pp = &st->sessions; *pp; pp = &(*pp)->next) {
    if (strcmp((*pp)->id, session_id) == 0) {
      store_sess_t *s = *pp;
      *pp = s->next;
      sess_free(s);
      return;
    }
  }
}

const char *orch_store_mime(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot) return "";
  if (strcmp(dot, ".ts") == 0) return "video/mp2t";
  if (strcmp(dot, ".mp4") == 0) return "video/mp4";
  return "";
}
