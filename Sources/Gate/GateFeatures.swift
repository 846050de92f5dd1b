import Foundation
import Tokenizers

/// What the gate computes per token, besides its learned embedding (the paper's three
/// groups: contextual complexity, normalised length/position, domain; plus the producing
/// expert's confidence for generated tokens). Stored in gate.json so a gate file says what
/// it was trained on.
public struct FeatureSpec: Codable, Sendable, Equatable {
    /// Dimensions of the learned gate embedding of a token.
    public var embeddingDims = 16
    /// Tokens in the local window statistics (mean rarity, lexicon hits), the token included.
    public var window = 8
    /// Prompt positions are divided by this (then clipped to 1).
    public var positionScale: Float = 512
    /// Answer positions are divided by this (then clipped to 1).
    public var answerScale: Float = 64
    /// Prompt length is log-scaled against this many tokens.
    public var promptLengthScale: Float = 1024
    /// Entropies (nats) are divided by this (≈ ln of a 4k vocabulary), then clipped to 1.
    public var entropyScale: Float = 8

    public init() {}

    /// The numeric features, in the order of a feature row.
    public static let numericNames = [
        "is_answer", "position", "prompt_length", "rarity", "window_rarity", "embedding_norm",
        "lexicon", "window_lexicon_hits", "confidence", "entropy", "has_confidence",
    ]
    public var numericCount: Int { Self.numericNames.count }
    /// Channels the network reads per token: embedding, then numeric features.
    public var channels: Int { embeddingDims + numericCount }
}

/// Per-vocabulary tables fixed at training time: rarity (−log relative frequency in the
/// training text, scaled to [0, 1]) and the norm of EMamba's input embedding of the token
/// (standardised over the vocabulary): both cheap "complexity" signals.
public struct VocabularyStatistics: Sendable, Equatable {
    public var rarity: [Float]
    public var embeddingNorm: [Float]
    public init(rarity: [Float], embeddingNorm: [Float]) { self.rarity = rarity; self.embeddingNorm = embeddingNorm }

    /// Rarity from token counts with add-one smoothing: a never-seen token has rarity 1,
    /// the most frequent possible token 0.
    public static func rarity(counts: [Int]) -> [Float] {
        let total = Double(counts.reduce(0, +) + counts.count)
        let scale = log(total)
        return counts.map { Float(min(1, max(0, -log(Double($0 + 1) / total) / scale))) }
    }

    /// Row norms of an embedding table [rows × dims], standardised (mean 0, std 1) and clipped to ±3.
    public static func standardisedNorms(_ table: UnsafePointer<Float>, rows: Int, dims: Int) -> [Float] {
        var norms = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            var s: Float = 0
            for d in 0..<dims { let v = table[r * dims + d]; s += v * v }
            norms[r] = s.squareRoot()
        }
        let mean = norms.reduce(0, +) / Float(max(rows, 1))
        let variance = norms.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(max(rows, 1))
        let std = max(variance.squareRoot(), 1e-6)
        return norms.map { min(3, max(-3, ($0 - mean) / std)) }
    }
}

/// A text in the gate's tokenization: ids, byte offsets into the text, and whether each
/// token belongs to a lexicon word.
public struct GateText: Sendable, Equatable {
    public var ids: [Int]
    public var offsets: [Range<Int>]
    public var lexicon: [Bool]
    public var count: Int { ids.count }
    public init(ids: [Int], offsets: [Range<Int>], lexicon: [Bool]) { self.ids = ids; self.offsets = offsets; self.lexicon = lexicon }
    public static let empty = GateText(ids: [], offsets: [], lexicon: [])
}

/// The prompt and answer so far as one feature sequence (prompt tokens first).
public struct GateSequence: Sendable, Equatable {
    public var ids: [Int]
    /// Row-major [count × FeatureSpec.numericCount].
    public var numeric: [Float]
    public var promptCount: Int
    public var count: Int { ids.count }
    public func row(_ t: Int, width: Int) -> ArraySlice<Float> { numeric[(t * width)..<((t + 1) * width)] }
}

/// The producing expert's confidence about a generated token: its probability of the token
/// and the entropy (nats) of its next-token distribution.
public struct TokenConfidence: Sendable, Equatable {
    public var probability: Float
    public var entropy: Float
    public init(probability: Float, entropy: Float) { self.probability = probability; self.entropy = entropy }
}

