/*
** gemm_internal.h: what the matrix-product driver (gemm.c) shares with its
** micro-kernels (gemm_avx2.c, gemm_avx512.c and the portable one in
** gemm_template.inc): the packed-panel layout and the kernel descriptor.
**
** Packed layout. op(A) is cut into panels of 'mr' rows: panel r holds, for
** each p < kc, the mr values op(A)[r*mr + i][p] side by side (i < mr), rows
** past the edge zero. op(B) is cut into panels of 'nr' columns: panel s holds,
** for each p < kc, the nr values op(B)[p][s*nr + j]. A micro-kernel reads one
** panel of each and computes one mr x nr tile of C.
*/
#ifndef AG_GEMM_INTERNAL_H
#define AG_GEMM_INTERNAL_H

#include "kernels.h"

/* Per-function instruction sets, so the build never needs -march: code in
** these functions runs only after the dispatcher saw the CPU support them. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define AGK_HAVE_X86 1
#define AGK_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define AGK_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#else
#define AGK_HAVE_X86 0
#endif

/* A hint to bring the line holding *p into the caches for reading. */
#if defined(__GNUC__)
#define AGK_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define AGK_PREFETCH(p) ((void)(p))
#endif

/* What a tile does with the part of C it covers. SET: C = the sum, a chain
** of multiply-adds over p that starts from zero. ADD: C = C + that sum,
** one addition at the end (agk_gemm_add: the bits of a separate add).
** CONTINUE: the chain starts from C's values, which hold the same chain
** through the earlier k blocks, so cutting k into blocks changes no bit. */
typedef enum agk_c_mode { AGK_C_SET, AGK_C_ADD, AGK_C_CONTINUE } agk_c_mode;

/* One tile: c[i*ldc + j] = chain over p of A(i, p) * B(p, j), started as
** 'mode' says, for i < rows (at most mr, or the kernel's max_rows when A is
** read in place) and j < cols <= nr; nothing else of c is touched.
** A(i, p) is a[i*ars + p*acs] with ars == 1 (a packed panel, acs = mr, or a
** transposed operand read in place) or acs == 1 (rows read in place), read
** for i < rows only; B(p, j) is b[p*brs + j], read for j < nr (for j < cols
** only by a kernel with 'masked_b' set). Every kernel but the portable one
** uses one fused multiply-add per term, in order of p, so all of them give
** the same bits, whatever the tile and the k blocks. */
typedef void (*agk_tile_f32)(int64_t kc, const float *a, int64_t ars, int64_t acs,
                             const float *b, int64_t brs, float *c, int64_t ldc, agk_c_mode mode,
                             int rows, int cols);
typedef void (*agk_tile_f64)(int64_t kc, const double *a, int64_t ars, int64_t acs,
                             const double *b, int64_t brs, double *c, int64_t ldc,
                             agk_c_mode mode, int rows, int cols);

/* A whole mr x nr tile, as a kernel's tile_full computes it, that also
** copies the B panel it reads (nr values a step of k, b[p*brs + j]) to
** pb[p*nr + j]: packing B during the first row of tiles. */
typedef void (*agk_tile_pack_f32)(int64_t kc, const float *a, int64_t ars, int64_t acs,
                                  const float *b, int64_t brs, float *c, int64_t ldc,
                                  agk_c_mode mode, float *pb);
typedef void (*agk_tile_pack_f64)(int64_t kc, const double *a, int64_t ars, int64_t acs,
                                  const double *b, int64_t brs, double *c, int64_t ldc,
                                  agk_c_mode mode, double *pb);

/* Packs a transposed block: dst[p*w + i] = src[i*ld + p] for i < rows and
** p < kc, zero for rows <= i < w. Row-major A into mr-row panels, B^T into
** nr-column panels: the gathers of packing, done with SIMD transposes. */
typedef void (*agk_pack_t_f32)(int64_t kc, int64_t rows, const float *src, int64_t ld,
                               float *dst, int w);
typedef void (*agk_pack_t_f64)(int64_t kc, int64_t rows, const double *src, int64_t ld,
                               double *dst, int w);

/* Packs a block as it lies: dst[s*w*kc + p*w + j] = src[p*ld + s*w + j]
** for the panels s of w columns that cover 'cols', zero past 'cols'. Rows
** of B into nr-column panels: the copy of packing, done with SIMD loads
** and stores. */
typedef void (*agk_pack_n_f32)(int64_t kc, int64_t cols, const float *src, int64_t ld,
                               float *dst, int w);
typedef void (*agk_pack_n_f64)(int64_t kc, int64_t cols, const double *src, int64_t ld,
                               double *dst, int w);

/* Writes a rows x cols tile held with row stride 'nr' to C transposed:
** c[j*ldc + i] (+)= tile[i*nr + j]. */
typedef void (*agk_store_t_f32)(const float *tile, int nr, int rows, int cols, float *c,
                                int64_t ldc, bool add);
typedef void (*agk_store_t_f64)(const double *tile, int nr, int rows, int cols, double *c,
                                int64_t ldc, bool add);

/* Register tile (mr x nr) and cache blocks: a packed mc x kc block of A
** stays in L2 while the kc x nr panels of a kc x nc block of B stream
** through L1. mc is a multiple of mr and nc of nr. */
typedef struct agk_blocking {
    int mr, nr, mc, kc, nc;
} agk_blocking;

