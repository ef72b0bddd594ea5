/* Chunks: the unit of integrity, decryption and parallel restore. A chunk is
 * row-aligned COPY text, compressed as one zstd frame and sealed as one
 * secretstream whose associated data binds it to its snapshot, table, position
 * and plain length, so a chunk moved to another position, table or snapshot
 * fails to open. Snapshot seals chunks; restore and verify open them. */
#ifndef SG_COMMON_CHUNK_H
#define SG_COMMON_CHUNK_H

#include <stdint.h>

#include "common/buf.h"
#include "common/digest.h"
#include "common/error.h"
#include "common/writer.h"

#define SG_CHUNK_SEGMENT_SIZE (1024 * 1024)
#define SG_CHUNK_AD_MAX 1024

/* The chunk holding the schema dump is bound to this schema and table name;
 * no real table has an empty schema name. */
#define SG_CHUNK_SCHEMA_SCHEMA ""
#define SG_CHUNK_SCHEMA_TABLE "(schema)"

/* Where a chunk belongs: what its associated data binds it to. */
typedef struct sg_chunk_ref {
    const char *snapshot_id;
    const char *schema;
    const char *table;
    uint32_t seq;
    uint64_t plain_size;
} sg_chunk_ref;

/* Builds the associated data for a chunk. Returns its length. */
size_t sg_chunk_ad(uint8_t out[SG_CHUNK_AD_MAX], const sg_chunk_ref *ref);

/* Reusable state for sealing chunks on one thread (a zstd context and a
 * buffer): compress a chunk, learn its sealed size (a pack member's header
 * needs it first), then seal it straight into its destination. */
typedef struct sg_chunk_sealer sg_chunk_sealer;

/* NULL when out of memory or the level is invalid. */
sg_chunk_sealer *sg_chunk_sealer_new(int level);
void sg_chunk_sealer_free(sg_chunk_sealer *sealer);

/* Compresses len plain bytes (one zstd frame with a content checksum) and
 * reports the size the sealed chunk will have. */
int sg_chunk_sealer_compress(sg_chunk_sealer *sealer, uint64_t *sealed_size, const void *plain,
                             size_t len, sg_error *err);

/* Seals what was last compressed into `to` (owned: closed and freed), and
 * reports the SHA-256 of the sealed bytes in sha256 (when not NULL): the
 * manifest records it, so a reader checks a chunk before opening it. */
int sg_chunk_sealer_seal(sg_chunk_sealer *sealer, sg_writer *to, const sg_chunk_ref *ref,
                         const uint8_t *key, uint8_t sha256[32], sg_error *err);

/* Compresses and seals plain bytes into `out` (appended) in one call. */
int sg_chunk_seal(sg_buf *out, const void *plain, const sg_chunk_ref *ref, const uint8_t *key,
                  int level, sg_error *err);

/* A writer chain that opens a sealed chunk and pushes its plain bytes into
 * `sink` (owned by the chain). Opening proves key, position and integrity;
 * more than ref->plain_size bytes of output is an error. */
int sg_chunk_open_writer(sg_writer **out, sg_writer *sink, const sg_chunk_ref *ref,
                         const uint8_t *key, sg_error *err);

/* A writer that checks its input is exactly `expected` bytes of COPY text
 * whose rows digest to `digest`, forwarding to next (may be NULL). Close
 * fails with SG_E_MISMATCH naming `what` otherwise. */
sg_writer *sg_rows_check_writer_new(sg_writer *next, const char *what, uint64_t expected,
                                    const sg_digest *digest);

#endif
