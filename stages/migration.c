#include "stages/migration.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/mem.h"
#include "common/options.h"

const char *sg_migration_mode_name(sg_migration_mode mode)
{
    switch (mode) {
    case SG_MIGRATION_STATEMENTS:
        return "statements";
    case SG_MIGRATION_BLUEGREEN:
        return "bluegreen";
    default:
        return "transactional";
    }
}

/* One line of the file, without its newline. */
typedef struct line_view {
    const char *text;
    size_t len;
    unsigned number;
} line_view;

/* The part of a `-- shardgate:` line after the colon, or NULL when the line
 * is something else. */
static const char *marker_rest(const line_view *line, size_t *rest_len)
{
    static const char tag[] = "shardgate:";
    const char *p = line->text, *end = line->text + line->len;
    while (p < end && isspace((unsigned char)*p))
        p++;
    if (end - p < 2 || p[0] != '-' || p[1] != '-')
        return NULL;
    p += 2;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if ((size_t)(end - p) < sizeof(tag) - 1 || strncmp(p, tag, sizeof(tag) - 1) != 0)
        return NULL;
    p += sizeof(tag) - 1;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    *rest_len = (size_t)(end - p);
    return p;
}

static bool word_is(const char *word, size_t len, const char *expected)
{
    return strlen(expected) == len && strncmp(word, expected, len) == 0;
}

/* Whether the part after "shardgate:" is an allow line: `allow R1 R2`. */
static bool is_allow(const char *rest, size_t len)
{
    return len >= 5 && strncmp(rest, "allow", 5) == 0 &&
           (len == 5 || isspace((unsigned char)rest[5]));
}

static int format_error(sg_error *err, const char *file, unsigned line, const char *fmt,
                        const char *arg, size_t arg_len)
{
    char what[256];
    snprintf(what, sizeof(what), fmt, (int)arg_len, arg);
    return sg_error_set(err, SG_E_FORMAT, "%s:%u: %s", file, line, what);
}

static int add_allowed(sg_migration *m, const char *rest, size_t len, sg_error *err)
{
    const char *p = rest, *end = rest + len;
    while (p < end) {
        while (p < end && (isspace((unsigned char)*p) || *p == ','))
            p++;
        const char *word = p;
        while (p < end && !isspace((unsigned char)*p) && *p != ',')
            p++;
        if (p == word)
            break;
        char **grown = sg_array_grow(m->allowed, m->allowed_count, sizeof(char *));
        if (!grown)
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        m->allowed = grown;
        if (!(m->allowed[m->allowed_count] = sg_strndup(word, (size_t)(p - word))))
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        m->allowed_count++;
    }
    return 0;
}

static int parse_timeout(int64_t *out, const char *value, size_t len, const char *file,
                         unsigned line, sg_error *err)
{
    char text[64];
    uint64_t ms;
    sg_error parse_err = {0};
    if (len >= sizeof(text) ||
        (snprintf(text, sizeof(text), "%.*s", (int)len, value),
         sg_parse_duration(&ms, text, &parse_err)) < 0 ||
        ms > INT32_MAX)
        return format_error(err, file, line, "invalid duration \"%.*s\"", value, len);
    *out = (int64_t)ms;
    return 0;
}

