#include "tests/harness/http_fake.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness/run.h"

#define MAX_CONNECTIONS 64
#define MAX_REQUESTS 4096

struct sgt_http_fake {
    int listen_fd;
    char url[64];
    pthread_t acceptor;
    pthread_mutex_t lock;
    sgt_reply *script;
    size_t nreplies, next_reply;
    sgt_http_request *requests[MAX_REQUESTS];
    size_t nrequests;
    pthread_t conns[MAX_CONNECTIONS];
    int conn_fds[MAX_CONNECTIONS];
    size_t nconns;
    bool stopping;
};

typedef struct conn_arg {
    sgt_http_fake *fake;
    int fd;
} conn_arg;

static bool send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads one request; false at end of connection. */
static bool read_request(int fd, sgt_http_request *req)
{
    char *buf = NULL;
    size_t len = 0, cap = 0, head_len = 0, body_len = 0;
    char *end = NULL;
    for (;;) {
        ssize_t n;
        if (len + 4096 > cap) {
            cap = (len + 4096) * 2;
            if (!(buf = realloc(buf, cap + 1)))
                sgt_abort("http fake: out of memory");
        }
        if (!end) {
            n = recv(fd, buf + len, cap - len, 0);
            if (n <= 0) {
                free(buf);
                return false;
            }
            len += (size_t)n;
            buf[len] = '\0';
            if ((end = strstr(buf, "\r\n\r\n"))) {
                char *cl;
                head_len = (size_t)(end - buf) + 4;
                /* Header names are case-insensitive: lower them (only
                 * them) so lookups are plain string matches. */
                for (char *line = strstr(buf, "\r\n"); line && line < end;
                     line = strstr(line + 2, "\r\n"))
                    for (char *c = line + 2; *c && *c != ':' && c < end; c++)
                        *c = (char)tolower((unsigned char)*c);
                if ((cl = strstr(buf, "\r\ncontent-length:")))
                    body_len = strtoul(cl + 17, NULL, 10);
            } else {
                continue;
            }
        }
        if (len >= head_len + body_len)
            break;
        n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            free(buf);
            return false;
        }
        len += (size_t)n;
    }
    sscanf(buf, "%15s %4095s", req->method, req->target);
    req->headers = strndup(buf, head_len);
    req->body = malloc(body_len + 1);
    memcpy(req->body, buf + head_len, body_len);
    req->body[body_len] = '\0';
    req->body_len = body_len;
    free(buf);
    return true;
}

