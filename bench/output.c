/*
 * The machine-readable outputs every mode shares: a mode builds one JSON document
 * ({"mode", ..., "rows": [{...}, ...]}) and this file prints it as JSON, prints its
 * rows as CSV, or draws them with gnuplot. The human tables stay in each mode: they
 * choose their columns for people.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int nkb_find_program(const char *program, char *out, size_t len)
{
    const char *path = getenv("PATH"), *p;

    if (strchr(program, '/') != NULL) {
        snprintf(out, len, "%s", program);
        return access(out, X_OK);
    }
    for (p = path ? path : "/usr/local/bin:/usr/bin:/bin"; *p != '\0';) {
        size_t n = strcspn(p, ":");

        snprintf(out, len, "%.*s/%s", (int)n, n ? p : ".", program);
        if (access(out, X_OK) == 0)
            return 0;
        p += n + (p[n] == ':');
    }
    return -1;
}

/* ---------------------------------------------------------------- CSV */

/* Copies obj's scalars into flat as "prefix.key" (arrays as compact JSON text). */
static void flatten(const char *prefix, const json_t *obj, json_t *flat)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v) {
        char path[256];

        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (json_is_object(v)) {
            flatten(path, v, flat);
        } else if (json_is_array(v)) {
            char *text = json_dumps(v, JSON_COMPACT);

            json_object_set_new(flat, path, text ? json_string(text) : json_null());
            free(text);
        } else {
            json_object_set(flat, path, v);
        }
    }
}

/* One CSV field: strings quoted when they hold a comma, a quote or a line break. */
static void csv_field(const json_t *v)
{
    if (json_is_integer(v)) {
        printf("%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        printf("%.6g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        printf("%s", json_is_true(v) ? "true" : "false");
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);

        if (strpbrk(s, ",\"\r\n") == NULL) {
            printf("%s", s);
            return;
        }
        putchar('"');
        for (; *s != '\0'; s++) {
            if (*s == '"')
                putchar('"');
            putchar(*s);
        }
        putchar('"');
    } /* null: an empty field */
}

void nkb_csv_print(const json_t *doc)
{
    const json_t *rows = json_object_get(doc, "rows");
    json_t *flat = json_array(), *columns = json_object(), *row;
    const char *key;
    json_t *ignored;
    size_t i;
    int first = 1;

    json_array_foreach(rows, i, row) {
        json_t *f = json_object();

        flatten("", row, f);
        json_array_append_new(flat, f);
        json_object_foreach(f, key, ignored)
            json_object_set_new(columns, key, json_true()); /* insertion order kept */
    }
    json_object_foreach(columns, key, ignored) {
        printf("%s%s", first ? "" : ",", key);
        first = 0;
    }
    printf("\n");
    json_array_foreach(flat, i, row) {
        first = 1;
        json_object_foreach(columns, key, ignored) {
            printf("%s", first ? "" : ",");
            csv_field(json_object_get(row, key));
            first = 0;
        }
        printf("\n");
    }
    json_decref(flat);
    json_decref(columns);
}

/* ---------------------------------------------------------------- plot */

#define MAX_SERIES 96 /* lines in one plot: 8 policies x 12 traces, or rows x threads */

/* Which rows make one line, and what a line's points are. */
struct shape {
    const char *panel_key; /* rows with different values here go to different panels;
                              NULL: one set of panels for every line */
    void (*point)(FILE *f, const json_t *row); /* "x y ..." and a newline, or nothing */
};

/* The series of the lines written: their titles and panels (borrowed from doc). */
struct series {
    const char *name[MAX_SERIES], *panel[MAX_SERIES];
    size_t n;
};

/* A row's series: its name (for people), else its impl. */
static const char *series_of(const json_t *row)
{
    const char *name = json_string_value(json_object_get(row, "name"));

    return name != NULL ? name : json_string_value(json_object_get(row, "impl"));
}

static const char *panel_of(const struct shape *sh, const json_t *row)
{
    const char *p = sh->panel_key ? json_string_value(json_object_get(row, sh->panel_key)) : "";

    return p != NULL ? p : "";
}

static int same_series(const struct shape *sh, const json_t *row, const char *name,
                       const char *panel)
{
    const char *s = series_of(row);

    return s != NULL && strcmp(s, name) == 0 && strcmp(panel_of(sh, row), panel) == 0;
}

/* Writes one gnuplot data block per (panel, series), in the order they first appear,
 * blocks separated by two blank lines (gnuplot's `index`); out gets block k's
 * series. */
static void plot_data(FILE *f, const json_t *rows, const struct shape *sh, struct series *out)
{
    size_t i, j;
    json_t *row;

    out->n = 0;
    json_array_foreach(rows, i, row) {
        const char *name = series_of(row), *panel = panel_of(sh, row);

        for (j = 0; name != NULL && j < out->n; j++) {
            if (strcmp(out->name[j], name) == 0 && strcmp(out->panel[j], panel) == 0)
                break;
        }
        if (name == NULL || j < out->n || out->n == MAX_SERIES)
            continue; /* unnamed, or its block is written */
        out->name[out->n] = name;
        out->panel[out->n] = panel;
        fprintf(f, "%s# %s %s\n", out->n ? "\n\n" : "", panel, name);
        for (j = i; j < json_array_size(rows); j++) {
            if (same_series(sh, json_array_get(rows, j), name, panel))
                sh->point(f, json_array_get(rows, j));
        }
        out->n++;
    }
}

