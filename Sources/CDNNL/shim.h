// CDNNL: oneDNN's C API (Debian's libdnnl-dev 2.6, OpenMP threading) for Swift, plus libgomp's
// thread-count setter (oneDNN's OpenMP build takes its thread count from the calling thread's setting).
#include <oneapi/dnnl/dnnl.h>

/// libgomp: the number of threads the calling thread's next parallel regions use.
extern void omp_set_num_threads(int threads);
