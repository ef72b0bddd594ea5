/* The snapshot manifest: the commit point of a snapshot (written last) and the
 * one document restore trusts, after checking its signature.
 *
 *     shardgate-manifest 1\n
 *     <header JSON, compact, one line>\n
 *     signature ed25519 <signer key id> <base64 signature>\n
 *
 * The Ed25519 signature covers every byte before the signature line. The
 * header is readable by anyone who trusts the signer: ids, times, server
 * version, the data key wrapped to each recipient, every stored object with
 * its size and SHA-256, summary counts, and the body. The body is JSON,
 * compressed with zstd and sealed with the snapshot's data key: system
 * identifier, LSN, pinned settings, schema fingerprint, tables with their
 * columns, digests and chunks, sequences, materialized views to refresh.
 *
 * Parsing is strict about the fields it knows (presence, type, range) and
 * ignores fields it does not, so a field that older versions may safely skip
 * can be added without a new format number; anything else bumps the number
 * on the first line. */
#ifndef SG_COMMON_MANIFEST_H
#define SG_COMMON_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/digest.h"
#include "common/error.h"
#include "common/keys.h"

#define SG_MANIFEST_FORMAT 1
/* Size of a buffer that holds any valid snapshot id and its NUL. */
#define SG_SNAPSHOT_ID_MAX 64

typedef struct sg_manifest_object {
    char *path; /* relative to the snapshot's directory, e.g. "packs/0.pack" */
    uint64_t size;
    uint8_t sha256[32];
} sg_manifest_object;

typedef struct sg_manifest_recipient {
    char key_id[SG_KEY_ID_LEN + 1];
    uint8_t wrapped[SG_WRAPPED_KEY_BYTES];
} sg_manifest_recipient;

/* Where a sealed chunk lives: member `seq` of pack `pack`, at `offset` in it. */
typedef struct sg_manifest_chunk {
    uint32_t seq;
    uint32_t pack;
    uint64_t offset;
    uint64_t stored_size;
    uint64_t plain_size;
    uint8_t sha256[32]; /* of the sealed bytes as stored: checked before they are opened */
    sg_digest digest;   /* digest.rows is the chunk's row count */
} sg_manifest_chunk;

typedef struct sg_manifest_column {
    char *name;
    char *type;
} sg_manifest_column;

typedef struct sg_manifest_table {
    uint32_t oid;
    char *schema;
    char *name;
    sg_manifest_column *columns;
    size_t ncolumns;
    sg_digest digest; /* the sum of its chunks' digests; parsing checks it */
    sg_manifest_chunk *chunks;
    size_t nchunks;
} sg_manifest_table;

typedef struct sg_manifest_sequence {
    char *schema;
    char *name;
    int64_t last_value;
    bool is_called;
} sg_manifest_sequence;

typedef struct sg_manifest_setting {
    char *name;
    char *value;
} sg_manifest_setting;

typedef struct sg_manifest {
    /* header: signed, readable without a secret key */
    char *id;
    char *shard;
    char *tool_version;
    char *started_at; /* ISO 8601 UTC, e.g. "2024-05-01T02:00:00Z" */
    char *finished_at;
    char *server_version;
    int server_version_num;
    /* the pipeline run that took it, and the version it migrates the shard
     * to: NULL and -1 for a snapshot taken alone (optional in the format) */
    char *run_id;
    int64_t target_version;
    char signer[SG_KEY_ID_LEN + 1];
    sg_manifest_recipient *recipients;
    size_t nrecipients;
    sg_manifest_object *objects;
    size_t nobjects;
    /* table_count and row_count are derived from the body when serializing */
    uint64_t table_count, row_count, plain_bytes, stored_bytes;

    /* body: sealed with the data key */
    bool body_loaded;
    char *system_identifier;
    char *snapshot_lsn;
    char *schema_fingerprint;
    char *registry_version; /* NULL: no migration registry on the shard */
    sg_manifest_setting *settings;
    size_t nsettings;
    sg_manifest_chunk schema; /* the sealed schema dump */
    sg_manifest_table *tables;
    size_t ntables;
    sg_manifest_sequence *sequences;
    size_t nsequences;
    char **refresh_matviews; /* quoted "schema"."name" */
    size_t nrefresh_matviews;

    /* private: the sealed body bytes kept between parse and open */
    sg_buf sealed_body;
} sg_manifest;

