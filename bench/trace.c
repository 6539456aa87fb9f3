/*
 * nakkucache-bench trace: replays real key traces (gzip'd text, one decimal key a
 * line, every request a read, a miss inserts) through the library and through the
 * reference policies of refpolicy.c at cache sizes given as percentages of each
 * trace's unique keys, and checks the bar of docs/POLICY.md at every point: within
 * BAR_BEST of the best of LRU, S3-FIFO, SIEVE and W-TinyLFU, and never more than
 * BAR_LRU worse than LRU. Flags come from the shared parser (main.c). Always exits
 * 0 unless the flags are wrong.
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
    struct nkc_policy *p[NKB_MAX_STRIPES];
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

static void measure(struct point *pt, const nkb_opts_t *o, const uint64_t *keys, size_t n)
{
    pt->lib = pt->direct = -1;
    pt->stripes = o->stripes;
    if (o->trace_library)
        pt->lib = run_library(keys, n, pt->entries, &pt->stripes);
    if (pt->stripes == 0)
        pt->stripes = 1;
    if (o->trace_direct)
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

/* ---------------------------------------------------------------- the table */

static void print_ratio(double r)
{
    if (r < 0)
        printf(" %9s", "-");
    else
        printf(" %9.4f", r);
}

static void print_header(const nkb_opts_t *o)
{
    printf("%-22s %4s %7s", "trace", "size", "entries");
    if (o->trace_library)
        printf(" %9s", "nakkucache");
    if (o->trace_direct)
        printf(" %9s", "direct");
    for (int k = 0; k < NKB_REF_COUNT; k++)
        printf(" %9s", nkb_ref_name((nkb_ref_kind_t)k));
    printf("  bar\n");
}

static void print_point(const struct point *pt, const nkb_opts_t *o)
{
    printf("%-22.22s %3u%% %7llu", pt->trace, pt->pct, (unsigned long long)pt->entries);
    if (o->trace_library)
        print_ratio(pt->lib);
    if (o->trace_direct)
        print_ratio(pt->direct);
    for (int k = 0; k < NKB_REF_COUNT; k++)
        print_ratio(pt->ref[k]);
    if (pt->within_best && pt->within_lru)
        printf("  met (%+.4f vs best)\n", pt->subject - pt->best);
    else
        printf("  MISSED (%+.4f vs best, %+.4f vs LRU)\n", pt->subject - pt->best,
               pt->subject - pt->ref[NKB_REF_LRU]);
}

/* ---------------------------------------------------------------- JSON and CSV */

static json_t *ratio_json(double r)
{
    return r < 0 ? json_null() : json_real(r);
}

/* The point as one object, every policy's ratio nested (the "points" array, which
 * predates "rows" and is kept for the readers of the older JSON). */
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

/* a - b when both were measured, else null. */
static json_t *delta_json(double a, double b)
{
    return a < 0 || b < 0 ? json_null() : json_real(a - b);
}

/* One row of one policy at the point: its miss ratio and its distance to LRU and to
 * the best reference (> 0: more misses). The bar's verdict rides on the subject's
 * row only, where it belongs. */
static json_t *policy_row(const struct point *pt, const char *policy, const char *name,
                          double ratio, int subject)
{
    json_t *row = json_pack("{s:s, s:i, s:I, s:I, s:I, s:i, s:s, s:s, s:o, s:o, s:o}",
                            "trace", pt->trace, "size_pct", (int)pt->pct,
                            "entries", (json_int_t)pt->entries,
                            "requests", (json_int_t)pt->requests,
                            "unique_keys", (json_int_t)pt->unique,
                            "stripes", (int)pt->stripes, "policy", policy, "name", name,
                            "miss_ratio", ratio_json(ratio),
                            "vs_lru", delta_json(ratio, pt->ref[NKB_REF_LRU]),
                            "vs_best", delta_json(ratio, pt->best < 2 ? pt->best : -1));
    if (row != NULL && subject)
        json_object_set_new(row, "bar_met", json_boolean(pt->within_best && pt->within_lru));
    return row;
}

