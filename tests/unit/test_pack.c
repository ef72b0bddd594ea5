#include <archive.h>
#include <archive_entry.h>
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"
#include "snapshot/pack.h"
#include "tests/harness/run.h"
#include "tests/harness/writers.h"

#define PACK_DIR "shards/a/snapshots/20240501T020000Z-1a2b3c4d/packs"
#define PACK_KEY PACK_DIR "/0.pack"

static char dir[64];
static char url[128];
static sg_store *store;

static void setup(void)
{
    sg_error err = {0};
    strcpy(dir, "/tmp/sg-test-pack-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(url, sizeof(url), "file://%s/store", dir);
    ck_assert_int_eq(sg_store_open(&store, url, &err), 0);
}

static void teardown(void)
{
    sg_store_free(store);
    store = NULL;
    sgt_remove_tree(dir);
}

static const char *path_of(const char *key)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/store/%s", dir, key);
    return path;
}

typedef struct member {
    char name[256];
    uint8_t *data;
    size_t len;
    uint64_t offset;
} member;

static void members_init(member *m, const size_t *sizes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(m[i].name, sizeof(m[i].name), "public.orders/%06zu.chunk", i);
        m[i].len = sizes[i];
        m[i].data = malloc(sizes[i] ? sizes[i] : 1);
        ck_assert_ptr_nonnull(m[i].data);
        sgt_fill_mixed(m[i].data, sizes[i], (uint32_t)i + 1);
        m[i].offset = UINT64_MAX;
    }
}

static void members_free(member *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].data);
}

/* Writes the members into PACK_KEY; returns the size and SHA-256 close gave. */
static void write_pack(member *m, size_t n, uint64_t *size, uint8_t sha[32])
{
    sg_pack_writer *pack = NULL;
    sg_error err = {0};
    uint64_t before = 0;
    ck_assert_msg(sg_pack_writer_new(&pack, store, PACK_KEY, &err) == 0, "%s", err.message);
    ck_assert_uint_eq(sg_pack_writer_size(pack), 0);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(
            sg_pack_writer_add(pack, m[i].name, m[i].data, m[i].len, &m[i].offset, &err) == 0, "%s",
            err.message);
        /* Header before the data, padding after it: the size says where
         * the next member will start. */
        ck_assert_uint_ge(m[i].offset, before + 512);
        ck_assert_uint_eq(sg_pack_writer_size(pack), m[i].offset + (m[i].len + 511) / 512 * 512);
        before = sg_pack_writer_size(pack);
    }
    /* Nothing is visible until close. */
    ck_assert_int_eq(access(path_of(PACK_KEY), F_OK), -1);
    ck_assert_msg(sg_pack_writer_close(pack, size, sha, &err) == 0, "%s", err.message);
    sg_pack_writer_free(pack);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *data;
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fstat(fd, &st), 0);
    data = malloc((size_t)st.st_size + 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_int_eq(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return data;
}

/* Reads the pack back with libarchive's own tar reader. */
static void assert_tar_holds(const member *m, size_t n)
{
    struct archive *a = archive_read_new();
    struct archive_entry *entry;
    size_t count = 0;
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(archive_read_support_format_tar(a), ARCHIVE_OK);
    ck_assert_int_eq(archive_read_open_filename(a, path_of(PACK_KEY), 10240), ARCHIVE_OK);
    for (;;) {
        int rc = archive_read_next_header(a, &entry);
        uint8_t *data;
        la_ssize_t got;
        if (rc == ARCHIVE_EOF)
            break;
        ck_assert_msg(rc == ARCHIVE_OK, "%s", archive_error_string(a));
        ck_assert_uint_lt(count, n);
        ck_assert_str_eq(archive_entry_pathname(entry), m[count].name);
        ck_assert(archive_entry_filetype(entry) == AE_IFREG);
        ck_assert_int_eq(archive_entry_size(entry), (la_int64_t)m[count].len);
        data = malloc(m[count].len + 1);
        ck_assert_ptr_nonnull(data);
        got = archive_read_data(a, data, m[count].len + 1);
        ck_assert_int_eq(got, (la_ssize_t)m[count].len);
        if (m[count].len)
            ck_assert_int_eq(memcmp(data, m[count].data, m[count].len), 0);
        free(data);
        count++;
    }
    ck_assert_uint_eq(count, n);
    ck_assert_int_eq(archive_read_free(a), ARCHIVE_OK);
}

static void assert_offsets_and_digest(const member *m, size_t n, uint64_t size,
                                      const uint8_t sha[32])
{
    size_t len;
    uint8_t *file = read_whole(path_of(PACK_KEY), &len);
    uint8_t want[32];
    ck_assert_uint_eq(size, len);
    /* A tar file is whole 512-byte records, with no block padding added. */
    ck_assert_uint_eq(len % 512, 0);
    ck_assert_uint_ge(len, 1024);
    crypto_hash_sha256(want, file, len);
    ck_assert_int_eq(memcmp(want, sha, 32), 0);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_le(m[i].offset + m[i].len, len);
        ck_assert_msg(m[i].len == 0 || memcmp(file + m[i].offset, m[i].data, m[i].len) == 0,
                      "member %zu is not at offset %llu", i, (unsigned long long)m[i].offset);
    }
    free(file);
}

START_TEST(test_members)
{
    static const size_t sizes[] = {0, 1, 511, 512, 513, 1024, 3 * 1024 * 1024 + 7, 0, 100};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    member m[N];
    uint64_t size = 0;
    uint8_t sha[32];
    members_init(m, sizes, N);
    write_pack(m, N, &size, sha);
    assert_tar_holds(m, N);
    assert_offsets_and_digest(m, N, size, sha);
    members_free(m, N);
}
END_TEST

