/*
 * What the Redis modes (tiers, l2, stampede, hotkey) share: finding or starting a Redis server,
 * raw hiredis connections for the baselines and for cleaning the run's own key
 * prefix, the simulated database, the two sides' operations, the measuring loop
 * (every operation timed on its own: they take microseconds), the interleaved
 * --repeat rounds, and the common parts of their tables and JSON. A mode is an
 * nkb_rmode_t and one call to nkb_rmode_main. Without any Redis, a mode that allows
 * it runs the library as L1 + loader against cache-aside on an in-process mutex map.
 */
#ifndef NKB_REDIS_BASE_H
#define NKB_REDIS_BASE_H

#include "bench.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <nakkucache.h>
#include <stdatomic.h>
#include <sys/types.h>

#define NKB_VALUE_MAX 16384 /* the largest --value-size */

/* ---------------------------------------------------------------- the server */

typedef struct nkb_redis {
    char url[512];      /* what l2.url gets */
    char where[300];    /* host:port or socket path: printable (never the password) */
    const char *source; /* "--redis", "NKC_REDIS_URL" or "a throwaway redis-server ..." */
    char version[32];   /* the server's redis_version, or "?" */
    pid_t pid;          /* the throwaway server, else 0 */
    char dir[256];      /* its temporary directory, else "" */
} nkb_redis_t;

/* Finds the server: --redis, else $NKC_REDIS_URL, else a throwaway redis-server on
 * a free loopback port (stopped by nkb_redis_release, at exit or on a fatal signal).
 * Returns 1 with a server, 0 when there is none (nothing printed), -1 after an
 * error message. */
int nkb_redis_acquire(nkb_redis_t *r, const nkb_opts_t *o, const char *mode);
/* Stops a throwaway server and removes its directory; otherwise nothing. */
void nkb_redis_release(nkb_redis_t *r);
/* Prints that mode was skipped for want of Redis (JSON with --json). */
void nkb_redis_print_skipped(const nkb_opts_t *o, const char *mode);

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
typedef struct nkb_sqlite nkb_sqlite_t;
typedef struct nkb_db {
    uint64_t delay_us;
    size_t value_size;
    nkb_sqlite_t *sqlite;                /* --loader sqlite:PATH, else NULL: simulated */
    atomic_uint_fast64_t calls, busy_ns; /* queries and the time they really took */
    atomic_uint_fast64_t writes;         /* updates (the write half of --read-ratio) */
} nkb_db_t;

/* Fills buf (value_size bytes) with key's value after the delay (or from SQLite);
 * counts the query. Returns 0, or -1 when SQLite failed. */
int nkb_db_query(nkb_db_t *db, const void *key, size_t klen, unsigned char *buf);
/* A write to key's record: the delay (or a SQLite UPDATE); counted in writes. */
int nkb_db_update(nkb_db_t *db, const void *key, size_t klen);
/* Sets db up from o (--loader-us, --value-size, --loader sqlite:PATH, which fills
 * the file with keys). Returns 0, or -1 after a message. */
int nkb_db_open(nkb_db_t *db, const nkb_opts_t *o, const nkb_keys_t *keys);
/* Closes what nkb_db_open opened; a zeroed db is fine. */
void nkb_db_close(nkb_db_t *db);
/* A cache_loader_fn over the nkb_db_t in udata: one query, its value put. */
cache_err_t nkb_db_loader(void *udata, const void *key, size_t klen, cache_sink_t *sink);

/* key's value in the simulated database: len bytes derived from the key. */
void nkb_db_value(const void *key, size_t klen, unsigned char *buf, size_t len);

/* SQLite as the database (bench/db.c): opens path, creates table nkb_kv and
 * fills it with every key's value. NULL after a message on stderr. */
nkb_sqlite_t *nkb_sqlite_open(const char *path, const nkb_keys_t *keys, size_t value_size);
/* One SELECT (or UPDATE) on the calling thread's own connection. Returns 0 or -1. */
int nkb_sqlite_get(nkb_sqlite_t *s, const void *key, size_t klen, unsigned char *buf,
                   size_t len);
