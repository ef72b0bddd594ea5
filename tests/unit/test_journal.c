/* The run journal: run ids, a new journal from a pipeline, transitions,
 * blue-green steps, resume gates, the JSON round trip and every parse error,
 * save and load against a real file store and a local file, listing,
 * merging partitions, and allocation failures. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/mem.h"
#include "pipeline/journal.h"
#include "tests/harness/run.h"

#define HASH "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define OTHER_HASH "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define FP1 "1111111111111111111111111111111111111111111111111111111111111111"
#define FP2 "2222222222222222222222222222222222222222222222222222222222222222"
#define RUN_ID "20240501T020000Z-1a2b3c4d"
#define SNAPSHOT_ID "20240501T020001Z-0123456789abcdef"

/* ---- a pipeline: a canary stage (a) and a wave (d, b, e, c) ---- */

static char *names[] = {"a", "b", "c", "d", "e"};
static sg_pipeline_shard fleet[5];
static size_t canary[] = {0};
static size_t wave[] = {3, 1, 4, 2};
static sg_pipeline_stage stages[2];
static size_t by_name[] = {0, 1, 2, 3, 4};
static sg_pipeline_config cfg;

static void config_init(void)
{
    for (size_t i = 0; i < 5; i++)
        fleet[i] = (sg_pipeline_shard){.name = names[i], .stage = i == 0 ? 0 : 1};
    stages[0] = (sg_pipeline_stage){.name = "canary", .shards = canary, .nshards = 1};
    stages[1] = (sg_pipeline_stage){.name = "wave", .shards = wave, .nshards = 4};
    cfg = (sg_pipeline_config){.name = "nightly",
                               .target = 7,
                               .fleet = fleet,
                               .nfleet = 5,
                               .stages = stages,
                               .nstages = 2,
                               .by_name = by_name};
}

static void assert_contains(const char *haystack, const char *needle)
{
    ck_assert_msg(strstr(haystack, needle) != NULL, "\"%s\" does not contain \"%s\"", haystack,
                  needle);
}

static bool is_utc_time(const char *s)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:ddZ";
    for (size_t i = 0; pattern[i]; i++)
        if (pattern[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pattern[i])
            return false;
    return strlen(s) == strlen(pattern);
}

static sg_journal *new_journal(unsigned k, unsigned n, const bool *selected)
{
    sg_journal *j = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_journal_new(&j, RUN_ID, &cfg, HASH, k, n, selected, &err) == 0, "%s",
                  err.message);
    return j;
}

static void set_gate(sg_journal_gate_entry *g, const char *started_at, int rc, uint64_t ms,
                     const char *message)
{
    snprintf(g->started_at, sizeof(g->started_at), "%s", started_at);
    g->ran = true;
    g->rc = rc;
    g->ms = ms;
    snprintf(g->message, sizeof(g->message), "%s", message);
}

static void bluegreen_step(sg_journal *j, size_t shard, int64_t version, const char *step,
                           double lock_ms)
{
    sg_error err = {0};
    ck_assert_msg(sg_journal_bluegreen_step(j, shard, version, step, lock_ms, &err) == 0, "%s",
                  err.message);
}

/* shards[0] (a) went through two blue-green changes: 5 to its end, 7 cut
 * over and swapped back (its verify failed). Ten steps: the list grows
 * past 8. */
static const struct {
    int64_t version;
    const char *step;
    double lock_ms;
} a_steps[] = {{5, "prepared", -1},      {5, "synced", -1},   {5, "backfilled", -1},
               {5, "indexed", -1},       {5, "verified", -1}, {5, "cut-over", 12.5},
               {5, "finalized", -1},     {7, "prepared", -1}, {7, "cut-over", 0.3},
               {7, "swapped-back", 3.25}};
#define A_STEPS (sizeof(a_steps) / sizeof(a_steps[0]))

/* A journal with every field set: shards[0] (a) verified, with blue-green
 * steps, shards[1] (d) failed at apply, shards[2] (b) in its test restore,
 * the rest pending. */
static sg_journal *full_journal(void)
{
    sg_journal *j = new_journal(2, 3, NULL);
    sg_journal_shard *a = &j->shards[0], *d = &j->shards[1], *b = &j->shards[2];

    for (size_t i = 0; i < A_STEPS; i++) {
        bluegreen_step(j, 0, a_steps[i].version, a_steps[i].step, a_steps[i].lock_ms);
        snprintf(a->bluegreen[i].at, sizeof(a->bluegreen[i].at), "2024-05-01T02:03:%02zuZ", 10 + i);
    }

    j->status = SG_RUN_HALTED;
    strcpy(j->started_at, "2024-05-01T02:00:00Z");
    strcpy(j->updated_at, "2024-05-01T02:10:00Z");
    j->stages[0] = (sg_journal_stage){j->stages[0].name, SG_STAGE_DONE, "2024-05-01T02:00:01Z",
                                      "2024-05-01T02:05:00Z"};
    j->stages[1].state = SG_STAGE_FAILED;
    strcpy(j->stages[1].started_at, "2024-05-01T02:05:01Z");

    a->state = SG_SHARD_VERIFIED;
    set_gate(&a->gates[SG_GATE_SNAPSHOT], "2024-05-01T02:00:01Z", 0, 61000, "");
    set_gate(&a->gates[SG_GATE_TEST_RESTORE], "2024-05-01T02:01:02Z", 0, 120500, "");
    set_gate(&a->gates[SG_GATE_APPLY], "2024-05-01T02:03:03Z", 0, 2, "");
    set_gate(&a->gates[SG_GATE_VERIFY], "2024-05-01T02:03:04Z", 0, 900, "");
    strcpy(a->snapshot_id, SNAPSHOT_ID);
    a->snapshot_bytes = 5368709120;
    a->from_version = 3;
    a->to_version = 7;
    a->applied = 4;
    strcpy(a->rehearsal_fingerprint, FP1);
    strcpy(a->live_fingerprint, FP1);
    a->tables_verified = 12;

    d->state = SG_SHARD_FAILED;
    set_gate(&d->gates[SG_GATE_SNAPSHOT], "2024-05-01T02:05:01Z", 0, 1000, "");
    set_gate(&d->gates[SG_GATE_TEST_RESTORE], "2024-05-01T02:05:02Z", 0, 2000, "");
    set_gate(&d->gates[SG_GATE_APPLY], "2024-05-01T02:05:04Z", SG_E_DB, 30000,
             "d: apply: canceling statement due to lock timeout on \"café\"");
    strcpy(d->snapshot_id, SNAPSHOT_ID);
    d->from_version = 3;
    d->to_version = 5;
    d->applied = 2;
    strcpy(d->rehearsal_fingerprint, FP2);
    d->has_failure = true;
    d->failure.gate = SG_GATE_APPLY;
    d->failure.code = SG_E_DB;
    strcpy(d->failure.message, d->gates[SG_GATE_APPLY].message);

    b->state = SG_SHARD_SNAPSHOTTED;
    set_gate(&b->gates[SG_GATE_SNAPSHOT], "2024-05-01T02:05:01Z", 0, 500, "");
    strcpy(b->gates[SG_GATE_TEST_RESTORE].started_at, "2024-05-01T02:05:02Z");
    strcpy(b->snapshot_id, "20240501T020501Z-fedcba9876543210");
    return j;
}

static void assert_journal_eq(const sg_journal *x, const sg_journal *y)
{
    ck_assert_str_eq(x->run_id, y->run_id);
    ck_assert_str_eq(x->pipeline, y->pipeline);
    ck_assert_str_eq(x->config_sha256, y->config_sha256);
    ck_assert_int_eq(x->target, y->target);
    ck_assert_uint_eq(x->part_k, y->part_k);
    ck_assert_uint_eq(x->part_n, y->part_n);
    ck_assert_int_eq(x->status, y->status);
    ck_assert_str_eq(x->started_at, y->started_at);
    ck_assert_str_eq(x->updated_at, y->updated_at);
    ck_assert_uint_eq(x->nstages, y->nstages);
    for (size_t i = 0; i < x->nstages; i++) {
        ck_assert_str_eq(x->stages[i].name, y->stages[i].name);
        ck_assert_int_eq(x->stages[i].state, y->stages[i].state);
        ck_assert_str_eq(x->stages[i].started_at, y->stages[i].started_at);
        ck_assert_str_eq(x->stages[i].finished_at, y->stages[i].finished_at);
    }
    ck_assert_uint_eq(x->nshards, y->nshards);
    for (size_t i = 0; i < x->nshards; i++) {
        const sg_journal_shard *a = &x->shards[i], *b = &y->shards[i];
        ck_assert_str_eq(a->name, b->name);
        ck_assert_uint_eq(a->stage, b->stage);
        ck_assert_int_eq(a->state, b->state);
        for (int g = 0; g < SG_GATE_COUNT; g++) {
            ck_assert_str_eq(a->gates[g].started_at, b->gates[g].started_at);
            ck_assert_int_eq(a->gates[g].ran, b->gates[g].ran);
            ck_assert_int_eq(a->gates[g].rc, b->gates[g].rc);
            ck_assert_uint_eq(a->gates[g].ms, b->gates[g].ms);
            ck_assert_str_eq(a->gates[g].message, b->gates[g].message);
        }
        ck_assert_str_eq(a->snapshot_id, b->snapshot_id);
        ck_assert_uint_eq(a->snapshot_bytes, b->snapshot_bytes);
        ck_assert_int_eq(a->from_version, b->from_version);
        ck_assert_int_eq(a->to_version, b->to_version);
        ck_assert_uint_eq(a->applied, b->applied);
        ck_assert_str_eq(a->rehearsal_fingerprint, b->rehearsal_fingerprint);
        ck_assert_str_eq(a->live_fingerprint, b->live_fingerprint);
        ck_assert_uint_eq(a->tables_verified, b->tables_verified);
        ck_assert_int_eq(a->has_failure, b->has_failure);
        ck_assert_int_eq(a->failure.gate, b->failure.gate);
        ck_assert_int_eq(a->failure.code, b->failure.code);
        ck_assert_str_eq(a->failure.message, b->failure.message);
        ck_assert_uint_eq(a->nbluegreen, b->nbluegreen);
        for (size_t k = 0; k < a->nbluegreen; k++) {
            ck_assert_int_eq(a->bluegreen[k].version, b->bluegreen[k].version);
            ck_assert_str_eq(a->bluegreen[k].step, b->bluegreen[k].step);
            ck_assert_str_eq(a->bluegreen[k].at, b->bluegreen[k].at);
            ck_assert_double_eq(a->bluegreen[k].lock_ms, b->bluegreen[k].lock_ms);
        }
    }
}

