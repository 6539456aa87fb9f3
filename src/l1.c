/*
 * L1 implementation. Invariants:
 *  - Slots hold (tag << 48 | pointer); 0 is empty. Writers change slots only under
 *    the stripe lock, with release stores; readers probe with acquire loads inside
 *    an EBR section and may see a transient false miss, never a wrong entry.
 *  - An entry in a table has one reference owned by the table; after removal that
 *    reference is dropped only once the grace period of its removal has passed, so
 *    a reader that found it may take a reference with a plain increment.
 *  - Cost bounds: a hit is one hash, one probe run (expected < 3 slots at load
 *    <= 3/4) and one atomic increment; a sweep pass visits at most `budget` slots.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "l1.h"

#include "ebr.h"
#include "sync.h"

#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define PTR_BITS 48
#define PTR_MASK ((UINT64_C(1) << PTR_BITS) - 1)
#define MIN_SLOTS 16
#define SLOT_CHARGE 16 /* bytes charged per entry for its table slot (load 1/2..3/4) */
#define LIMBO_BATCH 128

struct table {
    uint64_t mask;
    uint64_t used;              /* under the stripe lock */
    struct table *retired_next; /* limbo link, under the stripe lock */
    uint64_t retired_epoch;
    _Atomic uint64_t slots[];
};

struct nkc_flight {
    struct nkc_flight *next;   /* the stripe's list of loads in flight */
    uint64_t hash;
    size_t klen;
    int refs;                  /* the leader plus each waiter */
    int done, overtaken;
    cache_err_t status;
    nkc_entry_t *result;       /* owns one reference once done */
    nkc_cond_t cv;             /* waits on the stripe lock */
    unsigned char key[];
};

struct stripe {
    /* Protects every field below, the table's slots (for writing) and the policy.
     * Never held across user code, I/O or another stripe's lock. */
    nkc_mutex_t lock;
    /* Writers publish a new table with a release store; readers' acquire loads
     * pair with it. */
    _Atomic(struct table *) table;
    struct nkc_policy *policy;
    struct nkc_flight *flights;
    nkc_entry_t *limbo_head, *limbo_tail; /* retired entries, oldest first */
    uint64_t limbo_count;
    struct table *limbo_tables;
    uint64_t sweep_cursor;
    uint64_t max_charge;
    /* Bumped (release, under the lock) by every put and remove; read (acquire) by
     * nkc_l1_ticket without the lock. */
    _Atomic uint64_t write_seq;
    _Atomic uint64_t evictions, expirations; /* written under the lock, read anywhere */
} NKC_ALIGNED;

struct nkc_l1 {
    const _Atomic uint32_t *live;
    uint64_t stale_keep_ms;
    double refresh_ahead, refresh_beta;
    /* Moving average of load durations in 1/16 ms (XFetch's delta); relaxed: a
     * heuristic input, read and written without ordering anything. */
    _Atomic uint64_t load_avg16;
    uint64_t seed;
    unsigned n_stripes;
    uint64_t stripe_mask;
    uint64_t max_bytes, max_entries;
    struct stripe *stripes;
};

/* ---- entries ---- */

nkc_entry_t *nkc_entry_new(const void *key, size_t klen, size_t vlen)
{
    if (klen > UINT32_MAX || vlen > UINT32_MAX)
        return NULL;
    nkc_entry_t *e = malloc(sizeof(*e) + klen + vlen);
    if (!e)
        return NULL;
    memset(&e->node, 0, sizeof(e->node));
    atomic_init(&e->refs, 1);
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    e->ttl_ms = 0;
    e->expire_ms = 0;
    e->node.spare = NKC_ENTRY_NO_SLOT << 8;
    memcpy(e->data, key, klen);
    return e;
}

