/*
 * The cache object and the flow of one call across the tiers: L1 (lock-free hit
 * path), then single-flight loading through the loader, filling L1 unless a set,
 * delete or invalidation overtook the load. Every public call is bracketed so that
 * cache_close can wait for the calls in flight and refuse new ones.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ebr.h"
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* The loader's output. Lives on the leader's stack for the loader call only. */
struct cache_sink {
    struct cache *c;
    const void *key;
    size_t klen;
    nkc_entry_t *e;  /* the value put so far (owned), or NULL */
    uint64_t ttl_ms; /* 0 = default */
};

static const char *const messages[] = {
#define CACHE_ERR_TEXT(name, msg) msg,
    CACHE_ERRNO_MAP(CACHE_ERR_TEXT)
#undef CACHE_ERR_TEXT
};

const char *cache_strerror(cache_err_t err)
{
    if ((unsigned)err >= CACHE_ERR_COUNT_)
        return "unknown error code";
    return messages[err];
}

/* ---- time and TTLs ---- */

static int64_t now_ms(const struct cache *c)
{
    return c->cfg.clock_ms ? c->cfg.clock_ms(c->cfg.clock_udata) : nkc_now_coarse_ms();
}

/* ttl (0 = cap) spread by +-ttl_jitter, then held within [1, cap]. */
static uint64_t l1_ttl(const struct cache *c, uint64_t ttl, uint64_t cap)
{
    if (ttl == 0 || ttl > cap)
        ttl = cap;
    if (c->cfg.ttl_jitter > 0)
        ttl = (uint64_t)((double)ttl * (1.0 + c->cfg.ttl_jitter * (2.0 * nkc_rand_unit() - 1.0)));
    if (ttl > cap)
        ttl = cap;
    return ttl ? ttl : 1;
}

static void stamp(nkc_entry_t *e, uint64_t ttl, int64_t now)
{
    e->ttl_ms = (uint32_t)ttl; /* ttl <= l1.ttl_ms <= UINT32_MAX */
    e->expire_ms = now + (int64_t)ttl;
}

/* ---- call bracketing (see struct cache) ---- */

/* Enters an EBR section and checks for close; -1 (outside the section) if closing. */
static int call_begin(struct cache *c)
{
    nkc_ebr_enter();
    if (atomic_load_explicit(&c->closing, memory_order_seq_cst)) {
        nkc_ebr_exit();
        return -1;
    }
    return 0;
}

/* Leaves the fast path for one that may block: counted in `busy` until slow_end. */
static void slow_begin(struct cache *c)
{
    /* relaxed: the release in nkc_ebr_exit publishes it to cache_close, whose
     * grace period waits for that exit */
    atomic_fetch_add_explicit(&c->busy, 1, memory_order_relaxed);
    nkc_ebr_exit();
}

static void slow_end(struct cache *c)
{
    /* release: pairs with the acquire load in cache_close */
    atomic_fetch_sub_explicit(&c->busy, 1, memory_order_release);
}

static cache_err_t check_key(const struct cache *c, const void *key, size_t klen)
{
    if (!key || klen == 0)
        return CACHE_EINVAL;
    return klen > c->cfg.max_key_bytes ? CACHE_ETOOBIG : CACHE_OK;
}

/* ---- loading ---- */

cache_err_t cache_sink_put(cache_sink_t *sink, const void *val, size_t vlen, uint64_t ttl_ms)
{
    if (!sink || (!val && vlen > 0))
        return CACHE_EINVAL;
    if (vlen > sink->c->cfg.max_value_bytes)
        return CACHE_ETOOBIG;
    nkc_entry_t *e = nkc_entry_new(sink->key, sink->klen, vlen);
    if (!e)
        return CACHE_ENOMEM;
    if (vlen)
        memcpy(nkc_entry_value(e), val, vlen);
    if (sink->e)
        nkc_entry_unref(sink->e);
    sink->e = e;
    sink->ttl_ms = ttl_ms;
    return CACHE_OK;
}

