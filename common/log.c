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

void sg_log_set_level(sg_log_level level)
{
    min_level = level;
}

void sg_log_set_json(int json)
{
    json_output = json;
}

static void emit(sg_log_level level, const char *message, const char *detail, const char *hint)
{
    pthread_mutex_lock(&log_lock);
    if (json_output) {
        json_t *obj = json_pack("{s:s, s:s}", "level", level_names[level], "message", message);
        char *line;
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

void sg_log(sg_log_level level, const char *fmt, ...)
{
    char message[2048];
    va_list ap;
    if (level < min_level)
        return;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    emit(level, message, NULL, NULL);
}

void sg_log_error(const sg_error *err)
{
    if (json_output) {
        emit(SG_LOG_ERROR, err->message, err->detail, err->hint);
        return;
    }
    pthread_mutex_lock(&log_lock);
    sg_error_print(err, "shardgate", stderr);
    pthread_mutex_unlock(&log_lock);
}