void nkc_entry_unref(nkc_entry_t *e)
{
    /* acq_rel: the release half orders our reads of e before whoever frees it;
     * the acquire half (taken by the last holder) pairs with every other holder's
     * release. (A release decrement plus an acquire fence would do, but
     * ThreadSanitizer does not model fences.) */
    if ((atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) & ~NKC_REFS_REFRESH) == 1)
        free(e);
}

int nkc_entry_claim_refresh(nkc_entry_t *e)
{
    /* relaxed: the claim only deduplicates; the refresh job carries its own copy
     * of the key and synchronises through the stripe lock */
    if (atomic_load_explicit(&e->refs, memory_order_relaxed) & NKC_REFS_REFRESH)
        return 0; /* the common case after a claim: no write to the shared line */
    return !(atomic_fetch_or_explicit(&e->refs, NKC_REFS_REFRESH, memory_order_relaxed) &
             NKC_REFS_REFRESH);
}

void nkc_l1_note_load_ms(struct nkc_l1 *l1, uint64_t ms)
{
    uint64_t old = atomic_load_explicit(&l1->load_avg16, memory_order_relaxed);
    uint64_t now16 = ms * 16;
    /* weight 1/8; a lost update under a race only delays the average a little */
    uint64_t avg = old ? old - old / 8 + now16 / 8 : now16;
    atomic_store_explicit(&l1->load_avg16, avg, memory_order_relaxed);
}

uint64_t nkc_l1_load_ms(const struct nkc_l1 *l1)
{
    return atomic_load_explicit(&l1->load_avg16, memory_order_relaxed) / 16;
}

/* The grace-period epoch of a retired entry lives in node.prev: readers never
 * touch the policy links, only writers under the lock do. */
static void limbo_tag(nkc_entry_t *e, uint64_t epoch) { e->node.prev = (void *)(uintptr_t)epoch; }
static uint64_t limbo_epoch(const nkc_entry_t *e) { return (uint64_t)(uintptr_t)e->node.prev; }

/* ---- tables ---- */

static struct table *table_new(uint64_t n_slots)
{
    struct table *t = calloc(1, sizeof(*t) + n_slots * sizeof(_Atomic uint64_t));
    if (!t)
        return NULL;
    t->mask = n_slots - 1;
    return t;
}

static inline uint64_t tag_of(uint64_t hash) { return hash >> PTR_BITS; }
static inline nkc_entry_t *slot_entry(uint64_t v) { return (nkc_entry_t *)(uintptr_t)(v & PTR_MASK); }
static inline uint64_t slot_make(const nkc_entry_t *e)
{
    return (tag_of(e->node.hash) << PTR_BITS) | (uint64_t)(uintptr_t)e;
}

/* Finds key; returns the entry and its slot in *at, or NULL. Safe both under the
 * lock and inside an EBR section (bounded by the table size either way). */
static nkc_entry_t *probe(struct table *t, uint64_t hash, const void *key, size_t klen,
                          uint64_t *at)
{
    uint64_t tag = tag_of(hash);
    uint64_t i = hash & t->mask;
    for (uint64_t n = 0; n <= t->mask; n++, i = (i + 1) & t->mask) {
        /* acquire pairs with the release stores of slot writers */
        uint64_t v = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (v == 0)
            return NULL;
        if ((v >> PTR_BITS) != tag)
            continue;
        nkc_entry_t *e = slot_entry(v);
        if (e->node.hash == hash && e->klen == klen && memcmp(e->data, key, klen) == 0) {
            if (at)
                *at = i;
            return e;
        }
    }
    return NULL;
}

static uint64_t find_slot_of(struct table *t, const nkc_entry_t *e)
{
    uint64_t want = slot_make(e);
    for (uint64_t i = e->node.hash & t->mask;; i = (i + 1) & t->mask)
        if (atomic_load_explicit(&t->slots[i], memory_order_relaxed) == want)
            return i;
}

