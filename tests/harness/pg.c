/* The harness allocates with plain malloc, not sg_malloc: tests make
 * sg_malloc fail on purpose, and the harness must keep working when they do. */
#include "tests/harness/pg.h"
#include "tests/harness/run.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SGT_PG_HOST "127.0.0.1"
#define SGT_PG_PORT_ATTEMPTS 5
/* Generous: initdb and startup take about a second, but CI machines stall. */
#define SGT_PG_START_TIMEOUT_MS 120000
#define SGT_PG_STOP_TIMEOUT_MS 30000
#define SGT_PG_POLL_MS 10
#define SGT_WAIT_TIMEOUT (-1)
#define SGT_WAIT_ERROR (-2)

struct sgt_pg_server {
    pid_t owner; /* the process that started it: only it may stop it */
    pid_t postmaster;
    int port;
    char *dir;
    char *data;
    char *log;
    char *initdb; /* binaries */
    char *postgres;
    struct sgt_pg_server *next;
};

/* Who runs initdb and postgres: both refuse to run as root. */
typedef struct run_as {
    int drop;
    uid_t uid;
    gid_t gid;
    gid_t groups[64];
    int ngroups;
} run_as;

static sgt_pg_server *servers; /* started by this process, stopped at exit */
static int atexit_registered;
static unsigned db_serial;

/* Prints the last few kilobytes of a log, from a line start. */
static void print_tail(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fprintf(stderr, "--- end of %s ---\n", path);
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > 4096) {
        fseek(f, -4096, SEEK_END);
        int c;
        while ((c = fgetc(f)) != EOF && c != '\n') {
        }
    } else {
        rewind(f);
    }
    char buf[512];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "---\n");
    fclose(f);
}

static int log_has_since(const char *path, long offset, const char *needle)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    if (!f)
        return 0;
    if (fseek(f, offset, SEEK_SET) == 0) {
        while (!found && getline(&line, &cap, f) >= 0)
            found = strstr(line, needle) != NULL;
    }
    free(line);
    fclose(f);
    return found;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Waits for pid; returns its wait status, SGT_WAIT_TIMEOUT if it is still
 * running after timeout_ms, or SGT_WAIT_ERROR if it is not our child. */
static int wait_for(pid_t pid, long timeout_ms)
{
    int status;
    for (long waited = 0;; waited += SGT_PG_POLL_MS) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return SGT_WAIT_ERROR;
        if (waited >= timeout_ms)
            return SGT_WAIT_TIMEOUT;
        sgt_sleep_ms(SGT_PG_POLL_MS);
    }
}

static void kill_postmaster(sgt_pg_server *s)
{
    if (s->postmaster <= 0)
        return;
    /* SIGINT is a fast shutdown; SIGQUIT, the fallback, an immediate one. */
    kill(s->postmaster, SIGINT);
    if (wait_for(s->postmaster, SGT_PG_STOP_TIMEOUT_MS) == SGT_WAIT_TIMEOUT) {
        fprintf(stderr, "pg harness: server %d did not stop on SIGINT, sending SIGQUIT\n",
                (int)s->postmaster);
        kill(s->postmaster, SIGQUIT);
        waitpid(s->postmaster, NULL, 0);
    }
    s->postmaster = 0;
}

static void server_free(sgt_pg_server *s)
{
    free(s->dir);
    free(s->data);
    free(s->log);
    free(s->initdb);
    free(s->postgres);
    free(s);
}

