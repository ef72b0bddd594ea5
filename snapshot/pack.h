/* Pack writer: a pax tar (libarchive) of sealed chunk members, streamed into
 * a store object through SHA-256 and size measurement. The offset of each
 * member's data is recorded so restore can fetch one chunk by range, and
 * `tar tvf` still lists a pack. */
#ifndef SG_SNAPSHOT_PACK_H
#define SG_SNAPSHOT_PACK_H

#include <stdint.h>

#include "common/error.h"
#include "common/store.h"
#include "common/writer.h"
#include "common/writer.h"

typedef struct sg_pack_writer sg_pack_writer;

/* Starts a pack at store key `key`; the object appears only on close. */
int sg_pack_writer_new(sg_pack_writer **out, sg_store *store, const char *key, sg_error *err);

/* Starts a member (an ASCII name) of `size` bytes and returns a writer for
 * its data (close it, then free it; close fails unless exactly size bytes
 * were written). *offset is where its data starts in the pack. Members are
 * written one at a time. */
int sg_pack_writer_begin(sg_writer **out, sg_pack_writer *pack, const char *member, uint64_t size,
                         uint64_t *offset, sg_error *err);

/* Appends a member from memory (an ASCII name); *offset is where its data starts in the
 * pack. */
int sg_pack_writer_add(sg_pack_writer *pack, const char *member, const void *data, size_t len,
                       uint64_t *offset, sg_error *err);

/* Bytes written so far (to decide when to start the next pack). */
uint64_t sg_pack_writer_size(const sg_pack_writer *pack);

/* Finishes the tar, commits the object, and reports its size and SHA-256. */
int sg_pack_writer_close(sg_pack_writer *pack, uint64_t *size, uint8_t sha256[32], sg_error *err);

/* Frees; an unclosed pack leaves no object behind. */
void sg_pack_writer_free(sg_pack_writer *pack);

#endif
