/*
 * The cache's operations on Redis: the value envelope (docs/FORMAT.md) and the
 * lease scripts that stop stale fills and cross-process stampedes. Built on the
 * client layer's nkc_l2_pipeline; never sees hiredis.
 */
#ifndef NKC_L2OPS_H
#define NKC_L2OPS_H

#include "l2.h"

#include <stddef.h>
#include <stdint.h>

/* What a lookup found under a key. */
enum nkc_found {
    NKC_FOUND_VALUE,       /* data/len hold the value */
    NKC_FOUND_NEGATIVE,    /* a cached not-found */
    NKC_FOUND_LEASE_MINE,  /* absent: this caller now holds the fill lease */
    NKC_FOUND_LEASE_OTHER, /* absent: someone else is loading it */
    NKC_FOUND_MISS,        /* absent, and no lease was asked for */
    NKC_FOUND_BAD,         /* not ours: wrong type or not our envelope */
};

struct nkc_lookup {
    enum nkc_found found;
    const unsigned char *data; /* borrowed from reply */
    size_t len;
    int64_t pttl_ms;           /* remaining TTL in Redis; -1 = none */
    const unsigned char *envelope; /* VALUE/NEGATIVE: the stored bytes, borrowed */
    size_t envelope_len;
    int refresh;               /* refresh lookups: this caller holds the refresh lease */
    struct nkc_reply *reply;   /* owns data; free with nkc_lookup_clear */
};
void nkc_lookup_clear(struct nkc_lookup *lk);

/* The prefix every key gets, and what the lease operations need. */
struct nkc_l2ops {
    struct nkc_l2 *l2;
    const char *prefix;
    size_t prefix_len;
    uint64_t lease_ms;
    uint64_t max_value; /* larger values under our keys are reported NKC_FOUND_BAD */
};

/* Reads key and its TTL in one round trip. With a non-zero token, an absent key
 * gets a lease for that token (lease_ms long). Every call that reads or writes a
 * key reports in *origin (may be NULL) the connection life it used, for tagging
 * the L1 copy. */
cache_err_t nkc_l2ops_lookup(const struct nkc_l2ops *o, const void *key, size_t klen,
                             uint64_t token, struct nkc_lookup *out, struct nkc_origin *origin);
/* The same for n keys in one pipeline (one round trip); tokens[i] as above. With
 * refresh_ms > 0 they are refresh lookups: a value with at most refresh_ms left
 * also grants the key's refresh lease when it is free (out[i].refresh), and the
 * caller then reloads it and writes it back with nkc_l2ops_refill. */
cache_err_t nkc_l2ops_lookup_many(const struct nkc_l2ops *o, size_t n, const void *const *keys,
                                  const size_t *klens, const uint64_t *tokens,
                                  uint64_t refresh_ms, struct nkc_lookup *out,
                                  struct nkc_origin *origin);
/* A refresh's write-back: only while the refresh lease of token is held and the
 * key still holds old_env (the envelope the refresh lookup saw). */
cache_err_t nkc_l2ops_refill(const struct nkc_l2ops *o, const void *key, size_t klen,
                             uint64_t token, const void *old_env, size_t old_len, int negative,
                             const void *val, size_t vlen, uint64_t ttl_ms, int *filled,
                             struct nkc_origin *origin);
/* Writes the value (or, with negative, a not-found) only if key still holds our
 * lease; *filled tells whether it did. A delete or set since the lease voids it. */
cache_err_t nkc_l2ops_fill(const struct nkc_l2ops *o, const void *key, size_t klen,
                           uint64_t token, int negative, const void *val, size_t vlen,
                           uint64_t ttl_ms, int *filled, struct nkc_origin *origin);
/* Drops our lease if it is still ours (after a failed load). */
cache_err_t nkc_l2ops_release(const struct nkc_l2ops *o, const void *key, size_t klen,
                              uint64_t token);
/* Unconditional write (voids any lease, fill or refresh) and delete. */
cache_err_t nkc_l2ops_set(const struct nkc_l2ops *o, const void *key, size_t klen,
                          const void *val, size_t vlen, uint64_t ttl_ms, struct nkc_origin *origin);
cache_err_t nkc_l2ops_del(const struct nkc_l2ops *o, const void *key, size_t klen);

#endif /* NKC_L2OPS_H */
