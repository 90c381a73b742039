/* Corrupt segments through one warm session, as a hostile or broken gateway would send them.
 * Every call must return (a result or a clean error with text), and after every few corrupt
 * inputs a clean segment must still transcode on the same session. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpod/core.h"
#include "lpod/media.h"

static media_session_t *sess;
static media_profile_t prof;
static uint8_t *clean;
static size_t clean_len;
static int calls;

static media_session_t *new_session(void) {
  media_session_opts_t o = MEDIA_SESSION_OPTS_INIT;
  o.preset = "ultrafast";
  o.encoder_threads = 1;
  media_session_t *s = media_session_new(&o);
  if (!s) abort();
  return s;
}

static void init(void) {
  const char *dir = getenv("LPOD_MEDIA_DIR");
  char path[512];
  snprintf(path, sizeof path, "%s/kryp-1.ts", dir ? dir : "../shared/media");
  char *text;
  if (lp_file_read(path, 64 << 20, &text, &clean_len)) {
    fprintf(stderr, "fuzz_segment: cannot read %s (set LPOD_MEDIA_DIR)\n", path);
    abort();
  }
  clean = (uint8_t *)text;
  if (media_profile_preset("P144p30fps16x9", &prof)) abort();
  lp_log_set_level(0);
  sess = new_session();
}

static int run(const uint8_t *data, size_t size) {
  media_result_t r;
  memset(&r, 0, sizeof r);
  int rc = media_session_transcode(sess, data, size, &prof, 1, &r);
  if (rc != 0 && r.error[0] == '\0') {
    fprintf(stderr, "fuzz_segment: error %d without a message\n", rc);
    abort();
  }
  if (rc == 0 && (!r.renditions || r.n != 1)) {
    fprintf(stderr, "fuzz_segment: success without a rendition\n");
    abort();
  }
  media_err_class_t cls = r.error_class;
  media_result_free(&r);
  if (rc != 0 && cls == MEDIA_ERR_SESSION) { /* what the orchestrator does too */
    media_session_free(sess);
    sess = new_session();
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!sess) init();
  run(data, size);
  if (++calls % 8 == 0 && run(clean, clean_len) != 0) {
    fprintf(stderr, "fuzz_segment: a clean segment failed after corrupt ones\n");
    abort();
  }
  return 0;
}
