/*
 * The cache's background worker pool: a fixed number of threads and a bounded
 * FIFO of jobs. Threads start with the first submit (a cache whose features never
 * submit starts none). Stopping cancels the jobs still queued (each job's cancel
 * function runs in the stopping thread) and joins every thread after its current
 * job.
 */
#ifndef NKC_WORKERS_H
#define NKC_WORKERS_H

#include <stddef.h>

struct nkc_workers;

struct nkc_job {
    void (*run)(void *arg);
    void (*cancel)(void *arg); /* releases arg without running; may be NULL */
    void *arg;
};

/* n threads (1..64) and a queue of at most cap jobs. NULL when out of memory. */
struct nkc_workers *nkc_workers_new(unsigned n, size_t cap);
/* Queues a job: 0, or -1 when the queue is full, the pool is stopping, or no
 * thread could be started (then nothing ran and the caller still owns arg). */
int nkc_workers_submit(struct nkc_workers *w, const struct nkc_job *job);
/* Jobs queued or running now (a snapshot, for stats and tests). */
size_t nkc_workers_pending(struct nkc_workers *w);
/* Cancels queued jobs, waits for running ones and joins the threads; submits fail
 * from then on. w stays valid (other threads may still call submit) until freed. */
void nkc_workers_stop(struct nkc_workers *w);
/* Stops w if needed and frees it. NULL is a no-op. */
void nkc_workers_free(struct nkc_workers *w);

#endif /* NKC_WORKERS_H */
