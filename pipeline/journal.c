#include "pipeline/journal.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"
#include "common/layout.h"
#include "common/mem.h"
#include "stages/bluegreen.h"

#define KEY_PREFIX "runs/"
#define KEY_SUFFIX "/journal.json"
/* JSON integers are signed 64-bit in jansson. */
#define JSON_UINT_MAX ((uint64_t)INT64_MAX)

static const char *const run_status_names[] = {"running", "done", "failed", "halted",
                                               "rolled-back"};
static const char *const shard_state_names[] = {
    "pending", "locked",   "snapshotted", "restored", "rehearsed",
    "applied", "verified", "done",        "failed",   "rolled-back"};
static const char *stage_state_names[SG_STAGE_ROLLED_BACK + 1];
static const char *gate_names[SG_GATE_COUNT];
/* The steps a blue-green change goes through: all but SG_BLUEGREEN_NONE. */
#define BLUEGREEN_STEPS ((int)SG_BLUEGREEN_FINALIZED)
static const char *bluegreen_step_names[BLUEGREEN_STEPS];

static void init(void);

/* What the gates before a gate leave a shard in, and what the gate does. */
static const sg_shard_state state_before[SG_GATE_COUNT] = {SG_SHARD_LOCKED, SG_SHARD_SNAPSHOTTED,
                                                           SG_SHARD_REHEARSED, SG_SHARD_APPLIED};
static const sg_shard_state state_after[SG_GATE_COUNT] = {SG_SHARD_SNAPSHOTTED, SG_SHARD_REHEARSED,
                                                          SG_SHARD_APPLIED, SG_SHARD_VERIFIED};

const char *sg_run_status_name(sg_run_status status)
{
    return run_status_names[status];
}

const char *sg_shard_state_name(sg_shard_state state)
{
    return shard_state_names[state];
}

static int nomem(sg_error *err)
{
    return sg_error_set(err, SG_E_NOMEM, "out of memory holding a run journal");
}

/* The error class of a code, or NULL when it is not one of the table's. */
static const char *code_name(int code)
{
    return code > SG_E_FIRST_ && code < SG_E_LAST_ ? sg_error_class(code) : NULL;
}

static bool code_of(int *code, const char *name)
{
    for (int c = SG_E_FIRST_ + 1; c < SG_E_LAST_; c++) {
        if (strcmp(sg_error_class(c), name) == 0) {
            *code = c;
            return true;
        }
    }
    return false;
}

static bool is_hex64(const char *s)
{
    size_t i;
    for (i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[i] == '\0';
}

/* "YYYY-MM-DDTHH:MM:SSZ": the only form the journal writes. */
static bool is_utc_time(const char *s)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:ddZ";
    size_t i;
    for (i = 0; pattern[i]; i++)
        if (pattern[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pattern[i])
            return false;
    return s[i] == '\0';
}

static void now_utc(char out[SG_JOURNAL_TIME_MAX])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, SG_JOURNAL_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms,
 * surrogates or code points above U+10FFFF), 0 if there is none. Stops at
 * the first byte that fails, so it never reads past a NUL. */
static size_t utf8_length(const unsigned char *s)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* Copies a message into a journal field, each byte that is not part of
 * valid UTF-8 replaced by '?': messages carry server text and file names in
 * whatever encoding, and are cut to fixed buffers, possibly inside a
 * character; JSON holds UTF-8 only. */
static void copy_text(char out[SG_JOURNAL_MESSAGE_MAX], const char *in)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t used = 0;
    while (*p) {
        size_t n = utf8_length(p);
        if (used + (n ? n : 1) >= SG_JOURNAL_MESSAGE_MAX)
            break;
        if (n == 0) {
            out[used++] = '?';
            p++;
            continue;
        }
        memcpy(out + used, p, n);
        used += n;
        p += n;
    }
    out[used] = '\0';
}

static uint64_t ms_of(double seconds)
{
    if (!(seconds > 0))
        return 0;
    if (seconds >= (double)JSON_UINT_MAX / 1000)
        return JSON_UINT_MAX;
    return (uint64_t)(seconds * 1000 + 0.5);
}

static bool partition_valid(unsigned k, unsigned n)
{
    return (k == 0 && n == 0) || (k >= 1 && k <= n);
}

/* ---- run ids ---- */

void sg_journal_new_run_id(char out[SG_RUN_ID_MAX])
{
    sg_run_id_new(out);
}

static bool run_id_valid(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len >= SG_RUN_ID_MAX || id[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
              (id[i] >= 'A' && id[i] <= 'Z') || strchr("._-", id[i])))
            return false;
    return true;
}

int sg_journal_run_id_check(const char *run_id, sg_error *err)
{
    if (run_id_valid(run_id))
        return 0;
    sg_error_set(err, SG_E_USAGE, "invalid run id \"%s\"", run_id);
    sg_error_hint(err, "run ids look like 20240501T020000Z-1a2b3c4d");
    return SG_E_USAGE;
}

/* ---- model ---- */

void sg_journal_free(sg_journal *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->nstages; i++)
        free(j->stages[i].name);
    for (size_t i = 0; i < j->nshards; i++) {
        free(j->shards[i].name);
        free(j->shards[i].bluegreen);
    }
    free(j->stages);
    free(j->shards);
    free(j->pipeline);
    free(j->by_name);
    free(j);
}

static int by_name_cmp(const void *a, const void *b, void *arg)
{
    const sg_journal *j = arg;
    return strcmp(j->shards[*(const size_t *)a].name, j->shards[*(const size_t *)b].name);
}

/* Builds the name index. Returns 1 with *dup set to the later of two
 * shards of the same name (in shard order), 0 without, or SG_E_NOMEM. */
static int index_names(sg_journal *j, size_t *dup, sg_error *err)
{
    free(j->by_name);
    if (!(j->by_name = sg_malloc(j->nshards * sizeof(*j->by_name))))
        return nomem(err);
    for (size_t i = 0; i < j->nshards; i++)
        j->by_name[i] = i;
    qsort_r(j->by_name, j->nshards, sizeof(*j->by_name), by_name_cmp, j);
    for (size_t i = 1; i < j->nshards; i++) {
        size_t a = j->by_name[i - 1], b = j->by_name[i];
        if (strcmp(j->shards[a].name, j->shards[b].name) == 0) {
            *dup = a > b ? a : b;
            return 1;
        }
    }
    return 0;
}

long sg_journal_shard_find(const sg_journal *j, const char *name)
{
    size_t lo = 0, hi = j->nshards;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, j->shards[j->by_name[mid]].name);
        if (c == 0)
            return (long)j->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

int sg_journal_new(sg_journal **out, const char *run_id, const sg_pipeline_config *cfg,
                   const char *config_sha256, unsigned part_k, unsigned part_n,
                   const bool *selected, sg_error *err)
{
    sg_journal *j = NULL;
    size_t count = 0, dup = 0;
    int rc;

    *out = NULL;
    if ((rc = sg_journal_run_id_check(run_id, err)) < 0)
        return rc;
    if (!partition_valid(part_k, part_n)) {
        sg_error_set(err, SG_E_USAGE, "invalid partition %u/%u", part_k, part_n);
        sg_error_hint(err, "partitions are numbered from 1 to N, as in 2/4");
        return SG_E_USAGE;
    }
    if (!is_hex64(config_sha256))
        return sg_error_set(err, SG_E_INTERNAL, "invalid pipeline file hash \"%s\"", config_sha256);
    for (size_t s = 0; s < cfg->nstages; s++)
        for (size_t i = 0; i < cfg->stages[s].nshards; i++)
            count += !selected || selected[cfg->stages[s].shards[i]];
    if (!(j = sg_calloc(1, sizeof(*j))) || !(j->pipeline = sg_strdup(cfg->name)) ||
        !(j->stages = sg_calloc(cfg->nstages, sizeof(*j->stages))) ||
        !(j->shards = sg_calloc(count, sizeof(*j->shards)))) {
        rc = nomem(err);
        goto done;
    }
    snprintf(j->run_id, sizeof(j->run_id), "%s", run_id);
    snprintf(j->config_sha256, sizeof(j->config_sha256), "%s", config_sha256);
    j->target = cfg->target;
    j->part_k = part_k;
    j->part_n = part_n;
    j->status = SG_RUN_RUNNING;
    now_utc(j->started_at);
    memcpy(j->updated_at, j->started_at, sizeof(j->updated_at));
    for (size_t s = 0; s < cfg->nstages; s++) {
        const sg_pipeline_stage *stage = &cfg->stages[s];
        if (!(j->stages[s].name = sg_strdup(stage->name))) {
            rc = nomem(err);
            goto done;
        }
        j->nstages++;
        for (size_t i = 0; i < stage->nshards; i++) {
            size_t fleet = stage->shards[i];
            if (selected && !selected[fleet])
                continue;
            if (!(j->shards[j->nshards].name = sg_strdup(cfg->fleet[fleet].name))) {
                rc = nomem(err);
                goto done;
            }
            j->shards[j->nshards++].stage = s;
        }
    }
    /* The pipeline file has no two shards of one name. */
    if ((rc = index_names(j, &dup, err)) < 0)
        goto done;
    *out = j;
    j = NULL;
    rc = 0;
done:
    sg_journal_free(j);
    return rc;
}

