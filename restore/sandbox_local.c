/* The "local" sandbox driver: the host's PostgreSQL server binaries, run in
 * a private temporary directory $TMPDIR/shardgate-sandbox-XXXXXX (data/,
 * initdb.log, server.log, the unix socket, and a marker file naming the
 * owner process for sg_sandbox_gc). There is no TCP listener at all.
 *
 * As root the server runs as the "postgres" system user (else "nobody");
 * otherwise as the current user, inside a user namespace of its own.
 *
 * Where the kernel allows it the server lives in new mount, pid, net and ipc
 * namespaces, under a small supervisor of ours that is pid 1 there: killing
 * the supervisor kills every process of the sandbox at once, and the
 * supervisor exits (taking the namespace with it) as soon as the process
 * that created it is gone, even if that process was killed outright. Where
 * the kernel does not allow it (unprivileged, some containers), the
 * postmaster runs as a plain child and a warning says so once per process;
 * such a server outlives an owner that is killed outright, and
 * sg_sandbox_gc stops it. Setting SHARDGATE_SANDBOX_NAMESPACES=off in the
 * environment forces that mode.
 *
 * The creating process may be multi-threaded (drills run shards on
 * threads): every string a child needs is built before it forks, and a
 * child makes only async-signal-safe calls until it execs. */
#include "restore/sandbox_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <net/if.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/interrupt.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/proc.h"

#define DIR_PREFIX "shardgate-sandbox-"
#define MARKER_MAGIC "shardgate-sandbox 1"
#define PG_PORT 5432
#define PG_SOCKET_NAME "/.s.PGSQL.5432"
#define POLL_MS 10
#define READY_TIMEOUT_MS 60000
/* An immediate shutdown takes milliseconds; this only bounds a stuck one. */
#define STOP_TIMEOUT_MS 5000
/* A directory without a marker is one being created, or not ours; after an
 * hour it is neither. */
#define UNMARKED_MAX_AGE_S 3600
/* What fits in sg_error's detail with room for a heading. */
#define LOG_TAIL_MAX 900
#define MAX_GROUPS 64

/* The unprivileged account the server runs as, resolved before any fork. */
typedef struct run_as {
    bool drop; /* running as root: switch to uid/gid before exec */
    uid_t uid;
    gid_t gid;
    gid_t groups[MAX_GROUPS];
    int ngroups;
    const char *name;
} run_as;

typedef struct local_sandbox {
    sg_sandbox base;
    char *dir;
    pid_t pid;    /* the supervisor (namespaced), else the postmaster; -1: none */
    int lifeline; /* namespaced: write end, held open until destroy */
    bool namespaced;
} local_sandbox;

/* Everything a child needs, prepared before fork. */
typedef struct launch {
    char **argv;
    const char *dir;
    const run_as *ra;
    int null_fd;
    int log_fd;
    /* initdb only: the parent to die with (0: none). A killed owner must not
     * leave initdb writing into a directory that gc is removing. */
    pid_t die_with;
    /* namespaced only */
    int lifeline_fd; /* read end: POLLHUP when the owner is gone */
    int status_fd;   /* write end: a setup_report on failure, EOF on success */
    bool userns;
    char uid_map[48];
    char gid_map[48];
} launch;

/* What the supervisor could not set up, sent back so the parent can fall
 * back to running without namespaces. */
typedef enum {
    SETUP_USERNS = 1,
    SETUP_MOUNT_PRIVATE,
    SETUP_MOUNT_SHM,
} setup_step;

typedef struct setup_report {
    int step;
    int error;
} setup_report;

static atomic_bool fallback_warned;

/* ---- helpers for children: async-signal-safe only ---- */

static void child_write(const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(2, s, len);
        if (n <= 0 && errno != EINTR)
            return;
        if (n > 0) {
            s += n;
            len -= (size_t)n;
        }
    }
}

/* "shardgate: cannot <what> <arg>: <reason>" on stderr (the log file), then
 * exit. strerror may allocate or load a locale; strerrordesc_np does not. */
static void child_fail(const char *what, const char *arg, int e) __attribute__((noreturn));
static void child_fail(const char *what, const char *arg, int e)
{
    char num[16];
    int i = (int)sizeof(num) - 1;
    const char *reason = NULL;
#ifdef __GLIBC__
    reason = strerrordesc_np(e);
#endif
    num[i] = '\0';
    do {
        num[--i] = (char)('0' + e % 10);
        e /= 10;
    } while (e > 0 && i > 0);
    child_write("shardgate: cannot ");
    child_write(what);
    if (arg) {
        child_write(" ");
        child_write(arg);
    }
    child_write(": ");
    child_write(reason ? reason : "errno ");
    if (!reason)
        child_write(num + i);
    child_write("\n");
    _exit(127);
}

