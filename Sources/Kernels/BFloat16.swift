import CKernels

/// bfloat16: the top 16 bits of an f32 (same exponent range, 8 bits of mantissa). Checkpoints
/// are often stored in it; kept as stored, a weight matrix takes half the memory and half the
/// bytes per decode step (`WeightData.bf16`).
public enum BFloat16 {
    /// destination[i] = source[i] as f32 (exact).
    public static func widen(_ source: UnsafePointer<UInt16>, into destination: UnsafeMutablePointer<Float>, count: Int) {
        ck_bf16_to_f32(source, destination, count)
    }

    /// destination[i] = source[i] rounded to bf16: to nearest, ties to even (as torch's
    /// `.to(torch.bfloat16)`); NaN stays NaN.
    public static func round(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<UInt16>, count: Int) {
        for i in 0..<count { destination[i] = rounded(source[i]) }
    }

    /// `v` rounded to bf16 bits: to nearest, ties to even; NaN stays a (quiet) NaN.
    @inlinable
    public static func rounded(_ v: Float) -> UInt16 {
        let bits = v.bitPattern
        if v.isNaN { return UInt16(bits >> 16) | 0x40 }
        return UInt16((bits &+ 0x7fff &+ ((bits >> 16) & 1)) >> 16)
    }
}
