/*
 * cache_health_json: whether the cache can serve, from a real PING of Redis and
 * the configured tiers; the rules are documented in nakkucache.h. The check is a
 * call like any other: it does not start once cache_close has begun, and
 * cache_close waits for a PING in flight.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <jansson.h>

/* What one check found. */
struct probe {
    int l2_configured, l2_ok, loader;
    cache_err_t ping_err;
    int64_t ping_ns;
    enum nkc_breaker_state breaker;
};

static void run_probe(struct cache *c, struct probe *p)
{
    p->loader = c->cfg.loader != NULL || c->cfg.batch_loader != NULL;
    p->l2_configured = c->l2 != NULL;
    if (!c->l2)
        return;
    p->ping_err = nkc_l2_ping(c->l2, &p->ping_ns);
    struct nkc_l2_totals t;
    nkc_l2_totals(c->l2, &t);
    p->breaker = t.breaker;
    /* an open breaker skips Redis whatever the PING says (the background probe
     * closes it within about 250 ms of Redis answering) */
    p->l2_ok = p->ping_err == CACHE_OK && t.breaker != NKC_BREAKER_OPEN;
}

/* The rules of nakkucache.h: pass, warn (Redis down, the loader serves) or fail. */
static const char *status_of(const struct probe *p, const char **reason)
{
    if (!p->l2_configured) {
        *reason = "every configured tier works (no Redis configured)";
        return "pass";
    }
    if (p->l2_ok) {
        *reason = p->loader ? "every configured tier works: L1, Redis and the loader"
                            : "every configured tier works: L1 and Redis (no loader configured)";
        return "pass";
    }
    int ping_failed = p->ping_err != CACHE_OK;
    if (p->loader) {
        *reason = ping_failed ? "Redis does not answer PING: L1 and the loader serve"
                              : "the Redis circuit breaker is open: L1 and the loader serve";
        return "warn";
    }
    *reason = ping_failed ? "Redis does not answer PING and no loader is configured: "
                            "misses cannot be served"
                          : "the Redis circuit breaker is open and no loader is configured: "
                            "misses cannot be served";
    return "fail";
}

static json_t *l2_json(const struct probe *p)
{
    if (!p->l2_configured)
        return json_pack("{s:b, s:b, s:n, s:n, s:n}", "configured", 0, "ok", 0, "ping_ms",
                         "error", "breaker");
    json_t *ping = p->ping_err == CACHE_OK ? json_real((double)p->ping_ns / 1e6) : json_null();
    json_t *err = p->ping_err == CACHE_OK ? json_null() : json_string(cache_strerror(p->ping_err));
    return json_pack("{s:b, s:b, s:o, s:o, s:s}", "configured", 1, "ok", p->l2_ok, "ping_ms",
                     ping, "error", err, "breaker", nkc_breaker_name(p->breaker));
}

char *cache_health_json(cache_t *c)
{
    if (!c)
        return NULL;
    json_t *root;
    if (nkc_observe_begin(c) != 0) {
        /* nothing of c may be read any more: it is being torn down */
        root = json_pack("{s:s, s:s, s:b}", "status", "fail", "reason", "the cache is closing",
                         "closing", 1);
    } else {
        struct probe p = {0};
        run_probe(c, &p);
        struct nkc_l1_totals t;
        nkc_l1_totals(c->l1, &t);
        nkc_observe_end(c);
        const char *reason;
        const char *status = status_of(&p, &reason);
        root = json_pack("{s:s, s:s, s:b, s:{s:I, s:I, s:I}, s:o, s:{s:b}}", "status", status,
                         "reason", reason, "closing", 0, "l1", "entries", (json_int_t)t.entries,
                         "bytes", (json_int_t)t.bytes, "max_bytes", (json_int_t)t.max_bytes,
                         "l2", l2_json(&p), "loader", "configured", p.loader);
    }
    char *text = root ? nkc_json_text(root) : NULL;
    json_decref(root);
    return text;
}
