import Engine
import Foundation
import Gate
import Generation
import Random
import Vocabulary

/// `mambaformer eval`: generates answers in-process (LocalExperts: the cluster's own span
/// loop, no sockets) for the single-expert baselines, the gate at several cost weights and
/// random routing at the gate's ET5 share, then scores them and finds the Pareto frontier
/// of latency vs F1.
public struct EvaluationOptions: Sendable {
    public var checkpoint: URL
    public var data: URL
    public var limit: Int?
    public var costWeights: [Float] = [0, 0.25, 0.5, 0.75, 1]
    public var maxNewTokens: UInt32 = 64
    public var spanTokens: UInt32 = 16
    /// Random routing at each gate setting's ET5 span share (the "is the gate better than chance" check).
    public var randomBaselines = true
    public var seed: UInt64 = 1234
    public var gate = "auto"
    /// How the experts hold their weight matrices (int8 / bf16: the accuracy cost of narrowing).
    public var weightFormat: WeightFormat = .auto
    public init(checkpoint: URL, data: URL) { self.checkpoint = checkpoint; self.data = data }
}

public struct EvaluationReport: Codable, Sendable {
    public var checkpoint: String
    public var data: String
    public var examples: Int
    public var gateKind: String
    public var policies: [PolicyResult]
    /// Per example the better single expert (by F1; the cheaper on a tie).
    public var oracle: PolicyResult
    /// Mean wall time of one gate decision (µs) and of one EMamba span (µs, EMamba-only run).
    public var gateDecisionUs: Float
    public var emambaSpanUs: Float
    public var secondsTotal: Double

    /// The gate's best operating point: the cost weight of the `gate@w` row with the highest
    /// token F1, the cheaper (larger) weight on a tie. What `eval --write-default` stores.
    public var bestCostWeight: Float? {
        policies.filter { $0.name.hasPrefix("gate@") }
            .compactMap { p in p.costWeight.map { (weight: $0, f1: p.f1) } }
            .max { ($0.f1, $0.weight) < ($1.f1, $1.weight) }?.weight
    }

