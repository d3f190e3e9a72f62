/*
** loss.c: losses as compositions of autograd ops, so their gradients (and
** gradients of gradients) come from the ops' own vector-Jacobian products.
** Each checks its arguments first, so errors name the loss, not an inner op.
*/
#include "model_internal.h"

#include <math.h>

/* Prediction and target agree in dtype and shape. */
static bool check_pair(ag_tape *t, const char *who, const ag_tensor *pred, const ag_tensor *target)
{
    if (!nni_check_input(t, who, "the prediction", pred) ||
        !nni_check_input(t, who, "the target", target))
        return false;
    if (ag_dtype_of(pred) != ag_dtype_of(target)) {
        ag_tape_fail(t, AG_EDTYPE, "%s: prediction is %s but target is %s", who,
                     ag_dtype_name(ag_dtype_of(pred)), ag_dtype_name(ag_dtype_of(target)));
        return false;
    }
    bool same = ag_rank(pred) == ag_rank(target);
    for (int i = 0; same && i < ag_rank(pred); i++)
        same = ag_dim(pred, i) == ag_dim(target, i);
    if (!same) {
        char a[NNI_SHAPE_STR], b[NNI_SHAPE_STR];
        ag_tape_fail(t, AG_ESHAPE, "%s: prediction %s and target %s differ in shape", who,
                     nni_shape_str(pred, a, sizeof a), nni_shape_str(target, b, sizeof b));
        return false;
    }
    return true;
}

static bool check_reduction(ag_tape *t, const char *who, nn_reduction r)
{
    if (r == NN_REDUCE_MEAN || r == NN_REDUCE_SUM)
        return true;
    ag_tape_fail(t, AG_EINVAL, "%s: reduction %d is neither NN_REDUCE_MEAN nor NN_REDUCE_SUM",
                 who, (int)r);
    return false;
}

/* Elementwise losses reduced over every element. */
static ag_tensor *reduce(ag_tape *t, ag_tensor *x, nn_reduction r)
{
    return r == NN_REDUCE_SUM ? ag_sum(t, x) : ag_mean(t, x);
}

ag_tensor *nn_mse_loss(ag_tape *t, ag_tensor *pred, ag_tensor *target, nn_reduction r)
{
    static const char who[] = "nn_mse_loss";
    if (!check_pair(t, who, pred, target) || !check_reduction(t, who, r))
        return ag_tape_nil(t);
    return reduce(t, ag_square(t, ag_sub(t, pred, target)), r);
}

ag_tensor *nn_l1_loss(ag_tape *t, ag_tensor *pred, ag_tensor *target, nn_reduction r)
{
    static const char who[] = "nn_l1_loss";
    if (!check_pair(t, who, pred, target) || !check_reduction(t, who, r))
        return ag_tape_nil(t);
    return reduce(t, ag_abs(t, ag_sub(t, pred, target)), r);
}

/* With a = |d| and q = min(a, delta): q^2 / 2 + delta (a - q). Below delta
** that is a^2 / 2; above, delta^2 / 2 + delta (a - delta) = delta (a - delta / 2).
** One expression for both sides keeps the gradient continuous at delta. */
ag_tensor *nn_huber_loss(ag_tape *t, ag_tensor *pred, ag_tensor *target, double delta,
                         nn_reduction r)
{
    static const char who[] = "nn_huber_loss";
    if (!check_pair(t, who, pred, target) || !check_reduction(t, who, r))
        return ag_tape_nil(t);
    if (!(delta > 0.0) || !isfinite(delta)) {
        ag_tape_fail(t, AG_EINVAL, "%s: delta %g must be finite and > 0", who, delta);
        return ag_tape_nil(t);
    }
    ag_tensor *a = ag_abs(t, ag_sub(t, pred, target));
    ag_tensor *q = ag_minimum(t, a, ag_scalar(t, ag_dtype_of(pred), delta));
    ag_tensor *loss = ag_add(t, ag_mul_scalar(t, ag_square(t, q), 0.5),
                             ag_mul_scalar(t, ag_sub(t, a, q), delta));
    return reduce(t, loss, r);
}

