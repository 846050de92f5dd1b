// Prefill-shaped GEMMs (C = A · Wᵀ, W a Linear weight [n, k], row-major) through one BLAS
// library per build: OpenBLAS, BLIS or oneDNN (f32, and oneDNN's u8·s8 → s32 integer GEMM).
// Built and run by run.sh; one thread unless the library's thread variable says otherwise.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(USE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#else
#include <cblas.h>
#endif

static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int count) {
    qsort(t, count, sizeof(double), cmp);
    return t[count / 2];
}

static void sgemm_nt(int m, int n, int k, const float *a, const float *w, float *c) {
#if defined(USE_DNNL)
    dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, k, w, k, 0.0f, c, n);
#else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, w, k, 0.0f, c, n);
#endif
}

// Median seconds of `reps` calls after one warm-up.
static double time_f32(int m, int n, int k, int reps) {
    float *a = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k), *c = malloc(sizeof(float) * m * n);
    for (long i = 0; i < (long)m * k; i++) a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (long i = 0; i < (long)n * k; i++) w[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    sgemm_nt(m, n, k, a, w, c);
    double t[64];
    for (int r = 0; r < reps; r++) { double t0 = now(); sgemm_nt(m, n, k, a, w, c); t[r] = now() - t0; }
    free(a); free(w); free(c);
    return median(t, reps);
}

#if defined(USE_DNNL)
static double time_u8s8(int m, int n, int k, int reps) {
    uint8_t *a = malloc(m * k); int8_t *w = malloc(n * k); int32_t *c = malloc(sizeof(int32_t) * m * n);
    for (long i = 0; i < (long)m * k; i++) a[i] = (uint8_t)(i * 7919);
    for (long i = 0; i < (long)n * k; i++) w[i] = (int8_t)(i * 104729);
    int32_t co = 0;
#define U8S8() dnnl_gemm_u8s8s32('N', 'T', 'F', m, n, k, 1.0f, a, k, 0, w, k, 0, 0.0f, c, n, &co)
    U8S8();
    double t[64];
    for (int r = 0; r < reps; r++) { double t0 = now(); U8S8(); t[r] = now() - t0; }
#undef U8S8
    free(a); free(w); free(c);
    return median(t, reps);
}
#endif

#if defined(USE_DNNL)
// Whether the integer GEMM is exact at the extremes of int8 (AVX2 without VNNI multiplies
// u8 × s8 pairs into int16 with saturation): all products 127 × 127 and −127 × 127.
static int u8s8_exact(void) {
    enum { M = 8, N = 16, K = 512 };
    static int8_t a[M * K], w[N * K]; static int32_t c[M * N];
    for (int i = 0; i < M * K; i++) a[i] = (i / K) % 2 ? -127 : 127;
    for (int i = 0; i < N * K; i++) w[i] = 127;
    int32_t co = 0;
    dnnl_gemm_s8s8s32('N', 'T', 'F', M, N, K, 1.0f, a, K, 0, w, K, 0, 0.0f, c, N, &co);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            if (c[i * N + j] != (i % 2 ? -1 : 1) * 127 * 127 * K) return 0;
    return 1;
}

// The same for u8 activations kept to 7 bits (0...127), the range that cannot saturate.
static int u8_7bit_exact(void) {
    enum { M = 8, N = 16, K = 512 };
    static uint8_t a[M * K]; static int8_t w[N * K]; static int32_t c[M * N];
    for (int i = 0; i < M * K; i++) a[i] = 127;
    for (int i = 0; i < N * K; i++) w[i] = (i / K) % 2 ? -127 : 127;
    int32_t co = 0;
    dnnl_gemm_u8s8s32('N', 'T', 'F', M, N, K, 1.0f, a, K, 0, w, K, 0, 0.0f, c, N, &co);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            if (c[i * N + j] != (j % 2 ? -1 : 1) * 127 * 127 * K) return 0;
    return 1;
}
#endif

int main(int argc, char **argv) {
    const char *lib = argc > 1 ? argv[1] : "?";
    int reps = argc > 2 ? atoi(argv[2]) : 15;
    if (reps > 64) reps = 64;
    // name, m, n, k: the projections of a 256-token prompt (t5-small encoder, mamba-130m
    // prefill) and the square that `engine-bench bounds` reports as the sgemm peak.
    struct { const char *name; int m, n, k; } shapes[] = {
        {"t5small.qkv_each 256x512x512", 256, 512, 512},
        {"t5small.qkv_fused 256x1536x512", 256, 1536, 512},
        {"t5small.wi 256x2048x512", 256, 2048, 512},
        {"t5small.wo 256x512x2048", 256, 512, 2048},
        {"mamba130m.in_proj 256x3072x768", 256, 3072, 768},
        {"mamba130m.x_proj 256x80x1536", 256, 80, 1536},
        {"mamba130m.dt_proj 256x1536x48", 256, 1536, 48},
        {"mamba130m.out_proj 256x768x1536", 256, 768, 1536},
        {"square 1024x1024x1024", 1024, 1024, 1024},
    };
#if defined(USE_DNNL)
    printf("{\"lib\": \"%s\", \"check\": \"s8s8s32 exact at ±127\", \"ok\": %s}\n", lib, u8s8_exact() ? "true" : "false");
    printf("{\"lib\": \"%s\", \"check\": \"u8s8s32 exact with u8 in 0...127\", \"ok\": %s}\n", lib, u8_7bit_exact() ? "true" : "false");
#endif
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int m = shapes[i].m, n = shapes[i].n, k = shapes[i].k;
        double s = time_f32(m, n, k, reps);
        printf("{\"lib\": \"%s\", \"op\": \"f32\", \"shape\": \"%s\", \"ms\": %.4f, \"gflops\": %.1f}\n",
               lib, shapes[i].name, s * 1e3, 2.0 * m * n * k / s * 1e-9);
#if defined(USE_DNNL)
        double q = time_u8s8(m, n, k, reps);
        printf("{\"lib\": \"%s\", \"op\": \"u8s8s32\", \"shape\": \"%s\", \"ms\": %.4f, \"gops\": %.1f}\n",
               lib, shapes[i].name, q * 1e3, 2.0 * m * n * k / q * 1e-9);
#endif
        fflush(stdout);
    }
    return 0;
}
