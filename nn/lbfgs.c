/*
** lbfgs.c: L-BFGS with a strong-Wolfe line search (nn_lbfgs_*). An
** nn_optim of kind "lbfgs" whose state (history pairs, direction, the
** flat point and gradients, in double) lives in the optimizer's one block:
** made once, so steps allocate nothing. The parameters are reached through
** optim.c's flat gather and scatter, a model's or a plain list's alike.
*/
#include "optim_internal.h"

#include <math.h>
#include <string.h>

static const optim_kind lbfgs_kind = {"lbfgs", 0, NULL, NULL, {NULL, NULL}};

enum { MAX_LINE_SEARCH = 25 };
static const double C1 = 1e-4, C2 = 0.9;

struct nni_lbfgs {
    nn_lbfgs_options opt;
    int64_t n;             /* values */
    double *x0;            /* the point of the current iteration */
    double *d;             /* the search direction */
    double *g;             /* the gradient at x0 */
    double *g_prev;        /* the gradient before the last line search */
    double *gt, *glo;      /* at the trial point, at the bracket's low end */
    double *s, *y;         /* history: history_size rows of n each, a ring */
    double *rho, *alpha;   /* 1 / y's per pair; the two-loop's coefficients */
    int head, count;       /* the ring's next slot, and pairs held */
    double t_prev;         /* the last accepted step length */
    double h_diag;         /* y's / y'y of the newest pair: the initial scaling */
    bool started;          /* an iteration has been taken (d, t_prev, g_prev hold) */
    bool converged;
    int64_t evaluations;
    int evals_this_step;
    nn_closure_fn closure;
    void *closure_ud;
};

/* ------------------------------------------------------------ construction */

static bool options_check(const nni_optim_target *tg, nn_lbfgs_options *o, const char *who,
                          nn_optim **bad);

static nn_optim *lbfgs_make(const nni_optim_target *tg, const char *who,
                            const nn_lbfgs_options *given)
{
    nn_lbfgs_options opt = given ? *given : (nn_lbfgs_options){0};
    nn_optim *bad = NULL;
    if (!options_check(tg, &opt, who, &bad))
        return bad;
    int64_t n = tg->model ? nn_model_numel(tg->model) : 0;
    for (int i = 0; !tg->model && tg->params && i < tg->n; i++)
        n += tg->params[i] ? ag_numel(tg->params[i]) : 0;
    /* Six vectors, 2 history_size rows, 2 history_size scalars. */
    size_t h = (size_t)opt.history_size, rows = 6 + 2 * h;
    size_t extra = 0;
    if (n > 0 && (uint64_t)n <= SIZE_MAX / sizeof(double) / rows / 2)
        extra = sizeof(nni_lbfgs) + 16 + ((size_t)n * rows + 2 * h) * sizeof(double);
    else if (n > 0)
        extra = SIZE_MAX / 2;   /* nni_optim_make reports it as too large */
    void *at = NULL;
    nn_optim *o = nni_optim_make(tg, who, &lbfgs_kind, opt.lr, 0, NULL, extra, &at);
    if (nn_optim_is_nil(o))
        return o;
    nni_lbfgs *L = at;
    o->lbfgs = L;
    L->opt = opt;
    L->n = o->numel;
    double *p = (double *)(((uintptr_t)(L + 1) + 15) & ~(uintptr_t)15);
    double **vecs[] = {&L->x0, &L->d, &L->g, &L->g_prev, &L->gt, &L->glo};
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++, p += L->n)
        *vecs[i] = p;
    L->s = p;
    p += (size_t)L->n * h;
    L->y = p;
    p += (size_t)L->n * h;
    L->rho = p;
    L->alpha = p + h;
    L->h_diag = 1.0;
    return o;
}

/* Fills defaults for zero fields and checks the rest; false after making
** *bad the nil or errored optimizer that says why. */
static bool options_check(const nni_optim_target *tg, nn_lbfgs_options *o, const char *who,
                          nn_optim **bad)
{
    if (o->lr == 0)
        o->lr = 1.0;
    if (o->max_iter == 0)
        o->max_iter = 20;
    if (o->max_eval == 0 && o->max_iter > 0)
        o->max_eval = o->max_iter > INT32_MAX / 5 ? INT32_MAX : o->max_iter * 5 / 4;
    if (o->tolerance_grad == 0)
        o->tolerance_grad = 1e-7;
    if (o->tolerance_change == 0)
        o->tolerance_change = 1e-9;
    if (o->history_size == 0)
        o->history_size = 100;
    const char *field = NULL;
    double value = 0;
    if (!(isfinite(o->lr) && o->lr > 0))
        field = "lr", value = o->lr;
    else if (o->max_iter < 0)
        field = "max_iter", value = o->max_iter;
    else if (o->max_eval < 1)
        field = "max_eval", value = o->max_eval;
    else if (!(isfinite(o->tolerance_grad) && o->tolerance_grad > 0))
        field = "tolerance_grad", value = o->tolerance_grad;
    else if (!(isfinite(o->tolerance_change) && o->tolerance_change > 0))
        field = "tolerance_change", value = o->tolerance_change;
    else if (o->history_size < 1 || o->history_size > 100000)
        field = "history_size", value = o->history_size;
    if (!field)
        return true;
    *bad = nni_optim_refuse(tg, AG_EINVAL, "%s: %s %g is out of range (%s)", who, field, value,
                            !strcmp(field, "history_size") ? "1 to 100000" : "> 0, finite");
    return false;
}

