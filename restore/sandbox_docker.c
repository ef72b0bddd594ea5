/* The docker sandbox driver: one container per sandbox, through the Docker
 * Engine API (v1.41: dockerd 20.10 and later, and Podman's compatible
 * socket) over its unix socket with libcurl; no docker CLI.
 *
 * The container has no network at all: a host directory bind-mounted on
 * /var/run/postgresql carries the server's unix socket, PGDATA is a tmpfs
 * (a copy that is thrown away needs no disk), and the server runs with the
 * settings of a throwaway copy. Labels mark the container as shardgate's and
 * name its owner (host, pid and that process's start time), so that gc can
 * tell the leftovers of a killed run from the sandboxes of a live one. */
#include "restore/sandbox_impl.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/interrupt.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/proc.h"

#define API_URL "http://docker/v1.41"
#define DEFAULT_SOCKET "/var/run/docker.sock"

#define LABEL_RUN "io.shardgate.run"
#define LABEL_SHARD "io.shardgate.shard"
#define LABEL_OWNER_HOST "io.shardgate.owner-host"
#define LABEL_OWNER_PID "io.shardgate.owner-pid"
#define LABEL_OWNER_START "io.shardgate.owner-start"
#define LABEL_SOCKET_DIR "io.shardgate.socket-dir"

/* Socket directories are sg_tmpdir_new(.., "docker") directories; gc removes
 * only paths of that shape, whatever a label says. */
#define SOCKET_DIR_TAG "docker"
#define SOCKET_DIR_PREFIX "shardgate-" SOCKET_DIR_TAG "-"

#define PGDATA "/var/lib/postgresql/data"
#define SOCKET_MOUNT "/var/run/postgresql"
/* Not 5432: the official image's entrypoint initializes the cluster with a
 * temporary server on 5432 in the same socket directory, and a client that
 * took it for the real one would be cut off when it stops. That server gets
 * our options too, but its own -p after them. */
#define SERVER_PORT "5433"

#define CONNECT_TIMEOUT_S 5L
/* Create, start and inspect answer in milliseconds; a forced removal stops
 * the container and deletes its volumes, seconds on a loaded host. */
#define REQUEST_TIMEOUT_S 60L
#define READY_TIMEOUT_MS 60000
#define POLL_MS 20
/* Whether the container still runs costs a request: ask every tenth poll. */
#define INSPECT_EVERY 10
/* Engine answers are small JSON documents, and logs are asked for by tail. */
#define RESPONSE_MAX (1024 * 1024)
/* Room for the server's last log lines in an error's detail. */
#define LOG_DETAIL_MAX 900

typedef struct docker_sandbox {
    sg_sandbox base;
    char *socket;  /* the engine's socket, as at creation */
    char *name;    /* container name, which the API takes wherever an id goes */
    char *sockdir; /* host directory mounted on SOCKET_MOUNT */
} docker_sandbox;

/* A connection to the engine: one curl handle, kept alive across requests. */
typedef struct engine {
    const char *socket;
    CURL *curl;
    char curl_error[CURL_ERROR_SIZE];
} engine;

typedef struct response {
    bool reached; /* the request may have reached the engine */
    long status;
    sg_buf body;
    bool too_large;
} response;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The engine's socket: DOCKER_HOST=unix://PATH, or the default one. */
static int engine_socket(const char **out, sg_error *err)
{
    const char *host = getenv("DOCKER_HOST");
    *out = DEFAULT_SOCKET;
    if (!host || !*host)
        return 0;
    if (strncmp(host, "unix://", 7) != 0 || host[7] != '/') {
        sg_error_set(err, SG_E_USAGE,
                     "DOCKER_HOST \"%s\" is not supported: only unix:// sockets are supported",
                     host);
        sg_error_hint(err, "set DOCKER_HOST=unix:///PATH/TO/docker.sock, or unset it to use %s",
                      DEFAULT_SOCKET);
        return SG_E_USAGE;
    }
    *out = host + 7;
    return 0;
}

