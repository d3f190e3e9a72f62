/*
** test_examples.c: smoke tests that run the example programs with small
** settings and check the numbers they print. Meson passes each program's
** path in an environment variable (EXAMPLE_CHAIN, ...).
*/
#define _POSIX_C_SOURCE 200809L   /* popen, mkdtemp */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* The user-defined ops of custom_op.c: erf and its two derivatives at 0.5,
** both gradient checks, a directional derivative by forward mode, and the implicit function y = cos(a y) at a = 0.8
** with its derivative by the implicit function theorem. */
Test(examples, custom_op_derivatives_match)
{
    int st;
    const char *out = run("EXAMPLE_CUSTOM_OP", "", &st);
    cr_assert_eq(st, 0, "%s", out);
    double slope = 2.0 / sqrt(acos(-1.0)) * exp(-0.25);
    cr_assert_float_eq(number_after(out, "erf(0.5) = "), erf(0.5), 1e-14, "%s", out);
    cr_assert_float_eq(number_after(out, "d/dx erf(0.5) = "), slope, 1e-14, "%s", out);
    cr_assert_float_eq(number_after(out, "d2/dx2 erf(0.5) = "), -slope, 1e-14, "%s", out);
    cr_assert_leq(number_after(out, "first order: max relative error "), 1e-6, "%s", out);
    cr_assert_leq(number_after(out, "second order: max relative error "), 1e-6, "%s", out);
    cr_assert(strstr(out, "first order: max relative error") && strstr(out, "over 7 elements"),
              "%s", out);
    /* Forward mode through the op's JVP rule: J v = erf'(x_i) v_i. */
    const double x0[3] = {0.5, -1.0, 2.0}, v0[3] = {1.0, 2.0, -0.5};
    const char *jv = strstr(out, "along v = (1, 2, -0.5): J v =");
    cr_assert(jv, "%s", out);
    jv += strlen("along v = (1, 2, -0.5): J v =");
    for (int i = 0; i < 3; i++) {
        char *end;
        double got = strtod(jv, &end);
        cr_assert(end != jv, "%s", out);
        cr_assert_float_eq(got, 2.0 / sqrt(acos(-1.0)) * exp(-x0[i] * x0[i]) * v0[i], 1e-14,
                           "J v element %d: %s", i, out);
        jv = end;
    }
    /* y = cos(0.8 y) and dy/da = -y sin(ay) / (1 + a sin(ay)), from Python. */
    double y = number_after(out, "at a = 0.8: y = ");
    cr_assert_float_eq(y, 0.8014178535169362, 1e-14, "%s", out);
    cr_assert_float_eq(number_after(out, "dy/da = "), -0.3242050300312474, 1e-11, "%s", out);
    cr_assert_leq(number_after(out, "difference "), 1e-8, "%s", out);
    cr_assert_leq(number_after(out, "(residual "), 1e-15, "%s", out);
}

Test(examples, custom_op_rejects_arguments)
{
    int st;
    run("EXAMPLE_CUSTOM_OP", "--bogus", &st);
    cr_assert_eq(st, 2);
    const char *out = run("EXAMPLE_CUSTOM_OP", "--help", &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "usage: custom_op"));
}

/* newton.c on the 100-dimensional Rosenbrock function: Newton's method
** with ag_hessian reaches the minimum; L-BFGS recording each gradient and
** L-BFGS replaying a plan take the same path, to the same point. */
Test(examples, newton_three_ways_reach_the_minimum)
{
    int st;
    const char *out = run("EXAMPLE_NEWTON", "--evals 20", &st);
    cr_assert_eq(st, 0, "%s", out);
    const char *newton = strstr(out, "(1) Newton"), *rec = strstr(out, "(2) L-BFGS"),
               *rep = strstr(out, "(3) L-BFGS");
    cr_assert(newton && rec && rep, "%s", out);
    double iters = number_after(newton, "(ag_hessian, ag_solve): ");
    cr_assert(iters >= 10 && iters <= 200, "%s", out);
    cr_assert_leq(number_after(newton, "f = "), 1e-15, "%s", out);
    cr_assert_leq(number_after(newton, "max |g| = "), 1e-9, "%s", out);
    cr_assert_leq(number_after(newton, "max |x - 1| = "), 1e-8, "%s", out);
    /* The replay computes the recorded ops' values bit for bit here, so
    ** both runs take the same iterations to the same point. */
    cr_assert_eq(number_after(rec, "recording each gradient: "),
                 number_after(rep, "replaying one plan: "), "%s", out);
    cr_assert_eq(number_after(rec, "iterations, "), number_after(rep, "iterations, "), "%s", out);
    cr_assert_leq(number_after(rec, "max |x - 1| = "), 1e-6, "%s", out);
    cr_assert_leq(number_after(out, "end at points "), 1e-12, "%s", out);
    cr_assert(strstr(out, "time per gradient, n = 100: recording ") &&
              strstr(out, "us, replaying the plan "), "%s", out);
}

