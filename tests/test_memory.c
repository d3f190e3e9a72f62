/*
** test_memory.c: memory through the allocator hook. A training loop of fixed
** shapes allocates nothing after its first step; refusing any one allocation
** gives AG_ENOMEM with a message, never a crash, and once everything is
** freed no block is left (the hook counts them; CI adds LeakSanitizer).
*/
#include "autograd.h"
#include "alloc_hooks.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Criterion reports a test before its worker exits, so LeakSanitizer's report
** at exit would not fail it: each test asks for a check while it runs. */
static void assert_no_leaks(void)
{
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (above)");
#endif
}

enum { BATCH = 256, IN = 32, HIDDEN = 64, CLASSES = 10 };

/* A two-layer perceptron whose parameters come from the hook. */
typedef struct mlp {
    ag_tensor *w1, *b1, *w2, *b2;
} mlp;

static void mlp_free(mlp *m)
{
    ag_param_free(m->w1);
    ag_param_free(m->b1);
    ag_param_free(m->w2);
    ag_param_free(m->b2);
    memset(m, 0, sizeof *m);
}

/* False (with nothing left allocated) when the hook refused a parameter. */
static bool mlp_new(mlp *m, alloc_hooks *h)
{
    m->w1 = ag_param_new_alloc(hook_alloc, h, AG_F64, 2, (int64_t[]){IN, HIDDEN});
    m->b1 = ag_param_new_alloc(hook_alloc, h, AG_F64, 1, (int64_t[]){HIDDEN});
    m->w2 = ag_param_new_alloc(hook_alloc, h, AG_F64, 2, (int64_t[]){HIDDEN, CLASSES});
    m->b2 = ag_param_new_alloc(hook_alloc, h, AG_F64, 1, (int64_t[]){CLASSES});
    if (!m->w1 || !m->b1 || !m->w2 || !m->b2) {
        mlp_free(m);
        return false;
    }
    ag_rng r;
    ag_rng_seed(&r, 42);
    ag_fill_normal(m->w1, &r, 0, 0.2);
    ag_fill_normal(m->w2, &r, 0, 0.2);
    return true;
}

/* A fixed batch: inputs and labels that depend on them, so it can be learnt. */
typedef struct batch {
    double x[BATCH * IN];
    int64_t labels[BATCH];
} batch;

static void batch_init(batch *b)
{
    ag_rng r;
    ag_rng_seed(&r, 7);
    for (int i = 0; i < BATCH; i++) {
        int best = 0;
        for (int j = 0; j < IN; j++) {
            b->x[i * IN + j] = ag_rng_normal(&r);
            if (j < CLASSES && b->x[i * IN + j] > b->x[i * IN + best])
                best = j;
        }
        b->labels[i] = best;
    }
}

/* Records the forward pass and runs backward; returns the loss. */
static double forward_backward(ag_tape *t, const mlp *m, const batch *b)
{
    ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){BATCH, IN}, b->x);
    ag_tensor *h = ag_relu(t, ag_add(t, ag_matmul(t, x, m->w1), m->b1));
    ag_tensor *logits = ag_add(t, ag_matmul(t, h, m->w2), m->b2);
    ag_tensor *loss = ag_cross_entropy(t, logits, b->labels);
    ag_backward(t, loss);
    return ag_item(loss);
}

/* Plain gradient descent, then zeroed gradients: touches no allocator. */
static void sgd(const mlp *m, double lr)
{
    ag_tensor *ps[] = {m->w1, m->b1, m->w2, m->b2};
    for (int k = 0; k < 4; k++) {
        double *v = ag_data(ps[k]), *g = ag_data(ag_grad(ps[k]));
        for (int64_t i = 0; i < ag_numel(ps[k]); i++)
            v[i] -= lr * g[i];
        ag_zero_grad(ps[k]);
    }
}

