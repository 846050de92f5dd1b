import CSupport
import Engine
import Foundation
import Tokenizers
import Vocabulary

/// What a finished (or failed) span produces for the router.
public enum SpanOutcome: Equatable {
    case result(SpanResult)
    case failure(requestId: String, WireErrorBody)
}

/// Continuous batching for one expert process. Every active sequence advances by one token
/// per `step()`, in one batched model call; a new span joins at the next step (after its
/// prefill) and a finished span leaves at once, so short and long answers share the batch.
public final class SpanScheduler {
    final class Sequence {
        let span: SpanRequest
        let session: ModelSession
        var sampler: Sampler
        var logits: [Float]
        var detokenizer: StreamDecoder
        var pieces: [Piece] = []
        var text = ""
        var pendingToken: Int?
        let cachedPrefix: Int
        let promptTokens: Int
        let startNs: UInt64
        /// Monotonic instant the span must end by (0: none).
        let deadline: UInt64
        var stripLeadingSpace: Bool

        init(span: SpanRequest, session: ModelSession, sampler: Sampler, logits: [Float],
             detokenizer: StreamDecoder, cachedPrefix: Int, promptTokens: Int, startNs: UInt64,
             deadline: UInt64, stripLeadingSpace: Bool) {
            self.span = span; self.session = session; self.sampler = sampler; self.logits = logits
            self.detokenizer = detokenizer; self.cachedPrefix = cachedPrefix; self.promptTokens = promptTokens
            self.startNs = startNs; self.deadline = deadline; self.stripLeadingSpace = stripLeadingSpace
        }
    }

    let model: ExpertModel
    let tokenizer: Tokenizer
    let format: PromptFormat
    let pool: PoolKind
    let replicaId: String
    let cache: SessionCache
    /// A span may run this many tokens past its budget to complete a UTF-8 character.
    let maxOverrun = 4
    private(set) var active: [Sequence] = []

    /// Tokens the sampler may not pick (EOS when `ignoreEOS`).
    let suppressed: Set<Int>

    /// What one span may ask this expert to read (`[limits]`).
    public struct Limits: Sendable {
        public var maxPromptBytes = 32 * 1024
        public var maxPromptTokens = 2048
        /// The answer so far, in this expert's tokens: twice the router's `max_new_tokens`
        /// ceiling, because an answer another expert wrote may re-tokenize longer here.
        public var maxAnswerTokens = 2 * Int(ProtocolLimits.maxNewTokens) + 16
        /// Its bytes, checked before tokenizing (generated text: 64 bytes a token is generous).
        public var maxAnswerBytes: Int { 64 * maxAnswerTokens }
        /// No limits (in-process evaluation and gate training read whatever the data holds).
        /// (2³¹ each: sums and the byte bound stay far from overflowing.)
        public init(maxPromptBytes: Int = 32 * 1024, maxPromptTokens: Int = 2048,
                    maxAnswerTokens: Int = 2 * Int(ProtocolLimits.maxNewTokens) + 16) {
            self.maxPromptBytes = maxPromptBytes; self.maxPromptTokens = maxPromptTokens
            self.maxAnswerTokens = maxAnswerTokens
        }
        public static let unbounded = Limits(maxPromptBytes: Int(Int32.max), maxPromptTokens: Int(Int32.max),
                                      maxAnswerTokens: Int(Int32.max))
    }
    public let limits: Limits

    public init(model: ExpertModel, tokenizer: Tokenizer, format: PromptFormat, pool: PoolKind, replicaId: String,
         cache: SessionCache, ignoreEOS: Bool = false, limits: Limits = Limits()) {
        self.model = model; self.tokenizer = tokenizer; self.format = format
        self.pool = pool; self.replicaId = replicaId; self.cache = cache
        self.limits = limits
        suppressed = ignoreEOS ? [model.eosTokenId] : []
    }

