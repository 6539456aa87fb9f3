/*
 * What the l1 mode's measuring half (l1.c) hands its reporting half (report.c),
 * and the cache configuration the l1 and memory modes share.
 */
#ifndef NKB_L1_H
#define NKB_L1_H

#include "bench.h"

#include <nakkucache.h>

#define NKB_L1_BATCH 64 /* lookups per timed batch */

/* The C implementations measured in-process, in print order. */
enum { NKB_L1_GET, NKB_L1_GET_COPY, NKB_L1_MAP, NKB_L1_C_IMPLS };

/* nkb_caffeine_run's results plus "not asked for". */
enum { NKB_CAFFEINE_FAILED = -1, NKB_CAFFEINE_SKIPPED = 0, NKB_CAFFEINE_OK = 1,
       NKB_CAFFEINE_OFF = 2 };

struct nkb_l1_report {
    const nkb_opts_t *o;
    unsigned batch;
    nkb_row_t rows[NKB_MAX_POINTS][NKB_L1_C_IMPLS]; /* [point][impl] */
    int caffeine;          /* NKB_CAFFEINE_* */
    nkb_caffeine_t caf;
    double load_before, load_after; /* nkb_loadavg() around the measurements */
    int has_memory;
    nkb_memory_t memory;
};

/* The table (or, with --json, one JSON document) on stdout. */
void nkb_l1_report_print(const struct nkb_l1_report *rep);

/* A new, empty cache sized for every key of o with room to spare (at least 1 GiB),
 * TTL one day, no jitter, no L2, no loader. NULL after a message on stderr. */
cache_t *nkb_l1_open_cache(const nkb_opts_t *o);

#endif /* NKB_L1_H */
