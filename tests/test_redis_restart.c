/* kill -9 and restart of redis-server under load: no crash, no wrong value, and L2
 * used again within a second of its return, with the default breaker cooldown.
 * The restarted server replaces the original in tests/redis.sh's pid file, so the
 * script stops it. */
#include "redis_helpers.h"

#include <fcntl.h>
#include <spawn.h>

extern char **environ;

static struct fake_db db;
static cache_t *c;

TestSuite(restart, .timeout = 90);

struct worker {
    pthread_t t;
    int id;
    _Atomic int *stop;
    _Atomic int64_t *last_l2_ok_ns; /* when a write last reached Redis */
    int wrong;
    long ops;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char key[32], buf[64], want[64];
    unsigned seed = (unsigned)w->id * 7919u;
    while (!atomic_load(w->stop)) {
        int k = rand_r(&seed) % 200;
        snprintf(key, sizeof(key), "k%d", k);
        if (rand_r(&seed) % 4 == 0) {
            snprintf(want, sizeof(want), "s:%s", key);
            if (cache_set(c, key, strlen(key), want, strlen(want), 0) == CACHE_OK)
                atomic_store(w->last_l2_ok_ns, nkc_now_ns());
        } else if (get_str(c, key, buf, sizeof(buf)) == CACHE_OK) {
            char loaded[64], set[64];
            snprintf(loaded, sizeof(loaded), "v:%s:0", key);
            snprintf(set, sizeof(set), "s:%s", key);
            w->wrong += strcmp(buf, loaded) != 0 && strcmp(buf, set) != 0;
        }
        w->ops++;
    }
    return NULL;
}

static pid_t start_redis(int port, const char *dir)
{
    char portarg[16];
    snprintf(portarg, sizeof(portarg), "%d", port);
    char *argv[] = {"redis-server", "--port", portarg, "--bind", "127.0.0.1", "--dir",
                    (char *)dir,    "--save", "",      "--appendonly", "no", NULL};
    char log[512];
    snprintf(log, sizeof(log), "%s/redis.log", dir); /* tests/redis.sh shows it on failure */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    cr_assert_eq(posix_spawnp(&pid, "redis-server", &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    char path[512];
    snprintf(path, sizeof(path), "%s/pid", dir);
    FILE *f = fopen(path, "w");
    if (f) { /* tests/redis.sh stops the server named here */
        fprintf(f, "%d\n", (int)pid);
        fclose(f);
    }
    return pid;
}

/* Kills the server and waits until its process is gone (and its port free). */
static void kill_redis(void)
{
    pid_t pid = redis_pid();
    cr_assert_eq(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 500 && kill(pid, 0) == 0; i++)
        usleep(10 * 1000);
}

static int answers(void)
{
    struct timeval tv = {0, 200000};
    redisContext *r = redisConnectWithTimeout("127.0.0.1", redis_port(), tv);
    int ok = 0;
    if (r && !r->err) {
        redisReply *rep = redisCommand(r, "PING");
        ok = rep && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
    }
    redisFree(r);
    return ok;
}

/* Starts the server again on the same port and waits until it answers; retries
 * when a start fails (on a loaded machine the old socket can linger briefly). */
static pid_t restart_redis(const char *dir)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        pid_t pid = start_redis(redis_port(), dir);
        for (int i = 0; i < 150; i++) { /* 3 s */
            if (answers())
                return pid;
            if (kill(pid, 0) != 0 || waitpid(pid, NULL, WNOHANG) == pid)
                break; /* it exited: try again */
            usleep(20 * 1000);
        }
    }
    cr_assert_fail("the restarted redis-server did not answer");
    return -1;
}

Test(restart, kill_9_and_restart_under_load)
{
    const char *dir = getenv("NKC_REDIS_DIR");
    cr_assert_not_null(dir);
    cache_config_t *cfg = redis_config_fast("restart:", &db);
    c = open_or_die(cfg); /* the default l2.breaker.cooldown_ms: 30 s */
    cache_config_free(cfg);
    _Atomic int stop = 0;
    _Atomic int64_t last_ok = 0;
    enum { T = 4 };
    struct worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){.id = i + 1, .stop = &stop, .last_l2_ok_ns = &last_ok};
        pthread_create(&w[i].t, NULL, worker_main, &w[i]);
    }
    usleep(300 * 1000);
    kill_redis();
    usleep(700 * 1000);
    long long trips = stat_of(c, "l2.breaker_trips");
    pid_t again = restart_redis(dir);
    int64_t t_back = nkc_now_ns();
    int64_t deadline = t_back + 3000000000LL;
    while (atomic_load(&last_ok) <= t_back && nkc_now_ns() < deadline)
        usleep(10 * 1000);
    double back_ms = (double)(atomic_load(&last_ok) - t_back) / 1e6;
    atomic_store(&stop, 1);
    long ops = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(w[i].t, NULL);
        cr_assert_eq(w[i].wrong, 0, "a read returned another key's or a made-up value");
        ops += w[i].ops;
    }
    cr_assert(trips >= 1, "the breaker opened while Redis was gone");
    cr_assert(atomic_load(&last_ok) > t_back, "L2 never used again");
    cr_assert(back_ms < 1000, "L2 used again %.0f ms after Redis returned", back_ms);
    cr_assert(ops > 100);
    cache_close(c);
    c = NULL;
    (void)again;
}

Test(restart, l1_copies_do_not_outlive_a_restart)
{
    const char *dir = getenv("NKC_REDIS_DIR");
    cache_config_t *cfg = redis_config_fast("rt:", &db);
    cfg_set(cfg, "l1.ttl_ms", "300000");
    c = open_consuming(cfg);
    char buf[64];
    cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    kill_redis();
    restart_redis(dir);
    redisContext *r = raw_connect();
    redisReply *rep = redisCommand(r, "SET rt:k Vafter-restart");
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    redisFree(r);
    int64_t t0 = nkc_now_ns();
    do {
        get_str(c, "k", buf, sizeof(buf));
        if (strcmp(buf, "after-restart") == 0)
            break;
        usleep(10 * 1000);
    } while (ms_since(t0) < 2000);
    cr_assert_str_eq(buf, "after-restart", "the L1 copy from the old instance was served");
    cache_close(c);
    c = NULL;
}
