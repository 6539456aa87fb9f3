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

/* ---- call bracketing (see struct cache) ---- */

static cache_err_t check_key(const struct cache *c, const void *key, size_t klen)
{
    if (!key || klen == 0)
        return CACHE_EINVAL;
    return klen > c->cfg.max_key_bytes ? CACHE_ETOOBIG : CACHE_OK;
}

/* The start of every single-key call: the key's checks, then nkc_call_begin. On
 * CACHE_OK the caller is inside the EBR section nkc_call_begin opened. */
static cache_err_t begin_keyed(struct cache *c, const void *key, size_t klen)
{
    cache_err_t err = check_key(c, key, klen);
    if (err != CACHE_OK)
        return err;
    return nkc_call_begin(c) != 0 ? CACHE_ECLOSED : CACHE_OK;
}

/* ---- Redis, tracking, replaying failed deletes ---- */

static cache_err_t open_l2(struct cache *c, char *errbuf, size_t errlen)
{
    if (c->cfg.l2_url[0] == '\0')
        return CACHE_OK;
    struct nkc_l2_params p = {.cfg = &c->cfg};
    cache_err_t err = nkc_l2_open(&c->l2, &p, errbuf, errlen);
    if (err != CACHE_OK)
        return err;
    c->ops = (struct nkc_l2ops){.l2 = c->l2,
                                .prefix = c->cfg.l2_key_prefix,
                                .prefix_len = strlen(c->cfg.l2_key_prefix),
                                .lease_ms = c->cfg.l2_lease_ms,
                                .max_value = c->cfg.l2_max_value_bytes};
    if (c->cfg.l2_retry_invalidations) {
        c->retry.keys = calloc(c->cfg.l2_retry_invalidations, sizeof(*c->retry.keys));
        c->retry.klens = calloc(c->cfg.l2_retry_invalidations, sizeof(*c->retry.klens));
        if (!c->retry.keys || !c->retry.klens)
            return CACHE_ENOMEM;
        c->retry.cap = c->cfg.l2_retry_invalidations;
    }
    return CACHE_OK;
}

/* An invalidation from Redis (tracker thread): someone wrote the key. */
static void invalidate_key(void *udata, const void *key, size_t klen)
{
    struct cache *c = udata;
    nkc_stat_add(c->stats, NKC_C_INVALIDATIONS, 1);
    nkc_l1_invalidate(c->l1, nkc_l1_hash(c->l1, key, klen), key, klen,
                      !c->cfg.test_no_overtake);
}

static void invalidate_all(void *udata, enum nkc_flush_cause cause)
{
    struct cache *c = udata;
    nkc_stat_add(c->stats, cause == NKC_FLUSH_SERVER_FLUSH ? NKC_C_FLUSH_SERVER
                                                           : NKC_C_FLUSH_SUBSCRIBER, 1);
}

static cache_err_t start_tracking(struct cache *c, char *errbuf, size_t errlen)
{
    struct nkc_track_params p = {.l2 = c->l2,
                                 .prefix = c->cfg.l2_key_prefix,
                                 .prefix_len = strlen(c->cfg.l2_key_prefix),
                                 .ping_ms = (int64_t)c->cfg.l2_ping_interval_ms,
                                 .on_key = invalidate_key,
                                 .on_flush = invalidate_all,
                                 .udata = c};
    char msg[256] = "";
    cache_err_t err = nkc_track_start(&c->track, &p, msg, sizeof(msg));
    if (err != CACHE_OK)
        nkc_errf(errbuf, errlen, "l2.tracking: %s (grant the ACL in README.md, or set "
                                 "l2.tracking=off)", msg);
    return err;
}

/* Remembers a delete Redis did not take, to replay it when Redis answers again. */
static void retry_later(struct cache *c, const void *key, size_t klen)
{
    if (!c->retry.cap)
        return;
    void *copy = malloc(klen);
    nkc_mutex_lock(&c->retry.lock);
    if (copy && c->retry.n < c->retry.cap) {
        size_t at = (c->retry.head + c->retry.n++) % c->retry.cap;
        memcpy(copy, key, klen);
        c->retry.keys[at] = copy;
        c->retry.klens[at] = klen;
        copy = NULL;
        nkc_stat_add(c->stats, NKC_C_RETRY_QUEUED, 1);
    } else {
        nkc_stat_add(c->stats, NKC_C_RETRY_DROPPED, 1);
    }
    nkc_mutex_unlock(&c->retry.lock);
    free(copy);
}

