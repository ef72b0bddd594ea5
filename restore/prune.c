#include "restore/prune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/interrupt.h"
#include "common/log.h"
#include "common/mem.h"
#include "restore/access.h"

int64_t sg_snapshot_id_time(const char *id)
{
    struct tm tm = {0};
    const char *end = strptime(id, "%Y%m%dT%H%M%SZ", &tm);
    if (!end || (*end != '-' && *end != '\0'))
        return -1;
    return (int64_t)timegm(&tm);
}

typedef struct object_list {
    char **keys;
    size_t count;
    sg_error *err;
} object_list;

static int collect_key(void *ctx, const char *key, uint64_t size)
{
    object_list *l = ctx;
    char **grown = sg_array_grow(l->keys, l->count, sizeof(*grown));
    char *copy = grown ? sg_strdup(key) : NULL;
    if (grown)
        l->keys = grown;
    if (!copy)
        return sg_error_set(l->err, SG_E_NOMEM, "out of memory (listing a snapshot)");
    l->keys[l->count++] = copy;
    return 0;
}

/* Manifest first: from then on the snapshot is incomplete, whatever
 * happens to the rest. */
static int remove_snapshot(sg_store *store, const sg_pruned *p, sg_error *err)
{
    object_list objects = {.err = err};
    char *manifest = sg_layout_key(p->shard, p->id, "manifest");
    char *prefix = sg_layout_key(p->shard, p->id, "");
    int rc = 0;
    if (!manifest || !prefix) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (pruning)");
        goto done;
    }
    if ((rc = sg_store_delete(store, manifest, err)) < 0 ||
        (rc = sg_store_list(store, prefix, collect_key, &objects, err)) < 0)
        goto done;
    for (size_t i = 0; i < objects.count; i++) {
        if ((rc = sg_interrupt_check(err)) < 0 ||
            (rc = sg_store_delete(store, objects.keys[i], err)) < 0)
            goto done;
    }
done:
    if (rc < 0)
        sg_error_prefix(err, "cannot remove snapshot %s/%s", p->shard, p->id);
    for (size_t i = 0; i < objects.count; i++)
        free(objects.keys[i]);
    free(objects.keys);
    free(manifest);
    free(prefix);
    return rc;
}

/* Marks what goes, shard by shard; entries are newest first, grouped by
 * nothing, so each shard's count is kept as the list is walked. */
static int choose(sg_prune_result *res, const sg_snapshot_entry *entries, size_t count,
                  const sg_prune_options *opts, int64_t now, sg_error *err)
{
    for (size_t i = 0; i < count; i++) {
        const sg_snapshot_entry *e = &entries[i];
        int newer_complete = 0;
        bool keep;
        int64_t taken = sg_snapshot_id_time(e->id);
        for (size_t j = 0; j < i; j++)
            if (entries[j].complete && strcmp(entries[j].shard, e->shard) == 0)
                newer_complete++;
        if (e->complete)
            keep = newer_complete < opts->keep_last ||
                   (opts->keep_days > 0 && taken >= 0 &&
                    now - taken < (int64_t)opts->keep_days * 86400);
        else
            keep = newer_complete == 0;
        if (keep) {
            res->kept++;
            continue;
        }
        sg_pruned *grown = sg_array_grow(res->removed, res->nremoved, sizeof(*grown));
        if (!grown)
            return sg_error_set(err, SG_E_NOMEM, "out of memory (pruning)");
        res->removed = grown;
        sg_pruned *p = &res->removed[res->nremoved++];
        memset(p, 0, sizeof(*p));
        snprintf(p->shard, sizeof(p->shard), "%s", e->shard);
        snprintf(p->id, sizeof(p->id), "%s", e->id);
        p->complete = e->complete;
        p->pack_bytes = e->pack_bytes;
    }
    return 0;
}

int sg_prune(sg_prune_result *res, const sg_prune_options *opts, sg_error *err)
{
    sg_store *store = NULL;
    sg_snapshot_entry *entries = NULL;
    size_t count = 0, chosen, i;
    int rc;
    memset(res, 0, sizeof(*res));
    if (!opts->store.url)
        return sg_error_set(err, SG_E_USAGE, "--store URL is required");
    if (opts->keep_last < 1) {
        sg_error_set(err, SG_E_USAGE, "--keep-last N is required, and N must be at least 1");
        sg_error_hint(err, "prune never removes a shard's newest complete snapshot");
        return SG_E_USAGE;
    }
    if (opts->shard && (rc = sg_shard_name_check(opts->shard, err)) < 0)
        return rc;
    if ((rc = sg_store_open_config(&store, &opts->store, err)) < 0 ||
        (rc = sg_snapshot_list(&entries, &count, store, opts->shard, err)) < 0 ||
        (rc = choose(res, entries, count, opts, (int64_t)time(NULL), err)) < 0)
        goto done;
    chosen = res->nremoved;
    if (opts->dry_run) {
        for (i = 0; i < chosen; i++)
            res->freed_bytes += res->removed[i].pack_bytes;
        goto done;
    }
    /* Oldest first: if prune stops half-way, what is left is the newer
     * part of what it meant to remove. */
    i = chosen;
    while (i > 0) {
        const sg_pruned *p = &res->removed[i - 1];
        if ((rc = sg_interrupt_check(err)) < 0 || (rc = remove_snapshot(store, p, err)) < 0)
            break;
        sg_log_info("removed snapshot %s/%s (%s)", p->shard, p->id,
                    p->complete ? "complete" : "incomplete");
        res->freed_bytes += p->pack_bytes;
        i--;
    }
    /* On failure the result keeps only what went: removed[i..chosen). */
    if (i > 0)
        memmove(res->removed, res->removed + i, (chosen - i) * sizeof(*res->removed));
    res->nremoved = chosen - i;
    res->kept += i;
done:
    free(entries);
    sg_store_free(store);
    return rc;
}

void sg_prune_result_clear(sg_prune_result *res)
{
    free(res->removed);
    memset(res, 0, sizeof(*res));
}