/* One directive word of a header line: `irreversible`, `lock_timeout=2s`... */
static int apply_directive(sg_migration *m, const char *word, size_t len, unsigned line,
                           sg_error *err)
{
    const char *eq = memchr(word, '=', len);
    size_t key_len = eq ? (size_t)(eq - word) : len;
    const char *value = eq ? eq + 1 : NULL;
    size_t value_len = eq ? len - key_len - 1 : 0;
    if (!eq) {
        if (word_is(word, len, "irreversible"))
            m->irreversible = true;
        else if (word_is(word, len, "destructive"))
            m->destructive = true;
        else if (word_is(word, len, "data-change"))
            m->data_change = true;
        else
            return format_error(err, m->file, line, "unknown directive \"%.*s\"", word, len);
        return 0;
    }
    if (word_is(word, key_len, "transaction")) {
        bool off = word_is(value, value_len, "off");
        if (!off && !word_is(value, value_len, "on"))
            return format_error(err, m->file, line, "transaction must be on or off, not \"%.*s\"",
                                value, value_len);
        if (off && m->mode == SG_MIGRATION_BLUEGREEN)
            return format_error(err, m->file, line, "%.*s: mode=bluegreen runs its own steps", word,
                                len);
        /* the last word wins, as with the other directives */
        if (m->mode != SG_MIGRATION_BLUEGREEN)
            m->mode = off ? SG_MIGRATION_STATEMENTS : SG_MIGRATION_TRANSACTIONAL;
        return 0;
    }
    if (word_is(word, key_len, "lock_timeout"))
        return parse_timeout(&m->lock_timeout_ms, value, value_len, m->file, line, err);
    if (word_is(word, key_len, "statement_timeout"))
        return parse_timeout(&m->statement_timeout_ms, value, value_len, m->file, line, err);
    if (word_is(word, key_len, "mode")) {
        if (word_is(value, value_len, "bluegreen")) {
            if (m->mode == SG_MIGRATION_STATEMENTS)
                return format_error(err, m->file, line,
                                    "%.*s: transaction=off and mode=bluegreen exclude each other",
                                    word, len);
            m->mode = SG_MIGRATION_BLUEGREEN;
        } else if (!word_is(value, value_len, "transactional")) {
            return format_error(err, m->file, line,
                                "mode must be transactional or bluegreen, not \"%.*s\"", value,
                                value_len);
        }
        return 0;
    }
    if (word_is(word, key_len, "table")) {
        const char *dot = memchr(value, '.', value_len);
        if (!dot || dot == value || dot == value + value_len - 1)
            return format_error(err, m->file, line, "table must be SCHEMA.TABLE, not \"%.*s\"",
                                value, value_len);
        free(m->bluegreen_table);
        if (!(m->bluegreen_table = sg_strndup(value, value_len)))
            return sg_error_set(err, SG_E_NOMEM, "out of memory");
        return 0;
    }
    return format_error(err, m->file, line, "unknown directive \"%.*s\"", word, len);
}

