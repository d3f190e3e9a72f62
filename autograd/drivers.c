/*
** drivers.c: derivatives of a whole function, given as a callback that
** builds its output on a tape (ag_fn): ag_vjp, ag_jvp, ag_jacobian,
** ag_hessian and ag_hvp. They only call f and read what the engine gives
** back (ag_gradients for rows, ag_tangent for columns), so they hold no
** differentiation of their own.
**
** Everything happens on the caller's tape, so that f may use whatever the
** caller has there (data, constants) as well as parameters. f never sees
** the caller's x: it gets copies, which the driver can make leaves or give
** tangents without touching x. A driver that needs many passes (a
** Jacobian's rows or columns, a Hessian's columns) makes those copies once
** and changes only the values of one basis tensor between passes: every op
** computes its values at once, and its tangent by the start of the next op,
** so a pass has read all it needs once the last tangents are computed
** (agi_jvp_flush) and its results copied out, before the basis changes.
**
** Results are plain constants assembled element by element: a Jacobian is
** y.shape + x.shape, row-major, so element (r, c) of a flat row r of y and a
** flat column c of x is at r * numel(x) + c.
*/
#include "internal.h"

#include <string.h>

typedef struct drive {
    const char *who;             /* the driver's name, for messages */
    ag_tape *t;
    ag_fn f;
    void *ud;
    int n;
    ag_tensor *const *x;         /* the caller's inputs */
    ag_tensor **base;            /* x's values as constants of t */
    ag_tensor **arg;             /* what f gets on this pass */
    ag_tensor *y;                /* f's first output (its shape is the one expected) */
    bool in_f;                   /* an error now is f's own */
} drive;

/* Sets every output slot to the tape's nil tensor, so that none is left
** unset on an error. */
static void nil_all(ag_tape *t, ag_tensor **out, int count)
{
    for (int i = 0; out && i < count; i++)
        out[i] = agi_nil(t);
}

/* The results into the caller's slots (which may be NULL when there are
** none, or for an optional gradient). */
static void hand_over(ag_tensor **out, ag_tensor *const *results, int count)
{
    for (int i = 0; out && i < count; i++)
        out[i] = results[i];
}

/* Once the tape is in error: a failure inside f, or in the engine's work
** for the driver, keeps its own message after the driver's name. */
static ag_tensor *failed(drive *d)
{
    ag_tape *t = d->t;
    if (t->status != AG_OK && strncmp(t->errmsg, d->who, strlen(d->who)) != 0) {
        char msg[2 * sizeof t->errmsg];
        snprintf(msg, sizeof msg, "%s: %s%s", d->who, d->in_f ? "f failed: " : "", t->errmsg);
        memcpy(t->errmsg, msg, sizeof t->errmsg - 1);
        t->errmsg[sizeof t->errmsg - 1] = '\0';
    }
    return agi_nil(t);
}

/* The checks every driver makes; false after recording an error. */
static bool start(drive *d, ag_tape *t, const char *who, ag_fn f, void *ud, int n,
                  ag_tensor *const *x)
{
    *d = (drive){.who = who, .t = t, .f = f, .ud = ud, .n = n, .x = x};
    if (!t || t->status != AG_OK)
        return false;
    if (!f || n < 0 || (n > 0 && !x)) {
        agi_error(t, AG_EINVAL, "%s: f %s, %d inputs, x %s", who, f ? "set" : "NULL", n,
                  x ? "set" : "NULL");
        return false;
    }
    if (n > 0 && !agi_check_inputs(t, who, n, x, false))
        return false;
    size_t slots = (size_t)(n > 0 ? n : 1);
    d->base = agi_arena_alloc(t, 2 * slots * sizeof *d->base, 16);
    if (!d->base)
        return false;
    d->arg = d->base + slots;
    for (int i = 0; i < n; i++)
        d->arg[i] = d->base[i] = ag_detach(t, x[i]);
    return t->status == AG_OK;
}

