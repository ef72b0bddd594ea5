/* Every way a snapshot or its inputs can be wrong, fed to the real commands:
 * each must fail with a message that names the problem, a non-zero exit
 * status from the error table, and nothing half-written. */
#include "tests/harness/cli.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <archive.h>
#include <archive_entry.h>
#include <check.h>
#include <libpq-fe.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Exit statuses from common/error.h's table. */
enum {
    EXIT_USAGE = 2,
    EXIT_FORMAT = 5,
    EXIT_CORRUPT = 6,
    EXIT_CRYPTO = 7,
    EXIT_SIGNATURE = 8,
    EXIT_KEY = 9,
    EXIT_NOT_FOUND = 10,
    EXIT_STORE = 11,
    EXIT_DB = 12,
    EXIT_TARGET = 13,
};

static sgt_pg_server *pg;
static char *source;
static char dir[] = "/tmp/sgt-bad-XXXXXX";
static char store_dir[512], store[600], owner_key[512], owner_pub[512], other_key[512],
    other_pub[512];
static char id_a[96], id_b[96], spec_a[128];

/* A fresh copy of the store to damage; returns its URL (static buffer). */
static const char *copy_store(const char *name, char path_out[512])
{
    static char url[600];
    char cmd[1400];
    snprintf(path_out, 512, "%s/%s", dir, name);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -a '%s' '%s'", path_out, store_dir, path_out);
    sgt_sh(cmd);
    snprintf(url, sizeof(url), "file://%s", path_out);
    return url;
}

static void pack_path(char out[700], const char *store_path, const char *id, int n)
{
    snprintf(out, 700, "%s/shards/bad/snapshots/%s/packs/%d.pack", store_path, id, n);
}

static void flip_byte(const char *path, long offset)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    ck_assert_int_ge(fd, 0);
    if (offset < 0)
        offset += lseek(fd, 0, SEEK_END);
    ck_assert_int_eq(pread(fd, &c, 1, offset), 1);
    c ^= 0x01;
    ck_assert_int_eq(pwrite(fd, &c, 1, offset), 1);
    close(fd);
}

static int relation_count(const char *conninfo)
{
    char *v = sgt_pg_value(conninfo, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
                                     "n.oid = c.relnamespace WHERE n.nspname NOT IN "
                                     "('pg_catalog', 'information_schema', 'pg_toast')");
    int n = atoi(v);
    free(v);
    return n;
}

/* A restore that must fail before touching the target: the target stays
 * empty. */
static void restore_fails_cleanly(const char *url, const char *key, const char *trust,
                                  const char *spec, int status, const char *const want[])
{
    char *target = sgt_pg_create_db(pg, "target");
    const char *argv[] = {"shardgate", "restore", "--store",  url,    "--key", key,
                          "--trust",   trust,     "--target", target, spec,    NULL};
    free(sgt_shardgate_fails(status, argv, want));
    ck_assert_int_eq(relation_count(target), 0);
    free(target);
}

static void verify_fails(const char *url, int level, int status, const char *const want[])
{
    char level_text[4];
    snprintf(level_text, sizeof(level_text), "%d", level);
    const char *argv[] = {"shardgate", "verify",  "--store", url,        "--trust", owner_pub,
                          "--key",     owner_key, "--level", level_text, spec_a,    NULL};
    free(sgt_shardgate_fails(status, argv, want));
}

/* Whether SHARD_DIR/<id>/packs/ holds a pack that is not a temporary file. */
static int committed_pack_exists(const char *shard_dir)
{
    DIR *d = opendir(shard_dir), *packs;
    struct dirent *e, *p;
    int found = 0;
    char path[1200];
    while (d && !found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/packs", shard_dir, e->d_name);
        if ((packs = opendir(path)) == NULL)
            continue;
        while (!found && (p = readdir(packs)) != NULL)
            found = p->d_name[0] != '.';
        closedir(packs);
    }
    if (d)
        closedir(d);
    return found;
}

START_TEST(wrong_key_cannot_open_the_snapshot)
{
    const char *want[] = {"not encrypted to key", NULL};
    restore_fails_cleanly(store, other_key, owner_pub, spec_a, EXIT_KEY, want);
    verify_fails(store, 1, 0, NULL); /* levels 0 and 1 need no secret key */
    const char *argv[] = {"shardgate", "verify",  "--store", store, "--trust", owner_pub,
                          "--key",     other_key, "--level", "2",   spec_a,    NULL};
    free(sgt_shardgate_fails(EXIT_KEY, argv, want));
}
END_TEST

