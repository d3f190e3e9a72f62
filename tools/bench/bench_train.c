/*
** bench_train.c: training on Fashion-MNIST, ours beside PyTorch in the same
** run: the 784-256-128-10 ReLU network with Adam and softmax cross-entropy at
** batch 64 and 256, Nielsen's 784-30-10 sigmoid network with quadratic
** cost and plain SGD at batch 10, and examples/fashion_cnn's convolutional
** network (fashion_cnn_net.h) with Adam at batch 64. Rows: time per step, time per epoch (one
** whole shuffled epoch, timed), and the peak resident memory of the process
** that trained.
**
** Each measurement runs in a fresh process (our train_worker, or Python), so
** its peak memory is its own and one run cannot warm the caches of the next.
** Both sides try one and two threads (PyTorch also OpenBLAS's thread count,
** which Debian's build reads) and keep their fastest run: ours runs each
** configuration three times, PyTorch (slower to start) each once and its
** best twice more.
*/
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE   /* wait4 */

#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

enum { TRAIN_IMAGES = 60000 };

/* Where Debian's dataset-fashion-mnist puts the training images; the PyTorch
** script reads the same files, and the worker finds them the same way. */
#define FASHION_TRAIN_IMAGES "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

typedef struct train_case {
    const char *label;   /* in the row names */
    const char *kind;    /* "mlp" or "nielsen": the worker's and the script's word */
    int64_t batch;
    int64_t quick_steps; /* steps timed by --quick instead of a whole epoch */
} train_case;

static const train_case cases[] = {
    {"mlp 784-256-128-10 adam b64", "mlp", 64, 100},
    {"mlp 784-256-128-10 adam b256", "mlp", 256, 40},
    {"nielsen 784-30-10 sgd b10", "nielsen", 10, 1000},
    /* examples/fashion_cnn's network (fashion_cnn_net.h) */
    {"cnn 2x(conv-bn-pool)-128-10 adam b64", "cnn", 64, 60},
};

/* One measurement: seconds per step over 'steps' timed steps, the loss of the
** last step (both sides must be learning), and the process's peak RSS. */
typedef struct train_result {
    double step_s, loss, rss_mib;
    long steps;
    bool ok;
} train_result;

/* ------------------------------------------------------------------ PyTorch */

/* The same training in PyTorch: argv is kind, batch, torch threads, OpenBLAS
** threads, steps (0: an epoch). OpenBLAS reads its thread count when it is
** loaded, so the variable is set before numpy and torch are imported. */
static const char torch_script[] =
    "import os, sys\n"
    "kind, batch, threads, blas, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), "
    "sys.argv[4], int(sys.argv[5])\n"
    "os.environ['OPENBLAS_NUM_THREADS'] = blas\n"
    "import gzip, time, resource, numpy as np, torch\n"
    "def idx(path):\n"
    "    with gzip.open(path, 'rb') as f: d = f.read()\n"
    "    nd = d[3]; dims = [int.from_bytes(d[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd)]\n"
    "    return np.frombuffer(d, np.uint8, offset=4 + 4 * nd).reshape(dims)\n"
    "root = '/usr/share/datasets/fashion-mnist/'\n"
    "x = torch.from_numpy(idx(root + 'train-images-idx3-ubyte.gz').reshape(-1, 784)"
    ".astype(np.float32) / 255)\n"
    "y = torch.from_numpy(idx(root + 'train-labels-idx1-ubyte.gz').astype(np.int64))\n"
    "torch.set_num_threads(threads); torch.manual_seed(1)\n"
    "nn = torch.nn\n"
    "if kind == 'mlp':\n"
    "    net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), "
    "nn.Linear(128, 10))\n"
    "    opt = torch.optim.Adam(net.parameters(), lr=1e-3)\n"
    "    lossf = nn.CrossEntropyLoss()\n"
    "elif kind == 'cnn':\n"
    "    net = nn.Sequential(nn.Unflatten(1, (1, 28, 28)),\n"
    "        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.MaxPool2d(2), "
    "nn.ReLU(),\n"
    "        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.MaxPool2d(2), "
    "nn.ReLU(),\n"
    "        nn.Flatten(), nn.Linear(1568, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10))\n"
    "    opt = torch.optim.Adam(net.parameters(), lr=2e-3)\n"
    "    lossf = nn.CrossEntropyLoss()\n"
    "else:\n"
    "    net = nn.Sequential(nn.Linear(784, 30), nn.Sigmoid(), nn.Linear(30, 10), nn.Sigmoid())\n"
    "    opt = torch.optim.SGD(net.parameters(), lr=3.0)\n"
    "    eye = torch.eye(10)\n"
    "    lossf = lambda a, lab: ((a - eye[lab]) ** 2).sum() / (2 * a.shape[0])\n"
    "n = x.shape[0]\n"
    "if steps <= 0: steps = (n + batch - 1) // batch\n"
    "state = {'perm': torch.randperm(n), 'i': 0}\n"
    "def step():\n"
    "    if state['i'] >= n: state['perm'], state['i'] = torch.randperm(n), 0\n"
    "    idxs = state['perm'][state['i']:state['i'] + batch]; state['i'] += batch\n"
    "    opt.zero_grad(set_to_none=True)\n"
    "    loss = lossf(net(x[idxs]), y[idxs]); loss.backward(); opt.step()\n"
    "    return loss\n"
    "for _ in range(20): step()\n"
    "t = time.perf_counter()\n"
    "for _ in range(steps): loss = step()\n"
    "dt = time.perf_counter() - t\n"
    "print(dt / steps, steps, loss.item(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n";

