#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/store_impl.h"
#include "tests/harness/writers.h"

static char dir[64];
static char url[128];
static sg_store *store;

static void setup(void)
{
    sg_error err = {0};
    strcpy(dir, "/tmp/sg-test-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(url, sizeof(url), "file://%s/store", dir);
    ck_assert_int_eq(sg_store_open(&store, url, &err), 0);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    chmod(path, 0700);
    return remove(path);
}

static void teardown(void)
{
    sg_store_free(store);
    store = NULL;
    chmod(dir, 0700);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *path_of(const char *rel)
{
    static char path[4][256];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof(path[0]), "%s/%s", dir, rel);
    return p;
}

static bool exists(const char *rel)
{
    return access(path_of(rel), F_OK) == 0;
}

/* Entries of a directory under dir, "." and ".." aside. */
static int count_entries(const char *rel)
{
    DIR *d = opendir(path_of(rel));
    struct dirent *ent;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((ent = readdir(d)) != NULL)
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void assert_contains(const char *haystack, const char *needle)
{
    ck_assert_msg(strstr(haystack, needle) != NULL, "\"%s\" does not contain \"%s\"", haystack,
                  needle);
}

static void put(const char *key, const void *data, size_t len)
{
    sg_error err = {0};
    ck_assert_msg(sg_store_put(store, key, data, len, &err) == 0, "%s", err.message);
}

static void put_str(const char *key, const char *text)
{
    put(key, text, strlen(text));
}

static void fill_pattern(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 31 + i / 251);
}

/* ---- listing helper ---- */

typedef struct listed {
    char keys[32][96];
    uint64_t sizes[32];
    int n;
    int stop_after; /* return 7 after this many keys; 0: never */
} listed;

static int collect(void *ctx, const char *key, uint64_t size)
{
    listed *l = ctx;
    ck_assert_int_lt(l->n, 32);
    snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", key);
    l->sizes[l->n] = size;
    l->n++;
    return l->stop_after && l->n == l->stop_after ? 7 : 0;
}

static listed list(const char *prefix)
{
    listed l;
    sg_error err = {0};
    memset(&l, 0, sizeof(l));
    ck_assert_msg(sg_store_list(store, prefix, collect, &l, &err) == 0, "%s", err.message);
    return l;
}

/* ---- tests ---- */

START_TEST(test_open_urls)
{
    sg_store *s = NULL;
    sg_error err = {0};
    char cwd[512];

    ck_assert_str_eq(sg_store_url(store), url);

    ck_assert_int_eq(sg_store_open(&s, "s4://bucket/x", &err), SG_E_USAGE);
    ck_assert_ptr_null(s);
    assert_contains(err.message, "unsupported store URL \"s4://bucket/x\"");
    assert_contains(err.hint, "file://");
    ck_assert_int_eq(sg_store_open(&s, "/var/backups", &err), SG_E_USAGE);
    assert_contains(err.message, "unsupported store URL \"/var/backups\"");
    ck_assert_int_eq(sg_store_open(&s, "file://", &err), SG_E_USAGE);
    assert_contains(err.message, "store URL \"file://\" has no directory");

    /* Relative to the directory current at open, not at put. */
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_eq(chdir(dir), 0);
    ck_assert_int_eq(sg_store_open(&s, "file://rel/store/", &err), 0);
    ck_assert_int_eq(chdir("/"), 0);
    ck_assert_int_eq(sg_store_put(s, "a/b", "x", 1, &err), 0);
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert(exists("rel/store/a/b"));
    sg_store_free(s);
    sg_store_free(NULL);
}
END_TEST

START_TEST(test_put_get)
{
    sg_buf out = {0};
    sg_error err = {0};
    uint64_t size = 0;
    const char *key = "shards/a/snapshots/1/manifest";

    put_str(key, "hello, store");
    ck_assert(exists("store/shards/a/snapshots/1/manifest"));
    ck_assert_int_eq(sg_store_size(store, key, &size, &err), 0);
    ck_assert_uint_eq(size, 12);

    ck_assert_int_eq(sg_store_get(store, key, 0, UINT64_MAX, &out, &err), 0);
    ck_assert_uint_eq(out.len, 12);
    ck_assert_mem_eq(out.data, "hello, store", 12);
    /* get appends */
    ck_assert_int_eq(sg_store_get(store, key, 7, 5, &out, &err), 0);
    ck_assert_uint_eq(out.len, 17);
    ck_assert_mem_eq(out.data + 12, "store", 5);
    sg_buf_reset(&out);
    ck_assert_int_eq(sg_store_get(store, key, 12, UINT64_MAX, &out, &err), 0);
    ck_assert_int_eq(sg_store_get(store, key, 12, 0, &out, &err), 0);
    ck_assert_uint_eq(out.len, 0);

    /* An empty object, and replacing an object. */
    put("empty", "", 0);
    ck_assert_int_eq(sg_store_size(store, "empty", &size, &err), 0);
    ck_assert_uint_eq(size, 0);
    ck_assert_int_eq(sg_store_get(store, "empty", 0, UINT64_MAX, &out, &err), 0);
    ck_assert_uint_eq(out.len, 0);
    put_str(key, "v2");
    ck_assert_int_eq(sg_store_get(store, key, 0, UINT64_MAX, &out, &err), 0);
    ck_assert_uint_eq(out.len, 2);
    ck_assert_mem_eq(out.data, "v2", 2);
    sg_buf_free(&out);
}
END_TEST

/* Every range of a small object, through read buffers of 1, 3 and 7 bytes,
 * so that every buffer boundary falls everywhere. */
START_TEST(test_range_reads)
{
    static const size_t buffers[] = {1, 3, 7, 1024 * 1024};
    uint8_t data[40];
    sg_buf out = {0};
    sg_error err = {0};

    fill_pattern(data, sizeof(data));
    put("blob", data, sizeof(data));
    for (size_t b = 0; b < sizeof(buffers) / sizeof(buffers[0]); b++) {
        sg_store_file_set_read_buffer(store, buffers[b]);
        for (uint64_t off = 0; off <= sizeof(data); off++) {
            for (uint64_t len = 0; off + len <= sizeof(data); len++) {
                sg_buf_reset(&out);
                ck_assert_int_eq(sg_store_get(store, "blob", off, len, &out, &err), 0);
                ck_assert_uint_eq(out.len, len);
                if (len)
                    ck_assert_mem_eq(out.data, data + off, len);
            }
            sg_buf_reset(&out);
            ck_assert_int_eq(sg_store_get(store, "blob", off, UINT64_MAX, &out, &err), 0);
            ck_assert_uint_eq(out.len, sizeof(data) - off);
            if (out.len)
                ck_assert_mem_eq(out.data, data + off, out.len);
        }
    }
    sg_buf_free(&out);
}
END_TEST

START_TEST(test_truncated_object)
{
    sg_buf out = {0};
    sg_error err = {0};
    sg_writer *w;

    put_str("pack", "0123456789");
    ck_assert_int_eq(sg_buf_append(&out, "old", 3, &err), 0);
    ck_assert_int_eq(sg_store_get(store, "pack", 5, 10, &out, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message,
                     "object \"pack\" is shorter than expected (10 bytes, wanted at least 15)");
    /* A failed get leaves the buffer as it was. */
    ck_assert_uint_eq(out.len, 3);

    ck_assert_int_eq(sg_store_get(store, "pack", 11, UINT64_MAX, &out, &err), SG_E_CORRUPT);
    assert_contains(err.message, "(10 bytes, wanted at least 11)");
    ck_assert_int_eq(sg_store_get(store, "pack", UINT64_MAX - 1, 5, &out, &err), SG_E_CORRUPT);
    assert_contains(err.message, "object \"pack\" is shorter than expected");

    /* Nothing reaches the writer when the object is too short. */
    sg_buf_reset(&out);
    w = sg_buffer_writer_new(&out);
    ck_assert_int_eq(sg_store_read(store, "pack", 0, 11, w, &err), SG_E_CORRUPT);
    ck_assert_uint_eq(out.len, 0);
    sg_writer_free(w);
    sg_buf_free(&out);
}
END_TEST

/* A failing downstream writer's error comes back unchanged. */
START_TEST(test_read_into_failing_writer)
{
    uint8_t data[100];
    sg_error err = {0};
    sg_writer *w = sgt_fail_writer_new(NULL, 10);
    fill_pattern(data, sizeof(data));
    put("blob", data, sizeof(data));
    sg_store_file_set_read_buffer(store, 8);
    ck_assert_int_eq(sg_store_read(store, "blob", 0, UINT64_MAX, w, &err), SG_E_IO);
    ck_assert_str_eq(err.message, "injected write failure");
    sg_writer_free(w);
}
END_TEST

START_TEST(test_missing_object)
{
    sg_buf out = {0};
    sg_error err = {0};
    uint64_t size = 99;

    char expect[256];
    sg_writer *w = sg_buffer_writer_new(&out);

    snprintf(expect, sizeof(expect), "object \"shards/a/manifest\" not found in store \"%s\"", url);
    ck_assert_int_eq(sg_store_get(store, "shards/a/manifest", 0, UINT64_MAX, &out, &err),
                     SG_E_NOT_FOUND);
    ck_assert_str_eq(err.message, expect);
    ck_assert_int_eq(sg_store_read(store, "shards/a/manifest", 0, 1, w, &err), SG_E_NOT_FOUND);
    ck_assert_str_eq(err.message, expect);
    ck_assert_int_eq(sg_store_size(store, "shards/a/manifest", &size, &err), SG_E_NOT_FOUND);
    ck_assert_str_eq(err.message, expect);
    ck_assert_uint_eq(size, 99);

    /* A directory is not an object, nor is a path through an object. */
    put_str("shards/a/manifest", "m");
    ck_assert_int_eq(sg_store_get(store, "shards/a", 0, UINT64_MAX, &out, &err), SG_E_NOT_FOUND);
    assert_contains(err.message, "object \"shards/a\" not found");
    assert_contains(err.detail, "is not a regular file");
    ck_assert_int_eq(sg_store_size(store, "shards/a", &size, &err), SG_E_NOT_FOUND);
    ck_assert_int_eq(sg_store_size(store, "shards/a/manifest/x", &size, &err), SG_E_NOT_FOUND);
    ck_assert_int_eq(sg_store_get(store, "shards/a/manifest/x", 0, 1, &out, &err), SG_E_NOT_FOUND);
    ck_assert_uint_eq(out.len, 0);
    sg_writer_free(w);
    sg_buf_free(&out);
}
END_TEST

START_TEST(test_invalid_keys)
{
    static const char *const keys[] = {"",     "/etc/passwd", "a//b", "a/./b", "a/../b",
                                       "../x", "..",          ".",    "a/",    "a/.."};
    sg_error err = {0};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        sg_writer *w = NULL;
        sg_buf out = {0};
        uint64_t size;
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "invalid object key \"%s\"", keys[i]);
        ck_assert_int_eq(sg_store_put_writer(&w, store, keys[i], &err), SG_E_USAGE);
        ck_assert_ptr_null(w);
        assert_contains(err.message, quoted);
        ck_assert_int_eq(sg_store_put(store, keys[i], "x", 1, &err), SG_E_USAGE);
        assert_contains(err.message, quoted);
        ck_assert_int_eq(sg_store_get(store, keys[i], 0, 1, &out, &err), SG_E_USAGE);
        assert_contains(err.message, quoted);
        ck_assert_int_eq(sg_store_size(store, keys[i], &size, &err), SG_E_USAGE);
        assert_contains(err.message, quoted);
        ck_assert_int_eq(sg_store_delete(store, keys[i], &err), SG_E_USAGE);
        assert_contains(err.message, quoted);
    }
    /* Nothing was created, inside the store or next to it. */
    ck_assert_int_eq(count_entries(""), 0);

    {
        static const char *const prefixes[] = {"/x", "../", "a//", "a/./b"};
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
            listed l;
            char quoted[64];
            memset(&l, 0, sizeof(l));
            snprintf(quoted, sizeof(quoted), "invalid key prefix \"%s\"", prefixes[i]);
            ck_assert_int_eq(sg_store_list(store, prefixes[i], collect, &l, &err), SG_E_USAGE);
            assert_contains(err.message, quoted);
        }
    }
}
END_TEST

