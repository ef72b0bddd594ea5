/* Whole local files written so that a reader sees the old file or the new
 * one, never half of one: reports that monitoring and CI pick up while
 * shardgate writes them. */
#ifndef SG_COMMON_FILE_H
#define SG_COMMON_FILE_H

#include <stddef.h>

#include "common/error.h"

/* Writes data to a temporary file beside path, flushes it to disk and
 * renames it over path (mode 0644). SG_E_IO naming path on failure, with
 * nothing left behind. */
int sg_file_replace(const char *path, const void *data, size_t len, sg_error *err);

/* Reads a whole file of at most max bytes into a NUL-terminated buffer to
 * free(). SG_E_IO names path when it cannot be read; SG_E_FORMAT when it is
 * larger than max. */
int sg_file_read(char **out, size_t *len, const char *path, size_t max, sg_error *err);

#endif
