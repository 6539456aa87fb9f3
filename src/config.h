/*
 * The property table: every configuration property is declared once, in
 * NKC_PROPERTIES, which yields the config struct's fields, their defaults, the
 * parser's validation and docs/CONFIGURATION.md (a test checks the file matches).
 */
#ifndef NKC_CONFIG_H
#define NKC_CONFIG_H

#include "nakkucache.h"

#include <stdint.h>

enum nkc_kind {
    NKC_BYTES, /* integer bytes; suffixes KiB, MiB, GiB, TiB (and B) */
    NKC_COUNT, /* plain non-negative integer */
    NKC_MS,    /* integer milliseconds; suffixes ms, s, min, h */
    NKC_BOOL,  /* on/off, true/false, yes/no, 1/0 */
    NKC_FRAC,  /* decimal number */
    NKC_TEXT,  /* free text (validated by a checker when one is named) */
};

#define NKC_U32_MAX 4294967295.0
/* X(field, "name", kind, "default", min, max, "meaning") */
#define NKC_PROPERTIES(X)                                                                   \
    X(l1_max_bytes, "l1.max_bytes", NKC_BYTES, "64MiB", 65536, 1099511627776.0,             \
      "L1 memory budget: key + value + real per-entry overhead, summed over all entries")   \
    X(l1_max_entries, "l1.max_entries", NKC_COUNT, "0", 0, 1099511627776.0,                 \
      "L1 entry bound; 0 = bounded by bytes only")                                          \
    X(l1_ttl_ms, "l1.ttl_ms", NKC_MS, "60000", 1, NKC_U32_MAX,                              \
      "default and maximum TTL of an L1 copy")                                              \
    X(l1_stripes, "l1.stripes", NKC_COUNT, "0", 0, 4096,                                    \
      "number of L1 lock stripes, a power of two; 0 = sized from the core count and budget") \
    X(l1_sweep_interval_ms, "l1.sweep_interval_ms", NKC_MS, "100", 1, 60000,                \
      "period of the background expiry sweep (each pass visits a bounded slice of L1)")     \
    X(max_key_bytes, "max_key_bytes", NKC_BYTES, "64KiB", 1, 16777216,                      \
      "longest key accepted; longer keys get CACHE_ETOOBIG")                                \
    X(max_value_bytes, "max_value_bytes", NKC_BYTES, "16MiB", 0, 536870912,                 \
      "largest value accepted; larger values get CACHE_ETOOBIG")                            \
    X(negative_ttl_ms, "negative_ttl_ms", NKC_MS, "5000", 0, NKC_U32_MAX,                   \
      "how long a not-found from the loader is cached; 0 = never")                          \
    X(ttl_jitter, "ttl_jitter", NKC_FRAC, "0.1", 0, 0.5,                                    \
      "random spread applied to TTLs as a fraction (0.1 = +-10%), capped by the maximum TTL") \
    X(l2_url, "l2.url", NKC_TEXT, "", 0, 0,                                                 \
      "redis://[user[:password]@]host[:port][/db] or unix:///path[?db=N]; empty = no L2")   \
    X(l2_key_prefix, "l2.key_prefix", NKC_TEXT, "", 0, 0,                                   \
      "namespace prepended to every Redis key")                                             \
    X(l2_ttl_ms, "l2.ttl_ms", NKC_MS, "300000", 1, NKC_U32_MAX, "default TTL in Redis")     \
    X(l2_timeout_ms, "l2.timeout_ms", NKC_MS, "100", 1, 600000,                             \
      "deadline for one Redis round trip (not for a whole cache_get)")                      \
    X(l2_connect_timeout_ms, "l2.connect_timeout_ms", NKC_MS, "1000", 1, 600000,            \
      "deadline for connecting and the handshake (AUTH, SELECT, TRACKING)")                 \
    X(l2_pool_size, "l2.pool_size", NKC_COUNT, "4", 1, 255, "data connections per process") \
    X(l2_breaker_failures, "l2.breaker.failures", NKC_COUNT, "3", 1, 1000000,               \
      "consecutive L2 failures that open the circuit breaker")                              \
    X(l2_breaker_cooldown_ms, "l2.breaker.cooldown_ms", NKC_MS, "30000", 1, 86400000,       \
      "how long an open breaker skips L2 before one probe")                                 \
    X(l2_lease_ms, "l2.lease_ms", NKC_MS, "5000", 1, 86400000,                              \
      "lifetime of a fill lease in Redis (longer than a slow load)")                        \
    X(l2_lease_wait_ms, "l2.lease_wait_ms", NKC_MS, "2000", 0, 86400000,                    \
      "how long a process waits on another's lease before loading itself")                  \
    X(l2_tracking, "l2.tracking", NKC_BOOL, "on", 0, 1,                                     \
      "cross-process L1 invalidation through Redis client tracking")                        \
    X(l2_max_value_bytes, "l2.max_value_bytes", NKC_BYTES, "16MiB", 1024, 536870912,        \
      "largest reply accepted from Redis; larger replies are refused unread")               \
    X(l2_down_l1_ttl_ms, "l2.down_l1_ttl_ms", NKC_MS, "5000", 1, NKC_U32_MAX,               \
      "L1 TTL cap while Redis is unreachable")                                              \
    X(l2_untracked_l1_ttl_ms, "l2.untracked_l1_ttl_ms", NKC_MS, "1000", 1, NKC_U32_MAX,     \
      "L1 TTL cap of copies read while invalidation tracking is not established")         \
    X(l2_ping_interval_ms, "l2.ping_interval_ms", NKC_MS, "500", 10, 60000,                 \
      "how often the invalidation subscriber is pinged; no answer within this is a loss")  \
    X(l2_retry_invalidations, "l2.retry_invalidations", NKC_COUNT, "0", 0, 1000000,          \
      "deletes kept to replay when Redis returns after a cache_del got CACHE_EL2; 0 = off") \
    X(workers, "workers", NKC_COUNT, "2", 1, 64,                                            \
      "background worker threads (refreshes, loads under loader.timeout_ms); started only " \
      "when a feature needs them")                                                          \
    X(workers_queue, "workers.queue", NKC_COUNT, "1024", 1, 1048576,                        \
      "bounded queue of background jobs; a refresh that finds it full is skipped, a "       \
      "timed load runs in the caller")                                                      \
    X(refresh_ahead, "refresh_ahead", NKC_FRAC, "0", 0, 0.9,                                \
      "a hit in the last fraction of an entry's TTL schedules one background reload; 0 = off") \
    X(refresh_beta, "refresh_ahead.beta", NKC_FRAC, "0", 0, 10,                            \
      "XFetch early refresh: a hit refreshes when now - beta * load_time * ln(rand) passes " \
      "the expiry (load_time: moving average of load durations); 0 = off")                  \
    X(stale_while_revalidate_ms, "stale_while_revalidate_ms", NKC_MS, "0", 0, NKC_U32_MAX,  \
      "an entry this far past its TTL is served at once while one refresh runs (with Redis, " \
      "values stay there this much past their TTL); 0 = off")                               \
    X(stale_if_error_ms, "stale_if_error_ms", NKC_MS, "0", 0, NKC_U32_MAX,                  \
      "an entry this far past its TTL is served when Redis and the loader fail; 0 = off")   \
    X(max_stale_ms, "max_stale_ms", NKC_MS, "3600000", 0, NKC_U32_MAX,                      \
      "hard ceiling: no answer is ever served more than this past its TTL, in any mode")    \
    X(loader_timeout_ms, "loader.timeout_ms", NKC_MS, "0", 0, 86400000,                     \
      "how long a caller waits for a load (queueing included); the load may finish in the " \
      "background and fill; 0 = wait for it")                                               \
    X(loader_max_concurrency, "loader.max_concurrency", NKC_COUNT, "0", 0, 1000000,         \
      "most loader calls running at once in this process; 0 = no limit")                   \
    X(loader_max_wait_ms, "loader.max_wait_ms", NKC_MS, "1000", 0, 86400000,                \
      "how long a load waits for a loader.max_concurrency slot before CACHE_EBUSY")

