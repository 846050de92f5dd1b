import ClusterConfig
import Foundation
import Gate
import Logging
import Metrics
import Wire

/// The router process: binds a frontend ROUTER (gateways connect) and a backend ROUTER
/// (experts connect) and runs `RouterCore` over a single-threaded zmq_poll loop. Every
/// socket is owned by the loop's thread.
///
/// The core runs on the monotonic clock only (liveness, heartbeats, queues, deadlines), so
/// an NTP step of the wall clock can neither drop every replica nor stretch a deadline.
/// Deadlines cross the wire as time left (1.2); this loop fills in the wall-clock instant of
/// 1.1 peers at its edge (`DeadlineEdge`).
public final class RouterNode {
    public struct Options: Sendable {
        public var frontend = Schema.defaultString("router.frontend")
        public var backend = Schema.defaultString("router.backend")
        public var core = RouterConfig()
        /// CURVE on both sockets, each with the allow-list of its role.
        public var curve: Curve?
        /// Called on SIGHUP to read the allow-lists again (gateways, experts).
        public var reloadAllowLists: (@Sendable () throws -> (gateways: Set<String>, experts: Set<String>))?
        public init() {}
    }

    /// Roles on the wire: gateways' keys on the frontend, experts' keys on the backend, so a
    /// gateway host's key cannot register as an expert (and hear patient text) and an expert
    /// host's key cannot submit requests past the gateway's door.
    public struct Curve: Sendable {
        public var frontend: CurveServerConfig
        public var backend: CurveServerConfig
        public init(frontend: CurveServerConfig, backend: CurveServerConfig) {
            self.frontend = frontend; self.backend = backend
        }
    }

    public let options: Options
    private let core: RouterCore
    private let logger: Logger
    private let context: ZmqContext
    private let frontend: ZmqSocket
    private let backend: ZmqSocket
    /// The endpoints actually bound (a `*` port resolved).
    public let frontendEndpoint: String
    public let backendEndpoint: String
    /// Set to drain and stop (from any thread, e.g. a signal handler's queue).
    public let stopRequested = StopFlag()

    private let metrics = RouterMetrics()
    /// The keys each role may use now (nil without CURVE). A connection made before SIGHUP
    /// took its key away is still open: its frames are dropped here.
    private var allowed: (gateways: Set<String>, experts: Set<String>)?
    private var revokedLog = LogRateLimiter(intervalMs: 10_000)

    public init(options: Options, gate: SpanGate, counter: PromptCounter? = nil, logger: Logger) throws {
        self.options = options
        self.core = RouterCore(config: options.core, gate: gate, counter: counter)
        self.logger = logger
        context = try ZmqContext()
        frontend = try ZmqSocket(context: context, type: .router)
        backend = try ZmqSocket(context: context, type: .router)
        if let curve = options.curve {
            try frontend.enableCurveServer(curve.frontend)
            try backend.enableCurveServer(curve.backend)
            allowed = (curve.frontend.allowedClientKeys, curve.backend.allowedClientKeys)
        }
        frontendEndpoint = try frontend.bind(options.frontend)
        backendEndpoint = try backend.bind(options.backend)
    }

    /// Asks the loop to drain and stop (safe from any thread, e.g. a signal handler's queue).
    public func stop() { stopRequested.set() }

    public var stats: RouterStats { core.stats }

    /// Runs until `stop()`; then drains admitted requests (bounded by `drainTimeoutMs`).
    public func run(drainTimeoutMs: UInt64 = 10_000) {
        logger.info("router listening", metadata: [
            "frontend": "\(frontendEndpoint)", "backend": "\(backendEndpoint)", "gate": "\(core.gate.kind)"])
        var drainDeadline: UInt64?
        while true {
            let now = MonotonicClock.nowMs()
            if stopRequested.isSet, drainDeadline == nil {
                logger.info("router draining", metadata: ["requests": "\(core.activeRequests)"])
                core.drain()
                drainDeadline = now + drainTimeoutMs
            }
            if let d = drainDeadline, core.activeRequests == 0 || now >= d { break }
            if ReloadSignal.take() { reloadAllowLists() }

            let readable: [Bool]
            do { readable = try ZmqPoll.poll([frontend, backend], timeoutMs: 50) } catch {
                logger.error("poll failed: \(error)")
                continue
            }
            if readable[0] { drain(frontend, isFrontend: true) }
            if readable[1] { drain(backend, isFrontend: false) }
            perform(core.tick(now: MonotonicClock.nowMs()))
            metrics.update(stats: core.stats, liveReplicas: core.liveReplicas, queueDepth: core.queueDepth,
                           active: core.activeRequests)
        }
        let s = core.stats
        logger.info("router stopped malformed_frames=\(s.malformedFrames)", metadata: [
            "requests_done": "\(s.requestsDone)", "requests_failed": "\(s.requestsFailed)",
            "span_retries": "\(s.spanRetries)", "deadline_misses": "\(s.deadlineMisses)"])
        frontend.close()
        backend.close()
        context.terminate()
    }

    /// SIGHUP: the allow-lists from disk again. A key taken out stops new handshakes at once,
    /// and the connections it already made are cut off: their frames are dropped, its
    /// replicas and gateways leave the core.
    private func reloadAllowLists() {
        guard options.curve != nil, let reload = options.reloadAllowLists else {
            logger.info("SIGHUP: nothing to reload (CURVE is off)")
            return
        }
        do {
            let lists = try reload()
            try frontend.updateAllowList(lists.gateways)
            try backend.updateAllowList(lists.experts)
            allowed = lists
            perform(core.revoke(keepingGatewayKeys: lists.gateways, expertKeys: lists.experts, now: MonotonicClock.nowMs()))
            logger.notice("SIGHUP: allow-lists reloaded", metadata: ["gateway_keys": "\(lists.gateways.count)",
                                                                  "expert_keys": "\(lists.experts.count)"])
        } catch {
            logger.error("SIGHUP: allow-lists not reloaded, the previous ones stay: \(error)")
        }
    }

