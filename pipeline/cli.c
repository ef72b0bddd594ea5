#include "pipeline/cli.h"
#include "pipeline/cli_impl.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/interrupt.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/mem.h"
#include "common/options.h"
#include "common/store.h"
#include "restore/access.h"
#include "restore/drill.h"
#include "restore/prune.h"
#include "restore/restore.h"
#include "restore/sandbox.h"
#include "restore/verify.h"
#include "snapshot/snapshot.h"

static int apply_common(const common_settings *c, sg_error *err)
{
    if (c->log_format && strcmp(c->log_format, "text") != 0 && strcmp(c->log_format, "json") != 0)
        return sg_error_set(err, SG_E_USAGE, "--log-format must be text or json");
    sg_log_set_json(c->log_format && strcmp(c->log_format, "json") == 0);
    sg_log_set_level(c->verbose ? SG_LOG_DEBUG : c->quiet ? SG_LOG_WARNING : SG_LOG_INFO);
    return 0;
}

int sg_cli_print_json(json_t *doc, sg_error *err)
{
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (!text)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    printf("%s\n", text);
    free(text);
    return 0;
}

int sg_cli_parse(void *settings, const sg_option *table, int argc, char **argv, const char *usage,
                 sg_strlist *positional, const common_settings *common, sg_error *err)
{
    int help = 0, rc;
    if ((rc = sg_options_parse(settings, table, argc, argv, positional, &help, err)) < 0)
        return rc;
    if (help) {
        printf("usage: shardgate %s\n\noptions:\n", usage);
        sg_options_print_help(stdout, table);
        return 1;
    }
    return apply_common(common, err);
}

int sg_cli_expect_positionals(const sg_strlist *positional, size_t n, const char *what,
                              sg_error *err)
{
    if (positional->count == n)
        return 0;
    if (positional->count < n)
        return sg_error_set(err, SG_E_USAGE, "missing %s", what);
    return sg_error_set(err, SG_E_USAGE, "unexpected argument \"%s\"", positional->items[n]);
}

/* ---- keygen ---- */

typedef struct keygen_settings {
    common_settings common;
    const char *out;
} keygen_settings;

static const sg_option keygen_options[] = {
    {"out", SG_OPT_STRING, offsetof(keygen_settings, out), "NAME",
     "write NAME.key (secret, mode 0600) and NAME.pub", 0, 0},
    COMMON_OPTIONS(keygen_settings),
    {0}};

static int cmd_keygen(int argc, char **argv, sg_error *err)
{
    keygen_settings s = {0};
    sg_strlist pos = {0};
    sg_public_key pub;
    int rc =
        sg_cli_parse(&s, keygen_options, argc, argv, "keygen --out NAME", &pos, &s.common, err);
    if (rc != 0)
        goto done;
    if ((rc = sg_cli_expect_positionals(&pos, 0, "", err)) < 0)
        goto done;
    if (!s.out) {
        rc = sg_error_set(err, SG_E_USAGE, "--out NAME is required");
        goto done;
    }
    if ((rc = sg_keygen(s.out, &pub, err)) < 0)
        goto done;
    if (s.common.json)
        rc = sg_cli_print_json(json_pack("{s:s, s:s++, s:s++}", "key_id", pub.id, "secret_key",
                                         s.out, ".key", "public_key", s.out, ".pub"),
                               err);
    else
        printf("%s\n", pub.id);
    sg_log_info("wrote %s.key (secret: keep it safe) and %s.pub (key id %s)", s.out, s.out, pub.id);
done:
    free(pos.items);
    return rc;
}

/* ---- snapshot ---- */

typedef struct snapshot_settings {
    common_settings common;
    sg_snapshot_options o;
} snapshot_settings;

