/* Serving through trouble with Redis: the loader concurrency limit while Redis is
 * stopped and every key misses; refresh-ahead shared by two caches through the
 * refresh lease (one reload, the value's TTL renewed in Redis); a refresh that a
 * delete or an outside write overtakes is never written back; stale-if-error
 * when Redis and the loader both fail. */
#include "redis_helpers.h"

static struct fake_db db;
static cache_t *c1, *c2;

static void setup(void) { memset(&db, 0, sizeof(db)); }
static void teardown(void)
{
    resume_stopped();
    cache_close(c1);
    cache_close(c2);
    c1 = c2 = NULL;
}
TestSuite(redis_resilience, .init = setup, .fini = teardown, .timeout = 120);

static void stop_redis(void)
{
    stopped = redis_pid();
    cr_assert_eq(kill(stopped, SIGSTOP), 0);
}

static void wait_idle(cache_t *c)
{
    for (int i = 0; i < 10000 && c->workers && nkc_workers_pending(c->workers) > 0; i++)
        usleep(1000);
    usleep(5000);
}

Test(redis_resilience, loader_limit_holds_with_redis_stopped)
{
    cache_config_t *cfg = redis_config_fast("limit:", NULL);
    cache_config_set_loader(cfg, counting_loader, &db);
    cfg_set(cfg, "loader.max_concurrency", "4");
    cfg_set(cfg, "loader.max_wait_ms", "60000");
    c1 = open_consuming(cfg);
    atomic_store(&loader_peak, 0);
    atomic_store(&db.delay_ms, 20);
    stop_redis();
    int ok, busy;
    run_misses(c1, &ok, &busy);
    cr_assert_eq(ok, 64, "every caller was served by the loader (%d busy)", busy);
    cr_assert_eq(atomic_load(&db.calls), 64);
    cr_assert_leq(atomic_load(&loader_peak), 4, "the database saw %d loads at once",
                  atomic_load(&loader_peak));
    cr_assert_gt(stat_of(c1, "l2.failures"), 0, "Redis was really out of the picture");
}

static long long pttl(redisContext *r, const char *key)
{
    return raw_int(r, "PTTL %s", key);
}

static cache_config_t *refresh_config(const char *prefix)
{
    cache_config_t *cfg = redis_config(prefix, &db);
    cfg_set(cfg, "l1.ttl_ms", "3000");
    cfg_set(cfg, "l2.ttl_ms", "3000");
    cfg_set(cfg, "refresh_ahead", "0.3"); /* the last 900 ms */
    return cfg;
}