/* Runs the loader; returns its verdict and, for OK and ENOTFOUND, the entry to
 * publish (owned by the caller; negative for ENOTFOUND when negative caching is on). */
static cache_err_t run_loader(struct cache *c, uint64_t hash, const void *key, size_t klen,
                              nkc_entry_t **out)
{
    struct cache_sink sink = {.c = c, .key = key, .klen = klen};
    *out = NULL;
    if (!c->cfg.loader)
        return CACHE_ENOTFOUND;
    nkc_stat_add(c->stats, NKC_C_LOADER_CALLS, 1);
    int64_t t0 = nkc_now_ns();
    cache_err_t st = c->cfg.loader(c->cfg.loader_udata, key, klen, &sink);
    nkc_stat_add(c->stats, NKC_C_LOADER_NS, (uint64_t)(nkc_now_ns() - t0));
    int64_t now = now_ms(c);
    if (st == CACHE_OK && sink.e) {
        nkc_stat_add(c->stats, NKC_C_LOADER_OK, 1);
        *out = sink.e;
        stamp(sink.e, l1_ttl(c, sink.ttl_ms, c->cfg.l1_ttl_ms), now);
    } else if (st == CACHE_ENOTFOUND) {
        nkc_stat_add(c->stats, NKC_C_LOADER_NOTFOUND, 1);
        if (sink.e)
            nkc_entry_unref(sink.e);
        uint64_t neg = c->cfg.negative_ttl_ms;
        if (neg > 0 && (*out = nkc_entry_new(key, klen, 0)) != NULL) {
            (*out)->node.spare |= NKC_ENTRY_NEGATIVE;
            stamp(*out, l1_ttl(c, neg, neg < c->cfg.l1_ttl_ms ? neg : c->cfg.l1_ttl_ms), now);
        }
    } else { /* a failure, or OK without a value: the loader broke its contract */
        nkc_stat_add(c->stats, NKC_C_LOADER_FAILURES, 1);
        if (sink.e)
            nkc_entry_unref(sink.e);
        st = CACHE_ELOADER;
    }
    if (*out)
        (*out)->node.hash = hash;
    return st;
}

/* Turns an entry reference into a call result: values out, negatives released. */
static cache_err_t deliver(struct cache *c, nkc_entry_t *e, cache_err_t st, nkc_entry_t **out)
{
    *out = NULL;
    if (e && nkc_entry_negative(e)) {
        nkc_entry_unref(e);
        return CACHE_ENOTFOUND;
    }
    if (e && st == CACHE_OK) {
        *out = e;
        return CACHE_OK;
    }
    if (e)
        nkc_entry_unref(e);
    (void)c;
    return st == CACHE_OK ? CACHE_ELOADER : st;
}

static cache_err_t lead_load(struct cache *c, struct nkc_flight *f, uint64_t hash, const void *key,
                             size_t klen, nkc_entry_t **out)
{
    nkc_entry_t *e;
    cache_err_t st = run_loader(c, hash, key, klen, &e);
    if (e)
        nkc_entry_ref(e); /* one for our caller; nkc_l1_complete consumes the other */
    enum nkc_fill fill = nkc_l1_complete(c->l1, f, st, e);
    if (e && fill == NKC_FILL_OVERTAKEN)
        nkc_stat_add(c->stats, NKC_C_FILLS_DROPPED, 1);
    else if (e && fill == NKC_FILL_REFUSED)
        nkc_stat_add(c->stats, NKC_C_L1_REFUSED, 1);
    return deliver(c, e, st, out);
}

