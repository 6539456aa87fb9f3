/*
 * The cache object shared by cache.c (API and lifecycle), load.c (the miss path
 * across L2 and the loader) and stats.c (rendering). Other modules see only their
 * own private headers.
 */
#ifndef NKC_INTERNAL_H
#define NKC_INTERNAL_H

#include "config.h"
#include "l1.h"
#include "l2.h"
#include "l2ops.h"
#include "stats.h"
#include "sync.h"
#include "track.h"
#include "workers.h"

struct cache {
    struct nkc_config cfg; /* immutable after cache_open */
    struct nkc_l1 *l1;
    struct nkc_l2 *l2;     /* NULL without l2.url */
    struct nkc_l2ops ops;  /* the cache's Redis operations (when l2 is set) */
    struct nkc_track *track; /* NULL unless l2.tracking */
    struct {
        nkc_mutex_t lock; /* protects the ring below */
        void **keys;
        size_t *klens;
        size_t cap, head, n;
    } retry;               /* deletes to replay (l2.retry_invalidations) */
    struct nkc_stats *stats;
    /* Background jobs (refreshes, loads under loader.timeout_ms); NULL when no
     * feature needs them. */
    struct nkc_workers *workers;
    struct {
        nkc_mutex_t lock; /* protects running; cv signals a freed slot */
        nkc_cond_t cv;
        uint64_t running; /* loader calls in progress */
    } gate;               /* loader.max_concurrency */
    struct {
        nkc_mutex_t lock;               /* protects the fields below */
        struct nkc_refresh_req *head, *tail; /* keys waiting for a background refresh */
        size_t n;
        unsigned drains;                /* drain jobs queued or running */
    } refresh;
    uint64_t stale_keep_ms;   /* how long expired entries are kept: the largest window */
    uint64_t swr_ms, sie_ms;  /* the stale windows, each capped by max_stale_ms */
    /* With L2 and stale-while-revalidate: Redis keeps every value this much longer
     * than its TTL, so a value in its stale window is still there (and its expiry
     * does not invalidate the stale L1 copy); L1 copies count from the soft end. */
    uint64_t l2_grace_ms;
    /* Set once by cache_close (seq_cst), read by every call after its EBR enter;
     * the fence in nkc_ebr_enter pairs with nkc_ebr_synchronize in cache_close. */
    _Atomic int closing;
    /* Calls past their fast path; cache_close waits for zero. */
    _Atomic int64_t busy;
    pthread_t maintenance;
    int maintenance_started;
    nkc_mutex_t maint_lock; /* protects maint_stop; maint_cv waits on it */
    nkc_cond_t maint_cv;
    int maint_stop;
};

/* Call bracketing. nkc_call_begin enters an EBR section and checks for close: -1
 * (outside the section) when closing. nkc_slow_begin leaves the fast path for one
 * that may block, counted in `busy` until nkc_slow_end. */
static inline int nkc_call_begin(struct cache *c)
{
    nkc_ebr_enter();
    if (atomic_load_explicit(&c->closing, memory_order_seq_cst)) {
        nkc_ebr_exit();
        return -1;
    }
    return 0;
}

static inline void nkc_slow_begin(struct cache *c)
{
    /* relaxed: the release in nkc_ebr_exit publishes it to cache_close, whose
     * grace period waits for that exit */
    atomic_fetch_add_explicit(&c->busy, 1, memory_order_relaxed);
    nkc_ebr_exit();
}

static inline void nkc_slow_end(struct cache *c)
{
    /* release: pairs with the acquire load in cache_close */
    atomic_fetch_sub_explicit(&c->busy, 1, memory_order_release);
}

static inline int64_t nkc_cache_now_ms(const struct cache *c)
{
    return c->cfg.clock_ms ? c->cfg.clock_ms(c->cfg.clock_udata) : nkc_now_coarse_ms();
}

/* ttl (0 = cap) spread by +-ttl_jitter, then held within [1, cap]. */
static inline uint64_t nkc_jitter_ttl(const struct cache *c, uint64_t ttl, uint64_t cap)
{
    if (ttl == 0 || ttl > cap)
        ttl = cap;
    if (c->cfg.ttl_jitter > 0)
        ttl = (uint64_t)((double)ttl * (1.0 + c->cfg.ttl_jitter * (2.0 * nkc_rand_unit() - 1.0)));
    if (ttl > cap)
        ttl = cap;
    return ttl ? ttl : 1;
}

static inline void nkc_stamp(nkc_entry_t *e, uint64_t ttl, int64_t now)
{
    e->ttl_ms = (uint32_t)ttl; /* every L1 TTL is capped by l1.ttl_ms <= UINT32_MAX */
    e->expire_ms = now + (int64_t)ttl;
}

/* Where an answer came from (cache_get_info_t without the ABI framing). */
struct nkc_answer {
    cache_tier_t tier;
    int stale;          /* enum cache_stale */
    cache_err_t error;  /* CACHE_STALE_ERROR: the failure it hid */
    uint64_t stale_ms;  /* how far past its TTL */
};

/* The miss path (load.c): waits for a load of the key in flight, or leads one
 * through L2 and the loader; serves stale entries within their windows. *out gets
 * a new reference on CACHE_OK. */
cache_err_t nkc_load(struct cache *c, uint64_t hash, const void *key, size_t klen,
                     nkc_entry_t **out, struct nkc_answer *ans);
/* Queues a background refresh of key (a hit claimed it); drops it when the queue
 * is full. */
void nkc_schedule_refresh(struct cache *c, uint64_t hash, const void *key, size_t klen);
/* Frees refresh requests still queued (cache_close, after the workers stopped). */
void nkc_refresh_clear(struct cache *c);
/* Tags an L1 copy with the Redis connection life that read or wrote it (load.c). */
void nkc_tag_origin(const struct cache *c, nkc_entry_t *e, const struct nkc_origin *o,
                    uint64_t *cap);
/* cache_mget's misses: L2 in one round trip for all leaders, then the loader. */
void nkc_load_many(struct cache *c, size_t n, const void *const *keys, const size_t *klens,
                   const uint64_t *hashes, nkc_entry_t **out, cache_err_t *status);

#endif /* NKC_INTERNAL_H */
