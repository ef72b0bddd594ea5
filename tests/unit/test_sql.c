/* SQL scripts split by PostgreSQL's grammar: statement texts and positions,
 * allow comments, syntax errors and allocation failures. Columns count bytes,
 * not characters: a 'é' before a statement moves it two columns. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "common/mem.h"
#include "stages/sql.h"

static sg_sql_script *parse(const char *sql, unsigned first_line)
{
    sg_sql_script *s = NULL;
    sg_error err = {0};
    int rc = sg_sql_script_parse(&s, sql, strlen(sql), first_line, &err);
    ck_assert_msg(rc == 0, "parse: %d %s", rc, err.message);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* Parses sql expecting a failure; returns the message. */
static const char *parse_error(const char *sql, size_t len, unsigned first_line, int code)
{
    static sg_error err;
    sg_sql_script *s = (sg_sql_script *)&err; /* any non-NULL: must come back NULL */
    memset(&err, 0, sizeof(err));
    ck_assert_int_eq(sg_sql_script_parse(&s, sql, len, first_line, &err), code);
    ck_assert_int_eq(err.code, code);
    ck_assert_ptr_null(s);
    return err.message;
}

static void assert_stmt(const sg_sql_script *s, size_t i, const char *text, unsigned line,
                        unsigned column, PgQuery__Node__NodeCase kind)
{
    const sg_sql_stmt *st = sg_sql_script_stmt(s, i);
    ck_assert_msg(st != NULL, "statement %zu missing", i);
    ck_assert_msg(st->len == strlen(text) && memcmp(st->text, text, st->len) == 0,
                  "statement %zu: [%.*s], expected [%s]", i, (int)st->len, st->text, text);
    ck_assert_msg(st->line == line && st->column == column,
                  "statement %zu at %u:%u, expected %u:%u", i, st->line, st->column, line, column);
    ck_assert_ptr_nonnull(st->tree);
    ck_assert_int_eq(st->tree->node_case, kind);
}

/* The rule ids of statement i, space-separated, in the order they appear. */
static const char *allowed(const sg_sql_script *s, size_t i)
{
    static char out[256];
    const sg_sql_stmt *st = sg_sql_script_stmt(s, i);
    size_t n = 0;
    out[0] = '\0';
    ck_assert_ptr_nonnull(st);
    for (size_t j = 0; j < st->allowed_count; j++)
        n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", j ? " " : "", st->allowed[j]);
    return out;
}

#define SELECT_STMT PG_QUERY__NODE__NODE_SELECT_STMT

/* Every construct whose text holds a ';' that does not end a statement. */
static const char corpus[] =
    "-- a leading comment; with a semicolon\n"                     /* 100 */
    "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\n"     /* 101 */
    "BEGIN\n"                                                      /* 102 */
    "    -- shardgate:up; not a comment of the script\n"           /* 103 */
    "    RETURN 1;\n"                                              /* 104 */
    "END\n"                                                        /* 105 */
    "$$;\n"                                                        /* 106 */
    "SELECT $a$ one; $b$ two; $b$ three; $a$;\n"                   /* 107 */
    "/* block; /* nested; */ still; */ SELECT 2;\n"                /* 108 */
    "SELECT E'it\\'s; ok', 'it''s; ok' -- line comment;\n"         /* 109 */
    "  ;\n"                                                        /* 110 */
    "SELECT 1 AS \"odd;name\"; SELECT 3;\n"                        /* 111 */
    "DO $do$ BEGIN PERFORM 1; END $do$;\n"                         /* 112 */
    "CREATE RULE r AS ON INSERT TO t DO ALSO\n"                    /* 113 */
    "    (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));;\n" /* 114 */
    "SELECT '\xc3\xa9';  SELECT\n"                                 /* 115 */
    "  4 \n"                                                       /* 116 */
    "-- a trailing comment, and no semicolon\n";                   /* 117 */

