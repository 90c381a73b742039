/* lpod entry point: subcommands, or flags -> node. */
#include <stdio.h>
#include <string.h>

#include "lpod/core.h"
#include "lpod_build_info.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} lp_subcommand_t;

/* Subcommands: `lpod <name> ...`. Modules add their entry point here. */
static const lp_subcommand_t subcommands[] = {
    /* SUBCOMMANDS */
    {NULL, NULL, NULL},
};

int main(int argc, char **argv) {
  if (argc > 1 && argv[1][0] != '-') {
    for (const lp_subcommand_t *s = subcommands; s->name; s++)
      if (strcmp(s->name, argv[1]) == 0) return s->run(argc - 1, argv + 1);
    fprintf(stderr, "lpod: unknown subcommand '%s'\n", argv[1]);
    return 2;
  }
  LOGI("lpod %s (%s)", LPOD_VERSION, LPOD_GIT_REV);
  return 0;
}
