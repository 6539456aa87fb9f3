/*
 * libnakkucache: an embeddable multi-level cache.
 *
 *   L1  in-process, lock-striped map with TTLs and a scan-resistant eviction policy
 *   L2  Redis (through hiredis), shared by every process        [when l2.url is set]
 *   L3  the application's loader callback (its database query)
 *
 * cache_get is read-through (L1, then L2, then the loader, filling the levels above);
 * cache_set and cache_del are write-invalidate. This header is the API documentation:
 * each declaration says what it returns, who owns what, and its thread-safety.
 *
 * Ownership words: a "new" pointer belongs to the caller, who releases it with the
 * function named; a "borrowed" pointer stays owned by its parent object.
 */
#ifndef NAKKUCACHE_H
#define NAKKUCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NAKKUCACHE_STATIC)
#define CACHE_EXTERN
#elif defined(_WIN32)
#if defined(NAKKUCACHE_BUILDING)
#define CACHE_EXTERN __declspec(dllexport)
#else
#define CACHE_EXTERN __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define CACHE_EXTERN __attribute__((visibility("default")))
#else
#define CACHE_EXTERN
#endif

#define CACHE_VERSION_MAJOR 0
#define CACHE_VERSION_MINOR 1
#define CACHE_VERSION_PATCH 0

/* --------------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------------*/

/* The cache. Opaque; every function taking one is safe to call from any thread,
 * except cache_close, which must be the last call on it. */
typedef struct cache cache_t;
/* A configuration builder. Opaque; not thread-safe (build it in one thread). */
typedef struct cache_config cache_config_t;
/* An immutable, reference-counted value. Stays valid after its entry is evicted,
 * expired, overwritten or deleted, until the holder calls cache_value_release. */
typedef struct cache_value cache_value_t;
/* Where a loader puts its result; valid only during the loader call. */
typedef struct cache_sink cache_sink_t;

/* Error codes: append only, never renumber. cache_strerror names each. */
#define CACHE_ERRNO_MAP(X)                                                         \
    X(OK, "success")                                                               \
    X(ENOTFOUND, "no value at any level")                                          \
    X(EINVAL, "invalid argument or configuration")                                 \
    X(ETOOBIG, "key or value over the configured limits")                          \
    X(ENOMEM, "out of memory")                                                     \
    X(EL2, "Redis failed and nothing below it could serve the request")            \
    X(ETIMEOUT, "a deadline passed")                                               \
    X(ELOADER, "the loader failed and no stale copy could be served")              \
    X(ECLOSED, "the cache is closing")                                             \
    X(EBUSY, "a configured concurrency limit refused the call")

typedef enum cache_err {
#define CACHE_ERRNO_ENUM(name, msg) CACHE_##name,
    CACHE_ERRNO_MAP(CACHE_ERRNO_ENUM)
#undef CACHE_ERRNO_ENUM
    CACHE_ERR_COUNT_ /* not an error: the number of codes in this version */
} cache_err_t;

/* A static, human-readable string for err; never NULL (unknown codes included). */
CACHE_EXTERN const char *cache_strerror(cache_err_t err);

/* --------------------------------------------------------------------------------
 * Configuration: named properties (see docs/CONFIGURATION.md for every name,
 * its default and its range).
 * ------------------------------------------------------------------------------*/

/* Returns a new configuration holding every default, or NULL when out of memory.
 * Free it with cache_config_free (cache_open copies what it needs). */
CACHE_EXTERN cache_config_t *cache_config_new(void);
/* Frees cfg. NULL is a no-op. */
CACHE_EXTERN void cache_config_free(cache_config_t *cfg);
/* Sets property `name` to the text `value` ("64MiB", "250", "on", "0.1").
 * Returns CACHE_OK, or CACHE_EINVAL for an unknown name, a malformed or
 * out-of-range value, or a NULL argument; then, when errbuf is not NULL, a
 * NUL-terminated message naming the property is written to errbuf (at most
 * errlen bytes). Passwords in l2.url never appear in messages. On error the
 * configuration is unchanged. */
CACHE_EXTERN cache_err_t cache_config_set(cache_config_t *cfg, const char *name, const char *value,
                                          char *errbuf, size_t errlen);