Test(examples, newton_in_two_dimensions_and_bad_arguments)
{
    int st;
    const char *out = run("EXAMPLE_NEWTON", "--dim 2 --evals 10", &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_leq(number_after(out, "max |x - 1| = "), 1e-8, "%s", out);
    cr_assert(strstr(out, "n = 2:"), "%s", out);
    run("EXAMPLE_NEWTON", "--dim 1", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_NEWTON", "--evals x", &st);
    cr_assert_eq(st, 2);
    out = run("EXAMPLE_NEWTON", "--help", &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "usage: newton"), "%s", out);
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

/* ------------------------------------------------------------- helpers */

/* Occurrences of 'needle' in 'text'. */
static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* A fresh directory for the files a test makes; removed by remove_dir. */
static const char *temp_dir(void)
{
    static char dir[] = "/tmp/test_examples_XXXXXX";
    cr_assert(mkdtemp(dir), "mkdtemp failed");
    return dir;
}

static void remove_dir(const char *dir, const char *const *names, int n)
{
    char path[512];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* The whole of a small file (static buffer), or NULL when it cannot be read. */
static const char *slurp(const char *path)
{
    static char text[1 << 18];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

/* The whole file at path, malloc'ed, its size in *n; NULL when unreadable. */
static char *slurp_n(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            char *more = realloc(buf, cap = cap ? 2 * cap : 1 << 16);
            if (!more) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = more;
        }
        size_t got = fread(buf + *n, 1, cap - *n, f);
        *n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    return buf;
}

/* Whether the examples can read Fashion-MNIST from the Debian package's
** directory: the files must be there, and gzipped ones need a build with
** zlib (meson says which in EXAMPLE_ZLIB). */
static int have_fashion_mnist(void)
{
    static const char *const names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    const char *zlib = getenv("EXAMPLE_ZLIB");
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, "/usr/share/datasets/fashion-mnist/%s", names[i]);
        if (access(path, R_OK) == 0)
            continue;
        snprintf(path, sizeof path, "/usr/share/datasets/fashion-mnist/%s.gz", names[i]);
        if (access(path, R_OK) != 0 || !zlib || strcmp(zlib, "1") != 0)
            return 0;
    }
    return 1;
}

/* Accuracies (percent) the small runs below must beat. Measured: nielsen on
** 5000 images for 2 epochs 61.8%, fashion_mnist on 2000 images for 1 epoch
** 72.8%; the margins absorb other CPUs' rounding. */
#define NIELSEN_MIN_ACCURACY 50.0
#define FASHION_MIN_ACCURACY 65.0

#define REQUIRE_FASHION_MNIST()                                                                \
    do {                                                                                       \
        if (!have_fashion_mnist())                                                             \
            cr_skip("Fashion-MNIST is not readable here (apt-get install dataset-fashion-mnist, " \
                    "and a build with zlib)");                                                 \
    } while (0)

/* ------------------------------------------------------------------ chain */

Test(examples, chain_writes_the_graph_of_the_first_pair)
{
    const char *dir = temp_dir();
    char args[512], path[256];
    snprintf(path, sizeof path, "%s/chain.dot", dir);
    snprintf(args, sizeof args, "--steps 1 --dot '%s'", path);
    int st;
    const char *out = run("EXAMPLE_CHAIN", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "written to"), "%s", out);
    const char *dot = slurp(path);
    cr_assert(dot, "no file at %s", path);
    cr_expect(strncmp(dot, "digraph", 7) == 0);
    /* The first pair at ab = 0.5, bc = 1.5, cd = 2: hello's gradients. */
    cr_expect(strstr(dot, "-225"), "dL/dab missing");
    cr_expect(strstr(dot, "-56.25"), "dL/dcd missing");
    cr_expect(strstr(dot, "156.25"), "L missing");
    remove_dir(dir, (const char *[]){"chain.dot"}, 1);
}

