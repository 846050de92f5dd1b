import Engine

/// Per-sequence model state kept between spans (ET5: encoder output + KV cache; EMamba:
/// conv + SSM state), so that the next span of the same answer costs only its new tokens.
/// Bounded by entries and bytes; the least recently used session is evicted first.
/// A miss only costs a recomputation: every span request is self-contained.
public final class SessionCache {
    /// `pending`: tokens the span generated but the session has not consumed (its last one).
    /// `written`: the prompt and the answer so far as the router will send them back (the
    /// spans' texts so far): when the next span's are exactly these, the session's own tokens
    /// spell them.
    struct Written: Equatable { var prompt: String; var answer: String }
    private struct Entry { var session: ModelSession; var pending: [Int]; var written: Written?; var lastUse: UInt64 }
    private var entries: [String: Entry] = [:]
    private var clock: UInt64 = 0
    let maxEntries: Int
    let maxBytes: Int

    public init(maxEntries: Int, maxBytes: Int) {
        self.maxEntries = max(1, maxEntries)
        self.maxBytes = maxBytes
    }

    public var count: Int { entries.count }

    /// Takes the session out of the cache (a session is used by one span at a time).
    func take(_ key: String) -> (session: ModelSession, pending: [Int], written: Written?)? {
        entries.removeValue(forKey: key).map { ($0.session, $0.pending, $0.written) }
    }

    func put(_ key: String, _ session: ModelSession, pending: [Int] = [], written: Written? = nil) {
        clock += 1
        entries[key] = Entry(session: session, pending: pending, written: written, lastUse: clock)
        evict()
    }

    func remove(_ key: String) { entries[key] = nil }

    private func evict() {
        var bytes = entries.values.reduce(0) { $0 + $1.session.memoryBytes }
        while entries.count > maxEntries || (bytes > maxBytes && entries.count > 1) {
            guard let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) else { return }
            bytes -= oldest.value.session.memoryBytes
            entries[oldest.key] = nil
        }
    }
}
