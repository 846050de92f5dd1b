import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus

/// `GET /metrics` (Prometheus text format) for the processes whose main loop is a ZeroMQ
/// poll loop with no HTTP server of its own: the router and the experts. The gateway
/// serves its own `/metrics`.
///
/// `start` bootstraps swift-metrics into one Prometheus registry, so everything the
/// process emits through swift-metrics (`Counter`, `Gauge`, `Timer`) is exported, and
/// serves it from a small Hummingbird application on the Swift concurrency pool, beside
/// the node's own loop thread.
public enum MetricsEndpoint {
    public enum StartError: Error, CustomStringConvertible {
        case badAddress(String)
        case notListening(String, String)
        public var description: String {
            switch self {
            case .badAddress(let a): return "--metrics must be HOST:PORT, e.g. 127.0.0.1:9101 (got '\(a)')"
            case .notListening(let a, let why): return "metrics endpoint could not listen on \(a): \(why)"
            }
        }
    }

    /// Splits `HOST:PORT` (`[::1]:9101` for IPv6).
    public static func parse(_ address: String) throws -> (host: String, port: Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (0...65535).contains(port) else { throw StartError.badAddress(address) }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw StartError.badAddress(address) }
        return (host, port)
    }

    /// Starts serving and waits (up to 10 s) until the socket is bound. Returns the URL
    /// actually served (port 0 resolved). Call once per process, before the node's metrics
    /// objects are created, so they land in the registry.
    @discardableResult
    public static func start(address: String, logger: Logger) throws -> String {
        let (host, port) = try parse(address)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let router = Router()
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: registry.emitToString())))
        }
        let bound = BoundPort()
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "mambaformer-metrics"),
            onServerRunning: { channel in bound.set(channel.localAddress?.port ?? port) },
            logger: logger)
        Task.detached {
            do { try await app.run() } catch { bound.fail("\(error)") }
        }
        switch bound.wait(seconds: 10) {
        case .success(let actual):
            let url = "http://\(host.contains(":") ? "[\(host)]" : host):\(actual)/metrics"
            logger.info("metrics at \(url)")
            return url
        case .failure(let why):
            throw StartError.notListening(address, why.message)
        }
    }
}

/// The port the server bound, handed from its task to the thread that waits for it.
private final class BoundPort: @unchecked Sendable {
    struct Failure: Error { var message: String }
    private let condition = NSCondition()
    private var result: Result<Int, Failure>?

    func set(_ port: Int) { resolve(.success(port)) }
    func fail(_ message: String) { resolve(.failure(Failure(message: message))) }

    private func resolve(_ r: Result<Int, Failure>) {
        condition.lock(); defer { condition.unlock() }
        if result == nil { result = r }
        condition.broadcast()
    }

    func wait(seconds: Double) -> Result<Int, Failure> {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: seconds)
        while result == nil { if !condition.wait(until: deadline) { break } }
        return result ?? .failure(Failure(message: "not listening after \(Int(seconds)) s"))
    }
}
