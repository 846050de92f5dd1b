import ArgumentParser
import ClusterConfig
import CSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Wire

/// A whole cluster on this machine in one command: router, gateway and expert replicas as
/// child processes of this one (the same binary), wired over ipc:// endpoints in a private
/// folder. Children watch their parent, so even a SIGKILL of `up` leaves no orphans.
struct UpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start a whole local cluster (router, gateway, experts) in one command."
    )

    @OptionGroup var config: ConfigFileOption
    @Option(help: "MambaFormer checkpoint folder (default: router.model of the configuration, models/demo).") var model: String?
    @Option(help: "EMamba replicas.") var emamba = 1
    @Option(help: "ET5 replicas.") var et5 = 1
    @Option(help: "Gateway HTTP address (default: gateway.listen, 127.0.0.1:8080).") var http: String?
    @Option(help: .setting("router.gate")) var gate: String?
    @Option(help: .setting("router.span_tokens")) var spanTokens: UInt32?
    @Option(help: .setting("expert.threads")) var threads: Int?
    @Option(help: "Seconds to wait for the cluster to become ready.") var readyTimeout = 120.0
    @Option(help: "Log level for every process.") var logLevel: String?

    var overrides: ConfigOverrides {
        var o = ConfigOverrides()
        o.set("router.model", model, flag: "--model")
        o.set("expert.model", model, flag: "--model")
        o.set("gateway.listen", http, flag: "--http")
        o.set("router.gate", gate)
        o.set("router.span_tokens", spanTokens)
        o.set("expert.threads", threads)
        return o
    }

    func run() throws {
        let logger = Runtime.bootstrapLogging(logLevel, label: "mambaformer.up")
        // Checked here once, so that a bad file stops `up` before any child starts.
        let cluster = try NodeConfiguration.load(config, overrides)
        let model = cluster.router.model
        let http = "\(cluster.gateway.host):\(cluster.gateway.port)"
        let gate = cluster.router.gate
        let spanTokens = cluster.router.spanTokens
        // Threads per pool come from the configuration unless --threads says.
        let threadFlags = threads.map { ["--threads", "\($0)"] } ?? []
        guard emamba >= 0, et5 >= 0, emamba + et5 > 0 else { throw ValidationError("need at least one expert replica") }
        guard FileManager.default.fileExists(atPath: model) else {
            throw ValidationError("checkpoint folder \(model) does not exist")
        }
        // mkdtemp: an unpredictable name, mode 0700: no other local user can reach the sockets
        // (nor plant a folder of that name first).
        var template = Array(FileManager.default.temporaryDirectory.appendingPathComponent("mambaformer-up-XXXXXX").path.utf8CString)
        guard mkdtemp(&template) != nil else { throw ValidationError("up: cannot create a private folder in \(NSTemporaryDirectory())") }
        let stateDir = URL(fileURLWithPath: String(cString: template))
        defer { try? FileManager.default.removeItem(at: stateDir) }
        let frontend = "ipc://\(stateDir.path)/frontend"
        let backend = "ipc://\(stateDir.path)/backend"

        let supervisor = Supervisor(logger: logger, logLevel: logLevel, configPath: config.path)
        let stop = StopFlag()
        installStopSignals(stop)

        try supervisor.start("router", ["router", "--frontend", frontend, "--backend", backend,
                                        "--model", model, "--gate", gate, "--span-tokens", "\(spanTokens)"])
        for i in 0..<emamba {
            try supervisor.start("emamba-\(i + 1)", ["expert", "--kind", "emamba", "--model", model, "--router", backend,
                                                    "--replica-id", "emamba-\(i + 1)"] + threadFlags)
        }
        for i in 0..<et5 {
            try supervisor.start("et5-\(i + 1)", ["expert", "--kind", "et5", "--model", model, "--router", backend,
                                                 "--replica-id", "et5-\(i + 1)"] + threadFlags)
        }
        try supervisor.start("gateway", ["gateway", "--listen", http, "--router", frontend])

        let url = "http://\(http)"
        let deadline = Date().addingTimeInterval(readyTimeout)
        var ready = false
        while !stop.isSet, Date() < deadline, supervisor.allRunning {
            if Self.httpStatus("\(url)/readyz") == 200 { ready = true; break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        if ready {
            print("mambaformer cluster ready at \(url)  (router \(frontend), \(emamba) EMamba + \(et5) ET5 replicas)")
            print("try: mambaformer ask --url \(url) \"What is gingivitis?\"   — Ctrl-C stops everything")
            fflush(stdout)
            while !stop.isSet, supervisor.allRunning { Thread.sleep(forTimeInterval: 0.2) }
        }
        let crashed = supervisor.exited
        supervisor.stopAll()
        if !ready && !stop.isSet {
            throw UpError("the cluster did not become ready within \(Int(readyTimeout)) s" +
                          (crashed.isEmpty ? "" : "; exited: \(crashed.joined(separator: ", "))"))
        }
        if !crashed.isEmpty && !stop.isSet { throw UpError("a process exited: \(crashed.joined(separator: ", "))") }
    }

    /// The HTTP status of a GET, or nil when nothing answers.
    static func httpStatus(_ url: String) -> Int? {
        guard let u = URL(string: url) else { return nil }
        var request = URLRequest(url: u)
        request.timeoutInterval = 1
        let done = DispatchSemaphore(value: 0)
        var status: Int?
        URLSession.shared.dataTask(with: request) { _, response, _ in
            status = (response as? HTTPURLResponse)?.statusCode
            done.signal()
        }.resume()
        _ = done.wait(timeout: .now() + 2)
        return status
    }
}

struct UpError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Starts this binary's subcommands as children and stops them in reverse order.
final class Supervisor {
    private var children: [(name: String, process: Process)] = []
    private let logger: Logger
    private let logLevel: String?
    private let configPath: String?

    init(logger: Logger, logLevel: String?, configPath: String? = nil) {
        self.logger = logger; self.logLevel = logLevel; self.configPath = configPath
    }

    func start(_ name: String, _ arguments: [String]) throws {
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
        logger.info("started", metadata: ["process": "\(name)", "pid": "\(process.processIdentifier)"])
        children.append((name, process))
    }

    var allRunning: Bool { children.allSatisfy { $0.process.isRunning } }
    var exited: [String] { children.filter { !$0.process.isRunning }.map { "\($0.name) (status \($0.process.terminationStatus))" } }

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