START_TEST(test_list_order_and_prefix)
{
    static const char *const keys[] = {
        "shards/a/snapshots/2/manifest",
        "b",
        "a/z",
        "shards/ab/x",
        "a-c",
        "a/b/c",
        "shards/a/snapfile",
        "shards/a/snapshots/10/manifest",
        ".hidden",
    };
    /* strcmp order: '-' < '/' < letters */
    static const char *const sorted[] = {
        ".hidden",
        "a-c",
        "a/b/c",
        "a/z",
        "b",
        "shards/a/snapfile",
        "shards/a/snapshots/10/manifest",
        "shards/a/snapshots/2/manifest",
        "shards/ab/x",
    };
    listed l;
    sg_error err = {0};

    /* Nothing written yet: the store directory does not even exist. */
    l = list("");
    ck_assert_int_eq(l.n, 0);

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        put_str(keys[i], keys[i]);
    l = list("");
    ck_assert_int_eq(l.n, 9);
    for (int i = 0; i < l.n; i++) {
        ck_assert_str_eq(l.keys[i], sorted[i]);
        ck_assert_uint_eq(l.sizes[i], strlen(sorted[i]));
    }

    l = list("shards/a/snap");
    ck_assert_int_eq(l.n, 3);
    ck_assert_str_eq(l.keys[0], "shards/a/snapfile");
    ck_assert_str_eq(l.keys[1], "shards/a/snapshots/10/manifest");
    ck_assert_str_eq(l.keys[2], "shards/a/snapshots/2/manifest");

    l = list("shards/a/");
    ck_assert_int_eq(l.n, 3);
    l = list("shards/a");
    ck_assert_int_eq(l.n, 4);
    ck_assert_str_eq(l.keys[3], "shards/ab/x");
    l = list("a");
    ck_assert_int_eq(l.n, 3);
    l = list("b");
    ck_assert_int_eq(l.n, 1);
    l = list("nope/");
    ck_assert_int_eq(l.n, 0);
    l = list("b/");
    ck_assert_int_eq(l.n, 0);

    memset(&l, 0, sizeof(l));
    l.stop_after = 2;
    ck_assert_int_eq(sg_store_list(store, "", collect, &l, &err), 7);
    ck_assert_int_eq(l.n, 2);
}
END_TEST