/* ------------------------------------------------------------------- sine */

Test(examples, sine_readme_loop_fits_and_saves)
{
    /* The README's loop writes sine.safetensors to the working directory. */
    const char *dir = temp_dir();
    cr_assert_eq(chdir(dir), 0);
    int st;
    const char *out = run("EXAMPLE_SINE", "", &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_float_eq(number_after(out, "step    0  loss "), 1.432204, 1e-6, "%s", out);
    cr_assert_lt(number_after(out, "step 1999  loss "), 1e-4, "%s", out);
    const char *file = slurp("sine.safetensors");
    cr_assert(file, "no checkpoint written");
    cr_assert(strstr(file + 8, "mlp.0.weight"), "checkpoint lacks mlp.0.weight");
    remove_dir(dir, (const char *[]){"sine.safetensors"}, 1);
}

/* Every example answers --help on stdout with status 0, and refuses an
** argument it does not know with status 2. */
Test(examples, every_example_answers_help)
{
    static const char *const vars[] = {"EXAMPLE_HELLO", "EXAMPLE_CHAIN", "EXAMPLE_XOR",
                                       "EXAMPLE_SINE", "EXAMPLE_MOONS", "EXAMPLE_NIELSEN",
                                       "EXAMPLE_FASHION_MNIST"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        int st;
        const char *out = run(vars[i], "--help", &st);
        cr_expect_eq(st, 0, "%s --help: status %d", vars[i], st);
        cr_expect(strstr(out, "usage: "), "%s --help: %s", vars[i], out);
        run(vars[i], "--no-such-option", &st);
        cr_expect_eq(st, 2, "%s --no-such-option: status %d", vars[i], st);
    }
}

/* -------------------------------------------------------------------- xor */

Test(examples, xor_learns_the_four_cases)
{
    int st;
    const char *out = run("EXAMPLE_XOR", "", &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_lt(number_after(out, "step 500  loss "), 0.01, "%s", out);
    static const char *const cases[4] = {"0 xor 0 -> ", "0 xor 1 -> ", "1 xor 0 -> ",
                                         "1 xor 1 -> "};
    static const double want[4] = {0, 1, 1, 0};
    for (int i = 0; i < 4; i++)
        cr_expect_float_eq(number_after(out, cases[i]), want[i], 0.05, "%s", cases[i]);
}

Test(examples, xor_answers_help_and_rejects_arguments)
{
    int st;
    const char *out = run("EXAMPLE_XOR", "--help", &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "usage: xor"));
    run("EXAMPLE_XOR", "--steps 3", &st);
    cr_assert_eq(st, 2);
}

/* ------------------------------------------------------------------ moons */

Test(examples, moons_separates_the_moons_and_draws_them)
{
    const char *dir = temp_dir();
    char args[512], path[256];
    snprintf(path, sizeof path, "%s/moons.svg", dir);
    snprintf(args, sizeof args, "--svg '%s'", path);
    int st;
    const char *out = run("EXAMPLE_MOONS", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_float_eq(number_after(out, "training accuracy "), 100.0, 1e-9, "%s", out);
    cr_assert_lt(number_after(out, "final loss "), 0.1);
    /* micrograd's regularised hinge loss starts near 1 and falls. */
    cr_assert_gt(number_after(out, "step   0  loss "), number_after(out, "final loss "));
    /* The ASCII picture: 20 rows framed by '|', the 100 points in it. */
    cr_expect_eq(count(out, "\n  |"), 20);
    cr_expect_gt(count(out, "o") + count(out, "x"), 80);
    const char *svg = slurp(path);
    cr_assert(svg, "no file at %s", path);
    cr_expect(strncmp(svg, "<svg", 4) == 0);
    cr_expect_eq(count(svg, "<circle"), 100);
    cr_expect(strstr(svg, "</svg>"));
    remove_dir(dir, (const char *[]){"moons.svg"}, 1);
}

Test(examples, moons_reaches_100_percent_from_other_seeds)
{
    for (int seed = 2; seed <= 4; seed++) {
        char args[128];
        snprintf(args, sizeof args, "--seed %d --no-ascii --svg /dev/null", seed);
        int st;
        const char *out = run("EXAMPLE_MOONS", args, &st);
        cr_assert_eq(st, 0, "%s", out);
        cr_expect_float_eq(number_after(out, "training accuracy "), 100.0, 1e-9, "seed %d", seed);
    }
}

Test(examples, moons_rejects_bad_arguments)
{
    int st;
    run("EXAMPLE_MOONS", "--points 1", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_MOONS", "--noise x", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_MOONS", "--svg", &st);
    cr_assert_eq(st, 2);
    const char *out = run("EXAMPLE_MOONS", "--help", &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "usage: moons"));
}

/* ---------------------------------------------------------------- nielsen */

Test(examples, nielsen_backprop_by_hand_matches_the_tape)
{
    REQUIRE_FASHION_MNIST();
    int st;
    /* Two hidden layers, so that BP2 runs twice. */
    const char *out = run("EXAMPLE_NIELSEN", "--train 1000 --test 500 --hidden 16,12", &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "Network 784-16-12-10"), "%s", out);
    cr_assert_leq(number_after(out, "largest difference between hand and tape: "), 1e-12, "%s",
                  out);
    /* Each of the six gradients is listed. */
    cr_expect_eq(count(out, "∂C/∂w"), 3 + 1);   /* three rows and BP4's formula */
    cr_expect(strstr(out, "test accuracy"));
}

