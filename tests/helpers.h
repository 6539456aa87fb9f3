/* Shared test fixtures: a fake database loader, a controllable clock, small utils. */
#ifndef NKC_TEST_HELPERS_H
#define NKC_TEST_HELPERS_H

#include "config.h"
#include "nakkucache.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A clock the test moves by hand. */
struct fake_clock {
    _Atomic int64_t now_ms;
};
static inline int64_t fake_clock_read(void *ud)
{
    return atomic_load(&((struct fake_clock *)ud)->now_ms);
}

/* The "database": value = "v:<key>", or a scripted result. */
enum loader_mode { LOAD_VALUE, LOAD_NOTFOUND, LOAD_FAIL, LOAD_BLOCK, LOAD_NO_PUT };
struct fake_db {
    _Atomic int calls;
    _Atomic int mode;
    _Atomic int version;      /* appended to values: "v:<key>:<version>" */
    _Atomic uint64_t ttl_ms;  /* passed to cache_sink_put */
    _Atomic int delay_ms;
    /* LOAD_BLOCK: the loader announces `entered` and waits until `release` */
    _Atomic int entered, release;
};

static inline cache_err_t fake_loader(void *ud, const void *key, size_t klen, cache_sink_t *sink)
{
    struct fake_db *db = ud;
    atomic_fetch_add(&db->calls, 1);
    int version = atomic_load(&db->version);
    if (atomic_load(&db->delay_ms) > 0)
        usleep((useconds_t)atomic_load(&db->delay_ms) * 1000);
    switch (atomic_load(&db->mode)) {
    case LOAD_NOTFOUND: return CACHE_ENOTFOUND;
    case LOAD_FAIL: return CACHE_EL2; /* any failure code */
    case LOAD_NO_PUT: return CACHE_OK;
    case LOAD_BLOCK:
        atomic_store(&db->entered, 1);
        while (!atomic_load(&db->release))
            usleep(1000);
        break;
    default: break;
    }
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "v:%.*s:%d", (int)klen, (const char *)key, version);
    return cache_sink_put(sink, buf, (size_t)n, atomic_load(&db->ttl_ms));
}

static inline void wait_flag(_Atomic int *flag)
{
    for (int i = 0; i < 10000 && !atomic_load(flag); i++)
        usleep(1000);
    cr_assert(atomic_load(flag), "timed out waiting for a flag");
}

static inline void cfg_set(cache_config_t *cfg, const char *name, const char *value)
{
    char err[256] = "";
    cr_assert_eq(cache_config_set(cfg, name, value, err, sizeof(err)), CACHE_OK, "%s=%s: %s",
                 name, value, err);
}

static inline cache_t *open_or_die(cache_config_t *cfg)
{
    char err[256] = "";
    cache_t *c = NULL;
    cr_assert_eq(cache_open(&c, cfg, err, sizeof(err)), CACHE_OK, "cache_open: %s", err);
    return c;
}

/* cache_get_copy into a string; returns the error code. */
static inline cache_err_t get_str(cache_t *c, const char *key, char *buf, size_t cap)
{
    size_t len = 0;
    cache_err_t err = cache_get_copy(c, key, strlen(key), buf, cap - 1, &len);
    buf[err == CACHE_OK ? len : 0] = '\0';
    return err;
}

/* A number from the stats JSON by path "group.name"; -1 when absent. */
static inline long long stat_of(cache_t *c, const char *path)
{
    char *text = cache_stats_json(c);
    cr_assert_not_null(text);
    json_t *root = json_loads(text, 0, NULL);
    cache_free(text);
    cr_assert_not_null(root);
    char group[64];
    const char *dot = strchr(path, '.');
    cr_assert_not_null(dot);
    snprintf(group, sizeof(group), "%.*s", (int)(dot - path), path);
    json_t *v = json_object_get(json_object_get(root, group), dot + 1);
    long long r = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(root);
    return r;
}

/* The usual fixture: a fake database `db` and one cache `c`, closed after each test
 * (and, with a stopped Redis pid in `stopped`, that server resumed first). */
#define NKC_TEST_FIXTURE(extra_teardown)                                                    \
    static struct fake_db db;                                                             \
    static cache_t *c;                                                                    \
    static void setup(void) { memset(&db, 0, sizeof(db)); }                               \
    static void teardown(void)                                                            \
    {                                                                                     \
        extra_teardown;                                                                   \
        cache_close(c);                                                                   \
        c = NULL;                                                                         \
    }

/* fake_loader that also records the most calls running at once (loader_peak). */
static _Atomic int loader_inflight __attribute__((unused)), loader_peak __attribute__((unused));
static inline cache_err_t counting_loader(void *ud, const void *key, size_t klen,
                                          cache_sink_t *sink)
{
    int now = atomic_fetch_add(&loader_inflight, 1) + 1;
    int p = atomic_load(&loader_peak);
    while (now > p && !atomic_compare_exchange_weak(&loader_peak, &p, now)) {
    }
    cache_err_t r = fake_loader(ud, key, klen, sink);
    atomic_fetch_sub(&loader_inflight, 1);
    return r;
}

struct miss_arg {
    cache_t *c;
    int id;
    cache_err_t result;
};

static inline void *miss_thread(void *p)
{
    struct miss_arg *a = p;
    char key[32], buf[64];
    snprintf(key, sizeof(key), "distinct-%d", a->id);
    a->result = get_str(a->c, key, buf, sizeof(buf));
    return NULL;
}

/* 64 threads miss 64 distinct keys at once; counts the results. */
static inline void run_misses(cache_t *c, int *ok, int *busy)
{
    pthread_t t[64];
    struct miss_arg a[64];
    for (int i = 0; i < 64; i++) {
        a[i] = (struct miss_arg){c, i, CACHE_OK};
        pthread_create(&t[i], NULL, miss_thread, &a[i]);
    }
    *ok = *busy = 0;
    for (int i = 0; i < 64; i++) {
        pthread_join(t[i], NULL);
        *ok += a[i].result == CACHE_OK;
        *busy += a[i].result == CACHE_EBUSY;
    }
}

#endif
