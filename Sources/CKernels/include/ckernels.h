#ifndef CKERNELS_H
#define CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Selective scan (Mamba-1 S6) for channels [c0, c1); see Sources/Kernels/SelectiveScan.swift for
/// the maths and the layout (token-major inputs with row strides, state [channels x n]).
/// delta_bias, d and z may be NULL.
void ck_selective_scan(
    const float *u, ptrdiff_t u_stride,
    const float *delta, ptrdiff_t delta_stride, const float *delta_bias,
    const float *a,
    const float *b, ptrdiff_t b_stride,
    const float *c, ptrdiff_t c_stride,
    const float *d,
    const float *z, ptrdiff_t z_stride,
    float *state, float *y, ptrdiff_t y_stride,
    int steps, int channels, int n, int c0, int c1);

/// x <- x * sigmoid(x) over count floats (vectorised exp).
void ck_silu_inplace(float *x, ptrdiff_t count);

/// x <- e^x over count floats (Cephes polynomial, about 1 ulp; below -87.3 gives 0).
void ck_exp_inplace(float *x, ptrdiff_t count);

/// Softmax of one row in place, max-subtracted; a row of all -inf becomes zeros.
void ck_softmax_inplace(float *x, ptrdiff_t count);

/// C[i, j] = alpha * sum_t A[i, t] * W[j, t] + beta * C[i, j] for rows i < m and output
/// columns j in [n0, n1): W is [n x k] row-major (a Linear weight), A has row stride lda,
/// C row stride ldc. For small m (decode batches): W is read once per 8 rows of A.
/// beta == 0 never reads C.
void ck_gemm_small_m(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const float *w,
                     float *c, ptrdiff_t ldc, float alpha, float beta);

/// ck_gemm_small_m with W stored as bfloat16 (the top 16 bits of each f32): half the bytes
/// read per decode step; A, the sums and C stay f32, and widening bf16 is exact.
void ck_gemm_small_m_bf16(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const uint16_t *w,
                          float *c, ptrdiff_t ldc, float alpha, float beta);

/// The instruction set the small-batch kernels use: 0 generic C, 1 AVX2+FMA, 2 AVX-512F (the
/// best the CPU has). `limit` ≥ 0 caps it for the rest of the process (tests cover every path;
/// benchmarks compare them); -1 only reports.
int ck_small_gemm_isa(int limit);

/// ck_gemm_small_m with W quantized to int8, row j standing for q[j, :] · scale[j]
/// (weight-only quantization: A, the sums and C stay f32).
void ck_gemm_small_m_i8(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const int8_t *w,
                        const float *scale, float *c, ptrdiff_t ldc, float alpha, float beta);

/// ck_gemm_small_m with int8 W (as ck_gemm_small_m_i8) and A quantized to int8 as well, one
/// absmax scale per row of A, recomputed on every call (W8A8, dynamic). The products are
/// summed in int32, exactly, with AVX-512 VNNI when the CPU has it (and the ISA cap allows),
/// else with AVX2 (vpmaddwd on A widened to int16), else in C: all give the same bits.
/// Returns 0, computing nothing, when k > 65536 (the int32 sums could overflow) or scratch
/// memory is short.
int ck_gemm_small_m_i8a8(int m, int n0, int n1, int k, const float *a, ptrdiff_t lda, const int8_t *w,
                         const float *scale, float *c, ptrdiff_t ldc, float alpha, float beta);

/// 1 when ck_gemm_small_m_i8a8 uses AVX-512 VNNI.
int ck_i8a8_uses_vnni(void);

/// Weights to int8, one absmax scale per row over the finite values (1 for a row with
/// none), q = round(w / scale) ∈ [−127, 127], ties to even, NaN to 0. The AVX2 and C paths
/// (the small-batch ISA cap chooses) give the same bytes.
void ck_quantize_weights_i8(const float *w, int rows, int k, int8_t *q, float *scales);

/// Rows of A quantized for an integer GEMM of many rows: one absmax scale per row,
/// q = round(x / scale) ∈ [−63, 63] (7 bits: no int16 saturation in u8 × s8 multiplies on
/// AVX2), stored as q + 64 in xq [m × k]; NaN becomes 0. sx[i] = scale (1 for a zero row).
/// The AVX2 and C paths give the same bytes.
void ck_quantize_rows_u7(int m, int k, const float *a, ptrdiff_t lda, uint8_t *xq, float *sx);

/// c[i, j] = alpha · sw[j] · sx[i] · sums[i, j] (+ beta · c[i, j]): exact int32 sums [m × n]
/// back to f32, the same expression as the small-batch W8A8 kernel.
void ck_dequantize_sums(int m, int n, const int32_t *sums, const float *sx, const float *sw, float *c,
                        ptrdiff_t ldc, float alpha, float beta);

/// dst[i] = src[i] widened from bfloat16 to f32 (exact).
void ck_bf16_to_f32(const uint16_t *src, float *dst, ptrdiff_t count);

/// dst[j, t] = q[j, t] · scale[j] for `rows` rows of k (int8 weights back to f32).
void ck_i8_to_f32(const int8_t *q, const float *scale, float *dst, int rows, int k);

/// 1 when the AVX2+FMA variant is in use (for benchmarks' reports).
int ck_uses_avx2(void);
#endif
