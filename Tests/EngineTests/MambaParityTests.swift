import XCTest
import Foundation
@testable import Engine

/// Parity with transformers 5.23 (MambaForCausalLM, eager, f32) on the committed fixtures
/// made by tools/fixtures/make_mamba_fixtures.py.
///
/// Tolerances: 1e-4 max abs logit error for every fixture, including the bf16 / f16 copies,
/// because their references are computed in f32 from exactly the rounded weights on disk (the
/// engine upcasts them exactly on load, so only f32 summation order differs). How far the
/// rounding itself moves the logits (vs the f32 model) is recorded in the fixture as
/// `logits_vs_f32_max_abs` and is not a property of this engine.
final class MambaParityTests: XCTestCase {
    struct Reference: Decodable {
        let input_ids: [Int]
        let logits: [[Float]]
        let greedy_ids: [Int]
        let greedy_ids_ignore_eos: [Int]
        let max_new_tokens: Int
    }

    static func fixture(_ name: String) throws -> URL {
        let base = try XCTUnwrap(Bundle.module.resourceURL).appendingPathComponent("Fixtures").appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: base.appendingPathComponent("config.json").path) else {
            XCTFail("fixture \(name) missing: the fixtures are committed")
            throw CocoaError(.fileNoSuchFile)
        }
        return base
    }

    func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try Self.fixture(name)
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: dir.appendingPathComponent("reference.json")))
        let model = try loadExpertModel(from: dir)
        XCTAssertEqual(model.modelType, "mamba")
        let vocab = model.vocabSize
        XCTAssertEqual(ref.logits.first?.count, vocab, file: file, line: line)

        // Forward pass over the prompt: every position.
        let all = try model.feedAll(try model.makeSession(encoderInput: nil), tokens: ref.input_ids)
        var worst: Float = 0
        for (p, row) in ref.logits.enumerated() {
            for v in 0..<vocab { worst = max(worst, abs(all[p * vocab + v] - row[v])) }
        }
        XCTAssertLessThanOrEqual(worst, 1e-4, "\(name): max abs logit error \(worst)", file: file, line: line)

        // Greedy decoding through the batched step path, with and without EOS.
        let forced = try generateGreedy(model: model, encoderInput: nil, prefix: ref.input_ids,
                                        maxNewTokens: ref.max_new_tokens, ignoreEOS: true)
        XCTAssertEqual(forced, ref.greedy_ids_ignore_eos, "\(name) greedy (ignore EOS)", file: file, line: line)
        XCTAssertEqual(forced.count, 32, file: file, line: line)
        let greedy = try generateGreedy(model: model, encoderInput: nil, prefix: ref.input_ids,
                                        maxNewTokens: ref.max_new_tokens, ignoreEOS: false)
        XCTAssertEqual(greedy, ref.greedy_ids, "\(name) greedy", file: file, line: line)
        print("parity \(name): max abs logit error \(worst)")
    }

    func testTinyF32() throws { try check("mamba-tiny-f32") }
    func testTinyBF16() throws { try check("mamba-tiny-bf16") }
    func testTinyF16() throws { try check("mamba-tiny-f16") }
    func testUntiedWithBiasesF32() throws { try check("mamba-untied-bias-f32") }

    /// The prompt fed as a prefix plus single steps gives the same logits as the forward pass
    /// (the decode path the node uses for continuation).
    func testStepPathMatchesReferenceLogits() throws {
        let dir = try Self.fixture("mamba-tiny-f32")
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: dir.appendingPathComponent("reference.json")))
        let model = try loadExpertModel(from: dir)
        let s = try model.makeSession(encoderInput: nil)
        var worst: Float = 0
        for (p, t) in ref.input_ids.enumerated() {
            let row = p == 0 ? try model.feed(s, tokens: [t]) : try model.step([s], tokens: [t])
            for v in 0..<model.vocabSize { worst = max(worst, abs(row[v] - ref.logits[p][v])) }
        }
        XCTAssertLessThanOrEqual(worst, 1e-4)
    }
}
