import COpenBLAS
import XCTest
@testable import Kernels

/// `Blas.linear` on f32, bf16 and int8 weights equals sgemm on the widened f32 weights on every
/// path; bf16 rounding as torch does and exact widening; int8 per-row absmax quantization.
final class LinearWeightsTests: XCTestCase {
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

    /// `Blas.linear` on narrow weights equals sgemm on the same weights widened to f32, for
    /// every path: 1 row, small batches on both sides of the 8-row block (every ISA), and
    /// prefill sizes (sgemm on widened blocks; n = 1200 with k = 300 spans several blocks).
    /// `make(n, k)` returns the weights, the widened f32 copy, and an owner to keep alive.
    func assertLinearMatchesSgemm(_ kind: String, _ make: (Int, Int) -> (WeightData, [Float], AnyObject)) {
        var rng = SystemRandomNumberGenerator()
        defer { Blas.smallBatchISA = 2 }
        for (isa, threads) in [(2, 1), (2, 2), (1, 1), (0, 1)] {
            Blas.smallBatchISA = isa
            Kernels.threads = threads
            defer { Kernels.threads = 1 }
            for m in [1, 3, 8, 9, 16, 17, 40] {
                // The prefill-sized shape only once (it exercises sgemm's blocks, not the ISA).
                for (n, k) in [(7, 5), (600, 37), (100, 48), (1200, 300)] where n < 1000 || (isa == 2 && threads == 1) {
                    let lda = k + 3, ldc = n + 2
                    let a = (0..<(m * lda)).map { _ in Float.random(in: -1...1, using: &rng) }
                    let (w, wide, owner) = make(n, k)
                    let c0 = (0..<(m * ldc)).map { _ in Float.random(in: -1...1, using: &rng) }
                    var fast = c0, reference = c0
                    withExtendedLifetime(owner) {
                        Blas.linear(m: m, n: n, k: k, a: a, lda: lda, w: w, c: &fast, ldc: ldc, alpha: 0.5, beta: 2)
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 0.5, a, Int32(lda),
                                wide, Int32(k), 2, &reference, Int32(ldc))
                    for i in 0..<fast.count {
                        XCTAssertEqual(fast[i], reference[i], accuracy: 1e-4,
                                       "\(kind) m \(m) n \(n) k \(k) threads \(threads) isa \(isa) at \(i)")
                    }
                }
            }
        }
    }

    final class Owners { let items: [AnyObject]; init(_ items: [AnyObject]) { self.items = items } }

    final class Buffer<T> {
        let pointer: UnsafeMutablePointer<T>
        init(_ count: Int) { pointer = .allocate(capacity: count) }
        deinit { pointer.deallocate() }
    }

    /// f32 goes through `gemmTransB`: sgemv for 1 row, the small-batch kernels (W read once per
    /// 8 rows) up to 16, sgemm above.
    func testLinearOnF32EqualsSgemm() {
        assertLinearMatchesSgemm("f32") { n, k in
            let w = Buffer<Float>(n * k)
            for i in 0..<(n * k) { w.pointer[i] = Float.random(in: -1...1) }
            return (.f32(w.pointer), Array(UnsafeBufferPointer(start: w.pointer, count: n * k)), w)
        }
    }

    func testLinearOnBF16EqualsSgemmOnWidenedWeights() {
        assertLinearMatchesSgemm("bf16") { n, k in
            let bits = Buffer<UInt16>(n * k)
            for i in 0..<(n * k) { bits.pointer[i] = BFloat16.rounded(Float.random(in: -1...1)) }
            let wide = (0..<(n * k)).map { Float(bitPattern: UInt32(bits.pointer[$0]) << 16) }
            return (.bf16(bits.pointer), wide, bits)
        }
    }

    func testLinearOnInt8EqualsSgemmOnDequantizedWeights() {
        assertLinearMatchesSgemm("int8") { n, k in
            let w = (0..<(n * k)).map { _ in Float.random(in: -1...1) }
            let q = Buffer<Int8>(n * k), scales = Buffer<Float>(n)
            Int8Weights.quantize(w, rows: n, columns: k, into: q.pointer, scales: scales.pointer)
            var wide = [Float](repeating: 0, count: n * k)
            Int8Weights.dequantize(q.pointer, scales: scales.pointer, firstRow: 0, rows: n, columns: k, into: &wide)
            return (.int8(q.pointer, scales: scales.pointer), wide, Owners([q, scales]))
        }
    }

