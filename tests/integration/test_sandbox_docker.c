/* The docker sandbox driver against a real dockerd (ci/docker-service.sh
 * starts one) and the image postgres:15 that ci/postgres-image.sh builds
 * from the host's PostgreSQL: a sandbox's server, labels and limits as the
 * engine reports them, removal, every error the engine or the user can
 * cause, interrupts, and garbage collection after a killed owner. The tests
 * look at containers through the Engine API themselves, not through the
 * driver. */
#include "restore/sandbox.h"

#include <archive.h>
#include <archive_entry.h>
#include <check.h>
#include <curl/curl.h>
#include <glob.h>
#include <grp.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/interrupt.h"
#include "common/mem.h"
#include "tests/harness/pg.h"

#define IMAGE "postgres:15"
/* Built from IMAGE by the test: its server refuses a setting at start. */
#define BROKEN_IMAGE "shardgate-test-broken:15"

static char api_socket[512] = "/var/run/docker.sock";

typedef struct body {
    char *data;
    size_t len;
} body;

static size_t on_data(char *data, size_t size, size_t nmemb, void *userdata)
{
    body *b = userdata;
    size_t len = size * nmemb;
    char *grown = realloc(b->data, b->len + len + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, data, len);
    b->len += len;
    grown[b->len] = '\0';
    b->data = grown;
    return len;
}

/* One Engine API request; returns the body (to free) and sets *status, or
 * returns NULL with *status 0 when the daemon cannot be reached. */
static char *api(const char *method, const char *path, const char *content_type, const void *data,
                 size_t len, long *status)
{
    CURL *h = curl_easy_init();
    struct curl_slist *headers = NULL;
    body b = {calloc(1, 1), 0};
    char url[1024], header[128];
    *status = 0;
    snprintf(url, sizeof(url), "http://docker/v1.41%s", path);
    curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, api_socket);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, data ? data : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
        if (content_type) {
            snprintf(header, sizeof(header), "Content-Type: %s", content_type);
            headers = curl_slist_append(NULL, header);
            curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        }
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (curl_easy_perform(h) == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    } else {
        free(b.data);
        b.data = NULL;
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    return b.data;
}

static json_t *api_json(const char *path, long expect)
{
    long status;
    char *text = api("GET", path, NULL, NULL, 0, &status);
    json_t *doc;
    ck_assert_msg(text && status == expect, "GET %s: %ld %s", path, status, text ? text : "");
    doc = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    free(text);
    return doc;
}

/* Ids of the containers, running or not, labelled with this run id. */
static json_t *containers_of_run(const char *run)
{
    char filter[256], path[512];
    char *escaped;
    CURL *h = curl_easy_init();
    snprintf(filter, sizeof(filter), "{\"label\":[\"io.shardgate.run=%s\"]}", run);
    escaped = curl_easy_escape(h, filter, 0);
    snprintf(path, sizeof(path), "/containers/json?all=1&filters=%s", escaped);
    curl_free(escaped);
    curl_easy_cleanup(h);
    return api_json(path, 200);
}

static char *only_container_of_run(const char *run)
{
    json_t *list = containers_of_run(run);
    char *id;
    ck_assert_int_eq(json_array_size(list), 1);
    id = strdup(json_string_value(json_object_get(json_array_get(list, 0), "Id")));
    json_decref(list);
    return id;
}

static long inspect_status(const char *id)
{
    char path[256];
    long status;
    snprintf(path, sizeof(path), "/containers/%s/json", id);
    free(api("GET", path, NULL, NULL, 0, &status));
    return status;
}

/* A run id no other test, or earlier run, uses. */
static void unique_run(char *out, size_t size, const char *what)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "test-%s-%ld-%ld%09ld", what, (long)getpid(), (long)ts.tv_sec, ts.tv_nsec);
}

/* The host directory of the conninfo's host='...'. */
static void socket_dir(char *out, size_t size, const char *conninfo)
{
    const char *start = strstr(conninfo, "host='");
    const char *end;
    ck_assert_ptr_nonnull(start);
    start += 6;
    end = strchr(start, '\'');
    ck_assert_ptr_nonnull(end);
    snprintf(out, size, "%.*s", (int)(end - start), start);
}

static int path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static sg_sandbox_options options(const char *run)
{
    sg_sandbox_options o = {0};
    o.driver = "docker";
    o.pg_major = 15;
    o.run_id = run;
    o.shard = "shard/one";
    return o;
}

