#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/writer.h"
#include "tests/harness/writers.h"

static void fill_pattern(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 31 + i / 251);
}

START_TEST(test_base_close_twice)
{
    sg_error err = {0};
    sg_writer *w = sg_null_writer_new();
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), SG_E_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err.message, "null writer closed twice"));
    sg_writer_free(w);
}
END_TEST

START_TEST(test_base_write_after_close)
{
    sg_error err = {0};
    sg_buf out = {0};
    sg_writer *w = sg_buffer_writer_new(&out);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    ck_assert_int_eq(sg_writer_write(w, "x", 1, &err), SG_E_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err.message, "write to buffer writer after close"));
    ck_assert_uint_eq(out.len, 0);
    sg_writer_free(w);
    sg_buf_free(&out);
}
END_TEST

/* After a failure, writes and close report the same class and write nothing. */
START_TEST(test_base_failed_stays_failed)
{
    sg_error err = {0};
    sg_buf out = {0};
    sg_writer *w = sgt_fail_writer_new(sg_buffer_writer_new(&out), 3);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_write(w, "abcdef", 6, &err), SG_E_IO);
    ck_assert_str_eq(err.message, "injected write failure");
    ck_assert_uint_eq(out.len, 3);
    sg_error_clear(&err);
    ck_assert_int_eq(sg_writer_write(w, "g", 1, &err), SG_E_IO);
    ck_assert_str_eq(err.message, "failing writer failed earlier");
    sg_error_clear(&err);
    ck_assert_int_eq(sg_writer_write(w, "", 0, &err), SG_E_IO);
    ck_assert_int_eq(sg_writer_close(w, &err), SG_E_IO);
    ck_assert_str_eq(err.message, "failing writer failed earlier");
    ck_assert_uint_eq(out.len, 3);
    sg_writer_free(w);
    sg_buf_free(&out);
}
END_TEST

/* A failure in next fails the writers in front of it as well. */
START_TEST(test_base_failure_propagates)
{
    sg_error err = {0};
    sg_writer *w = sg_size_writer_new(sgt_fail_writer_new(NULL, 0));
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_write(w, "a", 1, &err), SG_E_IO);
    ck_assert_int_eq(sg_writer_write(w, "a", 1, &err), SG_E_IO);
    ck_assert_str_eq(err.message, "size writer failed earlier");
    sg_writer_free(w);
}
END_TEST

/* A failure at close, in next, fails the whole chain's close. */
START_TEST(test_base_close_propagates)
{
    sg_error err = {0};
    char expect[128];
    sg_writer *w = sg_size_writer_new(sg_fd_writer_new(-1, true));
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_close(w, &err), SG_E_IO);
    snprintf(expect, sizeof(expect), "cannot close file descriptor -1: %s", strerror(EBADF));
    ck_assert_str_eq(err.message, expect);
    ck_assert_int_eq(sg_writer_close(w, &err), SG_E_IO);
    ck_assert_str_eq(err.message, "size writer failed earlier");
    sg_writer_free(w);
}
END_TEST

/* Freeing an unclosed chain frees every writer in it (ASan checks). */
START_TEST(test_base_free_chain)
{
    sg_error err = {0};
    sg_writer *w = sg_hash_writer_new(sg_size_writer_new(sg_size_writer_new(sg_null_writer_new())));
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_write(w, "abc", 3, &err), 0);
    sg_writer_free(w);
    sg_writer_free(NULL);
}
END_TEST

START_TEST(test_buffer_pieces)
{
    static uint8_t data[10000];
    size_t pieces[] = {1, 2, 3, 7, 4096, sizeof(data)};
    fill_pattern(data, sizeof(data));
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        sg_error err = {0};
        sg_buf out = {0};
        sg_writer *w = sg_buffer_writer_new(&out);
        ck_assert_int_eq(sgt_write_in_pieces(w, data, sizeof(data), pieces[i], &err), 0);
        ck_assert_int_eq(sg_writer_close(w, &err), 0);
        ck_assert_uint_eq(out.len, sizeof(data));
        ck_assert_mem_eq(out.data, data, sizeof(data));
        sg_writer_free(w);
        sg_buf_free(&out);
    }
}
END_TEST

START_TEST(test_buffer_nomem)
{
    sg_error err = {0};
    sg_buf out = {0};
    sg_writer *w = sg_buffer_writer_new(&out);
    ck_assert_ptr_nonnull(w);
    sg_mem_fail_after(0);
    ck_assert_int_eq(sg_writer_write(w, "abc", 3, &err), SG_E_NOMEM);
    sg_mem_fail_reset();
    ck_assert_ptr_nonnull(strstr(err.message, "out of memory"));
    sg_writer_free(w);
    sg_buf_free(&out);
}
END_TEST

