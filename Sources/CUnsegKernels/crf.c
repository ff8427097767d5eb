// Dense CRF mean-field kernels with 8-lane AVX2 arithmetic, chosen at run time.
//
// Each kernel does, lane for lane, the operations of the Swift reference in DenseCRF.swift /
// FusedLattice.blur / FastMath.exp in the same order (no FMA: the target is "avx2,f16c", so no
// multiply-add can be fused), so the results are the same bits; a test compares the two paths.
// Values are rows of `c4` floats (the labels padded to a multiple of 4), or of `c4` float16 for
// the fields stored at half precision (blurred lattice values, unaries, spatial field: widened
// exactly on load, rounded to nearest even on store, as the Swift reference rounds them); float
// rows are 16-byte aligned, so a row is processed as 8-lane chunks (unaligned loads) plus one
// 4-lane tail when c4 % 8 == 4.
#include "unseg_kernels.h"
#include <float.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define UNSEG_CRF_X86 1
#include "simd_exp.h"

int unseg_crf_avx2_available(void) { return unseg_cpu_avx2(); }

// Float16 lattice values (raw IEEE half bits): widened exactly, narrowed to nearest even. The
// narrowing converts in a register and then stores: the empty asm keeps the compiler from folding
// the two into vcvtps2ph with a memory operand, which is slow on AMD Zen (5 labels 7 % faster).
AVX2 static inline __m256 load8h(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
AVX2 static inline __m128 load4h(const uint16_t *p) { return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)p)); }
AVX2 static inline void store8h(uint16_t *p, __m256 v) {
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    __asm__("" : "+x"(h));
    _mm_storeu_si128((__m128i *)p, h);
}
AVX2 static inline void store4h(uint16_t *p, __m128 v) {
    __m128i h = _mm_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    __asm__("" : "+x"(h));
    _mm_storel_epi64((__m128i *)p, h);
}
AVX2 static inline __m256 load8f(const float *p) { return _mm256_loadu_ps(p); }
AVX2 static inline __m128 load4f(const float *p) { return _mm_load_ps(p); }


// DenseCRF.softmaxBlocks on one row of c4 floats; `pad` has all bits set in the lanes of the last
// 4-lane block that are padding (labels .. c4-1), which are left out of the maximum and set to 0.
AVX2 static inline void softmax_row(float *q, int c4, __m128 pad) {
    const int last = c4 - 4;
    const __m128 lowest = _mm_set1_ps(-FLT_MAX);
    __m128 lastReal = _mm_blendv_ps(_mm_load_ps(q + last), lowest, pad);
    __m128 mx = lastReal;
    for (int k = 0; k < last; k += 4) {
        __m128 v = _mm_load_ps(q + k);
        mx = _mm_blendv_ps(mx, v, _mm_cmp_ps(v, mx, _CMP_GT_OQ));
    }
    // max over the 4 lanes (exact: any order gives the same value)
    __m128 m2 = _mm_max_ps(mx, _mm_movehl_ps(mx, mx));
    __m128 m1 = _mm_max_ss(m2, _mm_shuffle_ps(m2, m2, 1));
    __m256 m8 = _mm256_broadcastss_ps(m1);
    __m128 m4 = _mm256_castps256_ps128(m8);
    // exp of every block but the last (8 lanes at a time), summed in the reference's order:
    // 4-lane blocks in turn, then (s0 + s1) + (s2 + s3).
    __m128 s = _mm_setzero_ps();
    int k = 0;
    for (; k + 8 <= last; k += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(q + k), m8));
        _mm256_storeu_ps(q + k, e);
        s = _mm_add_ps(s, _mm256_castps256_ps128(e));
        s = _mm_add_ps(s, _mm256_extractf128_ps(e, 1));
    }
    if (k < last) {   // one block before the last: both in one 8-lane exp
        __m256 e = exp8(_mm256_sub_ps(_mm256_set_m128(lastReal, _mm_load_ps(q + k)), m8));
        __m128 e0 = _mm256_castps256_ps128(e), el = _mm_andnot_ps(pad, _mm256_extractf128_ps(e, 1));
        _mm_store_ps(q + k, e0);
        _mm_store_ps(q + last, el);
        s = _mm_add_ps(s, e0);
        s = _mm_add_ps(s, el);
    } else {
        __m128 el = _mm_andnot_ps(pad, exp4(_mm_sub_ps(lastReal, m4)));   // times lastMask: padding 0
        _mm_store_ps(q + last, el);
        s = _mm_add_ps(s, el);
    }
    float s4[4];
    _mm_storeu_ps(s4, s);
    __m256 i8 = _mm256_set1_ps(1.0f / ((s4[0] + s4[1]) + (s4[2] + s4[3])));
    for (k = 0; k + 8 <= c4; k += 8) _mm256_storeu_ps(q + k, _mm256_mul_ps(_mm256_loadu_ps(q + k), i8));
    if (k < c4) _mm_store_ps(q + k, _mm_mul_ps(_mm_load_ps(q + k), _mm256_castps256_ps128(i8)));
}

// 8 x 8 transpose: v[j] = (r0[j], ..., r7[j]).
#define TRANSPOSE8(R0, R1, R2, R3, R4, R5, R6, R7, V)                                             \
    do {                                                                                          \
        __m256 t0 = _mm256_unpacklo_ps(R0, R1), t1 = _mm256_unpackhi_ps(R0, R1);                   \
        __m256 t2 = _mm256_unpacklo_ps(R2, R3), t3 = _mm256_unpackhi_ps(R2, R3);                   \
        __m256 t4 = _mm256_unpacklo_ps(R4, R5), t5 = _mm256_unpackhi_ps(R4, R5);                   \
        __m256 t6 = _mm256_unpacklo_ps(R6, R7), t7 = _mm256_unpackhi_ps(R6, R7);                   \
        __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);         \
        __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);         \
        __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);         \
        __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);         \
        (V)[0] = _mm256_permute2f128_ps(s0, s4, 0x20); (V)[1] = _mm256_permute2f128_ps(s1, s5, 0x20); \
        (V)[2] = _mm256_permute2f128_ps(s2, s6, 0x20); (V)[3] = _mm256_permute2f128_ps(s3, s7, 0x20); \
        (V)[4] = _mm256_permute2f128_ps(s0, s4, 0x31); (V)[5] = _mm256_permute2f128_ps(s1, s5, 0x31); \
        (V)[6] = _mm256_permute2f128_ps(s2, s6, 0x31); (V)[7] = _mm256_permute2f128_ps(s3, s7, 0x31); \
    } while (0)

