import Foundation
import GatewayClient
import Logging
import Wire

/// One answer in progress: submits the request to the backend, merges its span results in
/// order, enforces the deadline and the span-gap timeout, and hands the HTTP layer a simple
/// sequence of steps — merged spans, then exactly one `finished` or `failed`.
///
/// Both endpoints and both modes (JSON, SSE) drive the same run, so the merging and failure
/// rules cannot drift apart between them.
// Sendable: one task drives `next()` (consumer-side state); `cancel()` from another task
// touches only `terminal` and `timer`, under `lock`.
final class AnswerRun: @unchecked Sendable {
    enum Step {
        /// A merged span; with `stop` strings, its `text` is what may be sent now (a tail that
        /// could begin a stop string waits for the next span).
        case span(SpanResult)
        /// Text held back for a stop string that never came, released at the end of the answer.
        case text(String)
        /// Nothing happened for `keepAliveMs`: a streaming writer sends an SSE comment.
        case idle
        case finished(AnswerResponse)
        case failed(GatewayError)
    }

    private enum Input {
        case event(AnswerEvent)
        case ended
        case tick
    }

    let requestId: String
    let params: AnswerParams
    private let backend: AnswerBackend
    private let config: GatewayConfig
    private let metrics: GatewayMetrics
    private let logger: Logger
    private let permit: ConcurrencyLimiter.Permit
    /// The client's quota claim (nil: not limited); settled with the tokens generated.
    private let quota: ClientQuotas.Permit?
    /// The authenticated client's name (per-client metrics).
    private let client: String?
    private let started: ContinuousClock.Instant
    private let deadline: ContinuousClock.Instant

    // Consumer-side state: touched only by the one task calling `next()`.
    private var merger: SpanMerger
    private var ready: [Step] = []
    /// Matches `stop` strings on the merged text (nil without them).
    private var stopper: StopMatcher?
    /// A stop string matched: the answer ends once `ready` is sent.
    private var stopped = false
    /// Bytes of the pieces' text passed through the stop matcher so far.
    private var pieceBytes = 0
    private var firstSpanAt: ContinuousClock.Instant?
    private var lastActivity: ContinuousClock.Instant
    private var delivered = false
    /// The run's one queue: the backend's events (through `AnswerSink`) and the timer's ticks.
    private let inputs: AsyncStream<Input>
    private let inbox: AsyncStream<Input>.Continuation
    private var iterator: AsyncStream<Input>.AsyncIterator?
    /// When the pending timer fires (the next deadline, gap or keep-alive check).
    private var armedAt: ContinuousClock.Instant?

    // Shared with `cancel()` (another task): guarded by `lock`.
    private let lock = NSLock()
    private var terminal = false
    private var timer: Task<Void, Never>?

    init(requestId: String, params: AnswerParams, backend: AnswerBackend, config: GatewayConfig,
         metrics: GatewayMetrics, logger: Logger, permit: ConcurrencyLimiter.Permit,
         quota: ClientQuotas.Permit? = nil, client: String? = nil, started: ContinuousClock.Instant) {
        self.requestId = requestId
        self.params = params
        self.backend = backend
        self.config = config
        self.metrics = metrics
        self.logger = logger
        self.permit = permit
        self.quota = quota
        self.client = client
        self.started = started
        self.deadline = started + .milliseconds(params.deadlineMs + config.deadlineGraceMs)
        self.merger = SpanMerger(requestId: requestId)
        self.stopper = params.stop.isEmpty ? nil : StopMatcher(params.stop)
        self.lastActivity = started
        (inputs, inbox) = AsyncStream<Input>.makeStream()
    }

    deinit {
        // A run dropped before reaching its end (e.g. a response never written): make sure the
        // router stops and the permit returns.
        if !terminal {
            let backend = self.backend, id = requestId
            Task { await backend.cancel(requestId: id) }
            timer?.cancel()
        }
        inbox.finish()
        permit.release()
        // A run that never finished: what it generated is unknown, so the reservation stays.
        quota?.end(generated: params.maxTokens)
    }

    /// Sends the request. Failures here happen before any byte of the response, so they
    /// become a proper HTTP status.
    func start() async throws {
        let request = params.wireRequest(requestId: requestId, now: Date(), spanTokens: config.spanTokens)
        let inbox = self.inbox
        let sink = AnswerSink(deliver: { inbox.yield(.event($0)) }, close: { inbox.yield(.ended) })
        do {
            try await backend.submit(request, to: sink)
        } catch let error as BackendSubmitError {
            quota?.refund()   // the cluster refused it: it costs the client nothing
            finish(outcome: "rejected")
            throw GatewayError.fromWire(error.wire, retryAfter: config.retryAfterSeconds,
                                        deadlineMs: params.deadlineMs, partial: nil)
        } catch {
            quota?.refund()
            finish(outcome: "rejected")
            throw GatewayError(.serviceUnavailable, "unavailable", "the router cannot be reached: \(error)",
                               retryAfter: config.retryAfterSeconds)
        }
        iterator = inputs.makeAsyncIterator()
        armTimer()
    }

