/* L1 + L2 + loader against a real redis-server (tests/redis.sh starts it): values
 * shared across processes, TTL propagation, prefixes, binary keys, the stale-fill
 * race (with a control run that shows it bites), the cross-process stampede. */
#include "redis_helpers.h"

NKC_TEST_FIXTURE((void)0)
TestSuite(redis, .init = setup, .fini = teardown, .timeout = 60);

static cache_t *open_prefix(const char *prefix, struct fake_db *d)
{
    cache_config_t *cfg = redis_config(prefix, d);
    cache_t *cc = open_or_die(cfg);
    cache_config_free(cfg);
    return cc;
}

static cache_tier_t get_tier(cache_t *cc, const char *key, char *buf, size_t cap, cache_err_t *err)
{
    cache_value_t *v = NULL;
    cache_get_info_t info = {.struct_size = sizeof(info)};
    *err = cache_get_ex(cc, key, strlen(key), &v, &info);
    buf[0] = '\0';
    if (*err == CACHE_OK) {
        snprintf(buf, cap, "%.*s", (int)cache_value_len(v), (const char *)cache_value_data(v));
        cache_value_release(v);
    }
    return info.tier;
}

Test(redis, processes_share_values_through_l2)
{
    cr_assert_eq(peer("share:", "set", "product:7", "from the other process"), 0);
    c = open_prefix("share:", &db);
    char buf[64];
    cache_err_t err;
    cr_assert_eq(get_tier(c, "product:7", buf, sizeof(buf), &err), CACHE_TIER_L2);
    cr_assert_eq(err, CACHE_OK);
    cr_assert_str_eq(buf, "from the other process");
    cr_assert_eq(get_tier(c, "product:7", buf, sizeof(buf), &err), CACHE_TIER_L1);
    cr_assert_eq(atomic_load(&db.calls), 0, "the database was not asked");
    /* and a loader result reaches the other process through L2 */
    cr_assert_eq(get_tier(c, "product:8", buf, sizeof(buf), &err), CACHE_TIER_LOADER);
    redisContext *r = raw_connect();
    size_t len;
    char *raw = raw_get(r, "share:product:8", 15, &len);
    cr_assert_not_null(raw);
    cr_assert_str_eq(raw, "Vv:product:8:0", "the documented envelope");
    free(raw);
    cr_assert(raw_int(r, "PTTL %s", "share:product:8") > 290000, "l2.ttl_ms applies");
    redisFree(r);
}

Test(redis, ttl_propagates_and_caps_l1)
{
    cr_assert_eq(peer_ttl("ttl:", "set", "short", "lives 400 ms", "400"), 0);
    c = open_prefix("ttl:", &db);
    redisContext *r = raw_connect();
    long long pttl = raw_int(r, "PTTL %s", "ttl:short");
    cr_assert(pttl > 0 && pttl <= 400, "PTTL %lld", pttl);
    char buf[64];
    cache_err_t err;
    cr_assert_eq(get_tier(c, "short", buf, sizeof(buf), &err), CACHE_TIER_L2);
    usleep(500 * 1000);
    /* the L1 copy may not outlive the L2 copy: both gone, the loader answers */
    cr_assert_eq(get_tier(c, "short", buf, sizeof(buf), &err), CACHE_TIER_LOADER);
    cr_assert_str_eq(buf, "v:short:0");
    redisFree(r);
}

Test(redis, prefixes_are_isolated)
{
    cache_t *a = open_prefix("pa:", &db);
    c = open_prefix("pb:", &db);
    cr_assert_eq(cache_set(a, "k", 1, "A's", 3, 0), CACHE_OK);
    char buf[64];
    cache_err_t err;
    cr_assert_eq(get_tier(c, "k", buf, sizeof(buf), &err), CACHE_TIER_LOADER);
    cr_assert_str_eq(buf, "v:k:0");
    cr_assert_eq(cache_del(c, "k", 1), CACHE_OK);
    cache_close(a);
    a = open_prefix("pa:", &db);
    cr_assert_eq(get_tier(a, "k", buf, sizeof(buf), &err), CACHE_TIER_L2);
    cr_assert_str_eq(buf, "A's", "a delete under one prefix leaves the other alone");
    cache_close(a);
}

