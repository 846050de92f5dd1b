// C = alpha · A · Wᵀ + beta · C for a few rows of A (decode steps of a batch of sequences).
//
// Why not sgemm: with M ≤ 16 rows a decode step is bound by reading W, and OpenBLAS's
// sgemm first packs W into a scratch copy (one extra read and write of every weight,
// ~50 % of a batch-8 Mamba step in perf). Here every weight row is read once, straight
// from the (memory-mapped) checkpoint, and multiplied against all rows of A, which stay
// in L1/L2.
//
// W is f32, bfloat16 or int8 with one scale per row (weight-only quantization). Narrow
// weights are widened in registers, which costs nothing next to the memory traffic they save;
// A, the sums and C stay f32. bf16 is the top half of an f32, so widening it is exact; int8
// rows are sums of a·q, scaled once per output. One body serves every kind: `kind` is a
// compile-time constant at every call site.
#include "ckernels.h"
#include <stdint.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { W_F32 = 0, W_BF16 = 1, W_I8 = 2 };

static inline __attribute__((always_inline)) float
w_at(const void *wr, int kind, int t) {
    if (kind == W_F32) return ((const float *)wr)[t];
    if (kind == W_I8) return (float)((const int8_t *)wr)[t];
    union { uint32_t u; float f; } v = { .u = (uint32_t)((const uint16_t *)wr)[t] << 16 };
    return v.f;
}

static inline __attribute__((always_inline)) const void *
w_row(const void *w, int kind, int j, int k) {
    if (kind == W_F32) return (const float *)w + (size_t)j * k;
    if (kind == W_I8) return (const int8_t *)w + (size_t)j * k;
    return (const uint16_t *)w + (size_t)j * k;
}

// Bytes per weight, and a software prefetch of W `PREFETCH_BYTES` ahead of the loads: with a
// batch the FMAs between two W loads hide the memory latency less well than at batch 1, so
// the hardware prefetcher alone left the W stream short of the bandwidth.
static inline __attribute__((always_inline)) int w_size(int kind) { return kind == W_F32 ? 4 : kind == W_BF16 ? 2 : 1; }
#define PREFETCH_BYTES 1024
#define PREFETCH_W(wr, kind, t, span) do { \
    const char *p_ = (const char *)(wr) + (size_t)(t) * w_size(kind) + PREFETCH_BYTES; \
    for (int b_ = 0; b_ < (span) * w_size(kind); b_ += 64) __builtin_prefetch(p_ + b_, 0, 3); } while (0)

// alpha for output column j: int8 rows carry their scale.
static inline __attribute__((always_inline)) float
alpha_at(float alpha, const float *scale, int kind, int j) {
    return kind == W_I8 ? alpha * scale[j] : alpha;
}

static inline __attribute__((always_inline)) void
store(int M, int j, const float *acc, float *c, ptrdiff_t ldc, float alpha, float beta) {
    for (int i = 0; i < M; i++) {
        float *out = c + i * ldc + j;
        *out = beta == 0.0f ? alpha * acc[i] : alpha * acc[i] + beta * *out;  // beta 0: C may be garbage
    }
}

static inline __attribute__((always_inline)) void
rows_generic(int M, int k, const float *a, ptrdiff_t lda, const void *wr, int kind, float *acc) {
    for (int i = 0; i < M; i++) {
        float s = 0.0f;
        for (int t = 0; t < k; t++) s += a[i * lda + t] * w_at(wr, kind, t);
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
w_load8(const void *wr, int kind, int t) {
    if (kind == W_F32) return _mm256_loadu_ps((const float *)wr + t);
    if (kind == W_I8) return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)wr + t))));
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)wr + t));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// One weight row against M rows of A; M is a compile-time constant at every call site,
// so the accumulators live in registers. Two accumulators per row when M is small, to
// keep enough independent FMA chains in flight.
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
rows_avx2(const int M, int k, const float *a, ptrdiff_t lda, const void *wr, int kind, float *out) {
    __m256 acc0[8], acc1[8];
    for (int i = 0; i < M; i++) { acc0[i] = _mm256_setzero_ps(); acc1[i] = _mm256_setzero_ps(); }
    int t = 0;
    // 2·M accumulators fit the 16 ymm registers only for M ≤ 4 (with W and A loads beside them).
    if (M <= 4) {
        for (; t + 16 <= k; t += 16) {
            __m256 w0 = w_load8(wr, kind, t), w1 = w_load8(wr, kind, t + 8);
            for (int i = 0; i < M; i++) {
                acc0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i * lda + t), w0, acc0[i]);
                acc1[i] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i * lda + t + 8), w1, acc1[i]);
            }
        }
    }
    for (; t + 8 <= k; t += 8) {
        __m256 w0 = w_load8(wr, kind, t);
        for (int i = 0; i < M; i++) acc0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i * lda + t), w0, acc0[i]);
    }
    for (int i = 0; i < M; i++) {
        float s = hsum256(_mm256_add_ps(acc0[i], acc1[i]));
        for (int r = t; r < k; r++) s += a[i * lda + r] * w_at(wr, kind, r);
        out[i] = s;
    }
}

