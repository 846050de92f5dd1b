import Wire

/// What the HTTP layer needs from the cluster behind it. The production implementation is the
/// lead's `RouterClient` (a ZeroMQ DEALER connection to the router); tests use an in-process fake.
/// Keeping HTTP on one side of this protocol makes every endpoint testable without sockets.
public protocol AnswerBackend: Sendable {
    /// Sends the request to the router. Its events go to `sink`: spans (in order; a span may
    /// come twice, which the merger drops), then exactly one `.done` or `.error`, then `end()`.
    /// Throws when the request cannot be sent at all (router unreachable, queue full).
    func submit(_ request: AnswerRequest, to sink: AnswerSink) async throws
    /// Asks the router to stop working on a request (client gone, deadline, gap). Idempotent.
    func cancel(requestId: String) async
    /// Router reachable (recent heartbeat) and live replicas per pool.
    func status() async -> BackendStatus
}

/// Where a backend delivers one request's events: straight into that answer's own queue (one
/// queue per request, nothing copied between streams). Thread-safe; `end()` says nothing more
/// will come (ending without `.done` or `.error` fails the answer with 502).
public struct AnswerSink: Sendable {
    private let deliver: @Sendable (AnswerEvent) -> Void
    private let close: @Sendable () -> Void
    public init(deliver: @escaping @Sendable (AnswerEvent) -> Void, close: @escaping @Sendable () -> Void) {
        self.deliver = deliver; self.close = close
    }
    public func send(_ event: AnswerEvent) { deliver(event) }
    public func end() { close() }
}

/// What `/readyz` and `/metrics` report about the cluster behind the gateway.
public struct BackendStatus: Sendable, Equatable {
    public var routerReachable: Bool
    public var emambaReplicas: Int
    public var et5Replicas: Int
    /// Several routers (`RouterPool`): how many answer, of how many configured.
    public var routersReachable: Int
    public var routersConfigured: Int
    public init(routerReachable: Bool, emambaReplicas: Int, et5Replicas: Int,
                routersReachable: Int? = nil, routersConfigured: Int = 1) {
        self.routerReachable = routerReachable
        self.emambaReplicas = emambaReplicas
        self.et5Replicas = et5Replicas
        self.routersReachable = routersReachable ?? (routerReachable ? 1 : 0)
        self.routersConfigured = routersConfigured
    }

    /// Ready = the router answers heartbeats, every pool in `required` has a live replica, and
    /// at least one replica is live overall. With `required` empty a pool may be absent (the
    /// router falls back to the other pool), which is what "one replica per non-empty pool" means
    /// when the gateway does not know which pools the operator intends to run.
    public func isReady(requiring required: Set<PoolKind> = []) -> Bool {
        guard routerReachable, emambaReplicas + et5Replicas > 0 else { return false }
        if required.contains(.emamba) && emambaReplicas == 0 { return false }
        if required.contains(.et5) && et5Replicas == 0 { return false }
        return true
    }
}

/// A backend that cannot be reached at submit time maps to 503; the router's
/// `ErrorCode` carried here decides the HTTP status (see `GatewayError.fromWire`).
public struct BackendSubmitError: Error, CustomStringConvertible, Sendable {
    public var wire: WireErrorBody
    public init(_ wire: WireErrorBody) { self.wire = wire }
    public init(code: ErrorCode, message: String, retryable: Bool = true) {
        self.wire = WireErrorBody(code: code, message: message, retryable: retryable)
    }
    public var description: String { "router refused the request (\(wire.code)): \(wire.message)" }
}
