/*
 * The Redis modes' shared pieces (redis_base.h): the server they measure against
 * (given, or a throwaway redis-server this process starts and stops), raw hiredis
 * connections, cleaning the run's key prefix, the simulated database, the
 * per-operation timing loop, the --repeat rounds and the common report parts.
 */
#include "redis_base.h"

#include "config.h" /* nkc_url_parse: the library's own l2.url parser, for the baselines */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define PORT_FIRST 20000 /* below Linux's ephemeral range, as tests/redis.sh */
#define PORT_SPAN 12000
#define START_TRIES 20
#define PREFILL_BATCH 1000
#define RKEY_MAX 192      /* prefix (< 128) + key (< 64) */
#define RVALUE_MAX (NKB_VALUE_MAX + 1) /* envelope byte + the largest value */

static const char skip_reason[] =
    "Redis modes skipped: no redis-server (install redis-server or pass --redis URL)";

/* ---------------------------------------------------------------- small things */

/* Runs one command; returns its reply, or NULL (message on stderr) on an I/O error
 * or an error reply. */
static redisReply *command(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *rep = redisCommandArgv(c, argc, argv, lens);

    if (rep == NULL) {
        fprintf(stderr, "nakkucache-bench: redis %s: %s\n", argv[0], c->errstr);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "nakkucache-bench: redis %s: %s\n", argv[0], rep->str);
        freeReplyObject(rep);
        rep = NULL;
    }
    return rep;
}

static int command_ok(redisContext *c, int argc, const char **argv)
{
    redisReply *rep = command(c, argc, argv, NULL);

    freeReplyObject(rep);
    return rep != NULL ? 0 : -1;
}

/* Prints doc on stdout and releases it. */
static void rjson_print(json_t *doc)
{
    if (doc == NULL || json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0)
        fprintf(stderr, "nakkucache-bench: cannot render JSON\n");
    printf("\n");
    json_decref(doc);
}

/* ---------------------------------------------------------------- connections */

static int handshake(redisContext *c, const struct nkc_url *u)
{
    char db[16];
    const char *auth[] = {"AUTH", u->user ? u->user : u->password, u->password};
    const char *select[] = {"SELECT", db};

    snprintf(db, sizeof db, "%d", u->db);
    if (u->password != NULL && command_ok(c, u->user ? 3 : 2, auth) != 0)
        return -1;
    if (u->db != 0 && command_ok(c, 2, select) != 0)
        return -1;
    return 0;
}

