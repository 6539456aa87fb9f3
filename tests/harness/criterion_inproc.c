/*
 * An in-process runner for Criterion tests, linked into the test binaries of the
 * ThreadSanitizer build only. Criterion's sandbox maps its shared arena with MAP_FIXED
 * at random addresses that TSan has reserved, so a TSan binary aborts before running a
 * test (Criterion issue #274). This main() runs every Test() of its binary in order, in
 * one process; the test code still uses Criterion's own macros and libcriterion's
 * helpers, while the functions defined here replace those that talk to a sandbox parent.
 * Limits: an assertion fails a test only from the test's own thread (from another thread
 * it ends the process); tests that expect a signal or exit code, and parameterized
 * tests, are reported as failures because they need a process of their own.
 */
#include <stdint.h> /* before the Criterion headers: internal/assert/types.h needs it */

#include <criterion/abort.h>
#include <criterion/event.h>
#include <criterion/logging.h>
#include <criterion/internal/assert/types.h>
#include <criterion/types.h>

#include <fnmatch.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Defined here, so both this file and libcriterion use this copy (the test code reads
 * it through Criterion's header, where it is declared const). */
const struct criterion_test *criterion_current_test;
const struct criterion_suite *criterion_current_suite;

/* Placed in these sections by Test() and TestSuite(); entries may be NULL. */
extern struct criterion_test *__start_cr_tst[] __attribute__((weak));
extern struct criterion_test *__stop_cr_tst[] __attribute__((weak));
extern struct criterion_suite *__start_cr_sts[] __attribute__((weak));
extern struct criterion_suite *__stop_cr_sts[] __attribute__((weak));

void cri_asserts_passed_incr(void);
void criterion_internal_test_setup(void);
void criterion_internal_test_main(void (*fn)(void));
void criterion_internal_test_teardown(void);

static pthread_t runner_thread;
static jmp_buf *abort_to; /* where an abort on the runner thread resumes */
/* Set by assertions, which may run on any of the test's threads. */
static atomic_int test_failed, test_skipped;

void criterion_send_assert(struct criterion_assert_stats *stats)
{
    if (stats->passed)
        return;
    atomic_store(&test_failed, 1);
    fprintf(stderr, "  %s:%u: Assertion failed: %s\n", stats->file, stats->line,
            stats->message ? stats->message : "");
}

void cri_asserts_passed_incr(void)
{
}

/* Criterion's newer assertions (criterion/new/assert.h) report through this. */
static void print_node(const struct cri_assert_node *n, int depth)
{
    if (n->repr && !n->pass)
        fprintf(stderr, "  %*s%s\n", 2 * depth, "", n->repr);
    for (int i = 0; i < CRI_ASSERT_MAX_PARAMS && n->params[i].name; i++)
        if (n->params[i].type == CRI_ASSERT_RT_STR)
            fprintf(stderr, "  %*s  %s: %s\n", 2 * depth, "", n->params[i].name,
                    (const char *)n->params[i].data);
    for (uint32_t i = 0; i < n->nchild; i++)
        print_node(&n->children[i], depth + 1);
}

void cri_assert_node_send(const char *file, size_t line, struct cri_assert_node *tree)
{
    atomic_store(&test_failed, 1);
    fprintf(stderr, "  %s:%zu: Assertion failed: %s\n", file, line,
            tree->message && *tree->message ? tree->message : "");
    print_node(tree, 0);
}

void criterion_abort_test(void)
{
    if (!pthread_equal(pthread_self(), runner_thread) || !abort_to) {
        fprintf(stderr, "  test aborted outside its own thread: ending the run\n");
        _exit(1);
    }
    longjmp(*abort_to, 1);
}

