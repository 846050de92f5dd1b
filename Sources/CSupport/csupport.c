#include "csupport.h"
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t mf_stop = 0;

static void mf_on_stop(int sig) {
    (void)sig;
    mf_stop = 1;
}

int mf_install_stop_handler(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = mf_on_stop;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

int mf_stop_requested(void) {
    return mf_stop ? 1 : 0;
}
#if defined(__linux__)
#include <sys/prctl.h>
#endif

int mf_set_parent_death_signal(int sig) {
#if defined(__linux__)
    return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0);
#else
    (void)sig;
    return -1;
#endif
}

int mf_cpu_has_avx512f(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}
