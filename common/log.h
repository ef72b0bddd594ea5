/* Log lines on stderr: "shardgate: LEVEL: message", or one JSON object per
 * line with --log-format json. stdout is reserved for results. */
#ifndef SG_COMMON_LOG_H
#define SG_COMMON_LOG_H

#include "common/error.h"

typedef enum { SG_LOG_DEBUG, SG_LOG_INFO, SG_LOG_WARNING, SG_LOG_ERROR } sg_log_level;

void sg_log_set_level(sg_log_level level);
void sg_log_set_json(int json);
void sg_log(sg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define sg_log_debug(...) sg_log(SG_LOG_DEBUG, __VA_ARGS__)
#define sg_log_info(...) sg_log(SG_LOG_INFO, __VA_ARGS__)
#define sg_log_warning(...) sg_log(SG_LOG_WARNING, __VA_ARGS__)

/* Prints an error with its detail and hint lines, in the log format. */
void sg_log_error(const sg_error *err);

#endif
