import XCTest
import Foundation
@testable import Engine

final class SamplerTests: XCTestCase {
    func next(_ s: inout Sampler, _ logits: [Float], history: [Int] = [], suppress: Set<Int> = []) -> (token: Int, logprob: Float, entropy: Float) {
        let r = logits.withUnsafeBufferPointer { s.next(logits: $0, history: history, suppress: suppress) }
        return (r.token, r.logprob, r.entropy)
    }

    /// `top_logprobs`: the most likely tokens of the model's distribution (after suppression and
    /// the repetition penalty, before temperature), most likely first, the lower id on a tie.
    func testAlternativesAreTheMostLikelyTokensWithTheirLogprobs() {
        var s = Sampler(temperature: 1.5, topK: 0, topP: 1, seed: 3, repetitionPenalty: 1)
        let logits: [Float] = [0, log(3), 0, log(4), -.infinity]   // 0.1, 0.3, 0.1, 0.4, 0 (+0.1 below)
        let full = logits + [0]
        let r = full.withUnsafeBufferPointer { s.next(logits: $0, history: [], suppress: [], alternatives: 3) }
        XCTAssertEqual(r.top.map(\.token), [3, 1, 0])
        XCTAssertEqual(r.top[0].logprob, log(0.4), accuracy: 1e-6)
        XCTAssertEqual(r.top[1].logprob, log(0.3), accuracy: 1e-6)
        XCTAssertEqual(r.top[2].logprob, log(0.1), accuracy: 1e-6)
        let suppressed = full.withUnsafeBufferPointer { s.next(logits: $0, history: [], suppress: [3], alternatives: 8) }
        XCTAssertEqual(suppressed.top.map(\.token), [1, 0, 2, 5], "a suppressed or impossible token is no alternative")
        let none = full.withUnsafeBufferPointer { s.next(logits: $0, history: [], suppress: []) }
        XCTAssertTrue(none.top.isEmpty)
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
