import Vocabulary

/// How a span decision is made from the per-token p_t: the mean of p over the last
/// `window` tokens against a threshold set by the request's cost weight, with hysteresis.
///
/// Thresholds come from calibration on held-out data (GateTrainer): the cost weight w picks
/// an operating point on the gate's ET5-share curve — w = 0 every span to ET5, w = 1 none,
/// w = 0.5 the trained decision rule (p > ½); between the calibrated points, linear.
public struct GatePolicy: Codable, Sendable, Equatable {
    public struct Point: Codable, Sendable, Equatable {
        public var costWeight: Float
        public var threshold: Float
        /// ET5 share of decisions at this threshold on the calibration data (for the report).
        public var et5Share: Float
        public init(costWeight: Float, threshold: Float, et5Share: Float) {
            self.costWeight = costWeight; self.threshold = threshold; self.et5Share = et5Share
        }
    }

    /// Tokens averaged for a decision (the last ones of the sequence so far).
    public var window: Int
    public var hysteresisMargin: Float
    /// Sorted by cost weight.
    public var points: [Point]

    public init(window: Int = 4, hysteresisMargin: Float = 0.05, points: [Point] = GatePolicy.uncalibrated) {
        self.window = window; self.hysteresisMargin = hysteresisMargin
        self.points = points.sorted { $0.costWeight < $1.costWeight }
    }

    /// Before calibration: the threshold is the cost weight.
    public static let uncalibrated = [Point(costWeight: 0, threshold: 0, et5Share: 1), Point(costWeight: 1, threshold: 1, et5Share: 0)]

    /// The threshold on the window mean of p for a cost weight. 0 and 1 are absolute
    /// (always ET5 / never ET5) whatever the calibration says.
    public func threshold(costWeight: Float) -> Float {
        let w = min(max(costWeight.isNaN ? 0.5 : costWeight, 0), 1)
        if w <= 0 { return 0 }
        if w >= 1 { return 1 }
        guard let upper = points.firstIndex(where: { $0.costWeight >= w }) else { return points.last?.threshold ?? w }
        if upper == 0 { return points[0].threshold }
        let a = points[upper - 1], b = points[upper]
        let f = b.costWeight > a.costWeight ? (w - a.costWeight) / (b.costWeight - a.costWeight) : 1
        return min(1, max(0, a.threshold + f * (b.threshold - a.threshold)))
    }

    /// The window mean of `probabilities` (the last `window` values).
    public func score(_ probabilities: [Float]) -> Float {
        let tail = probabilities.suffix(max(1, window))
        guard !tail.isEmpty else { return 0 }
        return tail.reduce(0, +) / Float(tail.count)
    }

    /// The decision for the next span. A forced expert wins; the score is still reported.
    public func decide(probabilities: [Float], policy: Policy, previous: PoolKind?) -> GateDecision {
        let s = score(probabilities)
        if policy.forced == .emamba || policy.forced == .et5 { return GateDecision(pool: policy.forced, score: s) }
        let pool = applyHysteresis(score: s, threshold: threshold(costWeight: policy.costWeight),
                                   previous: previous, margin: hysteresisMargin)
        return GateDecision(pool: pool, score: s)
    }
}
