/*
** test_agx.c: the expression explorer. Runs the built program (its path in
** the AGX environment variable) on expressions whose values and derivatives
** were worked out by hand, on bad input that must give a message naming the
** column and exit status 2, and on the fuzzing corpus in tests/fuzz/agx/;
** the parser (tools/agx/parse.c) is also tested directly.
*/
#define _POSIX_C_SOURCE 200809L
#include "eval.h"
#include "parse.h"

#include <criterion/criterion.h>
#include <sys/stat.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------- running */

typedef struct run_result {
    int status;         /* exit status; 128 + signal when it crashed */
    char *out, *err;
} run_result;

static char *slurp_fd(int fd)
{
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    cr_assert(s);
    lseek(fd, 0, SEEK_SET);
    ssize_t got;
    while ((got = read(fd, s + n, cap - n - 1)) > 0) {
        n += (size_t)got;
        if (n + 1 >= cap) {
            cap *= 2;
            s = realloc(s, cap);
            cr_assert(s);
        }
    }
    s[n] = '\0';
    return s;
}

/* Runs agx with the given arguments (NULL-terminated). */
static run_result agx(const char *const *args)
{
    const char *exe = getenv("AGX");
    cr_assert(exe && *exe, "AGX is not set: run this test through meson");
    char out_path[] = "/tmp/agx_out_XXXXXX", err_path[] = "/tmp/agx_err_XXXXXX";
    int out = mkstemp(out_path), err = mkstemp(err_path);
    cr_assert(out >= 0 && err >= 0);
    unlink(out_path);
    unlink(err_path);
    const char *argv[64] = {exe};
    int argc = 1;
    for (; args[argc - 1]; argc++) {
        cr_assert(argc < 63);
        argv[argc] = args[argc - 1];
    }
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawn_file_actions_adddup2(&fa, err, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot run %s", exe);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    run_result r = {WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws), slurp_fd(out),
                    slurp_fd(err)};
    close(out);
    close(err);
    return r;
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* The number after "key": in JSON text at or after 'from', or NaN with *ok false. */
static double json_number(const char *from, const char *key, bool *ok)
{
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = from ? strstr(from, pat) : NULL;
    if (!p) {
        *ok = false;
        return NAN;
    }
    return strtod(p + strlen(pat), NULL);
}

static bool close_to(double got, double want)
{
    if (isnan(want))
        return isnan(got);
    if (isinf(want))
        return got == want;
    return fabs(got - want) <= 1e-9 * fmax(1.0, fabs(want));
}

/* --------------------------------------------- values and derivatives */

enum { MAX_VARS = 6 };

typedef struct value_case {
    const char *expr;
    const char *args[MAX_VARS];    /* name=value */
    double value;
    const char *vars[MAX_VARS];
    double grads[MAX_VARS];        /* worked out by hand */
} value_case;

#define LN2 0.69314718055994530942
#define E 2.71828182845904523536

static value_case value_cases[] = {
    {"x", {"x=3"}, 3, {"x"}, {1}},
    {"x + y", {"x=2", "y=5"}, 7, {"x", "y"}, {1, 1}},
    {"x - y", {"x=2", "y=5"}, -3, {"x", "y"}, {1, -1}},
    {"x * y", {"x=2", "y=5"}, 10, {"x", "y"}, {5, 2}},
    /* d(x/y) = 1/y, -x/y^2 */
    {"x / y", {"x=3", "y=4"}, 0.75, {"x", "y"}, {0.25, -0.1875}},
    {"x ^ 3", {"x=2"}, 8, {"x"}, {12}},
    {"2 ^ x", {"x=3"}, 8, {"x"}, {8 * LN2}},
    {"x ^ y", {"x=2", "y=3"}, 8, {"x", "y"}, {12, 8 * LN2}},
    /* unary minus binds looser than ^ */
    {"-x^2", {"x=3"}, -9, {"x"}, {-6}},
    {"(-x)^2", {"x=3"}, 9, {"x"}, {6}},
    /* ^ is right-associative: 2^(3^2) = 512 */
    {"2^3^2 * x", {"x=1"}, 512, {"x"}, {512}},
    {"1 + 2*x", {"x=4"}, 9, {"x"}, {2}},
    /* / is left-associative: (x/y)/z; d/dy = -x/(y^2 z), d/dz = -x/(y z^2) */
    {"x/y/z", {"x=8", "y=2", "z=4"}, 1, {"x", "y", "z"}, {0.125, -0.5, -0.25}},
    {"x - -x", {"x=2"}, 4, {"x"}, {2}},
    {"exp(x)", {"x=1"}, E, {"x"}, {E}},
    {"log(x)", {"x=2"}, LN2, {"x"}, {0.5}},
    {"sqrt(x)", {"x=9"}, 3, {"x"}, {1.0 / 6}},
    {"abs(x)", {"x=-2.5"}, 2.5, {"x"}, {-1}},
    {"sin(x)", {"x=0.5"}, 0.479425538604203, {"x"}, {0.8775825618903728}},
    {"cos(x)", {"x=0.5"}, 0.8775825618903728, {"x"}, {-0.479425538604203}},
    /* tanh' = 1 - tanh^2 */
    {"tanh(x)", {"x=0.5"}, 0.46211715726000974, {"x"}, {1 - 0.46211715726000974 * 0.46211715726000974}},
    {"sigmoid(x)", {"x=0"}, 0.5, {"x"}, {0.25}},
    {"relu(x)", {"x=-1"}, 0, {"x"}, {0}},
    {"relu(x)", {"x=2"}, 2, {"x"}, {1}},
    /* softplus' = sigmoid */
    {"softplus(x)", {"x=0"}, LN2, {"x"}, {0.5}},
    {"x*x*x - 2*x", {"x=3"}, 21, {"x"}, {25}},
    {"1e-3 * x", {"x=5"}, 0.005, {"x"}, {0.001}},
    {".5*x + 2.", {"x=4"}, 4, {"x"}, {0.5}},
    {"x*y*z", {"x=2", "y=3", "z=4"}, 24, {"x", "y", "z"}, {12, 8, 6}},
    {"sqrt(x^2 + y^2)", {"x=3", "y=4"}, 5, {"x", "y"}, {0.6, 0.8}},
    {"x^0.5", {"x=4"}, 2, {"x"}, {0.25}},
    {"log(exp(x))", {"x=1.5"}, 1.5, {"x"}, {1}},
    /* s(1-s) at 0 is 1/4, and its derivative s'(1 - 2s) is 0 there */
    {"sigmoid(x)*(1 - sigmoid(x))", {"x=0"}, 0.25, {"x"}, {0}},
    {"k = 3; x*k + k", {"x=2"}, 9, {"x"}, {3}},
    {"x*0 + 3", {"x=1"}, 3, {"x"}, {0}},
    /* micrograd's neuron: n = 0.881..., o = tanh(n) = 1/sqrt(2), do/dn = 1/2 */
    {"tanh(x1*w1 + x2*w2 + b)", {"x1=2", "x2=0", "w1=-3", "w2=1", "b=6.8813735870195432"},
     0.7071067811865476, {"x1", "x2", "w1", "w2", "b"}, {-1.5, 0.5, 1, 0, 0.5}},
    /* the chain: dL/dd = 2(d - 17) = -25, then back through cd, bc, ab */
    {"b = ab*a; c = bc*b; d = cd*c; L = (d - 17)^2", {"a=3", "ab=0.5", "bc=1.5", "cd=2"},
     156.25, {"a", "ab", "bc", "cd"}, {-37.5, -225, -75, -56.25}},
    /* micrograd's test_sanity_check: y = -20, dy/dx = 46 */
    {"z = 2*x + 2 + x; q = relu(z) + z*x; h = relu(z*z); y = h + q + q*x", {"x=-4"}, -20,
     {"x"}, {46}},
    /* micrograd's test_more_ops, with one name per update */
    {"c1 = a + b; d1 = a*b + b^3; c2 = c1 + (c1 + 1); c3 = c2 + (1 + c2 + (-a));"
     "d2 = d1 + (d1*2 + relu(b + a)); d3 = d2 + (3*d2 + relu(b - a)); e = c3 - d3;"
     "f = e^2; g1 = f / 2; g = g1 + 10/f",
     {"a=-4", "b=2"}, 24.70408163265306, {"a", "b"}, {138.83381924198252, 645.5772594752186}},
    /* the special functions: erf' = 2/sqrt(pi) e^(-x^2), atan' = 1/(1 + x^2),
    ** log1p' = 1/(1 + x), expm1' = e^x, atan2: d/dy = x/r^2, d/dx = -y/r^2 */
    {"erf(x)", {"x=0.5"}, 0.5204998778130465, {"x"}, {0.8787825789354448}},
    {"atan(x)", {"x=1"}, 0.7853981633974483, {"x"}, {0.5}},
    {"log1p(x)", {"x=1e-10"}, 9.999999999500001e-11, {"x"}, {1 / (1 + 1e-10)}},
    {"log1p(x)", {"x=3"}, 2 * LN2, {"x"}, {0.25}},
    {"expm1(x)", {"x=1"}, 1.718281828459045, {"x"}, {E}},
    {"expm1(x)", {"x=1e-10"}, 1.00000000005e-10, {"x"}, {1 + 1e-10}},
    {"atan2(y, x)", {"y=1", "x=-1"}, 2.356194490192345, {"y", "x"}, {-0.5, -0.5}},
    {"atan2(y, x)", {"y=0", "x=-2"}, 3.14159265358979323846, {"y", "x"}, {-0.5, 0}},
    {"atan2(y, x)", {"y=3", "x=4"}, 0.6435011087932844, {"y", "x"}, {0.16, -0.12}},
    {"atan2(2*y, y + 1)", {"y=1"}, 0.7853981633974483, {"y"}, {0.25}},
    /* atan2 at the origin is 0, its derivative 0/0 */
    {"atan2(y, x)", {"y=0", "x=0"}, 0, {"y", "x"}, {NAN, NAN}},
    /* non-finite results are reported as they are */
    {"1/x", {"x=0"}, INFINITY, {"x"}, {-INFINITY}},
    {"log(x)", {"x=0"}, -INFINITY, {"x"}, {INFINITY}},
    {"sqrt(x)", {"x=-1"}, NAN, {"x"}, {NAN}},
};

/* Criterion runs each case in a new process, where pointers from this one
** mean nothing: the parameter is an index into the static table. */
enum { N_VALUE_CASES = sizeof value_cases / sizeof value_cases[0] };
static int value_case_index[N_VALUE_CASES];

ParameterizedTestParameters(agx_values, json_value_and_gradients)
{
    for (int i = 0; i < N_VALUE_CASES; i++)
        value_case_index[i] = i;
    return cr_make_param_array(int, value_case_index, N_VALUE_CASES);
}

ParameterizedTest(int *index, agx_values, json_value_and_gradients)
{
    const value_case *c = &value_cases[*index];
    const char *args[MAX_VARS + 3] = {"--json", c->expr};
    int n = 2;
    for (int i = 0; i < MAX_VARS && c->args[i]; i++)
        args[n++] = c->args[i];
    args[n] = NULL;
    run_result r = agx(args);
    bool finite = isfinite(c->value);
    for (int i = 0; i < MAX_VARS && c->vars[i]; i++)
        finite &= isfinite(c->grads[i]) != 0;
    cr_expect_eq(r.status, finite ? 0 : 1, "%s: status %d, stderr: %s", c->expr, r.status, r.err);
    bool ok = true;
    double v = json_number(r.out, "value", &ok);
    cr_expect(ok && close_to(v, c->value), "%s: value %.17g, want %.17g\n%s", c->expr, v,
              c->value, r.out);
    const char *grad = strstr(r.out, "\"grad\": {");
    for (int i = 0; i < MAX_VARS && c->vars[i]; i++) {
        double g = json_number(grad, c->vars[i], &ok);
        cr_expect(ok && close_to(g, c->grads[i]), "%s: d/d%s = %.17g, want %.17g\n%s", c->expr,
                  c->vars[i], g, c->grads[i], r.out);
    }
    if (!finite)
        cr_expect(strstr(r.err, "is nan") || strstr(r.err, "is inf") || strstr(r.err, "is -inf"),
                  "%s: %s", c->expr, r.err);
    run_free(&r);
}

Test(agx, json_is_exactly_the_documented_shape)
{
    run_result r = agx((const char *[]){"--json", "b = ab*a; c = bc*b; d = cd*c; L = (d - 17)^2",
                                        "a=3", "ab=0.5", "bc=1.5", "cd=2", NULL});
    cr_expect_eq(r.status, 0);
    cr_expect_str_eq(r.out, "{\"value\": 156.25, \"grad\": {\"a\": -37.5, \"ab\": -225, \"bc\": "
                            "-75, \"cd\": -56.25}}\n");
    run_free(&r);
    r = agx((const char *[]){"--json", "x/3", "x=1", NULL});
    cr_expect_str_eq(r.out, "{\"value\": 0.33333333333333331, \"grad\": {\"x\": "
                            "0.33333333333333331}}\n", "%%.17g numbers");
    run_free(&r);
    r = agx((const char *[]){"--json", "2 + 3", NULL});
    cr_expect_str_eq(r.out, "{\"value\": 5, \"grad\": {}}\n");
    run_free(&r);
}

Test(agx, the_table_lists_variables_as_given_then_intermediates)
{
    run_result r = agx((const char *[]){"b = ab*a; c = bc*b; d = cd*c; L = (d - 17)^2", "cd=2",
                                        "a=3", "ab=0.5", "bc=1.5", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "L = 156.25\n"
                            "\n"
                            "variable  value  gradient\n"
                            "cd        2      -56.25\n"
                            "a         3      -37.5\n"
                            "ab        0.5    -225\n"
                            "bc        1.5    -75\n"
                            "\n"
                            "intermediate  value  gradient\n"
                            "b             1.5    -75\n"
                            "c             2.25   -50\n"
                            "d             4.5    -25\n");
    run_free(&r);
}

Test(agx, check_puts_finite_differences_beside_the_tape)
{
    run_result r = agx((const char *[]){"--check", "--json", "x^3 + sin(y)", "x=2", "y=1", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    bool ok = true;
    const char *numeric = strstr(r.out, "\"numeric\": {");
    cr_assert(numeric, "%s", r.out);
    cr_expect(fabs(json_number(numeric, "x", &ok) - 12) < 1e-6, "%s", r.out);
    cr_expect(fabs(json_number(numeric, "y", &ok) - cos(1.0)) < 1e-6, "%s", r.out);
    cr_expect(ok);
    run_free(&r);
    r = agx((const char *[]){"x*x", "x=3", "--check", NULL});
    cr_expect(strstr(r.out, "finite difference") && strstr(r.out, "difference"), "%s", r.out);
    run_free(&r);
}

Test(agx, dot_and_steps_write_files_dot_accepts)
{
    char dir[] = "/tmp/agx_dot_XXXXXX";
    cr_assert(mkdtemp(dir));
    char dot[128], steps[128], cmd[512];
    snprintf(dot, sizeof dot, "%s/neuron.dot", dir);
    snprintf(steps, sizeof steps, "%s/frames", dir);
    run_result r = agx((const char *[]){"--dot", dot, "--steps", steps, "tanh(x1*w1 + x2*w2 + b)",
                                        "x1=2", "x2=0", "w1=-3", "w2=1", "b=6.8813735870195432",
                                        NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "wrote 6 frames"), "%s", r.out);
    FILE *f = fopen(dot, "rb");
    cr_assert(f, "no %s", dot);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s/step_005.dot", steps);
    f = fopen(cmd, "rb");
    cr_assert(f, "no %s", cmd);
    fclose(f);
    if (system("command -v dot >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "dot -Tsvg '%s' '%s/step_003.dot' -O 2>&1 | grep . && exit 1; exit 0",
                 dot, steps);
        cr_expect_eq(system(cmd), 0, "dot complained");
    }
    run_free(&r);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

Test(agx, html_writes_the_step_through_page)
{
    /* micrograd's first example: a=2, b=-3, c=10, e=a*b, d=e+c, f=-2, L=d*f */
    char dir[] = "/tmp/agx_html_XXXXXX";
    cr_assert(mkdtemp(dir));
    char page[128];
    snprintf(page, sizeof page, "%s/micrograd.html", dir);
    run_result r = agx((const char *[]){"--html", page, "e = a*b; d = e + c; L = d*f", "a=2",
                                        "b=-3", "c=10", "f=-2", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "wrote "), "%s", r.out);
    FILE *f = fopen(page, "rb");
    cr_assert(f, "no %s", page);
    static char text[1 << 17];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    cr_expect(n > 1000 && n < sizeof text - 1, "%zu bytes", n);
    cr_expect(strstr(text, "<title>e = a*b; d = e + c; L = d*f</title>"));
    cr_expect(strstr(text, "\"title\":\"Backward step 3 of 3: mul \xe2\x86\x92 e passes grad(e) = -2 "
                           "back to its inputs\""));
    cr_expect(strstr(text, "grad(a) += grad(e) \xc3\x97 \xe2\x88\x82"
                           "e/\xe2\x88\x82" "a = (-2) \xc3\x97 (-3) = 6"));
    cr_expect(strstr(text, "grad(f) += grad(L) \xc3\x97 \xe2\x88\x82"
                           "L/\xe2\x88\x82" "f = 1 \xc3\x97 4 = 4"));
    cr_expect(strstr(text, "Every gradient is known now: grad(a) = 6, grad(b) = -4, grad(c) = -2, "
                           "grad(f) = 4"), "%s", text);
    run_free(&r);
    unlink(page);
    rmdir(dir);
}

/* Issue 21: --steps on a 12 KB expression wrote 3,000 files and 5.3 GB. */
Test(agx, steps_are_capped_and_say_so)
{
    char dir[] = "/tmp/agx_cap_XXXXXX";
    cr_assert(mkdtemp(dir));
    char steps[128], cmd[256];
    snprintf(steps, sizeof steps, "%s/frames", dir);
    /* 600 products: 1,199 frames. */
    char *expr = malloc(600 * 4 + 1);
    expr[0] = '\0';
    for (int i = 0; i < 600; i++)
        strcat(expr, i ? "+x*x" : "x*x");
    run_result r = agx((const char *[]){"--steps", steps, expr, "x=1", NULL});
    cr_expect_eq(r.status, 3, "%s", r.err);
    cr_expect(strstr(r.err, "1199 frames pass the cap of 1000; nothing was written"), "%s", r.err);
    cr_expect(strstr(r.out, "value = 600"), "the value is still printed: %s", r.out);
    run_free(&r);
    /* 300 products: 599 frames of about 380 KB, over 64 MB in all. */
    expr[300 * 4 - 1] = '\0';
    r = agx((const char *[]){"--steps", steps, expr, "x=1", NULL});
    cr_expect_eq(r.status, 3, "%s", r.err);
    cr_expect(strstr(r.err, "599 frames of up to") && strstr(r.err, "pass the cap of 64 MB"), "%s", r.err);
    run_free(&r);
    struct stat st;
    cr_expect_neq(stat(steps, &st), 0, "the frames directory was made");
    free(expr);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Issue 21: a valid number of 100 characters was refused. */
Test(agx, long_numbers_are_read_in_full)
{
    char arg[120], expr[120];
    snprintf(arg, sizeof arg, "x=1.%097d1", 0);
    snprintf(expr, sizeof expr, "x + 2.%097d", 0);
    run_result r = agx((const char *[]){"--json", expr, arg, NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "{\"value\": 3, \"grad\": {\"x\": 1}}"), "%s", r.out);
    run_free(&r);
}

Test(agx, rendering_needs_graphviz_and_says_so)
{
    run_result r = agx((const char *[]){"--dot", "/tmp/agx_render_test.svg", "x*2", "x=1", NULL});
    if (ag_dot_can_render()) {
        cr_expect_eq(r.status, 0, "%s", r.err);
        FILE *f = fopen("/tmp/agx_render_test.svg", "rb");
        cr_expect(f);
        if (f)
            fclose(f);
        remove("/tmp/agx_render_test.svg");
    } else {
        cr_expect_eq(r.status, 2);
        cr_expect(strstr(r.err, "Graphviz"), "%s", r.err);
    }
    run_free(&r);
}

Test(agx, help_and_usage)
{
    run_result r = agx((const char *[]){"--help", NULL});
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "usage: agx"));
    run_free(&r);
    r = agx((const char *[]){NULL});
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "no expression given"));
    run_free(&r);
}

/* --version names agx's version and the library's, which are the header's
** and the project's (meson passes it as AG_TEST_PROJECT_VERSION). */
Test(agx, version)
{
    run_result r = agx((const char *[]){"--version", NULL});
    cr_expect_eq(r.status, 0);
    char want[128];
    snprintf(want, sizeof want, "agx %s (libautograd %s)\n", AG_TEST_PROJECT_VERSION,
             AG_TEST_PROJECT_VERSION);
    cr_expect_str_eq(r.out, want);
    run_free(&r);
    cr_expect_str_eq(ag_version(), AG_TEST_PROJECT_VERSION);
    cr_expect_str_eq(AG_VERSION_STRING, AG_TEST_PROJECT_VERSION);
    cr_expect_eq(ag_version_number(), AG_VERSION_NUMBER);
    char num[32];
    snprintf(num, sizeof num, "%d.%d.%d", AG_VERSION_MAJOR, AG_VERSION_MINOR, AG_VERSION_PATCH);
    cr_expect_str_eq(num, AG_VERSION_STRING);
}

/* ---------------------------------------- --hessian and --tangent (issue 15) */

/* The entry (row, col) of the "hessian" object of agx's JSON; NaN with *ok
** false when it is missing. */
static double hessian_entry(const char *json, const char *row, const char *col, bool *ok)
{
    const char *h = strstr(json, "\"hessian\": {");
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\": {", row);
    const char *r = h ? strstr(h + 12, pat) : NULL;
    if (!r) {
        *ok = false;
        return NAN;
    }
    const char *end = strchr(r, '}');
    double v = json_number(r + strlen(pat) - 1, col, ok);
    const char *at = strstr(r + strlen(pat) - 1, col);
    if (!at || at > end)
        *ok = false;
    return v;
}

Test(agx, hessian_and_tangent_json_is_exactly_the_documented_shape)
{
    /* Rosenbrock at (1, 2): the example of autograd.h's drivers */
    run_result r = agx((const char *[]){"--json", "--hessian", "--tangent", "x=1",
                                        "(1 - x)^2 + 100*(y - x^2)^2", "x=1", "y=2", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "{\"value\": 100, \"grad\": {\"x\": -400, \"y\": 200}, \"hessian\": "
                            "{\"x\": {\"x\": 402, \"y\": -400}, \"y\": {\"x\": -400, \"y\": 200}}, "
                            "\"jvp\": -400}\n");
    run_free(&r);
    /* %.17g: 1/3 in full, the variables in the order given */
    r = agx((const char *[]){"--json", "--tangent", "x=1", "--hessian", "x*y/3", "y=1", "x=1", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "{\"value\": 0.33333333333333331, \"grad\": {\"y\": 0.33333333333333331, "
                            "\"x\": 0.33333333333333331}, \"hessian\": {\"y\": {\"y\": 0, \"x\": "
                            "0.33333333333333331}, \"x\": {\"y\": 0.33333333333333331, \"x\": 0}}, "
                            "\"jvp\": 0.33333333333333331}\n");
    run_free(&r);
    r = agx((const char *[]){"--json", "--hessian", "2 + 3", NULL});
    cr_expect_str_eq(r.out, "{\"value\": 5, \"grad\": {}, \"hessian\": {}}\n");
    run_free(&r);
    /* with --check, after the finite differences */
    r = agx((const char *[]){"--json", "--check", "--tangent", "x=2", "x^2", "x=3", NULL});
    cr_expect(strstr(r.out, "\"numeric\": {\"x\": ") && strstr(r.out, "}, \"jvp\": 12}\n"), "%s", r.out);
    run_free(&r);
}

Test(agx, hessian_and_tangent_tables)
{
    run_result r = agx((const char *[]){"--hessian", "--tangent", "x=1", "(1 - x)^2 + 100*(y - x^2)^2",
                                        "x=1", "y=2", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "value = 100\n"
                            "\n"
                            "variable  value  gradient\n"
                            "x         1      -400\n"
                            "y         2      200\n"
                            "\n"
                            "hessian  x     y\n"
                            "x        402   -400\n"
                            "y        -400  200\n"
                            "\n"
                            "directional derivative (forward mode) along x=1: -400\n");
    run_free(&r);
}

/* Second derivatives worked out by hand, in the JSON object. */
Test(agx, hessian_entries_are_second_derivatives)
{
    static const struct {
        const char *expr, *args[3];
        const char *vars[3];
        double h[9];
    } cases[] = {
        {"sin(x)", {"x=0.5"}, {"x"}, {-0.479425538604203}},
        {"exp(2*x)", {"x=0.5"}, {"x"}, {4 * E}},
        {"x^3", {"x=2"}, {"x"}, {12}},
        /* d2/dx2 of 1/(1 + x^2) = (6x^2 - 2)/(1 + x^2)^3 */
        {"1/(1 + x^2)", {"x=2"}, {"x"}, {22.0 / 125}},
        {"x*y*z", {"x=2", "y=3", "z=4"}, {"x", "y", "z"}, {0, 4, 3, 4, 0, 2, 3, 2, 0}},
        /* x^y: d2/dx2 = y (y-1) x^(y-2), d2/dy2 = x^y ln^2 x, d2/dxdy = x^(y-1) (1 + y ln x) */
        {"x^y", {"x=2", "y=3"}, {"x", "y"}, {12, 4 * (1 + 3 * LN2), 4 * (1 + 3 * LN2), 8 * LN2 * LN2}},
        {"k = x*y; tanh(k)", {"x=0.5", "y=1"}, {"x", "y"},
         {-2 * 0.46211715726000974 * (1 - 0.46211715726000974 * 0.46211715726000974),
          0.5 * -2 * 0.46211715726000974 * (1 - 0.46211715726000974 * 0.46211715726000974) +
              (1 - 0.46211715726000974 * 0.46211715726000974),
          0.5 * -2 * 0.46211715726000974 * (1 - 0.46211715726000974 * 0.46211715726000974) +
              (1 - 0.46211715726000974 * 0.46211715726000974),
          0.25 * -2 * 0.46211715726000974 * (1 - 0.46211715726000974 * 0.46211715726000974)}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *args[8] = {"--json", "--hessian", cases[c].expr};
        int n = 3, nv = 0;
        for (; nv < 3 && cases[c].args[nv]; nv++)
            args[n++] = cases[c].args[nv];
        args[n] = NULL;
        run_result r = agx(args);
        cr_expect_eq(r.status, 0, "%s: %s", cases[c].expr, r.err);
        for (int i = 0; i < nv; i++)
            for (int k = 0; k < nv; k++) {
                bool ok = true;
                double got = hessian_entry(r.out, cases[c].vars[i], cases[c].vars[k], &ok);
                cr_expect(ok && close_to(got, cases[c].h[i * nv + k]), "%s: d2/d%s d%s = %.17g, "
                          "want %.17g\n%s", cases[c].expr, cases[c].vars[i], cases[c].vars[k], got,
                          cases[c].h[i * nv + k], r.out);
            }
        run_free(&r);
    }
}

Test(agx, tangent_gives_the_directional_derivative_others_get_zero)
{
    /* d(x y z) along (1, 2, 0) = y z + 2 x z */
    run_result r = agx((const char *[]){"--json", "--tangent", "x=1", "--tangent", "y=2", "x*y*z",
                                        "x=2", "y=3", "z=4", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    bool ok = true;
    cr_expect(close_to(json_number(r.out, "jvp", &ok), 12 + 16), "%s", r.out);
    cr_expect(ok);
    run_free(&r);
    r = agx((const char *[]){"--tangent", "z=-0.5", "x*y*z", "x=2", "y=3", "z=4", NULL});
    cr_expect(strstr(r.out, "\ndirectional derivative (forward mode) along z=-0.5: -3\n"), "%s",
              r.out);
    run_free(&r);
    /* a variable the output does not depend on */
    r = agx((const char *[]){"--json", "--tangent", "y=1", "x*2 + 0*y", "x=2", "y=3", NULL});
    cr_expect(strstr(r.out, "\"jvp\": 0}"), "%s", r.out);
    run_free(&r);
}

Test(agx, non_finite_second_derivatives_are_reported)
{
    run_result r = agx((const char *[]){"--json", "--hessian", "--tangent", "x=1", "log(x)", "x=0",
                                        NULL});
    cr_expect_eq(r.status, 1, "%s", r.err);
    /* -1/x^2 at 0 is -inf, but the tangent of 1/x meets 0 * inf: the
    ** library's arithmetic decides between -inf and NaN; either is reported. */
    cr_expect(strstr(r.out, "\"hessian\": {\"x\": {\"x\": NaN}}, \"jvp\": Infinity") ||
              strstr(r.out, "\"hessian\": {\"x\": {\"x\": -Infinity}}, \"jvp\": Infinity"), "%s",
              r.out);
    cr_expect(strstr(r.err, "the second derivative with respect to x and x is "), "%s", r.err);
    cr_expect(strstr(r.err, "the directional derivative is inf"), "%s", r.err);
    run_free(&r);
}

/* The manual page lists every option --help lists. */
Test(agx, man_page_covers_every_option)
{
    FILE *f = fopen("../tools/agx/agx.1", "rb");
    cr_assert(f, "tools/agx/agx.1 is missing");
    static char man[32768];
    size_t n = fread(man, 1, sizeof man - 1, f);
    fclose(f);
    man[n] = '\0';
    run_result r = agx((const char *[]){"--help", NULL});
    for (const char *p = r.out; (p = strstr(p, "  --"));) {
        p += 4;
        size_t len = strcspn(p, " ,\n");
        char opt[64];
        snprintf(opt, sizeof opt, "\\-\\-%.*s", (int)len, p);
        cr_expect(strstr(man, opt), "agx.1 does not document --%.*s", (int)len, p);
    }
    run_free(&r);
}

/* ---------------------------------------------------------- bad input */

typedef struct error_case {
    const char *args[8];    /* NULL-terminated */
    const char *message;    /* must appear on stderr */
} error_case;

static error_case error_cases[] = {
    {{""}, "column 1: empty expression"},
    {{";"}, "column 1: empty expression"},
    {{"x; ;", "x=1"}, "column 4: empty statement before ';'"},
    {{"x +", "x=1"}, "column 4: expected a number, a name or '(', found the end"},
    {{"x  +  * y", "x=1", "y=1"}, "column 7: expected a number, a name or '(', found '*'"},
    {{"(x", "x=1"}, "column 3: expected ')' to close the '(' at column 1, found the end"},
    {{"x)", "x=1"}, "column 2: ')' has no '(' to close"},
    {{"tanhh(x)", "x=1"}, "column 1: unknown function 'tanhh'"},
    {{"exp"}, "column 1: 'exp' is a function: write exp(...)"},
    {{"exp()"}, "column 5: exp() needs an argument"},
    {{"exp(x, x)", "x=1"}, "column 6: exp takes one argument"},
    {{"log1p(x, x)", "x=1"}, "column 8: log1p takes one argument"},
    {{"atan2(x)", "x=1"}, "column 8: atan2 takes 2 arguments, found 1"},
    {{"atan2()"}, "column 7: atan2() needs 2 arguments"},
    {{"atan2(x, x, x)", "x=1"}, "column 11: atan2 takes 2 arguments, found more"},
    {{"atan2(x x)", "x=1"}, "column 9: expected ',' or ')' in 'atan2(' at column 1, found 'x'"},
    {{"atan2 + 1"}, "column 1: 'atan2' is a function: write atan2(...)"},
    {{"erf = 1; erf"}, "column 1: 'erf' is a function and cannot be bound"},
    {{"sin(x", "x=1"}, "column 6: expected ')' to close 'sin(' at column 1"},
    {{"2x", "x=1"}, "column 2: missing operator before 'x'"},
    {{"x $ 2", "x=1"}, "column 3: unexpected character '$'"},
    {{"x**2", "x=1"}, "column 2: '**' is not an operator: write ^ for powers"},
    {{"1e+"}, "column 2: the exponent of '1e+' has no digits"},
    {{"1e999"}, "column 1: the number '1e999' is too large for a double"},
    {{"x = 2 = 3"}, "column 7: '=' can only follow a name at the start of a statement"},
    {{"x; y", "x=1", "y=1"}, "column 1: only the last statement can be a bare expression"},
    {{"a = 1; a = 2; a"}, "column 8: 'a' is bound twice (first at column 1)"},
    {{"c = b*2; b = 3; c"}, "column 10: 'b' is used at column 5 before it is bound here"},
    {{"a = a + 1"}, "column 5: 'a' is used in its own definition"},
    {{"exp = 3; exp"}, "column 1: 'exp' is a function and cannot be bound"},
    {{"\xc3\xa9 + 1"}, "column 1: unexpected character '\xc3\xa9'"},
    {{"x + \xff", "x=1"}, "column 5: unexpected byte 0xFF"},
    {{"x\x01", "x=1"}, "column 2: unexpected control character 0x01"},
    {{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa + 1"},
     "column 1: the name 'aaaaaaaaaaaaaaaa...' is longer than 63 characters"},
    {{"x*y", "x=1"}, "column 3: the variable 'y' has no value: add y=NUMBER"},
    {{"x*2", "x=abc"}, "argument 'x=abc', column 3: 'abc' is not a number"},
    /* issue 21: strtod took hex, infinities and NaN, and 1e999 as inf */
    {{"x*2", "x=0x10"}, "argument 'x=0x10', column 4: '0x10' is not a number"},
    {{"x*2", "x=inf"}, "argument 'x=inf', column 3: 'inf' is not a number"},
    {{"x*2", "x=nan"}, "argument 'x=nan', column 3: 'nan' is not a number"},
    {{"x*2", "x= 5"}, "argument 'x= 5', column 3: ' 5' is not a number"},
    {{"x*2", "x=1e"}, "argument 'x=1e', column 5: '1e' is not a number"},
    {{"x*2", "x=1e999"}, "argument 'x=1e999', column 3: '1e999' is out of range for a double"},
    {{"x*2", "x=-1e999"}, "argument 'x=-1e999', column 3: '-1e999' is out of range for a double"},
    {{"0x10"}, "column 1: hex numbers are not read: write the number in decimal"},
    {{"x*2", "x=1.5q"}, "argument 'x=1.5q', column 6: '1.5q' is not a number"},
    {{"x*2", "x="}, "argument 'x=', column 3: no value after '='"},
    {{"x*2", "x=1", "y=2"}, "argument 'y=2', column 1: the expression has no variable 'y'"},
    {{"x*2", "x=1", "x=2"}, "argument 'x=2', column 1: 'x' is given a value twice"},
    {{"b = x; b", "x=1", "b=2"}, "argument 'b=2', column 1: 'b' is bound by the expression"},
    {{"x", "1x=2"}, "argument '1x=2', column 1: '1x' is not a name"},
    {{"x", "x"}, "argument 'x', column 1: expected name=value"},
    {{"--bogus", "x", "x=1"}, "unknown option '--bogus'"},
    {{"x", "x=1", "--dot"}, "--dot needs a value"},
    {{"--dot", "out.txt", "x", "x=1"}, "must end in .dot, .gv, .svg, .png or .pdf"},
    {{"--steps", "/tmp", "--format", "gif", "x", "x=1"}, "--format gif: use dot, svg, png or pdf"},
    {{"x", "x=1", "--html"}, "--html needs a value"},
    {{"--html", "/tmp/agx_never.html", "2 + 3"}, "--html /tmp/agx_never.html: the expression has "
                                                 "no variable, so there is no backward pass"},
    /* --tangent NAME=V, read as name=value arguments are */
    {{"x*y", "x=1", "y=2", "--tangent"}, "--tangent needs a value"},
    {{"--tangent", "z=1", "x*y", "x=1", "y=2"}, "--tangent 'z=1', column 1: the expression has no "
                                                "variable 'z'"},
    {{"--tangent", "x=abc", "x*y", "x=1", "y=2"}, "--tangent 'x=abc', column 3: 'abc' is not a number"},
    {{"--tangent", "x=1.5q", "x*2", "x=1"}, "--tangent 'x=1.5q', column 6: '1.5q' is not a number"},
    {{"--tangent", "x=", "x*2", "x=1"}, "--tangent 'x=', column 3: no value after '='"},
    {{"--tangent", "x", "x*2", "x=1"}, "--tangent 'x', column 1: expected name=value"},
    {{"--tangent", "x=1e999", "x*2", "x=1"}, "--tangent 'x=1e999', column 3: '1e999' is out of range"},
    {{"--tangent", "x=1", "--tangent", "x=2", "x*2", "x=1"}, "--tangent 'x=2', column 1: 'x' is "
                                                             "given a tangent twice"},
    {{"--tangent", "b=1", "b = 2*x; b", "x=1"}, "--tangent 'b=1', column 1: 'b' is bound by the "
                                                "expression at column 1, so it cannot be given a tangent"},
    {{"--tangent", "1x=2", "x*2", "x=1"}, "--tangent '1x=2', column 1: '1x' is not a name"},
    {{"--hessian", "--tangent", "x=1", "2 + 3"}, "--tangent 'x=1', column 1: the expression has no "
                                                 "variable 'x'"},
};

enum { N_ERROR_CASES = sizeof error_cases / sizeof error_cases[0] };
static int error_case_index[N_ERROR_CASES];

ParameterizedTestParameters(agx_errors, bad_input_names_the_column_and_exits_2)
{
    for (int i = 0; i < N_ERROR_CASES; i++)
        error_case_index[i] = i;
    return cr_make_param_array(int, error_case_index, N_ERROR_CASES);
}

ParameterizedTest(int *index, agx_errors, bad_input_names_the_column_and_exits_2)
{
    const error_case *c = &error_cases[*index];
    run_result r = agx(c->args);
    cr_expect_eq(r.status, 2, "%s: status %d\n%s", c->args[0], r.status, r.err);
    cr_expect(strstr(r.err, c->message), "%s: want '%s' in:\n%s", c->args[0], c->message, r.err);
    cr_expect_str_eq(r.out, "", "nothing on stdout for bad input");
    run_free(&r);
}

Test(agx_errors, deep_nesting_is_refused_not_a_crash)
{
    enum { DEPTH = 5000 };
    char *expr = malloc(2 * DEPTH + 2);
    cr_assert(expr);
    memset(expr, '(', DEPTH);
    expr[DEPTH] = 'x';
    memset(expr + DEPTH + 1, ')', DEPTH);
    expr[2 * DEPTH + 1] = '\0';
    run_result r = agx((const char *[]){expr, "x=1", NULL});
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "column 201: the expression is nested more than 200 deep"), "%s", r.err);
    run_free(&r);
    memset(expr, '-', DEPTH);
    expr[DEPTH] = 'x';
    expr[DEPTH + 1] = '\0';
    r = agx((const char *[]){expr, "x=1", NULL});
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "nested more than 200 deep"));
    run_free(&r);
    free(expr);
}

Test(agx_errors, a_long_flat_expression_is_fine)
{
    enum { TERMS = 20000 };
    char *expr = malloc(4 * TERMS + 1);
    cr_assert(expr);
    char *p = expr;
    for (int i = 0; i < TERMS; i++)
        p += sprintf(p, i ? "+x*x" : "x*x");
    run_result r = agx((const char *[]){"--json", expr, "x=2", NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    bool ok = true;
    cr_expect(close_to(json_number(r.out, "value", &ok), 4.0 * TERMS));
    cr_expect(close_to(json_number(strstr(r.out, "grad"), "x", &ok), 4.0 * TERMS));
    run_free(&r);
    free(expr);
}

/* -------------------------------------------------- the parser itself */

Test(agx_parse, precedence_and_associativity_shape_the_tree)
{
    agx_program p;
    agx_error err;
    cr_assert_eq(agx_parse("a - b - c*d^e^f", &p, &err), 0, "%s", err.msg);
    const agx_node *root = &p.nodes[p.stmts[0].root];
    cr_expect_eq(root->kind, AGX_SUB);                  /* (a - b) - (c * d^(e^f)) */
    cr_expect_eq(p.nodes[root->a].kind, AGX_SUB);
    const agx_node *mul = &p.nodes[root->b];
    cr_expect_eq(mul->kind, AGX_MUL);
    const agx_node *pow1 = &p.nodes[mul->b];
    cr_expect_eq(pow1->kind, AGX_POW);
    cr_expect_eq(p.nodes[pow1->b].kind, AGX_POW, "^ is right-associative");
    for (int i = 0; i < p.n_nodes; i++) {
        cr_expect(p.nodes[i].a < i && p.nodes[i].b < i, "operands come first");
    }
    cr_expect_eq(p.n_names, 6);
    cr_expect_str_eq(p.names[2].text, "c");
    cr_expect_eq(root->col, 7, "a binary node points at its operator");
    agx_program_free(&p);
}

Test(agx_parse, negative_literals_fold_but_not_under_a_power)
{
    agx_program p;
    cr_assert_eq(agx_parse("-3", &p, NULL), 0);
    cr_expect_eq(p.n_nodes, 1);
    cr_expect_eq(p.nodes[0].kind, AGX_NUM);
    cr_expect_eq(p.nodes[0].num, -3.0);
    agx_program_free(&p);
    cr_assert_eq(agx_parse("-3^2", &p, NULL), 0);
    cr_expect_eq(p.nodes[p.stmts[0].root].kind, AGX_NEG);
    agx_program_free(&p);
    cr_assert_eq(agx_parse("2^-1", &p, NULL), 0);
    cr_expect_eq(p.nodes[p.nodes[p.stmts[0].root].b].num, -1.0);
    agx_program_free(&p);
}

Test(agx_parse, statements_bind_names)
{
    agx_program p;
    cr_assert_eq(agx_parse(" b = 2*a ;c = b + q; ", &p, NULL), 0);
    cr_expect_eq(p.n_stmts, 2);
    int b = agx_find_name(&p, "b"), a = agx_find_name(&p, "a"), q = agx_find_name(&p, "q");
    cr_expect_eq(p.names[b].bound_by, 0);
    cr_expect_eq(p.names[b].bound_col, 2);
    cr_expect_eq(p.names[a].bound_by, -1);
    cr_expect_eq(p.names[a].first_col, 8);
    cr_expect_eq(p.names[q].first_col, 19);
    cr_expect_eq(agx_find_name(&p, "c"), 2, "names in order of first sight: b a c q");
    cr_expect_eq(q, 3);
    cr_expect_eq(p.stmts[1].first, p.stmts[0].root + 1);
    agx_program_free(&p);
}

Test(agx_parse, columns_count_characters_not_bytes)
{
    cr_expect_eq(agx_column("\xce\xb1\xce\xb2x", 4), 3);
    cr_expect_eq(agx_column("abc", 0), 1);
    cr_expect_eq(agx_column("abc", 99), 4);
    agx_program p;
    agx_error err;
    cr_expect_eq(agx_parse(NULL, &p, &err), -1);
    cr_expect_str_eq(err.msg, "empty expression");
}

Test(agx_parse, every_function_is_known_by_name)
{
    for (int f = 0; f < AGX_FUNC_COUNT; f++) {
        char src[64];
        int arity = agx_func_arity((agx_func)f);
        snprintf(src, sizeof src, "%s(x%s)", agx_func_name((agx_func)f), arity == 2 ? ", y" : "");
        agx_program p;
        agx_error err;
        cr_assert_eq(agx_parse(src, &p, &err), 0, "%s: %s", src, err.msg);
        const agx_node *call = &p.nodes[p.stmts[0].root];
        cr_expect_eq(call->kind, AGX_CALL);
        cr_expect_eq(call->func, (agx_func)f);
        cr_expect_eq(call->b >= 0, arity == 2, "%s: second operand %d", src, call->b);
        agx_program_free(&p);
    }
}

/* The special functions' values are libm's, to the bit (the JSON cases
** above compare to 1e-9): log1p and expm1 where 1 + x rounds, atan2 in
** each quadrant and at the origin. */
Test(agx_parse, special_functions_give_libm_values_exactly)
{
    static const struct {
        const char *src;
        double x, y, want;
    } cases[] = {
        {"erf(x)", 0.5, 0, 0.5204998778130465},
        {"atan(x)", -2, 0, -1.1071487177940904},
        {"log1p(x)", 1e-10, 0, 9.999999999500001e-11},
        {"expm1(x)", 1e-10, 0, 1.00000000005e-10},
        {"expm1(x)", -1e-300, 0, -1e-300},
        {"atan2(y, x)", 1, 1, 0.7853981633974483},
        {"atan2(y, x)", -1, 1, 2.356194490192345},
        {"atan2(y, x)", -1, -1, -2.356194490192345},
        {"atan2(y, x)", 1, -1, -0.7853981633974483},
        {"atan2(y, x)", 0, 0, 0},
    };
    ag_tape *t = ag_tape_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        agx_program p;
        agx_error err;
        cr_assert_eq(agx_parse(cases[i].src, &p, &err), 0, "%s: %s", cases[i].src, err.msg);
        double values[2] = {0, 0};
        int xi = agx_find_name(&p, "x"), yi = agx_find_name(&p, "y");
        if (xi >= 0)
            values[xi] = cases[i].x;
        if (yi >= 0)
            values[yi] = cases[i].y;
        double got = agx_value(t, &p, values);
        cr_expect_eq(got, cases[i].want, "%s at x = %g, y = %g: %.17g, want %.17g", cases[i].src,
                     cases[i].x, cases[i].y, got, cases[i].want);
        agx_program_free(&p);
    }
    ag_tape_free(t);
}

/* Every file of the fuzzing corpus (seeds and past crashers) parses or is
** refused, and what parses records, differentiates and draws. */
Test(agx_parse, the_fuzz_corpus_never_crashes)
{
    DIR *d = opendir("fuzz/agx");
    cr_assert(d, "tests/fuzz/agx is missing");
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "fuzz/agx/%s", e->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert(f);
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        files++;
        agx_program p;
        agx_error err;
        if (agx_parse(buf, &p, &err) == 0) {
            double values[256];
            for (int i = 0; i < p.n_names && i < 256; i++)
                values[i] = 0.5 + i;
            if (p.n_names <= 256) {
                ag_tape *t = ag_tape_new();
                ag_tensor *y = agx_record(t, &p, values, 1, NULL);
                if (ag_requires_grad_of(y))
                    ag_backward(t, y);
                FILE *null = fopen("/dev/null", "wb");
                ag_dot_write(t, y, NULL, null);
                fclose(null);
                cr_expect_eq(ag_tape_status(t), AG_OK, "%s: %s", path, ag_tape_errmsg(t));
                ag_tape_free(t);
            }
        } else {
            cr_expect(err.col >= 1 && err.msg[0], "%s: an error without a column or message", path);
        }
        agx_program_free(&p);
    }
    closedir(d);
    cr_expect_geq(files, 20, "the seed corpus has %d files", files);
}
