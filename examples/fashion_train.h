/*
** fashion_train.h: the training program that fashion_mnist and fashion_cnn
** share, everything but their networks: the options, the epoch loop with
** its progress bar, the test accuracy after every epoch, checkpoints that
** --resume continues from bit for bit, the curves as an SVG picture, and
** data-parallel training under mpirun (nn_comm.h).
**
** A program describes its network and defaults in a fashion_program and
** hands main's arguments to fashion_train_main.
*/
#ifndef EXAMPLES_FASHION_TRAIN_H
#define EXAMPLES_FASHION_TRAIN_H

#include "nn.h"

typedef struct fashion_program {
    const char *name;      /* the program's name: messages, defaults of the files */
    const char *network;   /* what it trains, printed before its parameter count */
    long epochs;           /* default --epochs, and --decay-epochs too */
    double lr;             /* default Adam learning rate */
    int eval_batch;        /* images per test batch */
    int ms_per_step;       /* the epoch line gives ms per step (else steps per second) */
    double target;         /* the curves' reference line, in percent, and its legend */
    const char *target_label;
    /* Registers the network's layers in m (f32) and returns the state that
    ** 'forward' takes; NULL, or any value with m in error, on failure. */
    void *(*build)(nn_model *m);
    /* Logits [N, 10] of images x [N, 784]; dropout and batch norm follow the
    ** model's training flag. */
    ag_tensor *(*forward)(ag_tape *t, void *net, ag_tensor *x);
} fashion_program;

/* Parses argv, trains and tests as the options say. Returns main's exit
** status: 0, 1 on a failure (after a message on stderr), 2 on bad options. */
int fashion_train_main(const fashion_program *p, int argc, char **argv);

#endif