/* Backward-shift deletion: keeps probe runs contiguous without tombstones. */
static void slot_delete(struct table *t, uint64_t i)
{
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        uint64_t v = atomic_load_explicit(&t->slots[j], memory_order_relaxed);
        if (v == 0)
            break;
        uint64_t home = slot_entry(v)->node.hash & t->mask;
        int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            atomic_store_explicit(&t->slots[i], v, memory_order_release);
            i = j;
        }
    }
    atomic_store_explicit(&t->slots[i], 0, memory_order_release);
    t->used--;
}

static void place(struct table *t, uint64_t v, uint64_t hash)
{
    uint64_t i = hash & t->mask;
    while (atomic_load_explicit(&t->slots[i], memory_order_relaxed) != 0)
        i = (i + 1) & t->mask;
    atomic_store_explicit(&t->slots[i], v, memory_order_release);
    t->used++;
}

static void reclaim(struct stripe *s);

static int grow(struct stripe *s)
{
    struct table *old = atomic_load_explicit(&s->table, memory_order_relaxed);
    struct table *t = table_new((old->mask + 1) * 2);
    if (!t)
        return -1;
    for (uint64_t i = 0; i <= old->mask; i++) {
        uint64_t v = atomic_load_explicit(&old->slots[i], memory_order_relaxed);
        if (v)
            place(t, v, slot_entry(v)->node.hash);
    }
    /* release: the new table's slots are visible before the table is */
    atomic_store_explicit(&s->table, t, memory_order_release);
    old->retired_epoch = nkc_ebr_epoch();
    old->retired_next = s->limbo_tables;
    s->limbo_tables = old;
    return 0;
}

/* ---- retirement ---- */

static void retire(struct stripe *s, nkc_entry_t *e)
{
    e->node.next = NULL;
    limbo_tag(e, nkc_ebr_epoch());
    if (s->limbo_tail)
        s->limbo_tail->node.next = &e->node;
    else
        s->limbo_head = e;
    s->limbo_tail = e;
    if (++s->limbo_count >= LIMBO_BATCH)
        reclaim(s);
}

static void reclaim(struct stripe *s)
{
    uint64_t now = nkc_ebr_advance();
    while (s->limbo_head && nkc_ebr_safe(limbo_epoch(s->limbo_head), now)) {
        nkc_entry_t *e = s->limbo_head;
        s->limbo_head = (nkc_entry_t *)e->node.next;
        if (!s->limbo_head)
            s->limbo_tail = NULL;
        s->limbo_count--;
        nkc_entry_unref(e);
    }
    struct table **pp = &s->limbo_tables;
    while (*pp) {
        struct table *t = *pp;
        if (nkc_ebr_safe(t->retired_epoch, now)) {
            *pp = t->retired_next;
            free(t);
        } else {
            pp = &t->retired_next;
        }
    }
}

/* Takes e out of the table and the policy; its table reference goes to limbo. */
static void unlink_entry(struct stripe *s, struct table *t, uint64_t slot, nkc_entry_t *e,
                         int policy_has_it)
{
    slot_delete(t, slot);
    if (policy_has_it)
        nkc_policy_remove(s->policy, &e->node);
    retire(s, e);
}

static void enforce_budget(struct stripe *s)
{
    struct nkc_pnode *n;
    struct table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
    while ((n = nkc_policy_evict(s->policy)) != NULL) {
        nkc_entry_t *e = (nkc_entry_t *)n;
        unlink_entry(s, t, find_slot_of(t, e), e, 0);
        atomic_fetch_add_explicit(&s->evictions, 1, memory_order_relaxed);
    }
}

/* ---- creation ---- */

static unsigned auto_stripes(uint64_t max_bytes, uint64_t max_entries)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = 1;
    while (n < 256 && n < 4 * (unsigned)(cpus > 0 ? cpus : 1))
        n *= 2;
    while (n > 1 && max_bytes / n < (1u << 20))
        n /= 2;
    while (n > 1 && max_entries && max_entries / n < 512)
        n /= 2;
    return n;
}