/* The tallest packed A block: a part's last rows join the block before them
** when they would make a block of at most mc / 2 rows. Each block streams
** the whole B block past its tiles; a thin last one (b64's 64 x 256 x 784
** product: 60 rows, then 4) read B from the L3 for a few tiles' work and
** ran near the L3's bandwidth, not the FMA peak. */

/* The height of the next register tile when 'left' rows of a block are
** left, for a kernel of mr rows. A tile of under 4 rows has too few chains
** of multiply-adds to hide their latency (a 6 x 16 tile of 2 rows ran at
** under half the FMA rate), so the last mr + r rows (0 < r < 4) go as two
** tiles of about half each: 128 rows of AVX2's 6 as 20 x 6, 4 and 4, which
** ran 128^3 5% faster than 21 x 6 and 2 on Zen 3 (docs/PERFORMANCE.md).
** Packed panels of A have these heights too (gemm_template.inc). */
static inline int agk_tile_rows(int64_t left, int mr)
{
    if (left <= mr)
        return (int)left;
    if (left < mr + 4 && mr >= 4)
        return (int)(left - left / 2);
    return mr;
}
static inline int64_t agk_block_rows_max(const agk_blocking *b) { return b->mc + b->mc / 2; }

typedef struct agk_kernel_f32 {
    agk_blocking blk;
    int max_rows;    /* tallest tile it runs (>= mr): for the last rows of an A read in place */
    agk_tile_f32 tile;
    agk_tile_f32 tile_full;   /* for whole mr x nr tiles only; NULL: tile */
    bool masked_b;   /* reads B only inside the tile: an edge panel needs no packing */
    agk_pack_t_f32 pack_t;    /* NULL: the template's scalar loops */
    agk_store_t_f32 store_t;  /* likewise */
    agk_pack_n_f32 pack_n;    /* NULL: the template's loops (an untransposed B) */
    agk_tile_pack_f32 tile_pack_b;   /* NULL: B is packed before its tiles run */
} agk_kernel_f32;

typedef struct agk_kernel_f64 {
    agk_blocking blk;
    int max_rows;    /* tallest tile it runs (>= mr): for the last rows of an A read in place */
    agk_tile_f64 tile;
    agk_tile_f64 tile_full;   /* for whole mr x nr tiles only; NULL: tile */
    bool masked_b;
    agk_pack_t_f64 pack_t;
    agk_store_t_f64 store_t;
    agk_pack_n_f64 pack_n;
    agk_tile_pack_f64 tile_pack_b;
} agk_kernel_f64;

/* What gemm_cpu.c learns from cpuid. Cache sizes in bytes, each within
** what real cores have (otherwise a common size): a core's L1 data cache,
** its L2, and its share of the L3. */
typedef enum agk_vendor { AGK_VENDOR_OTHER, AGK_VENDOR_INTEL, AGK_VENDOR_AMD } agk_vendor;
typedef struct agk_cpu {
    agk_vendor vendor;
    int family, model;
    size_t l1d, l2, l3_per_core;
    char brand[49];   /* "" when cpuid has none */
} agk_cpu;
void agk_cpu_read(agk_cpu *cpu);
/* agk_gemm_blocking for the caches of 'cpu' (tests: the rules on CPUs
** that are not at hand). */
void agk_gemm_blocking_cpu(agk_gemm_kernel id, ag_dtype dt, const agk_cpu *cpu, int64_t out[5]);

/* The largest register tile of any kernel: edge tiles go through a buffer
** of this size on the stack. */
enum { AGK_MAX_MR = 16, AGK_MAX_NR = 32 };

#if AGK_HAVE_X86
/* Any width w (f32: SIMD for w < 8 and for whole groups of 8 rows; f64:
** for groups of 4); they need AVX2. */
void agk_pack_t_f32_avx2(int64_t kc, int64_t rows, const float *src, int64_t ld, float *dst,
                         int w);
/* For widths w up to 16. */
void agk_pack_n_f32_avx2(int64_t kc, int64_t cols, const float *src, int64_t ld, float *dst,
                         int w);
void agk_pack_t_f64_avx2(int64_t kc, int64_t rows, const double *src, int64_t ld, double *dst,
                         int w);
void agk_store_t_f32_avx2(const float *tile, int nr, int rows, int cols, float *c, int64_t ldc,
                          bool add);
void agk_store_t_f64_avx2(const double *tile, int nr, int rows, int cols, double *c,
                          int64_t ldc, bool add);
extern const agk_kernel_f32 agk_kernel_f32_avx2, agk_kernel_f32_avx512, agk_kernel_f32_avx512_intel;
extern const agk_kernel_f64 agk_kernel_f64_avx2, agk_kernel_f64_avx512, agk_kernel_f64_avx512_intel;
/* For the micro-kernels. Left to themselves, GCC folds the load of a B
** row into each of the R multiply-adds that use it, as a memory operand: R
** loads of the same vector per step instead of one. A 512-bit load takes a
** whole load-port cycle on Zen 4, so with A read in place (one more load per
** row) the loop ran at half the FMA rate. An empty asm that claims to change
** the registers makes the compiler load each row once. */
#define KEEP_IN_REGISTERS(x, y) __asm__("" : "+v"(x), "+v"(y))
#endif

#endif
