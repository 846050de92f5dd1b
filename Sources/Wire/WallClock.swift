import Foundation

/// Milliseconds since the Unix epoch: the unit of every deadline on the wire
/// (`deadline_unix_ms`), so nodes compare against the same clock the gateway set them with.
public enum WallClock {
    public static func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }
}

/// Milliseconds on a clock that never steps (CLOCK_MONOTONIC): for liveness, heartbeats and
/// local timeouts, which an NTP step of the wall clock must not shorten, stretch or underflow.
public enum MonotonicClock {
    public static func nowMs() -> UInt64 { DispatchTime.now().uptimeNanoseconds / 1_000_000 }
}
