/* Migration files: header directives, sections, checksums, every malformed
 * input, and loading a directory of them. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/sha256.h"
#include "stages/migration.h"
#include "tests/harness/run.h"

static const char complete[] =
    "-- Orders get a note.\n"                                                   /* 1 */
    "-- shardgate:transaction=on lock_timeout=1500ms statement_timeout=1m30s\n" /* 2 */
    "--shardgate: irreversible  destructive\tdata-change \n"                    /* 3 */
    "-- shardgate:mode=bluegreen table=public.orders\n"                         /* 4 */
    "-- shardgate:allow set-not-null, table-rewrite\n"                          /* 5 */
    "\n"                                                                        /* 6 */
    "-- shardgate:up\n"                                                         /* 7 */
    "ALTER TABLE orders ADD COLUMN note text;\n"                                /* 8 */
    "-- shardgate:allow volatile-default\n"                                     /* 9 */
    "ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'x';\n"                   /* 10 */
    "  -- shardgate:down  \n"                                                   /* 11 */
    "ALTER TABLE orders DROP COLUMN note;\n"                                    /* 12 */
    "-- shardgate:verify\n"                                                     /* 13 */
    "SELECT count(*) FROM orders;\n"                                            /* 14 */
    "  SELECT 1";                                                               /* 15 */

/* printf '%s' "$complete" | sha256sum */
static const char complete_sha256[] =
    "ce4754e16749b261b7ca305f8798b1c16ca9db618ea099ab41cd7a61ebac5e5e";

static void assert_stmt(const sg_migration_section *section, size_t i, const char *text,
                        unsigned line, unsigned column)
{
    const sg_sql_stmt *st = sg_sql_script_stmt(section->script, i);
    ck_assert_msg(st != NULL, "statement %zu missing", i);
    ck_assert_msg(st->len == strlen(text) && memcmp(st->text, text, st->len) == 0,
                  "statement %zu: [%.*s], expected [%s]", i, (int)st->len, st->text, text);
    ck_assert_msg(st->line == line && st->column == column,
                  "statement %zu at %u:%u, expected %u:%u", i, st->line, st->column, line, column);
}

START_TEST(test_parse_complete)
{
    sg_migration m = {0};
    sg_error err = {0};
    uint8_t digest[32];
    char hex[SG_SHA256_HEX_LEN + 1];
    int rc = sg_migration_parse(&m, "db/migrations/0042_order_notes.sql", "0042_order_notes.sql",
                                complete, strlen(complete), &err);
    ck_assert_msg(rc == 0, "%d %s", rc, err.message);
    ck_assert_int_eq(m.version, 42);
    ck_assert_str_eq(m.name, "order_notes");
    ck_assert_str_eq(m.file, "0042_order_notes.sql");
    ck_assert_str_eq(m.path, "db/migrations/0042_order_notes.sql");
    sg_sha256(digest, complete, strlen(complete));
    sg_hex_encode(hex, digest, sizeof(digest));
    ck_assert_str_eq(m.sha256, hex);
    ck_assert_str_eq(m.sha256, complete_sha256);

    ck_assert_int_eq(m.mode, SG_MIGRATION_BLUEGREEN);
    ck_assert_str_eq(sg_migration_mode_name(m.mode), "bluegreen");
    ck_assert_str_eq(m.bluegreen_table, "public.orders");
    ck_assert(m.irreversible);
    ck_assert(m.destructive);
    ck_assert(m.data_change);
    ck_assert_int_eq(m.lock_timeout_ms, 1500);
    ck_assert_int_eq(m.statement_timeout_ms, 90000);

    ck_assert_uint_eq(m.allowed_count, 2);
    ck_assert_str_eq(m.allowed[0], "set-not-null");
    ck_assert_str_eq(m.allowed[1], "table-rewrite");
    ck_assert(sg_migration_allows(&m, "table-rewrite"));
    ck_assert(!sg_migration_allows(&m, "volatile-default"));

    ck_assert_uint_eq(m.up.line, 7);
    ck_assert_uint_eq(sg_sql_script_count(m.up.script), 2);
    assert_stmt(&m.up, 0, "ALTER TABLE orders ADD COLUMN note text", 8, 1);
    assert_stmt(&m.up, 1, "ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'x'", 10, 1);
    /* an allow line inside a section is the statement's, not the file's */
    ck_assert(sg_sql_stmt_allows(sg_sql_script_stmt(m.up.script, 1), "volatile-default"));
    ck_assert(!sg_sql_stmt_allows(sg_sql_script_stmt(m.up.script, 0), "volatile-default"));
    ck_assert_uint_eq(m.down.line, 11);
    ck_assert_uint_eq(sg_sql_script_count(m.down.script), 1);
    assert_stmt(&m.down, 0, "ALTER TABLE orders DROP COLUMN note", 12, 1);
    ck_assert_uint_eq(m.verify.line, 13);
    ck_assert_uint_eq(sg_sql_script_count(m.verify.script), 2);
    assert_stmt(&m.verify, 0, "SELECT count(*) FROM orders", 14, 1);
    assert_stmt(&m.verify, 1, "SELECT 1", 15, 3);

    sg_migration_clear(&m);
    ck_assert_ptr_null(m.name);
    sg_migration_clear(&m);
    sg_migration_clear(NULL);
}
END_TEST

