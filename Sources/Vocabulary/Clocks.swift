import Foundation

/// Milliseconds since the Unix epoch: only for the 1.1 deadline field (`deadline_unix_ms`)
/// and for timestamps shown to people. Nothing that decides liveness or a timeout reads it.
public enum WallClock {
    public static func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }
}

/// Milliseconds on a clock that never steps (CLOCK_MONOTONIC): for liveness, heartbeats,
/// deadlines and local timeouts, which an NTP step of the wall clock must not shorten,
/// stretch or underflow.
public enum MonotonicClock {
    public static func nowMs() -> UInt64 { DispatchTime.now().uptimeNanoseconds / 1_000_000 }
}

/// Deadlines on the wire. Since 1.2 a message carries the time left when it was sent
/// (`deadline_ms`); each reader adds it to its own monotonic clock, so neither clock skew
/// between hosts nor an NTP step moves a deadline. 1.1 peers read and send a wall-clock
/// instant (`deadline_unix_ms`) instead: a 1.2 sender fills both, and a reader falls back on
/// the instant when `deadline_ms` is 0. Inside a node, deadlines are monotonic instants.
/// All arithmetic saturates: a deadline already past stays past (one millisecond left, never
/// "none"), and no value a peer sends can trap.
public enum Deadline {
    /// Both clocks, read once.
    public struct Clocks: Equatable, Sendable {
        public var wallMs: UInt64
        public var monotonicMs: UInt64
        public init(wallMs: UInt64, monotonicMs: UInt64) { self.wallMs = wallMs; self.monotonicMs = monotonicMs }
        public static func now() -> Clocks { Clocks(wallMs: WallClock.nowMs(), monotonicMs: MonotonicClock.nowMs()) }
    }

    /// The time a received message grants, in ms (0: it set no deadline).
    public static func timeLeft(deadlineMs: UInt32, deadlineUnixMs: UInt64, wallNowMs: UInt64) -> UInt64 {
        if deadlineMs > 0 { return UInt64(deadlineMs) }
        guard deadlineUnixMs > 0 else { return 0 }
        return deadlineUnixMs > wallNowMs ? deadlineUnixMs - wallNowMs : 1
    }

    /// The time left until a monotonic `deadline` (0: none), at least 1 ms when there is one.
    public static func timeLeft(until deadline: UInt64, nowMs: UInt64) -> UInt64 {
        guard deadline > 0 else { return 0 }
        return deadline > nowMs ? deadline - nowMs : 1
    }

    /// A monotonic instant `timeLeft` ms after `nowMs` (0: none).
    public static func instant(timeLeft: UInt64, nowMs: UInt64) -> UInt64 {
        guard timeLeft > 0 else { return 0 }
        let (sum, overflow) = nowMs.addingReportingOverflow(timeLeft)
        return overflow ? .max : sum
    }

    /// The two wire fields for `timeLeft` ms (0: none): 1.2's `deadline_ms` and 1.1's
    /// `deadline_unix_ms`.
    public static func wireFields(timeLeft: UInt64, wallNowMs: UInt64) -> (deadlineMs: UInt32, deadlineUnixMs: UInt64) {
        guard timeLeft > 0 else { return (0, 0) }
        let (unix, overflow) = wallNowMs.addingReportingOverflow(timeLeft)
        return (UInt32(clamping: timeLeft), overflow ? .max : unix)
    }
}

extension AnswerRequest {
    /// The time this request grants, in ms (0: none), read from whichever field its sender set.
    public func timeLeftMs(wallNowMs: UInt64) -> UInt64 {
        Deadline.timeLeft(deadlineMs: deadlineMs, deadlineUnixMs: deadlineUnixMs, wallNowMs: wallNowMs)
    }
    /// Sets both deadline fields for `timeLeft` ms (0: none).
    public mutating func setDeadline(timeLeft: UInt64, wallNowMs: UInt64) {
        (deadlineMs, deadlineUnixMs) = Deadline.wireFields(timeLeft: timeLeft, wallNowMs: wallNowMs)
    }
}

extension SpanRequest {
    /// The time this span grants, in ms (0: none), read from whichever field its sender set.
    public func timeLeftMs(wallNowMs: UInt64) -> UInt64 {
        Deadline.timeLeft(deadlineMs: deadlineMs, deadlineUnixMs: deadlineUnixMs, wallNowMs: wallNowMs)
    }
    /// Sets both deadline fields for `timeLeft` ms (0: none).
    public mutating func setDeadline(timeLeft: UInt64, wallNowMs: UInt64) {
        (deadlineMs, deadlineUnixMs) = Deadline.wireFields(timeLeft: timeLeft, wallNowMs: wallNowMs)
    }
}
