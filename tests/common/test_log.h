/* Tests that read what lpod logged: the log goes to an unlinked temporary file. */
#ifndef LPOD_TEST_LOG_H
#define LPOD_TEST_LOG_H

/* Sends lpod's log to a fresh unlinked file opened for appending; returns its fd, or -1. */
int test_log_capture(void);
/* Everything logged to fd so far, NUL-terminated and malloc'd (NULL when out of memory). */
char *test_log_text(int fd);
/* Empties the file: what is logged next starts at its beginning. Returns 0 or -1. */
int test_log_clear(int fd);

#endif
