/*
** gemm_avx512_emulated.h: the AVX-512 intrinsics that the two AVX-512
** kernels use, written lane by lane in C, so that a test build runs those
** kernels, and the driver's plans for them, on a CPU without AVX-512
** (tests/meson.build: gemm_avx512_emulated, compiled with
** -DAGK_AVX512_EMULATED; never part of the library). Only AVX2 and FMA are
** needed, so valgrind can run it too.
**
** What it must keep of the hardware:
**   - every multiply-add is fused (one rounding), as vfmadd's is, so an
**     emulated kernel must give the same bits as the AVX2 kernel;
**   - a masked load or store touches only its selected lanes, as the
**     instruction does (the others may lie past the operand), so the
**     sanitizers see any access the hardware would make out of bounds.
** The kernels' register hints (empty asm statements) have nothing to hold
** here and become no-ops.
*/
#ifndef AG_GEMM_AVX512_EMULATED_H
#define AG_GEMM_AVX512_EMULATED_H

#include <math.h>
#include <string.h>

/* The kernels' functions take AVX2 and FMA instead of AVX-512: fmaf and
** fma then compile to the instruction, and the lanes' loops vectorize. */
#undef AGK_TARGET_AVX512
#define AGK_TARGET_AVX512 AGK_TARGET_AVX2
#undef KEEP_IN_REGISTERS
#define KEEP_IN_REGISTERS(x, y) ((void)(x), (void)(y))
/* The tile's row loops are compiled once each, for any height, instead of
** inlined into every case of every tile: GCC took 12 minutes on each of
** the two kernel files under ASan that way (2 minutes without). The code
** is the same; only the constants are no longer folded into it. */
#define AGK_AVX512_INLINE AGK_TARGET_AVX512 static __attribute__((noinline))

/* The intrinsics' own type names: this file stands in for <immintrin.h>,
** which the emulated build does not include. */
typedef struct { float lane[16]; } __m512;
typedef struct { double lane[8]; } __m512d;
typedef unsigned short __mmask16;
typedef unsigned char __mmask8;

#define AGK_EMULATED static inline AGK_TARGET_AVX2

/* One set of functions per element type T, vector type VEC of N lanes,
** mask type MASK, intrinsic suffix SFX, and fused multiply-add FMA. */
#define AGK_EMULATE_AVX512(T, VEC, N, MASK, SFX, FMA)                                  \
    AGK_EMULATED VEC _mm512_setzero_##SFX(void) { return (VEC){{0}}; }                 \
    AGK_EMULATED VEC _mm512_set1_##SFX(T x)                                            \
    {                                                                                  \
        VEC r;                                                                         \
        for (int i = 0; i < N; i++)                                                    \
            r.lane[i] = x;                                                             \
        return r;                                                                      \
    }                                                                                  \
    AGK_EMULATED VEC _mm512_loadu_##SFX(const void *p)                                 \
    {                                                                                  \
        VEC r;                                                                         \
        memcpy(r.lane, p, sizeof r.lane);                                              \
        return r;                                                                      \
    }                                                                                  \
    AGK_EMULATED VEC _mm512_maskz_loadu_##SFX(MASK k, const void *p)                   \
    {                                                                                  \
        VEC r = {{0}};                                                                 \
        for (int i = 0; i < N; i++)                                                    \
            if (k >> i & 1)                                                            \
                memcpy(&r.lane[i], (const T *)p + i, sizeof(T));                       \
        return r;                                                                      \
    }                                                                                  \
    AGK_EMULATED void _mm512_storeu_##SFX(void *p, VEC v) { memcpy(p, v.lane, sizeof v.lane); } \
    AGK_EMULATED void _mm512_mask_storeu_##SFX(void *p, MASK k, VEC v)                 \
    {                                                                                  \
        for (int i = 0; i < N; i++)                                                    \
            if (k >> i & 1)                                                            \
                memcpy((T *)p + i, &v.lane[i], sizeof(T));                             \
    }                                                                                  \
    AGK_EMULATED VEC _mm512_add_##SFX(VEC a, VEC b)                                    \
    {                                                                                  \
        for (int i = 0; i < N; i++)                                                    \
            a.lane[i] += b.lane[i];                                                    \
        return a;                                                                      \
    }                                                                                  \
    /* a * b + c, rounded once. */                                                     \
    AGK_EMULATED VEC _mm512_fmadd_##SFX(VEC a, VEC b, VEC c)                           \
    {                                                                                  \
        for (int i = 0; i < N; i++)                                                    \
            c.lane[i] = FMA(a.lane[i], b.lane[i], c.lane[i]);                          \
        return c;                                                                      \
    }

AGK_EMULATE_AVX512(float, __m512, 16, __mmask16, ps, fmaf)
AGK_EMULATE_AVX512(double, __m512d, 8, __mmask8, pd, fma)
#undef AGK_EMULATE_AVX512
#undef AGK_EMULATED

#endif
