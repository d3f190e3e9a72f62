/*
** optim_update.h: the optimizers' update loops, written once and included
** twice by optim.c: with T float / FN(x) x_f32, and with T double / FN(x)
** x_f64. An f32 model is updated in f32 with f32 state, as PyTorch does:
** half the memory traffic of a double state, and twice the lanes.
**
** Each loop is branch-free inside (the variants are split outside) over
** restrict pointers, so the compiler vectorises it; NNI_SIMD_CLONES adds an
** AVX-512 and AVX2 clones chosen at load time. sqrt vectorises because nn is built with
** -fno-math-errno (nothing here reads errno).
**
** Not a public header and not guarded: it is meant to be included twice.
*/

NNI_SIMD_CLONES
static void FN(sgd_loop)(int64_t n, T *restrict w, const T *restrict g, T lr, T wd)
{
    for (int64_t i = 0; i < n; i++)
        w[i] -= lr * (g[i] + wd * w[i]);
}

NNI_SIMD_CLONES
static void FN(sgd_momentum_loop)(int64_t n, T *restrict w, const T *restrict g,
                                  T *restrict b, T lr, T mu, T wd, int nesterov)
{
    if (nesterov) {
        for (int64_t i = 0; i < n; i++) {
            T d = g[i] + wd * w[i];
            b[i] = mu * b[i] + d;
            w[i] -= lr * (d + mu * b[i]);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            b[i] = mu * b[i] + (g[i] + wd * w[i]);
            w[i] -= lr * b[i];
        }
    }
}

/* Elements [off, off + n) of a state buffer of T; w and g point at the
** first of the n values and gradients already. */
#define AT(buf) ((T *)(buf) + off)
#define W ((T *)w)
#define G ((const T *)g)

static void FN(update_sgd)(const nn_optim *o, int64_t off, int64_t n, void *w, const void *g)
{
    if (o->state[0])
        FN(sgd_momentum_loop)(n, W, G, AT(o->state[0]), (T)o->lr, (T)o->momentum,
                              (T)o->weight_decay, o->nesterov);
    else
        FN(sgd_loop)(n, W, G, (T)o->lr, (T)o->weight_decay);
}

/* Adam and AdamW differ only in where weight decay enters: Adam adds wd * w
** to the gradient, AdamW shrinks w by (1 - lr * wd) first. */
NNI_SIMD_CLONES
static void FN(adam_loop)(int64_t n, T *restrict w, const T *restrict g, T *restrict m,
                          T *restrict v, T b1, T b2, T step, T root2, T eps, T wd, T shrink)
{
    for (int64_t i = 0; i < n; i++) {
        T d = g[i] + wd * w[i];
        m[i] = b1 * m[i] + (1 - b1) * d;
        v[i] = b2 * v[i] + (1 - b2) * d * d;
        w[i] = w[i] * shrink - step * m[i] / (SQRT(v[i]) / root2 + eps);
    }
}

static void FN(update_adam)(const nn_optim *o, int64_t off, int64_t n, void *w, const void *g)
{
    FN(adam_loop)(n, W, G, AT(o->state[0]), AT(o->state[1]), (T)o->beta1, (T)o->beta2,
                  (T)(o->lr / o->correct1), (T)sqrt(o->correct2), (T)o->eps,
                  (T)o->weight_decay, 1);
}

static void FN(update_adamw)(const nn_optim *o, int64_t off, int64_t n, void *w, const void *g)
{
    FN(adam_loop)(n, W, G, AT(o->state[0]), AT(o->state[1]), (T)o->beta1, (T)o->beta2,
                  (T)(o->lr / o->correct1), (T)sqrt(o->correct2), (T)o->eps, 0,
                  (T)(1.0 - o->lr * o->weight_decay));
}

NNI_SIMD_CLONES
static void FN(rmsprop_loop)(int64_t n, T *restrict w, const T *restrict g, T *restrict v,
                             T *restrict b, T lr, T a, T mu, T eps, T wd)
{
    if (b) {
        for (int64_t i = 0; i < n; i++) {
            T d = g[i] + wd * w[i];
            v[i] = a * v[i] + (1 - a) * d * d;
            b[i] = mu * b[i] + d / (SQRT(v[i]) + eps);
            w[i] -= lr * b[i];
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            T d = g[i] + wd * w[i];
            v[i] = a * v[i] + (1 - a) * d * d;
            w[i] -= lr * (d / (SQRT(v[i]) + eps));
        }
    }
}

static void FN(update_rmsprop)(const nn_optim *o, int64_t off, int64_t n, void *w, const void *g)
{
    FN(rmsprop_loop)(n, W, G, AT(o->state[0]), o->state[1] ? AT(o->state[1]) : NULL,
                     (T)o->lr, (T)o->alpha,
                     (T)o->momentum, (T)o->eps, (T)o->weight_decay);
}

NNI_SIMD_CLONES
static void FN(adagrad_loop)(int64_t n, T *restrict w, const T *restrict g, T *restrict s,
                             T lr, T eps, T wd)
{
    for (int64_t i = 0; i < n; i++) {
        T d = g[i] + wd * w[i];
        s[i] += d * d;
        w[i] -= lr * d / (SQRT(s[i]) + eps);
    }
}

static void FN(update_adagrad)(const nn_optim *o, int64_t off, int64_t n, void *w, const void *g)
{
    FN(adagrad_loop)(n, W, G, AT(o->state[0]), (T)o->lr, (T)o->eps, (T)o->weight_decay);
}

#undef AT
#undef W
#undef G