/* The miss path: settle under the stripe lock, wait for a load, or lead one. */
static cache_err_t get_slow(struct cache *c, uint64_t hash, const void *key, size_t klen,
                            nkc_entry_t **out, cache_tier_t *tier)
{
    nkc_entry_t *e;
    cache_err_t st = CACHE_OK;
    struct nkc_flight *f;
    switch (nkc_l1_join(c->l1, hash, key, klen, now_ms(c), &e, &st, &f)) {
    case NKC_JOIN_HIT:
        *tier = CACHE_TIER_L1;
        return deliver(c, e, CACHE_OK, out);
    case NKC_JOIN_WAITED:
        nkc_stat_add(c->stats, NKC_C_COALESCED, 1);
        *tier = CACHE_TIER_LOADER;
        return deliver(c, e, st, out);
    case NKC_JOIN_LEAD:
        break;
    }
    *tier = CACHE_TIER_LOADER;
    return lead_load(c, f, hash, key, klen, out);
}

/* cache_get's body, inside call_begin: the fast path, then the slow one. */
static cache_err_t get_ref(struct cache *c, const void *key, size_t klen, nkc_entry_t **out,
                           cache_tier_t *tier)
{
    uint64_t hash = nkc_l1_hash(c->l1, key, klen);
    nkc_entry_t *e;
    if (nkc_l1_get(c->l1, hash, key, klen, now_ms(c), &e) == NKC_L1_HIT) {
        nkc_ebr_exit();
        nkc_stat_add(c->stats, NKC_C_L1_HITS, 1);
        *tier = CACHE_TIER_L1;
        if (nkc_entry_negative(e))
            nkc_stat_add(c->stats, NKC_C_NEGATIVE_HITS, 1);
        return deliver(c, e, CACHE_OK, out);
    }
    slow_begin(c);
    nkc_stat_add(c->stats, NKC_C_L1_MISSES, 1);
    cache_err_t err = get_slow(c, hash, key, klen, out, tier);
    slow_end(c);
    return err;
}

/* ---- the data path ---- */

static int info_has(const cache_get_info_t *info, size_t end) { return info->struct_size >= end; }
#define INFO_END(field) (offsetof(cache_get_info_t, field) + sizeof(((cache_get_info_t *)0)->field))

cache_err_t cache_get_ex(cache_t *c, const void *key, size_t klen, cache_value_t **out,
                         cache_get_info_t *info)
{
    if (out)
        *out = NULL;
    if (!c || !out || (info && !info_has(info, INFO_END(tier))))
        return CACHE_EINVAL;
    cache_err_t err = check_key(c, key, klen);
    if (err != CACHE_OK)
        return err;
    if (call_begin(c) != 0)
        return CACHE_ECLOSED;
    cache_tier_t tier = CACHE_TIER_L1;
    err = get_ref(c, key, klen, out, &tier);
    if (info && err == CACHE_OK) {
        info->tier = tier;
        if (info_has(info, INFO_END(age_ms))) {
            int64_t age = now_ms(c) - ((*out)->expire_ms - (int64_t)(*out)->ttl_ms);
            info->age_ms = age > 0 ? (uint64_t)age : 0;
        }
        if (info_has(info, INFO_END(stale)))
            info->stale = 0;
    }
    return err;
}

cache_err_t cache_get(cache_t *c, const void *key, size_t klen, cache_value_t **out)
{
    return cache_get_ex(c, key, klen, out, NULL);
}

const void *cache_value_data(const cache_value_t *v)
{
    return v ? v->data + v->klen : NULL;
}

size_t cache_value_len(const cache_value_t *v)
{
    return v ? v->vlen : 0;
}

void cache_value_release(cache_value_t *v)
{
    if (v)
        nkc_entry_unref(v);
}

static cache_err_t copy_out(const void *src, size_t n, void *buf, size_t cap, size_t *len)
{
    *len = n;
    if (n > cap)
        return CACHE_ETOOBIG;
    if (n)
        memcpy(buf, src, n);
    return CACHE_OK;
}