Test(redis, binary_keys_round_trip)
{
    c = open_prefix("bin:", &db);
    const char key[] = {'k', '\0', '\r', '\n', '%', 's', ' ', '%', 'n', 'x'};
    const char val[] = {'\0', '\r', '\n', '%', 'd'};
    cr_assert_eq(cache_set(c, key, sizeof(key), val, sizeof(val), 0), CACHE_OK);
    redisContext *r = raw_connect();
    char full[4 + sizeof(key)];
    memcpy(full, "bin:", 4);
    memcpy(full + 4, key, sizeof(key));
    size_t len = 0;
    char *raw = raw_get(r, full, sizeof(full), &len);
    cr_assert_not_null(raw, "the key is stored byte for byte under the prefix");
    cr_assert_eq(len, sizeof(val) + 1);
    cr_assert_eq(memcmp(raw + 1, val, sizeof(val)), 0);
    free(raw);
    redisFree(r);
    cache_t *other = open_prefix("bin:", &db);
    cache_value_t *v;
    cr_assert_eq(cache_get(other, key, sizeof(key), &v), CACHE_OK);
    cr_assert_eq(cache_value_len(v), sizeof(val));
    cr_assert_eq(memcmp(cache_value_data(v), val, sizeof(val)), 0);
    cache_value_release(v);
    cr_assert_eq(atomic_load(&db.calls), 0);
    cache_close(other);
}

Test(redis, foreign_data_is_a_miss_not_a_crash)
{
    redisContext *r = raw_connect();
    raw_ok(r, "SET junk:plain hello");
    raw_ok(r, "LPUSH junk:list a b c");
    raw_ok(r, "SET junk:empty \"\"");
    c = open_prefix("junk:", &db);
    const char *keys[] = {"plain", "list", "empty"};
    for (int i = 0; i < 3; i++) {
        char buf[64];
        cache_err_t err;
        cr_assert_eq(get_tier(c, keys[i], buf, sizeof(buf), &err), CACHE_TIER_LOADER, "%s", keys[i]);
        cr_assert_eq(err, CACHE_OK);
    }
    cr_assert_eq(stat_of(c, "l2.bad_values"), 3);
    redisFree(r);
}

Test(redis, oversized_values_are_misses_and_never_cross_the_wire)
{
    cache_config_t *cfg = redis_config("big:", &db);
    cfg_set(cfg, "l2.max_value_bytes", "4KiB");
    c = open_or_die(cfg);
    cache_config_free(cfg);
    redisContext *r = raw_connect();
    static char big[1 + 100000];
    big[0] = 'V';
    memset(big + 1, 'x', sizeof(big) - 1);
    const char *argv[3] = {"SET", "big:huge", big};
    size_t lens[3] = {3, 8, sizeof(big)};
    freeReplyObject(redisCommandArgv(r, 3, argv, lens));
    for (int i = 0; i < 5; i++) { /* more than l2.breaker.failures */
        char buf[64];
        cache_err_t err;
        cr_assert_eq(get_tier(c, "huge", buf, sizeof(buf), &err), CACHE_TIER_LOADER);
        cr_assert_eq(err, CACHE_OK);
        cache_del(c, "huge-copy", 9);
        cr_assert_eq(cache_set(c, "huge-copy", 9, "v", 1, 0), CACHE_OK, "Redis stays usable");
        nkc_l1_remove(c->l1, nkc_l1_hash(c->l1, "huge", 4), "huge", 4);
    }
    cr_assert_eq(stat_of(c, "l2.bad_values"), 5);
    cr_assert_eq(stat_of(c, "l2.protocol_errors"), 0, "no connection was sacrificed");
    cr_assert_eq(stat_of(c, "l2.breaker_trips"), 0);
    redisFree(r);
}

Test(redis, set_and_del_are_synchronous)
{
    c = open_prefix("sync:", &db);
    cache_t *other = open_prefix("sync:", &db);
    cr_assert_eq(cache_set(c, "k", 1, "one", 3, 0), CACHE_OK);
    char buf[64];
    cache_err_t err;
    cr_assert_eq(get_tier(other, "k", buf, sizeof(buf), &err), CACHE_TIER_L2);
    cr_assert_str_eq(buf, "one");
    cache_close(other);
    other = open_prefix("sync:", &db); /* no L1 copy */
    cr_assert_eq(cache_del(c, "k", 1), CACHE_OK);
    cr_assert_eq(get_tier(other, "k", buf, sizeof(buf), &err), CACHE_TIER_LOADER);
    cache_close(other);
}

Test(redis, mget_one_round_trip_then_loader)
{
    c = open_prefix("mget:", &db);
    cache_t *other = open_prefix("mget:", &db);
    cr_assert_eq(cache_set(other, "a", 1, "A", 1, 0), CACHE_OK);
    cr_assert_eq(cache_set(c, "b", 1, "B", 1, 0), CACHE_OK); /* in c's L1 */
    const void *keys[] = {"a", "b", "c"};
    size_t klens[] = {1, 1, 1};
    cache_value_t *out[3];
    cache_err_t st[3];
    long long before = stat_of(c, "l2.commands");
    cr_assert_eq(cache_mget(c, 3, keys, klens, out, st), CACHE_OK);
    cr_assert_eq(stat_of(c, "l2.commands") - before, 2, "one lookup pipeline + one fill");
    cr_assert(st[0] == CACHE_OK && st[1] == CACHE_OK && st[2] == CACHE_OK);
    cr_assert_eq(memcmp(cache_value_data(out[0]), "A", 1), 0);
    cr_assert_eq(memcmp(cache_value_data(out[1]), "B", 1), 0);
    cr_assert_eq(memcmp(cache_value_data(out[2]), "v:c:0", 5), 0);
    for (int i = 0; i < 3; i++)
        cache_value_release(out[i]);
    cr_assert_eq(atomic_load(&db.calls), 1);
    cache_close(other);
}

