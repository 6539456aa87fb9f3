/*
 * Mode hotkey (issue 5's scenario): every thread reads one key at a steady pace
 * (--rate per thread), the key lives --ttl-ms (200 ms) in L1 and in Redis, and the
 * database takes --loader-us (20 ms) to produce it. Without help, every expiry
 * stalls every reader for one load; refresh-ahead reloads the key in the
 * background before it expires, stale-while-revalidate serves the expired value
 * while one reload runs. Rows: the library with neither (the baseline), with
 * refresh_ahead 0.2, with stale_while_revalidate_ms = the TTL, and plain cache-aside
 * on Redis for scale (every reader that sees the nil queries the database).
 * Reads are paced and each latency counts from when the read was due, so a stall
 * shows in the percentiles as it would to requests arriving from outside.
 */
#include "redis_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DURATION_MS 2000
#define DEFAULT_LOADER_US 20000
#define WARMUP_EXTRA_MS 50 /* beyond one load: the key is in before the clock starts */

enum { IMPL_OFF, IMPL_AHEAD, IMPL_SWR, IMPL_ASIDE, N_IMPLS };
static const char *const impl_names[N_IMPLS] = {
    "library, no refresh", "library, refresh_ahead 0.2", "library, stale-while-revalidate",
    "cache-aside on Redis"};
static const char *const impl_keys[N_IMPLS] = {"nakkucache_plain", "nakkucache_refresh_ahead",
                                               "nakkucache_swr", "cache_aside"};

#define N_PROPS 6 /* the most any row sets */

struct hotkey {
    nkb_rworld_t w; /* first: the callbacks get &w back */
    char ttl[24];
    const char *props[N_IMPLS][N_PROPS][2];
    nkb_lib_setup_t lib[N_IMPLS];
    nkb_aside_t aside;
};

static const nkb_rmode_t mode;

/* The rows' properties: the TTL in both tiers, no jitter (every expiry on time),
 * and the row's own feature. */
static void set_props(struct hotkey *h)
{
    static const char *const feature[N_IMPLS][2] = {
        {NULL, NULL}, {"refresh_ahead", "0.2"}, {"stale_while_revalidate_ms", NULL}};

    for (int i = IMPL_OFF; i < IMPL_ASIDE; i++) {
        size_t n = 0;

        h->props[i][n][0] = "l1.ttl_ms";
        h->props[i][n++][1] = h->ttl;
        h->props[i][n][0] = "l2.ttl_ms";
        h->props[i][n++][1] = h->ttl;
        h->props[i][n][0] = "ttl_jitter";
        h->props[i][n++][1] = "0";
        h->props[i][n][0] = "l1.max_bytes";
        h->props[i][n++][1] = "16MiB";
        if (feature[i][0] != NULL) {
            h->props[i][n][0] = feature[i][0];
            h->props[i][n++][1] = feature[i][1] ? feature[i][1] : h->ttl;
        }
        h->lib[i] = (nkb_lib_setup_t){.redis = h->w.have_redis && h->w.o.tier_l2 ? &h->w.redis
                                                                                 : NULL,
                                      .prefix = h->w.prefix,
                                      .props = (const char *const (*)[2])h->props[i],
                                      .n_props = n, .loader = nkb_db_loader, .udata = &h->w.db,
                                      .keys = &h->w.keys};
    }
}

static int setup(nkb_rworld_t *w)
{
    struct hotkey *h = (struct hotkey *)w;

    if (nkb_db_open(&w->db, &w->o, &w->keys) != 0)
        return -1;
    snprintf(h->ttl, sizeof h->ttl, "%llu", (unsigned long long)w->o.ttl_ms);
    set_props(h);
    h->aside = (nkb_aside_t){.redis = &w->redis, .keys = &w->keys, .prefix = w->prefix,
                             .prefix_len = strlen(w->prefix), .db = &w->db,
                             .ttl_ms = w->o.ttl_ms};
    return 0;
}

static int cell(nkb_rworld_t *w, int impl, unsigned n, nkb_rrow_t *row)
{
    struct hotkey *h = (struct hotkey *)w;
    nkb_rrun_t run = {.o = &w->o, .threads = n, .seqs = w->seqs, .seq_len = NKB_RSEQ_LEN,
                      .db = &w->db, .interval_ns = 1000000000u / w->o.rate,
                      .warmup_ms = w->o.loader_us / 1000 + WARMUP_EXTRA_MS};

    if (w->have_redis && nkb_redis_unlink_prefix(w->admin, w->prefix) != 0)
        return -1;
    if (impl != IMPL_ASIDE)
        return nkb_rmeasure_lib(&run, &h->lib[impl], row);
    if (!w->have_redis) { /* the mutex map has no TTL: nothing would ever expire */
        row->threads = n;
        row->name = "cache-aside on Redis (no Redis: skipped)";
        return 0;
    }
    return nkb_rmeasure_aside(&run, &h->aside, row);
}

