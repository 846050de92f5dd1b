import Vocabulary

/// The interim gate, used until a checkpoint ships a trained one (issue #8): a transparent
/// rule over the same signals the trained gate uses — prompt length (long contexts go to the
/// linear-time EMamba) and lexical complexity of a short question (long, rare-looking words
/// push towards ET5) — plus the previous span's confidence. The trace reports it as "rule".
public struct RuleGate: SpanGate {
    public var kind: String { "rule" }
    /// Prompts longer than this many words count as long context.
    public var longPromptWords: Int
    public var hysteresisMargin: Float

    public init(longPromptWords: Int = 120, hysteresisMargin: Float = 0.1) {
        self.longPromptWords = longPromptWords
        self.hysteresisMargin = hysteresisMargin
    }

    public func score(_ input: GateInput) -> Float {
        let words = (input.question + " " + input.context).split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        guard !words.isEmpty else { return 0 }
        // Length: 1 for very short prompts, falling to 0 at `longPromptWords`.
        let shortness = max(0, 1 - Float(words.count) / Float(longPromptWords))
        // Complexity: share of long words (≥ 9 letters), a cheap proxy for rare clinical terms.
        let long = words.filter { $0.count >= 9 }.count
        let complexity = min(1, Float(long) / Float(words.count) * 3)
        var p = 0.6 * shortness + 0.4 * complexity
        // A confident previous span lowers the need for the expensive expert, a hesitant one raises it.
        if let c = input.previousConfidence { p += 0.2 * (0.5 - c) }
        return min(max(p, 0), 1)
    }

    public func decide(_ input: GateInput) -> GateDecision {
        let p = score(input)
        let pool = applyHysteresis(score: p, threshold: Self.threshold(costWeight: input.policy.costWeight),
                                   previous: input.previous, margin: hysteresisMargin)
        return GateDecision(pool: pool, score: p)
    }
}
