// engine-bench: times an ExpertModel checkpoint at paper shapes with random weights.
//
//   engine-bench write-mamba130m DIR            writes a random mamba-130m checkpoint (f32)
//   engine-bench run DIR [--threads N] [--prompt 256] [--steps 32] [--batches 1,8] [--repeat 3]
//   engine-bench bounds [--threads N]           memory read bandwidth and sgemm peak (Bounds.swift)
//
// Prints one JSON line per measurement (best of --repeat) and the process's peak RSS.
// OPENBLAS_CORETYPE must be set in the environment before start (see shared/FACTS.md).
import Engine
import Foundation
import Kernels
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 }
func peakRSSMiB() -> Double { var u = rusage(); getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u); return Double(u.ru_maxrss) / 1024 }

func option(_ name: String, _ args: [String]) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

let args = Array(CommandLine.arguments.dropFirst())
guard let command = args.first, args.count >= 2 || command == "bounds" else {
    print("usage: engine-bench write-mamba130m DIR | run DIR [--threads N] [--prompt 256] [--steps 32] [--batches 1,8] [--repeat 3]"
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
case "run":
    let threads = Int(option("--threads", args) ?? "1") ?? 1
    let promptLength = Int(option("--prompt", args) ?? "256") ?? 256
    let steps = Int(option("--steps", args) ?? "32") ?? 32
    let batches = (option("--batches", args) ?? "1,8").split(separator: ",").compactMap { Int($0) }
    let repeats = Int(option("--repeat", args) ?? "3") ?? 3
    Blas.threads = threads
    let t0 = now()
    let model = try loadExpertModel(from: dir)
    let loadSeconds = now() - t0
    let vocab = model.vocabSize
    var rng = SystemRandomNumberGenerator()
    let prompt = (0..<promptLength).map { _ in Int.random(in: 1..<vocab, using: &rng) }
    let coretype = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "default"
    print("{\"model_type\":\"\(model.modelType)\",\"threads\":\(threads),\"openblas_coretype\":\"\(coretype)\",\"load_s\":\(String(format: "%.3f", loadSeconds)),\"weight_mib\":\(model.weightBytes / 1_048_576)}")

    // Prefill: one new session, `promptLength` tokens.
    var best = Double.infinity
    for _ in 0..<repeats {
        let s = try model.makeSession(encoderInput: model.decoderStartTokenId == nil ? nil : prompt)
        let start = now()
        _ = try model.feed(s, tokens: model.decoderStartTokenId.map { [$0] } ?? prompt)
        best = min(best, now() - start)
    }
    print("{\"bench\":\"prefill\",\"tokens\":\(promptLength),\"ms\":\(String(format: "%.1f", best * 1000))}")

    // Decode: `steps` batched steps after a short prefill, per batch size.
    for batch in batches {
        var bestStep = Double.infinity
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
            bestStep = min(bestStep, (now() - start) / Double(steps))
        }
        print("{\"bench\":\"decode\",\"batch\":\(batch),\"steps\":\(steps),\"ms_per_step\":\(String(format: "%.2f", bestStep * 1000)),\"ms_per_token\":\(String(format: "%.2f", bestStep * 1000 / Double(batch))),\"tokens_per_s\":\(String(format: "%.1f", Double(batch) / bestStep))}")
    }
    print("{\"peak_rss_mib\":\(String(format: "%.0f", peakRSSMiB()))}")
default:
    print("unknown command \(command)")
    exit(2)
}
