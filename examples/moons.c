/*
** moons.c: micrograd's demo in C. A 2-16-16-1 ReLU network learns to
** separate two interleaved half-moons (100 points, generated and seeded)
** with the max-margin (hinge) loss plus L2 regularisation, trained by plain
** gradient descent on the whole set with micrograd's decaying step size.
** It prints the loss and accuracy as it trains, then the decision regions
** as ASCII art, and writes them as an SVG picture.
**
**     moons                        100 steps, seed 1, writes moons.svg
**     moons --seed 7 --svg /tmp/m.svg
*/
#include "cli.h"
#include "nn.h"
#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_POINTS = 10000, ASCII_COLS = 64, ASCII_ROWS = 20, SVG_COLS = 160, SVG_ROWS = 100 };

/* The window the pictures show, in data units; 4 by 2.5, as the moons lie. */
static const double X_MIN = -1.5, X_MAX = 2.5, Y_MIN = -1.0, Y_MAX = 1.5;

static const double PI = 3.14159265358979323846;
static const double ALPHA = 1e-4;   /* L2 regularisation strength, micrograd's */

typedef struct options {
    long points, steps;
    long seed;
    double noise;
    const char *svg;
    int ascii;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moons [--points N] [--noise S] [--seed S] [--steps N] [--svg FILE]\n"
            "             [--no-ascii]\n"
            "micrograd's demo: a 2-16-16-1 ReLU network separates two half-moons, trained with\n"
            "the hinge loss plus %g times the sum of squared weights, by gradient descent\n"
            "with step size 1 - 0.9 k / steps at step k.\n"
            "  --points N  points in the data set, 2..%d; default 100\n"
            "  --noise S   standard deviation of the noise added to each point; default 0.1\n"
            "  --seed S    seed of the data and of the initial weights; default 1\n"
            "  --steps N   gradient-descent steps; default 100\n"
            "  --svg FILE  where to draw the decision boundary; default moons.svg\n"
            "  --no-ascii  do not print the picture on the terminal\n",
            ALPHA, MAX_POINTS);
}

/* Returns 0, 1 for --help (printed), or -1 after a message. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){100, 100, 1, 0.1, "moons.svg", 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--no-ascii")) {
            o->ascii = 0;
            continue;
        }
        int known = !strcmp(a, "--points") || !strcmp(a, "--noise") || !strcmp(a, "--seed") ||
                    !strcmp(a, "--steps") || !strcmp(a, "--svg");
        if (!known) {
            fprintf(stderr, "moons: unknown option %s (try --help)\n", a);
            return -1;
        }
        if (!(v = cli_value("moons", argc, argv, &i)))
            return -1;
        int bad = 0;
        if (!strcmp(a, "--points"))
            bad = cli_long("moons", a, v, 2, MAX_POINTS, &o->points);
        else if (!strcmp(a, "--noise"))
            bad = cli_double("moons", a, v, 0, 10, &o->noise);
        else if (!strcmp(a, "--seed"))
            bad = cli_long("moons", a, v, 0, 2147483647, &o->seed);
        else if (!strcmp(a, "--steps"))
            bad = cli_long("moons", a, v, 0, 1000000, &o->steps);
        else
            o->svg = v;
        if (bad)
            return -1;
    }
    return 0;
}

/* scikit-learn's make_moons: the upper half of a unit circle, and below it
** the lower half of another shifted by (1, -0.5) that reaches into the first,
** with Gaussian noise. Labels are -1 (upper moon) and +1, as the hinge loss
** wants. */
static void make_moons(int n, double noise, ag_rng *rng, double *xy, double *label)
{
    int upper = n / 2, lower = n - upper;
    for (int i = 0; i < n; i++) {
        int in_upper = i < upper;
        int k = in_upper ? i : i - upper, count = in_upper ? upper : lower;
        double angle = count > 1 ? PI * k / (count - 1) : 0;
        xy[2 * i] = in_upper ? cos(angle) : 1 - cos(angle);
        xy[2 * i + 1] = in_upper ? sin(angle) : 0.5 - sin(angle);
        label[i] = in_upper ? -1 : 1;
    }
    for (int i = 0; i < 2 * n; i++)
        xy[i] += noise * ag_rng_normal(rng);
}

/* alpha * (sum of every squared parameter), recorded on t. */
static ag_tensor *l2_penalty(ag_tape *t, nn_model *m)
{
    ag_tensor *sum = ag_scalar(t, AG_F64, 0);
    for (int i = 0; i < nn_model_num_params(m); i++)
        sum = ag_add(t, sum, ag_sum(t, ag_square(t, nn_model_param(m, i))));
    return ag_mul_scalar(t, sum, ALPHA);
}