/* A direction or seed given by the caller: of 'like''s shape and dtype, a
** tensor of t or a parameter. NULL is checked by the caller. */
static bool fits(drive *d, ag_tensor *v, const ag_tensor *like, const char *what, int i)
{
    if (!agi_check_inputs(d->t, d->who, 1, &v, false))
        return false;
    if (v->dtype != like->dtype || !agi_same_shape(v, like)) {
        char idx[16] = "";
        if (i >= 0)
            snprintf(idx, sizeof idx, "[%d]", i);
        agi_error(d->t, AG_ESHAPE, "%s: %s%s is %s %s but must be %s %s like %s%s", d->who, what,
                  idx, ag_dtype_name((ag_dtype)v->dtype), agi_shp(v, 0),
                  ag_dtype_name((ag_dtype)like->dtype), agi_shp(like, 1),
                  i >= 0 ? "x" : "f's output", idx);
        return false;
    }
    return true;
}

/* Runs f on d->arg; its output, or NULL after an error. Every pass after
** the first must give an output of the first one's shape. */
static ag_tensor *call(drive *d)
{
    ag_tape *t = d->t;
    d->in_f = true;
    ag_tensor *y = d->f(t, d->arg, d->ud);
    /* Tangents are computed when the next op starts; there may be none
    ** before the basis tensor changes. */
    if (t->n_jvp_pending)
        agi_jvp_flush(t);
    if (t->status != AG_OK) {
        failed(d);
        return NULL;
    }
    d->in_f = false;
    if (!y || (y->flags & AGI_NIL)) {
        agi_error(t, AG_EINVAL, "%s: f returned %s without recording an error", d->who,
                  y ? "the nil tensor" : "NULL");
        return NULL;
    }
    if (!(y->flags & AGI_PARAM) && (y->tape != t || y->epoch != t->epoch)) {
        agi_error(t, AG_EINVAL, "%s: f returned a tensor of %s, not of the tape it was given",
                  d->who, y->tape != t ? "another tape" : "an earlier pass (before a reset)");
        return NULL;
    }
    if (!d->y)
        d->y = y;
    else if (!agi_same_shape(y, d->y) || y->dtype != d->y->dtype) {
        agi_error(t, AG_ESHAPE, "%s: f returned %s %s on one call and %s %s on another", d->who,
                  ag_dtype_name((ag_dtype)d->y->dtype), agi_shp(d->y, 0),
                  ag_dtype_name((ag_dtype)y->dtype), agi_shp(y, 1));
        return NULL;
    }
    return y;
}

/* A constant of the given dtype and shape a ++ b, for a Jacobian or a
** Hessian block; nil after an error when the rank passes AG_MAX_DIMS. */
static ag_tensor *block(drive *d, ag_dtype dt, const ag_tensor *a, const ag_tensor *b)
{
    if (a->rank + b->rank > AG_MAX_DIMS)
        return agi_error(d->t, AG_ESHAPE, "%s: the result's shape %s + %s would have rank %d, "
                         "beyond AG_MAX_DIMS (%d)", d->who, agi_shp(a, 0), agi_shp(b, 1),
                         a->rank + b->rank, AG_MAX_DIMS);
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, a->shape, (size_t)a->rank * sizeof *shape);
    memcpy(shape + a->rank, b->shape, (size_t)b->rank * sizeof *shape);
    return ag_empty(d->t, dt, a->rank + b->rank, shape);
}

/* A constant copy of x, or zeros of like's shape and dtype when x is NULL
** (no tangent reached it: a zero derivative). */
static ag_tensor *copy_or_zeros(ag_tape *t, ag_tensor *x, const ag_tensor *like)
{
    if (!x)
        return ag_zeros(t, (ag_dtype)like->dtype, like->rank, like->shape);
    return ag_detach(t, x);
}

/* Leaves that require grad in place of the constants: reverse mode. */
static void make_leaves(drive *d)
{
    for (int i = 0; i < d->n; i++)
        d->arg[i] = ag_requires_grad(d->base[i]);
}

static ag_tensor **take_slots(drive *d, int count)
{
    return agi_arena_alloc(d->t, (size_t)(count > 0 ? count : 1) * sizeof(ag_tensor *), 16);
}

/* ------------------------------------------------------------------ vjp */

