import Foundation
import Logging
import ServiceLifecycle
import Wire

/// The gateway's routers (`gateway.router` lists them): new answers go to the live router with
/// the fewest answers in flight, and an answer whose router dies moves to another live router
/// and continues where it was.
///
/// Every span of an answer passes through here on its way to the answer's queue, so the pool
/// keeps the answer so far (`AnswerProgress`, the type the router itself keeps). When a router
/// connection reports the router lost (`Reason.routerLost`: its socket dropped or it fell
/// silent), the answer is submitted to another router with that progress (`AnswerRequest.resume`,
/// wire 1.4): the new router's gate reads the same answer so far and decides as the dead one
/// would have, and its spans continue at the next span index. The answer's queue never sees the
/// failure: no gap, no duplicate (a span index already merged is dropped), and a greedy answer
/// is the one a fault-free run gives. Only when no router is live does the client get `503`.
// Sendable: shared state (the answers and their progress) is touched only under `lock`.
public final class RouterPool: AnswerBackend, @unchecked Sendable {
    private let routers: [AnswerBackend]
    private let logger: Logger
    private let lock = NSLock()
    private var answers: [String: Answer] = [:]
    private var rotation = 0
    private var movedCount = 0

    /// One answer in flight: where it is, what it has so far, and which submission's events count.
    private final class Answer {
        let request: AnswerRequest
        let sink: AnswerSink
        let submittedMs: UInt64
        var progress = AnswerProgress()
        var router: Int
        /// Bumped on each move: events from an earlier router's submission are ignored.
        var generation = 0
        var moves = 0
        /// The client went away: a move in progress stops instead of continuing elsewhere.
        var cancelled = false
        init(request: AnswerRequest, sink: AnswerSink, router: Int) {
            self.request = request; self.sink = sink; self.router = router
            submittedMs = MonotonicClock.nowMs()
        }
    }

    public init(_ routers: [AnswerBackend], logger: Logger) {
        precondition(!routers.isEmpty, "a gateway needs at least one router")
        self.routers = routers
        self.logger = logger
    }

    /// Answers moved to another router after theirs died (since start).
    public var moved: Int { lock.withLock { movedCount } }

    // MARK: AnswerBackend

    public func submit(_ request: AnswerRequest, to sink: AnswerSink) async throws {
        let order = await liveRouters()
        guard !order.isEmpty else {
            throw BackendSubmitError(code: .unavailable, message: routers.count == 1
                                     ? "the router is not answering" : "none of the \(routers.count) routers is answering")
        }
        let answer = Answer(request: request, sink: sink, router: order[0])
        lock.withLock { answers[request.requestId] = answer }
        var lastError: Error?
        for router in order {
            do {
                try await send(answer, to: router, request: request)
                return
            } catch {
                lastError = error  // it died since its last heartbeat: the next one
            }
        }
        lock.withLock { _ = answers.removeValue(forKey: request.requestId) }
        throw lastError ?? BackendSubmitError(code: .unavailable, message: "no router took the request")
    }

    public func cancel(requestId: String) async {
        let router = lock.withLock { () -> Int? in
            guard let answer = answers[requestId] else { return nil }
            answer.cancelled = true
            return answer.router
        }
        guard let router else { return }
        await routers[router].cancel(requestId: requestId)
    }

    /// Reachable when any router is; the replicas are the most any live router sees (every
    /// router sees every expert).
    public func status() async -> BackendStatus {
        var status = BackendStatus(routerReachable: false, emambaReplicas: 0, et5Replicas: 0)
        status.routersConfigured = routers.count
        for router in routers {
            let s = await router.status()
            guard s.routerReachable else { continue }
            status.routerReachable = true
            status.routersReachable += 1
            status.emambaReplicas = max(status.emambaReplicas, s.emambaReplicas)
            status.et5Replicas = max(status.et5Replicas, s.et5Replicas)
        }
        return status
    }

    // MARK: Moving answers

    /// Live routers, fewest answers in flight first (ties in turn), `avoiding` last or not at all.
    private func liveRouters(avoiding: Int? = nil) async -> [Int] {
        var live: [Int] = []
        for i in routers.indices where i != avoiding {
            if await routers[i].status().routerReachable { live.append(i) }
        }
        return lock.withLock {
            var load = [Int](repeating: 0, count: routers.count)
            for answer in answers.values { load[answer.router] += 1 }
            let start = rotation % routers.count
            rotation &+= 1
            return live.sorted { a, b in
                let ra = (a - start + routers.count) % routers.count, rb = (b - start + routers.count) % routers.count
                return (load[a], ra) < (load[b], rb)
            }
        }
    }

