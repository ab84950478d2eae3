// CMPI: OpenMPI for Swift. OpenMPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, ...)
// are macros over global structs that Swift cannot import, so this header exposes them
// through static inline accessors.
#include <mpi.h>

static inline MPI_Comm thaw_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype thaw_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype thaw_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype thaw_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype thaw_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype thaw_mpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Op thaw_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op thaw_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op thaw_mpi_min(void) { return MPI_MIN; }
static inline void *thaw_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *thaw_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Request thaw_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler thaw_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int thaw_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
