#include <check.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/manifest.h"
#include "common/mem.h"
#include "common/writer.h"

/* Keys made once in main(); Check's forked tests inherit them. */
static sg_secret_key signer_key, other_signer, alice, bob, carol;
static uint8_t data_key[SG_DATA_KEY_BYTES];

static void make_key(sg_secret_key *k)
{
    crypto_box_keypair(k->pub.box, k->box);
    crypto_sign_keypair(k->pub.sign, k->sign);
    sg_key_id(k->pub.box, k->pub.sign, k->pub.id);
}

static void set(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
    ck_assert_ptr_nonnull(*field);
}

static sg_manifest_chunk chunk_of(uint32_t seq, uint32_t pack, uint64_t offset, const char *rows)
{
    sg_manifest_chunk c = {.seq = seq, .pack = pack, .offset = offset};
    sg_digest_init(&c.digest);
    for (const char *row = rows; *row; row += strlen(row) + 1)
        sg_digest_row(&c.digest, row, strlen(row));
    c.plain_size = 1000 + seq;
    c.stored_size = 500 + seq;
    memset(c.sha256, (int)(seq * 7 + pack + 1), sizeof(c.sha256));
    return c;
}

/* The header of every test manifest; the body is added by the callers. */
static sg_manifest *header_only(const char *id)
{
    sg_manifest *m = sg_manifest_new();
    uint8_t sha[32];
    ck_assert_ptr_nonnull(m);
    set(&m->id, id);
    set(&m->shard, "shard-07");
    set(&m->tool_version, "0.1.0");
    set(&m->started_at, "2024-05-01T02:00:00Z");
    set(&m->finished_at, "2024-05-01T02:03:04.250Z");
    set(&m->server_version, "15.6");
    m->server_version_num = 150006;
    m->plain_bytes = 123456789012ULL;
    m->stored_bytes = 98765432109ULL;
    ck_assert_int_eq(sg_manifest_add_recipient(m, &alice.pub, data_key, NULL), 0);
    memset(sha, 0xab, sizeof(sha));
    ck_assert_int_eq(sg_manifest_add_object(m, "packs/0.pack", 4096, sha, NULL), 0);
    return m;
}

/* One table with one chunk: small enough to tamper with byte by byte. */
static sg_manifest *small_manifest(void)
{
    sg_manifest *m = header_only("20240501T020000Z-0badcafe");
    sg_manifest_table *t;
    sg_manifest_chunk c = chunk_of(0, 0, 1024, "1\ta\0002\tb\0003\tc\0");
    set(&m->system_identifier, "7300000000000000001");
    set(&m->snapshot_lsn, "0/1A2B3C4");
    set(&m->schema_fingerprint, "fp");
    ck_assert_int_eq(sg_manifest_add_setting(m, "TimeZone", "UTC", NULL), 0);
    m->schema = chunk_of(0, 0, 512, "");
    ck_assert_int_eq(sg_manifest_add_table(&t, m, 16384, "public", "t", NULL), 0);
    ck_assert_int_eq(sg_manifest_table_add_column(t, "id", "bigint", NULL), 0);
    ck_assert_int_eq(sg_manifest_table_add_chunk(t, &c, NULL), 0);
    t->digest = c.digest;
    return m;
}

/* Several of everything, and values at the edges of their ranges. */
static sg_manifest *full_manifest(void)
{
    sg_manifest *m = header_only("20240501T020000Z-12345678");
    uint8_t sha[32];
    char path[32];

    ck_assert_int_eq(sg_manifest_add_recipient(m, &bob.pub, data_key, NULL), 0);
    for (int i = 1; i < 5; i++) {
        memset(sha, i, sizeof(sha));
        snprintf(path, sizeof(path), "packs/%d.pack", i);
        ck_assert_int_eq(sg_manifest_add_object(m, path, UINT64_C(1) << (30 + i), sha, NULL), 0);
    }
    set(&m->system_identifier, "7300000000000000001");
    set(&m->snapshot_lsn, "0/1A2B3C4");
    set(&m->schema_fingerprint, "9f86d081884c7d659a2feaa0c55ad015");
    set(&m->registry_version, "0042");
    ck_assert_int_eq(sg_manifest_add_setting(m, "TimeZone", "UTC", NULL), 0);
    ck_assert_int_eq(sg_manifest_add_setting(m, "DateStyle", "ISO, MDY", NULL), 0);
    ck_assert_int_eq(sg_manifest_add_setting(m, "search_path", "", NULL), 0);
    m->schema = chunk_of(0, 4, 7, "");
    for (uint32_t i = 0; i < 5; i++) {
        sg_manifest_table *t;
        char name[32];
        snprintf(name, sizeof(name), "tab\"le %u", i);
        ck_assert_int_eq(sg_manifest_add_table(&t, m, 16384 + i, "sch\xc3\xa9ma", name, NULL), 0);
        ck_assert_int_eq(sg_manifest_table_add_column(t, "id", "bigint", NULL), 0);
        ck_assert_int_eq(sg_manifest_table_add_column(t, "note", "text", NULL), 0);
        ck_assert_int_eq(sg_manifest_table_add_column(t, "at", "timestamp with time zone", NULL),
                         0);
        sg_digest_init(&t->digest);
        for (uint32_t seq = 0; seq < i; seq++) {
            sg_manifest_chunk c = chunk_of(seq, seq % 4, (uint64_t)seq << 33, "x\0y\0z\0");
            ck_assert_int_eq(sg_manifest_table_add_chunk(t, &c, NULL), 0);
            sg_digest_add(&t->digest, &c.digest);
        }
    }
    ck_assert_int_eq(sg_manifest_add_sequence(m, "public", "a_seq", INT64_MIN, false, NULL), 0);
    ck_assert_int_eq(sg_manifest_add_sequence(m, "public", "b_seq", INT64_MAX, true, NULL), 0);
    ck_assert_int_eq(sg_manifest_add_sequence(m, "app", "c_seq", -1, true, NULL), 0);
    ck_assert_int_eq(sg_manifest_add_matview(m, "\"public\".\"mv\"", NULL), 0);
    ck_assert_int_eq(sg_manifest_add_matview(m, "\"app\".\"Daily Totals\"", NULL), 0);
    return m;
}

static void serialize(sg_buf *out, const sg_manifest *m)
{
    sg_error err = {0};
    int rc = sg_manifest_serialize(out, m, data_key, &signer_key, &err);
    ck_assert_msg(rc == 0, "serialize: %s", err.message);
}

static const sg_public_key *trusted(void)
{
    static sg_public_key keys[2];
    keys[0] = other_signer.pub;
    keys[1] = signer_key.pub;
    return keys;
}

static sg_manifest *parse_ok(const sg_buf *file)
{
    sg_error err = {0};
    sg_manifest *m = NULL;
    int rc = sg_manifest_parse(&m, file->data, file->len, trusted(), 2, &err);
    ck_assert_msg(rc == 0, "parse: %s", err.message);
    ck_assert_ptr_nonnull(m);
    return m;
}

static void assert_chunk_eq(const sg_manifest_chunk *a, const sg_manifest_chunk *b)
{
    ck_assert_uint_eq(a->seq, b->seq);
    ck_assert_uint_eq(a->pack, b->pack);
    ck_assert_uint_eq(a->offset, b->offset);
    ck_assert_uint_eq(a->stored_size, b->stored_size);
    ck_assert_uint_eq(a->plain_size, b->plain_size);
    ck_assert(memcmp(a->sha256, b->sha256, sizeof(a->sha256)) == 0);
    ck_assert(sg_digest_equal(&a->digest, &b->digest));
}

