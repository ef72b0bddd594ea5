/* The local sandbox driver with real PostgreSQL 15 servers: what it
 * serves, the namespaces and their fallback, independence, missing
 * binaries, failed starts, interrupts, allocation failures, and gc of what
 * killed owners leave behind. Each test gets its own TMPDIR, so that its
 * sandboxes and gc runs see nothing of other tests. */
#include "restore/sandbox.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/interrupt.h"
#include "common/mem.h"
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#define WARNING_TEXT "without namespaces"

static char *root; /* this test's directory: tmp/ (its TMPDIR) and scratch files */
static char *tmp;

static void setup(void)
{
    root = sgt_asprintf("/tmp/sgt-sandbox-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    /* The server runs as the postgres user and must reach its directory. */
    ck_assert_int_eq(chmod(root, 0755), 0);
    tmp = sgt_asprintf("%s/tmp", root);
    ck_assert_int_eq(mkdir(tmp, 0755), 0);
    setenv("TMPDIR", tmp, 1);
    unsetenv("SHARDGATE_SANDBOX_NAMESPACES");
}

static void teardown(void)
{
    sgt_remove_tree(root);
    free(root);
    free(tmp);
}

static sg_sandbox_options options(int major)
{
    sg_sandbox_options o = {
        .driver = "local", .pg_major = major, .run_id = "run-1", .shard = "shard-a"};
    return o;
}

static sg_sandbox *create_ok(void)
{
    sg_sandbox_options o = options(15);
    sg_sandbox *sb = NULL;
    sg_error err = {0};
    int rc = sg_sandbox_create(&sb, &o, &err);
    ck_assert_msg(rc == 0, "create: %s\n%s", err.message, err.detail);
    return sb;
}

/* The sandbox's directory: the host= of its conninfo. */
static char *dir_of(const sg_sandbox *sb)
{
    const char *host = strstr(sg_sandbox_conninfo(sb), "host=");
    ck_assert_ptr_nonnull(host);
    host += 5;
    return sgt_asprintf("%.*s", (int)strcspn(host, " "), host);
}

static size_t entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Processes whose working directory is under prefix: a server (postmaster
 * and backends work in the data directory) or initdb. 0 if none; the
 * first one found otherwise. */
static pid_t proc_under(const char *prefix)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = 0;
    ck_assert_ptr_nonnull(d);
    while (!found && (e = readdir(d)) != NULL) {
        char link[64], cwd[4096];
        ssize_t n;
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(link, sizeof(link), "/proc/%s/cwd", e->d_name);
        if ((n = readlink(link, cwd, sizeof(cwd) - 1)) <= 0)
            continue;
        cwd[n] = '\0';
        if (strncmp(cwd, prefix, strlen(prefix)) == 0)
            found = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return found;
}

/* For what ends asynchronously; the test timeout bounds it. */
static void wait_no_procs(const char *prefix)
{
    while (proc_under(prefix) != 0)
        sgt_sleep_ms(10);
}

static char *ns_link(pid_t pid, const char *ns)
{
    char path[64], target[256];
    ssize_t n;
    if (pid)
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, ns);
    else
        snprintf(path, sizeof(path), "/proc/self/ns/%s", ns);
    n = readlink(path, target, sizeof(target) - 1);
    ck_assert_int_gt(n, 0);
    target[n] = '\0';
    return sgt_asprintf("%s", target);
}

static bool write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    bool ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Whether this kernel lets this process make what the driver asks for,
 * found out independently of the driver. */
static bool kernel_allows_namespaces(void)
{
    int status;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC;
        uid_t uid = geteuid();
        gid_t gid = getegid();
        char map[64];
        if (uid != 0)
            flags |= CLONE_NEWUSER;
        if (unshare(flags) != 0)
            _exit(1);
        if (uid != 0) {
            snprintf(map, sizeof(map), "%d %d 1", (int)uid, (int)uid);
            if (!write_text("/proc/self/setgroups", "deny") ||
                !write_text("/proc/self/uid_map", map))
                _exit(1);
            snprintf(map, sizeof(map), "%d %d 1", (int)gid, (int)gid);
            if (!write_text("/proc/self/gid_map", map))
                _exit(1);
        }
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
            mount("probe", "/dev/shm", "tmpfs", 0, NULL) != 0)
            _exit(1);
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* stderr into a file while the driver logs. */
typedef struct capture {
    int saved;
    char *path;
} capture;

