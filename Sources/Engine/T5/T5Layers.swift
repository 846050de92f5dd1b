import COpenBLAS
import Foundation
import Kernels

// The pieces of a T5 block, as in transformers' modeling_t5.py: T5LayerNorm, a bias-free
// Linear, the relative position buckets, attention without 1/√d scaling, and the FFN.
// Every matrix is row-major f32, one row per token.

/// A bias-free `nn.Linear`: y = x · Wᵀ with W stored [out, in].
struct T5Linear {
    let weight: Weight
    var outFeatures: Int { weight.rows }
    var inFeatures: Int { weight.columns }

    init(_ file: SafeTensorsFile, _ name: String, out: Int, in inFeatures: Int) throws {
        weight = try file.matrix(name, shape: [out, inFeatures])
    }

    /// y[rows × out] = x[rows × in] · Wᵀ, or y += x · Wᵀ when `accumulate` (a residual add for free).
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
                        accumulate: Bool = false) {
        weight.linear(x, count: rows, into: y, accumulate: accumulate)
    }
}

/// T5LayerNorm: RMSNorm with a weight, no mean subtraction, no bias.
struct T5LayerNorm {
    let weight: Tensor
    let eps: Float

    init(_ file: SafeTensorsFile, _ name: String, dim: Int, eps: Float) throws {
        weight = try file.tensor(name, shape: [dim])
        self.eps = eps
    }

    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        Norms.rmsNorm(x, weight: weight.pointer, output: y, rows: rows, dim: weight.count, eps: eps)
    }
}

/// transformers' `T5Attention._relative_position_bucket` for one relative position
/// (memory position − query position). Small distances get one bucket each, larger ones
/// logarithmically wider buckets up to `maxDistance`; the encoder (bidirectional) spends
/// half of the buckets on each direction, the decoder only looks back.
/// The log term is computed in f32 like the reference, so bucket edges agree.
func relativePositionBucket(_ relativePosition: Int, bidirectional: Bool, numBuckets: Int, maxDistance: Int) -> Int {
    var buckets = numBuckets
    var bucket = 0
    var distance: Int
    if bidirectional {
        buckets /= 2
        if relativePosition > 0 { bucket += buckets }
        distance = abs(relativePosition)
    } else {
        distance = -min(relativePosition, 0)
    }
    let maxExact = buckets / 2
    if distance < maxExact { return bucket + distance }
    let logRatio = logf(Float(distance) / Float(maxExact)) / Float(log(Double(maxDistance) / Double(maxExact)))
    let large = maxExact + Int(logRatio * Float(buckets - maxExact))
    return bucket + min(large, buckets - 1)
}

/// A relative position bias stored per head as one vector over key − query offsets: the
/// bias of (head h, query row i, key j) is `base[h * headStride + origin − i + j]`, so each
/// row of the [rows × keys] bias matrix is a window of that vector and nothing quadratic
/// is materialised. Only the bucket of the offset matters (as in transformers' compute_bias).
struct T5PositionBias {
    let base: UnsafePointer<Float>
    let headStride: Int
    let origin: Int

    @inline(__always)
    func row(head: Int, query i: Int) -> UnsafePointer<Float> { base + head * headStride + origin - i }
}

/// The q/k/v/o projections of one T5 attention (self- or cross-attention).
struct T5AttentionWeights {
    let q: T5Linear, k: T5Linear, v: T5Linear, o: T5Linear

    init(_ file: SafeTensorsFile, _ prefix: String, config: T5Config) throws {
        let d = config.dModel, inner = config.innerDim
        q = try T5Linear(file, prefix + ".q.weight", out: inner, in: d)
        k = try T5Linear(file, prefix + ".k.weight", out: inner, in: d)
        v = try T5Linear(file, prefix + ".v.weight", out: inner, in: d)
        o = try T5Linear(file, prefix + ".o.weight", out: d, in: inner)
    }
}

/// Scaled-dot-product attention the T5 way: scores are q·kᵀ (no 1/√d_kv: T5 folds it into
/// the initialisation) plus the relative position bias, softmax, times v — for each head.
///
/// - q: `rows` query rows of `heads × dKV` floats (row stride `qStride`).
/// - keys / values: `keyCount` rows (row stride `kvStride`), heads side by side in a row.
/// - bias: nil, or the relative position bias added to the scores (see `T5PositionBias`).
/// - causalPast: nil (every row sees every key), or the number of keys before the first
///   query row: query row i then sees keys 0 ... causalPast + i (the decoder's causal mask).
/// - scores: scratch of at least rows × keyCount floats.
/// - out: rows × (heads × dKV), row stride `outStride`.
func t5Attention(
    q: UnsafePointer<Float>, qStride: Int, rows: Int,
    keys: UnsafePointer<Float>, values: UnsafePointer<Float>, kvStride: Int, keyCount: Int,
    heads: Int, dKV: Int, bias: T5PositionBias?, causalPast: Int?,
    scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, outStride: Int
) {
    let L = Int32(keyCount), D = Int32(dKV)
    for h in 0..<heads {
        let qh = q + h * dKV, kh = keys + h * dKV, vh = values + h * dKV, oh = out + h * dKV
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
            t5Softmax(row, count: visible)
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

/// Softmax of one row in place (max-subtracted), with a vectorised exp: the encoder
/// evaluates heads × n² exponentials per layer, which libm's scalar expf made ~20% of
/// the encoder's time. Same result as `Activations.softmax` to ~1e-7 relative.
@inline(__always)
func t5Softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
    guard count > 0 else { return }
    var maxValue = -Float.infinity
    for i in 0..<count { maxValue = Swift.max(maxValue, x[i]) }
    guard maxValue > -Float.infinity else {
        for i in 0..<count { x[i] = 0 }
        return
    }
    let shift = SIMD16<Float>(repeating: maxValue)
    var sums = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
        let e = expApproximation(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) - shift)
        UnsafeMutableRawPointer(x + i).storeBytes(of: e, as: SIMD16<Float>.self)
        sums += e
        i += 16
    }
    var sum = sums.sum()
    if i < count {
        var tail = SIMD16<Float>(repeating: -Float.infinity)
        for j in i..<count { tail[j - i] = x[j] }
        let e = expApproximation(tail - shift)
        for j in i..<count { x[j] = e[j - i]; sum += e[j - i] }
    }
    let inverse = 1 / sum
    for j in 0..<count { x[j] *= inverse }
}

