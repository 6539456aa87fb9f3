/*
 * The C side of the Caffeine comparison: hands the key sequences to the Java
 * program through a temporary file, compiles bench/caffeine/CaffeineBench.java
 * with javac into a temporary directory and keeps the JVM running, prefilled and
 * warm, so that its points can be measured interleaved with the C rows (one
 * "measure N" line on its stdin, one result line back). The JVM is idle while the
 * C rows run. nkb_caffeine_stop ends it and removes the directory.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define JAVA_FILE "CaffeineBench.java"
#define INSTALL "install default-jdk-headless libcaffeine-java"

struct nkb_caffeine {
    char dir[32];     /* the temporary directory: classes and the key sequences */
    int have_dir;     /* dir was created */
    pid_t pid;        /* the JVM, or -1 */
    FILE *to, *from;  /* its stdin and stdout */
    double heap_per_entry;
};

/* The Java source: next to the binary (CMake copies it there), else in the tree. */
static int find_source(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash;

    if (n > 0) {
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            if ((size_t)snprintf(out, cap, "%s/%s", exe, JAVA_FILE) < cap &&
                access(out, R_OK) == 0)
                return 0;
        }
    }
#ifdef NKB_SOURCE_DIR
    if ((size_t)snprintf(out, cap, "%s/bench/caffeine/%s", NKB_SOURCE_DIR, JAVA_FILE) < cap &&
        access(out, R_OK) == 0)
        return 0;
#endif
    return -1;
}

/* "NKBSEQ1\0", u32 threads, u32 len, then the arrays, little-endian (x86, arm64). */
static int write_sequences(const char *path, uint32_t *const *seqs, unsigned n, size_t len)
{
    FILE *f = fopen(path, "wb");
    uint32_t head[2] = {n, (uint32_t)len};
    int ok;

    if (f == NULL)
        return -1;
    ok = fwrite("NKBSEQ1", 1, 8, f) == 8 && fwrite(head, sizeof head, 1, f) == 1;
    for (unsigned t = 0; ok && t < n; t++)
        ok = fwrite(seqs[t], sizeof *seqs[t], len, f) == len;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : -1;
}

/* Starts argv[0] (looked up in PATH) with stdin on in_fd (unless -1) and stdout on
 * out_fd; closes close_fd in the child. Returns its pid or -1. */
static pid_t spawn(char *const argv[], int in_fd, int out_fd, int close_fd)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int rc;

    posix_spawn_file_actions_init(&fa);
    if (in_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, in_fd, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    if (close_fd >= 0)
        posix_spawn_file_actions_addclose(&fa, close_fd);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
}

