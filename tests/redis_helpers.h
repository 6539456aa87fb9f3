/* Helpers for tests that run against the throwaway redis-server of tests/redis.sh:
 * its address from the environment, a raw hiredis client for checks, child
 * processes. */
#ifndef NKC_REDIS_HELPERS_H
#define NKC_REDIS_HELPERS_H

#include "helpers.h"
#include "internal.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>

static inline const char *redis_url(void)
{
    const char *u = getenv("NKC_REDIS_URL");
    cr_assert_not_null(u, "NKC_REDIS_URL is not set: run this test through tests/redis.sh");
    return u;
}

static inline int redis_port(void) { return atoi(getenv("NKC_REDIS_PORT")); }
/* The server's pid: tests/redis.sh's pid file, which a test that restarts the
 * server rewrites, else the environment. */
static inline pid_t redis_pid(void)
{
    const char *dir = getenv("NKC_REDIS_DIR");
    char path[512];
    int pid = 0;
    snprintf(path, sizeof(path), "%s/pid", dir ? dir : "/nonexistent");
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)(pid ? pid : atoi(getenv("NKC_REDIS_PID")));
}

/* A raw connection for assertions (never the library's). */
static inline redisContext *raw_connect(void)
{
    struct timeval tv = {2, 0};
    redisContext *r = redisConnectWithTimeout("127.0.0.1", redis_port(), tv);
    cr_assert(r && !r->err, "raw connect: %s", r ? r->errstr : "oom");
    return r;
}

/* GET of a binary key; returns a new string (NULL for nil); *len its length. */
static inline char *raw_get(redisContext *r, const void *key, size_t klen, size_t *len)
{
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, klen};
    redisReply *rep = redisCommandArgv(r, 2, argv, lens);
    cr_assert_not_null(rep);
    char *out = NULL;
    if (rep->type == REDIS_REPLY_STRING) {
        out = malloc(rep->len + 1);
        memcpy(out, rep->str, rep->len);
        out[rep->len] = '\0';
        *len = rep->len;
    }
    freeReplyObject(rep);
    return out;
}

static inline long long raw_int(redisContext *r, const char *fmt, const char *arg)
{
    redisReply *rep = redisCommand(r, fmt, arg);
    cr_assert_not_null(rep);
    long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -99;
    freeReplyObject(rep);
    return v;
}

static inline void raw_ok(redisContext *r, const char *cmd)
{
    redisReply *rep = redisCommand(r, cmd);
    cr_assert(rep && rep->type != REDIS_REPLY_ERROR, "%s: %s", cmd, rep ? rep->str : "no reply");
    freeReplyObject(rep);
}

/* A cache on the test server with prefix and loader. */
static inline cache_config_t *redis_config(const char *prefix, struct fake_db *db)
{
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "l2.url", redis_url());
    cfg_set(cfg, "l2.key_prefix", prefix);
    cfg_set(cfg, "ttl_jitter", "0");
    if (db)
        cache_config_set_loader(cfg, fake_loader, db);
    return cfg;
}

/* redis_config, plus deadlines short enough that a stopped or killed server fails
 * calls quickly (100 ms a round trip, 200 ms to connect). */
static inline cache_config_t *redis_config_fast(const char *prefix, struct fake_db *db)
{
    cache_config_t *cfg = redis_config(prefix, db);
    cfg_set(cfg, "l2.timeout_ms", "100");
    cfg_set(cfg, "l2.connect_timeout_ms", "200");
    return cfg;
}

/* Opens a cache on cfg and frees cfg. */
static inline cache_t *open_consuming(cache_config_t *cfg)
{
    cache_t *c = open_or_die(cfg);
    cache_config_free(cfg);
    return c;
}

/* Runs the peer program (tests/tools/nkc_peer.c) on the test server: a write from
 * another process, spawned with fork + exec so it is safe while this process runs
 * threads. Returns its exit status. */
static inline int peer_ttl(const char *prefix, const char *op, const char *key,
                           const char *value, const char *ttl_ms)
{
    char *argv[8] = {(char *)NKC_PEER, (char *)redis_url(), (char *)prefix, (char *)op,
                     (char *)key, (char *)value, (char *)ttl_ms, NULL};
    pid_t pid;
    extern char **environ;
    cr_assert_eq(posix_spawn(&pid, NKC_PEER, NULL, NULL, argv, environ), 0, "spawn %s", NKC_PEER);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static inline int peer(const char *prefix, const char *op, const char *key, const char *value)
{
    return peer_ttl(prefix, op, key, value, NULL);
}

/* NKC_TEST_FIXTURE plus `stopped`: a SIGSTOPped server resumed before the close. */
static pid_t stopped __attribute__((unused));
static inline void resume_stopped(void)
{
    if (stopped)
        kill(stopped, SIGCONT);
    stopped = 0;
}
#define NKC_REDIS_FIXTURE() NKC_TEST_FIXTURE(resume_stopped())

static inline double ms_since(int64_t t0_ns) { return (double)(nkc_now_ns() - t0_ns) / 1e6; }

#endif