// 4 x 8 transpose of a 4-lane column block: a_p holds row p (low half) and row p + 4 (high half);
// v[j] = (r0[j], ..., r7[j]) for j < 4. Its own inverse up to the same pairing.
#define TRANSPOSE4x8(A0, A1, A2, A3, V)                                                           \
    do {                                                                                          \
        __m256 t0 = _mm256_unpacklo_ps(A0, A1), t1 = _mm256_unpackhi_ps(A0, A1);                   \
        __m256 t2 = _mm256_unpacklo_ps(A2, A3), t3 = _mm256_unpackhi_ps(A2, A3);                   \
        (V)[0] = _mm256_shuffle_ps(t0, t2, 0x44); (V)[1] = _mm256_shuffle_ps(t0, t2, 0xEE);         \
        (V)[2] = _mm256_shuffle_ps(t1, t3, 0x44); (V)[3] = _mm256_shuffle_ps(t1, t3, 0xEE);         \
    } while (0)

// softmax_row on 8 rows at once (row p at q + p * c4), the labels across registers and the pixels
// across lanes: no horizontal maximum or sum, one division for 8 pixels, and only `labels`
// exponentials per pixel. The same operations per value as softmax_row, summed in its order (4-lane
// blocks in turn into lanes j = l mod 4, then (s0 + s1) + (s2 + s3); the padding's zeros are
// exact no-ops), so the same bits.
// Rows p = 0..7 at q + p * c4 into v[l] = (r0[l], ..., r7[l]) (l < c4), and back.
AVX2 static inline void rows8_to_lanes(const float *q, int c4, __m256 *v) {
    for (int k = 0; k < c4; k += 8) {
        if (k + 8 <= c4) {
            TRANSPOSE8(_mm256_loadu_ps(q + k), _mm256_loadu_ps(q + c4 + k), _mm256_loadu_ps(q + 2 * c4 + k),
                       _mm256_loadu_ps(q + 3 * c4 + k), _mm256_loadu_ps(q + 4 * c4 + k), _mm256_loadu_ps(q + 5 * c4 + k),
                       _mm256_loadu_ps(q + 6 * c4 + k), _mm256_loadu_ps(q + 7 * c4 + k), v + k);
        } else {
            __m256 a0 = _mm256_set_m128(_mm_load_ps(q + 4 * c4 + k), _mm_load_ps(q + k));
            __m256 a1 = _mm256_set_m128(_mm_load_ps(q + 5 * c4 + k), _mm_load_ps(q + c4 + k));
            __m256 a2 = _mm256_set_m128(_mm_load_ps(q + 6 * c4 + k), _mm_load_ps(q + 2 * c4 + k));
            __m256 a3 = _mm256_set_m128(_mm_load_ps(q + 7 * c4 + k), _mm_load_ps(q + 3 * c4 + k));
            TRANSPOSE4x8(a0, a1, a2, a3, v + k);
        }
    }
}

AVX2 static inline void lanes_to_rows8(const __m256 *v, float *q, int c4) {
    for (int k = 0; k < c4; k += 8) {
        if (k + 8 <= c4) {
            __m256 r[8];
            TRANSPOSE8(v[k], v[k + 1], v[k + 2], v[k + 3], v[k + 4], v[k + 5], v[k + 6], v[k + 7], r);
            for (int p = 0; p < 8; p++) _mm256_storeu_ps(q + p * c4 + k, r[p]);
        } else {
            __m256 r[4];
            TRANSPOSE4x8(v[k], v[k + 1], v[k + 2], v[k + 3], r);
            for (int p = 0; p < 4; p++) {
                _mm_store_ps(q + p * c4 + k, _mm256_castps256_ps128(r[p]));
                _mm_store_ps(q + (p + 4) * c4 + k, _mm256_extractf128_ps(r[p], 1));
            }
        }
    }
}

// softmax_row on 8 rows at once (row p at q + p * c4), the labels across registers and the pixels
// across lanes: no horizontal maximum or sum, one division for 8 pixels, and only `labels`
// exponentials per pixel. The same operations per value as softmax_row, summed in its order (4-lane
// blocks in turn into lanes j = l mod 4, then (s0 + s1) + (s2 + s3); the padding's zeros are
// exact no-ops), so the same bits.
AVX2 static void softmax_8rows(float *q, int c4, int labels) {
    __m256 v[c4];
    rows8_to_lanes(q, c4, v);
    __m256 m = v[0];
    for (int l = 1; l < labels; l++) m = _mm256_max_ps(m, v[l]);
    for (int l = 0; l < labels; l++) v[l] = exp8(_mm256_sub_ps(v[l], m));
    for (int l = labels; l < c4; l++) v[l] = _mm256_setzero_ps();
    __m256 sj[4];
    for (int j = 0; j < 4; j++) {
        sj[j] = j < labels ? v[j] : _mm256_setzero_ps();
        for (int l = j + 4; l < labels; l += 4) sj[j] = _mm256_add_ps(sj[j], v[l]);
    }
    const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_add_ps(sj[0], sj[1]), _mm256_add_ps(sj[2], sj[3])));
    for (int l = 0; l < labels; l++) v[l] = _mm256_mul_ps(v[l], inv);
    lanes_to_rows8(v, q, c4);
}

// The fused pass's softmax on `rows` rows: groups of 8, then single rows.
AVX2 static void softmax_rows_avx2(float *q, int rows, int c4, int labels) {
    const int realInLast = labels - (c4 - 4);
    const __m128 pad = _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_setr_epi32(1, 2, 3, 4), _mm_set1_epi32(realInLast)));
    int i = 0;
    for (; i + 8 <= rows; i += 8) softmax_8rows(q + (size_t)i * c4, c4, labels);
    for (; i < rows; i++) softmax_row(q + (size_t)i * c4, c4, pad);
}

// The splat of the row's pixels in order: CORNER adds row q (pixel x's Q) times ws[r] into d, the
// lattice_out row of its corner r.
#define SPLAT_ROW(CORNER)                                                                         \
    do {                                                                                          \
        const int ss = a->splat_stride;                                                           \
        for (int x = 0; x < width; x++) {                                                         \
            const float *q = rowq + (size_t)x * c4;                                               \
            const int32_t *o = a->offsets + (size_t)x * 6;                                        \
            const float *ws = a->splat_weights + (size_t)x * 6;                                   \
            for (int r = 0; r < 6; r++) {                                                         \
                float *d = a->lattice_out + (size_t)o[r] * ss;                                    \
                CORNER;                                                                           \
            }                                                                                     \
        }                                                                                         \
    } while (0)

// acc (+)= w * src over one row, 8 + 4 lanes: acc = acc + (w * src); ROW_AXPY_FROM from value K0 on.
#define ROW_AXPY(ACC, W8, SRC) ROW_AXPY_FROM(ACC, W8, SRC, 0)
#define ROW_AXPY_FROM(ACC, W8, SRC, K0)                                                           \
    do {                                                                                          \
        int kk = (K0);                                                                            \
        for (; kk + 8 <= c4; kk += 8)                                                             \
            _mm256_storeu_ps((ACC) + kk, _mm256_add_ps(_mm256_loadu_ps((ACC) + kk),                 \
                                                      _mm256_mul_ps((W8), _mm256_loadu_ps((SRC) + kk)))); \
        if (kk < c4)                                                                              \
            _mm_store_ps((ACC) + kk, _mm_add_ps(_mm_load_ps((ACC) + kk),                          \
                                                _mm_mul_ps(_mm256_castps256_ps128(W8), _mm_load_ps((SRC) + kk)))); \
    } while (0)

