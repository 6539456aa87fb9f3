/*
 * Mode tiers: the library as L1 over Redis over a loader, against plain cache-aside
 * on the same Redis (hiredis GET; on a miss query the database, then SET with the
 * TTL), on the same keys, key sequences and thread counts, rows measured one after
 * another. The database is simulated (each query sleeps --loader-us and returns
 * --value-size bytes) or SQLite; its queries per second are the load each side
 * leaves on it. By default a row measures steady state: every key already in the
 * side's lowest cache tier (Redis, or L1 without Redis), then an untimed warm-up
 * that fills the library's L1 with what the workload reads. With --cold every row
 * starts empty instead: a fresh cache and no key under the run's prefix in Redis.
 * Without Redis the baseline is the same cache-aside over an in-process mutex map.
 */
#include "redis_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_KEYS 100000
#define DEFAULT_DURATION_MS 2500 /* keep in step with the --duration-ms help in main.c */
#define TTL_MS 300000            /* the playbook's 5 minutes, in L1 and in Redis */

#define DEFAULT_LOADER_US 200
#define DEFAULT_WARMUP_MS 1000
#define PREFILL_ENVELOPE "V" /* the library's value format in Redis (docs/FORMAT.md) */

enum { IMPL_LIB, IMPL_ASIDE, N_IMPLS };
static const char *const impl_names[N_IMPLS] = {"nakkucache L1+L2+loader",
                                                "cache-aside on Redis"};
static const char *const impl_keys[N_IMPLS] = {"nakkucache", "cache_aside"};

static const char *const lib_props[][2] = {
    {"l1.max_bytes", "256MiB"}, {"l1.ttl_ms", "300000"}, {"l2.ttl_ms", "300000"}};
/* --tiers l2: L1 cannot be switched off; these make it hold (about) one entry */
static const char *const l2_only_props[][2] = {
    {"l1.max_bytes", "64KiB"}, {"l1.max_entries", "1"}, {"l1.ttl_ms", "300000"},
    {"l2.ttl_ms", "300000"}};

struct tiers {
    nkb_rworld_t w; /* first: the callbacks get &w back */
    nkb_lib_setup_t lib;
    nkb_aside_t aside;
    const char *lib_name, *aside_name;
};

static const nkb_rmode_t mode;

static int setup(nkb_rworld_t *w)
{
    struct tiers *t = (struct tiers *)w;

    const int l2 = w->have_redis && w->o.tier_l2, l1 = w->o.tier_l1;

    if (nkb_db_open(&w->db, &w->o, &w->keys) != 0)
        return -1;
    t->lib = (nkb_lib_setup_t){.redis = l2 ? &w->redis : NULL, .prefix = w->prefix,
                               .props = l1 ? lib_props : l2_only_props,
                               .n_props = l1 ? sizeof lib_props / sizeof lib_props[0]
                                             : sizeof l2_only_props / sizeof l2_only_props[0],
                               .loader = nkb_db_loader, .udata = &w->db, .keys = &w->keys, .db = &w->db,
                               .prefill_l1 = !l2 && !w->o.cold, .value_size = w->o.value_size};
    t->aside = (nkb_aside_t){.redis = w->have_redis ? &w->redis : NULL, .keys = &w->keys,
                             .prefix = w->prefix, .prefix_len = strlen(w->prefix), .db = &w->db,
                             .ttl_ms = TTL_MS};
    t->lib_name = l1 && l2 ? "nakkucache L1+L2+loader"
                  : l1     ? "nakkucache L1+loader"
                           : "nakkucache L2+loader (L1 ~off)";
    t->aside_name = w->have_redis ? impl_names[IMPL_ASIDE] : "cache-aside on a mutex map";
    return 0;
}

/* Where a row starts: empty (--cold), or with every key in the side's lowest cache
 * tier, as a service that has been up for a while (Redis holds what every process
 * loaded; a map without Redis holds what this one did). */
