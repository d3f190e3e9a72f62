/*
** nn_io.h: the data and checkpoint half of libautograd-nn: safetensors
** checkpoints, IDX (MNIST) and CSV readers, in-memory datasets with shuffled
** mini-batches, and classification metrics. Built on autograd.h only.
**
**     nn_dataset *train;
**     char err[256];
**     if (nn_idx_load("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
**                     AG_F32, NULL, NULL, &train, err, sizeof err) != AG_OK)
**         fprintf(stderr, "%s\n", err);
**     nn_dataset_reshape(train, 1, (int64_t[]){784}, err, sizeof err);
**     ag_rng rng;
**     ag_rng_seed(&rng, 42);
**     nn_loader *ld;
**     nn_loader_new(train, 64, 1, 0, &rng, NULL, NULL, &ld, err, sizeof err);
**     nn_batch b;
**     while (nn_loader_next(ld, tape, &b)) {     // b.x is [64,784] on the tape
**         ...forward, ag_cross_entropy(tape, logits, b.labels), backward, step...
**         ag_tape_reset(tape);
**     }
**     nn_safetensors_save("model.safetensors", n, names, params, NULL, NULL,
**                         err, sizeof err);
**
** Conventions. Every function that can fail returns an ag_status and, when
** 'err' is not NULL, writes a message of at most 'errlen' bytes naming the
** function, the file and the problem; on AG_OK 'err' is set to "". Functions
** that allocate take the library's hook (ag_alloc_fn 'fn' with 'ud'; NULL
** means realloc/free) and use nothing else. Objects made here are freed by
** the matching _free or _close, which accept NULL. Nothing is global.
*/
#ifndef NN_IO_H
#define NN_IO_H

#include "autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef NN_API
#if defined(_WIN32)
#define NN_API
#else
#define NN_API __attribute__((visibility("default")))
#endif
#endif

/* ------------------------------------------------------------ safetensors */
/* The format: an 8-byte little-endian header length N, N bytes of JSON
** {"name": {"dtype": "F32", "shape": [2,3], "data_offsets": [0, 24]}, ...,
** "__metadata__": {"key": "value"}}, then the raw little-endian data; offsets
** count from the start of the data. Files move to and from PyTorch/NumPy. */

/* Writes tensors[0..n) under names[0..n) to 'path', atomically: the bytes go
** to a temporary file in the same directory, which is flushed, fsynced and
** renamed over 'path' (then the directory is fsynced). On any failure before
** the rename the temporary file is removed and a previous file at 'path' is
** left untouched; if only the directory's fsync fails, AG_EIO says the new
** file is in place but may not survive a crash.
** Where the system allows (Linux O_TMPFILE) the file has no name until it is
** complete, so a writer killed midway leaves nothing; otherwise it is
** '<path>.tmp.<pid>.<k>', and the next save of 'path' removes those of
** writers that are gone (never one whose writer is alive or holds its lock).
** A symlink at 'path' is followed: its target gets the new bytes and the link
** stays. An existing file keeps its permission bits; a new one gets 0666
** less the umask. A 'path' that is (or links to) a directory, FIFO or device
** is refused. Names must be non-empty, valid UTF-8, unique and not
** "__metadata__"; they are escaped as JSON needs. Tensors are written in the
** order given, with their own dtype (F32 or F64) and shape; the header is
** padded with spaces so the data starts 8-byte aligned. The header may take
** at most 100,000,000 bytes, nn_safetensors_open's limit: a longer one (many
** tensors, huge names or metadata) is refused before any file is touched, so
** whatever is saved can be opened. Errors: AG_EINVAL (NULL or empty path,
** NULL or bad name, nil tensor, header over the limit), AG_ENOMEM, AG_EIO
** (with the system's reason). */
NN_API ag_status nn_safetensors_save(const char *path, int n, const char *const *names,
                                     ag_tensor *const *tensors, ag_alloc_fn fn, void *ud,
                                     char *err, size_t errlen);
/* The same, also writing nmeta string pairs to "__metadata__" (keys unique). */
NN_API ag_status nn_safetensors_save_meta(const char *path, int n, const char *const *names,
                                          ag_tensor *const *tensors, int nmeta,
                                          const char *const *meta_keys,
                                          const char *const *meta_values, ag_alloc_fn fn,
                                          void *ud, char *err, size_t errlen);

