import Generation
import Logging
import Wire

/// What the expert decides to do; `ExpertNode`'s loop performs it. `link` is the index of a
/// router in the expert's list (`expert.router`): a replica serves every router at once.
public enum ExpertAction: Equatable {
    /// Send to one router.
    case send(Envelope, link: Int)
    /// Replace that router's socket with a fresh one (it fell silent); a `Ready` follows.
    case reconnect(link: Int)
}

/// The model side of an expert as the core sees it: spans in, outcomes out. `SpanScheduler`
/// is the real one; tests use a fake.
public protocol SpanRunner: AnyObject {
    var activeCount: Int { get }
    /// Admits spans together (one batched prefill); the outcomes of those that end at once.
    func admit(_ spans: [(span: SpanRequest, deadline: UInt64)], now: UInt64) -> [SpanOutcome]
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
    /// Spans stopped because their router fell silent or another router took their answer over.
    public var orphaned = 0
    /// Spans refused because their router already held twice the capacity here.
    public var refused = 0
}

/// One expert replica's state machine, free of sockets and clocks like `RouterCore`: frames
/// from the routers, clock ticks and compute turns go in, messages (and reconnects) come out.
/// Majordomo's worker: it announces itself with `Ready`, heartbeats, and when a router is
/// silent for `liveness` intervals it reconnects and announces itself again; a router that
/// does not know it (`Disconnect`) gets a new `Ready`. Draining (SIGTERM) hands spans that
/// have not started back to their router, lets running ones finish (bounded), then says
/// `Disconnect`. Every time is monotonic milliseconds; deadlines arrive as time left.
///
/// Several routers (`links`): one connection each, with its own `Ready` and heartbeats, and
/// one batch of `capacity` sequences for all of them. The ZeroMQ guide's warning about a worker
/// registered with two brokers (both send it work at once) is met with credits: each router
/// is told its share (`Heartbeat.capacity`, 1.4) — what the others leave free, and never less
/// than an even split — and is sent the new figure whenever it changes. Two routers can still
/// both fill a share in the same instant; the surplus waits here (`waiting`), so the batch
/// never exceeds `capacity` and stays full while any router has work.
public final class ExpertCore {
    public struct Config: Sendable {
        public var pool: PoolKind = .emamba
        public var replicaId = "emamba"
        public var modelId = ""
        /// Concurrent sequences in one batch, over all routers (announced in `Ready`).
        public var capacity = 8
        /// Prompt text (prompt and answer so far, bytes) admitted in one batched prefill: about
        /// 2,000 tokens, a few seconds of the largest expert on one core, so a burst of long
        /// prompts still reaches the routers' heartbeats in time (one span always goes alone).
        public var prefillBatchBytes = 8192
        /// Routers served (one connection each).
        public var links = 1
        public var heartbeatIntervalMs: UInt64 = 1000
        public var liveness: UInt64 = 3
        public var drainTimeoutMs: UInt64 = 10_000
        public init() {}
    }

    /// One router as this replica sees it.
    struct Link {
        var lastRouterMs: UInt64 = 0
        var lastHeartbeatMs: UInt64 = 0
        /// Heard from since the last (re)connection: a router that never spoke gets no share.
        var heard = false
        /// The share last announced (`Ready`'s capacity counts as one).
        var announced: UInt32 = 0
    }

    public let config: Config
    public private(set) var stats = ExpertStats()
    private let runner: SpanRunner
    private let logger: Logger
    private var links: [Link]
    /// Spans received but not admitted yet, with their deadlines (fixed on arrival).
    private var waiting: [(span: SpanRequest, deadline: UInt64, link: Int)] = []
    /// Which router each request's span (waiting or running) came from: results go back there.
    private var owners: [String: Int] = [:]
    private var drainDeadline: UInt64?
    public private(set) var finished = false

    public init(config: Config, runner: SpanRunner, logger: Logger) {
        self.config = config; self.runner = runner; self.logger = logger
        links = Array(repeating: Link(), count: max(1, config.links))
    }

