#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/keys.h"
#include "common/mem.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/sg-test-keys-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* DIR/name; the same name always gives the same string, so a path can be
 * held across calls. */
static const char *path_in_dir(const char *name)
{
    static char names[32][32], paths[32][128];
    size_t i;
    for (i = 0; i < 32 && names[i][0]; i++)
        if (strcmp(names[i], name) == 0)
            return paths[i];
    ck_assert_uint_lt(i, 32);
    snprintf(names[i], sizeof(names[i]), "%s", name);
    snprintf(paths[i], sizeof(paths[i]), "%s/%s", dir, name);
    return paths[i];
}

static int count_entries(void)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((ent = readdir(d)) != NULL)
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void write_file(const char *path, mode_t mode, const char *text)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
}

static void read_file(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY);
    ssize_t n;
    ck_assert_int_ge(fd, 0);
    n = read(fd, out, size - 1);
    ck_assert_int_ge(n, 0);
    out[n] = '\0';
    close(fd);
}

/* Rewrites the line starting with "field: " in a key file; a NULL line
 * deletes it, and append adds a line at the end instead. */
static void edit_field(const char *path, const char *field, const char *line)
{
    char text[4096], out[4096] = "", prefix[64];
    char *cursor = text, *nl;
    bool found = false;
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    read_file(path, text, sizeof(text));
    snprintf(prefix, sizeof(prefix), "%s: ", field);
    while ((nl = strchr(cursor, '\n')) != NULL) {
        *nl = '\0';
        if (strncmp(cursor, prefix, strlen(prefix)) == 0) {
            found = true;
            if (line) {
                strcat(out, line);
                strcat(out, "\n");
            }
        } else {
            strcat(out, cursor);
            strcat(out, "\n");
        }
        cursor = nl + 1;
    }
    ck_assert(found);
    write_file(path, st.st_mode & 07777, out);
}

static void append_line(const char *path, const char *line)
{
    char text[4096];
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    read_file(path, text, sizeof(text) - 256);
    strcat(text, line);
    strcat(text, "\n");
    write_file(path, st.st_mode & 07777, text);
}

/* The value of a field of a key file, e.g. the other key's x25519-public. */
static void field_value(const char *path, const char *field, char *out, size_t size)
{
    char text[4096], prefix[64], *start, *end;
    read_file(path, text, sizeof(text));
    snprintf(prefix, sizeof(prefix), "\n%s: ", field);
    start = strstr(text, prefix);
    ck_assert_ptr_nonnull(start);
    start += strlen(prefix);
    end = strchr(start, '\n');
    ck_assert_ptr_nonnull(end);
    snprintf(out, size, "%.*s", (int)(end - start), start);
}

static void keygen(const char *name, sg_public_key *pub)
{
    sg_error err = {0};
    ck_assert_msg(sg_keygen(path_in_dir(name), pub, &err) == 0, "%s", err.message);
}

static void assert_contains(const char *haystack, const char *needle)
{
    ck_assert_msg(strstr(haystack, needle) != NULL, "\"%s\" does not contain \"%s\"", haystack,
                  needle);
}

/* Loading a secret key fails with code; the message names the file and says
 * what. */
static void assert_secret_fails(const char *path, int code, const char *what)
{
    sg_secret_key key;
    sg_error err = {0};
    ck_assert_int_eq(sg_secret_key_load(&key, path, &err), code);
    ck_assert_int_eq(err.code, code);
    assert_contains(err.message, path);
    assert_contains(err.message, what);
}

static void assert_public_fails(const char *path, int code, const char *what)
{
    sg_public_key key;
    sg_error err = {0};
    ck_assert_int_eq(sg_public_key_load(&key, path, &err), code);
    ck_assert_int_eq(err.code, code);
    assert_contains(err.message, path);
    assert_contains(err.message, what);
}

START_TEST(test_keygen_round_trip)
{
    sg_public_key pub, loaded;
    sg_secret_key key;
    sg_error err = {0};
    char text[1024], id[SG_KEY_ID_LEN + 1];
    struct stat st;

    keygen("k", &pub);
    ck_assert_int_eq(count_entries(), 2); /* no temporary file left */
    ck_assert_int_eq(stat(path_in_dir("k.key"), &st), 0);
    ck_assert_int_eq(st.st_mode & 077, 0);

    read_file(path_in_dir("k.pub"), text, sizeof(text));
    ck_assert_int_eq(strncmp(text, "shardgate public key v1\nid: ", 28), 0);
    read_file(path_in_dir("k.key"), text, sizeof(text));
    ck_assert_int_eq(strncmp(text, "shardgate secret key v1\nid: ", 28), 0);

    sg_key_id(pub.box, pub.sign, id);
    ck_assert_str_eq(pub.id, id);
    ck_assert_uint_eq(strspn(pub.id, "0123456789abcdef"), SG_KEY_ID_LEN);

    ck_assert_int_eq(sg_public_key_load(&loaded, path_in_dir("k.pub"), &err), 0);
    ck_assert_mem_eq(&loaded, &pub, sizeof(pub));
    ck_assert_int_eq(sg_secret_key_load(&key, path_in_dir("k.key"), &err), 0);
    ck_assert_mem_eq(&key.pub, &pub, sizeof(pub));
    sg_secret_key_wipe(&key);
    ck_assert_uint_eq(key.box[0] | key.sign[0] | key.pub.box[0], 0);
}
END_TEST

