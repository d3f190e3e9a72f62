/*
** xor.c: the smallest complete training program. A 2-8-1 tanh network
** learns XOR with Adam and binary cross-entropy. Usage: xor [--help]
*/
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1) {
        int help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");
        fprintf(help ? stdout : stderr, "usage: xor\nTrains a 2-8-1 network on XOR.\n");
        return help ? 0 : 2;
    }
    const float inputs[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    const float targets[4] = {0, 1, 1, 0};

    nn_model *model = nn_model_new(NULL, NULL);         /* owns the weights */
    nn_model_seed(model, 42);
    nn_mlp *net = nn_mlp_new(model, "mlp", AG_F32, 3, (int64_t[]){2, 8, 1}, NN_TANH);
    nn_optim *adam = nn_adam_new(model, 0.05, 0.9, 0.999, 1e-8, 0.0);
    ag_tape *tape = ag_tape_new();                      /* owns each step's temporaries */
    if (!model || !tape || nn_model_status(model) != AG_OK) {
        fprintf(stderr, "xor: %s\n", model ? nn_model_errmsg(model) : "out of memory");
        return 1;
    }

    for (int step = 0; step <= 500; step++) {
        ag_tape_reset(tape);                            /* forget the last step */
        ag_tensor *x = ag_tensor_from_f32(tape, 2, (int64_t[]){4, 2}, inputs[0]);
        ag_tensor *y = ag_tensor_from_f32(tape, 2, (int64_t[]){4, 1}, targets);
        ag_tensor *logits = nn_mlp_forward(tape, net, x);
        ag_tensor *loss = nn_bce_with_logits_loss(tape, logits, y, NN_REDUCE_MEAN);
        nn_model_zero_grad(model);
        ag_backward(tape, loss);                        /* d loss / d every weight */
        if (ag_tape_status(tape) != AG_OK) {
            fprintf(stderr, "xor: %s\n", ag_tape_errmsg(tape));
            return 1;
        }
        if (step % 100 == 0)
            printf("step %3d  loss %.6f\n", step, ag_item(loss));
        if (step == 500)                                /* the trained net's answers */
            for (int i = 0; i < 4; i++)
                printf("%g xor %g -> %.4f (target %g)\n", inputs[i][0], inputs[i][1],
                       1 / (1 + exp(-ag_get(logits, i))), targets[i]);
        else
            nn_optim_step(adam);                        /* w -= lr * (Adam's step) */
    }
    nn_optim_free(adam);
    ag_tape_free(tape);
    nn_model_free(model);
    return 0;
}