START_TEST(test_split_corpus)
{
    sg_sql_script *s = parse(corpus, 100);
    ck_assert_uint_eq(sg_sql_script_count(s), 10);
    assert_stmt(s, 0,
                "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n"
                "    -- shardgate:up; not a comment of the script\n    RETURN 1;\nEND\n$$",
                101, 1, PG_QUERY__NODE__NODE_CREATE_FUNCTION_STMT);
    assert_stmt(s, 1, "SELECT $a$ one; $b$ two; $b$ three; $a$", 107, 1, SELECT_STMT);
    assert_stmt(s, 2, "SELECT 2", 108, 35, SELECT_STMT);
    /* the comment between the last token and the ';' is not part of the text */
    assert_stmt(s, 3, "SELECT E'it\\'s; ok', 'it''s; ok'", 109, 1, SELECT_STMT);
    assert_stmt(s, 4, "SELECT 1 AS \"odd;name\"", 111, 1, SELECT_STMT);
    assert_stmt(s, 5, "SELECT 3", 111, 25, SELECT_STMT);
    assert_stmt(s, 6, "DO $do$ BEGIN PERFORM 1; END $do$", 112, 1, PG_QUERY__NODE__NODE_DO_STMT);
    assert_stmt(s, 7,
                "CREATE RULE r AS ON INSERT TO t DO ALSO\n"
                "    (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))",
                113, 1, PG_QUERY__NODE__NODE_RULE_STMT);
    assert_stmt(s, 8, "SELECT '\xc3\xa9'", 115, 1, SELECT_STMT);
    /* bytes: 'é' is two, so SELECT is at byte 15, though it is character 14 */
    assert_stmt(s, 9, "SELECT\n  4", 115, 15, SELECT_STMT);
    ck_assert_ptr_null(sg_sql_script_stmt(s, 10));
    ck_assert_ptr_null(sg_sql_script_stmt(s, 11));
    sg_sql_script_free(s);
}
END_TEST

/* A dollar quote ends only at its own tag: an inner quote, "$outer" without
 * its closing '$', comment-like text and semicolons all stay inside it. */
START_TEST(test_split_dollar_quotes)
{
    sg_sql_script *s = parse("CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $outer$\n"
                             "  SELECT $inner$ -- shardgate:allow x; $outer $inner$; /* ; */\n"
                             "$outer$; SELECT $$;$$",
                             1);
    ck_assert_uint_eq(sg_sql_script_count(s), 2);
    assert_stmt(s, 0,
                "CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $outer$\n"
                "  SELECT $inner$ -- shardgate:allow x; $outer $inner$; /* ; */\n$outer$",
                1, 1, PG_QUERY__NODE__NODE_CREATE_FUNCTION_STMT);
    ck_assert_str_eq(allowed(s, 0), "");
    assert_stmt(s, 1, "SELECT $$;$$", 3, 10, SELECT_STMT);
    sg_sql_script_free(s);
}
END_TEST

START_TEST(test_split_empty)
{
    static const char *const scripts[] = {
        "",
        "   \n\t\n",
        "-- only a comment; with a semicolon\n",
        "/* a block; /* nested */ */\n-- and a line\n",
        ";;\n ; -- empty statements\n",
    };
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        sg_sql_script *s = parse(scripts[i], 1);
        ck_assert_msg(sg_sql_script_count(s) == 0, "script %zu: %zu statements", i,
                      sg_sql_script_count(s));
        ck_assert_ptr_null(sg_sql_script_stmt(s, 0));
        sg_sql_script_free(s);
    }
    sg_sql_script_free(NULL);
}
END_TEST

/* Semicolons of empty statements are not part of the next statement, and
 * len bounds the text: what follows it is not read. */
START_TEST(test_split_bounds)
{
    static const char sql[] = ";; ;\n  SELECT 1;;; SELECT 2; SELECT 3";
    sg_sql_script *s = NULL;
    sg_error err = {0};
    ck_assert_int_eq(sg_sql_script_parse(&s, sql, strlen(sql) - 10, 7, &err), 0);
    ck_assert_uint_eq(sg_sql_script_count(s), 2);
    assert_stmt(s, 0, "SELECT 1", 8, 3, SELECT_STMT);
    assert_stmt(s, 1, "SELECT 2", 8, 15, SELECT_STMT);
    sg_sql_script_free(s);
}
END_TEST

