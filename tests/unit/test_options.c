#include <check.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/options.h"

typedef struct settings {
    bool verbose;
    const char *store;
    int jobs;
    int level;
    uint64_t chunk_size;
    sg_strlist tables;
} settings;

static const sg_option table[] = {
    {"verbose", SG_OPT_FLAG, offsetof(settings, verbose), NULL, "say more", 0, 0},
    {"store", SG_OPT_STRING, offsetof(settings, store), "URL", "where snapshots live", 0, 0},
    {"jobs", SG_OPT_INT, offsetof(settings, jobs), "N", "parallel workers", 1, 64},
    {"level", SG_OPT_INT, offsetof(settings, level), "N", "compression level", 0, 0},
    {"chunk-size", SG_OPT_SIZE, offsetof(settings, chunk_size), "SIZE", "chunk size", 0, 0},
    {"table", SG_OPT_LIST, offsetof(settings, tables), "NAME", "only this table", 0, 0},
    {NULL, 0, 0, NULL, NULL, 0, 0},
};

static settings s;
static sg_strlist positional;
static int help;
static sg_error err;

static void setup(void)
{
    static const char *vars[] = {"SHARDGATE_VERBOSE", "SHARDGATE_STORE",      "SHARDGATE_JOBS",
                                 "SHARDGATE_LEVEL",   "SHARDGATE_CHUNK_SIZE", "SHARDGATE_TABLE"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    memset(&s, 0, sizeof(s));
    s.jobs = 4;
    memset(&positional, 0, sizeof(positional));
    help = -1;
    sg_error_clear(&err);
}

static void teardown(void)
{
    sg_options_free(&s, table);
    free(positional.items);
    positional.items = NULL;
}

/* Parses "snapshot" followed by the NULL-terminated arguments. */
static int parse(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    argv[argc++] = "snapshot";
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        ck_assert_int_lt(argc, 31);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    free(positional.items);
    return sg_options_parse(&s, table, argc, argv, &positional, &help, &err);
}

static void assert_contains(const char *haystack, const char *needle)
{
    ck_assert_msg(strstr(haystack, needle) != NULL, "\"%s\" does not contain \"%s\"", haystack,
                  needle);
}

static void assert_usage(int rc, const char *message)
{
    ck_assert_int_eq(rc, SG_E_USAGE);
    ck_assert_int_eq(err.code, SG_E_USAGE);
    ck_assert_str_eq(err.message, message);
}

START_TEST(test_nothing)
{
    ck_assert_int_eq(parse(NULL), 0);
    ck_assert_int_eq(help, 0);
    ck_assert_uint_eq(positional.count, 0);
    ck_assert(!s.verbose);
    ck_assert_ptr_null(s.store);
    ck_assert_int_eq(s.jobs, 4); /* defaults stay */
}
END_TEST

START_TEST(test_flag)
{
    ck_assert_int_eq(parse("--verbose", NULL), 0);
    ck_assert(s.verbose);
    assert_usage(parse("--verbose=1", NULL), "option --verbose takes no value");
    assert_usage(parse("--verbose=", NULL), "option --verbose takes no value");
}
END_TEST

/* A flag takes no value, so the next argument is positional. */
START_TEST(test_flag_then_positional)
{
    ck_assert_int_eq(parse("--verbose", "shard-a", NULL), 0);
    ck_assert(s.verbose);
    ck_assert_uint_eq(positional.count, 1);
    ck_assert_str_eq(positional.items[0], "shard-a");
}
END_TEST

START_TEST(test_flag_env)
{
    static const struct {
        const char *value;
        bool set;
    } cases[] = {{"1", true},  {"true", true}, {"YES", true}, {"On", true},
                 {"0", false}, {"no", false},  {"off", false}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        s.verbose = !cases[i].set;
        setenv("SHARDGATE_VERBOSE", cases[i].value, 1);
        ck_assert_int_eq(parse(NULL), 0);
        ck_assert_msg(s.verbose == cases[i].set, "SHARDGATE_VERBOSE=%s", cases[i].value);
    }
    /* The flag wins over the environment. */
    setenv("SHARDGATE_VERBOSE", "0", 1);
    ck_assert_int_eq(parse("--verbose", NULL), 0);
    ck_assert(s.verbose);
    /* An empty variable is not set. */
    s.verbose = true;
    setenv("SHARDGATE_VERBOSE", "", 1);
    ck_assert_int_eq(parse(NULL), 0);
    ck_assert(s.verbose);
}
END_TEST

START_TEST(test_string)
{
    ck_assert_int_eq(parse("--store=file:///a", NULL), 0);
    ck_assert_str_eq(s.store, "file:///a");
    ck_assert_int_eq(parse("--store", "file:///b", NULL), 0);
    ck_assert_str_eq(s.store, "file:///b");
    /* A value may contain '=' and may start with '-' when given separately. */
    ck_assert_int_eq(parse("--store=a=b", NULL), 0);
    ck_assert_str_eq(s.store, "a=b");
    ck_assert_int_eq(parse("--store", "-dash", NULL), 0);
    ck_assert_str_eq(s.store, "-dash");
    ck_assert_int_eq(parse("--store=", NULL), 0);
    ck_assert_str_eq(s.store, "");
    /* The last one wins. */
    ck_assert_int_eq(parse("--store=x", "--store=y", NULL), 0);
    ck_assert_str_eq(s.store, "y");
}
END_TEST

START_TEST(test_env_fallback)
{
    setenv("SHARDGATE_STORE", "file:///env", 1);
    setenv("SHARDGATE_CHUNK_SIZE", "1M", 1);
    ck_assert_int_eq(parse(NULL), 0);
    ck_assert_str_eq(s.store, "file:///env");
    ck_assert_uint_eq(s.chunk_size, 1 << 20);
    ck_assert_int_eq(parse("--store", "file:///flag", "--chunk-size=2M", NULL), 0);
    ck_assert_str_eq(s.store, "file:///flag");
    ck_assert_uint_eq(s.chunk_size, 2 << 20);
}
END_TEST

START_TEST(test_env_invalid)
{
    setenv("SHARDGATE_JOBS", "100", 1);
    assert_usage(parse(NULL), "invalid value \"100\" for SHARDGATE_JOBS");
    ck_assert_str_eq(err.hint, "use a whole number from 1 to 64");
    setenv("SHARDGATE_JOBS", "8", 1);
    setenv("SHARDGATE_CHUNK_SIZE", "lots", 1);
    assert_usage(parse(NULL), "SHARDGATE_CHUNK_SIZE: invalid size \"lots\"");
}
END_TEST

START_TEST(test_int)
{
    ck_assert_int_eq(parse("--jobs", "1", NULL), 0);
    ck_assert_int_eq(s.jobs, 1);
    ck_assert_int_eq(parse("--jobs=64", NULL), 0);
    ck_assert_int_eq(s.jobs, 64);
    ck_assert_int_eq(parse("--level=-7", NULL), 0);
    ck_assert_int_eq(s.level, -7);
    ck_assert_int_eq(parse("--level", "2147483647", NULL), 0);
    ck_assert_int_eq(s.level, 2147483647);
    ck_assert_int_eq(parse("--level", "-2147483648", NULL), 0);
    ck_assert_int_eq(s.level, -2147483647 - 1);
}
END_TEST

START_TEST(test_int_invalid)
{
    static const char *bounded[] = {"0", "65", "-1", "4x", "", "4.0", "0x10"};
    static const char *unbounded[] = {"2147483648", "-2147483649", "99999999999999999999", "x", ""};
    for (size_t i = 0; i < sizeof(bounded) / sizeof(bounded[0]); i++) {
        char msg[64];
        s.jobs = 4;
        snprintf(msg, sizeof(msg), "invalid value \"%s\" for --jobs", bounded[i]);
        assert_usage(parse("--jobs", bounded[i], NULL), msg);
        ck_assert_str_eq(err.hint, "use a whole number from 1 to 64");
        ck_assert_int_eq(s.jobs, 4);
    }
    for (size_t i = 0; i < sizeof(unbounded) / sizeof(unbounded[0]); i++) {
        char msg[64];
        snprintf(msg, sizeof(msg), "invalid value \"%s\" for --level", unbounded[i]);
        assert_usage(parse("--level", unbounded[i], NULL), msg);
        ck_assert_str_eq(err.hint, "");
    }
}
END_TEST

START_TEST(test_size)
{
    static const struct {
        const char *text;
        uint64_t value;
    } cases[] = {
        {"0", 0},
        {"7", 7},
        {"10b", 10},
        {"512k", 512 << 10},
        {"64KB", 64 << 10},
        {"2KiB", 2 << 10},
        {"32MiB", 32ULL << 20},
        {"3m", 3ULL << 20},
        {"1G", 1ULL << 30},
        {"5gb", 5ULL << 30},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183G", UINT64_MAX - (1ULL << 30) + 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 1;
        ck_assert_msg(sg_parse_size(&v, cases[i].text, &err) == 0, "%s: %s", cases[i].text,
                      err.message);
        ck_assert_msg(v == cases[i].value, "%s: %llu", cases[i].text, (unsigned long long)v);
    }
    ck_assert_int_eq(parse("--chunk-size", "32MiB", NULL), 0);
    ck_assert_uint_eq(s.chunk_size, 32ULL << 20);
    ck_assert_int_eq(parse("--chunk-size=4k", NULL), 0);
    ck_assert_uint_eq(s.chunk_size, 4096);
}
END_TEST

START_TEST(test_size_invalid)
{
    static const char *bad[] = {"", "k", "-1", " 1", "1 k", "1.5G", "1T", "1kk", "1ki", "0x10",
                                /* overflow, before and after the unit */
                                "18446744073709551616", "17179869184G", "17592186044416M",
                                "18014398509481984k", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 12345;
        char msg[128];
        sg_error_clear(&err);
        snprintf(msg, sizeof(msg), "invalid size \"%s\"", bad[i]);
        assert_usage(sg_parse_size(&v, bad[i], &err), msg);
        ck_assert_str_eq(err.hint, "use a number with an optional unit, e.g. 512k, 32MiB or 1G");
        ck_assert_uint_eq(v, 12345);
    }
    assert_usage(parse("--chunk-size=1T", NULL), "--chunk-size: invalid size \"1T\"");
    assert_contains(err.hint, "32MiB");
}
END_TEST

START_TEST(test_list)
{
    ck_assert_int_eq(parse("--table", "a", "--table=b", "--table", "c", NULL), 0);
    ck_assert_uint_eq(s.tables.count, 3);
    ck_assert_str_eq(s.tables.items[0], "a");
    ck_assert_str_eq(s.tables.items[1], "b");
    ck_assert_str_eq(s.tables.items[2], "c");
    sg_options_free(&s, table);
    ck_assert_ptr_null(s.tables.items);
    ck_assert_uint_eq(s.tables.count, 0);
}
END_TEST

START_TEST(test_unknown)
{
    int rc = parse("--nope", NULL);
    assert_usage(rc, "unknown option \"--nope\"");
    ck_assert_str_eq(err.hint, "run \"shardgate snapshot --help\" for the options of this command");
    assert_usage(parse("--nope=3", NULL), "unknown option \"--nope\"");
    /* No prefix matching. */
    assert_usage(parse("--job", "3", NULL), "unknown option \"--job\"");
    assert_usage(parse("--jobsx=3", NULL), "unknown option \"--jobsx\"");
    assert_usage(parse("-v", NULL), "unknown option \"-v\"");
    assert_usage(parse("---", NULL), "unknown option \"---\"");
    assert_usage(parse("--=x", NULL), "unknown option \"--\"");
}
END_TEST

START_TEST(test_missing_value)
{
    assert_usage(parse("--store", NULL), "option --store needs a value (URL)");
    assert_usage(parse("--verbose", "--jobs", NULL), "option --jobs needs a value (N)");
    assert_usage(parse("--chunk-size", NULL), "option --chunk-size needs a value (SIZE)");
    assert_usage(parse("--table", NULL), "option --table needs a value (NAME)");
}
END_TEST

START_TEST(test_positional)
{
    ck_assert_int_eq(parse("a", "--jobs", "2", "-", "b", "--", "--verbose", "--", "-x", NULL), 0);
    ck_assert_int_eq(s.jobs, 2);
    ck_assert(!s.verbose);
    ck_assert_uint_eq(positional.count, 6);
    ck_assert_str_eq(positional.items[0], "a");
    ck_assert_str_eq(positional.items[1], "-");
    ck_assert_str_eq(positional.items[2], "b");
    ck_assert_str_eq(positional.items[3], "--verbose");
    ck_assert_str_eq(positional.items[4], "--");
    ck_assert_str_eq(positional.items[5], "-x");
}
END_TEST

START_TEST(test_help)
{
    ck_assert_int_eq(parse("--help", NULL), 0);
    ck_assert_int_eq(help, 1);
    ck_assert_int_eq(parse("--jobs", "3", "-h", "x", NULL), 0);
    ck_assert_int_eq(help, 1);
    ck_assert_int_eq(s.jobs, 3);
    ck_assert_uint_eq(positional.count, 1);
    ck_assert_int_eq(parse("--", "--help", NULL), 0);
    ck_assert_int_eq(help, 0);
    ck_assert_uint_eq(positional.count, 1);
}
END_TEST

START_TEST(test_print_help)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    sg_options_print_help(out, table);
    fclose(out);
    assert_contains(text, "  --verbose                    say more\n");
    assert_contains(text, "  --store URL                  where snapshots live\n");
    assert_contains(text, "  --chunk-size SIZE            chunk size\n");
    assert_contains(text, "  --table NAME                 only this table (repeatable)\n");
    free(text);
}
END_TEST

