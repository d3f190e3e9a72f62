/*
** fuzz_agx.c: libFuzzer target for agx. Arbitrary bytes go to the parser;
** a refusal must name a column inside the input and say something, and a
** program that parses must satisfy the parser's invariants, then record,
** differentiate and draw (DOT text and one backward frame) on a tape.
** The values are checked too: each node is recorded here op by op, and its
** value compared with the C library's formula applied to the node's own
** operands as the tape holds them (so no error carries from node to node):
** within 1e-13 relative, NaN where it gives NaN, infinities where it
** overflows. The program's output must be that last node's value, bit for
** bit, as agx_record computes it.
** Built by meson with -Dfuzz=true (docs/FUZZING.md) or by tests/fuzz/run_fuzz.sh;
** every build replays its corpus (tests/test_fuzz_corpus.c).
*/
#include "eval.h"
#include "parse.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_NAMES = 64, MAX_NODES = 4000 };

static void check_program(const agx_program *p)
{
    if (p->n_stmts < 1)
        abort();
    for (int i = 0; i < p->n_nodes; i++)
        if (p->nodes[i].a >= i || p->nodes[i].b >= i)
            abort();   /* operands must come first */
    for (int s = 0; s < p->n_stmts; s++) {
        const agx_stmt *st = &p->stmts[s];
        if (st->first > st->root || (s > 0 && st->first != p->stmts[s - 1].root + 1))
            abort();
        if (s + 1 < p->n_stmts && st->name < 0)
            abort();   /* only the last may be bare */
    }
    for (int i = 0; i < p->n_names; i++)
        if (p->names[i].bound_by >= p->n_stmts)
            abort();
}

/* The reference formulas, in plain C and libm. */
static double reference(const agx_node *n, double a, double b)
{
    switch (n->kind) {
    case AGX_NEG: return -a;
    case AGX_ADD: return a + b;
    case AGX_SUB: return a - b;
    case AGX_MUL: return a * b;
    case AGX_DIV: return a / b;
    case AGX_POW: return pow(a, b);
    case AGX_CALL: break;
    default: abort();
    }
    switch (n->func) {
    case AGX_EXP: return exp(a);
    case AGX_LOG: return log(a);
    case AGX_SQRT: return sqrt(a);
    case AGX_ABS: return fabs(a);
    case AGX_SIN: return sin(a);
    case AGX_COS: return cos(a);
    case AGX_TANH: return tanh(a);
    case AGX_SIGMOID: return a >= 0 ? 1 / (1 + exp(-a)) : exp(a) / (1 + exp(a));
    case AGX_RELU: return isnan(a) ? a : a > 0 ? a : 0;
    case AGX_SOFTPLUS: return a > 0 ? a + log1p(exp(-a)) : log1p(exp(a));
    default: abort();
    }
}

static bool close_enough(double got, double want)
{
    if (isnan(want))
        return isnan(got);
    if (isinf(want))
        return got == want || (isfinite(got) && fabs(got) > 1e307 && (got > 0) == (want > 0));
    if (isinf(got))
        return fabs(want) > 1e307 && (got > 0) == (want > 0);
    return fabs(got - want) <= 1e-13 * fabs(want) + 1e-300;
}

