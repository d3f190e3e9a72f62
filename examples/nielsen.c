/*
** nielsen.c: the network of chapters 1 and 2 of Michael Nielsen's "Neural
** Networks and Deep Learning": sigmoid neurons, the quadratic cost, mini-batch
** stochastic gradient descent, here on Fashion-MNIST. For the first mini-batch
** it also runs backpropagation by hand, with plain loops over the four
** equations of chapter 2, and prints how far those gradients are from the
** tape's:
**
**     BP1  δᴸ = ∇ₐC ⊙ σ′(zᴸ)
**     BP2  δˡ = ((wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σ′(zˡ)
**     BP3  ∂C/∂bˡ = δˡ
**     BP4  ∂C/∂wˡ = δˡ (aˡ⁻¹)ᵀ
**
** Notation as in the book: layer 1 is the input, layer L the output; wˡ is a
** [nˡ, nˡ⁻¹] matrix whose entry (j, k) joins neuron k of layer l-1 to neuron
** j of layer l; zˡ = wˡ aˡ⁻¹ + bˡ and aˡ = σ(zˡ). For one input x with
** target y the cost is C_x = ½ ‖y - aᴸ‖², and a mini-batch's cost is the mean
** of C_x over its m inputs, so the update w → w - η ∂C/∂w is the book's
** w → w - (η/m) Σ ∂C_x/∂w. Everything runs in f64.
**
**     nielsen                              784-30-10, one epoch, batch 10, η = 3
**     nielsen --hidden 100 --epochs 5
**     nielsen --train 1000 --test 500 --hidden 16,12
**     nielsen --train 1000 --html mlp.html   also the first mini-batch's backprop as a page
*/
#define _POSIX_C_SOURCE 200809L   /* strdup */
#include "cli.h"
#include "fashion_data.h"
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LAYERS = 8, EVAL_BATCH = 1000 };

typedef struct options {
    const char *data;
    long train, test, epochs, batch, seed;
    double lr;
    int layers;                  /* L, counting the input layer */
    int64_t sizes[MAX_LAYERS];   /* sizes[0] = 784 ... sizes[L-1] = 10 */
    const char *dot, *html;      /* the first mini-batch's graph, when given */
} options;

/* Layer l of the book is index l-1 here: w[i] and b[i] for i = 1..L-1 hold
** w^(i+1) and b^(i+1); index 0 (the input layer) has none. */
typedef struct network {
    int layers;
    const int64_t *sizes;
    ag_tensor *w[MAX_LAYERS], *b[MAX_LAYERS];
} network;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nielsen [--data DIR] [--train N] [--test N] [--epochs E] [--hidden H[,H...]]\n"
            "               [--batch M] [--lr ETA] [--seed S]\n"
            "A sigmoid network trained with the quadratic cost and mini-batch SGD on\n"
            "Fashion-MNIST, as in Nielsen's book; backpropagation's four equations are also run\n"
            "by hand on the first mini-batch and compared with the tape's gradients.\n"
            "  --data DIR      the IDX files; default %s\n"
            "  --train N       use the first N training images (default all 60000)\n"
            "  --test N        use the first N test images (default all 10000)\n"
            "  --epochs E      passes over the training images; default 1\n"
            "  --hidden H,...  hidden layer sizes, at most %d; default 30\n"
            "  --batch M       mini-batch size; default 10\n"
            "  --lr ETA        learning rate η; default 3.0\n"
            "  --seed S        seed of the initial weights and of the shuffling; default 1\n"
            "  --dot FILE      write the first mini-batch's graph (.dot; .svg/.png/.pdf with\n"
            "                  Graphviz): each tensor's name, shape and a summary\n"
            "  --html FILE     the same graph as a page that steps through backprop\n",
            FASHION_DEFAULT_DIR, MAX_LAYERS - 2);
}

static int parse_hidden(const char *v, options *o)
{
    char *copy = strdup(v);
    if (!copy) {
        fprintf(stderr, "nielsen: out of memory\n");
        return -1;
    }
    int n = 1, bad = 0;
    for (char *tok = strtok(copy, ","); tok && !bad; tok = strtok(NULL, ",")) {
        long h;
        if (n >= MAX_LAYERS - 1) {
            fprintf(stderr, "nielsen: --hidden: at most %d hidden layers\n", MAX_LAYERS - 2);
            bad = 1;
        } else if (cli_long("nielsen", "--hidden", tok, 1, 100000, &h) != 0) {
            bad = 1;
        } else {
            o->sizes[n++] = h;
        }
    }
    free(copy);
    if (!bad && n == 1) {
        fprintf(stderr, "nielsen: --hidden: '%s' names no layer\n", v);
        bad = 1;
    }
    if (bad)
        return -1;
    o->sizes[n++] = FASHION_CLASSES;
    o->layers = n;
    return 0;
}

