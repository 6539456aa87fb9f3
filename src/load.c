/*
 * The miss path: single-flight per process (the L1 flight of the key), then L2
 * (one round trip: value and TTL, or a fill lease), then the loader. A result is
 * kept in L1 only when nothing overtook it: no local set/delete (the flight), and,
 * with Redis, no delete or set anywhere (the lease still held when filling).
 * Waiting on another process's lease is bounded by l2.lease_wait_ms.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* The loader's output. Lives on the leader's stack for the loader call only. */
struct cache_sink {
    struct cache *c;
    const void *key;
    size_t klen;
    nkc_entry_t *e;  /* the value put so far (owned), or NULL */
    uint64_t ttl_ms; /* 0 = default */
};

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

static int has_loader(const struct cache *c) { return c->cfg.loader || c->cfg.batch_loader; }

/* What a loader call produced: st, and with CACHE_OK the value e (owned) and the
 * TTL it asked for (0 = default). */
struct loaded {
    cache_err_t st;
    nkc_entry_t *e;
    uint64_t ttl_ms;
};

/* Takes a loader.max_concurrency slot, waiting at most loader.max_wait_ms for one:
 * CACHE_OK (release it with gate_exit) or CACHE_EBUSY. */
static cache_err_t gate_enter(struct cache *c)
{
    uint64_t max = c->cfg.loader_max_concurrency;
    if (!max)
        return CACHE_OK;
    int64_t deadline = nkc_now_ns() + (int64_t)c->cfg.loader_max_wait_ms * 1000000;
    cache_err_t r = CACHE_OK;
    nkc_mutex_lock(&c->gate.lock);
    while (c->gate.running >= max) {
        if (atomic_load(&c->closing) || nkc_now_ns() >= deadline) {
            r = CACHE_EBUSY;
            break;
        }
        nkc_cond_wait_until(&c->gate.cv, &c->gate.lock, deadline);
    }
    if (r == CACHE_OK)
        c->gate.running++;
    nkc_mutex_unlock(&c->gate.lock);
    if (r != CACHE_OK)
        nkc_stat_add(c->stats, NKC_C_LOADER_BUSY, 1);
    return r;
}

static void gate_exit(struct cache *c)
{
    if (!c->cfg.loader_max_concurrency)
        return;
    nkc_mutex_lock(&c->gate.lock);
    c->gate.running--;
    nkc_cond_signal(&c->gate.cv);
    nkc_mutex_unlock(&c->gate.lock);
}

/* Turns a sink and the loader's status into a result, counting it. */
static void settle(struct cache *c, struct cache_sink *sink, cache_err_t st, struct loaded *out)
{
    out->e = NULL;
    out->ttl_ms = 0;
    if (st == CACHE_OK && sink->e) {
        nkc_stat_add(c->stats, NKC_C_LOADER_OK, 1);
        out->st = CACHE_OK;
        out->e = sink->e;
        out->ttl_ms = sink->ttl_ms;
        return;
    }
    if (sink->e)
        nkc_entry_unref(sink->e);
    sink->e = NULL;
    if (st == CACHE_ENOTFOUND) {
        nkc_stat_add(c->stats, NKC_C_LOADER_NOTFOUND, 1);
        out->st = CACHE_ENOTFOUND;
        return;
    }
    /* a failure, or OK without a value: the loader broke its contract */
    nkc_stat_add(c->stats, NKC_C_LOADER_FAILURES, 1);
    out->st = CACHE_ELOADER;
}

static void loader_timing(struct cache *c, int64_t t0)
{
    int64_t ns = nkc_now_ns() - t0;
    nkc_stat_loader_ns(c->stats, ns); /* LOADER_NS and the latency histogram */
    nkc_l1_note_load_ms(c->l1, (uint64_t)(ns / 1000000));
}

/* n keys through the batch loader in one call (under one concurrency slot), or,
 * without one, through the loader one by one. */
static void call_loader_many(struct cache *c, size_t n, const void *const *keys,
                             const size_t *klens, struct loaded *out);

/* One key through the loader (or the batch loader with n = 1). */
static void call_loader(struct cache *c, const void *key, size_t klen, struct loaded *out)
{
    out->e = NULL;
    out->ttl_ms = 0;
    if (!has_loader(c)) {
        out->st = CACHE_ENOTFOUND;
        return;
    }
    if (!c->cfg.loader) {
        call_loader_many(c, 1, &key, &klen, out);
        return;
    }
    if ((out->st = gate_enter(c)) != CACHE_OK)
        return;
    struct cache_sink sink = {.c = c, .key = key, .klen = klen};
    nkc_stat_add(c->stats, NKC_C_LOADER_CALLS, 1);
    int64_t t0 = nkc_now_ns();
    cache_err_t st = c->cfg.loader(c->cfg.loader_udata, key, klen, &sink);
    loader_timing(c, t0);
    gate_exit(c);
    settle(c, &sink, st, out);
}

