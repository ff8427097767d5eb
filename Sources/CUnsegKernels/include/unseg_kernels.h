// Small C kernels for hot loops Swift does not vectorise well, with runtime CPU dispatch.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Widens n IEEE half-precision values (raw bits) to float. Exact. Uses F16C when the CPU has it.
void unseg_half_to_float(const uint16_t *src, float *dst, size_t n);
/// Narrows n floats to IEEE half precision (round to nearest even, overflow to inf). Uses F16C when available.
void unseg_float_to_half(const float *src, uint16_t *dst, size_t n);
/// 1 when the F16C path is used on this CPU, else 0.
int unseg_has_f16c(void);

#include <stdio.h>
/// Makes stdout line-buffered (reports piped into a file or `tee` show each line as it is printed).
/// A C function because Swift 6 cannot touch the `stdout` global itself.
static inline void unseg_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

/// Inflates a zlib stream (HDF5's deflate filter) of `src_len` bytes into exactly `dst_len` bytes.
/// Returns 0 on success, -1 when the stream is damaged or does not give exactly `dst_len` bytes.
int unseg_inflate(const unsigned char *src, size_t src_len, unsigned char *dst, size_t dst_len);
/// Undoes HDF5's shuffle filter: `src` holds byte 0 of every element, then byte 1, ...;
/// writes `count` elements of `size` bytes to `dst` (trailing bytes beyond count*size are copied as-is).
void unseg_unshuffle(const unsigned char *src, unsigned char *dst, size_t count, size_t size, size_t total);

#if defined(__GLIBC__)
#include <malloc.h>
#endif
/// Serves allocations of up to `mmap_threshold` bytes from the heap and keeps up to `trim_threshold`
/// bytes of freed heap memory (glibc's `mallopt`); a no-op elsewhere. See `MemoryTuning`.
static inline void unseg_heap_thresholds(int mmap_threshold, int trim_threshold) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
#else
    (void)mmap_threshold; (void)trim_threshold;
#endif
}

/// Asks the CPU to bring the cache line at `p` in (a hint; no effect on results).
static inline void unseg_prefetch(const void *p) { __builtin_prefetch(p); }

/// A permutohedral lattice under construction (lattice.c): its packed-key hash table.
typedef struct unseg_lattice unseg_lattice;
/// `PermutohedralLattice.build` with packed keys (`PackedKeyTable`), the same result: for `features`
/// `[n, d]` (2 <= d <= 16, every elevated coordinate below `PackedKeyTable.maxCoordinate`) and the
/// elevation `scale` `[d]`, writes `offsets` `[n, d+1]` (vertex id + 1) and `weights` `[n, d+1]`
/// and sets `vertex_count`. Returns the table, for `unseg_lattice_neighbors`, then
/// `unseg_lattice_free`; NULL when memory ran out or d is out of range.
unseg_lattice *unseg_lattice_build(const float *features, int64_t n, int d, const float *scale, int32_t *offsets,
                                   float *weights, int64_t *vertex_count);
/// The blur neighbours `[d+1, vertex_count, 2]` (vertex id + 1, 0 = none), as `PermutohedralLattice.neighbors`.
void unseg_lattice_neighbors(const unseg_lattice *lattice, int32_t *neighbors);
void unseg_lattice_free(unseg_lattice *lattice);
/// `PermutohedralLattice.filter` of all-ones values (one channel, no scales), the same operations
/// in the same order, so the same bits: splat, blur, slice with `alpha`; `out` `[n]`. Returns 0, or
/// -1 when memory ran out.
int unseg_lattice_filter_ones(const int32_t *offsets, const float *weights, const int32_t *neighbors, int64_t n,
                              int d1, int64_t m, float alpha, float *out);

