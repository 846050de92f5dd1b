// engine-bench: times an ExpertModel checkpoint at paper shapes with random weights.
//
//   engine-bench write-mamba130m DIR            writes a random mamba-130m checkpoint (f32)
//   engine-bench write-t5small DIR              writes a random t5-small checkpoint (f32) + a
//                                               word-level tokenizer (for peers' converters)
//   engine-bench write-mamba370m DIR            the same at mamba-370m's shapes (the capacity guide)
//   engine-bench write-t5base DIR               the same at t5-base's shapes (the capacity guide)
//   engine-bench run DIR [--threads N] [--prompt 256] [--steps 32] [--batches 1,8] [--repeat 3]
//                        [--weights auto|f32|bf16|int8|w8a8]   matrices as stored, widened, rounded to bf16, int8, or int8 × int8
//                        [--isa 0|1|2]  cap the decode kernels' instruction set (generic, AVX2, AVX-512)
//   engine-bench bounds [--threads N]           memory read bandwidth and sgemm peak (Bounds.swift)
//
// Prints one JSON line per measurement (best and median of --repeat) and the process's peak
// RSS. "prefill" is the prompt through the model: for Mamba the prompt fed to a new session;
// for T5 the encoder over the prompt (makeSession) plus the first decoder step
// (decoder_start_token_id), i.e. everything before the first generated token.
// OPENBLAS_CORETYPE must be set in the environment before start (OpenBLAS reads it once, at load).
import Engine
import Foundation
import Kernels
import Random
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 }
func peakRSSMiB() -> Double { var u = rusage(); getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u); return Double(u.ru_maxrss) / 1024 }

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
func ms(_ seconds: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", seconds * 1000) }

func option(_ name: String, _ args: [String]) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

let args = Array(CommandLine.arguments.dropFirst())
guard let command = args.first, args.count >= 2 || command == "bounds" else {
    print("usage: engine-bench write-mamba130m DIR | write-t5small DIR"
        + " | run DIR [--threads N] [--prompt 256] [--steps 32] [--batches 1,8] [--repeat 3] [--weights auto|f32|bf16|int8|w8a8]"
        + " | bounds [--threads N]")
    exit(2)
}
let dir = URL(fileURLWithPath: args.count >= 2 ? args[1] : ".")

switch command {
case "bounds":
    printBounds(threads: Int(option("--threads", args) ?? "1") ?? 1)
case "write-mamba130m":
    try RandomMambaCheckpoint.write(.mamba130m, to: dir, seed: 1)
    print("wrote \(dir.path)")
case "write-t5small":
    try RandomT5Checkpoint.write(RandomT5Checkpoint.t5Small, to: dir, seed: 1)
    print("wrote \(dir.path)")
case "write-mamba370m":
    // mamba-370m: d_model 1024, 48 layers, d_state 16, expand 2, vocab 50280.
    try RandomMambaCheckpoint.write(.init(vocabSize: 50280, hiddenSize: 1024, stateSize: 16, layers: 48), to: dir, seed: 1)
    print("wrote \(dir.path)")
case "write-t5base":
    try RandomT5Checkpoint.write(RandomT5Checkpoint.t5Base, to: dir, seed: 1)
    print("wrote \(dir.path)")
case "run":
    let threads = Int(option("--threads", args) ?? "1") ?? 1
    let promptLength = Int(option("--prompt", args) ?? "256") ?? 256
    let steps = Int(option("--steps", args) ?? "32") ?? 32
    let batches = (option("--batches", args) ?? "1,8").split(separator: ",").compactMap { Int($0) }
    let repeats = max(1, Int(option("--repeat", args) ?? "3") ?? 3)
    guard let weights = WeightFormat(rawValue: option("--weights", args) ?? "auto") else {
        print("--weights must be auto, f32, bf16, int8 or w8a8"); exit(2)
    }
    Kernels.threads = threads
    if let isa = option("--isa", args).flatMap(Int.init) { Blas.smallBatchISA = isa }
    let t0 = now()
    let model = try loadExpertModel(from: dir, weightFormat: weights)
    let loadSeconds = now() - t0
    let vocab = model.vocabSize
    var rng = SystemRandomNumberGenerator()
    let prompt = (0..<promptLength).map { _ in Int.random(in: 1..<vocab, using: &rng) }
    let coretype = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "default"
    print("{\"model_type\":\"\(model.modelType)\",\"threads\":\(threads),\"weights\":\"\(weights)\",\"small_batch_isa\":\(Blas.smallBatchISA),\"w8a8_vnni\":\(Blas.w8a8UsesVNNI),\"openblas_coretype\":\"\(coretype)\",\"load_s\":\(String(format: "%.3f", loadSeconds)),\"weight_mib\":\(model.weightBytes / 1_048_576)}")

    // Prefill: one new session, `promptLength` tokens (T5: the encoder + the first decoder step).
    var prefillTimes: [Double] = []
    for _ in 0..<repeats {
        let start = now()
        let s = try model.makeSession(encoderInput: model.decoderStartTokenId == nil ? nil : prompt)
        _ = try model.feed(s, tokens: model.decoderStartTokenId.map { [$0] } ?? prompt)
        prefillTimes.append(now() - start)
    }
    print("{\"bench\":\"prefill\",\"tokens\":\(promptLength),\"ms\":\(ms(prefillTimes.min()!)),\"ms_median\":\(ms(median(prefillTimes)))}")

    // Decode: `steps` batched steps after a short prefill, per batch size.
    for batch in batches {
        var stepTimes: [Double] = []
        for _ in 0..<repeats {
            let sessions = try (0..<batch).map { _ -> ModelSession in
                let s = try model.makeSession(encoderInput: model.decoderStartTokenId == nil ? nil : Array(prompt.prefix(16)))
                _ = try model.feed(s, tokens: model.decoderStartTokenId.map { [$0] } ?? Array(prompt.prefix(16)))
                return s
            }
            var tokens = (0..<batch).map { _ in Int.random(in: 1..<vocab, using: &rng) }
            let start = now()
            for _ in 0..<steps {
                let logits = try model.step(sessions, tokens: tokens)
                tokens = (0..<batch).map { b in Sampler.argmax(Array(logits[(b * vocab)..<((b + 1) * vocab)])) }
            }
            stepTimes.append((now() - start) / Double(steps))
        }
        let bestStep = stepTimes.min()!, medianStep = median(stepTimes)
        print("{\"bench\":\"decode\",\"batch\":\(batch),\"steps\":\(steps),\"ms_per_step\":\(ms(bestStep, 2)),\"ms_per_step_median\":\(ms(medianStep, 2)),\"ms_per_token\":\(ms(bestStep / Double(batch), 2)),\"tokens_per_s\":\(String(format: "%.1f", Double(batch) / bestStep)),\"tokens_per_s_median\":\(String(format: "%.1f", Double(batch) / medianStep))}")
    }
    print("{\"peak_rss_mib\":\(String(format: "%.0f", peakRSSMiB()))}")
default:
    print("unknown command \(command)")
    exit(2)
}

/// A random `T5ForConditionalGeneration` folder at t5-small's shapes (d_model 512, 6 + 6
/// layers, 8 heads × 64, d_ff 2048 ReLU, vocab 32128, tied embeddings as the original
/// t5-small) or t5-base's (768, 12 + 12, 12 × 64, 3072): config.json + model.safetensors (f32)
/// in the Hugging Face layout, plus a word-level tokenizer (tokenizer.json +
/// tokenizer_config.json) covering every id, because CTranslate2's converter reads the
/// vocabulary and the special tokens from a tokenizer.
enum RandomT5Checkpoint {
    struct Shape { var d: Int, heads: Int, ff: Int, layers: Int }
    static let t5Small = Shape(d: 512, heads: 8, ff: 2048, layers: 6)
    static let t5Base = Shape(d: 768, heads: 12, ff: 3072, layers: 12)

    static func write(_ shape: Shape, to directory: URL, seed: UInt64) throws {
        let vocab = 32128, d = shape.d, heads = shape.heads, dKV = 64, ff = shape.ff, layers = shape.layers, buckets = 32
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var state = seed
        // SplitMix64, uniform in [-scale, scale): reproducible for a seed.
        func uniform(_ count: Int, _ scale: Float) -> [Float] {
            (0..<count).map { _ in
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                return (Float(z >> 40) / Float(1 << 24) * 2 - 1) * scale
            }
        }
        func norm() -> [Float] { uniform(d, 0.1).map { 1 + $0 } }
        let inner = heads * dKV
        var tensors: [(name: String, shape: [Int], values: [Float])] = [("shared.weight", [vocab, d], uniform(vocab * d, 0.5))]
        func attention(_ p: String, relativeBias: Bool) {
            tensors.append((p + ".q.weight", [inner, d], uniform(inner * d, 1 / Float(d).squareRoot())))
            tensors.append((p + ".k.weight", [inner, d], uniform(inner * d, 1 / Float(d).squareRoot())))
            tensors.append((p + ".v.weight", [inner, d], uniform(inner * d, 1 / Float(d).squareRoot())))
            tensors.append((p + ".o.weight", [d, inner], uniform(d * inner, 1 / Float(inner).squareRoot())))
            if relativeBias { tensors.append((p + ".relative_attention_bias.weight", [buckets, heads], uniform(buckets * heads, 1))) }
        }
        func feedForward(_ p: String) {
            tensors.append((p + ".wi.weight", [ff, d], uniform(ff * d, 1 / Float(d).squareRoot())))
            tensors.append((p + ".wo.weight", [d, ff], uniform(d * ff, 1 / Float(ff).squareRoot())))
        }
        for i in 0..<layers {
            let p = "encoder.block.\(i).layer"
            attention("\(p).0.SelfAttention", relativeBias: i == 0)
            tensors.append(("\(p).0.layer_norm.weight", [d], norm()))
            feedForward("\(p).1.DenseReluDense")
            tensors.append(("\(p).1.layer_norm.weight", [d], norm()))
        }
        tensors.append(("encoder.final_layer_norm.weight", [d], norm()))
        for i in 0..<layers {
            let p = "decoder.block.\(i).layer"
            attention("\(p).0.SelfAttention", relativeBias: i == 0)
            tensors.append(("\(p).0.layer_norm.weight", [d], norm()))
            attention("\(p).1.EncDecAttention", relativeBias: false)
            tensors.append(("\(p).1.layer_norm.weight", [d], norm()))
            feedForward("\(p).2.DenseReluDense")
            tensors.append(("\(p).2.layer_norm.weight", [d], norm()))
        }
        tensors.append(("decoder.final_layer_norm.weight", [d], norm()))
        try SafeTensorsWriter.write(tensors, dtype: .f32, to: directory.appendingPathComponent("model.safetensors"))

        // The classic t5-small config.json (as on the Hub) minus initializer_factor: JSONSerialization
        // writes 1.0 as 1, which transformers 5 refuses for a float field (its default is 1.0).
        let config: [String: Any] = [
            "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
            "vocab_size": vocab, "d_model": d, "d_kv": dKV, "d_ff": ff, "num_heads": heads,
            "num_layers": layers, "num_decoder_layers": layers,
            "relative_attention_num_buckets": buckets, "relative_attention_max_distance": 128,
            "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6,
            "feed_forward_proj": "relu", "dense_act_fn": "relu", "is_gated_act": false,
            "is_encoder_decoder": true, "use_cache": true, "n_positions": 512,
            "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0, "tie_word_embeddings": true,
        ]
        try json(config, to: directory.appendingPathComponent("config.json"))

        // Word-level tokenizer: <pad> 0, </s> 1, <unk> 2 (T5's ids), then one word per id.
        let specials = ["<pad>", "</s>", "<unk>"]
        var words: [String: Int] = [:]
        for id in 0..<vocab { words[id < specials.count ? specials[id] : "w\(id)"] = id }
        let added: [[String: Any]] = specials.enumerated().map { id, content in
            ["id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": true]
        }
        let tokenizer: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
            "normalizer": NSNull(), "pre_tokenizer": ["type": "WhitespaceSplit"],
            "post_processor": NSNull(), "decoder": NSNull(),
            "model": ["type": "WordLevel", "vocab": words, "unk_token": "<unk>"],
        ]
        try json(tokenizer, to: directory.appendingPathComponent("tokenizer.json"))
        try json(["tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>",
                  "unk_token": "<unk>", "model_max_length": 512],
                 to: directory.appendingPathComponent("tokenizer_config.json"))
    }

    private static func json(_ object: Any, to url: URL) throws {
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: url)
    }
}
