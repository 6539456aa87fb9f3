/* A strict checker of the Prometheus text exposition format 0.0.4, for the tests:
 * promcheck(text, err, errlen) returns 0 when text is valid, else -1 with
 * "line N: why" in err. Beyond the format's grammar (metric and label names, label
 * escaping, float values, one HELP and one TYPE per family, each family one
 * contiguous group, no duplicate series, a final newline) it holds the output to
 * the project's rules: every family has # HELP and # TYPE before its first sample,
 * counters are named *_total, and a histogram's buckets have `le` values sorted
 * ascending, counts cumulative, a +Inf bucket equal to _count, and a _sum.
 * Bounded: 256 families, 4096 series, 16 labels a sample (more is an error). */
#ifndef NKC_PROMCHECK_H
#define NKC_PROMCHECK_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PC_MAX_FAMILIES 256
#define PC_MAX_SERIES 4096
#define PC_MAX_LABELS 16
#define PC_NAME 128
#define PC_TEXT 512

struct pc_family {
    char name[PC_NAME];
    char type[16]; /* "" until # TYPE */
    int help, samples, closed;
};

/* One histogram series group (the labels other than le): its buckets so far. */
struct pc_hgroup {
    int family;
    char labels[PC_TEXT];
    int buckets, has_inf, has_sum, has_count;
    double last_le, last_bucket, inf_value, count_value;
};

struct pc_label {
    char name[PC_NAME];
    char value[PC_TEXT];
};

struct pc_state {
    struct pc_family fam[PC_MAX_FAMILIES];
    int nfam, current; /* current: the family whose group is open, -1 none */
    char *series[PC_MAX_SERIES];
    int nseries;
    struct pc_hgroup hist[PC_MAX_SERIES];
    int nhist;
    int line;
    char *err;
    size_t errlen;
};

static int pc_fail(struct pc_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pc_fail(struct pc_state *st, const char *fmt, ...)
{
    char msg[PC_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(st->err, st->errlen, "line %d: %s", st->line, msg);
    return -1;
}

static int pc_name_start(char ch, int colon)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || (colon && ch == ':');
}

static int pc_name_char(char ch, int colon)
{
    return pc_name_start(ch, colon) || (ch >= '0' && ch <= '9');
}

/* A metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or, with colon 0, a label name, at *p
 * into out; advances *p. 0, or -1 when there is none or it is too long. */
static int pc_name(const char **p, char *out, int colon)
{
    const char *s = *p;
    if (!pc_name_start(*s, colon))
        return -1;
    while (pc_name_char(*s, colon))
        s++;
    if ((size_t)(s - *p) >= PC_NAME)
        return -1;
    memcpy(out, *p, (size_t)(s - *p));
    out[s - *p] = '\0';
    *p = s;
    return 0;
}

/* A float as Go's ParseFloat reads it in decimal, or NaN, +Inf, -Inf, Inf; the
 * whole of [s, end). 0 with *v, or -1. */
static int pc_float(const char *s, const char *end, double *v)
{
    size_t n = (size_t)(end - s);
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (!strcmp(buf, "NaN")) {
        *v = NAN;
        return 0;
    }
    if (!strcmp(buf, "+Inf") || !strcmp(buf, "Inf") || !strcmp(buf, "-Inf")) {
        *v = buf[0] == '-' ? -INFINITY : INFINITY;
        return 0;
    }
    const char *q = buf;
    if (*q == '+' || *q == '-')
        q++;
    int digits = 0;
    while (*q >= '0' && *q <= '9')
        q++, digits++;
    if (*q == '.') {
        q++;
        while (*q >= '0' && *q <= '9')
            q++, digits++;
    }
    if (!digits)
        return -1;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!(*q >= '0' && *q <= '9'))
            return -1;
        while (*q >= '0' && *q <= '9')
            q++;
    }
    if (*q != '\0')
        return -1;
    *v = strtod(buf, NULL);
    return 0;
}

