import Foundation
import Logging
import Wire
import XCTest
@testable import Gateway

/// The gateway's several routers, with in-process routers: answers spread over the live ones,
/// and an answer whose router dies moves to another and continues where it was, so the answer's
/// queue sees every span once, in order, and no failure.
final class RouterPoolTests: XCTestCase {
    let logger = Logger(label: "pool-test") { _ in SwiftLogNoOpLogHandler() }

    /// Collects what reaches an answer's queue.
    final class Collector: @unchecked Sendable {
        private let lock = NSLock()
        private var _events: [AnswerEvent] = []
        private var _ended = false
        let done = DispatchSemaphore(value: 0)
        var sink: AnswerSink {
            AnswerSink(deliver: { [self] e in lock.withLock { _events.append(e) } },
                       close: { [self] in lock.withLock { _ended = true }; done.signal() })
        }
        var events: [AnswerEvent] { lock.withLock { _events } }
        var texts: [String] { events.compactMap { if case .span(let s) = $0.kind { return s.text }; return nil } }
        var indices: [UInt32] { events.compactMap { if case .span(let s) = $0.kind { return s.spanIndex }; return nil } }
        func wait() -> Bool { done.wait(timeout: .now() + 5) == .success }
    }

    /// A router that serves spans `first...` of the fixed answer "The answer is 42." (one span per
    /// word), continuing from a resumed answer's span count, and dies after `dieAfter` spans.
    static func router(dieAfter: Int? = nil) -> FakeBackend {
        FakeBackend { request in
            let words = ["The ", "answer ", "is ", "42."]
            let first = Int(request.resume?.spans ?? 0)
            var actions: [FakeBackend.Action] = []
            for i in first..<words.count {
                if let dieAfter, i - first == dieAfter { return actions + [.lost] }
                actions += [.span(UInt32(i), words[i], i % 2 == 0 ? .emamba : .et5, tokens: 2), .sleep(5)]
            }
            return actions + [.done(DoneStats(finish: .eos, spans: 4, completionTokens: 8))]
        }
    }

    func testAnAnswerWhoseRouterDiesContinuesOnAnotherWithoutGapOrDuplicate() async throws {
        let a = Self.router(dieAfter: 2), b = Self.router()
        let pool = RouterPool([a, b], logger: logger)
        let answer = Collector()
        try await pool.submit(AnswerRequest(requestId: "r1", question: "q", maxNewTokens: 8, deadlineMs: 30_000), to: answer.sink)
        XCTAssertTrue(answer.wait(), "the answer ends")
        XCTAssertEqual(answer.texts.joined(), "The answer is 42.", "the whole answer, each span once")
        XCTAssertEqual(answer.indices, [0, 1, 2, 3])
        XCTAssertFalse(answer.events.contains { if case .error = $0.kind { return true }; return false }, "the client sees no failure")
        guard case .done? = answer.events.last?.kind else { return XCTFail("no done") }
        // Router B was handed the answer so far: two spans, their text and pools.
        let moved = try XCTUnwrap(b.submitted.first)
        let resume = try XCTUnwrap(moved.resume)
        XCTAssertEqual(resume.spans, 2)
        XCTAssertEqual(resume.text, "The answer ")
        XCTAssertEqual(resume.tokens, 4)
        XCTAssertEqual(resume.previousPool, .et5)
        XCTAssertLessThanOrEqual(moved.deadlineMs, 30_000, "the time left, not the whole deadline again")
        XCTAssertEqual(pool.moved, 1)
    }

    func testADuplicateSpanAfterAMoveIsDropped() async throws {
        let a = FakeBackend { _ in [.span(0, "The ", .emamba), .span(1, "answer ", .et5), .lost] }
        // B (wrongly) starts one span early: the span the answer already has must not reach it twice.
        let b = FakeBackend { _ in [.span(1, "answer ", .et5), .span(2, "is 42.", .emamba), .done(DoneStats())] }
        let pool = RouterPool([a, b], logger: logger)
        let answer = Collector()
        try await pool.submit(AnswerRequest(requestId: "r2", question: "q"), to: answer.sink)
        XCTAssertTrue(answer.wait())
        XCTAssertEqual(answer.texts, ["The ", "answer ", "is 42."])
    }

