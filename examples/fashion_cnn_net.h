/*
** fashion_cnn_net.h: the convolutional network of fashion_cnn, in one
** place, since its smoke tests (tests/test_cnn_steps.c) and the benchmark's
** worker (tools/bench/train_worker.c) train the very same one:
**
**   conv 3x3 1 -> 16 (padding 1), batch norm, ReLU, max pool 2x2  [16, 14, 14]
**   conv 3x3 16 -> 32 (padding 1), batch norm, ReLU, max pool 2x2 [32, 7, 7]
**
** (each ReLU computed after its pooling, which gives the same bits for a
** quarter of the work; the benchmark's PyTorch twin does the same)
**   dense 1568 -> 128, ReLU, dropout 0.25, dense 128 -> 10        logits
**
** The convolutions have no bias: the batch norm after each shifts it away.
** Parameters: conv1.weight, bn1.weight, bn1.bias, conv2.weight, bn2.weight,
** bn2.bias, fc.0.weight, fc.0.bias, fc.1.weight, fc.1.bias.
*/
#ifndef EXAMPLES_FASHION_CNN_NET_H
#define EXAMPLES_FASHION_CNN_NET_H

#include "nn.h"

#define CNN_DESCRIPTION                                                                           \
    "conv3x3(16)-bn-relu-maxpool2, conv3x3(32)-bn-relu-maxpool2, dense 1568-128-10 with "      \
    "dropout 0.25"

enum { CNN_SIDE = 28, CNN_C1 = 16, CNN_C2 = 32, CNN_HIDDEN = 128, CNN_CLASSES = 10 };
#define CNN_DROPOUT 0.25

typedef struct cnn {
    nn_conv2d *conv1, *conv2;
    nn_batchnorm2d *bn1, *bn2;
    nn_mlp *head;
} cnn;

/* Registers the layers in m, in dtype dt. Returns 0, or -1 with the model
** in error. */
static inline int cnn_new(nn_model *m, ag_dtype dt, cnn *net)
{
    net->conv1 = nn_conv2d_new(m, "conv1", dt, 1, CNN_C1, 3, 1, 1, 1, 1, 0);
    net->bn1 = nn_batchnorm2d_new(m, "bn1", dt, CNN_C1, 0.1, 1e-5, 1);
    net->conv2 = nn_conv2d_new(m, "conv2", dt, CNN_C1, CNN_C2, 3, 1, 1, 1, 1, 0);
    net->bn2 = nn_batchnorm2d_new(m, "bn2", dt, CNN_C2, 0.1, 1e-5, 1);
    int64_t flat = CNN_C2 * (CNN_SIDE / 4) * (CNN_SIDE / 4);
    net->head = nn_mlp_new(m, "fc", dt, 3, (int64_t[]){flat, CNN_HIDDEN, CNN_CLASSES}, NN_RELU);
    nn_mlp_set_dropout(net->head, CNN_DROPOUT);
    return nn_model_status(m) == AG_OK ? 0 : -1;
}

/* Logits [N, 10] of a batch of images x [N, 784] (or [N, 1, 28, 28]);
** batch norm and dropout follow the model's training flag. */
static inline ag_tensor *cnn_forward(ag_tape *t, cnn *net, ag_tensor *x)
{
    ag_tensor *h = ag_reshape(t, x, 4, (int64_t[]){ag_dim(x, 0), 1, CNN_SIDE, CNN_SIDE});
    /* ReLU after the pooling, on a quarter of the values: max pooling and
    ** ReLU commute (both keep order), to the bit, gradients included. */
    h = nn_batchnorm2d_forward(t, net->bn1, nn_conv2d_forward(t, net->conv1, h));
    h = ag_relu(t, ag_max_pool2d(t, h, 2, 2, 2, 2, 0, 0));
    h = nn_batchnorm2d_forward(t, net->bn2, nn_conv2d_forward(t, net->conv2, h));
    h = ag_relu(t, ag_max_pool2d(t, h, 2, 2, 2, 2, 0, 0));
    return nn_mlp_forward(t, net->head, ag_flatten(t, h, 1));
}

#endif
