/* Serving through trouble, without Redis: refresh-ahead (fraction and XFetch),
 * stale-while-revalidate, stale-if-error and the max_stale_ms ceiling on a fake
 * clock; loader deadlines, the loader concurrency limit, the batch loader, and
 * cache_close with background work in flight (leaks are ASan's to find). */
#include "helpers.h"
#include "internal.h"

#include <dirent.h>

static struct fake_clock clk;
static struct fake_db db;

static void reset(void)
{
    memset(&db, 0, sizeof(db));
    atomic_store(&clk.now_ms, 1000000);
}

static cache_err_t batch_loader(void *ud, size_t n, const void *const *keys, const size_t *klens,
                                cache_sink_t *const *sinks, cache_err_t *status);

/* A cache on the fake clock: 1 s L1 TTL, no jitter, the given extra properties,
 * and fake_loader (or, with batch, only batch_loader). */
static cache_t *open_on_clock(const char *const *props, int batch)
{
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "l1.ttl_ms", "1000");
    cfg_set(cfg, "ttl_jitter", "0");
    for (size_t i = 0; props && props[i]; i += 2)
        cfg_set(cfg, props[i], props[i + 1]);
    if (batch)
        cache_config_set_batch_loader(cfg, batch_loader, &db);
    else
        cache_config_set_loader(cfg, fake_loader, &db);
    nkc_config_set_clock(cfg, fake_clock_read, &clk);
    cache_t *c = open_or_die(cfg);
    cache_config_free(cfg);
    return c;
}

static cache_t *open_with(const char *const *props) { return open_on_clock(props, 0); }

static void advance(int64_t ms) { atomic_fetch_add(&clk.now_ms, ms); }

/* Waits (real time, bounded) until the loader has been called n times. */
static void wait_calls(int n)
{
    for (int i = 0; i < 5000 && atomic_load(&db.calls) < n; i++)
        usleep(1000);
    cr_assert_geq(atomic_load(&db.calls), n, "loader calls %d, expected %d", atomic_load(&db.calls),
                  n);
}

/* Waits until the cache has no background job left (a refresh ends after its
 * loader returns). */
static void wait_idle(cache_t *c)
{
    for (int i = 0; i < 5000 && c->workers && nkc_workers_pending(c->workers) > 0; i++)
        usleep(1000);
    usleep(2000);
}

static cache_err_t get_info(cache_t *c, const char *key, char *buf, size_t cap,
                            cache_get_info_t *info)
{
    cache_value_t *v = NULL;
    memset(info, 0, sizeof(*info));
    info->struct_size = sizeof(*info);
    cache_err_t err = cache_get_ex(c, key, strlen(key), &v, info);
    buf[0] = '\0';
    if (err == CACHE_OK) {
        snprintf(buf, cap, "%.*s", (int)cache_value_len(v), (const char *)cache_value_data(v));
        cache_value_release(v);
    }
    return err;
}

TestSuite(resilience, .init = reset, .timeout = 60);

Test(resilience, refresh_ahead_once_per_window_and_returns_at_once)
{
    const char *props[] = {"refresh_ahead", "0.2", NULL};
    cache_t *c = open_with(props);
    char buf[64];
    cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:k:0");
    advance(500); /* outside the last 20% of the TTL: no refresh */
    for (int i = 0; i < 100; i++)
        cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    usleep(20000);
    cr_assert_eq(atomic_load(&db.calls), 1);
    cr_assert_eq(stat_of(c, "refresh.scheduled"), 0);

    /* in the window: the first hit schedules one reload, which blocks; every hit
     * returns the current value at once meanwhile */
    atomic_store(&db.version, 1);
    atomic_store(&db.mode, LOAD_BLOCK);
    advance(350);
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
        cr_assert_str_eq(buf, "v:k:0");
    }
    wait_flag(&db.entered);
    cr_assert_eq(atomic_load(&db.calls), 2);
    cr_assert_eq(stat_of(c, "refresh.scheduled"), 1);
    atomic_store(&db.release, 1);
    wait_idle(c);
    cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:k:1", "the refreshed value replaced the old one");
    cr_assert_eq(stat_of(c, "refresh.done"), 1);
    cr_assert_eq(stat_of(c, "l1.fills"), 2, "the first load and the refresh");

    /* the new entry lives a full TTL from the refresh; its own window is later */
    atomic_store(&db.mode, LOAD_VALUE);
    advance(600);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    usleep(20000);
    cr_assert_eq(atomic_load(&db.calls), 2, "no second refresh in the same window");
    advance(250); /* now in the new entry's window: exactly one more */
    for (int i = 0; i < 100; i++)
        cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    wait_calls(3);
    wait_idle(c);
    cr_assert_eq(atomic_load(&db.calls), 3);
    cache_close(c);
}

