#include "common/manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/mem.h"
#include "common/writer.h"

#define MAGIC "shardgate-manifest "
#define SIGNATURE_PREFIX "signature ed25519 "
#define B64 sodium_base64_VARIANT_ORIGINAL
#define SIGNATURE_B64_SIZE sodium_base64_ENCODED_LEN(SG_SIGNATURE_BYTES, B64)

/* The body's associated data is this, its NUL, then the snapshot id: a body
 * moved into another snapshot's manifest does not open. */
#define BODY_AD "shardgate manifest body"
#define BODY_AD_MAX (sizeof(BODY_AD) + SG_SNAPSHOT_ID_MAX)
#define BODY_SEGMENT_SIZE (64 * 1024)
#define BODY_ZSTD_LEVEL 3
/* Far above any real body (thousands of tables with thousands of chunks
 * each), and low enough that a forged one cannot exhaust memory. */
#define BODY_MAX_PLAIN ((uint64_t)1 << 30)

/* JSON integers are signed 64-bit in jansson. */
#define JSON_UINT_MAX ((uint64_t)INT64_MAX)

static int nomem(sg_error *err)
{
    return sg_error_set(err, SG_E_NOMEM, "out of memory holding a manifest");
}

/* Model */

sg_manifest *sg_manifest_new(void)
{
    sg_manifest *m = sg_calloc(1, sizeof(sg_manifest));
    if (m)
        m->target_version = -1;
    return m;
}

static void table_clear(sg_manifest_table *t)
{
    for (size_t i = 0; i < t->ncolumns; i++) {
        free(t->columns[i].name);
        free(t->columns[i].type);
    }
    free(t->columns);
    free(t->chunks);
    free(t->schema);
    free(t->name);
}

static void body_clear(sg_manifest *m)
{
    for (size_t i = 0; i < m->nsettings; i++) {
        free(m->settings[i].name);
        free(m->settings[i].value);
    }
    for (size_t i = 0; i < m->ntables; i++)
        table_clear(&m->tables[i]);
    for (size_t i = 0; i < m->nsequences; i++) {
        free(m->sequences[i].schema);
        free(m->sequences[i].name);
    }
    for (size_t i = 0; i < m->nrefresh_matviews; i++)
        free(m->refresh_matviews[i]);
    free(m->system_identifier);
    free(m->snapshot_lsn);
    free(m->schema_fingerprint);
    free(m->registry_version);
    free(m->settings);
    free(m->tables);
    free(m->sequences);
    free(m->refresh_matviews);
    m->body_loaded = false;
    m->system_identifier = m->snapshot_lsn = m->schema_fingerprint = m->registry_version = NULL;
    m->settings = NULL;
    m->tables = NULL;
    m->sequences = NULL;
    m->refresh_matviews = NULL;
    m->nsettings = m->ntables = m->nsequences = m->nrefresh_matviews = 0;
    memset(&m->schema, 0, sizeof(m->schema));
}

void sg_manifest_free(sg_manifest *m)
{
    if (!m)
        return;
    body_clear(m);
    for (size_t i = 0; i < m->nobjects; i++)
        free(m->objects[i].path);
    free(m->objects);
    free(m->recipients);
    free(m->id);
    free(m->shard);
    free(m->tool_version);
    free(m->run_id);
    free(m->started_at);
    free(m->finished_at);
    free(m->server_version);
    sg_buf_free(&m->sealed_body);
    free(m);
}

static int append_recipient(sg_manifest *m, const char *key_id,
                            const uint8_t wrapped[SG_WRAPPED_KEY_BYTES], sg_error *err)
{
    sg_manifest_recipient *r = sg_array_grow(m->recipients, m->nrecipients, sizeof(*r));
    if (!r)
        return nomem(err);
    m->recipients = r;
    r += m->nrecipients++;
    memcpy(r->key_id, key_id, SG_KEY_ID_LEN);
    r->key_id[SG_KEY_ID_LEN] = '\0';
    memcpy(r->wrapped, wrapped, SG_WRAPPED_KEY_BYTES);
    return 0;
}

int sg_manifest_add_recipient(sg_manifest *m, const sg_public_key *to,
                              const uint8_t data_key[SG_DATA_KEY_BYTES], sg_error *err)
{
    uint8_t wrapped[SG_WRAPPED_KEY_BYTES];
    sg_key_wrap(wrapped, data_key, to);
    return append_recipient(m, to->id, wrapped, err);
}

int sg_manifest_add_object(sg_manifest *m, const char *path, uint64_t size,
                           const uint8_t sha256[32], sg_error *err)
{
    sg_manifest_object *o = sg_array_grow(m->objects, m->nobjects, sizeof(*o));
    char *copy;
    if (!o)
        return nomem(err);
    m->objects = o;
    if (!(copy = sg_strdup(path)))
        return nomem(err);
    o += m->nobjects++;
    o->path = copy;
    o->size = size;
    memcpy(o->sha256, sha256, sizeof(o->sha256));
    return 0;
}

/* Copies two strings, both or neither. */
static int dup_pair(char **a_out, char **b_out, const char *a, const char *b, sg_error *err)
{
    char *a_copy = sg_strdup(a), *b_copy = a_copy ? sg_strdup(b) : NULL;
    if (!b_copy) {
        free(a_copy);
        return nomem(err);
    }
    *a_out = a_copy;
    *b_out = b_copy;
    return 0;
}

int sg_manifest_add_setting(sg_manifest *m, const char *name, const char *value, sg_error *err)
{
    sg_manifest_setting *s = sg_array_grow(m->settings, m->nsettings, sizeof(*s));
    int rc;
    if (!s)
        return nomem(err);
    m->settings = s;
    s += m->nsettings;
    if ((rc = dup_pair(&s->name, &s->value, name, value, err)) < 0)
        return rc;
    m->nsettings++;
    return 0;
}

int sg_manifest_add_sequence(sg_manifest *m, const char *schema, const char *name,
                             int64_t last_value, bool is_called, sg_error *err)
{
    sg_manifest_sequence *s = sg_array_grow(m->sequences, m->nsequences, sizeof(*s));
    int rc;
    if (!s)
        return nomem(err);
    m->sequences = s;
    s += m->nsequences;
    if ((rc = dup_pair(&s->schema, &s->name, schema, name, err)) < 0)
        return rc;
    s->last_value = last_value;
    s->is_called = is_called;
    m->nsequences++;
    return 0;
}

