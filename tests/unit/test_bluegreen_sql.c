/* The blue-green statement rewriter: what each allowed statement of a
 * mode=bluegreen file becomes on green, fills and renames, every refusal with
 * its position, and rewriting catalog-made definitions. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "stages/bluegreen_sql.h"
#include "stages/migration.h"

#define GREEN "shardgate_new_7"
#define FILE_NAME "0007_orders.sql"

/* A blue-green file for table whose up section (sql) starts at line 3. */
#define BLUEGREEN(table, sql)                                                                      \
    "-- shardgate:mode=bluegreen table=" table "\n"                                                \
    "-- shardgate:up\n" sql

static void parse(sg_migration *m, const char *text)
{
    sg_error err = {0};
    memset(m, 0, sizeof(*m));
    int rc = sg_migration_parse(m, "db/" FILE_NAME, FILE_NAME, text, strlen(text), &err);
    ck_assert_msg(rc == 0, "%s", err.message);
}

/* The script of the up section of text, which must build. */
static sg_bluegreen_script *build(sg_migration *m, const char *text, const char *green)
{
    sg_bluegreen_script *s = NULL;
    sg_error err = {0};
    parse(m, text);
    int rc = sg_bluegreen_script_build(&s, m, &m->up, green, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void assert_statements(char *const *items, size_t n, const char *const *expected,
                              size_t expected_n)
{
    ck_assert_uint_eq(n, expected_n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(strcmp(items[i], expected[i]) == 0, "statement %zu:\n  %s\nexpected\n  %s", i,
                      items[i], expected[i]);
}

#define ASSERT_STATEMENTS(items, n, ...)                                                           \
    assert_statements(items, n, (const char *const[]){__VA_ARGS__},                                \
                      sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static void assert_fill(const sg_bluegreen_script *s, size_t i, const char *column,
                        const char *expression, unsigned line)
{
    ck_assert_uint_gt(s->nfills, i);
    ck_assert_str_eq(s->fills[i].column, column);
    ck_assert_str_eq(s->fills[i].expression, expression);
    ck_assert_uint_eq(s->fills[i].line, line);
}

START_TEST(test_alter_table)
{
    sg_migration m;
    sg_bluegreen_script *s = build(
        &m,
        BLUEGREEN("public.orders",
                  "ALTER TABLE orders ADD COLUMN note text DEFAULT 'x' NOT NULL,\n"
                  "    ADD CONSTRAINT orders_customer_fkey FOREIGN KEY (customer_id)\n"
                  "    REFERENCES customers (id) NOT VALID;\n"
                  "ALTER TABLE ONLY public.orders ADD CONSTRAINT orders_parent_fkey\n"
                  "    FOREIGN KEY (parent_id) REFERENCES orders (id);\n"
                  "ALTER TABLE orders ALTER COLUMN total SET NOT NULL, ALTER note DROP NOT NULL,\n"
                  "    ALTER COLUMN note SET STORAGE EXTERNAL, ALTER note SET STATISTICS 500,\n"
                  "    ALTER note SET COMPRESSION lz4, ALTER note SET DEFAULT 'y',\n"
                  "    ALTER note SET (n_distinct = 10);\n"
                  "ALTER TABLE orders ADD PRIMARY KEY (id), ADD UNIQUE (code),\n"
                  "    ADD CHECK (total > 0), VALIDATE CONSTRAINT orders_customer_fkey,\n"
                  "    DROP CONSTRAINT orders_old_check,\n"
                  "    ALTER CONSTRAINT orders_parent_fkey DEFERRABLE;\n"
                  "ALTER TABLE orders ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY,\n"
                  "    ADD COLUMN doubled numeric GENERATED ALWAYS AS (total * 2) STORED,\n"
                  "    SET (fillfactor = 70);\n"
                  "ALTER TABLE IF EXISTS orders DROP COLUMN legacy, ALTER total TYPE bigint;\n"),
        GREEN);
    ASSERT_STATEMENTS(
        s->before, s->nbefore,
        "ALTER TABLE " GREEN ".orders ADD COLUMN note text DEFAULT 'x' NOT NULL, ADD CONSTRAINT "
        "orders_customer_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID",
        /* a self-reference follows the table to green */
        "ALTER TABLE ONLY " GREEN ".orders ADD CONSTRAINT orders_parent_fkey FOREIGN KEY "
        "(parent_id) REFERENCES " GREEN ".orders (id)",
        "ALTER TABLE " GREEN ".orders ALTER COLUMN total SET NOT NULL, ALTER COLUMN note DROP NOT "
        "NULL, ALTER COLUMN note SET STORAGE external, ALTER COLUMN note SET STATISTICS 500, "
        "ALTER COLUMN note SET COMPRESSION lz4, ALTER COLUMN note SET DEFAULT 'y', ALTER COLUMN "
        "note SET (n_distinct=10)",
        "ALTER TABLE " GREEN ".orders ADD PRIMARY KEY (id), ADD UNIQUE (code), ADD CHECK (total > "
        "0), VALIDATE CONSTRAINT orders_customer_fkey, DROP CONSTRAINT orders_old_check, ALTER "
        "CONSTRAINT orders_parent_fkey DEFERRABLE",
        "ALTER TABLE " GREEN ".orders ALTER id ADD GENERATED ALWAYS AS IDENTITY, ADD COLUMN "
        "doubled numeric GENERATED ALWAYS AS (total * 2) STORED, SET (fillfactor=70)",
        "ALTER TABLE IF EXISTS " GREEN ".orders DROP legacy, ALTER COLUMN total TYPE bigint");
    ck_assert_uint_eq(s->nafter, 0);
    ck_assert_uint_eq(s->nfills, 0); /* a TYPE without USING converts in the copy */
    ck_assert_uint_eq(s->nrenames, 0);
    sg_bluegreen_script_free(s);
    sg_migration_clear(&m);
}
END_TEST

/* An unqualified name is in public: in a file for app.orders, "orders" is
 * another table, and a reference to it stays. */
START_TEST(test_other_schema)
{
    sg_migration m;
    sg_bluegreen_script *s =
        build(&m,
              BLUEGREEN("app.orders", "ALTER TABLE app.orders ADD CONSTRAINT orders_legacy_fkey\n"
                                      "    FOREIGN KEY (legacy_id) REFERENCES orders (id),\n"
                                      "    ADD CONSTRAINT orders_parent_fkey\n"
                                      "    FOREIGN KEY (parent_id) REFERENCES app.orders (id);\n"),
              GREEN);
    ASSERT_STATEMENTS(s->before, s->nbefore,
                      "ALTER TABLE " GREEN ".orders ADD CONSTRAINT orders_legacy_fkey FOREIGN KEY "
                      "(legacy_id) REFERENCES orders (id), ADD CONSTRAINT orders_parent_fkey "
                      "FOREIGN KEY (parent_id) REFERENCES " GREEN ".orders (id)");
    sg_bluegreen_script_free(s);
    sg_migration_clear(&m);
}
END_TEST

START_TEST(test_quoted_identifiers)
{
    sg_migration m;
    sg_bluegreen_script *s = build(
        &m,
        BLUEGREEN("App.Orders", "ALTER TABLE \"App\".\"Orders\" ADD COLUMN \"Note\" text,\n"
                                "    ADD COLUMN \"Parent\" int CONSTRAINT \"Orders_Parent\"\n"
                                "    REFERENCES \"App\".\"Orders\";\n"
                                "CREATE INDEX \"Orders_Note\" ON \"App\".\"Orders\" (\"Note\");\n"
                                "UPDATE \"App\".\"Orders\" SET \"Note\" = upper(\"Name\");\n"
                                "ALTER TABLE \"App\".\"Orders\" RENAME \"Code\" TO \"Ref\";\n"),
        "Green 7");
    ASSERT_STATEMENTS(
        s->before, s->nbefore,
        "ALTER TABLE \"Green 7\".\"Orders\" ADD COLUMN \"Note\" text, ADD COLUMN "
        "\"Parent\" int CONSTRAINT \"Orders_Parent\" REFERENCES \"Green 7\".\"Orders\"",
        "ALTER TABLE \"Green 7\".\"Orders\" RENAME COLUMN \"Code\" TO \"Ref\"");
    ASSERT_STATEMENTS(s->after, s->nafter,
                      "CREATE INDEX CONCURRENTLY \"Orders_Note\" ON \"Green 7\".\"Orders\" USING "
                      "btree (\"Note\")");
    ck_assert_uint_eq(s->nfills, 1);
    assert_fill(s, 0, "Note", "upper(\"Name\")", 7);
    ck_assert_uint_eq(s->nrenames, 1);
    ck_assert_str_eq(s->renames[0].from, "Code");
    ck_assert_str_eq(s->renames[0].to, "Ref");
    sg_bluegreen_script_free(s);
    sg_migration_clear(&m);
}
END_TEST

START_TEST(test_create_index)
{
    sg_migration m;
    sg_bluegreen_script *s = build(
        &m,
        BLUEGREEN("public.orders",
                  "CREATE INDEX orders_total ON orders (total);\n"
                  "CREATE UNIQUE INDEX orders_code ON public.orders (lower(code)) INCLUDE (id)\n"
                  "    WHERE code IS NOT NULL;\n"
                  "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_note ON orders\n"
                  "    USING gin (to_tsvector('simple', note));\n"),
        GREEN);
    ck_assert_uint_eq(s->nbefore, 0);
    /* green takes live writes through the triggers by then: a plain build
     * would block them */
    ASSERT_STATEMENTS(s->after, s->nafter,
                      "CREATE INDEX CONCURRENTLY orders_total ON " GREEN ".orders USING btree "
                      "(total)",
                      "CREATE UNIQUE INDEX CONCURRENTLY orders_code ON " GREEN
                      ".orders USING btree (lower(code)) INCLUDE (id) WHERE code IS NOT NULL",
                      "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_note ON " GREEN
                      ".orders USING gin (to_tsvector('simple', note))");
    sg_bluegreen_script_free(s);
    sg_migration_clear(&m);
}
END_TEST

START_TEST(test_fills_from_update)
{
    sg_migration m;
    sg_bluegreen_script *s =
        build(&m,
              BLUEGREEN("public.orders",
                        "ALTER TABLE orders ADD COLUMN total_cents bigint, ADD COLUMN flag bool,\n"
                        "    ADD COLUMN note text, ADD COLUMN code text;\n"
                        "UPDATE orders SET total_cents = (total * 100)::bigint,\n"
                        "    note = coalesce(note, '');\n"
                        "UPDATE public.orders SET note = orders.note || '!';\n"
                        "UPDATE orders AS o SET code = upper(o.code);\n"
                        "UPDATE public.orders SET flag = public.orders.total > 0\n"
                        "    AND orders.code IS NOT NULL;\n"),
              GREEN);
    /* an UPDATE is not run: green's rows are computed from blue's */
    ck_assert_uint_eq(s->nbefore, 1);
    ck_assert_uint_eq(s->nafter, 0);
    ck_assert_uint_eq(s->nfills, 4);
    assert_fill(s, 0, "total_cents", "CAST(total * 100 AS bigint)", 5);
    /* the later UPDATE of note replaced the earlier; neither the table's
     * name, its schema nor its alias qualifies a column any more */
    assert_fill(s, 1, "note", "note || '!'", 7);
    assert_fill(s, 2, "code", "upper(code)", 8);
    assert_fill(s, 3, "flag", "total > 0 AND code IS NOT NULL", 9);
    sg_bluegreen_script_free(s);
    sg_migration_clear(&m);
}
END_TEST

START_TEST(test_fills_from_using)
{
    sg_migration m;
    sg_bluegreen_script *s = build(
        &m,
        BLUEGREEN("public.orders",
                  "ALTER TABLE orders ALTER COLUMN total TYPE bigint USING (total * 100)::bigint,\n"
                  "    ALTER COLUMN code TYPE int USING orders.code::int;\n"
                  "UPDATE orders SET code = 0;\n"
                  "ALTER TABLE orders ALTER COLUMN note TYPE varchar(20) USING left(note, 20);\n"
                  "ALTER TABLE orders ALTER COLUMN note TYPE varchar(30) USING left(note, 30);\n"),
        GREEN);
    /* on an empty green the USING converts nothing, so the statement runs as
     * written */
    ASSERT_STATEMENTS(s->before, s->nbefore,
                      "ALTER TABLE " GREEN
                      ".orders ALTER COLUMN total TYPE bigint USING CAST(total "
                      "* 100 AS bigint), ALTER COLUMN code TYPE int USING orders.code::int",
                      "ALTER TABLE " GREEN ".orders ALTER COLUMN note TYPE varchar(20) USING "
                      "\"left\"(note, 20)",
                      "ALTER TABLE " GREEN ".orders ALTER COLUMN note TYPE varchar(30) USING "
                      "\"left\"(note, 30)");
    ck_assert_uint_eq(s->nfills, 3);
    assert_fill(s, 0, "total", "CAST(total * 100 AS bigint)", 3);
    assert_fill(s, 1, "code", "0", 5); /* the UPDATE replaced the USING */
    assert_fill(s, 2, "note", "\"left\"(note, 30)", 7);
    sg_bluegreen_script_free(s);
    sg_migration_clear(&m);
}
END_TEST

START_TEST(test_renames)
{
    sg_migration m;
    sg_bluegreen_script *s =
        build(&m,
              BLUEGREEN("public.orders", "UPDATE orders SET note = lower(note), legacy = 1;\n"
                                         "ALTER TABLE orders RENAME COLUMN note TO remark;\n"
                                         "ALTER TABLE orders RENAME CONSTRAINT orders_total_check\n"
                                         "    TO orders_total_positive;\n"
                                         "ALTER TABLE public.orders RENAME code TO ref;\n"
                                         "ALTER TABLE orders DROP COLUMN legacy;\n"),
              GREEN);
    /* renames still run on green */
    ASSERT_STATEMENTS(s->before, s->nbefore,
                      "ALTER TABLE " GREEN ".orders RENAME COLUMN note TO remark",
                      "ALTER TABLE " GREEN ".orders RENAME CONSTRAINT orders_total_check TO "
                      "orders_total_positive",
                      "ALTER TABLE " GREEN ".orders RENAME COLUMN code TO ref",
                      "ALTER TABLE " GREEN ".orders DROP legacy");
    ck_assert_uint_eq(s->nrenames, 2);
    ck_assert_str_eq(s->renames[0].from, "note");
    ck_assert_str_eq(s->renames[0].to, "remark");
    ck_assert_str_eq(s->renames[1].from, "code");
    ck_assert_str_eq(s->renames[1].to, "ref");
    /* a fill names green's column, so it follows the rename; a dropped
     * column has nothing to fill; the expression stays over blue's columns */
    ck_assert_uint_eq(s->nfills, 1);
    assert_fill(s, 0, "remark", "lower(note)", 3);
    sg_bluegreen_script_free(s);
    sg_migration_clear(&m);
}
END_TEST

/* Up and down sections alike; no section is an empty script. */
START_TEST(test_sections)
{
    sg_migration m;
    sg_bluegreen_script *s = NULL;
    sg_error err = {0};
    parse(&m, BLUEGREEN("public.orders", "ALTER TABLE orders ADD COLUMN note text;\n"
                                         "-- shardgate:down\n"
                                         "ALTER TABLE orders DROP COLUMN note;\n"));
    ck_assert_int_eq(sg_bluegreen_script_build(&s, &m, &m.down, GREEN, &err), 0);
    ASSERT_STATEMENTS(s->before, s->nbefore, "ALTER TABLE " GREEN ".orders DROP note");
    sg_bluegreen_script_free(s);
    ck_assert_int_eq(sg_bluegreen_script_build(&s, &m, &m.verify, GREEN, &err), 0);
    ck_assert_uint_eq(s->nbefore + s->nafter + s->nfills + s->nrenames, 0);
    sg_bluegreen_script_free(s);
    sg_bluegreen_script_free(NULL);
    sg_migration_clear(&m);
}
END_TEST

START_TEST(test_not_bluegreen)
{
    sg_migration m;
    sg_bluegreen_script *s = NULL;
    sg_error err = {0};
    parse(&m, "-- shardgate:up\nALTER TABLE orders ADD COLUMN note text;\n");
    ck_assert_int_eq(sg_bluegreen_script_build(&s, &m, &m.up, GREEN, &err), SG_E_USAGE);
    ck_assert_str_eq(err.message,
                     FILE_NAME " is not a mode=bluegreen file with table=SCHEMA.TABLE");
    ck_assert_ptr_null(s);
    sg_migration_clear(&m);
}
END_TEST

#define ONLY_TAIL                                                                                  \
    ": a mode=bluegreen file for public.orders may hold only ALTER TABLE, CREATE INDEX and "       \
    "UPDATE ... SET of that table"
#define REFUSED_TAIL " has no place in a blue-green rebuild: put it in a file of its own"

static const struct refusal_case {
    const char *sql;     /* the up section, from line 3 */
    const char *message; /* after FILE_NAME ":" */
} refusals[] = {
    {"ALTER TABLE refunds ADD COLUMN note text", "3:13: ALTER TABLE of another table" ONLY_TAIL},
    {"ALTER TABLE app.orders ADD COLUMN note text", "3:13: ALTER TABLE of another table" ONLY_TAIL},
    {"ALTER TABLE orders ADD COLUMN note text;\nCREATE INDEX refunds_note\n    ON refunds (note)",
     "5:8: CREATE INDEX on another table" ONLY_TAIL},
    {"UPDATE refunds SET note = ''", "3:8: UPDATE of another table" ONLY_TAIL},
    {"ALTER TABLE refunds RENAME COLUMN a TO b",
     "3:13: ALTER TABLE ... RENAME of another table" ONLY_TAIL},
    {"ALTER TABLE refunds SET SCHEMA archive",
     "3:13: ALTER ... SET SCHEMA of another object" ONLY_TAIL},
    {"ALTER INDEX orders_pkey RENAME TO orders_pk",
     "3:13: ALTER ... RENAME of another object" ONLY_TAIL},
    {"ALTER VIEW orders_v RENAME COLUMN a TO b",
     "3:12: ALTER ... RENAME of another object" ONLY_TAIL},
    {"ALTER INDEX orders_pkey SET (fillfactor = 70)", "3:1: ALTER INDEX" ONLY_TAIL},
    {"DROP TABLE orders", "3:1: DROP TABLE" ONLY_TAIL},
    {"DROP INDEX orders_total", "3:1: DROP INDEX" ONLY_TAIL},
    {"INSERT INTO orders VALUES (1)", "3:1: INSERT" ONLY_TAIL},
    {"DELETE FROM orders", "3:1: DELETE" ONLY_TAIL},
    {"CREATE TABLE orders2 (id int)", "3:1: CREATE TABLE" ONLY_TAIL},
    {"TRUNCATE orders", "3:1: TRUNCATE" ONLY_TAIL},
    {"DO $$ BEGIN END $$", "3:1: DO" ONLY_TAIL},
    {"SELECT 1", "3:1: SELECT" ONLY_TAIL},
    {"ALTER TABLE orders SET SCHEMA archive",
     "3:1: ALTER TABLE ... SET SCHEMA moves the table: move it in a file of its own"},
    {"ALTER TABLE orders RENAME TO orders_old",
     "3:1: ALTER TABLE ... RENAME TO renames the table, which the swap keeps as it is: rename it "
     "in a file of its own"},
    {"ALTER TABLE orders ADD COLUMN note text, SET TABLESPACE fast",
     "3:1: ALTER TABLE ... SET TABLESPACE" REFUSED_TAIL},
    {"ALTER TABLE orders ATTACH PARTITION orders_1 FOR VALUES FROM (1) TO (2)",
     "3:1: ALTER TABLE ... ATTACH PARTITION" REFUSED_TAIL},
    {"ALTER TABLE orders DETACH PARTITION orders_1",
     "3:1: ALTER TABLE ... DETACH PARTITION" REFUSED_TAIL},
    {"ALTER TABLE orders INHERIT base", "3:1: ALTER TABLE ... INHERIT" REFUSED_TAIL},
    {"ALTER TABLE orders NO INHERIT base", "3:1: ALTER TABLE ... NO INHERIT" REFUSED_TAIL},
    {"ALTER TABLE orders OF order_type", "3:1: ALTER TABLE ... OF" REFUSED_TAIL},
    {"ALTER TABLE orders NOT OF", "3:1: ALTER TABLE ... NOT OF" REFUSED_TAIL},
    {"ALTER TABLE orders OWNER TO bob", "3:1: ALTER TABLE ... OWNER TO" REFUSED_TAIL},
    {"ALTER TABLE orders ENABLE ALWAYS TRIGGER t",
     "3:1: ALTER TABLE ... ENABLE TRIGGER" REFUSED_TAIL},
    {"ALTER TABLE orders DISABLE TRIGGER ALL", "3:1: ALTER TABLE ... DISABLE TRIGGER" REFUSED_TAIL},
    {"ALTER TABLE orders ENABLE RULE r", "3:1: ALTER TABLE ... ENABLE RULE" REFUSED_TAIL},
    {"ALTER TABLE orders DISABLE RULE r", "3:1: ALTER TABLE ... DISABLE RULE" REFUSED_TAIL},
    {"ALTER TABLE orders FORCE ROW LEVEL SECURITY",
     "3:1: ALTER TABLE ... ROW LEVEL SECURITY" REFUSED_TAIL},
    {"ALTER TABLE orders REPLICA IDENTITY FULL",
     "3:1: ALTER TABLE ... REPLICA IDENTITY" REFUSED_TAIL},
    {"ALTER TABLE orders CLUSTER ON orders_pkey", "3:1: ALTER TABLE ... CLUSTER ON" REFUSED_TAIL},
    {"ALTER TABLE orders SET WITHOUT CLUSTER",
     "3:1: ALTER TABLE ... SET WITHOUT CLUSTER" REFUSED_TAIL},
    {"ALTER TABLE orders SET LOGGED", "3:1: ALTER TABLE ... SET LOGGED" REFUSED_TAIL},
    {"ALTER TABLE orders SET UNLOGGED", "3:1: ALTER TABLE ... SET UNLOGGED" REFUSED_TAIL},
    {"ALTER TABLE orders SET ACCESS METHOD heap2",
     "3:1: ALTER TABLE ... SET ACCESS METHOD" REFUSED_TAIL},
    {"ALTER TABLE orders SET WITHOUT OIDS", "3:1: ALTER TABLE ... SET WITHOUT OIDS" REFUSED_TAIL},
    {"ALTER TABLE orders ADD COLUMN a int,\n    ADD PRIMARY KEY USING INDEX orders_id",
     "4:9: ALTER TABLE ... ADD CONSTRAINT ... USING INDEX names an index that green does not have "
     "before the copy: add the constraint without USING INDEX"},
    {"CREATE INDEX ON orders (note)",
     "3:1: CREATE INDEX without a name: green's index is built CONCURRENTLY, and an invalid one "
     "left by a failed build can only be dropped by name"},
    {"UPDATE orders SET note = '' WHERE id > 5",
     "3:35: UPDATE ... WHERE: an UPDATE of a blue-green file fills the column in every row"},
    {"UPDATE orders SET note = r.note FROM refunds r",
     "3:38: UPDATE ... FROM: an UPDATE of a blue-green file fills columns from blue's row alone"},
    {"UPDATE orders SET note = '' RETURNING id",
     "3:39: UPDATE ... RETURNING: an UPDATE of a blue-green file is not run, so it returns "
     "nothing"},
    {"WITH x AS (SELECT 1) UPDATE orders SET note = ''",
     "3:1: WITH ... UPDATE: an UPDATE of a blue-green file fills columns from blue's row alone"},
    {"UPDATE orders SET note = '', (a, b) = (1, 2)",
     "3:31: UPDATE ... SET (...) = (...): a fill sets one column from one expression"},
    {"UPDATE orders SET tags[1] = 'x'",
     "3:19: UPDATE ... SET of an array element or a field: a fill sets a whole column"},
    {"UPDATE orders SET total = 1, note = (SELECT name FROM customers c\n"
     "    WHERE c.id = orders.customer_id)",
     "3:37: UPDATE ... SET with a subquery: an UPDATE of a blue-green file fills columns from "
     "blue's row alone"},
    {"UPDATE orders SET note = DEFAULT",
     "3:19: UPDATE ... SET column = DEFAULT: a fill needs an expression (leave the column out and "
     "green's rows get its default)"},
};

START_TEST(test_refusals)
{
    const struct refusal_case *c = &refusals[_i];
    char text[512], expected[512];
    sg_migration m;
    sg_bluegreen_script *s = NULL;
    sg_error err = {0};
    snprintf(text, sizeof(text), BLUEGREEN("public.orders", "%s;\n"), c->sql);
    snprintf(expected, sizeof(expected), FILE_NAME ":%s", c->message);
    parse(&m, text);
    ck_assert_int_eq(sg_bluegreen_script_build(&s, &m, &m.up, GREEN, &err), SG_E_FORMAT);
    ck_assert_msg(strcmp(err.message, expected) == 0, "%s:\n  %s\nexpected\n  %s", c->sql,
                  err.message, expected);
    ck_assert_ptr_null(s);
    sg_migration_clear(&m);
}
END_TEST

/* What the catalog writes: pg_get_indexdef, pg_get_constraintdef inside an
 * ALTER TABLE, pg_get_triggerdef. */
START_TEST(test_rewrite_table)
{
    static const struct {
        const char *sql, *from_schema, *to_schema;
        bool concurrently;
        const char *expected;
    } cases[] = {
        {"CREATE UNIQUE INDEX t_a ON public.t USING btree (a)", "public", "green", true,
         "CREATE UNIQUE INDEX CONCURRENTLY t_a ON green.t USING btree (a)"},
        {"CREATE UNIQUE INDEX t_a ON public.t USING btree (a)", "public", "green", false,
         "CREATE UNIQUE INDEX t_a ON green.t USING btree (a)"},
        {"ALTER TABLE ONLY public.t ADD CONSTRAINT t_b_fkey FOREIGN KEY (b) REFERENCES "
         "public.u(id)",
         "public", "green", true,
         "ALTER TABLE ONLY green.t ADD CONSTRAINT t_b_fkey FOREIGN KEY (b) REFERENCES public.u "
         "(id)"},
        {"ALTER TABLE ONLY public.t ADD CONSTRAINT t_p_fkey FOREIGN KEY (p) REFERENCES "
         "public.t(id) ON DELETE CASCADE",
         "public", "green", false,
         "ALTER TABLE ONLY green.t ADD CONSTRAINT t_p_fkey FOREIGN KEY (p) REFERENCES green.t "
         "(id) ON DELETE CASCADE"},
        {"CREATE TRIGGER t_audit AFTER INSERT OR UPDATE OF a ON public.t FOR EACH ROW WHEN "
         "((new.a > 0)) EXECUTE FUNCTION audit.log('t')",
         "public", "green", false,
         "CREATE TRIGGER t_audit AFTER INSERT OR UPDATE OF a ON green.t FOR EACH ROW WHEN (new.a "
         "> 0) EXECUTE FUNCTION audit.log('t')"},
        /* at the swap, back from green to the table's schema */
        {"CREATE INDEX t_b ON shardgate_new_7.t USING btree (b)", "shardgate_new_7", "public",
         false, "CREATE INDEX t_b ON public.t USING btree (b)"},
        /* an unqualified name is only public's */
        {"CREATE INDEX t_b ON t (b)", "app", "green", false,
         "CREATE INDEX t_b ON t USING btree (b)"},
        {"CREATE INDEX t_b ON t (b)", "public", "Green 7", false,
         "CREATE INDEX t_b ON \"Green 7\".t USING btree (b)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *out = NULL;
        sg_error err = {0};
        int rc = sg_sql_rewrite_table(&out, cases[i].sql, cases[i].from_schema, "t",
                                      cases[i].to_schema, cases[i].concurrently, &err);
        ck_assert_msg(rc == 0, "%s: %s", cases[i].sql, err.message);
        ck_assert_msg(strcmp(out, cases[i].expected) == 0, "%s:\n  %s\nexpected\n  %s",
                      cases[i].sql, out, cases[i].expected);
        free(out);
    }
}
END_TEST

START_TEST(test_rewrite_bad_sql)
{
    static const struct {
        const char *sql, *message;
    } cases[] = {
        {"CREATE INDEX t_a ON", "SQL to rewrite onto green.t: syntax error at end of input at "
                                "character 20"},
        {"CREATE INDX t_a ON public.t (a)",
         "SQL to rewrite onto green.t: syntax error at or near \"INDX\" at character 8"},
        {"SELECT 1; SELECT 2", "SQL to rewrite onto green.t holds 2 statements, not one"},
        {"-- nothing", "SQL to rewrite onto green.t holds 0 statements, not one"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *out = NULL;
        sg_error err = {0};
        ck_assert_int_eq(
            sg_sql_rewrite_table(&out, cases[i].sql, "public", "t", "green", true, &err),
            SG_E_FORMAT);
        ck_assert_str_eq(err.message, cases[i].message);
        ck_assert_ptr_nonnull(strstr(err.detail, cases[i].sql));
        ck_assert_ptr_null(out);
    }
}
END_TEST

/* Every rewrite is parsed back and must give the same tree: libpg_query
 * 15-4.0, Debian's, drops NULLS NOT DISTINCT and moves a COLLATE into the
 * USING expression. Should a later one deparse these right, these cases need
 * statements that it still gets wrong. */
START_TEST(test_rewrite_unfaithful)
{
    static const struct {
        const char *sql, *deparsed;
    } cases[] = {
        {"ALTER TABLE public.t ADD UNIQUE NULLS NOT DISTINCT (a)",
         "deparsed: ALTER TABLE green.t ADD UNIQUE (a)"},
        {"ALTER TABLE t ALTER a TYPE text COLLATE \"C\" USING a::text",
         "deparsed: ALTER TABLE green.t ALTER COLUMN a TYPE text USING a::text COLLATE \"C\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *out = NULL;
        sg_error err = {0};
        ck_assert_int_eq(
            sg_sql_rewrite_table(&out, cases[i].sql, "public", "t", "green", false, &err),
            SG_E_INTERNAL);
        ck_assert_str_eq(err.message, "cannot rewrite statement onto green.t: libpg_query's "
                                      "deparser changes what it means");
        ck_assert_str_eq(err.detail, cases[i].deparsed);
        ck_assert_str_eq(err.hint, "write the statement another way");
        ck_assert_ptr_null(out);
    }

    /* in a file, the error says where */
    sg_migration m;
    sg_bluegreen_script *s = NULL;
    sg_error err = {0};
    parse(&m, BLUEGREEN("public.orders", "ALTER TABLE orders ADD COLUMN code text;\n"
                                         "  ALTER TABLE orders ADD UNIQUE NULLS NOT DISTINCT "
                                         "(code);\n"));
    ck_assert_int_eq(sg_bluegreen_script_build(&s, &m, &m.up, GREEN, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message,
                     FILE_NAME ":4:3: cannot rewrite statement onto " GREEN
                               ".orders: libpg_query's deparser changes what it means");
    ck_assert_ptr_null(s);
    sg_migration_clear(&m);
}
END_TEST

START_TEST(test_allocation_failures)
{
    static const char text[] = BLUEGREEN(
        "public.orders", "ALTER TABLE orders ADD COLUMN note text REFERENCES orders (id),\n"
                         "    ALTER COLUMN total TYPE bigint USING orders.total::bigint;\n"
                         "UPDATE orders o SET note = o.code || 'x', code = upper(code);\n"
                         "ALTER TABLE orders RENAME note TO remark;\n"
                         "ALTER TABLE orders DROP COLUMN code;\n"
                         "CREATE INDEX \"Orders_Remark\" ON orders (remark);\n");
    sg_migration m;
    sg_bluegreen_script *s = NULL;
    long n;
    int rc;
    parse(&m, text);
    for (n = 0;; n++) {
        sg_error err = {0};
        sg_mem_fail_after(n);
        rc = sg_bluegreen_script_build(&s, &m, &m.up, GREEN, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_msg(rc == SG_E_NOMEM, "%ld allocations: %d %s", n, rc, err.message);
        ck_assert_str_eq(err.message, "out of memory");
        ck_assert_ptr_null(s);
    }
    ck_assert_int_gt(n, 30);
    ck_assert_uint_eq(s->nbefore, 3);
    ASSERT_STATEMENTS(s->after, s->nafter,
                      "CREATE INDEX CONCURRENTLY \"Orders_Remark\" ON " GREEN
                      ".orders USING btree (remark)");
    ck_assert_uint_eq(s->nrenames, 1);
    ck_assert_uint_eq(s->nfills, 2);
    assert_fill(s, 0, "total", "total::bigint", 4);
    assert_fill(s, 1, "remark", "code || 'x'", 5);
    sg_bluegreen_script_free(s);
    sg_migration_clear(&m);

    char *out = NULL;
    for (n = 0;; n++) {
        sg_error err = {0};
        sg_mem_fail_after(n);
        rc = sg_sql_rewrite_table(&out, "ALTER TABLE public.t ADD FOREIGN KEY (p) REFERENCES t",
                                  "public", "t", "green", false, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_msg(rc == SG_E_NOMEM, "%ld allocations: %d %s", n, rc, err.message);
        ck_assert_ptr_null(out);
    }
    ck_assert_int_gt(n, 5);
    ck_assert_str_eq(out, "ALTER TABLE green.t ADD FOREIGN KEY (p) REFERENCES green.t");
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bluegreen_sql");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"alter_table", test_alter_table},
        {"other_schema", test_other_schema},
        {"quoted_identifiers", test_quoted_identifiers},
        {"create_index", test_create_index},
        {"fills_from_update", test_fills_from_update},
        {"fills_from_using", test_fills_from_using},
        {"renames", test_renames},
        {"sections", test_sections},
        {"not_bluegreen", test_not_bluegreen},
        {"rewrite_table", test_rewrite_table},
        {"rewrite_bad_sql", test_rewrite_bad_sql},
        {"rewrite_unfaithful", test_rewrite_unfaithful},
        {"allocation_failures", test_allocation_failures},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    TCase *tc = tcase_create("refusals");
    tcase_add_loop_test(tc, test_refusals, 0, (int)(sizeof(refusals) / sizeof(*refusals)));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
