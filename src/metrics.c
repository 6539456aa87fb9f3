/*
 * Prometheus text exposition (format 0.0.4) of the stats view: one table of
 * families, each with its samples' fixed labels and where its value lives in
 * cache_stats_t, plus the two latency histograms. Labels are only the fixed words
 * of the table (never a key); every family gets # HELP and # TYPE before its
 * samples, and every series appears once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- an append-only text buffer; the first allocation failure sticks ---- */

struct text {
    char *p;
    size_t len, cap;
    int oom;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
    for (int pass = 0; pass < 2 && !t->oom; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if (t->p && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap : 8192; /* the whole text is ~15 KiB */
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* ---- the families ---- */

#define MAX_SAMPLES 4
/* One sample: its labels (NULL: none; fixed text, already escaped) and the field
 * of cache_stats_t it shows; with eq != 0 the value is 1 when the field equals eq,
 * else 0 (an enum as one series per state). */
struct sample {
    const char *labels;
    size_t off;
    uint64_t eq;
};
struct family {
    const char *name; /* counters end in _total */
    const char *type; /* "counter" or "gauge" */
    const char *help; /* no backslash or newline: emitted as is */
    struct sample s[MAX_SAMPLES];
};

#define F(field) offsetof(cache_stats_t, field)
#define ONE(field) {{NULL, F(field), 0}}
static const struct family families[] = {
    {"nakkucache_hits_total", "counter",
     "Lookups served by a tier (L1 counts cached not-founds as hits).",
     {{"tier=\"l1\"", F(l1_hits), 0}, {"tier=\"l2\"", F(l2_hits), 0}}},
    {"nakkucache_misses_total", "counter", "Lookups a tier could not serve.",
     {{"tier=\"l1\"", F(l1_misses), 0}, {"tier=\"l2\"", F(l2_misses), 0}}},
    {"nakkucache_l1_negative_hits_total", "counter", "L1 hits on a cached not-found.",
     ONE(l1_negative_hits)},
    {"nakkucache_l1_entries", "gauge", "Entries held in L1, negative ones included.",
     ONE(l1_entries)},
    {"nakkucache_l1_bytes", "gauge",
     "Bytes charged against the L1 budget (allocations of entries and their table share).",
     ONE(l1_bytes)},
    {"nakkucache_l1_max_bytes", "gauge", "The L1 budget (l1.max_bytes).", ONE(l1_max_bytes)},
    {"nakkucache_l1_evictions_total", "counter", "L1 entries evicted to stay within budget.",
     ONE(l1_evictions)},
    {"nakkucache_l1_expirations_total", "counter", "L1 entries removed because their TTL passed.",
     ONE(l1_expirations)},
    {"nakkucache_l1_fills_total", "counter",
     "Load results stored in L1 (read from Redis or returned by the loader).", ONE(l1_fills)},
    {"nakkucache_l1_fills_dropped_total", "counter",
     "Loaded values served but not kept in L1: a write overtook the load, or too large.",
     {{"reason=\"overtaken\"", F(fills_dropped), 0}, {"reason=\"too_large\"", F(l1_refused), 0}}},
    {"nakkucache_coalesced_total", "counter",
     "Misses that waited for another caller's load of the same key (single-flight).",
     ONE(coalesced)},
    {"nakkucache_l1_flushes_total", "counter",
     "L1 copies from Redis dropped at once because tracking broke or Redis was flushed.",
     {{"cause=\"subscriber_lost\"", F(flushes_subscriber_lost), 0},
      {"cause=\"server_flush\"", F(flushes_server), 0}}},
    {"nakkucache_invalidations_total", "counter", "Keys invalidated by writers elsewhere.",
     ONE(invalidations)},
    {"nakkucache_l2_configured", "gauge", "1 when Redis (L2) is configured.", ONE(l2_configured)},
    {"nakkucache_l2_breaker_state", "gauge",
     "1 for the state the Redis circuit breaker is in (all 0 without L2).",
     {{"state=\"closed\"", F(l2_breaker), CACHE_BREAKER_CLOSED},
      {"state=\"open\"", F(l2_breaker), CACHE_BREAKER_OPEN},
      {"state=\"half_open\"", F(l2_breaker), CACHE_BREAKER_HALF_OPEN}}},
    {"nakkucache_l2_breaker_trips_total", "counter", "Times the Redis circuit breaker opened.",
     ONE(l2_breaker_trips)},
    {"nakkucache_l2_breaker_skips_total", "counter",
     "Redis pipelines not sent because the breaker was open.", ONE(l2_skipped)},
    {"nakkucache_l2_lookup_failures_total", "counter",
     "L1 misses that went to the loader because Redis failed, timed out or was skipped.",
     ONE(l2_failures)},
    {"nakkucache_l2_bad_values_total", "counter",
     "Keys under the prefix holding foreign data or the wrong type (read as misses).",
     ONE(l2_bad_values)},
    {"nakkucache_l2_fills_total", "counter",
     "Loader results offered to Redis under a fill lease: stored, or lost to a write.",
     {{"result=\"stored\"", F(l2_fills), 0}, {"result=\"lost\"", F(l2_fills_lost), 0}}},
    {"nakkucache_l2_lease_waits_total", "counter",
     "Lookups that waited for another process's load of the key.", ONE(l2_lease_waits)},
    {"nakkucache_l2_lease_wait_timeouts_total", "counter",
     "Lease waits that gave up and loaded without filling.", ONE(l2_lease_wait_timeouts)},
    {"nakkucache_l2_commands_total", "counter", "Pipelines sent to Redis (one round trip each).",
     ONE(l2_commands)},
    {"nakkucache_l2_errors_total", "counter",
     "Redis pipelines that failed, every kind (timeouts and protocol errors included).",
     ONE(l2_errors)},
    {"nakkucache_l2_timeouts_total", "counter", "Redis pipelines that failed on a deadline.",
     ONE(l2_timeouts)},
    {"nakkucache_l2_protocol_errors_total", "counter",
     "Redis pipelines that failed on a malformed or oversized reply.", ONE(l2_protocol_errors)},
    {"nakkucache_l2_reconnects_total", "counter", "Redis connections (re-)established.",
     ONE(l2_reconnects)},
    {"nakkucache_l2_connect_failures_total", "counter", "Redis connection attempts that failed.",
     ONE(l2_connect_failures)},
    {"nakkucache_loader_calls_total", "counter", "Loader invocations.", ONE(loader_calls)},
    {"nakkucache_loader_results_total", "counter", "Loader calls that returned, by result.",
     {{"result=\"ok\"", F(loader_ok), 0},
      {"result=\"not_found\"", F(loader_not_found), 0},
      {"result=\"failure\"", F(loader_failures), 0}}},
    {"nakkucache_loader_timeouts_total", "counter",
     "Callers that stopped waiting for a load at loader.timeout_ms.", ONE(loader_timeouts)},
    {"nakkucache_loader_busy_total", "counter",
     "Loads refused by loader.max_concurrency (CACHE_EBUSY).", ONE(loader_busy)},
    {"nakkucache_loader_batch_calls_total", "counter", "Batch loader invocations.",
     ONE(loader_batch_calls)},
    {"nakkucache_stale_answers_total", "counter", "Answers served past their TTL, by reason.",
     {{"reason=\"while_revalidate\"", F(stale_while_revalidate), 0},
      {"reason=\"if_error\"", F(stale_if_error), 0}}},
    {"nakkucache_refreshes_scheduled_total", "counter", "Background refreshes queued.",
     ONE(refresh_scheduled)},
    {"nakkucache_refreshes_total", "counter", "Background refreshes, by result.",
     {{"result=\"stored\"", F(refresh_done), 0},
      {"result=\"failed\"", F(refresh_failed), 0},
      {"result=\"skipped\"", F(refresh_skipped), 0}}},
    {"nakkucache_writes_total", "counter", "cache_set and cache_del calls that succeeded.",
     {{"op=\"set\"", F(sets), 0}, {"op=\"del\"", F(dels), 0}}},
    {"nakkucache_write_failures_total", "counter", "cache_set/cache_del calls Redis did not take.",
     ONE(write_failures)},
    {"nakkucache_failed_deletes_total", "counter",
     "Deletes Redis did not take: queued for replay, or dropped (queue full or off).",
     {{"result=\"queued\"", F(retry_queued), 0}, {"result=\"dropped\"", F(retry_dropped), 0}}},
    {"nakkucache_deletes_replayed_total", "counter", "Queued deletes replayed once Redis answered.",
     ONE(retry_replayed)},
    {"nakkucache_tracking_subscribed", "gauge",
     "1 while the invalidation subscriber is established.", ONE(tracking_subscribed)},
    {"nakkucache_tracking_messages_total", "counter", "Invalidation messages received.",
     ONE(tracking_messages)},
    {"nakkucache_tracking_subscriber_losses_total", "counter",
     "Times the invalidation subscriber connection was lost.", ONE(tracking_subscriber_losses)},
    {"nakkucache_tracking_generations_retired_total", "counter",
     "Redis connection lives retired (their L1 copies are no longer served).",
     ONE(generations_retired)},
    {"nakkucache_tracking_untracked_connects_total", "counter",
     "Data connections that run without tracking (their L1 copies live shorter).",
     ONE(untracked_connects)},
};
#undef ONE
#undef F

static uint64_t field_of(const cache_stats_t *s, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)s + off, sizeof(v));
    return v;
}

static void put_family(struct text *t, const struct family *f, const cache_stats_t *s)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
    for (int i = 0; i < MAX_SAMPLES && (i == 0 || f->s[i].labels); i++) {
        uint64_t v = field_of(s, f->s[i].off);
        if (f->s[i].eq)
            v = v == f->s[i].eq;
        if (f->s[i].labels)
            put(t, "%s{%s} %" PRIu64 "\n", f->name, f->s[i].labels, v);
        else
            put(t, "%s %" PRIu64 "\n", f->name, v);
    }
}