static void assert_body_eq(const sg_manifest *a, const sg_manifest *b)
{
    ck_assert_str_eq(a->system_identifier, b->system_identifier);
    ck_assert_str_eq(a->snapshot_lsn, b->snapshot_lsn);
    ck_assert_str_eq(a->schema_fingerprint, b->schema_fingerprint);
    if (a->registry_version)
        ck_assert_str_eq(a->registry_version, b->registry_version);
    else
        ck_assert_ptr_null(b->registry_version);
    ck_assert_uint_eq(a->nsettings, b->nsettings);
    for (size_t i = 0; i < a->nsettings; i++) {
        ck_assert_str_eq(a->settings[i].name, b->settings[i].name);
        ck_assert_str_eq(a->settings[i].value, b->settings[i].value);
    }
    assert_chunk_eq(&a->schema, &b->schema);
    ck_assert_uint_eq(a->ntables, b->ntables);
    for (size_t i = 0; i < a->ntables; i++) {
        const sg_manifest_table *ta = &a->tables[i], *tb = &b->tables[i];
        ck_assert_uint_eq(ta->oid, tb->oid);
        ck_assert_str_eq(ta->schema, tb->schema);
        ck_assert_str_eq(ta->name, tb->name);
        ck_assert(sg_digest_equal(&ta->digest, &tb->digest));
        ck_assert_uint_eq(ta->ncolumns, tb->ncolumns);
        for (size_t j = 0; j < ta->ncolumns; j++) {
            ck_assert_str_eq(ta->columns[j].name, tb->columns[j].name);
            ck_assert_str_eq(ta->columns[j].type, tb->columns[j].type);
        }
        ck_assert_uint_eq(ta->nchunks, tb->nchunks);
        for (size_t j = 0; j < ta->nchunks; j++)
            assert_chunk_eq(&ta->chunks[j], &tb->chunks[j]);
    }
    ck_assert_uint_eq(a->nsequences, b->nsequences);
    for (size_t i = 0; i < a->nsequences; i++) {
        ck_assert_str_eq(a->sequences[i].schema, b->sequences[i].schema);
        ck_assert_str_eq(a->sequences[i].name, b->sequences[i].name);
        ck_assert(a->sequences[i].last_value == b->sequences[i].last_value);
        ck_assert(a->sequences[i].is_called == b->sequences[i].is_called);
    }
    ck_assert_uint_eq(a->nrefresh_matviews, b->nrefresh_matviews);
    for (size_t i = 0; i < a->nrefresh_matviews; i++)
        ck_assert_str_eq(a->refresh_matviews[i], b->refresh_matviews[i]);
}