/* ---- transitions ---- */

void sg_journal_shard_state(sg_journal *j, size_t shard, sg_shard_state state)
{
    now_utc(j->updated_at);
    j->shards[shard].state = state;
}

void sg_journal_gate(sg_journal *j, size_t shard, sg_gate gate, const sg_gate_record *rec)
{
    sg_journal_shard *s = &j->shards[shard];
    sg_journal_gate_entry *g = &s->gates[gate];

    now_utc(j->updated_at);
    if (!rec->ran) {
        memset(g, 0, (SG_GATE_COUNT - (size_t)gate) * sizeof(*g));
        memcpy(g->started_at, j->updated_at, sizeof(g->started_at));
        s->state = state_before[gate];
        s->has_failure = false;
        memset(&s->failure, 0, sizeof(s->failure));
        return;
    }
    if (!g->started_at[0])
        memcpy(g->started_at, j->updated_at, sizeof(g->started_at));
    g->ran = true;
    g->rc = rec->rc;
    g->ms = ms_of(rec->seconds);
    copy_text(g->message, rec->message);
    if (rec->rc == 0) {
        s->state = state_after[gate];
        return;
    }
    s->state = SG_SHARD_FAILED;
    s->has_failure = true;
    s->failure.gate = gate;
    s->failure.code = rec->rc;
    memcpy(s->failure.message, g->message, sizeof(s->failure.message));
}

void sg_journal_shard_outcome(sg_journal *j, size_t shard, const sg_shard_outcome *outcome)
{
    sg_journal_shard *s = &j->shards[shard];
    now_utc(j->updated_at);
    if (outcome->snapshot_bytes || strcmp(s->snapshot_id, outcome->snapshot_id) != 0)
        s->snapshot_bytes = outcome->snapshot_bytes;
    snprintf(s->snapshot_id, sizeof(s->snapshot_id), "%s", outcome->snapshot_id);
    s->from_version = outcome->from_version;
    s->to_version = outcome->to_version;
    s->applied = outcome->applied;
    snprintf(s->rehearsal_fingerprint, sizeof(s->rehearsal_fingerprint), "%s",
             outcome->rehearsal.fingerprint);
    snprintf(s->live_fingerprint, sizeof(s->live_fingerprint), "%s", outcome->live_fingerprint);
    s->tables_verified = outcome->tables_verified;
}

static bool bluegreen_step_known(const char *step)
{
    for (int i = 0; i < BLUEGREEN_STEPS; i++)
        if (strcmp(bluegreen_step_names[i], step) == 0)
            return true;
    return false;
}

/* A lock is kept to the microsecond (finer is scheduling noise): below
 * 10^12 ms that is at most 15 significant digits, so it is written short
 * ("0.3", not "0.29999999999999999") and read back exact. -1: none. */
static double lock_of(double ms)
{
    if (!(ms >= 0) || !isfinite(ms))
        return -1;
    return ms < 1e12 ? (double)(uint64_t)(ms * 1000 + 0.5) / 1000 : ms;
}

/* Appends within the list's implicit capacity (sg_array_grow). */
static int bluegreen_append(sg_journal_shard *s, const sg_journal_bluegreen *step, sg_error *err)
{
    sg_journal_bluegreen *grown = sg_array_grow(s->bluegreen, s->nbluegreen, sizeof(*grown));
    if (!grown)
        return nomem(err);
    s->bluegreen = grown;
    s->bluegreen[s->nbluegreen++] = *step;
    return 0;
}

int sg_journal_bluegreen_step(sg_journal *j, size_t shard, int64_t version, const char *step,
                              double lock_ms, sg_error *err)
{
    sg_journal_shard *s = &j->shards[shard];
    sg_journal_bluegreen e = {.version = version, .lock_ms = lock_of(lock_ms)}, *same = NULL;
    int rc;

    init();
    if (version < 1)
        return sg_error_set(err, SG_E_INTERNAL,
                            "journal: shard %s: invalid blue-green version %" PRId64, s->name,
                            version);
    if (!bluegreen_step_known(step))
        return sg_error_set(err, SG_E_INTERNAL, "journal: shard %s: unknown blue-green step \"%s\"",
                            s->name, step);
    memcpy(e.step, step, strlen(step) + 1);
    now_utc(e.at);
    for (size_t i = 0; i < s->nbluegreen && !same; i++)
        if (s->bluegreen[i].version == version && strcmp(s->bluegreen[i].step, step) == 0)
            same = &s->bluegreen[i];
    if (same)
        *same = e;
    else if ((rc = bluegreen_append(s, &e, err)) < 0)
        return rc;
    memcpy(j->updated_at, e.at, sizeof(j->updated_at));
    return 0;
}

void sg_journal_stage_state(sg_journal *j, size_t stage, sg_stage_state state)
{
    sg_journal_stage *st = &j->stages[stage];
    now_utc(j->updated_at);
    st->state = state;
    if (state == SG_STAGE_RUNNING && !st->started_at[0])
        memcpy(st->started_at, j->updated_at, sizeof(st->started_at));
    if (state == SG_STAGE_DONE || state == SG_STAGE_FAILED || state == SG_STAGE_ROLLED_BACK)
        memcpy(st->finished_at, j->updated_at, sizeof(st->finished_at));
}

void sg_journal_run_status(sg_journal *j, sg_run_status status)
{
    now_utc(j->updated_at);
    j->status = status;
}

sg_gate sg_journal_resume_gate(const sg_journal *j, size_t shard, bool *done)
{
    const sg_journal_shard *s = &j->shards[shard];
    *done = false;
    switch (s->state) {
    case SG_SHARD_VERIFIED:
    case SG_SHARD_DONE:
        *done = true;
        return SG_GATE_VERIFY;
    case SG_SHARD_PENDING:
    case SG_SHARD_LOCKED:
    case SG_SHARD_ROLLED_BACK:
        return SG_GATE_SNAPSHOT;
    case SG_SHARD_FAILED:
        if (!s->has_failure || s->failure.gate == SG_GATE_SNAPSHOT)
            return SG_GATE_SNAPSHOT;
        break;
    default:
        break;
    }
    return s->snapshot_id[0] ? SG_GATE_TEST_RESTORE : SG_GATE_SNAPSHOT;
}

/* ---- writing ---- */

/* Collects the first error while the tree is built, so that building reads
 * as a list of fields with one check at the end. json_object_set_new fails
 * on a NULL container or value and releases the value, so a failed
 * allocation anywhere just propagates. */
typedef struct builder {
    sg_error *err;
    int rc;
} builder;

static void put(builder *b, json_t *obj, const char *key, json_t *value)
{
    if (json_object_set_new(obj, key, value) < 0 && b->rc == 0)
        b->rc = nomem(b->err);
}