#define SNAP(field) offsetof(snapshot_settings, o.field)
static const sg_option snapshot_options[] = {
    {"dsn", SG_OPT_STRING, SNAP(dsn), "DSN", "source database (libpq connection string or URI)", 0,
     0},
    SG_OPTIONS_INCLUDE(SNAP(store), sg_store_options),
    {"key", SG_OPT_STRING, SNAP(key_path), "NAME.key", "key that signs (and can open) the snapshot",
     0, 0},
    {"recipient", SG_OPT_LIST, SNAP(recipients), "OTHER.pub", "also encrypt to this public key", 0,
     0},
    {"shard", SG_OPT_STRING, SNAP(shard), "NAME", "shard name (default: the database name)", 0, 0},
    {"jobs", SG_OPT_INT, SNAP(jobs), "N", "parallel connections (default 2)", 1, 64},
    {"chunk-size", SG_OPT_SIZE, SNAP(chunk_size), "SIZE", "plain bytes per chunk (default 32MiB)",
     0, 0},
    {"pack-size", SG_OPT_SIZE, SNAP(pack_size), "SIZE", "bytes per pack file (default 1GiB)", 0, 0},
    {"compress-level", SG_OPT_INT, SNAP(compress_level), "N", "zstd level (default 1)", -7, 19},
    {"lock-timeout", SG_OPT_INT, SNAP(lock_timeout_ms), "MS",
     "give up if a table cannot be locked within MS milliseconds (default 5000)", 1, 3600000},
    {"pg-bindir", SG_OPT_STRING, SNAP(pg_bindir), "DIR", "where pg_dump is", 0, 0},
    COMMON_OPTIONS(snapshot_settings),
    {0}};
#undef SNAP

static int cmd_snapshot(int argc, char **argv, sg_error *err)
{
    snapshot_settings s = {0};
    sg_strlist pos = {0};
    sg_snapshot_result res;
    int rc;
    sg_snapshot_options_init(&s.o);
    rc = sg_cli_parse(&s, snapshot_options, argc, argv,
                      "snapshot --dsn DSN --store URL --key NAME.key [--recipient OTHER.pub ...] "
                      "[--shard NAME] [--jobs N] [--chunk-size SIZE]",
                      &pos, &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 0, "", err)) < 0)
        goto done;
    if ((rc = sg_snapshot_run(&res, &s.o, err)) < 0)
        goto done;
    if (s.common.json)
        rc = sg_cli_print_json(json_pack("{s:s, s:s, s:I, s:I, s:{s:I, s:I}, s:f}", "id", res.id,
                                         "shard", res.shard, "tables", (json_int_t)res.tables,
                                         "rows", (json_int_t)res.rows, "bytes", "plain",
                                         (json_int_t)res.plain_bytes, "stored",
                                         (json_int_t)res.stored_bytes, "seconds", res.seconds),
                               err);
    else
        printf("%s\n", res.id);
    {
        char plain[32], stored[32];
        sg_format_size(plain, sizeof(plain), res.plain_bytes);
        sg_format_size(stored, sizeof(stored), res.stored_bytes);
        sg_log_info("snapshot %s/%s: %" PRIu64 " tables, %" PRIu64 " rows, %s plain, %s stored, "
                    "%.1f s",
                    res.shard, res.id, res.tables, res.rows, plain, stored, res.seconds);
    }
done:
    free(pos.items);
    sg_options_free(&s, snapshot_options);
    return rc;
}

/* ---- snapshots ---- */

typedef struct snapshots_settings {
    common_settings common;
    sg_store_config store;
    const char *shard;
} snapshots_settings;

static const sg_option snapshots_options[] = {
    SG_OPTIONS_INCLUDE(offsetof(snapshots_settings, store), sg_store_options),
    {"shard", SG_OPT_STRING, offsetof(snapshots_settings, shard), "NAME", "only this shard", 0, 0},
    COMMON_OPTIONS(snapshots_settings),
    {0}};

