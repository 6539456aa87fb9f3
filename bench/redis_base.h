/*
 * What the Redis modes (tiers.c, l2.c) share: finding or starting a Redis server,
 * raw hiredis connections for the baselines and for cleaning the run's own key
 * prefix, the simulated database, the two sides' operations, the measuring loop
 * (every operation timed on its own: they take microseconds), the interleaved
 * --repeat rounds, and the common parts of their tables and JSON. A mode is an
 * nkb_rmode_t and one call to nkb_rmode_run.
 */
#ifndef NKB_REDIS_BASE_H
#define NKB_REDIS_BASE_H

#include "bench.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <nakkucache.h>
#include <stdatomic.h>
#include <sys/types.h>

/* ---------------------------------------------------------------- the server */

typedef struct nkb_redis {
    char url[512];      /* what l2.url gets */
    char where[300];    /* host:port or socket path: printable (never the password) */
    const char *source; /* "--redis", "NKC_REDIS_URL" or "a throwaway redis-server ..." */
    char version[32];   /* the server's redis_version, or "?" */
    pid_t pid;          /* the throwaway server, else 0 */
    char dir[256];      /* its temporary directory, else "" */
} nkb_redis_t;

/* Deletes every key under prefix (SCAN MATCH prefix* + UNLINK). Returns 0 or -1. */
int nkb_redis_unlink_prefix(redisContext *c, const char *prefix);
/* Writes prefix + key i = envelope + key i's database value for every key, PX
 * ttl_ms, pipelined. envelope is "" for plain values, "V" for the library's format
 * (docs/FORMAT.md). Returns 0 or -1. */
int nkb_redis_prefill(redisContext *c, const char *prefix, const nkb_keys_t *keys,
                      size_t value_size, const char *envelope, uint64_t ttl_ms);

/* ---------------------------------------------------------------- the database */

/* The simulated database behind both sides: each query sleeps delay_us (nanosleep:
 * the thread blocks, as on a network round trip) and returns value_size bytes. */
typedef struct nkb_db {
    uint64_t delay_us;
    size_t value_size;
    atomic_uint_fast64_t calls, busy_ns; /* queries and the time they really took */
} nkb_db_t;

/* Fills buf (value_size bytes) with key's value after the delay; counts the query. */
void nkb_db_query(nkb_db_t *db, const void *key, size_t klen, unsigned char *buf);

/* ---------------------------------------------------------------- measuring */

/* Where an answer came from: the library's cache_tier_t values, plus an error. For
 * a cache-aside baseline a Redis hit is NKB_SRC_L2 and a miss NKB_SRC_LOADER. */
enum { NKB_SRC_ERROR = 0, NKB_SRC_L1, NKB_SRC_L2, NKB_SRC_LOADER, NKB_SRC_COUNT };
#define NKB_SRC_FATAL (-1) /* the thread cannot go on (a broken connection) */

/* One operation on key index k with the thread's own argument (its connection);
 * returns NKB_SRC_* or NKB_SRC_FATAL. */
typedef int (*nkb_rop_fn)(void *shared, void *mine, uint32_t k);

/* One measured point: an implementation at a thread count. */
typedef struct nkb_rrow {
    const char *name, *key; /* for people, for JSON */
    unsigned threads;
    int failed;             /* a thread stopped on NKB_SRC_FATAL */
    uint64_t ops, served[NKB_SRC_COUNT]; /* served[NKB_SRC_ERROR]: failed operations */
    double ops_per_sec;     /* sum over threads of ops / own elapsed time */
    double seconds;         /* mean elapsed time of the threads */
    uint64_t p50_ns, p90_ns, p99_ns, p999_ns, max_ns;
    uint64_t db_calls;      /* database queries: the load left on it */
    double db_per_sec, db_mean_us;
    json_t *extra;          /* the library's counters (a new reference), or NULL */
} nkb_rrow_t;

/* How to measure one point; nkb_rmeasure_* fill in op, shared and mine. */
typedef struct nkb_rrun {
    const nkb_opts_t *o;
    unsigned threads;
    uint32_t *const *seqs; /* one per thread, seq_len each, replayed cyclically */
    size_t seq_len;        /* a power of two */
    nkb_rop_fn op;
    void *shared;
    void *const *mine;     /* per thread, or NULL */
    nkb_db_t *db;          /* whose queries are counted in the row, or NULL */
} nkb_rrun_t;

/* ---------------------------------------------------------------- the two sides */

/* The library: a fresh cache per measured row. */
typedef struct nkb_lib_setup {
    const nkb_redis_t *redis;
    const char *prefix;             /* l2.key_prefix */
    const char *const (*props)[2];  /* the mode's properties, {name, value} */
    size_t n_props;
    cache_loader_fn loader;         /* or NULL */
    void *udata;
    const nkb_keys_t *keys;
} nkb_lib_setup_t;

