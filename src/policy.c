/*
 * The L1 eviction policy: an adaptive W-TinyLFU built from CLOCK queues (see
 * docs/POLICY.md). New entries enter a window queue; the window's leaver must beat
 * main's CLOCK victim on estimated frequency to stay. The window's share adapts to
 * ghost hits. Invariants: every resident node is on exactly one queue, and the
 * queues' entry and charge totals equal the stripe's. All under the stripe lock.
 */
#include "policy.h"

#include <stdlib.h>
#include <string.h>

enum { Q_WINDOW, Q_PROBATION, Q_PROTECTED, Q_COUNT };

/* Tuning, each checked on the traces in docs/POLICY.md (a broad optimum, not a
 * knife edge: halving or doubling ADAPT_STEP or GHOST_DEPTH_DIV keeps the bar). */
#define SHARE_ONE 65536u       /* the window's share of the budget, in 1/SHARE_ONE */
#define INITIAL_SHARE 655u     /* 1%: start as W-TinyLFU does */
#define MAX_SHARE 61440u       /* 15/16: main always keeps some room, so its ghost
                                * can still argue for shrinking the window */
#define PROTECTED_SHARE 52429u /* protected may hold 80% of main */
#define ADAPT_STEP (SHARE_ONE / 1024) /* the window moves by 1/1024 of the budget a ghost hit */
#define GHOST_DEPTH_DIV 16     /* a ghost hit counts within capacity/16 exits */
#define SKETCH_WIDTH_MULT 4    /* counters a sketch row holds per entry of capacity */
#define ADMIT_MARGIN 1         /* a newcomer must beat the victim by more than this */
#define SKETCH_ROWS 4
#define COUNTER_MAX 15         /* 4-bit counters */
#define GHOST_WAYS 8           /* ghost slots per bucket */

struct queue {
    struct nkc_pnode head; /* sentinel of a circular list; head.next is the newest */
    uint64_t entries, bytes;
};

/* Keys that recently left one queue: buckets of GHOST_WAYS slots holding the
 * queue's exit count at departure << 32 | fingerprint; 0 is an empty slot. */
struct ghost {
    uint64_t *slot;
    uint64_t mask;   /* buckets - 1 */
    uint32_t exits;  /* nodes that have left the queue (wraps) */
};

struct nkc_policy {
    struct queue q[Q_COUNT];
    uint64_t max_entries, max_bytes;
    uint32_t share;         /* window target as a fraction of SHARE_ONE */
    uint64_t *sketch;       /* SKETCH_ROWS rows, 16 four-bit counters a word */
    uint64_t sketch_mask;   /* counters a row - 1 */
    uint64_t additions, sample;
    struct ghost ghost[2];  /* keys that left the window / main recently */
    uint32_t depth;         /* a ghost hit counts when it left at most this many exits ago */
    uint64_t sized_for;     /* the entry count the side tables were sized for */
};

