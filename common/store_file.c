/* The file:// store: objects are files under a root directory, a key's '/'
 * separators are directories. An object is written to a hidden temporary file
 * in its directory (".NAME.tmp.RANDOM") and renamed into place after fsync, so
 * it appears complete or not at all; list skips the temporary files that a
 * killed writer leaves behind. */
#include "common/store_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/writer_impl.h"

/* Large enough that a read costs few syscalls, small enough that many
 * parallel readers stay within a bounded amount of memory. */
#define DEFAULT_READ_BUFFER (1024 * 1024)

typedef struct file_store {
    sg_store base;
    char *root; /* absolute, no trailing '/'; "" for the file system root */
    size_t read_buffer;
} file_store;

static char *object_path(const file_store *fs, const char *key)
{
    return sg_asprintf("%s/%s", fs->root, key);
}

static bool is_permission_error(int e)
{
    return e == EACCES || e == EPERM || e == EROFS;
}

static int nomem(sg_error *err, const char *what, const char *key)
{
    return sg_error_set(err, SG_E_NOMEM, "out of memory (%s object \"%s\")", what, key);
}

/* The message names the key and the store, the detail the file that failed,
 * and a hint says what to look at for the errors that have an obvious cause. */
static int store_error(sg_error *err, const file_store *fs, const char *verb, const char *key,
                       const char *path, int e)
{
    sg_error_set(err, SG_E_STORE, "cannot %s object \"%s\" in store \"%s\": %s", verb, key,
                 fs->base.url, strerror(e));
    sg_error_detail(err, "the failing path is \"%s\"", path);
    if (is_permission_error(e)) {
        const char *slash = strrchr(path, '/');
        int dir_len = slash && slash > path ? (int)(slash - path) : 1;
        sg_error_hint(err, "check that the user running shardgate can write to \"%.*s\"", dir_len,
                      path);
    } else if (e == ENOSPC || e == EDQUOT)
        sg_error_hint(err, "the file system holding the store is full");
    else if (e == ENOTDIR)
        sg_error_hint(err, "a file is in the way where the store needs a directory");
    return SG_E_STORE;
}

/* ---- open ---- */

static int file_open(sg_store **out, const sg_store_config *config, const char *rest, sg_error *err)
{
    const char *url = config->url;
    char cwd[PATH_MAX];
    file_store *fs = NULL;
    size_t len;
    int rc = 0;

    if (*rest == '\0') {
        sg_error_set(err, SG_E_USAGE, "store URL \"%s\" has no directory", url);
        sg_error_hint(err, "use file:///absolute/dir or file://relative/dir");
        return SG_E_USAGE;
    }
    fs = sg_calloc(1, sizeof(*fs));
    if (!fs) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (opening store \"%s\")", url);
        goto done;
    }
    fs->base.vt = &sg_store_file_vtable;
    fs->read_buffer = DEFAULT_READ_BUFFER;
    /* Resolved now, so that a later chdir does not move the store. */
    if (*rest == '/') {
        fs->root = sg_strdup(rest);
    } else {
        if (!getcwd(cwd, sizeof(cwd))) {
            rc = sg_error_set(err, SG_E_STORE, "cannot resolve store URL \"%s\": %s", url,
                              strerror(errno));
            goto done;
        }
        fs->root = sg_asprintf("%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, rest);
    }
    fs->base.url = sg_strdup(url);
    if (!fs->root || !fs->base.url) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (opening store \"%s\")", url);
        goto done;
    }
    len = strlen(fs->root);
    while (len > 0 && fs->root[len - 1] == '/')
        fs->root[--len] = '\0';
    *out = &fs->base;
    fs = NULL;

done:
    if (fs)
        sg_store_free(&fs->base);
    return rc;
}

static void file_destroy(sg_store *base)
{
    free(((file_store *)base)->root);
}

void sg_store_file_set_read_buffer(sg_store *store, size_t size)
{
    ((file_store *)store)->read_buffer = size > 0 ? size : 1;
}