// The same with 16 lanes and 32 registers (AVX-512F): two accumulators per row for every M ≤ 8,
// and half the instructions per weight.
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) __m512
w_load16(const void *wr, int kind, int t) {
    if (kind == W_F32) return _mm512_loadu_ps((const float *)wr + t);
    if (kind == W_I8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)wr + t))));
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)wr + t));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
rows_avx512(const int M, int k, const float *a, ptrdiff_t lda, const void *wr, int kind, float *out) {
    __m512 acc0[8], acc1[8];
    for (int i = 0; i < M; i++) { acc0[i] = _mm512_setzero_ps(); acc1[i] = _mm512_setzero_ps(); }
    int t = 0;
    for (; t + 32 <= k; t += 32) {
        if (M > 1) PREFETCH_W(wr, kind, t, 32);
        __m512 w0 = w_load16(wr, kind, t), w1 = w_load16(wr, kind, t + 16);
        for (int i = 0; i < M; i++) {
            acc0[i] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i * lda + t), w0, acc0[i]);
            acc1[i] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i * lda + t + 16), w1, acc1[i]);
        }
    }
    for (; t + 16 <= k; t += 16) {
        __m512 w0 = w_load16(wr, kind, t);
        for (int i = 0; i < M; i++) acc0[i] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i * lda + t), w0, acc0[i]);
    }
    for (int i = 0; i < M; i++) {
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0[i], acc1[i]));
        for (int r = t; r < k; r++) s += a[i * lda + r] * w_at(wr, kind, r);
        out[i] = s;
    }
}

// Two weight rows at once against M rows of A: each A vector loaded serves two FMAs, so a
// batch reads A from cache half as often (A of 8 rows × 1536 floats fills a 48 KB L1).
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
rows2_avx512(const int M, int k, const float *a, ptrdiff_t lda, const void *wr0, const void *wr1, int kind,
             float *out0, float *out1) {
    __m512 p[8], q[8];
    for (int i = 0; i < M; i++) { p[i] = _mm512_setzero_ps(); q[i] = _mm512_setzero_ps(); }
    int t = 0;
    for (; t + 16 <= k; t += 16) {
        PREFETCH_W(wr0, kind, t, 16);
        PREFETCH_W(wr1, kind, t, 16);
        __m512 w0 = w_load16(wr0, kind, t), w1 = w_load16(wr1, kind, t);
        for (int i = 0; i < M; i++) {
            __m512 x = _mm512_loadu_ps(a + i * lda + t);
            p[i] = _mm512_fmadd_ps(x, w0, p[i]);
            q[i] = _mm512_fmadd_ps(x, w1, q[i]);
        }
    }
    for (int i = 0; i < M; i++) {
        float s0 = _mm512_reduce_add_ps(p[i]), s1 = _mm512_reduce_add_ps(q[i]);
        for (int r = t; r < k; r++) {
            s0 += a[i * lda + r] * w_at(wr0, kind, r);
            s1 += a[i * lda + r] * w_at(wr1, kind, r);
        }
        out0[i] = s0; out1[i] = s1;
    }
}

#define ONE_ROW(ROWS_FN, MM) { \
    ROWS_FN(MM, k, a, lda, w_row(w, kind, j, k), kind, acc); \
    store(MM, j, acc, c, ldc, alpha_at(alpha, scale, kind, j), beta); }