Test(examples, nielsen_learns_from_a_small_set)
{
    REQUIRE_FASHION_MNIST();
    int st;
    const char *out = run("EXAMPLE_NIELSEN", "--train 5000 --test 1000 --epochs 2", &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_leq(number_after(out, "largest difference between hand and tape: "), 1e-12);
    const char *second = strstr(out, "Epoch 2:");
    cr_assert(second, "%s", out);
    double acc = number_after(second, " = ");
    cr_assert_gt(acc, NIELSEN_MIN_ACCURACY, "%s", out);
}

Test(examples, nielsen_draws_the_first_mini_batch_with_summaries)
{
    REQUIRE_FASHION_MNIST();
    const char *dir = temp_dir();
    char args[640], dot_path[128], html_path[128];
    snprintf(dot_path, sizeof dot_path, "%s/mlp.dot", dir);
    snprintf(html_path, sizeof html_path, "%s/mlp.html", dir);
    snprintf(args, sizeof args, "--train 100 --test 100 --dot '%s' --html '%s'", dot_path,
             html_path);
    int st;
    const char *out = run("EXAMPLE_NIELSEN", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    const char *read = slurp(dot_path);
    cr_assert(read, "no %s", dot_path);
    char *dot = strdup(read);   /* slurp's buffer is reused */
    const char *html = slurp(html_path);
    cr_assert(dot && html, "no %s", html_path);
    /* w2 is [30,784]: its name, shape and a summary, never 23520 numbers. */
    cr_expect(strstr(dot, "<b>w2</b> <font point-size=\"9\" color=\"#6b7280\">[30,784]</font>"));
    cr_expect(strstr(dot, "<i>23520 values</i>: "), "%s", dot);
    cr_expect(strstr(html, "\"label\":\"w2\",\"named\":true,\"kind\":\"parameter\","
                           "\"output\":false,\"shape\":\"[30,784]\""));
    cr_expect(strstr(html, "(23520 values)"));
    cr_expect(strstr(html, "\"label\":\"z2\"") && strstr(html, "\"label\":\"a3\""),
              "the book's names");
    cr_expect_lt(strlen(dot), 40000, "summaries keep the DOT small: %zu bytes", strlen(dot));
    cr_expect_lt(strlen(html), 80000, "and the page: %zu bytes", strlen(html));
    free(dot);
    remove_dir(dir, (const char *[]){"mlp.dot", "mlp.html"}, 2);
}

Test(examples, nielsen_says_which_package_to_install)
{
    int st;
    const char *out = run("EXAMPLE_NIELSEN", "--data /nonexistent", &st);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "apt-get install dataset-fashion-mnist"), "%s", out);
    run("EXAMPLE_NIELSEN", "--hidden 0", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_NIELSEN", "--batch 0", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_NIELSEN", "--hidden 1,2,3,4,5,6,7", &st);
    cr_assert_eq(st, 2);
    out = run("EXAMPLE_NIELSEN", "--help", &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "usage: nielsen"));
}

/* ---------------------------------------------------------- fashion_mnist */