/* Reads a JSON object of properties from the file at path, e.g.
 * {"l1.max_bytes": "64MiB", "l1.ttl_ms": 30000, "l2.tracking": true}; values may be
 * strings, integers, reals or booleans. Either every property is applied or, on
 * error (CACHE_EINVAL with a message naming the file and property), none is. */
CACHE_EXTERN cache_err_t cache_config_load_json(cache_config_t *cfg, const char *path, char *errbuf,
                                                size_t errlen);

/* The loader: called on a miss at every level, with no library lock held, from the
 * thread that missed (one call per key at a time per process: single-flight). It
 * returns CACHE_OK after cache_sink_put, CACHE_ENOTFOUND when the record does not
 * exist (cached as absent for negative_ttl_ms), or any other code on failure (not
 * cached; returned to every caller waiting on the key as CACHE_ELOADER). It may call
 * the cache for other keys; for the same key it would wait on itself. */
typedef cache_err_t (*cache_loader_fn)(void *udata, const void *key, size_t klen,
                                       cache_sink_t *sink);
/* Sets the loader and the pointer passed to it. fn == NULL means no loader: a miss
 * at every level is CACHE_ENOTFOUND. */
CACHE_EXTERN void cache_config_set_loader(cache_config_t *cfg, cache_loader_fn fn, void *udata);

/* A batch loader fills sinks[i] for keys[i] and sets status[i] per key (values as
 * for cache_loader_fn); its own return value is CACHE_OK or a failure for all. */
typedef cache_err_t (*cache_batch_loader_fn)(void *udata, size_t n, const void *const *keys,
                                             const size_t *klens, cache_sink_t *const *sinks,
                                             cache_err_t *status);
CACHE_EXTERN void cache_config_set_batch_loader(cache_config_t *cfg, cache_batch_loader_fn fn,
                                                void *udata);

/* --------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------*/

/* Opens a cache described by cfg (copied: free cfg afterwards). On success *out is
 * a new cache and CACHE_OK is returned; on failure *out is NULL and a message goes
 * to errbuf (when not NULL). Starts one maintenance thread (expiry sweep and memory
 * reclamation) and, with an l2.url, connects before returning. */
CACHE_EXTERN cache_err_t cache_open(cache_t **out, const cache_config_t *cfg, char *errbuf,
                                    size_t errlen);
/* Closes c: stops and joins every thread it started, closes every connection and
 * frees every entry. Values still held by the caller stay valid until released.
 * Calls that are in flight in other threads when cache_close starts finish first;
 * calls that start after it return CACHE_ECLOSED until it returns, and calling
 * anything on c after cache_close has returned is undefined. NULL is a no-op. */
CACHE_EXTERN void cache_close(cache_t *c);

/* --------------------------------------------------------------------------------
 * Data path. Keys and values are arbitrary bytes (NUL included); an empty value is
 * allowed, an empty key is not. Inputs are copied. A NULL handle, key or out
 * pointer, a NULL value with non-zero length or an empty key is CACHE_EINVAL.
 * ------------------------------------------------------------------------------*/

/* Reads key through every level. On CACHE_OK *out is a new reference (release it
 * with cache_value_release); on any other result *out is NULL. CACHE_ENOTFOUND is a
 * normal result: no level has the key (or it is negatively cached). With
 * loader.timeout_ms a caller stops waiting for a load with CACHE_ETIMEOUT (the load
 * goes on and fills); with loader.max_concurrency a load that finds no slot within
 * loader.max_wait_ms fails with CACHE_EBUSY. With stale_while_revalidate_ms or
 * stale_if_error_ms an expired value may be returned instead (never more than
 * max_stale_ms past its TTL); cache_get_ex says when. docs/RESILIENCE.md. */
CACHE_EXTERN cache_err_t cache_get(cache_t *c, const void *key, size_t klen, cache_value_t **out);
/* The value's bytes (borrowed while v is held; not NUL-terminated) and length. */
CACHE_EXTERN const void *cache_value_data(const cache_value_t *v);
CACHE_EXTERN size_t cache_value_len(const cache_value_t *v);
/* Drops one reference. NULL is a no-op. */
CACHE_EXTERN void cache_value_release(cache_value_t *v);

