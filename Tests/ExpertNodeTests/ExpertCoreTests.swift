import Generation
import Logging
import Wire
import XCTest
@testable import ExpertNode

/// The expert's state machine without sockets or a model: registration, heartbeats, the
/// router's silence, re-registration, spans and their deadlines, cancel and session release,
/// drain. The clock is whatever the test says.
final class ExpertCoreTests: XCTestCase {
    /// A model side that runs each span for `tokensPerSpan` steps and records what it was asked.
    final class FakeRunner: SpanRunner {
        struct Running { var span: SpanRequest; var deadline: UInt64; var left: Int }
        var running: [Running] = []
        var admitted: [(requestId: String, deadline: UInt64)] = []
        /// The request ids of each `admit` call: one batched prefill each.
        var batches: [[String]] = []
        var cancelled: [String] = []
        var tokensPerSpan = 2
        var activeCount: Int { running.count }

        func admit(_ spans: [(span: SpanRequest, deadline: UInt64)], now: UInt64) -> [SpanOutcome] {
            batches.append(spans.map(\.span.requestId))
            for (span, deadline) in spans {
                admitted.append((span.requestId, deadline))
                running.append(Running(span: span, deadline: deadline, left: tokensPerSpan))
            }
            return []
        }

        func step(now: UInt64) -> [SpanOutcome] {
            var done: [SpanOutcome] = []
            for i in running.indices { running[i].left -= 1 }
            for r in running where r.left <= 0 || (r.deadline > 0 && now >= r.deadline) {
                done.append(.result(SpanResult(requestId: r.span.requestId, spanIndex: r.span.spanIndex,
                                               pieces: [Piece(text: "x", tokenId: 1)], text: "x",
                                               finish: r.left <= 0 ? .none : .deadline)))
            }
            running.removeAll { $0.left <= 0 || ($0.deadline > 0 && now >= $0.deadline) }
            return done
        }

        func cancel(requestId: String) -> Bool {
            cancelled.append(requestId)
            let before = running.count
            running.removeAll { $0.span.requestId == requestId }
            return running.count < before
        }
    }

    var runner = FakeRunner()

