#include <check.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/writer.h"
#include "tests/harness/writers.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define HEADER_LEN 32
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define MESSAGE crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
#define FINAL crypto_secretstream_xchacha20poly1305_TAG_FINAL

static const char AD[] = "snapshot 1f2e/table public.orders/chunk 7";

static void make_key(uint8_t key[SG_SEAL_KEY_BYTES], uint8_t seed)
{
    for (int i = 0; i < SG_SEAL_KEY_BYTES; i++)
        key[i] = (uint8_t)(seed + i * 13);
}

static int seal(sg_buf *out, const uint8_t *key, const void *ad, size_t ad_len, size_t segment,
                const void *data, size_t len, size_t piece, sg_error *err)
{
    sg_writer *w = sg_seal_writer_new(sg_buffer_writer_new(out), key, ad, ad_len, segment);
    int rc;
    ck_assert_ptr_nonnull(w);
    rc = sgt_write_in_pieces(w, data, len, piece, err);
    if (rc == 0)
        rc = sg_writer_close(w, err);
    sg_writer_free(w);
    return rc;
}

static int unseal(sg_buf *out, const uint8_t *key, const void *ad, size_t ad_len, const void *data,
                  size_t len, size_t piece, sg_error *err)
{
    sg_writer *w = sg_unseal_writer_new(sg_buffer_writer_new(out), key, ad, ad_len);
    int rc;
    ck_assert_ptr_nonnull(w);
    rc = sgt_write_in_pieces(w, data, len, piece, err);
    if (rc == 0)
        rc = sg_writer_close(w, err);
    sg_writer_free(w);
    return rc;
}

/* Unseals with the test key and AD; out must stay a prefix of the plaintext
 * whatever happens. */
static int open_stream(const sg_buf *sealed, const uint8_t *plain, size_t plain_len, sg_error *err)
{
    uint8_t key[SG_SEAL_KEY_BYTES];
    sg_buf out = {0};
    int rc;
    make_key(key, 1);
    rc = unseal(&out, key, AD, strlen(AD), sealed->data, sealed->len, 0, err);
    ck_assert_uint_le(out.len, plain_len);
    if (out.len > 0)
        ck_assert_mem_eq(out.data, plain, out.len);
    sg_buf_free(&out);
    return rc;
}

/* 20 bytes in segments of 8: header, then segments of 8, 8 and 4 bytes, the
 * last FINAL. Each segment takes 4 + n + 17 bytes. */
#define SMALL_LEN 20
#define SMALL_SEGMENT 8
static void small_stream(sg_buf *sealed, uint8_t plain[SMALL_LEN])
{
    uint8_t key[SG_SEAL_KEY_BYTES];
    sg_error err = {0};
    make_key(key, 1);
    sgt_fill_mixed(plain, SMALL_LEN, 9);
    ck_assert_int_eq(seal(sealed, key, AD, strlen(AD), SMALL_SEGMENT, plain, SMALL_LEN, 0, &err),
                     0);
    ck_assert_uint_eq(sealed->len, HEADER_LEN + 3 * (4 + ABYTES) + SMALL_LEN);
}

