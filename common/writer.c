/* The writer chain's base logic and the simple writers: buffer, fd, null,
 * size and hash. */
#include "common/writer_impl.h"

#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mem.h"

void *sg_writer_alloc(size_t size, const sg_writer_vtable *vt, sg_writer *next)
{
    sg_writer *w;
    assert(size >= sizeof(sg_writer));
    w = sg_calloc(1, size);
    if (!w) {
        sg_writer_free(next);
        return NULL;
    }
    w->vt = vt;
    w->next = next;
    return w;
}

int sg_writer_write(sg_writer *w, const void *data, size_t len, sg_error *err)
{
    int rc;
    if (w->failed)
        return sg_error_set(err, w->failed, "%s writer failed earlier", w->vt->name);
    if (w->closed)
        return sg_error_set(err, SG_E_INTERNAL, "write to %s writer after close", w->vt->name);
    if (len == 0)
        return 0;
    rc = w->vt->write(w, data, len, err);
    if (rc < 0)
        w->failed = rc;
    return rc;
}

int sg_writer_close(sg_writer *w, sg_error *err)
{
    int rc = 0;
    if (w->failed)
        return sg_error_set(err, w->failed, "%s writer failed earlier", w->vt->name);
    if (w->closed)
        return sg_error_set(err, SG_E_INTERNAL, "%s writer closed twice", w->vt->name);
    w->closed = true;
    if (w->vt->close && (rc = w->vt->close(w, err)) < 0)
        goto done;
    if (w->next)
        rc = sg_writer_close(w->next, err);
done:
    if (rc < 0)
        w->failed = rc;
    return rc;
}

void sg_writer_free(sg_writer *w)
{
    /* Iterative, so that a long chain cannot exhaust the stack. */
    while (w) {
        sg_writer *next = w->next;
        if (w->vt->destroy)
            w->vt->destroy(w);
        free(w);
        w = next;
    }
}

/* Buffer writer. */

typedef struct buffer_writer {
    sg_writer base;
    sg_buf *out;
} buffer_writer;

static int buffer_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    buffer_writer *w = (buffer_writer *)base;
    return sg_buf_append(w->out, data, len, err);
}

static const sg_writer_vtable buffer_vt = {"buffer", buffer_write, NULL, NULL};

sg_writer *sg_buffer_writer_new(sg_buf *out)
{
    buffer_writer *w = sg_writer_alloc(sizeof(*w), &buffer_vt, NULL);
    if (w)
        w->out = out;
    return (sg_writer *)w;
}

/* File descriptor writer. */

typedef struct fd_writer {
    sg_writer base;
    int fd;
    bool close_fd;
} fd_writer;

int sg_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fd_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    fd_writer *w = (fd_writer *)base;
    int e = sg_write_all(w->fd, data, len);
    if (e)
        return sg_error_set(err, SG_E_IO, "cannot write to file descriptor %d: %s", w->fd,
                            strerror(e));
    return 0;
}

/* Closing here rather than in destroy reports the errors some file systems
 * (NFS, quotas) only give at close. */
static int fd_close(sg_writer *base, sg_error *err)
{
    fd_writer *w = (fd_writer *)base;
    int fd = w->fd;
    if (!w->close_fd)
        return 0;
    w->close_fd = false;
    if (close(fd) < 0 && errno != EINTR)
        return sg_error_set(err, SG_E_IO, "cannot close file descriptor %d: %s", fd,
                            strerror(errno));
    return 0;
}

static void fd_destroy(sg_writer *base)
{
    fd_writer *w = (fd_writer *)base;
    if (w->close_fd)
        close(w->fd);
}

static const sg_writer_vtable fd_vt = {"file", fd_write, fd_close, fd_destroy};

sg_writer *sg_fd_writer_new(int fd, bool close_fd)
{
    fd_writer *w = sg_writer_alloc(sizeof(*w), &fd_vt, NULL);
    if (!w) {
        if (close_fd)
            close(fd);
        return NULL;
    }
    w->fd = fd;
    w->close_fd = close_fd;
    return (sg_writer *)w;
}

/* Null writer. */

static int null_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    return 0;
}

static const sg_writer_vtable null_vt = {"null", null_write, NULL, NULL};

sg_writer *sg_null_writer_new(void)
{
    return sg_writer_alloc(sizeof(sg_writer), &null_vt, NULL);
}

/* Size writer. */

typedef struct size_writer {
    sg_writer base;
    uint64_t bytes;
} size_writer;

static int size_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    size_writer *w = (size_writer *)base;
    w->bytes += len;
    return base->next ? sg_writer_write(base->next, data, len, err) : 0;
}

static const sg_writer_vtable size_vt = {"size", size_write, NULL, NULL};

sg_writer *sg_size_writer_new(sg_writer *next)
{
    return sg_writer_alloc(sizeof(size_writer), &size_vt, next);
}

uint64_t sg_size_writer_bytes(const sg_writer *w)
{
    assert(w->vt == &size_vt);
    return ((const size_writer *)w)->bytes;
}

/* Hash writer. OpenSSL's SHA-256 rather than libsodium's: it uses the CPU's
 * SHA extensions where there are some (several times faster), and every
 * stored byte passes through here on snapshot and verify. */

typedef struct hash_writer {
    sg_writer base;
    EVP_MD_CTX *ctx;
    uint8_t digest[32];
} hash_writer;

static int hash_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    hash_writer *w = (hash_writer *)base;
    if (EVP_DigestUpdate(w->ctx, data, len) != 1)
        return sg_error_set(err, SG_E_INTERNAL, "SHA-256 update failed");
    return base->next ? sg_writer_write(base->next, data, len, err) : 0;
}

static int hash_close(sg_writer *base, sg_error *err)
{
    hash_writer *w = (hash_writer *)base;
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(w->ctx, w->digest, &len) != 1 || len != sizeof(w->digest))
        return sg_error_set(err, SG_E_INTERNAL, "SHA-256 final failed");
    return 0;
}

static void hash_destroy(sg_writer *base)
{
    EVP_MD_CTX_free(((hash_writer *)base)->ctx);
}

static const sg_writer_vtable hash_vt = {"sha-256", hash_write, hash_close, hash_destroy};

sg_writer *sg_hash_writer_new(sg_writer *next)
{
    hash_writer *w = sg_writer_alloc(sizeof(*w), &hash_vt, next);
    if (!w)
        return NULL;
    if (!(w->ctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(w->ctx, EVP_sha256(), NULL) != 1) {
        sg_writer_free(&w->base);
        return NULL;
    }
    return &w->base;
}

void sg_hash_writer_digest(const sg_writer *w, uint8_t out[32])
{
    assert(w->vt == &hash_vt && w->closed);
    memcpy(out, ((const hash_writer *)w)->digest, sizeof(((const hash_writer *)w)->digest));
}
