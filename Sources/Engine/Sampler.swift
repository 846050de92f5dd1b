import Foundation
import Random

/// Picks next tokens from logits: greedy (temperature 0) or sampling with temperature, top-k,
/// top-p (nucleus) and a seed, plus the optional repetition penalty, in transformers' order
/// (repetition penalty → temperature → top-k → top-p).
public struct Sampler {
    public let temperature: Float
    public let topK: Int
    public let topP: Float
    public let repetitionPenalty: Float
    private var rng: SplitMix64

    /// `topK` 0 = off, `topP` 1 = off, `repetitionPenalty` 1 = off.
    public init(temperature: Float, topK: Int, topP: Float, seed: UInt64, repetitionPenalty: Float) {
        self.temperature = max(0, temperature)
        self.topK = max(0, topK)
        self.topP = topP
        self.repetitionPenalty = repetitionPenalty
        self.rng = SplitMix64(seed: seed)
    }

    /// Picks the next token from a logits row (greedy when temperature == 0); also returns
    /// its log-probability and the distribution's entropy (natural log), used by the gate.
    /// `logprob` and `entropy` are those of the model's distribution after suppression and the
    /// repetition penalty, before temperature/top-k/top-p: they measure the expert's confidence,
    /// independent of how adventurous the sampling is. `suppress` ids are never picked (EOS
    /// when generation must go on, as transformers' `min_new_tokens`).
    /// `alternatives` > 0 also returns that many most likely tokens of the same distribution
    /// (most likely first, the lower id on a tie), for `top_logprobs`.
    public mutating func next(logits: UnsafeBufferPointer<Float>, history: [Int], suppress: Set<Int>,
                              alternatives: Int = 0) -> (token: Int, logprob: Float, entropy: Float, top: [(token: Int, logprob: Float)]) {
        let n = logits.count
        guard n > 0 else { return (0, 0, 0, []) }
        var scores = Array(logits)
        if repetitionPenalty != 1, repetitionPenalty > 0 {
            for t in Set(history) where t >= 0 && t < n {
                scores[t] = scores[t] < 0 ? scores[t] * repetitionPenalty : scores[t] / repetitionPenalty
            }
        }
        for t in suppress where t >= 0 && t < n { scores[t] = -.infinity }

        // The model's distribution (log-softmax) for logprob and entropy.
        var maxScore = -Float.infinity
        for s in scores where s > maxScore { maxScore = s }
        var sumExp: Double = 0
        for s in scores where s > -.infinity { sumExp += Double(expf(s - maxScore)) }
        let logZ = Double(maxScore) + log(sumExp)
        var entropy: Double = 0
        for s in scores where s > -.infinity {
            let lp = Double(s) - logZ
            entropy -= exp(lp) * lp
        }

        let token: Int
        if temperature == 0 || maxScore == -.infinity {
            token = Self.argmax(scores)
        } else {
            token = sample(scores)
        }
        let logprob = scores[token] > -.infinity ? Float(Double(scores[token]) - logZ) : -.infinity
        var top: [(token: Int, logprob: Float)] = []
        if alternatives > 0 {
            // A partial selection: k passes over the row, k ≤ 5.
            var taken = Set<Int>()
            for _ in 0..<min(alternatives, n) {
                var best = -1
                for t in 0..<n where !taken.contains(t) && scores[t] > -.infinity && (best < 0 || scores[t] > scores[best]) { best = t }
                guard best >= 0 else { break }
                taken.insert(best)
                top.append((best, Float(Double(scores[best]) - logZ)))
            }
        }
        return (token, logprob, Float(entropy), top)
    }

    /// First index of the maximum (as torch.argmax).
    public static func argmax(_ scores: [Float]) -> Int {
        var best = 0
        for i in 1..<max(scores.count, 1) where scores[i] > scores[best] { best = i }
        return best
    }

    private mutating func sample(_ scores: [Float]) -> Int {
        // Candidates sorted by score, best first (stable: ties keep the lower id first).
        var order = scores.indices.filter { scores[$0] > -.infinity }
        order.sort { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        if topK > 0, order.count > topK { order.removeLast(order.count - topK) }
        let top = scores[order[0]] / temperature
        var probs = order.map { Double(expf(scores[$0] / temperature - top)) }
        var total = probs.reduce(0, +)
        if topP < 1 {
            // Keep the smallest prefix whose mass reaches topP (at least one token).
            var cumulative: Double = 0
            var keep = 0
            for p in probs {
                keep += 1
                cumulative += p / total
                if cumulative >= Double(topP) { break }
            }
            probs.removeLast(probs.count - keep)
            order.removeLast(order.count - keep)
            total = probs.reduce(0, +)
        }
        var r = rng.unit() * total
        for (i, p) in probs.enumerated() {
            r -= p
            if r < 0 { return order[i] }
        }
        return order[order.count - 1]
    }
}

/// Greedy decoding of up to `maxNewTokens` after `prefix` (the prompt for Mamba; the decoder
/// prefix for T5, where an empty prefix means [decoder_start_token_id]). Stops after EOS
/// (included in the result, as transformers does) unless `ignoreEOS`, which masks the EOS
/// logit instead (transformers' `min_new_tokens`). Returns only the new ids.
public func generateGreedy(model: ExpertModel, encoderInput: [Int]?, prefix: [Int], maxNewTokens: Int, ignoreEOS: Bool) throws -> [Int] {
    guard maxNewTokens >= 0 else { throw EngineError.invalidArgument("maxNewTokens must be ≥ 0, got \(maxNewTokens)") }
    var start = prefix
    if start.isEmpty {
        guard let decoderStart = model.decoderStartTokenId else {
            throw EngineError.emptyInput("generation needs at least one prompt token")
        }
        start = [decoderStart]
    }
    let session = try model.makeSession(encoderInput: encoderInput)
    guard maxNewTokens > 0 else { return [] }
    var logits = try model.feed(session, tokens: start)
    var generated: [Int] = []
    var sampler = Sampler(temperature: 0, topK: 0, topP: 1, seed: 0, repetitionPenalty: 1)
    let suppress: Set<Int> = ignoreEOS ? [model.eosTokenId] : []
    while generated.count < maxNewTokens {
        let token = logits.withUnsafeBufferPointer { sampler.next(logits: $0, history: [], suppress: suppress).token }
        generated.append(token)
        if token == model.eosTokenId && !ignoreEOS { break }
        if generated.count == maxNewTokens { break }
        logits = try model.step([session], tokens: [token])
    }
    return generated
}
