/*
** forward_mode.c: tangents. ag_dual gives a tensor a tangent; every op
** whose inputs carry tangents then computes its result's tangent with its
** op's JVP rule, so that ag_tangent reads J v of anything downstream.
**
** The rule cannot run inside agi_new, since an op fills its result after
** making it; the result waits on the tape's short pending list until the
** next op checks its inputs (or ag_tangent, or ag_tape_status, asks). JVP
** rules are written with the library's ops: their results are ordinary
** tensors (recorded when they depend on something that requires grad, so
** a JVP can be differentiated in reverse), but carry no tangents of their
** own (in_jvp), since nothing here asks for second-order tangents. The
** ops a backward runs do carry them, which is forward-over-reverse.
*/
#include "internal.h"

#include <string.h>

ag_tensor *agi_jvp_sum(ag_tape *t, ag_tensor *acc, ag_tensor *term)
{
    if (!acc)
        return term;
    if (!term)
        return acc;
    return ag_add(t, acc, term);
}

ag_tensor *agi_jvp_diagonal(ag_tape *t, ag_tensor *out, ag_tensor *const *tangents)
{
    ag_tensor *gin[1] = {NULL};
    out->op->vjp(t, out, tangents[0], gin);
    return gin[0];
}

void agi_jvp_note(ag_tape *t, ag_tensor *x)
{
    /* An op that makes several results before filling them would push out
    ** one not yet filled; four is more than any op of ours makes. */
    if (t->n_jvp_pending == (int)ARRAY_LEN(t->jvp_pending))
        agi_jvp_flush(t);
    t->jvp_pending[t->n_jvp_pending++] = x;
}

/* Is r a tangent for x: the same dtype, on x's tape, of x's shape or one
** that broadcasts to it (a rule may leave a broadcast to the engine)? */
static ag_tensor *fit_tangent(ag_tape *t, ag_tensor *x, ag_tensor *r)
{
    const char *name = x->op->name;
    if ((r->flags & AGI_NIL) || (!(r->flags & AGI_PARAM) && (r->tape != t || r->epoch != t->epoch)))
        return agi_error(t, AG_ESTATE, "%s: its JVP rule returned %s", name,
                         (r->flags & AGI_NIL) ? "the nil tensor" : "a tensor of another tape or pass");
    if (r->dtype != x->dtype)
        return agi_error(t, AG_EDTYPE, "%s: its JVP rule returned a %s tangent for a %s result",
                         name, ag_dtype_name((ag_dtype)r->dtype), ag_dtype_name((ag_dtype)x->dtype));
    if (agi_same_shape(r, x))
        return r;
    int rank;
    int64_t shape[AG_MAX_DIMS];
    if (!agi_broadcast_shape(r->rank, r->shape, x->rank, x->shape, &rank, shape) ||
        rank != x->rank || memcmp(shape, x->shape, (size_t)rank * sizeof *shape) != 0)
        return agi_error(t, AG_ESHAPE, "%s: its JVP rule returned shape %s for a result of shape %s",
                         name, agi_shp(r, 0), agi_shp(x, 1));
    return ag_broadcast_to(t, r, x->rank, x->shape);
}

static void compute_tangent(ag_tape *t, ag_tensor *x)
{
    const ag_op *op = x->op;
    if (!op->jvp) {
        agi_error(t, AG_EUNSUPPORTED, "%s: the op has no JVP rule, so forward mode (a tangent "
                  "from ag_dual) cannot pass through it", op->name);
        return;
    }
    ag_tensor *small[8], **tan = small;
    if (x->nin > (int)ARRAY_LEN(small)) {
        tan = agi_arena_alloc(t, (size_t)x->nin * sizeof *tan, 16);
        if (!tan)
            return;
    }
    for (int i = 0; i < x->nin; i++)
        tan[i] = agi_tangent(x->in[i]);
    ag_tensor *r = op->jvp(t, x, tan);
    if (t->status != AG_OK || !r)
        return;
    r = fit_tangent(t, x, r);
    if (t->status == AG_OK)
        agi_set_tangent(x, r);
}

void agi_jvp_flush(ag_tape *t)
{
    ag_tensor *list[ARRAY_LEN(t->jvp_pending)];
    int n = t->n_jvp_pending;
    memcpy(list, t->jvp_pending, (size_t)n * sizeof *list);
    t->n_jvp_pending = 0;
    t->in_jvp++;
    for (int i = 0; i < n && t->status == AG_OK; i++)
        compute_tangent(t, list[i]);
    t->in_jvp--;
}

ag_tensor *ag_dual(ag_tape *t, ag_tensor *x, ag_tensor *tangent)
{
    ag_tensor *in[2] = {x, tangent};
    if (!agi_check_inputs(t, "ag_dual", 2, in, true))
        return agi_nil(t);
    if (!agi_same_shape(x, tangent))
        return agi_error(t, AG_ESHAPE, "ag_dual: the tangent's shape %s differs from x's %s",
                         agi_shp(tangent, 0), agi_shp(x, 1));
    /* The identity, so that gradients reach x; its own tangent is the one
    ** given, whatever x carried. Live first: the copy needs a slot. */
    t->tangents_live = true;
    t->in_jvp++;
    ag_tensor *y = ag_reshape(t, x, x->rank, x->shape);
    t->in_jvp--;
    if (t->status != AG_OK)
        return agi_nil(t);
    if (y == x || !(y->flags & AGI_TANGENT_SLOT))
        return agi_error(t, AG_ESTATE, "ag_dual: internal: the copy of x has no tangent slot");
    agi_set_tangent(y, tangent);
    return y;
}

ag_tensor *ag_tangent(const ag_tensor *y)
{
    if (!agi_usable(y, "ag_tangent"))
        return NULL;
    ag_tape *t = y->tape;
    if (t && t->n_jvp_pending)
        agi_jvp_flush(t);
    return agi_tangent(y);
}
