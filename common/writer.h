/* Push writers: each stage of a data path (compress, seal, hash, count, store)
 * takes bytes with write, flushes its trailer on close, and forwards to the
 * next writer in its chain. A writer owns its `next`: freeing the head of a
 * chain frees the whole chain. Measurements (hash, size) are read after close
 * and before free. */
#ifndef SG_COMMON_WRITER_H
#define SG_COMMON_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"

typedef struct sg_writer sg_writer;

/* Pushes len bytes. After an error the writer is failed: further writes and
 * close return the same error class without writing anything. */
int sg_writer_write(sg_writer *w, const void *data, size_t len, sg_error *err);

/* Writes trailers (zstd epilogue, secretstream FINAL, ...) and closes next.
 * Closing twice is an error. */
int sg_writer_close(sg_writer *w, sg_error *err);

/* Frees the writer and every writer after it. A writer freed without a
 * successful close discards what it can (a store object is not created). */
void sg_writer_free(sg_writer *w);

/* Appends everything to `out` (not owned; must outlive the writer). */
sg_writer *sg_buffer_writer_new(sg_buf *out);

/* Writes all of data to fd, through short writes and EINTR; 0 or an errno. */
int sg_write_all(int fd, const void *data, size_t len);

/* Writes to a file descriptor; closes it on free if close_fd. */
sg_writer *sg_fd_writer_new(int fd, bool close_fd);

/* Discards everything (the end of a chain that only measures). */
sg_writer *sg_null_writer_new(void);

/* Counts bytes passing through; read with sg_size_writer_bytes. next may be NULL. */
sg_writer *sg_size_writer_new(sg_writer *next);
uint64_t sg_size_writer_bytes(const sg_writer *w);

/* SHA-256 of the bytes passing through; valid after close. next may be NULL. */
sg_writer *sg_hash_writer_new(sg_writer *next);
void sg_hash_writer_digest(const sg_writer *w, uint8_t out[32]);

/* One zstd frame with a content checksum. level: zstd level; buffer_size:
 * output buffer size (0: zstd's recommended size). Takes ownership of next,
 * freeing it when construction fails. */
sg_writer *sg_zstd_writer_new(sg_writer *next, int level, size_t buffer_size);

/* Decompresses one zstd frame; close fails if the frame is incomplete, and
 * data after the end of the frame is an error. Never produces more than
 * max_output bytes in total (0: no limit), so a bomb cannot exhaust memory. */
sg_writer *sg_unzstd_writer_new(sg_writer *next, size_t buffer_size, uint64_t max_output);

#define SG_SEAL_KEY_BYTES 32
/* Largest segment a sealed stream may use; it bounds what opening a stream
 * from an untrusted source allocates. */
#define SG_SEAL_MAX_SEGMENT (64u << 20)

/* Seals the stream with libsodium's secretstream (XChaCha20-Poly1305):
 * a small header (magic, version, segment size, secretstream header) then
 * length-prefixed segments of at most segment_size plain bytes, the last
 * tagged FINAL. ad (associated data, copied) is bound into every segment, so
 * a sealed stream moved to another context fails to open. segment_size must
 * be 1..SG_SEAL_MAX_SEGMENT; NULL on allocation failure or a bad size. */
sg_writer *sg_seal_writer_new(sg_writer *next, const uint8_t key[SG_SEAL_KEY_BYTES], const void *ad,
                              size_t ad_len, size_t segment_size);

/* Opens what sg_seal_writer wrote. A wrong key, wrong ad, tampered byte,
 * reordered segment or missing FINAL segment is SG_E_CRYPTO or SG_E_CORRUPT;
 * close fails unless the FINAL segment was seen and nothing follows it. */
sg_writer *sg_unseal_writer_new(sg_writer *next, const uint8_t key[SG_SEAL_KEY_BYTES],
                                const void *ad, size_t ad_len);

/* Bytes a sealed stream of plain_len bytes takes (header and segments). */
uint64_t sg_sealed_size(uint64_t plain_len, size_t segment_size);

#endif
