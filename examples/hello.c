#include <nakkucache.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call) do { if ((rc = (call)) != CACHE_OK) goto out; } while (0)

/* The loader, called on a miss at every level: here it "queries a database". */
static cache_err_t load(void *db, const void *key, size_t klen, cache_sink_t *sink)
{
    for (const char **row = db; *row; row += 2) /* rows of key, value */
        if (strlen(row[0]) == klen && memcmp(row[0], key, klen) == 0)
            return cache_sink_put(sink, row[1], strlen(row[1]), 0);
    return CACHE_ENOTFOUND;
}

int main(void)
{
    static const char *products[] = {"product:42", "{\"name\":\"teapot\",\"price\":25}", NULL};
    char err[256] = "";
    cache_t *cache = NULL;
    cache_value_t *v;
    cache_err_t rc;
    cache_config_t *cfg = cache_config_new(); /* NULL (no memory) fails the first CHECK */
    CHECK(cache_config_set(cfg, "l1.max_bytes", "64MiB", err, sizeof err));
    CHECK(cache_config_set(cfg, "l1.ttl_ms", "300000", err, sizeof err));
    cache_config_set_loader(cfg, load, products);
    CHECK(cache_open(&cache, cfg, err, sizeof err));
    CHECK(cache_get(cache, "product:42", 10, &v)); /* a miss: the loader runs, L1 keeps it */
    printf("%.*s\n", (int)cache_value_len(v), (const char *)cache_value_data(v));
    cache_value_release(v);
    CHECK(cache_set(cache, "product:42", 10, "{\"name\":\"teapot\",\"price\":20}", 28, 0));
    CHECK(cache_del(cache, "product:42", 10)); /* after a database write: invalidate */
out:
    if (rc != CACHE_OK)
        fprintf(stderr, "error: %s %s\n", cache_strerror(rc), err);
    cache_close(cache);
    cache_config_free(cfg);
    return rc != CACHE_OK;
}
