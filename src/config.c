/*
 * Configuration: parsing and validating named properties (librdkafka style), JSON
 * files through jansson, l2.url parsing, and rendering the property table as
 * docs/CONFIGURATION.md. A failed set leaves the configuration unchanged.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct prop {
    const char *name;
    enum nkc_kind kind;
    const char *def;
    double lo, hi;
    const char *doc;
    size_t offset;
};

static const struct prop props[] = {
#define NKC_ROW(field, name, kind, def, lo, hi, doc) \
    {name, kind, def, lo, hi, doc, offsetof(struct nkc_config, field)},
    NKC_PROPERTIES(NKC_ROW)
#undef NKC_ROW
};
#define N_PROPS (sizeof(props) / sizeof(props[0]))

void nkc_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static const struct prop *find_prop(const char *name)
{
    for (size_t i = 0; i < N_PROPS; i++)
        if (strcmp(props[i].name, name) == 0)
            return &props[i];
    return NULL;
}

/* Parses "<digits>[ ]<suffix>" with the suffix's multiplier from `units`. */
struct unit {
    const char *suffix;
    uint64_t mult;
};
static const struct unit byte_units[] = {{"", 1},           {"B", 1},
                                         {"KiB", 1ULL << 10}, {"K", 1ULL << 10},
                                         {"MiB", 1ULL << 20}, {"M", 1ULL << 20},
                                         {"GiB", 1ULL << 30}, {"G", 1ULL << 30},
                                         {"TiB", 1ULL << 40}, {"T", 1ULL << 40},
                                         {NULL, 0}};
static const struct unit ms_units[] = {{"", 1},         {"ms", 1},         {"s", 1000},
                                       {"min", 60000}, {"h", 3600000},   {NULL, 0}};
static const struct unit count_units[] = {{"", 1}, {NULL, 0}};

static int parse_scaled(const char *text, const struct unit *units, uint64_t *out)
{
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (!isdigit((unsigned char)*p))
        return -1; /* rejects "", "-1", "+3", "0x10" */
    uint64_t v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    while (isspace((unsigned char)*p))
        p++;
    size_t n = strlen(p);
    while (n > 0 && isspace((unsigned char)p[n - 1]))
        n--;
    for (const struct unit *u = units; u->suffix; u++) {
        if (strlen(u->suffix) == n && strncmp(p, u->suffix, n) == 0) {
            if (v > UINT64_MAX / u->mult)
                return -1;
            *out = v * u->mult;
            return 0;
        }
    }
    return -1;
}