int sg_manifest_add_matview(sg_manifest *m, const char *qualified_name, sg_error *err)
{
    char **names = sg_array_grow(m->refresh_matviews, m->nrefresh_matviews, sizeof(*names));
    char *copy;
    if (!names)
        return nomem(err);
    m->refresh_matviews = names;
    if (!(copy = sg_strdup(qualified_name)))
        return nomem(err);
    names[m->nrefresh_matviews++] = copy;
    return 0;
}

int sg_manifest_add_table(sg_manifest_table **out, sg_manifest *m, uint32_t oid, const char *schema,
                          const char *name, sg_error *err)
{
    sg_manifest_table *t = sg_array_grow(m->tables, m->ntables, sizeof(*t));
    int rc;
    if (!t)
        return nomem(err);
    m->tables = t;
    t += m->ntables;
    memset(t, 0, sizeof(*t));
    if ((rc = dup_pair(&t->schema, &t->name, schema, name, err)) < 0)
        return rc;
    t->oid = oid;
    m->ntables++;
    *out = t;
    return 0;
}

int sg_manifest_table_add_column(sg_manifest_table *t, const char *name, const char *type,
                                 sg_error *err)
{
    sg_manifest_column *c = sg_array_grow(t->columns, t->ncolumns, sizeof(*c));
    int rc;
    if (!c)
        return nomem(err);
    t->columns = c;
    c += t->ncolumns;
    if ((rc = dup_pair(&c->name, &c->type, name, type, err)) < 0)
        return rc;
    t->ncolumns++;
    return 0;
}

int sg_manifest_table_add_chunk(sg_manifest_table *t, const sg_manifest_chunk *chunk, sg_error *err)
{
    sg_manifest_chunk *c = sg_array_grow(t->chunks, t->nchunks, sizeof(*c));
    if (!c)
        return nomem(err);
    t->chunks = c;
    c[t->nchunks++] = *chunk;
    return 0;
}

const sg_manifest_object *sg_manifest_find_object(const sg_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->nobjects; i++)
        if (strcmp(m->objects[i].path, path) == 0)
            return &m->objects[i];
    return NULL;
}

/* Validation shared by writing and reading */

bool sg_snapshot_id_valid(const char *id)
{
    size_t len = strspn(id, "0123456789"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "abcdefghijklmnopqrstuvwxyz-");
    return len > 0 && len < SG_SNAPSHOT_ID_MAX && id[len] == '\0';
}

int sg_snapshot_id_new(char out[SG_SNAPSHOT_ID_MAX], sg_error *err)
{
    time_t now = time(NULL);
    struct tm tm;
    uint8_t random[4];
    size_t len;
    if (now == (time_t)-1 || !gmtime_r(&now, &tm) ||
        (len = strftime(out, SG_SNAPSHOT_ID_MAX, "%Y%m%dT%H%M%SZ-", &tm)) == 0 ||
        len + 2 * sizeof(random) >= SG_SNAPSHOT_ID_MAX)
        return sg_error_set(err, SG_E_INTERNAL, "cannot read the clock for a snapshot id");
    if (sodium_init() < 0)
        return sg_error_set(err, SG_E_INTERNAL, "cannot initialize libsodium");
    randombytes_buf(random, sizeof(random));
    sodium_bin2hex(out + len, SG_SNAPSHOT_ID_MAX - len, random, sizeof(random));
    return 0;
}