static int engine_open(engine *e, const char *socket, sg_error *err)
{
    memset(e, 0, sizeof(*e));
    e->socket = socket;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK)
        return sg_error_set(err, SG_E_INTERNAL, "cannot initialize libcurl: %s",
                            curl_easy_strerror(curl_init_result));
    if (!(e->curl = curl_easy_init()))
        return sg_error_set(err, SG_E_NOMEM, "out of memory (libcurl handle)");
    return 0;
}

static void engine_close(engine *e)
{
    if (e->curl)
        curl_easy_cleanup(e->curl);
    e->curl = NULL;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    response *r = userdata;
    size_t len = size * nmemb;
    if (r->body.len + len > RESPONSE_MAX) {
        r->too_large = true;
        return 0;
    }
    return sg_buf_append(&r->body, data, len, NULL) < 0 ? 0 : len;
}

/* One request; *res holds the status and body (NUL-terminated unless
 * empty) of whatever the engine answered. Only a failure to talk to the
 * engine is an error. Nothing here goes through sg_malloc before the body
 * arrives, so that removing a container works when allocations fail. */
static int engine_call(engine *e, const char *method, const char *path, const char *body,
                       response *res, sg_error *err)
{
    struct curl_slist *headers = NULL;
    char url[1024];
    CURLcode code;
    long os_errno = 0;
    int rc = 0;

    sg_buf_reset(&res->body);
    res->reached = false;
    res->status = 0;
    res->too_large = false;
    if ((size_t)snprintf(url, sizeof(url), API_URL "%s", path) >= sizeof(url)) {
        rc = sg_error_set(err, SG_E_INTERNAL, "Docker API path too long: %.64s...", path);
        goto done;
    }
    if (body && !(headers = curl_slist_append(NULL, "Content-Type: application/json"))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }

    curl_easy_reset(e->curl);
    e->curl_error[0] = '\0';
    curl_easy_setopt(e->curl, CURLOPT_UNIX_SOCKET_PATH, e->socket);
    curl_easy_setopt(e->curl, CURLOPT_URL, url);
    curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(e->curl, CURLOPT_ERRORBUFFER, e->curl_error);
    curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(e->curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
    curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, res);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, headers);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(e->curl, CURLOPT_CUSTOMREQUEST, method);
    }

    code = curl_easy_perform(e->curl);
    res->reached = code != CURLE_COULDNT_CONNECT;
    if (code == CURLE_COULDNT_CONNECT) {
        curl_easy_getinfo(e->curl, CURLINFO_OS_ERRNO, &os_errno);
        if (os_errno == EACCES || os_errno == EPERM) {
            rc = sg_error_set(err, SG_E_IO, "permission denied on %s", e->socket);
            sg_error_hint(err, "run as root or add the user to the docker group");
        } else {
            rc = sg_error_set(err, SG_E_IO, "cannot reach the Docker daemon at %s", e->socket);
            if (os_errno)
                sg_error_detail(err, "%s", strerror((int)os_errno));
            sg_error_hint(err, "is dockerd running? Start it, or point DOCKER_HOST at its "
                               "socket (unix:///PATH)");
        }
        goto done;
    }
    if (code == CURLE_OPERATION_TIMEDOUT) {
        rc = sg_error_set(err, SG_E_IO, "the Docker daemon at %s did not answer %s %s within %ld s",
                          e->socket, method, path, REQUEST_TIMEOUT_S);
        goto done;
    }
    if (code == CURLE_WRITE_ERROR && !res->too_large) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (Docker daemon answer)");
        goto done;
    }
    if (code != CURLE_OK) {
        rc = sg_error_set(err, SG_E_IO, "%s %s to the Docker daemon at %s failed: %s", method, path,
                          e->socket,
                          res->too_large     ? "the answer is too large"
                          : e->curl_error[0] ? e->curl_error
                                             : curl_easy_strerror(code));
        goto done;
    }
    curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &res->status);
    if (res->body.len > 0)
        rc = sg_buf_terminate(&res->body, err);
done:
    curl_slist_free_all(headers);
    return rc;
}

/* The engine's own words for a failed request: the "message" of its JSON
 * error body, else the body, else the status. */
