/*
 * The only place that touches pthreads, atomics and clocks directly. Everything
 * here is a thin, documented wrapper: a failing mutex call is a programming error
 * (it aborts in every build), never an I/O condition.
 */
#ifndef NKC_SYNC_H
#define NKC_SYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define NKC_CACHELINE 64
#define NKC_ALIGNED __attribute__((aligned(NKC_CACHELINE)))
#define NKC_LIKELY(x) __builtin_expect(!!(x), 1)
#define NKC_UNLIKELY(x) __builtin_expect(!!(x), 0)

typedef pthread_mutex_t nkc_mutex_t;
typedef pthread_cond_t nkc_cond_t;

/* Debug builds (no NDEBUG) use error-checking mutexes: unlocking a mutex this
 * thread does not hold, or locking one twice, aborts instead of corrupting. */
static inline void nkc_mutex_init(nkc_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
#ifndef NDEBUG
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
#endif
    if (pthread_mutex_init(m, &a) != 0)
        abort();
    pthread_mutexattr_destroy(&a);
}
static inline void nkc_mutex_destroy(nkc_mutex_t *m) { pthread_mutex_destroy(m); }
static inline void nkc_mutex_lock(nkc_mutex_t *m)
{
    if (pthread_mutex_lock(m) != 0)
        abort();
}
static inline void nkc_mutex_unlock(nkc_mutex_t *m)
{
    if (pthread_mutex_unlock(m) != 0)
        abort();
}

/* Condition variables run on CLOCK_MONOTONIC so a wall-clock jump cannot stretch a wait. */
static inline void nkc_cond_init(nkc_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (pthread_cond_init(cv, &a) != 0)
        abort();
    pthread_condattr_destroy(&a);
}
static inline void nkc_cond_destroy(nkc_cond_t *cv) { pthread_cond_destroy(cv); }
static inline void nkc_cond_wait(nkc_cond_t *cv, nkc_mutex_t *m) { pthread_cond_wait(cv, m); }
static inline void nkc_cond_broadcast(nkc_cond_t *cv) { pthread_cond_broadcast(cv); }
static inline void nkc_cond_signal(nkc_cond_t *cv) { pthread_cond_signal(cv); }

/* Monotonic nanoseconds (precise; for deadlines and latency). */
static inline int64_t nkc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Monotonic milliseconds from the coarse clock: a few ns per call, resolution one
 * kernel tick (1-4 ms). Used for TTLs on the hit path; an entry may be served up to
 * one tick past its deadline, never longer. */
static inline int64_t nkc_now_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the monotonic deadline (ns) or a signal; returns non-zero on timeout. */
static inline int nkc_cond_wait_until(nkc_cond_t *cv, nkc_mutex_t *m, int64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    return pthread_cond_timedwait(cv, m, &ts) != 0;
}

static inline void nkc_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* splitmix64: a fast, well-mixed step for per-thread pseudo-random numbers
 * (jitter, sampling). Not for anything an attacker should not predict. */
static inline uint64_t nkc_mix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Starts a library thread with every signal blocked, so the host's handlers never
 * run on it. Returns pthread_create's result. */
int nkc_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* A uniform double in [0, 1), and 64 random bits, from the calling thread's own
 * generator (seeded from its address and the clock; not cryptographic). */
double nkc_rand_unit(void);
uint64_t nkc_rand_u64(void);

#endif /* NKC_SYNC_H */