START_TEST(untrusted_signer_is_refused)
{
    const char *want[] = {"not trusted", NULL};
    restore_fails_cleanly(store, owner_key, other_pub, spec_a, EXIT_SIGNATURE, want);
    const char *argv[] = {"shardgate", "verify",  "--store", store,  "--trust",
                          other_pub,   "--level", "0",       spec_a, NULL};
    free(sgt_shardgate_fails(EXIT_SIGNATURE, argv, want));
}
END_TEST

/* Member data offsets and sizes of a pack, read with libarchive. */
typedef struct member {
    char name[128];
    long offset, size;
} member;

static int list_members(member *out, int max, const char *pack)
{
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    int n = 0;
    archive_read_support_format_tar(a);
    ck_assert_int_eq(archive_read_open_filename(a, pack, 65536), ARCHIVE_OK);
    while (n < max && archive_read_next_header(a, &e) == ARCHIVE_OK) {
        snprintf(out[n].name, sizeof(out[n].name), "%s", archive_entry_pathname(e));
        out[n].size = (long)archive_entry_size(e);
        out[n].offset = (long)archive_read_header_position(a);
        n++;
        archive_read_data_skip(a);
    }
    archive_read_free(a);
    return n;
}

static void swap_ranges(const char *path, long a, long b, long len)
{
    int fd = open(path, O_RDWR);
    char *x = malloc((size_t)len), *y = malloc((size_t)len);
    ck_assert_int_eq(pread(fd, x, (size_t)len, a), len);
    ck_assert_int_eq(pread(fd, y, (size_t)len, b), len);
    ck_assert_int_eq(pwrite(fd, y, (size_t)len, a), len);
    ck_assert_int_eq(pwrite(fd, x, (size_t)len, b), len);
    close(fd);
    free(x);
    free(y);
}

/* Finds where a member's data starts: the sealed stream's magic after the
 * member's header position. */
static long data_offset(const char *path, long header_pos)
{
    char buf[4096];
    int fd = open(path, O_RDONLY);
    ssize_t n = pread(fd, buf, sizeof(buf), header_pos);
    close(fd);
    for (ssize_t i = 0; i + 4 <= n; i += 512)
        if (memcmp(buf + i, "SGS1", 4) == 0)
            return header_pos + i;
    ck_abort_msg("no sealed stream after header at %ld", header_pos);
    return -1;
}

START_TEST(flipped_byte_in_a_pack_is_caught)
{
    char path[512], pack[700];
    const char *url = copy_store("flipped-pack", path);
    member m[256];
    int n, i;
    pack_path(pack, path, id_a, 0);
    n = list_members(m, 256, pack);
    for (i = 0; i < n && !strstr(m[i].name, ".chunk"); i++)
        ;
    ck_assert_int_lt(i, n);
    /* Past the sealed stream's header and first length: ciphertext. */
    flip_byte(pack, data_offset(pack, m[i].offset) + 100);
    {
        const char *want[] = {"packs/0.pack", "does not match its SHA-256", NULL};
        verify_fails(url, 1, EXIT_CORRUPT, want);
    }
    verify_fails(url, 0, 0, NULL); /* sizes are intact */
    {
        /* Restore checks each chunk against its SHA-256 in the signed
         * manifest before opening it. */
        const char *want[] = {"chunk", "does not match its SHA-256", "partly restored", NULL};
        char *target = sgt_pg_create_db(pg, "flipped");
        const char *argv[] = {"shardgate", "restore", "--store",  url,    "--key", owner_key,
                              "--trust",   owner_pub, "--target", target, spec_a,  NULL};
        free(sgt_shardgate_fails(EXIT_CORRUPT, argv, want));
        free(target);
    }
}
END_TEST

