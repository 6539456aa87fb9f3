/*
 * metrics_http: serves a cache's Prometheus metrics and health over HTTP while a
 * background thread loads it, with a tiny single-threaded socket server (no HTTP
 * library): GET /metrics (text/plain; version=0.0.4) and GET /health (JSON; 200 for
 * pass and warn, 503 for fail), on 127.0.0.1 only.
 *
 *   metrics_http [--port N] [--duration-ms N] [--redis URL] [--self-test]
 *
 * --port 0 (the default) picks a free port and prints it; --duration-ms 0 (the
 * default) runs until SIGINT/SIGTERM; --self-test fetches /metrics, /health and a
 * missing page from itself over a real socket, checks the answers, and exits 0.
 */
#define _POSIX_C_SOURCE 200809L /* sockets, clocks, rand_r; the build is plain C11 */
#include <nakkucache.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST 8192   /* a request line and headers; the rest is refused */
#define IO_TIMEOUT_MS 2000 /* a client that stalls longer is dropped */

static atomic_int stop;      /* set by the signal handler, the duration, or the self-test */
static atomic_long requests; /* requests served, for the final line */

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop, 1); /* lock-free atomics are async-signal-safe */
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the simulated database and the load on it ---- */

/* A "query": ~200 us; one product in 50 does not exist. */
static cache_err_t load_product(void *udata, const void *key, size_t klen, cache_sink_t *sink)
{
    (void)udata;
    sleep_us(200);
    int id = atoi((const char *)key + 8); /* "product:<id>", klen <= 31 */
    if (id % 50 == 0 || klen > 31)
        return CACHE_ENOTFOUND;
    char row[96];
    int n = snprintf(row, sizeof(row), "{\"id\":%d,\"name\":\"item %d\",\"price\":%d}", id, id,
                     id % 97 + 1);
    return cache_sink_put(sink, row, (size_t)n, 0);
}

/* Reads skewed toward low ids (the square of a uniform number), a write now and then. */
static void *load_main(void *arg)
{
    cache_t *cache = arg;
    unsigned seed = 42;
    char key[32];
    while (!atomic_load(&stop)) {
        double u = (double)rand_r(&seed) / RAND_MAX;
        int klen = snprintf(key, sizeof(key), "product:%d", (int)(u * u * 5000));
        cache_value_t *v = NULL;
        if (cache_get(cache, key, (size_t)klen, &v) == CACHE_OK)
            cache_value_release(v);
        if (rand_r(&seed) % 1000 == 0)
            cache_del(cache, key, (size_t)klen); /* "the row was updated" */
        sleep_us(50);
    }
    return NULL;
}

/* ---- the HTTP server ---- */

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL); /* a gone client: EPIPE, not SIGPIPE */
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void respond(int fd, int code, const char *type, const char *body)
{
    const char *reason = "Internal Server Error";
    switch (code) {
    case 200: reason = "OK"; break;
    case 404: reason = "Not Found"; break;
    case 405: reason = "Method Not Allowed"; break;
    case 503: reason = "Service Unavailable"; break;
    default: break;
    }
    char head[256];
    size_t len = strlen(body);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     code, reason, type, len);
    if (send_all(fd, head, (size_t)n) == 0)
        send_all(fd, body, len);
}

/* Reads the request head (up to a blank line) within the I/O timeout: its length,
 * or -1 when the client stalled, closed or sent too much. */
static int read_head(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, IO_TIMEOUT_MS) <= 0)
            return -1;
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return (int)len;
    }
    return -1;
}

static void serve_metrics(int fd, cache_t *cache)
{
    char *text = NULL;
    if (cache_metrics_prometheus(cache, &text) != CACHE_OK) {
        respond(fd, 500, "text/plain", "cannot render metrics\n");
        return;
    }
    respond(fd, 200, "text/plain; version=0.0.4; charset=utf-8", text);
    cache_free(text);
}

static void serve_health(int fd, cache_t *cache)
{
    char *json = cache_health_json(cache);
    if (!json) {
        respond(fd, 500, "text/plain", "cannot check health\n");
        return;
    }
    /* the library writes compact JSON: the status is exactly one of three strings */
    int fail = strstr(json, "\"status\":\"fail\"") != NULL;
    respond(fd, fail ? 503 : 200, "application/json", json);
    cache_free(json);
}

static void serve_client(int fd, cache_t *cache)
{
    char req[MAX_REQUEST], method[8], path[256];
    if (read_head(fd, req, sizeof(req)) < 0)
        return;
    if (sscanf(req, "%7s %255s HTTP/1.%*c", method, path) != 2) {
        respond(fd, 405, "text/plain", "malformed request\n");
        return;
    }
    atomic_fetch_add(&requests, 1);
    if (strcmp(method, "GET") != 0)
        respond(fd, 405, "text/plain", "only GET\n");
    else if (strcmp(path, "/metrics") == 0)
        serve_metrics(fd, cache);
    else if (strcmp(path, "/health") == 0)
        serve_health(fd, cache);
    else
        respond(fd, 404, "text/plain", "try /metrics or /health\n");
}

