/* sine.c: the README's training loop: an MLP fits y = sin(x) on 64 points. */
#include "nn.h"
#include <math.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1) {   /* no options but --help */
        int help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");
        fputs("usage: sine\nFits y = sin(x) on 64 points with a 1-32-32-1 tanh MLP and Adam, "
              "then writes sine.safetensors.\n", help ? stdout : stderr);
        return help ? 0 : 2;
    }
    double xs[64], ys[64];
    for (int i = 0; i < 64; i++) { xs[i] = -3.0 + 6.0 * i / 63; ys[i] = sin(xs[i]); }
    nn_model *m = nn_model_new(NULL, NULL);
    nn_model_seed(m, 42);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F64, 4, (int64_t[]){1, 32, 32, 1}, NN_TANH);
    nn_optim *opt = nn_adam_new(m, 1e-2, 0.9, 0.999, 1e-8, 0.0);
    nn_schedule sched = nn_schedule_cosine(1e-2, 1e-4, 50, 2000);
    ag_tape *t = ag_tape_new();
    for (int step = 0; step < 2000; step++) {
        ag_tensor *x = ag_tensor_from_f64(t, 2, (int64_t[]){64, 1}, xs);
        ag_tensor *y = ag_tensor_from_f64(t, 2, (int64_t[]){64, 1}, ys);
        ag_tensor *loss = nn_mse_loss(t, nn_mlp_forward(t, net, x), y, NN_REDUCE_MEAN);
        nn_model_zero_grad(m);
        ag_backward(t, loss);
        if (ag_tape_status(t) != AG_OK) { fprintf(stderr, "%s\n", ag_tape_errmsg(t)); break; }
        nn_optim_set_lr(opt, nn_schedule_lr(&sched, step));
        nn_optim_step(opt);
        if (step % 500 == 0 || step == 1999) printf("step %4d  loss %.6f\n", step, ag_item(loss));
        ag_tape_reset(t);
    }
    nn_model_save(m, "sine.safetensors", NULL, 0);
    nn_optim_free(opt); ag_tape_free(t); nn_model_free(m);
}
