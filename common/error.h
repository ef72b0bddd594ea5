/* Errors: one table of codes, each with its exit status, and a small error
 * value that fallible functions fill in (code, message, optional detail and
 * hint), printed the way PostgreSQL's client programs print theirs. */
#ifndef SG_COMMON_ERROR_H
#define SG_COMMON_ERROR_H

#include <stdio.h>

/* X(name, exit status, short description). Codes are negative; 0 is success.
 * Nothing else in the program invents exit statuses. */
#define SG_ERROR_TABLE(X)                                                                          \
    X(SG_E_USAGE, 2, "usage")                                                                      \
    X(SG_E_NOMEM, 3, "out of memory")                                                              \
    X(SG_E_IO, 4, "i/o")                                                                           \
    X(SG_E_FORMAT, 5, "malformed input")                                                           \
    X(SG_E_CORRUPT, 6, "corrupt data")                                                             \
    X(SG_E_CRYPTO, 7, "decryption")                                                                \
    X(SG_E_SIGNATURE, 8, "signature")                                                              \
    X(SG_E_KEY, 9, "key")                                                                          \
    X(SG_E_NOT_FOUND, 10, "not found")                                                             \
    X(SG_E_STORE, 11, "store")                                                                     \
    X(SG_E_DB, 12, "database")                                                                     \
    X(SG_E_TARGET, 13, "restore target")                                                           \
    X(SG_E_MISMATCH, 14, "verification mismatch")                                                  \
    X(SG_E_PROCESS, 15, "child process")                                                           \
    X(SG_E_INTERRUPTED, 16, "interrupted")                                                         \
    X(SG_E_SHARDS_FAILED, 17, "one or more shards failed")                                         \
    X(SG_E_OBJECTIVE, 18, "objective missed")                                                      \
    X(SG_E_BUSY, 19, "held by another session")                                                    \
    X(SG_E_LINT, 1, "lint findings")                                                               \
    X(SG_E_INTERNAL, 70, "internal")

enum {
    SG_OK = 0,
    SG_E_FIRST_ = -100,
#define SG_ERROR_ENUM(name, status, text) name,
    SG_ERROR_TABLE(SG_ERROR_ENUM)
#undef SG_ERROR_ENUM
        SG_E_LAST_
};

typedef struct sg_error {
    int code;
    char message[512];
    char detail[1024];
    char hint[512];
    char sqlstate[6]; /* of a database error, "" otherwise: callers retry on some */
} sg_error;

/* Sets code and message (printf-style) and clears detail and hint; returns
 * code, so that `return sg_error_set(err, SG_E_IO, ...)` reads naturally.
 * err may be NULL. */
int sg_error_set(sg_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds a detail or hint line to an error already set. */
void sg_error_detail(sg_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sg_error_hint(sg_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Puts context in front of the message: "reading pack 3: <message>". */
void sg_error_prefix(sg_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void sg_error_clear(sg_error *err);

/* Exit status for an error code (0 for SG_OK). */
int sg_error_exit_status(int code);

/* Short name of the code's class, e.g. "corrupt data". */
const char *sg_error_class(int code);

/* Prints "PROG: error: message", then "PROG: detail: ..." and "PROG: hint: ..." */
void sg_error_print(const sg_error *err, const char *prog, FILE *out);

#endif