static void reply(int fd, const sgt_reply *r, bool *keep)
{
    char head[1024];
    size_t body_len = r->body ? strlen(r->body) : 0;
    if (r->delay_ms) {
        struct timespec ts = {r->delay_ms / 1000, (long)(r->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (r->kind == SGT_REPLY_RESET) {
        struct linger lin = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
        *keep = false;
        return;
    }
    snprintf(head, sizeof(head), "HTTP/1.1 %d Status\r\nContent-Length: %zu\r\n%s\r\n", r->status,
             body_len, r->headers ? r->headers : "");
    send_all(fd, head, strlen(head));
    if (r->kind == SGT_REPLY_TRUNCATE) {
        send_all(fd, r->body, body_len / 2);
        *keep = false;
        return;
    }
    if (body_len)
        send_all(fd, r->body, body_len);
}

static void *serve(void *arg)
{
    conn_arg *a = arg;
    sgt_http_fake *f = a->fake;
    int fd = a->fd;
    bool keep = true;
    free(a);
    while (keep) {
        sgt_http_request *req = calloc(1, sizeof(*req));
        sgt_reply r = {200, NULL, NULL, SGT_REPLY_NORMAL, 0};
        if (!req || !read_request(fd, req)) {
            free(req);
            break;
        }
        pthread_mutex_lock(&f->lock);
        if (f->nrequests < MAX_REQUESTS)
            f->requests[f->nrequests++] = req;
        if (f->next_reply < f->nreplies)
            r = f->script[f->next_reply++];
        pthread_mutex_unlock(&f->lock);
        reply(fd, &r, &keep);
    }
    close(fd);
    return NULL;
}

static void *accept_loop(void *arg)
{
    sgt_http_fake *f = arg;
    for (;;) {
        int fd = accept(f->listen_fd, NULL, NULL);
        conn_arg *a;
        if (fd < 0)
            break;
        pthread_mutex_lock(&f->lock);
        if (f->stopping || f->nconns >= MAX_CONNECTIONS || !(a = malloc(sizeof(*a)))) {
            pthread_mutex_unlock(&f->lock);
            close(fd);
            continue;
        }
        a->fake = f;
        a->fd = fd;
        f->conn_fds[f->nconns] = fd;
        if (pthread_create(&f->conns[f->nconns], NULL, serve, a) == 0)
            f->nconns++;
        else
            close(fd);
        pthread_mutex_unlock(&f->lock);
    }
    return NULL;
}

sgt_http_fake *sgt_http_fake_start(const sgt_reply *script, size_t nreplies)
{
    sgt_http_fake *f = calloc(1, sizeof(*f));
    struct sockaddr_in addr = {0};
    socklen_t addr_len = sizeof(addr);
    if (!f)
        sgt_abort("http fake: out of memory");
    pthread_mutex_init(&f->lock, NULL);
    if (nreplies) {
        f->script = malloc(nreplies * sizeof(*script));
        memcpy(f->script, script, nreplies * sizeof(*script));
        f->nreplies = nreplies;
    }
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((f->listen_fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
        bind(f->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(f->listen_fd, 64) != 0 ||
        getsockname(f->listen_fd, (struct sockaddr *)&addr, &addr_len) != 0)
        sgt_abort("http fake: cannot listen on 127.0.0.1");
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", ntohs(addr.sin_port));
    if (pthread_create(&f->acceptor, NULL, accept_loop, f) != 0)
        sgt_abort("http fake: cannot start a thread");
    return f;
}

void sgt_http_fake_stop(sgt_http_fake *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    /* Wakes the acceptor and every connection blocked in recv. */
    shutdown(f->listen_fd, SHUT_RDWR);
    for (size_t i = 0; i < f->nconns; i++)
        shutdown(f->conn_fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->acceptor, NULL);
    for (size_t i = 0; i < f->nconns; i++)
        pthread_join(f->conns[i], NULL);
    close(f->listen_fd);
    for (size_t i = 0; i < f->nrequests; i++) {
        free(f->requests[i]->headers);
        free(f->requests[i]->body);
        free(f->requests[i]);
    }
    pthread_mutex_destroy(&f->lock);
    free(f->script);
    free(f);
}

const char *sgt_http_fake_url(const sgt_http_fake *f)
{
    return f->url;
}

size_t sgt_http_fake_count(sgt_http_fake *f)
{
    size_t n;
    pthread_mutex_lock(&f->lock);
    n = f->nrequests;
    pthread_mutex_unlock(&f->lock);
    return n;
}

const sgt_http_request *sgt_http_fake_request(sgt_http_fake *f, size_t i)
{
    const sgt_http_request *r = NULL;
    pthread_mutex_lock(&f->lock);
    if (i < f->nrequests)
        r = f->requests[i];
    pthread_mutex_unlock(&f->lock);
    if (!r)
        sgt_abort("http fake: no request %zu (only %zu)", i, f->nrequests);
    return r;
}

char *sgt_http_header(const sgt_http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = strstr(req->headers, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *start = line + 2, *eol;
        if (strncmp(start, name, n) != 0 || start[n] != ':')
            continue;
        start += n + 1;
        while (*start == ' ')
            start++;
        eol = strstr(start, "\r\n");
        return strndup(start, eol ? (size_t)(eol - start) : strlen(start));
    }
    return NULL;
}
