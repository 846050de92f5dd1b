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
}
