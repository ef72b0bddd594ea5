/* One option table drives a command's flags, their SHARDGATE_* environment
 * variables and its help text. A command declares a struct of settings and a
 * table of sg_option pointing into it by offset. */
#ifndef SG_COMMON_OPTIONS_H
#define SG_COMMON_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"

typedef enum {
    SG_OPT_FLAG,     /* bool, no value */
    SG_OPT_STRING,   /* const char * */
    SG_OPT_INT,      /* int */
    SG_OPT_SIZE,     /* uint64_t, with an optional unit: 512k, 32MiB, 1G */
    SG_OPT_LIST,     /* sg_strlist, repeatable */
    SG_OPT_DURATION, /* uint64_t milliseconds: 500ms, 90s, 15m, 1h30m, 2d */
    SG_OPT_TABLE,    /* the options of `table`, at offset: a settings struct shared by commands */
} sg_opt_type;

typedef struct sg_strlist {
    const char **items;
    size_t count;
} sg_strlist;

typedef struct sg_option {
    const char *name; /* long name without "--" */
    sg_opt_type type;
    size_t offset; /* offsetof the value in the command's settings struct */
    const char *metavar;
    const char *help;
    long min, max;                 /* bounds for SG_OPT_INT (both 0: unbounded) */
    const struct sg_option *table; /* SG_OPT_TABLE only */
} sg_option;

/* Includes the options of `tbl`, whose offsets are relative to a struct at
 * `off` in the including command's settings. */
#define SG_OPTIONS_INCLUDE(off, tbl)                                                               \
    {                                                                                              \
        .name = "", .type = SG_OPT_TABLE, .offset = (off), .table = (tbl)                          \
    }

/* Parses argv (argv[0] is the command name) into `settings`. Values come from
 * SHARDGATE_<NAME> environment variables first, then flags. Non-option
 * arguments are returned in positional (pointing into argv; the array is
 * malloc'd). "--help" sets *help. */
int sg_options_parse(void *settings, const sg_option *table, int argc, char **argv,
                     sg_strlist *positional, int *help, sg_error *err);

/* Frees the arrays of every SG_OPT_LIST in settings (not the strings, which
 * point into argv or the environment). */
void sg_options_free(void *settings, const sg_option *table);

/* Prints "  --name METAVAR   help" lines. */
void sg_options_print_help(FILE *out, const sg_option *table);

/* Parses "123", "64k", "32MiB", "1G" (powers of 1024). */
int sg_parse_size(uint64_t *out, const char *text, sg_error *err);

/* Parses a duration: one or more number-unit pairs ("1h30m"), units ms, s,
 * m, h, d; a bare number is seconds. Into milliseconds. */
int sg_parse_duration(uint64_t *ms, const char *text, sg_error *err);

/* Formats bytes as "1.5 GiB" into out. */
void sg_format_size(char *out, size_t size, uint64_t bytes);

#endif
