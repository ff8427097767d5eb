// FastMath.exp (UnsegLinAlg/FastMath.swift) in 8 and 4 AVX2 lanes: the same operations in the
// same order, no FMA (the target is "avx2,f16c"), so the same bits. Shared by the CRF and the
// PriMaPs-EM kernels; x86-64 only (include inside `#if defined(__x86_64__)`).
#ifndef UNSEG_SIMD_EXP_H
#define UNSEG_SIMD_EXP_H
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,f16c")))

// 1 when the CPU runs the AVX2 kernels (AVX2 and F16C), else 0: one check for the CRF and EM.
static inline int unseg_cpu_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") ? 1 : 0;
}

// FastMath.exp, 8 and 4 lanes.
#define EXP_BODY(V, PS, SI, EPI, TOI, TOF)                                                                \
    V lo = PS##set1_ps(-87.33654f), hi = PS##set1_ps(88.72283f);                                 \
    V v = PS##blendv_ps(x, lo, PS##cmp_ps(x, lo, _CMP_LT_OQ));                                    \
    v = PS##blendv_ps(v, hi, PS##cmp_ps(v, hi, _CMP_GT_OQ));                                      \
    V magic = PS##set1_ps(12582912.0f);                                                           \
    V t = PS##add_ps(PS##mul_ps(v, PS##set1_ps(1.44269504f)), magic);                             \
    V n = PS##sub_ps(t, magic);                                                                   \
    V r = PS##sub_ps(v, PS##mul_ps(n, PS##set1_ps(0.693359375f)));                                \
    r = PS##add_ps(r, PS##mul_ps(n, PS##set1_ps(2.1219444e-4f)));                                 \
    V z = PS##mul_ps(r, r);                                                                       \
    V p = PS##set1_ps(1.98756915e-4f);                                                            \
    p = PS##add_ps(PS##mul_ps(p, r), PS##set1_ps(1.39819995e-3f));                                \
    p = PS##add_ps(PS##mul_ps(p, r), PS##set1_ps(8.3334519e-3f));                                 \
    p = PS##add_ps(PS##mul_ps(p, r), PS##set1_ps(4.16657959e-2f));                                \
    p = PS##add_ps(PS##mul_ps(p, r), PS##set1_ps(1.66666655e-1f));                                \
    p = PS##add_ps(PS##mul_ps(p, r), PS##set1_ps(5.00000012e-1f));                                \
    V er = PS##add_ps(PS##add_ps(PS##mul_ps(p, z), r), PS##set1_ps(1.0f));                        \
    SI ti = EPI##sub_epi32(TOI(t), EPI##set1_epi32(0x4B400000));                \
    SI sc = EPI##slli_epi32(EPI##add_epi32(ti, EPI##set1_epi32(127)), 23);                        \
    return PS##mul_ps(er, TOF(sc));

AVX2 static inline __m256 exp8(__m256 x) { EXP_BODY(__m256, _mm256_, __m256i, _mm256_, _mm256_castps_si256, _mm256_castsi256_ps) }
AVX2 static inline __m128 exp4(__m128 x) { EXP_BODY(__m128, _mm_, __m128i, _mm_, _mm_castps_si128, _mm_castsi128_ps) }

#endif
