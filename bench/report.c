/*
 * The l1 mode's output: an aligned table for people, or with --json / --csv one
 * JSON document (jansson) or its rows for machines (and --plot, bench/output.c).
 * Every ratio compares rows measured at the same thread count in the same run; a
 * ratio whose denominator was not measured is printed "-" (null in JSON).
 */
#include "l1.h"

#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

static const char *caffeine_status(int c)
{
    switch (c) {
    case NKB_CAFFEINE_OK:
        return "measured";
    case NKB_CAFFEINE_SKIPPED:
        return "skipped";
    case NKB_CAFFEINE_OFF:
        return "off";
    default:
        return "failed";
    }
}

/* num / den, or a negative number when den was not measured. */
static double ratio(double num, const nkb_row_t *den)
{
    return den != NULL && den->ops_per_sec > 0 ? num / den->ops_per_sec : -1.0;
}

static const nkb_row_t *caffeine_row(const struct nkb_l1_report *rep, size_t p)
{
    return rep->caffeine == NKB_CAFFEINE_OK ? &rep->rows[p][NKB_L1_CAFFEINE] : NULL;
}

static void print_ratio(double r)
{
    if (r < 0)
        printf(" %11s", "-");
    else
        printf(" %10.2fx", r);
}

static void print_row(const struct nkb_l1_report *rep, size_t p, const nkb_row_t *r)
{
    printf("%7u  %-24s %8.2f M %7llu %7llu %7llu %7llu", r->threads, r->impl,
           r->ops_per_sec / 1e6, (unsigned long long)r->p50_ns, (unsigned long long)r->p90_ns,
           (unsigned long long)r->p99_ns, (unsigned long long)r->p999_ns);
    if (r->max_ns > 0)
        printf(" %9llu", (unsigned long long)r->max_ns);
    else /* Caffeine reports no max */
        printf(" %9s", "-");
    print_ratio(ratio(r->ops_per_sec, &rep->rows[p][NKB_L1_MAP]));
    print_ratio(ratio(r->ops_per_sec, caffeine_row(rep, p)));
    printf(" %9llu\n", (unsigned long long)r->misses);
}

static void print_table(const struct nkb_l1_report *rep)
{
    const nkb_opts_t *o = rep->o;
    char dist[96];

    printf("l1: %u keys of %zu B (\"key:%%0%zuu\"), %zu B values, all prefilled; ", o->keys,
           o->key_size, o->key_size - 4, o->value_size);
    printf("%s %s; ", nkb_dist_name(o, dist, sizeof dist),
           o->read_ratio < 1.0 ? "keys" : "lookups");
    if (o->read_ratio < 1.0)
        printf("%.0f %% of operations write (cache_set of the same key; the mutex map and "
               "Caffeine: their own put); ", 100.0 * (1.0 - o->read_ratio));
    if (o->ops)
        printf("%llu lookups per thread per point", (unsigned long long)o->ops);
    else
        printf("%llu ms per point", (unsigned long long)o->duration_ms);
    if (o->repeat > 1)
        printf(", median of %u rounds", o->repeat);
    printf("\n");
    printf("machine: %ld CPUs online, 1-min load average %.2f before, %.2f after\n",
           sysconf(_SC_NPROCESSORS_ONLN), rep->load_before, rep->load_after);
    printf("latency: each batch of %u lookups is timed (clock_gettime); a lookup counts as "
           "its batch's mean,\nso p99/p999 are of batch means and hide single slow lookups\n\n",
           rep->batch);
    printf("%7s  %-24s %10s %7s %7s %7s %7s %9s %11s %11s %9s\n", "threads", "implementation",
           "ops/s", "p50 ns", "p90 ns", "p99 ns", "p999 ns", "max ns", "vs mutex",
           "vs caffeine", "misses");
    for (size_t p = 0; p < o->n_points; p++) {
        for (int i = 0; i < NKB_L1_CAFFEINE; i++)
            print_row(rep, p, &rep->rows[p][i]);
        if (caffeine_row(rep, p) != NULL)
            print_row(rep, p, caffeine_row(rep, p));
    }
    if (rep->caffeine != NKB_CAFFEINE_OK)
        printf("Caffeine: %s (%s)\n", caffeine_status(rep->caffeine), rep->caffeine_why);
    if (rep->has_memory) {
        printf("\n");
        nkb_memory_print(&rep->memory, o);
    }
}

