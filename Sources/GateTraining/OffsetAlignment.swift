import Gate

/// The experts tokenize differently from the gate (and from each other); text is what they
/// share. Per-token quantities of an expert (log-likelihoods, costs) are moved onto the gate's
/// tokens through byte offsets into the same text: each expert token's value is split over
/// the gate tokens its byte range overlaps, in proportion to the overlap, so totals are kept.
public enum OffsetAlignment {
    /// `values[i]` belongs to expert token i with byte range `expertOffsets[i]`. Returns one
    /// value per gate token. An expert token that overlaps no gate token (an empty range, or
    /// only whitespace the gate's tokens do not cover) goes to the first gate token starting
    /// at or after it, else to the last gate token.
    public static func align(values: [Float], expertOffsets: [Range<Int>], gateOffsets: [Range<Int>]) -> [Float] {
        var out = [Float](repeating: 0, count: gateOffsets.count)
        guard !gateOffsets.isEmpty else { return out }
        for (i, e) in expertOffsets.enumerated() where i < values.count {
            var overlaps: [(Int, Int)] = []
            var total = 0
            for (g, r) in gateOffsets.enumerated() {
                let overlap = min(r.upperBound, e.upperBound) - max(r.lowerBound, e.lowerBound)
                if overlap > 0 { overlaps.append((g, overlap)); total += overlap }
            }
            if total > 0 {
                for (g, overlap) in overlaps { out[g] += values[i] * Float(overlap) / Float(total) }
            } else {
                let g = gateOffsets.firstIndex { $0.lowerBound >= e.lowerBound } ?? gateOffsets.count - 1
                out[g] += values[i]
            }
        }
        return out
    }
}
