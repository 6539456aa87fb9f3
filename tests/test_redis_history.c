/* A randomized history check of coherence: one process's threads write and the other
 * processes' threads read a few keys at random; the "database" is a version counter per key (kept in Redis,
 * under its own names), writes are "update the database, then cache_del", and
 * every operation is logged with its start and end on the system-wide monotonic
 * clock. The checker asserts that no read returned a version older than one whose
 * write (and invalidation) completed more than BOUND_MS before the read began. */
#include "redis_helpers.h"

#define BOUND_MS 250
#define PROCS 3
#define THREADS 2
#define KEYS 4
#define RUN_MS run_ms() /* NKC_HISTORY_MS=60000 for a long run */

static int run_ms(void)
{
    const char *e = getenv("NKC_HISTORY_MS");
    return e && atoi(e) > 0 ? atoi(e) : 1500;
}

struct op {
    int64_t start_ns, end_ns;
    long long version;
    int key, write;
};

static _Thread_local redisContext *db_conn;

static long long db_read(int key)
{
    if (!db_conn)
        db_conn = raw_connect();
    redisReply *r = redisCommand(db_conn, "GET hdb:%d", key);
    long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

static long long db_write(int key)
{
    if (!db_conn)
        db_conn = raw_connect();
    redisReply *r = redisCommand(db_conn, "INCR hdb:%d", key);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

static cache_err_t versioned_loader(void *ud, const void *key, size_t klen, cache_sink_t *sink)
{
    (void)ud;
    char k[16], val[48];
    snprintf(k, sizeof(k), "%.*s", (int)klen, (const char *)key);
    int n = snprintf(val, sizeof(val), "%s=%lld", k, db_read(atoi(k + 1)));
    return cache_sink_put(sink, val, (size_t)n, 0);
}

struct worker {
    pthread_t t;
    cache_t *c;
    unsigned seed;
    int writer; /* process 0 only writes; the others only read, so they see others' writes */
    struct op *ops;
    size_t n, cap;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int64_t stop = nkc_now_ns() + (int64_t)RUN_MS * 1000000;
    char key[16], buf[64];
    while (nkc_now_ns() < stop && w->n < w->cap) {
        struct op *o = &w->ops[w->n];
        o->key = rand_r(&w->seed) % KEYS;
        o->write = w->writer;
        if (w->writer)
            usleep(2000); /* a write every ~2 ms per writer thread */
        snprintf(key, sizeof(key), "k%d", o->key);
        o->start_ns = nkc_now_ns();
        if (o->write) {
            o->version = db_write(o->key);
            if (cache_del(w->c, key, strlen(key)) != CACHE_OK)
                continue; /* an invalidation that did not complete is not logged */
        } else {
            size_t len;
            if (cache_get_copy(w->c, key, strlen(key), buf, sizeof(buf) - 1, &len) != CACHE_OK)
                continue;
            buf[len] = '\0';
            const char *eq = strchr(buf, '=');
            o->version = eq ? atoll(eq + 1) : -1;
        }
        o->end_ns = nkc_now_ns();
        w->n++;
    }
    if (db_conn)
        redisFree(db_conn);
    db_conn = NULL;
    return NULL;
}

static int child_run(int fd, unsigned seed)
{
    cache_config_t *cfg = redis_config("hc:", NULL);
    cfg_set(cfg, "l1.ttl_ms", "300000");
    cache_config_set_loader(cfg, versioned_loader, NULL);
    cache_t *c = open_or_die(cfg);
    cache_config_free(cfg);
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.c = c, .seed = seed * 31u + (unsigned)i, .writer = seed == 1,
                               .cap = 200000 + (size_t)RUN_MS * 200};
        w[i].ops = calloc(w[i].cap, sizeof(struct op));
        pthread_create(&w[i].t, NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(w[i].t, NULL);
        (void)!write(fd, w[i].ops, w[i].n * sizeof(struct op));
        free(w[i].ops);
    }
    cache_close(c);
    return 0;
}

/* Reads all records from fd into a growing array. */
static struct op *read_all(int fd, size_t *n)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t got;
    while ((got = read(fd, buf + len, cap - len)) > 0) {
        len += (size_t)got;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    *n = len / sizeof(struct op);
    return (struct op *)buf;
}

static int by_key_then_end(const void *a, const void *b)
{
    const struct op *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->end_ns < y->end_ns ? -1 : x->end_ns > y->end_ns;
}

/* The highest version among key's writes that ended before t (0 if none); w is
 * sorted by key then end and holds running maxima. */
static long long max_before(const struct op *w, size_t n, int key, int64_t t)
{
    size_t lo = 0, hi = n; /* first index with (key, end) >= (key, t) */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w[mid].key < key || (w[mid].key == key && w[mid].end_ns < t))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && w[lo - 1].key == key ? w[lo - 1].version : 0;
}

Test(history, no_read_older_than_a_completed_write_beyond_the_bound, .timeout = 3600)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            close(fds[0]);
            _exit(child_run(fds[1], (unsigned)p + 1));
        }
    }
    close(fds[1]);
    size_t n;
    struct op *ops = read_all(fds[0], &n);
    close(fds[0]);
    for (int p = 0; p < PROCS; p++) {
        int status;
        waitpid(pids[p], &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* per key: writes by end time, and the running maximum of their versions */
    size_t reads = 0, writes = 0, violations = 0, within_bound = 0;
    struct op *w = malloc((n ? n : 1) * sizeof(*w));
    for (size_t i = 0; i < n; i++)
        if (ops[i].write)
            w[writes++] = ops[i];
    qsort(w, writes, sizeof(*w), by_key_then_end);
    for (size_t i = 1; i < writes; i++)
        if (w[i].key == w[i - 1].key && w[i - 1].version > w[i].version)
            w[i].version = w[i - 1].version; /* now: max version of writes ended so far */
    for (size_t i = 0; i < n; i++) {
        if (ops[i].write)
            continue;
        reads++;
        long long must = max_before(w, writes, ops[i].key,
                                    ops[i].start_ns - (int64_t)BOUND_MS * 1000000);
        long long recent = max_before(w, writes, ops[i].key, ops[i].start_ns);
        violations += ops[i].version < must;
        within_bound += ops[i].version >= must && ops[i].version < recent;
    }
    cr_log_info("history: %zu reads, %zu writes, %zu stale within the %d ms bound, %zu beyond",
                reads, writes, within_bound, BOUND_MS, violations);
    cr_assert(reads > 100 && writes > 30, "%zu reads, %zu writes", reads, writes);
    cr_assert_eq(violations, 0, "%zu reads returned a version older than a completed write",
                 violations);
    free(w);
    free(ops);
}
