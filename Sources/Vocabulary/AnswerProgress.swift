import Foundation

/// An answer between two spans, as the router tracks it and as in-process generation
/// (`LocalExperts`) replays it: the text so far, the tokens per pool, the previous span's
/// pool and how sure its expert was (what the gate reads), and the next span to ask for.
/// One type, so the cluster and its in-process reference cannot drift apart. The gateway keeps
/// one too, from the spans it receives, and hands it to another router (`AnswerRequest.resume`,
/// 1.4) when the first dies mid-answer: the new router continues exactly where the old one was.
public struct AnswerProgress: Sendable, Equatable {
    public private(set) var text = ""
    /// Answer tokens generated so far (in the serving experts' tokens).
    public private(set) var tokens: UInt32 = 0
    public private(set) var tokensByPool: [PoolKind: UInt32] = [:]
    /// Spans appended so far; also the next span's index.
    public private(set) var spans: UInt32 = 0
    public private(set) var previousPool: PoolKind?
    /// Mean probability of the previous span's tokens (nil before the first span or after an
    /// empty one).
    public private(set) var previousConfidence: Float?
    /// Mean entropy of the previous span's next-token distributions (nil likewise).
    public private(set) var previousEntropy: Float?
    /// The prompt in the first serving expert's tokens (0 before the first span).
    public private(set) var promptTokens: UInt32 = 0

    public init() {}

    /// The most text one token may release in a resumed answer (`problem(of:)`).
    public static let maxBytesPerToken = 64

    /// An answer part-way, as read from the wire (`Resume`); check it with `problem(of:)`.
    public init(text: String, tokens: UInt32, tokensByPool: [PoolKind: UInt32], spans: UInt32, previousPool: PoolKind?,
                previousConfidence: Float?, previousEntropy: Float?, promptTokens: UInt32) {
        self.text = text; self.tokens = tokens; self.tokensByPool = tokensByPool.filter { $0.value > 0 }; self.spans = spans
        self.previousPool = previousPool; self.previousConfidence = previousConfidence
        self.previousEntropy = previousEntropy; self.promptTokens = promptTokens
    }

    /// Why a resumed answer cannot continue `request` (nil when it can): a peer sends it, so
    /// every figure is checked against what a real answer of this request could hold.
    /// `maxTextBytes` bounds the text (an expert re-reads it with the prompt).
    public func problem(of request: AnswerRequest, maxTextBytes: Int) -> String? {
        if tokens >= request.maxNewTokens { return "it already holds \(tokens) of max_new_tokens \(request.maxNewTokens) tokens" }
        if spans == 0 || spans > tokens { return "its \(spans) spans do not fit its \(tokens) tokens" }
        let byPool = (tokensByPool[.emamba] ?? 0, tokensByPool[.et5] ?? 0)
        if byPool.0 > tokens || byPool.1 > tokens || byPool.0 + byPool.1 != tokens {
            return "its tokens per pool (\(byPool.0) + \(byPool.1)) do not add up to \(tokens)"
        }
        if previousPool != .emamba && previousPool != .et5 { return "it names no previous pool" }
        if previousConfidence == nil || previousEntropy == nil { return "it lacks the previous span's scores" }
        if let c = previousConfidence, !(c.isFinite && c >= 0 && c <= 1) { return "its previous confidence is not a probability" }
        if let e = previousEntropy, !(e.isFinite && e >= 0) { return "its previous entropy is not finite" }
        // A token releases a few bytes of text (the longest vocabulary entries are some tens):
        // more text than its tokens could have made is not an answer so far but a second prompt.
        let limit = min(maxTextBytes, Int(tokens) * Self.maxBytesPerToken)
        if text.utf8.count > limit { return "its text is \(text.utf8.count) bytes; the limit for \(tokens) tokens is \(limit)" }
        return nil
    }

    /// The request for the next span: self-contained (the prompt and the answer so far), so
    /// any replica of either pool can serve it.
    public func nextSpan(of request: AnswerRequest, prompt: String, spanTokens: UInt32) -> SpanRequest {
        var span = SpanRequest(requestId: request.requestId, spanIndex: spans, prompt: prompt, answerSoFar: text,
                               maxNewTokens: min(spanTokens, request.maxNewTokens - min(tokens, request.maxNewTokens)),
                               sampling: request.sampling, sessionHint: request.requestId, answerTokensBefore: tokens)
        span.topLogprobs = min(request.topLogprobs, TopLogprobs.max)
        return span
    }

    /// A span's result, served by `pool`, joins the answer.
    public mutating func append(_ result: SpanResult, pool: PoolKind) {
        let n = UInt32(result.pieces.count)
        text += result.text
        tokens += n
        tokensByPool[pool, default: 0] += n
        if spans == 0 { promptTokens = result.promptTokens }
        spans += 1
        previousPool = pool
        previousConfidence = result.pieces.isEmpty ? nil
            : result.pieces.map { Foundation.exp($0.logprob) }.reduce(0, +) / Float(n)
        previousEntropy = result.pieces.isEmpty ? nil : result.pieces.map(\.entropy).reduce(0, +) / Float(n)
    }
}
