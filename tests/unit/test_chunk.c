#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/chunk.h"
#include "common/mem.h"
#include "common/sha256.h"
#include "tests/harness/writers.h"

static const uint8_t key[SG_SEAL_KEY_BYTES] = {
    1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
};

#define SNAPSHOT_ID "20240501T020000Z-1a2b3c4d"

static sg_chunk_ref ref_for(size_t plain_size)
{
    return (sg_chunk_ref){SNAPSHOT_ID, "public", "orders", 3, plain_size};
}

static void assert_contains(const char *haystack, const char *needle)
{
    ck_assert_msg(strstr(haystack, needle) != NULL, "\"%s\" does not contain \"%s\"", haystack,
                  needle);
}

static void seal(sg_buf *out, const void *plain, const sg_chunk_ref *ref)
{
    sg_error err = {0};
    ck_assert_msg(sg_chunk_seal(out, plain, ref, key, 3, &err) == 0, "%s", err.message);
}

/* Opens sealed bytes written in pieces of `piece` bytes (0: one write) into
 * out; returns the first error. */
static int open_into(sg_buf *out, const sg_chunk_ref *ref, const uint8_t *with_key,
                     const void *sealed, size_t len, size_t piece, sg_error *err)
{
    sg_writer *chain = NULL;
    int rc = sg_chunk_open_writer(&chain, sg_buffer_writer_new(out), ref, with_key, err);
    if (rc == 0 && (rc = sgt_write_in_pieces(chain, sealed, len, piece, err)) == 0)
        rc = sg_writer_close(chain, err);
    sg_writer_free(chain);
    return rc;
}

static void assert_round_trip(const void *plain, size_t len, size_t piece)
{
    sg_chunk_ref ref = ref_for(len);
    sg_buf sealed = {0}, out = {0};
    sg_error err = {0};
    seal(&sealed, plain, &ref);
    ck_assert_uint_gt(sealed.len, 0);
    ck_assert_msg(open_into(&out, &ref, key, sealed.data, sealed.len, piece, &err) == 0, "%s",
                  err.message);
    ck_assert_uint_eq(out.len, len);
    if (len)
        ck_assert_mem_eq(out.data, plain, len);
    sg_buf_free(&sealed);
    sg_buf_free(&out);
}

START_TEST(test_round_trip_tiny)
{
    const char rows[] = "1\talice\n2\tbob\n";
    for (size_t piece = 0; piece <= 7; piece++)
        assert_round_trip(rows, strlen(rows), piece);
    assert_round_trip("x", 1, 0);
}
END_TEST

/* Several secretstream segments, the last one partial. */
START_TEST(test_round_trip_large)
{
    size_t len = 3 * SG_CHUNK_SEGMENT_SIZE + 17;
    uint8_t *plain = malloc(len);
    ck_assert_ptr_nonnull(plain);
    sgt_fill_mixed(plain, len, 7);
    assert_round_trip(plain, len, 0);
    assert_round_trip(plain, len, 65537);
    free(plain);
}
END_TEST

START_TEST(test_round_trip_empty)
{
    assert_round_trip(NULL, 0, 0);
    assert_round_trip("", 0, 0);
}
END_TEST

/* Each field of the reference is bound: a chunk opened as if it were in
 * another snapshot, table or position, or of another length, fails to
 * decrypt, and nothing reaches the sink. */
