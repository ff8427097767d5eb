// HDF5 C library. Its type and flag "constants" are macros that expand to
// global ids or function calls, which Swift cannot import: each gets a
// one-line static inline function here.
#pragma once
#include <hdf5.h>

static inline hid_t unseg_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t unseg_H5S_ALL(void) { return H5S_ALL; }
static inline hid_t unseg_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t unseg_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t unseg_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t unseg_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t unseg_H5P_DATASET_ACCESS(void) { return H5P_DATASET_ACCESS; }

static inline unsigned unseg_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned unseg_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned unseg_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned unseg_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }

static inline hid_t unseg_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t unseg_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t unseg_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t unseg_H5T_NATIVE_INT8(void) { return H5T_NATIVE_INT8; }
static inline hid_t unseg_H5T_NATIVE_INT16(void) { return H5T_NATIVE_INT16; }
static inline hid_t unseg_H5T_NATIVE_UINT16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t unseg_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t unseg_H5T_NATIVE_UINT32(void) { return H5T_NATIVE_UINT32; }
static inline hid_t unseg_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t unseg_H5T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t unseg_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t unseg_H5T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline hid_t unseg_H5T_STD_U8LE(void) { return H5T_STD_U8LE; }
static inline hid_t unseg_H5T_STD_I32LE(void) { return H5T_STD_I32LE; }
static inline hid_t unseg_H5T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t unseg_H5T_C_S1(void) { return H5T_C_S1; }
static inline size_t unseg_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline hsize_t unseg_H5S_UNLIMITED(void) { return H5S_UNLIMITED; }

/// Turn off HDF5's automatic printing of its error stack (errors are read from the stack instead).
/// A thread-safe HDF5 (Debian's is) keeps this setting per thread, so it is done once on every
/// thread that calls HDF5 (a thread-local flag makes repeated calls free).
static inline void unseg_h5_silence(void) {
    static __thread int done = 0;
    if (!done) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); done = 1; }
}
