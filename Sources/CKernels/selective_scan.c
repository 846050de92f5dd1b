// The selective scan, vectorised across channels: LANES channels at a time, each lane one
// channel, so there is no cross-lane reduction and the order of every float operation per
// channel is the reference's (h = exp(A*dt)*h + (dt*B)*u; y = sum_s h_s*C_s in order s = 0..n-1).
// exp is a Cephes-style polynomial (about 1 ulp) that the compiler can vectorise, unlike libm.
// The same body is compiled twice: for AVX2+FMA (chosen at run time when the CPU has it) and
// for the baseline ISA, so one binary runs everywhere (no -march=native: the binary is built once
// and installed on hosts with other CPUs).
// A single token (decode) takes `step_body` instead, vectorised over the state.
#include "ckernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LANES 8
#define MAXN 256

static inline __attribute__((always_inline)) float ck_expf(float x) {
    // exp(x) = 2^k * exp(r), r = x - k*ln2 in [-ln2/2, ln2/2]. Branch-free so loops vectorise;
    // below the smallest normal the result is flushed to 0 (a fully decayed state).
    float xc = x < -87.33654f ? -87.33654f : (x > 88.72283f ? 88.72283f : x);
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   // round to nearest even
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.33654f ? 0.0f : p * scale;
}

// log(x) for positive normal x (Cephes logf, ~1 ulp), branch-free so it vectorises.
static inline __attribute__((always_inline)) float ck_logf(float x) {
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float e = (float)(((bits >> 23) & 0xff) - 126);
    bits = (bits & 0x807fffff) | 0x3f000000;              // mantissa in [0.5, 1)
    float m;
    memcpy(&m, &bits, sizeof m);
    int small = m < 0.707106781186547524f;
    e = small ? e - 1.0f : e;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return m + y + 0.693359375f * e;
}

// softplus as torch (beta 1, threshold 20): log1p(exp(x)), with log1p(v) = log(1+v)·v/((1+v)−1)
// (Goldberg's trick keeps log1p's accuracy for small v without a libm call).
static inline __attribute__((always_inline)) float ck_softplus(float x) {
    float v = ck_expf(x < 20.0f ? x : 20.0f);
    float u = 1.0f + v;
    float d = u - 1.0f;
    float l = d == 0.0f ? v : ck_logf(u) * (v / d);
    return x > 20.0f ? x : l;
}

static inline __attribute__((always_inline)) float ck_silu(float x) {
    return x / (1.0f + ck_expf(-x));
}

static inline __attribute__((always_inline)) void scan_body(
    const float *u, ptrdiff_t u_stride, const float *delta, ptrdiff_t delta_stride, const float *delta_bias,
    const float *a, const float *b, ptrdiff_t b_stride, const float *c, ptrdiff_t c_stride,
    const float *d, const float *z, ptrdiff_t z_stride, float *state, float *y, ptrdiff_t y_stride,
    int steps, int channels, int n, int c0, int c1)
{
    (void)channels;
    float h[MAXN][LANES];     // the block's state, transposed so lanes are contiguous
    float at[MAXN][LANES];    // A, transposed likewise
    for (int cb = c0; cb < c1; cb += LANES) {
        int lanes = c1 - cb < LANES ? c1 - cb : LANES;
        for (int s = 0; s < n; s++)
            for (int l = 0; l < LANES; l++) {
                h[s][l] = l < lanes ? state[(size_t)(cb + l) * n + s] : 0.0f;
                at[s][l] = l < lanes ? a[(size_t)(cb + l) * n + s] : 0.0f;
            }
        float bias[LANES], dskip[LANES];
        for (int l = 0; l < LANES; l++) {
            bias[l] = (delta_bias && l < lanes) ? delta_bias[cb + l] : 0.0f;
            dskip[l] = (d && l < lanes) ? d[cb + l] : 0.0f;
        }
        for (int t = 0; t < steps; t++) {
            float dt[LANES], uu[LANES], acc[LANES], gate[LANES];
            const float *ut = u + t * u_stride + cb;
            const float *dl = delta + t * delta_stride + cb;
            for (int l = 0; l < LANES; l++) {
                float x = l < lanes ? dl[l] : 0.0f;
                dt[l] = ck_softplus(x + bias[l]);
                uu[l] = l < lanes ? ut[l] : 0.0f;
                acc[l] = 0.0f;
            }
            const float *bt = b + t * b_stride;
            const float *ct = c + t * c_stride;
            for (int s = 0; s < n; s++) {
                float bs = bt[s], cs = ct[s];
                for (int l = 0; l < LANES; l++) {
                    float hs = ck_expf(at[s][l] * dt[l]) * h[s][l] + (dt[l] * bs) * uu[l];
                    h[s][l] = hs;
                    acc[l] += hs * cs;
                }
            }
            float *yt = y + t * y_stride + cb;
            if (z) {
                const float *zt = z + t * z_stride + cb;
                for (int l = 0; l < LANES; l++) gate[l] = ck_silu(l < lanes ? zt[l] : 0.0f);
            } else {
                for (int l = 0; l < LANES; l++) gate[l] = 1.0f;
            }
            for (int l = 0; l < lanes; l++) yt[l] = (acc[l] + dskip[l] * uu[l]) * gate[l];
        }
        for (int s = 0; s < n; s++)
            for (int l = 0; l < lanes; l++) state[(size_t)(cb + l) * n + s] = h[s][l];
    }
}

