import Foundation
import Histogram

/// The result of a run, as written to `report.json`. Times in milliseconds, rates per second.
/// Invariant: `sent == ok + errors` and `errors == errorsByClass.values.sum()`.
public struct LoadReport: Codable, Sendable, Equatable {
    public static let currentVersion = 1

    public var version: Int
    public var target: String
    /// "open" or "closed".
    public var mode: String
    public var concurrency: Int?
    public var schedule: String?
    public var stream: Bool
    /// "native" (`/v1/answer`) or "openai" (`/v1/chat/completions`); nil in reports from
    /// before the choice existed (native).
    public var api: String? = nil
    /// The OpenAI API's model name.
    public var model: String? = nil
    public var seed: UInt64
    public var maxTokens: String
    public var costWeight: String?
    public var longShare: Double?
    public var workload: String
    public var startedAt: Date
    /// First send to last completion.
    public var durationSeconds: Double

    public var sent: Int
    public var ok: Int
    public var errors: Int
    /// Every class of `ErrorClass`, zero included, so a reader can rely on the keys.
    public var errorsByClass: [String: Int]
    /// "class/gateway code" → count, e.g. "http_429/overloaded".
    public var errorCodes: [String: Int]
    /// The first few error details, for diagnosis.
    public var errorSamples: [String]

    public var throughput: Throughput
    /// End-to-end latency of successful requests, from the intended send time.
    public var latencyMs: Percentiles
    /// The same from the actual send (differs from `latencyMs` when the open loop fell behind).
    public var serviceTimeMs: Percentiles
    /// Time to the first span event (streaming runs); with the OpenAI API, to the first chunk
    /// with text (time to first token).
    public var ttfsMs: Percentiles?
    /// Inter-span gap per token (streaming runs).
    public var perTokenMs: Percentiles?
    public var tokens: Tokens
    public var finishReasons: [String: Int]
    /// (latency ms, fraction of requests at or below) points of the latency distribution.
    public var latencyCDF: [CDFPoint]
    public var timeseries: [SecondPoint]
    /// Live replicas per pool each second, from the gateway's `/readyz` (nil when it did not say):
    /// what an autoscaler did during the run.
    public var replicas: [ReplicaPoint]? = nil

    public struct Throughput: Codable, Sendable, Equatable {
        /// Completed requests (ok + errors) per second.
        public var requestsPerSecond: Double
        public var okPerSecond: Double
        /// Generated tokens of successful answers per second.
        public var tokensPerSecond: Double
        enum CodingKeys: String, CodingKey {
            case requestsPerSecond = "requests_per_s", okPerSecond = "ok_per_s", tokensPerSecond = "tokens_per_s"
        }
    }

    public struct Percentiles: Codable, Sendable, Equatable {
        public var count: Int
        public var min: Double, mean: Double
        public var p50: Double, p90: Double, p99: Double, p999: Double
        public var max: Double

        public init(count: Int, min: Double, mean: Double, p50: Double, p90: Double, p99: Double, p999: Double, max: Double) {
            self.count = count; self.min = min; self.mean = mean
            self.p50 = p50; self.p90 = p90; self.p99 = p99; self.p999 = p999; self.max = max
        }

        /// From a microsecond histogram, in milliseconds (3 decimals). Empty → zeros.
        init(_ h: Histogram<UInt64>) {
            func ms(_ us: UInt64) -> Double { Double(us) / 1000 }   // whole µs: 3 decimals of ms
            guard h.totalCount > 0 else {
                self.init(count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0)
                return
            }
            // HDR reports the highest value equivalent to a bucket; the max is clamped so that
            // p999 ≤ max always holds in the file.
            let top = h.max
            self.init(count: Int(h.totalCount), min: ms(h.min), mean: (h.mean).rounded() / 1000,
                      p50: ms(Swift.min(top, h.valueAtPercentile(50))), p90: ms(Swift.min(top, h.valueAtPercentile(90))),
                      p99: ms(Swift.min(top, h.valueAtPercentile(99))), p999: ms(Swift.min(top, h.valueAtPercentile(99.9))),
                      max: ms(top))
        }
    }