static int stripe_init(struct stripe *s, uint64_t max_entries, uint64_t max_bytes)
{
    memset(s, 0, sizeof(*s));
    s->policy = malloc(nkc_policy_size());
    struct table *t = table_new(MIN_SLOTS);
    if (!s->policy || !t || nkc_policy_init(s->policy, max_entries, max_bytes) != 0) {
        free(s->policy);
        free(t);
        s->policy = NULL;
        return -1;
    }
    atomic_init(&s->table, t);
    s->max_charge = max_bytes / 4;
    nkc_mutex_init(&s->lock);
    return 0;
}

static void stripe_destroy(struct stripe *s)
{
    if (!s->policy)
        return;
    struct table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
    for (uint64_t i = 0; i <= t->mask; i++) {
        uint64_t v = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
        if (v)
            nkc_entry_unref(slot_entry(v));
    }
    free(t);
    while (s->limbo_head) {
        nkc_entry_t *e = s->limbo_head;
        s->limbo_head = (nkc_entry_t *)e->node.next;
        nkc_entry_unref(e);
    }
    while (s->limbo_tables) {
        struct table *o = s->limbo_tables;
        s->limbo_tables = o->retired_next;
        free(o);
    }
    nkc_policy_destroy(s->policy);
    free(s->policy);
    nkc_mutex_destroy(&s->lock);
}

cache_err_t nkc_l1_create(struct nkc_l1 **out, const struct nkc_l1_params *p)
{
    struct nkc_l1 *l1 = calloc(1, sizeof(*l1));
    if (!l1)
        return CACHE_ENOMEM;
    unsigned n = p->n_stripes ? (unsigned)p->n_stripes : auto_stripes(p->max_bytes, p->max_entries);
    l1->seed = p->seed;
    l1->live = p->live;
    l1->stale_keep_ms = p->stale_keep_ms;
    l1->refresh_ahead = p->refresh_ahead;
    l1->refresh_beta = p->refresh_beta;
    l1->n_stripes = n;
    l1->stripe_mask = n - 1;
    l1->max_bytes = p->max_bytes;
    l1->max_entries = p->max_entries;
    if (posix_memalign((void **)&l1->stripes, NKC_CACHELINE, n * sizeof(struct stripe)) != 0) {
        free(l1);
        return CACHE_ENOMEM;
    }
    uint64_t per_entries = p->max_entries ? (p->max_entries / n ? p->max_entries / n : 1) : 0;
    for (unsigned i = 0; i < n; i++) {
        if (stripe_init(&l1->stripes[i], per_entries, p->max_bytes / n) != 0) {
            for (unsigned j = i; j < n; j++)
                l1->stripes[j].policy = NULL;
            nkc_l1_destroy(l1);
            return CACHE_ENOMEM;
        }
    }
    *out = l1;
    return CACHE_OK;
}

void nkc_l1_destroy(struct nkc_l1 *l1)
{
    if (!l1)
        return;
    for (unsigned i = 0; i < l1->n_stripes; i++)
        stripe_destroy(&l1->stripes[i]);
    free(l1->stripes);
    free(l1);
}

uint64_t nkc_l1_hash(const struct nkc_l1 *l1, const void *key, size_t klen)
{
    return XXH3_64bits_withSeed(key, klen, l1->seed);
}

unsigned nkc_l1_stripes(const struct nkc_l1 *l1) { return l1->n_stripes; }

static inline struct stripe *stripe_of(struct nkc_l1 *l1, uint64_t hash)
{
    return &l1->stripes[(hash >> 32) & l1->stripe_mask];
}

/* ---- lookups ---- */

/* Not read through a Redis connection that has since died or lost its tracking
 * (its invalidations may have been missed): such a copy is never served, fresh
 * or stale. */
static inline int trusted(const struct nkc_l1 *l1, const nkc_entry_t *e)
{
    unsigned slot = e->node.spare >> 8;
    /* relaxed: a generation is retired before the invalidation that made it
     * necessary could matter to anyone; readers only need to see it eventually
     * soon, and the 1 s detection bound dwarfs coherence latency */
    return slot == NKC_ENTRY_NO_SLOT ||
           atomic_load_explicit(&l1->live[slot], memory_order_relaxed) == e->node.aux;
}

