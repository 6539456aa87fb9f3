/*
 * nakkucache-bench trace: replays real key traces (gzip'd text, one decimal key a
 * line, every request a read, a miss inserts) through the library and through the
 * reference policies of refpolicy.c at cache sizes given as percentages of each
 * trace's unique keys, and checks the bar of docs/POLICY.md at every point: within
 * BAR_BEST of the best of LRU, S3-FIFO, SIEVE and W-TinyLFU, and never more than
 * BAR_LRU worse than LRU. Always exits 0 unless the flags are wrong.
 */
#include "bench.h"
#include "refpolicy.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nakkucache.h"

/* --direct replays through a private copy of the policy, renamed so that it can
 * clash with neither the static nor the shared library's own copy. */
#define nkc_policy_size nkb_direct_policy_size
#define nkc_policy_init nkb_direct_policy_init
#define nkc_policy_destroy nkb_direct_policy_destroy
#define nkc_policy_miss nkb_direct_policy_miss
#define nkc_policy_insert nkb_direct_policy_insert
#define nkc_policy_remove nkb_direct_policy_remove
#define nkc_policy_evict nkb_direct_policy_evict
#define nkc_policy_entries nkb_direct_policy_entries
#define nkc_policy_bytes nkb_direct_policy_bytes
#define nkc_node_charge nkb_direct_node_charge
#include "../src/policy.c"

/* Direct replays bound entries only: every node costs one byte. */
uint32_t nkb_direct_node_charge(const struct nkc_pnode *n)
{
    (void)n;
    return 1;
}

#define BAR_BEST 0.02
#define BAR_LRU 0.05
#define MAX_SIZES 16
#define MAX_STRIPES 256

#ifndef NKB_TRACES_DIR
#define NKB_TRACES_DIR "../shared/traces"
#endif

struct trace_opts {
    const char **files; /* --trace, repeatable; else every *.keys.gz in dir */
    size_t n_files;
    const char *dir;
    unsigned sizes[MAX_SIZES]; /* percent of unique keys */
    size_t n_sizes;
    int json, direct, library;
    unsigned stripes; /* --stripes for --direct; 0 = as the library chose */
};

/* Every miss ratio of one (trace, size) point; < 0 when not measured. */
struct point {
    const char *trace;
    unsigned pct;
    uint64_t entries, requests, unique;
    unsigned stripes;
    double lib, direct, ref[NKB_REF_COUNT];
    double best;        /* best of the four references */
    double subject;     /* the library's ratio, else the direct one */
    int within_best, within_lru;
};

/* ---------------------------------------------------------------- input */

/* Reads a gzip'd trace through `gzip -dc`. Returns a malloc'd array (free()) of
 * *n keys, or NULL after a message on stderr. */
