/*
** bench_parallel.c: data-parallel training (nn_comm.h) against one process,
** in one run: the 784-256-128-10 MLP with Adam on Fashion-MNIST at a global
** batch of 64 and 256, as steps per second of one process on one thread
** and of two MPI ranks on one thread each (mpirun -np 2, each rank half the
** batch), and the time per step the two ranks spend in the gradients'
** allreduce against the whole step. Both sides run train_worker, the one
** process as bench_train.c starts it, the ranks under mpirun; each runs
** three times (once with --quick) and the fastest counts. Without MPI in
** the build, or without mpirun, the rows say so.
*/
#define _POSIX_C_SOURCE 200809L

#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if !defined(BENCH_MPIRUN)
#define BENCH_MPIRUN ""
#endif
#if !defined(BENCH_MPIRUN_OVERSUBSCRIBE)
#define BENCH_MPIRUN_OVERSUBSCRIBE 0
#endif

#define FASHION_TRAIN_IMAGES "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

typedef struct dp_case {
    const char *label;
    int batch;            /* the step's whole batch */
    long steps, quick_steps;
} dp_case;

static const dp_case cases[] = {
    {"mlp adam b64", 64, 600, 100},
    {"mlp adam b256", 256, 200, 40},
};

typedef struct dp_result {
    double step_s, allreduce_s;
    bool ok;
} dp_result;

/* Runs argv (argv[0] a path) with its standard output read back; the line
** with the most numbers parsed gives the result. */
static dp_result run_worker(char *const argv[], bool mpi)
{
    dp_result r = {.ok = false};
    int fds[2];
    if (pipe(fds) != 0)
        return r;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return r;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        if (mpi) {
            /* Open MPI refuses to run as root without these. */
            setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
            setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[256];
    long steps;
    double loss;
    while (f && fgets(line, sizeof line, f)) {
        double step_s, allreduce_s = NAN;
        int n = sscanf(line, "%lf %ld %lf %lf", &step_s, &steps, &loss, &allreduce_s);
        if (n >= 3 && (!mpi || n == 4)) {
            r.step_s = step_s;
            r.allreduce_s = allreduce_s;
            r.ok = true;
        }
    }
    if (f)
        fclose(f);
    else
        close(fds[0]);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        r.ok = false;
    return r;
}

static bool find_worker(char *path, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", path, size - 1);
    if (n <= 0)
        return false;
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    if (!slash || (size_t)(slash - path) + sizeof "/train_worker" > size)
        return false;
    strcpy(slash, "/train_worker");
    return access(path, X_OK) == 0;
}

void bench_parallel(bench_table *t, const bench_options *o)
{
    char worker[4096];
    const char *skip = NULL;
    if (!BENCH_MPIRUN[0])
        skip = "skipped: built without MPI (libopenmpi-dev, meson -Dmpi=enabled) or no mpirun";
    else if (!find_worker(worker, sizeof worker))
        skip = "skipped: train_worker not found beside bench";
    else if (access(FASHION_TRAIN_IMAGES, R_OK) != 0)
        skip = "skipped: Fashion-MNIST not found (apt-get install dataset-fashion-mnist)";
    if (skip) {
        bench_add(t, "data-parallel rows", NAN, NAN, "-", BENCH_HIGHER_IS_BETTER, skip);
        return;
    }
    int reruns = o->quick ? 1 : 3;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const dp_case *c = &cases[i];
        char batch[16], steps[32];
        snprintf(batch, sizeof batch, "%d", c->batch);
        snprintf(steps, sizeof steps, "%ld", o->quick ? c->quick_steps : c->steps);
        char *alone[] = {worker, "mlp", batch, "1", steps, NULL};
        char *ranks[16];
        int k = 0;
        ranks[k++] = BENCH_MPIRUN;
        ranks[k++] = "-np";
        ranks[k++] = "2";
        if (BENCH_MPIRUN_OVERSUBSCRIBE)   /* Open MPI: two ranks even on one core */
            ranks[k++] = "--oversubscribe";
        char *tail[] = {worker, "mlp", batch, "1", steps, "mpi", NULL};
        for (int j = 0; j < 7; j++)
            ranks[k++] = tail[j];
        dp_result one = {.ok = false}, two = {.ok = false};
        /* Alternating, so that a slow moment of the shared machine does not
        ** fall on one side only. */
        for (int again = 0; again < reruns; again++) {
            dp_result r = run_worker(alone, false);
            if (r.ok && (!one.ok || r.step_s < one.step_s))
                one = r;
            r = run_worker(ranks, true);
            if (r.ok && (!two.ok || r.step_s < two.step_s))
                two = r;
        }
        char name[96], note[160];
        snprintf(name, sizeof name, "%s, 2 ranks x 1 thread (ref: 1 x 1)", c->label);
        snprintf(note, sizeof note, "%s; each rank batch %d, one process batch %d",
                 two.ok ? "steps per second, fastest run" : "mpirun or train_worker failed",
                 c->batch / 2, c->batch);
        bench_add(t, name, two.ok ? 1 / two.step_s : NAN, one.ok ? 1 / one.step_s : NAN, "steps/s",
                  BENCH_HIGHER_IS_BETTER, note);
        snprintf(name, sizeof name, "%s, allreduce per step (ref: step)", c->label);
        snprintf(note, sizeof note,
                 "2 ranks: nn_comm_average_grads, waiting for the other rank included, is %.0f%% "
                 "of the step", two.ok ? 100 * two.allreduce_s / two.step_s : NAN);
        bench_add(t, name, two.ok ? two.allreduce_s * 1e3 : NAN, two.ok ? two.step_s * 1e3 : NAN, "ms",
                  BENCH_LOWER_IS_BETTER, note);
    }
}
