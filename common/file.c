#include "common/file.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "common/mem.h"
#include "common/writer.h"

int sg_file_replace(const char *path, const void *data, size_t len, sg_error *err)
{
    const char *slash = strrchr(path, '/');
    char *tmp = NULL;
    int fd = -1, rc = 0, e;
    /* Beside the target, so the rename stays within one file system. */
    if (!(tmp = sg_asprintf("%.*s.%s.tmp.XXXXXX", slash ? (int)(slash - path + 1) : 0, path,
                            slash ? slash + 1 : path)))
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    if ((fd = mkstemp(tmp)) < 0) {
        rc = sg_error_set(err, SG_E_IO, "cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    if ((e = sg_write_all(fd, data, len)) != 0 || (fchmod(fd, 0644) < 0 && (e = errno)) ||
        (fsync(fd) < 0 && (e = errno))) {
        rc = sg_error_set(err, SG_E_IO, "cannot write %s: %s", path, strerror(e));
        goto done;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = sg_error_set(err, SG_E_IO, "cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        rc = sg_error_set(err, SG_E_IO, "cannot write %s: %s", path, strerror(errno));
done:
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

int sg_file_read(char **out, size_t *len, const char *path, size_t max, sg_error *err)
{
    char *data = NULL;
    size_t used = 0;
    /* O_NONBLOCK: a FIFO under a file's name fails the regular-file check
     * below instead of blocking here; reads of regular files ignore it */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), rc = 0;
    struct stat st;
    *out = NULL;
    *len = 0;
    if (fd < 0)
        return sg_error_set(err, SG_E_IO, "cannot read %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        rc = sg_error_set(err, SG_E_IO, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = sg_error_set(err, SG_E_IO, "cannot read %s: not a regular file", path);
        goto done;
    }
    if ((uint64_t)st.st_size > max) {
        rc = sg_error_set(err, SG_E_FORMAT, "%s is too large (%lld bytes, at most %zu)", path,
                          (long long)st.st_size, max);
        goto done;
    }
    if (!(data = sg_malloc((size_t)st.st_size + 1))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    /* The size may change while we read: read what is there, up to the size
     * seen, and stop at end of file. */
    while (used < (size_t)st.st_size) {
        ssize_t n = read(fd, data + used, (size_t)st.st_size - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = sg_error_set(err, SG_E_IO, "cannot read %s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    data[used] = '\0';
    *out = data;
    *len = used;
    data = NULL;
done:
    free(data);
    close(fd);
    return rc;
}
