/*
 * Redis client layer (see l2.h). Invariants:
 *  - A pooled connection is used by one thread at a time (`busy` under pool_lock).
 *  - Every byte goes through send(MSG_NOSIGNAL)/recv on a non-blocking socket
 *    polled against an absolute deadline: a stalled or dripping server cannot hold
 *    a call past its deadline by more than one poll wake-up, and a dead peer
 *    cannot raise SIGPIPE in the host.
 *  - A reply is parsed by hiredis's reader with our object functions: strings over
 *    l2.max_value_bytes and arrays longer than MAX_ELEMENTS are refused before any
 *    allocation, and unparsed input is capped at the same size.
 *  - Any failure other than a Redis error reply poisons the connection: it is
 *    closed and reconnected (with back-off) by the next user, which re-runs the
 *    whole handshake (AUTH, SELECT, options) on a fresh socket.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "l2.h"

#include "stats.h"
#include "sync.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_ELEMENTS 4096     /* the longest array reply the library ever asks for */
#define READ_CHUNK 16384
#define BACKOFF_MIN_MS 25
#define BACKOFF_MAX_MS 500
#define PROBE_EVERY_MS 250 /* background probe of an open breaker */

struct conn {
    int fd;                /* -1 while disconnected */
    redisReader *reader;
    int64_t retry_at_ns;   /* no connect attempt before this (back-off) */
    int64_t backoff_ms;
    int busy;              /* lent to a caller; under pool_lock */
    int reused;            /* served a command since it connected */
    uint32_t slot;         /* index in the pool; NKC_L2_NO_SLOT for the subscriber */
    uint32_t gen;          /* generation of this connection's life */
    int tracked;           /* CLIENT TRACKING is on, redirected to the subscriber */
    int connecting;        /* in the handshake (test hooks stay out of it) */
};

struct limits {
    size_t max_string;
    long long max_elements;
};

struct nkc_l2 {
    struct nkc_url url;
    char where[160];       /* host:port or socket path, for messages (no password) */
    int64_t timeout_ms, connect_timeout_ms, cooldown_ms;
    uint64_t breaker_failures;
    struct limits limits;

    nkc_mutex_t pool_lock; /* protects conns[].busy; pool_cv waits on it */
    nkc_cond_t pool_cv;
    unsigned n_conns;
    struct conn *conns;
    /* live[i]: the generation of pooled connection i while it lives, 0 once it
     * died or was retired (release stores; L1 reads them relaxed, see l1.c) */
    _Atomic uint32_t *live;
    _Atomic uint32_t next_gen;
    int tracking;                 /* l2.tracking */
    nkc_mutex_t sub_lock;         /* protects the two fields below */
    long long sub_id_value;       /* the subscriber's CLIENT ID; 0 = none */
    uint64_t sub_epoch;           /* bumped whenever the subscriber changes */
    void (*after_send)(void *);   /* test hook */
    void *after_send_udata;

    nkc_mutex_t breaker_lock; /* protects the five breaker fields */
    enum nkc_breaker_state breaker;
    uint64_t failures;
    int64_t open_until_ns;
    int probe_out;
    int64_t next_bg_probe_ns;

    _Atomic uint64_t n_commands, n_errors, n_timeouts, n_protocol, n_reconnects,
        n_connect_failures, n_trips, n_skipped, n_untracked, n_retired;
    struct nkc_hist *rtt; /* completed pipelines' round trips (own aligned block) */
};

/* ---- reply objects: ours, allocated only within the limits ---- */

static const struct limits *limits_of(const redisReadTask *task)
{
    while (task->parent)
        task = task->parent;
    return task->privdata;
}

static void *attach(const redisReadTask *task, struct nkc_reply *r)
{
    if (r && task->parent) {
        struct nkc_reply *parent = task->parent->obj;
        parent->elem[task->idx] = r;
    }
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    if (len > limits_of(task)->max_string)
        return NULL; /* the reader reports it as an error; nothing was allocated */
    struct nkc_reply *r = calloc(1, sizeof(*r));
    if (!r || !(r->str = malloc(len + 1))) {
        free(r);
        return NULL;
    }
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    r->type = task->type == REDIS_REPLY_ERROR    ? NKC_R_ERROR
              : task->type == REDIS_REPLY_STATUS ? NKC_R_STATUS
                                                 : NKC_R_STRING;
    return attach(task, r);
}

