import Foundation
import Kernels

/// Scratch buffers shared by the encoder and the decoder of one model (one thread).
final class T5Workspace {
    let hidden = T5Scratch(), normed = T5Scratch()
    let q = T5Scratch(), k = T5Scratch(), v = T5Scratch(), attention = T5Scratch()
    let ffA = T5Scratch(), ffB = T5Scratch()
    let scores = T5Scratch(), bias = T5Scratch()
    let lmRows = T5Scratch()
    /// The decoder's causal bucket of each distance query − key (grown on demand).
    var decoderBuckets: [Int] = []

    var bytes: Int {
        [hidden, normed, q, k, v, attention, ffA, ffB, scores, bias, lmRows].reduce(0) { $0 + $1.bytes }
    }

    /// Scratch a decode step of a full batch needs stays; areas grown past `floats` by a long
    /// prompt's encoder pass or prefill are given back (the replica's memory returns to its
    /// steady state after a maximum-size prompt).
    func shrink(keepingFloats floats: Int) {
        for s in [hidden, normed, q, k, v, attention, ffA, ffB, scores, bias, lmRows] { s.release(above: floats) }
    }
}

/// One encoder block: bidirectional self-attention, then the FFN, each pre-normed with a residual.
struct T5EncoderLayer {
    let selfAttentionNorm: T5LayerNorm
    let selfAttention: T5AttentionWeights
    let feedForwardNorm: T5LayerNorm
    let feedForward: T5FeedForward

    init(_ file: SafeTensorsFile, index i: Int, config: T5Config) throws {
        let p = "encoder.block.\(i)"
        let eps = config.layerNormEpsilon
        selfAttentionNorm = try T5LayerNorm(file, "\(p).layer.0.layer_norm.weight", dim: config.dModel, eps: eps)
        selfAttention = try T5AttentionWeights(file, "\(p).layer.0.SelfAttention", config: config)
        feedForwardNorm = try T5LayerNorm(file, "\(p).layer.1.layer_norm.weight", dim: config.dModel, eps: eps)
        feedForward = try T5FeedForward(file, "\(p).layer.1.DenseReluDense", config: config)
    }
}

/// The T5 encoder stack: embeddings → blocks → final T5LayerNorm.
struct T5Encoder {
    let config: T5Config
    let layers: [T5EncoderLayer]
    let finalNorm: T5LayerNorm
    /// [num_buckets, heads]: only block 0 has it; the bias it yields is shared by every block.
    let relativeAttentionBias: Tensor

    init(_ file: SafeTensorsFile, config: T5Config) throws {
        self.config = config
        layers = try (0..<config.numLayers).map { try T5EncoderLayer(file, index: $0, config: config) }
        finalNorm = try T5LayerNorm(file, "encoder.final_layer_norm.weight", dim: config.dModel, eps: config.layerNormEpsilon)
        relativeAttentionBias = try file.tensor("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                                shape: [config.relativeAttentionNumBuckets, config.numHeads])
    }

    /// The last hidden states [tokens.count × d_model] for token ids already validated.
    func callAsFunction(_ tokens: [Int], embedding: Weight, workspace w: T5Workspace) -> [Float] {
        let n = tokens.count, d = config.dModel, inner = config.innerDim, heads = config.numHeads
        let h = w.hidden.get(n * d)
        for (r, t) in tokens.enumerated() { embedding.copyRow(t, into: h + r * d) }

        // Relative position bias [heads × n × n], computed once for the whole stack.
        // Relative position bias, computed once for the whole stack: per head, one value per
        // offset j − i in −(n−1)...(n−1) (entry n − 1 + j − i).
        let span = 2 * n - 1
        let biasValues = w.bias.get(heads * span)
        let table = relativeAttentionBias.pointer
        for x in 0..<span {
            let bucket = relativePositionBucket(x - (n - 1), bidirectional: true,
                                                numBuckets: config.relativeAttentionNumBuckets,
                                                maxDistance: config.relativeAttentionMaxDistance)
            for head in 0..<heads { biasValues[head * span + x] = table[bucket * heads + head] }
        }
        let bias = RelativePositionBias(base: biasValues, headStride: span, origin: n - 1)

        let x = w.normed.get(n * d)
        let q = w.q.get(n * inner), k = w.k.get(n * inner), v = w.v.get(n * inner)
        let attention = w.attention.get(n * inner), scores = w.scores.get(n * n)
        let ffA = w.ffA.get(n * config.dFF), ffB = w.ffB.get(n * config.dFF)
        for layer in layers {
            // h = h + o(attention(norm(h)))
            layer.selfAttentionNorm(h, rows: n, into: x)
            layer.selfAttention.q(x, rows: n, into: q)
            layer.selfAttention.k(x, rows: n, into: k)
            layer.selfAttention.v(x, rows: n, into: v)
            Attention.multiHead(q: q, qStride: inner, rows: n, keys: k, values: v, kvStride: inner, keyCount: n,
                        heads: heads, dHead: config.dKV, bias: bias, causalPast: nil,
                        scores: scores, out: attention, outStride: inner)
            layer.selfAttention.o(attention, rows: n, into: h, accumulate: true)
            // h = h + FFN(norm(h))
            layer.feedForwardNorm(h, rows: n, into: x)
            layer.feedForward(x, rows: n, addingTo: h, a: ffA, b: ffB)
        }
        var out = [Float](repeating: 0, count: n * d)
        out.withUnsafeMutableBufferPointer { finalNorm(h, rows: n, into: $0.baseAddress!) }
        return out
    }
}