static json_t *str(builder *b, const char *field, const char *s)
{
    json_t *v;
    if (b->rc < 0)
        return NULL;
    sg_json_alloc_reset();
    if (!(v = json_string(s)))
        b->rc = sg_json_alloc_failed()
                    ? nomem(b->err)
                    : sg_error_set(b->err, SG_E_FORMAT, "journal: %s: not valid UTF-8", field);
    return v;
}

/* "" is null: a time, id or fingerprint not known yet. */
static json_t *opt_str(builder *b, const char *field, const char *s)
{
    return s[0] ? str(b, field, s) : json_null();
}

static json_t *message(builder *b, const char *field, const char *s)
{
    char clean[SG_JOURNAL_MESSAGE_MAX];
    copy_text(clean, s);
    return str(b, field, clean);
}

static json_t *uint_json(uint64_t v)
{
    return json_integer((json_int_t)(v > JSON_UINT_MAX ? JSON_UINT_MAX : v));
}

static json_t *error_json(builder *b, const char *field, int code, bool nullable)
{
    const char *name = code_name(code);
    if (nullable && code == 0)
        return json_null();
    if (!name) {
        if (b->rc == 0)
            b->rc = sg_error_set(b->err, SG_E_INTERNAL, "journal: %s: %d is not an error code",
                                 field, code);
        return NULL;
    }
    return json_string(name);
}

static json_t *gate_json(builder *b, const sg_journal_gate_entry *g, const char *field)
{
    char sub[96];
    json_t *o = json_object();
    put(b, o, "started_at", opt_str(b, field, g->started_at));
    put(b, o, "ran", json_boolean(g->ran));
    put(b, o, "error", error_json(b, field, g->rc, true));
    put(b, o, "ms", uint_json(g->ms));
    snprintf(sub, sizeof(sub), "%s.message", field);
    put(b, o, "message", message(b, sub, g->message));
    return o;
}

/* A step is written only as the reader takes it back, so that a run can
 * always be resumed from its journal; lock_ms only when it has one
 * (lock_of keeps it finite). */
static json_t *bluegreen_json(builder *b, const sg_journal_shard *s, size_t index)
{
    char field[96];
    json_t *list = json_array();
    for (size_t i = 0; i < s->nbluegreen && b->rc == 0; i++) {
        const sg_journal_bluegreen *e = &s->bluegreen[i];
        json_t *o;
        snprintf(field, sizeof(field), "shards[%zu].bluegreen[%zu]", index, i);
        if (e->version < 1 || !bluegreen_step_known(e->step) || !is_utc_time(e->at)) {
            b->rc = sg_error_set(
                b->err, SG_E_INTERNAL,
                "journal: %s: invalid blue-green step \"%.*s\" of version %" PRId64 " at \"%.*s\"",
                field, (int)sizeof(e->step), e->step, e->version, (int)sizeof(e->at), e->at);
            break;
        }
        o = json_object();
        put(b, o, "version", json_integer(e->version));
        put(b, o, "step", json_string(e->step));
        put(b, o, "at", json_string(e->at));
        if (e->lock_ms >= 0)
            put(b, o, "lock_ms", json_real(e->lock_ms));
        if (json_array_append_new(list, o) < 0 && b->rc == 0)
            b->rc = nomem(b->err);
    }
    return list;
}

static json_t *shard_json(builder *b, const sg_journal *j, size_t index)
{
    const sg_journal_shard *s = &j->shards[index];
    char field[96];
    json_t *o = json_object(), *gates = json_object(), *failure = NULL;

    snprintf(field, sizeof(field), "shards[%zu].name", index);
    put(b, o, "name", str(b, field, s->name));
    put(b, o, "stage", json_string(j->stages[s->stage].name));
    put(b, o, "state", json_string(shard_state_names[s->state]));
    put(b, o, "snapshot_id", opt_str(b, "snapshot_id", s->snapshot_id));
    put(b, o, "snapshot_bytes", uint_json(s->snapshot_bytes));
    put(b, o, "from_version", json_integer(s->from_version));
    put(b, o, "to_version", json_integer(s->to_version));
    put(b, o, "applied", uint_json(s->applied));
    put(b, o, "rehearsal_fingerprint", opt_str(b, "fingerprint", s->rehearsal_fingerprint));
    put(b, o, "live_fingerprint", opt_str(b, "fingerprint", s->live_fingerprint));
    put(b, o, "tables_verified", uint_json(s->tables_verified));
    for (int g = 0; g < SG_GATE_COUNT; g++) {
        if (!s->gates[g].started_at[0] && !s->gates[g].ran)
            continue;
        snprintf(field, sizeof(field), "shards[%zu].gates.%s", index, gate_names[g]);
        put(b, gates, gate_names[g], gate_json(b, &s->gates[g], field));
    }
    put(b, o, "gates", gates);
    if (s->nbluegreen)
        put(b, o, "bluegreen", bluegreen_json(b, s, index));
    if (s->has_failure) {
        snprintf(field, sizeof(field), "shards[%zu].failure", index);
        failure = json_object();
        put(b, failure, "gate", json_string(gate_names[s->failure.gate]));
        put(b, failure, "error", error_json(b, field, s->failure.code, false));
        put(b, failure, "message", message(b, field, s->failure.message));
    }
    put(b, o, "failure", s->has_failure ? failure : json_null());
    return o;
}

static json_t *journal_json(builder *b, const sg_journal *j)
{
    json_t *o = json_object(), *partition = NULL, *stages = json_array(), *shards = json_array();
    char field[64];

    put(b, o, "format", json_integer(SG_JOURNAL_FORMAT));
    put(b, o, "run_id", str(b, "run_id", j->run_id));
    put(b, o, "pipeline", str(b, "pipeline", j->pipeline));
    put(b, o, "config_sha256", str(b, "config_sha256", j->config_sha256));
    put(b, o, "target",
        j->target == SG_PIPELINE_TARGET_LATEST ? json_string("latest") : json_integer(j->target));
    if (j->part_n) {
        partition = json_object();
        put(b, partition, "k", json_integer(j->part_k));
        put(b, partition, "n", json_integer(j->part_n));
    }
    put(b, o, "partition", j->part_n ? partition : json_null());
    put(b, o, "status", json_string(run_status_names[j->status]));
    put(b, o, "started_at", str(b, "started_at", j->started_at));
    put(b, o, "updated_at", str(b, "updated_at", j->updated_at));
    for (size_t i = 0; i < j->nstages; i++) {
        const sg_journal_stage *st = &j->stages[i];
        json_t *stage = json_object();
        snprintf(field, sizeof(field), "stages[%zu].name", i);
        put(b, stage, "name", str(b, field, st->name));
        put(b, stage, "state", json_string(stage_state_names[st->state]));
        put(b, stage, "started_at", opt_str(b, "started_at", st->started_at));
        put(b, stage, "finished_at", opt_str(b, "finished_at", st->finished_at));
        if (json_array_append_new(stages, stage) < 0 && b->rc == 0)
            b->rc = nomem(b->err);
    }
    put(b, o, "stages", stages);
    for (size_t i = 0; i < j->nshards && b->rc == 0; i++)
        if (json_array_append_new(shards, shard_json(b, j, i)) < 0 && b->rc == 0)
            b->rc = nomem(b->err);
    put(b, o, "shards", shards);
    return o;
}

static void names_init(void)
{
    for (int s = 0; s <= SG_STAGE_ROLLED_BACK; s++)
        stage_state_names[s] = sg_stage_state_name((sg_stage_state)s);
    for (int g = 0; g < SG_GATE_COUNT; g++)
        gate_names[g] = sg_gate_name((sg_gate)g);
    for (int i = 0; i < BLUEGREEN_STEPS; i++)
        bluegreen_step_names[i] = sg_bluegreen_step_name((sg_bluegreen_step)(i + 1));
}

/* The name tables come from the modules that own the enums. */
static void init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    sg_json_init();
    pthread_once(&once, names_init);
}

