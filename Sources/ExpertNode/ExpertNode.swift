import Engine
import Generation
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
///
/// A prefill of a maximum-size prompt can take longer than the router's liveness window, and
/// the loop does not touch the socket meanwhile. So a second thread (`BusyHeartbeat`) sends the
/// heartbeats while the loop computes: the socket is shared under a lock (ZeroMQ allows a
/// socket to change threads behind a full memory barrier; it is never used by two at once).
/// That thread covers at most `maxBusyMs` of one computation, so a replica stuck in a loop
/// still falls silent and is replaced.
public final class ExpertNode {
    public struct Options: Sendable {
        public var router = "ipc:///run/mambaformer/backend"
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
        /// Longest single computation (a prefill, a decode step) during which heartbeats still go out.
        public var maxBusyMs: UInt64 = 120_000
        /// The expert's own check of what it is asked to read (`[limits]`): a misconfigured or
        /// foreign router cannot make it encode or prefill more. A span over them fails with a
        /// non-retryable `prompt_too_long`.
        public var maxPromptBytes = 32 * 1024
        public var maxPromptTokens = 2048
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
    private let link: SharedSocket
    private let busy: BusyHeartbeat
    private let scheduler: SpanScheduler
    /// Spans received but not admitted yet, with their monotonic deadlines (fixed on arrival).
    private var waiting: [(span: SpanRequest, deadline: UInt64)] = []
    private var lastRouterMs: UInt64 = 0
    private var draining = false

    private let metrics: ExpertMetrics

    public init(options: Options, model: ExpertModel, tokenizer: Tokenizer, logger: Logger) throws {
        self.options = options
        self.logger = logger
        let cache = SessionCache(maxEntries: options.maxSessions, maxBytes: options.maxSessionBytes)
        scheduler = SpanScheduler(model: model, tokenizer: tokenizer, format: PromptFormat(), pool: options.pool,
                                  replicaId: options.replicaId, cache: cache, ignoreEOS: options.ignoreEOS,
                                  limits: .init(maxPromptBytes: options.maxPromptBytes, maxPromptTokens: options.maxPromptTokens))
        context = try ZmqContext()
        link = SharedSocket(try Self.connect(context: context, options: options))
        metrics = ExpertMetrics(pool: options.pool, replicaId: options.replicaId)
        busy = BusyHeartbeat(link: link, intervalMs: options.heartbeatIntervalMs, maxBusyMs: options.maxBusyMs)
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
        lastRouterMs = MonotonicClock.nowMs()
        busy.start()
        defer { busy.stop() }
        var drainDeadline: UInt64 = .max
        while true {
            let now = MonotonicClock.nowMs()
            if stopRequested.isSet, !draining {
                draining = true
                drainDeadline = now + options.drainTimeoutMs
                logger.info("expert draining", metadata: ["active": "\(scheduler.activeCount)"])
                for entry in waiting { handBack(entry.span) }
                waiting.removeAll()
            }
            if draining, scheduler.activeCount == 0 || now >= drainDeadline { break }

            // Block on the socket only when there is nothing to compute.
            let timeout = scheduler.activeCount > 0 ? 0 : 50
            if link.poll(timeoutMs: timeout) { readMessages() }
            // Judged only here, right after reading all that waited: frames the router sent
            // while we computed (a long prefill) were waiting in the socket, not missing.
            checkRouterSilence(now: MonotonicClock.nowMs())
            busy.computing { admitWaiting() }
            let batch = scheduler.activeCount
            let stepStart = DispatchTime.now().uptimeNanoseconds
            for outcome in busy.computing({ scheduler.step(now: MonotonicClock.nowMs()) }) { report(outcome) }
            if batch > 0 { metrics.recordStep(batch: batch, nanoseconds: DispatchTime.now().uptimeNanoseconds - stepStart) }
            metrics.recordOccupancy(active: scheduler.activeCount, waiting: waiting.count)
            if waiting.isEmpty { scheduler.trimIfIdle() }
            keepAlive()
        }
        send(Envelope(.disconnect(Disconnect(reason: "shutting down"))))
        logger.info("expert stopped", metadata: ["replica": "\(options.replicaId)"])
        busy.stop()
        link.close()
        context.terminate()
    }

    private func readMessages() {
        for _ in 0..<256 {
            guard let message = link.receive() else { return }
            lastRouterMs = MonotonicClock.nowMs()
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
                if draining { handBack(span); continue }
                let now = MonotonicClock.nowMs()
                waiting.append((span, Deadline.instant(timeLeft: span.timeLeftMs(wallNowMs: WallClock.nowMs()), nowMs: now)))
            case .cancel(let cancel):
                // Also sent when an answer is complete, to release its cached session.
                let queued = waiting.count
                waiting.removeAll { $0.span.requestId == cancel.requestId }
                let stopped = scheduler.cancel(requestId: cancel.requestId) || waiting.count < queued
                logger.log(level: stopped ? .info : .debug, stopped ? "span cancelled" : "session released",
                           metadata: ["request_id": "\(cancel.requestId)"])
            case .heartbeat:
                break
            case .disconnect(let d):
                // The router does not know us (it restarted): announce ourselves again.
                logger.info("router asked to re-register", metadata: ["reason": "\(loggable(d.reason, limit: 200))"])
                send(ready)
            case .error(let e):
                logger.error("router refused this replica: \(loggable(e.message, limit: 200))")
            default:
                metrics.droppedFrames.increment()
            }
        }
    }

