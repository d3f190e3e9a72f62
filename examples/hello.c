/* hello.c: the README's first example, the chain A -> B -> C -> D. */
#include "autograd.h"
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1) {   /* no options but --help */
        int help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");
        fputs("usage: hello\nThe chain A -> B -> C -> D for A = 3: prints D, L = (D - 17)^2 "
              "and dL/dw for each weight.\n", help ? stdout : stderr);
        return help ? 0 : 2;
    }
    ag_tape *t = ag_tape_new();
    ag_tensor *ab = ag_param_scalar(AG_F64, 0.5);   /* weights: yours, */
    ag_tensor *bc = ag_param_scalar(AG_F64, 1.5);   /* outside the tape */
    ag_tensor *cd = ag_param_scalar(AG_F64, 2.0);

    ag_tensor *A = ag_scalar(t, AG_F64, 3.0);       /* on the tape */
    ag_tensor *B = ag_mul(t, ab, A);
    ag_tensor *C = ag_mul(t, bc, B);
    ag_tensor *D = ag_mul(t, cd, C);
    ag_tensor *L = ag_square(t, ag_sub(t, D, ag_scalar(t, AG_F64, 17.0)));

    ag_backward(t, L);
    if (ag_tape_status(t) != AG_OK)
        fprintf(stderr, "%s\n", ag_tape_errmsg(t));
    printf("D = %g, L = %g\n", ag_item(D), ag_item(L));
    printf("dL/dab = %g, dL/dbc = %g, dL/dcd = %g\n",
           ag_grad_item(ab), ag_grad_item(bc), ag_grad_item(cd));

    ag_tape_free(t);
    ag_param_free(ab), ag_param_free(bc), ag_param_free(cd);
    return 0;
}
