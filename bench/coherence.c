/*
 * `coherence` mode: how fast a write in one process reaches another process's L1,
 * and what coherence costs or buys. A writer process updates random keys at a fixed
 * rate with cache_set; reader processes read random keys as fast as they can. All
 * share one memory map: per key, the version last written and when its cache_set
 * returned; per reader and key, when it first saw each version. Reported: the
 * propagation latency (writer's cache_set returned -> reader first sees it), stale
 * reads (a read that began after a newer write returned, yet saw an older version),
 * and the readers' L1 hit ratio; first with tracking (the library's default, long L1
 * TTL), then the baseline: tracking off and a short L1 TTL, the usual workaround.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#endif
#include "bench.h"
#include "redis_base.h"

#include <jansson.h>
#include <nakkucache.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_KEYS 1024
#define MAX_READERS 8
#define MAX_SAMPLES 65536

struct key_state {
    _Atomic uint64_t version;      /* last version whose cache_set returned */
    _Atomic uint64_t written_ns;   /* when that cache_set returned */
};

struct shared {
    struct key_state keys[MAX_KEYS];
    _Atomic int stop;
    _Atomic uint64_t samples_n;
    uint64_t samples_ns[MAX_SAMPLES]; /* propagation latencies seen by readers */
    _Atomic uint64_t reads, stale, l1_hits, errors, writes;
};

struct cfg {
    const char *url;
    unsigned readers, keys, interval_ms;
    uint64_t duration_ms, short_ttl_ms;
};

static cache_t *open_cache(const struct cfg *k, int tracking, const char *prefix)
{
    cache_config_t *cfg = cache_config_new();
    char err[256] = "", ttl[32];
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(tracking ? 300000 : k->short_ttl_ms));
    cache_t *c = NULL;
    if (cache_config_set(cfg, "l2.url", k->url, err, sizeof(err)) != CACHE_OK ||
        cache_config_set(cfg, "l2.key_prefix", prefix, err, sizeof(err)) != CACHE_OK ||
        cache_config_set(cfg, "l2.tracking", tracking ? "on" : "off", err, sizeof(err)) ||
        cache_config_set(cfg, "l1.ttl_ms", ttl, err, sizeof(err)) != CACHE_OK ||
        cache_open(&c, cfg, err, sizeof(err)) != CACHE_OK)
        fprintf(stderr, "coherence: %s\n", err);
    cache_config_free(cfg);
    return c;
}

