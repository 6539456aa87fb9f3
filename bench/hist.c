/*
 * Latency histograms, the clock, the load average and the progress line. A
 * histogram is log-linear (exact below 32 ns, then 32 buckets per power of two), so
 * a quantile is off by at most one bucket width (3.2 %); its max is exact. One
 * histogram per thread; merged after the threads are joined.
 */
#include "bench.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

uint64_t nkb_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void nkb_sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* interrupted: sleep the rest */
    }
}

double nkb_loadavg(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double load = -1.0;

    if (f != NULL) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1.0;
        fclose(f);
    }
    return load;
}

static unsigned bucket_of(uint64_t v)
{
    unsigned e;

    if (v < (1u << NKB_HIST_SUB_BITS))
        return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v); /* e >= NKB_HIST_SUB_BITS */
    return ((e - NKB_HIST_SUB_BITS + 1) << NKB_HIST_SUB_BITS) +
           (unsigned)((v >> (e - NKB_HIST_SUB_BITS)) & ((1u << NKB_HIST_SUB_BITS) - 1));
}

/* The midpoint of bucket b. */
static uint64_t value_of(unsigned b)
{
    unsigned row = b >> NKB_HIST_SUB_BITS, sub = b & ((1u << NKB_HIST_SUB_BITS) - 1);
    unsigned shift;

    if (row == 0)
        return sub;
    shift = row - 1;
    return (((uint64_t)1 << NKB_HIST_SUB_BITS) + sub) << shift | (((uint64_t)1 << shift) >> 1);
}

void nkb_hist_add(nkb_hist_t *h, uint64_t ns, uint64_t weight)
{
    h->bucket[bucket_of(ns)] += weight;
    h->count += weight;
    h->max = ns > h->max ? ns : h->max;
}

void nkb_hist_merge(nkb_hist_t *dst, const nkb_hist_t *src)
{
    for (unsigned i = 0; i < NKB_HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->max = src->max > dst->max ? src->max : dst->max;
}

uint64_t nkb_hist_quantile(const nkb_hist_t *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    for (unsigned i = 0; i < NKB_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen > rank)
            return value_of(i);
    }
    return value_of(NKB_HIST_BUCKETS - 1);
}

/* A bucket's midpoint can lie above the largest value recorded in it: a quantile
 * is capped at the exact max, so no column reads p99 > max. */
static uint64_t capped(const nkb_hist_t *h, double q)
{
    uint64_t v = nkb_hist_quantile(h, q);

    return v < h->max ? v : h->max;
}

nkb_pct_t nkb_hist_pct(const nkb_hist_t *h)
{
    return (nkb_pct_t){.p50 = capped(h, 0.50), .p90 = capped(h, 0.90), .p99 = capped(h, 0.99),
                       .p999 = capped(h, 0.999), .max = h->max};
}

/* ---------------------------------------------------------------- progress */

static int progress_drawn;

void nkb_progress(const char *mode, const char *fmt, ...)
{
    va_list ap;

    /* a log or a pipe would keep every rewrite: the line is for people watching */
    if (!isatty(STDERR_FILENO))
        return;
    fprintf(stderr, "\r\033[Knakkucache-bench %s: ", mode);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    progress_drawn = 1;
}

void nkb_progress_done(void)
{
    if (progress_drawn)
        fprintf(stderr, "\r\033[K");
    progress_drawn = 0;
}