    /// One timer, set for the next instant something is due: the deadline, the span-gap
    /// timeout, or a keep-alive. Re-armed only when that instant comes earlier (a gap opened);
    /// when it moves later (a span reset the keep-alive) the timer fires early, finds nothing
    /// due, and is set again, which costs less than a new timer per span.
    private func armTimer() {
        var due = min(deadline, lastActivity + .milliseconds(config.keepAliveMs))
        if let gapSince = merger.gapSince { due = min(due, gapSince + .milliseconds(config.spanGapTimeoutMs)) }
        if let armedAt, armedAt <= due { return }
        armedAt = due
        let inbox = self.inbox
        let fresh = Task {
            try? await Task.sleep(until: due, clock: .continuous)
            if !Task.isCancelled { inbox.yield(.tick) }
        }
        let stale = lock.withLock { () -> Task<Void, Never>? in
            if terminal { return fresh }
            defer { timer = fresh }
            return timer
        }
        stale?.cancel()
    }

    /// The next step; nil after the terminal step was delivered (or the run was cancelled).
    func next() async -> Step? {
        while true {
            if !ready.isEmpty {
                lastActivity = .now
                return ready.removeFirst()
            }
            if stopped {
                // The rest of the answer is not wanted: the router stops generating it.
                return terminate(.finished(response("stop", stats: nil)), outcome: "ok", cancelBackend: true)
            }
            if delivered || lock.withLock({ terminal }) { return nil }
            armTimer()
            guard let input = await iterator?.next() else {
                return terminate(.failed(.upstream("the answer stream stopped unexpectedly", partial: partial("error"))),
                                 outcome: "upstream")
            }
            if lock.withLock({ terminal }) { return nil }   // cancelled while waiting
            let now = ContinuousClock.now
            switch input {
            case .tick:
                armedAt = nil  // it fired
                if now >= deadline {
                    logger.notice("deadline reached", metadata: ["spans": "\(merger.nextIndex)"])
                    return terminate(.failed(.deadline(params.deadlineMs, partial: partial("deadline"))),
                                     outcome: "deadline", cancelBackend: true)
                }
                if let gap = merger.expiredGap(now: now, timeout: .milliseconds(config.spanGapTimeoutMs)) {
                    logger.error("span gap", metadata: ["missing": "\(gap.missing)", "waiting": "\(gap.waiting)"])
                    return terminate(.failed(.incomplete(gap, partial: partial("error"))),
                                     outcome: "incomplete", cancelBackend: true)
                }
                if now - lastActivity >= .milliseconds(config.keepAliveMs) {
                    lastActivity = now
                    return .idle
                }
            case .ended:
                logger.error("router stream ended without done or error")
                return terminate(.failed(.upstream("the router closed the answer stream without finishing it",
                                                   partial: partial("error"))), outcome: "upstream")
            case .event(let event):
                // Spans of another request are the merger's to drop (it counts them).
                switch event.kind {
                case .span(let span):
                    let before = (merger.duplicatesDropped, merger.foreignDropped)
                    let released = merger.accept(span, now: now)
                    metrics.spansDropped(merger.duplicatesDropped - before.0, reason: "duplicate")
                    metrics.spansDropped(merger.foreignDropped - before.1, reason: "foreign")
                    if !released.isEmpty, firstSpanAt == nil {
                        firstSpanAt = now
                        metrics.firstSpan(after: now - started)
                    }
                    for var span in released where !stopped {
                        if var stopper {
                            let (text, matched) = stopper.append(span.text)
                            self.stopper = stopper
                            span.text = text
                            stopped = matched
                            // The matched span keeps only the tokens before the stop string.
                            if matched, let end = stopper.matchedAt { span.pieces = Self.pieces(span.pieces, from: pieceBytes, upTo: end) }
                            pieceBytes += span.pieces.reduce(0) { $0 + $1.text.utf8.count }
                        }
                        ready.append(.span(span))
                    }
                case .done(let stats):
                    return complete(stats)
                case .error(let wire):
                    logger.warning("router reported an error", metadata: ["code": "\(wire.code)", "retryable": "\(wire.retryable)"])
                    let outcome = wire.code == .deadline ? "deadline" : "upstream"
                    return terminate(.failed(.fromWire(wire, retryAfter: config.retryAfterSeconds, deadlineMs: params.deadlineMs,
                                                       partial: partial(wire.code == .deadline ? "deadline" : "error"))),
                                     outcome: outcome)
                }
            }
        }
    }

    /// The client went away (or the response was abandoned): stop the router's work.
    func cancel() async {
        let wasRunning = lock.withLock { () -> Bool in
            defer { terminal = true }
            return !terminal
        }
        guard wasRunning else { return }
        logger.info("client disconnected; cancelling on the router")
        inbox.yield(.tick)  // wakes a `next()` waiting for input: it sees the run ended
        finish(outcome: "cancelled")
        await backend.cancel(requestId: requestId)
    }

    // MARK: Ending

