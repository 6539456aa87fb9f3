/*
 * Mode tiers: the library as L1 over Redis over a loader, against plain cache-aside
 * on the same Redis (hiredis GET; on a miss query the database, then SET with the
 * TTL), on the same keys, key sequences and thread counts, rows measured one after
 * another. The database is simulated: each query sleeps --loader-us and returns
 * --value-size bytes; its queries per second are the load each side leaves on it.
 * Every row starts cold: a fresh cache (empty L1) and no key under the run's prefix
 * in Redis.
 */
#include "redis_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_KEYS 100000
#define DEFAULT_DURATION_MS 2500 /* keep in step with the --duration-ms help in main.c */
#define TTL_MS 300000            /* the playbook's 5 minutes, in L1 and in Redis */
#define VALUE_MAX 16384          /* the largest --value-size */

enum { IMPL_LIB, IMPL_ASIDE, N_IMPLS };
static const char *const impl_names[N_IMPLS] = {"nakkucache L1+L2+loader",
                                                "cache-aside on Redis"};
static const char *const impl_keys[N_IMPLS] = {"nakkucache", "cache_aside"};

static const char *const lib_props[][2] = {
    {"l1.max_bytes", "256MiB"}, {"l1.ttl_ms", "300000"}, {"l2.ttl_ms", "300000"}};

struct tiers {
    nkb_rworld_t w; /* first: the callbacks get &w back */
    nkb_db_t db;
    nkb_lib_setup_t lib;
    nkb_aside_t aside;
};

static const nkb_rmode_t mode;

static cache_err_t load(void *udata, const void *key, size_t klen, cache_sink_t *sink)
{
    nkb_db_t *db = udata;
    unsigned char buf[VALUE_MAX];

    nkb_db_query(db, key, klen, buf);
    return cache_sink_put(sink, buf, db->value_size, 0);
}

static int setup(nkb_rworld_t *w)
{
    struct tiers *t = (struct tiers *)w;

    t->db.delay_us = w->o.loader_us;
    t->db.value_size = w->o.value_size;
    t->lib = (nkb_lib_setup_t){.redis = &w->redis, .prefix = w->prefix, .props = lib_props,
                               .n_props = sizeof lib_props / sizeof lib_props[0],
                               .loader = load, .udata = &t->db, .keys = &w->keys};
    t->aside = (nkb_aside_t){.redis = &w->redis, .keys = &w->keys, .prefix = w->prefix,
                             .prefix_len = strlen(w->prefix), .db = &t->db, .ttl_ms = TTL_MS};
    return 0;
}

/* One row from a cold start: the prefix emptied, a fresh cache or fresh connections. */
static int cell(nkb_rworld_t *w, int impl, unsigned n, nkb_rrow_t *row)
{
    struct tiers *t = (struct tiers *)w;
    nkb_rrun_t run = {.o = &w->o, .threads = n, .seqs = w->seqs, .seq_len = NKB_RSEQ_LEN,
                      .db = &t->db};

    if (nkb_redis_unlink_prefix(w->admin, w->prefix) != 0)
        return -1;
    return impl == IMPL_LIB ? nkb_rmeasure_lib(&run, &t->lib, row)
                            : nkb_rmeasure_aside(&run, &t->aside, row);
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
    printf("%7u  %-24s ", r->threads, r->name);
    if (r->key == impl_keys[IMPL_LIB])
        printf("%6.2f", pct(r, NKB_SRC_L1));
    else
        printf("%6s", "-");
    printf(" %7.2f %6.2f %8llu %10.0f %8.1f", pct(r, NKB_SRC_L2), pct(r, NKB_SRC_LOADER),
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
        json_int_t wait = json_integer_value(json_object_get(r->extra, "coalesced"));

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

    printf("tiers: the library (L1 over Redis over the database) vs plain cache-aside on the "
           "same Redis\n(GET; on a miss query the database, then SET PX %d); every row starts "
           "cold: empty L1, no keys in Redis\n", TTL_MS);
    printf("database: each query sleeps %llu us (nanosleep; what it took is the query us "
           "column) and returns %zu B\n", (unsigned long long)w->o.loader_us, w->o.value_size);
    nkb_rprint_head(w);
    printf("\n");
    nkb_rprint_latency_head();
    printf(" %8s\n", "vs aside");
    for (size_t i = 0; i < n_rows; i++) {
        nkb_rprint_latency(&w->rows[i]);
        nkb_rprint_ratio(nkb_ratio(w->rows[i].ops_per_sec, nkb_rbase(&mode, w, i)->ops_per_sec));
        printf("\n");
    }
    printf("\nwhere answers came from (%% of operations) and the load left on the database;\n"
           "DB/s and DB/op: DB calls per second and per operation, as ratios to cache-aside\n");
    printf("%7s  %-24s %6s %7s %6s %8s %10s %8s %8s %8s %6s\n", "threads", "implementation",
           "L1 %", "Redis %", "DB %", "DB calls", "DB calls/s", "query us", "DB/s", "DB/op",
           "errors");
    for (size_t i = 0; i < n_rows; i++)
        print_tier_row(&w->rows[i], nkb_rbase(&mode, w, i));
    print_notes(w);
}

static json_t *workload_json(nkb_rworld_t *w)
{
    return json_pack("{s:I, s:s, s:I, s:s}", "loader_us", (json_int_t)w->o.loader_us,
                     "loader_wait", "nanosleep", "ttl_ms", (json_int_t)TTL_MS, "l1_max_bytes",
                     lib_props[0][1]);
}

static void row_json(const nkb_rrow_t *row, const nkb_rrow_t *base, json_t *out)
{
    json_object_set_new(out, "db_calls_per_op", json_real(per_op(row)));
    json_object_set_new(out, "db_vs_baseline",
                        nkb_rjson_ratio(nkb_ratio(row->db_per_sec, base->db_per_sec)));
    json_object_set_new(out, "db_per_op_vs_baseline",
                        nkb_rjson_ratio(nkb_ratio(per_op(row), per_op(base))));
}

static const nkb_rmode_t mode = {
    .name = "tiers", .size = sizeof(struct tiers), .keys = DEFAULT_KEYS,
    .duration_ms = DEFAULT_DURATION_MS, .dist = NKB_DIST_ZIPF, .n_impls = N_IMPLS,
    .base_impl = IMPL_ASIDE, .impl_names = impl_names, .impl_keys = impl_keys, .setup = setup,
    .cell = cell, .print_table = print_table, .workload_json = workload_json,
    .row_json = row_json};

int nkb_tiers_main(int argc, char **argv)
{
    return nkb_rmode_main(&mode, argc, argv);
}