static void assert_all_freed(const alloc_hooks *h, const char *when)
{
    cr_assert_eq(h->live, 0, "%s: %ld blocks (%zu bytes) leaked", when, h->live, h->live_bytes);
    cr_assert_eq(h->live_bytes, 0, "%s", when);
    cr_assert_eq(h->bad_osize, 0, "%s: the library passed a wrong osize %ld times", when,
                 h->bad_osize);
}

Test(memory, training_steps_allocate_nothing_after_the_first)
{
    static batch b;
    batch_init(&b);
    alloc_hooks h = hooks_counting();
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
    cr_assert_not_null(t);
    mlp m;
    cr_assert(mlp_new(&m, &h));
    double first = 0, last = 0;
    long after_first = 0;
    size_t entries = 0, bytes = 0;
    for (int step = 0; step < 30; step++) {
        double loss = forward_backward(t, &m, &b);
        cr_assert_eq(ag_tape_status(t), AG_OK, "step %d: %s", step, ag_tape_errmsg(t));
        cr_assert(isfinite(loss));
        if (step == 0) {
            first = loss;
            after_first = h.requests;
            entries = ag_tape_entries(t);
            bytes = ag_tape_bytes(t);
            cr_assert_gt(bytes, 1 << 20, "the pass should need several arena chunks");
        } else {
            cr_assert_eq(h.requests, after_first, "step %d allocated %ld times", step,
                         h.requests - after_first);
            cr_assert_eq(ag_tape_entries(t), entries);
            cr_assert_eq(ag_tape_bytes(t), bytes);
        }
        last = loss;
        sgd(&m, 0.5);
        ag_tape_reset(t);
    }
    cr_assert_lt(last, first * 0.7, "the loop trains: loss %g -> %g", first, last);
    cr_assert_eq(h.refused, 0);
    ag_tape_free(t);
    mlp_free(&m);
    assert_all_freed(&h, "end");
    assert_no_leaks();
}

/* Runs tape + parameters + one step with the 'k'-th request refused, checks
** how it failed, then that the same tape recovers; frees everything.
** Returns whether the refusal happened (false once k is past the last request). */
static bool run_refusing(long k, const batch *b, double want_loss)
{
    alloc_hooks h = hooks_failing_at(k);
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
    if (!t) {
        cr_assert_eq(h.refused, 1, "k=%ld: NULL tape without a refusal", k);
        assert_all_freed(&h, "tape refused");
        return true;
    }
    mlp m;
    if (!mlp_new(&m, &h)) {
        cr_assert_eq(h.refused, 1, "k=%ld: NULL parameter without a refusal", k);
        ag_tape_free(t);
        assert_all_freed(&h, "parameter refused");
        return true;
    }
    double loss = forward_backward(t, &m, b);
    bool refused = h.refused > 0;
    if (refused) {
        cr_assert_eq(ag_tape_status(t), AG_ENOMEM, "k=%ld: status %s (%s)", k,
                     ag_status_str(ag_tape_status(t)), ag_tape_errmsg(t));
        cr_assert_not_null(strstr(ag_tape_errmsg(t), "out of memory"), "k=%ld: message '%s'", k,
                           ag_tape_errmsg(t));
        /* the tape recovers once memory is there again */
        ag_tape_reset(t);
        for (int i = 0; i < 4; i++)
            ag_zero_grad(((ag_tensor *[]){m.w1, m.b1, m.w2, m.b2})[i]);
        loss = forward_backward(t, &m, b);
    }
    cr_assert_eq(ag_tape_status(t), AG_OK, "k=%ld: %s", k, ag_tape_errmsg(t));
    cr_assert_eq(loss, want_loss, "k=%ld: loss %.17g, want %.17g", k, loss, want_loss);
    cr_assert_eq(h.refused, refused ? 1 : 0);
    ag_tape_free(t);
    mlp_free(&m);
    assert_all_freed(&h, "after the step");
    return refused;
}