/* One `plot` command: column `column` of every block in panel (NULL: every block). */
static void plot_series(FILE *g, const char *data, const struct series *s, const char *panel,
                        int column)
{
    int first = 1;

    fprintf(g, "plot ");
    for (size_t k = 0; k < s->n; k++) {
        if (panel != NULL && strcmp(s->panel[k], panel) != 0)
            continue;
        fprintf(g, "%s'%s' index %zu using 1:%d with linespoints title \"", first ? "" : ", ",
                data, k, column);
        for (const char *c = s->name[k]; *c != '\0'; c++) /* a title cannot hold a quote */
            fputc(*c == '"' ? '\'' : *c, g);
        fprintf(g, "\"");
        first = 0;
    }
    fprintf(g, "\n");
}

/* ops/s and p99 against threads: every mode but trace. */
static void threads_point(FILE *f, const json_t *row)
{
    fprintf(f, "%lld %.3f %.3f\n", (long long)json_integer_value(json_object_get(row, "threads")),
            json_number_value(json_object_get(row, "ops_per_sec")),
            json_number_value(json_object_get(row, "p99_ns")) / 1e3);
}

static void threads_script(FILE *g, const char *data, const struct series *s, const char *mode,
                           const char *png)
{
    fprintf(g, "set terminal pngcairo size 1200,480 noenhanced\nset output '%s'\n"
               "set multiplot layout 1,2 title \"nakkucache-bench %s\"\nset grid\n"
               "set key bottom right\nset xlabel 'threads'\nset xtics 1\n"
               "set yrange [0:*]\nset ylabel 'operations per second'\n", png, mode);
    plot_series(g, data, s, NULL, 2);
    fprintf(g, "set ylabel 'p99 latency (us)'\nset key top left\n");
    plot_series(g, data, s, NULL, 3);
}

/* Miss ratio against cache size: trace, one panel per trace. A policy that was not
 * measured (null) leaves a gap. */
static void trace_point(FILE *f, const json_t *row)
{
    const json_t *ratio = json_object_get(row, "miss_ratio");

    if (json_is_number(ratio))
        fprintf(f, "%lld %.6f\n", (long long)json_integer_value(json_object_get(row, "size_pct")),
                json_number_value(ratio));
}

static void trace_script(FILE *g, const char *data, const struct series *s, const char *mode,
                         const char *png)
{
    const char *panels[MAX_SERIES];
    size_t n = 0, cols;

    for (size_t k = 0; k < s->n; k++) {
        size_t j = 0;

        while (j < n && strcmp(panels[j], s->panel[k]) != 0)
            j++;
        if (j == n)
            panels[n++] = s->panel[k];
    }
    cols = n < 3 ? (n ? n : 1) : n <= 9 ? 3 : 4;
    fprintf(g, "set terminal pngcairo size %zu,%zu noenhanced font ',9'\nset output '%s'\n"
               "set multiplot layout %zu,%zu title \"nakkucache-bench %s: miss ratio against "
               "cache size\"\nset grid\nset key bottom left\nset logscale x\nset autoscale xfix\n"
               "set xlabel 'cache size (%% of unique keys)'\nset ylabel 'miss ratio'\n",
            420 * cols, 340 * ((n + cols - 1) / cols) + 40, png, (n + cols - 1) / cols, cols,
            mode);
    for (size_t p = 0; p < n; p++) {
        fprintf(g, "set title \"");
        for (const char *c = panels[p]; *c != '\0'; c++)
            fputc(*c == '"' ? '\'' : *c, g);
        fprintf(g, "\"\n");
        plot_series(g, data, s, panels[p], 2);
    }
}

int nkb_plot(const nkb_opts_t *o, const json_t *doc)
{
    static const struct shape threads = {NULL, threads_point}, trace = {"trace", trace_point};
    char program[4096], data[] = "/tmp/nkb-plot.XXXXXX";
    const char *mode = json_string_value(json_object_get(doc, "mode"));
    const int is_trace = mode != NULL && strcmp(mode, "trace") == 0;
    struct series *s = calloc(1, sizeof *s);
    FILE *f = NULL, *g = NULL;
    int fd = -1, rc = -1;

    if (nkb_find_program("gnuplot", program, sizeof program) != 0) {
        fprintf(stderr, "nakkucache-bench: --plot %s not drawn: gnuplot is not installed "
                        "(apt-get install gnuplot-nox)\n", o->plot);
        free(s);
        return -1;
    }
    if (s == NULL || (fd = mkstemp(data)) < 0 || (f = fdopen(fd, "w")) == NULL) {
        fprintf(stderr, "nakkucache-bench: --plot: cannot write a temporary file\n");
        goto out;
    }
    plot_data(f, json_object_get(doc, "rows"), is_trace ? &trace : &threads, s);
    fclose(f);
    if ((g = popen("gnuplot", "w")) == NULL)
        goto out;
    if (is_trace)
        trace_script(g, data, s, mode, o->plot);
    else
        threads_script(g, data, s, mode ? mode : "", o->plot);
    fprintf(g, "unset multiplot\n");
    rc = pclose(g) == 0 ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "nakkucache-bench: gnuplot failed drawing %s\n", o->plot);
    else
        fprintf(stderr, "nakkucache-bench: plot written to %s\n", o->plot);
out:
    if (fd >= 0)
        unlink(data);
    if (f == NULL && fd >= 0)
        close(fd);
    free(s);
    return rc;
}

/* ---------------------------------------------------------------- one document */

int nkb_output(const nkb_opts_t *o, json_t *doc)
{
    int rc = 0;

    if (doc == NULL) {
        fprintf(stderr, "nakkucache-bench: cannot build the JSON document\n");
        return -1;
    }
    if (o->csv) {
        nkb_csv_print(doc);
    } else if (o->json) {
        if (json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0)
            fprintf(stderr, "nakkucache-bench: cannot render JSON\n");
        printf("\n");
    }
    fflush(stdout);
    if (o->plot != NULL)
        rc = nkb_plot(o, doc);
    json_decref(doc);
    return rc;
}
