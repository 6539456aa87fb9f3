/* Configuration: units, ranges, messages that name the property, JSON files
 * (all or nothing), l2.url forms, and docs/CONFIGURATION.md kept in step. */
#include "helpers.h"

#include <stdlib.h>

#ifndef NKC_SOURCE_DIR
#define NKC_SOURCE_DIR "."
#endif

static cache_config_t *cfg;
static void setup(void) { cfg = cache_config_new(); cr_assert_not_null(cfg); }
static void teardown(void) { cache_config_free(cfg); }
TestSuite(config, .init = setup, .fini = teardown);

Test(config, byte_units)
{
    cfg_set(cfg, "l1.max_bytes", "64MiB");
    cr_assert_eq(cfg->v.l1_max_bytes, 64ull << 20);
    cfg_set(cfg, "l1.max_bytes", "3 GiB");
    cr_assert_eq(cfg->v.l1_max_bytes, 3ull << 30);
    cfg_set(cfg, "l1.max_bytes", "70000");
    cr_assert_eq(cfg->v.l1_max_bytes, 70000);
    cfg_set(cfg, "max_key_bytes", "1K");
    cr_assert_eq(cfg->v.max_key_bytes, 1024);
}

Test(config, durations_and_bools)
{
    cfg_set(cfg, "l1.ttl_ms", "5s");
    cr_assert_eq(cfg->v.l1_ttl_ms, 5000);
    cfg_set(cfg, "l1.ttl_ms", "2min");
    cr_assert_eq(cfg->v.l1_ttl_ms, 120000);
    cfg_set(cfg, "l2.tracking", "off");
    cr_assert_eq(cfg->v.l2_tracking, 0);
    cfg_set(cfg, "l2.tracking", "TRUE");
    cr_assert_eq(cfg->v.l2_tracking, 1);
    cfg_set(cfg, "ttl_jitter", "0.25");
    cr_assert_float_eq(cfg->v.ttl_jitter, 0.25, 1e-12);
}

static void expect_bad(const char *name, const char *value, const char *must_mention)
{
    char err[256] = "";
    cache_config_t *before = cache_config_new();
    cr_assert_eq(cache_config_set(cfg, name, value, err, sizeof(err)), CACHE_EINVAL, "%s=%s", name,
                 value);
    cr_assert(strstr(err, must_mention) != NULL, "message \"%s\" should mention \"%s\"", err,
              must_mention);
    /* unchanged on error */
    cr_assert_eq(cfg->v.l1_max_bytes, before->v.l1_max_bytes);
    cache_config_free(before);
}

Test(config, errors_name_the_property)
{
    expect_bad("l1.nonsense", "1", "l1.nonsense");
    expect_bad("l1.max_bytes", "", "l1.max_bytes");
    expect_bad("l1.max_bytes", "-1", "l1.max_bytes");
    expect_bad("l1.max_bytes", "12XB", "l1.max_bytes");
    expect_bad("l1.max_bytes", "99999999999999999999999", "l1.max_bytes");  /* overflow */
    expect_bad("l1.max_bytes", "18446744073709551615GiB", "l1.max_bytes");  /* overflow */
    expect_bad("l1.max_bytes", "2TiB", "out of range");
    expect_bad("l1.max_bytes", "1", "out of range");
    expect_bad("l1.ttl_ms", "0", "l1.ttl_ms");
    expect_bad("l1.ttl_ms", "5 parsecs", "l1.ttl_ms");
    expect_bad("l1.stripes", "3", "power of two");
    expect_bad("ttl_jitter", "nan", "ttl_jitter");
    expect_bad("ttl_jitter", "0.9", "ttl_jitter");
    expect_bad("l2.tracking", "maybe", "l2.tracking");
    expect_bad("l2.pool_size", "0", "l2.pool_size");
    expect_bad("l2.url", "http://x", "l2.url");
    expect_bad("l2.url", "redis://host:99999", "port");
    expect_bad("l2.url", "redis://host/notanumber", "database");
}

Test(config, null_arguments)
{
    char err[128];
    cr_assert_eq(cache_config_set(NULL, "a", "b", err, sizeof(err)), CACHE_EINVAL);
    cr_assert_eq(cache_config_set(cfg, NULL, "b", err, sizeof(err)), CACHE_EINVAL);
    cr_assert_eq(cache_config_set(cfg, "l1.ttl_ms", NULL, NULL, 0), CACHE_EINVAL);
    cr_assert_eq(cache_config_load_json(cfg, NULL, NULL, 0), CACHE_EINVAL);
    cache_config_free(NULL);
    cache_config_set_loader(NULL, NULL, NULL);
}