static double accuracy(ag_tensor *scores, const double *label, int n)
{
    int right = 0;
    for (int i = 0; i < n; i++)
        right += (ag_get(scores, i) > 0) == (label[i] > 0);
    return (double)right / n;
}

/* The network's scores on a cols x rows grid over the window, row 0 at the
** top, each cell sampled at its centre; 'scores' gets cols * rows values. */
static int score_grid(ag_tape *t, const nn_mlp *net, int cols, int rows, double *scores)
{
    int64_t n = (int64_t)cols * rows;
    ag_tensor *grid = ag_zeros(t, AG_F64, 2, (int64_t[]){n, 2});
    double *p = ag_data(grid);
    for (int r = 0; p && r < rows; r++)
        for (int c = 0; c < cols; c++, p += 2) {
            p[0] = X_MIN + (X_MAX - X_MIN) * (c + 0.5) / cols;
            p[1] = Y_MAX - (Y_MAX - Y_MIN) * (r + 0.5) / rows;
        }
    ag_no_grad_begin(t);
    ag_tensor *out = nn_mlp_forward(t, net, grid);
    ag_no_grad_end(t);
    if (ag_tape_status(t) != AG_OK)
        return -1;
    for (int64_t i = 0; i < n; i++)
        scores[i] = ag_get(out, i);
    return 0;
}

/* The cell of the grid that point (x, y) falls in, or -1 outside. */
static int grid_cell(double x, double y, int cols, int rows)
{
    int c = (int)floor((x - X_MIN) / (X_MAX - X_MIN) * cols);
    int r = (int)floor((Y_MAX - y) / (Y_MAX - Y_MIN) * rows);
    return c < 0 || c >= cols || r < 0 || r >= rows ? -1 : r * cols + c;
}

static void print_ascii(const double *scores, const double *xy, const double *label, int n)
{
    char cells[ASCII_ROWS * ASCII_COLS];
    for (int i = 0; i < ASCII_ROWS * ASCII_COLS; i++)
        cells[i] = scores[i] > 0 ? '.' : ' ';
    for (int i = 0; i < n; i++) {
        int cell = grid_cell(xy[2 * i], xy[2 * i + 1], ASCII_COLS, ASCII_ROWS);
        if (cell >= 0)
            cells[cell] = label[i] > 0 ? 'o' : 'x';
    }
    printf("Decision regions (x in [%g, %g], y in [%g, %g]):\n", X_MIN, X_MAX, Y_MIN, Y_MAX);
    printf("  '.' where the net says +1, blank where it says -1; points: o = +1, x = -1\n");
    printf("  +");
    for (int c = 0; c < ASCII_COLS; c++)
        putchar('-');
    printf("+\n");
    for (int r = 0; r < ASCII_ROWS; r++)
        printf("  |%.*s|\n", ASCII_COLS, cells + r * ASCII_COLS);
    printf("  +");
    for (int c = 0; c < ASCII_COLS; c++)
        putchar('-');
    printf("+\n");
}

/* Colour of a region: the two classes, lighter inside the margin |s| < 1,
** where the hinge loss still pushes. */
static const char *region_colour(double s)
{
    return s > 1 ? "#f6c9a8" : s > 0 ? "#fbe6d6" : s > -1 ? "#d9e7f5" : "#b3cde8";
}

static int write_svg(const char *path, const double *scores, const double *xy, const double *label,
                     int n, const char *title)
{
    svg s;
    if (svg_open(&s, path, 560, 390) != 0)
        return -1;
    svg_chart c = {60, 34, 480, 300, X_MIN, X_MAX, Y_MIN, Y_MAX};
    double cw = c.width / SVG_COLS, ch = c.height / SVG_ROWS;
    /* One rectangle per run of cells of the same colour along a row keeps
    ** the file small; crisp edges and a pixel of overlap leave no seam. */
    svg_tiles_begin(&s);
    for (int r = 0; r < SVG_ROWS; r++)
        for (int c0 = 0, c1; c0 < SVG_COLS; c0 = c1) {
            const char *colour = region_colour(scores[r * SVG_COLS + c0]);
            for (c1 = c0 + 1; c1 < SVG_COLS && region_colour(scores[r * SVG_COLS + c1]) == colour;
                 c1++)
                ;
            svg_rect(&s, c.left + c0 * cw, c.top + r * ch, (c1 - c0) * cw + 1, ch + 1, colour);
        }
    svg_tiles_end(&s);
    svg_chart_axes(&s, &c, title, "x", "y");
    for (int i = 0; i < n; i++)
        svg_circle(&s, svg_chart_x(&c, xy[2 * i]), svg_chart_y(&c, xy[2 * i + 1]), 4,
                   label[i] > 0 ? "#e6550d" : "#3182bd", "black");
    svg_text(&s, c.left, 380, 11, "start",
             "orange: label +1, blue: label -1; light shades: inside the margin |score| < 1");
    return svg_close(&s);
}

