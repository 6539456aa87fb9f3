/*
 * Mode stampede: --threads threads miss the same cold keys at the same moment,
 * behind a slow database (--loader-us, 20 ms by default). Each of --rounds rounds
 * takes --keys keys nobody has read yet (what a set of keys expiring together looks
 * like to the readers); every thread reads each of them once, starting the round
 * together (a barrier). The library's single-flight should query the database once
 * per key; plain cache-aside on Redis (GET, on a nil query, SET) queries it once
 * per thread that saw the nil before the first SET landed. Reported: database
 * calls per key, the readers' latency, and both as ratios to the baseline.
 */
#include "redis_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_KEYS 1           /* keys per round */
#define DEFAULT_LOADER_US 20000  /* a slow query: the window in which misses pile up */
#define TTL_MS 300000

enum { IMPL_LIB, IMPL_ASIDE, N_IMPLS };
static const char *const impl_names[N_IMPLS] = {"nakkucache L1+L2+loader",
                                                "cache-aside on Redis"};
static const char *const impl_keys[N_IMPLS] = {"nakkucache", "cache_aside"};

static const char *const lib_props[][2] = {
    {"l1.max_bytes", "64MiB"}, {"l1.ttl_ms", "300000"}, {"l2.ttl_ms", "300000"}};

struct stampede {
    nkb_rworld_t w; /* first: the callbacks get &w back */
    nkb_lib_setup_t lib;
    nkb_aside_t aside;
    uint64_t keys_per_round;
};

static const nkb_rmode_t mode;

/* Round r reads keys [r * K, r * K + K); thread t starts at the round's key t mod K,
 * so with K > 1 the threads spread over the set as concurrent requests would. */
static int build_rounds(nkb_rworld_t *w, uint64_t k)
{
    nkb_opts_t all = w->o;
    const uint64_t total = k * w->o.rounds;

    if (total > NKB_RSEQ_LEN) {
        fprintf(stderr, "nakkucache-bench stampede: --keys x --rounds is at most %zu\n",
                NKB_RSEQ_LEN);
        return -1;
    }
    all.keys = (uint32_t)total;
    nkb_keys_free(&w->keys);
    if (nkb_keys_init(&w->keys, &all) != 0)
        return -1;
    for (unsigned t = 0; t < nkb_opts_max_threads(&w->o); t++) {
        for (uint64_t i = 0; i < total; i++)
            w->seqs[t][i] = (uint32_t)(i - i % k + (i % k + t) % k);
    }
    return 0;
}

static int setup(nkb_rworld_t *w)
{
    struct stampede *s = (struct stampede *)w;
    const int l2 = w->have_redis && w->o.tier_l2;

    s->keys_per_round = w->o.keys;
    if (build_rounds(w, s->keys_per_round) != 0)
        return -1;
    if (nkb_db_open(&w->db, &w->o, &w->keys) != 0)
        return -1;
    s->lib = (nkb_lib_setup_t){.redis = l2 ? &w->redis : NULL, .prefix = w->prefix,
                               .props = lib_props,
                               .n_props = sizeof lib_props / sizeof lib_props[0],
                               .loader = nkb_db_loader, .udata = &w->db, .keys = &w->keys};
    s->aside = (nkb_aside_t){.redis = w->have_redis ? &w->redis : NULL, .keys = &w->keys,
                             .prefix = w->prefix, .prefix_len = strlen(w->prefix),
                             .db = &w->db, .ttl_ms = TTL_MS};
    return 0;
}

/* Every row from nothing: no key under the prefix, an empty map, a fresh cache. */
static int cell(nkb_rworld_t *w, int impl, unsigned n, nkb_rrow_t *row)
{
    struct stampede *s = (struct stampede *)w;
    nkb_rrun_t run = {.o = &w->o, .threads = n, .seqs = w->seqs, .seq_len = NKB_RSEQ_LEN,
                      .db = &w->db, .round_len = s->keys_per_round};
    int rc = -1;

    if (w->have_redis && nkb_redis_unlink_prefix(w->admin, w->prefix) != 0)
        return -1;
    if (impl == IMPL_LIB)
        rc = nkb_rmeasure_lib(&run, &s->lib, row);
    else if (w->have_redis || (s->aside.map = nkb_lockmap_new(w->keys.n)) != NULL)
        rc = nkb_rmeasure_aside(&run, &s->aside, row);
    nkb_lockmap_free(s->aside.map);
    s->aside.map = NULL;
    if (impl == IMPL_LIB)
        row->name = s->lib.redis ? impl_names[IMPL_LIB] : "nakkucache L1+loader";
    else if (!w->have_redis)
        row->name = "cache-aside on a mutex map";
    return rc;
}

