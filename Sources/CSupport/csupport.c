#include "csupport.h"
#include <signal.h>
#include <string.h>

/* Flags set by async-signal-safe handlers; the nodes' loops read them between turns. */
static volatile sig_atomic_t mf_stop = 0, mf_reload = 0;

static void mf_on_stop(int sig) { (void)sig; mf_stop = 1; }
static void mf_on_reload(int sig) { (void)sig; mf_reload = 1; }

static int mf_install(int sig, void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

int mf_install_stop_handler(int sig) { return mf_install(sig, mf_on_stop); }
int mf_install_reload_handler(int sig) { return mf_install(sig, mf_on_reload); }

int mf_stop_requested(void) { return mf_stop ? 1 : 0; }

int mf_take_reload_request(void) {
    if (!mf_reload) return 0;
    mf_reload = 0;
    return 1;
}
#include <pthread.h>
#include <unistd.h>

/* Not PR_SET_PDEATHSIG: Linux sends that signal when the parent *thread* that forked us
   exits, and a launcher that spawns from a thread pool (Swift concurrency, a test runner)
   loses such threads while it lives on. Polling getppid() follows the process instead:
   when the parent dies we are re-parented and the id changes. */
static pid_t mf_watched_parent;
static int mf_watch_signal;

static void *mf_parent_watch(void *arg) {
    (void)arg;
    for (;;) {
        if (getppid() != mf_watched_parent) {
            kill(getpid(), mf_watch_signal);
            /* A node busy computing (a long prefill) looks at its stop flag only between
               steps: after a grace period longer than the nodes' drains (10 s) it goes for good. */
            sleep(15);
            kill(getpid(), SIGKILL);
            return NULL;
        }
        usleep(200 * 1000);
    }
}

int mf_watch_parent(int parent, int sig) {
    mf_watched_parent = (pid_t)parent;
    mf_watch_signal = sig;
    pthread_t thread;
    if (pthread_create(&thread, NULL, mf_parent_watch, NULL) != 0) return -1;
    return pthread_detach(thread);
}

int mf_cpu_has_avx512f(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

#if defined(__GLIBC__)
#include <malloc.h>
int mf_malloc_trim(void) { return malloc_trim(0); }
#else
int mf_malloc_trim(void) { return 0; }
#endif
