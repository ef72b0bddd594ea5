#include "common/report_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sg_report_appendf(sg_buf *b, sg_error *err, const char *fmt, ...)
{
    size_t room = b->cap - b->len;
    va_list ap;
    int n, rc;
    /* Straight into the buffer's spare room, so the common short line
     * costs no allocation; a longer one is formatted again once it fits. */
    va_start(ap, fmt);
    n = vsnprintf(room ? (char *)b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return sg_error_set(err, SG_E_INTERNAL, "cannot format report text \"%s\"", fmt);
    if ((size_t)n >= room) {
        if ((rc = sg_buf_reserve(b, (size_t)n + 1, err)) < 0)
            return rc;
        va_start(ap, fmt);
        vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return 0;
}

/* Appends text, each byte in `special` replaced by what escape() gives for
 * it, copying the runs between them whole. */
static int append_escaped(sg_buf *b, const char *text, const char *special,
                          const char *(*escape)(unsigned char c), sg_error *err)
{
    int rc = 0;
    while (*text && rc == 0) {
        size_t run = strcspn(text, special);
        if ((rc = sg_buf_append(b, text, run, err)) < 0 || !text[run])
            break;
        const char *with = escape((unsigned char)text[run]);
        rc = sg_buf_append(b, with, strlen(with), err);
        text += run + 1;
    }
    return rc;
}

static const char *prometheus_escape(unsigned char c)
{
    return c == '\\' ? "\\\\" : c == '"' ? "\\\"" : "\\n";
}

int sg_report_append_prometheus_label(sg_buf *b, const char *value, sg_error *err)
{
    return append_escaped(b, value, "\\\"\n", prometheus_escape, err);
}

static const char *xml_escape(unsigned char c)
{
    switch (c) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '"':
        return "&quot;";
    case '\'':
        return "&apos;";
    default:
        return " ";
    }
}

/* XML 1.0 cannot hold control characters at all, even as references; tab
 * and newline are allowed. Bytes from 0x80 pass through: the text is UTF-8. */
static const char xml_special[] =
    "&<>\"'"
    "\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0d\x0e\x0f"
    "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f";

int sg_report_append_xml(sg_buf *b, const char *text, sg_error *err)
{
    return append_escaped(b, text, xml_special, xml_escape, err);
}
