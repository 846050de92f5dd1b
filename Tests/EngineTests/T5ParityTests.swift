import Foundation
import XCTest
@testable import Engine
import Kernels

/// Parity of the Swift T5 with transformers 5.23 on the fixtures written by
/// tools/fixtures/t5_fixtures.py, plus the session mechanics the expert node relies on.
///
/// Tolerances: f32 checkpoints must match to 1e-4 (max abs) on encoder states and logits.
/// The f16 / bf16 checkpoints use the SAME 1e-4: their references were computed by
/// transformers in f32 from exactly the rounded weights stored on disk, and f16/bf16 → f32
/// conversion is exact, so the only differences left are f32 summation order, as for f32
/// files. (Comparing with transformers *computing* in bf16 would need ~1e-1 and test
/// nothing about our code.)
final class T5ParityTests: XCTestCase {
    static let fixtureNames = ["t5-relu-tied", "t5-gated-untied", "t5-gated-bf16", "t5-gelu-f16"]
    static let tolerance: Float = 1e-4

    struct Reference: Decodable {
        let disk_dtype: String
        let input_ids: [Int]
        let encoder_hidden_states: [[Float]]
        let decoder_input_ids: [Int]
        let logits: [[Float]]
        let greedy_new_tokens: Int
        let greedy_ids: [Int]
    }

