/*
** test_tape.c: the tape itself: what it records and when, the no-grad scope,
** reset (memory kept, status cleared, parameters untouched), and that many
** record/backward/reset cycles hold steady.
*/
#include "internal.h"
#include "alloc_hooks.h"

#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
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

TestSuite(tape, .init = setup, .fini = teardown);

Test(tape, starts_empty)
{
    cr_assert_eq(ag_tape_status(tape), AG_OK);
    cr_assert_str_eq(ag_tape_errmsg(tape), "");
    cr_assert_eq(ag_tape_entries(tape), 0);
    cr_assert_eq(ag_tape_bytes(tape), 0);
    ag_tape_free(NULL);
    ag_tape_reset(NULL);
    cr_assert_eq(ag_tape_entries(NULL), 0);
    cr_assert_eq(ag_tape_bytes(NULL), 0);
}

/* Only ops that something differentiable flows into become entries. */
Test(tape, records_what_needs_a_gradient)
{
    ag_tensor *c = ag_ones(tape, AG_F64, 1, (int64_t[]){3});
    ag_tensor *k = ag_mul(tape, c, c);
    cr_assert_eq(ag_tape_entries(tape), 0, "constants in, nothing to record");
    cr_assert_not(ag_requires_grad_of(k));
    ag_tensor *x = ag_requires_grad(ag_ones(tape, AG_F64, 1, (int64_t[]){3}));
    ag_tensor *y = ag_mul(tape, x, c);
    ag_tensor *z = ag_exp(tape, y);
    cr_assert_eq(ag_tape_entries(tape), 2);
    cr_assert(ag_requires_grad_of(y) && ag_requires_grad_of(z));
    ag_gt(tape, z, c);   /* comparisons have no gradient: never recorded */
    cr_assert_eq(ag_tape_entries(tape), 2);
    cr_assert_eq(tape->entries[0], y);
    cr_assert_eq(tape->entries[1], z);
    assert_ok();
}

/* A recorded scalar op is one arena block: a header cut short after the
** dims it has, its input pointers and its value. A bigger one would slow
** every scalar graph (docs/PERFORMANCE.md); the contents must be intact. */
Test(tape, scalar_op_is_one_small_block)
{
    ag_tensor *a = ag_requires_grad(ag_scalar(tape, AG_F64, 3.0));
    ag_tensor *b = ag_scalar(tape, AG_F64, 4.0);
    size_t before = ag_tape_bytes(tape);
    ag_tensor *c = ag_mul(tape, a, b);
    size_t used = ag_tape_bytes(tape) - before;
    cr_assert_leq(used, 128, "a scalar mul took %zu arena bytes", used);
    cr_assert_eq(used, agi_header_size(0) + 2 * sizeof(ag_tensor *) + sizeof(double));
    cr_assert_eq(ag_input(c, 0), a);
    cr_assert_eq(ag_input(c, 1), b);
    cr_assert_float_eq(ag_item(c), 12.0, 0);
    cr_assert_eq(ag_rank(c), 0);
    cr_assert_eq(ag_numel(c), 1);
    /* A rank-3 result keeps exactly its three dims, next to its inputs. */
    ag_tensor *x = ag_requires_grad(ag_ones(tape, AG_F64, 3, (int64_t[]){2, 1, 3}));
    ag_tensor *y = ag_exp(tape, x);
    cr_assert_eq(ag_rank(y), 3);
    cr_assert_eq(ag_dim(y, 0), 2);
    cr_assert_eq(ag_dim(y, 1), 1);
    cr_assert_eq(ag_dim(y, 2), 3);
    cr_assert_eq(ag_input(y, 0), x);
    cr_assert_float_eq(ag_get(y, 5), exp(1.0), 1e-12);
    ag_backward(tape, ag_sum(tape, ag_mul(tape, c, ag_sum(tape, y))));
    cr_assert_float_eq(ag_grad_item(a), 4.0 * 6.0 * exp(1.0), 1e-12);
    assert_ok();
}

Test(tape, bytes_grow_and_reset)
{
    size_t before = ag_tape_bytes(tape);
    ag_zeros(tape, AG_F64, 1, (int64_t[]){1000});
    size_t after = ag_tape_bytes(tape);
    cr_assert_geq(after - before, 1000 * sizeof(double));
    ag_tape_reset(tape);
    cr_assert_eq(ag_tape_bytes(tape), 0);
    cr_assert_eq(ag_tape_entries(tape), 0);
}