static inline int fresh(const struct nkc_l1 *l1, const nkc_entry_t *e, int64_t now_ms)
{
    return e->expire_ms > now_ms && trusted(l1, e);
}

/* Worth keeping in the table: fresh, or expired but within the stale window. */
static inline int keepable(const struct nkc_l1 *l1, const nkc_entry_t *e, int64_t now_ms)
{
    return (e->expire_ms > now_ms ||
            (l1->stale_keep_ms && e->expire_ms + (int64_t)l1->stale_keep_ms >= now_ms)) &&
           trusted(l1, e);
}

/* Whether a hit at now_ms falls in the entry's refresh-ahead window: the last
 * refresh_ahead fraction of its TTL, or the XFetch rule (Vattani et al.): refresh
 * when now - delta * beta * ln(U) >= expiry, delta the average load time. */
static int refresh_due(const struct nkc_l1 *l1, const nkc_entry_t *e, int64_t now_ms)
{
    int64_t left = e->expire_ms - now_ms;
    if (l1->refresh_ahead > 0 && (double)left <= l1->refresh_ahead * (double)e->ttl_ms)
        return 1;
    if (l1->refresh_beta > 0) {
        double delta = (double)atomic_load_explicit(&l1->load_avg16, memory_order_relaxed) / 16.0;
        double reach = delta * l1->refresh_beta;
        /* -ln(U) exceeds 40 with probability e^-40: skip the draw beyond that */
        if ((double)left <= reach * 40.0) {
            double u = nkc_rand_unit();
            if (u > 0 && (double)left <= -reach * log(u))
                return 1;
        }
    }
    return 0;
}

static inline int want_refresh(const struct nkc_l1 *l1, nkc_entry_t *e, int64_t now_ms)
{
    if (!(l1->refresh_ahead > 0 || l1->refresh_beta > 0))
        return 0;
    return refresh_due(l1, e, now_ms) && nkc_entry_claim_refresh(e);
}

/* The lock-free probe of both lookups; call inside an EBR section. A hit is noted
 * for the policy. */
static inline nkc_entry_t *find_fresh(struct nkc_l1 *l1, uint64_t hash, const void *key,
                                      size_t klen, int64_t now_ms)
{
    struct table *t = atomic_load_explicit(&stripe_of(l1, hash)->table, memory_order_acquire);
    nkc_entry_t *e = probe(t, hash, key, klen, NULL);
    if (!e || !fresh(l1, e, now_ms))
        return NULL;
    nkc_policy_touch(&e->node);
    return e;
}

enum nkc_l1_result nkc_l1_get(struct nkc_l1 *l1, uint64_t hash, const void *key, size_t klen,
                              int64_t now_ms, nkc_entry_t **out, int *refresh)
{
    enum nkc_l1_result r = NKC_L1_MISS;
    nkc_ebr_enter();
    nkc_entry_t *e = find_fresh(l1, hash, key, klen, now_ms);
    *refresh = 0;
    if (e) {
        *refresh = want_refresh(l1, e, now_ms);
        nkc_entry_ref(e);
        *out = e;
        r = NKC_L1_HIT;
    }
    nkc_ebr_exit();
    return r;
}

enum nkc_l1_result nkc_l1_get_copy(struct nkc_l1 *l1, uint64_t hash, const void *key,
                                   size_t klen, int64_t now_ms, void *buf, size_t cap,
                                   size_t *len, int *negative, int *refresh)
{
    enum nkc_l1_result r = NKC_L1_MISS;
    nkc_ebr_enter();
    nkc_entry_t *e = find_fresh(l1, hash, key, klen, now_ms);
    *refresh = 0;
    if (e) {
        *refresh = want_refresh(l1, e, now_ms);
        *negative = nkc_entry_negative(e);
        *len = e->vlen;
        if (e->vlen <= cap && e->vlen > 0)
            memcpy(buf, e->data + e->klen, e->vlen);
        r = NKC_L1_HIT;
    }
    nkc_ebr_exit();
    return r;
}