static void call_loader_many(struct cache *c, size_t n, const void *const *keys,
                             const size_t *klens, struct loaded *out)
{
    struct cache_sink *sinks = NULL;
    cache_sink_t **sinkp = NULL;
    cache_err_t *status = NULL;
    if (c->cfg.batch_loader && n > 0) {
        sinks = calloc(n, sizeof(*sinks));
        sinkp = calloc(n, sizeof(*sinkp));
        status = calloc(n, sizeof(*status));
    }
    if (!sinks || !sinkp || !status) {
        /* no batch loader, or no memory for a batch: key by key through the per-key
         * loader (call_loader with only a batch loader would come back here) */
        free(sinks);
        free(sinkp);
        free(status);
        int per_key = c->cfg.loader || !c->cfg.batch_loader;
        for (size_t i = 0; i < n; i++) {
            if (per_key)
                call_loader(c, keys[i], klens[i], &out[i]);
            else
                out[i] = (struct loaded){.st = CACHE_ENOMEM};
        }
        return;
    }
    cache_err_t gate = gate_enter(c);
    for (size_t i = 0; i < n; i++) {
        sinks[i] = (struct cache_sink){.c = c, .key = keys[i], .klen = klens[i]};
        sinkp[i] = &sinks[i];
        status[i] = CACHE_ELOADER; /* a key the batch loader leaves unset failed */
        out[i] = (struct loaded){.st = gate};
    }
    if (gate == CACHE_OK) {
        nkc_stat_add(c->stats, NKC_C_LOADER_CALLS, n);
        nkc_stat_add(c->stats, NKC_C_LOADER_BATCH_CALLS, 1);
        int64_t t0 = nkc_now_ns();
        cache_err_t st = c->cfg.batch_loader(c->cfg.batch_loader_udata, n, keys, klens, sinkp,
                                             status);
        loader_timing(c, t0);
        gate_exit(c);
        for (size_t i = 0; i < n; i++)
            settle(c, &sinks[i], st == CACHE_OK ? status[i] : CACHE_ELOADER, &out[i]);
    }
    free(sinks);
    free(sinkp);
    free(status);
}

/* The loader's result for a key: the one preloaded by a batch (consumed), or a
 * call now. */
static void take_loaded(struct cache *c, const void *key, size_t klen, struct loaded *pre,
                        struct loaded *out)
{
    if (pre) {
        *out = *pre;
        pre->e = NULL;
    } else {
        call_loader(c, key, klen, out);
    }
}

/* A cached not-found for L1 living min(negative_ttl_ms, cap), or NULL when
 * negative caching is off. */
static nkc_entry_t *negative_entry(struct cache *c, uint64_t hash, const void *key, size_t klen,
                                   uint64_t cap, int64_t now)
{
    uint64_t neg = c->cfg.negative_ttl_ms;
    nkc_entry_t *e = neg ? nkc_entry_new(key, klen, 0) : NULL;
    if (!e)
        return NULL;
    e->node.spare |= NKC_ENTRY_NEGATIVE;
    e->node.hash = hash;
    nkc_stamp(e, nkc_jitter_ttl(c, neg, neg < cap ? neg : cap), now);
    return e;
}

/* Turns an entry reference into a call result: values out, negatives released. */
static cache_err_t deliver(nkc_entry_t *e, cache_err_t st, nkc_entry_t **out)
{
    *out = NULL;
    if (e && !nkc_entry_negative(e) && st == CACHE_OK) {
        *out = e;
        return CACHE_OK;
    }
    if (e)
        nkc_entry_unref(e);
    if (st == CACHE_OK) /* a negative entry */
        return CACHE_ENOTFOUND;
    return st;
}

/* Ends the flight with (st, e): e (owned, may be NULL) goes to the waiters and, if
 * keep, into L1; the caller gets its own reference through *out. */
static cache_err_t publish(struct cache *c, struct nkc_flight *f, cache_err_t st, nkc_entry_t *e,
                           int keep, nkc_entry_t **out)
{
    if (e)
        nkc_entry_ref(e); /* one for our caller; nkc_l1_complete consumes the other */
    enum nkc_fill fill = nkc_l1_complete(c->l1, f, st, e, keep);
    if (e && fill == NKC_FILL_INSERTED)
        nkc_stat_add(c->stats, NKC_C_L1_FILLS, 1);
    else if (e && fill == NKC_FILL_OVERTAKEN)
        nkc_stat_add(c->stats, NKC_C_FILLS_DROPPED, 1);
    else if (e && fill == NKC_FILL_REFUSED)
        nkc_stat_add(c->stats, NKC_C_L1_REFUSED, 1);
    return deliver(e, st, out);
}

/* The loader, then L1 only: no L2, or L2 failed (cap is then l2.down_l1_ttl_ms),
 * or another process's lease outlived our wait (keep = 0: not cached anywhere). */
