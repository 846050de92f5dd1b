import XCTest
import Foundation
@testable import Kernels

final class SelectiveScanTests: XCTestCase {
    /// Owned copies of test arrays: `SelectiveScan.Inputs` keeps pointers beyond one call.
    private var buffers: [UnsafeMutablePointer<Float>] = []
    private func p(_ values: [Float]) -> UnsafeMutablePointer<Float> {
        let b = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
        b.initialize(from: values, count: values.count)
        buffers.append(b)
        return b
    }
    override func tearDown() { buffers.forEach { $0.deallocate() }; buffers = [] }

    /// One channel, state size 2, hand-computed with Δ = softplus(δ + bias).
    func testTwoStepsByHand() {
        let u: [Float] = [1, 2]
        let delta: [Float] = [0, 0.5]
        let z: [Float] = [1, -0.5]
        let inputs = SelectiveScan.Inputs(u: p(u), uStride: 1, delta: p(delta), deltaStride: 1, deltaBias: p([0.1]),
                                          a: p([-1, -2]), b: p([1, 0.5, -1, 2]), bStride: 2,
                                          c: p([0.5, 1, 1, -1]), cStride: 2, d: p([0.25]), z: p(z), zStride: 1)
        let state = p([0, 0]), y = p([0, 0])
        SelectiveScan.scan(inputs, steps: 2, channels: 1, stateSize: 2, state: state, y: y, yStride: 1)

        func softplus(_ x: Double) -> Double { log1p(exp(x)) }
        func silu(_ x: Double) -> Double { x / (1 + exp(-x)) }
        var h = [0.0, 0.0]
        var expected: [Double] = []
        let A = [-1.0, -2.0], B = [[1.0, 0.5], [-1.0, 2.0]], C = [[0.5, 1.0], [1.0, -1.0]]
        for t in 0..<2 {
            let dt = softplus(Double(delta[t]) + 0.1)
            for s in 0..<2 { h[s] = exp(A[s] * dt) * h[s] + dt * B[t][s] * Double(u[t]) }
            expected.append((h[0] * C[t][0] + h[1] * C[t][1] + 0.25 * Double(u[t])) * silu(Double(z[t])))
        }
        XCTAssertEqual(Double(y[0]), expected[0], accuracy: 1e-6)
        XCTAssertEqual(Double(y[1]), expected[1], accuracy: 1e-6)
        XCTAssertEqual(Double(state[0]), h[0], accuracy: 1e-6)
        XCTAssertEqual(Double(state[1]), h[1], accuracy: 1e-6)
        XCTAssertGreaterThan(abs(y[1]), 0.1)
    }

    /// Channels are independent and the single-step update equals the multi-step scan (bit for
    /// bit: a step takes its own path, vectorised over the state; 37 channels are 2 blocks of 16
    /// and a partial one).
    func testStepsEqualScanAcrossChannels() {
        stepsEqualScan(channels: 3, n: 4)
        stepsEqualScan(channels: 37, n: 16)
    }