START_TEST(test_bound_fields)
{
    const char rows[] = "1\talice\n2\tbob\n";
    sg_chunk_ref ref = ref_for(strlen(rows));
    sg_chunk_ref moved[] = {ref, ref, ref, ref, ref, ref, ref};
    sg_buf sealed = {0};
    moved[0].snapshot_id = "20240501T020000Z-1a2b3c4e";
    moved[1].schema = "private";
    moved[2].table = "orders2";
    moved[3].seq = 4;
    moved[4].plain_size = ref.plain_size + 1;
    moved[5].plain_size = ref.plain_size - 1;
    /* Fields cannot be shifted into each other. */
    moved[6].schema = "publicorders";
    moved[6].table = "";
    seal(&sealed, rows, &ref);
    for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
        sg_buf out = {0};
        sg_error err = {0};
        ck_assert_int_eq(open_into(&out, &moved[i], key, sealed.data, sealed.len, 0, &err),
                         SG_E_CRYPTO);
        assert_contains(err.message, "decryption failed");
        ck_assert_uint_eq(out.len, 0);
        sg_buf_free(&out);
    }
    sg_buf_free(&sealed);
}
END_TEST

START_TEST(test_wrong_key)
{
    const char rows[] = "1\talice\n";
    sg_chunk_ref ref = ref_for(strlen(rows));
    uint8_t other[SG_SEAL_KEY_BYTES];
    sg_buf sealed = {0}, out = {0};
    sg_error err = {0};
    memcpy(other, key, sizeof(other));
    other[31] ^= 0x80;
    seal(&sealed, rows, &ref);
    ck_assert_int_eq(open_into(&out, &ref, other, sealed.data, sealed.len, 0, &err), SG_E_CRYPTO);
    assert_contains(err.message, "wrong key");
    ck_assert_uint_eq(out.len, 0);
    sg_buf_free(&sealed);
    sg_buf_free(&out);
}
END_TEST

static void assert_open_fails(const sg_chunk_ref *ref, const uint8_t *data, size_t len,
                              size_t max_output, const char *what)
{
    sg_buf out = {0};
    sg_error err = {0};
    int rc = open_into(&out, ref, key, data, len, 0, &err);
    ck_assert_msg(rc == SG_E_CRYPTO || rc == SG_E_CORRUPT || rc == SG_E_FORMAT, "%s: rc %d (%s)",
                  what, rc, err.message);
    ck_assert_str_ne(err.message, "");
    ck_assert_msg(out.len <= max_output, "%s: %zu bytes came out", what, out.len);
    sg_buf_free(&out);
}

/* Every byte of a one-segment chunk matters; nothing reaches the sink. */
START_TEST(test_flipped_byte)
{
    const char rows[] = "1\talice\t\\N\n2\tbob\t2024-05-01\n";
    sg_chunk_ref ref = ref_for(strlen(rows));
    sg_buf sealed = {0};
    seal(&sealed, rows, &ref);
    for (size_t i = 0; i < sealed.len; i++) {
        static const uint8_t flips[] = {0x01, 0x80, 0xff};
        for (size_t f = 0; f < sizeof(flips); f++) {
            char what[64];
            snprintf(what, sizeof(what), "byte %zu ^ 0x%02x", i, flips[f]);
            sealed.data[i] ^= flips[f];
            assert_open_fails(&ref, sealed.data, sealed.len, 0, what);
            sealed.data[i] ^= flips[f];
        }
    }
    sg_buf_free(&sealed);
}
END_TEST

/* In a chunk of several segments, a flip in a later segment fails it even
 * though the segments before it were already passed on. */
START_TEST(test_flipped_byte_large)
{
    size_t len = 2 * SG_CHUNK_SEGMENT_SIZE + 100;
    uint8_t *plain = malloc(len);
    sg_chunk_ref ref = ref_for(len);
    sg_buf sealed = {0};
    ck_assert_ptr_nonnull(plain);
    sgt_fill_mixed(plain, len, 11);
    seal(&sealed, plain, &ref);
    for (size_t k = 0; k < 16; k++) {
        size_t i = k * (sealed.len / 16) + k;
        char what[64];
        snprintf(what, sizeof(what), "byte %zu of %zu", i, sealed.len);
        sealed.data[i] ^= 0x10;
        assert_open_fails(&ref, sealed.data, sealed.len, len, what);
        sealed.data[i] ^= 0x10;
    }
    assert_open_fails(&ref, sealed.data, sealed.len - 1, len, "last byte");
    free(plain);
    sg_buf_free(&sealed);
}
END_TEST

