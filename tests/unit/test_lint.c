#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "stages/lint.h"
#include "stages/migration.h"
#include "tests/harness/run.h"

/* A file with an up section and a harmless down section, so that only the
 * up statements give findings. The up SQL starts at line 2. */
#define UP(sql) "-- shardgate:up\n" sql "-- shardgate:down\nSELECT 1;\n"

/* A migration set parsed in memory, and what lint found in it (findings
 * point into the set, so they go together). */
typedef struct linted {
    sg_migration_set *set;
    sg_lint_result res;
} linted;

static sg_migration_set *make_set(const char *const *texts, size_t n)
{
    sg_migration_set *set = sg_calloc(1, sizeof(*set));
    ck_assert_ptr_nonnull(set);
    set->items = sg_calloc(n, sizeof(*set->items));
    ck_assert_ptr_nonnull(set->items);
    for (size_t i = 0; i < n; i++) {
        char file[64], path[96];
        sg_error err = {0};
        snprintf(file, sizeof(file), "%04zu_step%zu.sql", i + 1, i + 1);
        snprintf(path, sizeof(path), "db/%s", file);
        int rc = sg_migration_parse(&set->items[i], path, file, texts[i], strlen(texts[i]), &err);
        ck_assert_msg(rc == 0, "%s: %s", file, err.message);
        set->count++;
    }
    return set;
}

static void lint_texts(linted *out, const char *const *texts, size_t n)
{
    sg_error err = {0};
    out->set = make_set(texts, n);
    ck_assert_int_eq(sg_lint_set(&out->res, out->set, &err), 0);
}

#define LINT(out, ...)                                                                             \
    lint_texts(out, (const char *const[]){__VA_ARGS__},                                            \
               sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static void linted_free(linted *l)
{
    sg_lint_result_clear(&l->res);
    sg_migration_set_free(l->set);
}

static size_t count(const linted *l, const char *rule)
{
    size_t n = 0;
    for (size_t i = 0; i < l->res.count; i++)
        n += strcmp(l->res.items[i].rule->id, rule) == 0;
    return n;
}

/* The nth finding of rule (0-based); fails the test when there is none. */
static const sg_lint_finding *nth(const linted *l, const char *rule, size_t n)
{
    for (size_t i = 0; i < l->res.count; i++)
        if (strcmp(l->res.items[i].rule->id, rule) == 0 && n-- == 0)
            return &l->res.items[i];
    ck_abort_msg("no finding %s", rule);
    return NULL;
}

static void assert_contains(const char *haystack, const char *needle)
{
    ck_assert_msg(strstr(haystack, needle) != NULL, "\"%s\" does not contain \"%s\"", haystack,
                  needle);
}

/* Every finding, one per line, to make a failing assertion readable. */
static char *dump(const linted *l)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    sg_lint_print(out, &l->res, SG_LINT_GCC, NULL);
    fclose(out);
    return text;
}

static void assert_clean(const linted *l)
{
    char *text = dump(l);
    ck_assert_msg(l->res.count == 0, "expected no finding, got:\n%s", text);
    free(text);
}

static void assert_only(const linted *l, const char *rule, size_t n)
{
    char *text = dump(l);
    ck_assert_msg(l->res.count == n && count(l, rule) == n, "expected %zu %s, got:\n%s", n, rule,
                  text);
    free(text);
}

static void assert_at(const sg_lint_finding *f, unsigned line, unsigned column)
{
    ck_assert_msg(f->line == line && f->column == column, "%s at %u:%u, expected %u:%u",
                  f->rule->id, f->line, f->column, line, column);
}

START_TEST(test_rule_table)
{
    ck_assert_uint_ge(sg_lint_rule_count, 18);
    for (size_t i = 0; i < sg_lint_rule_count; i++) {
        const sg_lint_rule *r = &sg_lint_rules[i];
        ck_assert_ptr_eq(sg_lint_rule_find(r->id), r);
        ck_assert_uint_gt(strlen(r->summary), 0);
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(sg_lint_rules[j].id, r->id);
    }
    ck_assert_ptr_null(sg_lint_rule_find("no-such-rule"));
    ck_assert_int_eq(sg_lint_rule_find("data-change")->severity, SG_LINT_WARNING);
    ck_assert_int_eq(sg_lint_rule_find("index-not-concurrent")->severity, SG_LINT_ERROR);
}
END_TEST

START_TEST(test_index_not_concurrent)
{
    linted bad, safe, created;
    LINT(&bad, UP("CREATE INDEX orders_created ON orders (created_at);\n"
                  "CREATE UNIQUE INDEX ON app.orders (reference);\n"));
    assert_only(&bad, "index-not-concurrent", 2);
    assert_contains(nth(&bad, "index-not-concurrent", 0)->message, "orders_created on orders");
    assert_contains(nth(&bad, "index-not-concurrent", 1)->message, "app.orders");
    assert_contains(nth(&bad, "index-not-concurrent", 0)->hint, "CONCURRENTLY");
    ck_assert_uint_eq(bad.res.errors, 2);
    ck_assert_uint_eq(bad.res.warnings, 0);
    LINT(&safe, "-- shardgate:transaction=off\n" UP(
                    "CREATE INDEX CONCURRENTLY orders_created ON orders (created_at);\n"));
    assert_clean(&safe);
    /* a table created earlier in the same file is empty: nothing to wait for */
    LINT(&created, UP("CREATE TABLE refunds (id int, order_id int);\n"
                      "CREATE INDEX refunds_order ON public.refunds (order_id);\n"));
    assert_clean(&created);
    linted_free(&bad);
    linted_free(&safe);
    linted_free(&created);
}
END_TEST

#define CONCURRENT_SQL                                                                             \
    "CREATE INDEX CONCURRENTLY orders_created ON orders (created_at);\n"                           \
    "DROP INDEX CONCURRENTLY orders_old;\n"                                                        \
    "REINDEX INDEX CONCURRENTLY orders_created;\n"                                                 \
    "ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY;\n"