static int cmd_snapshots(int argc, char **argv, sg_error *err)
{
    snapshots_settings s = {0};
    sg_strlist pos = {0};
    sg_store *store = NULL;
    sg_snapshot_entry *entries = NULL;
    size_t count = 0;
    json_t *list = NULL;
    int rc = sg_cli_parse(&s, snapshots_options, argc, argv, "snapshots --store URL [--shard NAME]",
                          &pos, &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 0, "", err)) < 0)
        goto done;
    if (!s.store.url) {
        rc = sg_error_set(err, SG_E_USAGE, "--store URL is required");
        goto done;
    }
    if (s.shard && (rc = sg_shard_name_check(s.shard, err)) < 0)
        goto done;
    if ((rc = sg_store_open_config(&store, &s.store, err)) < 0 ||
        (rc = sg_snapshot_list(&entries, &count, store, s.shard, err)) < 0)
        goto done;
    if (s.common.json && !(list = json_array())) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if (!s.common.json)
        printf("%-20s %-26s %-20s %10s %6s  %s\n", "SHARD", "ID", "TIME", "SIZE", "TABLES",
               "STATUS");
    for (size_t i = 0; i < count; i++) {
        const sg_snapshot_entry *e = &entries[i];
        sg_manifest *m = NULL;
        sg_error merr = {0};
        const char *status = e->complete ? "complete" : "incomplete (no manifest)";
        uint64_t size = e->pack_bytes;
        char size_text[32];
        if (e->complete) {
            char *key = sg_layout_key(e->shard, e->id, "manifest");
            sg_buf bytes = {0};
            /* Listing needs no keys: the header is shown as stored, and
             * verify and restore check its signature before trusting it. */
            if (!key || sg_store_get(store, key, 0, UINT64_MAX, &bytes, &merr) < 0 ||
                sg_manifest_parse_unverified(&m, bytes.data, bytes.len, &merr) < 0)
                status = "damaged manifest";
            free(key);
            sg_buf_free(&bytes);
        }
        if (m)
            size = m->stored_bytes;
        sg_format_size(size_text, sizeof(size_text), size);
        if (s.common.json) {
            json_t *item =
                json_pack("{s:s, s:s, s:b, s:s, s:I}", "shard", e->shard, "id", e->id, "restorable",
                          m != NULL, "status", status, "stored_bytes", (json_int_t)size);
            if (item && m) {
                json_object_set_new(item, "started_at", json_string(m->started_at));
                json_object_set_new(item, "finished_at", json_string(m->finished_at));
                json_object_set_new(item, "tables", json_integer((json_int_t)m->table_count));
                json_object_set_new(item, "rows", json_integer((json_int_t)m->row_count));
                json_object_set_new(item, "server_version", json_string(m->server_version));
            }
            json_array_append_new(list, item);
        } else {
            char tables[24];
            snprintf(tables, sizeof(tables), "%" PRIu64, m ? m->table_count : 0);
            printf("%-20s %-26s %-20s %10s %6s  %s\n", e->shard, e->id, m ? m->finished_at : "-",
                   size_text, m ? tables : "-", status);
        }
        sg_manifest_free(m);
    }
    if (s.common.json) {
        rc = sg_cli_print_json(json_pack("{s:O}", "snapshots", list), err);
        json_decref(list);
        list = NULL;
    }
done:
    json_decref(list);
    free(entries);
    sg_store_free(store);
    free(pos.items);
    return rc;
}

/* ---- verify ---- */

typedef struct verify_settings {
    common_settings common;
    sg_verify_options o;
} verify_settings;

#define VER(field) offsetof(verify_settings, o.field)
static const sg_option verify_options[] = {
    SG_OPTIONS_INCLUDE(VER(store), sg_store_options),
    {"trust", SG_OPT_LIST, VER(trust), "SIGNER.pub", "accept manifests signed by this key", 0, 0},
    {"key", SG_OPT_STRING, VER(key_path), "NAME.key", "secret key (needed for level 2)", 0, 0},
    {"level", SG_OPT_INT, VER(level), "0|1|2",
     "0: objects present; 1: and their SHA-256 (default); 2: and every chunk and row", 0, 2},
    {"jobs", SG_OPT_INT, VER(jobs), "N", "parallel readers (default 2)", 1, 64},
    COMMON_OPTIONS(verify_settings),
    {0}};
#undef VER