START_TEST(test_truncated)
{
    const char rows[] = "1\talice\n2\tbob\n";
    sg_chunk_ref ref = ref_for(strlen(rows));
    sg_buf sealed = {0};
    seal(&sealed, rows, &ref);
    for (size_t len = 0; len < sealed.len; len++) {
        char what[64];
        snprintf(what, sizeof(what), "%zu of %zu bytes", len, sealed.len);
        assert_open_fails(&ref, sealed.data, len, 0, what);
    }
    {
        sg_buf out = {0};
        sg_error err = {0};
        ck_assert_int_eq(open_into(&out, &ref, key, sealed.data, 0, 0, &err), SG_E_CORRUPT);
        ck_assert_str_eq(err.message, "sealed stream is truncated");
        sg_buf_free(&out);
    }
    sg_buf_free(&sealed);
}
END_TEST

START_TEST(test_trailing_bytes)
{
    const char rows[] = "1\talice\n";
    sg_chunk_ref ref = ref_for(strlen(rows));
    sg_buf sealed = {0};
    sg_error err = {0};
    seal(&sealed, rows, &ref);
    ck_assert_int_eq(sg_buf_append(&sealed, "\0", 1, &err), 0);
    assert_open_fails(&ref, sealed.data, sealed.len, strlen(rows), "one byte more");
    sg_buf_free(&sealed);
}
END_TEST

/* A chunk sealed by hand with the right associated data but another amount
 * of plain text: only a key holder can make one, but opening must still
 * refuse it rather than pass on more (or fewer) bytes than the reference. */
static void seal_mislabelled(sg_buf *out, const sg_chunk_ref *ref, const void *plain, size_t len)
{
    uint8_t ad[SG_CHUNK_AD_MAX];
    size_t ad_len = sg_chunk_ad(ad, ref);
    sg_writer *w = sg_buffer_writer_new(out);
    sg_error err = {0};
    w = sg_seal_writer_new(w, key, ad, ad_len, SG_CHUNK_SEGMENT_SIZE);
    w = sg_zstd_writer_new(w, 3, 0);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_write(w, plain, len, &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    sg_writer_free(w);
}

START_TEST(test_output_longer)
{
    static const size_t extra[] = {1, 2, 100, 300000};
    char *plain = malloc(10 + 300000);
    ck_assert_ptr_nonnull(plain);
    memset(plain, 'a', 10 + 300000);
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        sg_chunk_ref ref = ref_for(10);
        sg_buf sealed = {0}, out = {0};
        sg_error err = {0};
        seal_mislabelled(&sealed, &ref, plain, 10 + extra[i]);
        ck_assert_int_eq(open_into(&out, &ref, key, sealed.data, sealed.len, 0, &err),
                         SG_E_CORRUPT);
        ck_assert_msg(
            strstr(err.message, "chunk holds more than the 10 bytes it was sealed with") ||
                strstr(err.message, "expands to more than 11 bytes"),
            "%s", err.message);
        ck_assert_uint_le(out.len, 10);
        sg_buf_free(&sealed);
        sg_buf_free(&out);
    }
    /* The empty chunk too: for the zstd cap 0 would mean no limit. */
    {
        sg_chunk_ref ref = ref_for(0);
        sg_buf sealed = {0}, out = {0};
        sg_error err = {0};
        seal_mislabelled(&sealed, &ref, "x", 1);
        ck_assert_int_eq(open_into(&out, &ref, key, sealed.data, sealed.len, 0, &err),
                         SG_E_CORRUPT);
        ck_assert_str_eq(err.message, "chunk holds more than the 0 bytes it was sealed with");
        ck_assert_uint_eq(out.len, 0);
        sg_buf_free(&sealed);
        sg_buf_free(&out);
    }
    free(plain);
}
END_TEST

