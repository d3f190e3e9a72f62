/*
** plan_emit.c: the instructions of each op a plan runs (plan_internal.h),
** chosen by the op's name, with the shapes, strides, index maps, constants
** and recorded comparisons each needs. An op not listed here makes
** ag_plan_new fail with AG_EUNSUPPORTED naming it.
*/
#include "plan_internal.h"

#include <math.h>
#include <string.h>

enum { AXIS_ALL = -1000 };   /* ops_reduce.c's mark for a reduction over every element */

/* The opcode an op's name maps to, for the ops whose plan instruction is
** chosen by name alone. */
static const struct named { const char *name; agp_code code, scalar; int nin; } named_ops[] = {
    {"neg", AGP_NEG, AGP_S_NEG, 1}, {"exp", AGP_EXP, AGP_S_EXP, 1},
    {"log", AGP_LOG, AGP_S_LOG, 1}, {"sqrt", AGP_SQRT, AGP_S_SQRT, 1},
    {"abs", AGP_ABS, AGP_S_ABS, 1}, {"sign", AGP_SIGN, AGP_CODE_COUNT, 1},
    {"sin", AGP_SIN, AGP_S_SIN, 1}, {"cos", AGP_COS, AGP_S_COS, 1},
    {"tanh", AGP_TANH, AGP_S_TANH, 1}, {"sigmoid", AGP_SIGMOID, AGP_S_SIGMOID, 1},
    {"relu", AGP_RELU, AGP_S_RELU, 1}, {"leaky_relu", AGP_LEAKY_RELU, AGP_CODE_COUNT, 1},
    {"gelu", AGP_GELU, AGP_CODE_COUNT, 1}, {"softplus", AGP_SOFTPLUS, AGP_CODE_COUNT, 1},
    {"clamp", AGP_CLAMP, AGP_CODE_COUNT, 1}, {"pow_scalar", AGP_POW_SCALAR, AGP_S_POWS, 1},
    {"erf", AGP_ERF, AGP_CODE_COUNT, 1}, {"atan", AGP_ATAN, AGP_CODE_COUNT, 1},
    {"log1p", AGP_LOG1P, AGP_CODE_COUNT, 1}, {"expm1", AGP_EXPM1, AGP_CODE_COUNT, 1},
    {"reshape", AGP_COPY, AGP_CODE_COUNT, 1}, {"cast", AGP_COPY, AGP_CODE_COUNT, 1},
    {"step", AGP_STEP, AGP_CODE_COUNT, 1}, {"inside", AGP_INSIDE, AGP_CODE_COUNT, 1},
    {"add", AGP_ADD, AGP_S_ADD, 2}, {"sub", AGP_SUB, AGP_S_SUB, 2},
    {"mul", AGP_MUL, AGP_S_MUL, 2}, {"div", AGP_DIV, AGP_S_DIV, 2},
    {"pow", AGP_POW, AGP_CODE_COUNT, 2}, {"maximum", AGP_MAXIMUM, AGP_CODE_COUNT, 2},
    {"minimum", AGP_MINIMUM, AGP_CODE_COUNT, 2}, {"atan2", AGP_ATAN2, AGP_CODE_COUNT, 2},
    {"gt", AGP_GT, AGP_CODE_COUNT, 2}, {"ge", AGP_GE, AGP_CODE_COUNT, 2},
    {"lt", AGP_LT, AGP_CODE_COUNT, 2}, {"le", AGP_LE, AGP_CODE_COUNT, 2},
    {"eq", AGP_EQ, AGP_CODE_COUNT, 2}, {"where", AGP_WHERE, AGP_CODE_COUNT, 3},
    {"sum", AGP_SUM, AGP_CODE_COUNT, 1}, {"max", AGP_MAX, AGP_CODE_COUNT, 1},
    {"min", AGP_MIN, AGP_CODE_COUNT, 1}, {"logsumexp", AGP_LOGSUMEXP, AGP_CODE_COUNT, 1},
    {"matmul", AGP_MATMUL, AGP_CODE_COUNT, 2},
    {"softmax", AGP_SOFTMAX, AGP_CODE_COUNT, 1}, {"log_softmax", AGP_LOG_SOFTMAX, AGP_CODE_COUNT, 1},
    /* index maps (gather_map below) */
    {"permute", AGP_GATHER, AGP_CODE_COUNT, 1}, {"slice", AGP_GATHER, AGP_CODE_COUNT, 1},
    {"broadcast_to", AGP_GATHER, AGP_CODE_COUNT, 1}, {"index", AGP_GATHER, AGP_CODE_COUNT, 1},
    {"index_select", AGP_GATHER, AGP_CODE_COUNT, 1}, {"gather", AGP_GATHER, AGP_CODE_COUNT, 1},
    {"tril", AGP_GATHER, AGP_CODE_COUNT, 1}, {"triu", AGP_GATHER, AGP_CODE_COUNT, 1},
    {"diagonal", AGP_GATHER, AGP_CODE_COUNT, 1}, {"diag_embed", AGP_GATHER, AGP_CODE_COUNT, 1},
    {"pad", AGP_GATHER, AGP_CODE_COUNT, 1},
    {"concat", AGP_PLACE, AGP_CODE_COUNT, -1}, {"stack", AGP_PLACE, AGP_CODE_COUNT, -1},
    {"sum_to", AGP_SCATTER, AGP_CODE_COUNT, 1}, {"slice_grad", AGP_SCATTER, AGP_CODE_COUNT, 1},
    {"index_grad", AGP_SCATTER, AGP_CODE_COUNT, 1},
    {"index_add", AGP_SCATTER_ADD, AGP_CODE_COUNT, 2},
    {"scatter_add", AGP_SCATTER_ADD, AGP_CODE_COUNT, 2},
    {"cumsum", AGP_CUMSUM, AGP_CODE_COUNT, 1},
    {"cumsum_reverse", AGP_CUMSUM_REVERSE, AGP_CODE_COUNT, 1},
    {"var", AGP_VAR, AGP_CODE_COUNT, 1}, {"std", AGP_STD, AGP_CODE_COUNT, 1},
    {"cross_entropy", AGP_CROSS_ENTROPY, AGP_CODE_COUNT, 1},
    {"dense", AGP_MATMUL, AGP_CODE_COUNT, -2},
};

