/*
** arena.c: the tape's bump allocator and the allocator hook. Every byte the
** library takes goes through agi_realloc; tape memory is carved from chunks
** that ag_tape_reset rewinds, never frees.
*/
#include "internal.h"

#include <stdlib.h>

enum { MIN_CHUNK = 64 * 1024 };

void *ag_realloc(ag_alloc_fn fn, void *ud, void *p, size_t osize, size_t nsize)
{
    return agi_realloc(fn, ud, p, osize, nsize);
}

void *agi_realloc(ag_alloc_fn fn, void *ud, void *p, size_t osize, size_t nsize)
{
    if (!p && nsize == 0)
        return NULL;   /* freeing nothing never reaches the hook */
    if (fn)
        return fn(ud, p, osize, nsize);
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, nsize);
}

static size_t align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

_Static_assert(sizeof(agi_chunk) <= AGI_CHUNK_HEADER, "agi_chunk outgrew its header");

static size_t chunk_header(void) { return AGI_CHUNK_HEADER; }

/* Bytes of chunk 'c' free for an allocation of 'size' aligned to 'align', or
** SIZE_MAX when it does not fit. */
static size_t fit(const agi_chunk *c, size_t size, size_t align)
{
    uintptr_t base = (uintptr_t)c + chunk_header();
    size_t off = align_up(base + c->used, align) - base;
    if (off > c->size || c->size - off < size)
        return SIZE_MAX;
    return off;
}

/* The two arenas of tensor headers (agi_heads) grow in step: a chunk made
** for one is made, of the same size, at the same place in the other's list.
** The next pass, which repeats this one's requests in the other arena,
** finds its chunks made, so that no pass after the first allocates (pages
** of the twin that are never written are never touched). */
static bool mirror_chunk(ag_tape *t, agi_arena *twin, const agi_arena *a, const agi_chunk *c)
{
    size_t at = 0;
    for (const agi_chunk *k = a->first; k != c; k = k->next)
        at++;
    agi_chunk *m = agi_realloc(t->alloc, t->alloc_ud, NULL, 0, chunk_header() + c->size);
    if (!m) {
        agi_error(t, AG_ENOMEM, "arena: out of memory allocating %zu bytes",
                  chunk_header() + c->size);
        return false;
    }
    m->size = c->size;
    m->used = 0;
    agi_chunk **link = &twin->first;
    for (size_t i = 0; i < at && *link; i++)
        link = &(*link)->next;
    m->next = *link;
    *link = m;
    return true;
}

void *agi_arena_grow(ag_tape *t, agi_arena *a, size_t size, size_t align)
{
    if (size == 0)
        size = 1;
    /* Walk forward through chunks kept from earlier passes: a repeated pass
    ** makes the same requests, so it finds the same chunks. */
    while (a->cur) {
        size_t off = fit(a->cur, size, align);
        if (off != SIZE_MAX) {
            a->cur->used = off + size;
            a->in_use += size;
            return (char *)a->cur + chunk_header() + off;
        }
        if (!a->cur->next)
            break;
        /* Chunks past 'cur' are free in this pass; their 'used' is stale
        ** from the last one and must not decide whether the request fits. */
        a->cur->next->used = 0;
        if (fit(a->cur->next, size, align) == SIZE_MAX)
            break;
        a->cur = a->cur->next;
    }
    size_t want = size + align;
    size_t csize = a->cur ? a->cur->size * 2 : MIN_CHUNK;
    if (csize < want)
        csize = want;
    if (csize > (size_t)1 << 30 && want <= (size_t)1 << 30)
        csize = (size_t)1 << 30;
    if (want < size || csize > SIZE_MAX - chunk_header()) {
        agi_error(t, AG_ENOMEM, "arena: request of %zu bytes is too large", size);
        return NULL;
    }
    agi_chunk *c = agi_realloc(t->alloc, t->alloc_ud, NULL, 0, chunk_header() + csize);
    if (!c) {
        agi_error(t, AG_ENOMEM, "arena: out of memory allocating %zu bytes", chunk_header() + csize);
        return NULL;
    }
    c->size = csize;
    c->used = 0;
    if (a->cur) {
        c->next = a->cur->next;
        a->cur->next = c;
    } else {
        c->next = a->first;
        a->first = c;
    }
    a->cur = c;
    if ((a == &t->heads[0] || a == &t->heads[1]) &&
        !mirror_chunk(t, a == &t->heads[0] ? &t->heads[1] : &t->heads[0], a, c))
        return NULL;
    size_t off = fit(c, size, align);
    c->used = off + size;
    a->in_use += size;
    return (char *)c + chunk_header() + off;
}

void agi_arena_reset(agi_arena *a)
{
    a->cur = a->first;
    if (a->cur)
        a->cur->used = 0;
    a->in_use = 0;
}

void agi_arena_free(ag_tape *t, agi_arena *a)
{
    agi_chunk *c = a->first;
    while (c) {
        agi_chunk *next = c->next;
        agi_realloc(t->alloc, t->alloc_ud, c, chunk_header() + c->size, 0);
        c = next;
    }
    a->first = a->cur = NULL;
    a->in_use = 0;
}