START_TEST(test_output_shorter)
{
    sg_chunk_ref ref = ref_for(10);
    sg_buf sealed = {0}, out = {0};
    sg_error err = {0};
    seal_mislabelled(&sealed, &ref, "123456789", 9);
    ck_assert_int_eq(open_into(&out, &ref, key, sealed.data, sealed.len, 0, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "chunk holds 9 bytes, not the 10 it was sealed with");
    sg_buf_free(&sealed);
    sg_buf_free(&out);
}
END_TEST

START_TEST(test_seal_nomem)
{
    const char rows[] = "1\talice\n";
    sg_chunk_ref ref = ref_for(strlen(rows));
    int rc = -1;
    for (long after = 0; rc != 0; after++) {
        sg_buf sealed = {0};
        sg_error err = {0};
        ck_assert_int_lt(after, 100);
        sg_mem_fail_after(after);
        rc = sg_chunk_seal(&sealed, rows, &ref, key, 3, &err);
        sg_mem_fail_reset();
        if (rc != 0) {
            ck_assert_int_eq(rc, SG_E_NOMEM);
            assert_contains(err.message, "out of memory");
        }
        sg_buf_free(&sealed);
    }
}
END_TEST

START_TEST(test_open_nomem)
{
    const char rows[] = "1\talice\n";
    sg_chunk_ref ref = ref_for(strlen(rows));
    sg_buf sealed = {0};
    int rc = -1;
    seal(&sealed, rows, &ref);
    for (long after = 0; rc != 0; after++) {
        sg_buf out = {0};
        sg_error err = {0};
        sg_writer *chain = NULL;
        ck_assert_int_lt(after, 100);
        sg_mem_fail_after(after);
        rc = sg_chunk_open_writer(&chain, sg_buffer_writer_new(&out), &ref, key, &err);
        if (rc == 0) {
            rc = sg_writer_write(chain, sealed.data, sealed.len, &err);
            if (rc == 0)
                rc = sg_writer_close(chain, &err);
        } else {
            ck_assert_ptr_null(chain);
        }
        sg_mem_fail_reset();
        if (rc != 0)
            ck_assert_int_eq(rc, SG_E_NOMEM);
        else
            ck_assert_mem_eq(out.data, rows, strlen(rows));
        sg_writer_free(chain);
        sg_buf_free(&out);
    }
    sg_buf_free(&sealed);
}
END_TEST

static sg_digest digest_of(const char *text)
{
    sg_digest d;
    sg_digest_init(&d);
    ck_assert_uint_eq(sg_digest_copy_text(&d, text, strlen(text)), strlen(text));
    return d;
}

/* Rows split across writes at every possible place digest the same. */
START_TEST(test_rows_check_pieces)
{
    const char text[] = "1\talice\t\\N\n\n2\tbob\t2024-05-01\n3\tcarol with a longer value\n";
    size_t len = strlen(text);
    sg_digest want = digest_of(text);
    for (size_t piece = 1; piece <= len; piece++) {
        sg_buf out = {0};
        sg_error err = {0};
        sg_writer *w = sg_rows_check_writer_new(sg_buffer_writer_new(&out), "table t", len, &want);
        ck_assert_ptr_nonnull(w);
        ck_assert_int_eq(sgt_write_in_pieces(w, text, len, piece, &err), 0);
        ck_assert_msg(sg_writer_close(w, &err) == 0, "piece %zu: %s", piece, err.message);
        /* Forwarded untouched. */
        ck_assert_uint_eq(out.len, len);
        ck_assert_mem_eq(out.data, text, len);
        sg_writer_free(w);
        sg_buf_free(&out);
    }
}
END_TEST

START_TEST(test_rows_check_empty)
{
    sg_digest none;
    sg_error err = {0};
    sg_writer *w;
    sg_digest_init(&none);
    w = sg_rows_check_writer_new(NULL, "table t", 0, &none);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    sg_writer_free(w);
}
END_TEST

START_TEST(test_rows_check_size_mismatch)
{
    const char text[] = "1\ta\n2\tb\n";
    sg_digest want = digest_of(text);
    static const uint64_t claimed[] = {7, 9, 0};
    for (size_t i = 0; i < 3; i++) {
        sg_error err = {0};
        char msg[128];
        sg_writer *w = sg_rows_check_writer_new(NULL, "table public.t, chunk 2", claimed[i], &want);
        ck_assert_ptr_nonnull(w);
        ck_assert_int_eq(sg_writer_write(w, text, strlen(text), &err), 0);
        ck_assert_int_eq(sg_writer_close(w, &err), SG_E_MISMATCH);
        ck_assert_int_eq(err.code, SG_E_MISMATCH);
        snprintf(msg, sizeof(msg),
                 "table public.t, chunk 2: has 8 bytes of rows, manifest says %llu",
                 (unsigned long long)claimed[i]);
        ck_assert_str_eq(err.message, msg);
        sg_writer_free(w);
    }
}
END_TEST

START_TEST(test_rows_check_digest_mismatch)
{
    const char text[] = "1\ta\n2\tb\n";
    const char changed[] = "1\ta\n2\tc\n";
    sg_digest want = digest_of(text);
    char want_hex[SG_DIGEST_HEX_LEN + 1], got_hex[SG_DIGEST_HEX_LEN + 1], line[128];
    sg_digest got = digest_of(changed);
    sg_error err = {0};
    sg_writer *w = sg_rows_check_writer_new(NULL, "table public.t, chunk 2", 8, &want);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_write(w, changed, strlen(changed), &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), SG_E_MISMATCH);
    ck_assert_str_eq(err.message, "table public.t, chunk 2: rows do not match the manifest");
    sg_digest_hex(&want, want_hex);
    sg_digest_hex(&got, got_hex);
    snprintf(line, sizeof(line), "manifest: 2 rows, digest %s", want_hex);
    assert_contains(err.detail, line);
    snprintf(line, sizeof(line), "found:    2 rows, digest %s", got_hex);
    assert_contains(err.detail, line);
    sg_writer_free(w);
}
END_TEST

