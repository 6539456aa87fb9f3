/* Observability without Redis: the Prometheus text passes a strict 0.0.4 checker
 * (and the checker rejects malformed text), counters and histograms move with known
 * operations, cache_stats_get honours struct_size, and health reports pass, and fail
 * while the cache closes. */
#include "observe_helpers.h"
#include "stats.h"

NKC_TEST_FIXTURE((void)0)
TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 60);

static cache_t *open_with(int loader)
{
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "ttl_jitter", "0");
    if (loader)
        cache_config_set_loader(cfg, fake_loader, &db);
    cache_t *cache = open_or_die(cfg);
    cache_config_free(cfg);
    return cache;
}

static double metric(cache_t *cache, const char *series)
{
    char *text = metrics_text(cache);
    double v = prom_value(text, series);
    cache_free(text);
    cr_assert(!isnan(v), "no series %s", series);
    return v;
}

/* ---- the checker itself ---- */

static const char good[] = "# HELP x_total Things.\n"
                           "# TYPE x_total counter\n"
                           "x_total{kind=\"a\\\"b\\\\c\\nd\"} 3\n"
                           "x_total{kind=\"e\",} 1e3 1700000000000\n"
                           "# some comment\n"
                           "\n"
                           "# HELP h_seconds Latency.\n"
                           "# TYPE h_seconds histogram\n"
                           "h_seconds_bucket{le=\"0.5\"} 1\n"
                           "h_seconds_bucket{le=\"1\"} 2\n"
                           "h_seconds_bucket{le=\"+Inf\"} 2\n"
                           "h_seconds_sum 1.25\n"
                           "h_seconds_count 2\n"
                           "# HELP g A gauge.\n"
                           "# TYPE g gauge\n"
                           "g -Inf\n"
                           "g{a=\"1\"} NaN\n";

Test(metrics, checker_accepts_valid_text)
{
    char err[256] = "";
    cr_assert_eq(promcheck(good, err, sizeof(err)), 0, "%s", err);
}

/* Each case: the valid text with one defect, and a word of the expected message. */
static const struct {
    const char *text, *why;
} bad_cases[] = {
    {"# HELP a_total A.\n# TYPE a_total counter\na_total 1", "newline"},
    {"", "newline"},
    {"# HELP a_total A.\n# TYPE a_total counter\n9a_total 1\n", "metric name"},
    {"# HELP a_total A.\n# TYPE a_total counter\na-b_total 1\n", "blank"},
    {"a_total 1\n# HELP a_total A.\n# TYPE a_total counter\n", "before its"},
    {"# TYPE a_total counter\na_total 1\n", "before its"},
    {"# HELP a_total A.\na_total 1\n", "before its"},
    {"# HELP a A.\n# TYPE a counter\na 1\n", "_total"},
    {"# HELP a_total A.\n# TYPE a_total counter\n# TYPE a_total counter\n", "second # TYPE"},
    {"# HELP a_total A.\n# HELP a_total B.\n", "second # HELP"},
    {"# HELP a_total A.\n# TYPE a_total countr\n", "unknown type"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# HELP b B.\n# TYPE b gauge\n"
     "b 1\na_total{x=\"1\"} 2\n", "two separate groups"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# HELP a_total again\n",
     "after its samples"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{x=\"1\"} 2\n",
     "duplicate"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"2\"} 1\n"
     "a_total{y=\"2\",x=\"1\"} 2\n", "duplicate"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",x=\"2\"} 1\n", "twice"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"a\\tb\"} 1\n", "escape"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"ab} 1\n", "unterminated"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total{x=ab} 1\n", "expected"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total{1x=\"a\"} 1\n", "label name"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total{__x=\"a\"} 1\n", "reserved"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"a\" y=\"b\"} 1\n", "expected"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total 1.2.3\n", "bad value"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total 0x10\n", "bad value"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total infinity\n", "bad value"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total\n", "blank"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total 1 12x\n", "trailing"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total 1 \n", "timestamp"},
    {"# HELP a_total A.\n# TYPE a_total counter\na_total -1\n", "negative"},
    {"# HELP a_total A\\x.\n", "escape"},
    {"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"0.5\"} 2\n"
     "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n", "not above"},
    {"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"1\"} 2\n", "duplicate"},
    {"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 3\nh_bucket{le=\"1\"} 2\n"
     "h_bucket{le=\"+Inf\"} 3\nh_sum 1\nh_count 3\n", "cumulative"},
    {"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n", "+Inf"},
    {"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\n"
     "h_sum 1\nh_count 2\n", "!= _count"},
    {"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n", "_sum"},
    {"# HELP h H.\n# TYPE h histogram\nh_bucket 2\n", "le missing"},
    {"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"x\"} 2\n", "not a number"},
    {"# HELP h H.\n# TYPE h histogram\nh_count{le=\"1\"} 2\n", "non-bucket"},
    {"# HELP h H.\n# TYPE h histogram\nh 2\n", "without _bucket"},
    {"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"
     "# HELP h_count C.\n", "clashes"},
};

Test(metrics, checker_rejects_malformed_text)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        char err[512] = "";
        cr_assert_eq(promcheck(bad_cases[i].text, err, sizeof(err)), -1,
                     "case %zu accepted:\n%s", i, bad_cases[i].text);
        cr_assert(strstr(err, bad_cases[i].why), "case %zu: \"%s\" does not say \"%s\"", i, err,
                  bad_cases[i].why);
    }
}