Test(examples, fashion_mnist_trains_checkpoints_and_resumes)
{
    REQUIRE_FASHION_MNIST();
    const char *dir = temp_dir();
    char args[1024];
    const char *limits = "--train-limit 2000 --test-limit 500 --threads 1";
    snprintf(args, sizeof args,
             "%s --epochs 1 --checkpoint '%s/ckpt.safetensors' --svg '%s/curve.svg'", limits, dir,
             dir);
    int st;
    const char *out = run("EXAMPLE_FASHION_MNIST", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    double first = number_after(out, "final test accuracy ");
    cr_assert_gt(first, FASHION_MIN_ACCURACY, "%s", out);
    cr_expect(strstr(out, "epoch  1  train loss"), "%s", out);
    cr_expect(strstr(out, "Shirt"), "per-class accuracy missing");
    char path[512];
    snprintf(path, sizeof path, "%s/curve.svg", dir);
    const char *svg = slurp(path);
    cr_assert(svg, "no curve at %s", path);
    cr_expect(strncmp(svg, "<svg", 4) == 0);
    cr_expect_geq(count(svg, "<polyline"), 3);   /* loss, training and test accuracy */

    /* Resuming at the last epoch trains nothing and finds the same accuracy. */
    snprintf(args, sizeof args,
             "%s --epochs 1 --resume '%s/ckpt.safetensors' --checkpoint '%s/ckpt2.safetensors' "
             "--svg '%s/curve2.svg'",
             limits, dir, dir, dir);
    out = run("EXAMPLE_FASHION_MNIST", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "after epoch 1"), "%s", out);
    cr_assert_float_eq(number_after(out, "test accuracy "), first, 1e-9, "%s", out);
    cr_expect_null(strstr(out, "epoch  2"));

    /* Resuming towards epoch 2 trains one more epoch. */
    snprintf(args, sizeof args,
             "%s --epochs 2 --resume '%s/ckpt.safetensors' --checkpoint '%s/ckpt2.safetensors' "
             "--svg '%s/curve2.svg'",
             limits, dir, dir, dir);
    out = run("EXAMPLE_FASHION_MNIST", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_expect(strstr(out, "epoch  2  train loss"), "%s", out);
    cr_expect_null(strstr(out, "epoch  1  train loss"));

    /* Stopped after epoch 1 and resumed to epoch 2, the run leaves the
    ** checkpoint of one that trained 2 epochs at once, byte for byte:
    ** weights, Adam's state, the schedule's position, the shuffling. */
    snprintf(args, sizeof args,
             "%s --epochs 2 --checkpoint '%s/whole.safetensors' --svg '%s/curve3.svg'", limits,
             dir, dir);
    out = run("EXAMPLE_FASHION_MNIST", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    size_t n_whole = 0, n_resumed = 0;
    char whole_path[512], resumed_path[512];
    snprintf(whole_path, sizeof whole_path, "%s/whole.safetensors", dir);
    snprintf(resumed_path, sizeof resumed_path, "%s/ckpt2.safetensors", dir);
    char *whole = slurp_n(whole_path, &n_whole), *resumed = slurp_n(resumed_path, &n_resumed);
    cr_assert(whole && resumed);
    cr_expect(n_whole == n_resumed && memcmp(whole, resumed, n_whole) == 0,
              "a resumed run's checkpoint differs from an uninterrupted run's");
    free(whole);
    free(resumed);
    remove_dir(dir, (const char *[]){"ckpt.safetensors", "ckpt2.safetensors", "curve.svg",
                                     "curve2.svg", "whole.safetensors", "curve3.svg"}, 6);
}

Test(examples, fashion_mnist_rejects_a_foreign_checkpoint)
{
    REQUIRE_FASHION_MNIST();
    int st;
    const char *out = run("EXAMPLE_FASHION_MNIST",
                          "--train-limit 100 --test-limit 100 --resume /nonexistent.safetensors",
                          &st);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "--resume"), "%s", out);
}

Test(examples, fashion_mnist_says_which_package_to_install)
{
    int st;
    const char *out = run("EXAMPLE_FASHION_MNIST", "--data /nonexistent", &st);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "apt-get install dataset-fashion-mnist"), "%s", out);
}

Test(examples, fashion_mnist_rejects_bad_arguments)
{
    int st;
    run("EXAMPLE_FASHION_MNIST", "--epochs -1", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_FASHION_MNIST", "--lr abc", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_FASHION_MNIST", "--schedule linear", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_FASHION_MNIST", "--frobnicate 1", &st);
    cr_assert_eq(st, 2);
    const char *out = run("EXAMPLE_FASHION_MNIST", "--help", &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "usage: fashion_mnist"));
    cr_assert(strstr(out, "dataset-fashion-mnist"));
}

