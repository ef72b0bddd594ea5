/* For implementers of writers: the vtable and the base struct that every
 * writer embeds first. */
#ifndef SG_COMMON_WRITER_IMPL_H
#define SG_COMMON_WRITER_IMPL_H

#include "common/writer.h"

typedef struct sg_writer_vtable {
    const char *name;
    int (*write)(sg_writer *w, const void *data, size_t len, sg_error *err);
    /* Flush own trailer; the base then closes next. */
    int (*close)(sg_writer *w, sg_error *err);
    /* Release own resources (not the struct, not next). May be NULL. */
    void (*destroy)(sg_writer *w);
} sg_writer_vtable;

struct sg_writer {
    const sg_writer_vtable *vt;
    sg_writer *next;
    int failed; /* error code of the first failure, or 0 */
    bool closed;
};

/* Allocates a zeroed writer of `size` bytes (>= sizeof(sg_writer)) with vt
 * and next set. On allocation failure frees next and returns NULL. */
void *sg_writer_alloc(size_t size, const sg_writer_vtable *vt, sg_writer *next);

#endif
