/*
 * Stats: summing the per-thread counter blocks and rendering them as JSON. Reads
 * are momentary snapshots (each counter exact, the set not atomic as a whole).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "stats.h"

#include "internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const paths[] = {
#define NKC_COUNTER_PATH(name, path, doc) path,
    NKC_COUNTERS(NKC_COUNTER_PATH)
#undef NKC_COUNTER_PATH
};

uint64_t nkc_stat_sum(const struct nkc_stats *s, enum nkc_counter k)
{
    uint64_t sum = 0;
    for (int i = 0; i < NKC_STAT_SLOTS; i++)
        sum += atomic_load_explicit(&s->block[i].v[k], memory_order_relaxed);
    return sum;
}

/* Sets root["a"]["b"] = v for path "a.b" (one level of nesting). */
static int put_path(json_t *root, const char *path, json_t *v)
{
    const char *dot = strchr(path, '.');
    if (!v)
        return -1;
    if (!dot)
        return json_object_set_new(root, path, v);
    char group[64];
    size_t n = (size_t)(dot - path);
    if (n >= sizeof(group)) {
        json_decref(v);
        return -1;
    }
    memcpy(group, path, n);
    group[n] = '\0';
    json_t *obj = json_object_get(root, group);
    if (!obj) {
        obj = json_object();
        if (!obj || json_object_set_new(root, group, obj) != 0) {
            json_decref(v);
            return -1;
        }
    }
    return json_object_set_new(obj, dot + 1, v);
}

static int put_u64(json_t *root, const char *path, uint64_t v)
{
    return put_path(root, path, json_integer((json_int_t)v));
}

/* root as compact JSON in a buffer from our own malloc: the host may have given
 * jansson other allocation functions, and cache_free must match. */
char *nkc_json_text(const json_t *root)
{
    size_t n = json_dumpb(root, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
    char *text = n ? malloc(n + 1) : NULL;
    if (!text)
        return NULL;
    if (json_dumpb(root, text, n, JSON_COMPACT | JSON_SORT_KEYS) != n) {
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

char *cache_stats_json(cache_t *c)
{
    if (!c)
        return NULL;
    json_t *root = json_object();
    int bad = !root;
    for (int k = 0; k < NKC_C_COUNT && !bad; k++)
        bad |= put_u64(root, paths[k], nkc_stat_sum(c->stats, (enum nkc_counter)k)) != 0;
    struct nkc_l1_totals t;
    nkc_l1_totals(c->l1, &t);
    if (!bad) {
        bad |= put_u64(root, "l1.entries", t.entries) | put_u64(root, "l1.bytes", t.bytes);
        bad |= put_u64(root, "l1.max_bytes", t.max_bytes);
        bad |= put_u64(root, "l1.max_entries", t.max_entries);
        bad |= put_u64(root, "l1.evictions", t.evictions);
        bad |= put_u64(root, "l1.expirations", t.expirations);
        bad |= put_u64(root, "l1.stripes", nkc_l1_stripes(c->l1));
        bad |= put_path(root, "l2.configured", json_boolean(c->l2 != NULL));
    }
    if (!bad && c->l2) {
        struct nkc_l2_totals l2;
        nkc_l2_totals(c->l2, &l2);
        bad |= put_u64(root, "l2.commands", l2.commands) | put_u64(root, "l2.errors", l2.errors);
        bad |= put_u64(root, "l2.timeouts", l2.timeouts);
        bad |= put_u64(root, "l2.protocol_errors", l2.protocol_errors);
        bad |= put_u64(root, "l2.reconnects", l2.reconnects);
        bad |= put_u64(root, "l2.connect_failures", l2.connect_failures);
        bad |= put_u64(root, "l2.breaker_trips", l2.breaker_trips);
        bad |= put_u64(root, "l2.skipped_breaker_open", l2.skipped_open);
        bad |= put_path(root, "l2.breaker", json_string(nkc_breaker_name(l2.breaker)));
        bad |= put_u64(root, "tracking.untracked_connects", l2.untracked_connects);
        bad |= put_u64(root, "tracking.generations_retired", l2.retired);
        bad |= put_path(root, "tracking.enabled", json_boolean(c->track != NULL));
    }
    if (!bad && c->track) {
        struct nkc_track_totals tt;
        nkc_track_totals(c->track, &tt);
        bad |= put_u64(root, "tracking.messages", tt.messages);
        bad |= put_u64(root, "tracking.subscriber_losses", tt.subscriber_losses);
        bad |= put_path(root, "tracking.subscribed", json_boolean(tt.subscribed));
    }
    char *text = bad ? NULL : nkc_json_text(root);
    json_decref(root);
    return text;
}

void cache_free(void *p)
{
    free(p);
}
