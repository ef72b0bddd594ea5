/* A growable byte buffer. A zeroed sg_buf is empty and valid. */
#ifndef SG_COMMON_BUF_H
#define SG_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct sg_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} sg_buf;

/* Makes room for `extra` more bytes after len. */
int sg_buf_reserve(sg_buf *buf, size_t extra, sg_error *err);
int sg_buf_append(sg_buf *buf, const void *data, size_t len, sg_error *err);
/* Appends a NUL after the data without counting it in len. */
int sg_buf_terminate(sg_buf *buf, sg_error *err);
void sg_buf_reset(sg_buf *buf);
/* Frees the memory; wipes the first len bytes first, since buffers may hold
 * plaintext or keys (so free rather than reset a buffer that held secrets). */
void sg_buf_free(sg_buf *buf);

#endif
