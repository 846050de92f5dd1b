import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tensor as f32, row-major. `pointer` stays valid as long as this value (or a copy) lives:
/// it keeps its storage (the file mapping, or a converted buffer) alive.
public struct Tensor {
    public let shape: [Int]
    public var count: Int { shape.reduce(1, *) }
    public var pointer: UnsafePointer<Float> { UnsafePointer(storage.base) }
    /// Bytes held as f32 (what the model computes with).
    public var byteCount: Int { count * MemoryLayout<Float>.stride }

    let storage: TensorStorage

    init(shape: [Int], storage: TensorStorage) {
        self.shape = shape
        self.storage = storage
    }

    /// A tensor over a fresh buffer (used for derived weights such as A = −exp(A_log)).
    public init(shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "internal: tensor values do not match the shape")
        let storage = TensorStorage(ownedCount: values.count)
        values.withUnsafeBufferPointer { storage.base.update(from: $0.baseAddress!, count: values.count) }
        self.init(shape: shape, storage: storage)
    }
}

/// Either a view into a mapped file (kept alive via `owner`) or an owned f32 buffer.
final class TensorStorage {
    let base: UnsafeMutablePointer<Float>
    private let owned: Bool
    private let owner: AnyObject?

    init(view: UnsafeMutablePointer<Float>, owner: AnyObject) {
        base = view; owned = false; self.owner = owner
    }
    init(ownedCount: Int) {
        base = .allocate(capacity: max(ownedCount, 1)); owned = true; owner = nil
    }
    deinit { if owned { base.deallocate() } }
}

/// A read-only memory mapping of a whole file.
final class MappedFile {
    let base: UnsafeMutableRawPointer?
    let length: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw EngineError.io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw EngineError.io(path: path, reason: String(cString: strerror(errno))) }
        length = Int(st.st_size)
        if length == 0 { base = nil; return }
        let p = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw EngineError.io(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = p
    }

    deinit { if let base { munmap(base, length) } }

    /// Drops the pages wholly inside [offset, offset + count) from this process's memory: their
    /// bytes were copied (converted) and will not be read again. Pages shared with a neighbour
    /// stay; a later read would fault them back in from the file, so this is only about RSS.
    func release(offset: Int, count: Int) {
        guard let base, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset + page - 1) / page * page
        let end = (offset + count) / page * page
        if end > start { _ = madvise(base + start, end - start, MADV_DONTNEED) }
    }
}

/// A `.safetensors` file: 8-byte little-endian header length, a JSON header
/// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the data.
/// The whole file is memory-mapped; the header is validated up front so a corrupt file fails
/// at load time, naming the tensor: offsets inside the data, byte length = shape × dtype size,
/// no two tensors overlapping.
public final class SafeTensorsFile {
    public struct Entry {
        public let dtype: String
        public let shape: [Int]
        /// Byte range inside the data section.
        public let begin: Int
        public let end: Int
    }

    public let path: String
    public private(set) var entries: [String: Entry] = [:]
    let mapping: MappedFile
    let dataStart: Int

