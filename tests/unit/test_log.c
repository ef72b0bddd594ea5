/* Log lines: text, and JSON with the run, shard and step they belong to and
 * the duration of a step that ended. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "tests/harness/run.h"

/* Runs fn with stderr going to a file; returns what it wrote, to free. */
static char *captured(void (*fn)(void))
{
    char path[] = "/tmp/sg-test-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    ck_assert_int_ge(dup2(fd, 2), 0);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *text = sgt_read_file(path, NULL);
    unlink(path);
    ck_assert_ptr_nonnull(text);
    return text;
}

static void log_text(void)
{
    sg_log_set_json(0);
    sg_log_set_level(SG_LOG_INFO);
    sg_log_set_run("run-1");
    sg_log_set_shard("shard-a", "snapshot");
    sg_log_info("starting");
    sg_log_step_done(1.25, "shard-a: snapshot passed in %.1f s", 1.25);
    sg_log_debug("not shown");
    sg_log_set_shard(NULL, NULL);
    sg_log_set_run(NULL);
}

START_TEST(test_text_lines)
{
    char *text = captured(log_text);
    ck_assert_str_eq(text, "shardgate: info: starting\n"
                           "shardgate: info: shard-a: snapshot passed in 1.2 s\n");
    free(text);
}
END_TEST

static void log_json(void)
{
    sg_error err = {0};
    sg_log_set_json(1);
    sg_log_set_level(SG_LOG_INFO);
    sg_log_info("no context");
    sg_log_set_run("run-1");
    sg_log_set_shard("shard-a", "apply");
    sg_log_step_done(0.0424, "shard-a: apply passed");
    sg_error_set(&err, SG_E_DB, "it failed");
    sg_error_hint(&err, "look");
    sg_log_error(&err);
    sg_log_set_shard(NULL, NULL);
    sg_log_set_run(NULL);
    sg_log_set_json(0);
}

START_TEST(test_json_lines)
{
    char *text = captured(log_json), *line = text, *next;
    json_t *lines[3] = {NULL};
    for (int i = 0; i < 3; i++, line = next + 1) {
        ck_assert_ptr_nonnull(next = strchr(line, '\n'));
        *next = '\0';
        json_error_t jerr;
        lines[i] = json_loads(line, 0, &jerr);
        ck_assert_msg(lines[i] != NULL, "line %d: %s: %s", i, line, jerr.text);
    }
    ck_assert_str_eq(line, "");
    ck_assert_ptr_null(json_object_get(lines[0], "run_id"));
    ck_assert_ptr_null(json_object_get(lines[0], "shard"));
    ck_assert_str_eq(json_string_value(json_object_get(lines[1], "run_id")), "run-1");
    ck_assert_str_eq(json_string_value(json_object_get(lines[1], "shard")), "shard-a");
    ck_assert_str_eq(json_string_value(json_object_get(lines[1], "step")), "apply");
    ck_assert_int_eq(json_integer_value(json_object_get(lines[1], "duration_ms")), 42);
    ck_assert_str_eq(json_string_value(json_object_get(lines[2], "level")), "error");
    ck_assert_str_eq(json_string_value(json_object_get(lines[2], "hint")), "look");
    ck_assert_str_eq(json_string_value(json_object_get(lines[2], "shard")), "shard-a");
    ck_assert_ptr_null(json_object_get(lines[2], "duration_ms"));
    for (int i = 0; i < 3; i++)
        json_decref(lines[i]);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("text");
    tcase_add_test(tc, test_text_lines);
    suite_add_tcase(s, tc);
    tc = tcase_create("json");
    tcase_add_test(tc, test_json_lines);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