static const char *engine_message(const response *res, char *out, size_t size)
{
    json_t *doc = NULL, *msg;
    const char *text = res->body.len ? (const char *)res->body.data : "";
    sg_json_init();
    doc = json_loadb(text, res->body.len, 0, NULL);
    if ((msg = json_object_get(doc, "message")) && json_is_string(msg))
        snprintf(out, size, "%s", json_string_value(msg));
    else if (*text)
        snprintf(out, size, "%.*s", (int)strcspn(text, "\r\n"), text);
    else
        snprintf(out, size, "HTTP status %ld", res->status);
    json_decref(doc);
    return out;
}

/* Parses a JSON answer that must be of `type`. */
static int engine_json(json_t **out, const response *res, json_type type, const char *what,
                       sg_error *err)
{
    json_t *doc;
    *out = NULL;
    sg_json_init();
    sg_json_alloc_reset();
    doc = json_loadb((const char *)res->body.data, res->body.len, 0, NULL);
    if (doc && json_typeof(doc) == type) {
        *out = doc;
        return 0;
    }
    json_decref(doc);
    if (sg_json_alloc_failed())
        return sg_error_set(err, SG_E_NOMEM, "out of memory (Docker daemon answer)");
    return sg_error_set(err, SG_E_FORMAT,
                        "the Docker daemon's answer to %s is not the JSON API v1.41 describes",
                        what);
}

/* Removes a container and its anonymous volumes (an image that declares a
 * VOLUME leaks one per container otherwise). Gone already counts as done. */
static int remove_container(engine *e, const char *id, sg_error *err)
{
    response res = {0};
    char path[256], msg[256];
    int rc;
    snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
    if ((rc = engine_call(e, "DELETE", path, NULL, &res, err)) < 0)
        goto done;
    if (res.status != 204 && res.status != 404)
        rc = sg_error_set(err, SG_E_PROCESS, "cannot remove docker container %s: %s", id,
                          engine_message(&res, msg, sizeof(msg)));
done:
    sg_buf_free(&res.body);
    return rc;
}

static void remove_socket_dir(const char *dir)
{
    struct stat st;
    sg_tmpdir_remove(dir);
    if (lstat(dir, &st) == 0)
        sg_log_warning("cannot remove the docker sandbox's socket directory %s", dir);
}

/* --sandbox-memory: bytes, or a number with a k, m or g suffix (powers of
 * 1024, as docker run --memory reads them). */
static int parse_memory(int64_t *out, const char *text, sg_error *err)
{
    uint64_t n = 0, unit = 1;
    const char *p = text;
    *out = 0;
    if (!text)
        return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10)
            goto bad;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    switch (*p) {
    case 'k':
    case 'K':
        unit = 1024;
        break;
    case 'm':
    case 'M':
        unit = 1024 * 1024;
        break;
    case 'g':
    case 'G':
        unit = 1024 * 1024 * 1024;
        break;
    case 'b':
    case 'B':
    case '\0':
        break;
    default:
        goto bad;
    }
    if (*p)
        p++;
    if (p == text + 1 || *p || n == 0 || n > (uint64_t)INT64_MAX / unit)
        goto bad;
    *out = (int64_t)(n * unit);
    return 0;
bad:
    sg_error_set(err, SG_E_USAGE, "invalid --sandbox-memory \"%s\"", text);
    sg_error_hint(err, "give a size in bytes or with a k, m or g suffix, such as 512m or 2g");
    return SG_E_USAGE;
}

/* --sandbox-cpus: a decimal number of CPUs such as "1.5", in billionths as
 * the engine's NanoCpus wants them. Parsed by hand: strtod follows the
 * locale's decimal point. */
static int parse_cpus(int64_t *out, const char *text, sg_error *err)
{
    int64_t whole = 0, frac = 0, scale = 1000000000;
    const char *p = text;
    bool digits = false;
    *out = 0;
    if (!text)
        return 0;
    for (; *p >= '0' && *p <= '9'; p++, digits = true) {
        if (whole > 1000000)
            goto bad;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, digits = true) {
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
        }
    }
    if (!digits || *p || whole * 1000000000 + frac == 0)
        goto bad;
    *out = whole * 1000000000 + frac;
    return 0;
