import Foundation
import XCTest

/// The committed protoc-c output must match what tools/gen-wire.sh generates from
/// Sources/Wire/proto/mambaformer.proto (scripts/check-generated.sh runs the same check).
final class GeneratedCodeTests: XCTestCase {
    func testCommittedProtobufCCodeIsUpToDate() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("tools/gen-wire.sh").path
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: script), script)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [script, "--check"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "stale generated code (run tools/gen-wire.sh):\n\(output)")
    }
}