/* ---- the library's output ---- */

static int allowed_label(const char *name, size_t n)
{
    static const char *const ok[] = {"tier", "result", "reason", "cause", "op", "state", "le"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strlen(ok[i]) == n && !strncmp(ok[i], name, n))
            return 1;
    return 0;
}

/* The project's naming rules, line by line: the prefix, no millisecond or
 * nanosecond units, histograms in seconds, labels only from the fixed set. */
static void check_naming(const char *text)
{
    for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
        const char *name = p;
        if (!strncmp(p, "# TYPE ", 7) || !strncmp(p, "# HELP ", 7))
            name = p + 7;
        cr_assert(!strncmp(name, "nakkucache_", 11), "no nakkucache_ prefix: %.60s", p);
        size_t len = strcspn(name, " {");
        cr_assert(!memmem(name, len, "_ms", 3) && !memmem(name, len, "_ns", 3),
                  "not a base unit: %.60s", name);
        if (!strncmp(p, "# TYPE ", 7) && strstr(p, " histogram\n") == name + len)
            cr_assert(!strncmp(name + len - 8, "_seconds", 8), "histogram not in seconds: %.60s", p);
        if (name[len] != '{')
            continue;
        for (const char *l = name + len + 1; *l != '}';) {
            size_t n = strcspn(l, "=");
            cr_assert(allowed_label(l, n), "label %.*s is not a fixed word", (int)n, l);
            l = strchr(l + n + 2, '"') + 1;
            if (*l == ',')
                l++;
        }
    }
}