/* Connects to the parsed url with timeout tv (for connecting and for each reply). */
static redisContext *connect_url(const struct nkc_url *u, struct timeval tv, int quiet)
{
    redisContext *c = u->path ? redisConnectUnixWithTimeout(u->path, tv)
                              : redisConnectWithTimeout(u->host, u->port, tv);

    if (c == NULL || c->err) {
        if (!quiet && u->path != NULL)
            fprintf(stderr, "nakkucache-bench: cannot connect to Redis at %s: %s\n", u->path,
                    c ? c->errstr : "out of memory");
        else if (!quiet)
            fprintf(stderr, "nakkucache-bench: cannot connect to Redis at %s:%d: %s\n",
                    u->host, u->port, c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK || handshake(c, u) != 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* A new connection to r (AUTH and SELECT as the URL says), or NULL after a message
 * on stderr. */
static redisContext *redis_connect(const nkb_redis_t *r)
{
    struct nkc_url u;
    struct timeval tv = {5, 0};
    char err[256];
    redisContext *c;

    if (nkc_url_parse(r->url, &u, err, sizeof err) != CACHE_OK) {
        fprintf(stderr, "nakkucache-bench: %s\n", err);
        return NULL;
    }
    c = connect_url(&u, tv, 0);
    nkc_url_free(&u);
    return c;
}

/* The server's version from INFO server into r->version. */
static void read_version(nkb_redis_t *r, redisContext *c)
{
    const char *argv[] = {"INFO", "server"};
    redisReply *rep = command(c, 2, argv, NULL);
    const char *v = rep && rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "redis_version:")
                                                           : NULL;

    snprintf(r->version, sizeof r->version, "?");
    if (v != NULL)
        snprintf(r->version, sizeof r->version, "%.*s", (int)strcspn(v + 14, "\r\n"), v + 14);
    freeReplyObject(rep);
}

/* Parses r->url into r->where, connects, PINGs and reads the version. */
static int check_server(nkb_redis_t *r)
{
    const char *ping[] = {"PING"};
    struct nkc_url u;
    char err[256];
    redisContext *c;

    if (nkc_url_parse(r->url, &u, err, sizeof err) != CACHE_OK) {
        fprintf(stderr, "nakkucache-bench: %s\n", err);
        return -1;
    }
    if (u.path != NULL)
        snprintf(r->where, sizeof r->where, "unix:%s db %d", u.path, u.db);
    else
        snprintf(r->where, sizeof r->where, "%s:%d db %d", u.host, u.port, u.db);
    nkc_url_free(&u);
    if ((c = redis_connect(r)) == NULL || command_ok(c, 1, ping) != 0) {
        redisFree(c);
        return -1;
    }
    read_version(r, c);
    redisFree(c);
    return 0;
}

/* ---------------------------------------------------------------- a throwaway server */

/* The throwaway server, for the exit and signal handlers: whatever ends the bench
 * (exit() on an error path, Ctrl-C, SIGTERM) stops it and removes its directory. */
static nkb_redis_t *running;
static char sig_files[3][320]; /* its log, a dump it might write, its directory */
static const int fatal_signals[] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction old_actions[sizeof fatal_signals / sizeof fatal_signals[0]];

void nkb_redis_release(nkb_redis_t *r);

static pid_t owner; /* the process that started it: forked children leave it alone */

static void stop_at_exit(void)
{
    if (running != NULL && getpid() == owner)
        nkb_redis_release(running);
}

/* Async-signal-safe calls only: then the signal's default action. */
static void on_fatal_signal(int sig)
{
    if (running != NULL && getpid() == owner) {
        if (running->pid > 0) {
            kill(running->pid, SIGTERM);
            waitpid(running->pid, NULL, 0);
        }
        unlink(sig_files[0]);
        unlink(sig_files[1]);
        rmdir(sig_files[2]);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Arms (r) or disarms (NULL) the handlers for the throwaway server r. */
static int guard(nkb_redis_t *r)
{
    static int registered;
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
        if (r != NULL && running == NULL)
            sigaction(fatal_signals[i], &sa, &old_actions[i]);
        else if (r == NULL && running != NULL)
            sigaction(fatal_signals[i], &old_actions[i], NULL);
    }
    if (r != NULL) {
        snprintf(sig_files[0], sizeof sig_files[0], "%s/redis.log", r->dir);
        snprintf(sig_files[1], sizeof sig_files[1], "%s/dump.rdb", r->dir);
        snprintf(sig_files[2], sizeof sig_files[2], "%s", r->dir);
    }
    running = r;
    owner = getpid();
    if (registered || r == NULL)
        return 0;
    registered = 1;
    return atexit(stop_at_exit);
}

static int port_answers(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int taken = c != NULL && c->err == 0;

    redisFree(c);
    return taken;
}

/* Starts program on port in r->dir (its output into redis.log there). */
static int spawn(nkb_redis_t *r, const char *program, int port)
{
    char port_s[16], log[300];
    char *argv[] = {(char *)program, "--port", port_s, "--bind", "127.0.0.1", "--dir", r->dir,
                    "--save", "", "--appendonly", "no", "--daemonize", "no", NULL};
    pid_t parent = getpid();
    int log_fd, null_fd;

    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0 || (r->pid = fork()) < 0) {
        fprintf(stderr, "nakkucache-bench: cannot start %s: %s\n", program, strerror(errno));
        r->pid = 0;
    } else if (r->pid == 0) { /* the child: async-signal-safe calls only */
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the server dies with the bench */
#endif
        if (getppid() != parent || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 ||
            dup2(log_fd, 2) < 0)
            _exit(127);
        execv(program, argv);
        _exit(127);
    }
    if (log_fd >= 0)
        close(log_fd);
    if (null_fd >= 0)
        close(null_fd);
    return r->pid > 0 ? 0 : -1;
}

/* Waits up to 10 s for the server to answer PING. Returns 1 when it does, 0 when
 * it exited (the port was taken) or never answered (then it is killed). */
static int wait_ready(nkb_redis_t *r, int port)
{
    for (int i = 0; i < 100; i++) {
        int status;

        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0;
            return 0;
        }
        snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", port);
        if (port_answers(port)) {
            struct timeval tv = {1, 0};
            struct nkc_url u = {.host = "127.0.0.1", .port = port};
            redisContext *c = connect_url(&u, tv, 1);
            const char *ping[] = {"PING"};
            int up = c != NULL && command_ok(c, 1, ping) == 0;

            redisFree(c);
            if (up)
                return 1;
        }
        nkb_sleep_ns(100000000u);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
    return 0;
}

/* The last 2 KiB of the throwaway server's log on stderr (the log goes with it). */
static void show_log_tail(void)
{
    char buf[2048];
    FILE *f = fopen(sig_files[0], "r");
    size_t n = 0;

    if (f != NULL) {
        if (fseek(f, -(long)sizeof buf, SEEK_END) != 0)
            rewind(f);
        n = fread(buf, 1, sizeof buf, f);
        fclose(f);
    }
    fwrite(buf, 1, n, stderr);
}

static int start_server(nkb_redis_t *r, const char *program)
{
    const char *tmp = getenv("TMPDIR");
    uint64_t rng = nkb_now_ns() ^ ((uint64_t)getpid() << 32);

    snprintf(r->dir, sizeof r->dir, "%s/nkb-redis.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(r->dir) == NULL) {
        fprintf(stderr, "nakkucache-bench: mkdtemp %s: %s\n", r->dir, strerror(errno));
        r->dir[0] = '\0';
        return -1;
    }
    if (guard(r) != 0)
        return -1;
    for (int attempt = 0; attempt < START_TRIES; attempt++) {
        int port = PORT_FIRST + (int)(nkb_rng_next(&rng) % PORT_SPAN);

        if (port == 6379 || port_answers(port))
            continue;
        if (spawn(r, program, port) != 0)
            return -1;
        if (wait_ready(r, port))
            return 0;
    }
    fprintf(stderr, "nakkucache-bench: could not start %s on a free loopback port after %d "
                    "tries; the end of its log:\n", program, START_TRIES);
    show_log_tail();
    return -1;
}

void nkb_redis_print_skipped(const nkb_opts_t *o, const char *mode)
{
    if (o->json) {
        fprintf(stderr, "nakkucache-bench %s: %s\n", mode, skip_reason);
        rjson_print(json_pack("{s:s, s:s, s:s}", "mode", mode, "status", "skipped",
                                  "reason", skip_reason));
    } else if (o->csv) {
        fprintf(stderr, "nakkucache-bench %s: %s\n", mode, skip_reason);
    } else {
        printf("%s\n", skip_reason);
    }
    fflush(stdout);
}

int nkb_redis_acquire(nkb_redis_t *r, const nkb_opts_t *o, const char *mode)
{
    const char *env = getenv("NKC_REDIS_URL"), *server = getenv("REDIS_SERVER");
    char program[4096];

    memset(r, 0, sizeof *r);
    if (o->redis_url != NULL || (env != NULL && *env != '\0')) {
        r->source = o->redis_url != NULL ? "--redis" : "NKC_REDIS_URL";
        snprintf(r->url, sizeof r->url, "%s", o->redis_url != NULL ? o->redis_url : env);
    } else if (nkb_find_program(server && *server ? server : "redis-server", program,
                            sizeof program) == 0) {
        r->source = "a throwaway redis-server started by the bench";
        fprintf(stderr, "nakkucache-bench %s: starting %s\n", mode, program);
        if (start_server(r, program) != 0)
            return -1;
    } else {
        return 0;
    }
    return check_server(r) == 0 ? 1 : -1;
}

void nkb_redis_release(nkb_redis_t *r)
{
    if (r->pid > 0) {
        pid_t gone = 0;

        kill(r->pid, SIGTERM);
        for (int i = 0; i < 50 && (gone = waitpid(r->pid, NULL, WNOHANG)) == 0; i++)
            nkb_sleep_ns(100000000u);
        if (gone == 0) { /* still there after 5 s */
            kill(r->pid, SIGKILL);
            waitpid(r->pid, NULL, 0);
        }
        r->pid = 0;
    }
    if (r->dir[0] != '\0') {
        unlink(sig_files[0]);
        unlink(sig_files[1]);
        if (rmdir(r->dir) != 0)
            fprintf(stderr, "nakkucache-bench: left %s behind: %s\n", r->dir, strerror(errno));
        r->dir[0] = '\0';
    }
    if (running == r)
        guard(NULL);
}

/* ---------------------------------------------------------------- keys in Redis */

/* The glob pattern matching every key under prefix. */
static void prefix_pattern(char *out, size_t len, const char *prefix)
{
    size_t n = 0;

    for (const char *p = prefix; *p != '\0' && n + 3 < len; p++) {
        if (strchr("*?[]\\", *p) != NULL)
            out[n++] = '\\';
        out[n++] = *p;
    }
    out[n++] = '*';
    out[n] = '\0';
}

/* UNLINKs the keys of one SCAN reply. */
static int unlink_keys(redisContext *c, const redisReply *keys)
{
    const char **argv = malloc((keys->elements + 1) * sizeof *argv);
    size_t *lens = malloc((keys->elements + 1) * sizeof *lens);
    redisReply *rep = NULL;

    if (argv != NULL && lens != NULL) {
        argv[0] = "UNLINK";
        lens[0] = 6;
        for (size_t i = 0; i < keys->elements; i++) {
            argv[i + 1] = keys->element[i]->str;
            lens[i + 1] = keys->element[i]->len;
        }
        rep = command(c, (int)keys->elements + 1, argv, lens);
    }
    freeReplyObject(rep);
    free(argv);
    free(lens);
    return rep != NULL ? 0 : -1;
}

int nkb_redis_unlink_prefix(redisContext *c, const char *prefix)
{
    char pattern[300], cursor[32] = "0";
    int rc = 0;

    prefix_pattern(pattern, sizeof pattern, prefix);
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        redisReply *rep = command(c, 6, argv, NULL);

        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        if (rep->element[1]->elements > 0)
            rc = unlink_keys(c, rep->element[1]);
        freeReplyObject(rep);
    } while (rc == 0 && strcmp(cursor, "0") != 0);
    return rc;
}

/* prefix + key i into buf; returns its length. */
static size_t prefixed_key(char *buf, const char *prefix, size_t prefix_len,
                           const nkb_keys_t *keys, uint32_t i)
{
    memcpy(buf, prefix, prefix_len);
    memcpy(buf + prefix_len, nkb_key(keys, i), keys->klen);
    return prefix_len + keys->klen;
}

/* Reads the replies of n pipelined SETs. */
static int read_replies(redisContext *c, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        void *v = NULL;
        int ok = redisGetReply(c, &v) == REDIS_OK &&
                 ((redisReply *)v)->type == REDIS_REPLY_STATUS;

        freeReplyObject(v);
        if (!ok) {
            fprintf(stderr, "nakkucache-bench: prefill SET failed: %s\n",
                    c->err ? c->errstr : "error reply");
            return -1;
        }
    }
    return 0;
}

