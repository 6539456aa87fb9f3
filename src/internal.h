/*
 * The cache object shared by cache.c (the flow across tiers) and stats.c
 * (rendering). Other modules see only their own private headers.
 */
#ifndef NKC_INTERNAL_H
#define NKC_INTERNAL_H

#include "config.h"
#include "l1.h"
#include "stats.h"
#include "sync.h"

struct cache {
    struct nkc_config cfg; /* immutable after cache_open */
    struct nkc_l1 *l1;
    struct nkc_stats *stats;
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

#endif /* NKC_INTERNAL_H */
