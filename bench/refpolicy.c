/*
 * Reference policies (see refpolicy.h). All four share one key -> slot map and one
 * pool of list nodes indexed by uint32; a list's head is its newest end. Sizes are
 * entry counts. Each policy follows its paper's description; where a paper leaves
 * a choice open, the comment at the policy says which one this file makes.
 */
#include "refpolicy.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

enum { SEG_WINDOW, SEG_PROBATION, SEG_PROTECTED }; /* W-TinyLFU */
enum { SEG_SMALL, SEG_MAIN };                      /* S3-FIFO */

struct rnode {
    uint64_t key;
    uint32_t prev; /* toward the head (newer) */
    uint32_t next; /* toward the tail (older) */
    uint8_t freq;  /* S3-FIFO frequency, SIEVE visited bit */
    uint8_t seg;
};

struct rlist {
    uint32_t head, tail;
    uint64_t size;
};

/* Open addressing with linear probing and backward-shift deletion. */
struct rmap {
    uint64_t *keys;
    uint32_t *vals; /* NIL marks an empty slot */
    uint64_t mask;
};

/* Count-min sketch of 4-bit counters (held in bytes, saturating at 15) with a
 * doorkeeper Bloom filter in front and a reset that halves every counter. */
struct rsketch {
    uint8_t *cnt;        /* SKETCH_ROWS rows of width counters */
    uint64_t width_mask;
    uint64_t *door;      /* doorkeeper bits */
    uint64_t door_mask;  /* number of doorkeeper bits - 1 */
    uint64_t additions, sample;
};

#define SKETCH_ROWS 4

