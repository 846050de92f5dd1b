import Gate
import Wire
import XCTest
@testable import RouterNode

/// The router's part in issue 14: prompts counted in each pool's tokens before the gate runs,
/// errors caused by the input never retried, and a span that kills replicas contained.
final class HostileInputTests: XCTestCase {
    let gateway: PeerIdentity = [0xAA]
    let mambaA: PeerIdentity = [1]
    let mambaB: PeerIdentity = [2]
    let mambaC: PeerIdentity = [3]

    /// Counts one token per scalar in EMamba and four in ET5 (NFKC-like expansion), and
    /// remembers what it was asked.
    final class FakeCounter: PromptCounter {
        var calls: [PoolKind] = []
        func promptTokens(_ prompt: String, pool: PoolKind) throws -> Int {
            calls.append(pool)
            return prompt.unicodeScalars.count * (pool == .et5 ? 4 : 1)
        }
    }

    func makeCore(counter: PromptCounter? = nil, _ configure: (inout RouterConfig) -> Void = { _ in }) -> RouterCore {
        var config = RouterConfig()
        config.spanTokens = 4
        configure(&config)
        return RouterCore(config: config, gate: AlternatingGate(), counter: counter)
    }

    func ready(_ core: RouterCore, _ id: PeerIdentity, name: String, now: UInt64 = 0) {
        _ = core.expertFrame(id, .success(Envelope(.ready(Ready(pool: .emamba, modelId: "m", replicaId: name, capacity: 4,
                                                                 softwareVersion: "t")))), now: now)
    }

    func ask(_ core: RouterCore, _ id: String, context: String = "", now: UInt64 = 0) -> [RouterAction] {
        core.gatewayFrame(gateway, .success(Envelope(.answerRequest(AnswerRequest(
            requestId: id, question: "What is gingivitis?", context: context, maxNewTokens: 8,
            policy: Policy(costWeight: 0.5, forced: .emamba))))), now: now)
    }

    func spans(_ actions: [RouterAction]) -> [(PeerIdentity, SpanRequest)] {
        actions.compactMap { if case .toExpert(let id, let e) = $0, case .spanRequest(let s) = e.body { return (id, s) }; return nil }
    }

    func errors(_ actions: [RouterAction]) -> [WireErrorBody] {
        actions.compactMap {
            if case .toGateway(_, let e) = $0, case .answerEvent(let ev) = e.body, case .error(let err) = ev.kind { return err }
            return nil
        }
    }

    func testAPromptOverTheTokenLimitOfEitherPoolIsRefusedBeforeAnyWork() {
        let counter = FakeCounter()
        let core = makeCore(counter: counter) { $0.maxPromptTokens = 150 }
        ready(core, mambaA, name: "m1")
        // 69 scalars: 69 EMamba tokens (fits) but 276 ET5 tokens (does not). Forced to
        // EMamba or not, a span may move to either pool, so both must fit.
        let refused = ask(core, "r1", context: String(repeating: "x", count: 30))
        XCTAssertTrue(spans(refused).isEmpty)
        let error = errors(refused).first
        XCTAssertEqual(error?.code, .badRequest)
        XCTAssertEqual(error?.retryable, false)
        XCTAssertEqual(error?.reason, WireErrorBody.Reason.promptTooLong)
        XCTAssertTrue(error?.message.contains("et5 tokens; the limit is 150") ?? false, error?.message ?? "")
        XCTAssertEqual(core.stats.promptsTooLong, 1)
        XCTAssertEqual(core.activeRequests, 0)

        XCTAssertEqual(spans(ask(core, "r2")).count, 1, "a short prompt is admitted")
    }

    func testBytesAreCheckedBeforeTheTokenizersRun() {
        let counter = FakeCounter()
        let core = makeCore(counter: counter) { $0.maxPromptBytes = 1000 }
        ready(core, mambaA, name: "m1")
        let refused = ask(core, "r1", context: String(repeating: "\u{FB03}", count: 400))   // 1,200 bytes
        XCTAssertEqual(errors(refused).first?.reason, WireErrorBody.Reason.promptTooLong)
        XCTAssertTrue(errors(refused).first?.message.contains("bytes; the limit is 1000") ?? false)
        XCTAssertTrue(counter.calls.isEmpty, "the tokenizers ran on a prompt over the byte limit")
    }

