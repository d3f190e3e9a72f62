/*
** checkpoint.c: a model's parameters to and from a safetensors file, by
** name, through the checkpoint functions of nn_io.h.
*/
#include "model_internal.h"

#include <stdio.h>

typedef ag_status (*transfer_fn)(const char *path, int n, const char *const *names,
                                 ag_tensor *const *tensors, ag_alloc_fn fn, void *ud, char *err,
                                 size_t errlen);

/* Lists the model's names and tensors and hands them to 'io'. The lists
** are temporary, taken and given back through the model's hook. */
static ag_status transfer(nn_model *m, const char *who, const char *path, transfer_fn io,
                          char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!m || m->status != AG_OK) {
        if (err)
            snprintf(err, errlen, "%s: %s%s", who, m ? "the model is in error: " : "model is NULL",
                     m ? m->errmsg : "");
        return m ? m->status : AG_EINVAL;
    }
    size_t n = (size_t)m->n_params;
    size_t bytes = (n ? n : 1) * (sizeof(const char *) + sizeof(ag_tensor *));
    void *lists = nni_realloc(m, NULL, 0, bytes);
    if (!lists) {
        if (err)
            snprintf(err, errlen, "%s: out of memory listing %zu parameters", who, n);
        return AG_ENOMEM;
    }
    ag_tensor **tensors = lists;
    const char **names = (const char **)(tensors + (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        tensors[i] = m->params[i].tensor;
        names[i] = ag_name(tensors[i]);
    }
    ag_status st = io(path, (int)n, names, tensors, m->alloc, m->alloc_ud, err, errlen);
    nni_realloc(m, lists, bytes, 0);
    return st;
}

ag_status nn_model_save(nn_model *m, const char *path, char *err, size_t errlen)
{
    return transfer(m, "nn_model_save", path, nn_safetensors_save, err, errlen);
}

ag_status nn_model_load(nn_model *m, const char *path, char *err, size_t errlen)
{
    return transfer(m, "nn_model_load", path, nn_safetensors_load, err, errlen);
}
