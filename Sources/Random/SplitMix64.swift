import Foundation

/// The project's one random number generator. SplitMix64 (Steele, Lea & Flood 2014): a tiny,
/// fast generator with a 64-bit state, so a seed reproduces the same samples on every
/// platform (the system generator is not seedable): sampling in the experts, the gate's
/// initialisation and shuffling, random checkpoints, the load generator's arrivals and
/// prompts, the fuzz tests' inputs.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1) from the top 53 bits.
    public mutating func unit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// A uniform float in [−1, 1) from the top 24 bits.
    public mutating func nextSymmetric() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }

    /// An exponential variate with the given rate (mean 1/rate), by inversion.
    public mutating func exponential(rate: Double) -> Double {
        // 1 - u is in (0, 1], so the log is finite.
        -log(1 - unit()) / rate
    }

    /// An independent stream for item `index` of a run: the prompt of request i is the same
    /// whatever order concurrent clients claim the requests in.
    public static func stream(seed: UInt64, index: Int, salt: UInt64) -> SplitMix64 {
        var mixer = SplitMix64(seed: seed ^ (salt &* 0xD6E8_FEB8_6659_FD93))
        for _ in 0..<2 { _ = mixer.next() }
        return SplitMix64(seed: mixer.next() &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15)
    }
}