static void start_failed(sgt_pg_server *s, const char *log, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* Start-up failures end the process: in a forked test that fails the test,
 * in the runner it stops the run, and either way the log says why. */
static void start_failed(sgt_pg_server *s, const char *log, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "pg harness: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (log)
        print_tail(log);
    if (s) {
        kill_postmaster(s);
        sgt_remove_tree(s->dir);
        server_free(s);
    }
    exit(EXIT_FAILURE);
}

char *sgt_pg_bindir(void)
{
    const char *env = getenv("SG_TEST_PG_BINDIR");
    if (env && *env)
        return sgt_asprintf("%s", env);
    char *dir = sgt_asprintf("/usr/lib/postgresql/15/bin");
    FILE *p = popen("pg_config --version --bindir 2>/dev/null", "r");
    if (!p)
        return dir;
    char version[256], bindir[4096];
    if (fgets(version, sizeof(version), p) && fgets(bindir, sizeof(bindir), p) &&
        strncmp(version, "PostgreSQL 15.", 14) == 0) {
        bindir[strcspn(bindir, "\n")] = '\0';
        free(dir);
        dir = sgt_asprintf("%s", bindir);
    }
    pclose(p);
    return dir;
}

static void find_run_as(run_as *ra)
{
    memset(ra, 0, sizeof(*ra));
    if (geteuid() != 0)
        return;
    struct passwd *pw = getpwnam("postgres");
    if (!pw)
        start_failed(NULL, NULL,
                     "running as root and there is no postgres user to run the server as\n"
                     "hint: install postgresql-common, or run the tests as an unprivileged user");
    ra->drop = 1;
    ra->uid = pw->pw_uid;
    ra->gid = pw->pw_gid;
    ra->ngroups = (int)(sizeof(ra->groups) / sizeof(ra->groups[0]));
    if (getgrouplist(pw->pw_name, pw->pw_gid, ra->groups, &ra->ngroups) < 0)
        ra->ngroups = 0;
}

/* Forks and execs argv with output to log_fd, as the unprivileged user when
 * we are root. A server (daemon) gets its own session, so that Check's kill
 * of a test's process group spares it, and is sent SIGQUIT (immediate
 * shutdown) when the thread that started it ends. */
static pid_t spawn(const char *dir, const run_as *ra, char *const argv[], int log_fd, int daemon)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (daemon)
        setsid();
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
        _exit(127);
    if (ra->drop && (setgroups((size_t)ra->ngroups, ra->groups) != 0 || setgid(ra->gid) != 0 ||
                     setuid(ra->uid) != 0)) {
        dprintf(2, "pg harness: cannot switch to uid %d: %s\n", (int)ra->uid, strerror(errno));
        _exit(127);
    }
    /* After the uid change, which clears it; the getppid() check closes the
     * window in which the parent may already have gone. */
    if (daemon && (prctl(PR_SET_PDEATHSIG, SIGQUIT) != 0 || getppid() != parent))
        _exit(127);
    if (chdir(dir) != 0) {
        dprintf(2, "pg harness: cannot enter %s: %s\n", dir, strerror(errno));
        _exit(127);
    }
    execv(argv[0], argv);
    dprintf(2, "pg harness: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Binding port 0 lets the kernel pick a port that is free now; another
 * process may take it before postgres binds it, hence the retries. */
static int free_port(void)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void run_initdb(sgt_pg_server *s, const run_as *ra)
{
    char log[4200];
    char *argv[] = {s->initdb, "-D",         s->data,     "-A", "trust",    "-E",
                    "UTF8",    "--locale=C", "--no-sync", "-U", "postgres", NULL};
    snprintf(log, sizeof(log), "%s/initdb.log", s->dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        start_failed(s, NULL, "cannot create %s: %s", log, strerror(errno));
    pid_t pid = spawn(s->dir, ra, argv, fd, 0);
    close(fd);
    if (pid < 0)
        start_failed(s, NULL, "cannot fork for initdb: %s", strerror(errno));
    int status = wait_for(pid, SGT_PG_START_TIMEOUT_MS);
    if (status == SGT_WAIT_TIMEOUT) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (status != 0)
        start_failed(s, log, "initdb into %s failed", s->data);
}

/* Starts postgres on a new free port; returns 0 once it accepts connections,
 * or -1 if the port was taken in the meantime and another should be tried. */
static int try_postmaster(sgt_pg_server *s, const run_as *ra)
{
    s->port = free_port();
    if (s->port < 0)
        start_failed(s, NULL, "cannot find a free port on %s: %s", SGT_PG_HOST, strerror(errno));

    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    char *argv[] = {s->postgres,
                    "-D",
                    s->data,
                    "-k",
                    s->dir,
                    "-h",
                    SGT_PG_HOST,
                    "-p",
                    port,
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=50",
                    "-c",
                    "shared_buffers=128MB",
                    NULL};
    long log_start = file_size(s->log);
    int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        start_failed(s, NULL, "cannot create %s: %s", s->log, strerror(errno));
    s->postmaster = spawn(s->dir, ra, argv, fd, 1);
    close(fd);
    if (s->postmaster < 0)
        start_failed(s, NULL, "cannot fork for postgres: %s", strerror(errno));

    char *conninfo = sgt_pg_conninfo(s, "postgres");
    int ready = 0;
    for (long waited = 0; !ready; waited += SGT_PG_POLL_MS) {
        int status;
        if (waitpid(s->postmaster, &status, WNOHANG) == s->postmaster) {
            s->postmaster = 0;
            if (log_has_since(s->log, log_start, "already in use")) {
                free(conninfo);
                return -1;
            }
            start_failed(s, s->log, "postgres exited during startup with %s %d",
                         WIFSIGNALED(status) ? "signal" : "status",
                         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        }
        if (waited >= SGT_PG_START_TIMEOUT_MS)
            start_failed(s, s->log, "postgres did not accept connections on port %d within %d s",
                         s->port, SGT_PG_START_TIMEOUT_MS / 1000);
        ready = PQping(conninfo) == PQPING_OK;
        if (!ready)
            sgt_sleep_ms(SGT_PG_POLL_MS);
    }
    free(conninfo);
    return 0;
}

static void stop_all(void)
{
    sgt_pg_server *next;
    for (sgt_pg_server *s = servers; s; s = next) {
        next = s->next;
        sgt_pg_stop(s);
    }
}

/* A server's directory and binaries, with the postgres user found; the
 * cluster itself is made by the caller. */
static sgt_pg_server *server_new(run_as *ra)
{
    find_run_as(ra);
    sgt_pg_server *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->owner = getpid();
    char *bindir = sgt_pg_bindir();
    s->initdb = sgt_asprintf("%s/initdb", bindir);
    s->postgres = sgt_asprintf("%s/postgres", bindir);
    free(bindir);
    if (access(s->postgres, X_OK) != 0 || access(s->initdb, X_OK) != 0)
        start_failed(s, NULL,
                     "no PostgreSQL server binaries at %s\n"
                     "hint: install postgresql-15, or set SG_TEST_PG_BINDIR",
                     s->postgres);

    const char *tmp = getenv("TMPDIR");
    s->dir = sgt_asprintf("%s/sgt-pg-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s->dir)) {
        int e = errno;
        char where[4200];
        snprintf(where, sizeof(where), "%s", s->dir);
        free(s->dir);
        s->dir = NULL; /* not ours to remove */
        start_failed(s, NULL, "cannot create %s: %s", where, strerror(e));
    }
    s->data = sgt_asprintf("%s/data", s->dir);
    s->log = sgt_asprintf("%s/server.log", s->dir);
    if (ra->drop && chown(s->dir, ra->uid, ra->gid) != 0)
        start_failed(s, NULL, "cannot give %s to the postgres user: %s", s->dir, strerror(errno));
    return s;
}

/* Starts the server on its cluster and registers it for the stop at exit. */
static sgt_pg_server *server_start(sgt_pg_server *s, const run_as *ra)
{
    int attempt = 1;
    while (try_postmaster(s, ra) != 0) {
        if (++attempt > SGT_PG_PORT_ATTEMPTS)
            start_failed(s, s->log, "every port tried was taken by another process");
    }
    s->next = servers;
    servers = s;
    if (!atexit_registered) {
        atexit(stop_all);
        atexit_registered = 1;
    }
    return s;
}

sgt_pg_server *sgt_pg_start(void)
{
    run_as ra;
    sgt_pg_server *s = server_new(&ra);
    run_initdb(s, &ra);
    return server_start(s, &ra);
}

sgt_pg_server *sgt_pg_start_standby(const sgt_pg_server *primary, const char *settings)
{
    run_as ra;
    sgt_pg_server *s = server_new(&ra);
    char log[4200], port[16];
    char *bindir = sgt_pg_bindir();
    char *basebackup = sgt_asprintf("%s/pg_basebackup", bindir);
    free(bindir);
    snprintf(port, sizeof(port), "%d", primary->port);
    char *argv[] = {basebackup, "-h", SGT_PG_HOST, "-p",     port, "-U",   "postgres", "-D",
                    s->data,    "-R", "-X",        "stream", "-c", "fast", NULL};
    snprintf(log, sizeof(log), "%s/basebackup.log", s->dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        start_failed(s, NULL, "cannot create %s: %s", log, strerror(errno));
    pid_t pid = spawn(s->dir, &ra, argv, fd, 0);
    close(fd);
    free(basebackup);
    if (pid < 0 || wait_for(pid, SGT_PG_START_TIMEOUT_MS) != 0)
        start_failed(s, log, "pg_basebackup of port %d into %s failed", primary->port, s->data);
    /* the standby's own settings, after those -R wrote */
    char *conf = sgt_asprintf("%s/postgresql.auto.conf", s->data);
    FILE *f = fopen(conf, "a");
    if (!f || fprintf(f, "%s\n", settings ? settings : "") < 0 || fclose(f) != 0)
        start_failed(s, NULL, "cannot write %s: %s", conf, strerror(errno));
    free(conf);
    return server_start(s, &ra);
}

void sgt_pg_stop(sgt_pg_server *server)
{
    if (!server || server->owner != getpid())
        return;
    for (sgt_pg_server **p = &servers; *p; p = &(*p)->next) {
        if (*p == server) {
            *p = server->next;
            break;
        }
    }
    kill_postmaster(server);
    sgt_remove_tree(server->dir);
    server_free(server);
}

const char *sgt_pg_host(const sgt_pg_server *server)
{
    (void)server;
    return SGT_PG_HOST;
}

int sgt_pg_port(const sgt_pg_server *server)
{
    return server->port;
}

const char *sgt_pg_dir(const sgt_pg_server *server)
{
    return server->dir;
}

char *sgt_pg_conninfo(const sgt_pg_server *server, const char *dbname)
{
    return sgt_asprintf("host=%s port=%d user=postgres dbname=%s", SGT_PG_HOST, server->port,
                        dbname);
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *connect_or_abort(const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK)
        sgt_abort("cannot connect to \"%s\": %s", conninfo, PQerrorMessage(conn));
    PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

static PGresult *exec_or_abort(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        const char *msg =
            PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : PQerrorMessage(conn);
        sgt_abort("sql failed in database \"%s\": %.*s\nsql: %.400s", PQdb(conn),
                  (int)strcspn(msg, "\n"), msg, sql);
    }
    return res;
}

char *sgt_pg_create_db(sgt_pg_server *server, const char *prefix)
{
    /* Identifier characters only, so the name needs no quoting in conninfo;
     * the pid keeps names from tests forked from one runner apart. */
    char clean[32];
    size_t n = 0;
    for (const char *p = prefix ? prefix : ""; *p && n < sizeof(clean) - 1; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        clean[n++] = ok ? c : (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : '_';
    }
    clean[n] = '\0';
    char *name = sgt_asprintf("%s_%d_%u", n ? clean : "db", (int)getpid(), ++db_serial);

    char *admin = sgt_pg_conninfo(server, "postgres");
    PGconn *conn = connect_or_abort(admin);
    char *ident = PQescapeIdentifier(conn, name, strlen(name));
    char *sql = sgt_asprintf("CREATE DATABASE %s TEMPLATE template0", ident);
    PQclear(exec_or_abort(conn, sql));
    PQfinish(conn);
    PQfreemem(ident);
    free(sql);
    free(admin);

    char *conninfo = sgt_pg_conninfo(server, name);
    free(name);
    return conninfo;
}

void sgt_pg_exec(const char *conninfo, const char *sql)
{
    PGconn *conn = connect_or_abort(conninfo);
    PQclear(exec_or_abort(conn, sql));
    PQfinish(conn);
}

char *sgt_pg_value(const char *conninfo, const char *sql)
{
    PGconn *conn = connect_or_abort(conninfo);
    PGresult *res = exec_or_abort(conn, sql);
    char *value = NULL;
    if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0)) {
        value = strdup(PQgetvalue(res, 0, 0));
        if (!value)
            abort();
    }
    PQclear(res);
    PQfinish(conn);
    return value;
}
