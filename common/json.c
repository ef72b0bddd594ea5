#include "common/json.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/mem.h"

static pthread_once_t json_once = PTHREAD_ONCE_INIT;
static _Thread_local bool alloc_failed;

static void *json_alloc(size_t size)
{
    void *p = sg_malloc(size);
    if (!p)
        alloc_failed = true;
    return p;
}

static void json_setup(void)
{
    /* sg_malloc allocates with malloc, so plain free releases both its
     * allocations and any that jansson made before this ran. */
    json_set_alloc_funcs(json_alloc, free);
}

void sg_json_init(void)
{
    pthread_once(&json_once, json_setup);
}

void sg_json_alloc_reset(void)
{
    alloc_failed = false;
}

bool sg_json_alloc_failed(void)
{
    return alloc_failed;
}