cache_err_t cache_get_copy(cache_t *c, const void *key, size_t klen, void *buf, size_t cap,
                           size_t *len)
{
    if (!c || !len || (!buf && cap > 0))
        return CACHE_EINVAL;
    cache_err_t err = check_key(c, key, klen);
    if (err != CACHE_OK)
        return err;
    if (call_begin(c) != 0)
        return CACHE_ECLOSED;
    uint64_t hash = nkc_l1_hash(c->l1, key, klen);
    int negative = 0;
    if (nkc_l1_get_copy(c->l1, hash, key, klen, now_ms(c), buf, cap, len, &negative) ==
        NKC_L1_HIT) {
        nkc_ebr_exit();
        nkc_stat_add(c->stats, NKC_C_L1_HITS, 1);
        if (negative) {
            nkc_stat_add(c->stats, NKC_C_NEGATIVE_HITS, 1);
            *len = 0;
            return CACHE_ENOTFOUND;
        }
        return *len > cap ? CACHE_ETOOBIG : CACHE_OK;
    }
    slow_begin(c);
    nkc_stat_add(c->stats, NKC_C_L1_MISSES, 1);
    nkc_entry_t *e;
    cache_tier_t tier;
    err = get_slow(c, hash, key, klen, &e, &tier);
    slow_end(c);
    if (err != CACHE_OK)
        return err;
    err = copy_out(cache_value_data(e), e->vlen, buf, cap, len);
    nkc_entry_unref(e);
    return err;
}

cache_err_t cache_set(cache_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                      uint64_t ttl_ms)
{
    if (!c || (!val && vlen > 0))
        return CACHE_EINVAL;
    cache_err_t err = check_key(c, key, klen);
    if (err != CACHE_OK)
        return err;
    if (vlen > c->cfg.max_value_bytes)
        return CACHE_ETOOBIG;
    if (call_begin(c) != 0)
        return CACHE_ECLOSED;
    slow_begin(c);
    nkc_entry_t *e = nkc_entry_new(key, klen, vlen);
    if (!e) {
        err = CACHE_ENOMEM;
        goto out;
    }
    if (vlen)
        memcpy(nkc_entry_value(e), val, vlen);
    e->node.hash = nkc_l1_hash(c->l1, key, klen);
    int64_t now = now_ms(c);
    stamp(e, l1_ttl(c, ttl_ms, c->cfg.l1_ttl_ms), now);
    /* Without L2, L1 is the only place the value can live: refusing it is an error. */
    if (nkc_l1_put(c->l1, e, now) != 0)
        err = CACHE_ETOOBIG;
    else
        nkc_stat_add(c->stats, NKC_C_SETS, 1);
    nkc_entry_unref(e);
out:
    slow_end(c);
    return err;
}

cache_err_t cache_del(cache_t *c, const void *key, size_t klen)
{
    if (!c)
        return CACHE_EINVAL;
    cache_err_t err = check_key(c, key, klen);
    if (err != CACHE_OK)
        return err;
    if (call_begin(c) != 0)
        return CACHE_ECLOSED;
    slow_begin(c);
    nkc_l1_remove(c->l1, nkc_l1_hash(c->l1, key, klen), key, klen);
    nkc_stat_add(c->stats, NKC_C_DELS, 1);
    slow_end(c);
    return CACHE_OK;
}

cache_err_t cache_mget(cache_t *c, size_t n, const void *const *keys, const size_t *klens,
                       cache_value_t **out, cache_err_t *status)
{
    if (!c || (n > 0 && (!keys || !klens || !out || !status)))
        return CACHE_EINVAL;
    for (size_t i = 0; i < n; i++)
        status[i] = cache_get(c, keys[i], klens[i], &out[i]);
    return CACHE_OK;
}

/* ---- lifecycle ---- */