    /// Bytes per element of every dtype the format defines (so any valid file validates);
    /// only the float ones can be read as f32.
    static let dtypeSizes: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
        "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
        "F8_E4M3": 1, "F8_E5M2": 1,
    ]
    /// Largest header we accept (the reference implementation's limit is 100 MB).
    static let maxHeaderBytes = 100_000_000

    /// How `matrix(_:shape:)` holds Linear weights and embedding tables (`tensor` is always f32).
    public let matrixFormat: WeightFormat
    /// Bytes of the matrices handed out narrower than f32 (bf16, int8), by name.
    var narrowHeld: [String: Int] = [:]

    /// Bytes of every tensor as the model holds it: the narrow matrices' own size, 4 per
    /// element for everything else (f32 views or widened copies).
    public var heldBytes: Int {
        entries.reduce(0) { sum, entry in
            sum + (narrowHeld[entry.key] ?? entry.value.shape.reduce(1, *) * 4)
        }
    }

    public init(contentsOf url: URL, matrixFormat: WeightFormat = .auto) throws {
        path = url.path
        self.matrixFormat = matrixFormat
        mapping = try MappedFile(path: path)
        guard mapping.length >= 8, let base = mapping.base else {
            throw EngineError.corruptFile(path: path, reason: "file is \(mapping.length) bytes, shorter than the 8-byte header length")
        }
        let headerLength = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(Self.maxHeaderBytes), Int(headerLength) <= mapping.length - 8 else {
            throw EngineError.corruptFile(path: path, reason: "header length \(headerLength) exceeds the file size \(mapping.length)")
        }
        dataStart = 8 + Int(headerLength)
        let dataLength = mapping.length - dataStart
        let headerData = Data(bytes: base + 8, count: Int(headerLength))
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerData) }
        catch { throw EngineError.corruptFile(path: path, reason: "header is not valid JSON") }
        guard let dict = json as? [String: Any] else {
            throw EngineError.corruptFile(path: path, reason: "header is not a JSON object")
        }

        for (name, value) in dict where name != "__metadata__" {
            guard let info = value as? [String: Any] else {
                throw EngineError.corruptFile(path: path, reason: "tensor '\(name)': header entry is not an object")
            }
            guard let dtype = info["dtype"] as? String else {
                throw EngineError.corruptFile(path: path, reason: "tensor '\(name)': missing dtype")
            }
            guard let elementSize = Self.dtypeSizes[dtype] else {
                throw EngineError.unsupportedDtype(path: path, name: name, dtype: dtype)
            }
            guard let shapeAny = info["shape"] as? [Any], let shape = Self.ints(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
                throw EngineError.corruptFile(path: path, reason: "tensor '\(name)': shape is not a list of non-negative integers")
            }
            guard let offAny = info["data_offsets"] as? [Any], let offsets = Self.ints(offAny), offsets.count == 2 else {
                throw EngineError.corruptFile(path: path, reason: "tensor '\(name)': data_offsets is not [begin, end]")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw EngineError.corruptFile(path: path, reason: "tensor '\(name)': data_offsets [\(begin), \(end)] outside the \(dataLength)-byte data section (truncated file?)")
            }
            var elements = 1
            for d in shape {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw EngineError.corruptFile(path: path, reason: "tensor '\(name)': shape \(shape) overflows") }
                elements = p
            }
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: elementSize)
            guard !overflow, bytes == end - begin else {
                throw EngineError.corruptFile(path: path, reason: "tensor '\(name)': shape \(shape) × \(dtype) is \(elements * elementSize) bytes but data_offsets span \(end - begin)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, begin: begin, end: end)
        }

        // No two tensors may share bytes (empty tensors occupy nothing).
        let sorted = entries.filter { $0.value.end > $0.value.begin }.sorted { $0.value.begin < $1.value.begin }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where next.value.begin < previous.value.end {
            throw EngineError.corruptFile(path: path, reason: "tensors '\(previous.key)' and '\(next.key)' overlap (bytes \(next.value.begin)..<\(previous.value.end))")
        }
    }

    private static func ints(_ values: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in values {
            if let i = v as? Int { out.append(i) }
            else if let n = v as? NSNumber, let i = Int(exactly: n.doubleValue) { out.append(i) }
            else { return nil }
        }
        return out
    }

    public var tensorNames: [String] { entries.keys.sorted() }
    public func has(_ name: String) -> Bool { entries[name] != nil }

    /// The tensor as f32 with the expected shape (throws naming the tensor on a mismatch).
    /// Zero-copy view into the mapping for aligned f32 data; a converted copy for f16/bf16/f64.
    public func tensor(_ name: String, shape expected: [Int]) throws -> Tensor {
        guard let entry = entries[name] else { throw EngineError.missingTensor(path: path, name: name) }
        guard entry.shape == expected else {
            throw EngineError.shapeMismatch(path: path, name: name, expected: expected, actual: entry.shape)
        }
        let count = expected.reduce(1, *)
        let raw = UnsafeRawPointer(mapping.base!) + dataStart + entry.begin
        switch entry.dtype {
        case "F32":
            if Int(bitPattern: raw) % MemoryLayout<Float>.alignment == 0 {
                let view = UnsafeMutablePointer(mutating: raw.assumingMemoryBound(to: Float.self))
                return Tensor(shape: expected, storage: TensorStorage(view: view, owner: mapping))
            }
            return convert(entry, count: count, shape: expected) { i in
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
        case "F16":
            return convert(entry, count: count, shape: expected) { i in
                Self.halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case "BF16":
            // bfloat16 is the top half of an f32.
            return convert(entry, count: count, shape: expected) { i in
                Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
        case "F64":
            return convert(entry, count: count, shape: expected) { i in
                Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
            }
        default:
            throw EngineError.unsupportedDtype(path: path, name: name, dtype: entry.dtype)
        }
    }

    /// An owned f32 copy of `entry`; the mapped source pages are then given back.
    private func convert(_ entry: Entry, count: Int, shape: [Int], _ element: (Int) -> Float) -> Tensor {
        let storage = TensorStorage(ownedCount: count)
        for i in 0..<count { storage.base[i] = element(i) }
        releaseSource(of: entry)
        return Tensor(shape: shape, storage: storage)
    }

    /// Drops `entry`'s mapped pages from memory once its bytes were copied into another form.
    func releaseSource(of entry: Entry) {
        mapping.release(offset: dataStart + entry.begin, count: entry.end - entry.begin)
    }

    /// IEEE half → single, exact (normals, subnormals, ±0, ±∞, NaN).
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32((h >> 10) & 0x1f)
        let mantissa = UInt32(h & 0x3ff)
        if exponent == 0 {
            let magnitude = Float(mantissa) * (1.0 / 16_777_216.0)   // mantissa · 2⁻²⁴
            return sign != 0 ? -magnitude : magnitude
        }
        if exponent == 0x1f { return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13)) }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }
}
