import XCTest
import Foundation
@testable import Kernels

final class ActivationTests: XCTestCase {
    private func apply(_ v: [Float], _ f: (UnsafeMutablePointer<Float>, Int) -> Void) -> [Float] {
        var v = v
        v.withUnsafeMutableBufferPointer { f($0.baseAddress!, $0.count) }
        return v
    }

    func testSilu() {
        let y = apply([0, 1, -1, 20]) { Activations.silu($0, count: $1) }
        XCTAssertEqual(y[0], 0)
        XCTAssertEqual(y[1], 0.7310586, accuracy: 1e-6)      // 1·σ(1)
        XCTAssertEqual(y[2], -0.26894143, accuracy: 1e-6)    // −1·σ(−1)
        XCTAssertEqual(y[3], 20, accuracy: 1e-5)
    }

    func testSoftplusFollowsTorchThreshold() {
        let y = apply([0, 1, -30, 25]) { Activations.softplus($0, count: $1) }
        XCTAssertEqual(y[0], Float(log(2.0)), accuracy: 1e-7)
        XCTAssertEqual(y[1], 1.3132616, accuracy: 1e-6)
        XCTAssertEqual(y[2], 9.357623e-14, accuracy: 1e-18)  // log1p keeps tiny values
        XCTAssertEqual(y[3], 25)                             // above threshold 20: identity
    }

    func testRelu() {
        XCTAssertEqual(apply([-1, 0, 2.5, -0.0]) { Activations.relu($0, count: $1) }, [0, 0, 2.5, 0])
    }

    func testGeluNewMatchesTanhApproximation() {
        let y = apply([0, 1, -1, 3]) { Activations.geluNew($0, count: $1) }
        XCTAssertEqual(y[0], 0)
        XCTAssertEqual(y[1], 0.8411920, accuracy: 1e-6)      // torch gelu(1, approximate='tanh')
        XCTAssertEqual(y[2], -0.1588080, accuracy: 1e-6)
        XCTAssertEqual(y[3], 2.9963627, accuracy: 1e-5)
    }

    func testSoftmaxIsStableAndNormalised() {
        let y = apply([-50, -50 + log(3)]) { Activations.softmax($0, count: $1) }
        XCTAssertEqual(y[0], 0.25, accuracy: 1e-6)
        XCTAssertEqual(y[1], 0.75, accuracy: 1e-6)
        let masked = apply([0, -.infinity, 0]) { Activations.softmax($0, count: $1) }
        XCTAssertEqual(masked, [0.5, 0, 0.5])
        let allMasked = apply([-.infinity, -.infinity]) { Activations.softmax($0, count: $1) }
        XCTAssertEqual(allMasked, [0, 0])
    }

    func testRmsNorm() {
        // Row [3, 4]: mean of squares 12.5, scale 1/√(12.5+eps); weight [1, 2].
        let x: [Float] = [3, 4, 0, 0]
        let w: [Float] = [1, 2]
        var y = [Float](repeating: 9, count: 4)
        Norms.rmsNorm(x, weight: w, output: &y, rows: 2, dim: 2, eps: 1e-6)
        let s = 1 / Float((12.5 + 1e-6).squareRoot())
        XCTAssertEqual(y[0], 3 * s, accuracy: 1e-6)
        XCTAssertEqual(y[1], 8 * s, accuracy: 1e-6)
        XCTAssertEqual(Array(y[2...]), [0, 0])   // zero row stays zero thanks to eps
    }
}