static int apply_directives(sg_migration *m, const char *rest, size_t len, unsigned line,
                            sg_error *err)
{
    const char *p = rest, *end = rest + len;
    if (len == 0)
        return format_error(err, m->file, line, "empty shardgate line%.*s", "", 0);
    while (p < end) {
        while (p < end && isspace((unsigned char)*p))
            p++;
        const char *word = p;
        while (p < end && !isspace((unsigned char)*p))
            p++;
        if (p > word) {
            int rc = apply_directive(m, word, (size_t)(p - word), line, err);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Whether a header line holds anything but whitespace and a comment. */
static bool is_code(const line_view *line)
{
    const char *p = line->text, *end = line->text + line->len;
    while (p < end && isspace((unsigned char)*p))
        p++;
    return p < end && !(end - p >= 2 && p[0] == '-' && p[1] == '-');
}

static int parse_section(sg_migration *m, sg_migration_section *section, const char *start,
                         size_t len, sg_error *err)
{
    int rc = sg_sql_script_parse(&section->script, start, len, section->line + 1, err);
    if (rc == SG_E_FORMAT) {
        /* "LINE:COL: message" becomes "FILE:LINE:COL: message", as compilers say it */
        char message[sizeof(err->message)];
        snprintf(message, sizeof(message), "%s:%s", m->file, err->message);
        memcpy(err->message, message, sizeof(message));
    } else if (rc < 0) {
        sg_error_prefix(err, "%s", m->file);
    }
    return rc;
}

static int parse_name(sg_migration *m, const char *file, sg_error *err)
{
    const char *p = file;
    size_t len = strlen(file);
    while (isdigit((unsigned char)*p))
        p++;
    size_t digits = (size_t)(p - file);
    if (digits == 0 || digits > 18 || *p != '_' || len < digits + 6 ||
        strcmp(file + len - 4, ".sql") != 0) {
        sg_error_set(err, SG_E_FORMAT, "migration file name \"%s\" is not NNNN_name.sql", file);
        sg_error_hint(err, "the number is the version; files run in order of version");
        return SG_E_FORMAT;
    }
    for (const char *c = p + 1; c < file + len - 4; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            return sg_error_set(err, SG_E_FORMAT,
                                "migration file name \"%s\" has a character other than letters, "
                                "digits, '_' and '-' in its name",
                                file);
    m->version = strtoll(file, NULL, 10);
    if (!(m->name = sg_strndup(p + 1, len - digits - 5)))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    return 0;
}

int sg_migration_parse(sg_migration *out, const char *path, const char *file, const char *text,
                       size_t len, sg_error *err)
{
    sg_migration m = {.lock_timeout_ms = -1, .statement_timeout_ms = -1};
    sg_migration_section *current = NULL;
    const char *section_start = NULL;
    uint8_t digest[32];
    int rc;
    if (!(m.file = sg_strdup(file)) || !(m.path = sg_strdup(path))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = parse_name(&m, file, err)) < 0)
        goto done;
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        unsigned line = 1;
        for (const char *c = text; c < nul; c++)
            line += *c == '\n';
        rc = sg_error_set(err, SG_E_FORMAT, "%s:%u: not a text file (it holds a NUL byte)", file,
                          line);
        goto done;
    }
    sg_sha256(digest, text, len);
    sg_hex_encode(m.sha256, digest, sizeof(digest));

    line_view line = {text, 0, 0};
    for (const char *p = text; p <= text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        line = (line_view){p, nl ? (size_t)(nl - p) : (size_t)(text + len - p), line.number + 1};
        size_t rest_len = 0;
        const char *rest = marker_rest(&line, &rest_len);
        sg_migration_section *next = NULL;
        if (rest && word_is(rest, rest_len, "up"))
            next = &m.up;
        else if (rest && word_is(rest, rest_len, "down"))
            next = &m.down;
        else if (rest && word_is(rest, rest_len, "verify"))
            next = &m.verify;
        if (next) {
            if (next->line) {
                rc = format_error(err, file, line.number, "second %.*s section", rest, rest_len);
                sg_error_detail(err, "the first is at line %u", next->line);
                goto done;
            }
            if (current && (rc = parse_section(&m, current, section_start,
                                               (size_t)(line.text - section_start), err)) < 0)
                goto done;
            current = next;
            current->line = line.number;
            section_start = nl ? nl + 1 : text + len;
        } else if (!current && rest && is_allow(rest, rest_len)) {
            if ((rc = add_allowed(&m, rest + 5, rest_len - 5, err)) < 0)
                goto done;
        } else if (!current && rest) {
            if ((rc = apply_directives(&m, rest, rest_len, line.number, err)) < 0)
                goto done;
        } else if (current && rest && !is_allow(rest, rest_len)) {
            rc = format_error(err, file, line.number,
                              "\"%.*s\": directives go before the first section", rest, rest_len);
            goto done;
        } else if (!current && is_code(&line)) {
            rc = format_error(err, file, line.number,
                              "SQL before the first section%.*s (-- shardgate:up)", "", 0);
            goto done;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    if (current && (rc = parse_section(&m, current, section_start,
                                       (size_t)(text + len - section_start), err)) < 0)
        goto done;
    if (!m.up.line) {
        rc = sg_error_set(err, SG_E_FORMAT, "%s: no \"-- shardgate:up\" section", file);
        goto done;
    }
    if (m.mode == SG_MIGRATION_BLUEGREEN && !m.bluegreen_table) {
        rc = sg_error_set(err, SG_E_FORMAT, "%s: mode=bluegreen needs table=SCHEMA.TABLE", file);
        goto done;
    }
    if (m.bluegreen_table && m.mode != SG_MIGRATION_BLUEGREEN) {
        rc = sg_error_set(err, SG_E_FORMAT, "%s: table= is only for mode=bluegreen", file);
        goto done;
    }
    *out = m;
    memset(&m, 0, sizeof(m));
    rc = 0;
done:
    sg_migration_clear(&m);
    return rc;
}

/* By version, then by file name: so that two files with one version are
 * named in the same order whatever order the directory lists them in. */
static int by_version(const void *a, const void *b)
{
    const sg_migration *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return strcmp(x->file, y->file);
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

int sg_migration_set_load(sg_migration_set **out, const char *dir, sg_error *err)
{
    sg_migration_set *set = sg_calloc(1, sizeof(*set));
    DIR *d = NULL;
    char *path = NULL, *text = NULL;
    int rc = 0;
    *out = NULL;
    if (!set || !(set->dir = sg_strdup(dir))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if (!(d = opendir(dir))) {
        rc = sg_error_set(err, errno == ENOENT ? SG_E_NOT_FOUND : SG_E_IO,
                          "cannot read migrations directory %s: %s", dir, strerror(errno));
        goto done;
    }
    for (struct dirent *e; (errno = 0, e = readdir(d));) {
        size_t len;
        if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".sql"))
            continue;
        if (!(path = sg_asprintf("%s/%s", dir, e->d_name))) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
        if ((rc = sg_file_read(&text, &len, path, SG_MIGRATION_MAX_FILE, err)) < 0)
            goto done;
        sg_migration *grown = sg_array_grow(set->items, set->count, sizeof(*set->items));
        if (!grown) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
        set->items = grown;
        if ((rc = sg_migration_parse(&set->items[set->count], path, e->d_name, text, len, err)) < 0)
            goto done;
        set->count++;
        free(path);
        free(text);
        path = text = NULL;
    }
    if (errno) {
        rc = sg_error_set(err, SG_E_IO, "cannot read migrations directory %s: %s", dir,
                          strerror(errno));
        goto done;
    }
    if (set->count)
        qsort(set->items, set->count, sizeof(*set->items), by_version);
    for (size_t i = 1; i < set->count; i++) {
        if (set->items[i].version == set->items[i - 1].version) {
            rc = sg_error_set(err, SG_E_FORMAT, "two migrations have version %lld: %s and %s",
                              (long long)set->items[i].version, set->items[i - 1].file,
                              set->items[i].file);
            goto done;
        }
    }
    *out = set;
    set = NULL;
done:
    if (d)
        closedir(d);
    free(path);
    free(text);
    sg_migration_set_free(set);
    return rc;
}

const sg_migration *sg_migration_set_find(const sg_migration_set *set, int64_t version)
{
    size_t lo = 0, hi = set->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->items[mid].version == version)
            return &set->items[mid];
        if (set->items[mid].version < version)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

bool sg_migration_allows(const sg_migration *m, const char *rule)
{
    for (size_t i = 0; i < m->allowed_count; i++)
        if (strcmp(m->allowed[i], rule) == 0)
            return true;
    return false;
}

void sg_migration_clear(sg_migration *m)
{
    if (!m)
        return;
    free(m->name);
    free(m->file);
    free(m->path);
    free(m->bluegreen_table);
    for (size_t i = 0; i < m->allowed_count; i++)
        free(m->allowed[i]);
    free(m->allowed);
    sg_sql_script_free(m->up.script);
    sg_sql_script_free(m->down.script);
    sg_sql_script_free(m->verify.script);
    memset(m, 0, sizeof(*m));
}

void sg_migration_set_free(sg_migration_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        sg_migration_clear(&set->items[i]);
    free(set->items);
    free(set->dir);
    free(set);
}