/* Defaults, transaction=off, CRLF line ends, sections in any order, an empty
 * section and a file whose last line is a marker. */
START_TEST(test_parse_defaults)
{
    static const char plain[] = "-- shardgate:up\r\n"
                                "CREATE TABLE t (id int);\r\n"
                                "-- shardgate:down";
    static const char statements[] = "-- shardgate:transaction=off\n"
                                     "-- shardgate:verify\n"
                                     "-- shardgate:up\n"
                                     "CREATE INDEX CONCURRENTLY i ON t (id);\n"
                                     "CREATE INDEX CONCURRENTLY j ON t (id);\n";
    sg_migration m = {0};
    sg_error err = {0};
    ck_assert_int_eq(
        sg_migration_parse(&m, "p", "123456789012345678_plain.sql", plain, strlen(plain), &err), 0);
    ck_assert_int_eq(m.version, 123456789012345678);
    ck_assert_str_eq(m.name, "plain");
    ck_assert_int_eq(m.mode, SG_MIGRATION_TRANSACTIONAL);
    ck_assert_str_eq(sg_migration_mode_name(m.mode), "transactional");
    ck_assert_ptr_null(m.bluegreen_table);
    ck_assert(!m.irreversible && !m.destructive && !m.data_change);
    ck_assert_int_eq(m.lock_timeout_ms, -1);
    ck_assert_int_eq(m.statement_timeout_ms, -1);
    ck_assert_uint_eq(m.allowed_count, 0);
    ck_assert_uint_eq(m.up.line, 1);
    assert_stmt(&m.up, 0, "CREATE TABLE t (id int)", 2, 1);
    ck_assert_uint_eq(m.down.line, 3);
    ck_assert_uint_eq(sg_sql_script_count(m.down.script), 0);
    ck_assert_uint_eq(m.verify.line, 0);
    ck_assert_ptr_null(m.verify.script);
    sg_migration_clear(&m);

    ck_assert_int_eq(
        sg_migration_parse(&m, "p", "7_idx-2.sql", statements, strlen(statements), &err), 0);
    ck_assert_int_eq(m.version, 7);
    ck_assert_str_eq(m.name, "idx-2");
    ck_assert_int_eq(m.mode, SG_MIGRATION_STATEMENTS);
    ck_assert_str_eq(sg_migration_mode_name(m.mode), "statements");
    ck_assert_uint_eq(m.verify.line, 2);
    ck_assert_uint_eq(sg_sql_script_count(m.verify.script), 0);
    ck_assert_uint_eq(m.up.line, 3);
    ck_assert_uint_eq(sg_sql_script_count(m.up.script), 2);
    assert_stmt(&m.up, 1, "CREATE INDEX CONCURRENTLY j ON t (id)", 5, 1);
    ck_assert_ptr_null(m.down.script);
    sg_migration_clear(&m);
}
END_TEST

/* Parses text as file expecting an error; the output must stay untouched. */
static const char *parse_fails(const char *file, const char *text, size_t len, int code)
{
    static sg_error err;
    sg_migration m = {0};
    memset(&err, 0, sizeof(err));
    ck_assert_int_eq(sg_migration_parse(&m, file, file, text, len, &err), code);
    ck_assert_int_eq(err.code, code);
    ck_assert_ptr_null(m.file);
    ck_assert_ptr_null(m.name);
    ck_assert_ptr_null(m.up.script);
    return err.message;
}

#define FAILS(text) parse_fails("0001_x.sql", text, strlen(text), SG_E_FORMAT)