/* The id is part of the file format and of every manifest: BLAKE2b with an
 * 8-byte output over box || sign, in hex (values from Python's hashlib). */
START_TEST(test_key_id_stable)
{
    uint8_t box[32] = {0}, sign[32] = {0};
    char id[SG_KEY_ID_LEN + 1];
    sg_key_id(box, sign, id);
    ck_assert_str_eq(id, "88939ddc986e59dd");
    box[31] = 1;
    sg_key_id(box, sign, id);
    ck_assert_str_eq(id, "3a57092c74154725");
}
END_TEST

START_TEST(test_secret_key_permissions)
{
    static const mode_t modes[] = {0640, 0604, 0660, 0601};
    const char *path = path_in_dir("k.key");
    keygen("k", NULL);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        sg_secret_key key;
        sg_error err = {0};
        char hint[300];
        ck_assert_int_eq(chmod(path, modes[i]), 0);
        ck_assert_int_eq(sg_secret_key_load(&key, path, &err), SG_E_KEY);
        assert_contains(err.message, path);
        assert_contains(err.message, "accessible by group or others");
        snprintf(hint, sizeof(hint), "chmod 600 %s", path);
        assert_contains(err.hint, hint);
    }
    /* Owner-only modes other than 0600 are fine. */
    ck_assert_int_eq(chmod(path, 0400), 0);
    {
        sg_secret_key key;
        sg_error err = {0};
        ck_assert_int_eq(sg_secret_key_load(&key, path, &err), 0);
    }
}
END_TEST

START_TEST(test_wrong_first_line)
{
    const char *sec = path_in_dir("k.key"), *pub = path_in_dir("k.pub");
    write_file(sec, 0600, "-----BEGIN OPENSSH PRIVATE KEY-----\n");
    assert_secret_fails(sec, SG_E_FORMAT, "is not a shardgate secret key file");
    write_file(pub, 0644, "ssh-ed25519 AAAA\n");
    assert_public_fails(pub, SG_E_FORMAT, "is not a shardgate public key file");
    write_file(sec, 0600, "");
    assert_secret_fails(sec, SG_E_FORMAT, "is not a shardgate secret key file");
    write_file(sec, 0600, "shardgate secret key v2\nid: 0000000000000000\n");
    assert_secret_fails(sec, SG_E_FORMAT, "unsupported format \"v2\"");
}
END_TEST

START_TEST(test_public_passed_as_secret)
{
    keygen("k", NULL);
    assert_secret_fails(path_in_dir("k.pub"), SG_E_FORMAT,
                        "is a public key file; a secret key (.key) is needed");
    /* The .pub file is world-readable: the kind must be reported, not the mode. */
    ck_assert_int_eq(chmod(path_in_dir("k.pub"), 0600), 0);
    assert_secret_fails(path_in_dir("k.pub"), SG_E_FORMAT,
                        "is a public key file; a secret key (.key) is needed");
}
END_TEST

START_TEST(test_secret_passed_as_public)
{
    keygen("k", NULL);
    assert_public_fails(path_in_dir("k.key"), SG_E_FORMAT,
                        "is a secret key file; pass the .pub file");
}
END_TEST

START_TEST(test_missing_file)
{
    sg_error err = {0};
    sg_secret_key key;
    sg_public_key pub;
    ck_assert_int_eq(sg_secret_key_load(&key, path_in_dir("nope.key"), &err), SG_E_NOT_FOUND);
    assert_contains(err.message, path_in_dir("nope.key"));
    assert_contains(err.message, "No such file or directory");
    ck_assert_int_eq(sg_public_key_load(&pub, path_in_dir("nope.pub"), &err), SG_E_NOT_FOUND);
    assert_contains(err.message, path_in_dir("nope.pub"));
}
END_TEST

