/* Behaviour under concurrency: single-flight, bounds held under concurrent inserts,
 * the in-flight-load-vs-write rule, and cache_close with calls in flight. Also
 * built and run under ThreadSanitizer in CI. */
#include "helpers.h"

#include <sched.h>
#include <stdlib.h>

static struct fake_db db;
static cache_config_t *cfg;
static cache_t *c;

static void setup(void)
{
    memset(&db, 0, sizeof(db));
    cfg = cache_config_new();
    cfg_set(cfg, "ttl_jitter", "0");
    cache_config_set_loader(cfg, fake_loader, &db);
}
static void teardown(void)
{
    cache_close(c);
    c = NULL;
    cache_config_free(cfg);
}
TestSuite(concurrency, .init = setup, .fini = teardown, .timeout = 60);

struct reader {
    pthread_t t;
    const char *key;
    cache_err_t err;
    char value[64];
    _Atomic int *go;
};

static void *read_one(void *arg)
{
    struct reader *r = arg;
    while (r->go && !atomic_load(r->go))
        sched_yield(); /* the start line: every reader misses at once */
    r->err = get_str(c, r->key, r->value, sizeof(r->value));
    return NULL;
}

static void run_readers(struct reader *rs, int n, const char *key)
{
    _Atomic int go = 0;
    for (int i = 0; i < n; i++) {
        rs[i] = (struct reader){.key = key, .go = &go};
        cr_assert_eq(pthread_create(&rs[i].t, NULL, read_one, &rs[i]), 0);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < n; i++)
        pthread_join(rs[i].t, NULL);
}

Test(concurrency, single_flight_one_loader_call_for_64_threads)
{
    atomic_store(&db.delay_ms, 200);
    c = open_or_die(cfg);
    enum { N = 64 };
    struct reader rs[N];
    run_readers(rs, N, "hot");
    cr_assert_eq(atomic_load(&db.calls), 1, "64 concurrent misses, one loader call");
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rs[i].err, CACHE_OK);
        cr_assert_str_eq(rs[i].value, "v:hot:0");
    }
    cr_assert(stat_of(c, "load.coalesced") + stat_of(c, "l1.hits") == N - 1);
}

Test(concurrency, single_flight_shares_not_found_and_errors)
{
    atomic_store(&db.delay_ms, 200);
    atomic_store(&db.mode, LOAD_FAIL);
    c = open_or_die(cfg);
    enum { N = 16 };
    struct reader rs[N];
    run_readers(rs, N, "k");
    cr_assert_eq(atomic_load(&db.calls), 1);
    for (int i = 0; i < N; i++)
        cr_assert_eq(rs[i].err, CACHE_ELOADER, "every waiter gets the loader's failure");
    run_readers(rs, N, "k");
    cr_assert_eq(atomic_load(&db.calls), 2, "a failure is not cached");
    atomic_store(&db.mode, LOAD_NOTFOUND);
    run_readers(rs, N, "k");
    cr_assert_eq(atomic_load(&db.calls), 3);
    for (int i = 0; i < N; i++)
        cr_assert_eq(rs[i].err, CACHE_ENOTFOUND);
}

/* Reader misses, the loader reads version 0 and stalls; the writer "updates the
 * database" and calls cache_del (or cache_set); the stale result must not land. */
