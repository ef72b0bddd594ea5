/* Sandboxes: throwaway PostgreSQL servers that a snapshot is restored into
 * to prove it (the pipeline's test-restore gate, and drills). One interface,
 * a driver per kind: "local" runs the host's server binaries in a temporary
 * directory (inside new namespaces where the kernel allows), "docker" runs a
 * container through the Docker Engine API.
 *
 * A sandbox is destroyed on success, on failure and after SIGINT/SIGTERM by
 * whoever created it; a process killed outright leaves a marker (a temporary
 * directory with the owner's pid, or container labels) that
 * sg_sandbox_gc finds. */
#ifndef SG_RESTORE_SANDBOX_H
#define SG_RESTORE_SANDBOX_H

#include <stddef.h>

#include "common/error.h"
#include "common/options.h"

typedef struct sg_sandbox sg_sandbox;

typedef struct sg_sandbox_options {
    const char *driver;    /* "local" (default) or "docker" */
    int pg_major;          /* server major version to run, e.g. 15 */
    const char *pg_bindir; /* local: server binaries (default: found, see sandbox_local.c) */
    const char *image;     /* docker: image (default "postgres:<major>") */
    const char *memory;    /* docker: memory limit such as "2g" (NULL: none) */
    const char *cpus;      /* docker: CPU limit such as "1.5" (NULL: none) */
    const char *run_id;    /* the run the sandbox belongs to (labels, marker) */
    const char *shard;     /* the shard it is for (labels, marker) */
} sg_sandbox_options;

/* The --sandbox, --sandbox-image, --sandbox-memory and --sandbox-cpus
 * options; offsets are into sg_sandbox_options (SG_OPTIONS_INCLUDE). */
extern const sg_option sg_sandbox_option_table[];

/* Creates a sandbox and returns once its server accepts connections.
 * SG_E_USAGE for an unknown driver or bad limits; SG_E_NOT_FOUND when no
 * server binaries or image of that major version exist; SG_E_PROCESS when
 * the server does not start (its log's last lines in the detail). */
int sg_sandbox_create(sg_sandbox **out, const sg_sandbox_options *opts, sg_error *err);

/* SG_E_USAGE unless name is a driver's ("local", "docker"); NULL is the
 * default driver. For checking options before any work starts. */
int sg_sandbox_check_driver(const char *name, sg_error *err);

/* libpq conninfo for the sandbox's "postgres" database as superuser
 * "postgres"; valid until the sandbox is destroyed. */
const char *sg_sandbox_conninfo(const sg_sandbox *sandbox);

/* The driver's name ("local", "docker"). */
const char *sg_sandbox_driver_name(const sg_sandbox *sandbox);

/* Stops the server at once (it holds nothing worth a clean shutdown) and
 * removes everything the sandbox made. Problems are logged as warnings.
 * NULL is a no-op. */
void sg_sandbox_destroy(sg_sandbox *sandbox);

/* Removes what killed runs left behind, for one driver or (driver NULL)
 * every driver that is available here; a driver that cannot be reached
 * (no Docker daemon) is skipped with a warning when driver is NULL. Also
 * removes the temporary directories of killed restores and snapshots. Sets
 * *removed to the number of sandboxes and directories removed. What live
 * processes own is left alone. */
int sg_sandbox_gc(size_t *removed, const char *driver, sg_error *err);

#endif
