import Foundation

/// Admission control: at most `limit` answer requests in flight; the rest get 429 at once
/// (no queue in the gateway: queueing belongs to the router, which sees the experts' load).
final class ConcurrencyLimiter: @unchecked Sendable {
    let limit: Int
    private let lock = NSLock()
    private var current = 0
    /// Request ids in flight: the router keys its work (and `Cancel`) by id, so two clients
    /// sending the same `X-Request-Id` at once must not share one.
    private var ids = Set<String>()
    private let onChange: @Sendable (Int) -> Void

    init(limit: Int, onChange: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.limit = limit
        self.onChange = onChange
    }

    var inFlight: Int { lock.withLock { current } }

    /// A permit, or nil when full. The permit's `requestId` is `requestId`, or — if that id is
    /// already in flight — the id with a random suffix.
    func tryAcquire(requestId: String) -> Permit? {
        let admitted: (Int, String)? = lock.withLock {
            guard current < limit else { return nil }
            current += 1
            var id = requestId
            while ids.contains(id) { id = requestId + "." + String(UInt32.random(in: 0...UInt32.max), radix: 16) }
            ids.insert(id)
            return (current, id)
        }
        guard let (n, id) = admitted else { return nil }
        onChange(n)
        return Permit(limiter: self, requestId: id)
    }

    fileprivate func release(_ id: String) {
        let n = lock.withLock { () -> Int in
            current -= 1
            ids.remove(id)
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
        /// The id the request travels under (unique among requests in flight).
        let requestId: String

        fileprivate init(limiter: ConcurrencyLimiter, requestId: String) {
            self.limiter = limiter
            self.requestId = requestId
        }

        func release() {
            let first = lock.withLock { () -> Bool in
                defer { released = true }
                return !released
            }
            if first { limiter?.release(requestId) }
        }

        deinit { release() }
    }
}
