import Foundation
import Histogram
import NIOConcurrencyHelpers

/// Aggregates outcomes as they complete: HDR histograms (microseconds, 3 significant digits,
/// up to one hour), counts by class, tokens per expert, and a per-second series. Thread-safe:
/// clients record concurrently; the progress line reads snapshots.
public final class LoadStats: @unchecked Sendable {
    static let highestMicros: UInt64 = 3_600_000_000

    /// One second of the run, by completion time.
    struct Second {
        var sent = 0, ok = 0, errors = 0, tokens = 0
        var latency = Histogram<UInt32>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000,
                                        numberOfSignificantValueDigits: .two)    // milliseconds
    }

    struct State {
        var sent = 0, ok = 0
        var errors: [ErrorClass: Int] = [:]
        var errorCodes: [String: Int] = [:]
        var errorSamples: [String] = []
        var finishReasons: [String: Int] = [:]
        var tokensPerExpert: [String: Int] = [:]
        var spansPerExpert: [String: Int] = [:]
        var completionTokens = 0, promptTokens = 0, switches = 0
        var latency = LoadStats.histogram()
        var service = LoadStats.histogram()
        var ttfs = LoadStats.histogram()
        var perToken = LoadStats.histogram()
        var seconds: [Second] = []
        var lastEndNs: UInt64 = 0
    }

    let startNs: UInt64
    private let state: NIOLockedValueBox<State>

    public init(startNs: UInt64 = monotonicNs()) {
        self.startNs = startNs
        state = NIOLockedValueBox(State())
    }

    static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: highestMicros, numberOfSignificantValueDigits: .three)
    }

    static func micros(_ ns: UInt64) -> UInt64 { min(highestMicros, max(1, (ns + 500) / 1000)) }

    private func secondIndex(_ ns: UInt64) -> Int { Int((ns &- min(ns, startNs)) / 1_000_000_000) }

    /// A request is about to go out.
    public func recordSent(at ns: UInt64 = monotonicNs()) {
        state.withLockedValue { s in
            s.sent += 1
            let i = secondIndex(ns)
            Self.grow(&s.seconds, to: i)
            s.seconds[i].sent += 1
        }
    }

    /// A request ended. Latency histograms hold successful requests only: a fast 500 is
    /// not a fast answer (errors are counted, and their classes reported, separately).
    public func record(_ outcome: RequestOutcome) {
        state.withLockedValue { s in
            let i = secondIndex(outcome.endNs)
            Self.grow(&s.seconds, to: i)
            s.lastEndNs = max(s.lastEndNs, outcome.endNs)
            switch outcome.result {
            case .ok(let answer):
                s.ok += 1
                s.seconds[i].ok += 1
                s.seconds[i].tokens += answer.completionTokens
                s.completionTokens += answer.completionTokens
                s.promptTokens += answer.promptTokens
                s.switches += answer.switches
                s.finishReasons[answer.finishReason, default: 0] += 1
                for (expert, n) in answer.tokensPerExpert { s.tokensPerExpert[expert, default: 0] += n }
                for (expert, n) in answer.spansPerExpert { s.spansPerExpert[expert, default: 0] += n }
                _ = s.latency.record(Self.micros(outcome.latencyNs))
                _ = s.service.record(Self.micros(outcome.serviceNs))
                _ = s.seconds[i].latency.record(min(3_600_000, max(1, outcome.latencyNs / 1_000_000)))
                if let ttfs = outcome.ttfsNs { _ = s.ttfs.record(Self.micros(ttfs)) }
                // Per-token latency: the gap between consecutive span events spread over the
                // tokens of the later span (what a reader of the stream waits per token).
                for (prev, next) in zip(outcome.spans, outcome.spans.dropFirst()) where next.tokens > 0 {
                    let gap = (next.ns &- min(prev.ns, next.ns)) / UInt64(next.tokens)
                    _ = s.perToken.record(Self.micros(gap), count: UInt64(next.tokens))
                }
            case .failed(let kind, let code, let detail):
                s.errors[kind, default: 0] += 1
                s.seconds[i].errors += 1
                if let code { s.errorCodes["\(kind.rawValue)/\(code)", default: 0] += 1 }
                if s.errorSamples.count < 10 { s.errorSamples.append("\(kind.rawValue): \(detail)") }
            }
        }
    }

    private static func grow(_ seconds: inout [Second], to index: Int) {
        while seconds.count <= index { seconds.append(Second()) }
    }

    /// What the progress line shows.
    public struct Progress: Sendable {
        public var elapsed: Double
        public var sent: Int, done: Int, ok: Int, errors: Int
        /// Completions per second over the last full second.
        public var currentRate: Double
        public var p50Ms: Double, p99Ms: Double
    }

    public func progress(now: UInt64 = monotonicNs()) -> Progress {
        state.withLockedValue { s in
            let errors = s.errors.values.reduce(0, +)
            let current = secondIndex(now)
            let last = current - 1
            let rate = last >= 0 && last < s.seconds.count ? Double(s.seconds[last].ok + s.seconds[last].errors) : 0
            return Progress(elapsed: Double(now &- min(now, startNs)) / 1e9, sent: s.sent, done: s.ok + errors, ok: s.ok,
                            errors: errors, currentRate: rate,
                            p50Ms: s.latency.totalCount > 0 ? Double(s.latency.valueAtPercentile(50)) / 1000 : 0,
                            p99Ms: s.latency.totalCount > 0 ? Double(s.latency.valueAtPercentile(99)) / 1000 : 0)
        }
    }

    /// The final report; its duration runs from the start to the last completion (`endNs` if none).
    public func report(plan: LoadPlan, workload: String, startedAt: Date, endNs: UInt64 = monotonicNs()) -> LoadReport {
        state.withLockedValue { s in
            let wall = max(1e-9, Double((s.lastEndNs > 0 ? s.lastEndNs : max(endNs, startNs)) - startNs) / 1e9)
            let errorTotal = s.errors.values.reduce(0, +)
            var byClass: [String: Int] = [:]
            for kind in ErrorClass.allCases { byClass[kind.rawValue] = s.errors[kind] ?? 0 }
            let totalExpertTokens = s.tokensPerExpert.values.reduce(0, +)
            var share: [String: Double] = [:]
            for (expert, n) in s.tokensPerExpert { share[expert] = totalExpertTokens > 0 ? Double(n) / Double(totalExpertTokens) : 0 }
            let series = s.seconds.enumerated().map { i, sec in
                LoadReport.SecondPoint(t: i, sent: sec.sent, ok: sec.ok, errors: sec.errors, tokens: sec.tokens,
                                       p50Ms: sec.latency.totalCount > 0 ? Double(sec.latency.valueAtPercentile(50)) : nil,
                                       p99Ms: sec.latency.totalCount > 0 ? Double(sec.latency.valueAtPercentile(99)) : nil,
                                       maxMs: sec.latency.totalCount > 0 ? Double(sec.latency.max) : nil)
            }
            return LoadReport(
                version: LoadReport.currentVersion,
                target: plan.target.absoluteString, mode: plan.mode.name, concurrency: plan.mode.concurrency,
                schedule: plan.mode.schedule?.description, stream: plan.stream, api: plan.api.rawValue, seed: plan.seed,
                maxTokens: plan.maxTokens.description, costWeight: plan.costWeight?.description,
                longShare: plan.longShare, workload: workload,
                startedAt: startedAt, durationSeconds: wall,
                sent: s.sent, ok: s.ok, errors: errorTotal, errorsByClass: byClass, errorCodes: s.errorCodes,
                errorSamples: s.errorSamples,
                throughput: .init(requestsPerSecond: Double(s.ok + errorTotal) / wall, okPerSecond: Double(s.ok) / wall,
                                  tokensPerSecond: Double(s.completionTokens) / wall),
                latencyMs: LoadReport.Percentiles(s.latency), serviceTimeMs: LoadReport.Percentiles(s.service),
                ttfsMs: s.ttfs.totalCount > 0 ? LoadReport.Percentiles(s.ttfs) : nil,
                perTokenMs: s.perToken.totalCount > 0 ? LoadReport.Percentiles(s.perToken) : nil,
                tokens: .init(completion: s.completionTokens, prompt: s.promptTokens, perExpert: s.tokensPerExpert,
                              share: share, spansPerExpert: s.spansPerExpert, switches: s.switches),
                finishReasons: s.finishReasons,
                latencyCDF: LoadReport.cdf(s.latency),
                timeseries: series)
        }
    }
}