/* The ops of the library a plan runs, as the messages list them. */
static const char supported_list[] =
    "neg exp log sqrt abs sign sin cos tanh sigmoid relu leaky_relu gelu softplus clamp "
    "pow_scalar erf atan log1p expm1 add sub mul div pow maximum minimum atan2 gt ge lt le eq "
    "where sum max min logsumexp var std cumsum matmul dense softmax log_softmax cross_entropy "
    "reshape cast permute slice broadcast_to sum_to index index_select gather index_add "
    "scatter_add tril triu diagonal diag_embed pad concat stack, and those built from them "
    "(mean, square, transpose, flatten, layer_norm, the losses...), with the gradients "
    "recorded by create_graph through them but maximum's and minimum's";

/* Library ops are told apart from user-defined ones (ag_custom) by their
** lack of a forward callback, which ag_custom requires: a custom op may
** well be called "add". */
static const struct named *find_named(const ag_op *op)
{
    if (!op || op->forward || !op->name)
        return NULL;
    for (size_t i = 0; i < ARRAY_LEN(named_ops); i++)
        if (!strcmp(named_ops[i].name, op->name))
            return &named_ops[i];
    return NULL;
}

/* Strides of x broadcast to 'rank' dims of 'shape', appended to aux. */
static bool aux_strides(builder *b, const ag_tensor *x, int rank, const int64_t *shape, int64_t at)
{
    int64_t s[AG_MAX_DIMS];
    agi_broadcast_strides(x, rank, shape, s);
    if (rank > 0)   /* a rank-0 op takes no aux, which may still be NULL */
        memcpy(b->p->aux + at, s, (size_t)rank * sizeof *s);
    return true;
}

/* ------------------------------------------------------------- index maps */