Test(resilience, xfetch_refreshes_before_expiry_once)
{
    /* beta 10 over a ~175 ms average load (seeded at 200, then one instant load):
     * with 100 ms left each hit refreshes with probability ~0.94 */
    const char *props[] = {"refresh_ahead.beta", "10", NULL};
    cache_t *c = open_with(props);
    nkc_l1_note_load_ms(c->l1, 200);
    char buf[64];
    cr_assert_eq(get_str(c, "x", buf, sizeof(buf)), CACHE_OK);
    advance(900);
    atomic_store(&db.mode, LOAD_BLOCK); /* hold the refresh while the hits go on */
    for (int i = 0; i < 200; i++)
        cr_assert_eq(get_str(c, "x", buf, sizeof(buf)), CACHE_OK);
    wait_flag(&db.entered);
    cr_assert_eq(atomic_load(&db.calls), 2, "one refresh, however many hits drew it");
    atomic_store(&db.release, 1);
    wait_idle(c);
    cr_assert_eq(atomic_load(&db.calls), 2);
    cr_assert_eq(stat_of(c, "refresh.done"), 1);
    cache_close(c);
}

Test(resilience, refresh_failure_does_not_extend_the_value)
{
    const char *props[] = {"refresh_ahead", "0.5", NULL};
    cache_t *c = open_with(props);
    char buf[64];
    cr_assert_eq(get_str(c, "f", buf, sizeof(buf)), CACHE_OK);
    atomic_store(&db.mode, LOAD_FAIL);
    advance(600);
    cr_assert_eq(get_str(c, "f", buf, sizeof(buf)), CACHE_OK);
    wait_calls(2);
    wait_idle(c);
    cr_assert_eq(stat_of(c, "refresh.failed"), 1);
    advance(399);
    cr_assert_eq(get_str(c, "f", buf, sizeof(buf)), CACHE_OK, "still within its TTL");
    cr_assert_eq(atomic_load(&db.calls), 2, "a failed refresh is not retried within the entry");
    advance(2);
    cr_assert_eq(get_str(c, "f", buf, sizeof(buf)), CACHE_ELOADER,
                 "expired at its original time: a failed refresh extends nothing");
    cache_close(c);
}

Test(resilience, stale_while_revalidate_serves_within_window_and_refreshes_once)
{
    const char *props[] = {"stale_while_revalidate_ms", "500", NULL};
    cache_t *c = open_with(props);
    char buf[64];
    cache_get_info_t info;
    cr_assert_eq(get_info(c, "s", buf, sizeof(buf), &info), CACHE_OK);
    cr_assert_eq(info.tier, CACHE_TIER_LOADER);
    cr_assert_eq(info.stale, CACHE_STALE_NONE);

    atomic_store(&db.version, 1);
    atomic_store(&db.mode, LOAD_BLOCK);
    advance(1200); /* 200 ms past the TTL */
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(get_info(c, "s", buf, sizeof(buf), &info), CACHE_OK);
        cr_assert_str_eq(buf, "v:s:0");
        cr_assert_eq(info.stale, CACHE_STALE_REVALIDATING);
        cr_assert_eq(info.stale_ms, 200);
        cr_assert_eq(info.tier, CACHE_TIER_L1);
        cr_assert_eq(info.age_ms, 1200);
    }
    wait_flag(&db.entered);
    cr_assert_eq(atomic_load(&db.calls), 2, "one refresh for the whole window");
    atomic_store(&db.release, 1);
    wait_idle(c);
    cr_assert_eq(get_info(c, "s", buf, sizeof(buf), &info), CACHE_OK);
    cr_assert_str_eq(buf, "v:s:1");
    cr_assert_eq(info.stale, CACHE_STALE_NONE);
    cr_assert_eq(stat_of(c, "stale.while_revalidate"), 50);

    /* past the window: no stale answer, a synchronous load */
    atomic_store(&db.mode, LOAD_VALUE);
    atomic_store(&db.version, 2);
    advance(1000 + 501);
    cr_assert_eq(get_info(c, "s", buf, sizeof(buf), &info), CACHE_OK);
    cr_assert_str_eq(buf, "v:s:2");
    cr_assert_eq(info.stale, CACHE_STALE_NONE);
    cr_assert_eq(info.tier, CACHE_TIER_LOADER);
    cache_close(c);
}

