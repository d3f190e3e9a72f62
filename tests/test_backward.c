/*
** test_backward.c: what backward computes: the chain rule on a hand-worked
** chain, the sum over paths for reused values, accumulation across passes,
** ag_gradients, seeds, very long chains, and which tensors get gradients.
*/
#include "internal.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static ag_tape *tape;

static void setup(void)
{
    tape = ag_tape_new();
    cr_assert_not_null(tape);
}

static void teardown(void)
{
    ag_tape_free(tape);
    tape = NULL;
}

static void assert_ok(void)
{
    cr_assert_eq(ag_tape_status(tape), AG_OK, "tape error: %s", ag_tape_errmsg(tape));
}

static ag_tensor *leaf(double v) { return ag_requires_grad(ag_scalar(tape, AG_F64, v)); }

TestSuite(backward, .init = setup, .fini = teardown);

/* B = ab A, C = bc B, D = cd C, L = (D - 17)^2 with A = 3, ab = 0.5, bc = 1.5,
** cd = 2. By hand: B = 1.5, C = 2.25, D = 4.5, L = 156.25; dL/dD = 2(D - 17)
** = -25, dL/dC = -50, dL/dB = -75, dL/dab = -75 A = -225, dL/dbc = -50 B = -75,
** dL/dcd = -25 C = -56.25. */
static void chain(ag_dtype dt, double tol)
{
    ag_tensor *ab = ag_param_scalar(dt, 0.5), *bc = ag_param_scalar(dt, 1.5),
              *cd = ag_param_scalar(dt, 2.0);
    ag_tensor *A = ag_scalar(tape, dt, 3.0);
    ag_tensor *B = ag_mul(tape, ab, A);
    ag_tensor *C = ag_mul(tape, bc, B);
    ag_tensor *D = ag_mul(tape, cd, C);
    ag_tensor *L = ag_square(tape, ag_sub(tape, D, ag_scalar(tape, dt, 17.0)));
    ag_backward(tape, L);
    assert_ok();
    cr_assert_float_eq(ag_item(L), 156.25, tol);
    cr_assert_float_eq(ag_grad_item(ab), -225.0, tol);
    cr_assert_float_eq(ag_grad_item(bc), -75.0, tol);
    cr_assert_float_eq(ag_grad_item(cd), -56.25, tol);
    /* intermediates keep their gradients too */
    cr_assert_float_eq(ag_grad_item(L), 1.0, tol);
    cr_assert_float_eq(ag_grad_item(D), -25.0, tol);
    cr_assert_float_eq(ag_grad_item(C), -50.0, tol);
    cr_assert_float_eq(ag_grad_item(B), -75.0, tol);
    cr_assert_eq(ag_dtype_of(ag_grad(B)), dt);
    cr_assert_null(ag_grad(A), "a constant gets no gradient");
    ag_param_free(ab);
    ag_param_free(bc);
    ag_param_free(cd);
}

Test(backward, chain_f64) { chain(AG_F64, 1e-12); }
Test(backward, chain_f32) { chain(AG_F32, 1e-4); }

Test(backward, reused_input_mul)
{
    ag_tensor *x = leaf(3.0);
    ag_backward(tape, ag_mul(tape, x, x));
    assert_ok();
    cr_assert_float_eq(ag_grad_item(x), 6.0, 1e-12, "d(x*x)/dx = 2x");
}

Test(backward, reused_input_add)
{
    ag_tensor *x = leaf(3.0);
    ag_backward(tape, ag_add(tape, x, x));
    assert_ok();
    cr_assert_float_eq(ag_grad_item(x), 2.0, 1e-12);
    ag_tensor *y = leaf(1.0);
    ag_backward(tape, ag_add(tape, ag_add(tape, y, y), y));
    assert_ok();
    cr_assert_float_eq(ag_grad_item(y), 3.0, 1e-12, "three uses, three paths");
}