Test(metrics, prometheus_text_passes_the_checker)
{
    c = open_with(1);
    char buf[64];
    cr_assert_eq(get_str(c, "a", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(get_str(c, "a", buf, sizeof(buf)), CACHE_OK);
    char *text = metrics_text(c);
    check_naming(text);
    cr_assert(strstr(text, "# TYPE nakkucache_loader_duration_seconds histogram\n"));
    cr_assert(strstr(text, "# TYPE nakkucache_l2_roundtrip_seconds histogram\n"));
    cr_assert(strstr(text, "nakkucache_hits_total{tier=\"l1\"} 1\n"), "%s", text);
    cr_assert(!strstr(text, "\"a\""), "a cache key appears in the metrics");
    cache_free(text);
}

Test(metrics, prometheus_rejects_null_arguments)
{
    c = open_with(0);
    char *text = (char *)"untouched";
    cr_assert_eq(cache_metrics_prometheus(NULL, &text), CACHE_EINVAL);
    cr_assert_null(text);
    cr_assert_eq(cache_metrics_prometheus(c, NULL), CACHE_EINVAL);
}

Test(metrics, counters_move_with_known_operations)
{
    c = open_with(1);
    char buf[64];
    cr_assert_eq(get_str(c, "k1", buf, sizeof(buf)), CACHE_OK); /* L1 miss, load */
    cr_assert_eq(get_str(c, "k1", buf, sizeof(buf)), CACHE_OK); /* L1 hit */
    cr_assert_eq(get_str(c, "k1", buf, sizeof(buf)), CACHE_OK); /* L1 hit */
    atomic_store(&db.mode, LOAD_NOTFOUND);
    cr_assert_eq(get_str(c, "k2", buf, sizeof(buf)), CACHE_ENOTFOUND); /* load: not found */
    cr_assert_eq(get_str(c, "k2", buf, sizeof(buf)), CACHE_ENOTFOUND); /* negative hit */
    atomic_store(&db.mode, LOAD_FAIL);
    cr_assert_eq(get_str(c, "k3", buf, sizeof(buf)), CACHE_ELOADER);
    cr_assert_eq(cache_set(c, "k4", 2, "v", 1, 0), CACHE_OK);
    cr_assert_eq(cache_del(c, "k4", 2), CACHE_OK);

    static const struct {
        const char *series;
        double want;
    } expected[] = {
        {"nakkucache_hits_total{tier=\"l1\"}", 3},
        {"nakkucache_misses_total{tier=\"l1\"}", 3},
        {"nakkucache_hits_total{tier=\"l2\"}", 0},
        {"nakkucache_l1_negative_hits_total", 1},
        {"nakkucache_loader_calls_total", 3},
        {"nakkucache_loader_results_total{result=\"ok\"}", 1},
        {"nakkucache_loader_results_total{result=\"not_found\"}", 1},
        {"nakkucache_loader_results_total{result=\"failure\"}", 1},
        {"nakkucache_loader_duration_seconds_count", 3},
        {"nakkucache_loader_duration_seconds_bucket{le=\"+Inf\"}", 3},
        {"nakkucache_writes_total{op=\"set\"}", 1},
        {"nakkucache_writes_total{op=\"del\"}", 1},
        {"nakkucache_l1_entries", 2}, /* k1 and the negative k2 */
        {"nakkucache_l2_configured", 0},
        {"nakkucache_l2_breaker_state{state=\"closed\"}", 0},
        {"nakkucache_l2_roundtrip_seconds_count", 0},
    };
    char *text = metrics_text(c);
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        cr_assert_eq(prom_value(text, expected[i].series), expected[i].want, "%s is %g, not %g",
                     expected[i].series, prom_value(text, expected[i].series), expected[i].want);
    cr_assert_gt(prom_value(text, "nakkucache_l1_bytes"), 0);
    cache_free(text);

    cache_stats_t s = {.struct_size = sizeof(s)};
    cr_assert_eq(cache_stats_get(c, &s), CACHE_OK);
    cr_assert_eq(s.l1_hits, 3);
    cr_assert_eq(s.l1_misses, 3);
    cr_assert_eq(s.loader_calls, 3);
    cr_assert_eq(s.loader_ok, 1);
    cr_assert_eq(s.loader_not_found, 1);
    cr_assert_eq(s.loader_failures, 1);
    cr_assert_eq(s.sets, 1);
    cr_assert_eq(s.dels, 1);
    cr_assert_eq(s.l1_entries, 2);
    cr_assert_eq(s.l2_configured, 0);
    cr_assert_eq(s.l2_breaker, CACHE_BREAKER_NONE);
    cr_assert_eq(s.struct_size, sizeof(s));
}

Test(metrics, loader_latency_lands_in_its_bucket)
{
    c = open_with(1);
    atomic_store(&db.delay_ms, 20);
    char buf[64];
    cr_assert_eq(get_str(c, "slow", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(metric(c, "nakkucache_loader_duration_seconds_bucket{le=\"0.01\"}"), 0);
    cr_assert_eq(metric(c, "nakkucache_loader_duration_seconds_bucket{le=\"+Inf\"}"), 1);
    cr_assert_geq(metric(c, "nakkucache_loader_duration_seconds_sum"), 0.02);

    char *json = cache_stats_json(c);
    json_t *root = json_loads(json, 0, NULL);
    cache_free(json);
    json_t *h = json_object_get(json_object_get(root, "loader"), "latency_seconds");
    cr_assert_eq(json_integer_value(json_object_get(h, "count")), 1);
    cr_assert_geq(json_real_value(json_object_get(h, "sum_seconds")), 0.02);
    json_t *le = json_object_get(h, "le_seconds"), *cum = json_object_get(h, "cumulative");
    cr_assert_eq(json_array_size(le), NKC_HIST_BOUNDS);
    cr_assert_eq(json_array_size(cum), NKC_HIST_BOUNDS);
    cr_assert_float_eq(json_real_value(json_array_get(le, 0)), 1e-6, 1e-12);
    cr_assert_float_eq(json_real_value(json_array_get(le, NKC_HIST_BOUNDS - 1)), 10.0, 1e-9);
    json_decref(root);
}

Test(metrics, histogram_bucket_edges)
{
    struct nkc_hist *h = nkc_hist_new();
    cr_assert_not_null(h);
    nkc_hist_record(h, -5);           /* clamped to 0: the first bucket */
    nkc_hist_record(h, 1000);         /* exactly 1 us: le="1e-06" is inclusive */
    nkc_hist_record(h, 1001);         /* the next bucket, le="2e-06" */
    nkc_hist_record(h, 10000000000);  /* exactly 10 s: the last finite bucket */
    nkc_hist_record(h, 10000000001);  /* overflow: only +Inf */
    struct nkc_hist_snapshot s;
    nkc_hist_read(h, &s);
    cr_assert_eq(s.n[0], 2);
    cr_assert_eq(s.n[1], 1);
    cr_assert_eq(s.n[NKC_HIST_BOUNDS - 1], 1);
    cr_assert_eq(s.n[NKC_HIST_BOUNDS], 1);
    cr_assert_eq(s.count, 5);
    cr_assert_eq(s.sum_ns, 1000 + 1001 + 10000000000ull + 10000000001ull);
    for (int i = 1; i < NKC_HIST_BOUNDS; i++)
        cr_assert_gt(nkc_hist_bounds_ns[i], nkc_hist_bounds_ns[i - 1]);
    nkc_hist_free(h);
}

/* ---- cache_stats_get and struct_size ---- */

Test(metrics, stats_get_fills_only_what_struct_size_covers)
{
    c = open_with(1);
    char buf[64];
    cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);

    /* an "old" caller whose struct ends after l1_misses */
    cache_stats_t s;
    memset(&s, 0xAB, sizeof(s));
    s.struct_size = offsetof(cache_stats_t, l1_misses) + sizeof(s.l1_misses);
    cr_assert_eq(cache_stats_get(c, &s), CACHE_OK);
    cr_assert_eq(s.l1_hits, 1);
    cr_assert_eq(s.l1_misses, 1);
    cr_assert_eq(s.l1_negative_hits, 0xABABABABABABABABull, "a field past struct_size was written");
    cr_assert_eq(s.struct_size, offsetof(cache_stats_t, l1_misses) + sizeof(s.l1_misses));

    /* a size ending inside a field: that field is not written at all */
    memset(&s, 0xAB, sizeof(s));
    s.struct_size = offsetof(cache_stats_t, l1_misses) + 4;
    cr_assert_eq(cache_stats_get(c, &s), CACHE_OK);
    cr_assert_eq(s.l1_hits, 1);
    cr_assert_eq(s.l1_misses, 0xABABABABABABABABull);

    /* a newer caller's longer struct: the unknown tail is left alone */
    struct {
        cache_stats_t s;
        uint64_t future;
    } big;
    memset(&big, 0xCD, sizeof(big));
    big.s.struct_size = sizeof(big);
    cr_assert_eq(cache_stats_get(c, &big.s), CACHE_OK);
    cr_assert_eq(big.s.loader_calls, 1);
    cr_assert_eq(big.s.retry_dropped, 0);
    cr_assert_eq(big.future, 0xCDCDCDCDCDCDCDCDull);
}

Test(metrics, stats_get_rejects_a_struct_too_small)
{
    c = open_with(0);
    cache_stats_t s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(cache_stats_get(c, &s), CACHE_EINVAL); /* struct_size 0 */
    s.struct_size = offsetof(cache_stats_t, l1_hits) + 7;
    cr_assert_eq(cache_stats_get(c, &s), CACHE_EINVAL);
    cr_assert_eq(s.l1_hits, 0);
    s.struct_size = sizeof(s);
    cr_assert_eq(cache_stats_get(NULL, &s), CACHE_EINVAL);
    cr_assert_eq(cache_stats_get(c, NULL), CACHE_EINVAL);
    cr_assert_eq(cache_stats_get(c, &s), CACHE_OK);
}

/* ---- health ---- */

Test(metrics, health_without_l2_is_pass)
{
    c = open_with(0);
    json_t *h = health(c);
    cr_assert_str_eq(status_of(h), "pass");
    cr_assert(json_is_false(json_object_get(json_object_get(h, "l2"), "configured")));
    cr_assert(json_is_null(json_object_get(json_object_get(h, "l2"), "ping_ms")));
    cr_assert(json_is_null(json_object_get(json_object_get(h, "l2"), "breaker")));
    cr_assert(json_is_false(json_object_get(json_object_get(h, "loader"), "configured")));
    cr_assert(json_is_false(json_object_get(h, "closing")));
    cr_assert(json_is_string(json_object_get(h, "reason")));
    json_decref(h);
    cr_assert_null(cache_health_json(NULL));
}

Test(metrics, health_with_a_loader_only_is_pass)
{
    c = open_with(1);
    char buf[64];
    cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    json_t *h = health(c);
    cr_assert_str_eq(status_of(h), "pass");
    cr_assert(json_is_true(json_object_get(json_object_get(h, "loader"), "configured")));
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(h, "l1"), "entries")), 1);
    json_decref(h);
}

