import Gate
import Engine
import Generation
import Foundation
import Vocabulary

/// The gate's cost per span decision against the cost of the span it decides: the issue asks
/// for well under 1 % of an EMamba span. Decisions are timed cold (first sight of a prompt:
/// it is tokenized) and warm (later spans of the same request: prompt cached, answer so far
/// re-tokenized); spans are EMamba generating `spanTokens` tokens for the same prompt.
public struct GateBenchmark {
    public struct Result: Codable, Sendable {
        public var examples: Int
        public var coldDecisionUs: Float
        public var warmDecisionUs: Float
        public var emambaSpanUs: Float
        public var spanTokens: Int
        public var warmShareOfSpan: Float { emambaSpanUs > 0 ? warmDecisionUs / emambaSpanUs : 0 }
        public var coldShareOfSpan: Float { emambaSpanUs > 0 ? coldDecisionUs / emambaSpanUs : 0 }
    }

    public static func run(checkpoint root: URL, data: URL, limit: Int, spanTokens: UInt32 = 16) throws -> Result {
        let checkpoint = try MambaformerCheckpoint(root: root)
        guard let dir = checkpoint.gate else { throw GateError.missingFile(root.appendingPathComponent("gate").path) }
        let bundle = try GateBundle.load(from: dir)
        let examples = try QAExample.load(data, limit: limit)
        guard !examples.isEmpty else { throw GateError.invalidData(file: data.path, line: 0, reason: "no examples") }
        let local = try LocalExperts(checkpoint: checkpoint, ignoreEOS: true)
        var cold: [Float] = [], warm: [Float] = [], spans: [Float] = []
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        for (i, e) in examples.enumerated() {
            // One EMamba span (prefill + spanTokens decode steps), then decisions over its text.
            let request = AnswerRequest(requestId: "bench-\(i)", question: e.question, context: e.context, maxNewTokens: spanTokens)
            let t0 = now()
            let answer = try local.answer(request, spanTokens: spanTokens) { _ in .emamba }
            spans.append(Float(now() - t0) / 1000)
            let gate = TrainedGate(bundle: bundle)  // empty prompt cache: a cold decision
            let input = GateInput(question: e.question, context: e.context, answerSoFar: "", previous: nil,
                                  previousConfidence: nil, policy: Policy())
            let t1 = now()
            _ = gate.decide(input)
            cold.append(Float(now() - t1) / 1000)
            var next = input
            next.answerSoFar = answer.text; next.previous = .emamba; next.previousConfidence = 0.5; next.previousEntropy = 2
            let t2 = now()
            _ = gate.decide(next)
            warm.append(Float(now() - t2) / 1000)
        }
        func median(_ v: [Float]) -> Float { let s = v.sorted(); return s[s.count / 2] }
        return Result(examples: examples.count, coldDecisionUs: median(cold), warmDecisionUs: median(warm),
                      emambaSpanUs: median(spans), spanTokens: Int(spanTokens))
    }
}
