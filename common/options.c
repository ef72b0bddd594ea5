#include "common/options.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

int sg_parse_size(uint64_t *out, const char *text, sg_error *err)
{
    static const struct {
        const char *suffix;
        uint64_t factor;
    } units[] = {{"", 1},
                 {"b", 1},
                 {"k", 1ULL << 10},
                 {"kb", 1ULL << 10},
                 {"kib", 1ULL << 10},
                 {"m", 1ULL << 20},
                 {"mb", 1ULL << 20},
                 {"mib", 1ULL << 20},
                 {"g", 1ULL << 30},
                 {"gb", 1ULL << 30},
                 {"gib", 1ULL << 30}};
    char *end;
    unsigned long long value;
    errno = 0;
    if (!isdigit((unsigned char)*text))
        goto bad;
    value = strtoull(text, &end, 10);
    if (errno)
        goto bad;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            if (value > UINT64_MAX / units[i].factor)
                goto bad;
            *out = value * units[i].factor;
            return 0;
        }
    }
bad:
    sg_error_set(err, SG_E_USAGE, "invalid size \"%s\"", text);
    sg_error_hint(err, "use a number with an optional unit, e.g. 512k, 32MiB or 1G");
    return SG_E_USAGE;
}

int sg_parse_duration(uint64_t *ms, const char *text, sg_error *err)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *p = text;
    uint64_t total = 0;
    if (!isdigit((unsigned char)*p))
        goto bad;
    while (*p) {
        char *end;
        unsigned long long value;
        size_t unit_len, i;
        errno = 0;
        value = strtoull(p, &end, 10);
        if (errno || end == p)
            goto bad;
        unit_len = strspn(end, "abcdefghijklmnopqrstuvwxyz");
        if (unit_len == 0) {
            /* A bare number is seconds, and only on its own. */
            if (p != text || *end)
                goto bad;
            unit_len = 0;
            i = 1;
        } else {
            for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (strlen(units[i].unit) == unit_len && strncmp(end, units[i].unit, unit_len) == 0)
                    break;
            if (i == sizeof(units) / sizeof(units[0]))
                goto bad;
        }
        if (value > (UINT64_MAX - total) / units[i].ms)
            goto bad;
        total += value * units[i].ms;
        p = end + unit_len;
        if (*p && !isdigit((unsigned char)*p))
            goto bad;
    }
    *ms = total;
    return 0;
bad:
    sg_error_set(err, SG_E_USAGE, "invalid duration \"%s\"", text);
    sg_error_hint(err, "use a number with a unit, e.g. 500ms, 90s, 15m, 1h30m or 2d");
    return SG_E_USAGE;
}

void sg_format_size(char *out, size_t size, uint64_t bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = (double)bytes;
    size_t unit = 0;
    while (value >= 1024 && unit + 1 < sizeof(units) / sizeof(units[0])) {
        value /= 1024;
        unit++;
    }
    if (unit == 0)
        snprintf(out, size, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, size, "%.1f %s", value, units[unit]);
}

static int list_append(sg_strlist *list, const char *item, sg_error *err)
{
    const char **grown = sg_array_grow(list->items, list->count, sizeof(*grown));
    if (!grown)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    grown[list->count++] = item;
    list->items = grown;
    return 0;
}

static int set_value(void *settings, const sg_option *opt, const char *value, const char *source,
                     sg_error *err)
{
    char *base = settings;
    void *field = base + opt->offset;
    switch (opt->type) {
    case SG_OPT_FLAG:
        *(bool *)field = value == NULL || strcmp(value, "1") == 0 ||
                         strcasecmp(value, "true") == 0 || strcasecmp(value, "yes") == 0 ||
                         strcasecmp(value, "on") == 0;
        return 0;
    case SG_OPT_STRING:
        *(const char **)field = value;
        return 0;
    case SG_OPT_INT: {
        char *end;
        long v;
        errno = 0;
        v = strtol(value, &end, 10);
        /* strtol skips leading blanks; a value is digits with an optional sign. */
        if (errno || *end || end == value || isspace((unsigned char)value[0]) || v < INT_MIN ||
            v > INT_MAX || ((opt->min || opt->max) && (v < opt->min || v > opt->max))) {
            sg_error_set(err, SG_E_USAGE, "invalid value \"%s\" for %s", value, source);
            if (opt->min || opt->max)
                sg_error_hint(err, "use a whole number from %ld to %ld", opt->min, opt->max);
            return SG_E_USAGE;
        }
        *(int *)field = (int)v;
        return 0;
    }
    case SG_OPT_SIZE: {
        int rc = sg_parse_size((uint64_t *)field, value, err);
        if (rc < 0)
            sg_error_prefix(err, "%s", source);
        return rc;
    }
    case SG_OPT_LIST:
        return list_append((sg_strlist *)field, value, err);
    case SG_OPT_DURATION: {
        int rc = sg_parse_duration((uint64_t *)field, value, err);
        if (rc < 0)
            sg_error_prefix(err, "%s", source);
        return rc;
    }
    case SG_OPT_TABLE:
        break;
    }
    return sg_error_set(err, SG_E_INTERNAL, "unknown option type");
}

