/* Test writers: faults a real sink will not produce on demand, and a helper
 * that splits input to hit every buffer boundary. */
#ifndef SG_TESTS_HARNESS_WRITERS_H
#define SG_TESTS_HARNESS_WRITERS_H

#include <stddef.h>
#include <stdint.h>

#include "common/writer.h"

/* Passes the first fail_after_bytes bytes on to next (which may be NULL),
 * then fails every write with SG_E_IO "injected write failure". Close
 * succeeds if no write failed. Takes ownership of next; NULL on allocation
 * failure (next freed). */
sg_writer *sgt_fail_writer_new(sg_writer *next, uint64_t fail_after_bytes);

/* Writes data in pieces of piece bytes (the last one shorter; 0: one piece);
 * stops at the first error and returns it. */
int sgt_write_in_pieces(sg_writer *w, const void *data, size_t len, size_t piece, sg_error *err);

/* Fills out with reproducible test data for seed: runs of random bytes mixed
 * with runs of repetitive text, so it is partly compressible. */
void sgt_fill_mixed(uint8_t *out, size_t len, uint32_t seed);

#endif
