import XCTest
import Foundation
@testable import Engine
@testable import Tensors

final class SafeTensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Writes a file from a raw JSON header and raw data bytes (so corrupt files can be built).
    func raw(_ header: String, data: [UInt8], name: String = "t.safetensors") throws -> URL {
        var bytes = Data()
        let h = Data(header.utf8)
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(h)
        bytes.append(contentsOf: data)
        let url = dir.appendingPathComponent(name)
        try bytes.write(to: url)
        return url
    }

    func f32Bytes(_ v: [Float]) -> [UInt8] { v.flatMap { f in withUnsafeBytes(of: f.bitPattern.littleEndian) { Array($0) } } }

    func expectError(_ url: URL, file: StaticString = #filePath, line: UInt = #line, _ check: (EngineError) -> Bool) {
        XCTAssertThrowsError(try SafeTensorsFile(contentsOf: url), file: file, line: line) { error in
            guard let e = error as? EngineError else { return XCTFail("not an EngineError: \(error)", file: file, line: line) }
            XCTAssertTrue(check(e), "unexpected error: \(e)", file: file, line: line)
        }
    }

    func testValidF32FileIsReadZeroCopyWithItsShape() throws {
        let url = try raw(#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},"__metadata__":{"format":"pt"}}"#,
                          data: f32Bytes([1, 2, 3, 4, 5]))
        let f = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(f.tensorNames, ["a", "b"])
        XCTAssertTrue(f.has("a")); XCTAssertFalse(f.has("c"))
        let a = try f.tensor("a", shape: [2, 2])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a.pointer, count: a.count)), [1, 2, 3, 4])
        let b = try f.tensor("b", shape: [1])     // keep the tensor alive while reading its pointer
        XCTAssertEqual(b.pointer[0], 5)
    }

    func testTensorOutlivesTheFileObject() throws {
        let url = dir.appendingPathComponent("w.safetensors")
        try SafeTensorsWriter.write([("x", [3], [7, 8, 9])], to: url)
        var t: Tensor? = try SafeTensorsFile(contentsOf: url).tensor("x", shape: [3])
        XCTAssertEqual(t!.pointer[2], 9)    // the mapping is kept alive by the tensor
        t = nil
    }

    func testF16AndBF16AreConvertedToF32() throws {
        let values: [Float] = [1, -2.5, 0.099975586, 65504, 0, -0.0, 3.0517578e-05, 5.9604645e-08]
        for dtype in [SafeTensorsWriter.DType.f16, .bf16] {
            let url = dir.appendingPathComponent("\(dtype).safetensors")
            try SafeTensorsWriter.write([("x", [values.count], values)], dtype: dtype, to: url)
            let t = try SafeTensorsFile(contentsOf: url).tensor("x", shape: [values.count])
            let got = Array(UnsafeBufferPointer(start: t.pointer, count: t.count))
            for (g, v) in zip(got, values) {
                // f16 has 11 significant bits, bf16 8: relative error ≤ 2⁻¹¹ / 2⁻⁸ (2⁻¹¹ is exact here for f16).
                let tol = dtype == .f16 ? abs(v) * 4.9e-4 + 1e-12 : abs(v) * 3.9e-3 + 1e-12
                XCTAssertEqual(g, v, accuracy: tol, "\(dtype) \(v)")
            }
        }
        // Exact bit patterns: half 0x3C00 = 1, 0xC100 = −2.5, 0x0001 = 2⁻²⁴ (subnormal), 0x7C00 = ∞.
        XCTAssertEqual(SafeTensorsFile.halfToFloat(0x3C00), 1)
        XCTAssertEqual(SafeTensorsFile.halfToFloat(0xC100), -2.5)
        XCTAssertEqual(SafeTensorsFile.halfToFloat(0x0001), 5.9604645e-08)
        XCTAssertEqual(SafeTensorsFile.halfToFloat(0x7C00), .infinity)
        XCTAssertTrue(SafeTensorsFile.halfToFloat(0x7E00).isNaN)
    }

    func testTruncatedFileNamesTheTensor() throws {
        let url = try raw(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: f32Bytes([1, 2]))
        expectError(url) { if case .corruptFile(_, let r) = $0 { return r.contains("'w'") && r.contains("truncated") }; return false }
    }

    func testTooShortAndOversizedHeaders() throws {
        let tiny = dir.appendingPathComponent("tiny.safetensors")
        try Data([1, 2, 3]).write(to: tiny)
        expectError(tiny) { if case .corruptFile = $0 { return true }; return false }
        let empty = dir.appendingPathComponent("empty.safetensors")
        try Data().write(to: empty)
        expectError(empty) { if case .corruptFile = $0 { return true }; return false }
        var big = Data()
        withUnsafeBytes(of: UInt64(1_000_000).littleEndian) { big.append(contentsOf: $0) }
        big.append(contentsOf: [UInt8](repeating: 0x20, count: 10))
        let bigURL = dir.appendingPathComponent("big.safetensors")
        try big.write(to: bigURL)
        expectError(bigURL) { if case .corruptFile(_, let r) = $0 { return r.contains("header length") }; return false }
        let notJSON = try raw("{not json", data: [])
        expectError(notJSON) { if case .corruptFile(_, let r) = $0 { return r.contains("JSON") }; return false }
    }

    func testOverlappingTensorsAreRefused() throws {
        let url = try raw(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                          data: f32Bytes([1, 2, 3]))
        expectError(url) { if case .corruptFile(_, let r) = $0 { return r.contains("overlap") && r.contains("'a'") && r.contains("'b'") }; return false }
    }

    func testUnknownDtypeIsRefusedByName() throws {
        let url = try raw(#"{"q":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}}"#, data: [0, 0])
        expectError(url) { $0 == .unsupportedDtype(path: url.path, name: "q", dtype: "Q4_K") }
    }

    func testIntegerTensorValidatesButCannotBeReadAsFloat() throws {
        let url = try raw(#"{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        let f = try SafeTensorsFile(contentsOf: url)
        XCTAssertThrowsError(try f.tensor("ids", shape: [1])) { XCTAssertEqual($0 as? EngineError, .unsupportedDtype(path: url.path, name: "ids", dtype: "I64")) }
    }

    func testShapeTimesDtypeMustEqualByteLength() throws {
        let url = try raw(#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: f32Bytes([1, 2]))
        expectError(url) { if case .corruptFile(_, let r) = $0 { return r.contains("'w'") && r.contains("12 bytes") }; return false }
    }

    func testBadOffsetsAndShapes() throws {
        let reversed = try raw(#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: f32Bytes([1, 2]), name: "r.safetensors")
        expectError(reversed) { if case .corruptFile = $0 { return true }; return false }
        let negative = try raw(#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: f32Bytes([1]), name: "n.safetensors")
        expectError(negative) { if case .corruptFile(_, let r) = $0 { return r.contains("shape") }; return false }
        let noOffsets = try raw(#"{"w":{"dtype":"F32","shape":[1]}}"#, data: f32Bytes([1]), name: "o.safetensors")
        expectError(noOffsets) { if case .corruptFile(_, let r) = $0 { return r.contains("data_offsets") }; return false }
    }

    func testRequestingAnotherShapeOrAMissingTensorThrowsNamingIt() throws {
        let url = dir.appendingPathComponent("w.safetensors")
        try SafeTensorsWriter.write([("x", [2, 3], [Float](repeating: 1, count: 6))], to: url)
        let f = try SafeTensorsFile(contentsOf: url)
        XCTAssertThrowsError(try f.tensor("x", shape: [3, 2])) {
            XCTAssertEqual($0 as? EngineError, .shapeMismatch(path: url.path, name: "x", expected: [3, 2], actual: [2, 3]))
        }
        XCTAssertThrowsError(try f.tensor("y", shape: [1])) {
            XCTAssertEqual($0 as? EngineError, .missingTensor(path: url.path, name: "y"))
            XCTAssertTrue("\($0)".contains("'y'"))
        }
    }

    func testMissingFileIsAnIOError() {
        let url = dir.appendingPathComponent("nope.safetensors")
        expectError(url) { if case .io = $0 { return true }; return false }
    }

    func testUnalignedF32DataIsCopied() throws {
        // A 5-byte header puts the data at offset 13: not 4-aligned.
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let url = try raw(header + String(repeating: " ", count: (4 - (8 + header.utf8.count) % 4) % 4 + 1), data: f32Bytes([1.5, -2]))
        let t = try SafeTensorsFile(contentsOf: url).tensor("a", shape: [2])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: t.pointer, count: 2)), [1.5, -2])
    }
}