START_TEST(test_list_skips_temp_files)
{
    sg_writer *w = NULL;
    sg_error err = {0};
    listed l;
    int fd;

    put_str("shards/a/manifest", "m");
    ck_assert_int_eq(sg_store_put_writer(&w, store, "shards/a/pack", &err), 0);
    ck_assert_int_eq(sg_writer_write(w, "data", 4, &err), 0);
    /* What a writer killed before its rename leaves behind. */
    fd = open(path_of("store/shards/a/.pack2.tmp.0123456789abcdef"), O_CREAT | O_WRONLY, 0644);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(count_entries("store/shards/a"), 3);

    l = list("");
    ck_assert_int_eq(l.n, 1);
    ck_assert_str_eq(l.keys[0], "shards/a/manifest");
    l = list("shards/a/.");
    ck_assert_int_eq(l.n, 0);
    sg_writer_free(w);
}
END_TEST

START_TEST(test_delete)
{
    sg_error err = {0};
    uint64_t size;

    put_str("shards/a/snapshots/1/packs/0.pack", "p0");
    put_str("shards/a/snapshots/1/manifest", "m");
    put_str("shards/b/manifest", "m");

    ck_assert_int_eq(sg_store_delete(store, "shards/a/snapshots/1/packs/0.pack", &err), 0);
    ck_assert_int_eq(sg_store_size(store, "shards/a/snapshots/1/packs/0.pack", &size, &err),
                     SG_E_NOT_FOUND);
    /* The emptied packs/ directory goes; its parent still holds the manifest. */
    ck_assert(!exists("store/shards/a/snapshots/1/packs"));
    ck_assert(exists("store/shards/a/snapshots/1/manifest"));

    ck_assert_int_eq(sg_store_delete(store, "shards/a/snapshots/1/manifest", &err), 0);
    ck_assert(!exists("store/shards/a"));
    ck_assert(exists("store/shards/b/manifest"));
    ck_assert_int_eq(sg_store_delete(store, "shards/b/manifest", &err), 0);
    /* Up to the store root, which stays. */
    ck_assert(exists("store"));
    ck_assert_int_eq(count_entries("store"), 0);

    /* Missing objects, and a missing store, are not errors. */
    ck_assert_int_eq(sg_store_delete(store, "shards/b/manifest", &err), 0);
    ck_assert_int_eq(rmdir(path_of("store")), 0);
    ck_assert_int_eq(sg_store_delete(store, "x/y", &err), 0);
}
END_TEST

