import Generation
import Logging
import Wire

/// What the expert decides to do; `ExpertNode`'s loop performs it.
public enum ExpertAction: Equatable {
    /// Send to the router.
    case send(Envelope)
    /// Replace the socket with a fresh one (the router fell silent); a `Ready` follows.
    case reconnect
}

/// The model side of an expert as the core sees it: spans in, outcomes out. `SpanScheduler`
/// is the real one; tests use a fake.
public protocol SpanRunner: AnyObject {
    var activeCount: Int { get }
    func admit(_ span: SpanRequest, deadline: UInt64, now: UInt64) -> SpanOutcome?
    func step(now: UInt64) -> [SpanOutcome]
    /// Stops the request's sequence and forgets its cached session; whether one was running.
    @discardableResult func cancel(requestId: String) -> Bool
}

extension SpanScheduler: SpanRunner {}

/// Counters the metrics and the tests read.
public struct ExpertStats: Equatable, Sendable {
    public var droppedFrames = 0
    public var reconnects = 0
    public var spansDone = 0
    public var spansFailed = 0
    public var handedBack = 0
    public var cancelled = 0
}

/// One expert replica's state machine, free of sockets and clocks like `RouterCore`: frames
/// from the router, clock ticks and compute turns go in, messages (and a reconnect) come out.
/// Majordomo's worker: it announces itself with `Ready`, heartbeats, and when the router is
/// silent for `liveness` intervals it reconnects and announces itself again; a router that
/// does not know it (`Disconnect`) gets a new `Ready`. Draining (SIGTERM) hands spans that
/// have not started back to the router, lets running ones finish (bounded), then says
/// `Disconnect`. Every time is monotonic milliseconds; deadlines arrive as time left.
public final class ExpertCore {
    public struct Config: Sendable {
        public var pool: PoolKind = .emamba
        public var replicaId = "emamba"
        public var modelId = ""
        /// Concurrent sequences in one batch (announced to the router as capacity).
        public var capacity = 8
        public var heartbeatIntervalMs: UInt64 = 1000
        public var liveness: UInt64 = 3
        public var drainTimeoutMs: UInt64 = 10_000
        public init() {}
    }

    public let config: Config
    public private(set) var stats = ExpertStats()
    private let runner: SpanRunner
    private let logger: Logger
    /// Spans received but not admitted yet, with their deadlines (fixed on arrival).
    private var waiting: [(span: SpanRequest, deadline: UInt64)] = []
    private var lastRouterMs: UInt64 = 0
    private var lastHeartbeatMs: UInt64 = 0
    private var drainDeadline: UInt64?
    public private(set) var finished = false

    public init(config: Config, runner: SpanRunner, logger: Logger) {
        self.config = config; self.runner = runner; self.logger = logger
    }

    public var draining: Bool { drainDeadline != nil }
    public var activeCount: Int { runner.activeCount }
    public var waitingCount: Int { waiting.count }
    /// Spans in flight here, reported in heartbeats.
    public var load: UInt32 { UInt32(runner.activeCount + waiting.count) }

    private var ready: Envelope {
        Envelope(.ready(Ready(pool: config.pool, modelId: config.modelId, replicaId: config.replicaId,
                              capacity: UInt32(config.capacity), softwareVersion: "mambaformer \(WireProtocol.version)")))
    }

    // MARK: - Inputs

    /// The first message: who this replica is.
    public func start(now: UInt64) -> [ExpertAction] {
        lastRouterMs = now
        lastHeartbeatMs = now
        return [.send(ready)]
    }

