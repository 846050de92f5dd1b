/// Causal depthwise 1-D convolution over time, the short convolution of a Mamba block
/// (nn.Conv1d with groups = channels, padding = kernel − 1, output cut to the input length).
///
/// Layout is token-major: `input` and `output` are [steps × channels] (row stride given, so the
/// input can be a column slice of the in_proj output). The `state` holds the previous
/// `kernel − 1` inputs as rows [(kernel − 1) × channels], oldest first: zeros for a fresh
/// sequence (exactly the zero padding of the reference), and updated in place to the last
/// `kernel − 1` inputs, so a prompt can be fed in chunks and then one token at a time.
///
///   out[t, c] = bias[c] + Σ_{j<K} weight[c, j] · x[t − (K − 1) + j, c]
///
/// `weight` is [channels × kernel] (HF conv1d.weight [C, 1, K] with the middle axis dropped).
public enum CausalConv1d {
    @inlinable
    public static func forward(
        input: UnsafePointer<Float>, inputStride: Int,
        steps: Int, channels: Int, kernel: Int,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        state: UnsafeMutablePointer<Float>,
        output: UnsafeMutablePointer<Float>, outputStride: Int
    ) {
        let history = kernel - 1
        // The input row at time τ (τ < 0 reads the state: row history + τ).
        @inline(__always) func row(_ tau: Int) -> UnsafePointer<Float> {
            tau >= 0 ? input + tau * inputStride : UnsafePointer(state + (history + tau) * channels)
        }
        for t in 0..<steps {
            let out = output + t * outputStride
            if let bias { for c in 0..<channels { out[c] = bias[c] } }
            else { for c in 0..<channels { out[c] = 0 } }
            for j in 0..<kernel {
                let x = row(t - history + j)
                for c in 0..<channels { out[c] += weight[c * kernel + j] * x[c] }
            }
        }
        // Keep the last `history` inputs (some may still come from the old state when steps < history).
        guard history > 0 else { return }
        if steps >= history {
            for r in 0..<history {
                let src = input + (steps - history + r) * inputStride
                (state + r * channels).update(from: src, count: channels)
            }
        } else {
            // Shift the old rows up by `steps`, then append the new inputs.
            for r in 0..<(history - steps) {
                (state + r * channels).update(from: state + (r + steps) * channels, count: channels)
            }
            for s in 0..<steps {
                (state + (history - steps + s) * channels).update(from: input + s * inputStride, count: channels)
            }
        }
    }
}
