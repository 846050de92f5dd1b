import Gate
import Wire
import XCTest
@testable import RouterNode

/// Drives the router's state machine directly: frames in, actions out, a hand-held clock.
final class RouterCoreTests: XCTestCase {
    let gateway: PeerIdentity = [0xAA]
    let mambaA: PeerIdentity = [1]
    let mambaB: PeerIdentity = [2]
    let t5: PeerIdentity = [3]

    func makeCore(gate: SpanGate = AlternatingGate(), configure: (inout RouterConfig) -> Void = { _ in }) -> RouterCore {
        var config = RouterConfig()
        config.spanTokens = 4
        configure(&config)
        return RouterCore(config: config, gate: gate)
    }

    func ready(_ core: RouterCore, _ id: PeerIdentity, _ pool: PoolKind, name: String, capacity: UInt32 = 4, now: UInt64 = 0) {
        _ = core.expertFrame(id, .success(Envelope(.ready(Ready(pool: pool, modelId: "m", replicaId: name, capacity: capacity, softwareVersion: "t")))), now: now)
    }

    func ask(_ core: RouterCore, _ id: String, maxTokens: UInt32 = 8, forced: PoolKind = .unspecified, now: UInt64 = 0) -> [RouterAction] {
        core.gatewayFrame(gateway, .success(Envelope(.answerRequest(AnswerRequest(
            requestId: id, question: "What is gingivitis?", maxNewTokens: maxTokens, policy: Policy(costWeight: 0.5, forced: forced))))), now: now)
    }

    func spans(_ actions: [RouterAction]) -> [(PeerIdentity, SpanRequest)] {
        actions.compactMap { if case .toExpert(let id, let e) = $0, case .spanRequest(let s) = e.body { return (id, s) }; return nil }
    }

    func events(_ actions: [RouterAction]) -> [AnswerEvent] {
        actions.compactMap { if case .toGateway(_, let e) = $0, case .answerEvent(let ev) = e.body { return ev }; return nil }
    }

    func result(_ span: SpanRequest, _ text: String, tokens: Int, finish: FinishReason = .none) -> Envelope {
        Envelope(.spanResult(SpanResult(requestId: span.requestId, spanIndex: span.spanIndex,
                                        pieces: (0..<tokens).map { Piece(text: $0 == 0 ? text : "", tokenId: 5, logprob: -0.1) },
                                        text: text, finish: finish)))
    }

    /// What an autoscaler reads (1.3): per pool, spans running and queued, replicas ready and
    /// draining. A draining heartbeat takes a replica out of routing at once.
    func testPoolStatusCountsRunningQueuedReadyAndDraining() {
        let core = makeCore()
        ready(core, mambaA, .emamba, name: "m1", capacity: 1)
        ready(core, mambaB, .emamba, name: "m2", capacity: 1)
        for i in 0..<3 { _ = ask(core, "r\(i)", forced: .emamba) }
        let scaler: PeerIdentity = [42]
        func status() -> PoolStatus? {
            let out = core.gatewayFrame(scaler, .success(Envelope(.poolStatusRequest)), now: 10)
            guard case .toGateway(let to, let e)? = out.first, to == scaler, case .poolStatus(let s) = e.body else { return nil }
            return s
        }
        XCTAssertEqual(status()?.emamba, PoolLoad(spansRunning: 2, spansQueued: 1, replicasReady: 2, replicasDraining: 0, capacity: 2))
        XCTAssertEqual(status()?.et5, PoolLoad())
        _ = core.expertFrame(mambaB, .success(Envelope(.heartbeat(Heartbeat(draining: true)))), now: 20)
        XCTAssertEqual(status()?.emamba, PoolLoad(spansRunning: 2, spansQueued: 1, replicasReady: 1, replicasDraining: 1, capacity: 1))
        XCTAssertEqual(core.liveReplicas(.emamba), 1, "a draining replica takes no new spans")
    }