static int cmd_verify(int argc, char **argv, sg_error *err)
{
    verify_settings s = {0};
    sg_strlist pos = {0};
    sg_verify_result res;
    int rc;
    sg_verify_options_init(&s.o);
    rc = sg_cli_parse(
        &s, verify_options, argc, argv,
        "verify --store URL --trust SIGNER.pub [--key NAME.key] [--level 0|1|2] SNAPSHOT", &pos,
        &s.common, err);
    if (rc != 0 ||
        (rc = sg_cli_expect_positionals(&pos, 1, "SNAPSHOT (SHARD/ID or SHARD/latest)", err)) < 0)
        goto done;
    s.o.snapshot = pos.items[0];
    if ((rc = sg_verify_run(&res, &s.o, err)) < 0)
        goto done;
    if (s.common.json)
        rc = sg_cli_print_json(
            json_pack("{s:s, s:s, s:i, s:b, s:I, s:I, s:I, s:I, s:I, s:f}", "shard", res.shard,
                      "id", res.id, "level", res.level, "ok", 1, "objects", (json_int_t)res.objects,
                      "stored_bytes", (json_int_t)res.stored_bytes, "chunks",
                      (json_int_t)res.chunks, "rows", (json_int_t)res.rows, "plain_bytes",
                      (json_int_t)res.plain_bytes, "seconds", res.seconds),
            err);
    else
        printf("%s/%s: ok (level %d: %" PRIu64 " objects%s)\n", res.shard, res.id, res.level,
               res.objects, res.level == 2 ? ", every chunk and row" : "");
done:
    free(pos.items);
    sg_options_free(&s, verify_options);
    return rc;
}

/* ---- restore ---- */

typedef struct restore_settings {
    common_settings common;
    sg_restore_options o;
} restore_settings;

#define RES(field) offsetof(restore_settings, o.field)
static const sg_option restore_options[] = {
    SG_OPTIONS_INCLUDE(RES(store), sg_store_options),
    {"key", SG_OPT_STRING, RES(key_path), "NAME.key", "secret key the snapshot is encrypted to", 0,
     0},
    {"trust", SG_OPT_LIST, RES(trust), "SIGNER.pub", "accept manifests signed by this key", 0, 0},
    {"target", SG_OPT_STRING, RES(target), "DSN", "empty database to restore into", 0, 0},
    {"jobs", SG_OPT_INT, RES(jobs), "N", "parallel connections (default 2)", 1, 64},
    {"no-owner", SG_OPT_FLAG, RES(no_owner), NULL, "do not restore object ownership", 0, 0},
    {"no-privileges", SG_OPT_FLAG, RES(no_privileges), NULL,
     "do not restore privileges (GRANT/REVOKE)", 0, 0},
    {"maintenance-work-mem", SG_OPT_SIZE, RES(maintenance_work_mem), "SIZE",
     "memory per index build (default 256MiB)", 0, 0},
    {"pg-bindir", SG_OPT_STRING, RES(pg_bindir), "DIR", "where pg_restore is", 0, 0},
    COMMON_OPTIONS(restore_settings),
    {0}};
#undef RES

static int cmd_restore(int argc, char **argv, sg_error *err)
{
    restore_settings s = {0};
    sg_strlist pos = {0};
    sg_restore_result res;
    int rc;
    sg_restore_options_init(&s.o);
    rc = sg_cli_parse(
        &s, restore_options, argc, argv,
        "restore --store URL --key NAME.key --trust SIGNER.pub --target DSN [--jobs N] "
        "SNAPSHOT",
        &pos, &s.common, err);
    if (rc != 0 ||
        (rc = sg_cli_expect_positionals(&pos, 1, "SNAPSHOT (SHARD/ID or SHARD/latest)", err)) < 0)
        goto done;
    s.o.snapshot = pos.items[0];
    if ((rc = sg_restore_run(&res, &s.o, err)) < 0)
        goto done;
    if (s.common.json)
        rc = sg_cli_print_json(json_pack("{s:s, s:s, s:I, s:I, s:I, s:f}", "shard", res.shard, "id",
                                         res.id, "tables", (json_int_t)res.tables, "rows",
                                         (json_int_t)res.rows, "plain_bytes",
                                         (json_int_t)res.plain_bytes, "seconds", res.seconds),
                               err);
    else
        printf("%s/%s: restored %" PRIu64 " tables, %" PRIu64 " rows, all match the manifest "
               "(%.1f s)\n",
               res.shard, res.id, res.tables, res.rows, res.seconds);
done:
    free(pos.items);
    sg_options_free(&s, restore_options);
    return rc;
}