/* ------------------------------------------------------------ fashion_cnn */

/* Whether n bytes at 'buf' (not a string: a safetensors file) hold 'needle'. */
static int contains(const char *buf, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(buf + i, needle, k))
            return 1;
    return 0;
}

/* Measured: fashion_cnn on 1000 images for 1 epoch 71.3% on 300 test
** images (chance is 10%). */
#define CNN_MIN_ACCURACY 60.0

Test(examples, fashion_cnn_trains_checkpoints_and_resumes)
{
    REQUIRE_FASHION_MNIST();
    const char *dir = temp_dir();
    char args[1024], path[512];
    const char *limits = "--train-limit 1000 --test-limit 300 --threads 1";
    snprintf(args, sizeof args,
             "%s --epochs 1 --checkpoint '%s/ckpt.safetensors' --svg '%s/curve.svg' "
             "--log '%s/log.jsonl'",
             limits, dir, dir, dir);
    int st;
    const char *out = run("EXAMPLE_FASHION_CNN", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_expect(strstr(out, "conv3x3(16)-bn-relu-maxpool2"), "%s", out);
    cr_expect_eq(number_after(out, "\n("), 206970, "%s", out);   /* the parameter count */
    double first = number_after(out, "final test accuracy ");
    cr_assert_gt(first, CNN_MIN_ACCURACY, "%s", out);
    cr_assert_leq(first, 100);
    /* the epoch's line: its test accuracy is the final one, and it is timed */
    cr_expect(strstr(out, "epoch  1  train loss "), "%s", out);
    cr_expect_float_eq(number_after(out, "  test accuracy "), first, 1e-9, "%s", out);
    cr_expect_gt(number_after(out, "%  ("), 0, "%s", out);
    cr_expect_gt(number_after(out, " s, "), 0, "%s", out);   /* ms per step */
    cr_expect(strstr(out, "Ankle boot"), "per-class accuracy missing");
    snprintf(path, sizeof path, "%s/curve.svg", dir);
    const char *svg = slurp(path);
    cr_assert(svg, "no curve at %s", path);
    cr_expect(strncmp(svg, "<svg", 4) == 0);
    cr_expect_geq(count(svg, "<polyline"), 3);   /* loss, training and test accuracy */
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    const char *log = slurp(path);
    cr_assert(log, "no log at %s", path);
    cr_expect_eq(count(log, "\"epoch\""), 1, "%s", log);
    cr_expect_float_eq(number_after(log, "\"test_accuracy\":") * 100, first, 0.006, "%s", log);

    /* The checkpoint holds every parameter by name; once it also holds the
    ** running statistics, a resumed run tests as the first one did. */
    size_t n_ckpt = 0;
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    char *ckpt = slurp_n(path, &n_ckpt);
    cr_assert(ckpt);
    const char *names[] = {"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight",
                           "bn2.bias", "fc.0.weight", "fc.1.bias", "optim.conv1.weight.exp_avg"};
    for (int i = 0; i < 8; i++)
        cr_expect(contains(ckpt, n_ckpt, names[i]), "no %s in the checkpoint", names[i]);
    int has_stats = contains(ckpt, n_ckpt, "running_mean");
    free(ckpt);
    snprintf(args, sizeof args,
             "%s --epochs 1 --resume '%s/ckpt.safetensors' --checkpoint '%s/ckpt2.safetensors' "
             "--svg '%s/curve2.svg'",
             limits, dir, dir, dir);
    out = run("EXAMPLE_FASHION_CNN", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "after epoch 1"), "%s", out);
    cr_expect(strstr(out, "nothing to train"), "%s", out);
    if (has_stats)
        cr_expect_float_eq(number_after(out, "test accuracy "), first, 1e-9, "%s", out);

    /* Resuming towards epoch 2 trains one more epoch, and leaves the
    ** checkpoint of a run that trained 2 epochs at once, byte for byte. */
    snprintf(args, sizeof args,
             "%s --epochs 2 --resume '%s/ckpt.safetensors' --checkpoint '%s/ckpt2.safetensors' "
             "--svg '%s/curve2.svg'",
             limits, dir, dir, dir);
    out = run("EXAMPLE_FASHION_CNN", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_expect(strstr(out, "epoch  2  train loss"), "%s", out);
    cr_expect_null(strstr(out, "epoch  1  train loss"));
    snprintf(args, sizeof args,
             "%s --epochs 2 --checkpoint '%s/whole.safetensors' --svg '%s/curve3.svg'", limits,
             dir, dir);
    out = run("EXAMPLE_FASHION_CNN", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    size_t n_whole = 0, n_resumed = 0;
    char whole_path[512], resumed_path[512];
    snprintf(whole_path, sizeof whole_path, "%s/whole.safetensors", dir);
    snprintf(resumed_path, sizeof resumed_path, "%s/ckpt2.safetensors", dir);
    char *whole = slurp_n(whole_path, &n_whole), *resumed = slurp_n(resumed_path, &n_resumed);
    cr_assert(whole && resumed && n_whole > 8 && n_resumed > 8);
    if (has_stats) {
        cr_expect(n_whole == n_resumed && memcmp(whole, resumed, n_whole) == 0,
                  "a resumed run's checkpoint differs from an uninterrupted run's");
    } else {
        /* Without the running statistics the resumed run tests differently,
        ** and its metadata (the accuracies) differs: the tensors after the
        ** header (its length in the first 8 bytes, little-endian) must not. */
        size_t hw = 0, hr = 0;
        for (int i = 7; i >= 0; i--) {
            hw = hw << 8 | (unsigned char)whole[i];
            hr = hr << 8 | (unsigned char)resumed[i];
        }
        cr_assert(8 + hw <= n_whole && 8 + hr <= n_resumed);
        cr_expect(n_whole - hw == n_resumed - hr &&
                      memcmp(whole + 8 + hw, resumed + 8 + hr, n_whole - 8 - hw) == 0,
                  "a resumed run's weights differ from an uninterrupted run's");
    }
    free(whole);
    free(resumed);
    remove_dir(dir, (const char *[]){"ckpt.safetensors", "ckpt2.safetensors", "curve.svg",
                                     "curve2.svg", "whole.safetensors", "curve3.svg", "log.jsonl"},
               7);
}

Test(examples, fashion_cnn_rejects_bad_arguments_and_missing_data)
{
    int st;
    const char *out = run("EXAMPLE_FASHION_CNN", "--data /nonexistent", &st);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "apt-get install dataset-fashion-mnist"), "%s", out);
    run("EXAMPLE_FASHION_CNN", "--epochs -1", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_FASHION_CNN", "--schedule linear", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_FASHION_CNN", "--flip sometimes", &st);
    cr_assert_eq(st, 2);
    run("EXAMPLE_FASHION_CNN", "--frobnicate 1", &st);
    cr_assert_eq(st, 2);
    out = run("EXAMPLE_FASHION_CNN", "--help", &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "usage: fashion_cnn"), "%s", out);
    if (have_fashion_mnist()) {
        out = run("EXAMPLE_FASHION_CNN",
                  "--train-limit 100 --test-limit 100 --resume /nonexistent.safetensors", &st);
        cr_assert_eq(st, 1, "%s", out);
        cr_assert(strstr(out, "--resume"), "%s", out);
    }
}

