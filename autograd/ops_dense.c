/*
** ops_dense.c: a dense layer as one op, act(x @ w + b). Recorded as matmul,
** add and an activation, a layer makes three results and, on the way back,
** two elementwise passes before the two products. Fused, the bias and the
** activation are one pass over the product (on the pool's threads when it is
** large), and backward turns the incoming gradient into the pre-activation
** gradient in one pass too. Values and gradients are the composed ops' bits
** (kernels/activation.h rounds as they do), which the tests check.
*/
#include "internal.h"
#include "kernels/activation.h"
#include "kernels/kernels.h"

/* Below this many elements per thread, waking a thread costs more than the
** pass it would share. */
enum { MIN_ELEMS_PER_THREAD = 1 << 15 };

/* One pass over a [rows, cols] matrix, cut by rows among threads: each
** element is computed alone, so the cut changes no bits. */
typedef struct rows_job {
    ag_dtype dt;
    ag_activation act;
    int64_t rows, cols;
    void *y;           /* forward: the product, turned into the output in place */
    const void *b;     /* forward: the bias, or NULL */
    const void *g;     /* backward: the output's gradient */
    void (*pass)(const struct rows_job *j, int64_t r0, int64_t r1);
} rows_job;

static void run_range(void *ctx, int64_t r0, int64_t r1)
{
    const rows_job *j = ctx;
    j->pass(j, r0, r1);
}

static void run_rows(ag_pool *pool, rows_job *j)
{
    int64_t grain = (MIN_ELEMS_PER_THREAD + j->cols - 1) / (j->cols > 0 ? j->cols : 1);
    ag_pool_for(pool, j->rows, grain, run_range, j);
}

/* y = act(y + b) over rows [r0, r1). The add rounds to the dtype first, as
** the add op does; act is a constant at each call, so each case compiles to
** its own loop. An activation that calls exp runs flat over the rows once
** the bias is in: per row, a layer's few columns would leave most of them
** to the vector loop's scalar tail. */
AGK_INLINE void bias_act_rows(const rows_job *j, ag_activation act, int64_t r0, int64_t r1)
{
    int64_t cols = j->cols;
    bool flat = act == AG_ACT_SIGMOID || act == AG_ACT_TANH;
    if (j->dt == AG_F32) {
        const float *b = j->b;
        for (int64_t r = r0; r < r1 && (b || !flat); r++) {
            float *y = (float *)j->y + r * cols;
            for (int64_t c = 0; c < cols; c++) {
                float z = b ? y[c] + b[c] : y[c];
                y[c] = flat ? z : act == AG_ACT_RELU ? agk_relu_f(z) : (float)agk_act(act, z);
            }
        }
        float *y = j->y;
        for (int64_t i = r0 * cols; flat && i < r1 * cols; i++)
            y[i] = (float)agk_act(act, y[i]);
    } else {
        const double *b = j->b;
        for (int64_t r = r0; r < r1 && (b || !flat); r++) {
            double *y = (double *)j->y + r * cols;
            for (int64_t c = 0; c < cols; c++) {
                double z = b ? y[c] + b[c] : y[c];
                y[c] = flat ? z : agk_act(act, z);
            }
        }
        double *y = j->y;
        for (int64_t i = r0 * cols; flat && i < r1 * cols; i++)
            y[i] = agk_act(act, y[i]);
    }
}

/* Cloned for AVX-512 and AVX2: the sigmoid's exp vectorises (kernels/activation.h). */
AGK_SIMD_CLONES static void forward_pass(const rows_job *j, int64_t r0, int64_t r1)
{
    switch (j->act) {
    case AG_ACT_RELU: bias_act_rows(j, AG_ACT_RELU, r0, r1); break;
    case AG_ACT_SIGMOID: bias_act_rows(j, AG_ACT_SIGMOID, r0, r1); break;
    case AG_ACT_TANH: bias_act_rows(j, AG_ACT_TANH, r0, r1); break;
    default: bias_act_rows(j, AG_ACT_IDENTITY, r0, r1); break;
    }
}

/* The backward pass: dz = g * act'(z), from the output y (in rows.y). */
typedef struct grad_job {
    rows_job rows;
    void *dz;
} grad_job;

