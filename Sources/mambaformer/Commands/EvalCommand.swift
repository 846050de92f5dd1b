import ArgumentParser
import Engine
import Foundation
import Gate
import GateTraining
import Kernels

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate routing policies and baselines on a dataset; draw the Pareto frontier.",
        discussion: """
        Generates every answer in-process (greedy, the cluster's span loop) with EMamba only,
        ET5 only, the gate at each --cost-weights value and random routing at the gate's ET5
        share; prints a markdown table (token F1, ROUGE-L, exact match, latency, ET5 share,
        Pareto frontier) and writes JSON (--json) and an HTML report with the plot (--report).
        """
    )

    @Option(help: "MambaFormer checkpoint folder.") var checkpoint = "models/demo"
    @Option(help: "Evaluation data (JSONL).") var data = "data/test.jsonl"
    @Option(help: "Use only the first N examples.") var limit: Int?
    @Option(name: .customLong("cost-weights"), help: "Comma-separated cost weights for the gate.") var costWeights = "0,0.25,0.5,0.75,1"
    @Option(help: "Gate: auto, trained, rule or alternate.") var gate = "auto"
    @Option(name: .customLong("max-new-tokens"), help: "Answer length limit.") var maxNewTokens: UInt32 = 64
    @Option(name: .customLong("span-tokens"), help: "Tokens per span.") var spanTokens: UInt32 = 16
    @Flag(name: .customLong("no-random-baselines"), help: "Skip random routing at the gate's ET5 shares.") var noRandomBaselines = false
    @Option(help: "Write the JSON report here.") var json: String?
    @Option(help: "Write the HTML report (plot + table) here.") var report: String?
    @Option(help: "OpenBLAS threads.") var threads = 1
    @Option(help: "Expert weight matrices: auto (as stored), f32, bf16, int8 or w8a8 (measures what narrowing costs).")
    var weights: WeightFormat = .auto
    @Flag(name: .customLong("write-default"),
          help: "Write the gate's best cost weight (highest F1; the cheaper on a tie) into the checkpoint's mambaformer.json as default_cost_weight: what routers use for requests that give none. Evaluate on held-out data (the validation split).")
    var writeDefault = false

    func parsedWeights() throws -> [Float] {
        try costWeights.split(separator: ",").map { part in
            guard let w = Float(part.trimmingCharacters(in: .whitespaces)), (0...1).contains(w) else {
                throw ValidationError("--cost-weights: '\(part)' is not a number in [0, 1]")
            }
            return w
        }
    }

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be ≥ 1") }
        guard maxNewTokens >= 1, spanTokens >= 1, threads >= 1 else { throw ValidationError("--max-new-tokens, --span-tokens and --threads must be ≥ 1") }
        _ = try parsedWeights()
    }

    func run() async throws {
        Kernels.threads = threads
        var options = EvaluationOptions(checkpoint: URL(fileURLWithPath: checkpoint), data: URL(fileURLWithPath: data))
        options.limit = limit
        options.costWeights = try parsedWeights()
        options.gate = gate
        options.maxNewTokens = maxNewTokens
        options.spanTokens = spanTokens
        options.randomBaselines = !noRandomBaselines
        options.weightFormat = weights
        let result = try Evaluator(options: options).run()
        print(result.markdown())
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            try encoder.encode(result).write(to: URL(fileURLWithPath: json))
        }
        if let report { try result.html().write(to: URL(fileURLWithPath: report), atomically: true, encoding: .utf8) }
        if writeDefault {
            guard let best = result.bestCostWeight else { throw ValidationError("--write-default: no gate@ cost weight was evaluated") }
            try MambaformerCheckpoint.writeDefaultCostWeight(best, root: URL(fileURLWithPath: checkpoint))
            print(String(format: "wrote default_cost_weight %.2f into %@/mambaformer.json", best, checkpoint))
        }
    }
}