static int prepare(struct tiers *t, int impl)
{
    nkb_rworld_t *w = &t->w;
    uint32_t i;

    if (w->have_redis && nkb_redis_unlink_prefix(w->admin, w->prefix) != 0)
        return -1;
    if (!w->have_redis && impl == IMPL_ASIDE &&
        (t->aside.map = nkb_lockmap_new(w->o.keys)) == NULL)
        return -1;
    if (w->o.cold)
        return 0;
    if (impl == IMPL_LIB)
        return t->lib.redis == NULL ? 0 /* prefill_l1 */
                                    : nkb_redis_prefill(w->admin, w->prefix, &w->keys,
                                                        w->o.value_size, PREFILL_ENVELOPE, TTL_MS);
    if (w->have_redis)
        return nkb_redis_prefill(w->admin, w->prefix, &w->keys, w->o.value_size, "", TTL_MS);
    for (i = 0; i < w->keys.n; i++) {
        unsigned char val[NKB_VALUE_MAX];

        if (nkb_db_query(&w->db, nkb_key(&w->keys, i), w->keys.klen, val) != 0 ||
            nkb_lockmap_put(t->aside.map, nkb_key(&w->keys, i), w->keys.klen, val,
                            w->o.value_size) != 0)
            return -1;
    }
    return 0;
}

/* One row: prepared as above, a fresh cache or fresh connections, the untimed
 * warm-up, then the measured run. */
static int cell(nkb_rworld_t *w, int impl, unsigned n, nkb_rrow_t *row)
{
    struct tiers *t = (struct tiers *)w;
    nkb_rrun_t run = {.o = &w->o, .threads = n, .seqs = w->seqs, .seq_len = NKB_RSEQ_LEN,
                      .db = &w->db, .warmup_ms = w->o.cold ? 0 : w->o.warmup_ms};
    uint64_t delay = w->db.delay_us;
    int rc;

    w->db.delay_us = 0; /* a prefill without Redis reads the database at no cost */
    rc = prepare(t, impl);
    w->db.delay_us = delay;
    if (rc == 0)
        rc = impl == IMPL_LIB ? nkb_rmeasure_lib(&run, &t->lib, row)
                              : nkb_rmeasure_aside(&run, &t->aside, row);
    row->name = impl == IMPL_LIB ? t->lib_name : t->aside_name;
    nkb_lockmap_free(t->aside.map);
    t->aside.map = NULL;
    return rc;
}

/* ---------------------------------------------------------------- report */

static double pct(const nkb_rrow_t *r, int src)
{
    return r->ops ? 100.0 * (double)r->served[src] / (double)r->ops : 0;
}

/* Database queries per operation. */
static double per_op(const nkb_rrow_t *r)
{
    return r->ops ? (double)r->db_calls / (double)r->ops : 0;
}

static void print_tier_row(const nkb_rrow_t *r, const nkb_rrow_t *base)
{
    printf("%7u  %-30s ", r->threads, r->name);
    if (r->key == impl_keys[IMPL_LIB] || r->served[NKB_SRC_L1] > 0)
        printf("%6.2f", pct(r, NKB_SRC_L1));
    else
        printf("%6s", "-");
    printf(" %7.2f %6.2f %6.2f %8llu %10.0f %8.1f", pct(r, NKB_SRC_L2), pct(r, NKB_SRC_LOADER),
           pct(r, NKB_SRC_WRITE),
           (unsigned long long)r->db_calls, r->db_per_sec, r->db_mean_us);
    nkb_rprint_ratio(nkb_ratio(r->db_per_sec, base->db_per_sec));
    nkb_rprint_ratio(nkb_ratio(per_op(r), per_op(base)));
    printf(" %6llu\n", (unsigned long long)r->served[NKB_SRC_ERROR]);
}

/* What in the library's counters a reader should know about. */
static void print_notes(const nkb_rworld_t *w)
{
    for (size_t i = 0; i < w->o.n_points * N_IMPLS; i++) {
        const nkb_rrow_t *r = &w->rows[i];
        json_int_t fail = json_integer_value(json_object_get(r->extra, "l2_failures"));
        json_int_t wait = json_integer_value(json_object_get(r->extra, "load_coalesced"));

        if (fail > 0)
            printf("note: %u thread(s): the library's Redis calls failed %lld times "
                   "(%lld timeouts); those reads went to the database\n", r->threads,
                   (long long)fail,
                   (long long)json_integer_value(json_object_get(r->extra, "l2_timeouts")));
        if (wait > 0)
            printf("note: %u thread(s): %lld library misses waited for another thread's "
                   "query of the same key (single-flight)\n", r->threads, (long long)wait);
    }
}