/* Appends the point's rows: the library, the direct replay, then the references. */
static void append_rows(json_t *rows, const struct point *pt, const nkb_opts_t *o)
{
    if (o->trace_library)
        json_array_append_new(rows, policy_row(pt, "nakkucache", "nakkucache", pt->lib, 1));
    if (o->trace_direct)
        json_array_append_new(rows, policy_row(pt, "direct", "policy.c direct", pt->direct,
                                               !o->trace_library));
    for (int k = 0; k < NKB_REF_COUNT; k++)
        json_array_append_new(rows, policy_row(pt, nkb_ref_key((nkb_ref_kind_t)k),
                                               nkb_ref_name((nkb_ref_kind_t)k), pt->ref[k], 0));
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

/* What one run collects: the table is printed as it goes; points and rows are
 * kept for --json, --csv and --plot (NULL without them). */
struct collect {
    json_t *points, *rows;
    struct tally t;
};

static int table_wanted(const nkb_opts_t *o)
{
    return !o->json && !o->csv;
}

/* Replays one trace at every size. */
static void run_trace(const char *path, const nkb_opts_t *o, struct collect *c)
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
        nkb_progress("trace", "%s at %u%% (%llu entries)", pt.trace, pt.pct,
                     (unsigned long long)pt.entries);
        measure(&pt, o, keys, n);
        nkb_progress_done();
        tally_add(&c->t, &pt);
        if (c->points != NULL) {
            json_array_append_new(c->points, point_json(&pt));
            append_rows(c->rows, &pt, o);
        }
        if (table_wanted(o))
            print_point(&pt, o);
        fflush(stdout);
    }
    free(keys);
}

static void print_summary(const struct tally *t, const nkb_opts_t *o)
{
    if (t->points == 0) {
        printf("bar met on 0/0 points: no trace was read\n");
        return;
    }
    printf("bar met on %u/%u points (%.1f%%); worst vs LRU %+.4f (%s); subject: %s\n", t->met,
           t->points, 100.0 * t->met / t->points, t->worst_vs_lru, t->worst_at,
           o->trace_library ? "the library" : "src/policy.c direct");
}

/* The run as one document: "rows" (one per trace x size x policy) for --csv and
 * --plot; "points" and "summary" as the JSON always had them. Takes c's arrays. */
static json_t *trace_doc(const struct collect *c, const nkb_opts_t *o)
{
    const struct tally *t = &c->t;
    json_t *sizes = json_array();

    for (size_t i = 0; i < o->n_sizes; i++)
        json_array_append_new(sizes, json_integer(o->sizes[i]));
    return json_pack("{s:s, s:{s:s, s:o, s:b, s:b, s:i}, s:o, s:{s:i, s:i, s:f, s:f, s:s, s:s},"
                     " s:{s:f, s:f}, s:o}",
                     "mode", "trace", "workload", "traces_dir", o->traces_dir, "size_pcts", sizes,
                     "library", o->trace_library, "direct", o->trace_direct,
                     "stripes", (int)o->stripes, "points", c->points,
                     "summary", "met", (int)t->met, "points", (int)t->points,
                     "percent", t->points ? 100.0 * t->met / t->points : 0.0,
                     "worst_vs_lru", t->worst_vs_lru, "worst_at", t->worst_at,
                     "subject", o->trace_library ? "nakkucache" : "direct",
                     "bar", "within_best", BAR_BEST, "within_lru", BAR_LRU, "rows", c->rows);
}

/* The traces to replay: --trace's, else every *.keys.gz in --traces-dir (*found,
 * to free). NULL after a message when there are none. */
static const char *const *trace_list(const nkb_opts_t *o, char ***found, size_t *n)
{
    *found = NULL;
    *n = o->n_trace_files;
    if (o->n_trace_files > 0)
        return o->trace_files;
    *found = list_traces(o->traces_dir, n);
    if (*n == 0)
        fprintf(stderr, "trace: no *.keys.gz in %s (use --traces-dir or --trace)\n",
                o->traces_dir);
    return (const char *const *)*found;
}

int nkb_trace_main(int argc, char **argv)
{
    nkb_opts_t o;
    char **found;
    size_t n;
    int rc;

    nkb_opts_init(&o);
    rc = nkb_opts_parse(&o, argc, argv);
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    if (!o.trace_library)
        o.trace_direct = 1; /* something must be measured against the references */
    const char *const *files = trace_list(&o, &found, &n);
    int want_doc = o.json || o.csv || o.plot != NULL;
    struct collect c = {want_doc ? json_array() : NULL, want_doc ? json_array() : NULL,
                        {0, 0, 0, ""}};
    if (table_wanted(&o))
        print_header(&o);
    for (size_t i = 0; i < n; i++)
        run_trace(files[i], &o, &c);
    if (table_wanted(&o))
        print_summary(&c.t, &o);
    fflush(stdout);
    if (want_doc)
        rc = nkb_output(&o, trace_doc(&c, &o));
    for (size_t i = 0; found != NULL && i < n; i++)
        free(found[i]);
    free(found);
    return rc != 0 ? 1 : 0;
}
