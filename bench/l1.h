/*
 * What the l1 mode's measuring half (l1.c) hands its reporting half (report.c),
 * and the cache configuration the l1 and memory modes share.
 */
#ifndef NKB_L1_H
#define NKB_L1_H

#include "bench.h"

#include <nakkucache.h>

#define NKB_L1_BATCH 64 /* lookups per timed batch */

/* The rows at each thread count, in measuring and print order: the C ones run in
 * this process, Caffeine in the JVM that nkb_caffeine_start keeps. */
enum { NKB_L1_GET, NKB_L1_GET_COPY, NKB_L1_MAP, NKB_L1_CAFFEINE, NKB_L1_IMPLS };

/* nkb_caffeine_start's results plus "not asked for". */
enum { NKB_CAFFEINE_FAILED = -1, NKB_CAFFEINE_SKIPPED = 0, NKB_CAFFEINE_OK = 1,
       NKB_CAFFEINE_OFF = 2 };

struct nkb_l1_report {
    const nkb_opts_t *o;
    unsigned batch;
    nkb_row_t rows[NKB_MAX_POINTS][NKB_L1_IMPLS]; /* [point][impl] */
    int caffeine;          /* NKB_CAFFEINE_*; the Caffeine rows are valid when _OK */
    char caffeine_why[256]; /* why not, otherwise */
    double caffeine_heap;   /* nkb_caffeine_heap_per_entry, or -1 */
    double load_before, load_after; /* nkb_loadavg() around the measurements */
    int has_memory;
    nkb_memory_t memory;
};

/* The table (or, with --json / --csv, one JSON document / its rows) on stdout, and
 * --plot. Returns 0, or -1 when the output failed. */
int nkb_l1_report_print(const struct nkb_l1_report *rep);

/* A new, empty cache sized for every key of o with room to spare (at least 1 GiB),
 * TTL one day, no jitter, no L2, no loader. NULL after a message on stderr. */
cache_t *nkb_l1_open_cache(const nkb_opts_t *o);

#endif /* NKB_L1_H */
