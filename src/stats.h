/*
 * Counters: one X-macro list, kept per thread slot in padded blocks so that hot
 * counters never share a written cache line between threads; summed on read.
 * Latency histograms the same way. Rendering: JSON and the stats struct in
 * stats.c, Prometheus text in metrics.c.
 */
#ifndef NKC_STATS_H
#define NKC_STATS_H

#include "ebr.h"
#include "nakkucache.h"
#include "sync.h"

#include <stdint.h>

/* X(name, "json.path", "meaning") */
#define NKC_COUNTERS(X)                                                               \
    X(L1_HITS, "l1.hits", "lookups served by L1 (negative entries included)")          \
    X(L1_MISSES, "l1.misses", "lookups L1 could not serve")                           \
    X(L1_FILLS, "l1.fills", "load results stored in L1 (from Redis or the loader)")     \
    X(L1_REFUSED, "l1.refused", "values too large to keep in L1 (served, not kept)")   \
    X(NEGATIVE_HITS, "l1.negative_hits", "lookups answered by a cached not-found")    \
    X(COALESCED, "load.coalesced", "misses that waited for another caller's load")   \
    X(FILLS_DROPPED, "load.fills_dropped", "load results not kept: a set, delete or " \
      "invalidation overtook them")                                                   \
    X(LOADER_CALLS, "loader.calls", "loader invocations")                              \
    X(LOADER_OK, "loader.ok", "loader calls that returned a value")                   \
    X(LOADER_NOTFOUND, "loader.not_found", "loader calls that found no record")       \
    X(LOADER_FAILURES, "loader.failures", "loader calls that failed")                 \
    X(LOADER_NS, "loader.latency_ns_sum", "total time spent in the loader (ns)")      \
    X(SETS, "ops.sets", "cache_set calls that succeeded")                             \
    X(DELS, "ops.dels", "cache_del calls that succeeded")                             \
    X(WRITE_FAILURES, "ops.write_failures", "cache_set/cache_del calls Redis did not " \
      "take")                                                                         \
    X(L2_HITS, "l2.hits", "L1 misses served by Redis (negative entries included)")     \
    X(L2_MISSES, "l2.misses", "L1 misses Redis did not have")                         \
    X(L2_FAILURES, "l2.failures", "lookups that fell through to the loader because "  \
      "Redis failed, timed out or the breaker was open")                            \
    X(L2_BAD_VALUES, "l2.bad_values", "keys under our prefix holding foreign data or " \
      "the wrong type (treated as misses)")                                           \
    X(L2_FILLS, "l2.fills", "loader results written to Redis under a lease")          \
    X(L2_FILLS_LOST, "l2.fills_lost", "fills refused because a set or delete voided " \
      "the lease")                                                                    \
    X(LEASE_WAITS, "l2.lease_waits", "lookups that waited for another process's load") \
    X(LEASE_WAIT_TIMEOUTS, "l2.lease_wait_timeouts", "lease waits that gave up and "  \
      "loaded without filling")                                                       \
    X(INVALIDATIONS, "tracking.invalidations", "keys invalidated by other writers")    \
    X(FLUSH_SUBSCRIBER, "tracking.flushes_subscriber_lost", "L1 copies from Redis "    \
      "dropped because the subscriber was lost")                                      \
    X(FLUSH_SERVER, "tracking.flushes_server", "L1 copies from Redis dropped by "      \
      "FLUSHALL/FLUSHDB")                                                             \
    X(RETRY_QUEUED, "retry.queued", "failed deletes queued for replay")               \
    X(RETRY_REPLAYED, "retry.replayed", "queued deletes replayed")                    \
    X(RETRY_DROPPED, "retry.dropped", "failed deletes not queued: queue full or off")  \
    X(LOADER_TIMEOUTS, "loader.timeouts", "callers that stopped waiting at loader.timeout_ms") \
    X(LOADER_BUSY, "loader.busy", "loads refused by loader.max_concurrency (CACHE_EBUSY)") \
    X(LOADER_BATCH_CALLS, "loader.batch_calls", "batch loader invocations")           \
    X(STALE_SWR, "stale.while_revalidate", "answers served past their TTL while a "    \
      "refresh ran")                                                                  \
    X(STALE_ERROR, "stale.if_error", "answers served past their TTL because Redis and " \
      "the loader failed")                                                            \
    X(REFRESH_SCHEDULED, "refresh.scheduled", "background refreshes queued")          \
    X(REFRESH_DONE, "refresh.done", "background refreshes that stored a new value")   \
    X(REFRESH_FAILED, "refresh.failed", "background refreshes whose load failed")     \
    X(REFRESH_SKIPPED, "refresh.skipped", "refreshes not queued (queue full) or not "  \
      "run (a load of the key was already in flight)")