// The slice of one pixel into its row-buffer entry q: -U + spatial + the six corners' values, in
// the reference's order. SLICE_TYPES picks the lattice rows L (float16 or float32, at vertex
// offsets o) and the unary row u (float16 or float32) and runs SLICE(T, lattice suffix, unary
// suffix), the suffixes naming the loads: load8h, load8f, ...
#define SLICE_TYPES(SLICE)                                                                        \
    do {                                                                                          \
        if (a->lattice_in_half && unary_half) {                                                   \
            const uint16_t *L = a->lattice_in_half, *u = unary_half + (size_t)x * c4;             \
            SLICE(uint16_t, h, h);                                                                \
        } else if (a->lattice_in_half) {                                                          \
            const uint16_t *L = a->lattice_in_half;                                               \
            const float *u = a->neg_unary + (size_t)x * c4;                                       \
            SLICE(uint16_t, h, f);                                                                \
        } else if (unary_half) {                                                                  \
            const float *L = a->lattice_in;                                                       \
            const uint16_t *u = unary_half + (size_t)x * c4;                                      \
            SLICE(float, f, h);                                                                   \
        } else {                                                                                  \
            const float *L = a->lattice_in;                                                       \
            const float *u = a->neg_unary + (size_t)x * c4;                                       \
            SLICE(float, f, f);                                                                   \
        }                                                                                         \
    } while (0)
#define SLICE_CORNERS(T)                                                                          \
    const T *s0 = L + (size_t)o[0] * c4, *s1 = L + (size_t)o[1] * c4, *s2 = L + (size_t)o[2] * c4; \
    const T *s3 = L + (size_t)o[3] * c4, *s4 = L + (size_t)o[4] * c4, *s5 = L + (size_t)o[5] * c4