START_TEST(sandbox_runs_postgresql_15_with_labels_and_limits)
{
    sg_sandbox *sb = NULL;
    sg_error err = {0};
    char run[128], dir[512], path[256];
    sg_sandbox_options o;
    json_t *doc, *labels, *hostcfg;
    PGconn *conn;
    char *id, *version, *fsync, *conninfo_no_password;

    unique_run(run, sizeof(run), "create");
    o = options(run);
    o.memory = "512m";
    o.cpus = "1.5";
    ck_assert_msg(sg_sandbox_create(&sb, &o, &err) == 0, "%s | %s", err.message, err.detail);
    ck_assert_str_eq(sg_sandbox_driver_name(sb), "docker");

    version = sgt_pg_value(sg_sandbox_conninfo(sb), "SHOW server_version_num");
    fsync = sgt_pg_value(sg_sandbox_conninfo(sb), "SHOW fsync");
    ck_assert_msg(strncmp(version, "15", 2) == 0, "server_version_num %s", version);
    ck_assert_str_eq(fsync, "off");
    free(version);
    free(fsync);

    /* The socket directory is open to all: the password is what guards it. */
    socket_dir(dir, sizeof(dir), sg_sandbox_conninfo(sb));
    conninfo_no_password = strdup(sg_sandbox_conninfo(sb));
    *strstr(conninfo_no_password, "password=") = '\0';
    conn = PQconnectdb(conninfo_no_password);
    ck_assert_int_ne(PQstatus(conn), CONNECTION_OK);
    PQfinish(conn);
    free(conninfo_no_password);

    id = only_container_of_run(run);
    snprintf(path, sizeof(path), "/containers/%s/json", id);
    doc = api_json(path, 200);
    labels = json_object_get(json_object_get(doc, "Config"), "Labels");
    ck_assert_str_eq(json_string_value(json_object_get(labels, "io.shardgate.sandbox")), "1");
    ck_assert_str_eq(json_string_value(json_object_get(labels, "io.shardgate.run")), run);
    ck_assert_str_eq(json_string_value(json_object_get(labels, "io.shardgate.shard")), "shard/one");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "Config"), "Image")),
                     IMAGE);
    ck_assert_msg(
        strncmp(json_string_value(json_object_get(doc, "Name")), "/shardgate-shard-one-", 21) == 0,
        "name %s", json_string_value(json_object_get(doc, "Name")));
    hostcfg = json_object_get(doc, "HostConfig");
    ck_assert_int_eq(json_integer_value(json_object_get(hostcfg, "Memory")), 512LL * 1024 * 1024);
    ck_assert_int_eq(json_integer_value(json_object_get(hostcfg, "NanoCpus")), 1500000000LL);
    ck_assert_str_eq(json_string_value(json_object_get(hostcfg, "NetworkMode")), "none");
    json_decref(doc);

    sg_sandbox_destroy(sb);
    ck_assert_int_eq(inspect_status(id), 404);
    ck_assert_msg(!path_exists(dir), "socket directory %s left behind", dir);
    free(id);
}
END_TEST

START_TEST(missing_image_is_not_found_in_plain_words)
{
    sg_sandbox *sb = NULL;
    sg_error err = {0};
    char run[128];
    sg_sandbox_options o;
    json_t *list;
    unique_run(run, sizeof(run), "noimage");
    o = options(run);
    o.image = "postgres:99-nonexistent";
    ck_assert_int_eq(sg_sandbox_create(&sb, &o, &err), SG_E_NOT_FOUND);
    ck_assert_ptr_null(sb);
    ck_assert_str_eq(err.message, "docker image postgres:99-nonexistent is not present");
    ck_assert_msg(strstr(err.hint, "never pulls"), "hint: %s", err.hint);
    list = containers_of_run(run);
    ck_assert_int_eq(json_array_size(list), 0);
    json_decref(list);
}
END_TEST

