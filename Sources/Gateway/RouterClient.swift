import Foundation
import Logging
import ServiceLifecycle
import Wire

/// The gateway's connection to the router: one DEALER socket owned by one thread.
///
/// HTTP handlers run on many threads, so they never touch that socket: `submit` and
/// `cancel` put the envelope on an in-process ZeroMQ pipe that the loop thread forwards,
/// and the loop hands every `AnswerEvent` to the sink of its request (its answer's queue). Router
/// heartbeats tell `/readyz` whether the router is alive and which pools have replicas;
/// when the router falls silent (or its connection drops) its in-flight requests fail with a
/// retryable `router_lost` error instead of hanging until their deadline, which `RouterPool`
/// turns into a move to another router.
// Sendable: shared state (sinks, heartbeat time, replica counts, the outbox socket) is
// touched only under `lock`; the router socket belongs to the loop thread.
public final class RouterClient: AnswerBackend, @unchecked Sendable {
    private let endpoint: String
    private let logger: Logger
    private let context: ZmqContext
    private let outbox: ZmqSocket          // any thread, under `lock`
    private let inboxEndpoint: String
    private let lock = NSLock()
    private var sinks: [String: AnswerSink] = [:]
    private var lastHeartbeatMs: UInt64 = 0
    private var replicas = (emamba: 0, et5: 0)
    private let stopFlag = StopFlag()
    /// Signalled when the loop thread has closed its sockets.
    private let loopDone = DispatchSemaphore(value: 0)
    private var thread: Thread?
    private let heartbeatIntervalMs: UInt64
    private let liveness: UInt64

    public init(endpoint: String, curve: CurveClientConfig? = nil, heartbeatIntervalMs: UInt64 = 1000,
                liveness: UInt64 = 3, logger: Logger) throws {
        self.endpoint = endpoint
        self.logger = logger
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.liveness = liveness
        context = try ZmqContext()
        inboxEndpoint = "inproc://router-client-\(UUID().uuidString)"
        let inbox = try ZmqSocket(context: context, type: .dealer, sendHWM: 0, receiveHWM: 0)
        _ = try inbox.bind(inboxEndpoint)
        outbox = try ZmqSocket(context: context, type: .dealer, sendHWM: 0, receiveHWM: 0)
        try outbox.connect(inboxEndpoint)
        let router = try ZmqSocket(context: context, type: .dealer)
        if let curve { try router.enableCurveClient(curve) }
        try router.setReconnectInterval(ms: 100, maxMs: 1000)
        // Watch the connection itself: when the router process dies its socket closes at
        // once, long before 3 missed heartbeats, and the replies of the requests in flight
        // can never arrive (a reconnect gets a new identity at the router's ROUTER socket).
        let monitor = try ZmqMonitor(context: context, target: router)
        try router.connect(endpoint)
        let owned = LoopSockets(router: router, inbox: inbox, monitor: monitor)
        let thread = Thread { [unowned self] in self.loop(router: owned.router, inbox: owned.inbox, monitor: owned.monitor) }
        thread.name = "router-client"
        self.thread = thread
        thread.start()
    }

    deinit { stopFlag.set() }

    public func shutdown() { stopFlag.set() }

    // MARK: AnswerBackend

    public func submit(_ request: AnswerRequest, to sink: AnswerSink) async throws {
        // A silent router cannot answer: fail fast (503) instead of waiting for the deadline.
        guard await status().routerReachable else {
            throw BackendSubmitError(code: .unavailable, message: "the router at \(endpoint) is not answering")
        }
        let sent = lock.withLock {
            // Checked again under the lock: a connection that dropped since is failing its
            // sinks, and one registered now would never hear of it.
            guard lastHeartbeatMs > 0 else { return false }
            sinks[request.requestId] = sink
            let sent = (try? outbox.send(Envelope(.answerRequest(request)), to: nil)) ?? false
            if !sent { sinks[request.requestId] = nil }
            return sent
        }
        if !sent {
            throw BackendSubmitError(code: .unavailable, message: "the gateway could not queue the request")
        }
    }

    public func cancel(requestId: String) async {
        let sink = lock.withLock {
            let sink = sinks.removeValue(forKey: requestId)
            _ = try? outbox.send(Envelope(.cancel(Cancel(requestId: requestId))), to: nil)
            return sink
        }
        sink?.end()
    }

    public func status() async -> BackendStatus {
        lock.withLock {
            let reachable = lastHeartbeatMs > 0 && MonotonicClock.nowMs() <= lastHeartbeatMs + heartbeatIntervalMs * liveness
            return BackendStatus(routerReachable: reachable,
                                 emambaReplicas: reachable ? replicas.emamba : 0,
                                 et5Replicas: reachable ? replicas.et5 : 0)
        }
    }

    // MARK: The loop thread