static void *get_blocked(void *arg)
{
    char buf[64];
    (void)arg;
    get_str(c, "blocked", buf, sizeof(buf));
    return NULL;
}

static void *close_cache(void *arg)
{
    cache_close(arg);
    return NULL;
}

/* While cache_close waits for a call in flight, health says fail (closing) and the
 * other readers return CACHE_ECLOSED. */
Test(metrics, health_fails_while_closing)
{
    c = open_with(1);
    atomic_store(&db.mode, LOAD_BLOCK);
    pthread_t getter, closer;
    cr_assert_eq(pthread_create(&getter, NULL, get_blocked, NULL), 0);
    wait_flag(&db.entered);
    cr_assert_eq(pthread_create(&closer, NULL, close_cache, c), 0);
    const char *status = "pass";
    json_t *h = NULL;
    for (int i = 0; i < 5000 && !strcmp(status, "pass"); i++) {
        json_decref(h);
        h = health(c); /* c stays valid: close cannot finish before the load does */
        status = status_of(h);
        if (!strcmp(status, "pass"))
            usleep(1000);
    }
    cr_assert_str_eq(status, "fail");
    cr_assert(json_is_true(json_object_get(h, "closing")));
    json_decref(h);
    /* the other readers refuse too, without touching what close tears down */
    char *text = (char *)"untouched";
    cr_assert_eq(cache_metrics_prometheus(c, &text), CACHE_ECLOSED);
    cr_assert_null(text);
    cache_stats_t s = {.struct_size = sizeof(s)};
    cr_assert_eq(cache_stats_get(c, &s), CACHE_ECLOSED);
    cr_assert_null(cache_stats_json(c));
    atomic_store(&db.release, 1);
    pthread_join(getter, NULL);
    pthread_join(closer, NULL);
    c = NULL; /* closed */
}
