import Engine
import Foundation
import Gate
import Random
import Tokenizers
import Vocabulary

/// `mambaformer gate train`: score every example with both experts (teacher forcing), turn
/// the per-token utilities into routing targets, fit the network with the multi-objective
/// loss (Adam, mini-batches, held-out early stopping on the routing lift), calibrate the policy
/// thresholds on the held-out split, and write `gate/`.
public struct GateTrainingOptions: Sendable {
    public var checkpoint: URL
    public var data: URL
    public var output: URL?
    public var limit: Int?
    public var epochs = 30
    public var batchSize = 16
    public var learningRate: Float = 3e-3
    /// λ: nats of log-likelihood one EMamba-token of compute is worth.
    public var lambdaCost: Float = 0.5
    public var coefficients = GateLossCoefficients()
    public var heldOutFraction: Float = 0.15
    public var patience = 5
    public var seed: UInt64 = 1234
    /// Gate tokens per simulated span (the router's 16 expert tokens are ~12 gate tokens).
    public var spanGateTokens = 12
    public var horizon = 8
    public var embeddingDims = 16
    public var hidden = 32
    public var convKernel = 4
    public var window = 4
    /// Fixed ET5/EMamba per-token cost ratio instead of measured step times (bit-reproducible runs).
    public var fixedCostRatio: Float?

    public init(checkpoint: URL, data: URL) { self.checkpoint = checkpoint; self.data = data }
}

public struct GateTrainingReport: Sendable {
    public var examples = 0
    public var heldOut = 0
    public var skipped = 0
    public var scoringSeconds: Double = 0
    public var trainingSeconds: Double = 0
    public var bestEpoch = 0
    public var heldOutLoss = GateLossValue()
    /// Held-out routing lift of the chosen epoch (`GateTrainer.routingLift`).
    public var heldOutLift: Float = 0
    public var costUs: [String: Float] = [:]
    public var policy = GatePolicy()
    public var output: URL?
}

public final class GateTrainer {
    public let options: GateTrainingOptions
    let log: (String) -> Void