static void *create_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > limits_of(task)->max_elements)
        return NULL;
    struct nkc_reply *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->type = NKC_R_ARRAY;
    r->n = (size_t)elements;
    if (elements > 0 && !(r->elem = calloc((size_t)elements, sizeof(*r->elem)))) {
        free(r);
        return NULL;
    }
    return attach(task, r);
}

static void *create_integer(const redisReadTask *task, long long v)
{
    struct nkc_reply *r = calloc(1, sizeof(*r));
    if (r) {
        r->type = NKC_R_INTEGER;
        r->integer = v;
    }
    return attach(task, r);
}

static void *create_nil(const redisReadTask *task)
{
    struct nkc_reply *r = calloc(1, sizeof(*r));
    if (r)
        r->type = NKC_R_NIL;
    return attach(task, r);
}

void nkc_reply_free(struct nkc_reply *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        nkc_reply_free(r->elem[i]);
    free(r->elem);
    free(r->str);
    free(r);
}

static void free_object(void *p) { nkc_reply_free(p); }

static redisReplyObjectFunctions reply_functions = {
    create_string, create_array, create_integer, create_nil, free_object,
};

/* ---- sockets with deadlines ---- */

static int remaining_ms(int64_t deadline_ns)
{
    int64_t left = deadline_ns - nkc_now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > 60000 ? 60000 : (int)ms;
}

/* Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline_ns)
{
    for (;;) {
        int ms = remaining_ms(deadline_ns);
        if (ms == 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, ms);
        if (rc > 0)
            return (p.revents & (POLLERR | POLLNVAL)) && !(p.revents & events) ? -1 : 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

static cache_err_t send_all(int fd, const char *buf, size_t len, int64_t deadline_ns)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLOUT, deadline_ns);
            if (w == 0)
                return CACHE_ETIMEOUT;
            if (w < 0)
                return CACHE_EL2;
            continue;
        }
        return CACHE_EL2; /* EPIPE, ECONNRESET, ...: never a signal */
    }
    return CACHE_OK;
}

/* Reads one reply within the deadline. *proto is set on a protocol violation. */
static cache_err_t read_reply(struct nkc_l2 *l2, struct conn *cn, int64_t deadline_ns,
                              struct nkc_reply **out, int *proto)
{
    char buf[READ_CHUNK];
    for (;;) {
        void *obj = NULL;
        if (redisReaderGetReply(cn->reader, &obj) != REDIS_OK) {
            *proto = 1;
            return CACHE_EL2;
        }
        if (obj) {
            *out = obj;
            return CACHE_OK;
        }
        if (cn->reader->len - cn->reader->pos > l2->limits.max_string + 1024) {
            *proto = 1; /* a reply larger than we accept: stop buffering it */
            return CACHE_EL2;
        }
        int w = wait_fd(cn->fd, POLLIN, deadline_ns);
        if (w == 0)
            return CACHE_ETIMEOUT;
        if (w < 0)
            return CACHE_EL2;
        ssize_t n = recv(cn->fd, buf, sizeof(buf), 0);
        if (n == 0)
            return CACHE_EL2; /* EOF */
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return CACHE_EL2;
        }
        if (redisReaderFeed(cn->reader, buf, (size_t)n) != REDIS_OK) {
            *proto = 1;
            return CACHE_EL2;
        }
    }
}

static void conn_close(struct conn *cn)
{
    if (cn->fd >= 0)
        close(cn->fd);
    cn->fd = -1;
    if (cn->reader)
        redisReaderFree(cn->reader);
    cn->reader = NULL;
}

/* Closes a pooled connection and retires its generation: entries read through it
 * may have missed invalidations (Redis keeps no tracking state for a dead client). */
static void conn_drop(struct nkc_l2 *l2, struct conn *cn)
{
    if (cn->fd >= 0 && cn->slot != NKC_L2_NO_SLOT) {
        /* release: pairs with nothing in particular; see fresh() in l1.c */
        atomic_store_explicit(&l2->live[cn->slot], 0, memory_order_release);
        atomic_fetch_add_explicit(&l2->n_retired, 1, memory_order_relaxed);
    }
    conn_close(cn);
}

