/* SHA-256 of a buffer in one call, through OpenSSL (which uses the CPU's SHA
 * extensions where there are some), and lowercase hex for printing it. The
 * streaming form is the hash writer (writer.h). */
#ifndef SG_COMMON_SHA256_H
#define SG_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* 64 hex digits and a NUL. */
#define SG_SHA256_HEX_LEN 65

void sg_sha256(uint8_t out[32], const void *data, size_t len);

/* Lowercase hex of len bytes into out (2 * len + 1 bytes with the NUL). */
void sg_hex_encode(char *out, const uint8_t *bytes, size_t len);

#endif
