/*
 * Mode l1: lookup throughput and latency of a fully prefilled L1 (every lookup
 * should hit) through cache_get + cache_value_release and through cache_get_copy,
 * against the mutex-map baseline and Caffeine on the same keys, in the same run;
 * with --read-ratio < 1 some operations are writes (cache_set; the others' insert).
 * Each thread replays its own precomputed key sequence; a batch of BATCH lookups
 * is timed as a whole (two clock reads per batch, not per lookup).
 */
#include "bench.h"
#include "l1.h"

#include <nakkucache.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEQ_LEN ((size_t)1 << 22) /* per thread; 16 MiB, replayed cyclically */
#define MAX_VALUE 16384           /* the stack buffer get_copy copies into */

/* The C implementations, in the order they are measured and printed. */
static const struct impl_name {
    const char *impl, *key;
} impls[NKB_L1_IMPLS] = {
    {"nakkucache get+release", "nakkucache_get"},
    {"nakkucache get_copy", "nakkucache_get_copy"},
    {"mutex map (baseline)", "mutex_map"},
    {"caffeine", "caffeine"},
};

/* What every measured point reads; immutable while threads run. */
struct world {
    const nkb_opts_t *o;
    nkb_keys_t keys;
    uint32_t *seqs[NKB_MAX_THREADS];
    cache_t *cache;
    nkb_lockmap_t *map;
};

struct worker {
    pthread_t tid;
    const struct world *w;
    const uint32_t *seq;
    pthread_barrier_t *start;
    atomic_int *stop; /* set by the main thread when the point's time is up */
    int impl;
    uint64_t ops, writes, misses, elapsed_ns, sink;
    nkb_hist_t hist;
};

/* One lookup each; returns 1 on a hit. Every hit reads the value's first byte into
 * *sink so no implementation can skip touching the value. */
static inline int look_get(const struct world *w, const char *k, unsigned char *buf,
                           uint64_t *sink)
{
    cache_value_t *v;

    (void)buf;
    if (cache_get(w->cache, k, w->keys.klen, &v) != CACHE_OK)
        return 0;
    *sink += *(const unsigned char *)cache_value_data(v);
    cache_value_release(v);
    return 1;
}

static inline int look_copy(const struct world *w, const char *k, unsigned char *buf,
                            uint64_t *sink)
{
    size_t len;

    if (cache_get_copy(w->cache, k, w->keys.klen, buf, MAX_VALUE, &len) != CACHE_OK)
        return 0;
    *sink += buf[0];
    return 1;
}

static inline int look_map(const struct world *w, const char *k, unsigned char *buf,
                           uint64_t *sink)
{
    size_t len;

    if (!nkb_lockmap_get_copy(w->map, k, w->keys.klen, buf, MAX_VALUE, &len))
        return 0;
    *sink += buf[0];
    return 1;
}

typedef int (*look_fn)(const struct world *w, const char *k, unsigned char *buf,
                       uint64_t *sink);

/* One write (--read-ratio < 1): key k's value replaced by value_size bytes of buf,
 * the first byte varied as the prefill does. Returns 1, or 0 when it failed. */
static inline int write_lib(const struct world *w, uint32_t k, unsigned char *buf)
{
    buf[0] = (unsigned char)k;
    return cache_set(w->cache, nkb_key(&w->keys, k), w->keys.klen, buf, w->o->value_size, 0) ==
           CACHE_OK;
}

static inline int write_map(const struct world *w, uint32_t k, unsigned char *buf)
{
    buf[0] = (unsigned char)k;
    return nkb_lockmap_put(w->map, nkb_key(&w->keys, k), w->keys.klen, buf,
                           w->o->value_size) == 0;
}

typedef int (*write_fn)(const struct world *w, uint32_t k, unsigned char *buf);

/* The measured loop, inlined into one copy per implementation (and per `writes`, a
 * constant at each call: without writes the loop is the read-only one, no branch)
 * so the lookup is a direct (inlinable) call. Stops on *stop (checked once a
 * batch) or after o->ops. A failed write counts as a miss. */
