/*
 * nakkucache-bench: the pieces the modes share. A mode is `int main(argc, argv)`
 * with argv[0] the mode name; main.c holds the table of modes. Every symbol here
 * is prefixed nkb_. Nothing in bench/ is part of the library or of its tests.
 * Timing claims are ratios against a baseline measured in the same run.
 */
#ifndef NKB_BENCH_H
#define NKB_BENCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- modes */

/* Each mode parses its argv with nkb_opts_parse; argv[0] is the mode name. Returns
 * an exit code. */
int nkb_l1_main(int argc, char **argv);
int nkb_memory_main(int argc, char **argv);
/* Trace replay (bench/trace.c). */
int nkb_trace_main(int argc, char **argv);
/* The Redis tier (bench/tiers.c, bench/l2.c; shared parts in bench/redis_base.c). */
int nkb_tiers_main(int argc, char **argv);
int nkb_l2_main(int argc, char **argv);
/* Cross-process invalidation (bench/coherence.c). */
int nkb_coherence_main(int argc, char **argv);
/* Concurrent misses of cold keys (bench/stampede.c) and one hot key expiring under
 * load, refresh-ahead on and off (bench/hotkey.c); both on bench/redis_base.c. */
int nkb_stampede_main(int argc, char **argv);
int nkb_hotkey_main(int argc, char **argv);

/* ---------------------------------------------------------------- options */

#define NKB_MAX_POINTS 16   /* thread counts in one --threads list */
#define NKB_MAX_THREADS 256 /* largest thread count in it */
#define NKB_MAX_TRACES 64   /* --trace FILE given this many times at most */
#define NKB_MAX_SIZES 16    /* cache sizes in one --sizes list */
#define NKB_MAX_STRIPES 256 /* --stripes at most: trace keeps one policy per stripe */

#ifndef NKB_TRACES_DIR /* CMake passes the one next to the source tree */
#define NKB_TRACES_DIR "../shared/traces"
#endif

typedef enum nkb_dist { NKB_DIST_ZIPF, NKB_DIST_UNIFORM, NKB_DIST_HOTSPOT } nkb_dist_t;

/* The flags shared by the modes; nkb_opts_init sets the defaults listed in
 * nkb_opts_usage. */
typedef struct nkb_opts {
    unsigned threads[NKB_MAX_POINTS]; /* --threads 1,2 */
    size_t n_points;
    uint32_t keys;        /* --keys */
    nkb_dist_t dist;      /* --dist zipf[:theta]|uniform|hotspot[:fraction:probability] */
    double theta;         /* --theta, zipf skew in (0, 1) */
    double hot_fraction;  /* hotspot: this fraction of the keys ... */
    double hot_prob;      /* ... gets this fraction of the operations */
    double read_ratio;    /* --read-ratio: the rest are writes (each mode says which) */
    size_t key_size;      /* --key-size: "key:" + zero-padded decimal */
    size_t value_size;    /* --value-size */
    uint64_t duration_ms; /* --duration-ms per measured point */
    uint64_t ops;         /* --ops per thread per point; 0 = run for duration_ms */
    uint64_t warmup_ms;   /* --warmup-ms: JVM warm-up (l1), untimed warm-up per row (tiers) */
    uint64_t seed;        /* --seed of the key sequences */
    unsigned repeat;      /* --repeat: rounds per point; the median round is reported */
    int json;             /* --json: one JSON document on stdout instead of a table */
    int csv;              /* --csv: the rows as CSV on stdout instead of a table */
    const char *plot;     /* --plot PNG: throughput and latency against threads */
    int cold;             /* --cold: tiers rows start empty (no prefill, no warm-up) */
    int tier_l1, tier_l2; /* --tiers l1,l2: which tiers the library uses */
    unsigned rounds;      /* --rounds: stampede's waves of cold keys */
    uint64_t ttl_ms;      /* --ttl-ms: the hot key's TTL (hotkey) */
    uint64_t rate;        /* --rate: operations per second per thread, paced (hotkey) */
    unsigned readers;     /* coherence: --readers, --interval-ms, --short-ttl-ms */
    uint64_t interval_ms, short_ttl_ms;
    int caffeine;         /* cleared by --no-caffeine */
    int memory;           /* cleared by --no-memory (the l1 mode's memory section) */
    const char *caffeine_jar; /* --caffeine-jar */
    const char *redis_url;    /* --redis URL (tiers, l2); NULL: $NKC_REDIS_URL or a throwaway */
    uint64_t loader_us;       /* --loader-us: the simulated database's delay */
    const char *sqlite_path;  /* --loader sqlite:PATH: a real database instead */
    /* trace only */
    const char *trace_files[NKB_MAX_TRACES]; /* --trace, repeatable (argv's strings) */
    size_t n_trace_files;                    /* 0: every *.keys.gz in traces_dir */
    const char *traces_dir;                  /* --traces-dir */
    unsigned sizes[NKB_MAX_SIZES];           /* --sizes, % of each trace's unique keys */
    size_t n_sizes;
    int trace_direct;     /* --direct: also replay src/policy.c on its own */
    int trace_library;    /* cleared by --no-library (which implies --direct) */
    unsigned stripes;     /* --stripes for --direct; 0: as the library chose */
} nkb_opts_t;