static uint64_t *trace_load(const char *path, size_t *n)
{
    char cmd[4200];
    size_t k = (size_t)snprintf(cmd, sizeof cmd, "gzip -dc '");
    for (const char *s = path; *s && k + 8 < sizeof cmd; s++)
        k += (size_t)snprintf(cmd + k, sizeof cmd - k, *s == '\'' ? "'\\''" : "%c", *s);
    snprintf(cmd + k, sizeof cmd - k, "'");
    FILE *f = popen(cmd, "r");
    if (!f) {
        fprintf(stderr, "trace: cannot run gzip for %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    uint64_t *keys = malloc(cap * sizeof *keys);
    char line[128];
    while (keys && fgets(line, sizeof line, f)) {
        char *end;
        unsigned long long v = strtoull(line, &end, 10);
        if (end == line)
            continue; /* blank or malformed line */
        if (len == cap) {
            uint64_t *grown = realloc(keys, 2 * cap * sizeof *keys);
            if (!grown)
                free(keys);
            keys = grown;
            cap *= 2;
        }
        if (keys)
            keys[len++] = v;
    }
    if (pclose(f) != 0 || !keys || len == 0) {
        fprintf(stderr, "trace: cannot read %s\n", path);
        free(keys);
        return NULL;
    }
    *n = len;
    return keys;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t count_unique(const uint64_t *keys, size_t n)
{
    uint64_t *c = malloc(n * sizeof *c), u = 0;
    if (!c)
        return 0;
    memcpy(c, keys, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_u64);
    for (size_t i = 0; i < n; i++)
        u += i == 0 || c[i] != c[i - 1];
    free(c);
    return u;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every *.keys.gz in dir, sorted; a malloc'd array of malloc'd paths. */
static char **list_traces(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    char **out = NULL;
    size_t len = 0;
    struct dirent *e;
    if (!d)
        return NULL;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l <= 8 || strcmp(e->d_name + l - 8, ".keys.gz") != 0)
            continue;
        char **grown = realloc(out, (len + 1) * sizeof *out);
        char *path = malloc(strlen(dir) + l + 2);
        if (!grown || !path) {
            free(path);
            out = grown ? grown : out;
            break;
        }
        out = grown;
        sprintf(path, "%s/%s", dir, e->d_name);
        out[len++] = path;
    }
    closedir(d);
    if (out)
        qsort(out, len, sizeof *out, cmp_str);
    *n = len;
    return out;
}

/* ---------------------------------------------------------------- the library */

static cache_err_t count_loader(void *udata, const void *key, size_t klen, cache_sink_t *sink)
{
    (void)key;
    (void)klen;
    ++*(uint64_t *)udata;
    return cache_sink_put(sink, "v", 1, 0);
}

static cache_t *open_cache(uint64_t entries, uint64_t *loads)
{
    static const char *const fixed[][2] = {
        {"l1.max_bytes", "16GiB"}, {"l1.ttl_ms", "86400000"}, {"ttl_jitter", "0"},
    };
    char err[256] = "", num[32];
    cache_config_t *cfg = cache_config_new();
    cache_t *c = NULL;
    int bad = !cfg;
    snprintf(num, sizeof num, "%llu", (unsigned long long)entries);
    bad = bad || cache_config_set(cfg, "l1.max_entries", num, err, sizeof err) != CACHE_OK;
    for (size_t i = 0; !bad && i < sizeof fixed / sizeof fixed[0]; i++)
        bad = cache_config_set(cfg, fixed[i][0], fixed[i][1], err, sizeof err) != CACHE_OK;
    if (!bad) {
        cache_config_set_loader(cfg, count_loader, loads);
        bad = cache_open(&c, cfg, err, sizeof err) != CACHE_OK;
    }
    cache_config_free(cfg);
    if (bad)
        fprintf(stderr, "trace: cannot open the cache: %s\n", err[0] ? err : "out of memory");
    return bad ? NULL : c;
}

/* The stripe count the library chose, from its stats; 0 when unknown. */
static unsigned library_stripes(cache_t *c)
{
    char *text = cache_stats_json(c);
    json_t *root = text ? json_loads(text, 0, NULL) : NULL;
    json_t *v = json_object_get(json_object_get(root, "l1"), "stripes");
    if (!v)
        v = json_object_get(root, "l1.stripes");
    unsigned n = json_is_integer(v) ? (unsigned)json_integer_value(v) : 0;
    json_decref(root);
    cache_free(text);
    return n;
}

/* Miss ratio of the library: every key through cache_get; misses = loader calls. */
static double run_library(const uint64_t *keys, size_t n, uint64_t entries, unsigned *stripes)
{
    uint64_t loads = 0;
    cache_t *c = open_cache(entries, &loads);
    if (!c)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char key[24];
        int klen = snprintf(key, sizeof key, "%llu", (unsigned long long)keys[i]);
        cache_value_t *v = NULL;
        if (cache_get(c, key, (size_t)klen, &v) == CACHE_OK)
            cache_value_release(v);
    }
    *stripes = library_stripes(c);
    cache_close(c);
    return (double)loads / (double)n;
}

/* ---------------------------------------------------------------- --direct */

struct dentry {
    struct nkc_pnode node; /* first: the policy hands back &node */
    uint64_t key;
    struct dentry *chain;
};

struct dmap {
    struct dentry **bucket;
    uint64_t mask;
};

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static struct dentry **dmap_find(struct dmap *m, uint64_t key, uint64_t hash)
{
    struct dentry **e = &m->bucket[hash & m->mask];
    while (*e && (*e)->key != key)
        e = &(*e)->chain;
    return e;
}

/* One miss of key: the policy learns it, the entry goes in, victims come out. */
static void direct_fill(struct dmap *m, struct nkc_policy *p, uint64_t key, uint64_t hash)
{
    struct dentry **at = dmap_find(m, key, hash);
    struct dentry *e = calloc(1, sizeof *e);
    nkc_policy_miss(p, hash);
    if (!e)
        return;
    e->key = key;
    e->node.hash = hash;
    *at = e;
    nkc_policy_insert(p, &e->node);
    struct nkc_pnode *v;
    while ((v = nkc_policy_evict(p)) != NULL) {
        struct dentry *gone = (struct dentry *)v;
        struct dentry **slot = dmap_find(m, gone->key, gone->node.hash);
        *slot = gone->chain;
        free(gone);
    }
}

/* Miss ratio of src/policy.c alone, over `stripes` policies splitting the entry
 * budget by hash as L1 does. */
static double run_direct(const uint64_t *keys, size_t n, uint64_t entries, unsigned stripes)
{
    struct nkc_policy *p[MAX_STRIPES];
    struct dmap m = {NULL, 0};
    uint64_t misses = 0, per = entries / stripes ? entries / stripes : 1;
    unsigned made = 0;
    m.mask = pow2_at_least(2 * entries + 2) - 1;
    m.bucket = calloc(m.mask + 1, sizeof *m.bucket);
    for (; m.bucket && made < stripes; made++) {
        p[made] = malloc(nkc_policy_size());
        if (!p[made] || nkc_policy_init(p[made], per, UINT64_MAX / 2) != 0) {
            free(p[made]);
            break;
        }
    }
    for (size_t i = 0; made == stripes && i < n; i++) {
        uint64_t h = mix64(keys[i]);
        struct dentry *e = *dmap_find(&m, keys[i], h);
        if (e) {
            nkc_policy_touch(&e->node);
            continue;
        }
        misses++;
        direct_fill(&m, p[(h >> 32) & (stripes - 1)], keys[i], h); /* as l1.c picks */
    }
    for (uint64_t b = 0; m.bucket && b <= m.mask; b++) {
        for (struct dentry *e = m.bucket[b], *next; e; e = next) {
            next = e->chain;
            free(e);
        }
    }
    for (unsigned i = 0; i < made; i++) {
        nkc_policy_destroy(p[i]);
        free(p[i]);
    }
    free(m.bucket);
    return made == stripes ? (double)misses / (double)n : -1;
}

/* ---------------------------------------------------------------- one point */

static double run_ref(nkb_ref_kind_t kind, const uint64_t *keys, size_t n, uint64_t entries)
{
    nkb_ref_t *r = nkb_ref_create(kind, entries);
    uint64_t misses = 0;
    if (!r)
        return -1;
    for (size_t i = 0; i < n; i++)
        misses += !nkb_ref_access(r, keys[i]);
    nkb_ref_destroy(r);
    return (double)misses / (double)n;
}

static void measure(struct point *pt, const struct trace_opts *o, const uint64_t *keys, size_t n)
{
    pt->lib = pt->direct = -1;
    pt->stripes = o->stripes;
    if (o->library)
        pt->lib = run_library(keys, n, pt->entries, &pt->stripes);
    if (pt->stripes == 0)
        pt->stripes = 1;
    if (o->direct)
        pt->direct = run_direct(keys, n, pt->entries, pt->stripes);
    pt->best = 2;
    for (int k = 0; k < NKB_REF_COUNT; k++) {
        pt->ref[k] = run_ref((nkb_ref_kind_t)k, keys, n, pt->entries);
        if (pt->ref[k] >= 0 && pt->ref[k] < pt->best)
            pt->best = pt->ref[k];
    }
    pt->subject = pt->lib >= 0 ? pt->lib : pt->direct;
    pt->within_best = pt->subject >= 0 && pt->subject <= pt->best + BAR_BEST;
    pt->within_lru = pt->subject >= 0 && pt->subject <= pt->ref[NKB_REF_LRU] + BAR_LRU;
}

/* ---------------------------------------------------------------- output */

static void print_ratio(double r)
{
    if (r < 0)
        printf(" %9s", "-");
    else
        printf(" %9.4f", r);
}

static void print_header(const struct trace_opts *o)
{
    printf("%-22s %4s %7s", "trace", "size", "entries");
    if (o->library)
        printf(" %9s", "nakkucache");
    if (o->direct)
        printf(" %9s", "direct");
    for (int k = 0; k < NKB_REF_COUNT; k++)
        printf(" %9s", nkb_ref_name((nkb_ref_kind_t)k));
    printf("  bar\n");
}

static void print_point(const struct point *pt, const struct trace_opts *o)
{
    printf("%-22.22s %3u%% %7llu", pt->trace, pt->pct, (unsigned long long)pt->entries);
    if (o->library)
        print_ratio(pt->lib);
    if (o->direct)
        print_ratio(pt->direct);
    for (int k = 0; k < NKB_REF_COUNT; k++)
        print_ratio(pt->ref[k]);
    if (pt->within_best && pt->within_lru)
        printf("  met (%+.4f vs best)\n", pt->subject - pt->best);
    else
        printf("  MISSED (%+.4f vs best, %+.4f vs LRU)\n", pt->subject - pt->best,
               pt->subject - pt->ref[NKB_REF_LRU]);
}

static json_t *ratio_json(double r)
{
    return r < 0 ? json_null() : json_real(r);
}

static json_t *point_json(const struct point *pt)
{
    json_t *mr = json_object();
    json_object_set_new(mr, "nakkucache", ratio_json(pt->lib));
    json_object_set_new(mr, "direct", ratio_json(pt->direct));
    for (int k = 0; k < NKB_REF_COUNT; k++)
        json_object_set_new(mr, nkb_ref_key((nkb_ref_kind_t)k), ratio_json(pt->ref[k]));
    return json_pack("{s:s, s:i, s:I, s:I, s:I, s:i, s:o, s:f, s:b, s:b, s:b}",
                     "trace", pt->trace, "size_pct", (int)pt->pct,
                     "entries", (json_int_t)pt->entries, "requests", (json_int_t)pt->requests,
                     "unique_keys", (json_int_t)pt->unique, "stripes", (int)pt->stripes,
                     "miss_ratio", mr, "best_of_4", pt->best,
                     "within_best", pt->within_best, "within_lru", pt->within_lru,
                     "bar_met", pt->within_best && pt->within_lru);
}

/* ---------------------------------------------------------------- driver */

/* The trace's display name: its file name without directories or .keys.gz. */
static const char *short_name(const char *path, char *buf, size_t cap)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, cap, "%s", b);
    size_t l = strlen(buf);
    if (l > 8 && strcmp(buf + l - 8, ".keys.gz") == 0)
        buf[l - 8] = '\0';
    return buf;
}

