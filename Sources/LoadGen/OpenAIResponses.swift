import Foundation

/// A non-streaming `chat.completion`: what the load generator keeps of it.
struct ChatCompletion: Decodable {
    struct Choice: Decodable {
        struct Message: Decodable { var content: String? }
        var message: Message?
        var finishReason: String?
        enum CodingKeys: String, CodingKey { case message, finishReason = "finish_reason" }
    }
    var choices: [Choice]
    var usage: ChatUsage?

    /// OpenAI servers name no experts, so the routing split stays empty.
    var summary: AnswerSummary {
        let text = choices.first?.message?.content ?? ""
        return AnswerSummary(finishReason: choices.first?.finishReason ?? "unknown",
                             completionTokens: usage?.completionTokens ?? 0, promptTokens: usage?.promptTokens ?? 0,
                             tokensPerExpert: [:], text: text)
    }
}

struct ChatUsage: Decodable {
    var promptTokens: Int?
    var completionTokens: Int?
    enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", completionTokens = "completion_tokens" }
}

/// The chunks of a streaming chat completion, folded as they arrive.
struct ChatStream {
    enum Taken: Equatable {
        /// The chunk carried answer text (the client's next visible piece).
        case text
        /// A role-only, finish or usage chunk.
        case nothing
        /// `{"error": ...}` in the stream: the server gave up after starting.
        case error(String?)
        case unparsable(String)
    }

    private(set) var text = ""
    private(set) var textChunks = 0
    private(set) var finishReason: String?
    private(set) var usage: ChatUsage?

    private struct Chunk: Decodable {
        struct Choice: Decodable {
            struct Delta: Decodable { var content: String? }
            var delta: Delta?
            var finishReason: String?
            enum CodingKeys: String, CodingKey { case delta, finishReason = "finish_reason" }
        }
        var choices: [Choice]?
        var usage: ChatUsage?
        var error: ErrorObject?
    }

    mutating func take(_ data: Data) -> Taken {
        let chunk: Chunk
        do { chunk = try JSONDecoder().decode(Chunk.self, from: data) } catch { return .unparsable("\(error)") }
        if let error = chunk.error { return .error(error.name) }
        if let usage = chunk.usage { self.usage = usage }
        var hadText = false
        for choice in chunk.choices ?? [] {
            if let reason = choice.finishReason { finishReason = reason }
            if let piece = choice.delta?.content, !piece.isEmpty {
                text += piece
                hadText = true
            }
        }
        if hadText { textChunks += 1 }
        return hadText ? .text : .nothing
    }

    /// The answer at `[DONE]`. Without a usage chunk (a server ignoring `include_usage`) each
    /// text chunk counts as one token, which is how most servers stream.
    func summary() -> AnswerSummary {
        AnswerSummary(finishReason: finishReason ?? "unknown", completionTokens: usage?.completionTokens ?? textChunks,
                      promptTokens: usage?.promptTokens ?? 0, tokensPerExpert: [:], text: text)
    }

    /// The text chunks' arrival times with the answer's tokens spread evenly over them (the
    /// earlier chunks take the remainder), so per-token latency divides each gap by the tokens
    /// its chunk delivered on average.
    func spans(arrivals: [UInt64]) -> [(ns: UInt64, tokens: Int)] {
        guard !arrivals.isEmpty else { return [] }
        let total = max(arrivals.count, summary().completionTokens)
        let base = total / arrivals.count, extra = total % arrivals.count
        return arrivals.enumerated().map { i, ns in (ns, base + (i < extra ? 1 : 0)) }
    }
}