nn_optim *nn_lbfgs_new(nn_model *m, const nn_lbfgs_options *opt)
{
    if (!m)
        return nni_optim_nil();
    return lbfgs_make(&(nni_optim_target){.model = m}, "nn_lbfgs_new", opt);
}

nn_optim *nn_lbfgs_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params,
                              const nn_lbfgs_options *opt)
{
    nni_optim_target tg = {.n = n, .params = params, .alloc = fn, .alloc_ud = ud};
    return lbfgs_make(&tg, "nn_lbfgs_new_params", opt);
}

/* ------------------------------------------------------------- evaluation */

static double dot(int64_t n, const double *a, const double *b)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static double max_abs(int64_t n, const double *a)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static bool all_finite(int64_t n, const double *a)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(a[i]))
            return false;
    return true;
}

/* Sets the parameters to x0 + a d (x0 itself when a is 0), calls the
** closure and gathers the gradient into 'grad'. Returns false after
** recording the closure's failure. A non-finite loss or gradient is
** returned as such (*f infinite): the line search takes it as too far. */
static bool evaluate(nn_optim *o, double a, double *f, double *grad)
{
    nni_lbfgs *L = o->lbfgs;
    if (a != 0) {
        for (int64_t i = 0; i < L->n; i++)
            grad[i] = L->x0[i] + a * L->d[i];
        nni_optim_scatter(o, grad);
    } else {
        nni_optim_scatter(o, L->x0);
    }
    nni_optim_zero_grad(o);
    double loss = NAN;
    L->evaluations++;
    L->evals_this_step++;
    ag_status st = L->closure(L->closure_ud, &loss);
    if (st != AG_OK) {
        nni_optim_fail(o, st, "nn_lbfgs_step: the closure failed (%s) at evaluation %lld, step "
                       "length %g", ag_status_str(st), (long long)L->evaluations, a);
        return false;
    }
    nni_optim_gather(o, true, grad);
    *f = isfinite(loss) && all_finite(L->n, grad) ? loss : INFINITY;
    return true;
}

/* The minimiser of the cubic through (a1, f1) and (a2, f2) with slopes d1
** and d2, kept within [lo, hi]; the middle when the cubic has none
** (Nocedal and Wright, equation 3.59). */
static double cubic_min(double a1, double f1, double d1, double a2, double f2, double d2,
                        double lo, double hi)
{
    double e1 = d1 + d2 - 3 * (f1 - f2) / (a1 - a2);
    double disc = e1 * e1 - d1 * d2;
    if (!(disc >= 0) || !isfinite(e1))
        return (lo + hi) / 2;
    double e2 = copysign(sqrt(disc), a2 - a1);
    double a = a2 - (a2 - a1) * (d2 + e2 - e1) / (d2 - d1 + 2 * e2);
    if (!isfinite(a))
        return (lo + hi) / 2;
    return fmin(fmax(a, lo), hi);
}

typedef struct trial {
    double a, f, slope;
} trial;