/* --flip on mirrors training images: another run than without it, and
** still one that learns. */
Test(examples, fashion_cnn_mirrors_images_when_asked)
{
    REQUIRE_FASHION_MNIST();
    const char *dir = temp_dir();
    char args[1024];
    const char *common = "--train-limit 640 --test-limit 200 --epochs 1 --threads 1";
    int st;
    snprintf(args, sizeof args, "%s --checkpoint '%s/a.safetensors' --svg '%s/a.svg'", common,
             dir, dir);
    const char *out = run("EXAMPLE_FASHION_CNN", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    double plain = number_after(out, "epoch  1  train loss ");
    snprintf(args, sizeof args, "%s --flip on --checkpoint '%s/b.safetensors' --svg '%s/b.svg'",
             common, dir, dir);
    out = run("EXAMPLE_FASHION_CNN", args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_expect(strstr(out, "images mirrored at random"), "%s", out);
    double mirrored = number_after(out, "epoch  1  train loss ");
    cr_expect(mirrored != plain, "--flip on trained as without it (loss %g)", plain);
    cr_expect_gt(number_after(out, "final test accuracy "), 30, "%s", out);
    remove_dir(dir, (const char *[]){"a.safetensors", "a.svg", "b.safetensors", "b.svg"}, 4);
}
