import CSupport
import Foundation

/// A flag a node's event loop polls to start draining: set by `set()` from any thread, or by
/// SIGTERM/SIGINT once `installStopSignals` watched them.
///
/// Signals go through a plain async-signal-safe C handler rather than a DispatchSource: the
/// nodes' loops block a dispatch worker, and a signal source may then never get a thread to run on.
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    private var watchesSignals = false
    public init() {}
    public func set() { lock.lock(); value = true; lock.unlock() }
    public var isSet: Bool {
        lock.lock(); defer { lock.unlock() }
        return value || (watchesSignals && mf_stop_requested() != 0)
    }
    fileprivate func watchSignals() { lock.lock(); watchesSignals = true; lock.unlock() }
}

/// Makes SIGTERM and SIGINT set `flag` (the nodes drain on it).
public func installStopSignals(_ flag: StopFlag, signals: [Int32] = [SIGTERM, SIGINT]) {
    for sig in signals { _ = mf_install_stop_handler(sig) }
    flag.watchSignals()
}

/// SIGHUP, as daemons use it: "read your configuration again". The loop asks `take()` between
/// turns; several signals before it asks count as one.
public enum ReloadSignal {
    public static func install(_ sig: Int32 = SIGHUP) { _ = mf_install_reload_handler(sig) }
    public static func take() -> Bool { mf_take_reload_request() != 0 }
}