START_TEST(test_writer_atomicity)
{
    sg_writer *w = NULL;
    sg_error err = {0};
    sg_buf out = {0};
    uint64_t size;

    /* Freed without close: no object and no temporary file. */
    ck_assert_int_eq(sg_store_put_writer(&w, store, "shards/a/pack", &err), 0);
    ck_assert_int_eq(sg_writer_write(w, "partial", 7, &err), 0);
    ck_assert_int_eq(count_entries("store/shards/a"), 1);
    ck_assert_int_eq(sg_store_size(store, "shards/a/pack", &size, &err), SG_E_NOT_FOUND);
    sg_writer_free(w);
    ck_assert_int_eq(count_entries("store/shards/a"), 0);

    /* An existing object keeps its old content until the new one is closed. */
    put_str("shards/a/pack", "old");
    ck_assert_int_eq(sg_store_put_writer(&w, store, "shards/a/pack", &err), 0);
    ck_assert_int_eq(sg_writer_write(w, "new!", 4, &err), 0);
    ck_assert_int_eq(sg_store_get(store, "shards/a/pack", 0, UINT64_MAX, &out, &err), 0);
    ck_assert_uint_eq(out.len, 3);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    sg_buf_reset(&out);
    ck_assert_int_eq(sg_store_get(store, "shards/a/pack", 0, UINT64_MAX, &out, &err), 0);
    ck_assert_uint_eq(out.len, 4);
    ck_assert_mem_eq(out.data, "new!", 4);
    ck_assert_int_eq(count_entries("store/shards/a"), 1);
    sg_writer_free(w);
    sg_buf_free(&out);
}
END_TEST