int nkb_redis_prefill(redisContext *c, const char *prefix, const nkb_keys_t *keys,
                      size_t value_size, const char *envelope, uint64_t ttl_ms)
{
    char key[RKEY_MAX], ttl[24];
    unsigned char *val = malloc(RVALUE_MAX);
    const size_t env_len = strlen(envelope), prefix_len = strlen(prefix);
    const char *argv[] = {"SET", key, (const char *)val, "PX", ttl};
    size_t lens[] = {3, 0, env_len + value_size, 2, 0};
    uint32_t queued = 0;
    int rc = val == NULL || prefix_len + keys->klen > RKEY_MAX ? -1 : 0;

    lens[4] = (size_t)snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    for (uint32_t i = 0; rc == 0 && i < keys->n; i++) {
        lens[1] = prefixed_key(key, prefix, prefix_len, keys, i);
        memcpy(val, envelope, env_len);
        nkb_db_value(nkb_key(keys, i), keys->klen, val + env_len, value_size);
        rc = redisAppendCommandArgv(c, 5, argv, lens) == REDIS_OK ? 0 : -1;
        if (rc == 0 && ++queued == PREFILL_BATCH) {
            rc = read_replies(c, queued);
            queued = 0;
        }
    }
    if (rc == 0)
        rc = read_replies(c, queued);
    free(val);
    return rc;
}

