#include "snapshot/pack.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "common/mem.h"
#include "common/writer_impl.h"

struct sg_pack_writer {
    struct archive *archive;
    sg_writer *chain; /* hash -> size -> store object */
    sg_writer *hash, *size;
    uint64_t written; /* bytes handed to the chain: member offsets come from here */
    char *key;
    sg_error write_error; /* what the chain said, for libarchive's caller */
    int write_failed;
};

static la_ssize_t pack_write_cb(struct archive *a, void *ctx, const void *data, size_t len)
{
    sg_pack_writer *pack = ctx;
    if (sg_writer_write(pack->chain, data, len, &pack->write_error) < 0) {
        pack->write_failed = 1;
        archive_set_error(a, EIO, "%s", pack->write_error.message);
        return -1;
    }
    pack->written += len;
    return (la_ssize_t)len;
}

static int archive_failure(sg_pack_writer *pack, const char *what, sg_error *err)
{
    if (pack->write_failed) {
        *err = pack->write_error;
        sg_error_prefix(err, "writing pack %s", pack->key);
        return err->code;
    }
    return sg_error_set(err, SG_E_IO, "%s pack %s: %s", what, pack->key,
                        archive_error_string(pack->archive));
}

int sg_pack_writer_new(sg_pack_writer **out, sg_store *store, const char *key, sg_error *err)
{
    sg_pack_writer *pack = NULL;
    sg_writer *object = NULL;
    int rc;
    *out = NULL;
    if (!(pack = sg_calloc(1, sizeof(*pack))) || !(pack->key = sg_strdup(key))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = sg_store_put_writer(&object, store, key, err)) < 0)
        goto done;
    pack->size = sg_size_writer_new(object);
    object = NULL;
    pack->hash = pack->size ? sg_hash_writer_new(pack->size) : NULL;
    pack->chain = pack->hash;
    if (!pack->chain || !(pack->archive = archive_write_new())) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    /* No blocking: every byte reaches the callback as soon as libarchive
     * produces it, so `written` after a header is the member's data offset,
     * and the pack does not end with padding to a 10 KiB block. */
    if (archive_write_set_format_pax_restricted(pack->archive) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(pack->archive, 0) != ARCHIVE_OK ||
        archive_write_open2(pack->archive, pack, NULL, pack_write_cb, NULL, NULL) != ARCHIVE_OK) {
        rc = archive_failure(pack, "starting", err);
        goto done;
    }
    *out = pack;
    pack = NULL;
done:
    sg_writer_free(object);
    sg_pack_writer_free(pack);
    return rc;
}

/* The data of one member: exactly the size its header declared. */
typedef struct member_writer {
    sg_writer base;
    sg_pack_writer *pack;
    uint64_t left;
} member_writer;

static int member_write(sg_writer *w, const void *data, size_t len, sg_error *err)
{
    member_writer *m = (member_writer *)w;
    if (len > m->left)
        return sg_error_set(err, SG_E_INTERNAL, "pack member is longer than its header says");
    if (len > 0 && archive_write_data(m->pack->archive, data, len) != (la_ssize_t)len)
        return archive_failure(m->pack, "writing a member to", err);
    m->left -= len;
    return 0;
}

static int member_close(sg_writer *w, sg_error *err)
{
    member_writer *m = (member_writer *)w;
    if (m->left != 0)
        return sg_error_set(err, SG_E_INTERNAL, "pack member is shorter than its header says");
    /* Pads the member to the 512-byte tar record now, so the next member's
     * header offset is known. */
    if (archive_write_finish_entry(m->pack->archive) != ARCHIVE_OK)
        return archive_failure(m->pack, "finishing a member of", err);
    return 0;
}

static const sg_writer_vtable member_vtable = {"pack member", member_write, member_close, NULL};

int sg_pack_writer_begin(sg_writer **out, sg_pack_writer *pack, const char *member, uint64_t size,
                         uint64_t *offset, sg_error *err)
{
    struct archive_entry *entry = NULL;
    member_writer *m = NULL;
    int rc = 0;
    *out = NULL;
    /* Names are made of OIDs. Anything else would go through the locale's
     * charset, and libarchive crashes on a name it cannot convert. */
    for (const char *p = member; *p; p++)
        if ((unsigned char)*p >= 0x80)
            return sg_error_set(err, SG_E_INTERNAL, "pack member name \"%s\" is not ASCII", member);
    if (!(entry = archive_entry_new()) ||
        !(m = sg_writer_alloc(sizeof(*m), &member_vtable, NULL))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    archive_entry_set_pathname_utf8(entry, member);
    archive_entry_set_size(entry, (la_int64_t)size);
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0600);
    archive_entry_set_mtime(entry, time(NULL), 0);
    if (archive_write_header(pack->archive, entry) != ARCHIVE_OK) {
        rc = archive_failure(pack, "writing a member header to", err);
        goto done;
    }
    *offset = pack->written;
    m->pack = pack;
    m->left = size;
    *out = &m->base;
    m = NULL;
done:
    sg_writer_free(m ? &m->base : NULL);
    archive_entry_free(entry);
    return rc;
}

int sg_pack_writer_add(sg_pack_writer *pack, const char *member, const void *data, size_t len,
                       uint64_t *offset, sg_error *err)
{
    sg_writer *w = NULL;
    int rc = sg_pack_writer_begin(&w, pack, member, len, offset, err);
    if (rc == 0 && (rc = sg_writer_write(w, data, len, err)) == 0)
        rc = sg_writer_close(w, err);
    sg_writer_free(w);
    return rc;
}

uint64_t sg_pack_writer_size(const sg_pack_writer *pack)
{
    return pack->written;
}

int sg_pack_writer_close(sg_pack_writer *pack, uint64_t *size, uint8_t sha256[32], sg_error *err)
{
    int rc;
    if (archive_write_close(pack->archive) != ARCHIVE_OK)
        return archive_failure(pack, "finishing", err);
    if ((rc = sg_writer_close(pack->chain, err)) < 0) {
        sg_error_prefix(err, "committing pack %s", pack->key);
        return rc;
    }
    *size = sg_size_writer_bytes(pack->size);
    sg_hash_writer_digest(pack->hash, sha256);
    return 0;
}

void sg_pack_writer_free(sg_pack_writer *pack)
{
    if (!pack)
        return;
    if (pack->archive)
        archive_write_free(pack->archive);
    sg_writer_free(pack->chain);
    free(pack->key);
    free(pack);
}