// M ≥ 4: pairs of weight rows (2·M accumulators keep enough FMA chains in flight); fewer
// rows are bound by reading W and keep one row with two accumulators.
#define ROWS_AVX512_CASE(MM) case MM: { \
    int j = n0; \
    if (MM >= 4) for (; j + 1 < n1; j += 2) { \
        rows2_avx512(MM, k, a, lda, w_row(w, kind, j, k), w_row(w, kind, j + 1, k), kind, acc, acc2); \
        store(MM, j, acc, c, ldc, alpha_at(alpha, scale, kind, j), beta); \
        store(MM, j + 1, acc2, c, ldc, alpha_at(alpha, scale, kind, j + 1), beta); } \
    for (; j < n1; j++) ONE_ROW(rows_avx512, MM) \
    } break;

#define ROWS_AVX2_CASE(MM) case MM: for (int j = n0; j < n1; j++) ONE_ROW(rows_avx2, MM) break;

#define KERNEL_ARGS int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const void *w, \
    const float *scale, float *c, ptrdiff_t ldc, float alpha, float beta
#define KERNEL_PASS m, n0, n1, k, a, lda, w, scale, c, ldc, alpha, beta

__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
gemm_rows_avx2(KERNEL_ARGS, int kind) {
    float acc[8];
    switch (m) {
        ROWS_AVX2_CASE(1) ROWS_AVX2_CASE(2) ROWS_AVX2_CASE(3) ROWS_AVX2_CASE(4)
        ROWS_AVX2_CASE(5) ROWS_AVX2_CASE(6) ROWS_AVX2_CASE(7) ROWS_AVX2_CASE(8)
        default: break;
    }
}

__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
gemm_rows_avx512(KERNEL_ARGS, int kind) {
    float acc[8], acc2[8];
    switch (m) {
        ROWS_AVX512_CASE(1) ROWS_AVX512_CASE(2) ROWS_AVX512_CASE(3) ROWS_AVX512_CASE(4)
        ROWS_AVX512_CASE(5) ROWS_AVX512_CASE(6) ROWS_AVX512_CASE(7) ROWS_AVX512_CASE(8)
        default: break;
    }
}

// One out-of-line function per (ISA, kind), so each inlines a fully specialised body.
__attribute__((target("avx2,fma"))) static void avx2_f32(KERNEL_ARGS) { gemm_rows_avx2(KERNEL_PASS, W_F32); }
__attribute__((target("avx2,fma"))) static void avx2_bf16(KERNEL_ARGS) { gemm_rows_avx2(KERNEL_PASS, W_BF16); }
__attribute__((target("avx2,fma"))) static void avx2_i8(KERNEL_ARGS) { gemm_rows_avx2(KERNEL_PASS, W_I8); }
__attribute__((target("avx512f"))) static void avx512_f32(KERNEL_ARGS) { gemm_rows_avx512(KERNEL_PASS, W_F32); }
__attribute__((target("avx512f"))) static void avx512_bf16(KERNEL_ARGS) { gemm_rows_avx512(KERNEL_PASS, W_BF16); }
__attribute__((target("avx512f"))) static void avx512_i8(KERNEL_ARGS) { gemm_rows_avx512(KERNEL_PASS, W_I8); }
#endif

static void gemm_rows_generic(KERNEL_ARGS, int kind) {
    float acc[8];
    for (int j = n0; j < n1; j++) {
        rows_generic(m, k, a, lda, w_row(w, kind, j, k), kind, acc);
        store(m, j, acc, c, ldc, alpha_at(alpha, scale, kind, j), beta);
    }
}

// 0 generic, 1 AVX2+FMA, 2 AVX-512F: the best the CPU has, unless lowered (tests, comparisons).
static int isa_best = -1, isa_limit = 2;
static int small_gemm_isa(void) {
    if (isa_best < 0) {
#if defined(__x86_64__)
        __builtin_cpu_init();
        isa_best = __builtin_cpu_supports("avx512f") ? 2 : ck_uses_avx2() ? 1 : 0;
#else
        isa_best = 0;
#endif
    }
    return isa_best < isa_limit ? isa_best : isa_limit;
}
int ck_small_gemm_isa(int limit) {
    if (limit >= 0) isa_limit = limit;
    return small_gemm_isa();
}

