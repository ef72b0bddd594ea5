#include "common/log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static sg_log_level min_level = SG_LOG_INFO;
static int json_output;
/* One line at a time from any thread. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"debug", "info", "warning", "error"};

static const char *run_id;
static _Thread_local const char *shard_name, *step_name;

void sg_log_set_run(const char *id)
{
    run_id = id;
}

void sg_log_set_shard(const char *shard, const char *step)
{
    shard_name = shard;
    step_name = step;
}

void sg_log_set_level(sg_log_level level)
{
    min_level = level;
}

void sg_log_set_json(int json)
{
    json_output = json;
}

/* duration_ms < 0: none */
static void emit(sg_log_level level, const char *message, const char *detail, const char *hint,
                 double duration_ms)
{
    pthread_mutex_lock(&log_lock);
    if (json_output) {
        json_t *obj = json_pack("{s:s, s:s}", "level", level_names[level], "message", message);
        char *line;
        if (obj && run_id)
            json_object_set_new(obj, "run_id", json_string(run_id));
        if (obj && shard_name)
            json_object_set_new(obj, "shard", json_string(shard_name));
        if (obj && step_name)
            json_object_set_new(obj, "step", json_string(step_name));
        if (obj && duration_ms >= 0)
            json_object_set_new(obj, "duration_ms", json_integer((json_int_t)(duration_ms + 0.5)));
        if (obj && detail && *detail)
            json_object_set_new(obj, "detail", json_string(detail));
        if (obj && hint && *hint)
            json_object_set_new(obj, "hint", json_string(hint));
        line = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        fprintf(stderr, "%s\n", line ? line : message);
        free(line);
        json_decref(obj);
    } else {
        fprintf(stderr, "shardgate: %s: %s\n", level_names[level], message);
    }
    pthread_mutex_unlock(&log_lock);
}

/* duration_ms < 0: none */
static void vlog(sg_log_level level, double duration_ms, const char *fmt, va_list ap)
{
    char message[2048];
    if (level < min_level)
        return;
    vsnprintf(message, sizeof(message), fmt, ap);
    emit(level, message, NULL, NULL, duration_ms);
}

void sg_log(sg_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, -1, fmt, ap);
    va_end(ap);
}

void sg_log_step_done(double seconds, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(SG_LOG_INFO, seconds * 1000.0, fmt, ap);
    va_end(ap);
}

void sg_log_error(const sg_error *err)
{
    if (json_output) {
        emit(SG_LOG_ERROR, err->message, err->detail, err->hint, -1);
        return;
    }
    pthread_mutex_lock(&log_lock);
    sg_error_print(err, "shardgate", stderr);
    pthread_mutex_unlock(&log_lock);
}
