/* Keys: a shardgate identity is an X25519 key pair (to receive wrapped data
 * keys) and an Ed25519 key pair (to sign manifests). NAME.key holds both
 * secret keys (mode 0600), NAME.pub both public keys and a short key id. */
#ifndef SG_COMMON_KEYS_H
#define SG_COMMON_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define SG_KEY_ID_LEN 16 /* hex characters */
#define SG_DATA_KEY_BYTES 32
#define SG_WRAPPED_KEY_BYTES 80 /* crypto_box_SEALBYTES + SG_DATA_KEY_BYTES */
#define SG_SIGNATURE_BYTES 64

typedef struct sg_public_key {
    uint8_t box[32];  /* X25519 */
    uint8_t sign[32]; /* Ed25519 */
    char id[SG_KEY_ID_LEN + 1];
} sg_public_key;

typedef struct sg_secret_key {
    sg_public_key pub;
    uint8_t box[32];
    uint8_t sign[64];
} sg_secret_key;

/* Writes NAME.key (0600, created exclusively: an existing file is not
 * overwritten) and NAME.pub. */
int sg_keygen(const char *name, sg_public_key *pub_out, sg_error *err);

/* Loads a secret key file. A file readable or writable by group or others is
 * refused (SG_E_KEY), as ssh does. */
int sg_secret_key_load(sg_secret_key *out, const char *path, sg_error *err);
int sg_public_key_load(sg_public_key *out, const char *path, sg_error *err);
void sg_secret_key_wipe(sg_secret_key *key);

/* Key id: first 8 bytes of BLAKE2b over both public keys, in hex. */
void sg_key_id(const uint8_t box[32], const uint8_t sign[32], char out[SG_KEY_ID_LEN + 1]);

/* Wraps a data key to a recipient (sealed box) and back. */
void sg_key_wrap(uint8_t out[SG_WRAPPED_KEY_BYTES], const uint8_t data_key[SG_DATA_KEY_BYTES],
                 const sg_public_key *to);
int sg_key_unwrap(uint8_t data_key[SG_DATA_KEY_BYTES], const uint8_t wrapped[SG_WRAPPED_KEY_BYTES],
                  const sg_secret_key *key, sg_error *err);

/* Detached Ed25519 signatures. */
void sg_sign(uint8_t sig[SG_SIGNATURE_BYTES], const void *msg, size_t len,
             const sg_secret_key *key);
int sg_verify_signature(const uint8_t sig[SG_SIGNATURE_BYTES], const void *msg, size_t len,
                        const sg_public_key *key);

#endif