    /// A frame from the router. `wallNowMs` only reads a 1.1 router's wall-clock deadline.
    public func received(_ decoded: Result<Envelope, WireError>, now: UInt64, wallNowMs: @autoclosure () -> UInt64) -> [ExpertAction] {
        lastRouterMs = now
        guard case .success(let envelope) = decoded else {
            stats.droppedFrames += 1
            if case .failure(let error) = decoded { logger.debug("dropped a malformed frame", metadata: ["error": "\(error)"]) }
            return []
        }
        switch envelope.body {
        case .spanRequest(let span):
            if draining { return [handBack(span)] }
            let deadline = Deadline.instant(timeLeft: span.timeLeftMs(wallNowMs: wallNowMs()), nowMs: now)
            waiting.append((span, deadline))
        case .cancel(let cancel):
            // Also sent when an answer is complete, to release its cached session.
            let queued = waiting.count
            waiting.removeAll { $0.span.requestId == cancel.requestId }
            let stopped = runner.cancel(requestId: cancel.requestId) || waiting.count < queued
            if stopped { stats.cancelled += 1 }
            logger.log(level: stopped ? .info : .debug, stopped ? "span cancelled" : "session released",
                       metadata: ["request_id": "\(loggable(cancel.requestId, limit: 128))"])
        case .heartbeat:
            break
        case .disconnect(let d):
            // The router does not know us (it restarted): announce ourselves again.
            logger.info("router asked to re-register", metadata: ["reason": "\(loggable(d.reason, limit: 200))"])
            return [.send(ready)]
        case .error(let e):
            logger.error("router refused this replica: \(loggable(e.message, limit: 200))")
        default:
            stats.droppedFrames += 1
        }
        return []
    }

    /// The clock, right after reading what waited: the router's silence (judged only now, so
    /// frames that arrived during a long prefill count), and the end of a drain.
    public func tick(now: UInt64) -> [ExpertAction] {
        if let deadline = drainDeadline, !finished, runner.activeCount == 0 || now >= deadline {
            finished = true
            return [.send(Envelope(.disconnect(Disconnect(reason: "shutting down"))))]
        }
        guard now > lastRouterMs &+ config.heartbeatIntervalMs * config.liveness else { return [] }
        logger.warning("router silent; reconnecting")
        stats.reconnects += 1
        lastRouterMs = now
        return [.reconnect, .send(ready)]
    }

    /// A heartbeat when one is due.
    public func keepAlive(now: UInt64) -> [ExpertAction] {
        guard now >= lastHeartbeatMs &+ config.heartbeatIntervalMs || now < lastHeartbeatMs else { return [] }
        lastHeartbeatMs = now
        return [.send(Envelope(.heartbeat(Heartbeat(load: load, draining: draining))))]
    }

    /// The next waiting span joins the batch (its prefill runs now), while there is room:
    /// nil when none can. One at a time, so the loop can keep the router informed between
    /// long prefills.
    public func admitNext(now: UInt64) -> [ExpertAction]? {
        guard !draining, !waiting.isEmpty, runner.activeCount < config.capacity else { return nil }
        let (span, deadline) = waiting.removeFirst()
        return runner.admit(span, deadline: deadline, now: now).map { [report($0)] } ?? []
    }

    /// One batched decode step over the running sequences; the spans it finishes.
    public func step(now: UInt64) -> [ExpertAction] {
        runner.step(now: now).map(report)
    }

    /// SIGTERM: no new spans; the waiting ones go back to the router (another replica takes
    /// them), the running ones finish within `drainTimeoutMs`.
    public func drain(now: UInt64) -> [ExpertAction] {
        guard !draining else { return [] }
        drainDeadline = now &+ config.drainTimeoutMs
        logger.info("expert draining", metadata: ["active": "\(runner.activeCount)"])
        // Tell the router first (1.3), so it routes nothing new here; a 1.2 router learns it
        // from the first span handed back.
        lastHeartbeatMs = now
        var out: [ExpertAction] = [.send(Envelope(.heartbeat(Heartbeat(load: load, draining: true))))]
        out += waiting.map { handBack($0.span) }
        waiting.removeAll()
        return out
    }

    // MARK: - Outputs

    private func report(_ outcome: SpanOutcome) -> ExpertAction {
        switch outcome {
        case .result(let result):
            stats.spansDone += 1
            return .send(Envelope(.spanResult(result)))
        case .failure(let requestId, let error):
            stats.spansFailed += 1
            logger.warning("span failed", metadata: ["request_id": "\(loggable(requestId, limit: 128))", "error": "\(error.message)"])
            return .send(Envelope(.answerEvent(AnswerEvent(requestId: requestId, kind: .error(error)))))
        }
    }

    private func handBack(_ span: SpanRequest) -> ExpertAction {
        stats.handedBack += 1
        return .send(Envelope(.answerEvent(AnswerEvent(requestId: span.requestId, kind: .error(
            WireErrorBody(code: .unavailable, message: "replica \(config.replicaId) is draining", retryable: true))))))
    }
}
