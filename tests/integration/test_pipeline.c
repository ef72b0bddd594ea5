/* `shardgate run`, `resume`, `rollback` and `plan` end to end: four shards
 * on a real server (a canary, then a wave of three taken two at a time), a
 * file:// store, keys and migrations next to the pipeline file, and the
 * local sandbox. A run that passes; a migration whose verify fails on one
 * shard of the wave under each failure policy and within the failure
 * budget; a shard whose database goes away mid-run; a runner killed between
 * gates and resumed; rollback of a finished run, whole or one shard; two
 * runners on one fleet; a fleet split into partitions; a malformed pipeline
 * file and `plan`. Each test writes its pipeline file into its own
 * directory, and points TMPDIR at a directory of its own, where sandboxes
 * are made, so what a run leaves behind can be counted. */
#include "tests/harness/cli.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { EXIT_LINT = 1, EXIT_FORMAT = 5, EXIT_SHARDS_FAILED = 17 };

#define NSHARDS 4
/* The highest version of the migrations every test applies. */
#define TARGET 2
/* s3 has more rows than the others: a verify can fail on it alone. */
#define BIG 2
#define ROWS 50
#define BIG_ROWS 1500
/* How long a poll waits for a runner to get somewhere before the test gives
 * up: a guard against hanging, far above what any step takes. */
#define POLL_LIMIT_MS 120000
#define POLL_MS 50

static sgt_pg_server *pg;
static char root[] = "/tmp/sgt-pipeline-XXXXXX";
static char key[512], pub[512];
static char *bindir;

/* The canary first, then the wave; fleet order is the stages' order. */
static const char *const names[NSHARDS] = {"s1", "s2", "s3", "s4"};

/* What a test's pipeline file says beyond the fleet. */
typedef struct settings {
    const char *on_failure;  /* NULL: the default, halt */
    const char *canary_soak; /* NULL: none */
    unsigned wave_max_failures;
    const char *rto; /* NULL: no objective */
} settings;

/* One test's fleet: four databases and a directory holding the pipeline
 * file, its keys, migrations and store, the local journal and TMPDIR. */
typedef struct fleet {
    char *dir;
    char *file; /* DIR/pipeline.yaml */
    char *journal;
    char *migrations;
    char *store;
    char *tmp;
    char *db[NSHARDS];
    char *dbname[NSHARDS];
} fleet;

static const char add_note[] = "-- shardgate:up\n"
                               "ALTER TABLE items ADD COLUMN note text;\n"
                               "-- shardgate:down\n"
                               "ALTER TABLE items DROP COLUMN note;\n"
                               "-- shardgate:verify\n"
                               "SELECT count(*) = 0 FROM items WHERE note IS NOT NULL;\n";

static const char create_audit[] =
    "-- shardgate:up\n"
    "CREATE TABLE audit (id bigint PRIMARY KEY, item int NOT NULL);\n"
    "-- shardgate:down\n"
    "DROP TABLE audit;\n"
    "-- shardgate:verify\n"
    "SELECT count(*) = 0 FROM audit;\n";

/* As create_audit, with a verify section that holds on every shard but the
 * big one. */
static const char create_audit_small_only[] = "-- shardgate:up\n"
                                              "CREATE TABLE audit (id bigint PRIMARY KEY,"
                                              " item int NOT NULL);\n"
                                              "-- shardgate:down\n"
                                              "DROP TABLE audit;\n"
                                              "-- shardgate:verify\n"
                                              "SELECT count(*) < 1000 FROM items;\n";

/* As add_note, three seconds slower where a table named slow exists. */
static const char add_note_slowly[] =
    "-- shardgate:up\n"
    "SELECT pg_sleep(CASE WHEN to_regclass('public.slow') IS NULL THEN 0 ELSE 3 END);\n"
    "ALTER TABLE items ADD COLUMN note text;\n"
    "-- shardgate:down\n"
    "ALTER TABLE items DROP COLUMN note;\n";

/* Breaks the lint rule index-not-concurrent on its line 2. */
static const char index_name[] = "-- shardgate:up\n"
                                 "CREATE INDEX items_name ON items (name);\n"
                                 "-- shardgate:down\n"
                                 "DROP INDEX items_name;\n";

static void assert_contains(const char *text, const char *want)
{
    ck_assert_msg(text && strstr(text, want), "expected \"%s\" in:\n%s", want, text ? text : "");
}

static void write_file(const char *dir, const char *name, const char *text)
{
    sgt_write_file(dir, name, text);
}

static char *pipeline_text(const fleet *f, const settings *s, const char *parallel_key)
{
    char *fleet_yaml = sgt_asprintf("%s", "");
    for (int i = 0; i < NSHARDS; i++) {
        char *next = sgt_asprintf("%s  - {name: %s, dsn: \"%s\", ring: %s}\n", fleet_yaml, names[i],
                                  f->db[i], i == 0 ? "canary" : "wave");
        free(fleet_yaml);
        fleet_yaml = next;
    }
    char *soak = s->canary_soak ? sgt_asprintf("    soak: %s\n", s->canary_soak) : strdup("");
    char *policy = s->on_failure ? sgt_asprintf("  on_failure: %s\n", s->on_failure) : strdup("");
    char *objectives = s->rto ? sgt_asprintf("objectives:\n  rto: %s\n", s->rto) : strdup("");
    char *text =
        sgt_asprintf("version: 1\n"
                     "name: pipetest\n"
                     "store: file://./store\n"
                     "keys:\n"
                     "  key: keys/runner.key\n"
                     "  trust: [keys/runner.pub]\n"
                     "sandbox:\n"
                     "  driver: local\n"
                     "migrations: migrations/\n"
                     "fleet:\n"
                     "%s"
                     "stages:\n"
                     "  - name: canary\n"
                     "    ring: canary\n"
                     "%s"
                     "  - name: wave\n"
                     "    ring: wave\n"
                     "    %s: 2\n"
                     "    max_failures: %u\n"
                     "policy:\n"
                     "%s"
                     "  lock_timeout: 2s\n"
                     "%s",
                     fleet_yaml, soak, parallel_key, s->wave_max_failures, policy, objectives);
    free(objectives);
    free(fleet_yaml);
    free(soak);
    free(policy);
    return text;
}

static void write_pipeline(const fleet *f, const settings *s)
{
    char *text = pipeline_text(f, s, "parallel");
    write_file(f->dir, "pipeline.yaml", text);
    free(text);
}

