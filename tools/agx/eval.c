/*
** eval.c: records an agx program on a tape. Nodes come operands first, so
** one pass in index order evaluates them without recursion; statements are
** consecutive runs of nodes, named when their run ends.
*/
#include "eval.h"

#include <math.h>
#include <stdlib.h>

typedef ag_tensor *(*unary_op)(ag_tape *, ag_tensor *);
typedef ag_tensor *(*binary_op)(ag_tape *, ag_tensor *, ag_tensor *);

static const unary_op FUNCS[AGX_FUNC_COUNT] = {
    [AGX_EXP] = ag_exp,   [AGX_LOG] = ag_log,         [AGX_SQRT] = ag_sqrt,
    [AGX_ABS] = ag_abs,   [AGX_SIN] = ag_sin,         [AGX_COS] = ag_cos,
    [AGX_TANH] = ag_tanh, [AGX_SIGMOID] = ag_sigmoid, [AGX_RELU] = ag_relu,
    [AGX_SOFTPLUS] = ag_softplus, [AGX_ERF] = ag_erf, [AGX_ATAN] = ag_atan,
    [AGX_LOG1P] = ag_log1p,       [AGX_EXPM1] = ag_expm1,
};
/* Functions of two arguments; the others are in FUNCS. */
static const binary_op FUNCS2[AGX_FUNC_COUNT] = {
    [AGX_ATAN2] = ag_atan2,
};

static binary_op binary_of(agx_kind k)
{
    switch (k) {
    case AGX_ADD: return ag_add;
    case AGX_SUB: return ag_sub;
    case AGX_MUL: return ag_mul;
    case AGX_DIV: return ag_div;
    case AGX_POW: return ag_pow;
    default: return NULL;
    }
}

/* agx_record and agx_record_inputs: variable i is inputs[i] when inputs
** is given, else a new leaf holding values[i]. */
static ag_tensor *record(ag_tape *t, const agx_program *p, const double *values,
                         ag_tensor *const *inputs, int grad, ag_tensor **named)
{
    size_t n_nodes = p->n_nodes > 0 ? (size_t)p->n_nodes : 1;
    size_t n_names = p->n_names > 0 ? (size_t)p->n_names : 1;
    ag_tensor **val = calloc(n_nodes, sizeof *val);
    ag_tensor **name_val = calloc(n_names, sizeof *name_val);
    if (!val || !name_val || p->n_stmts == 0) {
        free(val);
        free(name_val);
        ag_tape_fail(t, val && name_val ? AG_EINVAL : AG_ENOMEM,
                     "agx_record: %s", val && name_val ? "the program is empty" : "out of memory");
        return ag_tape_nil(t);
    }
    for (int i = 0; i < p->n_names; i++) {
        if (p->names[i].bound_by >= 0)
            continue;
        if (inputs) {
            name_val[i] = inputs[i];
            continue;
        }
        name_val[i] = ag_scalar(t, AG_F64, values[i]);
        if (grad)
            ag_requires_grad(name_val[i]);
        ag_set_name(name_val[i], p->names[i].text);
    }
    ag_tensor *out = ag_tape_nil(t);
    for (int s = 0; s < p->n_stmts && ag_tape_status(t) == AG_OK; s++) {
        const agx_stmt *st = &p->stmts[s];
        for (int i = st->first; i <= st->root; i++) {
            const agx_node *n = &p->nodes[i];
            ag_tensor *a = n->a >= 0 ? val[n->a] : NULL, *b = n->b >= 0 ? val[n->b] : NULL;
            switch (n->kind) {
            case AGX_NUM: val[i] = ag_scalar(t, AG_F64, n->num); break;
            case AGX_NAME: val[i] = name_val[n->name]; break;
            case AGX_NEG: val[i] = ag_neg(t, a); break;
            case AGX_CALL: val[i] = b ? FUNCS2[n->func](t, a, b) : FUNCS[n->func](t, a); break;
            default: val[i] = binary_of(n->kind)(t, a, b); break;
            }
        }
        out = val[st->root];
        if (st->name >= 0) {
            name_val[st->name] = out;
            if (ag_name(out)[0] == '\0')
                ag_set_name(out, p->names[st->name].text);
        }
    }
    if (named)
        for (int i = 0; i < p->n_names; i++)
            named[i] = name_val[i];
    free(val);
    free(name_val);
    return ag_tape_status(t) == AG_OK ? out : ag_tape_nil(t);
}

ag_tensor *agx_record(ag_tape *t, const agx_program *p, const double *values, int grad,
                      ag_tensor **named)
{
    return record(t, p, values, NULL, grad, named);
}

ag_tensor *agx_record_inputs(ag_tape *t, const agx_program *p, ag_tensor *const *inputs)
{
    return record(t, p, NULL, inputs, 0, NULL);
}

double agx_value(ag_tape *t, const agx_program *p, const double *values)
{
    ag_tape_reset(t);
    ag_no_grad_begin(t);
    ag_tensor *y = agx_record(t, p, values, 0, NULL);
    ag_no_grad_end(t);
    return ag_tape_status(t) == AG_OK ? ag_item(y) : NAN;
}
