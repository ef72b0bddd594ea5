#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/mem.h"
#include "common/writer.h"
#include "tests/harness/writers.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Compresses data into out (appended); returns the first error. */
static int compress(sg_buf *out, const void *data, size_t len, int level, size_t buffer_size,
                    size_t piece, sg_error *err)
{
    sg_writer *w = sg_zstd_writer_new(sg_buffer_writer_new(out), level, buffer_size);
    int rc;
    ck_assert_ptr_nonnull(w);
    rc = sgt_write_in_pieces(w, data, len, piece, err);
    if (rc == 0)
        rc = sg_writer_close(w, err);
    sg_writer_free(w);
    return rc;
}

static int decompress(sg_buf *out, const void *data, size_t len, size_t buffer_size,
                      uint64_t max_output, size_t piece, sg_error *err)
{
    sg_writer *w = sg_unzstd_writer_new(sg_buffer_writer_new(out), buffer_size, max_output);
    int rc;
    ck_assert_ptr_nonnull(w);
    rc = sgt_write_in_pieces(w, data, len, piece, err);
    if (rc == 0)
        rc = sg_writer_close(w, err);
    sg_writer_free(w);
    return rc;
}

static void assert_round_trip(const uint8_t *data, size_t len, int level, size_t buffer_size,
                              size_t piece)
{
    sg_error err = {0};
    sg_buf packed = {0}, plain = {0};
    ck_assert_int_eq(compress(&packed, data, len, level, buffer_size, piece, &err), 0);
    ck_assert_uint_eq(ZSTD_findFrameCompressedSize(packed.data, packed.len), packed.len);
    ck_assert_int_eq(decompress(&plain, packed.data, packed.len, buffer_size, 0, piece, &err), 0);
    ck_assert_uint_eq(plain.len, len);
    if (len > 0)
        ck_assert_mem_eq(plain.data, data, len);
    sg_buf_free(&packed);
    sg_buf_free(&plain);
}

/* A small compressed frame of mixed data, for the corruption tests. */
static void small_frame(sg_buf *packed, uint8_t *data, size_t len)
{
    sg_error err = {0};
    sgt_fill_mixed(data, len, 7);
    ck_assert_int_eq(compress(packed, data, len, 3, 0, 0, &err), 0);
}

START_TEST(test_round_trip_small)
{
    static const size_t sizes[] = {0, 1, 2, 3, 7, 100, 5000};
    static const size_t buffers[] = {1, 2, 3, 7, 0};
    static const size_t pieces[] = {1, 2, 3, 7, 0};
    uint8_t data[5000];
    sgt_fill_mixed(data, sizeof(data), 1);
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++)
        for (size_t b = 0; b < ARRAY_LEN(buffers); b++)
            for (size_t p = 0; p < ARRAY_LEN(pieces); p++)
                assert_round_trip(data, sizes[s], 3, buffers[b], pieces[p]);
}
END_TEST

START_TEST(test_round_trip_large)
{
    static const size_t pieces[] = {4096, 100000, 1 << 20, 0};
    size_t len = 4 << 20;
    uint8_t *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    sgt_fill_mixed(data, len, 2);
    for (size_t p = 0; p < ARRAY_LEN(pieces); p++)
        assert_round_trip(data, len, 3, 0, pieces[p]);
    assert_round_trip(data, len, 1, 7, 65536);
    free(data);
}
END_TEST

START_TEST(test_levels)
{
    static const int levels[] = {-5, 1, 3, 19};
    uint8_t data[20000];
    sgt_fill_mixed(data, sizeof(data), 3);
    for (size_t i = 0; i < ARRAY_LEN(levels); i++)
        assert_round_trip(data, sizeof(data), levels[i], 0, 1000);
}
END_TEST

START_TEST(test_compresses)
{
    sg_error err = {0};
    sg_buf packed = {0};
    size_t len = 1 << 20;
    uint8_t *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)("0123456789\tabc\n"[i % 15]);
    ck_assert_int_eq(compress(&packed, data, len, 3, 0, 4096, &err), 0);
    ck_assert_uint_lt(packed.len, len / 100);
    ck_assert_uint_eq(ZSTD_getFrameContentSize(packed.data, packed.len), ZSTD_CONTENTSIZE_UNKNOWN);
    free(data);
    sg_buf_free(&packed);
}
END_TEST

