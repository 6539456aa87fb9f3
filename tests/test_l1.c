/* L1 behaviour: scan resistance of the eviction policy, reclaiming expired entries
 * without reads, byte accounting, stripe sizing, table growth and shrinking load. */
#include "helpers.h"

#include "l1.h"

static struct fake_db db;
static struct fake_clock clk;
static cache_config_t *cfg;
static cache_t *c;

static void setup(void)
{
    memset(&db, 0, sizeof(db));
    atomic_store(&clk.now_ms, 5000);
    cfg = cache_config_new();
    cfg_set(cfg, "ttl_jitter", "0");
    cache_config_set_loader(cfg, fake_loader, &db);
    nkc_config_set_clock(cfg, fake_clock_read, &clk);
}
static void teardown(void)
{
    cache_close(c);
    c = NULL;
    cache_config_free(cfg);
}
TestSuite(l1, .init = setup, .fini = teardown, .timeout = 60);

static int read_key(const char *prefix, int i)
{
    char key[32];
    int n = snprintf(key, sizeof(key), "%s%d", prefix, i);
    cache_value_t *v;
    cache_get_info_t info = {.struct_size = sizeof(info)};
    cr_assert_eq(cache_get_ex(c, key, (size_t)n, &v, &info), CACHE_OK);
    cache_value_release(v);
    return info.tier == CACHE_TIER_L1;
}

Test(l1, frequent_keys_survive_a_scan)
{
    cfg_set(cfg, "l1.max_entries", "1000");
    c = open_or_die(cfg);
    enum { HOT = 300 };
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < HOT; i++)
            read_key("hot", i);
    for (int i = 0; i < 20000; i++) /* a scan of one-time keys, 20x the cache */
        read_key("scan", i);
    int hits = 0;
    for (int i = 0; i < HOT; i++)
        hits += read_key("hot", i);
    cr_assert(hits >= HOT * 9 / 10, "only %d of %d hot keys survived the scan", hits, HOT);
    cr_assert(stat_of(c, "l1.entries") <= 1000);
}

Test(l1, expired_entries_are_reclaimed_without_reads)
{
    cfg_set(cfg, "l1.sweep_interval_ms", "5");
    c = open_or_die(cfg);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof(key), "e%d", i);
        cr_assert_eq(cache_set(c, key, (size_t)n, "value", 5, 100), CACHE_OK);
    }
    for (int i = 0; i < 100; i++) {
        int n = snprintf(key, sizeof(key), "keep%d", i);
        cr_assert_eq(cache_set(c, key, (size_t)n, "value", 5, 50000), CACHE_OK);
    }
    cr_assert_eq(stat_of(c, "l1.entries"), 5100);
    atomic_fetch_add(&clk.now_ms, 100);
    long long entries = -1;
    for (int i = 0; i < 2000 && entries != 100; i++) { /* up to 10 s of sweeps */
        usleep(5000);
        entries = stat_of(c, "l1.entries");
    }
    cr_assert_eq(entries, 100, "expired entries still held: %lld", entries);
    cr_assert_eq(stat_of(c, "l1.expirations"), 5000);
    cr_assert(stat_of(c, "l1.bytes") < 100 * 200, "bytes went back down");
    cr_assert_eq(atomic_load(&db.calls), 0, "no read was needed");
}

Test(l1, bytes_charge_key_value_and_overhead)
{
    cfg_set(cfg, "l1.max_bytes", "64MiB");
    c = open_or_die(cfg);
    static char val[1000];
    for (int i = 0; i < 100; i++) {
        char key[16];
        int n = snprintf(key, sizeof(key), "b%d", i);
        cr_assert_eq(cache_set(c, key, (size_t)n, val, sizeof(val), 0), CACHE_OK);
    }
    long long bytes = stat_of(c, "l1.bytes");
    cr_assert(bytes >= 100 * (1000 + 2 + (long long)sizeof(nkc_entry_t)),
              "charged %lld: less than key + value + header", bytes);
    cr_assert(bytes <= 100 * (1000 + 4 + (long long)sizeof(nkc_entry_t) + 64),
              "charged %lld: more than the allocation really costs", bytes);
}

Test(l1, stripes_follow_the_budget)
{
    cfg_set(cfg, "l1.max_entries", "100");
    c = open_or_die(cfg);
    cr_assert_eq(stat_of(c, "l1.stripes"), 1, "a small entry budget is not split");
    cache_close(c);
    cfg_set(cfg, "l1.max_entries", "0");
    cfg_set(cfg, "l1.stripes", "16");
    c = open_or_die(cfg);
    cr_assert_eq(stat_of(c, "l1.stripes"), 16);
}

Test(l1, many_entries_grow_the_tables)
{
    cfg_set(cfg, "l1.max_bytes", "256MiB");
    c = open_or_die(cfg);
    char key[32];
    enum { N = 100000 };
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "g%d", i);
        cr_assert_eq(cache_set(c, key, (size_t)n, key, (size_t)n, 0), CACHE_OK);
    }
    cr_assert_eq(stat_of(c, "l1.entries"), N);
    for (int i = 0; i < N; i += 7) {
        char buf[32];
        snprintf(key, sizeof(key), "g%d", i);
        cr_assert_eq(get_str(c, key, buf, sizeof(buf)), CACHE_OK);
        cr_assert_str_eq(buf, key);
    }
    for (int i = 0; i < N; i += 2) {
        int n = snprintf(key, sizeof(key), "g%d", i);
        cr_assert_eq(cache_del(c, key, (size_t)n), CACHE_OK);
    }
    cr_assert_eq(stat_of(c, "l1.entries"), N / 2);
    for (int i = 1; i < N; i += 2) { /* backward-shift deletion kept every run intact */
        char buf[32];
        snprintf(key, sizeof(key), "g%d", i);
        cr_assert_eq(get_str(c, key, buf, sizeof(buf)), CACHE_OK);
        cr_assert_str_eq(buf, key);
    }
    cr_assert_eq(atomic_load(&db.calls), 0);
}