static void gemm_small_m(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const void *w,
                         const float *scale, int kind, float *c, ptrdiff_t ldc, float alpha, float beta) {
    // Blocks of 8 rows: each block reads W once.
    for (int i0 = 0; i0 < m; i0 += 8) {
        int rows = m - i0 < 8 ? m - i0 : 8;
        const float *ab = a + (size_t)i0 * lda;
        float *cb = c + (size_t)i0 * ldc;
#if defined(__x86_64__)
        static void (*const kernels[2][3])(KERNEL_ARGS) = {
            { avx2_f32, avx2_bf16, avx2_i8 }, { avx512_f32, avx512_bf16, avx512_i8 } };
        int isa = small_gemm_isa();
        if (isa >= 1) { kernels[isa - 1][kind](rows, n0, n1, k, ab, lda, w, scale, cb, ldc, alpha, beta); continue; }
#endif
        gemm_rows_generic(rows, n0, n1, k, ab, lda, w, scale, cb, ldc, alpha, beta, kind);
    }
}

void ck_gemm_small_m(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const float *w,
                     float *c, ptrdiff_t ldc, float alpha, float beta) {
    gemm_small_m(m, n0, n1, k, a, lda, w, NULL, W_F32, c, ldc, alpha, beta);
}

void ck_gemm_small_m_bf16(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const uint16_t *w,
                          float *c, ptrdiff_t ldc, float alpha, float beta) {
    gemm_small_m(m, n0, n1, k, a, lda, w, NULL, W_BF16, c, ldc, alpha, beta);
}

void ck_gemm_small_m_i8(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const int8_t *w,
                        const float *scale, float *c, ptrdiff_t ldc, float alpha, float beta) {
    gemm_small_m(m, n0, n1, k, a, lda, w, scale, W_I8, c, ldc, alpha, beta);
}

// ---- int8 weights × int8 activations (W8A8) ----------------------------------------------
//
// Weight-only int8 still multiplies in f32: every weight is widened and then FMA'd once per
// row of A, so a batch-8 step is bound by those instructions, not by memory. Quantizing the
// rows of A too (one absmax scale per row, recomputed on every call: "dynamic", as
// CTranslate2's int8) lets AVX-512 VNNI multiply 64 weights per instruction (vpdpbusd:
// u8 × s8, four products summed into each s32 lane). The sums are integers, so they are
// exact: the VNNI and the generic path give bit-identical results.
//
// vpdpbusd wants one unsigned operand, so A is stored shifted, u = x + 128, and
// Σ x·w = Σ u·w − 128 · Σ w; Σ w comes from the same instruction against a vector of ones.

/// x ≈ sx · q with q ∈ [−127, 127], stored as q + 128.
static void quantize_rows(int m, int k, const float *a, ptrdiff_t lda, uint8_t *xq, float *sx) {
    for (int i = 0; i < m; i++) {
        const float *row = a + (size_t)i * lda;
        float largest = 0.0f;
        for (int t = 0; t < k; t++) { float v = row[t] < 0 ? -row[t] : row[t]; if (v > largest) largest = v; }
        float scale = largest > 0.0f ? largest / 127.0f : 1.0f, inverse = 1.0f / scale;
        for (int t = 0; t < k; t++) {
            float v = __builtin_nearbyintf(row[t] * inverse);   // to nearest, ties to even
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v == v ? v : 0.0f;   // NaN: 0, as Int8Weights
            xq[(size_t)i * k + t] = (uint8_t)((int)v + 128);
        }
        sx[i] = scale;
    }
}

/// One output: the exact integer sum back to f32 (the same expression on every path).
static inline __attribute__((always_inline)) void
store_i8a8(float *out, int32_t sum, float sx, float sw, float alpha, float beta) {
    float y = alpha * (sw * (sx * (float)sum));
    if (beta == 0.0f) { *out = y; return; }
    float old = beta * *out;   // its own statement: never contracted into an FMA on one path only
    *out = y + old;
}

static void i8a8_generic(int m, int n0, int n1, int k, const uint8_t *xq, const float *sx, const int8_t *w,
                         const float *scale, float *c, ptrdiff_t ldc, float alpha, float beta) {
    for (int j = n0; j < n1; j++) {
        const int8_t *wr = w + (size_t)j * k;
        for (int i = 0; i < m; i++) {
            int32_t sum = 0;
            for (int t = 0; t < k; t++) sum += ((int32_t)xq[(size_t)i * k + t] - 128) * wr[t];
            store_i8a8(c + i * ldc + j, sum, sx[i], scale[j], alpha, beta);
        }
    }
}

