#include "common/error.h"

#include <stdarg.h>
#include <string.h>

int sg_error_set(sg_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        err->detail[0] = '\0';
        err->hint[0] = '\0';
        err->sqlstate[0] = '\0';
    }
    return code;
}

static void append_line(char *dst, size_t size, const char *fmt, va_list ap)
{
    size_t used = strlen(dst);
    if (used > 0 && used + 1 < size) {
        dst[used++] = '\n';
        dst[used] = '\0';
    }
    if (used < size)
        vsnprintf(dst + used, size - used, fmt, ap);
}

void sg_error_detail(sg_error *err, const char *fmt, ...)
{
    va_list ap;
    if (!err)
        return;
    va_start(ap, fmt);
    append_line(err->detail, sizeof(err->detail), fmt, ap);
    va_end(ap);
}

void sg_error_hint(sg_error *err, const char *fmt, ...)
{
    va_list ap;
    if (!err)
        return;
    va_start(ap, fmt);
    append_line(err->hint, sizeof(err->hint), fmt, ap);
    va_end(ap);
}

void sg_error_prefix(sg_error *err, const char *fmt, ...)
{
    char prefix[256], old[sizeof(err->message)];
    va_list ap;
    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof(old));
    snprintf(err->message, sizeof(err->message), "%s: %s", prefix, old);
}

void sg_error_clear(sg_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

int sg_error_exit_status(int code)
{
    switch (code) {
    case SG_OK:
        return 0;
#define SG_ERROR_STATUS(name, status, text)                                                        \
    case name:                                                                                     \
        return status;
        SG_ERROR_TABLE(SG_ERROR_STATUS)
#undef SG_ERROR_STATUS
    default:
        return 70;
    }
}

const char *sg_error_class(int code)
{
    switch (code) {
    case SG_OK:
        return "ok";
#define SG_ERROR_TEXT(name, status, text)                                                          \
    case name:                                                                                     \
        return text;
        SG_ERROR_TABLE(SG_ERROR_TEXT)
#undef SG_ERROR_TEXT
    default:
        return "unknown";
    }
}

static void print_lines(FILE *out, const char *prog, const char *label, const char *text)
{
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        fprintf(out, "%s: %s: %.*s\n", prog, label, len, line);
        if (!end)
            break;
        line = end + 1;
    }
}

void sg_error_print(const sg_error *err, const char *prog, FILE *out)
{
    fprintf(out, "%s: error: %s\n", prog,
            err->message[0] ? err->message : sg_error_class(err->code));
    print_lines(out, prog, "detail", err->detail);
    print_lines(out, prog, "hint", err->hint);
}
