import Foundation

// The gateway's HTTP API as Swift values: what `/v1/answer` returns, its SSE events and its
// error body. The gateway encodes them; GatewayClient, `mambaformer ask` and the load
// generator decode them (openapi.yaml is the reference).

/// The final object of `/v1/answer` (JSON body, SSE `done` event, `partial` of a 504/502).
public struct AnswerResponse: Codable, Sendable, Equatable {
    public var id: String
    public var answer: String
    /// "eos" | "length"; in a `partial`: "deadline" or "error".
    public var finishReason: String
    public var usage: Usage
    public var trace: [TraceEntry]
    public var timings: Timings
    /// The sampling seed the answer was generated with (sampled requests only): the client's,
    /// or one the gateway drew. The same request with this seed gives the same answer.
    public var seed: UInt64?
    /// With `logprobs`: each token of the answer, its log-probability and the expert's most
    /// likely alternatives (`top_logprobs`).
    public var logprobs: [TokenLogprobEntry]?

    public struct Usage: Codable, Sendable, Equatable {
        public var promptTokens: Int
        public var completionTokens: Int
        public var emambaTokens: Int
        public var et5Tokens: Int
        enum CodingKeys: String, CodingKey {
            case promptTokens = "prompt_tokens", completionTokens = "completion_tokens"
            case emambaTokens = "emamba_tokens", et5Tokens = "et5_tokens"
        }
        public init(promptTokens: Int, completionTokens: Int, emambaTokens: Int, et5Tokens: Int) {
            self.promptTokens = promptTokens; self.completionTokens = completionTokens
            self.emambaTokens = emambaTokens; self.et5Tokens = et5Tokens
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
        public init(span: Int, expert: String, replica: String, tokens: Int, gateScore: Double, ms: Double) {
            self.span = span; self.expert = expert; self.replica = replica; self.tokens = tokens
            self.gateScore = gateScore; self.ms = ms
        }
    }

    public struct Timings: Codable, Sendable, Equatable {
        /// Time the request waited in the router's queues (router-reported).
        public var queueMs: Double
        /// Wall time in the gateway, request received → answer complete.
        public var totalMs: Double
        enum CodingKeys: String, CodingKey { case queueMs = "queue_ms", totalMs = "total_ms" }
        public init(queueMs: Double, totalMs: Double) { self.queueMs = queueMs; self.totalMs = totalMs }
    }

    enum CodingKeys: String, CodingKey {
        case id, answer, finishReason = "finish_reason", usage, trace, timings, seed, logprobs
    }

    public init(id: String, answer: String, finishReason: String, usage: Usage, trace: [TraceEntry], timings: Timings,
                seed: UInt64? = nil, logprobs: [TokenLogprobEntry]? = nil) {
        self.seed = seed; self.logprobs = logprobs
        self.id = id; self.answer = answer; self.finishReason = finishReason; self.usage = usage
        self.trace = trace; self.timings = timings
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

/// One generated token with `logprobs`: its text (as it joined the answer), its log-probability
/// under the expert that generated it, that expert, and its most likely alternatives there
/// (each decoded on its own; EMamba and ET5 have different vocabularies).
public struct TokenLogprobEntry: Codable, Sendable, Equatable {
    public var token: String
    public var logprob: Double
    public var expert: String
    public var topLogprobs: [Alternative]

    public struct Alternative: Codable, Sendable, Equatable {
        public var token: String
        public var logprob: Double
        public init(token: String, logprob: Double) { self.token = token; self.logprob = logprob }
    }
    enum CodingKeys: String, CodingKey { case token, logprob, expert, topLogprobs = "top_logprobs" }
    public init(token: String, logprob: Double, expert: String, topLogprobs: [Alternative]) {
        self.token = token; self.logprob = logprob; self.expert = expert; self.topLogprobs = topLogprobs
    }
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
    /// With `logprobs`: this span's tokens.
    public var logprobs: [TokenLogprobEntry]?
    enum CodingKeys: String, CodingKey {
        case span, text, expert, replica, tokens, gateScore = "gate_score", ms, logprobs
    }

    public init(span: Int, text: String, expert: String, replica: String, tokens: Int, gateScore: Double, ms: Double,
                logprobs: [TokenLogprobEntry]? = nil) {
        self.span = span; self.text = text; self.expert = expert; self.replica = replica
        self.tokens = tokens; self.gateScore = gateScore; self.ms = ms; self.logprobs = logprobs
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
        public init(code: String, message: String, requestId: String, type: String, partial: AnswerResponse? = nil) {
            self.code = code; self.message = message; self.requestId = requestId; self.type = type; self.partial = partial
        }
    }
    public var error: Body
    public init(error: Body) { self.error = error }
}

