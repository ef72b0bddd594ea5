/* Sealed streams: libsodium secretstream (XChaCha20-Poly1305) in
 * length-prefixed segments.
 *
 * Format, version 1 (integers are big-endian):
 *
 *   header    4 bytes   magic and version "SGS1"
 *             4 bytes   segment size: the most plain bytes in one segment
 *            24 bytes   secretstream header
 *   segment   4 bytes   ciphertext length (plain length + ABYTES, 17)
 *             n bytes   ciphertext of crypto_secretstream_xchacha20poly1305_push
 *   ...
 *
 * The writer fills every segment but the last and tags it MESSAGE; the last
 * holds the rest, possibly nothing, and is tagged FINAL, so an empty stream is
 * a header and one empty FINAL segment. The associated data of every segment
 * is the first 8 header bytes followed by the caller's ad: magic and segment
 * size are authenticated with the data, the secretstream header is by
 * construction (it derives the key and nonce), and a stream moved to another
 * context fails to open. Secretstream chains the nonces, so a dropped or
 * reordered segment fails too, and a missing FINAL is truncation. */
#include "common/writer_impl.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

#define MAGIC "SGS"
#define VERSION '1'
#define PREFIX_BYTES 8 /* magic, version, segment size: the part bound as ad */
#define HEADER_BYTES (PREFIX_BYTES + crypto_secretstream_xchacha20poly1305_HEADERBYTES)
#define LENGTH_BYTES 4
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The associated data buffer: room for the header prefix, then the caller's
 * ad. */
static uint8_t *copy_ad(const void *ad, size_t ad_len)
{
    uint8_t *buf;
    if (ad_len > SIZE_MAX - PREFIX_BYTES)
        return NULL;
    buf = sg_malloc(PREFIX_BYTES + ad_len);
    if (buf && ad_len > 0)
        memcpy(buf + PREFIX_BYTES, ad, ad_len);
    return buf;
}

static void wipe_free(uint8_t *buf, size_t len)
{
    if (buf) {
        sodium_memzero(buf, len);
        free(buf);
    }
}

uint64_t sg_sealed_size(uint64_t plain_len, size_t segment_size)
{
    uint64_t segments = plain_len / segment_size + 1;
    return HEADER_BYTES + segments * (LENGTH_BYTES + ABYTES) + plain_len;
}

/* Seal writer. */

typedef struct seal_writer {
    sg_writer base;
    crypto_secretstream_xchacha20poly1305_state state;
    uint8_t header[HEADER_BYTES];
    bool header_sent;
    uint8_t *ad;
    size_t ad_len; /* including the header prefix */
    size_t segment_size;
    uint8_t *plain; /* a partial segment, segment_size bytes */
    size_t plain_len;
    uint8_t *cipher; /* length prefix and ciphertext of one segment */
} seal_writer;

static int seal_segment(seal_writer *w, const uint8_t *data, size_t len, uint8_t tag, sg_error *err)
{
    unsigned long long clen;
    int rc;
    if (!w->header_sent) {
        if ((rc = sg_writer_write(w->base.next, w->header, HEADER_BYTES, err)) < 0)
            return rc;
        w->header_sent = true;
    }
    if (crypto_secretstream_xchacha20poly1305_push(&w->state, w->cipher + LENGTH_BYTES, &clen, data,
                                                   len, w->ad, w->ad_len, tag) != 0)
        return sg_error_set(err, SG_E_INTERNAL, "cannot seal a segment of %zu bytes", len);
    store_be32(w->cipher, (uint32_t)clen);
    return sg_writer_write(w->base.next, w->cipher, LENGTH_BYTES + (size_t)clen, err);
}

static int seal_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    seal_writer *w = (seal_writer *)base;
    const uint8_t *p = data;
    size_t seg = w->segment_size;
    int rc;

    if (w->plain_len > 0) {
        size_t take = seg - w->plain_len < len ? seg - w->plain_len : len;
        memcpy(w->plain + w->plain_len, p, take);
        w->plain_len += take;
        p += take;
        len -= take;
        if (w->plain_len < seg)
            return 0;
        if ((rc = seal_segment(w, w->plain, seg, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
                               err)) < 0)
            return rc;
        w->plain_len = 0;
    }
    /* Whole segments are sealed straight from the caller's memory. */
    for (; len >= seg; p += seg, len -= seg)
        if ((rc = seal_segment(w, p, seg, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, err)) <
            0)
            return rc;
    memcpy(w->plain, p, len);
    w->plain_len = len;
    return 0;
}

static int seal_close(sg_writer *base, sg_error *err)
{
    seal_writer *w = (seal_writer *)base;
    int rc = seal_segment(w, w->plain, w->plain_len,
                          crypto_secretstream_xchacha20poly1305_TAG_FINAL, err);
    sodium_memzero(w->plain, w->plain_len);
    w->plain_len = 0;
    return rc;
}

