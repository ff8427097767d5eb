// The PriMaPs-EM M-step pass of one image with 8-lane AVX2 arithmetic, chosen at run time.
//
// Lane for lane, the operations of EMKernels.mStepPass (UnsegClustering/EMKernels.swift) in the
// same order, with no FMA (target "avx2,f16c"), so the results are the same bits:
// - element-wise work (the bilinear rows and pixels, exp, the softmax scaling, the adjoints) is
//   order-free and runs 8 lanes at a time, with one 4-lane tail when kp % 8 == 4;
// - the per-pixel softmax sum keeps the Swift path's 4-lane accumulator: each 8-lane block adds its
//   low half, then its high half, which is the Swift order of 4-lane blocks;
// - the maximum is order-free for the finite values logits are.
// Where the two source columns (or rows) of a bilinear adjoint are the same, the second update
// reads the first's result, as in Swift. A test compares the two paths bit for bit.
#include "unseg_kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include "simd_exp.h"
#define UNSEG_EM_X86 1

int unseg_em_avx2_available(void) { return unseg_cpu_avx2(); }

// out[j] = p a[j] + q b[j] over n floats (n a multiple of 4).
AVX2 static inline void lerp_rows(float *out, const float *a, const float *b, float p, float q, int64_t n) {
    const __m256 p8 = _mm256_set1_ps(p), q8 = _mm256_set1_ps(q);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(out + j, _mm256_add_ps(_mm256_mul_ps(p8, _mm256_loadu_ps(a + j)), _mm256_mul_ps(q8, _mm256_loadu_ps(b + j))));
    if (j < n)
        _mm_storeu_ps(out + j, _mm_add_ps(_mm_mul_ps(_mm256_castps256_ps128(p8), _mm_loadu_ps(a + j)),
                                          _mm_mul_ps(_mm256_castps256_ps128(q8), _mm_loadu_ps(b + j))));
}

// d0[j] += p g[j], then d1[j] += q g[j] (block by block, so d0 == d1 behaves as in Swift).
AVX2 static inline void adjoint(float *d0, float *d1, const float *g, float p, float q, int64_t n) {
    const __m256 p8 = _mm256_set1_ps(p), q8 = _mm256_set1_ps(q);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(g + j);
        _mm256_storeu_ps(d0 + j, _mm256_add_ps(_mm256_loadu_ps(d0 + j), _mm256_mul_ps(p8, v)));
        _mm256_storeu_ps(d1 + j, _mm256_add_ps(_mm256_loadu_ps(d1 + j), _mm256_mul_ps(q8, v)));
    }
    if (j < n) {
        __m128 v = _mm_loadu_ps(g + j);
        _mm_storeu_ps(d0 + j, _mm_add_ps(_mm_loadu_ps(d0 + j), _mm_mul_ps(_mm256_castps256_ps128(p8), v)));
        _mm_storeu_ps(d1 + j, _mm_add_ps(_mm_loadu_ps(d1 + j), _mm_mul_ps(_mm256_castps256_ps128(q8), v)));
    }
}