    func testAlternatingGateSendsSpansToBothPoolsAndCompletesAtLength() {
        let core = makeCore()
        ready(core, mambaA, .emamba, name: "m1")
        ready(core, t5, .et5, name: "t1")
        let first = spans(ask(core, "r1", maxTokens: 8))
        XCTAssertEqual(first.count, 1)
        XCTAssertEqual(first[0].0, mambaA)
        XCTAssertEqual(first[0].1.maxNewTokens, 4)
        XCTAssertEqual(first[0].1.prompt, "question: What is gingivitis?")

        let afterFirst = core.expertFrame(mambaA, .success(result(first[0].1, "Gum ", tokens: 4)), now: 1)
        let second = spans(afterFirst)
        XCTAssertEqual(second.count, 1)
        XCTAssertEqual(second[0].0, t5, "the alternating gate must switch to ET5")
        XCTAssertEqual(second[0].1.answerSoFar, "Gum ")
        XCTAssertEqual(second[0].1.spanIndex, 1)
        XCTAssertEqual(second[0].1.answerTokensBefore, 4)
        guard case .span(let forwarded)? = events(afterFirst).first?.kind else { return XCTFail("span not forwarded") }
        XCTAssertEqual(forwarded.replicaId, "m1")
        XCTAssertEqual(forwarded.pool, .emamba)

        let end = core.expertFrame(t5, .success(result(second[0].1, "disease", tokens: 4)), now: 2)
        let evs = events(end)
        XCTAssertEqual(evs.count, 2)
        guard case .done(let done) = evs[1].kind else { return XCTFail("expected done") }
        XCTAssertEqual(done.finish, .length)
        XCTAssertEqual(done.emambaTokens, 4)
        XCTAssertEqual(done.et5Tokens, 4)
        XCTAssertEqual(done.gateKind, "alternate")
        XCTAssertEqual(core.activeRequests, 0)
        // Both replicas kept a session for this answer: both are told to release it.
        let released = end.compactMap { action -> PeerIdentity? in
            if case .toExpert(let id, let e) = action, case .cancel(let c) = e.body, c.requestId == "r1" { return id }
            return nil
        }
        XCTAssertEqual(Set(released), [mambaA, t5])
    }

    /// `first_span_tokens`: the first span is short (the first text comes sooner), the rest as usual.
    func testAShorterFirstSpan() {
        let core = makeCore { $0.firstSpanTokens = 2 }
        ready(core, mambaA, .emamba, name: "m1")
        ready(core, t5, .et5, name: "t1")
        let first = spans(ask(core, "r1", maxTokens: 8))
        XCTAssertEqual(first.map(\.1.maxNewTokens), [2])
        let second = spans(core.expertFrame(mambaA, .success(result(first[0].1, "Gum ", tokens: 2)), now: 1))
        XCTAssertEqual(second.map(\.1.maxNewTokens), [4])
        let third = spans(core.expertFrame(t5, .success(result(second[0].1, "disease is", tokens: 4)), now: 2))
        XCTAssertEqual(third.map(\.1.maxNewTokens), [2], "the rest of max_tokens")
        XCTAssertEqual(third.first?.1.answerTokensBefore, 6)
    }

    func testEosEndsTheAnswer() {
        let core = makeCore()
        ready(core, mambaA, .emamba, name: "m1")
        let s = spans(ask(core, "r1", forced: .emamba))
        let evs = events(core.expertFrame(mambaA, .success(result(s[0].1, "Yes.", tokens: 2, finish: .eos)), now: 1))
        guard case .done(let done) = evs.last?.kind else { return XCTFail("expected done") }
        XCTAssertEqual(done.finish, .eos)
    }

    func testDeadReplicaSpansAreRedispatchedToAnotherReplica() {
        let core = makeCore()
        ready(core, mambaA, .emamba, name: "m1", now: 0)
        ready(core, mambaB, .emamba, name: "m2", now: 0)
        let s = spans(ask(core, "r1", forced: .emamba, now: 0))
        let victim = s[0].0
        let survivor = victim == mambaA ? mambaB : mambaA
        // The survivor keeps heart-beating, the victim falls silent.
        _ = core.expertFrame(survivor, .success(Envelope(.heartbeat(Heartbeat()))), now: 2500)
        let after = core.tick(now: 3500)
        let retried = spans(after)
        XCTAssertEqual(retried.count, 1)
        XCTAssertEqual(retried[0].0, survivor)
        var expected = s[0].1
        expected.deadlineMs -= 3500  // the time left as it leaves again
        XCTAssertEqual(retried[0].1, expected, "the retry is the same self-contained span")
        XCTAssertEqual(core.stats.spanRetries, 1)
        XCTAssertEqual(core.liveReplicas(.emamba), 1)
        // A late result from the dead replica is ignored.
        _ = core.expertFrame(victim, .success(result(s[0].1, "late", tokens: 4)), now: 3600)
        XCTAssertEqual(core.stats.lateResults, 0, "unknown replicas are asked to re-register, not trusted")
    }

