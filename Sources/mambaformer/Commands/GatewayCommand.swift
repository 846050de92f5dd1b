import ArgumentParser
import Foundation
import Gateway
import Logging
import Metrics
import ServiceLifecycle
import Wire

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run the HTTP gateway in front of a router."
    )

    @Option(help: "HTTP address to listen on (HOST:PORT).") var listen = "127.0.0.1:8080"
    @Option(help: "The router's frontend endpoint.") var router = "tcp://127.0.0.1:5555"
    @Option(help: "File of accepted bearer tokens, one per line (no file: no authentication).") var authTokensFile: String?
    @Option(help: "Answer requests in flight before 429.") var maxConcurrent = 64
    @Option(help: "Largest max_tokens a client may ask for.") var maxTokens = 512
    @Option(help: "Largest request body in bytes.") var maxBodyBytes = 256 * 1024
    @Option(help: "Largest prompt (question + context) in characters.") var maxPromptChars = 32_000
    @Option(help: "Deadline in ms when the client gives none.") var deadlineMs = 30_000
    @Option(help: "Tokens per span asked of the router (0: the router's default).") var spanTokens: UInt32 = 0
    @Option(help: "Log level.") var logLevel: String?

    func run() async throws {
        Runtime.dieWithParentIfSupervised()
        let logger = Runtime.bootstrapLogging(logLevel, label: "mambaformer.gateway")
        var config = GatewayConfig()
        let parts = listen.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 2, let port = Int(parts.last!) else {
            throw ValidationError("--listen must be HOST:PORT (got \(listen))")
        }
        config.host = parts.dropLast().joined(separator: ":")
        config.port = port
        config.maxConcurrent = maxConcurrent
        config.maxTokens = maxTokens
        config.defaultMaxTokens = min(config.defaultMaxTokens, maxTokens)
        config.maxBodyBytes = maxBodyBytes
        config.maxPromptChars = maxPromptChars
        config.defaultDeadlineMs = deadlineMs
        config.maxDeadlineMs = max(config.maxDeadlineMs, deadlineMs)
        config.spanTokens = spanTokens
        if let authTokensFile { config.authTokens = try GatewayConfig.loadAuthTokens(path: authTokensFile) }
        try config.validate()

        let metrics = GatewayMetrics()
        MetricsSystem.bootstrap(metrics.factory)
        let backend = try RouterClient(endpoint: router, logger: logger)
        let app = makeGatewayApplication(config: config, backend: backend, logger: logger, metrics: metrics)
        // SIGTERM/SIGINT: stop accepting, let in-flight requests finish, exit 0.
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        backend.shutdown()
    }
}