#if defined(__x86_64__)
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
VNNI_TARGET static inline __attribute__((always_inline)) void
i8a8_rows_vnni(const int M, int k, const uint8_t *xq, const int8_t *wr, int32_t *sums) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i acc[8], wsum = _mm512_setzero_si512();
    for (int i = 0; i < M; i++) acc[i] = _mm512_setzero_si512();
    int t = 0;
    for (; t + 64 <= k; t += 64) {
        if (M > 1) __builtin_prefetch(wr + t + PREFETCH_BYTES, 0, 3);
        __m512i wv = _mm512_loadu_si512((const void *)(wr + t));
        wsum = _mm512_dpbusd_epi32(wsum, ones, wv);
        for (int i = 0; i < M; i++)
            acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_loadu_si512((const void *)(xq + (size_t)i * k + t)), wv);
    }
    if (t < k) {  // the last k % 64 columns: masked-off bytes load as 0 and add nothing
        __mmask64 mask = ~0ULL >> (64 - (k - t));
        __m512i wv = _mm512_maskz_loadu_epi8(mask, wr + t);
        wsum = _mm512_dpbusd_epi32(wsum, ones, wv);
        for (int i = 0; i < M; i++)
            acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_maskz_loadu_epi8(mask, xq + (size_t)i * k + t), wv);
    }
    int32_t correction = 128 * _mm512_reduce_add_epi32(wsum);
    for (int i = 0; i < M; i++) sums[i] = _mm512_reduce_add_epi32(acc[i]) - correction;
}

// One case of a row-count switch: ROWS(MM, k, X, weight row, sums) sums MM rows of the
// quantized A (X) against each weight row, then every sum is stored (VNNI and AVX2 alike).
#define I8A8_CASE(MM, ROWS, X) case MM: for (int j = n0; j < n1; j++) { \
    ROWS(MM, k, X, w + (size_t)j * k, sums); \
    for (int i = 0; i < MM; i++) store_i8a8(c + i * ldc + j, sums[i], sx[i], scale[j], alpha, beta); \
    } break;
#define I8A8_SWITCH(ROWS, X) switch (m) { \
    I8A8_CASE(1, ROWS, X) I8A8_CASE(2, ROWS, X) I8A8_CASE(3, ROWS, X) I8A8_CASE(4, ROWS, X) \
    I8A8_CASE(5, ROWS, X) I8A8_CASE(6, ROWS, X) I8A8_CASE(7, ROWS, X) I8A8_CASE(8, ROWS, X) \
    default: break; }

VNNI_TARGET static void i8a8_vnni(int m, int n0, int n1, int k, const uint8_t *xq, const float *sx, const int8_t *w,
                                  const float *scale, float *c, ptrdiff_t ldc, float alpha, float beta) {
    int32_t sums[8];
    I8A8_SWITCH(i8a8_rows_vnni, xq)
}
#endif

#if defined(__x86_64__)
// AVX2 without VNNI: A widened once per block to int16 (x = u − 128), then vpmaddwd multiplies
// 16 pairs per instruction into int32 lanes. Exact, like the other paths (|x·w| ≤ 127², a pair
// sum fits easily), so the bits are the same; twice the products per instruction of f32 FMA.
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
i8a8_rows_avx2(const int M, int k, const int16_t *x16, const int8_t *wr, int32_t *sums) {
    __m256i acc[8];
    for (int i = 0; i < M; i++) acc[i] = _mm256_setzero_si256();
    int t = 0;
    for (; t + 16 <= k; t += 16) {
        __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wr + t)));
        for (int i = 0; i < M; i++)
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(x16 + (size_t)i * k + t)), wv));
    }
    for (int i = 0; i < M; i++) {
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(acc[i]), _mm256_extracti128_si256(acc[i], 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        int32_t sum = _mm_cvtsi128_si32(s4);
        for (int u = t; u < k; u++) sum += (int32_t)x16[(size_t)i * k + u] * wr[u];
        sums[i] = sum;
    }
}