START_TEST(flipped_byte_in_the_manifest_is_caught)
{
    char path[512], manifest[700];
    const char *url = copy_store("flipped-manifest", path);
    const char *want[] = {"manifest", NULL};
    snprintf(manifest, sizeof(manifest), "%s/shards/bad/snapshots/%s/manifest", path, id_a);
    /* Once in the header, once in the signature line's base64. */
    flip_byte(manifest, 60);
    restore_fails_cleanly(url, owner_key, owner_pub, spec_a, EXIT_SIGNATURE, want);
    flip_byte(manifest, 60);
    flip_byte(manifest, -10);
    restore_fails_cleanly(url, owner_key, owner_pub, spec_a, EXIT_SIGNATURE, want);
    verify_fails(url, 0, EXIT_SIGNATURE, want);
}
END_TEST

START_TEST(truncated_pack_is_caught_before_the_target_is_touched)
{
    char path[512], pack[700], cmd[800];
    const char *url = copy_store("truncated", path);
    const char *want[] = {"packs/1.pack", "truncated", NULL};
    pack_path(pack, path, id_a, 1);
    snprintf(cmd, sizeof(cmd), "truncate -s -100 '%s'", pack);
    sgt_sh(cmd);
    verify_fails(url, 0, EXIT_CORRUPT, want);
    restore_fails_cleanly(url, owner_key, owner_pub, spec_a, EXIT_CORRUPT, want);
}
END_TEST

START_TEST(missing_pack_is_caught_before_the_target_is_touched)
{
    char path[512], pack[700];
    const char *url = copy_store("missing", path);
    const char *want[] = {"packs/1.pack", "missing", NULL};
    pack_path(pack, path, id_a, 1);
    ck_assert_int_eq(unlink(pack), 0);
    verify_fails(url, 0, EXIT_NOT_FOUND, want);
    restore_fails_cleanly(url, owner_key, owner_pub, spec_a, EXIT_NOT_FOUND, want);
}
END_TEST

START_TEST(chunk_moved_to_another_position_is_caught)
{
    /* Two chunks of one table with the same sealed size (the `uniform`
     * table's rows are all alike, so it has such chunks): swapping them
     * leaves every size and offset valid, and only the associated data,
     * which binds each chunk's position, can tell. */
    char path[512], pack[700];
    const char *url = copy_store("moved", path);
    member m[256];
    int n, swapped = 0;
    for (int p = 0; !swapped; p++) {
        pack_path(pack, path, id_a, p);
        ck_assert_msg(access(pack, F_OK) == 0, "no two chunks of one table with the same size "
                                               "in one pack");
        n = list_members(m, 256, pack);
        for (int i = 0; i < n && !swapped; i++)
            for (int j = i + 1; j < n && !swapped; j++)
                if (m[i].size == m[j].size && strstr(m[i].name, ".chunk") &&
                    strncmp(m[i].name, m[j].name, strcspn(m[i].name, "/") + 1) == 0) {
                    swap_ranges(pack, data_offset(pack, m[i].offset),
                                data_offset(pack, m[j].offset), m[i].size);
                    swapped = 1;
                }
    }
    {
        /* Not verify: its level 1 hash would catch the swap first. Restore
         * checks sizes, then each chunk's SHA-256 (its associated data, which
         * binds its position, is the next line of defence: tests/unit). */
        const char *want[] = {"does not match its SHA-256", ", chunk ", NULL};
        char *target = sgt_pg_create_db(pg, "moved");
        const char *argv[] = {"shardgate", "restore", "--store",  url,    "--key", owner_key,
                              "--trust",   owner_pub, "--target", target, spec_a,  NULL};
        free(sgt_shardgate_fails(EXIT_CORRUPT, argv, want));
        free(target);
    }
}
END_TEST

