import Engine
import Foundation
import Logging
import Metrics
import Tokenizers
import Wire

/// One expert replica: a DEALER connected to the router's backend, serving one model.
///
/// The loop alternates between the socket and the model: read whatever arrived (new spans
/// join the batch, cancellations leave it), run one batched decode step, send finished spans.
/// Heartbeats go both ways; when the router falls silent for `liveness` intervals the
/// replica reconnects with a fresh socket and announces itself again (Majordomo).
public final class ExpertNode {
    public struct Options: Sendable {
        public var router = "tcp://127.0.0.1:5556"
        public var pool: PoolKind = .emamba
        public var replicaId = "emamba-1"
        public var modelId = ""
        /// Concurrent sequences in one batch (announced to the router as capacity).
        public var capacity = 8
        public var maxSessions = 256
        public var maxSessionBytes = 1 << 30
        public var heartbeatIntervalMs: UInt64 = 1000
        public var liveness: UInt64 = 3
        public var drainTimeoutMs: UInt64 = 10_000
        public var curve: CurveClientConfig?
        /// Never end a span at EOS (its logit is masked): every answer runs to max tokens.
        /// For benchmarks and tests, as transformers' `min_new_tokens`.
        public var ignoreEOS = false
        public init() {}
    }

    public let options: Options
    public let stopRequested = StopFlag()
    private let logger: Logger
    private let context: ZmqContext
    private var socket: ZmqSocket
    private let scheduler: SpanScheduler
    private var waiting: [SpanRequest] = []
    private var lastRouterMs: UInt64 = 0
    private var lastHeartbeatMs: UInt64 = 0
    private var draining = false

    private let metrics: ExpertMetrics

    public init(options: Options, model: ExpertModel, tokenizer: Tokenizer, logger: Logger) throws {
        self.options = options
        self.logger = logger
        let cache = SessionCache(maxEntries: options.maxSessions, maxBytes: options.maxSessionBytes)
        scheduler = SpanScheduler(model: model, tokenizer: tokenizer, format: PromptFormat(), pool: options.pool,
                                  replicaId: options.replicaId, cache: cache, ignoreEOS: options.ignoreEOS)
        context = try ZmqContext()
        socket = try Self.connect(context: context, options: options)
        metrics = ExpertMetrics(pool: options.pool, replicaId: options.replicaId)
    }

    private static func connect(context: ZmqContext, options: Options) throws -> ZmqSocket {
        let socket = try ZmqSocket(context: context, type: .dealer)
        if let curve = options.curve { try socket.enableCurveClient(curve) }
        try socket.setReconnectInterval(ms: 100, maxMs: 1000)
        try socket.connect(options.router)
        return socket
    }

    private var ready: Envelope {
        Envelope(.ready(Ready(pool: options.pool, modelId: options.modelId, replicaId: options.replicaId,
                              capacity: UInt32(options.capacity), softwareVersion: "mambaformer \(WireProtocol.version)")))
    }

    /// Serves until `stopRequested` is set, then drains: in-flight spans finish (bounded),
    /// new ones are handed back to the router, and the replica says `Disconnect`.
    public func run() {
        logger.info("expert starting", metadata: ["pool": "\(options.pool)", "replica": "\(options.replicaId)", "router": "\(options.router)"])
        send(ready)
        lastRouterMs = WallClock.nowMs()
        var drainDeadline: UInt64 = .max
        while true {
            let now = WallClock.nowMs()
            if stopRequested.isSet, !draining {
                draining = true
                drainDeadline = now + options.drainTimeoutMs
                logger.info("expert draining", metadata: ["active": "\(scheduler.activeCount)"])
                for span in waiting { handBack(span) }
                waiting.removeAll()
            }
            if draining, scheduler.activeCount == 0 || now >= drainDeadline { break }

            // Block on the socket only when there is nothing to compute.
            let timeout = scheduler.activeCount > 0 ? 0 : 50
            if let readable = try? ZmqPoll.poll([socket], timeoutMs: timeout), readable[0] { readMessages() }
            admitWaiting()
            let batch = scheduler.activeCount
            let stepStart = DispatchTime.now().uptimeNanoseconds
            for outcome in scheduler.step(nowUnixMs: WallClock.nowMs()) { report(outcome) }
            if batch > 0 { metrics.recordStep(batch: batch, nanoseconds: DispatchTime.now().uptimeNanoseconds - stepStart) }
            metrics.recordOccupancy(active: scheduler.activeCount, waiting: waiting.count)
            keepAlive(now: WallClock.nowMs())
            // While computing we were not listening: the router's silence during that time
            // says nothing about the router.
            let busy = WallClock.nowMs() - now
            if busy > options.heartbeatIntervalMs { lastRouterMs += busy }
        }
        send(Envelope(.disconnect(Disconnect(reason: "shutting down"))))
        logger.info("expert stopped", metadata: ["replica": "\(options.replicaId)"])
        socket.close()
        context.terminate()
    }

