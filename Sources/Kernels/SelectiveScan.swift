import Foundation

/// The selective scan of Mamba-1 (S6), as in transformers' `slow_forward` / mamba-minimal:
///
///   Δ = softplus(δ + δ_bias)                      per token and channel
///   h_t = exp(Δ·A) ⊙ h_{t−1} + Δ·B_t·u_t          h is [channels × stateSize]
///   y_t = h_t · C_t + D ⊙ u_t
///   y_t ← y_t ⊙ silu(z_t)                         (the gate branch)
///
/// Layout is token-major: `u`, `delta`, `z`, `y` are [steps × channels] (with row strides),
/// `b` and `c` are [steps × stateSize] (with a row stride, they are column slices of x_proj's
/// output), `a` is [channels × stateSize] (already −exp(A_log)), `state` is
/// [channels × stateSize], zero for a fresh sequence, updated in place.
///
/// The loop runs channels outermost (each channel's recurrence is independent: this is the
/// parallel-over-channels form), time inside, so a channel's state row stays in registers/L1.
public enum SelectiveScan {
    public struct Inputs {
        public var u: UnsafePointer<Float>; public var uStride: Int
        public var delta: UnsafePointer<Float>; public var deltaStride: Int
        public var deltaBias: UnsafePointer<Float>?
        public var a: UnsafePointer<Float>
        public var b: UnsafePointer<Float>; public var bStride: Int
        public var c: UnsafePointer<Float>; public var cStride: Int
        public var d: UnsafePointer<Float>?
        public var z: UnsafePointer<Float>?; public var zStride: Int

        public init(u: UnsafePointer<Float>, uStride: Int, delta: UnsafePointer<Float>, deltaStride: Int,
                    deltaBias: UnsafePointer<Float>?, a: UnsafePointer<Float>,
                    b: UnsafePointer<Float>, bStride: Int, c: UnsafePointer<Float>, cStride: Int,
                    d: UnsafePointer<Float>?, z: UnsafePointer<Float>?, zStride: Int) {
            self.u = u; self.uStride = uStride; self.delta = delta; self.deltaStride = deltaStride
            self.deltaBias = deltaBias; self.a = a; self.b = b; self.bStride = bStride
            self.c = c; self.cStride = cStride; self.d = d; self.z = z; self.zStride = zStride
        }
    }

    /// Scans `steps` tokens for channels `channelRange` (all channels by default; callers may
    /// split the channels across threads since channels are independent).
    @inlinable
    public static func scan(
        _ p: Inputs, steps: Int, channels: Int, stateSize n: Int,
        state: UnsafeMutablePointer<Float>,
        y: UnsafeMutablePointer<Float>, yStride: Int,
        channelRange: Range<Int>? = nil
    ) {
        let range = channelRange ?? 0..<channels
        for ch in range {
            let h = state + ch * n
            let aRow = p.a + ch * n
            let bias = p.deltaBias?[ch] ?? 0
            let dSkip = p.d?[ch] ?? 0
            for t in 0..<steps {
                let dt = Activations.softplus(p.delta[t * p.deltaStride + ch] + bias)
                let u = p.u[t * p.uStride + ch]
                let bRow = p.b + t * p.bStride
                let cRow = p.c + t * p.cStride
                var acc: Float = 0
                for s in 0..<n {
                    let hs = expf(aRow[s] * dt) * h[s] + (dt * bRow[s]) * u
                    h[s] = hs
                    acc += hs * cRow[s]
                }
                var out = acc + dSkip * u
                if let z = p.z { out *= Activations.silu(z[t * p.zStride + ch]) }
                y[t * yStride + ch] = out
            }
        }
    }

    /// One token: the recurrent update used by decoding (the same arithmetic as `scan`
    /// with `steps == 1`, so prefill-then-step equals a longer prefill bit for bit).
    @inlinable
    public static func step(
        _ p: Inputs, channels: Int, stateSize n: Int,
        state: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>
    ) {
        scan(p, steps: 1, channels: channels, stateSize: n, state: state, y: y, yStride: channels)
    }
}