// 8- and 4-lane chunks.
#define SLICE_PIXEL(T, LS, US)                                                                    \
    do {                                                                                          \
        SLICE_CORNERS(T);                                                                         \
        int k = 0;                                                                                \
        for (; k + 8 <= c4; k += 8)                                                               \
            SLICE_CHUNK(_mm256_, load8##LS, load8##US, _mm256_loadu_ps, _mm256_storeu_ps, ws, w0, w1, w2, w3, w4, w5); \
        if (k < c4)                                                                               \
            SLICE_CHUNK(_mm_, load4##LS, load4##US, _mm_load_ps, _mm_store_ps, H(ws), H(w0), H(w1), H(w2), H(w3), H(w4), H(w5)); \
    } while (0)
#define H(x) _mm256_castps256_ps128(x)
// One chunk at value k (intrinsics prefix PS: _mm_, _mm256_ or _mm512_).
#define SLICE_CHUNK(PS, LD, ULD, SPLD, ST, WS, W0, W1, W2, W3, W4, W5)                             \
    do {                                                                                          \
        __auto_type acc = PS##add_ps(ULD(u + k), PS##mul_ps(WS, SPLD(sp + k)));                    \
        acc = PS##add_ps(acc, PS##mul_ps(W0, LD(s0 + k)));                                        \
        acc = PS##add_ps(acc, PS##mul_ps(W1, LD(s1 + k)));                                        \
        acc = PS##add_ps(acc, PS##mul_ps(W2, LD(s2 + k)));                                        \
        acc = PS##add_ps(acc, PS##mul_ps(W3, LD(s3 + k)));                                        \
        acc = PS##add_ps(acc, PS##mul_ps(W4, LD(s4 + k)));                                        \
        acc = PS##add_ps(acc, PS##mul_ps(W5, LD(s5 + k)));                                        \
        ST(q + k, acc);                                                                           \
    } while (0)

// The pass over one row in three loops whose iterations are independent (so the CPU overlaps
// pixels): slice into the row buffer, softmax, splat. The slice reads `lattice_in` and `spatial`,
// the splat writes `lattice_out` and `spatial_out`, so splitting the per-pixel sequence of the
// reference into these loops changes no value; the splat keeps the pixel order.
// The blur asks for the neighbour rows of the vertex PF ahead: they are random reads (measured
// 8 / 16 / 32 / 64: 32 and 64 best, the blur about 1.3x faster at 27 labels). The same for the
// slice's corners (8 pixels ahead) gained nothing: consecutive pixels share most corners.
#define PF 32

// `softmax` runs the softmax on the row (softmax_rows_avx2, or the 16-pixel AVX-512 one).
typedef void (*crf_softmax_rows)(float *q, int rows, int c4, int labels);

AVX2 static void crf_row_avx2(const unseg_crf_row_args *a, crf_softmax_rows softmax) {
    const int c4 = a->c4, labels = a->labels, width = a->width;
    float *rowq = a->scratch;
    const uint16_t *unary_half = a->neg_unary_half;   // float16 unaries, widened (exactly) as read
    for (int x = 0; x < width; x++) {
        float *q = rowq + (size_t)x * c4;
        if (!a->spatial) {
            int k = 0;
            if (unary_half) {
                const uint16_t *u = unary_half + (size_t)x * c4;
                for (; k + 8 <= c4; k += 8) _mm256_storeu_ps(q + k, load8h(u + k));
                if (k < c4) _mm_store_ps(q + k, load4h(u + k));
            } else {
                const float *u = a->neg_unary + (size_t)x * c4;
                for (; k + 8 <= c4; k += 8) _mm256_storeu_ps(q + k, _mm256_loadu_ps(u + k));
                if (k < c4) _mm_store_ps(q + k, _mm_load_ps(u + k));
            }
            continue;
        }
        const int32_t *o = a->offsets + (size_t)x * 6;
        const float *sp = a->spatial + (size_t)x * c4;
        const float *wl = a->slice_weights + (size_t)x * 6;
        __m256 ws = _mm256_set1_ps(a->slice_scale[x]);
        __m256 w0 = _mm256_set1_ps(wl[0]), w1 = _mm256_set1_ps(wl[1]), w2 = _mm256_set1_ps(wl[2]);
        __m256 w3 = _mm256_set1_ps(wl[3]), w4 = _mm256_set1_ps(wl[4]), w5 = _mm256_set1_ps(wl[5]);
        SLICE_TYPES(SLICE_PIXEL);
    }
    softmax(rowq, width, c4, labels);
    for (int x = 0; x < width; x++) {
        float *q = rowq + (size_t)x * c4;
        if (a->out) {
            memcpy(a->out + (size_t)x * labels, q, sizeof(float) * (size_t)labels);
            continue;
        }
        __m256 g = _mm256_set1_ps(a->spatial_norm[x]);
        int k = 0;
        if (a->spatial_out_half) {
            uint16_t *d = a->spatial_out_half + (size_t)x * c4;
            for (; k + 8 <= c4; k += 8) store8h(d + k, _mm256_mul_ps(g, _mm256_loadu_ps(q + k)));
            if (k < c4) store4h(d + k, _mm_mul_ps(_mm256_castps256_ps128(g), _mm_load_ps(q + k)));
            continue;
        }
        float *d = a->spatial_out + (size_t)x * c4;
        for (; k + 8 <= c4; k += 8) _mm256_storeu_ps(d + k, _mm256_mul_ps(g, _mm256_loadu_ps(q + k)));
        if (k < c4) _mm_store_ps(d + k, _mm_mul_ps(_mm256_castps256_ps128(g), _mm_load_ps(q + k)));
    }
    if (a->out) return;
    SPLAT_ROW(ROW_AXPY(d, _mm256_set1_ps(ws[r]), q));
}

// One blur direction, new = old + 0.5 (a + b): the loop over the vertices (rows of type TS, SS
// values apart, into float16 rows of c4), asking for the neighbour rows of the vertex PF ahead;
// ROW computes row nw from rows old, pa and pb.
#define BLUR_VERTICES(TS, SS, ROW)                                                                \
    do {                                                                                          \
        for (int64_t i = 0; i < m; i++) {                                                         \
            if (i + PF < m) {                                                                     \
                const TS *fa = v + (size_t)nj[2 * (i + PF)] * (SS), *fb = v + (size_t)nj[2 * (i + PF) + 1] * (SS); \
                __builtin_prefetch(fa); __builtin_prefetch(fa + c4 - 1);                          \
                __builtin_prefetch(fb); __builtin_prefetch(fb + c4 - 1);                          \
            }                                                                                     \
            const TS *old = v + (size_t)(i + 1) * (SS);                                           \
            const TS *pa = v + (size_t)nj[2 * i] * (SS), *pb = v + (size_t)nj[2 * i + 1] * (SS);  \
            uint16_t *nw = nv + (size_t)(i + 1) * c4;                                             \
            ROW;                                                                                  \
        }                                                                                         \
    } while (0)
// A row in 8- and 4-lane chunks from value K0 on.
#define BLUR_ROW8(LOAD8, LOAD4, K0)                                                               \
    do {                                                                                          \
        int k = (K0);                                                                             \
        for (; k + 8 <= c4; k += 8)                                                               \
            store8h(nw + k, _mm256_add_ps(LOAD8(old + k), _mm256_mul_ps(half8, _mm256_add_ps(LOAD8(pa + k), LOAD8(pb + k))))); \
        if (k < c4)                                                                               \
            store4h(nw + k, _mm_add_ps(LOAD4(old + k), _mm_mul_ps(_mm256_castps256_ps128(half8),  \
                                                                  _mm_add_ps(LOAD4(pa + k), LOAD4(pb + k))))); \
    } while (0)
#define BLUR_DIRECTION(TS, SS, LOAD8, LOAD4) BLUR_VERTICES(TS, SS, BLUR_ROW8(LOAD8, LOAD4, 0))

// The half blur: the first direction from the float32 splat rows (`values`, ss apart) into `ha`,
// then the others ping-ponging between the float16 buffers.
#define BLUR_HALF_PASSES(FIRST_DIRECTION, DIRECTION)                                              \
    do {                                                                                          \
        memset(values, 0, sizeof(float) * (size_t)ss);                                            \
        memset(ha, 0, sizeof(uint16_t) * (size_t)c4);                                             \
        memset(hb, 0, sizeof(uint16_t) * (size_t)c4);                                             \
        {                                                                                         \
            const float *v = values;                                                              \
            uint16_t *nv = ha;                                                                    \
            const int32_t *nj = neighbors;                                                        \
            FIRST_DIRECTION;                                                                      \
        }                                                                                         \
        uint16_t *cur = ha, *next = hb;                                                           \
        for (int j = 1; j < directions; j++) {                                                    \
            const uint16_t *v = cur;                                                              \
            uint16_t *nv = next;                                                                  \
            const int32_t *nj = neighbors + (size_t)j * (size_t)m * 2;                            \
            DIRECTION;                                                                            \
            cur = next;                                                                           \
            next = (uint16_t *)v;                                                                 \
        }                                                                                         \
        *result = cur;                                                                            \
    } while (0)

AVX2 static void crf_blur_half_avx2(float *values, int ss, uint16_t *ha, uint16_t *hb, const int32_t *neighbors,
                                    int64_t m, int c4, int directions, uint16_t **result) {
    const __m256 half8 = _mm256_set1_ps(0.5f);
    BLUR_HALF_PASSES(BLUR_DIRECTION(float, ss, load8f, load4f), BLUR_DIRECTION(uint16_t, c4, load8h, load4h));
}

AVX2 static void crf_blur_avx2(float *v, float *nv, const int32_t *neighbors, int64_t m, int c4, int directions,
                               float **result, float **other) {
    const __m256 half = _mm256_set1_ps(0.5f);
    memset(v, 0, sizeof(float) * (size_t)c4);
    memset(nv, 0, sizeof(float) * (size_t)c4);
    for (int j = 0; j < directions; j++) {
        const int32_t *nj = neighbors + (size_t)j * (size_t)m * 2;
        for (int64_t i = 0; i < m; i++) {
            if (i + PF < m) {
                const float *fa = v + (size_t)nj[2 * (i + PF)] * c4, *fb = v + (size_t)nj[2 * (i + PF) + 1] * c4;
                __builtin_prefetch(fa); __builtin_prefetch(fa + c4 - 1);
                __builtin_prefetch(fb); __builtin_prefetch(fb + c4 - 1);
            }
            const float *old = v + (size_t)(i + 1) * c4;
            const float *pa = v + (size_t)nj[2 * i] * c4, *pb = v + (size_t)nj[2 * i + 1] * c4;
            float *nw = nv + (size_t)(i + 1) * c4;
            int k = 0;
            for (; k + 8 <= c4; k += 8)
                _mm256_storeu_ps(nw + k, _mm256_add_ps(_mm256_loadu_ps(old + k),
                                                      _mm256_mul_ps(half, _mm256_add_ps(_mm256_loadu_ps(pa + k), _mm256_loadu_ps(pb + k)))));
            if (k < c4)
                _mm_store_ps(nw + k, _mm_add_ps(_mm_load_ps(old + k),
                                                _mm_mul_ps(_mm256_castps256_ps128(half), _mm_add_ps(_mm_load_ps(pa + k), _mm_load_ps(pb + k)))));
        }
        float *t = v; v = nv; nv = t;
    }
    *result = v;
    *other = nv;
}

// SeparableGaussian.blurRow with 8-lane arithmetic, each pass's sum kept in registers (the same
// operations per value in the same order: the vertical taps top to bottom, then the centre and the
// symmetric pairs d = 1...R).
// The vertical taps of one output row into v (rows of the field of type T, read by LOAD8 / LOAD4).
#define SEP_VERTICAL(T, LOAD8, LOAD4) SEP_VERTICAL_FROM(T, LOAD8, LOAD4, 0)
// ... from value j0 of the row on.
#define SEP_VERTICAL_FROM(T, LOAD8, LOAD4, J0)                                                    \
    do {                                                                                          \
        const T *f = (const T *)field;                                                            \
        int jj = (J0);                                                                            \
        for (; jj + 8 <= row_floats; jj += 8) {                                                   \
            __m256 acc = _mm256_mul_ps(_mm256_set1_ps(t[y0 - y]), LOAD8(f + (size_t)y0 * row_floats + jj)); \
            for (int yy = y0 + 1; yy <= y1; yy++)                                                 \
                acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(t[yy - y]), LOAD8(f + (size_t)yy * row_floats + jj))); \
            _mm256_storeu_ps(v + jj, acc);                                                        \
        }                                                                                         \
        for (; jj < row_floats; jj += 4) {                                                        \
            __m128 acc = _mm_mul_ps(_mm_set1_ps(t[y0 - y]), LOAD4(f + (size_t)y0 * row_floats + jj)); \
            for (int yy = y0 + 1; yy <= y1; yy++)                                                 \
                acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(t[yy - y]), LOAD4(f + (size_t)yy * row_floats + jj))); \
            _mm_store_ps(v + jj, acc);                                                            \
        }                                                                                         \
    } while (0)

