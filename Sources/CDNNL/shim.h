// CDNNL: oneDNN's C API (Debian's libdnnl-dev 2.6, OpenMP threading) for Swift, plus what does not
// import on its own: libgomp's thread-count setter (oneDNN's OpenMP build takes its thread count
// from the calling thread's OpenMP setting).
#include <oneapi/dnnl/dnnl.h>

/// libgomp: the number of threads the calling thread's next parallel regions use.
extern void omp_set_num_threads(int threads);
/// libgomp: that number.
extern int omp_get_max_threads(void);