static size_t segment_offset(int index)
{
    return HEADER_LEN + (size_t)index * (4 + SMALL_SEGMENT + ABYTES);
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Builds a stream by hand from the format documented in seal_writer.c. */
static void build_stream(sg_buf *out, const uint8_t *key, uint32_t segment_size, size_t count,
                         const size_t *lens, const uint8_t *tags)
{
    crypto_secretstream_xchacha20poly1305_state state;
    uint8_t header[HEADER_LEN], ad[8 + sizeof(AD) - 1];
    uint8_t plain[256], cipher[4 + 256 + ABYTES];
    unsigned long long clen;
    memcpy(header, "SGS1", 4);
    store_be32(header + 4, segment_size);
    crypto_secretstream_xchacha20poly1305_init_push(&state, header + 8, key);
    memcpy(ad, header, 8);
    memcpy(ad + 8, AD, sizeof(AD) - 1);
    ck_assert_int_eq(sg_buf_append(out, header, sizeof(header), NULL), 0);
    memset(plain, 'p', sizeof(plain));
    for (size_t i = 0; i < count; i++) {
        crypto_secretstream_xchacha20poly1305_push(&state, cipher + 4, &clen, plain, lens[i], ad,
                                                   sizeof(ad), tags[i]);
        store_be32(cipher, (uint32_t)clen);
        ck_assert_int_eq(sg_buf_append(out, cipher, 4 + (size_t)clen, NULL), 0);
    }
}

START_TEST(test_round_trip_small)
{
    static const size_t segments[] = {1, 2, 3, 7, 64};
    static const size_t sizes[] = {0, 1, 2, 3, 6, 7, 8, 100, 1000};
    static const size_t seal_pieces[] = {1, 2, 3, 7, 0};
    static const size_t open_pieces[] = {1, 3, 0};
    uint8_t key[SG_SEAL_KEY_BYTES], data[1000];
    make_key(key, 1);
    sgt_fill_mixed(data, sizeof(data), 1);
    for (size_t g = 0; g < ARRAY_LEN(segments); g++)
        for (size_t s = 0; s < ARRAY_LEN(sizes); s++)
            for (size_t p = 0; p < ARRAY_LEN(seal_pieces); p++)
                for (size_t o = 0; o < ARRAY_LEN(open_pieces); o++) {
                    sg_error err = {0};
                    sg_buf sealed = {0}, plain = {0};
                    ck_assert_int_eq(seal(&sealed, key, AD, strlen(AD), segments[g], data, sizes[s],
                                          seal_pieces[p], &err),
                                     0);
                    ck_assert_uint_eq(sealed.len, sg_sealed_size(sizes[s], segments[g]));
                    ck_assert_int_eq(unseal(&plain, key, AD, strlen(AD), sealed.data, sealed.len,
                                            open_pieces[o], &err),
                                     0);
                    ck_assert_uint_eq(plain.len, sizes[s]);
                    if (sizes[s] > 0)
                        ck_assert_mem_eq(plain.data, data, sizes[s]);
                    sg_buf_free(&sealed);
                    sg_buf_free(&plain);
                }
}
END_TEST

START_TEST(test_round_trip_large)
{
    static const size_t pieces[] = {1000, 65536, 100000, 0};
    static const size_t segments[] = {65536, 1 << 20};
    size_t len = 4 << 20;
    uint8_t key[SG_SEAL_KEY_BYTES], *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    make_key(key, 2);
    sgt_fill_mixed(data, len, 2);
    for (size_t g = 0; g < ARRAY_LEN(segments); g++)
        for (size_t p = 0; p < ARRAY_LEN(pieces); p++) {
            sg_error err = {0};
            sg_buf sealed = {0}, plain = {0};
            ck_assert_int_eq(seal(&sealed, key, NULL, 0, segments[g], data, len, pieces[p], &err),
                             0);
            ck_assert_uint_eq(sealed.len, sg_sealed_size(len, segments[g]));
            ck_assert_int_eq(
                unseal(&plain, key, NULL, 0, sealed.data, sealed.len, pieces[3 - p], &err), 0);
            ck_assert_uint_eq(plain.len, len);
            ck_assert_mem_eq(plain.data, data, len);
            sg_buf_free(&sealed);
            sg_buf_free(&plain);
        }
    free(data);
}
END_TEST

START_TEST(test_sealed_size)
{
    static const size_t segments[] = {1, 2, 3, 7, 64};
    static const size_t big[] = {65535, 65536, 65537, 3 * 65536, 1 << 20};
    uint8_t key[SG_SEAL_KEY_BYTES], data[1 << 20];
    make_key(key, 3);
    memset(data, 'x', sizeof(data));
    for (size_t g = 0; g < ARRAY_LEN(segments); g++)
        for (size_t len = 0; len <= 300; len++) {
            sg_error err = {0};
            sg_buf sealed = {0};
            ck_assert_int_eq(seal(&sealed, key, AD, strlen(AD), segments[g], data, len, 0, &err),
                             0);
            ck_assert_uint_eq(sealed.len, sg_sealed_size(len, segments[g]));
            sg_buf_free(&sealed);
        }
    for (size_t i = 0; i < ARRAY_LEN(big); i++) {
        sg_error err = {0};
        sg_buf sealed = {0};
        ck_assert_int_eq(seal(&sealed, key, AD, strlen(AD), 65536, data, big[i], 4000, &err), 0);
        ck_assert_uint_eq(sealed.len, sg_sealed_size(big[i], 65536));
        sg_buf_free(&sealed);
    }
    ck_assert_uint_eq(sg_sealed_size(0, 65536), HEADER_LEN + 4 + ABYTES);
}
END_TEST

/* What the writer produces follows the documented format, read here with
 * libsodium directly. */
START_TEST(test_format)
{
    crypto_secretstream_xchacha20poly1305_state state;
    uint8_t key[SG_SEAL_KEY_BYTES], plain[SMALL_LEN], out[SMALL_SEGMENT], tag;
    uint8_t ad[8 + sizeof(AD) - 1];
    unsigned long long out_len;
    sg_buf sealed = {0};
    size_t pos = HEADER_LEN, got = 0;
    make_key(key, 1);
    small_stream(&sealed, plain);
    ck_assert_mem_eq(sealed.data, "SGS1\0\0\0\x08", 8);
    memcpy(ad, sealed.data, 8);
    memcpy(ad + 8, AD, sizeof(AD) - 1);
    ck_assert_int_eq(crypto_secretstream_xchacha20poly1305_init_pull(&state, sealed.data + 8, key),
                     0);
    for (int i = 0; i < 3; i++) {
        uint32_t clen = (uint32_t)sealed.data[pos] << 24 | (uint32_t)sealed.data[pos + 1] << 16 |
                        (uint32_t)sealed.data[pos + 2] << 8 | sealed.data[pos + 3];
        ck_assert_uint_eq(clen, (i < 2 ? SMALL_SEGMENT : SMALL_LEN % SMALL_SEGMENT) + ABYTES);
        ck_assert_int_eq(crypto_secretstream_xchacha20poly1305_pull(&state, out, &out_len, &tag,
                                                                    sealed.data + pos + 4, clen, ad,
                                                                    sizeof(ad)),
                         0);
        ck_assert_uint_eq(tag, i < 2 ? MESSAGE : FINAL);
        ck_assert_mem_eq(out, plain + got, out_len);
        got += out_len;
        pos += 4 + clen;
    }
    ck_assert_uint_eq(got, SMALL_LEN);
    ck_assert_uint_eq(pos, sealed.len);
    sg_buf_free(&sealed);
}
END_TEST

/* An empty stream is a header and one empty FINAL segment. */
START_TEST(test_empty)
{
    uint8_t key[SG_SEAL_KEY_BYTES];
    sg_error err = {0};
    sg_buf sealed = {0}, plain = {0};
    make_key(key, 1);
    ck_assert_int_eq(seal(&sealed, key, AD, strlen(AD), 16, "", 0, 0, &err), 0);
    ck_assert_uint_eq(sealed.len, HEADER_LEN + 4 + ABYTES);
    ck_assert_int_eq(unseal(&plain, key, AD, strlen(AD), sealed.data, sealed.len, 1, &err), 0);
    ck_assert_uint_eq(plain.len, 0);
    sg_buf_free(&sealed);
    sg_buf_free(&plain);
}
END_TEST

/* A stream written by hand from the format, with segments shorter than the
 * segment size, opens. */
START_TEST(test_hand_built)
{
    static const size_t lens[] = {5, 0, 16, 1};
    static const uint8_t tags[] = {MESSAGE, MESSAGE, MESSAGE, FINAL};
    uint8_t key[SG_SEAL_KEY_BYTES];
    sg_error err = {0};
    sg_buf sealed = {0}, plain = {0};
    make_key(key, 1);
    build_stream(&sealed, key, 16, 4, lens, tags);
    ck_assert_int_eq(unseal(&plain, key, AD, strlen(AD), sealed.data, sealed.len, 2, &err), 0);
    ck_assert_uint_eq(plain.len, 22);
    sg_buf_free(&sealed);
    sg_buf_free(&plain);
}
END_TEST

/* Every byte of a stream is covered: a flipped bit anywhere fails to open,
 * with the class that fits where it is. */
START_TEST(test_tamper_every_byte)
{
    static const uint8_t masks[] = {0x01, 0x80};
    uint8_t plain[SMALL_LEN];
    sg_buf sealed = {0};
    small_stream(&sealed, plain);
    for (size_t pos = 0; pos < sealed.len; pos++)
        for (size_t m = 0; m < ARRAY_LEN(masks); m++) {
            sg_error err = {0};
            bool is_length = false;
            int rc;
            for (int i = 0; i < 3; i++)
                is_length = is_length || (pos >= segment_offset(i) && pos < segment_offset(i) + 4);
            sealed.data[pos] ^= masks[m];
            rc = open_stream(&sealed, plain, SMALL_LEN, &err);
            sealed.data[pos] ^= masks[m];
            if (pos < 4) {
                ck_assert_int_eq(rc, SG_E_FORMAT);
            } else if (pos < 8 || is_length) {
                /* A changed size or length is out of bounds, misframes the
                 * segments, or leaves the stream short. */
                ck_assert_msg(rc == SG_E_CORRUPT || rc == SG_E_CRYPTO, "byte %zu: %s", pos,
                              err.message);
            } else {
                ck_assert_int_eq(rc, SG_E_CRYPTO);
                ck_assert_str_eq(err.message,
                                 "decryption failed: wrong key, or the data was modified or moved");
            }
        }
    sg_buf_free(&sealed);
}
END_TEST

START_TEST(test_truncated)
{
    uint8_t key[SG_SEAL_KEY_BYTES], plain[SMALL_LEN];
    sg_buf sealed = {0};
    make_key(key, 1);
    small_stream(&sealed, plain);
    for (size_t cut = 0; cut < sealed.len; cut++)
        for (size_t piece = 0; piece <= 1; piece++) {
            sg_error err = {0};
            sg_buf out = {0};
            sg_writer *w = sg_unseal_writer_new(sg_buffer_writer_new(&out), key, AD, strlen(AD));
            ck_assert_int_eq(sgt_write_in_pieces(w, sealed.data, cut, piece, &err), 0);
            ck_assert_int_eq(sg_writer_close(w, &err), SG_E_CORRUPT);
            ck_assert_str_eq(err.message, "sealed stream is truncated");
            ck_assert_str_eq(err.detail,
                             cut < HEADER_LEN ? "it ends inside the header"
                             : cut < segment_offset(1)
                                 ? "it ends after 0 complete segments, before the final one"
                             : cut < segment_offset(2)
                                 ? "it ends after 1 complete segments, before the final one"
                                 : "it ends after 2 complete segments, before the final one");
            ck_assert_uint_lt(out.len, SMALL_LEN);
            sg_writer_free(w);
            sg_buf_free(&out);
        }
    sg_buf_free(&sealed);
}
END_TEST

START_TEST(test_wrong_key)
{
    uint8_t key[SG_SEAL_KEY_BYTES], plain[SMALL_LEN];
    sg_error err = {0};
    sg_buf sealed = {0}, out = {0};
    small_stream(&sealed, plain);
    make_key(key, 2);
    ck_assert_int_eq(unseal(&out, key, AD, strlen(AD), sealed.data, sealed.len, 0, &err),
                     SG_E_CRYPTO);
    ck_assert_str_eq(err.message,
                     "decryption failed: wrong key, or the data was modified or moved");
    ck_assert_str_eq(err.detail, "sealed segment 1 failed authentication");
    ck_assert_uint_eq(out.len, 0);
    sg_buf_free(&sealed);
    sg_buf_free(&out);
}
END_TEST

/* A stream moved to another chunk, table or snapshot does not open. */
START_TEST(test_wrong_ad)
{
    static const char *const ads[] = {"snapshot 1f2e/table public.orders/chunk 8",
                                      "snapshot 1f2e/table public.orders/chunk 7 ", ""};
    uint8_t key[SG_SEAL_KEY_BYTES], plain[SMALL_LEN];
    sg_buf sealed = {0};
    make_key(key, 1);
    small_stream(&sealed, plain);
    for (size_t i = 0; i < ARRAY_LEN(ads); i++) {
        sg_error err = {0};
        sg_buf out = {0};
        ck_assert_int_eq(
            unseal(&out, key, ads[i], strlen(ads[i]), sealed.data, sealed.len, 0, &err),
            SG_E_CRYPTO);
        ck_assert_uint_eq(out.len, 0);
        sg_buf_free(&out);
    }
    sg_buf_free(&sealed);
}
END_TEST

START_TEST(test_reordered)
{
    uint8_t plain[SMALL_LEN], other_plain[SMALL_LEN];
    size_t seg = segment_offset(1) - segment_offset(0);
    sg_error err = {0};
    sg_buf sealed = {0}, other = {0}, edited = {0};
    small_stream(&sealed, plain);

    /* Segments 1 and 2 swapped. */
    ck_assert_int_eq(sg_buf_append(&edited, sealed.data, sealed.len, NULL), 0);
    memcpy(edited.data + segment_offset(0), sealed.data + segment_offset(1), seg);
    memcpy(edited.data + segment_offset(1), sealed.data + segment_offset(0), seg);
    ck_assert_int_eq(open_stream(&edited, plain, SMALL_LEN, &err), SG_E_CRYPTO);
    ck_assert_str_eq(err.detail, "sealed segment 1 failed authentication");

    /* Segment 2 dropped. */
    edited.len = 0;
    ck_assert_int_eq(sg_buf_append(&edited, sealed.data, segment_offset(1), NULL), 0);
    ck_assert_int_eq(sg_buf_append(&edited, sealed.data + segment_offset(2),
                                   sealed.len - segment_offset(2), NULL),
                     0);
    ck_assert_int_eq(open_stream(&edited, plain, SMALL_LEN, &err), SG_E_CRYPTO);
    ck_assert_str_eq(err.detail, "sealed segment 2 failed authentication");

    /* Segment 1 repeated. */
    edited.len = 0;
    ck_assert_int_eq(sg_buf_append(&edited, sealed.data, segment_offset(1), NULL), 0);
    ck_assert_int_eq(sg_buf_append(&edited, sealed.data + segment_offset(0),
                                   sealed.len - segment_offset(0), NULL),
                     0);
    ck_assert_int_eq(open_stream(&edited, plain, SMALL_LEN, &err), SG_E_CRYPTO);

    /* Segment 2 taken from another stream with the same key and ad. */
    small_stream(&other, other_plain);
    ck_assert_uint_eq(sealed.len, other.len);
    edited.len = 0;
    ck_assert_int_eq(sg_buf_append(&edited, sealed.data, sealed.len, NULL), 0);
    memcpy(edited.data + segment_offset(1), other.data + segment_offset(1), seg);
    ck_assert_int_eq(open_stream(&edited, plain, SMALL_LEN, &err), SG_E_CRYPTO);
    ck_assert_str_eq(err.detail, "sealed segment 2 failed authentication");
    sg_buf_free(&sealed);
    sg_buf_free(&other);
    sg_buf_free(&edited);
}
END_TEST

START_TEST(test_trailing_data)
{
    uint8_t key[SG_SEAL_KEY_BYTES], plain[SMALL_LEN];
    sg_error err = {0};
    sg_buf sealed = {0}, edited = {0}, out = {0};
    sg_writer *w;
    make_key(key, 1);
    small_stream(&sealed, plain);

    ck_assert_int_eq(sg_buf_append(&edited, sealed.data, sealed.len, NULL), 0);
    ck_assert_int_eq(sg_buf_append(&edited, "x", 1, NULL), 0);
    ck_assert_int_eq(open_stream(&edited, plain, SMALL_LEN, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "unexpected data after the end of the sealed stream");

    /* A second whole stream after the first. */
    edited.len = 0;
    ck_assert_int_eq(sg_buf_append(&edited, sealed.data, sealed.len, NULL), 0);
    ck_assert_int_eq(sg_buf_append(&edited, sealed.data, sealed.len, NULL), 0);
    ck_assert_int_eq(open_stream(&edited, plain, SMALL_LEN, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "unexpected data after the end of the sealed stream");

    /* In a later write. */
    w = sg_unseal_writer_new(sg_buffer_writer_new(&out), key, AD, strlen(AD));
    ck_assert_int_eq(sg_writer_write(w, sealed.data, sealed.len, &err), 0);
    ck_assert_int_eq(sg_writer_write(w, "x", 1, &err), SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "unexpected data after the end of the sealed stream");
    sg_writer_free(w);
    sg_buf_free(&sealed);
    sg_buf_free(&edited);
    sg_buf_free(&out);
}
END_TEST

/* Not a sealed stream: caught at the first wrong byte. */
START_TEST(test_bad_magic)
{
    uint8_t key[SG_SEAL_KEY_BYTES];
    sg_error err = {0};
    sg_buf out = {0};
    sg_writer *w;
    make_key(key, 1);
    w = sg_unseal_writer_new(sg_buffer_writer_new(&out), key, AD, strlen(AD));
    ck_assert_int_eq(sg_writer_write(w, "S", 1, &err), 0);
    ck_assert_int_eq(sg_writer_write(w, "X", 1, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "not a sealed stream");
    ck_assert_str_eq(err.detail, "a sealed stream starts with \"SGS1\"");
    sg_writer_free(w);

    ck_assert_int_eq(unseal(&out, key, AD, strlen(AD), "SGS2\0\0\0\x08", 8, 1, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "unsupported sealed stream version 0x32");
    ck_assert_int_eq(unseal(&out, key, AD, strlen(AD), "\x28\xb5\x2f\xfd", 4, 0, &err),
                     SG_E_FORMAT);
    ck_assert_str_eq(err.message, "not a sealed stream");
    sg_buf_free(&out);
}
END_TEST

START_TEST(test_bad_segment_size)
{
    static const uint32_t sizes[] = {0, SG_SEAL_MAX_SEGMENT + 1, 0xffffffff};
    uint8_t plain[SMALL_LEN];
    sg_buf sealed = {0};
    small_stream(&sealed, plain);
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        sg_error err = {0};
        char expect[128];
        store_be32(sealed.data + 4, sizes[i]);
        ck_assert_int_eq(open_stream(&sealed, plain, SMALL_LEN, &err), SG_E_CORRUPT);
        snprintf(expect, sizeof(expect),
                 "sealed stream header has an invalid segment size (%u bytes)", sizes[i]);
        ck_assert_str_eq(err.message, expect);
    }
    sg_buf_free(&sealed);
}
END_TEST

/* A segment length beyond the header's bound is refused before anything is
 * allocated for it. */
START_TEST(test_bad_segment_length)
{
    static const uint32_t lengths[] = {0xffffffff, SMALL_SEGMENT + ABYTES + 1, ABYTES - 1, 0};
    uint8_t plain[SMALL_LEN], key[SG_SEAL_KEY_BYTES];
    sg_buf sealed = {0};
    make_key(key, 1);
    small_stream(&sealed, plain);
    for (size_t i = 0; i < ARRAY_LEN(lengths); i++) {
        sg_error err = {0};
        char expect[128];
        sg_writer *w = sg_unseal_writer_new(sg_null_writer_new(), key, AD, strlen(AD));
        store_be32(sealed.data + segment_offset(1), lengths[i]);
        ck_assert_int_eq(open_stream(&sealed, plain, SMALL_LEN, &err), SG_E_CORRUPT);
        snprintf(expect, sizeof(expect),
                 "sealed segment 2 has an invalid length (%u bytes, segment size 8)", lengths[i]);
        ck_assert_str_eq(err.message, expect);

        /* Fed a byte at a time with no memory left after segment 1: the
         * length is checked first. */
        ck_assert_int_eq(sgt_write_in_pieces(w, sealed.data, segment_offset(1), 1, &err), 0);
        sg_mem_fail_after(0);
        ck_assert_int_eq(sgt_write_in_pieces(w, sealed.data + segment_offset(1), 4, 1, &err),
                         SG_E_CORRUPT);
        sg_mem_fail_reset();
        sg_writer_free(w);
    }
    sg_buf_free(&sealed);
}
END_TEST

/* A correctly authenticated segment with a tag the format does not use. */
START_TEST(test_unknown_tag)
{
    static const size_t lens[] = {4, 4};
    static const uint8_t tags[] = {MESSAGE, crypto_secretstream_xchacha20poly1305_TAG_PUSH};
    uint8_t key[SG_SEAL_KEY_BYTES];
    sg_error err = {0};
    sg_buf sealed = {0}, out = {0};
    make_key(key, 1);
    build_stream(&sealed, key, 16, 2, lens, tags);
    ck_assert_int_eq(unseal(&out, key, AD, strlen(AD), sealed.data, sealed.len, 0, &err),
                     SG_E_CORRUPT);
    ck_assert_str_eq(err.message, "sealed segment 2 has unknown tag 1");
    ck_assert_uint_eq(out.len, 4);
    sg_buf_free(&sealed);
    sg_buf_free(&out);
}
END_TEST

START_TEST(test_failing_next)
{
    uint8_t key[SG_SEAL_KEY_BYTES], data[100];
    sg_buf sealed = {0};
    sg_error err = {0};
    make_key(key, 1);
    sgt_fill_mixed(data, sizeof(data), 5);
    ck_assert_int_eq(seal(&sealed, key, AD, strlen(AD), 7, data, sizeof(data), 0, &err), 0);
    for (uint64_t n = 0; n <= sealed.len; n++) {
        sg_writer *w = sg_seal_writer_new(sgt_fail_writer_new(NULL, n), key, AD, strlen(AD), 7);
        int rc = sgt_write_in_pieces(w, data, sizeof(data), 3, &err);
        if (rc == 0)
            rc = sg_writer_close(w, &err);
        ck_assert_int_eq(rc, n < sealed.len ? SG_E_IO : 0);
        sg_writer_free(w);
    }
    for (uint64_t n = 0; n <= sizeof(data); n++) {
        sg_writer *w = sg_unseal_writer_new(sgt_fail_writer_new(NULL, n), key, AD, strlen(AD));
        int rc = sgt_write_in_pieces(w, sealed.data, sealed.len, n % 7 + 1, &err);
        if (rc == 0)
            rc = sg_writer_close(w, &err);
        ck_assert_int_eq(rc, n < sizeof(data) ? SG_E_IO : 0);
        if (rc < 0)
            ck_assert_str_eq(err.message, "injected write failure");
        sg_writer_free(w);
    }
    sg_buf_free(&sealed);
}
END_TEST

START_TEST(test_alloc_construct)
{
    uint8_t key[SG_SEAL_KEY_BYTES];
    make_key(key, 1);
    for (long n = 0;; n++) {
        sg_buf out = {0};
        sg_writer *s, *u;
        sg_mem_fail_after(n);
        s = sg_seal_writer_new(sg_buffer_writer_new(&out), key, AD, strlen(AD), 64);
        sg_mem_fail_reset();
        sg_mem_fail_after(n);
        u = sg_unseal_writer_new(sg_buffer_writer_new(&out), key, AD, strlen(AD));
        sg_mem_fail_reset();
        sg_writer_free(s);
        sg_writer_free(u);
        if (s && u)
            break;
        ck_assert_int_lt(n, 10);
    }
}
END_TEST

/* Unsealing allocates as segments arrive; a failure there is SG_E_NOMEM. */
START_TEST(test_alloc_write)
{
    uint8_t key[SG_SEAL_KEY_BYTES], data[100];
    sg_buf sealed = {0};
    sg_error err = {0};
    int rc;
    make_key(key, 1);
    sgt_fill_mixed(data, sizeof(data), 6);
    ck_assert_int_eq(seal(&sealed, key, AD, strlen(AD), 16, data, sizeof(data), 0, &err), 0);
    for (long n = 0;; n++) {
        sg_buf out = {0};
        sg_writer *w = sg_unseal_writer_new(sg_buffer_writer_new(&out), key, AD, strlen(AD));
        sg_mem_fail_after(n);
        rc = sgt_write_in_pieces(w, sealed.data, sealed.len, 5, &err);
        if (rc == 0)
            rc = sg_writer_close(w, &err);
        sg_mem_fail_reset();
        sg_writer_free(w);
        sg_buf_free(&out);
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert_ptr_nonnull(strstr(err.message, "out of memory"));
    }
    for (long n = 0;; n++) {
        sg_buf out = {0};
        sg_writer *w = sg_seal_writer_new(sg_buffer_writer_new(&out), key, AD, strlen(AD), 16);
        sg_mem_fail_after(n);
        rc = sgt_write_in_pieces(w, data, sizeof(data), 5, &err);
        if (rc == 0)
            rc = sg_writer_close(w, &err);
        sg_mem_fail_reset();
        sg_writer_free(w);
        sg_buf_free(&out);
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, SG_E_NOMEM);
    }
    sg_buf_free(&sealed);
}
END_TEST

START_TEST(test_bad_construct_segment)
{
    uint8_t key[SG_SEAL_KEY_BYTES];
    make_key(key, 1);
    ck_assert_ptr_null(sg_seal_writer_new(sg_null_writer_new(), key, NULL, 0, 0));
    ck_assert_ptr_null(
        sg_seal_writer_new(sg_null_writer_new(), key, NULL, 0, SG_SEAL_MAX_SEGMENT + 1));
}
END_TEST

static Suite *seal_suite(void)
{
    Suite *s = suite_create("seal");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("round trip small", test_round_trip_small);
    CASE("round trip large", test_round_trip_large);
    CASE("sealed size", test_sealed_size);
    CASE("format", test_format);
    CASE("empty", test_empty);
    CASE("hand built", test_hand_built);
    CASE("tamper every byte", test_tamper_every_byte);
    CASE("truncated", test_truncated);
    CASE("wrong key", test_wrong_key);
    CASE("wrong ad", test_wrong_ad);
    CASE("reordered", test_reordered);
    CASE("trailing data", test_trailing_data);
    CASE("bad magic", test_bad_magic);
    CASE("bad segment size", test_bad_segment_size);
    CASE("bad segment length", test_bad_segment_length);
    CASE("unknown tag", test_unknown_tag);
    CASE("failing next", test_failing_next);
    CASE("allocation failure on construction", test_alloc_construct);
    CASE("allocation failure on write", test_alloc_write);
    CASE("bad segment size on construction", test_bad_construct_segment);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(seal_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