typedef struct drain {
    int fd;
    pthread_t writer;
    sg_buf got;
} drain;

static atomic_int interrupts;

static void on_signal(int sig)
{
    atomic_fetch_add(&interrupts, 1);
}

/* Reads slowly and signals the writer before every read: the writer is
 * mostly blocked on a full pipe, so its write() returns short or fails with
 * EINTR (the handler is installed without SA_RESTART). */
static void *drain_pipe(void *arg)
{
    drain *d = arg;
    uint8_t buf[4096];
    ssize_t n;
    do {
        pthread_kill(d->writer, SIGUSR1);
        n = read(d->fd, buf, 1 + (d->got.len % sizeof(buf)));
    } while (n > 0 && sg_buf_append(&d->got, buf, (size_t)n, NULL) == 0);
    return NULL;
}

START_TEST(test_fd_pipe)
{
    static uint8_t data[1 << 20];
    struct sigaction sa = {0};
    sg_error err = {0};
    int fds[2];
    pthread_t reader;
    drain d = {0};
    sg_writer *w;
    sa.sa_handler = on_signal;
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    fill_pattern(data, sizeof(data));
    ck_assert_int_eq(pipe(fds), 0);
    d.fd = fds[0];
    d.writer = pthread_self();
    w = sg_fd_writer_new(fds[1], true);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(pthread_create(&reader, NULL, drain_pipe, &d), 0);
    ck_assert_int_eq(sg_writer_write(w, data, sizeof(data), &err), 0);
    ck_assert_int_eq(sgt_write_in_pieces(w, data, sizeof(data), 100000, &err), 0);
    /* close_fd: the write end is closed, so the reader sees end of file. */
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    ck_assert_int_eq(pthread_join(reader, NULL), 0);
    ck_assert_int_gt(atomic_load(&interrupts), 0);
    ck_assert_uint_eq(d.got.len, 2 * sizeof(data));
    ck_assert_mem_eq(d.got.data, data, sizeof(data));
    ck_assert_mem_eq(d.got.data + sizeof(data), data, sizeof(data));
    sg_writer_free(w);
    close(fds[0]);
    sg_buf_free(&d.got);
}
END_TEST

