import Foundation

/// Strings a peer controls (replica ids, model ids, reasons) as they may appear in a log line:
/// at most `limit` characters, control and non-ASCII characters escaped, so a peer can neither
/// forge log lines (newlines, ANSI escapes) nor flood them.
public func loggable(_ s: String, limit: Int = 64) -> String {
    var out = ""
    var count = 0
    for u in s.unicodeScalars {
        if count == limit { out += "…"; break }
        if u.value >= 0x20 && u.value < 0x7F && u != "\\" { out.unicodeScalars.append(u) }
        else { out += String(format: "\\u{%X}", u.value) }
        count += 1
    }
    return out
}

/// Lets a log line about something a peer can repeat at will (a refused handshake, a frame
/// from a revoked key) through at most once per interval per reason, counting the rest, so
/// a peer cannot flood the journal. Reasons are fixed strings (a bounded table).
public struct LogRateLimiter: Sendable {
    public let intervalMs: UInt64
    private var lastMs: [String: UInt64] = [:]
    private var skipped: [String: Int] = [:]
    public init(intervalMs: UInt64) { self.intervalMs = intervalMs }

    /// nil: do not log now. Otherwise log, with the count of occurrences not logged since.
    public mutating func admit(_ reason: String, now: UInt64) -> Int? {
        if let last = lastMs[reason], now < last &+ intervalMs, now >= last {
            skipped[reason, default: 0] += 1
            return nil
        }
        lastMs[reason] = now
        return skipped.removeValue(forKey: reason) ?? 0
    }
}