    func testEmptyPoolFallsBackAndBothEmptyIsUnavailable() {
        let core = makeCore(gate: AlternatingGate(first: .et5))
        let refused = events(ask(core, "r0"))
        guard case .error(let e)? = refused.first?.kind else { return XCTFail("expected an error") }
        XCTAssertEqual(e.code, .unavailable)
        XCTAssertTrue(e.retryable)

        ready(core, mambaA, .emamba, name: "m1")
        let s = spans(ask(core, "r1"))
        XCTAssertEqual(s.first?.0, mambaA, "ET5 pool is empty: the span falls back to EMamba")
        XCTAssertEqual(core.stats.fallbacks, 1)
    }

    func testBackpressureRefusesWhenBothPoolsAreSaturated() {
        let core = makeCore { $0.maxQueuedSpansPerPool = 1; $0.fallbackOnOverload = false }
        ready(core, mambaA, .emamba, name: "m1", capacity: 1)
        _ = ask(core, "r1", forced: .emamba)       // in flight
        _ = ask(core, "r2", forced: .emamba)       // queued
        let evs = events(ask(core, "r3", forced: .emamba))
        guard case .error(let e)? = evs.first?.kind else { return XCTFail("expected overloaded") }
        XCTAssertEqual(e.code, .overloaded)
        XCTAssertTrue(e.retryable)
        XCTAssertEqual(core.queueDepth(.emamba), 1)
    }

    func testCancelStopsTheExpertAndDropsLateResults() {
        let core = makeCore()
        ready(core, mambaA, .emamba, name: "m1")
        let s = spans(ask(core, "r1", forced: .emamba))
        let out = core.gatewayFrame(gateway, .success(Envelope(.cancel(Cancel(requestId: "r1")))), now: 1)
        XCTAssertTrue(out.contains { if case .toExpert(let id, let e) = $0, id == mambaA, case .cancel = e.body { return true }; return false })
        XCTAssertEqual(core.activeRequests, 0)
        XCTAssertTrue(events(core.expertFrame(mambaA, .success(result(s[0].1, "x", tokens: 4)), now: 2)).isEmpty)
    }

    func testDeadlineFailsTheRequest() {
        let core = makeCore()
        ready(core, mambaA, .emamba, name: "m1")
        _ = core.gatewayFrame(gateway, .success(Envelope(.answerRequest(AnswerRequest(
            requestId: "r1", question: "q", maxNewTokens: 8, deadlineMs: 500)))), now: 0)
        _ = core.expertFrame(mambaA, .success(Envelope(.heartbeat(Heartbeat()))), now: 400)
        let evs = events(core.tick(now: 600))
        guard case .error(let e)? = evs.first?.kind else { return XCTFail("expected a deadline error") }
        XCTAssertEqual(e.code, .deadline)
        XCTAssertEqual(core.stats.deadlineMisses, 1)
    }

    func testGarbageAndUnknownPeersAreCountedNotTrusted() {
        let core = makeCore()
        _ = core.gatewayFrame(gateway, .failure(.malformed(bytes: 3)), now: 0)
        _ = core.expertFrame(mambaA, .failure(.malformed(bytes: 3)), now: 0)
        XCTAssertEqual(core.stats.malformedFrames, 2)
        // An expert the router does not know (e.g. after a router restart) must re-register.
        let out = core.expertFrame(mambaA, .success(Envelope(.heartbeat(Heartbeat()))), now: 0)
        XCTAssertTrue(out.contains { if case .toExpert(_, let e) = $0, case .disconnect = e.body { return true }; return false })
    }

    func testRuleGatePrefersEMambaForLongContextsAndET5ForShortComplexQuestions() {
        let gate = RuleGate()
        let long = GateInput(question: "What is described?", context: String(repeating: "the patient was seen today ", count: 60),
                             answerSoFar: "", previous: nil, previousConfidence: nil, policy: Policy(costWeight: 0.5))
        let short = GateInput(question: "Pathophysiology of periodontitis versus gingivitis?", context: "",
                              answerSoFar: "", previous: nil, previousConfidence: nil, policy: Policy(costWeight: 0.5))
        XCTAssertEqual(gate.decide(long).pool, .emamba)
        XCTAssertEqual(gate.decide(short).pool, .et5)
        var cheapest = short; cheapest.policy.costWeight = 1
        XCTAssertEqual(gate.decide(cheapest).pool, .emamba)
        var best = long; best.policy.costWeight = 0
        XCTAssertEqual(gate.decide(best).pool, .et5)
    }