struct tally {
    unsigned met, points;
    double worst_vs_lru;
    char worst_at[96];
};

static void tally_add(struct tally *t, const struct point *pt)
{
    double d = pt->subject - pt->ref[NKB_REF_LRU];
    t->points++;
    t->met += pt->within_best && pt->within_lru;
    if (t->points == 1 || d > t->worst_vs_lru) {
        t->worst_vs_lru = d;
        snprintf(t->worst_at, sizeof t->worst_at, "%s at %u%%", pt->trace, pt->pct);
    }
}

/* Replays one trace at every size; appends to points (JSON) or prints rows. */
static void run_trace(const char *path, const struct trace_opts *o, json_t *points,
                      struct tally *t)
{
    size_t n;
    char name[256];
    uint64_t *keys = trace_load(path, &n);
    if (!keys)
        return;
    uint64_t unique = count_unique(keys, n);
    for (size_t s = 0; s < o->n_sizes; s++) {
        struct point pt = {.trace = short_name(path, name, sizeof name), .pct = o->sizes[s],
                           .requests = n, .unique = unique};
        pt.entries = unique * o->sizes[s] / 100 ? unique * o->sizes[s] / 100 : 1;
        measure(&pt, o, keys, n);
        tally_add(t, &pt);
        if (points)
            json_array_append_new(points, point_json(&pt));
        else
            print_point(&pt, o);
        fflush(stdout);
    }
    free(keys);
}

