import Gate
import Foundation

/// Answer quality as in SQuAD's evaluation script: answers are normalised (lower case,
/// punctuation removed, articles a/an/the removed, whitespace collapsed) and compared by
/// exact match, token F1 and ROUGE-L (LCS F-measure over the same tokens).
public enum AnswerMetrics {
    public static func normalizedTokens(_ text: String) -> [String] {
        let lowered = text.lowercased()
        let noPunctuation = String(lowered.unicodeScalars.map { CharacterSet.punctuationCharacters.contains($0) || CharacterSet.symbols.contains($0) ? " " : Character($0) })
        return noPunctuation.split(whereSeparator: { $0.isWhitespace }).map(String.init)
            .filter { $0 != "a" && $0 != "an" && $0 != "the" }
    }

    public static func exactMatch(_ prediction: String, _ reference: String) -> Float {
        normalizedTokens(prediction) == normalizedTokens(reference) ? 1 : 0
    }

    public static func tokenF1(_ prediction: String, _ reference: String) -> Float {
        let p = normalizedTokens(prediction), r = normalizedTokens(reference)
        if p.isEmpty || r.isEmpty { return p.isEmpty && r.isEmpty ? 1 : 0 }
        var counts: [String: Int] = [:]
        for t in r { counts[t, default: 0] += 1 }
        var common = 0
        for t in p where (counts[t] ?? 0) > 0 { counts[t]! -= 1; common += 1 }
        if common == 0 { return 0 }
        let precision = Float(common) / Float(p.count), recall = Float(common) / Float(r.count)
        return 2 * precision * recall / (precision + recall)
    }

    public static func rougeL(_ prediction: String, _ reference: String) -> Float {
        let p = normalizedTokens(prediction), r = normalizedTokens(reference)
        if p.isEmpty || r.isEmpty { return p.isEmpty && r.isEmpty ? 1 : 0 }
        var previous = [Int](repeating: 0, count: r.count + 1)
        for a in p {
            var row = [Int](repeating: 0, count: r.count + 1)
            for (j, b) in r.enumerated() { row[j + 1] = a == b ? previous[j] + 1 : max(previous[j + 1], row[j]) }
            previous = row
        }
        let lcs = previous[r.count]
        if lcs == 0 { return 0 }
        let precision = Float(lcs) / Float(p.count), recall = Float(lcs) / Float(r.count)
        return 2 * precision * recall / (precision + recall)
    }

    /// PubMedQA-style: when the reference starts with yes/no/maybe, whether the prediction
    /// starts with the same word; nil otherwise.
    public static func yesNoMaybe(_ prediction: String, _ reference: String) -> Float? {
        guard let r = normalizedTokens(reference).first, ["yes", "no", "maybe"].contains(r) else { return nil }
        return normalizedTokens(prediction).first == r ? 1 : 0
    }
}

/// One evaluated policy (a baseline, a gate at a cost weight, or random routing).
public struct PolicyResult: Codable, Sendable, Equatable {
    public var name: String
    public var costWeight: Float?
    public var examples = 0
    public var f1: Float = 0
    public var rougeL: Float = 0
    public var exactMatch: Float = 0
    public var yesNoMaybe: Float?
    public var yesNoMaybeCount = 0
    /// Mean wall time per answer (ms).
    public var latencyMs: Float = 0
    public var et5Tokens = 0
    public var emambaTokens = 0
    public var spans = 0
    public var et5Spans = 0
    public var switches = 0
    public var et5Share: Float { et5Tokens + emambaTokens > 0 ? Float(et5Tokens) / Float(et5Tokens + emambaTokens) : 0 }
    /// Relative to ET5-only (filled when the table is built).
    public var qualityVsET5: Float?
    public var speedupVsET5: Float?
    /// Whether F1 lies above the straight line between the two single-expert baselines at this latency.
    public var aboveBaselineLine: Bool?
    public var paretoOptimal = false
    public var f1PerExample: [Float] = []
    public var latencyPerExampleMs: [Float] = []
    public var rougePerExample: [Float] = []
    public var exactMatchPerExample: [Float] = []

    public init(name: String, costWeight: Float? = nil) { self.name = name; self.costWeight = costWeight }

    enum CodingKeys: String, CodingKey {
        case name, costWeight, examples, f1, rougeL, exactMatch, yesNoMaybe, yesNoMaybeCount, latencyMs, et5Tokens,
             emambaTokens, spans, et5Spans, switches, qualityVsET5, speedupVsET5, aboveBaselineLine, paretoOptimal
    }
}

public enum ParetoFrontier {
    /// Indices of the points not dominated in (lower cost, higher quality).
    public static func optimal(_ points: [(cost: Float, quality: Float)]) -> Set<Int> {
        var result = Set<Int>()
        for (i, p) in points.enumerated() {
            let dominated = points.enumerated().contains { j, q in
                j != i && q.cost <= p.cost && q.quality >= p.quality && (q.cost < p.cost || q.quality > p.quality)
            }
            if !dominated { result.insert(i) }
        }
        return result
    }

    /// Quality of the straight line between two points at `cost` (nil when they share a cost).
    public static func line(from a: (cost: Float, quality: Float), to b: (cost: Float, quality: Float), at cost: Float) -> Float? {
        guard b.cost != a.cost else { return nil }
        return a.quality + (b.quality - a.quality) * (cost - a.cost) / (b.cost - a.cost)
    }
}