START_TEST(unreachable_daemon_is_named)
{
    sg_sandbox *sb = NULL;
    sg_error err = {0};
    size_t n = 99;
    sg_sandbox_options o = options("test-unreachable");
    setenv("DOCKER_HOST", "unix:///nonexistent.sock", 1);
    ck_assert_int_eq(sg_sandbox_create(&sb, &o, &err), SG_E_IO);
    ck_assert_ptr_null(sb);
    ck_assert_str_eq(err.message, "cannot reach the Docker daemon at /nonexistent.sock");
    ck_assert_msg(strstr(err.hint, "dockerd"), "hint: %s", err.hint);
    sg_error_clear(&err);
    ck_assert_int_eq(sg_sandbox_gc(&n, "docker", &err), SG_E_IO);
    ck_assert_int_eq(n, 0);
    ck_assert_str_eq(err.message, "cannot reach the Docker daemon at /nonexistent.sock");
    /* Every driver: an unreachable daemon is a warning, not a failure. */
    ck_assert_int_eq(sg_sandbox_gc(&n, NULL, &err), 0);
}
END_TEST

START_TEST(non_unix_docker_host_is_a_usage_error)
{
    sg_sandbox *sb = NULL;
    sg_error err = {0};
    size_t n;
    sg_sandbox_options o = options("test-tcp");
    setenv("DOCKER_HOST", "tcp://x:2375", 1);
    ck_assert_int_eq(sg_sandbox_create(&sb, &o, &err), SG_E_USAGE);
    ck_assert_msg(strstr(err.message, "only unix:// sockets are supported") &&
                      strstr(err.message, "tcp://x:2375"),
                  "%s", err.message);
    sg_error_clear(&err);
    ck_assert_int_eq(sg_sandbox_gc(&n, "docker", &err), SG_E_USAGE);
}
END_TEST

/* As an unprivileged user (root is never refused), the socket's
 * permissions stop the request; the message names the socket. */
START_TEST(permission_denied_on_the_socket_is_named)
{
    int fds[2], status;
    char message[512] = "";
    ssize_t got;
    pid_t pid;
    if (geteuid() != 0) {
        fprintf(stderr, "permission test needs root to drop privileges; checked as root in CI\n");
        return;
    }
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sg_sandbox *sb = NULL;
        sg_error err = {0};
        sg_sandbox_options o = options("test-eacces");
        int rc;
        close(fds[0]);
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
            _exit(2);
        setenv("DOCKER_HOST", "unix:///var/run/docker.sock", 1);
        rc = sg_sandbox_create(&sb, &o, &err);
        if (write(fds[1], err.message, strlen(err.message)) < 0)
            _exit(2);
        _exit(rc == SG_E_IO && strstr(err.hint, "docker group") ? 0 : 1);
    }
    close(fds[1]);
    got = read(fds[0], message, sizeof(message) - 1);
    close(fds[0]);
    message[got > 0 ? got : 0] = '\0';
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %s", message);
    ck_assert_str_eq(message, "permission denied on /var/run/docker.sock");
}
END_TEST

static void assert_usage(const char *memory, const char *cpus, const char *names)
{
    sg_sandbox *sb = NULL;
    sg_error err = {0};
    sg_sandbox_options o = options("test-limits");
    o.memory = memory;
    o.cpus = cpus;
    ck_assert_int_eq(sg_sandbox_create(&sb, &o, &err), SG_E_USAGE);
    ck_assert_ptr_null(sb);
    ck_assert_msg(strstr(err.message, names), "%s / %s: %s", memory ? memory : "-",
                  cpus ? cpus : "-", err.message);
}

START_TEST(bad_limits_are_usage_errors)
{
    json_t *list;
    assert_usage("12x", NULL, "invalid --sandbox-memory \"12x\"");
    assert_usage("", NULL, "invalid --sandbox-memory");
    assert_usage("m", NULL, "invalid --sandbox-memory");
    assert_usage("0", NULL, "invalid --sandbox-memory");
    assert_usage("99999999999999999999g", NULL, "invalid --sandbox-memory");
    assert_usage(NULL, "abc", "invalid --sandbox-cpus \"abc\"");
    assert_usage(NULL, "0", "invalid --sandbox-cpus");
    assert_usage(NULL, "1.5.2", "invalid --sandbox-cpus");
    assert_usage(NULL, "-1", "invalid --sandbox-cpus");
    /* Well formed, but refused by the engine, in its words. */
    assert_usage("1m", NULL, "Minimum memory limit");
    assert_usage(NULL, "512", "CPU");
    list = containers_of_run("test-limits");
    ck_assert_int_eq(json_array_size(list), 0);
    json_decref(list);
}
END_TEST