/* A fresh fleet: four databases (s3 with more rows; extra_sql run on the
 * canary), the migrations add_note and create_audit, the runner's key pair
 * in DIR/keys, and TMPDIR set for this test's process and its children
 * (Check forks one process per test). */
static fleet setup(const char *name, const settings *s, const char *canary_sql)
{
    fleet f = {0};
    f.dir = sgt_asprintf("%s/%s", root, name);
    ck_assert_int_eq(mkdir(f.dir, 0755), 0);
    f.file = sgt_asprintf("%s/pipeline.yaml", f.dir);
    f.journal = sgt_asprintf("%s/j.json", f.dir);
    f.migrations = sgt_asprintf("%s/migrations", f.dir);
    f.store = sgt_asprintf("%s/store", f.dir);
    ck_assert_int_eq(mkdir(f.migrations, 0755), 0);
    char *keys = sgt_asprintf("%s/keys", f.dir);
    ck_assert_int_eq(mkdir(keys, 0755), 0);
    char *copy = sgt_asprintf("cp -p '%s' '%s' '%s'", key, pub, keys);
    sgt_sh(copy);
    free(copy);
    free(keys);
    /* As root, the sandbox's server runs as another user, who must reach it. */
    f.tmp = sgt_asprintf("%s/tmp", f.dir);
    ck_assert_int_eq(mkdir(f.tmp, 01777), 0);
    ck_assert_int_eq(chmod(f.tmp, 01777), 0);
    ck_assert_int_eq(setenv("TMPDIR", f.tmp, 1), 0);
    for (int i = 0; i < NSHARDS; i++) {
        char *prefix = sgt_asprintf("%s_%s", name, names[i]);
        f.db[i] = sgt_pg_create_db(pg, prefix);
        free(prefix);
        f.dbname[i] = strdup(strstr(f.db[i], "dbname=") + strlen("dbname="));
        char *sql =
            sgt_asprintf("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
                         "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, %d) g;"
                         "CREATE TABLE tags (id int PRIMARY KEY, label text NOT NULL);"
                         "INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 5) g;",
                         i == BIG ? BIG_ROWS : ROWS);
        sgt_pg_exec(f.db[i], sql);
        free(sql);
    }
    if (canary_sql)
        sgt_pg_exec(f.db[0], canary_sql);
    write_file(f.migrations, "0001_add_note.sql", add_note);
    write_file(f.migrations, "0002_create_audit.sql", create_audit);
    write_pipeline(&f, s);
    return f;
}

static void teardown(fleet *f)
{
    for (int i = 0; i < NSHARDS; i++) {
        free(f->db[i]);
        free(f->dbname[i]);
    }
    free(f->dir);
    free(f->file);
    free(f->journal);
    free(f->migrations);
    free(f->store);
    free(f->tmp);
}

/* ---- running shardgate ---- */

/* argv for shardgate COMMAND ARG... --journal J --pg-bindir B, with the
 * NULL-terminated extra arguments; each string is the caller's. */
static void build_argv(const char *argv[32], const char *const args[], const char *journal)
{
    size_t n = 0;
    argv[n++] = "shardgate";
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    if (journal) {
        argv[n++] = "--journal";
        argv[n++] = journal;
    }
    argv[n++] = "--pg-bindir";
    argv[n++] = bindir;
    argv[n] = NULL;
}

/* Runs shardgate with the test's journal file; asserts its exit status. */
static void shardgate(sgt_result *r, const fleet *f, int want, const char *const args[])
{
    const char *argv[32];
    build_argv(argv, args, f->journal);
    sgt_run(r, argv, NULL);
    ck_assert_msg(r->status == want, "shardgate %s exited %d, wanted %d\nstdout:\n%s\nstderr:\n%s",
                  args[0], r->status, want, r->out,
                  r->err_len > 2500 ? r->err + r->err_len - 2500 : r->err);
}

/* As shardgate(), in the fleet's directory and without --journal, so the
 * journal goes to its default place there. */
static void shardgate_in_dir(sgt_result *r, const fleet *f, int want, const char *const args[])
{
    const char *argv[40] = {"sh", "-c", "cd \"$0\" && exec \"$SG_BINARY\" \"$@\"", f->dir};
    const char *rest[32];
    build_argv(rest, args, NULL);
    size_t n = 4;
    for (size_t i = 1; rest[i]; i++)
        argv[n++] = rest[i];
    argv[n] = NULL;
    sgt_run(r, argv, NULL);
    ck_assert_msg(r->status == want, "shardgate %s exited %d, wanted %d\nstderr:\n%s", args[0],
                  r->status, want, r->err_len > 2500 ? r->err + r->err_len - 2500 : r->err);
}

static void run_pipeline(sgt_result *r, const fleet *f, int want)
{
    shardgate(r, f, want, (const char *const[]){"run", f->file, NULL});
}

static pid_t spawn_run(const fleet *f, const char *name, const char *journal)
{
    const char *argv[32];
    char *dir = sgt_asprintf("%s/%s", f->dir, name);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    build_argv(argv, (const char *const[]){"run", f->file, NULL}, journal);
    pid_t pid = sgt_spawn(argv, NULL, dir);
    free(dir);
    return pid;
}

/* The stderr of a runner started by spawn_run, to free. */
static char *spawned_stderr(const fleet *f, const char *name)
{
    char *path = sgt_asprintf("%s/%s/stderr", f->dir, name);
    char *text = sgt_read_file(path, NULL);
    free(path);
    return text ? text : strdup("");
}

/* ---- the journal ---- */

static json_t *load_json_text(const char *text, const char *what)
{
    json_error_t e;
    json_t *doc = json_loads(text, 0, &e);
    ck_assert_msg(doc != NULL, "%s is not JSON: %s (line %d)\n%s", what, e.text, e.line, text);
    ck_assert_msg(json_is_object(doc), "%s is not a JSON object", what);
    return doc;
}

static json_t *load_journal(const char *path)
{
    char *text = sgt_read_file(path, NULL);
    ck_assert_msg(text != NULL, "no journal %s", path);
    json_t *doc = load_json_text(text, path);
    free(text);
    return doc;
}

