import Foundation
import Random

/// Writes a Hugging Face `MambaForCausalLM` folder (config.json + model.safetensors) with
/// random but non-degenerate weights: for tests, and for benchmarks at paper shapes without
/// downloading anything. A_log and the dt bias follow Mamba's initialisation (A = −(1…N),
/// Δ between 0.001 and 0.1), so the scan carries information across tokens.
public enum RandomMambaCheckpoint {
    public struct Shape: Sendable {
        public var vocabSize: Int, hiddenSize: Int, stateSize: Int, layers: Int
        public var expand = 2, convKernel = 4, timeStepRank: Int? = nil
        public var useBias = false, useConvBias = true, tieWordEmbeddings = true
        public init(vocabSize: Int, hiddenSize: Int, stateSize: Int, layers: Int) {
            self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.stateSize = stateSize; self.layers = layers
        }
        /// mamba-130m: d_model 768, 24 layers, d_state 16, expand 2, vocab 50280.
        public static let mamba130m = Shape(vocabSize: 50280, hiddenSize: 768, stateSize: 16, layers: 24)
    }

    public static func write(_ s: Shape, to directory: URL, seed: UInt64 = 1, dtype: SafeTensorsWriter.DType = .f32) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var rng = SplitMix64(seed: seed)
        func uniform(_ count: Int, _ scale: Float) -> [Float] {
            (0..<count).map { _ in Float(rng.unit() * 2 - 1) * scale }
        }
        let h = s.hiddenSize, inner = s.expand * h, n = s.stateSize
        let rank = s.timeStepRank ?? (h + 15) / 16
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        tensors.append(("backbone.embeddings.weight", [s.vocabSize, h], uniform(s.vocabSize * h, 0.5)))
        for l in 0..<s.layers {
            let p = "backbone.layers.\(l)."
            tensors.append((p + "norm.weight", [h], (0..<h).map { _ in 1 + Float(rng.unit() - 0.5) * 0.2 }))
            let m = p + "mixer."
            tensors.append((m + "in_proj.weight", [2 * inner, h], uniform(2 * inner * h, 1 / Float(h).squareRoot())))
            if s.useBias { tensors.append((m + "in_proj.bias", [2 * inner], uniform(2 * inner, 0.1))) }
            tensors.append((m + "conv1d.weight", [inner, 1, s.convKernel], uniform(inner * s.convKernel, 1 / Float(s.convKernel).squareRoot())))
            if s.useConvBias { tensors.append((m + "conv1d.bias", [inner], uniform(inner, 0.1))) }
            tensors.append((m + "x_proj.weight", [rank + 2 * n, inner], uniform((rank + 2 * n) * inner, 1 / Float(inner).squareRoot())))
            tensors.append((m + "dt_proj.weight", [inner, rank], uniform(inner * rank, 1 / Float(rank).squareRoot())))
            let dtBias: [Float] = (0..<inner).map { _ in
                let dt = exp(rng.unit() * (log(0.1) - log(0.001)) + log(0.001))
                return Float(dt + log(-expm1(-dt)))        // inverse softplus
            }
            tensors.append((m + "dt_proj.bias", [inner], dtBias))
            tensors.append((m + "A_log", [inner, n], (0..<(inner * n)).map { Float(log(Double($0 % n + 1))) }))
            tensors.append((m + "D", [inner], (0..<inner).map { _ in 1 + Float(rng.unit() - 0.5) * 0.2 }))
            tensors.append((m + "out_proj.weight", [h, inner], uniform(h * inner, 1 / Float(inner).squareRoot())))
            if s.useBias { tensors.append((m + "out_proj.bias", [h], uniform(h, 0.1))) }
        }
        tensors.append(("backbone.norm_f.weight", [h], (0..<h).map { _ in 1 + Float(rng.unit() - 0.5) * 0.2 }))
        if !s.tieWordEmbeddings { tensors.append(("lm_head.weight", [s.vocabSize, h], uniform(s.vocabSize * h, 0.5))) }
        try SafeTensorsWriter.write(tensors, dtype: dtype, to: directory.appendingPathComponent("model.safetensors"))

        var config: [String: Any] = [
            "architectures": ["MambaForCausalLM"], "model_type": "mamba",
            "vocab_size": s.vocabSize, "hidden_size": h, "state_size": n, "num_hidden_layers": s.layers,
            "expand": s.expand, "conv_kernel": s.convKernel, "use_bias": s.useBias, "use_conv_bias": s.useConvBias,
            "residual_in_fp32": true, "tie_word_embeddings": s.tieWordEmbeddings, "layer_norm_epsilon": 1e-5,
            "hidden_act": "silu", "eos_token_id": 0, "pad_token_id": 0, "bos_token_id": 0,
            "intermediate_size": inner,
        ]
        config["time_step_rank"] = s.timeStepRank ?? "auto"
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: directory.appendingPathComponent("config.json"))
    }
}
