import Engine
import Foundation
import TestCommon
import Tokenizers
import Vocabulary
import XCTest
@testable import Generation

/// The span scheduler with the demo tokenizer and a fake causal model whose next token is a
/// fixed script: continuous batching, span budgets, the session cache, deadlines, limits.
final class SpanSchedulerTests: XCTestCase {
    /// A causal model (Mamba-like: no encoder) that, whatever it has read, predicts the next
    /// id of `script` (by how many tokens it generated), then EOS.
    final class ScriptedModel: ExpertModel {
        final class Session: ModelSession {
            var encoderInput: [Int]? { nil }
            var consumed: [Int] = []
            var snapshot = 0
            func markSnapshot() { snapshot = consumed.count }
            func truncate(to count: Int) -> Int {
                let kept = min(count, snapshot)
                consumed.removeLast(consumed.count - kept)
                return kept
            }
            var memoryBytes: Int { 64 }
        }
        let script: [Int]
        let vocabSize: Int
        let eosTokenId: Int
        var feeds: [[Int]] = []
        var batches: [Int] = []
        var modelType: String { "mamba" }
        var weightBytes: Int { 0 }
        var decoderStartTokenId: Int? { nil }

        init(script: [Int], vocabSize: Int, eos: Int) { self.script = script; self.vocabSize = vocabSize; self.eosTokenId = eos }

        func makeSession(encoderInput: [Int]?) throws -> ModelSession { Session() }
        func feed(_ session: ModelSession, tokens: [Int]) throws -> [Float] {
            let s = session as! Session
            feeds.append(tokens)
            s.consumed += tokens
            return logits(after: s)
        }
        /// The session count of each batched prefill.
        var prefills: [Int] = []
        func feedMany(_ sessions: [ModelSession], tokens: [[Int]]) throws -> [Float] {
            prefills.append(sessions.count)
            var rows: [Float] = []
            for (session, seq) in zip(sessions, tokens) { rows += try feed(session, tokens: seq) }
            return rows
        }
        func step(_ sessions: [ModelSession], tokens: [Int]) throws -> [Float] {
            batches.append(sessions.count)
            var rows: [Float] = []
            for (session, token) in zip(sessions, tokens) {
                let s = session as! Session
                s.consumed.append(token)
                rows += logits(after: s)
            }
            return rows
        }
        /// The tokens generated so far: the longest prefix of the script the session ends with.
        private func logits(after s: Session) -> [Float] {
            var generated = 0
            for g in stride(from: min(script.count, s.consumed.count), through: 1, by: -1)
            where Array(s.consumed.suffix(g)) == Array(script.prefix(g)) {
                generated = g
                break
            }
            var row = [Float](repeating: -10, count: vocabSize)
            row[generated < script.count ? script[generated] : eosTokenId] = 10
            return row
        }
    }

    var tokenizer: Tokenizer!
    var script: [Int] = []

    override func setUpWithError() throws {
        tokenizer = try Tokenizer.load(from: TestPaths.repositoryRoot.appendingPathComponent("models/demo/emamba/tokenizer.json"))
        script = try tokenizer.encode(" the patient should rinse twice daily", addSpecialTokens: false).ids
    }

    func makeScheduler(_ model: ScriptedModel, limits: SpanScheduler.Limits = .init()) -> SpanScheduler {
        SpanScheduler(model: model, tokenizer: tokenizer, format: PromptFormat(), pool: .emamba, replicaId: "emamba-1",
                      cache: SessionCache(maxEntries: 8, maxBytes: 1 << 20), limits: limits)
    }

    func request(_ id: String, answerSoFar: String = "", budget: UInt32 = 3) -> SpanRequest {
        SpanRequest(requestId: id, spanIndex: answerSoFar.isEmpty ? 0 : 1, prompt: "question: how to rinse?",
                    answerSoFar: answerSoFar, maxNewTokens: budget, sessionHint: id)
    }

    func run(_ scheduler: SpanScheduler, _ first: SpanOutcome?, now: UInt64 = 0) -> [SpanOutcome] {
        var out = first.map { [$0] } ?? []
        while scheduler.activeCount > 0 { out += scheduler.step(now: now) }
        return out
    }

    func testSpansBatchTogetherAndEndAtTheirBudget() throws {
        let model = ScriptedModel(script: script, vocabSize: tokenizer.vocabSize, eos: 0)
        let scheduler = makeScheduler(model)
        XCTAssertNil(scheduler.admit(request("a"), deadline: 0, now: 0))
        XCTAssertNil(scheduler.admit(request("b"), deadline: 0, now: 0))
        let outcomes = run(scheduler, nil)
        XCTAssertEqual(outcomes.count, 2)
        XCTAssertEqual(model.batches.first, 2, "both sequences advanced in one batched step")
        for outcome in outcomes {
            guard case .result(let r) = outcome else { return XCTFail("\(outcome)") }
            XCTAssertEqual(r.pieces.map { Int($0.tokenId) }, Array(script.prefix(3)))
            XCTAssertEqual(r.finish, .none, "budget reached, more may follow")
            XCTAssertEqual(r.text, try tokenizer.decode(Array(script.prefix(3))).trimmingCharacters(in: .whitespaces))
        }
    }

