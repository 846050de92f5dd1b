import Foundation
import Kernels

/// A Hugging Face `T5ForConditionalGeneration` checkpoint (T5, T5 v1.1, Flan-T5) as an
/// expert: the encoder runs once per session (`makeSession`), the decoder advances with a
/// KV cache (`feed`, `feedAll`, `step`).
public final class T5Model: ExpertModel {
    public let config: T5Config
    public let directory: URL
    let weights: SafeTensorsFile
    /// `shared.weight` [vocab, d_model]: the token embedding of both stacks.
    let embedding: Weight
    /// [vocab, d_model]: `shared.weight` when tied, else `lm_head.weight`.
    let lmHead: Weight
    let encoder: T5Encoder
    let decoder: T5Decoder
    let workspace = T5Workspace()
    public let weightBytes: Int

    public var modelType: String { "t5" }
    public var vocabSize: Int { config.vocabSize }
    public var eosTokenId: Int { config.eosTokenId }
    public var decoderStartTokenId: Int? { config.decoderStartTokenId }

    /// Loads `directory`/config.json and `directory`/model.safetensors, holding the matrices
    /// as `weightFormat` says (default: as stored).
    public init(directory: URL, weightFormat: WeightFormat = .auto) throws {
        self.directory = directory
        config = try T5Config(directory: directory)
        let file = try SafeTensorsFile(contentsOf: directory.appendingPathComponent("model.safetensors"),
                                       matrixFormat: weightFormat)
        weights = file
        let path = weights.path
        try Self.refuseExtraBlocks(weights, config: config)

        let shape = [config.vocabSize, config.dModel]
        let embeddingName = ["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
            .first(where: weights.has) ?? "shared.weight"
        embedding = try weights.matrix(embeddingName, shape: shape)
        if weights.has("lm_head.weight") {
            // Untied (Flan-T5), or a tied file that also stores the copy: transformers 5
            // uses the stored head in both cases.
            lmHead = try weights.matrix("lm_head.weight", shape: shape)
        } else if config.tieWordEmbeddings {
            lmHead = embedding
        } else {
            throw EngineError.missingTensor(path: path, name: "lm_head.weight (config.json has tie_word_embeddings: false)")
        }
        encoder = try T5Encoder(weights, config: config)
        decoder = try T5Decoder(weights, config: config)
        weightBytes = file.heldBytes
    }

    /// A file with more blocks than config.json declares is a mismatched checkpoint, not
    /// something to silently ignore.
    private static func refuseExtraBlocks(_ file: SafeTensorsFile, config: T5Config) throws {
        for name in file.tensorNames {
            for (stack, count, key) in [("encoder", config.numLayers, "num_layers"),
                                        ("decoder", config.numDecoderLayers, "num_decoder_layers")] {
                let prefix = "\(stack).block."
                guard name.hasPrefix(prefix) else { continue }
                let index = name.dropFirst(prefix.count).prefix(while: \.isNumber)
                if let i = Int(index), i >= count {
                    throw EngineError.invalidConfig(
                        path: file.path, key: key,
                        reason: "is \(count) but the weights have tensor '\(name)' (does config.json belong to this model.safetensors?)")
                }
            }
        }
    }

    /// The encoder's last hidden states [tokens.count × d_model], row-major.
    public func encode(_ tokens: [Int]) throws -> [Float] {
        guard !tokens.isEmpty else { throw EngineError.emptyInput("T5 encoder input ids") }
        try validateTokens(tokens, vocabSize: vocabSize)
        return encoder(tokens, embedding: embedding, workspace: workspace)
    }

    public func makeSession(encoderInput: [Int]?) throws -> ModelSession {
        guard let encoderInput else {
            throw EngineError.invalidArgument("a T5 session needs encoder input ids (the prompt)")
        }
        let output = try encode(encoderInput)
        let cache = decoder.makeCache(encoderOutput: output, encoderLength: encoderInput.count)
        workspace.shrink(keepingFloats: steadyScratchFloats)
        return T5Session(owner: self, encoderInput: encoderInput, cache: cache)
    }

    public func feed(_ session: ModelSession, tokens: [Int]) throws -> [Float] {
        defer { if tokens.count > 1 { workspace.shrink(keepingFloats: steadyScratchFloats) } }
        return try run([session], [tokens], allRows: false)
    }

    /// Scratch kept between calls: what decode steps of a batch of 64 need (the largest area
    /// is d_ff or the vocabulary per row), so steady decoding never maps or frees pages.
    var steadyScratchFloats: Int { 64 * max(config.dFF, config.dModel * 4, vocabSize) }

    public func feedAll(_ session: ModelSession, tokens: [Int]) throws -> [Float] {
        try run([session], [tokens], allRows: true)
    }

    public func step(_ sessions: [ModelSession], tokens: [Int]) throws -> [Float] {
        guard sessions.count == tokens.count else {
            throw EngineError.invalidArgument("step: \(sessions.count) sessions but \(tokens.count) tokens")
        }
        return try run(sessions, tokens.map { [$0] }, allRows: false)
    }

    /// The decoder over every session's new tokens in one pass (each session's encoder ran
    /// when it was made).
    public func feedMany(_ sessions: [ModelSession], tokens: [[Int]]) throws -> [Float] {
        guard sessions.count == tokens.count else {
            throw EngineError.invalidArgument("feedMany: \(sessions.count) sessions but \(tokens.count) token lists")
        }
        guard !sessions.isEmpty else { return [] }
        defer { if tokens.contains(where: { $0.count > 1 }) { workspace.shrink(keepingFloats: steadyScratchFloats) } }
        return try run(sessions, tokens, allRows: false)
    }

    /// Validates everything first (so a refused call leaves every session unchanged), runs
    /// the decoder once over all sessions' new tokens, and returns the logits of each
    /// session's last token, or of every token when `allRows`.
    private func run(_ sessions: [ModelSession], _ tokens: [[Int]], allRows: Bool) throws -> [Float] {
        guard !sessions.isEmpty else { throw EngineError.emptyInput("no sessions to advance") }
        var seen = Set<ObjectIdentifier>()
        var t5Sessions: [T5Session] = []
        for (session, seq) in zip(sessions, tokens) {
            guard let s = session as? T5Session, s.owner === self else {
                throw EngineError.invalidArgument("a session that was not made by this T5 model")
            }
            guard seen.insert(ObjectIdentifier(s)).inserted else {
                throw EngineError.invalidArgument("the same session twice in one step")
            }
            guard !seq.isEmpty else { throw EngineError.emptyInput("no decoder tokens to feed") }
            try validateTokens(seq, vocabSize: vocabSize)
            t5Sessions.append(s)
        }

        var outputRows: [Int] = []
        var row = 0
        for seq in tokens {
            if allRows { outputRows += row..<(row + seq.count) } else { outputRows.append(row + seq.count - 1) }
            row += seq.count
        }
        let d = config.dModel
        let hidden = workspace.lmRows.get(outputRows.count * d)
        decoder.forward(caches: t5Sessions.map(\.cache), tokens: tokens, embedding: embedding,
                        workspace: workspace, outputRows: outputRows, out: hidden)
        for (s, seq) in zip(t5Sessions, tokens) { s.consumed += seq }
        return logits(hidden, rows: outputRows.count)
    }

    /// The LM head over final decoder states [rows × d_model].
    private func logits(_ hidden: UnsafeMutablePointer<Float>, rows: Int) -> [Float] {
        let d = config.dModel
        if config.scaleDecoderOutputs {
            // Classic tied T5 rescales before reusing the embedding as the output projection.
            let scale = Float(1 / Double(d).squareRoot())
            for i in 0..<(rows * d) { hidden[i] *= scale }
        }
        var out = [Float](repeating: 0, count: rows * vocabSize)
        out.withUnsafeMutableBufferPointer { o in
            lmHead.linear(hidden, count: rows, into: o.baseAddress!)
        }
        return out
    }
}

/// One T5 sequence: its prompt (encoder input), the decoder tokens consumed, and the caches.
public final class T5Session: ModelSession {
    public let encoderInput: [Int]?
    public internal(set) var consumed: [Int] = []
    let cache: T5DecoderCache
    /// The model whose caches these are (weak: a session must not keep a model alive).
    weak var owner: T5Model?

    init(owner: T5Model, encoderInput: [Int], cache: T5DecoderCache) {
        self.owner = owner
        self.encoderInput = encoderInput
        self.cache = cache
    }

    /// Nothing to do: the KV cache can be cut at any position.
    public func markSnapshot() {}

    /// Keeps exactly min(count, consumed) tokens: the first positions of the KV cache do not
    /// depend on later ones, so cutting the cache equals a fresh run over the kept prefix.
    public func truncate(to count: Int) -> Int {
        let keep = max(0, min(count, consumed.count))
        consumed.removeLast(consumed.count - keep)
        cache.setLength(keep)
        return keep
    }

    public var memoryBytes: Int { cache.bytes + ((encoderInput?.count ?? 0) + consumed.count) * MemoryLayout<Int>.stride }
}
