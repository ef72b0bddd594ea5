/* For sandbox drivers: the table of functions behind sg_sandbox. Adding a
 * driver is adding a file with one of these and a line in sandbox.c. */
#ifndef SG_RESTORE_SANDBOX_IMPL_H
#define SG_RESTORE_SANDBOX_IMPL_H

#include "restore/sandbox.h"

typedef struct sg_sandbox_driver {
    const char *name;
    /* Allocates the driver's struct (sg_sandbox embedded first), sets driver
     * and conninfo (an sg_strdup'd string), and returns a ready server.
     * On failure leaves nothing behind. */
    int (*create)(sg_sandbox **out, const sg_sandbox_options *opts, sg_error *err);
    /* Stops and removes everything; frees its own fields (not conninfo, not
     * the struct: sandbox.c does). */
    void (*destroy)(sg_sandbox *sandbox);
    int (*gc)(size_t *removed, sg_error *err);
} sg_sandbox_driver;

struct sg_sandbox {
    const sg_sandbox_driver *driver;
    char *conninfo;
};

extern const sg_sandbox_driver sg_sandbox_local_driver;
extern const sg_sandbox_driver sg_sandbox_docker_driver;

/* The marker label / file name shared by drivers. */
#define SG_SANDBOX_LABEL "io.shardgate.sandbox"

#endif
