import ArgumentParser
import Engine
import Foundation
import Kernels
import Tokenizers

/// `mambaformer infer`: one Hugging Face checkpoint in-process. For Mamba the logits are one
/// row per `--input-ids` position (a forward pass over the prompt); for T5 `--input-ids` is the
/// encoder input and the logits are one row per `--decoder-input-ids` position (teacher forced).
/// Then up to `--max-new-tokens` are generated (greedy unless sampling flags are given).
struct InferCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Run one Hugging Face checkpoint in-process (forward pass, logits, greedy ids)."
    )

    enum LogitsMode: String, ExpressibleByArgument, CaseIterable { case none, last, all }

    @Option(help: "A Hugging Face checkpoint folder (config.json + model.safetensors).")
    var model: String
    @Option(help: "Prompt text (needs the checkpoint's tokenizer.json).")
    var text: String?
    @Option(name: .customLong("input-ids"), help: "Prompt token ids, comma-separated (T5: the encoder input).")
    var inputIds: String?
    @Option(name: .customLong("decoder-input-ids"), help: "T5 only: decoder ids to teacher-force (default: decoder_start_token_id).")
    var decoderInputIds: String?
    @Option(name: .customLong("max-new-tokens"), help: "Tokens to generate; 0 runs the forward pass only.")
    var maxNewTokens: Int = 32
    @Flag(name: .customLong("ignore-eos"), help: "Mask the EOS logit while generating (transformers' min_new_tokens).")
    var ignoreEOS = false
    @Option(help: "Logits to print: none, last (the last position) or all (one row per position).")
    var logits: LogitsMode = .none
    @Option(help: "Weight matrices in memory: auto (as stored: bf16 stays bf16), f32, bf16 (rounded at load) int8 (quantized at load, one scale per row) or w8a8 (int8, and decode steps multiply in int8 too).")
    var weights: WeightFormat = .auto
    @Option(help: "OpenBLAS threads.")
    var threads: Int?
    @Option(help: "Sampling temperature (0 = greedy).")
    var temperature: Float = 0
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0 = off).")
    var topK: Int = 0
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (1 = off).")
    var topP: Float = 1
    @Option(help: "Sampling seed.")
    var seed: UInt64 = 0
    @Option(name: .customLong("repetition-penalty"), help: "Repetition penalty (1 = off).")
    var repetitionPenalty: Float = 1
    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard (text == nil) != (inputIds == nil) else { throw ValidationError("give exactly one of --text or --input-ids") }
        guard maxNewTokens >= 0 else { throw ValidationError("--max-new-tokens must be ≥ 0") }
        if let threads, threads < 1 { throw ValidationError("--threads must be ≥ 1") }
        guard temperature >= 0, topK >= 0, topP > 0, topP <= 1, repetitionPenalty > 0 else {
            throw ValidationError("sampling needs --temperature ≥ 0, --top-k ≥ 0, 0 < --top-p ≤ 1, --repetition-penalty > 0")
        }
    }

    static func parseIds(_ s: String, flag: String) throws -> [Int] {
        let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        if parts == [""] { return [] }
        return try parts.map { p in
            guard let v = Int(p) else { throw ValidationError("\(flag): '\(p)' is not an integer token id") }
            return v
        }
    }

    func run() async throws {
        if let threads { Kernels.threads = threads }
        // The checkpoint's tokenizer.json, when there is one: needed for --text, used for "text".
        let modelURL = URL(fileURLWithPath: model)
        let tokenizerURL = modelURL.appendingPathComponent("tokenizer.json")
        let tokenizer = FileManager.default.fileExists(atPath: tokenizerURL.path) ? try Tokenizer.load(from: tokenizerURL) : nil
        let prompt: [Int]
        if let text {
            guard let tokenizer else {
                throw ValidationError("--text needs \(tokenizerURL.path); pass --input-ids instead")
            }
            prompt = try tokenizer.encode(text).ids
            guard !prompt.isEmpty else { throw ValidationError("--text encodes to no tokens") }
        } else {
            prompt = try Self.parseIds(inputIds ?? "", flag: "--input-ids")
            guard !prompt.isEmpty else { throw ValidationError("--input-ids is empty") }
        }
        let decoderIds = try decoderInputIds.map { try Self.parseIds($0, flag: "--decoder-input-ids") }

        let model = try loadExpertModel(from: modelURL, weightFormat: weights)
        let isEncoderDecoder = model.decoderStartTokenId != nil
        if !isEncoderDecoder && decoderIds != nil {
            throw ValidationError("--decoder-input-ids is for encoder-decoder models (T5); \(model.modelType) is decoder-only")
        }

        // What the decoder side consumes first: the prompt (Mamba) or the decoder prefix (T5).
        let session = try model.makeSession(encoderInput: isEncoderDecoder ? prompt : nil)
        var forced = isEncoderDecoder ? (decoderIds ?? [model.decoderStartTokenId!]) : prompt
        if forced.isEmpty, let start = model.decoderStartTokenId { forced = [start] }
        let vocab = model.vocabSize
        var lastLogits: [Float]
        var logitRows: [[Float]] = []
        switch logits {
        case .all:
            let all = try model.feedAll(session, tokens: forced)
            logitRows = (0..<forced.count).map { Array(all[($0 * vocab)..<(($0 + 1) * vocab)]) }
            lastLogits = logitRows.last ?? []
        case .last, .none:
            lastLogits = try model.feed(session, tokens: forced)
            if logits == .last { logitRows = [lastLogits] }
        }

        var sampler = Sampler(temperature: temperature, topK: topK, topP: topP, seed: seed, repetitionPenalty: repetitionPenalty)
        let suppress: Set<Int> = ignoreEOS ? [model.eosTokenId] : []
        var generated: [Int] = []
        var history = forced
        while generated.count < maxNewTokens {
            let token = lastLogits.withUnsafeBufferPointer { sampler.next(logits: $0, history: history, suppress: suppress).token }
            generated.append(token)
            history.append(token)
            if token == model.eosTokenId && !ignoreEOS { break }
            if generated.count == maxNewTokens { break }
            lastLogits = try model.step([session], tokens: [token])
        }

        if json {
            var out = "{\"model_type\":\"\(model.modelType)\",\"input_ids\":\(Self.list(prompt))"
            if isEncoderDecoder { out += ",\"decoder_input_ids\":\(Self.list(forced))" }
            out += ",\"generated_ids\":\(Self.list(generated))"
            if let tokenizer { out += ",\"text\":\(Self.jsonString(try tokenizer.decode(generated)))" }
            if logits != .none {
                out += ",\"logits\":["
                out += logitRows.map { row in "[" + row.map(Self.number).joined(separator: ",") + "]" }.joined(separator: ",")
                out += "]"
            }
            out += "}"
            print(out)
        } else {
            print("model_type: \(model.modelType)")
            print("input_ids: \(prompt)")
            if isEncoderDecoder { print("decoder_input_ids: \(forced)") }
            print("generated_ids: \(generated)")
            if let tokenizer { print("text: \(try tokenizer.decode(generated))") }
            for (i, row) in logitRows.enumerated() {
                let best = Sampler.argmax(row)
                print("logits[\(i)]: argmax \(best) (\(row.isEmpty ? 0 : row[best])), \(row.count) values (use --json for all)")
            }
        }
    }

    static func jsonString(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s], options: [])) ?? Data("[\"\"]".utf8)
        let array = String(decoding: data, as: UTF8.self)
        return String(array.dropFirst().dropLast())    // the string literal inside [ ]
    }

    static func list(_ ids: [Int]) -> String { "[" + ids.map(String.init).joined(separator: ",") + "]" }
    /// Shortest round-tripping decimal; JSON has no NaN/∞, so those become null.
    static func number(_ v: Float) -> String { v.isFinite ? "\(v)" : "null" }
}

extension WeightFormat: ExpressibleByArgument {}
