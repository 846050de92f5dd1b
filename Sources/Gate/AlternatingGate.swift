import Vocabulary

/// A deterministic gate that alternates experts span by span, starting with `first`.
/// For tests and demonstrations of mid-answer switching (`mambaformer router --gate alternate`);
/// not a routing policy.
public struct AlternatingGate: SpanGate {
    public var kind: String { "alternate" }
    public var first: PoolKind
    public init(first: PoolKind = .emamba) { self.first = first }

    public func decide(_ input: GateInput) -> GateDecision {
        let pool = input.previous.map { $0.other } ?? first
        return GateDecision(pool: pool, score: pool == .et5 ? 1 : 0)
    }
}