static cache_err_t load_direct(struct cache *c, struct nkc_flight *f, uint64_t hash,
                               const void *key, size_t klen, uint64_t cap, int keep,
                               struct loaded *pre, nkc_entry_t **out)
{
    struct loaded ld;
    take_loaded(c, key, klen, pre, &ld);
    nkc_entry_t *e = ld.e;
    int64_t now = nkc_cache_now_ms(c);
    if (ld.st == CACHE_OK) {
        e->node.hash = hash;
        nkc_stamp(e, nkc_jitter_ttl(c, ld.ttl_ms, cap), now);
    } else if (ld.st == CACHE_ENOTFOUND && has_loader(c)) {
        e = negative_entry(c, hash, key, klen, cap, now);
    }
    return publish(c, f, ld.st, e, keep, out);
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Tags an L1 copy of something read from (or written to) Redis with the connection
 * life that read it, and caps its TTL when that connection was not tracked. */
static void tag(const struct cache *c, nkc_entry_t *e, const struct nkc_origin *o, uint64_t *cap)
{
    if (!c->cfg.l2_tracking || !o || o->slot >= NKC_ENTRY_NO_SLOT)
        return;
    nkc_entry_set_origin(e, o->slot, o->gen);
    if (!o->tracked && *cap > c->cfg.l2_untracked_l1_ttl_ms)
        *cap = c->cfg.l2_untracked_l1_ttl_ms;
}

void nkc_tag_origin(const struct cache *c, nkc_entry_t *e, const struct nkc_origin *o,
                    uint64_t *cap)
{
    tag(c, e, o, cap);
}

/* The L1 cap for a copy of an L2 entry with pttl ms left (-1: no expiry): what is
 * left of its TTL, the grace not counted (at least 1 ms). */
static uint64_t l2_copy_cap(const struct cache *c, int64_t pttl)
{
    uint64_t cap = c->cfg.l1_ttl_ms;
    if (pttl < 0)
        return cap;
    uint64_t left = (uint64_t)pttl > c->l2_grace_ms ? (uint64_t)pttl - c->l2_grace_ms : 1;
    return min_u64(cap, left);
}

/* A loader result that needs writing to Redis: whether it is a cacheable
 * not-found, and the TTL it gets there. 0 when there is nothing to write. */
static int l2_write_plan(const struct cache *c, const struct loaded *ld, int *negative,
                         uint64_t *l2_ttl)
{
    *negative = ld->st == CACHE_ENOTFOUND && has_loader(c);
    if ((ld->st != CACHE_OK && !*negative) || (*negative && c->cfg.negative_ttl_ms == 0))
        return 0;
    uint64_t base = *negative ? c->cfg.negative_ttl_ms
                              : (ld->ttl_ms ? ld->ttl_ms : c->cfg.l2_ttl_ms);
    *l2_ttl = nkc_jitter_ttl(c, base, base + (uint64_t)((double)base * c->cfg.ttl_jitter));
    return 1;
}

/* After a write of ld to Redis (err, filled, origin): the L1 copy, kept only when
 * the write went through or Redis failed (a lost lease means a set or delete
 * happened meanwhile: answer, do not keep). */
static cache_err_t store_loaded(struct cache *c, struct nkc_flight *f, uint64_t hash,
                                const void *key, size_t klen, struct loaded *ld, int negative,
                                uint64_t l2_ttl, cache_err_t err, int filled,
                                const struct nkc_origin *origin, nkc_entry_t **out)
{
    uint64_t cap = min_u64(c->cfg.l1_ttl_ms, l2_ttl);
    if (err != CACHE_OK) {
        nkc_stat_add(c->stats, NKC_C_L2_FAILURES, 1);
        cap = min_u64(cap, c->cfg.l2_down_l1_ttl_ms);
    } else {
        nkc_stat_add(c->stats, filled ? NKC_C_L2_FILLS : NKC_C_L2_FILLS_LOST, 1);
    }
    int64_t now = nkc_cache_now_ms(c);
    nkc_entry_t *e = ld->e;
    if (negative) {
        e = negative_entry(c, hash, key, klen, 1, now);
        if (e && err == CACHE_OK)
            tag(c, e, origin, &cap);
        if (e) /* the cap is known only now */
            nkc_stamp(e, nkc_jitter_ttl(c, c->cfg.negative_ttl_ms,
                                        min_u64(cap, c->cfg.negative_ttl_ms)), now);
    } else {
        e->node.hash = hash;
        if (err == CACHE_OK)
            tag(c, e, origin, &cap);
        nkc_stamp(e, nkc_jitter_ttl(c, ld->ttl_ms, cap), now);
    }
    return publish(c, f, negative ? CACHE_OK : ld->st, e, err != CACHE_OK || filled, out);
}

/* We hold the lease: load, fill L2 if the lease still holds, keep in L1 only then. */
static cache_err_t load_and_fill(struct cache *c, struct nkc_flight *f, uint64_t hash,
                                 const void *key, size_t klen, uint64_t token,
                                 struct loaded *pre, nkc_entry_t **out)
{
    struct loaded ld;
    take_loaded(c, key, klen, pre, &ld);
    int negative;
    uint64_t l2_ttl;
    if (!l2_write_plan(c, &ld, &negative, &l2_ttl)) {
        nkc_l2ops_release(&c->ops, key, klen, token); /* best effort: it expires anyway */
        return publish(c, f, ld.st, NULL, 0, out);
    }
    int filled = 0;
    struct nkc_origin origin;
    cache_err_t err = nkc_l2ops_fill(&c->ops, key, klen, token, negative,
                                     negative ? NULL : nkc_entry_value(ld.e),
                                     negative ? 0 : ld.e->vlen, l2_ttl + c->l2_grace_ms, &filled,
                                     &origin);
    return store_loaded(c, f, hash, key, klen, &ld, negative, l2_ttl, err, filled, &origin, out);
}

/* We hold the key's refresh lease (its value in Redis is near its end): reload it
 * and write it back if nothing changed the key meanwhile. A failed reload changes
 * nothing: the current copies stay until their TTL (the lease expires by itself). */
static cache_err_t load_and_refill(struct cache *c, struct nkc_flight *f, uint64_t hash,
                                   const void *key, size_t klen, uint64_t token,
                                   const struct nkc_lookup *lk, struct loaded *pre,
                                   nkc_entry_t **out)
{
    struct loaded ld;
    take_loaded(c, key, klen, pre, &ld);
    int negative;
    uint64_t l2_ttl;
    if (!l2_write_plan(c, &ld, &negative, &l2_ttl))
        return publish(c, f, ld.st, NULL, 0, out);
    int filled = 0;
    struct nkc_origin origin;
    cache_err_t err = nkc_l2ops_refill(&c->ops, key, klen, token, lk->envelope,
                                       lk->envelope_len, negative,
                                       negative ? NULL : nkc_entry_value(ld.e),
                                       negative ? 0 : ld.e->vlen, l2_ttl + c->l2_grace_ms,
                                       &filled, &origin);
    return store_loaded(c, f, hash, key, klen, &ld, negative, l2_ttl, err, filled, &origin, out);
}

/* A value or not-found that Redis holds: copy it into L1 under the TTL it has left. */
static cache_err_t take_l2(struct cache *c, struct nkc_flight *f, uint64_t hash, const void *key,
                           size_t klen, const struct nkc_lookup *lk,
                           const struct nkc_origin *origin, nkc_entry_t **out)
{
    nkc_stat_add(c->stats, NKC_C_L2_HITS, 1);
    uint64_t cap = l2_copy_cap(c, lk->pttl_ms);
    int64_t now = nkc_cache_now_ms(c);
    nkc_entry_t *e;
    if (lk->found == NKC_FOUND_NEGATIVE) {
        e = negative_entry(c, hash, key, klen, 1, now);
        if (!e) /* negative caching off here: answer without keeping */
            return publish(c, f, CACHE_ENOTFOUND, NULL, 0, out);
        tag(c, e, origin, &cap);
        nkc_stamp(e, nkc_jitter_ttl(c, c->cfg.negative_ttl_ms,
                                    min_u64(cap, c->cfg.negative_ttl_ms)), now);
        return publish(c, f, CACHE_OK, e, 1, out);
    }
    if (lk->len > c->cfg.max_value_bytes || !(e = nkc_entry_new(key, klen, lk->len)))
        return publish(c, f, lk->len > c->cfg.max_value_bytes ? CACHE_ETOOBIG : CACHE_ENOMEM,
                       NULL, 0, out);
    memcpy(nkc_entry_value(e), lk->data, lk->len);
    e->node.hash = hash;
    tag(c, e, origin, &cap);
    nkc_stamp(e, nkc_jitter_ttl(c, 0, cap), now);
    return publish(c, f, CACHE_OK, e, 1, out);
}

/* Whether a lookup's outcome (r, lk) goes to the loader at once (so a batch can
 * load it with others). */
static int needs_loader(const struct cache *c, cache_err_t r, const struct nkc_lookup *lk)
{
    if (!c->l2 || r != CACHE_OK || lk->refresh)
        return 1;
    return lk->found == NKC_FOUND_LEASE_MINE || lk->found == NKC_FOUND_MISS ||
           lk->found == NKC_FOUND_BAD;
}

/* Acts on an L2 lookup (r, lk), waiting out other processes' leases. pre: the
 * loader's result when a batch already loaded the key (needs_loader), or NULL. */
static cache_err_t after_lookup(struct cache *c, struct nkc_flight *f, uint64_t hash,
                                const void *key, size_t klen, uint64_t token, cache_err_t r,
                                struct nkc_lookup *lk, struct nkc_origin *origin,
                                struct loaded *pre, nkc_entry_t **out, cache_tier_t *tier)
{
    int64_t deadline = 0, pause_ms = 2;
    cache_err_t res;
    for (;;) {
        *tier = CACHE_TIER_LOADER;
        if (r != CACHE_OK) {
            nkc_stat_add(c->stats, NKC_C_L2_FAILURES, 1);
            res = load_direct(c, f, hash, key, klen,
                              min_u64(c->cfg.l1_ttl_ms, c->cfg.l2_down_l1_ttl_ms), 1, pre, out);
            break;
        }
        if (lk->refresh) {
            nkc_stat_add(c->stats, NKC_C_L2_HITS, 1);
            res = load_and_refill(c, f, hash, key, klen, token, lk, pre, out);
            break;
        }
        if (lk->found == NKC_FOUND_VALUE || lk->found == NKC_FOUND_NEGATIVE) {
            *tier = CACHE_TIER_L2;
            res = take_l2(c, f, hash, key, klen, lk, origin, out);
            break;
        }
        if (lk->found == NKC_FOUND_BAD) {
            nkc_stat_add(c->stats, NKC_C_L2_BAD_VALUES, 1);
            res = load_direct(c, f, hash, key, klen, c->cfg.l1_ttl_ms, 1, pre, out);
            break;
        }
        if (lk->found == NKC_FOUND_LEASE_MINE) {
            nkc_stat_add(c->stats, NKC_C_L2_MISSES, 1);
            res = load_and_fill(c, f, hash, key, klen, token, pre, out);
            break;
        }
        if (lk->found == NKC_FOUND_MISS) { /* leases off (a test's control run) */
            nkc_stat_add(c->stats, NKC_C_L2_MISSES, 1);
            res = load_direct(c, f, hash, key, klen, c->cfg.l1_ttl_ms, 1, pre, out);
            if (res == CACHE_OK)
                nkc_l2ops_set(&c->ops, key, klen, cache_value_data(*out), (*out)->vlen,
                              c->cfg.l2_ttl_ms + c->l2_grace_ms, NULL);
            break;
        }
        /* someone else's lease: wait for their fill, bounded */
        int64_t now = nkc_now_ns();
        if (deadline == 0) {
            nkc_stat_add(c->stats, NKC_C_LEASE_WAITS, 1);
            deadline = now + (int64_t)c->cfg.l2_lease_wait_ms * 1000000;
        }
        if (atomic_load(&c->closing)) {
            res = publish(c, f, CACHE_ECLOSED, NULL, 0, out);
            break;
        }
        if (now >= deadline) {
            nkc_stat_add(c->stats, NKC_C_LEASE_WAIT_TIMEOUTS, 1);
            res = load_direct(c, f, hash, key, klen, c->cfg.l1_ttl_ms, 0, NULL, out);
            break;
        }
        nkc_sleep_ms(pause_ms);
        pause_ms = pause_ms < 32 ? pause_ms * 2 : 50;
        nkc_lookup_clear(lk);
        r = nkc_l2ops_lookup(&c->ops, key, klen, token, lk, origin);
    }
    nkc_lookup_clear(lk);
    return res;
}

static uint64_t lease_token(const struct cache *c)
{
    return c->cfg.test_no_leases ? 0 : (nkc_rand_u64() | 1);
}

static cache_err_t lead(struct cache *c, struct nkc_flight *f, uint64_t hash, const void *key,
                        size_t klen, nkc_entry_t **out, cache_tier_t *tier)
{
    *tier = CACHE_TIER_LOADER;
    if (!c->l2)
        return load_direct(c, f, hash, key, klen, c->cfg.l1_ttl_ms, 1, NULL, out);
    uint64_t token = lease_token(c);
    struct nkc_lookup lk;
    struct nkc_origin origin;
    cache_err_t r = nkc_l2ops_lookup(&c->ops, key, klen, token, &lk, &origin);
    return after_lookup(c, f, hash, key, klen, token, r, &lk, &origin, NULL, out, tier);
}

/* ---- stale answers ---- */

static uint64_t past_ttl(const struct cache *c, const nkc_entry_t *e)
{
    int64_t now = nkc_cache_now_ms(c);
    return now > e->expire_ms ? (uint64_t)(now - e->expire_ms) : 0;
}

/* Serves an expired entry (consumes the reference) with its reason. */
static cache_err_t serve_stale(struct cache *c, nkc_entry_t *stale, int reason, cache_err_t why,
                               nkc_entry_t **out, struct nkc_answer *ans)
{
    ans->tier = CACHE_TIER_L1;
    ans->stale = reason;
    ans->error = why;
    ans->stale_ms = past_ttl(c, stale);
    nkc_stat_add(c->stats, reason == CACHE_STALE_REVALIDATING ? NKC_C_STALE_SWR : NKC_C_STALE_ERROR,
                 1);
    return deliver(stale, CACHE_OK, out);
}

/* The failures stale_if_error_ms may hide: Redis and the loader could not answer. */
static int hideable(cache_err_t st)
{
    return st == CACHE_EL2 || st == CACHE_ETIMEOUT || st == CACHE_ELOADER || st == CACHE_EBUSY;
}

/* The end of every miss: a failure becomes the expired copy (if any, consumed)
 * when it is within stale_if_error_ms, checked now, at serving time. */
static cache_err_t finish(struct cache *c, cache_err_t st, nkc_entry_t *stale, nkc_entry_t **out,
                          struct nkc_answer *ans)
{
    if (stale && hideable(st) && past_ttl(c, stale) <= c->sie_ms)
        return serve_stale(c, stale, CACHE_STALE_ERROR, st, out, ans);
    if (stale)
        nkc_entry_unref(stale);
    return st;
}

static cache_err_t timed_out(struct cache *c)
{
    nkc_stat_add(c->stats, NKC_C_LOADER_TIMEOUTS, 1);
    return CACHE_ETIMEOUT;
}

/* ---- loads on a worker, for callers bounded by loader.timeout_ms ---- */

struct load_job {
    struct cache *c;
    struct nkc_flight *f;
    uint64_t hash;
    size_t klen;
    unsigned char key[];
};

static void load_job_run(void *arg)
{
    struct load_job *j = arg;
    nkc_entry_t *e = NULL;
    cache_tier_t tier;
    lead(j->c, j->f, j->hash, j->key, j->klen, &e, &tier);
    if (e)
        nkc_entry_unref(e);
    free(j);
}

static void load_job_cancel(void *arg)
{
    struct load_job *j = arg;
    nkc_l1_complete(j->c->l1, j->f, CACHE_ECLOSED, NULL, 0);
    free(j);
}

/* Hands the load to a worker and waits for it until deadline_ns; on a timeout the
 * load goes on and fills the tiers when it ends. */
static cache_err_t lead_timed(struct cache *c, struct nkc_flight *f, uint64_t hash,
                              const void *key, size_t klen, int64_t deadline_ns,
                              nkc_entry_t **out, cache_tier_t *tier)
{
    struct load_job *j = f ? malloc(sizeof(*j) + klen) : NULL;
    if (!j) /* no flight or no memory: load here, unbounded */
        return lead(c, f, hash, key, klen, out, tier);
    *j = (struct load_job){.c = c, .f = f, .hash = hash, .klen = klen};
    memcpy(j->key, key, klen);
    *tier = CACHE_TIER_LOADER;
    nkc_l1_flight_hold(c->l1, f);
    struct nkc_job job = {load_job_run, load_job_cancel, j};
    if (nkc_workers_submit(c->workers, &job) != 0) { /* queue full: refuse, do not queue */
        free(j);
        nkc_stat_add(c->stats, NKC_C_LOADER_BUSY, 1);
        nkc_l1_complete(c->l1, f, CACHE_EBUSY, NULL, 0);
    }
    nkc_entry_t *e;
    cache_err_t st;
    if (nkc_l1_flight_wait(c->l1, f, deadline_ns, &e, &st) == NKC_JOIN_TIMEOUT)
        return timed_out(c);
    return deliver(e, st, out);
}

/* ---- the miss path ---- */

static void join_request(const struct cache *c, int refresh, struct nkc_join_req *req)
{
    memset(req, 0, sizeof(*req));
    req->now_ms = nkc_cache_now_ms(c);
    req->refresh = refresh;
    if (!refresh) {
        req->stale_ms = c->stale_keep_ms;
        req->serve_stale_ms = c->workers ? c->swr_ms : 0;
        if (c->cfg.loader_timeout_ms)
            req->deadline_ns = nkc_now_ns() + (int64_t)c->cfg.loader_timeout_ms * 1000000;
    }
}

cache_err_t nkc_load(struct cache *c, uint64_t hash, const void *key, size_t klen,
                     nkc_entry_t **out, struct nkc_answer *ans)
{
    struct nkc_join_req req;
    struct nkc_join_res res;
    join_request(c, 0, &req);
    cache_err_t st;
    ans->tier = CACHE_TIER_LOADER;
    switch (nkc_l1_join(c->l1, hash, key, klen, &req, &res)) {
    case NKC_JOIN_HIT:
        ans->tier = CACHE_TIER_L1;
        return deliver(res.e, CACHE_OK, out);
    case NKC_JOIN_STALE:
        if (res.claimed)
            nkc_schedule_refresh(c, hash, key, klen);
        return serve_stale(c, res.stale, CACHE_STALE_REVALIDATING, CACHE_OK, out, ans);
    case NKC_JOIN_WAITED:
        nkc_stat_add(c->stats, NKC_C_COALESCED, 1);
        st = deliver(res.e, res.status, out);
        break;
    case NKC_JOIN_TIMEOUT:
        st = timed_out(c);
        break;
    case NKC_JOIN_LEAD:
        if (c->cfg.loader_timeout_ms && c->workers)
            st = lead_timed(c, res.flight, hash, key, klen, req.deadline_ns, out, &ans->tier);
        else
            st = lead(c, res.flight, hash, key, klen, out, &ans->tier);
        break;
    default: /* NKC_JOIN_BUSY is for refreshes only */
        st = CACHE_EBUSY;
        break;
    }
    return finish(c, st, res.stale, out, ans);
}

/* The Redis TTL left under which a refresh reloads the value instead of copying
 * it: the last refresh_ahead fraction of l2.ttl_ms, and at least three average
 * load times (times beta when XFetch is on), so the reload ends before expiry;
 * plus the grace (l2_grace_ms) Redis keeps values past their TTL. */
static uint64_t l2_refresh_ms(const struct cache *c)
{
    double frac = c->cfg.refresh_ahead * (double)c->cfg.l2_ttl_ms;
    double beta = c->cfg.refresh_beta > 1 ? c->cfg.refresh_beta : 1;
    double loads = 3.0 * beta * (double)nkc_l1_load_ms(c->l1);
    double ms = (frac > loads ? frac : loads) + (double)c->l2_grace_ms;
    return ms < 1 ? 1 : (uint64_t)ms;
}

/* Many keys: joins each, then one L2 round trip for all leaders, then one batch
 * load for those that need the loader, then each key's fill. With refresh, the
 * keys are background refreshes: they lead over fresh entries, skip keys already
 * loading, and reload values near their end in Redis (l2_refresh_ms). */
static void load_many(struct cache *c, size_t n, const void *const *keys, const size_t *klens,
                      const uint64_t *hashes, nkc_entry_t **out, cache_err_t *status,
                      int refresh)
{
    struct nkc_flight **flights = calloc(n, sizeof(*flights));
    nkc_entry_t **stale = calloc(n, sizeof(*stale));
    uint64_t *tokens = calloc(n, sizeof(*tokens));
    struct nkc_lookup *lks = calloc(n, sizeof(*lks));
    struct loaded *pre = calloc(n, sizeof(*pre));
    const void **lkeys = calloc(n, sizeof(*lkeys)), **bkeys = calloc(n, sizeof(*bkeys));
    size_t *lklens = calloc(n, sizeof(*lklens)), *bklens = calloc(n, sizeof(*bklens));
    size_t *idx = calloc(n, sizeof(*idx)), m = 0;
    int *need = calloc(n, sizeof(*need));
    struct nkc_answer ans;
    cache_tier_t tier;
    if (!flights || !stale || !tokens || !lks || !pre || !lkeys || !bkeys || !lklens || !bklens ||
        !idx || !need) {
        for (size_t i = 0; i < n; i++) /* no memory to batch: one key at a time */
            status[i] = refresh ? CACHE_ENOMEM : nkc_load(c, hashes[i], keys[i], klens[i], &out[i],
                                                          &ans);
        goto out;
    }
    struct nkc_join_req req;
    join_request(c, refresh, &req);
    for (size_t i = 0; i < n; i++) {
        struct nkc_join_res res;
        enum nkc_join j = nkc_l1_join(c->l1, hashes[i], keys[i], klens[i], &req, &res);
        stale[i] = res.stale;
        switch (j) {
        case NKC_JOIN_LEAD:
            flights[i] = res.flight;
            idx[m] = i;
            lkeys[m] = keys[i];
            lklens[m] = klens[i];
            tokens[m] = lease_token(c);
            m++;
            continue;
        case NKC_JOIN_STALE:
            if (res.claimed)
                nkc_schedule_refresh(c, hashes[i], keys[i], klens[i]);
            stale[i] = NULL;
            status[i] = serve_stale(c, res.stale, CACHE_STALE_REVALIDATING, CACHE_OK, &out[i],
                                    &ans);
            continue;
        case NKC_JOIN_TIMEOUT:
            status[i] = timed_out(c);
            continue;
        case NKC_JOIN_BUSY:
            nkc_stat_add(c->stats, NKC_C_REFRESH_SKIPPED, 1);
            status[i] = CACHE_EBUSY;
            continue;
        default: /* HIT, WAITED */
            status[i] = deliver(res.e, j == NKC_JOIN_HIT ? CACHE_OK : res.status, &out[i]);
            continue;
        }
    }
    struct nkc_origin origin = {.slot = NKC_L2_NO_SLOT};
    cache_err_t r = CACHE_OK;
    if (c->l2 && m)
        r = nkc_l2ops_lookup_many(&c->ops, m, lkeys, lklens, tokens,
                                  refresh ? l2_refresh_ms(c) : 0, lks, &origin);
    size_t nb = 0;
    for (size_t k = 0; k < m; k++) {
        if ((need[k] = needs_loader(c, r, &lks[k]))) {
            bkeys[nb] = lkeys[k];
            bklens[nb] = lklens[k];
            nb++;
        }
    }
    call_loader_many(c, nb, bkeys, bklens, pre);
    for (size_t k = 0, b = 0; k < m; k++) {
        size_t i = idx[k];
        struct loaded *p = need[k] ? &pre[b++] : NULL;
        struct nkc_origin o = origin; /* a lease wait may move to another connection */
        if (c->l2)
            status[i] = after_lookup(c, flights[i], hashes[i], keys[i], klens[i], tokens[k], r,
                                     &lks[k], &o, p, &out[i], &tier);
        else
            status[i] = load_direct(c, flights[i], hashes[i], keys[i], klens[i],
                                    c->cfg.l1_ttl_ms, 1, p, &out[i]);
    }
    for (size_t i = 0; i < n; i++)
        status[i] = finish(c, status[i], stale[i], &out[i], &ans);
out:
    free(flights);
    free(stale);
    free(tokens);
    free(lks);
    free(pre);
    free(lkeys);
    free(bkeys);
    free(lklens);
    free(bklens);
    free(idx);
    free(need);
}

void nkc_load_many(struct cache *c, size_t n, const void *const *keys, const size_t *klens,
                   const uint64_t *hashes, nkc_entry_t **out, cache_err_t *status)
{
    load_many(c, n, keys, klens, hashes, out, status, 0);
}

/* ---- background refresh ---- */

struct nkc_refresh_req {
    struct nkc_refresh_req *next;
    uint64_t hash;
    size_t klen;
    unsigned char key[];
};

#define REFRESH_BATCH 64 /* keys per batch loader call */

/* Runs a batch of refreshes and counts how they ended. */
static void refresh_batch(struct cache *c, struct nkc_refresh_req **reqs, size_t n)
{
    const void *keys[REFRESH_BATCH];
    size_t klens[REFRESH_BATCH];
    uint64_t hashes[REFRESH_BATCH];
    nkc_entry_t *out[REFRESH_BATCH];
    cache_err_t status[REFRESH_BATCH];
    for (size_t i = 0; i < n; i++) {
        keys[i] = reqs[i]->key;
        klens[i] = reqs[i]->klen;
        hashes[i] = reqs[i]->hash;
        out[i] = NULL;
    }
    load_many(c, n, keys, klens, hashes, out, status, 1);
    for (size_t i = 0; i < n; i++) {
        if (out[i])
            nkc_entry_unref(out[i]);
        if (status[i] == CACHE_OK || status[i] == CACHE_ENOTFOUND)
            nkc_stat_add(c->stats, NKC_C_REFRESH_DONE, 1);
        else if (status[i] != CACHE_EBUSY) /* skipped ones are counted already */
            nkc_stat_add(c->stats, NKC_C_REFRESH_FAILED, 1);
    }
}

/* A drain job: takes queued refreshes in batches (REFRESH_BATCH with a batch
 * loader, one by one without) until none is left or the cache closes. */
static void drain_run(void *arg)
{
    struct cache *c = arg;
    size_t max = c->cfg.batch_loader ? REFRESH_BATCH : 1;
    struct nkc_refresh_req *reqs[REFRESH_BATCH];
    for (;;) {
        size_t n = 0;
        nkc_mutex_lock(&c->refresh.lock);
        while (n < max && c->refresh.head && !atomic_load(&c->closing)) {
            reqs[n++] = c->refresh.head;
            c->refresh.head = c->refresh.head->next;
            c->refresh.n--;
        }
        if (!c->refresh.head)
            c->refresh.tail = NULL;
        if (n == 0)
            c->refresh.drains--;
        nkc_mutex_unlock(&c->refresh.lock);
        if (n == 0)
            return;
        refresh_batch(c, reqs, n);
        for (size_t i = 0; i < n; i++)
            free(reqs[i]);
    }
}

static void drain_cancel(void *arg)
{
    struct cache *c = arg;
    nkc_mutex_lock(&c->refresh.lock);
    c->refresh.drains--;
    nkc_mutex_unlock(&c->refresh.lock);
}

void nkc_schedule_refresh(struct cache *c, uint64_t hash, const void *key, size_t klen)
{
    struct nkc_refresh_req *r = c->workers ? malloc(sizeof(*r) + klen) : NULL;
    if (!r) {
        nkc_stat_add(c->stats, NKC_C_REFRESH_SKIPPED, 1);
        return;
    }
    r->next = NULL;
    r->hash = hash;
    r->klen = klen;
    memcpy(r->key, key, klen);
    nkc_mutex_lock(&c->refresh.lock);
    if (c->refresh.n >= c->cfg.workers_queue) {
        nkc_mutex_unlock(&c->refresh.lock);
        free(r);
        nkc_stat_add(c->stats, NKC_C_REFRESH_SKIPPED, 1);
        return;
    }
    if (c->refresh.tail)
        c->refresh.tail->next = r;
    else
        c->refresh.head = r;
    c->refresh.tail = r;
    c->refresh.n++;
    /* one drain per worker at most: each takes from the shared list */
    int start = c->refresh.drains < c->cfg.workers;
    if (start)
        c->refresh.drains++;
    nkc_mutex_unlock(&c->refresh.lock);
    nkc_stat_add(c->stats, NKC_C_REFRESH_SCHEDULED, 1);
    struct nkc_job job = {drain_run, drain_cancel, c};
    if (start && nkc_workers_submit(c->workers, &job) != 0)
        drain_cancel(c); /* the next schedule starts one; close frees what is left */
}

void nkc_refresh_clear(struct cache *c)
{
    nkc_mutex_lock(&c->refresh.lock);
    struct nkc_refresh_req *r = c->refresh.head;
    c->refresh.head = c->refresh.tail = NULL;
    c->refresh.n = 0;
    nkc_mutex_unlock(&c->refresh.lock);
    while (r) {
        struct nkc_refresh_req *next = r->next;
        free(r);
        r = next;
    }
}
