/*
** autograd_trace.h: optional, for anomaly mode (ag_tape_set_anomaly). Include
** it after autograd.h in the files whose op calls you want located: each op
** then passes through ag_tape_here with the caller's __FILE__ and __LINE__,
** so an anomaly names the line that made the bad value:
**
**     #include "autograd.h"
**     #include "autograd_trace.h"
**     ...
**     ag_tape_set_anomaly(t, 1);
**     ag_tensor *y = ag_log(t, x);       // x holds a 0: y holds -inf
**     if (ag_tape_status(t) == AG_ENUMERIC)
**         puts(ag_tape_errmsg(t));       // "anomaly: log at train.c:42 (tape entry 0)
**                                        //  gave -inf at element 0 of its result [3]; ..."
**
** Each op becomes a function-like macro of the same name, which calls the
** real function (a macro never expands its own name again) and evaluates
** 't' once. Taking an op's address (&ag_add) still gives the function. Ops
** that other code calls for you (nn's layers and losses, which are built
** without this header) report the line of the last traced op before them.
** Storing the location costs a call and two stores per op, whether anomaly
** mode is on or not: leave the header out of release builds if that counts.
*/
#ifndef AUTOGRAD_TRACE_H
#define AUTOGRAD_TRACE_H

#include "autograd.h"

#define AG_HERE(t) ag_tape_here((t), __FILE__, __LINE__)

#define ag_add(t, ...)            ag_add(AG_HERE(t), __VA_ARGS__)
#define ag_sub(t, ...)            ag_sub(AG_HERE(t), __VA_ARGS__)
#define ag_mul(t, ...)            ag_mul(AG_HERE(t), __VA_ARGS__)
#define ag_div(t, ...)            ag_div(AG_HERE(t), __VA_ARGS__)
#define ag_pow(t, ...)            ag_pow(AG_HERE(t), __VA_ARGS__)
#define ag_maximum(t, ...)        ag_maximum(AG_HERE(t), __VA_ARGS__)
#define ag_minimum(t, ...)        ag_minimum(AG_HERE(t), __VA_ARGS__)
#define ag_where(t, ...)          ag_where(AG_HERE(t), __VA_ARGS__)
#define ag_gt(t, ...)             ag_gt(AG_HERE(t), __VA_ARGS__)
#define ag_ge(t, ...)             ag_ge(AG_HERE(t), __VA_ARGS__)
#define ag_lt(t, ...)             ag_lt(AG_HERE(t), __VA_ARGS__)
#define ag_le(t, ...)             ag_le(AG_HERE(t), __VA_ARGS__)
#define ag_eq(t, ...)             ag_eq(AG_HERE(t), __VA_ARGS__)
#define ag_add_scalar(t, ...)     ag_add_scalar(AG_HERE(t), __VA_ARGS__)
#define ag_mul_scalar(t, ...)     ag_mul_scalar(AG_HERE(t), __VA_ARGS__)
#define ag_neg(t, ...)            ag_neg(AG_HERE(t), __VA_ARGS__)
#define ag_exp(t, ...)            ag_exp(AG_HERE(t), __VA_ARGS__)
#define ag_log(t, ...)            ag_log(AG_HERE(t), __VA_ARGS__)
#define ag_sqrt(t, ...)           ag_sqrt(AG_HERE(t), __VA_ARGS__)
#define ag_abs(t, ...)            ag_abs(AG_HERE(t), __VA_ARGS__)
#define ag_sign(t, ...)           ag_sign(AG_HERE(t), __VA_ARGS__)
#define ag_sin(t, ...)            ag_sin(AG_HERE(t), __VA_ARGS__)
#define ag_cos(t, ...)            ag_cos(AG_HERE(t), __VA_ARGS__)
#define ag_tanh(t, ...)           ag_tanh(AG_HERE(t), __VA_ARGS__)
#define ag_sigmoid(t, ...)        ag_sigmoid(AG_HERE(t), __VA_ARGS__)
#define ag_relu(t, ...)           ag_relu(AG_HERE(t), __VA_ARGS__)
#define ag_leaky_relu(t, ...)     ag_leaky_relu(AG_HERE(t), __VA_ARGS__)
#define ag_gelu(t, ...)           ag_gelu(AG_HERE(t), __VA_ARGS__)
#define ag_softplus(t, ...)       ag_softplus(AG_HERE(t), __VA_ARGS__)
#define ag_clamp(t, ...)          ag_clamp(AG_HERE(t), __VA_ARGS__)
#define ag_pow_scalar(t, ...)     ag_pow_scalar(AG_HERE(t), __VA_ARGS__)
#define ag_square(t, ...)         ag_square(AG_HERE(t), __VA_ARGS__)
#define ag_sum(t, ...)            ag_sum(AG_HERE(t), __VA_ARGS__)
#define ag_mean(t, ...)           ag_mean(AG_HERE(t), __VA_ARGS__)
#define ag_max(t, ...)            ag_max(AG_HERE(t), __VA_ARGS__)
#define ag_min(t, ...)            ag_min(AG_HERE(t), __VA_ARGS__)
#define ag_logsumexp(t, ...)      ag_logsumexp(AG_HERE(t), __VA_ARGS__)
#define ag_sum_axis(t, ...)       ag_sum_axis(AG_HERE(t), __VA_ARGS__)
#define ag_mean_axis(t, ...)      ag_mean_axis(AG_HERE(t), __VA_ARGS__)
#define ag_max_axis(t, ...)       ag_max_axis(AG_HERE(t), __VA_ARGS__)
#define ag_min_axis(t, ...)       ag_min_axis(AG_HERE(t), __VA_ARGS__)
#define ag_logsumexp_axis(t, ...) ag_logsumexp_axis(AG_HERE(t), __VA_ARGS__)
#define ag_sum_to(t, ...)         ag_sum_to(AG_HERE(t), __VA_ARGS__)
#define ag_reshape(t, ...)        ag_reshape(AG_HERE(t), __VA_ARGS__)
#define ag_permute(t, ...)        ag_permute(AG_HERE(t), __VA_ARGS__)
#define ag_transpose(t, ...)      ag_transpose(AG_HERE(t), __VA_ARGS__)
#define ag_slice(t, ...)          ag_slice(AG_HERE(t), __VA_ARGS__)
#define ag_concat(t, ...)         ag_concat(AG_HERE(t), __VA_ARGS__)
#define ag_broadcast_to(t, ...)   ag_broadcast_to(AG_HERE(t), __VA_ARGS__)
#define ag_cast(t, ...)           ag_cast(AG_HERE(t), __VA_ARGS__)
#define ag_matmul(t, ...)         ag_matmul(AG_HERE(t), __VA_ARGS__)
#define ag_dense(t, ...)          ag_dense(AG_HERE(t), __VA_ARGS__)
#define ag_softmax(t, ...)        ag_softmax(AG_HERE(t), __VA_ARGS__)
#define ag_log_softmax(t, ...)    ag_log_softmax(AG_HERE(t), __VA_ARGS__)
#define ag_cross_entropy(t, ...)  ag_cross_entropy(AG_HERE(t), __VA_ARGS__)

#endif