    public var draining: Bool { drainDeadline != nil }
    public var activeCount: Int { runner.activeCount }
    public var waitingCount: Int { waiting.count }
    /// Spans in flight here, reported in heartbeats.
    public var load: UInt32 { UInt32(runner.activeCount + waiting.count) }
    public var linkCount: Int { links.count }

    private var ready: Envelope {
        Envelope(.ready(Ready(pool: config.pool, modelId: config.modelId, replicaId: config.replicaId,
                              capacity: UInt32(config.capacity), softwareVersion: "mambaformer \(WireProtocol.version)")))
    }

    // MARK: - Credits

    /// Spans from `link` waiting or running here.
    private func claimed(by link: Int) -> Int { owners.values.reduce(0) { $0 + ($1 == link ? 1 : 0) } }

    /// Spans running in the batch, per router.
    private func runningByLink() -> [Int: Int] {
        var counts: [Int: Int] = [:]
        for link in owners.values { counts[link, default: 0] += 1 }
        for entry in waiting { counts[entry.link, default: 0] -= 1 }
        return counts
    }

    /// `link`'s share of the batch: what the other routers leave free, at least an even split
    /// among the routers heard from (and at least one span), at most the whole batch.
    func share(of link: Int) -> UInt32 {
        let capacity = config.capacity
        guard links.count > 1 else { return UInt32(capacity) }
        let heard = max(1, links.indices.filter { links[$0].heard || $0 == link }.count)
        let even = max(1, capacity / heard)
        let others = owners.values.reduce(0) { $0 + ($1 == link ? 0 : 1) }
        return UInt32(min(capacity, max(even, capacity - others)))
    }

    /// Heartbeats carrying the new share to every router whose share changed.
    private func announceShares(now: UInt64) -> [ExpertAction] {
        guard links.count > 1 else { return [] }
        var out: [ExpertAction] = []
        for link in links.indices where links[link].heard {
            let share = share(of: link)
            guard share != links[link].announced else { continue }
            links[link].announced = share
            links[link].lastHeartbeatMs = now
            out.append(.send(heartbeat(capacity: share), link: link))
        }
        return out
    }

    private func heartbeat(capacity: UInt32 = 0) -> Envelope {
        Envelope(.heartbeat(Heartbeat(load: load, draining: draining, capacity: capacity)))
    }

    private func register(_ link: Int, now: UInt64) -> [ExpertAction] {
        // Ready says the whole capacity (what a 1.3 router uses); a shared replica corrects it
        // at once with this router's share.
        links[link].announced = links.count > 1 ? 0 : UInt32(config.capacity)
        var out: [ExpertAction] = [.send(ready, link: link)]
        if links.count > 1, links[link].heard {
            links[link].announced = share(of: link)
            out.append(.send(heartbeat(capacity: links[link].announced), link: link))
        }
        return out
    }

    // MARK: - Inputs

    /// The first messages: who this replica is, to every router.
    public func start(now: UInt64) -> [ExpertAction] {
        var out: [ExpertAction] = []
        for link in links.indices {
            links[link].lastRouterMs = now
            links[link].lastHeartbeatMs = now
            out += register(link, now: now)
        }
        return out
    }