START_TEST(test_concurrently_in_transaction)
{
    linted bad, safe;
    LINT(&bad, UP(CONCURRENT_SQL));
    assert_only(&bad, "concurrently-in-transaction", 4);
    assert_contains(nth(&bad, "concurrently-in-transaction", 0)->message,
                    "CREATE INDEX CONCURRENTLY orders_created on orders");
    assert_contains(nth(&bad, "concurrently-in-transaction", 1)->message, "orders_old");
    assert_contains(nth(&bad, "concurrently-in-transaction", 2)->message,
                    "REINDEX CONCURRENTLY orders_created");
    assert_contains(nth(&bad, "concurrently-in-transaction", 3)->message, "events_2020");
    ck_assert_str_eq(nth(&bad, "concurrently-in-transaction", 0)->hint,
                     "add -- shardgate:transaction=off to the file's header");
    LINT(&safe, "-- shardgate:transaction=off\n" UP(CONCURRENT_SQL));
    assert_clean(&safe);
    linted_free(&bad);
    linted_free(&safe);
}
END_TEST

START_TEST(test_constraint_not_valid)
{
    linted bad, safe, created;
    LINT(&bad, UP("ALTER TABLE orders ADD CONSTRAINT orders_customer_fk\n"
                  "    FOREIGN KEY (customer_id) REFERENCES customers (id);\n"
                  "ALTER TABLE orders ADD CHECK (total >= 0);\n"
                  "ALTER TABLE orders ADD COLUMN shop_id int REFERENCES shops (id);\n"));
    assert_only(&bad, "constraint-not-valid", 3);
    assert_contains(nth(&bad, "constraint-not-valid", 0)->message,
                    "foreign key orders_customer_fk to existing table orders");
    assert_contains(nth(&bad, "constraint-not-valid", 0)->hint, "NOT VALID");
    assert_contains(nth(&bad, "constraint-not-valid", 0)->hint, "VALIDATE CONSTRAINT");
    assert_contains(nth(&bad, "constraint-not-valid", 1)->message, "check to existing table");
    assert_contains(nth(&bad, "constraint-not-valid", 2)->hint, "add the column first");
    /* at the constraint, not at the statement */
    assert_at(nth(&bad, "constraint-not-valid", 0), 2, 24);
    LINT(&safe, UP("ALTER TABLE orders ADD CONSTRAINT orders_customer_fk\n"
                   "    FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;\n"
                   "ALTER TABLE orders ADD CHECK (total >= 0) NOT VALID;\n"
                   "ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk;\n"));
    assert_clean(&safe);
    LINT(&created, UP("CREATE TABLE refunds (id int, order_id int);\n"
                      "ALTER TABLE refunds ADD FOREIGN KEY (order_id) REFERENCES orders (id);\n"));
    assert_clean(&created);
    linted_free(&bad);
    linted_free(&safe);
    linted_free(&created);
}
END_TEST

START_TEST(test_set_not_null)
{
    linted bad, safe, unnamed, pending, same_statement;
    LINT(&bad, UP("ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"));
    assert_only(&bad, "set-not-null", 1);
    assert_contains(nth(&bad, "set-not-null", 0)->message, "column customer_id of table orders");
    assert_contains(nth(&bad, "set-not-null", 0)->hint,
                    "CHECK (customer_id IS NOT NULL) NOT VALID");
    assert_contains(nth(&bad, "set-not-null", 0)->hint, "PostgreSQL 12");
    LINT(&safe, UP("ALTER TABLE orders ADD CONSTRAINT orders_customer_present\n"
                   "    CHECK (customer_id IS NOT NULL AND total >= 0) NOT VALID;\n"
                   "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_present;\n"
                   "ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"));
    assert_clean(&safe);
    /* an unnamed check gets PostgreSQL's name for it, TABLE_COLUMN_check */
    LINT(&unnamed, UP("ALTER TABLE orders ADD CHECK (customer_id IS NOT NULL) NOT VALID;\n"
                      "ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_check;\n"
                      "ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"));
    assert_clean(&unnamed);
    /* NOT VALID and never validated proves nothing; nor does a check on
     * another column or table */
    LINT(&pending, UP("ALTER TABLE orders ADD CONSTRAINT orders_customer_present\n"
                      "    CHECK (customer_id IS NOT NULL) NOT VALID;\n"
                      "ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"
                      "ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_present;\n"
                      "ALTER TABLE orders ALTER COLUMN total SET NOT NULL;\n"
                      "ALTER TABLE app.orders ALTER COLUMN customer_id SET NOT NULL;\n"));
    assert_only(&pending, "set-not-null", 3);
    assert_at(nth(&pending, "set-not-null", 0), 4, 1);
    assert_contains(nth(&pending, "set-not-null", 1)->message, "column total");
    assert_contains(nth(&pending, "set-not-null", 2)->message, "table app.orders");
    /* a check added in the same ALTER TABLE does not spare the scan */
    LINT(&same_statement,
         UP("ALTER TABLE orders ADD CONSTRAINT c CHECK (customer_id IS NOT NULL) NOT VALID,\n"
            "    VALIDATE CONSTRAINT c, ALTER COLUMN customer_id SET NOT NULL;\n"));
    assert_only(&same_statement, "set-not-null", 1);
    linted_free(&bad);
    linted_free(&safe);
    linted_free(&unnamed);
    linted_free(&pending);
    linted_free(&same_statement);
}
END_TEST

/* What one file proves carries over to the files after it, not before. */
START_TEST(test_knowledge_across_files)
{
    linted validated, later, never, earlier;
    LINT(&validated,
         UP("ALTER TABLE orders ADD CONSTRAINT present CHECK (customer_id IS NOT NULL) NOT VALID;\n"
            "ALTER TABLE orders VALIDATE CONSTRAINT present;\n"),
         UP("ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"));
    assert_clean(&validated);
    LINT(&later,
         UP("ALTER TABLE orders ADD CONSTRAINT present CHECK (customer_id IS NOT NULL) NOT "
            "VALID;\n"),
         UP("ALTER TABLE orders VALIDATE CONSTRAINT present;\n"),
         UP("ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"));
    assert_clean(&later);
    LINT(&never,
         UP("ALTER TABLE orders ADD CONSTRAINT present CHECK (customer_id IS NOT NULL) NOT "
            "VALID;\n"),
         UP("ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"));
    assert_only(&never, "set-not-null", 1);
    ck_assert_int_eq(nth(&never, "set-not-null", 0)->version, 2);
    ck_assert_str_eq(nth(&never, "set-not-null", 0)->file, "db/0002_step2.sql");
    LINT(&earlier, UP("ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"),
         UP("ALTER TABLE orders ADD CONSTRAINT present CHECK (customer_id IS NOT NULL) NOT VALID;\n"
            "ALTER TABLE orders VALIDATE CONSTRAINT present;\n"));
    assert_only(&earlier, "set-not-null", 1);
    ck_assert_int_eq(nth(&earlier, "set-not-null", 0)->version, 1);
    linted_free(&validated);
    linted_free(&later);
    linted_free(&never);
    linted_free(&earlier);
}
END_TEST