static void seal_destroy(sg_writer *base)
{
    seal_writer *w = (seal_writer *)base;
    sodium_memzero(&w->state, sizeof(w->state));
    wipe_free(w->plain, w->segment_size);
    free(w->cipher);
    free(w->ad);
}

static const sg_writer_vtable seal_vt = {"seal", seal_write, seal_close, seal_destroy};

sg_writer *sg_seal_writer_new(sg_writer *next, const uint8_t key[SG_SEAL_KEY_BYTES], const void *ad,
                              size_t ad_len, size_t segment_size)
{
    seal_writer *w;
    if (segment_size == 0 || segment_size > SG_SEAL_MAX_SEGMENT || sodium_init() < 0) {
        sg_writer_free(next);
        return NULL;
    }
    w = sg_writer_alloc(sizeof(*w), &seal_vt, next);
    if (!w)
        return NULL;
    w->segment_size = segment_size;
    w->ad_len = PREFIX_BYTES + ad_len;
    w->ad = copy_ad(ad, ad_len);
    w->plain = sg_malloc(segment_size);
    w->cipher = sg_malloc(LENGTH_BYTES + segment_size + ABYTES);
    if (!w->ad || !w->plain || !w->cipher) {
        sg_writer_free((sg_writer *)w);
        return NULL;
    }
    memcpy(w->header, MAGIC, 3);
    w->header[3] = VERSION;
    store_be32(w->header + 4, (uint32_t)segment_size);
    memcpy(w->ad, w->header, PREFIX_BYTES);
    crypto_secretstream_xchacha20poly1305_init_push(&w->state, w->header + PREFIX_BYTES, key);
    return (sg_writer *)w;
}

/* Unseal writer: a small state machine, since input may be split anywhere. */

typedef enum { AT_HEADER, AT_LENGTH, AT_BODY, AT_END } unseal_step;

typedef struct unseal_writer {
    sg_writer base;
    crypto_secretstream_xchacha20poly1305_state state;
    uint8_t key[SG_SEAL_KEY_BYTES]; /* wiped once the header is read */
    uint8_t *ad;
    size_t ad_len;
    unseal_step step;
    uint8_t header[HEADER_BYTES];
    uint8_t length[LENGTH_BYTES];
    size_t have;     /* bytes of the current header, length or body collected */
    size_t body_len; /* ciphertext length of the current segment */
    uint32_t segment_size;
    uint64_t segment; /* number of the current segment, from 1 */
    uint8_t *cipher;  /* a segment split across writes */
    size_t cipher_cap;
    uint8_t *plain;
    size_t plain_cap;
} unseal_writer;

/* Replaces a buffer with a larger one; the old one may hold plaintext, so it
 * is wiped rather than reallocated. */
static int grow(uint8_t **buf, size_t *cap, size_t need, sg_error *err)
{
    if (need <= *cap)
        return 0;
    wipe_free(*buf, *cap);
    *cap = 0;
    *buf = sg_malloc(need);
    if (!*buf)
        return sg_error_set(err, SG_E_NOMEM, "out of memory (allocating %zu bytes to unseal)",
                            need);
    *cap = need;
    return 0;
}

static int check_magic(const uint8_t *header, size_t have, sg_error *err)
{
    if (memcmp(header, MAGIC, have < 3 ? have : 3) != 0) {
        sg_error_set(err, SG_E_FORMAT, "not a sealed stream");
        sg_error_detail(err, "a sealed stream starts with \"%s%c\"", MAGIC, VERSION);
        return SG_E_FORMAT;
    }
    if (have > 3 && header[3] != VERSION) {
        sg_error_set(err, SG_E_FORMAT, "unsupported sealed stream version 0x%02x", header[3]);
        sg_error_detail(err, "this build reads version %c", VERSION);
        return SG_E_FORMAT;
    }
    return 0;
}

static int read_header(unseal_writer *w, sg_error *err)
{
    w->segment_size = load_be32(w->header + 4);
    if (w->segment_size == 0 || w->segment_size > SG_SEAL_MAX_SEGMENT)
        return sg_error_set(err, SG_E_CORRUPT,
                            "sealed stream header has an invalid segment size (%" PRIu32 " bytes)",
                            w->segment_size);
    if (crypto_secretstream_xchacha20poly1305_init_pull(&w->state, w->header + PREFIX_BYTES,
                                                        w->key) != 0)
        return sg_error_set(err, SG_E_CRYPTO, "sealed stream header is invalid");
    sodium_memzero(w->key, sizeof(w->key));
    memcpy(w->ad, w->header, PREFIX_BYTES);
    w->step = AT_LENGTH;
    w->have = 0;
    w->segment = 1;
    return 0;
}

static int read_length(unseal_writer *w, sg_error *err)
{
    uint32_t len = load_be32(w->length);
    /* The bound comes from the header and is checked before anything is
     * allocated for the segment. */
    if (len < ABYTES || len - ABYTES > w->segment_size)
        return sg_error_set(err, SG_E_CORRUPT,
                            "sealed segment %" PRIu64 " has an invalid length (%" PRIu32
                            " bytes, segment size %" PRIu32 ")",
                            w->segment, len, w->segment_size);
    w->body_len = len;
    w->step = AT_BODY;
    w->have = 0;
    return 0;
}

