import XCTest
import Foundation
@testable import Engine

/// Self-consistency of EMamba on a random checkpoint written in the test: prefill vs
/// step-by-step, batched vs single steps, chunked prefill, snapshots. (Parity with
/// transformers is MambaParityTests, on committed fixtures.)
final class MambaConsistencyTests: XCTestCase {
    var dir: URL!
    var model: MambaModel!
    let ids = [5, 17, 3, 99, 42, 8, 8, 61, 23, 77, 1, 150]

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("mamba-\(UUID().uuidString)")
        try RandomMambaCheckpoint.write(.init(vocabSize: 160, hiddenSize: 32, stateSize: 8, layers: 2), to: dir, seed: 7)
        model = try XCTUnwrap(loadExpertModel(from: dir) as? MambaModel)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    func testLoadsConfig() {
        XCTAssertEqual(model.modelType, "mamba")
        XCTAssertEqual(model.vocabSize, 160)
        XCTAssertEqual(model.eosTokenId, 0)
        XCTAssertEqual(model.config.timeStepRank, 2)     // "auto" = ceil(32/16)
        XCTAssertNil(model.decoderStartTokenId)
        XCTAssertGreaterThan(model.weightBytes, 160 * 32 * 4)
    }

    func testPrefillEqualsTokenByTokenAndChunks() throws {
        let all = try model.feedAll(try model.makeSession(encoderInput: nil), tokens: ids)
        XCTAssertEqual(all.count, ids.count * 160)

        let stepped = try model.makeSession(encoderInput: nil)
        var rows: [Float] = try model.feed(stepped, tokens: [ids[0]])
        for t in ids.dropFirst() { rows += try model.step([stepped], tokens: [t]) }
        XCTAssertLessThan(maxAbsDiff(all, rows), 1e-5)
        XCTAssertEqual(stepped.consumed, ids)

        model.prefillChunk = 5
        let chunked = try model.feedAll(try model.makeSession(encoderInput: nil), tokens: ids)
        model.prefillChunk = 256
        XCTAssertLessThan(maxAbsDiff(all, chunked), 1e-5)

        let last = try model.feed(try model.makeSession(encoderInput: nil), tokens: ids)
        XCTAssertLessThan(maxAbsDiff(Array(all.suffix(160)), last), 1e-5)
        // The context matters (the scan and the conv carry information).
        let alone = try model.feed(try model.makeSession(encoderInput: nil), tokens: [ids.last!])
        XCTAssertGreaterThan(maxAbsDiff(alone, last), 1e-3)
    }

    func testBatchedPrefillEqualsOneFeedEach() throws {
        // Sessions of different lengths, one already part-way (its state carries), packed into
        // passes of 5 rows: sessions share a pass and the 7-token one is split across two.
        let prompts = [[1, 2, 3], [9, 8, 7, 6, 5, 4, 3], [100], [40, 41]]
        let started = try model.makeSession(encoderInput: nil)
        _ = try model.feed(started, tokens: [60, 61])
        let sessions = [try model.makeSession(encoderInput: nil), try model.makeSession(encoderInput: nil),
                        try model.makeSession(encoderInput: nil), started]
        for chunk in [5, 256] {
            model.prefillChunk = chunk
            let fresh = chunk == 5 ? sessions : try sessions.indices.map { i -> ModelSession in
                let s = try model.makeSession(encoderInput: nil)
                if i == 3 { _ = try model.feed(s, tokens: [60, 61]) }
                return s
            }
            let batched = try model.feedMany(fresh, tokens: prompts)
            XCTAssertEqual(batched.count, 4 * 160)
            for (i, p) in prompts.enumerated() {
                let single = try model.feed(try model.makeSession(encoderInput: nil), tokens: (i == 3 ? [60, 61] : []) + p)
                XCTAssertLessThan(maxAbsDiff(Array(batched[(i * 160)..<((i + 1) * 160)]), single), 1e-5, "chunk \(chunk), sequence \(i)")
                XCTAssertEqual(fresh[i].consumed, (i == 3 ? [60, 61] : []) + p)
            }
        }
        model.prefillChunk = 256
        // Refused as a whole, changing nothing: a repeated session, an empty list, a bad id.
        let a = try model.makeSession(encoderInput: nil), b = try model.makeSession(encoderInput: nil)
        XCTAssertThrowsError(try model.feedMany([a, a], tokens: [[1], [2]]))
        XCTAssertThrowsError(try model.feedMany([a, b], tokens: [[1], []]))
        XCTAssertThrowsError(try model.feedMany([a, b], tokens: [[1], [160]]))
        XCTAssertEqual(a.consumed, [])
        XCTAssertEqual(b.consumed, [])
    }

    func testBatchedStepEqualsSingleSteps() throws {
        let prompts = [[1, 2, 3], [9, 8, 7, 6, 5], [100]]
        let sessions = try prompts.map { p -> ModelSession in
            let s = try model.makeSession(encoderInput: nil); _ = try model.feed(s, tokens: p); return s }
        let batched = try model.step(sessions, tokens: [11, 12, 13])
        for (i, p) in prompts.enumerated() {
            let single = try model.feed(try model.makeSession(encoderInput: nil), tokens: p + [11 + i])
            XCTAssertLessThan(maxAbsDiff(Array(batched[(i * 160)..<((i + 1) * 160)]), single), 1e-5, "sequence \(i)")
        }
    }

    func testSnapshotAndTruncate() throws {
        let s = try model.makeSession(encoderInput: nil)
        _ = try model.feed(s, tokens: Array(ids[0..<4]))
        s.markSnapshot()
        _ = try model.feed(s, tokens: Array(ids[4..<8]))
        s.markSnapshot()
        _ = try model.feed(s, tokens: Array(ids[8...]))
        XCTAssertEqual(s.truncate(to: 20), ids.count)    // nothing to drop
        XCTAssertEqual(s.truncate(to: 6), 4)             // largest snapshot ≤ 6
        XCTAssertEqual(s.consumed, Array(ids[0..<4]))
        let resumed = try model.feed(s, tokens: Array(ids[4...]))
        let fresh = try model.feed(try model.makeSession(encoderInput: nil), tokens: ids)
        XCTAssertLessThan(maxAbsDiff(resumed, fresh), 1e-5)
        XCTAssertEqual(s.truncate(to: 3), 0)             // no snapshot ≤ 3: back to empty
        XCTAssertEqual(s.consumed, [])
        let again = try model.feed(s, tokens: ids)
        XCTAssertLessThan(maxAbsDiff(again, fresh), 1e-5)
        XCTAssertGreaterThan(s.memoryBytes, 0)
    }

    func testGreedyGenerationMatchesManualArgmax() throws {
        let out = try generateGreedy(model: model, encoderInput: nil, prefix: ids, maxNewTokens: 8, ignoreEOS: true)
        XCTAssertEqual(out.count, 8)
        let s = try model.makeSession(encoderInput: nil)
        var logits = try model.feed(s, tokens: ids)
        var manual: [Int] = []
        for _ in 0..<8 {
            var masked = logits; masked[0] = -.infinity
            let t = Sampler.argmax(masked)
            manual.append(t)
            logits = try model.step([s], tokens: [t])
        }
        XCTAssertEqual(out, manual)
    }
}
