import Foundation

/// A flag set from any thread (a signal handler's queue) and polled by a node's event loop.
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    public init() {}
    public func set() { lock.lock(); value = true; lock.unlock() }
    public var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Installs handlers for SIGTERM and SIGINT that set `flag` (the nodes drain on it).
/// Returns the dispatch sources; keep them alive for as long as the handlers should run.
public func installStopSignals(_ flag: StopFlag, signals: [Int32] = [SIGTERM, SIGINT]) -> [DispatchSourceSignal] {
    signals.map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { flag.set() }
        source.resume()
        return source
    }
}
