/*
** schedule.c: learning-rate schedules as plain values and one function of
** the step count; nothing to allocate, nothing to free.
*/
#include "model_internal.h"

#include <math.h>

/* M_PI is POSIX, not C11. */
static const double pi = 3.14159265358979323846;

nn_schedule nn_schedule_constant(double base_lr)
{
    return (nn_schedule){.kind = NN_SCHEDULE_CONSTANT, .base_lr = base_lr};
}

nn_schedule nn_schedule_step(double base_lr, int64_t step_size, double gamma)
{
    return (nn_schedule){.kind = NN_SCHEDULE_STEP, .base_lr = base_lr, .step_size = step_size,
                         .gamma = gamma};
}

nn_schedule nn_schedule_exponential(double base_lr, double gamma)
{
    return (nn_schedule){.kind = NN_SCHEDULE_EXPONENTIAL, .base_lr = base_lr, .gamma = gamma};
}

nn_schedule nn_schedule_cosine(double base_lr, double min_lr, int64_t warmup, int64_t total)
{
    return (nn_schedule){.kind = NN_SCHEDULE_COSINE, .base_lr = base_lr, .min_lr = min_lr,
                         .warmup = warmup, .total = total};
}

static double cosine(const nn_schedule *s, int64_t step)
{
    if (s->warmup < 0 || s->total <= s->warmup)
        return NAN;
    if (step < s->warmup)
        return s->base_lr * (double)(step + 1) / (double)s->warmup;
    if (step >= s->total)
        return s->min_lr;
    double p = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    return s->min_lr + (s->base_lr - s->min_lr) * 0.5 * (1.0 + cos(pi * p));
}

double nn_schedule_lr(const nn_schedule *s, int64_t step)
{
    if (!s || step < 0)
        return NAN;
    switch (s->kind) {
    case NN_SCHEDULE_CONSTANT: return s->base_lr;
    case NN_SCHEDULE_STEP:
        return s->step_size >= 1 ? s->base_lr * pow(s->gamma, (double)(step / s->step_size)) : NAN;
    case NN_SCHEDULE_EXPONENTIAL: return s->base_lr * pow(s->gamma, (double)step);
    case NN_SCHEDULE_COSINE: return cosine(s, step);
    }
    return NAN;
}