/* A listening socket on 127.0.0.1:*port (0: any free port, written back). */
static int listen_on(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        perror("metrics_http: listen");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

struct server {
    int fd;
    cache_t *cache;
    long long until_ms; /* 0: until stopped */
};

/* One client at a time: scrapes are rare and short. Wakes every 100 ms to check
 * `stop` and the duration. */
static void *serve_main(void *arg)
{
    struct server *s = arg;
    while (!atomic_load(&stop)) {
        if (s->until_ms && now_ms() >= s->until_ms)
            break;
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int client = accept(s->fd, NULL, NULL);
        if (client < 0)
            continue;
        serve_client(client, s->cache);
        close(client);
    }
    atomic_store(&stop, 1);
    return NULL;
}

/* ---- the self-test: a real HTTP client of our own server ---- */

/* GETs path from 127.0.0.1:port; returns the whole response (malloc'd) or NULL. */
static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    char req[512], *resp = NULL;
    size_t len = 0, cap = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto out;
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                       "Connection: close\r\n\r\n", path);
    if (send_all(fd, req, (size_t)n) != 0)
        goto out;
    for (;;) { /* the server closes after the body */
        if (cap - len < 4096) {
            char *p = realloc(resp, cap = cap ? cap * 2 : 65536);
            if (!p)
                break;
            resp = p;
        }
        ssize_t r = recv(fd, resp + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    if (resp)
        resp[len] = '\0';
out:
    if (fd >= 0)
        close(fd);
    return resp;
}

/* Fetches path and checks the status line, the Content-Type and a word of the body. */
static int expect(int port, const char *path, const char *status, const char *type,
                  const char *word)
{
    char *resp = http_get(port, path);
    const char *body = resp ? strstr(resp, "\r\n\r\n") : NULL;
    int ok = body && strncmp(resp, status, strlen(status)) == 0 && strstr(resp, type) &&
             strstr(body, word);
    printf("self-test: GET %-8s %s\n", path, ok ? "ok" : "FAILED");
    if (!ok)
        fprintf(stderr, "%s\n", resp ? resp : "(no response)");
    free(resp);
    return ok;
}

static int self_test(int port)
{
    sleep_us(100000); /* let the load thread produce some numbers */
    int ok = expect(port, "/metrics", "HTTP/1.1 200 ", "Content-Type: text/plain; version=0.0.4",
                    "# TYPE nakkucache_hits_total counter\nnakkucache_hits_total{tier=\"l1\"}");
    ok &= expect(port, "/metrics", "HTTP/1.1 200 ", "text/plain",
                 "nakkucache_loader_duration_seconds_bucket{le=\"+Inf\"}");
    /* pass, or warn with a --redis that is down: both are 200 */
    ok &= expect(port, "/health", "HTTP/1.1 200 ", "Content-Type: application/json", "\"status\":");
    ok &= expect(port, "/nothing", "HTTP/1.1 404 ", "text/plain", "/metrics");
    return ok;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    int port = 0, selftest = 0;
    long long duration_ms = 0;
    const char *redis = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--duration-ms") && i + 1 < argc)
            duration_ms = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--redis") && i + 1 < argc)
            redis = argv[++i];
        else if (!strcmp(argv[i], "--self-test"))
            selftest = 1;
        else {
            fprintf(stderr, "usage: %s [--port N] [--duration-ms N] [--redis URL] [--self-test]\n",
                    argv[0]);
            return 2;
        }
    }
    char err[256] = "";
    cache_t *cache = NULL;
    cache_config_t *cfg = cache_config_new();
    cache_err_t rc = cfg ? CACHE_OK : CACHE_ENOMEM;
    if (rc == CACHE_OK && redis)
        rc = cache_config_set(cfg, "l2.url", redis, err, sizeof(err));
    if (rc == CACHE_OK && redis)
        rc = cache_config_set(cfg, "l2.key_prefix", "metrics_http:", err, sizeof(err));
    if (rc == CACHE_OK) {
        cache_config_set_loader(cfg, load_product, NULL);
        rc = cache_open(&cache, cfg, err, sizeof(err));
    }
    cache_config_free(cfg);
    if (rc != CACHE_OK) {
        fprintf(stderr, "metrics_http: %s %s\n", cache_strerror(rc), err);
        return 1;
    }
    struct server srv = {.cache = cache, .until_ms = duration_ms ? now_ms() + duration_ms : 0};
    if ((srv.fd = listen_on(&port)) < 0) {
        cache_close(cache);
        return 1;
    }
    printf("metrics_http: listening on http://127.0.0.1:%d/ (GET /metrics, GET /health)\n", port);
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    pthread_t loader, server;
    int loading = pthread_create(&loader, NULL, load_main, cache) == 0;
    int ok = loading;
    if (!loading) {
        fprintf(stderr, "metrics_http: cannot start the load thread\n");
    } else if (selftest) {
        if (pthread_create(&server, NULL, serve_main, &srv) == 0) {
            ok = self_test(port);
            atomic_store(&stop, 1);
            pthread_join(server, NULL);
        } else {
            ok = 0;
        }
    } else {
        serve_main(&srv);
    }
    atomic_store(&stop, 1);
    if (loading)
        pthread_join(loader, NULL);
    close(srv.fd);
    printf("metrics_http: %ld requests served; closing\n", atomic_load(&requests));
    cache_close(cache);
    return ok ? 0 : 1;
}