// One output row in four passes over its W pixels (bilinear values and maxima; exp and sums;
// softmax and NLL; adjoints), so that consecutive pixels' independent work overlaps instead of each
// pixel's long dependency chain (max -> exp -> sum -> 1/s -> adjoint) running alone. Per pixel, the
// operations and their order are those of the Swift path; the adjoints still run in pixel order.
AVX2 static int mstep_avx2(unseg_em_pass_args *a, float *P, float *mx, float *sum) {
    const int64_t w = a->w, H = a->H, W = a->W, kp = a->kp, hw = a->h * a->w;
    const int64_t rowLen = w * kp, slotStride = hw * kp;
    float *row = a->row_scratch, *rowSum = a->row_sum, *rowGrad = a->row_grad;
    const __m256 cut8 = _mm256_set1_ps(-60.0f);
    const __m128 cut4 = _mm_set1_ps(-60.0f);
    int64_t labelled = 0;
    for (int64_t y = 0; y < H; y++) {
        lerp_rows(row, a->low + a->r0[y] * rowLen, a->low + a->r1[y] * rowLen, a->rw0[y], a->rw1[y], rowLen);
        const uint8_t *lrow = a->labels + y * W;
        // 1. Column interpolation of every pixel and its maximum.
        for (int64_t x = 0; x < W; x++) {
            float *pixel = P + x * kp;
            lerp_rows(pixel, row + a->c0[x] * kp, row + a->c1[x] * kp, a->cw0[x], a->cw1[x], kp);
            __m256 vmax8 = _mm256_set1_ps(-INFINITY);
            __m128 vmax4 = _mm_set1_ps(-INFINITY);
            int64_t j = 0;
            for (; j + 8 <= kp; j += 8) vmax8 = _mm256_max_ps(_mm256_loadu_ps(pixel + j), vmax8);
            if (j < kp) vmax4 = _mm_max_ps(_mm_loadu_ps(pixel + j), vmax4);
            vmax4 = _mm_max_ps(vmax4, _mm_max_ps(_mm256_castps256_ps128(vmax8), _mm256_extractf128_ps(vmax8, 1)));
            __m128 sw = _mm_max_ps(vmax4, _mm_movehdup_ps(vmax4));          // lanes 0: max(v0, v1), 2: max(v2, v3)
            const float m = _mm_cvtss_f32(_mm_max_ss(_mm_movehl_ps(sw, sw), sw));
            mx[x] = m;
            sum[W + x] = lrow[x] != 255 ? pixel[lrow[x]] - m : 0.0f;   // zy: the label's logit, before exp
        }
        // 2. exp (terms below e^-60 flushed to 0, see the Swift path) and the 4-lane sums.
        for (int64_t x = 0; x < W; x++) {
            float *pixel = P + x * kp;
            const __m256 m8 = _mm256_set1_ps(mx[x]);
            __m128 sacc = _mm_setzero_ps();
            int64_t j = 0;
            for (; j + 8 <= kp; j += 8) {
                __m256 d = _mm256_sub_ps(_mm256_loadu_ps(pixel + j), m8);
                __m256 e = _mm256_andnot_ps(_mm256_cmp_ps(d, cut8, _CMP_LT_OQ), exp8(d));
                _mm256_storeu_ps(pixel + j, e);
                sacc = _mm_add_ps(sacc, _mm256_castps256_ps128(e));
                sacc = _mm_add_ps(sacc, _mm256_extractf128_ps(e, 1));
            }
            if (j < kp) {
                __m128 d = _mm_sub_ps(_mm_loadu_ps(pixel + j), _mm256_castps256_ps128(m8));
                __m128 e = _mm_andnot_ps(_mm_cmp_ps(d, cut4, _CMP_LT_OQ), exp4(d));
                _mm_storeu_ps(pixel + j, e);
                sacc = _mm_add_ps(sacc, e);
            }
            __m128 h = _mm_add_ps(sacc, _mm_movehdup_ps(sacc));              // lanes 0: v0 + v1, 2: v2 + v3
            sum[x] = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehl_ps(h, h)));
        }
        // 3. Softmax, its row sum, the NLL and softmax - onehot.
        memset(rowSum, 0, (size_t)kp * sizeof(float));
        for (int64_t x = 0; x < W; x++) {
            float *pixel = P + x * kp;
            const float s = sum[x];
            const __m256 inv8 = _mm256_set1_ps(1.0f / s);
            int64_t j = 0;
            for (; j + 8 <= kp; j += 8) {
                __m256 p = _mm256_mul_ps(_mm256_loadu_ps(pixel + j), inv8);
                _mm256_storeu_ps(pixel + j, p);
                _mm256_storeu_ps(rowSum + j, _mm256_add_ps(_mm256_loadu_ps(rowSum + j), p));
            }
            if (j < kp) {
                __m128 p = _mm_mul_ps(_mm_loadu_ps(pixel + j), _mm256_castps256_ps128(inv8));
                _mm_storeu_ps(pixel + j, p);
                _mm_storeu_ps(rowSum + j, _mm_add_ps(_mm_loadu_ps(rowSum + j), p));
            }
            const int lab = lrow[x];
            if (lab == 255) continue;
            labelled++;
            a->nll[a->slot_of[lab]] += (double)(logf(s) - sum[W + x]);
            pixel[lab] -= 1.0f;
        }
        for (int64_t j = 0; j < kp; j++) a->softmax_sum[j] += (double)rowSum[j];
        // 4. Column adjoints, pixel by pixel in order.
        for (int64_t x = 0; x < W; x++) {
            const int lab = lrow[x];
            if (lab == 255) continue;
            const int64_t slot = a->slot_of[lab];
            a->touched[slot] = 1;
            float *r = rowGrad + slot * rowLen;
            adjoint(r + a->c0[x] * kp, r + a->c1[x] * kp, P + x * kp, a->cw0[x], a->cw1[x], kp);
        }
        // Row adjoint of the touched slots, clearing their rows.
        for (int64_t slot = 0; slot < a->slot_count; slot++) {
            if (!a->touched[slot]) continue;
            a->touched[slot] = 0;
            float *r = rowGrad + slot * rowLen;
            float *base = a->slots + slot * slotStride;
            adjoint(base + a->r0[y] * rowLen, base + a->r1[y] * rowLen, r, a->rw0[y], a->rw1[y], rowLen);
            memset(r, 0, (size_t)rowLen * sizeof(float));
        }
    }
    a->labelled = labelled;
    return 0;
}

