import CKernels
import Dispatch
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
/// Channels are independent (the parallel-over-channels form): `scan` runs the C kernel
/// (Sources/CKernels: 8 channels per vector, polynomial exp, AVX2+FMA at run time) and splits
/// the channels across `Kernels.threads` when there is enough work. `scanReference` is the plain
/// scalar loop with libm's exp, kept as the readable definition and to test the fast one.
public enum SelectiveScan {
    /// True when the AVX2+FMA variant of the C kernel runs on this CPU.
    public static var usesAVX2: Bool { ck_uses_avx2() != 0 }

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

    /// Scans `steps` tokens for channels `channelRange` (all channels by default).
    public static func scan(
        _ p: Inputs, steps: Int, channels: Int, stateSize n: Int,
        state: UnsafeMutablePointer<Float>,
        y: UnsafeMutablePointer<Float>, yStride: Int,
        channelRange: Range<Int>? = nil
    ) {
        let range = channelRange ?? 0..<channels
        func run(_ r: Range<Int>) {
            ck_selective_scan(p.u, p.uStride, p.delta, p.deltaStride, p.deltaBias, p.a,
                              p.b, p.bStride, p.c, p.cStride, p.d, p.z, p.zStride,
                              state, y, yStride, Int32(steps), Int32(channels), Int32(n),
                              Int32(r.lowerBound), Int32(r.upperBound))
        }
        // Split only when each part has real work (thread wake-up costs ~10 µs).
        let parts = min(Kernels.threads, range.count / 64)
        if parts > 1 && steps * range.count * n >= 1 << 16 {
            // Part boundaries on multiples of 8 channels (the kernel's vector width).
            let per = ((range.count + parts - 1) / parts + 7) / 8 * 8
            DispatchQueue.concurrentPerform(iterations: parts) { i in
                let lo = range.lowerBound + i * per
                let hi = min(range.upperBound, lo + per)
                if lo < hi { run(lo..<hi) }
            }
        } else {
            run(range)
        }
    }

    /// The scalar definition (libm exp), channel by channel.
    @inlinable
    public static func scanReference(
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