/* out's elements as positions in its input, found by applying the same op
** with the same settings to a tensor holding 1, 2, 3...: map[i] = value - 1
** (-1 where the op wrote a zero of its own). So the plan copies exactly what
** the op copies, without a second implementation of each op's indexing. */
static ag_tensor *same_op_on(ag_tape *s, const ag_tensor *out, ag_tensor *v)
{
    const char *name = out->op->name;
    const agi_attr *a = &out->attr;
    if (!strcmp(name, "permute")) {
        int perm[AG_MAX_DIMS];
        for (int i = 0; i < out->rank; i++)
            perm[i] = a->perm[i];
        return ag_permute(s, v, perm);
    }
    if (!strcmp(name, "slice")) {
        int ax = a->slice.axis;
        int64_t len = out->shape[ax];
        int64_t stop = len ? a->slice.start + (len - 1) * a->slice.step + 1 : a->slice.start;
        return ag_slice(s, v, ax, a->slice.start, stop, a->slice.step);
    }
    if (!strcmp(name, "broadcast_to"))
        return ag_broadcast_to(s, v, out->rank, out->shape);
    if (!strcmp(name, "index_select"))
        return ag_index_select(s, v, a->index.axis, out->shape[a->index.axis], a->index.idx);
    if (!strcmp(name, "gather"))
        return ag_gather(s, v, a->index.axis, out->rank, out->shape, a->index.idx);
    if (!strcmp(name, "tril"))
        return ag_tril(s, v, a->index.k);
    if (!strcmp(name, "triu"))
        return ag_triu(s, v, a->index.k);
    if (!strcmp(name, "diagonal"))   /* diag_embed: diag_embed_map */
        return ag_diag(s, v, a->index.k);
    if (!strcmp(name, "pad"))
        return ag_pad(s, v, a->index.idx, 0.0);
    return NULL;
}

static ag_tensor *counting(ag_tape *s, const ag_tensor *like)
{
    ag_tensor *v = ag_empty(s, AG_F64, like->rank, like->shape);
    double *d = ag_data(v);
    for (int64_t i = 0; d && i < like->numel; i++)
        d[i] = (double)(i + 1);
    return v;
}

static bool scratch_ready(builder *b)
{
    if (!b->scratch && !(b->scratch = ag_tape_new_alloc(b->t->alloc, b->t->alloc_ud))) {
        agi_error(b->t, AG_ENOMEM, "ag_plan_new: out of memory");
        return false;
    }
    ag_tape_reset(b->scratch);
    return true;
}

static bool scratch_failed(builder *b, const ag_tensor *x, const ag_tensor *r)
{
    if (r && !ag_is_nil(r) && ag_numel(r) == x->numel)
        return false;
    agi_error(b->t, ag_tape_status(b->scratch) == AG_ENOMEM ? AG_ENOMEM : AG_EUNSUPPORTED,
              "ag_plan_new: could not map op '%s' (%s)", x->op->name,
              ag_tape_errmsg(b->scratch));
    return true;
}

/* diag_embed puts its vector on diagonal k of a [rows, cols] matrix of
** zeros. ag_diag, the one public way to make it, makes the matrix square, but
** diagonal's vjp (recorded with create_graph) makes it of the matrix it
** took the diagonal of, which may be oblong: mapped through ag_diag, a
** [2,3] failed as unsupported and a [2,8] (k = 2, as many elements as
** ag_diag's [4,4]) read the wrong places. So the map is drawn here from
** the result's own shape. */
static bool diag_embed_map(builder *b, const ag_tensor *x, int64_t *map)
{
    int64_t k = x->attr.index.k, len = x->in[0]->numel;
    int64_t rows = x->rank == 2 ? x->shape[0] : 0, cols = x->rank == 2 ? x->shape[1] : 0;
    int64_t row0 = k < 0 ? -k : 0, col0 = k > 0 ? k : 0;
    if (x->rank != 2 || len > rows - row0 || len > cols - col0) {
        agi_error(b->t, AG_EUNSUPPORTED, "ag_plan_new: could not map op 'diag_embed' (%lld "
                  "elements on diagonal %lld of %s)", (long long)len, (long long)k,
                  agi_shp(x, 0));
        return false;
    }
    for (int64_t i = 0; i < x->numel; i++)
        map[i] = -1;
    for (int64_t i = 0; i < len; i++)
        map[(row0 + i) * cols + col0 + i] = i;
    return true;
}

