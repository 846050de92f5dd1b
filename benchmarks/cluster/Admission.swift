// cluster-bench admission: what admitting one request costs the router's single thread, in
// process (no sockets): the prompt counted in both pools' tokens, then the gate's first
// decision. Ordinary prompts up to the token limit, and the hostile ones of issue 14 that
// the router refuses (they cost the counting only). Each repeat varies the prompt, so the
// gate's prompt cache never hits.
import Engine
import Foundation
import Gate
import RouterNode
import Wire

func admissionBenchmark(model: String, repeats: Int) throws {
    let checkpoint = try MambaformerCheckpoint(root: URL(fileURLWithPath: model))
    let counter = try TokenizerPromptCounter(emamba: checkpoint.emamba, et5: checkpoint.et5)
    let gate = try GateChoice.make("auto", gateDirectory: checkpoint.gate)
    let seed = (try? String(contentsOfFile: "tools/fixtures/tokenizers/corpus_seed.txt", encoding: .utf8)) ?? "the gums are inflamed"
    let words = seed.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
    func ordinary(_ bytes: Int) -> String {
        var out = "", i = 0
        while out.utf8.count < bytes { out += words[i % words.count] + " "; i += 1 }
        return out
    }
    let cases: [(String, String)] = [
        ("ordinary, 1 KB", ordinary(1_000)),
        ("ordinary, ~max tokens (4 KB)", ordinary(4_000)),
        ("ordinary, 32 KB (refused)", ordinary(32_000)),
        ("ﬃ × 10,900 (refused)", String(repeating: "\u{FB03}", count: 10_900)),
        ("㏂ × 7,900 (refused)", String(repeating: "\u{33C2}", count: 7_900)),
        ("a × 31,990 (refused)", String(repeating: "a", count: 31_990)),
        ("a-space × 15,990 (refused)", String(repeating: "a ", count: 15_990)),
        ("combining marks × 16,000 (refused)", "a" + String(repeating: "\u{0301}", count: 16_000)),
    ]
    let gateway: [UInt8] = [0xAA]
    for (name, text) in cases {
        var total: [Double] = [], counting: [Double] = [], deciding: [Double] = []
        var outcome = ""
        for r in 0..<repeats {
            let context = "\(r) " + text
            let core = RouterCore(config: RouterConfig(), gate: gate, counter: counter)
            for (id, pool) in [([UInt8(1)], PoolKind.emamba), ([2], .et5)] {
                _ = core.expertFrame(id, .success(Envelope(.ready(Ready(pool: pool, modelId: "m", replicaId: "\(pool)", capacity: 8,
                                                                         softwareVersion: "bench")))), now: 0)
            }
            let request = AnswerRequest(requestId: "r\(r)", question: "What is this?", context: context, maxNewTokens: 16)
            let t0 = nowNs()
            let actions = core.gatewayFrame(gateway, .success(Envelope(.answerRequest(request))), now: 1)
            total.append(Double(nowNs() - t0) / 1000)
            outcome = actions.contains { if case .toExpert = $0 { return true }; return false } ? "admitted" : "refused"
            // The parts, on a fresh prompt each.
            let prompt = "\(r)' " + request.canonicalPrompt
            let t1 = nowNs()
            _ = try counter.promptTokens(prompt, pool: .emamba)
            _ = try counter.promptTokens(prompt, pool: .et5)
            counting.append(Double(nowNs() - t1) / 1000)
            if outcome == "admitted" {
                let t2 = nowNs()
                _ = gate.decide(GateInput(question: "What is this?", context: "\(r)'' " + text, answerSoFar: "",
                                          previous: nil, previousConfidence: nil, previousEntropy: nil,
                                          policy: Policy(costWeight: 0.5, forced: .unspecified)))
                deciding.append(Double(nowNs() - t2) / 1000)
            }
        }
        let tokens = (try? counter.promptTokens("question: What is this? context: " + text, pool: .emamba)) ?? 0
        let t5Tokens = (try? counter.promptTokens("question: What is this? context: " + text, pool: .et5)) ?? 0
        print("{\"bench\":\"admission\",\"case\":\"\(name)\",\"bytes\":\(text.utf8.count),\"emamba_tokens\":\(tokens),"
              + "\"et5_tokens\":\(t5Tokens),\"outcome\":\"\(outcome)\",\"gate\":\"\(gate.kind)\",\"admit\":{\(summary(total))},"
              + "\"count_both\":{\(summary(counting))}" + (deciding.isEmpty ? "" : ",\"gate_decision\":{\(summary(deciding))}") + "}")
    }
}