/* a -> b = sin a, a -> c = a^2, d = b c: dd/da = cos(a) a^2 + 2 a sin(a). */
Test(backward, diamond)
{
    double a0 = 0.7;
    ag_tensor *a = leaf(a0);
    ag_tensor *b = ag_sin(tape, a);
    ag_tensor *c = ag_mul(tape, a, a);
    ag_tensor *d = ag_mul(tape, b, c);
    ag_backward(tape, d);
    assert_ok();
    cr_assert_float_eq(ag_grad_item(a), cos(a0) * a0 * a0 + 2 * a0 * sin(a0), 1e-12);
    cr_assert_float_eq(ag_grad_item(b), a0 * a0, 1e-12);
    cr_assert_float_eq(ag_grad_item(c), sin(a0), 1e-12);
}

/* y = sum(x * x + x) over a vector: gradient 2x + 1 elementwise. */
Test(backward, reused_vector_with_broadcast)
{
    ag_tensor *x = ag_requires_grad(ag_arange(tape, AG_F64, -1, 2, 1));
    ag_tensor *s = ag_requires_grad(ag_scalar(tape, AG_F64, 2));
    /* s broadcasts over x: its gradient sums over the three elements */
    ag_tensor *y = ag_sum(tape, ag_add(tape, ag_mul(tape, x, x), ag_mul(tape, x, s)));
    ag_backward(tape, y);
    assert_ok();
    ag_tensor *g = ag_grad(x);
    cr_assert_not_null(g);
    cr_assert_eq(ag_rank(g), 1);
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(ag_get(g, i), 2 * ag_get(x, i) + 2, 1e-12);
    cr_assert_eq(ag_rank(ag_grad(s)), 0, "the gradient has the input's shape");
    cr_assert_float_eq(ag_grad_item(s), -1 + 0 + 1, 1e-12);
}

Test(backward, bias_broadcast_over_rows)
{
    ag_tensor *x = ag_ones(tape, AG_F64, 2, (int64_t[]){4, 3});
    ag_tensor *b = ag_requires_grad(ag_zeros(tape, AG_F64, 1, (int64_t[]){3}));
    ag_backward(tape, ag_sum(tape, ag_add(tape, x, b)));
    assert_ok();
    ag_tensor *g = ag_grad(b);
    cr_assert_eq(ag_numel(g), 3);
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(ag_get(g, i), 4.0, 1e-12);
}

/* Two backward passes without zeroing add twice, as PyTorch does; ag_zero_grad
** starts over. */
Test(backward, accumulates_until_zeroed)
{
    ag_tensor *p = ag_param_scalar(AG_F64, 2.0);
    ag_tensor *x = leaf(5.0);
    ag_tensor *h = ag_mul(tape, p, x);
    ag_tensor *y = ag_mul(tape, h, h);   /* y = (p x)^2: dy/dp = 2 p x^2, dy/dx = 2 p^2 x */
    ag_backward(tape, y);
    assert_ok();
    cr_assert_float_eq(ag_grad_item(p), 100.0, 1e-12);
    cr_assert_float_eq(ag_grad_item(x), 40.0, 1e-12);
    cr_assert_float_eq(ag_grad_item(h), 20.0, 1e-12);
    ag_backward(tape, y);
    assert_ok();
    cr_assert_float_eq(ag_grad_item(p), 200.0, 1e-12);
    cr_assert_float_eq(ag_grad_item(x), 80.0, 1e-12);
    cr_assert_float_eq(ag_grad_item(h), 40.0, 1e-12);
    cr_assert_float_eq(ag_grad_item(y), 2.0, 1e-12);
    ag_backward(tape, y);
    assert_ok();
    cr_assert_float_eq(ag_grad_item(p), 300.0, 1e-12);

    ag_zero_grads(2, (ag_tensor *[]){p, x});
    cr_assert_eq(ag_grad_item(p), 0.0);
    cr_assert_not_null(ag_grad(p), "a parameter keeps its (zeroed) gradient buffer");
    cr_assert_null(ag_grad(x), "a tape tensor forgets its gradient");
    ag_zero_grad(h);
    ag_backward(tape, y);
    assert_ok();
    cr_assert_float_eq(ag_grad_item(p), 100.0, 1e-12);
    cr_assert_float_eq(ag_grad_item(x), 40.0, 1e-12);
    cr_assert_float_eq(ag_grad_item(h), 20.0, 1e-12);
    ag_param_free(p);
}

