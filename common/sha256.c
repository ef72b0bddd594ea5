#include "common/sha256.h"

#include <openssl/evp.h>
#include <stdlib.h>

void sg_sha256(uint8_t out[32], const void *data, size_t len)
{
    unsigned int out_len = 32;
    /* One-shot EVP_Digest cannot fail for SHA-256 with the default provider
     * short of memory exhaustion inside OpenSSL, where nothing is safe. */
    if (!EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL))
        abort();
}

void sg_hex_encode(char *out, const uint8_t *bytes, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}
