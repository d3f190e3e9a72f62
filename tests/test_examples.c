/*
** test_examples.c: smoke tests that run the example programs with small
** settings and check the numbers they print. Meson passes each program's
** path in an environment variable (EXAMPLE_CHAIN, ...).
*/
#define _POSIX_C_SOURCE 200809L   /* popen */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Runs the program named by environment variable 'var' with 'args' and
** returns its standard output (static buffer) and exit status. */
static const char *run(const char *var, const char *args, int *status)
{
    static char out[1 << 16];
    const char *exe = getenv(var);
    cr_assert(exe, "%s is not set: run the suite through meson test", var);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", exe, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

/* The number printed right after 'label' in 'text'. */
static double number_after(const char *text, const char *label)
{
    const char *at = strstr(text, label);
    cr_assert(at, "output lacks \"%s\":\n%s", label, text);
    return strtod(at + strlen(label), NULL);
}

Test(examples, hello_prints_the_chain_gradients)
{
    int st;
    const char *out = run("EXAMPLE_HELLO", "", &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_float_eq(number_after(out, "D = "), 4.5, 1e-12);
    cr_assert_float_eq(number_after(out, "L = "), 156.25, 1e-12);
    cr_assert_float_eq(number_after(out, "dL/dab = "), -225, 1e-12);
    cr_assert_float_eq(number_after(out, "dL/dbc = "), -75, 1e-12);
    cr_assert_float_eq(number_after(out, "dL/dcd = "), -56.25, 1e-12);
}

Test(examples, chain_tape_matches_hand_and_reaches_the_optimum)
{
    int st;
    const char *out = run("EXAMPLE_CHAIN", "--steps 200", &st);
    cr_assert_eq(st, 0, "%s", out);
    /* First step, ab = 0.5, bc = 1.5, cd = 2: dL/dcd = mean 2(D-T) C etc. */
    const char *cd = strstr(out, "dL/dcd");
    cr_assert(cd);
    char *end;
    double tape = strtod(cd + 6, &end), hand = strtod(end, NULL);
    cr_assert_float_eq(tape, -847.5, 1e-9);
    cr_assert_float_eq(hand, -847.5, 1e-9);
    cr_assert_float_eq(number_after(out, "dL/dab"), -3390, 1e-9);
    cr_assert_float_eq(number_after(out, "product of the weights"), 1932.0 / 158.0, 1e-4);
    cr_assert_float_eq(number_after(out, "least-squares optimum"), 1932.0 / 158.0, 1e-6);
    double final = number_after(out, "final loss"), minimal = number_after(out, "minimal loss");
    cr_assert_float_eq(final, minimal, 1e-3);
    cr_assert_float_eq(minimal, 5651.265823, 1e-5);
}

Test(examples, chain_of_26_nodes_shrinks_the_gradient)
{
    int st;
    const char *out = run("EXAMPLE_CHAIN", "--nodes 26 --steps 600", &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "dL/dyz"));
    /* Every weight starts at 0.9: 25 of them between Z and A. */
    cr_assert_float_eq(number_after(out, "|dL/dA| / |dL/dZ| = "), pow(0.9, 25), 1e-5);
    cr_assert_float_eq(number_after(out, "product of the weights"), 1932.0 / 158.0, 1e-3);
}

Test(examples, chain_rejects_bad_arguments)
{
    int st;
    run("EXAMPLE_CHAIN", "--nodes 27", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_CHAIN", "--steps abc", &st);
    cr_assert_eq(st, 2);
    const char *out = run("EXAMPLE_CHAIN", "--help", &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "usage: chain"));
}