/* ---------------------------------------------------------------- the two sides */

/* A write: the database first, then the invalidation (the documented write path);
 * or, with write_set, cache_set of the key's value (what a write costs the cache). */
static int lib_write(const nkb_lib_setup_t *lib, cache_t *c, uint32_t k)
{
    const char *key = nkb_key(lib->keys, k);
    unsigned char val[NKB_VALUE_MAX];

    if (lib->write_set) {
        nkb_db_value(key, lib->keys->klen, val, lib->value_size);
        return cache_set(c, key, lib->keys->klen, val, lib->value_size, 0) == CACHE_OK
                   ? NKB_SRC_WRITE
                   : NKB_SRC_ERROR;
    }
    if (nkb_db_update(lib->db, key, lib->keys->klen) != 0)
        return NKB_SRC_ERROR;
    return cache_del(c, key, lib->keys->klen) == CACHE_OK ? NKB_SRC_WRITE : NKB_SRC_ERROR;
}

static int lib_get(void *shared, void *mine, uint32_t e)
{
    const nkb_lib_setup_t *lib = shared;
    cache_t *c = mine;
    cache_get_info_t info = {.struct_size = sizeof info};
    cache_value_t *v;
    const uint32_t k = NKB_SEQ_KEY(e);
    int src;

    if (e & NKB_SEQ_WRITE)
        return lib_write(lib, c, k);
    if (cache_get_ex(c, nkb_key(lib->keys, k), lib->keys->klen, &v, &info) != CACHE_OK)
        return NKB_SRC_ERROR;
    src = info.tier >= CACHE_TIER_L1 && info.tier <= CACHE_TIER_LOADER ? (int)info.tier
                                                                        : NKB_SRC_ERROR;
    if (cache_value_len(v) > 0) { /* touch the value, as a caller would */
        volatile unsigned char first = *(const unsigned char *)cache_value_data(v);
        (void)first;
    }
    cache_value_release(v);
    return src;
}

static cache_t *open_cache(const nkb_lib_setup_t *lib, unsigned pool)
{
    char pool_s[16], err[256];
    cache_config_t *cfg = cache_config_new();
    cache_t *c = NULL;
    int ok = cfg != NULL;

    snprintf(pool_s, sizeof pool_s, "%u", pool);
    ok = ok && (lib->redis == NULL ||
                (cache_config_set(cfg, "l2.url", lib->redis->url, err, sizeof err) == CACHE_OK &&
                 cache_config_set(cfg, "l2.key_prefix", lib->prefix, err, sizeof err) ==
                     CACHE_OK &&
                 cache_config_set(cfg, "l2.pool_size", pool_s, err, sizeof err) == CACHE_OK));
    for (size_t i = 0; ok && i < lib->n_props; i++)
        ok = cache_config_set(cfg, lib->props[i][0], lib->props[i][1], err, sizeof err) ==
             CACHE_OK;
    if (ok) {
        cache_config_set_loader(cfg, lib->loader, lib->udata);
        ok = cache_open(&c, cfg, err, sizeof err) == CACHE_OK;
    }
    if (!ok)
        fprintf(stderr, "nakkucache-bench: cannot open the cache: %s\n",
                cfg ? err : "out of memory");
    cache_config_free(cfg);
    return c;
}

