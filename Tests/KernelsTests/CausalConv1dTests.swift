import XCTest
@testable import Kernels

final class CausalConv1dTests: XCTestCase {
    // Two channels, kernel 3. Channel 0 weights [1, 2, 3] (3 multiplies the current input),
    // channel 1 weights [0, 0, 1] (identity) with bias 10.
    let weight: [Float] = [1, 2, 3, 0, 0, 1]
    let bias: [Float] = [0, 10]

    private func run(_ input: [Float], steps: Int, state: inout [Float]) -> [Float] {
        var out = [Float](repeating: .nan, count: steps * 2)
        CausalConv1d.forward(input: input, inputStride: 2, steps: steps, channels: 2, kernel: 3,
                             weight: weight, bias: bias, state: &state, output: &out, outputStride: 2)
        return out
    }

    func testZeroPaddedPrefill() {
        // channel 0 inputs 1, 2, 3, 4: out_t = 1·x_{t−2} + 2·x_{t−1} + 3·x_t
        var state = [Float](repeating: 0, count: 4)
        let out = run([1, 5, 2, 6, 3, 7, 4, 8], steps: 4, state: &state)
        XCTAssertEqual(out, [3, 15, 8, 16, 14, 17, 20, 18])
        XCTAssertEqual(state, [3, 7, 4, 8])    // the last two inputs, oldest first
    }

    func testStepByStepEqualsPrefill() {
        var state = [Float](repeating: 0, count: 4)
        var outs: [Float] = []
        let input: [Float] = [1, 5, 2, 6, 3, 7, 4, 8]
        for t in 0..<4 { outs += run(Array(input[(2 * t)..<(2 * t + 2)]), steps: 1, state: &state) }
        XCTAssertEqual(outs, [3, 15, 8, 16, 14, 17, 20, 18])
        XCTAssertEqual(state, [3, 7, 4, 8])
    }

    func testStridedInputReadsOnlyItsColumns() {
        // Input rows of width 3 where the third column must be ignored.
        var state = [Float](repeating: 0, count: 4)
        var out = [Float](repeating: 0, count: 4)
        let input: [Float] = [1, 5, 99, 2, 6, 99]
        CausalConv1d.forward(input: input, inputStride: 3, steps: 2, channels: 2, kernel: 3,
                             weight: weight, bias: nil, state: &state, output: &out, outputStride: 2)
        XCTAssertEqual(out, [3, 5, 8, 6])
    }
}