START_TEST(pack_from_another_snapshot_is_caught)
{
    char path[512], pack_a[700], pack_b[700], cmd[1500];
    const char *url = copy_store("foreign", path);
    struct stat st_a, st_b;
    pack_path(pack_a, path, id_a, 0);
    pack_path(pack_b, path, id_b, 0);
    ck_assert_int_eq(stat(pack_a, &st_a), 0);
    ck_assert_int_eq(stat(pack_b, &st_b), 0);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", pack_b, pack_a);
    sgt_sh(cmd);
    /* Two snapshots of the same data usually have packs of one size, which
     * only the SHA-256 (level 1) tells apart; when the rows came out in
     * another order (a concurrent scan on a loaded machine moves where a
     * sequential scan starts), the size gives the pack away already. */
    if (st_a.st_size == st_b.st_size) {
        verify_fails(url, 0, 0, NULL);
    } else {
        const char *want[] = {"packs/0.pack has", "the manifest says", NULL};
        verify_fails(url, 0, EXIT_CORRUPT, want);
    }
    {
        /* restore reads every pack: the size, when it differs, stops it
         * first, as it stops verify at level 0 */
        const char *same_size[] = {"does not match its SHA-256", NULL};
        const char *other_size[] = {"packs/0.pack has", "the manifest says", NULL};
        const char *const *want = st_a.st_size == st_b.st_size ? same_size : other_size;
        char *target = sgt_pg_create_db(pg, "foreign");
        const char *argv[] = {"shardgate", "restore", "--store",  url,    "--key", owner_key,
                              "--trust",   owner_pub, "--target", target, spec_a,  NULL};
        free(sgt_shardgate_fails(EXIT_CORRUPT, argv, want));
        free(target);
    }
    {
        const char *want[] = {"packs/0.pack", NULL};
        verify_fails(url, 1, EXIT_CORRUPT, want);
    }
}
END_TEST

START_TEST(non_empty_target_is_refused)
{
    const char *want[] = {"not empty", "customers", NULL};
    const char *argv[] = {"shardgate", "restore", "--store",  store,  "--key", owner_key,
                          "--trust",   owner_pub, "--target", source, spec_a,  NULL};
    char *before = sgt_pg_value(source, "SELECT count(*) FROM customers");
    free(sgt_shardgate_fails(EXIT_TARGET, argv, want));
    char *after = sgt_pg_value(source, "SELECT count(*) FROM customers");
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}
END_TEST

START_TEST(unreachable_database_is_reported)
{
    char path[512];
    const char *url = copy_store("unreachable", path);
    const char *dsn = "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=3";
    const char *want[] = {"cannot connect to the source database", "port='1'", NULL};
    const char *argv[] = {"shardgate", "snapshot", "--dsn",   dsn,    "--store", url,
                          "--key",     owner_key,  "--shard", "gone", NULL};
    free(sgt_shardgate_fails(EXIT_DB, argv, want));
    const char *want_target[] = {"cannot connect to the restore target", NULL};
    const char *restore[] = {"shardgate", "restore", "--store",  store, "--key", owner_key,
                             "--trust",   owner_pub, "--target", dsn,   spec_a,  NULL};
    free(sgt_shardgate_fails(EXIT_DB, restore, want_target));
    /* A password never appears in a message. */
    const char *secret_dsn = "postgresql://u:hunter2@127.0.0.1:1/x?connect_timeout=3";
    const char *argv2[] = {"shardgate", "snapshot", "--dsn",   secret_dsn, "--store",
                           url,         "--key",    owner_key, NULL};
    char *err = sgt_shardgate_fails(EXIT_DB, argv2, NULL);
    ck_assert_msg(strstr(err, "hunter2") == NULL, "password leaked: %s", err);
    free(err);
}
END_TEST

START_TEST(unwritable_store_is_reported_and_nothing_committed)
{
    char blocker[600], url[700];
    /* A regular file where the store needs a directory stops root too. */
    snprintf(blocker, sizeof(blocker), "%s/not-a-dir", dir);
    FILE *f = fopen(blocker, "w");
    fclose(f);
    snprintf(url, sizeof(url), "file://%s/store", blocker);
    const char *want[] = {"not-a-dir", NULL};
    const char *argv[] = {"shardgate", "snapshot", "--dsn",   source, "--store", url,
                          "--key",     owner_key,  "--shard", "ro",   NULL};
    free(sgt_shardgate_fails(EXIT_STORE, argv, want));
}
END_TEST

