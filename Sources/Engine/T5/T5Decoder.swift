import Foundation
import Kernels

/// One decoder block: causal self-attention (KV cache), cross-attention over the encoder
/// output (K/V computed once per session), then the FFN; each pre-normed with a residual.
struct T5DecoderLayer {
    let selfAttentionNorm: T5LayerNorm
    let selfAttention: T5AttentionWeights
    let crossAttentionNorm: T5LayerNorm
    let crossAttention: T5AttentionWeights
    let feedForwardNorm: T5LayerNorm
    let feedForward: T5FeedForward

    init(_ file: SafeTensorsFile, index i: Int, config: T5Config) throws {
        let p = "decoder.block.\(i)"
        let d = config.dModel, eps = config.layerNormEpsilon
        selfAttentionNorm = try T5LayerNorm(file, "\(p).layer.0.layer_norm.weight", dim: d, eps: eps)
        selfAttention = try T5AttentionWeights(file, "\(p).layer.0.SelfAttention", config: config)
        crossAttentionNorm = try T5LayerNorm(file, "\(p).layer.1.layer_norm.weight", dim: d, eps: eps)
        crossAttention = try T5AttentionWeights(file, "\(p).layer.1.EncDecAttention", config: config)
        feedForwardNorm = try T5LayerNorm(file, "\(p).layer.2.layer_norm.weight", dim: d, eps: eps)
        feedForward = try T5FeedForward(file, "\(p).layer.2.DenseReluDense", config: config)
    }
}

/// Keys or values of one attention layer of one sequence: `count` rows of `width` floats,
/// grown by doubling so appending one token is amortised O(width).
final class T5KVRows {
    let width: Int
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int
    var count = 0

    init(width: Int, capacity: Int) {
        self.width = width
        self.capacity = max(capacity, 1)
        pointer = .allocate(capacity: self.capacity * width)
    }

    /// Room for `rows` rows in total.
    func reserve(_ rows: Int) {
        guard rows > capacity else { return }
        let newCapacity = max(rows, capacity * 2)
        let p = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * width)
        p.update(from: pointer, count: count * width)
        pointer.deallocate()
        pointer = p
        capacity = newCapacity
    }

    var bytes: Int { capacity * width * MemoryLayout<Float>.stride }

    deinit { pointer.deallocate() }
}

/// What a T5 decoder needs per sequence: the cross-attention K/V of its encoder output and
/// the self-attention KV cache, one entry per decoder layer.
struct T5DecoderCache {
    let encoderLength: Int
    let crossKeys: [[Float]]    // per layer, encoderLength × inner
    let crossValues: [[Float]]
    let selfKeys: [T5KVRows]
    let selfValues: [T5KVRows]
    /// Decoder positions held in the self-attention cache.
    var length: Int { selfKeys.first?.count ?? 0 }

    /// Sets the number of cached positions (shrinking truncates exactly; growing only after
    /// the new rows were written).
    func setLength(_ n: Int) {
        for rows in selfKeys { rows.count = n }
        for rows in selfValues { rows.count = n }
    }

    var bytes: Int {
        let cross = (crossKeys.reduce(0) { $0 + $1.count } + crossValues.reduce(0) { $0 + $1.count }) * MemoryLayout<Float>.stride
        return cross + selfKeys.reduce(0) { $0 + $1.bytes } + selfValues.reduce(0) { $0 + $1.bytes }
    }
}

/// The T5 decoder stack: embeddings → blocks → final T5LayerNorm.
struct T5Decoder {
    let config: T5Config
    let layers: [T5DecoderLayer]
    let finalNorm: T5LayerNorm
    /// [num_buckets, heads] of decoder block 0, shared by every decoder block (causal buckets).
    let relativeAttentionBias: Tensor