    /// A frame from router `link`. `wallNowMs` only reads a 1.1 router's wall-clock deadline.
    public func received(_ decoded: Result<Envelope, WireError>, link: Int = 0, now: UInt64,
                         wallNowMs: @autoclosure () -> UInt64) -> [ExpertAction] {
        guard links.indices.contains(link) else { return [] }
        links[link].lastRouterMs = now
        let firstWord = !links[link].heard
        links[link].heard = true
        guard case .success(let envelope) = decoded else {
            stats.droppedFrames += 1
            if case .failure(let error) = decoded { logger.debug("dropped a malformed frame", metadata: ["error": "\(error)"]) }
            return []
        }
        var out: [ExpertAction] = []
        switch envelope.body {
        case .spanRequest(let span):
            if draining { return [handBack(span, link: link)] }
            // A router never has more than the whole batch here (its share is at most that);
            // twice that bounds a router that ignores its share, and what it costs the others.
            if claimed(by: link) >= 2 * config.capacity, owners[span.requestId] != link {
                stats.refused += 1
                return [.send(Envelope(.answerEvent(AnswerEvent(requestId: span.requestId, kind: .error(WireErrorBody(
                    code: .overloaded, message: "replica \(config.replicaId) holds twice its capacity from this router",
                    retryable: true))))), link: link)]
            }
            if let owner = owners[span.requestId], owner != link {
                // The answer moved to this router (its first router died and the gateway handed
                // it over): the old router's span is an orphan. Should that router still be
                // alive (two answers with one id), it hears so and retries the span elsewhere.
                stop(requestId: span.requestId)
                stats.orphaned += 1
                out.append(.send(Envelope(.answerEvent(AnswerEvent(requestId: span.requestId, kind: .error(WireErrorBody(
                    // overloaded, not unavailable: that would take this replica out of its routing.
                    code: .overloaded, message: "another router took request \(span.requestId) over at replica \(config.replicaId)",
                    retryable: true))))), link: owner))
            }
            let deadline = Deadline.instant(timeLeft: span.timeLeftMs(wallNowMs: wallNowMs()), nowMs: now)
            waiting.append((span, deadline, link))
            owners[span.requestId] = link
        case .cancel(let cancel):
            // Also sent when an answer is complete, to release its cached session. Only the
            // router that owns a running span may stop it.
            guard owners[cancel.requestId].map({ $0 == link }) ?? true else { break }
            let stopped = stop(requestId: cancel.requestId)
            if stopped { stats.cancelled += 1 }
            logger.log(level: stopped ? .info : .debug, stopped ? "span cancelled" : "session released",
                       metadata: ["request_id": "\(loggable(cancel.requestId, limit: 128))"])
        case .heartbeat:
            break
        case .disconnect(let d):
            // The router does not know us (it restarted): what it sent before is lost with it.
            logger.info("router asked to re-register", metadata: ["reason": "\(loggable(d.reason, limit: 200))", "link": "\(link)"])
            orphan(link)
            return register(link, now: now) + announceShares(now: now)
        case .error(let e):
            logger.error("router refused this replica: \(loggable(e.message, limit: 200))", metadata: ["link": "\(link)"])
        default:
            stats.droppedFrames += 1
        }
        // A router heard from for the first time joins the split.
        if firstWord, links.count > 1 { links[link].announced = 0 }
        return out + announceShares(now: now)
    }

    /// The router of `link` is gone (silent, or restarted): its spans' results could reach no
    /// one, and the gateway has moved their answers to another router. Their places are freed.
    private func orphan(_ link: Int) {
        for (requestId, owner) in owners where owner == link {
            stop(requestId: requestId)
            stats.orphaned += 1
        }
    }

    /// Stops a request's span here (waiting or running) and forgets its session.
    @discardableResult private func stop(requestId: String) -> Bool {
        let queued = waiting.count
        waiting.removeAll { $0.span.requestId == requestId }
        owners[requestId] = nil
        return runner.cancel(requestId: requestId) || waiting.count < queued
    }

    /// The clock, right after reading what waited: each router's silence (judged only now, so
    /// frames that arrived during a long prefill count), and the end of a drain.
    public func tick(now: UInt64) -> [ExpertAction] {
        if let deadline = drainDeadline, !finished, runner.activeCount == 0 || now >= deadline {
            finished = true
            return links.indices.map { .send(Envelope(.disconnect(Disconnect(reason: "shutting down"))), link: $0) }
        }
        var out: [ExpertAction] = []
        for link in links.indices where now > links[link].lastRouterMs &+ config.heartbeatIntervalMs * config.liveness {
            logger.warning("router silent; reconnecting", metadata: ["link": "\(link)"])
            stats.reconnects += 1
            links[link].lastRouterMs = now
            links[link].heard = false
            orphan(link)
            out += [.reconnect(link: link)] + register(link, now: now)
        }
        return out.isEmpty ? out : out + announceShares(now: now)
    }