void nkb_opts_init(nkb_opts_t *o);
/* Parses argv[1..argc-1] for mode argv[0], accepting only the flags that mode
 * takes. Returns 0 to run, 1 when --help was printed, -1 after an error message
 * on stderr. */
int nkb_opts_parse(nkb_opts_t *o, int argc, char **argv);
/* Prints the flags mode takes, with their defaults. */
void nkb_opts_usage(const char *mode);
/* "zipf(0.99)", "uniform" or "hotspot(0.20 of keys get 0.80)" into buf. */
const char *nkb_dist_name(const nkb_opts_t *o, char *buf, size_t len);
/* The largest entry of o->threads. */
unsigned nkb_opts_max_threads(const nkb_opts_t *o);

/* ---------------------------------------------------------------- time */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t nkb_now_ns(void);
/* Sleeps ns (nanosleep, resumed after a signal). */
void nkb_sleep_ns(uint64_t ns);
/* The 1-minute load average (/proc/loadavg), or -1: how busy the machine was. */
double nkb_loadavg(void);

/* ---------------------------------------------------------------- histogram */

/* Log-linear buckets: exact below 32 ns, then 32 buckets per power of two
 * (at most 3.2 % relative error), up to 2^64 ns. Not thread-safe: one per thread,
 * merged after the run. */
#define NKB_HIST_SUB_BITS 5
#define NKB_HIST_BUCKETS ((64 - NKB_HIST_SUB_BITS + 1) << NKB_HIST_SUB_BITS)
typedef struct nkb_hist {
    uint64_t count;
    uint64_t max; /* exact, unlike the quantiles */
    uint64_t bucket[NKB_HIST_BUCKETS];
} nkb_hist_t;

/* What every table prints of a histogram, in ns. */
typedef struct nkb_pct {
    uint64_t p50, p90, p99, p999, max;
} nkb_pct_t;

/* Records `weight` samples of value ns. */
void nkb_hist_add(nkb_hist_t *h, uint64_t ns, uint64_t weight);
void nkb_hist_merge(nkb_hist_t *dst, const nkb_hist_t *src);
/* The value at quantile q in [0, 1] (the midpoint of its bucket); 0 when empty. */
uint64_t nkb_hist_quantile(const nkb_hist_t *h, double q);
/* p50, p90, p99, p999 (bucket midpoints) and the exact max. */
nkb_pct_t nkb_hist_pct(const nkb_hist_t *h);

/* ---------------------------------------------------------------- progress */

/* One line on stderr, rewritten in place, only when stderr is a terminal (a log
 * file or a pipe gets nothing): "nakkucache-bench MODE: what". */