int nkb_sqlite_update(nkb_sqlite_t *s, const void *key, size_t klen);
/* Closes every connection. NULL is a no-op. */
void nkb_sqlite_close(nkb_sqlite_t *s);

/* ---------------------------------------------------------------- measuring */

/* Where an answer came from: the library's cache_tier_t values, plus an error. For
 * a cache-aside baseline a Redis hit is NKB_SRC_L2 and a miss NKB_SRC_LOADER. */
enum { NKB_SRC_ERROR = 0, NKB_SRC_L1, NKB_SRC_L2, NKB_SRC_LOADER, NKB_SRC_WRITE,
       NKB_SRC_COUNT };
#define NKB_SRC_FATAL (-1) /* the thread cannot go on (a broken connection) */

/* One operation on sequence entry k (a key index, NKB_SEQ_WRITE set for a write)
 * with the thread's own argument (its connection); returns NKB_SRC_* or
 * NKB_SRC_FATAL. */
typedef int (*nkb_rop_fn)(void *shared, void *mine, uint32_t k);

/* One measured point: an implementation at a thread count. */
typedef struct nkb_rrow {
    const char *name, *key; /* for people, for JSON; a cell may set name, else the mode's */
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
    uint64_t warmup_ms;    /* an untimed run first, on the same cache or connections */
    size_t round_len;      /* > 0: o->rounds rounds of this many operations per thread,
                              every thread starting each round together (a barrier) */
    uint64_t interval_ns;  /* > 0: each thread paced at one operation per interval,
                              latency counted from when each was due */
} nkb_rrun_t;

/* ---------------------------------------------------------------- the two sides */

/* The library: a fresh cache per measured row. */
typedef struct nkb_lib_setup {
    const nkb_redis_t *redis;       /* NULL: no L2 (L1 + loader) */
    const char *prefix;             /* l2.key_prefix */
    const char *const (*props)[2];  /* the mode's properties, {name, value} */
    size_t n_props;
    cache_loader_fn loader;         /* or NULL */
    void *udata;
    const nkb_keys_t *keys;
    nkb_db_t *db;                   /* updated by writes (NKB_SEQ_WRITE), or NULL */
    int prefill_l1;                 /* cache_set every key before the warm-up */
    size_t value_size;              /* for prefill_l1 and write_set */
    int write_set;                  /* a write is cache_set of the key's value (l2),
                                       not a database update + cache_del */
} nkb_lib_setup_t;

/* Measures run into row (bench/rmeasure.c): the warm-up when asked for, then the
 * timed or counted pass. Returns 0 or -1. */
int nkb_rrun_measure(const nkb_rrun_t *run, nkb_rrow_t *row);
/* Releases what a row holds (its counters). */
void nkb_rrow_clear(nkb_rrow_t *row);

/* Opens a cache for lib with l2.pool_size = run->threads, measures cache_get_ex
 * (the tier from its info) into row with the cache's counters in row->extra, and
 * closes it. Returns 0 or -1. */
int nkb_rmeasure_lib(const nkb_rrun_t *run, const nkb_lib_setup_t *lib, nkb_rrow_t *row);

/* The baseline: plain hiredis, one connection per thread. GET prefix + key; a
 * string is a hit (NKB_SRC_L2). With db, a nil is a miss: query db, SET the value
 * PX ttl_ms (NKB_SRC_LOADER); without db a nil is an error. A write updates db,
 * then DELs; with write_set it SETs envelope + the key's value PX ttl_ms instead.
 * Without Redis (redis NULL) the same over map, a mutex map (no TTL). */
typedef struct nkb_aside {
    const nkb_redis_t *redis;
    nkb_lockmap_t *map;
    const nkb_keys_t *keys;
    const char *prefix;
    size_t prefix_len;
    nkb_db_t *db;
    uint64_t ttl_ms;
    int write_set;        /* with Redis only (l2) */
    const char *envelope; /* for write_set: "" or "V" (docs/FORMAT.md) */
    size_t value_size;    /* for write_set */
} nkb_aside_t;

/* Connects run->threads connections, measures the baseline into row, closes them. */
int nkb_rmeasure_aside(const nkb_rrun_t *run, const nkb_aside_t *aside, nkb_rrow_t *row);