static void env_name(char *out, size_t size, const char *name)
{
    size_t i = 0;
    int n = snprintf(out, size, "SHARDGATE_");
    for (i = 0; name[i] && (size_t)n + i + 1 < size; i++)
        out[n + i] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    out[n + i] = '\0';
}

/* Walks a table and the tables it includes, calling fn with each option and
 * the offset its table's struct sits at. */
typedef int (*option_fn)(const sg_option *opt, size_t base, void *ctx);

static int each_option(const sg_option *table, size_t base, option_fn fn, void *ctx)
{
    for (const sg_option *opt = table; opt->name; opt++) {
        int rc = opt->type == SG_OPT_TABLE ? each_option(opt->table, base + opt->offset, fn, ctx)
                                           : fn(opt, base, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct option_match {
    const char *name;
    size_t name_len;
    const sg_option *opt;
    size_t base;
} option_match;

static int match_name(const sg_option *opt, size_t base, void *ctx)
{
    option_match *m = ctx;
    if (strlen(opt->name) != m->name_len || strncmp(opt->name, m->name, m->name_len) != 0)
        return 0;
    m->opt = opt;
    m->base = base;
    return 1;
}

typedef struct env_pass {
    char *settings;
    sg_error *err;
} env_pass;

static int set_from_env(const sg_option *opt, size_t base, void *ctx)
{
    env_pass *pass = ctx;
    char name[128];
    const char *value;
    if (opt->type == SG_OPT_LIST)
        return 0;
    env_name(name, sizeof(name), opt->name);
    value = getenv(name);
    if (!value || !*value)
        return 0;
    return set_value(pass->settings + base, opt, value, name, pass->err);
}

int sg_options_parse(void *settings, const sg_option *table, int argc, char **argv,
                     sg_strlist *positional, int *help, sg_error *err)
{
    bool only_positional = false;
    env_pass pass = {settings, err};
    int rc;
    *help = 0;
    positional->items = NULL;
    positional->count = 0;
    if ((rc = each_option(table, 0, set_from_env, &pass)) < 0)
        return rc;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = NULL;
        option_match m = {0};
        char source[160];
        if (only_positional || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if ((rc = list_append(positional, arg, err)) < 0)
                return rc;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            return sg_error_set(err, SG_E_USAGE, "unknown option \"%s\"", arg);
        arg += 2;
        m.name = arg;
        m.name_len = strcspn(arg, "=");
        if (m.name_len == 0 || !each_option(table, 0, match_name, &m)) {
            sg_error_set(err, SG_E_USAGE, "unknown option \"--%.*s\"", (int)m.name_len, arg);
            sg_error_hint(err, "run \"shardgate %s --help\" for the options of this command",
                          argv[0]);
            return SG_E_USAGE;
        }
        snprintf(source, sizeof(source), "--%s", m.opt->name);
        if (arg[m.name_len] == '=') {
            value = arg + m.name_len + 1;
            if (m.opt->type == SG_OPT_FLAG)
                return sg_error_set(err, SG_E_USAGE, "option %s takes no value", source);
        } else if (m.opt->type != SG_OPT_FLAG) {
            if (i + 1 >= argc)
                return sg_error_set(err, SG_E_USAGE, "option %s needs a value (%s)", source,
                                    m.opt->metavar ? m.opt->metavar : "VALUE");
            value = argv[++i];
        }
        if ((rc = set_value((char *)settings + m.base, m.opt, value, source, err)) < 0)
            return rc;
    }
    return 0;
}

static int free_list(const sg_option *opt, size_t base, void *settings)
{
    if (opt->type == SG_OPT_LIST) {
        sg_strlist *list = (sg_strlist *)((char *)settings + base + opt->offset);
        free(list->items);
        list->items = NULL;
        list->count = 0;
    }
    return 0;
}

void sg_options_free(void *settings, const sg_option *table)
{
    each_option(table, 0, free_list, settings);
}

static int print_help(const sg_option *opt, size_t base, void *out)
{
    char left[64];
    snprintf(left, sizeof(left), "--%s%s%s", opt->name, opt->metavar ? " " : "",
             opt->metavar ? opt->metavar : "");
    fprintf(out, "  %-28s %s%s\n", left, opt->help,
            opt->type == SG_OPT_LIST ? " (repeatable)" : "");
    return 0;
}

void sg_options_print_help(FILE *out, const sg_option *table)
{
    each_option(table, 0, print_help, out);
}
