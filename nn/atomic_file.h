/*
** atomic_file.h: replacing a file so that readers see the old bytes or the
** new ones, never a torn file, and nothing is left behind by a writer that
** dies. Used by the checkpoint writer. Private: never installed.
*/
#ifndef NN_ATOMIC_FILE_H
#define NN_ATOMIC_FILE_H

#include "io_util.h"

#include <sys/types.h>

/* One replacement in progress. The fields are the module's own. */
typedef struct nni_atomic {
    const char *who;     /* the public function, for messages */
    const char *path;    /* as the caller gave it */
    ag_alloc_fn fn;
    void *ud;
    char *target;        /* 'path' with its symlinks followed: the file replaced */
    size_t block_size;   /* of the block that starts with 'target' */
    char *tmp;           /* scratch in the same block: the temporary name */
    size_t tmp_size;
    int fd;              /* the new file, written by the caller */
    bool unnamed;        /* opened with O_TMPFILE: no name yet */
    bool named;          /* 'tmp' exists on disk and must go on failure */
    bool keep_mode;      /* the target exists: its mode is kept */
    mode_t mode;
} nni_atomic;

/* Starts replacing 'path'. Symlinks are followed to the file they name (the
** link stays a link; its target gets the new bytes). An existing target
** must be a regular file; its permission bits are kept, and a new file gets
** 0666 less the umask. Temporary files of dead writers of the same target
** are removed first (see atomic_file.c for the rule). On AG_OK, a->fd is an
** empty file to write into; then call nni_atomic_commit or _abort. Errors:
** AG_EINVAL (an empty path), AG_ENOMEM, AG_EIO (message written, nothing
** on disk changed). */
ag_status nni_atomic_begin(nni_atomic *a, const char *who, const char *path, ag_alloc_fn fn, void *ud,
                           char *err, size_t errlen);
/* fsyncs the new file, gives it the kept mode and renames it over the target,
** then fsyncs the directory. On failure the temporary file is removed, the
** target is unchanged, and the message says so. Frees 'a' either way. */
ag_status nni_atomic_commit(nni_atomic *a, char *err, size_t errlen);
/* Drops the new file; the target is unchanged. Frees 'a'. */
void nni_atomic_abort(nni_atomic *a);

#endif
