/* The sandbox interface: picks a driver by name, and runs every driver's
 * garbage collection. */
#include "restore/sandbox_impl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proc.h"

static const sg_sandbox_driver *const drivers[] = {
    &sg_sandbox_local_driver,
    &sg_sandbox_docker_driver,
};

#define N_DRIVERS (sizeof(drivers) / sizeof(drivers[0]))

#define SANDBOX(field) offsetof(sg_sandbox_options, field)
const sg_option sg_sandbox_option_table[] = {
    {"sandbox", SG_OPT_STRING, SANDBOX(driver), "local|docker",
     "where throwaway servers run (default local)", 0, 0},
    {"sandbox-image", SG_OPT_STRING, SANDBOX(image), "IMAGE",
     "docker image (default postgres:MAJOR)", 0, 0},
    {"sandbox-memory", SG_OPT_STRING, SANDBOX(memory), "SIZE", "docker memory limit, e.g. 2g", 0,
     0},
    {"sandbox-cpus", SG_OPT_STRING, SANDBOX(cpus), "N", "docker CPU limit, e.g. 1.5", 0, 0},
    {0}};
#undef SANDBOX

static const sg_sandbox_driver *find_driver(const char *name, sg_error *err)
{
    for (size_t i = 0; i < N_DRIVERS; i++)
        if (strcmp(drivers[i]->name, name) == 0)
            return drivers[i];
    sg_error_set(err, SG_E_USAGE, "unknown sandbox driver \"%s\"", name);
    sg_error_hint(err, "use --sandbox local or --sandbox docker");
    return NULL;
}

int sg_sandbox_check_driver(const char *name, sg_error *err)
{
    return !name || find_driver(name, err) ? 0 : SG_E_USAGE;
}

int sg_sandbox_create(sg_sandbox **out, const sg_sandbox_options *opts, sg_error *err)
{
    const sg_sandbox_driver *d = find_driver(opts->driver ? opts->driver : "local", err);
    *out = NULL;
    if (!d)
        return SG_E_USAGE;
    if (opts->pg_major < 10) {
        sg_error_set(err, SG_E_USAGE, "a sandbox needs a PostgreSQL major version (10 or later)");
        return SG_E_USAGE;
    }
    return d->create(out, opts, err);
}

const char *sg_sandbox_conninfo(const sg_sandbox *sandbox)
{
    return sandbox->conninfo;
}

const char *sg_sandbox_driver_name(const sg_sandbox *sandbox)
{
    return sandbox->driver->name;
}

void sg_sandbox_destroy(sg_sandbox *sandbox)
{
    if (!sandbox)
        return;
    sandbox->driver->destroy(sandbox);
    free(sandbox->conninfo);
    free(sandbox);
}

/* What killed runs leave on this host besides sandboxes: the temporary
 * directories of restores and snapshots (schema dumps), and docker socket
 * directories whose container was never made. */
static const char *const tmp_tags[] = {"restore", "snapshot", "docker"};

static void gc_tmpdirs(size_t *removed)
{
    for (size_t i = 0; i < sizeof(tmp_tags) / sizeof(tmp_tags[0]); i++) {
        size_t n = 0;
        sg_error err = {0};
        if (sg_tmpdir_gc(tmp_tags[i], &n, &err) < 0)
            sg_log_warning("sandbox gc: %s", err.message);
        *removed += n;
    }
}

int sg_sandbox_gc(size_t *removed, const char *driver, sg_error *err)
{
    int rc = 0;
    *removed = 0;
    if (driver) {
        const sg_sandbox_driver *d = find_driver(driver, err);
        if (!d)
            return SG_E_USAGE;
        rc = d->gc(removed, err);
    } else {
        for (size_t i = 0; i < N_DRIVERS; i++) {
            size_t n = 0;
            sg_error derr = {0};
            if (drivers[i]->gc(&n, &derr) < 0) {
                sg_log_warning("sandbox gc (%s): %s", drivers[i]->name, derr.message);
                continue;
            }
            *removed += n;
        }
    }
    if (rc == 0)
        gc_tmpdirs(removed);
    return rc;
}