static inline __attribute__((always_inline)) void run(struct worker *wk, look_fn look,
                                                      write_fn write, int writes)
{
    const struct world *w = wk->w;
    const uint64_t limit = w->o->ops, mask = SEQ_LEN - 1;
    unsigned char buf[MAX_VALUE];
    uint64_t i = 0, misses = 0, n_writes = 0, sink = 0, t0, begin;

    if (writes)
        memset(buf, 'v', w->o->value_size); /* what the writes store */
    pthread_barrier_wait(wk->start);
    begin = t0 = nkb_now_ns();
    while (limit ? i < limit : !atomic_load_explicit(wk->stop, memory_order_relaxed)) {
        uint64_t t1;

        for (unsigned j = 0; j < NKB_L1_BATCH; j++, i++) {
            const uint32_t e = wk->seq[i & mask];

            if (writes && (e & NKB_SEQ_WRITE)) {
                misses += !write(w, NKB_SEQ_KEY(e), buf);
                n_writes++;
            } else {
                misses += !look(w, nkb_key(&w->keys, e), buf, &sink);
            }
        }
        t1 = nkb_now_ns();
        nkb_hist_add(&wk->hist, (t1 - t0) / NKB_L1_BATCH, NKB_L1_BATCH);
        t0 = t1;
    }
    wk->elapsed_ns = t0 - begin;
    wk->ops = i;
    wk->writes = n_writes;
    wk->misses = misses;
    wk->sink = sink;
}

static void *thread_main(void *arg)
{
    struct worker *wk = arg;
    const int writes = wk->w->o->read_ratio < 1.0;

    if (wk->impl == NKB_L1_GET)
        writes ? run(wk, look_get, write_lib, 1) : run(wk, look_get, write_lib, 0);
    else if (wk->impl == NKB_L1_GET_COPY)
        writes ? run(wk, look_copy, write_lib, 1) : run(wk, look_copy, write_lib, 0);
    else
        writes ? run(wk, look_map, write_map, 1) : run(wk, look_map, write_map, 0);
    return NULL;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
        /* interrupted: sleep the rest */
    }
}

static void sum_up(const struct worker *wk, unsigned n, nkb_row_t *row, nkb_hist_t *all)
{
    nkb_pct_t pct;

    for (unsigned t = 0; t < n; t++) {
        row->ops += wk[t].ops;
        row->writes += wk[t].writes;
        row->misses += wk[t].misses;
        if (wk[t].elapsed_ns > 0)
            row->ops_per_sec += (double)wk[t].ops * 1e9 / (double)wk[t].elapsed_ns;
        nkb_hist_merge(all, &wk[t].hist);
    }
    pct = nkb_hist_pct(all);
    row->p50_ns = pct.p50;
    row->p90_ns = pct.p90;
    row->p99_ns = pct.p99;
    row->p999_ns = pct.p999;
    row->max_ns = pct.max; /* of batch means, as the percentiles */
}

/* Measures implementation impl at n threads into row. Returns 0 or -1. */
static int measure(const struct world *w, int impl, unsigned n, nkb_row_t *row)
{
    struct worker *wk = calloc(n, sizeof *wk);
    nkb_hist_t *all = calloc(1, sizeof *all);
    pthread_barrier_t start;
    atomic_int stop = 0;
    unsigned started = 0;

    if (wk == NULL || all == NULL)
        goto out;
    pthread_barrier_init(&start, NULL, n + 1);
    for (; started < n; started++) {
        wk[started] = (struct worker){.w = w, .seq = w->seqs[started], .start = &start,
                                      .stop = &stop, .impl = impl};
        if (pthread_create(&wk[started].tid, NULL, thread_main, &wk[started]) != 0) {
            /* the started threads wait on the barrier forever: nothing to unwind */
            fprintf(stderr, "nakkucache-bench: cannot start thread %u\n", started + 1);
            exit(1);
        }
    }
    pthread_barrier_wait(&start);
    if (w->o->ops == 0)
        sleep_ms(w->o->duration_ms);
    atomic_store_explicit(&stop, 1, memory_order_relaxed); /* pairs with run's load */
    for (unsigned t = 0; t < n; t++)
        pthread_join(wk[t].tid, NULL);
    pthread_barrier_destroy(&start);
    *row = (nkb_row_t){.impl = impls[impl].impl, .key = impls[impl].key, .threads = n};
    sum_up(wk, n, row, all);
out:
    free(all);
    free(wk);
    return wk != NULL && all != NULL ? 0 : -1;
}

