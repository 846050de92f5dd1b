import Foundation

/// Graceful shutdown in two steps. First the gateway keeps listening but answers new
/// requests with a retryable 503 (`draining`) and reports not ready, so clients and load
/// balancers get a clear answer instead of a refused connection; the answers already in
/// flight run to completion. Then, once none is left (or the timeout passes), the caller
/// stops the HTTP server.
public final class GatewayDrain: @unchecked Sendable {
    private let lock = NSLock()
    private var draining = false
    private var limiter: ConcurrencyLimiter?

    public init() {}

    public var isDraining: Bool { lock.withLock { draining } }

    /// Answers in flight now.
    public var inFlight: Int { lock.withLock { limiter }?.inFlight ?? 0 }

    /// From now on new answers get 503.
    public func begin() { lock.withLock { draining = true } }

    /// Waits until no answer is in flight or `timeout` passes; returns how many are left.
    public func waitUntilIdle(timeout: Duration) async -> Int {
        let deadline = ContinuousClock.now + timeout
        while inFlight > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return inFlight
    }

    func attach(_ limiter: ConcurrencyLimiter) { lock.withLock { self.limiter = limiter } }
}
