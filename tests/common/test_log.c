#include "test_log.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "lpod/core.h"

int test_log_capture(void) {
  char path[] = "/tmp/lpod-test-log-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  unlink(path);
  /* appending, so that a cleared file is written from its start again */
  if (fcntl(fd, F_SETFL, O_APPEND)) {
    close(fd);
    return -1;
  }
  lp_log_set_fd(fd);
  return fd;
}

char *test_log_text(int fd) {
  off_t len = lseek(fd, 0, SEEK_END);
  if (len < 0) return NULL;
  char *b = calloc(1, (size_t)len + 1);
  if (b && pread(fd, b, (size_t)len, 0) != len) b[0] = 0;
  return b;
}

int test_log_clear(int fd) { return ftruncate(fd, 0); }