AVX2 static inline void sep_horizontal_avx2(const float *v, float *dst, int j0, int row_floats, int c4, int radius,
                                            const float *t);

// field: float rows, or float16 rows when `half`.
AVX2 static void sep_blur_row_avx2(const void *field, int half, int y, int height, int row_floats, int c4, int radius,
                                   const float *taps, float *scratch, float *dst) {
    const float *t = taps + radius;
    float *v = scratch + (size_t)radius * c4;
    const int y0 = y - radius > 0 ? y - radius : 0, y1 = y + radius < height - 1 ? y + radius : height - 1;
    if (half) SEP_VERTICAL(uint16_t, load8h, load4h);
    else SEP_VERTICAL(float, load8f, load4f);
    sep_horizontal_avx2(v, dst, 0, row_floats, c4, radius, t);
}

// The horizontal pass of one row from value j0 on: dst = t0 v + sum_d t_d (v[-d] + v[+d]).
AVX2 static inline void sep_horizontal_avx2(const float *v, float *dst, int j0, int row_floats, int c4, int radius,
                                            const float *t) {
    int j = j0;
    for (; j + 8 <= row_floats; j += 8) {
        __m256 acc = _mm256_mul_ps(_mm256_set1_ps(t[0]), _mm256_loadu_ps(v + j));
        for (int d = 1; d <= radius; d++) {
            const int o = d * c4;
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(t[d]),
                                                   _mm256_add_ps(_mm256_loadu_ps(v + j - o), _mm256_loadu_ps(v + j + o))));
        }
        _mm256_storeu_ps(dst + j, acc);
    }
    for (; j < row_floats; j += 4) {
        __m128 acc = _mm_mul_ps(_mm_set1_ps(t[0]), _mm_load_ps(v + j));
        for (int d = 1; d <= radius; d++) {
            const int o = d * c4;
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(t[d]), _mm_add_ps(_mm_load_ps(v + j - o), _mm_load_ps(v + j + o))));
        }
        _mm_store_ps(dst + j, acc);
    }
}

// ---- AVX-512: the same kernels with 16 lanes (F, BW, VL, DQ). Every lane does the operations of
// the AVX2 kernels above in the same order, so the same bits. Rows of more than 8 values are
// processed in whole 16-lane chunks, reading and writing past a row's end where that is safe
// (every caller leaves DenseCRF.kernelSlack values of slack past its buffers): masked 16-lane
// loads and stores measured up to 1.8x slower on an AMD Zen 5, and rows of 8 stay with the 8-lane
// code (16-lane chunks over them cost more than they saved). Every product and sum is its own
// intrinsic, so nothing is contracted into FMA. On the peer benchmark's photos, against the AVX2
// kernels with everything else equal: 27 labels 16 % faster, 10 labels 10 %, 5 labels 8 %.
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c")))

static int crf_avx512_cpu(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

AVX512 static inline __m512 load16h(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
AVX512 static inline __m512 load16f(const float *p) { return _mm512_loadu_ps(p); }
AVX512 static inline void store16h(uint16_t *p, __m512 v) {
    __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    __asm__("" : "+v"(h));
    _mm256_storeu_si256((__m256i *)p, h);
}
// The last n = 4, 8 or 12 floats of a row in the low lanes, zeros above (no masked load).
AVX512 static inline __m512 tail16(const float *p, int n) {
    if (n == 4) return _mm512_zextps128_ps512(_mm_load_ps(p));
    const __m512 lo = _mm512_zextps256_ps512(_mm256_loadu_ps(p));
    return n == 8 ? lo : _mm512_insertf32x4(lo, _mm_load_ps(p + 8), 2);
}

AVX512 static inline void half_to_float_row(float *q, const uint16_t *u, int c4) {
    for (int k = 0; k < c4; k += 16) _mm512_storeu_ps(q + k, load16h(u + k));
}

// FastMath.exp, 16 lanes (EXP_BODY with mask registers for the clamps).
AVX512 static inline __m512 exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.72283f);
    __m512 v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), x, lo);
    v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), v, hi);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 t = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504f)), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_sub_ps(v, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f)));
    r = _mm512_add_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(2.1219444e-4f)));
    __m512 z = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(1.98756915e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.39819995e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.16657959e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.66666655e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.00000012e-1f));
    __m512 er = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, z), r), _mm512_set1_ps(1.0f));
    __m512i ti = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000));
    __m512i sc = _mm512_slli_epi32(_mm512_add_epi32(ti, _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(er, _mm512_castsi512_ps(sc));
}

// softmax_8rows on 16 rows: rows 0-7 in the low 8 lanes, rows 8-15 in the high 8.
AVX512 static void softmax_16rows(float *q, int c4, int labels) {
    __m256 a[c4], b[c4];
    __m512 v[c4];
    rows8_to_lanes(q, c4, a);
    rows8_to_lanes(q + (size_t)8 * c4, c4, b);
    for (int l = 0; l < labels; l++) v[l] = _mm512_insertf32x8(_mm512_castps256_ps512(a[l]), b[l], 1);
    __m512 m = v[0];
    for (int l = 1; l < labels; l++) m = _mm512_max_ps(m, v[l]);
    for (int l = 0; l < labels; l++) v[l] = exp16(_mm512_sub_ps(v[l], m));
    __m512 sj[4];
    for (int j = 0; j < 4; j++) {
        sj[j] = j < labels ? v[j] : _mm512_setzero_ps();
        for (int l = j + 4; l < labels; l += 4) sj[j] = _mm512_add_ps(sj[j], v[l]);
    }
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_add_ps(sj[0], sj[1]), _mm512_add_ps(sj[2], sj[3])));
    for (int l = 0; l < labels; l++) {
        const __m512 e = _mm512_mul_ps(v[l], inv);
        a[l] = _mm512_castps512_ps256(e);
        b[l] = _mm512_extractf32x8_ps(e, 1);
    }
    for (int l = labels; l < c4; l++) a[l] = b[l] = _mm256_setzero_ps();
    lanes_to_rows8(a, q, c4);
    lanes_to_rows8(b, q + (size_t)8 * c4, c4);
}