ag_tensor *ag_vjp(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x, ag_tensor *u,
                  ag_tensor **out)
{
    drive d;
    if (!out && t && t->status == AG_OK && n > 0) {
        agi_error(t, AG_EINVAL, "ag_vjp: out is NULL");
        return agi_nil(t);
    }
    nil_all(t, out, n);
    if (!start(&d, t, "ag_vjp", f, ud, n, x))
        return agi_nil(t);
    make_leaves(&d);
    ag_tensor *y = call(&d);
    if (!y)
        return agi_nil(t);
    if (u ? !fits(&d, u, y, "u", -1) : y->numel != 1) {
        if (!u)
            agi_error(t, AG_ESHAPE, "ag_vjp: f's output has shape %s, not one element; give u",
                      agi_shp(y, 0));
        return agi_nil(t);
    }
    ag_tensor **g = take_slots(&d, n);
    if (!g)
        return agi_nil(t);
    ag_gradients(t, y, u, n, d.arg, g, 0);
    for (int i = 0; i < n && t->status == AG_OK; i++)
        g[i] = ag_detach(t, g[i]);
    ag_tensor *value = ag_detach(t, y);
    if (t->status != AG_OK)
        return failed(&d);
    hand_over(out, g, n);
    return value;
}

/* ------------------------------------------------------------------ jvp */

ag_tensor *ag_jvp(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x, ag_tensor *const *v,
                  ag_tensor **out)
{
    drive d;
    if (out)
        *out = agi_nil(t);
    if (!start(&d, t, "ag_jvp", f, ud, n, x))
        return agi_nil(t);
    if (!out || (n > 0 && !v))
        return agi_error(t, AG_EINVAL, "ag_jvp: %s is NULL", out ? "v" : "out");
    for (int i = 0; i < n; i++) {
        if (!v[i])
            continue;
        if (!fits(&d, v[i], x[i], "v", i))
            return agi_nil(t);
        d.arg[i] = ag_dual(t, d.base[i], v[i]);
    }
    ag_tensor *y = call(&d);
    if (!y)
        return agi_nil(t);
    ag_tensor *jv = copy_or_zeros(t, ag_tangent(y), y);
    ag_tensor *value = ag_detach(t, y);
    if (t->status != AG_OK)
        return failed(&d);
    *out = jv;
    return value;
}

/* ------------------------------------------------------------- jacobian */

/* Rows: one backward per element of y, seeded with that element's basis
** vector, on the one recording of f. */
static bool jacobian_rows(drive *d, ag_tensor *y, ag_tensor **jac)
{
    ag_tape *t = d->t;
    ag_tensor **g = take_slots(d, d->n);
    ag_tensor *seed = ag_zeros(t, (ag_dtype)y->dtype, y->rank, y->shape);
    if (!g || t->status != AG_OK)
        return false;
    for (int64_t r = 0; r < y->numel; r++) {
        agi_set(seed, r, 1.0);
        ag_gradients(t, y, seed, d->n, d->arg, g, 0);
        agi_set(seed, r, 0.0);
        if (t->status != AG_OK)
            return false;
        for (int i = 0; i < d->n; i++)
            for (int64_t c = 0; c < g[i]->numel; c++)
                agi_set(jac[i], r * g[i]->numel + c, agi_get(g[i], c));
    }
    return true;
}

/* The blocks of a Jacobian, once y's shape is known. */
static bool jacobian_blocks(drive *d, const ag_tensor *y, ag_tensor **jac)
{
    for (int i = 0; i < d->n && d->t->status == AG_OK; i++)
        jac[i] = block(d, (ag_dtype)y->dtype, y, d->x[i]);
    return d->t->status == AG_OK;
}