/* The labels {name="value",...} at *p (just past the '{'); values unescaped. */
static int pc_labels(struct pc_state *st, const char **p, struct pc_label *out, int *n)
{
    const char *s = *p;
    *n = 0;
    while (*s != '}') {
        if (*n == PC_MAX_LABELS)
            return pc_fail(st, "more than %d labels", PC_MAX_LABELS);
        struct pc_label *l = &out[*n];
        if (pc_name(&s, l->name, 0) != 0)
            return pc_fail(st, "bad label name at \"%.20s\"", s);
        if (l->name[0] == '_' && l->name[1] == '_')
            return pc_fail(st, "label name %s is reserved (__ prefix)", l->name);
        for (int i = 0; i < *n; i++)
            if (!strcmp(out[i].name, l->name))
                return pc_fail(st, "label %s given twice", l->name);
        if (*s++ != '=' || *s++ != '"')
            return pc_fail(st, "label %s: expected =\"", l->name);
        size_t k = 0;
        for (; *s != '"'; s++) {
            char ch = *s;
            if (ch == '\0')
                return pc_fail(st, "label %s: unterminated value", l->name);
            if (ch == '\\') {
                s++;
                if (*s != '\\' && *s != '"' && *s != 'n')
                    return pc_fail(st, "label %s: bad escape \\%c", l->name, *s ? *s : '0');
                ch = *s == 'n' ? '\n' : *s;
            }
            if (k + 1 >= PC_TEXT)
                return pc_fail(st, "label %s: value too long", l->name);
            l->value[k++] = ch;
        }
        l->value[k] = '\0';
        s++;
        (*n)++;
        if (*s == ',')
            s++;
        else if (*s != '}')
            return pc_fail(st, "expected , or } after label %s", l->name);
    }
    *p = s + 1;
    return 0;
}

static int pc_find(const struct pc_state *st, const char *name)
{
    for (int i = 0; i < st->nfam; i++)
        if (!strcmp(st->fam[i].name, name))
            return i;
    return -1;
}

static int pc_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && !strcmp(s + n - m, suffix);
}

/* The family a sample name belongs to (histogram/summary suffixes resolved), or -1;
 * *suffix is "", "_bucket", "_sum" or "_count". */
static int pc_family_of(const struct pc_state *st, const char *name, const char **suffix)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    *suffix = "";
    for (int i = 0; i < 3; i++) {
        if (!pc_has_suffix(name, suffixes[i]))
            continue;
        char base[PC_NAME];
        snprintf(base, sizeof(base), "%.*s", (int)(strlen(name) - strlen(suffixes[i])), name);
        int f = pc_find(st, base);
        if (f >= 0 && (!strcmp(st->fam[f].type, "histogram") ||
                       (!strcmp(st->fam[f].type, "summary") && i > 0))) {
            *suffix = suffixes[i];
            return f;
        }
    }
    return pc_find(st, name);
}

/* Opens the group of family f (closing the one before); -1 if f's group was closed. */
static int pc_enter(struct pc_state *st, int f)
{
    if (st->current == f)
        return 0;
    if (st->fam[f].closed)
        return pc_fail(st, "family %s appears in two separate groups", st->fam[f].name);
    if (st->current >= 0)
        st->fam[st->current].closed = 1;
    st->current = f;
    return 0;
}

/* The family named by a # HELP or # TYPE line: found or added, and entered. */
static int pc_declare(struct pc_state *st, const char *name)
{
    int f = pc_find(st, name);
    if (f < 0) {
        const char *suffix;
        int other = pc_family_of(st, name, &suffix);
        if (other >= 0)
            return pc_fail(st, "%s clashes with the samples of %s", name, st->fam[other].name);
        if (st->nfam == PC_MAX_FAMILIES)
            return pc_fail(st, "more than %d families", PC_MAX_FAMILIES);
        f = st->nfam++;
        memset(&st->fam[f], 0, sizeof(st->fam[f]));
        snprintf(st->fam[f].name, sizeof(st->fam[f].name), "%s", name);
    }
    if (pc_enter(st, f) != 0)
        return -1;
    if (st->fam[f].samples)
        return pc_fail(st, "# HELP/# TYPE of %s after its samples", name);
    return f;
}