/* ---------------------------------------------------------------- a mode */

#define NKB_RSEQ_LEN ((size_t)1 << 20) /* key indices per thread, replayed cyclically */
#define NKB_RMAX_IMPLS 4               /* rows per thread count */

/* What every Redis mode sets up before measuring and tears down after. */
typedef struct nkb_rworld {
    nkb_opts_t o;
    nkb_redis_t redis;
    int have_redis;      /* 0: L1 + loader only, baseline on a mutex map */
    nkb_db_t db;         /* the modes' database (nkb_db_open in setup), closed at the end */
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
    uint32_t keys;          /* defaults of --keys, --duration-ms, --dist, --loader-us,
                               --warmup-ms and --threads (0-terminated; {0}: 1,2) */
    uint64_t duration_ms;
    nkb_dist_t dist;
    uint64_t loader_us, warmup_ms;
    unsigned threads[4];
    int redis_optional;     /* runs without Redis (L1 + loader); else skipped */
    int median_by_p99;      /* --repeat keeps the median round by p99, not by ops/s
                               (paced or round-based modes, whose ops/s is fixed) */
    int n_impls, base_impl; /* rows per thread count; the one ratios divide by */
    const char *const *impl_names, *const *impl_keys; /* for people, for JSON */
    int (*setup)(nkb_rworld_t *w); /* once the world is built; returns 0 or -1 */
    /* measures impl at `threads` threads into row; returns 0 or -1 (a row that
     * comes back failed is an error too) */
    int (*cell)(nkb_rworld_t *w, int impl, unsigned threads, nkb_rrow_t *row);
    void (*print_table)(nkb_rworld_t *w); /* the human table */
    json_t *(*workload_json)(nkb_rworld_t *w); /* merged into "workload" */
    /* adds the mode's fields to row's JSON object out, given the baseline row */
    void (*row_json)(const nkb_rworld_t *w, const nkb_rrow_t *row, const nkb_rrow_t *base,
                     json_t *out);
} nkb_rmode_t;

/* The whole of a Redis mode, as its main: allocates the mode's struct (zeroed), sets
 * the options' defaults and parses argv, finds the server (nkb_redis_acquire; with
 * none, says so on stderr and runs L1 + loader only when the mode allows it, else
 * prints that the mode is skipped), builds the keys and sequences, runs setup,
 * measures every cell o->repeat times in interleaved rounds keeping each cell's
 * median round (by ops/s, or p99), prints the table, the JSON or the CSV (and the plot),
 * deletes the run's keys and stops a throwaway server. Returns the exit code: 0
 * (also when skipped), 1 after an error, 2 for bad flags. */
int nkb_rmode_main(const nkb_rmode_t *m, int argc, char **argv);
/* Every (point, impl) cell of m o->repeat times, in interleaved rounds; w->rows gets
 * each cell's median round. Returns 0 or -1 (a cell failed). */
int nkb_rmeasure_rounds(const nkb_rmode_t *m, nkb_rworld_t *w);
/* The baseline row at the thread count of w->rows[i]. */
const nkb_rrow_t *nkb_rbase(const nkb_rmode_t *m, const nkb_rworld_t *w, size_t i);

/* ---------------------------------------------------------------- reporting */

/* num / den, or < 0 when den is 0 (not measured). */
double nkb_ratio(double num, double den);
/* The lines above a table: the workload, the server and the machine. */
void nkb_rprint_head(const nkb_rworld_t *w);
/* "stale" and other counters of the library row, 0 when absent. */
uint64_t nkb_rcounter(const nkb_rrow_t *row, const char *name);
/* The latency columns' header and a row's: ops/s, then p50 p90 p99 p999 max in us. */
void nkb_rprint_latency_head(void);
void nkb_rprint_latency(const nkb_rrow_t *row);
/* A ratio column: "1.23x", or "-" for a negative ratio. */
void nkb_rprint_ratio(double r);
/* A ratio for JSON: null for a negative ratio, else the number. */
json_t *nkb_rjson_ratio(double r);

#endif /* NKB_REDIS_BASE_H */
