import ArgumentParser
import Engine
import ExpertNode
import Foundation
import MetricsEndpoint
import Kernels
import Tokenizers
import Wire

struct ExpertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expert",
        abstract: "Run one expert replica (EMamba or ET5) connected to a router."
    )

    @Option(help: "Which pool this replica serves: emamba or et5.") var kind: String
    @Option(help: "MambaFormer checkpoint folder, or one Hugging Face checkpoint folder.") var model = "models/demo"
    @Option(help: "The router's backend endpoint.") var router = "tcp://127.0.0.1:5556"
    @Option(help: "Replica name shown in traces and metrics (default: <kind>-<pid>).") var replicaId: String?
    @Option(help: "BLAS threads in this process (one per process is best on small hosts).") var threads = 1
    @Option(help: "Sequences decoded together in one batch.") var capacity = 8
    @Option(help: "Sessions kept in the cache between spans (LRU).") var maxSessions = 256
    @Option(help: "Heartbeat interval in ms.") var heartbeatMs: UInt64 = 1000
    @Flag(help: "Never stop at EOS: every answer runs to its max tokens (benchmarks and tests).") var ignoreEos = false
    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9101; port 0 picks one).")
    var metrics: String?
    @Option(help: "Log level.") var logLevel: String?

    func run() throws {
        Runtime.ensureOpenBLASCoreType()
        Runtime.dieWithParentIfSupervised()
        let logger = Runtime.bootstrapLogging(logLevel, label: "mambaformer.expert")
        if let metrics { try MetricsEndpoint.start(address: metrics, logger: logger) }
        let pool: PoolKind
        switch kind {
        case "emamba": pool = .emamba
        case "et5": pool = .et5
        default: throw ValidationError("--kind must be emamba or et5 (got \(kind))")
        }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be in 1...64") }
        guard (1...256).contains(capacity) else { throw ValidationError("--capacity must be in 1...256") }
        Blas.threads = threads

        let folder = try MambaformerCheckpoint.expertFolder(model, expert: kind)
        let expertModel = try loadExpertModel(from: folder)
        let tokenizer = try Tokenizer.load(from: folder)
        var options = ExpertNode.Options()
        options.router = router
        options.pool = pool
        options.replicaId = replicaId ?? "\(kind)-\(getpid())"
        options.modelId = folder.lastPathComponent
        options.capacity = capacity
        options.maxSessions = maxSessions
        options.heartbeatIntervalMs = heartbeatMs
        options.ignoreEOS = ignoreEos
        logger.info("model loaded", metadata: [
            "model": "\(folder.path)", "type": "\(expertModel.modelType)", "weight_bytes": "\(expertModel.weightBytes)"])
        let node = try ExpertNode(options: options, model: expertModel, tokenizer: tokenizer, logger: logger)
        installStopSignals(node.stopRequested)
        node.run()
    }
}