/* Fills the existing tensors[0..n) (parameters or tape tensors) from the file,
** matched by name. The file must hold exactly these names (none missing, none
** extra), each with the tensor's dtype (nothing is converted: an F64 entry
** never loads into an f32 tensor) and shape; the message names the tensor and
** both shapes or dtypes. Every check runs before any tensor is written, so a
** failed load leaves them all unchanged (except on a read error from the disk
** midway). Errors: AG_EINVAL, AG_EIO (unreadable or malformed file),
** AG_ESHAPE, AG_EDTYPE, AG_ENOMEM. */
NN_API ag_status nn_safetensors_load(const char *path, int n, const char *const *names,
                                     ag_tensor *const *tensors, ag_alloc_fn fn, void *ud,
                                     char *err, size_t errlen);

/* An opened checkpoint whose header has been read and fully validated: to
** list a file without a model, or to load only some of its tensors. */
typedef struct nn_safetensors nn_safetensors;

/* One entry of an opened file, in data order. The strings belong to the
** handle and live until nn_safetensors_close. */
typedef struct nn_safetensors_info {
    const char *name;        /* UTF-8 */
    const char *dtype;       /* as written in the file: "F32", "F64", "I64", "BF16"... */
    int rank;
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;     /* byte range within the data section */
} nn_safetensors_info;

/* Opens 'path' and validates its whole header: the file must be a regular
** file (a FIFO or device is refused before anything is read, so nothing
** blocks), the length against the file size (at most 100,000,000 bytes), JSON syntax (strict: RFC 8259, UTF-8), known dtypes, shapes whose
** byte size matches the offsets, offsets that tile the data section exactly
** (no gap, no overlap, nothing left over), unique names. Any safetensors dtype
** is listed; only F32 and F64 entries can be read into tensors. Ranks above
** AG_MAX_DIMS are rejected. On success '*out' holds a handle to free with
** nn_safetensors_close; on failure '*out' is NULL. */
NN_API ag_status nn_safetensors_open(const char *path, ag_alloc_fn fn, void *ud,
                                     nn_safetensors **out, char *err, size_t errlen);
NN_API void nn_safetensors_close(nn_safetensors *f);
NN_API int nn_safetensors_count(const nn_safetensors *f);          /* 0 for NULL */
/* Entry i (0 <= i < count), or NULL when out of range. */
NN_API const nn_safetensors_info *nn_safetensors_entry(const nn_safetensors *f, int i);
/* Index of the entry called 'name', or -1. O(log n). */
NN_API int nn_safetensors_find(const nn_safetensors *f, const char *name);
/* Copies entry i into 'dst', which must have the entry's dtype and shape. */
NN_API ag_status nn_safetensors_read(nn_safetensors *f, int i, ag_tensor *dst, char *err,
                                     size_t errlen);
NN_API int nn_safetensors_metadata_count(const nn_safetensors *f);
/* Metadata pair i (pairs sorted by key), or NULL when out of range. */
NN_API const char *nn_safetensors_metadata_key(const nn_safetensors *f, int i);
NN_API const char *nn_safetensors_metadata_value(const nn_safetensors *f, int i);
/* The value stored under 'key', or NULL when there is none. */
NN_API const char *nn_safetensors_metadata_get(const nn_safetensors *f, const char *key);

/* ---------------------------------------------------------------- datasets */
/* A dataset holds n samples in memory: x, each sample of one shape, in one
** dtype, and optionally a y per sample: an int64 class label, or a float
** value tensor (regression). It owns its buffers. */
typedef struct nn_dataset nn_dataset;

typedef enum nn_ykind {
    NN_Y_NONE,     /* features only */
    NN_Y_LABELS,   /* one int64 class label per sample */
    NN_Y_VALUES    /* one float tensor per sample, of the dataset's dtype */
} nn_ykind;

/* A dataset of n samples whose x values (n * prod(x_shape) elements of 'dt')
** and y (n labels, or n * prod(y_shape) values; y_rank/y_shape are ignored
** unless ykind is NN_Y_VALUES) are zero-filled, to be filled through
** nn_dataset_x, nn_dataset_labels and nn_dataset_y. x_rank and y_rank may be
** 0..AG_MAX_DIMS-1 (a batch adds a leading axis). Errors: AG_EINVAL, AG_EDTYPE,
** AG_ESHAPE (negative dims, sizes overflowing), AG_ENOMEM. */
NN_API ag_status nn_dataset_new(ag_alloc_fn fn, void *ud, ag_dtype dt, int64_t n, int x_rank,
                                const int64_t *x_shape, nn_ykind ykind, int y_rank,
                                const int64_t *y_shape, nn_dataset **out, char *err,
                                size_t errlen);