START_TEST(server_that_fails_to_start_is_reported_and_removed)
{
    sg_sandbox *sb = NULL;
    sg_error err = {0};
    char run[128];
    sg_sandbox_options o;
    json_t *list;
    unique_run(run, sizeof(run), "broken");
    o = options(run);
    o.image = BROKEN_IMAGE;
    ck_assert_int_eq(sg_sandbox_create(&sb, &o, &err), SG_E_PROCESS);
    ck_assert_ptr_null(sb);
    ck_assert_msg(strstr(err.message, "exited with status 1 before accepting connections") &&
                      strstr(err.message, BROKEN_IMAGE),
                  "%s", err.message);
    ck_assert_msg(strstr(err.detail, "max_connections"), "detail: %s", err.detail);
    list = containers_of_run(run);
    ck_assert_int_eq(json_array_size(list), 0);
    json_decref(list);
}
END_TEST

START_TEST(interrupt_while_waiting_removes_the_container)
{
    sg_sandbox *sb = NULL;
    sg_error err = {0};
    char run[128];
    sg_sandbox_options o;
    json_t *list;
    unique_run(run, sizeof(run), "interrupt");
    o = options(run);
    /* The signal is in before the server can be ready (initdb alone takes
     * longer than the first poll), so the wait sees it. */
    sg_interrupt_install();
    raise(SIGTERM);
    ck_assert_int_eq(sg_sandbox_create(&sb, &o, &err), SG_E_INTERRUPTED);
    ck_assert_ptr_null(sb);
    ck_assert_str_eq(err.message, "interrupted by SIGTERM");
    list = containers_of_run(run);
    ck_assert_int_eq(json_array_size(list), 0);
    json_decref(list);
}
END_TEST

START_TEST(gc_removes_containers_of_killed_owners_only)
{
    sg_sandbox *live = NULL;
    sg_error err = {0};
    char dead_run[128], live_run[128], dir[512] = "";
    sg_sandbox_options o;
    int fds[2], status;
    ssize_t got;
    size_t removed = 0;
    char *dead_id, *live_id;
    pid_t pid;

    unique_run(dead_run, sizeof(dead_run), "gc-dead");
    unique_run(live_run, sizeof(live_run), "gc-live");
    o = options(live_run);
    ck_assert_msg(sg_sandbox_create(&live, &o, &err) == 0, "%s", err.message);
    live_id = only_container_of_run(live_run);

    /* Killed right after its sandbox is ready, and collected at once: the
     * count is ours even if other suites run gc at the same time. */
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sg_sandbox *sb = NULL;
        sg_error cerr = {0};
        sg_sandbox_options co = options(dead_run);
        close(fds[0]);
        if (sg_sandbox_create(&sb, &co, &cerr) < 0)
            _exit(1);
        socket_dir(dir, sizeof(dir), sg_sandbox_conninfo(sb));
        if (write(fds[1], dir, strlen(dir)) < 0)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    got = read(fds[0], dir, sizeof(dir) - 1);
    close(fds[0]);
    ck_assert_msg(got > 0, "the child could not create its sandbox");
    dir[got] = '\0';
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    dead_id = only_container_of_run(dead_run);
    ck_assert(path_exists(dir));

    ck_assert_msg(sg_sandbox_gc(&removed, "docker", &err) == 0, "%s", err.message);
    ck_assert_uint_ge(removed, 1);
    ck_assert_int_eq(inspect_status(dead_id), 404);
    ck_assert_msg(!path_exists(dir), "socket directory %s left behind", dir);
    ck_assert_int_eq(inspect_status(live_id), 200);
    free(sgt_pg_value(sg_sandbox_conninfo(live), "SELECT 1"));

    sg_sandbox_destroy(live);
    ck_assert_int_eq(inspect_status(live_id), 404);
    free(dead_id);
    free(live_id);
}
END_TEST

static size_t socket_dirs(void)
{
    const char *tmp = getenv("TMPDIR");
    char pattern[512];
    glob_t g;
    size_t n;
    snprintf(pattern, sizeof(pattern), "%s/shardgate-docker-*", tmp && *tmp ? tmp : "/tmp");
    if (glob(pattern, 0, NULL, &g) != 0)
        return 0;
    n = g.gl_pathc;
    globfree(&g);
    return n;
}

/* Every allocation that can fail does, in turn, until creation succeeds:
 * each failure is "out of memory" and leaves no container and no socket
 * directory behind (removal itself allocates nothing through sg_malloc). */
