// OpenBLAS' CBLAS interface, plus its thread-count controls.
#pragma once
#include <cblas.h>

/// Number of threads OpenBLAS uses for one call (set at load time from OPENBLAS_NUM_THREADS).
static inline int unseg_blas_get_threads(void) { return openblas_get_num_threads(); }
/// Change the number of threads OpenBLAS uses for subsequent calls (process-wide).
static inline void unseg_blas_set_threads(int n) { openblas_set_num_threads(n); }
/// The kernel family OpenBLAS selected (e.g. "Haswell", "SkylakeX").
static inline const char *unseg_blas_core_name(void) { return openblas_get_corename(); }

#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

/// The OpenBLAS kernel family this CPU should run when the linked OpenBLAS fell back to a weaker
/// one because it does not know the CPU (Debian's 0.3.21 takes Sapphire Rapids for a Prescott and
/// some AVX-512 CPUs for a Haswell): "SkylakeX" on CPUs with usable AVX-512 (F, BW, VL, DQ; the
/// compiler's check includes the OS's register saving), "Haswell" on AVX2 + FMA CPUs given a
/// pre-AVX2 family. NULL when OpenBLAS chose well, when the user set OPENBLAS_CORETYPE (their
/// choice stands), or off x86-64.
static inline const char *unseg_blas_better_core(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    if (getenv("OPENBLAS_CORETYPE") != NULL) return NULL;
    __builtin_cpu_init();
    const char *have = openblas_get_corename();
    if (have == NULL) return NULL;
    const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    static const char *const avx512Families[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *const avx2Families[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};
    if (avx512) {
        for (unsigned i = 0; i < sizeof avx512Families / sizeof *avx512Families; i++)
            if (strcasecmp(have, avx512Families[i]) == 0) return NULL;
        return "SkylakeX";
    }
    if (avx2) {
        for (unsigned i = 0; i < sizeof avx2Families / sizeof *avx2Families; i++)
            if (strcasecmp(have, avx2Families[i]) == 0) return NULL;
        return "Haswell";
    }
#endif
    return NULL;
}

/// Starts this program again with OPENBLAS_CORETYPE=`core` (OpenBLAS reads it at load time only)
/// and UNSEG_BLAS_CORE_CHOSEN=<the family OpenBLAS had chosen> (so that it can say so). Returns
/// only if the exec failed; the program then goes on with the kernels it has.
static inline void unseg_blas_restart_with_core(const char *core, char *const *argv) {
    if (setenv("UNSEG_BLAS_CORE_CHOSEN", openblas_get_corename(), 1) != 0 || setenv("OPENBLAS_CORETYPE", core, 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("UNSEG_BLAS_CORE_CHOSEN");
}
