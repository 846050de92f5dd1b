import Foundation

public enum Norms {
    /// RMSNorm over each of `rows` rows of `dim` floats (T5LayerNorm, MambaRMSNorm):
    /// y = weight ⊙ x / √(mean(x²) + eps). No mean subtraction and no bias.
    /// `output` may equal `input` (in place). Accumulates the mean of squares in f32 as
    /// transformers does after its `.to(float32)`.
    @inlinable
    public static func rmsNorm(
        _ input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        output: UnsafeMutablePointer<Float>, rows: Int, dim: Int, eps: Float
    ) {
        for r in 0..<rows {
            let x = input + r * dim
            let y = output + r * dim
            var sumSq: Float = 0
            for i in 0..<dim { sumSq += x[i] * x[i] }
            let scale = 1 / (sumSq / Float(dim) + eps).squareRoot()
            for i in 0..<dim { y[i] = weight[i] * (x[i] * scale) }
        }
    }
}