/* A fresh cache big enough for every key: no eviction, no expiry, no jitter. */
cache_t *nkb_l1_open_cache(const nkb_opts_t *o)
{
    uint64_t need_mib = ((uint64_t)o->keys * (o->key_size + o->value_size + 512) >> 20) + 64;
    char max_bytes[32], err[256];
    const char *props[][2] = {{"l1.max_bytes", max_bytes}, {"l1.ttl_ms", "86400000"},
                              {"ttl_jitter", "0"}};
    cache_config_t *cfg = cache_config_new();
    cache_t *c = NULL;
    size_t i;

    snprintf(max_bytes, sizeof max_bytes, "%lluMiB",
             (unsigned long long)(need_mib > 1024 ? need_mib : 1024));
    for (i = 0; cfg != NULL && i < sizeof props / sizeof props[0]; i++) {
        if (cache_config_set(cfg, props[i][0], props[i][1], err, sizeof err) != CACHE_OK)
            break;
    }
    if (cfg == NULL)
        fprintf(stderr, "nakkucache-bench: cache_config_new failed\n");
    else if (i < sizeof props / sizeof props[0])
        fprintf(stderr, "nakkucache-bench: %s\n", err);
    else if (cache_open(&c, cfg, err, sizeof err) != CACHE_OK)
        fprintf(stderr, "nakkucache-bench: cache_open: %s\n", err);
    cache_config_free(cfg);
    return c;
}

/* Every key into both maps, values of value_size bytes whose first byte varies. */
static int prefill(struct world *w)
{
    const nkb_opts_t *o = w->o;
    unsigned char *val = calloc(1, o->value_size);
    int rc = -1;

    if (val == NULL)
        return -1;
    for (uint32_t i = 0; i < o->keys; i++) {
        const char *k = nkb_key(&w->keys, i);
        cache_err_t err;

        val[0] = (unsigned char)i;
        err = cache_set(w->cache, k, w->keys.klen, val, o->value_size, 0);
        if (err != CACHE_OK) {
            fprintf(stderr, "nakkucache-bench: cache_set: %s\n", cache_strerror(err));
            goto out;
        }
        if (nkb_lockmap_put(w->map, k, w->keys.klen, val, o->value_size) != 0)
            goto out;
    }
    rc = 0;
out:
    free(val);
    return rc;
}

/* Builds the keys, the sequences and both prefilled maps. */
static int world_init(struct world *w, const nkb_opts_t *o)
{
    unsigned most = nkb_opts_max_threads(o);

    memset(w, 0, sizeof *w);
    w->o = o;
    if (nkb_keys_init(&w->keys, o) != 0)
        return -1;
    for (unsigned t = 0; t < most; t++) {
        if ((w->seqs[t] = nkb_seq_new(o, t, SEQ_LEN)) == NULL) {
            fprintf(stderr, "nakkucache-bench: cannot build key sequences\n");
            return -1;
        }
    }
    w->cache = nkb_l1_open_cache(o);
    w->map = nkb_lockmap_new(o->keys);
    if (w->cache == NULL || w->map == NULL)
        return -1;
    return prefill(w);
}

static void world_free_maps(struct world *w)
{
    cache_close(w->cache);
    w->cache = NULL;
    nkb_lockmap_free(w->map);
    w->map = NULL;
}

static void world_free(struct world *w)
{
    world_free_maps(w);
    for (unsigned t = 0; t < NKB_MAX_THREADS; t++)
        free(w->seqs[t]);
    nkb_keys_free(&w->keys);
}

static int by_rate(const void *a, const void *b)
{
    double x = ((const nkb_row_t *)a)->ops_per_sec, y = ((const nkb_row_t *)b)->ops_per_sec;

    return (x > y) - (x < y);
}

