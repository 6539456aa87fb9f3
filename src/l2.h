/*
 * The Redis client layer: a pool of connections driven with non-blocking sockets
 * and poll() so every command has a real deadline, hiredis used only to format
 * commands and parse replies (with object functions that refuse oversized replies
 * before allocating them), reconnect with back-off that re-runs the whole
 * handshake, and a circuit breaker. The only code that includes hiredis.
 */
#ifndef NKC_L2_H
#define NKC_L2_H

#include "config.h"
#include "nakkucache.h"

#include <stddef.h>
#include <stdint.h>

enum nkc_reply_type {
    NKC_R_STRING = 1, NKC_R_ARRAY, NKC_R_INTEGER, NKC_R_NIL, NKC_R_STATUS, NKC_R_ERROR
};

/* A parsed reply; free with nkc_reply_free. */
struct nkc_reply {
    enum nkc_reply_type type;
    long long integer;
    size_t len;              /* string, status and error */
    char *str;               /* NUL-terminated copy */
    size_t n;                /* array */
    struct nkc_reply **elem;
};
void nkc_reply_free(struct nkc_reply *r);

/* One command: argv[i] is argvlen[i] bytes (binary-safe). */
struct nkc_cmd {
    int argc;
    const char *const *argv;
    const size_t *argvlen;
};

/* Which pooled connection served a command, its generation, and whether it was
 * tracked: L1 copies are tagged with it (see nkc_l1_params.live). */
#define NKC_L2_NO_SLOT UINT32_MAX
struct nkc_origin {
    uint32_t slot; /* NKC_L2_NO_SLOT when no connection served */
    uint32_t gen;
    int tracked;
};

struct nkc_l2_params {
    const struct nkc_config *cfg; /* l2.url, timeouts, pool size, breaker, limits */
};

struct nkc_l2;

/* Connects one pooled connection (handshake included) so that a wrong address or
 * password fails here with a clear message; the others connect on first use. */
cache_err_t nkc_l2_open(struct nkc_l2 **out, const struct nkc_l2_params *p, char *errbuf,
                        size_t errlen);
void nkc_l2_close(struct nkc_l2 *l2);

/* Runs n commands as one pipeline (one round trip) on the connection that serves
 * route_key, each reply into out[i] (new; the caller frees them). Returns CACHE_OK
 * when every reply arrived (error replies included: inspect their type), CACHE_EL2
 * on I/O or protocol failure, while the breaker is open or while reconnecting is
 * backing off, CACHE_ETIMEOUT when the deadline (l2.timeout_ms for the whole
 * pipeline, plus waiting for a free connection) passed. On failure out[] is all
 * NULL and the connection was poisoned and will be replaced. origin (may be NULL)
 * tells which connection life served the pipeline. */
cache_err_t nkc_l2_pipeline(struct nkc_l2 *l2, const void *route_key, size_t route_klen,
                            size_t n, const struct nkc_cmd *cmds, struct nkc_reply **out,
                            struct nkc_origin *origin);
/* One command; the same contract. */
cache_err_t nkc_l2_command(struct nkc_l2 *l2, const void *route_key, size_t route_klen,
                           int argc, const char *const *argv, const size_t *argvlen,
                           struct nkc_reply **out);

/* Background upkeep, from the cache's maintenance thread: while the breaker is
 * open, PINGs Redis (on a free pooled connection, reconnecting as needed) every
 * 250 ms and closes the breaker as soon as Redis answers, so L2 is used again
 * within about a second of its return whatever l2.breaker.cooldown_ms is. */
void nkc_l2_maintain(struct nkc_l2 *l2);

/* The state of the tier for stats and health. */
enum nkc_breaker_state { NKC_BREAKER_CLOSED, NKC_BREAKER_OPEN, NKC_BREAKER_HALF_OPEN };
struct nkc_l2_totals {
    uint64_t commands, errors, timeouts, protocol_errors, reconnects, connect_failures;
    uint64_t breaker_trips, skipped_open;
    uint64_t untracked_connects, retired;
    int subscribed;
    enum nkc_breaker_state breaker;
};
void nkc_l2_totals(struct nkc_l2 *l2, struct nkc_l2_totals *t);
const char *nkc_breaker_name(enum nkc_breaker_state s);
/* The round-trip histogram of the pipelines that completed (stats.h). */
struct nkc_hist_snapshot;
void nkc_l2_rtt(struct nkc_l2 *l2, struct nkc_hist_snapshot *out);
/* Health check: one PING on a pooled connection (waiting for a free one and
 * reconnecting within the l2.timeout_ms deadline), whatever the breaker says and
 * without changing it. CACHE_OK with *rtt_ns the PING's round trip, else CACHE_EL2
 * or CACHE_ETIMEOUT with *rtt_ns the time spent. */
cache_err_t nkc_l2_ping(struct nkc_l2 *l2, int64_t *rtt_ns);

/* Test hook: the file descriptor of pooled connection i (-1 when closed). */
int nkc_l2_conn_fd(struct nkc_l2 *l2, unsigned i);

/* ---- tracking (driven by track.c) ---- */

/* The per-slot live generations L1 checks entries against. */
const _Atomic uint32_t *nkc_l2_live(const struct nkc_l2 *l2);
/* Retires every connection's generation: every L1 copy read from Redis so far is
 * treated as absent, and every connection reconnects (and re-registers) on use. */
void nkc_l2_retire_all(struct nkc_l2 *l2);
/* Records the subscriber's CLIENT ID (0: none, connections run untracked) and
 * retires every generation so connections re-register with it. */
void nkc_l2_set_subscriber(struct nkc_l2 *l2, long long id);
/* Polls idle pooled connections for EOF (a dead server, CLIENT KILL) and retires
 * the ones that died, without waiting for traffic. */
void nkc_l2_check_idle(struct nkc_l2 *l2);

/* The invalidation subscriber: its own connection (handshake, CLIENT ID, then
 * SUBSCRIBE __redis__:invalidate), used by one thread. */
struct nkc_l2_sub;
cache_err_t nkc_l2_sub_open(struct nkc_l2 *l2, struct nkc_l2_sub **out, long long *id,
                            char *msg, size_t msglen);
/* The next push, waiting until the deadline: CACHE_OK with *out NULL on time-out. */
cache_err_t nkc_l2_sub_next(struct nkc_l2 *l2, struct nkc_l2_sub *sub, int64_t deadline_ns,
                            struct nkc_reply **out);
cache_err_t nkc_l2_sub_ping(struct nkc_l2 *l2, struct nkc_l2_sub *sub);
void nkc_l2_sub_close(struct nkc_l2_sub *sub);

#endif /* NKC_L2_H */
