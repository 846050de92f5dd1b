import Foundation
import Kernels
import Random

/// The gate's small causal network, per token t of a feature sequence:
///
///     x_t = [E[id_t] ; numeric_t]                                  (C channels)
///     c_t = b_c + Σ_{k<K} w_c[k] ⊙ x_{t−K+1+k}                      (causal depthwise conv, zero-padded)
///     h_t = ReLU(W1 · [x_t ; c_t] + b1)                              (H hidden units)
///     p_t = σ(w2 · h_t + b2)  = P(ET5 | tokens ≤ t)
///
/// The conv only looks back, so p_t depends on tokens ≤ t only (the decision for the next
/// span can be made before it is generated). Small on purpose: its cost must stay far
/// below an EMamba span.
public struct GateNetworkShape: Codable, Sendable, Equatable {
    public var vocabSize: Int
    public var embeddingDims: Int
    public var numericCount: Int
    public var convKernel = 4
    public var hidden = 32
    public var channels: Int { embeddingDims + numericCount }
    public init(vocabSize: Int, embeddingDims: Int, numericCount: Int, convKernel: Int = 4, hidden: Int = 32) {
        self.vocabSize = vocabSize; self.embeddingDims = embeddingDims; self.numericCount = numericCount
        self.convKernel = convKernel; self.hidden = hidden
    }
}

/// Parameters (and, with the same layout, their gradients and Adam moments).
public struct GateParameters: Sendable, Equatable {
    public var embedding: [Float]   // [V × D]
    public var convWeight: [Float]  // [C × K]
    public var convBias: [Float]    // [C]
    public var w1: [Float]          // [H × 2C]
    public var b1: [Float]          // [H]
    public var w2: [Float]          // [H]
    public var b2: [Float]          // [1]

    /// Zeros with the shape's sizes.
    public init(zerosFor s: GateNetworkShape) {
        embedding = .init(repeating: 0, count: s.vocabSize * s.embeddingDims)
        convWeight = .init(repeating: 0, count: s.channels * s.convKernel)
        convBias = .init(repeating: 0, count: s.channels)
        w1 = .init(repeating: 0, count: s.hidden * 2 * s.channels)
        b1 = .init(repeating: 0, count: s.hidden)
        w2 = .init(repeating: 0, count: s.hidden)
        b2 = [0]
    }

    /// Small random initialisation, deterministic for a seed.
    public init(randomFor s: GateNetworkShape, seed: UInt64) {
        self.init(zerosFor: s)
        var rng = SplitMix64(seed: seed)
        func fill(_ a: inout [Float], scale: Float) { for i in a.indices { a[i] = scale * rng.nextSymmetric() } }
        fill(&embedding, scale: 0.1)
        fill(&convWeight, scale: 1 / Float(s.convKernel))
        fill(&w1, scale: (6 / Float(2 * s.channels + s.hidden)).squareRoot())
        fill(&w2, scale: (6 / Float(s.hidden + 1)).squareRoot())
    }

    /// The tensors in a fixed order (for the optimiser and for storage).
    public static let names = ["gate.embedding", "gate.conv.weight", "gate.conv.bias",
                               "gate.mlp.0.weight", "gate.mlp.0.bias", "gate.mlp.2.weight", "gate.mlp.2.bias"]
    public static let keyPaths: [WritableKeyPath<GateParameters, [Float]> & Sendable] = [\.embedding, \.convWeight, \.convBias, \.w1, \.b1, \.w2, \.b2]

    public static func shapes(_ s: GateNetworkShape) -> [[Int]] {
        [[s.vocabSize, s.embeddingDims], [s.channels, s.convKernel], [s.channels],
         [s.hidden, 2 * s.channels], [s.hidden], [1, s.hidden], [1]]
    }

    public mutating func zero() { for kp in Self.keyPaths { for i in self[keyPath: kp].indices { self[keyPath: kp][i] = 0 } } }
}

public struct GateNetwork: Sendable {
    public let shape: GateNetworkShape
    public var parameters: GateParameters

    public init(shape: GateNetworkShape, parameters: GateParameters) {
        self.shape = shape; self.parameters = parameters
    }

    /// What the forward pass keeps for the backward pass.
    public struct Activations {
        public var range: Range<Int>      // positions computed
        public var x: [Float]             // [(range + K−1 history) × C], first row = range.lowerBound − (K−1)
        public var z: [Float]             // [range × 2C]
        public var pre: [Float]           // [range × H]
        public var logits: [Float]        // [range]
        public var probabilities: [Float] // [range]
    }

