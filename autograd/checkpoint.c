/*
** checkpoint.c: gradient checkpointing (ag_checkpoint). A segment runs on a
** private scratch tape, which is reset as soon as its result is copied out:
** the caller's tape keeps one entry, the segment's result, whose VJP runs the
** segment again on the scratch tape from its saved inputs and backpropagates
** through that copy. Memory for a long chain of segments is the caller's
** entries plus one segment's worth, at the price of a second forward.
*/
#include "internal.h"

#include <string.h>

/* What a checkpoint entry needs to run its segment again: kept in the
** caller's arena, pointed to by the entry's attr.ext. */
typedef struct ckpt {
    ag_segment_fn f;
    void *ud;
    bool leaves;   /* as checkpoint_apply's */
} ckpt;

/* The segment that computes a checkpoint's VJP, for create-graph mode (see
** vjp_differentiable): its inputs are the checkpoint's nin inputs and then
** g; it returns the gradients of the inputs flagged in 'need', flattened and
** concatenated. */
typedef struct vjp_segment {
    ckpt inner;
    int nin;
    const uint8_t *need;   /* nin flags, in the caller's arena */
    const ag_tensor *out;  /* the checkpoint's result, which f must give again */
} vjp_segment;

/* The segment that computes a checkpoint's JVP (forward mode): its inputs
** are the checkpoint's nin inputs and then their nin tangents; it returns
** the tangent of f's result. */
typedef struct jvp_segment {
    ckpt inner;
    int nin;
    const ag_tensor *out;  /* the checkpoint's result, which f must give again */
} jvp_segment;

static void vjp_checkpoint(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin);
static ag_tensor *jvp_checkpoint(ag_tape *t, ag_tensor *out, ag_tensor *const *tan);
static const ag_op op_checkpoint = {
    .name = "checkpoint", .vjp = vjp_checkpoint, .jvp = jvp_checkpoint};

/* The scratch tape of t, made on first use with t's allocator hook and kept
** (its chunks reused) until t is freed; NULL after recording why. Each use
** starts and ends with a reset, so between uses it holds nothing, and it
** takes t's pool and debugging modes. */
static ag_tape *scratch_take(ag_tape *t, const char *who)
{
    if (t->scratch_busy) {
        agi_error(t, AG_ESTATE, "%s: the tape's checkpoint scratch is in use (a segment "
                  "called ag_checkpoint on the caller's tape, not on the one it was given)", who);
        return NULL;
    }
    if (!t->scratch) {
        t->scratch = ag_tape_new_alloc(t->alloc, t->alloc_ud);
        if (!t->scratch) {
            agi_error(t, AG_ENOMEM, "%s: out of memory making the scratch tape", who);
            return NULL;
        }
    }
    ag_tape *s = t->scratch;
    ag_tape_reset(s);
    s->pool = t->pool;
    s->trap = t->trap;
    ag_tape_set_anomaly(s, t->anomaly.on);
    t->scratch_busy = true;
    return s;
}

static void scratch_give_back(ag_tape *t)
{
    ag_tape_reset(t->scratch);
    t->scratch_busy = false;
}

/* Passes the scratch tape's error on to t, naming 'who'; true if there was one. */
static bool scratch_failed(ag_tape *t, ag_tape *s, const char *who)
{
    if (s->status == AG_OK)
        return false;
    agi_error(t, s->status, "%s: the segment failed: %s", who, s->errmsg);
    return true;
}

/* A copy of x's values on s: a leaf that requires grad when 'grad'. */
static ag_tensor *copy_to(ag_tape *s, ag_tensor *x, bool grad)
{
    ag_tensor *c = ag_tensor_from(s, (ag_dtype)x->dtype, x->rank, x->shape, x->value);
    return grad ? ag_requires_grad(c) : c;
}

/* Is y, f run again, the checkpoint's result 'out' bit for bit? Records
** AG_ESTATE on y's tape, naming 'who', when not: the derivatives taken from y
** would belong to another function than the one whose values the forward
** pass used (a segment that draws from a generator, such as dropout, gives
** another mask each run). Every path that runs f again checks this. */
static bool same_as_recorded(ag_tape *s, const char *who, const ag_tensor *y,
                             const ag_tensor *out)
{
    size_t bytes = (size_t)out->numel * ag_dtype_size((ag_dtype)out->dtype);
    if (y->dtype == out->dtype && agi_same_shape(y, out) &&
        memcmp(y->value, out->value, bytes) == 0)
        return true;
    agi_error(s, AG_ESTATE, "%s: the segment gave other values (or a %s %s result for %s %s) "
              "when run again: it must be a pure function of its inputs", who,
              ag_dtype_name((ag_dtype)y->dtype), agi_shp(y, 0),
              ag_dtype_name((ag_dtype)out->dtype), agi_shp(out, 1));
    return false;
}

