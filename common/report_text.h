/* Text for the report files that monitoring and CI read (Prometheus
 * textfiles, JUnit XML): formatted appends to a buffer, and the escapes each
 * format needs for values that come from outside (shard names, error
 * messages). */
#ifndef SG_COMMON_REPORT_TEXT_H
#define SG_COMMON_REPORT_TEXT_H

#include "common/buf.h"
#include "common/error.h"

/* Appends printf-formatted text to b. */
int sg_report_appendf(sg_buf *b, sg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends value as the inside of a Prometheus label value: backslash, double
 * quote and newline escaped (the text exposition format). */
int sg_report_append_prometheus_label(sg_buf *b, const char *value, sg_error *err);

/* Appends text as XML 1.0 character data or attribute value: the five
 * predefined entities escaped, and each control character XML cannot hold
 * (all below 0x20 but tab and newline) replaced by a space. */
int sg_report_append_xml(sg_buf *b, const char *text, sg_error *err);

#endif
