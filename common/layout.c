#include "common/layout.h"

#include <ctype.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/manifest.h"
#include "common/mem.h"

int sg_shard_name_check(const char *shard, sg_error *err)
{
    size_t len = strlen(shard);
    bool ok = len > 0 && len <= SG_SHARD_NAME_MAX && shard[0] != '.';
    for (size_t i = 0; ok && i < len; i++)
        ok = isalnum((unsigned char)shard[i]) || strchr("._-", shard[i]) != NULL;
    if (ok)
        return 0;
    sg_error_set(err, SG_E_USAGE, "invalid shard name \"%s\"", shard);
    sg_error_hint(err,
                  "shard names use letters, digits, '.', '_' and '-' (at most %d), and do "
                  "not start with '.'",
                  SG_SHARD_NAME_MAX);
    return SG_E_USAGE;
}

char *sg_layout_key(const char *shard, const char *id, const char *path)
{
    return sg_asprintf("shards/%s/snapshots/%s/%s", shard, id, path);
}

void sg_run_id_new(char out[SG_RUN_ID_MAX])
{
    /* time first, so run ids sort by when they started */
    time_t now = time(NULL);
    struct tm tm;
    size_t n;
    gmtime_r(&now, &tm);
    n = strftime(out, SG_RUN_ID_MAX, "%Y%m%dT%H%M%SZ-", &tm);
    snprintf(out + n, SG_RUN_ID_MAX - n, "%08" PRIx32, randombytes_random());
}

char *sg_layout_drill_key(const char *shard)
{
    return sg_asprintf("shards/%s/last-drill.json", shard);
}

char *sg_layout_shard_prefix(const char *shard)
{
    return sg_asprintf("shards/%s/snapshots/", shard);
}

int sg_layout_parse_spec(char shard[SG_SHARD_NAME_MAX + 1], char id[64], const char *spec,
                         sg_error *err)
{
    const char *slash = strchr(spec, '/');
    size_t shard_len = slash ? (size_t)(slash - spec) : 0;
    int rc;
    if (!slash || shard_len == 0 || shard_len > SG_SHARD_NAME_MAX || strlen(slash + 1) >= 64 ||
        slash[1] == '\0') {
        sg_error_set(err, SG_E_USAGE, "invalid snapshot \"%s\"", spec);
        sg_error_hint(err, "name a snapshot as SHARD/ID or SHARD/latest");
        return SG_E_USAGE;
    }
    memcpy(shard, spec, shard_len);
    shard[shard_len] = '\0';
    if ((rc = sg_shard_name_check(shard, err)) < 0)
        return rc;
    strcpy(id, slash + 1);
    if (strcmp(id, "latest") != 0 && !sg_snapshot_id_valid(id)) {
        sg_error_set(err, SG_E_USAGE, "invalid snapshot id \"%s\"", id);
        sg_error_hint(err, "ids look like 20240501T020000Z-1a2b3c4d; \"shardgate snapshots\" "
                           "lists them");
        return SG_E_USAGE;
    }
    return 0;
}