/// One image row of the dense CRF's fused mean-field pass (see `DenseCRF.infer`), for the
/// bilateral lattice with d = 5 (six simplex corners per pixel) and the exact spatial kernel.
/// Values are rows of `c4` floats (labels padded to a multiple of 4, 16-byte aligned).
/// The CRF kernels below may read and write up to 16 values past the last row of any buffer they
/// read or write row by row (the AVX-512 kernels run whole 16-lane chunks): every such buffer needs
/// 16 values of slack after it (`DenseCRF.kernelSlack`). Nothing written there is read as a value.
typedef struct {
    int width, c4, labels;
    const float *neg_unary;      /* [width, c4] -U of the row's pixels */
    const uint16_t *neg_unary_half; /* the same as float16 bits; when not NULL, read instead */
    const float *spatial;        /* [width, c4] spatial kernel output for the row; NULL on the first pass */
    const float *slice_scale;    /* [width] spatial weight x norm */
    const int32_t *offsets;      /* [width, 6] lattice vertex id + 1 per corner */
    const float *slice_weights;  /* [width, 6] */
    const float *splat_weights;  /* [width, 6] */
    const float *spatial_norm;   /* [width] */
    const float *lattice_in;     /* [(M+1), c4] blurred values (read by the slice) */
    const uint16_t *lattice_in_half; /* [(M+1), c4] the same as float16 bits; when not NULL, read instead */
    float *lattice_out;          /* [(M+1), splat_stride] splat target */
    int splat_stride;            /* floats per row of lattice_out (>= c4, a multiple of 4; lanes
                                    from c4 on are left as they are or get + 0) */
    float *spatial_out;          /* [width, c4] norm x Q (the spatial field of the next pass) */
    uint16_t *spatial_out_half;  /* the same rounded to float16; when not NULL, written instead */
    float *out;                  /* [width, labels]: when not NULL, the last pass: Q written here, no splat */
    float *scratch;              /* [width, c4] row buffer (16-byte aligned) */
    int isa;                     /* the highest instruction set to use (`unseg_crf_isa`) */
} unseg_crf_row_args;
/// 1 when the CPU has AVX2 and F16C (the CRF kernels below run), else 0.
int unseg_crf_avx2_available(void);
/// The instruction sets the CRF kernels below can use on this CPU: 0 none, 1 AVX2 + F16C (8 lanes),
/// 2 also AVX-512 F/BW/VL/DQ (16 lanes). Each kernel takes `isa`, the highest level to use (capped at
/// this); every level gives the same bits as the Swift reference.
int unseg_crf_isa(void);
/// Runs one row with 8-lane AVX2 arithmetic, or 16-lane AVX-512 (`isa` 2, the CPU has it, c4 > 8);
/// the same bits as the Swift reference either way. Returns 0, or -1 when the kernel cannot run it
/// (no AVX2, not x86-64, or no scratch).
int unseg_crf_fused_row(const unseg_crf_row_args *a);
/// `FusedLattice.blur` with 8-lane AVX2 arithmetic (same bits): blurs `values` `[(m+1), c4]` along
/// `directions` directions, ping-ponging with `scratch`; sets `result` to the buffer holding the
/// result and `other` to the other one. Returns 0, or -1 when not available.
int unseg_crf_blur(float *values, float *scratch, const int32_t *neighbors, int64_t m, int c4, int directions,
                   float **result, float **other);
/// The blur with float16 storage (same bits as `FusedLattice.blur` with `halfValues`): the splatted
/// `values` `[(m+1), values_stride]` (float32, `values_stride` >= c4, a multiple of 4; extra lanes
/// ignored) are blurred along `directions` (>= 1) directions; every
/// direction's output is rounded to float16 (nearest even) and stored in `a` or `b` (`[(m+1), c4]`
/// half bits, ping-pong); `result` is set to the one holding the last. 16-lane with `isa` 2 when the
/// CPU has AVX-512 and c4 > 8, else 8-lane. Returns 0, or -1 when not available.
int unseg_crf_blur_half(float *values, int values_stride, uint16_t *a, uint16_t *b, const int32_t *neighbors, int64_t m,
                        int c4, int directions, uint16_t **result, int isa);