    static func fixturesDirectory() throws -> URL {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil),
                                "EngineTests resources lack Fixtures/")
        return url
    }

    func fixture(_ name: String) throws -> (T5Model, Reference) {
        let dir = try Self.fixturesDirectory().appendingPathComponent(name)
        let model = try T5Model(directory: dir)
        let data = try Data(contentsOf: dir.appendingPathComponent("reference.json"))
        return (model, try JSONDecoder().decode(Reference.self, from: data))
    }

    func maxAbsError(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) -> Float {
        XCTAssertEqual(a.count, b.count, "length", file: file, line: line)
        var m: Float = 0
        for (x, y) in zip(a, b) {
            let e = abs(x - y)
            if !(e <= m) { m = e.isNaN ? .infinity : e }
        }
        return m
    }

    /// Greedy decoding with EOS masked out (transformers' min_new_tokens), one feed per token.
    func greedy(_ model: T5Model, input: [Int], count: Int) throws -> [Int] {
        let session = try model.makeSession(encoderInput: input)
        var logits = try model.feed(session, tokens: [try XCTUnwrap(model.decoderStartTokenId)])
        var ids: [Int] = []
        for _ in 0..<count {
            logits[model.eosTokenId] = -.infinity
            let next = logits.indices.max { logits[$0] < logits[$1] }!
            ids.append(next)
            logits = try model.feed(session, tokens: [next])
        }
        return ids
    }

    // MARK: parity with transformers

    func testEncoderStatesMatchTransformers() throws {
        for name in Self.fixtureNames {
            let (model, ref) = try fixture(name)
            let states = try model.encode(ref.input_ids)
            let err = maxAbsError(states, ref.encoder_hidden_states.flatMap { $0 })
            XCTAssertLessThanOrEqual(err, Self.tolerance, "\(name) (\(ref.disk_dtype)): encoder max abs error \(err)")
        }
    }

    func testTeacherForcedLogitsMatchTransformers() throws {
        for name in Self.fixtureNames {
            let (model, ref) = try fixture(name)
            // All decoder positions in one pass (multi-row attention path)...
            let session = try model.makeSession(encoderInput: ref.input_ids)
            let all = try model.feedAll(session, tokens: ref.decoder_input_ids)
            let expected = ref.logits.flatMap { $0 }
            let err = maxAbsError(all, expected)
            XCTAssertLessThanOrEqual(err, Self.tolerance, "\(name): teacher-forced logits max abs error \(err)")
            XCTAssertEqual(session.consumed, ref.decoder_input_ids)

            // ...and one token at a time through the KV cache (single-row path).
            let incremental = try model.makeSession(encoderInput: ref.input_ids)
            var rows: [Float] = []
            for t in ref.decoder_input_ids { rows += try model.feed(incremental, tokens: [t]) }
            let err2 = maxAbsError(rows, expected)
            XCTAssertLessThanOrEqual(err2, Self.tolerance, "\(name): incremental logits max abs error \(err2)")

            // feed returns the last row of the same computation.
            let last = try model.feed(try model.makeSession(encoderInput: ref.input_ids), tokens: ref.decoder_input_ids)
            XCTAssertLessThanOrEqual(maxAbsError(last, Array(expected.suffix(model.vocabSize))), Self.tolerance)
        }
    }

    func testGreedy32TokensMatchTransformers() throws {
        for name in Self.fixtureNames {
            let (model, ref) = try fixture(name)
            XCTAssertEqual(ref.greedy_ids.count, 32)
            let ids = try greedy(model, input: ref.input_ids, count: ref.greedy_new_tokens)
            XCTAssertEqual(ids, ref.greedy_ids, "\(name): greedy ids differ")
            // The engine's shared greedy loop (decoder start token, then batched steps).
            let shared = try generateGreedy(model: model, encoderInput: ref.input_ids, prefix: [],
                                            maxNewTokens: ref.greedy_new_tokens, ignoreEOS: true)
            XCTAssertEqual(shared, ref.greedy_ids, "\(name): generateGreedy ids differ")
        }
    }

    func testLoadExpertModelDispatchesT5() throws {
        let dir = try Self.fixturesDirectory().appendingPathComponent("t5-gated-untied")
        let model = try loadExpertModel(from: dir)
        XCTAssertEqual(model.modelType, "t5")
        XCTAssertTrue(model is T5Model)
        XCTAssertEqual(model.vocabSize, 300)
        XCTAssertEqual(model.eosTokenId, 1)
        XCTAssertEqual(model.decoderStartTokenId, 0)
        XCTAssertGreaterThan(model.weightBytes, 1_000_000)
    }

    func testRelativePositionBucketsMatchTransformers() throws {
        struct Case: Decodable { let num_buckets: Int; let max_distance: Int; let bidirectional: Bool; let buckets: [Int] }
        struct Table: Decodable { let relative_positions: [Int]; let cases: [Case] }
        let data = try Data(contentsOf: try Self.fixturesDirectory().appendingPathComponent("t5-buckets.json"))
        let table = try JSONDecoder().decode(Table.self, from: data)
        XCTAssertEqual(table.cases.count, 6)
        for c in table.cases {
            let ours = table.relative_positions.map {
                relativePositionBucket($0, bidirectional: c.bidirectional, numBuckets: c.num_buckets, maxDistance: c.max_distance)
            }
            XCTAssertEqual(ours, c.buckets, "buckets \(c.num_buckets)/\(c.max_distance) bidirectional \(c.bidirectional)")
        }
    }

    // MARK: sessions

    func testBatchedStepEqualsPerSessionFeed() throws {
        let (model, ref) = try fixture("t5-gated-untied")
        // The last session is brand new: its first step is the decoder start token.
        let prompts = [ref.input_ids, Array(ref.input_ids.prefix(5)), Array(ref.input_ids.reversed().prefix(13)), [9, 8, 7, 1]]
        let prefixes = [[0, 5, 17], [0], [0, 250, 3, 9, 44, 120, 7], []]
        let next = [42, 7, 199, 0]

        // Batched: three sessions of different prompt and decoder lengths, one step.
        let batched = try zip(prompts, prefixes).map { p, pre -> ModelSession in
            let s = try model.makeSession(encoderInput: p)
            if !pre.isEmpty { _ = try model.feed(s, tokens: pre) }
            return s
        }
        let stepped = try model.step(batched, tokens: next)
        XCTAssertEqual(stepped.count, 4 * model.vocabSize)

        // Reference: each alone, the whole decoder sequence fed at once.
        for i in 0..<4 {
            let alone = try model.makeSession(encoderInput: prompts[i])
            let expected = try model.feed(alone, tokens: prefixes[i] + [next[i]])
            let row = Array(stepped[(i * model.vocabSize)..<((i + 1) * model.vocabSize)])
            let err = maxAbsError(row, expected)
            // Same math, other GEMM shapes (3 rows vs m rows): f32 rounding only.
            XCTAssertLessThanOrEqual(err, 5e-5, "session \(i): batched step differs by \(err)")
            XCTAssertEqual(batched[i].consumed, prefixes[i] + [next[i]])
        }

        // A second step keeps them consistent (the caches grew correctly).
        let stepped2 = try model.step(batched, tokens: [1, 2, 3, 4])
        for i in 0..<4 {
            let alone = try model.makeSession(encoderInput: prompts[i])
            let expected = try model.feed(alone, tokens: prefixes[i] + [next[i], i + 1])
            let err = maxAbsError(Array(stepped2[(i * model.vocabSize)..<((i + 1) * model.vocabSize)]), expected)
            XCTAssertLessThanOrEqual(err, 5e-5, "session \(i): second batched step differs by \(err)")
        }
    }

    func testBatchedPrefillEqualsPerSessionFeed() throws {
        let (model, ref) = try fixture("t5-gated-untied")
        let prompts = [ref.input_ids, Array(ref.input_ids.prefix(5)), [9, 8, 7, 1]]
        let decoder = [[0, 5, 17, 250], [0], [0, 44, 120]]
        let sessions = try prompts.map { try model.makeSession(encoderInput: $0) }
        let batched = try model.feedMany(sessions, tokens: decoder)
        XCTAssertEqual(batched.count, 3 * model.vocabSize)
        for i in 0..<3 {
            let expected = try model.feed(try model.makeSession(encoderInput: prompts[i]), tokens: decoder[i])
            let err = maxAbsError(Array(batched[(i * model.vocabSize)..<((i + 1) * model.vocabSize)]), expected)
            XCTAssertLessThanOrEqual(err, 5e-5, "session \(i): batched prefill differs by \(err)")
            XCTAssertEqual(sessions[i].consumed, decoder[i])
        }
    }

    func testTruncateThenRefeedEqualsFreshRun() throws {
        for name in ["t5-relu-tied", "t5-gated-untied"] {
            let (model, ref) = try fixture(name)
            let session = try model.makeSession(encoderInput: ref.input_ids)
            // Long enough to grow the cache past its first capacity. One token per call on
            // both sides below, so both runs do identical arithmetic row by row.
            let long = ref.decoder_input_ids + ref.decoder_input_ids.reversed() + [5, 6, 7]
            for t in long { _ = try model.feed(session, tokens: [t]) }
            XCTAssertEqual(session.truncate(to: 4), 4)
            XCTAssertEqual(session.consumed, Array(long.prefix(4)))
            let continuation = [77, 78, 79, 80, 81]
            var afterTruncate: [Float] = []
            for t in continuation { afterTruncate += try model.feed(session, tokens: [t]) }

            // A session that never saw the dropped tokens: any difference would be stale rows.
            let fresh = try model.makeSession(encoderInput: ref.input_ids)
            var expected: [Float] = []
            for t in long.prefix(4) { _ = try model.feed(fresh, tokens: [t]) }
            for t in continuation { expected += try model.feed(fresh, tokens: [t]) }
            XCTAssertEqual(afterTruncate, expected, "\(name): truncate + re-feed differs from a fresh run")
            // And the whole sequence in one pass agrees to f32 rounding (other GEMM shapes).
            let onePass = try model.feedAll(try model.makeSession(encoderInput: ref.input_ids),
                                            tokens: Array(long.prefix(4)) + continuation)
            let err2 = maxAbsError(afterTruncate, Array(onePass.suffix(continuation.count * model.vocabSize)))
            XCTAssertLessThanOrEqual(err2, Self.tolerance, "\(name): truncate + re-feed vs one pass: \(err2)")

            // Asking to keep more than exists keeps everything; 0 empties the decoder side.
            XCTAssertEqual(session.truncate(to: 1000), 9)
            XCTAssertEqual(session.truncate(to: -3), 0)
            XCTAssertEqual(session.consumed, [])
            let restart = try model.feedAll(session, tokens: ref.decoder_input_ids)
            XCTAssertLessThanOrEqual(maxAbsError(restart, ref.logits.flatMap { $0 }), Self.tolerance)
            session.markSnapshot()  // a no-op for T5, must not disturb anything
            XCTAssertGreaterThan(session.memoryBytes, 0)
        }
    }

    // MARK: bad input

    func testBadInputsAreRefusedWithoutChangingTheSession() throws {
        let (model, ref) = try fixture("t5-relu-tied")
        XCTAssertThrowsError(try model.makeSession(encoderInput: nil))
        XCTAssertThrowsError(try model.makeSession(encoderInput: []))
        XCTAssertThrowsError(try model.makeSession(encoderInput: [3, 300])) { error in
            XCTAssertEqual(error as? EngineError, .tokenOutOfRange(token: 300, vocabSize: 300))
        }
        XCTAssertThrowsError(try model.encode([-1]))

        let s = try model.makeSession(encoderInput: ref.input_ids)
        _ = try model.feed(s, tokens: [0, 4])
        XCTAssertThrowsError(try model.feed(s, tokens: []))
        XCTAssertThrowsError(try model.feed(s, tokens: [5, 999]))
        XCTAssertThrowsError(try model.step([s], tokens: [1, 2]))
        XCTAssertThrowsError(try model.step([s, s], tokens: [1, 2]))
        XCTAssertThrowsError(try model.step([], tokens: []))
        let (other, _) = try fixture("t5-gated-untied")
        let foreign = try other.makeSession(encoderInput: [5, 6])
        XCTAssertThrowsError(try model.step([s, foreign], tokens: [1, 2]))
        // Nothing above changed s: it still continues exactly like a fresh run.
        XCTAssertEqual(s.consumed, [0, 4])
        let cont = try model.feed(s, tokens: [9])
        let fresh = try model.feed(try model.makeSession(encoderInput: ref.input_ids), tokens: [0, 4, 9])
        XCTAssertLessThanOrEqual(maxAbsError(cont, fresh), Self.tolerance)
    }

    /// A copy of a fixture with config.json edited by `edit`.
    func editedCheckpoint(_ name: String, _ edit: (inout [String: Any]) -> Void) throws -> URL {
        let src = try Self.fixturesDirectory().appendingPathComponent(name)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("t5-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: src.appendingPathComponent("model.safetensors"),
                                         to: dir.appendingPathComponent("model.safetensors"))
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as? [String: Any])
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("config.json"))
        return dir
    }

    func assertRefused(_ name: String, mentions: String, _ edit: (inout [String: Any]) -> Void,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try editedCheckpoint(name, edit)
        XCTAssertThrowsError(try T5Model(directory: dir), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(error is EngineError, "untyped error \(text)", file: file, line: line)
            XCTAssertTrue(text.contains(mentions), "'\(text)' does not mention '\(mentions)'", file: file, line: line)
        }
    }

    func testBadConfigValuesAreRefused() throws {
        let relu = "t5-relu-tied", gated = "t5-gated-untied"
        try assertRefused(relu, mentions: "model_type") { $0["model_type"] = "bert" }
        try assertRefused(relu, mentions: "feed_forward_proj") { $0["feed_forward_proj"] = "gated-mish" }
        try assertRefused(relu, mentions: "feed_forward_proj") { $0["feed_forward_proj"] = "gated-gelu-new" }
        try assertRefused(relu, mentions: "feed_forward_proj") { $0["feed_forward_proj"] = "fancy-gelu" }
        try assertRefused(relu, mentions: "relative_attention_num_buckets") { $0["relative_attention_num_buckets"] = 2 }
        try assertRefused(relu, mentions: "relative_attention_max_distance") { $0["relative_attention_max_distance"] = 8 }
        try assertRefused(relu, mentions: "layer_norm_epsilon") { $0["layer_norm_epsilon"] = -1.0 }
        try assertRefused(relu, mentions: "d_model") { $0["d_model"] = 0 }
        try assertRefused(relu, mentions: "is_encoder_decoder") { $0["is_encoder_decoder"] = false }
        try assertRefused(relu, mentions: "eos_token_id") { $0["eos_token_id"] = 5000 }
        try assertRefused(relu, mentions: "num_heads") { $0["num_heads"] = "four" }
        // Config and weights disagree: fewer layers declared than stored, more declared than stored,
        // another width, a missing untied head.
        try assertRefused(gated, mentions: "decoder.block.2") { $0["num_decoder_layers"] = 2 }
        try assertRefused(gated, mentions: "decoder.block.3") { $0["num_decoder_layers"] = 4 }
        try assertRefused(relu, mentions: "shape") { $0["d_ff"] = 256 }
        try assertRefused(relu, mentions: "wi_0") { $0["feed_forward_proj"] = "gated-gelu" }
        try assertRefused(relu, mentions: "lm_head.weight") { $0["tie_word_embeddings"] = false }
    }

    func testConfigDefaultsAndVariants() throws {
        // An old t5-small style config (no max distance, no num_decoder_layers, no start id).
        let dir = try editedCheckpoint("t5-relu-tied") {
            $0.removeValue(forKey: "relative_attention_max_distance")
            $0.removeValue(forKey: "num_decoder_layers")
            $0.removeValue(forKey: "decoder_start_token_id")
            $0.removeValue(forKey: "tie_word_embeddings")
        }
        let model = try T5Model(directory: dir)
        XCTAssertEqual(model.config.relativeAttentionMaxDistance, 128)
        XCTAssertEqual(model.config.numDecoderLayers, 2)
        XCTAssertEqual(model.decoderStartTokenId, 0)
        XCTAssertTrue(model.config.tieWordEmbeddings)
        XCTAssertTrue(model.config.scaleDecoderOutputs)

        // transformers 5 writes untied checkpoints as tie_word_embeddings: true plus
        // scale_decoder_outputs: false (with lm_head.weight in the file), and moves the start
        // id to generation_config.json: same model, same logits.
        let v5 = try editedCheckpoint("t5-gated-untied") {
            $0["tie_word_embeddings"] = true
            $0["scale_decoder_outputs"] = false
            $0["decoder_start_token_id"] = NSNull()
        }
        try Data(#"{"decoder_start_token_id": 0, "eos_token_id": [1]}"#.utf8)
            .write(to: v5.appendingPathComponent("generation_config.json"))
        let v5Model = try T5Model(directory: v5)
        let (_, ref) = try fixture("t5-gated-untied")
        let logits = try v5Model.feedAll(try v5Model.makeSession(encoderInput: ref.input_ids), tokens: ref.decoder_input_ids)
        XCTAssertLessThanOrEqual(maxAbsError(logits, ref.logits.flatMap { $0 }), Self.tolerance)
        XCTAssertEqual(v5Model.decoderStartTokenId, 0)
        try Data(#"{"decoder_start_token_id": 5}"#.utf8).write(to: v5.appendingPathComponent("generation_config.json"))
        XCTAssertEqual(try T5Config(directory: v5).decoderStartTokenId, 5)

        let flan = try T5Config(directory: try Self.fixturesDirectory().appendingPathComponent("t5-gated-untied"))
        XCTAssertTrue(flan.isGatedAct)
        XCTAssertEqual(flan.activation, .geluNew)
        XCTAssertFalse(flan.scaleDecoderOutputs)
        XCTAssertEqual(flan.numDecoderLayers, 3)
        let gelu = try T5Config(directory: try Self.fixturesDirectory().appendingPathComponent("t5-gelu-f16"))
        XCTAssertEqual(gelu.activation, .gelu)
        XCTAssertFalse(gelu.isGatedAct)
        XCTAssertEqual(gelu.layerNormEpsilon, 1e-5)
    }
}