START_TEST(test_fd_close_fd)
{
    sg_error err = {0};
    int fd = open("/dev/null", O_WRONLY);
    sg_writer *w = sg_fd_writer_new(fd, false);
    ck_assert_int_eq(sg_writer_write(w, "abc", 3, &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    sg_writer_free(w);
    ck_assert_int_ne(fcntl(fd, F_GETFD), -1);

    /* Freed without close, close_fd still closes it. */
    w = sg_fd_writer_new(fd, true);
    ck_assert_int_eq(sg_writer_write(w, "abc", 3, &err), 0);
    sg_writer_free(w);
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);
}
END_TEST

START_TEST(test_fd_error)
{
    sg_error err = {0};
    int fd = open("/dev/null", O_RDONLY);
    sg_writer *w = sg_fd_writer_new(fd, true);
    char expect[128];
    ck_assert_int_eq(sg_writer_write(w, "abc", 3, &err), SG_E_IO);
    snprintf(expect, sizeof(expect), "cannot write to file descriptor %d: %s", fd, strerror(EBADF));
    ck_assert_str_eq(err.message, expect);
    sg_writer_free(w);
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
}
END_TEST

START_TEST(test_size_counts)
{
    static uint8_t data[5000];
    sg_error err = {0};
    sg_buf out = {0};
    sg_writer *alone = sg_size_writer_new(NULL);
    sg_writer *w = sg_size_writer_new(sg_buffer_writer_new(&out));
    ck_assert_ptr_nonnull(alone);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sgt_write_in_pieces(w, data, sizeof(data), 7, &err), 0);
    ck_assert_int_eq(sgt_write_in_pieces(alone, data, sizeof(data), 3, &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    ck_assert_int_eq(sg_writer_close(alone, &err), 0);
    ck_assert_uint_eq(sg_size_writer_bytes(w), sizeof(data));
    ck_assert_uint_eq(sg_size_writer_bytes(alone), sizeof(data));
    ck_assert_uint_eq(out.len, sizeof(data));
    sg_writer_free(w);
    sg_writer_free(alone);
    sg_buf_free(&out);
}
END_TEST

static void hash_hex(sg_writer *w, char hex[65])
{
    uint8_t digest[32];
    sg_hash_writer_digest(w, digest);
    sodium_bin2hex(hex, 65, digest, sizeof(digest));
}

/* FIPS 180-2 test vectors, and one-shot against piecewise on larger data. */
START_TEST(test_hash_vectors)
{
    static uint8_t data[200000];
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sg_error err = {0};
    char hex[65];
    uint8_t whole[32], pieces[32];
    sg_writer *w = sg_hash_writer_new(NULL);

    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    hash_hex(w, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sg_writer_free(w);

    w = sg_hash_writer_new(sg_null_writer_new());
    ck_assert_int_eq(sgt_write_in_pieces(w, msg, strlen(msg), 5, &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    hash_hex(w, hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    sg_writer_free(w);

    fill_pattern(data, sizeof(data));
    w = sg_hash_writer_new(NULL);
    ck_assert_int_eq(sg_writer_write(w, data, sizeof(data), &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    sg_hash_writer_digest(w, whole);
    sg_writer_free(w);
    w = sg_hash_writer_new(NULL);
    ck_assert_int_eq(sgt_write_in_pieces(w, data, sizeof(data), 333, &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    sg_hash_writer_digest(w, pieces);
    sg_writer_free(w);
    ck_assert_mem_eq(whole, pieces, 32);
    crypto_hash_sha256(whole, data, sizeof(data));
    ck_assert_mem_eq(whole, pieces, 32);
}
END_TEST

/* The hash and size writers pass everything on, unchanged. */
START_TEST(test_hash_forwards)
{
    static uint8_t data[3000];
    sg_error err = {0};
    sg_buf out = {0};
    sg_writer *w = sg_hash_writer_new(sg_size_writer_new(sg_buffer_writer_new(&out)));
    fill_pattern(data, sizeof(data));
    ck_assert_int_eq(sgt_write_in_pieces(w, data, sizeof(data), 1, &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    ck_assert_uint_eq(out.len, sizeof(data));
    ck_assert_mem_eq(out.data, data, sizeof(data));
    sg_writer_free(w);
    sg_buf_free(&out);
}
END_TEST

START_TEST(test_fail_writer_every_n)
{
    uint8_t data[64];
    fill_pattern(data, sizeof(data));
    for (uint64_t n = 0; n <= sizeof(data) + 1; n++) {
        sg_error err = {0};
        sg_buf out = {0};
        sg_writer *w = sgt_fail_writer_new(sg_buffer_writer_new(&out), n);
        int rc = sgt_write_in_pieces(w, data, sizeof(data), 5, &err);
        if (n < sizeof(data)) {
            ck_assert_int_eq(rc, SG_E_IO);
            ck_assert_str_eq(err.message, "injected write failure");
            ck_assert_uint_eq(out.len, n);
            ck_assert_int_eq(sg_writer_close(w, &err), SG_E_IO);
        } else {
            ck_assert_int_eq(rc, 0);
            ck_assert_int_eq(sg_writer_close(w, &err), 0);
            ck_assert_uint_eq(out.len, sizeof(data));
        }
        if (out.len > 0)
            ck_assert_mem_eq(out.data, data, out.len);
        sg_writer_free(w);
        sg_buf_free(&out);
    }
}
END_TEST

/* Every constructor returns NULL cleanly when an allocation fails, freeing
 * the next writer it was given (ASan checks for leaks). */
START_TEST(test_alloc_failure)
{
    sg_buf out = {0};
    for (long n = 0; n <= 3; n++) {
        sg_writer *w;
        sg_mem_fail_after(n);
        w = sg_hash_writer_new(sg_size_writer_new(sg_buffer_writer_new(&out)));
        sg_mem_fail_reset();
        if (n < 3)
            ck_assert_ptr_null(w);
        else
            ck_assert_ptr_nonnull(w);
        sg_writer_free(w);
    }
    sg_mem_fail_after(0);
    ck_assert_ptr_null(sg_null_writer_new());
    ck_assert_ptr_null(sg_fd_writer_new(open("/dev/null", O_WRONLY), true));
    ck_assert_ptr_null(sgt_fail_writer_new(NULL, 1));
    sg_mem_fail_reset();
}
END_TEST

static Suite *writer_suite(void)
{
    Suite *s = suite_create("writer");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("close twice", test_base_close_twice);
    CASE("write after close", test_base_write_after_close);
    CASE("failed stays failed", test_base_failed_stays_failed);
    CASE("failure propagates", test_base_failure_propagates);
    CASE("close propagates", test_base_close_propagates);
    CASE("free chain", test_base_free_chain);
    CASE("buffer pieces", test_buffer_pieces);
    CASE("buffer nomem", test_buffer_nomem);
    CASE("fd short writes and EINTR", test_fd_pipe);
    CASE("fd close_fd", test_fd_close_fd);
    CASE("fd error", test_fd_error);
    CASE("size counts", test_size_counts);
    CASE("hash vectors", test_hash_vectors);
    CASE("hash forwards", test_hash_forwards);
    CASE("fail writer", test_fail_writer_every_n);
    CASE("allocation failure", test_alloc_failure);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(writer_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
