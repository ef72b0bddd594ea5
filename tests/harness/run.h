/* Test harness: run a program and capture what it prints, or start one in
 * the background to kill it part way. argv[0] "shardgate" stands for the
 * binary under test, named by $SG_BINARY (CTest sets it); other names are
 * looked up in PATH. env entries "NAME=VALUE" are added to, or replace, the
 * inherited environment; env may be NULL. Failures to start abort the test. */
#ifndef SG_TESTS_HARNESS_RUN_H
#define SG_TESTS_HARNESS_RUN_H

#include <stddef.h>
#include <sys/types.h>

typedef struct sgt_result {
    int status;     /* exit status, or 128 + signal number */
    char *out;      /* all of stdout, NUL-terminated */
    size_t out_len; /* without the terminator */
    char *err;      /* all of stderr, NUL-terminated */
    size_t err_len;
} sgt_result;

/* Runs argv to completion with stdin from /dev/null, capturing stdout and
 * stderr whatever their size; fills *out and returns out->status. A program
 * that cannot be executed exits with 127 and says why on stderr. */
int sgt_run(sgt_result *out, const char *const argv[], const char *const env[]);

/* Frees the captured output; the struct itself is the caller's. */
void sgt_result_free(sgt_result *result);

/* Starts argv in the background with stdout and stderr going to the files
 * DIR/stdout and DIR/stderr; returns its pid, for kill() and sgt_wait(). */
pid_t sgt_spawn(const char *const argv[], const char *const env[], const char *dir);

/* Waits for a process from sgt_spawn; returns its exit status, or 128 +
 * signal number. */
int sgt_wait(pid_t pid);

/* Fails the current test with a message, which is also printed on stderr:
 * called outside a test (in main() or an unchecked fixture), Check itself
 * could not report it. The harness fails this way. */
void sgt_abort(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Whole file as a NUL-terminated string to free(), its length in *len if len
 * is not NULL; NULL if it cannot be read. */
char *sgt_read_file(const char *path, size_t *len);

/* Writes text to DIR/NAME, replacing it; removes DIR/NAME. Failures end
 * the test. */
void sgt_write_file(const char *dir, const char *name, const char *text);
void sgt_remove_file(const char *dir, const char *name);

/* printf into a new string (to free); aborts the process when out of memory. */
char *sgt_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sleeps ms milliseconds, through signals. */
void sgt_sleep_ms(long ms);

/* Removes a directory tree, best effort; NULL is a no-op. */
void sgt_remove_tree(const char *dir);

#endif
