import CKernels
import COneDNN
import COpenBLAS
import Dispatch
import Foundation

/// The storage of a Linear weight [out, in]: f32; bfloat16 kept as the checkpoint stores it
/// (the top half of an f32: widening is exact, and a decode step reads half the bytes); or
/// int8 with one scale per output row (weight-only quantization, a quarter of the bytes).
public enum WeightData {
    case f32(UnsafePointer<Float>)
    case bf16(UnsafePointer<UInt16>)
    case int8(UnsafePointer<Int8>, scales: UnsafePointer<Float>)
    /// int8 as `.int8`, and the activations are quantized as well (one scale per row, on every
    /// call) and multiplied in integers: decode steps with 8 bits (AVX-512 VNNI where the CPU
    /// has it), many rows with 7 bits through oneDNN (`integerRows`).
    case w8a8(UnsafePointer<Int8>, scales: UnsafePointer<Float>)
}

/// Thin, typed wrappers over OpenBLAS. Every matrix is row-major f32.
///
/// Hugging Face `nn.Linear` stores its weight as [out, in], so a projection of row vectors is
/// y = x · Wᵀ: `gemmTransB` for many rows, `gemv` for one row (sgemm with M = 1 is several
/// times slower than sgemv in OpenBLAS 0.3.21, measured on this project's VMs).
public enum Blas {
    /// C[m×n] = alpha · A[m×k] · B[k×n] + beta · C (row-major, no transposes).
    @inlinable
    public static func gemm(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
        alpha: Float = 1, beta: Float = 0
    ) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(k), b, Int32(n), beta, c, Int32(n))
    }

    /// C[m×n] = alpha · A[m×k] · Wᵀ + beta · C, with W stored [n×k] (a Linear weight [out, in]).
    /// `lda` / `ldc` are the row strides of A and C (default: dense rows), so a projection can
    /// read from or write into a column slice of a wider matrix.
    @inlinable
    public static func gemmTransB(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int? = nil,
        w: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int? = nil,
        alpha: Float = 1, beta: Float = 0
    ) {
        if m == 1 {
            // One row: sgemv on W is several times faster than sgemm with M = 1.
            gemv(out: n, in: k, w: w, x: a, y: c, alpha: alpha, beta: beta)
            return
        }
        if m <= smallBatchRows {
            smallBatch(m: m, n: n, k: k, a: a, lda: lda ?? k, w: w, c: c, ldc: ldc ?? n, alpha: alpha, beta: beta)
            return
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda ?? k), w, Int32(k),
                    beta, c, Int32(ldc ?? n))
    }

    /// Up to this many rows, `gemmTransB` reads W once per 8 rows (`ck_gemm_small_m`) instead
    /// of calling sgemm, which packs W first: decode steps of a batch are bound by reading W.
    public static let smallBatchRows = 16

    /// The instruction set of the small-batch kernels: 0 generic C, 1 AVX2+FMA, 2 AVX-512F (the
    /// best the CPU has, by default). Setting caps it for the process (tests cover every path;
    /// benchmarks compare them).
    public static var smallBatchISA: Int {
        get { Int(ck_small_gemm_isa(-1)) }
        set { _ = ck_small_gemm_isa(Int32(max(0, newValue))) }
    }

    /// Whether `.w8a8` decode steps use AVX-512 VNNI (the CPU has it and `smallBatchISA` is 2);
    /// otherwise the same integer sums in plain C, with the same results.
    public static var w8a8UsesVNNI: Bool { ck_i8a8_uses_vnni() != 0 }

    /// `gemmTransB` for a few rows; the output columns are split across `threads`.
    @usableFromInline
    static func smallBatch(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, w: UnsafePointer<Float>,
                           c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
        splitColumns(n) { n0, n1 in ck_gemm_small_m(Int32(m), Int32(n0), Int32(n1), Int32(k), a, lda, w, c, ldc, alpha, beta) }
    }

    /// Runs `body(n0, n1)` over the output columns, split across `threads` when there are enough.
    static func splitColumns(_ n: Int, _ body: (Int, Int) -> Void) {
        let parts = max(1, min(Kernels.threads, n / 256))
        if parts == 1 { body(0, n); return }
        let chunk = (n + parts - 1) / parts
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let n0 = p * chunk, n1 = min(n, n0 + chunk)
            if n0 < n1 { body(n0, n1) }
        }
    }

    /// C[m×n] = alpha · A[m×k] · Wᵀ + beta · C for a Linear weight [n×k] in any `WeightData`.
    ///
    /// bf16 and int8 weights: up to `smallBatchRows` rows (decode) each weight row is read once
    /// and widened in registers, so a step reads a half or a quarter of the bytes of f32. More
    /// rows (prefill, the T5 encoder) are compute-bound: blocks of W are widened into an f32
    /// scratch and multiplied with sgemm, one extra pass over W per call; w8a8 multiplies
    /// them in integers instead (`integerRows`).
    public static func linear(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int? = nil,
        w: WeightData,
        c: UnsafeMutablePointer<Float>, ldc: Int? = nil,
        alpha: Float = 1, beta: Float = 0
    ) {
        let lda = lda ?? k, ldc = ldc ?? n
        switch w {
        case .f32(let w):
            gemmTransB(m: m, n: n, k: k, a: a, lda: lda, w: w, c: c, ldc: ldc, alpha: alpha, beta: beta)
        case .bf16(let w) where m <= smallBatchRows:
            splitColumns(n) { n0, n1 in
                ck_gemm_small_m_bf16(Int32(m), Int32(n0), Int32(n1), Int32(k), a, lda, w, c, ldc, alpha, beta)
            }
        case .int8(let w, let scales) where m <= smallBatchRows:
            splitColumns(n) { n0, n1 in
                ck_gemm_small_m_i8(Int32(m), Int32(n0), Int32(n1), Int32(k), a, lda, w, scales, c, ldc, alpha, beta)
            }
        case .w8a8(let w, let scales) where m <= smallBatchRows:
            splitColumns(n) { n0, n1 in
                // Declines only for k > 65536 (int32 sums) or no scratch: then weight-only int8.
                if ck_gemm_small_m_i8a8(Int32(m), Int32(n0), Int32(n1), Int32(k), a, lda, w, scales, c, ldc, alpha, beta) == 0 {
                    ck_gemm_small_m_i8(Int32(m), Int32(n0), Int32(n1), Int32(k), a, lda, w, scales, c, ldc, alpha, beta)
                }
            }
        case .bf16(let w):
            widenedBlocks(m: m, n: n, k: k, a: a, lda: lda, c: c, ldc: ldc, alpha: alpha, beta: beta) { n0, rows, into in
                ck_bf16_to_f32(w + n0 * k, into, rows * k)
            }
        case .w8a8(let w, let scales):
            // Prefill and the T5 encoder (many rows) are compute-bound: an integer GEMM.
            integerRows(m: m, n: n, k: k, a: a, lda: lda, w: w, scales: scales, c: c, ldc: ldc, alpha: alpha, beta: beta)
        case .int8(let w, let scales):
            // Weight-only int8 keeps f32 activations: f32 sgemm over widened W.
            widenedInt8(m: m, n: n, k: k, a: a, lda: lda, w: w, scales: scales, c: c, ldc: ldc, alpha: alpha, beta: beta)
        }
    }

    /// int8 W widened to f32 block by block for sgemm (weight-only int8 with many rows).
    static func widenedInt8(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                            w: UnsafePointer<Int8>, scales: UnsafePointer<Float>,
                            c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
        widenedBlocks(m: m, n: n, k: k, a: a, lda: lda, c: c, ldc: ldc, alpha: alpha, beta: beta) { n0, rows, into in
            ck_i8_to_f32(w + n0 * k, scales + n0, into, Int32(rows), Int32(k))
        }
    }

    /// Rows per oneDNN call in `integerRows`, at most: with the cap on the sums below, it bounds
    /// the scratch (rows × k bytes and rows × n int32 sums) whatever the prompt's length and
    /// the matrix's width; W is packed again per call, 1/rows of the work.
    static let integerRowBlock = 512
    /// The int32 sums of one call stay under 8 MiB (a batched prefill's LM head is as wide as
    /// the vocabulary), as `widenedBlocks` bounds its widened W; the pool keeps the buffer.
    static let integerSumsLimit = 1 << 21

    /// W8A8 for many rows: each block of rows is quantized to 7 bits with one scale per row
    /// (`ck_quantize_rows_u7`), multiplied with oneDNN's u8 × s8 → s32 GEMM (AVX2, or VNNI where
    /// the CPU has it; 2.0–2.6× OpenBLAS's f32 sgemm on an AVX2 core, BENCHMARKS.md), and scaled
    /// back. The sums are exact integers, so every CPU gives the same bits.
    static func integerRows(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                            w: UnsafePointer<Int8>, scales: UnsafePointer<Float>,
                            c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float) {
        let block = min(m, integerRowBlock, max(16, integerSumsLimit / max(n, 1)))
        let scratch = ScratchPool.take(bytes: block * k + block * n * 4 + block * 4)
        defer { ScratchPool.give(scratch) }
        let sums = scratch.pointer.bindMemory(to: Int32.self, capacity: block * n)
        let rowScales = (scratch.pointer + block * n * 4).bindMemory(to: Float.self, capacity: block)
        let quantized = (scratch.pointer + block * n * 4 + block * 4).bindMemory(to: UInt8.self, capacity: block * k)
        var offsetC: Int32 = 0
        var i0 = 0
        while i0 < m {
            let rows = min(block, m - i0)
            ck_quantize_rows_u7(Int32(rows), Int32(k), a + i0 * lda, lda, quantized, rowScales)
            omp_set_num_threads(Int32(Kernels.threads))
            let status = dnnl_gemm_u8s8s32(CChar(UInt8(ascii: "N")), CChar(UInt8(ascii: "T")), CChar(UInt8(ascii: "F")),
                                           Int64(rows), Int64(n), Int64(k), 1, quantized, Int64(k), 64,
                                           w, Int64(k), 0, 0, sums, Int64(n), &offsetC)
            if status == dnnl_success {
                ck_dequantize_sums(Int32(rows), Int32(n), sums, rowScales, scales, c + i0 * ldc, ldc, alpha, beta)
            } else {
                // oneDNN refused (it should not for valid shapes): the weight-only path instead.
                widenedInt8(m: rows, n: n, k: k, a: a + i0 * lda, lda: lda, w: w, scales: scales,
                            c: c + i0 * ldc, ldc: ldc, alpha: alpha, beta: beta)
            }
            i0 += rows
        }
    }

    /// sgemm over blocks of W widened to f32 by `widen(firstRow, rows, into)`, up to 8 MiB per
    /// block: each sgemm call packs A again, so few large calls beat many cache-sized ones
    /// (1 MiB blocks made a mamba-130m prefill 39 % slower than f32; most matrices of the
    /// paper-scale checkpoints now take one call).
    static func widenedBlocks(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                              c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float,
                              widen: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        let block = max(16, min(n, (1 << 21) / max(k, 1)))
        let scratch = ScratchPool.take(bytes: block * k * 4)
        defer { ScratchPool.give(scratch) }
        let widened = scratch.pointer.bindMemory(to: Float.self, capacity: block * k)
        var n0 = 0
        while n0 < n {
            let rows = min(block, n - n0)
            widen(n0, rows, widened)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                        Int32(m), Int32(rows), Int32(k), alpha, a, Int32(lda), widened, Int32(k),
                        beta, c + n0, Int32(ldc))
            n0 += rows
        }
    }

    /// y[out] = alpha · W[out×in] · x[in] + beta · y.
    @inlinable
    public static func gemv(
        out: Int, in inCount: Int,
        w: UnsafePointer<Float>, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
        alpha: Float = 1, beta: Float = 0
    ) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(out), Int32(inCount),
                    alpha, w, Int32(inCount), x, 1, beta, y, 1)
    }

}

/// Reusable scratch buffers for `Blas.widenedBlocks` and `Blas.integerRows`: fresh megabytes
/// per prefill projection would be mapped and page-faulted again on every call (glibc serves
/// them with mmap). A small pool under a lock, so concurrent callers each get their own buffer.
/// Raw bytes: each caller binds them to the element types it needs.
enum ScratchPool {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var free: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []

    static func take(bytes: Int) -> (pointer: UnsafeMutableRawPointer, bytes: Int) {
        lock.lock()
        defer { lock.unlock() }
        if let i = free.firstIndex(where: { $0.bytes >= bytes }) { return free.remove(at: i) }
        return (.allocate(byteCount: max(bytes, 1), alignment: 64), bytes)
    }

    static func give(_ buffer: (pointer: UnsafeMutableRawPointer, bytes: Int)) {
        lock.lock()
        defer { lock.unlock() }
        if free.count < 2 { free.append(buffer) } else { buffer.pointer.deallocate() }
    }
}