/* ---- prune ---- */

typedef struct prune_settings {
    common_settings common;
    sg_prune_options o;
} prune_settings;

#define PRUNE(field) offsetof(prune_settings, o.field)
static const sg_option prune_options[] = {
    SG_OPTIONS_INCLUDE(PRUNE(store), sg_store_options),
    {"keep-last", SG_OPT_INT, PRUNE(keep_last), "N",
     "keep each shard's N newest complete snapshots (required)", 1, 1000000},
    {"keep-days", SG_OPT_INT, PRUNE(keep_days), "D",
     "also keep complete snapshots taken in the last D days", 1, 1000000},
    {"shard", SG_OPT_STRING, PRUNE(shard), "NAME", "only this shard", 0, 0},
    {"dry-run", SG_OPT_FLAG, PRUNE(dry_run), NULL, "show what would be removed, remove nothing", 0,
     0},
    COMMON_OPTIONS(prune_settings),
    {0}};
#undef PRUNE

static int cmd_prune(int argc, char **argv, sg_error *err)
{
    prune_settings s = {0};
    sg_strlist pos = {0};
    sg_prune_result res = {0};
    char freed[32];
    int rc =
        sg_cli_parse(&s, prune_options, argc, argv,
                     "prune --store URL --keep-last N [--keep-days D] [--shard NAME] [--dry-run]",
                     &pos, &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 0, "", err)) < 0)
        goto done;
    rc = sg_prune(&res, &s.o, err);
    /* What went is reported even when prune stopped part-way. */
    sg_format_size(freed, sizeof(freed), res.freed_bytes);
    if (s.common.json) {
        json_t *list = json_array();
        for (size_t i = 0; list && i < res.nremoved; i++)
            json_array_append_new(list, json_pack("{s:s, s:s, s:b, s:I}", "shard",
                                                  res.removed[i].shard, "id", res.removed[i].id,
                                                  "complete", res.removed[i].complete, "pack_bytes",
                                                  (json_int_t)res.removed[i].pack_bytes));
        if (rc == 0 || res.nremoved > 0) {
            sg_error perr = {0};
            int prc = sg_cli_print_json(json_pack("{s:b, s:o, s:I, s:I}", "dry_run", s.o.dry_run,
                                                  "removed", list, "kept", (json_int_t)res.kept,
                                                  "freed_bytes", (json_int_t)res.freed_bytes),
                                        rc == 0 ? err : &perr);
            if (rc == 0)
                rc = prc;
        } else {
            json_decref(list);
        }
    } else {
        for (size_t i = 0; i < res.nremoved; i++) {
            char size[32];
            sg_format_size(size, sizeof(size), res.removed[i].pack_bytes);
            printf("%s %s/%s (%s, %s)\n", s.o.dry_run ? "would remove" : "removed",
                   res.removed[i].shard, res.removed[i].id,
                   res.removed[i].complete ? "complete" : "incomplete", size);
        }
        if (rc == 0)
            printf("%s %zu snapshot%s (%s), kept %zu\n", s.o.dry_run ? "would remove" : "removed",
                   res.nremoved, res.nremoved == 1 ? "" : "s", freed, res.kept);
    }
done:
    sg_prune_result_clear(&res);
    free(pos.items);
    return rc;
}

/* ---- drill ---- */

typedef struct drill_settings {
    common_settings common;
    sg_drill_options o;
    const char *metrics_file;
    const char *junit_file;
} drill_settings;