static void stale_fill_case(int use_set)
{
    atomic_store(&db.mode, LOAD_BLOCK);
    c = open_or_die(cfg);
    struct reader r = {.key = "p"};
    cr_assert_eq(pthread_create(&r.t, NULL, read_one, &r), 0);
    wait_flag(&db.entered);
    atomic_store(&db.version, 1);
    if (use_set)
        cr_assert_eq(cache_set(c, "p", 1, "v:p:1", 5, 0), CACHE_OK);
    else
        cr_assert_eq(cache_del(c, "p", 1), CACHE_OK);
    atomic_store(&db.release, 1);
    pthread_join(r.t, NULL);
    cr_assert_eq(r.err, CACHE_OK);
    cr_assert_str_eq(r.value, "v:p:0", "the overtaken load still answers its own caller");
    atomic_store(&db.mode, LOAD_VALUE);
    char buf[32];
    cr_assert_eq(get_str(c, "p", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:p:1", "but it was never inserted");
    cr_assert_eq(stat_of(c, "load.fills_dropped"), 1);
}

Test(concurrency, delete_overtakes_load_in_flight) { stale_fill_case(0); }
Test(concurrency, set_overtakes_load_in_flight) { stale_fill_case(1); }

struct inserter {
    pthread_t t;
    int id, n;
};

static void *insert_many(void *arg)
{
    struct inserter *in = arg;
    char key[32], val[200];
    memset(val, 'x', sizeof(val));
    for (int i = 0; i < in->n; i++) {
        int k = snprintf(key, sizeof(key), "t%d:%d", in->id, i);
        cache_err_t err = cache_set(c, key, (size_t)k, val, (size_t)(i % 200), 0);
        cr_assert_eq(err, CACHE_OK);
        if (i % 3 == 0) {
            cache_value_t *v;
            if (cache_get(c, key, (size_t)k, &v) == CACHE_OK)
                cache_value_release(v);
        }
    }
    return NULL;
}

static void bounds_case(const char *max_bytes, const char *max_entries)
{
    cfg_set(cfg, "l1.max_bytes", max_bytes);
    cfg_set(cfg, "l1.max_entries", max_entries);
    cfg_set(cfg, "l1.stripes", "4");
    c = open_or_die(cfg);
    enum { T = 4 };
    struct inserter ins[T];
    for (int i = 0; i < T; i++) {
        ins[i] = (struct inserter){.id = i, .n = 20000};
        cr_assert_eq(pthread_create(&ins[i].t, NULL, insert_many, &ins[i]), 0);
    }
    long long max_b = stat_of(c, "l1.max_bytes"), max_e = stat_of(c, "l1.max_entries");
    for (int probe = 0; probe < 50; probe++) { /* sampled while the inserts run */
        long long b = stat_of(c, "l1.bytes"), e = stat_of(c, "l1.entries");
        cr_assert(b <= max_b, "bytes %lld over %lld", b, max_b);
        cr_assert(max_e == 0 || e <= max_e, "entries %lld over %lld", e, max_e);
        usleep(2000);
    }
    for (int i = 0; i < T; i++)
        pthread_join(ins[i].t, NULL);
    long long b = stat_of(c, "l1.bytes"), e = stat_of(c, "l1.entries");
    cr_assert(b <= max_b && (max_e == 0 || e <= max_e));
    cr_assert(stat_of(c, "l1.evictions") > 0);
    cr_assert(e > 0);
}

Test(concurrency, byte_bound_holds_under_concurrent_inserts) { bounds_case("256KiB", "0"); }
Test(concurrency, entry_bound_holds_under_concurrent_inserts) { bounds_case("64MiB", "3000"); }

struct closer {
    pthread_t t;
};
static void *close_it(void *arg)
{
    (void)arg;
    cache_close(c);
    return NULL;
}

Test(concurrency, close_waits_for_calls_in_flight_and_refuses_new_ones)
{
    atomic_store(&db.mode, LOAD_BLOCK);
    c = open_or_die(cfg);
    struct reader r = {.key = "slow"};
    cr_assert_eq(pthread_create(&r.t, NULL, read_one, &r), 0);
    wait_flag(&db.entered);
    struct closer cl;
    cr_assert_eq(pthread_create(&cl.t, NULL, close_it, NULL), 0);
    /* calls that start once close has begun are refused, not served */
    cache_err_t err = CACHE_OK;
    char buf[32];
    for (int i = 0; i < 5000 && err != CACHE_ECLOSED; i++) {
        err = cache_set(c, "other", 5, "x", 1, 0);
        usleep(200);
    }
    cr_assert_eq(err, CACHE_ECLOSED);
    cr_assert_eq(get_str(c, "other", buf, sizeof(buf)), CACHE_ECLOSED);
    atomic_store(&db.release, 1); /* the load in flight finishes; close returns */
    pthread_join(r.t, NULL);
    pthread_join(cl.t, NULL);
    c = NULL;
    cr_assert_eq(r.err, CACHE_OK);
    cr_assert_str_eq(r.value, "v:slow:0");
}

struct mixer {
    pthread_t t;
    int id;
};

static void *mixed_load(void *arg)
{
    struct mixer *m = arg;
    unsigned seed = (unsigned)m->id;
    char key[32], buf[64];
    for (int i = 0; i < 20000; i++) {
        int k = snprintf(key, sizeof(key), "m%d", rand_r(&seed) % 500);
        int op = rand_r(&seed) % 10;
        if (op == 0)
            cache_del(c, key, (size_t)k);
        else if (op == 1)
            cache_set(c, key, (size_t)k, key, (size_t)k, 0);
        else {
            size_t len;
            cache_err_t err = cache_get_copy(c, key, (size_t)k, buf, sizeof(buf), &len);
            cr_assert(err == CACHE_OK, "%s", cache_strerror(err));
            /* either the loader's value or a set's: both name the key */
            cr_assert(memmem(buf, len, key, (size_t)k) != NULL);
        }
    }
    return NULL;
}

Test(concurrency, mixed_readers_writers_and_evictions)
{
    cfg_set(cfg, "l1.max_entries", "256");
    cfg_set(cfg, "l1.stripes", "4");
    c = open_or_die(cfg);
    enum { T = 4 };
    struct mixer ms[T];
    for (int i = 0; i < T; i++) {
        ms[i] = (struct mixer){.id = i + 1};
        cr_assert_eq(pthread_create(&ms[i].t, NULL, mixed_load, &ms[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(ms[i].t, NULL);
}
