/*
 * Cross-process L1 coherence through Redis client tracking (RESP2): one
 * subscriber connection per cache on __redis__:invalidate, one thread reading it,
 * pinging it, and polling idle pooled connections for EOF. Data connections
 * redirect their invalidations to it (l2.c, at connect).
 */
#ifndef NKC_TRACK_H
#define NKC_TRACK_H

#include "l2.h"

#include <stddef.h>
#include <stdint.h>

struct nkc_track;

enum nkc_flush_cause { NKC_FLUSH_SUBSCRIBER_LOST, NKC_FLUSH_SERVER_FLUSH };

struct nkc_track_params {
    struct nkc_l2 *l2;
    const char *prefix; /* only keys with it are ours; it is stripped before on_key */
    size_t prefix_len;
    int64_t ping_ms;
    /* called from the tracker thread, with no library lock held */
    void (*on_key)(void *udata, const void *key, size_t klen);
    void (*on_flush)(void *udata, enum nkc_flush_cause cause);
    void *udata;
};

/* Subscribes (synchronously, so a refused SUBSCRIBE fails cache_open with a clear
 * message), points the pool at the subscriber, and starts the tracker thread. */
cache_err_t nkc_track_start(struct nkc_track **out, const struct nkc_track_params *p,
                            char *errbuf, size_t errlen);
/* Stops and joins the thread and closes the subscriber. NULL is a no-op. */
void nkc_track_stop(struct nkc_track *t);

struct nkc_track_totals {
    uint64_t messages, keys, subscriber_losses, server_flushes;
    int subscribed;
};
void nkc_track_totals(struct nkc_track *t, struct nkc_track_totals *out);

#endif /* NKC_TRACK_H */
