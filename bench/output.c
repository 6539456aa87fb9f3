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

/* A row's series: its name (for people), else its impl. */
static const char *series_of(const json_t *row)
{
    const char *name = json_string_value(json_object_get(row, "name"));

    return name != NULL ? name : json_string_value(json_object_get(row, "impl"));
}

/* Writes one gnuplot data block per series (threads, ops/s, p99 us), in the order
 * the series first appear, blocks separated by two blank lines (gnuplot's `index`);
 * names[k] gets block k's title. Returns the number of blocks. */
static size_t plot_data(FILE *f, const json_t *rows, const char **names, size_t max)
{
    size_t n = 0, i, j;
    json_t *row;

    json_array_foreach(rows, i, row) {
        const char *series = series_of(row);

        for (j = 0; j < n && series != NULL && strcmp(names[j], series) != 0; j++) {
        }
        if (series == NULL || j < n || n == max)
            continue; /* unnamed, or its block is written */
        names[n] = series;
        fprintf(f, "%s# %s\n", n ? "\n\n" : "", series);
        for (j = i; j < json_array_size(rows); j++) {
            const json_t *r = json_array_get(rows, j);

            if (series_of(r) == NULL || strcmp(series_of(r), series) != 0)
                continue;
            fprintf(f, "%lld %.3f %.3f\n",
                    (long long)json_integer_value(json_object_get(r, "threads")),
                    json_number_value(json_object_get(r, "ops_per_sec")),
                    json_number_value(json_object_get(r, "p99_ns")) / 1e3);
        }
        n++;
    }
    return n;
}

static void plot_series(FILE *g, const char *data, const char **names, size_t n, int column)
{
    fprintf(g, "plot ");
    for (size_t k = 0; k < n; k++) {
        fprintf(g, "%s'%s' index %zu using 1:%d with linespoints title \"", k ? ", " : "", data,
                k, column);
        for (const char *s = names[k]; *s != '\0'; s++) /* a title cannot hold a quote */
            fputc(*s == '"' ? '\'' : *s, g);
        fprintf(g, "\"");
    }
    fprintf(g, "\n");
}

int nkb_plot(const nkb_opts_t *o, const json_t *doc)
{
    char program[4096], data[] = "/tmp/nkb-plot.XXXXXX";
    const char *names[16], *mode = json_string_value(json_object_get(doc, "mode"));
    size_t n;
    FILE *f, *g;
    int fd, rc;

    if (nkb_find_program("gnuplot", program, sizeof program) != 0) {
        fprintf(stderr, "nakkucache-bench: --plot %s not drawn: gnuplot is not installed "
                        "(apt-get install gnuplot-nox)\n", o->plot);
        return -1;
    }
    if ((fd = mkstemp(data)) < 0 || (f = fdopen(fd, "w")) == NULL) {
        fprintf(stderr, "nakkucache-bench: --plot: cannot write a temporary file\n");
        return -1;
    }
    n = plot_data(f, json_object_get(doc, "rows"), names, sizeof names / sizeof names[0]);
    fclose(f);
    if ((g = popen("gnuplot", "w")) == NULL) {
        unlink(data);
        return -1;
    }
    fprintf(g, "set terminal pngcairo size 1200,480 noenhanced\nset output '%s'\n"
               "set multiplot layout 1,2 title \"nakkucache-bench %s\"\nset grid\n"
               "set key bottom right\nset xlabel 'threads'\nset xtics 1\n"
               "set yrange [0:*]\nset ylabel 'operations per second'\n",
            o->plot, mode ? mode : "");
    plot_series(g, data, names, n, 2);
    fprintf(g, "set ylabel 'p99 latency (us)'\nset key top left\n");
    plot_series(g, data, names, n, 3);
    fprintf(g, "unset multiplot\n");
    rc = pclose(g);
    unlink(data);
    if (rc != 0) {
        fprintf(stderr, "nakkucache-bench: gnuplot failed drawing %s\n", o->plot);
        return -1;
    }
    fprintf(stderr, "nakkucache-bench: plot written to %s\n", o->plot);
    return 0;
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