Test(backward, accumulates_vectors)
{
    ag_tensor *x = ag_requires_grad(ag_arange(tape, AG_F64, 1, 4, 1));
    ag_tensor *y = ag_sum(tape, ag_mul(tape, x, x));
    ag_backward(tape, y);
    ag_backward(tape, y);
    assert_ok();
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(ag_get(ag_grad(x), i), 4 * (i + 1), 1e-12);
}

/* ag_gradients hands back dy/dx without writing any .grad; an input y does
** not depend on gets zeros of its own shape. */
Test(backward, gradients_leave_grad_alone)
{
    ag_tensor *p = ag_param_new(AG_F64, 1, (int64_t[]){2});
    ag_fill(p, 3.0);
    ag_tensor *x = ag_requires_grad(ag_arange(tape, AG_F64, 1, 3, 1));
    ag_tensor *unrelated = ag_requires_grad(ag_ones(tape, AG_F64, 2, (int64_t[]){2, 2}));
    ag_tensor *constant = ag_ones(tape, AG_F64, 0, NULL);
    ag_tensor *y = ag_sum(tape, ag_mul(tape, p, x));
    ag_tensor *out[4];
    ag_gradients(tape, y, NULL, 4, (ag_tensor *[]){p, x, unrelated, constant}, out, 0);
    assert_ok();
    cr_assert_eq(ag_get(out[0], 0), 1.0);
    cr_assert_eq(ag_get(out[0], 1), 2.0);
    cr_assert_eq(ag_get(out[1], 0), 3.0);
    cr_assert_eq(ag_get(out[1], 1), 3.0);
    cr_assert_eq(ag_rank(out[2]), 2);
    cr_assert_eq(ag_numel(out[2]), 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(ag_get(out[2], i), 0.0);
    cr_assert_eq(ag_rank(out[3]), 0);
    cr_assert_eq(ag_item(out[3]), 0.0);
    cr_assert_eq(ag_get(ag_grad(p), 0), 0.0, "the parameter's .grad is untouched");
    cr_assert_null(ag_grad(x));
    cr_assert_null(ag_grad(y));
    ag_param_free(p);
}

/* A tensor that fed an earlier pass (here a parameter, before a reset, and a
** leaf that was itself an output) must read as unrelated to a later one. */
Test(backward, gradients_forget_earlier_passes)
{
    ag_tensor *p = ag_param_scalar(AG_F64, 2.0), *q = ag_param_scalar(AG_F64, 5.0);
    ag_backward(tape, ag_mul(tape, p, p));
    assert_ok();
    ag_tape_reset(tape);
    /* fill the arena again so stale pointers would read other numbers */
    for (int i = 0; i < 8; i++)
        ag_full(tape, AG_F64, 1, (int64_t[]){4}, 123.0);
    ag_tensor *y = ag_mul(tape, q, q);
    ag_tensor *out[2];
    ag_gradients(tape, y, NULL, 2, (ag_tensor *[]){p, q}, out, 0);
    assert_ok();
    cr_assert_eq(ag_item(out[0]), 0.0, "y does not use p on this tape");
    cr_assert_eq(ag_item(out[1]), 10.0);

    ag_tensor *x = leaf(4.0);
    ag_backward(tape, x);   /* dx/dx = 1 */
    assert_ok();
    cr_assert_eq(ag_grad_item(x), 1.0);
    ag_gradients(tape, y, NULL, 1, &x, out, 0);
    assert_ok();
    cr_assert_eq(ag_item(out[0]), 0.0, "y does not depend on x");
    ag_param_free(p);
    ag_param_free(q);
}

Test(backward, gradients_with_seed_and_create_graph)
{
    ag_tensor *x = ag_requires_grad(ag_arange(tape, AG_F64, 1, 4, 1));
    ag_tensor *y = ag_mul(tape, ag_mul(tape, x, x), x);   /* x^3 */
    ag_tensor *seed = ag_tensor_from(tape, AG_F64, 1, (int64_t[]){3}, (double[]){1, 0, 2});
    ag_tensor *dy;
    ag_gradients(tape, y, seed, 1, &x, &dy, 1);
    assert_ok();
    for (int i = 0; i < 3; i++) {
        double xi = i + 1, si = ag_get(seed, i);
        cr_assert_float_eq(ag_get(dy, i), 3 * xi * xi * si, 1e-12);
    }
    /* dy was recorded, so it differentiates again: d/dx sum(3 x^2 s) = 6 x s */
    cr_assert(ag_requires_grad_of(dy));
    ag_tensor *d2;
    ag_gradients(tape, ag_sum(tape, dy), NULL, 1, &x, &d2, 0);
    assert_ok();
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(ag_get(d2, i), 6 * (i + 1) * ag_get(seed, i), 1e-12);
}

/* dx_n/dx_0 = c^n for x_{k+1} = c x_k: a million entries, replayed by a loop
** rather than recursion, so no stack depth is involved. */
Test(backward, million_op_chain)
{
    enum { N = 1000000 };
    const double c = 1.000001;
    ag_tensor *x0 = leaf(1.0);
    ag_tensor *k = ag_scalar(tape, AG_F64, c);
    ag_tensor *x = x0;
    for (int i = 0; i < N; i++)
        x = ag_mul(tape, x, k);
    assert_ok();
    cr_assert_eq(ag_tape_entries(tape), (size_t)N);
    ag_backward(tape, x);
    assert_ok();
    double want = pow(c, N);
    cr_assert_float_eq(ag_item(x), want, 1e-8 * want);
    cr_assert_float_eq(ag_grad_item(x0), want, 1e-8 * want);
}

/* Tensors recorded on the tape that do not lead to the output get nothing. */
Test(backward, unreached_part_gets_no_gradient)
{
    ag_tensor *x = leaf(2.0), *w = leaf(3.0);
    ag_tensor *side = ag_mul(tape, x, w);   /* recorded, but not on y's path */
    ag_tensor *y = ag_mul(tape, x, ag_scalar(tape, AG_F64, 4.0));
    ag_tensor *after = ag_exp(tape, x);     /* recorded after y */
    ag_backward(tape, y);
    assert_ok();
    cr_assert_eq(ag_grad_item(x), 4.0);
    cr_assert_null(ag_grad(w));
    cr_assert_null(ag_grad(side));
    cr_assert_null(ag_grad(after));
}

Test(backward, seed_for_non_scalar_output)
{
    ag_tensor *x = ag_requires_grad(ag_arange(tape, AG_F64, 1, 4, 1));
    ag_tensor *y = ag_mul(tape, x, x);
    ag_tensor *seed = ag_tensor_from(tape, AG_F64, 1, (int64_t[]){3}, (double[]){1, 10, 100});
    ag_backward_seed(tape, y, seed);
    assert_ok();
    cr_assert_eq(ag_get(ag_grad(x), 0), 2.0);
    cr_assert_eq(ag_get(ag_grad(x), 1), 40.0);
    cr_assert_eq(ag_get(ag_grad(x), 2), 600.0);
    cr_assert_eq(ag_get(ag_grad(y), 1), 10.0, "the output's gradient is the seed");
    cr_assert_eq(ag_get(seed, 1), 10.0, "the seed is not modified");
    ag_backward_seed(tape, y, seed);
    assert_ok();
    cr_assert_eq(ag_get(ag_grad(x), 2), 1200.0);
    cr_assert_eq(ag_get(seed, 2), 100.0, "accumulating does not write into the seed");
}

Test(backward, output_that_is_a_leaf)
{
    ag_tensor *x = ag_requires_grad(ag_ones(tape, AG_F64, 1, (int64_t[]){1}));
    ag_backward(tape, x);
    assert_ok();
    cr_assert_eq(ag_grad_item(x), 1.0);
    ag_tensor *p = ag_param_scalar(AG_F32, 3.0);
    ag_backward(tape, p);
    assert_ok();
    cr_assert_eq(ag_grad_item(p), 1.0);
    ag_param_free(p);
}

/* Parameters shared by two tapes collect from both. */
Test(backward, parameter_on_two_tapes)
{
    ag_tape *other = ag_tape_new();
    ag_tensor *p = ag_param_scalar(AG_F64, 3.0);
    ag_backward(tape, ag_mul(tape, p, ag_scalar(tape, AG_F64, 2.0)));
    ag_backward(other, ag_mul(other, p, p));
    assert_ok();
    cr_assert_eq(ag_tape_status(other), AG_OK);
    cr_assert_eq(ag_grad_item(p), 2.0 + 6.0);
    ag_param_free(p);
    ag_tape_free(other);
}

/* With a matrix product, a relu and a loss: the standard step, checked
** against hand-computed numbers. */
Test(backward, small_network_by_hand)
{
    ag_tensor *W = ag_param_new(AG_F64, 2, (int64_t[]){2, 2});
    double wv[] = {1, -1, 2, 0.5};
    for (int i = 0; i < 4; i++)
        ag_set(W, i, wv[i]);
    ag_tensor *x = ag_tensor_from(tape, AG_F64, 2, (int64_t[]){1, 2}, (double[]){1, 2});
    ag_tensor *h = ag_relu(tape, ag_matmul(tape, x, W));   /* [1*1+2*2, -1+1] = [5, 0] */
    ag_tensor *loss = ag_sum(tape, h);
    ag_backward(tape, loss);
    assert_ok();
    cr_assert_eq(ag_get(h, 0), 5.0);
    cr_assert_eq(ag_get(h, 1), 0.0);
    /* dloss/dW[i][j] = x[i] * [h_j > 0] */
    double want[] = {1, 0, 2, 0};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(ag_get(ag_grad(W), i), want[i], "dW[%d]", i);
    ag_param_free(W);
}

/* A result computed from constants is not on the tape; marking it makes it a
** leaf whose history is forgotten. */
Test(backward, unrecorded_result_becomes_a_leaf)
{
    ag_tensor *c = ag_mul(tape, ag_scalar(tape, AG_F64, 2), ag_scalar(tape, AG_F64, 3));
    cr_assert_eq(ag_tape_entries(tape), 0);
    cr_assert_eq(ag_requires_grad(c), c);
    assert_ok();
    cr_assert_str_eq(ag_op_name(c), "");
    cr_assert_eq(ag_num_inputs(c), 0);
    ag_tensor *y = ag_mul(tape, c, c);
    ag_backward(tape, y);
    assert_ok();
    cr_assert_eq(ag_grad_item(c), 12.0);
}

/* Regressions found in review. */

Test(backward, gradients_do_not_share_the_callers_seed)
{
    /* The Jacobian of y = x + b row by row, refilling one seed buffer. */
    ag_tensor *x = ag_requires_grad(ag_tensor_from(tape, AG_F64, 1, (int64_t[]){3},
                                                   (double[]){1, 2, 3}));
    ag_tensor *y = ag_add(tape, x, ag_scalar(tape, AG_F64, 5));
    ag_tensor *seed = ag_zeros(tape, AG_F64, 1, (int64_t[]){3});
    ag_tensor *rows[3];
    for (int i = 0; i < 3; i++) {
        ag_fill(seed, 0);
        ag_set(seed, i, 1);
        ag_gradients(tape, y, seed, 1, &x, &rows[i], 0);
    }
    assert_ok();
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            cr_assert_eq(ag_get(rows[i], j), i == j, "J[%d][%d] = %g", i, j, ag_get(rows[i], j));
    /* ag_backward_seed likewise keeps its own copy. */
    ag_fill(seed, 1);
    ag_backward_seed(tape, y, seed);
    ag_fill(seed, 2);
    assert_ok();
    cr_assert_eq(ag_get(ag_grad(x), 0), 1);
}

Test(backward, a_parameters_gradient_cannot_require_grad)
{
    ag_tensor *p = ag_param_scalar(AG_F64, 2);
    ag_backward(tape, ag_mul(tape, p, p));
    ag_tensor *g = ag_grad(p);
    /* It belongs to no tape, so there is nowhere to report: it is refused. */
    ag_requires_grad(g);
    cr_assert_eq(ag_requires_grad_of(g), 0);
    ag_tape_reset(tape);
    ag_backward(tape, ag_mul(tape, p, g));   /* used as a constant: no crash */
    assert_ok();
    cr_assert_float_eq(ag_grad_item(p), 4 + 4, 1e-12);
    ag_param_free(p);
}

Test(backward, zero_size_broadcast_gives_each_input_its_shape)
{
    ag_tensor *a = ag_requires_grad(ag_zeros(tape, AG_F64, 2, (int64_t[]){0, 1}));
    ag_tensor *b = ag_requires_grad(ag_zeros(tape, AG_F64, 2, (int64_t[]){0, 3}));
    ag_backward(tape, ag_sum(tape, ag_add(tape, a, b)));
    assert_ok();
    cr_assert_eq(ag_rank(ag_grad(a)), 2);
    cr_assert_eq(ag_shape(ag_grad(a))[1], 1);
    cr_assert_eq(ag_shape(ag_grad(b))[1], 3);
}

/* A tape backpropagated many times clears only what the last pass reached,
** and a pass stops once every gradient is used: passes over disjoint parts,
** then one reaching back below them, then one over everything, each give
** the gradients a fresh tape gives. */
Test(backward, repeated_passes_on_a_growing_tape_stay_exact)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){3},
                                                   (double[]){0.5, -1.0, 2.0}));
    ag_tensor *early = ag_sum(t, ag_exp(t, x));             /* low entries */
    ag_tensor *g;
    for (int k = 0; k < 5; k++) {
        /* each pass its own graph, after the last one's */
        ag_tensor *y = ag_sum(t, ag_mul_scalar(t, ag_square(t, x), (double)(k + 1)));
        ag_gradients(t, y, NULL, 1, &x, &g, 0);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        for (int i = 0; i < 3; i++)
            cr_expect_float_eq(ag_get(g, i), 2.0 * (k + 1) * ag_get(x, i), 1e-15, "pass %d", k);
    }
    ag_gradients(t, early, NULL, 1, &x, &g, 0);   /* reaches below every earlier pass */
    for (int i = 0; i < 3; i++)
        cr_expect_float_eq(ag_get(g, i), exp(ag_get(x, i)), 1e-15);
    ag_tensor *both = ag_add(t, early, ag_sum(t, ag_square(t, x)));
    ag_gradients(t, both, NULL, 1, &x, &g, 0);
    for (int i = 0; i < 3; i++)
        cr_expect_float_eq(ag_get(g, i), exp(ag_get(x, i)) + 2.0 * ag_get(x, i), 1e-14);
    ag_backward(t, both);
    ag_backward(t, early);
    for (int i = 0; i < 3; i++)
        cr_expect_float_eq(ag_get(ag_grad(x), i), 2.0 * exp(ag_get(x, i)) + 2.0 * ag_get(x, i),
                           1e-14, "gradients accumulate over backward calls");
    ag_tape_free(t);
}
