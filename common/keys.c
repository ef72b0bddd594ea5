/* Key files. Both are text, one "name: value" field per line, binary values in
 * standard base64 (RFC 4648, with padding). The first line names the kind of
 * file and its format version; a reader refuses versions it does not know.
 *
 * NAME.pub (mode 0644):
 *     shardgate public key v1
 *     id: <16 hex digits: sg_key_id of the two public keys>
 *     x25519: <32-byte X25519 public key>
 *     ed25519: <32-byte Ed25519 public key>
 *
 * NAME.key (mode 0600):
 *     shardgate secret key v1
 *     id: <16 hex digits>
 *     x25519-public: <32 bytes>
 *     ed25519-public: <32 bytes>
 *     x25519-secret: <32 bytes>
 *     ed25519-secret: <64 bytes: libsodium's seed || public key form>
 *
 * Fields appear in this order when written; a reader accepts any order but
 * refuses unknown, missing and repeated fields. A secret key file carries its
 * public half so that a damaged file is detected on load (the public keys and
 * the id are derived again and compared) rather than when a restore fails. */
#include "common/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"

#define PUBLIC_MAGIC "shardgate public key v1"
#define SECRET_MAGIC "shardgate secret key v1"
#define PUBLIC_MAGIC_STEM "shardgate public key "
#define SECRET_MAGIC_STEM "shardgate secret key "

/* Both formats are a few hundred bytes; anything much larger is not a key. */
#define KEY_FILE_MAX 4096

#define B64_32 sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)
#define B64_64 sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_status = -1;

static void sodium_start(void)
{
    sodium_status = sodium_init() < 0 ? -1 : 0;
}

static int sodium_ready(sg_error *err)
{
    pthread_once(&sodium_once, sodium_start);
    if (sodium_status < 0)
        return sg_error_set(err, SG_E_CRYPTO, "cannot initialise libsodium");
    return 0;
}

/* For the functions without an error channel: their keys come from sg_keygen
 * or a loader, which already reported a libsodium that cannot start, so
 * reaching this is a programming error. */
static void sodium_required(void)
{
    if (sodium_ready(NULL) < 0) {
        fputs("shardgate: libsodium is not initialised\n", stderr);
        abort();
    }
}

void sg_key_id(const uint8_t box[32], const uint8_t sign[32], char out[SG_KEY_ID_LEN + 1])
{
    uint8_t both[64], hash[SG_KEY_ID_LEN / 2];
    memcpy(both, box, 32);
    memcpy(both + 32, sign, 32);
    crypto_generichash(hash, sizeof(hash), both, sizeof(both), NULL, 0);
    sodium_bin2hex(out, SG_KEY_ID_LEN + 1, hash, sizeof(hash));
}

void sg_secret_key_wipe(sg_secret_key *key)
{
    if (key)
        sodium_memzero(key, sizeof(*key));
}

/* ---- writing ---- */

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes text to a new temporary file next to `path` and makes it durable;
 * the caller links it into place, so `path` never exists half-written. */
static int write_temp_file(char **tmp_out, const char *path, mode_t mode, const char *kind,
                           const char *text, sg_error *err)
{
    uint8_t rnd[4];
    char suffix[sizeof(rnd) * 2 + 1];
    char *tmp = NULL;
    int fd = -1, rc = 0;

    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(suffix, sizeof(suffix), rnd, sizeof(rnd));
    tmp = sg_asprintf("%s.tmp.%s", path, suffix);
    if (!tmp) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (writing %s \"%s\")", kind, path);
        goto done;
    }
    fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = sg_error_set(err, SG_E_IO, "cannot create %s \"%s\": %s", kind, tmp, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    if (write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0) {
        rc = sg_error_set(err, SG_E_IO, "cannot write %s \"%s\": %s", kind, tmp, strerror(errno));
        goto done;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = sg_error_set(err, SG_E_IO, "cannot write %s \"%s\": %s", kind, tmp, strerror(errno));
        goto done;
    }
    fd = -1;
    *tmp_out = tmp;
    tmp = NULL;

done:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    return rc;
}

/* link() rather than rename(): it fails on an existing name instead of
 * replacing it, and a key file must never be overwritten. */
