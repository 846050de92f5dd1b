import Gate
import Foundation

/// A feature sequence with routing targets for the positions where a decision is learned:
/// position t (the last prompt token, then every answer token but the last) is labelled by
/// the utility of ET5 over EMamba for the tokens it would route, the next `horizon` answer
/// tokens (p_t is P(ET5 | tokens ≤ t): it must decide before those tokens exist).
public struct LabelledSequence: Sendable {
    public var sequence: GateSequence
    /// Labelled positions (consecutive).
    public var positions: Range<Int>
    /// Per labelled position: mean utility u of the tokens routed (nats, cost already priced in).
    public var utility: [Float]
    /// Per labelled position: mean extra cost of ET5 over EMamba, in EMamba-token units.
    public var costDelta: [Float]

    public init(sequence: GateSequence, positions: Range<Int>, utility: [Float], costDelta: [Float]) {
        self.sequence = sequence; self.positions = positions; self.utility = utility; self.costDelta = costDelta
    }
}

/// The utility-guided multi-objective loss of the paper, over a batch of sequences:
///
///     L = a · Σ |ū_t| · BCE(p_t, [ū_t > 0]) / Σ |ū_t|      routing: follow the utility, weighted by how much is at stake
///       + b · mean_t p_t · Δc_t                            expected extra compute of the soft decisions
///       + c · (mean_t p_t − target share)²                 expert utilisation toward a target ET5 share
///       + d · mean_t (p_t − p_{t−1})²                      switching: stable decisions make stable spans
public struct GateLossCoefficients: Sendable, Equatable {
    public var routing: Float = 1
    public var cost: Float = 0.1
    public var utilisation: Float = 1
    public var switching: Float = 0.1
    public var targetEt5Share: Float = 0.1
    /// |ū| weights are clipped here so one badly predicted token cannot dominate a batch.
    public var utilityClip: Float = 5
    public init() {}

    public var dictionary: [String: Float] {
        ["routing": routing, "cost": cost, "utilisation": utilisation, "switching": switching, "utility_clip": utilityClip]
    }
}

public struct GateLossValue: Sendable {
    public var routing: Float = 0
    public var cost: Float = 0
    public var utilisation: Float = 0
    public var switching: Float = 0
    public var total: Float = 0
    /// Fraction of labelled positions where (p > ½) agrees with (ū > 0).
    public var accuracy: Float = 0
    /// Mean of the hard decisions (p > ½): the ET5 share.
    public var et5Share: Float = 0
    public var positions = 0
}

public enum GateLoss {
    /// The loss of `batch` and, when `gradient` is given, its gradient (accumulated).
    public static func evaluate(_ network: GateNetwork, batch: [LabelledSequence], coefficients k: GateLossCoefficients,
                                gradient: UnsafeMutablePointer<GateParameters>? = nil) -> GateLossValue {
        var activations: [GateNetwork.Activations] = []
        var n = 0
        var weightSum: Float = 0
        var pSum: Float = 0
        for item in batch {
            let a = network.forward(item.sequence)
            activations.append(a)
            n += item.positions.count
            for (i, t) in item.positions.enumerated() {
                weightSum += min(abs(item.utility[i]), k.utilityClip)
                pSum += a.probabilities[t]
            }
        }
        var value = GateLossValue()
        guard n > 0 else { return value }
        let N = Float(n)
        let W = max(weightSum, 1e-6)
        let meanP = pSum / N
        value.utilisation = (meanP - k.targetEt5Share) * (meanP - k.targetEt5Share)
        var correct = 0, hard = 0
        for (b, item) in batch.enumerated() {
            let a = activations[b]
            var dLogits = [Float](repeating: 0, count: item.sequence.count)
            for (i, t) in item.positions.enumerated() {
                let p = a.probabilities[t]
                let z = a.logits[t]
                let u = item.utility[i]
                let y: Float = u > 0 ? 1 : 0
                let w = min(abs(u), k.utilityClip)
                // BCE on the logit, stably: log(1 + e^z) − y·z.
                let bce = max(z, 0) + log1p(exp(-abs(z))) - y * z
                value.routing += w * bce / W
                value.cost += p * item.costDelta[i] / N
                if (p > 0.5) == (u > 0) { correct += 1 }
                if p > 0.5 { hard += 1 }
                var dp = k.cost * item.costDelta[i] / N + k.utilisation * 2 * (meanP - k.targetEt5Share) / N
                if i > 0 {
                    let prev = a.probabilities[t - 1]
                    value.switching += (p - prev) * (p - prev) / N
                    dp += k.switching * 2 * (p - prev) / N
                }
                if i + 1 < item.positions.count {
                    dp -= k.switching * 2 * (a.probabilities[t + 1] - p) / N
                }
                dLogits[t] = k.routing * w * (p - y) / W + dp * p * (1 - p)
            }
            if let gradient { network.backward(item.sequence, a, dLogits: dLogits, into: &gradient.pointee) }
        }
        value.total = k.routing * value.routing + k.cost * value.cost + k.utilisation * value.utilisation + k.switching * value.switching
        value.accuracy = Float(correct) / N
        value.et5Share = Float(hard) / N
        value.positions = n
        return value
    }
}

/// Adam (Kingma & Ba) over every parameter tensor.
public struct AdamOptimizer {
    public var learningRate: Float
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    var m: GateParameters
    var v: GateParameters
    var step = 0

    public init(shape: GateNetworkShape, learningRate: Float) {
        self.learningRate = learningRate
        m = GateParameters(zerosFor: shape); v = GateParameters(zerosFor: shape)
    }

    public mutating func update(_ parameters: inout GateParameters, gradient: GateParameters) {
        step += 1
        let c1 = 1 - pow(beta1, Float(step)), c2 = 1 - pow(beta2, Float(step))
        for kp in GateParameters.keyPaths {
            let g = gradient[keyPath: kp]
            for i in g.indices where g[i] != 0 || m[keyPath: kp][i] != 0 {
                let mi = beta1 * m[keyPath: kp][i] + (1 - beta1) * g[i]
                let vi = beta2 * v[keyPath: kp][i] + (1 - beta2) * g[i] * g[i]
                m[keyPath: kp][i] = mi; v[keyPath: kp][i] = vi
                parameters[keyPath: kp][i] -= learningRate * (mi / c1) / ((vi / c2).squareRoot() + epsilon)
            }
        }
    }
}