START_TEST(insecure_or_wrong_key_files_are_refused)
{
    char loose[600], cmd[1300];
    snprintf(loose, sizeof(loose), "%s/loose.key", dir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0644 '%s'", owner_key, loose, loose);
    sgt_sh(cmd);
    {
        const char *want[] = {"loose.key", "group or others", NULL};
        const char *argv[] = {"shardgate", "snapshot", "--dsn", source, "--store",
                              store,       "--key",    loose,   NULL};
        free(sgt_shardgate_fails(EXIT_KEY, argv, want));
    }
    {
        const char *want[] = {"public key", NULL};
        const char *argv[] = {"shardgate", "snapshot", "--dsn",   source, "--store",
                              store,       "--key",    owner_pub, NULL};
        free(sgt_shardgate_fails(EXIT_FORMAT, argv, want));
    }
}
END_TEST

START_TEST(usage_errors_name_the_problem)
{
    const char *want_level[] = {"--level", NULL};
    const char *argv[] = {"shardgate", "verify",  "--store", store,  "--trust",
                          owner_pub,   "--level", "3",       spec_a, NULL};
    free(sgt_shardgate_fails(EXIT_USAGE, argv, want_level));
    const char *want_spec[] = {"invalid snapshot", NULL};
    const char *argv2[] = {"shardgate", "verify",  "--store", store,
                           "--trust",   owner_pub, "nope",    NULL};
    free(sgt_shardgate_fails(EXIT_USAGE, argv2, want_spec));
    const char *want_missing[] = {"not found or incomplete", NULL};
    const char *argv3[] = {"shardgate",
                           "verify",
                           "--store",
                           store,
                           "--trust",
                           owner_pub,
                           "bad/20200101T000000Z-00000000",
                           NULL};
    free(sgt_shardgate_fails(EXIT_NOT_FOUND, argv3, want_missing));
    const char *want_option[] = {"unknown option", NULL};
    const char *argv4[] = {"shardgate", "snapshots", "--stor", store, NULL};
    free(sgt_shardgate_fails(EXIT_USAGE, argv4, want_option));
}
END_TEST

/* A snapshot of shard `name` into DIR/NAME-store, started in the background
 * with small chunks and packs, returned once its first pack is committed.
 * The store URL goes to url; the process's stdout and stderr to
 * DIR/NAME-out/. */
static pid_t snapshot_until_first_pack(const char *name, char url[700], char out_dir[700])
{
    char path[600], shard_dir[800];
    pid_t pid;
    snprintf(path, sizeof(path), "%s/%s-store", dir, name);
    snprintf(url, 700, "file://%s", path);
    snprintf(shard_dir, sizeof(shard_dir), "%s/shards/%s/snapshots", path, name);
    snprintf(out_dir, 700, "%s/%s-out", dir, name);
    mkdir(out_dir, 0700);
    const char *argv[] = {"shardgate",    "snapshot", "--dsn",       source,  "--store", url,
                          "--key",        owner_key,  "--shard",     name,    "--jobs",  "1",
                          "--chunk-size", "16KiB",    "--pack-size", "64KiB", NULL};
    pid = sgt_spawn(argv, NULL, out_dir);
    while (!committed_pack_exists(shard_dir)) {
        int status;
        struct timespec ts = {0, 1000000};
        ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0, "snapshot ended before its first pack");
        nanosleep(&ts, NULL);
    }
    return pid;
}

START_TEST(killed_snapshot_is_never_restorable_and_a_later_one_works)
{
    char url[700], out_dir[700];
    pid_t pid = snapshot_until_first_pack("killed", url, out_dir);
    kill(pid, SIGKILL);
    ck_assert_int_eq(sgt_wait(pid), 128 + SIGKILL);

    const char *list[] = {"shardgate", "snapshots", "--store", url, NULL};
    char *out = sgt_shardgate(0, list);
    ck_assert_msg(strstr(out, "incomplete") && !strstr(out, " complete"), "listing: %s", out);
    free(out);
    {
        const char *want[] = {"no complete snapshot", NULL};
        restore_fails_cleanly(url, owner_key, owner_pub, "killed/latest", EXIT_NOT_FOUND, want);
    }
    const char *again[] = {"shardgate", "snapshot", "--dsn",   source,   "--store", url,
                           "--key",     owner_key,  "--shard", "killed", NULL};
    free(sgt_shardgate(0, again));
    char *target = sgt_pg_create_db(pg, "after_kill");
    const char *restore[] = {"shardgate", "restore", "--store",  url,    "--key",         owner_key,
                             "--trust",   owner_pub, "--target", target, "killed/latest", NULL};
    free(sgt_shardgate(0, restore));
    free(target);
}
END_TEST