static bool gather_map(builder *b, agp_ext *e, const ag_tensor *x)
{
    int64_t at = agp_aux_take(b, (size_t)x->numel);
    if (at < 0)
        return false;
    e->aux = at;
    int64_t *map = b->p->aux + at;
    if (!strcmp(x->op->name, "index")) {
        for (int64_t i = 0; i < x->numel; i++)
            map[i] = x->attr.index.k + i;
        return true;
    }
    if (!strcmp(x->op->name, "diag_embed"))
        return diag_embed_map(b, x, map);
    if (!scratch_ready(b))
        return false;
    ag_tensor *r = same_op_on(b->scratch, x, counting(b->scratch, x->in[0]));
    if (scratch_failed(b, x, r))
        return false;
    for (int64_t i = 0; i < x->numel; i++) {
        map[i] = (int64_t)ag_get(r, i) - 1;
        /* a pad's value is not kept apart from its result: read it there */
        if (map[i] < 0 && !strcmp(x->op->name, "pad"))
            e->s[0] = ag_get(x, i);
    }
    return true;
}

/* sum_to, slice_grad, index_grad: where each input element adds into out. */
static bool scatter_map(builder *b, agp_ext *e, const ag_tensor *x)
{
    const ag_tensor *in = x->in[0];
    int64_t at = agp_aux_take(b, (size_t)in->numel);
    if (at < 0)
        return false;
    e->aux = at;
    int64_t *map = b->p->aux + at;
    const char *name = x->op->name;
    if (!strcmp(name, "index_grad")) {
        for (int64_t i = 0; i < in->numel; i++)
            map[i] = x->attr.index.k + i;
        return true;
    }
    if (!strcmp(name, "sum_to")) {
        /* out's strides over in's shape (0 on the summed dims) */
        int64_t st[AG_MAX_DIMS], idx[AG_MAX_DIMS] = {0}, o = 0;
        agi_broadcast_strides(x, in->rank, in->shape, st);
        for (int64_t i = 0; i < in->numel; i++) {
            map[i] = o;
            for (int d = in->rank - 1; d >= 0; d--) {
                o += st[d];
                if (++idx[d] < in->shape[d])
                    break;
                o -= st[d] * in->shape[d];
                idx[d] = 0;
            }
        }
        return true;
    }
    /* slice_grad: the slice of out's positions that in fills */
    if (!scratch_ready(b))
        return false;
    int ax = x->attr.slice.axis;
    int64_t len = in->shape[ax], step = x->attr.slice.step, start = x->attr.slice.start;
    ag_tensor *r = ag_slice(b->scratch, counting(b->scratch, x), ax, start,
                            len ? start + (len - 1) * step + 1 : start, step);
    if (r && !ag_is_nil(r) && ag_numel(r) == in->numel) {
        for (int64_t i = 0; i < in->numel; i++)
            map[i] = (int64_t)ag_get(r, i) - 1;
        return true;
    }
    return !scratch_failed(b, x, NULL);
}

/* index_add and scatter_add: a copy of the base, then src added at the
** positions the same op's indices pick in it. */
static bool emit_scatter_add(builder *b, const node *nd)
{
    ag_tensor *x = nd->x, *src = x->in[1];
    if (!agp_emit_ext(b, nd, AGP_COPY) || !scratch_ready(b))
        return false;
    ag_plan *p = b->p;
    p->ext[p->next - 1].nin = 1;
    ag_tensor *v = counting(b->scratch, x);
    int ax = x->attr.index.axis;
    ag_tensor *r = !strcmp(x->op->name, "index_add")
                       ? ag_index_select(b->scratch, v, ax, src->shape[ax], x->attr.index.idx)
                       : ag_gather(b->scratch, v, ax, src->rank, src->shape, x->attr.index.idx);
    if (!r || ag_is_nil(r) || ag_numel(r) != src->numel)
        return !scratch_failed(b, x, NULL);
    agp_ext *e = agp_emit_ext(b, nd, AGP_SCATTER_ADD);
    int64_t at = e ? agp_aux_take(b, (size_t)src->numel) : -1;
    if (at < 0)
        return false;
    e = &p->ext[p->next - 1];
    e->aux = at;
    e->nin = 1;
    e->in[0] = b->nodes[agp_lookup(b, src)].off;
    e->in_n[0] = src->numel;
    for (int64_t i = 0; i < src->numel; i++)
        p->aux[at + i] = (int64_t)ag_get(r, i) - 1;
    return true;
}

