import ArgumentParser
import Autoscaling
import ClusterConfig
import Foundation
import Logging
import MetricsEndpoint
import Wire

/// The autoscaler as a service (`mambaformer-autoscaler.service`): asks the routers for each
/// pool's demand and starts or stops `mambaformer-expert@POOL-N` instances through systemd,
/// with the same policy as `up --autoscale`.
struct AutoscaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoscale",
        abstract: "Size the expert pools to the load by starting and stopping systemd instances.",
        discussion: """
            Settings come from [autoscale] (and [autoscale.emamba], [autoscale.et5]) of the configuration \
            file. Every autoscale.routers endpoint is asked for its pools' load (as a gateway would be: \
            with CURVE the autoscaler uses security.gateway_secret_key, and its public key belongs in \
            the router's gateway_keys_dir). Instances are started and stopped, not enabled: the count \
            a reboot brings back is what `mambaformer scale` enabled. A restart of the autoscaler \
            changes nothing by itself: it reads the pools as they are and waits out its delays again.
            """
    )

    @OptionGroup var config: ConfigFileOption
    @Option(help: "Pools to manage (repeatable; default both).") var pool: [String] = []
    @Option(help: "Manage the instances of another host through `systemctl -H USER@HOST` (repeatable; default this host).")
    var host: [String] = []
    @Option(help: .setting("autoscale.routers")) var routers: [String] = []
    @Option(help: .setting("autoscale.metrics")) var metrics: String?
    @Option(help: .setting("autoscale.log_level")) var logLevel: String?

    var overrides: ConfigOverrides {
        var o = ConfigOverrides()
        o.set("autoscale.routers", routers, flag: "--routers")
        o.set("autoscale.metrics", metrics)
        o.set("autoscale.log_level", logLevel)
        return o
    }

    func run() throws {
        Runtime.dieWithParentIfSupervised()
        let cluster = try NodeConfiguration.load(config, overrides)
        let logger = Runtime.bootstrapLogging(NodeConfiguration.logLevel(cluster, "autoscale.log_level"), label: "mambaformer.autoscale")
        if let address = cluster.optionalString("autoscale.metrics") { try MetricsEndpoint.start(address: address, logger: logger) }
        let pools = try (pool.isEmpty ? Schema.pools : pool).map { name -> PoolKind in
            guard let kind = PoolKind.allCases.first(where: { "\($0)" == name && $0 != .unspecified }) else {
                throw ValidationError("--pool \(name): expected \(Schema.pools.joined(separator: " or "))")
            }
            return kind
        }
        var settings: [PoolKind: AutoscaleSettings] = [:]
        for kind in pools { settings[kind] = try NodeConfiguration.autoscaleSettings(cluster, pool: kind) }
        let routerEndpoints = cluster.strings("autoscale.routers")
        try NodeConfiguration.checkWire(cluster, "autoscale.routers")
        let poller = try PoolStatusPoller(routers: routerEndpoints, curves: try NodeConfiguration.gatewayCurves(cluster, routers: routerEndpoints.count))
        let actuator = SystemdReplicas(hosts: host.isEmpty ? [nil] : host.map { Optional($0) }, logger: logger)
        if host.count > 1, cluster.int("autoscale.max_replicas_per_host") == 0 {
            logger.warning("autoscale: with several --host, max_replicas_per_host counts every host's replicas; set it to the budget of all of them (0 means this host's cores)")
        }
        let loop = AutoscaleLoop(policy: AutoscalePolicy(settings: settings, maxReplicasPerHost: NodeConfiguration.maxReplicasPerHost(cluster)),
                                 poller: poller, actuator: actuator, intervalMs: cluster.int("autoscale.interval_ms"), logger: logger)
        let stop = StopFlag()
        installStopSignals(stop)
        Readiness.ready("autoscaling \(pools.map { "\($0)" }.joined(separator: ", ")) from \(routerEndpoints.joined(separator: ", "))",
                        logger: logger)
        while !stop.isSet {
            loop.tickIfDue()
            Thread.sleep(forTimeInterval: 0.1)
        }
    }
}

/// The systemd actuator: `mambaformer-expert@POOL-N` instances on one or more hosts. A stop
/// makes systemd send SIGTERM: the replica drains (it stops taking spans, finishes its own)
/// before it exits, within the unit's TimeoutStopSec.
final class SystemdReplicas: ReplicaActuator {
    private let scalers: [Scaler]
    private let logger: Logger

    init(hosts: [String?], logger: Logger, runner: SystemctlRunner = ProcessSystemctl()) {
        scalers = hosts.map { Scaler(runner: runner, host: $0) }
        self.logger = logger
    }

    private func states(_ pool: PoolKind) -> [(scaler: Scaler, running: [String], starting: [String], draining: [String])] {
        scalers.compactMap { scaler in
            do {
                let s = try scaler.states(pool: "\(pool)")
                return (scaler, s.running, s.starting, s.draining)
            } catch {
                logger.warning("autoscale: cannot list instances", metadata: ["host": "\(scaler.host ?? "local")", "error": "\(error)"])
                return nil
            }
        }
    }

    /// Running units (active or activating: serving or starting) and deactivating ones
    /// (draining), over every host it manages. Nil when a host did not answer: a partial count
    /// would look like lost replicas.
    func replicas(_ pool: PoolKind) -> (serving: Int, draining: Int)? {
        let all = states(pool)
        guard all.count == scalers.count else { return nil }
        return (all.reduce(0) { $0 + $1.running.count }, all.reduce(0) { $0 + $1.draining.count })
    }

    func replicasOnHost() -> Int? {
        var total = 0
        for pool in [PoolKind.emamba, .et5] {
            guard let r = replicas(pool) else { return nil }
            total += r.serving + r.draining
        }
        return total
    }

    func apply(_ decision: AutoscaleDecision) throws {
        var all = states(decision.pool)
        guard all.count == scalers.count else {
            throw ScaleError.systemctlFailed(command: "systemctl list-units", status: -1, message: "a host did not answer")
        }
        // One replica at a time: add where the pool has the fewest, drain where it has the most.
        for _ in 0..<abs(decision.to - decision.from) {
            let up = decision.isUp
            guard let index = all.indices.min(by: { up ? all[$0].running.count < all[$1].running.count
                                                       : all[$0].running.count > all[$1].running.count }) else { break }
            let host = all[index]
            // A draining instance keeps its number until it has stopped: starting it again would
            // only queue behind the stop.
            let plan = up
                ? try ScalePlan(pool: "\(decision.pool)", running: host.running + host.draining,
                                target: host.running.count + host.draining.count + 1)
                : try ScalePlan(pool: "\(decision.pool)", running: host.running, target: host.running.count - 1)
            try host.scaler.apply(plan, transient: true)
            logger.info(up ? "autoscale: started" : "autoscale: stopping (draining)",
                        metadata: ["units": "\((plan.toStart + plan.toStop).map(ScalePlan.unit).joined(separator: " "))",
                                   "host": "\(host.scaler.host ?? "local")"])
            all[index].running = up ? host.running + plan.toStart : host.running.filter { !plan.toStop.contains($0) }
            if !up { all[index].draining = host.draining + plan.toStop }
        }
    }
}