void nkb_progress(const char *mode, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Erases the line (when one was drawn). */
void nkb_progress_done(void);

/* ---------------------------------------------------------------- output */

/* The path of program (searched in $PATH unless it has a slash) into out; 0 when
 * it is there and executable, else -1. */
int nkb_find_program(const char *program, char *out, size_t len);

/* Prints doc's "rows" array (objects; nested objects flattened to "a.b" columns,
 * the union of every row's columns in first-seen order) as CSV on stdout. */
void nkb_csv_print(const json_t *doc);
/* Prints doc as indented JSON (o->json) or its rows as CSV (o->csv) on stdout, and
 * with o->plot draws its rows. Takes doc's reference. Returns 0, or -1 when the
 * plot failed (message on stderr). */
int nkb_output(const nkb_opts_t *o, json_t *doc);
/* Draws o->plot from doc's rows (gnuplot). A trace document ("mode": "trace"):
 * miss ratio against cache size, one panel per trace, one line per policy; any
 * other: ops/s and p99 latency against threads, one line per "name" (else "impl").
 * Returns 0, or -1 after a message (no gnuplot: what to install). */
int nkb_plot(const nkb_opts_t *o, const json_t *doc);

/* ---------------------------------------------------------------- keys */

/* splitmix64: a small, fast, seedable generator; the state is one word. */
uint64_t nkb_rng_next(uint64_t *state);

/* Zipf over ranks [0, n) with skew theta in (0, 1) (Gray et al., "Quickly
 * generating billion-record synthetic databases", SIGMOD'94, as in YCSB).
 * Rank 0 is the most popular. */
typedef struct nkb_zipf {
    uint64_t n;
    double theta, alpha, zetan, eta, half_pow_theta;
} nkb_zipf_t;

/* O(n) (it sums the zeta series). Returns 0, or -1 for a bad n or theta. */
int nkb_zipf_init(nkb_zipf_t *z, uint64_t n, double theta);
uint64_t nkb_zipf_next(const nkb_zipf_t *z, uint64_t *rng);

/* Marks a sequence entry as a write (update the database, then delete the key)
 * when o->read_ratio < 1; the key index is in the other bits. */
#define NKB_SEQ_WRITE 0x80000000u
#define NKB_SEQ_KEY(e) ((e) & ~NKB_SEQ_WRITE)

/* A new array of len key indices in [0, o->keys) drawn from o->dist for thread
 * `thread` (seeded from o->seed and thread, so every run and every program that
 * reads it sees the same sequence). Zipf ranks are scattered over the key space
 * by a fixed bijection, so hot keys are not neighbours in memory. Free with
 * free(); NULL when out of memory or the distribution is invalid. */
uint32_t *nkb_seq_new(const nkb_opts_t *o, unsigned thread, size_t len);

/* Fixed-stride table of every key, "key:%0*u" to o->key_size bytes. */
typedef struct nkb_keys {
    char *bytes;   /* keys[i] starts at bytes + i * stride */
    size_t stride; /* key_size rounded up to 8 */
    size_t klen;
    uint32_t n;
} nkb_keys_t;

/* Returns 0, or -1 (message on stderr) when out of memory or key_size is too
 * small to tell o->keys keys apart. */
int nkb_keys_init(nkb_keys_t *k, const nkb_opts_t *o);
void nkb_keys_free(nkb_keys_t *k);
static inline const char *nkb_key(const nkb_keys_t *k, uint32_t i)
{
    return k->bytes + (size_t)i * k->stride;
}

/* ---------------------------------------------------------------- baseline */

/* The baseline: a chained hash map (XXH3 of the key bytes) under one global
 * pthread mutex. Readers copy the value out under the lock. */
typedef struct nkb_lockmap nkb_lockmap_t;

/* A new map with n_buckets (rounded up to a power of two); NULL when out of memory. */
nkb_lockmap_t *nkb_lockmap_new(size_t n_buckets);
void nkb_lockmap_free(nkb_lockmap_t *m);
/* Inserts or replaces. Returns 0, or -1 when out of memory. */
int nkb_lockmap_put(nkb_lockmap_t *m, const void *key, size_t klen, const void *val,
                    size_t vlen);
/* Copies the value into buf (cap bytes), sets *len. Returns 1 on a hit, 0 on a
 * miss or when cap is too small (then *len is the size needed). */
int nkb_lockmap_get_copy(nkb_lockmap_t *m, const void *key, size_t klen, void *buf,
                         size_t cap, size_t *len);
/* Removes key when present. */
void nkb_lockmap_del(nkb_lockmap_t *m, const void *key, size_t klen);

/* ---------------------------------------------------------------- results */

/* One measured point: an implementation at a thread count. */
typedef struct nkb_row {
    const char *impl;   /* "nakkucache get", "mutex map", "caffeine", ... */
    const char *key;    /* the same as a JSON-friendly identifier */
    unsigned threads;
    uint64_t ops;       /* completed operations (lookups and writes), all threads */
    uint64_t writes;    /* of which writes (--read-ratio < 1) */
    uint64_t misses;    /* lookups that found nothing (should be 0) */
    double ops_per_sec; /* sum over threads of ops / own elapsed time */
    uint64_t p50_ns, p90_ns, p99_ns, p999_ns, max_ns;
} nkb_row_t;

/* ---------------------------------------------------------------- caffeine */

/* A running Caffeine comparison: bench/caffeine/CaffeineBench.java in a JVM that
 * holds the prefilled cache and waits for "measure N" requests. */
typedef struct nkb_caffeine nkb_caffeine_t;

/* Writes the key sequences (seqs[t], seq_len each, one per thread up to the largest
 * count) to a temporary file, compiles the program with javac against
 * o->caffeine_jar, starts it and waits until it is prefilled and warmed up
 * (o->warmup_ms). Returns 1 with *out a new session, 0 when skipped (no javac or no
 * jar), -1 on failure; for 0 and -1 *out is NULL and why says why. */
int nkb_caffeine_start(const nkb_opts_t *o, uint32_t *const *seqs, size_t seq_len,
                       nkb_caffeine_t **out, char *why, size_t whylen);
/* Measures one point at `threads` threads (o->duration_ms or o->ops, as given to
 * start) into row. Returns 0, or -1 when the JVM failed. */
int nkb_caffeine_measure(nkb_caffeine_t *c, unsigned threads, nkb_row_t *row);
/* JVM heap growth per entry beyond key + value bytes across the prefill, between
 * full GCs; < 0 when unknown. */
double nkb_caffeine_heap_per_entry(const nkb_caffeine_t *c);
/* Ends the JVM and removes the temporary directory. NULL is a no-op. */
void nkb_caffeine_stop(nkb_caffeine_t *c);

/* ---------------------------------------------------------------- memory */

/* Bytes per entry beyond key + value at o->keys entries, measured on fresh maps. */
typedef struct nkb_memory {
    uint32_t entries;
    size_t payload;         /* key + value bytes of one entry */
    double lib_accounted;   /* from the library's own l1 byte count; < 0 when absent */
    double lib_malloc;      /* from glibc's in-use heap (mallinfo2), cache_open included */
    double lib_open_bytes;  /* what cache_open alone allocated (in lib_malloc) */
    double lockmap_malloc;  /* the baseline map, measured the same way */
    double caffeine_heap;   /* nkb_caffeine_heap_per_entry when known, else < 0 */
} nkb_memory_t;

/* Returns 0, or -1 (message on stderr). */
int nkb_memory_measure(const nkb_opts_t *o, nkb_memory_t *out);
void nkb_memory_print(const nkb_memory_t *m, const nkb_opts_t *o);
/* A new JSON object of m. */
json_t *nkb_memory_json(const nkb_memory_t *m);

#endif /* NKB_BENCH_H */