Test(config, url_forms)
{
    struct nkc_url u;
    char err[200];
    cr_assert_eq(nkc_url_parse("redis://app:s%40cret@10.0.0.5:6380/3", &u, err, sizeof(err)),
                 CACHE_OK, "%s", err);
    cr_assert_str_eq(u.host, "10.0.0.5");
    cr_assert_eq(u.port, 6380);
    cr_assert_str_eq(u.user, "app");
    cr_assert_str_eq(u.password, "s@cret");
    cr_assert_eq(u.db, 3);
    nkc_url_free(&u);
    cr_assert_eq(nkc_url_parse("redis://:pw@[::1]", &u, err, sizeof(err)), CACHE_OK, "%s", err);
    cr_assert_str_eq(u.host, "::1");
    cr_assert_eq(u.port, 6379);
    cr_assert_null(u.user);
    cr_assert_str_eq(u.password, "pw");
    nkc_url_free(&u);
    cr_assert_eq(nkc_url_parse("unix:///run/redis.sock?db=2", &u, err, sizeof(err)), CACHE_OK);
    cr_assert_str_eq(u.path, "/run/redis.sock");
    cr_assert_eq(u.db, 2);
    nkc_url_free(&u);
    /* a password never appears in an error message */
    char msg[256] = "";
    cr_assert_eq(cache_config_set(cfg, "l2.url", "redis://u:hunter2@h:0", msg, sizeof(msg)),
                 CACHE_EINVAL);
    cr_assert_null(strstr(msg, "hunter2"), "%s", msg);
}

static char *write_temp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/nkc-config-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

Test(config, json_file)
{
    char err[256] = "";
    char *path = write_temp("{\"l1.max_bytes\": \"32MiB\", \"l1.ttl_ms\": 30000,"
                            " \"l2.tracking\": false, \"ttl_jitter\": 0.05}");
    cr_assert_eq(cache_config_load_json(cfg, path, err, sizeof(err)), CACHE_OK, "%s", err);
    cr_assert_eq(cfg->v.l1_max_bytes, 32ull << 20);
    cr_assert_eq(cfg->v.l1_ttl_ms, 30000);
    cr_assert_eq(cfg->v.l2_tracking, 0);
    unlink(path);
}

Test(config, json_file_all_or_nothing)
{
    char err[256] = "";
    char *path = write_temp("{\"l1.ttl_ms\": 1234, \"l1.max_entries\": \"lots\"}");
    cr_assert_eq(cache_config_load_json(cfg, path, err, sizeof(err)), CACHE_EINVAL);
    cr_assert(strstr(err, "l1.max_entries") != NULL, "%s", err);
    cr_assert_eq(cfg->v.l1_ttl_ms, 60000, "nothing applied on error");
    unlink(path);
    path = write_temp("{\"l1.ttl_ms\": [1]}");
    cr_assert_eq(cache_config_load_json(cfg, path, err, sizeof(err)), CACHE_EINVAL);
    unlink(path);
    path = write_temp("[1, 2]");
    cr_assert_eq(cache_config_load_json(cfg, path, err, sizeof(err)), CACHE_EINVAL);
    unlink(path);
    path = write_temp("{\"l1.ttl_ms\": 1, ");
    cr_assert_eq(cache_config_load_json(cfg, path, err, sizeof(err)), CACHE_EINVAL);
    cr_assert(strstr(err, path) != NULL, "message names the file: %s", err);
    unlink(path);
    cr_assert_eq(cache_config_load_json(cfg, "/nonexistent/nkc.json", err, sizeof(err)),
                 CACHE_EINVAL);
}

Test(config, docs_match_the_table)
{
    char *doc = nkc_config_doc_markdown();
    cr_assert_not_null(doc);
    const char *out = getenv("NKC_WRITE_CONFIG_DOC");
    if (out) {
        FILE *f = fopen(out, "w");
        cr_assert_not_null(f);
        fputs(doc, f);
        fclose(f);
    }
    FILE *f = fopen(NKC_SOURCE_DIR "/docs/CONFIGURATION.md", "r");
    cr_assert_not_null(f, "docs/CONFIGURATION.md is missing");
    static char file[1 << 16];
    size_t n = fread(file, 1, sizeof(file) - 1, f);
    fclose(f);
    file[n] = '\0';
    /* the generated table is the start of the file; prose may follow it */
    cr_assert(strncmp(file, doc, strlen(doc)) == 0,
              "docs/CONFIGURATION.md differs from the property table; regenerate it with "
              "NKC_WRITE_CONFIG_DOC=docs/CONFIGURATION.md test_config");
    free(doc);
}

Test(config, strerror_covers_every_code)
{
    for (int e = 0; e < CACHE_ERR_COUNT_; e++)
        cr_assert(strlen(cache_strerror((cache_err_t)e)) > 0);
    cr_assert_str_eq(cache_strerror((cache_err_t)999), "unknown error code");
    cr_assert_str_eq(cache_strerror(CACHE_ENOTFOUND), "no value at any level");
}
