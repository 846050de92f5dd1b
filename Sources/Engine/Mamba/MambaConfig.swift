import Foundation

/// config.json of a Hugging Face `MambaForCausalLM` (Mamba-1), read the way transformers'
/// `MambaConfig` reads it (same defaults). Settings this engine does not implement are refused.
public struct MambaConfig: Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var stateSize: Int
    public var numHiddenLayers: Int
    public var expand: Int
    public var convKernel: Int
    public var timeStepRank: Int
    public var useBias: Bool
    public var useConvBias: Bool
    public var residualInFP32: Bool
    public var tieWordEmbeddings: Bool
    public var layerNormEpsilon: Float
    public var eosTokenId: Int?
    public var padTokenId: Int?
    public var bosTokenId: Int?

    /// d_inner = expand · hidden_size (transformers derives it; a stored `intermediate_size` must agree).
    public var intermediateSize: Int { expand * hiddenSize }

    public init(directory: URL) throws {
        let c = try ConfigFile(directory: directory)
        try self.init(c)
    }

    init(_ c: ConfigFile) throws {
        let modelType = try c.string("model_type", default: "mamba")
        guard modelType == "mamba" else {
            throw EngineError.invalidConfig(path: c.path, key: "model_type", reason: "is '\(modelType)', expected 'mamba' (Mamba-1; Mamba-2 is 'mamba2' and is not supported)")
        }
        vocabSize = try c.int("vocab_size", default: 50280)
        hiddenSize = try c.int("hidden_size", default: 768)
        stateSize = try c.int("state_size", default: 16)
        numHiddenLayers = try c.int("num_hidden_layers", default: 32)
        expand = try c.int("expand", default: 2)
        convKernel = try c.int("conv_kernel", default: 4)
        useBias = try c.bool("use_bias", default: false)
        useConvBias = try c.bool("use_conv_bias", default: true)
        residualInFP32 = try c.bool("residual_in_fp32", default: true)
        tieWordEmbeddings = try c.bool("tie_word_embeddings", default: true)
        layerNormEpsilon = Float(try c.double("layer_norm_epsilon", default: 1e-5))

        // time_step_rank: an integer or "auto" = ceil(hidden_size / 16).
        if c.has("time_step_rank"), let s = c.values["time_step_rank"] as? String {
            guard s == "auto" else {
                throw EngineError.invalidConfig(path: c.path, key: "time_step_rank", reason: "must be an integer or \"auto\", found \"\(s)\"")
            }
            timeStepRank = (hiddenSize + 15) / 16
        } else if c.has("time_step_rank") {
            timeStepRank = try c.int("time_step_rank")
        } else {
            timeStepRank = (hiddenSize + 15) / 16
        }

        func positive(_ key: String, _ v: Int) throws {
            guard v > 0 else { throw EngineError.invalidConfig(path: c.path, key: key, reason: "must be positive, found \(v)") }
        }
        try positive("vocab_size", vocabSize)
        try positive("hidden_size", hiddenSize)
        try positive("state_size", stateSize)
        try positive("num_hidden_layers", numHiddenLayers)
        try positive("expand", expand)
        try positive("conv_kernel", convKernel)
        try positive("time_step_rank", timeStepRank)
        guard layerNormEpsilon >= 0, layerNormEpsilon.isFinite else {
            throw EngineError.invalidConfig(path: c.path, key: "layer_norm_epsilon", reason: "must be a finite non-negative number")
        }
        if c.has("intermediate_size") {
            let stored = try c.int("intermediate_size")
            guard stored == expand * hiddenSize else {
                throw EngineError.invalidConfig(path: c.path, key: "intermediate_size", reason: "is \(stored) but expand × hidden_size = \(expand * hiddenSize); transformers uses the latter")
            }
        }

        // Refused rather than silently computed differently.
        let act = try c.string("hidden_act", default: "silu")
        guard act == "silu" || act == "swish" else {
            throw EngineError.unsupported("hidden_act '\(act)' in \(c.path) (this Mamba engine implements silu)")
        }
        if let arch = c.values["architectures"] as? [String], let first = arch.first,
           !["MambaForCausalLM", "MambaModel"].contains(first) {
            throw EngineError.unsupported("architecture '\(first)' in \(c.path) (supported: MambaForCausalLM)")
        }

        eosTokenId = try c.tokenId("eos_token_id") ?? 0     // transformers' default is 0
        padTokenId = try c.tokenId("pad_token_id") ?? 0
        bosTokenId = try c.tokenId("bos_token_id") ?? 0
    }
}