/* Replays queued deletes, oldest first, until one fails (maintenance thread). */
static void replay_deletes(struct cache *c)
{
    for (;;) {
        nkc_mutex_lock(&c->retry.lock);
        void *key = c->retry.n ? c->retry.keys[c->retry.head] : NULL;
        size_t klen = c->retry.n ? c->retry.klens[c->retry.head] : 0;
        nkc_mutex_unlock(&c->retry.lock);
        if (!key || nkc_l2ops_del(&c->ops, key, klen) != CACHE_OK)
            return;
        nkc_l1_remove(c->l1, nkc_l1_hash(c->l1, key, klen), key, klen);
        nkc_mutex_lock(&c->retry.lock); /* only this thread pops */
        c->retry.head = (c->retry.head + 1) % c->retry.cap;
        c->retry.n--;
        nkc_mutex_unlock(&c->retry.lock);
        free(key);
        nkc_stat_add(c->stats, NKC_C_RETRY_REPLAYED, 1);
    }
}

/* cache_get's body, inside nkc_call_begin: the fast path, then the slow one. */
static cache_err_t get_ref(struct cache *c, const void *key, size_t klen, nkc_entry_t **out,
                           struct nkc_answer *ans)
{
    uint64_t hash = nkc_l1_hash(c->l1, key, klen);
    nkc_entry_t *e;
    int refresh;
    if (nkc_l1_get(c->l1, hash, key, klen, nkc_cache_now_ms(c), &e, &refresh) == NKC_L1_HIT) {
        if (refresh) /* inside the EBR section: cache_close cannot free c meanwhile */
            nkc_schedule_refresh(c, hash, key, klen);
        nkc_ebr_exit();
        nkc_stat_add(c->stats, NKC_C_L1_HITS, 1);
        ans->tier = CACHE_TIER_L1;
        if (nkc_entry_negative(e)) {
            nkc_stat_add(c->stats, NKC_C_NEGATIVE_HITS, 1);
            nkc_entry_unref(e);
            return CACHE_ENOTFOUND;
        }
        *out = e;
        return CACHE_OK;
    }
    nkc_slow_begin(c);
    nkc_stat_add(c->stats, NKC_C_L1_MISSES, 1);
    cache_err_t err = nkc_load(c, hash, key, klen, out, ans);
    nkc_slow_end(c);
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
    cache_err_t err = begin_keyed(c, key, klen);
    if (err != CACHE_OK)
        return err;
    struct nkc_answer ans = {.tier = CACHE_TIER_L1};
    err = get_ref(c, key, klen, out, &ans);
    if (info && err == CACHE_OK) {
        info->tier = ans.tier;
        if (info_has(info, INFO_END(age_ms))) {
            int64_t age = nkc_cache_now_ms(c) - ((*out)->expire_ms - (int64_t)(*out)->ttl_ms);
            info->age_ms = age > 0 ? (uint64_t)age : 0;
        }
        if (info_has(info, INFO_END(stale)))
            info->stale = ans.stale;
        if (info_has(info, INFO_END(error)))
            info->error = ans.error;
        if (info_has(info, INFO_END(stale_ms)))
            info->stale_ms = ans.stale_ms;
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
    cache_err_t err = begin_keyed(c, key, klen);
    if (err != CACHE_OK)
        return err;
    uint64_t hash = nkc_l1_hash(c->l1, key, klen);
    int negative = 0, refresh;
    if (nkc_l1_get_copy(c->l1, hash, key, klen, nkc_cache_now_ms(c), buf, cap, len, &negative,
                        &refresh) == NKC_L1_HIT) {
        if (refresh) /* inside the EBR section, as in get_ref */
            nkc_schedule_refresh(c, hash, key, klen);
        nkc_ebr_exit();
        nkc_stat_add(c->stats, NKC_C_L1_HITS, 1);
        if (negative) {
            nkc_stat_add(c->stats, NKC_C_NEGATIVE_HITS, 1);
            *len = 0;
            return CACHE_ENOTFOUND;
        }
        return *len > cap ? CACHE_ETOOBIG : CACHE_OK;
    }
    nkc_slow_begin(c);
    nkc_stat_add(c->stats, NKC_C_L1_MISSES, 1);
    nkc_entry_t *e;
    struct nkc_answer ans;
    err = nkc_load(c, hash, key, klen, &e, &ans);
    nkc_slow_end(c);
    if (err != CACHE_OK)
        return err;
    err = copy_out(cache_value_data(e), e->vlen, buf, cap, len);
    nkc_entry_unref(e);
    return err;
}

/* The L2 TTL for a write or fill: ttl_ms (0 = l2.ttl_ms) spread by +-ttl_jitter. */
static uint64_t l2_ttl(const struct cache *c, uint64_t ttl_ms)
{
    uint64_t base = ttl_ms ? ttl_ms : c->cfg.l2_ttl_ms;
    return nkc_jitter_ttl(c, base, base + (uint64_t)((double)base * c->cfg.ttl_jitter));
}

/* cache_set's body, past validation and nkc_call_begin. */
static cache_err_t set_value(struct cache *c, const void *key, size_t klen, const void *val,
                             size_t vlen, uint64_t ttl_ms)
{
    uint64_t hash = nkc_l1_hash(c->l1, key, klen);
    uint64_t cap = c->cfg.l1_ttl_ms, ticket = NKC_NO_TICKET;
    struct nkc_origin origin = {.slot = NKC_L2_NO_SLOT};
    if (c->l2) {
        ticket = nkc_l1_ticket(c->l1, hash);
        uint64_t l2 = l2_ttl(c, ttl_ms);
        cache_err_t err = nkc_l2ops_set(&c->ops, key, klen, val, vlen, l2 + c->l2_grace_ms,
                                        &origin);
        if (err != CACHE_OK) { /* Redis did not take it: our old copy must go too */
            nkc_l1_remove(c->l1, hash, key, klen);
            nkc_stat_add(c->stats, NKC_C_WRITE_FAILURES, 1);
            return err;
        }
        cap = cap < l2 ? cap : l2;
    }
    nkc_entry_t *e = nkc_entry_new(key, klen, vlen);
    if (!e) {
        nkc_l1_remove(c->l1, hash, key, klen);
        return c->l2 ? CACHE_OK : CACHE_ENOMEM; /* with L2 the write itself succeeded */
    }
    if (vlen)
        memcpy(nkc_entry_value(e), val, vlen);
    e->node.hash = hash;
    if (c->l2)
        nkc_tag_origin(c, e, &origin, &cap);
    int64_t now = nkc_cache_now_ms(c);
    nkc_stamp(e, nkc_jitter_ttl(c, ttl_ms, cap), now);
    int r = nkc_l1_put(c->l1, e, ticket);
    nkc_entry_unref(e);
    /* Without L2, L1 is the only place the value can live: refusing it is an error. */
    if (r < 0 && !c->l2)
        return CACHE_ETOOBIG;
    nkc_stat_add(c->stats, NKC_C_SETS, 1);
    return CACHE_OK;
}

cache_err_t cache_set(cache_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                      uint64_t ttl_ms)
{
    if (!c || (!val && vlen > 0))
        return CACHE_EINVAL;
    cache_err_t err = check_key(c, key, klen);
    if (err != CACHE_OK)
        return err;
    if (vlen > c->cfg.max_value_bytes || (c->l2 && vlen > c->cfg.l2_max_value_bytes))
        return CACHE_ETOOBIG;
    if (nkc_call_begin(c) != 0)
        return CACHE_ECLOSED;
    nkc_slow_begin(c);
    err = set_value(c, key, klen, val, vlen, ttl_ms);
    nkc_slow_end(c);
    return err;
}

cache_err_t cache_del(cache_t *c, const void *key, size_t klen)
{
    if (!c)
        return CACHE_EINVAL;
    cache_err_t err = begin_keyed(c, key, klen);
    if (err != CACHE_OK)
        return err;
    nkc_slow_begin(c);
    if (c->l2 && (err = nkc_l2ops_del(&c->ops, key, klen)) != CACHE_OK)
        retry_later(c, key, klen);
    /* the local copy goes whatever Redis said, and loads in flight are overtaken */
    nkc_l1_remove(c->l1, nkc_l1_hash(c->l1, key, klen), key, klen);
    nkc_stat_add(c->stats, err == CACHE_OK ? NKC_C_DELS : NKC_C_WRITE_FAILURES, 1);
    nkc_slow_end(c);
    return err;
}

/* Fills out/status for the keys L1 serves; the others are left for nkc_load_many.
 * Returns how many were left, their indexes in miss[]. */
static size_t mget_l1(struct cache *c, size_t n, const void *const *keys, const size_t *klens,
                      cache_value_t **out, cache_err_t *status, uint64_t *hashes, size_t *miss)
{
    size_t m = 0;
    int64_t now = nkc_cache_now_ms(c);
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        status[i] = check_key(c, keys[i], klens[i]);
        if (status[i] != CACHE_OK)
            continue;
        hashes[i] = nkc_l1_hash(c->l1, keys[i], klens[i]);
        nkc_entry_t *e;
        int refresh;
        if (nkc_l1_get(c->l1, hashes[i], keys[i], klens[i], now, &e, &refresh) == NKC_L1_HIT) {
            nkc_stat_add(c->stats, NKC_C_L1_HITS, 1);
            if (refresh)
                nkc_schedule_refresh(c, hashes[i], keys[i], klens[i]);
            if (nkc_entry_negative(e)) {
                nkc_entry_unref(e);
                status[i] = CACHE_ENOTFOUND;
            } else {
                out[i] = e;
            }
            continue;
        }
        nkc_stat_add(c->stats, NKC_C_L1_MISSES, 1);
        miss[m++] = i;
    }
    return m;
}