static uint64_t stat_of(json_t *stats, const char *group, const char *name)
{
    json_t *v = json_object_get(json_object_get(stats, group), name);

    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

/* The counters of the library (cache_stats_json's "group.name") that the modes
 * report, as {"group_name": n}. */
static const char *const counters[][2] = {
    {"l1", "hits"}, {"l1", "entries"}, {"l2", "hits"}, {"l2", "failures"},
    {"l2", "timeouts"}, {"l2", "breaker_trips"}, {"loader", "calls"}, {"load", "coalesced"},
    {"refresh", "scheduled"}, {"refresh", "done"}, {"refresh", "skipped"},
    {"stale", "while_revalidate"}, {"loader", "timeouts"}};

static json_t *cache_counters(cache_t *c)
{
    char *text = cache_stats_json(c);
    json_t *s = text ? json_loads(text, 0, NULL) : NULL, *out = json_object();

    for (size_t i = 0; out != NULL && i < sizeof counters / sizeof counters[0]; i++) {
        char name[64];

        snprintf(name, sizeof name, "%s_%s", counters[i][0], counters[i][1]);
        json_object_set_new(out, name,
                            json_integer((json_int_t)stat_of(s, counters[i][0], counters[i][1])));
    }
    json_decref(s);
    cache_free(text);
    return out;
}

uint64_t nkb_rcounter(const nkb_rrow_t *row, const char *name)
{
    json_t *v = json_object_get(row->extra, name);

    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

/* Every key into c with cache_set: the steady state of a cache without L2. */
static int prefill_l1(const nkb_lib_setup_t *lib, cache_t *c)
{
    unsigned char *val = malloc(lib->value_size + 1);
    int rc = val != NULL ? 0 : -1;

    for (uint32_t i = 0; rc == 0 && i < lib->keys->n; i++) {
        nkb_db_value(nkb_key(lib->keys, i), lib->keys->klen, val, lib->value_size);
        if (cache_set(c, nkb_key(lib->keys, i), lib->keys->klen, val, lib->value_size, 0) !=
            CACHE_OK) {
            fprintf(stderr, "nakkucache-bench: prefill cache_set failed\n");
            rc = -1;
        }
    }
    free(val);
    return rc;
}

int nkb_rmeasure_lib(const nkb_rrun_t *run, const nkb_lib_setup_t *lib, nkb_rrow_t *row)
{
    nkb_rrun_t mine = *run;
    cache_t *c = open_cache(lib, run->threads);
    void **per = calloc(run->threads, sizeof *per);
    int rc = -1;

    if (c != NULL && per != NULL && (!lib->prefill_l1 || prefill_l1(lib, c) == 0)) {
        for (unsigned t = 0; t < run->threads; t++)
            per[t] = c;
        mine.op = lib_get;
        mine.shared = (void *)lib;
        mine.mine = per;
        rc = nkb_rrun_measure(&mine, row);
        row->extra = cache_counters(c);
    }
    cache_close(c);
    free(per);
    return rc;
}

/* SET key val PX ttl_ms: returns ok on success, NKB_SRC_FATAL when the connection
 * broke, NKB_SRC_ERROR on an error reply. */
static int aside_set(const nkb_aside_t *a, redisContext *c, const char *key, size_t klen,
                     const unsigned char *val, size_t vlen, int ok)
{
    char ttl[24];
    const char *argv[] = {"SET", key, (const char *)val, "PX", ttl};
    size_t lens[] = {3, klen, vlen, 2, 0};
    redisReply *rep;
    int status;

    lens[4] = (size_t)snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)a->ttl_ms);
    if ((rep = redisCommandArgv(c, 5, argv, lens)) == NULL)
        return NKB_SRC_FATAL;
    status = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    return status ? ok : NKB_SRC_ERROR;
}

/* On a miss: the database, then SET with the TTL. */
static int aside_fill(const nkb_aside_t *a, redisContext *c, uint32_t k, const char *key,
                      size_t klen)
{
    unsigned char val[RVALUE_MAX];

    if (nkb_db_query(a->db, nkb_key(a->keys, k), a->keys->klen, val) != 0)
        return NKB_SRC_ERROR;
    return aside_set(a, c, key, klen, val, a->db->value_size, NKB_SRC_LOADER);
}