START_TEST(test_not_a_key_file)
{
    char big[5000];
    keygen("k", NULL);
    assert_public_fails(dir, SG_E_FORMAT, "is not a regular file");
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    write_file(path_in_dir("k.pub"), 0644, big);
    assert_public_fails(path_in_dir("k.pub"), SG_E_FORMAT, "is too large to be a key file");
    {
        int fd = open(path_in_dir("k.key"), O_WRONLY | O_APPEND);
        ck_assert_int_eq(write(fd, "\0x\n", 3), 3);
        close(fd);
    }
    assert_secret_fails(path_in_dir("k.key"), SG_E_FORMAT, "is not a text file");
}
END_TEST

START_TEST(test_bad_field_values)
{
    static const struct {
        const char *field, *line, *what;
    } cases[] = {
        {"x25519-secret", "x25519-secret: !!!!", "field \"x25519-secret\" is not base64 of 32"},
        /* base64 of 31 bytes */
        {"x25519-secret", "x25519-secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
         "field \"x25519-secret\" is not base64 of 32"},
        /* base64 of 33 bytes */
        {"x25519-public", "x25519-public: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
         "field \"x25519-public\" is not base64 of 32"},
        /* unpadded: the original variant requires padding */
        {"ed25519-public", "ed25519-public: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
         "field \"ed25519-public\" is not base64 of 32"},
        {"ed25519-secret", "ed25519-secret: AAAA", "field \"ed25519-secret\" is not base64 of 64"},
        {"id", "id: 0123", "field \"id\" is not 16 lowercase hex digits"},
        {"id", "id: 0123456789ABCDEF", "field \"id\" is not 16 lowercase hex digits"},
        {"id", "id: 0123456789abcdef ", "field \"id\" is not 16 lowercase hex digits"},
        {"ed25519-secret", NULL, "field \"ed25519-secret\" is missing"},
        {"id", NULL, "field \"id\" is missing"},
        {"id", "id 0123456789abcdef", "line 2 is not \"name: value\""},
        {"id", "", "line 2 is not \"name: value\""},
        {"id", "colour: blue", "unknown field \"colour\" on line 2"},
    };
    const char *path = path_in_dir("k.key");
    char original[4096];
    keygen("k", NULL);
    read_file(path, original, sizeof(original));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(path, 0600, original);
        edit_field(path, cases[i].field, cases[i].line);
        assert_secret_fails(path, SG_E_FORMAT, cases[i].what);
    }
    write_file(path, 0600, original);
    append_line(path, "x25519-public: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    assert_secret_fails(path, SG_E_FORMAT, "field \"x25519-public\" appears twice");

    path = path_in_dir("k.pub");
    edit_field(path, "x25519", "x25519: ####");
    assert_public_fails(path, SG_E_FORMAT, "field \"x25519\" is not base64 of 32");
}
END_TEST

/* Each half of another key pair spliced in is found on load. */
START_TEST(test_mismatched_keys)
{
    static const struct {
        const char *field, *what;
    } cases[] = {
        {"x25519-public", "its X25519 public key does not match its secret key"},
        {"x25519-secret", "its X25519 public key does not match its secret key"},
        {"ed25519-public", "its Ed25519 public key does not match its secret key"},
        {"ed25519-secret", "its Ed25519 public key does not match its secret key"},
        {"id", "does not match its keys"},
    };
    const char *path = path_in_dir("a.key");
    char original[4096];
    keygen("a", NULL);
    keygen("b", NULL);
    read_file(path, original, sizeof(original));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char value[200], line[256];
        field_value(path_in_dir("b.key"), cases[i].field, value, sizeof(value));
        snprintf(line, sizeof(line), "%s: %s", cases[i].field, value);
        write_file(path, 0600, original);
        edit_field(path, cases[i].field, line);
        assert_secret_fails(path, SG_E_KEY, "is damaged");
        assert_secret_fails(path, SG_E_KEY, cases[i].what);
    }
    {
        char value[200], line[256];
        field_value(path_in_dir("b.pub"), "x25519", value, sizeof(value));
        snprintf(line, sizeof(line), "x25519: %s", value);
        edit_field(path_in_dir("a.pub"), "x25519", line);
        assert_public_fails(path_in_dir("a.pub"), SG_E_KEY, "is damaged: its id");
    }
}
END_TEST

/* A consistent public key file whose X25519 key is a small-order point would
 * let anyone unwrap the data keys sealed to it. */