static void *maintenance_main(void *arg)
{
    struct cache *c = arg;
    nkc_mutex_lock(&c->maint_lock);
    while (!c->maint_stop) {
        int64_t deadline = nkc_now_ns() + (int64_t)c->cfg.l1_sweep_interval_ms * 1000000;
        while (!c->maint_stop && !nkc_cond_wait_until(&c->maint_cv, &c->maint_lock, deadline)) {
        }
        if (c->maint_stop)
            break;
        nkc_mutex_unlock(&c->maint_lock);
        /* each pass visits a tenth of every table (at least 256 slots): every
         * expired entry is freed within ten sweep intervals without any read */
        nkc_l1_sweep(c->l1, now_ms(c), 256, 10);
        nkc_mutex_lock(&c->maint_lock);
    }
    nkc_mutex_unlock(&c->maint_lock);
    return NULL;
}

/* Starts a library thread with every signal blocked, so the host's handlers
 * never run on it. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static uint64_t random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == sizeof(seed))
        return seed;
    uint64_t s = (uint64_t)nkc_now_ns() ^ (uint64_t)(uintptr_t)&seed;
    return nkc_mix64(&s);
}

static void cache_destroy(struct cache *c)
{
    if (c->maintenance_started) {
        nkc_mutex_lock(&c->maint_lock);
        c->maint_stop = 1;
        nkc_cond_signal(&c->maint_cv);
        nkc_mutex_unlock(&c->maint_lock);
        pthread_join(c->maintenance, NULL);
    }
    nkc_l1_destroy(c->l1);
    nkc_mutex_destroy(&c->maint_lock);
    nkc_cond_destroy(&c->maint_cv);
    nkc_config_clear(&c->cfg);
    free(c->stats);
    free(c);
}

cache_err_t cache_open(cache_t **out, const cache_config_t *cfg, char *errbuf, size_t errlen)
{
    if (!out || !cfg) {
        nkc_errf(errbuf, errlen, "cache_open: NULL %s", !out ? "out pointer" : "configuration");
        return CACHE_EINVAL;
    }
    *out = NULL;
    if (cfg->v.l2_url[0] != '\0') {
        nkc_errf(errbuf, errlen, "l2.url: this version of libnakkucache has no Redis tier yet; "
                                 "leave l2.url empty");
        return CACHE_EINVAL;
    }
    struct cache *c = calloc(1, sizeof(*c));
    if (!c)
        return CACHE_ENOMEM;
    nkc_mutex_init(&c->maint_lock);
    nkc_cond_init(&c->maint_cv);
    struct nkc_l1_params lp = {.max_bytes = cfg->v.l1_max_bytes,
                               .max_entries = cfg->v.l1_max_entries,
                               .n_stripes = cfg->v.l1_stripes,
                               .seed = random_seed()};
    if (nkc_config_copy(&c->cfg, &cfg->v) != 0 ||
        posix_memalign((void **)&c->stats, NKC_CACHELINE, sizeof(*c->stats)) != 0 ||
        nkc_l1_create(&c->l1, &lp) != CACHE_OK) {
        nkc_errf(errbuf, errlen, "cache_open: out of memory");
        cache_destroy(c);
        return CACHE_ENOMEM;
    }
    memset(c->stats, 0, sizeof(*c->stats));
    if (start_thread(&c->maintenance, maintenance_main, c) != 0) {
        nkc_errf(errbuf, errlen, "cache_open: cannot start the maintenance thread");
        cache_destroy(c);
        return CACHE_ENOMEM;
    }
    c->maintenance_started = 1;
    *out = c;
    return CACHE_OK;
}

void cache_close(cache_t *c)
{
    if (!c)
        return;
    atomic_store_explicit(&c->closing, 1, memory_order_seq_cst);
    /* every call that missed `closing` entered its EBR section before the store:
     * after a grace period each has finished or is counted in `busy` */
    nkc_ebr_synchronize();
    int64_t backoff_us = 50;
    while (atomic_load_explicit(&c->busy, memory_order_acquire) > 0) {
        struct timespec ts = {0, backoff_us * 1000};
        nanosleep(&ts, NULL);
        if (backoff_us < 5000)
            backoff_us *= 2;
    }
    cache_destroy(c);
}