#define REWRITE_SQL                                                                                \
    "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12, 2);\n"                                 \
    "ALTER TABLE orders SET LOGGED;\n"                                                             \
    "ALTER TABLE orders SET UNLOGGED;\n"                                                           \
    "ALTER TABLE orders SET TABLESPACE fast;\n"                                                    \
    "ALTER TABLE orders SET ACCESS METHOD heap2;\n"                                                \
    "ALTER TABLE orders ADD COLUMN total2 numeric\n"                                               \
    "    GENERATED ALWAYS AS (total * 2) STORED;\n"                                                \
    "ALTER TABLE orders ADD COLUMN seq int GENERATED ALWAYS AS IDENTITY;\n"

START_TEST(test_table_rewrite)
{
    linted bad, bluegreen, created;
    LINT(&bad, UP(REWRITE_SQL));
    assert_only(&bad, "table-rewrite", 7);
    assert_contains(nth(&bad, "table-rewrite", 0)->message, "type of column total");
    assert_contains(nth(&bad, "table-rewrite", 0)->message, "table orders");
    assert_at(nth(&bad, "table-rewrite", 0), 2, 33);
    assert_contains(nth(&bad, "table-rewrite", 1)->message, "SET LOGGED");
    assert_contains(nth(&bad, "table-rewrite", 2)->message, "SET UNLOGGED");
    assert_contains(nth(&bad, "table-rewrite", 3)->message, "SET TABLESPACE");
    assert_contains(nth(&bad, "table-rewrite", 4)->message, "SET ACCESS METHOD");
    assert_contains(nth(&bad, "table-rewrite", 5)->message, "generated column total2");
    assert_contains(nth(&bad, "table-rewrite", 6)->message, "identity column seq");
    assert_contains(nth(&bad, "table-rewrite", 0)->hint,
                    "-- shardgate:mode=bluegreen table=public.orders");
    /* rebuilding the table is what a blue-green file does (what has no place
     * in a rebuild is the bluegreen rule's) */
    LINT(&bluegreen, "-- shardgate:mode=bluegreen table=public.orders\n" UP(REWRITE_SQL));
    ck_assert_uint_eq(count(&bluegreen, "table-rewrite"), 0);
    LINT(&created, UP("CREATE TABLE refunds (id int, total int);\n"
                      "ALTER TABLE refunds ALTER COLUMN total TYPE bigint;\n"));
    assert_clean(&created);
    linted_free(&bad);
    linted_free(&bluegreen);
    linted_free(&created);
}
END_TEST

START_TEST(test_volatile_default)
{
    linted bad, unknown, safe;
    LINT(&bad, UP("ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
                  "ALTER TABLE orders ADD COLUMN at timestamptz DEFAULT clock_timestamp();\n"
                  "ALTER TABLE orders ADD COLUMN n bigint DEFAULT nextval('orders_n');\n"
                  "ALTER TABLE orders ADD COLUMN r int DEFAULT (random() * 10)::int;\n"
                  "ALTER TABLE orders ADD COLUMN u uuid DEFAULT ext.uuid_generate_v4();\n"
                  "ALTER TABLE orders ADD COLUMN s bigserial;\n"));
    assert_only(&bad, "volatile-default", 6);
    ck_assert_uint_eq(bad.res.errors, 6);
    assert_contains(nth(&bad, "volatile-default", 0)->message,
                    "default gen_random_uuid() of new column token is volatile");
    assert_contains(nth(&bad, "volatile-default", 0)->message, "rewrites table orders");
    assert_at(nth(&bad, "volatile-default", 0), 2, 50);
    assert_contains(nth(&bad, "volatile-default", 3)->message, "random()");
    assert_contains(nth(&bad, "volatile-default", 5)->message, "column s is bigserial");
    /* functions lint cannot classify are a warning: most user functions are
     * volatile (the default), but lint cannot read the catalog */
    LINT(&unknown, UP("ALTER TABLE orders ADD COLUMN code text DEFAULT make_code();\n"
                      "ALTER TABLE orders ADD COLUMN at timestamptz DEFAULT app.now();\n"));
    assert_only(&unknown, "volatile-default", 2);
    ck_assert_int_eq(nth(&unknown, "volatile-default", 0)->severity, SG_LINT_WARNING);
    ck_assert_uint_eq(unknown.res.warnings, 2);
    ck_assert_uint_eq(unknown.res.errors, 0);
    assert_contains(nth(&unknown, "volatile-default", 0)->message,
                    "calls make_code(), which lint cannot prove stable");
    /* constants and stable functions are stored once in the catalog (11+) */
    LINT(&safe, UP("ALTER TABLE orders ADD COLUMN a timestamptz DEFAULT now();\n"
                   "ALTER TABLE orders ADD COLUMN b timestamptz DEFAULT current_timestamp;\n"
                   "ALTER TABLE orders ADD COLUMN c text NOT NULL DEFAULT 'none';\n"
                   "ALTER TABLE orders ADD COLUMN d int DEFAULT 0;\n"
                   "ALTER TABLE orders ADD COLUMN e timestamptz DEFAULT pg_catalog.now();\n"
                   "ALTER TABLE orders ADD COLUMN f jsonb DEFAULT jsonb_build_object('a', 1);\n"
                   "ALTER TABLE orders ADD COLUMN g uuid;\n"
                   "CREATE TABLE refunds (id uuid DEFAULT gen_random_uuid());\n"
                   "ALTER TABLE refunds ADD COLUMN n bigserial;\n"));
    assert_clean(&safe);
    linted_free(&bad);
    linted_free(&unknown);
    linted_free(&safe);
}
END_TEST

