import ArgumentParser
import ClusterConfig
import Engine
import ExpertNode
import Foundation
import Kernels
import MetricsEndpoint
import Tokenizers
import Wire

struct ExpertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expert",
        abstract: "Run one expert replica (EMamba or ET5) serving one or more routers.",
        discussion: """
            Settings come from [expert] and [expert.<pool>] of the configuration file; flags override them. \
            Under systemd the unit mambaformer-expert@emamba-3 runs `expert --instance emamba-3`: \
            pool emamba, replica id emamba-3@HOST (stable across restarts, distinct across hosts). \
            The router binds a replica id to the CURVE key that registered it first.
            """
    )

    @OptionGroup var config: ConfigFileOption
    @Option(help: "Which pool this replica serves: emamba or et5.") var kind: String?
    @Option(help: "Pool and replica in one name, POOL-N (a systemd instance name, e.g. emamba-3).") var instance: String?
    @Option(help: .setting("expert.model")) var model: String?
    @Option(help: .setting("expert.router")) var router: [String] = []
    @Option(help: "Replica name shown in traces and metrics (default: INSTANCE@HOST, else KIND@HOST).") var replicaId: String?
    @Option(help: .setting("expert.threads")) var threads: Int?
    @Option(help: .setting("expert.weights")) var weights: String?
    @Option(help: .setting("expert.capacity")) var capacity: Int?
    @Option(help: .setting("expert.max_sessions")) var maxSessions: Int?
    @Option(help: .setting("expert.heartbeat_ms")) var heartbeatMs: UInt64?
    @Flag(help: .setting("expert.ignore_eos")) var ignoreEos = false
    @Option(help: .setting("expert.metrics")) var metrics: String?
    @Option(help: .setting("expert.log_level")) var logLevel: String?

    /// Flag → setting, one line each (flags are named as their setting's key).
    var overrides: ConfigOverrides {
        var o = ConfigOverrides()
        o.set("expert.model", model)
        o.set("expert.router", router)
        o.set("expert.threads", threads)
        o.set("expert.weights", weights)
        o.set("expert.capacity", capacity)
        o.set("expert.max_sessions", maxSessions)
        o.set("expert.heartbeat_ms", heartbeatMs)
        o.set("expert.ignore_eos", ignoreEos ? true : nil)
        o.set("expert.metrics", metrics)
        o.set("expert.log_level", logLevel)
        return o
    }

    /// The pool and replica id from --kind / --instance / --replica-id.
    func identity() throws -> (pool: PoolKind, replicaId: String) {
        var poolName = kind
        var parsedInstance: ExpertInstance?
        if let instance {
            guard let parsed = ExpertInstance(instance) else {
                throw ValidationError("--instance must be POOL-N with POOL emamba or et5 (got \(instance))")
            }
            if let kind, kind != parsed.pool {
                throw ValidationError("--kind \(kind) contradicts --instance \(instance)")
            }
            poolName = parsed.pool
            parsedInstance = parsed
        }
        guard let poolName else { throw ValidationError("give --kind emamba|et5 or --instance POOL-N") }
        guard let pool = PoolKind(name: poolName) else {
            throw ValidationError("--kind must be emamba or et5 (got \(poolName))")
        }
        return (pool, replicaId ?? ExpertInstance.defaultReplicaId(pool: poolName, instance: parsedInstance,
                                                                    host: Self.hostName()))
    }

    /// gethostname(2): Foundation's `hostName` may wait on DNS.
    static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "" }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func run() throws {
        Runtime.ensureOpenBLASCoreType()
        Runtime.dieWithParentIfSupervised()
        let (pool, replica) = try identity()
        let cluster = try NodeConfiguration.load(config, overrides)
        let settings = cluster.expert(pool: "\(pool)")
        let logger = Runtime.bootstrapLogging(NodeConfiguration.logLevel(cluster, "expert.log_level", pool: "\(pool)"),
                                              label: "mambaformer.expert")
        if let address = cluster.expertMetricsAddress(pool: "\(pool)", instance: instance) {
            try MetricsEndpoint.start(address: address, logger: logger)
        }
        Kernels.threads = settings.threads

        let folder = try MambaformerCheckpoint.expertFolder(settings.model, expert: "\(pool)")
        // The schema admits only WeightFormat's names.
        let expertModel = try loadExpertModel(from: folder, weightFormat: WeightFormat(rawValue: settings.weights) ?? .auto)
        let tokenizer = try Tokenizer.load(from: folder)
        let options = try NodeConfiguration.expertOptions(cluster, pool: pool, replicaId: replica,
                                                          modelId: folder.lastPathComponent)
        logger.info("model loaded", metadata: [
            "model": "\(folder.path)", "type": "\(expertModel.modelType)", "weights": "\(settings.weights)", "weight_bytes": "\(expertModel.weightBytes)"])
        let node = try ExpertNode(options: options, model: expertModel, tokenizer: tokenizer, logger: logger)
        installStopSignals(node.stopRequested)
        // Model loaded and the socket connecting: the replica announces itself (Ready) as its
        // loop starts and reconnects on its own, so systemd need not wait for the router.
        Readiness.ready("\(replica) serving \(pool) from \(folder.path) via \(settings.routers.joined(separator: ", "))", logger: logger)
        let stopping = Readiness.notifyStopping(when: node.stopRequested, logger: logger)
        node.run()
        stopping.finish()
    }
}