/* ---- the stale-fill race ---- */

struct bg_get {
    pthread_t t;
    cache_t *c;
    char value[64];
    cache_err_t err;
};
static void *bg_get_main(void *arg)
{
    struct bg_get *g = arg;
    g->err = get_str(g->c, "p", g->value, sizeof(g->value));
    return NULL;
}

/* Reader misses and its loader reads version 0, then stalls; the database moves to
 * version 1 and another process deletes the key; the reader resumes. Returns what
 * Redis holds for the key afterwards (new string or NULL). */
static char *stale_fill_run(const char *prefix, int leases)
{
    cache_config_t *cfg = redis_config(prefix, &db);
    if (!leases)
        nkc_config_set_test_no_leases(cfg, 1);
    c = open_or_die(cfg);
    cache_config_free(cfg);
    atomic_store(&db.mode, LOAD_BLOCK);
    struct bg_get g = {.c = c};
    cr_assert_eq(pthread_create(&g.t, NULL, bg_get_main, &g), 0);
    wait_flag(&db.entered);
    atomic_store(&db.version, 1); /* the writer updates the database ... */
    cr_assert_eq(peer(prefix, "del", "p", NULL), 0); /* ... then invalidates */
    atomic_store(&db.release, 1);
    pthread_join(g.t, NULL);
    cr_assert_eq(g.err, CACHE_OK);
    cr_assert_str_eq(g.value, "v:p:0", "the reader gets what it loaded");
    redisContext *r = raw_connect();
    char key[64];
    int n = snprintf(key, sizeof(key), "%sp", prefix);
    size_t len;
    char *raw = raw_get(r, key, (size_t)n, &len);
    redisFree(r);
    return raw;
}

Test(redis, stale_fill_race_is_closed_by_leases)
{
    char *raw = stale_fill_run("race:", 1);
    cr_assert_null(raw, "L2 must not hold the old value, holds %s", raw ? raw : "");
    atomic_store(&db.mode, LOAD_VALUE);
    char buf[64];
    cache_err_t err;
    cr_assert_eq(get_tier(c, "p", buf, sizeof(buf), &err), CACHE_TIER_LOADER,
                 "L1 must not hold the old value either");
    cr_assert_str_eq(buf, "v:p:1");
    cr_assert_eq(stat_of(c, "l2.fills_lost"), 1);
}

Test(redis, stale_fill_race_control_without_leases_shows_the_bug)
{
    char *raw = stale_fill_run("racectl:", 0);
    cr_assert_not_null(raw, "the control run should have written the stale value");
    cr_assert_str_eq(raw, "Vv:p:0", "without leases the old value lands after the delete");
    free(raw);
}

/* ---- the cross-process stampede ---- */

struct stampede_thread {
    pthread_t t;
    cache_t *c;
    cache_err_t err;
    char value[64];
};
static void *stampede_main(void *arg)
{
    struct stampede_thread *s = arg;
    s->err = get_str(s->c, "cold", s->value, sizeof(s->value));
    return NULL;
}

static int stampede_child(void *arg)
{
    int fd = *(int *)arg;
    struct fake_db local = {0};
    atomic_store(&local.delay_ms, 50);
    cache_t *cc = open_prefix("stampede:", &local);
    enum { T = 16 };
    struct stampede_thread th[T];
    for (int i = 0; i < T; i++) {
        th[i] = (struct stampede_thread){.c = cc};
        pthread_create(&th[i].t, NULL, stampede_main, &th[i]);
    }
    int bad = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i].t, NULL);
        bad |= th[i].err != CACHE_OK || strcmp(th[i].value, "v:cold:0") != 0;
    }
    int calls = atomic_load(&local.calls);
    cache_close(cc);
    (void)!write(fd, &calls, sizeof(calls));
    return bad;
}

Test(redis, cross_process_stampede_one_loader_call)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    enum { P = 4 };
    pid_t pids[P];
    fflush(NULL);
    for (int i = 0; i < P; i++) {
        pids[i] = fork();
        cr_assert(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(stampede_child(&fds[1]));
    }
    int total = 0;
    for (int i = 0; i < P; i++) {
        int status;
        cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", i);
        int calls = 0;
        cr_assert_eq(read(fds[0], &calls, sizeof(calls)), (ssize_t)sizeof(calls));
        total += calls;
    }
    close(fds[0]);
    close(fds[1]);
    cr_assert_eq(total, 1, "4 processes x 16 threads: %d loader calls", total);
}