/* Returns 0, 1 for --help (printed), or -1 after a message. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){NULL, 0, 0, 1, 10, 1, 3.0, 3, {FASHION_PIXELS, 30, FASHION_CLASSES}, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        static const char *const known[] = {"--data",  "--train", "--test", "--epochs", "--hidden",
                                            "--batch", "--lr",    "--seed", "--dot",    "--html"};
        enum { N_KNOWN = sizeof known / sizeof known[0] };
        int k = 0;
        while (k < N_KNOWN && strcmp(a, known[k]))
            k++;
        if (k == N_KNOWN) {
            fprintf(stderr, "nielsen: unknown option %s (try --help)\n", a);
            return -1;
        }
        if (!(v = cli_value("nielsen", argc, argv, &i)))
            return -1;
        int bad = 0;
        switch (k) {
        case 0: o->data = v; break;
        case 1: bad = cli_long("nielsen", a, v, 1, 60000, &o->train); break;
        case 2: bad = cli_long("nielsen", a, v, 1, 10000, &o->test); break;
        case 3: bad = cli_long("nielsen", a, v, 0, 1000, &o->epochs); break;
        case 4: bad = parse_hidden(v, o); break;
        case 5: bad = cli_long("nielsen", a, v, 1, 60000, &o->batch); break;
        case 6: bad = cli_double("nielsen", a, v, 0, 1000, &o->lr); break;
        case 7: bad = cli_long("nielsen", a, v, 0, 2147483647, &o->seed); break;
        case 8: o->dot = v; break;
        default: o->html = v; break;
        }
        if (bad)
            return -1;
    }
    return 0;
}

/* The parameters, named as in the book ("w2", "b2", ...), drawn from N(0, 1)
** as the book's network.py does. */
static int network_init(network *net, nn_model *m, const options *o)
{
    net->layers = o->layers;
    net->sizes = o->sizes;
    for (int i = 1; i < o->layers; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i + 1);
        net->w[i] = nn_param(m, name, AG_F64, 2, (int64_t[]){o->sizes[i], o->sizes[i - 1]});
        snprintf(name, sizeof name, "b%d", i + 1);
        net->b[i] = nn_param(m, name, AG_F64, 1, &o->sizes[i]);
    }
    if (nn_model_status(m) != AG_OK)
        return -1;
    for (int i = 1; i < o->layers; i++) {
        ag_fill_normal(net->w[i], nn_model_rng(m), 0, 1);
        ag_fill_normal(net->b[i], nn_model_rng(m), 0, 1);
    }
    return 0;
}

/* aᴸ for a batch x [m, 784]: each layer computes a = σ(a wᵀ + b), the book's
** zˡ = wˡ aˡ⁻¹ + bˡ for m inputs at once (one per row). */
static ag_tensor *feedforward(ag_tape *t, const network *net, ag_tensor *x)
{
    ag_tensor *a = x;
    for (int i = 1; i < net->layers; i++) {
        ag_tensor *z = ag_add(t, ag_matmul(t, a, ag_transpose(t, net->w[i], 0, 1)), net->b[i]);
        a = ag_sigmoid(t, z);
        char name[16];   /* the book's names, for --dot and --html */
        snprintf(name, sizeof name, "z%d", i + 1);
        ag_set_name(z, name);
        snprintf(name, sizeof name, "a%d", i + 1);
        ag_set_name(a, name);
    }
    return a;
}

/* C = (1/m) Σ_x ½ ‖y(x) - aᴸ(x)‖², with y(x) the one-hot vector of x's label. */
static ag_tensor *quadratic_cost(ag_tape *t, ag_tensor *out, ag_tensor *y)
{
    double m = (double)ag_dim(out, 0);
    return ag_mul_scalar(t, ag_sum(t, ag_square(t, ag_sub(t, y, out))), 0.5 / m);
}

