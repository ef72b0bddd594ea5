/* Child processes (pg_dump, pg_restore) and private temporary directories. */
#ifndef SG_COMMON_PROC_H
#define SG_COMMON_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"

typedef struct sg_proc sg_proc;

/* Starts argv[0] (looked up in PATH unless it contains '/'), stdin from
 * /dev/null, stdout discarded, stderr captured so a failure can show it. */
int sg_proc_start(sg_proc **out, const char *const argv[], sg_error *err);

/* The same with a whole environment for the child (NULL: this process's). */
int sg_proc_start_env(sg_proc **out, const char *const argv[], char *const envp[], sg_error *err);

/* Waits for the process. A non-zero exit or a signal is SG_E_PROCESS with the
 * tail of its stderr in the detail; `what` names the step ("pg_dump"). Frees
 * the process. */
int sg_proc_wait(sg_proc *proc, const char *what, sg_error *err);

/* Kills (SIGTERM) and reaps a process that is no longer wanted. */
void sg_proc_kill(sg_proc *proc);

/* Runs to completion: start + wait. */
int sg_proc_run(const char *const argv[], const char *what, sg_error *err);
int sg_proc_run_env(const char *const argv[], char *const envp[], const char *what, sg_error *err);

/* This process's environment with the "NAME=VALUE" entries of the
 * NULL-terminated set added or replacing, for a child; NULL when out of
 * memory. The array points at environ's strings and set's (which must
 * outlive it): free() only the array. */
char **sg_env_with(const char *const set[]);

/* Finds a PostgreSQL client program for a server of `major` version:
 * bindir if given, then /usr/lib/postgresql/MAJOR/bin, then PATH. Returns a
 * malloc'd path. The program must be at least as new as the server. */
int sg_pg_tool_find(char **out, const char *tool, int major, const char *bindir, sg_error *err);

/* A process's state and start time (fields 3 and 22 of /proc/PID/stat, the
 * start in clock ticks after boot): with its pid, the start time names one
 * process, so a reused pid is not mistaken for it. -1 if it cannot be read.
 * Uses only open, read and close, so a forked child may call it. */
int sg_process_stat(pid_t pid, char *state, unsigned long long *start);

/* Whether the process that had pid and start time `start` still runs (a
 * zombie does not); start 0 matches any process with that pid. One that
 * cannot be inspected counts as running: nothing of it is removed. */
bool sg_process_alive(pid_t pid, unsigned long long start);

/* Creates a private (0700) directory "shardgate-TAG-XXXXXX" under $TMPDIR
 * or /tmp, with an owner file (this process's pid and start time) so that
 * sg_tmpdir_gc can tell when its creator is gone. */
int sg_tmpdir_new(char **out, const char *tag, sg_error *err);

/* Removes the "shardgate-TAG-*" directories under $TMPDIR or /tmp whose
 * creator is gone (killed before it could clean up); counts them in
 * *removed. Directories without an owner file are left alone. */
int sg_tmpdir_gc(const char *tag, size_t *removed, sg_error *err);

/* Removes a directory tree; quietly ignores what is already gone. */
void sg_tmpdir_remove(const char *path);

#endif
