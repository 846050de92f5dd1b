import Vocabulary

/// What the router asks before every span: which expert should generate the next span of
/// this sequence, and how sure the gate is (`score` = P(ET5) averaged over the window).
public protocol SpanGate: Sendable {
    /// "trained" for a learned gate, "rule" for the interim heuristic; reported in the trace.
    var kind: String { get }
    func decide(_ input: GateInput) -> GateDecision
}

public struct GateInput: Sendable {
    public var question: String
    public var context: String
    /// The answer generated so far (all spans, both experts).
    public var answerSoFar: String
    /// The expert that produced the previous span, if any (for hysteresis).
    public var previous: PoolKind?
    /// Mean confidence (top-token probability) of the previous span's tokens, if any.
    public var previousConfidence: Float?
    /// Mean entropy (nats) of the previous span's next-token distributions, if known.
    public var previousEntropy: Float?
    public var policy: Policy

    public init(question: String, context: String, answerSoFar: String, previous: PoolKind?,
                previousConfidence: Float?, previousEntropy: Float? = nil, policy: Policy) {
        self.question = question; self.context = context; self.answerSoFar = answerSoFar
        self.previous = previous; self.previousConfidence = previousConfidence
        self.previousEntropy = previousEntropy; self.policy = policy
    }
}

public struct GateDecision: Sendable, Equatable {
    public var pool: PoolKind
    /// P(ET5) as the gate estimates it for the next span, in [0, 1].
    public var score: Float
    public init(pool: PoolKind, score: Float) { self.pool = pool; self.score = score }
}

extension SpanGate {
    /// Threshold on P(ET5) for a cost weight: 0 → every span to ET5 (best quality),
    /// 1 → none (cheapest); in between, linear.
    public static func threshold(costWeight: Float) -> Float {
        min(max(costWeight, 0), 1)
    }
}

/// Hysteresis around a threshold: switching away from the previous expert needs the score
/// to clear the threshold by `margin`, so consecutive spans do not flap.
public func applyHysteresis(score: Float, threshold: Float, previous: PoolKind?, margin: Float) -> PoolKind {
    if threshold <= 0 { return .et5 }
    if threshold >= 1 { return .emamba }
    switch previous {
    case .et5?: return score >= threshold - margin ? .et5 : .emamba
    case .emamba?: return score > threshold + margin ? .et5 : .emamba
    default: return score > threshold ? .et5 : .emamba
    }
}
