import Dispatch
import Metrics
import Wire

/// What the router reports through swift-metrics (scraped at `/metrics` when the `router`
/// command is given `--metrics`). Counters follow `RouterStats`, which the pure core keeps;
/// the span timings are taken here, at the sockets, with a monotonic clock.
final class RouterMetrics {
    private let requests = Counter(label: "mambaformer_router_requests_total")
    private let requestsDone = Counter(label: "mambaformer_router_requests_done_total")
    private let requestsFailed = Counter(label: "mambaformer_router_requests_failed_total")
    private let overloaded = Counter(label: "mambaformer_router_overloaded_total")
    /// Answers another router started, continued here after it died.
    private let resumed = Counter(label: "mambaformer_router_answers_resumed_total")
    private let fallbacks = Counter(label: "mambaformer_router_fallbacks_total")
    private let retries = Counter(label: "mambaformer_router_span_retries_total")
    private let deadlineMisses = Counter(label: "mambaformer_router_deadline_misses_total")
    private let lateResults = Counter(label: "mambaformer_router_late_results_total")
    let framesDropped = Counter(label: "mambaformer_router_frames_dropped_total")
    private let promptsTooLong = Counter(label: "mambaformer_router_prompts_too_long_total")
    private let poisonSpans = Counter(label: "mambaformer_router_poison_spans_total")
    private let orphansCancelled = Counter(label: "mambaformer_router_orphans_cancelled_total")
    private let replicaIdsRefused = Counter(label: "mambaformer_router_replica_ids_refused_total")
    private let peersRevoked = Counter(label: "mambaformer_router_peers_revoked_total")
    private var spans: [PoolKind: Counter] = [:]
    private var tokens: [PoolKind: Counter] = [:]
    private var replicas: [PoolKind: Gauge] = [:]
    private var queueDepth: [PoolKind: Gauge] = [:]
    private var roundTrip: [PoolKind: Timer] = [:]
    private var overhead: [PoolKind: Timer] = [:]
    private let activeRequests = Gauge(label: "mambaformer_router_active_requests")
    private var last = RouterStats()
    /// Send time of every span in flight, to time it when its result comes back.
    private var sentAt: [SpanTimingKey: (pool: PoolKind, ns: UInt64)] = [:]

    struct SpanTimingKey: Hashable { var requestId: String; var spanIndex: UInt32 }

    init() {
        for pool in [PoolKind.emamba, .et5] {
            let label = [("pool", "\(pool)")]
            spans[pool] = Counter(label: "mambaformer_router_spans_total", dimensions: label)
            tokens[pool] = Counter(label: "mambaformer_router_tokens_total", dimensions: label)
            replicas[pool] = Gauge(label: "mambaformer_router_replicas", dimensions: label)
            queueDepth[pool] = Gauge(label: "mambaformer_router_queue_depth", dimensions: label)
            roundTrip[pool] = Timer(label: "mambaformer_router_span_roundtrip_seconds", dimensions: label)
            overhead[pool] = Timer(label: "mambaformer_router_dispatch_overhead_seconds", dimensions: label)
        }
    }

    func spanSent(_ span: SpanRequest, pool: PoolKind) {
        sentAt[SpanTimingKey(requestId: span.requestId, spanIndex: span.spanIndex)] = (pool, DispatchTime.now().uptimeNanoseconds)
    }

    /// Round trip as the router sees it, and the part of it that is not the expert's compute
    /// (wire, queues, the router itself): the dispatch overhead.
    func spanReturned(_ result: SpanResult) {
        guard let sent = sentAt.removeValue(forKey: SpanTimingKey(requestId: result.requestId, spanIndex: result.spanIndex)) else { return }
        let elapsed = DispatchTime.now().uptimeNanoseconds - sent.ns
        roundTrip[sent.pool]?.recordNanoseconds(elapsed)
        overhead[sent.pool]?.recordNanoseconds(elapsed - min(elapsed, result.computeUs * 1000))
    }

    /// Brings the counters up to the core's statistics and samples the gauges.
    func update(stats: RouterStats, liveReplicas: (PoolKind) -> Int, queueDepth depth: (PoolKind) -> Int, active: Int) {
        requests.increment(by: stats.requests - last.requests)
        requestsDone.increment(by: stats.requestsDone - last.requestsDone)
        requestsFailed.increment(by: stats.requestsFailed - last.requestsFailed)
        overloaded.increment(by: stats.overloaded - last.overloaded)
        resumed.increment(by: stats.resumed - last.resumed)
        fallbacks.increment(by: stats.fallbacks - last.fallbacks)
        retries.increment(by: stats.spanRetries - last.spanRetries)
        deadlineMisses.increment(by: stats.deadlineMisses - last.deadlineMisses)
        lateResults.increment(by: stats.lateResults - last.lateResults)
        promptsTooLong.increment(by: stats.promptsTooLong - last.promptsTooLong)
        poisonSpans.increment(by: stats.poisonSpans - last.poisonSpans)
        orphansCancelled.increment(by: stats.orphansCancelled - last.orphansCancelled)
        replicaIdsRefused.increment(by: stats.replicaIdsRefused - last.replicaIdsRefused)
        peersRevoked.increment(by: stats.peersRevoked - last.peersRevoked)
        for pool in [PoolKind.emamba, .et5] {
            spans[pool]?.increment(by: stats.spans[pool, default: 0] - last.spans[pool, default: 0])
            tokens[pool]?.increment(by: stats.tokens[pool, default: 0] - last.tokens[pool, default: 0])
            replicas[pool]?.record(liveReplicas(pool))
            queueDepth[pool]?.record(depth(pool))
        }
        activeRequests.record(active)
        // Spans that never come back (replica died, request cancelled) must not pile up.
        if sentAt.count > 4 * 1024 { sentAt.removeAll(keepingCapacity: true) }
        last = stats
    }
}
