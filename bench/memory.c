/*
 * Mode memory (also the last section of l1): bytes per entry beyond key + value,
 * measured two ways on a fresh cache holding o->keys entries: from the library's
 * own L1 byte accounting (cache_stats_json), and from the process, as the growth
 * of glibc's in-use heap (mallinfo2: uordblks + hblkhd, all arenas) across
 * cache_open and the inserts. The mutex map is measured the same way for scale.
 */
#define _GNU_SOURCE
#include "l1.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return (double)mi.uordblks + (double)mi.hblkhd;
}

/* Bytes per entry beyond payload from a heap growth of delta for n entries, or -1
 * when the heap did not grow (an allocator that mallinfo2 does not see, e.g. ASan). */
static double per_entry(double delta, uint32_t n, size_t payload)
{
    return delta > 0 ? (delta - (double)n * (double)payload) / n : -1.0;
}

/* The first member called name in j or any object below it (depth first). */
static json_t *find_member(json_t *j, const char *name, int depth)
{
    const char *k;
    json_t *v, *hit;
    size_t i;

    if (depth > 6)
        return NULL;
    if (json_is_object(j)) {
        if ((hit = json_object_get(j, name)) != NULL)
            return hit;
        json_object_foreach(j, k, v) {
            if ((hit = find_member(v, name, depth + 1)) != NULL)
                return hit;
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            if ((hit = find_member(v, name, depth + 1)) != NULL)
                return hit;
        }
    }
    return NULL;
}

/* The L1 byte count the library reports ("l1.bytes": N, or "l1": {"bytes": N}), or -1. */
static double accounted_bytes(cache_t *c)
{
    char *text = cache_stats_json(c);
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    json_t *l1 = find_member(doc, "l1", 0);
    json_t *bytes = find_member(doc, "l1.bytes", 0);
    double v;

    if (bytes == NULL && json_is_object(l1))
        bytes = json_object_get(l1, "bytes");
    v = json_is_number(bytes) ? json_number_value(bytes) : -1.0;
    json_decref(doc);
    cache_free(text);
    return v;
}

/* Inserts every key into a fresh cache; fills the lib_* fields of m. */
static int measure_lib(const nkb_opts_t *o, const nkb_keys_t *keys, const void *val,
                       nkb_memory_t *m)
{
    double before = heap_in_use(), opened, after, acct;
    cache_t *c = nkb_l1_open_cache(o);

    if (c == NULL)
        return -1;
    opened = heap_in_use();
    for (uint32_t i = 0; i < keys->n; i++) {
        cache_err_t err = cache_set(c, nkb_key(keys, i), keys->klen, val, o->value_size, 0);

        if (err != CACHE_OK) {
            fprintf(stderr, "nakkucache-bench: cache_set: %s\n", cache_strerror(err));
            cache_close(c);
            return -1;
        }
    }
    after = heap_in_use();
    acct = accounted_bytes(c);
    cache_close(c);
    m->lib_open_bytes = opened - before;
    m->lib_malloc = per_entry(after - before, keys->n, m->payload);
    m->lib_accounted = per_entry(acct, keys->n, m->payload);
    return 0;
}

static int measure_map(const nkb_opts_t *o, const nkb_keys_t *keys, const void *val,
                       nkb_memory_t *m)
{
    double before = heap_in_use(), after;
    nkb_lockmap_t *map = nkb_lockmap_new(keys->n);

    if (map == NULL)
        return -1;
    for (uint32_t i = 0; i < keys->n; i++) {
        if (nkb_lockmap_put(map, nkb_key(keys, i), keys->klen, val, o->value_size) != 0) {
            nkb_lockmap_free(map);
            return -1;
        }
    }
    after = heap_in_use();
    nkb_lockmap_free(map);
    m->lockmap_malloc = per_entry(after - before, keys->n, m->payload);
    return 0;
}

int nkb_memory_measure(const nkb_opts_t *o, nkb_memory_t *m)
{
    nkb_keys_t keys;
    void *val = calloc(1, o->value_size);
    int rc = -1;

    memset(m, 0, sizeof *m);
    m->caffeine_heap = -1.0;
    if (val == NULL || nkb_keys_init(&keys, o) != 0) {
        free(val);
        return -1;
    }
    m->entries = o->keys;
    m->payload = o->key_size + o->value_size;
    fprintf(stderr, "nakkucache-bench: measuring memory at %u entries\n", o->keys);
    if (measure_lib(o, &keys, val, m) == 0 && measure_map(o, &keys, val, m) == 0)
        rc = 0;
    nkb_keys_free(&keys);
    free(val);
    return rc;
}

static void print_line(const char *what, double v, const char *note)
{
    if (v >= 0)
        printf("  %-46s %8.1f%s\n", what, v, note);
    else
        printf("  %-46s %8s\n", what, "n/a");
}

void nkb_memory_print(const nkb_memory_t *m, const nkb_opts_t *o)
{
    char note[64];

    printf("memory: bytes per entry beyond key + value (%zu + %zu B), %u entries, fresh maps\n",
           o->key_size, o->value_size, m->entries);
    print_line("nakkucache, its own L1 byte accounting", m->lib_accounted, "");
    snprintf(note, sizeof note, "  (%.1f MiB of it at cache_open)", m->lib_open_bytes / 1048576.0);
    print_line("nakkucache, process heap in use (mallinfo2)", m->lib_malloc, note);
    print_line("mutex map, process heap in use (mallinfo2)", m->lockmap_malloc, "");
    if (m->caffeine_heap >= 0)
        print_line("caffeine, JVM heap used after full GC", m->caffeine_heap,
                   "  (String + byte[] objects: see docs)");
}

static json_t *json_or_null(double v)
{
    return v < 0 ? json_null() : json_real(v);
}

json_t *nkb_memory_json(const nkb_memory_t *m)
{
    return json_pack("{s:I, s:I, s:o, s:o, s:f, s:o, s:o}", "entries", (json_int_t)m->entries,
                     "payload_bytes", (json_int_t)m->payload, "lib_accounted_per_entry",
                     json_or_null(m->lib_accounted), "lib_heap_per_entry",
                     json_or_null(m->lib_malloc), "lib_open_bytes", m->lib_open_bytes,
                     "mutex_map_heap_per_entry", json_or_null(m->lockmap_malloc),
                     "caffeine_heap_per_entry", json_or_null(m->caffeine_heap));
}
int nkb_memory_main(int argc, char **argv)
{
    nkb_opts_t o;
    nkb_memory_t m;
    json_t *row;
    int rc;

    nkb_opts_init(&o);
    rc = nkb_opts_parse(&o, argc, argv);
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    if (nkb_memory_measure(&o, &m) != 0)
        return 1;
    if (!o.json && !o.csv) {
        nkb_memory_print(&m, &o);
        return 0;
    }
    /* one CSV row per run, so that runs at several --keys concatenate into a table */
    row = nkb_memory_json(&m);
    json_object_set_new(row, "key_size", json_integer((json_int_t)o.key_size));
    json_object_set_new(row, "value_size", json_integer((json_int_t)o.value_size));
    return nkb_output(&o, json_pack("{s:s, s:o, s:[o]}", "mode", "memory", "memory",
                                    nkb_memory_json(&m), "rows", row)) == 0 ? 0 : 1;
}