    /// Time one socket's turn may take before the loop moves on: admitting a request counts
    /// its prompt in both pools' tokens (milliseconds for a long prompt), and a burst of such
    /// requests must not keep the loop from the experts' frames and the clock (heartbeats,
    /// liveness). Frames left over wait in ZeroMQ for the next turn.
    static let turnBudgetNs: UInt64 = 10_000_000

    /// Reads what is waiting on one socket (bounded in count and time, so one busy peer cannot
    /// starve the other socket or the clock).
    private func drain(_ socket: ZmqSocket, isFrontend: Bool) {
        let turnStart = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<256 {
            if DispatchTime.now().uptimeNanoseconds - turnStart > Self.turnBudgetNs { return }
            let message: (identity: [UInt8]?, result: Result<Envelope, WireError>, peerKey: String?)?
            do { message = try socket.receiveEnvelopeAndPeer() } catch {
                logger.error("receive failed: \(error)")
                return
            }
            guard let message else { return }
            guard let identity = message.identity else { continue }
            let peerKey = message.peerKey ?? ""
            if let allowed, !(isFrontend ? allowed.gateways : allowed.experts).contains(peerKey) {
                metrics.framesDropped.increment()
                if let skipped = revokedLog.admit(isFrontend ? "gateway" : "expert", now: MonotonicClock.nowMs()) {
                    logger.warning("dropped a frame from a revoked key", metadata: [
                        "socket": "\(isFrontend ? "frontend" : "backend")", "key": "\(loggable(peerKey))",
                        "frames_not_logged": "\(skipped)"])
                }
                continue
            }
            if case .failure(let error) = message.result {
                metrics.framesDropped.increment()
                logger.debug("dropped a malformed frame", metadata: ["error": "\(error)", "socket": "\(isFrontend ? "frontend" : "backend")"])
            }
            let now = MonotonicClock.nowMs()
            if isFrontend {
                perform(core.gatewayFrame(identity, DeadlineEdge.inbound(message.result, wallNowMs: WallClock.nowMs()), now: now,
                                          peerKey: peerKey))
            } else {
                if case .success(let envelope) = message.result, case .spanResult(let result) = envelope.body {
                    metrics.spanReturned(result)
                }
                let refusedBefore = core.stats.replicaIdsRefused
                perform(core.expertFrame(identity, message.result, now: now, peerKey: peerKey))
                logReplicaEvent(message.result, refused: core.stats.replicaIdsRefused > refusedBefore, peerKey: peerKey)
            }
        }
    }

    private func logReplicaEvent(_ result: Result<Envelope, WireError>, refused: Bool, peerKey: String) {
        guard case .success(let envelope) = result, case .ready(let ready) = envelope.body else { return }
        if !refused {
            logger.info("replica ready", metadata: [
                "pool": "\(ready.pool)", "replica": "\(loggable(ready.replicaId))", "model": "\(loggable(ready.modelId))",
                "capacity": "\(ready.capacity)"])
        } else if let skipped = revokedLog.admit("replica id", now: MonotonicClock.nowMs()) {
            logger.warning("refused a Ready: the replica id is registered by another key", metadata: [
                "replica": "\(loggable(ready.replicaId))", "key": "\(loggable(peerKey))", "refusals_not_logged": "\(skipped)"])
        }
    }

    private func perform(_ actions: [RouterAction]) {
        for action in actions {
            let sent: Bool
            let action = DeadlineEdge.outbound(action, wallNowMs: WallClock.nowMs())
            do {
                switch action {
                case .toGateway(let identity, let envelope): sent = try frontend.send(envelope, to: identity)
                case .toExpert(let identity, let envelope):
                    if case .spanRequest(let span) = envelope.body { metrics.spanSent(span, pool: core.pool(of: identity)) }
                    sent = try backend.send(envelope, to: identity)
                }
            } catch {
                logger.warning("send failed: \(error)")
                sent = false
            }
            // A peer that vanished: the core learns of it through liveness; nothing else to do.
            if !sent { metrics.framesDropped.increment() }
        }
    }
}

/// Reconciles deadlines with 1.1 peers at the router's edge (see `Deadline`): the core reads
/// and writes only the time left (`deadlineMs`).
enum DeadlineEdge {
    /// An answer request from a 1.1 gateway carries only a wall-clock instant: as time left.
    static func inbound(_ decoded: Result<Envelope, WireError>, wallNowMs: @autoclosure () -> UInt64) -> Result<Envelope, WireError> {
        guard case .success(var envelope) = decoded, case .answerRequest(var request) = envelope.body,
              request.deadlineMs == 0, request.deadlineUnixMs > 0 else { return decoded }
        request.deadlineMs = UInt32(clamping: request.timeLeftMs(wallNowMs: wallNowMs()))
        envelope.body = .answerRequest(request)
        return .success(envelope)
    }

    /// A span request leaves with both fields, so a 1.1 expert reads its deadline too.
    static func outbound(_ action: RouterAction, wallNowMs: @autoclosure () -> UInt64) -> RouterAction {
        guard case .toExpert(let identity, var envelope) = action, case .spanRequest(var span) = envelope.body else { return action }
        span.setDeadline(timeLeft: UInt64(span.deadlineMs), wallNowMs: wallNowMs())
        envelope.body = .spanRequest(span)
        return .toExpert(identity, envelope)
    }
}