/* ---- put ---- */

typedef struct file_writer {
    sg_writer base;
    const file_store *store;
    char *key;
    char *path;     /* the object's final name */
    char *tmp;      /* where it is written until close */
    size_t dir_len; /* path[dir_len] is the '/' before the object's name */
    size_t top_len; /* the highest directory to fsync on close */
    int fd;
    bool renamed;
} file_writer;

/* mkdir -p for the directories of w->path. Remembers the parent of the first
 * directory it creates: a new directory is durable only once its parent's
 * entry is, so close syncs everything from the object up to there. */
static int make_dirs(file_writer *w, sg_error *err)
{
    char *path = w->path;
    size_t last = 0;
    bool created = false;
    for (size_t i = 1; i <= w->dir_len; i++) {
        int rc, e;
        if (path[i] != '/')
            continue;
        path[i] = '\0';
        rc = mkdir(path, 0755);
        e = errno;
        path[i] = '/';
        if (rc == 0 && !created) {
            created = true;
            if (last < w->top_len)
                w->top_len = last;
        } else if (rc < 0 && e != EEXIST) {
            char *dir = sg_strndup(path, i);
            store_error(err, w->store, "create", w->key, dir ? dir : path, e);
            free(dir);
            return SG_E_STORE;
        }
        last = i;
    }
    return 0;
}

static int fsync_dir(file_writer *w, size_t len, sg_error *err)
{
    char *path = w->path, saved = path[len];
    int fd, e = 0;
    path[len] = '\0';
    fd = open(len > 0 ? path : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* Some file systems cannot fsync a directory (EINVAL); PostgreSQL's
     * fsync_fname() tolerates that too. */
    if (fd < 0 || (fsync(fd) < 0 && errno != EINVAL))
        e = errno;
    if (fd >= 0)
        close(fd);
    if (e)
        store_error(err, w->store, "sync", w->key, len > 0 ? path : "/", e);
    path[len] = saved;
    return e ? SG_E_STORE : 0;
}

static int file_write(sg_writer *base, const void *data, size_t len, sg_error *err)
{
    file_writer *w = (file_writer *)base;
    int e = sg_write_all(w->fd, data, len);
    return e ? store_error(err, w->store, "write", w->key, w->tmp, e) : 0;
}

static int file_close(sg_writer *base, sg_error *err)
{
    file_writer *w = (file_writer *)base;
    int fd = w->fd, rc;
    size_t len;

    if (fsync(fd) < 0)
        return store_error(err, w->store, "write", w->key, w->tmp, errno);
    w->fd = -1;
    /* NFS and quotas may report a failed write only at close. */
    if (close(fd) < 0 && errno != EINTR)
        return store_error(err, w->store, "write", w->key, w->tmp, errno);
    if (rename(w->tmp, w->path) < 0)
        return store_error(err, w->store, "create", w->key, w->path, errno);
    w->renamed = true;
    for (len = w->dir_len;; len = (size_t)((const char *)memrchr(w->path, '/', len) - w->path)) {
        if ((rc = fsync_dir(w, len, err)) < 0 || len <= w->top_len)
            break;
    }
    return rc;
}

static void file_writer_destroy(sg_writer *base)
{
    file_writer *w = (file_writer *)base;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp && !w->renamed)
        unlink(w->tmp);
    free(w->key);
    free(w->path);
    free(w->tmp);
}

static const sg_writer_vtable file_writer_vt = {"store object", file_write, file_close,
                                                file_writer_destroy};