/* A dataset whose x values are kept as bytes, one per element, and served
** in batches as byte / x_divisor computed in dtype dt (correctly rounded):
** the form images come in. It takes a quarter of the memory of f32 samples
** (an eighth of f64), and gathering a shuffled batch reads a quarter of the
** bytes. Fill the bytes through nn_dataset_x_u8; nn_dataset_x is NULL for
** it. x_divisor must be positive and finite in dt (AG_EINVAL: in f32 it is
** used as a float); otherwise as nn_dataset_new. Splits of it keep its
** storage. */
NN_API ag_status nn_dataset_new_u8(ag_alloc_fn fn, void *ud, ag_dtype dt, double x_divisor, int64_t n,
                                   int x_rank, const int64_t *x_shape, nn_ykind ykind, int y_rank,
                                   const int64_t *y_shape, nn_dataset **out, char *err,
                                   size_t errlen);
NN_API void nn_dataset_free(nn_dataset *ds);
NN_API int64_t nn_dataset_len(const nn_dataset *ds);              /* samples; 0 for NULL */
NN_API ag_dtype nn_dataset_dtype(const nn_dataset *ds);
NN_API nn_ykind nn_dataset_ykind(const nn_dataset *ds);
NN_API int nn_dataset_x_rank(const nn_dataset *ds);               /* of one sample */
NN_API const int64_t *nn_dataset_x_shape(const nn_dataset *ds);
NN_API int nn_dataset_y_rank(const nn_dataset *ds);               /* NN_Y_VALUES only */
NN_API const int64_t *nn_dataset_y_shape(const nn_dataset *ds);
/* The buffers, row-major with the sample index first; writable, owned by the
** dataset. labels is NULL unless NN_Y_LABELS, y NULL unless NN_Y_VALUES. */
NN_API void *nn_dataset_x(nn_dataset *ds);                /* NULL for byte storage */
NN_API uint8_t *nn_dataset_x_u8(nn_dataset *ds);          /* NULL unless byte storage */
NN_API double nn_dataset_x_divisor(const nn_dataset *ds); /* 0 unless byte storage */
NN_API int64_t *nn_dataset_labels(nn_dataset *ds);
NN_API void *nn_dataset_y(nn_dataset *ds);
/* 1 + the largest label (0 without labels or samples). */
NN_API int64_t nn_dataset_num_classes(const nn_dataset *ds);
/* Gives each sample a new shape of the same element count, without copying
** (e.g. [28,28] images to [784] for a dense layer). */
NN_API ag_status nn_dataset_reshape(nn_dataset *ds, int rank, const int64_t *shape, char *err,
                                    size_t errlen);
/* Splits ds into two new datasets: samples [0, first) and [first, n), taken
** in a Fisher-Yates shuffled order when 'rng' is not NULL (in order
** otherwise). ds is left as it was; free all three. */
NN_API ag_status nn_dataset_split(const nn_dataset *ds, int64_t first, ag_rng *rng,
                                  ag_alloc_fn fn, void *ud, nn_dataset **a, nn_dataset **b,
                                  char *err, size_t errlen);

/* --------------------------------------------------------------- batches */
/* A loader walks a dataset in mini-batches, reshuffling at the start of
** every epoch. It borrows the dataset and the rng (both must outlive it) and
** allocates all it needs up front: a training loop calls no malloc per batch
** (the tape's arena stops growing after the first step). */
typedef struct nn_loader nn_loader;

typedef struct nn_batch {
    ag_tensor *x;            /* [size, x_shape...] on the tape */
    const int64_t *labels;   /* 'size' labels (NN_Y_LABELS), owned by the loader,
                                valid until the next nn_loader_next; else NULL */
    ag_tensor *y;            /* [size, y_shape...] on the tape (NN_Y_VALUES), else NULL */
    int64_t size;            /* samples in this batch */
    int64_t index;           /* batch number within the epoch, from 0 */
} nn_batch;

/* A loader over ds in batches of 'batch_size'. With 'shuffle' the order of
** each epoch is a Fisher-Yates permutation drawn from 'rng' (ag_rng_below);
** without it the order is 0..n-1 and rng may be NULL. With 'drop_last' a
** final batch smaller than batch_size is skipped, else it is served short. */
NN_API ag_status nn_loader_new(const nn_dataset *ds, int64_t batch_size, int shuffle,
                               int drop_last, ag_rng *rng, ag_alloc_fn fn, void *ud,
                               nn_loader **out, char *err, size_t errlen);
