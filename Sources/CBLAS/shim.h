// OpenBLAS' CBLAS interface, plus its thread-count controls.
#pragma once
#include <cblas.h>

/// Number of threads OpenBLAS uses for one call (set at load time from OPENBLAS_NUM_THREADS).
static inline int unseg_blas_get_threads(void) { return openblas_get_num_threads(); }
/// Change the number of threads OpenBLAS uses for subsequent calls (process-wide).
static inline void unseg_blas_set_threads(int n) { openblas_set_num_threads(n); }
/// The kernel family OpenBLAS selected (e.g. "Haswell", "SkylakeX").
static inline const char *unseg_blas_core_name(void) { return openblas_get_corename(); }