/* A write: the database, then DEL; with write_set, a SET of the new value. */
static int aside_write(const nkb_aside_t *a, redisContext *c, uint32_t k, const char *key,
                       size_t klen)
{
    const char *argv[] = {"DEL", key};
    size_t lens[] = {3, klen};
    redisReply *rep;

    if (a->write_set) {
        unsigned char val[RVALUE_MAX];
        size_t env = strlen(a->envelope);

        memcpy(val, a->envelope, env);
        nkb_db_value(nkb_key(a->keys, k), a->keys->klen, val + env, a->value_size);
        return aside_set(a, c, key, klen, val, env + a->value_size, NKB_SRC_WRITE);
    }
    if (nkb_db_update(a->db, nkb_key(a->keys, k), a->keys->klen) != 0)
        return NKB_SRC_ERROR;
    if ((rep = redisCommandArgv(c, 2, argv, lens)) == NULL)
        return NKB_SRC_FATAL;
    freeReplyObject(rep);
    return NKB_SRC_WRITE;
}

static int aside_get(void *shared, void *mine, uint32_t e)
{
    const nkb_aside_t *a = shared;
    redisContext *c = mine;
    const uint32_t k = NKB_SEQ_KEY(e);
    char key[RKEY_MAX];
    size_t klen = prefixed_key(key, a->prefix, a->prefix_len, a->keys, k);
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, klen};
    redisReply *rep;
    int src = NKB_SRC_ERROR;

    if (e & NKB_SEQ_WRITE)
        return aside_write(a, c, k, key, klen);
    if ((rep = redisCommandArgv(c, 2, argv, lens)) == NULL)
        return NKB_SRC_FATAL;
    if (rep->type == REDIS_REPLY_STRING) {
        volatile char first = rep->len > 0 ? rep->str[0] : 0; /* touch the value */
        (void)first;
        src = NKB_SRC_L2;
    } else if (rep->type == REDIS_REPLY_NIL && a->db != NULL)
        src = NKB_SRC_LOADER;
    freeReplyObject(rep);
    return src == NKB_SRC_LOADER ? aside_fill(a, c, k, key, klen) : src;
}

/* Cache-aside without Redis: the same over an in-process mutex map. */
static int map_get(void *shared, void *mine, uint32_t e)
{
    const nkb_aside_t *a = shared;
    const uint32_t k = NKB_SEQ_KEY(e);
    const char *key = nkb_key(a->keys, k);
    unsigned char val[RVALUE_MAX];
    size_t len;

    (void)mine;
    if (e & NKB_SEQ_WRITE) {
        if (nkb_db_update(a->db, key, a->keys->klen) != 0)
            return NKB_SRC_ERROR;
        nkb_lockmap_del(a->map, key, a->keys->klen);
        return NKB_SRC_WRITE;
    }
    if (nkb_lockmap_get_copy(a->map, key, a->keys->klen, val, sizeof val, &len))
        return NKB_SRC_L1;
    if (a->db == NULL || nkb_db_query(a->db, key, a->keys->klen, val) != 0 ||
        nkb_lockmap_put(a->map, key, a->keys->klen, val, a->db->value_size) != 0)
        return NKB_SRC_ERROR;
    return NKB_SRC_LOADER;
}

int nkb_rmeasure_aside(const nkb_rrun_t *run, const nkb_aside_t *aside, nkb_rrow_t *row)
{
    nkb_rrun_t mine = *run;
    void **conns = calloc(run->threads, sizeof *conns); /* each a redisContext */
    unsigned n = 0;
    int rc = -1;

    if (aside->redis == NULL) {
        mine.op = map_get;
        mine.shared = (void *)aside;
        mine.mine = NULL;
        free(conns);
        return nkb_rrun_measure(&mine, row);
    }
    if (aside->prefix_len + aside->keys->klen > RKEY_MAX)
        fprintf(stderr, "nakkucache-bench: key prefix too long\n");
    else
        while (conns != NULL && n < run->threads && (conns[n] = redis_connect(aside->redis)))
            n++;
    if (conns != NULL && n == run->threads) {
        mine.op = aside_get;
        mine.shared = (void *)aside;
        mine.mine = conns;
        rc = nkb_rrun_measure(&mine, row);
    }
    for (unsigned t = 0; t < n; t++)
        redisFree(conns[t]);
    free(conns);
    return rc;
}

/* ---------------------------------------------------------------- reporting */

double nkb_ratio(double num, double den)
{
    return den > 0 ? num / den : -1.0;
}

void nkb_rprint_head(const nkb_rworld_t *w)
{
    const nkb_opts_t *o = &w->o;
    char dist[96];

    printf("workload: %u keys of %zu B (\"key:%%0%zuu\") under \"%s\", %zu B values; %s keys; ",
           o->keys, o->key_size, o->key_size - 4, w->prefix, o->value_size,
           nkb_dist_name(o, dist, sizeof dist));
    if (o->ops)
        printf("%llu operations per thread per point", (unsigned long long)o->ops);
    else if (o->duration_ms == 0) /* stampede: rounds */
        printf("%u rounds per point", o->rounds);
    else
        printf("%llu ms per point", (unsigned long long)o->duration_ms);
    if (o->repeat > 1)
        printf(", median of %u rounds", o->repeat);
    if (w->have_redis)
        printf("\nredis: %s, version %s (%s)\n", w->redis.where, w->redis.version,
               w->redis.source);
    else
        printf("\nredis: none (no --redis, no NKC_REDIS_URL, no redis-server installed): the "
               "library runs L1 + loader only\n");
    printf("machine: %ld CPUs online, 1-min load average %.2f before, %.2f after\n",
           sysconf(_SC_NPROCESSORS_ONLN), w->load_before, w->load_after);
    printf("latency: every operation timed on its own (clock_gettime before and after)\n");
}

