/*
 * nakkucache-bench: the table of modes, the flag parser they share, and the
 * default job (no arguments: every mode marked default, in table order). Adding a
 * mode is one row in `modes` and, when it takes shared flags, its name in the
 * flags' `modes` lists.
 */
#include "bench.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mode {
    const char *name;
    int (*main)(int argc, char **argv);
    int in_default_job;
    const char *summary;
};

static const struct mode modes[] = {
    {"l1", nkb_l1_main, 1,
     "L1 lookup throughput and latency: the library vs a mutex map vs Caffeine, "
     "then bytes per entry"},
    {"memory", nkb_memory_main, 0, "only the bytes-per-entry part of l1"},
    {"trace", nkb_trace_main, 1, "miss ratios of the eviction policy on real traces"},
    {"tiers", nkb_tiers_main, 1,
     "L1+L2+loader vs plain cache-aside on Redis: ops/s, latency, hits per tier, DB load"},
    {"l2", nkb_l2_main, 1,
     "per-call cost of the L2 layer (L1 ~off) vs a raw hiredis GET loop"},
    {"coherence", nkb_coherence_main, 1,
     "invalidation propagation across processes, stale reads, L1 hits: tracking vs short TTL"},
};
#define N_MODES (sizeof modes / sizeof modes[0])


/* ---------------------------------------------------------------- flags */

/* How a flag stores its value into nkb_opts_t. */
enum kind {
    UINT,   /* an unsigned integer in [min, max], into a field of 4 or 8 bytes */
    SET,    /* no value: the int field becomes 1 */
    CLEAR,  /* no value: the int field becomes 0 */
    STRING, /* the argument itself (argv outlives the options) */
    CUSTOM  /* parsed by fn */
};

typedef struct flag {
    const char *name;    /* without the leading "--" */
    const char *metavar; /* NULL for SET and CLEAR */
    enum kind kind;
    size_t offset, width;
    uint64_t min, max;
    int (*fn)(nkb_opts_t *o, const char *arg);
    const char *modes;   /* space-separated modes that take it */
    const char *help;
} flag_t;

#define FIELD(f) offsetof(nkb_opts_t, f), sizeof(((nkb_opts_t *)0)->f)
#define UINT_FLAG(f, lo, hi) UINT, FIELD(f), lo, hi, NULL
#define BOOL_FLAG(kind, f) kind, FIELD(f), 0, 0, NULL
#define CUSTOM_FLAG(fn) CUSTOM, 0, 0, 0, 0, fn