static void one_hot(const int64_t *labels, int64_t m, double *y)
{
    memset(y, 0, sizeof *y * (size_t)(m * FASHION_CLASSES));
    for (int64_t i = 0; i < m; i++)
        y[i * FASHION_CLASSES + labels[i]] = 1;
}

static double sigma(double z) { return 1 / (1 + exp(-z)); }
static double sigma_prime(double z) { return sigma(z) * (1 - sigma(z)); }

/* Backpropagation by hand, in plain C over the network's current weights:
** for each input of the batch x [m, 784] (values as double) it runs the
** feedforward pass, then BP1 and BP2 for the errors δˡ, then adds BP3 and
** BP4, divided by m, into gb[i] and gw[i] (zeroed here; laid out as b[i] and
** w[i]). Returns 0, or -1 when memory runs out. */
static int backprop_by_hand(const network *net, const double *x, const int64_t *labels, int64_t m,
                            double **gw, double **gb)
{
    int L = net->layers;
    const int64_t *n = net->sizes;
    double *z[MAX_LAYERS] = {0}, *a[MAX_LAYERS] = {0}, *delta[MAX_LAYERS] = {0};
    int ok = 1;
    for (int i = 0; i < L; i++) {
        z[i] = calloc((size_t)n[i], sizeof **z);
        a[i] = calloc((size_t)n[i], sizeof **a);
        delta[i] = calloc((size_t)n[i], sizeof **delta);
        ok = ok && z[i] && a[i] && delta[i];
    }
    for (int i = 1; ok && i < L; i++) {
        memset(gw[i], 0, sizeof **gw * (size_t)(n[i] * n[i - 1]));
        memset(gb[i], 0, sizeof **gb * (size_t)n[i]);
    }
    for (int64_t s = 0; ok && s < m; s++) {
        memcpy(a[0], x + s * n[0], sizeof **a * (size_t)n[0]);
        for (int i = 1; i < L; i++) {   /* zˡ = wˡ aˡ⁻¹ + bˡ, aˡ = σ(zˡ) */
            const double *w = ag_data(net->w[i]), *b = ag_data(net->b[i]);
            for (int64_t j = 0; j < n[i]; j++) {
                double sum = b[j];
                for (int64_t k = 0; k < n[i - 1]; k++)
                    sum += w[j * n[i - 1] + k] * a[i - 1][k];
                z[i][j] = sum;
                a[i][j] = sigma(sum);
            }
        }
        /* BP1: for C_x = ½ ‖y - aᴸ‖², ∇ₐC_x = aᴸ - y. */
        for (int64_t j = 0; j < n[L - 1]; j++) {
            double y = labels[s] == j ? 1 : 0;
            delta[L - 1][j] = (a[L - 1][j] - y) * sigma_prime(z[L - 1][j]);
        }
        /* BP2: δˡ_k = Σ_j wˡ⁺¹_jk δˡ⁺¹_j σ′(zˡ_k), from layer L-1 down to 2. */
        for (int i = L - 2; i >= 1; i--) {
            const double *w = ag_data(net->w[i + 1]);
            for (int64_t k = 0; k < n[i]; k++) {
                double sum = 0;
                for (int64_t j = 0; j < n[i + 1]; j++)
                    sum += w[j * n[i] + k] * delta[i + 1][j];
                delta[i][k] = sum * sigma_prime(z[i][k]);
            }
        }
        /* BP3 and BP4, averaged over the mini-batch. */
        for (int i = 1; i < L; i++)
            for (int64_t j = 0; j < n[i]; j++) {
                gb[i][j] += delta[i][j] / (double)m;
                for (int64_t k = 0; k < n[i - 1]; k++)
                    gw[i][j * n[i - 1] + k] += delta[i][j] * a[i - 1][k] / (double)m;
            }
    }
    for (int i = 0; i < L; i++) {
        free(z[i]);
        free(a[i]);
        free(delta[i]);
    }
    return ok ? 0 : -1;
}

/* Largest |hand[i] - tape gradient[i]|, and the largest |tape gradient| in
** '*scale' for comparison. */
static double largest_difference(const double *hand, const ag_tensor *p, double *scale)
{
    ag_tensor *g = ag_grad(p);
    double diff = 0;
    *scale = 0;
    for (int64_t i = 0; i < ag_numel(p); i++) {
        double tape = g ? ag_get(g, i) : 0;
        diff = fmax(diff, fabs(hand[i] - tape));
        *scale = fmax(*scale, fabs(tape));
    }
    return diff;
}