/* Between begin and end ops compute but record nothing; scopes nest. */
Test(tape, no_grad_scope)
{
    ag_tensor *x = ag_requires_grad(ag_full(tape, AG_F64, 1, (int64_t[]){2}, 3.0));
    ag_mul(tape, x, x);
    size_t n = ag_tape_entries(tape);
    cr_assert_eq(n, 1);

    ag_no_grad_begin(tape);
    ag_tensor *y = ag_mul(tape, x, x);
    cr_assert_eq(ag_get(y, 1), 9.0, "ops still compute");
    cr_assert_not(ag_requires_grad_of(y));
    cr_assert_eq(ag_tape_entries(tape), n);
    ag_no_grad_begin(tape);
    ag_exp(tape, x);
    ag_no_grad_end(tape);
    ag_tensor *z = ag_add(tape, x, x);   /* still inside the outer scope */
    cr_assert_not(ag_requires_grad_of(z));
    cr_assert_eq(ag_tape_entries(tape), n);
    ag_no_grad_end(tape);

    ag_tensor *w = ag_add(tape, x, x);
    cr_assert(ag_requires_grad_of(w), "recording resumes after the last end");
    cr_assert_eq(ag_tape_entries(tape), n + 1);
    assert_ok();
}

Test(tape, no_grad_end_without_begin_is_an_error)
{
    ag_no_grad_begin(tape);
    ag_no_grad_end(tape);
    assert_ok();
    ag_no_grad_end(tape);
    cr_assert_eq(ag_tape_status(tape), AG_ESTATE);
    cr_assert_str_eq(ag_tape_errmsg(tape), "ag_no_grad_end: no scope is open");
    ag_no_grad_begin(NULL);
    ag_no_grad_end(NULL);
}

Test(tape, reset_closes_open_no_grad_scopes)
{
    ag_no_grad_begin(tape);
    ag_tape_reset(tape);
    ag_tensor *x = ag_requires_grad(ag_scalar(tape, AG_F64, 1));
    ag_tensor *y = ag_neg(tape, x);
    cr_assert(ag_requires_grad_of(y));
    cr_assert_eq(ag_tape_entries(tape), 1);
}

Test(tape, reset_clears_the_error)
{
    ag_add(tape, ag_zeros(tape, AG_F64, 1, (int64_t[]){2}),
           ag_zeros(tape, AG_F64, 1, (int64_t[]){3}));
    cr_assert_eq(ag_tape_status(tape), AG_ESHAPE);
    ag_tape_reset(tape);
    assert_ok();
    cr_assert_str_eq(ag_tape_errmsg(tape), "");
    ag_tensor *s = ag_add(tape, ag_scalar(tape, AG_F64, 1), ag_scalar(tape, AG_F64, 2));
    cr_assert_eq(ag_item(s), 3.0);
}

/* A parameter's value and gradient live outside the tape; each pass adds. */
Test(tape, parameters_survive_reset)
{
    ag_tensor *p = ag_param_new(AG_F64, 1, (int64_t[]){2});
    ag_set(p, 0, 1.5);
    ag_set(p, 1, -2.0);
    for (int pass = 1; pass <= 3; pass++) {
        ag_tensor *x = ag_tensor_from(tape, AG_F64, 1, (int64_t[]){2}, (double[]){10, 20});
        ag_backward(tape, ag_sum(tape, ag_mul(tape, p, x)));
        assert_ok();
        ag_tape_reset(tape);
        cr_assert_eq(ag_get(p, 0), 1.5);
        cr_assert_eq(ag_get(p, 1), -2.0);
        cr_assert_eq(ag_get(ag_grad(p), 0), 10.0 * pass);
        cr_assert_eq(ag_get(ag_grad(p), 1), 20.0 * pass);
    }
    ag_param_free(p);
}