/* ---- the miss slow path ---- */

static struct nkc_flight *find_flight(struct stripe *s, uint64_t hash, const void *key, size_t klen)
{
    for (struct nkc_flight *f = s->flights; f; f = f->next)
        if (f->hash == hash && f->klen == klen && memcmp(f->key, key, klen) == 0)
            return f;
    return NULL;
}

static void flight_put(struct nkc_flight *f)
{
    if (--f->refs > 0)
        return;
    if (f->result)
        nkc_entry_unref(f->result);
    nkc_cond_destroy(&f->cv);
    free(f);
}

/* Marks a load of key in flight as overtaken: its result will not be inserted. */
static void overtake(struct stripe *s, uint64_t hash, const void *key, size_t klen)
{
    struct nkc_flight *f = find_flight(s, hash, key, klen);
    if (f)
        f->overtaken = 1;
}

/* Waits (holding a reference on f) until it is done or deadline_ns passes. */
static enum nkc_join wait_flight(struct stripe *s, struct nkc_flight *f, int64_t deadline_ns,
                                 nkc_entry_t **out, cache_err_t *status)
{
    enum nkc_join r = NKC_JOIN_WAITED;
    while (!f->done) {
        if (!deadline_ns) {
            nkc_cond_wait(&f->cv, &s->lock);
        } else if (nkc_cond_wait_until(&f->cv, &s->lock, deadline_ns) && !f->done &&
                   nkc_now_ns() >= deadline_ns) {
            r = NKC_JOIN_TIMEOUT;
            break;
        }
    }
    if (r == NKC_JOIN_WAITED) {
        *status = f->status;
        *out = f->result;
        if (f->result)
            nkc_entry_ref(f->result);
    }
    flight_put(f);
    return r;
}

enum nkc_join nkc_l1_join(struct nkc_l1 *l1, uint64_t hash, const void *key, size_t klen,
                          const struct nkc_join_req *req, struct nkc_join_res *res)
{
    struct stripe *s = stripe_of(l1, hash);
    enum nkc_join r = NKC_JOIN_LEAD;
    int64_t now_ms = req->now_ms;
    memset(res, 0, sizeof(*res));
    nkc_mutex_lock(&s->lock);
    struct table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
    uint64_t slot;
    nkc_entry_t *e = probe(t, hash, key, klen, &slot);
    if (e && fresh(l1, e, now_ms) && !req->refresh) {
        nkc_entry_ref(e);
        res->e = e;
        r = NKC_JOIN_HIT;
        goto out;
    }
    if (e && !keepable(l1, e, now_ms)) { /* past any use: free it now, not at a sweep */
        unlink_entry(s, t, slot, e, 1);
        atomic_fetch_add_explicit(&s->expirations, 1, memory_order_relaxed);
    } else if (e && !fresh(l1, e, now_ms)) {
        uint64_t past = (uint64_t)(now_ms - e->expire_ms);
        if (req->stale_ms && past <= req->stale_ms) {
            nkc_entry_ref(e);
            res->stale = e;
        }
        if (res->stale && req->serve_stale_ms && past <= req->serve_stale_ms && !req->refresh) {
            res->claimed = nkc_entry_claim_refresh(e);
            r = NKC_JOIN_STALE;
            goto out;
        }
    }
    struct nkc_flight *f = find_flight(s, hash, key, klen);
    if (f && req->refresh) {
        r = NKC_JOIN_BUSY;
        goto out;
    }
    if (f) {
        f->refs++;
        r = wait_flight(s, f, req->deadline_ns, &res->e, &res->status);
        goto out;
    }
    if (!req->refresh)
        nkc_policy_miss(s->policy, hash);
    f = calloc(1, sizeof(*f) + klen);
    if (f) { /* without memory for a flight the caller loads unshared and inserts nothing */
        f->hash = hash;
        f->klen = klen;
        f->refs = 1;
        memcpy(f->key, key, klen);
        nkc_cond_init(&f->cv);
        f->next = s->flights;
        s->flights = f;
    }
    res->flight = f;
out:
    nkc_mutex_unlock(&s->lock);
    return r;
}

