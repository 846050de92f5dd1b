import CKernels

/// Weight-only int8 quantization, symmetric, one scale per output row: row j of W is held as
/// q[j, :] ∈ [−127, 127] with W[j, t] ≈ q[j, t] · scale[j], scale[j] = max_t |W[j, t]| / 127
/// (the absmax scheme of LLM.int8's vector-wise quantization and CTranslate2's int8 weights;
/// activations stay f32 here). A quarter of the bytes of f32 per decode step.
public enum Int8Weights {
    /// Quantizes `rows` rows of `columns` floats into `q` and `scales` (`ck_quantize_weights_i8`:
    /// AVX2 where the CPU has it, at load; the same bytes as `quantizeReference`).
    public static func quantize(_ w: UnsafePointer<Float>, rows: Int, columns: Int,
                                into q: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>) {
        ck_quantize_weights_i8(w, Int32(rows), Int32(columns), q, scales)
    }

    /// The definition, in Swift: the largest finite |w| of a row / 127 as its scale (1 when it
    /// has none), each weight divided by it, rounded to nearest (ties to even) and clamped to
    /// ±127; NaN becomes 0.
    public static func quantizeReference(_ w: UnsafePointer<Float>, rows: Int, columns: Int,
                                         into q: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>) {
        for j in 0..<rows {
            let row = w + j * columns, out = q + j * columns
            var largest: Float = 0
            for t in 0..<columns where row[t].isFinite { largest = max(largest, abs(row[t])) }
            let scale = largest > 0 ? largest / 127 : 1
            scales[j] = scale
            for t in 0..<columns {
                let v = (row[t] / scale).rounded(.toNearestOrEven)
                out[t] = v.isNaN ? 0 : Int8(max(-127, min(127, v)))
            }
        }
    }

    /// Rows [firstRow, firstRow + rows) back to f32 into `destination` (rows × columns).
    public static func dequantize(_ q: UnsafePointer<Int8>, scales: UnsafePointer<Float>, firstRow: Int, rows: Int,
                                  columns: Int, into destination: UnsafeMutablePointer<Float>) {
        ck_i8_to_f32(q + firstRow * columns, scales + firstRow, destination, Int32(rows), Int32(columns))
    }
}
