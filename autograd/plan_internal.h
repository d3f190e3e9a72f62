/*
** plan_internal.h: the layout of a frozen plan (ag_plan, autograd.h) that
** plan.c builds from a tape and plan_run.c executes. Never installed.
**
** A plan is a flat program over two flat buffers of doubles: values and
** adjoints. Every tensor of the frozen computation (leaf, constant, op
** result) owns a range of both, at an element offset fixed at freeze time;
** an f32 tensor's values are held as doubles that each instruction rounds
** to float as it writes them, so they are the values the f32 op computes.
**
** Instructions are 16 bytes. Scalar f64 ops, the bulk of a scalar graph,
** carry their operands' offsets in the instruction itself and run inline in
** the interpreter's switch; every other op is an "extended" instruction
** whose 'out' field indexes plan->ext, a record with its shapes, strides,
** index maps and constants, run by the kernels of plan_run.c.
*/
#ifndef AG_PLAN_INTERNAL_H
#define AG_PLAN_INTERNAL_H

#include "internal.h"

/* Opcodes. Those below AGP_EXT_FIRST are scalar f64 instructions: out = f(a)
** or f(a, b), operands being offsets into the value buffer; relu and abs
** keep their recorded side in plan->aux[b] (agp_relu_code, agp_sign_code;
** the tape entry + 1 above bit 8); pow_scalar reads its
** exponent from the value slot b. */
typedef enum agp_code {
    AGP_S_ADD, AGP_S_SUB, AGP_S_MUL, AGP_S_DIV,
    AGP_S_NEG, AGP_S_EXP, AGP_S_LOG, AGP_S_SQRT, AGP_S_SIN, AGP_S_COS, AGP_S_TANH,
    AGP_S_SIGMOID, AGP_S_SQUARE, AGP_S_POWS, AGP_S_RELU, AGP_S_ABS,
    AGP_EXT_FIRST,
    /* elementwise of one input, same shape (s[] holds the op's constants) */
    AGP_NEG = AGP_EXT_FIRST, AGP_EXP, AGP_LOG, AGP_SQRT, AGP_ABS, AGP_SIGN, AGP_SIN, AGP_COS,
    AGP_TANH, AGP_SIGMOID, AGP_RELU, AGP_LEAKY_RELU, AGP_GELU, AGP_SOFTPLUS, AGP_CLAMP,
    AGP_POW_SCALAR, AGP_ERF, AGP_ATAN, AGP_LOG1P, AGP_EXPM1, AGP_COPY,
    /* the derivatives of relu/leaky_relu and clamp, which their VJPs record */
    AGP_STEP, AGP_INSIDE,
    /* elementwise of two or three inputs, broadcast */
    AGP_ADD, AGP_SUB, AGP_MUL, AGP_DIV, AGP_POW, AGP_MAXIMUM, AGP_MINIMUM, AGP_ATAN2,
    AGP_GT, AGP_GE, AGP_LT, AGP_LE, AGP_EQ, AGP_WHERE,
    /* reductions to [outer, inner] over n elements 'inner' apart */
    AGP_SUM, AGP_MAX, AGP_MIN, AGP_LOGSUMEXP,
    /* out[i] = in[map[i]] (a map entry < 0 reads s[0], a pad's value) */
    AGP_GATHER,
    /* out[map[i]] = in[i]: one input of a concatenation */
    AGP_PLACE,
    /* out = 0, then out[map[i]] += in[i] (sum_to, slice_grad, index_grad) */
    AGP_SCATTER,
    /* out[map[i]] += in[i] into what an AGP_COPY of the base wrote (index_add, scatter_add) */
    AGP_SCATTER_ADD,
    AGP_MATMUL,
    /* along lanes as reductions': [outer, n, inner] in aux */
    AGP_SOFTMAX, AGP_LOG_SOFTMAX, AGP_CUMSUM, AGP_CUMSUM_REVERSE, AGP_VAR, AGP_STD,
    /* mean over N rows of C logits of -log softmax at the row's label: aux N, C, labels */
    AGP_CROSS_ENTROPY,
    AGP_CODE_COUNT
} agp_code;

typedef struct agp_instr {
    uint8_t code;
    uint8_t grad;    /* scalar: AGP_GRAD_* bits; extended: unused (see agp_ext) */
    uint16_t pad;
    uint32_t out, a, b;
} agp_instr;

enum {
    AGP_GRAD_OUT = 1,       /* the op was recorded: backward runs it */
    AGP_GRAD_IN0 = 2,       /* input i takes an adjoint: AGP_GRAD_IN0 << i */
};