/* A string member, NULL when it is null; a member of another type fails. */
static const char *jstr(json_t *obj, const char *member)
{
    json_t *v = json_object_get(obj, member);
    ck_assert_msg(v != NULL, "no member \"%s\"", member);
    if (json_is_null(v))
        return NULL;
    ck_assert_msg(json_is_string(v), "member \"%s\" is not a string", member);
    return json_string_value(v);
}

static long long jint(json_t *obj, const char *member)
{
    json_t *v = json_object_get(obj, member);
    ck_assert_msg(json_is_integer(v), "member \"%s\" is not an integer", member);
    return json_integer_value(v);
}

/* The journal's entry for a shard, NULL when the journal has none. */
static json_t *journal_shard(json_t *journal, const char *name)
{
    json_t *shards = json_object_get(journal, "shards"), *s;
    size_t i;
    ck_assert_msg(json_is_array(shards), "the journal has no shards array");
    json_array_foreach(shards, i, s)
    {
        const char *n = jstr(s, "name");
        if (n && strcmp(n, name) == 0)
            return s;
    }
    return NULL;
}

static json_t *must_shard(json_t *journal, const char *name)
{
    json_t *s = journal_shard(journal, name);
    ck_assert_msg(s != NULL, "the journal has no shard %s", name);
    return s;
}

static const char *shard_state(json_t *journal, const char *name)
{
    return jstr(must_shard(journal, name), "state");
}

static void assert_state(json_t *journal, const char *name, const char *want)
{
    const char *state = shard_state(journal, name);
    ck_assert_msg(state && strcmp(state, want) == 0, "shard %s is %s in the journal, want %s", name,
                  state ? state : "null", want);
}

static void assert_status(json_t *journal, const char *want)
{
    const char *status = jstr(journal, "status");
    ck_assert_msg(status && strcmp(status, want) == 0, "the run is %s in the journal, want %s",
                  status ? status : "null", want);
}

static const char *stage_state(json_t *journal, size_t index)
{
    json_t *stage = json_array_get(json_object_get(journal, "stages"), index);
    ck_assert_msg(stage != NULL, "the journal has no stage %zu", index);
    return jstr(stage, "state");
}

/* The shard went through all four gates in this journal, from version 0 to
 * TARGET, with a snapshot and the rehearsal's schema. */
static void assert_shard_done(json_t *journal, const char *name)
{
    json_t *s = must_shard(journal, name);
    static const char *const gates[] = {"snapshot", "test-restore", "apply", "verify"};
    assert_state(journal, name, "done");
    ck_assert_msg(jstr(s, "snapshot_id") != NULL, "%s has no snapshot id", name);
    ck_assert_int_eq(jint(s, "from_version"), 0);
    ck_assert_int_eq(jint(s, "to_version"), TARGET);
    ck_assert_msg(json_is_null(json_object_get(s, "failure")), "%s has a failure", name);
    ck_assert_msg(jstr(s, "live_fingerprint") &&
                      strcmp(jstr(s, "live_fingerprint"), jstr(s, "rehearsal_fingerprint")) == 0,
                  "%s: the live fingerprint is not the rehearsal's", name);
    for (size_t g = 0; g < 4; g++) {
        json_t *gate = json_object_get(json_object_get(s, "gates"), gates[g]);
        ck_assert_msg(gate && json_is_true(json_object_get(gate, "ran")) &&
                          json_is_null(json_object_get(gate, "error")),
                      "%s: gate %s did not pass", name, gates[g]);
    }
}

/* The shard failed at `gate` with an error of class `error` whose message
 * contains `want`. */
static void assert_shard_failed(json_t *journal, const char *name, const char *gate,
                                const char *error, const char *want)
{
    json_t *s = must_shard(journal, name), *failure = json_object_get(s, "failure");
    assert_state(journal, name, "failed");
    ck_assert_msg(json_is_object(failure), "%s: the journal has no failure", name);
    if (gate)
        ck_assert_str_eq(jstr(failure, "gate"), gate);
    ck_assert_str_eq(jstr(failure, "error"), error);
    assert_contains(jstr(failure, "message"), want);
}

/* Polls the journal file until pred holds; fails when the runner pid ends
 * first or the poll limit passes. Returns the journal that satisfied it. */
static json_t *wait_journal(const fleet *f, const char *path, pid_t pid, const char *runner,
                            bool (*pred)(json_t *, void *), void *arg, const char *what)
{
    for (long waited = 0; waited < POLL_LIMIT_MS; waited += POLL_MS) {
        char *text = sgt_read_file(path, NULL);
        json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
        free(text);
        if (doc && pred(doc, arg))
            return doc;
        json_decref(doc);
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            char *log = spawned_stderr(f, runner);
            ck_abort_msg("the runner ended (status %d) before %s\n%s", status, what,
                         strlen(log) > 2500 ? log + strlen(log) - 2500 : log);
        }
        sgt_sleep_ms(POLL_MS);
    }
    ck_abort_msg("timed out waiting until %s", what);
    return NULL;
}

/* ---- the shards ---- */

static char *value(const fleet *f, int shard, const char *sql)
{
    return sgt_pg_value(f->db[shard], sql);
}

static void assert_value(const fleet *f, int shard, const char *sql, const char *want)
{
    char *v = value(f, shard, sql);
    ck_assert_msg(v && strcmp(v, want) == 0, "%s: %s: got %s, want %s", names[shard], sql,
                  v ? v : "NULL", want);
    free(v);
}

static bool has_registry(const fleet *f, int shard)
{
    char *v = value(f, shard, "SELECT to_regnamespace('shardgate') IS NOT NULL");
    bool yes = v && strcmp(v, "t") == 0;
    free(v);
    return yes;
}

/* The shard is at `version` (0 or TARGET), both in its registry and in its
 * schema: the migrations' objects are there, or all gone. */
static void assert_version(const fleet *f, int shard, int version)
{
    static const char objects[] = "SELECT (SELECT count(*) FROM information_schema.columns"
                                  "        WHERE table_name = 'items' AND column_name = 'note')"
                                  "     + (SELECT count(*) FROM pg_class WHERE relname = 'audit')";
    assert_value(f, shard, objects, version ? "2" : "0");
    if (version == 0 && !has_registry(f, shard))
        return;
    ck_assert_msg(has_registry(f, shard), "%s has no registry", names[shard]);
    char *want = sgt_asprintf("%d", version);
    assert_value(f, shard,
                 "SELECT coalesce(max(version), 0) FROM shardgate.migrations"
                 " WHERE status = 'applied'",
                 want);
    free(want);
    /* a reverted migration's row leaves the registry */
    if (version == 0)
        assert_value(f, shard, "SELECT count(*) FROM shardgate.migrations", "0");
}

