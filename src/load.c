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

/* Calls the loader: CACHE_OK with *val (owned) and the TTL it asked for,
 * CACHE_ENOTFOUND, or CACHE_ELOADER. */
static cache_err_t call_loader(struct cache *c, const void *key, size_t klen, nkc_entry_t **val,
                               uint64_t *ttl_ms)
{
    struct cache_sink sink = {.c = c, .key = key, .klen = klen};
    *val = NULL;
    if (!c->cfg.loader)
        return CACHE_ENOTFOUND;
    nkc_stat_add(c->stats, NKC_C_LOADER_CALLS, 1);
    int64_t t0 = nkc_now_ns();
    cache_err_t st = c->cfg.loader(c->cfg.loader_udata, key, klen, &sink);
    nkc_stat_add(c->stats, NKC_C_LOADER_NS, (uint64_t)(nkc_now_ns() - t0));
    if (st == CACHE_OK && sink.e) {
        nkc_stat_add(c->stats, NKC_C_LOADER_OK, 1);
        *val = sink.e;
        *ttl_ms = sink.ttl_ms;
        return CACHE_OK;
    }
    if (sink.e)
        nkc_entry_unref(sink.e);
    if (st == CACHE_ENOTFOUND) {
        nkc_stat_add(c->stats, NKC_C_LOADER_NOTFOUND, 1);
        return CACHE_ENOTFOUND;
    }
    /* a failure, or OK without a value: the loader broke its contract */
    nkc_stat_add(c->stats, NKC_C_LOADER_FAILURES, 1);
    return CACHE_ELOADER;
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
    if (e && fill == NKC_FILL_OVERTAKEN)
        nkc_stat_add(c->stats, NKC_C_FILLS_DROPPED, 1);
    else if (e && fill == NKC_FILL_REFUSED)
        nkc_stat_add(c->stats, NKC_C_L1_REFUSED, 1);
    return deliver(e, st, out);
}

/* The loader, then L1 only: no L2, or L2 failed (cap is then l2.down_l1_ttl_ms),
 * or another process's lease outlived our wait (keep = 0: not cached anywhere). */
