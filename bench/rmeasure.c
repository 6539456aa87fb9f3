/*
 * The Redis modes' measuring loop (redis_base.h): every operation timed on its own
 * into per-thread histograms, in a timed or counted pass, optionally after an
 * untimed warm-up, in barrier-started rounds (stampede) or paced (hotkey); and the
 * --repeat rounds that interleave every row and keep each row's median run.
 */
#include "redis_base.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

static void db_thread_init(void)
{
#ifdef __linux__
    prctl(PR_SET_TIMERSLACK, 1UL); /* the default 50 us would stretch a 200 us query */
#endif
}

/* What the progress line says about the cell being measured (measure_rounds). */
static const char *progress_mode = "";
static char progress_cell[200];

/* One pass over the sequences: the untimed warm-up or the measured run. */
struct pass {
    uint64_t limit;       /* operations per thread; 0: until duration_ms is up */
    uint64_t duration_ms;
    uint64_t *offset;     /* per thread: where its sequence continues; moved on */
    const char *what;     /* for the progress line */
};

struct rworker {
    pthread_t tid;
    const nkb_rrun_t *run;
    const uint32_t *seq;
    void *mine;
    pthread_barrier_t *start, *round;
    atomic_int *stop; /* set by the main thread when the point's time is up */
    int failed;
    uint64_t first, limit, ops, elapsed_ns, served[NKB_SRC_COUNT];
    nkb_hist_t hist;
};

/* Times every operation on its own: they take microseconds, a clock read ~30 ns.
 * In rounds, a barrier starts each round and its wait is no operation's latency.
 * Paced (interval_ns), operation i is due at begin + i * interval and its latency
 * counts from then, not from when a stalled thread got round to it: a stall of S
 * delays every request due during S, as it would for requests arriving from
 * outside (no coordinated omission). */
static void *rworker_main(void *arg)
{
    struct rworker *wk = arg;
    const nkb_rrun_t *run = wk->run;
    const uint64_t mask = run->seq_len - 1;
    uint64_t i = 0, t0, begin;

    db_thread_init();
    pthread_barrier_wait(wk->start);
    begin = t0 = nkb_now_ns();
    while (wk->limit ? i < wk->limit : !atomic_load_explicit(wk->stop, memory_order_relaxed)) {
        int src;
        uint64_t t1;

        if (run->round_len > 0 && i > 0 && i % run->round_len == 0) {
            pthread_barrier_wait(wk->round);
            t0 = nkb_now_ns();
        }
        if (wk->failed) { /* in rounds: keep meeting the others at the barrier */
            i++;
            continue;
        }
        if (run->interval_ns > 0) {
            uint64_t due = begin + i * run->interval_ns, now = nkb_now_ns();

            /* ahead of schedule: the wake-up's lateness is the harness's, not the
             * cache's; behind it: the wait since due is the cache's stall */
            if (now < due) {
                nkb_sleep_ns(due - now);
                t0 = nkb_now_ns();
            } else {
                t0 = due;
            }
        }
        src = run->op(run->shared, wk->mine, wk->seq[(wk->first + i) & mask]);
        t1 = nkb_now_ns();
        if (src < 0) {
            wk->failed = 1;
            if (run->round_len == 0)
                break;
            continue;
        }
        nkb_hist_add(&wk->hist, t1 - t0, 1);
        wk->served[src < NKB_SRC_COUNT ? src : NKB_SRC_ERROR]++;
        t0 = t1;
        i++;
    }
    wk->elapsed_ns = t0 - begin;
    wk->ops = i;
    return NULL;
}