/* -[y log s(x) + (1 - y) log(1 - s(x))] = softplus(x) - y x, since
** -log s(x) = softplus(-x) = softplus(x) - x; softplus never overflows. */
ag_tensor *nn_bce_with_logits_loss(ag_tape *t, ag_tensor *logits, ag_tensor *target,
                                   nn_reduction r)
{
    static const char who[] = "nn_bce_with_logits_loss";
    if (!check_pair(t, who, logits, target) || !check_reduction(t, who, r))
        return ag_tape_nil(t);
    return reduce(t, ag_sub(t, ag_softplus(t, logits), ag_mul(t, target, logits)), r);
}

/* (1 - s) CE(onehot) + s CE(uniform), where CE(uniform) for a row is the mean
** of -log_softmax over its C classes: so the smoothing term is the mean of
** -log_softmax over all N C elements. ag_cross_entropy and ag_log_softmax
** both subtract the row maximum and keep it apart from the log of the sum,
** so a shift of the logits (1e4, or 1e16) changes neither loss. */
ag_tensor *nn_cross_entropy_loss(ag_tape *t, ag_tensor *logits, const int64_t *labels,
                                 double smoothing, nn_reduction r)
{
    static const char who[] = "nn_cross_entropy_loss";
    if (!nni_check_input(t, who, "the logits", logits) || !check_reduction(t, who, r))
        return ag_tape_nil(t);
    char shape[NNI_SHAPE_STR];
    if (ag_rank(logits) != 2 || ag_dim(logits, 0) < 1 || ag_dim(logits, 1) < 1) {
        ag_tape_fail(t, AG_ESHAPE, "%s: logits are %s, not [N,C] with N, C >= 1", who,
                     nni_shape_str(logits, shape, sizeof shape));
        return ag_tape_nil(t);
    }
    if (!labels) {
        ag_tape_fail(t, AG_EINVAL, "%s: labels is NULL", who);
        return ag_tape_nil(t);
    }
    int64_t n = ag_dim(logits, 0), c = ag_dim(logits, 1);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= c) {
            ag_tape_fail(t, AG_EINVAL, "%s: label %lld of row %lld is outside [0, %lld)", who,
                         (long long)labels[i], (long long)i, (long long)c);
            return ag_tape_nil(t);
        }
    if (!(smoothing >= 0.0 && smoothing < 1.0)) {
        ag_tape_fail(t, AG_EINVAL, "%s: label smoothing %g is outside [0, 1)", who, smoothing);
        return ag_tape_nil(t);
    }
    ag_tensor *loss = ag_cross_entropy(t, logits, labels);
    if (smoothing > 0.0) {
        ag_tensor *uniform = ag_neg(t, ag_mean(t, ag_log_softmax(t, logits, 1)));
        loss = ag_add(t, ag_mul_scalar(t, loss, 1.0 - smoothing),
                      ag_mul_scalar(t, uniform, smoothing));
    }
    return r == NN_REDUCE_SUM ? ag_mul_scalar(t, loss, (double)n) : loss;
}

/* relu(1 - y score): zero once the score is on y's side by a margin of 1. */
ag_tensor *nn_hinge_loss(ag_tape *t, ag_tensor *score, ag_tensor *target, nn_reduction r)
{
    static const char who[] = "nn_hinge_loss";
    if (!check_pair(t, who, score, target) || !check_reduction(t, who, r))
        return ag_tape_nil(t);
    for (int64_t i = 0; i < ag_numel(target); i++) {
        double y = ag_get(target, i);
        if (y != 1.0 && y != -1.0) {
            ag_tape_fail(t, AG_EINVAL, "%s: target element %lld is %g, not -1 or +1", who,
                         (long long)i, y);
            return ag_tape_nil(t);
        }
    }
    ag_tensor *margin = ag_add_scalar(t, ag_neg(t, ag_mul(t, target, score)), 1.0);
    return reduce(t, ag_relu(t, margin), r);
}