/* A zeroed manifest (NULL when out of memory); free with sg_manifest_free. */
sg_manifest *sg_manifest_new(void);
void sg_manifest_free(sg_manifest *m);

/* Builders. Each copies its strings and grows the array it appends to;
 * they fail only with SG_E_NOMEM, leaving the manifest as it was. */

/* Wraps data_key to `to` and appends it as a recipient. */
int sg_manifest_add_recipient(sg_manifest *m, const sg_public_key *to,
                              const uint8_t data_key[SG_DATA_KEY_BYTES], sg_error *err);
int sg_manifest_add_object(sg_manifest *m, const char *path, uint64_t size,
                           const uint8_t sha256[32], sg_error *err);
int sg_manifest_add_setting(sg_manifest *m, const char *name, const char *value, sg_error *err);
int sg_manifest_add_sequence(sg_manifest *m, const char *schema, const char *name,
                             int64_t last_value, bool is_called, sg_error *err);
int sg_manifest_add_matview(sg_manifest *m, const char *qualified_name, sg_error *err);
/* Appends a table without columns or chunks and points *out at it; the
 * pointer is valid until the next sg_manifest_add_table. */
int sg_manifest_add_table(sg_manifest_table **out, sg_manifest *m, uint32_t oid, const char *schema,
                          const char *name, sg_error *err);
int sg_manifest_table_add_column(sg_manifest_table *t, const char *name, const char *type,
                                 sg_error *err);
/* Appends a chunk; the caller keeps t->digest equal to the sum of the chunks'. */
int sg_manifest_table_add_chunk(sg_manifest_table *t, const sg_manifest_chunk *chunk,
                                sg_error *err);

/* Appends the whole manifest file to out: seals the body with data_key, fills
 * the header's signer from the key and signs. The recipients must already
 * hold data_key wrapped (sg_manifest_add_recipient). What sg_manifest_parse
 * would reject is refused here instead: a missing field, an invalid id, time
 * or object path, a table digest that is not the sum of its chunks
 * (SG_E_INTERNAL), a string that is not UTF-8 (SG_E_FORMAT). On failure out
 * is left as it was. */
int sg_manifest_serialize(sg_buf *out, const sg_manifest *m,
                          const uint8_t data_key[SG_DATA_KEY_BYTES], const sg_secret_key *signer,
                          sg_error *err);

/* Checks the magic line, then the signature against the trusted signer keys,
 * and only then reads the header. The body stays sealed until
 * sg_manifest_open_body; no secret key is needed here. Errors: SG_E_FORMAT
 * (not a manifest, a newer format, a malformed header naming the field),
 * SG_E_SIGNATURE (no signature line, untrusted signer, bad signature). */
int sg_manifest_parse(sg_manifest **out, const void *data, size_t len, const sg_public_key *trusted,
                      size_t ntrusted, sg_error *err);

/* Reads the header without checking the signature, for listing snapshots
 * where no signer keys are configured: the same format checks as
 * sg_manifest_parse, but nothing in the result is vouched for, and its body
 * cannot be opened. Never use it to decide what to restore. */
int sg_manifest_parse_unverified(sg_manifest **out, const void *data, size_t len, sg_error *err);

/* Unwraps the data key with `key`, then unseals, decompresses and parses the
 * body into m and sets body_loaded. The data key is returned for reading the
 * snapshot's chunks; the caller wipes it. Errors: SG_E_KEY (the snapshot is
 * not encrypted to this key), SG_E_CRYPTO or SG_E_CORRUPT (the body does not
 * open), SG_E_FORMAT (a malformed body, naming the field). */
int sg_manifest_open_body(sg_manifest *m, const sg_secret_key *key,
                          uint8_t data_key_out[SG_DATA_KEY_BYTES], sg_error *err);

/* The object stored at `path`, or NULL. */
const sg_manifest_object *sg_manifest_find_object(const sg_manifest *m, const char *path);

/* A new snapshot id, "YYYYMMDDTHHMMSSZ-" and 8 random hex digits: ids sort by
 * the time they were taken (UTC). */
int sg_snapshot_id_new(char out[SG_SNAPSHOT_ID_MAX], sg_error *err);

/* Whether id can be a snapshot id: 1 to SG_SNAPSHOT_ID_MAX - 1 characters
 * from [0-9A-Za-z-], so it is safe as a store path component. */
bool sg_snapshot_id_valid(const char *id);

#endif