    /// The markdown table (one row per policy, the oracle last).
    public func markdown() -> String {
        var lines = ["| policy | cost weight | F1 | ROUGE-L | EM | latency ms | ET5 token share | quality vs ET5 | speed-up vs ET5 | above baseline line | Pareto |",
                     "|---|---|---|---|---|---|---|---|---|---|---|"]
        func f(_ v: Float?, _ digits: Int = 3) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "—" }
        for p in policies + [oracle] {
            lines.append("| \(p.name) | \(f(p.costWeight, 2)) | \(f(p.f1)) | \(f(p.rougeL)) | \(f(p.exactMatch)) | \(f(p.latencyMs, 1)) | "
                         + "\(String(format: "%.1f %%", p.et5Share * 100)) | \(f(p.qualityVsET5, 2)) | \(f(p.speedupVsET5, 2)) | "
                         + "\(p.aboveBaselineLine.map { $0 ? "yes" : "no" } ?? "—") | \(p.paretoOptimal ? "✓" : "") |")
        }
        lines.append("")
        lines.append(String(format: "%d examples; gate %@: %.0f µs per decision, %.2f %% of an EMamba span (%.0f µs).",
                            examples, gateKind, gateDecisionUs, emambaSpanUs > 0 ? gateDecisionUs / emambaSpanUs * 100 : 0, emambaSpanUs))
        return lines.joined(separator: "\n")
    }

    /// A self-contained HTML page: the latency/F1 plot (frontier, baseline line, oracle) and the table.
    public func html() -> String {
        let points = policies + [oracle]
        let maxX = max(1, (points.map(\.latencyMs).max() ?? 1) * 1.1)
        let maxY = max(0.05, (points.map(\.f1).max() ?? 0.05) * 1.15)
        let (w, h, m): (Float, Float, Float) = (640, 400, 50)
        func x(_ v: Float) -> Float { m + v / maxX * (w - 2 * m) }
        func y(_ v: Float) -> Float { h - m - v / maxY * (h - 2 * m) }
        var svg = "<svg width=\"\(Int(w))\" height=\"\(Int(h))\" xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\" font-size=\"11\">"
        svg += "<line x1=\"\(m)\" y1=\"\(h - m)\" x2=\"\(w - m)\" y2=\"\(h - m)\" stroke=\"black\"/><line x1=\"\(m)\" y1=\"\(m)\" x2=\"\(m)\" y2=\"\(h - m)\" stroke=\"black\"/>"
        svg += "<text x=\"\(w / 2)\" y=\"\(h - 12)\" text-anchor=\"middle\">latency per answer (ms)</text>"
        svg += "<text x=\"14\" y=\"\(h / 2)\" transform=\"rotate(-90 14 \(h / 2))\" text-anchor=\"middle\">token F1</text>"
        for i in 0...4 {
            let vx = maxX * Float(i) / 4, vy = maxY * Float(i) / 4
            svg += "<text x=\"\(x(vx))\" y=\"\(h - m + 14)\" text-anchor=\"middle\">\(String(format: "%.0f", vx))</text>"
            svg += "<text x=\"\(m - 6)\" y=\"\(y(vy) + 4)\" text-anchor=\"end\">\(String(format: "%.2f", vy))</text>"
        }
        if let a = policies.first(where: { $0.name == "emamba-only" }), let b = policies.first(where: { $0.name == "et5-only" }) {
            svg += "<line x1=\"\(x(a.latencyMs))\" y1=\"\(y(a.f1))\" x2=\"\(x(b.latencyMs))\" y2=\"\(y(b.f1))\" stroke=\"gray\" stroke-dasharray=\"4 3\"/>"
        }
        let frontier = policies.filter(\.paretoOptimal).sorted { $0.latencyMs < $1.latencyMs }
        if frontier.count > 1 {
            svg += "<polyline fill=\"none\" stroke=\"#2a7\" stroke-width=\"2\" points=\"" + frontier.map { "\(x($0.latencyMs)),\(y($0.f1))" }.joined(separator: " ") + "\"/>"
        }
        for p in points {
            let color = p.name == "oracle" ? "#c33" : p.name.hasPrefix("gate") ? "#27c" : p.name.hasPrefix("random") ? "#999" : "#000"
            let shape = p.name == "oracle" ? "<rect x=\"\(x(p.latencyMs) - 5)\" y=\"\(y(p.f1) - 5)\" width=\"10\" height=\"10\" fill=\"\(color)\"/>"
                : "<circle cx=\"\(x(p.latencyMs))\" cy=\"\(y(p.f1))\" r=\"4\" fill=\"\(color)\"/>"
            svg += shape + "<text x=\"\(x(p.latencyMs) + 6)\" y=\"\(y(p.f1) - 6)\">\(p.name)</text>"
        }
        svg += "</svg>"
        let table = markdown().split(separator: "\n").filter { $0.hasPrefix("|") && !$0.hasPrefix("|---") }.map { row -> String in
            let cells = row.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
            return "<tr>" + cells.map { "<td>\($0.trimmingCharacters(in: .whitespaces))</td>" }.joined() + "</tr>"
        }.joined(separator: "\n")
        return """
        <!doctype html><html><head><meta charset="utf-8"><title>MambaFormer eval</title>
        <style>body{font-family:sans-serif;margin:2em}td{padding:2px 8px;border-bottom:1px solid #ddd}</style></head><body>
        <h1>MambaFormer routing: latency vs quality</h1>
        <p>\(examples) examples from \(data); checkpoint \(checkpoint); gate \(gateKind). Green: Pareto frontier; dashed: the line between the two single-expert baselines; red square: oracle (best single expert per example); grey: random routing at the gate's ET5 share.</p>
        \(svg)
        <table>\(table)</table>
        <p>Gate cost: \(String(format: "%.0f", gateDecisionUs)) µs per decision vs \(String(format: "%.0f", emambaSpanUs)) µs per EMamba span.</p>
        </body></html>
        """
    }
}

