/*
 * The tracker thread (see track.h). Invariants: while no subscriber is connected
 * the pool's subscriber id is 0, so connections run untracked and their L1 copies
 * live at most l2.untracked_l1_ttl_ms; every change of subscriber retires every
 * connection generation first, so no L1 copy read under the old subscriber (whose
 * invalidations may be lost) is served again. Detection bounds: a silent
 * subscriber within 2 x l2.ping_interval_ms, a dead idle data connection within
 * IDLE_CHECK_MS.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "track.h"

#include "sync.h"

#include <stdlib.h>
#include <string.h>

#define IDLE_CHECK_MS 200
#define WAKE_MS 50 /* how often the thread looks at its stop flag and timers */

struct nkc_track {
    struct nkc_track_params p;
    pthread_t thread;
    _Atomic int stop;
    struct nkc_l2_sub *sub; /* owned by the thread once started */
    int awaiting_pong;
    int64_t ping_sent_ns, last_heard_ns, next_idle_check_ns, retry_at_ns, backoff_ms;
    _Atomic uint64_t n_messages, n_keys, n_lost, n_flushes;
    _Atomic int subscribed;
};

static cache_err_t subscribe(struct nkc_track *t, char *errbuf, size_t errlen)
{
    long long id = 0;
    cache_err_t err = nkc_l2_sub_open(t->p.l2, &t->sub, &id, errbuf, errlen);
    if (err != CACHE_OK)
        return err;
    nkc_l2_set_subscriber(t->p.l2, id);
    t->awaiting_pong = 0;
    t->last_heard_ns = nkc_now_ns();
    t->backoff_ms = 0;
    atomic_store_explicit(&t->subscribed, 1, memory_order_relaxed);
    return CACHE_OK;
}

/* Invalidations may have been missed: no L1 copy from Redis is served again. */
static void lose_subscriber(struct nkc_track *t)
{
    nkc_l2_sub_close(t->sub);
    t->sub = NULL;
    atomic_store_explicit(&t->subscribed, 0, memory_order_relaxed);
    nkc_l2_set_subscriber(t->p.l2, 0);
    atomic_fetch_add_explicit(&t->n_lost, 1, memory_order_relaxed);
    t->p.on_flush(t->p.udata, NKC_FLUSH_SUBSCRIBER_LOST);
}

static void on_key(struct nkc_track *t, const struct nkc_reply *k)
{
    if (k->type != NKC_R_STRING || k->len < t->p.prefix_len ||
        memcmp(k->str, t->p.prefix, t->p.prefix_len) != 0)
        return; /* not one of ours */
    atomic_fetch_add_explicit(&t->n_keys, 1, memory_order_relaxed);
    t->p.on_key(t->p.udata, k->str + t->p.prefix_len, k->len - t->p.prefix_len);
}

static int is_text(const struct nkc_reply *r, const char *s)
{
    return (r->type == NKC_R_STRING || r->type == NKC_R_STATUS) && strcmp(r->str, s) == 0;
}

/* One push from the subscriber: an invalidation, or the answer to our PING. */
static void handle(struct nkc_track *t, const struct nkc_reply *r)
{
    t->last_heard_ns = nkc_now_ns();
    if (r->type == NKC_R_ARRAY && r->n >= 1 && is_text(r->elem[0], "pong")) {
        t->awaiting_pong = 0;
        return;
    }
    if (r->type != NKC_R_ARRAY || r->n != 3 || !is_text(r->elem[0], "message"))
        return;
    atomic_fetch_add_explicit(&t->n_messages, 1, memory_order_relaxed);
    const struct nkc_reply *payload = r->elem[2];
    if (payload->type == NKC_R_NIL) { /* FLUSHALL / FLUSHDB */
        atomic_fetch_add_explicit(&t->n_flushes, 1, memory_order_relaxed);
        nkc_l2_retire_all(t->p.l2);
        t->p.on_flush(t->p.udata, NKC_FLUSH_SERVER_FLUSH);
    } else if (payload->type == NKC_R_ARRAY) {
        for (size_t i = 0; i < payload->n; i++)
            on_key(t, payload->elem[i]);
    } else {
        on_key(t, payload);
    }
}

