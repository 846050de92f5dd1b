#include <oneapi/dnnl/dnnl.h>

// Debian's oneDNN runs on OpenMP (libgomp). The thread count of an OpenMP region is a setting
// of the thread that opens it, so Kernels sets it on the calling thread before each call.
// (GCC's omp.h is not on clang's include path; this one declaration is all we need.)
void omp_set_num_threads(int);
