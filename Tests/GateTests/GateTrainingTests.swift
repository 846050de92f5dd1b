import Engine
import Tokenizers
import Foundation
import TestCommon
import XCTest
@testable import Gate
@testable import GateTraining
@testable import RouterNode
import Wire

/// Save/load of gate/, a tiny end-to-end training run on the demo checkpoint, and the
/// router picking the trained gate up.
final class GateTrainingTests: XCTestCase {
    static let repositoryRoot = TestPaths.repositoryRoot
    static let demo = repositoryRoot.appendingPathComponent("models/demo")
    static let trainData = repositoryRoot.appendingPathComponent("data/train.jsonl")

    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gate-tests-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// A checkpoint folder whose experts link to the demo's, so a gate can be written into it.
    func makeCheckpoint() throws -> URL {
        let root = scratch.appendingPathComponent("ckpt")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try #"{"format": 1, "emamba": "emamba", "et5": "et5", "gate": "gate"}"#.write(
            to: root.appendingPathComponent("mambaformer.json"), atomically: true, encoding: .utf8)
        for expert in ["emamba", "et5"] {
            try FileManager.default.createSymbolicLink(at: root.appendingPathComponent(expert),
                                                       withDestinationURL: Self.demo.appendingPathComponent(expert))
        }
        return root
    }

    func testSaveLoadRoundTrip() throws {
        let root = try makeCheckpoint()
        let tokenizerURL = root.appendingPathComponent("emamba/tokenizer.json")
        let bytes = try Data(contentsOf: tokenizerURL)
        let tokenizer = try Tokenizer(json: bytes)
        var spec = FeatureSpec(); spec.embeddingDims = 4
        let shape = GateNetworkShape(vocabSize: tokenizer.vocabSize, embeddingDims: 4, numericCount: spec.numericCount, convKernel: 3, hidden: 6)
        let stats = VocabularyStatistics(rarity: (0..<shape.vocabSize).map { Float($0 % 7) / 7 },
                                         embeddingNorm: (0..<shape.vocabSize).map { Float($0 % 5) - 2 })
        let policy = GatePolicy(window: 3, hysteresisMargin: 0.07, points: [.init(costWeight: 0, threshold: 0, et5Share: 1),
                                                                            .init(costWeight: 0.5, threshold: 0.42, et5Share: 0.2),
                                                                            .init(costWeight: 1, threshold: 1, et5Share: 0)])
        var training = GateFile.Training(); training.seed = 77; training.costUs = ["et5": 900, "emamba": 300]
        let file = GateFile(vocabulary: .init(tokenizer: "../emamba/tokenizer.json", size: shape.vocabSize, fingerprint: fnv1a64Hex(bytes)),
                            features: spec, featureNames: FeatureSpec.numericNames, network: shape,
                            lexicon: ["gingivitis", "molar"], policy: policy, training: training)
        let bundle = GateBundle(file: file, network: GateNetwork(shape: shape, parameters: GateParameters(randomFor: shape, seed: 4)),
                                featurizer: GateFeaturizer(tokenizer: tokenizer, spec: spec, statistics: stats, lexicon: Lexicon(words: file.lexicon)))
        let dir = root.appendingPathComponent("gate")
        try bundle.save(to: dir)
        let loaded = try GateBundle.load(from: dir)
        XCTAssertEqual(loaded.file, file)
        XCTAssertEqual(loaded.network.parameters, bundle.network.parameters)
        XCTAssertEqual(loaded.featurizer.statistics, stats)
        XCTAssertEqual(loaded.featurizer.lexicon, Lexicon(words: ["gingivitis", "molar"]))
        let input = GateInput(question: "What is gingivitis?", context: "", answerSoFar: "inflammation of the", previous: .emamba,
                              previousConfidence: 0.6, previousEntropy: 2.5, policy: Policy(costWeight: 0.5))
        XCTAssertEqual(TrainedGate(bundle: loaded).decide(input), TrainedGate(bundle: bundle).decide(input))
        XCTAssertEqual(try TrainedGate(bundle: loaded).windowProbabilities(input).count, 3)

        // A changed tokenizer or a truncated weight file fails with the file named.
        var tampered = file; tampered.vocabulary.fingerprint = "0000000000000000"
        try GateBundle(file: tampered, network: bundle.network, featurizer: bundle.featurizer).save(to: scratch.appendingPathComponent("bad"))
        try FileManager.default.createSymbolicLink(at: scratch.appendingPathComponent("emamba"), withDestinationURL: Self.demo.appendingPathComponent("emamba"))
        XCTAssertThrowsError(try GateBundle.load(from: scratch.appendingPathComponent("bad"))) { error in
            XCTAssertTrue("\(error)".contains("tokenizer changed"), "\(error)")
        }
        let weights = dir.appendingPathComponent("gate.safetensors")
        try Data(try Data(contentsOf: weights).prefix(100)).write(to: weights)
        XCTAssertThrowsError(try GateBundle.load(from: dir)) { error in
            XCTAssertTrue("\(error)".contains("gate.safetensors"), "\(error)")
        }
    }

    /// `default_cost_weight` in mambaformer.json: read (0…1), refused otherwise with the file
    /// named, and written by `eval --write-default` from the report's best gate row (highest
    /// F1, the cheaper weight on a tie) without touching the other keys.
    func testDefaultCostWeightIsReadCheckedAndWrittenFromTheBestGateRow() throws {
        let root = try makeCheckpoint()
        XCTAssertNil(try MambaformerCheckpoint(root: root).defaultCostWeight)
        var report = EvaluationReport(checkpoint: "c", data: "d", examples: 1, gateKind: "trained",
                                      policies: [PolicyResult(name: "emamba-only"), PolicyResult(name: "et5-only")],
                                      oracle: PolicyResult(name: "oracle"), gateDecisionUs: 0, emambaSpanUs: 0, secondsTotal: 0)
        for (w, f1) in [(Float(0), Float(0.18)), (0.25, 0.201), (0.5, 0.176), (0.75, 0.201), (1, 0.07)] {
            var row = PolicyResult(name: String(format: "gate@%.2f", w), costWeight: w)
            row.f1 = f1
            report.policies.append(row)
        }
        var random = PolicyResult(name: "random@50%")
        random.f1 = 0.9
        report.policies.append(random)
        XCTAssertEqual(report.bestCostWeight, 0.75, "the best F1, the cheaper of two equal ones; baselines do not count")
        try MambaformerCheckpoint.writeDefaultCostWeight(0.25, root: root)
        let checkpoint = try MambaformerCheckpoint(root: root)
        XCTAssertEqual(checkpoint.defaultCostWeight, 0.25)
        XCTAssertNotNil(checkpoint.emamba, "the other keys are kept")
        for bad in ["1.5", "-0.1", "\"0.25\"", "true"] {
            try #"{"format": 1, "emamba": "emamba", "et5": "et5", "default_cost_weight": \#(bad)}"#.write(
                to: root.appendingPathComponent("mambaformer.json"), atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try MambaformerCheckpoint(root: root), bad) { error in
                XCTAssertTrue("\(error)".contains("default_cost_weight"), "\(error)")
            }
        }
    }

    func testGateChoiceFallsBackToTheRuleWithoutATrainedGate() throws {
        let root = try makeCheckpoint()
        let checkpoint = try MambaformerCheckpoint(root: root)
        XCTAssertNil(checkpoint.gate)
        XCTAssertEqual(try GateChoice.make("auto", gateDirectory: checkpoint.gate).kind, "rule")
        XCTAssertEqual(try GateChoice.make("alternate", gateDirectory: nil).kind, "alternate")
        XCTAssertThrowsError(try GateChoice.make("trained", gateDirectory: checkpoint.gate))
        XCTAssertThrowsError(try GateChoice.make("bogus", gateDirectory: nil))
    }

    /// ~20 demo examples: both experts teacher-forced, a few epochs, gate/ written, loadable,
    /// and the router's `auto` choice runs it.
    func testTinyEndToEndTrainingWritesAGateTheRouterUses() throws {
        let root = try makeCheckpoint()
        var options = GateTrainingOptions(checkpoint: root, data: Self.trainData)
        options.limit = 20
        options.epochs = 3
        options.seed = 7
        var lines: [String] = []
        let report = try GateTrainer(options: options, log: { lines.append($0) }).run()
        XCTAssertEqual(report.examples + report.heldOut, 20)
        XCTAssertEqual(report.output?.standardizedFileURL.path, root.appendingPathComponent("gate").standardizedFileURL.path)
        XCTAssertTrue(lines.contains { $0.hasPrefix("epoch  1") && $0.contains("ET5 share") }, lines.joined(separator: "\n"))
        XCTAssertGreaterThan(report.costUs["et5"] ?? 0, 0)
        XCTAssertGreaterThan(report.costUs["emamba"] ?? 0, 0)

        let checkpoint = try MambaformerCheckpoint(root: root)
        XCTAssertNotNil(checkpoint.gate)
        let gate = try GateChoice.make("auto", gateDirectory: checkpoint.gate)
        XCTAssertEqual(gate.kind, "trained")
        let loaded = try GateBundle.load(from: checkpoint.gate!)
        XCTAssertEqual(loaded.file.vocabulary.tokenizer, "../emamba/tokenizer.json")
        XCTAssertEqual(loaded.file.training.examples, report.examples)
        XCTAssertFalse(loaded.file.lexicon.isEmpty)
        for w in [Float(0), 0.5, 1] {
            let d = gate.decide(GateInput(question: "What is gingivitis?", context: "", answerSoFar: "", previous: nil,
                                          previousConfidence: nil, policy: Policy(costWeight: w)))
            XCTAssertTrue((0...1).contains(d.score))
            if w == 0 { XCTAssertEqual(d.pool, .et5) }
            if w == 1 { XCTAssertEqual(d.pool, .emamba) }
        }

        // The router core runs the trained gate: a span goes out and its score is in the trace.
        let core = RouterCore(config: RouterConfig(), gate: gate)
        for (id, pool) in [([UInt8(1)], PoolKind.emamba), ([2], .et5)] {
            _ = core.expertFrame(id, .success(Envelope(.ready(Ready(pool: pool, modelId: "m", replicaId: "\(pool)", capacity: 2, softwareVersion: "t")))), now: 0)
        }
        let actions = core.gatewayFrame([9], .success(Envelope(.answerRequest(AnswerRequest(
            requestId: "r", question: "What is gingivitis?", maxNewTokens: 8, policy: Policy(costWeight: 0))))), now: 0)
        let sent = actions.compactMap { a -> PeerIdentity? in
            if case .toExpert(let id, let e) = a, case .spanRequest = e.body { return id }
            return nil
        }
        XCTAssertEqual(sent, [[2]], "cost weight 0 must send the first span to ET5")
    }
}