/* Runs backprop_by_hand on the batch whose tape gradients were just
** computed and prints the comparison. Returns the largest difference, or
** NaN when memory runs out. */
static double compare_with_tape(const network *net, ag_tensor *x, const int64_t *labels)
{
    int L = net->layers;
    const int64_t *n = net->sizes;
    int64_t m = ag_dim(x, 0);
    double *gw[MAX_LAYERS] = {0}, *gb[MAX_LAYERS] = {0};
    int ok = 1;
    for (int i = 1; i < L; i++) {
        gw[i] = malloc(sizeof **gw * (size_t)(n[i] * n[i - 1]));
        gb[i] = malloc(sizeof **gb * (size_t)n[i]);
        ok = ok && gw[i] && gb[i];
    }
    double worst = NAN;
    if (ok && backprop_by_hand(net, ag_data(x), labels, m, gw, gb) == 0) {
        printf("Backpropagation by hand on the first mini-batch (%lld images), beside the tape:\n"
               "  BP1  δᴸ = ∇ₐC ⊙ σ′(zᴸ)\n"
               "  BP2  δˡ = ((wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σ′(zˡ)\n"
               "  BP3  ∂C/∂bˡ = δˡ\n"
               "  BP4  ∂C/∂wˡ = δˡ (aˡ⁻¹)ᵀ\n"
               "  layer  gradient   largest |tape|   largest |hand - tape|\n",
               (long long)m);
        worst = 0;
        for (int i = L - 1; i >= 1; i--) {
            double scale, d;
            d = largest_difference(gb[i], net->b[i], &scale);
            printf("  %5d  ∂C/∂b%-5d %14.6e   %14.3e\n", i + 1, i + 1, scale, d);
            worst = fmax(worst, d);
            d = largest_difference(gw[i], net->w[i], &scale);
            printf("  %5d  ∂C/∂w%-5d %14.6e   %14.3e\n", i + 1, i + 1, scale, d);
            worst = fmax(worst, d);
        }
        printf("largest difference between hand and tape: %.3e\n", worst);
    }
    for (int i = 1; i < L; i++) {
        free(gw[i]);
        free(gb[i]);
    }
    return worst;
}

/* --dot and --html: the graph of the first mini-batch's cost, where each
** tensor of more than 16 values shows its shape and a summary. Returns 0,
** or -1 after a message. */
static int write_graphs(const options *o, ag_tape *t, ag_tensor *cost)
{
    ag_dot_options d = {.title = "Nielsen's network: the cost C of the first mini-batch"};
    ag_set_name(cost, "C");
    if (o->dot && ag_dot_save(t, cost, &d, o->dot) != AG_OK) {
        fprintf(stderr, "nielsen: --dot %s: %s\n", o->dot, ag_tape_errmsg(t));
        return -1;
    }
    if (o->html && ag_html_save(t, cost, &d, o->html) != AG_OK) {
        fprintf(stderr, "nielsen: --html %s: %s\n", o->html, ag_tape_errmsg(t));
        return -1;
    }
    if (o->dot)
        printf("Graph of the first mini-batch written to %s\n", o->dot);
    if (o->html)
        printf("Step-through page of the first mini-batch written to %s\n", o->html);
    return 0;
}

/* Correct answers on the test set: the output neuron with the largest
** activation is the network's guess. Returns -1 on error (printed). */
static int64_t evaluate(ag_tape *t, const network *net, const nn_dataset *test)
{
    nn_loader *ld = NULL;
    char err[256];
    if (nn_loader_new(test, EVAL_BATCH, 0, 0, NULL, NULL, NULL, &ld, err, sizeof err) != AG_OK) {
        fprintf(stderr, "nielsen: %s\n", err);
        return -1;
    }
    int64_t correct = 0;
    nn_batch b;
    ag_tape_reset(t);
    while (nn_loader_next(ld, t, &b)) {
        ag_no_grad_begin(t);   /* nothing to differentiate: record nothing */
        ag_tensor *out = feedforward(t, net, ag_cast(t, b.x, AG_F64));
        ag_no_grad_end(t);
        int64_t right = 0;
        if (ag_tape_status(t) != AG_OK)
            break;
        if (nn_count_correct(out, b.labels, &right, err, sizeof err) != AG_OK) {
            ag_tape_fail(t, AG_EINVAL, "%s", err);
            break;
        }
        correct += right;
        ag_tape_reset(t);
    }
    nn_loader_free(ld);
    if (ag_tape_status(t) != AG_OK) {
        fprintf(stderr, "nielsen: %s\n", ag_tape_errmsg(t));
        return -1;
    }
    return correct;
}