static void print_summary(const struct tally *t, const struct trace_opts *o, json_t *points)
{
    double pct = t->points ? 100.0 * t->met / t->points : 0;
    if (!points && t->points == 0) {
        printf("bar met on 0/0 points: no trace was read\n");
        return;
    }
    if (!points) {
        printf("bar met on %u/%u points (%.1f%%); worst vs LRU %+.4f (%s); subject: %s\n",
               t->met, t->points, pct, t->worst_vs_lru, t->worst_at,
               o->library ? "the library" : "src/policy.c direct");
        return;
    }
    json_t *root = json_pack("{s:o, s:{s:i, s:i, s:f, s:f, s:s, s:s}, s:{s:f, s:f}}",
                             "points", json_incref(points), "summary", "met", (int)t->met,
                             "points", (int)t->points, "percent", pct,
                             "worst_vs_lru", t->worst_vs_lru, "worst_at", t->worst_at,
                             "subject", o->library ? "nakkucache" : "direct", "bar",
                             "within_best", BAR_BEST, "within_lru", BAR_LRU);
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(root);
}

/* ---------------------------------------------------------------- flags */

static void usage(void)
{
    printf("usage: nakkucache-bench trace [flags]\n"
           "  --trace FILE       a gzip'd trace, one decimal key a line (repeatable;\n"
           "                     default: every *.keys.gz in the traces directory)\n"
           "  --traces-dir DIR   default %s\n"
           "  --sizes LIST       cache sizes in %% of each trace's unique keys (1,5,10,25)\n"
           "  --json             one JSON document instead of the table\n"
           "  --direct           also replay src/policy.c directly (no library)\n"
           "  --no-library       skip the library (implies --direct)\n"
           "  --stripes N        stripes for --direct (default: as the library chose, or 1)\n",
           NKB_TRACES_DIR);
}