public final class Evaluator {
    public let options: EvaluationOptions
    let log: (String) -> Void

    public init(options: EvaluationOptions, log: @escaping (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.options = options; self.log = log
    }

    public func run() throws -> EvaluationReport {
        let o = options
        let start = Date()
        let checkpoint = try MambaformerCheckpoint(root: o.checkpoint)
        let examples = try QAExample.load(o.data, limit: o.limit)
        guard !examples.isEmpty else { throw GateError.invalidData(file: o.data.path, line: 0, reason: "no examples") }
        let local = try LocalExperts(checkpoint: checkpoint, weightFormat: o.weightFormat)
        let gate = try GateChoice.make(o.gate, gateDirectory: checkpoint.gate)
        var decisionNs: UInt64 = 0, decisions = 0

        func evaluate(_ name: String, costWeight: Float?, route: @escaping (LocalExperts.RouteContext, QAExample) -> PoolKind) throws -> PolicyResult {
            var r = PolicyResult(name: name, costWeight: costWeight)
            var yesNo: [Float] = []
            let progress = ProgressLine(total: examples.count, label: name)
            for (i, e) in examples.enumerated() {
                let request = AnswerRequest(requestId: "\(name)-\(i)", question: e.question, context: e.context,
                                            maxNewTokens: o.maxNewTokens, policy: Policy(costWeight: costWeight ?? 0.5))
                let t0 = DispatchTime.now().uptimeNanoseconds
                let answer = try local.answer(request, spanTokens: o.spanTokens) { route($0, e) }
                let ms = Float(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                let f1 = AnswerMetrics.tokenF1(answer.text, e.answer)
                r.f1PerExample.append(f1); r.latencyPerExampleMs.append(ms)
                let rouge = AnswerMetrics.rougeL(answer.text, e.answer), em = AnswerMetrics.exactMatch(answer.text, e.answer)
                r.rougePerExample.append(rouge); r.exactMatchPerExample.append(em)
                r.f1 += f1; r.rougeL += rouge; r.exactMatch += em
                if let v = AnswerMetrics.yesNoMaybe(answer.text, e.answer) { yesNo.append(v) }
                r.latencyMs += ms
                for (j, span) in answer.spans.enumerated() {
                    if span.pool == .et5 { r.et5Tokens += span.tokens; r.et5Spans += 1 } else { r.emambaTokens += span.tokens }
                    if j > 0, span.pool != answer.spans[j - 1].pool { r.switches += 1 }
                }
                r.spans += answer.spans.count
                progress.update(i + 1)
            }
            progress.finish()
            let n = Float(examples.count)
            r.examples = examples.count
            r.f1 /= n; r.rougeL /= n; r.exactMatch /= n; r.latencyMs /= n
            r.yesNoMaybeCount = yesNo.count
            r.yesNoMaybe = yesNo.isEmpty ? nil : yesNo.reduce(0, +) / Float(yesNo.count)
            log(String(format: "%@: F1 %.3f, ROUGE-L %.3f, EM %.3f, %.1f ms/answer, ET5 share %.1f %%", name, r.f1, r.rougeL, r.exactMatch, r.latencyMs, r.et5Share * 100))
            return r
        }

        var policies: [PolicyResult] = []
        let emambaOnly = try evaluate("emamba-only", costWeight: nil) { _, _ in .emamba }
        let et5Only = try evaluate("et5-only", costWeight: nil) { _, _ in .et5 }
        policies += [emambaOnly, et5Only]
        var gateResults: [PolicyResult] = []
        for w in o.costWeights {
            let r = try evaluate(String(format: "gate@%.2f", w), costWeight: w) { ctx, e in
                let t0 = DispatchTime.now().uptimeNanoseconds
                let d = gate.decide(GateInput(question: e.question, context: e.context, answerSoFar: ctx.answerSoFar,
                                              previous: ctx.previous, previousConfidence: ctx.previousConfidence,
                                              previousEntropy: ctx.previousEntropy, policy: Policy(costWeight: w)))
                decisionNs += DispatchTime.now().uptimeNanoseconds - t0
                decisions += 1
                return d.pool
            }
            gateResults.append(r)
        }
        policies += gateResults
        if o.randomBaselines {
            var rng = SplitMix64(seed: o.seed)
            var seen = Set<Int>()
            for g in gateResults where g.et5Spans > 0 && g.et5Spans < g.spans {
                let q = Float(g.et5Spans) / Float(g.spans)
                guard seen.insert(Int(q * 1000)).inserted else { continue }
                policies.append(try evaluate(String(format: "random@%.0f%%", q * 100), costWeight: nil) { _, _ in
                    (Float(rng.next() >> 40) / Float(1 << 24)) < q ? .et5 : .emamba
                })
            }
        }

        // Oracle: the better single expert per example.
        var oracle = PolicyResult(name: "oracle")
        oracle.examples = examples.count
        for i in examples.indices {
            let useET5 = et5Only.f1PerExample[i] > emambaOnly.f1PerExample[i]
                || (et5Only.f1PerExample[i] == emambaOnly.f1PerExample[i] && et5Only.latencyPerExampleMs[i] < emambaOnly.latencyPerExampleMs[i])
            let chosen = useET5 ? et5Only : emambaOnly
            oracle.f1 += chosen.f1PerExample[i]; oracle.rougeL += chosen.rougePerExample[i]; oracle.exactMatch += chosen.exactMatchPerExample[i]
            oracle.latencyMs += useET5 ? et5Only.latencyPerExampleMs[i] : emambaOnly.latencyPerExampleMs[i]
            // The oracle's "share" counts answers, not tokens (it picks one expert per answer).
            if useET5 { oracle.et5Tokens += 1 } else { oracle.emambaTokens += 1 }
        }
        let n = Float(examples.count)
        oracle.f1 /= n; oracle.rougeL /= n; oracle.exactMatch /= n; oracle.latencyMs /= n

        // Relative figures, baseline line, frontier.
        let pareto = ParetoFrontier.optimal(policies.map { (cost: $0.latencyMs, quality: $0.f1) })
        for i in policies.indices {
            policies[i].paretoOptimal = pareto.contains(i)
            if et5Only.f1 > 0 { policies[i].qualityVsET5 = policies[i].f1 / et5Only.f1 }
            if policies[i].latencyMs > 0 { policies[i].speedupVsET5 = et5Only.latencyMs / policies[i].latencyMs }
            if policies[i].name.hasPrefix("gate") || policies[i].name.hasPrefix("random"),
               let line = ParetoFrontier.line(from: (emambaOnly.latencyMs, emambaOnly.f1), to: (et5Only.latencyMs, et5Only.f1), at: policies[i].latencyMs) {
                policies[i].aboveBaselineLine = policies[i].f1 > line
            }
        }
        let emambaSpanUs = emambaOnly.spans > 0 ? emambaOnly.latencyMs * Float(emambaOnly.examples) * 1000 / Float(emambaOnly.spans) : 0
        return EvaluationReport(checkpoint: o.checkpoint.path, data: o.data.lastPathComponent, examples: examples.count,
                                gateKind: gate.kind, policies: policies, oracle: oracle,
                                gateDecisionUs: decisions > 0 ? Float(decisionNs) / Float(decisions) / 1000 : 0,
                                emambaSpanUs: emambaSpanUs, secondsTotal: Date().timeIntervalSince(start))
    }
}