    func testAnErrorCausedByTheInputIsNotRetried() {
        let core = makeCore()
        ready(core, mambaA, name: "m1")
        ready(core, mambaB, name: "m2")
        let (replica, span) = spans(ask(core, "r1"))[0]
        let failed = core.expertFrame(replica, .success(Envelope(.answerEvent(AnswerEvent(requestId: "r1", kind: .error(
            WireErrorBody(code: .badRequest, message: "the prompt is 3000 emamba tokens; the limit is 2048", retryable: false,
                          reason: WireErrorBody.Reason.promptTooLong)))))), now: 1)
        XCTAssertTrue(spans(failed).isEmpty, "a span refused for its input went to another replica")
        XCTAssertEqual(errors(failed).first?.reason, WireErrorBody.Reason.promptTooLong)
        XCTAssertEqual(core.stats.spanRetries, 0)
        _ = span
    }

    /// A span whose replica dies while running it is retried once more; if that replica dies
    /// too, the request fails instead of visiting (and killing) every replica in turn.
    func testAPoisonSpanFailsItsRequestAfterTwoReplicaDeaths() {
        let core = makeCore { $0.heartbeatIntervalMs = 100; $0.liveness = 3 }
        for (id, name) in [(mambaA, "m1"), (mambaB, "m2"), (mambaC, "m3")] { ready(core, id, name: name) }
        let first = spans(ask(core, "poison"))[0]
        // Everyone but the replica running the span keeps sending heartbeats.
        func tick(_ now: UInt64, alive: [PeerIdentity]) -> [RouterAction] {
            for id in alive { _ = core.expertFrame(id, .success(Envelope(.heartbeat(Heartbeat()))), now: now) }
            return core.tick(now: now)
        }
        let others = [mambaA, mambaB, mambaC].filter { $0 != first.0 }
        let retried = spans(tick(301, alive: others))
        XCTAssertEqual(retried.count, 1, "the first death gets a retry")
        XCTAssertNotEqual(retried[0].0, first.0)
        XCTAssertEqual(retried[0].1.spanIndex, first.1.spanIndex)

        let survivors = others.filter { $0 != retried[0].0 }
        let second = tick(700, alive: survivors)
        XCTAssertTrue(spans(second).isEmpty, "the span went to a third replica")
        let error = errors(second).first
        XCTAssertEqual(error?.code, .internalError)
        XCTAssertEqual(error?.retryable, false)
        XCTAssertEqual(core.stats.poisonSpans, 1)
        XCTAssertEqual(core.activeRequests, 0)
        XCTAssertEqual(core.liveReplicas(.emamba), 1, "one replica is left to serve everyone else")
    }

    /// A replica that leaves cleanly (drain, Disconnect) is no evidence against the span.
    func testADisconnectIsNotADeath() {
        let core = makeCore()
        ready(core, mambaA, name: "m1")
        ready(core, mambaB, name: "m2")
        ready(core, mambaC, name: "m3")
        var (replica, _) = spans(ask(core, "r1"))[0]
        for _ in 0..<2 {
            let moved = spans(core.expertFrame(replica, .success(Envelope(.disconnect(Disconnect(reason: "draining")))), now: 1))
            XCTAssertEqual(moved.count, 1)
            replica = moved[0].0
        }
        XCTAssertEqual(core.stats.poisonSpans, 0)
        XCTAssertEqual(core.activeRequests, 1)
    }

    /// A gateway that falls silent (killed, cut off) leaves no work behind: its answers stop,
    /// their slots and the experts' sessions are freed.
    func testAnswersOfASilentGatewayAreCancelled() {
        let core = makeCore { $0.heartbeatIntervalMs = 100 }
        ready(core, mambaA, name: "m1")
        let (replica, _) = spans(ask(core, "orphan", now: 0))[0]
        XCTAssertEqual(core.activeRequests, 1)
        // The replica stays alive; the gateway says nothing more.
        for now in stride(from: UInt64(200), through: 2_800, by: 200) {
            _ = core.expertFrame(mambaA, .success(Envelope(.heartbeat(Heartbeat()))), now: now)
            _ = core.tick(now: now)
        }
        XCTAssertEqual(core.activeRequests, 1, "cancelled before three seconds of gateway silence")
        _ = core.expertFrame(mambaA, .success(Envelope(.heartbeat(Heartbeat()))), now: 3_100)
        let out = core.tick(now: 3_100)
        XCTAssertEqual(core.activeRequests, 0)
        XCTAssertEqual(core.stats.orphansCancelled, 1)
        XCTAssertTrue(out.contains { if case .toExpert(let id, let e) = $0, id == replica, case .cancel(let c) = e.body { return c.requestId == "orphan" }; return false },
                      "the expert was not told to stop")
        XCTAssertFalse(out.contains { if case .toGateway = $0 { return true }; return false }, "nothing is sent to a gone gateway")
    }