/* -------------------------------------------------------------- the driver */

/* Runs train_worker, found beside this program, in a new process; its peak
** RSS comes from wait4. */
static train_result run_ours(const char *worker, const train_case *c, int threads, long steps)
{
    train_result r = {.ok = false};
    int fds[2];
    if (pipe(fds) != 0)
        return r;
    char batch[32], nthreads[16], nsteps[32];
    snprintf(batch, sizeof batch, "%lld", (long long)c->batch);
    snprintf(nthreads, sizeof nthreads, "%d", threads);
    snprintf(nsteps, sizeof nsteps, "%ld", steps);
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
        execl(worker, "train_worker", c->kind, batch, nthreads, nsteps, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char out[256] = "";
    FILE *f = fdopen(fds[0], "r");
    if (f) {
        if (!fgets(out, sizeof out, f))
            out[0] = '\0';
        fclose(f);
    } else {
        close(fds[0]);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return r;
    r.ok = sscanf(out, "%lf %ld %lf", &r.step_s, &r.steps, &r.loss) == 3;
    r.rss_mib = (double)ru.ru_maxrss / 1024.0;   /* Linux reports KiB */
    return r;
}

static train_result run_torch(const bench_options *o, const train_case *c, int threads, int blas,
                              long steps, char *why, size_t whylen)
{
    train_result r = {.ok = false};
    char args[128];
    snprintf(args, sizeof args, "%s %lld %d %d %ld", c->kind, (long long)c->batch, threads, blas,
             steps);
    char *out = bench_python(o, torch_script, args, why, whylen);
    double rss_kib = 0;
    if (out && sscanf(out, "%lf %ld %lf %lf", &r.step_s, &r.steps, &r.loss, &rss_kib) == 4) {
        r.ok = true;
        r.rss_mib = rss_kib / 1024.0;
    } else if (out) {
        snprintf(why, whylen, "unexpected output from the PyTorch script");
    }
    free(out);
    return r;
}

static bool faster(const train_result *a, const train_result *best)
{
    return a->ok && (!best->ok || a->step_s < best->step_s);
}

static void add_rows(bench_table *t, const train_case *c, const train_result *ours,
                     const train_result *ref, const char *note)
{
    char name[96];
    double ref_step = ref->ok ? ref->step_s : NAN, ref_rss = ref->ok ? ref->rss_mib : NAN;
    int64_t per_epoch = (TRAIN_IMAGES + c->batch - 1) / c->batch;
    snprintf(name, sizeof name, "%s, time per step", c->label);
    bench_add(t, name, ours->step_s * 1e3, ref_step * 1e3, "ms", BENCH_LOWER_IS_BETTER, note);
    snprintf(name, sizeof name, "%s, time per epoch", c->label);
    bench_add(t, name, ours->step_s * (double)per_epoch, ref_step * (double)per_epoch, "s",
              BENCH_LOWER_IS_BETTER, ours->steps == per_epoch ? "one epoch, timed" :
              "per step x steps per epoch (--quick)");
    snprintf(name, sizeof name, "%s, peak RSS", c->label);
    bench_add(t, name, ours->rss_mib, ref_rss, "MiB", BENCH_LOWER_IS_BETTER,
              "the whole process, data set included");
}

/* The worker's path: train_worker in this program's directory. */
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

static void train_rows(bench_table *t, const bench_options *o, const char *only_kind);

void bench_train(bench_table *t, const bench_options *o) { train_rows(t, o, NULL); }

/* The CNN's rows alone, with the products of its layers (bench_conv.c). */
void bench_cnn(bench_table *t, const bench_options *o)
{
    bench_conv(t, o);
    train_rows(t, o, "cnn");
}

/* The rows of every case, or of those of 'only_kind'. */
static void train_rows(bench_table *t, const bench_options *o, const char *only_kind)
{
    char worker[4096];
    if (!find_worker(worker, sizeof worker)) {
        bench_add(t, "training rows", NAN, NAN, "-", BENCH_LOWER_IS_BETTER,
                  "skipped: train_worker not found beside bench");
        return;
    }
    if (access(FASHION_TRAIN_IMAGES, R_OK) != 0) {
        bench_add(t, "training rows", NAN, NAN, "-", BENCH_LOWER_IS_BETTER,
                  "skipped: Fashion-MNIST not found (apt-get install dataset-fashion-mnist)");
        return;
    }
    bool torch = bench_have_torch(o);
    int reruns = o->quick ? 1 : 3;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const train_case *c = &cases[i];
        if (only_kind && strcmp(c->kind, only_kind))
            continue;
        long steps = o->quick ? (long)c->quick_steps : 0;
        train_result ours = {.ok = false}, ref = {.ok = false};
        int ours_threads = 0, ref_threads = 0, ref_blas = 0;
        /* Ours starts in a second or two: each thread count runs 'reruns'
        ** times, so one slow moment cannot pick the wrong one. */
        for (int again = 0; again < reruns; again++)
            for (int threads = 1; threads <= 2; threads++) {
                train_result r = run_ours(worker, c, threads, steps);
                if (faster(&r, &ours)) {
                    ours = r;
                    ours_threads = threads;
                }
            }
        if (!ours.ok) {
            bench_add(t, c->label, NAN, NAN, "-", BENCH_LOWER_IS_BETTER,
                      "train_worker failed (run it by hand to see why)");
            continue;
        }
        char why[160] = "python3-torch not installed";
        for (int threads = 1; torch && threads <= 2; threads++) {
            for (int blas = 1; blas <= 2; blas++) {
                train_result r = run_torch(o, c, threads, blas, steps, why, sizeof why);
                if (faster(&r, &ref)) {
                    ref = r;
                    ref_threads = threads;
                    ref_blas = blas;
                }
            }
        }
        /* The shared machine has slow moments: PyTorch's best configuration
        ** runs again, and its fastest run counts. */
        for (int again = 1; ref.ok && again < reruns; again++) {
            train_result r = run_torch(o, c, ref_threads, ref_blas, steps, why, sizeof why);
            if (faster(&r, &ref))
                ref = r;
        }
        char note[160];
        if (ref.ok)
            snprintf(note, sizeof note,
                     "fastest of %d runs: ours on %d threads; torch %d, openblas %d; "
                     "loss %.3f vs %.3f", reruns, ours_threads, ref_threads, ref_blas, ours.loss,
                     ref.loss);
        else
            snprintf(note, sizeof note, "ours on %d thread(s); no reference: %.100s",
                     ours_threads, why);
        add_rows(t, c, &ours, &ref, note);
    }
}
