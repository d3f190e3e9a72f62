/*
** comm_internal.h: what the communicator backends (comm_local.c,
** comm_mpi.c) share with comm.c. Never installed.
*/
#ifndef NN_COMM_INTERNAL_H
#define NN_COMM_INTERNAL_H

#include "nn_comm.h"

/* dst[i] = src[0][i] + src[1][i] + ... + src[nsrc-1][i] for i in
** [begin, end), added left to right in dtype dt: the one summation order
** every backend uses, so that they all give the same bits. dst may be
** src[0]. */
void nni_comm_sum_ranks(void *dst, const void *const *src, int nsrc, int64_t begin, int64_t end,
                        ag_dtype dt);

#endif