Test(redis_resilience, refresh_ahead_reloads_once_across_caches)
{
    c1 = open_consuming(refresh_config("ra:"));
    c2 = open_consuming(refresh_config("ra:"));
    char buf[64];
    cr_assert_eq(get_str(c1, "hot", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(get_str(c2, "hot", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:hot:0");
    cr_assert_eq(atomic_load(&db.calls), 1, "the second cache read Redis");
    atomic_store(&db.version, 1);
    usleep(2300 * 1000); /* 700 ms left in both tiers */
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(get_str(c1, "hot", buf, sizeof(buf)), CACHE_OK);
        cr_assert_eq(get_str(c2, "hot", buf, sizeof(buf)), CACHE_OK);
    }
    wait_idle(c1);
    wait_idle(c2);
    cr_assert_eq(atomic_load(&db.calls), 2, "one reload for both caches");
    redisContext *r = raw_connect();
    long long left = pttl(r, "ra:hot");
    cr_assert(left > 2000, "the refill renewed the Redis TTL (%lld ms left)", left);
    size_t len;
    char *v = raw_get(r, "ra:hot", 6, &len);
    cr_assert_not_null(v);
    cr_assert_str_eq(v, "Vv:hot:1");
    free(v);
    redisFree(r);
    usleep(100 * 1000); /* the refill's invalidation reaches the other cache */
    cr_assert_eq(get_str(c1, "hot", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:hot:1");
    cr_assert_eq(get_str(c2, "hot", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:hot:1");
    /* past the old expiry, nobody misses: the value lives on in both tiers */
    usleep(900 * 1000);
    cr_assert_eq(get_str(c1, "hot", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(get_str(c2, "hot", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(atomic_load(&db.calls), 2);
    cr_assert_geq(stat_of(c1, "refresh.done") + stat_of(c2, "refresh.done"), 2);
}

/* Starts a refresh of key in c1 that blocks in the loader; returns when it does. */
static void blocked_refresh(const char *key)
{
    char buf[64];
    cr_assert_eq(get_str(c1, key, buf, sizeof(buf)), CACHE_OK);
    usleep(2300 * 1000);
    atomic_store(&db.mode, LOAD_BLOCK);
    atomic_store(&db.version, 1);
    cr_assert_eq(get_str(c1, key, buf, sizeof(buf)), CACHE_OK); /* served at once */
    char want[64];
    snprintf(want, sizeof(want), "v:%s:0", key);
    cr_assert_str_eq(buf, want);
    wait_flag(&db.entered);
}

Test(redis_resilience, delete_overtakes_a_refresh)
{
    c1 = open_consuming(refresh_config("rd:"));
    c2 = open_consuming(redis_config("rd:", NULL)); /* another process's writer */
    blocked_refresh("k");
    cr_assert_eq(cache_del(c2, "k", 1), CACHE_OK);
    atomic_store(&db.version, 2);
    atomic_store(&db.release, 1);
    wait_idle(c1);
    atomic_store(&db.mode, LOAD_VALUE);
    redisContext *r = raw_connect();
    size_t len;
    char *v = raw_get(r, "rd:k", 4, &len);
    cr_assert_null(v, "the refresh wrote back a value loaded before the delete: %s", v);
    redisFree(r);
    cr_assert_gt(stat_of(c1, "l2.fills_lost"), 0);
    char buf[64];
    cr_assert_eq(get_str(c1, "k", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:k:2", "L1 kept the overtaken refresh");
}

Test(redis_resilience, outside_write_overtakes_a_refresh)
{
    c1 = open_consuming(refresh_config("rw:"));
    blocked_refresh("k");
    redisContext *r = raw_connect();
    raw_ok(r, "SET rw:k Voutside PX 60000");
    atomic_store(&db.release, 1);
    wait_idle(c1);
    size_t len;
    char *v = raw_get(r, "rw:k", 4, &len);
    cr_assert_not_null(v);
    cr_assert_str_eq(v, "Voutside", "the refresh overwrote a newer value");
    free(v);
    redisFree(r);
    usleep(100 * 1000);
    char buf[64];
    cr_assert_eq(get_str(c1, "k", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "outside");
}

Test(redis_resilience, stale_if_error_when_redis_and_loader_fail)
{
    cache_config_t *cfg = redis_config_fast("sie:", &db);
    cfg_set(cfg, "stale_if_error_ms", "10000");
    cfg_set(cfg, "l2.down_l1_ttl_ms", "200");
    c1 = open_consuming(cfg);
    stop_redis();
    char buf[64];
    cr_assert_eq(get_str(c1, "k", buf, sizeof(buf)), CACHE_OK, "the loader serves");
    atomic_store(&db.mode, LOAD_FAIL);
    usleep(300 * 1000); /* the copy's 200 ms cap has passed */
    cache_value_t *v = NULL;
    cache_get_info_t info = {.struct_size = sizeof(info)};
    cr_assert_eq(cache_get_ex(c1, "k", 1, &v, &info), CACHE_OK);
    cr_assert_eq(info.stale, CACHE_STALE_ERROR);
    cr_assert_eq(info.error, CACHE_ELOADER);
    cr_assert_geq(info.stale_ms, 100);
    cr_assert_eq(cache_value_len(v), 5);
    cr_assert(memcmp(cache_value_data(v), "v:k:0", 5) == 0);
    cache_value_release(v);
    cr_assert_eq(get_str(c1, "other", buf, sizeof(buf)), CACHE_ELOADER, "no stale copy: the error");
}

Test(redis_resilience, stale_while_revalidate_with_redis_keeps_the_value_in_its_window)
{
    cache_config_t *cfg = redis_config("swr:", &db);
    cfg_set(cfg, "l1.ttl_ms", "1000");
    cfg_set(cfg, "l2.ttl_ms", "1000");
    cfg_set(cfg, "stale_while_revalidate_ms", "1000");
    c1 = open_consuming(cfg);
    char buf[64];
    cr_assert_eq(get_str(c1, "k", buf, sizeof(buf)), CACHE_OK);
    redisContext *r = raw_connect();
    long long left = pttl(r, "swr:k");
    cr_assert(left > 1500 && left <= 2000, "Redis keeps the value TTL + grace (%lld ms)", left);
    atomic_store(&db.version, 1);
    atomic_store(&db.delay_ms, 100);
    usleep(1200 * 1000); /* past the TTL, inside the window: Redis still holds it */
    cache_value_t *v = NULL;
    cache_get_info_t info = {.struct_size = sizeof(info)};
    int64_t t0 = nkc_now_ns();
    cr_assert_eq(cache_get_ex(c1, "k", 1, &v, &info), CACHE_OK);
    cr_assert_lt(ms_since(t0), 90.0, "served at once, not after the 100 ms load");
    cr_assert_eq(info.stale, CACHE_STALE_REVALIDATING);
    cr_assert(memcmp(cache_value_data(v), "v:k:0", 5) == 0);
    cache_value_release(v);
    wait_idle(c1);
    cr_assert_eq(get_str(c1, "k", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:k:1");
    left = pttl(r, "swr:k");
    cr_assert(left > 1500, "the reload renewed the Redis TTL (%lld ms)", left);
    redisFree(r);
    cr_assert_eq(atomic_load(&db.calls), 2);
}