/* Value slots of the plan's own, for a fused op's intermediates. */
static int64_t extra_region(builder *b, int64_t n)
{
    int64_t off = (int64_t)b->p->nval;
    b->p->nval += (size_t)n;
    return off;
}

/* dense: act(x @ w + b) as the three instructions it fuses, through slots
** of the plan's own. */
static bool emit_dense(builder *b, const node *nd)
{
    ag_tensor *x = nd->x, *in = x->in[0], *w = x->in[1], *bias = x->nin > 2 ? x->in[2] : NULL;
    ag_plan *p = b->p;
    int64_t k = w->shape[0], n = w->shape[1], m = k ? in->numel / k : 0;
    int act = x->attr.dense.act;
    int64_t mm = act == AG_ACT_IDENTITY && !bias ? nd->off : extra_region(b, m * n);
    agp_ext *e = agp_emit_ext(b, nd, AGP_MATMUL);
    int64_t at = e ? agp_aux_take(b, 10) : -1;
    if (at < 0)
        return false;
    e = &p->ext[p->next - 1];
    e->aux = at;
    e->out = mm;
    e->n = m * n;
    e->nin = 2;
    int64_t *q = p->aux + at;
    q[0] = m, q[1] = n, q[2] = k, q[3] = 0, q[4] = 0, q[5] = k, q[6] = n, q[7] = 1, q[8] = 0;
    q[9] = 0;
    int64_t last = mm;
    if (bias) {
        int64_t sum = act == AG_ACT_IDENTITY ? nd->off : extra_region(b, m * n);
        if (!(e = agp_emit_ext(b, nd, AGP_ADD)) || (at = agp_aux_take(b, 6)) < 0)
            return false;
        e = &p->ext[p->next - 1];
        e->aux = at;
        e->out = sum;
        e->n = m * n;
        e->nin = 2;
        e->rank = 2;
        e->in[0] = mm;
        e->in_n[0] = m * n;
        e->in[1] = b->nodes[agp_lookup(b, bias)].off;
        e->in_n[1] = n;
        q = p->aux + at;
        q[0] = m, q[1] = n, q[2] = n, q[3] = 1, q[4] = 0, q[5] = 1;
        last = sum;
    }
    if (act == AG_ACT_IDENTITY)
        return true;
    agp_code code = act == AG_ACT_RELU ? AGP_RELU : act == AG_ACT_SIGMOID ? AGP_SIGMOID : AGP_TANH;
    if (!(e = agp_emit_ext(b, nd, code)))
        return false;
    e->nin = 1;
    e->in[0] = last;
    e->in_n[0] = m * n;
    if (code == AGP_RELU) {
        int64_t c = agp_branch_take(b, (size_t)(m * n));
        if (c < 0)
            return false;
        e = &p->ext[p->next - 1];
        e->chk = c;
        /* the recorded pre-activation is not kept: the result's sign tells it */
        for (int64_t i = 0; i < m * n; i++)
            p->branch[c + i] = agp_relu_code(ag_get(x, i));
    }
    return true;
}

/* concat and stack: one instruction per input, each placing its elements
** where the op put them (found as gather_map finds them). */
static bool place_maps(builder *b, const node *nd)
{
    ag_tensor *x = nd->x;
    for (int j = 0; j < x->nin; j++) {
        if (!scratch_ready(b))
            return false;
        ag_tensor *parts[256];
        for (int i = 0; i < x->nin; i++)
            parts[i] = i == j ? counting(b->scratch, x->in[i])
                              : ag_zeros(b->scratch, AG_F64, x->in[i]->rank, x->in[i]->shape);
        ag_tensor *r = !strcmp(x->op->name, "concat")
                           ? ag_concat(b->scratch, x->nin, parts, x->attr.red.axis)
                           : ag_stack(b->scratch, x->nin, parts, x->attr.index.axis);
        if (scratch_failed(b, x, r))
            return false;
        agp_ext *e = agp_emit_ext(b, nd, AGP_PLACE);
        int64_t at = e ? agp_aux_take(b, (size_t)x->in[j]->numel) : -1;
        if (at < 0)
            return false;
        e = &b->p->ext[b->p->next - 1];
        e->aux = at;
        e->nin = 1;
        e->in[0] = b->nodes[agp_lookup(b, x->in[j])].off;
        e->in_n[0] = x->in[j]->numel;
        int64_t *map = b->p->aux + at;
        for (int64_t i = 0; i < x->numel; i++) {
            double v = ag_get(r, i);
            if (v > 0)
                map[(int64_t)v - 1] = i;
        }
    }
    return true;
}

