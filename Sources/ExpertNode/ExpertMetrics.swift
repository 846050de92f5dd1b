import Metrics
import Wire

/// What an expert replica reports through swift-metrics (scraped at `/metrics` when the
/// `expert` command is given `--metrics`). Labels: the pool and the replica id, so one
/// Prometheus job can scrape every replica of a host.
struct ExpertMetrics {
    let spans: Counter
    let spansFailed: Counter
    let tokens: Counter
    let promptTokens: Counter
    /// Prompt tokens served from the session cache instead of recomputed.
    let cachedPrefixTokens: Counter
    let droppedFrames: Counter
    let reconnects: Counter
    let activeSequences: Gauge
    let waitingSpans: Gauge
    /// Sequences advanced by one batched step: shows whether continuous batching happens.
    let batchSize: Recorder
    /// The largest batch so far, beside the capacity: a replica shared by several routers
    /// must never exceed it (its credits and its own queue see to it).
    let largestBatch: Gauge
    let capacity: Gauge
    private let largest = LargestSoFar()
    let stepDuration: Timer
    let spanCompute: Timer

    init(pool: PoolKind, replicaId: String, capacity: Int) {
        let labels = [("pool", "\(pool)"), ("replica", replicaId)]
        spans = Counter(label: "mambaformer_expert_spans_total", dimensions: labels)
        spansFailed = Counter(label: "mambaformer_expert_spans_failed_total", dimensions: labels)
        tokens = Counter(label: "mambaformer_expert_tokens_total", dimensions: labels)
        promptTokens = Counter(label: "mambaformer_expert_prompt_tokens_total", dimensions: labels)
        cachedPrefixTokens = Counter(label: "mambaformer_expert_cached_prefix_tokens_total", dimensions: labels)
        droppedFrames = Counter(label: "mambaformer_expert_frames_dropped_total", dimensions: labels)
        reconnects = Counter(label: "mambaformer_expert_reconnects_total", dimensions: labels)
        activeSequences = Gauge(label: "mambaformer_expert_active_sequences", dimensions: labels)
        waitingSpans = Gauge(label: "mambaformer_expert_waiting_spans", dimensions: labels)
        batchSize = Recorder(label: "mambaformer_expert_batch_size", dimensions: labels, aggregate: true)
        largestBatch = Gauge(label: "mambaformer_expert_batch_size_max", dimensions: labels)
        self.capacity = Gauge(label: "mambaformer_expert_capacity", dimensions: labels)
        self.capacity.record(capacity)
        stepDuration = Timer(label: "mambaformer_expert_step_seconds", dimensions: labels)
        spanCompute = Timer(label: "mambaformer_expert_span_compute_seconds", dimensions: labels)
    }

    func recordSpan(_ result: SpanResult) {
        spans.increment()
        tokens.increment(by: result.pieces.count)
        promptTokens.increment(by: Int(result.promptTokens))
        cachedPrefixTokens.increment(by: Int(result.cachedPrefixTokens))
        spanCompute.recordMicroseconds(result.computeUs)
    }

    func recordStep(batch: Int, nanoseconds: UInt64) {
        batchSize.record(batch)
        if largest.raise(to: batch) { largestBatch.record(batch) }
        stepDuration.recordNanoseconds(nanoseconds)
    }

    func recordOccupancy(active: Int, waiting: Int) {
        activeSequences.record(active)
        waitingSpans.record(waiting)
    }
}

/// A running maximum (the loop thread writes, nobody else).
private final class LargestSoFar: @unchecked Sendable {
    private var value = 0
    /// Whether `candidate` is a new maximum.
    func raise(to candidate: Int) -> Bool {
        guard candidate > value else { return false }
        value = candidate
        return true
    }
}
