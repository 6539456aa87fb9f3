/* A second process for the Redis tests: opens its own cache on a Redis and runs one
 * write. Tests spawn it (fork + exec) rather than forking themselves, because a
 * child forked from a process with running threads may inherit a lock held by one
 * of them (the sanitizers' allocators do) and hang.
 *   nkc_peer URL PREFIX set KEY VALUE [TTL_MS]  exit 0 when cache_set returned CACHE_OK
 *   nkc_peer URL PREFIX del KEY           exit 0 when cache_del returned CACHE_OK */
#include <nakkucache.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 5 || (strcmp(argv[3], "set") == 0 && argc < 6)) {
        fprintf(stderr, "usage: nkc_peer URL PREFIX set KEY VALUE | del KEY\n");
        return 2;
    }
    char err[256] = "";
    cache_config_t *cfg = cache_config_new();
    cache_t *c = NULL;
    if (!cfg || cache_config_set(cfg, "l2.url", argv[1], err, sizeof(err)) != CACHE_OK ||
        cache_config_set(cfg, "l2.key_prefix", argv[2], err, sizeof(err)) != CACHE_OK ||
        cache_config_set(cfg, "ttl_jitter", "0", err, sizeof(err)) != CACHE_OK || /* exact TTLs */
        cache_open(&c, cfg, err, sizeof(err)) != CACHE_OK) {
        fprintf(stderr, "nkc_peer: %s\n", err);
        cache_config_free(cfg);
        return 3;
    }
    const char *key = argv[4];
    uint64_t ttl = argc > 6 ? strtoull(argv[6], NULL, 10) : 0;
    cache_err_t rc = strcmp(argv[3], "set") == 0
                         ? cache_set(c, key, strlen(key), argv[5], strlen(argv[5]), ttl)
                         : cache_del(c, key, strlen(key));
    if (rc != CACHE_OK)
        fprintf(stderr, "nkc_peer: %s\n", cache_strerror(rc));
    cache_close(c);
    cache_config_free(cfg);
    return rc == CACHE_OK ? 0 : 1;
}
