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
        /// Spans the answer had when it last moved: a retryable refusal before the next span
        /// means the new router would not take it, so it moves on.
        var spansAtMove: UInt32?
        /// How the last span ended: an answer complete but for its `done` is not resumed.
        var lastFinish: FinishReason = .none
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

    /// One event of the answer's current submission. The answer's queue is fed under the lock
    /// (it only enqueues), so nothing reaches it after its end.
    private func deliver(_ event: AnswerEvent, id: String, generation: Int) {
        let moving = lock.withLock { () -> (Answer, WireErrorBody)? in
            guard let answer = answers[id], answer.generation == generation else { return nil }
            switch event.kind {
            case .span(let result):
                // In order: the answer so far grows. A span index already merged is a duplicate.
                if result.spanIndex == answer.progress.spans {
                    answer.progress.append(result, pool: result.pool)
                    answer.lastFinish = result.finish
                } else if result.spanIndex < answer.progress.spans {
                    return nil
                }
            case .error(let error) where error.reason == WireErrorBody.Reason.routerLost
                || (error.retryable && answer.spansAtMove == answer.progress.spans):
                // The router died, or the router it moved to refused it (busy, draining) before
                // adding a span: move (again). The end() that follows is not the answer's end.
                answer.generation += 1
                return (answer, error)
            default:
                break
            }
            answer.sink.send(event)
            return nil
        }
        if let (answer, error) = moving { Task { await self.move(answer, after: error) } }
    }

    private func ended(id: String, generation: Int) {
        lock.withLock {
            guard let answer = answers[id], answer.generation == generation else { return }
            answers[id] = nil
            answer.sink.end()
        }
    }

    /// The answer's router died: continue it on another live one, from the answer so far.
    private func move(_ answer: Answer, after error: WireErrorBody) async {
        let (from, progress, moves, lastFinish) = lock.withLock { (answer.router, answer.progress, answer.moves, answer.lastFinish) }
        // If it was alive after all (silent for a while, a reset connection), it stops working
        // on the answer; a dead one does not hear it.
        await routers[from].cancel(requestId: answer.request.requestId)
        // The router died between the answer's last span and its `done`: nothing to resume.
        if lastFinish != .none || progress.tokens >= answer.request.maxNewTokens {
            return complete(answer, finish: lastFinish == .none ? .length : lastFinish)
        }
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
            lock.withLock {
                answer.moves += 1
                answer.spansAtMove = progress.spans
            }
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
        lock.withLock {
            guard answers.removeValue(forKey: answer.request.requestId) != nil else { return }
            if var failure = error {
                failure.reason = ""
                answer.sink.send(AnswerEvent(requestId: answer.request.requestId, kind: .error(failure)))
            }
            answer.sink.end()
        }
    }

    /// The answer was complete when its router died: its `done`, from the answer so far.
    private func complete(_ answer: Answer, finish: FinishReason) {
        lock.withLock {
            guard answers.removeValue(forKey: answer.request.requestId) != nil else { return }
            let p = answer.progress
            answer.sink.send(AnswerEvent(requestId: answer.request.requestId, kind: .done(DoneStats(
                finish: finish, spans: p.spans, promptTokens: p.promptTokens, completionTokens: p.tokens,
                emambaTokens: p.tokensByPool[.emamba] ?? 0, et5Tokens: p.tokensByPool[.et5] ?? 0,
                totalUs: (MonotonicClock.nowMs() - min(MonotonicClock.nowMs(), answer.submittedMs)) * 1000))))
            answer.sink.end()
        }
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
