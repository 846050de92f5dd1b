#ifndef MAMBAFORMER_CSUPPORT_H
#define MAMBAFORMER_CSUPPORT_H
/* Small POSIX helpers Swift cannot call directly (variadic or macro-based APIs). */

/* Ask the kernel to send `sig` to this process when its parent dies (Linux prctl
   PR_SET_PDEATHSIG). Returns 0 on success, -1 where unsupported. */
int mf_set_parent_death_signal(int sig);

/* 1 when the CPU supports AVX-512F (OpenBLAS's SkylakeX kernels need it), else 0. */
int mf_cpu_has_avx512f(void);

#endif
