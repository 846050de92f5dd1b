import XCTest
import Foundation
@testable import Engine

final class SamplerTests: XCTestCase {
    func next(_ s: inout Sampler, _ logits: [Float], history: [Int] = [], suppress: Set<Int> = []) -> (token: Int, logprob: Float, entropy: Float) {
        logits.withUnsafeBufferPointer { s.next(logits: $0, history: history, suppress: suppress) }
    }

    func testGreedyPicksArgmaxWithLogprobAndEntropy() {
        var s = Sampler(temperature: 0, topK: 0, topP: 1, seed: 0, repetitionPenalty: 1)
        let r = next(&s, [0, log(3), 0])       // probabilities 0.2, 0.6, 0.2
        XCTAssertEqual(r.token, 1)
        XCTAssertEqual(r.logprob, log(0.6), accuracy: 1e-6)
        let h = -(0.2 * log(0.2) * 2 + 0.6 * log(0.6))
        XCTAssertEqual(r.entropy, Float(h), accuracy: 1e-6)
    }

    func testSuppressAndRepetitionPenalty() {
        var s = Sampler(temperature: 0, topK: 0, topP: 1, seed: 0, repetitionPenalty: 1)
        XCTAssertEqual(next(&s, [5, 1, 2], suppress: [0]).token, 2)
        var p = Sampler(temperature: 0, topK: 0, topP: 1, seed: 0, repetitionPenalty: 4)
        // 5 / 4 = 1.25 < 2: the repeated token loses; negative scores are multiplied.
        XCTAssertEqual(next(&p, [5, 1, 2], history: [0]).token, 2)
        XCTAssertEqual(next(&p, [-1, -3, -2], history: [0]).token, 2)   // −1·4 = −4
    }

    func testSamplingIsSeededAndRespectsTopK() {
        let logits: [Float] = [1, 1, 1, 1, -1]
        var a = Sampler(temperature: 1, topK: 0, topP: 1, seed: 42, repetitionPenalty: 1)
        var b = Sampler(temperature: 1, topK: 0, topP: 1, seed: 42, repetitionPenalty: 1)
        let seqA = (0..<50).map { _ in next(&a, logits).token }
        let seqB = (0..<50).map { _ in next(&b, logits).token }
        XCTAssertEqual(seqA, seqB)
        XCTAssertGreaterThan(Set(seqA).count, 2)       // it really samples
        var k = Sampler(temperature: 1, topK: 2, topP: 1, seed: 7, repetitionPenalty: 1)
        let picks = Set((0..<100).map { _ in next(&k, logits).token })
        XCTAssertEqual(picks, [0, 1])                  // ties keep the lower ids
    }

    func testTopPKeepsTheSmallestNucleus() {
        // probabilities ≈ 0.665, 0.245, 0.09: top-p 0.6 keeps only the first.
        var s = Sampler(temperature: 1, topK: 0, topP: 0.6, seed: 3, repetitionPenalty: 1)
        let picks = Set((0..<100).map { _ in next(&s, [2, 1, 0]).token })
        XCTAssertEqual(picks, [0])
        var t = Sampler(temperature: 1, topK: 0, topP: 0.8, seed: 3, repetitionPenalty: 1)
        XCTAssertEqual(Set((0..<200).map { _ in next(&t, [2, 1, 0]).token }), [0, 1])
    }
}