START_TEST(test_allow_comments)
{
    sg_sql_script *s = parse("-- shardgate:allow before-a\n"
                             "SELECT 1; -- shardgate:allow trailing-a\n"
                             "SELECT 2 -- shardgate:allow inside-b\n"
                             "  + 1; /* shardgate:allow block-b */ SELECT 3;\n"
                             "/*shardgate:allow block-d*/\n"
                             "--shardgate:allow  one,two , three,,four\t\n"
                             "SELECT 'x -- shardgate:allow in-string',\n"
                             "       $$ -- shardgate:allow in-dollar $$,\n"
                             "       \"-- shardgate:allow in-ident\";\n"
                             "-- see shardgate:allow for the syntax\n"
                             "-- shardgate:allowed prose\n"
                             "-- shardgate:allow crlf\r\n"
                             "SELECT 5;\n"
                             "SELECT 6; -- shardgate:allow after-6\n"
                             "-- shardgate:allow after-last\n",
                             1);
    ck_assert_uint_eq(sg_sql_script_count(s), 6);
    ck_assert_str_eq(allowed(s, 0), "before-a trailing-a");
    ck_assert_str_eq(allowed(s, 1), "inside-b block-b");
    /* the block comment trails statement 1 on the line where it ends */
    ck_assert_str_eq(allowed(s, 2), "");
    ck_assert_str_eq(allowed(s, 3), "block-d one two three four");
    ck_assert_str_eq(allowed(s, 4), "crlf");
    ck_assert_str_eq(allowed(s, 5), "after-6");

    const sg_sql_stmt *st = sg_sql_script_stmt(s, 3);
    ck_assert_int_eq(sg_sql_stmt_allows(st, "three"), 1);
    ck_assert_int_eq(sg_sql_stmt_allows(st, "thre"), 0);
    ck_assert_int_eq(sg_sql_stmt_allows(st, "in-string"), 0);
    ck_assert_int_eq(sg_sql_stmt_allows(sg_sql_script_stmt(s, 2), "block-b"), 0);
    sg_sql_script_free(s);
}
END_TEST

/* A comment after the last statement belongs to it only on its last line. */
START_TEST(test_allow_after_last)
{
    sg_sql_script *s = parse("SELECT 1\n-- shardgate:allow later\n", 1);
    ck_assert_str_eq(allowed(s, 0), "");
    sg_sql_script_free(s);
    s = parse("SELECT 1 -- shardgate:allow same-line\n-- shardgate:allow later\n", 1);
    ck_assert_str_eq(allowed(s, 0), "same-line");
    assert_stmt(s, 0, "SELECT 1", 1, 1, SELECT_STMT);
    sg_sql_script_free(s);
    s = parse("SELECT 1;\n-- shardgate:allow later\n;SELECT 2", 1);
    ck_assert_str_eq(allowed(s, 0), "");
    ck_assert_str_eq(allowed(s, 1), "later");
    sg_sql_script_free(s);
}
END_TEST

START_TEST(test_syntax_errors)
{
    static const char two[] = "SELECT 1;\nSELEC 2;\n";
    static const char open_paren[] = "SELECT 1;\n  SELECT (1;";
    static const char multibyte[] = "SELECT '\xc3\xa9\xc3\xa9\xc3\xa9', 1 1;";
    static const char at_end[] = "SELECT (1";
    ck_assert_str_eq(parse_error(two, strlen(two), 20, SG_E_FORMAT),
                     "21:1: syntax error at or near \"SELEC\"");
    ck_assert_str_eq(parse_error(open_paren, strlen(open_paren), 20, SG_E_FORMAT),
                     "21:12: syntax error at or near \";\"");
    /* the parser counts characters; the column counts bytes like the others */
    ck_assert_str_eq(parse_error(multibyte, strlen(multibyte), 3, SG_E_FORMAT),
                     "3:20: syntax error at or near \"1\"");
    ck_assert_str_eq(parse_error(at_end, strlen(at_end), 1, SG_E_FORMAT),
                     "1:10: syntax error at end of input");
}
END_TEST