START_TEST(test_bad_file_names)
{
    static const char *const names[] = {
        "add_orders.sql",
        "0001.sql",
        "0001_.sql",
        "0001-add.sql",
        "1234567890123456789_x.sql",
        "0001_x.SQL",
        "0001_x.sql.bak",
        "_x.sql",
        "0001_x",
    };
    static const char text[] = "-- shardgate:up\nSELECT 1;\n";
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char expected[128];
        sg_error err = {0};
        sg_migration m = {0};
        snprintf(expected, sizeof(expected), "migration file name \"%s\" is not NNNN_name.sql",
                 names[i]);
        ck_assert_int_eq(sg_migration_parse(&m, names[i], names[i], text, strlen(text), &err),
                         SG_E_FORMAT);
        ck_assert_str_eq(err.message, expected);
        ck_assert_str_eq(err.hint, "the number is the version; files run in order of version");
    }
    ck_assert_str_eq(
        parse_fails("0001_add orders.sql", "", 0, SG_E_FORMAT),
        "migration file name \"0001_add orders.sql\" has a character other than letters, digits, "
        "'_' and '-' in its name");
    ck_assert_str_eq(parse_fails("0001_add.orders.sql", "", 0, SG_E_FORMAT),
                     "migration file name \"0001_add.orders.sql\" has a character other than "
                     "letters, digits, '_' and '-' in its name");
}
END_TEST

START_TEST(test_bad_directives)
{
    ck_assert_str_eq(FAILS("-- note\n-- shardgate:irreversible frobnicate\n-- shardgate:up\n"),
                     "0001_x.sql:2: unknown directive \"frobnicate\"");
    ck_assert_str_eq(FAILS("-- shardgate:lock_timeout\n-- shardgate:up\n"),
                     "0001_x.sql:1: unknown directive \"lock_timeout\"");
    ck_assert_str_eq(FAILS("-- shardgate:colour=blue\n-- shardgate:up\n"),
                     "0001_x.sql:1: unknown directive \"colour=blue\"");
    /* a word that starts like allow is not an allow line */
    ck_assert_str_eq(FAILS("-- shardgate:allowance\n-- shardgate:up\n"),
                     "0001_x.sql:1: unknown directive \"allowance\"");
    ck_assert_str_eq(FAILS("-- shardgate:   \n-- shardgate:up\n"),
                     "0001_x.sql:1: empty shardgate line");
    ck_assert_str_eq(FAILS("\n-- shardgate:transaction=maybe\n-- shardgate:up\n"),
                     "0001_x.sql:2: transaction must be on or off, not \"maybe\"");
    ck_assert_str_eq(FAILS("-- shardgate:mode=fast\n-- shardgate:up\n"),
                     "0001_x.sql:1: mode must be transactional or bluegreen, not \"fast\"");
}
END_TEST

START_TEST(test_bad_durations)
{
    ck_assert_str_eq(FAILS("-- shardgate:lock_timeout=2x\n-- shardgate:up\n"),
                     "0001_x.sql:1: invalid duration \"2x\"");
    ck_assert_str_eq(FAILS("-- shardgate:lock_timeout=1s statement_timeout=\n-- shardgate:up\n"),
                     "0001_x.sql:1: invalid duration \"\"");
    /* more than 2^31 - 1 ms, PostgreSQL's limit for both settings */
    ck_assert_str_eq(FAILS("-- shardgate:statement_timeout=25d\n-- shardgate:up\n"),
                     "0001_x.sql:1: invalid duration \"25d\"");
    ck_assert_str_eq(FAILS("-- shardgate:statement_timeout=-1s\n-- shardgate:up\n"),
                     "0001_x.sql:1: invalid duration \"-1s\"");
}
END_TEST