AVX512 static void softmax_rows_avx512(float *q, int rows, int c4, int labels) {
    int i = 0;
    for (; i + 16 <= rows; i += 16) softmax_16rows(q + (size_t)i * c4, c4, labels);
    softmax_rows_avx2(q + (size_t)i * c4, rows - i, c4, labels);
}

// SLICE_PIXEL in whole 16-lane chunks (past the row's end when c4 % 16 != 0).
#define SLICE_PIXEL16(T, LS, US)                                                                  \
    do {                                                                                          \
        SLICE_CORNERS(T);                                                                         \
        for (int k = 0; k < c4; k += 16)                                                          \
            SLICE_CHUNK(_mm512_, load16##LS, load16##US, _mm512_loadu_ps, _mm512_storeu_ps, ws16, v0, v1, v2, v3, v4, v5); \
    } while (0)

// One corner of SPLAT_ROW in 16-lane chunks, then the tail: one more 16-lane chunk with zeros
// above c4 when the rows are whole 16-lane lines (ss % 16 == 0), else 8 and 4 lanes.
#define SPLAT_CORNER16                                                                            \
    do {                                                                                          \
        const __m512 w = _mm512_set1_ps(ws[r]);                                                   \
        int k = 0;                                                                                \
        for (; k + 16 <= c4; k += 16) _mm512_storeu_ps(d + k, _mm512_add_ps(_mm512_loadu_ps(d + k), _mm512_mul_ps(w, _mm512_loadu_ps(q + k)))); \
        if (k == c4) break;                                                                       \
        if (ss % 16 == 0) _mm512_storeu_ps(d + k, _mm512_add_ps(_mm512_loadu_ps(d + k), _mm512_mul_ps(w, tail16(q + k, c4 - k)))); \
        else ROW_AXPY_FROM(d, _mm512_castps512_ps256(w), q, k);                                   \
    } while (0)

// crf_row_avx2 with 16 lanes, for c4 > 8 (rows of 8 take crf_row_avx2 with the 16-pixel softmax).
// The slice and the row's stores run in whole 16-lane chunks, past the end of the pixel's row
// when c4 is not a multiple of 16: what they read there is the next pixel's (or the buffers'
// slack), what they write there is overwritten by the next pixel or lies in the slack.
AVX512 static void crf_row_avx512(const unseg_crf_row_args *a) {
    const int c4 = a->c4, labels = a->labels, width = a->width;
    float *rowq = a->scratch;
    const uint16_t *unary_half = a->neg_unary_half;
    for (int x = 0; x < width; x++) {
        float *q = rowq + (size_t)x * c4;
        if (!a->spatial) {
            if (unary_half) half_to_float_row(q, unary_half + (size_t)x * c4, c4);
            else for (int k = 0; k < c4; k += 16) _mm512_storeu_ps(q + k, _mm512_loadu_ps(a->neg_unary + (size_t)x * c4 + k));
            continue;
        }
        const int32_t *o = a->offsets + (size_t)x * 6;
        const float *sp = a->spatial + (size_t)x * c4;
        const float *wl = a->slice_weights + (size_t)x * 6;
        const __m512 ws16 = _mm512_set1_ps(a->slice_scale[x]);
        const __m512 v0 = _mm512_set1_ps(wl[0]), v1 = _mm512_set1_ps(wl[1]), v2 = _mm512_set1_ps(wl[2]);
        const __m512 v3 = _mm512_set1_ps(wl[3]), v4 = _mm512_set1_ps(wl[4]), v5 = _mm512_set1_ps(wl[5]);
        SLICE_TYPES(SLICE_PIXEL16);
    }
    softmax_rows_avx512(rowq, width, c4, labels);
    for (int x = 0; x < width; x++) {
        float *q = rowq + (size_t)x * c4;
        if (a->out) {
            memcpy(a->out + (size_t)x * labels, q, sizeof(float) * (size_t)labels);
            continue;
        }
        const __m512 g = _mm512_set1_ps(a->spatial_norm[x]);
        for (int k = 0; k < c4; k += 16) {
            const __m512 gq = _mm512_mul_ps(g, _mm512_loadu_ps(q + k));
            if (a->spatial_out_half) store16h(a->spatial_out_half + (size_t)x * c4 + k, gq);
            else _mm512_storeu_ps(a->spatial_out + (size_t)x * c4 + k, gq);
        }
    }
    if (a->out) return;
    // 16-lane read-modify-writes of rows of whole 64-byte lines (aligned by DenseCRF): the
    // row's last chunk of Q is read with zeros above c4, so the padding lanes get + 0. Other rows
    // in chunks of 16, 8 and 4 lanes: a 16-lane write past the row would make the next corner's
    // read of an overlapping row wait for it.
    SPLAT_ROW(SPLAT_CORNER16);
}

// BLUR_DIRECTION in 16-lane chunks, past the row's end when c4 is not a multiple of 16: the
// values read there are the next row's (or the buffers' slack), and those written there are
// overwritten by the next row (vertices are processed in order) or lie in the slack.
#define BLUR_ROW16(LD)                                                                            \
    do {                                                                                          \
        for (int k = 0; k < c4; k += 16)                                                          \
            store16h(nw + k, _mm512_add_ps(LD(old + k), _mm512_mul_ps(half, _mm512_add_ps(LD(pa + k), LD(pb + k))))); \
    } while (0)

AVX512 static void crf_blur_half_avx512(float *values, int ss, uint16_t *ha, uint16_t *hb, const int32_t *neighbors,
                                        int64_t m, int c4, int directions, uint16_t **result) {
    const __m512 half = _mm512_set1_ps(0.5f);
    BLUR_HALF_PASSES(BLUR_VERTICES(float, ss, BLUR_ROW16(load16f)), BLUR_VERTICES(uint16_t, c4, BLUR_ROW16(load16h)));
}

// sep_blur_row_avx2 with 16-lane chunks, then 8 and 4 (row_floats is a multiple of 4).
#define SEP_VERTICAL16(T, LD, LOAD8, LOAD4)                                                       \
    do {                                                                                          \
        const T *f16 = (const T *)field;                                                          \
        int j16 = 0;                                                                              \
        for (; j16 + 16 <= row_floats; j16 += 16) {                                               \
            __m512 acc = _mm512_mul_ps(_mm512_set1_ps(t[y0 - y]), LD(f16 + (size_t)y0 * row_floats + j16)); \
            for (int yy = y0 + 1; yy <= y1; yy++)                                                 \
                acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(t[yy - y]), LD(f16 + (size_t)yy * row_floats + j16))); \
            _mm512_storeu_ps(v + j16, acc);                                                       \
        }                                                                                         \
        SEP_VERTICAL_FROM(T, LOAD8, LOAD4, j16);                                                  \
    } while (0)

