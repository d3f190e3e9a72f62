/*
** fashion_data.h: finds and loads Fashion-MNIST for the examples, from the
** files of Debian's package dataset-fashion-mnist unless told otherwise.
*/
#ifndef EXAMPLES_FASHION_DATA_H
#define EXAMPLES_FASHION_DATA_H

#include "nn.h"

/* Where the Debian package puts the four files. */
#define FASHION_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

enum { FASHION_PIXELS = 784, FASHION_CLASSES = 10 };

/* The ten class names, indexed by label ("T-shirt/top", ..., "Ankle boot"). */
extern const char *const fashion_class_names[FASHION_CLASSES];

/* Loads the training split ('train' nonzero: 60000 images) or the test split
** (10000) from 'dir' (NULL: FASHION_DEFAULT_DIR) as a labelled dataset of
** [784] samples in dtype dt, pixels in [0, 1] (kept as bytes:
** nn_idx_load_u8). 'limit' > 0 keeps only the first 'limit' samples. Each
** file is looked for as-is, then with .gz. Returns the dataset (free with
** nn_dataset_free), or NULL after printing to stderr a message that starts
** with 'prog' and says what to do: install the package when the files are
** missing, gunzip them when this build has no zlib. */
nn_dataset *fashion_load(const char *prog, const char *dir, int train, ag_dtype dt, int64_t limit);

#endif