Test(tape, tensors_of_two_tapes_do_not_mix)
{
    ag_tape *other = ag_tape_new();
    ag_tensor *a = ag_requires_grad(ag_scalar(tape, AG_F64, 2));
    ag_tensor *b = ag_requires_grad(ag_scalar(other, AG_F64, 3));
    ag_tensor *ya = ag_mul(tape, a, a);
    ag_tensor *yb = ag_mul(other, b, b);
    cr_assert_eq(ag_tape_entries(tape), 1);
    cr_assert_eq(ag_tape_entries(other), 1);
    ag_backward(tape, ya);
    ag_backward(other, yb);
    assert_ok();
    cr_assert_eq(ag_grad_item(a), 4.0);
    cr_assert_eq(ag_grad_item(b), 6.0);
    ag_tape_reset(other);
    cr_assert_eq(ag_item(ya), 4.0, "resetting one tape leaves the other's tensors");
    ag_tape_free(other);
}

/* One training-like pass: elementwise work over 'n' elements, big enough
** that the arena needs several chunks. */
static double one_pass(ag_tape *t, ag_tensor *w, ag_tensor *b, int64_t n)
{
    ag_tensor *x = ag_arange(t, AG_F64, 0, (double)n, 1);
    ag_tensor *h = ag_tanh(t, ag_add(t, ag_mul(t, ag_mul_scalar(t, x, 1.0 / (double)n), w), b));
    ag_tensor *loss = ag_mean(t, ag_square(t, h));
    ag_backward(t, loss);
    return ag_item(loss);
}

/* 10,000 record -> backward -> reset cycles: the same entries and bytes
** every time, and after the first cycle the tape asks for no memory. */
Test(tape, cycles_hold_steady)
{
    alloc_hooks hooks = hooks_counting();
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &hooks);
    cr_assert_not_null(t);
    enum { N = 4096 };
    ag_tensor *w = ag_param_new(AG_F64, 1, (int64_t[]){N});
    ag_tensor *b = ag_param_scalar(AG_F64, 0.1);
    ag_fill(w, 0.5);
    double loss0 = one_pass(t, w, b, N);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    size_t entries = ag_tape_entries(t), bytes = ag_tape_bytes(t);
    cr_assert_gt(bytes, 4 * 64 * 1024, "the pass should span several chunks");
    ag_tape_reset(t);
    long requests = hooks.requests;
    for (int cycle = 1; cycle < 10000; cycle++) {
        double loss = one_pass(t, w, b, N);
        cr_assert_eq(ag_tape_status(t), AG_OK, "cycle %d: %s", cycle, ag_tape_errmsg(t));
        cr_assert_eq(loss, loss0, "cycle %d", cycle);
        cr_assert_eq(ag_tape_entries(t), entries, "cycle %d", cycle);
        cr_assert_eq(ag_tape_bytes(t), bytes, "cycle %d", cycle);
        cr_assert_eq(hooks.requests, requests, "cycle %d allocated", cycle);
        ag_tape_reset(t);
    }
    cr_assert_eq(ag_grad_item(b) != 0, 1, "the parameters collected every pass");
    ag_tape_free(t);
    cr_assert_eq(hooks.live, 0, "the tape gave back every block");
    cr_assert_eq(hooks.bad_osize, 0);
    ag_param_free(w);
    ag_param_free(b);
}

Test(tape, trap_aborts_at_the_first_error, .signal = SIGABRT)
{
    ag_tape_set_trap(tape, 1);
    ag_scalar(tape, (ag_dtype)5, 0);
}

Test(tape, trap_off_keeps_going)
{
    ag_tape_set_trap(tape, 1);
    ag_tape_set_trap(tape, 0);
    ag_scalar(tape, (ag_dtype)5, 0);
    cr_assert_eq(ag_tape_status(tape), AG_EDTYPE);
    ag_tape_set_trap(NULL, 1);
}

/* ag_tape_fail is the funnel for code built on the library. */
Test(tape, fail_records_the_first_error)
{
    ag_tape_fail(tape, AG_EIO, "nn_load: cannot open '%s'", "w.bin");
    ag_tape_fail(tape, AG_EINVAL, "second");
    cr_assert_eq(ag_tape_status(tape), AG_EIO);
    cr_assert_str_eq(ag_tape_errmsg(tape), "nn_load: cannot open 'w.bin'");
    ag_tape_reset(tape);
    ag_tape_fail(tape, AG_OK, "not an error");
    assert_ok();
    cr_assert_str_eq(ag_tape_errmsg(tape), "");
    ag_tape_fail(NULL, AG_EIO, "no tape");
}