static int parse_u64(const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int set_threads(nkb_opts_t *o, const char *arg)
{
    const char *p = arg;

    o->n_points = 0;
    while (*p != '\0') {
        char *end;
        unsigned long v = strtoul(p, &end, 10);

        if (end == p || v == 0 || v > NKB_MAX_THREADS || o->n_points == NKB_MAX_POINTS ||
            (*end != ',' && *end != '\0'))
            return -1;
        o->threads[o->n_points++] = (unsigned)v;
        p = *end == ',' ? end + 1 : end;
    }
    return o->n_points > 0 ? 0 : -1;
}

static int set_dist(nkb_opts_t *o, const char *arg)
{
    if (strcmp(arg, "zipf") == 0)
        o->dist = NKB_DIST_ZIPF;
    else if (strcmp(arg, "uniform") == 0)
        o->dist = NKB_DIST_UNIFORM;
    else
        return -1;
    return 0;
}

static int set_theta(nkb_opts_t *o, const char *arg)
{
    char *end;
    double v = strtod(arg, &end);

    if (end == arg || *end != '\0' || !(v > 0.0 && v < 1.0))
        return -1;
    o->theta = v;
    return 0;
}

static const flag_t flags[] = {
    {"threads", "N,N,...", CUSTOM_FLAG(set_threads), "l1 tiers l2",
     "thread counts, one measured point each [1,2]"},
    {"keys", "N", UINT_FLAG(keys, 2, 100000000), "l1 memory",
     "distinct keys, all prefilled [1000000]"},
    {"keys", "N", UINT_FLAG(keys, 2, 100000000), "tiers l2", "distinct keys [100000]"},
    {"dist", "zipf|uniform", CUSTOM_FLAG(set_dist), "l1 tiers", "key popularity [zipf]"},
    {"dist", "zipf|uniform", CUSTOM_FLAG(set_dist), "l2",
     "key popularity [uniform: with zipf the hottest key stays in the one-entry L1]"},
    {"theta", "X", CUSTOM_FLAG(set_theta), "l1 tiers l2", "zipf skew, 0 < X < 1 [0.99]"},
    {"key-size", "BYTES", UINT_FLAG(key_size, 5, 63), "l1 memory tiers l2",
     "\"key:\" + zero-padded index [12]"},
    {"value-size", "BYTES", UINT_FLAG(value_size, 1, 16384), "l1 memory tiers l2",
     "value length [100]"},
    {"duration-ms", "MS", UINT_FLAG(duration_ms, 1, 3600000), "l1",
     "measured time per point [2000]"},
    {"duration-ms", "MS", UINT_FLAG(duration_ms, 1, 3600000), "tiers",
     "measured time per point, each from a cold start [2500]"},
    {"duration-ms", "MS", UINT_FLAG(duration_ms, 1, 3600000), "l2",
     "measured time per point [2000]"},
    {"ops", "N", UINT_FLAG(ops, 1, UINT64_MAX / 2), "l1 tiers l2",
     "operations per thread per point instead of a duration"},
    {"repeat", "N", UINT_FLAG(repeat, 1, 99), "l1 tiers l2",
     "rounds per point, interleaved; reports the median [1]"},
    {"warmup-ms", "MS", UINT_FLAG(warmup_ms, 0, 3600000), "l1",
     "JVM warm-up before Caffeine is measured [2000]"},
    {"seed", "N", UINT_FLAG(seed, 0, UINT64_MAX), "l1 tiers l2",
     "seed of the key sequences [1]"},
    {"no-caffeine", NULL, BOOL_FLAG(CLEAR, caffeine), "l1", "skip the Caffeine rows"},
    {"caffeine-jar", "PATH", STRING, FIELD(caffeine_jar), 0, 0, NULL, "l1",
     "[/usr/share/java/caffeine.jar]"},
    {"no-memory", NULL, BOOL_FLAG(CLEAR, memory), "l1", "skip the bytes-per-entry section"},
    {"redis", "URL", STRING, FIELD(redis_url), 0, 0, NULL, "tiers l2",
     "redis://[user[:password]@]host[:port][/db] or unix:///path[?db=N] "
     "[$NKC_REDIS_URL, else a throwaway redis-server]"},
    {"loader-us", "US", UINT_FLAG(loader_us, 0, 10000000), "tiers",
     "the simulated database's delay per query (nanosleep) [200]"},
    {"json", NULL, BOOL_FLAG(SET, json), "l1 memory tiers l2",
     "one JSON document on stdout instead of tables"},
};
#define N_FLAGS (sizeof flags / sizeof flags[0])

/* Stores arg (NULL for SET and CLEAR) as f says. Returns 0, or -1 for a bad value. */
static int apply(const flag_t *f, nkb_opts_t *o, const char *arg)
{
    char *field = (char *)o + f->offset;
    uint64_t v;

    switch (f->kind) {
    case UINT:
        if (parse_u64(arg, f->min, f->max, &v) != 0)
            return -1;
        if (f->width == sizeof(uint32_t))
            *(uint32_t *)(void *)field = (uint32_t)v;
        else
            *(uint64_t *)(void *)field = v;
        return 0;
    case SET:
    case CLEAR:
        *(int *)(void *)field = f->kind == SET;
        return 0;
    case STRING:
        *(const char **)(void *)field = arg;
        return 0;
    default:
        return f->fn(o, arg);
    }
}

void nkb_opts_init(nkb_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->threads[0] = 1;
    o->threads[1] = 2;
    o->n_points = 2;
    o->keys = 1000000;
    o->dist = NKB_DIST_ZIPF;
    o->theta = 0.99;
    o->key_size = 12;
    o->value_size = 100;
    o->duration_ms = 2000;
    o->warmup_ms = 2000;
    o->seed = 1;
    o->repeat = 1;
    o->caffeine = 1;
    o->memory = 1;
    o->caffeine_jar = "/usr/share/java/caffeine.jar";
    o->loader_us = 200;
}

unsigned nkb_opts_max_threads(const nkb_opts_t *o)
{
    unsigned most = 0;

    for (size_t i = 0; i < o->n_points; i++)
        most = o->threads[i] > most ? o->threads[i] : most;
    return most;
}

/* Whether the space-separated list holds word. */
static int has_word(const char *list, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n) {
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    }
    return 0;
}