#define DESTRUCTIVE_SQL                                                                            \
    "DROP TABLE old_orders, app.old_refunds;\n"                                                    \
    "ALTER TABLE orders DROP COLUMN legacy;\n"                                                     \
    "ALTER TABLE orders RENAME TO purchases;\n"                                                    \
    "ALTER TABLE orders RENAME COLUMN total TO amount;\n"                                          \
    "DROP SCHEMA archive CASCADE;\n"                                                               \
    "ALTER TABLE orders SET SCHEMA app;\n"

START_TEST(test_destructive)
{
    linted bad, declared, down, created;
    LINT(&bad, UP(DESTRUCTIVE_SQL));
    assert_only(&bad, "destructive", 7);
    assert_contains(nth(&bad, "destructive", 0)->message, "DROP TABLE old_orders");
    assert_contains(nth(&bad, "destructive", 1)->message, "DROP TABLE app.old_refunds");
    assert_contains(nth(&bad, "destructive", 2)->message, "DROP COLUMN legacy of table orders");
    assert_contains(nth(&bad, "destructive", 3)->message, "renaming orders to purchases");
    assert_contains(nth(&bad, "destructive", 4)->message,
                    "renaming column total of orders to amount");
    assert_contains(nth(&bad, "destructive", 5)->message, "DROP SCHEMA archive");
    assert_contains(nth(&bad, "destructive", 5)->message, "CASCADE");
    assert_contains(nth(&bad, "destructive", 6)->message, "moving table orders to schema app");
    assert_contains(nth(&bad, "destructive", 0)->hint, "-- shardgate:destructive");
    LINT(&declared, "-- shardgate:destructive\n" UP(DESTRUCTIVE_SQL));
    assert_clean(&declared);
    /* a down section undoes its up section, so it drops by nature */
    LINT(&down, "-- shardgate:up\nCREATE TABLE refunds (id int);\n-- shardgate:down\n"
                "DROP TABLE refunds;\nALTER TABLE orders DROP COLUMN refund_id;\n");
    assert_clean(&down);
    LINT(&created, UP("CREATE TABLE scratch (id int);\nALTER TABLE scratch RENAME TO scratch2;\n"
                      "CREATE TABLE scratch3 (id int);\nDROP TABLE scratch3;\n"));
    assert_clean(&created);
    linted_free(&bad);
    linted_free(&declared);
    linted_free(&down);
    linted_free(&created);
}
END_TEST

START_TEST(test_unique_without_index)
{
    linted bad, safe;
    LINT(&bad, UP("ALTER TABLE orders ADD CONSTRAINT orders_reference_key UNIQUE (reference);\n"
                  "ALTER TABLE orders ADD PRIMARY KEY (id);\n"
                  "ALTER TABLE orders ADD COLUMN code text UNIQUE;\n"));
    assert_only(&bad, "unique-without-index", 3);
    assert_contains(nth(&bad, "unique-without-index", 0)->message,
                    "UNIQUE orders_reference_key to existing table orders");
    assert_contains(nth(&bad, "unique-without-index", 1)->message, "PRIMARY KEY to existing");
    assert_contains(nth(&bad, "unique-without-index", 1)->hint,
                    "CREATE UNIQUE INDEX CONCURRENTLY first");
    assert_contains(nth(&bad, "unique-without-index", 1)->hint, "PRIMARY KEY USING INDEX");
    LINT(&safe, UP("ALTER TABLE orders ADD CONSTRAINT orders_reference_key\n"
                   "    UNIQUE USING INDEX orders_reference;\n"
                   "ALTER TABLE orders ADD PRIMARY KEY USING INDEX orders_id;\n"
                   "CREATE TABLE refunds (id int);\n"
                   "ALTER TABLE refunds ADD PRIMARY KEY (id);\n"));
    assert_clean(&safe);
    linted_free(&bad);
    linted_free(&safe);
}
END_TEST

START_TEST(test_lock_truncate_vacuum_cluster)
{
    linted bad, safe;
    LINT(&bad, UP("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;\n"
                  "TRUNCATE orders, app.refunds;\n"
                  "VACUUM FULL orders;\n"
                  "VACUUM (FULL, ANALYZE);\n"
                  "CLUSTER orders USING orders_pkey;\n"
                  "REINDEX TABLE orders;\n"));
    ck_assert_uint_eq(bad.res.count, 7);
    ck_assert_uint_eq(count(&bad, "lock-table"), 1);
    ck_assert_uint_eq(count(&bad, "truncate"), 2);
    ck_assert_uint_eq(count(&bad, "vacuum-full"), 2);
    ck_assert_uint_eq(count(&bad, "cluster"), 1);
    ck_assert_uint_eq(count(&bad, "reindex-not-concurrent"), 1);
    assert_contains(nth(&bad, "lock-table", 0)->message, "LOCK TABLE orders");
    assert_contains(nth(&bad, "truncate", 1)->message, "TRUNCATE app.refunds");
    assert_at(nth(&bad, "truncate", 1), 3, 18);
    assert_contains(nth(&bad, "vacuum-full", 0)->message, "VACUUM FULL orders");
    assert_contains(nth(&bad, "vacuum-full", 1)->message, "every table of the database");
    assert_contains(nth(&bad, "cluster", 0)->message, "CLUSTER orders");
    assert_contains(nth(&bad, "reindex-not-concurrent", 0)->message, "REINDEX orders");
    assert_contains(nth(&bad, "reindex-not-concurrent", 0)->hint, "REINDEX CONCURRENTLY");
    LINT(&safe,
         "-- shardgate:transaction=off\n" UP(
             "VACUUM (ANALYZE) orders;\nVACUUM (FULL false) orders;\n"
             "REINDEX TABLE CONCURRENTLY orders;\nCREATE TABLE scratch (id int);\n"
             "LOCK TABLE scratch;\nTRUNCATE scratch;\nCLUSTER scratch USING scratch_pkey;\n"));
    assert_clean(&safe);
    linted_free(&bad);
    linted_free(&safe);
}
END_TEST

