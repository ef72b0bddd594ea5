#include "common/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/writer.h"

/* Keep only the end of a chatty stderr: that is where the reason is. */
#define STDERR_KEEP 4096

struct sg_proc {
    pid_t pid;
    int err_fd;
    char *name;
    char tail[STDERR_KEEP + 1];
    size_t tail_len;
};

int sg_proc_start(sg_proc **out, const char *const argv[], sg_error *err)
{
    return sg_proc_start_env(out, argv, NULL, err);
}

int sg_proc_start_env(sg_proc **out, const char *const argv[], char *const envp[], sg_error *err)
{
    int pipefd[2] = {-1, -1};
    sg_proc *proc = NULL;
    pid_t pid;
    *out = NULL;
    proc = sg_calloc(1, sizeof(*proc));
    if (!proc || !(proc->name = sg_strdup(argv[0]))) {
        free(proc);
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    }
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        free(proc->name);
        free(proc);
        return sg_error_set(err, SG_E_PROCESS, "cannot create a pipe: %s", strerror(errno));
    }
    pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        free(proc->name);
        free(proc);
        return sg_error_set(err, SG_E_PROCESS, "cannot start %s: %s", argv[0], strerror(e));
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        dup2(pipefd[1], 2);
        /* envp was built before fork: nothing here allocates. */
        execvpe(argv[0], (char *const *)argv, envp ? envp : environ);
        dprintf(2, "cannot execute %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    proc->pid = pid;
    proc->err_fd = pipefd[0];
    *out = proc;
    return 0;
}