static int file_put_writer(sg_writer **out, sg_store *base, const char *key, sg_error *err)
{
    const file_store *fs = (const file_store *)base;
    file_writer *w = NULL;
    uint64_t rnd;
    const char *name;
    int rc = 0;

    w = sg_writer_alloc(sizeof(*w), &file_writer_vt, NULL);
    if (!w)
        return nomem(err, "creating", key);
    w->fd = -1;
    w->store = fs;
    w->key = sg_strdup(key);
    w->path = object_path(fs, key);
    if (!w->key || !w->path) {
        rc = nomem(err, "creating", key);
        goto done;
    }
    name = strrchr(w->path, '/') + 1;
    w->dir_len = (size_t)(name - 1 - w->path);
    w->top_len = w->dir_len;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        rc = store_error(err, fs, "create", key, w->path, errno ? errno : EIO);
        goto done;
    }
    w->tmp = sg_asprintf("%.*s/.%s.tmp.%016llx", (int)w->dir_len, w->path, name,
                         (unsigned long long)rnd);
    if (!w->tmp) {
        rc = nomem(err, "creating", key);
        goto done;
    }
    /* Directories usually exist already; create them only when needed, and
     * again if a concurrent delete removed an emptied one meanwhile. */
    for (int attempt = 0;; attempt++) {
        w->fd = open(w->tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
        if (w->fd >= 0)
            break;
        if (errno != ENOENT || attempt == 3) {
            rc = store_error(err, fs, "create", key, w->tmp, errno);
            goto done;
        }
        if ((rc = make_dirs(w, err)) < 0)
            goto done;
    }
    *out = &w->base;
    w = NULL;

done:
    sg_writer_free((sg_writer *)w);
    return rc;
}

/* ---- read and size ---- */

static int open_object(int *fd_out, struct stat *st, const file_store *fs, const char *key,
                       const char *path, sg_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return sg_error_set(err, SG_E_NOT_FOUND, "object \"%s\" not found in store \"%s\"", key,
                                fs->base.url);
        return store_error(err, fs, "read", key, path, errno);
    }
    if (fstat(fd, st) < 0) {
        int e = errno;
        close(fd);
        return store_error(err, fs, "read", key, path, e);
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        sg_error_set(err, SG_E_NOT_FOUND, "object \"%s\" not found in store \"%s\"", key,
                     fs->base.url);
        sg_error_detail(err, "\"%s\" is not a regular file", path);
        return SG_E_NOT_FOUND;
    }
    *fd_out = fd;
    return 0;
}

static int too_short(sg_error *err, const char *key, uint64_t size, uint64_t wanted)
{
    return sg_error_set(err, SG_E_CORRUPT,
                        "object \"%s\" is shorter than expected (%llu bytes, wanted at least %llu)",
                        key, (unsigned long long)size, (unsigned long long)wanted);
}

static int file_read(sg_store *base, const char *key, uint64_t offset, uint64_t len, sg_writer *to,
                     sg_error *err)
{
    const file_store *fs = (const file_store *)base;
    struct stat st;
    char *path = NULL;
    uint8_t *buf = NULL;
    uint64_t size, end, pos;
    size_t buf_size;
    int fd = -1, rc = 0;

    if (!(path = object_path(fs, key))) {
        rc = nomem(err, "reading", key);
        goto done;
    }
    if ((rc = open_object(&fd, &st, fs, key, path, err)) < 0)
        goto done;
    size = (uint64_t)st.st_size;
    /* Checked before the first byte goes out, so a short object pushes
     * nothing downstream. */
    if (len == UINT64_MAX) {
        if (offset > size) {
            rc = too_short(err, key, size, offset);
            goto done;
        }
        end = size;
    } else {
        end = offset > UINT64_MAX - len ? UINT64_MAX : offset + len;
        if (end > size) {
            rc = too_short(err, key, size, end);
            goto done;
        }
    }
    if (end == offset)
        goto done;
    buf_size = end - offset < fs->read_buffer ? (size_t)(end - offset) : fs->read_buffer;
    if (!(buf = sg_malloc(buf_size))) {
        rc = nomem(err, "reading", key);
        goto done;
    }
    for (pos = offset; pos < end;) {
        size_t want = end - pos < buf_size ? (size_t)(end - pos) : buf_size;
        ssize_t n = pread(fd, buf, want, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = store_error(err, fs, "read", key, path, errno);
            goto done;
        }
        /* Shrunk since fstat: still an object shorter than wanted. */
        if (n == 0) {
            rc = too_short(err, key, pos, end);
            goto done;
        }
        if ((rc = sg_writer_write(to, buf, (size_t)n, err)) < 0)
            goto done;
        pos += (uint64_t)n;
    }

done:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(path);
    return rc;
}

