import Foundation

/// What the expert node drives: one instance per process, used from one thread.
public protocol ExpertModel: AnyObject {
    var modelType: String { get }        // "t5" or "mamba"
    var vocabSize: Int { get }            // logits row length
    var eosTokenId: Int { get }
    var weightBytes: Int { get }
    /// A new, empty sequence. T5: `encoderInput` = prompt token ids (the encoder runs here),
    /// and the session starts with nothing consumed (feed decoder_start_token_id first).
    /// Mamba: `encoderInput` must be nil.
    func makeSession(encoderInput: [Int]?) throws -> ModelSession
    /// Consume `tokens` (decoder side for T5) and return the logits of the last one (vocabSize floats).
    func feed(_ session: ModelSession, tokens: [Int]) throws -> [Float]
    /// Consume `tokens` like `feed`, returning the logits of EVERY one, row-major
    /// [tokens.count × vocabSize] (teacher forcing; used by `mambaformer infer --logits all`
    /// and gate training). Has a default implementation (one `feed` per token).
    func feedAll(_ session: ModelSession, tokens: [Int]) throws -> [Float]
    /// Advance every session by exactly one token in ONE batched pass (GEMMs over the batch).
    /// Returns logits row-major [sessions.count × vocabSize].
    func step(_ sessions: [ModelSession], tokens: [Int]) throws -> [Float]
    /// Prefill several sessions at once: each consumes its `tokens[i]` (at least one) like
    /// `feed`, with the projections run as GEMMs over all their rows together rather than one
    /// session after another (batched prefill). Returns each session's last logits, row-major
    /// [sessions.count × vocabSize]. A refused call (a foreign or repeated session, an empty
    /// or invalid token list) changes no session. Has a default (one `feed` each).
    func feedMany(_ sessions: [ModelSession], tokens: [[Int]]) throws -> [Float]
    /// The decoder_start_token_id for T5 (0 for HF T5), nil for Mamba.
    var decoderStartTokenId: Int? { get }
}

extension ExpertModel {
    public func feedMany(_ sessions: [ModelSession], tokens: [[Int]]) throws -> [Float] {
        guard sessions.count == tokens.count else {
            throw EngineError.invalidArgument("feedMany got \(sessions.count) sessions but \(tokens.count) token lists")
        }
        guard Set(sessions.map(ObjectIdentifier.init)).count == sessions.count else {
            throw EngineError.invalidArgument("feedMany got the same session twice")
        }
        for seq in tokens {
            guard !seq.isEmpty else { throw EngineError.emptyInput("feedMany needs at least one token per session") }
            try validateTokens(seq, vocabSize: vocabSize)
        }
        var rows: [Float] = []
        rows.reserveCapacity(sessions.count * vocabSize)
        for (session, seq) in zip(sessions, tokens) { rows += try feed(session, tokens: seq) }
        return rows
    }

    public func feedAll(_ session: ModelSession, tokens: [Int]) throws -> [Float] {
        var rows: [Float] = []
        rows.reserveCapacity(tokens.count * vocabSize)
        for token in tokens { rows += try feed(session, tokens: [token]) }
        return rows
    }
}

public protocol ModelSession: AnyObject {
    var encoderInput: [Int]? { get }
    var consumed: [Int] { get }            // tokens consumed so far (decoder side for T5)
    /// Mark the current position as a restorable point (Mamba keeps a state snapshot; T5 no-op).
    func markSnapshot()
    /// Roll back to at most `count` consumed tokens; returns how many are kept
    /// (T5: exactly `count` by truncating the KV cache; Mamba: the largest snapshot ≤ count, else 0).
    func truncate(to count: Int) -> Int
    var memoryBytes: Int { get }           // for the node's LRU bound
}

/// Loads the Hugging Face checkpoint folder `directory` (config.json + model.safetensors),
/// dispatching on config.json's `model_type`; matrices are held as `weightFormat` says.
public func loadExpertModel(from directory: URL, weightFormat: WeightFormat = .auto) throws -> ExpertModel {
    let config = try ConfigFile(directory: directory)
    let modelType = try config.string("model_type")
    switch modelType {
    case "mamba":
        return try MambaModel(directory: directory, weightFormat: weightFormat)
    case "t5":
        return try T5Model(directory: directory, weightFormat: weightFormat)
    default:
        throw EngineError.unsupported("model_type '\(modelType)' in \(config.path) (supported: mamba, t5)")
    }
}

/// Checks every id is inside the vocabulary (before any memory is touched with it).
func validateTokens(_ tokens: [Int], vocabSize: Int) throws {
    for t in tokens where t < 0 || t >= vocabSize {
        throw EngineError.tokenOutOfRange(token: t, vocabSize: vocabSize)
    }
}