/* Columns: one pass of f per element of the inputs, the element's basis
** vector as the tangent of its input and none on the others. The blocks
** are made after the first pass when no call came before. */
static bool jacobian_columns(drive *d, ag_tensor **jac)
{
    ag_tape *t = d->t;
    for (int k = 0; k < d->n; k++) {
        ag_tensor *xk = d->base[k];
        ag_tensor *e = ag_zeros(t, (ag_dtype)xk->dtype, xk->rank, xk->shape);
        for (int i = 0; i < d->n; i++)
            d->arg[i] = d->base[i];
        /* A fresh copy: after a reverse-mode first call xk is a leaf. */
        d->arg[k] = ag_dual(t, ag_detach(t, xk), e);
        if (t->status != AG_OK)
            return false;
        for (int64_t c = 0; c < xk->numel; c++) {
            agi_set(e, c, 1.0);
            bool first = !d->y;
            ag_tensor *y = call(d);
            ag_tensor *col = y ? ag_tangent(y) : NULL;
            if (t->status != AG_OK || (first && !jacobian_blocks(d, y, jac)))
                return false;
            /* Read before the basis moves: col may be e itself (f = x). */
            for (int64_t r = 0; r < y->numel; r++)
                agi_set(jac[k], r * xk->numel + c, col ? agi_get(col, r) : 0.0);
            agi_set(e, c, 0.0);
        }
    }
    return true;
}

ag_tensor *ag_jacobian(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x,
                       ag_jacobian_mode mode, ag_tensor **out)
{
    drive d;
    if (!out && t && t->status == AG_OK && n > 0) {
        agi_error(t, AG_EINVAL, "ag_jacobian: out is NULL");
        return agi_nil(t);
    }
    nil_all(t, out, n);
    if (!start(&d, t, "ag_jacobian", f, ud, n, x))
        return agi_nil(t);
    if (mode != AG_JACOBIAN_AUTO && mode != AG_JACOBIAN_REVERSE && mode != AG_JACOBIAN_FORWARD)
        return agi_error(t, AG_EINVAL, "ag_jacobian: mode %d is not AG_JACOBIAN_AUTO, _REVERSE "
                         "or _FORWARD", (int)mode);
    int64_t inputs = 0;
    for (int i = 0; i < n; i++)
        inputs += x[i]->numel;
    ag_tensor **jac = take_slots(&d, n);
    if (!jac)
        return agi_nil(t);
    /* Forward mode asked for learns y's shape from its first column; the
    ** others call f first for it (the choice needs it), and in reverse mode
    ** that call is the one recording every row reads. */
    if (mode != AG_JACOBIAN_FORWARD || inputs == 0) {
        if (mode != AG_JACOBIAN_FORWARD)
            make_leaves(&d);
        ag_tensor *y = call(&d);
        if (!y || !jacobian_blocks(&d, y, jac))
            return failed(&d);
        if (mode == AG_JACOBIAN_AUTO)
            mode = y->numel <= inputs ? AG_JACOBIAN_REVERSE : AG_JACOBIAN_FORWARD;
    }
    bool ok = mode == AG_JACOBIAN_REVERSE ? jacobian_rows(&d, d.y, jac) : jacobian_columns(&d, jac);
    if (!ok || t->status != AG_OK)
        return failed(&d);
    ag_tensor *value = ag_detach(t, d.y);
    if (t->status != AG_OK)
        return failed(&d);
    hand_over(out, jac, n);
    return value;
}

/* -------------------------------------------------------------- hessian */

/* Forward over reverse: f's gradient with respect to arg[], recorded with
** ops while tangents are live, so that each gradient's tangent is the
** Hessian (times the direction the duals carry). Checks that f's output is
** a scalar. */
static bool gradient_pass(drive *d, ag_tensor **g)
{
    ag_tape *t = d->t;
    ag_tensor *y = call(d);
    if (!y)
        return false;
    if (y->numel != 1) {
        agi_error(t, AG_ESHAPE, "%s: f's output has shape %s; a Hessian needs one element",
                  d->who, agi_shp(y, 0));
        return false;
    }
    ag_gradients(t, y, NULL, d->n, d->arg, g, 0);
    /* The last ops' tangents may still wait (forward_mode.c): they must be
    ** computed now, before the caller changes the basis tensor. */
    if (t->n_jvp_pending)
        agi_jvp_flush(t);
    return t->status == AG_OK;
}