/* Runs f on s over copies of in[0..nin) (leaves that require grad where
** grad[i], constants elsewhere; grad NULL: none) and checks what it gives:
** a tensor of s. NULL after recording the error on t. */
static ag_tensor *run_segment(ag_tape *t, ag_tape *s, const char *who, const ckpt *c, int nin,
                              ag_tensor *const *in, const uint8_t *grad, ag_tensor ***copies)
{
    ag_tensor **cin = agi_arena_alloc(s, (size_t)(nin ? nin : 1) * sizeof *cin, 16);
    if (!cin) {
        scratch_failed(t, s, who);
        return NULL;
    }
    for (int i = 0; i < nin; i++)
        cin[i] = copy_to(s, in[i], grad && grad[i]);
    if (scratch_failed(t, s, who))
        return NULL;
    ag_tensor *y = c->f(s, cin, c->ud);
    if (s->anomaly.pending)
        agi_anomaly_flush(s);
    if (scratch_failed(t, s, who))
        return NULL;
    if (!y || (y->flags & AGI_NIL)) {
        agi_error(t, AG_EINVAL, "%s: the segment returned %s without recording an error", who,
                  y ? "the nil tensor" : "NULL");
        return NULL;
    }
    if ((y->flags & AGI_PARAM) || y->tape != s || y->epoch != s->epoch) {
        agi_error(t, AG_EINVAL, "%s: the segment returned a %s, not a tensor of the tape it was "
                  "given", who, (y->flags & AGI_PARAM) ? "parameter" : "tensor of another tape");
        return NULL;
    }
    if (copies)
        *copies = cin;
    return y;
}

/* The checkpoint of f over in[0..nin) on t: the segment's result, copied
** onto t as the entry of a checkpoint op (recorded when an input requires
** grad). 'leaves' makes the copies of inputs that require grad leaves that
** require grad on the scratch tape, for a segment that differentiates its
** inputs itself (vjp_segment); otherwise they are constants, so that a
** result that still requires grad betrays a captured parameter. */
static ag_tensor *checkpoint_apply(ag_tape *t, const char *who, ag_segment_fn f, void *ud,
                                   int nin, ag_tensor *const *in, bool leaves)
{
    ckpt *c = agi_arena_alloc(t, sizeof *c, 16);
    if (!c)
        return agi_nil(t);
    c->f = f;
    c->ud = ud;
    c->leaves = leaves;
    bool record = agi_recording(t);
    uint8_t grad[UINT8_MAX];
    for (int i = 0; i < nin; i++)
        grad[i] = leaves && (in[i]->flags & AGI_REQUIRES_GRAD);
    ag_tape *s = scratch_take(t, who);
    if (!s)
        return agi_nil(t);
    ag_tensor *out = agi_nil(t);
    ag_tensor *y = run_segment(t, s, who, c, nin, in, grad, NULL);
    if (y && !leaves && record && (y->flags & AGI_REQUIRES_GRAD)) {
        /* Its gradient would be lost: the recomputation differentiates
        ** the inputs alone. */
        agi_error(t, AG_EINVAL, "%s: the segment's result depends on a tensor that requires grad "
                  "but is not one of its inputs (a parameter it reaches through its user "
                  "data?); pass every such tensor as an input", who);
        y = NULL;
    }
    if (y) {
        out = agi_new(t, &op_checkpoint, nin, in, (ag_dtype)y->dtype, y->rank, y->shape);
        if (!(out->flags & AGI_NIL)) {
            memcpy(out->value, y->value, (size_t)y->numel * ag_dtype_size((ag_dtype)y->dtype));
            out->attr.ext = c;
        }
    }
    scratch_give_back(t);
    return out;
}

ag_tensor *ag_checkpoint(ag_tape *t, ag_segment_fn f, void *ud, int nin, ag_tensor *const *in)
{
    if (!t || t->status != AG_OK)
        return agi_nil(t);
    if (!f)
        return agi_error(t, AG_EINVAL, "ag_checkpoint: the segment function is NULL");
    /* One input fewer than an entry holds: the VJP's own segment takes g too. */
    if (nin < 1 || nin > UINT8_MAX - 1 || !in)
        return agi_error(t, AG_EINVAL, "ag_checkpoint: %d inputs at %p (1 to %d inputs)", nin,
                         (const void *)in, UINT8_MAX - 1);
    if (!agi_check_inputs(t, "ag_checkpoint", nin, in, true))
        return agi_nil(t);
    return checkpoint_apply(t, "ag_checkpoint", f, ud, nin, in, false);
}

/* The segment of a checkpoint's VJP (struct vjp_segment): f again, then its
** gradients seeded by the last input, recorded (create_graph) so that they
** differentiate in turn. */
static ag_tensor *vjp_segment_fn(ag_tape *s, ag_tensor *const *in, void *ud)
{
    const vjp_segment *v = ud;
    ag_tensor *y = v->inner.f(s, in, v->inner.ud);
    if (y && y->tape == s && s->status == AG_OK && !(y->flags & AGI_NIL) &&
        !same_as_recorded(s, "ag_checkpoint", y, v->out))
        return agi_nil(s);
    ag_tensor *xs[UINT8_MAX], *gs[UINT8_MAX];
    int n = 0;
    for (int i = 0; i < v->nin; i++)
        if (v->need[i])
            xs[n++] = in[i];
    ag_gradients(s, y, in[v->nin], n, xs, gs, 1);
    for (int k = 0; k < n; k++)
        gs[k] = ag_reshape(s, gs[k], 1, (int64_t[]){ag_numel(gs[k])});
    return n == 1 ? gs[0] : ag_concat(s, n, gs, 0);
}