Test(memory, refusing_each_allocation_in_turn)
{
    static batch b;
    batch_init(&b);
    /* a clean run: the reference loss and the number of requests */
    alloc_hooks h = hooks_counting();
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
    mlp m;
    cr_assert(mlp_new(&m, &h));
    double want = forward_backward(t, &m, &b);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    long total = h.requests;
    ag_tape_free(t);
    mlp_free(&m);
    assert_all_freed(&h, "clean run");
    cr_assert_geq(total, 8, "tape, 4 parameters and several arena chunks");

    for (long k = 1; k <= total; k++)
        cr_assert(run_refusing(k, &b, want), "request %ld of %ld was never made", k, total);
    cr_assert_not(run_refusing(total + 1, &b, want));
    assert_no_leaks();
}

/* A long chain of scalar ops: the entry list grows by realloc several times,
** and a refused growth must keep (and later free) the old list. */
static double chain(ag_tape *t, int n)
{
    ag_tensor *x0 = ag_requires_grad(ag_scalar(t, AG_F64, 0.5));
    ag_tensor *x = x0;
    for (int i = 0; i < n; i++)
        x = ag_sin(t, ag_add_scalar(t, x, 0.001));
    ag_backward(t, x);
    return ag_grad_item(x0);
}

Test(memory, refusals_in_a_long_chain)
{
    enum { N = 5000 };
    alloc_hooks h = hooks_counting();
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
    double want = chain(t, N);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_gt(ag_tape_entries(t), 4096, "enough entries to grow the list three times");
    long total = h.requests;
    ag_tape_free(t);
    assert_all_freed(&h, "clean chain");

    for (long k = 2; k <= total; k++) {
        h = hooks_failing_at(k);
        t = ag_tape_new_alloc(hook_alloc, &h);
        cr_assert_not_null(t);
        double got = chain(t, N);
        cr_assert_eq(h.refused, 1, "k=%ld", k);
        cr_assert_eq(ag_tape_status(t), AG_ENOMEM, "k=%ld: %s", k, ag_tape_errmsg(t));
        cr_assert_not_null(strstr(ag_tape_errmsg(t), "out of memory"), "k=%ld: '%s'", k,
                           ag_tape_errmsg(t));
        cr_assert_eq(got, 0.0, "k=%ld: no gradient reaches x0 from a failed pass", k);
        ag_tape_reset(t);
        cr_assert_eq(chain(t, N), want, "k=%ld: the tape recovers", k);
        ag_tape_free(t);
        assert_all_freed(&h, "refused chain");
    }
    assert_no_leaks();
}

/* Refusing everything from some point on: every op after it fails cleanly. */
Test(memory, memory_that_never_comes_back)
{
    static batch b;
    batch_init(&b);
    alloc_hooks clean = hooks_counting();
    ag_tape *ct = ag_tape_new_alloc(hook_alloc, &clean);
    mlp cm;
    cr_assert(mlp_new(&cm, &clean));
    forward_backward(ct, &cm, &b);
    ag_tape_free(ct);
    mlp_free(&cm);
    /* requests 1 to 5 are the tape and the parameters */
    for (long from = 6; from <= clean.requests; from++) {
        alloc_hooks h = {.fail_from = from};
        ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
        mlp m;
        cr_assert(mlp_new(&m, &h));
        forward_backward(t, &m, &b);
        cr_assert_eq(ag_tape_status(t), AG_ENOMEM, "from=%ld", from);
        cr_assert_gt(h.refused, 0);
        ag_tape_reset(t);
        forward_backward(t, &m, &b);
        cr_assert_eq(ag_tape_status(t), AG_ENOMEM, "from=%ld: still no memory", from);
        ag_tape_free(t);
        mlp_free(&m);
        assert_all_freed(&h, "never comes back");
    }
    assert_no_leaks();
}