static void drain_stderr(sg_proc *proc)
{
    char buf[4096];
    ssize_t n;
    while ((n = read(proc->err_fd, buf, sizeof(buf))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if ((size_t)n >= STDERR_KEEP) {
            memcpy(proc->tail, buf + n - STDERR_KEEP, STDERR_KEEP);
            proc->tail_len = STDERR_KEEP;
        } else {
            size_t keep =
                proc->tail_len + (size_t)n > STDERR_KEEP ? STDERR_KEEP - (size_t)n : proc->tail_len;
            memmove(proc->tail, proc->tail + proc->tail_len - keep, keep);
            memcpy(proc->tail + keep, buf, (size_t)n);
            proc->tail_len = keep + (size_t)n;
        }
    }
    proc->tail[proc->tail_len] = '\0';
}

static void proc_free(sg_proc *proc)
{
    if (!proc)
        return;
    if (proc->err_fd >= 0)
        close(proc->err_fd);
    free(proc->name);
    free(proc);
}

int sg_proc_wait(sg_proc *proc, const char *what, sg_error *err)
{
    int status = 0, rc = 0;
    drain_stderr(proc);
    while (waitpid(proc->pid, &status, 0) < 0) {
        if (errno != EINTR) {
            rc = sg_error_set(err, SG_E_PROCESS, "%s: cannot wait: %s", what, strerror(errno));
            goto done;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        goto done;
    if (WIFSIGNALED(status))
        rc = sg_error_set(err, SG_E_PROCESS, "%s was killed by signal %d", what, WTERMSIG(status));
    else
        rc = sg_error_set(err, SG_E_PROCESS, "%s failed with exit status %d", what,
                          WEXITSTATUS(status));
    if (proc->tail_len) {
        const char *tail = proc->tail;
        while (proc->tail_len && proc->tail[proc->tail_len - 1] == '\n')
            proc->tail[--proc->tail_len] = '\0';
        /* The detail holds less than the tail: keep its end, where the
         * reason is, from the start of a line. */
        if (err && proc->tail_len >= sizeof(err->detail)) {
            const char *nl;
            tail += proc->tail_len - (sizeof(err->detail) - 1);
            if ((nl = strchr(tail, '\n')) != NULL)
                tail = nl + 1;
        }
        sg_error_detail(err, "%s", tail);
    }
done:
    proc_free(proc);
    return rc;
}

void sg_proc_kill(sg_proc *proc)
{
    if (!proc)
        return;
    kill(proc->pid, SIGTERM);
    while (waitpid(proc->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    proc_free(proc);
}

int sg_proc_run(const char *const argv[], const char *what, sg_error *err)
{
    return sg_proc_run_env(argv, NULL, what, err);
}

int sg_proc_run_env(const char *const argv[], char *const envp[], const char *what, sg_error *err)
{
    sg_proc *proc = NULL;
    int rc = sg_proc_start_env(&proc, argv, envp, err);
    return rc < 0 ? rc : sg_proc_wait(proc, what, err);
}

char **sg_env_with(const char *const set[])
{
    size_t n = 0, nset = 0, out = 0;
    char **env;
    while (environ[n])
        n++;
    while (set[nset])
        nset++;
    if (!(env = sg_calloc(n + nset + 1, sizeof(char *))))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < nset && !replaced; j++) {
            size_t len = strcspn(set[j], "=");
            replaced = strncmp(environ[i], set[j], len) == 0 && environ[i][len] == '=';
        }
        if (!replaced)
            env[out++] = environ[i];
    }
    for (size_t j = 0; j < nset; j++)
        env[out++] = (char *)set[j];
    return env;
}

int sg_pg_tool_find(char **out, const char *tool, int major, const char *bindir, sg_error *err)
{
    char *path = NULL;
    *out = NULL;
    if (bindir) {
        path = sg_asprintf("%s/%s", bindir, tool);
        if (path && access(path, X_OK) != 0) {
            sg_error_set(err, SG_E_USAGE, "%s not found in %s", tool, bindir);
            free(path);
            return SG_E_USAGE;
        }
    } else {
        path = sg_asprintf("/usr/lib/postgresql/%d/bin/%s", major, tool);
        /* Debian installs several majors side by side; the one matching the
         * server is right, otherwise trust PATH and let the tool complain
         * about a version mismatch in its own words. */
        if (path && access(path, X_OK) != 0) {
            free(path);
            path = sg_strdup(tool);
        }
    }
    if (!path)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    *out = path;
    return 0;
}

int sg_process_stat(pid_t pid, char *state, unsigned long long *start)
{
    char path[64], buf[1024];
    const char *p;
    ssize_t n;
    int fd, field;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses. */
    if (!(p = strrchr(buf, ')')) || p[1] != ' ')
        return -1;
    p += 2;
    if (state)
        *state = *p;
    for (field = 3; field < 22 && p; field++)
        if ((p = strchr(p, ' ')) != NULL)
            p++;
    if (!p || sscanf(p, "%llu", start) != 1)
        return -1;
    return 0;
}

bool sg_process_alive(pid_t pid, unsigned long long start)
{
    unsigned long long now;
    char state;
    if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH))
        return false;
    if (sg_process_stat(pid, &state, &now) != 0)
        return true;
    if (state == 'Z' || state == 'X')
        return false;
    return start == 0 || now == start;
}

#define TMPDIR_OWNER ".shardgate-owner"

static const char *tmp_base(void)
{
    const char *base = getenv("TMPDIR");
    return base && *base ? base : "/tmp";
}

int sg_tmpdir_new(char **out, const char *tag, sg_error *err)
{
    char *path = sg_asprintf("%s/shardgate-%s-XXXXXX", tmp_base(), tag), *owner = NULL;
    unsigned long long start = 0;
    char line[64];
    int fd = -1, rc = 0;
    *out = NULL;
    if (!path)
        return sg_error_set(err, SG_E_NOMEM, "out of memory");
    if (!mkdtemp(path)) {
        rc = sg_error_set(err, SG_E_IO, "cannot create a temporary directory %s: %s", path,
                          strerror(errno));
        free(path);
        return rc;
    }
    /* Who made it, for sg_tmpdir_gc after a kill -9. */
    sg_process_stat(getpid(), NULL, &start);
    snprintf(line, sizeof(line), "%ld %llu\n", (long)getpid(), start);
    if (!(owner = sg_asprintf("%s/" TMPDIR_OWNER, path))) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory");
    } else if ((fd = open(owner, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0 ||
               sg_write_all(fd, line, strlen(line)) != 0) {
        rc = sg_error_set(err, SG_E_IO, "cannot write %s: %s", owner, strerror(errno));
    }
    if (fd >= 0)
        close(fd);
    free(owner);
    if (rc < 0) {
        sg_tmpdir_remove(path);
        free(path);
        return rc;
    }
    *out = path;
    return 0;
}

/* The owner recorded in dir, if the file is there and ours. */
static bool tmpdir_owner(const char *dir, pid_t *pid, unsigned long long *start)
{
    char path[4200], buf[64];
    struct stat st;
    long p;
    ssize_t n;
    int fd;
    bool ok = false;
    snprintf(path, sizeof(path), "%s/" TMPDIR_OWNER, dir);
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return false;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (n = read(fd, buf, sizeof(buf) - 1)) > 0) {
        buf[n] = '\0';
        ok = sscanf(buf, "%ld %llu", &p, start) == 2 && p > 0;
        *pid = (pid_t)p;
    }
    close(fd);
    return ok;
}

int sg_tmpdir_gc(const char *tag, size_t *removed, sg_error *err)
{
    const char *base = tmp_base();
    char prefix[64];
    struct dirent *e;
    DIR *d;
    *removed = 0;
    snprintf(prefix, sizeof(prefix), "shardgate-%s-", tag);
    if (!(d = opendir(base)))
        return sg_error_set(err, SG_E_IO, "cannot read the temporary directory %s: %s", base,
                            strerror(errno));
    while ((e = readdir(d)) != NULL) {
        char path[4200];
        unsigned long long start;
        pid_t pid;
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
        if (!tmpdir_owner(path, &pid, &start) || sg_process_alive(pid, start))
            continue;
        sg_tmpdir_remove(path);
        sg_log_info("removed %s, left by process %ld, which is gone", path, (long)pid);
        (*removed)++;
    }
    closedir(d);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void sg_tmpdir_remove(const char *path)
{
    if (path)
        nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
