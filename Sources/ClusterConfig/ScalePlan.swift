import Foundation

/// Runs `systemctl` with arguments; a fake in tests.
public protocol SystemctlRunner {
    /// Exit status, standard output and standard error of `systemctl <arguments>`.
    func run(_ arguments: [String]) throws -> (status: Int32, output: String, error: String)
}

public enum ScaleError: Error, CustomStringConvertible, Equatable {
    case unknownPool(String)
    case invalidCount(Int)
    case systemctlFailed(command: String, status: Int32, message: String)

    public var description: String {
        switch self {
        case .unknownPool(let p): return "unknown pool \(p): expected \(Schema.pools.joined(separator: " or "))"
        case .invalidCount(let n): return "replica count \(n) is out of range (0...\(ScalePlan.maxReplicas))"
        case .systemctlFailed(let command, let status, let message):
            return "`\(command)` failed (exit \(status))" + (message.isEmpty ? "" : ": \(message)")
        }
    }
}

/// How `mambaformer scale POOL N` reaches N replicas of a pool on one host: it counts the
/// running `mambaformer-expert@POOL-K` instances and enables+starts the lowest free numbers,
/// or disables+stops the highest numbers first (so replica names stay compact: 1...N).
/// Instances are enabled, not only started, so the count survives a reboot.
public struct ScalePlan: Equatable {
    public static let maxReplicas = 256
    public static let template = "mambaformer-expert@"

    public let pool: String
    /// Instance names currently running (or starting), e.g. ["emamba-1", "emamba-2"].
    public let running: [String]
    public let toStart: [String]
    public let toStop: [String]

    public static func unit(_ instance: String) -> String { "\(template)\(instance).service" }

    /// The `systemctl list-units` call that lists a pool's instances.
    public static func listArguments(pool: String) -> [String] {
        ["list-units", "--type=service", "--all", "--plain", "--no-legend", "--no-pager", unit("\(pool)-*")]
    }

    /// Running instances of `pool` from `systemctl list-units --plain --no-legend` output
    /// (UNIT LOAD ACTIVE SUB DESCRIPTION). A unit restarting after a failure is "activating":
    /// it counts, it will be back. Failed and inactive ones do not.
    public static func runningInstances(listOutput: String, pool: String) -> [String] {
        instanceStates(listOutput: listOutput, pool: pool).running
    }

    public init(pool: String, running: [String], target: Int) throws {
        guard Schema.pools.contains(pool) else { throw ScaleError.unknownPool(pool) }
        guard (0...Self.maxReplicas).contains(target) else { throw ScaleError.invalidCount(target) }
        self.pool = pool
        self.running = running
        if running.count < target {
            let used = Set(running.compactMap { ExpertInstance($0)?.number })
            var free: [String] = []
            var n = 1
            while free.count < target - running.count {
                if !used.contains(n) { free.append("\(pool)-\(n)") }
                n += 1
            }
            toStart = free
            toStop = []
        } else {
            // Highest numbers first; names without a number (hand-made instances) last.
            let order = running.sorted { a, b in
                switch (ExpertInstance(a)?.number, ExpertInstance(b)?.number) {
                case let (x?, y?): return x > y
                case (_?, nil): return true
                case (nil, _?): return false
                case (nil, nil): return a > b
                }
            }
            toStart = []
            toStop = Array(order.prefix(running.count - target))
        }
    }

    /// The systemctl calls that carry the plan out (empty when the count is already right).
    public var commands: [[String]] {
        var out: [[String]] = []
        if !toStart.isEmpty { out.append(["enable", "--now"] + toStart.map(Self.unit)) }
        if !toStop.isEmpty { out.append(["disable", "--now"] + toStop.map(Self.unit)) }
        return out
    }

    /// The autoscaler's calls: start and stop only (the instances an operator enabled with
    /// `scale` are the count a reboot brings back; the autoscaler adjusts from there), and
    /// without waiting (`--no-block`): a start is "activating" until the replica is ready, a
    /// stop "deactivating" while it drains, and the autoscaler's loop keeps its pace.
    public var transientCommands: [[String]] {
        var out: [[String]] = []
        if !toStart.isEmpty { out.append(["start", "--no-block"] + toStart.map(Self.unit)) }
        if !toStop.isEmpty { out.append(["stop", "--no-block"] + toStop.map(Self.unit)) }
        return out
    }

