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
        abstract: "Run one expert replica (EMamba or ET5) connected to a router.",
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
    @Option(help: "MambaFormer checkpoint folder, or one Hugging Face checkpoint folder (default models/demo).") var model: String?
    @Option(help: "The router's backend endpoint (default ipc:///run/mambaformer/backend).") var router: String?
    @Option(help: "Replica name shown in traces and metrics (default: INSTANCE@HOST, else KIND@HOST).") var replicaId: String?
    @Option(help: "BLAS threads in this process (one per process is best on small hosts; default 1).") var threads: Int?
    @Option(help: "Weight matrices in memory: auto (as stored: bf16 stays bf16), f32, bf16 (rounded at load) int8 (quantized at load) or w8a8 (int8, and decode steps multiply in int8; default auto).")
    var weights: String?
    @Option(help: "Sequences decoded together in one batch (default 8).") var capacity: Int?
    @Option(help: "Sessions kept in the cache between spans (LRU; default 256).") var maxSessions: Int?
    @Option(help: "Heartbeat interval in ms (default 1000).") var heartbeatMs: UInt64?
    @Flag(help: "Never stop at EOS: every answer runs to its max tokens (benchmarks and tests).") var ignoreEos = false
    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9101; port 0 picks one).")
    var metrics: String?
    @Option(help: "Log level.") var logLevel: String?

    var overrides: ConfigOverrides {
        var o = ConfigOverrides()
        o.set("expert.model", model, flag: "--model")
        o.set("expert.router", router, flag: "--router")
        o.set("expert.threads", threads, flag: "--threads")
        o.set("expert.weights", weights, flag: "--weights")
        o.set("expert.capacity", capacity, flag: "--capacity")
        o.set("expert.max_sessions", maxSessions, flag: "--max-sessions")
        o.set("expert.heartbeat_ms", heartbeatMs, flag: "--heartbeat-ms")
        o.set("expert.ignore_eos", ignoreEos ? true : nil, flag: "--ignore-eos")
        o.set("expert.metrics", metrics, flag: "--metrics")
        o.set("expert.log_level", logLevel, flag: "--log-level")
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
        Readiness.ready("\(replica) serving \(pool) from \(folder.path) via \(settings.router)", logger: logger)
        let stopping = Readiness.notifyStopping(when: node.stopRequested, logger: logger)
        node.run()
        stopping.finish()
    }
}