    func makeCore(capacity: Int = 4, heartbeatMs: UInt64 = 1000, links: Int = 1) -> ExpertCore {
        var config = ExpertCore.Config()
        config.pool = .et5; config.replicaId = "et5-1@ward"; config.modelId = "m"; config.capacity = capacity
        config.links = links
        config.heartbeatIntervalMs = heartbeatMs; config.liveness = 3; config.drainTimeoutMs = 5_000
        runner = FakeRunner()
        return ExpertCore(config: config, runner: runner, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
    }

    func span(_ id: String, deadlineMs: UInt32 = 0, deadlineUnixMs: UInt64 = 0) -> Result<Envelope, WireError> {
        .success(Envelope(.spanRequest(SpanRequest(requestId: id, spanIndex: 0, prompt: "question: q", answerSoFar: "",
                                                   maxNewTokens: 2, deadlineUnixMs: deadlineUnixMs, deadlineMs: deadlineMs))))
    }

    func sent(_ actions: [ExpertAction]) -> [Body] {
        actions.compactMap { if case .send(let e, _) = $0 { return e.body }; return nil }
    }

    /// What went to router `link`.
    func sent(_ actions: [ExpertAction], to link: Int) -> [Body] {
        actions.compactMap { if case .send(let e, let l) = $0, l == link { return e.body }; return nil }
    }

    /// The share (`Heartbeat.capacity`) last announced to `link` in `actions`, if any.
    func share(_ actions: [ExpertAction], to link: Int) -> UInt32? {
        sent(actions, to: link).compactMap { if case .heartbeat(let hb) = $0, hb.capacity > 0 { return hb.capacity }; return nil }.last
    }

    func isReady(_ body: Body) -> Bool { if case .ready = body { return true }; return false }

    func admitAll(_ core: ExpertCore, now: UInt64) -> [ExpertAction] {
        var out: [ExpertAction] = []
        while let a = core.admitNext(now: now) { out += a }
        return out
    }

    func testSpansThatArriveTogetherArePrefilledInOneBatchWithinTheByteBudget() {
        let core = makeCore(capacity: 4)
        _ = core.start(now: 0)
        for id in ["a", "b", "c", "d", "e"] { _ = core.received(span(id), now: 0, wallNowMs: 0) }
        _ = admitAll(core, now: 0)
        XCTAssertEqual(runner.batches, [["a", "b", "c", "d"]], "one batched prefill, up to the capacity")
        XCTAssertEqual(core.waitingCount, 1)

        // A byte budget smaller than two prompts: one span per prefill (a span always goes alone).
        var config = ExpertCore.Config()
        config.capacity = 4; config.prefillBatchBytes = 15
        runner = FakeRunner()
        let small = ExpertCore(config: config, runner: runner, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        _ = small.start(now: 0)
        for id in ["a", "b", "c"] { _ = small.received(span(id), now: 0, wallNowMs: 0) }
        _ = admitAll(small, now: 0)
        XCTAssertEqual(runner.batches, [["a"], ["b"], ["c"]], "\"question: q\" is 11 bytes: two exceed 15")
    }

    func testStartAnnouncesThePoolReplicaAndCapacity() {
        let core = makeCore(capacity: 6)
        guard case .ready(let ready)? = sent(core.start(now: 0)).first else { return XCTFail("no Ready") }
        XCTAssertEqual(ready.pool, .et5)
        XCTAssertEqual(ready.replicaId, "et5-1@ward")
        XCTAssertEqual(ready.capacity, 6)
    }

    func testSpansRunToResultsWithTheirDeadlineFixedOnArrival() {
        let core = makeCore()
        _ = core.start(now: 1_000)
        _ = core.received(span("r1", deadlineMs: 5_000), now: 1_000, wallNowMs: 0)
        // A 1.1 router sends only a wall-clock instant: read against this host's wall clock.
        _ = core.received(span("r2", deadlineUnixMs: 1_800_000_030_000), now: 1_000, wallNowMs: 1_800_000_000_000)
        XCTAssertEqual(core.waitingCount, 2)
        XCTAssertTrue(admitAll(core, now: 1_200).isEmpty)
        XCTAssertEqual(runner.admitted.map(\.deadline), [6_000, 31_000], "deadlines count from arrival, not admission")
        XCTAssertTrue(core.step(now: 1_300).isEmpty)
        let results = sent(core.step(now: 1_400))
        XCTAssertEqual(results.count, 2)
        XCTAssertEqual(core.stats.spansDone, 2)
        XCTAssertEqual(core.activeCount, 0)
    }

    func testAdmissionStopsAtCapacity() {
        let core = makeCore(capacity: 2)
        _ = core.start(now: 0)
        for i in 0..<4 { _ = core.received(span("r\(i)"), now: 0, wallNowMs: 0) }
        _ = admitAll(core, now: 0)
        XCTAssertEqual(core.activeCount, 2)
        XCTAssertEqual(core.waitingCount, 2)
        XCTAssertEqual(core.load, 4, "heartbeats report running and waiting spans")
        // A router sending past twice the capacity (it ignores what it was told) is refused.
        guard case .answerEvent(let e)? = sent(core.received(span("r4"), now: 0, wallNowMs: 0)).first,
              case .error(let error) = e.kind else { return XCTFail("not refused") }
        XCTAssertEqual(error.code, .overloaded)
        XCTAssertTrue(error.retryable)
        XCTAssertEqual(core.waitingCount, 2)
    }

    func testHeartbeatsGoOutOncePerIntervalWithTheLoad() {
        let core = makeCore(heartbeatMs: 1000)
        _ = core.start(now: 10_000)
        XCTAssertTrue(core.keepAlive(now: 10_500).isEmpty)
        _ = core.received(span("r1"), now: 10_600, wallNowMs: 0)
        guard case .heartbeat(let hb)? = sent(core.keepAlive(now: 11_000)).first else { return XCTFail("no heartbeat") }
        XCTAssertEqual(hb.load, 1)
        XCTAssertTrue(core.keepAlive(now: 11_500).isEmpty)
        XCTAssertEqual(sent(core.keepAlive(now: 12_000)).count, 1)
    }

    func testASilentRouterMeansReconnectAndReRegister() {
        let core = makeCore(heartbeatMs: 1000)
        _ = core.start(now: 0)
        XCTAssertTrue(core.tick(now: 3_000).isEmpty, "three intervals is not yet silence")
        _ = core.received(.success(Envelope(.heartbeat(Heartbeat()))), now: 2_900, wallNowMs: 0)
        XCTAssertTrue(core.tick(now: 5_000).isEmpty, "a heartbeat resets the clock")
        let out = core.tick(now: 6_000)
        XCTAssertEqual(out.first, .reconnect(link: 0))
        XCTAssertTrue(sent(out).contains(where: isReady))
        XCTAssertEqual(core.stats.reconnects, 1)
        XCTAssertTrue(core.tick(now: 6_100).isEmpty, "one reconnect, then a fresh window")
    }

    func testAClockSteppingBackwardsNeitherTrapsNorReconnects() {
        let core = makeCore(heartbeatMs: 100)
        _ = core.start(now: 600_000)
        for now: UInt64 in [0, 50, 600_100] {
            _ = core.received(.success(Envelope(.heartbeat(Heartbeat()))), now: now, wallNowMs: 0)
            XCTAssertTrue(core.tick(now: now).isEmpty)
            _ = core.keepAlive(now: now)
        }
        XCTAssertEqual(core.stats.reconnects, 0)
    }

    func testARouterThatDoesNotKnowUsGetsANewReady() {
        let core = makeCore()
        _ = core.start(now: 0)
        let out = core.received(.success(Envelope(.disconnect(Disconnect(reason: "unknown replica: send Ready")))), now: 1, wallNowMs: 0)
        XCTAssertTrue(sent(out).contains(where: isReady))
    }

    func testCancelStopsRunningAndWaitingSpansAndReleasesSessions() {
        let core = makeCore(capacity: 1)
        _ = core.start(now: 0)
        _ = core.received(span("running"), now: 0, wallNowMs: 0)
        _ = core.received(span("waiting"), now: 0, wallNowMs: 0)
        _ = admitAll(core, now: 0)
        _ = core.received(.success(Envelope(.cancel(Cancel(requestId: "running")))), now: 1, wallNowMs: 0)
        _ = core.received(.success(Envelope(.cancel(Cancel(requestId: "waiting")))), now: 1, wallNowMs: 0)
        XCTAssertEqual(core.activeCount, 0)
        XCTAssertEqual(core.waitingCount, 0)
        XCTAssertEqual(core.stats.cancelled, 2)
        // The router's cancel after a complete answer releases its cached session.
        _ = core.received(.success(Envelope(.cancel(Cancel(requestId: "finished-earlier")))), now: 2, wallNowMs: 0)
        XCTAssertEqual(runner.cancelled, ["running", "waiting", "finished-earlier"])
        XCTAssertEqual(core.stats.cancelled, 2)
    }

    func testDrainHandsBackWhatHasNotStartedFinishesTheRestThenSaysGoodbye() {
        let core = makeCore(capacity: 1)
        _ = core.start(now: 0)
        _ = core.received(span("running"), now: 0, wallNowMs: 0)
        _ = core.received(span("waiting"), now: 0, wallNowMs: 0)
        _ = admitAll(core, now: 0)
        let drained = sent(core.drain(now: 10))
        // First the router hears it is draining (1.3), so it routes nothing new here.
        guard case .heartbeat(let beat)? = drained.first, beat.draining else { return XCTFail("no draining heartbeat: \(drained)") }
        let handedBack = Array(drained.dropFirst())
        guard case .answerEvent(let ev)? = handedBack.first, case .error(let e) = ev.kind else { return XCTFail("not handed back") }
        XCTAssertEqual(ev.requestId, "waiting")
        XCTAssertEqual(e.code, .unavailable)
        XCTAssertTrue(e.retryable)
        // A span arriving during the drain goes straight back too.
        XCTAssertEqual(sent(core.received(span("late"), now: 11, wallNowMs: 0)).count, 1)
        XCTAssertNil(core.admitNext(now: 11))
        XCTAssertTrue(core.tick(now: 12).isEmpty, "still running")
        XCTAssertEqual(sent(core.step(now: 13)).count, 0)
        XCTAssertEqual(sent(core.step(now: 14)).count, 1, "the running span finished")
        guard case .disconnect? = sent(core.tick(now: 15)).first else { return XCTFail("no Disconnect") }
        XCTAssertTrue(core.finished)
        XCTAssertEqual(core.stats.handedBack, 2)
    }

    func testDrainGivesUpOnSpansThatOutlastItsTimeout() {
        let core = makeCore()
        _ = core.start(now: 0)
        runner.tokensPerSpan = 1_000_000
        _ = core.received(span("endless"), now: 0, wallNowMs: 0)
        _ = admitAll(core, now: 0)
        _ = core.drain(now: 100)
        _ = core.received(.success(Envelope(.heartbeat(Heartbeat()))), now: 4_900, wallNowMs: 0)
        XCTAssertTrue(core.tick(now: 5_000).isEmpty)
        guard case .disconnect? = sent(core.tick(now: 5_100)).first else { return XCTFail("drain never ended") }
    }

    func testGarbageIsCountedAndIgnored() {
        let core = makeCore()
        _ = core.start(now: 0)
        XCTAssertTrue(core.received(.failure(.malformed(bytes: 7)), now: 1, wallNowMs: 0).isEmpty)
        XCTAssertTrue(core.received(.success(Envelope(.answerRequest(AnswerRequest(requestId: "x", question: "q")))), now: 1, wallNowMs: 0).isEmpty)
        XCTAssertEqual(core.stats.droppedFrames, 2)
        XCTAssertEqual(core.waitingCount, 0)
    }

    // MARK: - Several routers

    func heartbeat() -> Result<Envelope, WireError> { .success(Envelope(.heartbeat(Heartbeat()))) }

    func testEveryRouterGetsTheReadyAndASingleRouterNoShares() {
        let shared = makeCore(capacity: 4, links: 3)
        let out = shared.start(now: 0)
        for link in 0..<3 { XCTAssertTrue(sent(out, to: link).contains(where: isReady), "router \(link) hears Ready") }
        let single = makeCore(capacity: 4)
        var all = single.start(now: 0) + single.received(heartbeat(), now: 1, wallNowMs: 0)
        for i in 0..<4 { all += single.received(span("r\(i)"), now: 2, wallNowMs: 0) }
        XCTAssertNil(share(all, to: 0), "one router: Ready's capacity is its share, nothing more is said")
    }

    func testSharesFollowWhatTheOtherRoutersUseAndTheBatchNeverExceedsCapacity() {
        let core = makeCore(capacity: 4, links: 2)
        _ = core.start(now: 0)
        var out = core.received(heartbeat(), link: 0, now: 1, wallNowMs: 0)
        out += core.received(heartbeat(), link: 1, now: 1, wallNowMs: 0)
        XCTAssertEqual(share(out, to: 0), 4, "both idle: each may use the whole batch")
        XCTAssertEqual(share(out, to: 1), 4)
        // Router 0 fills the batch: router 1's share shrinks to the even split, not to zero.
        out = []
        for i in 0..<4 { out += core.received(span("a\(i)"), link: 0, now: 2, wallNowMs: 0) }
        XCTAssertEqual(share(out, to: 1), 2)
        // Router 1 uses its share at the same time: the surplus waits here, the batch stays at 4.
        for i in 0..<2 { out += core.received(span("b\(i)"), link: 1, now: 3, wallNowMs: 0) }
        XCTAssertEqual(share(out, to: 0), 2, "router 0 is told to leave room for router 1")
        _ = admitAll(core, now: 3)
        XCTAssertEqual(core.activeCount, 4)
        XCTAssertEqual(core.waitingCount, 2)
        // Each result goes back to the router that sent its span.
        var results: [Int: [String]] = [:]
        for t in 4..<12 {
            let step = core.step(now: UInt64(t)) + admitAll(core, now: UInt64(t))
            XCTAssertLessThanOrEqual(runner.activeCount, 4, "never more than the capacity in one batch")
            for link in 0..<2 {
                for case .spanResult(let r) in sent(step, to: link) { results[link, default: []].append(r.requestId) }
            }
        }
        XCTAssertEqual(Set(results[0] ?? []), ["a0", "a1", "a2", "a3"])
        XCTAssertEqual(Set(results[1] ?? []), ["b0", "b1"])
    }

    func testASilentRouterLosesItsSpansAndTheOthersKeepTheirs() {
        let core = makeCore(capacity: 4, heartbeatMs: 1000, links: 2)
        _ = core.start(now: 0)
        _ = core.received(span("mine"), link: 0, now: 100, wallNowMs: 0)
        _ = core.received(span("orphan"), link: 1, now: 100, wallNowMs: 0)
        runner.tokensPerSpan = 1_000
        _ = admitAll(core, now: 100)
        _ = core.received(heartbeat(), link: 0, now: 3_000, wallNowMs: 0)
        let out = core.tick(now: 3_200)
        XCTAssertEqual(out.first, .reconnect(link: 1), "only the silent router is reconnected to")
        XCTAssertTrue(sent(out, to: 1).contains(where: isReady))
        XCTAssertEqual(runner.cancelled, ["orphan"], "its result could reach no one: its place is freed")
        XCTAssertEqual(core.activeCount, 1)
        XCTAssertEqual(core.stats.orphaned, 1)
    }

    func testAnAnswerThatMovedToAnotherRouterReplacesItsOldSpan() {
        let core = makeCore(capacity: 4, links: 2)
        _ = core.start(now: 0)
        _ = core.received(span("moved"), link: 0, now: 1, wallNowMs: 0)
        _ = admitAll(core, now: 1)
        // Router 0 died; the gateway resumed the answer on router 1, which sends its next span.
        let takeover = core.received(span("moved"), link: 1, now: 2, wallNowMs: 0)
        XCTAssertEqual(runner.cancelled, ["moved"], "the old router's span stops")
        XCTAssertTrue(sent(takeover, to: 0).contains { body in
            if case .answerEvent(let e) = body, case .error(let err) = e.kind { return err.retryable && err.code == .overloaded }
            return false
        }, "were router 0 alive after all, it hears so and retries the span elsewhere (not marking this replica draining)")
        _ = admitAll(core, now: 2)
        // The old router (back, or late) cannot cancel what is now the new router's.
        _ = core.received(.success(Envelope(.cancel(Cancel(requestId: "moved")))), link: 0, now: 2, wallNowMs: 0)
        XCTAssertEqual(runner.cancelled, ["moved"])
        var out: [ExpertAction] = []
        for t in 3..<6 { out += core.step(now: UInt64(t)) }
        XCTAssertEqual(sent(out, to: 1).filter { if case .spanResult = $0 { return true }; return false }.count, 1)
        XCTAssertTrue(sent(out, to: 0).allSatisfy { if case .spanResult = $0 { return false }; return true })
    }

    func testDrainTellsEveryRouterAndHandsBackToTheSender() {
        let core = makeCore(capacity: 1, links: 2)
        _ = core.start(now: 0)
        _ = core.received(span("run"), link: 0, now: 1, wallNowMs: 0)
        _ = admitAll(core, now: 1)
        _ = core.received(span("wait"), link: 1, now: 1, wallNowMs: 0)
        let out = core.drain(now: 2)
        for link in 0..<2 {
            XCTAssertTrue(sent(out, to: link).contains { if case .heartbeat(let hb) = $0 { return hb.draining }; return false })
        }
        XCTAssertTrue(sent(out, to: 1).contains { if case .answerEvent(let e) = $0 { return e.requestId == "wait" }; return false },
                      "the waiting span goes back to the router it came from")
        _ = core.step(now: 3); _ = core.step(now: 4)
        let bye = core.tick(now: 5)
        XCTAssertEqual(bye.count, 2, "Disconnect to both routers")
    }

    func testARouterThatIgnoresItsShareIsBoundedAndCannotStarveTheOther() {
        let core = makeCore(capacity: 2, links: 2)
        _ = core.start(now: 0)
        _ = core.received(heartbeat(), link: 1, now: 1, wallNowMs: 0)
        var refused = 0
        for i in 0..<10 {
            let out = core.received(span("flood\(i)"), link: 0, now: 1, wallNowMs: 0)
            refused += sent(out, to: 0).filter { if case .answerEvent = $0 { return true }; return false }.count
        }
        XCTAssertEqual(core.waitingCount, 4, "twice the capacity from one router, no more")
        XCTAssertEqual(refused, 6)
        XCTAssertEqual(core.stats.refused, 6)
        // Router 1's span, arriving last, still gets a place in the very next batch.
        _ = core.received(span("fair"), link: 1, now: 2, wallNowMs: 0)
        _ = admitAll(core, now: 2)
        XCTAssertTrue(runner.admitted.map(\.requestId).contains("fair"), "\(runner.admitted.map(\.requestId))")
        XCTAssertEqual(core.activeCount, 2)
    }

    func testARouterThatRestartedLosesItsSpansHere() {
        let core = makeCore(capacity: 4, links: 2)
        _ = core.start(now: 0)
        runner.tokensPerSpan = 1_000
        _ = core.received(span("old"), link: 0, now: 1, wallNowMs: 0)
        _ = core.received(span("other"), link: 1, now: 1, wallNowMs: 0)
        _ = admitAll(core, now: 1)
        // Router 0 came back before its silence was noticed: it does not know us any more.
        let out = core.received(.success(Envelope(.disconnect(Disconnect(reason: "unknown replica: send Ready")))), link: 0, now: 2, wallNowMs: 0)
        XCTAssertTrue(sent(out, to: 0).contains(where: isReady))
        XCTAssertEqual(runner.cancelled, ["old"])
        XCTAssertEqual(core.activeCount, 1)
    }
}
