import ArgumentParser
import ClusterConfig
import Engine
import Foundation
import Gate
import MetricsEndpoint
import RouterNode
import Logging
import Wire

struct RouterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "router",
        abstract: "Run the router (the gate and the span broker).",
        discussion: "Settings come from [router] and [limits] of the configuration file; flags override them."
    )

    @OptionGroup var config: ConfigFileOption
    @Option(help: .setting("router.frontend")) var frontend: String?
    @Option(help: .setting("router.backend")) var backend: String?
    @Option(help: .setting("router.model")) var model: String?
    @Option(help: .setting("router.gate")) var gate: String?
    @Option(help: .setting("router.span_tokens")) var spanTokens: UInt32?
    @Option(help: .setting("router.first_span_tokens")) var firstSpanTokens: UInt32?
    @Option(help: .setting("router.heartbeat_ms")) var heartbeatMs: UInt64?
    @Option(help: .setting("limits.max_queued_spans")) var maxQueuedSpans: Int?
    @Option(help: .setting("limits.max_requests")) var maxRequests: Int?
    @Flag(help: "Refuse (overloaded) instead of falling back to the other pool when a pool is saturated (limits.fallback_on_overload = false).")
    var noFallback = false
    @Option(help: .setting("router.metrics")) var metrics: String?
    @Option(help: .setting("router.log_level")) var logLevel: String?

    /// Flag → setting, one line each (flags are named as their setting's key).
    var overrides: ConfigOverrides {
        var o = ConfigOverrides()
        o.set("router.frontend", frontend)
        o.set("router.backend", backend)
        o.set("router.model", model)
        o.set("router.gate", gate)
        o.set("router.span_tokens", spanTokens)
        o.set("router.first_span_tokens", firstSpanTokens)
        o.set("router.heartbeat_ms", heartbeatMs)
        o.set("limits.max_queued_spans", maxQueuedSpans)
        o.set("limits.max_requests", maxRequests)
        o.set("limits.fallback_on_overload", noFallback ? false : nil, flag: "--no-fallback")
        o.set("router.metrics", metrics)
        o.set("router.log_level", logLevel)
        return o
    }

    func run() throws {
        Runtime.dieWithParentIfSupervised()
        let cluster = try NodeConfiguration.load(config, overrides)
        let settings = cluster.router
        let logger = Runtime.bootstrapLogging(NodeConfiguration.logLevel(cluster, "router.log_level"), label: "mambaformer.router")
        if let address = cluster.optionalString("router.metrics") { try MetricsEndpoint.start(address: address, logger: logger) }
        var options = try NodeConfiguration.routerOptions(cluster)
        let configOption = config, configOverrides = overrides
        options.reloadAllowLists = {
            // The file again too: its key folders may have moved.
            try NodeConfiguration.routerAllowLists(try NodeConfiguration.load(configOption, configOverrides))
        }
        let spanGate = try makeGate(settings.gate, model: settings.model, logger: logger)
        let counter = try promptCounter(model: settings.model)
        // Requests without a cost weight get the checkpoint's best held-out point.
        if let weight = (try? MambaformerCheckpoint(root: URL(fileURLWithPath: settings.model)))?.defaultCostWeight {
            options.core.defaultCostWeight = weight
        }
        let node = try RouterNode(options: options, gate: spanGate, counter: counter, logger: logger)
        installStopSignals(node.stopRequested)
        ReloadSignal.install()
        // Both sockets are bound: gateways and experts can connect.
        Readiness.ready("router listening on \(node.frontendEndpoint) and \(node.backendEndpoint)", logger: logger)
        let stopping = Readiness.notifyStopping(when: node.stopRequested, logger: logger)
        node.run(drainTimeoutMs: UInt64(settings.drainTimeoutMs))
        stopping.finish()
    }

    /// Both pools' tokenizers, to count prompts against limits.max_prompt_tokens before any work.
    private func promptCounter(model: String) throws -> TokenizerPromptCounter {
        do {
            let checkpoint = try MambaformerCheckpoint(root: URL(fileURLWithPath: model))
            return try TokenizerPromptCounter(emamba: checkpoint.emamba, et5: checkpoint.et5)
        } catch {
            throw ValidationError("router.model: the router counts prompts in each pool's tokens and needs the "
                                  + "checkpoint's emamba/ and et5/ tokenizers: \(error)")
        }
    }

    private func makeGate(_ gate: String, model: String, logger: Logger) throws -> SpanGate {
        // auto: the checkpoint's trained gate (gate/gate.json) when it has one, else the rule.
        let gateDirectory = (try? MambaformerCheckpoint(root: URL(fileURLWithPath: model)))?.gate
        return try GateChoice.make(gate, gateDirectory: gateDirectory)
    }
}