static void reconnect(struct nkc_track *t, int64_t now)
{
    if (now < t->retry_at_ns)
        return;
    char msg[256];
    if (subscribe(t, msg, sizeof(msg)) == CACHE_OK)
        return;
    t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : 25;
    if (t->backoff_ms > 500)
        t->backoff_ms = 500;
    t->retry_at_ns = now + t->backoff_ms * 1000000;
}

/* Reads pushes for up to WAKE_MS and keeps the subscriber honest with PINGs. */
static void listen_once(struct nkc_track *t, int64_t now)
{
    int64_t ping_ns = t->p.ping_ms * 1000000;
    if (t->awaiting_pong && now - t->ping_sent_ns > ping_ns) {
        lose_subscriber(t); /* silent: as good as gone */
        return;
    }
    if (!t->awaiting_pong && now - t->last_heard_ns >= ping_ns) {
        if (nkc_l2_sub_ping(t->p.l2, t->sub) != CACHE_OK) {
            lose_subscriber(t);
            return;
        }
        t->awaiting_pong = 1;
        t->ping_sent_ns = now;
    }
    struct nkc_reply *r = NULL;
    if (nkc_l2_sub_next(t->p.l2, t->sub, now + WAKE_MS * 1000000, &r) != CACHE_OK) {
        lose_subscriber(t);
        return;
    }
    if (r) {
        handle(t, r);
        nkc_reply_free(r);
    }
}

static void *tracker_main(void *arg)
{
    struct nkc_track *t = arg;
    while (!atomic_load_explicit(&t->stop, memory_order_acquire)) {
        int64_t now = nkc_now_ns();
        if (t->sub)
            listen_once(t, now);
        else {
            reconnect(t, now);
            if (!t->sub)
                nkc_sleep_ms(WAKE_MS / 2);
        }
        if (now >= t->next_idle_check_ns) {
            nkc_l2_check_idle(t->p.l2);
            t->next_idle_check_ns = now + IDLE_CHECK_MS * 1000000;
        }
    }
    return NULL;
}

cache_err_t nkc_track_start(struct nkc_track **out, const struct nkc_track_params *p,
                            char *errbuf, size_t errlen)
{
    struct nkc_track *t = calloc(1, sizeof(*t));
    if (!t)
        return CACHE_ENOMEM;
    t->p = *p;
    cache_err_t err = subscribe(t, errbuf, errlen);
    if (err != CACHE_OK) {
        free(t);
        return err;
    }
    if (nkc_thread_start(&t->thread, tracker_main, t) != 0) {
        nkc_l2_sub_close(t->sub);
        nkc_l2_set_subscriber(p->l2, 0);
        free(t);
        nkc_errf(errbuf, errlen, "cannot start the invalidation tracker thread");
        return CACHE_ENOMEM;
    }
    *out = t;
    return CACHE_OK;
}

void nkc_track_stop(struct nkc_track *t)
{
    if (!t)
        return;
    atomic_store_explicit(&t->stop, 1, memory_order_release);
    pthread_join(t->thread, NULL);
    nkc_l2_sub_close(t->sub);
    free(t);
}

void nkc_track_totals(struct nkc_track *t, struct nkc_track_totals *out)
{
    out->messages = atomic_load_explicit(&t->n_messages, memory_order_relaxed);
    out->keys = atomic_load_explicit(&t->n_keys, memory_order_relaxed);
    out->subscriber_losses = atomic_load_explicit(&t->n_lost, memory_order_relaxed);
    out->server_flushes = atomic_load_explicit(&t->n_flushes, memory_order_relaxed);
    out->subscribed = atomic_load_explicit(&t->subscribed, memory_order_relaxed);
}