    private func readMessages() {
        for _ in 0..<256 {
            guard let message = try? socket.receiveEnvelope() else { return }
            lastRouterMs = WallClock.nowMs()
            let envelope: Envelope
            switch message.result {
            case .success(let e): envelope = e
            case .failure(let error):
                metrics.droppedFrames.increment()
                logger.debug("dropped a malformed frame", metadata: ["error": "\(error)"])
                continue
            }
            switch envelope.body {
            case .spanRequest(let span):
                if draining { handBack(span) } else { waiting.append(span) }
            case .cancel(let cancel):
                // Also sent when an answer is complete, to release its cached session.
                let queued = waiting.count
                waiting.removeAll { $0.requestId == cancel.requestId }
                let stopped = scheduler.cancel(requestId: cancel.requestId) || waiting.count < queued
                logger.log(level: stopped ? .info : .debug, stopped ? "span cancelled" : "session released",
                           metadata: ["request_id": "\(cancel.requestId)"])
            case .heartbeat:
                break
            case .disconnect(let d):
                // The router does not know us (it restarted): announce ourselves again.
                logger.info("router asked to re-register", metadata: ["reason": "\(d.reason)"])
                send(ready)
            case .error(let e):
                logger.error("router refused this replica: \(e.message)")
            default:
                metrics.droppedFrames.increment()
            }
        }
    }

    private func admitWaiting() {
        while !waiting.isEmpty, scheduler.activeCount < options.capacity {
            let span = waiting.removeFirst()
            if let outcome = scheduler.admit(span, nowUnixMs: WallClock.nowMs()) { report(outcome) }
            // Prefills of long prompts add up: keep the router informed between them.
            keepAlive(now: WallClock.nowMs())
        }
    }

    private func report(_ outcome: SpanOutcome) {
        switch outcome {
        case .result(let result):
            metrics.recordSpan(result)
            send(Envelope(.spanResult(result)))
        case .failure(let requestId, let error):
            metrics.spansFailed.increment()
            logger.warning("span failed", metadata: ["request_id": "\(requestId)", "error": "\(error.message)"])
            send(Envelope(.answerEvent(AnswerEvent(requestId: requestId, kind: .error(error)))))
        }
    }

    private func handBack(_ span: SpanRequest) {
        send(Envelope(.answerEvent(AnswerEvent(requestId: span.requestId, kind: .error(
            WireErrorBody(code: .unavailable, message: "replica \(options.replicaId) is draining", retryable: true))))))
    }

    private func keepAlive(now: UInt64) {
        if now >= lastHeartbeatMs + options.heartbeatIntervalMs {
            lastHeartbeatMs = now
            send(Envelope(.heartbeat(Heartbeat(load: UInt32(scheduler.activeCount + waiting.count)))))
        }
        // The router fell silent: reconnect with a new socket and re-register.
        if now > lastRouterMs + options.heartbeatIntervalMs * options.liveness {
            logger.warning("router silent; reconnecting", metadata: ["router": "\(options.router)"])
            metrics.reconnects.increment()
            socket.close()
            if let fresh = try? Self.connect(context: context, options: options) {
                socket = fresh
                send(ready)
            }
            lastRouterMs = now
        }
    }

    private func send(_ envelope: Envelope) {
        do {
            if try !socket.send(envelope, to: nil) { metrics.droppedFrames.increment() }
        } catch {
            logger.warning("send failed: \(error)")
        }
    }
}
