// Open MPI, loaded at run time (dlopen) only when the process was started by mpirun: a plain
// `unseg` run needs no MPI library and never initialises MPI. Handles (MPI_COMM_WORLD, MPI_BYTE,
// MPI_SUM, ...) are Open MPI's predefined objects, whose addresses are the handles; they are
// looked up with dlsym, so nothing of mpi.h is needed at build time.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Whether the environment says this process was started by Open MPI's mpirun (OMPI_COMM_WORLD_SIZE set).
int unseg_mpi_launched(void);
/// Loads libmpi (RTLD_GLOBAL, as Open MPI's plugins need) and MPI_Init. 0 on success; else writes
/// a message into err.
int unseg_mpi_start(char *err, size_t errlen);
int unseg_mpi_rank(void);
int unseg_mpi_size(void);
/// The MPI processor name (host) of this rank.
int unseg_mpi_host(char *out, size_t len);
int unseg_mpi_barrier(void);
/// out[i] = sum over ranks of in[i] (int64, exact).
int unseg_mpi_allreduce_sum_i64(const int64_t *in, int64_t *out, int count);
/// Every rank's `value`, in rank order, into out[size].
int unseg_mpi_allgather_i64(int64_t value, int64_t *out);
/// Concatenation of every rank's bytes in rank order (counts and displacements in bytes, < 2 GiB).
int unseg_mpi_allgatherv(const void *send, int sendcount, void *recv, const int *counts, const int *displs);
int unseg_mpi_send(const void *buf, int count, int dest, int tag);
int unseg_mpi_recv(void *buf, int count, int source, int tag);
/// A non-blocking barrier, tested until done or `seconds` pass: 1 all arrived, 0 timed out, < 0 error.
int unseg_mpi_barrier_within(double seconds);
void unseg_mpi_abort(int code);
int unseg_mpi_finalize(void);