    private func complete(_ stats: DoneStats) -> Step? {
        if let gap = merger.gapAtCompletion(expectedSpans: stats.spans) {
            logger.error("router finished with a span missing", metadata: ["missing": "\(gap.missing)"])
            return terminate(.failed(.incomplete(gap, partial: partial("error"))), outcome: "incomplete")
        }
        switch stats.finish {
        case .deadline:
            return terminate(.failed(.deadline(params.deadlineMs, partial: partial("deadline", stats: stats))),
                             outcome: "deadline")
        case .cancelled:
            return terminate(.failed(.upstream("the router cancelled the request", partial: partial("error", stats: stats))),
                             outcome: "upstream")
        case .eos, .length, .none:
            let reason: String
            switch stats.finish {
            case .length: reason = "length"
            case .eos: reason = "eos"
            default: reason = stats.completionTokens >= UInt32(params.maxTokens) ? "length" : "eos"
            }
            if stats.queueUs > 0 { metrics.routerQueue(microseconds: stats.queueUs) }
            // Text held back for a stop string that never came goes out before the end.
            if var stopper, case let tail = stopper.flush(), !tail.isEmpty {
                self.stopper = stopper
                ready.append(.text(tail))
                let finished = response(reason, stats: stats)
                return terminate(.finished(finished), outcome: "ok").map { end in
                    ready.append(end)
                    return ready.removeFirst()
                }
            }
            return terminate(.finished(response(reason, stats: stats)), outcome: "ok")
        }
    }

    private func terminate(_ step: Step, outcome: String, cancelBackend: Bool = false) -> Step? {
        let first = lock.withLock { () -> Bool in
            defer { terminal = true }
            return !terminal
        }
        guard first else { return nil }
        delivered = true
        finish(outcome: outcome)
        if cancelBackend {
            let backend = self.backend, id = requestId
            Task { await backend.cancel(requestId: id) }
        }
        return step
    }

    /// Bookkeeping common to every end: stop the timer, count tokens, return the permit.
    private func finish(outcome: String) {
        let pending = lock.withLock { () -> Task<Void, Never>? in
            defer { timer = nil }
            return timer
        }
        pending?.cancel()
        let usage = usage(stats: nil)
        metrics.tokens(usage.emambaTokens, expert: .emamba)
        metrics.tokens(usage.et5Tokens, expert: .et5)
        if let client { metrics.clientTokens(usage.completionTokens, client: client) }
        metrics.answer(outcome: outcome)
        quota?.end(generated: usage.completionTokens)
        permit.release()
    }

    // MARK: Building the response

    /// The one count of an answer's tokens (the response's usage, the metrics): the tokens
    /// the client received, per expert, from the merged spans. A span a retry replaced is not
    /// in the answer and not counted. The prompt's length is the router's count when it sent one.
    private func usage(stats: DoneStats?) -> AnswerResponse.Usage {
        var emamba = 0, et5 = 0
        for span in merger.merged {
            if span.pool == .et5 { et5 += span.pieces.count } else { emamba += span.pieces.count }
        }
        let traced = merger.merged.map { Int($0.promptTokens) }.max() ?? 0
        let prompt = stats.map { Int($0.promptTokens) }.flatMap { $0 > 0 ? $0 : nil } ?? traced
        return AnswerResponse.Usage(promptTokens: prompt, completionTokens: emamba + et5, emambaTokens: emamba, et5Tokens: et5)
    }

    private func partial(_ reason: String, stats: DoneStats? = nil) -> AnswerResponse {
        response(reason, stats: stats)
    }

    private func response(_ reason: String, stats: DoneStats?) -> AnswerResponse {
        let trace = merger.merged.map(AnswerResponse.TraceEntry.init)
        let usage = usage(stats: stats)
        let total = Double((ContinuousClock.now - started) / .microseconds(1)) / 1000
        let seed = params.sampling.temperature > 0 ? params.sampling.seed : nil
        return AnswerResponse(id: requestId, answer: stopper?.answer ?? merger.text, finishReason: reason, usage: usage, trace: trace,
                              timings: .init(queueMs: rounded(Double(stats?.queueUs ?? 0) / 1000, places: 3),
                                             totalMs: rounded(total, places: 3)),
                              seed: seed, logprobs: params.logprobs ? answerLogprobs() : nil)
    }

    /// Every token of the answer (up to a stop string), with its log-probability.
    private func answerLogprobs() -> [TokenLogprobEntry] {
        var entries: [TokenLogprobEntry] = []
        var bytes = 0
        for var span in merger.merged {
            if let end = stopper?.matchedAt {
                span.pieces = Self.pieces(span.pieces, from: bytes, upTo: end)
            }
            bytes += span.pieces.reduce(0) { $0 + $1.text.utf8.count }
            entries += TokenLogprobEntry.entries(span)
        }
        return entries
    }

    /// The pieces whose text ends at or before byte `end` of the answer, the first starting at byte `start`.
    static func pieces(_ pieces: [Piece], from start: Int, upTo end: Int) -> [Piece] {
        var offset = start
        return Array(pieces.prefix { piece in
            offset += piece.text.utf8.count
            return offset <= end
        })
    }
}