static int file_size(sg_store *base, const char *key, uint64_t *size, sg_error *err)
{
    const file_store *fs = (const file_store *)base;
    struct stat st;
    char *path = object_path(fs, key);
    int rc = 0;

    if (!path)
        return nomem(err, "sizing", key);
    if (stat(path, &st) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            rc = sg_error_set(err, SG_E_NOT_FOUND, "object \"%s\" not found in store \"%s\"", key,
                              fs->base.url);
        else
            rc = store_error(err, fs, "stat", key, path, errno);
    } else if (!S_ISREG(st.st_mode)) {
        rc = sg_error_set(err, SG_E_NOT_FOUND, "object \"%s\" not found in store \"%s\"", key,
                          fs->base.url);
        sg_error_detail(err, "\"%s\" is not a regular file", path);
    } else {
        *size = (uint64_t)st.st_size;
    }
    free(path);
    return rc;
}

/* ---- list ---- */

typedef struct list_entry {
    char *key;
    uint64_t size;
} list_entry;

typedef struct listing {
    const file_store *store;
    list_entry *items;
    size_t len, cap;
    sg_buf key; /* the key of the directory being walked, with a trailing '/' */
} listing;

static int list_error(sg_error *err, const listing *l, const char *what, int e)
{
    sg_error_set(err, SG_E_STORE, "cannot list store \"%s\": %s", l->store->base.url, strerror(e));
    sg_error_detail(err, "the failing path is \"%s/%.*s\"", l->store->root, (int)l->key.len,
                    l->key.data ? (const char *)l->key.data : "");
    if (what)
        sg_error_detail(err, "while reading \"%s\"", what);
    return SG_E_STORE;
}

static int add_entry(listing *l, const char *name, uint64_t size, sg_error *err)
{
    char *key;
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        list_entry *grown = sg_realloc(l->items, cap * sizeof(*grown));
        if (!grown)
            return sg_error_set(err, SG_E_NOMEM, "out of memory (listing store \"%s\")",
                                l->store->base.url);
        l->items = grown;
        l->cap = cap;
    }
    key =
        sg_asprintf("%.*s%s", (int)l->key.len, l->key.data ? (const char *)l->key.data : "", name);
    if (!key)
        return sg_error_set(err, SG_E_NOMEM, "out of memory (listing store \"%s\")",
                            l->store->base.url);
    l->items[l->len].key = key;
    l->items[l->len].size = size;
    l->len++;
    return 0;
}

static bool is_temp_name(const char *name)
{
    return name[0] == '.' && strstr(name, ".tmp.") != NULL;
}

/* Walks the directory open on fd (taken over) whose key is l->key; at the top
 * only names starting with name_prefix count. Symbolic links are not
 * followed: the store never makes them, and following them could loop. */
