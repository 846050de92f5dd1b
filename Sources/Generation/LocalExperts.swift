import Engine
import Foundation
import Tokenizers
import Vocabulary

/// Both experts of a checkpoint in this process, generating span by span exactly as the
/// cluster does (the same scheduler, prompt format and detokenizer; no sockets). Used by
/// `mambaformer eval` and by the integration tests as the reference a cluster answer must equal.
public final class LocalExperts {
    public struct Span: Equatable { public var pool: PoolKind; public var text: String; public var tokens: Int; public var finish: FinishReason }
    public struct Answer { public var text: String; public var spans: [Span]; public var finish: FinishReason }

    private var schedulers: [PoolKind: SpanScheduler] = [:]

    public init(checkpoint: MambaformerCheckpoint, ignoreEOS: Bool = false, weightFormat: WeightFormat = .auto) throws {
        for (pool, folder) in [(PoolKind.emamba, checkpoint.emamba), (.et5, checkpoint.et5)] {
            let model = try loadExpertModel(from: folder, weightFormat: weightFormat)
            let tokenizer = try Tokenizer.load(from: folder)
            schedulers[pool] = SpanScheduler(model: model, tokenizer: tokenizer, format: PromptFormat(), pool: pool,
                                             replicaId: "local-\(pool)", cache: SessionCache(maxEntries: 4, maxBytes: 1 << 30),
                                             ignoreEOS: ignoreEOS, limits: .unbounded)
        }
    }

    /// What a router knows before a span (as RouterCore tracks it), for gates run in-process.
    public struct RouteContext {
        public var spanIndex: Int
        public var previous: PoolKind?
        public var answerSoFar: String
        /// Mean probability and entropy of the previous span's tokens (nil before the first span).
        public var previousConfidence: Float?
        public var previousEntropy: Float?
    }

    /// Generates an answer; `route` picks the expert for each span from (span index, previous expert).
    public func answer(_ request: AnswerRequest, spanTokens: UInt32 = 16,
                       route: (_ spanIndex: Int, _ previous: PoolKind?) -> PoolKind) throws -> Answer {
        try answer(request, spanTokens: spanTokens, decide: { route($0.spanIndex, $0.previous) })
    }

    /// Generates an answer; `decide` picks the expert for each span from what a router would know.
    public func answer(_ request: AnswerRequest, spanTokens: UInt32 = 16,
                       decide: (RouteContext) -> PoolKind) throws -> Answer {
        var progress = AnswerProgress()
        var spans: [Span] = []
        let prompt = request.canonicalPrompt
        while progress.tokens < request.maxNewTokens {
            let pool = decide(RouteContext(spanIndex: Int(progress.spans), previous: progress.previousPool, answerSoFar: progress.text,
                                           previousConfidence: progress.previousConfidence, previousEntropy: progress.previousEntropy))
            guard let scheduler = schedulers[pool] else { throw WireErrorBody(code: .badRequest, message: "no \(pool) expert", retryable: false) }
            let span = progress.nextSpan(of: request, prompt: prompt, spanTokens: spanTokens)
            var outcome = scheduler.admit(span, deadline: 0, now: 0)
            while outcome == nil {
                outcome = scheduler.step(now: 0).first
            }
            switch outcome! {
            case .failure(_, let error): throw error
            case .result(let result):
                progress.append(result, pool: pool)
                spans.append(Span(pool: pool, text: result.text, tokens: result.pieces.count, finish: result.finish))
                if result.finish == .eos { return Answer(text: progress.text, spans: spans, finish: .eos) }
                if result.pieces.isEmpty { return Answer(text: progress.text, spans: spans, finish: .none) }
            }
        }
        return Answer(text: progress.text, spans: spans, finish: .length)
    }

    /// The first span of every request at once on one expert (batched prefill, then batched
    /// decode steps until each ends): what one expert process does with a burst, without the
    /// sockets. Returns the tokens generated. The reference `cluster-bench batching` holds a
    /// real expert process to.
    public func burst(_ pool: PoolKind, requests: [AnswerRequest], spanTokens: UInt32) throws -> Int {
        guard let scheduler = schedulers[pool] else { throw WireErrorBody(code: .badRequest, message: "no \(pool) expert", retryable: false) }
        let spans = requests.map { AnswerProgress().nextSpan(of: $0, prompt: $0.canonicalPrompt, spanTokens: spanTokens) }
        var outcomes = scheduler.admit(spans.map { ($0, UInt64(0)) }, now: 0)
        while scheduler.activeCount > 0 { outcomes += scheduler.step(now: 0) }
        var generated = 0
        for outcome in outcomes {
            switch outcome {
            case .failure(_, let error): throw error
            case .result(let result): generated += result.pieces.count
            }
        }
        return generated
    }
}