// One token (a decode step): vectorised over the state instead, which is contiguous per channel.
// scan_body's transposition of the state and of A in and out of the lane layout costs more than
// the arithmetic of a single step (~18 % of a batch-8 Mamba step in perf). Every float
// operation per channel is the same as scan_body's, in the same order (the sum over s stays
// sequential), so a step equals a one-token scan bit for bit.
static inline __attribute__((always_inline)) void step_body(
    const float *u, const float *delta, const float *delta_bias, const float *a, const float *b,
    const float *c, const float *d, const float *z, float *state, float *y, int n, int c0, int c1)
{
    enum { CHUNK = 256 };
    float dts[CHUNK], gates[CHUNK];
    for (int cb = c0; cb < c1; cb += CHUNK) {
        int m = c1 - cb < CHUNK ? c1 - cb : CHUNK;
        for (int i = 0; i < m; i++) dts[i] = ck_softplus(delta[cb + i] + (delta_bias ? delta_bias[cb + i] : 0.0f));
        for (int i = 0; i < m; i++) gates[i] = z ? ck_silu(z[cb + i]) : 1.0f;
        // 16 channels at a time: update each channel's state (a vector over s), keeping a
        // transposed copy, then y = Σ_s h_s·C_s in order s = 0, 1, … with the 16 channels'
        // running sums side by side in one vector (sequential per channel, as the reference).
        for (int i0 = 0; i0 < m; i0 += 16) {
            int w = m - i0 < 16 ? m - i0 : 16;
            float ht[MAXN][16], acc[16];
            for (int i = 0; i < 16; i++) {
                if (i >= w) { for (int s = 0; s < n; s++) ht[s][i] = 0.0f; continue; }
                int ch = cb + i0 + i;
                float *h = state + (size_t)ch * n;
                const float *ar = a + (size_t)ch * n;
                float dt = dts[i0 + i], uu = u[ch];
                for (int s = 0; s < n; s++) h[s] = ck_expf(ar[s] * dt) * h[s] + (dt * b[s]) * uu;
                for (int s = 0; s < n; s++) ht[s][i] = h[s];
            }
            for (int i = 0; i < 16; i++) acc[i] = 0.0f;
            for (int s = 0; s < n; s++)
                for (int i = 0; i < 16; i++) acc[i] += ht[s][i] * c[s];
            for (int i = 0; i < w; i++) {
                int ch = cb + i0 + i;
                float uu = u[ch], dskip = d ? d[ch] : 0.0f;
                y[ch] = (acc[i] + dskip * uu) * gates[i0 + i];
            }
        }
    }
}
#define STEP_PASS u, delta, delta_bias, a, b, c, d, z, state, y, n, c0, c1

#define SCAN_ARGS const float *u, ptrdiff_t u_stride, const float *delta, ptrdiff_t delta_stride, \
    const float *delta_bias, const float *a, const float *b, ptrdiff_t b_stride, const float *c, \
    ptrdiff_t c_stride, const float *d, const float *z, ptrdiff_t z_stride, float *state, float *y, \
    ptrdiff_t y_stride, int steps, int channels, int n, int c0, int c1
#define SCAN_PASS u, u_stride, delta, delta_stride, delta_bias, a, b, b_stride, c, c_stride, d, z, \
    z_stride, state, y, y_stride, steps, channels, n, c0, c1

static void scan_generic(SCAN_ARGS) { scan_body(SCAN_PASS); }
static void step_generic(SCAN_ARGS) { (void)u_stride; (void)delta_stride; (void)b_stride; (void)c_stride;
    (void)z_stride; (void)y_stride; (void)steps; (void)channels; step_body(STEP_PASS); }

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void scan_avx2(SCAN_ARGS) { scan_body(SCAN_PASS); }
// 16 lanes hold a whole Mamba-1 state (n = 16): the step's state loop is one vector per channel.
__attribute__((target("avx512f"))) static void step_avx512(SCAN_ARGS) { (void)u_stride; (void)delta_stride;
    (void)b_stride; (void)c_stride; (void)z_stride; (void)y_stride; (void)steps; (void)channels; step_body(STEP_PASS); }
