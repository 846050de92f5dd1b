import Foundation
import XCTest
@testable import Kernels

/// The one exp and the one softmax every kernel uses (attention, SiLU, the selective scan's
/// decay), against libm and a double-precision reference.
final class SoftmaxTests: XCTestCase {
    func testVectorisedExpMatchesLibm() {
        var xs: [Float] = []
        var x: Float = -87
        while x <= 10 { xs.append(x); x += 0.0137 }
        var ours = xs
        ours.withUnsafeMutableBufferPointer { Activations.exp($0.baseAddress!, count: $0.count) }
        var worst: Float = 0
        for (v, e) in zip(xs, ours) { worst = max(worst, abs(e - expf(v)) / expf(v)) }
        XCTAssertLessThanOrEqual(worst, 5e-7, "worst relative error of the vectorised exp")
        var tiny: [Float] = [-.infinity, -100]
        tiny.withUnsafeMutableBufferPointer { Activations.exp($0.baseAddress!, count: 2) }
        XCTAssertEqual(tiny, [0, 0])
    }

    func testSoftmaxMatchesADoublePrecisionReference() {
        var generator = SystemRandomNumberGenerator()
        for count in [1, 7, 16, 17, 33, 100, 256, 1000] {
            var a = (0..<count).map { _ in Float.random(in: -30...30, using: &generator) }
            if count > 3 { a[2] = -.infinity }  // a masked entry
            let m = Double(a.max()!)
            let exps = a.map { $0 == -.infinity ? 0 : Foundation.exp(Double($0) - m) }
            let sum = exps.reduce(0, +)
            a.withUnsafeMutableBufferPointer { Activations.softmax($0.baseAddress!, count: count) }
            for (x, e) in zip(a, exps) {
                XCTAssertEqual(Double(x), e / sum, accuracy: 2e-6 * (e / sum) + 1e-12, "count \(count)")
            }
            XCTAssertEqual(a.reduce(0, +), 1, accuracy: 1e-5)
        }
        var dead: [Float] = [-.infinity, -.infinity]
        dead.withUnsafeMutableBufferPointer { Activations.softmax($0.baseAddress!, count: 2) }
        XCTAssertEqual(dead, [0, 0], "a fully masked row is zeros, not NaN")
    }

    /// Attention with a causal mask and a relative bias, against the formula written out.
    func testMultiHeadAttentionMatchesTheFormula() {
        let heads = 2, dHead = 3, rows = 3, past = 2, keyCount = past + rows
        var generator = SystemRandomNumberGenerator()
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &generator) } }
        let q = random(rows * heads * dHead), k = random(keyCount * heads * dHead), v = random(keyCount * heads * dHead)
        // Bias vector per head over offsets j − i in −(rows−1) ... keyCount−1.
        let span = keyCount + rows - 1
        let biasValues = random(heads * span)
        var out = [Float](repeating: .nan, count: rows * heads * dHead)
        var scores = [Float](repeating: 0, count: rows * keyCount)
        biasValues.withUnsafeBufferPointer { b in
            let bias = RelativePositionBias(base: b.baseAddress!, headStride: span, origin: rows - 1)
            Attention.multiHead(q: q, qStride: heads * dHead, rows: rows, keys: k, values: v, kvStride: heads * dHead,
                                keyCount: keyCount, heads: heads, dHead: dHead, bias: bias, causalPast: past,
                                scores: &scores, out: &out, outStride: heads * dHead)
        }
        for h in 0..<heads {
            for i in 0..<rows {
                let visible = past + i + 1
                var s = (0..<visible).map { j -> Double in
                    var dot = 0.0
                    for d in 0..<dHead { dot += Double(q[i * heads * dHead + h * dHead + d]) * Double(k[j * heads * dHead + h * dHead + d]) }
                    return dot + Double(biasValues[h * span + rows - 1 - i + j])
                }
                let m = s.max()!
                s = s.map { Foundation.exp($0 - m) }
                let total = s.reduce(0, +)
                for d in 0..<dHead {
                    var expected = 0.0
                    for j in 0..<visible { expected += s[j] / total * Double(v[j * heads * dHead + h * dHead + d]) }
                    XCTAssertEqual(Double(out[i * heads * dHead + h * dHead + d]), expected, accuracy: 1e-5, "head \(h) row \(i)")
                }
            }
        }
    }
}