static int wait_ok(pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0) {
        /* retry on EINTR */
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* javac into dir, its stdout on stderr so --json output stays clean. Returns 0, -1
 * when javac is missing, -2 when it failed. */
static int compile(const char *dir, const char *jar, char *src)
{
    char *argv[] = {"javac", "-nowarn", "-d", (char *)dir, "-cp", (char *)jar, src, NULL};
    pid_t pid = spawn(argv, -1, STDERR_FILENO, -1);

    return pid < 0 ? -1 : wait_ok(pid) ? 0 : -2;
}

/* Starts the JVM on the compiled program with two pipes. Returns 0 or -1. */
static int start_java(nkb_caffeine_t *c, const nkb_opts_t *o, const char *seq)
{
    char cp[PATH_MAX], keys[16], ksz[16], vsz[16], dur[24], ops[24], warm[24], thr[16];
    char *argv[] = {"java", "-Xms1g", "-Xmx4g", "-cp", cp, "CaffeineBench", "--seq", (char *)seq,
                    "--keys", keys, "--key-size", ksz, "--value-size", vsz, "--duration-ms", dur,
                    "--ops", ops, "--warmup-ms", warm, "--warmup-threads", thr, NULL};
    int in[2], out[2];

    snprintf(cp, sizeof cp, "%s:%s", c->dir, o->caffeine_jar);
    snprintf(keys, sizeof keys, "%" PRIu32, o->keys);
    snprintf(ksz, sizeof ksz, "%zu", o->key_size);
    snprintf(vsz, sizeof vsz, "%zu", o->value_size);
    snprintf(dur, sizeof dur, "%" PRIu64, o->duration_ms);
    snprintf(ops, sizeof ops, "%" PRIu64, o->ops);
    snprintf(warm, sizeof warm, "%" PRIu64, o->warmup_ms);
    snprintf(thr, sizeof thr, "%u", nkb_opts_max_threads(o));
    if (pipe2(in, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    c->pid = spawn(argv, in[0], out[1], -1);
    close(in[0]);
    close(out[1]);
    c->to = fdopen(in[1], "w");
    c->from = fdopen(out[0], "r");
    if (c->to == NULL)
        close(in[1]);
    if (c->from == NULL)
        close(out[0]);
    return c->pid > 0 && c->to != NULL && c->from != NULL ? 0 : -1;
}

/* Reads lines until one starts with prefix; returns it in line, or -1 at EOF. */
static int read_until(nkb_caffeine_t *c, const char *prefix, char *line, size_t cap)
{
    while (fgets(line, (int)cap, c->from) != NULL) {
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            return 0;
    }
    return -1;
}

/* Writes the message to why and returns rc. */
__attribute__((format(printf, 4, 5))) static int fail(char *why, size_t whylen, int rc,
                                                      const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return rc;
}

/* Compiles, writes the sequences, starts the JVM and waits until it is prefilled
 * and warm. Returns 1, 0 (skipped) or -1, with why set for 0 and -1. */
static int launch(nkb_caffeine_t *c, const nkb_opts_t *o, uint32_t *const *seqs,
                  size_t seq_len, char *why, size_t whylen)
{
    char src[PATH_MAX], seq[64], line[256];
    int rc;

    if (access(o->caffeine_jar, R_OK) != 0)
        return fail(why, whylen, 0, "%s", INSTALL);
    if (find_source(src, sizeof src) != 0)
        return fail(why, whylen, 0, "bench/caffeine/%s not found", JAVA_FILE);
    if (mkdtemp(c->dir) == NULL)
        return fail(why, whylen, -1, "cannot create a temporary directory");
    c->have_dir = 1;
    snprintf(seq, sizeof seq, "%s/keys.seq", c->dir);
    rc = compile(c->dir, o->caffeine_jar, src);
    if (rc == -1)
        return fail(why, whylen, 0, "%s", INSTALL);
    if (rc != 0)
        return fail(why, whylen, -1, "javac failed on %.200s", src);
    if (write_sequences(seq, seqs, nkb_opts_max_threads(o), seq_len) != 0)
        return fail(why, whylen, -1, "cannot write %s", seq);
    if (start_java(c, o, seq) != 0 || read_until(c, "CAFFEINE_MEMORY", line, sizeof line) != 0 ||
        sscanf(line, "CAFFEINE_MEMORY heap_per_entry=%lf", &c->heap_per_entry) != 1 ||
        read_until(c, "CAFFEINE_READY", line, sizeof line) != 0)
        return fail(why, whylen, -1, "java CaffeineBench did not start");
    return 1;
}

int nkb_caffeine_start(const nkb_opts_t *o, uint32_t *const *seqs, size_t seq_len,
                       nkb_caffeine_t **out, char *why, size_t whylen)
{
    nkb_caffeine_t *c = calloc(1, sizeof *c);
    int rc;

    *out = NULL;
    if (c == NULL)
        return fail(why, whylen, -1, "out of memory");
    signal(SIGPIPE, SIG_IGN); /* a JVM that died is an error result, not our death */
    snprintf(c->dir, sizeof c->dir, "/tmp/nkb-caffeine-XXXXXX");
    c->pid = -1;
    c->heap_per_entry = -1.0;
    rc = launch(c, o, seqs, seq_len, why, whylen);
    if (rc == 1)
        *out = c;
    else
        nkb_caffeine_stop(c);
    return rc;
}

int nkb_caffeine_measure(nkb_caffeine_t *c, unsigned threads, nkb_row_t *row)
{
    char line[512];
    nkb_row_t r = {.impl = "caffeine", .key = "caffeine"};

    if (fprintf(c->to, "measure %u\n", threads) < 0 || fflush(c->to) != 0 ||
        read_until(c, "CAFFEINE ", line, sizeof line) != 0)
        return -1;
    if (sscanf(line,
               "CAFFEINE threads=%u ops=%" SCNu64 " misses=%" SCNu64 " ops_per_sec=%lf"
               " p50_ns=%" SCNu64 " p99_ns=%" SCNu64 " p999_ns=%" SCNu64 " p90_ns=%" SCNu64,
               &r.threads, &r.ops, &r.misses, &r.ops_per_sec, &r.p50_ns, &r.p99_ns,
               &r.p999_ns, &r.p90_ns) != 8 ||
        r.threads != threads)
        return -1;
    *row = r;
    return 0;
}

double nkb_caffeine_heap_per_entry(const nkb_caffeine_t *c)
{
    return c->heap_per_entry;
}

void nkb_caffeine_stop(nkb_caffeine_t *c)
{
    if (c == NULL)
        return;
    if (c->to != NULL)
        fclose(c->to); /* EOF on its stdin: the program exits */
    if (c->from != NULL)
        fclose(c->from);
    if (c->pid > 0)
        wait_ok(c->pid);
    if (c->have_dir)
        nftw(c->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(c);
}