static int open_segment(unseal_writer *w, const uint8_t *cipher, sg_error *err)
{
    unsigned long long plain_len;
    uint8_t tag;
    int rc;
    /* At least one byte, so that an empty segment has somewhere to go. */
    if ((rc = grow(&w->plain, &w->plain_cap, w->body_len - ABYTES + 1, err)) < 0)
        return rc;
    if (crypto_secretstream_xchacha20poly1305_pull(&w->state, w->plain, &plain_len, &tag, cipher,
                                                   w->body_len, w->ad, w->ad_len) != 0) {
        sg_error_set(err, SG_E_CRYPTO,
                     "decryption failed: wrong key, or the data was modified or moved");
        sg_error_detail(err, "sealed segment %" PRIu64 " failed authentication", w->segment);
        return SG_E_CRYPTO;
    }
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL)
        w->step = AT_END;
    else if (tag == crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        w->step = AT_LENGTH;
    else
        return sg_error_set(err, SG_E_CORRUPT, "sealed segment %" PRIu64 " has unknown tag %u",
                            w->segment, tag);
    w->have = 0;
    w->segment++;
    return plain_len > 0 ? sg_writer_write(w->base.next, w->plain, (size_t)plain_len, err) : 0;
}

/* Copies up to want - have bytes into dst + have; returns how many. */
static size_t collect(uint8_t *dst, size_t want, size_t *have, const uint8_t *src, size_t len)
{
    size_t take = want - *have < len ? want - *have : len;
    memcpy(dst + *have, src, take);
    *have += take;
    return take;
}

static int unseal_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    unseal_writer *w = (unseal_writer *)base;
    const uint8_t *p = data;
    int rc = 0;

    while (len > 0 && rc == 0) {
        size_t used;
        switch (w->step) {
        case AT_HEADER:
            used = collect(w->header, HEADER_BYTES, &w->have, p, len);
            rc = check_magic(w->header, w->have, err);
            if (rc == 0 && w->have == HEADER_BYTES)
                rc = read_header(w, err);
            break;
        case AT_LENGTH:
            used = collect(w->length, LENGTH_BYTES, &w->have, p, len);
            if (w->have == LENGTH_BYTES)
                rc = read_length(w, err);
            break;
        case AT_BODY:
            if (w->have == 0 && len >= w->body_len) {
                /* The whole segment is here: open it without copying. */
                used = w->body_len;
                rc = open_segment(w, p, err);
                break;
            }
            if (w->have == 0 && (rc = grow(&w->cipher, &w->cipher_cap, w->body_len, err)) < 0)
                return rc;
            used = collect(w->cipher, w->body_len, &w->have, p, len);
            if (w->have == w->body_len)
                rc = open_segment(w, w->cipher, err);
            break;
        case AT_END:
        default:
            return sg_error_set(err, SG_E_CORRUPT,
                                "unexpected data after the end of the sealed stream");
        }
        p += used;
        len -= used;
    }
    return rc;
}

static int unseal_close(sg_writer *base, sg_error *err)
{
    unseal_writer *w = (unseal_writer *)base;
    if (w->step == AT_END)
        return 0;
    sg_error_set(err, SG_E_CORRUPT, "sealed stream is truncated");
    if (w->step == AT_HEADER)
        sg_error_detail(err, "it ends inside the header");
    else
        sg_error_detail(err, "it ends after %" PRIu64 " complete segments, before the final one",
                        w->segment - 1);
    return SG_E_CORRUPT;
}

static void unseal_destroy(sg_writer *base)
{
    unseal_writer *w = (unseal_writer *)base;
    sodium_memzero(&w->state, sizeof(w->state));
    sodium_memzero(w->key, sizeof(w->key));
    wipe_free(w->plain, w->plain_cap);
    free(w->cipher);
    free(w->ad);
}

static const sg_writer_vtable unseal_vt = {"unseal", unseal_write, unseal_close, unseal_destroy};

sg_writer *sg_unseal_writer_new(sg_writer *next, const uint8_t key[SG_SEAL_KEY_BYTES],
                                const void *ad, size_t ad_len)
{
    unseal_writer *w;
    if (sodium_init() < 0) {
        sg_writer_free(next);
        return NULL;
    }
    w = sg_writer_alloc(sizeof(*w), &unseal_vt, next);
    if (!w)
        return NULL;
    w->ad_len = PREFIX_BYTES + ad_len;
    w->ad = copy_ad(ad, ad_len);
    if (!w->ad) {
        sg_writer_free((sg_writer *)w);
        return NULL;
    }
    memcpy(w->key, key, SG_SEAL_KEY_BYTES);
    return (sg_writer *)w;
}
