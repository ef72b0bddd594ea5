/* The HTML run report in a browser. A small real run (three shards on a
 * real server: a canary, then a wave of two where the big shard fails its
 * rehearsal's verify) writes its page with `shardgate run --report`, and
 * headless Chromium loads it: the DOM it builds holds the SVG timeline with
 * a bar per shard and gate that ran, each with its result, and a screenshot
 * of the page comes out. Chromium is required, not optional: CI installs it
 * (ci/install-deps.sh), and without it the test fails saying so. */
#include "tests/harness/cli.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { EXIT_SHARDS_FAILED = 17 };

#define NSHARDS 3
/* s3 has more rows than its verify section allows. */
#define BIG 2

static sgt_pg_server *pg;
static char root[] = "/tmp/sgt-report-html-XXXXXX";
static char key[512], pub[512];
static char *bindir;

static const char *const names[NSHARDS] = {"s1", "s2", "s3"};

static const char add_note[] = "-- shardgate:up\n"
                               "ALTER TABLE items ADD COLUMN note text;\n"
                               "-- shardgate:down\n"
                               "ALTER TABLE items DROP COLUMN note;\n"
                               "-- shardgate:verify\n"
                               "SELECT count(*) < 1000 FROM items;\n";

static const char pipeline_yaml[] = "version: 1\n"
                                    "name: reportest\n"
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
                                    "  - name: wave\n"
                                    "    ring: wave\n"
                                    "    parallel: 2\n"
                                    "    max_failures: 1\n";

/* The browser's path, or NULL when it is not in PATH. */
static char *find_chromium(void)
{
    const char *path = getenv("PATH");
    char *copy = strdup(path ? path : "/usr/bin:/bin"), *save = NULL, *found = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *candidate = sgt_asprintf("%s/chromium", d);
        if (access(candidate, X_OK) == 0)
            found = candidate;
        else
            free(candidate);
    }
    free(copy);
    return found;
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void assert_contains(const char *text, const char *want)
{
    ck_assert_msg(strstr(text, want), "expected \"%s\" in:\n%s", want, text);
}

/* Three databases, the migration, the keys and the pipeline file in a
 * directory of the test's own, with TMPDIR there for the sandboxes. */
static char *setup(void)
{
    char *dir = sgt_asprintf("%s/run", root), *keys = sgt_asprintf("%s/keys", dir),
         *migrations = sgt_asprintf("%s/migrations", dir), *tmp = sgt_asprintf("%s/tmp", dir);
    char *fleet = strdup(""), *text, *copy;
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(mkdir(keys, 0755), 0);
    ck_assert_int_eq(mkdir(migrations, 0755), 0);
    copy = sgt_asprintf("cp -p '%s' '%s' '%s'", key, pub, keys);
    sgt_sh(copy);
    /* As root, the sandbox's server runs as another user, who must reach it. */
    ck_assert_int_eq(mkdir(tmp, 01777), 0);
    ck_assert_int_eq(chmod(tmp, 01777), 0);
    ck_assert_int_eq(setenv("TMPDIR", tmp, 1), 0);
    for (int i = 0; i < NSHARDS; i++) {
        char *db = sgt_pg_create_db(pg, names[i]), *next, *sql;
        sql =
            sgt_asprintf("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
                         "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, %d) g;",
                         i == BIG ? 1500 : 50);
        sgt_pg_exec(db, sql);
        next = sgt_asprintf("%s  - {name: %s, dsn: \"%s\", ring: %s}\n", fleet, names[i], db,
                            i == 0 ? "canary" : "wave");
        free(fleet);
        fleet = next;
        free(sql);
        free(db);
    }
    sgt_write_file(migrations, "0001_add_note.sql", add_note);
    text = sgt_asprintf(pipeline_yaml, fleet);
    sgt_write_file(dir, "pipeline.yaml", text);
    free(text);
    free(fleet);
    free(copy);
    free(tmp);
    free(migrations);
    free(keys);
    return dir;
}

/* Width and height from a PNG's IHDR chunk, after checking its signature. */
static void png_size(uint32_t *width, uint32_t *height, const unsigned char *png, size_t len)
{
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ck_assert_uint_gt(len, 24);
    ck_assert_msg(memcmp(png, signature, 8) == 0, "not a PNG");
    ck_assert_msg(memcmp(png + 12, "IHDR", 4) == 0, "no IHDR chunk first");
    *width = (uint32_t)png[16] << 24 | (uint32_t)png[17] << 16 | (uint32_t)png[18] << 8 | png[19];
    *height = (uint32_t)png[20] << 24 | (uint32_t)png[21] << 16 | (uint32_t)png[22] << 8 | png[23];
}

/* Runs headless Chromium on the page with what to produce and one more
 * option (or NULL); returns what it printed on stdout. As root it needs
 * --no-sandbox. */
