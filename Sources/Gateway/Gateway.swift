import Hummingbird
import HummingbirdCore
import NIOCore
import Logging

// The HTTP front door: validates requests, sends them to the router through an
// `AnswerBackend`, merges span results, streams answers, serves health and metrics.
//
// Run it with ServiceLifecycle (SIGTERM/SIGINT → graceful shutdown: the server stops
// accepting, in-flight requests finish):
//
//     let app = makeGatewayApplication(config: config, backend: routerClient, logger: logger)
//     try await app.runService()                      // or put `app` in a ServiceGroup

/// Builds the gateway's Hummingbird application.
/// - Parameters:
///   - metrics: where metrics go; pass one to share its registry (e.g. with `MetricsSystem.bootstrap`).
///   - onServerRunning: called with the bound port once listening (useful with `config.port == 0`).
public func makeGatewayApplication(
    config: GatewayConfig,
    backend: AnswerBackend,
    logger: Logger,
    metrics: GatewayMetrics = GatewayMetrics(),
    drain: GatewayDrain = GatewayDrain(),
    tokens: GatewayTokens? = nil,
    quotas: ClientQuotas? = nil,
    audit: GatewayAudit? = nil,
    tls: GatewayTLS? = nil,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> Application<RouterResponder<GatewayRequestContext>> {
    let router = makeGatewayRouter(config: config, backend: backend, metrics: metrics, drain: drain, tokens: tokens, quotas: quotas, audit: audit,
                                   clientCertificates: tls != nil && config.tlsClientCA != nil)
    let readTimeout = TimeAmount.milliseconds(Int64(config.readTimeoutMs))
    let headerLimits = HTTP1Channel.Configuration.DecoderConfiguration(
        maxHeaderFieldSize: 80 * 1024, maxHeaderListSize: 80 * 1024, maxHeaderFieldCount: 1000)
    // Hummingbird's idle timeout is only a backstop: RequestReadTimeout closes idle and slow
    // connections first (at readTimeout), with a 408 when a request was under way.
    let http1 = HTTP1Channel.Configuration(
        additionalChannelHandlers: [RequestReadTimeout(timeout: readTimeout, metrics: metrics),
                                    MalformedRequestReply(limits: headerLimits, metrics: metrics)],
        idleTimeout: .milliseconds(Int64(config.readTimeoutMs) * 2),
        httpDecoderConfiguration: headerLimits)
    return Application(
        router: router,
        // HTTPS when the config names a certificate (`tls` holds it, reloadable); else plain HTTP.
        server: tls.map { $0.serverBuilder(http1) } ?? .http1(configuration: http1),
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: "mambaformer-gateway"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? config.port) },
        logger: logger
    )
}

/// The router alone (middleware + endpoints), for embedding or testing.
/// - tokens: the accepted tokens, shared with whoever reloads them (SIGHUP); by default the config's.
/// - quotas: the clients' limits, shared the same way; by default the config's `clients`.
/// - audit: the audit trail (nil: none).
/// - clientCertificates: TLS with client certificates: a verified certificate's CN names a
///   client that no token names.
public func makeGatewayRouter(config: GatewayConfig, backend: AnswerBackend,
                              metrics: GatewayMetrics = GatewayMetrics(),
                              drain: GatewayDrain = GatewayDrain(),
                              tokens: GatewayTokens? = nil,
                              quotas: ClientQuotas? = nil,
                              audit: GatewayAudit? = nil,
                              clientCertificates: Bool = false) -> Router<GatewayRequestContext> {
    let limiter = ConcurrencyLimiter(limit: config.maxConcurrent) { metrics.inFlight($0) }
    drain.attach(limiter)
    let router = Router(context: GatewayRequestContext.self)
    // Middleware first: Hummingbird wraps each route with the middleware present when it is added.
    router.add(middleware: FrontMiddleware(metrics: metrics, audit: audit, retryAfterSeconds: config.retryAfterSeconds))
    router.add(middleware: AuthMiddleware(tokens: tokens ?? GatewayTokens(config), metricsAuth: config.metricsAuth,
                                          failuresPerMinute: config.authFailuresPerMinute,
                                          clientCertificates: clientCertificates))
    let quotas = quotas ?? ClientQuotas(config.clients, metrics: metrics)
    Endpoints(config: config, backend: backend, metrics: metrics, limiter: limiter, drain: drain, quotas: quotas, audit: audit)
        .register(on: router)
    return router
}
