// Half <-> float conversion. On x86-64 with F16C (every CPU since 2012) this is
// vcvtph2ps / vcvtps2ph, 8 values per instruction; elsewhere an exact scalar bit
// manipulation that the compiler can vectorise.
#include "unseg_kernels.h"
#include <string.h>

static inline float half_bits_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7FFFu;
    uint32_t bits;
    if (em >= 0x7C00u) {                 // inf / NaN
        bits = (em << 13) + 0x70000000u;
    } else if (em >= 0x0400u) {          // normal: re-bias exponent 15 -> 127
        bits = (em << 13) + 0x38000000u;
    } else {                             // zero / subnormal: mantissa * 2^-24 (exact)
        float f = (float)em * (1.0f / 16777216.0f);
        memcpy(&bits, &f, 4);
    }
    bits |= sign;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static inline uint16_t float_to_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return (uint16_t)(sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u | ((ax >> 13) & 0x3FFu) : 0));
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);           // rounds to >= 65520: inf
    if (ax < 0x38800000u) {                                            // subnormal or zero in half
        float a; memcpy(&a, &ax, 4);
        // a * 2^24 rounded to nearest even gives the subnormal mantissa.
        float m = a * 16777216.0f;
        uint32_t r = (uint32_t)__builtin_rintf(m);
        return (uint16_t)(sign | r);
    }
    uint32_t mant = ax & 0x7FFFFFu;
    uint32_t e = (ax >> 23) - 112u;
    uint32_t h = (e << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1;       // round to nearest even (carry ok)
    return (uint16_t)(sign | h);
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx,f16c")))
static void half_to_float_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 8));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(a));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(b));
    }
    for (; i < n; i++) dst[i] = half_bits_to_float(src[i]);
}

__attribute__((target("avx,f16c")))
static void float_to_half_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __asm__("" : "+x"(h));   // keeps the register form: vcvtps2ph to memory is slow on AMD Zen (see crf.c)
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = float_to_half_bits(src[i]);
}

int unseg_has_f16c(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
    }
    return cached;
}
#else
int unseg_has_f16c(void) { return 0; }
#endif

void unseg_half_to_float(const uint16_t *src, float *dst, size_t n) {
#if defined(__x86_64__)
    if (unseg_has_f16c()) { half_to_float_f16c(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = half_bits_to_float(src[i]);
}

void unseg_float_to_half(const float *src, uint16_t *dst, size_t n) {
#if defined(__x86_64__)
    if (unseg_has_f16c()) { float_to_half_f16c(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = float_to_half_bits(src[i]);
}

void unseg_round_through_half(float *values, size_t n) {
    uint16_t tmp[256];
    for (size_t i = 0; i < n; i += 256) {
        size_t k = n - i < 256 ? n - i : 256;
        unseg_float_to_half(values + i, tmp, k);
        unseg_half_to_float(tmp, values + i, k);
    }
}