Test(resilience, stale_if_error_within_window_only)
{
    const char *props[] = {"stale_if_error_ms", "2000", NULL};
    cache_t *c = open_with(props);
    char buf[64];
    cache_get_info_t info;
    cr_assert_eq(get_info(c, "e", buf, sizeof(buf), &info), CACHE_OK);
    atomic_store(&db.mode, LOAD_FAIL);
    advance(1500); /* 500 past */
    cr_assert_eq(get_info(c, "e", buf, sizeof(buf), &info), CACHE_OK);
    cr_assert_str_eq(buf, "v:e:0");
    cr_assert_eq(info.stale, CACHE_STALE_ERROR);
    cr_assert_eq(info.error, CACHE_ELOADER);
    cr_assert_eq(info.stale_ms, 500);
    cr_assert_eq(atomic_load(&db.calls), 2, "each stale-if-error answer first tried the loader");
    advance(1500); /* 2000 past: the edge is inclusive */
    cr_assert_eq(get_info(c, "e", buf, sizeof(buf), &info), CACHE_OK);
    cr_assert_eq(info.stale_ms, 2000);
    advance(1);
    cr_assert_eq(get_info(c, "e", buf, sizeof(buf), &info), CACHE_ELOADER);
    /* no stale copy at all: the error */
    cr_assert_eq(get_info(c, "never-loaded", buf, sizeof(buf), &info), CACHE_ELOADER);
    cr_assert_eq(stat_of(c, "stale.if_error"), 2);

    /* a not-found is an answer, not an error: never hidden by a stale value */
    atomic_store(&db.mode, LOAD_VALUE);
    cr_assert_eq(get_info(c, "n", buf, sizeof(buf), &info), CACHE_OK);
    atomic_store(&db.mode, LOAD_NOTFOUND);
    advance(1100);
    cr_assert_eq(get_info(c, "n", buf, sizeof(buf), &info), CACHE_ENOTFOUND);
    cache_close(c);
}

Test(resilience, max_stale_caps_every_mode)
{
    const char *props[] = {"stale_if_error_ms", "100000", "stale_while_revalidate_ms", "100000",
                           "max_stale_ms", "300", NULL};
    cache_t *c = open_with(props);
    char buf[64];
    cache_get_info_t info;
    cr_assert_eq(get_info(c, "m", buf, sizeof(buf), &info), CACHE_OK);
    atomic_store(&db.mode, LOAD_FAIL);
    advance(1250); /* 250 past: served stale, its refresh fails */
    cr_assert_eq(get_info(c, "m", buf, sizeof(buf), &info), CACHE_OK);
    cr_assert_eq(info.stale, CACHE_STALE_REVALIDATING);
    wait_calls(2);
    wait_idle(c);
    /* the refresh failed; the value keeps being served stale only up to 300 */
    advance(50);
    cr_assert_eq(get_info(c, "m", buf, sizeof(buf), &info), CACHE_OK);
    cr_assert_eq(info.stale_ms, 300);
    advance(1);
    cr_assert_eq(get_info(c, "m", buf, sizeof(buf), &info), CACHE_ELOADER,
                 "beyond max_stale_ms nothing stale is served, whatever the windows say");
    for (int i = 0; i < 5; i++) {
        advance(10000);
        cr_assert_eq(get_info(c, "m", buf, sizeof(buf), &info), CACHE_ELOADER);
    }
    cache_close(c);
}