__attribute__((target("avx2,fma"))) static void i8a8_avx2(int m, int n0, int n1, int k, const uint8_t *xq,
        int16_t *x16, const float *sx, const int8_t *w, const float *scale, float *c, ptrdiff_t ldc,
        float alpha, float beta) {
    for (size_t t = 0; t < (size_t)m * k; t++) x16[t] = (int16_t)((int)xq[t] - 128);
    int32_t sums[8];
    I8A8_SWITCH(i8a8_rows_avx2, x16)
}
#endif

static int has_vnni = -1;
int ck_i8a8_uses_vnni(void) {
    if (has_vnni < 0) {
#if defined(__x86_64__)
        __builtin_cpu_init();
        has_vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") ? 1 : 0;
#else
        has_vnni = 0;
#endif
    }
    return has_vnni && small_gemm_isa() >= 2;
}

int ck_gemm_small_m_i8a8(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const int8_t *w,
                         const float *scale, float *c, ptrdiff_t ldc, float alpha, float beta) {
    if (k <= 0 || k > 65536) return 0;   // Σ u·w must fit an int32
    int vnni = ck_i8a8_uses_vnni(), avx2 = !vnni && small_gemm_isa() >= 1;
    uint8_t *xq = malloc((size_t)8 * k);
    int16_t *x16 = avx2 ? malloc((size_t)8 * k * sizeof(int16_t)) : NULL;
    if (!xq || (avx2 && !x16)) { free(xq); free(x16); return 0; }
    float sx[8];
    for (int i0 = 0; i0 < m; i0 += 8) {
        int rows = m - i0 < 8 ? m - i0 : 8;
        quantize_rows(rows, k, a + (size_t)i0 * lda, lda, xq, sx);
        float *cb = c + (size_t)i0 * ldc;
#if defined(__x86_64__)
        if (vnni) { i8a8_vnni(rows, n0, n1, k, xq, sx, w, scale, cb, ldc, alpha, beta); continue; }
        if (avx2) { i8a8_avx2(rows, n0, n1, k, xq, x16, sx, w, scale, cb, ldc, alpha, beta); continue; }
#endif
        i8a8_generic(rows, n0, n1, k, xq, sx, w, scale, cb, ldc, alpha, beta);
    }
    free(xq);
    free(x16);
    return 1;
}

// ---- Weights to int8 at load --------------------------------------------------------------
//
// One absmax scale per row over the finite values, q = round(w / scale) to nearest, ties to
// even, clamped to ±127, NaN to 0. Division, not a multiply by the inverse: the definition
// `Int8Weights.quantizeReference` spells, bit for bit. AVX2 only makes loading faster.

/// The largest finite |row[t]| for t in [t0, k), or `largest` if none is larger.
static inline __attribute__((always_inline)) float largest_finite(const float *row, int t0, int k, float largest) {
    for (int t = t0; t < k; t++) {
        float v = row[t] < 0 ? -row[t] : row[t];
        if (v < __builtin_inff() && v > largest) largest = v;
    }
    return largest;
}

static inline __attribute__((always_inline)) void quantize_weights_tail(const float *row, int t0, int k, float scale,
                                                                        int8_t *out) {
    for (int t = t0; t < k; t++) {
        float v = __builtin_nearbyintf(row[t] / scale);
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v == v ? v : 0.0f;
        out[t] = (int8_t)v;
    }
}

static inline __attribute__((always_inline)) float weight_scale(float largest) {
    return largest > 0.0f ? largest / 127.0f : 1.0f;
}