void nkc_l1_flight_hold(struct nkc_l1 *l1, struct nkc_flight *f)
{
    struct stripe *s = stripe_of(l1, f->hash);
    nkc_mutex_lock(&s->lock);
    f->refs++;
    nkc_mutex_unlock(&s->lock);
}

enum nkc_join nkc_l1_flight_wait(struct nkc_l1 *l1, struct nkc_flight *f, int64_t deadline_ns,
                                 nkc_entry_t **out, cache_err_t *status)
{
    struct stripe *s = stripe_of(l1, f->hash);
    *out = NULL;
    nkc_mutex_lock(&s->lock);
    enum nkc_join r = wait_flight(s, f, deadline_ns, out, status);
    nkc_mutex_unlock(&s->lock);
    return r;
}

/* Inserts e (the table takes its own reference), replacing any entry of its key. */
static int insert_locked(struct stripe *s, nkc_entry_t *e)
{
    struct table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
    uint64_t slot;
    nkc_entry_t *old = probe(t, e->node.hash, e->data, e->klen, &slot);
    if (old)
        unlink_entry(s, t, slot, old, 1);
    if (nkc_node_charge(&e->node) > s->max_charge || ((uint64_t)(uintptr_t)e >> PTR_BITS) != 0)
        return -1; /* too large to keep; or an address the slot encoding cannot hold */
    if ((t->used + 1) * 4 > (t->mask + 1) * 3) {
        if (grow(s) != 0)
            return -1;
        t = atomic_load_explicit(&s->table, memory_order_relaxed);
    }
    nkc_entry_ref(e);
    place(t, slot_make(e), e->node.hash);
    nkc_policy_insert(s->policy, &e->node);
    enforce_budget(s);
    return 0;
}

uint32_t nkc_node_charge(const struct nkc_pnode *n)
{
    /* the node is the first member of the entry: n is the allocation */
    size_t usable = malloc_usable_size((void *)(uintptr_t)n) + SLOT_CHARGE;
    return usable > UINT32_MAX ? UINT32_MAX : (uint32_t)usable;
}