enum nkc_counter {
#define NKC_COUNTER_ENUM(name, path, doc) NKC_C_##name,
    NKC_COUNTERS(NKC_COUNTER_ENUM)
#undef NKC_COUNTER_ENUM
    NKC_C_COUNT
};

#define NKC_STAT_SLOTS 64 /* threads beyond this share blocks (still exact: atomics) */

/* Latency histograms: fixed 1-2-5 log-scale upper bounds from 1 us to 10 s
 * (nkc_hist_bounds_ns), plus one overflow bucket. Kept per thread slot like the
 * counters (3 cache lines a slot, 12 KiB a histogram) and summed on read. */
#define NKC_HIST_BOUNDS 22
#define NKC_HIST_BUCKETS (NKC_HIST_BOUNDS + 1)
extern const uint64_t nkc_hist_bounds_ns[NKC_HIST_BOUNDS];

struct nkc_hist {
    struct {
        _Atomic uint64_t n[NKC_HIST_BUCKETS]; /* per bucket, not cumulative */
        _Atomic uint64_t sum_ns;
    } NKC_ALIGNED block[NKC_STAT_SLOTS];
};

/* A momentary sum: count is the sum of n[] (so the overflow bucket closes it). */
struct nkc_hist_snapshot {
    uint64_t n[NKC_HIST_BUCKETS];
    uint64_t count, sum_ns;
};

/* Records one observation of ns nanoseconds (negative counts as 0). Lock-free. */
void nkc_hist_record(struct nkc_hist *h, int64_t ns);
void nkc_hist_read(const struct nkc_hist *h, struct nkc_hist_snapshot *out);
/* A new zeroed, cache-line aligned histogram (free with nkc_hist_free), or NULL. */
struct nkc_hist *nkc_hist_new(void);
void nkc_hist_free(struct nkc_hist *h);

struct nkc_stats {
    struct {
        _Atomic uint64_t v[NKC_C_COUNT];
    } NKC_ALIGNED block[NKC_STAT_SLOTS];
    struct nkc_hist loader; /* loader call durations (load.c) */
};

static inline void nkc_stat_add(struct nkc_stats *s, enum nkc_counter k, uint64_t n)
{
    /* relaxed: counters order nothing; readers sum a momentary snapshot */
    atomic_fetch_add_explicit(&s->block[nkc_thread_slot() & (NKC_STAT_SLOTS - 1)].v[k], n,
                              memory_order_relaxed);
}

uint64_t nkc_stat_sum(const struct nkc_stats *s, enum nkc_counter k);

/* One loader call took ns: its total time and its histogram. */
static inline void nkc_stat_loader_ns(struct nkc_stats *s, int64_t ns)
{
    nkc_stat_add(s, NKC_C_LOADER_NS, ns > 0 ? (uint64_t)ns : 0);
    nkc_hist_record(&s->loader, ns);
}

struct json_t;
/* root rendered as compact JSON: a new string (free()), or NULL. */
char *nkc_json_text(const struct json_t *root);

/* Everything the renderers show, read once: the public struct in full, and the two
 * latency histograms (l2_rtt all zero without L2). For stats.c and metrics.c. */
struct nkc_stats_view {
    cache_stats_t s; /* every field, struct_size = sizeof(cache_stats_t) */
    struct nkc_hist_snapshot l2_rtt, loader;
};
void nkc_stats_read(cache_t *c, struct nkc_stats_view *v);
/* Brackets a reader of c's modules (stats, metrics, health) like any other call:
 * -1 once cache_close has begun (then nothing of c may be read); else 0, and
 * cache_close waits for the matching nkc_observe_end. */
int nkc_observe_begin(cache_t *c);
void nkc_observe_end(cache_t *c);
/* Names of the enum cache_breaker values ("closed", ...; NULL for NONE). */
extern const char *const nkc_breaker_names[4];

#endif /* NKC_STATS_H */