/* Sends the commands and reads one reply each; on any failure frees what it read. */
static cache_err_t roundtrip(struct nkc_l2 *l2, struct conn *cn, size_t n,
                             const struct nkc_cmd *cmds, struct nkc_reply **out,
                             int64_t deadline_ns, int *proto)
{
    cache_err_t err = CACHE_OK;
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    for (size_t i = 0; i < n && err == CACHE_OK; i++) {
        char *wire = NULL;
        int len = redisFormatCommandArgv(&wire, cmds[i].argc, (const char **)cmds[i].argv,
                                         cmds[i].argvlen);
        if (len < 0)
            return CACHE_ENOMEM;
        err = send_all(cn->fd, wire, (size_t)len, deadline_ns);
        redisFreeCommand(wire);
    }
    if (err == CACHE_OK && l2->after_send && cn->slot != NKC_L2_NO_SLOT && !cn->connecting)
        l2->after_send(l2->after_send_udata);
    for (size_t i = 0; i < n && err == CACHE_OK; i++)
        err = read_reply(l2, cn, deadline_ns, &out[i], proto);
    if (err != CACHE_OK) {
        for (size_t i = 0; i < n; i++) {
            nkc_reply_free(out[i]);
            out[i] = NULL;
        }
    }
    return err;
}

/* ---- connecting ---- */

static void set_socket_options(int fd, int tcp)
{
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    if (!tcp)
        return;
    int idle = 15, intvl = 5, cnt = 3; /* a silent peer is declared dead in ~30 s */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int connect_addr(const struct sockaddr *sa, socklen_t salen, int family, int64_t deadline_ns)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, sa, salen) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    int err = 0;
    socklen_t elen = sizeof(err);
    if (wait_fd(fd, POLLOUT, deadline_ns) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
        close(fd);
        return -1;
    }
    set_socket_options(fd, family != AF_UNIX);
    return fd;
}

/* A connected socket to the configured address, or -1. Host names go through the
 * system resolver, which the deadline cannot interrupt: prefer addresses. */