AGK_INLINE void act_grad_rows(const grad_job *gj, ag_activation act, int64_t r0, int64_t r1)
{
    const rows_job *j = &gj->rows;
    int64_t i0 = r0 * j->cols, i1 = r1 * j->cols;
    /* dz is a fresh buffer: it overlaps neither y nor g. The relu case is a
    ** multiply by the 0/1 mask (NaN where y is), not a branch on it (a
    ** mispredicted branch per element made this pass as slow as a product). */
    if (j->dt == AG_F32) {
        const float *restrict y = j->y, *restrict g = j->g;
        float *restrict dz = gj->dz;
        for (int64_t i = i0; i < i1; i++)
            dz[i] = act == AG_ACT_RELU ? g[i] * agk_step_f(y[i])
                                       : (float)agk_act_grad(act, g[i], y[i], true);
    } else {
        const double *restrict y = j->y, *restrict g = j->g;
        double *restrict dz = gj->dz;
        for (int64_t i = i0; i < i1; i++)
            dz[i] = agk_act_grad(act, g[i], y[i], false);
    }
}

static void backward_pass(const rows_job *j, int64_t r0, int64_t r1)
{
    const grad_job *gj = (const grad_job *)j;
    switch (j->act) {
    case AG_ACT_RELU: act_grad_rows(gj, AG_ACT_RELU, r0, r1); break;
    case AG_ACT_SIGMOID: act_grad_rows(gj, AG_ACT_SIGMOID, r0, r1); break;
    default: act_grad_rows(gj, AG_ACT_TANH, r0, r1); break;
    }
}

/* g * act'(z) as recorded ops, for create_graph: the same bits, and
** differentiable again (y is the op's output, itself differentiable). */
static ag_tensor *act_grad_ops(ag_tape *t, ag_activation act, ag_tensor *y, ag_tensor *g)
{
    switch (act) {
    case AG_ACT_RELU:
        return ag_mul(t, g, agi_step(t, y, 0.0));
    case AG_ACT_SIGMOID:
        return ag_mul(t, g, ag_mul(t, y, ag_sub(t, agi_const_like(t, y, 1.0), y)));
    case AG_ACT_TANH:
        return ag_mul(t, g, ag_sub(t, agi_const_like(t, y, 1.0), ag_mul(t, y, y)));
    default:
        return g;
    }
}

/* Rows of x: the product of every dim but the last. */
static int64_t rows_of(const ag_tensor *x)
{
    int64_t rows = 1;
    for (int d = 0; d + 1 < x->rank; d++)
        rows *= x->shape[d];
    return rows;
}

/* x^T dz added straight into the weight's ag_grad, where the engine would
** only add it there at the end of the pass (agi_param_grad_target):
** agk_gemm_add gives the same bits, for any number of rows, without
** writing the product out and reading it back. Returns whether it did. */
static bool add_weight_grad(ag_tape *t, ag_tensor *w, const ag_tensor *x, const ag_tensor *dz,
                            int64_t rows)
{
    ag_dtype dt = (ag_dtype)w->dtype;
    int64_t n_in = w->shape[0], n_out = w->shape[1];
    void *grad = agi_param_grad_target(t, w);
    if (!grad)
        return false;
    void *scratch = NULL;
    size_t need = agk_gemm_scratch(dt, n_in, n_out, rows, true, false, t->pool);
    if (need && !(scratch = agi_arena_alloc(t, need, 64)))
        return true;   /* the tape has failed: nothing more to do */
    agk_gemm_add(dt, n_in, n_out, rows, x->value, n_in, true, dz->value, n_out, false, grad, n_out,
                 scratch, t->pool);
    return true;
}

/* The gradients of x, w and b from dz, the pre-activation gradient. 'raw'
** (the engine chose the raw path) lets the weight's gradient go straight
** into its ag_grad when that is all the engine would do with it. */
static void dense_grads(ag_tape *t, ag_tensor *out, ag_tensor *dz, ag_tensor **gin, bool raw)
{
    ag_tensor *x = out->in[0], *w = out->in[1];
    int64_t rows = rows_of(x), n_in = w->shape[0], n_out = w->shape[1];
    /* A reshape copies: only for inputs with leading dims to flatten. */
    ag_tensor *dz2 = dz->rank == 2 ? dz : ag_reshape(t, dz, 2, (int64_t[]){rows, n_out});
    if (agi_needs_grad(out, 0)) {
        ag_tensor *gx = agi_matmul_t(t, dz2, w, 0, 1);
        gin[0] = x->rank == 2 ? gx : ag_reshape(t, gx, x->rank, x->shape);
    }
    if (agi_needs_grad(out, 1) && x->rank > 2) {
        /* matmul's order: one product per matrix of the batch, then their
        ** sum. One product over the flattened rows sums in another order,
        ** and its bits differ from the composed ops' (x [2,2,1] holding 1
        ** and three 2^-53 gave 1 where matmul gives 1 + 2^-52). */
        gin[1] = ag_sum_to(t, agi_matmul_t(t, x, dz, 1, 0), 2, w->shape);
    } else if (agi_needs_grad(out, 1) && !(raw && add_weight_grad(t, w, x, dz, rows))) {
        ag_tensor *x2 = x->rank == 2 ? x : ag_reshape(t, x, 2, (int64_t[]){rows, n_in});
        gin[1] = agi_matmul_t(t, x2, dz2, 1, 0);
    }
    if (out->nin == 3 && agi_needs_grad(out, 2))
        gin[2] = ag_sum_to(t, dz2, 1, &n_out);
}

