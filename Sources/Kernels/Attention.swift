import COpenBLAS

/// A relative position bias stored per head as one vector over key − query offsets: the
/// bias of (head h, query row i, key j) is `base[h * headStride + origin − i + j]`, so each
/// row of the [rows × keys] bias matrix is a window of that vector and nothing quadratic is
/// materialised (T5's bucketed bias; any bias that depends on j − i only has this form).
public struct RelativePositionBias {
    public let base: UnsafePointer<Float>
    public let headStride: Int
    public let origin: Int
    public init(base: UnsafePointer<Float>, headStride: Int, origin: Int) {
        self.base = base; self.headStride = headStride; self.origin = origin
    }

    @inline(__always)
    public func row(head: Int, query i: Int) -> UnsafePointer<Float> { base + head * headStride + origin - i }
}

public enum Attention {
    /// Multi-head dot-product attention without 1/√d scaling (T5 folds it into the
    /// initialisation; a caller that wants it scales q): scores = q·kᵀ (+ bias), softmax over
    /// the visible keys, times v — for each head.
    ///
    /// - q: `rows` query rows of `heads × dHead` floats (row stride `qStride`).
    /// - keys / values: `keyCount` rows (row stride `kvStride`), heads side by side in a row.
    /// - bias: nil, or a relative position bias added to the scores.
    /// - causalPast: nil (every row sees every key), or the number of keys before the first
    ///   query row: query row i then sees keys 0 ... causalPast + i (a decoder's causal mask).
    /// - scores: scratch of at least rows × keyCount floats.
    /// - out: rows × (heads × dHead), row stride `outStride`.
    public static func multiHead(
        q: UnsafePointer<Float>, qStride: Int, rows: Int,
        keys: UnsafePointer<Float>, values: UnsafePointer<Float>, kvStride: Int, keyCount: Int,
        heads: Int, dHead: Int, bias: RelativePositionBias?, causalPast: Int?,
        scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, outStride: Int
    ) {
        let L = Int32(keyCount), D = Int32(dHead)
        for h in 0..<heads {
            let qh = q + h * dHead, kh = keys + h * dHead, vh = values + h * dHead, oh = out + h * dHead
            if rows == 1 {
                // One query row: two matrix-vector products on the strided head slices.
                cblas_sgemv(CblasRowMajor, CblasNoTrans, L, D, 1, kh, Int32(kvStride), qh, 1, 0, scores, 1)
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), L, D, 1,
                            qh, Int32(qStride), kh, Int32(kvStride), 0, scores, L)
            }
            for i in 0..<rows {
                let row = scores + i * keyCount
                let visible = causalPast.map { min($0 + i + 1, keyCount) } ?? keyCount
                if let bias {
                    let b = bias.row(head: h, query: i)
                    for j in 0..<visible { row[j] += b[j] }
                }
                Activations.softmax(row, count: visible)
                for j in visible..<keyCount { row[j] = 0 }
            }
            if rows == 1 {
                cblas_sgemv(CblasRowMajor, CblasTrans, L, D, 1, vh, Int32(kvStride), scores, 1, 0, oh, 1)
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), D, L, 1,
                            scores, L, vh, Int32(kvStride), 0, oh, Int32(outStride))
            }
        }
    }
}
