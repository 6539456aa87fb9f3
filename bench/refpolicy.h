/*
 * Reference eviction policies for the trace mode: standalone simulators over
 * uint64 keys, bounded by an entry count, written from the papers so that the
 * library's policy is compared against honest textbook baselines. Not thread-safe;
 * one simulator per replay. Every symbol is prefixed nkb_.
 */
#ifndef NKB_REFPOLICY_H
#define NKB_REFPOLICY_H

#include <stdint.h>

typedef enum nkb_ref_kind {
    NKB_REF_LRU,       /* one recency list */
    NKB_REF_S3FIFO,    /* Yang et al., SOSP'23: 10% small FIFO, main FIFO, ghost */
    NKB_REF_SIEVE,     /* Zhang et al., NSDI'24: FIFO with a visited bit and a hand */
    NKB_REF_WTINYLFU,  /* Einziger et al., TOS'17: 1% LRU window, SLRU main, sketch */
    NKB_REF_COUNT
} nkb_ref_kind_t;

typedef struct nkb_ref nkb_ref_t;

/* A short display name ("LRU", "S3-FIFO", ...) and a JSON-friendly key ("lru",
 * "s3fifo", ...); static strings, "?" for an unknown kind. */
const char *nkb_ref_name(nkb_ref_kind_t kind);
const char *nkb_ref_key(nkb_ref_kind_t kind);

/* A new, empty simulator holding at most capacity (>= 1) entries; free with
 * nkb_ref_destroy. NULL when out of memory or for a bad kind or capacity. */
nkb_ref_t *nkb_ref_create(nkb_ref_kind_t kind, uint64_t capacity);
/* Replays one read of key: returns 1 on a hit, 0 on a miss (the key is then
 * inserted, evicting as the policy decides). */
int nkb_ref_access(nkb_ref_t *r, uint64_t key);
/* NULL is a no-op. */
void nkb_ref_destroy(nkb_ref_t *r);

#endif /* NKB_REFPOLICY_H */