static bool is_key_id(const char *s, size_t len)
{
    if (len != SG_KEY_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* "YYYY-MM-DDTHH:MM:SS", optional fraction, "Z": the only form we write. */
static bool is_utc_time(const char *s)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:dd";
    size_t i;
    for (i = 0; pattern[i]; i++)
        if (pattern[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pattern[i])
            return false;
    if (s[i] == '.') {
        size_t digits = strspn(s + i + 1, "0123456789");
        if (digits == 0)
            return false;
        i += 1 + digits;
    }
    return s[i] == 'Z' && s[i + 1] == '\0';
}

/* Object paths are joined to the snapshot's prefix in the store, so they
 * must stay below it. */
static bool is_object_path(const char *path)
{
    const char *p = path;
    if (*p == '\0')
        return false;
    for (;;) {
        size_t len = strcspn(p, "/");
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (p[len] == '\0')
            return true;
        p += len + 1;
    }
}

static size_t body_ad(uint8_t ad[BODY_AD_MAX], const char *id)
{
    size_t id_len = strlen(id);
    memcpy(ad, BODY_AD, sizeof(BODY_AD));
    memcpy(ad + sizeof(BODY_AD), id, id_len);
    return sizeof(BODY_AD) + id_len;
}

/* Writing */

/* Collects the first error while a JSON tree is built, so that building reads
 * as a list of fields with one check at the end. json_object_set_new and
 * json_array_append_new fail on a NULL container or value and release the
 * value, so a failed allocation anywhere just propagates. */
typedef struct builder {
    sg_error *err;
    int rc;
} builder;

static void put(builder *b, json_t *obj, const char *key, json_t *value)
{
    if (json_object_set_new(obj, key, value) < 0 && b->rc == 0)
        b->rc = nomem(b->err);
}

static void append(builder *b, json_t *array, json_t *value)
{
    if (json_array_append_new(array, value) < 0 && b->rc == 0)
        b->rc = nomem(b->err);
}

static json_t *str(builder *b, const char *field, const char *s)
{
    json_t *v = NULL;
    if (b->rc < 0)
        return NULL;
    if (!s) {
        b->rc = sg_error_set(b->err, SG_E_INTERNAL, "manifest field \"%s\" is not set", field);
        return NULL;
    }
    sg_json_alloc_reset();
    if ((v = json_string(s)) == NULL)
        b->rc = sg_json_alloc_failed()
                    ? nomem(b->err)
                    : sg_error_set(b->err, SG_E_FORMAT, "manifest field \"%s\" is not valid UTF-8",
                                   field);
    return v;
}

static json_t *num(builder *b, const char *field, uint64_t value)
{
    if (b->rc < 0)
        return NULL;
    if (value > JSON_UINT_MAX) {
        b->rc = sg_error_set(b->err, SG_E_INTERNAL, "manifest field \"%s\" is too large: %" PRIu64,
                             field, value);
        return NULL;
    }
    return json_integer((json_int_t)value);
}

static json_t *digest_hex(builder *b, const char *field, const sg_digest *d)
{
    char hex[SG_DIGEST_HEX_LEN + 1];
    sg_digest_hex(d, hex);
    return str(b, field, hex);
}

static json_t *base64(builder *b, const uint8_t *data, size_t len)
{
    size_t size = sodium_base64_ENCODED_LEN(len, B64);
    char *text;
    json_t *v = NULL;
    if (b->rc < 0)
        return NULL;
    if (!(text = sg_malloc(size))) {
        b->rc = nomem(b->err);
        return NULL;
    }
    sodium_bin2base64(text, size, data, len, B64);
    v = json_stringn_nocheck(text, size - 1);
    free(text);
    return v;
}

static json_t *chunk_json(builder *b, const sg_manifest_chunk *c)
{
    json_t *o = json_object();
    put(b, o, "seq", json_integer(c->seq));
    put(b, o, "pack", json_integer(c->pack));
    put(b, o, "offset", num(b, "offset", c->offset));
    put(b, o, "stored_size", num(b, "stored_size", c->stored_size));
    put(b, o, "plain_size", num(b, "plain_size", c->plain_size));
    {
        char hex[65];
        sodium_bin2hex(hex, sizeof(hex), c->sha256, sizeof(c->sha256));
        put(b, o, "sha256", str(b, "sha256", hex));
    }
    put(b, o, "rows", num(b, "rows", c->digest.rows));
    put(b, o, "digest", digest_hex(b, "digest", &c->digest));
    return o;
}

static json_t *table_json(builder *b, const sg_manifest_table *t)
{
    json_t *o = json_object(), *columns = json_array(), *chunks = json_array();
    put(b, o, "oid", json_integer(t->oid));
    put(b, o, "schema", str(b, "tables.schema", t->schema));
    put(b, o, "name", str(b, "tables.name", t->name));
    for (size_t i = 0; i < t->ncolumns; i++) {
        json_t *column = json_object();
        put(b, column, "name", str(b, "tables.columns.name", t->columns[i].name));
        put(b, column, "type", str(b, "tables.columns.type", t->columns[i].type));
        append(b, columns, column);
    }
    put(b, o, "columns", columns);
    put(b, o, "rows", num(b, "tables.rows", t->digest.rows));
    put(b, o, "digest", digest_hex(b, "tables.digest", &t->digest));
    for (size_t i = 0; i < t->nchunks; i++)
        append(b, chunks, chunk_json(b, &t->chunks[i]));
    put(b, o, "chunks", chunks);
    return o;
}

static json_t *body_json(builder *b, const sg_manifest *m)
{
    json_t *o = json_object(), *settings = json_object(), *tables = json_array();
    json_t *sequences = json_array(), *matviews = json_array();

    put(b, o, "system_identifier", str(b, "system_identifier", m->system_identifier));
    put(b, o, "snapshot_lsn", str(b, "snapshot_lsn", m->snapshot_lsn));
    for (size_t i = 0; i < m->nsettings; i++) {
        if (b->rc == 0 && json_object_get(settings, m->settings[i].name))
            b->rc = sg_error_set(b->err, SG_E_INTERNAL, "setting \"%s\" is in the manifest twice",
                                 m->settings[i].name);
        put(b, settings, m->settings[i].name, str(b, "settings", m->settings[i].value));
    }
    put(b, o, "settings", settings);
    put(b, o, "schema_fingerprint", str(b, "schema_fingerprint", m->schema_fingerprint));
    put(b, o, "registry_version",
        m->registry_version ? str(b, "registry_version", m->registry_version) : json_null());
    put(b, o, "schema", chunk_json(b, &m->schema));
    for (size_t i = 0; i < m->ntables; i++)
        append(b, tables, table_json(b, &m->tables[i]));
    put(b, o, "tables", tables);
    for (size_t i = 0; i < m->nsequences; i++) {
        const sg_manifest_sequence *s = &m->sequences[i];
        json_t *seq = json_object();
        char value[24];
        snprintf(value, sizeof(value), "%" PRId64, s->last_value);
        put(b, seq, "schema", str(b, "sequences.schema", s->schema));
        put(b, seq, "name", str(b, "sequences.name", s->name));
        /* A string: many JSON readers hold numbers as doubles. */
        put(b, seq, "last_value", str(b, "sequences.last_value", value));
        put(b, seq, "is_called", json_boolean(s->is_called));
        append(b, sequences, seq);
    }
    put(b, o, "sequences", sequences);
    for (size_t i = 0; i < m->nrefresh_matviews; i++)
        append(b, matviews, str(b, "refresh_matviews", m->refresh_matviews[i]));
    put(b, o, "refresh_matviews", matviews);
    return o;
}

static json_t *header_json(builder *b, const sg_manifest *m, const char *signer,
                           const sg_buf *sealed_body)
{
    json_t *o = json_object(), *recipients = json_array(), *objects = json_array();
    uint64_t rows = 0;
    char hex[65];

    for (size_t i = 0; i < m->ntables; i++)
        rows += m->tables[i].digest.rows;
    put(b, o, "format", json_integer(SG_MANIFEST_FORMAT));
    put(b, o, "tool_version", str(b, "tool_version", m->tool_version));
    put(b, o, "id", str(b, "id", m->id));
    put(b, o, "shard", str(b, "shard", m->shard));
    put(b, o, "started_at", str(b, "started_at", m->started_at));
    put(b, o, "finished_at", str(b, "finished_at", m->finished_at));
    put(b, o, "server_version", str(b, "server_version", m->server_version));
    put(b, o, "server_version_num", json_integer(m->server_version_num));
    if (m->run_id) {
        put(b, o, "run_id", str(b, "run_id", m->run_id));
        put(b, o, "target_version", json_integer(m->target_version));
    }
    put(b, o, "signer", str(b, "signer", signer));
    for (size_t i = 0; i < m->nrecipients; i++) {
        json_t *r = json_object();
        put(b, r, "key_id", str(b, "recipients.key_id", m->recipients[i].key_id));
        put(b, r, "wrapped", base64(b, m->recipients[i].wrapped, SG_WRAPPED_KEY_BYTES));
        append(b, recipients, r);
    }
    put(b, o, "recipients", recipients);
    for (size_t i = 0; i < m->nobjects; i++) {
        json_t *obj = json_object();
        sodium_bin2hex(hex, sizeof(hex), m->objects[i].sha256, sizeof(m->objects[i].sha256));
        put(b, obj, "path", str(b, "objects.path", m->objects[i].path));
        put(b, obj, "size", num(b, "objects.size", m->objects[i].size));
        put(b, obj, "sha256", str(b, "objects.sha256", hex));
        append(b, objects, obj);
    }
    put(b, o, "objects", objects);
    put(b, o, "tables", num(b, "tables", m->ntables));
    put(b, o, "rows", num(b, "rows", rows));
    put(b, o, "plain_bytes", num(b, "plain_bytes", m->plain_bytes));
    put(b, o, "stored_bytes", num(b, "stored_bytes", m->stored_bytes));
    put(b, o, "body", base64(b, sealed_body->data, sealed_body->len));
    return o;
}

/* The writer refuses what the reader would refuse, so that a snapshot cannot
 * be committed with a manifest that restore rejects. */
static int check_writable(const sg_manifest *m, sg_error *err)
{
    if (!m->id || !sg_snapshot_id_valid(m->id))
        return sg_error_set(err, SG_E_INTERNAL, "invalid snapshot id \"%s\" in manifest",
                            m->id ? m->id : "");
    if (!m->shard || m->shard[0] == '\0')
        return sg_error_set(err, SG_E_INTERNAL, "manifest of snapshot %s names no shard", m->id);
    if (!m->started_at || !is_utc_time(m->started_at) || !m->finished_at ||
        !is_utc_time(m->finished_at))
        return sg_error_set(err, SG_E_INTERNAL,
                            "manifest of snapshot %s has invalid start or finish times", m->id);
    if (m->server_version_num < 0)
        return sg_error_set(err, SG_E_INTERNAL, "manifest of snapshot %s has server version %d",
                            m->id, m->server_version_num);
    if (m->nrecipients == 0)
        return sg_error_set(err, SG_E_INTERNAL, "manifest of snapshot %s has no recipients", m->id);
    for (size_t i = 0; i < m->nobjects; i++)
        if (!is_object_path(m->objects[i].path))
            return sg_error_set(err, SG_E_INTERNAL, "invalid object path \"%s\" in manifest",
                                m->objects[i].path);
    for (size_t i = 0; i < m->ntables; i++) {
        const sg_manifest_table *t = &m->tables[i];
        sg_digest sum;
        sg_digest_init(&sum);
        for (size_t j = 0; j < t->nchunks; j++)
            sg_digest_add(&sum, &t->chunks[j].digest);
        if (!sg_digest_equal(&sum, &t->digest))
            return sg_error_set(err, SG_E_INTERNAL,
                                "digest of table %s.%s is not the sum of its chunks' digests",
                                t->schema, t->name);
    }
    return 0;
}

typedef struct dump_sink {
    sg_writer *writer; /* NULL: append to buf */
    sg_buf *buf;
    sg_error *err;
    int rc;
} dump_sink;

static int dump_callback(const char *text, size_t len, void *data)
{
    dump_sink *sink = data;
    if (sink->writer)
        sink->rc = sg_writer_write(sink->writer, text, len, sink->err);
    else
        sink->rc = sg_buf_append(sink->buf, text, len, sink->err);
    return sink->rc < 0 ? -1 : 0;
}

/* Compact JSON holds no raw newline: jansson escapes them in strings. */
static int dump(dump_sink *sink, const json_t *json)
{
    if (json_dump_callback(json, dump_callback, sink, JSON_COMPACT) < 0)
        return sink->rc < 0 ? sink->rc : nomem(sink->err);
    return 0;
}

static int seal_body(sg_buf *out, const sg_manifest *m, const uint8_t data_key[SG_DATA_KEY_BYTES],
                     sg_error *err)
{
    builder b = {err, 0};
    json_t *body = body_json(&b, m);
    sg_writer *w = NULL;
    dump_sink sink = {NULL, NULL, err, 0};
    uint8_t ad[BODY_AD_MAX];
    size_t ad_len = body_ad(ad, m->id);
    int rc;

    if ((rc = b.rc) < 0)
        goto done;
    if (!body) {
        rc = nomem(err);
        goto done;
    }
    w = sg_buffer_writer_new(out);
    w = w ? sg_seal_writer_new(w, data_key, ad, ad_len, BODY_SEGMENT_SIZE) : NULL;
    w = w ? sg_zstd_writer_new(w, BODY_ZSTD_LEVEL, 0) : NULL;
    if (!w) {
        rc = nomem(err);
        goto done;
    }
    sink.writer = w;
    if ((rc = dump(&sink, body)) < 0)
        goto done;
    rc = sg_writer_close(w, err);
done:
    sg_writer_free(w);
    json_decref(body);
    return rc;
}

int sg_manifest_serialize(sg_buf *out, const sg_manifest *m,
                          const uint8_t data_key[SG_DATA_KEY_BYTES], const sg_secret_key *signer,
                          sg_error *err)
{
    size_t start = out->len;
    sg_buf sealed = {0};
    builder b = {err, 0};
    json_t *header = NULL;
    dump_sink sink = {NULL, out, err, 0};
    uint8_t sig[SG_SIGNATURE_BYTES];
    char sig_b64[SIGNATURE_B64_SIZE], line[64 + SIGNATURE_B64_SIZE];
    int rc;

    sg_json_init();
    if ((rc = check_writable(m, err)) < 0 || (rc = seal_body(&sealed, m, data_key, err)) < 0)
        goto done;
    header = header_json(&b, m, signer->pub.id, &sealed);
    if ((rc = b.rc) < 0)
        goto done;
    if (!header) {
        rc = nomem(err);
        goto done;
    }
    snprintf(line, sizeof(line), "%s%d\n", MAGIC, SG_MANIFEST_FORMAT);
    if ((rc = sg_buf_append(out, line, strlen(line), err)) < 0 || (rc = dump(&sink, header)) < 0 ||
        (rc = sg_buf_append(out, "\n", 1, err)) < 0)
        goto done;
    sg_sign(sig, out->data + start, out->len - start, signer);
    sodium_bin2base64(sig_b64, sizeof(sig_b64), sig, sizeof(sig), B64);
    snprintf(line, sizeof(line), "%s%s %s\n", SIGNATURE_PREFIX, signer->pub.id, sig_b64);
    rc = sg_buf_append(out, line, strlen(line), err);
done:
    if (rc < 0)
        out->len = start;
    json_decref(header);
    sg_buf_free(&sealed);
    return rc;
}

/* Reading */

/* Where in which document a JSON value sits, for error messages. */
typedef struct jctx {
    const char *part; /* "header" or "body" */
    char path[96];    /* e.g. "tables[3].chunks[0]"; empty at the top */
    sg_error *err;
} jctx;

static void jctx_enter(jctx *sub, const jctx *c, const char *key, long index)
{
    char at[24] = "";
    if (index >= 0)
        snprintf(at, sizeof(at), "[%ld]", index);
    *sub = *c;
    if (snprintf(sub->path, sizeof(sub->path), "%s%s%s%s", c->path, c->path[0] ? "." : "", key,
                 at) >= (int)sizeof(sub->path))
        strcpy(sub->path + sizeof(sub->path) - 4, "...");
}

static int field_error(const jctx *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int field_error(const jctx *c, const char *key, const char *fmt, ...)
{
    char problem[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    return sg_error_set(c->err, SG_E_FORMAT, "manifest %s field \"%s%s%s\" %s", c->part, c->path,
                        c->path[0] ? "." : "", key, problem);
}

static const char *type_name(json_type type)
{
    switch (type) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_TRUE:
    case JSON_FALSE:
        return "true or false";
    default:
        return "something else";
    }
}

/* The member `key` of obj, which must be there and of `type` (JSON_TRUE
 * stands for either boolean). */
static int member(json_t **out, const jctx *c, json_t *obj, const char *key, json_type type)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return field_error(c, key, "is missing");
    if (json_typeof(v) != type && !(type == JSON_TRUE && json_is_boolean(v)))
        return field_error(c, key, "must be %s", type_name(type));
    *out = v;
    return 0;
}

static int get_str(const char **out, const jctx *c, json_t *obj, const char *key)
{
    json_t *v = NULL;
    int rc = member(&v, c, obj, key, JSON_STRING);
    if (rc == 0)
        *out = json_string_value(v);
    return rc;
}

static int get_dup(char **out, const jctx *c, json_t *obj, const char *key)
{
    const char *s = NULL;
    int rc = get_str(&s, c, obj, key);
    if (rc == 0 && !(*out = sg_strdup(s)))
        rc = nomem(c->err);
    return rc;
}

static int get_uint(uint64_t *out, const jctx *c, json_t *obj, const char *key, uint64_t max)
{
    json_t *v = NULL;
    int rc = member(&v, c, obj, key, JSON_INTEGER);
    if (rc < 0)
        return rc;
    if (json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return field_error(c, key, "must be an integer from 0 to %" PRIu64, max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_u32(uint32_t *out, const jctx *c, json_t *obj, const char *key)
{
    uint64_t v = 0;
    int rc = get_uint(&v, c, obj, key, UINT32_MAX);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

/* Decodes standard base64 filling exactly b64[0..len), where b64[len] must
 * not be a base64 character. The alphabet is checked first because libsodium
 * 1.0.18 decodes a byte with its high bit set as the same byte without it,
 * and each value must have one encoding. */
static bool base64_decode(uint8_t *out, size_t cap, size_t *out_len, const char *b64, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
    const char *end = NULL;
    return strspn(b64, alphabet) == len &&
           sodium_base642bin(out, cap, b64, len, NULL, out_len, &end, B64) == 0 && end == b64 + len;
}

static int get_hex(uint8_t *out, size_t len, const jctx *c, json_t *obj, const char *key)
{
    const char *s = NULL, *end = NULL;
    size_t bin_len;
    int rc = get_str(&s, c, obj, key);
    if (rc < 0)
        return rc;
    if (strlen(s) != 2 * len || sodium_hex2bin(out, len, s, 2 * len, NULL, &bin_len, &end) != 0 ||
        bin_len != len)
        return field_error(c, key, "must be %zu hexadecimal digits", 2 * len);
    return 0;
}

/* Decodes base64 into out, which must be exactly `len` bytes. */
static int get_base64(uint8_t *out, size_t len, const jctx *c, json_t *obj, const char *key)
{
    const char *s = NULL;
    size_t bin_len;
    int rc = get_str(&s, c, obj, key);
    if (rc < 0)
        return rc;
    if (!base64_decode(out, len, &bin_len, s, strlen(s)) || bin_len != len)
        return field_error(c, key, "must be base64 of %zu bytes", len);
    return 0;
}

static int get_digest(sg_digest *d, const jctx *c, json_t *obj)
{
    const char *hex = NULL;
    int rc;
    sg_digest_init(d);
    if ((rc = get_uint(&d->rows, c, obj, "rows", JSON_UINT_MAX)) < 0 ||
        (rc = get_str(&hex, c, obj, "digest")) < 0)
        return rc;
    if (sg_digest_parse_hex(d, hex, NULL) < 0)
        return field_error(c, "digest", "must be %d hexadecimal digits", SG_DIGEST_HEX_LEN);
    return 0;
}

/* Iterates over array `key` of obj, whose items must be objects, calling
 * fn with a context naming each item. */
typedef int (*item_fn)(void *target, const jctx *c, json_t *item);

static int each_object(const jctx *c, json_t *obj, const char *key, item_fn fn, void *target)
{
    json_t *array, *item;
    size_t i;
    int rc;
    if ((rc = member(&array, c, obj, key, JSON_ARRAY)) < 0)
        return rc;
    json_array_foreach(array, i, item)
    {
        jctx sub;
        jctx_enter(&sub, c, key, (long)i);
        if (!json_is_object(item))
            return sg_error_set(c->err, SG_E_FORMAT, "manifest %s field \"%s\" must be an object",
                                c->part, sub.path);
        if ((rc = fn(target, &sub, item)) < 0)
            return rc;
    }
    return 0;
}

static int parse_recipient(void *target, const jctx *c, json_t *item)
{
    const char *key_id = NULL;
    uint8_t wrapped[SG_WRAPPED_KEY_BYTES];
    int rc;
    if ((rc = get_str(&key_id, c, item, "key_id")) < 0)
        return rc;
    if (!is_key_id(key_id, strlen(key_id)))
        return field_error(c, "key_id", "must be a key id (%d hexadecimal digits)", SG_KEY_ID_LEN);
    if ((rc = get_base64(wrapped, sizeof(wrapped), c, item, "wrapped")) < 0)
        return rc;
    return append_recipient(target, key_id, wrapped, c->err);
}

static int parse_object(void *target, const jctx *c, json_t *item)
{
    const char *path = NULL;
    uint64_t size;
    uint8_t sha256[32];
    int rc;
    if ((rc = get_str(&path, c, item, "path")) < 0 ||
        (rc = get_uint(&size, c, item, "size", JSON_UINT_MAX)) < 0 ||
        (rc = get_hex(sha256, sizeof(sha256), c, item, "sha256")) < 0)
        return rc;
    if (!is_object_path(path))
        return field_error(c, "path", "must be a relative path without \".\" or \"..\"");
    return sg_manifest_add_object(target, path, size, sha256, c->err);
}

static int parse_header(sg_manifest *m, json_t *root, const char *signer, sg_error *err)
{
    jctx c = {"header", "", err};
    uint64_t format = 0, version_num = 0;
    const char *signer_field = NULL;
    json_t *body = NULL;
    const char *body_b64;
    size_t body_len;
    int rc;

    if ((rc = get_uint(&format, &c, root, "format", JSON_UINT_MAX)) < 0)
        return rc;
    if (format != SG_MANIFEST_FORMAT)
        return field_error(&c, "format", "is %" PRIu64 " but the first line says %d", format,
                           SG_MANIFEST_FORMAT);
    if ((rc = get_dup(&m->tool_version, &c, root, "tool_version")) < 0 ||
        (rc = get_dup(&m->id, &c, root, "id")) < 0)
        return rc;
    if (!sg_snapshot_id_valid(m->id))
        return field_error(&c, "id", "must be a snapshot id (letters, digits and \"-\")");
    if ((rc = get_dup(&m->shard, &c, root, "shard")) < 0)
        return rc;
    if (m->shard[0] == '\0')
        return field_error(&c, "shard", "must not be empty");
    if ((rc = get_dup(&m->started_at, &c, root, "started_at")) < 0)
        return rc;
    if (!is_utc_time(m->started_at))
        return field_error(&c, "started_at", "must be a UTC time (YYYY-MM-DDTHH:MM:SSZ)");
    if ((rc = get_dup(&m->finished_at, &c, root, "finished_at")) < 0)
        return rc;
    if (!is_utc_time(m->finished_at))
        return field_error(&c, "finished_at", "must be a UTC time (YYYY-MM-DDTHH:MM:SSZ)");
    if ((rc = get_dup(&m->server_version, &c, root, "server_version")) < 0 ||
        (rc = get_uint(&version_num, &c, root, "server_version_num", INT_MAX)) < 0)
        return rc;
    m->server_version_num = (int)version_num;
    /* tags of a pipeline run: optional, absent from snapshots taken alone */
    if (json_object_get(root, "run_id")) {
        uint64_t target = 0;
        if ((rc = get_dup(&m->run_id, &c, root, "run_id")) < 0 ||
            (rc = get_uint(&target, &c, root, "target_version", INT64_MAX)) < 0)
            return rc;
        m->target_version = (int64_t)target;
    }
    if ((rc = get_str(&signer_field, &c, root, "signer")) < 0)
        return rc;
    if (!is_key_id(signer_field, strlen(signer_field)))
        return field_error(&c, "signer", "must be a key id (%d hexadecimal digits)", SG_KEY_ID_LEN);
    if (strcmp(signer_field, signer) != 0)
        return sg_error_set(err, SG_E_SIGNATURE,
                            "manifest header names signer %s but is signed by key %s", signer_field,
                            signer);
    memcpy(m->signer, signer, sizeof(m->signer));
    if ((rc = each_object(&c, root, "recipients", parse_recipient, m)) < 0)
        return rc;
    if (m->nrecipients == 0)
        return field_error(&c, "recipients", "must not be empty");
    if ((rc = each_object(&c, root, "objects", parse_object, m)) < 0 ||
        (rc = get_uint(&m->table_count, &c, root, "tables", JSON_UINT_MAX)) < 0 ||
        (rc = get_uint(&m->row_count, &c, root, "rows", JSON_UINT_MAX)) < 0 ||
        (rc = get_uint(&m->plain_bytes, &c, root, "plain_bytes", JSON_UINT_MAX)) < 0 ||
        (rc = get_uint(&m->stored_bytes, &c, root, "stored_bytes", JSON_UINT_MAX)) < 0 ||
        (rc = member(&body, &c, root, "body", JSON_STRING)) < 0)
        return rc;
    body_b64 = json_string_value(body);
    body_len = json_string_length(body);
    if ((rc = sg_buf_reserve(&m->sealed_body, body_len / 4 * 3 + 3, err)) < 0)
        return rc;
    if (!base64_decode(m->sealed_body.data, m->sealed_body.cap, &m->sealed_body.len, body_b64,
                       body_len) ||
        m->sealed_body.len == 0)
        return field_error(&c, "body", "must be non-empty base64");
    return 0;
}

/* The magic line: "shardgate-manifest N\n". Sets *header_off past it. */
static int check_magic(size_t *header_off, const char *text, size_t len, sg_error *err)
{
    size_t i = strlen(MAGIC), digits;
    unsigned long format = 0;
    if (len < i || memcmp(text, MAGIC, i) != 0)
        return sg_error_set(err, SG_E_FORMAT, "not a shardgate manifest");
    for (digits = 0; i < len && text[i] >= '0' && text[i] <= '9' && digits < 9; i++, digits++)
        format = format * 10 + (unsigned long)(text[i] - '0');
    if (digits == 0 || text[strlen(MAGIC)] == '0' || i >= len || text[i] != '\n')
        return sg_error_set(err, SG_E_FORMAT, "manifest has a malformed format line");
    if (format > SG_MANIFEST_FORMAT) {
        sg_error_set(err, SG_E_FORMAT, "manifest format %lu is newer than this shardgate supports",
                     format);
        sg_error_hint(err, "upgrade shardgate to version %s or later to read this snapshot",
                      SG_VERSION);
        return SG_E_FORMAT;
    }
    *header_off = i + 1;
    return 0;
}

/* The last line, "signature ed25519 <key id> <base64>\n", after `from`.
 * Sets *signed_len to the offset where it starts. */
static bool parse_signature_line(size_t *signed_len, char id[SG_KEY_ID_LEN + 1],
                                 uint8_t sig[SG_SIGNATURE_BYTES], const char *text, size_t len,
                                 size_t from)
{
    const char *line, *p, *end;
    size_t sig_len, prefix_len = strlen(SIGNATURE_PREFIX);
    if (len <= from || text[len - 1] != '\n')
        return false;
    end = text + len - 1;
    line = memrchr(text + from, '\n', (size_t)(end - (text + from)));
    line = line ? line + 1 : text + from;
    if ((size_t)(end - line) < prefix_len + SG_KEY_ID_LEN + 1 ||
        memcmp(line, SIGNATURE_PREFIX, prefix_len) != 0)
        return false;
    p = line + prefix_len;
    if (!is_key_id(p, SG_KEY_ID_LEN) || p[SG_KEY_ID_LEN] != ' ')
        return false;
    memcpy(id, p, SG_KEY_ID_LEN);
    id[SG_KEY_ID_LEN] = '\0';
    p += SG_KEY_ID_LEN + 1;
    if (!base64_decode(sig, SG_SIGNATURE_BYTES, &sig_len, p, (size_t)(end - p)) ||
        sig_len != SG_SIGNATURE_BYTES)
        return false;
    *signed_len = (size_t)(line - text);
    return true;
}

static int untrusted(const char *id, const sg_public_key *trusted, size_t ntrusted, sg_error *err)
{
    char ids[sizeof(err->hint) / 2] = "";
    size_t used = 0;
    sg_error_set(err, SG_E_SIGNATURE, "manifest is signed by key %s, which is not trusted", id);
    if (ntrusted == 0) {
        sg_error_hint(err, "no signer key is trusted; name the signer's public key with --trust");
        return SG_E_SIGNATURE;
    }
    for (size_t i = 0; i < ntrusted && used < sizeof(ids); i++)
        used +=
            (size_t)snprintf(ids + used, sizeof(ids) - used, "%s%s", i ? ", " : "", trusted[i].id);
    sg_error_hint(err, "trusted signer keys: %s; add the signer's public key with --trust", ids);
    return SG_E_SIGNATURE;
}

static int json_load(json_t **out, const void *data, size_t len, const char *what, sg_error *err)
{
    json_error_t jerr;
    sg_json_alloc_reset();
    if ((*out = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr)) != NULL)
        return 0;
    if (sg_json_alloc_failed())
        return nomem(err);
    sg_error_set(err, SG_E_FORMAT, "manifest %s is not valid JSON", what);
    sg_error_detail(err, "%s at character %d", jerr.text, jerr.position);
    return SG_E_FORMAT;
}

/* verify false: the signature line is parsed but not checked, for listings. */
static int parse_manifest(sg_manifest **out, const void *data, size_t len,
                          const sg_public_key *trusted, size_t ntrusted, bool verify, sg_error *err)
{
    const char *text = data;
    size_t header_off = 0, signed_len = 0, header_len = 0;
    char signer[SG_KEY_ID_LEN + 1];
    uint8_t sig[SG_SIGNATURE_BYTES];
    const sg_public_key *key = NULL;
    json_t *root = NULL;
    sg_manifest *m = NULL;
    int rc;

    *out = NULL;
    sg_json_init();
    if ((rc = check_magic(&header_off, text, len, err)) < 0)
        goto done;
    if (!parse_signature_line(&signed_len, signer, sig, text, len, header_off)) {
        rc = sg_error_set(err, SG_E_SIGNATURE, "manifest has no valid signature line");
        goto done;
    }
    for (size_t i = 0; i < ntrusted && !key; i++)
        if (strcmp(trusted[i].id, signer) == 0)
            key = &trusted[i];
    if (verify && !key) {
        rc = untrusted(signer, trusted, ntrusted, err);
        goto done;
    }
    if (verify && sg_verify_signature(sig, data, signed_len, key) != 0) {
        rc = sg_error_set(err, SG_E_SIGNATURE, "manifest signature does not verify");
        sg_error_detail(err, "the manifest was modified after it was signed");
        goto done;
    }
    /* Signed: from here on the bytes are the signer's, but still checked. */
    header_len = signed_len - header_off;
    if (header_len == 0 || memchr(text + header_off, '\n', header_len) != text + signed_len - 1) {
        rc = sg_error_set(err, SG_E_FORMAT, "manifest header is not one line");
        goto done;
    }
    if ((rc = json_load(&root, text + header_off, header_len - 1, "header", err)) < 0)
        goto done;
    if (!json_is_object(root)) {
        rc = sg_error_set(err, SG_E_FORMAT, "manifest header is not a JSON object");
        goto done;
    }
    if (!(m = sg_manifest_new())) {
        rc = nomem(err);
        goto done;
    }
    if ((rc = parse_header(m, root, signer, err)) < 0)
        goto done;
    /* Without a checked signature nothing vouches for the body's key or
     * the header's digests, so the body cannot be opened. */
    if (!verify)
        sg_buf_free(&m->sealed_body);
    *out = m;
    m = NULL;
done:
    json_decref(root);
    sg_manifest_free(m);
    return rc;
}

int sg_manifest_parse(sg_manifest **out, const void *data, size_t len, const sg_public_key *trusted,
                      size_t ntrusted, sg_error *err)
{
    return parse_manifest(out, data, len, trusted, ntrusted, true, err);
}

int sg_manifest_parse_unverified(sg_manifest **out, const void *data, size_t len, sg_error *err)
{
    return parse_manifest(out, data, len, NULL, 0, false, err);
}

static int parse_chunk(sg_manifest_chunk *chunk, const jctx *c, json_t *obj)
{
    int rc;
    memset(chunk, 0, sizeof(*chunk));
    if ((rc = get_u32(&chunk->seq, c, obj, "seq")) < 0 ||
        (rc = get_u32(&chunk->pack, c, obj, "pack")) < 0 ||
        (rc = get_uint(&chunk->offset, c, obj, "offset", JSON_UINT_MAX)) < 0 ||
        (rc = get_uint(&chunk->stored_size, c, obj, "stored_size", JSON_UINT_MAX)) < 0 ||
        (rc = get_uint(&chunk->plain_size, c, obj, "plain_size", JSON_UINT_MAX)) < 0 ||
        (rc = get_hex(chunk->sha256, sizeof(chunk->sha256), c, obj, "sha256")) < 0)
        return rc;
    return get_digest(&chunk->digest, c, obj);
}

static int parse_column(void *target, const jctx *c, json_t *item)
{
    const char *name = NULL, *type = NULL;
    int rc;
    if ((rc = get_str(&name, c, item, "name")) < 0 || (rc = get_str(&type, c, item, "type")) < 0)
        return rc;
    return sg_manifest_table_add_column(target, name, type, c->err);
}

static int parse_table_chunk(void *target, const jctx *c, json_t *item)
{
    sg_manifest_chunk chunk;
    int rc = parse_chunk(&chunk, c, item);
    return rc < 0 ? rc : sg_manifest_table_add_chunk(target, &chunk, c->err);
}

static int parse_table(void *target, const jctx *c, json_t *item)
{
    sg_manifest *m = target;
    sg_manifest_table *t;
    const char *schema = NULL, *name = NULL;
    uint32_t oid = 0;
    sg_digest sum;
    int rc;
    if ((rc = get_u32(&oid, c, item, "oid")) < 0 ||
        (rc = get_str(&schema, c, item, "schema")) < 0 ||
        (rc = get_str(&name, c, item, "name")) < 0 ||
        (rc = sg_manifest_add_table(&t, m, oid, schema, name, c->err)) < 0 ||
        (rc = each_object(c, item, "columns", parse_column, t)) < 0 ||
        (rc = get_digest(&t->digest, c, item)) < 0 ||
        (rc = each_object(c, item, "chunks", parse_table_chunk, t)) < 0)
        return rc;
    sg_digest_init(&sum);
    for (size_t i = 0; i < t->nchunks; i++)
        sg_digest_add(&sum, &t->chunks[i].digest);
    if (!sg_digest_equal(&sum, &t->digest))
        return field_error(c, "digest", "does not match the sum of the table's chunks");
    return 0;
}

static int parse_sequence(void *target, const jctx *c, json_t *item)
{
    const char *schema = NULL, *name = NULL, *value = NULL;
    json_t *is_called = NULL;
    char *end;
    long long last_value;
    int rc;
    if ((rc = get_str(&schema, c, item, "schema")) < 0 ||
        (rc = get_str(&name, c, item, "name")) < 0 ||
        (rc = get_str(&value, c, item, "last_value")) < 0 ||
        (rc = member(&is_called, c, item, "is_called", JSON_TRUE)) < 0)
        return rc;
    errno = 0;
    last_value = strtoll(value, &end, 10);
    if (!(value[0] == '-' || (value[0] >= '0' && value[0] <= '9')) || *end != '\0' ||
        errno == ERANGE)
        return field_error(c, "last_value", "must be a 64-bit integer in a string");
    return sg_manifest_add_sequence(target, schema, name, last_value, json_is_true(is_called),
                                    c->err);
}

static int parse_body(sg_manifest *m, json_t *root, sg_error *err)
{
    jctx c = {"body", "", err}, sub;
    json_t *settings = NULL, *value = NULL, *schema = NULL, *registry = NULL, *matviews = NULL;
    const char *name = NULL;
    size_t i;
    uint64_t rows = 0;
    int rc;

    if ((rc = get_dup(&m->system_identifier, &c, root, "system_identifier")) < 0 ||
        (rc = get_dup(&m->snapshot_lsn, &c, root, "snapshot_lsn")) < 0 ||
        (rc = member(&settings, &c, root, "settings", JSON_OBJECT)) < 0)
        return rc;
    jctx_enter(&sub, &c, "settings", -1);
    json_object_foreach(settings, name, value)
    {
        if (!json_is_string(value))
            return field_error(&sub, name, "must be a string");
        if ((rc = sg_manifest_add_setting(m, name, json_string_value(value), err)) < 0)
            return rc;
    }
    if ((rc = get_dup(&m->schema_fingerprint, &c, root, "schema_fingerprint")) < 0)
        return rc;
    if (!(registry = json_object_get(root, "registry_version")))
        return field_error(&c, "registry_version", "is missing");
    if (!json_is_null(registry) &&
        (rc = get_dup(&m->registry_version, &c, root, "registry_version")) < 0)
        return rc;
    if ((rc = member(&schema, &c, root, "schema", JSON_OBJECT)) < 0)
        return rc;
    jctx_enter(&sub, &c, "schema", -1);
    if ((rc = parse_chunk(&m->schema, &sub, schema)) < 0 ||
        (rc = each_object(&c, root, "tables", parse_table, m)) < 0 ||
        (rc = each_object(&c, root, "sequences", parse_sequence, m)) < 0 ||
        (rc = member(&matviews, &c, root, "refresh_matviews", JSON_ARRAY)) < 0)
        return rc;
    json_array_foreach(matviews, i, value)
    {
        if (!json_is_string(value))
            return field_error(&c, "refresh_matviews", "must hold strings");
        if ((rc = sg_manifest_add_matview(m, json_string_value(value), err)) < 0)
            return rc;
    }
    for (i = 0; i < m->ntables; i++)
        rows += m->tables[i].digest.rows;
    if (m->table_count != m->ntables || m->row_count != rows)
        return sg_error_set(err, SG_E_FORMAT,
                            "manifest header counts %" PRIu64 " tables and %" PRIu64
                            " rows but the body holds %zu tables and %" PRIu64 " rows",
                            m->table_count, m->row_count, m->ntables, rows);
    return 0;
}

static void recipient_ids(const sg_manifest *m, sg_error *err)
{
    char ids[sizeof(err->detail) / 2] = "";
    size_t used = 0;
    for (size_t i = 0; i < m->nrecipients && used < sizeof(ids); i++)
        used += (size_t)snprintf(ids + used, sizeof(ids) - used, "%s%s", i ? ", " : "",
                                 m->recipients[i].key_id);
    sg_error_detail(err, "it is encrypted to key%s %s", m->nrecipients == 1 ? "" : "s", ids);
}

int sg_manifest_open_body(sg_manifest *m, const sg_secret_key *key,
                          uint8_t data_key_out[SG_DATA_KEY_BYTES], sg_error *err)
{
    const sg_manifest_recipient *recipient = NULL;
    uint8_t data_key[SG_DATA_KEY_BYTES];
    uint8_t ad[BODY_AD_MAX];
    size_t ad_len;
    sg_buf plain = {0};
    sg_writer *w = NULL;
    json_t *root = NULL;
    int rc;

    sodium_memzero(data_key_out, SG_DATA_KEY_BYTES);
    sg_json_init();
    body_clear(m);
    if (m->sealed_body.len == 0) {
        rc = sg_error_set(err, SG_E_INTERNAL, "manifest holds no sealed body to open");
        sg_error_detail(err, "a body is kept only by sg_manifest_parse, after the signature check");
        goto done;
    }
    for (size_t i = 0; i < m->nrecipients && !recipient; i++)
        if (strcmp(m->recipients[i].key_id, key->pub.id) == 0)
            recipient = &m->recipients[i];
    if (!recipient) {
        rc = sg_error_set(err, SG_E_KEY, "snapshot %s is not encrypted to key %s", m->id,
                          key->pub.id);
        recipient_ids(m, err);
        goto done;
    }
    if ((rc = sg_key_unwrap(data_key, recipient->wrapped, key, err)) < 0)
        goto done;
    ad_len = body_ad(ad, m->id);
    w = sg_buffer_writer_new(&plain);
    w = w ? sg_unzstd_writer_new(w, 0, BODY_MAX_PLAIN) : NULL;
    w = w ? sg_unseal_writer_new(w, data_key, ad, ad_len) : NULL;
    if (!w) {
        rc = nomem(err);
        goto done;
    }
    if ((rc = sg_writer_write(w, m->sealed_body.data, m->sealed_body.len, err)) < 0 ||
        (rc = sg_writer_close(w, err)) < 0) {
        sg_error_prefix(err, "opening the manifest body of snapshot %s", m->id);
        goto done;
    }
    if ((rc = json_load(&root, plain.data, plain.len, "body", err)) < 0)
        goto done;
    if (!json_is_object(root)) {
        rc = sg_error_set(err, SG_E_FORMAT, "manifest body is not a JSON object");
        goto done;
    }
    if ((rc = parse_body(m, root, err)) < 0)
        goto done;
    m->body_loaded = true;
    memcpy(data_key_out, data_key, SG_DATA_KEY_BYTES);
done:
    if (rc < 0)
        body_clear(m);
    sodium_memzero(data_key, sizeof(data_key));
    sg_writer_free(w);
    json_decref(root);
    sg_buf_free(&plain);
    return rc;
}
