/*
** fashion_mnist.c: a 784-256-128-10 ReLU network learns to tell apart the
** ten kinds of clothing of Fashion-MNIST, with softmax cross-entropy and
** Adam, in f32. It shows what a real training run needs around the maths
** (fashion_train.c, shared with fashion_cnn): data read from the Debian
** package's files, a progress bar, the test accuracy after every epoch, a
** checkpoint after every epoch that --resume continues from, and the
** learning curves drawn as an SVG picture.
**
**     fashion_mnist                            10 epochs on all the data
**     fashion_mnist --resume fashion_mnist.safetensors --epochs 15
**     fashion_mnist --train-limit 2000 --test-limit 500 --epochs 1
**     mpirun -np 2 fashion_mnist               data-parallel on 2 ranks
**
** Started by mpirun with more than one rank (and built with MPI), it trains
** data-parallel (nn_comm.h): --batch stays the whole step's batch, split
** evenly over the ranks, each rank takes its shard of every epoch's order,
** the gradients are averaged by one allreduce a step, and all ranks hold the
** same weights; rank 0 alone prints, logs and writes the checkpoint and the
** curves (the train loss and accuracy it prints are those of its shard).
**
** The checkpoint is a safetensors file written by nn_checkpoint_save: the
** model's parameters and Adam's moments by name (PyTorch can read them), with
** the epoch reached, the curves so far and the shuffling generator in its
** metadata. A resumed run restores all of it, and the learning rate follows
** the same schedule (its length is --decay-epochs, not --epochs), so
** stopping after epoch 1 and resuming to epoch 2 leaves the checkpoint of a
** run that trained 2 epochs at once, bit for bit (on the same thread count).
*/
#include "fashion_data.h"
#include "fashion_train.h"

static void *mlp_build(nn_model *m)
{
    return nn_mlp_new(m, "mlp", AG_F32, 4,
                      (int64_t[]){FASHION_PIXELS, 256, 128, FASHION_CLASSES}, NN_RELU);
}

static ag_tensor *mlp_forward(ag_tape *t, void *net, ag_tensor *x)
{
    return nn_mlp_forward(t, net, x);
}

int main(int argc, char **argv)
{
    static const fashion_program mlp = {
        .name = "fashion_mnist",
        .network = "784-256-128-10 ReLU MLP",
        .epochs = 10,
        .lr = 1e-3,
        .eval_batch = 1000,
        .target = 88.3,
        .target_label = "88.3%: the MLP row of the Fashion-MNIST benchmark",
        .build = mlp_build,
        .forward = mlp_forward,
    };
    return fashion_train_main(&mlp, argc, argv);
}