    func testHysteresisKeepsThePreviousExpertNearTheThreshold() {
        XCTAssertEqual(applyHysteresis(score: 0.55, threshold: 0.5, previous: .emamba, margin: 0.1), .emamba)
        XCTAssertEqual(applyHysteresis(score: 0.45, threshold: 0.5, previous: .et5, margin: 0.1), .et5)
        XCTAssertEqual(applyHysteresis(score: 0.65, threshold: 0.5, previous: .emamba, margin: 0.1), .et5)
        XCTAssertEqual(applyHysteresis(score: 0.55, threshold: 0.5, previous: nil, margin: 0.1), .et5)
    }
}

/// Several routers (wire 1.4): an answer another router started continues here from the
/// answer so far, exactly as the first router would have continued it; a replica shared by
/// several routers gets no more spans from this one than its share.
final class RouterResumeTests: XCTestCase {
    let gateway: PeerIdentity = [0xAA]
    let mamba: PeerIdentity = [1]
    let t5: PeerIdentity = [3]

    func makeCore() -> RouterCore {
        var config = RouterConfig()
        config.spanTokens = 4
        let core = RouterCore(config: config, gate: AlternatingGate())
        for (id, pool, name) in [(mamba, PoolKind.emamba, "m1"), (t5, .et5, "t1")] {
            _ = core.expertFrame(id, .success(Envelope(.ready(Ready(pool: pool, modelId: "m", replicaId: name, capacity: 4, softwareVersion: "t")))), now: 0)
        }
        return core
    }

    func request(_ id: String, resume: AnswerProgress? = nil, maxTokens: UInt32 = 12) -> Result<Envelope, WireError> {
        .success(Envelope(.answerRequest(AnswerRequest(requestId: id, question: "What is gingivitis?", maxNewTokens: maxTokens,
                                                       resume: resume))))
    }

    func span(_ actions: [RouterAction]) -> (PeerIdentity, SpanRequest)? {
        for case .toExpert(let id, let e) in actions { if case .spanRequest(let s) = e.body { return (id, s) } }
        return nil
    }

    func result(_ span: SpanRequest, _ text: String, finish: FinishReason = .none) -> Result<Envelope, WireError> {
        .success(Envelope(.spanResult(SpanResult(requestId: span.requestId, spanIndex: span.spanIndex,
                                                 pieces: (0..<4).map { Piece(text: $0 == 0 ? text : "", tokenId: 5, logprob: -0.1 * Float($0 + 1), entropy: 0.5) },
                                                 text: text, finish: finish, promptTokens: 9))))
    }

    func testAResumedAnswerContinuesExactlyWhereTheDeadRouterLeftIt() throws {
        // Router A: the fault-free path, two spans.
        let a = makeCore()
        let (_, first) = try XCTUnwrap(span(a.gatewayFrame(gateway, request("r1"), now: 0)))
        let afterFirst = a.expertFrame(mamba, result(first, "Gum "), now: 1)
        let (expectedReplica, expectedSecond) = try XCTUnwrap(span(afterFirst))
        // The gateway's copy of the answer so far, built from the span it was sent.
        var progress = AnswerProgress()
        for case .toGateway(_, let e) in afterFirst {
            if case .answerEvent(let ev) = e.body, case .span(let forwarded) = ev.kind { progress.append(forwarded, pool: forwarded.pool) }
        }
        XCTAssertEqual(progress.spans, 1)
        // Router A dies; router B gets the answer with its progress and continues it.
        let b = makeCore()
        let (replica, second) = try XCTUnwrap(span(b.gatewayFrame(gateway, request("r1", resume: progress), now: 5)))
        XCTAssertEqual(replica, expectedReplica, "the gate decided as the dead router's did (ET5 after EMamba)")
        var comparable = second
        comparable.deadlineMs = expectedSecond.deadlineMs
        XCTAssertEqual(comparable, expectedSecond, "the same span request: index, answer so far, tokens before, budget")
        XCTAssertEqual(b.stats.resumed, 1)
        // It finishes with the whole answer's figures.
        let third = try XCTUnwrap(span(b.expertFrame(t5, result(second, "inflammation"), now: 6))).1
        let done = b.expertFrame(mamba, result(third, ".", finish: .length), now: 7)
        let stats = done.compactMap { action -> DoneStats? in
            if case .toGateway(_, let e) = action, case .answerEvent(let ev) = e.body, case .done(let d) = ev.kind { return d }
            return nil
        }.first
        XCTAssertEqual(stats?.completionTokens, 12)
        XCTAssertEqual(stats?.spans, 3)
        XCTAssertEqual(stats?.emambaTokens, 8)
        XCTAssertEqual(stats?.et5Tokens, 4)
        XCTAssertEqual(stats?.promptTokens, 9, "the prompt's tokens come with the answer so far")
    }