/* A row duplicated in place of another keeps the size and the row count;
 * the digest still tells them apart. */
START_TEST(test_rows_check_duplicate_row)
{
    const char text[] = "1\ta\n2\tb\n";
    const char dup[] = "1\ta\n1\ta\n";
    sg_digest want = digest_of(text);
    sg_error err = {0};
    sg_writer *w = sg_rows_check_writer_new(NULL, "t", 8, &want);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_write(w, dup, strlen(dup), &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), SG_E_MISMATCH);
    ck_assert_str_eq(err.message, "t: rows do not match the manifest");
    sg_writer_free(w);
}
END_TEST

START_TEST(test_rows_check_partial_row)
{
    const char text[] = "1\ta\n2\tb";
    sg_digest want = digest_of("1\ta\n");
    for (size_t piece = 0; piece <= 3; piece++) {
        sg_error err = {0};
        sg_writer *w =
            sg_rows_check_writer_new(NULL, "table public.t, chunk 0", strlen(text), &want);
        ck_assert_ptr_nonnull(w);
        ck_assert_int_eq(sgt_write_in_pieces(w, text, strlen(text), piece, &err), 0);
        ck_assert_int_eq(sg_writer_close(w, &err), SG_E_MISMATCH);
        ck_assert_str_eq(err.message, "table public.t, chunk 0: ends in an incomplete row (3 "
                                      "bytes after the last newline)");
        sg_writer_free(w);
    }
}
END_TEST