static void quantize_weights_generic(const float *w, int rows, int k, int8_t *q, float *scales) {
    for (int j = 0; j < rows; j++) {
        const float *row = w + (size_t)j * k;
        scales[j] = weight_scale(largest_finite(row, 0, k, 0.0f));
        quantize_weights_tail(row, 0, k, scales[j], q + (size_t)j * k);
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void quantize_weights_avx2(const float *w, int rows, int k, int8_t *q,
                                                                      float *scales) {
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 inf = _mm256_set1_ps(__builtin_inff());
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    for (int j = 0; j < rows; j++) {
        const float *row = w + (size_t)j * k;
        int8_t *out = q + (size_t)j * k;
        __m256 best = _mm256_setzero_ps();
        int t = 0;
        for (; t + 8 <= k; t += 8) {
            __m256 a = _mm256_and_ps(_mm256_loadu_ps(row + t), absMask);
            a = _mm256_and_ps(a, _mm256_cmp_ps(a, inf, _CMP_LT_OQ));   // NaN and ±inf: 0
            best = _mm256_max_ps(best, a);
        }
        float lanes[8], largest = 0.0f;
        _mm256_storeu_ps(lanes, best);
        for (int l = 0; l < 8; l++) if (lanes[l] > largest) largest = lanes[l];
        float scale = weight_scale(largest_finite(row, t, k, largest));
        scales[j] = scale;
        const __m256 sv = _mm256_set1_ps(scale);
        for (t = 0; t + 8 <= k; t += 8) {
            __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(row + t), sv),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));   // NaN: 0
            v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            __m256i i32 = _mm256_cvtps_epi32(v);
            __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
            _mm_storel_epi64((__m128i *)(out + t), _mm_packs_epi16(words, words));
        }
        quantize_weights_tail(row, t, k, scale, out);
    }
}
#endif

void ck_quantize_weights_i8(const float *w, int rows, int k, int8_t *q, float *scales) {
#if defined(__x86_64__)
    if (small_gemm_isa() >= 1) { quantize_weights_avx2(w, rows, k, q, scales); return; }
#endif
    quantize_weights_generic(w, rows, k, q, scales);
}

// ---- Many rows of W8A8 (prefill, the T5 encoder): quantize here, multiply in oneDNN --------
//
// oneDNN's u8 × s8 GEMM on AVX2 without VNNI multiplies byte pairs into int16 with saturation
// (vpmaddubsw), so u8 values up to 255 against weights of ±127 can saturate; values up to 127
// cannot (2 · 127 · 127 < 32767). The rows are therefore quantized to 7 bits, q ∈ [−63, 63],
// stored as q + 64 and multiplied with an A offset of 64: the sums are exact integers on every
// CPU, as FBGEMM's "reduce_range" does for the same reason.

static inline __attribute__((always_inline)) void quantize_u7_row_tail(const float *row, int t0, int k, float inverse,
                                                                       uint8_t *out) {
    for (int t = t0; t < k; t++) {
        float v = __builtin_nearbyintf(row[t] * inverse);   // to nearest, ties to even
        v = v > 63.0f ? 63.0f : v < -63.0f ? -63.0f : v == v ? v : 0.0f;   // NaN: 0
        out[t] = (uint8_t)((int)v + 64);
    }
}

static inline __attribute__((always_inline)) float u7_scale(float largest) {
    return largest > 0.0f && largest < __builtin_inff() ? largest / 63.0f : 1.0f;
}

static void quantize_u7_generic(int m, int k, const float *a, ptrdiff_t lda, uint8_t *xq, float *sx) {
    for (int i = 0; i < m; i++) {
        const float *row = a + (size_t)i * lda;
        float largest = 0.0f;
        for (int t = 0; t < k; t++) { float v = row[t] < 0 ? -row[t] : row[t]; if (v > largest) largest = v; }
        float scale = u7_scale(largest);
        quantize_u7_row_tail(row, 0, k, 1.0f / scale, xq + (size_t)i * k);
        sx[i] = scale;
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void quantize_u7_avx2(int m, int k, const float *a, ptrdiff_t lda,
                                                                 uint8_t *xq, float *sx) {
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 hi = _mm256_set1_ps(63.0f), lo = _mm256_set1_ps(-63.0f);
    const __m256i offset = _mm256_set1_epi32(64);
    for (int i = 0; i < m; i++) {
        const float *row = a + (size_t)i * lda;
        uint8_t *out = xq + (size_t)i * k;
        __m256 best = _mm256_setzero_ps();
        int t = 0;
        // max_ps(x, best) returns best when x is NaN: a NaN never becomes the scale.
        for (; t + 8 <= k; t += 8) best = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(row + t), absMask), best);
        float lanes[8], largest = 0.0f;
        _mm256_storeu_ps(lanes, best);
        for (int l = 0; l < 8; l++) if (lanes[l] > largest) largest = lanes[l];
        for (int u = t; u < k; u++) { float v = row[u] < 0 ? -row[u] : row[u]; if (v > largest) largest = v; }
        float scale = u7_scale(largest), inverse = 1.0f / scale;
        const __m256 inv = _mm256_set1_ps(inverse);
        for (t = 0; t + 8 <= k; t += 8) {
            __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(row + t), inv),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));   // NaN: 0
            v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), offset);
            __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            _mm_storel_epi64((__m128i *)(out + t), _mm_packus_epi16(words, words));
        }
        quantize_u7_row_tail(row, t, k, inverse, out);
        sx[i] = scale;
    }
}
#endif