    /// Spans admitted together share one prefill and then decode exactly as if admitted one by one;
    /// a refused span among them fails alone.
    func testSpansAdmittedTogetherShareOnePrefill() throws {
        let model = ScriptedModel(script: script, vocabSize: tokenizer.vocabSize, eos: 0)
        let scheduler = makeScheduler(model, limits: { var l = SpanScheduler.Limits(); l.maxPromptBytes = 64; return l }())
        var tooLong = request("c")
        tooLong.prompt = String(repeating: "x", count: 65)
        let refused = scheduler.admit([(request("a"), 0), (tooLong, 0), (request("b"), 0)], now: 0)
        guard case .failure(let id, _)? = refused.first, refused.count == 1 else { return XCTFail("\(refused)") }
        XCTAssertEqual(id, "c")
        XCTAssertEqual(model.prefills, [2], "a and b in one batched prefill")
        let outcomes = run(scheduler, nil)
        XCTAssertEqual(outcomes.count, 2)
        for outcome in outcomes {
            guard case .result(let r) = outcome else { return XCTFail("\(outcome)") }
            XCTAssertEqual(r.pieces.map { Int($0.tokenId) }, Array(script.prefix(3)))
        }
    }

    /// A sampled request that does not set top_p samples (the wire's 0 is "off"), seeded:
    /// the same seed gives the same tokens, another seed other tokens.
    func testSamplingWithoutTopPIsNotGreedy() throws {
        func sample(seed: UInt64) throws -> [Int] {
            let model = ScriptedModel(script: script, vocabSize: tokenizer.vocabSize, eos: 0)
            let scheduler = makeScheduler(model)
            var span = request("s", budget: 6)
            span.sampling = Sampling(temperature: 100, topP: 0, topK: 0, seed: seed, repetitionPenalty: 0)
            let outcomes = run(scheduler, scheduler.admit(span, deadline: 0, now: 0))
            guard case .result(let r)? = outcomes.first else { XCTFail("no result: \(outcomes)"); return [] }
            return r.pieces.map { Int($0.tokenId) }
        }
        let first = try sample(seed: 7)
        XCTAssertNotEqual(first, Array(script.prefix(first.count)), "temperature 100 without top_p decoded greedily")
        XCTAssertEqual(try sample(seed: 7), first, "same seed, same tokens")
        XCTAssertNotEqual(try sample(seed: 8), first)
    }

    func testTheNextSpanReusesTheCachedSessionAndEndsAtEOS() throws {
        let model = ScriptedModel(script: script, vocabSize: tokenizer.vocabSize, eos: 0)
        let scheduler = makeScheduler(model)
        // The first span ends at a word boundary, so the answer so far re-tokenizes to the same ids.
        let words = try tokenizer.encode(" the patient", addSpecialTokens: false).ids
        XCTAssertEqual(Array(script.prefix(words.count)), words)
        let firstSpan = request("a", budget: UInt32(words.count))
        guard case .result(let first)? = run(scheduler, scheduler.admit(firstSpan, deadline: 0, now: 0)).first else { return XCTFail() }
        let rest = run(scheduler, scheduler.admit(request("a", answerSoFar: first.text, budget: 64), deadline: 0, now: 0))
        guard case .result(let second)? = rest.first else { return XCTFail("\(rest)") }
        XCTAssertGreaterThan(second.cachedPrefixTokens, 0, "the session cache served the prompt")
        XCTAssertEqual(second.finish, .eos)
        XCTAssertEqual((first.text + second.text).replacingOccurrences(of: " ", with: ""),
                       try tokenizer.decode(script).replacingOccurrences(of: " ", with: ""))
        // Cancel forgets the session: the next span recomputes.
        scheduler.cancel(requestId: "a")
        guard case .result(let again)? = run(scheduler, scheduler.admit(request("a", answerSoFar: first.text, budget: 2), deadline: 0, now: 0)).first
        else { return XCTFail() }
        XCTAssertEqual(again.cachedPrefixTokens, 0)
    }