AVX512 static void sep_blur_row_avx512(const void *field, int half, int y, int height, int row_floats, int c4, int radius,
                                       const float *taps, float *scratch, float *dst) {
    const float *t = taps + radius;
    float *v = scratch + (size_t)radius * c4;
    const int y0 = y - radius > 0 ? y - radius : 0, y1 = y + radius < height - 1 ? y + radius : height - 1;
    if (half) SEP_VERTICAL16(uint16_t, load16h, load8h, load4h);
    else SEP_VERTICAL16(float, load16f, load8f, load4f);
    int j = 0;
    for (; j + 16 <= row_floats; j += 16) {
        __m512 acc = _mm512_mul_ps(_mm512_set1_ps(t[0]), _mm512_loadu_ps(v + j));
        for (int d = 1; d <= radius; d++) {
            const int o = d * c4;
            acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(t[d]), _mm512_add_ps(_mm512_loadu_ps(v + j - o), _mm512_loadu_ps(v + j + o))));
        }
        _mm512_storeu_ps(dst + j, acc);
    }
    sep_horizontal_avx2(v, dst, j, row_floats, c4, radius, t);
}

#endif

int unseg_crf_isa(void) {
#ifdef UNSEG_CRF_X86
    static int level = -1;   // computed once; a race computes the same value
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        l = !unseg_cpu_avx2() ? 0 : crf_avx512_cpu() ? 2 : 1;
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return l;
#else
    return 0;
#endif
}

// The level a call runs at: the one asked for, at most what the CPU has (0: none).
static int crf_level(int isa) {
    const int have = unseg_crf_isa();
    return isa < have ? isa : have;
}

int unseg_crf_blur_half(float *values, int values_stride, uint16_t *a, uint16_t *b, const int32_t *neighbors, int64_t m,
                        int c4, int directions, uint16_t **result, int isa) {
#ifdef UNSEG_CRF_X86
    const int level = crf_level(isa);
    if (level >= 1 && directions >= 1 && c4 >= 4 && c4 % 4 == 0 && values_stride >= c4 && values_stride % 4 == 0) {
        if (level >= 2 && c4 > 8) crf_blur_half_avx512(values, values_stride, a, b, neighbors, m, c4, directions, result);
        else crf_blur_half_avx2(values, values_stride, a, b, neighbors, m, c4, directions, result);
        return 0;
    }
#endif
    (void)values; (void)values_stride; (void)a; (void)b; (void)neighbors; (void)m; (void)c4; (void)directions; (void)result; (void)isa;
    return -1;
}

int unseg_crf_spatial_row(const float *src, const uint16_t *src_half, int y, int height, int width, int c4, int radius,
                          const float *taps, float *scratch, float *dst, int isa) {
#ifdef UNSEG_CRF_X86
    const int level = crf_level(isa);
    if (level >= 1 && c4 >= 4 && c4 % 4 == 0) {
        const void *field = src_half ? (const void *)src_half : (const void *)src;
        if (level >= 2) sep_blur_row_avx512(field, src_half != NULL, y, height, width * c4, c4, radius, taps, scratch, dst);
        else sep_blur_row_avx2(field, src_half != NULL, y, height, width * c4, c4, radius, taps, scratch, dst);
        return 0;
    }
#endif
    (void)src; (void)src_half; (void)y; (void)height; (void)width; (void)c4; (void)radius; (void)taps; (void)scratch; (void)dst; (void)isa;
    return -1;
}

int unseg_crf_fused_row(const unseg_crf_row_args *a) {
#ifdef UNSEG_CRF_X86
    const int level = crf_level(a->isa);
    if (level >= 1 && a->c4 >= 4 && a->c4 % 4 == 0 && a->scratch && a->splat_stride >= a->c4 && a->splat_stride % 4 == 0) {
        if (level >= 2 && a->c4 > 8) crf_row_avx512(a);
        else crf_row_avx2(a, level >= 2 ? softmax_rows_avx512 : softmax_rows_avx2);
        return 0;
    }
#endif
    (void)a;
    return -1;
}

int unseg_crf_blur(float *values, float *scratch, const int32_t *neighbors, int64_t m, int c4, int directions,
                   float **result, float **other) {
#ifdef UNSEG_CRF_X86
    if (crf_level(1) >= 1 && c4 >= 4 && c4 % 4 == 0) {
        crf_blur_avx2(values, scratch, neighbors, m, c4, directions, result, other);
        return 0;
    }
#endif
    (void)values; (void)scratch; (void)neighbors; (void)m; (void)c4; (void)directions; (void)result; (void)other;
    return -1;
}

#ifndef UNSEG_CRF_X86
int unseg_crf_avx2_available(void) { return 0; }
#endif


int unseg_crf_softmax_rows(float *q, int rows, int c4, int labels, int isa) {
#ifdef UNSEG_CRF_X86
    const int level = crf_level(isa);
    if (level >= 1 && c4 >= 4 && c4 % 4 == 0 && labels >= 1 && labels <= c4) {
        if (level >= 2) softmax_rows_avx512(q, rows, c4, labels);
        else softmax_rows_avx2(q, rows, c4, labels);
        return 0;
    }
#endif
    (void)q; (void)rows; (void)c4; (void)labels; (void)isa;
    return -1;
}

int unseg_pad_negate(const float *u, size_t n, int labels, int lp, float *out) {
    int fits = 1;
    for (size_t i = 0; i < n; i++) {
        const float *ui = u + i * (size_t)labels;
        float *oi = out + i * (size_t)lp;
        for (int l = 0; l < labels; l++) {
            const float v = -ui[l];
            fits &= (v < 32768.0f) & (v > -32768.0f);   // false for NaN
            oi[l] = v;
        }
        for (int l = labels; l < lp; l++) oi[l] = 0;
    }
    return fits;
}