static int open_socket(const struct nkc_l2 *l2, int64_t deadline_ns)
{
    if (l2->url.path) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", l2->url.path);
        return connect_addr((struct sockaddr *)&sun, sizeof(sun), AF_UNIX, deadline_ns);
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", l2->url.port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *res = NULL;
    if (getaddrinfo(l2->url.host, port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next)
        fd = connect_addr(a->ai_addr, a->ai_addrlen, a->ai_family, deadline_ns);
    freeaddrinfo(res);
    return fd;
}

/* One setup command (handshake, subscriber): CACHE_OK only for a reply of type
 * `want` (0: any but an error); an integer reply goes to *integer when asked. */
static cache_err_t expect_cmd(struct nkc_l2 *l2, struct conn *cn, int argc, const char **argv,
                              int64_t deadline_ns, int want, long long *integer, char *msg,
                              size_t msglen)
{
    size_t lens[4];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    struct nkc_cmd cmd = {argc, argv, lens};
    struct nkc_reply *r;
    int proto = 0;
    cache_err_t err = roundtrip(l2, cn, 1, &cmd, &r, deadline_ns, &proto);
    if (err != CACHE_OK) {
        nkc_errf(msg, msglen, "%s: %s during %s", l2->where,
                 err == CACHE_ETIMEOUT ? "timed out" : "connection failed", argv[0]);
        return err;
    }
    if (r->type == NKC_R_ERROR || (want && (int)r->type != want)) {
        /* never echo AUTH's arguments; Redis's own message has no secret in it */
        nkc_errf(msg, msglen, "%s: %s refused: %.120s", l2->where, argv[0],
                 r->type == NKC_R_ERROR ? r->str : "unexpected reply");
        err = CACHE_EL2;
    } else if (integer) {
        *integer = r->integer;
    }
    nkc_reply_free(r);
    return err;
}

static cache_err_t hello_cmd(struct nkc_l2 *l2, struct conn *cn, int argc, const char **argv,
                             int64_t deadline_ns, char *msg, size_t msglen)
{
    return expect_cmd(l2, cn, argc, argv, deadline_ns, 0, NULL, msg, msglen);
}

/* AUTH (fails closed), SELECT and PING, within the connect deadline. */
static cache_err_t handshake(struct nkc_l2 *l2, struct conn *cn, int64_t deadline, char *msg,
                             size_t msglen)
{
    cache_err_t err = CACHE_OK;
    if (l2->url.password) {
        const char *argv[3] = {"AUTH", l2->url.user ? l2->url.user : l2->url.password,
                               l2->url.password};
        err = hello_cmd(l2, cn, l2->url.user ? 3 : 2, argv, deadline, msg, msglen);
    }
    if (err == CACHE_OK && l2->url.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", l2->url.db);
        const char *argv[2] = {"SELECT", db};
        err = hello_cmd(l2, cn, 2, argv, deadline, msg, msglen);
    }
    if (err == CACHE_OK) {
        const char *argv[1] = {"PING"};
        err = hello_cmd(l2, cn, 1, argv, deadline, msg, msglen);
    }
    return err;
}

/* Points a data connection's invalidations at the subscriber (when there is one).
 * Not fatal: an untracked connection serves, with L1 copies capped short. */
static void start_tracking(struct nkc_l2 *l2, struct conn *cn, long long sub_id, int64_t deadline)
{
    cn->tracked = 0;
    if (!l2->tracking || sub_id <= 0)
        return;
    char id[24];
    snprintf(id, sizeof(id), "%lld", sub_id);
    /* no NOLOOP: on Redis 7.0 its self-filter also drops the invalidations of keys
     * evicted from a full tracking table while this connection runs a command */
    const char *argv[5] = {"CLIENT", "TRACKING", "on", "REDIRECT", id};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    struct nkc_cmd cmd = {5, argv, lens};
    struct nkc_reply *r;
    int proto = 0;
    if (roundtrip(l2, cn, 1, &cmd, &r, deadline, &proto) == CACHE_OK) {
        cn->tracked = r->type == NKC_R_STATUS;
        nkc_reply_free(r);
    }
}

static void read_subscriber(struct nkc_l2 *l2, long long *id, uint64_t *epoch)
{
    nkc_mutex_lock(&l2->sub_lock);
    *id = l2->sub_id_value;
    *epoch = l2->sub_epoch;
    nkc_mutex_unlock(&l2->sub_lock);
}

/* Connects cn: socket, handshake, tracking; then gives it a new live generation. */
static cache_err_t conn_open(struct nkc_l2 *l2, struct conn *cn, char *msg, size_t msglen)
{
    int64_t deadline = nkc_now_ns() + l2->connect_timeout_ms * 1000000;
    conn_drop(l2, cn);
    cn->fd = open_socket(l2, deadline);
    if (cn->fd < 0) {
        nkc_errf(msg, msglen, "%s: cannot connect (%s)", l2->where, strerror(errno));
        return CACHE_EL2;
    }
    cn->reader = redisReaderCreateWithFunctions(&reply_functions);
    if (!cn->reader) {
        conn_close(cn);
        return CACHE_ENOMEM;
    }
    cn->reader->privdata = &l2->limits;
    cn->reused = 0;
    cn->connecting = 1;
    cache_err_t err = handshake(l2, cn, deadline, msg, msglen);
    if (err != CACHE_OK) {
        cn->connecting = 0;
        conn_close(cn); /* a failed AUTH never leaves a usable (default-user) socket */
        return err;
    }
    if (cn->slot == NKC_L2_NO_SLOT) {
        cn->connecting = 0;
        return CACHE_OK;
    }
    long long sub_id;
    uint64_t epoch, now_epoch;
    read_subscriber(l2, &sub_id, &epoch);
    start_tracking(l2, cn, sub_id, deadline);
    cn->connecting = 0;
    if (!cn->tracked)
        atomic_fetch_add_explicit(&l2->n_untracked, 1, memory_order_relaxed);
    uint32_t gen = atomic_fetch_add_explicit(&l2->next_gen, 1, memory_order_relaxed);
    cn->gen = gen ? gen : atomic_fetch_add_explicit(&l2->next_gen, 1, memory_order_relaxed);
    atomic_store_explicit(&l2->live[cn->slot], cn->gen, memory_order_release);
    read_subscriber(l2, &sub_id, &now_epoch);
    if (now_epoch != epoch) /* the subscriber changed meanwhile: this life is stale */
        atomic_store_explicit(&l2->live[cn->slot], 0, memory_order_release);
    return CACHE_OK;
}

/* ---- the breaker ---- */

/* May this call use Redis? Open: no, until the cooldown ends; then one probe. */
static int breaker_allow(struct nkc_l2 *l2, int *probe)
{
    int ok = 1;
    *probe = 0;
    nkc_mutex_lock(&l2->breaker_lock);
    if (l2->breaker != NKC_BREAKER_CLOSED) {
        if (!l2->probe_out && nkc_now_ns() >= l2->open_until_ns) {
            l2->breaker = NKC_BREAKER_HALF_OPEN;
            l2->probe_out = 1;
            *probe = 1;
        } else {
            ok = 0;
        }
    }
    nkc_mutex_unlock(&l2->breaker_lock);
    return ok;
}

static void breaker_record(struct nkc_l2 *l2, int failed, int probe)
{
    nkc_mutex_lock(&l2->breaker_lock);
    if (probe)
        l2->probe_out = 0;
    if (!failed) {
        l2->failures = 0;
        l2->breaker = NKC_BREAKER_CLOSED;
    } else if (++l2->failures >= l2->breaker_failures || probe) {
        if (l2->breaker == NKC_BREAKER_CLOSED)
            atomic_fetch_add_explicit(&l2->n_trips, 1, memory_order_relaxed);
        l2->breaker = NKC_BREAKER_OPEN;
        l2->open_until_ns = nkc_now_ns() + l2->cooldown_ms * 1000000;
    }
    nkc_mutex_unlock(&l2->breaker_lock);
}

/* ---- the pool ---- */

/* Lends a connection (waiting up to the deadline for one); NULL on time-out. */
static struct conn *acquire(struct nkc_l2 *l2, int64_t deadline_ns)
{
    struct conn *got = NULL;
    nkc_mutex_lock(&l2->pool_lock);
    for (;;) {
        for (unsigned i = 0; i < l2->n_conns && !got; i++) /* connected ones first */
            if (!l2->conns[i].busy && l2->conns[i].fd >= 0)
                got = &l2->conns[i];
        for (unsigned i = 0; i < l2->n_conns && !got; i++)
            if (!l2->conns[i].busy)
                got = &l2->conns[i];
        if (got || nkc_cond_wait_until(&l2->pool_cv, &l2->pool_lock, deadline_ns))
            break;
    }
    if (got)
        got->busy = 1;
    nkc_mutex_unlock(&l2->pool_lock);
    return got;
}

static void release(struct nkc_l2 *l2, struct conn *cn)
{
    nkc_mutex_lock(&l2->pool_lock);
    cn->busy = 0;
    nkc_cond_signal(&l2->pool_cv);
    nkc_mutex_unlock(&l2->pool_lock);
}

/* The connection that serves a key. One node today: any pooled connection. A
 * cluster router (slots, MOVED/ASK) replaces this function and nothing else. */
static struct conn *route(struct nkc_l2 *l2, const void *key, size_t klen, int64_t deadline_ns)
{
    (void)key, (void)klen;
    return acquire(l2, deadline_ns);
}

/* Makes sure cn is connected, honouring the back-off after failures. */
static cache_err_t ensure_connected(struct nkc_l2 *l2, struct conn *cn)
{
    if (cn->fd >= 0 &&
        atomic_load_explicit(&l2->live[cn->slot], memory_order_acquire) != cn->gen)
        conn_close(cn); /* retired (the subscriber changed): reconnect, re-register */
    if (cn->fd >= 0)
        return CACHE_OK;
    int64_t now = nkc_now_ns();
    if (now < cn->retry_at_ns)
        return CACHE_EL2;
    char msg[256];
    cache_err_t err = conn_open(l2, cn, msg, sizeof(msg));
    if (err == CACHE_OK) {
        atomic_fetch_add_explicit(&l2->n_reconnects, 1, memory_order_relaxed);
        cn->backoff_ms = 0;
        return CACHE_OK;
    }
    atomic_fetch_add_explicit(&l2->n_connect_failures, 1, memory_order_relaxed);
    /* exponential back-off with +-25% jitter so a fleet does not reconnect in step */
    cn->backoff_ms = cn->backoff_ms ? cn->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (cn->backoff_ms > BACKOFF_MAX_MS)
        cn->backoff_ms = BACKOFF_MAX_MS;
    double spread = 0.75 + 0.5 * nkc_rand_unit();
    cn->retry_at_ns = now + (int64_t)((double)cn->backoff_ms * spread * 1e6);
    return err;
}

static void count_failure(struct nkc_l2 *l2, cache_err_t err, int proto)
{
    atomic_fetch_add_explicit(&l2->n_errors, 1, memory_order_relaxed);
    if (err == CACHE_ETIMEOUT)
        atomic_fetch_add_explicit(&l2->n_timeouts, 1, memory_order_relaxed);
    if (proto)
        atomic_fetch_add_explicit(&l2->n_protocol, 1, memory_order_relaxed);
}

cache_err_t nkc_l2_pipeline(struct nkc_l2 *l2, const void *route_key, size_t route_klen,
                            size_t n, const struct nkc_cmd *cmds, struct nkc_reply **out,
                            struct nkc_origin *origin)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    if (origin)
        *origin = (struct nkc_origin){.slot = NKC_L2_NO_SLOT};
    int probe;
    if (!breaker_allow(l2, &probe)) {
        atomic_fetch_add_explicit(&l2->n_skipped, 1, memory_order_relaxed);
        return CACHE_EL2;
    }
    atomic_fetch_add_explicit(&l2->n_commands, 1, memory_order_relaxed);
    struct conn *cn = route(l2, route_key, route_klen, nkc_now_ns() + l2->timeout_ms * 1000000);
    if (!cn) {
        count_failure(l2, CACHE_ETIMEOUT, 0);
        breaker_record(l2, 1, probe);
        return CACHE_ETIMEOUT;
    }
    int proto = 0;
    cache_err_t err;
    for (int attempt = 0;; attempt++) {
        err = ensure_connected(l2, cn);
        if (err != CACHE_OK)
            break;
        int was_reused = cn->reused;
        int64_t sent_ns = nkc_now_ns();
        err = roundtrip(l2, cn, n, cmds, out, sent_ns + l2->timeout_ms * 1000000, &proto);
        if (err == CACHE_OK) {
            nkc_hist_record(l2->rtt, nkc_now_ns() - sent_ns);
            cn->reused = 1;
            if (origin)
                *origin = (struct nkc_origin){cn->slot, cn->gen, cn->tracked};
            break;
        }
        conn_drop(l2, cn);
        /* A pooled socket that died while idle (server restart, CLIENT KILL, idle
         * timeout) fails at once: retry once on a fresh one. Not after a time-out. */
        if (err != CACHE_EL2 || proto || !was_reused || attempt > 0)
            break;
    }
    release(l2, cn);
    if (err != CACHE_OK)
        count_failure(l2, err, proto);
    breaker_record(l2, err != CACHE_OK, probe);
    return err;
}