enum nkc_fill nkc_l1_complete(struct nkc_l1 *l1, struct nkc_flight *f, cache_err_t status,
                              nkc_entry_t *e, int keep)
{
    if (!f) {
        if (e)
            nkc_entry_unref(e);
        return NKC_FILL_OVERTAKEN; /* unshared load: nothing can prove it current */
    }
    struct stripe *s = stripe_of(l1, f->hash);
    enum nkc_fill fill = NKC_FILL_OVERTAKEN;
    nkc_mutex_lock(&s->lock);
    if (e && !keep)
        fill = NKC_FILL_SKIPPED;
    else if (e && !f->overtaken)
        fill = insert_locked(s, e) == 0 ? NKC_FILL_INSERTED : NKC_FILL_REFUSED;
    f->done = 1;
    f->status = status;
    f->result = e; /* the flight takes over the caller's reference */
    for (struct nkc_flight **pp = &s->flights; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    nkc_cond_broadcast(&f->cv);
    flight_put(f);
    nkc_mutex_unlock(&s->lock);
    return fill;
}

uint64_t nkc_l1_ticket(struct nkc_l1 *l1, uint64_t hash)
{
    return atomic_load_explicit(&stripe_of(l1, hash)->write_seq, memory_order_acquire);
}

static void bump_writes(struct stripe *s)
{
    atomic_store_explicit(&s->write_seq,
                          atomic_load_explicit(&s->write_seq, memory_order_relaxed) + 1,
                          memory_order_release);
}

static int remove_locked(struct stripe *s, uint64_t hash, const void *key, size_t klen,
                         int overtake_loads)
{
    if (overtake_loads)
        overtake(s, hash, key, klen);
    bump_writes(s);
    struct table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
    uint64_t slot;
    nkc_entry_t *e = probe(t, hash, key, klen, &slot);
    if (e)
        unlink_entry(s, t, slot, e, 1);
    return e != NULL;
}

int nkc_l1_put(struct nkc_l1 *l1, nkc_entry_t *e, uint64_t ticket)
{
    struct stripe *s = stripe_of(l1, e->node.hash);
    nkc_mutex_lock(&s->lock);
    int r;
    if (ticket != NKC_NO_TICKET &&
        atomic_load_explicit(&s->write_seq, memory_order_relaxed) != ticket) {
        remove_locked(s, e->node.hash, e->data, e->klen, 1);
        r = 1;
    } else {
        overtake(s, e->node.hash, e->data, e->klen);
        bump_writes(s);
        r = insert_locked(s, e);
    }
    nkc_mutex_unlock(&s->lock);
    return r;
}

int nkc_l1_remove(struct nkc_l1 *l1, uint64_t hash, const void *key, size_t klen)
{
    return nkc_l1_invalidate(l1, hash, key, klen, 1);
}

int nkc_l1_invalidate(struct nkc_l1 *l1, uint64_t hash, const void *key, size_t klen,
                      int overtake_loads)
{
    struct stripe *s = stripe_of(l1, hash);
    nkc_mutex_lock(&s->lock);
    int r = remove_locked(s, hash, key, klen, overtake_loads);
    nkc_mutex_unlock(&s->lock);
    return r;
}

/* ---- maintenance ---- */

static void sweep_stripe(const struct nkc_l1 *l1, struct stripe *s, int64_t now_ms,
                         uint64_t min_budget, uint64_t passes)
{
    nkc_mutex_lock(&s->lock);
    struct table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
    uint64_t budget = (t->mask + 1) / passes;
    if (budget < min_budget)
        budget = min_budget;
    uint64_t i = s->sweep_cursor & t->mask;
    for (uint64_t visited = 0; visited < budget && visited <= t->mask; visited++) {
        uint64_t v = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
        nkc_entry_t *e = slot_entry(v);
        if (v && !keepable(l1, e, now_ms)) {
            unlink_entry(s, t, i, e, 1);
            atomic_fetch_add_explicit(&s->expirations, 1, memory_order_relaxed);
            continue; /* slot i may now hold a shifted entry: look again */
        }
        i = (i + 1) & t->mask;
    }
    s->sweep_cursor = i;
    reclaim(s);
    nkc_mutex_unlock(&s->lock);
}

void nkc_l1_sweep(struct nkc_l1 *l1, int64_t now_ms, uint64_t min_budget, uint64_t passes)
{
    for (unsigned i = 0; i < l1->n_stripes; i++)
        sweep_stripe(l1, &l1->stripes[i], now_ms, min_budget, passes ? passes : 1);
}

void nkc_l1_totals(struct nkc_l1 *l1, struct nkc_l1_totals *t)
{
    memset(t, 0, sizeof(*t));
    t->max_bytes = l1->max_bytes;
    t->max_entries = l1->max_entries;
    for (unsigned i = 0; i < l1->n_stripes; i++) {
        struct stripe *s = &l1->stripes[i];
        nkc_mutex_lock(&s->lock);
        t->entries += nkc_policy_entries(s->policy);
        t->bytes += nkc_policy_bytes(s->policy);
        nkc_mutex_unlock(&s->lock);
        t->evictions += atomic_load_explicit(&s->evictions, memory_order_relaxed);
        t->expirations += atomic_load_explicit(&s->expirations, memory_order_relaxed);
    }
}
