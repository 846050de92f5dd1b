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

    /// ReLU: max(0, x).
    @inlinable
    public static func relu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count where !(x[i] > 0) { x[i] = 0 }
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

    /// Numerically stable softmax of one row, in place (subtracts the row maximum).
    /// A row of all −∞ becomes all zeros rather than NaN.
    @inlinable
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        var m = -Float.infinity
        for i in 0..<count where x[i] > m { m = x[i] }
        if m == -Float.infinity {
            for i in 0..<count { x[i] = 0 }
            return
        }
        var sum: Float = 0
        for i in 0..<count {
            let e = expf(x[i] - m)
            x[i] = e
            sum += e
        }
        let inv = 1 / sum
        for i in 0..<count { x[i] *= inv }
    }
}