/* ------------------------------------------------------------ per op */

static bool scalar_ok(const builder *b, const ag_tensor *x)
{
    if (x->dtype != AG_F64 || x->numel != 1)
        return false;
    for (int i = 0; i < x->nin; i++) {
        const ag_tensor *in = x->in[i];
        if (in->dtype != AG_F64 || in->numel != 1)
            return false;
    }
    return b->p->nval + 1 < UINT32_MAX;
}

static bool emit_scalar(builder *b, const node *nd, agp_code code)
{
    ag_tensor *x = nd->x;
    agp_instr in = {.code = (uint8_t)code, .out = (uint32_t)nd->off,
                    .grad = (x->flags & AGI_RECORDED) ? AGP_GRAD_OUT : 0};
    in.a = (uint32_t)b->nodes[agp_lookup(b, x->in[0])].off;
    if (x->nin > 1)
        in.b = (uint32_t)b->nodes[agp_lookup(b, x->in[1])].off;
    if (code == AGP_S_POWS) {
        int64_t off = agp_extra_const(b, x->attr.s[0]);
        if (off < 0)
            return false;
        in.b = (uint32_t)off;
    } else if (code == AGP_S_RELU || code == AGP_S_ABS) {
        /* aux[b]: the recorded side, and above it the entry + 1 for messages */
        int64_t at = agp_aux_take(b, 1);
        if (at < 0 || at >= UINT32_MAX)
            return false;
        in.b = (uint32_t)at;
        double v = ag_get(x->in[0], 0);
        int64_t side = code == AGP_S_RELU ? agp_relu_code(v) : agp_sign_code(v);
        b->p->aux[at] = side | ((int64_t)nd->entry + 1) << 8;
    }
    return agp_emit(b, in);
}

