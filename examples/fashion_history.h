/*
** fashion_history.h: what the Fashion-MNIST programs remember of a run (the
** loss of every tenth of an epoch, the accuracies of every epoch), kept in
** their checkpoints' metadata with the shuffling generator so that a
** resumed run goes on as if never stopped, and drawn as an SVG picture.
*/
#ifndef EXAMPLES_FASHION_HISTORY_H
#define EXAMPLES_FASHION_HISTORY_H

#include "nn.h"

enum {
    FASHION_MAX_EPOCHS = 1000,
    FASHION_LOSS_POINTS = 10,   /* loss points per epoch: the curve's resolution */
};

typedef struct fashion_history {
    int epochs;   /* finished */
    int n_loss;   /* loss points */
    double loss[FASHION_MAX_EPOCHS * FASHION_LOSS_POINTS];   /* mean of each tenth of an epoch */
    double train_acc[FASHION_MAX_EPOCHS], test_acc[FASHION_MAX_EPOCHS];   /* in [0, 1] */
} fashion_history;

/* A training checkpoint (nn_checkpoint_save): the model's tensors, Adam's
** state and, as metadata, the history and the shuffling generator. 'prog'
** starts the messages. Returns 0, or -1 after a message. */
int fashion_checkpoint_save(const char *prog, nn_model *m, nn_optim *adam, const ag_rng *shuffle,
                            const char *path, const fashion_history *h);
/* Loads what fashion_checkpoint_save wrote (nn_checkpoint_load checks every
** name, dtype and shape; the metadata is checked here). Returns 0, or -1
** after a message. */
int fashion_checkpoint_load(const char *prog, nn_model *m, nn_optim *adam, ag_rng *shuffle,
                            const char *path, fashion_history *h);

/* The loss and accuracy curves, with a grey reference line at 'target'
** percent described by 'target_label'. Returns 0, or -1 with errno set. */
int fashion_curves_write(const char *path, const fashion_history *h, double target,
                         const char *target_label);

#endif
