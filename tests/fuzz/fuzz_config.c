/* Config files as operators write them, and worse. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>

#include "lpod/config.h"
#include "lpod/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/lpod-fuzz-config-%ld", (long)getpid());
    lp_log_set_level(0);
    lp_log_set_fd(open("/dev/null", 1)); /* warnings for every accepted key would flood */
  }
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  if (size) fwrite(data, 1, size, f);
  fclose(f);
  char *argv[] = {"-config", path, NULL};
  char *env[] = {NULL};
  lp_config_t cfg;
  char err[512];
  if (lp_config_load(&cfg, 2, argv, env, err, sizeof err) == LP_CFG_OK) {
    char *t = lp_config_table(&cfg);
    free(t);
    lp_config_free(&cfg);
  }
  unlink(path);
  return 0;
}