    /// Why `span` is more than this expert reads, nil when it fits. Bytes are checked before
    /// tokenizing (they bound the tokenizer's work), tokens after. The prompt is the client's:
    /// over its limit, `prompt_too_long`. The answer so far is the cluster's own text: over
    /// its (generous) bound something upstream is wrong, a non-retryable internal error.
    public func tooLong(_ span: SpanRequest, _ inputs: PromptFormat.Inputs? = nil) -> WireErrorBody? {
        func refuse(_ what: String) -> WireErrorBody {
            WireErrorBody(code: .badRequest, message: "\(what) (replica \(replicaId); limits.max_prompt_bytes / limits.max_prompt_tokens)",
                          retryable: false, reason: WireErrorBody.Reason.promptTooLong)
        }
        func answerTooLong(_ what: String) -> WireErrorBody {
            WireErrorBody(code: .internalError, message: "\(what): more than replica \(replicaId) reads", retryable: false)
        }
        guard let inputs else {
            let bytes = span.prompt.utf8.count
            if bytes > limits.maxPromptBytes { return refuse("the prompt is \(bytes) bytes; the limit is \(limits.maxPromptBytes)") }
            let answerBytes = span.answerSoFar.utf8.count
            if answerBytes > limits.maxAnswerBytes { return answerTooLong("the answer so far is \(answerBytes) bytes") }
            return nil
        }
        if let encoder = inputs.encoder {
            if encoder.count > limits.maxPromptTokens {
                return refuse("the prompt is \(encoder.count) \(pool) tokens; the limit is \(limits.maxPromptTokens)")
            }
            if inputs.decoder.count > limits.maxAnswerTokens {
                return answerTooLong("the answer so far is \(inputs.decoder.count) \(pool) tokens")
            }
        } else if inputs.decoder.count > limits.maxPromptTokens {
            // A causal model reads prompt and answer as one sequence: count the prompt on its
            // own only when the whole could be over (short inputs pay nothing extra).
            let prompt = (try? tokenizer.encode(span.prompt, addSpecialTokens: true).ids.count) ?? inputs.decoder.count
            if prompt > limits.maxPromptTokens {
                return refuse("the prompt is \(prompt) \(pool) tokens; the limit is \(limits.maxPromptTokens)")
            }
            if inputs.decoder.count > limits.maxPromptTokens + limits.maxAnswerTokens {
                return answerTooLong("prompt and answer so far are \(inputs.decoder.count) \(pool) tokens")
            }
        }
        return nil
    }

    public var activeCount: Int { active.count }

    /// When memory should be given back (monotonic ms), after a long prompt.
    private var trimDueMs: UInt64?
    /// Prompts longer than this leave the allocator holding freed memory (tokenizer arrays,
    /// encoder outputs, attention caches): give it back once the replica is idle.
    static let trimAfterPromptTokens = 256
    /// Wait this long after a long prompt: the router's cancel, which releases the finished
    /// answer's cached session, arrives just after the last span.
    static let trimDelayMs: UInt64 = 500

    /// When idle after a long prompt, returns freed heap memory to the system (glibc keeps
    /// freed chunks below its adaptive mmap threshold, up to 32 MiB, otherwise), so that a
    /// replica's RSS comes back to its steady state after a maximum-size prompt.
    public func trimIfIdle() {
        guard active.isEmpty, let due = trimDueMs, MonotonicClock.nowMs() >= due else { return }
        trimDueMs = nil
        _ = mf_malloc_trim()
    }
    public func isActive(_ requestId: String) -> Bool { active.contains { $0.span.requestId == requestId } }

    /// Prefills a new span (reusing the cached session's longest common prefix) and samples
    /// its first token. Returns an outcome when the span ends at once (EOS, error). `deadline`
    /// and `now` are monotonic milliseconds (0: no deadline), converted from the span's time
    /// left when it arrived.
    public func admit(_ span: SpanRequest, deadline: UInt64, now: UInt64) -> SpanOutcome? {
        admit([(span, deadline)], now: now).first
    }