Test(resilience, max_stale_zero_disables_stale_answers)
{
    const char *props[] = {"stale_if_error_ms", "5000", "max_stale_ms", "0", NULL};
    cache_t *c = open_with(props);
    char buf[64];
    cr_assert_eq(get_str(c, "z", buf, sizeof(buf)), CACHE_OK);
    atomic_store(&db.mode, LOAD_FAIL);
    advance(1001);
    cr_assert_eq(get_str(c, "z", buf, sizeof(buf)), CACHE_ELOADER);
    cache_close(c);
}

Test(resilience, old_info_struct_gets_only_its_fields)
{
    const char *props[] = {"stale_if_error_ms", "1000", NULL};
    cache_t *c = open_with(props);
    char buf[64];
    cr_assert_eq(get_str(c, "o", buf, sizeof(buf)), CACHE_OK);
    atomic_store(&db.mode, LOAD_FAIL);
    advance(1100);
    cache_get_info_t info;
    memset(&info, 0x5a, sizeof(info));
    info.struct_size = offsetof(cache_get_info_t, stale) + sizeof(info.stale);
    cache_value_t *v = NULL;
    cr_assert_eq(cache_get_ex(c, "o", 1, &v, &info), CACHE_OK);
    cache_value_release(v);
    cr_assert_eq(info.stale, CACHE_STALE_ERROR);
    uint64_t untouched;
    memset(&untouched, 0x5a, sizeof(untouched));
    cr_assert_eq(info.stale_ms, untouched, "a field past struct_size was written");
    cache_close(c);
}

/* ---- real time: loader deadlines, limits, close ---- */

static cache_t *open_real(const char *const *props)
{
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "ttl_jitter", "0");
    for (size_t i = 0; props && props[i]; i += 2)
        cfg_set(cfg, props[i], props[i + 1]);
    cache_config_set_loader(cfg, fake_loader, &db);
    cache_t *c = open_or_die(cfg);
    cache_config_free(cfg);
    return c;
}

static double ms_since(int64_t t0) { return (double)(nkc_now_ns() - t0) / 1e6; }

Test(resilience, loader_timeout_returns_and_load_fills_later)
{
    const char *props[] = {"loader.timeout_ms", "50", NULL};
    cache_t *c = open_real(props);
    atomic_store(&db.delay_ms, 300);
    char buf[64];
    int64_t t0 = nkc_now_ns();
    cr_assert_eq(get_str(c, "slow", buf, sizeof(buf)), CACHE_ETIMEOUT);
    double took = ms_since(t0);
    cr_assert(took >= 45 && took < 600, "the caller waited %.1f ms, deadline 50", took);
    /* a second caller joins the same load (no second loader call) and is bounded too */
    cr_assert_eq(get_str(c, "slow", buf, sizeof(buf)), CACHE_ETIMEOUT);
    cr_assert_eq(stat_of(c, "loader.timeouts"), 2);
    wait_idle(c);
    atomic_store(&db.delay_ms, 0);
    cr_assert_eq(get_str(c, "slow", buf, sizeof(buf)), CACHE_OK, "the load finished and filled");
    cr_assert_str_eq(buf, "v:slow:0");
    cr_assert_eq(atomic_load(&db.calls), 1);
    cache_close(c);
}

Test(resilience, loader_timeout_with_stale_copy_serves_it)
{
    const char *props[] = {"loader.timeout_ms", "50", "l1.ttl_ms", "100", "stale_if_error_ms",
                           "10000", NULL};
    cache_t *c = open_real(props);
    char buf[64];
    cr_assert_eq(get_str(c, "t", buf, sizeof(buf)), CACHE_OK);
    usleep(150000);
    atomic_store(&db.delay_ms, 300);
    cache_get_info_t info;
    cr_assert_eq(get_info(c, "t", buf, sizeof(buf), &info), CACHE_OK);
    cr_assert_str_eq(buf, "v:t:0");
    cr_assert_eq(info.stale, CACHE_STALE_ERROR);
    cr_assert_eq(info.error, CACHE_ETIMEOUT);
    wait_idle(c);
    cache_close(c);
}