struct nkc_config {
#define NKC_FIELD_NKC_BYTES uint64_t
#define NKC_FIELD_NKC_COUNT uint64_t
#define NKC_FIELD_NKC_MS uint64_t
#define NKC_FIELD_NKC_BOOL int
#define NKC_FIELD_NKC_FRAC double
#define NKC_FIELD_NKC_TEXT char *
#define NKC_DECLARE(field, name, kind, def, lo, hi, doc) NKC_FIELD_##kind field;
    NKC_PROPERTIES(NKC_DECLARE)
#undef NKC_DECLARE
    cache_loader_fn loader;
    void *loader_udata;
    cache_batch_loader_fn batch_loader;
    void *batch_loader_udata;
    /* test hook: replaces the coarse monotonic clock (milliseconds) */
    int64_t (*clock_ms)(void *udata);
    void *clock_udata;
    /* test hook: fills without leases (the control run of the stale-fill test) */
    int test_no_leases;
    /* test hooks for the reply-vs-invalidation race: called after a data command
     * is sent and before its reply is read; invalidations that do not overtake
     * loads in flight (the control run) */
    void (*test_after_send)(void *udata);
    void *test_after_send_udata;
    int test_no_overtake;
};

struct cache_config {
    struct nkc_config v;
};

/* Copies src into dst (deep: text fields are duplicated). 0, or -1 when out of memory. */
int nkc_config_copy(struct nkc_config *dst, const struct nkc_config *src);
/* Frees the text fields of a copy. */
void nkc_config_clear(struct nkc_config *cfg);
/* docs/CONFIGURATION.md, rendered from the table: a new string (free()). */
char *nkc_config_doc_markdown(void);
/* Test hooks: a clock for TTLs, in milliseconds; fills without leases. */
void nkc_config_set_clock(cache_config_t *cfg, int64_t (*fn)(void *), void *udata);
void nkc_config_set_test_no_leases(cache_config_t *cfg, int on);
void nkc_config_set_test_after_send(cache_config_t *cfg, void (*fn)(void *), void *udata,
                                    int no_overtake);

/* A parsed l2.url. Text fields are new strings (nkc_url_free). */
struct nkc_url {
    char *host;     /* NULL for unix sockets */
    int port;
    char *path;     /* unix socket path, or NULL */
    char *user;     /* ACL user, or NULL */
    char *password; /* or NULL */
    int db;
};
/* Parses url; on error returns CACHE_EINVAL and writes a message (without the
 * password) to errbuf. */
cache_err_t nkc_url_parse(const char *url, struct nkc_url *out, char *errbuf, size_t errlen);
void nkc_url_free(struct nkc_url *u);

/* snprintf into errbuf when it is usable. */
void nkc_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* NKC_CONFIG_H */