/* Lends a free connection without waiting; NULL when all are busy. */
static struct conn *try_acquire(struct nkc_l2 *l2)
{
    return acquire(l2, 0);
}

/* PINGs Redis on cn, a lent connection (reconnecting it first when needed), and
 * gives it back; a failed connection is dropped. */
static cache_err_t ping_on(struct nkc_l2 *l2, struct conn *cn)
{
    cache_err_t err = ensure_connected(l2, cn);
    if (err == CACHE_OK) {
        const char *argv[1] = {"PING"};
        size_t lens[1] = {4};
        struct nkc_cmd cmd = {1, argv, lens};
        struct nkc_reply *r;
        int proto = 0;
        err = roundtrip(l2, cn, 1, &cmd, &r, nkc_now_ns() + l2->timeout_ms * 1000000, &proto);
        if (err == CACHE_OK)
            nkc_reply_free(r);
        else
            conn_drop(l2, cn);
    }
    release(l2, cn);
    return err;
}

cache_err_t nkc_l2_ping(struct nkc_l2 *l2, int64_t *rtt_ns)
{
    int64_t t0 = nkc_now_ns();
    struct conn *cn = acquire(l2, t0 + l2->timeout_ms * 1000000);
    cache_err_t err = cn ? ping_on(l2, cn) : CACHE_ETIMEOUT;
    *rtt_ns = nkc_now_ns() - t0;
    return err;
}

