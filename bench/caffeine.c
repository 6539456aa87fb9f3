/*
 * The C side of the Caffeine comparison: hands the key sequences to the Java
 * program through a temporary file, compiles bench/caffeine/CaffeineBench.java
 * with javac into a temporary directory, runs it and parses one line per thread
 * count. The directory and everything in it is removed before returning.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define JAVA_FILE "CaffeineBench.java"

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

/* Starts argv[0] (looked up in PATH) with stdout on out_fd. Returns its pid or -1. */
static pid_t spawn(char *const argv[], int out_fd)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int rc;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
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

/* Fills the row of its thread count from a "CAFFEINE threads=..." line, or the heap
 * size from "CAFFEINE_MEMORY ...". */
static void parse_line(const char *line, const nkb_opts_t *o, nkb_caffeine_t *out)
{
    nkb_row_t r = {.impl = "caffeine", .key = "caffeine"};

    if (sscanf(line, "CAFFEINE_MEMORY heap_per_entry=%lf", &out->heap_per_entry) == 1)
        return;
    if (sscanf(line,
               "CAFFEINE threads=%u ops=%" SCNu64 " misses=%" SCNu64 " ops_per_sec=%lf"
               " p50_ns=%" SCNu64 " p99_ns=%" SCNu64 " p999_ns=%" SCNu64,
               &r.threads, &r.ops, &r.misses, &r.ops_per_sec, &r.p50_ns, &r.p99_ns,
               &r.p999_ns) != 7)
        return;
    for (size_t i = 0; i < o->n_points; i++) {
        if (o->threads[i] == r.threads)
            out->rows[i] = r;
    }
}

/* Runs the compiled program and parses its output. Returns the lines parsed or -1. */
static int run_java(const nkb_opts_t *o, const char *dir, const char *seq, nkb_caffeine_t *out)
{
    char cp[2 * PATH_MAX], keys[16], ksz[16], vsz[16], dur[24], ops[24], warm[24], thr[128];
    char rep[8];
    char line[512];
    char *argv[] = {"java", "-Xms1g", "-Xmx4g", "-cp", cp, "CaffeineBench", "--seq", (char *)seq,
                    "--keys", keys, "--key-size", ksz, "--value-size", vsz, "--duration-ms", dur,
                    "--ops", ops, "--warmup-ms", warm, "--threads", thr, "--repeat", rep, NULL};
    int fds[2], got = 0, done = 0;
    size_t off = 0;
    pid_t pid;
    FILE *in;

    snprintf(cp, sizeof cp, "%s:%s", dir, o->caffeine_jar);
    snprintf(keys, sizeof keys, "%" PRIu32, o->keys);
    snprintf(ksz, sizeof ksz, "%zu", o->key_size);
    snprintf(vsz, sizeof vsz, "%zu", o->value_size);
    snprintf(dur, sizeof dur, "%" PRIu64, o->duration_ms);
    snprintf(ops, sizeof ops, "%" PRIu64, o->ops);
    snprintf(warm, sizeof warm, "%" PRIu64, o->warmup_ms);
    snprintf(rep, sizeof rep, "%u", o->repeat);
    for (size_t i = 0; i < o->n_points; i++)
        off += (size_t)snprintf(thr + off, sizeof thr - off, "%s%u", i ? "," : "", o->threads[i]);
    if (pipe(fds) != 0)
        return -1;
    pid = spawn(argv, fds[1]);
    close(fds[1]);
    in = fdopen(fds[0], "r");
    while (in != NULL && fgets(line, sizeof line, in) != NULL) {
        got += strncmp(line, "CAFFEINE ", 9) == 0;
        done |= strncmp(line, "CAFFEINE_DONE", 13) == 0;
        parse_line(line, o, out);
    }
    if (in != NULL)
        fclose(in);
    else
        close(fds[0]);
    if (pid < 0 || !wait_ok(pid) || !done)
        return -1;
    return got;
}

/* javac into dir, its stdout on stderr so --json output stays clean. */
static int compile(const char *dir, const char *jar, char *src)
{
    char *argv[] = {"javac", "-nowarn", "-d", (char *)dir, "-cp", (char *)jar, src, NULL};
    pid_t pid = spawn(argv, STDERR_FILENO);

    return pid < 0 ? -1 : wait_ok(pid) ? 0 : -2;
}

int nkb_caffeine_run(const nkb_opts_t *o, uint32_t *const *seqs, size_t seq_len,
                     nkb_caffeine_t *out)
{
    char src[PATH_MAX], dir[] = "/tmp/nkb-caffeine-XXXXXX", seq[PATH_MAX];
    const char *install = "install default-jdk-headless libcaffeine-java";
    int rc = -1, c;

    memset(out, 0, sizeof *out);
    out->heap_per_entry = -1.0;
    if (access(o->caffeine_jar, R_OK) != 0 || find_source(src, sizeof src) != 0) {
        snprintf(out->why, sizeof out->why, "%s",
                 access(o->caffeine_jar, R_OK) != 0 ? install
                                                     : "bench/caffeine/" JAVA_FILE " not found");
        return 0;
    }
    if (mkdtemp(dir) == NULL) {
        snprintf(out->why, sizeof out->why, "cannot create a temporary directory");
        return -1;
    }
    snprintf(seq, sizeof seq, "%s/keys.seq", dir);
    c = compile(dir, o->caffeine_jar, src);
    if (c == -1) {
        snprintf(out->why, sizeof out->why, "%s", install);
        rc = 0;
    } else if (c != 0) {
        snprintf(out->why, sizeof out->why, "javac failed on %.200s", src);
    } else if (write_sequences(seq, seqs, nkb_opts_max_threads(o), seq_len) != 0) {
        snprintf(out->why, sizeof out->why, "cannot write %.200s", seq);
    } else if (run_java(o, dir, seq, out) != (int)o->n_points) {
        snprintf(out->why, sizeof out->why, "java CaffeineBench failed or printed no result");
    } else {
        rc = 1;
    }
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    return rc;
}