/* As restore uses them: a chunk opened into a rows check. */
START_TEST(test_open_into_rows_check)
{
    const char rows[] = "1\talice\n2\tbob\n";
    sg_chunk_ref ref = ref_for(strlen(rows));
    sg_digest want = digest_of(rows);
    sg_buf sealed = {0};
    sg_error err = {0};
    sg_writer *chain = NULL;
    seal(&sealed, rows, &ref);
    ck_assert_int_eq(
        sg_chunk_open_writer(&chain, sg_rows_check_writer_new(NULL, "t", ref.plain_size, &want),
                             &ref, key, &err),
        0);
    ck_assert_int_eq(sgt_write_in_pieces(chain, sealed.data, sealed.len, 5, &err), 0);
    ck_assert_msg(sg_writer_close(chain, &err) == 0, "%s", err.message);
    sg_writer_free(chain);
    sg_buf_free(&sealed);
}
END_TEST

START_TEST(test_rows_check_nomem)
{
    sg_digest d;
    sg_digest_init(&d);
    for (long after = 0; after < 2; after++) {
        sg_mem_fail_after(after);
        ck_assert_ptr_null(sg_rows_check_writer_new(NULL, "t", 0, &d));
        sg_mem_fail_reset();
    }
    /* A row split across writes is buffered: that allocation can fail too. */
    {
        sg_error err = {0};
        sg_writer *w = sg_rows_check_writer_new(NULL, "t", 3, &d);
        ck_assert_ptr_nonnull(w);
        sg_mem_fail_after(0);
        ck_assert_int_eq(sg_writer_write(w, "abc", 3, &err), SG_E_NOMEM);
        sg_mem_fail_reset();
        sg_writer_free(w);
    }
}
END_TEST

/* The sealer reports the SHA-256 of exactly the bytes it wrote: what the
 * manifest records and a reader checks before opening the chunk. */
START_TEST(test_sealed_sha256)
{
    const char plain[] = "1\talice\n2\tbob\n";
    sg_chunk_ref ref = ref_for(sizeof(plain) - 1);
    sg_chunk_sealer *sealer = sg_chunk_sealer_new(3);
    sg_buf sealed = {0};
    sg_error err = {0};
    uint64_t size;
    uint8_t reported[32], actual[32];
    ck_assert_ptr_nonnull(sealer);
    ck_assert_int_eq(sg_chunk_sealer_compress(sealer, &size, plain, sizeof(plain) - 1, &err), 0);
    ck_assert_int_eq(
        sg_chunk_sealer_seal(sealer, sg_buffer_writer_new(&sealed), &ref, key, reported, &err), 0);
    ck_assert_uint_eq(sealed.len, size);
    sg_sha256(actual, sealed.data, sealed.len);
    ck_assert_mem_eq(reported, actual, 32);
    sg_chunk_sealer_free(sealer);
    sg_buf_free(&sealed);
}
END_TEST

static Suite *chunk_suite(void)
{
    Suite *s = suite_create("chunk");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("round trip tiny", test_round_trip_tiny);
    CASE("round trip large", test_round_trip_large);
    CASE("round trip empty", test_round_trip_empty);
    CASE("bound fields", test_bound_fields);
    CASE("wrong key", test_wrong_key);
    CASE("flipped byte", test_flipped_byte);
    CASE("flipped byte large", test_flipped_byte_large);
    CASE("truncated", test_truncated);
    CASE("trailing bytes", test_trailing_bytes);
    CASE("output longer", test_output_longer);
    CASE("output shorter", test_output_shorter);
    CASE("seal nomem", test_seal_nomem);
    CASE("sealed sha256", test_sealed_sha256);
    CASE("open nomem", test_open_nomem);
    CASE("rows check pieces", test_rows_check_pieces);
    CASE("rows check empty", test_rows_check_empty);
    CASE("rows check size mismatch", test_rows_check_size_mismatch);
    CASE("rows check digest mismatch", test_rows_check_digest_mismatch);
    CASE("rows check duplicate row", test_rows_check_duplicate_row);
    CASE("rows check partial row", test_rows_check_partial_row);
    CASE("open into rows check", test_open_into_rows_check);
    CASE("rows check nomem", test_rows_check_nomem);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(chunk_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
