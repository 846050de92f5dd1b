// C = alpha · A · Wᵀ + beta · C for a few rows of A (decode steps of a batch of sequences).
//
// Why not sgemm: with M ≤ 16 rows a decode step is bound by reading W, and OpenBLAS's
// sgemm first packs W into a scratch copy (one extra read and write of every weight,
// ~50 % of a batch-8 Mamba step in perf). Here every weight row is read once, straight
// from the (memory-mapped) checkpoint, and multiplied against all rows of A, which stay
// in L1/L2.
//
// W may be f32 or bfloat16. bf16 is the top half of an f32, so widening it is exact (a
// shift) and costs nothing next to the memory traffic it halves; A, the accumulators and C
// stay f32. One body serves both: `bf16` is a compile-time constant at every call site.
#include "ckernels.h"
#include <stdint.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline __attribute__((always_inline)) float
w_at(const void *wr, int bf16, int t) {
    if (!bf16) return ((const float *)wr)[t];
    union { uint32_t u; float f; } v = { .u = (uint32_t)((const uint16_t *)wr)[t] << 16 };
    return v.f;
}

static inline __attribute__((always_inline)) const void *
w_row(const void *w, int bf16, int j, int k) {
    return bf16 ? (const void *)((const uint16_t *)w + (size_t)j * k) : (const void *)((const float *)w + (size_t)j * k);
}

static inline __attribute__((always_inline)) void
rows_generic(int M, int k, const float *a, ptrdiff_t lda, const void *wr, int bf16, float *acc) {
    for (int i = 0; i < M; i++) {
        float s = 0.0f;
        for (int t = 0; t < k; t++) s += a[i * lda + t] * w_at(wr, bf16, t);
        acc[i] = s;
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

// Eight weights at t as f32 lanes.
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) __m256
w_load8(const void *wr, int bf16, int t) {
    if (!bf16) return _mm256_loadu_ps((const float *)wr + t);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)wr + t));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// One weight row against M rows of A; M is a compile-time constant at every call site,
// so the accumulators live in registers. Two accumulators per row when M is small, to
// keep enough independent FMA chains in flight.
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
rows_avx2(const int M, int k, const float *a, ptrdiff_t lda, const void *wr, int bf16, float *out) {
    __m256 acc0[8], acc1[8];
    for (int i = 0; i < M; i++) { acc0[i] = _mm256_setzero_ps(); acc1[i] = _mm256_setzero_ps(); }
    int t = 0;
    // 2·M accumulators fit the 16 ymm registers only for M ≤ 4 (with W and A loads beside them).
    if (M <= 4) {
        for (; t + 16 <= k; t += 16) {
            __m256 w0 = w_load8(wr, bf16, t), w1 = w_load8(wr, bf16, t + 8);
            for (int i = 0; i < M; i++) {
                acc0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i * lda + t), w0, acc0[i]);
                acc1[i] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i * lda + t + 8), w1, acc1[i]);
            }
        }
    }
    for (; t + 8 <= k; t += 8) {
        __m256 w0 = w_load8(wr, bf16, t);
        for (int i = 0; i < M; i++) acc0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i * lda + t), w0, acc0[i]);
    }
    for (int i = 0; i < M; i++) {
        float s = hsum256(_mm256_add_ps(acc0[i], acc1[i]));
        for (int r = t; r < k; r++) s += a[i * lda + r] * w_at(wr, bf16, r);
        out[i] = s;
    }
}

#define ROWS_AVX2_CASE(MM) case MM: \
    for (int j = n0; j < n1; j++) { rows_avx2(MM, k, a, lda, w_row(w, bf16, j, k), bf16, acc); store(MM, j, acc, c, ldc, alpha, beta); } break;
#endif

static inline __attribute__((always_inline)) void
store(int M, int j, const float *acc, float *c, ptrdiff_t ldc, float alpha, float beta) {
    for (int i = 0; i < M; i++) {
        float *out = c + i * ldc + j;
        *out = beta == 0.0f ? alpha * acc[i] : alpha * acc[i] + beta * *out;  // beta 0: C may be garbage
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
gemm_rows_avx2(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const void *w, int bf16,
               float *c, ptrdiff_t ldc, float alpha, float beta) {
    float acc[8];
    switch (m) {
        ROWS_AVX2_CASE(1) ROWS_AVX2_CASE(2) ROWS_AVX2_CASE(3) ROWS_AVX2_CASE(4)
        ROWS_AVX2_CASE(5) ROWS_AVX2_CASE(6) ROWS_AVX2_CASE(7) ROWS_AVX2_CASE(8)
        default: break;
    }
}
__attribute__((target("avx2,fma"))) static void
gemm_rows_avx2_f32(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const void *w,
                   float *c, ptrdiff_t ldc, float alpha, float beta) {
    gemm_rows_avx2(m, n0, n1, k, a, lda, w, 0, c, ldc, alpha, beta);
}
__attribute__((target("avx2,fma"))) static void
gemm_rows_avx2_bf16(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const void *w,
                    float *c, ptrdiff_t ldc, float alpha, float beta) {
    gemm_rows_avx2(m, n0, n1, k, a, lda, w, 1, c, ldc, alpha, beta);
}
#endif

static void gemm_rows_generic(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const void *w, int bf16,
                              float *c, ptrdiff_t ldc, float alpha, float beta) {
    float acc[8];
    for (int j = n0; j < n1; j++) {
        rows_generic(m, k, a, lda, w_row(w, bf16, j, k), bf16, acc);
        store(m, j, acc, c, ldc, alpha, beta);
    }
}

static void gemm_small_m(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const void *w, int bf16,
                         float *c, ptrdiff_t ldc, float alpha, float beta) {
    // Blocks of 8 rows: each block reads W once.
    for (int i0 = 0; i0 < m; i0 += 8) {
        int rows = m - i0 < 8 ? m - i0 : 8;
        const float *ab = a + (size_t)i0 * lda;
        float *cb = c + (size_t)i0 * ldc;
#if defined(__x86_64__)
        if (ck_uses_avx2()) {
            if (bf16) gemm_rows_avx2_bf16(rows, n0, n1, k, ab, lda, w, cb, ldc, alpha, beta);
            else gemm_rows_avx2_f32(rows, n0, n1, k, ab, lda, w, cb, ldc, alpha, beta);
            continue;
        }
#endif
        gemm_rows_generic(rows, n0, n1, k, ab, lda, w, bf16, cb, ldc, alpha, beta);
    }
}

void ck_gemm_small_m(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const float *w,
                     float *c, ptrdiff_t ldc, float alpha, float beta) {
    gemm_small_m(m, n0, n1, k, a, lda, w, 0, c, ldc, alpha, beta);
}

void ck_gemm_small_m_bf16(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const uint16_t *w,
                          float *c, ptrdiff_t ldc, float alpha, float beta) {
    gemm_small_m(m, n0, n1, k, a, lda, w, 1, c, ldc, alpha, beta);
}

static inline __attribute__((always_inline)) void widen_body(const uint16_t *src, float *dst, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) {
        union { uint32_t u; float f; } v = { .u = (uint32_t)src[i] << 16 };
        dst[i] = v.f;
    }
}
static void widen_generic(const uint16_t *src, float *dst, ptrdiff_t count) { widen_body(src, dst, count); }
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void widen_avx2(const uint16_t *src, float *dst, ptrdiff_t count) {
    widen_body(src, dst, count);
}
#endif

void ck_bf16_to_f32(const uint16_t *src, float *dst, ptrdiff_t count) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { widen_avx2(src, dst, count); return; }
#endif
    widen_generic(src, dst, count);
}
