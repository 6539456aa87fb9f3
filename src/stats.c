/*
 * Stats: summing the per-thread counter and histogram blocks into one view, and
 * rendering it as JSON and as the public cache_stats_t. Reads are momentary
 * snapshots (each counter exact, the set not atomic as a whole).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "stats.h"

#include "internal.h"

#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const paths[] = {
#define NKC_COUNTER_PATH(name, path, doc) path,
    NKC_COUNTERS(NKC_COUNTER_PATH)
#undef NKC_COUNTER_PATH
};

uint64_t nkc_stat_sum(const struct nkc_stats *s, enum nkc_counter k)
{
    uint64_t sum = 0;
    for (int i = 0; i < NKC_STAT_SLOTS; i++)
        sum += atomic_load_explicit(&s->block[i].v[k], memory_order_relaxed);
    return sum;
}

/* ---- latency histograms ---- */

const uint64_t nkc_hist_bounds_ns[NKC_HIST_BOUNDS] = {
    1000,       2000,       5000,       10000,       20000,       50000,
    100000,     200000,     500000,     1000000,     2000000,     5000000,
    10000000,   20000000,   50000000,   100000000,   200000000,   500000000,
    1000000000, 2000000000, 5000000000, 10000000000,
};

/* The first bucket whose bound is >= ns (Prometheus `le`); NKC_HIST_BOUNDS past
 * the last. A binary search: 5 comparisons. */