static void capture_start(capture *c)
{
    int fd;
    c->path = sgt_asprintf("%s/stderr.txt", root);
    fflush(stderr);
    c->saved = dup(2);
    fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    dup2(fd, 2);
    close(fd);
}

/* Stops capturing; returns what was logged, to free(). */
static char *capture_stop(capture *c)
{
    char *text;
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    text = sgt_read_file(c->path, NULL);
    ck_assert_ptr_nonnull(text);
    free(c->path);
    return text;
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void assert_serves_15(const char *conninfo)
{
    char *version = sgt_pg_value(conninfo, "SELECT current_setting('server_version_num')");
    char *fsync = sgt_pg_value(conninfo, "SHOW fsync");
    char *fpw = sgt_pg_value(conninfo, "SHOW full_page_writes");
    char *listen = sgt_pg_value(conninfo, "SHOW listen_addresses");
    ck_assert_int_eq(strncmp(version, "15", 2), 0);
    ck_assert_str_eq(fsync, "off");
    ck_assert_str_eq(fpw, "off");
    ck_assert_str_eq(listen, "");
    free(version);
    free(fsync);
    free(fpw);
    free(listen);
}

/* The postmaster's pid as its postmaster.pid records it. */
static int recorded_postmaster_pid(const char *dir)
{
    char *path = sgt_asprintf("%s/data/postmaster.pid", dir);
    char *text = sgt_read_file(path, NULL);
    int pid;
    ck_assert_ptr_nonnull(text);
    pid = atoi(text);
    free(text);
    free(path);
    return pid;
}

static void assert_gone(const char *dir)
{
    struct stat st;
    ck_assert_int_ne(lstat(dir, &st), 0);
    ck_assert_int_eq(proc_under(dir), 0);
    ck_assert_int_eq(entries(tmp), 0);
}

START_TEST(serves_in_namespaces_and_vanishes)
{
    bool namespaces = kernel_allows_namespaces();
    char *prefix = sgt_asprintf("%s/shardgate-sandbox-", tmp);
    capture c;
    capture_start(&c);
    sg_sandbox *sb = create_ok();
    char *logged = capture_stop(&c);
    char *dir = dir_of(sb);
    char *data = sgt_asprintf("%s/data", dir);

    ck_assert_str_eq(sg_sandbox_driver_name(sb), "local");
    ck_assert_int_eq(strncmp(dir, prefix, strlen(prefix)), 0);
    ck_assert_ptr_nonnull(strstr(sg_sandbox_conninfo(sb), "port=5432 user=postgres"));
    assert_serves_15(sg_sandbox_conninfo(sb));

    pid_t server = proc_under(data);
    ck_assert_int_gt(server, 0);
    char *net = ns_link(server, "net"), *self_net = ns_link(0, "net");
    if (namespaces) {
        /* Its supervisor is pid 1 there, and the postmaster its first child. */
        ck_assert_int_eq(recorded_postmaster_pid(dir), 2);
        ck_assert_str_ne(net, self_net);
        ck_assert_ptr_null(strstr(logged, WARNING_TEXT));
    } else {
        ck_assert_str_eq(net, self_net);
        ck_assert_ptr_nonnull(strstr(logged, WARNING_TEXT));
    }

    sg_sandbox_destroy(sb);
    assert_gone(dir);
    free(net);
    free(self_net);
    free(logged);
    free(data);
    free(dir);
    free(prefix);
}
END_TEST

START_TEST(fallback_serves_and_warns_once)
{
    setenv("SHARDGATE_SANDBOX_NAMESPACES", "off", 1);
    capture c;
    capture_start(&c);
    sg_sandbox *a = create_ok();
    sg_sandbox *b = create_ok();
    char *logged = capture_stop(&c);
    char *dir_a = dir_of(a), *dir_b = dir_of(b);
    char *data = sgt_asprintf("%s/data", dir_a);

    assert_serves_15(sg_sandbox_conninfo(a));
    assert_serves_15(sg_sandbox_conninfo(b));
    ck_assert_int_eq(count(logged, WARNING_TEXT), 1);
    ck_assert_ptr_nonnull(strstr(logged, "SHARDGATE_SANDBOX_NAMESPACES=off"));
    pid_t server = proc_under(data);
    ck_assert_int_gt(server, 0);
    ck_assert_int_eq(recorded_postmaster_pid(dir_a), server);
    char *net = ns_link(server, "net"), *self_net = ns_link(0, "net");
    ck_assert_str_eq(net, self_net);

    sg_sandbox_destroy(a);
    sg_sandbox_destroy(b);
    ck_assert_int_eq(proc_under(dir_a), 0);
    ck_assert_int_eq(proc_under(dir_b), 0);
    ck_assert_int_eq(entries(tmp), 0);
    free(net);
    free(self_net);
    free(data);
    free(dir_a);
    free(dir_b);
    free(logged);
}
END_TEST

typedef struct creation {
    pthread_t thread;
    sg_sandbox *sb;
    sg_error err;
    int rc;
} creation;

static void *create_thread(void *arg)
{
    creation *c = arg;
    sg_sandbox_options o = options(15);
    c->rc = sg_sandbox_create(&c->sb, &o, &c->err);
    return NULL;
}

static void two_at_once(void)
{
    creation c[2];
    memset(c, 0, sizeof(c));
    /* Created from two threads at the same time, as a drill does. */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&c[i].thread, NULL, create_thread, &c[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(c[i].thread, NULL);
        ck_assert_msg(c[i].rc == 0, "create %d: %s\n%s", i, c[i].err.message, c[i].err.detail);
    }
    const char *a = sg_sandbox_conninfo(c[0].sb), *b = sg_sandbox_conninfo(c[1].sb);
    ck_assert_str_ne(a, b);
    sgt_pg_exec(a, "CREATE TABLE only_in_a (id int); INSERT INTO only_in_a VALUES (1)");
    char *in_a = sgt_pg_value(a, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'");
    char *in_b = sgt_pg_value(b, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'");
    ck_assert_str_eq(in_a, "1");
    ck_assert_str_eq(in_b, "0");

    char *dir_a = dir_of(c[0].sb);
    sg_sandbox_destroy(c[0].sb);
    ck_assert_int_eq(proc_under(dir_a), 0);
    char *one = sgt_pg_value(b, "SELECT 1");
    ck_assert_str_eq(one, "1");
    sg_sandbox_destroy(c[1].sb);
    ck_assert_int_eq(entries(tmp), 0);
    free(one);
    free(dir_a);
    free(in_a);
    free(in_b);
}

START_TEST(two_at_once_are_independent)
{
    two_at_once();
}
END_TEST

START_TEST(two_at_once_without_namespaces)
{
    setenv("SHARDGATE_SANDBOX_NAMESPACES", "off", 1);
    two_at_once();
}
END_TEST

static int create_fails(sg_error *err, const sg_sandbox_options *o)
{
    sg_sandbox *sb = (sg_sandbox *)1;
    int rc = sg_sandbox_create(&sb, o, err);
    ck_assert_ptr_null(sb);
    ck_assert_int_eq(entries(tmp), 0);
    ck_assert_int_eq(proc_under(tmp), 0);
    return rc;
}

START_TEST(missing_major_is_not_found)
{
    sg_sandbox_options o = options(99);
    sg_error err = {0};
    ck_assert_int_eq(create_fails(&err, &o), SG_E_NOT_FOUND);
    ck_assert_str_eq(err.message, "no PostgreSQL 99 server binaries found");
    ck_assert_ptr_nonnull(strstr(err.detail, "/usr/lib/postgresql/99/bin"));
    ck_assert_ptr_nonnull(strstr(err.hint, "postgresql-99"));
    ck_assert_ptr_nonnull(strstr(err.hint, "--pg-bindir"));
}
END_TEST

START_TEST(empty_bindir_is_not_found)
{
    char *empty = sgt_asprintf("%s/empty", root);
    ck_assert_int_eq(mkdir(empty, 0755), 0);
    sg_sandbox_options o = options(15);
    sg_error err = {0};
    o.pg_bindir = empty;
    ck_assert_int_eq(create_fails(&err, &o), SG_E_NOT_FOUND);
    ck_assert_str_eq(err.message, "no PostgreSQL 15 server binaries found");
    ck_assert_ptr_nonnull(strstr(err.detail, empty));
    ck_assert_ptr_nonnull(strstr(err.detail, "postgres or initdb missing"));
    free(empty);
}
END_TEST

START_TEST(bindir_of_another_major_is_not_found)
{
    char *bindir = sgt_pg_bindir();
    sg_sandbox_options o = options(16);
    sg_error err = {0};
    o.pg_bindir = bindir;
    ck_assert_int_eq(create_fails(&err, &o), SG_E_NOT_FOUND);
    ck_assert_str_eq(err.message, "no PostgreSQL 16 server binaries found");
    ck_assert_ptr_nonnull(strstr(err.detail, bindir));
    /* What it found there instead. */
    ck_assert_ptr_nonnull(strstr(err.detail, "(PostgreSQL) 15."));
    free(bindir);
}
END_TEST

static void write_script(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(path, 0755), 0);
}

/* A bindir with the real binaries except the named one, which is script. */
static char *fake_bindir(const char *replaced, const char *script)
{
    char *real = sgt_pg_bindir();
    char *dir = sgt_asprintf("%s/bin", root);
    const char *tools[] = {"postgres", "initdb"};
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    for (size_t i = 0; i < 2; i++) {
        char *path = sgt_asprintf("%s/%s", dir, tools[i]);
        if (strcmp(tools[i], replaced) == 0) {
            char *text = sgt_asprintf(script, real);
            write_script(path, text);
            free(text);
        } else {
            char *target = sgt_asprintf("%s/%s", real, tools[i]);
            ck_assert_int_eq(symlink(target, path), 0);
            free(target);
        }
        free(path);
    }
    free(real);
    return dir;
}

START_TEST(failed_initdb_is_reported)
{
    char *bindir = fake_bindir("initdb", "#!/bin/sh\n"
                                         "echo \"initdb: error: the disk is made of cheese\"\n"
                                         "exit 1\n");
    sg_sandbox_options o = options(15);
    sg_error err = {0};
    o.pg_bindir = bindir;
    ck_assert_int_eq(create_fails(&err, &o), SG_E_PROCESS);
    ck_assert_str_eq(err.message, "initdb for the sandbox exited with status 1");
    ck_assert_ptr_nonnull(strstr(err.detail, "the disk is made of cheese"));
    free(bindir);
}
END_TEST

static const char failing_postgres[] = "#!/bin/sh\n"
                                       "if [ \"$1\" = --version ]; then\n"
                                       "    exec %s/postgres --version\n"
                                       "fi\n"
                                       "echo \"FATAL:  the server is made of cheese\" >&2\n"
                                       "exit 1\n";

START_TEST(failed_server_start_is_reported)
{
    char *bindir = fake_bindir("postgres", failing_postgres);
    sg_sandbox_options o = options(15);
    sg_error err = {0};
    o.pg_bindir = bindir;
    ck_assert_int_eq(create_fails(&err, &o), SG_E_PROCESS);
    ck_assert_str_eq(err.message, "the sandbox server exited with status 1 during startup");
    ck_assert_ptr_nonnull(strstr(err.detail, "the server is made of cheese"));

    setenv("SHARDGATE_SANDBOX_NAMESPACES", "off", 1);
    sg_error_clear(&err);
    ck_assert_int_eq(create_fails(&err, &o), SG_E_PROCESS);
    ck_assert_str_eq(err.message, "the sandbox server exited with status 1 during startup");
    ck_assert_ptr_nonnull(strstr(err.detail, "the server is made of cheese"));
    free(bindir);
}
END_TEST

/* Sends SIGINT to this process once initdb (a stand-in that never ends)
 * has started, so that it arrives while create waits. */
static void *interrupt_when_started(void *arg)
{
    (void)arg;
    for (;;) {
        DIR *d = opendir(tmp);
        struct dirent *e;
        bool started = false;
        while (d && !started && (e = readdir(d)) != NULL) {
            char *flag = sgt_asprintf("%s/%s/data.started", tmp, e->d_name);
            started = access(flag, F_OK) == 0;
            free(flag);
        }
        if (d)
            closedir(d);
        if (started)
            break;
        sgt_sleep_ms(10);
    }
    kill(getpid(), SIGINT);
    return NULL;
}

START_TEST(interrupt_during_create_leaves_nothing)
{
    char *bindir = fake_bindir("initdb", "#!/bin/sh\n"
                                         ": > \"$2.started\"\n"
                                         "exec sleep 600\n");
    sg_sandbox_options o = options(15);
    sg_error err = {0};
    pthread_t thread;
    o.pg_bindir = bindir;
    sg_interrupt_install();
    ck_assert_int_eq(pthread_create(&thread, NULL, interrupt_when_started, NULL), 0);
    ck_assert_int_eq(create_fails(&err, &o), SG_E_INTERRUPTED);
    pthread_join(thread, NULL);
    ck_assert_str_eq(err.message, "interrupted by SIGINT");
    free(bindir);
}
END_TEST

START_TEST(allocation_failures_leave_nothing)
{
    sg_sandbox_options o = options(15);
    sg_sandbox *sb = NULL;
    for (long n = 0;; n++) {
        sg_error err = {0};
        int rc;
        ck_assert_int_lt(n, 1000);
        sg_mem_fail_after(n);
        rc = sg_sandbox_create(&sb, &o, &err);
        sg_mem_fail_reset();
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, SG_E_NOMEM);
        ck_assert_str_eq(err.message, "out of memory");
        ck_assert_int_eq(entries(tmp), 0);
    }
    assert_serves_15(sg_sandbox_conninfo(sb));
    sg_sandbox_destroy(sb);
    ck_assert_int_eq(entries(tmp), 0);
}
END_TEST

START_TEST(too_long_a_socket_path_is_refused)
{
    char *deep = sgt_asprintf("%s/%0100d", root, 0);
    ck_assert_int_eq(mkdir(deep, 0755), 0);
    setenv("TMPDIR", deep, 1);
    sg_sandbox_options o = options(15);
    sg_sandbox *sb = (sg_sandbox *)1;
    sg_error err = {0};
    ck_assert_int_eq(sg_sandbox_create(&sb, &o, &err), SG_E_USAGE);
    ck_assert_ptr_null(sb);
    ck_assert_ptr_nonnull(strstr(err.message, deep));
    ck_assert_ptr_nonnull(strstr(err.message, "too long"));
    ck_assert_ptr_nonnull(strstr(err.hint, "TMPDIR"));
    ck_assert_int_eq(entries(deep), 0);
    free(deep);
}
END_TEST

/* Creates a sandbox in a child process and kills that process outright;
 * returns the sandbox's conninfo. */
static char *abandon_sandbox(void)
{
    int fds[2];
    char buf[4096];
    ssize_t n;
    size_t used = 0;
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sg_sandbox_options o = options(15);
        sg_sandbox *sb = NULL;
        sg_error err = {0};
        close(fds[0]);
        if (sg_sandbox_create(&sb, &o, &err) != 0) {
            dprintf(fds[1], "error: %s\n", err.message);
            _exit(1);
        }
        dprintf(fds[1], "%s\n", sg_sandbox_conninfo(sb));
        for (;;)
            pause();
    }
    close(fds[1]);
    while (used < sizeof(buf) - 1 && (n = read(fds[0], buf + used, sizeof(buf) - 1 - used)) > 0) {
        used += (size_t)n;
        if (memchr(buf, '\n', used))
            break;
    }
    close(fds[0]);
    buf[used] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    ck_assert_msg(strncmp(buf, "host=", 5) == 0, "the owner could not create: %s", buf);
    return sgt_asprintf("%s", buf);
}

