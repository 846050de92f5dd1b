import Foundation
import GatewayClient

/// OpenAI chat-completions response shapes (the subset clients read), plus the extra
/// `mambaformer` field with the routing (OpenAI clients ignore unknown fields).
struct ChatCompletion: Encodable {
    var id: String
    var object = "chat.completion"
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: ChatUsage
    var mambaformer: ChatRouting

    struct Choice: Encodable {
        var index = 0
        var message: Message
        var finishReason: String
        /// With `logprobs`; OpenAI sends `"logprobs": null` otherwise.
        var logprobs: ChatLogprobs?
        enum CodingKeys: String, CodingKey { case index, message, finishReason = "finish_reason", logprobs }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(message, forKey: .message)
            try c.encode(finishReason, forKey: .finishReason)
            if let logprobs { try c.encode(logprobs, forKey: .logprobs) } else { try c.encodeNil(forKey: .logprobs) }
        }
    }
    struct Message: Encodable {
        var role = "assistant"
        var content: String
    }
}

struct ChatUsage: Encodable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int
    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }
    init(_ usage: AnswerResponse.Usage) {
        promptTokens = usage.promptTokens
        completionTokens = usage.completionTokens
        totalTokens = usage.promptTokens + usage.completionTokens
    }
}

/// Routing information for chat responses: the same trace, usage split and timings as `/v1/answer`.
struct ChatRouting: Encodable {
    var requestId: String
    var finishReason: String
    var usage: AnswerResponse.Usage
    var trace: [AnswerResponse.TraceEntry]
    var timings: AnswerResponse.Timings
    var seed: UInt64?
    enum CodingKeys: String, CodingKey {
        case requestId = "request_id", finishReason = "finish_reason", usage, trace, timings, seed
    }
    init(_ answer: AnswerResponse) {
        requestId = answer.id; finishReason = answer.finishReason; usage = answer.usage
        trace = answer.trace; timings = answer.timings; seed = answer.seed
    }
}

/// One `data:` chunk of a streamed chat completion.
struct ChatChunk: Encodable {
    var id: String
    var object = "chat.completion.chunk"
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: ChatUsage?
    /// Per content chunk: the span's trace entry; on the final chunk: the whole routing.
    var mambaformer: Routing?

    enum Routing: Encodable {
        case span(AnswerResponse.TraceEntry)
        case final(ChatRouting)
        func encode(to encoder: Encoder) throws {
            switch self {
            case .span(let entry): try entry.encode(to: encoder)
            case .final(let routing): try routing.encode(to: encoder)
            }
        }
    }

    struct Choice: Encodable {
        var index = 0
        var delta: Delta
        var finishReason: String?
        /// With `logprobs`: this chunk's tokens.
        var logprobs: ChatLogprobs?
        enum CodingKeys: String, CodingKey { case index, delta, finishReason = "finish_reason", logprobs }
        // OpenAI sends `"finish_reason": null` on every chunk but the last; clients expect the key.
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(delta, forKey: .delta)
            if let finishReason { try c.encode(finishReason, forKey: .finishReason) } else { try c.encodeNil(forKey: .finishReason) }
            if let logprobs { try c.encode(logprobs, forKey: .logprobs) } else { try c.encodeNil(forKey: .logprobs) }
        }
    }
    struct Delta: Encodable {
        var role: String?
        var content: String?
    }
}

/// OpenAI's `choices[].logprobs`: `{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}`.
struct ChatLogprobs: Encodable {
    var content: [Item]
    struct Item: Encodable {
        var token: String
        var logprob: Double
        var bytes: [UInt8]
        var topLogprobs: [Top]
        enum CodingKeys: String, CodingKey { case token, logprob, bytes, topLogprobs = "top_logprobs" }
    }
    struct Top: Encodable {
        var token: String
        var logprob: Double
        var bytes: [UInt8]
    }
    init(_ entries: [TokenLogprobEntry]) {
        content = entries.map { e in
            Item(token: e.token, logprob: e.logprob, bytes: Array(e.token.utf8),
                 topLogprobs: e.topLogprobs.map { Top(token: $0.token, logprob: $0.logprob, bytes: Array($0.token.utf8)) })
        }
    }
    enum CodingKeys: String, CodingKey { case content, refusal }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(content, forKey: .content)
        try c.encodeNil(forKey: .refusal)
    }
}

enum ChatFormat {
    /// OpenAI's vocabulary: "stop" for a natural end, "length" for the token limit.
    /// Ours → OpenAI's: "length" stays; "eos" and a stop string ("stop") are both "stop".
    static func finishReason(_ reason: String) -> String { reason == "length" ? "length" : "stop" }
}