static void print_table(nkb_rworld_t *w)
{
    const size_t n_rows = w->o.n_points * N_IMPLS;

    const struct tiers *t = (const struct tiers *)w;

    if (w->have_redis)
        printf("tiers: the library (%s) vs plain cache-aside on the same Redis\n(GET; on a "
               "miss query the database, then SET PX %d)", t->lib_name, TTL_MS);
    else
        printf("tiers: the library (%s) vs cache-aside on an in-process mutex map\n(on a miss "
               "query the database, then put; no TTL)", t->lib_name);
    if (w->o.cold)
        printf("; every row starts cold: empty L1, no keys in Redis or the map\n");
    else
        printf(";\nevery row starts with all keys in %s, then runs the workload %llu ms "
               "untimed (warm-up) before the measured run (--cold: start empty)\n",
               t->lib.redis != NULL || w->have_redis ? "Redis (L1 empty)" : "L1 and in the map",
               (unsigned long long)w->o.warmup_ms);
    if (w->o.read_ratio < 1.0)
        printf("writes: %.0f %% of operations update the database (one query's delay), then "
               "cache_del (baseline: DEL / remove)\n", 100.0 * (1.0 - w->o.read_ratio));
    if (w->db.sqlite != NULL)
        printf("database: SQLite %s (table nkb_kv; SELECT by primary key, UPDATE for writes)\n",
               w->o.sqlite_path);
    else
        printf("database: each query sleeps %llu us (nanosleep; what it took is the query us "
               "column) and returns %zu B\n", (unsigned long long)w->o.loader_us,
               w->o.value_size);
    nkb_rprint_head(w);
    printf("\n");
    nkb_rprint_latency_head();
    printf(" %8s\n", "vs aside");
    for (size_t i = 0; i < n_rows; i++) {
        nkb_rprint_latency(&w->rows[i]);
        nkb_rprint_ratio(nkb_ratio(w->rows[i].ops_per_sec, nkb_rbase(&mode, w, i)->ops_per_sec));
        printf("\n");
    }
    printf("\nwhere answers came from (%% of operations; W: writes) and the load left on the "
           "database;\nDB calls are queries (not writes); DB/s and DB/op: DB calls per second "
           "and per operation, as ratios to cache-aside\n");
    printf("%7s  %-30s %6s %7s %6s %6s %8s %10s %8s %8s %8s %6s\n", "threads", "implementation",
           "L1 %", "Redis %", "DB %", "W %", "DB calls", "DB calls/s", "query us", "DB/s", "DB/op",
           "errors");
    for (size_t i = 0; i < n_rows; i++)
        print_tier_row(&w->rows[i], nkb_rbase(&mode, w, i));
    print_notes(w);
}

static json_t *workload_json(nkb_rworld_t *w)
{
    const struct tiers *t = (const struct tiers *)w;

    return json_pack("{s:I, s:s, s:I, s:s, s:b, s:I, s:s, s:s, s:s}", "loader_us",
                     (json_int_t)w->o.loader_us, "loader", w->db.sqlite ? "sqlite" : "nanosleep",
                     "ttl_ms", (json_int_t)TTL_MS, "l1_max_bytes", t->lib.props[0][1], "cold",
                     w->o.cold, "warmup_ms", (json_int_t)(w->o.cold ? 0 : w->o.warmup_ms),
                     "library", t->lib_name, "baseline", t->aside_name, "writes",
                     "update the database, then cache_del (baseline: DEL)");
}

static void row_json(const nkb_rworld_t *w, const nkb_rrow_t *row, const nkb_rrow_t *base,
                     json_t *out)
{
    (void)w;
    json_object_set_new(out, "db_calls_per_op", json_real(per_op(row)));
    json_object_set_new(out, "db_vs_baseline",
                        nkb_rjson_ratio(nkb_ratio(row->db_per_sec, base->db_per_sec)));
    json_object_set_new(out, "db_per_op_vs_baseline",
                        nkb_rjson_ratio(nkb_ratio(per_op(row), per_op(base))));
}

static const nkb_rmode_t mode = {
    .name = "tiers", .size = sizeof(struct tiers), .keys = DEFAULT_KEYS,
    .duration_ms = DEFAULT_DURATION_MS, .dist = NKB_DIST_ZIPF,
    .loader_us = DEFAULT_LOADER_US, .warmup_ms = DEFAULT_WARMUP_MS, .redis_optional = 1,
    .n_impls = N_IMPLS, .base_impl = IMPL_ASIDE, .impl_names = impl_names,
    .impl_keys = impl_keys, .setup = setup, .cell = cell,
    .print_table = print_table, .workload_json = workload_json, .row_json = row_json};

int nkb_tiers_main(int argc, char **argv)
{
    return nkb_rmode_main(&mode, argc, argv);
}