static char *host_of(const char *conninfo)
{
    const char *host = conninfo + 5;
    return sgt_asprintf("%.*s", (int)strcspn(host, " "), host);
}

START_TEST(gc_removes_what_a_killed_owner_left)
{
    bool namespaces = kernel_allows_namespaces();
    char *conninfo = abandon_sandbox();
    char *dir = host_of(conninfo);
    sg_error err = {0};
    size_t removed = 99;

    ck_assert_int_eq(entries(tmp), 1);
    if (namespaces)
        wait_no_procs(dir); /* the namespace dies with its owner */
    else
        ck_assert_int_eq(PQping(conninfo), PQPING_OK);
    ck_assert_int_eq(sg_sandbox_gc(&removed, "local", &err), 0);
    ck_assert_uint_eq(removed, 1);
    assert_gone(dir);
    free(dir);
    free(conninfo);
}
END_TEST

START_TEST(gc_stops_the_server_a_killed_owner_left_without_namespaces)
{
    setenv("SHARDGATE_SANDBOX_NAMESPACES", "off", 1);
    char *conninfo = abandon_sandbox();
    char *dir = host_of(conninfo);
    sg_error err = {0};
    size_t removed = 99;

    /* It outlives its owner: gc has a server to stop. */
    ck_assert_int_eq(PQping(conninfo), PQPING_OK);
    ck_assert_int_gt(proc_under(dir), 0);
    ck_assert_int_eq(sg_sandbox_gc(&removed, "local", &err), 0);
    ck_assert_uint_eq(removed, 1);
    assert_gone(dir);
    ck_assert_int_ne(PQping(conninfo), PQPING_OK);
    free(dir);
    free(conninfo);
}
END_TEST

