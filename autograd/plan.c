/*
** plan.c: freezing a recorded computation into a plan (ag_plan_new), the
** run's checks of its arguments (ag_plan_run and its typed forms), and the
** plan's accessors. The program it builds is described in plan_internal.h;
** plan_run.c executes it.
**
** Freezing walks the tensors that y reaches, through every input (recorded
** or not: a comparison is never recorded, yet its mask changes with the
** leaves), stopping at the leaves. A tensor that no leaf reaches is a
** constant: its values are copied into the plan. Every other one becomes an
** instruction, in an order where inputs come first (a depth-first post-order
** from y).
*/
#include "plan_internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ the builder */

void *agp_grow(builder *b, void *p, size_t *cap, size_t need, size_t esize)
{
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = agi_realloc(b->t->alloc, b->t->alloc_ud, p, *cap * esize, n * esize);
    if (!q) {
        agi_error(b->t, AG_ENOMEM, "ag_plan_new: out of memory (%zu bytes)", n * esize);
        return p;   /* kept, and freed with the plan */
    }
    *cap = n;
    return q;
}

static size_t hash_ptr(const void *x, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)x * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

int32_t agp_lookup(const builder *b, const ag_tensor *x)
{
    if (!b->cap_slots)
        return -1;
    for (size_t i = hash_ptr(x, b->cap_slots);; i = (i + 1) & (b->cap_slots - 1)) {
        int32_t k = b->slots[i];
        if (k < 0 || b->nodes[k].x == x)
            return k;
    }
}

static bool rehash(builder *b, size_t cap)
{
    int32_t *s = agi_realloc(b->t->alloc, b->t->alloc_ud, NULL, 0, cap * sizeof *s);
    if (!s) {
        agi_error(b->t, AG_ENOMEM, "ag_plan_new: out of memory");
        return false;
    }
    memset(s, 0xff, cap * sizeof *s);
    agi_realloc(b->t->alloc, b->t->alloc_ud, b->slots, b->cap_slots * sizeof *s, 0);
    b->slots = s;
    b->cap_slots = cap;
    for (size_t k = 0; k < b->nnodes; k++) {
        size_t i = hash_ptr(b->nodes[k].x, cap);
        while (s[i] >= 0)
            i = (i + 1) & (cap - 1);
        s[i] = (int32_t)k;
    }
    return true;
}

/* Adds x as a node; returns its index, or -1 after recording an error. */
static int32_t add_node(builder *b, ag_tensor *x)
{
    if (b->nnodes >= INT32_MAX / 2) {
        agi_error(b->t, AG_EUNSUPPORTED, "ag_plan_new: more than %d tensors", INT32_MAX / 2);
        return -1;
    }
    if (!GROW(b, b->nodes, b->cap_nodes, b->nnodes + 1))
        return -1;
    b->nodes[b->nnodes] = (node){.x = x, .entry = -1, .leaf = -1};
    b->nnodes++;
    if (2 * b->nnodes > b->cap_slots) {
        if (!rehash(b, b->cap_slots ? 2 * b->cap_slots : 1024))
            return -1;
    } else {
        size_t i = hash_ptr(x, b->cap_slots);
        while (b->slots[i] >= 0)
            i = (i + 1) & (b->cap_slots - 1);
        b->slots[i] = (int32_t)(b->nnodes - 1);
    }
    return (int32_t)(b->nnodes - 1);
}

/* ---------------------------------------------------------- instructions */

int64_t agp_aux_take(builder *b, size_t n)
{
    ag_plan *p = b->p;
    if (!GROW(b, p->aux, b->cap_aux, p->naux + n))
        return -1;
    int64_t at = (int64_t)p->naux;
    p->naux += n;
    return at;
}

int64_t agp_branch_take(builder *b, size_t n)
{
    ag_plan *p = b->p;
    if (!GROW(b, p->branch, b->cap_branch, p->nbranch + n))
        return -1;
    int64_t at = (int64_t)p->nbranch;
    p->nbranch += n;
    return at;
}

bool agp_emit(builder *b, agp_instr in)
{
    ag_plan *p = b->p;
    if (!GROW(b, p->code, b->cap_code, p->ncode + 1))
        return false;
    p->code[p->ncode++] = in;
    return true;
}

