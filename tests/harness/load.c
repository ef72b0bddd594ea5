/* Plain malloc on purpose: tests make sg_malloc fail, the harness must not. */
#include "tests/harness/load.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#define LOAD_POLL_MS 50
#define LOAD_CONNECT_TIMEOUT_MS 60000
#define LOAD_STOP_TIMEOUT_MS 10000
#define LOAD_WAIT_TIMEOUT_MS 60000
/* Check passes a failure message through a pipe of limited size. */
#define LOAD_MESSAGE_TAIL 1500

struct sgt_load {
    pid_t pid;
    char *conninfo;
    /* pgbench's stderr, open for reading; its file is unlinked once pgbench
     * has read its script, so a test that fails leaves nothing behind */
    int err_fd;
    char *dir; /* the script and that file until then, NULL after */
};

static void remove_dir(sgt_load *load)
{
    sgt_remove_tree(load->dir);
    free(load->dir);
    load->dir = NULL;
}

static void load_free(sgt_load *load)
{
    remove_dir(load);
    if (load->err_fd >= 0)
        close(load->err_fd);
    free(load->conninfo);
    free(load);
}

/* All pgbench wrote on stderr so far, to free(). */
static char *stderr_text(const sgt_load *load)
{
    struct stat st;
    size_t len = 0;
    if (fstat(load->err_fd, &st) == 0 && st.st_size > 0)
        len = (size_t)st.st_size;
    char *text = malloc(len + 1);
    if (!text)
        sgt_abort("pgbench harness: out of memory");
    ssize_t n = pread(load->err_fd, text, len, 0);
    text[n > 0 ? (size_t)n : 0] = '\0';
    return text;
}

/* Ends pgbench and fails the test with what it said. */
static void fail(sgt_load *load, const char *what) __attribute__((noreturn));

static void fail(sgt_load *load, const char *what)
{
    if (load->pid > 0 && kill(load->pid, SIGKILL) == 0)
        waitpid(load->pid, NULL, 0);
    char *text = stderr_text(load);
    size_t len = strlen(text);
    fprintf(stderr, "pgbench stderr:\n%s\n", text);
    char *msg = sgt_asprintf("pgbench %s; its stderr ends:\n%s", what,
                             len > LOAD_MESSAGE_TAIL ? text + len - LOAD_MESSAGE_TAIL : text);
    free(text);
    load_free(load);
    sgt_abort("%s", msg);
}

/* -h HOST -p PORT -U USER and the database name, from conninfo, into argv
 * (values point into values). Returns how many arguments it added. */
static int connection_args(const char *argv[], char values[4][256], const char *conninfo)
{
    static const struct {
        const char *keyword;
        const char *flag;
    } map[] = {{"host", "-h"}, {"port", "-p"}, {"user", "-U"}, {"dbname", NULL}};
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    int n = 0;
    if (!opts)
        sgt_abort("sgt_load_start: bad conninfo \"%s\": %s", conninfo, errmsg ? errmsg : "");
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (strcmp(o->keyword, map[i].keyword) != 0 || !o->val || !*o->val)
                continue;
            snprintf(values[i], sizeof(values[i]), "%s", o->val);
            if (map[i].flag)
                argv[n++] = map[i].flag;
            argv[n++] = values[i];
        }
    }
    PQconninfoFree(opts);
    return n;
}

/* Like sgt_spawn(), but the child is killed when this process ends: a test
 * that fails while the load runs must not leave pgbench writing for ten
 * minutes into the next tests. */