START_TEST(test_data_change)
{
    linted bad, declared, created;
    LINT(&bad, UP("UPDATE orders SET total = 0 WHERE total IS NULL;\n"
                  "DELETE FROM app.refunds;\nINSERT INTO orders (id) VALUES (1);\n"));
    assert_only(&bad, "data-change", 3);
    ck_assert_uint_eq(bad.res.warnings, 3);
    assert_contains(nth(&bad, "data-change", 0)->message, "UPDATE changes rows of table orders");
    assert_contains(nth(&bad, "data-change", 1)->message,
                    "DELETE changes rows of table app.refunds");
    assert_contains(nth(&bad, "data-change", 0)->hint, "-- shardgate:data-change");
    LINT(&declared, "-- shardgate:data-change\n" UP("UPDATE orders SET total = 0;\n"));
    assert_clean(&declared);
    LINT(&created, UP("CREATE TABLE currencies (code text);\n"
                      "INSERT INTO currencies VALUES ('EUR'), ('USD');\n"));
    assert_clean(&created);
    linted_free(&bad);
    linted_free(&declared);
    linted_free(&created);
}
END_TEST

START_TEST(test_concurrent_index_unnamed)
{
    linted bad, named;
    LINT(&bad,
         "-- shardgate:transaction=off\n" UP("CREATE INDEX CONCURRENTLY ON orders (total);\n"));
    assert_only(&bad, "concurrent-index-unnamed", 1);
    assert_contains(nth(&bad, "concurrent-index-unnamed", 0)->message, "on orders has no name");
    LINT(&named, "-- shardgate:transaction=off\n" UP(
                     "CREATE INDEX CONCURRENTLY orders_total ON orders (total);\n"));
    assert_clean(&named);
    linted_free(&bad);
    linted_free(&named);
}
END_TEST

START_TEST(test_copy_client)
{
    linted bad, server;
    LINT(&bad,
         "-- shardgate:data-change\n" UP("COPY orders FROM STDIN;\nCOPY (SELECT 1) TO STDOUT;\n"));
    assert_only(&bad, "copy-client", 2);
    assert_contains(nth(&bad, "copy-client", 0)->message, "COPY FROM STDIN orders needs data");
    assert_contains(nth(&bad, "copy-client", 1)->message, "COPY TO STDOUT (query)");
    assert_contains(nth(&bad, "copy-client", 0)->hint, "a file on the server");
    LINT(&server, "-- shardgate:data-change\n" UP("COPY orders FROM '/srv/orders.csv';\n"
                                                  "COPY orders TO '/srv/out.csv';\n"));
    assert_clean(&server);
    linted_free(&bad);
    linted_free(&server);
}
END_TEST

START_TEST(test_missing_down)
{
    linted bad, irreversible, empty_down;
    LINT(&bad, "-- a comment\n\n-- shardgate:up\nCREATE TABLE refunds (id int);\n");
    assert_only(&bad, "missing-down", 1);
    assert_at(nth(&bad, "missing-down", 0), 3, 1);
    assert_contains(nth(&bad, "missing-down", 0)->message, "0001_step1.sql has no down section");
    assert_contains(nth(&bad, "missing-down", 0)->hint, "-- shardgate:irreversible");
    LINT(&irreversible,
         "-- shardgate:irreversible\n-- shardgate:up\nCREATE TABLE refunds (id int);\n");
    assert_clean(&irreversible);
    /* a down section with nothing to undo is a decision, not an omission */
    LINT(&empty_down, "-- shardgate:up\nSELECT 1;\n-- shardgate:down\n");
    assert_clean(&empty_down);
    linted_free(&bad);
    linted_free(&irreversible);
    linted_free(&empty_down);
}
END_TEST

START_TEST(test_verify_not_read_only)
{
    linted bad, safe;
    LINT(&bad,
         UP("SELECT 1;\n") "-- shardgate:verify\n"
                           "UPDATE orders SET total = 0;\n"
                           "SELECT * INTO copy_of_orders FROM orders;\n"
                           "SELECT * FROM orders FOR UPDATE;\n"
                           "WITH gone AS (DELETE FROM orders RETURNING id) SELECT * FROM gone;\n"
                           "CREATE INDEX orders_x ON orders (x);\n");
    /* verify gets its own rule only: no index-not-concurrent here */
    assert_only(&bad, "verify-not-read-only", 5);
    assert_contains(nth(&bad, "verify-not-read-only", 0)->message,
                    "runs UPDATE, which is not a query");
    assert_contains(nth(&bad, "verify-not-read-only", 1)->message, "SELECT INTO copy_of_orders");
    assert_contains(nth(&bad, "verify-not-read-only", 2)->message, "FOR UPDATE");
    assert_contains(nth(&bad, "verify-not-read-only", 3)->message, "WITH gone");
    assert_contains(nth(&bad, "verify-not-read-only", 4)->message,
                    "runs CREATE, which is not a query");
    LINT(&safe, UP("SELECT 1;\n") "-- shardgate:verify\n"
                                  "SELECT count(*) FROM orders WHERE total IS NULL;\n"
                                  "VALUES (1), (2);\n"
                                  "WITH t AS (SELECT 1 AS x) SELECT x FROM t;\n"
                                  "SELECT 1 UNION SELECT 2;\n");
    assert_clean(&safe);
    linted_free(&bad);
    linted_free(&safe);
}
END_TEST

/* A blue-green file for public.orders whose up section starts at line 3,
 * with a down section that undoes it the blue-green way. */
#define BLUEGREEN_UP(sql)                                                                          \
    "-- shardgate:mode=bluegreen table=public.orders\n"                                            \
    "-- shardgate:up\n" sql "-- shardgate:down\nALTER TABLE orders DROP COLUMN note;\n"

#define ONLY_TAIL                                                                                  \
    ": a mode=bluegreen file for public.orders may hold only ALTER TABLE, CREATE INDEX and "       \
    "UPDATE ... SET of that table"