/* A new extended instruction for node k's tensor; NULL on error. */
agp_ext *agp_emit_ext(builder *b, const node *nd, agp_code code)
{
    ag_plan *p = b->p;
    ag_tensor *x = nd->x;
    if (p->next >= UINT32_MAX || !GROW(b, p->ext, b->cap_ext, p->next + 1))
        return NULL;
    agp_ext *e = &p->ext[p->next];
    *e = (agp_ext){.code = (uint8_t)code, .f32 = x->dtype == AG_F32, .nin = x->nin,
                   .entry = nd->entry, .index = (int32_t)p->ncode, .name = x->op->name,
                   .out = nd->off, .n = x->numel, .aux = -1, .chk = -1};
    e->grad = (x->flags & AGI_RECORDED) ? AGP_GRAD_OUT : 0;
    for (int i = 0; i < x->nin && i < 3; i++) {
        const node *in = &b->nodes[agp_lookup(b, x->in[i])];
        e->in[i] = in->off;
        e->in_n[i] = x->in[i]->numel;
    }
    if (!agp_emit(b, (agp_instr){.code = (uint8_t)code, .out = (uint32_t)p->next}))
        return NULL;
    p->next++;
    return e;
}

/* A constant the instruction reads from a value slot of its own. */
int64_t agp_extra_const(builder *b, double v)
{
    if (!GROW(b, b->extras, b->cap_extras, b->nextras + 1))
        return -1;
    int64_t off = (int64_t)b->p->nval++;
    b->extras[b->nextras++] = (struct extra){off, v};
    return off;
}

/* ------------------------------------------------------------- freezing */

static bool check_leaves(ag_tape *t, ag_tensor *y, int nleaves, ag_tensor *const *leaves)
{
    if (!agi_usable(y, "ag_plan_new") || ((y->flags & AGI_PARAM) == 0 && y->tape != t)) {
        agi_error(t, AG_EINVAL, "ag_plan_new: y is %s", !y ? "NULL" : (y->flags & AGI_NIL)
                  ? "the nil tensor of a failed tape" : "not a tensor of this tape");
        return false;
    }
    if (nleaves < 0 || (nleaves > 0 && !leaves)) {
        agi_error(t, AG_EINVAL, "ag_plan_new: %d leaves at %p", nleaves, (const void *)leaves);
        return false;
    }
    for (int i = 0; i < nleaves; i++) {
        ag_tensor *x = leaves[i];
        if (!x || (x->flags & AGI_NIL)) {
            agi_error(t, AG_EINVAL, "ag_plan_new: leaf %d is %s", i,
                      x ? "the nil tensor of a failed tape" : "NULL");
            return false;
        }
        if (!(x->flags & AGI_PARAM) && x->tape != t) {
            agi_error(t, AG_EINVAL, "ag_plan_new: leaf %d belongs to another tape", i);
            return false;
        }
        if (!agi_usable(x, "ag_plan_new"))
            return false;
        if (!(x->flags & AGI_REQUIRES_GRAD)) {
            agi_error(t, AG_EINVAL, "ag_plan_new: leaf %d%s%s%s does not require grad (the ops "
                      "on it were not recorded): make it with ag_requires_grad or a parameter",
                      i, x->name ? " '" : "", x->name ? x->name : "", x->name ? "'" : "");
            return false;
        }
        for (int j = 0; j < i; j++)
            if (leaves[j] == x) {
                agi_error(t, AG_EINVAL, "ag_plan_new: leaves %d and %d are the same tensor", j, i);
                return false;
            }
    }
    return true;
}