/* How many files are under path, temporary ones included. */
static int count_files(const char *path)
{
    char cmd[800], *out;
    sgt_result r;
    int n;
    snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", path);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    sgt_run(&r, argv, NULL);
    out = r.out;
    n = atoi(out);
    sgt_result_free(&r);
    return n;
}

START_TEST(interrupted_snapshot_stops_and_removes_what_it_stored)
{
    char url[700], out_dir[700], *err;
    pid_t pid = snapshot_until_first_pack("stopped", url, out_dir);
    kill(pid, SIGINT);
    ck_assert_int_eq(sgt_wait(pid), 16);
    snprintf(out_dir + strlen(out_dir), sizeof(out_dir) - strlen(out_dir), "/stderr");
    err = sgt_read_file(out_dir, NULL);
    ck_assert_msg(strstr(err, "interrupted by SIGINT"), "stderr: %s", err);
    free(err);
    ck_assert_int_eq(count_files(url + strlen("file://")), 0);
}
END_TEST

START_TEST(table_locked_by_ddl_is_not_waited_for)
{
    /* An open transaction holding ACCESS EXCLUSIVE, as a long ALTER TABLE
     * would: the snapshot gives up after --lock-timeout, naming the table. */
    PGconn *ddl = PQconnectdb(source);
    PGresult *res = PQexec(ddl, "BEGIN; LOCK TABLE uniform IN ACCESS EXCLUSIVE MODE");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    char path[512];
    const char *url = copy_store("locked", path);
    const char *want[] = {"cannot lock table \"public\".\"uniform\"", "conflicting lock", NULL};
    const char *argv[] = {"shardgate", "snapshot", "--dsn",   source,   "--store",        url,
                          "--key",     owner_key,  "--shard", "locked", "--lock-timeout", "200",
                          NULL};
    free(sgt_shardgate_fails(EXIT_DB, argv, want));
    PQfinish(ddl);
}
END_TEST

/* Whether a backend other than `self` holds a granted lock on `table`. */
static int table_locked_by_other(PGconn *conn, const char *table)
{
    char sql[256];
    PGresult *res;
    int n;
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_locks WHERE relation = '%s'::regclass AND granted "
             "AND pid <> pg_backend_pid()",
             table);
    res = PQexec(conn, sql);
    n = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n > 0;
}

START_TEST(ddl_queued_during_the_snapshot_does_not_deadlock_it)
{
    /* DDL that asks for ACCESS EXCLUSIVE once the coordinator holds its
     * lock queues behind it; a reader or pg_dump that then waited would
     * queue behind the DDL, and nothing would move. The snapshot must fail
     * promptly instead (which of the two notices first may vary), naming the
     * table, and store no manifest. */
    char path[600], url[700], out_dir[700], *err;
    PGconn *ddl = PQconnectdb(source), *watch = PQconnectdb(source);
    pid_t pid;
    int status;
    snprintf(path, sizeof(path), "%s/ddl-store", dir);
    snprintf(url, sizeof(url), "file://%s", path);
    snprintf(out_dir, sizeof(out_dir), "%s/ddl-out", dir);
    mkdir(out_dir, 0700);
    const char *argv[] = {"shardgate",    "snapshot", "--dsn",          source, "--store", url,
                          "--key",        owner_key,  "--shard",        "ddl",  "--jobs",  "1",
                          "--chunk-size", "16KiB",    "--lock-timeout", "300",  NULL};
    pid = sgt_spawn(argv, NULL, out_dir);
    while (!table_locked_by_other(watch, "uniform")) {
        struct timespec ts = {0, 500000};
        ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0, "snapshot ended before the DDL");
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(PQsendQuery(ddl, "ALTER TABLE uniform ADD COLUMN added integer"), 1);
    status = sgt_wait(pid);
    snprintf(out_dir + strlen(out_dir), sizeof(out_dir) - strlen(out_dir), "/stderr");
    err = sgt_read_file(out_dir, NULL);
    ck_assert_msg(status == EXIT_DB || status == 15, "exit %d: %s", status, err);
    ck_assert_msg(strstr(err, "uniform") && strcasestr(err, "lock"), "stderr: %s", err);
    free(err);
    ck_assert_int_eq(count_files(path), 0);
    /* The DDL goes through once the snapshot has let go. */
    PGresult *res;
    while ((res = PQgetResult(ddl)) != NULL) {
        ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
    }
    res = PQexec(ddl, "ALTER TABLE uniform DROP COLUMN added");
    PQclear(res);
    PQfinish(ddl);
    PQfinish(watch);
}
END_TEST

