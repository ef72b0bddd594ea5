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

/* Context for the JSON lines: the run id of the whole process, and the
 * shard and step the calling thread works on (NULL clears). The strings must
 * outlive their use; they are not copied. Text lines do not show them: their
 * messages name the shard already. */
void sg_log_set_run(const char *run_id);
void sg_log_set_shard(const char *shard, const char *step);

/* An info line that ends a step, with how long it took ("duration_ms" in
 * JSON). */
void sg_log_step_done(double seconds, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