/* Like cache_get, but copies the value into buf (cap bytes) and sets *len to its
 * length. When cap is too small: CACHE_ETOOBIG, nothing copied, *len = size needed.
 * buf may be NULL when cap is 0. */
CACHE_EXTERN cache_err_t cache_get_copy(cache_t *c, const void *key, size_t klen, void *buf,
                                        size_t cap, size_t *len);

/* Writes key = val (vlen bytes) with a TTL of ttl_ms (0 = the default l1/l2 TTL).
 * Any load of key in flight is overtaken: its result is returned to its callers but
 * never inserted. CACHE_ETOOBIG when the key or value is over the limits. */
CACHE_EXTERN cache_err_t cache_set(cache_t *c, const void *key, size_t klen, const void *val,
                                   size_t vlen, uint64_t ttl_ms);
/* Removes key from every level; overtakes loads in flight as cache_set does.
 * Returns CACHE_OK also when the key was absent. */
CACHE_EXTERN cache_err_t cache_del(cache_t *c, const void *key, size_t klen);

/* Called by a loader to hand over its value (copied) with a TTL (0 = default).
 * Calling it again replaces the earlier value. */
CACHE_EXTERN cache_err_t cache_sink_put(cache_sink_t *sink, const void *val, size_t vlen,
                                        uint64_t ttl_ms);

/* --------------------------------------------------------------------------------
 * Bulk and details
 * ------------------------------------------------------------------------------*/

/* n keys in, n results out: out[i] is a new reference or NULL, status[i] its
 * result. Returns CACHE_OK when every key was looked up (whatever its status), or
 * CACHE_EINVAL for bad arguments (then nothing is written). */
CACHE_EXTERN cache_err_t cache_mget(cache_t *c, size_t n, const void *const *keys,
                                    const size_t *klens, cache_value_t **out,
                                    cache_err_t *status);

typedef enum cache_tier { CACHE_TIER_L1 = 1, CACHE_TIER_L2, CACHE_TIER_LOADER } cache_tier_t;
/* Why an answer was served past its TTL (cache_get_info_t.stale); 0 = it was not. */
enum cache_stale {
    CACHE_STALE_NONE = 0,
    CACHE_STALE_REVALIDATING = 1, /* within stale_while_revalidate_ms; a refresh runs */
    CACHE_STALE_ERROR = 2         /* within stale_if_error_ms; the reload failed */
};
typedef struct cache_get_info {
    size_t struct_size;  /* set by the caller: sizeof(cache_get_info_t) */
    cache_tier_t tier;   /* which tier served the value */
    uint64_t age_ms;     /* since this process stored the copy (L1 fill, set or load) */
    int stale;           /* non-zero (an enum cache_stale) when served past its TTL */
    /* appended only: present when struct_size covers them */
    cache_err_t error;   /* with CACHE_STALE_ERROR: the failure the stale value hid */
    uint64_t stale_ms;   /* how far past its TTL the answer was (0 when fresh) */
} cache_get_info_t;
/* cache_get, and when info is not NULL (and info->struct_size covers at least
 * `tier`), fills the details of where the answer came from. On a result other
 * than CACHE_OK, info is left as it was. */
CACHE_EXTERN cache_err_t cache_get_ex(cache_t *c, const void *key, size_t klen,
                                      cache_value_t **out, cache_get_info_t *info);

/* --------------------------------------------------------------------------------
 * Observability
 * ------------------------------------------------------------------------------*/

/* Every function here reads momentary snapshots: each counter is exact, the set is
 * not taken atomically as a whole. All are safe from any thread and cheap: they sum
 * per-thread blocks and take each L1 stripe lock once, briefly, to count entries
 * and bytes. Only cache_health_json talks to Redis. docs/OBSERVABILITY.md lists
 * every metric. */

/* A new, NUL-terminated JSON text of every counter and of the latency histograms
 * (free with cache_free), or NULL when c is NULL, the cache is closing or memory
 * ran out. */
CACHE_EXTERN char *cache_stats_json(cache_t *c);