NN_API void nn_loader_free(nn_loader *ld);
/* Batches per epoch. */
NN_API int64_t nn_loader_num_batches(const nn_loader *ld);
/* Fills 'b' with the next batch of the epoch, its tensors made on 't' (valid
** until ag_tape_reset), and returns 1. At the end of the epoch returns 0 and
** rewinds, so the next call starts a new (reshuffled) epoch. Returns 0 too
** when 't' is in error or making a tensor fails: check ag_tape_status. */
NN_API int nn_loader_next(nn_loader *ld, ag_tape *t, nn_batch *b);
/* Data-parallel sharding: from the next epoch on, the loader serves only
** positions rank, rank + size, rank + 2*size, ... of each epoch's order,
** ds->n / size of them (the remainder is left out so every rank takes the
** same number of steps). Give every rank a generator seeded alike: the
** ranks then draw the same permutation and their shards are disjoint, and
** batch k of N ranks at batch b holds the samples of batch k of one process
** at batch N*b. size 1 undoes it. AG_EINVAL for a rank outside [0, size)
** or fewer samples than ranks. */
NN_API ag_status nn_loader_set_shard(nn_loader *ld, int rank, int size, char *err, size_t errlen);
/* Abandons the current epoch: the next call starts a new one. */
NN_API void nn_loader_rewind(nn_loader *ld);

/* ---------------------------------------------------------------- readers */

/* Reads an IDX image file (magic 0x00000803: u8 [n, rows, cols], dims big-
** endian) and its IDX label file (magic 0x00000801: u8 [n]) into a new
** NN_Y_LABELS dataset whose samples are [rows, cols] in dtype dt, pixel
** values scaled to [0, 1] (v / 255). Files ending in .gz (or starting with the
** gzip magic) are decompressed when the library was built with zlib, and are
** AG_EUNSUPPORTED otherwise. A bad magic, a truncated file, trailing bytes
** (after the data, or after the gzip stream), a gzip file too small to hold
** what its header promises (deflate inflates at most 1032-fold), or image and
** label counts that differ are errors naming the file and the numbers
** (AG_EIO, AG_ESHAPE). Only regular files are read: a FIFO is refused before
** reading. */
NN_API ag_status nn_idx_load(const char *images_path, const char *labels_path, ag_dtype dt,
                             ag_alloc_fn fn, void *ud, nn_dataset **out, char *err,
                             size_t errlen);
/* As nn_idx_load, but the dataset keeps the pixels as bytes
** (nn_dataset_new_u8 with x_divisor 255): batches hold the same values, the
** dataset a quarter of the memory in f32. */
NN_API ag_status nn_idx_load_u8(const char *images_path, const char *labels_path, ag_dtype dt,
                                ag_alloc_fn fn, void *ud, nn_dataset **out, char *err,
                                size_t errlen);
/* 1 when this build reads .gz files (it has zlib), else 0. */
NN_API int nn_idx_has_gzip(void);

/* How nn_csv_load reads a file. All zero means: no header, every column a
** feature. */
typedef struct nn_csv_options {
    int header;          /* nonzero: the first row names the columns; it is skipped */
    nn_ykind ykind;      /* NN_Y_NONE, NN_Y_LABELS (y_column holds integer class
                            labels >= 0) or NN_Y_VALUES (a float target, shape [1]) */
    int y_column;        /* 0-based; negative counts from the end (-1: the last) */
} nn_csv_options;

/* Reads a numeric CSV file (comma-separated, optional RFC 4180 quotes, blank
** lines skipped, CRLF or LF) into a new dataset whose samples are the
** [columns] feature vector (all columns but y_column) in dtype dt. A number
** is decimal: an optional sign, digits with an optional '.', an optional
** exponent (e.g. -1.5e-3), of any length, correctly rounded to the dtype
** (strtod or strtof in the C locale, never rounded twice); hex, NaN and
** infinities are refused, and a number beyond the dtype's range is "out of
** range". A bad number or a row of the wrong length
** is an AG_EIO error naming the file, the line and the column (the field
** shown with NUL and control bytes escaped). 'opt' may be NULL. */
NN_API ag_status nn_csv_load(const char *path, const nn_csv_options *opt, ag_dtype dt,
                             ag_alloc_fn fn, void *ud, nn_dataset **out, char *err,
                             size_t errlen);

