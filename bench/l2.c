/*
 * Mode l2: what the library's L2 layer costs per call. Every key is in Redis (in
 * the library's envelope, 'V' + value: docs/FORMAT.md) and L1 is as small as it
 * can be (l1.max_bytes 64KiB, l1.max_entries 1), so each cache_get is an L1 miss
 * served by Redis: the lookup script, the reply parsed under the library's limits,
 * the value copied into a (soon evicted) L1 entry. The baseline is a plain hiredis
 * GET loop on the same keys over as many connections (one per thread; the library
 * gets l2.pool_size = threads). Keys are uniform by default: under zipf the hottest
 * key would keep being served by the one L1 entry. With --read-ratio < 1 the
 * other operations write: cache_set against a raw SET of the same bytes.
 */
#include "redis_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_KEYS 100000
#define DEFAULT_DURATION_MS 2000 /* keep in step with the --duration-ms help in main.c */
#define PREFILL_TTL_MS 3600000   /* outlives any run; a killed run's keys still expire */

enum { IMPL_LIB, IMPL_GET, N_IMPLS };
static const char *const impl_names[N_IMPLS] = {"nakkucache cache_get", "hiredis GET"};
static const char *const impl_keys[N_IMPLS] = {"nakkucache", "hiredis_get"};

/* L1 cannot be switched off: these make it hold (about) one entry. */
static const char *const lib_props[][2] = {{"l1.max_bytes", "64KiB"}, {"l1.max_entries", "1"}};

struct l2 {
    nkb_rworld_t w; /* first: the callbacks get &w back */
    nkb_lib_setup_t lib;
    nkb_aside_t get;
};

static const nkb_rmode_t mode;

static int setup(nkb_rworld_t *w)
{
    struct l2 *t = (struct l2 *)w;

    /* writes (--read-ratio) store the bytes the prefill did, so that either side
     * reads what the other wrote: the library's envelope is 'V' + value */
    t->lib = (nkb_lib_setup_t){.redis = &w->redis, .prefix = w->prefix, .props = lib_props,
                               .n_props = sizeof lib_props / sizeof lib_props[0],
                               .keys = &w->keys, .value_size = w->o.value_size,
                               .write_set = 1};
    t->get = (nkb_aside_t){.redis = &w->redis, .keys = &w->keys, .prefix = w->prefix,
                           .prefix_len = strlen(w->prefix), .ttl_ms = PREFILL_TTL_MS,
                           .write_set = 1, .envelope = "V", .value_size = w->o.value_size};
    fprintf(stderr, "nakkucache-bench l2: writing %u keys to Redis\n", w->o.keys);
    return nkb_redis_prefill(w->admin, w->prefix, &w->keys, w->o.value_size, "V",
                             PREFILL_TTL_MS);
}

static int cell(nkb_rworld_t *w, int impl, unsigned n, nkb_rrow_t *row)
{
    struct l2 *t = (struct l2 *)w;
    nkb_rrun_t run = {.o = &w->o, .threads = n, .seqs = w->seqs, .seq_len = NKB_RSEQ_LEN};

    return impl == IMPL_LIB ? nkb_rmeasure_lib(&run, &t->lib, row)
                            : nkb_rmeasure_aside(&run, &t->get, row);
}

/* ---------------------------------------------------------------- report */

static void print_table(nkb_rworld_t *w)
{
    printf("l2: the library with L1 ~off (l1.max_bytes 64KiB, l1.max_entries 1; every key in "
           "Redis)\nvs a plain hiredis GET loop; one connection per thread on both sides "
           "(l2.pool_size = threads)\n");
    if (w->o.read_ratio < 1.0)
        printf("writes: %.0f %% of operations: cache_set (library) vs SET 'V' + value PX %d "
               "(baseline)\n", 100.0 * (1.0 - w->o.read_ratio), PREFILL_TTL_MS);
    nkb_rprint_head(w);
    printf("ratios: library / hiredis GET at the same thread count (latency: > 1 is slower)\n\n");
    nkb_rprint_latency_head();
    printf(" %8s %8s %8s %8s %7s\n", "ops/s", "p50", "p99", "L1 hits", "errors");
    for (size_t i = 0; i < w->o.n_points * N_IMPLS; i++) {
        const nkb_rrow_t *r = &w->rows[i], *base = nkb_rbase(&mode, w, i);

        nkb_rprint_latency(r);
        nkb_rprint_ratio(nkb_ratio(r->ops_per_sec, base->ops_per_sec));
        nkb_rprint_ratio(nkb_ratio((double)r->p50_ns, (double)base->p50_ns));
        nkb_rprint_ratio(nkb_ratio((double)r->p99_ns, (double)base->p99_ns));
        printf(" %8llu %7llu\n", (unsigned long long)r->served[NKB_SRC_L1],
               (unsigned long long)r->served[NKB_SRC_ERROR]);
    }
}

static json_t *workload_json(nkb_rworld_t *w)
{
    (void)w;
    return json_pack("{s:s, s:s}", "l1_max_bytes", lib_props[0][1], "l1_max_entries",
                     lib_props[1][1]);
}

static void row_json(const nkb_rworld_t *w, const nkb_rrow_t *row, const nkb_rrow_t *base,
                     json_t *out)
{
    (void)w;
    json_object_set_new(out, "p50_vs_baseline", nkb_rjson_ratio(nkb_ratio(
                             (double)row->p50_ns, (double)base->p50_ns)));
    json_object_set_new(out, "p99_vs_baseline", nkb_rjson_ratio(nkb_ratio(
                             (double)row->p99_ns, (double)base->p99_ns)));
}

/* Uniform keys by default: under zipf the hottest key would keep the one L1 entry. */
static const nkb_rmode_t mode = {
    .name = "l2", .size = sizeof(struct l2), .keys = DEFAULT_KEYS,
    .duration_ms = DEFAULT_DURATION_MS, .dist = NKB_DIST_UNIFORM, .n_impls = N_IMPLS,
    .base_impl = IMPL_GET, .impl_names = impl_names, .impl_keys = impl_keys, .setup = setup,
    .cell = cell, .print_table = print_table, .workload_json = workload_json,
    .row_json = row_json};

int nkb_l2_main(int argc, char **argv)
{
    return nkb_rmode_main(&mode, argc, argv);
}
