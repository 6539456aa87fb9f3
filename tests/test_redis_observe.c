/* Observability with Redis: health is pass while Redis answers (with the PING's
 * latency), warn when it stalls (SIGSTOP) and a loader serves, fail when it stalls
 * and there is no loader, pass again once it answers; the L2 round-trip histogram
 * grows with traffic, and the Prometheus text with Redis passes the checker. */
#include "observe_helpers.h"
#include "redis_helpers.h"

NKC_REDIS_FIXTURE()
TestSuite(observe, .init = setup, .fini = teardown, .timeout = 60);

static json_t *l2_of(json_t *h) { return json_object_get(h, "l2"); }

static void stop_redis(void)
{
    stopped = redis_pid();
    cr_assert_eq(kill(stopped, SIGSTOP), 0);
}

static void resume_redis(void)
{
    cr_assert_eq(kill(stopped, SIGCONT), 0);
    stopped = 0;
}

Test(observe, health_pass_with_redis_reports_the_ping)
{
    c = open_consuming(redis_config_fast("obs-pass:", &db));
    json_t *h = health(c);
    cr_assert_str_eq(status_of(h), "pass", "%s", json_string_value(json_object_get(h, "reason")));
    cr_assert(json_is_true(json_object_get(l2_of(h), "configured")));
    cr_assert(json_is_true(json_object_get(l2_of(h), "ok")));
    json_t *ping = json_object_get(l2_of(h), "ping_ms");
    cr_assert(json_is_real(ping), "ping_ms is not a number");
    cr_assert_gt(json_real_value(ping), 0.0);
    cr_assert_lt(json_real_value(ping), 1000.0); /* bounded by the deadline, not a speed claim */
    cr_assert(json_is_null(json_object_get(l2_of(h), "error")));
    cr_assert_str_eq(json_string_value(json_object_get(l2_of(h), "breaker")), "closed");
    json_decref(h);
}

Test(observe, health_warns_when_redis_stalls_and_the_loader_serves)
{
    c = open_consuming(redis_config_fast("obs-warn:", &db));
    stop_redis();
    json_t *h = health(c);
    cr_assert_str_eq(status_of(h), "warn");
    cr_assert(json_is_false(json_object_get(l2_of(h), "ok")));
    cr_assert(json_is_null(json_object_get(l2_of(h), "ping_ms")));
    cr_assert_str_eq(json_string_value(json_object_get(l2_of(h), "error")),
                     cache_strerror(CACHE_ETIMEOUT));
    json_decref(h);
    char buf[64]; /* and the claim holds: the loader serves */
    cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:k:0");

    resume_redis(); /* pass again once Redis answers (after any reconnect back-off) */
    const char *status = "warn";
    for (int i = 0; i < 100 && strcmp(status, "pass"); i++) {
        h = health(c);
        status = strcmp(status_of(h), "pass") ? "warn" : "pass";
        json_decref(h);
        if (strcmp(status, "pass"))
            usleep(20000);
    }
    cr_assert_str_eq(status, "pass");
}

Test(observe, health_fails_when_redis_stalls_without_a_loader)
{
    c = open_consuming(redis_config_fast("obs-fail:", NULL));
    json_t *h = health(c);
    cr_assert_str_eq(status_of(h), "pass");
    cr_assert(json_is_false(json_object_get(json_object_get(h, "loader"), "configured")));
    json_decref(h);
    stop_redis();
    h = health(c);
    cr_assert_str_eq(status_of(h), "fail");
    cr_assert(strstr(json_string_value(json_object_get(h, "reason")), "no loader"));
    json_decref(h);
}

/* The breaker open (Redis answered no call) is down too, whatever one PING says. */
Test(observe, health_reports_an_open_breaker)
{
    cache_config_t *cfg = redis_config_fast("obs-breaker:", &db);
    cfg_set(cfg, "l2.breaker.failures", "1");
    c = open_consuming(cfg);
    stop_redis();
    char buf[64];
    cr_assert_eq(get_str(c, "k", buf, sizeof(buf)), CACHE_OK); /* times out, trips */
    cache_stats_t s = {.struct_size = sizeof(s)};
    cr_assert_eq(cache_stats_get(c, &s), CACHE_OK);
    cr_assert_eq(s.l2_breaker_trips, 1);
    cr_assert_eq(s.l2_timeouts, s.l2_errors);
    cr_assert_geq(s.l2_timeouts, 1);
    json_t *h = health(c);
    cr_assert_str_eq(status_of(h), "warn");
    json_decref(h);
}

Test(observe, l2_roundtrip_histogram_grows_with_traffic)
{
    c = open_consuming(redis_config_fast("obs-hist:", &db));
    char *text = metrics_text(c);
    double before = prom_value(text, "nakkucache_l2_roundtrip_seconds_count");
    cr_assert_eq(prom_value(text, "nakkucache_l2_configured"), 1);
    cr_assert_eq(prom_value(text, "nakkucache_l2_breaker_state{state=\"closed\"}"), 1);
    cr_assert_eq(prom_value(text, "nakkucache_l2_breaker_state{state=\"open\"}"), 0);
    cache_free(text);
    char key[16], buf[64];
    for (int i = 0; i < 10; i++) { /* each: at least one pipeline (lookup-or-lease) */
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(get_str(c, key, buf, sizeof(buf)), CACHE_OK);
    }
    text = metrics_text(c);
    double after = prom_value(text, "nakkucache_l2_roundtrip_seconds_count");
    cr_assert_geq(after - before, 10, "count %g -> %g", before, after);
    cr_assert_eq(prom_value(text, "nakkucache_l2_roundtrip_seconds_bucket{le=\"+Inf\"}"), after);
    cr_assert_gt(prom_value(text, "nakkucache_l2_roundtrip_seconds_sum"), 0);
    cr_assert_geq(prom_value(text, "nakkucache_misses_total{tier=\"l2\"}"), 10);
    cache_free(text);

    cache_stats_t s = {.struct_size = sizeof(s)};
    cr_assert_eq(cache_stats_get(c, &s), CACHE_OK);
    cr_assert_eq(s.l2_configured, 1);
    cr_assert_eq(s.l2_breaker, CACHE_BREAKER_CLOSED);
    cr_assert_geq(s.l2_roundtrips, (uint64_t)after);
    cr_assert_gt(s.l2_roundtrip_ns, 0);
    cr_assert_geq(s.l2_commands, s.l2_roundtrips);
    cr_assert_geq(s.l2_misses, 10);

    char *json = cache_stats_json(c);
    json_t *root = json_loads(json, 0, NULL);
    cache_free(json);
    json_t *h = json_object_get(json_object_get(root, "l2"), "roundtrip_seconds");
    cr_assert_geq(json_integer_value(json_object_get(h, "count")), (json_int_t)after);
    json_decref(root);
}