/* Depth-first from y, inputs before their users: nodes[] ends in that order. */
static bool walk(builder *b, ag_tensor *y, int nleaves, ag_tensor *const *leaves)
{
    for (int i = 0; i < nleaves; i++) {
        int32_t k = add_node(b, leaves[i]);
        if (k < 0)
            return false;
        b->nodes[k].leaf = i;
        b->nodes[k].dep = true;
    }
    /* The order is kept apart from nodes[], which lists tensors as found. */
    size_t cap_stack = 0, nstack = 0, cap_order = 0, norder = 0;
    struct frame { int32_t k; int next; } *stack = NULL;
    int32_t *order = NULL;
    bool ok = true;
    int32_t ky = agp_lookup(b, y);
    if (ky < 0) {
        ky = add_node(b, y);
        if (ky < 0)
            return false;
        ok = GROW(b, stack, cap_stack, 1);
        if (ok)
            stack[nstack++] = (struct frame){ky, 0};
    }
    for (int i = 0; ok && i < nleaves; i++)
        if ((ok = GROW(b, order, cap_order, norder + 1)))
            order[norder++] = i;
    while (ok && nstack) {
        struct frame *f = &stack[nstack - 1];
        ag_tensor *x = b->nodes[f->k].x;
        if (x->op && f->next < x->nin) {
            ag_tensor *c = x->in[f->next++];
            if (agp_lookup(b, c) < 0) {
                int32_t kc = add_node(b, c);
                if (kc < 0 || !GROW(b, stack, cap_stack, nstack + 1)) {
                    ok = false;
                    break;
                }
                stack[nstack++] = (struct frame){kc, 0};
            }
            continue;
        }
        bool dep = false;
        for (int i = 0; x->op && i < x->nin; i++)
            dep |= b->nodes[agp_lookup(b, x->in[i])].dep;
        b->nodes[f->k].dep = dep;
        if (!(ok = GROW(b, order, cap_order, norder + 1)))
            break;
        order[norder++] = f->k;
        nstack--;
    }
    agi_realloc(b->t->alloc, b->t->alloc_ud, stack, cap_stack * sizeof *stack, 0);
    if (!ok) {
        agi_realloc(b->t->alloc, b->t->alloc_ud, order, cap_order * sizeof *order, 0);
        return false;
    }
    /* nodes[] in that order, the hash rebuilt to match */
    node *sorted = agi_realloc(b->t->alloc, b->t->alloc_ud, NULL, 0, norder * sizeof *sorted);
    if (sorted) {
        for (size_t i = 0; i < norder; i++)
            sorted[i] = b->nodes[order[i]];
        agi_realloc(b->t->alloc, b->t->alloc_ud, b->nodes, b->cap_nodes * sizeof *b->nodes, 0);
        b->nodes = sorted;
        b->cap_nodes = b->nnodes = norder;
    }
    agi_realloc(b->t->alloc, b->t->alloc_ud, order, cap_order * sizeof *order, 0);
    if (!sorted) {
        agi_error(b->t, AG_ENOMEM, "ag_plan_new: out of memory");
        return false;
    }
    return rehash(b, b->cap_slots);
}

static ag_plan *plan_alloc(ag_tape *t)
{
    ag_plan *p = agi_realloc(t->alloc, t->alloc_ud, NULL, 0, sizeof *p);
    if (!p) {
        agi_error(t, AG_ENOMEM, "ag_plan_new: out of memory");
        return NULL;
    }
    memset(p, 0, sizeof *p);
    p->alloc = t->alloc;
    p->alloc_ud = t->alloc_ud;
    return p;
}

static void builder_free(builder *b)
{
    ag_alloc_fn fn = b->t->alloc;
    void *ud = b->t->alloc_ud;
    agi_realloc(fn, ud, b->nodes, b->cap_nodes * sizeof *b->nodes, 0);
    agi_realloc(fn, ud, b->slots, b->cap_slots * sizeof *b->slots, 0);
    agi_realloc(fn, ud, b->extras, b->cap_extras * sizeof *b->extras, 0);
    ag_tape_free(b->scratch);
}

/* The arrays grown by powers of two, cut to their size so that ag_plan_free
** knows each block's size (the hook is told it). */
static bool fit(builder *b, void **p, size_t *cap, size_t n, size_t esize)
{
    if (*cap == n)
        return true;
    void *q = agi_realloc(b->t->alloc, b->t->alloc_ud, *p, *cap * esize, n * esize);
    if (!q && n) {
        agi_error(b->t, AG_ENOMEM, "ag_plan_new: out of memory");
        return false;
    }
    *p = q;
    *cap = n;
    return true;
}