int main(int argc, char **argv)
{
    options o;
    int parsed = parse_args(argc, argv, &o);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    /* Images stay f32 in memory (half the size) and each batch is cast to f64. */
    nn_dataset *train = fashion_load("nielsen", o.data, 1, AG_F32, o.train);
    nn_dataset *test = train ? fashion_load("nielsen", o.data, 0, AG_F32, o.test) : NULL;
    if (!test) {
        nn_dataset_free(train);
        return 1;
    }
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tape *t = ag_tape_new();
    network net;
    ag_rng shuffle_rng;
    ag_rng_seed(&shuffle_rng, (uint64_t)o.seed + 1);
    nn_loader *ld = NULL;
    double *y = malloc(sizeof *y * (size_t)(o.batch * FASHION_CLASSES));
    char err[256] = "out of memory";
    if (!m || !t || !y ||
        nn_loader_new(train, o.batch, 1, 0, &shuffle_rng, NULL, NULL, &ld, err, sizeof err) !=
            AG_OK) {
        fprintf(stderr, "nielsen: %s\n", err);
        return 1;
    }
    nn_model_seed(m, (uint64_t)o.seed);
    nn_optim *sgd = NULL;
    if (network_init(&net, m, &o) == 0)
        sgd = nn_sgd_new(m, o.lr, 0, 0, 0);
    if (nn_model_status(m) != AG_OK) {
        fprintf(stderr, "nielsen: %s\n", nn_model_errmsg(m));
        return 1;
    }
    printf("Network");
    for (int i = 0; i < o.layers; i++)
        printf("%s%lld", i ? "-" : " ", (long long)o.sizes[i]);
    printf(" (sigmoid, quadratic cost), %lld training and %lld test images,\n"
           "mini-batches of %ld, η = %g, %ld epoch%s\n",
           (long long)nn_dataset_len(train), (long long)nn_dataset_len(test), o.batch, o.lr,
           o.epochs, o.epochs == 1 ? "" : "s");

    int status = 0, checked = 0;
    for (long epoch = 1; epoch <= o.epochs && status == 0; epoch++) {
        nn_batch b;
        double cost_sum = 0;
        int64_t batches = 0;
        ag_tape_reset(t);
        while (nn_loader_next(ld, t, &b)) {
            one_hot(b.labels, b.size, y);
            ag_tensor *x = ag_cast(t, b.x, AG_F64);
            ag_tensor *target =
                ag_tensor_from_f64(t, 2, (int64_t[]){b.size, FASHION_CLASSES}, y);
            ag_tensor *cost = quadratic_cost(t, feedforward(t, &net, x), target);
            nn_model_zero_grad(m);
            ag_backward(t, cost);
            if (ag_tape_status(t) != AG_OK)
                break;
            if (!checked) {
                checked = 1;
                if (isnan(compare_with_tape(&net, x, b.labels))) {
                    fprintf(stderr, "nielsen: out of memory\n");
                    status = 1;
                    break;
                }
                if (write_graphs(&o, t, cost) != 0) {
                    status = 1;
                    break;
                }
            }
            cost_sum += ag_item(cost);
            batches++;
            nn_optim_step(sgd);
            ag_tape_reset(t);
        }
        if (status == 0 && ag_tape_status(t) != AG_OK) {
            fprintf(stderr, "nielsen: %s\n", ag_tape_errmsg(t));
            status = 1;
        }
        if (status != 0)
            break;
        int64_t correct = evaluate(t, &net, test);
        if (correct < 0) {
            status = 1;
            break;
        }
        printf("Epoch %ld: mean cost %.4f, test accuracy %lld / %lld = %.2f%%\n", epoch,
               cost_sum / (double)(batches ? batches : 1), (long long)correct,
               (long long)nn_dataset_len(test),
               100.0 * (double)correct / (double)nn_dataset_len(test));
    }

    nn_optim_free(sgd);
    nn_loader_free(ld);
    free(y);
    ag_tape_free(t);
    nn_model_free(m);
    nn_dataset_free(test);
    nn_dataset_free(train);
    return status;
}