/* ---------------------------------------------------------------- metrics */
/* Predictions from logits [n, C]: the index of each row's largest value (the
** first on ties; a NaN counts as the largest, as in NumPy). With C == 1 the
** column is a binary classifier's logit: class 1 when it is > 0. */
NN_API ag_status nn_argmax(ag_tensor *logits, int64_t *pred, char *err, size_t errlen);
/* Sets '*correct' to the number of rows of logits [n, C] whose prediction
** equals labels[i]. Labels must lie in [0, max(C, 2)). */
NN_API ag_status nn_count_correct(ag_tensor *logits, const int64_t *labels, int64_t *correct,
                                  char *err, size_t errlen);
/* The fraction of correct rows, in [0, 1] (0 when n == 0). */
NN_API ag_status nn_accuracy(ag_tensor *logits, const int64_t *labels, double *acc, char *err,
                             size_t errlen);
/* Adds the rows of logits [n, C] into a row-major confusion matrix
** counts[classes * classes] (row: true label, column: prediction), so that
** batches accumulate; zero it first. classes must be at least max(C, 2)
** and every label below it. */
NN_API ag_status nn_confusion_add(ag_tensor *logits, const int64_t *labels, int classes,
                                  int64_t *counts, char *err, size_t errlen);
/* Writes the matrix as aligned text, one row per true class. */
NN_API void nn_confusion_print(FILE *f, int classes, const int64_t *counts);

/* ---------------------------------------------------------------- progress */
/* A training progress report for loops of your own. On a terminal it is one
** line redrawn in place (a bar, steps/s, the running loss, the time left);
** into a pipe or a file it is a plain line every quarter of the way, so that
** logs stay short. The struct is yours (on the stack is fine); its fields
** are the report's own. */
typedef struct nn_progress {
    FILE *out;
    int tty;                 /* redraw in place (out is a terminal) */
    char label[48];          /* "epoch 3/10" */
    int64_t total;           /* steps in this run of the bar */
    int64_t next_line;       /* plain mode: the step of the next line */
    double start, last_draw; /* seconds, from nn_now */
} nn_progress;

/* Seconds on a monotonic clock, for measuring durations. */
NN_API double nn_now(void);
/* Starts a bar of 'total' steps titled 'label' (copied, up to 47 bytes) on
** 'out' (stderr when NULL). */
NN_API void nn_progress_start(nn_progress *p, FILE *out, const char *label, int64_t total);
/* Reports that 'done' of the steps are finished and the running loss is
** 'loss'. On a terminal, redraws at most ten times a second. */
NN_API void nn_progress_update(nn_progress *p, int64_t done, double loss);
/* Ends the bar (clearing the line on a terminal); returns the seconds since
** nn_progress_start. */
NN_API double nn_progress_finish(nn_progress *p);

/* A metrics log: one record per call (an epoch's losses and accuracies),
** appended to a file as CSV (a header line, then one line per record) or as
** JSON lines ({"epoch": 1, "loss": 0.25}, numbers with 17 significant
** digits, null for NaN and infinities). Each record is one write(2), not
** buffered, so a run killed midway leaves complete lines. A record is in
** the file whole or not at all: when a write fails partway (disk full,
** EFBIG, EIO) the bytes of it that got in are cut off again, and the log
** is failed from then on: later writes are refused and the close reports
** it, each with AG_EIO and a message naming the path and the first
** failure, so no record follows a missing one. (Should cutting off fail
** too, the message says how many bytes stayed.) Opening with 'append'
** continues an existing log (a resumed run): a CSV log's header must then
** name the same columns, and the file must end in a newline (a log cut
** short in the middle of a line is refused, not glued onto). One writer
** per file. Every record must have the columns of the first. */
typedef struct nn_metrics_log nn_metrics_log;
typedef enum nn_log_format { NN_LOG_CSV, NN_LOG_JSONL } nn_log_format;
NN_API ag_status nn_metrics_log_open(const char *path, nn_log_format format, int append,
                                     ag_alloc_fn fn, void *ud, nn_metrics_log **out, char *err,
                                     size_t errlen);
/* Appends one record of n columns: names keys[i] (letters, digits, '_', '.',
** '-' and '/' only, so that neither format needs quoting), values values[i]. */
NN_API ag_status nn_metrics_log_write(nn_metrics_log *log, int n, const char *const *keys,
                                      const double *values, char *err, size_t errlen);
/* Closes the file and frees the log (always, also on error); AG_EIO when
** a write failed earlier or the close itself failed. */
NN_API ag_status nn_metrics_log_close(nn_metrics_log *log, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
