/* What the observability tests share: the metrics text checked by promcheck, one
 * series' value from it, and the health answer parsed. */
#ifndef NKC_OBSERVE_HELPERS_H
#define NKC_OBSERVE_HELPERS_H

#include "helpers.h"
#include "promcheck.h"

#include <math.h>

/* cache_metrics_prometheus's text, asserted valid (free with cache_free). */
static inline char *metrics_text(cache_t *cache)
{
    char *text = NULL;
    cr_assert_eq(cache_metrics_prometheus(cache, &text), CACHE_OK);
    cr_assert_not_null(text);
    char err[512] = "";
    cr_assert_eq(promcheck(text, err, sizeof(err)), 0, "promcheck: %s\n%s", err, text);
    return text;
}

/* The value of one series ("name{labels}" exactly as printed); NAN when absent. */
static inline double prom_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

/* cache_health_json, parsed (a new reference). */
static inline json_t *health(cache_t *cache)
{
    char *text = cache_health_json(cache);
    cr_assert_not_null(text);
    json_t *root = json_loads(text, 0, NULL);
    cr_assert_not_null(root, "not JSON: %s", text);
    cache_free(text);
    return root;
}

static inline const char *status_of(json_t *h)
{
    return json_string_value(json_object_get(h, "status"));
}

#endif