static int dump_callback(const char *text, size_t len, void *data)
{
    sg_buf *buf = data;
    return sg_buf_append(buf, text, len, NULL) < 0 ? -1 : 0;
}

int sg_journal_to_json(char **out, const sg_journal *j, sg_error *err)
{
    builder b = {err, 0};
    json_t *root = NULL;
    sg_buf buf = {0};
    int rc;

    *out = NULL;
    init();
    root = journal_json(&b, j);
    if ((rc = b.rc) < 0)
        goto done;
    if (!root) {
        rc = nomem(err);
        goto done;
    }
    /* Every string was made by json_string, so it is valid UTF-8: only an
     * allocation can fail the dump. The only reals are lock times, kept to
     * the microsecond (lock_of): 15 digits write them short and exact. */
    if (json_dump_callback(root, dump_callback, &buf, JSON_COMPACT | JSON_REAL_PRECISION(15)) < 0 ||
        sg_buf_append(&buf, "\n", 1, NULL) < 0 || sg_buf_terminate(&buf, NULL) < 0) {
        rc = nomem(err);
        goto done;
    }
    *out = (char *)buf.data;
    buf.data = NULL;
done:
    free(buf.data);
    json_decref(root);
    return rc;
}

/* ---- reading ---- */

/* Where in the document a value sits, for messages: "shards[2].gates". */
typedef struct jctx {
    char path[128];
    sg_error *err;
} jctx;

static void enter(jctx *sub, const jctx *c, const char *key, long index)
{
    char at[24] = "";
    if (index >= 0)
        snprintf(at, sizeof(at), "[%ld]", index);
    sub->err = c->err;
    if (snprintf(sub->path, sizeof(sub->path), "%s%s%s%s", c->path, c->path[0] ? "." : "", key,
                 at) >= (int)sizeof(sub->path))
        strcpy(sub->path + sizeof(sub->path) - 4, "...");
}

static int field_error(const jctx *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "journal: PATH.KEY: problem"; key may be NULL for the value at PATH. */
static int field_error(const jctx *c, const char *key, const char *fmt, ...)
{
    char problem[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    return sg_error_set(c->err, SG_E_FORMAT, "journal: %s%s%s: %s", c->path,
                        c->path[0] && key ? "." : "", key ? key : "", problem);
}

static const char *type_name(json_type type)
{
    switch (type) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    default:
        return "true or false";
    }
}

/* Member `key` of obj, which must be there and of `type` (JSON_TRUE stands
 * for either boolean); null too when nullable, giving *out NULL. */
static int member(json_t **out, const jctx *c, json_t *obj, const char *key, json_type type,
                  bool nullable)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v)
        return field_error(c, key, "missing");
    if (nullable && json_is_null(v))
        return 0;
    if (json_typeof(v) != type && !(type == JSON_TRUE && json_is_boolean(v)))
        return field_error(c, key, "must be %s%s", type_name(type), nullable ? " or null" : "");
    *out = v;
    return 0;
}

/* Refuses members not in `known` (NULL-terminated). */
static int known_only(const jctx *c, json_t *obj, const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i = 0;
        while (known[i] && strcmp(known[i], key) != 0)
            i++;
        if (!known[i])
            return field_error(c, key, "unknown field");
    }
    return 0;
}

static int get_str(const char **out, const jctx *c, json_t *obj, const char *key, bool nullable)
{
    json_t *v = NULL;
    int rc = member(&v, c, obj, key, JSON_STRING, nullable);
    *out = v ? json_string_value(v) : NULL;
    return rc;
}