static void rsum_up(const nkb_rrun_t *run, const struct rworker *wk, nkb_hist_t *all,
                    nkb_rrow_t *row)
{
    uint64_t elapsed = 0;
    nkb_pct_t pct;

    for (unsigned t = 0; t < run->threads; t++) {
        row->ops += wk[t].ops;
        row->failed |= wk[t].failed;
        for (int s = 0; s < NKB_SRC_COUNT; s++)
            row->served[s] += wk[t].served[s];
        if (wk[t].elapsed_ns > 0)
            row->ops_per_sec += (double)wk[t].ops * 1e9 / (double)wk[t].elapsed_ns;
        elapsed += wk[t].elapsed_ns;
        nkb_hist_merge(all, &wk[t].hist);
    }
    row->seconds = (double)elapsed / run->threads / 1e9;
    pct = nkb_hist_pct(all);
    row->p50_ns = pct.p50;
    row->p90_ns = pct.p90;
    row->p99_ns = pct.p99;
    row->p999_ns = pct.p999;
    row->max_ns = pct.max;
}

/* The database's calls and time since (calls0, ns0) into row. */
static void db_delta(const nkb_db_t *db, uint64_t calls0, uint64_t ns0, nkb_rrow_t *row)
{
    uint64_t ns;

    if (db == NULL)
        return;
    row->db_calls = atomic_load(&db->calls) - calls0;
    ns = atomic_load(&db->busy_ns) - ns0;
    row->db_per_sec = row->seconds > 0 ? (double)row->db_calls / row->seconds : 0;
    row->db_mean_us = row->db_calls ? (double)ns / (double)row->db_calls / 1e3 : 0;
}

/* Waits out a timed pass in slices, drawing the progress line. */
static void wait_pass(const struct pass *p)
{
    const uint64_t begin = nkb_now_ns(), total = p->duration_ms * 1000000u;

    for (uint64_t done = 0; done < total; done = nkb_now_ns() - begin) {
        nkb_progress(progress_mode, "%s, %s %.1f/%.1f s", progress_cell, p->what, done / 1e9,
                     total / 1e9);
        nkb_sleep_ns(total - done < 250000000u ? total - done : 250000000u);
    }
}

static int run_pass(const nkb_rrun_t *run, const struct pass *p, nkb_rrow_t *row)
{
    struct rworker *wk = calloc(run->threads, sizeof *wk);
    nkb_hist_t *all = calloc(1, sizeof *all);
    pthread_barrier_t start, round;
    atomic_int stop = 0;

    if (wk == NULL || all == NULL) {
        free(wk);
        free(all);
        return -1;
    }
    pthread_barrier_init(&start, NULL, run->threads + 1);
    pthread_barrier_init(&round, NULL, run->threads);
    for (unsigned t = 0; t < run->threads; t++) {
        wk[t] = (struct rworker){.run = run, .seq = run->seqs[t], .start = &start,
                                 .round = &round, .stop = &stop, .first = p->offset[t],
                                 .limit = p->limit, .mine = run->mine ? run->mine[t] : NULL};
        if (pthread_create(&wk[t].tid, NULL, rworker_main, &wk[t]) != 0) {
            /* the started threads wait on the barrier forever; the exit handler
             * still stops a throwaway server */
            fprintf(stderr, "nakkucache-bench: cannot start thread %u\n", t + 1);
            exit(1);
        }
    }
    pthread_barrier_wait(&start);
    if (p->limit == 0)
        wait_pass(p);
    else
        nkb_progress(progress_mode, "%s, %s", progress_cell, p->what);
    atomic_store_explicit(&stop, 1, memory_order_relaxed);
    for (unsigned t = 0; t < run->threads; t++) {
        pthread_join(wk[t].tid, NULL);
        p->offset[t] += wk[t].ops;
    }
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&round);
    row->threads = run->threads;
    rsum_up(run, wk, all, row);
    free(all);
    free(wk);
    return 0;
}

/* The warm-up (when asked for), then the measured pass from where it stopped, so
 * the measured operations are not a replay of the keys the warm-up just loaded. */
