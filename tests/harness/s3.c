/* The harness allocates with plain malloc, not sg_malloc: tests make
 * sg_malloc fail on purpose, and the harness must keep working when they do. */
#include "tests/harness/s3.h"
#include "tests/harness/run.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Generous: both servers are up in a fraction of a second, but CI stalls. */
#define SGT_S3_START_TIMEOUT_MS 60000
#define SGT_S3_STOP_TIMEOUT_MS 10000
#define SGT_S3_POLL_MS 10
#define SGT_S3_DEFAULT_MIN_PART (5L * 1024 * 1024)
#define SGT_S3_HINT "hint: run ci/install-deps.sh"

struct sgt_s3 {
    pid_t owner; /* the process that started it: only it may stop it */
    pid_t s3rver;
    pid_t proxy;
    char *dir;
    char *data;
    char *s3cmd_config;
    char *bucket;
    char endpoint[64];
    char direct[64];
    struct sgt_s3 *next;
};

typedef struct sink {
    char *data;
    size_t len;
} sink;

static sgt_s3 *services; /* started by this process, stopped at exit */
static int atexit_registered;

static void print_log(const char *path)
{
    char *text = sgt_read_file(path, NULL);
    if (!text)
        return;
    size_t len = strlen(text);
    const char *from = len > 4096 ? text + len - 4096 : text;
    fprintf(stderr, "--- end of %s ---\n%s---\n", path, from);
    free(text);
}

static void stop_process(pid_t *pid)
{
    int status;
    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    for (long waited = 0;; waited += SGT_S3_POLL_MS) {
        pid_t r = waitpid(*pid, &status, WNOHANG);
        if (r == *pid || (r < 0 && errno != EINTR))
            break;
        if (waited >= SGT_S3_STOP_TIMEOUT_MS) {
            kill(*pid, SIGKILL);
            waitpid(*pid, &status, 0);
            break;
        }
        sgt_sleep_ms(SGT_S3_POLL_MS);
    }
    *pid = 0;
}

static void service_free(sgt_s3 *s3)
{
    free(s3->dir);
    free(s3->data);
    free(s3->s3cmd_config);
    free(s3->bucket);
    free(s3);
}