static void writer(struct shared *sh, const struct cfg *k, int tracking, const char *prefix)
{
    cache_t *c = open_cache(k, tracking, prefix);
    unsigned seed = 7;
    char key[32], val[32];
    while (c && !atomic_load(&sh->stop)) {
        unsigned i = (unsigned)rand_r(&seed) % k->keys;
        uint64_t v = atomic_load(&sh->keys[i].version) + 1;
        int kl = snprintf(key, sizeof(key), "c%u", i), vl = snprintf(val, sizeof(val), "%llu",
                                                                     (unsigned long long)v);
        if (cache_set(c, key, (size_t)kl, val, (size_t)vl, 0) == CACHE_OK) {
            atomic_store(&sh->keys[i].written_ns, nkb_now_ns());
            atomic_store(&sh->keys[i].version, v);
            atomic_fetch_add(&sh->writes, 1);
        }
        struct timespec ts = {0, (long)k->interval_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    cache_close(c);
}

static void note_read(struct shared *sh, unsigned i, uint64_t got, uint64_t want, uint64_t t0,
                      uint64_t *seen)
{
    atomic_fetch_add(&sh->reads, 1);
    if (got < want)
        atomic_fetch_add(&sh->stale, 1);
    if (got > seen[i]) { /* first sight of a new version: how long it took */
        uint64_t written = atomic_load(&sh->keys[i].written_ns);
        if (atomic_load(&sh->keys[i].version) == got && written && t0 > written) {
            uint64_t n = atomic_fetch_add(&sh->samples_n, 1);
            if (n < MAX_SAMPLES)
                sh->samples_ns[n] = nkb_now_ns() - written;
        }
        seen[i] = got;
    }
}

static void reader(struct shared *sh, const struct cfg *k, int tracking, const char *prefix)
{
    cache_t *c = open_cache(k, tracking, prefix);
    uint64_t *seen = calloc(k->keys, sizeof(*seen));
    unsigned seed = (unsigned)getpid();
    char key[32], buf[64];
    while (c && seen && !atomic_load(&sh->stop)) {
        unsigned i = (unsigned)rand_r(&seed) % k->keys;
        int kl = snprintf(key, sizeof(key), "c%u", i);
        uint64_t want = atomic_load(&sh->keys[i].version), t0 = nkb_now_ns();
        cache_value_t *v;
        cache_get_info_t info = {.struct_size = sizeof(info)};
        cache_err_t err = cache_get_ex(c, key, (size_t)kl, &v, &info);
        if (err != CACHE_OK) {
            atomic_fetch_add(&sh->errors, err != CACHE_ENOTFOUND);
            continue;
        }
        size_t n = cache_value_len(v) < sizeof(buf) - 1 ? cache_value_len(v) : sizeof(buf) - 1;
        memcpy(buf, cache_value_data(v), n);
        buf[n] = '\0';
        cache_value_release(v);
        atomic_fetch_add(&sh->l1_hits, info.tier == CACHE_TIER_L1);
        note_read(sh, i, strtoull(buf, NULL, 10), want, t0, seen);
    }
    free(seen);
    cache_close(c);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static pid_t spawn(struct shared *sh, const struct cfg *k, int tracking, const char *prefix,
                   int is_writer)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (is_writer)
            writer(sh, k, tracking, prefix);
        else
            reader(sh, k, tracking, prefix);
        _exit(0);
    }
    return pid;
}

/* One run; fills a JSON object with its figures. */
static json_t *run(const struct cfg *k, int tracking)
{
    struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return NULL;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "nkb:coh:%d:%d:", (int)getpid(), tracking);
    pid_t pids[MAX_READERS + 1];
    for (unsigned r = 0; r < k->readers; r++)
        pids[r] = spawn(sh, k, tracking, prefix, 0);
    pids[k->readers] = spawn(sh, k, tracking, prefix, 1);
    struct timespec ts = {(time_t)(k->duration_ms / 1000), (long)(k->duration_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&sh->stop, 1);
    for (unsigned r = 0; r <= k->readers; r++)
        waitpid(pids[r], NULL, 0);
    uint64_t n = atomic_load(&sh->samples_n) < MAX_SAMPLES ? atomic_load(&sh->samples_n)
                                                            : MAX_SAMPLES;
    qsort(sh->samples_ns, n, sizeof(uint64_t), cmp_u64);
    double reads = (double)atomic_load(&sh->reads);
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:f, s:I, s:f, s:f, s:f, s:I}", "mode",
                          tracking ? "tracking on, l1.ttl_ms=300000" : "tracking off, short L1 TTL",
                          "writes", (json_int_t)atomic_load(&sh->writes), "reads", (json_int_t)reads,
                          "stale_reads", (json_int_t)atomic_load(&sh->stale), "l1_hit_ratio",
                          reads > 0 ? (double)atomic_load(&sh->l1_hits) / reads : 0.0,
                          "propagation_samples", (json_int_t)n,
                          "propagation_p50_ms", n ? (double)sh->samples_ns[n / 2] / 1e6 : -1.0,
                          "propagation_p99_ms", n ? (double)sh->samples_ns[n * 99 / 100] / 1e6 : -1.0,
                          "propagation_max_ms", n ? (double)sh->samples_ns[n - 1] / 1e6 : -1.0,
                          "errors", (json_int_t)atomic_load(&sh->errors));
    munmap(sh, sizeof(*sh));
    return o;
}

/* The shared flags (main.c) into k; the server from nkb_redis_acquire. Returns 0
 * to run, 1 after --help, -1 for bad flags. */