START_TEST(test_unusable_public_key)
{
    uint8_t zero[32] = {0};
    sg_public_key pub;
    char text[512], id[SG_KEY_ID_LEN + 1], box64[64], sign64[64];
    keygen("k", &pub);
    sg_key_id(zero, pub.sign, id);
    sodium_bin2base64(box64, sizeof(box64), zero, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(sign64, sizeof(sign64), pub.sign, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(text, sizeof(text), "shardgate public key v1\nid: %s\nx25519: %s\ned25519: %s\n", id,
             box64, sign64);
    write_file(path_in_dir("k.pub"), 0644, text);
    assert_public_fails(path_in_dir("k.pub"), SG_E_KEY, "unusable X25519 key");

    sg_key_id(pub.box, zero, id);
    sodium_bin2base64(box64, sizeof(box64), pub.box, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(sign64, sizeof(sign64), zero, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(text, sizeof(text), "shardgate public key v1\nid: %s\nx25519: %s\ned25519: %s\n", id,
             box64, sign64);
    write_file(path_in_dir("k.pub"), 0644, text);
    assert_public_fails(path_in_dir("k.pub"), SG_E_KEY, "unusable Ed25519 key");
}
END_TEST

START_TEST(test_fields_in_any_order)
{
    const char *path = path_in_dir("k.key");
    char value[200], line[256];
    sg_secret_key key;
    sg_error err = {0};
    keygen("k", NULL);
    field_value(path, "x25519-public", value, sizeof(value));
    edit_field(path, "x25519-public", NULL);
    snprintf(line, sizeof(line), "x25519-public: %s", value);
    append_line(path, line);
    ck_assert_msg(sg_secret_key_load(&key, path, &err) == 0, "%s", err.message);
}
END_TEST

START_TEST(test_existing_files_not_overwritten)
{
    sg_public_key first, second, loaded;
    sg_error err = {0};
    char before[1024], after[1024];

    keygen("k", &first);
    read_file(path_in_dir("k.key"), before, sizeof(before));
    ck_assert_int_eq(sg_keygen(path_in_dir("k"), &second, &err), SG_E_KEY);
    assert_contains(err.message, path_in_dir("k.key"));
    assert_contains(err.message, "already exists");
    read_file(path_in_dir("k.key"), after, sizeof(after));
    ck_assert_str_eq(before, after);
    ck_assert_int_eq(sg_public_key_load(&loaded, path_in_dir("k.pub"), &err), 0);
    ck_assert_mem_eq(&loaded, &first, sizeof(first));
    ck_assert_int_eq(count_entries(), 2);

    /* Only the .pub exists: the new .key must not be left behind either. */
    write_file(path_in_dir("j.pub"), 0644, "someone else's file\n");
    ck_assert_int_eq(sg_keygen(path_in_dir("j"), NULL, &err), SG_E_KEY);
    assert_contains(err.message, path_in_dir("j.pub"));
    assert_contains(err.message, "already exists");
    ck_assert_int_eq(access(path_in_dir("j.key"), F_OK), -1);
    read_file(path_in_dir("j.pub"), after, sizeof(after));
    ck_assert_str_eq(after, "someone else's file\n");
    ck_assert_int_eq(count_entries(), 3);
}
END_TEST

START_TEST(test_keygen_unwritable)
{
    sg_error err = {0};
    ck_assert_int_eq(sg_keygen(path_in_dir("missing/k"), NULL, &err), SG_E_IO);
    assert_contains(err.message, path_in_dir("missing/k.key"));
    assert_contains(err.message, "No such file or directory");
}
END_TEST

START_TEST(test_wrap_unwrap)
{
    uint8_t data_key[SG_DATA_KEY_BYTES], wrapped[SG_WRAPPED_KEY_BYTES], back[SG_DATA_KEY_BYTES];
    sg_secret_key key;
    sg_error err = {0};
    keygen("k", NULL);
    ck_assert_int_eq(sg_secret_key_load(&key, path_in_dir("k.key"), &err), 0);
    randombytes_buf(data_key, sizeof(data_key));
    sg_key_wrap(wrapped, data_key, &key.pub);
    ck_assert_int_eq(sg_key_unwrap(back, wrapped, &key, &err), 0);
    ck_assert_mem_eq(back, data_key, sizeof(back));
}
END_TEST

START_TEST(test_unwrap_wrong_key)
{
    uint8_t data_key[SG_DATA_KEY_BYTES], wrapped[SG_WRAPPED_KEY_BYTES], back[SG_DATA_KEY_BYTES];
    uint8_t zero[SG_DATA_KEY_BYTES] = {0};
    sg_secret_key a, b;
    sg_error err = {0};
    keygen("a", NULL);
    keygen("b", NULL);
    ck_assert_int_eq(sg_secret_key_load(&a, path_in_dir("a.key"), &err), 0);
    ck_assert_int_eq(sg_secret_key_load(&b, path_in_dir("b.key"), &err), 0);
    randombytes_buf(data_key, sizeof(data_key));
    sg_key_wrap(wrapped, data_key, &a.pub);

    ck_assert_int_eq(sg_key_unwrap(back, wrapped, &b, &err), SG_E_CRYPTO);
    assert_contains(err.message, b.pub.id);
    assert_contains(err.message, "wrong key or damaged key envelope");
    ck_assert_mem_eq(back, zero, sizeof(back));

    wrapped[40] ^= 1;
    ck_assert_int_eq(sg_key_unwrap(back, wrapped, &a, &err), SG_E_CRYPTO);
    assert_contains(err.message, a.pub.id);
}
END_TEST

START_TEST(test_sign_verify)
{
    static const char msg[] = "manifest bytes";
    uint8_t sig[SG_SIGNATURE_BYTES];
    sg_secret_key a, b;
    sg_error err = {0};
    keygen("a", NULL);
    keygen("b", NULL);
    ck_assert_int_eq(sg_secret_key_load(&a, path_in_dir("a.key"), &err), 0);
    ck_assert_int_eq(sg_secret_key_load(&b, path_in_dir("b.key"), &err), 0);
    sg_sign(sig, msg, sizeof(msg), &a);
    ck_assert_int_eq(sg_verify_signature(sig, msg, sizeof(msg), &a.pub), 0);
    ck_assert_int_eq(sg_verify_signature(sig, msg, sizeof(msg), &b.pub), SG_E_SIGNATURE);
}
END_TEST

START_TEST(test_tampered_message)
{
    char msg[] = "manifest bytes";
    uint8_t sig[SG_SIGNATURE_BYTES];
    sg_secret_key a;
    sg_error err = {0};
    keygen("a", NULL);
    ck_assert_int_eq(sg_secret_key_load(&a, path_in_dir("a.key"), &err), 0);
    sg_sign(sig, msg, sizeof(msg), &a);
    msg[0] ^= 1;
    ck_assert_int_eq(sg_verify_signature(sig, msg, sizeof(msg), &a.pub), SG_E_SIGNATURE);
    msg[0] ^= 1;
    ck_assert_int_eq(sg_verify_signature(sig, msg, sizeof(msg) - 1, &a.pub), SG_E_SIGNATURE);
    sig[10] ^= 1;
    ck_assert_int_eq(sg_verify_signature(sig, msg, sizeof(msg), &a.pub), SG_E_SIGNATURE);
}
END_TEST

/* Every allocation in keygen failing in turn: a clean SG_E_NOMEM and not a
 * file left behind, until enough allocations succeed. */
START_TEST(test_keygen_allocation_failure)
{
    long n;
    for (n = 0; n < 100; n++) {
        sg_error err = {0};
        int rc;
        sg_mem_fail_after(n);
        rc = sg_keygen(path_in_dir("k"), NULL, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, SG_E_NOMEM);
        assert_contains(err.message, "out of memory");
        ck_assert_int_eq(count_entries(), 0);
    }
    ck_assert_int_gt(n, 0);
    ck_assert_int_lt(n, 100);
    ck_assert_int_eq(count_entries(), 2);
}
END_TEST

static Suite *keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *tc;
#define CASE(name, fn)                                                                             \
    tc = tcase_create(name);                                                                       \
    tcase_add_checked_fixture(tc, setup, teardown);                                                \
    tcase_add_test(tc, fn);                                                                        \
    suite_add_tcase(s, tc)
    CASE("keygen round trip", test_keygen_round_trip);
    CASE("key id", test_key_id_stable);
    CASE("secret key permissions", test_secret_key_permissions);
    CASE("wrong first line", test_wrong_first_line);
    CASE("public passed as secret", test_public_passed_as_secret);
    CASE("secret passed as public", test_secret_passed_as_public);
    CASE("missing file", test_missing_file);
    CASE("not a key file", test_not_a_key_file);
    CASE("bad field values", test_bad_field_values);
    CASE("mismatched keys", test_mismatched_keys);
    CASE("unusable public key", test_unusable_public_key);
    CASE("fields in any order", test_fields_in_any_order);
    CASE("existing files not overwritten", test_existing_files_not_overwritten);
    CASE("keygen unwritable", test_keygen_unwritable);
    CASE("wrap unwrap", test_wrap_unwrap);
    CASE("unwrap wrong key", test_unwrap_wrong_key);
    CASE("sign verify", test_sign_verify);
    CASE("tampered message", test_tampered_message);
    CASE("keygen allocation failure", test_keygen_allocation_failure);
#undef CASE
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(keys_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
