import ClusterConfig
import Engine
import Generation
import Foundation
import Logging
import Metrics
import Tokenizers
import Wire

/// One expert replica: a DEALER connected to each router's backend, serving one model, around
/// `ExpertCore` (which decides everything; this loop owns the sockets, the clock and the model's
/// threads).
///
/// The loop alternates between the socket and the model: read whatever arrived (new spans
/// join the batch, cancellations leave it), run one batched decode step, send finished spans.
///
/// A prefill of a maximum-size prompt can take longer than the router's liveness window, and
/// the loop does not touch the sockets meanwhile. So a second thread (`BusyHeartbeat`) sends the
/// heartbeats while the loop computes: the sockets are shared under a lock (ZeroMQ allows a
/// socket to change threads behind a full memory barrier; it is never used by two at once).
/// That thread covers at most `maxBusyMs` of one computation, so a replica stuck in a loop
/// still falls silent and is replaced.
public final class ExpertNode {
    public struct Options: Sendable {
        // Defaults of settings come from the schema, their one home.
        /// Every router's backend endpoint: the replica serves them all (`expert.router`).
        public var routers = Schema.defaultStrings("expert.router")
        public var pool: PoolKind = .emamba
        public var replicaId = "emamba-1"
        public var modelId = ""
        /// Concurrent sequences in one batch (announced to the router as capacity).
        public var capacity = Schema.defaultInt("expert.capacity")
        public var maxSessions = Schema.defaultInt("expert.max_sessions")
        public var maxSessionBytes = 1 << 30
        public var heartbeatIntervalMs = UInt64(Schema.defaultInt("expert.heartbeat_ms"))
        public var liveness: UInt64 = 3
        public var drainTimeoutMs: UInt64 = 10_000
        /// Longest single computation (a prefill, a decode step) during which heartbeats still go out.
        public var maxBusyMs: UInt64 = 120_000
        /// The expert's own check of what it is asked to read (`[limits]`): a misconfigured or
        /// foreign router cannot make it encode or prefill more. A span over them fails with a
        /// non-retryable `prompt_too_long`.
        public var maxPromptBytes = Schema.defaultInt("limits.max_prompt_bytes")
        public var maxPromptTokens = Schema.defaultInt("limits.max_prompt_tokens")
        /// CURVE settings per router (in the order of `routers`); nil: plain text.
        public var curves: [CurveClientConfig]?
        /// Never end a span at EOS (its logit is masked): every answer runs to max tokens.
        /// For benchmarks and tests, as transformers' `min_new_tokens`.
        public var ignoreEOS = Schema.defaultBool("expert.ignore_eos")
        public init() {}

        var core: ExpertCore.Config {
            var c = ExpertCore.Config()
            c.pool = pool; c.replicaId = replicaId; c.modelId = modelId; c.capacity = capacity; c.links = routers.count
            c.heartbeatIntervalMs = heartbeatIntervalMs; c.liveness = liveness; c.drainTimeoutMs = drainTimeoutMs
            return c
        }
    }

    public let options: Options
    public let stopRequested = StopFlag()
    private let logger: Logger
    private let context: ZmqContext
    private let links: RouterLinks
    private let busy: BusyHeartbeat
    private let scheduler: SpanScheduler
    private let core: ExpertCore
    private let metrics: ExpertMetrics
    private var lastStats = ExpertStats()

    public init(options: Options, model: ExpertModel, tokenizer: Tokenizer, logger: Logger) throws {
        self.options = options
        self.logger = logger
        let cache = SessionCache(maxEntries: options.maxSessions, maxBytes: options.maxSessionBytes)
        scheduler = SpanScheduler(model: model, tokenizer: tokenizer, format: PromptFormat(), pool: options.pool,
                                  replicaId: options.replicaId, cache: cache, ignoreEOS: options.ignoreEOS,
                                  limits: .init(maxPromptBytes: options.maxPromptBytes, maxPromptTokens: options.maxPromptTokens))
        core = ExpertCore(config: options.core, runner: scheduler, logger: logger)
        context = try ZmqContext()
        let context = self.context
        links = RouterLinks(try options.routers.indices.map { try Self.connect(context: context, options: options, link: $0) })
        metrics = ExpertMetrics(pool: options.pool, replicaId: options.replicaId, capacity: options.capacity)
        busy = BusyHeartbeat(links: links, intervalMs: options.heartbeatIntervalMs, maxBusyMs: options.maxBusyMs)
    }

    private static func connect(context: ZmqContext, options: Options, link: Int) throws -> ZmqSocket {
        let socket = try ZmqSocket(context: context, type: .dealer)
        if let curves = options.curves { try socket.enableCurveClient(curves[link]) }
        try socket.setReconnectInterval(ms: 100, maxMs: 1000)
        try socket.connect(options.routers[link])
        return socket
    }

