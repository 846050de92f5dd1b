import Foundation

/// An answer between two spans, as the router tracks it and as in-process generation
/// (`LocalExperts`) replays it: the text so far, the tokens per pool, the previous span's
/// pool and how sure its expert was (what the gate reads), and the next span to ask for.
/// One type, so the cluster and its in-process reference cannot drift apart.
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

    public init() {}

    /// The request for the next span: self-contained (the prompt and the answer so far), so
    /// any replica of either pool can serve it.
    public func nextSpan(of request: AnswerRequest, prompt: String, spanTokens: UInt32) -> SpanRequest {
        SpanRequest(requestId: request.requestId, spanIndex: spans, prompt: prompt, answerSoFar: text,
                    maxNewTokens: min(spanTokens, request.maxNewTokens - min(tokens, request.maxNewTokens)),
                    sampling: request.sampling, sessionHint: request.requestId, answerTokensBefore: tokens)
    }

    /// A span's result, served by `pool`, joins the answer.
    public mutating func append(_ result: SpanResult, pool: PoolKind) {
        let n = UInt32(result.pieces.count)
        text += result.text
        tokens += n
        tokensByPool[pool, default: 0] += n
        spans += 1
        previousPool = pool
        previousConfidence = result.pieces.isEmpty ? nil
            : result.pieces.map { Foundation.exp($0.logprob) }.reduce(0, +) / Float(n)
        previousEntropy = result.pieces.isEmpty ? nil : result.pieces.map(\.entropy).reduce(0, +) / Float(n)
    }
}