bad:
    sg_error_set(err, SG_E_USAGE, "invalid --sandbox-cpus \"%s\"", text);
    sg_error_hint(err, "give a number of CPUs greater than 0, such as 1 or 1.5");
    return SG_E_USAGE;
}

/* The start time of a process (clock ticks after boot, field 22 of
 * /proc/PID/stat): with the pid, it names one process for good, as pids are
 * reused. False when the process is gone or a zombie (dead, not reaped). */
static void host_name(char *out, size_t size)
{
    if (gethostname(out, size) != 0)
        snprintf(out, size, "unknown");
    out[size - 1] = '\0';
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* "shardgate-<shard>-<random>". Container names allow [a-zA-Z0-9_.-]:
 * anything else in a shard name becomes '-', and long names are cut (the
 * label keeps the full name). */
static char *container_name(const char *shard)
{
    unsigned char rnd[6];
    char hex[2 * sizeof(rnd) + 1];
    char cleaned[41];
    size_t n = 0;
    for (const char *c = shard ? shard : ""; *c && n < sizeof(cleaned) - 1; c++)
        cleaned[n++] = name_char(*c) ? *c : '-';
    cleaned[n] = '\0';
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    return sg_asprintf("shardgate-%s%s%s", cleaned, n ? "-" : "", hex);
}

/* A conninfo value in single quotes, so that any path works. */
static char *conninfo_quote(const char *value)
{
    size_t len = strlen(value), n = 0;
    char *out = sg_malloc(2 * len + 3);
    if (!out)
        return NULL;
    out[n++] = '\'';
    for (const char *c = value; *c; c++) {
        if (*c == '\'' || *c == '\\')
            out[n++] = '\\';
        out[n++] = *c;
    }
    out[n++] = '\'';
    out[n] = '\0';
    return out;
}

/* The request body of POST /containers/create. */
static json_t *create_body(const sg_sandbox_options *opts, const char *image, const char *password,
                           const char *sockdir, int64_t memory, int64_t nano_cpus)
{
    /* A copy that is thrown away: no durability, no WAL beyond what crash
     * recovery of a running server needs (wal_level minimal lets COPY into
     * a table created in the same transaction skip WAL), no autovacuum
     * competing with the restore. */
    static const char *const settings[] = {
        "port=" SERVER_PORT, "listen_addresses=",    "unix_socket_directories=" SOCKET_MOUNT,
        "fsync=off",         "full_page_writes=off", "synchronous_commit=off",
        "wal_level=minimal", "max_wal_senders=0",    "maintenance_work_mem=512MB",
        "max_wal_size=4GB",  "autovacuum=off",
    };
    json_t *body = NULL, *cmd = NULL, *host = NULL;
    char pid[32], start[32], hostname[256], *password_env = NULL;
    unsigned long long start_time = 0;
    bool ok;

    host_name(hostname, sizeof(hostname));
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    sg_process_stat(getpid(), NULL, &start_time);
    snprintf(start, sizeof(start), "%llu", start_time);
    if (!(password_env = sg_asprintf("POSTGRES_PASSWORD=%s", password)))
        goto done;

    ok = (cmd = json_array()) && json_array_append_new(cmd, json_string("postgres")) == 0;
    for (size_t i = 0; ok && i < sizeof(settings) / sizeof(settings[0]); i++)
        ok = json_array_append_new(cmd, json_string("-c")) == 0 &&
             json_array_append_new(cmd, json_string(settings[i])) == 0;
    if (!ok)
        goto done;

    host = json_pack("{s:s, s:[{s:s, s:s, s:s}, {s:s, s:s}]}", "NetworkMode", "none", "Mounts",
                     "Type", "bind", "Source", sockdir, "Target", SOCKET_MOUNT, "Type", "tmpfs",
                     "Target", PGDATA);
    if (!host || (memory && json_object_set_new(host, "Memory", json_integer(memory)) < 0) ||
        (nano_cpus && json_object_set_new(host, "NanoCpus", json_integer(nano_cpus)) < 0))
        goto done;

    /* Password authentication on the socket too: the socket directory is
     * world-writable, so that the image's postgres user, whatever its uid,
     * can create its socket in it. */
    body = json_pack(
        "{s:s, s:[s, s, s, s], s:O, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}, s:O}", "Image", image,
        "Env", password_env, "POSTGRES_USER=postgres", "PGDATA=" PGDATA,
        "POSTGRES_INITDB_ARGS=--no-sync --encoding=UTF8 "
        "--auth-local=scram-sha-256 --auth-host=scram-sha-256",
        "Cmd", cmd, "Labels", SG_SANDBOX_LABEL, "1", LABEL_RUN, opts->run_id ? opts->run_id : "",
        LABEL_SHARD, opts->shard ? opts->shard : "", LABEL_OWNER_HOST, hostname, LABEL_OWNER_PID,
        pid, LABEL_OWNER_START, start, LABEL_SOCKET_DIR, sockdir, "HostConfig", host);
done:
    if (password_env) {
        sodium_memzero(password_env, strlen(password_env));
        free(password_env);
    }
    json_decref(cmd);
    json_decref(host);
    return body;
}

/* The last lines of the container's output, demultiplexed: without a TTY
 * each block comes in a frame with an 8-byte header [stream, 0, 0, 0,
 * length as 32-bit big-endian]. */
static void add_log_tail(engine *e, const char *id, sg_error *err)
{
    response res = {0};
    sg_buf text = {0};
    char path[256];
    const uint8_t *p;
    size_t left, from = 0;
    snprintf(path, sizeof(path), "/containers/%s/logs?stdout=1&stderr=1&tail=20", id);
    if (engine_call(e, "GET", path, NULL, &res, NULL) < 0 || res.status != 200)
        goto done;
    for (p = res.body.data, left = res.body.len; left > 0;) {
        if (left >= 8 && p[0] <= 2 && p[1] == 0 && p[2] == 0 && p[3] == 0) {
            size_t len = (size_t)p[4] << 24 | (size_t)p[5] << 16 | (size_t)p[6] << 8 | p[7];
            if (len > left - 8)
                len = left - 8;
            if (sg_buf_append(&text, p + 8, len, NULL) < 0)
                goto done;
            p += 8 + len;
            left -= 8 + len;
        } else {
            /* A container with a TTY: plain output. */
            if (sg_buf_append(&text, p, left, NULL) < 0)
                goto done;
            left = 0;
        }
    }
    while (text.len > 0 && (text.data[text.len - 1] == '\n' || text.data[text.len - 1] == '\r'))
        text.len--;
    if (text.len == 0 || sg_buf_terminate(&text, NULL) < 0)
        goto done;
    /* The end matters most: keep whole lines up to what the detail holds. */
    if (text.len > LOG_DETAIL_MAX) {
        const char *nl = memchr(text.data + text.len - LOG_DETAIL_MAX, '\n', LOG_DETAIL_MAX);
        from = nl ? (size_t)(nl + 1 - (const char *)text.data) : text.len - LOG_DETAIL_MAX;
    }
    sg_error_detail(err, "container output (last lines):\n%s", (const char *)text.data + from);
done:
    sg_buf_free(&text);
    sg_buf_free(&res.body);
}

/* Fails with the container's exit status and last output once it has
 * stopped. A list filtered on the stopped states is an empty array while it
 * runs: much cheaper to ask for at every check than its inspect document,
 * which is read only once it has stopped. */
static int check_running(engine *e, docker_sandbox *sb, const char *image, sg_error *err)
{
    response res = {0};
    json_t *doc = NULL, *state;
    char filter[256], path[1024], msg[256];
    char *escaped = NULL;
    int rc;

    snprintf(filter, sizeof(filter), "{\"name\":[\"^/%s$\"],\"status\":[\"exited\",\"dead\"]}",
             sb->name);
    if (!(escaped = curl_easy_escape(e->curl, filter, 0))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    snprintf(path, sizeof(path), "/containers/json?all=1&filters=%s", escaped);
    if ((rc = engine_call(e, "GET", path, NULL, &res, err)) < 0)
        goto done;
    if (res.status != 200) {
        rc = sg_error_set(err, SG_E_PROCESS, "cannot list docker container %s: %s", sb->name,
                          engine_message(&res, msg, sizeof(msg)));
        goto done;
    }
    if ((rc = engine_json(&doc, &res, JSON_ARRAY, "container list", err)) < 0 ||
        json_array_size(doc) == 0)
        goto done;
    json_decref(doc);
    doc = NULL;

    snprintf(path, sizeof(path), "/containers/%s/json", sb->name);
    if ((rc = engine_call(e, "GET", path, NULL, &res, err)) < 0)
        goto done;
    if (res.status != 200) {
        rc = sg_error_set(err, SG_E_PROCESS, "cannot inspect docker container %s: %s", sb->name,
                          engine_message(&res, msg, sizeof(msg)));
        goto done;
    }
    if ((rc = engine_json(&doc, &res, JSON_OBJECT, "container inspect", err)) < 0)
        goto done;
    state = json_object_get(doc, "State");
    rc = sg_error_set(err, SG_E_PROCESS,
                      "the PostgreSQL server in docker container %s (image %s) exited with "
                      "status %" JSON_INTEGER_FORMAT " before accepting connections",
                      sb->name, image, json_integer_value(json_object_get(state, "ExitCode")));
    if (json_is_true(json_object_get(state, "OOMKilled")))
        sg_error_hint(err,
                      "it ran out of memory: raise --sandbox-memory (PGDATA is in memory too)");
    add_log_tail(e, sb->name, err);
done:
    json_decref(doc);
    curl_free(escaped);
    sg_buf_free(&res.body);
    return rc;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Polls the server's socket until it accepts connections. PQping does not
 * authenticate, and answers "rejected" while the server starts up. */
static int wait_ready(engine *e, docker_sandbox *sb, const char *image, sg_error *err)
{
    const struct timespec pause = {0, POLL_MS * 1000000L};
    char *quoted = NULL, *ping = NULL;
    uint64_t started = now_ms();
    int rc = 0;
    if (!(quoted = conninfo_quote(sb->sockdir)) ||
        !(ping = sg_asprintf("host=%s port=" SERVER_PORT " dbname=postgres user=postgres "
                             "connect_timeout=5",
                             quoted))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    for (unsigned i = 1;; i++) {
        if (PQping(ping) == PQPING_OK)
            break;
        if ((rc = sg_interrupt_check(err)) < 0)
            goto done;
        if (i % INSPECT_EVERY == 0 && (rc = check_running(e, sb, image, err)) < 0)
            goto done;
        if (now_ms() - started > READY_TIMEOUT_MS) {
            rc = sg_error_set(err, SG_E_PROCESS,
                              "the PostgreSQL server in docker container %s (image %s) did not "
                              "accept connections within %d s",
                              sb->name, image, READY_TIMEOUT_MS / 1000);
            add_log_tail(e, sb->name, err);
            goto done;
        }
        nanosleep(&pause, NULL);
    }
    sg_log_debug("docker sandbox %s ready in %" PRIu64 " ms", sb->name, now_ms() - started);
done:
    free(ping);
    free(quoted);
    return rc;
}

static void free_fields(docker_sandbox *sb)
{
    free(sb->socket);
    free(sb->name);
    free(sb->sockdir);
}

static int docker_create(sg_sandbox **out, const sg_sandbox_options *opts, sg_error *err)
{
    engine e = {0};
    response res = {0};
    docker_sandbox *sb = NULL;
    json_t *body = NULL;
    const char *socket;
    char *image = NULL, *text = NULL, *quoted = NULL;
    char path[256], msg[512];
    unsigned char secret[16];
    char password[2 * sizeof(secret) + 1] = "";
    int64_t memory, nano_cpus;
    bool created = false;
    int rc;

    *out = NULL;
    if (sodium_init() < 0)
        return sg_error_set(err, SG_E_INTERNAL, "cannot initialize libsodium");
    if ((rc = parse_memory(&memory, opts->memory, err)) < 0 ||
        (rc = parse_cpus(&nano_cpus, opts->cpus, err)) < 0 ||
        (rc = engine_socket(&socket, err)) < 0 || (rc = engine_open(&e, socket, err)) < 0)
        goto done;
    sg_json_init();
    image = opts->image ? sg_strdup(opts->image) : sg_asprintf("postgres:%d", opts->pg_major);
    if (!image || !(sb = sg_calloc(1, sizeof(*sb))) || !(sb->socket = sg_strdup(socket)) ||
        !(sb->name = container_name(opts->shard))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    sb->base.driver = &sg_sandbox_docker_driver;
    if ((rc = sg_tmpdir_new(&sb->sockdir, SOCKET_DIR_TAG, err)) < 0)
        goto done;
    /* The image's postgres user, whatever its uid, creates its socket here;
     * the password keeps others from using it. */
    if (chmod(sb->sockdir, 01777) != 0) {
        rc = sg_error_set(err, SG_E_IO, "cannot open up the socket directory %s: %s", sb->sockdir,
                          strerror(errno));
        goto done;
    }

    randombytes_buf(secret, sizeof(secret));
    sodium_bin2hex(password, sizeof(password), secret, sizeof(secret));
    sg_json_alloc_reset();
    if (!(body = create_body(opts, image, password, sb->sockdir, memory, nano_cpus)) ||
        !(text = json_dumps(body, JSON_COMPACT))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (container request)");
        goto done;
    }
    snprintf(path, sizeof(path), "/containers/create?name=%s", sb->name);
    rc = engine_call(&e, "POST", path, text, &res, err);
    /* A container of that name may exist if the request reached the engine,
     * unless the engine answered that it made none (a 409 would name
     * someone else's container). */
    created = res.reached && (rc < 0 || res.status == 201);
    if (rc < 0)
        goto done;
    if (res.status == 404 && strstr(engine_message(&res, msg, sizeof(msg)), "No such image")) {
        rc = sg_error_set(err, SG_E_NOT_FOUND, "docker image %s is not present", image);
        sg_error_hint(err, "shardgate never pulls: docker pull or docker build it first, or "
                           "choose another one with --sandbox-image");
        goto done;
    }
    if (res.status != 201) {
        /* 400: a limit the engine refuses (too little memory, more CPUs than
         * the host has); anything else is the engine's trouble. */
        rc = sg_error_set(err,
                          res.status == 400   ? SG_E_USAGE
                          : res.status == 404 ? SG_E_NOT_FOUND
                                              : SG_E_PROCESS,
                          "docker cannot create a sandbox container from image %s: %s", image,
                          engine_message(&res, msg, sizeof(msg)));
        goto done;
    }

    snprintf(path, sizeof(path), "/containers/%s/start", sb->name);
    if ((rc = engine_call(&e, "POST", path, NULL, &res, err)) < 0)
        goto done;
    if (res.status != 204 && res.status != 304) {
        rc = sg_error_set(err, SG_E_PROCESS, "docker cannot start sandbox container %s: %s",
                          sb->name, engine_message(&res, msg, sizeof(msg)));
        goto done;
    }
    if ((rc = wait_ready(&e, sb, image, err)) < 0)
        goto done;

    if (!(quoted = conninfo_quote(sb->sockdir)) ||
        !(sb->base.conninfo =
              sg_asprintf("host=%s port=" SERVER_PORT " user=postgres password=%s dbname=postgres",
                          quoted, password))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    sg_log_debug("docker sandbox %s from %s", sb->name, image);
    *out = &sb->base;
    sb = NULL;
done:
    if (sb) {
        sg_error keep = {0};
        if (created && remove_container(&e, sb->name, &keep) < 0)
            sg_log_warning("%s", keep.message);
        if (sb->sockdir)
            remove_socket_dir(sb->sockdir);
        free_fields(sb);
        free(sb->base.conninfo);
        free(sb);
    }
    if (text) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
    sodium_memzero(password, sizeof(password));
    sodium_memzero(secret, sizeof(secret));
    json_decref(body);
    free(quoted);
    free(image);
    sg_buf_free(&res.body);
    engine_close(&e);
    return rc;
}

static void docker_destroy(sg_sandbox *base)
{
    docker_sandbox *sb = (docker_sandbox *)base;
    engine e = {0};
    sg_error err = {0};
    if (engine_open(&e, sb->socket, &err) < 0 || remove_container(&e, sb->name, &err) < 0)
        sg_log_warning("docker sandbox %s: %s", sb->name, err.message);
    engine_close(&e);
    remove_socket_dir(sb->sockdir);
    if (base->conninfo)
        sodium_memzero(base->conninfo, strlen(base->conninfo));
    free_fields(sb);
}

/* Whether a container's labels name a live owner, or one on another host
 * (whose liveness cannot be seen from here). */
static bool owner_alive(json_t *labels, const char *hostname)
{
    const char *host = json_string_value(json_object_get(labels, LABEL_OWNER_HOST));
    const char *pid_text = json_string_value(json_object_get(labels, LABEL_OWNER_PID));
    const char *start_text = json_string_value(json_object_get(labels, LABEL_OWNER_START));
    unsigned long long start;
    char *end;
    long pid;
    if (!host || !pid_text || !start_text || strcmp(host, hostname) != 0)
        return true;
    errno = 0;
    pid = strtol(pid_text, &end, 10);
    if (errno || *end || pid <= 0 || pid > INT_MAX)
        return true;
    start = strtoull(start_text, NULL, 10);
    return sg_process_alive((pid_t)pid, start);
}

/* A socket directory named in a label, if it has the shape this driver
 * gives them; a label is not trusted with what gc deletes. */
static bool is_socket_dir(const char *dir)
{
    const char *base = dir ? strrchr(dir, '/') : NULL;
    struct stat st;
    return base && strncmp(base + 1, SOCKET_DIR_PREFIX, strlen(SOCKET_DIR_PREFIX)) == 0 &&
           !strstr(dir, "/../") && !strstr(dir, "/./") && lstat(dir, &st) == 0 &&
           S_ISDIR(st.st_mode);
}

static int docker_gc(size_t *removed, sg_error *err)
{
    engine e = {0};
    response res = {0};
    json_t *list = NULL, *item;
    const char *socket;
    char *filter = NULL, *path = NULL, hostname[256], msg[256];
    size_t i;
    int rc;

    *removed = 0;
    host_name(hostname, sizeof(hostname));
    if ((rc = engine_socket(&socket, err)) < 0 || (rc = engine_open(&e, socket, err)) < 0)
        goto done;
    if (!(filter = curl_easy_escape(e.curl, "{\"label\":[\"" SG_SANDBOX_LABEL "\"]}", 0)) ||
        !(path = sg_asprintf("/containers/json?all=1&filters=%s", filter))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = engine_call(&e, "GET", path, NULL, &res, err)) < 0)
        goto done;
    if (res.status != 200) {
        rc = sg_error_set(err, SG_E_PROCESS, "docker cannot list sandbox containers: %s",
                          engine_message(&res, msg, sizeof(msg)));
        goto done;
    }
    if ((rc = engine_json(&list, &res, JSON_ARRAY, "container list", err)) < 0)
        goto done;
    json_array_foreach(list, i, item)
    {
        json_t *labels = json_object_get(item, "Labels");
        const char *id = json_string_value(json_object_get(item, "Id"));
        const char *dir = json_string_value(json_object_get(labels, LABEL_SOCKET_DIR));
        const char *shard = json_string_value(json_object_get(labels, LABEL_SHARD));
        sg_error one = {0};
        if (!id || owner_alive(labels, hostname))
            continue;
        if (remove_container(&e, id, &one) < 0) {
            sg_log_warning("sandbox gc: %s", one.message);
            continue;
        }
        sg_log_info("sandbox gc: removed docker container %.12s (shard %s) of a killed run", id,
                    shard && *shard ? shard : "?");
        if (is_socket_dir(dir))
            remove_socket_dir(dir);
        (*removed)++;
    }
done:
    json_decref(list);
    curl_free(filter);
    free(path);
    sg_buf_free(&res.body);
    engine_close(&e);
    return rc;
}

const sg_sandbox_driver sg_sandbox_docker_driver = {
    "docker",
    docker_create,
    docker_destroy,
    docker_gc,
};
