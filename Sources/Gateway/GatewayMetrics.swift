import Metrics
import Prometheus
import Wire

/// The gateway's metrics, emitted through swift-metrics into a Prometheus registry that
/// `/metrics` renders. The factory is injected (not the global `MetricsSystem`) so that several
/// gateways — e.g. one per test — never share counters; the `gateway` subcommand may bootstrap
/// `MetricsSystem` with `factory` too, so library metrics land in the same registry.
///
/// Names (all prefixed `mambaformer_gateway_`):
/// - `requests_total{endpoint,status}`            every HTTP response, by route and status code
/// - `request_duration_seconds{endpoint}`          histogram, until the last byte (streams included)
/// - `first_span_seconds`                          histogram, request received → first span merged
/// - `router_queue_seconds`                        histogram, queue time the router reported
/// - `in_flight`                                   answer requests being served now
/// - `tokens_total{expert}`                        generated tokens merged, per expert pool
/// - `answers_total{outcome}`                      ok / deadline / incomplete / upstream / cancelled / rejected
/// - `spans_dropped_total{reason}`                 duplicate / foreign span results dropped by the merger
/// - `stream_errors_total{code}`                   errors sent as an SSE event after the stream started
/// - `read_timeouts_total{action}`                connections that did not deliver a request in time:
///                                                 `408` (partial request answered) or `close` (idle)
/// - `malformed_requests_total{status}`            HTTP the decoder refused: 400 / 431 (never routed)
/// - `router_reachable`, `replicas{pool}`          last status seen by /readyz or /metrics
/// - `routers_reachable`, `routers_configured`     several routers: how many answer, of how many
/// - `quota_rejections_total{client,limit}`        requests a client's own limit refused (rpm / tpm / max_concurrent)
/// - `client_tokens_total{client}`                 generated tokens per named client
/// - `client_in_flight{client}`                    answers in flight per client with a `[[clients]]` table
/// - `audit_lines_total{result}`                   audit lines `written`, or `failed` (queue full, write failed)
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let factory: PrometheusMetricsFactory
    private let inFlightGauge: Meter
    private let reachableGauge: Meter
    private let routersReachable: Meter
    private let routersConfigured: Meter
    private let emambaReplicas: Meter
    private let et5Replicas: Meter

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        // Answers take from tens of milliseconds to minutes: wider buckets than the default 10 s.
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
            .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300),
        ]
        self.factory = factory
        inFlightGauge = Meter(label: "mambaformer_gateway_in_flight", factory: factory)
        reachableGauge = Meter(label: "mambaformer_gateway_router_reachable", factory: factory)
        routersReachable = Meter(label: "mambaformer_gateway_routers_reachable", factory: factory)
        routersConfigured = Meter(label: "mambaformer_gateway_routers_configured", factory: factory)
        emambaReplicas = Meter(label: "mambaformer_gateway_replicas", dimensions: [("pool", "emamba")], factory: factory)
        et5Replicas = Meter(label: "mambaformer_gateway_replicas", dimensions: [("pool", "et5")], factory: factory)
        inFlightGauge.set(0)
    }

    /// `client`: the authenticated client's name (a `client` label; none when auth is off or
    /// the request was refused before it named itself).
    func request(endpoint: String, status: Int, duration: Duration, client: String? = nil) {
        var dimensions = [("endpoint", endpoint), ("status", String(status))]
        if let client { dimensions.append(("client", client)) }
        Counter(label: "mambaformer_gateway_requests_total", dimensions: dimensions, factory: factory).increment()
        Metrics.Timer(label: "mambaformer_gateway_request_duration_seconds",
                      dimensions: [("endpoint", endpoint)], factory: factory).record(duration: duration)
    }

    func inFlight(_ n: Int) { inFlightGauge.set(n) }

    func malformedRequest(status: Int) {
        Counter(label: "mambaformer_gateway_malformed_requests_total",
                dimensions: [("status", String(status))], factory: factory).increment()
    }

    func readTimeout(answered: Bool) {
        Counter(label: "mambaformer_gateway_read_timeouts_total",
                dimensions: [("action", answered ? "408" : "close")], factory: factory).increment()
    }

    func firstSpan(after duration: Duration) {
        Metrics.Timer(label: "mambaformer_gateway_first_span_seconds", factory: factory).record(duration: duration)
    }

    func routerQueue(microseconds: UInt64) {
        Metrics.Timer(label: "mambaformer_gateway_router_queue_seconds", factory: factory)
            .recordNanoseconds(Int64(clamping: microseconds) * 1000)
    }

    func tokens(_ count: Int, expert: PoolKind) {
        guard count > 0 else { return }
        Counter(label: "mambaformer_gateway_tokens_total", dimensions: [("expert", expert.description)],
                factory: factory).increment(by: count)
    }

    func quotaRejected(client: String, limit: String) {
        Counter(label: "mambaformer_gateway_quota_rejections_total", dimensions: [("client", client), ("limit", limit)],
                factory: factory).increment()
    }

    func clientTokens(_ count: Int, client: String) {
        Counter(label: "mambaformer_gateway_client_tokens_total", dimensions: [("client", client)],
                factory: factory).increment(by: count)
    }

    func clientInFlight(_ n: Int, client: String) {
        Meter(label: "mambaformer_gateway_client_in_flight", dimensions: [("client", client)], factory: factory).set(n)
    }

    func auditLine(written: Bool) {
        Counter(label: "mambaformer_gateway_audit_lines_total", dimensions: [("result", written ? "written" : "failed")],
                factory: factory).increment()
    }

    func answer(outcome: String) {
        Counter(label: "mambaformer_gateway_answers_total", dimensions: [("outcome", outcome)],
                factory: factory).increment()
    }

    func spansDropped(_ count: Int, reason: String) {
        guard count > 0 else { return }
        Counter(label: "mambaformer_gateway_spans_dropped_total", dimensions: [("reason", reason)],
                factory: factory).increment(by: count)
    }

    func streamError(code: String) {
        Counter(label: "mambaformer_gateway_stream_errors_total", dimensions: [("code", code)],
                factory: factory).increment()
    }

    func backend(_ status: BackendStatus) {
        reachableGauge.set(status.routerReachable ? 1 : 0)
        routersReachable.set(status.routersReachable)
        routersConfigured.set(status.routersConfigured)
        emambaReplicas.set(status.emambaReplicas)
        et5Replicas.set(status.et5Replicas)
    }

    /// Prometheus text exposition format.
    public func render() -> String { registry.emitToString() }
}