/* One point of one row into out. A Caffeine failure drops the Caffeine rows only. */
static int measure_cell(struct world *w, struct nkb_l1_report *rep, nkb_caffeine_t *caf,
                        int impl, unsigned n, nkb_row_t *out)
{
    if (impl != NKB_L1_CAFFEINE)
        return measure(w, impl, n, out);
    if (rep->caffeine == NKB_CAFFEINE_OK && nkb_caffeine_measure(caf, n, out) != 0) {
        rep->caffeine = NKB_CAFFEINE_FAILED;
        snprintf(rep->caffeine_why, sizeof rep->caffeine_why, "the JVM failed while measuring");
    }
    return 0;
}

/* Every point of every row, o->repeat rounds, interleaved so that drift on a shared
 * machine hits each row alike; each reported row is its median round. */
static int measure_rounds(struct world *w, struct nkb_l1_report *rep, nkb_caffeine_t *caf)
{
    const nkb_opts_t *o = w->o;
    const size_t rounds = o->repeat, cells = o->n_points * NKB_L1_IMPLS;
    nkb_row_t *runs = calloc(cells * rounds, sizeof *runs);
    int rc = -1;

    if (runs == NULL)
        return -1;
    for (size_t r = 0; r < rounds; r++) {
        for (size_t cell = 0; cell < cells; cell++) {
            int impl = (int)(cell % NKB_L1_IMPLS);
            unsigned n = o->threads[cell / NKB_L1_IMPLS];

            if (impl == NKB_L1_CAFFEINE && rep->caffeine != NKB_CAFFEINE_OK)
                continue;
            nkb_progress("l1", "%s, %u thread(s), round %zu/%zu", impls[impl].impl, n, r + 1,
                         rounds);
            if (measure_cell(w, rep, caf, impl, n, &runs[cell * rounds + r]) != 0)
                goto out;
        }
    }
    for (size_t cell = 0; cell < cells; cell++) {
        qsort(runs + cell * rounds, rounds, sizeof *runs, by_rate);
        rep->rows[cell / NKB_L1_IMPLS][cell % NKB_L1_IMPLS] = runs[cell * rounds + rounds / 2];
    }
    rc = 0;
out:
    nkb_progress_done();
    free(runs);
    return rc;
}

/* Starts Caffeine's JVM (it prefills and warms up while this process waits), then
 * measures every row. */
static int measure_all(struct world *w, struct nkb_l1_report *rep)
{
    const nkb_opts_t *o = w->o;
    nkb_caffeine_t *caf = NULL;
    int rc;

    rep->caffeine_heap = -1.0;
    if (!o->caffeine) {
        rep->caffeine = NKB_CAFFEINE_OFF;
        snprintf(rep->caffeine_why, sizeof rep->caffeine_why, "--no-caffeine");
    } else {
        fprintf(stderr, "nakkucache-bench l1: starting caffeine (prefill, JVM warm-up %llu ms)\n",
                (unsigned long long)o->warmup_ms);
        rep->caffeine = nkb_caffeine_start(o, w->seqs, SEQ_LEN, &caf, rep->caffeine_why,
                                           sizeof rep->caffeine_why);
        if (caf != NULL)
            rep->caffeine_heap = nkb_caffeine_heap_per_entry(caf);
    }
    rc = measure_rounds(w, rep, caf);
    nkb_caffeine_stop(caf);
    world_free_maps(w);
    return rc;
}

int nkb_l1_main(int argc, char **argv)
{
    nkb_opts_t o;
    struct world w;
    struct nkb_l1_report *rep;
    int rc;

    nkb_opts_init(&o);
    rc = nkb_opts_parse(&o, argc, argv);
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    rep = calloc(1, sizeof *rep);
    if (rep != NULL)
        rep->load_before = nkb_loadavg();
    if (rep == NULL || world_init(&w, &o) != 0 || measure_all(&w, rep) != 0) {
        rc = 1;
        goto out;
    }
    rep->o = &o;
    rep->batch = NKB_L1_BATCH;
    if (o.memory && nkb_memory_measure(&o, &rep->memory) == 0) {
        rep->has_memory = 1;
        rep->memory.caffeine_heap = rep->caffeine_heap;
    }
    rep->load_after = nkb_loadavg();
    if (nkb_l1_report_print(rep) != 0)
        rc = 1;
out:
    if (rep != NULL)
        world_free(&w);
    free(rep);
    return rc;
}