    /// A pool's instances by state, from `systemctl list-units` output: serving or loading
    /// (`active`, `activating`, `reloading`), of which `activating` is still starting (a
    /// Type=notify unit until READY=1), and `deactivating` (draining).
    public static func instanceStates(listOutput: String, pool: String) -> (running: [String], starting: [String], draining: [String]) {
        var running: [String] = [], starting: [String] = [], draining: [String] = []
        for line in listOutput.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let unitIndex = fields.firstIndex(where: { $0.hasPrefix(template) }), fields.count >= unitIndex + 3 else { continue }
            let unit = fields[unitIndex]
            guard unit.hasSuffix(".service") else { continue }
            let instance = String(unit.dropFirst(template.count).dropLast(".service".count))
            guard let parsed = ExpertInstance(instance), parsed.pool == pool else { continue }
            switch fields[unitIndex + 2] {
            case "active", "reloading": running.append(instance)
            case "activating": running.append(instance); starting.append(instance)
            case "deactivating": draining.append(instance)
            default: break
            }
        }
        return (running, starting, draining)
    }
}

/// Plans and applies a scale change through a `SystemctlRunner`.
public struct Scaler {
    public let runner: SystemctlRunner
    /// `systemctl -H HOST` (over ssh) instead of this host.
    public let host: String?

    public init(runner: SystemctlRunner, host: String? = nil) {
        self.runner = runner
        self.host = host
    }

    private var prefix: [String] { host.map { ["-H", $0] } ?? [] }

    public func plan(pool: String, target: Int) throws -> ScalePlan {
        guard Schema.pools.contains(pool) else { throw ScaleError.unknownPool(pool) }
        let arguments = prefix + ScalePlan.listArguments(pool: pool)
        let result = try runner.run(arguments)
        guard result.status == 0 else {
            throw ScaleError.systemctlFailed(command: Self.render(arguments), status: result.status, message: result.error.trimmed)
        }
        return try ScalePlan(pool: pool, running: ScalePlan.runningInstances(listOutput: result.output, pool: pool), target: target)
    }

    /// The full command lines of a plan (what `--dry-run` prints).
    public func commandLines(_ plan: ScalePlan) -> [String] {
        plan.commands.map { Self.render(prefix + $0) }
    }

    /// A pool's instances on the host, by state (see `ScalePlan.instanceStates`).
    public func states(pool: String) throws -> (running: [String], starting: [String], draining: [String]) {
        guard Schema.pools.contains(pool) else { throw ScaleError.unknownPool(pool) }
        let arguments = prefix + ScalePlan.listArguments(pool: pool)
        let result = try runner.run(arguments)
        guard result.status == 0 else {
            throw ScaleError.systemctlFailed(command: Self.render(arguments), status: result.status, message: result.error.trimmed)
        }
        return ScalePlan.instanceStates(listOutput: result.output, pool: pool)
    }

    /// Runs the plan's commands in order (`transient`: the autoscaler's start/stop without
    /// waiting); stops at the first failure.
    public func apply(_ plan: ScalePlan, transient: Bool = false) throws {
        for command in transient ? plan.transientCommands : plan.commands {
            let arguments = prefix + command
            let result = try runner.run(arguments)
            guard result.status == 0 else {
                throw ScaleError.systemctlFailed(command: Self.render(arguments), status: result.status, message: result.error.trimmed)
            }
        }
    }

    static func render(_ arguments: [String]) -> String {
        (["systemctl"] + arguments).map { $0.contains("*") ? "'\($0)'" : $0 }.joined(separator: " ")
    }
}

/// Runs the real /usr/bin/systemctl (found on PATH), for at most `timeout` seconds: over
/// `-H` (ssh) an unreachable host must not stall the caller (the autoscaler's loop).
public struct ProcessSystemctl: SystemctlRunner {
    public let timeout: TimeInterval
    public init(timeout: TimeInterval = 20) { self.timeout = timeout }

    public func run(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["systemctl"] + arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Both pipes are read on their own threads, so a chatty command cannot fill one and block.
        let collected = Collected()
        let readers = DispatchGroup()
        for (pipe, isOutput) in [(out, true), (err, false)] {
            readers.enter()
            Thread.detachNewThread {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                collected.set(data, output: isOutput)
                readers.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let timedOut = p.isRunning
        if timedOut {
            p.terminate()
            Thread.sleep(forTimeInterval: 0.5)
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        p.waitUntilExit()
        readers.wait()
        let (o, e) = collected.get()
        return (timedOut ? 124 : p.terminationStatus, String(decoding: o, as: UTF8.self),
                (timedOut ? "timed out after \(Int(timeout)) s; " : "") + String(decoding: e, as: UTF8.self))
    }

    private final class Collected: @unchecked Sendable {   // guarded by `lock`
        private let lock = NSLock()
        private var output = Data(), error = Data()
        func set(_ data: Data, output isOutput: Bool) { lock.withLock { if isOutput { output = data } else { error = data } } }
        func get() -> (Data, Data) { lock.withLock { (output, error) } }
    }
}

extension String {
    var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