    func testAForgedAnswerSoFarIsRefusedAndStartsNothing() {
        func progress(text: String = "x", tokens: UInt32 = 4, byPool: [PoolKind: UInt32] = [.emamba: 4], spans: UInt32 = 1,
                      previous: PoolKind? = .emamba, confidence: Float? = 0.5) -> AnswerProgress {
            AnswerProgress(text: text, tokens: tokens, tokensByPool: byPool, spans: spans, previousPool: previous,
                           previousConfidence: confidence, previousEntropy: confidence == nil ? nil : 1, promptTokens: 3)
        }
        let forged: [(String, AnswerProgress)] = [
            ("already complete", progress(tokens: 12, byPool: [.emamba: 12])),
            ("more spans than tokens", progress(spans: 5)),
            ("no spans", progress(spans: 0)),
            ("pools that do not add up", progress(byPool: [.emamba: 3, .et5: 3])),
            ("no previous pool", progress(previous: nil)),
            ("no scores", progress(confidence: nil)),
            ("a confidence above 1", progress(confidence: 7)),
            ("an oversized text", progress(text: String(repeating: "a", count: RouterConfig().maxPromptBytes + 1))),
        ]
        for (name, resume) in forged {
            let core = makeCore()
            let out = core.gatewayFrame(gateway, request("f", resume: resume), now: 0)
            XCTAssertNil(span(out), "\(name): nothing dispatched")
            let refused = out.contains { action in
                if case .toGateway(_, let e) = action, case .answerEvent(let ev) = e.body, case .error(let err) = ev.kind {
                    return err.code == .badRequest && !err.retryable && err.message.contains("cannot resume")
                }
                return false
            }
            XCTAssertTrue(refused, "\(name): refused with a clear error")
            XCTAssertEqual(core.activeRequests, 0)
        }
    }

    func testASharedReplicaGetsNoMoreThanItsShareFromThisRouter() {
        let core = makeCore()
        _ = core.expertFrame(mamba, .success(Envelope(.heartbeat(Heartbeat(capacity: 1)))), now: 1)
        var dispatched = 0
        for i in 0..<3 {
            let out = core.gatewayFrame(gateway, .success(Envelope(.answerRequest(AnswerRequest(
                requestId: "s\(i)", question: "q", maxNewTokens: 8, policy: Policy(forced: .emamba))))), now: 2)
            dispatched += span(out) == nil ? 0 : 1
        }
        XCTAssertEqual(dispatched, 1, "a share of 1: one span in flight there")
        XCTAssertEqual(core.queueDepth(.emamba), 2)
        let more = core.expertFrame(mamba, .success(Envelope(.heartbeat(Heartbeat(capacity: 100)))), now: 3)
        XCTAssertEqual(more.filter { if case .toExpert(_, let e) = $0, case .spanRequest = e.body { return true }; return false }.count, 2,
                       "a larger share sends what waited, up to Ready's capacity")
        XCTAssertEqual(core.poolStatus().emamba.capacity, 4, "never more than the replica announced in Ready")
    }
}

/// A request without a cost weight (1.4: `Policy.defaultCostWeight`) runs at the router's
/// checkpoint default; one with a cost weight runs at its own.
final class DefaultCostWeightTests: XCTestCase {
    final class RecordingGate: SpanGate, @unchecked Sendable {
        var weights: [Float] = []
        let kind = "recording"
        func decide(_ input: GateInput) -> GateDecision {
            weights.append(input.policy.costWeight)
            return GateDecision(pool: .emamba, score: 0)
        }
    }

    func testTheCheckpointDefaultAppliesOnlyWhenTheClientGaveNone() {
        let gate = RecordingGate()
        var config = RouterConfig()
        config.defaultCostWeight = 0.25
        let core = RouterCore(config: config, gate: gate)
        _ = core.expertFrame([1], .success(Envelope(.ready(Ready(pool: .emamba, modelId: "m", replicaId: "m1", capacity: 4, softwareVersion: "t")))), now: 0)
        for (id, policy) in [("default", Policy(costWeight: 0.5, defaultCostWeight: true)), ("given", Policy(costWeight: 0.9)),
                             ("zero", Policy(costWeight: 0))] {
            _ = core.gatewayFrame([0xAA], .success(Envelope(.answerRequest(AnswerRequest(requestId: id, question: "q", policy: policy)))), now: 0)
        }
        XCTAssertEqual(gate.weights, [0.25, 0.9, 0], "the default for the first; the client's own for the others (0 included)")
        XCTAssertEqual(RouterConfig().defaultCostWeight, 0.5, "a checkpoint without default_cost_weight: 0.5, as before")
    }
}
