/* Reading a stored snapshot: resolve SHARD/ID or SHARD/latest, check the
 * manifest's signature against the trusted signers before reading anything
 * else, open its body with a secret key, and fetch and open single chunks. */
#ifndef SG_RESTORE_ACCESS_H
#define SG_RESTORE_ACCESS_H

#include <stdbool.h>

#include "common/error.h"
#include "common/keys.h"
#include "common/layout.h"
#include "common/manifest.h"
#include "common/options.h"
#include "common/store.h"
#include "common/writer.h"

typedef struct sg_snapshot_access {
    sg_store *store; /* not owned */
    char shard[SG_SHARD_NAME_MAX + 1];
    char id[SG_SNAPSHOT_ID_MAX];
    sg_manifest *manifest;
    uint8_t data_key[SG_DATA_KEY_BYTES];
    bool has_key; /* body opened, data_key valid */
} sg_snapshot_access;

/* One snapshot as found in a store listing. */
typedef struct sg_snapshot_entry {
    char shard[SG_SHARD_NAME_MAX + 1];
    char id[SG_SNAPSHOT_ID_MAX];
    bool complete;       /* has a manifest */
    uint64_t pack_bytes; /* bytes of packs found */
} sg_snapshot_entry;

/* Lists snapshots (all shards, or one), newest first. */
int sg_snapshot_list(sg_snapshot_entry **out, size_t *count, sg_store *store, const char *shard,
                     sg_error *err);

/* Loads the trusted signer keys named by paths; at least one is required. */
int sg_trusted_keys_load(sg_public_key **out, const sg_strlist *paths, sg_error *err);

/* Resolves spec, fetches and checks the manifest; with key, opens its body. */
int sg_snapshot_access_open(sg_snapshot_access **out, sg_store *store, const char *spec,
                            const sg_public_key *trusted, size_t ntrusted, const sg_secret_key *key,
                            sg_error *err);
void sg_snapshot_access_free(sg_snapshot_access *access);

/* Store key of an object named in the manifest ("packs/0.pack"). */
char *sg_snapshot_object_key(const sg_snapshot_access *access, const char *path);

/* Checks one stored object against the manifest: present with its size
 * (level 0), and its bytes hash to the recorded SHA-256 (level 1 and up).
 * Errors name the object. */
int sg_snapshot_check_object(sg_snapshot_access *access, const sg_manifest_object *object,
                             int level, sg_error *err);

/* Fetches one chunk of table schema.table and pushes its plain bytes into
 * sink (owned). The sink chain is closed on success, so checking writers in
 * it report through this call. Errors name the table and chunk. */
int sg_snapshot_read_chunk(sg_snapshot_access *access, const char *schema, const char *table,
                           const sg_manifest_chunk *chunk, sg_writer *sink, sg_error *err);

#endif
