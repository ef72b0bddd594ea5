/* Moving object bytes to and from S3 in parts, several in flight at once.
 *
 * Upload: a writer that fills a part in memory and hands each full part to
 * a worker thread, which hashes it once (for the signature and the
 * x-amz-checksum-sha256 header the server checks) and sends it with
 * retries. A part stays in memory until acknowledged, so a failed part is
 * re-sent alone; memory is bounded by part_size * (parallel + 1). An object
 * smaller than one part goes up in one PUT. The object appears only when
 * the writer closes (CompleteMultipartUpload); a writer freed unclosed, or a
 * failed one, aborts the upload so that no parts are left behind.
 *
 * Download: ranged GETs of part_size, parallel workers, delivered in order
 * to a writer. */
#ifndef SG_COMMON_S3_TRANSFER_H
#define SG_COMMON_S3_TRANSFER_H

#include <stdint.h>

#include "common/error.h"
#include "common/s3_client.h"
#include "common/writer.h"

/* S3's limits: parts of 5 MiB to 5 GiB (but the last), at most 10000 parts.
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html */
#define SG_S3_MIN_PART_SIZE (5ULL << 20)
#define SG_S3_MAX_PART_SIZE (5ULL << 30)
#define SG_S3_MAX_PARTS 10000

/* A writer that creates object `key`. part_size is every part's size but the
 * last's (Cloudflare R2 requires equal parts); parallel is the number of
 * parts in flight. The client must outlive the writer. */
int sg_s3_upload_writer_new(sg_writer **out, sg_s3_client *client, const char *key,
                            uint64_t part_size, int parallel, sg_error *err);

/* Pushes len bytes of `key` from offset into `to` (len UINT64_MAX: to the
 * end). A missing object is SG_E_NOT_FOUND; one shorter than offset + len is
 * SG_E_CORRUPT, and nothing past what exists is pushed. */
int sg_s3_download(sg_s3_client *client, const char *key, uint64_t offset, uint64_t len,
                   uint64_t part_size, int parallel, sg_writer *to, sg_error *err);

#endif