cache_err_t cache_mget(cache_t *c, size_t n, const void *const *keys, const size_t *klens,
                       cache_value_t **out, cache_err_t *status)
{
    if (!c || (n > 0 && (!keys || !klens || !out || !status)))
        return CACHE_EINVAL;
    uint64_t *hashes = malloc((n ? n : 1) * sizeof(*hashes));
    size_t *miss = malloc((n ? n : 1) * sizeof(*miss));
    const void **mkeys = malloc((n ? n : 1) * sizeof(*mkeys));
    size_t *mklens = malloc((n ? n : 1) * sizeof(*mklens));
    uint64_t *mhashes = malloc((n ? n : 1) * sizeof(*mhashes));
    cache_value_t **mout = malloc((n ? n : 1) * sizeof(*mout));
    cache_err_t *mstatus = malloc((n ? n : 1) * sizeof(*mstatus));
    cache_err_t err = CACHE_OK;
    if (!hashes || !miss || !mkeys || !mklens || !mhashes || !mout || !mstatus) {
        err = CACHE_ENOMEM;
        goto out;
    }
    if (nkc_call_begin(c) != 0) {
        err = CACHE_ECLOSED;
        goto out;
    }
    size_t m = mget_l1(c, n, keys, klens, out, status, hashes, miss);
    nkc_slow_begin(c);
    for (size_t k = 0; k < m; k++) {
        mkeys[k] = keys[miss[k]];
        mklens[k] = klens[miss[k]];
        mhashes[k] = hashes[miss[k]];
    }
    nkc_load_many(c, m, mkeys, mklens, mhashes, mout, mstatus);
    for (size_t k = 0; k < m; k++) {
        out[miss[k]] = mout[k];
        status[miss[k]] = mstatus[k];
    }
    nkc_slow_end(c);
out:
    free(hashes);
    free(miss);
    free(mkeys);
    free(mklens);
    free(mhashes);
    free(mout);
    free(mstatus);
    return err;
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
        nkc_l1_sweep(c->l1, nkc_cache_now_ms(c), 256, 10);
        if (c->l2) {
            nkc_l2_maintain(c->l2);
            replay_deletes(c);
        }
        nkc_mutex_lock(&c->maint_lock);
    }
    nkc_mutex_unlock(&c->maint_lock);
    return NULL;
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
    nkc_workers_free(c->workers); /* before anything its jobs use */
    nkc_refresh_clear(c);
    nkc_track_stop(c->track);
    if (c->maintenance_started) {
        nkc_mutex_lock(&c->maint_lock);
        c->maint_stop = 1;
        nkc_cond_signal(&c->maint_cv);
        nkc_mutex_unlock(&c->maint_lock);
        pthread_join(c->maintenance, NULL);
    }
    for (size_t i = 0; i < c->retry.n; i++)
        free(c->retry.keys[(c->retry.head + i) % c->retry.cap]);
    free(c->retry.keys);
    free(c->retry.klens);
    nkc_mutex_destroy(&c->retry.lock);
    nkc_l2_close(c->l2);
    nkc_l1_destroy(c->l1);
    nkc_mutex_destroy(&c->maint_lock);
    nkc_cond_destroy(&c->maint_cv);
    nkc_mutex_destroy(&c->gate.lock);
    nkc_cond_destroy(&c->gate.cv);
    nkc_mutex_destroy(&c->refresh.lock);
    nkc_config_clear(&c->cfg);
    free(c->stats);
    free(c);
}