ag_tensor *ag_hessian(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x,
                      ag_tensor **grad, ag_tensor **hess)
{
    drive d;
    if (!hess && t && t->status == AG_OK && n > 0) {
        agi_error(t, AG_EINVAL, "ag_hessian: hess is NULL");
        return agi_nil(t);
    }
    nil_all(t, grad, n);
    nil_all(t, hess, n * n);
    if (!start(&d, t, "ag_hessian", f, ud, n, x))
        return agi_nil(t);
    make_leaves(&d);
    ag_tensor **g = take_slots(&d, n), **gk = take_slots(&d, n);
    ag_tensor **h = take_slots(&d, n * n);
    for (int i = 0; h && i < n; i++)
        for (int k = 0; k < n && t->status == AG_OK; k++)
            h[i * n + k] = block(&d, (ag_dtype)x[i]->dtype, x[i], x[k]);
    if (!g || !gk || !h || t->status != AG_OK)
        return failed(&d);
    /* One pass per input element, each giving a column of every block
    ** beside it; the first also gives the value and the gradient (which
    ** tangents do not change). Without elements, one plain pass gives them. */
    bool first = true;
    for (int k = 0; k < n; k++) {
        ag_tensor *xk = d.base[k];
        ag_tensor *e = ag_zeros(t, (ag_dtype)xk->dtype, xk->rank, xk->shape);
        /* A copy of xk that is not recorded, so that it can be a leaf. */
        ag_tensor *dual = ag_requires_grad(ag_dual(t, ag_detach(t, xk), e));
        if (t->status != AG_OK)
            return failed(&d);
        d.arg[k] = dual;
        for (int64_t c = 0; c < xk->numel; c++) {
            agi_set(e, c, 1.0);
            if (!gradient_pass(&d, gk))
                return failed(&d);
            for (int i = 0; i < n; i++) {
                ag_tensor *col = ag_tangent(gk[i]);
                for (int64_t r = 0; r < gk[i]->numel; r++)
                    agi_set(h[i * n + k], r * xk->numel + c, col ? agi_get(col, r) : 0.0);
                if (first)
                    g[i] = ag_detach(t, gk[i]);
            }
            agi_set(e, c, 0.0);
            first = false;
        }
        d.arg[k] = d.base[k];
    }
    if (first && !gradient_pass(&d, g))
        return failed(&d);
    ag_tensor *value = ag_detach(t, d.y);
    for (int i = 0; first && i < n; i++)
        g[i] = ag_detach(t, g[i]);
    if (t->status != AG_OK)
        return failed(&d);
    hand_over(grad, g, n);
    hand_over(hess, h, n * n);
    return value;
}

ag_tensor *ag_hvp(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x, ag_tensor *const *v,
                  ag_tensor **grad, ag_tensor **hv)
{
    drive d;
    if (!hv && t && t->status == AG_OK && n > 0) {
        agi_error(t, AG_EINVAL, "ag_hvp: hv is NULL");
        return agi_nil(t);
    }
    nil_all(t, grad, n);
    nil_all(t, hv, n);
    if (!start(&d, t, "ag_hvp", f, ud, n, x))
        return agi_nil(t);
    if (n > 0 && !v)
        return agi_error(t, AG_EINVAL, "ag_hvp: v is NULL");
    for (int i = 0; i < n; i++) {
        if (v[i] && !fits(&d, v[i], x[i], "v", i))
            return agi_nil(t);
        d.arg[i] = ag_requires_grad(v[i] ? ag_dual(t, d.base[i], v[i]) : d.base[i]);
    }
    ag_tensor **g = take_slots(&d, n);
    if (!g || !gradient_pass(&d, g))
        return failed(&d);
    ag_tensor **h = take_slots(&d, n);
    for (int i = 0; h && i < n; i++)
        h[i] = copy_or_zeros(t, ag_tangent(g[i]), g[i]);
    for (int i = 0; i < n; i++)
        g[i] = ag_detach(t, g[i]);
    ag_tensor *value = ag_detach(t, d.y);
    if (!h || t->status != AG_OK)
        return failed(&d);
    hand_over(grad, g, n);
    hand_over(hv, h, n);
    return value;
}