static const flag_t *find_flag(const char *mode, const char *name)
{
    for (size_t i = 0; i < N_FLAGS; i++) {
        if (strcmp(flags[i].name, name) == 0 && has_word(flags[i].modes, mode))
            return &flags[i];
    }
    return NULL;
}

void nkb_opts_usage(const char *mode)
{
    printf("usage: nakkucache-bench %s [flags]\n", mode);
    for (size_t i = 0; i < N_FLAGS; i++) {
        char left[64];

        if (!has_word(flags[i].modes, mode))
            continue;
        snprintf(left, sizeof left, "--%s%s%s", flags[i].name, flags[i].metavar ? " " : "",
                 flags[i].metavar ? flags[i].metavar : "");
        printf("  %-28s %s\n", left, flags[i].help);
    }
}

/* Accepts "--name value" and "--name=value". */
int nkb_opts_parse(nkb_opts_t *o, int argc, char **argv)
{
    const char *bad_arg = "";

    for (int i = 1; i < argc; i++) {
        char name[64], *eq;
        const char *arg = argv[i], *val = NULL;
        const flag_t *f;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            nkb_opts_usage(argv[0]);
            return 1;
        }
        bad_arg = arg;
        if (strncmp(arg, "--", 2) != 0 || strlen(arg + 2) >= sizeof name)
            goto bad;
        strcpy(name, arg + 2);
        if ((eq = strchr(name, '=')) != NULL) {
            *eq = '\0';
            val = arg + 2 + (eq - name) + 1;
        }
        if ((f = find_flag(argv[0], name)) == NULL)
            goto bad;
        if (f->metavar != NULL && val == NULL) {
            if (++i == argc) {
                fprintf(stderr, "nakkucache-bench %s: --%s needs %s\n", argv[0], name,
                        f->metavar);
                return -1;
            }
            val = argv[i];
        }
        if ((f->metavar == NULL && val != NULL) || apply(f, o, val) != 0) {
            fprintf(stderr, "nakkucache-bench %s: bad value for --%s: %s\n", argv[0], name,
                    val ? val : "(none expected)");
            return -1;
        }
    }
    return 0;
bad:
    fprintf(stderr, "nakkucache-bench %s: unknown argument %s (see --help)\n", argv[0],
            bad_arg);
    return -1;
}

/* ---------------------------------------------------------------- modes */

static void usage(void)
{
    printf("usage: nakkucache-bench [MODE [flags]]\n"
           "With no arguments, runs the default job: every mode marked * with its defaults.\n"
           "`nakkucache-bench MODE --help` lists a mode's flags.\n\nmodes:\n");
    for (size_t i = 0; i < N_MODES; i++)
        printf("  %-8s %s %s\n", modes[i].name, modes[i].in_default_job ? "*" : " ",
               modes[i].summary);
}

static int default_job(void)
{
    int worst = 0;

    for (size_t i = 0; i < N_MODES; i++) {
        char *argv[] = {(char *)modes[i].name, NULL};
        int rc;

        if (!modes[i].in_default_job)
            continue;
        printf("== nakkucache-bench %s ==\n", modes[i].name);
        fflush(stdout);
        rc = modes[i].main(1, argv);
        worst = rc > worst ? rc : worst;
        printf("\n");
    }
    return worst;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return default_job();
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage();
        return 0;
    }
    for (size_t i = 0; i < N_MODES; i++) {
        if (strcmp(argv[1], modes[i].name) == 0)
            return modes[i].main(argc - 1, argv + 1);
    }
    fprintf(stderr, "nakkucache-bench: unknown mode %s\n", argv[1]);
    usage();
    return 2;
}
