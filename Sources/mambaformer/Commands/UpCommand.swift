import ArgumentParser
import Autoscaling
import ClusterConfig
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Wire

/// A whole cluster on this machine in one command: router, gateway and expert replicas as
/// child processes of this one (the same binary), wired over ipc:// endpoints in a private
/// folder. Children watch their parent, so even a SIGKILL of `up` leaves no orphans. A child
/// that crashes is restarted; with `--autoscale` the expert pools follow the load.
struct UpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start a whole local cluster (router, gateway, experts) in one command.",
        discussion: """
            A child that exits on its own is restarted (0.5 s back-off, doubling). A replica that exits \
            5 times within 60 s is given up on; the router or the gateway doing so stops the cluster. \
            --autoscale emamba=1-4 lets the autoscaler size that pool between 1 and 4 replicas from the \
            router's demand, with the [autoscale] settings of the configuration (delays, target, \
            max_replicas_per_host); --emamba then sets the starting count.
            """
    )

    @OptionGroup var config: ConfigFileOption
    @Option(help: "MambaFormer checkpoint folder (default: router.model of the configuration, models/demo).") var model: String?
    @Option(help: "EMamba replicas.") var emamba = 1
    @Option(help: "ET5 replicas.") var et5 = 1
    @Option(help: "Routers side by side: every expert serves each, the gateway spreads answers over them and moves an answer whose router dies.")
    var routers = 1
    @Option(help: "Gateway HTTP address (default: gateway.listen, 127.0.0.1:8080).") var http: String?
    @Option(help: .setting("router.gate")) var gate: String?
    @Option(help: .setting("router.span_tokens")) var spanTokens: UInt32?
    @Option(help: .setting("expert.threads")) var threads: Int?
    @Option(help: "Seconds to wait for the cluster to become ready.") var readyTimeout = 120.0
    @Option(help: "Log level for every process.") var logLevel: String?
    @Option(help: "Autoscale a pool between MIN and MAX replicas: POOL=MIN-MAX (repeatable, e.g. emamba=1-4).")
    var autoscale: [String] = []

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
        guard (1...16).contains(routers) else { throw ValidationError("--routers must be 1...16") }
        let frontends = (1...routers).map { "ipc://\(stateDir.path)/frontend-\($0)" }
        let backends = (1...routers).map { "ipc://\(stateDir.path)/backend-\($0)" }

        let ranges = try autoscale.map(Self.parseRange)
        var counts: [PoolKind: Int] = [.emamba: emamba, .et5: et5]
        for (pool, range) in ranges { counts[pool] = min(max(counts[pool] ?? 1, range.lowerBound), range.upperBound) }

        let supervisor = Supervisor(logger: logger, logLevel: logLevel, configPath: config.path)
        supervisor.replicaArguments = { pool, number in
            ["expert", "--kind", "\(pool)", "--model", model, "--replica-id", "\(pool)-\(number)"]
                + backends.flatMap { ["--router", $0] } + threadFlags
        }
        let stop = StopFlag()
        installStopSignals(stop)

        for (i, (frontend, backend)) in zip(frontends, backends).enumerated() {
            try supervisor.start(routers == 1 ? "router" : "router-\(i + 1)",
                                 ["router", "--frontend", frontend, "--backend", backend,
                                  "--model", model, "--gate", gate, "--span-tokens", "\(spanTokens)"])
        }
        for pool in [PoolKind.emamba, .et5] {
            for _ in 0..<(counts[pool] ?? 0) { try supervisor.startReplica(pool) }
        }
        try supervisor.start("gateway", ["gateway", "--listen", http] + frontends.flatMap { ["--router", $0] })

        let scaler = try ranges.isEmpty ? nil : makeAutoscaler(cluster, ranges: ranges, frontends: frontends,
                                                                supervisor: supervisor, logger: logger)
        let url = "http://\(http)"
        let deadline = Date().addingTimeInterval(readyTimeout)
        var ready = false
        while !stop.isSet, Date() < deadline, supervisor.failure == nil {
            supervisor.reap()
            if Self.httpStatus("\(url)/readyz") == 200 { ready = true; break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        if ready {
            let pools = [PoolKind.emamba, .et5].map { pool in
                let range = ranges.first { $0.pool == pool }.map { " (autoscaled \($0.range.lowerBound)-\($0.range.upperBound))" } ?? ""
                return "\(counts[pool] ?? 0) \(pool == .emamba ? "EMamba" : "ET5")\(range)"
            }
            let routerText = routers == 1 ? "router \(frontends[0])" : "\(routers) routers"
            print("mambaformer cluster ready at \(url)  (\(routerText), \(pools.joined(separator: " + ")) replicas)")
            print("try: mambaformer ask --url \(url) \"What is gingivitis?\"   — Ctrl-C stops everything")
            fflush(stdout)
            while !stop.isSet, supervisor.failure == nil {
                supervisor.reap()
                scaler?.tickIfDue()
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        let failure = supervisor.failure
        supervisor.stopAll()
        if !ready && !stop.isSet {
            throw UpError("the cluster did not become ready within \(Int(readyTimeout)) s" + (failure.map { "; \($0)" } ?? ""))
        }
        if let failure, !stop.isSet { throw UpError(failure) }
    }

    /// `emamba=1-4` → (.emamba, 1...4).
    static func parseRange(_ text: String) throws -> (pool: PoolKind, range: ClosedRange<Int>) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let pool = PoolKind.allCases.first(where: { "\($0)" == parts[0] && $0 != .unspecified })
        else { throw AutoscaleError.badRange(text) }
        let bounds = parts[1].split(separator: "-", maxSplits: 1).compactMap { Int($0) }
        guard bounds.count == 2, bounds[0] >= 1, bounds[0] <= bounds[1], bounds[1] <= 256 else { throw AutoscaleError.badRange(text) }
        return (pool, bounds[0]...bounds[1])
    }

    /// The autoscaler of `up`: the [autoscale] settings with each pool's range from the flag,
    /// asking this cluster's routers, acting through the supervisor.
    private func makeAutoscaler(_ cluster: ClusterConfig, ranges: [(pool: PoolKind, range: ClosedRange<Int>)],
                                frontends: [String], supervisor: Supervisor, logger: Logger) throws -> AutoscaleLoop {
        var settings: [PoolKind: AutoscaleSettings] = [:]
        for (pool, range) in ranges {
            var s = try NodeConfiguration.autoscaleSettings(cluster, pool: pool)
            s.minReplicas = range.lowerBound
            s.maxReplicas = range.upperBound
            settings[pool] = s
        }
        let policy = AutoscalePolicy(settings: settings, maxReplicasPerHost: NodeConfiguration.maxReplicasPerHost(cluster))
        // The children read the same configuration: with security.curve on, the router's
        // frontend wants a gateway key.
        let poller = try PoolStatusPoller(routers: frontends, curves: try NodeConfiguration.gatewayCurves(cluster, routers: frontends.count))
        return AutoscaleLoop(policy: policy, poller: poller, actuator: supervisor,
                             intervalMs: cluster.int("autoscale.interval_ms"), logger: logger)
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