void ck_quantize_rows_u7(int m, int k, const float *a, ptrdiff_t lda, uint8_t *xq, float *sx) {
#if defined(__x86_64__)
    if (small_gemm_isa() >= 1) { quantize_u7_avx2(m, k, a, lda, xq, sx); return; }
#endif
    quantize_u7_generic(m, k, a, lda, xq, sx);
}

static inline __attribute__((always_inline)) void dequantize_sums_body(int m, int n, const int32_t *sums,
        const float *sx, const float *sw, float *c, ptrdiff_t ldc, float alpha, float beta) {
    for (int i = 0; i < m; i++) {
        const int32_t *row = sums + (size_t)i * n;
        float *out = c + (size_t)i * ldc, rowScale = sx[i];
        if (beta == 0.0f) {
            for (int j = 0; j < n; j++) out[j] = alpha * (sw[j] * (rowScale * (float)row[j]));
        } else {
            for (int j = 0; j < n; j++) {
                float y = alpha * (sw[j] * (rowScale * (float)row[j]));
                float old = beta * out[j];   // as store_i8a8: never contracted into an FMA
                out[j] = y + old;
            }
        }
    }
}
static void dequantize_sums_generic(int m, int n, const int32_t *sums, const float *sx, const float *sw, float *c,
                                    ptrdiff_t ldc, float alpha, float beta) {
    dequantize_sums_body(m, n, sums, sx, sw, c, ldc, alpha, beta);
}
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void dequantize_sums_avx2(int m, int n, const int32_t *sums,
        const float *sx, const float *sw, float *c, ptrdiff_t ldc, float alpha, float beta) {
    dequantize_sums_body(m, n, sums, sx, sw, c, ldc, alpha, beta);
}
#endif

void ck_dequantize_sums(int m, int n, const int32_t *sums, const float *sx, const float *sw, float *c,
                        ptrdiff_t ldc, float alpha, float beta) {
#if defined(__x86_64__)
    if (small_gemm_isa() >= 1) { dequantize_sums_avx2(m, n, sums, sx, sw, c, ldc, alpha, beta); return; }
#endif
    dequantize_sums_generic(m, n, sums, sx, sw, c, ldc, alpha, beta);
}

static inline __attribute__((always_inline)) void widen_body(const uint16_t *src, float *dst, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) {
        union { uint32_t u; float f; } v = { .u = (uint32_t)src[i] << 16 };
        dst[i] = v.f;
    }
}
static inline __attribute__((always_inline)) void dequantize_body(const int8_t *q, const float *scale, float *dst,
                                                                  int rows, int k) {
    for (int j = 0; j < rows; j++)
        for (int t = 0; t < k; t++) dst[(size_t)j * k + t] = (float)q[(size_t)j * k + t] * scale[j];
}
static void widen_generic(const uint16_t *src, float *dst, ptrdiff_t count) { widen_body(src, dst, count); }
static void dequantize_generic(const int8_t *q, const float *scale, float *dst, int rows, int k) {
    dequantize_body(q, scale, dst, rows, k);
}
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void widen_avx2(const uint16_t *src, float *dst, ptrdiff_t count) {
    widen_body(src, dst, count);
}
__attribute__((target("avx2,fma"))) static void dequantize_avx2(const int8_t *q, const float *scale, float *dst,
                                                                int rows, int k) {
    dequantize_body(q, scale, dst, rows, k);
}
#endif

void ck_bf16_to_f32(const uint16_t *src, float *dst, ptrdiff_t count) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { widen_avx2(src, dst, count); return; }
#endif
    widen_generic(src, dst, count);
}

void ck_i8_to_f32(const int8_t *q, const float *scale, float *dst, int rows, int k) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { dequantize_avx2(q, scale, dst, rows, k); return; }
#endif
    dequantize_generic(q, scale, dst, rows, k);
}