void nkc_l2_maintain(struct nkc_l2 *l2)
{
    int64_t now = nkc_now_ns();
    nkc_mutex_lock(&l2->breaker_lock);
    int due = l2->breaker == NKC_BREAKER_OPEN && !l2->probe_out && now >= l2->next_bg_probe_ns;
    if (due) {
        l2->probe_out = 1;
        l2->next_bg_probe_ns = now + (int64_t)PROBE_EVERY_MS * 1000000;
    }
    nkc_mutex_unlock(&l2->breaker_lock);
    if (!due)
        return;
    struct conn *cn = try_acquire(l2);
    cache_err_t err = cn ? ping_on(l2, cn) : CACHE_EL2;
    nkc_mutex_lock(&l2->breaker_lock);
    l2->probe_out = 0;
    if (err == CACHE_OK) { /* Redis is back: close without waiting out the cooldown */
        l2->breaker = NKC_BREAKER_CLOSED;
        l2->failures = 0;
    }
    nkc_mutex_unlock(&l2->breaker_lock);
}

cache_err_t nkc_l2_command(struct nkc_l2 *l2, const void *route_key, size_t route_klen,
                           int argc, const char *const *argv, const size_t *argvlen,
                           struct nkc_reply **out)
{
    struct nkc_cmd cmd = {argc, argv, argvlen};
    return nkc_l2_pipeline(l2, route_key, route_klen, 1, &cmd, out, NULL);
}

/* ---- lifecycle ---- */