int nkb_rrun_measure(const nkb_rrun_t *run, nkb_rrow_t *row)
{
    const nkb_opts_t *o = run->o;
    uint64_t *offset = calloc(run->threads, sizeof *offset), calls0, ns0;
    struct pass warm = {.duration_ms = run->warmup_ms, .offset = offset, .what = "warm-up"};
    struct pass timed = {.limit = run->round_len ? o->rounds * run->round_len : o->ops,
                         .duration_ms = o->duration_ms, .offset = offset, .what = "measuring"};
    nkb_rrow_t scratch = {0};
    int rc = offset == NULL ? -1 : 0;

    if (rc == 0 && run->warmup_ms > 0) {
        rc = run_pass(run, &warm, &scratch);
        row->failed = scratch.failed;
    }
    calls0 = run->db ? atomic_load(&run->db->calls) : 0;
    ns0 = run->db ? atomic_load(&run->db->busy_ns) : 0;
    if (rc == 0 && !row->failed) {
        rc = run_pass(run, &timed, row);
        db_delta(run->db, calls0, ns0, row);
    }
    free(offset);
    return rc;
}

void nkb_rrow_clear(nkb_rrow_t *row)
{
    json_decref(row->extra);
    row->extra = NULL;
}

static int by_rate(const void *a, const void *b)
{
    double x = ((const nkb_rrow_t *)a)->ops_per_sec, y = ((const nkb_rrow_t *)b)->ops_per_sec;

    return (x > y) - (x < y);
}

static int by_p99(const void *a, const void *b)
{
    uint64_t x = ((const nkb_rrow_t *)a)->p99_ns, y = ((const nkb_rrow_t *)b)->p99_ns;

    return (x > y) - (x < y);
}

/* Keeps each cell's median round in rows, releases the others. */
static void keep_medians(const nkb_rmode_t *m, nkb_rrow_t *runs, size_t cells, size_t rounds,
                         nkb_rrow_t *rows)
{
    for (size_t c = 0; c < cells; c++) {
        nkb_rrow_t *cell = runs + c * rounds;

        qsort(cell, rounds, sizeof *cell, m->median_by_p99 ? by_p99 : by_rate);
        rows[c] = cell[rounds / 2];
        for (size_t r = 0; r < rounds; r++) {
            if (r != rounds / 2)
                nkb_rrow_clear(&cell[r]);
        }
    }
}

static int measure_cell(const nkb_rmode_t *m, nkb_rworld_t *w, int impl, unsigned n,
                        nkb_rrow_t *row)
{
    int rc = m->cell(w, impl, n, row);

    if (row->name == NULL)
        row->name = m->impl_names[impl];
    row->key = m->impl_keys[impl];
    if (rc == 0 && row->failed) {
        fprintf(stderr, "nakkucache-bench %s: %s lost its Redis connection\n", m->name,
                row->name);
        rc = -1;
    }
    return rc;
}

/* Every (point, impl) cell o->repeat times, in rounds so that drift on a shared
 * machine hits every row alike; w->rows gets each cell's median round. */
int nkb_rmeasure_rounds(const nkb_rmode_t *m, nkb_rworld_t *w)
{
    const size_t rounds = w->o.repeat, cells = w->o.n_points * (size_t)m->n_impls;
    nkb_rrow_t *runs = calloc(cells * rounds, sizeof *runs);

    if (runs == NULL)
        return -1;
    for (size_t r = 0; r < rounds; r++) {
        for (size_t c = 0; c < cells; c++) {
            int impl = (int)(c % (size_t)m->n_impls);
            unsigned n = w->o.threads[c / (size_t)m->n_impls];

            progress_mode = m->name;
            snprintf(progress_cell, sizeof progress_cell, "row %zu/%zu, %s, %u thread(s)",
                     r * cells + c + 1, rounds * cells, m->impl_names[impl], n);
            if (measure_cell(m, w, impl, n, &runs[c * rounds + r]) != 0) {
                nkb_progress_done();
                for (size_t i = 0; i < cells * rounds; i++)
                    nkb_rrow_clear(&runs[i]);
                free(runs);
                return -1;
            }
        }
    }
    nkb_progress_done();
    keep_medians(m, runs, cells, rounds, w->rows);
    free(runs);
    return 0;
}