    /// Serves until `stopRequested` is set, then drains: in-flight spans finish (bounded),
    /// new ones are handed back to the router, and the replica says `Disconnect`.
    public func run() {
        logger.info("expert starting", metadata: ["pool": "\(options.pool)", "replica": "\(options.replicaId)", "routers": "\(options.routers.joined(separator: ","))"])
        perform(core.start(now: MonotonicClock.nowMs()))
        busy.start()
        defer { busy.stop() }
        while !core.finished {
            if stopRequested.isSet { perform(core.drain(now: MonotonicClock.nowMs())) }
            // Block on the socket only when there is nothing to compute.
            let timeout = core.activeCount > 0 ? 0 : 50
            let readable = links.poll(timeoutMs: timeout)
            if !readable.isEmpty { readMessages(readable) }
            perform(core.tick(now: MonotonicClock.nowMs()))
            if core.finished { break }
            // Prefills of long prompts add up: keep the router informed between them.
            while let admitted = busy.computing({ core.admitNext(now: MonotonicClock.nowMs()) }) {
                perform(admitted)
                perform(core.keepAlive(now: MonotonicClock.nowMs()))
            }
            let batch = core.activeCount
            let stepStart = DispatchTime.now().uptimeNanoseconds
            perform(busy.computing { core.step(now: MonotonicClock.nowMs()) })
            if batch > 0 { metrics.recordStep(batch: batch, nanoseconds: DispatchTime.now().uptimeNanoseconds - stepStart) }
            metrics.recordOccupancy(active: core.activeCount, waiting: core.waitingCount)
            if core.waitingCount == 0 { scheduler.trimIfIdle() }
            perform(core.keepAlive(now: MonotonicClock.nowMs()))
        }
        logger.info("expert stopped", metadata: ["replica": "\(options.replicaId)"])
        busy.stop()
        links.close()
        context.terminate()
    }

    private func readMessages(_ readable: [Int]) {
        for link in readable {
            for _ in 0..<256 {
                guard let message = links.receive(link) else { break }
                perform(core.received(message.result, link: link, now: MonotonicClock.nowMs(), wallNowMs: WallClock.nowMs()))
            }
        }
    }

    private func perform(_ actions: [ExpertAction]) {
        for action in actions {
            switch action {
            case .reconnect(let link):
                let router = options.routers[link]
                logger.warning("reconnecting", metadata: ["router": "\(router)"])
                if let fresh = try? Self.connect(context: context, options: options, link: link) { links.replace(link, with: fresh) }
            case .send(let envelope, let link):
                switch envelope.body {
                case .spanResult(let result): metrics.recordSpan(result)
                case .heartbeat: busy.markSent()
                default: break
                }
                do {
                    if try !links.send(envelope, to: link) { metrics.droppedFrames.increment() }
                } catch {
                    logger.warning("send failed: \(error)")
                }
            }
        }
        busy.load = core.load
        let stats = core.stats
        metrics.droppedFrames.increment(by: stats.droppedFrames - lastStats.droppedFrames)
        metrics.reconnects.increment(by: stats.reconnects - lastStats.reconnects)
        metrics.spansFailed.increment(by: stats.spansFailed - lastStats.spansFailed)
        lastStats = stats
    }
}

/// The expert's DEALER sockets, one per router, used by the loop and, while the loop computes,
/// by `BusyHeartbeat`: every use holds the lock (a full memory barrier between threads).
final class RouterLinks: @unchecked Sendable {
    private let lock = NSLock()
    private var sockets: [ZmqSocket?]

    init(_ sockets: [ZmqSocket]) { self.sockets = sockets }

    var count: Int { lock.withLock { sockets.count } }

    func send(_ envelope: Envelope, to link: Int) throws -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard sockets.indices.contains(link), let socket = sockets[link] else { return false }
        return try socket.send(envelope, to: nil)
    }

    /// The links with a message waiting (waits up to `timeoutMs` for one).
    func poll(timeoutMs: Int) -> [Int] {
        lock.lock(); defer { lock.unlock() }
        let open = sockets.indices.filter { sockets[$0] != nil }
        guard let readable = try? ZmqPoll.poll(open.map { sockets[$0]! }, timeoutMs: timeoutMs) else { return [] }
        return zip(open, readable).filter(\.1).map(\.0)
    }

    func receive(_ link: Int) -> (identity: [UInt8]?, result: Result<Envelope, WireError>)? {
        lock.lock(); defer { lock.unlock() }
        guard sockets.indices.contains(link) else { return nil }
        return try? sockets[link]?.receiveEnvelope(dontWait: true)
    }

    func replace(_ link: Int, with fresh: ZmqSocket) {
        lock.lock(); defer { lock.unlock() }
        sockets[link]?.close()
        sockets[link] = fresh
    }

    func close() {
        lock.lock(); defer { lock.unlock() }
        for socket in sockets { socket?.close() }
        sockets = sockets.map { _ in nil }
    }
}

/// Heartbeats while the loop is inside one computation. The loop brackets its work with
/// `computing { }`; this thread wakes four times an interval and, when a heartbeat is due and
/// the current computation is younger than `maxBusyMs`, sends it. Monotonic time throughout.
final class BusyHeartbeat: @unchecked Sendable {
    private let links: RouterLinks
    private let intervalMs: UInt64
    private let maxBusyMs: UInt64
    private let lock = NSLock()
    private var busySinceMs: UInt64?
    private var lastSentMs: UInt64 = 0
    private var running = false
    private var thread: Thread?
    private var _load: UInt32 = 0

    init(links: RouterLinks, intervalMs: UInt64, maxBusyMs: UInt64) {
        self.links = links; self.intervalMs = intervalMs; self.maxBusyMs = maxBusyMs
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

    /// The loop sent a heartbeat itself: none is due from this thread for an interval.
    func markSent() {
        lock.lock(); lastSentMs = MonotonicClock.nowMs(); lock.unlock()
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
            if due {
                for link in 0..<links.count { _ = try? links.send(Envelope(.heartbeat(Heartbeat(load: load))), to: link) }
            }
        }
    }
}
