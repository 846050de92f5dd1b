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

    /// beta 0 ignores whatever C held (NaN included), as BLAS does.
    func testSmallBatchWithBetaZeroIgnoresOldC() {
        let a: [Float] = [1, 2, 3, 4]          // 2×2
        let w: [Float] = [1, 0, 0, 1, 1, 1]    // 3×2
        var c = [Float](repeating: .nan, count: 6)
        Blas.gemmTransB(m: 2, n: 3, k: 2, a: a, w: w, c: &c)
        XCTAssertEqual(c, [1, 2, 3, 3, 4, 7])
    }
}