/* fork() without glibc's fork handlers (which take locks another thread of
 * the parent may have held at clone time), optionally into new namespaces.
 * With a NULL stack the child runs on a copy of the caller's, like fork.
 * s390 takes the stack first. */
static pid_t clone_process(unsigned long flags)
{
#if defined(__s390__) || defined(__CRIS__)
    return (pid_t)syscall(SYS_clone, 0UL, flags | SIGCHLD);
#else
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0UL, 0UL, 0UL, 0UL);
#endif
}

static void close_span(unsigned lo, unsigned hi)
{
    struct rlimit rl;
    unsigned max = 65536;
    if (lo > hi)
        return;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, lo, hi, 0U) == 0)
        return;
#endif
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < max)
        max = (unsigned)rl.rlim_cur;
    for (unsigned fd = lo; fd <= hi && fd < max; fd++)
        close((int)fd);
}

/* Closes every descriptor above stderr except keep_a and keep_b (-1: none):
 * the parent's sockets, files and other sandboxes' lifelines are not the
 * child's to hold. */
static void close_others(int keep_a, int keep_b)
{
    int keep[2] = {keep_a < keep_b ? keep_a : keep_b, keep_a < keep_b ? keep_b : keep_a};
    unsigned lo = 3;
    for (int i = 0; i < 2; i++) {
        if (keep[i] < (int)lo)
            continue;
        close_span(lo, (unsigned)keep[i] - 1);
        lo = (unsigned)keep[i] + 1;
    }
    close_span(lo, ~0U);
}

static void reset_signals(void)
{
    struct sigaction sa;
    sigset_t none;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* stdin from /dev/null, stdout and stderr to the log. */
static void child_stdio(const launch *l)
{
    if (dup2(l->null_fd, 0) < 0 || dup2(l->log_fd, 1) < 0 || dup2(l->log_fd, 2) < 0)
        _exit(127);
}

static void drop_privileges(const run_as *ra)
{
    if (!ra->drop)
        return;
    if (setgroups((size_t)ra->ngroups, ra->groups) != 0 || setgid(ra->gid) != 0)
        child_fail("switch to the group of user", ra->name, errno);
    if (setuid(ra->uid) != 0)
        child_fail("switch to user", ra->name, errno);
}

/* The end of every server child (initdb, postmaster). */
static void exec_server(const launch *l, int keep) __attribute__((noreturn));
static void exec_server(const launch *l, int keep)
{
    reset_signals();
    child_stdio(l);
    close_others(keep, -1);
    drop_privileges(l->ra);
    /* After the switch of user, which clears the parent-death signal. It
     * follows the creating thread, which waits for initdb to finish. */
    if (l->die_with && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != l->die_with))
        _exit(127);
    if (chdir(l->dir) != 0)
        child_fail("enter", l->dir, errno);
    execv(l->argv[0], l->argv);
    child_fail("execute", l->argv[0], errno);
}

static bool write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    bool ok;
    if (fd < 0)
        return false;
    ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok;
}

static void report_setup_failure(int fd, setup_step step, int e) __attribute__((noreturn));
static void report_setup_failure(int fd, setup_step step, int e)
{
    setup_report r = {step, e};
    if (write(fd, &r, sizeof(r)) < 0)
        _exit(2);
    _exit(1);
}

/* Without a loopback interface nothing can bind 127.0.0.1; servers before
 * 15 want it for the statistics collector. Best effort. */
static void bring_up_loopback(void)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
}

static void on_sigchld(int signo)
{
    (void)signo;
}

/* pid 1 of the sandbox's namespaces. It stays privileged (a pid 1 that
 * changes uid would lose what it needs to stay in charge), starts the
 * postmaster, reaps whatever is orphaned to it, and exits when the
 * postmaster does or when the owner's end of the lifeline closes; the
 * kernel then kills everything left in the namespace. */
