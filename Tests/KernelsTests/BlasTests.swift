import COpenBLAS
import XCTest
@testable import Kernels

final class BlasTests: XCTestCase {
    func testGemmMatchesHandComputedProduct() {
        // [1 2 3; 4 5 6] · [7 8; 9 10; 11 12] = [58 64; 139 154]
        let a: [Float] = [1, 2, 3, 4, 5, 6]
        let b: [Float] = [7, 8, 9, 10, 11, 12]
        var c = [Float](repeating: 0, count: 4)
        Blas.gemm(m: 2, n: 2, k: 3, a: a, b: b, c: &c)
        XCTAssertEqual(c, [58, 64, 139, 154])
    }

    func testGemmTransBIsALinearLayer() {
        // x [2×3] · Wᵀ with W [out 2 × in 3] = [[1,0,1],[0,2,0]]
        let x: [Float] = [1, 2, 3, 4, 5, 6]
        let w: [Float] = [1, 0, 1, 0, 2, 0]
        var y = [Float](repeating: 0, count: 4)
        Blas.gemmTransB(m: 2, n: 2, k: 3, a: x, w: w, c: &y)
        XCTAssertEqual(y, [4, 4, 10, 10])
    }

    func testGemmTransBWithStridesAndBetaAccumulates() {
        // A is the first 2 columns of a 2×3 matrix; C a 2×2 block of a 2×3 matrix, accumulated.
        let a: [Float] = [1, 2, 99, 3, 4, 99]
        let w: [Float] = [1, 1, 2, -1]        // W [2×2]
        var c: [Float] = [10, 20, 7, 30, 40, 7]
        Blas.gemmTransB(m: 2, n: 2, k: 2, a: a, lda: 3, w: w, c: &c, ldc: 3, beta: 1)
        // row0: [1+2, 2-2] = [3, 0]; row1: [3+4, 6-4] = [7, 2]
        XCTAssertEqual(c, [13, 20, 7, 37, 42, 7])
    }

    func testSingleRowGemmTransBEqualsGemv() {
        let x: [Float] = [1, -2, 3]
        let w: [Float] = [1, 2, 3, 4, 5, 6]   // [2×3]
        var viaGemm = [Float](repeating: 0, count: 2)
        var viaGemv = [Float](repeating: 0, count: 2)
        Blas.gemmTransB(m: 1, n: 2, k: 3, a: x, w: w, c: &viaGemm)
        Blas.gemv(out: 2, in: 3, w: w, x: x, y: &viaGemv)
        XCTAssertEqual(viaGemv, [6, 12])
        XCTAssertEqual(viaGemm, viaGemv)
    }

    /// The small-batch path (2…16 rows, W read once per 8 rows) equals sgemm for every row
    /// count, odd inner sizes (vector tails), strides, alpha/beta, and split across threads.
    func testSmallBatchPathEqualsSgemm() {
        var rng = SystemRandomNumberGenerator()
        defer { Blas.smallBatchISA = 2 }
        for (isa, threads) in [(2, 1), (2, 2), (1, 1), (0, 1)] {
            Blas.smallBatchISA = isa
            SelectiveScan.threads = threads
            defer { SelectiveScan.threads = 1 }
            for m in [2, 3, 5, 8, 9, 16] {
                for (n, k) in [(7, 5), (600, 37), (513, 64), (100, 48)] {
                    let lda = k + 3, ldc = n + 2
                    let a = (0..<(m * lda)).map { _ in Float.random(in: -1...1, using: &rng) }
                    let w = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &rng) }
                    let c0 = (0..<(m * ldc)).map { _ in Float.random(in: -1...1, using: &rng) }
                    var fast = c0, reference = c0
                    Blas.gemmTransB(m: m, n: n, k: k, a: a, lda: lda, w: w, c: &fast, ldc: ldc, alpha: 0.5, beta: 2)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 0.5, a, Int32(lda),
                                w, Int32(k), 2, &reference, Int32(ldc))
                    for i in 0..<fast.count {
                        XCTAssertEqual(fast[i], reference[i], accuracy: 1e-4, "m \(m) n \(n) k \(k) threads \(threads) isa \(isa) at \(i)")
                    }
                }
            }
        }
    }

    /// beta 0 ignores whatever C held (NaN included), as BLAS does.
    func testSmallBatchWithBetaZeroIgnoresOldC() {
        let a: [Float] = [1, 2, 3, 4]          // 2×2
        let w: [Float] = [1, 0, 0, 1, 1, 1]    // 3×2
        var c = [Float](repeating: .nan, count: 6)
        Blas.gemmTransB(m: 2, n: 3, k: 2, a: a, w: w, c: &c)
        XCTAssertEqual(c, [1, 2, 3, 3, 4, 7])
    }
}