static char *chromium(const char *browser, const char *dir, const char *page, const char *what,
                      const char *option)
{
    char *profile = sgt_asprintf("--user-data-dir=%s/chromium", dir);
    char *url = sgt_asprintf("file://%s", page);
    const char *const argv[] = {browser,
                                "--headless=new",
                                "--no-sandbox",
                                "--disable-gpu",
                                profile,
                                what,
                                option ? option : url,
                                option ? url : NULL,
                                NULL};
    sgt_result r = {0};
    char *out;
    sgt_run(&r, argv, NULL);
    ck_assert_msg(r.status == 0, "chromium %s exited with %d:\n%s", what, r.status, r.err);
    out = r.out;
    r.out = NULL;
    sgt_result_free(&r);
    free(url);
    free(profile);
    return out;
}

START_TEST(test_run_report_in_chromium)
{
    static const char *const ran[] = {
        "data-shard=\"s1\" data-gate=\"snapshot\"", "data-shard=\"s1\" data-gate=\"test-restore\"",
        "data-shard=\"s1\" data-gate=\"apply\"",    "data-shard=\"s1\" data-gate=\"verify\"",
        "data-shard=\"s2\" data-gate=\"snapshot\"", "data-shard=\"s2\" data-gate=\"test-restore\"",
        "data-shard=\"s2\" data-gate=\"apply\"",    "data-shard=\"s2\" data-gate=\"verify\"",
        "data-shard=\"s3\" data-gate=\"snapshot\""};
    char *browser = find_chromium();
    ck_assert_msg(browser, "chromium is not installed: the HTML run report is checked in headless "
                           "Chromium (ci/install-deps.sh installs the chromium package)");
    char *dir = setup();
    char *file = sgt_asprintf("%s/pipeline.yaml", dir), *journal = sgt_asprintf("%s/j.json", dir);
    char *page = sgt_asprintf("%s/run.html", dir), *png = sgt_asprintf("%s/run.png", dir);
    char *shot = sgt_asprintf("--screenshot=%s", png);
    const char *const argv[] = {"shardgate",   "run",  file,       "--journal", journal,
                                "--pg-bindir", bindir, "--report", page,        NULL};
    char *out = sgt_shardgate(EXIT_SHARDS_FAILED, argv), *dom, *html;
    size_t png_len = 0;
    unsigned char *image;
    uint32_t width, height;
    free(out);

    /* The page as written: s3 failed its test restore, its apply and
     * verify never ran. */
    html = sgt_read_file(page, NULL);
    ck_assert_ptr_nonnull(html);
    ck_assert_uint_eq(count(html, "<rect class=\"gate "), 10);

    /* The DOM Chromium built from it: the same bars, as attributes. */
    dom = chromium(browser, dir, page, "--dump-dom", NULL);
    ck_assert_uint_eq(count(dom, "<svg"), 1);
    ck_assert_uint_eq(count(dom, "<rect class=\"gate "), 10);
    ck_assert_uint_eq(count(dom, "result-ok\" data-shard="), 9);
    for (size_t i = 0; i < sizeof(ran) / sizeof(ran[0]); i++) {
        char *want = sgt_asprintf("result-ok\" %s", ran[i]);
        assert_contains(dom, want);
        free(want);
    }
    assert_contains(dom, "<rect class=\"gate gate-test-restore result-failed\" data-shard=\"s3\" "
                         "data-gate=\"test-restore\"");
    ck_assert_uint_eq(count(dom, "data-shard=\"s3\" data-gate=\"apply\""), 0);
    assert_contains(dom, "<td>s3</td><td>test-restore</td>");

    /* It renders: a screenshot of the window's size. */
    free(chromium(browser, dir, page, shot, "--window-size=1280,900"));
    image = (unsigned char *)sgt_read_file(png, &png_len);
    ck_assert_msg(image, "chromium wrote no screenshot at %s", png);
    png_size(&width, &height, image, png_len);
    ck_assert_uint_eq(width, 1280);
    ck_assert_uint_eq(height, 900);

    free(image);
    free(dom);
    free(html);
    free(shot);
    free(png);
    free(page);
    free(journal);
    free(file);
    free(dir);
    free(browser);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("report_html");
    TCase *tc = tcase_create("chromium");
    tcase_add_test(tc, test_run_report_in_chromium);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;
    pg = sgt_pg_start();
    bindir = sgt_pg_bindir();
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    /* As root, sandbox servers run as another user, who must reach TMPDIR. */
    chmod(root, 0755);
    sgt_keygen_or_exit(root, "runner", key, pub);
    sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sgt_remove_tree(root);
    free(bindir);
    sgt_pg_stop(pg);
    return failed ? 1 : 0;
}