void nkb_rprint_latency_head(void)
{
    printf("%7s  %-30s %9s %7s %7s %7s %7s %8s", "threads", "implementation", "ops/s",
           "p50 us", "p90 us", "p99 us", "p999 us", "max us");
}

void nkb_rprint_latency(const nkb_rrow_t *row)
{
    printf("%7u  %-30s %9.0f %7.1f %7.1f %7.1f %7.1f %8.1f", row->threads, row->name,
           row->ops_per_sec, row->p50_ns / 1e3, row->p90_ns / 1e3, row->p99_ns / 1e3,
           row->p999_ns / 1e3, row->max_ns / 1e3);
}

void nkb_rprint_ratio(double r)
{
    if (r < 0)
        printf(" %8s", "-");
    else if (r > 0 && r < 0.01) /* two decimals would print 0.00x: keep 2 significant digits */
        printf(" %7.2gx", r);
    else
        printf(" %7.2fx", r);
}

json_t *nkb_rjson_ratio(double r)
{
    return r < 0 ? json_null() : json_real(r);
}

static json_t *served_json(const nkb_rrow_t *row)
{
    double ops = row->ops ? (double)row->ops : 1.0;

    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:{s:f, s:f, s:f}}", "l1",
                     (json_int_t)row->served[NKB_SRC_L1], "l2",
                     (json_int_t)row->served[NKB_SRC_L2], "loader",
                     (json_int_t)row->served[NKB_SRC_LOADER], "writes",
                     (json_int_t)row->served[NKB_SRC_WRITE], "errors",
                     (json_int_t)row->served[NKB_SRC_ERROR], "ratio", "l1",
                     row->served[NKB_SRC_L1] / ops, "l2", row->served[NKB_SRC_L2] / ops,
                     "loader", row->served[NKB_SRC_LOADER] / ops);
}

static json_t *rrow_json(const nkb_rrow_t *row)
{
    json_t *j = json_pack(
        "{s:i, s:s, s:s, s:b, s:I, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:f, s:o}",
        "threads", (int)row->threads, "impl", row->key, "name", row->name, "failed",
        row->failed, "ops", (json_int_t)row->ops, "ops_per_sec", row->ops_per_sec, "seconds",
        row->seconds, "p50_ns", (json_int_t)row->p50_ns, "p90_ns", (json_int_t)row->p90_ns,
        "p99_ns", (json_int_t)row->p99_ns, "p999_ns", (json_int_t)row->p999_ns, "max_ns",
        (json_int_t)row->max_ns, "served", served_json(row), "db_calls",
        (json_int_t)row->db_calls, "db_calls_per_sec", row->db_per_sec, "db_mean_us",
        row->db_calls ? json_real(row->db_mean_us) : json_null());

    if (j != NULL && row->extra != NULL)
        json_object_set(j, "counters", row->extra);
    return j;
}

static json_t *rjson_doc(const char *mode, const nkb_rworld_t *w)
{
    const nkb_opts_t *o = &w->o;
    char dist[96];
    json_t *workload = json_pack(
        "{s:I, s:I, s:I, s:s, s:f, s:f, s:I, s:I, s:I, s:i, s:s, s:s}", "keys",
        (json_int_t)o->keys, "key_size", (json_int_t)o->key_size, "value_size",
        (json_int_t)o->value_size, "dist", nkb_dist_name(o, dist, sizeof dist), "theta",
        o->theta, "read_ratio", o->read_ratio, "duration_ms",
        (json_int_t)(o->ops ? 0 : o->duration_ms), "ops_per_thread", (json_int_t)o->ops, "seed",
        (json_int_t)o->seed, "repeat", (int)o->repeat, "key_prefix", w->prefix, "latency",
        "each operation timed");
    json_t *redis = w->have_redis ? json_pack("{s:s, s:s, s:s}", "where", w->redis.where,
                                              "version", w->redis.version, "source",
                                              w->redis.source)
                                  : json_null();

    return json_pack("{s:s, s:s, s:o, s:o, s:{s:i, s:f, s:f}}", "mode", mode, "status",
                     "measured", "workload", workload, "redis", redis, "machine", "cpus",
                     (int)sysconf(_SC_NPROCESSORS_ONLN), "load_before", w->load_before,
                     "load_after", w->load_after);
}

/* ---------------------------------------------------------------- a mode's world */