    init(_ file: SafeTensorsFile, config: T5Config) throws {
        self.config = config
        layers = try (0..<config.numDecoderLayers).map { try T5DecoderLayer(file, index: $0, config: config) }
        finalNorm = try T5LayerNorm(file, "decoder.final_layer_norm.weight", dim: config.dModel, eps: config.layerNormEpsilon)
        relativeAttentionBias = try file.tensor("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                                shape: [config.relativeAttentionNumBuckets, config.numHeads])
    }

    /// A cache for a new sequence: cross-attention K/V from the encoder output [n × d_model].
    func makeCache(encoderOutput: [Float], encoderLength n: Int) -> T5DecoderCache {
        let inner = config.innerDim
        var keys: [[Float]] = [], values: [[Float]] = []
        encoderOutput.withUnsafeBufferPointer { enc in
            for layer in layers {
                var k = [Float](repeating: 0, count: n * inner), v = [Float](repeating: 0, count: n * inner)
                k.withUnsafeMutableBufferPointer { layer.crossAttention.k(enc.baseAddress!, rows: n, into: $0.baseAddress!) }
                v.withUnsafeMutableBufferPointer { layer.crossAttention.v(enc.baseAddress!, rows: n, into: $0.baseAddress!) }
                keys.append(k)
                values.append(v)
            }
        }
        return T5DecoderCache(
            encoderLength: n, crossKeys: keys, crossValues: values,
            selfKeys: layers.map { _ in T5KVRows(width: inner, capacity: 16) },
            selfValues: layers.map { _ in T5KVRows(width: inner, capacity: 16) })
    }

    /// Runs `tokens[s]` (already validated) through the decoder for each sequence `s`,
    /// all rows stacked so every projection is one GEMM over the batch; attention runs per
    /// sequence against its own cache. Appends to the caches and returns the final hidden
    /// states (after the final norm) of the rows picked by `outputRows` (indices into the
    /// stacked rows), written to `out` [outputRows.count × d_model].
    func forward(caches: [T5DecoderCache], tokens: [[Int]], embedding: Weight, workspace w: T5Workspace,
                 outputRows: [Int], out: UnsafeMutablePointer<Float>) {
        let d = config.dModel, inner = config.innerDim, heads = config.numHeads, dKV = config.dKV
        let counts = tokens.map(\.count)
        let rows = counts.reduce(0, +)
        var firstRow = [Int](), past = [Int](), biasOffset = [Int]()
        var biasTotal = 0, maxScores = 0, r0 = 0
        for (s, cache) in caches.enumerated() {
            firstRow.append(r0); past.append(cache.length); biasOffset.append(biasTotal)
            let keyCount = cache.length + counts[s]
            biasTotal += heads * keyCount
            maxScores = max(maxScores, counts[s] * max(keyCount, cache.encoderLength))
            r0 += counts[s]
        }

        let h = w.hidden.get(rows * d)
        var r = 0
        for seq in tokens { for t in seq { embedding.copyRow(t, into: h + r * d); r += 1 } }

        // Causal relative position bias per sequence, computed once for the stack: per head,
        // one value per key position j of the query at the last new row (distance L − 1 − j);
        // earlier rows read the same vector shifted (keys after a row are masked anyway).
        let bias = w.bias.get(max(biasTotal, 1))
        let table = relativeAttentionBias.pointer
        let longest = zip(past, counts).map { $0 + $1 }.max() ?? 0
        while w.decoderBuckets.count < longest {
            w.decoderBuckets.append(relativePositionBucket(-w.decoderBuckets.count, bidirectional: false,
                                                           numBuckets: config.relativeAttentionNumBuckets,
                                                           maxDistance: config.relativeAttentionMaxDistance))
        }
        var biases: [RelativePositionBias] = []
        biases.reserveCapacity(caches.count)
        w.decoderBuckets.withUnsafeBufferPointer { bucketOfDistance in
            for s in caches.indices {
                let keyCount = past[s] + counts[s]
                let values = bias + biasOffset[s]
                for head in 0..<heads {
                    for x in 0..<keyCount {
                        values[head * keyCount + x] = table[bucketOfDistance[keyCount - 1 - x] * heads + head]
                    }
                }
                biases.append(RelativePositionBias(base: values, headStride: keyCount, origin: counts[s] - 1))
            }
        }
        for (s, cache) in caches.enumerated() {
            for rows in cache.selfKeys { rows.reserve(past[s] + counts[s]) }
            for rows in cache.selfValues { rows.reserve(past[s] + counts[s]) }
        }

        let x = w.normed.get(rows * d)
        let q = w.q.get(rows * inner), k = w.k.get(rows * inner), v = w.v.get(rows * inner)
        let attention = w.attention.get(rows * inner), scores = w.scores.get(max(maxScores, 1))
        let ffA = w.ffA.get(rows * config.dFF), ffB = w.ffB.get(rows * config.dFF)
        for (l, layer) in layers.enumerated() {
            // Self-attention: h = h + o(causal attention(norm(h))) over cache + new rows.
            layer.selfAttentionNorm(h, rows: rows, into: x)
            layer.selfAttention.q(x, rows: rows, into: q)
            layer.selfAttention.k(x, rows: rows, into: k)
            layer.selfAttention.v(x, rows: rows, into: v)
            for (s, cache) in caches.enumerated() {
                let m = counts[s], keys = cache.selfKeys[l], values = cache.selfValues[l]
                (keys.pointer + past[s] * inner).update(from: k + firstRow[s] * inner, count: m * inner)
                (values.pointer + past[s] * inner).update(from: v + firstRow[s] * inner, count: m * inner)
                Attention.multiHead(q: q + firstRow[s] * inner, qStride: inner, rows: m,
                            keys: keys.pointer, values: values.pointer, kvStride: inner, keyCount: past[s] + m,
                            heads: heads, dHead: dKV, bias: biases[s], causalPast: past[s],
                            scores: scores, out: attention + firstRow[s] * inner, outStride: inner)
            }
            layer.selfAttention.o(attention, rows: rows, into: h, accumulate: true)

            // Cross-attention: h = h + o(attention(norm(h), encoder K/V)); no position bias.
            layer.crossAttentionNorm(h, rows: rows, into: x)
            layer.crossAttention.q(x, rows: rows, into: q)
            for (s, cache) in caches.enumerated() {
                cache.crossKeys[l].withUnsafeBufferPointer { keys in
                    cache.crossValues[l].withUnsafeBufferPointer { values in
                        Attention.multiHead(q: q + firstRow[s] * inner, qStride: inner, rows: counts[s],
                                    keys: keys.baseAddress!, values: values.baseAddress!, kvStride: inner,
                                    keyCount: cache.encoderLength, heads: heads, dHead: dKV, bias: nil, causalPast: nil,
                                    scores: scores, out: attention + firstRow[s] * inner, outStride: inner)
                    }
                }
            }
            layer.crossAttention.o(attention, rows: rows, into: h, accumulate: true)

            // h = h + FFN(norm(h))
            layer.feedForwardNorm(h, rows: rows, into: x)
            layer.feedForward(x, rows: rows, addingTo: h, a: ffA, b: ffB)
        }
        for (s, cache) in caches.enumerated() { cache.setLength(past[s] + counts[s]) }

        for (o, row) in outputRows.enumerated() {
            finalNorm(h + row * d, rows: 1, into: out + o * d)
        }
    }
}