/* A close that cannot rename (a directory has the object's name) fails,
 * names the object, and leaves no temporary file. */
START_TEST(test_close_failure)
{
    sg_writer *w = NULL;
    sg_error err = {0};

    put_str("shards/a/manifest", "m");
    ck_assert_int_eq(sg_store_put_writer(&w, store, "shards/a", &err), 0);
    ck_assert_int_eq(sg_writer_write(w, "x", 1, &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), SG_E_STORE);
    assert_contains(err.message, "cannot create object \"shards/a\" in store");
    assert_contains(err.detail, path_of("store/shards/a"));
    sg_writer_free(w);
    ck_assert_int_eq(count_entries("store/shards"), 1);
    ck_assert_int_eq(count_entries("store/shards/a"), 1);
}
END_TEST

/* Permission bits do not stop root, so as root the store's directory is
 * made impossible by a file in its way; otherwise a read-only directory is
 * tried as well. */
START_TEST(test_unwritable_store)
{
    sg_error err = {0};
    char expect[256];
    int fd;

    fd = open(path_of("store"), O_CREAT | O_WRONLY, 0644);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(sg_store_put(store, "shards/a/manifest", "m", 1, &err), SG_E_STORE);
    snprintf(expect, sizeof(expect), "cannot create object \"shards/a/manifest\" in store \"%s\"",
             url);
    assert_contains(err.message, expect);
    assert_contains(err.message, "Not a directory");
    assert_contains(err.detail, path_of("store"));
    ck_assert_int_eq(unlink(path_of("store")), 0);

    /* A file where a directory of the key is needed. */
    put_str("shards", "s");
    ck_assert_int_eq(sg_store_put(store, "shards/a/manifest", "m", 1, &err), SG_E_STORE);
    assert_contains(err.message, "Not a directory");
    assert_contains(err.detail, path_of("store/shards"));

    if (geteuid() != 0) {
        ck_assert_int_eq(mkdir(path_of("ro"), 0555), 0);
        snprintf(url, sizeof(url), "file://%s/ro/store", dir);
        sg_store_free(store);
        ck_assert_int_eq(sg_store_open(&store, url, &err), 0);
        ck_assert_int_eq(sg_store_put(store, "k", "m", 1, &err), SG_E_STORE);
        snprintf(expect, sizeof(expect), "cannot create object \"k\" in store \"%s\"", url);
        assert_contains(err.message, expect);
        assert_contains(err.message, "Permission denied");
        assert_contains(err.detail, path_of("ro/store"));
        snprintf(expect, sizeof(expect), "can write to \"%s/ro\"", dir);
        assert_contains(err.hint, expect);
        ck_assert_int_eq(count_entries("ro"), 0);
    }
}
END_TEST