/* ---------------------------------------------------------------- report */

/* Database queries per key per round: every thread reads every key once a round. */
static double per_key(const nkb_rrow_t *r)
{
    return r->ops ? (double)r->db_calls * r->threads / (double)r->ops : 0;
}

static void print_table(nkb_rworld_t *w)
{
    const struct stampede *s = (const struct stampede *)w;

    printf("stampede: every thread reads the same cold key(s) at once, behind a slow database;\n"
           "%u rounds of %llu fresh key(s), the threads released together at each round;\n"
           "library (single-flight, Redis fill lease) vs %s\n",
           w->o.rounds, (unsigned long long)s->keys_per_round,
           w->have_redis ? "plain cache-aside on Redis (GET; on a nil query, then SET)"
                         : "cache-aside on an in-process mutex map (no Redis)");
    if (w->db.sqlite != NULL)
        printf("database: SQLite %s\n", w->o.sqlite_path);
    else
        printf("database: each query sleeps %llu us (nanosleep)\n",
               (unsigned long long)w->o.loader_us);
    nkb_rprint_head(w);
    printf("DB/key: database queries per key per round (1 is ideal; threads is the worst);\n"
           "ratios: library / baseline at the same thread count (lower is better)\n\n");
    printf("%7s  %-30s %8s %8s %9s %9s %9s %8s %8s %8s\n", "threads", "implementation",
           "DB calls", "DB/key", "p50 us", "p99 us", "max us", "waited", "DB/key", "p99");
    for (size_t i = 0; i < w->o.n_points * N_IMPLS; i++) {
        const nkb_rrow_t *r = &w->rows[i], *base = nkb_rbase(&mode, w, i);

        printf("%7u  %-30s %8llu %8.2f %9.1f %9.1f %9.1f %8llu", r->threads, r->name,
               (unsigned long long)r->db_calls, per_key(r), r->p50_ns / 1e3, r->p99_ns / 1e3,
               r->max_ns / 1e3, (unsigned long long)nkb_rcounter(r, "load_coalesced"));
        nkb_rprint_ratio(nkb_ratio(per_key(r), per_key(base)));
        nkb_rprint_ratio(nkb_ratio((double)r->p99_ns, (double)base->p99_ns));
        printf("\n");
    }
    printf("waited: library reads that waited for another thread's load of the same key\n");
}

static json_t *workload_json(nkb_rworld_t *w)
{
    const struct stampede *s = (const struct stampede *)w;

    return json_pack("{s:I, s:i, s:I, s:s}", "keys_per_round",
                     (json_int_t)s->keys_per_round, "rounds", (int)w->o.rounds, "loader_us",
                     (json_int_t)w->o.loader_us, "loader", w->db.sqlite ? "sqlite" : "nanosleep");
}

static void row_json(const nkb_rworld_t *w, const nkb_rrow_t *row, const nkb_rrow_t *base,
                     json_t *out)
{
    (void)w;
    json_object_set_new(out, "db_calls_per_key", json_real(per_key(row)));
    json_object_set_new(out, "db_per_key_vs_baseline", nkb_rjson_ratio(nkb_ratio(
                             per_key(row), per_key(base))));
    json_object_set_new(out, "p99_vs_baseline", nkb_rjson_ratio(nkb_ratio(
                             (double)row->p99_ns, (double)base->p99_ns)));
}

static const nkb_rmode_t mode = {
    .name = "stampede", .size = sizeof(struct stampede), .keys = DEFAULT_KEYS,
    .duration_ms = 0, .dist = NKB_DIST_UNIFORM, .loader_us = DEFAULT_LOADER_US,
    .threads = {8, 32}, .redis_optional = 1, .median_by_p99 = 1, .n_impls = N_IMPLS, .base_impl = IMPL_ASIDE,
    .impl_names = impl_names, .impl_keys = impl_keys, .setup = setup,
    .cell = cell, .print_table = print_table,
    .workload_json = workload_json, .row_json = row_json};

int nkb_stampede_main(int argc, char **argv)
{
    return nkb_rmode_main(&mode, argc, argv);
}