static void write_marker(const char *dir, int pid, const char *start)
{
    char *path = sgt_asprintf("%s/io.shardgate.sandbox", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "shardgate-sandbox 1\npid %d\nstart %s\nrun r\nshard s\n", pid, start);
    ck_assert_int_eq(fclose(f), 0);
    free(path);
}

START_TEST(gc_leaves_live_owners_and_fresh_directories_alone)
{
    sg_sandbox *sb = create_ok();
    char *unmarked = sgt_asprintf("%s/shardgate-sandbox-unmarked", tmp);
    char *other = sgt_asprintf("%s/not-a-sandbox", tmp);
    sg_error err = {0};
    size_t removed = 99;
    struct stat st;
    ck_assert_int_eq(mkdir(unmarked, 0700), 0);
    ck_assert_int_eq(mkdir(other, 0700), 0);

    ck_assert_int_eq(sg_sandbox_gc(&removed, "local", &err), 0);
    ck_assert_uint_eq(removed, 0);
    ck_assert_int_eq(stat(unmarked, &st), 0);
    ck_assert_int_eq(stat(other, &st), 0);
    char *one = sgt_pg_value(sg_sandbox_conninfo(sb), "SELECT 1");
    ck_assert_str_eq(one, "1");

    sg_sandbox_destroy(sb);
    free(one);
    free(unmarked);
    free(other);
}
END_TEST

