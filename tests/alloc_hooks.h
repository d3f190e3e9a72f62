/*
** alloc_hooks.h: an ag_alloc_fn for tests that counts requests, can refuse
** the Nth one (SQLite's test_malloc, Lua's debug_realloc), keeps a tally of
** live blocks so a test can prove nothing leaked, and checks that the
** library passes every block's true size back as 'osize'.
*/
#ifndef TESTS_ALLOC_HOOKS_H
#define TESTS_ALLOC_HOOKS_H

#include "autograd.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct alloc_hooks {
    long requests;      /* calls that asked for memory (malloc or realloc) */
    long fail_at;       /* 1-based request to refuse; 0 refuses none */
    long fail_from;     /* refuse this request and all later ones when > 0 */
    long refused;       /* requests refused so far */
    long frees;
    long live;          /* blocks held by the library now */
    size_t live_bytes;
    long bad_osize;     /* frees or reallocs whose osize was not the block's size */
} alloc_hooks;

/* Each block carries its size in a header, so the hook can check 'osize'.
** 16 bytes keep the payload aligned as malloc's is on the platforms we test. */
enum { HOOK_HEADER = 16 };
_Static_assert(HOOK_HEADER >= sizeof(size_t), "the header holds a size");

static inline void *hook_payload(void *block) { return (char *)block + HOOK_HEADER; }
static inline void *hook_block(void *payload) { return (char *)payload - HOOK_HEADER; }
static inline size_t hook_size(void *payload)
{
    size_t n;
    memcpy(&n, hook_block(payload), sizeof n);
    return n;
}

static inline void *hook_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    alloc_hooks *h = ud;
    if (ptr && hook_size(ptr) != osize)
        h->bad_osize++;
    if (nsize == 0) {
        if (ptr) {
            h->frees++;
            h->live--;
            h->live_bytes -= hook_size(ptr);
            free(hook_block(ptr));
        }
        return NULL;
    }
    h->requests++;
    if (h->requests == h->fail_at || (h->fail_from > 0 && h->requests >= h->fail_from)) {
        h->refused++;
        return NULL;   /* as realloc does, a refused resize leaves 'ptr' intact */
    }
    if (nsize > (size_t)-1 - HOOK_HEADER)
        return NULL;
    size_t old = ptr ? hook_size(ptr) : 0;
    void *block = realloc(ptr ? hook_block(ptr) : NULL, nsize + HOOK_HEADER);
    if (!block)
        return NULL;
    memcpy(block, &nsize, sizeof nsize);
    if (!ptr)
        h->live++;
    h->live_bytes = h->live_bytes - old + nsize;
    return hook_payload(block);
}

/* A hook state that counts only. */
static inline alloc_hooks hooks_counting(void) { return (alloc_hooks){0}; }
/* A hook state that refuses request n (1-based) and no other. */
static inline alloc_hooks hooks_failing_at(long n) { return (alloc_hooks){.fail_at = n}; }

#endif