static cache_t *open_limited(const char *wait_ms)
{
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "loader.max_concurrency", "4");
    cfg_set(cfg, "loader.max_wait_ms", wait_ms);
    cache_config_set_loader(cfg, counting_loader, &db);
    cache_t *c = open_or_die(cfg);
    cache_config_free(cfg);
    return c;
}

Test(resilience, loader_concurrency_limit_waits)
{
    atomic_store(&loader_peak, 0);
    atomic_store(&db.delay_ms, 20);
    cache_t *c = open_limited("60000");
    int ok, busy;
    run_misses(c, &ok, &busy);
    cr_assert_eq(ok, 64, "every caller waited for a slot and got its value");
    cr_assert_leq(atomic_load(&loader_peak), 4, "the loader saw %d calls at once",
                  atomic_load(&loader_peak));
    cr_assert_eq(atomic_load(&loader_peak), 4, "the limit was reached (64 callers, 20 ms loads)");
    cr_assert_eq(atomic_load(&db.calls), 64);
    cache_close(c);
}

Test(resilience, loader_concurrency_limit_refuses_with_ebusy)
{
    atomic_store(&loader_peak, 0);
    atomic_store(&db.delay_ms, 100);
    cache_t *c = open_limited("0");
    int ok, busy;
    run_misses(c, &ok, &busy);
    cr_assert_eq(ok + busy, 64);
    cr_assert_geq(ok, 4);
    cr_assert_gt(busy, 0, "with no waiting allowed the excess gets CACHE_EBUSY");
    cr_assert_leq(atomic_load(&loader_peak), 4);
    cr_assert_eq(stat_of(c, "loader.busy"), busy);
    cache_close(c);
}

/* ---- the batch loader ---- */

static _Atomic int batch_calls, batch_keys, batch_max;
static cache_err_t batch_loader(void *ud, size_t n, const void *const *keys, const size_t *klens,
                                cache_sink_t *const *sinks, cache_err_t *status)
{
    struct fake_db *d = ud;
    atomic_fetch_add(&batch_calls, 1);
    atomic_fetch_add(&batch_keys, (int)n);
    if ((int)n > atomic_load(&batch_max))
        atomic_store(&batch_max, (int)n);
    if (atomic_load(&d->delay_ms) > 0)
        usleep((useconds_t)atomic_load(&d->delay_ms) * 1000);
    for (size_t i = 0; i < n; i++) {
        if (klens[i] >= 4 && memcmp(keys[i], "gone", 4) == 0) {
            status[i] = CACHE_ENOTFOUND;
            continue;
        }
        char buf[128];
        int len = snprintf(buf, sizeof(buf), "b:%.*s:%d", (int)klens[i], (const char *)keys[i],
                           atomic_load(&d->version));
        status[i] = cache_sink_put(sinks[i], buf, (size_t)len, 0);
    }
    return CACHE_OK;
}

static cache_t *open_batch(const char *const *props) { return open_on_clock(props, 1); }