/* Long messages are cut at the buffer, never overrun it. */
Test(tape, long_messages_are_truncated)
{
    char name[200];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    ag_tape_fail(tape, AG_EINVAL, "%s%s", name, name);
    cr_assert_eq(strlen(ag_tape_errmsg(tape)), sizeof tape->errmsg - 1);
}

/* A tensor kept across a reset, once the next pass has made its own, used
** to read the new tensor at its address with status AG_OK: the arena gives
** the same addresses to the same requests. Headers now alternate between
** two arenas by pass, so the old header is intact, and every accessor and
** op reports it (AG_ESTATE) instead of reading another's values. Nothing
** here depends on NDEBUG: the checks are not assertions. */
typedef enum { USE_GET, USE_ITEM, USE_DATA, USE_NUMEL, USE_SHAPE, USE_GRAD, USE_SET, USE_OP,
               USE_BACKWARD, USE_COUNT } stale_use;

static void use_stale(ag_tape *t, stale_use u, ag_tensor *old, ag_tensor *old_sum)
{
    switch (u) {
    case USE_GET: cr_assert(isnan(ag_get(old, 0))); break;
    case USE_ITEM: cr_assert(isnan(ag_item(old_sum))); break;
    case USE_DATA: cr_assert_null(ag_data(old)); break;
    case USE_NUMEL: cr_assert_eq(ag_numel(old), 0); break;
    case USE_SHAPE: cr_assert_null(ag_shape(old)); cr_assert_eq(ag_rank(old), 0); break;
    case USE_GRAD: cr_assert_null(ag_grad(old)); break;
    case USE_SET: ag_set(old, 0, 99.0); break;
    case USE_OP: cr_assert(ag_is_nil(ag_add(t, old, old))); break;
    case USE_BACKWARD: ag_backward(t, old_sum); break;
    case USE_COUNT: break;
    }
}

Test(tape, a_tensor_from_the_last_pass_is_reported_never_read)
{
    ag_tape *t = ag_tape_new();
    for (int u = 0; u < USE_COUNT; u++) {
        /* The same requests in both passes: the same addresses, before. */
        ag_tensor *old = ag_requires_grad(
            ag_tensor_from_f64(t, 1, (int64_t[]){3}, (const double[]){1, 2, 3}));
        ag_tensor *old_sum = ag_sum(t, old);
        ag_tape_reset(t);
        ag_tensor *x = ag_requires_grad(
            ag_tensor_from_f64(t, 1, (int64_t[]){3}, (const double[]){4, 5, 6}));
        ag_tensor *x_sum = ag_sum(t, x);
        cr_assert_neq(x, old, "consecutive passes never share a header's address");
        cr_assert_eq(ag_tape_status(t), AG_OK);
        use_stale(t, (stale_use)u, old, old_sum);
        cr_assert_eq(ag_tape_status(t), AG_ESTATE, "use %d: %s", u, ag_tape_errmsg(t));
        cr_assert(strstr(ag_tape_errmsg(t), "made before the last ag_tape_reset"), "use %d: %s",
                  u, ag_tape_errmsg(t));
        /* The current pass's tensors are untouched. */
        double v[3];
        memcpy(v, ((ag_tensor *)x)->value, sizeof v);
        cr_assert(v[0] == 4 && v[1] == 5 && v[2] == 6, "use %d", u);
        cr_assert_eq(((double *)x_sum->value)[0], 15.0);
        ag_tape_reset(t);
    }
    ag_tape_free(t);
}

/* The scenario, pass after pass: x from pass k read in pass k + 1
** through ag_item, after pass k + 1 made the tensors at the same places. */
Test(tape, every_pass_reports_the_last_ones_tensor)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *kept = NULL;
    for (int pass = 0; pass < 50; pass++) {
        ag_tensor *x = ag_scalar(t, AG_F64, pass);
        ag_tensor *y = ag_mul(t, x, x);
        if (kept) {
            cr_assert(isnan(ag_item(kept)), "pass %d read %g", pass, ag_item(kept));
            cr_assert_eq(ag_tape_status(t), AG_ESTATE, "pass %d", pass);
        }
        (void)y;
        kept = x;
        ag_tape_reset(t);
    }
    ag_tape_free(t);
}