START_TEST(large_objects_stop_the_snapshot)
{
    /* Large objects live outside every table a snapshot copies: losing them
     * silently would leave oid columns pointing at nothing. */
    char *db = sgt_pg_create_db(pg, "lo"), path[512];
    const char *url = copy_store("lo", path);
    sgt_pg_exec(db, "CREATE TABLE docs (id int, body oid);"
                    "INSERT INTO docs SELECT 1, lo_from_bytea(0, 'hello')");
    const char *want[] = {"1 large objects", NULL};
    const char *argv[] = {"shardgate", "snapshot", "--dsn",   db,   "--store", url,
                          "--key",     owner_key,  "--shard", "lo", NULL};
    free(sgt_shardgate_fails(EXIT_DB, argv, want));
    ck_assert_int_eq(count_files(path) - count_files(store_dir), 0);
    free(db);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("bad_input");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"wrong_key", wrong_key_cannot_open_the_snapshot},
        {"untrusted_signer", untrusted_signer_is_refused},
        {"flipped_pack", flipped_byte_in_a_pack_is_caught},
        {"flipped_manifest", flipped_byte_in_the_manifest_is_caught},
        {"truncated_pack", truncated_pack_is_caught_before_the_target_is_touched},
        {"missing_pack", missing_pack_is_caught_before_the_target_is_touched},
        {"moved_chunk", chunk_moved_to_another_position_is_caught},
        {"foreign_pack", pack_from_another_snapshot_is_caught},
        {"non_empty_target", non_empty_target_is_refused},
        {"unreachable_database", unreachable_database_is_reported},
        {"unwritable_store", unwritable_store_is_reported_and_nothing_committed},
        {"key_files", insecure_or_wrong_key_files_are_refused},
        {"usage", usage_errors_name_the_problem},
        {"killed_snapshot", killed_snapshot_is_never_restorable_and_a_later_one_works},
        {"interrupted_snapshot", interrupted_snapshot_stops_and_removes_what_it_stored},
        {"locked_table", table_locked_by_ddl_is_not_waited_for},
        {"ddl_during_snapshot", ddl_queued_during_the_snapshot_does_not_deadlock_it},
        {"large_objects", large_objects_stop_the_snapshot},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

static void snapshot_or_exit(char out_id[96])
{
    const char *argv[] = {"shardgate", "snapshot", "--dsn", source, "--store", store, "--key",
                          owner_key, "--shard", "bad",
                          /* One job: both snapshots get the same pack layout. */
                          "--jobs", "1", "--chunk-size", "64KiB", "--pack-size", "256KiB", NULL};
    char *out = sgt_shardgate_or_exit(argv);
    out[strcspn(out, "\n")] = '\0';
    snprintf(out_id, 96, "%s", out);
    free(out);
}

int main(void)
{
    char name[600];
    SRunner *sr;
    int failed;

    pg = sgt_pg_start();
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(store_dir, sizeof(store_dir), "%s/store", dir);
    snprintf(store, sizeof(store), "file://%s", store_dir);
    source = sgt_pg_create_db(pg, "source");
    sgt_sql_or_exit(source,
                    "CREATE TABLE customers (id int PRIMARY KEY, name text);"
                    "INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 20000) g;"
                    "CREATE TABLE uniform (v text);"
                    "INSERT INTO uniform SELECT repeat('x', 100) FROM generate_series(1, 3000);"
                    "CREATE TABLE filler (id int, payload text);"
                    "INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 60000) g;");
    sgt_keygen_or_exit(dir, "owner", owner_key, owner_pub);
    sgt_keygen_or_exit(dir, "other", other_key, other_pub);
    snapshot_or_exit(id_a);
    snapshot_or_exit(id_b);
    snprintf(spec_a, sizeof(spec_a), "bad/%s", id_a);

    sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    snprintf(name, sizeof(name), "rm -rf '%s'", dir);
    sgt_sh(name);
    sgt_pg_stop(pg);
    free(source);
    return failed ? 1 : 0;
}