cache_err_t nkc_l2_open(struct nkc_l2 **out, const struct nkc_l2_params *p, char *errbuf,
                        size_t errlen)
{
    const struct nkc_config *cfg = p->cfg;
    struct nkc_l2 *l2 = calloc(1, sizeof(*l2));
    if (!l2)
        return CACHE_ENOMEM;
    cache_err_t err = nkc_url_parse(cfg->l2_url, &l2->url, errbuf, errlen);
    if (err != CACHE_OK) {
        free(l2);
        return err;
    }
    if (l2->url.path)
        snprintf(l2->where, sizeof(l2->where), "redis at %s", l2->url.path);
    else
        snprintf(l2->where, sizeof(l2->where), "redis at %s:%d", l2->url.host, l2->url.port);
    l2->timeout_ms = (int64_t)cfg->l2_timeout_ms;
    l2->connect_timeout_ms = (int64_t)cfg->l2_connect_timeout_ms;
    l2->cooldown_ms = (int64_t)cfg->l2_breaker_cooldown_ms;
    l2->breaker_failures = cfg->l2_breaker_failures;
    l2->limits.max_string = cfg->l2_max_value_bytes + 64; /* room for our envelope */
    l2->limits.max_elements = MAX_ELEMENTS;
    l2->tracking = cfg->l2_tracking;
    l2->after_send = cfg->test_after_send;
    l2->after_send_udata = cfg->test_after_send_udata;
    atomic_init(&l2->next_gen, 1);
    nkc_mutex_init(&l2->pool_lock);
    nkc_cond_init(&l2->pool_cv);
    nkc_mutex_init(&l2->breaker_lock);
    nkc_mutex_init(&l2->sub_lock);
    l2->n_conns = (unsigned)cfg->l2_pool_size;
    l2->conns = calloc(l2->n_conns, sizeof(*l2->conns));
    l2->live = calloc(l2->n_conns, sizeof(*l2->live));
    l2->rtt = nkc_hist_new();
    if (!l2->conns || !l2->live || !l2->rtt) {
        nkc_l2_close(l2);
        return CACHE_ENOMEM;
    }
    for (unsigned i = 0; i < l2->n_conns; i++) {
        l2->conns[i].fd = -1;
        l2->conns[i].slot = i;
    }
    err = conn_open(l2, &l2->conns[0], errbuf, errlen);
    if (err != CACHE_OK) {
        nkc_l2_close(l2);
        return err;
    }
    *out = l2;
    return CACHE_OK;
}

void nkc_l2_close(struct nkc_l2 *l2)
{
    if (!l2)
        return;
    for (unsigned i = 0; l2->conns && i < l2->n_conns; i++)
        conn_close(&l2->conns[i]);
    free(l2->conns);
    free(l2->live);
    nkc_hist_free(l2->rtt);
    nkc_url_free(&l2->url);
    nkc_mutex_destroy(&l2->pool_lock);
    nkc_cond_destroy(&l2->pool_cv);
    nkc_mutex_destroy(&l2->breaker_lock);
    nkc_mutex_destroy(&l2->sub_lock);
    free(l2);
}

void nkc_l2_totals(struct nkc_l2 *l2, struct nkc_l2_totals *t)
{
    t->commands = atomic_load_explicit(&l2->n_commands, memory_order_relaxed);
    t->errors = atomic_load_explicit(&l2->n_errors, memory_order_relaxed);
    t->timeouts = atomic_load_explicit(&l2->n_timeouts, memory_order_relaxed);
    t->protocol_errors = atomic_load_explicit(&l2->n_protocol, memory_order_relaxed);
    t->reconnects = atomic_load_explicit(&l2->n_reconnects, memory_order_relaxed);
    t->connect_failures = atomic_load_explicit(&l2->n_connect_failures, memory_order_relaxed);
    t->breaker_trips = atomic_load_explicit(&l2->n_trips, memory_order_relaxed);
    t->skipped_open = atomic_load_explicit(&l2->n_skipped, memory_order_relaxed);
    t->untracked_connects = atomic_load_explicit(&l2->n_untracked, memory_order_relaxed);
    t->retired = atomic_load_explicit(&l2->n_retired, memory_order_relaxed);
    nkc_mutex_lock(&l2->sub_lock);
    t->subscribed = l2->sub_id_value > 0;
    nkc_mutex_unlock(&l2->sub_lock);
    nkc_mutex_lock(&l2->breaker_lock);
    t->breaker = l2->breaker;
    nkc_mutex_unlock(&l2->breaker_lock);
}

void nkc_l2_rtt(struct nkc_l2 *l2, struct nkc_hist_snapshot *out)
{
    nkc_hist_read(l2->rtt, out);
}

