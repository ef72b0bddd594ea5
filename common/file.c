#include "common/file.h"

#include <errno.h>
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