static char *to_json(const sg_journal *j)
{
    char *text = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_journal_to_json(&text, j, &err) == 0, "%s", err.message);
    return text;
}

static sg_journal *parse(const char *text)
{
    sg_journal *j = NULL;
    sg_error err = {0};
    ck_assert_msg(sg_journal_parse(&j, text, strlen(text), &err) == 0, "%s", err.message);
    return j;
}

/* ---- run ids ---- */

START_TEST(test_run_id)
{
    static const char *const bad[] = {"",    "../x",   ".hidden",
                                      "a/b", "run id", "0123456789012345678901234567890123456789"};
    char id[SG_RUN_ID_MAX], other[SG_RUN_ID_MAX];
    sg_error err = {0};

    sg_journal_new_run_id(id);
    sg_journal_new_run_id(other);
    ck_assert_uint_eq(strlen(id), 25);
    ck_assert_uint_eq(strspn(id, "0123456789"), 8);
    ck_assert_int_eq(id[8], 'T');
    ck_assert_uint_eq(strspn(id + 9, "0123456789"), 6);
    ck_assert(id[15] == 'Z' && id[16] == '-');
    ck_assert_uint_eq(strspn(id + 17, "0123456789abcdef"), 8);
    ck_assert_str_ne(id, other);
    ck_assert_int_eq(sg_journal_run_id_check(id, &err), 0);
    ck_assert_int_eq(sg_journal_run_id_check("nightly_2.retry-1", &err), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char expected[128];
        ck_assert_int_eq(sg_journal_run_id_check(bad[i], &err), SG_E_USAGE);
        snprintf(expected, sizeof(expected), "invalid run id \"%s\"", bad[i]);
        ck_assert_str_eq(err.message, expected);
    }
}
END_TEST

/* ---- new ---- */

START_TEST(test_new_all)
{
    static const char *const order[] = {"a", "d", "b", "e", "c"};
    sg_journal *j = new_journal(0, 0, NULL);

    ck_assert_str_eq(j->run_id, RUN_ID);
    ck_assert_str_eq(j->pipeline, "nightly");
    ck_assert_str_eq(j->config_sha256, HASH);
    ck_assert_int_eq(j->target, 7);
    ck_assert_uint_eq(j->part_k, 0);
    ck_assert_uint_eq(j->part_n, 0);
    ck_assert_int_eq(j->status, SG_RUN_RUNNING);
    ck_assert(is_utc_time(j->started_at));
    ck_assert_str_eq(j->updated_at, j->started_at);
    ck_assert_uint_eq(j->nstages, 2);
    ck_assert_str_eq(j->stages[1].name, "wave");
    ck_assert_int_eq(j->stages[1].state, SG_STAGE_PENDING);
    ck_assert_str_eq(j->stages[1].started_at, "");
    ck_assert_uint_eq(j->nshards, 5);
    for (size_t i = 0; i < 5; i++) {
        ck_assert_str_eq(j->shards[i].name, order[i]);
        ck_assert_uint_eq(j->shards[i].stage, i == 0 ? 0 : 1);
        ck_assert_int_eq(j->shards[i].state, SG_SHARD_PENDING);
        ck_assert_int_eq(sg_journal_shard_find(j, order[i]), (long)i);
    }
    ck_assert_int_eq(sg_journal_shard_find(j, "f"), -1);
    ck_assert_int_eq(sg_journal_shard_find(j, ""), -1);
    sg_journal_free(j);
    sg_journal_free(NULL);
}
END_TEST

START_TEST(test_new_partition)
{
    bool selected[5] = {false, true, false, true, false}; /* b, d */
    sg_journal *j = new_journal(2, 2, selected);
    ck_assert_uint_eq(j->part_k, 2);
    ck_assert_uint_eq(j->part_n, 2);
    ck_assert_uint_eq(j->nstages, 2);
    ck_assert_uint_eq(j->nshards, 2);
    ck_assert_str_eq(j->shards[0].name, "d");
    ck_assert_str_eq(j->shards[1].name, "b");
    ck_assert_int_eq(sg_journal_shard_find(j, "a"), -1);
    ck_assert_int_eq(sg_journal_shard_find(j, "b"), 1);
    sg_journal_free(j);
}
END_TEST

