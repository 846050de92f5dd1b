@testable import Gate
@testable import GateTraining
import Random
import Wire
import XCTest

/// The network, the loss (gradients against finite differences) and the policy.
final class GateNetworkTests: XCTestCase {
    let shape = GateNetworkShape(vocabSize: 7, embeddingDims: 3, numericCount: FeatureSpec.numericNames.count, convKernel: 3, hidden: 5)

    func randomSequence(_ n: Int, promptCount: Int, seed: UInt64) -> GateSequence {
        var rng = SplitMix64(seed: seed)
        let ids = (0..<n).map { _ in Int(rng.next() % 7) }
        let numeric = (0..<(n * shape.numericCount)).map { _ in rng.nextSymmetric() }
        return GateSequence(ids: ids, numeric: numeric, promptCount: promptCount)
    }

    func testProbabilitiesAreCausal() {
        let network = GateNetwork(shape: shape, parameters: GateParameters(randomFor: shape, seed: 3))
        let a = randomSequence(12, promptCount: 5, seed: 1)
        var b = a
        // Change every token from position 8 on (ids and features).
        for t in 8..<12 {
            b.ids[t] = (a.ids[t] + 3) % 7
            for j in 0..<shape.numericCount { b.numeric[t * shape.numericCount + j] += 0.7 }
        }
        let pa = network.forward(a).probabilities, pb = network.forward(b).probabilities
        XCTAssertEqual(Array(pa[..<8]), Array(pb[..<8]), "p_t must not depend on tokens after t")
        XCTAssertNotEqual(pa[8], pb[8], "p_8 must depend on token 8")
        // Scoring a tail only reads the conv's history: same values as the full pass.
        let tail = network.forward(a, range: 9..<12).probabilities
        for (x, y) in zip(tail, pa[9...]) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        XCTAssertTrue(pa.allSatisfy { $0 > 0 && $0 < 1 })
    }

    func batch() -> [LabelledSequence] {
        [LabelledSequence(sequence: randomSequence(9, promptCount: 4, seed: 11), positions: 3..<8,
                          utility: [0.8, -1.5, 2.0, -0.3, 0.6], costDelta: [0.5, 0.5, 0.7, 0.2, 0.1]),
         LabelledSequence(sequence: randomSequence(6, promptCount: 2, seed: 12), positions: 1..<5,
                          utility: [-0.9, 1.1, 7.0, -0.2], costDelta: [0.3, 0.4, 0.4, 0.9])]
    }

    /// Each loss term alone, then all together: analytic gradient vs central differences.
    func testLossGradientsMatchFiniteDifferences() {
        var terms: [(String, GateLossCoefficients)] = []
        for name in ["routing", "cost", "utilisation", "switching", "all"] {
            var k = GateLossCoefficients()
            k.routing = name == "routing" || name == "all" ? 1 : 0
            k.cost = name == "cost" || name == "all" ? 0.7 : 0
            k.utilisation = name == "utilisation" || name == "all" ? 2 : 0
            k.switching = name == "switching" || name == "all" ? 3 : 0
            k.targetEt5Share = 0.3
            terms.append((name, k))
        }
        let items = batch()
        for (name, k) in terms {
            var network = GateNetwork(shape: shape, parameters: GateParameters(randomFor: shape, seed: 5))
            network.parameters.b2[0] = 0.2
            var gradient = GateParameters(zerosFor: shape)
            _ = withUnsafeMutablePointer(to: &gradient) { GateLoss.evaluate(network, batch: items, coefficients: k, gradient: $0) }
            var checked = 0
            for (i, kp) in GateParameters.keyPaths.enumerated() {
                let count = network.parameters[keyPath: kp].count
                for index in Set([0, count / 2, count - 1]) {
                    let eps: Float = 1e-2
                    var plus = network, minus = network
                    plus.parameters[keyPath: kp][index] += eps
                    minus.parameters[keyPath: kp][index] -= eps
                    let numeric = (GateLoss.evaluate(plus, batch: items, coefficients: k).total
                                   - GateLoss.evaluate(minus, batch: items, coefficients: k).total) / (2 * eps)
                    let analytic = gradient[keyPath: kp][index]
                    XCTAssertEqual(analytic, numeric, accuracy: 2e-3 + 2e-2 * abs(numeric),
                                   "\(name): d/d \(GateParameters.names[i])[\(index)]")
                    checked += 1
                }
            }
            XCTAssertGreaterThan(checked, 14)
        }
    }

    func testLossValuesOnAKnownCase() {
        // A network that outputs p = σ(0) = ½ everywhere: every term has a closed form.
        let network = GateNetwork(shape: shape, parameters: GateParameters(zerosFor: shape))
        var k = GateLossCoefficients(); k.targetEt5Share = 0.1
        let item = LabelledSequence(sequence: randomSequence(4, promptCount: 1, seed: 2), positions: 0..<3,
                                    utility: [1, -3, 10], costDelta: [1, 1, 4])
        let v = GateLoss.evaluate(network, batch: [item], coefficients: k)
        XCTAssertEqual(v.routing, Float(log(2.0)), accuracy: 1e-5)
        XCTAssertEqual(v.cost, 0.5 * 6 / 3, accuracy: 1e-6)
        XCTAssertEqual(v.utilisation, 0.16, accuracy: 1e-6)
        XCTAssertEqual(v.switching, 0, accuracy: 1e-9)
        XCTAssertEqual(v.positions, 3)
    }