void criterion_skip_test(const char *format, ...)
{
    atomic_store(&test_skipped, 1);
    if (format) {
        va_list ap;
        va_start(ap, format);
        fputs("  skipped: ", stderr);
        vfprintf(stderr, format, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    criterion_abort_test();
}

void criterion_test_die(const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    fputs("  ", stderr);
    vfprintf(stderr, msg, ap);
    fputc('\n', stderr);
    va_end(ap);
    atomic_store(&test_failed, 1);
    criterion_abort_test();
}

void criterion_continue_test(void)
{
}

void cr_log(enum criterion_severity severity, const char *msg, ...)
{
    static const char *const tag[] = {"info", "warning", "error"};
    va_list ap;
    va_start(ap, msg);
    fprintf(stderr, "  [%s] ", (unsigned)severity < 3 ? tag[severity] : "log");
    vfprintf(stderr, msg, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void run_fixture(void (*fn)(void))
{
    if (fn)
        fn();
}

/* Called by each Test()'s trampoline, in Criterion's order: suite init, test init,
 * the body, test fini, suite fini. An abort in the body still runs the fini. */
void criterion_internal_test_setup(void)
{
    const struct criterion_suite *s = criterion_current_suite;
    run_fixture(s && s->data ? s->data->init : NULL);
    run_fixture(criterion_current_test->data->init);
}

void criterion_internal_test_main(void (*fn)(void))
{
    jmp_buf here, *outer = abort_to;
    abort_to = &here;
    if (!setjmp(here))
        fn();
    abort_to = outer;
}

void criterion_internal_test_teardown(void)
{
    const struct criterion_suite *s = criterion_current_suite;
    run_fixture(criterion_current_test->data->fini);
    run_fixture(s && s->data ? s->data->fini : NULL);
}

static const struct criterion_suite *find_suite(const char *name)
{
    for (struct criterion_suite **s = __start_cr_sts; s && s < __stop_cr_sts; s++)
        if (*s && strcmp((*s)->name, name) == 0)
            return *s;
    return NULL;
}

/* Returns 1 when the test passed or was skipped, 0 when it failed. */
static int run_one(const struct criterion_test *t, const struct criterion_suite *suite)
{
    const struct criterion_test_extra_data *d = t->data;
    if (d->disabled || (suite && suite->data && suite->data->disabled)) {
        fprintf(stderr, "[SKIP] %s::%s: disabled\n", t->category, t->name);
        return 1;
    }
    fprintf(stderr, "[RUN ] %s::%s\n", t->category, t->name);
    if (d->kind_ != CR_TEST_NORMAL || d->signal || d->exit_code) {
        fprintf(stderr, "[FAIL] %s::%s: needs its own process (signal, exit code or "
                        "parameters), which the in-process runner cannot give\n",
                t->category, t->name);
        return 0;
    }
    jmp_buf top;
    atomic_store(&test_failed, 0);
    atomic_store(&test_skipped, 0);
    criterion_current_test = t;
    criterion_current_suite = suite;
    abort_to = &top;
    if (!setjmp(top))
        t->test();
    abort_to = NULL;
    int failed = atomic_load(&test_failed);
    fprintf(stderr, "[%s] %s::%s\n", failed ? "FAIL" : atomic_load(&test_skipped) ? "SKIP" : "PASS",
            t->category, t->name);
    return !failed;
}

int main(int argc, char **argv)
{
    const char *filter = NULL; /* Criterion's --filter, matched against suite/name */
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--filter=", 9) == 0)
            filter = argv[i] + 9;
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
    }
    runner_thread = pthread_self();
    int tested = 0, failed = 0;
    for (struct criterion_test **t = __start_cr_tst; t && t < __stop_cr_tst; t++) {
        char id[512];
        if (!*t)
            continue;
        snprintf(id, sizeof id, "%s/%s", (*t)->category, (*t)->name);
        if (filter && fnmatch(filter, id, 0) != 0)
            continue;
        tested++;
        failed += !run_one(*t, find_suite((*t)->category));
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: 0\n",
            tested, tested - failed, failed);
    if (tested == 0 && !filter) {
        fprintf(stderr, "no Test() found in this binary\n");
        return 1;
    }
    return failed ? 1 : 0;
}