    func stepsEqualScan(channels: Int, n: Int) {
        let steps = 5
        func rand(_ count: Int) -> [Float] { (0..<count).map { _ in Float.random(in: -1...1) } }
        let u = p(rand(steps * channels)), delta = p(rand(steps * channels)), z = p(rand(steps * channels))
        let a = p(rand(channels * n).map { -abs($0) - 0.1 })
        let b = p(rand(steps * n)), c = p(rand(steps * n)), d = p(rand(channels))
        let inputs = SelectiveScan.Inputs(u: u, uStride: channels, delta: delta, deltaStride: channels, deltaBias: nil,
                                          a: a, b: b, bStride: n, c: c, cStride: n, d: d, z: z, zStride: channels)
        let stateScan = p(Array(repeating: 0, count: channels * n)), yScan = p(Array(repeating: 0, count: steps * channels))
        SelectiveScan.scan(inputs, steps: steps, channels: channels, stateSize: n, state: stateScan, y: yScan, yStride: channels)

        let stateStep = p(Array(repeating: 0, count: channels * n)), yStep = p(Array(repeating: 0, count: steps * channels))
        for t in 0..<steps {
            let one = SelectiveScan.Inputs(u: u + t * channels, uStride: channels, delta: delta + t * channels, deltaStride: channels,
                                           deltaBias: nil, a: a, b: b + t * n, bStride: n, c: c + t * n, cStride: n,
                                           d: d, z: z + t * channels, zStride: channels)
            SelectiveScan.step(one, channels: channels, stateSize: n, state: stateStep, y: yStep + t * channels)
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: yScan, count: steps * channels)),
                       Array(UnsafeBufferPointer(start: yStep, count: steps * channels)))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: stateScan, count: channels * n)),
                       Array(UnsafeBufferPointer(start: stateStep, count: channels * n)))

        // Splitting channels (as a multi-threaded caller would) changes nothing.
        let stateSplit = p(Array(repeating: 0, count: channels * n)), ySplit = p(Array(repeating: 0, count: steps * channels))
        SelectiveScan.scan(inputs, steps: steps, channels: channels, stateSize: n, state: stateSplit, y: ySplit, yStride: channels, channelRange: 0..<1)
        SelectiveScan.scan(inputs, steps: steps, channels: channels, stateSize: n, state: stateSplit, y: ySplit, yStride: channels, channelRange: 1..<channels)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: ySplit, count: steps * channels)),
                       Array(UnsafeBufferPointer(start: yScan, count: steps * channels)))
    }

    /// The vectorised C kernel agrees with the scalar libm definition (a channel count that is
    /// not a multiple of the vector width, large Δ·A that underflows), and threads change nothing.
    func testFastKernelMatchesReferenceAndThreads() {
        let steps = 9, channels = 37, n = 16
        func rand(_ count: Int, _ r: ClosedRange<Float>) -> [Float] { (0..<count).map { _ in Float.random(in: r) } }
        let u = p(rand(steps * channels, -2...2)), delta = p(rand(steps * channels, -25...25)), z = p(rand(steps * channels, -3...3))
        let a = p((0..<(channels * n)).map { -Float($0 % n + 1) * Float.random(in: 0.5...20) })
        let b = p(rand(steps * n, -1...1)), c = p(rand(steps * n, -1...1)), d = p(rand(channels, 0...2)), bias = p(rand(channels, -1...1))
        let inputs = SelectiveScan.Inputs(u: u, uStride: channels, delta: delta, deltaStride: channels, deltaBias: bias,
                                          a: a, b: b, bStride: n, c: c, cStride: n, d: d, z: z, zStride: channels)
        let s0 = p(rand(channels * n, -1...1))
        let s1 = p(Array(UnsafeBufferPointer(start: s0, count: channels * n)))
        let s2 = p(Array(UnsafeBufferPointer(start: s0, count: channels * n)))
        let yRef = p(Array(repeating: 0, count: steps * channels)), yFast = p(Array(repeating: 0, count: steps * channels))
        let yThreads = p(Array(repeating: 0, count: steps * channels))
        SelectiveScan.scanReference(inputs, steps: steps, channels: channels, stateSize: n, state: s0, y: yRef, yStride: channels)
        SelectiveScan.scan(inputs, steps: steps, channels: channels, stateSize: n, state: s1, y: yFast, yStride: channels)
        // Errors relative to each output's scale (y is a sum of n terms that may cancel, so its
        // own magnitude is not the yardstick; the state's largest entry is).
        let yScale = max(1, (0..<(steps * channels)).map { abs(yRef[$0]) }.max()!)
        let hScale = max(1, (0..<(channels * n)).map { abs(s0[$0]) }.max()!)
        var worst: Float = 0
        for i in 0..<(steps * channels) { worst = max(worst, abs(yRef[i] - yFast[i]) / yScale) }
        for i in 0..<(channels * n) { worst = max(worst, abs(s0[i] - s1[i]) / hScale) }
        XCTAssertLessThan(worst, 2e-6)
        Kernels.threads = 2
        defer { Kernels.threads = 1 }
        SelectiveScan.scan(inputs, steps: steps, channels: channels, stateSize: n, state: s2, y: yThreads, yStride: channels)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: yThreads, count: steps * channels)),
                       Array(UnsafeBufferPointer(start: yFast, count: steps * channels)))
    }
}
