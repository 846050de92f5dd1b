import Foundation
import Kernels

/// EMamba: a Hugging Face `MambaForCausalLM` (Mamba-1) checkpoint on CPU.
///
///   h = Embedding(ids)
///   for each block: h ← h + Mixer(RMSNorm(h))
///   logits = LMHead(RMSNorm_f(h))          (LM head tied to the embedding unless untied)
///
/// Prefill runs the projections as GEMMs over all prompt tokens (in chunks of
/// `prefillChunk`, so memory stays bounded; the recurrent state carries across chunks).
/// Decoding advances many sessions by one token in one pass. Not thread-safe: one model per
/// process, driven from one thread (the ExpertModel contract).
public final class MambaModel: ExpertModel {
    public let config: MambaConfig
    public var modelType: String { "mamba" }
    public var vocabSize: Int { config.vocabSize }
    public var eosTokenId: Int { config.eosTokenId ?? -1 }
    public var decoderStartTokenId: Int? { nil }
    public let weightBytes: Int
    /// Tokens per prefill pass (bounds the workspace: ~ chunk × (2·hidden + 5·inner) floats).
    public var prefillChunk = 256

    let file: SafeTensorsFile
    let embeddings: Weight      // [vocab, hidden]
    let blocks: [MambaBlock]
    let normF: Tensor           // [hidden]
    let lmHead: Weight          // [vocab, hidden] (the embedding when tied)
    let workspace: MambaWorkspace
    let stateLayout: MambaStateLayout