    /// A model need not generate canonical tokens: when the answer so far re-tokenizes otherwise,
    /// the next span on the same expert still continues from its own tokens (feeding only the
    /// one it sampled last) instead of recomputing the whole prompt.
    func testTheNextSpanContinuesFromTheExpertsOwnTokensWhenTheTextRetokenizesOtherwise() throws {
        let canonical = try tokenizer.encode(" the patient", addSpecialTokens: false).ids
        let split = try tokenizer.encode(" the pat", addSpecialTokens: false).ids + tokenizer.encode("ient", addSpecialTokens: false).ids
        XCTAssertNotEqual(split, canonical, "the test needs a non-canonical split")
        XCTAssertEqual(try tokenizer.decode(split), try tokenizer.decode(canonical))
        let rest = try tokenizer.encode(" should rinse", addSpecialTokens: false).ids
        let model = ScriptedModel(script: split + rest, vocabSize: tokenizer.vocabSize, eos: 0)
        let scheduler = makeScheduler(model)
        guard case .result(let first)? = run(scheduler, scheduler.admit(request("a", budget: UInt32(split.count)), deadline: 0, now: 0)).first
        else { return XCTFail() }
        XCTAssertEqual(first.pieces.map { Int($0.tokenId) }, split)
        let promptTokens = try XCTUnwrap(model.feeds.first).count
        let next = run(scheduler, scheduler.admit(request("a", answerSoFar: first.text, budget: UInt32(rest.count)), deadline: 0, now: 0))
        guard case .result(let second)? = next.first else { return XCTFail("\(next)") }
        XCTAssertEqual(model.feeds.last, [split.last!], "only the last sampled token was fed")
        XCTAssertEqual(Int(second.cachedPrefixTokens), promptTokens + split.count - 1)
        XCTAssertEqual(second.pieces.map { Int($0.tokenId) }, rest, "the script continued from the expert's own tokens")
    }

    /// The expert records the prompt and the answer its session spells as the router will send
    /// them back (the spans' texts). When the next span's are exactly these, it continues from
    /// its own tokens even where the text does not spell them back: here the first span's
    /// leading spaces, which its text drops. Another answer so far is not taken for its own.
    func testTheNextSpanContinuesFromTheRecordWhenTheTextDoesNotSpellTheTokens() throws {
        let opening = try tokenizer.encode("   the", addSpecialTokens: false).ids
        let rest = try tokenizer.encode(" patient should rinse", addSpecialTokens: false).ids
        let model = ScriptedModel(script: opening + rest, vocabSize: tokenizer.vocabSize, eos: 0)
        let scheduler = makeScheduler(model)
        guard case .result(let first)? = run(scheduler, scheduler.admit(request("a", budget: UInt32(opening.count)), deadline: 0, now: 0)).first
        else { return XCTFail() }
        XCTAssertEqual(first.text, "the", "the first span's text drops the leading spaces its tokens spell")
        XCTAssertNotEqual(try tokenizer.decode(opening), first.text)
        let promptTokens = try XCTUnwrap(model.feeds.first).count
        let next = run(scheduler, scheduler.admit(request("a", answerSoFar: first.text, budget: UInt32(rest.count)), deadline: 0, now: 0))
        guard case .result(let second)? = next.first else { return XCTFail("\(next)") }
        XCTAssertEqual(model.feeds.last, [opening.last!], "only the last sampled token was fed")
        XCTAssertEqual(Int(second.cachedPrefixTokens), promptTokens + opening.count - 1)
        XCTAssertEqual(second.pieces.map { Int($0.tokenId) }, rest, "the script continued from the expert's own tokens")

        // An answer so far this session did not write: re-tokenized, not taken from the record.
        let other = makeScheduler(ScriptedModel(script: opening + rest, vocabSize: tokenizer.vocabSize, eos: 0))
        _ = run(other, other.admit(request("b", budget: UInt32(opening.count)), deadline: 0, now: 0))
        guard case .result(let elsewhere)? = run(other, other.admit(request("b", answerSoFar: "the doctor", budget: 2), deadline: 0, now: 0)).first
        else { return XCTFail() }
        XCTAssertLessThan(Int(elsewhere.cachedPrefixTokens), promptTokens + opening.count - 1)
    }

    func testADeadlineEndsTheSpan() {
        let model = ScriptedModel(script: script, vocabSize: tokenizer.vocabSize, eos: 0)
        let scheduler = makeScheduler(model)
        XCTAssertNil(scheduler.admit(request("a", budget: 64), deadline: 1_000, now: 0))
        guard case .result(let r)? = run(scheduler, nil, now: 1_000).first else { return XCTFail() }
        XCTAssertEqual(r.finish, .deadline)
    }

    func testAPromptOverTheLimitsIsRefusedBeforeTheModelSeesIt() {
        let model = ScriptedModel(script: script, vocabSize: tokenizer.vocabSize, eos: 0)
        let scheduler = makeScheduler(model, limits: .init(maxPromptBytes: 1024, maxPromptTokens: 4))
        guard case .failure(_, let error)? = scheduler.admit(request("a"), deadline: 0, now: 0) else { return XCTFail() }
        XCTAssertEqual(error.reason, WireErrorBody.Reason.promptTooLong)
        XCTAssertFalse(error.retryable)
        XCTAssertTrue(model.feeds.isEmpty)
    }
}