/* What an extended instruction needs besides its opcode. */
typedef struct agp_ext {
    uint8_t code, grad, f32, nin;
    int32_t entry;         /* the tape entry of the op, -1 when it was not recorded */
    int32_t index;         /* the instruction's position, for messages */
    const char *name;      /* the op's name, for messages */
    int64_t out, n;        /* value offset and element count of the result */
    int64_t in[3], in_n[3];
    int64_t aux;           /* offset into plan->aux: strides, maps, dims; -1 when none */
    int64_t chk;           /* offset into plan->branch of the recorded comparisons; -1 */
    int rank;              /* broadcast ops: the result's rank */
    double s[2];
} agp_ext;

struct ag_plan {
    ag_alloc_fn alloc;
    void *alloc_ud;
    agp_instr *code;
    size_t ncode;
    agp_ext *ext;
    size_t next;
    int64_t *aux;
    size_t naux;
    uint8_t *branch;       /* recorded comparison outcomes, one per element checked */
    size_t nbranch;
    double *val, *adj;
    size_t nval;
    int nleaves;
    struct agp_leaf {
        int64_t off, n;
        uint8_t dtype, rank;
        int64_t shape[AG_MAX_DIMS];
    } *leaves;
    int64_t y_off, y_n;
    uint8_t y_dtype;
    int y_rank;
    int64_t y_shape[AG_MAX_DIMS];
    ag_status status;
    char errmsg[256];
    /* The first comparison that came out differently in the running pass. */
    bool changed;
};

/* plan_run.c: forward over the instructions, then (when 'backward') the
** adjoints from y back. Comparison changes are noted with agp_changed. */
void agp_forward(ag_plan *p);
void agp_backward(ag_plan *p);
/* Records the first comparison change of a run on the plan. */
void agp_changed(ag_plan *p, const char *op, int32_t entry, int32_t index, int64_t element,
                 int was, int now);

/* Branch codes of the comparisons the plan re-checks: which way a kink or
** a comparison went. The same functions give the recorded and the new ones. */
static inline uint8_t agp_sign_code(double x) { return x > 0 ? 2 : x < 0 ? 0 : x == x ? 1 : 3; }
static inline uint8_t agp_cmp_code(double a, double b)
{
    return a > b ? 2 : a < b ? 0 : a == b ? 1 : 3;
}
/* relu and leaky relu: the side of 0 (their derivative's two values), or NaN */
static inline uint8_t agp_relu_code(double x) { return x > 0 ? 1 : x <= 0 ? 0 : 2; }
/* clamp: below, inside (bounds included: the derivative is 1 there), above, NaN */
static inline uint8_t agp_clamp_code(double x, double lo, double hi)
{
    return x < lo ? 0 : x > hi ? 2 : x == x ? 1 : 3;
}

/* ------------------------------------------------------------ building
** (plan.c walks the tape and owns the builder; plan_emit.c turns each op
** into instructions.) */

typedef struct node {
    ag_tensor *x;
    int64_t off;       /* value offset */
    int32_t entry;     /* tape entry, -1 when not recorded */
    int32_t leaf;      /* leaf index, -1 otherwise */
    bool dep;          /* a leaf reaches it */
} node;

typedef struct builder {
    ag_tape *t;
    ag_plan *p;
    node *nodes;
    size_t nnodes, cap_nodes;
    int32_t *slots;    /* hash of tensor addresses to node indices, -1 for empty */
    size_t cap_slots;
    size_t cap_code, cap_ext, cap_aux, cap_branch;
    struct extra { int64_t off; double v; } *extras;   /* constants the instructions add */
    size_t nextras, cap_extras;
    ag_tape *scratch;  /* for index maps computed by the library's own ops */
} builder;

void *agp_grow(builder *b, void *p, size_t *cap, size_t need, size_t esize);
/* Makes room for 'need' elements in arr (capacity 'cap'); false on error. */
#define GROW(b, arr, cap, need)                                                             \
    ((need) <= (cap) ||                                                                     \
     ((arr) = agp_grow((b), (arr), &(cap), (need), sizeof *(arr)), (b)->t->status == AG_OK))

/* The node of tensor x, or -1. */
int32_t agp_lookup(const builder *b, const ag_tensor *x);
/* n int64 of plan->aux, or n bytes of plan->branch: the offset, or -1 on error. */
int64_t agp_aux_take(builder *b, size_t n);
int64_t agp_branch_take(builder *b, size_t n);
bool agp_emit(builder *b, agp_instr in);
/* A new extended instruction for node nd's op, its inputs those of the
** tensor; NULL on error. Valid until the next one. */
agp_ext *agp_emit_ext(builder *b, const node *nd, agp_code code);
/* A value slot holding v, for an instruction's constant: its offset, or -1. */
int64_t agp_extra_const(builder *b, double v);
/* Instructions for the op that made nd's tensor (plan_emit.c). */
bool agp_emit_op(builder *b, const node *nd);

#endif
