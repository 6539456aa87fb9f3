/*
 * L1: the in-process tier. A power-of-two array of stripes; each stripe is an
 * open-addressing table of tagged entry pointers, its eviction policy, its
 * in-flight loads and its retired memory, all behind one mutex. Hits take no lock
 * and write no shared line except the entry's reference count (cache_get) or
 * nothing at all (cache_get_copy): readers run inside an EBR critical section and
 * writers free unlinked entries and tables only after a grace period.
 */
#ifndef NKC_L1_H
#define NKC_L1_H

#include "nakkucache.h"
#include "policy.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* node.spare: flags in the low byte, the Redis connection slot in the high byte;
 * node.aux: that connection's generation. Set before publication, immutable after. */
#define NKC_ENTRY_NEGATIVE 0x1u /* a cached "not found": no value */
#define NKC_ENTRY_NO_SLOT 0xFFu /* not read through a pooled Redis connection */

/* One immutable, reference-counted allocation: header, key, value. It is also the
 * public cache_value_t. The table holds one reference; each handle another. */
struct cache_value {
    struct nkc_pnode node; /* policy links; after removal, limbo link + epoch */
    _Atomic uint32_t refs;
    uint32_t klen;
    uint32_t vlen;
    uint32_t ttl_ms;       /* the TTL it was given: born = expire_ms - ttl_ms */
    int64_t expire_ms;     /* on the cache's clock */
    unsigned char data[];  /* key bytes, then value bytes */
};
typedef struct cache_value nkc_entry_t;

/* A new entry with refs = 1 (the caller's), key copied, value space uninitialised
 * (fill it through nkc_entry_value before publishing). NULL when out of memory. */
nkc_entry_t *nkc_entry_new(const void *key, size_t klen, size_t vlen);
static inline unsigned char *nkc_entry_value(nkc_entry_t *e) { return e->data + e->klen; }
static inline int nkc_entry_negative(const nkc_entry_t *e)
{
    return (e->node.spare & NKC_ENTRY_NEGATIVE) != 0;
}
/* Records that e was read through pooled Redis connection `slot` (< 255) in its
 * life `gen`; see nkc_l1_params.live. */
static inline void nkc_entry_set_origin(nkc_entry_t *e, uint32_t slot, uint32_t gen)
{
    e->node.spare = (uint16_t)((e->node.spare & 0xFFu) | ((slot & 0xFFu) << 8));
    e->node.aux = gen;
}
/* The top bit of refs marks an entry whose background refresh has been claimed
 * (once per entry: a replacement starts clear); the count lives in the rest. */
#define NKC_REFS_REFRESH 0x80000000u
static inline void nkc_entry_ref(nkc_entry_t *e)
{
    /* relaxed: the caller already holds a reference (or is inside an EBR section
     * while the table's reference is alive), so the count cannot reach zero here */
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}
void nkc_entry_unref(nkc_entry_t *e);

struct nkc_l1;
struct nkc_flight;

struct nkc_l1_params {
    uint64_t max_bytes, max_entries, n_stripes; /* n_stripes: 0 = auto */
    uint64_t seed;                              /* hash seed */
    /* live[slot] is the generation of pooled connection `slot` while it lives and
     * is tracked; an entry read through a connection whose generation is no longer
     * live may have missed invalidations and is treated as absent. NULL: no L2. */
    const _Atomic uint32_t *live;
    /* An expired entry stays (and join offers it as stale) this long past its TTL;
     * 0 = expired entries are dropped at once. */
    uint64_t stale_keep_ms;
    /* Refresh-ahead: a hit in the last refresh_ahead fraction of the TTL, or one
     * the XFetch rule picks (beta > 0), claims the entry's refresh. */
    double refresh_ahead, refresh_beta;
};

cache_err_t nkc_l1_create(struct nkc_l1 **out, const struct nkc_l1_params *p);
/* Frees every entry the table holds. No call may be in flight. */
void nkc_l1_destroy(struct nkc_l1 *l1);

uint64_t nkc_l1_hash(const struct nkc_l1 *l1, const void *key, size_t klen);
unsigned nkc_l1_stripes(const struct nkc_l1 *l1);

enum nkc_l1_result { NKC_L1_MISS, NKC_L1_HIT };

/* Lock-free lookup. On NKC_L1_HIT *out is a new reference to a live entry (which
 * may be negative). Expired entries are a miss. A rare false miss is possible
 * while a writer moves the slot; the slow path (nkc_l1_join) settles it. *refresh
 * is set to 1 when the hit claimed the entry's refresh-ahead (the caller then
 * schedules it), else 0. */
enum nkc_l1_result nkc_l1_get(struct nkc_l1 *l1, uint64_t hash, const void *key, size_t klen,
                              int64_t now_ms, nkc_entry_t **out, int *refresh);
/* Lock-free lookup that copies the value out instead of taking a reference:
 * returns NKC_L1_HIT and fills *len and *negative (copying only when
 * *len <= cap). Writes no shared memory (except a refresh claim, as above). */
enum nkc_l1_result nkc_l1_get_copy(struct nkc_l1 *l1, uint64_t hash, const void *key,
                                   size_t klen, int64_t now_ms, void *buf, size_t cap,
                                   size_t *len, int *negative, int *refresh);
