import ClusterConfig
import Foundation

/// Per-client quotas: each named client's `[[clients]]` limits, enforced with token buckets.
///
/// - `rpm`: a bucket of `rpm` requests, refilled at `rpm` a minute; each answer request takes one.
/// - `tpm`: a bucket of `tpm` generated tokens, refilled at `tpm` a minute. Admission needs
///   `max_tokens` in it and reserves them (as OpenAI's rate limits count `max_tokens` up front),
///   so requests admitted together cannot overdraw it; what the answer did not use comes back
///   when it ends.
/// - `max_concurrent`: answers in flight at once.
///
/// A refusal says which limit and when to retry (`Retry-After`, from the bucket's refill rate).
/// Clients without a table, and requests when authentication is off, are not limited. State
/// exists only for configured names, so nothing a client sends can grow it. Socket-free and
/// clock-injected: the unit tests drive it with a fake clock.
// Sendable: `clients` is read and written under `lock` only.
public final class ClientQuotas: @unchecked Sendable {
    struct Bucket {
        var capacity: Double
        /// Refill per nanosecond.
        var rate: Double
        var level: Double
        var updated: UInt64

        init(perMinute: Int, now: UInt64) {
            capacity = Double(perMinute); rate = Double(perMinute) / 60e9; level = capacity; updated = now
        }

        mutating func refill(_ now: UInt64) {
            if now > updated { level = min(capacity, level + Double(now - updated) * rate) }
            updated = now
        }

        /// Whole seconds until the bucket holds `amount` (at least 1).
        func secondsUntil(_ amount: Double) -> Int {
            max(1, Int(((amount - level) / rate / 1e9).rounded(.up)))
        }
    }

    final class Client {
        var limits: ClientLimits
        var requests: Bucket?
        var tokens: Bucket?
        var inFlight = 0
        init(_ limits: ClientLimits, now: UInt64) {
            self.limits = limits
            requests = limits.rpm > 0 ? Bucket(perMinute: limits.rpm, now: now) : nil
            tokens = limits.tpm > 0 ? Bucket(perMinute: limits.tpm, now: now) : nil
        }
    }

    /// Why a request was refused: the limit's name (`rpm`, `tpm`, `max_concurrent`) and when to retry.
    public struct Refusal: Equatable, Sendable {
        public var limit: String
        public var retryAfter: Int
        public var message: String
    }

    public enum Decision {
        /// Not limited (no table for this client, or no client name).
        case unlimited
        case admitted(Permit)
        case refused(Refusal)
        /// `max_tokens` exceeds the client's whole `tpm`: no wait helps (422).
        case impossible(tpm: Int)
    }

    private let lock = NSLock()
    private var clients: [String: Client] = [:]
    /// Clients whose table a reload removed: kept (with their levels and answers in flight),
    /// so that removing a table and adding it back is no way to reset it. Bounded by the names
    /// the operator ever configured.
    private var retired: [String: Client] = [:]
    private let now: @Sendable () -> UInt64
    /// Called with a client's name and answers in flight whenever that changes (a gauge).
    private let onInFlight: @Sendable (String, Int) -> Void