START_TEST(allocation_failures_leave_nothing_behind)
{
    char run[128];
    size_t dirs_before = socket_dirs();
    sg_sandbox_options o;
    long after;
    int rc = -1;
    unique_run(run, sizeof(run), "nomem");
    o = options(run);
    for (after = 0; after < 1000 && rc != 0; after++) {
        sg_sandbox *sb = NULL;
        sg_error err = {0};
        json_t *list;
        sg_mem_fail_after(after);
        rc = sg_sandbox_create(&sb, &o, &err);
        sg_mem_fail_reset();
        if (rc == 0) {
            sg_sandbox_destroy(sb);
        } else {
            ck_assert_msg(rc == SG_E_NOMEM && strstr(err.message, "out of memory"),
                          "allocation %ld: %d %s", after, rc, err.message);
            ck_assert_ptr_null(sb);
        }
        list = containers_of_run(run);
        ck_assert_msg(json_array_size(list) == 0, "allocation %ld left a container", after);
        json_decref(list);
        ck_assert_uint_eq(socket_dirs(), dirs_before);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_gt(after, 5);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sandbox_docker");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"create", sandbox_runs_postgresql_15_with_labels_and_limits},
        {"missing_image", missing_image_is_not_found_in_plain_words},
        {"unreachable", unreachable_daemon_is_named},
        {"docker_host", non_unix_docker_host_is_a_usage_error},
        {"permission", permission_denied_on_the_socket_is_named},
        {"limits", bad_limits_are_usage_errors},
        {"server_fails", server_that_fails_to_start_is_reported_and_removed},
        {"interrupt", interrupt_while_waiting_removes_the_container},
        {"gc", gc_removes_containers_of_killed_owners_only},
        {"allocation_failures", allocation_failures_leave_nothing_behind},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

/* A one-file tar (the build context) in memory; free() it. */
static void *dockerfile_tar(const char *dockerfile, size_t *len)
{
    size_t cap = 64 * 1024;
    void *buf = calloc(1, cap);
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    archive_write_set_format_ustar(a);
    if (archive_write_open_memory(a, buf, cap, len) != ARCHIVE_OK)
        return NULL;
    archive_entry_set_pathname(e, "Dockerfile");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)strlen(dockerfile));
    archive_write_header(a, e);
    archive_write_data(a, dockerfile, strlen(dockerfile));
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    return buf;
}

/* BROKEN_IMAGE: IMAGE whose entrypoint puts an invalid setting in front of
 * whatever command it is given, so initdb runs and the server then refuses
 * to start, as with a real misconfiguration. */
static int build_broken_image(void)
{
    static const char dockerfile[] =
        "FROM " IMAGE "\n"
        "ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\", \"postgres\", \"-c\", "
        "\"max_connections=-5\"]\n";
    size_t len = 0;
    long status;
    void *tar = dockerfile_tar(dockerfile, &len);
    char *out = tar ? api("POST", "/build?t=" BROKEN_IMAGE "&q=1&rm=1", "application/x-tar", tar,
                          len, &status)
                    : NULL;
    int ok = out && status == 200 && !strstr(out, "\"error");
    if (!ok)
        fprintf(stderr, "test_sandbox_docker: cannot build %s: %s\n", BROKEN_IMAGE,
                out ? out : "no answer");
    free(out);
    free(tar);
    return ok;
}

int main(void)
{
    const char *host = getenv("DOCKER_HOST");
    SRunner *sr;
    long status;
    char *out;
    int failed;

    if (host && strncmp(host, "unix://", 7) == 0)
        snprintf(api_socket, sizeof(api_socket), "%s", host + 7);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    out = api("GET", "/_ping", NULL, NULL, 0, &status);
    if (!out || status != 200) {
        fprintf(stderr,
                "test_sandbox_docker: the Docker daemon does not answer at %s; start it with "
                "ci/docker-service.sh start (as root)\n",
                api_socket);
        free(out);
        return 1;
    }
    free(out);
    out = api("GET", "/images/" IMAGE "/json", NULL, NULL, 0, &status);
    free(out);
    if (status != 200) {
        fprintf(stderr, "test_sandbox_docker: no image %s; build it with ci/postgres-image.sh\n",
                IMAGE);
        return 1;
    }
    if (!build_broken_image())
        return 1;

    sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    free(api("DELETE", "/images/" BROKEN_IMAGE "?force=1", NULL, NULL, 0, &status));
    curl_global_cleanup();
    return failed ? 1 : 0;
}