static void start_failed(sgt_s3 *s3, const char *log, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* Start-up failures end the process: in a forked test that fails the test,
 * in the runner it stops the run, and either way the log says why. */
static void start_failed(sgt_s3 *s3, const char *log, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "s3 harness: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (log)
        print_log(log);
    if (s3) {
        stop_process(&s3->proxy);
        stop_process(&s3->s3rver);
        sgt_remove_tree(s3->dir);
        service_free(s3);
    }
    exit(EXIT_FAILURE);
}

static char *find_in_path(const char *name)
{
    const char *path = getenv("PATH");
    char *copy = sgt_asprintf("%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
    char *found = NULL;
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char *candidate = sgt_asprintf("%s/%s", *dir ? dir : ".", name);
        if (access(candidate, X_OK) == 0)
            found = candidate;
        else
            free(candidate);
    }
    free(copy);
    return found;
}

/* Forks and execs argv with stdout and stderr to DIR/<name>.out and .err.
 * The server gets its own session, so that Check's kill of a test's process
 * group spares it, and is killed when the thread that started it ends. */
static pid_t spawn(sgt_s3 *s3, char *const argv[], const char *name)
{
    char out[4200], err[4200];
    snprintf(out, sizeof(out), "%s/%s.out", s3->dir, name);
    snprintf(err, sizeof(err), "%s/%s.err", s3->dir, name);
    int out_fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err_fd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0 || err_fd < 0)
        start_failed(s3, NULL, "cannot create %s and %s: %s", out, err, strerror(errno));

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        start_failed(s3, NULL, "cannot fork for %s: %s", name, strerror(errno));
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
            _exit(127);
        /* The getppid() check closes the window in which the parent may
         * already have gone. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        execv(argv[0], argv);
        dprintf(2, "s3 harness: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(out_fd);
    close(err_fd);
    return pid;
}

/* Waits for the line "<prefix>PORT" on DIR/<name>.out; returns the port. */
static int wait_listening(sgt_s3 *s3, pid_t *pid, const char *name, const char *prefix)
{
    char out[4200], err[4200];
    snprintf(out, sizeof(out), "%s/%s.out", s3->dir, name);
    snprintf(err, sizeof(err), "%s/%s.err", s3->dir, name);
    for (long waited = 0;; waited += SGT_S3_POLL_MS) {
        char *text = sgt_read_file(out, NULL);
        const char *at = text ? strstr(text, prefix) : NULL;
        int port = at ? atoi(at + strlen(prefix)) : 0;
        free(text);
        if (port > 0)
            return port;

        int status;
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            *pid = 0;
            print_log(out);
            start_failed(s3, err, "%s exited during startup with %s %d", name,
                         WIFSIGNALED(status) ? "signal" : "status",
                         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        }
        if (waited >= SGT_S3_START_TIMEOUT_MS)
            start_failed(s3, err, "%s did not say it was listening within %d s", name,
                         SGT_S3_START_TIMEOUT_MS / 1000);
        sgt_sleep_ms(SGT_S3_POLL_MS);
    }
}

static void write_s3cmd_config(sgt_s3 *s3)
{
    /* host_bucket without %(bucket)s makes s3cmd use path-style URLs. */
    const char *host = s3->endpoint + strlen("http://");
    FILE *f = fopen(s3->s3cmd_config, "w");
    if (!f)
        start_failed(s3, NULL, "cannot create %s: %s", s3->s3cmd_config, strerror(errno));
    fprintf(f,
            "[default]\n"
            "access_key = " SGT_S3_ACCESS_KEY "\n"
            "secret_key = " SGT_S3_SECRET_KEY "\n"
            "host_base = %s\n"
            "host_bucket = %s\n"
            "bucket_location = " SGT_S3_REGION "\n"
            "use_https = False\n"
            "signature_v2 = False\n"
            "progress_meter = False\n",
            host, host);
    if (fclose(f) != 0)
        start_failed(s3, NULL, "cannot write %s: %s", s3->s3cmd_config, strerror(errno));
}

static void stop_all(void)
{
    sgt_s3 *next;
    for (sgt_s3 *s = services; s; s = next) {
        next = s->next;
        sgt_s3_stop(s);
    }
}

static sgt_s3 *start_service(const char *bucket, long min_part_size, const char *cert,
                             const char *key)
{
    sgt_s3 *s3 = calloc(1, sizeof(*s3));
    if (!s3)
        abort();
    s3->owner = getpid();
    s3->bucket = sgt_asprintf("%s", bucket);

    char *node = find_in_path("node");
    if (!node)
        start_failed(s3, NULL, "node is not installed: the S3 test service needs it\n" SGT_S3_HINT);
    const char *source = getenv("SG_SOURCE_DIR");
    if (!source || !*source)
        start_failed(s3, NULL,
                     "SG_SOURCE_DIR is not set: it names the source tree (ctest sets it)");
    char *modules = sgt_asprintf("%s/tests/harness/s3/node_modules", source);
    char *s3rver_js = sgt_asprintf("%s/s3rver/bin/s3rver.js", modules);
    char *signer = sgt_asprintf("%s/@smithy/signature-v4/package.json", modules);
    char *proxy_js = sgt_asprintf("%s/tests/harness/s3/proxy.js", source);
    if (access(s3rver_js, R_OK) != 0 || access(signer, R_OK) != 0)
        start_failed(s3, NULL,
                     "the S3 test service's npm packages are not installed in %s\n" SGT_S3_HINT,
                     modules);

    const char *tmp = getenv("TMPDIR");
    s3->dir = sgt_asprintf("%s/sgt-s3-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s3->dir)) {
        int e = errno;
        char where[4200];
        snprintf(where, sizeof(where), "%s", s3->dir);
        free(s3->dir);
        s3->dir = NULL; /* not ours to remove */
        start_failed(s3, NULL, "cannot create %s: %s", where, strerror(e));
    }
    s3->data = sgt_asprintf("%s/data", s3->dir);
    s3->s3cmd_config = sgt_asprintf("%s/s3cmd.cfg", s3->dir);
    if (mkdir(s3->data, 0755) != 0)
        start_failed(s3, NULL, "cannot create %s: %s", s3->data, strerror(errno));

    /* s3rver makes ListObjectsV2 continuation tokens with DES, which
     * OpenSSL 3 keeps in its legacy provider. Port 0: the kernel picks a free
     * port and each server prints it, so there is no race for it. */
    char *s3rver_argv[] = {node,
                           "--openssl-legacy-provider",
                           s3rver_js,
                           "-d",
                           s3->data,
                           "-a",
                           "127.0.0.1",
                           "-p",
                           "0",
                           "-s",
                           "--no-vhost-buckets",
                           "--configure-bucket",
                           s3->bucket,
                           cert ? "--cert" : NULL,
                           (char *)cert,
                           "--key",
                           (char *)key,
                           NULL};
    s3->s3rver = spawn(s3, s3rver_argv, "s3rver");
    int direct_port = wait_listening(s3, &s3->s3rver, "s3rver", "S3rver listening on 127.0.0.1:");
    snprintf(s3->direct, sizeof(s3->direct), "%s://127.0.0.1:%d", cert ? "https" : "http",
             direct_port);
    if (cert) {
        /* TLS is between the client and s3rver itself: no proxy. */
        snprintf(s3->endpoint, sizeof(s3->endpoint), "%s", s3->direct);
    } else {
        char min_part[32];
        snprintf(min_part, sizeof(min_part), "%ld",
                 min_part_size > 0 ? min_part_size : SGT_S3_DEFAULT_MIN_PART);
        char *proxy_argv[] = {node,       proxy_js,          "--upstream",
                              s3->direct, "--access-key",    SGT_S3_ACCESS_KEY,
                              "--secret", SGT_S3_SECRET_KEY, "--port",
                              "0",        "--min-part-size", min_part,
                              NULL};
        s3->proxy = spawn(s3, proxy_argv, "proxy");
        int proxy_port = wait_listening(s3, &s3->proxy, "proxy", "proxy listening on 127.0.0.1:");
        snprintf(s3->endpoint, sizeof(s3->endpoint), "http://127.0.0.1:%d", proxy_port);
    }
    write_s3cmd_config(s3);

    free(node);
    free(modules);
    free(s3rver_js);
    free(signer);
    free(proxy_js);
    /* Here, in the main thread before Check forks: curl_global_init is not
     * thread-safe. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    s3->next = services;
    services = s3;
    if (!atexit_registered) {
        atexit(stop_all);
        atexit_registered = 1;
    }
    return s3;
}

sgt_s3 *sgt_s3_start(const char *bucket, long min_part_size)
{
    return start_service(bucket, min_part_size, NULL, NULL);
}

sgt_s3 *sgt_s3_start_tls(const char *bucket, const char *cert_file, const char *key_file)
{
    return start_service(bucket, 0, cert_file, key_file);
}

void sgt_s3_stop(sgt_s3 *s3)
{
    if (!s3 || s3->owner != getpid())
        return;
    for (sgt_s3 **p = &services; *p; p = &(*p)->next) {
        if (*p == s3) {
            *p = s3->next;
            break;
        }
    }
    stop_process(&s3->proxy);
    stop_process(&s3->s3rver);
    sgt_remove_tree(s3->dir);
    service_free(s3);
}

const char *sgt_s3_endpoint(const sgt_s3 *s3)
{
    return s3->endpoint;
}

const char *sgt_s3_direct_endpoint(const sgt_s3 *s3)
{
    return s3->direct;
}

const char *sgt_s3_data_dir(const sgt_s3 *s3)
{
    return s3->data;
}

const char *sgt_s3_bucket(const sgt_s3 *s3)
{
    return s3->bucket;
}

const char *sgt_s3cmd_config(const sgt_s3 *s3)
{
    return s3->s3cmd_config;
}

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink *s = userdata;
    size_t n = size * nmemb;
    char *grown = realloc(s->data, s->len + n + 1);
    if (!grown)
        return 0;
    memcpy(grown + s->len, ptr, n);
    s->data = grown;
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

/* One request to a control endpoint; aborts the test unless the proxy
 * answers want_status. Returns the body, to free(). */
static char *control(sgt_s3 *s3, const char *method, const char *path, const char *body,
                     long want_status)
{
    char url[256];
    char errbuf[CURL_ERROR_SIZE] = "";
    sink response = {0};
    long status = 0;
    struct curl_slist *headers = NULL;

    snprintf(url, sizeof(url), "%s%s", s3->endpoint, path);
    CURL *curl = curl_easy_init();
    if (!curl)
        sgt_abort("curl_easy_init failed");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    }
    CURLcode rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK)
        sgt_abort("%s %s: %s", method, url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
    if (status != want_status)
        sgt_abort("%s %s answered %ld: %s", method, url, status,
                  response.data ? response.data : "");
    if (!response.data) {
        response.data = strdup("");
        if (!response.data)
            abort();
    }
    return response.data;
}

static json_t *control_json(sgt_s3 *s3, const char *path)
{
    char *text = control(s3, "GET", path, NULL, 200);
    json_error_t error;
    json_t *value = json_loads(text, 0, &error);
    if (!value)
        sgt_abort("GET %s returned invalid JSON (%s): %.200s", path, error.text, text);
    free(text);
    return value;
}

void sgt_s3_set_faults(sgt_s3 *s3, const char *json)
{
    free(control(s3, "PUT", "/__faults", json, 204));
}

char *sgt_s3_log(sgt_s3 *s3)
{
    return control(s3, "GET", "/__log", NULL, 200);
}

void sgt_s3_clear_log(sgt_s3 *s3)
{
    free(control(s3, "DELETE", "/__log", NULL, 204));
}

int sgt_s3_count(sgt_s3 *s3, const char *method, const char *query_substring, int status)
{
    json_t *log = control_json(s3, "/__log");
    size_t i;
    json_t *entry;
    int n = 0;
    json_array_foreach(log, i, entry)
    {
        const char *m = json_string_value(json_object_get(entry, "method"));
        const char *q = json_string_value(json_object_get(entry, "query"));
        json_int_t st = json_integer_value(json_object_get(entry, "status"));
        if ((!method || (m && strcmp(m, method) == 0)) &&
            (!query_substring || (q && strstr(q, query_substring))) &&
            (status == 0 || st == status))
            n++;
    }
    json_decref(log);
    return n;
}

int sgt_s3_open_uploads(sgt_s3 *s3)
{
    json_t *uploads = control_json(s3, "/__uploads");
    json_t *open = json_object_get(uploads, "open");
    if (!json_is_array(open))
        sgt_abort("/__uploads has no \"open\" array");
    int n = (int)json_array_size(open);
    json_decref(uploads);
    return n;
}

void sgt_s3_setenv(const sgt_s3 *s3)
{
    static const char *const unset[] = {
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ENDPOINT_URL",
        "AWS_CA_BUNDLE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    };
    for (size_t i = 0; i < sizeof(unset) / sizeof(unset[0]); i++)
        unsetenv(unset[i]);
    if (setenv("AWS_ACCESS_KEY_ID", SGT_S3_ACCESS_KEY, 1) != 0 ||
        setenv("AWS_SECRET_ACCESS_KEY", SGT_S3_SECRET_KEY, 1) != 0 ||
        setenv("AWS_REGION", SGT_S3_REGION, 1) != 0 ||
        setenv("AWS_DEFAULT_REGION", SGT_S3_REGION, 1) != 0 ||
        setenv("AWS_ENDPOINT_URL_S3", s3->endpoint, 1) != 0)
        sgt_abort("setenv: %s", strerror(errno));
}

char *sgt_s3cmd(sgt_s3 *s3, const char *const argv[])
{
    size_t argc = 0;
    while (argv[argc])
        argc++;
    const char **full = malloc((argc + 4) * sizeof(*full));
    if (!full)
        abort();
    full[0] = "s3cmd";
    full[1] = "--config";
    full[2] = s3->s3cmd_config;
    memcpy(full + 3, argv, (argc + 1) * sizeof(*full));

    sgt_result r;
    int status = sgt_run(&r, full, NULL);
    free(full);
    if (status != 0) {
        char *err = sgt_asprintf("%s", r.err);
        sgt_result_free(&r);
        sgt_abort("s3cmd %s exited with status %d: %s", argc ? argv[0] : "", status, err);
    }
    free(r.err);
    return r.out;
}