START_TEST(test_bad_bluegreen)
{
    ck_assert_str_eq(FAILS("-- shardgate:mode=bluegreen table=orders\n-- shardgate:up\n"),
                     "0001_x.sql:1: table must be SCHEMA.TABLE, not \"orders\"");
    ck_assert_str_eq(FAILS("-- shardgate:mode=bluegreen table=.orders\n-- shardgate:up\n"),
                     "0001_x.sql:1: table must be SCHEMA.TABLE, not \".orders\"");
    ck_assert_str_eq(FAILS("-- shardgate:mode=bluegreen table=public.\n-- shardgate:up\n"),
                     "0001_x.sql:1: table must be SCHEMA.TABLE, not \"public.\"");
    ck_assert_str_eq(FAILS("-- shardgate:mode=bluegreen\n-- shardgate:up\nSELECT 1;\n"),
                     "0001_x.sql: mode=bluegreen needs table=SCHEMA.TABLE");
    ck_assert_str_eq(FAILS("-- shardgate:table=public.orders\n-- shardgate:up\nSELECT 1;\n"),
                     "0001_x.sql: table= is only for mode=bluegreen");
    ck_assert_str_eq(FAILS("-- shardgate:mode=bluegreen table=s.t\n-- shardgate:transaction=off\n"
                           "-- shardgate:up\n"),
                     "0001_x.sql:2: transaction=off: mode=bluegreen runs its own steps");
    ck_assert_str_eq(
        FAILS("-- shardgate:transaction=off\n-- shardgate:table=s.t mode=bluegreen\n"
              "-- shardgate:up\n"),
        "0001_x.sql:2: mode=bluegreen: transaction=off and mode=bluegreen exclude each other");
}
END_TEST

START_TEST(test_bad_sections)
{
    ck_assert_str_eq(FAILS("-- shardgate:irreversible\nSELECT 1;\n-- shardgate:up\n"),
                     "0001_x.sql:2: SQL before the first section (-- shardgate:up)");
    ck_assert_str_eq(FAILS("-- shardgate:up\nSELECT 1;\n  -- shardgate:destructive\n"),
                     "0001_x.sql:3: \"destructive\": directives go before the first section");
    ck_assert_str_eq(FAILS("-- shardgate:up\nSELECT 1;\n-- shardgate:allowance x\n"),
                     "0001_x.sql:3: \"allowance x\": directives go before the first section");
    ck_assert_str_eq(FAILS("-- shardgate:down\nSELECT 1;\n-- shardgate:up2\n"),
                     "0001_x.sql:3: \"up2\": directives go before the first section");
    ck_assert_str_eq(FAILS("-- shardgate:down\nSELECT 1;\n"),
                     "0001_x.sql: no \"-- shardgate:up\" section");
    ck_assert_str_eq(FAILS(""), "0001_x.sql: no \"-- shardgate:up\" section");

    sg_error err = {0};
    sg_migration m = {0};
    static const char twice[] = "-- shardgate:up\nSELECT 1;\n-- shardgate:down\n-- shardgate:up\n";
    ck_assert_int_eq(sg_migration_parse(&m, "p", "0001_x.sql", twice, strlen(twice), &err),
                     SG_E_FORMAT);
    ck_assert_str_eq(err.message, "0001_x.sql:4: second up section");
    ck_assert_str_eq(err.detail, "the first is at line 1");
}
END_TEST

START_TEST(test_bad_text)
{
    static const char nul[] = "-- shardgate:up\nSELECT 1;\0\n";
    ck_assert_str_eq(parse_fails("0001_x.sql", nul, sizeof(nul) - 1, SG_E_FORMAT),
                     "0001_x.sql:2: not a text file (it holds a NUL byte)");
    /* positions are the file's, after the marker line and an empty one */
    ck_assert_str_eq(FAILS("-- shardgate:up\nSELECT 1;\n-- shardgate:down\n\n  DROP TABLE;\n"),
                     "0001_x.sql:5:13: syntax error at or near \";\"");
    ck_assert_str_eq(FAILS("-- shardgate:up\nSELECT $$ unterminated;\n"),
                     "0001_x.sql:2:8: unterminated dollar-quoted string at or near \"$$ "
                     "unterminated;\n\"");
}
END_TEST

/* Every allocation in turn fails: each run fails cleanly with SG_E_NOMEM
 * (the sanitizer reports any leak) until there are enough to succeed. */
