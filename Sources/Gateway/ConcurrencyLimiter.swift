import Foundation

/// Admission control: at most `limit` answer requests in flight; the rest get 429 at once
/// (no queue in the gateway: queueing belongs to the router, which sees the experts' load).
final class ConcurrencyLimiter: @unchecked Sendable {
    let limit: Int
    private let lock = NSLock()
    private var current = 0
    private let onChange: @Sendable (Int) -> Void

    init(limit: Int, onChange: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.limit = limit
        self.onChange = onChange
    }

    var inFlight: Int { lock.withLock { current } }

    /// A permit, or nil when full.
    func tryAcquire() -> Permit? {
        let admitted: Int? = lock.withLock {
            guard current < limit else { return nil }
            current += 1
            return current
        }
        guard let n = admitted else { return nil }
        onChange(n)
        return Permit(limiter: self)
    }

    fileprivate func release() {
        let n = lock.withLock { () -> Int in
            current -= 1
            return current
        }
        onChange(n)
    }

    /// Released exactly once: explicitly when the answer completes, or when dropped (e.g. a
    /// streaming response whose body was never written because the client vanished first).
    final class Permit: @unchecked Sendable {
        private weak var limiter: ConcurrencyLimiter?
        private let lock = NSLock()
        private var released = false

        fileprivate init(limiter: ConcurrencyLimiter) { self.limiter = limiter }

        func release() {
            let first = lock.withLock { () -> Bool in
                defer { released = true }
                return !released
            }
            if first { limiter?.release() }
        }

        deinit { release() }
    }
}
