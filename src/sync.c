/* Thread start-up and per-thread pseudo-random numbers for jitter and lease tokens
 * (see sync.h). */
#include "sync.h"

#include <signal.h>

static _Thread_local uint64_t rng_state;

uint64_t nkc_rand_u64(void)
{
    if (NKC_UNLIKELY(rng_state == 0)) {
        uint64_t s = (uint64_t)(uintptr_t)&rng_state ^ (uint64_t)nkc_now_ns();
        rng_state = nkc_mix64(&s) | 1;
    }
    return nkc_mix64(&rng_state);
}

double nkc_rand_unit(void)
{
    return (double)(nkc_rand_u64() >> 11) * 0x1.0p-53;
}

int nkc_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