bool agp_emit_op(builder *b, const node *nd)
{
    ag_tensor *x = nd->x;
    const struct named *nm = find_named(x->op);
    if (!nm) {
        agi_error(b->t, AG_EUNSUPPORTED,
                  "ag_plan_new: op '%s' (%s %s, tape entry %d) is not supported by plans; "
                  "they run %s", x->op && x->op->name ? x->op->name : "?",
                  x->op && x->op->forward ? "a user-defined op" : "result",
                  agi_shp(x, 0), (int)nd->entry, supported_list);
        return false;
    }
    if (nm->code == AGP_PLACE)
        return place_maps(b, nd);
    if (nm->code == AGP_SCATTER_ADD)
        return emit_scatter_add(b, nd);
    if (nm->nin == -2)
        return emit_dense(b, nd);
    if (nm->scalar != AGP_CODE_COUNT && scalar_ok(b, x) &&
        !(nm->scalar == AGP_S_POWS && x->attr.s[0] != 2.0 && (x->attr.s[0] == 0.0 || x->attr.s[0] == 1.0)))
        return emit_scalar(b, nd, nm->scalar == AGP_S_POWS && x->attr.s[0] == 2.0 ? AGP_S_SQUARE
                                                                                 : nm->scalar);
    agp_ext *e = agp_emit_ext(b, nd, nm->code);
    if (!e)
        return false;
    if (nm->code == AGP_LEAKY_RELU || nm->code == AGP_CLAMP || nm->code == AGP_POW_SCALAR ||
        nm->code == AGP_STEP || nm->code == AGP_INSIDE) {
        e->s[0] = x->attr.s[0];   /* attr is a union: s[] holds these ops' constants only */
        e->s[1] = x->attr.s[1];
    }
    ag_plan *p = b->p;
    switch (nm->code) {
    case AGP_CLAMP: {
        /* the bounds as x's dtype holds them, as the op's derivative compares */
        bool f32 = x->dtype == AG_F32;
        e->s[0] = f32 ? (double)(float)e->s[0] : e->s[0];
        e->s[1] = f32 ? (double)(float)e->s[1] : e->s[1];
    }
        /* fall through */
    case AGP_RELU: case AGP_LEAKY_RELU: case AGP_ABS: {
        int64_t at = agp_branch_take(b, (size_t)x->numel);
        if (at < 0)
            return false;
        e = &p->ext[p->next - 1];
        e->chk = at;
        const ag_tensor *in = x->in[0];
        for (int64_t i = 0; i < x->numel; i++) {
            double v = ag_get(in, i);
            p->branch[at + i] = nm->code == AGP_ABS ? agp_sign_code(v)
                              : nm->code == AGP_CLAMP ? agp_clamp_code(v, e->s[0], e->s[1])
                                                      : agp_relu_code(v);
        }
        return true;
    }
    case AGP_ADD: case AGP_SUB: case AGP_MUL: case AGP_DIV: case AGP_POW: case AGP_MAXIMUM:
    case AGP_MINIMUM: case AGP_ATAN2: case AGP_GT: case AGP_GE: case AGP_LT: case AGP_LE:
    case AGP_EQ: case AGP_WHERE: {
        int r = x->rank, nin = nm->nin;
        e->rank = r;
        int64_t at = agp_aux_take(b, (size_t)(r * (nin + 1)));
        if (at < 0)
            return false;
        e = &p->ext[p->next - 1];
        e->aux = at;
        if (r > 0)
            memcpy(p->aux + at, x->shape, (size_t)r * sizeof(int64_t));
        for (int i = 0; i < nin; i++)
            aux_strides(b, x->in[i], r, x->shape, at + r * (i + 1));
        bool cmp = nm->code == AGP_MAXIMUM || nm->code == AGP_MINIMUM || nm->code == AGP_WHERE ||
                   (nm->code >= AGP_GT && nm->code <= AGP_EQ);
        if (cmp) {
            int64_t c = agp_branch_take(b, (size_t)x->numel);
            if (c < 0)
                return false;
            e = &p->ext[p->next - 1];
            e->chk = c;
            /* The recorded outcome, read back from the inputs as recorded. */
            int64_t *shape = p->aux + at, *sa = shape + r, *sb = sa + r, idx[AG_MAX_DIMS] = {0};
            int64_t oa = 0, ob = 0;
            for (int64_t i = 0; i < x->numel; i++) {
                p->branch[c + i] = nm->code == AGP_WHERE ? ag_get(x->in[0], oa) != 0
                                                         : agp_cmp_code(ag_get(x->in[0], oa),
                                                                        ag_get(x->in[1], ob));
                for (int d = r - 1; d >= 0; d--) {
                    oa += sa[d], ob += sb[d];
                    if (++idx[d] < shape[d])
                        break;
                    oa -= sa[d] * shape[d], ob -= sb[d] * shape[d];
                    idx[d] = 0;
                }
            }
        }
        return true;
    }
    case AGP_SUM: case AGP_MAX: case AGP_MIN: case AGP_LOGSUMEXP: case AGP_SOFTMAX:
    case AGP_LOG_SOFTMAX: {
        const ag_tensor *in = x->in[0];
        int ax = x->attr.red.axis;
        int64_t n = ax == AXIS_ALL ? in->numel : in->shape[ax], inner = 1, outer = 1;
        if (ax != AXIS_ALL) {
            for (int i = ax + 1; i < in->rank; i++)
                inner *= in->shape[i];
            for (int i = 0; i < ax; i++)
                outer *= in->shape[i];
        }
        bool arg = nm->code == AGP_MAX || nm->code == AGP_MIN;
        int64_t nout = outer * inner;
        int64_t at = agp_aux_take(b, 3 + (arg ? 2 * (size_t)nout : 0));
        if (at < 0)
            return false;
        e = &p->ext[p->next - 1];
        e->aux = at;
        p->aux[at] = outer, p->aux[at + 1] = n, p->aux[at + 2] = inner;
        if (arg) {
            /* The recorded first extremum and the number of ties, per output. */
            e->chk = at + 3;
            for (int64_t o = 0; o < nout; o++) {
                int64_t base = (o / inner) * n * inner + o % inner, first = -1, ties = 0;
                double m = ag_get(x, o);
                for (int64_t k = 0; k < n; k++) {
                    double v = ag_get(in, base + k * inner);
                    if (v == m || (v != v && m != m)) {
                        if (first < 0)
                            first = k;
                        ties++;
                    }
                }
                p->aux[at + 3 + 2 * o] = first;
                p->aux[at + 4 + 2 * o] = ties;
            }
        }
        return true;
    }
    case AGP_MATMUL: {
        const ag_tensor *A = x->in[0], *B = x->in[1];
        int ta = x->attr.mm.ta, tb = x->attr.mm.tb, r = x->rank - 2;
        int64_t m = x->shape[r], nn = x->shape[r + 1];
        int64_t k = A->shape[A->rank - (ta ? 2 : 1)], batches = 1;
        for (int d = 0; d < r; d++)
            batches *= x->shape[d];
        int64_t at = agp_aux_take(b, 8 + 2 * (size_t)batches);
        if (at < 0)
            return false;
        e = &p->ext[p->next - 1];
        e->aux = at;
        int64_t *q = p->aux + at;
        q[0] = m, q[1] = nn, q[2] = k, q[3] = ta, q[4] = tb;
        q[5] = A->shape[A->rank - 1], q[6] = B->shape[B->rank - 1], q[7] = batches;
        ag_tensor av = {.rank = (uint8_t)(A->rank - 2)}, bv = {.rank = (uint8_t)(B->rank - 2)};
        memcpy(av.shape, A->shape, (size_t)av.rank * sizeof *av.shape);
        memcpy(bv.shape, B->shape, (size_t)bv.rank * sizeof *bv.shape);
        int64_t sa[AG_MAX_DIMS], sb[AG_MAX_DIMS], idx[AG_MAX_DIMS] = {0}, oa = 0, ob = 0;
        agi_broadcast_strides(&av, r, x->shape, sa);
        agi_broadcast_strides(&bv, r, x->shape, sb);
        for (int64_t i = 0; i < batches; i++) {
            q[8 + 2 * i] = oa * m * k;
            q[9 + 2 * i] = ob * k * nn;
            for (int d = r - 1; d >= 0; d--) {
                oa += sa[d], ob += sb[d];
                if (++idx[d] < x->shape[d])
                    break;
                oa -= sa[d] * x->shape[d], ob -= sb[d] * x->shape[d];
                idx[d] = 0;
            }
        }
        return true;
    }
    case AGP_GATHER:
        return gather_map(b, e, x);
    case AGP_SCATTER:
        return scatter_map(b, e, x);
    case AGP_CUMSUM: case AGP_CUMSUM_REVERSE: case AGP_VAR: case AGP_STD: {
        const ag_tensor *in = x->in[0];
        int ax = x->attr.stat.axis;   /* -1: every element (var, std) */
        if (in->rank == 0)
            ax = -1;   /* cumsum of a scalar: the scalar */
        int64_t n = ax < 0 ? in->numel : in->shape[ax], inner = 1, outer = 1;
        for (int i = ax + 1; ax >= 0 && i < in->rank; i++)
            inner *= in->shape[i];
        for (int i = 0; ax >= 0 && i < ax; i++)
            outer *= in->shape[i];
        int64_t at = agp_aux_take(b, 3);
        if (at < 0)
            return false;
        e = &p->ext[p->next - 1];
        e->aux = at;
        p->aux[at] = outer, p->aux[at + 1] = n, p->aux[at + 2] = inner;
        if (nm->code == AGP_VAR || nm->code == AGP_STD)
            e->s[0] = fmax(0.0, (double)n - x->attr.stat.correction);
        return true;
    }
    case AGP_CROSS_ENTROPY: {
        const ag_tensor *in = x->in[0];
        int64_t rows = in->shape[0], at = agp_aux_take(b, 2 + (size_t)rows);
        if (at < 0)
            return false;
        e = &p->ext[p->next - 1];
        e->aux = at;
        p->aux[at] = rows;
        p->aux[at + 1] = in->shape[1];
        memcpy(p->aux + at + 2, x->attr.labels, (size_t)rows * sizeof(int64_t));
        return true;
    }
    default:
        return true;
    }
}