// -log(min(max(p, clip), 1)) for the CRF's unaries: Cephes' logf (frexp, the sqrt(1/2) shift, a
// degree-9 polynomial, ln 2 in two parts), the same operations in the scalar and the 8-lane path
// (no FMA), so both give the same bits. Inputs are clipped to [clip, 1] with clip > 0 normal.
#define LOG_C1 7.0376836292e-2f
#define LOG_C2 -1.1514610310e-1f
#define LOG_C3 1.1676998740e-1f
#define LOG_C4 -1.2420140846e-1f
#define LOG_C5 1.4249322787e-1f
#define LOG_C6 -1.6668057665e-1f
#define LOG_C7 2.0000714765e-1f
#define LOG_C8 -2.4999993993e-1f
#define LOG_C9 3.3333331174e-1f

static inline float neg_log_clipped_1(float p, float clip) {
    float v = p > clip ? p : clip;   // NaN -> clip
    v = v < 1.0f ? v : 1.0f;
    uint32_t bits;
    memcpy(&bits, &v, 4);
    float e = (float)((int32_t)(bits >> 23) - 126);
    uint32_t mb = (bits & 0x007FFFFFu) | 0x3F000000u;   // mantissa in [0.5, 1)
    float x;
    memcpy(&x, &mb, 4);
    if (x < 0.707106781186547524f) { e = e - 1.0f; x = (x + x) - 1.0f; } else { x = x - 1.0f; }
    float z = x * x;
    float y = LOG_C1;
    y = y * x + LOG_C2; y = y * x + LOG_C3; y = y * x + LOG_C4; y = y * x + LOG_C5;
    y = y * x + LOG_C6; y = y * x + LOG_C7; y = y * x + LOG_C8; y = y * x + LOG_C9;
    y = (y * x) * z;
    y = y + (-2.12194440e-4f * e);
    y = y + (-0.5f * z);
    float r = x + y;
    r = r + (0.693359375f * e);
    return -r;
}

#ifdef UNSEG_CRF_X86
// The vectorised loop for one width (PS: _mm256_ or _mm512_, SI: si256 or si512, W lanes); SEL(a, b,
// x, y, PRED) is PRED(x, y) ? b : a per lane.
#define NEG_LOG_LOOP(PS, SI, W, SEL)                                                              \
    do {                                                                                          \
        const __auto_type c = PS##set1_ps(clip);                                                  \
        const __auto_type one = PS##set1_ps(1.0f);                                                \
        for (; i + (W) <= n; i += (W)) {                                                          \
            __auto_type v = PS##loadu_ps(p + i);                                                  \
            v = SEL(c, v, v, c, _CMP_GT_OQ);                                                      \
            v = SEL(one, v, v, one, _CMP_LT_OQ);                                                  \
            const __auto_type bits = PS##castps_##SI(v);                                          \
            __auto_type e = PS##cvtepi32_ps(PS##sub_epi32(PS##srli_epi32(bits, 23), PS##set1_epi32(126))); \
            __auto_type x = PS##cast##SI##_ps(PS##or_##SI(PS##and_##SI(bits, PS##set1_epi32(0x007FFFFF)), \
                                                          PS##set1_epi32(0x3F000000)));           \
            const __auto_type sx = x;                                                             \
            const __auto_type half = PS##set1_ps(0.707106781186547524f);                          \
            e = SEL(e, PS##sub_ps(e, one), sx, half, _CMP_LT_OQ);                                 \
            x = SEL(PS##sub_ps(x, one), PS##sub_ps(PS##add_ps(x, x), one), sx, half, _CMP_LT_OQ); \
            const __auto_type z = PS##mul_ps(x, x);                                               \
            __auto_type y = PS##set1_ps(LOG_C1);                                                  \
            y = PS##add_ps(PS##mul_ps(y, x), PS##set1_ps(LOG_C2));                                \
            y = PS##add_ps(PS##mul_ps(y, x), PS##set1_ps(LOG_C3));                                \
            y = PS##add_ps(PS##mul_ps(y, x), PS##set1_ps(LOG_C4));                                \
            y = PS##add_ps(PS##mul_ps(y, x), PS##set1_ps(LOG_C5));                                \
            y = PS##add_ps(PS##mul_ps(y, x), PS##set1_ps(LOG_C6));                                \
            y = PS##add_ps(PS##mul_ps(y, x), PS##set1_ps(LOG_C7));                                \
            y = PS##add_ps(PS##mul_ps(y, x), PS##set1_ps(LOG_C8));                                \
            y = PS##add_ps(PS##mul_ps(y, x), PS##set1_ps(LOG_C9));                                \
            y = PS##mul_ps(PS##mul_ps(y, x), z);                                                  \
            y = PS##add_ps(y, PS##mul_ps(PS##set1_ps(-2.12194440e-4f), e));                      \
            y = PS##add_ps(y, PS##mul_ps(PS##set1_ps(-0.5f), z));                                 \
            __auto_type r = PS##add_ps(x, y);                                                     \
            r = PS##add_ps(r, PS##mul_ps(PS##set1_ps(0.693359375f), e));                          \
            PS##storeu_ps(out + i, PS##xor_ps(r, PS##set1_ps(-0.0f)));   /* -r, as the scalar path */ \
        }                                                                                         \
    } while (0)
#define SEL8(A, B, X, Y, PRED) _mm256_blendv_ps((A), (B), _mm256_cmp_ps((X), (Y), PRED))
#define SEL16(A, B, X, Y, PRED) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((X), (Y), PRED), (A), (B))

AVX2 static void neg_log_clipped_avx2(const float *p, float *out, size_t n, float clip) {
    size_t i = 0;
    NEG_LOG_LOOP(_mm256_, si256, 8, SEL8);
    for (; i < n; i++) out[i] = neg_log_clipped_1(p[i], clip);
}

AVX512 static void neg_log_clipped_avx512(const float *p, float *out, size_t n, float clip) {
    size_t i = 0;
    NEG_LOG_LOOP(_mm512_, si512, 16, SEL16);
    for (; i < n; i++) out[i] = neg_log_clipped_1(p[i], clip);
}
#endif

static void neg_log_clipped_scalar(const float *p, float *out, size_t n, float clip) {
    for (size_t i = 0; i < n; i++) out[i] = neg_log_clipped_1(p[i], clip);
}

void unseg_neg_log_clipped(const float *p, float *out, size_t n, float clip, int vectorised) {
#ifdef UNSEG_CRF_X86
    if (vectorised >= 2 && unseg_crf_isa() >= 2) { neg_log_clipped_avx512(p, out, n, clip); return; }
    if (vectorised >= 1 && unseg_crf_avx2_available()) { neg_log_clipped_avx2(p, out, n, clip); return; }
#endif
    (void)vectorised;
    neg_log_clipped_scalar(p, out, n, clip);
}
