#include "common/digest.h"

#include <stdio.h>
#include <string.h>
#include <xxhash.h>

void sg_digest_init(sg_digest *d)
{
    memset(d, 0, sizeof(*d));
}

static void add128(sg_digest *d, uint64_t lo, uint64_t hi)
{
    uint64_t sum = d->lo + lo;
    d->hi += hi + (sum < d->lo);
    d->lo = sum;
}

void sg_digest_row(sg_digest *d, const void *row, size_t len)
{
    XXH128_hash_t h = XXH3_128bits(row, len);
    add128(d, h.low64, h.high64);
    d->rows++;
}

void sg_digest_add(sg_digest *into, const sg_digest *other)
{
    add128(into, other->lo, other->hi);
    into->rows += other->rows;
}

bool sg_digest_equal(const sg_digest *a, const sg_digest *b)
{
    return a->rows == b->rows && a->lo == b->lo && a->hi == b->hi;
}

size_t sg_digest_copy_text(sg_digest *d, const void *data, size_t len)
{
    const char *start = data, *p = data, *end = p + len;
    const char *nl;
    while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        sg_digest_row(d, p, (size_t)(nl - p));
        p = nl + 1;
    }
    return (size_t)(p - start);
}

void sg_digest_hex(const sg_digest *d, char out[SG_DIGEST_HEX_LEN + 1])
{
    snprintf(out, SG_DIGEST_HEX_LEN + 1, "%016llx%016llx", (unsigned long long)d->hi,
             (unsigned long long)d->lo);
}

static int parse_u64_hex(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int nibble;
        if (c >= '0' && c <= '9')
            nibble = c - '0';
        else if (c >= 'a' && c <= 'f')
            nibble = c - 'a' + 10;
        else
            return -1;
        v = (v << 4) | (uint64_t)nibble;
    }
    *out = v;
    return 0;
}

int sg_digest_parse_hex(sg_digest *d, const char *hex, sg_error *err)
{
    if (!hex || strlen(hex) != SG_DIGEST_HEX_LEN || parse_u64_hex(hex, &d->hi) < 0 ||
        parse_u64_hex(hex + 16, &d->lo) < 0)
        return sg_error_set(err, SG_E_FORMAT, "invalid row digest \"%s\"", hex ? hex : "");
    return 0;
}