    private func admitWaiting() {
        while !waiting.isEmpty, scheduler.activeCount < options.capacity {
            let (span, deadline) = waiting.removeFirst()
            if let outcome = scheduler.admit(span, deadline: deadline, now: MonotonicClock.nowMs()) { report(outcome) }
            // Prefills of long prompts add up: keep the router informed between them.
            keepAlive()
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

    private func keepAlive() {
        let load = UInt32(scheduler.activeCount + waiting.count)
        busy.load = load
        if busy.heartbeatDue() {
            send(Envelope(.heartbeat(Heartbeat(load: load))))
        }
    }

    /// The router fell silent (monotonic time, so a wall-clock step cannot fake it): reconnect
    /// with a new socket and re-register.
    private func checkRouterSilence(now: UInt64) {
        if now > lastRouterMs + options.heartbeatIntervalMs * options.liveness {
            logger.warning("router silent; reconnecting", metadata: ["router": "\(options.router)"])
            metrics.reconnects.increment()
            if let fresh = try? Self.connect(context: context, options: options) {
                link.replace(with: fresh)
                send(ready)
            }
            lastRouterMs = now
        }
    }

    private func send(_ envelope: Envelope) {
        do {
            if try !link.send(envelope) { metrics.droppedFrames.increment() }
        } catch {
            logger.warning("send failed: \(error)")
        }
    }
}

/// The expert's DEALER socket, used by the loop and, while the loop computes, by
/// `BusyHeartbeat`: every use holds the lock (a full memory barrier between threads).
final class SharedSocket: @unchecked Sendable {
    private let lock = NSLock()
    private var socket: ZmqSocket?

    init(_ socket: ZmqSocket) { self.socket = socket }

    func send(_ envelope: Envelope) throws -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard let socket else { return false }
        return try socket.send(envelope, to: nil)
    }

    /// Whether a message is waiting (waits up to `timeoutMs`).
    func poll(timeoutMs: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard let socket else { return false }
        return (try? ZmqPoll.poll([socket], timeoutMs: timeoutMs))?.first ?? false
    }

    func receive() -> (identity: [UInt8]?, result: Result<Envelope, WireError>)? {
        lock.lock(); defer { lock.unlock() }
        return try? socket?.receiveEnvelope()
    }

    func replace(with fresh: ZmqSocket) {
        lock.lock(); defer { lock.unlock() }
        socket?.close()
        socket = fresh
    }

    func close() {
        lock.lock(); defer { lock.unlock() }
        socket?.close()
        socket = nil
    }
}

/// Heartbeats while the loop is inside one computation. The loop brackets its work with
/// `computing { }`; this thread wakes four times an interval and, when a heartbeat is due and
/// the current computation is younger than `maxBusyMs`, sends it. Monotonic time throughout.
final class BusyHeartbeat: @unchecked Sendable {
    private let link: SharedSocket
    private let intervalMs: UInt64
    private let maxBusyMs: UInt64
    private let lock = NSLock()
    private var busySinceMs: UInt64?
    private var lastSentMs: UInt64 = 0
    private var running = false
    private var thread: Thread?
    private var _load: UInt32 = 0

    init(link: SharedSocket, intervalMs: UInt64, maxBusyMs: UInt64) {
        self.link = link; self.intervalMs = intervalMs; self.maxBusyMs = maxBusyMs
    }

    /// Spans in flight, reported in heartbeats.
    var load: UInt32 {
        get { lock.lock(); defer { lock.unlock() }; return _load }
        set { lock.lock(); _load = newValue; lock.unlock() }
    }

    func computing<T>(_ work: () throws -> T) rethrows -> T {
        lock.lock(); busySinceMs = MonotonicClock.nowMs(); lock.unlock()
        defer { lock.lock(); busySinceMs = nil; lock.unlock() }
        return try work()
    }

    /// For the loop's own heartbeats: true (and counted as sent) when one is due.
    func heartbeatDue() -> Bool {
        lock.lock(); defer { lock.unlock() }
        let now = MonotonicClock.nowMs()
        guard now >= lastSentMs + intervalMs else { return false }
        lastSentMs = now
        return true
    }

    func start() {
        lock.lock(); defer { lock.unlock() }
        guard thread == nil else { return }
        running = true
        let t = Thread { [weak self] in self?.loop() }
        t.name = "expert-heartbeat"
        thread = t
        t.start()
    }

    func stop() {
        lock.lock(); running = false; lock.unlock()
    }

    private func loop() {
        while true {
            Thread.sleep(forTimeInterval: Double(max(intervalMs / 4, 10)) / 1000)
            lock.lock()
            guard running else { lock.unlock(); return }
            let now = MonotonicClock.nowMs()
            let due = busySinceMs.map { now - $0 < maxBusyMs } == true && now >= lastSentMs + intervalMs
            if due { lastSentMs = now }
            let load = _load
            lock.unlock()
            if due { _ = try? link.send(Envelope(.heartbeat(Heartbeat(load: load)))) }
        }
    }
}
