import Foundation
import Wire

/// The final object of `/v1/answer` (JSON body, SSE `done` event, `partial` of a 504/502).
public struct AnswerResponse: Codable, Sendable, Equatable {
    public var id: String
    public var answer: String
    /// "eos" | "length"; in a `partial`: "deadline" or "error".
    public var finishReason: String
    public var usage: Usage
    public var trace: [TraceEntry]
    public var timings: Timings

    public struct Usage: Codable, Sendable, Equatable {
        public var promptTokens: Int
        public var completionTokens: Int
        public var emambaTokens: Int
        public var et5Tokens: Int
        enum CodingKeys: String, CodingKey {
            case promptTokens = "prompt_tokens", completionTokens = "completion_tokens"
            case emambaTokens = "emamba_tokens", et5Tokens = "et5_tokens"
        }
    }

    /// One span of the answer: which expert (and replica) generated it, how many tokens, the
    /// gate's score when it decided, and the expert's compute time.
    public struct TraceEntry: Codable, Sendable, Equatable {
        public var span: Int
        public var expert: String
        public var replica: String
        public var tokens: Int
        public var gateScore: Double
        public var ms: Double
        enum CodingKeys: String, CodingKey {
            case span, expert, replica, tokens, gateScore = "gate_score", ms
        }
    }

    public struct Timings: Codable, Sendable, Equatable {
        /// Time the request waited in the router's queues (router-reported).
        public var queueMs: Double
        /// Wall time in the gateway, request received → answer complete.
        public var totalMs: Double
        enum CodingKeys: String, CodingKey { case queueMs = "queue_ms", totalMs = "total_ms" }
    }

    enum CodingKeys: String, CodingKey {
        case id, answer, finishReason = "finish_reason", usage, trace, timings
    }

    /// Share of generated tokens per expert, for one-line summaries.
    public var routingSummary: String {
        let total = max(1, usage.emambaTokens + usage.et5Tokens)
        let em = Double(usage.emambaTokens) * 100 / Double(total)
        let switches = zip(trace, trace.dropFirst()).filter { $0.expert != $1.expert }.count
        return String(format: "%@ · %d spans · emamba %d tok (%.0f%%) · et5 %d tok (%.0f%%) · %d switches · %.0f ms",
                      finishReason, trace.count, usage.emambaTokens, em, usage.et5Tokens, 100 - em,
                      switches, timings.totalMs)
    }
}

extension AnswerResponse.TraceEntry {
    init(_ span: SpanResult) {
        self.init(span: Int(span.spanIndex), expert: span.pool.description, replica: span.replicaId,
                  tokens: span.pieces.count, gateScore: rounded(Double(span.gateScore), places: 4),
                  ms: rounded(Double(span.computeUs) / 1000, places: 3))
    }
}

/// Short decimals in JSON (a Float gate score would print 17 digits); non-finite → 0, since
/// JSON cannot carry NaN and a bad score from upstream must not break the response.
func rounded(_ x: Double, places: Int) -> Double {
    guard x.isFinite else { return 0 }
    let scale = pow(10, Double(places))
    return (x * scale).rounded() / scale
}

/// The payload of an SSE `span` event: the span's text and its trace entry.
public struct SpanEvent: Codable, Sendable, Equatable {
    public var span: Int
    public var text: String
    public var expert: String
    public var replica: String
    public var tokens: Int
    public var gateScore: Double
    public var ms: Double
    enum CodingKeys: String, CodingKey {
        case span, text, expert, replica, tokens, gateScore = "gate_score", ms
    }

    init(_ span: SpanResult) {
        let t = AnswerResponse.TraceEntry(span)
        self.init(span: t.span, text: span.text, expert: t.expert, replica: t.replica, tokens: t.tokens,
                  gateScore: t.gateScore, ms: t.ms)
    }
    public init(span: Int, text: String, expert: String, replica: String, tokens: Int, gateScore: Double, ms: Double) {
        self.span = span; self.text = text; self.expert = expert; self.replica = replica
        self.tokens = tokens; self.gateScore = gateScore; self.ms = ms
    }
}

/// `{"error": {...}}`, the body of every error response and SSE `error` event.
public struct ErrorEnvelope: Codable, Sendable, Equatable {
    public struct Body: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
        public var requestId: String
        public var type: String
        public var partial: AnswerResponse?
        enum CodingKeys: String, CodingKey { case code, message, requestId = "request_id", type, partial }
    }
    public var error: Body

    init(_ error: GatewayError, requestId: String) {
        self.error = Body(code: error.code, message: error.message, requestId: requestId,
                          type: error.type, partial: error.partial)
    }
}

enum JSON {
    /// Compact, sorted keys: stable bytes for tests and caches.
    static func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value), let s = String(data: data, encoding: .utf8) else {
            // Only non-finite floats can fail here; our values are finite by construction.
            return #"{"error":{"code":"internal_error","message":"response encoding failed","request_id":"","type":"server_error"}}"#
        }
        return s
    }
}