/* Sets *text to a new, NUL-terminated Prometheus text exposition (format 0.0.4,
 * served as "text/plain; version=0.0.4") of every metric: families prefixed
 * nakkucache_, counters ending in _total, sizes in _bytes, latencies as histograms
 * in _seconds; labels are only fixed words (tier, result, reason, ...), never a
 * cache key. Free it with cache_free. Returns CACHE_OK, CACHE_EINVAL (c or text
 * NULL), CACHE_ECLOSED or CACHE_ENOMEM; on failure *text is NULL (when text is not). */
CACHE_EXTERN cache_err_t cache_metrics_prometheus(cache_t *c, char **text);

/* Checks whether the cache can serve, and returns a new JSON text (free with
 * cache_free), or NULL when c is NULL or memory ran out. With L2 configured it
 * sends one PING on a pooled connection as a data call would: waiting for a free
 * connection, and the PING's round trip, each within l2.timeout_ms (plus
 * l2.connect_timeout_ms when the connection must be re-established first), so it
 * may block that long. It is sent even while the circuit breaker is open, and
 * neither opens nor closes it.
 *   {"status": "pass"|"warn"|"fail", "reason": "<one sentence>",
 *    "closing": false,
 *    "l1": {"entries": N, "bytes": N, "max_bytes": N},
 *    "l2": {"configured": true, "ok": true,
 *           "ping_ms": 0.21 (the PING's round trip; null unless it answered),
 *           "error": null | "<cache_strerror of the PING's failure>",
 *           "breaker": "closed"|"open"|"half_open" (null without L2)},
 *    "loader": {"configured": true}}         (a loader or a batch loader is set)
 * The rules, first match wins:
 *   fail  the cache is closing (then only status, reason and "closing": true);
 *   pass  no L2 is configured, or L2 is ok: its PING answered and its breaker is
 *         not open (every configured tier works; L1 always does, and the loader is
 *         not called: only its presence is checked);
 *   warn  L2 is down (its PING failed or its breaker is open) and a loader is
 *         configured: L1 and the loader serve, with L1 TTLs capped;
 *   fail  L2 is down and no loader is configured: a miss can be served by nothing.
 * A cache with neither L2 nor a loader is pass: its only tier, L1, works. */
CACHE_EXTERN char *cache_health_json(cache_t *c);

/* States of the Redis circuit breaker (cache_stats_t.l2_breaker). */
enum cache_breaker {
    CACHE_BREAKER_NONE = 0,      /* no L2 configured */
    CACHE_BREAKER_CLOSED = 1,    /* Redis is used */
    CACHE_BREAKER_OPEN = 2,      /* Redis is skipped until a probe succeeds */
    CACHE_BREAKER_HALF_OPEN = 3  /* one probe call is trying Redis */
};

/* A snapshot of the counters as plain numbers, for programs that want them without
 * parsing. Counters (monotonic, since cache_open) unless marked "now". Every field
 * is a uint64_t; new fields are only ever appended. The caller sets struct_size to
 * sizeof(cache_stats_t) as it was compiled; cache_stats_get fills only the fields
 * that struct_size covers in full, so a program built against an older, shorter
 * struct keeps working. */