    func testAdamReducesTheLoss() {
        var network = GateNetwork(shape: shape, parameters: GateParameters(randomFor: shape, seed: 9))
        var adam = AdamOptimizer(shape: shape, learningRate: 0.02)
        let items = batch()
        let k = GateLossCoefficients()
        let before = GateLoss.evaluate(network, batch: items, coefficients: k).total
        for _ in 0..<100 {
            var g = GateParameters(zerosFor: shape)
            _ = withUnsafeMutablePointer(to: &g) { GateLoss.evaluate(network, batch: items, coefficients: k, gradient: $0) }
            adam.update(&network.parameters, gradient: g)
        }
        XCTAssertLessThan(GateLoss.evaluate(network, batch: items, coefficients: k).total, before * 0.7)
    }

    func testPolicyThresholdsHysteresisAndForcedExpert() {
        let policy = GatePolicy(window: 2, hysteresisMargin: 0.1, points: [
            .init(costWeight: 0, threshold: 0, et5Share: 1), .init(costWeight: 0.5, threshold: 0.4, et5Share: 0.3),
            .init(costWeight: 1, threshold: 1, et5Share: 0)])
        XCTAssertEqual(policy.threshold(costWeight: 0.25), 0.2, accuracy: 1e-6)
        XCTAssertEqual(policy.threshold(costWeight: 0.75), 0.7, accuracy: 1e-6)
        XCTAssertEqual(policy.threshold(costWeight: -3), 0)
        XCTAssertEqual(policy.threshold(costWeight: 7), 1)
        XCTAssertEqual(policy.score([0.9, 0.2, 0.6]), 0.4, accuracy: 1e-6, "mean of the last 2")
        XCTAssertEqual(policy.score([]), 0)
        let p: [Float] = [0.45, 0.45]   // score 0.45 vs threshold 0.4 (cost weight 0.5)
        XCTAssertEqual(policy.decide(probabilities: p, policy: Policy(costWeight: 0.5), previous: nil).pool, .et5)
        XCTAssertEqual(policy.decide(probabilities: p, policy: Policy(costWeight: 0.5), previous: .emamba).pool, .emamba,
                       "switching away from EMamba needs the threshold + margin")
        XCTAssertEqual(policy.decide(probabilities: [0.35, 0.35], policy: Policy(costWeight: 0.5), previous: .et5).pool, .et5,
                       "staying on ET5 only needs the threshold − margin")
        XCTAssertEqual(policy.decide(probabilities: [0.99], policy: Policy(costWeight: 1), previous: .et5).pool, .emamba)
        XCTAssertEqual(policy.decide(probabilities: [0.01], policy: Policy(costWeight: 0), previous: .emamba).pool, .et5)
        let forced = policy.decide(probabilities: [0.99, 0.99], policy: Policy(costWeight: 0.5, forced: .emamba), previous: nil)
        XCTAssertEqual(forced, GateDecision(pool: .emamba, score: 0.99))
    }

    func testCalibrationGivesMonotoneThresholdsAndTheTargetShares() {
        let scores = (0..<100).map { Float($0) / 100 }   // 0.00 … 0.99: 49 % above ½
        let policy = GateTrainer.calibrate(scores: scores, window: 3)
        XCTAssertEqual(policy.window, 3)
        XCTAssertEqual(policy.points.count, 11)
        for (a, b) in zip(policy.points, policy.points.dropFirst()) { XCTAssertLessThanOrEqual(a.threshold, b.threshold) }
        let half = policy.points.first { $0.costWeight == 0.5 }!
        XCTAssertEqual(half.threshold, 0.5)
        XCTAssertEqual(half.et5Share, 0.49, accuracy: 1e-6)
        let quarter = policy.points.first { abs($0.costWeight - 0.3) < 1e-6 }!
        // Share at 0.3: 1 + (0.49 − 1)·0.6 = 0.694 → about 69 of 100 scores above the threshold.
        XCTAssertEqual(quarter.et5Share, 0.69, accuracy: 0.011)
        XCTAssertEqual(policy.points.last!.et5Share, 0)
    }

    /// Routing lift: positive when high scores go with high utility, negative when reversed,
    /// and exactly the mean of the top shares minus the overall mean.
    func testRoutingLiftRewardsRankingByUtility() {
        let utility: [Float] = (0..<10).map { Float($0) }           // mean 4.5
        let perfect = GateTrainer.lift(utility.map { (score: $0 / 10, utility: $0) })
        // Top 2, 4, 6, 8 of 10: means 8.5, 7.5, 6.5, 5.5 → lifts 4, 3, 2, 1 → 2.5.
        XCTAssertEqual(perfect, 2.5, accuracy: 1e-6)
        let reversed = GateTrainer.lift(utility.map { (score: 1 - $0 / 10, utility: $0) })
        XCTAssertEqual(reversed, -2.5, accuracy: 1e-6)
        // A constant score keeps the data order: with utilities ascending, the "top" spans are
        // the worst ones (a constant gate is no better than the order the data came in).
        let constantAscending = GateTrainer.lift(utility.map { (score: 0.5, utility: $0) })
        XCTAssertEqual(constantAscending, -2.5, accuracy: 1e-6)
        XCTAssertEqual(GateTrainer.lift([(score: 1, utility: 1)]), 0)   // too few decisions to rank
    }
}
