import Foundation

/// Milliseconds since the Unix epoch: the unit of every deadline on the wire
/// (`deadline_unix_ms`), so nodes compare against the same clock the gateway set them with.
public enum WallClock {
    public static func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }
}