static cache_err_t load_direct(struct cache *c, struct nkc_flight *f, uint64_t hash,
                               const void *key, size_t klen, uint64_t cap, int keep,
                               nkc_entry_t **out)
{
    nkc_entry_t *e;
    uint64_t ttl = 0;
    cache_err_t st = call_loader(c, key, klen, &e, &ttl);
    int64_t now = nkc_cache_now_ms(c);
    if (st == CACHE_OK) {
        e->node.hash = hash;
        nkc_stamp(e, nkc_jitter_ttl(c, ttl, cap), now);
    } else if (st == CACHE_ENOTFOUND && c->cfg.loader) {
        e = negative_entry(c, hash, key, klen, cap, now);
    }
    return publish(c, f, st, e, keep, out);
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

/* The L1 cap for a copy of an L2 entry with pttl ms left (-1: no expiry). */
static uint64_t l2_copy_cap(const struct cache *c, int64_t pttl)
{
    uint64_t cap = c->cfg.l1_ttl_ms;
    return pttl >= 0 ? min_u64(cap, pttl > 0 ? (uint64_t)pttl : 1) : cap;
}

/* We hold the lease: load, fill L2 if the lease still holds, keep in L1 only then. */
static cache_err_t load_and_fill(struct cache *c, struct nkc_flight *f, uint64_t hash,
                                 const void *key, size_t klen, uint64_t token, nkc_entry_t **out)
{
    nkc_entry_t *e;
    uint64_t ttl = 0;
    cache_err_t st = call_loader(c, key, klen, &e, &ttl);
    int negative = st == CACHE_ENOTFOUND && c->cfg.loader;
    if ((st != CACHE_OK && !negative) || (negative && c->cfg.negative_ttl_ms == 0)) {
        nkc_l2ops_release(&c->ops, key, klen, token); /* best effort: it expires anyway */
        return publish(c, f, st, NULL, 0, out);
    }
    uint64_t base = negative ? c->cfg.negative_ttl_ms : (ttl ? ttl : c->cfg.l2_ttl_ms);
    uint64_t l2_ttl = nkc_jitter_ttl(c, base, base + (uint64_t)((double)base * c->cfg.ttl_jitter));
    int filled = 0;
    struct nkc_origin origin;
    cache_err_t err = nkc_l2ops_fill(&c->ops, key, klen, token, negative,
                                     negative ? NULL : nkc_entry_value(e),
                                     negative ? 0 : e->vlen, l2_ttl, &filled, &origin);
    uint64_t cap = min_u64(c->cfg.l1_ttl_ms, l2_ttl);
    if (err != CACHE_OK) {
        nkc_stat_add(c->stats, NKC_C_L2_FAILURES, 1);
        cap = min_u64(cap, c->cfg.l2_down_l1_ttl_ms);
    } else {
        nkc_stat_add(c->stats, filled ? NKC_C_L2_FILLS : NKC_C_L2_FILLS_LOST, 1);
    }
    int64_t now = nkc_cache_now_ms(c);
    if (negative) {
        e = negative_entry(c, hash, key, klen, 1, now);
        if (e && err == CACHE_OK)
            tag(c, e, &origin, &cap);
        if (e) /* the cap is known only now */
            nkc_stamp(e, nkc_jitter_ttl(c, c->cfg.negative_ttl_ms,
                                        min_u64(cap, c->cfg.negative_ttl_ms)), now);
    } else {
        e->node.hash = hash;
        if (err == CACHE_OK)
            tag(c, e, &origin, &cap);
        nkc_stamp(e, nkc_jitter_ttl(c, ttl, cap), now);
    }
    /* a lost lease means a set or delete happened meanwhile: answer, do not keep */
    return publish(c, f, negative ? CACHE_OK : st, e, err != CACHE_OK || filled, out);
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

/* Acts on an L2 lookup (r, lk), waiting out other processes' leases. */
static cache_err_t after_lookup(struct cache *c, struct nkc_flight *f, uint64_t hash,
                                const void *key, size_t klen, uint64_t token, cache_err_t r,
                                struct nkc_lookup *lk, struct nkc_origin *origin,
                                nkc_entry_t **out, cache_tier_t *tier)
{
    int64_t deadline = 0, pause_ms = 2;
    cache_err_t res;
    for (;;) {
        *tier = CACHE_TIER_LOADER;
        if (r != CACHE_OK) {
            nkc_stat_add(c->stats, NKC_C_L2_FAILURES, 1);
            res = load_direct(c, f, hash, key, klen,
                              min_u64(c->cfg.l1_ttl_ms, c->cfg.l2_down_l1_ttl_ms), 1, out);
            break;
        }
        if (lk->found == NKC_FOUND_VALUE || lk->found == NKC_FOUND_NEGATIVE) {
            *tier = CACHE_TIER_L2;
            res = take_l2(c, f, hash, key, klen, lk, origin, out);
            break;
        }
        if (lk->found == NKC_FOUND_BAD) {
            nkc_stat_add(c->stats, NKC_C_L2_BAD_VALUES, 1);
            res = load_direct(c, f, hash, key, klen, c->cfg.l1_ttl_ms, 1, out);
            break;
        }
        if (lk->found == NKC_FOUND_LEASE_MINE) {
            nkc_stat_add(c->stats, NKC_C_L2_MISSES, 1);
            res = load_and_fill(c, f, hash, key, klen, token, out);
            break;
        }
        if (lk->found == NKC_FOUND_MISS) { /* leases off (a test's control run) */
            nkc_stat_add(c->stats, NKC_C_L2_MISSES, 1);
            res = load_direct(c, f, hash, key, klen, c->cfg.l1_ttl_ms, 1, out);
            if (res == CACHE_OK)
                nkc_l2ops_set(&c->ops, key, klen, cache_value_data(*out), (*out)->vlen,
                              c->cfg.l2_ttl_ms, NULL);
            break;
        }
        /* someone else's lease: wait for their fill, bounded */
        int64_t now = nkc_now_ns();
        if (deadline == 0) {
            nkc_stat_add(c->stats, NKC_C_LEASE_WAITS, 1);
            deadline = now + (int64_t)c->cfg.l2_lease_wait_ms * 1000000;
        }
        if (now >= deadline) {
            nkc_stat_add(c->stats, NKC_C_LEASE_WAIT_TIMEOUTS, 1);
            res = load_direct(c, f, hash, key, klen, c->cfg.l1_ttl_ms, 0, out);
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
        return load_direct(c, f, hash, key, klen, c->cfg.l1_ttl_ms, 1, out);
    uint64_t token = lease_token(c);
    struct nkc_lookup lk;
    struct nkc_origin origin;
    cache_err_t r = nkc_l2ops_lookup(&c->ops, key, klen, token, &lk, &origin);
    return after_lookup(c, f, hash, key, klen, token, r, &lk, &origin, out, tier);
}

cache_err_t nkc_load(struct cache *c, uint64_t hash, const void *key, size_t klen,
                     nkc_entry_t **out, cache_tier_t *tier)
{
    nkc_entry_t *e;
    cache_err_t st = CACHE_OK;
    struct nkc_flight *f;
    switch (nkc_l1_join(c->l1, hash, key, klen, nkc_cache_now_ms(c), &e, &st, &f)) {
    case NKC_JOIN_HIT:
        *tier = CACHE_TIER_L1;
        return deliver(e, CACHE_OK, out);
    case NKC_JOIN_WAITED:
        nkc_stat_add(c->stats, NKC_C_COALESCED, 1);
        *tier = CACHE_TIER_LOADER;
        return deliver(e, st, out);
    case NKC_JOIN_LEAD:
        break;
    }
    return lead(c, f, hash, key, klen, out, tier);
}

void nkc_load_many(struct cache *c, size_t n, const void *const *keys, const size_t *klens,
                   const uint64_t *hashes, nkc_entry_t **out, cache_err_t *status)
{
    struct nkc_flight **flights = calloc(n, sizeof(*flights));
    uint64_t *tokens = calloc(n, sizeof(*tokens));
    struct nkc_lookup *lks = calloc(n, sizeof(*lks));
    const void **lkeys = calloc(n, sizeof(*lkeys));
    size_t *lklens = calloc(n, sizeof(*lklens)), *idx = calloc(n, sizeof(*idx)), m = 0;
    cache_tier_t tier;
    if (!flights || !tokens || !lks || !lkeys || !lklens || !idx) {
        for (size_t i = 0; i < n; i++) /* no memory to batch: one key at a time */
            status[i] = nkc_load(c, hashes[i], keys[i], klens[i], &out[i], &tier);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        nkc_entry_t *e;
        cache_err_t st = CACHE_OK;
        enum nkc_join j = nkc_l1_join(c->l1, hashes[i], keys[i], klens[i], nkc_cache_now_ms(c),
                                      &e, &st, &flights[i]);
        if (j != NKC_JOIN_LEAD) {
            status[i] = deliver(e, st, &out[i]);
            continue;
        }
        idx[m] = i;
        lkeys[m] = keys[i];
        lklens[m] = klens[i];
        tokens[m] = lease_token(c);
        m++;
    }
    struct nkc_origin origin = {.slot = NKC_L2_NO_SLOT};
    cache_err_t r = c->l2 && m ? nkc_l2ops_lookup_many(&c->ops, m, lkeys, lklens, tokens, lks,
                                                       &origin)
                               : CACHE_OK;
    for (size_t k = 0; k < m; k++) {
        size_t i = idx[k];
        struct nkc_origin o = origin; /* a lease wait may move to another connection */
        if (c->l2)
            status[i] = after_lookup(c, flights[i], hashes[i], keys[i], klens[i], tokens[k], r,
                                     &lks[k], &o, &out[i], &tier);
        else
            status[i] = load_direct(c, flights[i], hashes[i], keys[i], klens[i],
                                    c->cfg.l1_ttl_ms, 1, &out[i]);
    }
out:
    free(flights);
    free(tokens);
    free(lks);
    free(lkeys);
    free(lklens);
    free(idx);
}
