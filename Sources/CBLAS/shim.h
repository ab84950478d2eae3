// CBLAS: OpenBLAS's CBLAS interface (cblas_sgemm and friends) for Swift.
#include <cblas.h>
