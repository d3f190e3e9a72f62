/*
** tests/tsan/criterion/criterion.h: a stand-in for the few Criterion macros
** the threaded suites use, so that they run under ThreadSanitizer. Criterion
** itself cannot (its sandbox's fixed-address arena clashes with TSan's
** memory layout: Criterion issue #274), so in a -Db_sanitize=thread build
** tests/meson.build puts this directory first on the include path and links
** no Criterion. Tests run one after another in one process, with their
** threads visible to TSan; the first failed assertion prints where and why
** and exits with status 1. Never used by the regular builds.
*/
#ifndef TSAN_CRITERION_SHIM_H
#define TSAN_CRITERION_SHIM_H
/* As Criterion's own header does, as a system header: 'Test(suite, name)'
** leaves the macro's '...' empty, which -Wpedantic reports in user code. */
#pragma GCC system_header

#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Test(suite, name, .init = f, .fini = g) */
typedef struct shim_options {
    int unused;   /* lets '{0, __VA_ARGS__}' be valid when no option is given */
    void (*init)(void);
    void (*fini)(void);
    const char *description;
} shim_options;

typedef struct shim_test {
    const char *suite, *name;
    void (*fn)(void);
    const shim_options *opt;
} shim_test;

enum { SHIM_MAX_TESTS = 128 };
static shim_test shim_tests[SHIM_MAX_TESTS];
static int shim_count;

static inline void shim_register(const char *suite, const char *name, void (*fn)(void),
                                 const shim_options *opt)
{
    if (shim_count < SHIM_MAX_TESTS)
        shim_tests[shim_count++] = (shim_test){suite, name, fn, opt};
}

#define Test(suite, name, ...)                                                                  \
    static void suite##_##name(void);                                                          \
    static const shim_options suite##_##name##_options = {0, __VA_ARGS__};                     \
    __attribute__((constructor)) static void suite##_##name##_register(void)                   \
    {                                                                                          \
        shim_register(#suite, #name, suite##_##name, &suite##_##name##_options);               \
    }                                                                                          \
    static void suite##_##name(void)

static inline void shim_check(const char *file, int line, int ok, const char *what,
                              const char *fmt, ...)
{
    if (ok)
        return;
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, what);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs("    ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    exit(1);
}

#define SHIM_FIRST(a, ...) a
#define SHIM_REST(a, ...) __VA_ARGS__
/* cond, then an optional printf format and its arguments */
#define SHIM_CHECK(ok, what, ...) \
    shim_check(__FILE__, __LINE__, (ok), what, SHIM_REST(__VA_ARGS__, (const char *)0))
#define SHIM_CMP(a, op, ...) \
    SHIM_CHECK((a) op (SHIM_FIRST(__VA_ARGS__, 0)), #a " " #op " " #__VA_ARGS__, __VA_ARGS__)

#define cr_assert(...) SHIM_CHECK(!!(SHIM_FIRST(__VA_ARGS__, 0)), #__VA_ARGS__, __VA_ARGS__)
#define cr_assert_not(...) SHIM_CHECK(!(SHIM_FIRST(__VA_ARGS__, 0)), "not " #__VA_ARGS__, __VA_ARGS__)
#define cr_assert_null(...) \
    SHIM_CHECK((SHIM_FIRST(__VA_ARGS__, 0)) == NULL, #__VA_ARGS__ " is NULL", __VA_ARGS__)
#define cr_assert_not_null(...) \
    SHIM_CHECK((SHIM_FIRST(__VA_ARGS__, 0)) != NULL, #__VA_ARGS__ " is not NULL", __VA_ARGS__)
#define cr_assert_eq(a, ...) SHIM_CMP(a, ==, __VA_ARGS__)
#define cr_assert_neq(a, ...) SHIM_CMP(a, !=, __VA_ARGS__)
#define cr_assert_lt(a, ...) SHIM_CMP(a, <, __VA_ARGS__)
#define cr_assert_leq(a, ...) SHIM_CMP(a, <=, __VA_ARGS__)
#define cr_assert_gt(a, ...) SHIM_CMP(a, >, __VA_ARGS__)
#define cr_assert_geq(a, ...) SHIM_CMP(a, >=, __VA_ARGS__)
/* a and b within eps, then an optional format and its arguments */
#define cr_assert_float_eq(a, b, ...)                                                         \
    SHIM_CHECK(fabs((double)(a) - (double)(b)) <= (SHIM_FIRST(__VA_ARGS__, 0)),               \
               #a " == " #b " within " #__VA_ARGS__, __VA_ARGS__)
#define cr_expect cr_assert
#define cr_expect_not cr_assert_not
#define cr_expect_null cr_assert_null
#define cr_expect_not_null cr_assert_not_null
#define cr_expect_eq cr_assert_eq
#define cr_expect_neq cr_assert_neq
#define cr_expect_lt cr_assert_lt
#define cr_expect_leq cr_assert_leq
#define cr_expect_gt cr_assert_gt
#define cr_expect_geq cr_assert_geq
#define cr_expect_float_eq cr_assert_float_eq

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;   /* a test name, to run just it */
    int ran = 0;
    for (int i = 0; i < shim_count; i++) {
        const shim_test *t = &shim_tests[i];
        if (only && strcmp(only, t->name) != 0)
            continue;
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        if (t->opt->init)
            t->opt->init();
        t->fn();
        if (t->opt->fini)
            t->opt->fini();
        ran++;
    }
    fprintf(stderr, "[PASS] %d test%s\n", ran, ran == 1 ? "" : "s");
    return ran > 0 ? 0 : 1;
}

#endif
