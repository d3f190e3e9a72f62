/*
** fashion_data.c: locating the Fashion-MNIST files (plain or gzipped) and
** loading one split through nn's IDX reader.
*/
#define _POSIX_C_SOURCE 200809L
#include "fashion_data.h"

#include <stdio.h>
#include <unistd.h>

const char *const fashion_class_names[FASHION_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

/* Fills 'path' with dir/name, or dir/name.gz when only that exists; returns
** 0, or -1 when neither is there. */
static int find_file(const char *dir, const char *name, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    if (access(path, R_OK) == 0)
        return 0;
    snprintf(path, size, "%s/%s.gz", dir, name);
    return access(path, R_OK) == 0 ? 0 : -1;
}

nn_dataset *fashion_load(const char *prog, const char *dir, int train, ag_dtype dt, int64_t limit)
{
    if (!dir)
        dir = FASHION_DEFAULT_DIR;
    const char *images = train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    const char *labels = train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte";
    char images_path[4096], labels_path[4096];
    if (find_file(dir, images, images_path, sizeof images_path) != 0 ||
        find_file(dir, labels, labels_path, sizeof labels_path) != 0) {
        fprintf(stderr,
                "%s: Fashion-MNIST is not in %s (looked for %s[.gz] and %s[.gz]).\n"
                "Install it with:  sudo apt-get install dataset-fashion-mnist\n"
                "or point --data at a directory that holds the four IDX files.\n",
                prog, dir, images, labels);
        return NULL;
    }
    nn_dataset *ds = NULL;
    char err[512];
    /* Kept as bytes: a quarter of the memory, and quicker shuffled batches. */
    ag_status st = nn_idx_load_u8(images_path, labels_path, dt, NULL, NULL, &ds, err, sizeof err);
    if (st == AG_OK)
        st = nn_dataset_reshape(ds, 1, (int64_t[]){FASHION_PIXELS}, err, sizeof err);
    if (st == AG_OK && limit > 0 && limit < nn_dataset_len(ds)) {
        nn_dataset *head = NULL, *rest = NULL;
        st = nn_dataset_split(ds, limit, NULL, NULL, NULL, &head, &rest, err, sizeof err);
        nn_dataset_free(rest);
        nn_dataset_free(ds);
        ds = head;
    }
    if (st != AG_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        if (st == AG_EUNSUPPORTED)
            fprintf(stderr, "%s: gunzip the four files into a directory and pass it with --data\n",
                    prog);
        nn_dataset_free(ds);
        return NULL;
    }
    return ds;
}