static int parse_sizes(struct trace_opts *o, const char *arg)
{
    o->n_sizes = 0;
    for (const char *s = arg; *s;) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > 100 || o->n_sizes == MAX_SIZES || (*end && *end != ','))
            return -1;
        o->sizes[o->n_sizes++] = (unsigned)v;
        s = *end ? end + 1 : end;
    }
    return o->n_sizes ? 0 : -1;
}

static int parse_stripes(struct trace_opts *o, const char *arg)
{
    char *end;
    unsigned long v = strtoul(arg, &end, 10);
    if (*end || v == 0 || v > MAX_STRIPES || (v & (v - 1)))
        return -1;
    o->stripes = (unsigned)v;
    return 0;
}

/* A flag that takes a value; returns 0, or -1 after an error message. */
static int parse_valued(struct trace_opts *o, const char *f, const char *arg)
{
    if (!strcmp(f, "--trace")) {
        o->files[o->n_files++] = arg;
    } else if (!strcmp(f, "--traces-dir")) {
        o->dir = arg;
    } else if (!strcmp(f, "--sizes")) {
        if (parse_sizes(o, arg) != 0) {
            fprintf(stderr, "trace: bad --sizes %s (percentages 1..100, comma-separated)\n", arg);
            return -1;
        }
    } else if (parse_stripes(o, arg) != 0) {
        fprintf(stderr, "trace: --stripes takes a power of two up to %d\n", MAX_STRIPES);
        return -1;
    }
    return 0;
}

/* argv[*i] and, for a flag with a value, argv[*i + 1] (then *i moves past it).
 * Returns 0 to run, 1 after --help, -1 after an error message. */
static int parse_flag(struct trace_opts *o, int argc, char **argv, int *i)
{
    static const char *const valued[] = {"--trace", "--traces-dir", "--sizes", "--stripes"};
    const char *f = argv[*i];
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
        if (strcmp(f, valued[k]) != 0)
            continue;
        if (++*i >= argc) {
            fprintf(stderr, "trace: %s needs a value\n", f);
            return -1;
        }
        return parse_valued(o, f, argv[*i]);
    }
    if (!strcmp(f, "--json")) {
        o->json = 1;
    } else if (!strcmp(f, "--direct")) {
        o->direct = 1;
    } else if (!strcmp(f, "--no-library")) {
        o->library = 0;
        o->direct = 1;
    } else if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
        usage();
        return 1;
    } else {
        fprintf(stderr, "trace: unknown flag %s (try --help)\n", f);
        return -1;
    }
    return 0;
}

int nkb_trace_main(int argc, char **argv)
{
    struct trace_opts o = {.dir = NKB_TRACES_DIR, .sizes = {1, 5, 10, 25}, .n_sizes = 4,
                           .library = 1};
    o.files = calloc((size_t)argc + 1, sizeof *o.files);
    int rc = o.files ? 0 : -1;
    for (int i = 1; i < argc && rc == 0; i++)
        rc = parse_flag(&o, argc, argv, &i);
    char **found = NULL;
    size_t n_found = 0;
    if (rc == 0 && o.n_files == 0) {
        found = list_traces(o.dir, &n_found);
        if (n_found == 0)
            fprintf(stderr, "trace: no *.keys.gz in %s (use --traces-dir or --trace)\n", o.dir);
    }
    json_t *points = rc == 0 && o.json ? json_array() : NULL;
    struct tally t = {0, 0, 0, ""};
    if (rc == 0 && !o.json)
        print_header(&o);
    for (size_t i = 0; rc == 0 && i < (o.n_files ? o.n_files : n_found); i++)
        run_trace(o.n_files ? o.files[i] : found[i], &o, points, &t);
    if (rc == 0)
        print_summary(&t, &o, points);
    json_decref(points);
    for (size_t i = 0; i < n_found; i++)
        free(found[i]);
    free(found);
    free(o.files);
    return rc < 0 ? 2 : 0;
}