ag_plan *ag_plan_new(ag_tape *t, ag_tensor *y, int nleaves, ag_tensor *const *leaves)
{
    if (!t || t->status != AG_OK)
        return NULL;
    if (t->anomaly.pending)
        agi_anomaly_flush(t);
    if (t->status != AG_OK || !check_leaves(t, y, nleaves, leaves))
        return NULL;
    ag_plan *p = plan_alloc(t);
    if (!p)
        return NULL;
    builder b = {.t = t, .p = p};
    bool ok = walk(&b, y, nleaves, leaves);
    /* entry numbers, for messages */
    for (size_t i = 0; ok && i < t->n_entries; i++) {
        int32_t k = agp_lookup(&b, t->entries[i]);
        if (k >= 0)
            b.nodes[k].entry = (int32_t)i;
    }
    for (size_t i = 0; ok && i < b.nnodes; i++) {
        b.nodes[i].off = (int64_t)p->nval;
        p->nval += (size_t)b.nodes[i].x->numel;
    }
    for (size_t i = 0; ok && i < b.nnodes; i++)
        if (b.nodes[i].dep && b.nodes[i].leaf < 0)
            ok = agp_emit_op(&b, &b.nodes[i]);
    size_t cap_leaves = 0;
    ok = ok && GROW(&b, p->leaves, cap_leaves, (size_t)nleaves + 1);
    if (ok) {
        p->val = agi_realloc(t->alloc, t->alloc_ud, NULL, 0, (p->nval + 1) * sizeof(double));
        p->adj = agi_realloc(t->alloc, t->alloc_ud, NULL, 0, (p->nval + 1) * sizeof(double));
        if (!p->val || !p->adj) {
            agi_error(t, AG_ENOMEM, "ag_plan_new: out of memory for %zu values", p->nval);
            ok = false;
        }
    }
    if (ok) {
        /* constants by value; leaves and results are written by each run */
        memset(p->val, 0, (p->nval + 1) * sizeof(double));
        for (size_t i = 0; i < b.nnodes; i++) {
            const node *nd = &b.nodes[i];
            for (int64_t j = 0; !nd->dep && j < nd->x->numel; j++)
                p->val[nd->off + j] = agi_get(nd->x, j);
        }
        for (size_t i = 0; i < b.nextras; i++)
            p->val[b.extras[i].off] = b.extras[i].v;
        p->nleaves = nleaves;
        for (int i = 0; i < nleaves; i++) {
            const ag_tensor *x = leaves[i];
            struct agp_leaf *l = &p->leaves[i];
            l->off = b.nodes[agp_lookup(&b, x)].off;
            l->n = x->numel;
            l->dtype = x->dtype;
            l->rank = x->rank;
            memcpy(l->shape, x->shape, (size_t)x->rank * sizeof *x->shape);
        }
        p->y_off = b.nodes[agp_lookup(&b, y)].off;
        p->y_n = y->numel;
        p->y_dtype = y->dtype;
        p->y_rank = y->rank;
        memcpy(p->y_shape, y->shape, (size_t)y->rank * sizeof *y->shape);
        ok = fit(&b, (void **)&p->code, &b.cap_code, p->ncode, sizeof *p->code) &&
             fit(&b, (void **)&p->ext, &b.cap_ext, p->next, sizeof *p->ext) &&
             fit(&b, (void **)&p->aux, &b.cap_aux, p->naux, sizeof *p->aux) &&
             fit(&b, (void **)&p->branch, &b.cap_branch, p->nbranch, 1) &&
             fit(&b, (void **)&p->leaves, &cap_leaves, (size_t)nleaves + 1, sizeof *p->leaves);
    }
    if (!ok) {
        /* sizes as the builder knows them, for the hook */
        p->ncode = b.cap_code, p->next = b.cap_ext, p->naux = b.cap_aux;
        p->nbranch = b.cap_branch;
        p->nleaves = (int)(cap_leaves ? cap_leaves - 1 : 0);
        if (!cap_leaves)
            p->leaves = NULL;
        builder_free(&b);
        ag_plan_free(p);
        return NULL;
    }
    builder_free(&b);
    return p;
}

void ag_plan_free(ag_plan *p)
{
    if (!p)
        return;
    ag_alloc_fn fn = p->alloc;
    void *ud = p->alloc_ud;
    agi_realloc(fn, ud, p->code, p->ncode * sizeof *p->code, 0);
    agi_realloc(fn, ud, p->ext, p->next * sizeof *p->ext, 0);
    agi_realloc(fn, ud, p->aux, p->naux * sizeof *p->aux, 0);
    agi_realloc(fn, ud, p->branch, p->nbranch, 0);
    agi_realloc(fn, ud, p->leaves, p->leaves ? ((size_t)p->nleaves + 1) * sizeof *p->leaves : 0, 0);
    agi_realloc(fn, ud, p->val, p->val ? (p->nval + 1) * sizeof(double) : 0, 0);
    agi_realloc(fn, ud, p->adj, p->adj ? (p->nval + 1) * sizeof(double) : 0, 0);
    agi_realloc(fn, ud, p, sizeof *p, 0);
}

/* --------------------------------------------------------------- running */

static ag_status plan_fail(ag_plan *p, ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static ag_status plan_fail(ag_plan *p, ag_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errmsg, sizeof p->errmsg, fmt, ap);
    va_end(ap);
    p->status = s;
    return s;
}