int main(int argc, char **argv)
{
    options o;
    int parsed = parse_args(argc, argv, &o);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    int n = (int)o.points;
    double *xy = malloc(sizeof *xy * 2 * (size_t)n), *label = malloc(sizeof *label * (size_t)n);
    double *scores = malloc(sizeof *scores * SVG_COLS * SVG_ROWS);
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tape *t = ag_tape_new();
    if (!xy || !label || !scores || !m || !t) {
        fprintf(stderr, "moons: out of memory\n");
        return 1;
    }
    ag_rng rng;
    ag_rng_seed(&rng, (uint64_t)o.seed);
    make_moons(n, o.noise, &rng, xy, label);
    nn_model_seed(m, (uint64_t)o.seed);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F64, 4, (int64_t[]){2, 16, 16, 1}, NN_RELU);
    /* micrograd draws every weight and bias from U(-1, 1); nn's default
    ** (He initialisation, zero biases) learns the moons more slowly. */
    for (int i = 0; i < nn_model_num_params(m); i++)
        ag_fill_uniform(nn_model_param(m, i), nn_model_rng(m), -1, 1);
    nn_optim *sgd = nn_sgd_new(m, 1.0, 0, 0, 0);
    if (nn_model_status(m) != AG_OK) {
        fprintf(stderr, "moons: %s\n", nn_model_errmsg(m));
        return 1;
    }
    printf("%d points (noise %g, seed %ld), a 2-16-16-1 ReLU MLP with %lld parameters\n", n,
           o.noise, o.seed, (long long)nn_model_numel(m));

    double acc = 0, loss = NAN;
    for (long k = 0; k <= o.steps; k++) {
        ag_tape_reset(t);
        ag_tensor *x = ag_tensor_from_f64(t, 2, (int64_t[]){n, 2}, xy);
        ag_tensor *y = ag_tensor_from_f64(t, 2, (int64_t[]){n, 1}, label);
        ag_tensor *scores_t = nn_mlp_forward(t, net, x);
        ag_tensor *data_loss = nn_hinge_loss(t, scores_t, y, NN_REDUCE_MEAN);
        ag_tensor *total = ag_add(t, data_loss, l2_penalty(t, m));
        nn_model_zero_grad(m);
        ag_backward(t, total);
        if (ag_tape_status(t) != AG_OK) {
            fprintf(stderr, "moons: %s\n", ag_tape_errmsg(t));
            return 1;
        }
        loss = ag_item(total);
        acc = accuracy(scores_t, label, n);
        if (k % 10 == 0 || k == o.steps)
            printf("step %3ld  loss %.6f  accuracy %5.1f%%\n", k, loss, 100 * acc);
        if (k == o.steps)
            break;   /* the last pass only measures */
        /* micrograd's update: p -= lr * grad, lr falling from 1 to 0.1. */
        nn_optim_set_lr(sgd, 1.0 - 0.9 * (double)k / (double)o.steps);
        nn_optim_step(sgd);
    }
    printf("final loss %.6f, training accuracy %.1f%%\n", loss, 100 * acc);

    ag_tape_reset(t);
    if (o.ascii) {
        if (score_grid(t, net, ASCII_COLS, ASCII_ROWS, scores) != 0) {
            fprintf(stderr, "moons: %s\n", ag_tape_errmsg(t));
            return 1;
        }
        print_ascii(scores, xy, label, n);
        ag_tape_reset(t);
    }
    if (score_grid(t, net, SVG_COLS, SVG_ROWS, scores) != 0) {
        fprintf(stderr, "moons: %s\n", ag_tape_errmsg(t));
        return 1;
    }
    char title[128];
    snprintf(title, sizeof title, "2-16-16-1 ReLU MLP, hinge loss: %.0f%% training accuracy",
             100 * acc);
    if (write_svg(o.svg, scores, xy, label, n, title) != 0) {
        perror(o.svg);
        return 1;
    }
    printf("decision boundary written to %s\n", o.svg);

    nn_optim_free(sgd);
    ag_tape_free(t);
    nn_model_free(m);
    free(scores);
    free(label);
    free(xy);
    return 0;
}