    /// A heartbeat to each router when one is due.
    public func keepAlive(now: UInt64) -> [ExpertAction] {
        var out: [ExpertAction] = []
        for link in links.indices {
            let last = links[link].lastHeartbeatMs
            guard now >= last &+ config.heartbeatIntervalMs || now < last else { continue }
            links[link].lastHeartbeatMs = now
            out.append(.send(heartbeat(capacity: links.count > 1 ? links[link].announced : 0), link: link))
        }
        return out
    }

    /// Waiting spans join the batch while there is room, prefilled together (one batched
    /// prefill rather than one after another), up to `prefillBatchBytes` of prompt text (at
    /// least one span): nil when none can join. A bounded batch, so the loop can keep the
    /// routers informed between long prefills.
    public func admitNext(now: UInt64) -> [ExpertAction]? {
        guard !draining, !waiting.isEmpty, runner.activeCount < config.capacity else { return nil }
        // First come, first served, except that a router running less than an even split of
        // the batch goes first: another router's surplus cannot starve it.
        let even = max(1, config.capacity / max(1, links.indices.filter { links[$0].heard }.count))
        var running = runningByLink()
        var batch: [(span: SpanRequest, deadline: UInt64)] = []
        var bytes = 0
        while !waiting.isEmpty, runner.activeCount + batch.count < config.capacity {
            let index = links.count > 1 ? (waiting.firstIndex { running[$0.link, default: 0] < even } ?? 0) : 0
            let span = waiting[index].span
            let size = span.prompt.utf8.count + span.answerSoFar.utf8.count
            if !batch.isEmpty && bytes + size > config.prefillBatchBytes { break }
            let (taken, deadline, link) = waiting.remove(at: index)
            batch.append((taken, deadline))
            running[link, default: 0] += 1
            bytes += size
        }
        return runner.admit(batch, now: now).flatMap { report($0, now: now) }
    }

    /// One batched decode step over the running sequences; the spans it finishes.
    public func step(now: UInt64) -> [ExpertAction] {
        runner.step(now: now).flatMap { report($0, now: now) }
    }

    /// SIGTERM: no new spans; the waiting ones go back to their routers (another replica takes
    /// them), the running ones finish within `drainTimeoutMs`.
    public func drain(now: UInt64) -> [ExpertAction] {
        guard !draining else { return [] }
        drainDeadline = now &+ config.drainTimeoutMs
        logger.info("expert draining", metadata: ["active": "\(runner.activeCount)"])
        // Tell the routers first (1.3), so they route nothing new here; a 1.2 router learns it
        // from the first span handed back.
        var out: [ExpertAction] = links.indices.map { link in
            links[link].lastHeartbeatMs = now
            return .send(heartbeat(), link: link)
        }
        out += waiting.map { handBack($0.span, link: $0.link) }
        for entry in waiting { owners[entry.span.requestId] = nil }
        waiting.removeAll()
        return out
    }

    // MARK: - Outputs

    private func report(_ outcome: SpanOutcome, now: UInt64) -> [ExpertAction] {
        let requestId: String
        let envelope: Envelope
        switch outcome {
        case .result(let result):
            stats.spansDone += 1
            requestId = result.requestId
            envelope = Envelope(.spanResult(result))
        case .failure(let id, let error):
            stats.spansFailed += 1
            logger.warning("span failed", metadata: ["request_id": "\(loggable(id, limit: 128))", "error": "\(error.message)"])
            requestId = id
            envelope = Envelope(.answerEvent(AnswerEvent(requestId: id, kind: .error(error))))
        }
        // A span whose router is gone (or whose answer moved) has no one to tell.
        guard let link = owners.removeValue(forKey: requestId) else { return [] }
        return [.send(envelope, link: link)] + announceShares(now: now)
    }

    private func handBack(_ span: SpanRequest, link: Int) -> ExpertAction {
        stats.handedBack += 1
        return .send(Envelope(.answerEvent(AnswerEvent(requestId: span.requestId, kind: .error(
            WireErrorBody(code: .unavailable, message: "replica \(config.replicaId) is draining", retryable: true))))), link: link)
    }
}