/* A string into a fixed buffer; null is "". */
static int get_fixed(char *out, size_t size, const jctx *c, json_t *obj, const char *key,
                     bool nullable)
{
    const char *s = NULL;
    int rc = get_str(&s, c, obj, key, nullable);
    if (rc < 0)
        return rc;
    if (!s)
        s = "";
    if (strlen(s) >= size)
        return field_error(c, key, "longer than %zu bytes", size - 1);
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int get_time(char out[SG_JOURNAL_TIME_MAX], const jctx *c, json_t *obj, const char *key,
                    bool nullable)
{
    const char *s = NULL;
    int rc = get_str(&s, c, obj, key, nullable);
    if (rc < 0 || !s)
        return rc;
    if (!is_utc_time(s))
        return field_error(c, key, "must be a UTC time (YYYY-MM-DDTHH:MM:SSZ)");
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int get_hex64(char out[SG_SHA256_HEX_LEN], const jctx *c, json_t *obj, const char *key,
                     bool nullable)
{
    const char *s = NULL;
    int rc = get_str(&s, c, obj, key, nullable);
    if (rc < 0 || !s)
        return rc;
    if (!is_hex64(s))
        return field_error(c, key, "must be 64 hexadecimal digits");
    memcpy(out, s, 65);
    return 0;
}

static int get_int(int64_t *out, const jctx *c, json_t *obj, const char *key, int64_t min,
                   int64_t max)
{
    json_t *v = NULL;
    int rc = member(&v, c, obj, key, JSON_INTEGER, false);
    if (rc < 0)
        return rc;
    if (json_integer_value(v) < min || json_integer_value(v) > max)
        return field_error(c, key, "must be an integer from %" PRId64 " to %" PRId64, min, max);
    *out = json_integer_value(v);
    return 0;
}

static int get_size(size_t *out, const jctx *c, json_t *obj, const char *key)
{
    int64_t v = 0;
    int rc = get_int(&v, c, obj, key, 0, SIZE_MAX < INT64_MAX ? (int64_t)SIZE_MAX : INT64_MAX);
    *out = (size_t)v;
    return rc;
}

/* A string naming one of names[0..count). */
static int get_enum(int *out, const jctx *c, json_t *obj, const char *key, const char *const *names,
                    int count, const char *what)
{
    const char *s = NULL;
    int rc = get_str(&s, c, obj, key, false);
    if (rc < 0)
        return rc;
    for (int i = 0; i < count; i++) {
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return 0;
        }
    }
    return field_error(c, key, "unknown %s \"%s\"", what, s);
}

static int get_error(int *out, const jctx *c, json_t *obj, const char *key, bool nullable)
{
    const char *s = NULL;
    int rc = get_str(&s, c, obj, key, nullable);
    *out = 0;
    if (rc < 0 || !s)
        return rc;
    if (!code_of(out, s))
        return field_error(c, key, "unknown error class \"%s\"", s);
    return 0;
}

static int parse_gate(sg_journal_gate_entry *g, const jctx *c, json_t *obj)
{
    static const char *const known[] = {"started_at", "ran", "error", "ms", "message", NULL};
    json_t *ran = NULL;
    int64_t ms = 0;
    int rc;
    if (!json_is_object(obj))
        return field_error(c, NULL, "must be an object");
    if ((rc = known_only(c, obj, known)) < 0 ||
        (rc = get_time(g->started_at, c, obj, "started_at", true)) < 0 ||
        (rc = member(&ran, c, obj, "ran", JSON_TRUE, false)) < 0 ||
        (rc = get_error(&g->rc, c, obj, "error", true)) < 0 ||
        (rc = get_int(&ms, c, obj, "ms", 0, INT64_MAX)) < 0 ||
        (rc = get_fixed(g->message, sizeof(g->message), c, obj, "message", false)) < 0)
        return rc;
    g->ran = json_is_true(ran);
    g->ms = (uint64_t)ms;
    return 0;
}

static int parse_gates(sg_journal_shard *s, const jctx *c, json_t *obj)
{
    json_t *gates = NULL, *v;
    const char *key;
    jctx sub;
    int rc;
    if ((rc = member(&gates, c, obj, "gates", JSON_OBJECT, false)) < 0)
        return rc;
    enter(&sub, c, "gates", -1);
    json_object_foreach(gates, key, v)
    {
        jctx gate;
        int g = 0;
        while (g < SG_GATE_COUNT && strcmp(gate_names[g], key) != 0)
            g++;
        if (g == SG_GATE_COUNT)
            return field_error(&sub, key, "unknown gate");
        enter(&gate, &sub, key, -1);
        if ((rc = parse_gate(&s->gates[g], &gate, v)) < 0)
            return rc;
    }
    return 0;
}

static int parse_failure(sg_journal_shard *s, const jctx *c, json_t *obj)
{
    static const char *const known[] = {"gate", "error", "message", NULL};
    json_t *failure = NULL;
    int gate = 0, rc;
    jctx sub;
    if ((rc = member(&failure, c, obj, "failure", JSON_OBJECT, true)) < 0 || !failure)
        return rc;
    enter(&sub, c, "failure", -1);
    if ((rc = known_only(&sub, failure, known)) < 0 ||
        (rc = get_enum(&gate, &sub, failure, "gate", gate_names, SG_GATE_COUNT, "gate")) < 0 ||
        (rc = get_error(&s->failure.code, &sub, failure, "error", false)) < 0 ||
        (rc = get_fixed(s->failure.message, sizeof(s->failure.message), &sub, failure, "message",
                        false)) < 0)
        return rc;
    s->failure.gate = (sg_gate)gate;
    s->has_failure = true;
    return 0;
}

static int parse_bluegreen_step(sg_journal_bluegreen *e, const jctx *c, json_t *obj)
{
    static const char *const known[] = {"version", "step", "at", "lock_ms", NULL};
    json_t *lock;
    int step = 0, rc;

    if (!json_is_object(obj))
        return field_error(c, NULL, "must be an object");
    if ((rc = known_only(c, obj, known)) < 0 ||
        (rc = get_int(&e->version, c, obj, "version", 1, INT64_MAX)) < 0 ||
        (rc = get_enum(&step, c, obj, "step", bluegreen_step_names, BLUEGREEN_STEPS,
                       "blue-green step")) < 0 ||
        (rc = get_time(e->at, c, obj, "at", false)) < 0)
        return rc;
    memcpy(e->step, bluegreen_step_names[step], strlen(bluegreen_step_names[step]) + 1);
    e->lock_ms = -1;
    if (!(lock = json_object_get(obj, "lock_ms")))
        return 0;
    if (!json_is_number(lock))
        return field_error(c, "lock_ms", "must be a number");
    if (json_number_value(lock) < 0)
        return field_error(c, "lock_ms", "must be a number from 0");
    e->lock_ms = json_number_value(lock);
    return 0;
}

static int bluegreen_cmp(const void *a, const void *b, void *arg)
{
    const sg_journal_bluegreen *list = arg;
    size_t i = *(const size_t *)a, k = *(const size_t *)b;
    int c;
    if (list[i].version != list[k].version)
        return list[i].version < list[k].version ? -1 : 1;
    if ((c = strcmp(list[i].step, list[k].step)) != 0)
        return c;
    return i < k ? -1 : i > k;
}

/* Each version's steps are in the list once (sg_journal_bluegreen_step
 * replaces a repeat). Checked by sorting, not pair by pair, so that a
 * crafted journal cannot make loading quadratic; the repeat named is the
 * first in the list. */
static int bluegreen_unique(const sg_journal_shard *s, const jctx *c)
{
    size_t *order = NULL, repeat = SIZE_MAX;
    jctx sub;
    int rc = 0;

    if (s->nbluegreen < 2)
        return 0;
    if (!(order = sg_malloc(s->nbluegreen * sizeof(*order))))
        return nomem(c->err);
    for (size_t i = 0; i < s->nbluegreen; i++)
        order[i] = i;
    qsort_r(order, s->nbluegreen, sizeof(*order), bluegreen_cmp, s->bluegreen);
    for (size_t i = 1; i < s->nbluegreen; i++) {
        const sg_journal_bluegreen *x = &s->bluegreen[order[i - 1]], *y = &s->bluegreen[order[i]];
        if (x->version == y->version && strcmp(x->step, y->step) == 0 && order[i] < repeat)
            repeat = order[i];
    }
    if (repeat != SIZE_MAX) {
        enter(&sub, c, "bluegreen", (long)repeat);
        rc = field_error(&sub, NULL, "duplicate step \"%s\" of version %" PRId64,
                         s->bluegreen[repeat].step, s->bluegreen[repeat].version);
    }
    free(order);
    return rc;
}

/* Optional: journals written before blue-green changes have none. */
static int parse_bluegreen(sg_journal_shard *s, const jctx *c, json_t *obj)
{
    json_t *list = json_object_get(obj, "bluegreen"), *item;
    size_t i;
    jctx sub;
    int rc;

    if (!list)
        return 0;
    if (!json_is_array(list))
        return field_error(c, "bluegreen", "must be an array");
    json_array_foreach(list, i, item)
    {
        sg_journal_bluegreen e = {0};
        enter(&sub, c, "bluegreen", (long)i);
        if ((rc = parse_bluegreen_step(&e, &sub, item)) < 0 ||
            (rc = bluegreen_append(s, &e, c->err)) < 0)
            return rc;
    }
    return bluegreen_unique(s, c);
}

static int parse_shard(sg_journal *j, sg_journal_shard *s, const jctx *c, json_t *obj)
{
    static const char *const known[] = {"name",
                                        "stage",
                                        "state",
                                        "snapshot_id",
                                        "snapshot_bytes",
                                        "from_version",
                                        "to_version",
                                        "applied",
                                        "rehearsal_fingerprint",
                                        "live_fingerprint",
                                        "tables_verified",
                                        "gates",
                                        "bluegreen",
                                        "failure",
                                        NULL};
    const char *name = NULL, *stage = NULL;
    int64_t bytes = 0;
    int state = 0, rc;

    if (!json_is_object(obj))
        return field_error(c, NULL, "must be an object");
    if ((rc = known_only(c, obj, known)) < 0 || (rc = get_str(&name, c, obj, "name", false)) < 0)
        return rc;
    if (sg_shard_name_check(name, NULL) < 0)
        return field_error(c, "name", "invalid shard name \"%s\"", name);
    if (!(s->name = sg_strdup(name)))
        return nomem(c->err);
    if ((rc = get_str(&stage, c, obj, "stage", false)) < 0)
        return rc;
    while (s->stage < j->nstages && strcmp(j->stages[s->stage].name, stage) != 0)
        s->stage++;
    if (s->stage == j->nstages)
        return field_error(c, "stage", "unknown stage \"%s\"", stage);
    if ((rc = get_enum(&state, c, obj, "state", shard_state_names, SG_SHARD_ROLLED_BACK + 1,
                       "state")) < 0 ||
        (rc = get_fixed(s->snapshot_id, sizeof(s->snapshot_id), c, obj, "snapshot_id", true)) < 0)
        return rc;
    s->state = (sg_shard_state)state;
    if (s->snapshot_id[0] && !sg_snapshot_id_valid(s->snapshot_id))
        return field_error(c, "snapshot_id", "invalid snapshot id \"%s\"", s->snapshot_id);
    if ((rc = get_int(&bytes, c, obj, "snapshot_bytes", 0, INT64_MAX)) < 0)
        return rc;
    s->snapshot_bytes = (uint64_t)bytes;
    if ((rc = get_int(&s->from_version, c, obj, "from_version", 0, INT64_MAX)) < 0 ||
        (rc = get_int(&s->to_version, c, obj, "to_version", 0, INT64_MAX)) < 0 ||
        (rc = get_size(&s->applied, c, obj, "applied")) < 0 ||
        (rc = get_hex64(s->rehearsal_fingerprint, c, obj, "rehearsal_fingerprint", true)) < 0 ||
        (rc = get_hex64(s->live_fingerprint, c, obj, "live_fingerprint", true)) < 0 ||
        (rc = get_size(&s->tables_verified, c, obj, "tables_verified")) < 0 ||
        (rc = parse_gates(s, c, obj)) < 0 || (rc = parse_bluegreen(s, c, obj)) < 0)
        return rc;
    return parse_failure(s, c, obj);
}

static int parse_stage(sg_journal *j, sg_journal_stage *st, const jctx *c, json_t *obj)
{
    static const char *const known[] = {"name", "state", "started_at", "finished_at", NULL};
    const char *name = NULL;
    int state = 0, rc;

    if (!json_is_object(obj))
        return field_error(c, NULL, "must be an object");
    if ((rc = known_only(c, obj, known)) < 0 || (rc = get_str(&name, c, obj, "name", false)) < 0)
        return rc;
    if (name[0] == '\0')
        return field_error(c, "name", "must not be empty");
    for (sg_journal_stage *other = j->stages; other < st; other++)
        if (strcmp(other->name, name) == 0)
            return field_error(c, "name", "duplicate stage \"%s\"", name);
    if (!(st->name = sg_strdup(name)))
        return nomem(c->err);
    if ((rc = get_enum(&state, c, obj, "state", stage_state_names, SG_STAGE_ROLLED_BACK + 1,
                       "state")) < 0 ||
        (rc = get_time(st->started_at, c, obj, "started_at", true)) < 0 ||
        (rc = get_time(st->finished_at, c, obj, "finished_at", true)) < 0)
        return rc;
    st->state = (sg_stage_state)state;
    return 0;
}

static int parse_target(sg_journal *j, const jctx *c, json_t *root)
{
    json_t *v = json_object_get(root, "target");
    if (!v)
        return field_error(c, "target", "missing");
    if (json_is_string(v) && strcmp(json_string_value(v), "latest") == 0) {
        j->target = SG_PIPELINE_TARGET_LATEST;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return field_error(c, "target", "must be \"latest\" or a version (an integer from 0)");
    j->target = json_integer_value(v);
    return 0;
}

static int parse_partition(sg_journal *j, const jctx *c, json_t *root)
{
    static const char *const known[] = {"k", "n", NULL};
    json_t *partition = NULL;
    int64_t k = 0, n = 0;
    jctx sub;
    int rc;
    if ((rc = member(&partition, c, root, "partition", JSON_OBJECT, true)) < 0 || !partition)
        return rc;
    enter(&sub, c, "partition", -1);
    if ((rc = known_only(&sub, partition, known)) < 0 ||
        (rc = get_int(&n, &sub, partition, "n", 1, UINT_MAX)) < 0 ||
        (rc = get_int(&k, &sub, partition, "k", 1, n)) < 0)
        return rc;
    j->part_k = (unsigned)k;
    j->part_n = (unsigned)n;
    return 0;
}

/* Arrays of objects are sized first, so that each item is parsed in place
 * and counted only once its name is set (the rest of it is plain data). */
static int parse_root(sg_journal *j, json_t *root, sg_error *err)
{
    static const char *const known[] = {"format",     "run_id",    "pipeline", "config_sha256",
                                        "target",     "partition", "status",   "started_at",
                                        "updated_at", "stages",    "shards",   NULL};
    jctx c = {"", err}, sub;
    json_t *format = NULL, *stages = NULL, *shards = NULL, *item;
    const char *run_id = NULL, *pipeline = NULL;
    int status = 0, rc;
    size_t i, dup = 0;

    if (!json_is_object(root))
        return sg_error_set(err, SG_E_FORMAT, "journal: not a JSON object");
    if ((rc = member(&format, &c, root, "format", JSON_INTEGER, false)) < 0)
        return rc;
    if (json_integer_value(format) != SG_JOURNAL_FORMAT) {
        field_error(&c, "format",
                    "version %" JSON_INTEGER_FORMAT
                    " is not supported (this shardgate reads version %d)",
                    json_integer_value(format), SG_JOURNAL_FORMAT);
        if (json_integer_value(format) > SG_JOURNAL_FORMAT)
            sg_error_hint(err, "a newer shardgate wrote this journal; use it, or upgrade");
        return SG_E_FORMAT;
    }
    if ((rc = known_only(&c, root, known)) < 0 ||
        (rc = get_str(&run_id, &c, root, "run_id", false)) < 0)
        return rc;
    if (!run_id_valid(run_id))
        return field_error(&c, "run_id", "invalid run id \"%s\"", run_id);
    memcpy(j->run_id, run_id, strlen(run_id) + 1);
    if ((rc = get_str(&pipeline, &c, root, "pipeline", false)) < 0)
        return rc;
    if (pipeline[0] == '\0')
        return field_error(&c, "pipeline", "must not be empty");
    if (!(j->pipeline = sg_strdup(pipeline)))
        return nomem(err);
    if ((rc = get_hex64(j->config_sha256, &c, root, "config_sha256", false)) < 0 ||
        (rc = parse_target(j, &c, root)) < 0 || (rc = parse_partition(j, &c, root)) < 0 ||
        (rc = get_enum(&status, &c, root, "status", run_status_names, SG_RUN_ROLLED_BACK + 1,
                       "status")) < 0 ||
        (rc = get_time(j->started_at, &c, root, "started_at", false)) < 0 ||
        (rc = get_time(j->updated_at, &c, root, "updated_at", false)) < 0 ||
        (rc = member(&stages, &c, root, "stages", JSON_ARRAY, false)) < 0)
        return rc;
    j->status = (sg_run_status)status;
    if (!(j->stages = sg_calloc(json_array_size(stages), sizeof(*j->stages))))
        return nomem(err);
    json_array_foreach(stages, i, item)
    {
        enter(&sub, &c, "stages", (long)i);
        rc = parse_stage(j, &j->stages[i], &sub, item);
        j->nstages += j->stages[i].name != NULL;
        if (rc < 0)
            return rc;
    }
    if ((rc = member(&shards, &c, root, "shards", JSON_ARRAY, false)) < 0)
        return rc;
    if (!(j->shards = sg_calloc(json_array_size(shards), sizeof(*j->shards))))
        return nomem(err);
    json_array_foreach(shards, i, item)
    {
        enter(&sub, &c, "shards", (long)i);
        rc = parse_shard(j, &j->shards[i], &sub, item);
        j->nshards += j->shards[i].name != NULL;
        if (rc < 0)
            return rc;
    }
    if ((rc = index_names(j, &dup, err)) < 0)
        return rc;
    if (rc == 1) {
        enter(&sub, &c, "shards", (long)dup);
        return field_error(&sub, "name", "duplicate shard \"%s\"", j->shards[dup].name);
    }
    return 0;
}

int sg_journal_parse(sg_journal **out, const char *text, size_t len, sg_error *err)
{
    json_error_t jerr;
    json_t *root = NULL;
    sg_journal *j = NULL;
    int rc;

    *out = NULL;
    init();
    sg_json_alloc_reset();
    if (!(root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr))) {
        if (sg_json_alloc_failed())
            return nomem(err);
        sg_error_set(err, SG_E_FORMAT, "journal: not valid JSON");
        sg_error_detail(err, "%s at line %d, column %d", jerr.text, jerr.line, jerr.column);
        return SG_E_FORMAT;
    }
    if (!(j = sg_calloc(1, sizeof(*j)))) {
        rc = nomem(err);
        goto done;
    }
    if ((rc = parse_root(j, root, err)) < 0)
        goto done;
    *out = j;
    j = NULL;
done:
    json_decref(root);
    sg_journal_free(j);
    return rc;
}

/* ---- store and file ---- */

/* "runs/<id>/journal.json" for a run of the whole fleet; the partitions of a
 * run share its id, each with its own "runs/<id>/journal-K-of-N.json", so
 * that N jobs never overwrite each other's journal. */
static char *journal_key(const char *run_id, unsigned k, unsigned n)
{
    return n ? sg_asprintf(KEY_PREFIX "%s/journal-%u-of-%u.json", run_id, k, n)
             : sg_asprintf(KEY_PREFIX "%s" KEY_SUFFIX, run_id);
}

int sg_journal_save(const sg_journal *j, sg_store *store, const char *local_path, sg_error *err)
{
    char *text = NULL, *key = NULL;
    sg_error store_err = {0};
    size_t len;
    int rc;

    if ((rc = sg_journal_to_json(&text, j, err)) < 0)
        return rc;
    len = strlen(text);
    if (local_path)
        rc = sg_file_replace(local_path, text, len, err);
    if (!store)
        goto done;
    /* A put replaces the object whole (the file store renames a complete
     * temporary file, an S3 PUT is atomic): a reader sees one journal. */
    if (!(key = journal_key(j->run_id, j->part_k, j->part_n)))
        sg_error_set(&store_err, SG_E_NOMEM, "out of memory holding a run journal");
    else if (sg_store_put(store, key, text, len, &store_err) == 0)
        goto done;
    sg_error_prefix(&store_err, "cannot store the journal of run %s", j->run_id);
    if (rc < 0) {
        sg_error_detail(err, "%s", store_err.message);
    } else {
        rc = store_err.code;
        if (err)
            *err = store_err;
    }
done:
    free(key);
    free(text);
    return rc;
}

static int load_key(sg_journal **out, sg_store *store, const char *run_id, unsigned k, unsigned n,
                    sg_error *err)
{
    char *key = NULL;
    sg_buf buf = {0};
    uint64_t size = 0;
    int rc;

    *out = NULL;
    if ((rc = sg_journal_run_id_check(run_id, err)) < 0)
        return rc;
    if (!(key = journal_key(run_id, k, n))) {
        rc = nomem(err);
        goto done;
    }
    if ((rc = sg_store_size(store, key, &size, err)) == SG_E_NOT_FOUND) {
        if (n)
            sg_error_set(err, SG_E_NOT_FOUND,
                         "run %s has no journal for partition %u/%u in store %s", run_id, k, n,
                         sg_store_url(store));
        else
            sg_error_set(err, SG_E_NOT_FOUND, "run %s has no journal in store %s", run_id,
                         sg_store_url(store));
        goto done;
    }
    if (rc < 0)
        goto done;
    if (size > SG_JOURNAL_MAX_BYTES) {
        rc = sg_error_set(err, SG_E_FORMAT,
                          "journal of run %s is too large (%" PRIu64 " bytes, at most %zu)", run_id,
                          size, SG_JOURNAL_MAX_BYTES);
        goto done;
    }
    /* To the end, not `size` bytes: a running run may have replaced it. */
    if ((rc = sg_store_get(store, key, 0, UINT64_MAX, &buf, err)) < 0)
        goto done;
    if ((rc = sg_journal_parse(out, buf.data ? (const char *)buf.data : "", buf.len, err)) < 0)
        sg_error_detail(err, "in %s of store %s", key, sg_store_url(store));
done:
    sg_buf_free(&buf);
    free(key);
    return rc;
}

/* The partitions' journals of a run: "journal-K-of-N.json" under its key. */
typedef struct part_list {
    unsigned (*parts)[2];
    size_t count;
    sg_error *err;
} part_list;

static int list_part(void *ctx, const char *key, uint64_t size)
{
    part_list *l = ctx;
    const char *name = strrchr(key, '/');
    unsigned k, n;
    char tail;
    (void)size;
    if (!name || sscanf(name, "/journal-%u-of-%u.jso%c", &k, &n, &tail) != 3 || tail != 'n' ||
        k < 1 || k > n)
        return 0;
    unsigned(*grown)[2] = sg_array_grow(l->parts, l->count, sizeof(*l->parts));
    if (!grown)
        return nomem(l->err);
    l->parts = grown;
    l->parts[l->count][0] = k;
    l->parts[l->count][1] = n;
    l->count++;
    return 0;
}

int sg_journal_load_part(sg_journal **out, sg_store *store, const char *run_id, unsigned k,
                         unsigned n, sg_error *err)
{
    return load_key(out, store, run_id, k, n, err);
}

int sg_journal_load(sg_journal **out, sg_store *store, const char *run_id, sg_error *err)
{
    part_list l = {NULL, 0, err};
    sg_journal **parts = NULL;
    char *prefix = NULL;
    size_t loaded = 0;
    int rc = load_key(out, store, run_id, 0, 0, err);
    if (rc != SG_E_NOT_FOUND)
        return rc;
    /* no journal of the whole fleet: the run's partitions, merged */
    if (!(prefix = sg_asprintf(KEY_PREFIX "%s/", run_id)))
        return nomem(err);
    if ((rc = sg_store_list(store, prefix, list_part, &l, err)) < 0)
        goto done;
    if (l.count == 0) {
        rc = sg_error_set(err, SG_E_NOT_FOUND, "run %s has no journal in store %s", run_id,
                          sg_store_url(store));
        goto done;
    }
    if (!(parts = sg_calloc(l.count, sizeof(*parts)))) {
        rc = nomem(err);
        goto done;
    }
    for (; loaded < l.count; loaded++)
        if ((rc = load_key(&parts[loaded], store, run_id, l.parts[loaded][0], l.parts[loaded][1],
                           err)) < 0)
            goto done;
    if (l.count == 1) {
        *out = parts[0];
        parts[0] = NULL;
    } else {
        rc = sg_journal_merge(out, parts, l.count, err);
    }
done:
    for (size_t i = 0; parts && i < l.count; i++)
        sg_journal_free(parts[i]);
    free(parts);
    free(l.parts);
    free(prefix);
    return rc;
}

int sg_journal_load_file(sg_journal **out, const char *path, sg_error *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    if ((rc = sg_file_read(&text, &len, path, SG_JOURNAL_MAX_BYTES, err)) < 0) {
        if (rc == SG_E_IO && access(path, F_OK) < 0 && errno == ENOENT)
            rc = sg_error_set(err, SG_E_NOT_FOUND, "journal file %s does not exist", path);
        goto done;
    }
    if ((rc = sg_journal_parse(out, text, len, err)) < 0)
        sg_error_detail(err, "in %s", path);
done:
    free(text);
    return rc;
}

typedef struct run_list {
    char **ids;
    size_t count;
    sg_error *err;
} run_list;

/* Keeps "runs/<id>/journal.json" and "runs/<id>/journal-K-of-N.json";
 * anything else under runs/ is not ours. */
static int list_one(void *ctx, const char *key, uint64_t size)
{
    run_list *l = ctx;
    const char *id = key + strlen(KEY_PREFIX), *slash = strchr(id, '/');
    size_t len = slash ? (size_t)(slash - id) : 0;
    char candidate[SG_RUN_ID_MAX], **grown;

    unsigned k, n;
    char tail;
    (void)size;
    if (len == 0 || len >= SG_RUN_ID_MAX ||
        (strcmp(slash, KEY_SUFFIX) != 0 &&
         (sscanf(slash, "/journal-%u-of-%u.jso%c", &k, &n, &tail) != 3 || tail != 'n')))
        return 0;
    memcpy(candidate, id, len);
    candidate[len] = '\0';
    if (!run_id_valid(candidate))
        return 0;
    if (!(grown = sg_array_grow(l->ids, l->count, sizeof(*l->ids))))
        return nomem(l->err);
    l->ids = grown;
    if (!(l->ids[l->count] = sg_strdup(candidate)))
        return nomem(l->err);
    l->count++;
    return 0;
}

static int newest_first(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

int sg_journal_list(char ***run_ids, size_t *count, sg_store *store, sg_error *err)
{
    run_list l = {NULL, 0, err};
    int rc;

    *run_ids = NULL;
    *count = 0;
    if ((rc = sg_store_list(store, KEY_PREFIX, list_one, &l, err)) < 0) {
        sg_journal_list_free(l.ids, l.count);
        return rc;
    }
    if (l.count)
        qsort(l.ids, l.count, sizeof(*l.ids), newest_first);
    /* a partitioned run has a journal per partition: one id each */
    size_t kept = 0;
    for (size_t i = 0; i < l.count; i++) {
        if (kept && strcmp(l.ids[kept - 1], l.ids[i]) == 0)
            free(l.ids[i]);
        else
            l.ids[kept++] = l.ids[i];
    }
    l.count = kept;
    *run_ids = l.ids;
    *count = l.count;
    return 0;
}

void sg_journal_list_free(char **run_ids, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(run_ids[i]);
    free(run_ids);
}

/* ---- merge ---- */

static void part_label(char out[48], const sg_journal *part, size_t index)
{
    if (part->part_n)
        snprintf(out, 48, "partition %u/%u", part->part_k, part->part_n);
    else
        snprintf(out, 48, "journal %zu (the whole fleet)", index + 1);
}

static bool same_stages(const sg_journal *a, const sg_journal *b)
{
    if (a->nstages != b->nstages)
        return false;
    for (size_t i = 0; i < a->nstages; i++)
        if (strcmp(a->stages[i].name, b->stages[i].name) != 0)
            return false;
    return true;
}

static int check_part(sg_journal *const *parts, size_t index, sg_error *err)
{
    const sg_journal *first = parts[0], *part = parts[index];
    char label[48], first_label[48];
    part_label(label, part, index);
    part_label(first_label, first, 0);
    if (strcmp(part->run_id, first->run_id) != 0)
        return sg_error_set(err, SG_E_MISMATCH, "the journal of %s is of run %s, not %s", label,
                            part->run_id, first->run_id);
    if (strcmp(part->config_sha256, first->config_sha256) != 0) {
        sg_error_set(err, SG_E_MISMATCH,
                     "the journal of %s was written for another pipeline file than %s's", label,
                     first_label);
        sg_error_detail(err, "pipeline file SHA-256 %s, not %s", part->config_sha256,
                        first->config_sha256);
        return SG_E_MISMATCH;
    }
    if (!same_stages(part, first))
        return sg_error_set(err, SG_E_MISMATCH, "the journal of %s has other stages than %s's",
                            label, first_label);
    return 0;
}

/* The state that tells most about a stage over all parts. */
static sg_stage_state merge_stage_state(sg_journal *const *parts, size_t nparts, size_t stage)
{
    static const sg_stage_state telling[] = {SG_STAGE_FAILED, SG_STAGE_ROLLED_BACK,
                                             SG_STAGE_RUNNING, SG_STAGE_SOAKING};
    sg_stage_state first = parts[0]->stages[stage].state;
    bool agree = true;
    for (size_t t = 0; t < sizeof(telling) / sizeof(telling[0]); t++)
        for (size_t p = 0; p < nparts; p++)
            if (parts[p]->stages[stage].state == telling[t])
                return telling[t];
    for (size_t p = 1; p < nparts; p++)
        agree = agree && parts[p]->stages[stage].state == first;
    /* done in some parts, pending in others: under way */
    return agree ? first : SG_STAGE_RUNNING;
}

static sg_run_status merge_status(sg_journal *const *parts, size_t nparts)
{
    static const sg_run_status telling[] = {SG_RUN_FAILED, SG_RUN_ROLLED_BACK, SG_RUN_HALTED,
                                            SG_RUN_RUNNING};
    for (size_t t = 0; t < sizeof(telling) / sizeof(telling[0]); t++)
        for (size_t p = 0; p < nparts; p++)
            if (parts[p]->status == telling[t])
                return telling[t];
    return SG_RUN_DONE;
}

/* Copies src over dst when src is set and comes before (or after) it. */
static void earliest(char dst[SG_JOURNAL_TIME_MAX], const char *src)
{
    if (src[0] && (!dst[0] || strcmp(src, dst) < 0))
        memcpy(dst, src, SG_JOURNAL_TIME_MAX);
}

static void latest(char dst[SG_JOURNAL_TIME_MAX], const char *src)
{
    if (src[0] && strcmp(src, dst) > 0)
        memcpy(dst, src, SG_JOURNAL_TIME_MAX);
}

typedef struct shard_ref {
    const sg_journal_shard *shard;
    size_t part;
} shard_ref;

static int stage_then_name(const void *a, const void *b)
{
    const sg_journal_shard *x = ((const shard_ref *)a)->shard, *y = ((const shard_ref *)b)->shard;
    if (x->stage != y->stage)
        return x->stage < y->stage ? -1 : 1;
    return strcmp(x->name, y->name);
}

int sg_journal_merge(sg_journal **out, sg_journal *const *parts, size_t nparts, sg_error *err)
{
    const sg_journal *first;
    sg_journal *j = NULL;
    shard_ref *refs = NULL;
    size_t total = 0, dup = 0;
    int rc = 0;

    *out = NULL;
    if (nparts == 0)
        return sg_error_set(err, SG_E_USAGE, "no journals to merge");
    first = parts[0];
    for (size_t p = 0; p < nparts; p++) {
        if (p > 0 && (rc = check_part(parts, p, err)) < 0)
            return rc;
        total += parts[p]->nshards;
    }
    if (!(refs = sg_malloc(total * sizeof(*refs))) || !(j = sg_calloc(1, sizeof(*j))) ||
        !(j->pipeline = sg_strdup(first->pipeline)) ||
        !(j->stages = sg_calloc(first->nstages, sizeof(*j->stages))) ||
        !(j->shards = sg_calloc(total, sizeof(*j->shards)))) {
        rc = nomem(err);
        goto done;
    }
    memcpy(j->run_id, first->run_id, sizeof(j->run_id));
    memcpy(j->config_sha256, first->config_sha256, sizeof(j->config_sha256));
    j->target = first->target;
    j->status = merge_status(parts, nparts);
    for (size_t p = 0; p < nparts; p++) {
        earliest(j->started_at, parts[p]->started_at);
        latest(j->updated_at, parts[p]->updated_at);
    }
    for (size_t s = 0; s < first->nstages; s++) {
        sg_journal_stage *st = &j->stages[s];
        if (!(st->name = sg_strdup(first->stages[s].name))) {
            rc = nomem(err);
            goto done;
        }
        j->nstages++;
        st->state = merge_stage_state(parts, nparts, s);
        for (size_t p = 0; p < nparts; p++) {
            earliest(st->started_at, parts[p]->stages[s].started_at);
            latest(st->finished_at, parts[p]->stages[s].finished_at);
        }
        if (st->state != SG_STAGE_DONE && st->state != SG_STAGE_FAILED &&
            st->state != SG_STAGE_ROLLED_BACK)
            st->finished_at[0] = '\0';
    }
    for (size_t p = 0, n = 0; p < nparts; p++)
        for (size_t i = 0; i < parts[p]->nshards; i++)
            refs[n++] = (shard_ref){&parts[p]->shards[i], p};
    if (total)
        qsort(refs, total, sizeof(*refs), stage_then_name);
    for (size_t i = 0; i < total; i++) {
        const sg_journal_shard *from = refs[i].shard;
        sg_journal_shard *to = &j->shards[i];
        *to = *from;
        to->bluegreen = NULL;
        to->nbluegreen = 0;
        if (!(to->name = sg_strdup(from->name))) {
            rc = nomem(err);
            goto done;
        }
        j->nshards++;
        for (size_t k = 0; k < from->nbluegreen; k++)
            if ((rc = bluegreen_append(to, &from->bluegreen[k], err)) < 0)
                goto done;
    }
    if ((rc = index_names(j, &dup, err)) < 0)
        goto done;
    if (rc == 1) {
        char a[48], b[48];
        long other = -1;
        /* the other shard of that name, which the index sorts next to it */
        for (size_t i = 0; i < total && other < 0; i++)
            if (i != dup && strcmp(j->shards[i].name, j->shards[dup].name) == 0)
                other = (long)i;
        size_t pa = refs[other].part, pb = refs[dup].part;
        if (pa > pb) {
            size_t t = pa;
            pa = pb;
            pb = t;
        }
        part_label(a, parts[pa], pa);
        part_label(b, parts[pb], pb);
        rc = sg_error_set(err, SG_E_MISMATCH, "shard %s is in the journals of both %s and %s",
                          j->shards[dup].name, a, b);
        goto done;
    }
    *out = j;
    j = NULL;
done:
    sg_journal_free(j);
    free(refs);
    return rc;
}