    public init(_ limits: [ClientLimits] = [], now: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds },
                onInFlight: @escaping @Sendable (String, Int) -> Void = { _, _ in }) {
        self.now = now
        self.onInFlight = onInFlight
        replace(limits)
    }

    /// Reports each client's answers in flight to `metrics` (`client_in_flight{client}`).
    public convenience init(_ limits: [ClientLimits], metrics: GatewayMetrics) {
        self.init(limits, onInFlight: { metrics.clientInFlight($1, client: $0) })
    }

    /// The configured names, sorted.
    public var names: [String] { lock.withLock { clients.keys.sorted() } }

    /// New limits (SIGHUP). A client that keeps its table (or gets back one it had) keeps its
    /// buckets' levels (capped at the new capacity) and its answers in flight; a new one starts
    /// with full buckets.
    public func replace(_ limits: [ClientLimits]) {
        let t = now()
        lock.withLock {
            var fresh: [String: Client] = [:]
            for entry in limits {
                let client = Client(entry, now: t)
                if let old = clients[entry.name] ?? retired[entry.name] {
                    client.inFlight = old.inFlight
                    if var bucket = old.requests, client.requests != nil {
                        bucket.refill(t); client.requests!.level = min(bucket.level, client.requests!.capacity)
                    }
                    if var bucket = old.tokens, client.tokens != nil {
                        bucket.refill(t); client.tokens!.level = min(bucket.level, client.tokens!.capacity)
                    }
                }
                fresh[entry.name] = client
                retired[entry.name] = nil
            }
            for (name, old) in clients where fresh[name] == nil { retired[name] = old }
            clients = fresh
        }
    }

    /// Admits one answer request of `client` that may generate up to `maxTokens`, or says why not.
    /// Checks every limit before taking from any, so a refusal costs the client nothing.
    public func admit(client name: String?, maxTokens: Int) -> Decision {
        guard let name else { return .unlimited }
        let t = now()
        let decision: Decision = lock.withLock {
            guard let client = clients[name] else { return .unlimited }
            let limits = client.limits
            if limits.maxConcurrent > 0, client.inFlight >= limits.maxConcurrent {
                return .refused(Refusal(limit: "max_concurrent", retryAfter: 1, message:
                    "client \(name) has \(client.inFlight) answers in flight, its limit (max_concurrent); retry when one ends"))
            }
            client.requests?.refill(t)
            if let bucket = client.requests, bucket.level < 1 {
                return .refused(Refusal(limit: "rpm", retryAfter: bucket.secondsUntil(1), message:
                    "client \(name) used its \(limits.rpm) requests per minute (rpm)"))
            }
            client.tokens?.refill(t)
            if let bucket = client.tokens {
                if Double(maxTokens) > bucket.capacity { return .impossible(tpm: limits.tpm) }
                if bucket.level < Double(maxTokens) {
                    return .refused(Refusal(limit: "tpm", retryAfter: bucket.secondsUntil(Double(maxTokens)), message:
                        "client \(name) has \(Int(bucket.level)) of its \(limits.tpm) tokens per minute (tpm) left; "
                        + "this request reserves max_tokens = \(maxTokens)"))
                }
            }
            client.requests?.level -= 1
            client.tokens?.level -= Double(maxTokens)
            client.inFlight += 1
            return .admitted(Permit(quotas: self, client: name, reserved: maxTokens))
        }
        if case .admitted = decision { reportInFlight(name) }
        return decision
    }

    /// The answer ended: `generated` of the reserved tokens were used; `refundRequest` when it
    /// never ran (the cluster refused it), so it does not count against `rpm` either.
    fileprivate func settle(client name: String, reserved: Int, generated: Int, refundRequest: Bool) {
        let t = now()
        lock.withLock {
            guard let client = clients[name] ?? retired[name] else { return }
            client.inFlight = max(0, client.inFlight - 1)
            if var bucket = client.tokens {
                bucket.refill(t)
                bucket.level = min(bucket.capacity, bucket.level + Double(max(0, reserved - generated)))
                client.tokens = bucket
            }
            if refundRequest, var bucket = client.requests {
                bucket.refill(t)
                bucket.level = min(bucket.capacity, bucket.level + 1)
                client.requests = bucket
            }
        }
        reportInFlight(name)
    }

    private func reportInFlight(_ name: String) {
        let n = lock.withLock { clients[name]?.inFlight }
        if let n { onInFlight(name, n) }
    }

    /// One admitted request's claim, settled exactly once (by `end`, `refund`, or when dropped).
    // Sendable: `settled` and `generated` under `lock`.
    public final class Permit: @unchecked Sendable {
        private weak var quotas: ClientQuotas?
        let client: String
        let reserved: Int
        private let lock = NSLock()
        private var settled = false

        fileprivate init(quotas: ClientQuotas, client: String, reserved: Int) {
            self.quotas = quotas; self.client = client; self.reserved = reserved
        }

        /// The answer is over, having generated `generated` tokens.
        public func end(generated: Int) { settle(generated: generated, refundRequest: false) }
        /// The request never ran: nothing is charged.
        public func refund() { settle(generated: 0, refundRequest: true) }

        private func settle(generated: Int, refundRequest: Bool) {
            let first = lock.withLock { () -> Bool in defer { settled = true }; return !settled }
            if first { quotas?.settle(client: client, reserved: reserved, generated: generated, refundRequest: refundRequest) }
        }

        // Dropped without an end: nothing is known to have been generated, so the reservation is kept.
        deinit { settle(generated: reserved, refundRequest: false) }
    }
}
