import COpenBLAS
import XCTest
@testable import Kernels

/// bf16 weights: rounding as torch does, exact widening, and `Blas.linear` on bf16 equal to
/// sgemm on the widened f32 weights for every path (1 row, small batches, prefill blocks).
final class BFloat16Tests: XCTestCase {
    func testRoundingIsToNearestTiesToEven() {
        XCTAssertEqual(BFloat16.rounded(1.0), 0x3f80)
        XCTAssertEqual(BFloat16.rounded(-2.0), 0xc000)
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa (1.0).
        XCTAssertEqual(BFloat16.rounded(Float(bitPattern: 0x3f80_8000)), 0x3f80)
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶: up to the even one.
        XCTAssertEqual(BFloat16.rounded(Float(bitPattern: 0x3f81_8000)), 0x3f82)
        XCTAssertEqual(BFloat16.rounded(Float(bitPattern: 0x3f80_8001)), 0x3f81)   // just above half: up
        XCTAssertEqual(BFloat16.rounded(.infinity), 0x7f80)
        XCTAssertEqual(BFloat16.rounded(Float.greatestFiniteMagnitude), 0x7f80)     // rounds over to ∞, as torch
        let nan = BFloat16.rounded(Float(bitPattern: 0x7f80_0001))                  // a NaN whose payload is in the low bits
        XCTAssertEqual(nan & 0x7f80, 0x7f80)
        XCTAssertNotEqual(nan & 0x007f, 0, "NaN must not round to infinity")
    }

    func testWideningIsExact() {
        let bits: [UInt16] = [0x0000, 0x8000, 0x3f80, 0xc2f7, 0x0001, 0x7f80, 0x7fc0, 0x1234, 0xfedc]
        var out = [Float](repeating: 0, count: bits.count)
        BFloat16.widen(bits, into: &out, count: bits.count)
        for (b, f) in zip(bits, out) {
            XCTAssertEqual(f.bitPattern, UInt32(b) << 16)
            if !f.isNaN { XCTAssertEqual(BFloat16.rounded(f), b) }
        }
    }

    func testLinearOnBF16EqualsSgemmOnWidenedWeights() {
        var rng = SystemRandomNumberGenerator()
        for threads in [1, 2] {
            SelectiveScan.threads = threads
            defer { SelectiveScan.threads = 1 }
            // 1 row, small batches on both sides of the 8-row block, and prefill sizes (sgemm on
            // widened blocks; n = 1200 with k = 300 spans several blocks).
            for m in [1, 3, 8, 9, 16, 17, 40] {
                for (n, k) in [(7, 5), (600, 37), (1200, 300)] {
                    let lda = k + 3, ldc = n + 2
                    let a = (0..<(m * lda)).map { _ in Float.random(in: -1...1, using: &rng) }
                    let bits = (0..<(n * k)).map { _ in BFloat16.rounded(Float.random(in: -1...1, using: &rng)) }
                    let wide = bits.map { Float(bitPattern: UInt32($0) << 16) }
                    let c0 = (0..<(m * ldc)).map { _ in Float.random(in: -1...1, using: &rng) }
                    var fast = c0, reference = c0
                    bits.withUnsafeBufferPointer { w in
                        Blas.linear(m: m, n: n, k: k, a: a, lda: lda, w: .bf16(w.baseAddress!), c: &fast, ldc: ldc,
                                    alpha: 0.5, beta: 2)
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 0.5, a, Int32(lda),
                                wide, Int32(k), 2, &reference, Int32(ldc))
                    for i in 0..<fast.count {
                        XCTAssertEqual(fast[i], reference[i], accuracy: 1e-4, "m \(m) n \(n) k \(k) threads \(threads) at \(i)")
                    }
                }
            }
        }
    }

    func testLinearOnF32IsGemmTransB() {
        let a: [Float] = [1, 2, 3, 4]          // 2×2
        let w: [Float] = [1, 0, 0, 1, 1, 1]    // 3×2
        var c = [Float](repeating: .nan, count: 6)
        w.withUnsafeBufferPointer { Blas.linear(m: 2, n: 3, k: 2, a: a, w: .f32($0.baseAddress!), c: &c) }
        XCTAssertEqual(c, [1, 2, 3, 3, 4, 7])
    }
}