/* Each allocation failing in turn: SG_E_NOMEM, and no object or temporary
 * file half made. */
START_TEST(test_allocation_failure)
{
    sg_error err = {0};
    sg_buf out = {0};
    listed l;
    long n;
    int rc;

    for (n = 0; n < 100; n++) {
        sg_mem_fail_after(n);
        rc = sg_store_put(store, "shards/a/manifest", "m", 1, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert(!exists("store/shards/a/manifest"));
        ck_assert(!exists("store/shards/a") || count_entries("store/shards/a") == 0);
    }
    ck_assert_int_lt(n, 100);
    for (n = 0; n < 100; n++) {
        sg_mem_fail_after(n);
        rc = sg_store_get(store, "shards/a/manifest", 0, UINT64_MAX, &out, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert_uint_eq(out.len, 0);
    }
    ck_assert_int_lt(n, 100);
    for (n = 0; n < 100; n++) {
        memset(&l, 0, sizeof(l));
        sg_mem_fail_after(n);
        rc = sg_store_list(store, "", collect, &l, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert_int_eq(l.n, 0);
    }
    ck_assert_int_lt(n, 100);
    ck_assert_int_eq(l.n, 1);
    sg_buf_free(&out);
}
END_TEST

static Suite *store_file_suite(void)
{
    Suite *s = suite_create("store_file");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_checked_fixture(tc, setup, teardown);                                                \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("open urls", test_open_urls);
    CASE("put get", test_put_get);
    CASE("range reads", test_range_reads);
    CASE("truncated object", test_truncated_object);
    CASE("read into failing writer", test_read_into_failing_writer);
    CASE("missing object", test_missing_object);
    CASE("invalid keys", test_invalid_keys);
    CASE("list order and prefix", test_list_order_and_prefix);
    CASE("list skips temp files", test_list_skips_temp_files);
    CASE("delete", test_delete);
    CASE("writer atomicity", test_writer_atomicity);
    CASE("close failure", test_close_failure);
    CASE("unwritable store", test_unwritable_store);
    CASE("allocation failure", test_allocation_failure);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_file_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