static int pc_meta(struct pc_state *st, const char *line)
{
    int help = !strncmp(line, "# HELP ", 7), type = !strncmp(line, "# TYPE ", 7);
    if (!help && !type)
        return 0; /* any other comment */
    const char *p = line + 7;
    char name[PC_NAME];
    if (pc_name(&p, name, 1) != 0)
        return pc_fail(st, "bad metric name in %.6s", line);
    if (*p != ' ' && *p != '\0')
        return pc_fail(st, "bad metric name %s...", name);
    int f = pc_declare(st, name);
    if (f < 0)
        return -1;
    struct pc_family *fa = &st->fam[f];
    if (help) {
        if (fa->help++)
            return pc_fail(st, "second # HELP for %s", name);
        for (const char *q = p; *q; q++)
            if (*q == '\\' && (q[1] != '\\' && q[1] != 'n'))
                return pc_fail(st, "# HELP %s: bad escape", name);
            else if (*q == '\\')
                q++;
        return 0;
    }
    if (fa->type[0])
        return pc_fail(st, "second # TYPE for %s", name);
    if (*p++ != ' ')
        return pc_fail(st, "# TYPE %s without a type", name);
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(p, types[i]))
            snprintf(fa->type, sizeof(fa->type), "%s", types[i]);
    if (!fa->type[0])
        return pc_fail(st, "# TYPE %s: unknown type \"%s\"", name, p);
    if (!strcmp(fa->type, "counter") && !pc_has_suffix(name, "_total"))
        return pc_fail(st, "counter %s does not end in _total", name);
    return 0;
}

/* name{sorted labels}: the identity of a series; le is kept or dropped. */
static void pc_key(char *out, size_t cap, const char *name, const struct pc_label *l, int n,
                   int keep_le)
{
    int order[PC_MAX_LABELS];
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 1; i < n; i++) /* insertion sort by name */
        for (int j = i; j > 0 && strcmp(l[order[j - 1]].name, l[order[j]].name) > 0; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    size_t len = (size_t)snprintf(out, cap, "%s{", name);
    for (int i = 0; i < n && len < cap; i++)
        if (keep_le || strcmp(l[order[i]].name, "le"))
            len += (size_t)snprintf(out + len, cap - len, "%s=\"%s\",", l[order[i]].name,
                                    l[order[i]].value);
    if (len < cap)
        snprintf(out + len, cap - len, "}");
}

static struct pc_hgroup *pc_hgroup(struct pc_state *st, int f, const char *labels)
{
    for (int i = 0; i < st->nhist; i++)
        if (st->hist[i].family == f && !strcmp(st->hist[i].labels, labels))
            return &st->hist[i];
    if (st->nhist == PC_MAX_SERIES)
        return NULL;
    struct pc_hgroup *g = &st->hist[st->nhist++];
    memset(g, 0, sizeof(*g));
    g->family = f;
    snprintf(g->labels, sizeof(g->labels), "%s", labels);
    return g;
}

static int pc_histogram(struct pc_state *st, int f, const char *suffix, const struct pc_label *l,
                        int n, double v)
{
    const char *le = NULL;
    for (int i = 0; i < n; i++)
        if (!strcmp(l[i].name, "le"))
            le = l[i].value;
    if (!*suffix)
        return pc_fail(st, "histogram %s: sample without _bucket/_sum/_count", st->fam[f].name);
    int bucket = !strcmp(suffix, "_bucket");
    if (bucket != (le != NULL))
        return pc_fail(st, "histogram %s: le %s", st->fam[f].name,
                       bucket ? "missing on a bucket" : "on a non-bucket sample");
    char labels[PC_TEXT];
    pc_key(labels, sizeof(labels), "", l, n, 0);
    struct pc_hgroup *g = pc_hgroup(st, f, labels);
    if (!g)
        return pc_fail(st, "too many histogram series");
    if (isnan(v) || v < 0)
        return pc_fail(st, "histogram %s: negative or NaN %s", st->fam[f].name, suffix);
    if (!bucket) {
        if (!strcmp(suffix, "_sum"))
            g->has_sum = 1;
        else
            g->has_count = 1, g->count_value = v;
        return 0;
    }
    double bound;
    if (pc_float(le, le + strlen(le), &bound) != 0 || isnan(bound))
        return pc_fail(st, "histogram %s: le=\"%s\" is not a number", st->fam[f].name, le);
    if (g->buckets && bound <= g->last_le)
        return pc_fail(st, "histogram %s: le=\"%s\" not above the previous bucket's",
                       st->fam[f].name, le);
    if (g->buckets && v < g->last_bucket)
        return pc_fail(st, "histogram %s: bucket le=\"%s\" below the previous (not cumulative)",
                       st->fam[f].name, le);
    g->buckets++;
    g->last_le = bound;
    g->last_bucket = v;
    if (isinf(bound) && bound > 0)
        g->has_inf = 1, g->inf_value = v;
    return 0;
}