/* The strong-Wolfe line search from x0 along d, with f0 and slope0 = g'd
** there, starting at step t. On success sets *accepted (its gradient in
** L->g, the parameters at x0 + a d) and returns true; false after an error
** of the closure. */
static bool line_search(nn_optim *o, double f0, double slope0, double t, trial *accepted)
{
    nni_lbfgs *L = o->lbfgs;
    const double tol = L->opt.tolerance_change, dmax = max_abs(L->n, L->d);
    trial prev = {0, f0, slope0}, lo, hi, cur = {t, 0, 0};
    memcpy(L->glo, L->g, (size_t)L->n * sizeof(double));   /* the gradient at prev, then lo */
    int evals = 0;
    bool bracketed = false;
    /* Bracketing: grow the step until it passes a minimiser along d. */
    while (evals < MAX_LINE_SEARCH) {
        if (!evaluate(o, cur.a, &cur.f, L->gt))
            return false;
        evals++;
        cur.slope = isfinite(cur.f) ? dot(L->n, L->gt, L->d) : INFINITY;
        if (cur.f > f0 + C1 * cur.a * slope0 || (evals > 1 && cur.f >= prev.f)) {
            lo = prev, hi = cur, bracketed = true;
            break;
        }
        if (fabs(cur.slope) <= -C2 * slope0) {
            memcpy(L->g, L->gt, (size_t)L->n * sizeof(double));
            *accepted = cur;
            return true;
        }
        if (cur.slope >= 0) {
            memcpy(L->glo, L->gt, (size_t)L->n * sizeof(double));
            lo = cur, hi = prev, bracketed = true;
            break;
        }
        double next = cubic_min(prev.a, prev.f, prev.slope, cur.a, cur.f, cur.slope,
                                cur.a + 0.01 * (cur.a - prev.a), 10 * cur.a);
        prev = cur;
        memcpy(L->glo, L->gt, (size_t)L->n * sizeof(double));
        cur = (trial){next, 0, 0};
    }
    if (!bracketed) {
        /* Out of evaluations while still descending: take the last point. */
        lo = prev;
    }
    /* Zoom: shrink [lo, hi] (lo: the best point meeting sufficient
    ** decrease) until a point meets both conditions. */
    while (bracketed && evals < MAX_LINE_SEARCH && fabs(hi.a - lo.a) * dmax >= tol) {
        double left = fmin(lo.a, hi.a), right = fmax(lo.a, hi.a), width = right - left;
        double a = isfinite(hi.f) ? cubic_min(lo.a, lo.f, lo.slope, hi.a, hi.f, hi.slope, left,
                                              right)
                                  : (left + right) / 2;
        /* Too near an end makes no progress: bisect instead. */
        if (fmin(a - left, right - a) < 0.1 * width)
            a = (left + right) / 2;
        cur = (trial){a, 0, 0};
        if (!evaluate(o, a, &cur.f, L->gt))
            return false;
        evals++;
        cur.slope = isfinite(cur.f) ? dot(L->n, L->gt, L->d) : INFINITY;
        if (cur.f > f0 + C1 * a * slope0 || cur.f >= lo.f) {
            hi = cur;
            continue;
        }
        if (fabs(cur.slope) <= -C2 * slope0) {
            memcpy(L->g, L->gt, (size_t)L->n * sizeof(double));
            *accepted = cur;
            return true;
        }
        if (cur.slope * (hi.a - lo.a) >= 0)
            hi = lo;
        lo = cur;
        memcpy(L->glo, L->gt, (size_t)L->n * sizeof(double));
    }
    /* The best point found; the parameters go back to it. */
    memcpy(L->g, L->glo, (size_t)L->n * sizeof(double));
    for (int64_t i = 0; i < L->n; i++)
        L->gt[i] = L->x0[i] + lo.a * L->d[i];
    nni_optim_scatter(o, L->gt);
    *accepted = lo;
    return true;
}

/* ------------------------------------------------------------- iterations */

/* d = -H g by the two-loop recursion over the ring, newest pair first. */
static void direction(nni_lbfgs *L)
{
    int64_t n = L->n;
    int h = L->opt.history_size;
    for (int64_t i = 0; i < n; i++)
        L->d[i] = -L->g[i];
    for (int k = 0; k < L->count; k++) {
        int j = (L->head - 1 - k + h) % h;
        const double *s = L->s + (size_t)j * n, *y = L->y + (size_t)j * n;
        L->alpha[j] = L->rho[j] * dot(n, s, L->d);
        for (int64_t i = 0; i < n; i++)
            L->d[i] -= L->alpha[j] * y[i];
    }
    for (int64_t i = 0; i < n; i++)
        L->d[i] *= L->h_diag;
    for (int k = L->count - 1; k >= 0; k--) {
        int j = (L->head - 1 - k + h) % h;
        const double *s = L->s + (size_t)j * n, *y = L->y + (size_t)j * n;
        double beta = L->rho[j] * dot(n, y, L->d);
        for (int64_t i = 0; i < n; i++)
            L->d[i] += s[i] * (L->alpha[j] - beta);
    }
}

