#include "common/buf.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

int sg_buf_reserve(sg_buf *buf, size_t extra, sg_error *err)
{
    size_t need, cap;
    uint8_t *grown;
    if (extra > SIZE_MAX - buf->len - 1)
        return sg_error_set(err, SG_E_NOMEM, "buffer size overflow");
    need = buf->len + extra;
    if (need <= buf->cap)
        return 0;
    cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    grown = sg_realloc(buf->data, cap);
    if (!grown)
        return sg_error_set(err, SG_E_NOMEM, "out of memory (growing a buffer to %zu bytes)", cap);
    buf->data = grown;
    buf->cap = cap;
    return 0;
}

int sg_buf_append(sg_buf *buf, const void *data, size_t len, sg_error *err)
{
    int rc;
    if (len == 0)
        return 0;
    if ((rc = sg_buf_reserve(buf, len, err)) < 0)
        return rc;
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    return 0;
}

int sg_buf_terminate(sg_buf *buf, sg_error *err)
{
    int rc = sg_buf_reserve(buf, 1, err);
    if (rc < 0)
        return rc;
    buf->data[buf->len] = '\0';
    return 0;
}

void sg_buf_reset(sg_buf *buf)
{
    buf->len = 0;
}

void sg_buf_free(sg_buf *buf)
{
    if (!buf)
        return;
    if (buf->data) {
        sodium_memzero(buf->data, buf->len);
        free(buf->data);
    }
    buf->data = NULL;
    buf->len = buf->cap = 0;
}
