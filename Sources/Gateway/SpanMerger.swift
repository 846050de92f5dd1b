import Wire

/// Turns the router's span results — which may arrive duplicated (a retried span answered twice)
/// or out of order (a retry overtaken by the next span) — into the answer, strictly in span order.
///
/// Rules:
/// - span `i` is released only after spans `0..<i`; later spans wait in `pending`;
/// - a span whose (request id, index) was already seen is dropped: the first copy wins, because
///   it may already have been streamed to the client;
/// - a span for another request id is dropped (never mixed into this answer);
/// - while a later span waits for a missing one, the merger remembers since when: past the gap
///   timeout the caller fails the request (`SpanGap`) instead of returning a truncated answer.
///
/// Time is passed in, so the merger is a plain value type testable without sleeping.
public struct SpanMerger: Sendable {
    public let requestId: String
    /// Index of the next span to release.
    public private(set) var nextIndex: UInt32 = 0
    /// Released spans, in order.
    public private(set) var merged: [SpanResult] = []
    /// The answer so far: released span texts, concatenated.
    public private(set) var text: String = ""
    public private(set) var duplicatesDropped = 0
    public private(set) var foreignDropped = 0
    private var pending: [UInt32: SpanResult] = [:]
    /// When the current gap opened (a span beyond `nextIndex` is waiting); nil when no gap.
    public private(set) var gapSince: ContinuousClock.Instant?

    public init(requestId: String) { self.requestId = requestId }

    /// Takes one span result; returns the spans that became releasable, in order (possibly none).
    public mutating func accept(_ span: SpanResult, now: ContinuousClock.Instant = .now) -> [SpanResult] {
        guard span.requestId == requestId else {
            foreignDropped += 1
            return []
        }
        if span.spanIndex < nextIndex || pending[span.spanIndex] != nil {
            duplicatesDropped += 1
            return []
        }
        pending[span.spanIndex] = span
        var released: [SpanResult] = []
        while let ready = pending.removeValue(forKey: nextIndex) {
            released.append(ready)
            merged.append(ready)
            text += ready.text
            nextIndex += 1
        }
        if pending.isEmpty {
            gapSince = nil
        } else if gapSince == nil || !released.isEmpty {
            // A new gap (or the old one closed and another opened behind it): restart the clock.
            gapSince = now
        }
        return released
    }

    /// The span everyone is waiting for, if a later one has arrived.
    public var missingIndex: UInt32? { pending.isEmpty ? nil : nextIndex }

    /// Indices that arrived beyond the gap, sorted.
    public var waitingIndices: [UInt32] { pending.keys.sorted() }

    /// The gap, if one has been open for at least `timeout`.
    public func expiredGap(now: ContinuousClock.Instant, timeout: Duration) -> SpanGap? {
        guard let since = gapSince, now - since >= timeout else { return nil }
        return SpanGap(requestId: requestId, missing: nextIndex, waiting: waitingIndices,
                       reason: .timedOut(waitedMs: Int((now - since) / .milliseconds(1))))
    }

    /// Called when the router says it is done after `spans` spans (0 = count not reported):
    /// anything still missing means the answer is incomplete.
    public func gapAtCompletion(expectedSpans spans: UInt32) -> SpanGap? {
        if !pending.isEmpty {
            return SpanGap(requestId: requestId, missing: nextIndex, waiting: waitingIndices, reason: .doneWithoutIt)
        }
        if spans > nextIndex {
            return SpanGap(requestId: requestId, missing: nextIndex, waiting: [], reason: .doneWithoutIt)
        }
        return nil
    }
}

/// A span that never arrived: the answer cannot be completed in order.
public struct SpanGap: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        case timedOut(waitedMs: Int)
        case doneWithoutIt
    }
    public var requestId: String
    public var missing: UInt32
    public var waiting: [UInt32]
    public var reason: Reason

    public var description: String {
        let later = waiting.isEmpty ? "" : " (spans \(waiting.map(String.init).joined(separator: ", ")) arrived)"
        switch reason {
        case .timedOut(let ms):
            return "span \(missing) of the answer did not arrive within \(ms) ms\(later); the answer is incomplete"
        case .doneWithoutIt:
            return "the router finished without span \(missing)\(later); the answer is incomplete"
        }
    }
}