/// e^x for x ≤ 0 (softmax after max subtraction), Cephes expf: x = n·ln2 + r with
/// |r| ≤ ln2/2, e^r by a degree-6 polynomial (~1 ulp), times 2^n built in the exponent bits.
/// Inputs below −87 (including −∞) give 2^−126·e^r ≈ 1e−38, i.e. nothing in a softmax sum.
@inline(__always)
func expApproximation(_ v: SIMD16<Float>) -> SIMD16<Float> {
    let x0 = v.replacing(with: -87, where: v .< -87)
    // n = round(x / ln 2) via the 1.5·2^23 trick: in [2^23, 2^24) floats step by 1, so
    // n + magic is exact and its bit pattern is bits(magic) + n (no float→int conversion).
    let magic = SIMD16<Float>(repeating: 12582912)
    let shifted = x0 * 1.44269504088896341 + magic
    let n = shifted - magic
    let r = x0 - n * 0.693359375 - n * -2.12194440e-4
    var p = SIMD16<Float>(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let er = p * (r * r) + r + 1
    let nBits = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
    let exponent = (nBits &+ 127) &<< 23
    return er * unsafeBitCast(exponent, to: SIMD16<Float>.self)
}

/// The position-wise feed-forward network: wo(act(wi·x)) for T5, wo(act(wi_0·x) ⊙ wi_1·x)
/// for T5 v1.1 / Flan-T5 (gated).
struct T5FeedForward {
    let wi: T5Linear        // wi, or wi_0 when gated
    let wiLinear: T5Linear? // wi_1 when gated
    let wo: T5Linear
    let activation: T5Activation

    init(_ file: SafeTensorsFile, _ prefix: String, config: T5Config) throws {
        let d = config.dModel, ff = config.dFF
        if config.isGatedAct {
            wi = try T5Linear(file, prefix + ".wi_0.weight", out: ff, in: d)
            wiLinear = try T5Linear(file, prefix + ".wi_1.weight", out: ff, in: d)
        } else {
            wi = try T5Linear(file, prefix + ".wi.weight", out: ff, in: d)
            wiLinear = nil
        }
        wo = try T5Linear(file, prefix + ".wo.weight", out: d, in: ff)
        activation = config.activation
    }

    /// residual += FFN(x). `a` and `b` are scratch of rows × d_ff floats.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, addingTo residual: UnsafeMutablePointer<Float>,
                        a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>) {
        let n = rows * wi.outFeatures
        wi(x, rows: rows, into: a)
        activate(a, count: n)
        if let wiLinear {
            wiLinear(x, rows: rows, into: b)
            for i in 0..<n { a[i] *= b[i] }
        }
        wo(a, rows: rows, into: residual, accumulate: true)
    }

    private func activate(_ x: UnsafeMutablePointer<Float>, count: Int) {
        switch activation {
        case .relu:
            // Branch-free so it vectorises (the shared Activations.relu branches per element).
            for i in 0..<count { x[i] = Swift.max(x[i], 0) }
        case .geluNew: Activations.geluNew(x, count: count)
        case .silu: Activations.silu(x, count: count)
        case .gelu:
            // torch.nn.functional.gelu (erf form).
            let invSqrt2 = Float(1 / 2.0.squareRoot())
            for i in 0..<count { x[i] = 0.5 * x[i] * (1 + erff(x[i] * invSqrt2)) }
        }
    }
}

/// A growable f32 scratch area. The pointer stays valid until the next larger request;
/// reused across calls so steady-state decoding does not allocate.
///
/// Areas of 1 MiB and more are mapped pages of their own (mmap), so that `release` gives them
/// back to the system at once: glibc keeps freed heap chunks below its (adaptive, up to 32 MiB)
/// mmap threshold, and one long prompt's n × n attention scores would otherwise stay resident.
final class T5Scratch {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private var capacity: Int
    private var mapped = false
    static let mapThresholdBytes = 1 << 20

    init() {
        capacity = 0
        pointer = .allocate(capacity: 1)
    }

    func get(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            free()
            capacity = max(count, capacity * 3 / 2)
            let bytes = capacity * MemoryLayout<Float>.stride
            if bytes >= Self.mapThresholdBytes,
               let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED {
                pointer = raw.bindMemory(to: Float.self, capacity: capacity)
                mapped = true
            } else {
                pointer = .allocate(capacity: capacity)
                mapped = false
            }
        }
        return pointer
    }

    /// Gives the area back when it holds more than `floats` (after an oversized prompt).
    func release(above floats: Int) {
        guard capacity > floats else { return }
        free()
        capacity = 0
        pointer = .allocate(capacity: 1)
        mapped = false
    }

    private func free() {
        if mapped { munmap(pointer, capacity * MemoryLayout<Float>.stride) } else { pointer.deallocate() }
    }

    var bytes: Int { capacity * MemoryLayout<Float>.stride }

    deinit { free() }
}