    /// Admits several spans with one batched prefill (`ExpertModel.feedMany`: the projections
    /// run over all their new tokens at once) instead of one prefill after another. Returns
    /// the outcomes of the spans that end at once (refused, EOS, error), in order.
    public func admit(_ spans: [(span: SpanRequest, deadline: UInt64)], now: UInt64) -> [SpanOutcome] {
        struct Prepared {
            let span: SpanRequest, deadline: UInt64, inputs: PromptFormat.Inputs
            let session: ModelSession, kept: Int, start: UInt64
        }
        var outcomes: [SpanOutcome] = []
        var prepared: [Prepared] = []
        for (span, deadline) in spans {
            let start = DispatchTime.now().uptimeNanoseconds
            if let refusal = tooLong(span) { outcomes.append(.failure(requestId: span.requestId, refusal)); continue }
            do {
                var inputs = try format.inputs(for: span, model: model, tokenizer: tokenizer)
                if (inputs.encoder?.count ?? inputs.decoder.count) > Self.trimAfterPromptTokens {
                    trimDueMs = MonotonicClock.nowMs() + Self.trimDelayMs
                }
                if let refusal = tooLong(span, inputs) { outcomes.append(.failure(requestId: span.requestId, refusal)); continue }
                guard !inputs.decoder.isEmpty else {
                    outcomes.append(.failure(requestId: span.requestId,
                                             WireErrorBody(code: .badRequest, message: "empty input", retryable: false)))
                    continue
                }
                var session: ModelSession
                var kept = 0
                if let (cached, pending, written) = cache.take(span.sessionHint), cached.encoderInput == inputs.encoder {
                    session = cached
                    // This expert wrote the answer so far: its own tokens are the input, when they
                    // spell the same text. Re-tokenizing the text can split it otherwise (a model
                    // need not generate canonical tokens), which would cost the whole state.
                    // First, by the record: the answer is exactly what this session produced (no
                    // decoding needed, and right even where the text does not round-trip: bytes
                    // of a character split across tokens, the first span's stripped space).
                    let own = cached.consumed + pending
                    if written == SessionCache.Written(prompt: span.prompt, answer: span.answerSoFar) {
                        inputs.decoder = own
                    } else if own.count <= 2 * inputs.decoder.count + 16, own != inputs.decoder,
                       zip(own, inputs.decoder).prefix(while: { $0 == $1 }).count < cached.consumed.count,
                       let mine = try? tokenizer.decode(own), let theirs = try? tokenizer.decode(inputs.decoder), mine == theirs {
                        inputs.decoder = own
                    }
                    let common = zip(cached.consumed, inputs.decoder).prefix { $0 == $1 }.count
                    // Re-feed at least the last token: its logits start the span.
                    kept = session.truncate(to: min(common, inputs.decoder.count - 1))
                } else {
                    session = try model.makeSession(encoderInput: inputs.encoder)
                }
                prepared.append(Prepared(span: span, deadline: deadline, inputs: inputs, session: session, kept: kept, start: start))
            } catch {
                outcomes.append(.failure(requestId: span.requestId,
                                         WireErrorBody(code: .internalError, message: "\(error)", retryable: false)))
            }
        }
        guard !prepared.isEmpty else { return outcomes }
        let rows: [Float]
        do {
            rows = try model.feedMany(prepared.map(\.session), tokens: prepared.map { Array($0.inputs.decoder[$0.kept...]) })
        } catch {
            return outcomes + prepared.map {
                .failure(requestId: $0.span.requestId, WireErrorBody(code: .internalError, message: "\(error)", retryable: false))
            }
        }
        let v = model.vocabSize
        for (i, p) in prepared.enumerated() {
            let s = p.span.sampling
            // The wire's 0 means "not set" (proto3): top_p 0 is off (1), not "keep one token",
            // which would turn every sampled request without top_p into greedy decoding.
            let sampler = Sampler(temperature: s.temperature, topK: Int(s.topK), topP: s.topP > 0 ? s.topP : 1,
                                  seed: s.seed &+ UInt64(p.span.answerTokensBefore), repetitionPenalty: s.repetitionPenalty)
            let detokenizer: StreamDecoder
            do { detokenizer = try tokenizer.makeStreamDecoder(context: p.inputs.decoder) } catch {
                outcomes.append(.failure(requestId: p.span.requestId,
                                         WireErrorBody(code: .internalError, message: "\(error)", retryable: false)))
                continue
            }
            let sequence = Sequence(
                span: p.span, session: p.session, sampler: sampler, logits: Array(rows[(i * v)..<((i + 1) * v)]),
                detokenizer: detokenizer,
                cachedPrefix: p.kept, promptTokens: p.inputs.decoder.count + (p.inputs.encoder?.count ?? 0), startNs: p.start,
                deadline: p.deadline, stripLeadingSpace: p.span.answerSoFar.isEmpty)
            active.append(sequence)
            if let outcome = advance(sequence, now: now) { outcomes.append(outcome) }
        }
        return outcomes
    }

