/* JSON through jansson, with jansson's allocations routed through common/mem.h
 * so that allocation-failure tests cover them too. */
#ifndef SG_COMMON_JSON_H
#define SG_COMMON_JSON_H

#include <stdbool.h>

/* Points jansson's allocator at sg_malloc. Call before using jansson; calling
 * it again, from any thread, does nothing. */
void sg_json_init(void);

/* Whether one of jansson's allocations on this thread failed since the last
 * sg_json_alloc_reset. jansson reports some allocation failures as syntax
 * errors (json_loadb) or not at all (json_string returns NULL for invalid
 * UTF-8 too), so callers ask this to tell the two apart. */
void sg_json_alloc_reset(void);
bool sg_json_alloc_failed(void);

#endif
