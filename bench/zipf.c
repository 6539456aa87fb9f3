/*
 * The workload's keys: a seedable generator, the zipf distribution, per-thread key
 * index sequences (generated up front so the generator's cost stays out of the
 * measured loops) and the table of key strings. The same sequences are written to
 * a file for the Caffeine program, so both sides look up identical keys.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A prime above any --keys value: rank * SCATTER mod n is then a bijection. */
#define SCATTER 2654435761u
#define MAX_KEYS 1000000000u

uint64_t nkb_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double unit(uint64_t *state)
{
    return (double)(nkb_rng_next(state) >> 11) * 0x1.0p-53;
}

int nkb_zipf_init(nkb_zipf_t *z, uint64_t n, double theta)
{
    double zeta2;

    if (n < 2 || !(theta > 0.0 && theta < 1.0))
        return -1;
    z->n = n;
    z->theta = theta;
    z->zetan = 0;
    for (uint64_t i = n; i >= 1; i--) /* smallest terms first: less rounding */
        z->zetan += 1.0 / pow((double)i, theta);
    z->half_pow_theta = pow(0.5, theta);
    zeta2 = 1.0 + z->half_pow_theta;
    z->alpha = 1.0 / (1.0 - theta);
    z->eta = (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - zeta2 / z->zetan);
    return 0;
}

uint64_t nkb_zipf_next(const nkb_zipf_t *z, uint64_t *rng)
{
    double u = unit(rng), uz = u * z->zetan;
    uint64_t r;

    if (uz < 1.0)
        return 0;
    if (uz < 1.0 + z->half_pow_theta)
        return 1;
    r = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1.0, z->alpha));
    return r < z->n ? r : z->n - 1;
}

/* Hotspot (YCSB's): ranks [0, hot) get hot_prob of the draws, uniformly; the rest
 * spread uniformly over the other ranks. */
static uint64_t hotspot_next(const nkb_opts_t *o, uint64_t *rng)
{
    uint64_t hot = (uint64_t)(o->hot_fraction * o->keys);

    if (o->keys < 2)
        return 0;
    hot = hot < 1 ? 1 : hot >= o->keys ? o->keys - 1 : hot;
    if (unit(rng) < o->hot_prob)
        return nkb_rng_next(rng) % hot;
    return hot + nkb_rng_next(rng) % (o->keys - hot);
}

uint32_t *nkb_seq_new(const nkb_opts_t *o, unsigned thread, size_t len)
{
    uint64_t rng = o->seed ^ ((uint64_t)(thread + 1) * 0xd1b54a32d192ed03u);
    uint64_t wrng = rng ^ 0x5851f42d4c957f2du;
    nkb_zipf_t z;
    uint32_t *seq;

    if (o->keys == 0 || o->keys > MAX_KEYS)
        return NULL;
    if (o->dist == NKB_DIST_ZIPF && nkb_zipf_init(&z, o->keys, o->theta) != 0)
        return NULL;
    seq = malloc(len * sizeof *seq);
    if (seq == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        uint64_t r = o->dist == NKB_DIST_ZIPF      ? nkb_zipf_next(&z, &rng)
                     : o->dist == NKB_DIST_HOTSPOT ? hotspot_next(o, &rng)
                                                   : nkb_rng_next(&rng) % o->keys;
        seq[i] = (uint32_t)(r * SCATTER % o->keys);
        /* writes from their own stream: the same keys whatever the mix */
        if (o->read_ratio < 1.0 && unit(&wrng) >= o->read_ratio)
            seq[i] |= NKB_SEQ_WRITE;
    }
    return seq;
}

const char *nkb_dist_name(const nkb_opts_t *o, char *buf, size_t len)
{
    if (o->dist == NKB_DIST_ZIPF)
        snprintf(buf, len, "zipf(%.2f)", o->theta);
    else if (o->dist == NKB_DIST_HOTSPOT)
        snprintf(buf, len, "hotspot(%.2f of the keys get %.2f of the operations)",
                 o->hot_fraction, o->hot_prob);
    else
        snprintf(buf, len, "uniform");
    return buf;
}

static size_t digits(uint32_t v)
{
    size_t d = 1;

    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

int nkb_keys_init(nkb_keys_t *k, const nkb_opts_t *o)
{
    size_t width;
    char tmp[64];

    memset(k, 0, sizeof *k);
    if (o->keys == 0 || o->keys > MAX_KEYS || o->key_size >= sizeof tmp ||
        o->key_size < 4 + digits(o->keys - 1)) {
        fprintf(stderr, "nakkucache-bench: --key-size %zu cannot hold %u distinct keys "
                        "\"key:NNN\" (need %zu to %zu)\n",
                o->key_size, o->keys, 4 + digits(o->keys ? o->keys - 1 : 0), sizeof tmp - 1);
        return -1;
    }
    width = o->key_size - 4;
    k->klen = o->key_size;
    k->stride = (o->key_size + 7) & ~(size_t)7;
    k->n = o->keys;
    k->bytes = malloc((size_t)k->n * k->stride);
    if (k->bytes == NULL) {
        fprintf(stderr, "nakkucache-bench: out of memory for %u keys\n", o->keys);
        return -1;
    }
    for (uint32_t i = 0; i < k->n; i++) {
        snprintf(tmp, sizeof tmp, "key:%0*u", (int)width, i);
        memcpy(k->bytes + (size_t)i * k->stride, tmp, k->klen);
    }
    return 0;
}

void nkb_keys_free(nkb_keys_t *k)
{
    free(k->bytes);
    k->bytes = NULL;
}