/* Opens a cache for lib with l2.pool_size = run->threads, measures cache_get_ex
 * (the tier from its info) into row with the cache's counters in row->extra, and
 * closes it. Returns 0 or -1. */
int nkb_rmeasure_lib(const nkb_rrun_t *run, const nkb_lib_setup_t *lib, nkb_rrow_t *row);

/* The baseline: plain hiredis, one connection per thread. GET prefix + key; a
 * string is a hit (NKB_SRC_L2). With db, a nil is a miss: query db, SET the value
 * PX ttl_ms (NKB_SRC_LOADER); without db a nil is an error. */
typedef struct nkb_aside {
    const nkb_redis_t *redis;
    const nkb_keys_t *keys;
    const char *prefix;
    size_t prefix_len;
    nkb_db_t *db;
    uint64_t ttl_ms;
} nkb_aside_t;

/* Connects run->threads connections, measures the baseline into row, closes them. */
int nkb_rmeasure_aside(const nkb_rrun_t *run, const nkb_aside_t *aside, nkb_rrow_t *row);

/* ---------------------------------------------------------------- a mode */

#define NKB_RSEQ_LEN ((size_t)1 << 20) /* key indices per thread, replayed cyclically */
#define NKB_RMAX_IMPLS 2               /* rows per thread count */

/* What every Redis mode sets up before measuring and tears down after. */
typedef struct nkb_rworld {
    nkb_opts_t o;
    nkb_redis_t redis;
    char prefix[64];     /* "nkb:<pid>:<mode>:", the run's own namespace */
    nkb_keys_t keys;
    uint32_t *seqs[NKB_MAX_THREADS];
    redisContext *admin; /* cleans the prefix, prefills */
    double load_before, load_after;
    nkb_rrow_t rows[NKB_MAX_POINTS * NKB_RMAX_IMPLS]; /* [point * n_impls + impl] */
} nkb_rworld_t;

/* A Redis mode: its defaults, its rows and what it adds to the flow of nkb_rmode_run. */
typedef struct nkb_rmode {
    const char *name;
    size_t size;            /* of the mode's own struct, whose first member is the world */
    uint32_t keys;          /* defaults of --keys, --duration-ms and --dist */
    uint64_t duration_ms;
    nkb_dist_t dist;
    int n_impls, base_impl; /* rows per thread count; the one ratios divide by */
    const char *const *impl_names, *const *impl_keys; /* for people, for JSON */
    int (*setup)(nkb_rworld_t *w); /* once the world is built; returns 0 or -1 */
    /* measures impl at `threads` threads into row; returns 0 or -1 (a row that
     * comes back failed is an error too) */
    int (*cell)(nkb_rworld_t *w, int impl, unsigned threads, nkb_rrow_t *row);
    void (*print_table)(nkb_rworld_t *w);
    json_t *(*workload_json)(nkb_rworld_t *w); /* merged into "workload" */
    /* adds the mode's fields to row's JSON object out, given the baseline row */
    void (*row_json)(const nkb_rrow_t *row, const nkb_rrow_t *base, json_t *out);
} nkb_rmode_t;

/* The whole of a Redis mode, as its main: allocates the mode's struct (zeroed), sets
 * the options' defaults and parses argv, finds the server (--redis, else
 * $NKC_REDIS_URL, else a throwaway redis-server on a free loopback port, else prints
 * that the mode is skipped), builds the keys and sequences, runs setup, measures
 * every cell o->repeat times in interleaved rounds keeping each cell's median round
 * by ops/s, prints the table or the JSON, deletes the run's keys and stops a
 * throwaway server. Returns the exit code: 0 (also when skipped), 1 after an error,
 * 2 for bad flags. */
int nkb_rmode_main(const nkb_rmode_t *m, int argc, char **argv);
/* The baseline row at the thread count of w->rows[i]. */
const nkb_rrow_t *nkb_rbase(const nkb_rmode_t *m, const nkb_rworld_t *w, size_t i);

/* ---------------------------------------------------------------- reporting */

/* num / den, or < 0 when den is 0 (not measured). */
double nkb_ratio(double num, double den);
/* The lines above a table: the workload, the server and the machine. */
void nkb_rprint_head(const nkb_rworld_t *w);
/* The latency columns' header and a row's: ops/s, then p50 p90 p99 p999 max in us. */
void nkb_rprint_latency_head(void);
void nkb_rprint_latency(const nkb_rrow_t *row);
/* A ratio column: "1.23x", or "-" for a negative ratio. */
void nkb_rprint_ratio(double r);
/* A ratio for JSON: null for a negative ratio, else the number. */
json_t *nkb_rjson_ratio(double r);

#endif /* NKB_REDIS_BASE_H */
