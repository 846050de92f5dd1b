#ifndef MAMBAFORMER_CSUPPORT_H
#define MAMBAFORMER_CSUPPORT_H
/* Small POSIX helpers Swift cannot call directly (variadic or macro-based APIs). */

/* Sends `sig` to this process once its parent process `parent` is gone (a background
   thread polls getppid() every 200 ms). Returns 0 on success. */
int mf_watch_parent(int parent, int sig);

/* SIGHUP-style reload: the handler sets a flag; take returns 1 once per signal burst. */
int mf_install_reload_handler(int sig);
int mf_take_reload_request(void);

/* glibc's malloc_trim(0): gives freed heap memory back to the system. 1 if some was. */
int mf_malloc_trim(void);

/* 1 when the CPU supports AVX-512F (OpenBLAS's SkylakeX kernels need it), else 0. */
int mf_cpu_has_avx512f(void);

/* Installs an async-signal-safe handler for `sig` that only records that a stop was
   requested (the nodes' event loops poll it). Returns 0 on success. */
int mf_install_stop_handler(int sig);

/* 1 once a signal installed with mf_install_stop_handler arrived, else 0. */
int mf_stop_requested(void);

#endif
