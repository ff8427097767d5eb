#include "unseg_mpi.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void *H;   // MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request: pointers in Open MPI

static void *lib;
static H comm_world, dt_byte, dt_int64, op_sum;
static int (*p_init_thread)(int *, char ***, int, int *);
static int (*p_finalize)(void);
static int (*p_comm_rank)(H, int *);
static int (*p_comm_size)(H, int *);
static int (*p_barrier)(H);
static int (*p_ibarrier)(H, H *);
static int (*p_test)(H *, int *, void *);
static int (*p_allreduce)(const void *, void *, int, H, H, H);
static int (*p_allgather)(const void *, int, H, void *, int, H, H);
static int (*p_allgatherv)(const void *, int, H, void *, const int *, const int *, H, H);
static int (*p_send)(const void *, int, H, int, int, H);
static int (*p_recv)(void *, int, H, int, int, H, void *);
static int (*p_abort)(H, int);
static int (*p_get_processor_name)(char *, int *);
static int rank_ = 0, size_ = 1;

int unseg_mpi_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") != NULL; }

int unseg_mpi_start(char *err, size_t errlen) {
    const char *names[] = {"libmpi.so.40", "libmpi.so", NULL};
    for (int i = 0; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(err, errlen, "started by mpirun but Open MPI's libmpi.so.40 cannot be loaded (%s); install it with `bash Tools/install-deps.sh --mpi` (Debian: libopenmpi-dev openmpi-bin)", dlerror());
        return -1;
    }
#define SYM(var, name) do { *(void **)(&var) = dlsym(lib, name); if (!var) { snprintf(err, errlen, "libmpi has no symbol %s: not Open MPI 4 or later?", name); return -1; } } while (0)
    SYM(p_init_thread, "MPI_Init_thread"); SYM(p_finalize, "MPI_Finalize"); SYM(p_comm_rank, "MPI_Comm_rank");
    SYM(p_comm_size, "MPI_Comm_size"); SYM(p_barrier, "MPI_Barrier"); SYM(p_ibarrier, "MPI_Ibarrier");
    SYM(p_test, "MPI_Test"); SYM(p_allreduce, "MPI_Allreduce"); SYM(p_allgather, "MPI_Allgather");
    SYM(p_allgatherv, "MPI_Allgatherv"); SYM(p_send, "MPI_Send"); SYM(p_recv, "MPI_Recv"); SYM(p_abort, "MPI_Abort");
    SYM(p_get_processor_name, "MPI_Get_processor_name");
    SYM(comm_world, "ompi_mpi_comm_world"); SYM(dt_byte, "ompi_mpi_byte"); SYM(dt_int64, "ompi_mpi_int64_t");
    SYM(op_sum, "ompi_mpi_op_sum");
#undef SYM
    // MPI_THREAD_FUNNELED (1 in Open MPI): worker and prefetch threads run, only the main thread calls MPI.
    int provided = 0;
    if (p_init_thread(NULL, NULL, 1, &provided) != 0) { snprintf(err, errlen, "MPI_Init_thread failed"); return -1; }
    p_comm_rank(comm_world, &rank_);
    p_comm_size(comm_world, &size_);
    return 0;
}

int unseg_mpi_rank(void) { return rank_; }
int unseg_mpi_size(void) { return size_; }
int unseg_mpi_host(char *out, size_t len) {
    char buf[256]; int n = 0;
    if (!lib || p_get_processor_name(buf, &n) != 0) { snprintf(out, len, "?"); return -1; }
    snprintf(out, len, "%.*s", n, buf);
    return 0;
}
int unseg_mpi_barrier(void) { return p_barrier(comm_world); }
int unseg_mpi_allreduce_sum_i64(const int64_t *in, int64_t *out, int count) {
    return p_allreduce(in, out, count, dt_int64, op_sum, comm_world);
}
int unseg_mpi_allgather_i64(int64_t value, int64_t *out) {
    return p_allgather(&value, 1, dt_int64, out, 1, dt_int64, comm_world);
}
int unseg_mpi_allgatherv(const void *send, int sendcount, void *recv, const int *counts, const int *displs) {
    return p_allgatherv(send, sendcount, dt_byte, recv, counts, displs, dt_byte, comm_world);
}
int unseg_mpi_send(const void *buf, int count, int dest, int tag) { return p_send(buf, count, dt_byte, dest, tag, comm_world); }
int unseg_mpi_recv(void *buf, int count, int source, int tag) {
    return p_recv(buf, count, dt_byte, source, tag, comm_world, NULL /* MPI_STATUS_IGNORE */);
}
int unseg_mpi_barrier_within(double seconds) {
    H req = NULL;
    if (p_ibarrier(comm_world, &req) != 0) return -1;
    struct timespec t0, t, nap = {0, 2000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int done = 0;
        if (p_test(&req, &done, NULL) != 0) return -1;
        if (done) return 1;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9 > seconds) return 0;
        nanosleep(&nap, NULL);
    }
}
void unseg_mpi_abort(int code) { if (lib) p_abort(comm_world, code); exit(code); }
int unseg_mpi_finalize(void) { return lib ? p_finalize() : 0; }