const char *nkc_breaker_name(enum nkc_breaker_state s)
{
    return s == NKC_BREAKER_CLOSED ? "closed" : s == NKC_BREAKER_OPEN ? "open" : "half_open";
}

int nkc_l2_conn_fd(struct nkc_l2 *l2, unsigned i)
{
    if (i >= l2->n_conns)
        return -1;
    nkc_mutex_lock(&l2->pool_lock);
    int fd = l2->conns[i].fd;
    nkc_mutex_unlock(&l2->pool_lock);
    return fd;
}

/* ---- tracking: generations and the invalidation subscriber ---- */

const _Atomic uint32_t *nkc_l2_live(const struct nkc_l2 *l2) { return l2->live; }

void nkc_l2_retire_all(struct nkc_l2 *l2)
{
    for (unsigned i = 0; i < l2->n_conns; i++)
        if (atomic_exchange_explicit(&l2->live[i], 0, memory_order_acq_rel) != 0)
            atomic_fetch_add_explicit(&l2->n_retired, 1, memory_order_relaxed);
}

void nkc_l2_set_subscriber(struct nkc_l2 *l2, long long id)
{
    nkc_mutex_lock(&l2->sub_lock);
    l2->sub_id_value = id;
    l2->sub_epoch++;
    nkc_mutex_unlock(&l2->sub_lock);
    nkc_l2_retire_all(l2); /* every connection re-registers with the new id */
}

void nkc_l2_check_idle(struct nkc_l2 *l2)
{
    for (unsigned i = 0; i < l2->n_conns; i++) {
        struct conn *cn = &l2->conns[i];
        nkc_mutex_lock(&l2->pool_lock);
        int mine = !cn->busy && cn->fd >= 0;
        if (mine)
            cn->busy = 1;
        nkc_mutex_unlock(&l2->pool_lock);
        if (!mine)
            continue;
        /* an idle connection has nothing to read: readable means EOF or junk */
        struct pollfd p = {.fd = cn->fd, .events = POLLIN};
        if (poll(&p, 1, 0) != 0)
            conn_drop(l2, cn);
        release(l2, cn);
    }
}

struct nkc_l2_sub {
    struct conn cn;
};

static cache_err_t sub_expect(struct nkc_l2 *l2, struct nkc_l2_sub *sub, int argc,
                              const char **argv, enum nkc_reply_type want, long long *integer,
                              char *msg, size_t msglen)
{
    return expect_cmd(l2, &sub->cn, argc, argv, nkc_now_ns() + l2->connect_timeout_ms * 1000000,
                      (int)want, integer, msg, msglen);
}

cache_err_t nkc_l2_sub_open(struct nkc_l2 *l2, struct nkc_l2_sub **out, long long *id,
                            char *msg, size_t msglen)
{
    struct nkc_l2_sub *sub = calloc(1, sizeof(*sub));
    if (!sub)
        return CACHE_ENOMEM;
    sub->cn.fd = -1;
    sub->cn.slot = NKC_L2_NO_SLOT;
    cache_err_t err = conn_open(l2, &sub->cn, msg, msglen);
    const char *client_id[2] = {"CLIENT", "ID"};
    const char *subscribe[2] = {"SUBSCRIBE", "__redis__:invalidate"};
    if (err == CACHE_OK)
        err = sub_expect(l2, sub, 2, client_id, NKC_R_INTEGER, id, msg, msglen);
    if (err == CACHE_OK)
        err = sub_expect(l2, sub, 2, subscribe, NKC_R_ARRAY, NULL, msg, msglen);
    if (err != CACHE_OK) {
        nkc_l2_sub_close(sub);
        return err;
    }
    *out = sub;
    return CACHE_OK;
}

cache_err_t nkc_l2_sub_next(struct nkc_l2 *l2, struct nkc_l2_sub *sub, int64_t deadline_ns,
                            struct nkc_reply **out)
{
    int proto = 0;
    *out = NULL;
    cache_err_t err = read_reply(l2, &sub->cn, deadline_ns, out, &proto);
    return err == CACHE_ETIMEOUT ? CACHE_OK : err;
}

cache_err_t nkc_l2_sub_ping(struct nkc_l2 *l2, struct nkc_l2_sub *sub)
{
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    return send_all(sub->cn.fd, ping, sizeof(ping) - 1, nkc_now_ns() + l2->timeout_ms * 1000000);
}

void nkc_l2_sub_close(struct nkc_l2_sub *sub)
{
    if (!sub)
        return;
    conn_close(&sub->cn);
    free(sub);
}