int unseg_em_mstep_pass(unseg_em_pass_args *a) {
    if (!unseg_cpu_avx2() || a->kp % 4 != 0) return -1;
    // One row of pixels [W, kp], their maxima [W] and sums [W] (then the label logits zy [W]).
    float *P = a->row_pixels;
    return mstep_avx2(a, P, P + a->W * a->kp, P + a->W * a->kp + a->W);
}

// EMKernels.argmaxUpsampled: the class of every output pixel (first on ties) of the bilinearly
// upsampled logits, never materialised. The interpolation is the Swift path's, element by element
// (no FMA), and the maximum and its first index are order-free, so the classes are the same.
// Pixels whose mask is 0 (background, when `masks` is given) get class 0 and cost nothing: the
// majority vote ignores them; rows with no mask pixel skip their row interpolation too.
AVX2 static int argmax_avx2(const unseg_em_argmax_args *a) {
    const int64_t w = a->w, H = a->H, W = a->W, kp = a->kp, rowLen = w * kp;
    float *row = a->row_scratch;
    float pixel[256];
    for (int64_t y = 0; y < H; y++) {
        uint8_t *o = a->out + y * W;
        const uint8_t *m = a->masks ? a->masks + y * W : NULL;
        if (m) {
            int64_t x = 0;
            while (x < W && m[x] == 0) x++;
            if (x == W) { memset(o, 0, (size_t)W); continue; }
        }
        lerp_rows(row, a->low + a->r0[y] * rowLen, a->low + a->r1[y] * rowLen, a->rw0[y], a->rw1[y], rowLen);
        for (int64_t x = 0; x < W; x++) {
            if (m && m[x] == 0) { o[x] = 0; continue; }
            lerp_rows(pixel, row + a->c0[x] * kp, row + a->c1[x] * kp, a->cw0[x], a->cw1[x], kp);
            __m256 v8 = _mm256_set1_ps(-INFINITY);
            int64_t j = 0;
            for (; j + 8 <= kp; j += 8) v8 = _mm256_max_ps(_mm256_loadu_ps(pixel + j), v8);
            __m128 v4 = _mm_max_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
            if (j < kp) v4 = _mm_max_ps(_mm_loadu_ps(pixel + j), v4);
            v4 = _mm_max_ps(v4, _mm_movehl_ps(v4, v4));
            v4 = _mm_max_ss(v4, _mm_shuffle_ps(v4, v4, 1));
            const float mx = _mm_cvtss_f32(v4);
            int64_t best = 0;   // no lane equals a NaN maximum: class 0, as in Swift
            for (j = 0; j < kp; j++) if (pixel[j] == mx) { best = j; break; }
            o[x] = (uint8_t)best;
        }
    }
    return 0;
}

int unseg_em_argmax_upsampled(const unseg_em_argmax_args *a) {
    if (!unseg_cpu_avx2() || a->kp % 4 != 0 || a->kp > 256) return -1;
    return argmax_avx2(a);
}

AVX2 static float exp_sum_avx2(const float *x, size_t n) {
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, exp8(_mm256_loadu_ps(x + i)));
    float v[8];
    _mm256_storeu_ps(v, acc);
    float s = 0;
    for (int k = 0; k < 8; k++) s += v[k];
    for (; i < n; i++) s += expf(x[i]);
    return s;
}

float unseg_exp_sum(const float *x, size_t n) {
    if (unseg_cpu_avx2()) return exp_sum_avx2(x, n);
    float s = 0;
    for (size_t i = 0; i < n; i++) s += expf(x[i]);
    return s;
}

#else
int unseg_em_avx2_available(void) { return 0; }
int unseg_em_argmax_upsampled(const unseg_em_argmax_args *a) { (void)a; return -1; }
int unseg_em_mstep_pass(unseg_em_pass_args *a) { (void)a; return -1; }
float unseg_exp_sum(const float *x, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += expf(x[i]);
    return s;
}
#endif