static int parse(struct cfg *k, nkb_opts_t *o, int argc, char **argv)
{
    int rc;

    nkb_opts_init(o);
    o->keys = 100;
    o->duration_ms = 3000;
    if ((rc = nkb_opts_parse(o, argc, argv)) != 0)
        return rc;
    if (o->readers > MAX_READERS || o->keys > MAX_KEYS) {
        fprintf(stderr, "nakkucache-bench coherence: --readers 1..%d, --keys 1..%d\n",
                MAX_READERS, MAX_KEYS);
        return -1;
    }
    *k = (struct cfg){.readers = o->readers, .keys = o->keys,
                      .interval_ms = (unsigned)o->interval_ms, .duration_ms = o->duration_ms,
                      .short_ttl_ms = o->short_ttl_ms};
    return 0;
}

static void print_row(json_t *o)
{
    printf("%-34s %7lld %9lld %7lld %8.3f %8.2f %8.2f %8.2f\n",
           json_string_value(json_object_get(o, "mode")),
           (long long)json_integer_value(json_object_get(o, "writes")),
           (long long)json_integer_value(json_object_get(o, "reads")),
           (long long)json_integer_value(json_object_get(o, "stale_reads")),
           json_real_value(json_object_get(o, "l1_hit_ratio")),
           json_real_value(json_object_get(o, "propagation_p50_ms")),
           json_real_value(json_object_get(o, "propagation_p99_ms")),
           json_real_value(json_object_get(o, "propagation_max_ms")));
}

/* The two runs as the harness's JSON document: one row per run. */
static json_t *coherence_doc(const struct cfg *k, json_t *tracking, json_t *baseline)
{
    json_t *rows = json_array();

    json_object_set_new(tracking, "impl", json_string("tracking"));
    json_object_set_new(baseline, "impl", json_string("short_ttl"));
    json_array_append(rows, tracking);
    json_array_append(rows, baseline);
    return json_pack("{s:s, s:I, s:I, s:I, s:o, s:o, s:o}", "mode", "coherence", "readers",
                     (json_int_t)k->readers, "keys", (json_int_t)k->keys, "write_interval_ms",
                     (json_int_t)k->interval_ms, "tracking", tracking, "baseline", baseline,
                     "rows", rows);
}

static int report(const struct cfg *k, const nkb_opts_t *o, json_t *rows[2])
{
    if (o->json || o->csv)
        return nkb_output(o, coherence_doc(k, rows[0], rows[1])) == 0 ? 0 : 1;
    printf("coherence: 1 writer process (a cache_set every %u ms), %u reader processes, "
           "%u keys, %llu ms per run\n", k->interval_ms, k->readers, k->keys,
           (unsigned long long)k->duration_ms);
    printf("propagation = writer's cache_set returned -> a reader first sees the version\n\n");
    printf("%-34s %7s %9s %7s %8s %8s %8s %8s\n", "run", "writes", "reads", "stale", "L1 hit",
           "p50 ms", "p99 ms", "max ms");
    print_row(rows[0]);
    print_row(rows[1]);
    json_decref(rows[0]);
    json_decref(rows[1]);
    return 0;
}

int nkb_coherence_main(int argc, char **argv)
{
    struct cfg k;
    nkb_opts_t o;
    nkb_redis_t redis;
    json_t *rows[2];
    int p = parse(&k, &o, argc, argv), rc;

    if (p != 0)
        return p > 0 ? 0 : 2;
    if ((rc = nkb_redis_acquire(&redis, &o, "coherence")) <= 0) {
        if (rc == 0)
            nkb_redis_print_skipped(&o, "coherence");
        return rc == 0 ? 0 : 1;
    }
    k.url = redis.url;
    rows[0] = run(&k, 1);
    rows[1] = run(&k, 0);
    rc = rows[0] && rows[1] ? report(&k, &o, rows) : 1;
    if (rc != 0 && !(rows[0] && rows[1])) {
        json_decref(rows[0]);
        json_decref(rows[1]);
    }
    nkb_redis_release(&redis);
    return rc;
}
