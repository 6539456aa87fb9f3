/* A scripted fake Redis server for fault tests: listens on a loopback port and, on
 * its k-th accepted connection, answers every read with the next canned reply of
 * script k (the last reply repeats; NULL closes the connection). */
#ifndef NKC_FAKE_REDIS_H
#define NKC_FAKE_REDIS_H

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FAKE_MAX_CONNS 8
#define FAKE_MAX_REPLIES 8

struct fake_redis {
    int listen_fd, port;
    const char *replies[FAKE_MAX_CONNS][FAKE_MAX_REPLIES]; /* per connection */
    size_t reply_len[FAKE_MAX_CONNS][FAKE_MAX_REPLIES];    /* 0 = strlen */
    int drip_ms;              /* >0: send one byte every drip_ms */
    _Atomic int stop, accepted;
    pthread_t thread;
};

static inline void fake_send(struct fake_redis *f, int fd, const char *r, size_t len)
{
    if (f->drip_ms <= 0) {
        (void)!send(fd, r, len, MSG_NOSIGNAL);
        return;
    }
    for (size_t i = 0; i < len && !atomic_load(&f->stop); i++) {
        if (send(fd, r + i, 1, MSG_NOSIGNAL) != 1)
            return;
        usleep((useconds_t)f->drip_ms * 1000);
    }
}

static inline void fake_serve(struct fake_redis *f, int fd, int conn)
{
    char buf[65536];
    for (int k = 0; k < FAKE_MAX_REPLIES && !atomic_load(&f->stop);) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (n <= 0)
            return;
        const char *r = f->replies[conn][k];
        if (!r)
            return; /* script over: close */
        fake_send(f, fd, r, f->reply_len[conn][k] ? f->reply_len[conn][k] : strlen(r));
        k++;
    }
}

static inline void *fake_main(void *arg)
{
    struct fake_redis *f = arg;
    while (!atomic_load(&f->stop)) {
        int fd = accept(f->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        int conn = atomic_fetch_add(&f->accepted, 1);
        if (conn < FAKE_MAX_CONNS)
            fake_serve(f, fd, conn);
        close(fd);
    }
    return NULL;
}

static inline int fake_start(struct fake_redis *f)
{
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(f->listen_fd, 16) != 0 ||
        getsockname(f->listen_fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    struct timeval tv = {0, 100000}; /* accept wakes up to notice stop */
    setsockopt(f->listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->thread, NULL, fake_main, f);
}

static inline void fake_stop(struct fake_redis *f)
{
    atomic_store(&f->stop, 1);
    shutdown(f->listen_fd, SHUT_RDWR);
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
}

#endif
