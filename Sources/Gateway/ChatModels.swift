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
        enum CodingKeys: String, CodingKey { case index, message, finishReason = "finish_reason" }
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
        enum CodingKeys: String, CodingKey { case index, delta, finishReason = "finish_reason" }
        // OpenAI sends `"finish_reason": null` on every chunk but the last; clients expect the key.
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(delta, forKey: .delta)
            if let finishReason { try c.encode(finishReason, forKey: .finishReason) } else { try c.encodeNil(forKey: .finishReason) }
        }
    }
    struct Delta: Encodable {
        var role: String?
        var content: String?
    }
}

enum ChatFormat {
    /// OpenAI's vocabulary: "stop" for a natural end, "length" for the token limit.
    /// Ours → OpenAI's: "length" stays; "eos" and a stop string ("stop") are both "stop".
    static func finishReason(_ reason: String) -> String { reason == "length" ? "length" : "stop" }
}