static int link_into_place(const char *tmp, const char *path, const char *kind, sg_error *err)
{
    if (link(tmp, path) == 0)
        return 0;
    if (errno == EEXIST) {
        sg_error_set(err, SG_E_KEY, "%s \"%s\" already exists", kind, path);
        sg_error_hint(err, "shardgate never overwrites a key file; choose another name");
        return SG_E_KEY;
    }
    return sg_error_set(err, SG_E_IO, "cannot create %s \"%s\": %s", kind, path, strerror(errno));
}

static int fsync_parent(const char *path, sg_error *err)
{
    char *copy = sg_strdup(path);
    const char *dir;
    int fd = -1, rc = 0;
    if (!copy)
        return sg_error_set(err, SG_E_NOMEM, "out of memory (syncing the directory of \"%s\")",
                            path);
    dir = dirname(copy);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* Some file systems cannot fsync a directory (EINVAL); PostgreSQL's
     * fsync_fname() tolerates that too. */
    if (fd < 0 || (fsync(fd) < 0 && errno != EINVAL))
        rc = sg_error_set(err, SG_E_IO, "cannot sync directory \"%s\": %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

int sg_keygen(const char *name, sg_public_key *pub_out, sg_error *err)
{
    sg_secret_key key;
    char box_pub[B64_32], sign_pub[B64_32], box_sec[B64_32], sign_sec[B64_64];
    char text[KEY_FILE_MAX];
    char *key_path = NULL, *pub_path = NULL, *key_tmp = NULL, *pub_tmp = NULL;
    bool key_linked = false, pub_linked = false;
    int rc;

    memset(&key, 0, sizeof(key));
    if ((rc = sodium_ready(err)) < 0)
        goto done;
    key_path = sg_asprintf("%s.key", name);
    pub_path = sg_asprintf("%s.pub", name);
    if (!key_path || !pub_path) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (generating key \"%s\")", name);
        goto done;
    }

    crypto_box_keypair(key.pub.box, key.box);
    crypto_sign_keypair(key.pub.sign, key.sign);
    sg_key_id(key.pub.box, key.pub.sign, key.pub.id);
    sodium_bin2base64(box_pub, sizeof(box_pub), key.pub.box, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(sign_pub, sizeof(sign_pub), key.pub.sign, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(box_sec, sizeof(box_sec), key.box, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(sign_sec, sizeof(sign_sec), key.sign, 64, sodium_base64_VARIANT_ORIGINAL);

    /* Both files are complete on disk before either name appears. */
    snprintf(text, sizeof(text),
             SECRET_MAGIC "\nid: %s\nx25519-public: %s\ned25519-public: %s\n"
                          "x25519-secret: %s\ned25519-secret: %s\n",
             key.pub.id, box_pub, sign_pub, box_sec, sign_sec);
    if ((rc = write_temp_file(&key_tmp, key_path, 0600, "secret key file", text, err)) < 0)
        goto done;
    snprintf(text, sizeof(text), PUBLIC_MAGIC "\nid: %s\nx25519: %s\ned25519: %s\n", key.pub.id,
             box_pub, sign_pub);
    if ((rc = write_temp_file(&pub_tmp, pub_path, 0644, "public key file", text, err)) < 0)
        goto done;

    if ((rc = link_into_place(key_tmp, key_path, "secret key file", err)) < 0)
        goto done;
    key_linked = true;
    if ((rc = link_into_place(pub_tmp, pub_path, "public key file", err)) < 0)
        goto done;
    pub_linked = true;
    /* Temporary names go before the sync, so that they do not come back. */
    unlink(key_tmp);
    unlink(pub_tmp);
    free(key_tmp);
    free(pub_tmp);
    key_tmp = pub_tmp = NULL;
    if ((rc = fsync_parent(key_path, err)) < 0)
        goto done;
    if (pub_out)
        *pub_out = key.pub;

done:
    if (rc < 0 && pub_linked)
        unlink(pub_path);
    if (rc < 0 && key_linked)
        unlink(key_path);
    if (key_tmp)
        unlink(key_tmp);
    if (pub_tmp)
        unlink(pub_tmp);
    free(key_tmp);
    free(pub_tmp);
    free(key_path);
    free(pub_path);
    sodium_memzero(&key, sizeof(key));
    sodium_memzero(box_sec, sizeof(box_sec));
    sodium_memzero(sign_sec, sizeof(sign_sec));
    sodium_memzero(text, sizeof(text));
    return rc;
}

/* ---- reading ---- */

typedef struct key_field {
    const char *name;
    uint8_t *bin; /* base64 field: decoded into bin_len bytes */
    size_t bin_len;
    char *hex; /* the id field: SG_KEY_ID_LEN hex digits */
    bool seen;
} key_field;

/* Reads a whole key file into text (NUL-terminated) and returns its mode. */
static int read_key_file(char text[KEY_FILE_MAX + 1], mode_t *mode, const char *path,
                         const char *kind, sg_error *err)
{
    struct stat st;
    size_t len = 0;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sg_error_set(err, errno == ENOENT ? SG_E_NOT_FOUND : SG_E_IO,
                            "cannot open %s \"%s\": %s", kind, path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        rc = sg_error_set(err, SG_E_IO, "cannot stat %s \"%s\": %s", kind, path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = sg_error_set(err, SG_E_FORMAT, "%s \"%s\" is not a regular file", kind, path);
        goto done;
    }
    *mode = st.st_mode;
    for (;;) {
        ssize_t n = read(fd, text + len, KEY_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = sg_error_set(err, SG_E_IO, "cannot read %s \"%s\": %s", kind, path,
                              strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > KEY_FILE_MAX) {
            rc = sg_error_set(err, SG_E_FORMAT, "%s \"%s\" is too large to be a key file", kind,
                              path);
            goto done;
        }
    }
    text[len] = '\0';
    if (strlen(text) != len)
        rc = sg_error_set(err, SG_E_FORMAT, "%s \"%s\" is not a text file", kind, path);

done:
    close(fd);
    return rc;
}

/* Cuts the next line off *cursor; NULL when none is left. A missing newline
 * after the last line is accepted. */
static char *next_line(char **cursor)
{
    char *line = *cursor, *nl;
    if (*line == '\0')
        return NULL;
    nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *cursor = nl + 1;
    } else {
        *cursor = line + strlen(line);
    }
    return line;
}

static int check_magic(const char *line, const char *path, bool secret, sg_error *err)
{
    const char *kind = secret ? "secret key file" : "public key file";
    const char *magic = secret ? SECRET_MAGIC : PUBLIC_MAGIC;
    const char *stem = secret ? SECRET_MAGIC_STEM : PUBLIC_MAGIC_STEM;
    const char *other_stem = secret ? PUBLIC_MAGIC_STEM : SECRET_MAGIC_STEM;

    if (line && strcmp(line, magic) == 0)
        return 0;
    if (line && strncmp(line, other_stem, strlen(other_stem)) == 0) {
        if (secret)
            return sg_error_set(err, SG_E_FORMAT,
                                "\"%s\" is a public key file; a secret key (.key) is needed", path);
        return sg_error_set(err, SG_E_FORMAT, "\"%s\" is a secret key file; pass the .pub file",
                            path);
    }
    if (line && strncmp(line, stem, strlen(stem)) == 0) {
        sg_error_set(err, SG_E_FORMAT, "%s \"%s\" has unsupported format \"%s\"", kind, path,
                     line + strlen(stem));
        sg_error_hint(err, "this version of shardgate reads format v1");
        return SG_E_FORMAT;
    }
    sg_error_set(err, SG_E_FORMAT, "\"%s\" is not a shardgate %s key file", path,
                 secret ? "secret" : "public");
    sg_error_detail(err, "its first line should be \"%s\"", magic);
    return SG_E_FORMAT;
}

static bool is_lower_hex(const char *s, size_t len)
{
    if (strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int parse_fields(char *cursor, const char *path, const char *kind, key_field *fields,
                        size_t nfields, sg_error *err)
{
    char *line;
    int lineno = 1;

    while ((line = next_line(&cursor)) != NULL) {
        char *sep = strstr(line, ": ");
        key_field *f = NULL;
        lineno++;
        if (!sep || sep == line)
            return sg_error_set(err, SG_E_FORMAT, "%s \"%s\": line %d is not \"name: value\"", kind,
                                path, lineno);
        *sep = '\0';
        for (size_t i = 0; i < nfields && !f; i++)
            if (strcmp(fields[i].name, line) == 0)
                f = &fields[i];
        if (!f)
            return sg_error_set(err, SG_E_FORMAT, "%s \"%s\": unknown field \"%s\" on line %d",
                                kind, path, line, lineno);
        if (f->seen)
            return sg_error_set(err, SG_E_FORMAT, "%s \"%s\": field \"%s\" appears twice", kind,
                                path, f->name);
        f->seen = true;
        if (f->hex) {
            if (!is_lower_hex(sep + 2, SG_KEY_ID_LEN))
                return sg_error_set(err, SG_E_FORMAT,
                                    "%s \"%s\": field \"%s\" is not %d lowercase hex digits", kind,
                                    path, f->name, SG_KEY_ID_LEN);
            memcpy(f->hex, sep + 2, SG_KEY_ID_LEN + 1);
        } else {
            const char *value = sep + 2, *end = NULL;
            size_t got = 0;
            if (sodium_base642bin(f->bin, f->bin_len, value, strlen(value), NULL, &got, &end,
                                  sodium_base64_VARIANT_ORIGINAL) != 0 ||
                got != f->bin_len || *end != '\0')
                return sg_error_set(err, SG_E_FORMAT,
                                    "%s \"%s\": field \"%s\" is not base64 of %zu bytes", kind,
                                    path, f->name, f->bin_len);
        }
    }
    for (size_t i = 0; i < nfields; i++)
        if (!fields[i].seen)
            return sg_error_set(err, SG_E_FORMAT, "%s \"%s\": field \"%s\" is missing", kind, path,
                                fields[i].name);
    return 0;
}

static int check_id(const sg_public_key *pub, const char *path, const char *kind, sg_error *err)
{
    char id[SG_KEY_ID_LEN + 1];
    sg_key_id(pub->box, pub->sign, id);
    if (strcmp(id, pub->id) != 0)
        return sg_error_set(err, SG_E_KEY,
                            "%s \"%s\" is damaged: its id %s does not match its keys (%s)", kind,
                            path, pub->id, id);
    return 0;
}

int sg_public_key_load(sg_public_key *out, const char *path, sg_error *err)
{
    static const char *const kind = "public key file";
    /* Any clamped scalar maps every small-order point to zero. */
    static const uint8_t probe[32] = {9};
    char text[KEY_FILE_MAX + 1];
    uint8_t shared[32];
    sg_public_key key;
    mode_t mode;
    char *cursor = text;
    int rc;
    key_field fields[] = {
        {"id", NULL, 0, key.id, false},
        {"x25519", key.box, 32, NULL, false},
        {"ed25519", key.sign, 32, NULL, false},
    };

    memset(&key, 0, sizeof(key));
    if ((rc = sodium_ready(err)) < 0)
        goto done;
    if ((rc = read_key_file(text, &mode, path, kind, err)) < 0)
        goto done;
    if ((rc = check_magic(next_line(&cursor), path, false, err)) < 0)
        goto done;
    if ((rc = parse_fields(cursor, path, kind, fields, 3, err)) < 0)
        goto done;
    if ((rc = check_id(&key, path, kind, err)) < 0)
        goto done;
    /* A small-order X25519 key would make every wrapped data key readable by
     * anyone; libsodium refuses to seal to it, so refuse it here with a name. */
    if (crypto_scalarmult(shared, probe, key.box) != 0) {
        rc = sg_error_set(err, SG_E_KEY, "%s \"%s\" holds an unusable X25519 key", kind, path);
        goto done;
    }
    if (!crypto_core_ed25519_is_valid_point(key.sign)) {
        rc = sg_error_set(err, SG_E_KEY, "%s \"%s\" holds an unusable Ed25519 key", kind, path);
        goto done;
    }
    *out = key;

done:
    /* A secret key file passed by mistake lands in this buffer too. */
    sodium_memzero(text, sizeof(text));
    return rc;
}

int sg_secret_key_load(sg_secret_key *out, const char *path, sg_error *err)
{
    static const char *const kind = "secret key file";
    char text[KEY_FILE_MAX + 1];
    uint8_t box_pub[32], sign_pub[32], sign_sec[64];
    sg_secret_key key;
    char *cursor = text;
    mode_t mode;
    int rc;
    key_field fields[] = {
        {"id", NULL, 0, key.pub.id, false},
        {"x25519-public", key.pub.box, 32, NULL, false},
        {"ed25519-public", key.pub.sign, 32, NULL, false},
        {"x25519-secret", key.box, 32, NULL, false},
        {"ed25519-secret", key.sign, 64, NULL, false},
    };

    memset(&key, 0, sizeof(key));
    if ((rc = sodium_ready(err)) < 0)
        goto done;
    if ((rc = read_key_file(text, &mode, path, kind, err)) < 0)
        goto done;
    /* The kind first: a .pub passed by mistake is world-readable, and
     * "not private" would send the user the wrong way. */
    if ((rc = check_magic(next_line(&cursor), path, true, err)) < 0)
        goto done;
    /* Refusing a secret key open to group or others is how a leaked
     * permission gets noticed, as ssh does with its identity files. */
    if ((mode & 077) != 0) {
        rc = sg_error_set(err, SG_E_KEY, "%s \"%s\" is accessible by group or others", kind, path);
        sg_error_detail(err, "its mode is %04o", (unsigned)(mode & 07777));
        sg_error_hint(err, "chmod 600 %s", path);
        sg_error_hint(err, "in Kubernetes, mount the secret with defaultMode 0400");
        goto done;
    }
    if ((rc = parse_fields(cursor, path, kind, fields, 5, err)) < 0)
        goto done;

    /* Derive the public halves again: a flipped bit anywhere is found now,
     * not when a restore cannot unwrap its data key. The Ed25519 secret key
     * embeds its public key, so compare the whole derived key. */
    crypto_scalarmult_base(box_pub, key.box);
    crypto_sign_seed_keypair(sign_pub, sign_sec, key.sign);
    if (sodium_memcmp(box_pub, key.pub.box, 32) != 0) {
        rc = sg_error_set(err, SG_E_KEY,
                          "%s \"%s\" is damaged: its X25519 public key does not match its secret "
                          "key",
                          kind, path);
        goto done;
    }
    if (sodium_memcmp(sign_pub, key.pub.sign, 32) != 0 ||
        sodium_memcmp(sign_sec, key.sign, 64) != 0) {
        rc = sg_error_set(err, SG_E_KEY,
                          "%s \"%s\" is damaged: its Ed25519 public key does not match its secret "
                          "key",
                          kind, path);
        goto done;
    }
    if ((rc = check_id(&key.pub, path, kind, err)) < 0)
        goto done;
    *out = key;

done:
    sodium_memzero(text, sizeof(text));
    sodium_memzero(sign_sec, sizeof(sign_sec));
    sodium_memzero(&key, sizeof(key));
    return rc;
}

/* ---- using keys ---- */

void sg_key_wrap(uint8_t out[SG_WRAPPED_KEY_BYTES], const uint8_t data_key[SG_DATA_KEY_BYTES],
                 const sg_public_key *to)
{
    sodium_required();
    /* Fails only for a small-order public key, which the loader refuses. */
    if (crypto_box_seal(out, data_key, SG_DATA_KEY_BYTES, to->box) != 0) {
        fprintf(stderr, "shardgate: cannot wrap a data key to key %s: unusable public key\n",
                to->id);
        abort();
    }
}

int sg_key_unwrap(uint8_t data_key[SG_DATA_KEY_BYTES], const uint8_t wrapped[SG_WRAPPED_KEY_BYTES],
                  const sg_secret_key *key, sg_error *err)
{
    int rc;
    if ((rc = sodium_ready(err)) < 0)
        return rc;
    if (crypto_box_seal_open(data_key, wrapped, SG_WRAPPED_KEY_BYTES, key->pub.box, key->box) !=
        0) {
        sodium_memzero(data_key, SG_DATA_KEY_BYTES);
        return sg_error_set(err, SG_E_CRYPTO,
                            "cannot unwrap the data key with key %s: wrong key or damaged key "
                            "envelope",
                            key->pub.id);
    }
    return 0;
}

void sg_sign(uint8_t sig[SG_SIGNATURE_BYTES], const void *msg, size_t len, const sg_secret_key *key)
{
    sodium_required();
    crypto_sign_detached(sig, NULL, msg, len, key->sign);
}

int sg_verify_signature(const uint8_t sig[SG_SIGNATURE_BYTES], const void *msg, size_t len,
                        const sg_public_key *key)
{
    sodium_required();
    return crypto_sign_verify_detached(sig, msg, len, key->sign) == 0 ? 0 : SG_E_SIGNATURE;
}
