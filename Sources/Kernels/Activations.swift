import CKernels
import Foundation

/// Element-wise activations, in place over `count` floats. Each matches the PyTorch /
/// transformers definition named in its comment (same formula, f32).
public enum Activations {
    /// SiLU (swish): x · σ(x) = x / (1 + e^(−x)).  (torch.nn.functional.silu)
    /// Runs the C kernel (vectorised exp, within ~2 ulp of libm).
    public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        ck_silu_inplace(x, count)
    }

    @inlinable @inline(__always)
    public static func silu(_ v: Float) -> Float { v / (1 + expf(-v)) }

    /// softplus with PyTorch's defaults (beta 1, threshold 20): x above 20 passes through,
    /// otherwise log(1 + e^x).  (torch.nn.functional.softplus)
    @inlinable
    public static func softplus(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = softplus(x[i]) }
    }

    @inlinable @inline(__always)
    public static func softplus(_ v: Float) -> Float { v > 20 ? v : log1pf(expf(v)) }

    /// ReLU: max(0, x). Branch-free so it vectorises (NaN stays NaN, as in torch).
    @inlinable
    public static func relu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = x[i] < 0 ? 0 : x[i] }
    }

    /// GELU, exact (erf) form: 0.5·x·(1 + erf(x/√2)).  (torch.nn.functional.gelu, T5's "gelu")
    @inlinable
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let invSqrt2 = Float(1 / 2.0.squareRoot())
        for i in 0..<count { x[i] = 0.5 * x[i] * (1 + erff(x[i] * invSqrt2)) }
    }

    /// e^x over `count` floats: the C kernel's exp (about 1 ulp of libm's; below −87.3 it
    /// gives 0), the one every kernel here uses.
    public static func exp(_ x: UnsafeMutablePointer<Float>, count: Int) {
        ck_exp_inplace(x, count)
    }

    /// GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    /// (transformers' `gelu_new`, used by T5 v1.1 / Flan-T5 gated-gelu.)
    @inlinable
    public static func geluNew(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let k = Float((2.0 / Double.pi).squareRoot())
        for i in 0..<count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + tanhf(k * (v + 0.044715 * v * v * v)))
        }
    }

    /// Numerically stable softmax of one row, in place (subtracts the row maximum), with the
    /// vectorised exp: the T5 encoder evaluates heads × n² exponentials per layer, which
    /// libm's scalar expf made ~20 % of its time. A row of all −∞ becomes zeros, not NaN.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        ck_softmax_inplace(x, count)
    }
}
