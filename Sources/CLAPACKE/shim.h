// LAPACKE, the C interface to LAPACK (reference LAPACK on top of OpenBLAS).
#pragma once
#include <lapacke.h>

static inline int unseg_lapack_row_major(void) { return LAPACK_ROW_MAJOR; }
static inline int unseg_lapack_col_major(void) { return LAPACK_COL_MAJOR; }
