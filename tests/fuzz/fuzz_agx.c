/*
** fuzz_agx.c: libFuzzer target for agx. Arbitrary bytes go to the parser;
** a refusal must name a column inside the input and say something, and a
** program that parses must satisfy the parser's invariants, then record,
** differentiate and draw (DOT text and one backward frame) on a tape.
** Built by meson with -Dfuzz=true (docs/FUZZING.md) or by tests/fuzz/run_fuzz.sh;
** every build replays its corpus (tests/test_fuzz_corpus.c).
*/
#include "eval.h"
#include "parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_NAMES = 64, MAX_NODES = 4000 };

static void check_program(const agx_program *p)
{
    if (p->n_stmts < 1)
        abort();
    for (int i = 0; i < p->n_nodes; i++)
        if (p->nodes[i].a >= i || p->nodes[i].b >= i)
            abort();   /* operands must come first */
    for (int s = 0; s < p->n_stmts; s++) {
        const agx_stmt *st = &p->stmts[s];
        if (st->first > st->root || (s > 0 && st->first != p->stmts[s - 1].root + 1))
            abort();
        if (s + 1 < p->n_stmts && st->name < 0)
            abort();   /* only the last may be bare */
    }
    for (int i = 0; i < p->n_names; i++)
        if (p->names[i].bound_by >= p->n_stmts)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = malloc(size + 1);
    if (!src)
        return 0;
    memcpy(src, data, size);
    src[size] = '\0';
    agx_program p;
    agx_error err;
    if (agx_parse(src, &p, &err) != 0) {
        if (err.col < 1 || err.col > agx_column(src, strlen(src)) || !err.msg[0])
            abort();
    } else {
        check_program(&p);
        if (p.n_names <= MAX_NAMES && p.n_nodes <= MAX_NODES) {
            double values[MAX_NAMES];
            for (int i = 0; i < p.n_names; i++)
                values[i] = (double)(i % 7) - 3.0 + 0.25 * (double)(size % 5);
            ag_tape *t = ag_tape_new();
            ag_tensor *y = agx_record(t, &p, values, 1, NULL);
            if (ag_requires_grad_of(y))
                ag_backward(t, y);
            FILE *null = fopen("/dev/null", "wb");
            if (null) {
                ag_dot_write(t, y, NULL, null);
                if (ag_tape_status(t) == AG_OK && ag_dot_steps(t, y) > 0)
                    ag_dot_write_step(t, y, 1, NULL, null);
                fclose(null);
            }
            if (ag_tape_status(t) != AG_OK)
                abort();   /* scalar programs never fail on a tape */
            ag_tape_free(t);
        }
    }
    agx_program_free(&p);
    free(src);
    return 0;
}