Test(memory, constructors_with_a_failing_hook_return_null)
{
    alloc_hooks h = hooks_failing_at(1);
    cr_assert_null(ag_param_new_alloc(hook_alloc, &h, AG_F64, 2, (int64_t[]){3, 4}));
    cr_assert_eq(h.refused, 1);
    h = hooks_failing_at(1);
    cr_assert_null(ag_tape_new_alloc(hook_alloc, &h));
    h = hooks_failing_at(1);
    double v[2], g[2];
    cr_assert_null(ag_param_view(hook_alloc, &h, AG_F64, 1, (int64_t[]){2}, v, g));
    assert_all_freed(&h, "constructors");

    /* the same hook that refuses nothing works, and frees what it gave */
    h = hooks_counting();
    ag_tensor *p = ag_param_new_alloc(hook_alloc, &h, AG_F32, 1, (int64_t[]){100});
    ag_tensor *view = ag_param_view(hook_alloc, &h, AG_F64, 1, (int64_t[]){2}, v, g);
    cr_assert_not_null(p);
    cr_assert_not_null(view);
    cr_assert_eq(h.live, 2);
    ag_param_free(p);
    ag_param_free(view);
    assert_all_freed(&h, "parameters");
    assert_no_leaks();
}

/* A tape that is freed in the middle of anything, error or not, leaks nothing. */
Test(memory, freeing_a_tape_in_error)
{
    alloc_hooks h = hooks_counting();
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
    ag_tensor *x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){100000}));
    ag_tensor *y = ag_sum(t, ag_exp(t, x));
    ag_add(t, y, ag_zeros(t, AG_F64, 1, (int64_t[]){2}));   /* fine: [] broadcasts */
    ag_matmul(t, x, ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    cr_assert_eq(ag_tape_status(t), AG_ESHAPE);
    cr_assert_gt(h.live, 2);
    ag_tape_free(t);
    assert_all_freed(&h, "tape in error");
    assert_no_leaks();
}

/* A parameter keeps per-pass bookkeeping from the tapes it was used on. Here
** it was used twice on a tape that is gone; on a new tape, the first
** allocation backward makes is refused, wherever the arena's chunk boundary
** falls (the padding moves it), and nothing may touch the old tape's memory. */
Test(memory, refusal_in_backward_after_an_earlier_tape)
{
    ag_tensor *p = ag_param_scalar(AG_F64, 3.0);
    int refusals = 0;
    for (int64_t pad = 7000; pad < 8192; pad += 4) {
        ag_zero_grad(p);
        ag_tape *old = ag_tape_new();
        ag_backward(old, ag_mul(old, p, p));
        cr_assert_eq(ag_grad_item(p), 6.0);
        ag_tape_free(old);

        alloc_hooks h = hooks_counting();
        ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
        ag_zeros(t, AG_F64, 1, (int64_t[]){pad});
        /* p is the first leaf the pass reaches: y = 2 p^2 */
        ag_tensor *y = ag_mul(t, ag_mul(t, p, p), ag_scalar(t, AG_F64, 2.0));
        cr_assert_eq(ag_tape_status(t), AG_OK, "pad %lld: %s", (long long)pad, ag_tape_errmsg(t));
        h.fail_at = h.requests + 1;   /* the first request backward makes */
        ag_backward(t, y);
        if (h.refused) {
            refusals++;
            cr_assert_eq(ag_tape_status(t), AG_ENOMEM, "pad %lld", (long long)pad);
            cr_assert_eq(ag_grad_item(p), 6.0, "pad %lld: a failed pass adds nothing",
                         (long long)pad);
        } else {
            cr_assert_eq(ag_tape_status(t), AG_OK, "pad %lld: %s", (long long)pad,
                         ag_tape_errmsg(t));
            cr_assert_eq(ag_grad_item(p), 6.0 + 4 * 3.0, "pad %lld", (long long)pad);
        }
        ag_tape_free(t);
        assert_all_freed(&h, "padded");
    }
    cr_assert_gt(refusals, 0, "some padding puts a chunk boundary inside backward");
    ag_param_free(p);
    assert_no_leaks();
}