__attribute__((target("avx2,fma"))) static void step_avx2(SCAN_ARGS) { (void)u_stride; (void)delta_stride;
    (void)b_stride; (void)c_stride; (void)z_stride; (void)y_stride; (void)steps; (void)channels; step_body(STEP_PASS); }
static int avx512_state = -1;
static int uses_avx512(void) {
    if (avx512_state < 0) { __builtin_cpu_init(); avx512_state = __builtin_cpu_supports("avx512f") && ck_uses_avx2(); }
    return avx512_state;
}

static int avx2_state = -1;
int ck_uses_avx2(void) {
    if (avx2_state < 0) {
        __builtin_cpu_init();
        avx2_state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return avx2_state;
}
#else
int ck_uses_avx2(void) { return 0; }
#endif

static inline __attribute__((always_inline)) void silu_body(float *x, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) x[i] = ck_silu(x[i]);
}
static void silu_generic(float *x, ptrdiff_t count) { silu_body(x, count); }
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void silu_avx2(float *x, ptrdiff_t count) { silu_body(x, count); }
#endif
void ck_silu_inplace(float *x, ptrdiff_t count) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { silu_avx2(x, count); return; }
#endif
    silu_generic(x, count);
}

// e^x over an array, and softmax of one row: the one exp every kernel uses (ck_expf).
static inline __attribute__((always_inline)) void exp_body(float *x, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) x[i] = ck_expf(x[i]);
}

// Max-subtracted softmax. The sum runs in 16 partial sums (a fixed order, so the result does
// not depend on the ISA chosen) that the compiler keeps in vector registers.
static inline __attribute__((always_inline)) void softmax_body(float *x, ptrdiff_t count) {
    if (count <= 0) return;
    float m = -INFINITY;
    for (ptrdiff_t i = 0; i < count; i++) m = x[i] > m ? x[i] : m;
    if (m == -INFINITY) {   // every entry masked: zeros, not NaN
        for (ptrdiff_t i = 0; i < count; i++) x[i] = 0.0f;
        return;
    }
    float partial[16] = {0};
    ptrdiff_t i = 0;
    for (; i + 16 <= count; i += 16) {
        for (int l = 0; l < 16; l++) {
            float e = ck_expf(x[i + l] - m);
            x[i + l] = e;
            partial[l] += e;
        }
    }
    for (int l = 0; i < count; i++, l++) {
        float e = ck_expf(x[i] - m);
        x[i] = e;
        partial[l] += e;
    }
    float sum = 0.0f;
    for (int l = 0; l < 16; l++) sum += partial[l];
    float inverse = 1.0f / sum;
    for (ptrdiff_t j = 0; j < count; j++) x[j] *= inverse;
}

static void exp_generic(float *x, ptrdiff_t count) { exp_body(x, count); }
static void softmax_generic(float *x, ptrdiff_t count) { softmax_body(x, count); }
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void exp_avx2(float *x, ptrdiff_t count) { exp_body(x, count); }
__attribute__((target("avx2,fma"))) static void softmax_avx2(float *x, ptrdiff_t count) { softmax_body(x, count); }
#endif
void ck_exp_inplace(float *x, ptrdiff_t count) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { exp_avx2(x, count); return; }
#endif
    exp_generic(x, count);
}
void ck_softmax_inplace(float *x, ptrdiff_t count) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { softmax_avx2(x, count); return; }
#endif
    softmax_generic(x, count);
}

void ck_selective_scan(SCAN_ARGS) {
    if (n > MAXN) {   // larger states than any Mamba-1 checkpoint: process state in the generic way
        for (int ch = c0; ch < c1; ch++) {
            float *hrow = state + (size_t)ch * n;
            const float *arow = a + (size_t)ch * n;
            float bias = delta_bias ? delta_bias[ch] : 0.0f, dsk = d ? d[ch] : 0.0f;
            for (int t = 0; t < steps; t++) {
                float dtv = ck_softplus(delta[t * delta_stride + ch] + bias), uv = u[t * u_stride + ch];
                float acc = 0.0f;
                for (int s = 0; s < n; s++) {
                    float hs = ck_expf(arow[s] * dtv) * hrow[s] + (dtv * b[t * b_stride + s]) * uv;
                    hrow[s] = hs;
                    acc += hs * c[t * c_stride + s];
                }
                float out = acc + dsk * uv;
                if (z) out *= ck_silu(z[t * z_stride + ch]);
                y[t * y_stride + ch] = out;
            }
        }
        return;
    }
    if (steps == 1) {
#if defined(__x86_64__)
        if (uses_avx512()) { step_avx512(SCAN_PASS); return; }
        if (ck_uses_avx2()) { step_avx2(SCAN_PASS); return; }
#endif
        step_generic(SCAN_PASS);
        return;
    }
#if defined(__x86_64__)
    if (ck_uses_avx2()) { scan_avx2(SCAN_PASS); return; }
#endif
    scan_generic(SCAN_PASS);
}