/* Names too long for the ustar header get a pax header first; the data
 * offset must account for it. */
START_TEST(test_long_names)
{
    static const size_t sizes[] = {700, 0, 513};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    member m[N];
    uint64_t size = 0;
    uint8_t sha[32];
    members_init(m, sizes, N);
    memset(m[0].name, 'n', 200);
    strcpy(m[0].name + 200, ".chunk");
    snprintf(m[1].name, sizeof(m[1].name), "%0120d/x", 0);
    write_pack(m, N, &size, sha);
    assert_tar_holds(m, N);
    assert_offsets_and_digest(m, N, size, sha);
    members_free(m, N);
}
END_TEST

/* libarchive would convert other names through the C locale and fail. */
START_TEST(test_non_ascii_name)
{
    sg_pack_writer *pack = NULL;
    sg_error err = {0};
    uint64_t offset = 7, size;
    uint8_t sha[32];
    ck_assert_int_eq(sg_pack_writer_new(&pack, store, PACK_KEY, &err), 0);
    ck_assert_int_eq(sg_pack_writer_add(pack, "caf\xc3\xa9.chunk", "x", 1, &offset, &err),
                     SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "pack member name \"caf\xc3\xa9.chunk\" is not ASCII");
    ck_assert_uint_eq(offset, 7);
    /* The pack is still usable. */
    ck_assert_int_eq(sg_pack_writer_add(pack, "a.chunk", "x", 1, &offset, &err), 0);
    ck_assert_uint_eq(offset, 512);
    ck_assert_int_eq(sg_pack_writer_close(pack, &size, sha, &err), 0);
    sg_pack_writer_free(pack);
}
END_TEST

START_TEST(test_empty_pack)
{
    uint64_t size = 0;
    uint8_t sha[32];
    write_pack(NULL, 0, &size, sha);
    assert_tar_holds(NULL, 0);
    assert_offsets_and_digest(NULL, 0, size, sha);
}
END_TEST

static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *ent;
    int n = 0;
    if (!d)
        return 0;
    while ((ent = readdir(d)) != NULL)
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

START_TEST(test_free_without_close)
{
    sg_pack_writer *pack = NULL;
    sg_error err = {0};
    uint64_t offset, size;
    char data[600] = {0};
    ck_assert_int_eq(sg_pack_writer_new(&pack, store, PACK_KEY, &err), 0);
    ck_assert_int_eq(sg_pack_writer_add(pack, "a.chunk", data, sizeof(data), &offset, &err), 0);
    sg_pack_writer_free(pack);
    ck_assert_int_eq(access(path_of(PACK_KEY), F_OK), -1);
    ck_assert_int_eq(count_entries(path_of(PACK_DIR)), 0);
    ck_assert_int_eq(sg_store_size(store, PACK_KEY, &size, &err), SG_E_NOT_FOUND);
    sg_pack_writer_free(NULL);
}
END_TEST

/* A regular file where the store's directory should be. */
START_TEST(test_store_fails)
{
    char path[128];
    sg_pack_writer *pack = NULL;
    sg_error err = {0};
    int fd;
    snprintf(path, sizeof(path), "%s/store", dir);
    fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(sg_pack_writer_new(&pack, store, PACK_KEY, &err), SG_E_STORE);
    ck_assert_ptr_null(pack);
    ck_assert_int_eq(err.code, SG_E_STORE);
    ck_assert_msg(strstr(err.message, "cannot create object \"" PACK_KEY "\"") != NULL, "%s",
                  err.message);
    ck_assert_msg(strstr(err.message, "Not a directory") != NULL, "%s", err.message);
    ck_assert_str_eq(err.hint, "a file is in the way where the store needs a directory");
}
END_TEST

/* Every allocation of ours can fail; none leaves an object or a leak. */
START_TEST(test_nomem)
{
    static const char data[] = "some chunk bytes";
    int rc = -1;
    for (long after = 0; rc != 0; after++) {
        sg_pack_writer *pack = NULL;
        sg_error err = {0};
        uint64_t offset, size;
        uint8_t sha[32];
        ck_assert_int_lt(after, 200);
        sg_mem_fail_after(after);
        rc = sg_pack_writer_new(&pack, store, PACK_KEY, &err);
        if (rc == 0)
            rc = sg_pack_writer_add(pack, "a.chunk", data, sizeof(data), &offset, &err);
        if (rc == 0)
            rc = sg_pack_writer_close(pack, &size, sha, &err);
        sg_mem_fail_reset();
        sg_pack_writer_free(pack);
        if (rc != 0) {
            ck_assert_int_eq(rc, SG_E_NOMEM);
            ck_assert_str_ne(err.message, "");
            ck_assert_int_eq(access(path_of(PACK_KEY), F_OK), -1);
        }
    }
    ck_assert_int_eq(access(path_of(PACK_KEY), F_OK), 0);
}
END_TEST

static Suite *pack_suite(void)
{
    Suite *s = suite_create("pack");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_checked_fixture(tc, setup, teardown);                                                \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("members", test_members);
    CASE("long names", test_long_names);
    CASE("non-ASCII name", test_non_ascii_name);
    CASE("empty pack", test_empty_pack);
    CASE("free without close", test_free_without_close);
    CASE("store fails", test_store_fails);
    CASE("nomem", test_nomem);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pack_suite());
    int failed;
    if (sodium_init() < 0)
        return 1;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