static int parse_bool(const char *t, int *out)
{
    static const char *yes[] = {"on", "true", "yes", "1"}, *no[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(t, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(t, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static const char *kind_hint(enum nkc_kind k)
{
    switch (k) {
    case NKC_BYTES: return "a byte size such as 4096, 64KiB, 64MiB or 1GiB";
    case NKC_COUNT: return "a non-negative integer";
    case NKC_MS: return "a duration in milliseconds, or with a unit: 250ms, 5s, 2min, 1h";
    case NKC_BOOL: return "on or off";
    case NKC_FRAC: return "a decimal number";
    case NKC_TEXT: return "text";
    }
    return "a value";
}

static int is_pow2_or_zero(uint64_t v) { return (v & (v - 1)) == 0; }

static cache_err_t check_text(const struct prop *p, const char *value, char *errbuf, size_t errlen)
{
    if (strcmp(p->name, "l2.url") == 0 && value[0] != '\0') {
        struct nkc_url u;
        char msg[200];
        if (nkc_url_parse(value, &u, msg, sizeof(msg)) != CACHE_OK) {
            nkc_errf(errbuf, errlen, "property \"%s\": %s", p->name, msg);
            return CACHE_EINVAL;
        }
        nkc_url_free(&u);
    }
    if (strcmp(p->name, "l2.key_prefix") == 0 && strlen(value) > 1024) {
        nkc_errf(errbuf, errlen, "property \"%s\": longer than 1024 bytes", p->name);
        return CACHE_EINVAL;
    }
    return CACHE_OK;
}

static cache_err_t set_number(struct nkc_config *cfg, const struct prop *p, const char *value,
                              char *errbuf, size_t errlen)
{
    void *slot = (char *)cfg + p->offset;
    if (p->kind == NKC_FRAC) {
        char *end;
        errno = 0;
        double d = strtod(value, &end);
        if (end == value || *end != '\0' || errno != 0 || !isfinite(d) || d < p->lo || d > p->hi) {
            nkc_errf(errbuf, errlen, "property \"%s\": \"%s\" is not a number in [%g, %g]",
                     p->name, value, p->lo, p->hi);
            return CACHE_EINVAL;
        }
        *(double *)slot = d;
        return CACHE_OK;
    }
    const struct unit *units = p->kind == NKC_BYTES ? byte_units
                               : p->kind == NKC_MS  ? ms_units
                                                    : count_units;
    uint64_t v;
    if (parse_scaled(value, units, &v) != 0) {
        nkc_errf(errbuf, errlen, "property \"%s\": \"%s\" is not %s", p->name, value,
                 kind_hint(p->kind));
        return CACHE_EINVAL;
    }
    if ((double)v < p->lo || (double)v > p->hi) {
        nkc_errf(errbuf, errlen, "property \"%s\": %llu is out of range [%.0f, %.0f]", p->name,
                 (unsigned long long)v, p->lo, p->hi);
        return CACHE_EINVAL;
    }
    if (strcmp(p->name, "l1.stripes") == 0 && !is_pow2_or_zero(v)) {
        nkc_errf(errbuf, errlen, "property \"%s\": %llu is not a power of two (or 0 = auto)",
                 p->name, (unsigned long long)v);
        return CACHE_EINVAL;
    }
    *(uint64_t *)slot = v;
    return CACHE_OK;
}

static cache_err_t set_prop(struct nkc_config *cfg, const char *name, const char *value,
                            char *errbuf, size_t errlen)
{
    const struct prop *p = find_prop(name);
    if (!p) {
        nkc_errf(errbuf, errlen, "unknown property \"%s\"", name);
        return CACHE_EINVAL;
    }
    void *slot = (char *)cfg + p->offset;
    if (p->kind == NKC_BOOL) {
        int b;
        if (parse_bool(value, &b) != 0) {
            nkc_errf(errbuf, errlen, "property \"%s\": \"%s\" is not on or off", name, value);
            return CACHE_EINVAL;
        }
        *(int *)slot = b;
        return CACHE_OK;
    }
    if (p->kind != NKC_TEXT)
        return set_number(cfg, p, value, errbuf, errlen);
    cache_err_t err = check_text(p, value, errbuf, errlen);
    if (err != CACHE_OK)
        return err;
    char *copy = strdup(value);
    if (!copy)
        return CACHE_ENOMEM;
    free(*(char **)slot);
    *(char **)slot = copy;
    return CACHE_OK;
}

cache_config_t *cache_config_new(void)
{
    cache_config_t *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    for (size_t i = 0; i < N_PROPS; i++) {
        if (set_prop(&cfg->v, props[i].name, props[i].def, NULL, 0) != CACHE_OK) {
            cache_config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}

void nkc_config_clear(struct nkc_config *cfg)
{
    for (size_t i = 0; i < N_PROPS; i++) {
        if (props[i].kind == NKC_TEXT) {
            char **slot = (char **)((char *)cfg + props[i].offset);
            free(*slot);
            *slot = NULL;
        }
    }
}

int nkc_config_copy(struct nkc_config *dst, const struct nkc_config *src)
{
    *dst = *src;
    for (size_t i = 0; i < N_PROPS; i++) {
        if (props[i].kind != NKC_TEXT)
            continue;
        char **slot = (char **)((char *)dst + props[i].offset);
        *slot = NULL;
    }
    for (size_t i = 0; i < N_PROPS; i++) {
        if (props[i].kind != NKC_TEXT)
            continue;
        const char *s = *(char *const *)((const char *)src + props[i].offset);
        char **slot = (char **)((char *)dst + props[i].offset);
        if (s && !(*slot = strdup(s))) {
            nkc_config_clear(dst);
            return -1;
        }
    }
    return 0;
}

void cache_config_free(cache_config_t *cfg)
{
    if (!cfg)
        return;
    nkc_config_clear(&cfg->v);
    free(cfg);
}

cache_err_t cache_config_set(cache_config_t *cfg, const char *name, const char *value,
                             char *errbuf, size_t errlen)
{
    if (!cfg || !name || !value) {
        nkc_errf(errbuf, errlen, "cache_config_set: NULL %s",
                 !cfg ? "configuration" : !name ? "property name" : "value");
        return CACHE_EINVAL;
    }
    return set_prop(&cfg->v, name, value, errbuf, errlen);
}

void cache_config_set_loader(cache_config_t *cfg, cache_loader_fn fn, void *udata)
{
    if (!cfg)
        return;
    cfg->v.loader = fn;
    cfg->v.loader_udata = udata;
}

void cache_config_set_batch_loader(cache_config_t *cfg, cache_batch_loader_fn fn, void *udata)
{
    if (!cfg)
        return;
    cfg->v.batch_loader = fn;
    cfg->v.batch_loader_udata = udata;
}

void nkc_config_set_clock(cache_config_t *cfg, int64_t (*fn)(void *), void *udata)
{
    cfg->v.clock_ms = fn;
    cfg->v.clock_udata = udata;
}

void nkc_config_set_test_no_leases(cache_config_t *cfg, int on)
{
    cfg->v.test_no_leases = on;
}

void nkc_config_set_test_after_send(cache_config_t *cfg, void (*fn)(void *), void *udata,
                                    int no_overtake)
{
    cfg->v.test_after_send = fn;
    cfg->v.test_after_send_udata = udata;
    cfg->v.test_no_overtake = no_overtake;
}

/* A JSON scalar as the text cache_config_set takes. 0, or -1 for other types. */
static int json_to_text(json_t *v, char *buf, size_t cap)
{
    switch (json_typeof(v)) {
    case JSON_STRING: {
        size_t n = json_string_length(v);
        if (n >= cap || memchr(json_string_value(v), '\0', n))
            return -1;
        memcpy(buf, json_string_value(v), n + 1);
        return 0;
    }
    case JSON_INTEGER:
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return 0;
    case JSON_REAL: snprintf(buf, cap, "%.17g", json_real_value(v)); return 0;
    case JSON_TRUE: snprintf(buf, cap, "on"); return 0;
    case JSON_FALSE: snprintf(buf, cap, "off"); return 0;
    default: return -1;
    }
}

static cache_err_t apply_json(struct nkc_config *tmp, json_t *root, const char *path,
                              char *errbuf, size_t errlen)
{
    const char *name;
    json_t *v;
    char text[4096], msg[512];
    json_object_foreach(root, name, v)
    {
        if (json_to_text(v, text, sizeof(text)) != 0) {
            nkc_errf(errbuf, errlen, "%s: property \"%s\": value must be a string, number or "
                     "boolean (under 4096 bytes)", path, name);
            return CACHE_EINVAL;
        }
        cache_err_t err = set_prop(tmp, name, text, msg, sizeof(msg));
        if (err != CACHE_OK) {
            nkc_errf(errbuf, errlen, "%s: %s", path, msg);
            return err;
        }
    }
    return CACHE_OK;
}

cache_err_t cache_config_load_json(cache_config_t *cfg, const char *path, char *errbuf,
                                   size_t errlen)
{
    if (!cfg || !path) {
        nkc_errf(errbuf, errlen, "cache_config_load_json: NULL %s", !cfg ? "configuration" : "path");
        return CACHE_EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        nkc_errf(errbuf, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return CACHE_EINVAL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        nkc_errf(errbuf, errlen, "%s: the top level must be an object of properties", path);
        return CACHE_EINVAL;
    }
    struct nkc_config tmp;
    if (nkc_config_copy(&tmp, &cfg->v) != 0) {
        json_decref(root);
        return CACHE_ENOMEM;
    }
    cache_err_t err = apply_json(&tmp, root, path, errbuf, errlen);
    json_decref(root);
    if (err != CACHE_OK) {
        nkc_config_clear(&tmp);
        return err;
    }
    nkc_config_clear(&cfg->v);
    cfg->v = tmp;
    return CACHE_OK;
}

/* ---- docs/CONFIGURATION.md ---- */

static void range_text(const struct prop *p, char *buf, size_t cap)
{
    switch (p->kind) {
    case NKC_BOOL: snprintf(buf, cap, "on, off"); break;
    case NKC_TEXT: snprintf(buf, cap, "text"); break;
    case NKC_FRAC: snprintf(buf, cap, "%g to %g", p->lo, p->hi); break;
    default:
        snprintf(buf, cap, "%.0f to %.0f%s", p->lo, p->hi,
                 p->kind == NKC_BYTES ? " bytes" : p->kind == NKC_MS ? " ms" : "");
    }
}

char *nkc_config_doc_markdown(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fputs("# Configuration\n\n"
          "<!-- Generated from NKC_PROPERTIES in src/config.h; tests/test_config.c fails when\n"
          "     this file and the table differ. Regenerate with:\n"
          "     NKC_WRITE_CONFIG_DOC=docs/CONFIGURATION.md build/tests/test_config -->\n\n"
          "Set with `cache_config_set(cfg, name, value, errbuf, errlen)` or in a JSON file\n"
          "through `cache_config_load_json` (`{\"l1.max_bytes\": \"64MiB\", \"l2.tracking\": true}`).\n"
          "Byte sizes take `B`, `KiB`/`K`, `MiB`/`M`, `GiB`/`G`, `TiB`/`T` (binary units);\n"
          "durations take `ms`, `s`, `min`, `h` (plain numbers are milliseconds). An unknown\n"
          "name, a malformed value or one out of range is `CACHE_EINVAL` with a message that\n"
          "names the property.\n\n"
          "| name | meaning | default | range |\n|---|---|---|---|\n",
          f);
    for (size_t i = 0; i < N_PROPS; i++) {
        char range[96];
        range_text(&props[i], range, sizeof(range));
        fprintf(f, "| `%s` | %s | %s%s%s | %s |\n", props[i].name, props[i].doc,
                props[i].def[0] ? "`" : "", props[i].def[0] ? props[i].def : "(empty)",
                props[i].def[0] ? "`" : "", range);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---- l2.url ---- */

void nkc_url_free(struct nkc_url *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    if (u->password)
        explicit_bzero(u->password, strlen(u->password));
    free(u->password);
    memset(u, 0, sizeof(*u));
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* A new string of [s, s+n) with %XX decoded; NULL on a bad escape or NUL. */
static char *decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || hexval((unsigned char)s[i + 1]) < 0 ||
                hexval((unsigned char)s[i + 2]) < 0)
                goto bad;
            char c = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            if (c == '\0')
                goto bad;
            *o++ = c;
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

static int parse_int(const char *s, size_t n, long lo, long hi, int *out)
{
    if (n == 0 || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static cache_err_t parse_unix(const char *rest, struct nkc_url *u, char *errbuf, size_t errlen)
{
    const char *q = strchr(rest, '?');
    size_t plen = q ? (size_t)(q - rest) : strlen(rest);
    if (plen == 0 || rest[0] != '/') {
        nkc_errf(errbuf, errlen, "unix URL needs an absolute socket path (unix:///path)");
        return CACHE_EINVAL;
    }
    if (plen >= 108) {
        nkc_errf(errbuf, errlen, "unix socket path longer than 107 bytes");
        return CACHE_EINVAL;
    }
    if (q && (strncmp(q, "?db=", 4) != 0 || parse_int(q + 4, strlen(q + 4), 0, 1000000, &u->db))) {
        nkc_errf(errbuf, errlen, "unix URL query must be ?db=N with N a database number");
        return CACHE_EINVAL;
    }
    if (!(u->path = decode(rest, plen))) {
        nkc_errf(errbuf, errlen, "bad %%-escape in unix socket path");
        return CACHE_EINVAL;
    }
    return CACHE_OK;
}

static cache_err_t parse_userinfo(const char *s, size_t n, struct nkc_url *u, char *errbuf,
                                  size_t errlen)
{
    const char *colon = memchr(s, ':', n);
    size_t ulen = colon ? (size_t)(colon - s) : n;
    if (ulen > 0 && !(u->user = decode(s, ulen)))
        goto bad;
    if (colon && !(u->password = decode(colon + 1, n - ulen - 1)))
        goto bad;
    if (!colon && ulen > 0) { /* redis://secret@host is a password, as in redis-cli */
        u->password = u->user;
        u->user = NULL;
    }
    return CACHE_OK;
bad:
    nkc_errf(errbuf, errlen, "bad %%-escape in the URL's user or password");
    return CACHE_EINVAL;
}

static cache_err_t parse_hostport(const char *s, size_t n, struct nkc_url *u, char *errbuf,
                                  size_t errlen)
{
    const char *hs = s, *he, *port = NULL;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            goto bad;
        hs = s + 1;
        he = close;
        if (close + 1 < s + n) {
            if (close[1] != ':')
                goto bad;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        he = colon ? colon : s + n;
        port = colon ? colon + 1 : NULL;
    }
    if (he == hs)
        goto bad;
    u->port = 6379;
    if (port && parse_int(port, (size_t)(s + n - port), 1, 65535, &u->port) != 0) {
        nkc_errf(errbuf, errlen, "port must be a number from 1 to 65535");
        return CACHE_EINVAL;
    }
    if (!(u->host = strndup(hs, (size_t)(he - hs))))
        return CACHE_ENOMEM;
    return CACHE_OK;
bad:
    nkc_errf(errbuf, errlen, "malformed host in redis URL");
    return CACHE_EINVAL;
}

static cache_err_t parse_tcp(const char *rest, struct nkc_url *u, char *errbuf, size_t errlen)
{
    const char *slash = strchr(rest, '/');
    size_t alen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (rest[i] == '@')
            at = rest + i; /* the last '@' ends the userinfo */
    cache_err_t err = CACHE_OK;
    if (at)
        err = parse_userinfo(rest, (size_t)(at - rest), u, errbuf, errlen);
    const char *hp = at ? at + 1 : rest;
    if (err == CACHE_OK)
        err = parse_hostport(hp, (size_t)(rest + alen - hp), u, errbuf, errlen);
    if (err == CACHE_OK && slash && slash[1] != '\0' &&
        parse_int(slash + 1, strlen(slash + 1), 0, 1000000, &u->db) != 0) {
        nkc_errf(errbuf, errlen, "database in redis URL must be a number (redis://host:port/N)");
        err = CACHE_EINVAL;
    }
    return err;
}

cache_err_t nkc_url_parse(const char *url, struct nkc_url *out, char *errbuf, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    cache_err_t err;
    if (strncmp(url, "redis://", 8) == 0) {
        err = parse_tcp(url + 8, out, errbuf, errlen);
    } else if (strncmp(url, "unix://", 7) == 0) {
        err = parse_unix(url + 7, out, errbuf, errlen);
    } else {
        nkc_errf(errbuf, errlen, "URL must start with redis:// or unix:// (TLS is not supported)");
        return CACHE_EINVAL;
    }
    if (err != CACHE_OK)
        nkc_url_free(out);
    return err;
}
