import Autoscaling
import CSupport
import Foundation
import Logging
import Wire

/// `up`'s children: this binary's subcommands, supervised the way systemd supervises the
/// units (`Restart=on-failure`): a child that exits on its own is started again after a short
/// back-off. One that keeps failing (5 exits within 60 s, systemd's start limit) is given up
/// on: a replica stays down, the router or the gateway stops the cluster. Expert replicas can be added and drained at run time (the autoscaler's actuator).
final class Supervisor: ReplicaActuator {
    private final class Child {
        let name: String
        let arguments: [String]
        let pool: PoolKind?
        let number: Int
        var process: Process
        /// Sent SIGTERM on purpose (a scale-down): its exit is the end of its drain, not a crash.
        var draining = false
        var exits: [Date] = []
        var restartAt: Date?
        init(name: String, arguments: [String], pool: PoolKind?, number: Int, process: Process) {
            self.name = name; self.arguments = arguments; self.pool = pool; self.number = number; self.process = process
        }
    }

    static let startLimitBurst = 5
    static let startLimitInterval: TimeInterval = 60

    private var children: [Child] = []
    private let logger: Logger
    private let logLevel: String?
    private let configPath: String?
    /// The subcommand and flags of replica `number` of `pool` (e.g. expert --kind emamba ...).
    var replicaArguments: ((PoolKind, Int) -> [String])?
    /// Set when a child exhausted its restarts: the cluster stops with this reason.
    private(set) var failure: String?
    /// Restarts after crashes, for `up`'s log and tests.
    private(set) var restarts = 0

    init(logger: Logger, logLevel: String?, configPath: String? = nil) {
        self.logger = logger; self.logLevel = logLevel; self.configPath = configPath
    }

    func start(_ name: String, _ arguments: [String], pool: PoolKind? = nil, number: Int = 0) throws {
        let child = Child(name: name, arguments: arguments, pool: pool, number: number, process: try launch(arguments))
        logger.info("started", metadata: ["process": "\(name)", "pid": "\(child.process.processIdentifier)"])
        children.append(child)
    }

    private func launch(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = arguments + (logLevel.map { ["--log-level", $0] } ?? []) + (configPath.map { ["--config", $0] } ?? [])
        var env = ProcessInfo.processInfo.environment
        // Under systemd only `up` itself may talk to the notify socket.
        env["NOTIFY_SOCKET"] = nil
        env["MAMBAFORMER_PARENT_PID"] = "\(getpid())"
        env["OPENBLAS_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] ?? "1"
        if env["OPENBLAS_CORETYPE"] == nil, mf_cpu_has_avx512f() == 1 { env["OPENBLAS_CORETYPE"] = "SkylakeX" }
        process.environment = env
        try process.run()
        return process
    }

    // MARK: Replicas (the autoscaler's actuator)

    /// Starts replica `pool-N` with the lowest number no live replica of the pool holds.
    func startReplica(_ pool: PoolKind) throws {
        guard let replicaArguments else { return }
        let used = Set(children.filter { $0.pool == pool }.map(\.number))
        var number = 1
        while used.contains(number) { number += 1 }
        try start("\(pool)-\(number)", replicaArguments(pool, number), pool: pool, number: number)
    }

    /// SIGTERM to the highest-numbered replica of `pool` that is not draining yet: it stops
    /// taking spans, hands back what it has not started, finishes the rest, then exits.
    func drainReplica(_ pool: PoolKind) {
        guard let child = children.filter({ $0.pool == pool && !$0.draining && $0.restartAt == nil })
            .max(by: { $0.number < $1.number }) else { return }
        child.draining = true
        kill(child.process.processIdentifier, SIGTERM)
        logger.info("draining", metadata: ["process": "\(child.name)", "pid": "\(child.process.processIdentifier)"])
    }

    func replicas(_ pool: PoolKind) -> (serving: Int, draining: Int)? {
        let mine = children.filter { $0.pool == pool }
        return (mine.filter { !$0.draining }.count, mine.filter(\.draining).count)
    }

    func replicasOnHost() -> Int? { children.filter { $0.pool != nil }.count }

    func apply(_ decision: AutoscaleDecision) throws {
        if decision.to > decision.from {
            for _ in decision.from..<decision.to { try startReplica(decision.pool) }
        } else {
            for _ in decision.to..<decision.from { drainReplica(decision.pool) }
        }
    }

    /// Replicas of `pool` that are up or coming (not draining).
    func replicas(_ pool: PoolKind) -> Int { children.filter { $0.pool == pool && !$0.draining }.count }

    // MARK: Supervision

    /// Handles exits since the last call: a drained replica leaves, anything else is restarted
    /// after a back-off (0.5 s, doubling, at most 5 s) unless it hit the start limit.
    func reap(now: Date = Date()) {
        for child in children where child.restartAt == nil && !child.process.isRunning {
            if child.draining {
                logger.info("drained and exited", metadata: ["process": "\(child.name)"])
                children.removeAll { $0 === child }
                continue
            }
            child.exits = child.exits.filter { now.timeIntervalSince($0) < Self.startLimitInterval } + [now]
            let status = child.process.terminationStatus
            guard child.exits.count < Self.startLimitBurst else {
                let reason = "\(child.name) exited \(child.exits.count) times within \(Int(Self.startLimitInterval)) s (last status \(status))"
                if child.pool != nil {
                    // As under systemd, a replica that keeps failing stays failed; the rest of the
                    // cluster serves (its pool falls back or an autoscaler adds another).
                    logger.error("giving up on a replica", metadata: ["process": "\(child.name)", "reason": "\(reason)"])
                    children.removeAll { $0 === child }
                } else {
                    failure = reason
                    logger.error("giving up", metadata: ["process": "\(child.name)", "status": "\(status)"])
                }
                continue
            }
            let backOff = min(5, 0.5 * pow(2, Double(child.exits.count - 1)))
            child.restartAt = now.addingTimeInterval(backOff)
            logger.warning("exited; restarting", metadata: ["process": "\(child.name)", "status": "\(status)",
                                                           "in_s": "\(backOff)"])
        }
        for child in children {
            guard let at = child.restartAt, at <= now, failure == nil else { continue }
            child.restartAt = nil
            do {
                child.process = try launch(child.arguments)
                restarts += 1
                logger.info("restarted", metadata: ["process": "\(child.name)", "pid": "\(child.process.processIdentifier)"])
            } catch {
                failure = "\(child.name) could not be restarted: \(error)"
            }
        }
    }

    /// SIGTERM in reverse start order (gateway first, router last), then SIGKILL stragglers.
    func stopAll(timeout: TimeInterval = 15) {
        for child in children.reversed() where child.process.isRunning {
            kill(child.process.processIdentifier, SIGTERM)
        }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, children.contains(where: { $0.process.isRunning }) { Thread.sleep(forTimeInterval: 0.05) }
        for child in children where child.process.isRunning {
            logger.warning("killing", metadata: ["process": "\(child.name)"])
            kill(child.process.processIdentifier, SIGKILL)
        }
    }
}