START_TEST(gc_tells_owners_by_pid_and_start_time)
{
    char *dead = sgt_asprintf("%s/shardgate-sandbox-dead", tmp);
    char *reused = sgt_asprintf("%s/shardgate-sandbox-reused", tmp);
    sg_error err = {0};
    size_t removed = 99;
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0)
        _exit(0);
    ck_assert_int_eq(waitpid(child, NULL, 0), child);
    ck_assert_int_eq(mkdir(dead, 0700), 0);
    ck_assert_int_eq(mkdir(reused, 0700), 0);
    write_marker(dead, (int)child, "1");
    /* A live pid that started at another time is not the owner. */
    write_marker(reused, (int)getpid(), "1");

    ck_assert_int_eq(sg_sandbox_gc(&removed, "local", &err), 0);
    ck_assert_uint_eq(removed, 2);
    ck_assert_int_eq(entries(tmp), 0);
    free(dead);
    free(reused);
}
END_TEST

START_TEST(gc_of_a_missing_tmpdir_is_an_error)
{
    char *missing = sgt_asprintf("%s/missing", root);
    sg_error err = {0};
    size_t removed = 99;
    setenv("TMPDIR", missing, 1);
    ck_assert_int_eq(sg_sandbox_gc(&removed, "local", &err), SG_E_IO);
    ck_assert_uint_eq(removed, 0);
    ck_assert_ptr_nonnull(strstr(err.message, missing));
    free(missing);
}
END_TEST