/* The frame carries a content checksum: a changed last byte is caught. */
START_TEST(test_checksum)
{
    sg_error err = {0};
    sg_buf packed = {0}, plain = {0};
    uint8_t data[3000];
    small_frame(&packed, data, sizeof(data));
    packed.data[packed.len - 1] ^= 1;
    ck_assert_int_eq(decompress(&plain, packed.data, packed.len, 0, 0, 0, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "compressed stream is corrupt: Restored data doesn't match "
                                  "checksum");
    sg_buf_free(&packed);
    sg_buf_free(&plain);
}
END_TEST

START_TEST(test_truncated)
{
    sg_buf packed = {0};
    uint8_t data[1000];
    small_frame(&packed, data, sizeof(data));
    for (size_t cut = 0; cut < packed.len; cut++) {
        sg_error err = {0};
        sg_buf plain = {0};
        sg_writer *w = sg_unzstd_writer_new(sg_buffer_writer_new(&plain), 0, 0);
        ck_assert_int_eq(sgt_write_in_pieces(w, packed.data, cut, cut % 5 + 1, &err), 0);
        ck_assert_int_eq(sg_writer_close(w, &err), SG_E_CORRUPT);
        ck_assert_str_eq(err.message, "compressed stream is truncated");
        sg_writer_free(w);
        sg_buf_free(&plain);
    }
    sg_buf_free(&packed);
}
END_TEST

START_TEST(test_trailing_data)
{
    sg_error err = {0};
    sg_buf packed = {0}, plain = {0}, twice = {0};
    uint8_t data[3000];
    sg_writer *w;
    small_frame(&packed, data, sizeof(data));

    /* In the same write as the end of the frame. */
    ck_assert_int_eq(sg_buf_append(&twice, packed.data, packed.len, NULL), 0);
    ck_assert_int_eq(sg_buf_append(&twice, "x", 1, NULL), 0);
    ck_assert_int_eq(decompress(&plain, twice.data, twice.len, 0, 0, 0, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "unexpected data after the end of the compressed stream");

    /* In a later write. */
    w = sg_unzstd_writer_new(sg_buffer_writer_new(&plain), 0, 0);
    ck_assert_int_eq(sg_writer_write(w, packed.data, packed.len, &err), 0);
    ck_assert_int_eq(sg_writer_write(w, "x", 1, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "unexpected data after the end of the compressed stream");
    sg_writer_free(w);

    /* A second frame is trailing data too, even one byte at a time. */
    twice.len = 0;
    ck_assert_int_eq(sg_buf_append(&twice, packed.data, packed.len, NULL), 0);
    ck_assert_int_eq(sg_buf_append(&twice, packed.data, packed.len, NULL), 0);
    plain.len = 0;
    ck_assert_int_eq(decompress(&plain, twice.data, twice.len, 0, 0, 1, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "unexpected data after the end of the compressed stream");
    ck_assert_uint_eq(plain.len, sizeof(data));
    sg_buf_free(&packed);
    sg_buf_free(&plain);
    sg_buf_free(&twice);
}
END_TEST

/* Any changed byte, header, block or checksum, is corruption; except in the
 * window descriptor (byte 5: magic, frame header descriptor, then it), where
 * a larger window still decodes the same content. */
START_TEST(test_corrupt_byte)
{
    sg_buf packed = {0};
    uint8_t data[1000];
    small_frame(&packed, data, sizeof(data));
    for (size_t pos = 0; pos < packed.len; pos++) {
        sg_error err = {0};
        sg_buf plain = {0};
        int rc;
        packed.data[pos] ^= 0x20;
        rc = decompress(&plain, packed.data, packed.len, 0, 0, 0, &err);
        if (rc == 0) {
            ck_assert_uint_eq(pos, 5);
            ck_assert_uint_eq(plain.len, sizeof(data));
            ck_assert_mem_eq(plain.data, data, sizeof(data));
        } else {
            ck_assert_int_eq(rc, SG_E_CORRUPT);
            ck_assert_ptr_nonnull(strstr(err.message, "compressed stream"));
        }
        packed.data[pos] ^= 0x20;
        sg_buf_free(&plain);
    }
    sg_buf_free(&packed);
}
END_TEST

START_TEST(test_max_output)
{
    sg_error err = {0};
    sg_buf packed = {0}, plain = {0};
    uint8_t data[10000];
    small_frame(&packed, data, sizeof(data));
    ck_assert_int_eq(decompress(&plain, packed.data, packed.len, 7, sizeof(data), 0, &err), 0);
    ck_assert_uint_eq(plain.len, sizeof(data));
    plain.len = 0;
    ck_assert_int_eq(decompress(&plain, packed.data, packed.len, 7, sizeof(data) - 1, 0, &err),
                     SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "compressed stream expands to more than 9999 bytes");
    ck_assert_uint_le(plain.len, sizeof(data) - 1);
    sg_buf_free(&packed);
    sg_buf_free(&plain);
}
END_TEST

/* 256 MiB of zeros compress to a few KiB; the limit stops the expansion
 * before it reaches memory. */
START_TEST(test_bomb)
{
    static uint8_t zeros[1 << 20];
    sg_error err = {0};
    sg_buf packed = {0};
    sg_writer *w = sg_zstd_writer_new(sg_buffer_writer_new(&packed), 3, 0);
    sg_writer *size;
    for (int i = 0; i < 256; i++)
        ck_assert_int_eq(sg_writer_write(w, zeros, sizeof(zeros), &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    sg_writer_free(w);
    ck_assert_uint_lt(packed.len, 64 << 10);

    size = sg_size_writer_new(NULL);
    w = sg_unzstd_writer_new(size, 0, 1 << 20);
    ck_assert_int_eq(sg_writer_write(w, packed.data, packed.len, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "compressed stream expands to more than 1048576 bytes");
    ck_assert_uint_le(sg_size_writer_bytes(size), 1 << 20);
    sg_writer_free(w);
    sg_buf_free(&packed);
}
END_TEST

START_TEST(test_garbage)
{
    sg_error err = {0};
    sg_buf plain = {0};
    ck_assert_int_eq(decompress(&plain, "not zstd at all", 15, 0, 0, 0, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "compressed stream is corrupt: Unknown frame descriptor");
    sg_buf_free(&plain);
}
END_TEST

/* A failure downstream surfaces from write or close, at every offset. */
START_TEST(test_failing_next)
{
    sg_buf packed = {0};
    uint8_t data[1000];
    small_frame(&packed, data, sizeof(data));
    for (uint64_t n = 0; n <= packed.len; n++) {
        sg_error err = {0};
        sg_writer *w = sg_zstd_writer_new(sgt_fail_writer_new(sg_null_writer_new(), n), 3, 7);
        int rc = sgt_write_in_pieces(w, data, sizeof(data), 100, &err);
        if (rc == 0)
            rc = sg_writer_close(w, &err);
        ck_assert_int_eq(rc, n < packed.len ? SG_E_IO : 0);
        if (rc < 0)
            ck_assert_str_eq(err.message, "injected write failure");
        sg_writer_free(w);
    }
    for (uint64_t n = 0; n <= sizeof(data); n += 3) {
        sg_error err = {0};
        sg_writer *w = sg_unzstd_writer_new(sgt_fail_writer_new(NULL, n), 5, 0);
        int rc = sgt_write_in_pieces(w, packed.data, packed.len, 3, &err);
        if (rc == 0)
            rc = sg_writer_close(w, &err);
        ck_assert_int_eq(rc, n < sizeof(data) ? SG_E_IO : 0);
        sg_writer_free(w);
    }
    sg_buf_free(&packed);
}
END_TEST

/* Construction fails cleanly at every allocation, freeing next. */
START_TEST(test_alloc_construct)
{
    uint8_t data[1000];
    sgt_fill_mixed(data, sizeof(data), 4);
    for (long n = 0;; n++) {
        sg_buf out = {0};
        sg_writer *z, *u;
        sg_mem_fail_after(n);
        z = sg_zstd_writer_new(sg_buffer_writer_new(&out), 3, 0);
        sg_mem_fail_reset();
        sg_mem_fail_after(n);
        u = sg_unzstd_writer_new(sg_buffer_writer_new(&out), 0, 0);
        sg_mem_fail_reset();
        sg_writer_free(z);
        sg_writer_free(u);
        if (z && u)
            break;
        ck_assert_int_lt(n, 10);
    }
    assert_round_trip(data, sizeof(data), 3, 0, 0);
}
END_TEST

/* Allocation failure downstream, during write or close, is SG_E_NOMEM. */
START_TEST(test_alloc_write)
{
    sg_buf packed = {0};
    uint8_t data[20000];
    int rc;
    small_frame(&packed, data, sizeof(data));
    for (long n = 0;; n++) {
        sg_error err = {0};
        sg_buf out = {0};
        sg_writer *w = sg_zstd_writer_new(sg_buffer_writer_new(&out), 3, 64);
        sg_mem_fail_after(n);
        rc = sgt_write_in_pieces(w, data, sizeof(data), 1000, &err);
        if (rc == 0)
            rc = sg_writer_close(w, &err);
        sg_mem_fail_reset();
        sg_writer_free(w);
        sg_buf_free(&out);
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, SG_E_NOMEM);
    }
    for (long n = 0;; n++) {
        sg_error err = {0};
        sg_buf out = {0};
        sg_writer *w = sg_unzstd_writer_new(sg_buffer_writer_new(&out), 64, 0);
        sg_mem_fail_after(n);
        rc = sgt_write_in_pieces(w, packed.data, packed.len, 100, &err);
        if (rc == 0)
            rc = sg_writer_close(w, &err);
        sg_mem_fail_reset();
        sg_writer_free(w);
        sg_buf_free(&out);
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, SG_E_NOMEM);
    }
    sg_buf_free(&packed);
}
END_TEST

static Suite *zstd_suite(void)
{
    Suite *s = suite_create("zstd");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("round trip small", test_round_trip_small);
    CASE("round trip large", test_round_trip_large);
    CASE("levels", test_levels);
    CASE("compresses", test_compresses);
    CASE("checksum", test_checksum);
    CASE("truncated", test_truncated);
    CASE("trailing data", test_trailing_data);
    CASE("corrupt byte", test_corrupt_byte);
    CASE("max output", test_max_output);
    CASE("bomb", test_bomb);
    CASE("garbage", test_garbage);
    CASE("failing next", test_failing_next);
    CASE("allocation failure on construction", test_alloc_construct);
    CASE("allocation failure on write", test_alloc_write);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(zstd_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
