/*
** ops_registry.c: every differentiable op of the library, for tests (each
** must have a gradient check) and tools that list ops.
*/
#include "internal.h"

const ag_op *const agi_ops[] = {
    &agi_op_add, &agi_op_sub, &agi_op_mul, &agi_op_div, &agi_op_pow, &agi_op_maximum,
    &agi_op_minimum, &agi_op_where,
    &agi_op_neg, &agi_op_exp, &agi_op_log, &agi_op_sqrt, &agi_op_abs, &agi_op_sin, &agi_op_cos,
    &agi_op_tanh, &agi_op_sigmoid, &agi_op_relu, &agi_op_leaky_relu, &agi_op_gelu,
    &agi_op_softplus, &agi_op_clamp, &agi_op_pow_scalar,
    &agi_op_sum, &agi_op_sum_to, &agi_op_max, &agi_op_min, &agi_op_logsumexp,
    &agi_op_broadcast_to,
    &agi_op_reshape, &agi_op_permute, &agi_op_slice, &agi_op_slice_grad, &agi_op_concat,
    &agi_op_cast,
    &agi_op_matmul, &agi_op_dense,
    &agi_op_softmax, &agi_op_log_softmax, &agi_op_cross_entropy,
};
const size_t agi_n_ops = ARRAY_LEN(agi_ops);