START_TEST(test_nomem)
{
    sg_mem_fail_after(0);
    ck_assert_int_eq(parse("--table", "a", NULL), SG_E_NOMEM);
    ck_assert_str_eq(err.message, "out of memory");
    ck_assert_int_eq(parse("a", NULL), SG_E_NOMEM);
    sg_mem_fail_reset();
}
END_TEST

START_TEST(test_format_size)
{
    static const struct {
        uint64_t bytes;
        const char *text;
    } cases[] = {
        {0, "0 B"},
        {1, "1 B"},
        {1023, "1023 B"},
        {1024, "1.0 KiB"},
        {1536, "1.5 KiB"},
        {1ULL << 20, "1.0 MiB"},
        {(3ULL << 30) / 2, "1.5 GiB"},
        {2ULL << 40, "2.0 TiB"},
        {5ULL << 50, "5120.0 TiB"},
        {UINT64_MAX, "16777216.0 TiB"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sg_format_size(out, sizeof(out), cases[i].bytes);
        ck_assert_str_eq(out, cases[i].text);
    }
    /* A short buffer is truncated, not overrun. */
    sg_format_size(out, 4, 1536);
    ck_assert_str_eq(out, "1.5");
}
END_TEST

START_TEST(test_duration)
{
    static const struct {
        const char *text;
        uint64_t ms;
    } good[] = {{"0", 0},         {"90", 90000},    {"500ms", 500},     {"90s", 90000},
                {"15m", 900000},  {"2h", 7200000},  {"1h30m", 5400000}, {"2d", 172800000},
                {"1m30s", 90000}, {"1s500ms", 1500}};
    static const char *const bad[] = {
        "", "m", "15x", "1h30", "-5s", "1.5h", "5 m", "5M", "s5", "1h 2m", "99999999999999999999d"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ms = 1;
        ck_assert_msg(sg_parse_duration(&ms, good[i].text, &err) == 0, "%s: %s", good[i].text,
                      err.message);
        ck_assert_uint_eq(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 7;
        ck_assert_msg(sg_parse_duration(&ms, bad[i], &err) == SG_E_USAGE, "\"%s\" accepted",
                      bad[i]);
        ck_assert_uint_eq(ms, 7);
        assert_contains(err.message, "invalid duration");
    }
}
END_TEST

/* A shared table included at an offset: its options parse into the nested
 * struct, from flags and from the environment, and show in the help. */
typedef struct shared {
    const char *endpoint;
    uint64_t part_size;
    sg_strlist extra;
} shared;

typedef struct outer {
    int jobs;
    shared net;
} outer;

static const sg_option shared_table[] = {
    {"endpoint", SG_OPT_STRING, offsetof(shared, endpoint), "URL", "where to go", 0, 0},
    {"part-size", SG_OPT_SIZE, offsetof(shared, part_size), "SIZE", "part size", 0, 0},
    {"extra", SG_OPT_LIST, offsetof(shared, extra), "X", "more", 0, 0},
    {0}};

static const sg_option outer_table[] = {
    {"jobs", SG_OPT_INT, offsetof(outer, jobs), "N", "workers", 1, 8},
    SG_OPTIONS_INCLUDE(offsetof(outer, net), shared_table),
    {0}};

START_TEST(test_included_table)
{
    char *argv[] = {"cmd", "--endpoint=http://x", "--jobs", "3", "--extra", "a", "--extra", "b",
                    NULL};
    outer o = {0};
    sg_strlist pos = {0};
    int h;
    char *text = NULL;
    size_t len = 0;
    FILE *out;
    setenv("SHARDGATE_PART_SIZE", "8MiB", 1);
    setenv("SHARDGATE_ENDPOINT", "http://from-env", 1);
    ck_assert_int_eq(sg_options_parse(&o, outer_table, 8, argv, &pos, &h, &err), 0);
    unsetenv("SHARDGATE_PART_SIZE");
    unsetenv("SHARDGATE_ENDPOINT");
    ck_assert_int_eq(o.jobs, 3);
    ck_assert_str_eq(o.net.endpoint, "http://x"); /* the flag wins over the environment */
    ck_assert_uint_eq(o.net.part_size, 8ULL << 20);
    ck_assert_uint_eq(o.net.extra.count, 2);
    ck_assert_str_eq(o.net.extra.items[1], "b");
    sg_options_free(&o, outer_table);
    ck_assert_ptr_null(o.net.extra.items);
    free(pos.items);
    out = open_memstream(&text, &len);
    sg_options_print_help(out, outer_table);
    fclose(out);
    assert_contains(text, "  --jobs N                     workers\n");
    assert_contains(text, "  --part-size SIZE             part size\n");
    free(text);
    {
        char *bad[] = {"cmd", "--part-size", "lots", NULL};
        outer o2 = {0};
        assert_usage(sg_options_parse(&o2, outer_table, 3, bad, &pos, &h, &err),
                     "--part-size: invalid size \"lots\"");
        free(pos.items);
    }
}
END_TEST

static Suite *options_suite(void)
{
    Suite *suite = suite_create("options");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_checked_fixture(tc, setup, teardown);                                                \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(suite, tc)
    CASE("nothing", test_nothing);
    CASE("flag", test_flag);
    CASE("flag then positional", test_flag_then_positional);
    CASE("flag env", test_flag_env);
    CASE("string", test_string);
    CASE("env fallback", test_env_fallback);
    CASE("env invalid", test_env_invalid);
    CASE("int", test_int);
    CASE("int invalid", test_int_invalid);
    CASE("size", test_size);
    CASE("size invalid", test_size_invalid);
    CASE("list", test_list);
    CASE("unknown", test_unknown);
    CASE("missing value", test_missing_value);
    CASE("positional", test_positional);
    CASE("help", test_help);
    CASE("print help", test_print_help);
    CASE("nomem", test_nomem);
    CASE("format size", test_format_size);
    CASE("included table", test_included_table);
    CASE("duration", test_duration);
#undef CASE
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(options_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