static uint64_t min_ms(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* The stale windows (each capped by max_stale_ms) and the worker pool, created
 * when refresh-ahead, stale-while-revalidate or a loader deadline needs it (its
 * threads start with the first job). */
static cache_err_t open_stale_and_workers(struct cache *c, char *errbuf, size_t errlen)
{
    c->swr_ms = min_ms(c->cfg.stale_while_revalidate_ms, c->cfg.max_stale_ms);
    c->sie_ms = min_ms(c->cfg.stale_if_error_ms, c->cfg.max_stale_ms);
    c->stale_keep_ms = c->swr_ms > c->sie_ms ? c->swr_ms : c->sie_ms;
    c->l2_grace_ms = c->l2 ? c->swr_ms : 0;
    int need = c->cfg.refresh_ahead > 0 || c->cfg.refresh_beta > 0 ||
               c->cfg.stale_while_revalidate_ms > 0 || c->cfg.loader_timeout_ms > 0;
    if (!need)
        return CACHE_OK;
    c->workers = nkc_workers_new((unsigned)c->cfg.workers, c->cfg.workers_queue);
    if (!c->workers) {
        nkc_errf(errbuf, errlen, "cache_open: out of memory");
        return CACHE_ENOMEM;
    }
    return CACHE_OK;
}

cache_err_t cache_open(cache_t **out, const cache_config_t *cfg, char *errbuf, size_t errlen)
{
    if (!out || !cfg) {
        nkc_errf(errbuf, errlen, "cache_open: NULL %s", !out ? "out pointer" : "configuration");
        return CACHE_EINVAL;
    }
    *out = NULL;
    struct cache *c = calloc(1, sizeof(*c));
    if (!c)
        return CACHE_ENOMEM;
    nkc_mutex_init(&c->maint_lock);
    nkc_cond_init(&c->maint_cv);
    nkc_mutex_init(&c->retry.lock);
    nkc_mutex_init(&c->gate.lock);
    nkc_cond_init(&c->gate.cv);
    nkc_mutex_init(&c->refresh.lock);
    if (nkc_config_copy(&c->cfg, &cfg->v) != 0 ||
        posix_memalign((void **)&c->stats, NKC_CACHELINE, sizeof(*c->stats)) != 0) {
        nkc_errf(errbuf, errlen, "cache_open: out of memory");
        cache_destroy(c);
        return CACHE_ENOMEM;
    }
    memset(c->stats, 0, sizeof(*c->stats));
    cache_err_t err = open_l2(c, errbuf, errlen);
    if (err != CACHE_OK) {
        cache_destroy(c);
        return err;
    }
    err = open_stale_and_workers(c, errbuf, errlen);
    if (err != CACHE_OK) {
        cache_destroy(c);
        return err;
    }
    struct nkc_l1_params lp = {.max_bytes = c->cfg.l1_max_bytes,
                               .max_entries = c->cfg.l1_max_entries,
                               .n_stripes = c->cfg.l1_stripes,
                               .seed = random_seed(),
                               .live = c->l2 ? nkc_l2_live(c->l2) : NULL,
                               .stale_keep_ms = c->stale_keep_ms,
                               .refresh_ahead = c->cfg.refresh_ahead,
                               .refresh_beta = c->cfg.refresh_beta};
    if (nkc_l1_create(&c->l1, &lp) != CACHE_OK) {
        nkc_errf(errbuf, errlen, "cache_open: out of memory");
        cache_destroy(c);
        return CACHE_ENOMEM;
    }
    if (c->l2 && c->cfg.l2_tracking && (err = start_tracking(c, errbuf, errlen)) != CACHE_OK) {
        cache_destroy(c);
        return err;
    }
    if (nkc_thread_start(&c->maintenance, maintenance_main, c) != 0) {
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
    /* queued background jobs are cancelled (their waiters get CACHE_ECLOSED), running
     * ones end: lease and concurrency waits give up on `closing` */
    if (c->workers)
        nkc_workers_stop(c->workers);
    int64_t backoff_us = 50;
    while (atomic_load_explicit(&c->busy, memory_order_acquire) > 0) {
        struct timespec ts = {0, backoff_us * 1000};
        nanosleep(&ts, NULL);
        if (backoff_us < 5000)
            backoff_us *= 2;
    }
    cache_destroy(c);
}
