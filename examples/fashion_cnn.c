/*
** fashion_cnn.c: a small convolutional network learns Fashion-MNIST, in f32:
** two blocks of 3x3 convolution, batch normalisation, ReLU and 2x2 max
** pooling (1 -> 16 -> 32 channels, 28x28 -> 14x14 -> 7x7), then a dense head
** 1568 -> 128 -> 10 with dropout, trained with softmax cross-entropy and
** Adam under a cosine learning rate. Around it, the training program it
** shares with fashion_mnist (fashion_train.c): the Debian package's data, a
** progress bar, the time and test accuracy of every epoch, a checkpoint
** after every epoch that --resume continues from, the curves as an SVG
** picture, and data-parallel training under mpirun.
**
**     fashion_cnn                              the default run: 12 epochs
**     fashion_cnn --resume fashion_cnn.safetensors --epochs 14
**     fashion_cnn --train-limit 2000 --test-limit 500 --epochs 1
**
** Batch normalisation follows the model's mode: batch statistics while
** training, the running ones (nn_model_set_training(m, 0)) when testing.
** Under mpirun each rank keeps the running statistics of its own shard, and
** rank 0's are the ones its checkpoint holds.
** The network is built and run by cnn_new and cnn_forward alone
** (fashion_cnn_net.h, shared with its tests and the benchmark), so a
** different architecture is a change to those two functions.
*/
#include "fashion_cnn_net.h"
#include "fashion_train.h"

static void *cnn_build(nn_model *m)
{
    static cnn net;
    return cnn_new(m, AG_F32, &net) == 0 ? &net : NULL;
}

static ag_tensor *cnn_run(ag_tape *t, void *net, ag_tensor *x)
{
    return cnn_forward(t, net, x);
}

int main(int argc, char **argv)
{
    static const fashion_program cnn_program = {
        .name = "fashion_cnn",
        .network = "CNN " CNN_DESCRIPTION,
        .epochs = 12,
        .lr = 2e-3,
        /* small enough that testing needs no more memory than training */
        .eval_batch = 100,
        .ms_per_step = 1,
        .target = 92.0,
        .target_label = "92%: this example's target",
        .build = cnn_build,
        .forward = cnn_run,
    };
    return fashion_train_main(&cnn_program, argc, argv);
}
