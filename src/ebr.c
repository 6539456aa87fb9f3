/*
 * Epoch-based reclamation (the classic three-epoch scheme). Invariant: a reader
 * active at epoch e has announced e in its record before reading anything shared,
 * so the global epoch can reach e + 2 only after that reader has left; memory
 * unlinked at epoch r is therefore unreachable once the global epoch is >= r + 2.
 * Records are never freed (they stay reachable from `records`, so leak checkers
 * do not count them); an exiting thread's record is put back for reuse by its
 * pthread key destructor, so their number is the peak number of threads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ebr.h"

#include "sync.h"

#include <errno.h>
#include <stdlib.h>

struct record {
    /* 0 when outside any critical section, else (epoch << 1) | 1. Written only by
     * the owning thread; read by nkc_ebr_advance (the acquire there pairs with
     * the seq_cst fence in nkc_ebr_enter). */
    _Atomic uint64_t state;
    _Atomic int in_use;          /* 1 while a live thread owns the record */
    struct record *next;         /* immutable once published on the list */
    unsigned slot;               /* index of this record, for nkc_thread_slot */
    unsigned depth;              /* nesting, owner-only */
} NKC_ALIGNED;

static _Atomic uint64_t global_epoch = 1;
static _Atomic(struct record *) records;    /* push-only list of every record */
static _Atomic unsigned n_records;
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static _Thread_local struct record *self;

static void on_thread_exit(void *arg)
{
    struct record *r = arg;
    atomic_store_explicit(&r->state, 0, memory_order_release);
    r->depth = 0;
    /* pairs with the acquire CAS in acquire_record */
    atomic_store_explicit(&r->in_use, 0, memory_order_release);
}

static void make_key(void)
{
    if (pthread_key_create(&exit_key, on_thread_exit) != 0)
        abort();
}

static struct record *acquire_record(void)
{
    pthread_once(&key_once, make_key);
    struct record *r = atomic_load_explicit(&records, memory_order_acquire);
    for (; r; r = r->next) {
        int expected = 0;
        if (atomic_load_explicit(&r->in_use, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(&r->in_use, &expected, 1,
                                                    memory_order_acquire, memory_order_relaxed))
            break;
    }
    if (!r) {
        if (posix_memalign((void **)&r, NKC_CACHELINE, sizeof(*r)) != 0)
            abort(); /* a few dozen bytes per thread: no sane recovery */
        atomic_init(&r->state, 0);
        atomic_init(&r->in_use, 1);
        r->depth = 0;
        r->slot = atomic_fetch_add_explicit(&n_records, 1, memory_order_relaxed);
        struct record *head = atomic_load_explicit(&records, memory_order_relaxed);
        do {
            r->next = head;
        } while (!atomic_compare_exchange_weak_explicit(&records, &head, r, memory_order_release,
                                                        memory_order_relaxed));
    }
    pthread_setspecific(exit_key, r);
    self = r;
    return r;
}

void nkc_ebr_enter(void)
{
    struct record *r = self;
    if (NKC_UNLIKELY(!r))
        r = acquire_record();
    if (r->depth++ != 0)
        return;
    uint64_t e = atomic_load_explicit(&global_epoch, memory_order_relaxed);
    atomic_store_explicit(&r->state, (e << 1) | 1, memory_order_relaxed);
    /* Store-load fence: the announcement must be visible before any shared read
     * below; pairs with the acquire loads of `state` in nkc_ebr_advance. */
    atomic_thread_fence(memory_order_seq_cst);
}

void nkc_ebr_exit(void)
{
    struct record *r = self;
    if (--r->depth != 0)
        return;
    /* release: every read inside the section happens before the record says
     * "left"; pairs with the acquire in nkc_ebr_advance. */
    atomic_store_explicit(&r->state, 0, memory_order_release);
}

uint64_t nkc_ebr_epoch(void)
{
    return atomic_load_explicit(&global_epoch, memory_order_seq_cst);
}

uint64_t nkc_ebr_advance(void)
{
    uint64_t e = atomic_load_explicit(&global_epoch, memory_order_seq_cst);
    for (struct record *r = atomic_load_explicit(&records, memory_order_acquire); r; r = r->next) {
        uint64_t s = atomic_load_explicit(&r->state, memory_order_acquire);
        if ((s & 1) && (s >> 1) != e)
            return e;
    }
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_compare_exchange_strong_explicit(&global_epoch, &e, e + 1, memory_order_seq_cst,
                                                memory_order_seq_cst))
        return e + 1;
    return e; /* someone else advanced it: e now holds the newer value */
}

int nkc_ebr_safe(uint64_t retired, uint64_t now)
{
    return now >= retired + 2;
}

void nkc_ebr_synchronize(void)
{
    uint64_t start = nkc_ebr_epoch();
    int64_t backoff_us = 10;
    while (!nkc_ebr_safe(start, nkc_ebr_advance())) {
        struct timespec ts = {0, backoff_us * 1000};
        nanosleep(&ts, NULL);
        if (backoff_us < 1000)
            backoff_us *= 2;
    }
}

unsigned nkc_thread_slot(void)
{
    struct record *r = self;
    if (NKC_UNLIKELY(!r))
        r = acquire_record();
    return r->slot;
}