/// `out[i lp + l] = -u[i labels + l]` for `l < labels`, 0 for `labels <= l < lp` (`n` rows); returns 1
/// when every value is below 2^15 in magnitude (no NaN), so that float16 holds it comfortably, else 0.
int unseg_pad_negate(const float *u, size_t n, int labels, int lp, float *out);
/// Rounds `n` floats to the nearest float16 value (ties to even) in place: exact, F16C when available.
void unseg_round_through_half(float *values, size_t n);
/// `SeparableGaussian.blurRow` with 8-lane AVX2 or 16-lane AVX-512 arithmetic (`isa`; same bits): row `y` of `src`
/// `[height, width, c4]` (or of `src_half`, the field as float16 bits, when not NULL) filtered
/// with `taps` `[2 radius + 1]` into `dst` `[width, c4]`, through `scratch`
/// `[(width + 2 radius) c4]` whose pads are zero. Returns 0, or -1 when not available (or radius > 16).
int unseg_crf_spatial_row(const float *src, const uint16_t *src_half, int y, int height, int width, int c4, int radius,
                          const float *taps, float *scratch, float *dst, int isa);
/// The fused pass's softmax on `rows` rows of `c4` floats (`labels` real lanes), for tests.
int unseg_crf_softmax_rows(float *q, int rows, int c4, int labels, int isa);
/// `out[i] = -log(min(max(p[i], clip), 1))` (NaN -> clip; `clip` > 0 normal) by Cephes' logf,
/// relative error ~1e-7; `vectorised` 2: 16 lanes with AVX-512, or 8 with AVX2, as the CPU has them;
/// 1: at most AVX2; 0: scalar. The same bits every way.
void unseg_neg_log_clipped(const float *p, float *out, size_t n, float clip, int vectorised);

/// One image's PriMaPs-EM M-step pass (`EMKernels.mStepPass`): the bilinear tables, the
/// running-model logits, the pseudo-labels, the output slots and the scratch rows. `slots`,
/// `nll`, `softmax_sum`, `row_grad` and `touched` start at zero.
typedef struct {
    const float *low;            /* [h*w, kp] logits, padding lanes -1e30 */
    int64_t h, w, H, W, kp;      /* kp: classes padded to a multiple of 4 */
    const int64_t *r0, *r1, *c0, *c1;
    const float *rw0, *rw1, *cw0, *cw1;
    const uint8_t *labels;       /* [H*W], 255 = ignore */
    const int64_t *slot_of;      /* [256]: the slot of each label present */
    int64_t slot_count;
    float *slots;                /* [slot_count, h*w, kp] */
    double *nll;                 /* [slot_count] */
    double *softmax_sum;         /* [kp] */
    float *row_scratch;          /* [w*kp] */
    float *row_pixels;           /* [W*kp + 3*W]: one output row's pixels, maxima and sums */
    float *row_sum;              /* [kp] */
    float *row_grad;             /* [max(slot_count, 1), w*kp] */
    uint8_t *touched;            /* [max(slot_count, 1)] */
    int64_t labelled;            /* out: pixels with a label */
} unseg_em_pass_args;
/// 1 when the CPU has AVX2 and F16C (the EM kernel below runs), else 0.
int unseg_em_avx2_available(void);
/// The M-step pass with 8-lane AVX2 arithmetic: the same bits as the Swift path. Returns 0, or -1
/// when it cannot run here (no AVX2, not x86-64, kp not a multiple of 4).
int unseg_em_mstep_pass(unseg_em_pass_args *a);
/// `EMKernels.argmaxUpsampled`: the first-on-ties argmax class `[H*W]` of the bilinearly
/// upsampled `low [h*w, kp]` logits. With `masks` (`[H*W]`, may be NULL), pixels of mask 0 get
/// class 0 unexamined (the majority vote ignores them).
typedef struct {
    const float *low;
    int64_t h, w, H, W, kp;      /* kp: a multiple of 4, at most 256 */
    const int64_t *r0, *r1, *c0, *c1;
    const float *rw0, *rw1, *cw0, *cw1;
    const uint8_t *masks;
    float *row_scratch;          /* [w*kp] */
    uint8_t *out;                /* [H*W] */
} unseg_em_argmax_args;
/// Returns 0, or -1 when it cannot run here (no AVX2, not x86-64, kp not a multiple of 4 or > 256).
int unseg_em_argmax_upsampled(const unseg_em_argmax_args *a);
/// The sum of `exp(x[i])` (FastMath.exp, AVX2 when available): the benchmark's exp floor.
float unseg_exp_sum(const float *x, size_t n);
