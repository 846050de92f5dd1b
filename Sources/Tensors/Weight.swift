import Foundation
import Kernels

/// How a checkpoint's matrices (Linear weights, embedding tables) are held in memory.
/// Vectors (norms, biases, conv kernels, A, D) are always f32.
public enum WeightFormat: String, CaseIterable, Sendable, CustomStringConvertible {
    /// As the file stores them: bf16 stays bf16 (a view into the mapping, half the memory and
    /// half the bytes read per decode step), f32 stays f32, f16 and f64 widen to f32. The
    /// results equal `f32`'s up to the order of additions: widening bf16 is exact.
    case auto
    /// Every matrix widened to f32 (a bf16 file takes twice its size in memory).
    case f32
    /// Every matrix rounded to bf16 at load (to nearest, ties to even, as torch does): an
    /// approximation of an f32 checkpoint that halves its memory and decode traffic.
    case bf16
    /// Every matrix quantized to int8 at load, one scale per row (`Int8Weights`): a quarter of
    /// f32's memory and decode traffic, for a larger approximation (measured in BENCHMARKS.md).
    case int8
    /// int8 weights as `int8`, and the activations are quantized too, one scale per token, and
    /// multiplied in integers, as CTranslate2's int8 does: decode steps (up to 16 rows) to
    /// 8 bits (AVX-512 VNNI where the CPU has it), prefill and the T5 encoder to 7 bits with
    /// oneDNN's integer GEMM. Faster than `int8`; a little more approximate.
    case w8a8

    public var description: String { rawValue }
}

/// A matrix [rows × columns] of a Linear layer (`nn.Linear` stores [out, in]) or an embedding
/// table, in f32, bf16 or int8. Keeps its storage (the file mapping or its own buffer) alive.
public struct Weight {
    public let shape: [Int]
    public let data: WeightData
    let owner: AnyObject

    public var rows: Int { shape[0] }
    public var columns: Int { shape.dropFirst().reduce(1, *) }
    /// Bytes this matrix occupies as held (4 per element in f32, 2 in bf16, 1 in int8 plus a
    /// scale per row).
    public var byteCount: Int {
        switch data {
        case .f32: rows * columns * 4
        case .bf16: rows * columns * 2
        case .int8, .w8a8: rows * columns + rows * 4
        }
    }
    public var isBF16: Bool { if case .bf16 = data { true } else { false } }

    init(f32 tensor: Tensor) {
        shape = tensor.shape
        data = .f32(tensor.pointer)
        owner = tensor.storage
    }

    init(shape: [Int], data: WeightData, owner: AnyObject) {
        self.shape = shape
        self.data = data
        self.owner = owner
    }

    /// y[n × rows] = x[n × columns] · Wᵀ (+ y when `accumulate`: a residual add for free).
    /// `ldx` is the row stride of x, so a projection can read a column slice.
    public func linear(_ x: UnsafePointer<Float>, count n: Int, ldx: Int? = nil,
                into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        withExtendedLifetime(owner) {
            Blas.linear(m: n, n: rows, k: columns, a: x, lda: ldx, w: data, c: y, beta: accumulate ? 1 : 0)
        }
    }

    /// Row `index` (an embedding lookup) as f32 into `destination`.
    public func copyRow(_ index: Int, into destination: UnsafeMutablePointer<Float>) {
        let c = columns
        withExtendedLifetime(owner) {
            switch data {
            case .f32(let p): destination.update(from: p + index * c, count: c)
            case .bf16(let p): BFloat16.widen(p + index * c, into: destination, count: c)
            case .int8(let q, let scales), .w8a8(let q, let scales):
                Int8Weights.dequantize(q, scales: scales, firstRow: index, rows: 1, columns: c, into: destination)
            }
        }
    }
}

/// A matrix converted at load into its own buffer: bf16 (rounded) or int8 (quantized, with
/// one scale per row).
final class NarrowStorage {
    let bf16: UnsafeMutablePointer<UInt16>?
    let int8: UnsafeMutablePointer<Int8>?
    let scales: UnsafeMutablePointer<Float>?
    init(bf16 count: Int) { bf16 = .allocate(capacity: max(count, 1)); int8 = nil; scales = nil }
    init(int8 count: Int, rows: Int) { bf16 = nil; int8 = .allocate(capacity: max(count, 1)); scales = .allocate(capacity: max(rows, 1)) }
    deinit { bf16?.deallocate(); int8?.deallocate(); scales?.deallocate() }
}

extension SafeTensorsFile {
    /// The matrix `name` with the expected shape, held as `matrixFormat` asks.
    public func matrix(_ name: String, shape expected: [Int]) throws -> Weight {
        let format = matrixFormat
        guard let entry = entries[name] else { throw EngineError.missingTensor(path: path, name: name) }
        guard entry.shape == expected else {
            throw EngineError.shapeMismatch(path: path, name: name, expected: expected, actual: entry.shape)
        }
        let raw = UnsafeRawPointer(mapping.base!) + dataStart + entry.begin
        if entry.dtype == "BF16", format == .auto || format == .bf16,
           Int(bitPattern: raw) % MemoryLayout<UInt16>.alignment == 0 {
            narrowHeld[name] = entry.end - entry.begin
            return Weight(shape: expected, data: .bf16(raw.assumingMemoryBound(to: UInt16.self)), owner: mapping)
        }
        let tensor = try tensor(name, shape: expected)
        let rows = expected[0], count = tensor.count
        let weight: Weight
        switch format {
        case .auto, .f32:
            return Weight(f32: tensor)
        case .bf16:
            let storage = NarrowStorage(bf16: count)
            BFloat16.round(tensor.pointer, into: storage.bf16!, count: count)
            weight = Weight(shape: expected, data: .bf16(storage.bf16!), owner: storage)
        case .int8, .w8a8:
            let storage = NarrowStorage(int8: count, rows: rows)
            Int8Weights.quantize(tensor.pointer, rows: rows, columns: count / max(rows, 1),
                                 into: storage.int8!, scales: storage.scales!)
            let (q, scales) = (UnsafePointer(storage.int8!), UnsafePointer(storage.scales!))
            weight = Weight(shape: expected, data: format == .int8 ? .int8(q, scales: scales) : .w8a8(q, scales: scales),
                            owner: storage)
        }
        narrowHeld[name] = weight.byteCount
        if entry.dtype == "F32" { releaseSource(of: entry) }   // the f32 view into the mapping is not needed any more
        return withExtendedLifetime(tensor) { weight }
    }
}