/* The raw path: the activation's derivative in one pass over the rows,
** then the products (which record nothing here). */
static int raw_dense(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_activation act = (ag_activation)out->attr.dense.act;
    ag_tensor *dz = g;
    if (act != AG_ACT_IDENTITY) {
        dz = agi_new(t, NULL, 0, NULL, (ag_dtype)out->dtype, out->rank, out->shape);
        if (dz->flags & AGI_NIL)
            return 1;
        grad_job j = {.rows = {.dt = (ag_dtype)out->dtype, .act = act, .rows = rows_of(out->in[0]),
                               .cols = out->in[1]->shape[1], .y = out->value, .g = g->value,
                               .pass = backward_pass},
                      .dz = dz->value};
        run_rows(t->pool, &j.rows);
    }
    dense_grads(t, out, dz, gin, true);
    return 1;
}

static void vjp_dense(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_activation act = (ag_activation)out->attr.dense.act;
    ag_tensor *dz = act == AG_ACT_IDENTITY ? g : act_grad_ops(t, act, out, g);
    dense_grads(t, out, dz, gin, false);
}
/* dz = dx W + x dW + db, then through the activation as g is. */
static ag_tensor *jvp_dense(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *x = out->in[0], *w = out->in[1];
    ag_tensor *dz = tan[0] ? ag_matmul(t, tan[0], w) : NULL;
    if (tan[1])
        dz = agi_jvp_sum(t, dz, ag_matmul(t, x, tan[1]));
    if (out->nin == 3 && tan[2])
        dz = agi_jvp_sum(t, dz, tan[2]);
    return act_grad_ops(t, (ag_activation)out->attr.dense.act, out, dz);
}
static const ag_op op_dense = {
    .name = "dense", .vjp = vjp_dense, .raw_vjp = raw_dense, .jvp = jvp_dense};

ag_tensor *ag_dense(ag_tape *t, ag_tensor *x, ag_tensor *w, ag_tensor *b, ag_activation act)
{
    ag_tensor *in[3] = {x, w, b};
    int nin = b ? 3 : 2;
    if (!agi_check_inputs(t, "ag_dense", nin, in, true))
        return agi_nil(t);
    if (act < AG_ACT_IDENTITY || act > AG_ACT_TANH)
        return agi_error(t, AG_EINVAL, "ag_dense: activation %d is not an ag_activation",
                         (int)act);
    if (w->rank != 2)
        return agi_error(t, AG_ESHAPE, "ag_dense: weight %s must be [in, out]", agi_shp(w, 0));
    if (x->rank < 1 || x->shape[x->rank - 1] != w->shape[0])
        return agi_error(t, AG_ESHAPE, "ag_dense: input %s does not end in %lld, the weight "
                         "%s's first dim", agi_shp(x, 0), (long long)w->shape[0], agi_shp(w, 1));
    if (b && (b->rank != 1 || b->shape[0] != w->shape[1]))
        return agi_error(t, AG_ESHAPE, "ag_dense: bias %s must be [%lld] for weight %s",
                         agi_shp(b, 0), (long long)w->shape[1], agi_shp(w, 1));
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d + 1 < x->rank; d++)
        shape[d] = x->shape[d];
    shape[x->rank - 1] = w->shape[1];
    ag_dtype dt = (ag_dtype)x->dtype;
    ag_tensor *out = agi_new(t, &op_dense, nin, in, dt, x->rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.dense.act = (int)act;
    int64_t rows = rows_of(x), n_in = w->shape[0], n_out = w->shape[1];
    void *scratch = NULL;
    size_t need = agk_gemm_scratch(dt, rows, n_out, n_in, false, false, t->pool);
    if (need && !(scratch = agi_arena_alloc(t, need, 64)))
        return agi_nil(t);
    agk_gemm(dt, rows, n_out, n_in, x->value, n_in, false, w->value, n_out, false, out->value,
             n_out, scratch, t->pool);
    if (b || act != AG_ACT_IDENTITY) {
        rows_job j = {.dt = dt, .act = act, .rows = rows, .cols = n_out, .y = out->value,
                      .b = b ? b->value : NULL, .pass = forward_pass};
        run_rows(t->pool, &j);
    }
    return out;
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_dense[] = {
    &op_dense, NULL
};