static pid_t spawn(const char *const argv[], int err)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        sgt_abort("cannot open /dev/null: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        sgt_abort("sgt_load_start: fork: %s", strerror(errno));
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent || dup2(null, 0) < 0 ||
            dup2(null, 1) < 0 || dup2(err, 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(null);
    return pid;
}

static long sessions(const sgt_load *load)
{
    char *v = sgt_pg_value(load->conninfo, "SELECT count(*) FROM pg_stat_activity"
                                           " WHERE datname = current_database()"
                                           " AND application_name = 'pgbench'");
    long n = v ? atol(v) : 0;
    free(v);
    return n;
}

/* A client that hit an error is aborted and says so on stderr; the others
 * carry on, so only the output tells. */
static int said_error(const char *text)
{
    return text && (strstr(text, "ERROR") || strstr(text, "error") || strstr(text, "aborted"));
}

static int stderr_says_error(const sgt_load *load)
{
    char *text = stderr_text(load);
    int bad = said_error(text);
    free(text);
    return bad;
}

sgt_load *sgt_load_start(const char *conninfo, const char *script, int clients)
{
    sgt_load *load = calloc(1, sizeof(*load));
    char tmpl[] = "/tmp/sgt-load-XXXXXX";
    if (!load || !(load->conninfo = strdup(conninfo)))
        sgt_abort("sgt_load_start: out of memory");
    load->err_fd = -1;
    if (!mkdtemp(tmpl) || !(load->dir = strdup(tmpl)))
        sgt_abort("sgt_load_start: cannot create a directory in /tmp: %s", strerror(errno));
    sgt_write_file(load->dir, "script.sql", script);
    char *err_path = sgt_asprintf("%s/stderr", load->dir);
    load->err_fd = open(err_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (load->err_fd < 0)
        sgt_abort("cannot create %s: %s", err_path, strerror(errno));
    free(err_path);

    char *reset = sgt_asprintf(
        "CREATE TABLE IF NOT EXISTS sgt_load_commits (client int PRIMARY KEY, n bigint NOT NULL);"
        "TRUNCATE sgt_load_commits;"
        "INSERT INTO sgt_load_commits SELECT g, 0 FROM generate_series(0, %d) g",
        clients - 1);
    sgt_pg_exec(conninfo, reset);
    free(reset);

    char *bindir = sgt_pg_bindir();
    char *pgbench = sgt_asprintf("%s/pgbench", bindir);
    char *script_path = sgt_asprintf("%s/script.sql", load->dir);
    char *nclients = sgt_asprintf("%d", clients);
    char values[4][256];
    const char *argv[24] = {pgbench, "-n",     "-M", "simple", "-c", nclients,
                            "-j",    nclients, "-T", "600",    "-f", script_path};
    int argc = 12;
    argc += connection_args(argv + argc, values, conninfo);
    argv[argc] = NULL;
    load->pid = spawn(argv, load->err_fd);
    free(nclients);
    free(script_path);
    free(pgbench);
    free(bindir);

    for (long waited = 0; sessions(load) < clients; waited += LOAD_POLL_MS) {
        int status;
        if (waitpid(load->pid, &status, WNOHANG) == load->pid) {
            load->pid = 0;
            fail(load, "ended before all its clients connected");
        }
        /* an aborted client closes its session: it would be waited for in vain */
        if (stderr_says_error(load))
            fail(load, "reported an error while its clients connected");
        if (waited >= LOAD_CONNECT_TIMEOUT_MS)
            fail(load, "did not connect all its clients within a minute");
        sgt_sleep_ms(LOAD_POLL_MS);
    }
    /* pgbench reads its script before it connects */
    remove_dir(load);
    return load;
}

long sgt_load_commits(const sgt_load *load)
{
    char *v = sgt_pg_value(load->conninfo, "SELECT coalesce(sum(n), 0) FROM sgt_load_commits");
    long n = v ? atol(v) : 0;
    free(v);
    return n;
}

void sgt_load_wait_beyond(sgt_load *load, long than)
{
    for (long waited = 0; sgt_load_commits(load) <= than; waited += LOAD_POLL_MS) {
        int status;
        if (waitpid(load->pid, &status, WNOHANG) == load->pid) {
            load->pid = 0;
            fail(load, "ended while the test waited for its writes");
        }
        if (stderr_says_error(load))
            fail(load, "reported an error");
        if (waited >= LOAD_WAIT_TIMEOUT_MS)
            fail(load, "committed nothing more in a minute");
        sgt_sleep_ms(LOAD_POLL_MS);
    }
}

long sgt_load_stop(sgt_load *load)
{
    if (!load)
        return 0;
    int status = 0;
    kill(load->pid, SIGINT);
    for (long waited = 0; waitpid(load->pid, &status, WNOHANG) != load->pid;
         waited += LOAD_POLL_MS) {
        if (waited >= LOAD_STOP_TIMEOUT_MS) {
            kill(load->pid, SIGKILL);
            waitpid(load->pid, &status, 0);
            break;
        }
        sgt_sleep_ms(LOAD_POLL_MS);
    }
    load->pid = 0;
    /* A COMMIT the server received before pgbench died may still complete:
     * count once its sessions are gone. */
    for (long waited = 0; sessions(load) > 0; waited += LOAD_POLL_MS) {
        if (waited >= LOAD_STOP_TIMEOUT_MS)
            fail(load, "sessions were still on the server 10 s after it ended");
        sgt_sleep_ms(LOAD_POLL_MS);
    }
    if (stderr_says_error(load))
        fail(load, "reported an error");
    long n = sgt_load_commits(load);
    load_free(load);
    return n;
}