/* Create-graph mode: the VJP is itself a checkpointed segment of t, so that
** it stays differentiable (its own VJP recomputes it) and keeps no more of
** the segment on t than the first order does. */
static void vjp_differentiable(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    const ckpt *c = out->attr.ext;
    int nin = out->nin;
    vjp_segment *v = agi_arena_alloc(t, sizeof *v, 16);
    uint8_t *need = agi_arena_alloc(t, (size_t)nin, 1);
    if (!v || !need)
        return;
    for (int i = 0; i < nin; i++)
        need[i] = agi_needs_grad(out, i);
    *v = (vjp_segment){*c, nin, need, out};
    ag_tensor *ins[UINT8_MAX + 1];
    memcpy(ins, out->in, (size_t)nin * sizeof *ins);
    ins[nin] = g;
    ag_tensor *flat = checkpoint_apply(t, "ag_checkpoint (create_graph backward)", vjp_segment_fn,
                                       v, nin + 1, ins, true);
    int64_t at = 0;
    for (int i = 0; i < nin && t->status == AG_OK; i++) {
        if (!need[i])
            continue;
        ag_tensor *x = out->in[i];
        gin[i] = ag_reshape(t, ag_slice(t, flat, 0, at, at + x->numel, 1), x->rank, x->shape);
        at += x->numel;
    }
}

/* Forward mode: the segment again with its inputs given their tangents,
** itself checkpointed, so that the tangent keeps no more of the segment on
** t than the value does and differentiates in reverse in turn. */
static ag_tensor *jvp_segment_fn(ag_tape *s, ag_tensor *const *in, void *ud)
{
    const jvp_segment *v = ud;
    ag_tensor *duals[UINT8_MAX];
    for (int i = 0; i < v->nin; i++)
        duals[i] = ag_dual(s, in[i], in[v->nin + i]);
    ag_tensor *y = v->inner.f(s, duals, v->inner.ud);
    if (y && y->tape == s && s->status == AG_OK && !(y->flags & AGI_NIL) &&
        !same_as_recorded(s, "ag_checkpoint", y, v->out))
        return agi_nil(s);
    ag_tensor *dy = ag_tangent(y);
    return dy ? dy : ag_mul_scalar(s, y, 0.0);
}

static ag_tensor *jvp_checkpoint(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const ckpt *c = out->attr.ext;
    int nin = out->nin;
    if (2 * nin > UINT8_MAX - 1)
        return agi_error(t, AG_EUNSUPPORTED, "ag_checkpoint (forward mode): %d inputs with their "
                         "tangents are more than %d", nin, UINT8_MAX - 1);
    jvp_segment *v = agi_arena_alloc(t, sizeof *v, 16);
    if (!v)
        return agi_nil(t);
    *v = (jvp_segment){*c, nin, out};
    ag_tensor *ins[UINT8_MAX];
    for (int i = 0; i < nin; i++) {
        ins[i] = out->in[i];
        ins[nin + i] = tan[i] ? tan[i] : agi_const_like(t, out->in[i], 0.0);
        if (!tan[i] && out->in[i]->rank > 0)
            ins[nin + i] = ag_broadcast_to(t, ins[nin + i], out->in[i]->rank, out->in[i]->shape);
    }
    return checkpoint_apply(t, "ag_checkpoint (forward mode)", jvp_segment_fn, v, 2 * nin, ins,
                            c->leaves);
}

/* First order: run the segment again on the scratch tape from the saved
** inputs, backpropagate g through it, and copy the inputs' gradients to t. */
static void vjp_checkpoint(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    /* With tangents live, the gradients must be ops that carry them
    ** (forward over reverse): the differentiable path. */
    if (t->create_graph || t->tangents_live) {
        vjp_differentiable(t, out, g, gin);
        return;
    }
    static const char who[] = "ag_checkpoint (backward)";
    const ckpt *c = out->attr.ext;
    int nin = out->nin;
    uint8_t need[UINT8_MAX];
    for (int i = 0; i < nin; i++)
        need[i] = agi_needs_grad(out, i);
    ag_tape *s = scratch_take(t, who);
    if (!s)
        return;
    ag_tensor **cin;
    ag_tensor *y = run_segment(t, s, who, c, nin, out->in, need, &cin);
    if (y && !same_as_recorded(t, who, y, out))
        y = NULL;
    if (y) {
        ag_tensor *xs[UINT8_MAX], *gs[UINT8_MAX];
        int n = 0;
        for (int i = 0; i < nin; i++)
            if (need[i])
                xs[n++] = cin[i];
        ag_gradients(s, y, copy_to(s, g, false), n, xs, gs, 0);
        if (!scratch_failed(t, s, who)) {
            for (int i = 0, k = 0; i < nin; i++)
                if (need[i])
                    gin[i] = copy_to(t, gs[k++], false);
        }
    }
    scratch_give_back(t);
}
