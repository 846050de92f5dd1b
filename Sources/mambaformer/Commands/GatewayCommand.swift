import ArgumentParser
import ClusterConfig
import Foundation
import Gateway
import Logging
import Metrics
import ServiceLifecycle
import Wire

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run the HTTP gateway in front of a router.",
        discussion: "Settings come from [gateway], [limits] and [security] of the configuration file; flags override them."
    )

    @OptionGroup var config: ConfigFileOption
    @Option(help: .setting("gateway.listen")) var listen: String?
    @Option(help: .setting("gateway.router")) var router: [String] = []
    @Option(help: .setting("security.auth_tokens_file")) var authTokensFile: String?
    @Option(help: .setting("limits.max_concurrent")) var maxConcurrent: Int?
    @Option(help: .setting("limits.max_tokens")) var maxTokens: Int?
    @Option(help: .setting("limits.max_body_bytes")) var maxBodyBytes: Int?
    @Option(help: .setting("limits.max_prompt_bytes")) var maxPromptBytes: Int?
    @Flag(help: .setting("security.allow_unauthenticated")) var allowUnauthenticated = false
    @Option(help: .setting("gateway.deadline_ms")) var deadlineMs: Int?
    @Option(help: .setting("gateway.span_tokens")) var spanTokens: UInt32?
    @Option(help: .setting("gateway.read_timeout_ms")) var readTimeoutMs: Int?
    @Option(help: .setting("gateway.log_level")) var logLevel: String?

    /// Flag → setting, one line each (flags are named as their setting's key).
    var overrides: ConfigOverrides {
        var o = ConfigOverrides()
        o.set("gateway.listen", listen)
        o.set("gateway.router", router)
        o.set("security.auth_tokens_file", authTokensFile)
        o.set("limits.max_concurrent", maxConcurrent)
        o.set("limits.max_tokens", maxTokens)
        o.set("limits.max_body_bytes", maxBodyBytes)
        o.set("limits.max_prompt_bytes", maxPromptBytes)
        o.set("security.allow_unauthenticated", allowUnauthenticated ? true : nil)
        o.set("gateway.deadline_ms", deadlineMs)
        o.set("gateway.span_tokens", spanTokens)
        o.set("gateway.read_timeout_ms", readTimeoutMs)
        o.set("gateway.log_level", logLevel)
        return o
    }

    func run() async throws {
        Runtime.dieWithParentIfSupervised()
        let cluster = try NodeConfiguration.load(config, overrides)
        let logger = Runtime.bootstrapLogging(NodeConfiguration.logLevel(cluster, "gateway.log_level"), label: "mambaformer.gateway")
        let gatewayConfig = try NodeConfiguration.gatewayConfig(cluster)
        if gatewayConfig.isUnauthenticatedBeyondLoopback {
            logger.warning("""
                listening on \(gatewayConfig.host) without authentication (security.allow_unauthenticated = true): \
                only behind a proxy that authenticates every request
                """)
        }

        let metrics = GatewayMetrics()
        MetricsSystem.bootstrap(metrics.factory)
        let routers = cluster.gateway.routers
        let curves = try NodeConfiguration.gatewayCurves(cluster, routers: routers.count)
        let backend = RouterPool(try routers.indices.map { i in
            try RouterClient(endpoint: routers[i], curve: curves?[i], logger: logger)
        }, logger: logger)
        let drain = GatewayDrain()
        let tokens = GatewayTokens(gatewayConfig)
        ReloadSignal.install()
        let app = makeGatewayApplication(config: gatewayConfig, backend: backend, logger: logger, metrics: metrics,
                                         drain: drain, tokens: tokens, onServerRunning: { port in
            Readiness.ready("gateway listening on \(gatewayConfig.host):\(port)", logger: logger)
        })
        // SIGTERM/SIGINT: services stop in reverse order. systemd hears STOPPING=1; new
        // answers get 503 while those in flight finish; then the server stops; exit 0.
        let group = ServiceGroup(configuration: .init(
            // Shut down in reverse order: the router connection after the drain (answers in flight
            // keep it), the token reloader last, so that it never delays the drain.
            services: [.init(service: TokenReloader(path: gatewayConfig.authTokensFile, tokens: tokens, logger: logger)),
                       .init(service: backend),
                       .init(service: app), .init(service: Drainer(drain: drain, logger: logger)),
                       .init(service: StoppingNotifier(logger: logger))],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// SIGHUP: the token file again (revoke or add a client without a restart). An invalid file
/// keeps the tokens in force and says why; a file that now holds no tokens is invalid too.
struct TokenReloader: Service {
    let path: String?
    let tokens: GatewayTokens
    let logger: Logger
    func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(250))
            guard ReloadSignal.take() else { continue }
            guard let path else {
                logger.info("SIGHUP: no token file to reload (authentication is off)")
                continue
            }
            do {
                let named = try GatewayConfig.loadAuthTokens(path: path)
                tokens.replace(Set(named.keys), names: named)
                logger.notice("SIGHUP: tokens reloaded", metadata: ["clients": "\(named.count)"])
            } catch {
                logger.error("SIGHUP: tokens not reloaded, the previous \(tokens.count) stay: \(error)")
            }
        }
    }
}

/// Tells systemd STOPPING=1 as soon as the graceful shutdown (the drain) begins.
struct StoppingNotifier: Service {
    let logger: Logger
    func run() async throws {
        try? await gracefulShutdown()
        Readiness.stopping(logger: logger)
    }
}

/// Holds the HTTP server open during the drain: on shutdown it makes new answers 503 and
/// returns once the answers in flight are done (at most 40 s, under systemd's 45 s stop timeout).
struct Drainer: Service {
    let drain: GatewayDrain
    let logger: Logger
    func run() async throws {
        try? await gracefulShutdown()
        drain.begin()
        logger.info("draining", metadata: ["in_flight": "\(drain.inFlight)"])
        let left = await drain.waitUntilIdle(timeout: .seconds(40))
        if left > 0 { logger.warning("drain timed out", metadata: ["in_flight": "\(left)"]) }
    }
}