#define DRILL(field) offsetof(drill_settings, o.field)
static const sg_option drill_options[] = {
    SG_OPTIONS_INCLUDE(DRILL(test.store), sg_store_options),
    {"key", SG_OPT_STRING, DRILL(test.key_path), "NAME.key", "key that opens the snapshots", 0, 0},
    {"trust", SG_OPT_LIST, DRILL(test.trust), "SIGNER.pub", "accept snapshots signed by this key",
     0, 0},
    {"shard", SG_OPT_LIST, DRILL(shards), "NAME", "drill this shard", 0, 0},
    {"all", SG_OPT_FLAG, DRILL(all), NULL, "drill every shard in the store", 0, 0},
    SG_OPTIONS_INCLUDE(DRILL(test.sandbox), sg_sandbox_option_table),
    {"pg-bindir", SG_OPT_STRING, DRILL(test.pg_bindir), "DIR",
     "PostgreSQL binaries (default: found by version)", 0, 0},
    {"jobs", SG_OPT_INT, DRILL(test.jobs), "N", "connections per restore (default 2)", 1, 64},
    {"parallel", SG_OPT_INT, DRILL(parallel), "N", "shards drilled at once (default 1)", 1, 64},
    {"amcheck-heap", SG_OPT_FLAG, DRILL(test.amcheck_heap), NULL,
     "amcheck also proves every row is in every index (a second pass over the data)", 0, 0},
    {"rto", SG_OPT_DURATION, DRILL(rto_ms), "DURATION",
     "recovery-time objective, e.g. 15m: slower shards fail the drill", 0, 0},
    {"metrics-file", SG_OPT_STRING, offsetof(drill_settings, metrics_file), "FILE",
     "write Prometheus metrics to FILE (textfile collector)", 0, 0},
    {"junit", SG_OPT_STRING, offsetof(drill_settings, junit_file), "FILE",
     "write a JUnit XML report to FILE, a test case per shard", 0, 0},
    COMMON_OPTIONS(drill_settings),
    {0}};
#undef DRILL