    func testNewAnswersGoToTheLiveRouterWithTheFewestAnswers() async throws {
        let hang: @Sendable (AnswerRequest) -> [FakeBackend.Action] = { _ in [.hang] }
        let a = FakeBackend(script: hang), b = FakeBackend(script: hang)
        let pool = RouterPool([a, b], logger: logger)
        for i in 0..<6 { try await pool.submit(AnswerRequest(requestId: "s\(i)", question: "q"), to: Collector().sink) }
        XCTAssertEqual(a.submitted.count, 3)
        XCTAssertEqual(b.submitted.count, 3)
        // A router that stops answering gets nothing new.
        a.setStatus(BackendStatus(routerReachable: false, emambaReplicas: 0, et5Replicas: 0))
        for i in 6..<9 { try await pool.submit(AnswerRequest(requestId: "s\(i)", question: "q"), to: Collector().sink) }
        XCTAssertEqual(a.submitted.count, 3)
        XCTAssertEqual(b.submitted.count, 6)
        let status = await pool.status()
        XCTAssertTrue(status.routerReachable)
        XCTAssertEqual(status.routersReachable, 1)
        XCTAssertEqual(status.routersConfigured, 2)
        // A cancel goes to the router that holds the answer.
        await pool.cancel(requestId: "s7")
        XCTAssertEqual(b.cancelled, ["s7"])
        XCTAssertEqual(a.cancelled, [])
        for i in 0..<9 { await pool.cancel(requestId: "s\(i)") }
    }

    func testWithNoLiveRouterNewAnswersFailAtOnceAndMovingAnswersFailRetryably() async throws {
        let a = Self.router(dieAfter: 1), b = Self.router()
        b.setStatus(BackendStatus(routerReachable: false, emambaReplicas: 0, et5Replicas: 0))
        let pool = RouterPool([a, b], logger: logger)
        let answer = Collector()
        try await pool.submit(AnswerRequest(requestId: "r3", question: "q"), to: answer.sink)
        XCTAssertTrue(answer.wait())
        guard case .error(let error)? = answer.events.last?.kind else { return XCTFail("no error") }
        XCTAssertEqual(error.code, .unavailable)
        XCTAssertTrue(error.retryable)
        XCTAssertEqual(error.reason, "", "the gateway's internal reason does not reach the client")
        do {
            try await pool.submit(AnswerRequest(requestId: "r4", question: "q"), to: Collector().sink)
            XCTFail("no live router: refused at once")
        } catch let error as BackendSubmitError {
            XCTAssertEqual(error.wire.code, .unavailable)
        }
        let status = await pool.status()
        XCTAssertFalse(status.routerReachable)
    }

    func testTheOldRouterIsToldToStopAndACompleteAnswerIsNotResumed() async throws {
        // The router dies after the answer's last span (finish: length) but before its done.
        let a = FakeBackend { _ in [.span(0, "The ", .emamba), .span(1, "answer.", .et5), .lost] }
        let b = Self.router()
        let pool = RouterPool([a, b], logger: logger)
        let answer = Collector()
        try await pool.submit(AnswerRequest(requestId: "r5", question: "q", maxNewTokens: 4), to: answer.sink)
        XCTAssertTrue(answer.wait())
        XCTAssertEqual(answer.texts, ["The ", "answer."])
        guard case .done(let done)? = answer.events.last?.kind else { return XCTFail("no done: \(answer.events)") }
        XCTAssertEqual(done.completionTokens, 4)
        XCTAssertEqual(done.finish, .length)
        XCTAssertTrue(b.submitted.isEmpty, "nothing left to generate: not resumed")
        XCTAssertEqual(a.cancelled, ["r5"], "the old router is told to stop, should it be alive")
    }

    func testARouterThatRefusesTheMovedAnswerPassesItOn() async throws {
        let a = Self.router(dieAfter: 1)
        let busy = FakeBackend { _ in [.error(.overloaded, "busy")] }
        let c = Self.router()
        let pool = RouterPool([a, busy, c], logger: logger)
        let answer = Collector()
        try await pool.submit(AnswerRequest(requestId: "r6", question: "q", maxNewTokens: 8), to: answer.sink)
        XCTAssertTrue(answer.wait())
        XCTAssertEqual(answer.texts.joined(), "The answer is 42.")
        XCTAssertFalse(answer.events.contains { if case .error = $0.kind { return true }; return false })
        XCTAssertEqual(busy.submitted.count + c.submitted.count, busy.submitted.isEmpty ? 1 : 2)
    }
}