    /// Submits `request` for `answer` to `router`, with a sink that feeds this submission's
    /// events through `deliver` (and ignores them once the answer has moved on).
    private func send(_ answer: Answer, to router: Int, request: AnswerRequest) async throws {
        let generation = lock.withLock { () -> Int in
            answer.router = router
            answer.generation += 1
            return answer.generation
        }
        let id = request.requestId
        let sink = AnswerSink(deliver: { [weak self] event in self?.deliver(event, id: id, generation: generation) },
                              close: { [weak self] in self?.ended(id: id, generation: generation) })
        try await routers[router].submit(request, to: sink)
    }

    private func deliver(_ event: AnswerEvent, id: String, generation: Int) {
        let (answer, forward) = lock.withLock { () -> (Answer?, Bool) in
            guard let answer = answers[id], answer.generation == generation else { return (nil, false) }
            switch event.kind {
            case .span(let result):
                // In order: the answer so far grows. A span index already merged is a duplicate.
                if result.spanIndex == answer.progress.spans {
                    answer.progress.append(result, pool: result.pool)
                } else if result.spanIndex < answer.progress.spans {
                    return (answer, false)
                }
                return (answer, true)
            case .error(let error) where error.reason == WireErrorBody.Reason.routerLost:
                answer.generation += 1   // the old router's end() that follows is not the answer's end
                return (answer, false)
            default:
                return (answer, true)
            }
        }
        guard let answer else { return }
        if forward { return answer.sink.send(event) }
        if case .error(let error) = event.kind, error.reason == WireErrorBody.Reason.routerLost {
            Task { await self.move(answer, after: error) }
        }
    }

    private func ended(id: String, generation: Int) {
        let answer = lock.withLock { () -> Answer? in
            guard let answer = answers[id], answer.generation == generation else { return nil }
            answers[id] = nil
            return answer
        }
        answer?.sink.end()
    }

    /// The answer's router died: continue it on another live one, from the answer so far.
    private func move(_ answer: Answer, after error: WireErrorBody) async {
        let (from, progress, moves) = lock.withLock { (answer.router, answer.progress, answer.moves) }
        let elapsed = MonotonicClock.nowMs() - min(MonotonicClock.nowMs(), answer.submittedMs)
        var request = answer.request
        if request.deadlineMs > 0 {
            guard elapsed < UInt64(request.deadlineMs) else { return fail(answer, error) }
            request.deadlineMs -= UInt32(elapsed)
        }
        request.resume = progress.spans > 0 ? progress : nil
        // Each router at most once more than there are routers: a request that kills routers
        // does not walk through all of them forever.
        guard moves < routers.count else { return fail(answer, error) }
        for router in await liveRouters(avoiding: from) {
            guard !lock.withLock({ answer.cancelled }) else { return fail(answer, nil) }
            lock.withLock { answer.moves += 1 }
            do {
                try await send(answer, to: router, request: request)
                lock.withLock { movedCount += 1 }
                // Cancelled while it was being sent: stop it there too.
                if lock.withLock({ answer.cancelled }) { await routers[router].cancel(requestId: request.requestId) }
                logger.info("answer moved to another router", metadata: [
                    "request_id": "\(request.requestId)", "from": "\(from)", "to": "\(router)",
                    "spans_so_far": "\(progress.spans)"])
                return
            } catch {
                continue
            }
        }
        fail(answer, error)
    }

    /// No router can take the answer: the client gets the original failure (retryable), or
    /// nothing more when it went away (`error` nil).
    private func fail(_ answer: Answer, _ error: WireErrorBody?) {
        let gone = lock.withLock { answers.removeValue(forKey: answer.request.requestId) != nil }
        guard gone else { return }
        if var failure = error {
            failure.reason = ""
            answer.sink.send(AnswerEvent(requestId: answer.request.requestId, kind: .error(failure)))
        }
        answer.sink.end()
    }
}

/// The pool lives inside the gateway's ServiceGroup as its routers did: each router
/// connection that is a service runs (and shuts down) with it.
extension RouterPool: Service {
    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for case let service as Service in routers {
                group.addTask { try await service.run() }
            }
            try await group.waitForAll()
        }
    }
}
