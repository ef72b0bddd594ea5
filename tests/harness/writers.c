#include "tests/harness/writers.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/writer_impl.h"

typedef struct fail_writer {
    sg_writer base;
    uint64_t budget; /* bytes still let through */
} fail_writer;

static int fail_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    fail_writer *w = (fail_writer *)base;
    size_t pass = len < w->budget ? len : (size_t)w->budget;
    int rc;
    if (pass > 0 && base->next && (rc = sg_writer_write(base->next, data, pass, err)) < 0)
        return rc;
    w->budget -= pass;
    if (pass < len)
        return sg_error_set(err, SG_E_IO, "injected write failure");
    return 0;
}

static const sg_writer_vtable fail_vt = {"failing", fail_write, NULL, NULL};

sg_writer *sgt_fail_writer_new(sg_writer *next, uint64_t fail_after_bytes)
{
    fail_writer *w = sg_writer_alloc(sizeof(*w), &fail_vt, next);
    if (w)
        w->budget = fail_after_bytes;
    return (sg_writer *)w;
}

int sgt_write_in_pieces(sg_writer *w, const void *data, size_t len, size_t piece, sg_error *err)
{
    const unsigned char *p = data;
    if (piece == 0)
        piece = len;
    while (len > 0) {
        size_t n = len < piece ? len : piece;
        int rc = sg_writer_write(w, p, n, err);
        if (rc < 0)
            return rc;
        p += n;
        len -= n;
    }
    return 0;
}

void sgt_fill_mixed(uint8_t *out, size_t len, uint32_t seed)
{
    uint8_t key[randombytes_SEEDBYTES] = {0};
    size_t pos = 0;
    memcpy(key, &seed, sizeof(seed));
    randombytes_buf_deterministic(out, len, key);
    /* Every other run of 4 KiB is overwritten with text rows. */
    for (size_t run = 0; pos < len; run++, pos += 4096) {
        size_t end = pos + 4096 < len ? pos + 4096 : len;
        if (run % 2 == 0)
            continue;
        for (size_t i = pos; i < end;) {
            char row[64];
            int n = snprintf(row, sizeof(row), "%zu\tcustomer %zu\t2024-01-%02zu\n", i, i % 97,
                             1 + i % 28);
            size_t take = (size_t)n < end - i ? (size_t)n : end - i;
            memcpy(out + i, row, take);
            i += take;
        }
    }
}