/* ---------------------------------------------------------------- report */

/* Database queries per TTL period of the measured time: 1 means one load per
 * expiry; refresh-ahead may load a little more often (it reloads before expiry). */
static double per_ttl(const nkb_rworld_t *w, const nkb_rrow_t *r)
{
    double periods = r->seconds * 1e3 / (double)w->o.ttl_ms;

    return periods > 0 ? (double)r->db_calls / periods : 0;
}

static void print_table(nkb_rworld_t *w)
{
    const struct hotkey *h = (const struct hotkey *)w;

    printf("hotkey: one key read by every thread at %llu reads/s each; TTL %llu ms in L1 and "
           "Redis, no jitter;\n",
           (unsigned long long)w->o.rate, (unsigned long long)w->o.ttl_ms);
    if (w->db.sqlite != NULL)
        printf("database: SQLite %s\n", w->o.sqlite_path);
    else
        printf("database: a load sleeps %llu us (nanosleep)\n",
               (unsigned long long)w->o.loader_us);
    printf("library: %s; refresh-ahead reloads in the last 20 %% of the TTL, "
           "stale-while-revalidate\nserves up to %llu ms past it while one reload runs\n",
           h->lib[IMPL_OFF].redis ? "L1 + Redis + loader" : "L1 + loader (no Redis)",
           (unsigned long long)w->o.ttl_ms);
    nkb_rprint_head(w);
    printf("latency: from when each read was due (reads are paced), so a stall delays every "
           "read due during it\nDB/TTL: database loads per TTL period; refreshes and stale "
           "answers from the library's counters\nratios: row / library without refresh "
           "(lower is better)\n\n");
    nkb_rprint_latency_head();
    printf(" %8s %7s %8s %7s %8s %8s\n", "DB calls", "DB/TTL", "refresh", "stale", "p99",
           "DB/TTL");
    for (size_t i = 0; i < w->o.n_points * N_IMPLS; i++) {
        const nkb_rrow_t *r = &w->rows[i], *base = nkb_rbase(&mode, w, i);

        nkb_rprint_latency(r);
        printf(" %8llu %7.2f %8llu %7llu", (unsigned long long)r->db_calls, per_ttl(w, r),
               (unsigned long long)nkb_rcounter(r, "refresh_scheduled"),
               (unsigned long long)nkb_rcounter(r, "stale_while_revalidate"));
        nkb_rprint_ratio(nkb_ratio((double)r->p99_ns, (double)base->p99_ns));
        nkb_rprint_ratio(nkb_ratio(per_ttl(w, r), per_ttl(w, base)));
        printf("\n");
    }
}

static json_t *workload_json(nkb_rworld_t *w)
{
    return json_pack("{s:I, s:I, s:I, s:f}", "ttl_ms", (json_int_t)w->o.ttl_ms, "loader_us",
                     (json_int_t)w->o.loader_us, "rate_per_thread", (json_int_t)w->o.rate,
                     "refresh_ahead", 0.2);
}

static void row_json(const nkb_rworld_t *w, const nkb_rrow_t *row, const nkb_rrow_t *base,
                     json_t *out)
{
    json_object_set_new(out, "db_calls_per_ttl", json_real(per_ttl(w, row)));
    json_object_set_new(out, "p99_vs_baseline", nkb_rjson_ratio(nkb_ratio(
                             (double)row->p99_ns, (double)base->p99_ns)));
    json_object_set_new(out, "db_per_ttl_vs_baseline",
                        nkb_rjson_ratio(nkb_ratio(per_ttl(w, row), per_ttl(w, base))));
}

static const nkb_rmode_t mode = {
    .name = "hotkey", .size = sizeof(struct hotkey), .keys = 1,
    .duration_ms = DEFAULT_DURATION_MS, .dist = NKB_DIST_UNIFORM,
    .loader_us = DEFAULT_LOADER_US, .threads = {4}, .redis_optional = 1, .median_by_p99 = 1, .n_impls = N_IMPLS,
    .base_impl = IMPL_OFF, .impl_names = impl_names, .impl_keys = impl_keys,
    .setup = setup, .cell = cell, .print_table = print_table,
    .workload_json = workload_json, .row_json = row_json};

int nkb_hotkey_main(int argc, char **argv)
{
    return nkb_rmode_main(&mode, argc, argv);
}
