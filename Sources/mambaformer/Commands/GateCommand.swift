import ArgumentParser
import Foundation
import Gate
import GateTraining
import Kernels

struct GateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gate",
        abstract: "Train and inspect the token-level routing gate.",
        subcommands: [GateTrainCommand.self, GateBenchCommand.self]
    )
}

struct GateTrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the gate with the utility-guided multi-objective loss.",
        discussion: """
        Runs both experts teacher-forced over each example's prompt and reference answer,
        labels each gate token with the utility of ET5 over EMamba
        (log-likelihood gain − λ · extra measured compute), trains the causal gate network,
        calibrates the cost-weight thresholds on a held-out split and writes <checkpoint>/gate/
        (or --out). Data: JSONL of {"question", "context"?, "answer"}.
        """
    )

    @Option(help: "MambaFormer checkpoint folder.") var checkpoint = "models/demo"
    @Option(help: "Training data (JSONL).") var data = "data/train.jsonl"
    @Option(help: "Use only the first N examples.") var limit: Int?
    @Option(help: "Output folder (default: <checkpoint>/gate).") var out: String?
    @Option(help: "Maximum epochs (early stopping on the held-out split).") var epochs = 30
    @Option(name: .customLong("batch-size"), help: "Sequences per mini-batch.") var batchSize = 16
    @Option(name: .customLong("learning-rate"), help: "Adam learning rate.") var learningRate: Float = 3e-3
    @Option(name: .customLong("lambda-cost"), help: "λ: nats of log-likelihood one EMamba token of compute is worth.")
    var lambdaCost: Float = 0.5
    @Option(name: .customLong("target-et5-share"), help: "Target share of tokens routed to ET5 (utilisation term).")
    var targetEt5Share: Float = 0.1
    @Option(name: .customLong("routing-coef"), help: "Coefficient of the utility-weighted routing BCE.") var routingCoef: Float = 1
    @Option(name: .customLong("cost-coef"), help: "Coefficient of the expected-compute term.") var costCoef: Float = 0.1
    @Option(name: .customLong("utilisation-coef"), help: "Coefficient of the ET5-share term.") var utilisationCoef: Float = 1
    @Option(name: .customLong("switching-coef"), help: "Coefficient of the switching penalty.") var switchingCoef: Float = 0.1
    @Option(name: .customLong("held-out"), help: "Fraction of examples held out for early stopping and calibration.")
    var heldOut: Float = 0.15
    @Option(help: "Random seed (split, initialisation, batches).") var seed: UInt64 = 1234
    @Option(name: .customLong("fixed-cost-ratio"), help: "Use this ET5/EMamba per-token cost ratio instead of measured step times (bit-reproducible).")
    var fixedCostRatio: Float?
    @Option(help: "OpenBLAS threads.") var threads = 1

    func validate() throws {
        if let limit, limit < 2 { throw ValidationError("--limit must be ≥ 2") }
        guard epochs >= 1, batchSize >= 1, learningRate > 0 else { throw ValidationError("--epochs, --batch-size ≥ 1 and --learning-rate > 0") }
        guard (0...1).contains(targetEt5Share) else { throw ValidationError("--target-et5-share must be in [0, 1]") }
        guard heldOut > 0, heldOut < 1 else { throw ValidationError("--held-out must be in (0, 1)") }
        guard lambdaCost >= 0, routingCoef >= 0, costCoef >= 0, utilisationCoef >= 0, switchingCoef >= 0 else {
            throw ValidationError("--lambda-cost and the loss coefficients must be ≥ 0")
        }
        if let fixedCostRatio, fixedCostRatio <= 0 { throw ValidationError("--fixed-cost-ratio must be > 0") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
    }

    func run() async throws {
        Kernels.threads = threads
        var options = GateTrainingOptions(checkpoint: URL(fileURLWithPath: checkpoint), data: URL(fileURLWithPath: data))
        options.limit = limit
        options.output = out.map { URL(fileURLWithPath: $0) }
        options.epochs = epochs
        options.batchSize = batchSize
        options.learningRate = learningRate
        options.lambdaCost = lambdaCost
        options.coefficients.targetEt5Share = targetEt5Share
        options.coefficients.routing = routingCoef
        options.coefficients.cost = costCoef
        options.coefficients.utilisation = utilisationCoef
        options.coefficients.switching = switchingCoef
        options.heldOutFraction = heldOut
        options.seed = seed
        options.fixedCostRatio = fixedCostRatio
        // GateError describes itself (file, line, what to fix); no usage text for data errors.
        let report = try GateTrainer(options: options).run()
        print(String(format: "wrote %@ (best epoch %d, held-out lift %+.4f nats/token, accuracy %.3f, ET5 share %.3f); teacher forcing %.1f s (%.2f s/example), training %.1f s",
                     report.output?.path ?? "?", report.bestEpoch, report.heldOutLift, report.heldOutLoss.accuracy, report.heldOutLoss.et5Share,
                     report.scoringSeconds, report.scoringSeconds / Double(max(1, report.examples + report.heldOut)), report.trainingSeconds))
        print("cost weight → threshold (held-out ET5 share of decisions):")
        for p in report.policy.points {
            print(String(format: "  %.2f → %.3f (%.0f %%)", p.costWeight, p.threshold, p.et5Share * 100))
        }
    }
}

struct GateBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time the trained gate's span decision against an EMamba span (medians over the examples)."
    )

    @Option(help: "MambaFormer checkpoint folder with a trained gate.") var checkpoint = "models/demo"
    @Option(help: "Prompts (JSONL).") var data = "data/test.jsonl"
    @Option(help: "Examples to time.") var limit = 50
    @Option(name: .customLong("span-tokens"), help: "Tokens per EMamba span.") var spanTokens: UInt32 = 16
    @Option(help: "OpenBLAS threads.") var threads = 1

    func validate() throws {
        guard limit >= 1, spanTokens >= 1, threads >= 1 else { throw ValidationError("--limit, --span-tokens and --threads must be ≥ 1") }
    }

    func run() async throws {
        Kernels.threads = threads
        let r = try GateBenchmark.run(checkpoint: URL(fileURLWithPath: checkpoint), data: URL(fileURLWithPath: data), limit: limit, spanTokens: spanTokens)
        print(String(format: "%d prompts: gate decision %.0f µs cold (prompt tokenized), %.0f µs warm (prompt cached); EMamba %d-token span %.0f µs → %.2f %% / %.2f %% of a span",
                     r.examples, r.coldDecisionUs, r.warmDecisionUs, r.spanTokens, r.emambaSpanUs, r.coldShareOfSpan * 100, r.warmShareOfSpan * 100))
    }
}