START_TEST(test_bluegreen_other_table)
{
    linted bad, safe, schema, down;
    LINT(&bad, BLUEGREEN_UP("ALTER TABLE orders ADD COLUMN note text;\n"
                            "ALTER TABLE refunds ADD COLUMN note text;\n"
                            "CREATE INDEX refunds_note ON app.orders (note);\n"
                            "UPDATE orders SET note = '' WHERE id > 5;\n"
                            "ALTER TABLE orders SET TABLESPACE fast;\n"
                            "DROP TABLE refunds;\n"));
    ck_assert_uint_eq(count(&bad, "bluegreen-other-table"), 5);
    ck_assert_str_eq(nth(&bad, "bluegreen-other-table", 0)->message,
                     "ALTER TABLE of another table" ONLY_TAIL);
    assert_at(nth(&bad, "bluegreen-other-table", 0), 4, 13);
    ck_assert_str_eq(nth(&bad, "bluegreen-other-table", 1)->message,
                     "CREATE INDEX on another table" ONLY_TAIL);
    assert_at(nth(&bad, "bluegreen-other-table", 1), 5, 30);
    ck_assert_str_eq(nth(&bad, "bluegreen-other-table", 2)->message,
                     "UPDATE ... WHERE: an UPDATE of a blue-green file fills the column in every "
                     "row");
    assert_at(nth(&bad, "bluegreen-other-table", 2), 6, 35);
    ck_assert_str_eq(nth(&bad, "bluegreen-other-table", 3)->message,
                     "ALTER TABLE ... SET TABLESPACE has no place in a blue-green rebuild: put it "
                     "in a file of its own");
    assert_at(nth(&bad, "bluegreen-other-table", 3), 7, 1);
    ck_assert_str_eq(nth(&bad, "bluegreen-other-table", 4)->message, "DROP TABLE" ONLY_TAIL);
    assert_at(nth(&bad, "bluegreen-other-table", 4), 8, 1);
    assert_contains(nth(&bad, "bluegreen-other-table", 4)->hint,
                    "put other statements in their own file");
    /* renames run on green, and an UPDATE ... SET is not run but fills green:
     * no data change either */
    LINT(&safe, "-- shardgate:destructive\n" BLUEGREEN_UP(
                    "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12, 2);\n"
                    "ALTER TABLE public.orders ADD COLUMN note text DEFAULT gen_random_uuid();\n"
                    "CREATE INDEX orders_note ON orders (note);\n"
                    "ALTER TABLE orders RENAME COLUMN code TO ref;\n"
                    "ALTER TABLE orders RENAME CONSTRAINT orders_code_key TO orders_ref_key;\n"
                    "UPDATE orders SET note = upper(code), total = total * 100;\n"));
    assert_clean(&safe);
    /* an unqualified name is in public, not in the file's schema */
    LINT(&schema, "-- shardgate:mode=bluegreen table=app.orders\n"
                  "-- shardgate:up\n"
                  "ALTER TABLE orders ADD COLUMN note text;\n"
                  "ALTER TABLE app.orders ADD COLUMN note2 text;\n"
                  "-- shardgate:down\n"
                  "ALTER TABLE app.orders DROP COLUMN note2;\n");
    assert_only(&schema, "bluegreen-other-table", 1);
    assert_at(nth(&schema, "bluegreen-other-table", 0), 3, 13);
    /* a blue-green down section is a blue-green change too */
    LINT(&down, BLUEGREEN_UP("ALTER TABLE orders ADD COLUMN note text;\n") "DELETE FROM orders;\n");
    assert_only(&down, "bluegreen-other-table", 1);
    ck_assert_str_eq(nth(&down, "bluegreen-other-table", 0)->message, "DELETE" ONLY_TAIL);
    assert_at(nth(&down, "bluegreen-other-table", 0), 6, 1);
    linted_free(&bad);
    linted_free(&safe);
    linted_free(&schema);
    linted_free(&down);
}
END_TEST

/* Rules see the down section too, where only tables it creates are new. */
START_TEST(test_down_section)
{
    linted l;
    LINT(&l, "-- shardgate:up\nCREATE TABLE refunds (id int);\n"
             "-- shardgate:down\nCREATE INDEX refunds_id ON refunds (id);\nLOCK TABLE orders;\n");
    ck_assert_uint_eq(l.res.count, 2);
    assert_at(nth(&l, "index-not-concurrent", 0), 4, 1);
    assert_at(nth(&l, "lock-table", 0), 5, 12);
    linted_free(&l);
}
END_TEST

START_TEST(test_silenced)
{
    linted stmt, trailing, file, other, unknown;
    /* on the line before the statement */
    LINT(&stmt, UP("-- shardgate:allow index-not-concurrent\n"
                   "CREATE INDEX orders_created ON orders (created_at);\n"
                   "CREATE INDEX orders_total ON orders (total);\n"));
    assert_only(&stmt, "index-not-concurrent", 1);
    assert_contains(nth(&stmt, "index-not-concurrent", 0)->message, "orders_total");
    /* at the end of the line where the statement ends, several rules at once:
     * it belongs to that statement, not to the one before it on the line */
    LINT(&trailing,
         UP("TRUNCATE orders; LOCK TABLE orders; -- shardgate:allow lock-table, truncate\n"
            "TRUNCATE refunds; -- shardgate:allow truncate\n"));
    assert_only(&trailing, "truncate", 1);
    assert_contains(nth(&trailing, "truncate", 0)->message, "TRUNCATE orders");
    LINT(&file,
         "-- shardgate:allow truncate set-not-null\n" UP(
             "TRUNCATE orders;\nALTER TABLE orders ALTER COLUMN a SET NOT NULL;\n"),
         UP("TRUNCATE orders;\n"));
    assert_only(&file, "truncate", 1);
    ck_assert_int_eq(nth(&file, "truncate", 0)->version, 2);
    /* silencing one rule leaves the others */
    LINT(&other, UP("-- shardgate:allow truncate\nREINDEX TABLE orders;\n"));
    assert_only(&other, "reindex-not-concurrent", 1);
    /* a misspelt rule silences nothing, and says so */
    LINT(&unknown,
         "-- shardgate:allow truncat\n" UP("-- shardgate:allow lock-tabel\nLOCK TABLE orders;\n"));
    ck_assert_uint_eq(unknown.res.count, 3);
    ck_assert_uint_eq(count(&unknown, "unknown-rule"), 2);
    ck_assert_uint_eq(unknown.res.warnings, 2);
    assert_contains(nth(&unknown, "unknown-rule", 0)->message, "unknown rule \"truncat\"");
    assert_at(nth(&unknown, "unknown-rule", 0), 1, 1);
    assert_contains(nth(&unknown, "unknown-rule", 1)->message, "unknown rule \"lock-tabel\"");
    assert_at(nth(&unknown, "unknown-rule", 1), 4, 1);
    linted_free(&stmt);
    linted_free(&trailing);
    linted_free(&file);
    linted_free(&other);
    linted_free(&unknown);
}
END_TEST