START_TEST(test_round_trip)
{
    sg_manifest *m = full_manifest(), *back;
    const sg_secret_key *readers[] = {&alice, &bob};
    sg_buf file = {0};
    uint64_t rows = 0;

    serialize(&file, m);
    ck_assert(memcmp(file.data, "shardgate-manifest 1\n", 21) == 0);
    for (size_t i = 0; i < m->ntables; i++)
        rows += m->tables[i].digest.rows;

    for (size_t r = 0; r < 2; r++) {
        sg_error err = {0};
        uint8_t key[SG_DATA_KEY_BYTES];
        back = parse_ok(&file);
        ck_assert(!back->body_loaded);
        ck_assert_str_eq(back->id, m->id);
        ck_assert_str_eq(back->shard, m->shard);
        ck_assert_str_eq(back->tool_version, m->tool_version);
        ck_assert_str_eq(back->started_at, m->started_at);
        ck_assert_str_eq(back->finished_at, m->finished_at);
        ck_assert_str_eq(back->server_version, m->server_version);
        ck_assert_int_eq(back->server_version_num, m->server_version_num);
        ck_assert_str_eq(back->signer, signer_key.pub.id);
        ck_assert_uint_eq(back->nrecipients, 2);
        ck_assert_str_eq(back->recipients[0].key_id, alice.pub.id);
        ck_assert_str_eq(back->recipients[1].key_id, bob.pub.id);
        ck_assert_uint_eq(back->nobjects, m->nobjects);
        for (size_t i = 0; i < m->nobjects; i++) {
            ck_assert_str_eq(back->objects[i].path, m->objects[i].path);
            ck_assert_uint_eq(back->objects[i].size, m->objects[i].size);
            ck_assert(memcmp(back->objects[i].sha256, m->objects[i].sha256, 32) == 0);
        }
        ck_assert_uint_eq(back->table_count, m->ntables);
        ck_assert_uint_eq(back->row_count, rows);
        ck_assert_uint_eq(back->plain_bytes, m->plain_bytes);
        ck_assert_uint_eq(back->stored_bytes, m->stored_bytes);

        ck_assert_msg(sg_manifest_open_body(back, readers[r], key, &err) == 0, "open: %s",
                      err.message);
        ck_assert(back->body_loaded);
        ck_assert(memcmp(key, data_key, sizeof(key)) == 0);
        assert_body_eq(m, back);
        sg_manifest_free(back);
    }
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

/* A pipeline run's tags go round; a manifest without them (a snapshot taken
 * alone, or one from before they existed) reads as untagged. */
START_TEST(test_run_tags)
{
    sg_manifest *m = full_manifest(), *back;
    sg_buf file = {0};
    ck_assert_ptr_null(m->run_id);
    ck_assert_int_eq(m->target_version, -1);
    serialize(&file, m);
    ck_assert_ptr_null(memmem(file.data, file.len, "run_id", 6));
    back = parse_ok(&file);
    ck_assert_ptr_null(back->run_id);
    ck_assert_int_eq(back->target_version, -1);
    sg_manifest_free(back);
    sg_buf_free(&file);

    ck_assert_ptr_nonnull(m->run_id = strdup("20240501T020000Z-1a2b3c4d"));
    m->target_version = 42;
    serialize(&file, m);
    back = parse_ok(&file);
    ck_assert_str_eq(back->run_id, "20240501T020000Z-1a2b3c4d");
    ck_assert_int_eq(back->target_version, 42);
    sg_manifest_free(back);
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

/* A manifest without a migration registry, tables or sequences. */
START_TEST(test_round_trip_empty_body)
{
    sg_manifest *m = header_only("x"), *back;
    sg_buf file = {0};
    sg_error err = {0};
    uint8_t key[SG_DATA_KEY_BYTES];

    set(&m->system_identifier, "1");
    set(&m->snapshot_lsn, "0/0");
    set(&m->schema_fingerprint, "");
    serialize(&file, m);
    back = parse_ok(&file);
    ck_assert_int_eq(sg_manifest_open_body(back, &alice, key, &err), 0);
    assert_body_eq(m, back);
    ck_assert_uint_eq(back->ntables, 0);
    /* Opening again replaces the body rather than adding to it. */
    ck_assert_int_eq(sg_manifest_open_body(back, &alice, key, &err), 0);
    assert_body_eq(m, back);
    sg_manifest_free(back);
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

START_TEST(test_find_object)
{
    sg_manifest *m = full_manifest();
    const sg_manifest_object *o = sg_manifest_find_object(m, "packs/3.pack");
    ck_assert_ptr_nonnull(o);
    ck_assert_uint_eq(o->size, UINT64_C(1) << 33);
    ck_assert_ptr_null(sg_manifest_find_object(m, "packs/9.pack"));
    ck_assert_ptr_null(sg_manifest_find_object(m, "packs/3"));
    sg_manifest_free(m);
}
END_TEST

START_TEST(test_untrusted_signer)
{
    sg_manifest *m = small_manifest(), *back = NULL;
    sg_buf file = {0};
    sg_error err = {0};
    char expect[128];

    serialize(&file, m);
    ck_assert_int_eq(sg_manifest_parse(&back, file.data, file.len, &other_signer.pub, 1, &err),
                     SG_E_SIGNATURE);
    ck_assert_ptr_null(back);
    snprintf(expect, sizeof(expect), "manifest is signed by key %s, which is not trusted",
             signer_key.pub.id);
    ck_assert_str_eq(err.message, expect);
    ck_assert_ptr_nonnull(strstr(err.hint, other_signer.pub.id));
    ck_assert_ptr_nonnull(strstr(err.hint, "--trust"));

    ck_assert_int_eq(sg_manifest_parse(&back, file.data, file.len, NULL, 0, &err), SG_E_SIGNATURE);
    ck_assert_str_eq(err.message, expect);
    ck_assert_ptr_nonnull(strstr(err.hint, "--trust"));
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

/* A key with the trusted signer's id but other key material. */
START_TEST(test_impostor_signer)
{
    sg_manifest *m = small_manifest(), *back = NULL;
    sg_buf file = {0};
    sg_error err = {0};
    sg_public_key impostor = other_signer.pub;

    serialize(&file, m);
    memcpy(impostor.id, signer_key.pub.id, sizeof(impostor.id));
    ck_assert_int_eq(sg_manifest_parse(&back, file.data, file.len, &impostor, 1, &err),
                     SG_E_SIGNATURE);
    ck_assert_str_eq(err.message, "manifest signature does not verify");
    ck_assert_str_eq(err.detail, "the manifest was modified after it was signed");
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

/* Listing reads headers without signer keys; such a manifest's body stays
 * closed. */
START_TEST(test_parse_unverified)
{
    sg_manifest *m = small_manifest(), *back = NULL;
    sg_buf file = {0};
    sg_error err = {0};
    uint8_t key[SG_DATA_KEY_BYTES];
    char *shard;

    serialize(&file, m);
    shard = strstr((char *)file.data, "shard-07");
    ck_assert_ptr_nonnull(shard);
    shard[7] = '8';
    ck_assert_int_eq(sg_manifest_parse_unverified(&back, file.data, file.len, &err), 0);
    ck_assert_str_eq(back->shard, "shard-08");
    ck_assert_str_eq(back->signer, signer_key.pub.id);
    ck_assert_uint_eq(back->table_count, 1);
    ck_assert_int_eq(sg_manifest_open_body(back, &alice, key, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "manifest holds no sealed body to open");
    ck_assert(!back->body_loaded);
    sg_manifest_free(back);
    back = NULL;

    ck_assert_int_eq(sg_manifest_parse_unverified(&back, "shardgate-manifest 2\n", 21, &err),
                     SG_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.message, "is newer than this shardgate supports"));
    file.len -= 2;
    ck_assert_int_eq(sg_manifest_parse_unverified(&back, file.data, file.len, &err),
                     SG_E_SIGNATURE);
    ck_assert_str_eq(err.message, "manifest has no valid signature line");
    ck_assert_ptr_null(back);
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

/* Parses and, if that succeeds, opens the body with a recipient's key. */
static int parse_and_open(const void *data, size_t len, sg_error *err)
{
    sg_manifest *m = NULL;
    uint8_t key[SG_DATA_KEY_BYTES];
    int rc = sg_manifest_parse(&m, data, len, trusted(), 2, err);
    if (rc == 0)
        rc = sg_manifest_open_body(m, &alice, key, err);
    sg_manifest_free(m);
    return rc;
}

START_TEST(test_every_byte_flipped)
{
    sg_manifest *m = small_manifest();
    sg_buf file = {0};
    static const uint8_t masks[] = {0x01, 0x20, 0x80, 0xff};

    serialize(&file, m);
    ck_assert_int_eq(parse_and_open(file.data, file.len, NULL), 0);
    for (size_t i = 0; i < file.len; i++) {
        for (size_t k = 0; k < sizeof(masks); k++) {
            sg_error err = {0};
            int rc;
            file.data[i] ^= masks[k];
            rc = parse_and_open(file.data, file.len, &err);
            file.data[i] ^= masks[k];
            ck_assert_msg(rc == SG_E_FORMAT || rc == SG_E_SIGNATURE || rc == SG_E_CRYPTO,
                          "byte %zu ^ 0x%02x: rc %d (%s)", i, masks[k], rc, err.message);
        }
    }
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

START_TEST(test_every_truncation)
{
    sg_manifest *m = small_manifest();
    sg_buf file = {0};

    serialize(&file, m);
    for (size_t len = 0; len < file.len; len++) {
        sg_error err = {0};
        int rc = parse_and_open(file.data, len, &err);
        ck_assert_msg(rc == SG_E_FORMAT || rc == SG_E_SIGNATURE, "length %zu: rc %d (%s)", len, rc,
                      err.message);
    }
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

START_TEST(test_not_a_recipient)
{
    sg_manifest *m = full_manifest(), *back;
    sg_buf file = {0};
    sg_error err = {0};
    uint8_t key[SG_DATA_KEY_BYTES];
    char expect[128];

    serialize(&file, m);
    back = parse_ok(&file);
    memset(key, 0x55, sizeof(key));
    ck_assert_int_eq(sg_manifest_open_body(back, &carol, key, &err), SG_E_KEY);
    snprintf(expect, sizeof(expect), "snapshot %s is not encrypted to key %s", m->id, carol.pub.id);
    ck_assert_str_eq(err.message, expect);
    ck_assert_ptr_nonnull(strstr(err.detail, alice.pub.id));
    ck_assert_ptr_nonnull(strstr(err.detail, bob.pub.id));
    ck_assert(!back->body_loaded);
    ck_assert_ptr_null(back->tables);
    for (size_t i = 0; i < sizeof(key); i++)
        ck_assert_uint_eq(key[i], 0);
    sg_manifest_free(back);
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

/* A recipient entry that names alice but holds a data key wrapped to carol. */
START_TEST(test_wrapped_key_does_not_open)
{
    sg_manifest *m = small_manifest(), *back;
    sg_buf file = {0};
    sg_error err = {0};
    uint8_t key[SG_DATA_KEY_BYTES];

    sg_key_wrap(m->recipients[0].wrapped, data_key, &carol.pub);
    serialize(&file, m);
    back = parse_ok(&file);
    ck_assert_int_lt(sg_manifest_open_body(back, &alice, key, &err), 0);
    ck_assert(!back->body_loaded);
    sg_manifest_free(back);
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

/* Hand-made manifests: a header JSON document, signed as the real writer
 * signs, so that the checks after the signature can be reached. */

static sg_buf sign_text(const char *magic, const char *header, const sg_secret_key *key)
{
    sg_buf out = {0};
    uint8_t sig[SG_SIGNATURE_BYTES];
    char b64[sodium_base64_ENCODED_LEN(SG_SIGNATURE_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    char line[256];

    ck_assert_int_eq(sg_buf_append(&out, magic, strlen(magic), NULL), 0);
    ck_assert_int_eq(sg_buf_append(&out, header, strlen(header), NULL), 0);
    ck_assert_int_eq(sg_buf_append(&out, "\n", 1, NULL), 0);
    sg_sign(sig, out.data, out.len, key);
    sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
    snprintf(line, sizeof(line), "signature ed25519 %s %s\n", key->pub.id, b64);
    ck_assert_int_eq(sg_buf_append(&out, line, strlen(line), NULL), 0);
    return out;
}

static sg_buf sign_json(const json_t *header, const sg_secret_key *key)
{
    char *text = json_dumps(header, JSON_COMPACT);
    sg_buf out;
    ck_assert_ptr_nonnull(text);
    out = sign_text("shardgate-manifest 1\n", text, key);
    free(text);
    return out;
}

/* The header of a real serialization of small_manifest(). */
static json_t *small_header(void)
{
    sg_manifest *m = small_manifest();
    sg_buf file = {0};
    const char *start, *end;
    json_t *header;

    serialize(&file, m);
    start = (const char *)memchr(file.data, '\n', file.len) + 1;
    end = memchr(start, '\n', file.len - (size_t)(start - (const char *)file.data));
    header = json_loadb(start, (size_t)(end - start), 0, NULL);
    ck_assert_ptr_nonnull(header);
    sg_manifest_free(m);
    sg_buf_free(&file);
    return header;
}

/* Follows a path like "tables.0.chunks.1" through objects and arrays. */
static json_t *walk(json_t *root, const char *path, const char **last)
{
    char buf[128], *save = NULL, *part, *next;
    json_t *node = root;
    snprintf(buf, sizeof(buf), "%s", path);
    part = strtok_r(buf, ".", &save);
    while ((next = strtok_r(NULL, ".", &save)) != NULL) {
        node = json_is_array(node) ? json_array_get(node, strtoul(part, NULL, 10))
                                   : json_object_get(node, part);
        ck_assert_msg(node != NULL, "no %s in %s", part, path);
        part = next;
    }
    *last = path + (part - buf);
    return node;
}

/* Removes or replaces (value != NULL, stolen) the member at path. */
static void edit(json_t *root, const char *path, json_t *value)
{
    const char *key;
    json_t *parent = walk(root, path, &key);
    if (json_is_array(parent)) {
        size_t index = strtoul(key, NULL, 10);
        ck_assert_int_eq(
            value ? json_array_set_new(parent, index, value) : json_array_remove(parent, index), 0);
    } else {
        ck_assert_int_eq(
            value ? json_object_set_new(parent, key, value) : json_object_del(parent, key), 0);
    }
}

static void assert_parse_fails(const sg_buf *file, int code, const char *needle)
{
    sg_manifest *m = NULL;
    sg_error err = {0};
    ck_assert_int_eq(sg_manifest_parse(&m, file->data, file->len, trusted(), 2, &err), code);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.message, needle) != NULL, "\"%s\" not in \"%s\"", needle, err.message);
}

typedef struct field_case {
    const char *path;    /* where to edit, dotted */
    const char *display; /* how the error names it */
} field_case;

static const field_case header_fields[] = {
    {"format", "\"format\""},
    {"tool_version", "\"tool_version\""},
    {"id", "\"id\""},
    {"shard", "\"shard\""},
    {"started_at", "\"started_at\""},
    {"finished_at", "\"finished_at\""},
    {"server_version", "\"server_version\""},
    {"server_version_num", "\"server_version_num\""},
    {"signer", "\"signer\""},
    {"recipients", "\"recipients\""},
    {"recipients.0.key_id", "\"recipients[0].key_id\""},
    {"recipients.0.wrapped", "\"recipients[0].wrapped\""},
    {"objects", "\"objects\""},
    {"objects.0.path", "\"objects[0].path\""},
    {"objects.0.size", "\"objects[0].size\""},
    {"objects.0.sha256", "\"objects[0].sha256\""},
    {"tables", "\"tables\""},
    {"rows", "\"rows\""},
    {"plain_bytes", "\"plain_bytes\""},
    {"stored_bytes", "\"stored_bytes\""},
    {"body", "\"body\""},
};

START_TEST(test_header_field_missing)
{
    const field_case *f = &header_fields[_i];
    json_t *header = small_header();
    sg_buf file;
    char needle[128];

    edit(header, f->path, NULL);
    file = sign_json(header, &signer_key);
    snprintf(needle, sizeof(needle), "manifest header field %s is missing", f->display);
    assert_parse_fails(&file, SG_E_FORMAT, needle);
    json_decref(header);
    sg_buf_free(&file);
}
END_TEST

/* A real number is the wrong type for every field. */
START_TEST(test_header_field_wrong_type)
{
    const field_case *f = &header_fields[_i];
    json_t *header = small_header();
    sg_buf file;
    char needle[128];

    edit(header, f->path, json_real(1.5));
    file = sign_json(header, &signer_key);
    snprintf(needle, sizeof(needle), "manifest header field %s must be", f->display);
    assert_parse_fails(&file, SG_E_FORMAT, needle);
    json_decref(header);
    sg_buf_free(&file);
}
END_TEST

typedef struct value_case {
    const char *path;
    const char *json; /* the bad value */
    const char *message;
} value_case;

static const value_case header_values[] = {
    {"format", "2", "manifest header field \"format\" is 2 but the first line says 1"},
    {"id", "\"../etc\"", "manifest header field \"id\" must be a snapshot id"},
    {"id", "\"\"", "manifest header field \"id\" must be a snapshot id"},
    {"shard", "\"\"", "manifest header field \"shard\" must not be empty"},
    {"started_at", "\"2024-05-01 02:00:00\"", "manifest header field \"started_at\" must be a UTC"},
    {"finished_at", "\"2024-05-01T02:00:00+02\"", "field \"finished_at\" must be a UTC time"},
    {"finished_at", "\"2024-05-01T02:00:00.Z\"", "field \"finished_at\" must be a UTC time"},
    {"server_version_num", "-1", "field \"server_version_num\" must be an integer from 0"},
    {"server_version_num", "2147483648", "field \"server_version_num\" must be an integer from 0"},
    {"signer", "\"ABCDEF0123456789\"", "field \"signer\" must be a key id"},
    {"recipients", "[]", "field \"recipients\" must not be empty"},
    {"recipients", "[1]", "field \"recipients[0]\" must be an object"},
    {"recipients.0.key_id", "\"0123\"", "field \"recipients[0].key_id\" must be a key id"},
    {"recipients.0.wrapped", "\"AAAA\"", "field \"recipients[0].wrapped\" must be base64 of 80"},
    {"recipients.0.wrapped", "\"!!\"", "field \"recipients[0].wrapped\" must be base64 of 80"},
    {"objects", "[\"x\"]", "field \"objects[0]\" must be an object"},
    {"objects.0.path", "\"../x\"", "field \"objects[0].path\" must be a relative path"},
    {"objects.0.path", "\"/packs/0.pack\"", "field \"objects[0].path\" must be a relative path"},
    {"objects.0.path", "\"packs//0.pack\"", "field \"objects[0].path\" must be a relative path"},
    {"objects.0.path", "\"packs/./0\"", "field \"objects[0].path\" must be a relative path"},
    {"objects.0.path", "\"\"", "field \"objects[0].path\" must be a relative path"},
    {"objects.0.size", "-5", "field \"objects[0].size\" must be an integer from 0"},
    {"objects.0.sha256", "\"abcd\"", "field \"objects[0].sha256\" must be 64 hexadecimal"},
    {"tables", "-1", "field \"tables\" must be an integer from 0"},
    {"body", "\"\"", "field \"body\" must be non-empty base64"},
    {"body", "\"@@@@\"", "field \"body\" must be non-empty base64"},
};

START_TEST(test_header_field_bad_value)
{
    const value_case *v = &header_values[_i];
    json_t *header = small_header(), *value = json_loads(v->json, JSON_DECODE_ANY, NULL);
    sg_buf file;

    ck_assert_ptr_nonnull(value);
    edit(header, v->path, value);
    file = sign_json(header, &signer_key);
    assert_parse_fails(&file, SG_E_FORMAT, v->message);
    json_decref(header);
    sg_buf_free(&file);
}
END_TEST

START_TEST(test_header_not_an_object)
{
    sg_buf file = sign_text("shardgate-manifest 1\n", "[1,2]", &signer_key);
    assert_parse_fails(&file, SG_E_FORMAT, "manifest header is not a JSON object");
    sg_buf_free(&file);
    file = sign_text("shardgate-manifest 1\n", "{\"format\":1", &signer_key);
    assert_parse_fails(&file, SG_E_FORMAT, "manifest header is not valid JSON");
    sg_buf_free(&file);
    file = sign_text("shardgate-manifest 1\n", "{\"a\":1,\"a\":2}", &signer_key);
    assert_parse_fails(&file, SG_E_FORMAT, "manifest header is not valid JSON");
    sg_buf_free(&file);
    file = sign_text("shardgate-manifest 1\n", "{\n}", &signer_key);
    assert_parse_fails(&file, SG_E_FORMAT, "manifest header is not one line");
    sg_buf_free(&file);
    file = sign_text("shardgate-manifest 1\n", "", &signer_key);
    assert_parse_fails(&file, SG_E_FORMAT, "manifest header is not valid JSON");
    sg_buf_free(&file);
}
END_TEST

/* The header must name the key that signed it. */
START_TEST(test_header_signer_mismatch)
{
    json_t *header = small_header();
    sg_buf file;
    edit(header, "signer", json_string(other_signer.pub.id));
    file = sign_json(header, &signer_key);
    assert_parse_fails(&file, SG_E_SIGNATURE, "manifest header names signer");
    json_decref(header);
    sg_buf_free(&file);
}
END_TEST

/* Unknown fields are skipped, so additive changes stay readable. */
START_TEST(test_header_unknown_field)
{
    json_t *header = small_header();
    sg_buf file;
    sg_manifest *m;
    edit(header, "comment", json_string("added by a later version"));
    file = sign_json(header, &signer_key);
    m = parse_ok(&file);
    ck_assert_str_eq(m->shard, "shard-07");
    sg_manifest_free(m);
    json_decref(header);
    sg_buf_free(&file);
}
END_TEST

START_TEST(test_magic_line)
{
    static const struct {
        const char *magic;
        const char *message;
    } cases[] = {
        {"", "not a shardgate manifest"},
        {"PK\003\004", "not a shardgate manifest"},
        {"shardgate-manifest", "not a shardgate manifest"},
        {"shardgate-journal 1\n", "not a shardgate manifest"},
        {"shardgate-manifest \n", "manifest has a malformed format line"},
        {"shardgate-manifest 0\n", "manifest has a malformed format line"},
        {"shardgate-manifest 01\n", "manifest has a malformed format line"},
        {"shardgate-manifest 1 \n", "manifest has a malformed format line"},
        {"shardgate-manifest 1", "manifest has a malformed format line"},
        {"shardgate-manifest 1234567890\n", "manifest has a malformed format line"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sg_manifest *m = NULL;
        sg_error err = {0};
        ck_assert_int_eq(
            sg_manifest_parse(&m, cases[i].magic, strlen(cases[i].magic), trusted(), 2, &err),
            SG_E_FORMAT);
        ck_assert_str_eq(err.message, cases[i].message);
    }
}
END_TEST

/* A newer format is refused before its signature is looked at. */
START_TEST(test_newer_format)
{
    static const char text[] = "shardgate-manifest 2\n{\"whatever\":true}\n";
    sg_buf file = sign_text("shardgate-manifest 17\n", "{}", &carol);
    sg_manifest *m = NULL;
    sg_error err = {0};

    ck_assert_int_eq(sg_manifest_parse(&m, text, strlen(text), trusted(), 2, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "manifest format 2 is newer than this shardgate supports");
    ck_assert_ptr_nonnull(strstr(err.hint, "upgrade shardgate"));
    ck_assert_int_eq(sg_manifest_parse(&m, file.data, file.len, trusted(), 2, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "manifest format 17 is newer than this shardgate supports");
    ck_assert_ptr_null(m);
    sg_buf_free(&file);
}
END_TEST

START_TEST(test_signature_line)
{
    static const char *const lines[] = {
        "",
        "signature ed25519 \n",
        "signature rsa 0123456789abcdef AAAA\n",
        "signature ed25519 0123456789abcdef\n",
        "signature ed25519 0123456789ABCDEF AAAA\n",
        "signature ed25519 0123456789abcdef AAAA\n",
        "signature ed25519 0123456789abcdef  AAAA\n",
    };
    sg_manifest *m = small_manifest();
    sg_buf file = {0};
    const char *sig;

    serialize(&file, m);
    sig = strstr((const char *)file.data, "\nsignature ") + 1;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        sg_buf bad = {0};
        ck_assert_int_eq(sg_buf_append(&bad, file.data, (size_t)(sig - (char *)file.data), NULL),
                         0);
        ck_assert_int_eq(sg_buf_append(&bad, lines[i], strlen(lines[i]), NULL), 0);
        assert_parse_fails(&bad, SG_E_SIGNATURE, "manifest has no valid signature line");
        sg_buf_free(&bad);
    }
    /* Anything after the signature line, even one empty line. */
    ck_assert_int_eq(sg_buf_append(&file, "\n", 1, NULL), 0);
    assert_parse_fails(&file, SG_E_SIGNATURE, "manifest has no valid signature line");
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

/* Hand-made bodies, sealed as the real writer seals them. */

static const char good_body[] =
    "{\"system_identifier\":\"7300000000000000001\",\"snapshot_lsn\":\"0/1A2B3C4\","
    "\"settings\":{\"TimeZone\":\"UTC\"},\"schema_fingerprint\":\"fp\",\"registry_version\":null,"
    "\"schema\":{\"seq\":0,\"pack\":0,\"offset\":512,\"stored_size\":500,\"plain_size\":1000,"
    "\"sha256\":\"5555555555555555555555555555555555555555555555555555555555555555\",\"rows\":0,"
    "\"digest\":\"00000000000000000000000000000000\"},"
    "\"tables\":[{\"oid\":16384,\"schema\":\"public\",\"name\":\"t\","
    "\"columns\":[{\"name\":\"id\",\"type\":\"bigint\"}],\"rows\":3,"
    "\"digest\":\"0000000000000000000000000000000a\",\"chunks\":[{\"seq\":0,\"pack\":0,"
    "\"offset\":1024,\"stored_size\":500,\"plain_size\":1000,"
    "\"sha256\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"rows\":3,"
    "\"digest\":\"0000000000000000000000000000000a\"}]}],"
    "\"sequences\":[{\"schema\":\"public\",\"name\":\"t_id_seq\",\"last_value\":\"3\","
    "\"is_called\":true}],\"refresh_matviews\":[\"\\\"public\\\".\\\"mv\\\"\"]}";

static char *seal_base64(const void *plain, size_t len, const char *id)
{
    uint8_t ad[128];
    size_t ad_len = sizeof("shardgate manifest body") + strlen(id);
    sg_buf sealed = {0};
    sg_error err = {0};
    sg_writer *w;
    char *b64;

    memcpy(ad, "shardgate manifest body", sizeof("shardgate manifest body"));
    memcpy(ad + sizeof("shardgate manifest body"), id, strlen(id));
    w = sg_zstd_writer_new(
        sg_seal_writer_new(sg_buffer_writer_new(&sealed), data_key, ad, ad_len, 64 * 1024), 3, 0);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(sg_writer_write(w, plain, len, &err), 0);
    ck_assert_int_eq(sg_writer_close(w, &err), 0);
    sg_writer_free(w);
    b64 = malloc(sodium_base64_ENCODED_LEN(sealed.len, sodium_base64_VARIANT_ORIGINAL));
    ck_assert_ptr_nonnull(b64);
    sodium_bin2base64(b64, sodium_base64_ENCODED_LEN(sealed.len, sodium_base64_VARIANT_ORIGINAL),
                      sealed.data, sealed.len, sodium_base64_VARIANT_ORIGINAL);
    sg_buf_free(&sealed);
    return b64;
}

/* Signs small_header() around the given body and opens it as alice. */
static int open_hand_body(const void *plain, size_t len, sg_error *err)
{
    json_t *header = small_header();
    char *b64 = seal_base64(plain, len, json_string_value(json_object_get(header, "id")));
    sg_buf file;
    int rc;

    edit(header, "body", json_string(b64));
    file = sign_json(header, &signer_key);
    rc = parse_and_open(file.data, file.len, err);
    json_decref(header);
    free(b64);
    sg_buf_free(&file);
    return rc;
}

static int open_edited_body(const char *path, json_t *value, sg_error *err)
{
    json_t *body = json_loads(good_body, 0, NULL);
    char *text;
    int rc;
    ck_assert_ptr_nonnull(body);
    edit(body, path, value);
    text = json_dumps(body, JSON_COMPACT);
    rc = open_hand_body(text, strlen(text), err);
    free(text);
    json_decref(body);
    return rc;
}

START_TEST(test_hand_body_opens)
{
    sg_error err = {0};
    ck_assert_msg(open_hand_body(good_body, strlen(good_body), &err) == 0, "%s", err.message);
}
END_TEST

static const field_case body_fields[] = {
    {"system_identifier", "\"system_identifier\""},
    {"snapshot_lsn", "\"snapshot_lsn\""},
    {"settings", "\"settings\""},
    {"schema_fingerprint", "\"schema_fingerprint\""},
    {"registry_version", "\"registry_version\""},
    {"schema", "\"schema\""},
    {"schema.seq", "\"schema.seq\""},
    {"schema.pack", "\"schema.pack\""},
    {"schema.offset", "\"schema.offset\""},
    {"schema.stored_size", "\"schema.stored_size\""},
    {"schema.plain_size", "\"schema.plain_size\""},
    {"schema.sha256", "\"schema.sha256\""},
    {"schema.rows", "\"schema.rows\""},
    {"schema.digest", "\"schema.digest\""},
    {"tables", "\"tables\""},
    {"tables.0.oid", "\"tables[0].oid\""},
    {"tables.0.schema", "\"tables[0].schema\""},
    {"tables.0.name", "\"tables[0].name\""},
    {"tables.0.columns", "\"tables[0].columns\""},
    {"tables.0.columns.0.name", "\"tables[0].columns[0].name\""},
    {"tables.0.columns.0.type", "\"tables[0].columns[0].type\""},
    {"tables.0.rows", "\"tables[0].rows\""},
    {"tables.0.digest", "\"tables[0].digest\""},
    {"tables.0.chunks", "\"tables[0].chunks\""},
    {"tables.0.chunks.0.seq", "\"tables[0].chunks[0].seq\""},
    {"tables.0.chunks.0.pack", "\"tables[0].chunks[0].pack\""},
    {"tables.0.chunks.0.offset", "\"tables[0].chunks[0].offset\""},
    {"tables.0.chunks.0.stored_size", "\"tables[0].chunks[0].stored_size\""},
    {"tables.0.chunks.0.plain_size", "\"tables[0].chunks[0].plain_size\""},
    {"tables.0.chunks.0.sha256", "\"tables[0].chunks[0].sha256\""},
    {"tables.0.chunks.0.rows", "\"tables[0].chunks[0].rows\""},
    {"tables.0.chunks.0.digest", "\"tables[0].chunks[0].digest\""},
    {"sequences", "\"sequences\""},
    {"sequences.0.schema", "\"sequences[0].schema\""},
    {"sequences.0.name", "\"sequences[0].name\""},
    {"sequences.0.last_value", "\"sequences[0].last_value\""},
    {"sequences.0.is_called", "\"sequences[0].is_called\""},
    {"refresh_matviews", "\"refresh_matviews\""},
};

START_TEST(test_body_field_missing)
{
    const field_case *f = &body_fields[_i];
    sg_error err = {0};
    char needle[128];
    snprintf(needle, sizeof(needle), "manifest body field %s is missing", f->display);
    ck_assert_int_eq(open_edited_body(f->path, NULL, &err), SG_E_FORMAT);
    ck_assert_msg(strstr(err.message, needle) != NULL, "\"%s\" not in \"%s\"", needle, err.message);
}
END_TEST

START_TEST(test_body_field_wrong_type)
{
    const field_case *f = &body_fields[_i];
    sg_error err = {0};
    char needle[128];
    snprintf(needle, sizeof(needle), "manifest body field %s must be", f->display);
    ck_assert_int_eq(open_edited_body(f->path, json_real(1.5), &err), SG_E_FORMAT);
    ck_assert_msg(strstr(err.message, needle) != NULL, "\"%s\" not in \"%s\"", needle, err.message);
}
END_TEST

static const value_case body_values[] = {
    {"settings.TimeZone", "1", "manifest body field \"settings.TimeZone\" must be a string"},
    {"tables.0", "[]", "manifest body field \"tables[0]\" must be an object"},
    {"tables.0.oid", "4294967296", "field \"tables[0].oid\" must be an integer from 0 to"},
    {"tables.0.digest", "\"0000000000000000000000000000000b\"",
     "field \"tables[0].digest\" does not match the sum of the table's chunks"},
    {"tables.0.rows", "4", "field \"tables[0].digest\" does not match the sum"},
    {"tables.0.chunks.0.digest", "\"0000000000000000000000000000000A\"",
     "field \"tables[0].chunks[0].digest\" must be 32 hexadecimal digits"},
    {"tables.0.chunks.0.pack", "-1", "field \"tables[0].chunks[0].pack\" must be an integer"},
    {"tables.0.chunks.0.sha256", "\"abc\"",
     "field \"tables[0].chunks[0].sha256\" must be 64 hexadecimal digits"},
    {"sequences.0.last_value", "\"9223372036854775808\"",
     "field \"sequences[0].last_value\" must be a 64-bit integer"},
    {"sequences.0.last_value", "\" 3\"", "field \"sequences[0].last_value\" must be a 64-bit"},
    {"sequences.0.last_value", "\"3x\"", "field \"sequences[0].last_value\" must be a 64-bit"},
    {"sequences.0.last_value", "\"\"", "field \"sequences[0].last_value\" must be a 64-bit"},
    {"sequences.0.is_called", "\"true\"", "field \"sequences[0].is_called\" must be true or"},
    {"refresh_matviews.0", "7", "field \"refresh_matviews\" must hold strings"},
};

START_TEST(test_body_field_bad_value)
{
    const value_case *v = &body_values[_i];
    json_t *value = json_loads(v->json, JSON_DECODE_ANY, NULL);
    sg_error err = {0};
    ck_assert_ptr_nonnull(value);
    ck_assert_int_eq(open_edited_body(v->path, value, &err), SG_E_FORMAT);
    ck_assert_msg(strstr(err.message, v->message) != NULL, "\"%s\" not in \"%s\"", v->message,
                  err.message);
}
END_TEST

START_TEST(test_body_not_json)
{
    static const char not_json[] = "{\"system_identifier\":";
    sg_error err = {0};
    ck_assert_int_eq(open_hand_body(not_json, strlen(not_json), &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "manifest body is not valid JSON");
    ck_assert_int_eq(open_hand_body("[]", 2, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "manifest body is not a JSON object");
}
END_TEST

/* The header's summary must agree with the body it vouches for. */
START_TEST(test_body_counts_disagree)
{
    json_t *header = small_header();
    sg_buf file;
    sg_error err = {0};

    edit(header, "rows", json_integer(4));
    file = sign_json(header, &signer_key);
    ck_assert_int_eq(parse_and_open(file.data, file.len, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "manifest header counts 1 tables and 4 rows but the body holds "
                                  "1 tables and 3 rows");
    json_decref(header);
    sg_buf_free(&file);
}
END_TEST

/* A body sealed for one snapshot does not open in another's manifest. */
START_TEST(test_body_bound_to_snapshot_id)
{
    json_t *header = small_header();
    sg_buf file;
    sg_error err = {0};
    int rc;

    edit(header, "id", json_string("20240501T020000Z-00000000"));
    file = sign_json(header, &signer_key);
    rc = parse_and_open(file.data, file.len, &err);
    ck_assert_msg(rc == SG_E_CRYPTO || rc == SG_E_CORRUPT, "rc %d (%s)", rc, err.message);
    ck_assert_ptr_nonnull(strstr(err.message, "20240501T020000Z-00000000"));
    json_decref(header);
    sg_buf_free(&file);
}
END_TEST

/* A signed manifest whose sealed body was damaged before signing. */
START_TEST(test_body_damaged)
{
    json_t *header = small_header();
    const char *b64 = json_string_value(json_object_get(header, "body"));
    uint8_t sealed[4096];
    size_t len;
    char out[8192];
    sg_error err = {0};
    sg_buf file;
    int rc;

    ck_assert_int_eq(sodium_base642bin(sealed, sizeof(sealed), b64, strlen(b64), NULL, &len, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    sealed[len / 2] ^= 1;
    sodium_bin2base64(out, sizeof(out), sealed, len, sodium_base64_VARIANT_ORIGINAL);
    edit(header, "body", json_string(out));
    file = sign_json(header, &signer_key);
    rc = parse_and_open(file.data, file.len, &err);
    ck_assert_msg(rc == SG_E_CRYPTO || rc == SG_E_CORRUPT, "rc %d (%s)", rc, err.message);
    json_decref(header);
    sg_buf_free(&file);
}
END_TEST

START_TEST(test_serialize_refuses)
{
    sg_manifest *m;
    sg_buf out = {0};
    sg_error err = {0};

    ck_assert_int_eq(sg_buf_append(&out, "keep", 4, NULL), 0);

    m = small_manifest();
    set(&m->id, "not/an/id");
    ck_assert_int_eq(sg_manifest_serialize(&out, m, data_key, &signer_key, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "invalid snapshot id \"not/an/id\" in manifest");
    sg_manifest_free(m);

    m = small_manifest();
    set(&m->started_at, "yesterday");
    ck_assert_int_eq(sg_manifest_serialize(&out, m, data_key, &signer_key, &err), SG_E_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err.message, "invalid start or finish times"));
    sg_manifest_free(m);

    m = small_manifest();
    m->nrecipients = 0;
    ck_assert_int_eq(sg_manifest_serialize(&out, m, data_key, &signer_key, &err), SG_E_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err.message, "has no recipients"));
    sg_manifest_free(m);

    m = small_manifest();
    m->tables[0].digest.rows++;
    ck_assert_int_eq(sg_manifest_serialize(&out, m, data_key, &signer_key, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "digest of table public.t is not the sum of its chunks' digests");
    sg_manifest_free(m);

    m = small_manifest();
    set(&m->objects[0].path, "../escape");
    ck_assert_int_eq(sg_manifest_serialize(&out, m, data_key, &signer_key, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "invalid object path \"../escape\" in manifest");
    sg_manifest_free(m);

    m = small_manifest();
    free(m->snapshot_lsn);
    m->snapshot_lsn = NULL;
    ck_assert_int_eq(sg_manifest_serialize(&out, m, data_key, &signer_key, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "manifest field \"snapshot_lsn\" is not set");
    sg_manifest_free(m);

    m = small_manifest();
    set(&m->tables[0].name, "bad \xff name");
    ck_assert_int_eq(sg_manifest_serialize(&out, m, data_key, &signer_key, &err), SG_E_FORMAT);
    ck_assert_str_eq(err.message, "manifest field \"tables.name\" is not valid UTF-8");
    sg_manifest_free(m);

    m = small_manifest();
    ck_assert_int_eq(sg_manifest_add_setting(m, "TimeZone", "UTC", NULL), 0);
    ck_assert_int_eq(sg_manifest_serialize(&out, m, data_key, &signer_key, &err), SG_E_INTERNAL);
    ck_assert_str_eq(err.message, "setting \"TimeZone\" is in the manifest twice");
    sg_manifest_free(m);

    m = small_manifest();
    m->plain_bytes = UINT64_MAX;
    ck_assert_int_eq(sg_manifest_serialize(&out, m, data_key, &signer_key, &err), SG_E_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err.message, "\"plain_bytes\" is too large"));
    sg_manifest_free(m);

    /* Nothing was left behind in out by any of them. */
    ck_assert_uint_eq(out.len, 4);
    sg_buf_free(&out);
}
END_TEST

START_TEST(test_snapshot_id)
{
    char a[SG_SNAPSHOT_ID_MAX], b[SG_SNAPSHOT_ID_MAX], long_id[SG_SNAPSHOT_ID_MAX + 1];
    sg_error err = {0};

    ck_assert_int_eq(sg_snapshot_id_new(a, &err), 0);
    ck_assert_int_eq(sg_snapshot_id_new(b, &err), 0);
    ck_assert_uint_eq(strlen(a), 25);
    ck_assert_str_ne(a, b);
    ck_assert(sg_snapshot_id_valid(a));
    for (int i = 0; i < 25; i++) {
        const char *shape = "ddddddddTddddddZ-hhhhhhhh";
        if (shape[i] == 'd')
            ck_assert(a[i] >= '0' && a[i] <= '9');
        else if (shape[i] == 'h')
            ck_assert(strchr("0123456789abcdef", a[i]) != NULL);
        else
            ck_assert_int_eq(a[i], shape[i]);
    }

    ck_assert(sg_snapshot_id_valid("nightly-2024-05-01-A"));
    ck_assert(!sg_snapshot_id_valid(""));
    ck_assert(!sg_snapshot_id_valid("a/b"));
    ck_assert(!sg_snapshot_id_valid(".."));
    ck_assert(!sg_snapshot_id_valid("a b"));
    ck_assert(!sg_snapshot_id_valid("snap_1"));
    memset(long_id, 'a', SG_SNAPSHOT_ID_MAX);
    long_id[SG_SNAPSHOT_ID_MAX] = '\0';
    ck_assert(!sg_snapshot_id_valid(long_id));
    long_id[SG_SNAPSHOT_ID_MAX - 1] = '\0';
    ck_assert(sg_snapshot_id_valid(long_id));
}
END_TEST

/* Every allocation in turn fails: each call fails cleanly with SG_E_NOMEM
 * (the sanitizer reports any leak) until there are enough to succeed. */
START_TEST(test_allocation_failure)
{
    sg_manifest *m = full_manifest(), *back = NULL;
    sg_buf file = {0}, out = {0};
    uint8_t key[SG_DATA_KEY_BYTES];
    long n;
    int rc;

    serialize(&file, m);
    for (n = 0;; n++) {
        sg_error err = {0};
        sg_mem_fail_after(n);
        rc = sg_manifest_serialize(&out, m, data_key, &signer_key, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_msg(rc == SG_E_NOMEM, "serialize, %ld allocations: %d %s", n, rc, err.message);
        ck_assert_uint_eq(out.len, 0);
    }
    ck_assert_int_gt(n, 10);
    sg_buf_free(&out);

    for (n = 0;; n++) {
        sg_error err = {0};
        sg_mem_fail_after(n);
        rc = sg_manifest_parse(&back, file.data, file.len, trusted(), 2, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_msg(rc == SG_E_NOMEM, "parse, %ld allocations: %d %s", n, rc, err.message);
        ck_assert_ptr_null(back);
    }
    ck_assert_int_gt(n, 10);

    for (n = 0;; n++) {
        sg_error err = {0};
        sg_mem_fail_after(n);
        rc = sg_manifest_open_body(back, &bob, key, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_msg(rc == SG_E_NOMEM, "open, %ld allocations: %d %s", n, rc, err.message);
        ck_assert(!back->body_loaded);
    }
    ck_assert_int_gt(n, 10);
    assert_body_eq(m, back);

    sg_manifest_free(back);
    sg_manifest_free(m);
    sg_buf_free(&file);
}
END_TEST

START_TEST(test_builders_allocation_failure)
{
    sg_manifest *m = sg_manifest_new();
    sg_manifest_table *t = NULL;
    sg_error err = {0};
    ck_assert_ptr_nonnull(m);

    sg_mem_fail_after(0);
    ck_assert_int_eq(sg_manifest_add_table(&t, m, 1, "s", "t", &err), SG_E_NOMEM);
    sg_mem_fail_after(1);
    ck_assert_int_eq(sg_manifest_add_table(&t, m, 1, "s", "t", &err), SG_E_NOMEM);
    sg_mem_fail_after(2);
    ck_assert_int_eq(sg_manifest_add_sequence(m, "s", "q", 1, true, &err), SG_E_NOMEM);
    sg_mem_fail_after(1);
    ck_assert_int_eq(sg_manifest_add_object(m, "p", 1, (const uint8_t[32]){0}, &err), SG_E_NOMEM);
    sg_mem_fail_reset();
    ck_assert_str_eq(err.message, "out of memory holding a manifest");
    /* Failed appends leave nothing half-made. */
    ck_assert_uint_eq(m->ntables, 0);
    ck_assert_uint_eq(m->nsequences, 0);
    ck_assert_uint_eq(m->nobjects, 0);
    ck_assert_int_eq(sg_manifest_add_table(&t, m, 1, "s", "t", &err), 0);
    ck_assert_str_eq(m->tables[0].name, "t");
    sg_manifest_free(m);
    sg_manifest_free(NULL);
}
END_TEST

/* Arrays grow past several doublings and keep every element. */
START_TEST(test_builders_grow)
{
    sg_manifest *m = sg_manifest_new();
    sg_manifest_table *t;
    sg_error err = {0};
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(sg_manifest_add_table(&t, m, 1, "s", "t", &err), 0);
    for (uint32_t i = 0; i < 1000; i++) {
        sg_manifest_chunk c = {.seq = i};
        ck_assert_int_eq(sg_manifest_table_add_chunk(t, &c, &err), 0);
    }
    ck_assert_uint_eq(t->nchunks, 1000);
    for (uint32_t i = 0; i < 1000; i++)
        ck_assert_uint_eq(t->chunks[i].seq, i);
    sg_manifest_free(m);
}
END_TEST

static Suite *manifest_suite(void)
{
    Suite *s = suite_create("manifest");
    TCase *tc;

    tc = tcase_create("round_trip");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_round_trip_empty_body);
    tcase_add_test(tc, test_run_tags);
    tcase_add_test(tc, test_find_object);
    suite_add_tcase(s, tc);

    tc = tcase_create("signature");
    tcase_add_test(tc, test_untrusted_signer);
    tcase_add_test(tc, test_impostor_signer);
    tcase_add_test(tc, test_signature_line);
    tcase_add_test(tc, test_header_signer_mismatch);
    tcase_add_test(tc, test_parse_unverified);
    suite_add_tcase(s, tc);

    tc = tcase_create("tampering");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_every_byte_flipped);
    tcase_add_test(tc, test_every_truncation);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_test(tc, test_not_a_recipient);
    tcase_add_test(tc, test_wrapped_key_does_not_open);
    suite_add_tcase(s, tc);

    tc = tcase_create("format_line");
    tcase_add_test(tc, test_magic_line);
    tcase_add_test(tc, test_newer_format);
    suite_add_tcase(s, tc);

    tc = tcase_create("header_fields");
    tcase_add_loop_test(tc, test_header_field_missing, 0,
                        sizeof(header_fields) / sizeof(header_fields[0]));
    tcase_add_loop_test(tc, test_header_field_wrong_type, 0,
                        sizeof(header_fields) / sizeof(header_fields[0]));
    tcase_add_loop_test(tc, test_header_field_bad_value, 0,
                        sizeof(header_values) / sizeof(header_values[0]));
    tcase_add_test(tc, test_header_not_an_object);
    tcase_add_test(tc, test_header_unknown_field);
    suite_add_tcase(s, tc);

    tc = tcase_create("body_fields");
    tcase_add_test(tc, test_hand_body_opens);
    tcase_add_loop_test(tc, test_body_field_missing, 0,
                        sizeof(body_fields) / sizeof(body_fields[0]));
    tcase_add_loop_test(tc, test_body_field_wrong_type, 0,
                        sizeof(body_fields) / sizeof(body_fields[0]));
    tcase_add_loop_test(tc, test_body_field_bad_value, 0,
                        sizeof(body_values) / sizeof(body_values[0]));
    tcase_add_test(tc, test_body_not_json);
    tcase_add_test(tc, test_body_counts_disagree);
    suite_add_tcase(s, tc);

    tc = tcase_create("body_sealing");
    tcase_add_test(tc, test_body_bound_to_snapshot_id);
    tcase_add_test(tc, test_body_damaged);
    suite_add_tcase(s, tc);

    tc = tcase_create("serialize_checks");
    tcase_add_test(tc, test_serialize_refuses);
    suite_add_tcase(s, tc);

    tc = tcase_create("snapshot_id");
    tcase_add_test(tc, test_snapshot_id);
    suite_add_tcase(s, tc);

    tc = tcase_create("allocation_failure");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_allocation_failure);
    tcase_add_test(tc, test_builders_allocation_failure);
    suite_add_tcase(s, tc);

    tc = tcase_create("builders");
    tcase_add_test(tc, test_builders_grow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (sodium_init() < 0)
        return 1;
    /* jansson's allocator is chosen once, before the tests' own JSON use. */
    sg_json_init();
    make_key(&signer_key);
    make_key(&other_signer);
    make_key(&alice);
    make_key(&bob);
    make_key(&carol);
    randombytes_buf(data_key, sizeof(data_key));
    sr = srunner_create(manifest_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
