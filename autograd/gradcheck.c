/*
** gradcheck.c: compares the tape's gradients with central finite
** differences in f64. A non-scalar output is contracted with fixed random
** weights r, so the check covers the whole vector-Jacobian product r^T J.
*/
#include "internal.h"

#include <math.h>
#include <string.h>

typedef struct check {
    ag_gradcheck_fn f;
    void *ud;
    int n;
    ag_tensor *const *inputs;   /* the caller's, for shapes */
    double **values;            /* current f64 values of each input */
    double *weights;            /* r, once the output's size is known */
    int64_t n_out;
    /* The first output's dtype and shape: every later call must give them,
    ** or its contraction with r would read past r or leave part of it out. */
    bool shaped;
    ag_dtype out_dtype;
    int out_rank;
    int64_t out_shape[AG_MAX_DIMS];
    ag_tape *t;
    ag_tensor **leaves;
} check;

/* Records the first output's dtype and shape; false after recording
** AG_ESHAPE when a later output differs from it. */
static bool same_output(check *c, const ag_tensor *y)
{
    if (!c->shaped) {
        c->shaped = true;
        c->out_dtype = (ag_dtype)y->dtype;
        c->out_rank = y->rank;
        memcpy(c->out_shape, y->shape, (size_t)y->rank * sizeof *y->shape);
        c->n_out = y->numel;
        return true;
    }
    if ((ag_dtype)y->dtype == c->out_dtype && y->rank == c->out_rank &&
        memcmp(y->shape, c->out_shape, (size_t)y->rank * sizeof *y->shape) == 0)
        return true;
    char first[96];
    agi_shape_str(first, sizeof first, c->out_rank, c->out_shape);
    agi_error(c->t, AG_ESHAPE, "ag_gradcheck: f returned %s %s on one call and %s %s on another",
              ag_dtype_name(c->out_dtype), first, ag_dtype_name((ag_dtype)y->dtype),
              agi_shp(y, 0));
    return false;
}

/* Runs f on fresh leaves holding the current values; NULL on error. The
** leaves require grad and the tape records in every evaluation, the finite
** differences included, as ag_gradcheck_fn promises: a function that takes
** gradients itself (ag_gradients with create_graph) would otherwise compute
** zeros on the numeric side. */
static ag_tensor *evaluate(check *c)
{
    ag_tape_reset(c->t);
    for (int i = 0; i < c->n; i++) {
        const ag_tensor *x = c->inputs[i];
        c->leaves[i] = ag_requires_grad(
            ag_tensor_from(c->t, AG_F64, x->rank, x->shape, c->values[i]));
    }
    ag_tensor *y = c->f(c->t, c->leaves, c->ud);
    if (c->t->status != AG_OK)
        return NULL;
    if (!y || (y->flags & AGI_NIL)) {
        agi_error(c->t, AG_EINVAL, "ag_gradcheck: the function returned %s",
                  y ? "the nil tensor" : "NULL");
        return NULL;
    }
    /* A tensor kept from an earlier evaluation lies in arena memory the
    ** reset gave back: its values and its graph are no longer its own. */
    if (!(y->flags & AGI_PARAM) && (y->tape != c->t || y->epoch != c->t->epoch)) {
        agi_error(c->t, AG_EINVAL, "ag_gradcheck: f returned a tensor of %s, not of the tape it "
                  "was given", y->tape != c->t ? "another tape" : "an earlier pass (before a reset)");
        return NULL;
    }
    return same_output(c, y) ? y : NULL;
}

static double contract(const check *c, const ag_tensor *y)
{
    double s = 0;
    for (int64_t i = 0; i < y->numel; i++)
        s += c->weights[i] * agi_get(y, i);
    return s;
}

static void *take(size_t bytes) { return agi_realloc(NULL, NULL, NULL, 0, bytes ? bytes : 1); }
static void give(void *p) { agi_realloc(NULL, NULL, p, 0, 0); }

/* The arguments' status, with a message in err (when not NULL) naming the
** first bad one. There is no tape to record on but a stale input's, where
** agi_usable records AG_ESTATE as it does for every accessor. */
static ag_status arguments_check(ag_gradcheck_fn f, int n, ag_tensor *const *inputs, double eps,
                                 char *err, size_t errlen)
{
    if (!f || n < 0 || (n > 0 && !inputs)) {
        if (err)
            snprintf(err, errlen, "ag_gradcheck: f %s, %d inputs, inputs %s", f ? "set" : "NULL",
                     n, inputs ? "set" : "NULL");
        return AG_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        const ag_tensor *x = inputs[i];
        if (!x || (x->flags & AGI_NIL)) {
            if (err)
                snprintf(err, errlen, "ag_gradcheck: input %d is NULL or nil", i);
            return AG_EINVAL;
        }
        if (!agi_usable(x, "ag_gradcheck")) {
            if (err)
                snprintf(err, errlen, "ag_gradcheck: input %d was made before the last "
                         "ag_tape_reset (pass %u; the tape is at pass %u)", i,
                         (unsigned)x->epoch, (unsigned)x->tape->epoch);
            return AG_ESTATE;
        }
    }
    /* A NaN step would pass 'eps <= 0' and make every difference NaN. */
    if (!(isfinite(eps) && eps >= 0)) {
        if (err)
            snprintf(err, errlen, "ag_gradcheck: eps %g must be finite and > 0 (0 for 1e-6)",
                     eps);
        return AG_EINVAL;
    }
    return AG_OK;
}

