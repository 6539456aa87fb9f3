/* Per-thread pseudo-random numbers for jitter and lease tokens (see sync.h). */
#include "sync.h"

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