START_TEST(test_new_errors)
{
    sg_journal *j = NULL;
    sg_error err = {0};
    ck_assert_int_eq(sg_journal_new(&j, "../x", &cfg, HASH, 0, 0, NULL, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid run id \"../x\"");
    ck_assert_int_eq(sg_journal_new(&j, RUN_ID, &cfg, HASH, 3, 2, NULL, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid partition 3/2");
    ck_assert_int_eq(sg_journal_new(&j, RUN_ID, &cfg, HASH, 1, 0, NULL, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid partition 1/0");
    ck_assert_int_eq(sg_journal_new(&j, RUN_ID, &cfg, HASH, 0, 2, NULL, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid partition 0/2");
    ck_assert_int_eq(sg_journal_new(&j, RUN_ID, &cfg, "abc", 0, 0, NULL, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "invalid pipeline file hash \"abc\"");
    ck_assert_ptr_null(j);
}
END_TEST

/* ---- JSON ---- */

START_TEST(test_round_trip)
{
    sg_journal *j = full_journal(), *back = NULL;
    char *text = to_json(j), *again = NULL;

    ck_assert_int_eq(text[strlen(text) - 1], '\n');
    ck_assert_ptr_eq(strchr(text, '\n'), text + strlen(text) - 1);
    assert_contains(text, "{\"format\":1,\"run_id\":\"" RUN_ID "\",\"pipeline\":\"nightly\"");
    assert_contains(text, "\"target\":7,\"partition\":{\"k\":2,\"n\":3},\"status\":\"halted\"");
    assert_contains(text, "{\"name\":\"wave\",\"state\":\"failed\",\"started_at\":\"2024-05-01T02:"
                          "05:01Z\",\"finished_at\":null}");
    assert_contains(text, "\"apply\":{\"started_at\":\"2024-05-01T02:05:04Z\",\"ran\":true,"
                          "\"error\":\"database\",\"ms\":30000,");
    assert_contains(text, "\"failure\":{\"gate\":\"apply\",\"error\":\"database\",\"message\":"
                          "\"d: apply: canceling statement due to lock timeout on \\\"café\\\"\"}");
    /* b's test restore started and has not finished; its later gates are left out */
    assert_contains(text, "\"gates\":{\"snapshot\":{\"started_at\":\"2024-05-01T02:05:01Z\","
                          "\"ran\":true,\"error\":null,\"ms\":500,\"message\":\"\"},"
                          "\"test-restore\":{\"started_at\":\"2024-05-01T02:05:02Z\",\"ran\":"
                          "false,\"error\":null,\"ms\":0,\"message\":\"\"}},\"failure\":null}");
    /* a's blue-green steps, in the order reached, the lock only where there is one */
    assert_contains(text, "\"gates\":{\"snapshot\":{\"started_at\":\"2024-05-01T02:00:01Z\","
                          "\"ran\":true,\"error\":null,\"ms\":61000,\"message\":\"\"},");
    assert_contains(text, "\"message\":\"\"}},\"bluegreen\":[{\"version\":5,\"step\":\"prepared\","
                          "\"at\":\"2024-05-01T02:03:10Z\"},{\"version\":5,\"step\":\"synced\",");
    assert_contains(text, "{\"version\":5,\"step\":\"cut-over\",\"at\":\"2024-05-01T02:03:15Z\","
                          "\"lock_ms\":12.5},{\"version\":5,\"step\":\"finalized\",");
    assert_contains(text, "{\"version\":7,\"step\":\"cut-over\",\"at\":\"2024-05-01T02:03:18Z\","
                          "\"lock_ms\":0.3},{\"version\":7,\"step\":\"swapped-back\",\"at\":"
                          "\"2024-05-01T02:03:19Z\",\"lock_ms\":3.25}],\"failure\":null}");
    assert_contains(text,
                    "\"name\":\"c\",\"stage\":\"wave\",\"state\":\"pending\",\"snapshot_id\":"
                    "null,\"snapshot_bytes\":0,\"from_version\":0,\"to_version\":0,\"applied\":0,"
                    "\"rehearsal_fingerprint\":null,\"live_fingerprint\":null,"
                    "\"tables_verified\":0,\"gates\":{},\"failure\":null}");

    back = parse(text);
    assert_journal_eq(j, back);
    ck_assert_int_eq(sg_journal_shard_find(back, "e"), 3);
    again = to_json(back);
    ck_assert_str_eq(again, text);
    free(again);
    free(text);
    sg_journal_free(back);

    /* the whole fleet, to the latest migration */
    j->part_k = j->part_n = 0;
    j->target = SG_PIPELINE_TARGET_LATEST;
    text = to_json(j);
    assert_contains(text, "\"target\":\"latest\",\"partition\":null,");
    back = parse(text);
    assert_journal_eq(j, back);
    free(text);
    sg_journal_free(back);
    sg_journal_free(j);
}
END_TEST

/* Fields that cannot be written refuse the whole document. */
START_TEST(test_to_json_errors)
{
    sg_journal *j = full_journal();
    char *text = NULL;
    sg_error err = {0};

    j->shards[0].gates[SG_GATE_APPLY].rc = 5;
    ck_assert_int_eq(sg_journal_to_json(&text, j, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "journal: shards[0].gates.apply: 5 is not an error code");
    ck_assert_ptr_null(text);
    j->shards[0].gates[SG_GATE_APPLY].rc = 0;

    j->shards[1].failure.code = 0;
    ck_assert_int_eq(sg_journal_to_json(&text, j, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "journal: shards[1].failure: 0 is not an error code");
    j->shards[1].failure.code = SG_E_DB;

    free(j->stages[1].name);
    j->stages[1].name = strdup("w\xffve");
    ck_assert_int_eq(sg_journal_to_json(&text, j, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "journal: stages[1].name: not valid UTF-8");
    ck_assert_ptr_null(text);

    free(j->stages[1].name);
    j->stages[1].name = strdup("wave");
    /* a step the reader would refuse is not written: the run could not be
     * resumed from it */
    j->shards[0].bluegreen[2].version = 0;
    ck_assert_int_eq(sg_journal_to_json(&text, j, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "journal: shards[0].bluegreen[2]: invalid blue-green step "
                                  "\"backfilled\" of version 0 at \"2024-05-01T02:03:12Z\"");
    ck_assert_ptr_null(text);
    j->shards[0].bluegreen[2].version = 5;
    strcpy(j->shards[0].bluegreen[2].step, "none");
    ck_assert_int_eq(sg_journal_to_json(&text, j, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "journal: shards[0].bluegreen[2]: invalid blue-green step "
                                  "\"none\" of version 5 at \"2024-05-01T02:03:12Z\"");
    strcpy(j->shards[0].bluegreen[2].step, "backfilled");
    j->shards[0].bluegreen[2].at[0] = '\0';
    ck_assert_int_eq(sg_journal_to_json(&text, j, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "journal: shards[0].bluegreen[2]: invalid blue-green step "
                                  "\"backfilled\" of version 5 at \"\"");
    ck_assert_ptr_null(text);
    strcpy(j->shards[0].bluegreen[2].at, "2024-05-01T02:03:12Z");

    /* messages are cleaned, not refused */
    strcpy(j->shards[1].gates[SG_GATE_APPLY].message, "bad \xff byte");
    text = to_json(j);
    assert_contains(text, "\"message\":\"bad ? byte\"");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* One mutation of the full journal's JSON: the value at path set to the
 * JSON text `value` (NULL: removed), and the message parsing it gives. */
typedef struct bad_field {
    const char *path, *value, *message;
} bad_field;

static const bad_field bad_fields[] = {
    {"format", NULL, "journal: format: missing"},
    {"format", "\"1\"", "journal: format: must be an integer"},
    {"format", "2", "journal: format: version 2 is not supported (this shardgate reads version 1)"},
    {"format", "0", "journal: format: version 0 is not supported (this shardgate reads version 1)"},
    {"colour", "1", "journal: colour: unknown field"},
    {"run_id", NULL, "journal: run_id: missing"},
    {"run_id", "\"../x\"", "journal: run_id: invalid run id \"../x\""},
    {"pipeline", "5", "journal: pipeline: must be a string"},
    {"pipeline", "\"\"", "journal: pipeline: must not be empty"},
    {"config_sha256", "\"abc\"", "journal: config_sha256: must be 64 hexadecimal digits"},
    {"config_sha256", "null", "journal: config_sha256: must be a string"},
    {"target", NULL, "journal: target: missing"},
    {"target", "\"newest\"",
     "journal: target: must be \"latest\" or a version (an integer from 0)"},
    {"target", "-1", "journal: target: must be \"latest\" or a version (an integer from 0)"},
    {"partition", NULL, "journal: partition: missing"},
    {"partition", "\"2/3\"", "journal: partition: must be an object or null"},
    {"partition.k", "4", "journal: partition.k: must be an integer from 1 to 3"},
    {"partition.n", "0", "journal: partition.n: must be an integer from 1 to 4294967295"},
    {"partition.x", "1", "journal: partition.x: unknown field"},
    {"status", "\"sideways\"", "journal: status: unknown status \"sideways\""},
    {"started_at", "\"yesterday\"",
     "journal: started_at: must be a UTC time (YYYY-MM-DDTHH:MM:SSZ)"},
    {"updated_at", "null", "journal: updated_at: must be a string"},
    {"stages", "{}", "journal: stages: must be an array"},
    {"stages[0]", "1", "journal: stages[0]: must be an object"},
    {"stages[0].colour", "1", "journal: stages[0].colour: unknown field"},
    {"stages[0].name", "\"\"", "journal: stages[0].name: must not be empty"},
    {"stages[1].name", "\"canary\"", "journal: stages[1].name: duplicate stage \"canary\""},
    {"stages[0].state", "\"sideways\"", "journal: stages[0].state: unknown state \"sideways\""},
    {"stages[1].finished_at", "5", "journal: stages[1].finished_at: must be a string or null"},
    {"stages[0].started_at", "\"2024-05-01T02:00:01.5Z\"",
     "journal: stages[0].started_at: must be a UTC time (YYYY-MM-DDTHH:MM:SSZ)"},
    {"shards", NULL, "journal: shards: missing"},
    {"shards[2]", "[]", "journal: shards[2]: must be an object"},
    {"shards[0].colour", "1", "journal: shards[0].colour: unknown field"},
    {"shards[0].name", "\"../a\"", "journal: shards[0].name: invalid shard name \"../a\""},
    {"shards[2].name", "\"a\"", "journal: shards[2].name: duplicate shard \"a\""},
    {"shards[0].stage", "\"nope\"", "journal: shards[0].stage: unknown stage \"nope\""},
    {"shards[2].state", "\"sideways\"", "journal: shards[2].state: unknown state \"sideways\""},
    {"shards[0].snapshot_id", "\"a/b\"",
     "journal: shards[0].snapshot_id: invalid snapshot id \"a/b\""},
    {"shards[0].snapshot_id", "7", "journal: shards[0].snapshot_id: must be a string or null"},
    {"shards[0].snapshot_bytes", NULL, "journal: shards[0].snapshot_bytes: missing"},
    {"shards[0].snapshot_bytes", "-1",
     "journal: shards[0].snapshot_bytes: must be an integer from 0 to 9223372036854775807"},
    {"shards[0].snapshot_bytes", "null", "journal: shards[0].snapshot_bytes: must be an integer"},
    {"shards[0].from_version", "\"3\"", "journal: shards[0].from_version: must be an integer"},
    {"shards[0].to_version", "-2",
     "journal: shards[0].to_version: must be an integer from 0 to 9223372036854775807"},
    {"shards[0].applied", "1.5", "journal: shards[0].applied: must be an integer"},
    {"shards[0].rehearsal_fingerprint", "\"ABC\"",
     "journal: shards[0].rehearsal_fingerprint: must be 64 hexadecimal digits"},
    {"shards[0].live_fingerprint", NULL, "journal: shards[0].live_fingerprint: missing"},
    {"shards[0].tables_verified", NULL, "journal: shards[0].tables_verified: missing"},
    {"shards[0].gates", "[]", "journal: shards[0].gates: must be an object"},
    {"shards[0].gates.jump", "{}", "journal: shards[0].gates.jump: unknown gate"},
    {"shards[0].gates.snapshot", "1", "journal: shards[0].gates.snapshot: must be an object"},
    {"shards[0].gates.snapshot.extra", "1",
     "journal: shards[0].gates.snapshot.extra: unknown field"},
    {"shards[0].gates.snapshot.started_at", "\"2024-05-01 02:00:01\"",
     "journal: shards[0].gates.snapshot.started_at: must be a UTC time (YYYY-MM-DDTHH:MM:SSZ)"},
    {"shards[0].gates.snapshot.ran", "1",
     "journal: shards[0].gates.snapshot.ran: must be true or false"},
    {"shards[1].gates.apply.error", "\"bad\"",
     "journal: shards[1].gates.apply.error: unknown error class \"bad\""},
    {"shards[0].gates.verify.ms", "-1",
     "journal: shards[0].gates.verify.ms: must be an integer from 0 to 9223372036854775807"},
    {"shards[0].gates.verify.message", "LONG",
     "journal: shards[0].gates.verify.message: longer than 511 bytes"},
    {"shards[0].gates.verify.message", "null",
     "journal: shards[0].gates.verify.message: must be a string"},
    {"shards[1].failure", NULL, "journal: shards[1].failure: missing"},
    {"shards[1].failure", "\"apply\"", "journal: shards[1].failure: must be an object or null"},
    {"shards[1].failure.when", "1", "journal: shards[1].failure.when: unknown field"},
    {"shards[1].failure.gate", "\"jump\"",
     "journal: shards[1].failure.gate: unknown gate \"jump\""},
    {"shards[1].failure.error", "\"ok\"",
     "journal: shards[1].failure.error: unknown error class \"ok\""},
    {"shards[1].failure.error", "null", "journal: shards[1].failure.error: must be a string"},
    {"shards[1].failure.message", NULL, "journal: shards[1].failure.message: missing"},
    {"shards[0].bluegreen", "{}", "journal: shards[0].bluegreen: must be an array"},
    {"shards[0].bluegreen", "null", "journal: shards[0].bluegreen: must be an array"},
    {"shards[0].bluegreen[0]", "7", "journal: shards[0].bluegreen[0]: must be an object"},
    {"shards[0].bluegreen[0].colour", "1", "journal: shards[0].bluegreen[0].colour: unknown field"},
    {"shards[0].bluegreen[0].version", NULL, "journal: shards[0].bluegreen[0].version: missing"},
    {"shards[0].bluegreen[0].version", "\"5\"",
     "journal: shards[0].bluegreen[0].version: must be an integer"},
    {"shards[0].bluegreen[0].version", "0",
     "journal: shards[0].bluegreen[0].version: must be an integer from 1 to 9223372036854775807"},
    {"shards[0].bluegreen[0].version", "-5",
     "journal: shards[0].bluegreen[0].version: must be an integer from 1 to 9223372036854775807"},
    {"shards[0].bluegreen[1].step", NULL, "journal: shards[0].bluegreen[1].step: missing"},
    {"shards[0].bluegreen[1].step", "3", "journal: shards[0].bluegreen[1].step: must be a string"},
    {"shards[0].bluegreen[1].step", "\"none\"",
     "journal: shards[0].bluegreen[1].step: unknown blue-green step \"none\""},
    {"shards[0].bluegreen[1].step", "\"cut_over\"",
     "journal: shards[0].bluegreen[1].step: unknown blue-green step \"cut_over\""},
    {"shards[0].bluegreen[2].at", NULL, "journal: shards[0].bluegreen[2].at: missing"},
    {"shards[0].bluegreen[2].at", "null", "journal: shards[0].bluegreen[2].at: must be a string"},
    {"shards[0].bluegreen[2].at", "\"2024-05-01T02:03:12+00:00\"",
     "journal: shards[0].bluegreen[2].at: must be a UTC time (YYYY-MM-DDTHH:MM:SSZ)"},
    {"shards[0].bluegreen[5].lock_ms", "-1",
     "journal: shards[0].bluegreen[5].lock_ms: must be a number from 0"},
    {"shards[0].bluegreen[5].lock_ms", "-0.5",
     "journal: shards[0].bluegreen[5].lock_ms: must be a number from 0"},
    {"shards[0].bluegreen[5].lock_ms", "\"12.5\"",
     "journal: shards[0].bluegreen[5].lock_ms: must be a number"},
    {"shards[0].bluegreen[5].lock_ms", "null",
     "journal: shards[0].bluegreen[5].lock_ms: must be a number"},
    /* each version's steps once: the repeat is named, not the first */
    {"shards[0].bluegreen[3].step", "\"prepared\"",
     "journal: shards[0].bluegreen[3]: duplicate step \"prepared\" of version 5"},
    {"shards[0].bluegreen[8].version", "5",
     "journal: shards[0].bluegreen[8]: duplicate step \"cut-over\" of version 5"},
};

/* The value at a path like "shards[1].gates.apply": walks to its container
 * and sets or removes the last component. */
static void mutate(json_t *root, const char *path, json_t *value)
{
    char buf[128], *part, *save = NULL;
    json_t *at = root;
    snprintf(buf, sizeof(buf), "%s", path);
    for (part = strtok_r(buf, ".", &save); part; part = strtok_r(NULL, ".", &save)) {
        char *bracket = strchr(part, '[');
        bool last = save == NULL || *save == '\0';
        size_t index = 0;
        if (bracket) {
            *bracket = '\0';
            index = strtoul(bracket + 1, NULL, 10);
            at = json_object_get(at, part);
            ck_assert_ptr_nonnull(at);
            if (last) {
                ck_assert_int_eq(json_array_set_new(at, index, value), 0);
                return;
            }
            at = json_array_get(at, index);
        } else if (last) {
            if (value)
                ck_assert_int_eq(json_object_set_new(at, part, value), 0);
            else
                ck_assert_int_eq(json_object_del(at, part), 0);
            return;
        } else {
            at = json_object_get(at, part);
        }
        ck_assert_msg(at != NULL, "no %s in %s", part, path);
    }
}

START_TEST(test_parse_bad_field)
{
    const bad_field *t = &bad_fields[_i];
    sg_journal *j = full_journal(), *back = NULL;
    char *text = to_json(j), *bad;
    json_t *root = json_loads(text, 0, NULL), *value = NULL;
    sg_error err = {0};

    ck_assert_ptr_nonnull(root);
    if (t->value && strcmp(t->value, "LONG") == 0) {
        char long_text[513];
        memset(long_text, 'x', 512);
        long_text[512] = '\0';
        value = json_string(long_text);
    } else if (t->value) {
        value = json_loads(t->value, JSON_DECODE_ANY, NULL);
        ck_assert_ptr_nonnull(value);
    }
    mutate(root, t->path, value);
    bad = json_dumps(root, JSON_COMPACT);
    ck_assert_int_eq(sg_journal_parse(&back, bad, strlen(bad), &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, t->message);
    ck_assert_ptr_null(back);
    free(bad);
    json_decref(root);
    free(text);
    sg_journal_free(j);
}
END_TEST

START_TEST(test_parse_bad_document)
{
    static const char *const not_json[] = {"", "{", "{\"format\":1,\"format\":1}",
                                           "{\"format\":1}garbage"};
    sg_journal *j = NULL;
    sg_error err = {0};

    for (size_t i = 0; i < sizeof(not_json) / sizeof(not_json[0]); i++) {
        ck_assert_int_eq(sg_journal_parse(&j, not_json[i], strlen(not_json[i]), &err), SG_E_FORMAT);
        ck_assert_str_eq(err.message, "journal: not valid JSON");
        ck_assert_msg(strstr(err.detail, "line 1") != NULL, "%s", err.detail);
        ck_assert_ptr_null(j);
    }
    ck_assert_int_eq(sg_journal_parse(&j, "[1]", 3, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "journal: not a JSON object");
    /* the version is checked before anything else, with a way out */
    ck_assert_int_eq(sg_journal_parse(&j, "{\"format\":2,\"new\":true}", 23, &err), SG_E_FORMAT);
    ck_assert_str_eq(
        err.message,
        "journal: format: version 2 is not supported (this shardgate reads version 1)");
    ck_assert_str_eq(err.hint, "a newer shardgate wrote this journal; use it, or upgrade");
}
END_TEST

/* ---- transitions ---- */

static void gate(sg_journal *j, size_t shard, sg_gate g, bool ran, int rc, double seconds,
                 const char *message)
{
    sg_gate_record rec = {.ran = ran, .rc = rc, .seconds = seconds};
    snprintf(rec.message, sizeof(rec.message), "%s", message);
    sg_journal_gate(j, shard, g, &rec);
}

START_TEST(test_transitions_pass)
{
    static const sg_shard_state after[] = {SG_SHARD_SNAPSHOTTED, SG_SHARD_REHEARSED,
                                           SG_SHARD_APPLIED, SG_SHARD_VERIFIED};
    static const sg_shard_state during[] = {SG_SHARD_LOCKED, SG_SHARD_SNAPSHOTTED,
                                            SG_SHARD_REHEARSED, SG_SHARD_APPLIED};
    sg_journal *j = new_journal(0, 0, NULL);
    sg_shard_outcome outcome;
    sg_journal_shard *s = &j->shards[0];

    memset(&outcome, 0, sizeof(outcome));
    strcpy(j->updated_at, "2000-01-01T00:00:00Z");
    for (int g = 0; g < SG_GATE_COUNT; g++) {
        gate(j, 0, (sg_gate)g, false, 0, 0, "");
        ck_assert_int_eq(s->state, during[g]);
        ck_assert(is_utc_time(s->gates[g].started_at));
        ck_assert(!s->gates[g].ran);
        ck_assert_str_ne(j->updated_at, "2000-01-01T00:00:00Z");
        gate(j, 0, (sg_gate)g, true, 0, 1.2346 + g, "");
        ck_assert_int_eq(s->state, after[g]);
        ck_assert(s->gates[g].ran);
        ck_assert_int_eq(s->gates[g].rc, 0);
        ck_assert_uint_eq(s->gates[g].ms, 1235 + 1000 * (uint64_t)g);
        ck_assert(!s->has_failure);
    }
    strcpy(outcome.snapshot_id, SNAPSHOT_ID);
    outcome.snapshot_bytes = 4096;
    outcome.from_version = 3;
    outcome.to_version = 7;
    outcome.applied = 4;
    strcpy(outcome.rehearsal.fingerprint, FP1);
    strcpy(outcome.live_fingerprint, FP2);
    outcome.tables_verified = 9;
    sg_journal_shard_outcome(j, 0, &outcome);
    ck_assert_str_eq(s->snapshot_id, SNAPSHOT_ID);
    ck_assert_uint_eq(s->snapshot_bytes, 4096);
    ck_assert_int_eq(s->from_version, 3);
    ck_assert_int_eq(s->to_version, 7);
    ck_assert_uint_eq(s->applied, 4);
    ck_assert_str_eq(s->rehearsal_fingerprint, FP1);
    ck_assert_str_eq(s->live_fingerprint, FP2);
    ck_assert_uint_eq(s->tables_verified, 9);
    /* resumed, the outcome names the snapshot without its size: it is kept */
    outcome.snapshot_bytes = 0;
    sg_journal_shard_outcome(j, 0, &outcome);
    ck_assert_uint_eq(s->snapshot_bytes, 4096);
    /* a snapshot taken again that failed leaves neither id nor size */
    outcome.snapshot_id[0] = '\0';
    sg_journal_shard_outcome(j, 0, &outcome);
    ck_assert_str_eq(s->snapshot_id, "");
    ck_assert_uint_eq(s->snapshot_bytes, 0);
    sg_journal_shard_state(j, 0, SG_SHARD_DONE);
    ck_assert_int_eq(s->state, SG_SHARD_DONE);
    /* a finish without a start still says when */
    gate(j, 1, SG_GATE_SNAPSHOT, true, 0, -1, "");
    ck_assert(is_utc_time(j->shards[1].gates[0].started_at));
    ck_assert_uint_eq(j->shards[1].gates[0].ms, 0);
    sg_journal_free(j);
}
END_TEST

START_TEST(test_transitions_fail)
{
    sg_journal *j = new_journal(0, 0, NULL);
    sg_journal_shard *s = &j->shards[1];
    char *text;

    gate(j, 1, SG_GATE_SNAPSHOT, false, 0, 0, "");
    gate(j, 1, SG_GATE_SNAPSHOT, true, 0, 1, "");
    gate(j, 1, SG_GATE_TEST_RESTORE, false, 0, 0, "");
    gate(j, 1, SG_GATE_TEST_RESTORE, true, 0, 1, "");
    gate(j, 1, SG_GATE_APPLY, false, 0, 0, "");
    gate(j, 1, SG_GATE_APPLY, true, SG_E_DB, 2.5, "d: apply: deadlock detected");
    ck_assert_int_eq(s->state, SG_SHARD_FAILED);
    ck_assert(s->has_failure);
    ck_assert_int_eq(s->failure.gate, SG_GATE_APPLY);
    ck_assert_int_eq(s->failure.code, SG_E_DB);
    ck_assert_str_eq(s->failure.message, "d: apply: deadlock detected");
    ck_assert_int_eq(s->gates[SG_GATE_APPLY].rc, SG_E_DB);
    ck_assert_uint_eq(s->gates[SG_GATE_APPLY].ms, 2500);
    text = to_json(j);
    assert_contains(text, "\"failure\":{\"gate\":\"apply\",\"error\":\"database\","
                          "\"message\":\"d: apply: deadlock detected\"}");
    free(text);

    /* retried from the test restore: the failure and the later gates belong
     * to the attempt before */
    sg_journal_shard_state(j, 1, SG_SHARD_ROLLED_BACK);
    ck_assert(s->has_failure);
    gate(j, 1, SG_GATE_TEST_RESTORE, false, 0, 0, "");
    ck_assert_int_eq(s->state, SG_SHARD_SNAPSHOTTED);
    ck_assert(!s->has_failure);
    ck_assert_str_eq(s->failure.message, "");
    ck_assert(s->gates[SG_GATE_SNAPSHOT].ran);
    ck_assert(!s->gates[SG_GATE_TEST_RESTORE].ran);
    ck_assert_str_eq(s->gates[SG_GATE_APPLY].started_at, "");
    ck_assert_int_eq(s->gates[SG_GATE_APPLY].rc, 0);
    ck_assert_str_eq(s->gates[SG_GATE_APPLY].message, "");
    sg_journal_free(j);
}
END_TEST

/* Messages are cut to their field and made valid UTF-8 on the way in. */
START_TEST(test_transitions_message)
{
    sg_journal *j = new_journal(0, 0, NULL);
    char message[SG_JOURNAL_MESSAGE_MAX], *text;
    sg_journal_gate_entry *g = &j->shards[0].gates[SG_GATE_SNAPSHOT];

    gate(j, 0, SG_GATE_SNAPSHOT, true, SG_E_IO, 0, "bad \xff byte, cut \xc3");
    ck_assert_str_eq(g->message, "bad ? byte, cut ?");
    gate(j, 0, SG_GATE_SNAPSHOT, true, SG_E_IO, 0, "surrogate \xed\xa0\x80, overlong \xc0\xaf");
    ck_assert_str_eq(g->message, "surrogate ???, overlong ??");
    /* a record's message cut inside its 256th two-byte character */
    message[0] = '\0';
    for (int i = 0; i < 255; i++)
        strcat(message, "\xc3\xa9");
    {
        char longer[600];
        snprintf(longer, sizeof(longer), "%s\xc3\xa9", message);
        gate(j, 0, SG_GATE_SNAPSHOT, true, SG_E_IO, 0, longer);
        ck_assert_uint_eq(strlen(g->message), 511);
        ck_assert_int_eq(memcmp(g->message, message, 510), 0);
        ck_assert_int_eq(g->message[510], '?');
    }
    /* four-byte characters filling the field exactly */
    memset(message, 0, sizeof(message));
    for (int i = 0; i < 127; i++)
        strcat(message, "\xf0\x9f\x98\x80"); /* 508 bytes */
    strcat(message, "abc");
    gate(j, 0, SG_GATE_SNAPSHOT, true, SG_E_IO, 0, message);
    ck_assert_str_eq(g->message, message);
    ck_assert_str_eq(j->shards[0].failure.message, message);
    text = to_json(j);
    free(text);
    sg_journal_free(j);
}
END_TEST

START_TEST(test_transitions_stage_and_run)
{
    sg_journal *j = new_journal(0, 0, NULL);
    sg_journal_stage *st = &j->stages[1];

    sg_journal_stage_state(j, 1, SG_STAGE_RUNNING);
    ck_assert_int_eq(st->state, SG_STAGE_RUNNING);
    ck_assert(is_utc_time(st->started_at));
    ck_assert_str_eq(st->finished_at, "");
    strcpy(st->started_at, "2024-05-01T02:00:00Z");
    sg_journal_stage_state(j, 1, SG_STAGE_SOAKING);
    sg_journal_stage_state(j, 1, SG_STAGE_RUNNING);
    ck_assert_str_eq(st->started_at, "2024-05-01T02:00:00Z");
    ck_assert_str_eq(st->finished_at, "");
    sg_journal_stage_state(j, 1, SG_STAGE_DONE);
    ck_assert_int_eq(st->state, SG_STAGE_DONE);
    ck_assert(is_utc_time(st->finished_at));
    strcpy(st->finished_at, "");
    sg_journal_stage_state(j, 1, SG_STAGE_FAILED);
    ck_assert(is_utc_time(st->finished_at));
    strcpy(st->finished_at, "");
    sg_journal_stage_state(j, 1, SG_STAGE_ROLLED_BACK);
    ck_assert(is_utc_time(st->finished_at));
    ck_assert_int_eq(j->stages[0].state, SG_STAGE_PENDING);

    strcpy(j->updated_at, "2000-01-01T00:00:00Z");
    sg_journal_run_status(j, SG_RUN_ROLLED_BACK);
    ck_assert_int_eq(j->status, SG_RUN_ROLLED_BACK);
    ck_assert_str_ne(j->updated_at, "2000-01-01T00:00:00Z");
    ck_assert_str_eq(sg_run_status_name(SG_RUN_ROLLED_BACK), "rolled-back");
    ck_assert_str_eq(sg_shard_state_name(SG_SHARD_SNAPSHOTTED), "snapshotted");
    sg_journal_free(j);
}
END_TEST

/* ---- blue-green steps ---- */

START_TEST(test_bluegreen_record)
{
    sg_journal *j = new_journal(0, 0, NULL);
    sg_journal_shard *d = &j->shards[1];
    char *text;

    ck_assert_uint_eq(d->nbluegreen, 0);
    strcpy(j->updated_at, "2000-01-01T00:00:00Z");
    bluegreen_step(j, 1, 7, "prepared", -1);
    ck_assert_uint_eq(d->nbluegreen, 1);
    ck_assert_int_eq(d->bluegreen[0].version, 7);
    ck_assert_str_eq(d->bluegreen[0].step, "prepared");
    ck_assert(is_utc_time(d->bluegreen[0].at));
    ck_assert_str_eq(j->updated_at, d->bluegreen[0].at);
    ck_assert_double_eq(d->bluegreen[0].lock_ms, -1);
    /* kept to the microsecond; any negative or non-number is no lock */
    bluegreen_step(j, 1, 7, "cut-over", 12.3456789);
    ck_assert_double_eq(d->bluegreen[1].lock_ms, 12.346);
    bluegreen_step(j, 1, 7, "swapped-back", 0);
    ck_assert_double_eq(d->bluegreen[2].lock_ms, 0);
    bluegreen_step(j, 1, 8, "cut-over", -0.5);
    ck_assert_double_eq(d->bluegreen[3].lock_ms, -1);
    bluegreen_step(j, 1, 9, "cut-over", NAN);
    ck_assert_double_eq(d->bluegreen[4].lock_ms, -1);
    bluegreen_step(j, 1, 10, "cut-over", INFINITY);
    ck_assert_double_eq(d->bluegreen[5].lock_ms, -1);
    ck_assert_uint_eq(d->nbluegreen, 6);
    /* every other shard has none, and no "bluegreen" in its JSON */
    for (size_t i = 0; i < j->nshards; i++)
        ck_assert_uint_eq(j->shards[i].nbluegreen, i == 1 ? 6 : 0);
    text = to_json(j);
    assert_contains(text, "\"lock_ms\":12.346},{\"version\":7,\"step\":\"swapped-back\"");
    assert_contains(text, "\"lock_ms\":0.0},{\"version\":8,\"step\":\"cut-over\",\"at\":\"");
    /* d's list only: the shards without steps have no key */
    ck_assert_ptr_nonnull(strstr(text, "\"name\":\"d\""));
    ck_assert_ptr_nonnull(strstr(strstr(text, "\"name\":\"d\""), "\"bluegreen\":["));
    ck_assert_ptr_null(strstr(strstr(text, "\"bluegreen\"") + 1, "\"bluegreen\""));
    free(text);
    sg_journal_free(j);
}
END_TEST

/* A resumed run records the steps again as the engine redoes them: the
 * entry is replaced where it stands, with its new time and lock. */
START_TEST(test_bluegreen_repeat)
{
    sg_journal *j = new_journal(0, 0, NULL);
    sg_journal_shard *a = &j->shards[0];

    bluegreen_step(j, 0, 7, "prepared", -1);
    bluegreen_step(j, 0, 7, "synced", -1);
    bluegreen_step(j, 0, 7, "cut-over", 40);
    bluegreen_step(j, 0, 8, "prepared", -1);
    for (size_t i = 0; i < a->nbluegreen; i++)
        strcpy(a->bluegreen[i].at, "2000-01-01T00:00:00Z");
    bluegreen_step(j, 0, 7, "cut-over", 12.5);
    bluegreen_step(j, 0, 7, "synced", -1);
    ck_assert_uint_eq(a->nbluegreen, 4);
    ck_assert_str_eq(a->bluegreen[0].step, "prepared");
    ck_assert_str_eq(a->bluegreen[0].at, "2000-01-01T00:00:00Z");
    ck_assert_str_eq(a->bluegreen[1].step, "synced");
    ck_assert(is_utc_time(a->bluegreen[1].at));
    ck_assert_str_ne(a->bluegreen[1].at, "2000-01-01T00:00:00Z");
    ck_assert_int_eq(a->bluegreen[2].version, 7);
    ck_assert_str_eq(a->bluegreen[2].step, "cut-over");
    ck_assert_double_eq(a->bluegreen[2].lock_ms, 12.5);
    ck_assert_str_ne(a->bluegreen[2].at, "2000-01-01T00:00:00Z");
    ck_assert_int_eq(a->bluegreen[3].version, 8);
    ck_assert_str_eq(a->bluegreen[3].at, "2000-01-01T00:00:00Z");
    /* the same step of another version is a step of its own */
    bluegreen_step(j, 0, 8, "cut-over", 1);
    ck_assert_uint_eq(a->nbluegreen, 5);
    sg_journal_free(j);
}
END_TEST

START_TEST(test_bluegreen_errors)
{
    static const char *const bad_steps[] = {"none", "cut_over", "", "swapped-back-again"};
    sg_journal *j = new_journal(0, 0, NULL);
    sg_error err = {0};

    bluegreen_step(j, 2, 7, "prepared", -1);
    strcpy(j->updated_at, "2000-01-01T00:00:00Z");
    ck_assert_int_eq(sg_journal_bluegreen_step(j, 2, 0, "prepared", -1, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "journal: shard b: invalid blue-green version 0");
    ck_assert_int_eq(sg_journal_bluegreen_step(j, 2, -7, "prepared", -1, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "journal: shard b: invalid blue-green version -7");
    for (size_t i = 0; i < sizeof(bad_steps) / sizeof(bad_steps[0]); i++) {
        char expected[128];
        ck_assert_int_eq(sg_journal_bluegreen_step(j, 2, 7, bad_steps[i], -1, &err), SG_E_INTERNAL);
        snprintf(expected, sizeof(expected), "journal: shard b: unknown blue-green step \"%s\"",
                 bad_steps[i]);
        ck_assert_str_eq(err.message, expected);
    }
    /* nothing recorded, nothing stamped */
    ck_assert_uint_eq(j->shards[2].nbluegreen, 1);
    ck_assert_str_eq(j->updated_at, "2000-01-01T00:00:00Z");
    /* out of memory: the list as it was */
    bluegreen_step(j, 2, 7, "synced", -1);
    ck_assert_uint_eq(j->shards[2].nbluegreen, 2);
    sg_mem_fail_after(0);
    ck_assert_int_eq(sg_journal_bluegreen_step(j, 2, 7, "backfilled", -1, &err), SG_E_NOMEM);
    /* a repeat needs no memory */
    ck_assert_int_eq(sg_journal_bluegreen_step(j, 2, 7, "synced", -1, &err), 0);
    sg_mem_fail_reset();
    ck_assert_str_eq(err.message, "out of memory holding a run journal");
    ck_assert_uint_eq(j->shards[2].nbluegreen, 2);
    ck_assert_str_eq(j->shards[2].bluegreen[1].step, "synced");
    bluegreen_step(j, 2, 7, "backfilled", -1);
    ck_assert_uint_eq(j->shards[2].nbluegreen, 3);
    sg_journal_free(j);
}
END_TEST

/* What the journal wrote before it had blue-green steps: no "bluegreen"
 * anywhere. It loads, has none, and is written back as it was. */
static const char old_journal[] =
    "{\"format\":1,\"run_id\":\"" RUN_ID "\",\"pipeline\":\"nightly\",\"config_sha256\":\"" HASH
    "\",\"target\":7,\"partition\":null,\"status\":\"running\",\"started_at\":"
    "\"2024-05-01T02:00:00Z\",\"updated_at\":\"2024-05-01T02:01:00Z\",\"stages\":[{\"name\":"
    "\"canary\",\"state\":\"running\",\"started_at\":\"2024-05-01T02:00:01Z\",\"finished_at\":"
    "null}],\"shards\":[{\"name\":\"a\",\"stage\":\"canary\",\"state\":\"applied\","
    "\"snapshot_id\":\"" SNAPSHOT_ID "\",\"snapshot_bytes\":4096,\"from_version\":3,"
    "\"to_version\":7,\"applied\":4,\"rehearsal_fingerprint\":\"" FP1 "\","
    "\"live_fingerprint\":null,\"tables_verified\":0,\"gates\":{\"apply\":{\"started_at\":"
    "\"2024-05-01T02:00:30Z\",\"ran\":true,\"error\":null,\"ms\":2000,\"message\":\"\"}},"
    "\"failure\":null}]}\n";

START_TEST(test_bluegreen_old_journal)
{
    sg_journal *j = parse(old_journal);
    char *text;

    ck_assert_uint_eq(j->nshards, 1);
    ck_assert_uint_eq(j->shards[0].nbluegreen, 0);
    ck_assert_ptr_null(j->shards[0].bluegreen);
    text = to_json(j);
    ck_assert_str_eq(text, old_journal);
    free(text);
    /* its run resumed by a shardgate that records steps */
    bluegreen_step(j, 0, 7, "prepared", -1);
    text = to_json(j);
    sg_journal_free(j);
    j = parse(text);
    ck_assert_uint_eq(j->shards[0].nbluegreen, 1);
    free(text);
    sg_journal_free(j);

    /* an empty list is none */
    j = parse("{\"format\":1,\"run_id\":\"" RUN_ID "\",\"pipeline\":\"p\",\"config_sha256\":\"" HASH
              "\",\"target\":\"latest\",\"partition\":null,\"status\":\"running\","
              "\"started_at\":\"2024-05-01T02:00:00Z\",\"updated_at\":\"2024-05-01T02:00:00Z\","
              "\"stages\":[{\"name\":\"s\",\"state\":\"pending\",\"started_at\":null,"
              "\"finished_at\":null}],\"shards\":[{\"name\":\"a\",\"stage\":\"s\","
              "\"state\":\"pending\",\"snapshot_id\":null,\"snapshot_bytes\":0,"
              "\"from_version\":0,\"to_version\":0,\"applied\":0,"
              "\"rehearsal_fingerprint\":null,\"live_fingerprint\":null,"
              "\"tables_verified\":0,\"gates\":{},\"bluegreen\":[],\"failure\":null}]}");
    ck_assert_uint_eq(j->shards[0].nbluegreen, 0);
    text = to_json(j);
    assert_contains(text, "\"gates\":{},\"failure\":null}");
    free(text);
    sg_journal_free(j);
}
END_TEST

/* A resumed run starts from the loaded journal: its steps stay through the
 * gates' restart, a step redone replaces its entry, and new ones follow.
 * The loaded list grows like one recorded (the test runs under ASan). */
START_TEST(test_bluegreen_resume)
{
    sg_journal *j = full_journal(), *back;
    sg_journal_shard *a;
    char *text = to_json(j);

    back = parse(text);
    a = &back->shards[0];
    ck_assert_uint_eq(a->nbluegreen, A_STEPS);
    gate(back, 0, SG_GATE_TEST_RESTORE, false, 0, 0, "");
    gate(back, 0, SG_GATE_APPLY, false, 0, 0, "");
    ck_assert_uint_eq(a->nbluegreen, A_STEPS);
    bluegreen_step(back, 0, 7, "swapped-back", 2);
    ck_assert_uint_eq(a->nbluegreen, A_STEPS);
    ck_assert_double_eq(a->bluegreen[A_STEPS - 1].lock_ms, 2);
    for (int i = 0; i < 8; i++)
        bluegreen_step(back, 0, 9 + i, "prepared", -1);
    ck_assert_uint_eq(a->nbluegreen, A_STEPS + 8);
    ck_assert_int_eq(a->bluegreen[A_STEPS + 7].version, 16);
    for (size_t i = 0; i < A_STEPS - 1; i++)
        ck_assert_str_eq(a->bluegreen[i].at, j->shards[0].bluegreen[i].at);
    free(text);
    sg_journal_free(back);
    sg_journal_free(j);
}
END_TEST

/* ---- resume ---- */

typedef struct resume_case {
    sg_shard_state state;
    bool snapshot, failure;
    sg_gate failed_at, gate;
    bool done;
} resume_case;

static const resume_case resume_cases[] = {
    {SG_SHARD_PENDING, false, false, 0, SG_GATE_SNAPSHOT, false},
    {SG_SHARD_LOCKED, false, false, 0, SG_GATE_SNAPSHOT, false},
    {SG_SHARD_SNAPSHOTTED, true, false, 0, SG_GATE_TEST_RESTORE, false},
    {SG_SHARD_SNAPSHOTTED, false, false, 0, SG_GATE_SNAPSHOT, false},
    {SG_SHARD_RESTORED, true, false, 0, SG_GATE_TEST_RESTORE, false},
    {SG_SHARD_REHEARSED, true, false, 0, SG_GATE_TEST_RESTORE, false},
    {SG_SHARD_APPLIED, true, false, 0, SG_GATE_TEST_RESTORE, false},
    {SG_SHARD_APPLIED, false, false, 0, SG_GATE_SNAPSHOT, false},
    {SG_SHARD_VERIFIED, true, false, 0, SG_GATE_VERIFY, true},
    {SG_SHARD_DONE, true, false, 0, SG_GATE_VERIFY, true},
    {SG_SHARD_FAILED, false, true, SG_GATE_SNAPSHOT, SG_GATE_SNAPSHOT, false},
    {SG_SHARD_FAILED, true, true, SG_GATE_SNAPSHOT, SG_GATE_SNAPSHOT, false},
    {SG_SHARD_FAILED, true, true, SG_GATE_TEST_RESTORE, SG_GATE_TEST_RESTORE, false},
    {SG_SHARD_FAILED, true, true, SG_GATE_APPLY, SG_GATE_TEST_RESTORE, false},
    {SG_SHARD_FAILED, true, true, SG_GATE_VERIFY, SG_GATE_TEST_RESTORE, false},
    {SG_SHARD_FAILED, false, true, SG_GATE_APPLY, SG_GATE_SNAPSHOT, false},
    {SG_SHARD_FAILED, true, false, 0, SG_GATE_SNAPSHOT, false},
    {SG_SHARD_ROLLED_BACK, true, true, SG_GATE_VERIFY, SG_GATE_SNAPSHOT, false},
};

START_TEST(test_resume_gate)
{
    const resume_case *t = &resume_cases[_i];
    sg_journal *j = new_journal(0, 0, NULL);
    sg_journal_shard *s = &j->shards[2];
    bool done = !t->done;

    s->state = t->state;
    if (t->snapshot)
        strcpy(s->snapshot_id, SNAPSHOT_ID);
    s->has_failure = t->failure;
    s->failure.gate = t->failed_at;
    ck_assert_int_eq(sg_journal_resume_gate(j, 2, &done), t->gate);
    ck_assert_int_eq(done, t->done);
    sg_journal_free(j);
}
END_TEST

/* ---- store and local file ---- */

static char dir[64];
static char *store_url, *local;
static sg_store *store;

static void store_setup(void)
{
    sg_error err = {0};
    strcpy(dir, "/tmp/sg-test-journal-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    store_url = sgt_asprintf("file://%s/store", dir);
    local = sgt_asprintf("%s/journal.json", dir);
    ck_assert_int_eq(sg_store_open(&store, store_url, &err), 0);
}

static void store_teardown(void)
{
    sg_store_free(store);
    store = NULL;
    free(store_url);
    free(local);
    sgt_remove_tree(dir);
}

static void save(const sg_journal *j, sg_store *to, const char *path)
{
    sg_error err = {0};
    ck_assert_msg(sg_journal_save(j, to, path, &err) == 0, "%s", err.message);
}

START_TEST(test_save_load)
{
    sg_journal *j = full_journal(), *back = NULL;
    sg_error err = {0};
    /* partition 2 of 3: its own object, beside the other partitions' */
    char *object = sgt_asprintf("%s/store/runs/" RUN_ID "/journal-2-of-3.json", dir);
    char *text = to_json(j), *stored, *written;

    save(j, store, local);
    stored = sgt_read_file(object, NULL);
    written = sgt_read_file(local, NULL);
    ck_assert_ptr_nonnull(stored);
    ck_assert_str_eq(stored, text);
    ck_assert_str_eq(written, text);
    ck_assert_int_eq(sg_journal_load(&back, store, RUN_ID, &err), 0);
    assert_journal_eq(j, back);
    sg_journal_free(back);
    ck_assert_int_eq(sg_journal_load_file(&back, local, &err), 0);
    assert_journal_eq(j, back);
    sg_journal_free(back);

    /* a later transition replaces both */
    sg_journal_run_status(j, SG_RUN_DONE);
    save(j, store, local);
    ck_assert_int_eq(sg_journal_load(&back, store, RUN_ID, &err), 0);
    ck_assert_int_eq(back->status, SG_RUN_DONE);
    sg_journal_free(back);
    ck_assert_int_eq(sg_journal_load_file(&back, local, &err), 0);
    ck_assert_int_eq(back->status, SG_RUN_DONE);
    sg_journal_free(back);

    /* either destination alone */
    sg_journal_run_status(j, SG_RUN_FAILED);
    save(j, NULL, local);
    ck_assert_int_eq(sg_journal_load(&back, store, RUN_ID, &err), 0);
    ck_assert_int_eq(back->status, SG_RUN_DONE);
    sg_journal_free(back);
    save(j, store, NULL);
    ck_assert_int_eq(sg_journal_load(&back, store, RUN_ID, &err), 0);
    ck_assert_int_eq(back->status, SG_RUN_FAILED);
    sg_journal_free(back);

    free(stored);
    free(written);
    free(text);
    free(object);
    sg_journal_free(j);
}
END_TEST

START_TEST(test_load_missing)
{
    sg_journal *j = NULL;
    sg_error err = {0};
    char *expected =
        sgt_asprintf("run 20240101T000000Z-00000000 has no journal in store %s", store_url);
    char *path = sgt_asprintf("%s/none.json", dir);
    char *expected_file = sgt_asprintf("journal file %s does not exist", path);

    ck_assert_int_eq(sg_journal_load(&j, store, "20240101T000000Z-00000000", &err), SG_E_NOT_FOUND);
    ck_assert_str_eq(err.message, expected);
    ck_assert_ptr_null(j);
    ck_assert_int_eq(sg_journal_load(&j, store, "../../etc", &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "invalid run id \"../../etc\"");
    ck_assert_int_eq(sg_journal_load_file(&j, path, &err), SG_E_NOT_FOUND);
    ck_assert_str_eq(err.message, expected_file);
    ck_assert_int_eq(sg_journal_load_file(&j, dir, &err), SG_E_IO);
    assert_contains(err.message, dir);
    ck_assert_ptr_null(j);
    free(expected);
    free(expected_file);
    free(path);
}
END_TEST

START_TEST(test_load_corrupt)
{
    static const char key[] = "runs/" RUN_ID "/journal.json";
    sg_journal *j = full_journal(), *back = NULL;
    sg_error err = {0};
    char *text = to_json(j);
    char *detail = sgt_asprintf("in %s of store %s", key, store_url);

    ck_assert_int_eq(sg_store_put(store, key, text, strlen(text) / 2, &err), 0);
    ck_assert_int_eq(sg_journal_load(&back, store, RUN_ID, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "journal: not valid JSON");
    assert_contains(err.detail, detail);
    ck_assert_int_eq(sg_store_put(store, key, "{\"format\":1}", 12, &err), 0);
    ck_assert_int_eq(sg_journal_load(&back, store, RUN_ID, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "journal: run_id: missing");
    ck_assert_str_eq(err.detail, detail);
    ck_assert_ptr_null(back);

    sgt_write_file(dir, "journal.json", "{\"format\":1,\"run_id\":7}");
    ck_assert_int_eq(sg_journal_load_file(&back, local, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "journal: run_id: must be a string");
    assert_contains(err.detail, local);
    ck_assert_ptr_null(back);
    free(detail);
    free(text);
    sg_journal_free(j);
}
END_TEST

/* A store that refuses the journal: the local copy is written all the same,
 * and the store's error is returned. */
START_TEST(test_save_store_fails)
{
    sg_journal *j = full_journal(), *back = NULL;
    sg_store *broken = NULL;
    sg_error err = {0};
    char *url = sgt_asprintf("file://%s/file", dir);
    int rc;

    sgt_write_file(dir, "file", "not a directory");
    ck_assert_int_eq(sg_store_open(&broken, url, &err), 0);
    rc = sg_journal_save(j, broken, local, &err);
    ck_assert_int_lt(rc, 0);
    ck_assert_int_ne(rc, SG_E_NOMEM);
    assert_contains(err.message, "cannot store the journal of run " RUN_ID ": ");
    ck_assert_int_eq(sg_journal_load_file(&back, local, &err), 0);
    assert_journal_eq(j, back);
    sg_journal_free(back);
    sg_store_free(broken);
    free(url);
    sg_journal_free(j);
}
END_TEST

/* A local file that cannot be written: the store gets the journal, and the
 * file's error is returned. */
START_TEST(test_save_local_fails)
{
    sg_journal *j = full_journal(), *back = NULL;
    sg_error err = {0};
    char *path = sgt_asprintf("%s/missing/journal.json", dir);

    ck_assert_int_eq(sg_journal_save(j, store, path, &err), SG_E_IO);
    assert_contains(err.message, path);
    ck_assert_int_eq(sg_journal_load(&back, store, RUN_ID, &err), 0);
    assert_journal_eq(j, back);
    sg_journal_free(back);
    free(path);
    sg_journal_free(j);
}
END_TEST

START_TEST(test_list)
{
    static const char *const ids[] = {"20240301T000000Z-00000001", "20240101T000000Z-ffffffff",
                                      "20240301T000000Z-00000002", "20240201T120000Z-abcdef01"};
    static const char *const newest_first[] = {
        "20240301T000000Z-00000002", "20240301T000000Z-00000001", "20240201T120000Z-abcdef01",
        "20240101T000000Z-ffffffff"};
    sg_journal *j = full_journal();
    sg_error err = {0};
    char **list = NULL;
    size_t count = 99;

    ck_assert_int_eq(sg_journal_list(&list, &count, store, &err), 0);
    ck_assert_uint_eq(count, 0);
    sg_journal_list_free(list, count);
    for (size_t i = 0; i < 4; i++) {
        strcpy(j->run_id, ids[i]);
        save(j, store, NULL);
    }
    /* not journals */
    ck_assert_int_eq(sg_store_put(store, "runs/notes.txt", "x", 1, &err), 0);
    ck_assert_int_eq(sg_store_put(store, "runs/20240401T000000Z-1/report.html", "x", 1, &err), 0);
    ck_assert_int_eq(sg_store_put(store, "runs/x/y/journal.json", "x", 1, &err), 0);
    ck_assert_int_eq(sg_store_put(store, "shards/a/journal.json", "x", 1, &err), 0);
    ck_assert_int_eq(sg_journal_list(&list, &count, store, &err), 0);
    ck_assert_uint_eq(count, 4);
    for (size_t i = 0; i < 4; i++)
        ck_assert_str_eq(list[i], newest_first[i]);
    sg_journal_list_free(list, count);
    sg_journal_list_free(NULL, 0);
    sg_journal_free(j);
}
END_TEST

/* ---- merge ---- */

static sg_journal *part(unsigned k, unsigned n)
{
    bool selected[5];
    sg_error err = {0};
    ck_assert_int_eq(sg_pipeline_partition(selected, &cfg, k, n, &err), 0);
    return new_journal(k, n, selected);
}

START_TEST(test_merge)
{
    static const char *const order[] = {"a", "b", "c", "d", "e"};
    sg_journal *parts[2] = {part(1, 2), part(2, 2)}, *m = NULL;
    sg_error err = {0};
    long d;

    /* a, then b c d e dealt on from the canary: part 1 has a c e, part 2 b d */
    ck_assert_uint_eq(parts[0]->nshards, 3);
    ck_assert_uint_eq(parts[1]->nshards, 2);
    strcpy(parts[0]->started_at, "2024-05-01T02:00:02Z");
    strcpy(parts[1]->started_at, "2024-05-01T02:00:01Z");
    strcpy(parts[0]->updated_at, "2024-05-01T02:30:00Z");
    strcpy(parts[1]->updated_at, "2024-05-01T02:20:00Z");
    parts[0]->status = SG_RUN_DONE;
    parts[0]->stages[0] = (sg_journal_stage){parts[0]->stages[0].name, SG_STAGE_DONE,
                                             "2024-05-01T02:00:02Z", "2024-05-01T02:10:00Z"};
    parts[1]->stages[0] = (sg_journal_stage){parts[1]->stages[0].name, SG_STAGE_DONE,
                                             "2024-05-01T02:00:01Z", "2024-05-01T02:00:01Z"};
    parts[0]->stages[1] = (sg_journal_stage){parts[0]->stages[1].name, SG_STAGE_DONE,
                                             "2024-05-01T02:10:01Z", "2024-05-01T02:30:00Z"};
    parts[1]->stages[1] =
        (sg_journal_stage){parts[1]->stages[1].name, SG_STAGE_RUNNING, "2024-05-01T02:00:02Z", ""};
    d = sg_journal_shard_find(parts[1], "d");
    ck_assert_int_ge(d, 0);
    strcpy(parts[1]->shards[d].snapshot_id, SNAPSHOT_ID);
    parts[1]->shards[d].state = SG_SHARD_APPLIED;

    ck_assert_msg(sg_journal_merge(&m, parts, 2, &err) == 0, "%s", err.message);
    ck_assert_str_eq(m->run_id, RUN_ID);
    ck_assert_str_eq(m->pipeline, "nightly");
    ck_assert_str_eq(m->config_sha256, HASH);
    ck_assert_int_eq(m->target, 7);
    ck_assert_uint_eq(m->part_k, 0);
    ck_assert_uint_eq(m->part_n, 0);
    ck_assert_int_eq(m->status, SG_RUN_RUNNING);
    ck_assert_str_eq(m->started_at, "2024-05-01T02:00:01Z");
    ck_assert_str_eq(m->updated_at, "2024-05-01T02:30:00Z");
    ck_assert_int_eq(m->stages[0].state, SG_STAGE_DONE);
    ck_assert_str_eq(m->stages[0].started_at, "2024-05-01T02:00:01Z");
    ck_assert_str_eq(m->stages[0].finished_at, "2024-05-01T02:10:00Z");
    ck_assert_int_eq(m->stages[1].state, SG_STAGE_RUNNING);
    ck_assert_str_eq(m->stages[1].started_at, "2024-05-01T02:00:02Z");
    ck_assert_str_eq(m->stages[1].finished_at, "");
    ck_assert_uint_eq(m->nshards, 5);
    for (size_t i = 0; i < 5; i++) {
        ck_assert_str_eq(m->shards[i].name, order[i]);
        ck_assert_int_eq(sg_journal_shard_find(m, order[i]), (long)i);
    }
    ck_assert_int_eq(m->shards[3].state, SG_SHARD_APPLIED);
    ck_assert_str_eq(m->shards[3].snapshot_id, SNAPSHOT_ID);
    sg_journal_free(m);

    /* the state that tells most wins */
    parts[1]->status = SG_RUN_HALTED;
    parts[0]->status = SG_RUN_FAILED;
    parts[0]->stages[1].state = SG_STAGE_SOAKING;
    ck_assert_int_eq(sg_journal_merge(&m, parts, 2, &err), 0);
    ck_assert_int_eq(m->status, SG_RUN_FAILED);
    ck_assert_int_eq(m->stages[1].state, SG_STAGE_RUNNING);
    sg_journal_free(m);
    parts[0]->status = SG_RUN_DONE;
    parts[1]->stages[1].state = SG_STAGE_PENDING;
    ck_assert_int_eq(sg_journal_merge(&m, parts, 2, &err), 0);
    ck_assert_int_eq(m->status, SG_RUN_HALTED);
    ck_assert_int_eq(m->stages[1].state, SG_STAGE_SOAKING);
    sg_journal_free(m);
    parts[0]->stages[1].state = SG_STAGE_DONE;
    parts[1]->status = SG_RUN_DONE;
    ck_assert_int_eq(sg_journal_merge(&m, parts, 2, &err), 0);
    ck_assert_int_eq(m->status, SG_RUN_DONE);
    ck_assert_int_eq(m->stages[1].state, SG_STAGE_RUNNING);
    ck_assert_str_eq(m->stages[1].finished_at, "");
    sg_journal_free(m);

    /* one part alone is the whole of what there is */
    ck_assert_int_eq(sg_journal_merge(&m, parts + 1, 1, &err), 0);
    ck_assert_uint_eq(m->nshards, 2);
    ck_assert_str_eq(m->shards[0].name, "b");
    sg_journal_free(m);
    sg_journal_free(parts[0]);
    sg_journal_free(parts[1]);
}
END_TEST

/* The partitions of one run share its id, each with its own journal in the
 * store: listed once, loaded merged, or one by one. */
START_TEST(test_partitions_in_store)
{
    sg_journal *parts[2] = {part(1, 2), part(2, 2)}, *back = NULL;
    char **ids = NULL;
    size_t count = 0;
    sg_error err = {0};
    save(parts[0], store, NULL);
    save(parts[1], store, NULL);
    ck_assert_int_eq(sg_journal_list(&ids, &count, store, &err), 0);
    ck_assert_uint_eq(count, 1);
    ck_assert_str_eq(ids[0], RUN_ID);
    sg_journal_list_free(ids, count);
    ck_assert_msg(sg_journal_load(&back, store, RUN_ID, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(back->nshards, 5);
    ck_assert_uint_eq(back->part_n, 0);
    sg_journal_free(back);
    ck_assert_msg(sg_journal_load_part(&back, store, RUN_ID, 2, 2, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(back->nshards, 2);
    ck_assert_uint_eq(back->part_k, 2);
    sg_journal_free(back);
    ck_assert_int_eq(sg_journal_load_part(&back, store, RUN_ID, 1, 3, &err), SG_E_NOT_FOUND);
    ck_assert_msg(strstr(err.message, "partition 1/3"), "%s", err.message);
    sg_journal_free(parts[0]);
    sg_journal_free(parts[1]);
}
END_TEST

/* Each shard's steps come with it, copied: the merged journal outlives its
 * parts, and its lists grow like any other. */
START_TEST(test_merge_bluegreen)
{
    sg_journal *parts[2] = {part(1, 2), part(2, 2)}, *m = NULL;
    sg_error err = {0};
    long c = sg_journal_shard_find(parts[0], "c"), d = sg_journal_shard_find(parts[1], "d");
    sg_journal_shard *mc, *md;

    bluegreen_step(parts[0], (size_t)c, 7, "prepared", -1);
    bluegreen_step(parts[0], (size_t)c, 7, "synced", -1);
    bluegreen_step(parts[0], (size_t)c, 7, "backfilled", -1);
    bluegreen_step(parts[1], (size_t)d, 7, "cut-over", 12.5);
    ck_assert_msg(sg_journal_merge(&m, parts, 2, &err) == 0, "%s", err.message);
    sg_journal_free(parts[0]);
    sg_journal_free(parts[1]);
    mc = &m->shards[sg_journal_shard_find(m, "c")];
    md = &m->shards[sg_journal_shard_find(m, "d")];
    ck_assert_uint_eq(mc->nbluegreen, 3);
    ck_assert_str_eq(mc->bluegreen[0].step, "prepared");
    ck_assert_str_eq(mc->bluegreen[2].step, "backfilled");
    ck_assert_uint_eq(md->nbluegreen, 1);
    ck_assert_str_eq(md->bluegreen[0].step, "cut-over");
    ck_assert_double_eq(md->bluegreen[0].lock_ms, 12.5);
    ck_assert_uint_eq(m->shards[sg_journal_shard_find(m, "a")].nbluegreen, 0);
    bluegreen_step(m, (size_t)(mc - m->shards), 7, "indexed", -1);
    bluegreen_step(m, (size_t)(mc - m->shards), 7, "verified", -1);
    ck_assert_uint_eq(mc->nbluegreen, 5);
    ck_assert_str_eq(mc->bluegreen[4].step, "verified");
    sg_journal_free(m);
}
END_TEST

START_TEST(test_merge_errors)
{
    sg_journal *parts[2] = {part(1, 2), part(2, 2)}, *m = NULL;
    sg_journal *whole = new_journal(0, 0, NULL);
    sg_journal *pair[2] = {parts[0], whole};
    sg_error err = {0};

    ck_assert_int_eq(sg_journal_merge(&m, parts, 0, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message, "no journals to merge");

    strcpy(parts[1]->run_id, "20240502T020000Z-00000000");
    ck_assert_int_eq(sg_journal_merge(&m, parts, 2, &err), SG_E_MISMATCH);
    ck_assert_str_eq(err.message, "the journal of partition 2/2 is of run "
                                  "20240502T020000Z-00000000, not " RUN_ID);
    strcpy(parts[1]->run_id, RUN_ID);

    strcpy(parts[1]->config_sha256, OTHER_HASH);
    ck_assert_int_eq(sg_journal_merge(&m, parts, 2, &err), SG_E_MISMATCH);
    ck_assert_str_eq(err.message, "the journal of partition 2/2 was written for another "
                                  "pipeline file than partition 1/2's");
    ck_assert_str_eq(err.detail, "pipeline file SHA-256 " OTHER_HASH ", not " HASH);
    strcpy(parts[1]->config_sha256, HASH);

    free(parts[1]->stages[1].name);
    parts[1]->stages[1].name = strdup("wave2");
    ck_assert_int_eq(sg_journal_merge(&m, parts, 2, &err), SG_E_MISMATCH);
    ck_assert_str_eq(err.message, "the journal of partition 2/2 has other stages than "
                                  "partition 1/2's");

    ck_assert_int_eq(sg_journal_merge(&m, pair, 2, &err), SG_E_MISMATCH);
    ck_assert_str_eq(err.message, "shard a is in the journals of both partition 1/2 and "
                                  "journal 2 (the whole fleet)");
    ck_assert_ptr_null(m);
    sg_journal_free(whole);
    sg_journal_free(parts[0]);
    sg_journal_free(parts[1]);
}
END_TEST

/* ---- allocation failures ---- */

/* Runs fn with 0, 1, 2... allocations allowed until it succeeds; every
 * failure before must be SG_E_NOMEM with nothing made. */
#define FAIL_LOOP(what, call, out)                                                                 \
    do {                                                                                           \
        long n;                                                                                    \
        for (n = 0;; n++) {                                                                        \
            sg_error err = {0};                                                                    \
            int rc;                                                                                \
            sg_mem_fail_after(n);                                                                  \
            rc = (call);                                                                           \
            sg_mem_fail_reset();                                                                   \
            if (rc == 0)                                                                           \
                break;                                                                             \
            ck_assert_msg(rc == SG_E_NOMEM, "%s, %ld allocations: %d %s", what, n, rc,             \
                          err.message);                                                            \
            ck_assert_ptr_null(out);                                                               \
        }                                                                                          \
        ck_assert_int_gt(n, 3);                                                                    \
    } while (0)

START_TEST(test_allocation_failure)
{
    sg_journal *j = NULL, *back = NULL, *m = NULL, *parts[2] = {NULL, NULL};
    char *text = NULL;

    FAIL_LOOP("new", sg_journal_new(&j, RUN_ID, &cfg, HASH, 0, 0, NULL, &err), j);
    sg_journal_free(j);
    j = full_journal();
    FAIL_LOOP("to_json", sg_journal_to_json(&text, j, &err), text);
    FAIL_LOOP("parse", sg_journal_parse(&back, text, strlen(text), &err), back);
    assert_journal_eq(j, back);
    parts[0] = part(1, 2);
    parts[1] = part(2, 2);
    bluegreen_step(parts[0], 0, 7, "prepared", -1);
    bluegreen_step(parts[1], 0, 7, "prepared", -1);
    bluegreen_step(parts[1], 0, 7, "synced", -1);
    bluegreen_step(parts[1], 0, 7, "backfilled", -1);
    FAIL_LOOP("merge", sg_journal_merge(&m, parts, 2, &err), m);
    ck_assert_uint_eq(m->nshards, 5);
    ck_assert_uint_eq(m->shards[0].nbluegreen + m->shards[1].nbluegreen + m->shards[2].nbluegreen +
                          m->shards[3].nbluegreen + m->shards[4].nbluegreen,
                      4);
    sg_journal_free(m);
    sg_journal_free(parts[0]);
    sg_journal_free(parts[1]);
    sg_journal_free(back);
    sg_journal_free(j);
    free(text);
}
END_TEST

START_TEST(test_allocation_failure_store)
{
    sg_journal *j = full_journal(), *back = NULL;
    char **list = NULL;
    size_t count = 0;

    save(j, store, NULL);
    FAIL_LOOP("save", sg_journal_save(j, store, local, &err), NULL);
    FAIL_LOOP("load", sg_journal_load(&back, store, RUN_ID, &err), back);
    assert_journal_eq(j, back);
    sg_journal_free(back);
    back = NULL;
    FAIL_LOOP("load_file", sg_journal_load_file(&back, local, &err), back);
    sg_journal_free(back);
    FAIL_LOOP("list", sg_journal_list(&list, &count, store, &err), list);
    ck_assert_uint_eq(count, 1);
    sg_journal_list_free(list, count);
    sg_journal_free(j);
}
END_TEST

static Suite *journal_suite(void)
{
    Suite *s = suite_create("journal");
    TCase *tc;

    tc = tcase_create("run_id");
    tcase_add_test(tc, test_run_id);
    suite_add_tcase(s, tc);

    tc = tcase_create("new");
    tcase_add_test(tc, test_new_all);
    tcase_add_test(tc, test_new_partition);
    tcase_add_test(tc, test_new_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_to_json_errors);
    tcase_add_loop_test(tc, test_parse_bad_field, 0, sizeof(bad_fields) / sizeof(bad_fields[0]));
    tcase_add_test(tc, test_parse_bad_document);
    suite_add_tcase(s, tc);

    tc = tcase_create("transitions");
    tcase_add_test(tc, test_transitions_pass);
    tcase_add_test(tc, test_transitions_fail);
    tcase_add_test(tc, test_transitions_message);
    tcase_add_test(tc, test_transitions_stage_and_run);
    suite_add_tcase(s, tc);

    tc = tcase_create("bluegreen");
    tcase_add_test(tc, test_bluegreen_record);
    tcase_add_test(tc, test_bluegreen_repeat);
    tcase_add_test(tc, test_bluegreen_errors);
    tcase_add_test(tc, test_bluegreen_old_journal);
    tcase_add_test(tc, test_bluegreen_resume);
    suite_add_tcase(s, tc);

    tc = tcase_create("resume");
    tcase_add_loop_test(tc, test_resume_gate, 0, sizeof(resume_cases) / sizeof(resume_cases[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("store");
    tcase_add_checked_fixture(tc, store_setup, store_teardown);
    tcase_add_test(tc, test_save_load);
    tcase_add_test(tc, test_partitions_in_store);
    tcase_add_test(tc, test_load_missing);
    tcase_add_test(tc, test_load_corrupt);
    tcase_add_test(tc, test_save_store_fails);
    tcase_add_test(tc, test_save_local_fails);
    tcase_add_test(tc, test_list);
    suite_add_tcase(s, tc);

    tc = tcase_create("merge");
    tcase_add_test(tc, test_merge);
    tcase_add_test(tc, test_merge_bluegreen);
    tcase_add_test(tc, test_merge_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("allocation_failure");
    tcase_add_checked_fixture(tc, store_setup, store_teardown);
    tcase_add_test(tc, test_allocation_failure);
    tcase_add_test(tc, test_allocation_failure_store);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    /* jansson's allocator is chosen once, before the tests' own JSON use. */
    sg_json_init();
    config_init();
    sr = srunner_create(journal_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