    /// One batched decode step over every sequence with a token to consume.
    public func step(now: UInt64) -> [SpanOutcome] {
        let ready = active.filter { $0.pendingToken != nil }
        guard !ready.isEmpty else { return [] }
        let rows: [Float]
        do {
            rows = try model.step(ready.map(\.session), tokens: ready.map { $0.pendingToken! })
        } catch {
            // A failed batch fails its spans; the router may retry them elsewhere.
            return ready.compactMap { seq in
                remove(seq, keepSession: false)
                return .failure(requestId: seq.span.requestId, WireErrorBody(code: .internalError, message: "\(error)", retryable: true))
            }
        }
        var outcomes: [SpanOutcome] = []
        let v = model.vocabSize
        for (i, seq) in ready.enumerated() {
            seq.pendingToken = nil
            seq.logits = Array(rows[(i * v)..<((i + 1) * v)])
            if let outcome = advance(seq, now: now) { outcomes.append(outcome) }
        }
        return outcomes
    }

    /// Drops a sequence the router cancelled; its session is forgotten too. Returns whether
    /// a sequence was running.
    @discardableResult
    public func cancel(requestId: String) -> Bool {
        let running = active.filter { $0.span.requestId == requestId }
        for seq in running { remove(seq, keepSession: false) }
        cache.remove(requestId)
        return !running.isEmpty
    }

    /// Samples the next token of `seq` from its logits; ends the span when due.
    private func advance(_ seq: Sequence, now: UInt64) -> SpanOutcome? {
        if seq.deadline > 0, now >= seq.deadline {
            return finish(seq, .deadline)
        }
        let history = seq.session.consumed
        let pick = seq.logits.withUnsafeBufferPointer {
            seq.sampler.next(logits: $0, history: history, suppress: suppressed, alternatives: Int(seq.span.topLogprobs))
        }
        if pick.token == model.eosTokenId { return finish(seq, .eos) }
        var piece: String
        do { piece = try seq.detokenizer.push(pick.token) } catch {
            remove(seq, keepSession: false)
            return .failure(requestId: seq.span.requestId, WireErrorBody(code: .internalError, message: "\(error)", retryable: false))
        }
        if seq.stripLeadingSpace, !piece.isEmpty {
            piece = String(piece.drop { $0.isWhitespace })
            if !piece.isEmpty { seq.stripLeadingSpace = false }
        }
        // Alternatives are decoded on their own (the chosen token's text is in context).
        let top = pick.top.map { alternative in
            TokenLogprob(tokenId: UInt32(alternative.token), text: (try? tokenizer.decode([alternative.token])) ?? "",
                         logprob: alternative.logprob)
        }
        seq.pieces.append(Piece(text: piece, tokenId: UInt32(pick.token), logprob: pick.logprob, entropy: pick.entropy, top: top))
        seq.text += piece
        let budget = Int(seq.span.maxNewTokens)
        if seq.pieces.count >= budget && (seq.detokenizer.isClean || seq.pieces.count >= budget + maxOverrun) {
            return finish(seq, .none)
        }
        seq.pendingToken = pick.token
        return nil
    }

    private func finish(_ seq: Sequence, _ reason: FinishReason) -> SpanOutcome {
        remove(seq, keepSession: reason == .none)
        let result = SpanResult(
            requestId: seq.span.requestId, spanIndex: seq.span.spanIndex, pieces: seq.pieces, text: seq.text,
            finish: reason, computeUs: (DispatchTime.now().uptimeNanoseconds - seq.startNs) / 1000,
            cachedPrefixTokens: UInt32(seq.cachedPrefix), promptTokens: UInt32(seq.promptTokens),
            replicaId: replicaId, pool: pool)
        return .result(result)
    }

    private func remove(_ seq: Sequence, keepSession: Bool) {
        active.removeAll { $0 === seq }
        if keepSession {
            // The state now covers every consumed token: a restorable point for the next span.
            seq.session.markSnapshot()
            // The last token was sampled, never fed: the next span starts by feeding it.
            cache.put(seq.span.sessionHint, seq.session, pending: seq.pendingToken == nil ? seq.pieces.suffix(1).map { Int($0.tokenId) } : [],
                      written: SessionCache.Written(prompt: seq.span.prompt, answer: seq.span.answerSoFar + seq.text))
        } else {
            cache.remove(seq.span.sessionHint)
        }
    }
}