/* Records 'p' node by node and checks every value against reference(). */
static void check_values(const agx_program *p, const double *values, double output)
{
    ag_tape *t = ag_tape_new();
    ag_tensor **val = calloc((size_t)p->n_nodes + 1, sizeof *val);
    ag_tensor **name_val = calloc((size_t)p->n_names + 1, sizeof *name_val);
    if (!t || !val || !name_val)
        abort();
    for (int i = 0; i < p->n_names; i++)
        if (p->names[i].bound_by < 0)
            name_val[i] = ag_scalar(t, AG_F64, values[i]);
    double last = NAN;
    for (int s = 0; s < p->n_stmts; s++) {
        const agx_stmt *st = &p->stmts[s];
        for (int i = st->first; i <= st->root; i++) {
            const agx_node *n = &p->nodes[i];
            ag_tensor *a = n->a >= 0 ? val[n->a] : NULL, *b = n->b >= 0 ? val[n->b] : NULL;
            switch (n->kind) {
            case AGX_NUM: val[i] = ag_scalar(t, AG_F64, n->num); break;
            case AGX_NAME: val[i] = name_val[n->name]; break;
            case AGX_NEG: val[i] = ag_neg(t, a); break;
            case AGX_ADD: val[i] = ag_add(t, a, b); break;
            case AGX_SUB: val[i] = ag_sub(t, a, b); break;
            case AGX_MUL: val[i] = ag_mul(t, a, b); break;
            case AGX_DIV: val[i] = ag_div(t, a, b); break;
            case AGX_POW: val[i] = ag_pow(t, a, b); break;
            case AGX_CALL: {
                static ag_tensor *(*const funcs[AGX_FUNC_COUNT])(ag_tape *, ag_tensor *) = {
                    [AGX_EXP] = ag_exp,   [AGX_LOG] = ag_log,         [AGX_SQRT] = ag_sqrt,
                    [AGX_ABS] = ag_abs,   [AGX_SIN] = ag_sin,         [AGX_COS] = ag_cos,
                    [AGX_TANH] = ag_tanh, [AGX_SIGMOID] = ag_sigmoid, [AGX_RELU] = ag_relu,
                    [AGX_SOFTPLUS] = ag_softplus,
                };
                val[i] = funcs[n->func](t, a);
                break;
            }
            }
            if (ag_tape_status(t) != AG_OK)
                abort();
            if (n->kind != AGX_NUM && n->kind != AGX_NAME) {
                double want = reference(n, ag_item(a), b ? ag_item(b) : 0.0);
                if (!close_enough(ag_item(val[i]), want)) {
                    fprintf(stderr, "node %d (column %d, kind %d, func %d) of %.17g, %.17g: %.17g, "
                                    "the formula gives %.17g\n",
                            i, n->col, (int)n->kind, (int)n->func, ag_item(a), b ? ag_item(b) : 0.0,
                            ag_item(val[i]), want);
                    abort();   /* an op's value is not its formula's */
                }
            }
        }
        last = ag_item(val[st->root]);
        if (st->name >= 0)
            name_val[st->name] = val[st->root];
    }
    if (memcmp(&last, &output, sizeof last) != 0)
        abort();   /* agx_record computed another output */
    free(val);
    free(name_val);
    ag_tape_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = malloc(size + 1);
    if (!src)
        return 0;
    memcpy(src, data, size);
    src[size] = '\0';
    agx_program p;
    agx_error err;
    if (agx_parse(src, &p, &err) != 0) {
        if (err.col < 1 || err.col > agx_column(src, strlen(src)) || !err.msg[0])
            abort();
    } else {
        check_program(&p);
        if (p.n_names <= MAX_NAMES && p.n_nodes <= MAX_NODES) {
            double values[MAX_NAMES];
            for (int i = 0; i < p.n_names; i++)
                values[i] = (double)(i % 7) - 3.0 + 0.25 * (double)(size % 5);
            ag_tape *t = ag_tape_new();
            ag_tensor *y = agx_record(t, &p, values, 1, NULL);
            check_values(&p, values, ag_item(y));
            if (ag_requires_grad_of(y))
                ag_backward(t, y);
            FILE *null = fopen("/dev/null", "wb");
            if (null) {
                ag_dot_write(t, y, NULL, null);
                if (ag_tape_status(t) == AG_OK && ag_dot_steps(t, y) > 0)
                    ag_dot_write_step(t, y, 1, NULL, null);
                fclose(null);
            }
            if (ag_tape_status(t) != AG_OK)
                abort();   /* scalar programs never fail on a tape */
            ag_tape_free(t);
        }
    }
    agx_program_free(&p);
    free(src);
    return 0;
}