static void supervise(const launch *l) __attribute__((noreturn));
static void supervise(const launch *l)
{
    struct sigaction sa;
    sigset_t chld, waiting;
    pid_t postmaster;

    reset_signals();
    setsid();
    child_stdio(l);
    close_others(l->lifeline_fd, l->status_fd);

    if (l->userns && (!write_file("/proc/self/setgroups", "deny") ||
                      !write_file("/proc/self/uid_map", l->uid_map) ||
                      !write_file("/proc/self/gid_map", l->gid_map)))
        report_setup_failure(l->status_fd, SETUP_USERNS, errno);
    /* Mounts made here must not propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        report_setup_failure(l->status_fd, SETUP_MOUNT_PRIVATE, errno);
    /* PostgreSQL's dynamic shared memory lives in /dev/shm: a private tmpfs
     * dies with the namespace and leaves nothing behind on the host. */
    if (mount("shardgate-sandbox", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=1777") != 0)
        report_setup_failure(l->status_fd, SETUP_MOUNT_SHM, errno);
    bring_up_loopback();
    close(l->status_fd);

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigchld;
    sigaction(SIGCHLD, &sa, NULL);

    postmaster = clone_process(0);
    if (postmaster == 0) {
        /* Its stdio is ours already; the descriptors it came from are closed. */
        launch server = *l;
        server.null_fd = 0;
        server.log_fd = 2;
        exec_server(&server, -1);
    }
    if (postmaster < 0)
        child_fail("start", l->argv[0], errno);

    sigemptyset(&waiting);
    for (;;) {
        struct pollfd pfd = {l->lifeline_fd, POLLIN, 0};
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            if (pid == postmaster)
                _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        /* SIGCHLD is blocked except inside ppoll, so none is missed between
         * the reaping above and the wait. */
        if (ppoll(&pfd, 1, NULL, &waiting) > 0)
            _exit(0);
    }
}

/* ---- the parent side ---- */

static const char *tmp_base(void)
{
    const char *base = getenv("TMPDIR");
    return base && *base ? base : "/tmp";
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static long elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* Whether a process is still there: gone, or a zombie, is dead. */
static bool process_alive(pid_t pid)
{
    return sg_process_alive(pid, 0);
}

/* Runs argv (PATH searched) and keeps the first line of its stdout; -1 if
 * it cannot be run or fails. For pg_config and postgres --version, which
 * are quick and print one line. */
static int capture_line(char *out, size_t size, const char *const argv[])
{
    int pipefd[2], status, nul;
    size_t used = 0;
    ssize_t n;
    pid_t pid;
    out[0] = '\0';
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -1;
    if ((nul = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        if (dup2(nul, 0) < 0 || dup2(pipefd[1], 1) < 0 || dup2(nul, 2) < 0)
            _exit(127);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    close(nul);
    while (pid > 0 && (n = read(pipefd[0], out + used, size - 1 - used)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (used += (size_t)n) == size - 1)
            break;
    }
    close(pipefd[0]);
    out[used] = '\0';
    out[strcspn(out, "\n")] = '\0';
    if (pid < 0)
        return -1;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 && out[0] ? 0 : -1;
}

/* Looks at one candidate directory: 1 if its server binaries are of the
 * wanted major, 0 if not (what was there in `seen`), or a negative code. */
static int probe_bindir(const char *dir, int major, char *seen, size_t seen_size, sg_error *err)
{
    char *postgres = sg_asprintf("%s/postgres", dir);
    char *initdb = sg_asprintf("%s/initdb", dir);
    char version[256];
    const char *p;
    int rc = 0;
    if (!postgres || !initdb) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if (access(postgres, X_OK) != 0 || access(initdb, X_OK) != 0) {
        snprintf(seen, seen_size, "postgres or initdb missing or not executable");
        goto done;
    }
    {
        const char *argv[] = {postgres, "--version", NULL};
        if (capture_line(version, sizeof(version), argv) != 0) {
            snprintf(seen, seen_size, "%s --version failed", postgres);
            goto done;
        }
    }
    /* "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)" */
    p = strchr(version, ')');
    snprintf(seen, seen_size, "%s", version);
    rc = p && atoi(p + 1) == major;
done:
    free(postgres);
    free(initdb);
    return rc;
}

/* opts->pg_bindir if given; else pg_config's bindir, then Debian's
 * versioned directory. Nothing is cached: an upgrade between two sandboxes
 * must not leave a stale path. */
static int find_bindir(char **out, int major, const char *given, sg_error *err)
{
    char looked[2][700];
    char pg_config_dir[4096] = "";
    char *candidates[2] = {NULL, NULL};
    const char *labels[2] = {NULL, NULL};
    size_t n = 0;
    int rc = 0;
    *out = NULL;
    if (given) {
        candidates[n] = sg_strdup(given);
        labels[n++] = " (--pg-bindir)";
    } else {
        const char *argv[] = {"pg_config", "--bindir", NULL};
        if (capture_line(pg_config_dir, sizeof(pg_config_dir), argv) == 0) {
            candidates[n] = sg_strdup(pg_config_dir);
            labels[n++] = " (pg_config --bindir)";
        }
        candidates[n] = sg_asprintf("/usr/lib/postgresql/%d/bin", major);
        labels[n++] = "";
    }
    for (size_t i = 0; i < n; i++) {
        char seen[512] = "";
        if (!candidates[i]) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            goto done;
        }
        if (i > 0 && strcmp(candidates[i], candidates[0]) == 0) {
            looked[i][0] = '\0';
            continue;
        }
        if ((rc = probe_bindir(candidates[i], major, seen, sizeof(seen), err)) < 0)
            goto done;
        if (rc == 1) {
            *out = candidates[i];
            candidates[i] = NULL;
            rc = 0;
            goto done;
        }
        snprintf(looked[i], sizeof(looked[i]), "%s%s: %s", candidates[i], labels[i], seen);
    }
    rc = sg_error_set(err, SG_E_NOT_FOUND, "no PostgreSQL %d server binaries found", major);
    if (!given && !pg_config_dir[0])
        sg_error_detail(err, "pg_config: not found in PATH");
    for (size_t i = 0; i < n; i++)
        if (looked[i][0])
            sg_error_detail(err, "%s", looked[i]);
    sg_error_hint(err, "install postgresql-%d, or pass --pg-bindir DIR", major);
done:
    free(candidates[0]);
    free(candidates[1]);
    return rc;
}

static int find_run_as(run_as *ra, sg_error *err)
{
    static const char *const names[] = {"postgres", "nobody"};
    struct passwd pw, *found = NULL;
    char buf[4096];
    memset(ra, 0, sizeof(*ra));
    if (geteuid() != 0)
        return 0;
    /* postgres refuses to run as root. */
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !found; i++) {
        if (getpwnam_r(names[i], &pw, buf, sizeof(buf), &found) != 0)
            found = NULL;
        if (found)
            ra->name = names[i];
    }
    if (!found) {
        sg_error_set(err, SG_E_NOT_FOUND,
                     "running as root and there is no postgres or nobody user to run the "
                     "sandbox server as");
        sg_error_hint(err, "create a postgres system user, or run shardgate as another user");
        return SG_E_NOT_FOUND;
    }
    ra->drop = true;
    ra->uid = pw.pw_uid;
    ra->gid = pw.pw_gid;
    ra->ngroups = MAX_GROUPS;
    if (getgrouplist(pw.pw_name, pw.pw_gid, ra->groups, &ra->ngroups) < 0) {
        ra->groups[0] = pw.pw_gid;
        ra->ngroups = 1;
    }
    return 0;
}

static int write_marker(const char *dir, const sg_sandbox_options *opts, sg_error *err)
{
    char *path = sg_asprintf("%s/%s", dir, SG_SANDBOX_LABEL);
    unsigned long long start = 0;
    FILE *f = NULL;
    int fd = -1, rc = 0;
    if (!path)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    /* Unknown (0) makes gc treat a live pid as the owner: the safe side. */
    if (sg_process_stat(getpid(), NULL, &start) != 0)
        start = 0;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        rc = sg_error_set(err, SG_E_IO, "cannot create sandbox marker %s: %s", path,
                          strerror(errno));
        goto done;
    }
    fd = -1;
    fprintf(f, "%s\npid %d\nstart %llu\nrun %s\nshard %s\n", MARKER_MAGIC, (int)getpid(), start,
            opts->run_id ? opts->run_id : "", opts->shard ? opts->shard : "");
    if (fflush(f) != 0 || ferror(f))
        rc =
            sg_error_set(err, SG_E_IO, "cannot write sandbox marker %s: %s", path, strerror(errno));
done:
    if (f)
        fclose(f);
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

/* The last lines of a log (from a line start) into buf, for an error. */
static void log_tail(char *buf, size_t size, const char *path)
{
    char *nl;
    ssize_t n;
    off_t end;
    size_t want = size - 1 < LOG_TAIL_MAX ? size - 1 : LOG_TAIL_MAX;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    buf[0] = '\0';
    if (fd < 0)
        return;
    end = lseek(fd, 0, SEEK_END);
    if (end > 0 && lseek(fd, end > (off_t)want ? end - (off_t)want : 0, SEEK_SET) >= 0 &&
        (n = read(fd, buf, want)) > 0) {
        buf[n] = '\0';
        while (n > 0 && buf[n - 1] == '\n')
            buf[--n] = '\0';
        if (end > (off_t)want && (nl = strchr(buf, '\n')) != NULL)
            memmove(buf, nl + 1, strlen(nl + 1) + 1);
    }
    close(fd);
}

static void detail_log(sg_error *err, const char *dir, const char *name)
{
    char path[4200], tail[LOG_TAIL_MAX + 1];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    log_tail(tail, sizeof(tail), path);
    if (tail[0])
        sg_error_detail(err, "%s", tail);
}

static int open_log(int *out, const char *dir, const char *name, sg_error *err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    *out = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (*out < 0)
        return sg_error_set(err, SG_E_IO, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

/* Reaps pid if it has exited: true with its status. */
static bool reaped(pid_t pid, int *status)
{
    pid_t r;
    while ((r = waitpid(pid, status, WNOHANG)) < 0 && errno == EINTR)
        ;
    return r == pid || (r < 0 && errno == ECHILD);
}

static void describe_status(char *buf, size_t size, int status)
{
    if (WIFSIGNALED(status))
        snprintf(buf, size, "was killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
}

static int run_initdb(const local_sandbox *sb, launch *l, const char *initdb, const char *data,
                      sg_error *err)
{
    char *argv[] = {(char *)initdb, "-D", (char *)data, "-U",         "postgres",  "-A",
                    "trust",        "-E", "UTF8",       "--locale=C", "--no-sync", NULL};
    char how[64];
    int status = 0, rc = 0;
    pid_t pid;
    if ((rc = open_log(&l->log_fd, sb->dir, "initdb.log", err)) < 0)
        return rc;
    l->argv = argv;
    l->die_with = getpid();
    pid = fork();
    if (pid == 0) {
        /* Its own process group, so that an interrupt kills the bootstrap
         * backends it runs too. */
        setsid();
        exec_server(l, -1);
    }
    close(l->log_fd);
    l->log_fd = -1;
    l->argv = NULL;
    l->die_with = 0;
    if (pid < 0)
        return sg_error_set(err, SG_E_PROCESS, "cannot start initdb: %s", strerror(errno));
    while (!reaped(pid, &status)) {
        if ((rc = sg_interrupt_check(err)) < 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            return rc;
        }
        sleep_ms(POLL_MS);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    describe_status(how, sizeof(how), status);
    rc = sg_error_set(err, SG_E_PROCESS, "initdb for the sandbox %s", how);
    detail_log(err, sb->dir, "initdb.log");
    return rc;
}

static bool namespaces_refused(int e)
{
    /* EPERM: unprivileged or forbidden by seccomp; EINVAL: a kernel without
     * them; ENOSPC/EUSERS: namespace limits; ENOSYS: no clone at all. */
    return e == EPERM || e == EINVAL || e == ENOSPC || e == EUSERS || e == ENOSYS || e == EACCES;
}

static const char *setup_step_name(int step)
{
    switch (step) {
    case SETUP_USERNS:
        return "map the user namespace";
    case SETUP_MOUNT_PRIVATE:
        return "make mounts private";
    case SETUP_MOUNT_SHM:
        return "mount a tmpfs on /dev/shm";
    default:
        return "set up namespaces";
    }
}

/* Starts the supervisor in new namespaces: 0 and sb->pid set; 1 when the
 * kernel refused them (why in `why`); or a negative code. */
static int start_namespaced(local_sandbox *sb, launch *l, char *why, size_t why_size, sg_error *err)
{
    unsigned long flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC;
    int life[2] = {-1, -1}, status[2] = {-1, -1}, rc = 0, e;
    setup_report report;
    ssize_t n;
    pid_t pid;
    if (l->userns)
        flags |= CLONE_NEWUSER;
    if (pipe2(life, O_CLOEXEC) != 0 || pipe2(status, O_CLOEXEC) != 0) {
        rc = sg_error_set(err, SG_E_PROCESS, "cannot create a pipe: %s", strerror(errno));
        goto done;
    }
    l->lifeline_fd = life[0];
    l->status_fd = status[1];
    pid = clone_process(flags);
    if (pid == 0)
        supervise(l);
    e = errno;
    close(life[0]);
    close(status[1]);
    life[0] = status[1] = -1;
    if (pid < 0) {
        if (!namespaces_refused(e)) {
            rc = sg_error_set(err, SG_E_PROCESS, "cannot start the sandbox supervisor: %s",
                              strerror(e));
            goto done;
        }
        snprintf(why, why_size, "cannot create namespaces: %s", strerror(e));
        rc = 1;
        goto done;
    }
    while ((n = read(status[0], &report, sizeof(report))) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)sizeof(report)) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        snprintf(why, why_size, "cannot %s in them: %s", setup_step_name(report.step),
                 strerror(report.error));
        rc = 1;
        goto done;
    }
    sb->pid = pid;
    sb->lifeline = life[1];
    sb->namespaced = true;
    life[1] = -1;
done:
    for (int i = 0; i < 2; i++) {
        if (life[i] >= 0)
            close(life[i]);
        if (status[i] >= 0)
            close(status[i]);
    }
    return rc;
}

static int start_plain(local_sandbox *sb, launch *l, sg_error *err)
{
    pid_t pid = fork();
    if (pid == 0) {
        /* Out of the terminal's process group: a Ctrl-C is ours to act on,
         * and we stop the server ourselves. */
        setsid();
        exec_server(l, -1);
    }
    if (pid < 0)
        return sg_error_set(err, SG_E_PROCESS, "cannot start postgres: %s", strerror(errno));
    sb->pid = pid;
    return 0;
}

static void wait_gone(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Stops the server and every process of the sandbox. */
static void stop_server(local_sandbox *sb)
{
    int status;
    if (sb->pid > 0 && sb->namespaced) {
        /* The whole namespace dies with its pid 1, and the kernel reaps
         * every process in it before the supervisor can be waited for. */
        kill(sb->pid, SIGKILL);
        wait_gone(sb->pid);
    } else if (sb->pid > 0) {
        struct timespec start;
        bool gone = false;
        /* SIGQUIT is an immediate shutdown: the postmaster kills its
         * children and waits for them. */
        kill(sb->pid, SIGQUIT);
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (!(gone = reaped(sb->pid, &status)) && elapsed_ms(&start) < STOP_TIMEOUT_MS)
            sleep_ms(POLL_MS);
        if (!gone) {
            sg_log_warning("the sandbox server in %s did not stop on SIGQUIT; killing it", sb->dir);
            kill(sb->pid, SIGKILL);
            wait_gone(sb->pid);
        }
    }
    sb->pid = -1;
    if (sb->lifeline >= 0)
        close(sb->lifeline);
    sb->lifeline = -1;
}

static void remove_dir(const char *dir)
{
    struct stat st;
    if (!dir)
        return;
    sg_tmpdir_remove(dir);
    if (lstat(dir, &st) == 0)
        sg_log_warning("cannot remove the sandbox directory %s", dir);
}

static int wait_ready(local_sandbox *sb, sg_error *err)
{
    struct timespec start;
    char how[64];
    int status = 0, rc;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if ((rc = sg_interrupt_check(err)) < 0)
            return rc;
        if (reaped(sb->pid, &status)) {
            sb->pid = -1;
            describe_status(how, sizeof(how), status);
            rc = sg_error_set(err, SG_E_PROCESS, "the sandbox server %s during startup", how);
            detail_log(err, sb->dir, "server.log");
            return rc;
        }
        if (PQping(sb->base.conninfo) == PQPING_OK)
            return 0;
        if (elapsed_ms(&start) >= READY_TIMEOUT_MS) {
            rc = sg_error_set(err, SG_E_PROCESS,
                              "the sandbox server did not accept connections within %d s",
                              READY_TIMEOUT_MS / 1000);
            detail_log(err, sb->dir, "server.log");
            return rc;
        }
        sleep_ms(POLL_MS);
    }
}

/* host=DIR quoted for a conninfo string when it needs to be. */
static char *make_conninfo(const char *dir)
{
    size_t len = strlen(dir), j = 0;
    char *quoted, *out;
    if (strcspn(dir, " '\\") == len)
        return sg_asprintf("host=%s port=%d user=postgres dbname=postgres", dir, PG_PORT);
    if (!(quoted = sg_malloc(2 * len + 1)))
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (dir[i] == '\'' || dir[i] == '\\')
            quoted[j++] = '\\';
        quoted[j++] = dir[i];
    }
    quoted[j] = '\0';
    out = sg_asprintf("host='%s' port=%d user=postgres dbname=postgres", quoted, PG_PORT);
    free(quoted);
    return out;
}

static int local_create(sg_sandbox **out, const sg_sandbox_options *opts, sg_error *err)
{
    local_sandbox *sb = NULL;
    char *bindir = NULL, *initdb = NULL, *postgres = NULL, *data = NULL;
    char *socket_dir = NULL;
    char why[256] = "";
    const char *ns_setting = getenv("SHARDGATE_SANDBOX_NAMESPACES");
    run_as ra;
    launch l;
    int rc;

    *out = NULL;
    memset(&l, 0, sizeof(l));
    l.null_fd = l.log_fd = l.lifeline_fd = l.status_fd = -1;
    if ((rc = sg_interrupt_check(err)) < 0)
        goto done;
    if ((rc = find_bindir(&bindir, opts->pg_major, opts->pg_bindir, err)) < 0)
        goto done;
    if ((rc = find_run_as(&ra, err)) < 0)
        goto done;
    if (!(sb = sg_calloc(1, sizeof(*sb)))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    sb->base.driver = &sg_sandbox_local_driver;
    sb->pid = -1;
    sb->lifeline = -1;
    if ((rc = sg_tmpdir_new(&sb->dir, "sandbox", err)) < 0)
        goto done;
    /* The marker first: from here on, gc can tell whose directory it is. */
    if ((rc = write_marker(sb->dir, opts, err)) < 0)
        goto done;
    if (strlen(sb->dir) + strlen(PG_SOCKET_NAME) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        rc = sg_error_set(err, SG_E_USAGE,
                          "the sandbox directory %s is too long a path for a unix socket", sb->dir);
        sg_error_hint(err, "set TMPDIR to a shorter directory");
        goto done;
    }

    initdb = sg_asprintf("%s/initdb", bindir);
    postgres = sg_asprintf("%s/postgres", bindir);
    data = sg_asprintf("%s/data", sb->dir);
    socket_dir = sg_asprintf("unix_socket_directories=\"%s\"", sb->dir);
    sb->base.conninfo = make_conninfo(sb->dir);
    if (!initdb || !postgres || !data || !socket_dir || !sb->base.conninfo) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
        goto done;
    }
    if (ra.drop && chown(sb->dir, ra.uid, ra.gid) != 0) {
        rc = sg_error_set(err, SG_E_IO, "cannot give %s to user %s: %s", sb->dir, ra.name,
                          strerror(errno));
        goto done;
    }
    if ((l.null_fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        rc = sg_error_set(err, SG_E_IO, "cannot open /dev/null: %s", strerror(errno));
        goto done;
    }
    l.dir = sb->dir;
    l.ra = &ra;
    if ((rc = run_initdb(sb, &l, initdb, data, err)) < 0)
        goto done;

    {
        /* A throwaway copy: durability buys nothing (fsync, full-page
         * writes, synchronous commit off); index builds and checkpoints
         * during a bulk restore go faster with more room
         * (maintenance_work_mem, max_wal_size); autovacuum would compete
         * with the restore and the comparisons; few connections, so little
         * shared memory. Only the socket in the directory is reachable. */
        char *argv[] = {postgres,
                        "-D",
                        data,
                        "-c",
                        "listen_addresses=",
                        "-c",
                        socket_dir,
                        "-c",
                        "port=5432",
                        "-c",
                        "fsync=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "maintenance_work_mem=512MB",
                        "-c",
                        "max_wal_size=4GB",
                        "-c",
                        "autovacuum=off",
                        "-c",
                        "max_connections=50",
                        "-c",
                        "logging_collector=off",
                        NULL};
        l.argv = argv;
        if ((rc = open_log(&l.log_fd, sb->dir, "server.log", err)) < 0)
            goto done;
        if (ns_setting && strcmp(ns_setting, "off") == 0) {
            snprintf(why, sizeof(why), "SHARDGATE_SANDBOX_NAMESPACES=off");
            rc = 1;
        } else {
            l.userns = geteuid() != 0;
            snprintf(l.uid_map, sizeof(l.uid_map), "%d %d 1", (int)geteuid(), (int)geteuid());
            snprintf(l.gid_map, sizeof(l.gid_map), "%d %d 1", (int)getegid(), (int)getegid());
            rc = start_namespaced(sb, &l, why, sizeof(why), err);
        }
        if (rc == 1) {
            if (!atomic_exchange(&fallback_warned, true))
                sg_log_warning("sandboxes run without namespaces (%s): their servers share this "
                               "host's processes and IPC, and outlive a killed shardgate until "
                               "\"shardgate sandbox gc\"",
                               why);
            rc = start_plain(sb, &l, err);
        }
        close(l.log_fd);
        l.log_fd = -1;
        l.argv = NULL;
        if (rc < 0)
            goto done;
    }
    if ((rc = wait_ready(sb, err)) < 0)
        goto done;
    sg_log_debug("sandbox server ready in %s%s", sb->dir,
                 sb->namespaced ? " (in its own namespaces)" : "");
    *out = &sb->base;
    sb = NULL;
done:
    if (sb) {
        stop_server(sb);
        remove_dir(sb->dir);
        free(sb->dir);
        free(sb->base.conninfo);
        free(sb);
    }
    if (l.null_fd >= 0)
        close(l.null_fd);
    free(bindir);
    free(initdb);
    free(postgres);
    free(data);
    free(socket_dir);
    return rc;
}

static void local_destroy(sg_sandbox *sandbox)
{
    local_sandbox *sb = (local_sandbox *)sandbox;
    stop_server(sb);
    remove_dir(sb->dir);
    free(sb->dir);
    sb->dir = NULL;
}

/* ---- gc ---- */

/* Reads a marker written by write_marker; -1 if there is none we trust
 * (it must be ours: created by this user, not through a link). */
static int read_marker(const char *dir, pid_t *pid, unsigned long long *start)
{
    char path[4200], buf[512];
    struct stat st;
    ssize_t n;
    int fd, p, rc = -1;
    snprintf(path, sizeof(path), "%s/%s", dir, SG_SANDBOX_LABEL);
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return -1;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (n = read(fd, buf, sizeof(buf) - 1)) > 0) {
        buf[n] = '\0';
        if (sscanf(buf, MARKER_MAGIC "\npid %d\nstart %llu\n", &p, start) == 2 && p > 0) {
            *pid = (pid_t)p;
            rc = 0;
        }
    }
    close(fd);
    return rc;
}

/* Whether pid is a postmaster started with -D data_dir. */
static bool is_postmaster_of(pid_t pid, const char *data_dir)
{
    char path[64], buf[8192];
    struct stat want, got;
    const char *arg, *end, *base;
    ssize_t n;
    int fd;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    if (stat(data_dir, &want) != 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return false;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    end = buf + n;
    base = strrchr(buf, '/');
    if (strcmp(base ? base + 1 : buf, "postgres") != 0)
        return false;
    for (arg = buf + strlen(buf) + 1; arg < end; arg += strlen(arg) + 1)
        if (strcmp(arg, "-D") == 0 && arg + strlen(arg) + 1 < end)
            return stat(arg + strlen(arg) + 1, &got) == 0 && got.st_dev == want.st_dev &&
                   got.st_ino == want.st_ino;
    return false;
}

/* A postmaster run without namespaces outlives its owner; one in
 * namespaces died with its supervisor (and its postmaster.pid holds a pid
 * of that namespace, which is_postmaster_of rejects). */
static void stop_orphan_server(const char *dir)
{
    char pidfile[4200], data[4200], line[32] = "";
    struct timespec start;
    FILE *f;
    pid_t pid;
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(pidfile, sizeof(pidfile), "%s/postmaster.pid", data);
    if (!(f = fopen(pidfile, "re")))
        return;
    if (!fgets(line, sizeof(line), f))
        line[0] = '\0';
    fclose(f);
    pid = (pid_t)atoi(line);
    if (pid <= 0 || !is_postmaster_of(pid, data))
        return;
    sg_log_info("stopping the server (pid %d) of a sandbox left in %s", (int)pid, dir);
    kill(pid, SIGQUIT);
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (process_alive(pid) && elapsed_ms(&start) < STOP_TIMEOUT_MS)
        sleep_ms(POLL_MS);
    if (process_alive(pid))
        kill(pid, SIGKILL);
}

/* 1 if dir was a leftover and is removed, else 0. */
static int gc_one(const char *dir)
{
    unsigned long long start = 0;
    struct stat st;
    pid_t owner = 0;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return 0;
    if (read_marker(dir, &owner, &start) == 0) {
        if (sg_process_alive(owner, start))
            return 0;
    } else if (st.st_uid != geteuid() || time(NULL) - st.st_mtime < UNMARKED_MAX_AGE_S) {
        return 0;
    }
    stop_orphan_server(dir);
    sg_tmpdir_remove(dir);
    if (lstat(dir, &st) == 0) {
        sg_log_warning("cannot remove the sandbox directory %s", dir);
        return 0;
    }
    if (owner > 0)
        sg_log_info("removed sandbox %s of process %d, which is gone", dir, (int)owner);
    else
        sg_log_info("removed sandbox %s, which has no marker", dir);
    return 1;
}

static int local_gc(size_t *removed, sg_error *err)
{
    const char *base = tmp_base();
    struct dirent *e;
    DIR *d;
    int rc = 0;
    *removed = 0;
    if (!(d = opendir(base)))
        return sg_error_set(err, SG_E_IO, "cannot read the temporary directory %s: %s", base,
                            strerror(errno));
    while ((e = readdir(d)) != NULL) {
        char *path;
        if (strncmp(e->d_name, DIR_PREFIX, strlen(DIR_PREFIX)) != 0)
            continue;
        if (!(path = sg_asprintf("%s/%s", base, e->d_name))) {
            rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
            break;
        }
        *removed += (size_t)gc_one(path);
        free(path);
    }
    closedir(d);
    return rc;
}

const sg_sandbox_driver sg_sandbox_local_driver = {"local", local_create, local_destroy, local_gc};