    /// Input rows x_t for t in `from..<to` (zero rows before the sequence start).
    func inputs(_ seq: GateSequence, from: Int, to: Int) -> [Float] {
        let c = shape.channels, d = shape.embeddingDims, f = shape.numericCount
        var x = [Float](repeating: 0, count: (to - from) * c)
        parameters.embedding.withUnsafeBufferPointer { e in
            for t in max(from, 0)..<to {
                let row = (t - from) * c
                let id = seq.ids[t]
                if id >= 0 && id < shape.vocabSize {
                    for j in 0..<d { x[row + j] = e[id * d + j] }
                }
                for j in 0..<f { x[row + d + j] = seq.numeric[t * f + j] }
            }
        }
        return x
    }

    /// p_t for t in `range` (the whole sequence by default). Only the conv's K−1 previous
    /// positions are read before `range`, so scoring the tail of a long prompt is cheap.
    public func forward(_ seq: GateSequence, range: Range<Int>? = nil) -> Activations {
        let range = range ?? 0..<seq.count
        let c = shape.channels, k = shape.convKernel, h = shape.hidden
        let n = range.count
        let x = inputs(seq, from: range.lowerBound - (k - 1), to: range.upperBound)
        var z = [Float](repeating: 0, count: n * 2 * c)
        let p = parameters
        for i in 0..<n {
            let zRow = i * 2 * c
            let xRow = (i + k - 1) * c
            for ch in 0..<c {
                z[zRow + ch] = x[xRow + ch]
                var s = p.convBias[ch]
                for j in 0..<k { s += p.convWeight[ch * k + j] * x[(i + j) * c + ch] }
                z[zRow + c + ch] = s
            }
        }
        var pre = [Float](repeating: 0, count: n * h)
        if n > 0 {
            z.withUnsafeBufferPointer { zp in p.w1.withUnsafeBufferPointer { wp in pre.withUnsafeMutableBufferPointer { out in
                Blas.gemmTransB(m: n, n: h, k: 2 * c, a: zp.baseAddress!, w: wp.baseAddress!, c: out.baseAddress!)
            } } }
        }
        var logits = [Float](repeating: 0, count: n)
        var probabilities = [Float](repeating: 0, count: n)
        for i in 0..<n {
            var s = p.b2[0]
            for u in 0..<h {
                let v = pre[i * h + u] + p.b1[u]
                pre[i * h + u] = v
                if v > 0 { s += p.w2[u] * v }
            }
            logits[i] = s
            probabilities[i] = sigmoid(s)
        }
        return Activations(range: range, x: x, z: z, pre: pre, logits: logits, probabilities: probabilities)
    }

    /// Accumulates into `grad` the gradient of a loss whose derivative with respect to each
    /// logit in `a.range` is `dLogits` (same order).
    public func backward(_ seq: GateSequence, _ a: Activations, dLogits: [Float], into grad: inout GateParameters) {
        let c = shape.channels, k = shape.convKernel, h = shape.hidden, d = shape.embeddingDims
        let n = a.range.count
        let p = parameters
        var dx = [Float](repeating: 0, count: a.x.count)
        var dz = [Float](repeating: 0, count: 2 * c)
        var dPre = [Float](repeating: 0, count: h)
        for i in 0..<n {
            let g = dLogits[i]
            if g == 0 { continue }
            grad.b2[0] += g
            for u in 0..<h {
                let v = a.pre[i * h + u]
                if v > 0 {
                    grad.w2[u] += g * v
                    dPre[u] = g * p.w2[u]
                } else {
                    dPre[u] = 0
                }
            }
            let zRow = i * 2 * c
            for j in 0..<(2 * c) { dz[j] = 0 }
            for u in 0..<h where dPre[u] != 0 {
                let du = dPre[u]
                grad.b1[u] += du
                let wRow = u * 2 * c
                for j in 0..<(2 * c) {
                    grad.w1[wRow + j] += du * a.z[zRow + j]
                    dz[j] += du * p.w1[wRow + j]
                }
            }
            let xRow = (i + k - 1) * c
            for ch in 0..<c {
                dx[xRow + ch] += dz[ch]
                let dc = dz[c + ch]
                grad.convBias[ch] += dc
                for j in 0..<k {
                    grad.convWeight[ch * k + j] += dc * a.x[(i + j) * c + ch]
                    dx[(i + j) * c + ch] += dc * p.convWeight[ch * k + j]
                }
            }
        }
        // Only the embedding part of x is a parameter; the numeric features are inputs.
        let first = a.range.lowerBound - (k - 1)
        for r in 0..<(a.x.count / c) {
            let t = first + r
            guard t >= 0, t < seq.count else { continue }
            let id = seq.ids[t]
            guard id >= 0, id < shape.vocabSize else { continue }
            for j in 0..<d { grad.embedding[id * d + j] += dx[r * c + j] }
        }
    }
}

@inline(__always) func sigmoid(_ x: Float) -> Float {
    x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
}