/* A histogram in seconds: cumulative _bucket{le} for each bound and +Inf, _sum
 * (exact: printed from nanoseconds) and _count (= the +Inf bucket). */
static void put_histogram(struct text *t, const char *name, const char *help,
                          const struct nkc_hist_snapshot *h)
{
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t run = 0;
    for (int b = 0; b < NKC_HIST_BOUNDS; b++) {
        run += h->n[b];
        put(t, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
            (double)nkc_hist_bounds_ns[b] / 1e9, run);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
    put(t, "%s_sum %" PRIu64 ".%09" PRIu64 "\n", name, h->sum_ns / 1000000000u,
        h->sum_ns % 1000000000u);
    put(t, "%s_count %" PRIu64 "\n", name, h->count);
}

cache_err_t cache_metrics_prometheus(cache_t *c, char **text)
{
    if (text)
        *text = NULL;
    if (!c || !text)
        return CACHE_EINVAL;
    struct nkc_stats_view v;
    if (nkc_observe_begin(c) != 0)
        return CACHE_ECLOSED;
    nkc_stats_read(c, &v);
    nkc_observe_end(c);
    struct text t = {0};
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        put_family(&t, &families[i], &v.s);
    put_histogram(&t, "nakkucache_l2_roundtrip_seconds",
                  "Round trips of Redis pipelines that completed (failures are not observed).",
                  &v.l2_rtt);
    put_histogram(&t, "nakkucache_loader_duration_seconds",
                  "Duration of loader calls, whatever their result.", &v.loader);
    if (t.oom || !t.p) {
        free(t.p);
        return CACHE_ENOMEM;
    }
    *text = t.p;
    return CACHE_OK;
}