    /// Per-replica statistics are keyed by a name the peer chooses: bounded.
    func testPerReplicaStatisticsAreBounded() {
        let core = makeCore()
        for i in 0..<(RouterStats.maxReplicaKeys + 20) {
            let id: PeerIdentity = [9, UInt8(i & 0xFF), UInt8(i >> 8)]
            ready(core, id, name: "restarted-\(i)")
            let span = spans(ask(core, "r\(i)"))[0]
            _ = core.expertFrame(span.0, .success(Envelope(.spanResult(SpanResult(
                requestId: span.1.requestId, spanIndex: 0, pieces: [Piece(text: "x", tokenId: 1)], text: "x", finish: .eos)))), now: 1)
            _ = core.expertFrame(id, .success(Envelope(.disconnect(Disconnect(reason: "restart")))), now: 1)
        }
        XCTAssertLessThanOrEqual(core.stats.spansByReplica.count, RouterStats.maxReplicaKeys + 1)
        XCTAssertEqual(core.stats.spansByReplica["other"], 20)
    }

    /// A replica that hands a span back as unavailable (it is draining) gets no more spans:
    /// the span goes to another replica at once instead of bouncing back until it fails.
    func testADrainingReplicaGetsNoMoreSpans() {
        let core = makeCore()
        ready(core, mambaA, name: "m1")
        ready(core, mambaB, name: "m2")
        let (first, _) = spans(ask(core, "r1"))[0]
        let other = first == mambaA ? mambaB : mambaA
        let handedBack = core.expertFrame(first, .success(Envelope(.answerEvent(AnswerEvent(requestId: "r1", kind: .error(
            WireErrorBody(code: .unavailable, message: "replica is draining", retryable: true)))))), now: 1)
        XCTAssertEqual(spans(handedBack).map(\.0), [other], "the span went back to the draining replica")
        XCTAssertEqual(core.liveReplicas(.emamba), 1)
        // New requests avoid it too, even though it has room.
        for i in 0..<3 { XCTAssertEqual(spans(ask(core, "n\(i)", now: 2)).first?.0, other) }
        XCTAssertTrue(errors(handedBack).isEmpty)
    }

    /// The core's clock is whatever it is given: a clock stepping back by minutes (as a wall
    /// clock can) neither traps nor drops a replica nor ends an answer.
    func testAClockSteppingBackwardsBreaksNothing() {
        let core = makeCore { $0.heartbeatIntervalMs = 100 }
        let t0: UInt64 = 10_000_000
        ready(core, mambaA, name: "m1", now: t0)
        XCTAssertEqual(spans(ask(core, "r1", now: t0)).count, 1)
        for step in [t0 - 600_000, t0 - 599_900, t0 + 100, t0 + 200] {
            _ = core.gatewayFrame(gateway, .success(Envelope(.heartbeat(Heartbeat()))), now: step)
            _ = core.expertFrame(mambaA, .success(Envelope(.heartbeat(Heartbeat()))), now: step)
            _ = core.tick(now: step)
        }
        XCTAssertEqual(core.liveReplicas(.emamba), 1)
        XCTAssertEqual(core.activeRequests, 1)
        XCTAssertEqual(core.stats.deadlineMisses, 0)
    }