/// Computes the gate's per-token features.
// Sendable: immutable after init; its Tokenizer is thread-safe (see Tokenizer).
public struct GateFeaturizer: @unchecked Sendable {
    public let tokenizer: Tokenizer
    public let spec: FeatureSpec
    public let statistics: VocabularyStatistics
    public let lexicon: Lexicon

    public init(tokenizer: Tokenizer, spec: FeatureSpec, statistics: VocabularyStatistics, lexicon: Lexicon) {
        self.tokenizer = tokenizer; self.spec = spec; self.statistics = statistics; self.lexicon = lexicon
    }

    /// Tokenizes `text` with the gate's tokenizer (no special tokens) and marks lexicon tokens.
    public func tokenize(_ text: String) throws -> GateText {
        let encoding = try tokenizer.encode(text, addSpecialTokens: false)
        return GateText(ids: encoding.ids, offsets: encoding.offsets,
                        lexicon: Self.lexiconFlags(text: text, offsets: encoding.offsets, lexicon: lexicon))
    }

    /// A token is a lexicon token when the word containing its first byte is in the lexicon.
    public static func lexiconFlags(text: String, offsets: [Range<Int>], lexicon: Lexicon) -> [Bool] {
        let words = Words.split(text)
        var flags = [Bool](repeating: false, count: offsets.count)
        var w = 0
        for (i, range) in offsets.enumerated() {
            // Offsets are non-decreasing for the tokenizers we use; fall back to a scan when not.
            if w < words.count, words[w].bytes.lowerBound > range.lowerBound { w = 0 }
            while w < words.count, words[w].bytes.upperBound <= range.lowerBound { w += 1 }
            if w < words.count, words[w].bytes.contains(range.lowerBound) { flags[i] = lexicon.contains(words[w].text) }
        }
        return flags
    }

    public func sequence(prompt: GateText, answer: GateText, confidence: [TokenConfidence?]) -> GateSequence {
        Self.sequence(prompt: prompt, answer: answer, confidence: confidence, statistics: statistics, spec: spec)
    }

    /// The feature rows (see `FeatureSpec.numericNames`). `confidence` has one entry per answer
    /// token (nil where unknown) or is empty.
    public static func sequence(prompt: GateText, answer: GateText, confidence: [TokenConfidence?],
                                statistics: VocabularyStatistics, spec: FeatureSpec) -> GateSequence {
        let ids = prompt.ids + answer.ids
        let lexiconFlags = prompt.lexicon + answer.lexicon
        let n = ids.count
        let width = spec.numericCount
        let vocab = statistics.rarity.count
        func rarity(_ id: Int) -> Float { id >= 0 && id < vocab ? statistics.rarity[id] : 1 }
        func norm(_ id: Int) -> Float { id >= 0 && id < statistics.embeddingNorm.count ? statistics.embeddingNorm[id] : 0 }
        let promptLength = min(1, log1p(Float(prompt.count)) / log1p(spec.promptLengthScale))
        var numeric = [Float](repeating: 0, count: n * width)
        // Running sums over the window (token included).
        var rareSum: Float = 0
        var hitSum: Float = 0
        let w = max(1, spec.window)
        for t in 0..<n {
            let id = ids[t]
            rareSum += rarity(id); hitSum += lexiconFlags[t] ? 1 : 0
            if t >= w { rareSum -= rarity(ids[t - w]); hitSum -= lexiconFlags[t - w] ? 1 : 0 }
            let inWindow = Float(min(t + 1, w))
            let isAnswer = t >= prompt.count
            let a = t - prompt.count
            let r = t * width   // this token's row (written in place: no per-token allocation)
            numeric[r] = isAnswer ? 1 : 0
            numeric[r + 1] = isAnswer ? min(1, Float(a) / spec.answerScale) : min(1, Float(t) / spec.positionScale)
            numeric[r + 2] = promptLength
            numeric[r + 3] = rarity(id)
            numeric[r + 4] = rareSum / inWindow
            numeric[r + 5] = norm(id)
            numeric[r + 6] = lexiconFlags[t] ? 1 : 0
            numeric[r + 7] = hitSum / Float(w)
            if isAnswer, a < confidence.count, let c = confidence[a] {
                numeric[r + 8] = min(1, max(0, c.probability))
                numeric[r + 9] = min(1, max(0, c.entropy / spec.entropyScale))
                numeric[r + 10] = 1
            }
        }
        return GateSequence(ids: ids, numeric: numeric, promptCount: prompt.count)
    }
}