static unsigned bucket_of(uint64_t ns)
{
    unsigned lo = 0, hi = NKC_HIST_BOUNDS;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (nkc_hist_bounds_ns[mid] < ns)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void nkc_hist_record(struct nkc_hist *h, int64_t ns)
{
    uint64_t v = ns > 0 ? (uint64_t)ns : 0;
    unsigned slot = nkc_thread_slot() & (NKC_STAT_SLOTS - 1);
    /* relaxed: like the counters, these order nothing */
    atomic_fetch_add_explicit(&h->block[slot].n[bucket_of(v)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->block[slot].sum_ns, v, memory_order_relaxed);
}

void nkc_hist_read(const struct nkc_hist *h, struct nkc_hist_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < NKC_STAT_SLOTS; i++) {
        for (int b = 0; b < NKC_HIST_BUCKETS; b++)
            out->n[b] += atomic_load_explicit(&h->block[i].n[b], memory_order_relaxed);
        out->sum_ns += atomic_load_explicit(&h->block[i].sum_ns, memory_order_relaxed);
    }
    for (int b = 0; b < NKC_HIST_BUCKETS; b++)
        out->count += out->n[b];
}

struct nkc_hist *nkc_hist_new(void)
{
    void *h = NULL;
    if (posix_memalign(&h, NKC_CACHELINE, sizeof(struct nkc_hist)) != 0)
        return NULL;
    memset(h, 0, sizeof(struct nkc_hist));
    return h;
}

void nkc_hist_free(struct nkc_hist *h)
{
    free(h);
}

/* ---- bracketing readers (mirrors cache.c's call_begin + slow_begin) ---- */

int nkc_observe_begin(cache_t *c)
{
    if (nkc_call_begin(c) != 0)
        return -1;
    nkc_slow_begin(c);
    return 0;
}

void nkc_observe_end(cache_t *c) { nkc_slow_end(c); }

/* ---- the view: counters, totals of each module, histograms ---- */

/* Where each counter goes in cache_stats_t. Counters not listed (the X-macro may
 * grow) appear in the JSON only until a field is appended for them. */
#define FIELD(k, f) {NKC_C_##k, offsetof(cache_stats_t, f)}
static const struct {
    enum nkc_counter k;
    size_t off;
} counter_fields[] = {
    FIELD(L1_HITS, l1_hits),
    FIELD(L1_MISSES, l1_misses),
    FIELD(NEGATIVE_HITS, l1_negative_hits),
    FIELD(L1_REFUSED, l1_refused),
    FIELD(L1_FILLS, l1_fills),
    FIELD(FILLS_DROPPED, fills_dropped),
    FIELD(COALESCED, coalesced),
    FIELD(L2_HITS, l2_hits),
    FIELD(L2_MISSES, l2_misses),
    FIELD(L2_FAILURES, l2_failures),
    FIELD(L2_BAD_VALUES, l2_bad_values),
    FIELD(L2_FILLS, l2_fills),
    FIELD(L2_FILLS_LOST, l2_fills_lost),
    FIELD(LEASE_WAITS, l2_lease_waits),
    FIELD(LEASE_WAIT_TIMEOUTS, l2_lease_wait_timeouts),
    FIELD(LOADER_CALLS, loader_calls),
    FIELD(LOADER_OK, loader_ok),
    FIELD(LOADER_NOTFOUND, loader_not_found),
    FIELD(LOADER_FAILURES, loader_failures),
    FIELD(LOADER_TIMEOUTS, loader_timeouts),
    FIELD(LOADER_BUSY, loader_busy),
    FIELD(LOADER_BATCH_CALLS, loader_batch_calls),
    FIELD(LOADER_NS, loader_ns),
    FIELD(STALE_SWR, stale_while_revalidate),
    FIELD(STALE_ERROR, stale_if_error),
    FIELD(REFRESH_SCHEDULED, refresh_scheduled),
    FIELD(REFRESH_DONE, refresh_done),
    FIELD(REFRESH_FAILED, refresh_failed),
    FIELD(REFRESH_SKIPPED, refresh_skipped),
    FIELD(SETS, sets),
    FIELD(DELS, dels),
    FIELD(WRITE_FAILURES, write_failures),
    FIELD(INVALIDATIONS, invalidations),
    FIELD(FLUSH_SUBSCRIBER, flushes_subscriber_lost),
    FIELD(FLUSH_SERVER, flushes_server),
    FIELD(RETRY_QUEUED, retry_queued),
    FIELD(RETRY_REPLAYED, retry_replayed),
    FIELD(RETRY_DROPPED, retry_dropped),
};
#undef FIELD

static void set_field(cache_stats_t *s, size_t off, uint64_t v)
{
    memcpy((char *)s + off, &v, sizeof(v));
}

static uint64_t breaker_of(enum nkc_breaker_state b)
{
    return b == NKC_BREAKER_CLOSED ? CACHE_BREAKER_CLOSED
           : b == NKC_BREAKER_OPEN ? CACHE_BREAKER_OPEN
                                   : CACHE_BREAKER_HALF_OPEN;
}

static void read_l2(cache_t *c, struct nkc_stats_view *v)
{
    cache_stats_t *s = &v->s;
    struct nkc_l2_totals t;
    nkc_l2_totals(c->l2, &t);
    nkc_l2_rtt(c->l2, &v->l2_rtt);
    s->l2_configured = 1;
    s->l2_breaker = breaker_of(t.breaker);
    s->l2_commands = t.commands;
    s->l2_errors = t.errors;
    s->l2_timeouts = t.timeouts;
    s->l2_protocol_errors = t.protocol_errors;
    s->l2_reconnects = t.reconnects;
    s->l2_connect_failures = t.connect_failures;
    s->l2_breaker_trips = t.breaker_trips;
    s->l2_skipped = t.skipped_open;
    s->l2_roundtrips = v->l2_rtt.count;
    s->l2_roundtrip_ns = v->l2_rtt.sum_ns;
    s->generations_retired = t.retired;
    s->untracked_connects = t.untracked_connects;
}

void nkc_stats_read(cache_t *c, struct nkc_stats_view *v)
{
    memset(v, 0, sizeof(*v));
    cache_stats_t *s = &v->s;
    s->struct_size = sizeof(*s);
    for (size_t i = 0; i < sizeof(counter_fields) / sizeof(counter_fields[0]); i++)
        set_field(s, counter_fields[i].off, nkc_stat_sum(c->stats, counter_fields[i].k));
    struct nkc_l1_totals t;
    nkc_l1_totals(c->l1, &t);
    s->l1_entries = t.entries;
    s->l1_bytes = t.bytes;
    s->l1_max_bytes = t.max_bytes;
    s->l1_evictions = t.evictions;
    s->l1_expirations = t.expirations;
    nkc_hist_read(&c->stats->loader, &v->loader);
    if (c->l2)
        read_l2(c, v);
    if (c->track) {
        struct nkc_track_totals tt;
        nkc_track_totals(c->track, &tt);
        s->tracking_messages = tt.messages;
        s->tracking_subscriber_losses = tt.subscriber_losses;
        s->tracking_subscribed = tt.subscribed != 0;
    }
}

cache_err_t cache_stats_get(cache_t *c, cache_stats_t *out)
{
    /* every field past struct_size is a uint64_t: copy the whole ones covered */
    size_t first = offsetof(cache_stats_t, l1_hits);
    if (!c || !out || out->struct_size < first + sizeof(uint64_t))
        return CACHE_EINVAL;
    struct nkc_stats_view v; /* about 1 KiB */
    if (nkc_observe_begin(c) != 0)
        return CACHE_ECLOSED;
    nkc_stats_read(c, &v);
    nkc_observe_end(c);
    size_t n = out->struct_size < sizeof(v.s) ? out->struct_size : sizeof(v.s);
    n = first + (n - first) / sizeof(uint64_t) * sizeof(uint64_t);
    memcpy((char *)out + first, (const char *)&v.s + first, n - first);
    return CACHE_OK;
}

/* Sets root["a"]["b"] = v for path "a.b" (one level of nesting). */
static int put_path(json_t *root, const char *path, json_t *v)
{
    const char *dot = strchr(path, '.');
    if (!v)
        return -1;
    if (!dot)
        return json_object_set_new(root, path, v);
    char group[64];
    size_t n = (size_t)(dot - path);
    if (n >= sizeof(group)) {
        json_decref(v);
        return -1;
    }
    memcpy(group, path, n);
    group[n] = '\0';
    json_t *obj = json_object_get(root, group);
    if (!obj) {
        obj = json_object();
        if (!obj || json_object_set_new(root, group, obj) != 0) {
            json_decref(v);
            return -1;
        }
    }
    return json_object_set_new(obj, dot + 1, v);
}

static int put_u64(json_t *root, const char *path, uint64_t v)
{
    return put_path(root, path, json_integer((json_int_t)v));
}

/* 15 significant digits: 1e-06 and 0.2 print as such, not as 9.9999999999999995e-07 */
#define NKC_JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))

/* root as compact JSON in a buffer from our own malloc: the host may have given
 * jansson other allocation functions, and cache_free must match. */
char *nkc_json_text(const json_t *root)
{
    size_t n = json_dumpb(root, NULL, 0, NKC_JSON_FLAGS);
    char *text = n ? malloc(n + 1) : NULL;
    if (!text)
        return NULL;
    if (json_dumpb(root, text, n, NKC_JSON_FLAGS) != n) {
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

/* {"count": N, "sum_seconds": S, "le_seconds": [bounds], "cumulative": [counts]}:
 * the Prometheus buckets (the +Inf one is count). New reference, or NULL. */
static json_t *hist_json(const struct nkc_hist_snapshot *h)
{
    json_t *o = json_object(), *le = json_array(), *cum = json_array();
    int bad = !o || !le || !cum;
    uint64_t run = 0;
    for (int b = 0; b < NKC_HIST_BOUNDS && !bad; b++) {
        run += h->n[b];
        bad |= json_array_append_new(le, json_real((double)nkc_hist_bounds_ns[b] / 1e9)) |
               json_array_append_new(cum, json_integer((json_int_t)run));
    }
    if (!bad) {
        bad |= json_object_set_new(o, "count", json_integer((json_int_t)h->count));
        bad |= json_object_set_new(o, "sum_seconds", json_real((double)h->sum_ns / 1e9));
    }
    bad |= json_object_set(o, "le_seconds", le) | json_object_set(o, "cumulative", cum);
    json_decref(le);
    json_decref(cum);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

const char *const nkc_breaker_names[4] = {NULL, "closed", "open", "half_open"};

static int put_totals(json_t *root, const cache_t *c, const struct nkc_stats_view *v)
{
    const cache_stats_t *s = &v->s;
    int bad = put_u64(root, "l1.entries", s->l1_entries) | put_u64(root, "l1.bytes", s->l1_bytes);
    bad |= put_u64(root, "l1.max_bytes", s->l1_max_bytes);
    bad |= put_u64(root, "l1.max_entries", c->cfg.l1_max_entries);
    bad |= put_u64(root, "l1.evictions", s->l1_evictions);
    bad |= put_u64(root, "l1.expirations", s->l1_expirations);
    bad |= put_u64(root, "l1.stripes", nkc_l1_stripes(c->l1));
    bad |= put_path(root, "l2.configured", json_boolean(c->l2 != NULL));
    bad |= put_path(root, "loader.latency_seconds", hist_json(&v->loader));
    if (bad || !c->l2)
        return bad;
    bad |= put_u64(root, "l2.commands", s->l2_commands) | put_u64(root, "l2.errors", s->l2_errors);
    bad |= put_u64(root, "l2.timeouts", s->l2_timeouts);
    bad |= put_u64(root, "l2.protocol_errors", s->l2_protocol_errors);
    bad |= put_u64(root, "l2.reconnects", s->l2_reconnects);
    bad |= put_u64(root, "l2.connect_failures", s->l2_connect_failures);
    bad |= put_u64(root, "l2.breaker_trips", s->l2_breaker_trips);
    bad |= put_u64(root, "l2.skipped_breaker_open", s->l2_skipped);
    bad |= put_path(root, "l2.breaker", json_string(nkc_breaker_names[s->l2_breaker]));
    bad |= put_path(root, "l2.roundtrip_seconds", hist_json(&v->l2_rtt));
    bad |= put_u64(root, "tracking.untracked_connects", s->untracked_connects);
    bad |= put_u64(root, "tracking.generations_retired", s->generations_retired);
    bad |= put_path(root, "tracking.enabled", json_boolean(c->track != NULL));
    if (bad || !c->track)
        return bad;
    bad |= put_u64(root, "tracking.messages", s->tracking_messages);
    bad |= put_u64(root, "tracking.subscriber_losses", s->tracking_subscriber_losses);
    bad |= put_path(root, "tracking.subscribed", json_boolean(s->tracking_subscribed != 0));
    return bad;
}

char *cache_stats_json(cache_t *c)
{
    if (!c)
        return NULL;
    if (nkc_observe_begin(c) != 0)
        return NULL;
    json_t *root = json_object();
    struct nkc_stats_view v;
    nkc_stats_read(c, &v);
    int bad = !root;
    for (int k = 0; k < NKC_C_COUNT && !bad; k++)
        bad |= put_u64(root, paths[k], nkc_stat_sum(c->stats, (enum nkc_counter)k)) != 0;
    bad = bad || put_totals(root, c, &v) != 0;
    nkc_observe_end(c);
    char *text = bad ? NULL : nkc_json_text(root);
    json_decref(root);
    return text;
}

void cache_free(void *p)
{
    free(p);
}