typedef struct cache_stats {
    size_t struct_size;            /* set by the caller: sizeof(cache_stats_t) */
    /* L1 */
    uint64_t l1_hits;              /* lookups L1 served (negative entries included) */
    uint64_t l1_misses;            /* lookups L1 could not serve */
    uint64_t l1_negative_hits;     /* L1 hits on a cached not-found */
    uint64_t l1_refused;           /* values too large to keep in L1 (served, not kept) */
    uint64_t l1_entries;           /* now: entries held (including negative ones) */
    uint64_t l1_bytes;             /* now: bytes charged against l1.max_bytes */
    uint64_t l1_max_bytes;         /* now: the budget, l1.max_bytes */
    uint64_t l1_evictions;         /* entries evicted to stay within budget */
    uint64_t l1_expirations;       /* entries removed because their TTL passed */
    uint64_t l1_fills;             /* load results stored in L1 (from Redis or the loader) */
    uint64_t fills_dropped;        /* load results not kept: a write overtook them */
    uint64_t coalesced;            /* misses that waited on another caller's load */
    /* L2 (all 0 without L2) */
    uint64_t l2_configured;        /* now: 1 when l2.url is set */
    uint64_t l2_breaker;           /* now: an enum cache_breaker */
    uint64_t l2_hits;              /* L1 misses Redis served */
    uint64_t l2_misses;            /* L1 misses Redis did not have */
    uint64_t l2_failures;          /* lookups that skipped a failed or open Redis */
    uint64_t l2_bad_values;        /* foreign data under our prefix (read as a miss) */
    uint64_t l2_fills;             /* loader results written to Redis under a lease */
    uint64_t l2_fills_lost;        /* fills refused: a write voided the lease */
    uint64_t l2_lease_waits;       /* lookups that waited on another process's load */
    uint64_t l2_lease_wait_timeouts; /* lease waits that gave up and loaded */
    uint64_t l2_commands;          /* pipelines sent (one round trip each) */
    uint64_t l2_errors;            /* pipelines that failed, every kind */
    uint64_t l2_timeouts;          /* of l2_errors: a deadline passed */
    uint64_t l2_protocol_errors;   /* of l2_errors: a malformed or oversized reply */
    uint64_t l2_reconnects;        /* connections established after cache_open */
    uint64_t l2_connect_failures;  /* connection attempts that failed */
    uint64_t l2_breaker_trips;     /* times the breaker opened */
    uint64_t l2_skipped;           /* pipelines not sent because the breaker was open */
    uint64_t l2_roundtrips;        /* round trips that completed (histogram count) */
    uint64_t l2_roundtrip_ns;      /* their total duration, nanoseconds */
    /* the loader */
    uint64_t loader_calls;         /* loader invocations (a batch call: one per key) */
    uint64_t loader_ok;            /* calls that returned a value */
    uint64_t loader_not_found;     /* calls that found no record */
    uint64_t loader_failures;      /* calls that failed */
    uint64_t loader_timeouts;      /* callers that stopped waiting at loader.timeout_ms */
    uint64_t loader_busy;          /* loads refused by loader.max_concurrency */
    uint64_t loader_batch_calls;   /* batch loader invocations */
    uint64_t loader_ns;            /* total time spent in the loader, nanoseconds */
    /* stale answers by reason, and refresh-ahead */
    uint64_t stale_while_revalidate; /* served past TTL while a refresh ran */
    uint64_t stale_if_error;       /* served past TTL because the reload failed */
    uint64_t refresh_scheduled;    /* background refreshes queued */
    uint64_t refresh_done;         /* refreshes that stored a new value */
    uint64_t refresh_failed;       /* refreshes whose load failed */
    uint64_t refresh_skipped;      /* refreshes not queued or not run */
    /* writes */
    uint64_t sets;                 /* cache_set calls that succeeded */
    uint64_t dels;                 /* cache_del calls that succeeded */
    uint64_t write_failures;       /* cache_set/cache_del calls Redis did not take */
    /* cross-process invalidation */
    uint64_t invalidations;        /* keys invalidated by writers elsewhere */
    uint64_t flushes_subscriber_lost; /* L1 flushes: the subscriber was lost */
    uint64_t flushes_server;       /* L1 flushes: FLUSHALL/FLUSHDB on the server */
    uint64_t tracking_messages;    /* invalidation messages received */
    uint64_t tracking_subscriber_losses; /* times the subscriber connection was lost */
    uint64_t tracking_subscribed;  /* now: 1 while the subscriber is established */
    uint64_t generations_retired;  /* connection lives whose L1 copies were dropped */
    uint64_t untracked_connects;   /* data connections that run without tracking */
    /* replaying failed deletes (l2.retry_invalidations) */
    uint64_t retry_queued;
    uint64_t retry_replayed;
    uint64_t retry_dropped;
    /* appended only */
} cache_stats_t;

/* Fills *out with a snapshot (the fields out->struct_size covers, nothing else).
 * Returns CACHE_OK, CACHE_ECLOSED, or CACHE_EINVAL when c or out is NULL or
 * out->struct_size does not cover even the first counter (then nothing is written).
 * out->struct_size is left as the caller set it. */
CACHE_EXTERN cache_err_t cache_stats_get(cache_t *c, cache_stats_t *out);

/* Frees memory this library returned (stats, metrics and health text). NULL is a
 * no-op. */
CACHE_EXTERN void cache_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* NAKKUCACHE_H */
