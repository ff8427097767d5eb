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