    private func loop(router: ZmqSocket, inbox: ZmqSocket, monitor: ZmqMonitor) {
        var lastSentHeartbeat: UInt64 = 0
        var routerWasAlive = false
        while !stopFlag.isSet {
            guard let readable = try? ZmqPoll.poll([router, inbox, monitor.socket], timeoutMs: 100) else { continue }
            if readable[2], handle(connectionEvents: (try? monitor.events()) ?? []) { routerWasAlive = false }
            if readable[1] {
                // Forward what HTTP handlers queued; the payload is already an encoded envelope.
                while let frames = try? inbox.receive(dontWait: true) {
                    _ = try? router.send(frames, dontWait: true)
                }
            }
            if readable[0] {
                while let message = try? router.receiveEnvelope() {
                    switch message.result {
                    case .success(let envelope): handle(envelope)
                    case .failure(let error): logger.warning("dropped a malformed frame from the router", metadata: ["error": "\(error)"])
                    }
                }
            }
            let now = MonotonicClock.nowMs()
            if now >= lastSentHeartbeat + heartbeatIntervalMs {
                lastSentHeartbeat = now
                _ = try? router.send(Envelope(.heartbeat(Heartbeat())), to: nil)
            }
            let alive = lock.withLock { now <= lastHeartbeatMs + heartbeatIntervalMs * liveness }
            if routerWasAlive, !alive {
                logger.warning("router silent; failing in-flight requests", metadata: ["router": "\(endpoint)"])
                failAll(WireErrorBody(code: .unavailable, message: "the router stopped answering", retryable: true,
                                      reason: WireErrorBody.Reason.routerLost))
            }
            routerWasAlive = alive
        }
        failAll(WireErrorBody(code: .unavailable, message: "the gateway is shutting down", retryable: true))
        monitor.close()
        router.close()
        inbox.close()
        lock.withLock { outbox.close() }
        context.terminate()
        loopDone.signal()
    }

    private func handle(_ envelope: Envelope) {
        switch envelope.body {
        case .heartbeat(let hb):
            lock.withLock {
                lastHeartbeatMs = MonotonicClock.nowMs()
                replicas = (Int(hb.emambaReplicas), Int(hb.et5Replicas))
            }
        case .answerEvent(let event):
            let terminal: Bool
            switch event.kind {
            case .span: terminal = false
            case .done, .error: terminal = true
            }
            let sink = lock.withLock { () -> AnswerSink? in
                lastHeartbeatMs = MonotonicClock.nowMs()  // any message proves the router alive
                return terminal ? sinks.removeValue(forKey: event.requestId) : sinks[event.requestId]
            }
            sink?.send(event)
            if terminal { sink?.end() }
        case .error(let error):
            lock.withLock { lastHeartbeatMs = MonotonicClock.nowMs() }
            logger.error("router refused the gateway: \(loggable(error.message, limit: 200))")
        default:
            lock.withLock { lastHeartbeatMs = MonotonicClock.nowMs() }
        }
    }

    /// Returns whether the connection dropped.
    private func handle(connectionEvents events: [ZmqSocketEvent]) -> Bool {
        var dropped = false
        for event in events {
            switch event {
            case .disconnected:
                // The router is gone (crash, restart, network): its requests are lost with it.
                // Fail them now as retryable and refuse new ones until it speaks again.
                logger.warning("connection to the router dropped; failing in-flight requests", metadata: ["router": "\(endpoint)"])
                lock.withLock { lastHeartbeatMs = 0 }
                failAll(WireErrorBody(code: .unavailable, message: "the connection to the router dropped", retryable: true,
                                      reason: WireErrorBody.Reason.routerLost))
                dropped = true
            case .handshakeFailedAuth, .handshakeFailed:
                logger.error("\(event)")
            default:
                logger.debug("\(event)")
            }
        }
        return dropped
    }

    private func failAll(_ error: WireErrorBody) {
        let all = lock.withLock { () -> [String: AnswerSink] in
            defer { sinks.removeAll() }
            return sinks
        }
        for (id, sink) in all {
            sink.send(AnswerEvent(requestId: id, kind: .error(error)))
            sink.end()
        }
    }
}

/// The client lives inside the gateway's ServiceGroup: its thread starts with the client, and a
/// graceful shutdown stops it after the HTTP server (services stop in reverse order, so answers
/// still in flight during the drain keep their router connection), then waits until it has
/// closed its sockets.
extension RouterClient: Service {
    public func run() async throws {
        try? await gracefulShutdown()
        shutdown()
        let done = loopDone
        await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                done.wait()
                finished.resume()
            }
        }
    }
}

/// The loop thread's sockets, handed over once: created on the caller's thread, used only by
/// the loop afterwards. ZeroMQ lets a socket move between threads behind a full memory barrier,
/// and starting a thread is one; hence unchecked.
private struct LoopSockets: @unchecked Sendable {
    let router: ZmqSocket
    let inbox: ZmqSocket
    let monitor: ZmqMonitor
}