static int world_build(nkb_rworld_t *w, const char *mode)
{
    unsigned most = nkb_opts_max_threads(&w->o);

    snprintf(w->prefix, sizeof w->prefix, "nkb:%ld:%s:", (long)getpid(), mode);
    if (nkb_keys_init(&w->keys, &w->o) != 0)
        return -1;
    for (unsigned t = 0; t < most; t++) {
        if ((w->seqs[t] = nkb_seq_new(&w->o, t, NKB_RSEQ_LEN)) == NULL) {
            fprintf(stderr, "nakkucache-bench: cannot build key sequences\n");
            return -1;
        }
    }
    if (!w->have_redis)
        return 0;
    if ((w->admin = redis_connect(&w->redis)) == NULL)
        return -1;
    return nkb_redis_unlink_prefix(w->admin, w->prefix);
}

static void rworld_close(nkb_rworld_t *w)
{
    if (w->admin != NULL && nkb_redis_unlink_prefix(w->admin, w->prefix) != 0)
        fprintf(stderr, "nakkucache-bench: could not delete the keys under %s\n", w->prefix);
    redisFree(w->admin);
    w->admin = NULL;
    for (unsigned t = 0; t < NKB_MAX_THREADS; t++) {
        free(w->seqs[t]);
        w->seqs[t] = NULL;
    }
    nkb_keys_free(&w->keys);
    nkb_db_close(&w->db);
    nkb_redis_release(&w->redis);
    for (size_t i = 0; i < sizeof w->rows / sizeof w->rows[0]; i++)
        nkb_rrow_clear(&w->rows[i]);
}

const nkb_rrow_t *nkb_rbase(const nkb_rmode_t *m, const nkb_rworld_t *w, size_t i)
{
    return &w->rows[i - i % (size_t)m->n_impls + (size_t)m->base_impl];
}

/* The whole run as one JSON document (for --json, --csv and --plot). */
static json_t *rmode_doc(const nkb_rmode_t *m, nkb_rworld_t *w)
{
    json_t *doc = rjson_doc(m->name, w), *rows = json_array();

    if (m->workload_json != NULL)
        json_object_update_new(json_object_get(doc, "workload"), m->workload_json(w));
    for (size_t i = 0; i < w->o.n_points * (size_t)m->n_impls; i++) {
        const nkb_rrow_t *base = nkb_rbase(m, w, i);
        json_t *row = rrow_json(&w->rows[i]);

        json_object_set_new(row, "vs_baseline",
                            nkb_rjson_ratio(nkb_ratio(w->rows[i].ops_per_sec, base->ops_per_sec)));
        if (m->row_json != NULL)
            m->row_json(w, &w->rows[i], base, row);
        json_array_append_new(rows, row);
    }
    json_object_set_new(doc, "rows", rows);
    return doc;
}

static int rmode_run(const nkb_rmode_t *m, nkb_rworld_t *w, int argc, char **argv)
{
    int rc = nkb_opts_parse(&w->o, argc, argv), code = 1;

    w->load_before = nkb_loadavg();
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    rc = nkb_redis_acquire(&w->redis, &w->o, m->name);
    w->have_redis = rc == 1;
    if (rc == 0 && !m->redis_optional) {
        nkb_redis_print_skipped(&w->o, m->name);
        code = 0;
    } else if (rc == 0 && w->o.tier_l2 && !w->o.tier_l1) {
        fprintf(stderr, "nakkucache-bench %s: --tiers l2 needs Redis: pass --redis URL or "
                        "install redis-server\n", m->name);
        code = 2;
    } else if (rc >= 0) {
        if (rc == 0) {
            fprintf(stderr, "nakkucache-bench %s: no Redis (no --redis, no NKC_REDIS_URL, no "
                            "redis-server in PATH): running the library as L1 + loader only, "
                            "against cache-aside on an in-process mutex map\n", m->name);
            w->o.tier_l2 = 0;
        }
        if (world_build(w, m->name) == 0 && (!m->setup || m->setup(w) == 0) &&
            nkb_rmeasure_rounds(m, w) == 0) {
            w->load_after = nkb_loadavg();
            if (!w->o.json && !w->o.csv)
                m->print_table(w);
            fflush(stdout);
            code = 0;
            if ((w->o.json || w->o.csv || w->o.plot) && nkb_output(&w->o, rmode_doc(m, w)) != 0)
                code = 1;
        }
    }
    rworld_close(w);
    return code;
}

int nkb_rmode_main(const nkb_rmode_t *m, int argc, char **argv)
{
    nkb_rworld_t *w = calloc(1, m->size);
    int code;

    if (w == NULL)
        return 1;
    nkb_opts_init(&w->o);
    w->o.keys = m->keys;
    w->o.duration_ms = m->duration_ms;
    w->o.dist = m->dist;
    w->o.loader_us = m->loader_us;
    w->o.warmup_ms = m->warmup_ms;
    if (m->threads[0] != 0) {
        for (w->o.n_points = 0; w->o.n_points < 4 && m->threads[w->o.n_points] != 0;)
            w->o.n_points++;
        memcpy(w->o.threads, m->threads, w->o.n_points * sizeof m->threads[0]);
    }
    code = rmode_run(m, w, argc, argv);
    free(w);
    return code;
}