START_TEST(test_parse_allocation_failure)
{
    sg_migration m = {0};
    long n;
    int rc;
    for (n = 0;; n++) {
        sg_error err = {0};
        sg_mem_fail_after(n);
        rc = sg_migration_parse(&m, "dir/0042_order_notes.sql", "0042_order_notes.sql", complete,
                                strlen(complete), &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_msg(rc == SG_E_NOMEM, "%ld allocations: %d %s", n, rc, err.message);
        ck_assert_ptr_null(m.file);
    }
    ck_assert_int_gt(n, 20);
    ck_assert_uint_eq(sg_sql_script_count(m.verify.script), 2);
    sg_migration_clear(&m);
}
END_TEST

static char dir[64];

static void make_dir(void)
{
    strcpy(dir, "/tmp/sg-test-migration-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
    sgt_remove_tree(dir);
}

static char *path_of(const char *name)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(path_of(name), "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static const char up[] = "-- shardgate:up\nSELECT 1;\n";

/* Loads path expecting an error: no set is returned. */
static void load_fails(const char *path, int code, sg_error *err)
{
    sg_migration_set *set = (sg_migration_set *)err; /* any non-NULL: must come back NULL */
    ck_assert_int_eq(sg_migration_set_load(&set, path, err), code);
    ck_assert_int_eq(err->code, code);
    ck_assert_ptr_null(set);
}

START_TEST(test_load_sorted)
{
    sg_migration_set *set = NULL;
    sg_error err = {0};
    write_file("0010_ten.sql", up);
    write_file("2_two.sql", "-- shardgate:up\nSELECT 2;\nSELECT 2;\n");
    write_file("0001_one.sql", up);
    write_file("README.md", "not a migration\n");
    write_file(".hidden.sql", "not even SQL");
    write_file("0003_three.sql.orig", "not even SQL");
    write_file("0005_upper.SQL", "not even SQL"); /* only .sql, as the names are read */
    ck_assert_int_eq(mkdir(path_of("0004_dir"), 0700), 0);
    ck_assert_int_eq(sg_migration_set_load(&set, dir, &err), 0);
    ck_assert_str_eq(set->dir, dir);
    ck_assert_uint_eq(set->count, 3);
    ck_assert_int_eq(set->items[0].version, 1);
    ck_assert_int_eq(set->items[1].version, 2);
    ck_assert_int_eq(set->items[2].version, 10);
    ck_assert_str_eq(set->items[0].name, "one");
    ck_assert_str_eq(set->items[1].file, "2_two.sql");
    ck_assert_str_eq(set->items[2].path, path_of("0010_ten.sql"));

    ck_assert_ptr_eq(sg_migration_set_find(set, 2), &set->items[1]);
    ck_assert_uint_eq(sg_sql_script_count(sg_migration_set_find(set, 2)->up.script), 2);
    ck_assert_ptr_eq(sg_migration_set_find(set, 1), &set->items[0]);
    ck_assert_ptr_eq(sg_migration_set_find(set, 10), &set->items[2]);
    ck_assert_ptr_null(sg_migration_set_find(set, 0));
    ck_assert_ptr_null(sg_migration_set_find(set, 3));
    ck_assert_ptr_null(sg_migration_set_find(set, 11));
    ck_assert_ptr_null(sg_migration_set_find(set, -1));
    sg_migration_set_free(set);
    sg_migration_set_free(NULL);
}
END_TEST

START_TEST(test_load_empty)
{
    sg_migration_set *set = NULL;
    sg_error err = {0};
    ck_assert_int_eq(sg_migration_set_load(&set, dir, &err), 0);
    ck_assert_uint_eq(set->count, 0);
    ck_assert_ptr_null(sg_migration_set_find(set, 1));
    sg_migration_set_free(set);
}
END_TEST

START_TEST(test_load_duplicate_version)
{
    sg_error err = {0};
    write_file("3_b.sql", up);
    write_file("0003_a.sql", up);
    write_file("0002_c.sql", up);
    load_fails(dir, SG_E_FORMAT, &err);
    ck_assert_str_eq(err.message, "two migrations have version 3: 0003_a.sql and 3_b.sql");
}
END_TEST

START_TEST(test_load_missing_dir)
{
    sg_error err = {0};
    char expected[160];
    load_fails(path_of("missing"), SG_E_NOT_FOUND, &err);
    snprintf(expected, sizeof(expected),
             "cannot read migrations directory %s: No such file or directory", path_of("missing"));
    ck_assert_str_eq(err.message, expected);
}
END_TEST

START_TEST(test_load_not_a_dir)
{
    sg_error err = {0};
    char expected[160];
    write_file("0001_x.sql", up);
    load_fails(path_of("0001_x.sql"), SG_E_IO, &err);
    snprintf(expected, sizeof(expected), "cannot read migrations directory %s: Not a directory",
             path_of("0001_x.sql"));
    ck_assert_str_eq(err.message, expected);
}
END_TEST

START_TEST(test_load_unreadable)
{
    sg_error err = {0};
    char expected[160];
    if (geteuid() == 0)
        return; /* root reads a mode 000 file */
    write_file("0001_x.sql", up);
    ck_assert_int_eq(chmod(path_of("0001_x.sql"), 0), 0);
    load_fails(dir, SG_E_IO, &err);
    snprintf(expected, sizeof(expected), "cannot read %s: Permission denied",
             path_of("0001_x.sql"));
    ck_assert_str_eq(err.message, expected);
}
END_TEST

/* A directory named like a migration is a mistake, not something to skip. */
START_TEST(test_load_sql_directory)
{
    sg_error err = {0};
    char expected[160];
    write_file("0001_x.sql", up);
    ck_assert_int_eq(mkdir(path_of("x.sql"), 0700), 0);
    load_fails(dir, SG_E_IO, &err);
    snprintf(expected, sizeof(expected), "cannot read %s: not a regular file", path_of("x.sql"));
    ck_assert_str_eq(err.message, expected);
}
END_TEST

START_TEST(test_load_bad_files)
{
    sg_error err = {0};
    char expected[160];
    int fd;
    write_file("0001_x.sql", up);
    write_file("notes.sql", up);
    load_fails(dir, SG_E_FORMAT, &err);
    ck_assert_str_eq(err.message, "migration file name \"notes.sql\" is not NNNN_name.sql");
    ck_assert_int_eq(unlink(path_of("notes.sql")), 0);

    write_file("0002_y.sql", "-- shardgate:up\nSELEC 1;\n");
    load_fails(dir, SG_E_FORMAT, &err);
    ck_assert_str_eq(err.message, "0002_y.sql:2:1: syntax error at or near \"SELEC\"");
    ck_assert_int_eq(unlink(path_of("0002_y.sql")), 0);

    /* sparse: nothing is written, the size alone is too large */
    ck_assert_int_ge(fd = open(path_of("0003_z.sql"), O_CREAT | O_WRONLY, 0644), 0);
    ck_assert_int_eq(ftruncate(fd, SG_MIGRATION_MAX_FILE + 1), 0);
    ck_assert_int_eq(close(fd), 0);
    load_fails(dir, SG_E_FORMAT, &err);
    snprintf(expected, sizeof(expected), "%s is too large (%u bytes, at most %u)",
             path_of("0003_z.sql"), SG_MIGRATION_MAX_FILE + 1, SG_MIGRATION_MAX_FILE);
    ck_assert_str_eq(err.message, expected);
}
END_TEST

START_TEST(test_load_allocation_failure)
{
    sg_migration_set *set = NULL;
    long n;
    int rc;
    write_file("0010_ten.sql", complete);
    write_file("2_two.sql", up);
    write_file("0001_one.sql", up);
    write_file("README.md", "not a migration\n");
    for (n = 0;; n++) {
        sg_error err = {0};
        sg_mem_fail_after(n);
        rc = sg_migration_set_load(&set, dir, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_msg(rc == SG_E_NOMEM, "%ld allocations: %d %s", n, rc, err.message);
        ck_assert_ptr_null(set);
    }
    ck_assert_int_gt(n, 40);
    ck_assert_uint_eq(set->count, 3);
    ck_assert_str_eq(set->items[2].bluegreen_table, "public.orders");
    sg_migration_set_free(set);
}
END_TEST

static Suite *migration_suite(void)
{
    Suite *suite = suite_create("migration");
    struct {
        const char *name;
        const TTest *test;
        bool dir;
    } cases[] = {
        {"parse_complete", test_parse_complete, false},
        {"parse_defaults", test_parse_defaults, false},
        {"bad_file_names", test_bad_file_names, false},
        {"bad_directives", test_bad_directives, false},
        {"bad_durations", test_bad_durations, false},
        {"bad_bluegreen", test_bad_bluegreen, false},
        {"bad_sections", test_bad_sections, false},
        {"bad_text", test_bad_text, false},
        {"parse_allocation_failure", test_parse_allocation_failure, false},
        {"load_sorted", test_load_sorted, true},
        {"load_empty", test_load_empty, true},
        {"load_duplicate_version", test_load_duplicate_version, true},
        {"load_missing_dir", test_load_missing_dir, true},
        {"load_not_a_dir", test_load_not_a_dir, true},
        {"load_unreadable", test_load_unreadable, true},
        {"load_sql_directory", test_load_sql_directory, true},
        {"load_bad_files", test_load_bad_files, true},
        {"load_allocation_failure", test_load_allocation_failure, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        if (cases[i].dir)
            tcase_add_checked_fixture(tc, make_dir, remove_dir);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(suite, tc);
    }
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(migration_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