/* The end-of-text checks of every histogram group. */
static int pc_finish(struct pc_state *st)
{
    for (int i = 0; i < st->nhist; i++) {
        const struct pc_hgroup *g = &st->hist[i];
        const char *name = st->fam[g->family].name;
        if (!g->has_inf)
            return pc_fail(st, "histogram %s%s has no +Inf bucket", name, g->labels);
        if (!g->has_count || !g->has_sum)
            return pc_fail(st, "histogram %s%s lacks _sum or _count", name, g->labels);
        if (g->inf_value != g->count_value)
            return pc_fail(st, "histogram %s%s: +Inf bucket %g != _count %g", name, g->labels,
                           g->inf_value, g->count_value);
    }
    return 0;
}

static int pc_sample(struct pc_state *st, const char *line)
{
    const char *p = line;
    char name[PC_NAME];
    struct pc_label labels[PC_MAX_LABELS];
    int n = 0;
    if (pc_name(&p, name, 1) != 0)
        return pc_fail(st, "bad metric name at \"%.20s\"", line);
    if (*p == '{' && (p++, pc_labels(st, &p, labels, &n) != 0))
        return -1;
    if (*p != ' ' && *p != '\t')
        return pc_fail(st, "%s: expected a blank before the value", name);
    while (*p == ' ' || *p == '\t')
        p++;
    const char *end = p;
    while (*end && *end != ' ' && *end != '\t')
        end++;
    double v;
    if (pc_float(p, end, &v) != 0)
        return pc_fail(st, "%s: bad value \"%.*s\"", name, (int)(end - p), p);
    if (*end) { /* a timestamp: an integer, then the end of the line */
        const char *q = end;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q == '-')
            q++;
        if (!(*q >= '0' && *q <= '9'))
            return pc_fail(st, "%s: bad timestamp", name);
        while (*q >= '0' && *q <= '9')
            q++;
        if (*q)
            return pc_fail(st, "%s: trailing characters \"%.20s\"", name, q);
    }
    const char *suffix;
    int f = pc_family_of(st, name, &suffix);
    if (f < 0 || !st->fam[f].type[0] || !st->fam[f].help)
        return pc_fail(st, "%s: sample before its # HELP and # TYPE", name);
    if (pc_enter(st, f) != 0)
        return -1;
    st->fam[f].samples++;
    char key[PC_TEXT * 2];
    pc_key(key, sizeof(key), name, labels, n, 1);
    for (int i = 0; i < st->nseries; i++)
        if (!strcmp(st->series[i], key))
            return pc_fail(st, "duplicate series %s", key);
    if (st->nseries == PC_MAX_SERIES)
        return pc_fail(st, "more than %d series", PC_MAX_SERIES);
    st->series[st->nseries++] = strdup(key);
    const char *type = st->fam[f].type;
    if (!strcmp(type, "counter") && (isnan(v) || v < 0))
        return pc_fail(st, "counter %s: negative or NaN value", name);
    if (!strcmp(type, "histogram"))
        return pc_histogram(st, f, suffix, labels, n, v);
    return 0;
}

static int promcheck(const char *text, char *err, size_t errlen)
{
    struct pc_state *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->current = -1;
    st->err = err;
    st->errlen = errlen;
    size_t len = strlen(text);
    int rc = 0;
    if (len == 0 || text[len - 1] != '\n')
        rc = pc_fail(st, "the text does not end with a newline");
    char line[4096];
    for (const char *p = text; rc == 0 && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = (size_t)(nl - p);
        st->line++;
        if (n >= sizeof(line)) {
            rc = pc_fail(st, "line too long");
            break;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (n == 0)
            continue; /* empty lines are ignored */
        rc = line[0] == '#' ? pc_meta(st, line) : pc_sample(st, line);
    }
    if (rc == 0)
        rc = pc_finish(st);
    for (int i = 0; i < st->nseries; i++)
        free(st->series[i]);
    free(st);
    return rc;
}

#endif
