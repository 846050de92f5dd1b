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
        case .relu: Activations.relu(x, count: count)
        case .geluNew: Activations.geluNew(x, count: count)
        case .silu: Activations.silu(x, count: count)
        case .gelu: Activations.gelu(x, count: count)
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