/* Positions are of the offending node when the tree has one, in the file,
 * whatever comes before the statement in its section. */
START_TEST(test_positions)
{
    linted l;
    LINT(&l, "-- shardgate:transaction=off\n"                                 /* 1 */
             "\n"                                                             /* 2 */
             "-- shardgate:up\n"                                              /* 3 */
             "-- a comment; with a semicolon\n"                               /* 4 */
             "/* and another\n"                                               /* 5 */
             "   over two lines; */  CREATE INDEX a ON orders (x);\n"         /* 6 */
             "SELECT 1; ALTER TABLE orders ADD CONSTRAINT c CHECK (x > 0);\n" /* 7 */
             "ALTER TABLE orders\n"                                           /* 8 */
             "    ADD COLUMN  t uuid DEFAULT\n"                               /* 9 */
             "        gen_random_uuid(),\n"                                   /* 10 */
             "\tADD UNIQUE (t);\n"                                            /* 11 */
             "-- shardgate:down\n"                                            /* 12 */
             "  ALTER TABLE orders SET LOGGED;\n"                             /* 13 */
             "-- shardgate:verify\n"                                          /* 14 */
             "\n   DELETE FROM orders;\n");                                   /* 16 */
    ck_assert_uint_eq(l.res.count, 6);
    assert_at(nth(&l, "index-not-concurrent", 0), 6, 24);
    assert_at(nth(&l, "constraint-not-valid", 0), 7, 34);
    assert_at(nth(&l, "volatile-default", 0), 10, 9);
    assert_at(nth(&l, "unique-without-index", 0), 11, 6);
    assert_at(nth(&l, "table-rewrite", 0), 13, 3);
    assert_at(nth(&l, "verify-not-read-only", 0), 16, 4);
    /* and the findings come in order of position */
    for (size_t i = 1; i < l.res.count; i++)
        ck_assert_uint_gt(l.res.items[i].line, l.res.items[i - 1].line);
    linted_free(&l);
}
END_TEST

/* Files come in version order, each one's findings by position. */
START_TEST(test_order)
{
    linted l;
    LINT(&l, UP("TRUNCATE orders;\nLOCK TABLE refunds;\n"),
         "-- shardgate:up\nVACUUM FULL orders;\n");
    ck_assert_uint_eq(l.res.count, 4);
    ck_assert_str_eq(l.res.items[0].rule->id, "truncate");
    ck_assert_str_eq(l.res.items[1].rule->id, "lock-table");
    ck_assert_str_eq(l.res.items[2].rule->id, "missing-down");
    ck_assert_str_eq(l.res.items[3].rule->id, "vacuum-full");
    ck_assert_int_eq(l.res.items[3].version, 2);
    linted_free(&l);
}
END_TEST

/* Tricky SQL that a splitter counting semicolons would get wrong: it lints
 * clean, each section split into the statements the server sees. */
START_TEST(test_corpus)
{
    const char *source = getenv("SG_SOURCE_DIR");
    char *dir = sgt_asprintf("%s/tests/unit/lint/clean", source ? source : ".");
    sg_migration_set *set = NULL;
    sg_lint_result res = {0};
    sg_error err = {0};
    ck_assert_msg(sg_migration_set_load(&set, dir, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(set->count, 6);
    const sg_migration *audit = &set->items[0];
    ck_assert_uint_eq(sg_sql_script_count(audit->up.script), 5);
    ck_assert_uint_eq(sg_sql_script_count(audit->down.script), 3);
    ck_assert_uint_eq(sg_sql_script_count(audit->verify.script), 2);
    /* the function ends at its closing quote, not at a ';' in its body */
    const sg_sql_stmt *fn = sg_sql_script_stmt(audit->up.script, 1);
    ck_assert_uint_ge(fn->len, 6);
    ck_assert_int_eq(memcmp(fn->text + fn->len - 6, "$body$", 6), 0);
    ck_assert_uint_eq(sg_sql_script_stmt(audit->up.script, 4)->line, 19);
    ck_assert_uint_eq(sg_sql_script_count(set->items[5].up.script), 4);
    ck_assert_int_eq(sg_lint_set(&res, set, &err), 0);
    if (res.count) {
        linted l = {set, res};
        char *text = dump(&l);
        ck_abort_msg("the corpus is not clean:\n%s", text);
    }
    sg_lint_result_clear(&res);
    sg_migration_set_free(set);
    free(dir);
}
END_TEST

static char *printed(const sg_lint_result *res, sg_lint_format format)
{
    char *text = NULL;
    size_t len = 0;
    sg_error err = {0};
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(sg_lint_print(out, res, format, &err), 0);
    ck_assert_int_eq(fclose(out), 0);
    return text;
}

START_TEST(test_print)
{
    linted l;
    LINT(&l, UP("CREATE INDEX a ON orders (x);\n"
                "ALTER TABLE orders ADD COLUMN c text DEFAULT f();\n"));
    char *gcc = printed(&l.res, SG_LINT_GCC);
    ck_assert_str_eq(gcc, "db/0001_step1.sql:2:1: error: CREATE INDEX a on orders blocks writes to "
                          "the table while the index builds [index-not-concurrent]\n"
                          "db/0001_step1.sql:3:46: warning: default of new column c calls f(), "
                          "which lint cannot prove stable: if it is volatile, adding the column "
                          "rewrites table orders [volatile-default]\n");
    char *text = printed(&l.res, SG_LINT_TEXT);
    ck_assert_str_eq(text, "db/0001_step1.sql:2:1: error: CREATE INDEX a on orders blocks writes "
                           "to the table while the index builds [index-not-concurrent]\n"
                           "  hint: use CREATE INDEX CONCURRENTLY, in a file with -- "
                           "shardgate:transaction=off\n"
                           "db/0001_step1.sql:3:46: warning: default of new column c calls f(), "
                           "which lint cannot prove stable: if it is volatile, adding the column "
                           "rewrites table orders [volatile-default]\n"
                           "  hint: add the column without a default (or with a constant one), "
                           "then SET DEFAULT and fill existing rows in batches\n");
    sg_lint_result none = {0};
    char *empty = printed(&none, SG_LINT_TEXT);
    ck_assert_str_eq(empty, "");
    free(gcc);
    free(text);
    free(empty);
    linted_free(&l);
}
END_TEST

START_TEST(test_print_fails)
{
    linted l;
    sg_error err = {0};
    FILE *full = fopen("/dev/full", "w");
    ck_assert_ptr_nonnull(full);
    LINT(&l, UP("TRUNCATE orders;\n"));
    ck_assert_int_eq(sg_lint_print(full, &l.res, SG_LINT_TEXT, &err), SG_E_IO);
    assert_contains(err.message, "cannot write the lint report");
    fclose(full);
    linted_free(&l);
}
END_TEST

START_TEST(test_json)
{
    linted l;
    LINT(&l, UP("TRUNCATE orders;\n"), UP("ALTER TABLE orders ADD COLUMN c text DEFAULT f();\n"));
    json_t *doc = sg_lint_to_json(&l.res);
    ck_assert_ptr_nonnull(doc);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "errors")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "warnings")), 1);
    json_t *findings = json_object_get(doc, "findings");
    ck_assert_uint_eq(json_array_size(findings), 2);
    json_t *first = json_array_get(findings, 0), *second = json_array_get(findings, 1);
    ck_assert_uint_eq(json_object_size(first), 8);
    ck_assert_str_eq(json_string_value(json_object_get(first, "rule")), "truncate");
    ck_assert_str_eq(json_string_value(json_object_get(first, "severity")), "error");
    ck_assert_str_eq(json_string_value(json_object_get(first, "file")), "db/0001_step1.sql");
    ck_assert_int_eq(json_integer_value(json_object_get(first, "line")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(first, "column")), 10);
    ck_assert_int_eq(json_integer_value(json_object_get(first, "version")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(first, "message")), l.res.items[0].message);
    ck_assert_str_eq(json_string_value(json_object_get(first, "hint")), l.res.items[0].hint);
    ck_assert_str_eq(json_string_value(json_object_get(second, "severity")), "warning");
    ck_assert_int_eq(json_integer_value(json_object_get(second, "version")), 2);
    json_decref(doc);
    linted_free(&l);
}
END_TEST