ag_status ag_gradcheck(ag_gradcheck_fn f, void *ud, int n, ag_tensor *const *inputs, double eps,
                       ag_gradcheck_report *report, char *err, size_t errlen)
{
    ag_gradcheck_report rep = {0};
    if (err && errlen)
        err[0] = '\0';
    ag_status st = arguments_check(f, n, inputs, eps, err, errlen);
    if (st != AG_OK) {
        if (report)
            *report = rep;
        return st;
    }
    if (eps == 0)
        eps = 1e-6;
    check c = {.f = f, .ud = ud, .n = n, .inputs = inputs, .t = ag_tape_new()};
    c.values = take((size_t)n * sizeof *c.values);
    c.leaves = take((size_t)n * sizeof *c.leaves);
    double **analytic = take((size_t)n * sizeof *analytic);
    if (!c.t || !c.values || !c.leaves || !analytic) {
        st = AG_ENOMEM;
        goto done;
    }
    memset(c.values, 0, (size_t)n * sizeof *c.values);
    memset(analytic, 0, (size_t)n * sizeof *analytic);
    for (int i = 0; i < n; i++) {
        c.values[i] = take((size_t)inputs[i]->numel * sizeof(double));
        analytic[i] = take((size_t)inputs[i]->numel * sizeof(double));
        if (!c.values[i] || !analytic[i]) {
            st = AG_ENOMEM;
            goto done;
        }
        for (int64_t j = 0; j < inputs[i]->numel; j++)
            c.values[i][j] = agi_get(inputs[i], j);
    }

    /* The analytic side: one backward seeded with r. */
    ag_tensor *y = evaluate(&c);
    if (!y)
        goto failed;
    c.weights = take((size_t)c.n_out * sizeof(double));
    if (!c.weights) {
        st = AG_ENOMEM;
        goto done;
    }
    ag_rng rng;
    ag_rng_seed(&rng, 0x6772616463686bull);
    for (int64_t i = 0; i < c.n_out; i++)
        c.weights[i] = c.n_out == 1 ? 1.0 : 0.5 + ag_rng_uniform(&rng);
    ag_tensor *seed = ag_zeros(c.t, (ag_dtype)y->dtype, y->rank, y->shape);
    for (int64_t i = 0; i < seed->numel; i++)
        agi_set(seed, i, c.weights[i]);
    ag_tensor **grads = agi_arena_alloc(c.t, (size_t)(n ? n : 1) * sizeof *grads, 16);
    if (!grads)
        goto failed;
    ag_gradients(c.t, y, seed, n, c.leaves, grads, 0);
    if (c.t->status != AG_OK)
        goto failed;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < inputs[i]->numel; j++)
            analytic[i][j] = agi_get(grads[i], j);

    /* The numeric side: central differences, one element at a time. */
    rep.max_rel_err = 0;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < inputs[i]->numel; j++) {
            double keep = c.values[i][j], lp, lm;
            c.values[i][j] = keep + eps;
            if (!(y = evaluate(&c)))
                goto failed;
            lp = contract(&c, y);
            c.values[i][j] = keep - eps;
            if (!(y = evaluate(&c)))
                goto failed;
            lm = contract(&c, y);
            c.values[i][j] = keep;
            double num = (lp - lm) / (2 * eps), ana = analytic[i][j];
            double scale = fmax(1.0, fmax(fabs(num), fabs(ana)));
            double rel = fabs(num - ana) / scale;
            if (isnan(rel))
                rel = INFINITY;
            if (rel > rep.max_rel_err || rep.checked == 0) {
                rep.max_rel_err = rel;
                rep.input = i;
                rep.element = j;
                rep.analytic = ana;
                rep.numeric = num;
            }
            rep.checked++;
        }
    goto done;

failed:
    st = c.t->status;
    if (err)
        snprintf(err, errlen, "%s", c.t->errmsg);
done:
    if (report)
        *report = rep;
    for (int i = 0; c.values && analytic && i < n; i++) {
        give(c.values[i]);
        give(analytic[i]);
    }
    give(c.values);
    give(analytic);
    give(c.leaves);
    give(c.weights);
    ag_tape_free(c.t);
    return st;
}
