/*
 * Worker pool (see workers.h). One mutex guards the ring, the counts and the
 * thread list; jobs run without it. Threads are started lazily, one per submit
 * until n exist, so an idle cache owns no thread.
 */
#include "workers.h"

#include "sync.h"

#include <stdlib.h>

struct nkc_workers {
    nkc_mutex_t lock; /* protects everything below */
    nkc_cond_t cv;    /* a job was queued, or stopping was set */
    struct nkc_job *ring;
    size_t cap, head, n_queued, n_running;
    pthread_t *threads;
    unsigned n_max, n_started, n_idle;
    int stopping;
};

static void *worker_main(void *arg)
{
    struct nkc_workers *w = arg;
    nkc_mutex_lock(&w->lock);
    for (;;) {
        while (!w->n_queued && !w->stopping) {
            w->n_idle++;
            nkc_cond_wait(&w->cv, &w->lock);
            w->n_idle--;
        }
        if (w->stopping)
            break;
        struct nkc_job job = w->ring[w->head];
        w->head = (w->head + 1) % w->cap;
        w->n_queued--;
        w->n_running++;
        nkc_mutex_unlock(&w->lock);
        job.run(job.arg);
        nkc_mutex_lock(&w->lock);
        w->n_running--;
    }
    nkc_mutex_unlock(&w->lock);
    return NULL;
}

struct nkc_workers *nkc_workers_new(unsigned n, size_t cap)
{
    struct nkc_workers *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->ring = calloc(cap ? cap : 1, sizeof(*w->ring));
    w->threads = calloc(n ? n : 1, sizeof(*w->threads));
    if (!w->ring || !w->threads) {
        free(w->ring);
        free(w->threads);
        free(w);
        return NULL;
    }
    w->cap = cap ? cap : 1;
    w->n_max = n ? n : 1;
    nkc_mutex_init(&w->lock);
    nkc_cond_init(&w->cv);
    return w;
}

int nkc_workers_submit(struct nkc_workers *w, const struct nkc_job *job)
{
    int r = -1;
    nkc_mutex_lock(&w->lock);
    if (w->stopping || w->n_queued == w->cap)
        goto out;
    /* a thread per submit while none is idle, up to n_max */
    if (w->n_idle <= w->n_queued && w->n_started < w->n_max &&
        nkc_thread_start(&w->threads[w->n_started], worker_main, w) == 0)
        w->n_started++;
    if (w->n_started == 0)
        goto out;
    w->ring[(w->head + w->n_queued) % w->cap] = *job;
    w->n_queued++;
    nkc_cond_signal(&w->cv);
    r = 0;
out:
    nkc_mutex_unlock(&w->lock);
    return r;
}

size_t nkc_workers_pending(struct nkc_workers *w)
{
    nkc_mutex_lock(&w->lock);
    size_t n = w->n_queued + w->n_running;
    nkc_mutex_unlock(&w->lock);
    return n;
}

void nkc_workers_stop(struct nkc_workers *w)
{
    nkc_mutex_lock(&w->lock);
    if (w->stopping) {
        nkc_mutex_unlock(&w->lock);
        return;
    }
    w->stopping = 1;
    nkc_cond_broadcast(&w->cv);
    /* take the queue: its jobs are cancelled, not run */
    size_t n = w->n_queued, head = w->head;
    w->n_queued = 0;
    unsigned started = w->n_started;
    nkc_mutex_unlock(&w->lock);
    for (size_t i = 0; i < n; i++) {
        struct nkc_job *job = &w->ring[(head + i) % w->cap];
        if (job->cancel)
            job->cancel(job->arg);
    }
    /* n_started cannot grow once stopping is set */
    for (unsigned i = 0; i < started; i++)
        pthread_join(w->threads[i], NULL);
}

void nkc_workers_free(struct nkc_workers *w)
{
    if (!w)
        return;
    nkc_workers_stop(w);
    nkc_cond_destroy(&w->cv);
    nkc_mutex_destroy(&w->lock);
    free(w->ring);
    free(w->threads);
    free(w);
}