Test(resilience, mget_calls_the_batch_loader_once)
{
    atomic_store(&batch_calls, 0);
    atomic_store(&batch_keys, 0);
    cache_t *c = open_batch(NULL);
    const char *names[10] = {"a", "b", "c", "d", "gone1", "f", "g", "h", "i", "j"};
    const void *keys[10];
    size_t klens[10];
    for (int i = 0; i < 10; i++) {
        keys[i] = names[i];
        klens[i] = strlen(names[i]);
    }
    cache_value_t *out[10];
    cache_err_t status[10];
    cr_assert_eq(cache_mget(c, 10, keys, klens, out, status), CACHE_OK);
    cr_assert_eq(atomic_load(&batch_calls), 1);
    cr_assert_eq(atomic_load(&batch_keys), 10);
    for (int i = 0; i < 10; i++) {
        if (i == 4) {
            cr_assert_eq(status[i], CACHE_ENOTFOUND);
            cr_assert_null(out[i]);
            continue;
        }
        cr_assert_eq(status[i], CACHE_OK);
        char want[32];
        snprintf(want, sizeof(want), "b:%s:0", names[i]);
        cr_assert_eq(cache_value_len(out[i]), strlen(want));
        cr_assert(memcmp(cache_value_data(out[i]), want, strlen(want)) == 0);
        cache_value_release(out[i]);
    }
    /* a single get goes through the batch loader with one key */
    char buf[64];
    cr_assert_eq(get_str(c, "single", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "b:single:0");
    cr_assert_eq(atomic_load(&batch_calls), 2);
    cr_assert_eq(stat_of(c, "loader.batch_calls"), 2);
    cache_close(c);
}

Test(resilience, refreshes_coalesce_into_batches)
{
    atomic_store(&batch_calls, 0);
    atomic_store(&batch_keys, 0);
    atomic_store(&batch_max, 0);
    const char *props[] = {"refresh_ahead", "0.3", "workers", "1", NULL};
    cache_t *c = open_batch(props);
    char key[16], buf[64];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "r%d", i);
        cr_assert_eq(get_str(c, key, buf, sizeof(buf)), CACHE_OK);
    }
    int before = atomic_load(&batch_calls);
    atomic_store(&db.delay_ms, 30); /* the first batch is slow: the rest queue up */
    atomic_store(&db.version, 1);
    advance(800);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "r%d", i);
        cr_assert_eq(get_str(c, key, buf, sizeof(buf)), CACHE_OK);
    }
    for (int i = 0; i < 5000 && atomic_load(&batch_keys) < 80; i++)
        usleep(1000);
    wait_idle(c);
    int calls = atomic_load(&batch_calls) - before;
    cr_assert_eq(atomic_load(&batch_keys), 80, "every key refreshed exactly once");
    cr_assert_lt(calls, 40, "40 refreshes in %d batch calls", calls);
    cr_assert_gt(atomic_load(&batch_max), 1);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "r%d", i);
        cr_assert_eq(get_str(c, key, buf, sizeof(buf)), CACHE_OK);
        char want[32];
        snprintf(want, sizeof(want), "b:%s:1", key);
        cr_assert_str_eq(buf, want);
    }
    cache_close(c);
}

/* ---- threads and close ---- */

static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

Test(resilience, no_worker_thread_until_needed)
{
    int base = thread_count();
    cache_t *plain = open_real(NULL);
    cr_assert_null(plain->workers, "no feature needs workers: no pool");
    cr_assert_eq(thread_count(), base + 1, "only the maintenance thread");
    cache_close(plain);
    const char *props[] = {"refresh_ahead", "0.1", "workers", "3", NULL};
    cache_t *c = open_real(props);
    char buf[64];
    cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(thread_count(), base + 1, "workers start with the first job");
    cache_close(c);
    cr_assert_eq(thread_count(), base, "cache_close joined every thread");
}

Test(resilience, close_during_background_work_is_prompt)
{
    /* refresh window: the last 90% of a 4 s TTL, so from 400 ms after each load */
    const char *props[] = {"refresh_ahead", "0.9", "workers", "2", "l1.ttl_ms", "4000",
                           "loader.timeout_ms", "200", NULL};
    int base = thread_count();
    cache_t *c = open_real(props);
    char key[16], buf[64];
    atomic_store(&db.delay_ms, 1);
    int64_t t0 = nkc_now_ns();
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "c%d", i);
        cr_assert_eq(get_str(c, key, buf, sizeof(buf)), CACHE_OK); /* each load on a worker */
    }
    usleep((useconds_t)(ms_since(t0) + 450) * 1000); /* every entry is in its window */
    atomic_store(&db.delay_ms, 50);
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "c%d", i);
        cr_assert_eq(get_str(c, key, buf, sizeof(buf)), CACHE_OK); /* schedules a slow refresh */
    }
    cr_assert_eq(stat_of(c, "refresh.scheduled"), 300);
    t0 = nkc_now_ns();
    cache_close(c);
    double took = ms_since(t0);
    cr_assert_lt(took, 1000.0, "close waited %.0f ms for queued refreshes", took);
    cr_assert_eq(thread_count(), base);
}
