/* Scratch directories and sample files for the sched tests. */
#ifndef SCHED_TEST_TMPDIR_H
#define SCHED_TEST_TMPDIR_H

/* Creates a fresh directory under $TMPDIR; returns a malloc'd path or NULL. */
char *tmpdir_new(void);
/* Writes text to dir/rel, creating the folders on the way; 0 on success. */
int tmpdir_write(const char *dir, const char *rel, const char *text);
/* Removes the tree and frees the path. */
void tmpdir_free(char *dir);

#endif
