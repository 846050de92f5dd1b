import ArgumentParser
import Audit
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
    @Option(help: .setting("gateway.tls_cert")) var tlsCert: String?
    @Option(help: .setting("gateway.tls_key")) var tlsKey: String?
    @Option(help: .setting("gateway.tls_client_ca")) var tlsClientCa: String?
    @Flag(help: .setting("gateway.tls_require_client_cert")) var tlsRequireClientCert = false
    @Flag(help: .setting("security.allow_plaintext_http")) var allowPlaintextHttp = false
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
        o.set("gateway.tls_cert", tlsCert)
        o.set("gateway.tls_key", tlsKey)
        o.set("gateway.tls_client_ca", tlsClientCa)
        o.set("gateway.tls_require_client_cert", tlsRequireClientCert ? true : nil)
        o.set("security.allow_plaintext_http", allowPlaintextHttp ? true : nil)
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
        let quotas = ClientQuotas(gatewayConfig.clients, metrics: metrics)
        warnAboutUnknownClients(gatewayConfig, logger: logger)
        let tls = gatewayConfig.servesTLS ? try GatewayTLS(gatewayConfig) : nil
        if !gatewayConfig.servesTLS, !GatewayConfig.isLoopback(gatewayConfig.host) {
            logger.warning("serving plain HTTP on \(gatewayConfig.host) (security.allow_plaintext_http = true): only behind a proxy that terminates TLS")
        }
        let auditLog = try openAuditLog(cluster.gateway.audit, logger: logger)
        let audit = auditLog.map { GatewayAudit(log: $0.log, key: $0.key, includeText: cluster.gateway.audit.includeText,
                                                allowUnaudited: cluster.gateway.audit.allowUnaudited, metrics: metrics) }
        ReloadSignal.install()
        let app = makeGatewayApplication(config: gatewayConfig, backend: backend, logger: logger, metrics: metrics,
                                         drain: drain, tokens: tokens, quotas: quotas, audit: audit, tls: tls, onServerRunning: { port in
            Readiness.ready("gateway listening on \(tls == nil ? "http" : "https")://\(gatewayConfig.host):\(port)", logger: logger)
        })
        // SIGTERM/SIGINT: services stop in reverse order. systemd hears STOPPING=1; new
        // answers get 503 while those in flight finish; then the server stops; exit 0.
        let group = ServiceGroup(configuration: .init(
            // Shut down in reverse order: the router connection after the drain (answers in flight
            // keep it), the token reloader last, so that it never delays the drain.
            services: [.init(service: AuditCloser(log: auditLog?.log)),
                       .init(service: GatewayReloader(reload: reloadedSettings, tokens: tokens, quotas: quotas, tls: tls,
                                                       started: gatewayConfig, logger: logger)),
                       .init(service: backend),
                       .init(service: app), .init(service: Drainer(drain: drain, logger: logger)),
                       .init(service: StoppingNotifier(logger: logger))],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

extension GatewayCommand {
    /// The gateway's settings as the files say now (SIGHUP): the same checks as at start.
    func reloadedSettings() throws -> GatewayConfig {
        try NodeConfiguration.gatewayConfig(try NodeConfiguration.load(config, overrides))
    }

    /// The audit log when `audit.path` is set: its key must load and its last line verify.
    func openAuditLog(_ s: AuditSettings, logger: Logger) throws -> (log: AuditLog, key: AuditKey)? {
        guard let path = s.path else { return nil }
        let key = try AuditKey.load(path: s.hmacKeyFile)
        var options = AuditLog.Options()
        options.rotateBytes = s.rotateBytes
        options.queueLimit = s.queue
        options.headInterval = .seconds(s.headIntervalS)
        let log = try AuditLog(path: path, key: key, options: options, logger: logger)
        logger.notice("audit log open", metadata: ["path": "\(path)", "next_seq": "\(log.head.nextSeq)",
                                                   "text": "\(s.includeText ? "included (security.allow_audit_text)" : "hashed")"])
        return (log, key)
    }

    /// A `[[clients]]` name that no token carries limits nobody: most likely a typo.
    func warnAboutUnknownClients(_ g: GatewayConfig, logger: Logger) {
        // With client certificates a table may be for a certificate's CN: nothing to check against.
        guard g.tlsClientCA == nil else { return }
        let named = Set(g.clientNames.values)
        for client in g.clients where !named.contains(client.name) {
            logger.warning("[[clients]] \(client.name): no token in security.auth_tokens_file has this name; its limits apply to nobody")
        }
    }
}

/// SIGHUP: the configuration file, the token file and the TLS files again, to revoke or add a
/// client, change its limits or renew a certificate without a restart. Any file invalid:
/// everything stays as it was, and the log says why (a token file that now holds no tokens is
/// invalid too). Turning authentication or TLS on or off takes a restart.
struct GatewayReloader: Service {
    let reload: @Sendable () throws -> GatewayConfig
    let tokens: GatewayTokens
    let quotas: ClientQuotas
    let tls: GatewayTLS?
    /// The settings the gateway started with.
    let started: GatewayConfig
    let logger: Logger
    func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(250))
            guard ReloadSignal.take() else { continue }
            do {
                let fresh = try reload()
                if fresh.authTokensFile == nil, tokens.count > 0 {
                    logger.error("SIGHUP: not reloaded: security.auth_tokens_file is now empty; turning authentication off takes a restart")
                    continue
                }
                if (tls != nil) != fresh.servesTLS {
                    logger.error("SIGHUP: not reloaded: turning TLS \(fresh.servesTLS ? "on" : "off") takes a restart")
                    continue
                }
                // Who counts as authenticated is fixed at start (how clients are named follows it).
                if (started.tlsClientCA != nil) != (fresh.tlsClientCA != nil) || started.tlsRequireClientCert != fresh.tlsRequireClientCert {
                    logger.error("SIGHUP: not reloaded: adding or removing gateway.tls_client_ca or changing gateway.tls_require_client_cert takes a restart")
                    continue
                }
                try tls?.reload(fresh)   // first: the step that can still fail
                tokens.replace(fresh.authTokens, names: fresh.clientNames)
                quotas.replace(fresh.clients)
                logger.notice("SIGHUP: tokens, client limits\(tls == nil ? "" : " and TLS certificates") reloaded",
                              metadata: ["tokens": "\(fresh.authTokens.count)", "clients_with_limits": "\(fresh.clients.count)"])
            } catch {
                logger.error("SIGHUP: not reloaded, the previous tokens and client limits stay: \(error)")
            }
        }
    }
}

/// Closes the audit log last (first in the service list): the drain's answers are audited,
/// and the closing head goes to the journal.
struct AuditCloser: Service {
    let log: AuditLog?
    func run() async throws {
        try? await gracefulShutdown()
        log?.close()
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
