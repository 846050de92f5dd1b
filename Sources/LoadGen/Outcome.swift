import Foundation

/// Why a request failed. Every request ends either OK or in exactly one of these, so
/// `sent == ok + errors` holds by construction.
public enum ErrorClass: String, Codable, CaseIterable, Sendable, Comparable {
    /// 4xx other than 429 (bad request, auth, validation).
    case http4xx = "http_4xx"
    /// 429: the gateway's concurrency limit or the cluster's backpressure.
    case http429 = "http_429"
    /// 5xx (502 incomplete answer, 503 unavailable, 504 deadline, 500).
    case http5xx = "http_5xx"
    /// No complete response within `--timeout` of sending.
    case timeout
    /// No TCP connection (refused, unreachable, connect timeout).
    case connect
    /// A response that does not follow HTTP or the gateway's API: the connection closed
    /// mid-response, an unparsable body, a stream without `done`, an unexpected status.
    case `protocol`
    /// A streaming answer that started (200) and then ended with the gateway's `error` event.
    case streamError = "stream_error"

    public static func < (a: ErrorClass, b: ErrorClass) -> Bool { a.rawValue < b.rawValue }

    static func forStatus(_ status: Int) -> ErrorClass {
        switch status {
        case 429: return .http429
        case 400..<500: return .http4xx
        case 500..<600: return .http5xx
        default: return .protocol
        }
    }
}

/// What the load generator keeps of a successful answer.
public struct AnswerSummary: Decodable, Sendable, Equatable {
    public var finishReason: String
    public var completionTokens: Int
    public var promptTokens: Int
    /// Generated tokens per expert name, from the routing trace.
    public var tokensPerExpert: [String: Int]
    public var spansPerExpert: [String: Int]
    public var switches: Int
    /// The answer text (kept so runs can be compared answer by answer, e.g. with and
    /// without a fault; never logged).
    public var text: String

    struct Usage: Decodable {
        var promptTokens: Int?; var completionTokens: Int?
        enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", completionTokens = "completion_tokens" }
    }
    struct Span: Decodable { var expert: String; var tokens: Int }
    enum CodingKeys: String, CodingKey { case finishReason = "finish_reason", usage, trace, answer }

    public init(finishReason: String, completionTokens: Int, promptTokens: Int = 0,
                tokensPerExpert: [String: Int], spansPerExpert: [String: Int] = [:], switches: Int = 0, text: String = "") {
        self.text = text
        self.finishReason = finishReason; self.completionTokens = completionTokens; self.promptTokens = promptTokens
        self.tokensPerExpert = tokensPerExpert; self.spansPerExpert = spansPerExpert; self.switches = switches
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        finishReason = try c.decode(String.self, forKey: .finishReason)
        let usage = try c.decode(Usage.self, forKey: .usage)
        text = try c.decodeIfPresent(String.self, forKey: .answer) ?? ""
        let trace = try c.decode([Span].self, forKey: .trace)
        var tokens: [String: Int] = [:], spans: [String: Int] = [:]
        for span in trace {
            tokens[span.expert, default: 0] += span.tokens
            spans[span.expert, default: 0] += 1
        }
        tokensPerExpert = tokens
        spansPerExpert = spans
        switches = zip(trace, trace.dropFirst()).filter { $0.expert != $1.expert }.count
        completionTokens = usage.completionTokens ?? trace.reduce(0) { $0 + $1.tokens }
        promptTokens = usage.promptTokens ?? 0
    }
}

/// One request as the load generator saw it. Times are monotonic nanoseconds.
public struct RequestOutcome: Sendable {
    public enum Result: Sendable {
        case ok(AnswerSummary)
        /// `code` is the gateway's error code when the body had one (e.g. "overloaded").
        case failed(ErrorClass, code: String?, detail: String)
    }
    /// When the schedule meant to send it (open loop) or when it was sent (closed loop).
    /// Latency counts from here, so a late send is charged to the system, not hidden
    /// (coordinated omission).
    public var intendedNs: UInt64
    /// When the connection attempt actually began.
    public var sentNs: UInt64
    public var endNs: UInt64
    /// Streaming: arrival of each `span` event and its token count.
    public var spans: [(ns: UInt64, tokens: Int)]
    public var result: Result

    public init(intendedNs: UInt64, sentNs: UInt64, endNs: UInt64, spans: [(ns: UInt64, tokens: Int)] = [], result: Result) {
        self.intendedNs = intendedNs; self.sentNs = sentNs; self.endNs = endNs; self.spans = spans; self.result = result
    }

    /// End-to-end latency, from the intended send time.
    public var latencyNs: UInt64 { endNs &- min(intendedNs, endNs) }
    /// Service time, from the actual send (what a naive client would report).
    public var serviceNs: UInt64 { endNs &- min(sentNs, endNs) }
    /// Time to the first span event, from the intended send time (streaming only).
    public var ttfsNs: UInt64? { spans.first.map { $0.ns &- min(intendedNs, $0.ns) } }
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC on Linux).
@inline(__always) public func monotonicNs() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