    public init(options: GateTrainingOptions, log: @escaping (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.options = options; self.log = log
    }

    public func run() throws -> GateTrainingReport {
        var report = GateTrainingReport()
        let checkpoint = try MambaformerCheckpoint(root: options.checkpoint)
        let examples = try QAExample.load(options.data, limit: options.limit).filter { !$0.answer.isEmpty }
        guard examples.count >= 2 else {
            throw GateError.invalidData(file: options.data.path, line: 0, reason: "need at least 2 examples with a non-empty answer (got \(examples.count))")
        }
        let vocabulary = try gateVocabulary(checkpoint: checkpoint, examples: examples)
        // 1. Teacher forcing with both experts.
        let (scored, costUnitUs) = try teacherForce(examples, checkpoint: checkpoint, featurizer: vocabulary.featurizer, &report)
        // 2. Routing targets. One random stream for the split and the epochs' shuffles.
        var rng = SplitMix64(seed: options.seed)
        let (train, held) = routingTargets(scored, featurizer: vocabulary.featurizer, costUnitUs: costUnitUs, rng: &rng, &report)
        // 3. Fit.
        let (network, fit) = self.fit(train: train, held: held, vocab: vocabulary.tokenizer.vocabSize,
                                      spec: vocabulary.featurizer.spec, rng: &rng, &report)
        // 4. Calibrate the policy on held-out decision points, and save.
        report.policy = Self.calibrate(network: network, held: held, window: options.window, spanGateTokens: options.spanGateTokens)
        report.output = try save(network, vocabulary: vocabulary, checkpoint: checkpoint, fit: fit,
                                 trainCount: train.count, heldCount: held.count, scoredCount: scored.count, report: report)
        return report
    }

    /// The gate's vocabulary: EMamba's tokenizer; token rarity from the training text, embedding
    /// norms from EMamba, the lexicon from the examples.
    private struct GateVocabulary {
        var tokenizer: Tokenizer
        var tokenizerURL: URL
        var tokenizerBytes: Data
        var lexicon: Lexicon
        var featurizer: GateFeaturizer
    }

    private func gateVocabulary(checkpoint: MambaformerCheckpoint, examples: [QAExample]) throws -> GateVocabulary {
        let tokenizerURL = checkpoint.emamba.appendingPathComponent("tokenizer.json")
        guard let tokenizerBytes = FileManager.default.contents(atPath: tokenizerURL.path) else { throw GateError.missingFile(tokenizerURL.path) }
        let tokenizer = try Tokenizer(json: tokenizerBytes, file: tokenizerURL.path)
        let vocab = tokenizer.vocabSize
        let lexicon = Lexicon.build(from: examples.flatMap { [$0.question, $0.context, $0.answer] })
        var spec = FeatureSpec()
        spec.embeddingDims = options.embeddingDims
        var counts = [Int](repeating: 0, count: vocab)
        for e in examples {
            for text in [e.prompt, e.answer] {
                for id in try tokenizer.encode(text, addSpecialTokens: false).ids where id >= 0 && id < vocab { counts[id] += 1 }
            }
        }
        let norms = try Self.embeddingNorms(emamba: checkpoint.emamba, vocab: vocab)
        let statistics = VocabularyStatistics(rarity: VocabularyStatistics.rarity(counts: counts), embeddingNorm: norms)
        let featurizer = GateFeaturizer(tokenizer: tokenizer, spec: spec, statistics: statistics, lexicon: lexicon)
        log("gate train: \(examples.count) examples, gate vocabulary \(vocab) (EMamba tokenizer), lexicon \(lexicon.words.count) words")
        return GateVocabulary(tokenizer: tokenizer, tokenizerURL: tokenizerURL, tokenizerBytes: tokenizerBytes,
                              lexicon: lexicon, featurizer: featurizer)
    }

    /// Step 1: both experts score every answer token (log-probability and decode cost); costs
    /// come back in EMamba-token units (the mean measured EMamba step = 1).
    private func teacherForce(_ examples: [QAExample], checkpoint: MambaformerCheckpoint, featurizer: GateFeaturizer,
                              _ report: inout GateTrainingReport) throws -> (scored: [ScoredExample], costUnitUs: Float) {
        let start = Date()
        let et5 = try TeacherForcer(pool: .et5, folder: checkpoint.et5)
        let emamba = try TeacherForcer(pool: .emamba, folder: checkpoint.emamba)
        var scored: [ScoredExample] = []
        let progress = ProgressLine(total: examples.count, label: "teacher forcing")
        for (i, e) in examples.enumerated() {
            let prompt = try featurizer.tokenize(e.prompt)
            let answer = try featurizer.tokenize(e.answer)
            if answer.count == 0 { report.skipped += 1; continue }
            let s5 = try et5.score(e)
            let sm = try emamba.score(e)
            scored.append(ScoredExample.make(prompt: prompt, answer: answer, et5: s5, emamba: sm))
            progress.update(i + 1)
        }
        progress.finish()
        report.scoringSeconds = Date().timeIntervalSince(start)
        guard scored.count >= 2 else {
            throw GateError.invalidData(file: options.data.path, line: 0, reason: "fewer than 2 examples tokenize to a non-empty answer")
        }
        let meanUs: (KeyPath<ScoredExample, [Float]>) -> Float = { kp in
            let all = scored.flatMap { $0[keyPath: kp] }
            return all.reduce(0, +) / Float(max(all.count, 1))
        }
        let unit = max(meanUs(\.costEMamba), 1e-3)
        report.costUs = ["et5": meanUs(\.costET5), "emamba": meanUs(\.costEMamba)]
        log(String(format: "measured decode cost per gate token: ET5 %.0f µs, EMamba %.0f µs (%.2fx); %.2f s per example",
                   report.costUs["et5"]!, report.costUs["emamba"]!, report.costUs["et5"]! / unit,
                   report.scoringSeconds / Double(scored.count)))
        return (scored, unit)
    }

    /// Step 2: each example's positions labelled by utility, shuffled and split into training
    /// and held-out sets.
    private func routingTargets(_ scored: [ScoredExample], featurizer: GateFeaturizer, costUnitUs: Float, rng: inout SplitMix64,
                                _ report: inout GateTrainingReport) -> (train: [LabelledSequence], held: [LabelledSequence]) {
        let labelled = scored.map { labelledSequence($0, featurizer: featurizer, costUnitUs: costUnitUs) }
        var order = Array(labelled.indices)
        order.shuffle(using: &rng)
        let heldCount = min(max(1, Int((Float(labelled.count) * options.heldOutFraction).rounded())), labelled.count - 1)
        let held = order.prefix(heldCount).map { labelled[$0] }
        let train = order.dropFirst(heldCount).map { labelled[$0] }
        report.examples = train.count; report.heldOut = held.count
        return (train, held)
    }

    /// What fitting found: the epoch kept and its held-out figures.
    private struct FitResult { var bestEpoch: Int; var loss: GateLossValue; var lift: Float }

    /// Step 3: Adam over the training set; the epoch kept is the one whose held-out decisions
    /// rank spans best by utility, which is what the calibrated thresholds use. (The loss can
    /// fall while the ranking stays at chance: with few ET5-favoured tokens, "always EMamba" is
    /// a low-loss answer.)
    private func fit(train: [LabelledSequence], held: [LabelledSequence], vocab: Int, spec: FeatureSpec, rng: inout SplitMix64,
                     _ report: inout GateTrainingReport) -> (GateNetwork, FitResult) {
        let o = options
        var train = train
        let shape = GateNetworkShape(vocabSize: vocab, embeddingDims: spec.embeddingDims, numericCount: spec.numericCount,
                                     convKernel: o.convKernel, hidden: o.hidden)
        var network = GateNetwork(shape: shape, parameters: GateParameters(randomFor: shape, seed: o.seed))
        // Start at the target share so the utilisation term does not fight the first epochs.
        let t = min(max(o.coefficients.targetEt5Share, 0.01), 0.99)
        network.parameters.b2[0] = Foundation.log(t / (1 - t))
        var adam = AdamOptimizer(shape: shape, learningRate: o.learningRate)
        var best = network.parameters
        var bestLoss = GateLoss.evaluate(network, batch: held, coefficients: o.coefficients)
        let lift = { (network: GateNetwork) in
            Self.routingLift(network: network, held: held, window: o.window, spanGateTokens: o.spanGateTokens)
        }
        var bestLift = lift(network)
        var bestEpoch = 0
        var sinceBest = 0
        let trainStart = Date()
        log(String(format: "epoch  0  held-out loss %.4f (routing %.4f cost %.4f util %.4f switch %.4f) accuracy %.3f ET5 share %.3f lift %+.4f",
                   bestLoss.total, bestLoss.routing, bestLoss.cost, bestLoss.utilisation, bestLoss.switching, bestLoss.accuracy,
                   bestLoss.et5Share, bestLift))
        for epoch in 1...max(1, o.epochs) {
            train.shuffle(using: &rng)
            var sum = GateLossValue()
            var batches = 0
            for b in stride(from: 0, to: train.count, by: o.batchSize) {
                let batch = Array(train[b..<min(b + o.batchSize, train.count)])
                var gradient = GateParameters(zerosFor: shape)
                let value = withUnsafeMutablePointer(to: &gradient) {
                    GateLoss.evaluate(network, batch: batch, coefficients: o.coefficients, gradient: $0)
                }
                adam.update(&network.parameters, gradient: gradient)
                sum.total += value.total; sum.routing += value.routing; sum.cost += value.cost
                sum.utilisation += value.utilisation; sum.switching += value.switching
                sum.accuracy += value.accuracy; sum.et5Share += value.et5Share
                batches += 1
            }
            let nb = Float(max(batches, 1))
            let h = GateLoss.evaluate(network, batch: held, coefficients: o.coefficients)
            let l = lift(network)
            log(String(format: "epoch %2d  train loss %.4f (routing %.4f cost %.4f util %.4f switch %.4f) accuracy %.3f ET5 share %.3f | held-out loss %.4f accuracy %.3f ET5 share %.3f lift %+.4f",
                       epoch, sum.total / nb, sum.routing / nb, sum.cost / nb, sum.utilisation / nb, sum.switching / nb,
                       sum.accuracy / nb, sum.et5Share / nb, h.total, h.accuracy, h.et5Share, l))
            if l > bestLift + 1e-5 {
                bestLoss = h; bestLift = l; best = network.parameters; bestEpoch = epoch; sinceBest = 0
            } else {
                sinceBest += 1
                if sinceBest >= o.patience { log("early stop: held-out lift has not improved for \(o.patience) epochs"); break }
            }
        }
        network.parameters = best
        report.trainingSeconds = Date().timeIntervalSince(trainStart)
        report.bestEpoch = bestEpoch
        report.heldOutLoss = bestLoss
        report.heldOutLift = bestLift
        return (network, FitResult(bestEpoch: bestEpoch, loss: bestLoss, lift: bestLift))
    }

    /// Step 4 (after calibration): gate.json with its training record, and the weights.
    private func save(_ network: GateNetwork, vocabulary: GateVocabulary, checkpoint: MambaformerCheckpoint, fit: FitResult,
                      trainCount: Int, heldCount: Int, scoredCount: Int, report: GateTrainingReport) throws -> URL {
        let o = options
        var training = GateFile.Training()
        training.data = o.data.lastPathComponent
        training.examples = trainCount; training.heldOutExamples = heldCount
        training.epochs = o.epochs; training.bestEpoch = fit.bestEpoch; training.seed = o.seed
        training.lambdaCost = o.lambdaCost; training.targetEt5Share = o.coefficients.targetEt5Share
        training.coefficients = o.coefficients.dictionary
        training.horizon = o.horizon
        training.costUs = report.costUs
        let l = fit.loss
        training.heldOut = ["loss": l.total, "routing": l.routing, "cost": l.cost, "utilisation": l.utilisation,
                            "switching": l.switching, "accuracy": l.accuracy, "et5_share": l.et5Share, "lift": fit.lift]
        training.secondsPerExample = Float(report.scoringSeconds / Double(scoredCount))
        training.createdAt = ISO8601DateFormatter().string(from: Date())
        let output = o.output ?? checkpoint.root.appendingPathComponent("gate")
        let relativeTokenizer = Self.relativePath(from: output, to: vocabulary.tokenizerURL)
        let file = GateFile(vocabulary: .init(tokenizer: relativeTokenizer, size: vocabulary.tokenizer.vocabSize,
                                              fingerprint: fnv1a64Hex(vocabulary.tokenizerBytes)),
                            features: vocabulary.featurizer.spec, featureNames: FeatureSpec.numericNames, network: network.shape,
                            lexicon: vocabulary.lexicon.words.sorted(), policy: report.policy, training: training)
        try GateBundle(file: file, network: network, featurizer: vocabulary.featurizer).save(to: output)
        return output
    }

    /// Routing targets of one example: positions from the last prompt token to the
    /// second-to-last answer token, each labelled by the next `horizon` tokens' utility.
    func labelledSequence(_ s: ScoredExample, featurizer: GateFeaturizer, costUnitUs: Float) -> LabelledSequence {
        let o = options
        let n = s.answer.count
        var costET5 = s.costET5.map { $0 / costUnitUs }
        var costEMamba = s.costEMamba.map { $0 / costUnitUs }
        if let ratio = o.fixedCostRatio {
            // Cost proportional to expert tokens covering each gate token, at a fixed ratio.
            costEMamba = s.costEMamba.map { $0 > 0 ? 1 : 0 }
            costET5 = s.costET5.map { $0 > 0 ? ratio : 0 }
        }
        let utility = (0..<n).map { (s.llET5[$0] - s.llEMamba[$0]) - o.lambdaCost * (costET5[$0] - costEMamba[$0]) }
        // Confidence of the (simulated) producing span: its mean probability and entropy.
        var confidence: [TokenConfidence?] = Array(repeating: nil, count: n)
        let span = max(1, o.spanGateTokens)
        for chunk in stride(from: 0, to: n, by: span) {
            let r = chunk..<min(chunk + span, n)
            let prob = r.map { exp(min(0, s.llEMamba[$0])) }.reduce(0, +) / Float(r.count)
            let ent = r.map { s.entropyEMamba[$0] }.reduce(0, +) / Float(r.count)
            for j in r { confidence[j] = TokenConfidence(probability: prob, entropy: ent) }
        }
        let seq = featurizer.sequence(prompt: s.prompt, answer: s.answer, confidence: confidence)
        let p = s.prompt.count
        // Position t routes answer tokens t+1−p ..< t+1−p+horizon.
        let positions = max(0, p - 1)..<(p + n - 1)
        var u: [Float] = [], dc: [Float] = []
        for t in positions {
            let first = t + 1 - p
            let r = first..<min(first + max(1, o.horizon), n)
            u.append(r.map { utility[$0] }.reduce(0, +) / Float(r.count))
            dc.append(r.map { costET5[$0] - costEMamba[$0] }.reduce(0, +) / Float(r.count))
        }
        return LabelledSequence(sequence: seq, positions: positions, utility: u, costDelta: dc)
    }

    /// How much better than chance the network ranks routing decisions: at each simulated span
    /// start of the held-out sequences, the decision score (window mean of p, as the router
    /// computes it) against the mean utility of the span it routes. For ET5 shares of 20, 40,
    /// 60 and 80 %, the mean utility of the top-scored spans minus the mean of all spans,
    /// averaged (nats per token). Random routing at any share has an expected lift of 0.
    public static func routingLift(network: GateNetwork, held: [LabelledSequence], window: Int, spanGateTokens: Int) -> Float {
        lift(decisions(network: network, held: held, window: window, spanGateTokens: spanGateTokens))
    }

    /// The lift of (score, utility) decisions, as `routingLift` defines it.
    public static func lift(_ decisions: [(score: Float, utility: Float)]) -> Float {
        guard decisions.count >= 5 else { return 0 }
        // Ties in the score keep the data order (a constant network ranks like the data order).
        let ranked = decisions.enumerated().sorted { ($0.element.score, -$0.offset) > ($1.element.score, -$1.offset) }.map(\.element.utility)
        let mean = ranked.reduce(0, +) / Float(ranked.count)
        let shares: [Float] = [0.2, 0.4, 0.6, 0.8]
        return shares.map { share in
            let top = ranked.prefix(max(1, Int((share * Float(ranked.count)).rounded())))
            return top.reduce(0, +) / Float(top.count) - mean
        }.reduce(0, +) / Float(shares.count)
    }

    /// Thresholds per cost weight from the held-out decision scores (window means of p at
    /// simulated span starts): w = ½ keeps the trained rule (p̄ > ½); toward 0 and 1 the
    /// ET5 share moves linearly to 100 % and 0 %, each threshold being the score quantile
    /// that gives that share.
    public static func calibrate(network: GateNetwork, held: [LabelledSequence], window: Int, spanGateTokens: Int) -> GatePolicy {
        let scores = decisions(network: network, held: held, window: window, spanGateTokens: spanGateTokens).map(\.score)
        return calibrate(scores: scores, window: window)
    }

    /// The router's decisions on held-out sequences: at each simulated span start, the score
    /// (window mean of p, as the router computes it) and the mean utility of the span it routes.
    static func decisions(network: GateNetwork, held: [LabelledSequence], window: Int,
                          spanGateTokens: Int) -> [(score: Float, utility: Float)] {
        var decisions: [(score: Float, utility: Float)] = []
        let span = max(1, spanGateTokens)
        for item in held {
            let probabilities = network.forward(item.sequence).probabilities
            for d in stride(from: item.positions.lowerBound, to: item.positions.upperBound, by: span) {
                let tail = probabilities[max(0, d + 1 - window)...d]
                let first = d - item.positions.lowerBound
                let routed = item.utility[first..<min(first + span, item.utility.count)]
                decisions.append((tail.reduce(0, +) / Float(tail.count), routed.reduce(0, +) / Float(routed.count)))
            }
        }
        return decisions
    }

    public static func calibrate(scores: [Float], window: Int) -> GatePolicy {
        guard !scores.isEmpty else { return GatePolicy(window: window) }
        let sorted = scores.sorted(by: >)
        let trainedShare = Float(scores.filter { $0 > 0.5 }.count) / Float(scores.count)
        func share(_ w: Float) -> Float {
            w <= 0.5 ? 1 + (trainedShare - 1) * (w / 0.5) : trainedShare * (1 - (w - 0.5) / 0.5)
        }
        func threshold(forShare s: Float) -> Float {
            let k = Int((s * Float(sorted.count)).rounded())
            if k <= 0 { return min(1, sorted[0] + 1e-4) }
            if k >= sorted.count { return max(0, sorted[sorted.count - 1] - 1e-4) }
            return (sorted[k - 1] + sorted[k]) / 2
        }
        var points: [GatePolicy.Point] = [.init(costWeight: 0, threshold: 0, et5Share: 1)]
        for i in 1...9 {
            let w = Float(i) / 10
            let tau = w == 0.5 ? 0.5 : threshold(forShare: share(w))
            let achieved = Float(scores.filter { $0 > tau }.count) / Float(scores.count)
            points.append(.init(costWeight: w, threshold: tau, et5Share: achieved))
        }
        points.append(.init(costWeight: 1, threshold: 1, et5Share: 0))
        // Thresholds must not decrease with the cost weight.
        for i in 1..<points.count where points[i].threshold < points[i - 1].threshold { points[i].threshold = points[i - 1].threshold }
        return GatePolicy(window: window, points: points)
    }

    /// EMamba's input-embedding row norms, standardised; zeros beyond the table.
    static func embeddingNorms(emamba: URL, vocab: Int) throws -> [Float] {
        let file = try SafeTensorsFile(contentsOf: emamba.appendingPathComponent("model.safetensors"))
        let name = ["backbone.embeddings.weight", "backbone.embedding.weight"].first { file.has($0) }
        guard let name, let entry = file.entries[name], entry.shape.count == 2 else {
            throw GateError.invalidFile(file: emamba.appendingPathComponent("model.safetensors").path,
                                        reason: "no backbone.embeddings.weight [vocab, hidden] tensor")
        }
        let table = try file.tensor(name, shape: entry.shape)
        let rows = min(entry.shape[0], vocab)
        var norms = VocabularyStatistics.standardisedNorms(table.pointer, rows: rows, dims: entry.shape[1])
        norms += Array(repeating: 0, count: vocab - rows)
        return norms
    }

    static func relativePath(from directory: URL, to file: URL) -> String {
        let a = directory.standardizedFileURL.pathComponents
        let b = file.standardizedFileURL.pathComponents
        var common = 0
        while common < min(a.count, b.count), a[common] == b[common] { common += 1 }
        return (Array(repeating: "..", count: a.count - common) + b[common...]).joined(separator: "/")
    }
}

/// A progress bar on stderr (a terminal line rewritten in place; a plain line every 10 % otherwise).
final class ProgressLine {
    let total: Int
    let label: String
    let start = Date()
    var lastPrinted = -1
    let isTerminal = isatty(2) != 0

    init(total: Int, label: String) { self.total = total; self.label = label }

    func update(_ done: Int) {
        let percent = total > 0 ? done * 100 / total : 100
        guard isTerminal || percent / 10 != lastPrinted / 10 || done == total else { return }
        if !isTerminal && percent == lastPrinted { return }
        lastPrinted = percent
        let width = 30
        let filled = total > 0 ? done * width / total : width
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = String(format: "%@ [%@] %d/%d  %.0fs elapsed, ~%.0fs left", label, bar, done, total, elapsed, eta)
        FileHandle.standardError.write(Data((isTerminal ? "\r" + line : line + "\n").utf8))
    }

    func finish() { if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) } }
}
