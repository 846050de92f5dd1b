import Foundation
import Kernels

/// Writes f32 tensors as a `.safetensors` file (F32, or rounded to F16 / BF16 on disk).
/// Used by tests and by the benchmark tool that creates random checkpoints.
public enum SafeTensorsWriter {
    public enum DType: String { case f32 = "F32", f16 = "F16", bf16 = "BF16" }

    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])], dtype: DType = .f32, to url: URL) throws {
        var header: [String: Any] = ["__metadata__": ["format": "pt"]]
        var offset = 0
        var payload = Data()
        let size = dtype == .f32 ? 4 : 2
        for t in tensors {
            guard t.values.count == t.shape.reduce(1, *) else {
                throw EngineError.invalidArgument("tensor '\(t.name)': \(t.values.count) values for shape \(t.shape)")
            }
            let bytes = t.values.count * size
            header[t.name] = ["dtype": dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
            payload.reserveCapacity(offset)
            switch dtype {
            case .f32: for v in t.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { payload.append(contentsOf: $0) } }
            case .f16: for v in t.values { withUnsafeBytes(of: floatToHalf(v).littleEndian) { payload.append(contentsOf: $0) } }
            case .bf16: for v in t.values { withUnsafeBytes(of: BFloat16.rounded(v).littleEndian) { payload.append(contentsOf: $0) } }
            }
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces to 8 bytes so f32 data stays aligned in the mapping.
        while json.count % 8 != 0 { json.append(0x20) }
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        file.append(payload)
        do { try file.write(to: url) }
        catch { throw EngineError.io(path: url.path, reason: "\(error)") }
    }


    /// Round to nearest even IEEE half (overflow → ∞, tiny → subnormal / 0).
    static func floatToHalf(_ v: Float) -> UInt16 {
        let bits = v.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exp = Int((bits >> 23) & 0xff)
        var mant = bits & 0x7f_ffff
        if exp == 0xff { return sign | 0x7c00 | (mant != 0 ? 0x200 : 0) }
        var e = exp - 127 + 15
        if e >= 0x1f { return sign | 0x7c00 }
        if e <= 0 {
            if e < -10 { return sign }
            mant |= 0x80_0000
            let shift = UInt32(14 - e)
            let half = mant >> shift
            let rem = mant & ((1 << shift) - 1)
            let mid = UInt32(1) << (shift - 1)
            var r = half
            if rem > mid || (rem == mid && (half & 1) == 1) { r += 1 }
            return sign | UInt16(r)
        }
        var m = mant >> 13
        let rem = mant & 0x1fff
        if rem > 0x1000 || (rem == 0x1000 && (m & 1) == 1) {
            m += 1
            if m == 0x400 { m = 0; e += 1; if e >= 0x1f { return sign | 0x7c00 } }
        }
        return sign | UInt16(e << 10) | UInt16(m)
    }
}
