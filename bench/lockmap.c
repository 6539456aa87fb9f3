/*
 * The baseline the library is measured against: the map a C programmer writes in
 * an afternoon. Chained buckets, one allocation per entry (header + key + value),
 * XXH3 of the key bytes (inlined, as in the library) computed outside the lock, one global mutex that guards
 * every bucket and entry; a reader copies the value out while holding it.
 */
#include "bench.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL /* as the library does: the hash inlines into the lookup */
#include <xxhash.h>

struct entry {
    struct entry *next;
    uint64_t hash;
    uint32_t klen, vlen;
    unsigned char data[]; /* key then value */
};

struct nkb_lockmap {
    pthread_mutex_t lock; /* guards buckets and every entry reachable from them */
    struct entry **buckets;
    size_t mask;
};

nkb_lockmap_t *nkb_lockmap_new(size_t n_buckets)
{
    nkb_lockmap_t *m = calloc(1, sizeof *m);
    size_t n = 1;

    while (n < n_buckets)
        n <<= 1;
    if (m == NULL || (m->buckets = calloc(n, sizeof *m->buckets)) == NULL) {
        free(m);
        return NULL;
    }
    m->mask = n - 1;
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void nkb_lockmap_free(nkb_lockmap_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i <= m->mask; i++) {
        struct entry *e = m->buckets[i], *next;

        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&m->lock);
    free(m->buckets);
    free(m);
}

/* The slot that points at key's entry (or the bucket's terminating NULL). Lock held. */
static struct entry **find(nkb_lockmap_t *m, uint64_t h, const void *key, size_t klen)
{
    struct entry **p = &m->buckets[h & m->mask];

    for (; *p != NULL; p = &(*p)->next) {
        if ((*p)->hash == h && (*p)->klen == klen && memcmp((*p)->data, key, klen) == 0)
            break;
    }
    return p;
}

int nkb_lockmap_put(nkb_lockmap_t *m, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
    uint64_t h = XXH3_64bits(key, klen);
    struct entry *e = malloc(sizeof *e + klen + vlen), **slot;

    if (e == NULL)
        return -1;
    e->hash = h;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    memcpy(e->data, key, klen);
    memcpy(e->data + klen, val, vlen);
    pthread_mutex_lock(&m->lock);
    slot = find(m, h, key, klen);
    e->next = *slot == NULL ? NULL : (*slot)->next;
    free(*slot);
    *slot = e;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

int nkb_lockmap_get_copy(nkb_lockmap_t *m, const void *key, size_t klen, void *buf,
                         size_t cap, size_t *len)
{
    uint64_t h = XXH3_64bits(key, klen);
    struct entry *e;
    int hit = 0;

    pthread_mutex_lock(&m->lock);
    e = *find(m, h, key, klen);
    if (e != NULL) {
        *len = e->vlen;
        hit = e->vlen <= cap;
        if (hit)
            memcpy(buf, e->data + e->klen, e->vlen);
    }
    pthread_mutex_unlock(&m->lock);
    return hit;
}

void nkb_lockmap_del(nkb_lockmap_t *m, const void *key, size_t klen)
{
    uint64_t h = XXH3_64bits(key, klen);
    struct entry **slot, *gone;

    pthread_mutex_lock(&m->lock);
    slot = find(m, h, key, klen);
    gone = *slot;
    if (gone != NULL)
        *slot = gone->next;
    pthread_mutex_unlock(&m->lock);
    free(gone);
}
