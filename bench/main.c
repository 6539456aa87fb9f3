/*
 * nakkucache-bench: the table of modes, the flag parser they share, and the
 * default job (no arguments: every mode marked default, in table order, with its
 * default-job flags). Adding a mode is one row in `modes` and its name in the
 * `modes` lists of the flags it takes. A flag a mode does not take is an error.
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
    const char *default_job; /* flags in the default job, space-separated; NULL: not in it */
    const char *summary;
};

/* The default job must stay under ~90 s on a 2-core machine (.ci/bench runs it). */
static const struct mode modes[] = {
    {"l1", nkb_l1_main, "",
     "L1 lookup throughput and latency: the library vs a mutex map vs Caffeine, "
     "then bytes per entry"},
    {"memory", nkb_memory_main, NULL, "only the bytes-per-entry part of l1"},
    {"trace", nkb_trace_main, "", "miss ratios of the eviction policy on real traces"},
    {"tiers", nkb_tiers_main, "--warmup-ms 500",
     "L1+L2+loader vs plain cache-aside on Redis: ops/s, latency, hits per tier, DB load"},
    {"l2", nkb_l2_main, "",
     "per-call cost of the L2 layer (L1 ~off) vs a raw hiredis GET loop"},
    {"stampede", nkb_stampede_main, "--rounds 10",
     "N threads miss the same cold key(s) behind a slow loader: loader calls per key and "
     "latency vs cache-aside"},
    {"hotkey", nkb_hotkey_main, "--duration-ms 1000",
     "one hot key with a short TTL and a slow loader: p99 and loads per expiry, "
     "refresh-ahead / stale-while-revalidate on vs off"},
    {"coherence", nkb_coherence_main, "--duration-ms 2000",
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

/* A comma-separated list of 1 to cap unsigned numbers in [1, max] into out, its
 * length into *n. Returns 0, or -1 (*n then means nothing). */
static int parse_list(const char *arg, unsigned max, unsigned *out, size_t cap, size_t *n)
{
    const char *p = arg;

    *n = 0;
    while (*p != '\0') {
        char *end;
        unsigned long v = strtoul(p, &end, 10);

        if (end == p || v == 0 || v > max || *n == cap || (*end != ',' && *end != '\0'))
            return -1;
        out[(*n)++] = (unsigned)v;
        p = *end == ',' ? end + 1 : end;
    }
    return *n > 0 ? 0 : -1;
}

static int set_threads(nkb_opts_t *o, const char *arg)
{
    return parse_list(arg, NKB_MAX_THREADS, o->threads, NKB_MAX_POINTS, &o->n_points);
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

/* A fraction in [0, 1] at the start of arg; *end_out after it. Returns 0 or -1. */
static int parse_frac(const char *arg, const char **end_out, double *out)
{
    char *end;
    double v = strtod(arg, &end);

    if (end == arg || !(v >= 0.0 && v <= 1.0))
        return -1;
    *out = v;
    *end_out = end;
    return 0;
}

/* zipf[:theta] | uniform | hotspot[:fraction:probability] */
static int set_dist(nkb_opts_t *o, const char *arg)
{
    const char *end;

    if (strcmp(arg, "uniform") == 0) {
        o->dist = NKB_DIST_UNIFORM;
        return 0;
    }
    if (strncmp(arg, "zipf", 4) == 0 && (arg[4] == '\0' || arg[4] == ':')) {
        o->dist = NKB_DIST_ZIPF;
        return arg[4] == ':' ? set_theta(o, arg + 5) : 0;
    }
    if (strncmp(arg, "hotspot", 7) != 0 || (arg[7] != '\0' && arg[7] != ':'))
        return -1;
    o->dist = NKB_DIST_HOTSPOT;
    if (arg[7] == '\0')
        return 0;
    if (parse_frac(arg + 8, &end, &o->hot_fraction) != 0 || *end != ':' ||
        parse_frac(end + 1, &end, &o->hot_prob) != 0 || *end != '\0')
        return -1;
    return o->hot_fraction > 0.0 && o->hot_fraction < 1.0 && o->hot_prob > 0.0 ? 0 : -1;
}

static int set_read_ratio(nkb_opts_t *o, const char *arg)
{
    const char *end;

    return parse_frac(arg, &end, &o->read_ratio) == 0 && *end == '\0' ? 0 : -1;
}

/* l1,l2 | l1 | l2: the library's tiers (the loader is always there) */
static int set_tiers(nkb_opts_t *o, const char *arg)
{
    o->tier_l1 = strcmp(arg, "l1,l2") == 0 || strcmp(arg, "l2,l1") == 0 || strcmp(arg, "l1") == 0;
    o->tier_l2 = strcmp(arg, "l1,l2") == 0 || strcmp(arg, "l2,l1") == 0 || strcmp(arg, "l2") == 0;
    return o->tier_l1 || o->tier_l2 ? 0 : -1;
}

/* l1,l2 | l1: the features under test work on L1 copies */
static int set_tiers_with_l1(nkb_opts_t *o, const char *arg)
{
    return set_tiers(o, arg) == 0 && o->tier_l1 ? 0 : -1;
}

static int set_loader(nkb_opts_t *o, const char *arg)
{
    if (strcmp(arg, "sim") == 0) {
        o->sqlite_path = NULL;
        return 0;
    }
    if (strncmp(arg, "sqlite:", 7) != 0 || arg[7] == '\0')
        return -1;
    o->sqlite_path = arg + 7;
    return 0;
}

/* trace: --trace FILE, once per file. */
static int add_trace_file(nkb_opts_t *o, const char *arg)
{
    if (o->n_trace_files == NKB_MAX_TRACES || arg[0] == '\0')
        return -1;
    o->trace_files[o->n_trace_files++] = arg;
    return 0;
}

/* trace: --sizes 1,5,10,25, percentages in [1, 100]. */
static int set_sizes(nkb_opts_t *o, const char *arg)
{
    return parse_list(arg, 100, o->sizes, NKB_MAX_SIZES, &o->n_sizes);
}

/* trace: --stripes N, a power of two, as L1 requires (it picks a stripe by hash bits). */
static int set_stripes(nkb_opts_t *o, const char *arg)
{
    uint64_t v;

    if (parse_u64(arg, 1, NKB_MAX_STRIPES, &v) != 0 || (v & (v - 1)) != 0)
        return -1;
    o->stripes = (unsigned)v;
    return 0;
}

/* The modes that take a flag are listed in it; a flag listed twice has a different
 * default or meaning per mode. */
#define REDIS_MODES "tiers l2 stampede hotkey"
#define THREAD_MODES "l1 " REDIS_MODES
#define ALL_MODES "l1 memory trace coherence " REDIS_MODES

static const flag_t flags[] = {
    {"threads", "N,N,...", CUSTOM_FLAG(set_threads), "l1 tiers l2",
     "thread counts, one measured point each [1,2]"},
    {"threads", "N,N,...", CUSTOM_FLAG(set_threads), "stampede",
     "thread counts: how many threads miss each key at once [8,32]"},
    {"threads", "N,N,...", CUSTOM_FLAG(set_threads), "hotkey",
     "thread counts, all reading the hot key [4]"},
    {"keys", "N", UINT_FLAG(keys, 2, 100000000), "l1 memory",
     "distinct keys, all prefilled [1000000]"},
    {"keys", "N", UINT_FLAG(keys, 2, 100000000), "tiers l2", "distinct keys [100000]"},
    {"keys", "N", UINT_FLAG(keys, 1, 100000), "stampede",
     "keys that go cold together in each round [1]"},
    {"keys", "N", UINT_FLAG(keys, 1, 1024), "coherence", "distinct keys [100]"},
    {"dist", "D", CUSTOM_FLAG(set_dist), "l1 tiers",
     "key popularity: zipf[:theta] | uniform | hotspot[:fraction:probability] "
     "[zipf:0.99; hotspot:0.2:0.8]"},
    {"dist", "D", CUSTOM_FLAG(set_dist), "l2",
     "zipf[:theta] | uniform | hotspot[:fraction:probability] [uniform: with zipf the "
     "hottest key stays in the one-entry L1]"},
    {"theta", "X", CUSTOM_FLAG(set_theta), "l1 tiers l2", "zipf skew, 0 < X < 1 [0.99]"},
    {"read-ratio", "R", CUSTOM_FLAG(set_read_ratio), "l1",
     "fraction of operations that read, 0..1; a write is cache_set of the same key (the "
     "mutex map and Caffeine: their own insert) [1]"},
    {"read-ratio", "R", CUSTOM_FLAG(set_read_ratio), "tiers",
     "fraction of operations that read, 0..1; a write updates the database (one query's "
     "delay), then cache_del (the baseline: DEL) [1]"},
    {"read-ratio", "R", CUSTOM_FLAG(set_read_ratio), "l2",
     "fraction of operations that read, 0..1; a write is cache_set (the baseline: a raw "
     "SET of the same bytes) [1]"},
    {"key-size", "BYTES", UINT_FLAG(key_size, 5, 63), "l1 memory tiers l2 stampede hotkey",
     "\"key:\" + zero-padded index [12]"},
    {"value-size", "BYTES", UINT_FLAG(value_size, 1, 16384), "l1 memory tiers l2 stampede hotkey",
     "value length [100]"},
    {"duration-ms", "MS", UINT_FLAG(duration_ms, 1, 3600000), "l1",
     "measured time per point [2000]"},
    {"duration-ms", "MS", UINT_FLAG(duration_ms, 1, 3600000), "tiers",
     "measured time per point, after the prefill and warm-up [2500]"},
    {"duration-ms", "MS", UINT_FLAG(duration_ms, 1, 3600000), "l2",
     "measured time per point [2000]"},
    {"duration-ms", "MS", UINT_FLAG(duration_ms, 1, 3600000), "hotkey",
     "measured time per point: at least a few TTLs [2000]"},
    {"duration-ms", "MS", UINT_FLAG(duration_ms, 1, 3600000), "coherence",
     "time per run [3000]"},
    {"ops", "N", UINT_FLAG(ops, 1, UINT64_MAX / 2), "l1 tiers l2 hotkey",
     "operations per thread per point instead of a duration"},
    {"rounds", "N", UINT_FLAG(rounds, 1, 10000), "stampede",
     "rounds per point, each on --keys fresh (cold) keys [20]"},
    {"repeat", "N", UINT_FLAG(repeat, 1, 99), THREAD_MODES,
     "runs of every row, interleaved; reports each row's median run [1]"},
    {"warmup-ms", "MS", UINT_FLAG(warmup_ms, 0, 3600000), "l1",
     "JVM warm-up before Caffeine is measured [2000]"},
    {"warmup-ms", "MS", UINT_FLAG(warmup_ms, 0, 3600000), "tiers",
     "untimed run of the workload per row, after the Redis prefill [1000]"},
    {"cold", NULL, BOOL_FLAG(SET, cold), "tiers",
     "every row starts empty: no prefill, no warm-up (the cold-start picture)"},
    {"seed", "N", UINT_FLAG(seed, 0, UINT64_MAX), "l1 tiers l2",
     "seed of the key sequences [1]"},
    {"no-caffeine", NULL, BOOL_FLAG(CLEAR, caffeine), "l1", "skip the Caffeine rows"},
    {"caffeine-jar", "PATH", STRING, FIELD(caffeine_jar), 0, 0, NULL, "l1",
     "[/usr/share/java/caffeine.jar]"},
    {"no-memory", NULL, BOOL_FLAG(CLEAR, memory), "l1", "skip the bytes-per-entry section"},
    {"redis", "URL", STRING, FIELD(redis_url), 0, 0, NULL, REDIS_MODES " coherence",
     "redis://[user[:password]@]host[:port][/db] or unix:///path[?db=N] "
     "[$NKC_REDIS_URL, else a throwaway redis-server]"},
    {"tiers", "l1,l2|l1|l2", CUSTOM_FLAG(set_tiers), "tiers",
     "the library's tiers over the loader; l2 alone = L1 ~off [l1,l2; l1 without Redis]"},
    {"tiers", "l1,l2|l1", CUSTOM_FLAG(set_tiers_with_l1), "stampede hotkey",
     "the library's tiers over the loader [l1,l2; l1 without Redis]"},
    {"loader-us", "US", UINT_FLAG(loader_us, 0, 10000000), "tiers",
     "the simulated database's delay per query (nanosleep) [200]"},
    {"loader-us", "US", UINT_FLAG(loader_us, 0, 10000000), "stampede hotkey",
     "the simulated database's delay per query (nanosleep) [20000]"},
    {"loader", "sim|sqlite:PATH", CUSTOM_FLAG(set_loader), "tiers stampede hotkey",
     "the database: simulated (--loader-us), or a SQLite file the bench fills [sim]"},
    {"ttl-ms", "MS", UINT_FLAG(ttl_ms, 10, 3600000), "hotkey",
     "the hot key's TTL, in L1 and in Redis [200]"},
    {"rate", "OPS", UINT_FLAG(rate, 1, 1000000), "hotkey",
     "reads per second per thread, paced; latency counts from when each read was due "
     "[2000]"},
    {"readers", "N", UINT_FLAG(readers, 1, 8), "coherence", "reader processes [2]"},
    {"interval-ms", "MS", UINT_FLAG(interval_ms, 1, 60000), "coherence",
     "the writer's pause between cache_set calls [5]"},
    {"short-ttl-ms", "MS", UINT_FLAG(short_ttl_ms, 1, 3600000), "coherence",
     "l1.ttl_ms of the baseline run (tracking off) [100]"},
    {"trace", "FILE", CUSTOM_FLAG(add_trace_file), "trace",
     "a gzip'd trace, one decimal key a line; repeatable, up to 64 [every *.keys.gz in "
     "--traces-dir]"},
    {"traces-dir", "DIR", STRING, FIELD(traces_dir), 0, 0, NULL, "trace",
     "where the traces are [" NKB_TRACES_DIR "]"},
    {"sizes", "PCT,PCT,...", CUSTOM_FLAG(set_sizes), "trace",
     "cache sizes in % (1..100) of each trace's unique keys, up to 16 [1,5,10,25]"},
    {"direct", NULL, BOOL_FLAG(SET, trace_direct), "trace",
     "also replay src/policy.c directly (no library)"},
    {"no-library", NULL, BOOL_FLAG(CLEAR, trace_library), "trace",
     "skip the library (implies --direct)"},
    {"stripes", "N", CUSTOM_FLAG(set_stripes), "trace",
     "stripes for --direct, a power of two up to 256 [as the library chose, or 1]"},
    {"json", NULL, BOOL_FLAG(SET, json), ALL_MODES,
     "one JSON document (jansson) on stdout instead of tables"},
    {"csv", NULL, BOOL_FLAG(SET, csv), ALL_MODES,
     "the rows as CSV on stdout instead of tables"},
    {"plot", "PNG", STRING, FIELD(plot), 0, 0, NULL, THREAD_MODES,
     "also draw ops/s and p99 against threads into PNG (needs gnuplot)"},
    {"plot", "PNG", STRING, FIELD(plot), 0, 0, NULL, "trace",
     "also draw miss ratio against cache size, one panel per trace, into PNG (needs "
     "gnuplot)"},
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
    o->hot_fraction = 0.2;
    o->hot_prob = 0.8;
    o->read_ratio = 1.0;
    o->tier_l1 = o->tier_l2 = 1;
    o->rounds = 20;
    o->ttl_ms = 200;
    o->rate = 2000;
    o->readers = 2;
    o->interval_ms = 5;
    o->short_ttl_ms = 100;
    o->traces_dir = NKB_TRACES_DIR;
    o->sizes[0] = 1;
    o->sizes[1] = 5;
    o->sizes[2] = 10;
    o->sizes[3] = 25;
    o->n_sizes = 4;
    o->trace_library = 1;
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

/* The modes that take flag name, space-separated ("" for none). */
static const char *modes_of(const char *name)
{
    static char list[256];

    list[0] = '\0';
    for (size_t i = 0; i < N_FLAGS; i++) {
        if (strcmp(flags[i].name, name) == 0 && strlen(list) + strlen(flags[i].modes) + 2 <
            sizeof list)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                     list[0] ? " " : "", flags[i].modes);
    }
    return list;
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

/* What no single flag can see. Returns 0, or -1 after a message. */
static int check(nkb_opts_t *o, const char *mode)
{
    char path[4096];

    if (o->json + o->csv > 1) {
        fprintf(stderr, "nakkucache-bench %s: --json and --csv exclude each other\n", mode);
        return -1;
    }
    if (o->plot != NULL && nkb_find_program("gnuplot", path, sizeof path) != 0) {
        /* say it now, not after the run; the run still prints its table */
        fprintf(stderr, "nakkucache-bench %s: gnuplot is not installed, --plot %s will not be "
                        "drawn (apt-get install gnuplot-nox)\n", mode, o->plot);
        o->plot = NULL;
    }
    return 0;
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
        if ((f = find_flag(argv[0], name)) == NULL) {
            const char *others = modes_of(name);

            if (others[0] == '\0')
                goto bad;
            fprintf(stderr, "nakkucache-bench %s: --%s is not a flag of this mode (modes that "
                            "take it: %s)\n", argv[0], name, others);
            return -1;
        }
        if (f->metavar != NULL && val == NULL) {
            if (++i == argc) {
                fprintf(stderr, "nakkucache-bench %s: --%s needs %s\n", argv[0], name,
                        f->metavar);
                return -1;
            }
            val = argv[i];
        }
        if ((f->metavar == NULL && val != NULL) || apply(f, o, val) != 0) {
            fprintf(stderr, "nakkucache-bench %s: bad value for --%s: %s\n  --%s%s%s: %s\n",
                    argv[0], name, val ? val : "(none expected)", name, f->metavar ? " " : "",
                    f->metavar ? f->metavar : "", f->help);
            return -1;
        }
    }
    return check(o, argv[0]);
bad:
    fprintf(stderr, "nakkucache-bench %s: unknown argument %s (see --help)\n", argv[0],
            bad_arg);
    return -1;
}

/* ---------------------------------------------------------------- modes */

static void usage(void)
{
    printf("usage: nakkucache-bench [MODE [flags]]\n"
           "With no arguments, runs the default job: every mode marked * (with the flags shown).\n"
           "`nakkucache-bench MODE --help` lists a mode's flags with their defaults; unknown "
           "flags and bad\nvalues exit 2.\n\nmodes:\n");
    for (size_t i = 0; i < N_MODES; i++) {
        printf("  %-9s %s %s", modes[i].name, modes[i].default_job ? "*" : " ",
               modes[i].summary);
        if (modes[i].default_job != NULL && modes[i].default_job[0] != '\0')
            printf(" [default job: %s]", modes[i].default_job);
        printf("\n");
    }
    printf("\nflags (the modes that take them):\n");
    for (size_t i = 0; i < N_FLAGS; i++) {
        char left[64];
        size_t j;

        for (j = 0; j < i && strcmp(flags[j].name, flags[i].name) != 0; j++) {
        }
        if (j < i)
            continue; /* listed with its first row */
        snprintf(left, sizeof left, "--%s%s%s", flags[i].name, flags[i].metavar ? " " : "",
                 flags[i].metavar ? flags[i].metavar : "");
        printf("  %-28s %s\n", left, modes_of(flags[i].name));
    }
}

/* Runs each mode of the default job with its flags. */
static int default_job(void)
{
    int worst = 0;

    for (size_t i = 0; i < N_MODES; i++) {
        char buf[256], *argv[16] = {(char *)modes[i].name};
        int argc = 1, rc;

        if (modes[i].default_job == NULL)
            continue;
        snprintf(buf, sizeof buf, "%s", modes[i].default_job);
        for (char *tok = strtok(buf, " "); tok != NULL && argc < 15; tok = strtok(NULL, " "))
            argv[argc++] = tok;
        argv[argc] = NULL;
        printf("== nakkucache-bench %s%s%s ==\n", modes[i].name, argc > 1 ? " " : "",
               modes[i].default_job);
        fflush(stdout);
        rc = modes[i].main(argc, argv);
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
