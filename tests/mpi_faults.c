/*
** mpi_faults.c: one rank fails part way through data-parallel training, and
** every other rank must stop with an error instead of waiting for it
** forever. Run under mpirun by tests/mpi_faults.sh, one fault per run:
**
**     mpi_faults FAULT RANK      (RANK fails at step 5 of 40)
**
** FAULT is one of: refuse (RANK passes a NULL model to
** nn_comm_average_grads: every rank gets the error at that call and leaves
** cleanly), abort (RANK calls nn_comm_abort), leave (RANK frees its
** communicator and returns, as a program does after an error of its own),
** hang (RANK stops answering), exit (exit(3) without nn_comm_free), exit0
** (_exit(0)), crash (SIGABRT). The others wait at most TIMEOUT_S in any
** collective. Each rank prints what ended it on stderr, as
** "mpi_faults rank R: ..."; the script checks the words and the time.
*/
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_comm.h"

enum { IN = 4, STEPS = 40, FAIL_AT = 5, BATCH = 4 };
#define TIMEOUT_S 3.0

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: mpi_faults FAULT RANK\n");
        return 2;
    }
    const char *fault = argv[1];
    int failing = atoi(argv[2]);
    nn_comm *c;
    char err[300];
    if (nn_comm_mpi_new(&c, err, sizeof err) != AG_OK) {
        fprintf(stderr, "mpi_faults: %s\n", err);
        return 1;
    }
    int rank = nn_comm_rank(c);
    if (nn_comm_set_timeout(c, TIMEOUT_S) != AG_OK) {
        fprintf(stderr, "mpi_faults rank %d: %s\n", rank, nn_comm_errmsg(c));
        return 1;
    }
    nn_model *m = nn_model_new(NULL, NULL);
    nn_model_seed(m, 5);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F64, 3, (int64_t[]){IN, 6, 1}, NN_TANH);
    nn_optim *o = nn_sgd_new(m, 0.1, 0, 0, 0);
    ag_tape *t = ag_tape_new();
    ag_rng r;
    ag_rng_seed(&r, 11 + (uint64_t)rank);
    int status = 0;
    if (nn_comm_check_model(c, m) != AG_OK || nn_comm_broadcast_model(c, m, o) != AG_OK)
        status = 1;
    for (int step = 0; status == 0 && step < STEPS; step++) {
        nn_model *mine = m;
        if (step == FAIL_AT && rank == failing) {
            fprintf(stderr, "mpi_faults rank %d: failing (%s) at step %d\n", rank, fault, step);
            fflush(stderr);
            if (!strcmp(fault, "refuse"))
                mine = NULL;
            else if (!strcmp(fault, "abort"))
                nn_comm_abort(c, "mpi_faults: an error of this rank's own");
            else if (!strcmp(fault, "leave"))
                break;
            else if (!strcmp(fault, "hang"))
                for (;;)
                    pause();
            else if (!strcmp(fault, "exit"))
                exit(3);
            else if (!strcmp(fault, "exit0"))
                _exit(0);
            else if (!strcmp(fault, "crash"))
                raise(SIGABRT);
        }
        ag_tensor *x = ag_randn(t, &r, AG_F64, 2, (int64_t[]){BATCH, IN}, 0, 1);
        ag_tensor *loss = ag_mean(t, ag_square(t, nn_mlp_forward(t, net, x)));
        nn_model_zero_grad(m);
        ag_backward(t, loss);
        if (nn_comm_average_grads(c, mine) != AG_OK) {
            status = 1;
            break;
        }
        nn_optim_step(o);
        ag_tape_reset(t);
    }
    if (status != 0)
        fprintf(stderr, "mpi_faults rank %d: stopped with status %d: %s\n", rank,
                (int)nn_comm_status(c), nn_comm_errmsg(c));
    else if (!strcmp(fault, "leave") && rank == failing)
        fprintf(stderr, "mpi_faults rank %d: leaving\n", rank), status = 1;
    else
        fprintf(stderr, "mpi_faults rank %d: trained %d steps\n", rank, STEPS);
    ag_tape_free(t);
    nn_optim_free(o);
    nn_model_free(m);
    nn_comm_free(c);
    return status;
}