    /// Deadlines cross the wire as time left (1.2): each hop adds it to its own monotonic
    /// clock, so neither a wall-clock step nor skew between hosts moves one; a span carries
    /// what is left when it leaves, not when it was queued.
    func testDeadlinesTravelAsTimeLeft() {
        let core = makeCore()
        let t0: UInt64 = 1_000_000
        _ = core.expertFrame(mambaA, .success(Envelope(.ready(Ready(
            pool: .emamba, modelId: "m", replicaId: "m1", capacity: 1, softwareVersion: "t")))), now: t0)
        let busy = spans(ask(core, "r0", now: t0))
        XCTAssertEqual(busy.count, 1)
        _ = core.gatewayFrame(gateway, .success(Envelope(.answerRequest(AnswerRequest(
            requestId: "r1", question: "q", maxNewTokens: 8, policy: Policy(costWeight: 0.5, forced: .emamba),
            deadlineMs: 5_000)))), now: t0)
        // The replica is busy: r1's span waits two seconds in the queue.
        let out = core.expertFrame(mambaA, .success(Envelope(.spanResult(SpanResult(
            requestId: "r0", spanIndex: 0, pieces: [Piece(text: "x", tokenId: 1)], text: "x", finish: .eos)))), now: t0 + 2_000)
        XCTAssertEqual(spans(out).first?.1.requestId, "r1")
        XCTAssertEqual(spans(out).first?.1.deadlineMs, 3_000)
        XCTAssertEqual(spans(out).first?.1.deadlineUnixMs, 0, "the core never reads or writes the wall clock")
    }

    /// The router's edge reconciles 1.1 peers, which send and read wall-clock instants.
    func testTheEdgeReadsAndWritesTheWallClockInstantOf11Peers() {
        let wall: UInt64 = 1_800_000_000_000
        var old = AnswerRequest(requestId: "r", question: "q", deadlineUnixMs: wall + 30_000)
        guard case .success(let e) = DeadlineEdge.inbound(.success(Envelope(.answerRequest(old))), wallNowMs: wall),
              case .answerRequest(let converted) = e.body else { return XCTFail() }
        XCTAssertEqual(converted.deadlineMs, 30_000)
        old.deadlineUnixMs = wall - 5
        guard case .success(let past) = DeadlineEdge.inbound(.success(Envelope(.answerRequest(old))), wallNowMs: wall),
              case .answerRequest(let overdue) = past.body else { return XCTFail() }
        XCTAssertEqual(overdue.deadlineMs, 1, "a past deadline stays past, never 'none'")
        // A 1.2 sender's time left wins over its wall-clock instant (a skewed host's clock).
        let skewed = AnswerRequest(requestId: "r", question: "q", deadlineUnixMs: wall - 3_600_000, deadlineMs: 20_000)
        guard case .success(let s) = DeadlineEdge.inbound(.success(Envelope(.answerRequest(skewed))), wallNowMs: wall),
              case .answerRequest(let kept) = s.body else { return XCTFail() }
        XCTAssertEqual(kept.deadlineMs, 20_000)
        // Out: both fields, the instant on this host's wall clock, stepped back an hour or not.
        let span = SpanRequest(requestId: "r", spanIndex: 0, prompt: "p", answerSoFar: "", maxNewTokens: 4, deadlineMs: 20_000)
        for wallNow in [wall, wall - 3_600_000] {
            guard case .toExpert(_, let sent) = DeadlineEdge.outbound(.toExpert([1], Envelope(.spanRequest(span))), wallNowMs: wallNow),
                  case .spanRequest(let out) = sent.body else { return XCTFail() }
            XCTAssertEqual(out.deadlineMs, 20_000)
            XCTAssertEqual(out.deadlineUnixMs, wallNow + 20_000)
        }
    }

    /// The shared arithmetic saturates: nothing a peer sends can trap or wrap into the past.
    func testDeadlineArithmeticSaturates() {
        XCTAssertEqual(Deadline.instant(timeLeft: 0, nowMs: 5), 0, "no deadline stays none")
        XCTAssertEqual(Deadline.instant(timeLeft: .max, nowMs: 5), .max)
        XCTAssertEqual(Deadline.timeLeft(until: 10, nowMs: 50), 1, "overdue is 1 ms left, not none")
        XCTAssertEqual(Deadline.timeLeft(until: 0, nowMs: 50), 0)
        XCTAssertEqual(Deadline.timeLeft(deadlineMs: 0, deadlineUnixMs: .max, wallNowMs: 0), .max)
        let fields = Deadline.wireFields(timeLeft: .max, wallNowMs: 7)
        XCTAssertEqual(fields.deadlineMs, .max)
        XCTAssertEqual(fields.deadlineUnixMs, .max)
    }
}

/// Identity on the wire (issue 15): a replica id belongs to the key that registered it, and
/// revoking a key cuts off what it holds.
final class PeerIdentityTests: XCTestCase {
    let gateway: PeerIdentity = [0xAA]

