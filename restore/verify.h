/* Verify tiers for a stored snapshot, after the manifest's signature:
 *   0: every object present with its recorded size;
 *   1: and its bytes hash to the recorded SHA-256 (no secret key needed);
 *   2: and every chunk opens (key, position, integrity) and its rows' count
 *      and digest match the manifest (needs the secret key).
 * The first bad object or table is named in the error. */
#ifndef SG_RESTORE_VERIFY_H
#define SG_RESTORE_VERIFY_H

#include <stdint.h>

#include "common/error.h"
#include "common/store.h"
#include "common/options.h"

typedef struct sg_verify_options {
    sg_store_config store; /* --store URL and the backend's settings */
    const char *key_path;  /* needed for level 2 */
    sg_strlist trust;
    const char *snapshot;
    int level;
    int jobs;
} sg_verify_options;

void sg_verify_options_init(sg_verify_options *opts);

typedef struct sg_verify_result {
    char shard[128];
    char id[64];
    int level;
    uint64_t objects, stored_bytes, chunks, rows, plain_bytes;
    double seconds;
} sg_verify_result;

int sg_verify_run(sg_verify_result *out, const sg_verify_options *opts, sg_error *err);

#endif