/* Adds the pair s = t_prev d, y = g - g_prev when it keeps H positive
** definite (y's > 1e-10, as PyTorch), dropping the oldest when full. The
** test comes first and a rejected pair is never written: when the ring is
** full, slot 'head' holds the oldest pair, which direction() still uses
** with its rho, so the history must stay as it was (as PyTorch's does). */
static void remember(nni_lbfgs *L)
{
    int64_t n = L->n;
    int h = L->opt.history_size;
    double ys = 0, yy = 0;
    for (int64_t i = 0; i < n; i++) {
        double yi = L->g[i] - L->g_prev[i], si = L->t_prev * L->d[i];
        ys += yi * si;
        yy += yi * yi;
    }
    if (!(ys > 1e-10))
        return;
    double *s = L->s + (size_t)L->head * n, *y = L->y + (size_t)L->head * n;
    for (int64_t i = 0; i < n; i++) {
        y[i] = L->g[i] - L->g_prev[i];
        s[i] = L->t_prev * L->d[i];
    }
    L->rho[L->head] = 1.0 / ys;
    L->h_diag = ys / yy;
    L->head = (L->head + 1) % h;
    if (L->count < h)
        L->count++;
}

double nn_lbfgs_step(nn_optim *o, nn_closure_fn closure, void *ud)
{
    if (!nni_optim_ok(o))
        return NAN;
    if (!o->lbfgs) {
        nni_optim_fail(o, AG_EINVAL, "nn_lbfgs_step: the optimizer is %s, not lbfgs (make it "
                       "with nn_lbfgs_new)", o->kind->name);
        return NAN;
    }
    nni_lbfgs *L = o->lbfgs;
    if (!closure) {
        nni_optim_fail(o, AG_EINVAL, "nn_lbfgs_step: the closure is NULL");
        return NAN;
    }
    if (o->model && o->model->numel != L->n) {
        nni_optim_fail(o, AG_ESTATE, "nn_lbfgs_step: the model has %lld values but this lbfgs "
                       "optimizer was made for %lld", (long long)o->model->numel,
                       (long long)L->n);
        return NAN;
    }
    L->closure = closure;
    L->closure_ud = ud;
    L->converged = false;
    L->evals_this_step = 0;
    L->opt.lr = o->lr;   /* nn_optim_set_lr may have changed it */
    nni_optim_gather(o, false, L->x0);
    double f;
    if (!evaluate(o, 0, &f, L->g))
        return NAN;
    if (!isfinite(f)) {
        nni_optim_fail(o, AG_ENUMERIC, "nn_lbfgs_step: the closure gave a non-finite loss or "
                       "gradient at the starting point (evaluation %lld)",
                       (long long)L->evaluations);
        return NAN;
    }
    const nn_lbfgs_options *opt = &L->opt;
    if (max_abs(L->n, L->g) <= opt->tolerance_grad) {
        L->converged = true;
        return f;
    }
    for (int it = 0; it < opt->max_iter; it++) {
        bool first = !L->started;
        if (first) {
            for (int64_t i = 0; i < L->n; i++)
                L->d[i] = -L->g[i];
        } else {
            remember(L);
            direction(L);
        }
        memcpy(L->g_prev, L->g, (size_t)L->n * sizeof(double));
        double f_prev = f;
        double t = opt->lr;
        if (first) {
            double g1 = 0;
            for (int64_t i = 0; i < L->n; i++)
                g1 += fabs(L->g[i]);
            t = fmin(1.0, 1.0 / g1) * opt->lr;
        }
        double slope0 = dot(L->n, L->g, L->d);
        if (!(slope0 < -opt->tolerance_change)) {
            L->converged = true;   /* no descent left along d */
            break;
        }
        int evals_before = L->evals_this_step;
        trial acc;
        if (!line_search(o, f, slope0, t, &acc))
            return NAN;
        L->started = true;
        L->t_prev = acc.a;
        f = acc.f;
        o->steps++;
        nni_optim_gather(o, false, L->x0);
        if (opt->on_iteration) {
            nn_lbfgs_iteration info = {
                .iteration = o->steps, .step = acc.a, .loss_before = f_prev, .loss = acc.f,
                .slope_before = slope0, .slope = acc.slope,
                .evaluations = L->evals_this_step - evals_before,
                .wolfe = acc.f <= f_prev + C1 * acc.a * slope0 &&
                         fabs(acc.slope) <= -C2 * slope0};
            opt->on_iteration(opt->on_iteration_ud, &info);
        }
        if (L->evals_this_step >= opt->max_eval)
            break;
        if (max_abs(L->n, L->g) <= opt->tolerance_grad ||
            fabs(acc.a) * max_abs(L->n, L->d) <= opt->tolerance_change ||
            fabs(f - f_prev) < opt->tolerance_change) {
            L->converged = true;
            break;
        }
    }
    return f;
}

int nn_lbfgs_converged(const nn_optim *o)
{
    return !nn_optim_is_nil(o) && o->lbfgs && o->lbfgs->converged;
}

int64_t nn_lbfgs_evaluations(const nn_optim *o)
{
    return !nn_optim_is_nil(o) && o->lbfgs ? o->lbfgs->evaluations : 0;
}
