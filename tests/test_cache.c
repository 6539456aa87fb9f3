/* The public data path without Redis: read-through, TTLs on a fake clock, negative
 * caching, jitter, handles outliving their entries, every bad input. */
#include "helpers.h"

static struct fake_db db;
static struct fake_clock clk;
static cache_config_t *cfg;
static cache_t *c;

static void setup(void)
{
    memset(&db, 0, sizeof(db));
    atomic_store(&clk.now_ms, 1000000);
    cfg = cache_config_new();
    cfg_set(cfg, "ttl_jitter", "0");
    cfg_set(cfg, "l1.ttl_ms", "10000");
    cfg_set(cfg, "negative_ttl_ms", "500");
    cache_config_set_loader(cfg, fake_loader, &db);
    nkc_config_set_clock(cfg, fake_clock_read, &clk);
}
static void teardown(void)
{
    cache_close(c);
    c = NULL;
    cache_config_free(cfg);
}
TestSuite(cache, .init = setup, .fini = teardown);

static void advance(int64_t ms) { atomic_fetch_add(&clk.now_ms, ms); }

Test(cache, read_through_fills_l1)
{
    c = open_or_die(cfg);
    char buf[64];
    cr_assert_eq(get_str(c, "product:42", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:product:42:0");
    cr_assert_eq(get_str(c, "product:42", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(atomic_load(&db.calls), 1, "the second read is an L1 hit");
    cr_assert_eq(stat_of(c, "l1.hits"), 1);
    cr_assert_eq(stat_of(c, "l1.misses"), 1);
    cr_assert_eq(stat_of(c, "loader.calls"), 1);
    cr_assert_eq(stat_of(c, "loader.ok"), 1);
    cr_assert_eq(stat_of(c, "l1.entries"), 1);
}

Test(cache, get_ex_reports_tier_and_age)
{
    c = open_or_die(cfg);
    cache_value_t *v;
    cache_get_info_t info = {.struct_size = sizeof(info)};
    cr_assert_eq(cache_get_ex(c, "k", 1, &v, &info), CACHE_OK);
    cr_assert_eq(info.tier, CACHE_TIER_LOADER);
    cache_value_release(v);
    advance(1234);
    cr_assert_eq(cache_get_ex(c, "k", 1, &v, &info), CACHE_OK);
    cr_assert_eq(info.tier, CACHE_TIER_L1);
    cr_assert_eq(info.age_ms, 1234);
    cr_assert_eq(info.stale, 0);
    cache_value_release(v);
    cache_get_info_t tiny = {.struct_size = 1};
    cr_assert_eq(cache_get_ex(c, "k", 1, &v, &tiny), CACHE_EINVAL);
}

Test(cache, ttl_expiry_on_the_clock)
{
    c = open_or_die(cfg);
    cr_assert_eq(cache_set(c, "a", 1, "1", 1, 100), CACHE_OK);
    char buf[16];
    advance(99);
    cr_assert_eq(get_str(c, "a", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "1", "still fresh at 99 ms");
    advance(1);
    cr_assert_eq(get_str(c, "a", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:a:0", "expired at 100 ms: read through to the loader");
    cr_assert_eq(atomic_load(&db.calls), 1);
}

Test(cache, loader_ttl_and_ttl_cap)
{
    c = open_or_die(cfg);
    atomic_store(&db.ttl_ms, 50);
    char buf[32];
    cr_assert_eq(get_str(c, "x", buf, sizeof(buf)), CACHE_OK);
    advance(49);
    get_str(c, "x", buf, sizeof(buf));
    cr_assert_eq(atomic_load(&db.calls), 1);
    advance(1);
    get_str(c, "x", buf, sizeof(buf));
    cr_assert_eq(atomic_load(&db.calls), 2, "the loader's TTL applies");
    /* a TTL above l1.ttl_ms is capped to it */
    cr_assert_eq(cache_set(c, "long", 4, "v", 1, 999999999), CACHE_OK);
    advance(10000);
    cr_assert_eq(get_str(c, "long", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:long:0", "capped at l1.ttl_ms = 10000");
}

static int count_alive(int n)
{
    int alive = 0;
    char key[32];
    for (int i = 0; i < n; i++) {
        int len = snprintf(key, sizeof(key), "j%d", i);
        cache_value_t *v;
        if (cache_get(c, key, (size_t)len, &v) == CACHE_OK) {
            alive++;
            cache_value_release(v);
        }
    }
    return alive;
}

Test(cache, jitter_spreads_ttls_within_bounds)
{
    cfg_set(cfg, "ttl_jitter", "0.1");
    cache_config_set_loader(cfg, NULL, NULL); /* a miss stays a miss */
    c = open_or_die(cfg);
    enum { N = 400 };
    char key[32];
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "j%d", i);
        cr_assert_eq(cache_set(c, key, (size_t)n, "v", 1, 1000), CACHE_OK);
    }
    advance(899);
    cr_assert_eq(count_alive(N), N, "no TTL below 90%% of 1000 ms");
    advance(101);
    int mid = count_alive(N);
    cr_assert(mid > N / 10 && mid < N - N / 10,
              "at 100%% of the TTL some have expired and some not (%d of %d alive)", mid, N);
    advance(101);
    cr_assert_eq(count_alive(N), 0, "none above 110%%");
}

Test(cache, negative_caching)
{
    c = open_or_die(cfg);
    atomic_store(&db.mode, LOAD_NOTFOUND);
    cache_value_t *v = (cache_value_t *)1;
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(cache_get(c, "ghost", 5, &v), CACHE_ENOTFOUND);
        cr_assert_null(v);
    }
    cr_assert_eq(atomic_load(&db.calls), 1, "absent keys do not reach the database again");
    cr_assert_eq(stat_of(c, "loader.not_found"), 1);
    cr_assert_eq(stat_of(c, "l1.negative_hits"), 9);
    advance(500);
    cr_assert_eq(cache_get(c, "ghost", 5, &v), CACHE_ENOTFOUND);
    cr_assert_eq(atomic_load(&db.calls), 2, "negative entries expire after negative_ttl_ms");
    /* a record that appears is seen once the negative entry is deleted */
    atomic_store(&db.mode, LOAD_VALUE);
    cr_assert_eq(cache_del(c, "ghost", 5), CACHE_OK);
    cr_assert_eq(cache_get(c, "ghost", 5, &v), CACHE_OK);
    cache_value_release(v);
}

Test(cache, negative_caching_off)
{
    cfg_set(cfg, "negative_ttl_ms", "0");
    c = open_or_die(cfg);
    atomic_store(&db.mode, LOAD_NOTFOUND);
    cache_value_t *v;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(cache_get(c, "ghost", 5, &v), CACHE_ENOTFOUND);
    cr_assert_eq(atomic_load(&db.calls), 3);
}

Test(cache, loader_errors_are_not_cached)
{
    c = open_or_die(cfg);
    atomic_store(&db.mode, LOAD_FAIL);
    cache_value_t *v;
    cr_assert_eq(cache_get(c, "k", 1, &v), CACHE_ELOADER);
    cr_assert_eq(cache_get(c, "k", 1, &v), CACHE_ELOADER);
    cr_assert_eq(atomic_load(&db.calls), 2);
    atomic_store(&db.mode, LOAD_NO_PUT);
    cr_assert_eq(cache_get(c, "k", 1, &v), CACHE_ELOADER, "OK without a value is a loader bug");
    atomic_store(&db.mode, LOAD_VALUE);
    cr_assert_eq(cache_get(c, "k", 1, &v), CACHE_OK);
    cache_value_release(v);
    cr_assert_eq(stat_of(c, "loader.failures"), 3);
}

Test(cache, no_loader_means_not_found)
{
    cache_config_set_loader(cfg, NULL, NULL);
    c = open_or_die(cfg);
    cache_value_t *v;
    cr_assert_eq(cache_get(c, "k", 1, &v), CACHE_ENOTFOUND);
    cr_assert_eq(cache_set(c, "k", 1, "x", 1, 0), CACHE_OK);
    cr_assert_eq(cache_get(c, "k", 1, &v), CACHE_OK);
    cr_assert_eq(cache_value_len(v), 1);
    cache_value_release(v);
}

Test(cache, set_del_and_binary_keys)
{
    c = open_or_die(cfg);
    const char key[] = {'a', '\0', '\r', '\n', '%', ' ', 'z'};
    const char val[] = {'\0', 1, 2, '\0'};
    cr_assert_eq(cache_set(c, key, sizeof(key), val, sizeof(val), 0), CACHE_OK);
    cache_value_t *v;
    cr_assert_eq(cache_get(c, key, sizeof(key), &v), CACHE_OK);
    cr_assert_eq(cache_value_len(v), sizeof(val));
    cr_assert_eq(memcmp(cache_value_data(v), val, sizeof(val)), 0);
    cache_value_release(v);
    cr_assert_eq(cache_get(c, key, sizeof(key) - 1, &v), CACHE_OK, "a prefix is another key");
    cr_assert_eq(memcmp(cache_value_data(v), "v:a", 3), 0);
    cache_value_release(v);
    cr_assert_eq(cache_del(c, key, sizeof(key)), CACHE_OK);
    cr_assert_eq(cache_del(c, key, sizeof(key)), CACHE_OK, "deleting an absent key is fine");
    cr_assert_eq(cache_set(c, "empty", 5, NULL, 0, 0), CACHE_OK, "an empty value is allowed");
    size_t len = 99;
    cr_assert_eq(cache_get_copy(c, "empty", 5, NULL, 0, &len), CACHE_OK);
    cr_assert_eq(len, 0);
}

Test(cache, get_copy_reports_needed_size)
{
    c = open_or_die(cfg);
    cr_assert_eq(cache_set(c, "k", 1, "hello", 5, 0), CACHE_OK);
    char buf[8];
    size_t len = 0;
    cr_assert_eq(cache_get_copy(c, "k", 1, buf, 3, &len), CACHE_ETOOBIG);
    cr_assert_eq(len, 5);
    cr_assert_eq(cache_get_copy(c, "k", 1, buf, 5, &len), CACHE_OK);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    /* and on the loader path too */
    cr_assert_eq(cache_get_copy(c, "other", 5, buf, 2, &len), CACHE_ETOOBIG);
    cr_assert_eq(len, strlen("v:other:0"));
}

Test(cache, handles_outlive_their_entries)
{
    cfg_set(cfg, "l1.max_entries", "8");
    c = open_or_die(cfg);
    cache_value_t *held[4];
    cr_assert_eq(cache_set(c, "a", 1, "alpha", 5, 100), CACHE_OK);
    cr_assert_eq(cache_get(c, "a", 1, &held[0]), CACHE_OK);
    cr_assert_eq(cache_set(c, "a", 1, "beta", 4, 100), CACHE_OK); /* overwritten */
    cr_assert_eq(cache_get(c, "a", 1, &held[1]), CACHE_OK);
    cr_assert_eq(cache_del(c, "a", 1), CACHE_OK); /* deleted */
    cr_assert_eq(cache_set(c, "b", 1, "gamma", 5, 10), CACHE_OK);
    cr_assert_eq(cache_get(c, "b", 1, &held[2]), CACHE_OK);
    advance(20); /* expired */
    cr_assert_eq(cache_set(c, "e", 1, "delta", 5, 0), CACHE_OK);
    cr_assert_eq(cache_get(c, "e", 1, &held[3]), CACHE_OK);
    char key[16];
    for (int i = 0; i < 200; i++) { /* evicted */
        int n = snprintf(key, sizeof(key), "f%d", i);
        cr_assert_eq(cache_set(c, key, (size_t)n, "x", 1, 0), CACHE_OK);
    }
    cache_close(c); /* and even the cache closed */
    c = NULL;
    cr_assert_eq(memcmp(cache_value_data(held[0]), "alpha", 5), 0);
    cr_assert_eq(memcmp(cache_value_data(held[1]), "beta", 4), 0);
    cr_assert_eq(memcmp(cache_value_data(held[2]), "gamma", 5), 0);
    cr_assert_eq(memcmp(cache_value_data(held[3]), "delta", 5), 0);
    for (int i = 0; i < 4; i++)
        cache_value_release(held[i]);
    cache_value_release(NULL);
}

Test(cache, bad_input)
{
    cache_value_t *v = NULL;
    char err[200];
    cr_assert_eq(cache_open(NULL, cfg, err, sizeof(err)), CACHE_EINVAL);
    cr_assert_eq(cache_open(&c, NULL, err, sizeof(err)), CACHE_EINVAL);
    cr_assert_null(c);
    cfg_set(cfg, "max_key_bytes", "16");
    cfg_set(cfg, "max_value_bytes", "1KiB");
    c = open_or_die(cfg);
    cr_assert_eq(cache_get(NULL, "k", 1, &v), CACHE_EINVAL);
    cr_assert_eq(cache_get(c, NULL, 1, &v), CACHE_EINVAL);
    cr_assert_eq(cache_get(c, "k", 0, &v), CACHE_EINVAL, "empty key");
    cr_assert_eq(cache_get(c, "k", 1, NULL), CACHE_EINVAL);
    cr_assert_eq(cache_get(c, "0123456789abcdefX", 17, &v), CACHE_ETOOBIG);
    cr_assert_eq(cache_get(c, "0123456789abcdef", 16, &v), CACHE_OK);
    cache_value_release(v);
    size_t len;
    cr_assert_eq(cache_get_copy(c, "k", 1, NULL, 5, &len), CACHE_EINVAL);
    cr_assert_eq(cache_get_copy(c, "k", 1, err, 5, NULL), CACHE_EINVAL);
    cr_assert_eq(cache_set(NULL, "k", 1, "v", 1, 0), CACHE_EINVAL);
    cr_assert_eq(cache_set(c, "k", 1, NULL, 1, 0), CACHE_EINVAL, "NULL value, non-zero length");
    cr_assert_eq(cache_set(c, "", 0, "v", 1, 0), CACHE_EINVAL);
    static char big[2048];
    cr_assert_eq(cache_set(c, "k", 1, big, sizeof(big), 0), CACHE_ETOOBIG);
    cr_assert_eq(cache_set(c, "0123456789abcdefX", 17, "v", 1, 0), CACHE_ETOOBIG);
    cr_assert_eq(cache_del(NULL, "k", 1), CACHE_EINVAL);
    cr_assert_eq(cache_del(c, NULL, 0), CACHE_EINVAL);
    cr_assert_eq(cache_mget(NULL, 1, NULL, NULL, NULL, NULL), CACHE_EINVAL);
    cr_assert_eq(cache_mget(c, 1, NULL, NULL, NULL, NULL), CACHE_EINVAL);
    cr_assert_eq(cache_sink_put(NULL, "v", 1, 0), CACHE_EINVAL);
    cr_assert_null(cache_stats_json(NULL));
    cr_assert_null(cache_value_data(NULL));
    cr_assert_eq(cache_value_len(NULL), 0);
    cache_close(NULL);
    cache_free(NULL);
}

Test(cache, values_larger_than_l1_are_refused_without_l2)
{
    cfg_set(cfg, "l1.max_bytes", "64KiB");
    cfg_set(cfg, "max_value_bytes", "1MiB");
    c = open_or_die(cfg);
    static char big[100000];
    cr_assert_eq(cache_set(c, "big", 3, big, sizeof(big), 0), CACHE_ETOOBIG,
                 "larger than the L1 budget and there is no L2 to hold it");
    cache_value_t *v;
    /* from the loader, a too-large value is served but not kept */
    cr_assert_eq(cache_get(c, "big", 3, &v), CACHE_OK);
    cache_value_release(v);
}

static cache_err_t big_loader(void *ud, const void *key, size_t klen, cache_sink_t *sink)
{
    (void)key, (void)klen;
    atomic_fetch_add(&((struct fake_db *)ud)->calls, 1);
    static char big[40000];
    return cache_sink_put(sink, big, sizeof(big), 0);
}

Test(cache, loader_values_too_large_for_l1_are_served)
{
    cfg_set(cfg, "l1.max_bytes", "64KiB");
    cache_config_set_loader(cfg, big_loader, &db);
    c = open_or_die(cfg);
    cache_value_t *v;
    cr_assert_eq(cache_get(c, "big", 3, &v), CACHE_OK);
    cr_assert_eq(cache_value_len(v), 40000);
    cache_value_release(v);
    cr_assert_eq(stat_of(c, "l1.refused"), 1);
    cr_assert_eq(stat_of(c, "l1.entries"), 0);
}

Test(cache, mget_mixes_hits_misses_and_absent)
{
    c = open_or_die(cfg);
    cr_assert_eq(cache_set(c, "a", 1, "A", 1, 0), CACHE_OK);
    const void *keys[] = {"a", "b", "", "a"};
    size_t klens[] = {1, 1, 0, 1};
    cache_value_t *out[4];
    cache_err_t st[4];
    cr_assert_eq(cache_mget(c, 4, keys, klens, out, st), CACHE_OK);
    cr_assert_eq(st[0], CACHE_OK);
    cr_assert_eq(st[1], CACHE_OK);
    cr_assert_eq(st[2], CACHE_EINVAL);
    cr_assert_null(out[2]);
    cr_assert_eq(st[3], CACHE_OK);
    cr_assert_eq(memcmp(cache_value_data(out[1]), "v:b:0", 5), 0);
    for (int i = 0; i < 4; i++)
        cache_value_release(out[i]);
}

Test(cache, unreachable_l2_fails_open_with_a_clear_message)
{
    cfg_set(cfg, "l2.url", "redis://127.0.0.1:1");
    cfg_set(cfg, "l2.connect_timeout_ms", "500");
    char err[256] = "";
    cr_assert_eq(cache_open(&c, cfg, err, sizeof(err)), CACHE_EL2);
    cr_assert_null(c);
    cr_assert(strstr(err, "127.0.0.1:1") != NULL, "%s", err);
}