void agp_changed(ag_plan *p, const char *op, int32_t entry, int32_t index, int64_t element,
                 int was, int now)
{
    if (p->changed)
        return;
    p->changed = true;
    char where[48];
    if (entry >= 0)
        snprintf(where, sizeof where, "tape entry %d", (int)entry);
    else
        snprintf(where, sizeof where, "not recorded");
    plan_fail(p, AG_ESTATE, "ag_plan_run: op '%s' (%s, plan instruction %d), element %lld, "
              "compared otherwise than when recorded (branch %d, now %d): the values are "
              "those of the new point, but record the tape again for a plan that holds",
              op, where, (int)index, (long long)element, was, now);
}

/* dt: the dtype every buffer must have, or -1 for each tensor's own (ag_plan_run). */
static ag_status run(ag_plan *p, int dt, const char *who, const void *const *leaves, void *y,
                     void *const *grads)
{
    if (!p)
        return AG_EINVAL;
    p->status = AG_OK;
    p->errmsg[0] = '\0';
    p->changed = false;
    if (p->nleaves > 0 && !leaves)
        return plan_fail(p, AG_EINVAL, "%s: leaves is NULL (the plan has %d)", who, p->nleaves);
    for (int i = 0; i < p->nleaves; i++) {
        if (!leaves[i])
            return plan_fail(p, AG_EINVAL, "%s: the values of leaf %d are NULL", who, i);
        if (dt >= 0 && p->leaves[i].dtype != dt)
            return plan_fail(p, AG_EDTYPE, "%s: leaf %d is %s, not %s", who, i,
                             ag_dtype_name((ag_dtype)p->leaves[i].dtype), ag_dtype_name((ag_dtype)dt));
    }
    if (y && dt >= 0 && p->y_dtype != dt)
        return plan_fail(p, AG_EDTYPE, "%s: y is %s, not %s", who,
                         ag_dtype_name((ag_dtype)p->y_dtype), ag_dtype_name((ag_dtype)dt));
    if (grads && p->y_n != 1) {
        char s[96];
        agi_shape_str(s, sizeof s, p->y_rank, p->y_shape);
        return plan_fail(p, AG_ESHAPE, "%s: y %s has %lld elements; gradients need one "
                         "(pass grads NULL for values only)", who, s, (long long)p->y_n);
    }
    for (int i = 0; i < p->nleaves; i++) {
        const struct agp_leaf *l = &p->leaves[i];
        double *v = p->val + l->off;
        if (l->dtype == AG_F32)
            for (int64_t j = 0; j < l->n; j++)
                v[j] = ((const float *)leaves[i])[j];
        else
            memcpy(v, leaves[i], (size_t)l->n * sizeof *v);
    }
    agp_forward(p);
    if (y) {
        const double *v = p->val + p->y_off;
        if (p->y_dtype == AG_F32)
            for (int64_t j = 0; j < p->y_n; j++)
                ((float *)y)[j] = (float)v[j];
        else
            memcpy(y, v, (size_t)p->y_n * sizeof *v);
    }
    if (grads) {
        agp_backward(p);
        for (int i = 0; i < p->nleaves; i++) {
            const struct agp_leaf *l = &p->leaves[i];
            const double *g = p->adj + l->off;
            if (!grads[i])
                continue;
            if (l->dtype == AG_F32)
                for (int64_t j = 0; j < l->n; j++)
                    ((float *)grads[i])[j] = (float)g[j];
            else
                memcpy(grads[i], g, (size_t)l->n * sizeof *g);
        }
    }
    return p->status;
}

ag_status ag_plan_run(ag_plan *p, const void *const *leaves, void *y, void *const *grads)
{
    return run(p, -1, "ag_plan_run", leaves, y, grads);
}

ag_status ag_plan_run_f64(ag_plan *p, const double *const *leaves, double *y, double *const *grads)
{
    return run(p, AG_F64, "ag_plan_run_f64", (const void *const *)leaves, y,
               (void *const *)grads);
}

ag_status ag_plan_run_f32(ag_plan *p, const float *const *leaves, float *y, float *const *grads)
{
    return run(p, AG_F32, "ag_plan_run_f32", (const void *const *)leaves, y,
               (void *const *)grads);
}

ag_status ag_plan_status(const ag_plan *p) { return p ? p->status : AG_EINVAL; }
const char *ag_plan_errmsg(const ag_plan *p) { return p ? p->errmsg : "ag_plan: the plan is NULL"; }
size_t ag_plan_ops(const ag_plan *p) { return p ? p->ncode : 0; }
int ag_plan_num_leaves(const ag_plan *p) { return p ? p->nleaves : 0; }