/* Claims e's one background refresh: 1 for the first caller, 0 after. */
int nkc_entry_claim_refresh(nkc_entry_t *e);
/* Feeds the moving average of load durations that the XFetch rule uses. */
void nkc_l1_note_load_ms(struct nkc_l1 *l1, uint64_t ms);
uint64_t nkc_l1_load_ms(const struct nkc_l1 *l1);

/* The miss slow path, under the stripe lock: a live entry found now (HIT, *out a
 * new reference); or someone else's load of this key, which is waited for (WAITED,
 * *out/ *status its result); or nothing, and the caller becomes the leader of a
 * new load (LEAD, *flight set; it must call nkc_l1_complete exactly once). */
enum nkc_join {
    NKC_JOIN_HIT,
    NKC_JOIN_WAITED,
    NKC_JOIN_LEAD,
    NKC_JOIN_STALE,   /* res.stale is within req.serve_stale_ms: serve it, no load started */
    NKC_JOIN_BUSY,    /* req.refresh and a load of the key is already in flight */
    NKC_JOIN_TIMEOUT, /* the wait for a load in flight passed req.deadline_ns */
};
struct nkc_join_req {
    int64_t now_ms;
    uint64_t stale_ms;       /* offer an expired entry at most this far past its TTL */
    uint64_t serve_stale_ms; /* within this, return NKC_JOIN_STALE (once per entry:
                              * the entry's refresh claim; later callers also get it) */
    int64_t deadline_ns;     /* bound on waiting for a load in flight; 0 = none */
    int refresh;             /* lead even over a fresh entry; never wait (BUSY) */
};
struct nkc_join_res {
    nkc_entry_t *e;            /* HIT/WAITED: the result (new reference) or NULL */
    cache_err_t status;        /* WAITED: the load's status */
    struct nkc_flight *flight; /* LEAD: the load to complete (NULL without memory) */
    nkc_entry_t *stale;        /* an expired entry within stale_ms (new ref), or NULL */
    int claimed;               /* STALE: this caller claimed the entry's refresh */
};
enum nkc_join nkc_l1_join(struct nkc_l1 *l1, uint64_t hash, const void *key, size_t klen,
                          const struct nkc_join_req *req, struct nkc_join_res *res);
/* A leader that hands its flight to another thread first takes a hold on it, then
 * waits for its result (as a waiter would) until deadline_ns (0 = none); the wait
 * drops the hold. NKC_JOIN_WAITED with *out and *status set, or NKC_JOIN_TIMEOUT. */
void nkc_l1_flight_hold(struct nkc_l1 *l1, struct nkc_flight *f);
enum nkc_join nkc_l1_flight_wait(struct nkc_l1 *l1, struct nkc_flight *f, int64_t deadline_ns,
                                 nkc_entry_t **out, cache_err_t *status);
/* Ends a load: publishes (status, e) to its waiters (each gets its own reference)
 * and inserts e (when not NULL) unless the load was overtaken by a set, delete or
 * invalidation since nkc_l1_join. Consumes the caller's reference to e. */
enum nkc_fill { NKC_FILL_INSERTED, NKC_FILL_OVERTAKEN, NKC_FILL_REFUSED, NKC_FILL_SKIPPED };
/* keep == 0 publishes e to the waiters without inserting it (NKC_FILL_SKIPPED). */
enum nkc_fill nkc_l1_complete(struct nkc_l1 *l1, struct nkc_flight *f, cache_err_t status,
                              nkc_entry_t *e, int keep);

/* A write ticket for the stripe of `hash`: taken before a write goes to Redis, it
 * lets nkc_l1_put notice that another write of the stripe raced with this one. */
uint64_t nkc_l1_ticket(struct nkc_l1 *l1, uint64_t hash);
/* Inserts or replaces e (taking its own reference) and overtakes any load of the
 * key in flight. With a ticket (not NKC_NO_TICKET), when another put or remove in
 * the stripe happened since the ticket was taken, the key is removed instead (the
 * two writes' order in Redis is unknown here). Returns 0 when inserted, 1 when
 * removed for a raced ticket, -1 when e is too large to keep (the old entry is
 * removed either way). */
#define NKC_NO_TICKET UINT64_MAX
int nkc_l1_put(struct nkc_l1 *l1, nkc_entry_t *e, uint64_t ticket);
/* Removes the key and overtakes any load of it in flight. Returns 1 if it was present. */
int nkc_l1_remove(struct nkc_l1 *l1, uint64_t hash, const void *key, size_t klen);
/* The same for an invalidation from Redis; overtake_loads = 0 only in the control
 * run of the reply-vs-invalidation test. */
int nkc_l1_invalidate(struct nkc_l1 *l1, uint64_t hash, const void *key, size_t klen,
                      int overtake_loads);

/* Background maintenance of every stripe: frees expired entries and memory whose
 * grace period has passed. Each call visits max(min_budget, slots / passes) slots
 * per stripe, so `passes` calls cover every table at least once. */
void nkc_l1_sweep(struct nkc_l1 *l1, int64_t now_ms, uint64_t min_budget, uint64_t passes);

struct nkc_l1_totals {
    uint64_t entries, bytes, evictions, expirations, max_bytes, max_entries;
};
void nkc_l1_totals(struct nkc_l1 *l1, struct nkc_l1_totals *t);

#endif /* NKC_L1_H */