    /// W8A8: each row of A quantized (absmax / 127 for decode rows, / 63 above 16 rows: oneDNN's
    /// integer GEMM must not saturate on AVX2; ties to even), products summed exactly in int32.
    /// The fast paths (VNNI or AVX2, oneDNN) and the C path give the same bits, and both equal
    /// this test's own integer arithmetic; the result stays within the activation rounding's
    /// bound of sgemm on the dequantized weights.
    func testW8A8IsExactIntegerArithmeticOnEveryPath() {
        var rng = SystemRandomNumberGenerator()
        defer { Blas.smallBatchISA = 2 }
        print("w8a8 uses VNNI on this CPU: \(Blas.w8a8UsesVNNI)")
        for m in [1, 3, 8, 9, 16, 17, 40, 600] {
            // n = 70,000 (a vocabulary-wide LM head): the int32 sums cap cuts 40 rows into blocks of 29.
            for (n, k) in [(7, 5), (100, 64), (50, 130), (33, 300), (600, 37), (70_000, 5)] where m < 600 || n == 33 {
                let lda = k + 3, ldc = n + 2
                var a = (0..<(m * lda)).map { _ in Float.random(in: -1...1, using: &rng) }
                a[0] = 0.5   // ties: 0.5 · (127 / max) is rarely a tie; exact zeros and halves below
                for t in 0..<k where t % 11 == 0 { a[t] = 0 }
                let w = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &rng) }
                let q = Buffer<Int8>(n * k), scales = Buffer<Float>(n)
                Int8Weights.quantize(w, rows: n, columns: k, into: q.pointer, scales: scales.pointer)
                let c0 = (0..<(m * ldc)).map { _ in Float.random(in: -1...1, using: &rng) }
                var results: [[Float]] = []
                for isa in [2, 0] {
                    Blas.smallBatchISA = isa
                    var c = c0
                    Blas.linear(m: m, n: n, k: k, a: a, lda: lda, w: .w8a8(q.pointer, scales: scales.pointer), c: &c,
                                ldc: ldc, alpha: 0.5, beta: 2)
                    results.append(c)
                }
                XCTAssertEqual(results[0], results[1], "m \(m) n \(n) k \(k): the fast path and C differ")
                var wide = [Float](repeating: 0, count: n * k)
                Int8Weights.dequantize(q.pointer, scales: scales.pointer, firstRow: 0, rows: n, columns: k, into: &wide)
                var sgemm = c0
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 0.5, a, Int32(lda),
                            wide, Int32(k), 2, &sgemm, Int32(ldc))
                for i in 0..<m {
                    let row = a[(i * lda)..<(i * lda + k)]
                    let largest = row.map(abs).max()!
                    let levels: Float = m > Blas.smallBatchRows ? 63 : 127
                    let sx: Float = largest > 0 ? largest / levels : 1, inverse = 1 / sx
                    let xq = row.map { Int32(max(-levels, min(levels, ($0 * inverse).rounded(.toNearestOrEven)))) }
                    for j in 0..<n {
                        let got = results[0][i * ldc + j]
                        var sum: Int32 = 0
                        for t in 0..<k { sum += xq[t] * Int32(q.pointer[j * k + t]) }
                        let y = 0.5 * (scales.pointer[j] * (sx * Float(sum)))
                        XCTAssertEqual(got, y + 2 * c0[i * ldc + j], "m \(m) n \(n) k \(k) at (\(i), \(j))")
                        // |Σ (x − sx·q)·w| ≤ sx/2 · Σ|w|, times alpha, plus float rounding.
                        let bound = 0.5 * (sx / 2) * (0..<k).reduce(Float(0)) { $0 + abs(wide[j * k + $1]) } + 1e-4
                        XCTAssertEqual(got, sgemm[i * ldc + j], accuracy: bound, "m \(m) n \(n) k \(k): beyond the rounding bound")
                    }
                }
            }
        }
    }

    /// Activations a corrupt checkpoint can produce (NaN, ±inf, 1e30) through the many-row
    /// integer path: a NaN counts as 0 and never sets a scale, an infinite row gets scale 1 and
    /// clamps; the outputs stay finite and the fast and C paths agree.
    func testW8A8ManyRowsTakeNaNAndInfinityWithoutSpreadingThem() {
        let m = 20, n = 9, k = 37
        var a = (0..<(m * k)).map { Float(($0 * 7) % 13) / 13 - 0.5 }
        a[0] = .nan; a[k + 1] = .infinity; a[2 * k + 2] = -.infinity; a[3 * k] = 1e30
        for t in 0..<k { a[4 * k + t] = .nan }
        let w = (0..<(n * k)).map { Float(($0 * 5) % 11) / 11 - 0.5 }
        let q = Buffer<Int8>(n * k), scales = Buffer<Float>(n)
        Int8Weights.quantize(w, rows: n, columns: k, into: q.pointer, scales: scales.pointer)
        defer { Blas.smallBatchISA = 2 }
        var results: [[Float]] = []
        for isa in [2, 0] {
            Blas.smallBatchISA = isa
            var c = [Float](repeating: .nan, count: m * n)
            Blas.linear(m: m, n: n, k: k, a: a, w: .w8a8(q.pointer, scales: scales.pointer), c: &c)
            results.append(c)
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertTrue(results[0].allSatisfy(\.isFinite), "\(results[0])")
        XCTAssertEqual(Array(results[0][(4 * n)..<(5 * n)]), [Float](repeating: 0, count: n), "an all-NaN row counts as zeros")
    }

    func testInt8QuantizationIsSymmetricPerRowAbsmax() {
        // Row 0: absmax 2 → scale 2/127; 1 → 63.5 (ties to even: 64); 0.5 → 31.75 → 32.
        // Row 1: all zeros → scale 1, zeros. Row 2: a NaN becomes 0 and does not poison the scale.
        let w: [Float] = [-2, 1, 0.5, 0, 0, 0, .nan, 4, -1]
        var q = [Int8](repeating: 99, count: 9), scales = [Float](repeating: 0, count: 3)
        Int8Weights.quantize(w, rows: 3, columns: 3, into: &q, scales: &scales)
        XCTAssertEqual(scales[0], 2 / 127)
        XCTAssertEqual(Array(q[0..<3]), [-127, 64, 32])
        XCTAssertEqual(scales[1], 1)
        XCTAssertEqual(Array(q[3..<6]), [0, 0, 0])
        XCTAssertEqual(scales[2], 4 / 127)
        XCTAssertEqual(Array(q[6..<9]), [0, 127, -32])
        var back = [Float](repeating: 0, count: 3)
        Int8Weights.dequantize(q, scales: scales, firstRow: 0, rows: 1, columns: 3, into: &back)
        for (x, y) in zip(back, w[0..<3]) { XCTAssertEqual(x, y, accuracy: scales[0] / 2) }
    }

    /// The load-time kernel (AVX2 and C) gives the bytes and scales of the Swift definition,
    /// on rows with ties, zeros, NaN, ±inf, huge and tiny values, and lengths off the vector.
    func testInt8QuantizationKernelEqualsTheReference() {
        var rng = SystemRandomNumberGenerator()
        defer { Blas.smallBatchISA = 2 }
        // The large one: dividing and multiplying by the inverse round differently for a few
        // values in a million (about 12 here), which this must see.
        for (rows, columns) in [(5, 1), (7, 8), (9, 37), (33, 300), (2048, 4099)] {
            var w = (0..<(rows * columns)).map { _ in Float.random(in: -3...3, using: &rng) }
            let specials: [Float] = [.nan, .infinity, -.infinity, 0, 0.5, -1.5, 1e30, -1e-30, 2.5]
            // Specials in the first rows only: a 1e30 sets its row's scale, and every other
            // value of that row rounds to 0.
            for i in stride(from: 0, to: min(w.count, 4 * columns), by: 3) { w[i] = specials[(i / 3) % specials.count] }
            for t in 0..<columns { w[t] = 0 }                                       // a zero row
            if rows > 1 { for t in 0..<columns { w[columns + t] = .nan } }           // an all-NaN row
            var expected = [Int8](repeating: 99, count: w.count), expectedScales = [Float](repeating: 0, count: rows)
            Int8Weights.quantizeReference(w, rows: rows, columns: columns, into: &expected, scales: &expectedScales)
            for isa in [2, 1, 0] {
                Blas.smallBatchISA = isa
                var q = [Int8](repeating: 99, count: w.count), scales = [Float](repeating: 0, count: rows)
                Int8Weights.quantize(w, rows: rows, columns: columns, into: &q, scales: &scales)
                let wrong = zip(q, expected).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
                XCTAssertEqual(wrong.count, 0, "\(rows)×\(columns), isa \(isa): \(wrong.count) bytes differ, first at \(wrong.first ?? -1)")
                XCTAssertEqual(scales, expectedScales, "\(rows)×\(columns), isa \(isa)")
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
