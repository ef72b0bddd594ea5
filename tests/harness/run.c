/* Plain malloc on purpose: tests make sg_malloc fail, the harness must not. */
#include "tests/harness/run.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/proc.h"

extern char **environ;

typedef struct command {
    char **argv; /* argv with argv[0] resolved; the strings are the caller's */
    char **envp; /* environ plus the additions; the strings are borrowed */
} command;

typedef struct sink {
    char *data;
    size_t len;
    size_t cap;
} sink;

void sgt_abort(const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    fprintf(stderr, "test harness: %s\n", msg ? msg : fmt);
    ck_abort_msg("%s", msg ? msg : fmt);
    exit(EXIT_FAILURE); /* not reached */
}

static void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size);
    if (!p) {
        fprintf(stderr, "run harness: out of memory\n");
        abort();
    }
    return p;
}

static size_t name_len(const char *entry)
{
    const char *eq = strchr(entry, '=');
    return eq ? (size_t)(eq - entry) : strlen(entry);
}

/* Everything is built before fork: after it, only async-signal-safe calls. */
static void command_init(command *cmd, const char *const argv[], const char *const env[])
{
    size_t argc = 0, nenv = 0, nadd = 0, n = 0;
    if (!argv || !argv[0])
        sgt_abort("sgt_run: empty argv");
    while (argv[argc])
        argc++;
    while (environ[nenv])
        nenv++;
    while (env && env[nadd])
        nadd++;

    cmd->argv = xrealloc(NULL, (argc + 1) * sizeof(char *));
    memcpy(cmd->argv, argv, (argc + 1) * sizeof(char *));
    if (strcmp(argv[0], "shardgate") == 0) {
        char *binary = getenv("SG_BINARY");
        if (!binary || !*binary)
            sgt_abort("SG_BINARY is not set: it names the shardgate binary (ctest sets it)");
        cmd->argv[0] = binary;
    }

    cmd->envp = xrealloc(NULL, (nenv + nadd + 1) * sizeof(char *));
    for (size_t i = 0; i < nenv; i++) {
        size_t len = name_len(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < nadd && !replaced; j++)
            replaced = name_len(env[j]) == len && strncmp(env[j], environ[i], len) == 0;
        if (!replaced)
            cmd->envp[n++] = environ[i];
    }
    for (size_t j = 0; j < nadd; j++)
        cmd->envp[n++] = (char *)env[j];
    cmd->envp[n] = NULL;
}

static void command_free(command *cmd)
{
    free(cmd->argv);
    free(cmd->envp);
}

static void exec_child(const command *cmd, int out_fd, int err_fd) __attribute__((noreturn));

static void exec_child(const command *cmd, int out_fd, int err_fd)
{
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(127);
    execvpe(cmd->argv[0], cmd->argv, cmd->envp);
    dprintf(2, "cannot run %s: %s\n", cmd->argv[0], strerror(errno));
    _exit(127);
}

static int decode_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int sgt_wait(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            sgt_abort("waiting for process %d: %s", (int)pid, strerror(errno));
    }
    return decode_status(status);
}

/* Returns 0 at end of file. */
static ssize_t drain(int fd, sink *s)
{
    if (s->cap - s->len < 65536) {
        s->cap = s->cap ? s->cap * 2 : 131072;
        s->data = xrealloc(s->data, s->cap);
    }
    ssize_t n;
    do {
        n = read(fd, s->data + s->len, s->cap - s->len - 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        sgt_abort("reading a child's output: %s", strerror(errno));
    s->len += (size_t)n;
    return n;
}

static char *finish(sink *s, size_t *len)
{
    if (!s->data)
        s->data = xrealloc(NULL, 1);
    s->data[s->len] = '\0';
    *len = s->len;
    return s->data;
}

int sgt_run(sgt_result *out, const char *const argv[], const char *const env[])
{
    command cmd;
    int out_pipe[2], err_pipe[2];
    sink so = {0}, se = {0};

    memset(out, 0, sizeof(*out));
    command_init(&cmd, argv, env);
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0)
        sgt_abort("sgt_run: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        sgt_abort("sgt_run: fork: %s", strerror(errno));
    if (pid == 0)
        exec_child(&cmd, out_pipe[1], err_pipe[1]);
    close(out_pipe[1]);
    close(err_pipe[1]);
    command_free(&cmd);

    /* Both pipes at once: a child that fills one while we block on the other
     * would never finish. */
    struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    sink *sinks[2] = {&so, &se};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            sgt_abort("sgt_run: poll: %s", strerror(errno));
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (drain(fds[i].fd, sinks[i]) == 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }

    out->out = finish(&so, &out->out_len);
    out->err = finish(&se, &out->err_len);
    out->status = sgt_wait(pid);
    return out->status;
}

void sgt_result_free(sgt_result *result)
{
    if (!result)
        return;
    free(result->out);
    free(result->err);
    result->out = result->err = NULL;
    result->out_len = result->err_len = 0;
}

pid_t sgt_spawn(const char *const argv[], const char *const env[], const char *dir)
{
    command cmd;
    char path[4096];

    command_init(&cmd, argv, env);
    snprintf(path, sizeof(path), "%s/stdout", dir);
    int out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0)
        sgt_abort("cannot create %s: %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/stderr", dir);
    int err_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err_fd < 0)
        sgt_abort("cannot create %s: %s", path, strerror(errno));

    pid_t pid = fork();
    if (pid < 0)
        sgt_abort("sgt_spawn: fork: %s", strerror(errno));
    if (pid == 0)
        exec_child(&cmd, out_fd, err_fd);
    close(out_fd);
    close(err_fd);
    command_free(&cmd);
    return pid;
}

char *sgt_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    sink s = {0};
    size_t ignored;
    if (fd < 0)
        return NULL;
    while (drain(fd, &s) > 0) {
    }
    close(fd);
    return finish(&s, len ? len : &ignored);
}

void sgt_write_file(const char *dir, const char *name, const char *text)
{
    char *path = sgt_asprintf("%s/%s", dir, name);
    FILE *out = fopen(path, "w");
    if (!out || fputs(text, out) < 0 || fclose(out) != 0)
        sgt_abort("cannot write %s: %s", path, strerror(errno));
    free(path);
}

void sgt_remove_file(const char *dir, const char *name)
{
    char *path = sgt_asprintf("%s/%s", dir, name);
    if (unlink(path) < 0)
        sgt_abort("cannot remove %s: %s", path, strerror(errno));
    free(path);
}

char *sgt_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fprintf(stderr, "test harness: out of memory\n");
        abort();
    }
    return s;
}

void sgt_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void sgt_remove_tree(const char *dir)
{
    sg_tmpdir_remove(dir);
}