static TCase *tcase(const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test);
    return tc;
}

int main(void)
{
    Suite *s = suite_create("sandbox_local");
    suite_add_tcase(s, tcase("namespaces", serves_in_namespaces_and_vanishes));
    suite_add_tcase(s, tcase("fallback", fallback_serves_and_warns_once));
    suite_add_tcase(s, tcase("two_at_once", two_at_once_are_independent));
    suite_add_tcase(s, tcase("two_at_once_fallback", two_at_once_without_namespaces));
    suite_add_tcase(s, tcase("missing_major", missing_major_is_not_found));
    suite_add_tcase(s, tcase("empty_bindir", empty_bindir_is_not_found));
    suite_add_tcase(s, tcase("other_major_bindir", bindir_of_another_major_is_not_found));
    suite_add_tcase(s, tcase("initdb_fails", failed_initdb_is_reported));
    suite_add_tcase(s, tcase("server_fails", failed_server_start_is_reported));
    suite_add_tcase(s, tcase("interrupt", interrupt_during_create_leaves_nothing));
    suite_add_tcase(s, tcase("out_of_memory", allocation_failures_leave_nothing));
    suite_add_tcase(s, tcase("socket_path", too_long_a_socket_path_is_refused));
    suite_add_tcase(s, tcase("gc_killed_owner", gc_removes_what_a_killed_owner_left));
    suite_add_tcase(s, tcase("gc_killed_owner_fallback",
                             gc_stops_the_server_a_killed_owner_left_without_namespaces));
    suite_add_tcase(s, tcase("gc_live_owner", gc_leaves_live_owners_and_fresh_directories_alone));
    suite_add_tcase(s, tcase("gc_owner_identity", gc_tells_owners_by_pid_and_start_time));
    suite_add_tcase(s, tcase("gc_missing_tmpdir", gc_of_a_missing_tmpdir_is_an_error));

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