static json_t *json_ratio(double r)
{
    return r < 0 ? json_null() : json_real(r);
}

static json_t *row_json(const struct nkb_l1_report *rep, size_t p, const nkb_row_t *r)
{
    /* the JVM does not count its writes */
    json_t *writes = r == caffeine_row(rep, p) ? json_null() : json_integer((json_int_t)r->writes);

    return json_pack("{s:i, s:s, s:s, s:I, s:o, s:I, s:f, s:I, s:I, s:I, s:I, s:o, s:o, s:o}",
                     "threads", (int)r->threads, "impl", r->key, "name", r->impl, "ops",
                     (json_int_t)r->ops, "writes", writes, "misses", (json_int_t)r->misses,
                     "ops_per_sec",
                     r->ops_per_sec, "p50_ns", (json_int_t)r->p50_ns, "p90_ns",
                     (json_int_t)r->p90_ns, "p99_ns", (json_int_t)r->p99_ns, "p999_ns",
                     (json_int_t)r->p999_ns, "max_ns",
                     r->max_ns ? json_integer((json_int_t)r->max_ns) : json_null(),
                     "vs_baseline",
                     json_ratio(ratio(r->ops_per_sec, &rep->rows[p][NKB_L1_MAP])),
                     "vs_caffeine", json_ratio(ratio(r->ops_per_sec, caffeine_row(rep, p))));
}

static json_t *workload_json(const struct nkb_l1_report *rep)
{
    const nkb_opts_t *o = rep->o;
    char dist[96];

    return json_pack("{s:I, s:I, s:I, s:s, s:f, s:f, s:I, s:I, s:I, s:i, s:s, s:i}", "keys",
                     (json_int_t)o->keys, "key_size", (json_int_t)o->key_size, "value_size",
                     (json_int_t)o->value_size, "dist", nkb_dist_name(o, dist, sizeof dist),
                     "theta", o->theta, "read_ratio", o->read_ratio,
                     "duration_ms", (json_int_t)(o->ops ? 0 : o->duration_ms),
                     "ops_per_thread", (json_int_t)o->ops, "seed", (json_int_t)o->seed, "repeat",
                     (int)o->repeat,
                     "latency", "mean of each timed batch", "batch", (int)rep->batch);
}

/* The whole run as one JSON document (--json, --csv, --plot). */
static json_t *report_doc(const struct nkb_l1_report *rep)
{
    json_t *rows = json_array();
    json_t *doc;

    for (size_t p = 0; p < rep->o->n_points; p++) {
        for (int i = 0; i < NKB_L1_CAFFEINE; i++)
            json_array_append_new(rows, row_json(rep, p, &rep->rows[p][i]));
        if (caffeine_row(rep, p) != NULL)
            json_array_append_new(rows, row_json(rep, p, caffeine_row(rep, p)));
    }
    doc = json_pack("{s:s, s:o, s:{s:i, s:f, s:f}, s:o, s:{s:s, s:s}, s:o}", "mode", "l1",
                    "workload", workload_json(rep), "machine", "cpus",
                    (int)sysconf(_SC_NPROCESSORS_ONLN), "load_before", rep->load_before,
                    "load_after", rep->load_after, "rows", rows, "caffeine", "status",
                    caffeine_status(rep->caffeine), "reason",
                    rep->caffeine == NKB_CAFFEINE_OK ? "" : rep->caffeine_why, "memory",
                    rep->has_memory ? nkb_memory_json(&rep->memory) : json_null());
    return doc;
}

int nkb_l1_report_print(const struct nkb_l1_report *rep)
{
    const nkb_opts_t *o = rep->o;

    if (!o->json && !o->csv)
        print_table(rep);
    fflush(stdout);
    if (o->json || o->csv || o->plot)
        return nkb_output(o, report_doc(rep));
    return 0;
}
