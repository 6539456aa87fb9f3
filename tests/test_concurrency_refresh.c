/* Background work under concurrency (also run under ThreadSanitizer in CI):
 * readers, writers and refreshes on a few hot keys with short TTLs, every stale
 * mode and a loader deadline on, then cache_close while refreshes and timed loads
 * are queued and running. Asserts that every answer is a well-formed value of its
 * own key; ThreadSanitizer and ASan check the rest. */
#include "helpers.h"

#include <stdlib.h>

#define KEYS 8
#define THREADS 6

static struct fake_db db;
static cache_t *c;
/* the version each key's writer last completed (cache_set), per key */
static _Atomic int written[KEYS];
static _Atomic int bad_values, stop;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    char key[16], buf[128];
    while (!atomic_load(&stop)) {
        int k = (int)(rand_r(&seed) % KEYS);
        snprintf(key, sizeof(key), "h%d", k);
        int op = (int)(rand_r(&seed) % 100);
        if (op < 3 && (uintptr_t)arg == 1) { /* one writer: versions only grow */
            int v = atomic_load(&written[k]) + 1;
            int n = snprintf(buf, sizeof(buf), "v:%s:%d", key, v);
            if (cache_set(c, key, strlen(key), buf, (size_t)n, 0) == CACHE_OK)
                atomic_store(&written[k], v);
            continue;
        }
        if (op < 5) {
            cache_del(c, key, strlen(key));
            continue;
        }
        cache_err_t err = get_str(c, key, buf, sizeof(buf));
        if (err != CACHE_OK && err != CACHE_ETIMEOUT && err != CACHE_EBUSY)
            atomic_fetch_add(&bad_values, 1);
        if (err == CACHE_OK) {
            char want[32];
            snprintf(want, sizeof(want), "v:%s:", key);
            if (strncmp(buf, want, strlen(want)) != 0)
                atomic_fetch_add(&bad_values, 1);
        }
    }
    return NULL;
}

static cache_err_t versioned_loader(void *ud, const void *key, size_t klen, cache_sink_t *sink)
{
    (void)ud;
    atomic_fetch_add(&db.calls, 1);
    int k = ((const char *)key)[klen - 1] - '0';
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "v:%.*s:%d", (int)klen, (const char *)key,
                     atomic_load(&written[k]));
    if (atomic_load(&db.calls) % 7 == 0)
        usleep(2000); /* some loads are slow: deadlines and stale answers fire */
    return cache_sink_put(sink, buf, (size_t)n, 0);
}

Test(concurrency_refresh, readers_writers_refreshes_and_close, .timeout = 120)
{
    memset(&db, 0, sizeof(db));
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "l1.ttl_ms", "20");
    cfg_set(cfg, "refresh_ahead", "0.5");
    cfg_set(cfg, "stale_while_revalidate_ms", "10");
    cfg_set(cfg, "stale_if_error_ms", "50");
    cfg_set(cfg, "max_stale_ms", "30");
    cfg_set(cfg, "loader.timeout_ms", "1");
    cfg_set(cfg, "loader.max_concurrency", "2");
    cfg_set(cfg, "workers", "2");
    cfg_set(cfg, "workers.queue", "4");
    cache_config_set_loader(cfg, versioned_loader, NULL);
    c = open_or_die(cfg);
    cache_config_free(cfg);
    pthread_t t[THREADS];
    atomic_store(&stop, 0);
    for (uintptr_t i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, worker, (void *)(i + 1)), 0);
    usleep(1500 * 1000);
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_gt(stat_of(c, "refresh.scheduled"), 0);
    cache_close(c); /* refreshes and timed loads may still be queued or running */
    c = NULL;
    cr_assert_eq(atomic_load(&bad_values), 0, "answers that were not a value of their key");
    cr_assert_gt(atomic_load(&db.calls), 10);
}