    func ready(_ core: RouterCore, _ id: PeerIdentity, name: String, key: String, now: UInt64 = 0) -> [RouterAction] {
        core.expertFrame(id, .success(Envelope(.ready(Ready(pool: .emamba, modelId: "m", replicaId: name, capacity: 4,
                                                            softwareVersion: "t")))), now: now, peerKey: key)
    }

    func refusals(_ actions: [RouterAction]) -> [WireErrorBody] {
        actions.compactMap { if case .toExpert(_, let e) = $0, case .error(let err) = e.body { return err }; return nil }
    }

    func testAReplicaIdBelongsToTheKeyThatRegisteredIt() {
        let core = RouterCore(gate: AlternatingGate())
        XCTAssertTrue(refusals(ready(core, [1], name: "emamba-1", key: "KEY-A")).isEmpty)
        // Another key claiming the same id is refused and not registered.
        let stolen = refusals(ready(core, [2], name: "emamba-1", key: "KEY-B"))
        XCTAssertEqual(stolen.map(\.code), [.unauthorized])
        XCTAssertEqual(core.liveReplicas(.emamba), 1)
        XCTAssertEqual(core.stats.replicaIdsRefused, 1)
        // The owner reconnecting (a restart: a new connection) keeps its id; one key may hold several.
        XCTAssertTrue(refusals(ready(core, [3], name: "emamba-1", key: "KEY-A", now: 1)).isEmpty)
        XCTAssertTrue(refusals(ready(core, [4], name: "emamba-2", key: "KEY-A", now: 1)).isEmpty)
        XCTAssertEqual(core.liveReplicas(.emamba), 3)
        // Gone or not, the id stays bound: a thief cannot wait for the owner to go quiet.
        _ = core.tick(now: 10_000)
        XCTAssertEqual(core.liveReplicas(.emamba), 0)
        XCTAssertEqual(refusals(ready(core, [5], name: "emamba-1", key: "KEY-B", now: 10_001)).map(\.code), [.unauthorized])
    }

    /// A megabyte replica id (the codec allows text up to 1 MiB) would cost a megabyte per
    /// binding: refused, nothing kept.
    func testOversizedReplicaIdsAreRefusedAndNotKept() {
        let core = RouterCore(gate: AlternatingGate())
        let out = ready(core, [1], name: String(repeating: "x", count: 1 << 20), key: "K")
        XCTAssertEqual(refusals(out).map(\.code), [.badRequest])
        XCTAssertEqual(core.liveReplicas(.emamba), 0)
        XCTAssertTrue(core.replicaOwners.isEmpty)
        XCTAssertTrue(refusals(ready(core, [2], name: String(repeating: "y", count: 128), key: "K")).isEmpty)
    }

    func testRevokingAKeyCutsOffItsReplicasAndGatewaysAndFreesItsIds() {
        let core = RouterCore(gate: AlternatingGate())
        _ = ready(core, [1], name: "emamba-1", key: "OLD")
        _ = ready(core, [2], name: "emamba-2", key: "KEEP")
        let asked = core.gatewayFrame(gateway, .success(Envelope(.answerRequest(AnswerRequest(
            requestId: "r1", question: "q", maxNewTokens: 8, policy: Policy(forced: .emamba))))), now: 0, peerKey: "GW")
        let first = asked.compactMap { if case .toExpert(let id, let e) = $0, case .spanRequest = e.body { return id }; return nil }
        XCTAssertEqual(first.count, 1)
        let out = core.revoke(keepingGatewayKeys: ["GW"], expertKeys: ["KEEP"], now: 1)
        XCTAssertEqual(core.liveReplicas(.emamba), 1)
        XCTAssertEqual(core.stats.peersRevoked, 1)
        XCTAssertTrue(refusals(out).contains { $0.code == .unauthorized })
        // The span the revoked replica held went to the one that stays.
        if first == [[1]] {
            XCTAssertTrue(out.contains { if case .toExpert(let id, let e) = $0, id == [2], case .spanRequest = e.body { return true }; return false })
        }
        XCTAssertEqual(core.activeRequests, 1)
        // Its ids are free for a key that is allowed.
        XCTAssertTrue(refusals(ready(core, [3], name: "emamba-1", key: "KEEP", now: 2)).isEmpty)
        // A gateway's key revoked: its answers end.
        _ = core.revoke(keepingGatewayKeys: [], expertKeys: ["KEEP"], now: 3)
        XCTAssertEqual(core.activeRequests, 0)
        XCTAssertEqual(core.stats.peersRevoked, 2)
    }
}