START_TEST(test_unterminated)
{
    static const char dollar[] = "SELECT 1;\nSELECT $x$ body; $y$;\n";
    static const char string[] = "SELECT 1;\n\nSELECT 'abc;";
    static const char estring[] = "SELECT E'abc\\';";
    static const char comment[] = "SELECT 1; /* open /* nested */";
    static const char ident[] = "SELECT \"abc;";
    ck_assert_str_eq(parse_error(dollar, strlen(dollar), 5, SG_E_FORMAT),
                     "6:8: unterminated dollar-quoted string at or near \"$x$ body; $y$;\n\"");
    ck_assert_str_eq(parse_error(string, strlen(string), 5, SG_E_FORMAT),
                     "7:8: unterminated quoted string at or near \"'abc;\"");
    ck_assert_str_eq(parse_error(estring, strlen(estring), 1, SG_E_FORMAT),
                     "1:8: unterminated quoted string at or near \"E'abc\\';\"");
    ck_assert_str_eq(parse_error(comment, strlen(comment), 1, SG_E_FORMAT),
                     "1:11: unterminated /* comment at or near \"/* open /* nested */\"");
    ck_assert_str_eq(parse_error(ident, strlen(ident), 1, SG_E_FORMAT),
                     "1:8: unterminated quoted identifier at or near \"\"abc;\"");
}
END_TEST

/* A NUL would end the parser's string early; the statement after it must not
 * be dropped silently. */
START_TEST(test_nul_byte)
{
    static const char sql[] = "SELECT 1;\n  \0SELECT 2;";
    ck_assert_str_eq(parse_error(sql, sizeof(sql) - 1, 4, SG_E_FORMAT),
                     "5:3: NUL byte in SQL text");
}
END_TEST

START_TEST(test_position)
{
    static const char text[] = "ab\n\xc3\xa9x\n\nz";
    unsigned line = 0, column = 0;
    static const struct {
        size_t offset;
        unsigned line, column;
    } cases[] = {
        {0, 10, 1}, {2, 10, 3},  /* the newline ending line 10 */
        {3, 11, 1}, {5, 11, 3},  /* 'x', after the two bytes of 'é' */
        {7, 12, 1}, {8, 13, 1},  /* an empty line, then 'z' */
        {9, 13, 2}, {50, 13, 2}, /* past the end: stops at the NUL */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sg_sql_position(text, cases[i].offset, 10, &line, &column);
        ck_assert_msg(line == cases[i].line && column == cases[i].column,
                      "offset %zu: %u:%u, expected %u:%u", cases[i].offset, line, column,
                      cases[i].line, cases[i].column);
    }
}
END_TEST

/* Every allocation in turn fails: each run fails cleanly with SG_E_NOMEM
 * (the sanitizer reports any leak) until there are enough to succeed. */
START_TEST(test_allocation_failure)
{
    static const char sql[] = "-- shardgate:allow a, b\n"
                              "CREATE TABLE t (id int PRIMARY KEY, v text DEFAULT 'x');\n"
                              "SELECT 1; -- shardgate:allow c\n"
                              "/* shardgate:allow d e f g h */ CREATE INDEX ON t (v)";
    sg_sql_script *s = NULL;
    long n;
    int rc;
    for (n = 0;; n++) {
        sg_error err = {0};
        sg_mem_fail_after(n);
        rc = sg_sql_script_parse(&s, sql, strlen(sql), 1, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_msg(rc == SG_E_NOMEM, "%ld allocations: %d %s", n, rc, err.message);
        ck_assert_str_eq(err.message, "out of memory");
        ck_assert_ptr_null(s);
    }
    /* the copy, the trees, the statements, the bounds, every rule id */
    ck_assert_int_gt(n, 15);
    ck_assert_uint_eq(sg_sql_script_count(s), 3);
    ck_assert_str_eq(allowed(s, 0), "a b");
    ck_assert_str_eq(allowed(s, 1), "c");
    ck_assert_str_eq(allowed(s, 2), "d e f g h");
    sg_sql_script_free(s);
}
END_TEST

static Suite *sql_suite(void)
{
    Suite *suite = suite_create("sql");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"split_corpus", test_split_corpus},
        {"split_dollar_quotes", test_split_dollar_quotes},
        {"split_empty", test_split_empty},
        {"split_bounds", test_split_bounds},
        {"allow_comments", test_allow_comments},
        {"allow_after_last", test_allow_after_last},
        {"syntax_errors", test_syntax_errors},
        {"unterminated", test_unterminated},
        {"nul_byte", test_nul_byte},
        {"position", test_position},
        {"allocation_failure", test_allocation_failure},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(suite, tc);
    }
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(sql_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