size_t nkc_policy_size(void)
{
    return sizeof(struct nkc_policy);
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* ---------------------------------------------------------------- queues */

static void queue_init(struct queue *q)
{
    q->head.prev = q->head.next = &q->head;
    q->entries = q->bytes = 0;
}

static void queue_push(struct queue *q, struct nkc_pnode *n)
{
    n->prev = &q->head;
    n->next = q->head.next;
    q->head.next->prev = n;
    q->head.next = n;
    q->entries++;
    q->bytes += nkc_node_charge(n);
}

static void queue_unlink(struct queue *q, struct nkc_pnode *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
    q->entries--;
    q->bytes -= nkc_node_charge(n);
}

static struct nkc_pnode *queue_oldest(struct queue *q)
{
    return q->head.prev == &q->head ? NULL : q->head.prev;
}

/* Reads and clears the hits recorded since the hand last passed. The store may
 * lose a concurrent nkc_policy_touch; a lost hit only ages the entry early. */
static unsigned take_freq(struct nkc_pnode *n)
{
    unsigned f = atomic_load_explicit(&n->freq, memory_order_relaxed);
    if (f)
        atomic_store_explicit(&n->freq, 0, memory_order_relaxed);
    return f;
}

/* ---------------------------------------------------------------- sketch */

static uint64_t row_index(uint64_t hash, int row, uint64_t mask)
{
    static const uint64_t mult[SKETCH_ROWS] = {
        0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL,
        0x165667b19e3779f9ULL, 0xd6e8feb86659fd93ULL,
    };
    uint64_t h = (hash ^ (hash >> 29)) * mult[row];
    return (h >> 32) & mask;
}

static unsigned counter_get(const struct nkc_policy *p, int row, uint64_t col)
{
    uint64_t i = (uint64_t)row * (p->sketch_mask + 1) + col;
    return (unsigned)(p->sketch[i / 16] >> (i % 16 * 4)) & 0xf;
}

static void counter_inc(struct nkc_policy *p, int row, uint64_t col)
{
    uint64_t i = (uint64_t)row * (p->sketch_mask + 1) + col;
    p->sketch[i / 16] += 1ULL << (i % 16 * 4);
}

static unsigned sketch_estimate(const struct nkc_policy *p, uint64_t hash)
{
    unsigned m = COUNTER_MAX;
    for (int r = 0; r < SKETCH_ROWS; r++) {
        unsigned c = counter_get(p, r, row_index(hash, r, p->sketch_mask));
        if (c < m)
            m = c;
    }
    return m;
}

/* Halves every counter: frequency ages so that yesterday's favourites can leave. */
static void sketch_age(struct nkc_policy *p)
{
    uint64_t words = SKETCH_ROWS * (p->sketch_mask + 1) / 16;
    for (uint64_t i = 0; i < words; i++)
        p->sketch[i] = (p->sketch[i] >> 1) & 0x7777777777777777ULL;
    p->additions /= 2;
}

/* Conservative update: only the counters at the minimum grow. */
static void sketch_add(struct nkc_policy *p, uint64_t hash, unsigned times)
{
    while (times--) {
        unsigned m = sketch_estimate(p, hash);
        if (m < COUNTER_MAX) {
            for (int r = 0; r < SKETCH_ROWS; r++) {
                uint64_t col = row_index(hash, r, p->sketch_mask);
                if (counter_get(p, r, col) == m)
                    counter_inc(p, r, col);
            }
        }
        if (++p->additions >= p->sample)
            sketch_age(p);
    }
}

/* ---------------------------------------------------------------- ghost */

static uint64_t *ghost_bucket(const struct ghost *g, uint64_t hash)
{
    return &g->slot[((hash >> 40) & g->mask) * GHOST_WAYS];
}

static uint32_t ghost_fp(uint64_t hash)
{
    return (uint32_t)hash | 1u; /* never 0, so a slot of 0 is empty */
}

/* Remembers that hash just left the queue g watches, replacing the same key or
 * else the bucket's oldest slot. */
static void ghost_add(struct ghost *g, uint64_t hash)
{
    uint64_t *b = ghost_bucket(g, hash);
    uint32_t fp = ghost_fp(hash), stamp = ++g->exits, oldest_age = 0;
    unsigned slot = 0;
    for (unsigned i = 0; i < GHOST_WAYS; i++) {
        uint32_t age = stamp - (uint32_t)(b[i] >> 32);
        if (b[i] == 0 || (uint32_t)b[i] == fp) {
            slot = i;
            break;
        }
        if (age > oldest_age) {
            oldest_age = age;
            slot = i;
        }
    }
    b[slot] = (uint64_t)stamp << 32 | fp;
}

/* Forgets hash; returns 1 when it had left the queue at most `depth` exits ago. */
static int ghost_take(struct ghost *g, uint64_t hash, uint32_t depth)
{
    uint64_t *b = ghost_bucket(g, hash);
    uint32_t fp = ghost_fp(hash);
    for (unsigned i = 0; i < GHOST_WAYS; i++) {
        if (b[i] != 0 && (uint32_t)b[i] == fp) {
            uint32_t age = g->exits - (uint32_t)(b[i] >> 32);
            b[i] = 0;
            return age <= depth;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- sizing */

/* The side tables are sized for `entries` resident entries. */
static int tables_alloc(struct nkc_policy *p, uint64_t entries)
{
    uint64_t n = entries < 64 ? 64 : entries;
    uint64_t width = pow2_at_least(n * SKETCH_WIDTH_MULT);
    uint64_t depth = n / GHOST_DEPTH_DIV;
    uint64_t buckets = pow2_at_least(2 * depth / GHOST_WAYS + 1);
    uint64_t *sketch = calloc(SKETCH_ROWS * width / 16, sizeof *sketch);
    uint64_t *gw = calloc(buckets * GHOST_WAYS, sizeof *gw);
    uint64_t *gm = calloc(buckets * GHOST_WAYS, sizeof *gm);
    if (!sketch || !gw || !gm) {
        free(sketch);
        free(gw);
        free(gm);
        return -1;
    }
    nkc_policy_destroy(p);
    p->sketch = sketch;
    p->sketch_mask = width - 1;
    p->additions = 0;
    p->sample = 10 * n;
    p->ghost[0] = (struct ghost){ gw, buckets - 1, 0 };
    p->ghost[1] = (struct ghost){ gm, buckets - 1, 0 };
    p->depth = (uint32_t)(depth < UINT32_MAX / 2 ? depth : UINT32_MAX / 2);
    p->sized_for = entries;
    return 0;
}

int nkc_policy_init(struct nkc_policy *p, uint64_t max_entries, uint64_t max_bytes)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < Q_COUNT; i++)
        queue_init(&p->q[i]);
    p->max_entries = max_entries;
    p->max_bytes = max_bytes;
    p->share = INITIAL_SHARE;
    /* Without an entry bound, start small and grow with the population. */
    return tables_alloc(p, max_entries ? max_entries : 1024);
}

void nkc_policy_destroy(struct nkc_policy *p)
{
    free(p->sketch);
    free(p->ghost[0].slot);
    free(p->ghost[1].slot);
    p->sketch = NULL;
    p->ghost[0].slot = p->ghost[1].slot = NULL;
}

/* ---------------------------------------------------------------- adaptation */

/* A key that left the window a short while ago would have hit in a slightly
 * larger window; one that left main would have hit in a slightly larger main.
 * Each such miss moves the split one small step toward the side that lost it. */
static void adapt(struct nkc_policy *p, int grow_window)
{
    if (grow_window)
        p->share = p->share + ADAPT_STEP > MAX_SHARE ? MAX_SHARE : p->share + ADAPT_STEP;
    else
        p->share = p->share > ADAPT_STEP ? p->share - ADAPT_STEP : 0;
}

void nkc_policy_miss(struct nkc_policy *p, uint64_t hash)
{
    sketch_add(p, hash, 1);
    if (ghost_take(&p->ghost[0], hash, p->depth))
        adapt(p, 1);
    if (ghost_take(&p->ghost[1], hash, p->depth))
        adapt(p, 0);
}

/* ---------------------------------------------------------------- insert/remove */

void nkc_policy_insert(struct nkc_policy *p, struct nkc_pnode *n)
{
    atomic_store_explicit(&n->freq, 0, memory_order_relaxed);
    n->queue = Q_WINDOW;
    queue_push(&p->q[Q_WINDOW], n);
    uint64_t total = nkc_policy_entries(p);
    if (!p->max_entries && total > 2 * p->sized_for)
        (void)tables_alloc(p, total); /* on failure, keep the smaller tables */
}

void nkc_policy_remove(struct nkc_policy *p, struct nkc_pnode *n)
{
    queue_unlink(&p->q[n->queue], n);
}

/* ---------------------------------------------------------------- eviction */

static uint64_t total_entries(const struct nkc_policy *p)
{
    return p->q[Q_WINDOW].entries + p->q[Q_PROBATION].entries + p->q[Q_PROTECTED].entries;
}

static uint64_t total_bytes(const struct nkc_policy *p)
{
    return p->q[Q_WINDOW].bytes + p->q[Q_PROBATION].bytes + p->q[Q_PROTECTED].bytes;
}

static int over_budget(const struct nkc_policy *p)
{
    return (p->max_entries && total_entries(p) > p->max_entries) ||
           (p->max_bytes && total_bytes(p) > p->max_bytes);
}

/* budget * share / SHARE_ONE without overflow. */
static uint64_t scale(uint64_t budget, uint32_t share)
{
    return (budget >> 16) * share + (((budget & 0xffff) * share) >> 16);
}

static int window_over(const struct nkc_policy *p)
{
    const struct queue *w = &p->q[Q_WINDOW];
    return (p->max_entries && w->entries > scale(p->max_entries, p->share)) ||
           (p->max_bytes && w->bytes > scale(p->max_bytes, p->share));
}

/* Whether main (probation + protected) can take n within its share of the budget. */
static int main_has_room(const struct nkc_policy *p, const struct nkc_pnode *n)
{
    uint64_t e = p->q[Q_PROBATION].entries + p->q[Q_PROTECTED].entries;
    uint64_t b = p->q[Q_PROBATION].bytes + p->q[Q_PROTECTED].bytes;
    return (!p->max_entries || e + 1 <= p->max_entries - scale(p->max_entries, p->share)) &&
           (!p->max_bytes || b + nkc_node_charge(n) <= p->max_bytes - scale(p->max_bytes, p->share));
}

/* Protected may hold PROTECTED_SHARE of main's budget. */
static int protected_over(const struct nkc_policy *p)
{
    const struct queue *t = &p->q[Q_PROTECTED];
    uint32_t s = (uint32_t)(((uint64_t)(SHARE_ONE - p->share) * PROTECTED_SHARE) >> 16);
    return (p->max_entries && t->entries > scale(p->max_entries, s)) ||
           (p->max_bytes && t->bytes > scale(p->max_bytes, s));
}

static void move_to(struct nkc_policy *p, struct nkc_pnode *n, int qi)
{
    queue_unlink(&p->q[n->queue], n);
    n->queue = (uint8_t)qi;
    queue_push(&p->q[qi], n);
}

/* The CLOCK hand of queue qi: moves the oldest nodes that were hit to the front
 * of queue `to` (qi itself, or protected for probation), crediting their hits to
 * the sketch, and returns the first that was not hit, still linked; NULL when qi
 * is empty. A promotion that overfills protected demotes protected's own CLOCK
 * victim to probation's front. Terminates: every move clears a node's hits. */
static struct nkc_pnode *clock_hand(struct nkc_policy *p, int qi, int to)
{
    struct nkc_pnode *n;
    while ((n = queue_oldest(&p->q[qi])) != NULL) {
        unsigned f = take_freq(n);
        if (!f)
            return n;
        sketch_add(p, n->hash, f);
        move_to(p, n, to);
        if (to != qi && protected_over(p))
            move_to(p, clock_hand(p, Q_PROTECTED, Q_PROTECTED), Q_PROBATION);
    }
    return NULL;
}

/* Main's victim, still linked: probation's oldest node not hit since it was last
 * looked at, else protected's. NULL when main is empty. Protected first gives back
 * what it holds beyond its share (the window may have grown), so that entries
 * which stopped being read do not sit there forever. */
static struct nkc_pnode *main_victim(struct nkc_policy *p)
{
    while (protected_over(p))
        move_to(p, clock_hand(p, Q_PROTECTED, Q_PROTECTED), Q_PROBATION);
    struct nkc_pnode *v = clock_hand(p, Q_PROBATION, Q_PROTECTED);
    return v ? v : clock_hand(p, Q_PROTECTED, Q_PROTECTED);
}

static struct nkc_pnode *leave(struct nkc_policy *p, struct nkc_pnode *n)
{
    queue_unlink(&p->q[n->queue], n);
    ghost_add(&p->ghost[n->queue != Q_WINDOW], n->hash);
    return n;
}

/* The window's leaver c either moves to probation (room, or it out-ranks main's
 * victim) or leaves the cache. Returns the node that left, or NULL when c moved
 * into room. */
static struct nkc_pnode *window_leave(struct nkc_policy *p, struct nkc_pnode *c)
{
    if (main_has_room(p, c)) {
        move_to(p, c, Q_PROBATION);
        return NULL;
    }
    struct nkc_pnode *v = main_victim(p);
    if (!v || sketch_estimate(p, c->hash) <= sketch_estimate(p, v->hash) + ADMIT_MARGIN)
        return leave(p, c);
    leave(p, v);
    move_to(p, c, Q_PROBATION);
    return v;
}

struct nkc_pnode *nkc_policy_evict(struct nkc_policy *p)
{
    while (over_budget(p)) {
        struct nkc_pnode *gone;
        int main_empty = !p->q[Q_PROBATION].entries && !p->q[Q_PROTECTED].entries;
        if (p->q[Q_WINDOW].entries && (window_over(p) || main_empty)) {
            gone = window_leave(p, clock_hand(p, Q_WINDOW, Q_WINDOW));
        } else {
            gone = leave(p, main_victim(p));
        }
        if (gone)
            return gone;
    }
    return NULL;
}

uint64_t nkc_policy_entries(const struct nkc_policy *p)
{
    return total_entries(p);
}

uint64_t nkc_policy_bytes(const struct nkc_policy *p)
{
    return total_bytes(p);
}
