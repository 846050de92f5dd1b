import ArgumentParser
import Engine
import Foundation
import MetricsEndpoint
import Gate
import RouterNode
import Logging
import Wire

struct RouterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "router",
        abstract: "Run the router (the gate and the span broker)."
    )

    @Option(help: "ZeroMQ endpoint gateways connect to.") var frontend = "tcp://127.0.0.1:5555"
    @Option(help: "ZeroMQ endpoint experts connect to.") var backend = "tcp://127.0.0.1:5556"
    @Option(help: "MambaFormer checkpoint folder (its gate is used when it has one).") var model = "models/demo"
    @Option(help: "Gate: auto (trained if the checkpoint has one, else rule), rule, or alternate (test/demo only).")
    var gate = "auto"
    @Option(help: "Tokens per span.") var spanTokens: UInt32 = 16
    @Option(help: "Heartbeat interval in ms; a peer silent for 3 intervals is dead.") var heartbeatMs: UInt64 = 1000
    @Option(help: "Spans that may wait per pool before new requests are refused or moved to the other pool.")
    var maxQueuedSpans = 64
    @Option(help: "Requests in progress before new ones are refused (overloaded, retryable).") var maxRequests = 1024
    @Flag(help: "Refuse (overloaded) instead of falling back to the other pool when a pool is saturated.")
    var noFallback = false
    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9101; port 0 picks one).")
    var metrics: String?
    @Option(help: "Log level (trace, debug, info, notice, warning, error).") var logLevel: String?

    func run() throws {
        Runtime.dieWithParentIfSupervised()
        let logger = Runtime.bootstrapLogging(logLevel, label: "mambaformer.router")
        if let metrics { try MetricsEndpoint.start(address: metrics, logger: logger) }
        var options = RouterNode.Options()
        options.frontend = frontend
        options.backend = backend
        options.core.spanTokens = spanTokens
        options.core.heartbeatIntervalMs = heartbeatMs
        options.core.maxQueuedSpansPerPool = maxQueuedSpans
        options.core.maxActiveRequests = maxRequests
        options.core.fallbackOnOverload = !noFallback
        let spanGate = try makeGate(logger: logger)
        let node = try RouterNode(options: options, gate: spanGate, logger: logger)
        installStopSignals(node.stopRequested)
        node.run()
    }

    private func makeGate(logger: Logger) throws -> SpanGate {
        switch gate {
        case "rule": return RuleGate()
        case "alternate": return AlternatingGate()
        case "auto":
            // The trained gate lands with issue #8; until then every checkpoint uses the rule.
            return RuleGate()
        default:
            throw ValidationError("--gate must be auto, rule or alternate (got \(gate))")
        }
    }
}