/* "3d4h", "2h05m", "12m", "40s": how old a snapshot is, at a glance. */
static void format_age(char *out, size_t size, double seconds)
{
    long s = seconds > 0 ? (long)seconds : 0;
    if (s >= 86400)
        snprintf(out, size, "%ldd%ldh", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(out, size, "%ldh%02ldm", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(out, size, "%ldm", s / 60);
    else
        snprintf(out, size, "%lds", s);
}

static json_t *drill_shard_json(const sg_drill_shard *d)
{
    const sg_test_restore_result *r = &d->result;
    json_t *o = json_pack("{s:s, s:s, s:f, s:f, s:f, s:f}", "shard", d->shard, "result",
                          sg_drill_shard_status(d), "seconds", r->seconds, "verify_seconds",
                          r->verify_seconds, "sandbox_seconds", r->sandbox_seconds,
                          "restore_seconds", r->restore_seconds);
    if (o && r->id[0]) {
        json_object_set_new(o, "snapshot", json_string(r->id));
        json_object_set_new(o, "finished_at", json_string(r->finished_at));
        json_object_set_new(o, "snapshot_age_seconds", json_real(r->snapshot_age));
        json_object_set_new(o, "stored_bytes", json_integer((json_int_t)r->stored_bytes));
        json_object_set_new(o, "tables", json_integer((json_int_t)r->tables));
        json_object_set_new(o, "rows", json_integer((json_int_t)r->rows));
        json_object_set_new(o, "amcheck", json_boolean(r->amcheck));
        json_object_set_new(o, "indexes_checked", json_integer((json_int_t)r->indexes_checked));
    }
    if (o && d->rc < 0)
        json_object_set_new(o, "error",
                            json_pack("{s:s, s:s, s:s, s:s}", "class", sg_error_class(d->rc),
                                      "message", d->error.message, "detail", d->error.detail,
                                      "hint", d->error.hint));
    return o;
}

static int print_drill(const sg_drill_result *res, const drill_settings *s, sg_error *err)
{
    if (s->common.json) {
        json_t *shards = json_array();
        for (size_t i = 0; shards && i < res->count; i++)
            json_array_append_new(shards, drill_shard_json(&res->shards[i]));
        return sg_cli_print_json(
            json_pack("{s:s, s:f, s:I, s:I, s:I, s:f, s:o}", "started_at", res->started_at,
                      "seconds", res->seconds, "shards_total", (json_int_t)res->count, "failed",
                      (json_int_t)res->failed, "rto_exceeded", (json_int_t)res->too_slow,
                      "rto_seconds", (double)s->o.rto_ms / 1000.0, "shards", shards),
            err);
    }
    printf("%-20s %-26s %8s %10s %8s %6s %12s  %s\n", "SHARD", "SNAPSHOT", "AGE", "STORED",
           "SECONDS", "TABLES", "ROWS", "RESULT");
    for (size_t i = 0; i < res->count; i++) {
        const sg_drill_shard *d = &res->shards[i];
        const sg_test_restore_result *r = &d->result;
        char age[32] = "-", stored[32] = "-", tables[24] = "-", rows[24] = "-";
        if (r->id[0]) {
            format_age(age, sizeof(age), r->snapshot_age);
            sg_format_size(stored, sizeof(stored), r->stored_bytes);
            snprintf(tables, sizeof(tables), "%" PRIu64, r->tables);
            snprintf(rows, sizeof(rows), "%" PRIu64, r->rows);
        }
        printf("%-20s %-26s %8s %10s %8.1f %6s %12s  ", d->shard, r->id[0] ? r->id : "-", age,
               stored, r->seconds, tables, rows);
        if (d->rc < 0)
            printf("FAILED: %s\n", d->error.message);
        else if (d->rto_exceeded)
            printf("SLOW: over the %.0f s objective\n", (double)s->o.rto_ms / 1000.0);
        else
            printf("ok\n");
    }
    return 0;
}

static int cmd_drill(int argc, char **argv, sg_error *err)
{
    drill_settings s = {0};
    sg_strlist pos = {0};
    sg_drill_result res = {0};
    sg_error report_err = {0};
    int rc = sg_cli_parse(
        &s, drill_options, argc, argv,
        "drill --store URL --key NAME.key --trust SIGNER.pub (--shard NAME ... | --all) "
        "[--sandbox local|docker] [--parallel N] [--rto DURATION] [--metrics-file F] "
        "[--junit F]",
        &pos, &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 0, "", err)) < 0)
        goto done;
    s.o.test.sandbox.pg_bindir = s.o.test.pg_bindir;
    rc = sg_drill_run(&res, &s.o, err);
    /* Setup errors and interrupts leave nothing to report. */
    if (rc < 0 && rc != SG_E_SHARDS_FAILED && rc != SG_E_OBJECTIVE)
        goto done;
    /* The report files are written whatever the outcome: a failed drill is
     * what monitoring and CI most need to see. */
    if (s.metrics_file && sg_drill_write_metrics(&res, s.metrics_file, &report_err) < 0)
        sg_log_error(&report_err);
    if (s.junit_file && sg_drill_write_junit(&res, s.junit_file, &report_err) < 0)
        sg_log_error(&report_err);
    if (print_drill(&res, &s, &report_err) < 0)
        sg_log_error(&report_err);
    if (rc == 0 && report_err.code)
        *err = report_err, rc = report_err.code;
done:
    sg_drill_result_clear(&res);
    free(pos.items);
    sg_options_free(&s, drill_options);
    return rc;
}

/* ---- sandbox ---- */

typedef struct sandbox_settings {
    common_settings common;
    const char *driver;
} sandbox_settings;

static const sg_option sandbox_options[] = {
    {"sandbox", SG_OPT_STRING, offsetof(sandbox_settings, driver), "local|docker",
     "only this driver's sandboxes (default: every driver available)", 0, 0},
    COMMON_OPTIONS(sandbox_settings),
    {0}};