/* Every migration on the shard came from run_id with the shard's snapshot
 * of that run, and `shardgate status --check` finds nothing wrong. */
static void assert_migrated_by(const fleet *f, int shard, const char *run_id,
                               const char *snapshot_id)
{
    assert_version(f, shard, TARGET);
    char *sql = sgt_asprintf("SELECT count(*) FILTER (WHERE run_id = '%s' AND snapshot_id = '%s')"
                             " || ' of ' || count(*) FROM shardgate.migrations",
                             run_id, snapshot_id);
    assert_value(f, shard, sql, "2 of 2");
    free(sql);
    const char *argv[] = {"shardgate",    "status",      "--dsn",   f->db[shard],
                          "--migrations", f->migrations, "--check", NULL};
    free(sgt_shardgate(0, argv));
}

/* Entries of a directory but . and ..; -1 when it does not exist. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static int stored_snapshots(const fleet *f, int shard)
{
    char *dir = sgt_asprintf("%s/shards/%s/snapshots", f->store, names[shard]);
    int n = entries(dir);
    free(dir);
    return n;
}

static void assert_snapshot_stored(const fleet *f, int shard, const char *id)
{
    struct stat st;
    char *manifest = sgt_asprintf("%s/shards/%s/snapshots/%s/manifest", f->store, names[shard], id);
    ck_assert_msg(stat(manifest, &st) == 0 && st.st_size > 0, "no manifest %s", manifest);
    free(manifest);
}

static void assert_no_sandbox_left(const fleet *f)
{
    ck_assert_msg(entries(f->tmp) == 0, "%d entries left in TMPDIR %s", entries(f->tmp), f->tmp);
}

/* The store's copy of the run's journal (object, under runs/RUN_ID/) is the
 * local one, byte for byte. */
static void assert_store_object(const fleet *f, const char *local, const char *run_id,
                                const char *object)
{
    char *path = sgt_asprintf("%s/runs/%s/%s", f->store, run_id, object);
    size_t a_len = 0, b_len = 0;
    char *a = sgt_read_file(local, &a_len), *b = sgt_read_file(path, &b_len);
    ck_assert_msg(a != NULL, "no local journal %s", local);
    ck_assert_msg(b != NULL, "no journal in the store at %s", path);
    ck_assert_msg(a_len == b_len && memcmp(a, b, a_len) == 0,
                  "the store's journal differs from the local one:\n%s\n%s", b, a);
    free(a);
    free(b);
    free(path);
}

static void assert_store_copy(const fleet *f, const char *local, const char *run_id)
{
    assert_store_object(f, local, run_id, "journal.json");
}

static char *run_id_of(json_t *journal)
{
    const char *id = jstr(journal, "run_id");
    ck_assert_ptr_nonnull(id);
    return strdup(id);
}

/* ---- cases ---- */

/* The table on stdout: one line per shard, in stage order. */
static void assert_table(const char *out, json_t *journal)
{
    const char *line = strstr(out, "\nSHARD ");
    ck_assert_msg(line != NULL, "no table on stdout:\n%s", out);
    line = strchr(line + 1, '\n');
    for (int i = 0; i < NSHARDS; i++) {
        char name[64], stage[64], state[64], version[64], snapshot[128];
        ck_assert_msg(line && sscanf(line + 1, "%63s %63s %63s %63s %127s", name, stage, state,
                                     version, snapshot) == 5,
                      "line %d of the table is short:\n%s", i + 1, out);
        ck_assert_str_eq(name, names[i]);
        ck_assert_str_eq(stage, i == 0 ? "canary" : "wave");
        ck_assert_str_eq(state, "done");
        ck_assert_str_eq(version, "0->2");
        ck_assert_str_eq(snapshot, jstr(must_shard(journal, names[i]), "snapshot_id"));
        line = strchr(line + 1, '\n');
    }
}

