import Foundation

/// The feed-forward activation of a T5 checkpoint, from `feed_forward_proj`.
public enum T5Activation: String {
    case relu
    /// Exact GELU (erf), transformers' `gelu` (`feed_forward_proj: "gelu"` / `"gated-gelu"`
    /// is NOT this: transformers maps "gated-gelu" to `gelu_new`).
    case gelu
    /// GELU, tanh approximation (`gelu_new`, also `gelu_pytorch_tanh` / `gelu_fast`:
    /// the same formula up to rounding).
    case geluNew = "gelu_new"
    case silu
}

/// A `T5ForConditionalGeneration` config.json (T5, T5 v1.1, Flan-T5), as transformers reads it.
/// Settings the engine does not implement are refused with the key and the reason.
public struct T5Config {
    public var vocabSize: Int
    public var dModel: Int
    public var dKV: Int
    public var dFF: Int
    public var numHeads: Int
    public var numLayers: Int
    public var numDecoderLayers: Int
    public var relativeAttentionNumBuckets: Int
    public var relativeAttentionMaxDistance: Int
    public var layerNormEpsilon: Float
    public var feedForwardProj: String
    public var activation: T5Activation
    /// v1.1 / Flan-T5: FFN is act(x·wi_0ᵀ) ⊙ (x·wi_1ᵀ) instead of act(x·wiᵀ).
    public var isGatedAct: Bool
    /// Classic T5 shares `shared.weight` with the LM head; Flan-T5 has its own `lm_head.weight`.
    public var tieWordEmbeddings: Bool
    /// Multiply the decoder output by d_model^-0.5 before the LM head (classic tied T5 only).
    public var scaleDecoderOutputs: Bool
    public var decoderStartTokenId: Int
    public var eosTokenId: Int
    public var padTokenId: Int?

    /// Heads × d_kv: the width of q/k/v (not necessarily d_model, e.g. t5-11b).
    public var innerDim: Int { numHeads * dKV }

    public init(directory: URL) throws {
        let file = try ConfigFile(directory: directory)
        try self.init(file)
    }

    init(_ c: ConfigFile) throws {
        let path = c.path
        func invalid(_ key: String, _ reason: String) -> EngineError {
            EngineError.invalidConfig(path: path, key: key, reason: reason)
        }
        let modelType = try c.string("model_type")
        guard modelType == "t5" else { throw invalid("model_type", "is '\(modelType)', expected 't5'") }
        if try !c.bool("is_encoder_decoder", default: true) {
            throw invalid("is_encoder_decoder", "is false: only T5ForConditionalGeneration (encoder + decoder) is supported")
        }
        if let archs = c.values["architectures"] as? [String], !archs.isEmpty,
           !archs.contains("T5ForConditionalGeneration") {
            throw EngineError.unsupported("architectures \(archs) in \(path): only T5ForConditionalGeneration has an LM head")
        }

        // Defaults are transformers' T5Config defaults (old configs omit some keys).
        func positive(_ key: String, default d: Int? = nil) throws -> Int {
            let v = try d.map { try c.int(key, default: $0) } ?? c.int(key)
            guard v > 0 else { throw invalid(key, "must be a positive integer, found \(v)") }
            return v
        }
        let vocab = try positive("vocab_size", default: 32128)
        vocabSize = vocab
        dModel = try positive("d_model", default: 512)
        dKV = try positive("d_kv", default: 64)
        dFF = try positive("d_ff", default: 2048)
        numHeads = try positive("num_heads", default: 8)
        numLayers = try positive("num_layers", default: 6)
        numDecoderLayers = c.has("num_decoder_layers") ? try positive("num_decoder_layers") : numLayers
        relativeAttentionNumBuckets = try positive("relative_attention_num_buckets", default: 32)
        relativeAttentionMaxDistance = try positive("relative_attention_max_distance", default: 128)
        // The encoder halves the buckets (one half per direction) and each half keeps half
        // exact; the log-spaced buckets need max_distance beyond the exact range.
        guard relativeAttentionNumBuckets >= 4 else {
            throw invalid("relative_attention_num_buckets", "must be at least 4, found \(relativeAttentionNumBuckets)")
        }
        guard relativeAttentionMaxDistance > relativeAttentionNumBuckets / 2 else {
            throw invalid("relative_attention_max_distance",
                          "must exceed relative_attention_num_buckets / 2 = \(relativeAttentionNumBuckets / 2), found \(relativeAttentionMaxDistance)")
        }
        let eps = try c.double("layer_norm_epsilon", default: 1e-6)
        guard eps > 0, eps < 1 else { throw invalid("layer_norm_epsilon", "must be in (0, 1), found \(eps)") }
        layerNormEpsilon = Float(eps)

        // transformers: "gated-ACT" or "ACT"; "gated-gelu" means gelu_new (T5 v1.1 / Flan-T5).
        feedForwardProj = try c.string("feed_forward_proj", default: "relu")
        let parts = feedForwardProj.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 1 || (parts.count == 2 && parts[0] == "gated") else {
            throw invalid("feed_forward_proj", "is '\(feedForwardProj)'; expected 'ACT' or 'gated-ACT', e.g. 'relu' or 'gated-gelu'")
        }
        isGatedAct = parts.count == 2
        let actName = feedForwardProj == "gated-gelu" ? "gelu_new" : parts[parts.count - 1]
        switch actName {
        case "relu": activation = .relu
        case "gelu": activation = .gelu
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": activation = .geluNew
        case "silu", "swish": activation = .silu
        default:
            throw invalid("feed_forward_proj",
                          "uses activation '\(actName)', not implemented (supported: relu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, silu, swish)")
        }

        tieWordEmbeddings = try c.bool("tie_word_embeddings", default: true)
        // transformers 5.x writes `scale_decoder_outputs` explicitly; older configs imply it by tying.
        scaleDecoderOutputs = try c.bool("scale_decoder_outputs", default: tieWordEmbeddings)

        // Special ids: config.json, else generation_config.json beside it (transformers 5
        // writes `decoder_start_token_id: null` into config.json and the id into the
        // generation config), else the T5 conventions (start = pad = 0, eos = 1).
        let generation = Self.generationConfig(besides: path)
        func tokenId(_ key: String, default d: Int?) throws -> Int? {
            var v: Int? = try c.tokenId(key) ?? nil
            if v == nil, let g = generation[key] {
                v = (g as? Int) ?? ((g as? [Any])?.first as? Int)
            }
            guard let v = v ?? d else { return nil }
            guard v >= 0, v < vocab else {
                throw invalid(key, "is \(v), outside the vocabulary [0, \(vocab))")
            }
            return v
        }
        padTokenId = try tokenId("pad_token_id", default: 0)
        decoderStartTokenId = try tokenId("decoder_start_token_id", default: padTokenId ?? 0) ?? 0
        eosTokenId = try tokenId("eos_token_id", default: 1) ?? 1
    }

    /// generation_config.json next to config.json, or empty when absent or unreadable
    /// (it only supplies defaults).
    private static func generationConfig(besides configPath: String) -> [String: Any] {
        let url = URL(fileURLWithPath: configPath).deletingLastPathComponent()
            .appendingPathComponent("generation_config.json")
        guard let data = try? Data(contentsOf: url),
              let dict = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return [:] }
        return dict
    }
}