    public struct Tokens: Codable, Sendable, Equatable {
        public var completion: Int
        public var prompt: Int
        /// Generated tokens per expert (the routing split).
        public var perExpert: [String: Int]
        /// Share of generated tokens per expert, in [0, 1].
        public var share: [String: Double]
        public var spansPerExpert: [String: Int]
        /// Expert switches between consecutive spans, summed over answers.
        public var switches: Int
        enum CodingKeys: String, CodingKey {
            case completion, prompt, perExpert = "per_expert", share, spansPerExpert = "spans_per_expert", switches
        }
    }

    public struct CDFPoint: Codable, Sendable, Equatable {
        public var ms: Double
        public var fraction: Double
    }

    public struct ReplicaPoint: Codable, Sendable, Equatable {
        public var t: Double
        public var emamba: Int, et5: Int
    }

    public struct SecondPoint: Codable, Sendable, Equatable {
        public var t: Int
        public var sent: Int, ok: Int, errors: Int, tokens: Int
        public var p50Ms: Double?, p99Ms: Double?, maxMs: Double?
        enum CodingKeys: String, CodingKey {
            case t, sent, ok, errors, tokens, p50Ms = "p50_ms", p99Ms = "p99_ms", maxMs = "max_ms"
        }
    }

    enum CodingKeys: String, CodingKey {
        case version, target, mode, concurrency, schedule, stream, api, model, seed
        case maxTokens = "max_tokens", costWeight = "cost_weight", longShare = "long_share", workload
        case startedAt = "started_at", durationSeconds = "duration_s"
        case sent, ok, errors, errorsByClass = "errors_by_class", errorCodes = "error_codes", errorSamples = "error_samples"
        case throughput, latencyMs = "latency_ms", serviceTimeMs = "service_time_ms", ttfsMs = "ttfs_ms"
        case perTokenMs = "per_token_ms", tokens, finishReasons = "finish_reasons", latencyCDF = "latency_cdf", timeseries, replicas
    }

    /// The CDF at HDR's percentile ticks (dense in the tail, where it matters).
    static func cdf(_ h: Histogram<UInt64>) -> [CDFPoint] {
        guard h.totalCount > 0 else { return [] }
        var points: [CDFPoint] = []
        for v in h.percentiles(ticksPerHalfDistance: 5) {
            let ms = Double(Swift.min(v.value, h.max)) / 1000
            let fraction = (v.percentileLevelIteratedTo / 100 * 1e6).rounded() / 1e6
            if let last = points.last, last.ms == ms, last.fraction >= fraction { continue }
            points.append(CDFPoint(ms: ms, fraction: Swift.min(1, fraction)))
            if points.count >= 400 { break }
        }
        if points.last?.fraction != 1 { points.append(CDFPoint(ms: Double(h.max) / 1000, fraction: 1)) }
        return points
    }

    // MARK: files

    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }

    public func json() throws -> Data { try Self.encoder().encode(self) }

    public static func load(_ url: URL) throws -> LoadReport {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw LoadGenError.unreadableReport(path: url.path, reason: "missing or unreadable")
        }
        do { return try decoder().decode(LoadReport.self, from: data) } catch {
            throw LoadGenError.unreadableReport(path: url.path, reason: "not a loadgen report.json (\(error))")
        }
    }
}

/// Writes `report.json` and `report.html` into a folder (created if needed).
public enum ReportWriter {
    @discardableResult
    public static func write(_ report: LoadReport, to folder: URL) throws -> (json: URL, html: URL) {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw LoadGenError.cannotWriteReport(path: folder.path, reason: "\(error.localizedDescription)")
        }
        let json = folder.appendingPathComponent("report.json")
        let html = folder.appendingPathComponent("report.html")
        do {
            try report.json().write(to: json, options: .atomic)
            try Data(HTMLReport.render(report).utf8).write(to: html, options: .atomic)
        } catch {
            throw LoadGenError.cannotWriteReport(path: folder.path, reason: "\(error.localizedDescription)")
        }
        return (json, html)
    }
}
