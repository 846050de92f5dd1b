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
    /// small watcher thread polls the flag). Only under systemd.
    static func notifyStopping(when flag: StopFlag, logger: Logger) {
        guard ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil else { return }
        let thread = Thread {
            while !flag.isSet { Thread.sleep(forTimeInterval: 0.1) }
            stopping(logger: logger)
        }
        thread.name = "sd-notify-stopping"
        thread.start()
    }
}
