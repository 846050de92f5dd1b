import ClusterConfig
import Foundation
import Logging
import Wire

/// Tells systemd (Type=notify units) when a node is ready and when it starts draining.
/// Outside systemd these do nothing; a failure to notify is logged, never fatal (systemd then
/// times the start out, which is the visible signal).
enum Readiness {
    static func ready(_ status: String, logger: Logger) {
        do {
            if try SystemdNotify.ready(status: status) { logger.debug("notified systemd: ready") }
        } catch {
            logger.warning("could not notify systemd: \(error)")
        }
    }

    static func stopping(logger: Logger) {
        do { try SystemdNotify.stopping() } catch { logger.warning("could not notify systemd: \(error)") }
    }

    /// Sends STOPPING=1 once `flag` is set (the node's loop owns the thread it runs on, so a
    /// small watcher thread polls the flag). Call `finish()` on the result when the loop
    /// returns: a drain shorter than the poll interval is announced then. Only under systemd.
    static func notifyStopping(when flag: StopFlag, logger: Logger) -> StoppingAnnouncer {
        let announcer = StoppingAnnouncer(logger: logger)
        guard ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil else { return announcer }
        let thread = Thread {
            while !flag.isSet { Thread.sleep(forTimeInterval: 0.05) }
            announcer.announce()
        }
        thread.name = "sd-notify-stopping"
        thread.start()
        return announcer
    }
}

/// Sends STOPPING=1 at most once, from whichever thread gets there first.
final class StoppingAnnouncer: @unchecked Sendable {
    private let lock = NSLock()
    private var sent = false
    private let logger: Logger
    init(logger: Logger) { self.logger = logger }

    func announce() {
        lock.lock()
        let first = !sent
        sent = true
        lock.unlock()
        if first { Readiness.stopping(logger: logger) }
    }

    /// The node's loop returned: make sure systemd heard about the stop.
    func finish() { announce() }
}
