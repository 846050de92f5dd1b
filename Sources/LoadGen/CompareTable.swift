import Foundation

/// `--compare a.json b.json`: the headline figures of two runs side by side, with b/a.
/// Ratios above 1 mean "b is higher" (better for throughput, worse for latency).
public enum CompareTable {
    public struct Row: Equatable, Sendable {
        public var metric: String
        public var a: Double?
        public var b: Double?
        /// b / a; nil when either side is missing or a is 0.
        public var ratio: Double? {
            guard let a, let b, a != 0 else { return nil }
            return b / a
        }
    }

    public static func rows(_ a: LoadReport, _ b: LoadReport) -> [Row] {
        func p(_ name: String, _ pa: LoadReport.Percentiles?, _ pb: LoadReport.Percentiles?) -> [Row] {
            guard pa != nil || pb != nil else { return [] }
            return [
                Row(metric: "\(name) p50 ms", a: pa?.p50, b: pb?.p50),
                Row(metric: "\(name) p90 ms", a: pa?.p90, b: pb?.p90),
                Row(metric: "\(name) p99 ms", a: pa?.p99, b: pb?.p99),
                Row(metric: "\(name) max ms", a: pa?.max, b: pb?.max),
            ]
        }
        func rate(_ r: LoadReport) -> Double { r.sent > 0 ? Double(r.errors) / Double(r.sent) : 0 }
        var rows = [
            Row(metric: "sent", a: Double(a.sent), b: Double(b.sent)),
            Row(metric: "ok", a: Double(a.ok), b: Double(b.ok)),
            Row(metric: "errors", a: Double(a.errors), b: Double(b.errors)),
            Row(metric: "error rate", a: rate(a), b: rate(b)),
            Row(metric: "requests/s", a: a.throughput.requestsPerSecond, b: b.throughput.requestsPerSecond),
            Row(metric: "tokens/s", a: a.throughput.tokensPerSecond, b: b.throughput.tokensPerSecond),
        ]
        rows += p("latency", a.latencyMs, b.latencyMs)
        rows += p("ttfs", a.ttfsMs, b.ttfsMs)
        rows += p("per-token", a.perTokenMs, b.perTokenMs)
        for expert in Set(a.tokens.share.keys).union(b.tokens.share.keys).sorted() {
            rows.append(Row(metric: "\(expert) token share", a: a.tokens.share[expert] ?? 0, b: b.tokens.share[expert] ?? 0))
        }
        return rows
    }

    /// A fixed-width text table.
    public static func render(_ a: LoadReport, _ b: LoadReport, aName: String = "a", bName: String = "b") -> String {
        let rows = rows(a, b)
        func num(_ x: Double?) -> String {
            guard let x else { return "-" }
            if x == x.rounded() && abs(x) < 1e12 { return String(Int(x)) }
            return abs(x) >= 100 ? String(format: "%.1f", x) : String(format: "%.3f", x)
        }
        let table = [["metric", aName, bName, "b/a"]] + rows.map {
            [$0.metric, num($0.a), num($0.b), $0.ratio.map { String(format: "%.2fx", $0) } ?? "-"]
        }
        let widths = (0..<4).map { c in table.map { $0[c].count }.max() ?? 0 }
        return table.enumerated().map { i, row in
            let line = row.enumerated().map { c, cell in
                c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: widths[c] - cell.count) + cell
            }.joined(separator: "  ")
            return i == 0 ? line + "\n" + String(repeating: "-", count: line.count) : line
        }.joined(separator: "\n") + "\n"
    }
}
