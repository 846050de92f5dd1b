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
    @Option(help: "HTTP address to listen on (HOST:PORT; default 127.0.0.1:8080).") var listen: String?
    @Option(help: "The router's frontend endpoint (default ipc:///run/mambaformer/frontend).") var router: String?
    @Option(help: "File of accepted bearer tokens, one per line (no file: no authentication).") var authTokensFile: String?
    @Option(help: "Answer requests in flight before 429 (default 64).") var maxConcurrent: Int?
    @Option(help: "Largest max_tokens a client may ask for (default 512).") var maxTokens: Int?
    @Option(help: "Largest request body in bytes (default 262144).") var maxBodyBytes: Int?
    @Option(help: "Largest prompt (question + context) in UTF-8 bytes (default 32768).") var maxPromptBytes: Int?
    @Flag(help: "Listen beyond loopback without bearer tokens (only behind an authenticating proxy).")
    var allowUnauthenticated = false
    @Option(help: "Deadline in ms when the client gives none (default 30000).") var deadlineMs: Int?
    @Option(help: "Tokens per span asked of the router (0: the router's default).") var spanTokens: UInt32?
    @Option(help: "A request (head and body) must arrive within this many ms of connecting or of the previous response, else 408 (default 30000).")
    var readTimeoutMs: Int?
    @Option(help: "Log level.") var logLevel: String?

    var overrides: ConfigOverrides {
        var o = ConfigOverrides()
        o.set("gateway.listen", listen, flag: "--listen")
        o.set("gateway.router", router, flag: "--router")
        o.set("security.auth_tokens_file", authTokensFile, flag: "--auth-tokens-file")
        o.set("limits.max_concurrent", maxConcurrent, flag: "--max-concurrent")
        o.set("limits.max_tokens", maxTokens, flag: "--max-tokens")
        o.set("limits.max_body_bytes", maxBodyBytes, flag: "--max-body-bytes")
        o.set("limits.max_prompt_bytes", maxPromptBytes, flag: "--max-prompt-bytes")
        if allowUnauthenticated { o.set("security.allow_unauthenticated", true, flag: "--allow-unauthenticated") }
        o.set("gateway.deadline_ms", deadlineMs, flag: "--deadline-ms")
        o.set("gateway.span_tokens", spanTokens, flag: "--span-tokens")
        o.set("gateway.read_timeout_ms", readTimeoutMs, flag: "--read-timeout-ms")
        o.set("gateway.log_level", logLevel, flag: "--log-level")
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
        let backend = try RouterClient(endpoint: cluster.gateway.router, curve: try NodeConfiguration.gatewayCurve(cluster),
                                       logger: logger)
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
