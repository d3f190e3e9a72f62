/*
** custom_op.c: user-defined ops. A user's op is an ag_op like the
** library's own, with a forward on raw values; ag_custom makes the result,
** runs the forward and records it, and backward treats the entry as any
** other (agi_pull_back), and forward mode runs its jvp (forward_mode.c)
** once the forward has returned. Here too are the accessors its callbacks use,
** since users cannot see struct ag_tensor.
*/
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* Is x the result of a user-defined op (its attr holds the custom fields)? */
static bool is_custom(const ag_tensor *x)
{
    return x && !(x->flags & AGI_NIL) && x->op && x->op->forward;
}

/* The checks of a descriptor, before anything is made. */
static bool op_ok(ag_tape *t, const ag_op *op)
{
    if (!op) {
        agi_error(t, AG_EINVAL, "ag_custom: op is NULL");
        return false;
    }
    if (!op->name || !op->name[0]) {
        agi_error(t, AG_EINVAL, "ag_custom: the op has no name (.name is %s)",
                  op->name ? "empty" : "NULL");
        return false;
    }
    if (!op->forward) {
        agi_error(t, AG_EINVAL, "ag_custom: op '%s' has no forward", op->name);
        return false;
    }
    if (!op->vjp && !op->raw_vjp) {
        /* Recording nothing would make its gradient silently zero. */
        agi_error(t, AG_EINVAL, "ag_custom: op '%s' has neither vjp nor raw_vjp", op->name);
        return false;
    }
    return true;
}

ag_tensor *ag_custom(ag_tape *t, const ag_op *op, void *ctx, int nin, ag_tensor *const *in,
                     ag_dtype dt, int rank, const int64_t *shape)
{
    if (!t || t->status != AG_OK || !op_ok(t, op))
        return agi_nil(t);
    if (nin < 0 || nin > UINT8_MAX || (nin > 0 && !in))
        return agi_error(t, AG_EINVAL, "ag_custom: op '%s' given %d inputs at %p", op->name, nin,
                         (const void *)in);
    char who[96];
    snprintf(who, sizeof who, "ag_custom (op '%s')", op->name);
    if (!agi_check_inputs(t, who, nin, in, false) || !agi_check_make(t, who, dt, rank, shape))
        return agi_nil(t);
    ag_tensor *out = agi_new(t, op, nin, in, dt, rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.custom.ctx = ctx;
    /* A forward that leaves some element unwritten gives 0 there, never
    ** whatever the arena held. */
    memset(out->value, 0, (size_t)out->numel * ag_dtype_size(dt));
    /* out's tangent waits until the forward is done: a forward that saves
    ** a tensor (ag_op_save checks its input, which runs pending rules)
    ** before writing out would otherwise have the JVP rule read zeros.
    ** ag_custom's own check ran every earlier rule, so out is the last. */
    bool tangent_due = t->n_jvp_pending && t->jvp_pending[t->n_jvp_pending - 1] == out;
    if (tangent_due)
        t->n_jvp_pending--;
    /* Anomaly mode's check of out waits the same way, or it would pass the
    ** zeros and miss what the forward writes. */
    agi_anomaly *a = &t->anomaly;
    bool check_due = a->pending == out;
    agi_site site = a->pending_site;
    size_t entry = a->pending_entry;
    if (check_due)
        a->pending = NULL;
    int rc = op->forward(out, ctx);
    if (t->status != AG_OK)
        return agi_nil(t);
    if (rc != 0)
        return agi_error(t, AG_EINVAL, "%s: forward failed (returned %d)", op->name, rc);
    if (check_due) {
        if (a->pending)   /* an op the forward itself recorded */
            agi_anomaly_flush(t);
        if (t->status != AG_OK)
            return agi_nil(t);
        a->pending = out;
        a->pending_site = site;
        a->pending_entry = entry;
    }
    if (tangent_due)
        agi_jvp_note(t, out);
    return out;
}

void *ag_op_ctx(const ag_tensor *out) { return is_custom(out) ? out->attr.custom.ctx : NULL; }

int ag_op_needs_grad(const ag_tensor *out, int i)
{
    return out && !(out->flags & AGI_NIL) && i >= 0 && i < out->nin && agi_needs_grad(out, i);
}

ag_status ag_op_save(ag_tensor *out, ag_tensor *x)
{
    if (!is_custom(out) || !out->tape)
        return AG_EINVAL;   /* no tape to record on */
    ag_tape *t = out->tape;
    char who[96];
    snprintf(who, sizeof who, "ag_op_save (op '%s')", out->op->name);
    if (!agi_check_inputs(t, who, 1, &x, false))
        return t->status;
    if (out->attr.custom.nsaved == out->attr.custom.cap) {
        /* Doubling in the arena: the old array is left there until reset. */
        int cap = out->attr.custom.cap ? 2 * out->attr.custom.cap : 4;
        ag_tensor **saved = agi_arena_alloc(t, (size_t)cap * sizeof *saved, 16);
        if (!saved)
            return t->status;
        if (out->attr.custom.nsaved)
            memcpy(saved, out->attr.custom.saved,
                   (size_t)out->attr.custom.nsaved * sizeof *saved);
        out->attr.custom.saved = saved;
        out->attr.custom.cap = cap;
    }
    out->attr.custom.saved[out->attr.custom.nsaved++] = x;
    return AG_OK;
}

int ag_op_num_saved(const ag_tensor *out) { return is_custom(out) ? out->attr.custom.nsaved : 0; }

ag_tensor *ag_op_saved(const ag_tensor *out, int i)
{
    return is_custom(out) && i >= 0 && i < out->attr.custom.nsaved ? out->attr.custom.saved[i]
                                                                    : NULL;
}

void ag_op_fail(ag_tensor *out, ag_status code, const char *fmt, ...)
{
    if (!out || (out->flags & AGI_NIL) || !out->tape || !out->op)
        return;
    char msg[224];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt ? fmt : "failed", ap);
    va_end(ap);
    agi_error(out->tape, code == AG_OK ? AG_EINVAL : code, "%s: %s", out->op->name, msg);
}