struct nkb_ref {
    nkb_ref_kind_t kind;
    uint64_t cap;
    struct rmap map;
    struct rnode *nodes;
    uint32_t *free_slots;
    uint64_t n_free;
    struct rlist lists[3];
    uint32_t hand;              /* SIEVE */
    uint64_t small_cap, main_cap; /* S3-FIFO */
    uint64_t *ghost;            /* S3-FIFO ghost ring of keys */
    uint64_t ghost_cap, ghost_pos;
    struct rmap ghost_map;      /* key -> ring position */
    uint64_t window_cap, protected_cap; /* W-TinyLFU; main_cap shared */
    struct rsketch sketch;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* ---------------------------------------------------------------- map */

static int map_init(struct rmap *m, uint64_t entries)
{
    uint64_t slots = pow2_at_least(entries * 2 + 2);
    m->keys = malloc(slots * sizeof *m->keys);
    m->vals = malloc(slots * sizeof *m->vals);
    if (!m->keys || !m->vals)
        return -1;
    memset(m->vals, 0xff, slots * sizeof *m->vals);
    m->mask = slots - 1;
    return 0;
}

static void map_free(struct rmap *m)
{
    free(m->keys);
    free(m->vals);
}

static uint64_t map_slot(const struct rmap *m, uint64_t key)
{
    uint64_t i = mix64(key) & m->mask;
    while (m->vals[i] != NIL && m->keys[i] != key)
        i = (i + 1) & m->mask;
    return i;
}

static uint32_t map_get(const struct rmap *m, uint64_t key)
{
    return m->vals[map_slot(m, key)];
}

static void map_put(struct rmap *m, uint64_t key, uint32_t val)
{
    uint64_t i = map_slot(m, key);
    m->keys[i] = key;
    m->vals[i] = val;
}

static void map_del(struct rmap *m, uint64_t key)
{
    uint64_t i = map_slot(m, key);
    if (m->vals[i] == NIL)
        return;
    for (uint64_t j = (i + 1) & m->mask; m->vals[j] != NIL; j = (j + 1) & m->mask) {
        uint64_t home = mix64(m->keys[j]) & m->mask;
        /* move j back into the hole at i unless its home lies in (i, j] */
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->vals[i] = NIL;
}

/* ---------------------------------------------------------------- lists */

static void list_init(struct rlist *l)
{
    l->head = l->tail = NIL;
    l->size = 0;
}

static void list_push_head(nkb_ref_t *r, struct rlist *l, uint32_t i)
{
    struct rnode *n = &r->nodes[i];
    n->prev = NIL;
    n->next = l->head;
    if (l->head != NIL)
        r->nodes[l->head].prev = i;
    else
        l->tail = i;
    l->head = i;
    l->size++;
}

static void list_unlink(nkb_ref_t *r, struct rlist *l, uint32_t i)
{
    struct rnode *n = &r->nodes[i];
    if (n->prev != NIL)
        r->nodes[n->prev].next = n->next;
    else
        l->head = n->next;
    if (n->next != NIL)
        r->nodes[n->next].prev = n->prev;
    else
        l->tail = n->prev;
    l->size--;
}

/* A new node for key, in the map but on no list. */
static uint32_t node_new(nkb_ref_t *r, uint64_t key)
{
    uint32_t i = r->free_slots[--r->n_free];
    r->nodes[i].key = key;
    r->nodes[i].freq = 0;
    map_put(&r->map, key, i);
    return i;
}

/* Unlinks node i from list l, drops it from the map and frees its slot. */
static void node_evict(nkb_ref_t *r, struct rlist *l, uint32_t i)
{
    list_unlink(r, l, i);
    map_del(&r->map, r->nodes[i].key);
    r->free_slots[r->n_free++] = i;
}

/* ---------------------------------------------------------------- LRU */

static int lru_access(nkb_ref_t *r, uint64_t key)
{
    struct rlist *l = &r->lists[0];
    uint32_t i = map_get(&r->map, key);
    if (i != NIL) {
        list_unlink(r, l, i);
        list_push_head(r, l, i);
        return 1;
    }
    if (l->size >= r->cap)
        node_evict(r, l, l->tail);
    list_push_head(r, l, node_new(r, key));
    return 0;
}

/* ---------------------------------------------------------------- SIEVE */

/* The hand walks from the tail (oldest) toward the head, clearing visited bits,
 * and evicts the first unvisited node; it keeps its place between evictions. */
static void sieve_evict(nkb_ref_t *r)
{
    struct rlist *l = &r->lists[0];
    uint32_t o = r->hand != NIL ? r->hand : l->tail;
    while (r->nodes[o].freq) {
        r->nodes[o].freq = 0;
        o = r->nodes[o].prev != NIL ? r->nodes[o].prev : l->tail;
    }
    r->hand = r->nodes[o].prev;
    node_evict(r, l, o);
}

static int sieve_access(nkb_ref_t *r, uint64_t key)
{
    struct rlist *l = &r->lists[0];
    uint32_t i = map_get(&r->map, key);
    if (i != NIL) {
        r->nodes[i].freq = 1;
        return 1;
    }
    if (l->size >= r->cap)
        sieve_evict(r);
    list_push_head(r, l, node_new(r, key));
    return 0;
}

/* ---------------------------------------------------------------- S3-FIFO */

static void ghost_add(nkb_ref_t *r, uint64_t key)
{
    if (r->ghost_cap == 0)
        return;
    uint64_t pos = r->ghost_pos;
    if (r->ghost[pos] != UINT64_MAX) {
        uint64_t old = r->ghost[pos];
        if (map_get(&r->ghost_map, old) == (uint32_t)pos)
            map_del(&r->ghost_map, old);
    }
    r->ghost[pos] = key;
    map_put(&r->ghost_map, key, (uint32_t)pos);
    r->ghost_pos = (pos + 1) % r->ghost_cap;
}

/* Returns 1 and forgets key when it is in the ghost. */
static int ghost_take(nkb_ref_t *r, uint64_t key)
{
    if (r->ghost_cap == 0 || map_get(&r->ghost_map, key) == NIL)
        return 0;
    map_del(&r->ghost_map, key);
    return 1;
}

/* Main: FIFO with reinsertion; a reinserted node pays one unit of frequency. */
static void s3_evict_main(nkb_ref_t *r)
{
    struct rlist *m = &r->lists[SEG_MAIN];
    for (;;) {
        uint32_t t = m->tail;
        if (r->nodes[t].freq == 0) {
            node_evict(r, m, t);
            return;
        }
        r->nodes[t].freq--;
        list_unlink(r, m, t);
        list_push_head(r, m, t);
    }
}

/* Small: the tail moves to main when read at least twice while in small (the
 * paper's "freq > 1"), else it leaves for the ghost. Moving may overfill main,
 * which then evicts; either way one entry has left the cache when this returns. */
static void s3_evict_small(nkb_ref_t *r)
{
    struct rlist *s = &r->lists[SEG_SMALL], *m = &r->lists[SEG_MAIN];
    while (s->size > 0) {
        uint32_t t = s->tail;
        if (r->nodes[t].freq <= 1) {
            ghost_add(r, r->nodes[t].key);
            node_evict(r, s, t);
            return;
        }
        list_unlink(r, s, t);
        r->nodes[t].freq = 0;
        r->nodes[t].seg = SEG_MAIN;
        list_push_head(r, m, t);
        if (m->size > r->main_cap) {
            s3_evict_main(r);
            return;
        }
    }
}

static int s3fifo_access(nkb_ref_t *r, uint64_t key)
{
    struct rlist *s = &r->lists[SEG_SMALL], *m = &r->lists[SEG_MAIN];
    uint32_t i = map_get(&r->map, key);
    if (i != NIL) {
        if (r->nodes[i].freq < 3)
            r->nodes[i].freq++;
        return 1;
    }
    while (s->size + m->size >= r->cap) {
        if (s->size >= r->small_cap || m->size == 0)
            s3_evict_small(r);
        else
            s3_evict_main(r);
    }
    i = node_new(r, key);
    if (ghost_take(r, key)) {
        r->nodes[i].seg = SEG_MAIN;
        list_push_head(r, m, i);
    } else {
        r->nodes[i].seg = SEG_SMALL;
        list_push_head(r, s, i);
    }
    return 0;
}

/* ---------------------------------------------------------------- W-TinyLFU */

static int sketch_init(struct rsketch *s, uint64_t cap)
{
    uint64_t width = pow2_at_least(cap < 16 ? 16 : cap);
    uint64_t door_bits = pow2_at_least(width * 8);
    s->cnt = calloc(SKETCH_ROWS * width, 1);
    s->door = calloc(door_bits / 64, sizeof *s->door);
    if (!s->cnt || !s->door)
        return -1;
    s->width_mask = width - 1;
    s->door_mask = door_bits - 1;
    s->additions = 0;
    s->sample = 10 * cap; /* the paper's W = 10 * C */
    return 0;
}

static uint64_t row_hash(uint64_t key, int row)
{
    return mix64(key + 0x9e3779b97f4a7c15ULL * (uint64_t)(row + 1));
}

/* Tests (and with set, sets) the doorkeeper's two bits for key. */
static int door_check(struct rsketch *s, uint64_t key, int set)
{
    uint64_t h = mix64(key ^ 0x5851f42d4c957f2dULL);
    uint64_t a = h & s->door_mask, b = (h >> 32) & s->door_mask;
    int hit = (s->door[a / 64] >> (a % 64) & 1) && (s->door[b / 64] >> (b % 64) & 1);
    if (set) {
        s->door[a / 64] |= 1ULL << (a % 64);
        s->door[b / 64] |= 1ULL << (b % 64);
    }
    return hit;
}

static unsigned sketch_min(const struct rsketch *s, uint64_t key)
{
    unsigned m = 15;
    for (int r = 0; r < SKETCH_ROWS; r++) {
        unsigned c = s->cnt[(uint64_t)r * (s->width_mask + 1) + (row_hash(key, r) & s->width_mask)];
        if (c < m)
            m = c;
    }
    return m;
}

static unsigned sketch_estimate(struct rsketch *s, uint64_t key)
{
    return sketch_min(s, key) + (unsigned)door_check(s, key, 0);
}

static void sketch_reset(struct rsketch *s)
{
    uint64_t n = SKETCH_ROWS * (s->width_mask + 1);
    for (uint64_t i = 0; i < n; i++)
        s->cnt[i] >>= 1;
    memset(s->door, 0, (s->door_mask + 1) / 8);
    s->additions /= 2;
}

/* The first sighting in a sample period only sets the doorkeeper; later ones
 * increment the sketch, conservatively (only the counters at the minimum). */
static void sketch_add(struct rsketch *s, uint64_t key)
{
    if (door_check(s, key, 1)) {
        unsigned m = sketch_min(s, key);
        for (int r = 0; r < SKETCH_ROWS && m < 15; r++) {
            uint8_t *c = &s->cnt[(uint64_t)r * (s->width_mask + 1) + (row_hash(key, r) & s->width_mask)];
            if (*c == m)
                (*c)++;
        }
    }
    if (++s->additions >= s->sample)
        sketch_reset(s);
}

static void tlfu_hit(nkb_ref_t *r, uint32_t i)
{
    struct rnode *n = &r->nodes[i];
    struct rlist *prob = &r->lists[SEG_PROBATION], *prot = &r->lists[SEG_PROTECTED];
    list_unlink(r, &r->lists[n->seg], i);
    if (n->seg == SEG_PROBATION) {
        n->seg = SEG_PROTECTED;
        list_push_head(r, prot, i);
        if (prot->size > r->protected_cap) {
            uint32_t d = prot->tail;
            list_unlink(r, prot, d);
            r->nodes[d].seg = SEG_PROBATION;
            list_push_head(r, prob, d);
        }
        return;
    }
    list_push_head(r, &r->lists[n->seg], i);
}

/* The window's LRU entry competes with main's (probation's LRU end first): the
 * newcomer gets in only with a strictly higher estimated frequency. */
static void tlfu_admit(nkb_ref_t *r, uint32_t cand)
{
    struct rlist *prob = &r->lists[SEG_PROBATION], *prot = &r->lists[SEG_PROTECTED];
    if (prob->size + prot->size < r->main_cap) {
        r->nodes[cand].seg = SEG_PROBATION;
        list_push_head(r, prob, cand);
        return;
    }
    if (r->main_cap == 0) {
        r->free_slots[r->n_free++] = cand;
        map_del(&r->map, r->nodes[cand].key);
        return;
    }
    struct rlist *vl = prob->size ? prob : prot;
    uint32_t victim = vl->tail;
    if (sketch_estimate(&r->sketch, r->nodes[cand].key) >
        sketch_estimate(&r->sketch, r->nodes[victim].key)) {
        node_evict(r, vl, victim);
        r->nodes[cand].seg = SEG_PROBATION;
        list_push_head(r, prob, cand);
    } else {
        map_del(&r->map, r->nodes[cand].key);
        r->free_slots[r->n_free++] = cand;
    }
}

static int tlfu_access(nkb_ref_t *r, uint64_t key)
{
    struct rlist *w = &r->lists[SEG_WINDOW];
    sketch_add(&r->sketch, key);
    uint32_t i = map_get(&r->map, key);
    if (i != NIL) {
        tlfu_hit(r, i);
        return 1;
    }
    i = node_new(r, key);
    r->nodes[i].seg = SEG_WINDOW;
    list_push_head(r, w, i);
    if (w->size > r->window_cap) {
        uint32_t cand = w->tail;
        list_unlink(r, w, cand);
        tlfu_admit(r, cand);
    }
    return 0;
}

/* ---------------------------------------------------------------- common */

static const char *const names[NKB_REF_COUNT] = { "LRU", "S3-FIFO", "SIEVE", "W-TinyLFU" };
static const char *const keys[NKB_REF_COUNT] = { "lru", "s3fifo", "sieve", "wtinylfu" };

const char *nkb_ref_name(nkb_ref_kind_t kind)
{
    return (unsigned)kind < NKB_REF_COUNT ? names[kind] : "?";
}

const char *nkb_ref_key(nkb_ref_kind_t kind)
{
    return (unsigned)kind < NKB_REF_COUNT ? keys[kind] : "?";
}

static int sizes_init(nkb_ref_t *r)
{
    uint64_t cap = r->cap;
    if (r->kind == NKB_REF_S3FIFO) {
        r->small_cap = cap / 10 ? cap / 10 : 1;
        r->main_cap = cap - r->small_cap;
        r->ghost_cap = r->main_cap; /* the ghost remembers as many keys as main holds */
        if (r->ghost_cap == 0)
            return 0;
        r->ghost = malloc(r->ghost_cap * sizeof *r->ghost);
        if (!r->ghost || map_init(&r->ghost_map, r->ghost_cap) != 0)
            return -1;
        memset(r->ghost, 0xff, r->ghost_cap * sizeof *r->ghost);
    } else if (r->kind == NKB_REF_WTINYLFU) {
        r->window_cap = cap / 100 ? cap / 100 : 1;
        r->main_cap = cap - r->window_cap;
        r->protected_cap = r->main_cap * 8 / 10;
        return sketch_init(&r->sketch, cap);
    }
    return 0;
}

nkb_ref_t *nkb_ref_create(nkb_ref_kind_t kind, uint64_t capacity)
{
    if ((unsigned)kind >= NKB_REF_COUNT || capacity == 0 || capacity >= NIL / 2)
        return NULL;
    nkb_ref_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = kind;
    r->cap = capacity;
    r->hand = NIL;
    for (int i = 0; i < 3; i++)
        list_init(&r->lists[i]);
    r->nodes = malloc((capacity + 1) * sizeof *r->nodes);
    r->free_slots = malloc((capacity + 1) * sizeof *r->free_slots);
    if (!r->nodes || !r->free_slots || map_init(&r->map, capacity + 1) != 0 ||
        sizes_init(r) != 0) {
        nkb_ref_destroy(r);
        return NULL;
    }
    for (uint64_t i = 0; i <= capacity; i++)
        r->free_slots[i] = (uint32_t)(capacity - i);
    r->n_free = capacity + 1;
    return r;
}

int nkb_ref_access(nkb_ref_t *r, uint64_t key)
{
    switch (r->kind) {
    case NKB_REF_LRU:
        return lru_access(r, key);
    case NKB_REF_S3FIFO:
        return s3fifo_access(r, key);
    case NKB_REF_SIEVE:
        return sieve_access(r, key);
    case NKB_REF_WTINYLFU:
        return tlfu_access(r, key);
    default:
        return 0;
    }
}

void nkb_ref_destroy(nkb_ref_t *r)
{
    if (!r)
        return;
    map_free(&r->map);
    if (r->ghost_cap)
        map_free(&r->ghost_map);
    free(r->ghost);
    free(r->sketch.cnt);
    free(r->sketch.door);
    free(r->nodes);
    free(r->free_slots);
    free(r);
}
