/* Whole local files: reading one into memory, replacing one atomically. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/mem.h"
#include "tests/harness/run.h"

static char dir[64];

static void make_dir(void)
{
    strcpy(dir, "/tmp/sg-test-file-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
    sgt_remove_tree(dir);
}

static const char *path_of(const char *name)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

static void write_file(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(path_of(name), "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* Reads name expecting an error: nothing is returned. */
static const char *read_fails(const char *name, size_t max, int code)
{
    static sg_error err;
    char *data = (char *)&err; /* any non-NULL: must come back NULL */
    size_t len = 99;
    memset(&err, 0, sizeof(err));
    ck_assert_int_eq(sg_file_read(&data, &len, path_of(name), max, &err), code);
    ck_assert_int_eq(err.code, code);
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    return err.message;
}

/* The whole file, with a NUL after it that is not counted, NULs inside kept;
 * a file of exactly max bytes is not too large. */
START_TEST(test_read)
{
    static const char text[] = "line one\n\0binary\xff";
    char *data = NULL;
    size_t len = 0;
    sg_error err = {0};
    write_file("a", text, sizeof(text) - 1);
    ck_assert_int_eq(sg_file_read(&data, &len, path_of("a"), sizeof(text) - 1, &err), 0);
    ck_assert_uint_eq(len, sizeof(text) - 1);
    ck_assert_mem_eq(data, text, sizeof(text));
    free(data);

    write_file("empty", "", 0);
    ck_assert_int_eq(sg_file_read(&data, &len, path_of("empty"), 0, &err), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(data, "");
    free(data);
}
END_TEST

START_TEST(test_read_errors)
{
    char expected[160];
    write_file("ten", "0123456789", 10);
    snprintf(expected, sizeof(expected), "%s is too large (10 bytes, at most 9)", path_of("ten"));
    ck_assert_str_eq(read_fails("ten", 9, SG_E_FORMAT), expected);

    snprintf(expected, sizeof(expected), "cannot read %s: No such file or directory",
             path_of("missing"));
    ck_assert_str_eq(read_fails("missing", 100, SG_E_IO), expected);

    ck_assert_int_eq(mkdir(path_of("sub"), 0700), 0);
    snprintf(expected, sizeof(expected), "cannot read %s: not a regular file", path_of("sub"));
    ck_assert_str_eq(read_fails("sub", 100, SG_E_IO), expected);

    if (geteuid() != 0) { /* root reads a mode 000 file */
        ck_assert_int_eq(chmod(path_of("ten"), 0), 0);
        snprintf(expected, sizeof(expected), "cannot read %s: Permission denied", path_of("ten"));
        ck_assert_str_eq(read_fails("ten", 100, SG_E_IO), expected);
    }
}
END_TEST

START_TEST(test_read_allocation_failure)
{
    write_file("a", "text", 4);
    sg_mem_fail_after(0);
    const char *message = read_fails("a", 100, SG_E_NOMEM);
    sg_mem_fail_reset();
    ck_assert_str_eq(message, "out of memory");
}
END_TEST

static size_t entries(void)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* The new content replaces the old whole, mode 0644 whatever the umask, and
 * no temporary file stays beside it. */
START_TEST(test_replace)
{
    sg_error err = {0};
    struct stat st;
    size_t len;
    char *data;
    mode_t old = umask(077);
    write_file("report", "old content, longer than the new", 32);
    ck_assert_int_eq(sg_file_replace(path_of("report"), "new\n", 4, &err), 0);
    umask(old);
    ck_assert_ptr_nonnull(data = sgt_read_file(path_of("report"), &len));
    ck_assert_uint_eq(len, 4);
    ck_assert_str_eq(data, "new\n");
    free(data);
    ck_assert_int_eq(stat(path_of("report"), &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0644);
    ck_assert_uint_eq(entries(), 1);
}
END_TEST

START_TEST(test_replace_errors)
{
    sg_error err = {0};
    char expected[160];
    snprintf(expected, sizeof(expected), "cannot write %s: No such file or directory",
             path_of("missing/report"));
    ck_assert_int_eq(sg_file_replace(path_of("missing/report"), "x", 1, &err), SG_E_IO);
    ck_assert_str_eq(err.message, expected);

    /* rename fails onto a directory: the temporary file is removed */
    ck_assert_int_eq(mkdir(path_of("sub"), 0700), 0);
    snprintf(expected, sizeof(expected), "cannot write %s: Is a directory", path_of("sub"));
    ck_assert_int_eq(sg_file_replace(path_of("sub"), "x", 1, &err), SG_E_IO);
    ck_assert_str_eq(err.message, expected);
    ck_assert_uint_eq(entries(), 1);

    sg_mem_fail_after(0);
    ck_assert_int_eq(sg_file_replace(path_of("report"), "x", 1, &err), SG_E_NOMEM);
    sg_mem_fail_reset();
    ck_assert_str_eq(err.message, "out of memory");
    ck_assert_uint_eq(entries(), 1);
}
END_TEST

static Suite *file_suite(void)
{
    Suite *suite = suite_create("file");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"read", test_read},
        {"read_errors", test_read_errors},
        {"read_allocation_failure", test_read_allocation_failure},
        {"replace", test_replace},
        {"replace_errors", test_replace_errors},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, make_dir, remove_dir);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(suite, tc);
    }
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(file_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
