/*
** gemm_cpu.c: what the matrix product needs to know about the CPU, from
** cpuid: the vendor, family and model (to choose a kernel) and the sizes of
** the data caches a core has to itself or shares (to derive the cache
** blocks). Intel reports its caches in leaf 4, AMD in leaf 0x8000001D (with
** TOPOEXT) or, on older parts, in leaves 0x80000005 and 0x80000006. Where
** cpuid says nothing (another architecture, a hypervisor that hides the
** leaves), the sizes are common ones: 32 KB, 512 KB and 2 MB per core.
*/
#include "gemm_internal.h"

#include <string.h>

#if AGK_HAVE_X86
#include <cpuid.h>
#endif

enum { FALLBACK_L1D = 32 << 10, FALLBACK_L2 = 512 << 10, FALLBACK_L3 = 2 << 20 };

#if AGK_HAVE_X86
/* One deterministic cache-parameters leaf (Intel's 4 and AMD's 0x8000001D
** share the layout): each subleaf a cache, until a null type. */
static void caches_from_leaf(unsigned leaf, agk_cpu *cpu)
{
    for (unsigned sub = 0; sub < 16; sub++) {
        unsigned a, b, c, d;
        __cpuid_count(leaf, sub, a, b, c, d);
        unsigned type = a & 31, level = (a >> 5) & 7;
        if (type == 0)
            break;
        if (type == 2)   /* instructions only */
            continue;
        size_t ways = ((b >> 22) & 0x3FF) + 1, parts = ((b >> 12) & 0x3FF) + 1;
        size_t line = (b & 0xFFF) + 1, sets = (size_t)c + 1;
        size_t size = ways * parts * line * sets;
        /* Logical processors sharing it, at most: a whole L3 shared by the
        ** socket's cores gives each of them its share. */
        size_t sharing = ((a >> 14) & 0xFFF) + 1;
        if (level == 1)
            cpu->l1d = size;
        else if (level == 2)
            cpu->l2 = size;
        else if (level == 3)
            cpu->l3_per_core = size / (sharing > 0 ? sharing : 1);
    }
}

static void read_cpu(agk_cpu *cpu)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return;
    unsigned max_leaf = a;
    char vendor[13];
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    vendor[12] = 0;
    cpu->vendor = strcmp(vendor, "GenuineIntel") == 0   ? AGK_VENDOR_INTEL
                  : strcmp(vendor, "AuthenticAMD") == 0 ? AGK_VENDOR_AMD
                                                        : AGK_VENDOR_OTHER;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        unsigned family = (a >> 8) & 15, model = (a >> 4) & 15;
        if (family == 15)
            family += (a >> 20) & 255;
        if (family == 6 || family >= 15)
            model += ((a >> 16) & 15) << 4;
        cpu->family = (int)family;
        cpu->model = (int)model;
    }
    unsigned max_ext = __get_cpuid_max(0x80000000u, NULL);
    if (cpu->vendor == AGK_VENDOR_INTEL && max_leaf >= 4) {
        caches_from_leaf(4, cpu);
    } else if (cpu->vendor == AGK_VENDOR_AMD) {
        bool topoext = max_ext >= 0x80000001u && __get_cpuid(0x80000001u, &a, &b, &c, &d) &&
                       (c >> 22) & 1;
        if (topoext && max_ext >= 0x8000001Du) {
            caches_from_leaf(0x8000001Du, cpu);
        } else if (max_ext >= 0x80000006u) {
            __cpuid(0x80000005u, a, b, c, d);
            cpu->l1d = (size_t)(c >> 24) << 10;
            __cpuid(0x80000006u, a, b, c, d);
            cpu->l2 = (size_t)(c >> 16) << 10;
            cpu->l3_per_core = 0;   /* shared by an unknown number of cores */
        }
    }
    if (max_ext >= 0x80000004u) {
        unsigned regs[12];
        for (unsigned i = 0; i < 3; i++)
            __cpuid(0x80000002u + i, regs[4 * i], regs[4 * i + 1], regs[4 * i + 2],
                    regs[4 * i + 3]);
        memcpy(cpu->brand, regs, 48);
        cpu->brand[48] = 0;
    }
}
#endif

/* Sizes outside what any x86 core has are a hypervisor's inventions. */
static size_t sane(size_t v, size_t lo, size_t hi, size_t fallback)
{
    return v >= lo && v <= hi ? v : fallback;
}

void agk_cpu_read(agk_cpu *cpu)
{
    *cpu = (agk_cpu){.vendor = AGK_VENDOR_OTHER};
#if AGK_HAVE_X86
    read_cpu(cpu);
#endif
    cpu->l1d = sane(cpu->l1d, 8 << 10, 256 << 10, FALLBACK_L1D);
    cpu->l2 = sane(cpu->l2, 128 << 10, 16 << 20, FALLBACK_L2);
    cpu->l3_per_core = sane(cpu->l3_per_core, 256 << 10, 64 << 20, FALLBACK_L3);
    /* Trim the padding of the brand string. */
    char *s = cpu->brand;
    while (*s == ' ')
        s++;
    memmove(cpu->brand, s, strlen(s) + 1);
    for (size_t n = strlen(cpu->brand); n > 0 && cpu->brand[n - 1] == ' '; n--)
        cpu->brand[n - 1] = 0;
}