static int cmd_sandbox(int argc, char **argv, sg_error *err)
{
    sandbox_settings s = {0};
    sg_strlist pos = {0};
    size_t removed = 0;
    int rc = sg_cli_parse(&s, sandbox_options, argc, argv, "sandbox gc [--sandbox local|docker]",
                          &pos, &s.common, err);
    if (rc != 0 || (rc = sg_cli_expect_positionals(&pos, 1, "subcommand (gc)", err)) < 0)
        goto done;
    if (strcmp(pos.items[0], "gc") != 0) {
        rc = sg_error_set(err, SG_E_USAGE, "unknown sandbox subcommand \"%s\"", pos.items[0]);
        sg_error_hint(err, "the only one is \"shardgate sandbox gc\"");
        goto done;
    }
    if ((rc = sg_sandbox_gc(&removed, s.driver, err)) < 0)
        goto done;
    if (s.common.json)
        rc = sg_cli_print_json(json_pack("{s:I}", "removed", (json_int_t)removed), err);
    else
        printf("removed %zu leftover%s of killed runs\n", removed, removed == 1 ? "" : "s");
done:
    free(pos.items);
    return rc;
}

/* ---- dispatch ---- */

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv, sg_error *err);
    const char *summary;
} command;

static const command commands[] = {
    {"keygen", cmd_keygen, "create a key pair for encrypting and signing snapshots"},
    {"snapshot", cmd_snapshot, "take an encrypted, signed snapshot of a database"},
    {"snapshots", cmd_snapshots, "list the snapshots in a store"},
    {"verify", cmd_verify, "check a stored snapshot (levels 0-2)"},
    {"restore", cmd_restore, "restore a snapshot into an empty database"},
    {"prune", cmd_prune, "delete old snapshots from a store"},
    {"drill", cmd_drill, "prove that shards can be recovered: restore and verify in sandboxes"},
    {"sandbox", cmd_sandbox, "remove sandboxes left behind by killed runs (sandbox gc)"},
    {"lint", sg_cli_lint, "check migration files for statements that lock or lose data"},
    {"migrate", sg_cli_migrate, "apply pending migrations to one database"},
    {"revert", sg_cli_revert, "revert migrations of one database down to a version"},
    {"finalize", sg_cli_finalize, "drop the old tables blue-green changes keep for a rollback"},
    {"status", sg_cli_status, "show applied, pending and changed migrations, and schema drift"},
    {"plan", sg_cli_plan, "show what a pipeline run would do, touching nothing"},
    {"run", sg_cli_run, "take a fleet through snapshot, test restore, apply and verify"},
    {"resume", sg_cli_resume, "continue a killed pipeline run from its journal"},
    {"rollback", sg_cli_rollback, "revert what a pipeline run applied"},
    {NULL, NULL, NULL}};

static void usage(FILE *out)
{
    fprintf(out,
            "shardgate %s: guarded schema migrations for fleets of PostgreSQL shards\n\n"
            "usage: shardgate COMMAND [OPTIONS]\n\ncommands:\n",
            SG_VERSION);
    for (const command *c = commands; c->name; c++)
        fprintf(out, "  %-12s %s\n", c->name, c->summary);
    fprintf(out, "\nrun \"shardgate COMMAND --help\" for a command's options\n");
}

int sg_cli_main(int argc, char **argv)
{
    sg_error err = {0};
    int rc;
    if (sodium_init() < 0) {
        fprintf(stderr, "shardgate: error: cannot initialise libsodium\n");
        return sg_error_exit_status(SG_E_INTERNAL);
    }
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return argc < 2 ? sg_error_exit_status(SG_E_USAGE) : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("shardgate %s\n", SG_VERSION);
        return 0;
    }
    sg_interrupt_install();
    for (const command *c = commands; c->name; c++) {
        if (strcmp(argv[1], c->name) == 0) {
            rc = c->fn(argc - 1, argv + 1, &err);
            if (rc < 0) {
                sg_log_error(&err);
                return sg_error_exit_status(rc);
            }
            return 0;
        }
    }
    sg_error_set(&err, SG_E_USAGE, "unknown command \"%s\"", argv[1]);
    sg_error_hint(&err, "run \"shardgate help\" for the list of commands");
    sg_log_error(&err);
    return sg_error_exit_status(SG_E_USAGE);
}