/* Names from a file that is not UTF-8 still give valid JSON. */
START_TEST(test_json_not_utf8)
{
    linted l;
    LINT(&l, UP("TRUNCATE \"caf\xe9\";\n"));
    json_t *doc = sg_lint_to_json(&l.res);
    ck_assert_ptr_nonnull(doc);
    json_t *first = json_array_get(json_object_get(doc, "findings"), 0);
    assert_contains(json_string_value(json_object_get(first, "message")), "TRUNCATE caf?");
    json_decref(doc);
    linted_free(&l);
}
END_TEST

/* Every allocation of lint and of its JSON fails in turn: each failure is
 * SG_E_NOMEM (NULL for JSON), leaves the result empty, and leaks nothing. */
START_TEST(test_allocation_failures)
{
    static const char *const texts[] = {
        UP("ALTER TABLE orders ADD CONSTRAINT p CHECK (a IS NOT NULL) NOT VALID;\n"
           "ALTER TABLE orders VALIDATE CONSTRAINT p;\n"
           "CREATE TABLE t1 (id int); CREATE TABLE t2 (id int); CREATE TABLE t3 (id int);\n"
           "CREATE TABLE t4 (id int); CREATE TABLE t5 (id int); CREATE TABLE t6 (id int);\n"
           "CREATE TABLE t7 (id int); CREATE TABLE t8 (id int); CREATE TABLE t9 (id int);\n"),
        "-- shardgate:allow nothing\n-- shardgate:up\n"
        "ALTER TABLE orders ALTER COLUMN a SET NOT NULL, ALTER COLUMN b SET NOT NULL;\n"
        "ALTER TABLE orders ADD COLUMN c uuid DEFAULT gen_random_uuid();\n"
        "TRUNCATE orders, refunds;\n"};
    sg_migration_set *set = make_set(texts, 2);
    sg_lint_result res = {0};
    sg_error err = {0};
    int rc = SG_E_NOMEM;
    long n;
    for (n = 0; rc != 0; n++) {
        sg_mem_fail_after(n);
        rc = sg_lint_set(&res, set, &err);
        sg_mem_fail_reset();
        if (rc != 0) {
            ck_assert_int_eq(rc, SG_E_NOMEM);
            ck_assert_str_eq(err.message, "out of memory");
            ck_assert_uint_eq(res.count, 0);
            ck_assert_ptr_null(res.items);
        }
    }
    ck_assert_uint_gt(n, 10);
    ck_assert_uint_eq(res.count, 6);
    json_t *doc = NULL;
    for (n = 0; !doc; n++) {
        sg_mem_fail_after(n);
        doc = sg_lint_to_json(&res);
        sg_mem_fail_reset();
    }
    ck_assert_uint_gt(n, 10);
    ck_assert_uint_eq(json_array_size(json_object_get(doc, "findings")), 6);
    json_decref(doc);
    sg_lint_result_clear(&res);
    sg_lint_result_clear(&res); /* clearing twice, or NULL, is harmless */
    sg_lint_result_clear(NULL);
    sg_migration_set_free(set);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lint");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"rule_table", test_rule_table},
        {"index_not_concurrent", test_index_not_concurrent},
        {"concurrently_in_transaction", test_concurrently_in_transaction},
        {"constraint_not_valid", test_constraint_not_valid},
        {"set_not_null", test_set_not_null},
        {"knowledge_across_files", test_knowledge_across_files},
        {"table_rewrite", test_table_rewrite},
        {"volatile_default", test_volatile_default},
        {"destructive", test_destructive},
        {"unique_without_index", test_unique_without_index},
        {"lock_truncate_vacuum_cluster", test_lock_truncate_vacuum_cluster},
        {"data_change", test_data_change},
        {"copy_client", test_copy_client},
        {"concurrent_index_unnamed", test_concurrent_index_unnamed},
        {"missing_down", test_missing_down},
        {"verify_not_read_only", test_verify_not_read_only},
        {"bluegreen_other_table", test_bluegreen_other_table},
        {"down_section", test_down_section},
        {"silenced", test_silenced},
        {"positions", test_positions},
        {"order", test_order},
        {"corpus", test_corpus},
        {"print", test_print},
        {"print_fails", test_print_fails},
        {"json", test_json},
        {"json_not_utf8", test_json_not_utf8},
        {"allocation_failures", test_allocation_failures},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