START_TEST(every_shard_migrated)
{
    settings s = {.canary_soak = "1s"};
    fleet f = setup("success", &s, NULL);
    sgt_result r;
    run_pipeline(&r, &f, 0);
    json_t *j = load_journal(f.journal);
    char *run_id = run_id_of(j);
    char *first = sgt_asprintf("run %s of pipetest: done\n", run_id);
    ck_assert_msg(strncmp(r.out, first, strlen(first)) == 0, "stdout starts otherwise:\n%s", r.out);
    assert_table(r.out, j);
    assert_status(j, "done");
    ck_assert_str_eq(jstr(j, "pipeline"), "pipetest");
    ck_assert_msg(json_is_null(json_object_get(j, "partition")), "a partition in the journal");
    ck_assert_str_eq(stage_state(j, 0), "done");
    ck_assert_str_eq(stage_state(j, 1), "done");
    ck_assert_uint_eq(json_array_size(json_object_get(j, "shards")), NSHARDS);
    for (int i = 0; i < NSHARDS; i++) {
        const char *id = jstr(must_shard(j, names[i]), "snapshot_id");
        assert_shard_done(j, names[i]);
        assert_snapshot_stored(&f, i, id);
        ck_assert_int_eq(stored_snapshots(&f, i), 1);
        assert_migrated_by(&f, i, run_id, id);
        assert_value(&f, i, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", "0");
    }
    assert_store_copy(&f, f.journal, run_id);
    assert_no_sandbox_left(&f);
    free(first);
    free(run_id);
    json_decref(j);
    sgt_result_free(&r);
    teardown(&f);
}
END_TEST

/* Runs a pipeline whose verify fails on s3 (failed at its rehearsal, never
 * touched) and returns its journal; the canary is done whatever the
 * policy, until a policy reverts it. */
static json_t *run_with_failing_verify(fleet *f, const char *name, const settings *s)
{
    *f = setup(name, s, NULL);
    write_file(f->migrations, "0002_create_audit.sql", create_audit_small_only);
    sgt_result r;
    run_pipeline(&r, f, EXIT_SHARDS_FAILED);
    assert_contains(r.err, "1 of 4 shards failed");
    sgt_result_free(&r);
    json_t *j = load_journal(f->journal);
    char *run_id = run_id_of(j);
    assert_store_copy(f, f->journal, run_id);
    free(run_id);
    /* the rehearsal runs the verify: s3 never got a migration */
    assert_shard_failed(j, "s3", "test-restore", "verification mismatch", "0002_create_audit.sql");
    assert_contains(jstr(json_object_get(must_shard(j, "s3"), "failure"), "message"), "s3: ");
    ck_assert_msg(!has_registry(f, BIG), "s3 has a registry: something was applied to it");
    assert_version(f, BIG, 0);
    ck_assert_msg(!json_object_get(json_object_get(must_shard(j, "s3"), "gates"), "apply"),
                  "s3's apply gate started");
    assert_no_sandbox_left(f);
    return j;
}

START_TEST(verify_fails_halt)
{
    settings s = {0};
    fleet f;
    json_t *j = run_with_failing_verify(&f, "halt", &s);
    assert_status(j, "halted");
    ck_assert_str_eq(stage_state(j, 1), "failed");
    /* the wave runs in parallel: the others of the stage finish */
    for (int i = 0; i < NSHARDS; i++) {
        if (i == BIG)
            continue;
        assert_shard_done(j, names[i]);
        assert_version(&f, i, TARGET);
    }
    json_decref(j);
    teardown(&f);
}
END_TEST

START_TEST(verify_fails_rollback_stage)
{
    settings s = {.on_failure = "rollback-stage"};
    fleet f;
    json_t *j = run_with_failing_verify(&f, "rbstage", &s);
    assert_status(j, "rolled-back");
    ck_assert_str_eq(stage_state(j, 0), "done");
    ck_assert_str_eq(stage_state(j, 1), "rolled-back");
    assert_shard_done(j, "s1");
    assert_version(&f, 0, TARGET);
    assert_state(j, "s2", "rolled-back");
    assert_state(j, "s4", "rolled-back");
    for (int i = 1; i < NSHARDS; i++)
        assert_version(&f, i, 0);
    json_decref(j);
    teardown(&f);
}
END_TEST

START_TEST(verify_fails_rollback_all)
{
    settings s = {.on_failure = "rollback-all"};
    fleet f;
    json_t *j = run_with_failing_verify(&f, "rball", &s);
    assert_status(j, "rolled-back");
    assert_state(j, "s1", "rolled-back");
    assert_state(j, "s2", "rolled-back");
    assert_state(j, "s4", "rolled-back");
    for (int i = 0; i < NSHARDS; i++)
        assert_version(&f, i, 0);
    json_decref(j);
    teardown(&f);
}
END_TEST

START_TEST(verify_fails_within_budget)
{
    settings s = {.wave_max_failures = 1};
    fleet f;
    json_t *j = run_with_failing_verify(&f, "budget", &s);
    /* within the stage's budget the run goes on to its end */
    assert_status(j, "failed");
    ck_assert_str_eq(stage_state(j, 1), "done");
    for (int i = 0; i < NSHARDS; i++) {
        if (i == BIG)
            continue;
        assert_shard_done(j, names[i]);
        assert_version(&f, i, TARGET);
    }
    json_decref(j);
    teardown(&f);
}
END_TEST

static bool canary_soaking(json_t *j, void *arg)
{
    (void)arg;
    const char *state = stage_state(j, 0);
    return state && strcmp(state, "soaking") == 0;
}

/* Every shard migrated, but their test restores took longer than the
 * recovery-time objective allows: exit 18, which names the slowest. With
 * --progress, a line at every gate says where the run is. */
START_TEST(objective_missed)
{
    settings s = {.rto = "1ms"};
    fleet f = setup("objective", &s, NULL);
    sgt_result r;
    /* with progress lines, as on a terminal */
    shardgate(&r, &f, 18, (const char *const[]){"run", f.file, "--progress", NULL});
    ck_assert_msg(strstr(r.err, "slower than the recovery-time objective") &&
                      strstr(r.err, "objectives.rto 0.0 s"),
                  "%s", r.err);
    ck_assert_msg(
        strstr(r.err, "progress: 0/4 done, 1 running (s1 snapshot), 0 failed, 3 waiting") &&
            strstr(r.err, "progress: 4/4 done, 0 running, 0 failed, 0 waiting"),
        "%s", r.err);
    sgt_result_free(&r);
    for (int i = 0; i < NSHARDS; i++)
        assert_version(&f, i, TARGET);
    teardown(&f);
}
END_TEST

START_TEST(shard_goes_down_mid_run)
{
    settings s = {.canary_soak = "3s"};
    fleet f = setup("down", &s, NULL);
    pid_t pid = spawn_run(&f, "runner", f.journal);
    json_t *soaking =
        wait_journal(&f, f.journal, pid, "runner", canary_soaking, NULL, "the canary soaks");
    json_decref(soaking);
    char *admin = sgt_pg_conninfo(pg, "postgres");
    char *drop = sgt_asprintf("DROP DATABASE \"%s\" WITH (FORCE)", f.dbname[1]);
    sgt_pg_exec(admin, drop);
    free(drop);
    free(admin);
    ck_assert_int_eq(sgt_wait(pid), EXIT_SHARDS_FAILED);

    json_t *j = load_journal(f.journal);
    assert_status(j, "halted");
    /* The shard fails before its first gate (the connection), which the
     * journal must record too: fails while on_shard in pipeline/cli_run.c
     * leaves such a shard pending. */
    assert_shard_failed(j, "s2", NULL, "database", "cannot connect");
    for (int i = 0; i < NSHARDS; i++)
        if (i != 1)
            assert_shard_done(j, names[i]);
    char *log = spawned_stderr(&f, "runner");
    assert_contains(log, "s2: cannot connect to the shard");
    free(log);
    assert_no_sandbox_left(&f);
    json_decref(j);
    teardown(&f);
}
END_TEST

/* A wave shard whose test restore has begun: its snapshot is stored. */
typedef struct snapshotted {
    char name[16];
    char snapshot_id[64];
} snapshotted;

static bool wave_shard_snapshotted(json_t *j, void *arg)
{
    snapshotted *found = arg;
    for (int i = 1; i < NSHARDS; i++) {
        json_t *s = journal_shard(j, names[i]);
        const char *state = s ? jstr(s, "state") : NULL;
        if (state && strcmp(state, "snapshotted") == 0 && jstr(s, "snapshot_id")) {
            snprintf(found->name, sizeof(found->name), "%s", names[i]);
            snprintf(found->snapshot_id, sizeof(found->snapshot_id), "%s", jstr(s, "snapshot_id"));
            return true;
        }
    }
    return false;
}

static bool journal_exists(json_t *j, void *arg)
{
    (void)j;
    (void)arg;
    return true;
}

/* Resumes the run and checks it ends with every shard done, each migrated
 * with one snapshot of this run, and nothing left after `sandbox gc`. */
static json_t *resume_to_the_end(const fleet *f, const char *run_id)
{
    sgt_result r;
    shardgate(&r, f, 0, (const char *const[]){"resume", run_id, "--config", f->file, NULL});
    assert_contains(r.out, "done");
    sgt_result_free(&r);
    json_t *j = load_journal(f->journal);
    ck_assert_str_eq(jstr(j, "run_id"), run_id);
    assert_status(j, "done");
    ck_assert_uint_eq(json_array_size(json_object_get(j, "shards")), NSHARDS);
    for (int i = 0; i < NSHARDS; i++) {
        const char *id = jstr(must_shard(j, names[i]), "snapshot_id");
        assert_shard_done(j, names[i]);
        assert_snapshot_stored(f, i, id);
        assert_migrated_by(f, i, run_id, id);
    }
    assert_store_copy(f, f->journal, run_id);
    /* the killed runner's sandbox is a leftover for gc */
    const char *gc[] = {"shardgate", "sandbox", "gc", NULL};
    free(sgt_shardgate(0, gc));
    assert_no_sandbox_left(f);
    return j;
}

START_TEST(killed_between_gates_resumes)
{
    settings s = {0};
    fleet f = setup("killed", &s, NULL);
    snapshotted at = {{0}, {0}};
    pid_t pid = spawn_run(&f, "runner", f.journal);
    json_t *before = wait_journal(&f, f.journal, pid, "runner", wave_shard_snapshotted, &at,
                                  "a wave shard is snapshotted");
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(sgt_wait(pid), 128 + SIGKILL);
    char *run_id = run_id_of(before);
    json_decref(before);
    json_t *killed = load_journal(f.journal);
    assert_status(killed, "running");
    assert_shard_done(killed, "s1");
    json_decref(killed);

    json_t *j = resume_to_the_end(&f, run_id);
    /* the killed shard went on from its test restore with the same snapshot */
    json_t *shard = must_shard(j, at.name);
    ck_assert_str_eq(jstr(shard, "snapshot_id"), at.snapshot_id);
    int index = at.name[1] - '1';
    ck_assert_int_eq(stored_snapshots(&f, index), 1);
    /* and the canary was not run again */
    ck_assert_int_eq(stored_snapshots(&f, 0), 1);
    json_decref(j);
    free(run_id);
    teardown(&f);
}
END_TEST

START_TEST(killed_anywhere_resumes)
{
    settings s = {0};
    fleet f = setup("killed2", &s, NULL);
    pid_t pid = spawn_run(&f, "runner", f.journal);
    json_t *started =
        wait_journal(&f, f.journal, pid, "runner", journal_exists, NULL, "the journal exists");
    char *run_id = run_id_of(started);
    json_decref(started);
    sgt_sleep_ms(1500);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int status = sgt_wait(pid);
    ck_assert_msg(status == 128 + SIGKILL, "the runner ended with %d before it was killed", status);
    json_decref(resume_to_the_end(&f, run_id));
    free(run_id);
    teardown(&f);
}
END_TEST

/* A blue-green change through the pipeline: rehearsed in the sandbox (up,
 * swapped back, up again), applied to each shard with its steps in the
 * journal, the kept and live tables compared by the verify gate, and the
 * run's rollback swapping the old table back. */
static const char widen_items[] = "-- shardgate:mode=bluegreen table=public.items\n"
                                  "-- shardgate:up\n"
                                  "ALTER TABLE items ALTER COLUMN id TYPE bigint;\n"
                                  "-- shardgate:down\n"
                                  "ALTER TABLE items ALTER COLUMN id TYPE int;\n";

START_TEST(bluegreen_change)
{
    static const char *const steps[] = {"prepared", "synced",   "backfilled",
                                        "indexed",  "verified", "cut-over"};
    static const char id_type[] = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                                  " WHERE attrelid = 'items'::regclass AND attname = 'id'";
    settings s = {0};
    fleet f = setup("bluegreen", &s, NULL);
    write_file(f.migrations, "0003_widen_items.sql", widen_items);
    sgt_result r;
    run_pipeline(&r, &f, 0);
    sgt_result_free(&r);
    json_t *j = load_journal(f.journal);
    char *run_id = run_id_of(j);
    for (int i = 0; i < NSHARDS; i++) {
        json_t *shard = must_shard(j, names[i]);
        json_t *list = json_object_get(shard, "bluegreen");
        assert_state(j, names[i], "done");
        ck_assert_int_eq(jint(shard, "to_version"), 3);
        ck_assert_msg(json_array_size(list) == sizeof(steps) / sizeof(*steps),
                      "%s: %zu blue-green steps in the journal", names[i], json_array_size(list));
        for (size_t k = 0; k < json_array_size(list); k++) {
            json_t *e = json_array_get(list, k);
            ck_assert_int_eq(jint(e, "version"), 3);
            ck_assert_str_eq(jstr(e, "step"), steps[k]);
            bool cut_over = strcmp(steps[k], "cut-over") == 0;
            bool locked = json_is_number(json_object_get(e, "lock_ms"));
            ck_assert_msg(cut_over == locked, "%s: lock_ms of %s", names[i], steps[k]);
        }
        assert_value(&f, i, id_type, "bigint");
        assert_value(&f, i, "SELECT count(*) FROM shardgate_old_3.items", i == BIG ? "1500" : "50");
    }
    /* the run's rollback swaps the old tables back */
    shardgate(&r, &f, 0,
              (const char *const[]){"rollback", run_id, "--config", f.file, "--shard", "s2", NULL});
    sgt_result_free(&r);
    assert_value(&f, 1, id_type, "integer");
    assert_value(&f, 1, "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^shardgate_'", "0");
    assert_value(&f, 1, "SELECT count(*) FROM items", "50");
    assert_value(&f, 0, id_type, "bigint");
    free(run_id);
    json_decref(j);
    teardown(&f);
}
END_TEST

START_TEST(rollback_after_success)
{
    settings s = {0};
    fleet f = setup("rollback", &s, NULL);
    sgt_result r;
    /* from the fleet's directory, the journal goes to its default name */
    shardgate_in_dir(&r, &f, 0, (const char *const[]){"run", "pipeline.yaml", "--json", NULL});
    json_t *printed = load_json_text(r.out, "run --json");
    char *run_id = run_id_of(printed);
    char *local = sgt_asprintf("%s/shardgate-%s.journal.json", f.dir, run_id);
    size_t len = 0;
    char *saved = sgt_read_file(local, &len);
    ck_assert_msg(saved != NULL, "no journal at %s", local);
    ck_assert_msg(strcmp(saved, r.out) == 0,
                  "--json printed another document than the journal:\n%s\n%s", r.out, saved);
    assert_store_copy(&f, local, run_id);
    assert_status(printed, "done");
    for (int i = 0; i < NSHARDS; i++)
        assert_version(&f, i, TARGET);
    sgt_result_free(&r);

    /* one shard; the run's journal comes from the store */
    shardgate_in_dir(&r, &f, 0,
                     (const char *const[]){"rollback", run_id, "--config", "pipeline.yaml",
                                           "--shard", "s2", NULL});
    assert_contains(r.out, "s2");
    assert_contains(r.out, "rolled back to version 0");
    ck_assert_msg(!strstr(r.out, "s1") && !strstr(r.out, "s3") && !strstr(r.out, "s4"),
                  "rolled back more than s2:\n%s", r.out);
    sgt_result_free(&r);
    assert_version(&f, 1, 0);
    for (int i = 0; i < NSHARDS; i++)
        if (i != 1)
            assert_version(&f, i, TARGET);
    json_t *j = load_journal(local);
    assert_state(j, "s2", "rolled-back");
    assert_state(j, "s1", "done");
    json_decref(j);
    assert_store_copy(&f, local, run_id);

    /* the rest */
    shardgate_in_dir(&r, &f, 0,
                     (const char *const[]){"rollback", run_id, "--config", "pipeline.yaml", NULL});
    sgt_result_free(&r);
    for (int i = 0; i < NSHARDS; i++)
        assert_version(&f, i, 0);
    j = load_journal(local);
    for (int i = 0; i < NSHARDS; i++)
        assert_state(j, names[i], "rolled-back");
    json_decref(j);
    assert_store_copy(&f, local, run_id);

    free(saved);
    free(local);
    free(run_id);
    json_decref(printed);
    teardown(&f);
}
END_TEST

static bool canary_locked(json_t *j, void *arg)
{
    (void)arg;
    const char *state = shard_state(j, "s1");
    return state && strcmp(state, "pending") != 0;
}

START_TEST(two_runners_on_one_fleet)
{
    settings s = {0};
    fleet f = setup("tworunners", &s, "CREATE TABLE slow (id int)");
    write_file(f.migrations, "0001_add_note.sql", add_note_slowly);
    char *first_journal = sgt_asprintf("%s/first.json", f.dir);
    pid_t first = spawn_run(&f, "first", first_journal);
    json_t *locked = wait_journal(&f, first_journal, first, "first", canary_locked, NULL,
                                  "the first runner holds the canary");
    const char *state = shard_state(locked, "s1");
    ck_assert_msg(strcmp(state, "done") != 0 && strcmp(state, "failed") != 0,
                  "the canary is %s already", state);
    json_decref(locked);

    sgt_result r;
    run_pipeline(&r, &f, EXIT_SHARDS_FAILED);
    assert_contains(r.err, "s1: ");
    assert_contains(r.err, "held by another session");
    sgt_result_free(&r);
    json_t *second = load_journal(f.journal);
    assert_status(second, "halted");
    /* The shard fails before its first gate (the lock), which the journal
     * must record too: fails while on_shard in pipeline/cli_run.c leaves
     * such a shard pending. */
    assert_shard_failed(second, "s1", NULL, "held by another session", "held by another session");
    for (int i = 1; i < NSHARDS; i++)
        assert_state(second, names[i], "pending");
    json_decref(second);

    ck_assert_int_eq(sgt_wait(first), 0);
    json_t *j = load_journal(first_journal);
    char *run_id = run_id_of(j);
    assert_status(j, "done");
    for (int i = 0; i < NSHARDS; i++) {
        const char *id = jstr(must_shard(j, names[i]), "snapshot_id");
        assert_shard_done(j, names[i]);
        /* the second runner took no snapshot */
        ck_assert_int_eq(stored_snapshots(&f, i), 1);
        assert_migrated_by(&f, i, run_id, id);
    }
    json_decref(j);
    free(run_id);
    free(first_journal);
    teardown(&f);
}
END_TEST

START_TEST(partitions_split_the_fleet)
{
    settings s = {0};
    fleet f = setup("partition", &s, NULL);
    int owner[NSHARDS] = {0, 0, 0, 0};
    char *run_ids[2];
    for (int k = 1; k <= 2; k++) {
        char part[8], journal[16];
        snprintf(part, sizeof(part), "%d/2", k);
        snprintf(journal, sizeof(journal), "part%d.json", k);
        sgt_result r;
        shardgate_in_dir(&r, &f, 0,
                         (const char *const[]){"run", "pipeline.yaml", "--partition", part,
                                               "--journal", journal, NULL});
        sgt_result_free(&r);
        char *path = sgt_asprintf("%s/%s", f.dir, journal);
        json_t *j = load_journal(path);
        run_ids[k - 1] = run_id_of(j);
        /* a partition's journal has its own object: the partitions of one run
         * share its id */
        char object[32];
        snprintf(object, sizeof(object), "journal-%d-of-2.json", k);
        assert_store_object(&f, path, run_ids[k - 1], object);
        free(path);
        assert_status(j, "done");
        json_t *partition = json_object_get(j, "partition");
        ck_assert_msg(json_is_object(partition), "the journal of part %d has no partition", k);
        ck_assert_int_eq(jint(partition, "k"), k);
        ck_assert_int_eq(jint(partition, "n"), 2);
        size_t listed = json_array_size(json_object_get(j, "shards"));
        ck_assert_uint_eq(listed, NSHARDS / 2);
        for (int i = 0; i < NSHARDS; i++) {
            if (!journal_shard(j, names[i]))
                continue;
            ck_assert_msg(owner[i] == 0, "%s is in parts %d and %d", names[i], owner[i], k);
            owner[i] = k;
            assert_shard_done(j, names[i]);
        }
        json_decref(j);
    }
    for (int i = 0; i < NSHARDS; i++) {
        ck_assert_msg(owner[i] != 0, "%s is in no part", names[i]);
        /* migrated once, by its part's run */
        char *sql = sgt_asprintf("SELECT count(*) FROM shardgate.migrations WHERE run_id = '%s'",
                                 run_ids[owner[i] - 1]);
        assert_value(&f, i, sql, "2");
        free(sql);
        assert_version(&f, i, TARGET);
        ck_assert_int_eq(stored_snapshots(&f, i), 1);
    }
    /* the two jobs of one run, as an Indexed Job would run them: one run id,
     * a journal per partition, read merged by status --config */
    for (int k = 1; k <= 2; k++) {
        char part[8];
        snprintf(part, sizeof(part), "%d/2", k);
        sgt_result r;
        shardgate_in_dir(&r, &f, 0,
                         (const char *const[]){"run", "pipeline.yaml", "--partition", part,
                                               "--run-id", "zz-shared-run", NULL});
        sgt_result_free(&r);
    }
    sgt_result r;
    const char *status_argv[] = {"sh",
                                 "-c",
                                 "cd \"$0\" && exec \"$SG_BINARY\" \"$@\"",
                                 f.dir,
                                 "status",
                                 "--config",
                                 "pipeline.yaml",
                                 "--json",
                                 NULL};
    ck_assert_int_eq(sgt_run(&r, status_argv, NULL), 0);
    json_error_t jerr;
    json_t *status = json_loads(r.out, 0, &jerr);
    ck_assert_msg(status != NULL, "status --json: %s", jerr.text);
    ck_assert_str_eq(jstr(status, "last_run"), "zz-shared-run");
    json_t *shards = json_object_get(status, "shards");
    ck_assert_uint_eq(json_array_size(shards), NSHARDS);
    for (size_t i = 0; i < NSHARDS; i++)
        ck_assert_str_eq(jstr(json_array_get(shards, i), "last_run_state"), "done");
    json_decref(status);
    sgt_result_free(&r);
    free(run_ids[0]);
    free(run_ids[1]);
    teardown(&f);
}
END_TEST

START_TEST(malformed_file_and_plan)
{
    settings s = {0};
    fleet f = setup("plan", &s, NULL);

    /* a typo: nothing is run, the message points at it */
    char *bad = pipeline_text(&f, &s, "paralel");
    write_file(f.dir, "bad.yaml", bad);
    const char *key_at = strstr(bad, "paralel");
    int line = 1, column = 1;
    for (const char *p = bad; p < key_at; p++) {
        column = *p == '\n' ? 1 : column + 1;
        line += *p == '\n';
    }
    char *bad_file = sgt_asprintf("%s/bad.yaml", f.dir);
    char *where = sgt_asprintf("%s:%d:%d: ", bad_file, line, column);
    const char *run_bad[] = {"shardgate", "run", bad_file, "--journal", f.journal, NULL};
    char *err = sgt_shardgate_fails(
        EXIT_FORMAT, run_bad,
        (const char *const[]){where, "\"paralel\"", "did you mean \"parallel\"", NULL});
    free(err);
    ck_assert_int_eq(entries(f.store), -1);
    ck_assert_int_eq(access(f.journal, F_OK), -1);
    for (int i = 0; i < NSHARDS; i++)
        ck_assert_msg(!has_registry(&f, i), "%s was touched", names[i]);

    /* plan on the good file: where each shard stands, touching nothing */
    const char *plan[] = {"shardgate", "plan", f.file, NULL};
    char *out = sgt_shardgate(0, plan);
    assert_contains(out, "pipeline pipetest: 4 shards in 2 stages");
    for (int i = 0; i < NSHARDS; i++) {
        char *want = sgt_asprintf("\n  %-24s version 0, 2 to apply\n", names[i]);
        assert_contains(out, want);
        free(want);
        ck_assert_msg(!has_registry(&f, i), "plan touched %s", names[i]);
    }
    free(out);

    /* a migration that breaks a lint rule: plan says so, run refuses */
    write_file(f.migrations, "0003_index_name.sql", index_name);
    sgt_result r;
    const char *argv[] = {"shardgate", "plan", f.file, NULL};
    sgt_run(&r, argv, NULL);
    ck_assert_msg(r.status == EXIT_LINT, "plan exited %d, want %d\n%s", r.status, EXIT_LINT, r.err);
    char *finding = sgt_asprintf("%s/0003_index_name.sql:2:", f.migrations);
    assert_contains(r.out, finding);
    assert_contains(r.out, "index-not-concurrent");
    assert_contains(r.out, "version 0, 3 to apply");
    assert_contains(r.err, "lint found 1 error");
    sgt_result_free(&r);
    const char *run_good[] = {"shardgate", "run", f.file, "--journal", f.journal, NULL};
    err = sgt_shardgate_fails(EXIT_LINT, run_good,
                              (const char *const[]){finding, "nothing was run", NULL});
    free(err);
    ck_assert_int_eq(entries(f.store), -1);
    for (int i = 0; i < NSHARDS; i++)
        ck_assert_msg(!has_registry(&f, i), "%s was touched", names[i]);

    free(finding);
    free(where);
    free(bad_file);
    free(bad);
    teardown(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pipeline");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"success", every_shard_migrated},
        {"halt", verify_fails_halt},
        {"rollback_stage", verify_fails_rollback_stage},
        {"rollback_all", verify_fails_rollback_all},
        {"failure_budget", verify_fails_within_budget},
        {"shard_down", shard_goes_down_mid_run},
        {"objective", objective_missed},
        {"killed", killed_between_gates_resumes},
        {"killed_anywhere", killed_anywhere_resumes},
        {"rollback", rollback_after_success},
        {"bluegreen", bluegreen_change},
        {"two_runners", two_runners_on_one_fleet},
        {"partitions", partitions_split_the_fleet},
        {"malformed_and_plan", malformed_file_and_plan},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        /* a run takes several sandboxes, far more than Check's default 4 s */
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    pg = sgt_pg_start();
    bindir = sgt_pg_bindir();
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    /* As root, sandbox servers run as another user, who must reach TMPDIR. */
    chmod(root, 0755);
    sgt_keygen_or_exit(root, "runner", key, pub);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_remove_tree(root);
    free(bindir);
    sgt_pg_stop(pg);
    return failed ? 1 : 0;
}