    /// Loads `directory`/config.json and `directory`/model.safetensors, holding the matrices
    /// as `weightFormat` says (default: as stored).
    public convenience init(directory: URL, weightFormat: WeightFormat = .auto) throws {
        let config = try MambaConfig(directory: directory)
        let url = directory.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw EngineError.io(path: url.path, reason: "model.safetensors not found (sharded checkpoints are not supported)")
        }
        try self.init(config: config, weights: SafeTensorsFile(contentsOf: url, matrixFormat: weightFormat))
    }

    public init(config c: MambaConfig, weights file: SafeTensorsFile) throws {
        config = c
        self.file = file
        let h = c.hiddenSize
        // transformers renames an older `embedding.` key to `embeddings.` on load; accept both.
        let embName = file.has("backbone.embeddings.weight") || !file.has("backbone.embedding.weight")
            ? "backbone.embeddings.weight" : "backbone.embedding.weight"
        embeddings = try file.matrix(embName, shape: [c.vocabSize, h])
        blocks = try (0..<c.numHiddenLayers).map {
            try MambaBlock(file: file, prefix: "backbone.layers.\($0).", config: c)
        }
        normF = try file.tensor("backbone.norm_f.weight", shape: [h])
        lmHead = c.tieWordEmbeddings ? embeddings : try file.matrix("lm_head.weight", shape: [c.vocabSize, h])
        weightBytes = embeddings.byteCount + normF.byteCount + blocks.reduce(0) { $0 + $1.weightBytes }
            + (c.tieWordEmbeddings ? 0 : lmHead.byteCount)
        workspace = MambaWorkspace(config: c)
        stateLayout = MambaStateLayout(blocks: blocks)
    }

    public func makeSession(encoderInput: [Int]?) throws -> ModelSession {
        guard encoderInput == nil else {
            throw EngineError.invalidArgument("a Mamba session takes no encoder input (it is decoder-only); pass the prompt to feed")
        }
        return MambaSession(owner: ObjectIdentifier(self), layout: stateLayout)
    }

    public func feed(_ session: ModelSession, tokens: [Int]) throws -> [Float] {
        try prefill(session, tokens: tokens, allLogits: false)
    }

    public func feedAll(_ session: ModelSession, tokens: [Int]) throws -> [Float] {
        try prefill(session, tokens: tokens, allLogits: true)
    }

    public func step(_ sessions: [ModelSession], tokens: [Int]) throws -> [Float] {
        guard sessions.count == tokens.count else {
            throw EngineError.invalidArgument("step got \(sessions.count) sessions but \(tokens.count) tokens")
        }
        guard !sessions.isEmpty else { return [] }
        try validateTokens(tokens, vocabSize: vocabSize)
        let own = try sessions.map { try mine($0) }
        guard Set(own.map(ObjectIdentifier.init)).count == own.count else {
            throw EngineError.invalidArgument("step got the same session twice")
        }
        let rows = tokens.count
        let segments = own.enumerated().map { (i, s) in (firstRow: i, rows: 1, session: s) }
        let logits = run(tokens: tokens, segments: segments, logitRows: Array(0..<rows))
        for (s, t) in zip(own, tokens) { s.append([t]) }
        return logits
    }

    /// Batched prefill: the sessions' tokens are packed into passes of at most `prefillChunk`
    /// rows, in order, so a pass holds the next tokens of several sessions (each at most once:
    /// a session that does not fit ends the pass and continues in the next, its state carried
    /// across). Each pass is one `run`: GEMMs over all its rows, the scan per session.
    public func feedMany(_ sessions: [ModelSession], tokens: [[Int]]) throws -> [Float] {
        guard sessions.count == tokens.count else {
            throw EngineError.invalidArgument("feedMany got \(sessions.count) sessions but \(tokens.count) token lists")
        }
        guard !sessions.isEmpty else { return [] }
        let own = try sessions.map { try mine($0) }
        guard Set(own.map(ObjectIdentifier.init)).count == own.count else {
            throw EngineError.invalidArgument("feedMany got the same session twice")
        }
        for seq in tokens {
            guard !seq.isEmpty else { throw EngineError.emptyInput("feedMany needs at least one token per session") }
            try validateTokens(seq, vocabSize: vocabSize)
        }
        let chunk = max(prefillChunk, 1)
        var logits = [Float](repeating: 0, count: sessions.count * vocabSize)
        var next = 0, offset = 0        // the session being packed, and how far into its tokens
        while next < own.count {
            var passTokens: [Int] = []
            var segments: [(firstRow: Int, rows: Int, session: MambaSession)] = []
            var finishing: [(session: Int, row: Int)] = []
            var pieces: [(MambaSession, [Int])] = []
            while next < own.count, passTokens.count < chunk {
                let seq = tokens[next]
                let take = min(seq.count - offset, chunk - passTokens.count)
                let piece = Array(seq[offset..<(offset + take)])
                segments.append((firstRow: passTokens.count, rows: take, session: own[next]))
                pieces.append((own[next], piece))
                passTokens += piece
                offset += take
                if offset == seq.count {
                    finishing.append((session: next, row: passTokens.count - 1))
                    next += 1; offset = 0
                }
            }
            let rows = run(tokens: passTokens, segments: segments, logitRows: finishing.map(\.row))
            for (i, f) in finishing.enumerated() {
                for j in 0..<vocabSize { logits[f.session * vocabSize + j] = rows[i * vocabSize + j] }
            }
            for (session, piece) in pieces { session.append(piece) }
        }
        return logits
    }

    // MARK: - Forward

    private func prefill(_ session: ModelSession, tokens: [Int], allLogits: Bool) throws -> [Float] {
        guard !tokens.isEmpty else { throw EngineError.emptyInput("feed needs at least one token") }
        try validateTokens(tokens, vocabSize: vocabSize)
        let s = try mine(session)
        var logits: [Float] = []
        if allLogits { logits.reserveCapacity(tokens.count * vocabSize) }
        var start = 0
        while start < tokens.count {
            let end = min(start + max(prefillChunk, 1), tokens.count)
            let chunk = Array(tokens[start..<end])
            let wanted = allLogits ? Array(0..<chunk.count) : (end == tokens.count ? [chunk.count - 1] : [])
            let rows = run(tokens: chunk, segments: [(firstRow: 0, rows: chunk.count, session: s)], logitRows: wanted)
            if allLogits || end == tokens.count { logits += rows }
            s.append(chunk)
            start = end
        }
        return logits
    }

    /// Embeds `tokens`, runs every block over the segments, and returns the logits of the rows
    /// in `logitRows` (row-major). Tokens must already be validated.
    private func run(tokens: [Int], segments: [(firstRow: Int, rows: Int, session: MambaSession)], logitRows: [Int]) -> [Float] {
        let rows = tokens.count
        let h = config.hiddenSize
        let ws = workspace
        ws.ensure(rows: rows)
        let x = ws.residual
        for (r, t) in tokens.enumerated() {
            embeddings.copyRow(t, into: x + r * h)
        }
        for (layer, block) in blocks.enumerated() {
            let segs = segments.map { seg in
                MambaBlock.Segment(firstRow: seg.firstRow, rows: seg.rows,
                                   convState: seg.session.convState(layer: layer),
                                   ssmState: seg.session.ssmState(layer: layer))
            }
            block.forward(x, rows: rows, segments: segs, workspace: ws)
        }
        guard !logitRows.isEmpty else { return [] }
        // Final norm on the wanted rows only, gathered densely into `normed`, then the LM head.
        for (i, r) in logitRows.enumerated() {
            Norms.rmsNorm(x + r * h, weight: normF.pointer, output: ws.normed + i * h, rows: 1, dim: h, eps: config.layerNormEpsilon)
        }
        var logits = [Float](repeating: 0, count: logitRows.count * vocabSize)
        logits.withUnsafeMutableBufferPointer { out in
            lmHead.linear(ws.normed, count: logitRows.count, into: out.baseAddress!)
        }
        return logits
    }

    private func mine(_ session: ModelSession) throws -> MambaSession {
        guard let s = session as? MambaSession, s.owner == ObjectIdentifier(self) else {
            throw EngineError.invalidArgument("the session was not made by this Mamba model")
        }
        return s
    }
}
