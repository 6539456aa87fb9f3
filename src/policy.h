/*
 * Per-stripe eviction policy: decides which resident entry leaves when a stripe is
 * over its entry or byte budget, and whether a newcomer is worth admitting.
 * Every call runs under the owning stripe's lock except nkc_policy_touch, which a
 * reader calls on a hit with no lock held: it only ever does a relaxed store of a
 * small per-node field, and skips the store when the field would not change, so a
 * hot entry's cache line is not written on every hit.
 */
#ifndef NKC_POLICY_H
#define NKC_POLICY_H

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>

/* Embedded in every L1 entry. The queue links and `queue` belong to the policy;
 * `hash` is set by L1 before nkc_policy_insert and never changes; `aux` and
 * `spare` belong to L1 (the policy never reads them). */
struct nkc_pnode {
    struct nkc_pnode *prev, *next;
    uint64_t hash;           /* the key's seeded 64-bit hash */
    uint32_t aux;            /* L1's: the Redis connection generation of the entry */
    _Atomic uint8_t freq;    /* hit bookkeeping; written by nkc_policy_touch */
    uint8_t queue;           /* policy-private: which queue the node is on */
    uint16_t spare;          /* L1's: flags and connection slot */
};

/* The bytes a node's entry costs against the byte budget, provided by the owner of
 * the nodes (L1: the allocation's usable size plus its table share). Constant while
 * the node is in the policy; computed rather than stored to keep nodes small. */
uint32_t nkc_node_charge(const struct nkc_pnode *n);

/* Opaque policy state for one stripe; sized by nkc_policy_size(). */
struct nkc_policy;

size_t nkc_policy_size(void);
/* Initialises p for a stripe holding at most max_entries entries (0 = no entry
 * bound) and max_bytes bytes of charge. Returns 0, or -1 when out of memory. */
int nkc_policy_init(struct nkc_policy *p, uint64_t max_entries, uint64_t max_bytes);
/* Frees what init allocated. The nodes still queued are the caller's to free. */
void nkc_policy_destroy(struct nkc_policy *p);

/* A hit on a resident node, no lock held: a relaxed store, skipped when the
 * field already holds its ceiling. Pairs with nothing: the policy reads freq
 * under the stripe lock and tolerates a stale value. */
static inline void nkc_policy_touch(struct nkc_pnode *n)
{
    uint8_t f = atomic_load_explicit(&n->freq, memory_order_relaxed);
    if (f < 3)
        atomic_store_explicit(&n->freq, (uint8_t)(f + 1), memory_order_relaxed);
}

/* A lookup of `hash` missed L1 (called once per miss, under the lock). Lets a
 * frequency- or history-based policy learn about keys that are not resident. */
void nkc_policy_miss(struct nkc_policy *p, uint64_t hash);
/* Adds a node that L1 has just put into the stripe's table. */
void nkc_policy_insert(struct nkc_policy *p, struct nkc_pnode *n);
/* Removes a node L1 is taking out for its own reasons (delete, overwrite, expiry). */
void nkc_policy_remove(struct nkc_policy *p, struct nkc_pnode *n);
/* While the stripe is over budget, returns the next node to evict, already
 * unlinked from the policy (it may be the node just inserted, when the policy
 * refuses to admit it); L1 then removes it from the table. NULL when within budget. */
struct nkc_pnode *nkc_policy_evict(struct nkc_policy *p);

/* Current totals, for stats and assertions. */
uint64_t nkc_policy_entries(const struct nkc_policy *p);
uint64_t nkc_policy_bytes(const struct nkc_policy *p);

#endif /* NKC_POLICY_H */
