/* Row digests: a table's digest is its row count plus the sum, mod 2^128, of
 * XXH3-128 of each row's canonical COPY text (without the newline). The sum is
 * order-independent and combinable across chunks and workers; duplicate rows
 * count. It detects lost, extra or changed rows; tampering is the AEAD's and
 * the signature's job. */
#ifndef SG_COMMON_DIGEST_H
#define SG_COMMON_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define SG_DIGEST_HEX_LEN 32

typedef struct sg_digest {
    uint64_t rows;
    uint64_t lo, hi; /* the 128-bit sum */
} sg_digest;

void sg_digest_init(sg_digest *d);
void sg_digest_row(sg_digest *d, const void *row, size_t len);
void sg_digest_add(sg_digest *into, const sg_digest *other);
bool sg_digest_equal(const sg_digest *a, const sg_digest *b);

/* Digests complete COPY text rows in data (each ends with '\n'; a newline in
 * a value is escaped by COPY, so every '\n' ends a row). Returns the number of
 * bytes consumed: everything up to and including the last '\n'. */
size_t sg_digest_copy_text(sg_digest *d, const void *data, size_t len);

/* The sum as 32 hex characters, high half first. */
void sg_digest_hex(const sg_digest *d, char out[SG_DIGEST_HEX_LEN + 1]);
/* Parses 32 hex characters into the sum (rows untouched). */
int sg_digest_parse_hex(sg_digest *d, const char *hex, sg_error *err);

#endif