static int walk(listing *l, int fd, const char *name_prefix, sg_error *err)
{
    size_t prefix_len = name_prefix ? strlen(name_prefix) : 0;
    DIR *dir = fdopendir(fd);
    struct dirent *ent;
    int rc = 0;

    if (!dir) {
        rc = list_error(err, l, NULL, errno);
        close(fd);
        return rc;
    }
    for (;;) {
        size_t mark = l->key.len;
        struct stat st;
        errno = 0;
        if (!(ent = readdir(dir))) {
            if (errno)
                rc = list_error(err, l, NULL, errno);
            break;
        }
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0 ||
            is_temp_name(ent->d_name) ||
            strncmp(ent->d_name, name_prefix ? name_prefix : "", prefix_len) != 0)
            continue;
        if (fstatat(dirfd(dir), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) /* deleted while we walk */
                continue;
            rc = list_error(err, l, ent->d_name, errno);
            break;
        }
        if (S_ISREG(st.st_mode)) {
            if ((rc = add_entry(l, ent->d_name, (uint64_t)st.st_size, err)) < 0)
                break;
        } else if (S_ISDIR(st.st_mode)) {
            int sub =
                openat(dirfd(dir), ent->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                if (errno == ENOENT)
                    continue;
                rc = list_error(err, l, ent->d_name, errno);
                break;
            }
            if ((rc = sg_buf_append(&l->key, ent->d_name, strlen(ent->d_name), err)) < 0 ||
                (rc = sg_buf_append(&l->key, "/", 1, err)) < 0) {
                close(sub);
                break;
            }
            rc = walk(l, sub, NULL, err);
            l->key.len = mark;
            if (rc < 0)
                break;
        }
    }
    closedir(dir);
    return rc;
}

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const list_entry *)a)->key, ((const list_entry *)b)->key);
}

static int file_list(sg_store *base, const char *prefix, sg_store_list_fn fn, void *ctx,
                     sg_error *err)
{
    const file_store *fs = (const file_store *)base;
    listing l = {fs, NULL, 0, 0, {NULL, 0, 0}};
    /* "shards/a/snap": walk shards/a, keeping names that start with "snap". */
    const char *slash = strrchr(prefix, '/');
    size_t dir_len = slash ? (size_t)(slash - prefix) : 0;
    char *dir_path = NULL;
    int fd, rc = 0;

    dir_path = dir_len ? sg_asprintf("%s/%.*s", fs->root, (int)dir_len, prefix)
                       : sg_strdup(fs->root[0] ? fs->root : "/");
    if (!dir_path) {
        rc = sg_error_set(err, SG_E_NOMEM, "out of memory (listing store \"%s\")", fs->base.url);
        goto done;
    }
    if (dir_len && (rc = sg_buf_append(&l.key, prefix, dir_len + 1, err)) < 0)
        goto done;
    fd = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        /* A store or a directory nobody has written to yet holds nothing. */
        if (errno != ENOENT && errno != ENOTDIR)
            rc = list_error(err, &l, NULL, errno);
        goto done;
    }
    if ((rc = walk(&l, fd, slash ? slash + 1 : prefix, err)) < 0)
        goto done;
    if (l.len > 1)
        qsort(l.items, l.len, sizeof(*l.items), compare_entries);
    for (size_t i = 0; i < l.len; i++)
        if ((rc = fn(ctx, l.items[i].key, l.items[i].size)) != 0)
            break;

done:
    for (size_t i = 0; i < l.len; i++)
        free(l.items[i].key);
    free(l.items);
    sg_buf_free(&l.key);
    free(dir_path);
    return rc;
}

/* ---- delete ---- */

static int file_remove(sg_store *base, const char *key, sg_error *err)
{
    const file_store *fs = (const file_store *)base;
    size_t root_len = strlen(fs->root);
    char *path = object_path(fs, key), *slash;

    if (!path)
        return nomem(err, "deleting", key);
    if (unlink(path) < 0 && errno != ENOENT && errno != ENOTDIR) {
        int rc = store_error(err, fs, "delete", key, path, errno);
        free(path);
        return rc;
    }
    /* Directories emptied by this delete go too, so that deleting every
     * object of a snapshot leaves no trace of it; the first one still in use
     * (ENOTEMPTY) or any other failure stops the walk up, harmlessly. */
    while ((slash = strrchr(path, '/')) != NULL && (size_t)(slash - path) > root_len) {
        *slash = '\0';
        if (rmdir(path) < 0)
            break;
    }
    free(path);
    return 0;
}

const sg_store_vtable sg_store_file_vtable = {
    "file", file_open, file_put_writer, file_read, file_size, file_list, file_remove, file_destroy,
};
